//! Retiring images gently, end to end against moto's EC2 and a real sshd:
//! `deprecate_after` at build time and `prune --disable`. moto implements
//! neither EnableImageDeprecation nor DisableImage, so these show what
//! happens whenever EC2 refuses the call: the images and their snapshots
//! stay, and each is named with the command that finishes the job by hand.

mod common;

use common::ebs::{BUILD_LIMIT, COPY_REGION, REGION, World, describe};
use common::moto::aws_vars;
use common::test::Test;
use common::{Scratch, run, text};

#[test]
fn deprecate_after_asks_for_every_image_and_a_refusal_only_warns() {
    let mut w = World::new();
    // moto answers the call it lacks with a 500, which the SDK would retry
    // for a minute by default.
    w.env.push(("AWS_MAX_ATTEMPTS", "1".into()));
    let template = w.template(
        &format!("deprecate_after = \"90d\"\nami_regions = [\"{COPY_REGION}\"]"),
        "",
    );
    let before = std::time::SystemTime::now();
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let after = std::time::SystemTime::now();
    let log = describe(&out);
    assert!(out.status.success(), "{log}");

    let manifest = w.manifest();
    let amis = &manifest["builds"][0]["amis"];
    let stderr = text(&out.stderr);
    let calls = w.moto.calls("EnableImageDeprecation");
    assert_eq!(calls.len(), 2, "one call per image\n{log}");
    for region in [REGION, COPY_REGION] {
        let ami = amis[region].as_str().expect("ami of the region");
        assert_eq!(w.ec2(region).own_images().len(), 1, "{region}\n{log}");
        let call = calls
            .iter()
            .find(|c| c.get("ImageId").map(String::as_str) == Some(ami))
            .unwrap_or_else(|| panic!("no EnableImageDeprecation for {ami}\n{log}"));
        let at = call.get("DeprecateAt").expect("DeprecateAt");
        let at = humantime::parse_rfc3339_weak(at.trim_end_matches('Z'))
            .unwrap_or_else(|e| panic!("DeprecateAt `{at}`: {e}"));
        let ninety_days = std::time::Duration::from_secs(90 * 86_400);
        let second = std::time::Duration::from_secs(1);
        assert!(
            at + second >= before + ninety_days && at <= after + ninety_days,
            "DeprecateAt {call:?} is not 90 days after the build\n{log}"
        );
        let warning = stderr
            .lines()
            .find(|l| l.contains(&format!("could not deprecate {ami} in {region} from ")))
            .unwrap_or_else(|| panic!("no warning for {ami}\n{log}"));
        assert!(
            warning.contains("the image itself is fine; to deprecate it by hand: ")
                && warning.contains(&format!(
                    "aws ec2 enable-image-deprecation --image-id {ami} --deprecate-at "
                ))
                && warning.ends_with(&format!("Z --region {region}")),
            "{warning}"
        );
    }
}

#[test]
fn deprecate_after_is_checked_where_it_is_written() {
    let source = |name: &str, after: &str| {
        format!(
            "[source.{name}]\ntype = \"amazon-ebs\"\nregion = \"eu-west-3\"\nsource_ami = \"ami-0123456789abcdef0\"\ndeprecate_after = \"{after}\"\n"
        )
    };
    let template = format!(
        "name = \"web\"\nversion = \"1.2\"\n\n{}\n{}\n{}",
        source("never", "0s"),
        source("far", "4000d"),
        source("vague", "soon"),
    );
    Test::new()
        .file("t.toml", &template)
        .args(["validate", "t.toml"])
        .stdout("")
        .stderr(
            r#"error: t.toml:8:19: `deprecate_after` must be longer than 0s
 8 | deprecate_after = "0s"
   |                   ^^^^
  help: write e.g. "90d"; leave it out to never deprecate

error: t.toml:14:19: `deprecate_after` may be at most "3650d": EC2 takes a deprecation time up to ten years ahead
 14 | deprecate_after = "4000d"
    |                   ^^^^^^^

error: t.toml:20:19: invalid duration `soon` (expected number at 0); write e.g. "30s", "5m" or "1h"
 20 | deprecate_after = "soon"
    |                   ^^^^^^

3 errors found
"#,
        )
        .status(2)
        .run();
}

