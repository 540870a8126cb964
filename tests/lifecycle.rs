//! Image lifecycle end to end: `images` lists a family newest first and
//! `prune` retires its old images, never one in use or shared, with exactly
//! their own snapshots (or files). AMIs against moto's EC2 and a real sshd;
//! local images fabricated as a qemu build leaves them.

mod common;

use std::collections::BTreeMap;

use common::ebs::{BUILD_LIMIT, COPY_REGION, REGION, World, describe};
use common::moto::{aws_vars, tag};
use common::test::Test;
use common::{Scratch, run};

/// One image of the family as EC2 describes it.
struct Ami {
    region: &'static str,
    id: String,
    build: u32,
    built_at: String,
    fingerprint: String,
    snapshots: Vec<String>,
}

/// Runs `imgbuild ARGS` in the world's folder against its moto.
fn imgbuild(w: &mut World, args: &[&str], expect: impl FnOnce(Test) -> Test) -> String {
    let scratch = std::mem::replace(&mut w.scratch, Scratch::new());
    let home = scratch.dir.path().to_path_buf();
    let test = Test::in_scratch(scratch)
        .envs(aws_vars(&w.endpoint, &home))
        .args(args)
        .limit(BUILD_LIMIT);
    let (out, scratch) = expect(test).run();
    w.scratch = scratch;
    common::text(&out.stdout)
}

/// The family's AMIs in `region`, by build number.
fn family(w: &World, region: &'static str) -> BTreeMap<u32, Ami> {
    w.ec2(region)
        .own_images()
        .iter()
        .filter(|i| tag(i.tags(), "imgbuild:name") == Some("web"))
        .map(|i| {
            let build: u32 = tag(i.tags(), "imgbuild:build").unwrap().parse().unwrap();
            let ami = Ami {
                region,
                id: i.image_id().unwrap().to_string(),
                build,
                built_at: tag(i.tags(), "imgbuild:built-at").unwrap().to_string(),
                fingerprint: tag(i.tags(), "imgbuild:fingerprint").unwrap()[..12].to_string(),
                snapshots: i
                    .block_device_mappings()
                    .iter()
                    .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
                    .map(str::to_string)
                    .collect(),
            };
            (build, ami)
        })
        .collect()
}

fn builds(w: &World, region: &'static str) -> Vec<u32> {
    family(w, region).keys().copied().collect()
}

fn snapshot_ids(w: &World, region: &str) -> Vec<String> {
    let mut ids: Vec<String> = w
        .ec2(region)
        .own_snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id())
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

/// A row of the `images` table, aligned as it is for these widths.
fn row(ami: &Ami, in_use: &str) -> String {
    format!(
        "{:<7}  {:<5}  {:<21}  {:<9}  {:<20}  {:<12}  {:<9}  {:<6}  {in_use}\n",
        "1.2", ami.build, ami.id, ami.region, ami.built_at, ami.fingerprint, "available", "15 GiB"
    )
}

fn kept(verb: &str, ami: &Ami, why: &str) -> String {
    format!(
        "{}: {verb} {} (build {} of web 1.2): {why}\n",
        ami.region, ami.id, ami.build
    )
}

fn removed(verb: &str, ami: &Ami, commands: bool) -> String {
    let mut out = format!(
        "{}: {verb} {} (build {} of web 1.2) and {}\n",
        ami.region,
        ami.id,
        ami.build,
        ami.snapshots.join(", ")
    );
    if commands {
        out.push_str(&format!(
            "  aws ec2 deregister-image --image-id {} --region {}\n",
            ami.id, ami.region
        ));
        for s in &ami.snapshots {
            out.push_str(&format!(
                "  aws ec2 delete-snapshot --snapshot-id {s} --region {}\n",
                ami.region
            ));
        }
    }
    out
}

