//! `imgbuild diff`: the package changes a build recorded (from its
//! manifest), or the changes between two inventories: local images, their
//! `.packages.json` files, or manifests (an AMI's inventory lives in the
//! manifest of the build that made it).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::Error;
use crate::inventory::Inventory;
use crate::inventory::diff::{Changes, diff};

#[derive(Args)]
pub struct DiffArgs {
    /// One manifest: the changes each build recorded. Two files: the
    /// changes from the first to the second (each a local image `.qcow2`,
    /// its `.packages.json`, or a manifest).
    #[arg(value_name = "FILE", num_args = 1..=2, default_value = "imgbuild-manifest.json")]
    files: Vec<PathBuf>,
}

pub fn run(args: DiffArgs) -> Result<(), Error> {
    match args.files.as_slice() {
        [manifest] => {
            print!("{}", recorded(manifest)?);
            Ok(())
        }
        [old, new] => {
            let (before, after) = (inventory(old)?, inventory(new)?);
            let heading = format!("packages from {} to {}", old.display(), new.display());
            print!("{}", diff(&before, &after).report(&heading));
            Ok(())
        }
        _ => Err(Error::Usage(
            "give one manifest, or two files to compare".into(),
        )),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{} is not JSON: {e}", path.display())))
}

/// What each build in a manifest recorded, one block per build.
fn recorded(manifest: &Path) -> Result<String, Error> {
    let json = read_json(manifest)?;
    let builds = json["builds"].as_array().ok_or_else(|| {
        Error::Usage(format!(
            "{} is not an imgbuild manifest",
            manifest.display()
        ))
    })?;
    let mut out = String::new();
    for b in builds {
        let name = b["name"].as_str().unwrap_or("?");
        match b.get("package_changes") {
            Some(changes) => {
                let since = changes["compared_with"]
                    .as_str()
                    .unwrap_or("the previous build");
                let c: Changes = serde_json::from_value(changes.clone()).map_err(|e| {
                    Error::Usage(format!("{}: build `{name}`: {e}", manifest.display()))
                })?;
                out.push_str(&c.report(&format!("{name}: packages since {since}")));
            }
            None if b["unchanged"] == true => {
                out.push_str(&format!("{name}: unchanged, no new image\n"));
            }
            None => out.push_str(&format!("{name}: no earlier inventory to compare with\n")),
        }
    }
    Ok(out)
}

/// The inventory in a `.packages.json`, beside a `.qcow2`, or in a manifest's first build that has one.
fn inventory(path: &Path) -> Result<Inventory, Error> {
    let file = if path.extension().is_some_and(|x| x == "qcow2") {
        path.with_extension("packages.json")
    } else {
        path.to_path_buf()
    };
    let json = read_json(&file)?;
    let found = match json.get("builds").and_then(|b| b.as_array()) {
        Some(builds) => builds.iter().find_map(Inventory::from_manifest),
        None => serde_json::from_value(json).ok(),
    };
    found.ok_or_else(|| Error::Usage(format!("{} holds no package inventory", file.display())))
}
