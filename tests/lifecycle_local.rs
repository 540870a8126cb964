//! Image lifecycle for local images, fabricated as a qemu build leaves
//! them: `images` lists them newest first, `prune` removes the older ones
//! with the files beside them; `[retention]` and its errors.

mod common;

use common::test::Test;

/// A local image as a qemu build leaves it: its folder under `output/`
/// with the qcow2, its checksum, metadata and package list.
fn fabricate(test: Test, build: u32, built_at: &str) -> Test {
    let stem = format!("output/web-1.2-{build}/web-1.2-{build}");
    let metadata = format!(
        r#"{{"name":"web","version":"1.2","build":{build},"build_id":"b{build}","built_at":"{built_at}","format":"qcow2","compression":"zstd","sha256":"00","size_bytes":4,"base_id":"base","fingerprint":"{build}{build}{build}4567890abcdef"}}
"#
    );
    test.file(&format!("{stem}.qcow2"), "disk")
        .file(&format!("{stem}.qcow2.sha256"), "00  x\n")
        .file(&format!("{stem}.json"), &metadata)
        .file(&format!("{stem}.packages.json"), "[]\n")
}

const LOCAL_TEMPLATE: &str = "name = \"web\"\nversion = \"1.2\"\n\n[source.local]\ntype = \"qemu\"\nbase_image = \"base.qcow2\"\n";

