//! `imgbuild gc` end to end against moto's EC2 and a real sshd: what a
//! build killed outright (SIGKILL, no cleanup) left is swept once its
//! time is up, while a build running at the same time in another process
//! and the image of a build that finished are untouched.

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::ebs::{BUILD_LIMIT, REGION, World, describe};
use common::links::FaultProxy;
use common::moto::{aws_vars, tag};
use common::test::Test;
use common::{Scratch, run, send_signal, wait_for_file, wait_output, wait_until};

/// The temporary resources tagged with `build_id`: instance, security group, key pair.
fn made_by(w: &World, build_id: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let ec2 = w.ec2(REGION);
    let ours = |tags: &[aws_sdk_ec2::types::Tag]| tag(tags, "imgbuild:build-id") == Some(build_id);
    let instances = ec2
        .instances()
        .iter()
        .filter(|i| ours(i.tags()))
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    let groups = ec2
        .block(ec2.client.describe_security_groups().send())
        .expect("DescribeSecurityGroups")
        .security_groups()
        .iter()
        .filter(|g| ours(g.tags()))
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    let keys = ec2
        .block(ec2.client.describe_key_pairs().send())
        .expect("DescribeKeyPairs")
        .key_pairs()
        .iter()
        .filter(|k| ours(k.tags()))
        .filter_map(|k| k.key_name().map(str::to_string))
        .collect();
    (instances, groups, keys)
}

