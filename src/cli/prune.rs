//! `imgbuild prune FILE --keep N`: removes the family's older images in
//! every place at once, never one in use or shared, and with each only the
//! snapshots (or files) nothing else uses. `--dry-run` prints the plan and
//! the commands that would carry it out. `--disable` disables those images
//! instead: reversible, with every snapshot kept.

use std::sync::Arc;

use clap::Args;
use time::OffsetDateTime;

use super::build::parse_duration;
use super::family::{self, FamilyArgs, Place};
use super::{OutputArgs, OutputFormat};
use crate::error::Error;
use crate::family::listing::{ImageStore, Listed, State, Stored, newest_first, size_text};
use crate::family::retention::{self, Kept, Policy, Verdict};
use crate::template::HumanDuration;

#[derive(Args)]
pub struct PruneArgs {
    #[command(flatten)]
    family: FamilyArgs,

    /// Keep the newest N images in each region (and locally); wins over `[retention] keep`.
    #[arg(long, value_name = "N", env = "IMGBUILD_KEEP")]
    keep: Option<usize>,

    /// Remove only images older than this, e.g. "30d" (wins over `[retention] older_than`).
    #[arg(long, value_name = "DURATION", env = "IMGBUILD_OLDER_THAN", value_parser = parse_duration)]
    older_than: Option<HumanDuration>,

    /// Keep images an instance was launched from within this long, e.g. "30d"
    /// (EC2's LastLaunchedTime, where it reports one).
    #[arg(long, value_name = "DURATION", env = "IMGBUILD_UNUSED_FOR", value_parser = parse_duration)]
    unused_for: Option<HumanDuration>,

    /// Remove images shared with other accounts too.
    #[arg(long, env = "IMGBUILD_INCLUDE_SHARED")]
    include_shared: bool,

    /// Print what would be removed and the commands that would do it; remove nothing.
    #[arg(long, env = "IMGBUILD_DRY_RUN")]
    dry_run: bool,

    /// Disable the images that would go instead of removing them: they and
    /// their snapshots stay, not launchable, until `aws ec2 enable-image`.
    #[arg(long, env = "IMGBUILD_DISABLE")]
    disable: bool,

    #[command(flatten)]
    output: OutputArgs,
}

/// What became of one image.
enum Action {
    Kept(Kept),
    WouldRemove(Vec<Stored>),
    Removed(Vec<Stored>),
    WouldDisable,
    Disabled,
    /// It would be disabled, and is already.
    AlreadyDisabled,
    /// Not removed, or only partly: why, and what removing it involves
    /// (`None`: it stays, as whether it may go is unknown).
    Failed(String, Option<Vec<Stored>>),
}

struct Outcome {
    image: Listed,
    action: Action,
    /// The commands that remove it by hand.
    commands: Vec<String>,
}

pub fn run(args: PruneArgs) -> Result<(), Error> {
    let runtime = family::runtime()?;
    let family = runtime.block_on(args.family.family())?;
    let retention = family
        .template
        .as_ref()
        .map(|t| t.retention)
        .unwrap_or_default();
    let keep = args.keep.or(retention.keep).ok_or_else(|| {
        Error::Usage(
            "say how many images to keep: --keep N, or `keep` in the template's `[retention]` table"
                .into(),
        )
    })?;
    let policy = Policy {
        keep,
        older_than: args.older_than.map(|d| d.0).or(retention.older_than),
        unused_for: args.unused_for.map(|d| d.0),
        include_shared: args.include_shared,
    };
    let (places, mut failures) = runtime.block_on(family::list(&family.stores));
    let how = How {
        dry_run: args.dry_run,
        disable: args.disable,
    };
    let (outcomes, stopped) = runtime.block_on(prune_all(places, policy, how));
    failures.extend(stopped);
    let name = &family.name;
    for o in &outcomes {
        if let Action::Failed(e, _) = &o.action {
            failures.push(match o.commands.as_slice() {
                [] => e.clone(),
                commands => format!("{e}; to finish by hand: {}", commands.join("; ")),
            });
        }
        match args.output.format {
            OutputFormat::Text => print!("{}", text(name, o, args.dry_run)),
            OutputFormat::Json => println!("{}", json(name, o)),
        }
    }
    eprintln!("{}", summary(&family.label(), &outcomes, how));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::BuildFailed(failures.join("\nerror: ")))
    }
}