/// Runs `imgbuild ARGS` in the world's folder against its moto, one try per call.
fn imgbuild(w: &mut World, args: &[&str], expect: impl FnOnce(Test) -> Test) {
    let scratch = std::mem::replace(&mut w.scratch, Scratch::new());
    let home = scratch.dir.path().to_path_buf();
    let test = Test::in_scratch(scratch)
        .envs(aws_vars(&w.endpoint, &home))
        .env("AWS_MAX_ATTEMPTS", "1")
        .args(args)
        .limit(BUILD_LIMIT);
    let (_, scratch) = expect(test).run();
    w.scratch = scratch;
}

#[test]
fn prune_disable_asks_to_disable_and_keeps_every_snapshot() {
    let mut w = World::new();
    let template = w.template("ami_name = \"web-${image.version}-${image.build}\"", "");
    for _ in 0..3 {
        let out = run(&mut w.build(&template), BUILD_LIMIT);
        assert!(out.status.success(), "{}", describe(&out));
    }
    let ec2 = w.ec2(REGION);
    let by_name = |name: &str| {
        ec2.own_images()
            .iter()
            .find(|i| i.name() == Some(name))
            .and_then(|i| i.image_id())
            .unwrap_or_else(|| panic!("no image {name}"))
            .to_string()
    };
    let ids: Vec<String> = (1..=3).map(|b| by_name(&format!("web-1.2-{b}"))).collect();
    let snapshots = ec2.own_snapshots().len();
    let disable = |id: &str| format!("aws ec2 disable-image --image-id {id} --region {REGION}");

    imgbuild(
        &mut w,
        &[
            "prune",
            "template.toml",
            "--keep",
            "1",
            "--disable",
            "--dry-run",
        ],
        |t| {
            t.stdout(&format!(
                "{REGION}: would keep {} (build 3 of web 1.2): newest 1
{REGION}: would disable {} (build 2 of web 1.2); its snapshots stay
  {}
{REGION}: would disable {} (build 1 of web 1.2); its snapshots stay
  {}
",
                ids[2],
                ids[1],
                disable(&ids[1]),
                ids[0],
                disable(&ids[0])
            ))
            .stderr("web 1.2: would disable 2 images and keep 1\n")
        },
    );
    assert!(w.moto.calls("DisableImage").is_empty());

    imgbuild(
        &mut w,
        &["prune", "template.toml", "--keep", "1", "--disable"],
        |t| {
            t.stdout(&format!(
                "{REGION}: kept {} (build 3 of web 1.2): newest 1\n",
                ids[2]
            ))
            .stderr_contains("web 1.2: disabled 0 images, kept 1, 2 failed (below)\n")
            .stderr_contains(&format!(
                "error: disabling {} in {REGION}: DisableImage failed: ",
                ids[1]
            ))
            .stderr_contains(&format!("; to finish by hand: {}\n", disable(&ids[1])))
            .stderr_contains(&format!("; to finish by hand: {}\n", disable(&ids[0])))
            .status(1)
        },
    );
    let asked: Vec<String> = w
        .moto
        .calls("DisableImage")
        .iter()
        .filter_map(|c| c.get("ImageId").cloned())
        .collect();
    assert_eq!(asked, [ids[1].clone(), ids[0].clone()]);
    assert_eq!(ec2.own_images().len(), 3, "nothing deregistered");
    assert_eq!(ec2.own_snapshots().len(), snapshots, "every snapshot stays");
    assert!(w.moto.calls("DeregisterImage").is_empty());
    assert!(w.moto.calls("DeleteSnapshot").is_empty());
}