#[test]
fn images_lists_both_regions_and_prune_keeps_the_newest_and_whatever_is_used() {
    let mut w = World::new();
    let template = w.template(
        &format!(
            "ami_name = \"web-${{image.version}}-${{image.build}}\"\nami_regions = [\"{COPY_REGION}\"]"
        ),
        "",
    );
    for _ in 0..5 {
        let out = run(&mut w.build(&template), BUILD_LIMIT);
        assert!(out.status.success(), "{}", describe(&out));
    }
    let (east, west) = (family(&w, REGION), family(&w, COPY_REGION));
    assert_eq!(east.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(west.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);

    // Build 1 runs an instance in us-east-1; a launch template names build 2
    // in eu-west-1; build 1 in eu-west-1 is shared with another account.
    let ec2 = w.ec2(REGION);
    let launched = ec2
        .block(
            ec2.client
                .run_instances()
                .image_id(&east[&1].id)
                .min_count(1)
                .max_count(1)
                .send(),
        )
        .expect("RunInstances");
    let instance = launched.instances()[0].instance_id().unwrap().to_string();
    let west_ec2 = w.ec2(COPY_REGION);
    let template_out = west_ec2
        .block(
            west_ec2
                .client
                .create_launch_template()
                .launch_template_name("web")
                .launch_template_data(
                    aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                        .image_id(&west[&2].id)
                        .build(),
                )
                .send(),
        )
        .expect("CreateLaunchTemplate");
    let lt = template_out
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap()
        .to_string();
    west_ec2
        .block(
            west_ec2
                .client
                .modify_image_attribute()
                .image_id(&west[&1].id)
                .launch_permission(
                    aws_sdk_ec2::types::LaunchPermissionModifications::builder()
                        .add(
                            aws_sdk_ec2::types::LaunchPermission::builder()
                                .user_id("111122223333")
                                .build(),
                        )
                        .build(),
                )
                .send(),
        )
        .expect("ModifyImageAttribute");
    let instance_use = format!("instance {instance} (running)");
    let template_use = format!("launch template {lt} (web) version 1 (default)");

    // Newest first; a build's copy beside it.
    let mut table = format!(
        "{:<7}  {:<5}  {:<21}  {:<9}  {:<20}  {:<12}  {:<9}  {:<6}  IN USE\n",
        "VERSION", "BUILD", "ID", "LOCATION", "CREATED", "FINGERPRINT", "STATE", "SIZE"
    );
    for build in (1..=5).rev() {
        let west_use = if build == 2 {
            template_use.as_str()
        } else {
            "no"
        };
        let east_use = if build == 1 {
            instance_use.as_str()
        } else {
            "no"
        };
        table.push_str(&row(&west[&build], west_use));
        table.push_str(&row(&east[&build], east_use));
    }
    imgbuild(&mut w, &["images", "template.toml"], |t| {
        t.stdout(&table).stderr("")
    });

    let json = imgbuild(
        &mut w,
        &["images", "template.toml", "--output", "json"],
        |t| t,
    );
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0]["event"], "image");
    assert_eq!(rows[0]["id"], west[&5].id.as_str());
    assert_eq!(rows[0]["build"], 5);
    assert_eq!(rows[0]["size_bytes"], 15u64 << 30);
    assert_eq!(rows[9]["uses"], serde_json::json!([instance_use]));
    assert_eq!(rows[9]["in_use"], true);

    // --region narrows the places.
    let only_west: String = table
        .lines()
        .filter(|l| !l.contains(REGION))
        .map(|l| format!("{l}\n"))
        .collect();
    imgbuild(
        &mut w,
        &["images", "template.toml", "--region", COPY_REGION],
        |t| t.stdout(&only_west),
    );

    // Without the template: the name, and the regions to look in.
    imgbuild(
        &mut w,
        &[
            "images",
            "--name",
            "web",
            "--region",
            &format!("{REGION},{COPY_REGION}"),
        ],
        |t| t.stdout(&table),
    );

    // The plan, and the commands; nothing goes.
    let before = (snapshot_ids(&w, REGION), snapshot_ids(&w, COPY_REGION));
    let shared = "shared with other accounts (--include-shared removes it)";
    let plan = [
        kept("would keep", &west[&5], "newest 1"),
        kept("would keep", &west[&4], "newest 2"),
        removed("would remove", &west[&3], true),
        kept("would keep", &west[&2], &format!("in use: {template_use}")),
        kept("would keep", &west[&1], shared),
        kept("would keep", &east[&5], "newest 1"),
        kept("would keep", &east[&4], "newest 2"),
        removed("would remove", &east[&3], true),
        removed("would remove", &east[&2], true),
        kept("would keep", &east[&1], &format!("in use: {instance_use}")),
    ]
    .concat();
    imgbuild(
        &mut w,
        &["prune", "template.toml", "--keep", "2", "--dry-run"],
        |t| {
            t.stdout(&plan)
                .stderr("web 1.2: would remove 3 images (45 GiB) and keep 7\n")
        },
    );
    assert_eq!(family(&w, REGION).len() + family(&w, COPY_REGION).len(), 10);
    assert_eq!(
        (snapshot_ids(&w, REGION), snapshot_ids(&w, COPY_REGION)),
        before
    );

    // For real: exactly those images and their snapshots, in both regions.
    let done = [
        kept("kept", &west[&5], "newest 1"),
        kept("kept", &west[&4], "newest 2"),
        removed("removed", &west[&3], false),
        kept("kept", &west[&2], &format!("in use: {template_use}")),
        kept("kept", &west[&1], shared),
        kept("kept", &east[&5], "newest 1"),
        kept("kept", &east[&4], "newest 2"),
        removed("removed", &east[&3], false),
        removed("removed", &east[&2], false),
        kept("kept", &east[&1], &format!("in use: {instance_use}")),
    ]
    .concat();
    imgbuild(&mut w, &["prune", "template.toml", "--keep", "2"], |t| {
        t.stdout(&done)
            .stderr("web 1.2: removed 3 images (45 GiB), kept 7\n")
    });
    assert_eq!(builds(&w, REGION), [1, 4, 5]);
    assert_eq!(builds(&w, COPY_REGION), [1, 2, 4, 5]);
    let gone = |before: &[String], amis: &[&Ami]| -> Vec<String> {
        before
            .iter()
            .filter(|s| !amis.iter().any(|a| a.snapshots.contains(s)))
            .cloned()
            .collect()
    };
    assert_eq!(
        snapshot_ids(&w, REGION),
        gone(&before.0, &[&east[&2], &east[&3]])
    );
    assert_eq!(snapshot_ids(&w, COPY_REGION), gone(&before.1, &[&west[&3]]));

    // Shared images go only when asked; in-use ones never.
    imgbuild(
        &mut w,
        &["prune", "template.toml", "--keep", "2", "--include-shared"],
        |t| {
            t.stdout_contains(&removed("removed", &west[&1], false))
                .stdout_contains(&kept("kept", &east[&1], &format!("in use: {instance_use}")))
                .stderr("web 1.2: removed 1 image (15 GiB), kept 6\n")
        },
    );
    assert_eq!(builds(&w, COPY_REGION), [2, 4, 5]);
}

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
    Test::new()
        .args(["images"])
        .stderr_contains("error: the following required arguments were not provided:\n  <FILE>\n")
        .status(2)
        .run();
}
