//! Image lifecycle end to end against moto's EC2 and a real sshd: `images`
//! lists a family's AMIs in two regions newest first, and `prune` retires
//! the old ones, never one in use or shared, with exactly their snapshots.

mod common;

use std::collections::BTreeMap;

use common::ebs::{BUILD_LIMIT, COPY_REGION, REGION, World, describe};
use common::links::FaultProxy;
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
    let shared = "shared with other accounts, or its snapshots are (--include-shared removes it)";
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

#[test]
fn an_image_that_cannot_go_is_named_with_the_commands_and_the_rest_still_go() {
    let mut w = World::new();
    let template = w.template("", "");
    for _ in 0..3 {
        let out = run(&mut w.build(&template), BUILD_LIMIT);
        assert!(out.status.success(), "{}", describe(&out));
    }
    let east = family(&w, REGION);
    // Every DeregisterImage answered 503 or throttled, and no SDK retries.
    let proxy = FaultProxy::start(
        &w.moto.endpoint(),
        7,
        1.0,
        &["DeregisterImage"],
        w.scratch.path("proxy.log"),
    );
    w.endpoint = proxy.endpoint();
    let failed = |ami: &Ami| {
        format!(
            "error: deregistering {} in {REGION}: DeregisterImage failed: ",
            ami.id
        )
    };
    let by_hand = |ami: &Ami| {
        format!(
            "; to finish by hand: aws ec2 deregister-image --image-id {} --region {REGION}; aws ec2 delete-snapshot --snapshot-id {} --region {REGION}\n",
            ami.id, ami.snapshots[0]
        )
    };
    imgbuild(&mut w, &["prune", "template.toml", "--keep", "1"], |t| {
        t.env("AWS_MAX_ATTEMPTS", "1")
            .stdout(&kept("kept", &east[&3], "newest 1"))
            .stderr_contains("web 1.2: removed no image, kept 1, 2 failed (below)\n")
            .stderr_contains(&failed(&east[&2]))
            .stderr_contains(&by_hand(&east[&2]))
            .stderr_contains(&failed(&east[&1]))
            .stderr_contains(&by_hand(&east[&1]))
            .status(1)
    });
    assert_eq!(builds(&w, REGION), [1, 2, 3]);
    assert_eq!(
        proxy
            .calls()
            .iter()
            .filter(|(a, _)| a == "DeregisterImage")
            .count(),
        2
    );
}

#[test]
fn an_image_whose_snapshots_other_accounts_may_copy_counts_as_shared() {
    let mut w = World::new();
    // The older build gives its snapshots to another account, the newer does not.
    let given = w.template("snapshot_users = [\"111122223333\"]", "");
    let out = run(&mut w.build(&given), BUILD_LIMIT);
    assert!(out.status.success(), "{}", describe(&out));
    let plain = w.template("", "");
    let out = run(&mut w.build(&plain), BUILD_LIMIT);
    assert!(out.status.success(), "{}", describe(&out));
    let east = family(&w, REGION);
    let shared = "shared with other accounts, or its snapshots are (--include-shared removes it)";

    imgbuild(&mut w, &["prune", "template.toml", "--keep", "1"], |t| {
        t.stdout(
            &[
                kept("kept", &east[&2], "newest 1"),
                kept("kept", &east[&1], shared),
            ]
            .concat(),
        )
        .stderr("web 1.2: removed no image, kept 2\n")
    });
    assert_eq!(builds(&w, REGION), [1, 2]);
    imgbuild(
        &mut w,
        &["prune", "template.toml", "--keep", "1", "--include-shared"],
        |t| t.stdout_contains(&removed("removed", &east[&1], false)),
    );
    assert_eq!(builds(&w, REGION), [2]);
}