#[test]
fn local_images_are_listed_and_pruned_to_the_newest() {
    let mut test = Test::new().file("t.toml", LOCAL_TEMPLATE);
    for (build, at) in [
        (1, "2026-11-01T02:00:00Z"),
        (2, "2026-11-08T02:00:00Z"),
        (3, "2026-11-15T02:00:00Z"),
    ] {
        test = fabricate(test, build, at);
    }
    let meta_len = |build: u32| {
        std::fs::metadata(test.path(&format!("output/web-1.2-{build}/web-1.2-{build}.json")))
            .unwrap()
            .len()
    };
    // qcow2 (4) + checksum (6) + packages (3) + metadata.
    let size = |build| format!("{} B", 13 + meta_len(build));
    let line = |cells: [&str; 9]| {
        let w = [7, 5, 32, 8, 20, 12, 9, size(1).len(), 0];
        let mut out = String::new();
        for (cell, width) in cells.iter().zip(w) {
            out.push_str(&format!("{cell:<width$}  "));
        }
        out.trim_end().to_string() + "\n"
    };
    let image = |build: u32, at: &str| {
        line([
            "1.2",
            &build.to_string(),
            &format!("output/web-1.2-{build}/web-1.2-{build}.qcow2"),
            "local",
            at,
            &format!("{build}{build}{build}4567890ab"),
            "available",
            &size(build),
            "no",
        ])
    };
    let table = [
        line([
            "VERSION",
            "BUILD",
            "ID",
            "LOCATION",
            "CREATED",
            "FINGERPRINT",
            "STATE",
            "SIZE",
            "IN USE",
        ]),
        image(3, "2026-11-15T02:00:00Z"),
        image(2, "2026-11-08T02:00:00Z"),
        image(1, "2026-11-01T02:00:00Z"),
    ]
    .concat();
    let (_, scratch) = test
        .args(["images", "t.toml"])
        .stdout(&table)
        .stderr("")
        .run();

    let files = |build: u32| {
        let stem = format!("output/web-1.2-{build}/web-1.2-{build}");
        format!("{stem}.qcow2.sha256, {stem}.json, {stem}.packages.json")
    };
    let plan = format!(
        "local: would keep output/web-1.2-3/web-1.2-3.qcow2 (build 3 of web 1.2): newest 1\n\
         local: would remove output/web-1.2-2/web-1.2-2.qcow2 (build 2 of web 1.2) and {}\n  \
         rm -f -- output/web-1.2-2/web-1.2-2.qcow2 {}\n  rmdir -- output/web-1.2-2\n\
         local: would remove output/web-1.2-1/web-1.2-1.qcow2 (build 1 of web 1.2) and {}\n  \
         rm -f -- output/web-1.2-1/web-1.2-1.qcow2 {}\n  rmdir -- output/web-1.2-1\n",
        files(2),
        files(2).replace(",", ""),
        files(1),
        files(1).replace(",", ""),
    );
    let (_, scratch) = Test::in_scratch(scratch)
        .args(["prune", "t.toml", "--keep", "1", "--dry-run"])
        .stdout(&plan)
        .stderr_contains("web 1.2: would remove 2 images (")
        .run();
    let (out, scratch) = Test::in_scratch(scratch)
        .args([
            "prune",
            "t.toml",
            "--keep",
            "1",
            "--dry-run",
            "--output",
            "json",
        ])
        .run();
    let lines: Vec<serde_json::Value> = common::text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let actions: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["build"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [("kept", 3), ("would_remove", 2), ("would_remove", 1)]
    );
    assert_eq!(lines[0]["reason"], "newest 1");
    assert_eq!(lines[2]["commands"][1], "rmdir -- output/web-1.2-1");
    assert!(scratch.path("output/web-1.2-1/web-1.2-1.qcow2").exists());

    // Younger than --older-than: kept, and said so.
    let (_, scratch) = Test::in_scratch(scratch)
        .args(["prune", "t.toml", "--keep", "1", "--older-than", "3650d"])
        .stdout_contains(
            "local: kept output/web-1.2-1/web-1.2-1.qcow2 (build 1 of web 1.2): built 2026-11-01T02:00:00Z, not older than 3650d\n",
        )
        .stderr("web 1.2: removed no image, kept 3\n")
        .run();

    // The template's [retention] says how many; no flag needed.
    let template = format!("{LOCAL_TEMPLATE}\n[retention]\nkeep = 1\n");
    let (_, scratch) = Test::in_scratch(scratch)
        .file("t.toml", &template)
        .args(["prune", "t.toml"])
        .stdout(&format!(
            "local: kept output/web-1.2-3/web-1.2-3.qcow2 (build 3 of web 1.2): newest 1\n\
             local: removed output/web-1.2-2/web-1.2-2.qcow2 (build 2 of web 1.2) and {}\n\
             local: removed output/web-1.2-1/web-1.2-1.qcow2 (build 1 of web 1.2) and {}\n",
            files(2),
            files(1)
        ))
        .run();
    let left: Vec<String> = std::fs::read_dir(scratch.path("output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["web-1.2-3"]);
    assert_eq!(
        std::fs::read_dir(scratch.path("output/web-1.2-3"))
            .unwrap()
            .count(),
        4
    );
}

#[test]
fn prune_needs_a_count_and_retention_is_checked_where_it_is_written() {
    Test::new()
        .file("t.toml", LOCAL_TEMPLATE)
        .args(["prune", "t.toml"])
        .stderr("error: say how many images to keep: --keep N, or `keep` in the template's `[retention]` table\n")
        .status(2)
        .run();
    Test::new()
        .file(
            "t.toml",
            &format!("{LOCAL_TEMPLATE}\n[retention]\nkeep = -1\nolder_than = \"soon\"\nkeep_last = 3\n"),
        )
        .args(["validate", "t.toml"])
        .stderr(
            "error: t.toml:9:8: `retention.keep` must be a whole number, 0 or more\n 9 | keep = -1\n   |        ^^\n  help: the newest this many images of each region stay, e.g. `keep = 5`\n\nerror: t.toml:10:14: `retention.older_than`: invalid duration `soon` (expected number at 0); write e.g. \"30d\" or \"12h\"\n 10 | older_than = \"soon\"\n    |              ^^^^^^\n\nerror: t.toml:11:1: unknown key `keep_last` in `[retention]`\n 11 | keep_last = 3\n    | ^^^^^^^^^\n\n3 errors found\n",
        )
        .status(2)
        .run();
    let mut help = Test::new().args(["prune", "--help"]);
    for env in [
        "IMGBUILD_TEMPLATE",
        "IMGBUILD_FAMILY_NAME",
        "IMGBUILD_FAMILY_VERSION",
        "IMGBUILD_REGIONS",
        "IMGBUILD_KEEP",
        "IMGBUILD_OLDER_THAN",
        "IMGBUILD_UNUSED_FOR",
        "IMGBUILD_INCLUDE_SHARED",
        "IMGBUILD_DRY_RUN",
        "IMGBUILD_DISABLE",
        "IMGBUILD_OUTPUT",
    ] {
        help = help.stdout_contains(env);
    }
    help.run();
    Test::new()
        .args(["images"])
        .stderr_contains("error: the following required arguments were not provided:\n  <FILE>\n")
        .status(2)
        .run();
}

#[test]
fn a_local_image_cannot_be_disabled_and_stays() {
    let mut test = Test::new().file("t.toml", LOCAL_TEMPLATE);
    for (build, at) in [(1, "2026-11-01T02:00:00Z"), (2, "2026-11-08T02:00:00Z")] {
        test = fabricate(test, build, at);
    }
    let (_, scratch) = test
        .args(["prune", "t.toml", "--keep", "1", "--disable"])
        .stdout("local: kept output/web-1.2-2/web-1.2-2.qcow2 (build 2 of web 1.2): newest 1\n")
        .stderr(
            "web 1.2: disabled 0 images, kept 1, 1 failed (below)
error: output/web-1.2-1/web-1.2-1.qcow2 in local cannot be disabled (prune without --disable removes it); kept
",
        )
        .status(1)
        .run();
    assert!(scratch.path("output/web-1.2-1/web-1.2-1.qcow2").exists());
}
