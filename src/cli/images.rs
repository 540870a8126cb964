//! `imgbuild images FILE`: every image of the family in every place the
//! template names (or `--region`), newest first, with its build number,
//! state, what uses it and what it costs in storage.

use clap::Args;

use super::family::{self, FamilyArgs};
use super::{OutputArgs, OutputFormat};
use crate::error::Error;
use crate::family::FamilyImage;
use crate::family::listing::{Listed, newest_first, size_text};
use crate::fingerprint;

#[derive(Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    family: FamilyArgs,

    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: ImagesArgs) -> Result<(), Error> {
    let runtime = family::runtime()?;
    let found = args.family.family();
    let family = runtime.block_on(found)?;
    let (places, failures) = runtime.block_on(family::list(&family.stores));
    let mut rows: Vec<&Listed> = places.iter().flat_map(|p| &p.listing.images).collect();
    rows.sort_by(|a, b| newest_first(a, b));
    match args.output.format {
        OutputFormat::Text if rows.is_empty() => {
            let searched: Vec<&str> = places.iter().map(|p| p.store.location()).collect();
            if failures.is_empty() {
                eprintln!(
                    "no images of {} in {}",
                    family.label(),
                    if searched.is_empty() {
                        "any place (no source makes images)".to_string()
                    } else {
                        searched.join(", ")
                    }
                );
            }
        }
        OutputFormat::Text => print!("{}", table(&rows)),
        OutputFormat::Json => {
            for row in &rows {
                println!("{}", json_row(&family.name, row));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::BuildFailed(failures.join("\nerror: ")))
    }
}

const HEADINGS: [&str; 9] = [
    "VERSION",
    "BUILD",
    "ID",
    "LOCATION",
    "CREATED",
    "FINGERPRINT",
    "STATE",
    "SIZE",
    "IN USE",
];

/// One aligned line per image under a heading; the last column (what uses
/// it) is as long as it needs to be.
pub fn table(rows: &[&Listed]) -> String {
    let cells: Vec<[String; 9]> = rows.iter().map(|r| cells(r)).collect();
    let mut widths = HEADINGS.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: [&str; 9]| {
        let mut out = String::new();
        for (n, cell) in row.iter().enumerate() {
            if n + 1 == row.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[n]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(HEADINGS);
    for row in &cells {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

fn cells(r: &Listed) -> [String; 9] {
    let i = &r.image;
    [
        i.version.clone(),
        i.build.to_string(),
        i.id.clone(),
        i.location.clone(),
        i.built_at
            .map(FamilyImage::time_text)
            .unwrap_or_else(|| "-".into()),
        i.fingerprint
            .as_deref()
            .map(|f| fingerprint::short(f).to_string())
            .unwrap_or_else(|| "-".into()),
        r.state.to_string(),
        size_text(r.size_bytes()),
        if r.in_use() {
            r.uses.join(", ")
        } else {
            "no".into()
        },
    ]
}

/// One image as a JSON object on its own line (`event`: `image`).
pub fn json_row(name: &str, r: &Listed) -> serde_json::Value {
    let i = &r.image;
    let stored: Vec<_> = r
        .stored
        .iter()
        .map(|s| serde_json::json!({ "id": s.id, "size_bytes": s.size_bytes }))
        .collect();
    serde_json::json!({
        "schema": crate::render::json::SCHEMA,
        "event": "image",
        "name": name,
        "version": i.version,
        "build": i.build,
        "id": i.id,
        "location": i.location,
        "created": i.built_at.map(FamilyImage::time_text),
        "fingerprint": i.fingerprint,
        "state": r.state.to_string(),
        "in_use": r.in_use(),
        "uses": r.uses,
        "last_launched": r.last_launched.map(FamilyImage::time_text),
        "size_bytes": r.size_bytes(),
        "stored": stored,
    })
}