/// What is done to an image that may go.
#[derive(Debug, Clone, Copy)]
struct How {
    dry_run: bool,
    /// Disable it rather than remove it.
    disable: bool,
}

/// Every place at once; within a place, one image after another. Also
/// returns why a place's work stopped, if any did.
async fn prune_all(places: Vec<Place>, policy: Policy, how: How) -> (Vec<Outcome>, Vec<String>) {
    let now = OffsetDateTime::now_utc();
    let mut work = tokio::task::JoinSet::new();
    for place in places {
        work.spawn(prune_place(place, policy, how, now));
    }
    let mut outcomes = Vec::new();
    let mut stopped = Vec::new();
    while let Some(joined) = work.join_next().await {
        match joined {
            Ok(done) => outcomes.extend(done),
            Err(e) => stopped.push(format!("pruning stopped: {e}")),
        }
    }
    outcomes.sort_by(|a, b| {
        a.image
            .image
            .location
            .cmp(&b.image.image.location)
            .then_with(|| newest_first(&a.image, &b.image))
    });
    (outcomes, stopped)
}

async fn prune_place(place: Place, policy: Policy, how: How, now: OffsetDateTime) -> Vec<Outcome> {
    let listing = &place.listing;
    let mut outcomes = Vec::new();
    for decision in retention::plan_place(&listing.images, &listing.held, &policy, now) {
        let action = match decision.verdict {
            Verdict::Keep(kept) => Action::Kept(kept),
            Verdict::Remove(stored) => {
                act(&place.store, &decision.image, stored, policy, how).await
            }
        };
        let store = &place.store;
        let commands = match &action {
            Action::WouldDisable | Action::Disabled => store.disable_commands(&decision.image),
            Action::Failed(_, Some(_)) if how.disable => store.disable_commands(&decision.image),
            Action::WouldRemove(s) | Action::Removed(s) | Action::Failed(_, Some(s)) => {
                store.commands(&decision.image, s)
            }
            Action::Kept(_) | Action::AlreadyDisabled | Action::Failed(_, None) => Vec::new(),
        };
        outcomes.push(Outcome {
            image: decision.image,
            action,
            commands,
        });
    }
    outcomes
}

async fn act(
    store: &Arc<dyn ImageStore>,
    image: &Listed,
    stored: Vec<Stored>,
    policy: Policy,
    how: How,
) -> Action {
    if !policy.include_shared {
        match store.shared(image).await {
            Ok(false) => {}
            Ok(true) => return Action::Kept(Kept::Shared),
            Err(e) => return Action::Failed(format!("{e}; kept"), None),
        }
    }
    if how.disable {
        return disable(store, image, how.dry_run).await;
    }
    if how.dry_run {
        return Action::WouldRemove(stored);
    }
    match store.remove(image, &stored).await {
        Ok(()) => Action::Removed(stored),
        Err(e) => Action::Failed(e.to_string(), Some(stored)),
    }
}

async fn disable(store: &Arc<dyn ImageStore>, image: &Listed, dry_run: bool) -> Action {
    if image.state == State::Disabled {
        return Action::AlreadyDisabled;
    }
    if !store.can_disable() {
        return Action::Failed(
            format!(
                "{} in {} cannot be disabled (prune without --disable removes it); kept",
                image.image.id, image.image.location
            ),
            None,
        );
    }
    if dry_run {
        return Action::WouldDisable;
    }
    match store.disable(image).await {
        Ok(()) => Action::Disabled,
        Err(e) => Action::Failed(e.to_string(), Some(Vec::new())),
    }
}

fn described(name: &str, i: &Listed) -> String {
    format!(
        "{} (build {} of {name} {})",
        i.image.id, i.image.build, i.image.version
    )
}

/// What else went with the image (its snapshots, or the files beside it).
fn with(image: &Listed, stored: &[Stored]) -> String {
    let others: Vec<&str> = stored
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| *id != image.image.id)
        .collect();
    if others.is_empty() {
        String::new()
    } else {
        format!(" and {}", others.join(", "))
    }
}