/// The build ids of instances that are not terminated, and their `imgbuild:expires-at`.
fn live_builds(w: &World) -> Vec<(String, String)> {
    w.ec2(REGION)
        .instances()
        .iter()
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .map(|i| {
            (
                tag(i.tags(), "imgbuild:build-id")
                    .unwrap_or_default()
                    .to_string(),
                tag(i.tags(), "imgbuild:expires-at")
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Starts a build whose timeouts add up to seconds (1s x5 + 5s SSH + 1s
/// cleanup), with `rest` appended to the template.
fn start_short_lived(w: &World, rest: &str) -> std::process::Child {
    let template = w.template(
        "ssh_timeout = \"5s\"",
        &format!(
            "[source.aws.timeouts]
instance_running = \"1s\"
instance_stopped = \"1s\"
image_available = \"1s\"
snapshots_completed = \"1s\"
instance_terminated = \"1s\"

{rest}"
        ),
    );
    w.command(&["build", "--cleanup-timeout", "1s"])
        .arg(&template)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// Waits until a second after `expires_at` (RFC 3339).
fn wait_past(expires_at: &str) {
    let expires = humantime::parse_rfc3339(expires_at).expect("expires-at");
    let began = SystemTime::now();
    while SystemTime::now() <= expires + Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            began.elapsed().unwrap() < Duration::from_secs(30),
            "expires-at {expires_at}"
        );
    }
}

#[test]
fn gc_sweeps_a_killed_build_and_never_one_in_progress() {
    let mut w = World::new();

    // A build that finished: its image loses the unfinished mark.
    let finished = w.template("", "");
    let out = run(&mut w.build(&finished), BUILD_LIMIT);
    assert!(out.status.success(), "{}", describe(&out));
    let images = w.ec2(REGION).own_images();
    assert_eq!(images.len(), 1);
    assert_eq!(tag(images[0].tags(), "imgbuild:unfinished"), None);
    assert_eq!(tag(images[0].tags(), "imgbuild:expires-at"), None);

    // A build in progress, with the default timeouts (hours).
    let running = w.start_a_sleeping_provisioner();
    let (running_id, running_expires) = live_builds(&w).pop().expect("the running build");

    // A build whose timeouts add up to seconds, killed while it provisions.
    let marker = w.scratch.path("provisioning-killed");
    let killed = start_short_lived(
        &w,
        &format!(
            "[[provisioner]]\ntype = \"shell\"\ninline = [\"touch {}\", \"sleep 60\"]\n",
            marker.display()
        ),
    );
    assert!(
        wait_for_file(&marker, Duration::from_secs(60)),
        "the killed build never provisioned"
    );
    send_signal(&killed, libc::SIGKILL);
    let _ = wait_output(killed, Duration::from_secs(10));
    let (killed_id, killed_expires) = live_builds(&w)
        .into_iter()
        .find(|(id, _)| *id != running_id)
        .expect("the killed build's instance");
    let (instances, groups, keys) = made_by(&w, &killed_id);
    assert_eq!(
        (instances.len(), groups.len(), keys.len()),
        (1, 1, 1),
        "what SIGKILL left"
    );
    let kept = made_by(&w, &running_id);

    wait_past(&killed_expires);

    let scratch = std::mem::replace(&mut w.scratch, Scratch::new());
    let home = scratch.dir.path().to_path_buf();
    let kept_line = |what: &str, id: &str| {
        format!(
            "{REGION}: kept {what} {id} (build {running_id}): its build may still run until {running_expires}\n"
        )
    };
    let removed_line =
        |what: &str, id: &str| format!("{REGION}: removed {what} {id} (build {killed_id})\n");
    let would = |what: &str, id: &str, command: &str| {
        format!(
            "{REGION}: would remove {what} {id} (build {killed_id})\n  aws ec2 {command} {id} --region {REGION}\n"
        )
    };
    let (_, scratch) = Test::in_scratch(scratch)
        .envs(aws_vars(&w.endpoint, &home))
        .args(["gc", "--older-than", "0s", "--region", REGION, "--dry-run"])
        .limit(BUILD_LIMIT)
        .stdout_contains(&would(
            "instance",
            &instances[0],
            "terminate-instances --instance-ids",
        ))
        .stdout_contains(&would(
            "security group",
            &groups[0],
            "delete-security-group --group-id",
        ))
        .stdout_contains(&would("key pair", &keys[0], "delete-key-pair --key-name"))
        .stdout_contains(&kept_line("instance", &kept.0[0]))
        .stderr("gc: would remove 3 and keep 3\n")
        .run();
    assert_eq!(
        made_by(&w, &killed_id),
        (instances.clone(), groups.clone(), keys.clone())
    );
    let (_, scratch) = Test::in_scratch(scratch)
        .envs(aws_vars(&w.endpoint, &home))
        .args(["gc", "--older-than", "0s", "--region", REGION])
        .limit(BUILD_LIMIT)
        .stdout_contains(&removed_line("instance", &instances[0]))
        .stdout_contains(&removed_line("security group", &groups[0]))
        .stdout_contains(&removed_line("key pair", &keys[0]))
        .stdout_contains(&kept_line("instance", &kept.0[0]))
        .stdout_contains(&kept_line("security group", &kept.1[0]))
        .stdout_contains(&kept_line("key pair", &kept.2[0]))
        .stderr("gc: removed 3, kept 3\n")
        .run();
    w.scratch = scratch;
    assert_eq!(
        made_by(&w, &killed_id),
        (vec![], vec![], vec![]),
        "the killed build's leftovers"
    );
    assert_eq!(
        made_by(&w, &running_id),
        kept,
        "the running build's resources"
    );
    assert_eq!(
        w.ec2(REGION).own_images().len(),
        1,
        "the finished build's image stays"
    );

    // The running build is still in charge of its own: it cleans up when told to stop.
    send_signal(&running, libc::SIGINT);
    let out = wait_output(running, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    assert_eq!(made_by(&w, &running_id), (vec![], vec![], vec![]));
}

#[test]
fn gc_sweeps_the_image_and_snapshot_of_a_build_killed_after_create_image() {
    let mut w = World::new();
    // Every DeleteTags fails: the build never gets past marking its image
    // finished, and is killed there.
    let proxy = FaultProxy::start(
        &w.moto.endpoint(),
        1,
        1.0,
        &["DeleteTags"],
        w.scratch.path("proxy.log"),
    );
    w.endpoint = proxy.endpoint();
    let killed = start_short_lived(&w, "");
    let ec2 = w.ec2(REGION);
    let unfinished =
        |tags: &[aws_sdk_ec2::types::Tag]| tag(tags, "imgbuild:unfinished") == Some("true");
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            ec2.own_snapshots().iter().any(|s| unfinished(s.tags()))
        }),
        "the build never made its image"
    );
    send_signal(&killed, libc::SIGKILL);
    let _ = wait_output(killed, Duration::from_secs(10));
    let images = ec2.own_images();
    assert_eq!(images.len(), 1);
    assert!(unfinished(images[0].tags()));
    let ami = images[0].image_id().unwrap().to_string();
    let build_id = tag(images[0].tags(), "imgbuild:build-id")
        .unwrap()
        .to_string();
    let expires = tag(images[0].tags(), "imgbuild:expires-at")
        .unwrap()
        .to_string();
    let snapshot = ec2.own_snapshots()[0].snapshot_id().unwrap().to_string();
    wait_past(&expires);
    drop(proxy);
    w.endpoint = w.moto.endpoint();

    // Not one of the family's images: `images` and `prune` leave it to gc.
    let scratch = std::mem::replace(&mut w.scratch, Scratch::new());
    let home = scratch.dir.path().to_path_buf();
    let (_, scratch) = Test::in_scratch(scratch)
        .envs(aws_vars(&w.endpoint, &home))
        .args(["images", "template.toml"])
        .stdout("")
        .stderr(&format!("no images of web 1.2 in {REGION}\n"))
        .run();
    let (_, scratch) = Test::in_scratch(scratch)
        .envs(aws_vars(&w.endpoint, &home))
        .args(["gc", "--older-than", "0s", "--region", REGION])
        .limit(BUILD_LIMIT)
        .stdout_contains(&format!(
            "{REGION}: removed image {ami} (build {build_id}) and {snapshot}\n"
        ))
        .stdout_contains(&format!("{REGION}: removed instance "))
        .stderr("gc: removed 4, kept 0\n")
        .run();
    w.scratch = scratch;
    let ec2 = w.ec2(REGION);
    assert!(ec2.own_images().is_empty(), "the half-made image");
    assert!(ec2.own_snapshots().is_empty(), "its snapshot");
    assert_eq!(ec2.live_instances(), Vec::<String>::new());
    assert_eq!(ec2.imgbuild_key_pairs(), Vec::<String>::new());
    assert_eq!(ec2.imgbuild_security_groups(), Vec::<String>::new());
}

#[test]
fn gc_needs_a_region_and_names_its_environment_twins() {
    let scratch = Scratch::new();
    let home = scratch.dir.path().to_path_buf();
    // Nothing listens there: gc must stop before any call.
    Test::in_scratch(scratch)
        .envs(aws_vars("http://127.0.0.1:9", &home))
        .args(["gc", "--older-than", "0s"])
        .stdout("")
        .stderr("error: no AWS region: pass --region, or set AWS_REGION (or --local to sweep only this machine)\n")
        .status(2)
        .run();
    let mut help = Test::new().args(["gc", "--help"]);
    for env in [
        "IMGBUILD_OLDER_THAN",
        "IMGBUILD_REGIONS",
        "IMGBUILD_DRY_RUN",
        "IMGBUILD_LOCAL",
    ] {
        help = help.stdout_contains(env);
    }
    help.stdout_contains("[default: 2h]").run();
}
