//! The README's quick start, exactly as README.md writes it, run in a fresh
//! copy of the repository the way a newcomer runs it: it must set up the
//! machine and build the example image, with a checksum that verifies, at
//! the path the README names.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{run, text};

const LIMIT: Duration = Duration::from_secs(40 * 60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first `sh` block under "## Quick start": the newcomer's command.
fn quick_start_command(readme: &str) -> String {
    let section = readme
        .split("\n## Quick start")
        .nth(1)
        .expect("README.md has a Quick start section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .expect("the Quick start section has an sh block");
    let command = block.split("\n```").next().unwrap().trim();
    assert!(
        !command.is_empty() && !command.contains('\n'),
        "the quick start is one command line: {command:?}"
    );
    command.to_string()
}

/// Where the README says the image lands: "The image lands in `PATH`".
fn promised_image(readme: &str) -> PathBuf {
    let rest = readme
        .split("The image lands in `")
        .nth(1)
        .expect("README.md says where the image lands");
    PathBuf::from(rest.split('`').next().unwrap())
}

/// The files git knows of in this checkout (committed or not, never
/// ignored), copied as they are in the working tree.
fn fresh_copy(to: &Path) {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo())
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git ls-files: {}", text(&out.stderr));
    for rel in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).expect("utf-8 path"));
        let from = repo().join(rel);
        if !from.exists() {
            continue; // deleted in the working tree
        }
        let dest = to.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&from, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

#[test]
fn the_readme_quick_start_builds_the_example_image() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let command = quick_start_command(&readme);
    let image = promised_image(&readme);

    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("imgbuild");
    fresh_copy(&copy);

    // Its own target folder (kept between runs, inside the suite's), so the
    // copy's `cargo run` never replaces the binary the other suites test.
    // It starts as a copy of the suite's compiled dependencies: compiling
    // them again would take ten minutes and prove nothing about the README.
    let suite_profile = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let target = suite_profile.parent().unwrap().join("quickstart");
    if !target.exists() {
        fs::create_dir_all(&target).unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&suite_profile)
            .arg(target.join("debug"))
            .status()
            .unwrap();
        assert!(copied.success(), "copying {}", suite_profile.display());
    }
    let out = run(
        Command::new("bash")
            .args(["-c", &command])
            .current_dir(&copy)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("NO_COLOR"),
        LIMIT,
    );
    let shown = format!(
        "`{command}`\n--- stdout\n{}--- stderr\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(out.status.success(), "the quick start failed\n{shown}");

    let image = copy.join(image);
    assert!(image.is_file(), "no image at {}\n{shown}", image.display());
    let dir = image.parent().unwrap();
    let sums = format!("{}.sha256", image.file_name().unwrap().to_string_lossy());
    let check = run(
        Command::new("sha256sum")
            .args(["-c", &sums])
            .current_dir(dir),
        Duration::from_secs(120),
    );
    assert!(
        check.status.success(),
        "sha256sum -c {sums}: {}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    let info = run(
        Command::new("qemu-img")
            .args(["info", "--output", "json"])
            .arg(&image),
        Duration::from_secs(60),
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("qemu-img info");
    assert_eq!(info["format"], "qcow2", "{info}");
}

#[test]
fn the_quick_start_is_read_from_the_readme() {
    let readme = "# x\n\n## Quick start\n\nIntro.\n\n```sh\nscripts/setup && cargo run -- build t.toml\n```\n\nThe image lands in `output/a-1/a-1.qcow2`, with more.\n";
    assert_eq!(
        quick_start_command(readme),
        "scripts/setup && cargo run -- build t.toml"
    );
    assert_eq!(
        promised_image(readme),
        PathBuf::from("output/a-1/a-1.qcow2")
    );
}