fn text(name: &str, o: &Outcome, dry_run: bool) -> String {
    let place = &o.image.image.location;
    let what = described(name, &o.image);
    match &o.action {
        Action::Kept(why) if dry_run => format!("{place}: would keep {what}: {why}\n"),
        Action::Kept(why) => format!("{place}: kept {what}: {why}\n"),
        Action::WouldRemove(stored) => {
            let mut out = format!("{place}: would remove {what}{}\n", with(&o.image, stored));
            for command in &o.commands {
                out.push_str(&format!("  {command}\n"));
            }
            out
        }
        Action::Removed(stored) => format!("{place}: removed {what}{}\n", with(&o.image, stored)),
        Action::WouldDisable => {
            let mut out = format!("{place}: would disable {what}; its snapshots stay\n");
            for command in &o.commands {
                out.push_str(&format!("  {command}\n"));
            }
            out
        }
        Action::Disabled => format!("{place}: disabled {what}; its snapshots stay\n"),
        Action::AlreadyDisabled => format!("{place}: already disabled {what}\n"),
        Action::Failed(_, _) => String::new(),
    }
}

fn json(name: &str, o: &Outcome) -> serde_json::Value {
    let i = &o.image.image;
    let (action, reason, removed, error) = match &o.action {
        Action::Kept(why) => ("kept", Some(why.to_string()), None, None),
        Action::WouldRemove(s) => ("would_remove", None, Some(s), None),
        Action::Removed(s) => ("removed", None, Some(s), None),
        Action::WouldDisable => ("would_disable", None, None, None),
        Action::Disabled => ("disabled", None, None, None),
        Action::AlreadyDisabled => ("already_disabled", None, None, None),
        Action::Failed(e, _) => ("failed", None, None, Some(e.clone())),
    };
    let removed: Option<Vec<&str>> = removed.map(|s| s.iter().map(|s| s.id.as_str()).collect());
    serde_json::json!({
        "schema": crate::render::json::SCHEMA,
        "event": "pruned",
        "name": name,
        "version": i.version,
        "build": i.build,
        "id": i.id,
        "location": i.location,
        "action": action,
        "reason": reason,
        "removed": removed,
        "commands": o.commands,
        "error": error,
    })
}

/// `web 1.2: removed 3 images (45 GiB), kept 2`, on stderr, with how
/// many failed when any did.
fn summary(label: &str, outcomes: &[Outcome], how: How) -> String {
    if how.disable {
        return disable_summary(label, outcomes, how.dry_run);
    }
    let dry_run = how.dry_run;
    let (mut gone, mut bytes, mut kept, mut failed) = (0, 0, 0, 0);
    for o in outcomes {
        match &o.action {
            Action::WouldRemove(s) | Action::Removed(s) => {
                gone += 1;
                bytes += s.iter().map(|s| s.size_bytes).sum::<u64>();
            }
            Action::Kept(_) => kept += 1,
            Action::Failed(_, _) => failed += 1,
            Action::WouldDisable | Action::Disabled | Action::AlreadyDisabled => {}
        }
    }
    let images = match gone {
        0 => "no image".to_string(),
        _ => format!(
            "{gone} image{} ({})",
            if gone == 1 { "" } else { "s" },
            size_text(bytes)
        ),
    };
    let mut line = if dry_run {
        format!("{label}: would remove {images} and keep {kept}")
    } else {
        format!("{label}: removed {images}, kept {kept}")
    };
    if failed > 0 {
        line.push_str(&format!(", {failed} failed (below)"));
    }
    line
}

/// `web 1.2: disabled 3 images, kept 2`, with how many were disabled
/// already and how many failed.
fn disable_summary(label: &str, outcomes: &[Outcome], dry_run: bool) -> String {
    let (mut disabled, mut already, mut kept, mut failed) = (0, 0, 0, 0);
    for o in outcomes {
        match &o.action {
            Action::WouldDisable | Action::Disabled => disabled += 1,
            Action::AlreadyDisabled => already += 1,
            Action::Kept(_) => kept += 1,
            Action::Failed(_, _) => failed += 1,
            Action::WouldRemove(_) | Action::Removed(_) => {}
        }
    }
    let images = format!("{disabled} image{}", if disabled == 1 { "" } else { "s" });
    let mut line = if dry_run {
        format!("{label}: would disable {images} and keep {kept}")
    } else {
        format!("{label}: disabled {images}, kept {kept}")
    };
    if already > 0 {
        line.push_str(&format!(", {already} already disabled"));
    }
    if failed > 0 {
        line.push_str(&format!(", {failed} failed (below)"));
    }
    line
}
