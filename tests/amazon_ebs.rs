//! The amazon-ebs builder end to end: the real binary against moto's EC2
//! (through AWS_ENDPOINT_URL, dummy credentials) and a real sshd that admits
//! exactly the key pairs of running instances.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::ebs::{AL2023_6_18, BUILD_LIMIT, COPY_REGION, REGION, World, describe};
use common::links::FaultProxy;
use common::moto::{Moto, aws_env, tag};
use common::{Scratch, imgbuild, run, send_signal, text, wait_output};

#[test]
fn builds_tags_copies_and_cleans_up() {
    let w = World::new();
    let dir = w.dir();
    let template = w.template(
        &format!(
            r#"instance_type = "t3.small"
ami_regions = ["{COPY_REGION}"]"#
        ),
        &format!(
            r#"[source.aws.tags]
Team = "platform"
Base = "${{source.ami}}"

[source.aws.snapshot_tags]
Backup = "weekly"

[source.aws.run_tags]
CostCenter = "builds"

[[provisioner]]
type = "file"
content = "hello from imgbuild\n"
destination = "{dir}/remote/greeting.txt"

[[provisioner]]
type = "shell"
inline = [
  "cat {dir}/remote/greeting.txt",
  "echo ${{source.instance_id}} ${{source.ami}} ${{source.region}} > {dir}/remote/facts.txt",
]
"#
        ),
    );
    let baseline = w.snapshot_baseline();
    let began = Instant::now();
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("full build took {:?}", began.elapsed());

    // stdout: one `region: ami-…` line per region, nothing else.
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let ami = lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{REGION}: ")))
        .expect("build region line")
        .to_string();
    let copy = lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{COPY_REGION}: ")))
        .expect("copy region line")
        .to_string();
    assert!(
        ami.starts_with("ami-") && copy.starts_with("ami-") && ami != copy,
        "{log}"
    );

    // The provisioners ran on the instance, with the builder's facts.
    let stderr = text(&out.stderr);
    assert!(stderr.contains("| hello from imgbuild"), "{log}");
    assert!(
        stderr.contains("SSH port 22 from 10.0.0.0/8 (temporary_sg_cidrs)"),
        "{log}"
    );
    assert!(
        stderr.contains(&format!("source AMI: {AL2023_6_18}")),
        "{log}"
    );
    let facts = std::fs::read_to_string(w.scratch.path("remote/facts.txt"))
        .expect("facts written by the provisioner");
    let facts: Vec<&str> = facts.split_whitespace().collect();
    assert_eq!(facts[1..], [AL2023_6_18, REGION], "{log}");
    let instance_id = facts[0].to_string();

    let manifest = w.manifest();
    let build = &manifest["builds"][0];
    let build_id = build["build_id"].as_str().expect("build id").to_string();
    let name = format!("web-1.2-{build_id}");
    assert_eq!(build["outcome"], "succeeded");
    assert_eq!(build["ami_name"], name.as_str());
    assert_eq!(build["source_ami"], AL2023_6_18);
    assert_eq!(build["region"], REGION);
    assert_eq!(build["amis"][REGION], ami.as_str());
    assert_eq!(build["amis"][COPY_REGION], copy.as_str());
    assert_eq!(build["tags"]["Team"], "platform");
    assert_eq!(build["artifacts"].as_array().map(Vec::len), Some(2));

    // The image and its snapshot, as EC2 has them.
    for (region, id) in [(REGION, &ami), (COPY_REGION, &copy)] {
        let ec2 = w.ec2(region);
        let images = ec2.own_images();
        assert_eq!(images.len(), 1, "{region}: {images:?}");
        let image = &images[0];
        assert_eq!(image.image_id(), Some(id.as_str()));
        assert_eq!(image.name(), Some(name.as_str()));
        let tags = image.tags();
        for (key, value) in [
            ("Name", name.as_str()),
            ("Team", "platform"),
            ("Base", AL2023_6_18),
            ("imgbuild:name", "web"),
            ("imgbuild:version", "1.2"),
            ("imgbuild:build-id", build_id.as_str()),
            ("imgbuild:source-ami", AL2023_6_18),
            (
                "imgbuild:git-commit",
                "0123456789abcdef0123456789abcdef01234567",
            ),
            (
                "imgbuild:pipeline-url",
                "https://gitlab.example.com/web/-/pipelines/42",
            ),
        ] {
            assert_eq!(
                tag(tags, key),
                Some(value),
                "{region}: image tag {key} in {tags:?}"
            );
        }
        let built_at = tag(tags, "imgbuild:built-at").expect("built-at tag");
        assert!(
            time::OffsetDateTime::parse(built_at, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{built_at}"
        );
        assert_eq!(
            tag(tags, "imgbuild:temporary"),
            None,
            "an image is not temporary"
        );

        let snapshot_id = image.block_device_mappings()[0]
            .ebs()
            .and_then(|e| e.snapshot_id())
            .expect("snapshot id");
        let snapshots = ec2.own_snapshots();
        let snapshot = snapshots
            .iter()
            .find(|s| s.snapshot_id() == Some(snapshot_id))
            .expect("the image's snapshot");
        for (key, value) in [
            ("Name", name.as_str()),
            ("Backup", "weekly"),
            ("Team", "platform"),
            ("imgbuild:build-id", build_id.as_str()),
        ] {
            assert_eq!(
                tag(snapshot.tags(), key),
                Some(value),
                "{region}: snapshot tag {key} in {:?}",
                snapshot.tags()
            );
        }
    }

    // The build instance: launched as asked, tagged at creation, terminated.
    let ec2 = w.ec2(REGION);
    let instances = ec2.instances();
    let instance = instances
        .iter()
        .find(|i| i.instance_id() == Some(instance_id.as_str()))
        .expect("build instance listed");
    assert_eq!(
        instance.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("terminated")
    );
    assert_eq!(
        instance.instance_type().map(|t| t.as_str()),
        Some("t3.small")
    );
    assert_eq!(instance.image_id(), Some(AL2023_6_18));
    let http_tokens = instance
        .metadata_options()
        .and_then(|m| m.http_tokens())
        .map(|t| t.as_str());
    assert_eq!(http_tokens, Some("required"));
    for (key, value) in [
        ("CostCenter", "builds"),
        ("imgbuild:build-id", build_id.as_str()),
        ("imgbuild:temporary", "true"),
    ] {
        assert_eq!(
            tag(instance.tags(), key),
            Some(value),
            "instance tag {key} in {:?}",
            instance.tags()
        );
    }
    assert_eq!(instances.len(), 1, "exactly one instance was launched");

    // Only the images remain.
    for region in [REGION, COPY_REGION] {
        let ec2 = w.ec2(region);
        assert_eq!(ec2.live_instances(), Vec::<String>::new());
        assert!(
            ec2.imgbuild_key_pairs().is_empty(),
            "{region}: key pair left"
        );
        assert!(
            ec2.imgbuild_security_groups().is_empty(),
            "{region}: security group left"
        );
    }
    assert_eq!(w.ec2(REGION).own_snapshots().len(), baseline[0] + 1);
    assert_eq!(w.ec2(COPY_REGION).own_snapshots().len(), baseline[1] + 1);
}

#[test]
fn a_failing_provisioner_removes_everything() {
    let w = World::new();
    let template = w.template(
        "",
        r#"[[provisioner]]
type = "shell"
inline = ["echo about to fail", "exit 3"]
"#,
    );
    let baseline = w.snapshot_baseline();
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        text(&out.stdout).is_empty(),
        "no artifact on a failed build\n{log}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("step \"provision\" failed"), "{log}");
    assert!(stderr.contains("terminated instance i-"), "{log}");
    w.assert_clean(&baseline, &log);
    assert_eq!(w.manifest()["builds"][0]["outcome"], "failed");
}

#[test]
fn shell_local_sees_the_build_instance_and_its_region() {
    let w = World::new();
    let env_file = w.scratch.path("local-env");
    let template = w.template(
        "",
        &format!(
            r#"[[provisioner]]
type = "shell-local"
inline = ["env | grep -E '^IMGBUILD_(INSTANCE_ID|REGION|BUILDER_TYPE|USER)=' | sort > {}"]

[[provisioner]]
type = "shell"
inline = ["exit 3"]
"#,
            env_file.display()
        ),
    );
    let baseline = w.snapshot_baseline();
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stderr = text(&out.stderr);
    let instance = stderr
        .split("terminated instance ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the instance is named");
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        format!(
            "IMGBUILD_BUILDER_TYPE=amazon-ebs\nIMGBUILD_INSTANCE_ID={instance}\nIMGBUILD_REGION={REGION}\nIMGBUILD_USER=root\n"
        ),
        "{log}"
    );
    w.assert_clean(&baseline, &log);
}

#[test]
fn on_error_abort_keeps_and_lists_what_the_build_made() {
    let w = World::new();
    let template = w.template(
        "",
        r#"[[provisioner]]
type = "shell"
inline = ["exit 3"]
"#,
    );
    let out = run(
        w.build(&template).args(["--on-error", "abort"]),
        BUILD_LIMIT,
    );
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stderr = text(&out.stderr);
    let ec2 = w.ec2(REGION);
    let instances = ec2.live_instance_ids();
    assert_eq!(instances.len(), 1, "the instance is kept\n{log}");
    let keys = ec2.imgbuild_key_pairs();
    assert_eq!(keys.len(), 1, "the key pair is kept\n{log}");
    let groups = ec2.imgbuild_security_groups();
    assert_eq!(groups.len(), 1, "the security group is kept\n{log}");
    for (what, command) in [
        (
            format!("kept instance {}", instances[0]),
            format!(
                "aws ec2 terminate-instances --instance-ids {} --region {REGION}",
                instances[0]
            ),
        ),
        (
            format!("kept key pair {}", keys[0]),
            format!(
                "aws ec2 delete-key-pair --key-name {} --region {REGION}",
                keys[0]
            ),
        ),
        (
            format!("kept security group {}", groups[0]),
            format!(
                "aws ec2 delete-security-group --group-id {} --region {REGION}",
                groups[0]
            ),
        ),
    ] {
        assert!(stderr.contains(&what), "{what}\n{log}");
        assert!(stderr.contains(&command), "{command}\n{log}");
    }
    let leftovers = &w.manifest()["builds"][0]["leftovers"];
    assert_eq!(leftovers.as_array().map(Vec::len), Some(3), "{leftovers}");
    for leftover in leftovers.as_array().into_iter().flatten() {
        assert_eq!(leftover["cleanup"], "skipped", "{leftover}");
    }
}

/// Starts a build whose provisioner sleeps, signals it once the provisioner
/// runs, and checks everything made so far is removed.
fn interrupt_provisioning(signal: i32) {
    let w = World::new();
    let baseline = w.snapshot_baseline();
    let child = w.start_a_sleeping_provisioner();
    let sent = Instant::now();
    send_signal(&child, signal);
    let out = wait_output(child, Duration::from_secs(60));
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(130), "{log}");
    assert!(
        sent.elapsed() < Duration::from_secs(30),
        "cancel did not interrupt the sleep\n{log}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cancelling builds and cleaning up"),
        "{log}"
    );
    assert!(stderr.contains("terminated instance i-"), "{log}");
    w.assert_clean(&baseline, &log);
    assert_eq!(w.manifest()["builds"][0]["outcome"], "cancelled");
}

#[test]
fn sigint_during_provisioning_removes_everything() {
    interrupt_provisioning(libc::SIGINT);
}

#[test]
fn sigterm_during_provisioning_removes_everything() {
    interrupt_provisioning(libc::SIGTERM);
}

/// moto makes images available at once, so the build is held at the image
/// step by freezing moto the moment the image exists; SIGINT then lands while
/// the builder waits on the image, and cleanup must remove it.
#[test]
fn sigint_while_the_image_is_made_removes_the_image_and_snapshots() {
    let mut w = World::new();
    // The call after CreateImage waits: the signal lands inside "create image".
    let proxy = FaultProxy::holding_after(
        &w.moto.endpoint(),
        "CreateImage",
        60,
        w.scratch.path("proxy.log"),
    );
    w.endpoint = proxy.endpoint();
    let template = w.template("", "");
    let baseline = w.snapshot_baseline();
    let mut child = w.spawn_build(&template);
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("created image ami-") {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let created = rx.recv_timeout(Duration::from_secs(90));
    let held = common::wait_until(Duration::from_secs(50), Duration::from_millis(20), || {
        proxy.calls().iter().any(|(_, code)| code == "held")
    });
    send_signal(&child, libc::SIGINT);
    let out = wait_output(child, Duration::from_secs(60));
    let stderr = reader.join().expect("reader");
    let log = format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status.code(),
        text(&out.stdout)
    );
    let created = created.unwrap_or_else(|_| panic!("no image was created\n{log}"));
    assert!(held, "the call after CreateImage was never held\n{log}");
    let ami = created
        .split_whitespace()
        .find(|w| w.starts_with("ami-"))
        .expect("ami id")
        .to_string();
    assert_eq!(out.status.code(), Some(130), "{log}");
    assert!(stderr.contains("create image failed"), "{log}");
    assert_eq!(
        w.manifest()["builds"][0]["error"],
        "cancelled during step \"create image\"",
        "{log}"
    );
    assert!(
        stderr.contains(&format!("deregistered image {ami}")),
        "{log}"
    );
    assert!(stderr.contains("deleted snapshot snap-"), "{log}");
    let ec2 = w.ec2(REGION);
    let still = ec2.block(ec2.client.describe_images().image_ids(&ami).send());
    assert!(
        still.map(|o| o.images().is_empty()).unwrap_or(true),
        "{ami} still exists\n{log}"
    );
    w.assert_clean(&baseline, &log);
}

#[test]
fn a_rejected_key_is_reported_as_an_authentication_failure() {
    let w = World::rejecting();
    let template = w.template(r#"ssh_timeout = "4s""#, "");
    let baseline = w.snapshot_baseline();
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("step \"connect\" failed"), "{log}");
    assert!(
        stderr.contains("authentication rejected for user `root`"),
        "{log}"
    );
    assert!(
        stderr.contains("temporary key pair imgbuild-"),
        "the error names the key\n{log}"
    );
    w.assert_clean(&baseline, &log);
}

#[test]
fn bad_templates_fail_validation_without_calling_aws() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let home = scratch.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let validate = |name: &str, body: &str, env: &[(&str, &str)]| {
        let file = scratch.write(
            name,
            &format!(
                "name = \"web\"\nversion = \"1.2\"\n\n[source.aws]\ntype = \"amazon-ebs\"\n{body}"
            ),
        );
        let mut cmd = imgbuild();
        cmd.arg("validate")
            .arg(&file)
            .current_dir(scratch.dir.path());
        aws_env(&mut cmd, &moto.endpoint(), &home);
        for (k, v) in env {
            cmd.env(k, v);
        }
        (
            file.display().to_string(),
            run(&mut cmd, Duration::from_secs(30)),
        )
    };
    let expect_error = |name: &str, body: &str, line: usize, message: &str| {
        let (file, out) = validate(name, body, &[]);
        let log = describe(&out);
        assert_eq!(out.status.code(), Some(2), "{name}\n{log}");
        let stderr = text(&out.stderr);
        let located = stderr
            .lines()
            .find(|l| l.contains(message))
            .unwrap_or_else(|| panic!("{name}: no `{message}`\n{log}"));
        assert!(
            located.starts_with(&format!("error: {file}:{line}:")),
            "{name}: location in `{located}`\n{log}"
        );
    };
    let filter = "[source.aws.source_ami_filter]\nname = \"al2023-*\"\nowners = [\"amazon\"]\n";

    expect_error("no_region.toml", &format!("\n{filter}"), 4, "no AWS region");
    expect_error(
        "bad_ami.toml",
        "region = \"us-east-1\"\nsource_ami = \"ami-xyz\"\n",
        7,
        "`ami-xyz` is not an AMI id",
    );
    expect_error(
        "bad_name.toml",
        &format!("region = \"us-east-1\"\nami_name = \"web:${{image.version}}\"\n{filter}"),
        7,
        "AMI name `web:1.2` contains `:`",
    );
    expect_error(
        "long_name.toml",
        &format!(
            "region = \"us-east-1\"\nami_name = \"{}-${{build.id}}\"\n{filter}",
            "w".repeat(130)
        ),
        7,
        "is 131 characters long",
    );
    expect_error(
        "no_owners.toml",
        "region = \"us-east-1\"\n[source.aws.source_ami_filter]\nname = \"al2023-*\"\n",
        7,
        "`source_ami_filter` needs `owners`",
    );
    expect_error(
        "unknown_key.toml",
        &format!("region = \"us-east-1\"\ninstanc_type = \"t3.micro\"\n{filter}"),
        7,
        "unknown key `instanc_type`",
    );

    // The region may come from the environment or the profile, read from disk.
    let (_, out) = validate(
        "region_env.toml",
        &format!("\n{filter}"),
        &[("AWS_REGION", "eu-west-3")],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let config = scratch.write("aws-config", "[profile ci]\nregion = eu-west-3\n");
    let config = config.display().to_string();
    let (_, out) = validate(
        "region_profile.toml",
        &format!("\n{filter}"),
        &[("AWS_CONFIG_FILE", &config), ("AWS_PROFILE", "ci")],
    );
    assert!(out.status.success(), "{}", describe(&out));

    moto.assert_no_requests("validation must not call AWS");
}

#[test]
fn own_key_pair_sharing_and_force_deregister() {
    let w = World::new();
    let (key, _) = w.scratch.client_key();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let ec2 = w.ec2(REGION);
    ec2.block(
        ec2.client
            .import_key_pair()
            .key_name("team-key")
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(public.into_bytes()))
            .send(),
    )
    .expect("ImportKeyPair");
    let own = r#"ami_name = "web-shared"
ssh_keypair_name = "team-key"
ssh_private_key_file = "id_ed25519"
ami_users = ["210987654321"]"#;
    // Without temporary_sg_cidrs, SSH through the private `ssh_host` is
    // admitted from the VPC's own range; nothing is looked up on the internet.
    let without_cidrs = |template: PathBuf| {
        let text = std::fs::read_to_string(&template).unwrap();
        std::fs::write(
            &template,
            text.replace("temporary_sg_cidrs = [\"10.0.0.0/8\"]\n", ""),
        )
        .unwrap();
        template
    };
    let template = without_cidrs(w.template(own, ""));
    let baseline = w.snapshot_baseline();

    // First build: the user's key pair is used and kept; the image is shared.
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert!(out.status.success(), "{log}");
    let first = text(&out.stdout)
        .trim()
        .strip_prefix(&format!("{REGION}: "))
        .expect("artifact line")
        .to_string();
    assert_eq!(
        ec2.key_pair_names(),
        ["team-key"],
        "the user's key pair stays, no temporary one\n{log}"
    );
    assert!(
        text(&out.stderr).contains("SSH port 22 from 172.31.0.0/16"),
        "{log}"
    );
    let instances = ec2.instances();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].key_name(), Some("team-key"));
    let attribute = ec2
        .block(
            ec2.client
                .describe_image_attribute()
                .image_id(&first)
                .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
                .send(),
        )
        .expect("DescribeImageAttribute");
    let users: Vec<&str> = attribute
        .launch_permissions()
        .iter()
        .filter_map(|p| p.user_id())
        .collect();
    assert_eq!(users, ["210987654321"], "{log}");
    let first_snapshot = ec2.own_images()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .unwrap()
        .to_string();

    // Same name again: refused before anything is launched.
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        text(&out.stderr).contains(&format!(
            "an AMI named `web-shared` already exists in {REGION} ({first})"
        )),
        "{log}"
    );
    assert_eq!(
        ec2.instances().len(),
        1,
        "no instance for a refused build\n{log}"
    );

    // With force_deregister the old image and its snapshot make way.
    let template = without_cidrs(w.template(&format!("{own}\nforce_deregister = true"), ""));
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert!(out.status.success(), "{log}");
    let second = text(&out.stdout)
        .trim()
        .strip_prefix(&format!("{REGION}: "))
        .expect("artifact line")
        .to_string();
    assert_ne!(first, second);
    let images: Vec<String> = ec2
        .own_images()
        .iter()
        .filter_map(|i| i.image_id())
        .map(str::to_string)
        .collect();
    assert_eq!(images, [second], "{log}");
    let snapshots: Vec<String> = ec2
        .own_snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id())
        .map(str::to_string)
        .collect();
    assert!(
        !snapshots.contains(&first_snapshot),
        "{first_snapshot} of the replaced image remains\n{log}"
    );
    assert_eq!(snapshots.len(), baseline[0] + 1, "{log}");
    assert_eq!(ec2.live_instances(), Vec::<String>::new());
    assert_eq!(ec2.key_pair_names(), ["team-key"]);
}

/// When EC2 cannot be reached during cleanup, the build lists what it left,
/// each with the command that removes it, and keeps the original error.
#[test]
fn unreachable_ec2_during_cleanup_reports_leftovers_with_commands() {
    let mut w = World::new();
    // Each call to a dead endpoint would otherwise be tried 10 times, about
    // a minute each; three tries keep the test short and check that the
    // standard AWS setting overrides imgbuild's default.
    w.env.push(("AWS_MAX_ATTEMPTS", "3".into()));
    let child = w.start_a_sleeping_provisioner();
    w.moto.kill();
    send_signal(&child, libc::SIGINT);
    let out = wait_output(child, Duration::from_secs(90));
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(130), "{log}");
    let stderr = text(&out.stderr);
    for command in [
        "remove it by hand: aws ec2 terminate-instances --instance-ids i-",
        "remove it by hand: aws ec2 delete-security-group --group-id sg-",
        "remove it by hand: aws ec2 delete-key-pair --key-name imgbuild-",
    ] {
        assert!(stderr.contains(command), "missing `{command}`\n{log}");
    }
    assert!(stderr.contains(&format!("--region {REGION}")), "{log}");
    let manifest = w.manifest();
    let build = &manifest["builds"][0];
    assert_eq!(
        build["error"], "cancelled during step \"provision\"",
        "the original error stays\n{log}"
    );
    let leftovers = build["leftovers"].as_array().expect("leftovers");
    let resources: Vec<&str> = leftovers
        .iter()
        .filter_map(|l| l["resource"].as_str())
        .collect();
    assert_eq!(
        resources,
        ["instance", "security group", "key pair"],
        "{log}"
    );
    for leftover in leftovers {
        assert_eq!(leftover["cleanup"], "attempted", "{leftover}");
        let id = leftover["id"].as_str().unwrap_or_default();
        assert!(
            !id.is_empty()
                && leftover["remove_with"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(id),
            "{leftover}"
        );
    }
}

/// A filter that matches several AMIs without `most_recent`, or a missing
/// AMI, stops the build with the matches listed, before anything is made.
#[test]
fn an_ambiguous_filter_or_a_missing_ami_fails_before_launching() {
    let w = World::new();
    let template = w.template("", "");
    let text_before = std::fs::read_to_string(&template).unwrap();
    std::fs::write(
        &template,
        text_before.replace("most_recent = true", "most_recent = false"),
    )
    .unwrap();
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("3 AMIs match; narrow the filter or set `most_recent = true`"),
        "{log}"
    );
    for id in [
        AL2023_6_18,
        "ami-02ee394167633f6bf",
        "ami-0ed094fb1304fd857",
    ] {
        assert!(
            stderr.contains(&format!("  {id} al2023-ami-2023")),
            "{id} not listed\n{log}"
        );
    }

    let missing = text_before.replace(
        "[source.aws.source_ami_filter]\nname = \"al2023-ami-2023*-x86_64\"\nowners = [\"amazon\"]\narchitecture = \"x86_64\"\nmost_recent = true\n",
        "",
    );
    let missing = missing.replace(
        "type = \"amazon-ebs\"\n",
        "type = \"amazon-ebs\"\nsource_ami = \"ami-0123456789abcdef0\"\n",
    );
    std::fs::write(&template, missing).unwrap();
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        text(&out.stderr).contains("source AMI ami-0123456789abcdef0 does not exist in us-east-1 (DescribeImages failed: InvalidAMIID.NotFound"),
        "{log}"
    );

    let ec2 = w.ec2(REGION);
    assert!(ec2.instances().is_empty(), "nothing was launched");
    assert!(ec2.key_pair_names().is_empty(), "no key pair was made");
    assert!(ec2.imgbuild_security_groups().is_empty());
}

/// A template as teams write them: typed variables (one given as text on
/// the command line), a local made with functions, whole-value references
/// for a number, a boolean, a list and a map, an empty subnet that means
/// "the default VPC", and the settings shared through `[source_defaults]`.
/// What reaches EC2 is read back through its API.
#[test]
fn typed_variables_locals_and_shared_settings_reach_ec2() {
    let w = World::new();
    let template = w.scratch.write(
        "fleet.toml",
        &format!(
            r#"name = "${{local.prefix}}"
version = "2.0"

[variables.team]
default = "${{env.IMGBUILD_TEST_TEAM:-Platform}}"

[variables.instance]
type = "string"
default = "t3.small"
allowed = ["t3.small", "t3.medium"]

[variables.root_size]
type = "number"
default = 12

[variables.encrypted]
type = "bool"
default = true

[variables.share_with]
type = "list(string)"
default = ["210987654321", "123456789012"]

[variables.extra_tags]
type = "map(string)"
default = {{ CostCenter = "cc-42" }}

[variables.subnet]
default = ""

[variables.ssh_port]
type = "number"

[locals]
prefix = "${{lower(var.team)}}-web"
ami_name = "${{local.prefix}}-${{var.root_size}}g"

[source_defaults.amazon-ebs]
region = "{REGION}"
instance_type = "${{var.instance}}"
subnet_id = "${{var.subnet}}"
root_volume_size = "${{var.root_size}}"
root_volume_type = "gp3"
root_volume_encrypted = "${{var.encrypted}}"
ami_users = "${{var.share_with}}"
tags = "${{var.extra_tags}}"
temporary_sg_cidrs = ["10.0.0.0/8"]
ssh_host = "127.0.0.1"
ssh_port = "${{var.ssh_port}}"
ssh_username = "root"
ssh_timeout = "30s"

[source_defaults.amazon-ebs.source_ami_filter]
name = "al2023-ami-2023*-x86_64"
owners = ["amazon"]
architecture = "x86_64"
most_recent = true

[source.aws]
type = "amazon-ebs"
ami_name = "${{local.ami_name}}-${{build.id}}"

[[provisioner]]
type = "shell"
inline = ["echo built by ${{var.team}} for $(echo ${{join(\",\", var.share_with)}})"]
"#
        ),
    );
    let baseline = w.snapshot_baseline();
    let mut build = w.build(&template);
    build
        .env_remove("IMGBUILD_TEST_TEAM")
        .args(["--var", &format!("ssh_port={}", w.sshd.port)]);
    let out = run(&mut build, BUILD_LIMIT);
    let log = describe(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        text(&out.stderr).contains("| built by Platform for 210987654321,123456789012"),
        "{log}"
    );
    let ec2 = w.ec2(REGION);
    let ami = text(&out.stdout)
        .trim()
        .strip_prefix(&format!("{REGION}: "))
        .expect("artifact line")
        .to_string();

    // The instance: the type from a variable, in the default VPC (the empty
    // subnet was left out, not sent), with the root volume as typed.
    let instances = ec2.instances();
    assert_eq!(instances.len(), 1, "{log}");
    let instance = &instances[0];
    assert_eq!(
        instance.instance_type().map(|t| t.as_str()),
        Some("t3.small")
    );
    assert_eq!(instance.vpc_id(), Some(ec2.default_vpc().as_str()), "{log}");
    let launches = w.moto.calls("RunInstances");
    assert_eq!(launches.len(), 1, "{log}");
    let launch = &launches[0];
    for (key, value) in [
        ("BlockDeviceMapping.1.Ebs.VolumeSize", "12"),
        ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3"),
        ("BlockDeviceMapping.1.Ebs.Encrypted", "true"),
        ("InstanceType", "t3.small"),
    ] {
        assert_eq!(
            launch.get(key).map(String::as_str),
            Some(value),
            "RunInstances {key}: {launch:?}\n{log}"
        );
    }
    assert!(
        !launch.keys().any(|k| k.contains("SubnetId")),
        "an empty subnet_id is not sent: {launch:?}"
    );

    // The AMI: its name from locals and functions, tags from a map
    // variable, shared with the accounts of a list variable.
    let images = ec2.own_images();
    assert_eq!(images.len(), 1, "{log}");
    let image = &images[0];
    assert_eq!(image.image_id(), Some(ami.as_str()));
    let name = image.name().unwrap_or_default();
    assert!(name.starts_with("platform-web-12g-"), "{name}\n{log}");
    assert_eq!(tag(image.tags(), "CostCenter"), Some("cc-42"), "{log}");
    assert_eq!(tag(image.tags(), "imgbuild:name"), Some("platform-web"));
    let attribute = ec2
        .block(
            ec2.client
                .describe_image_attribute()
                .image_id(&ami)
                .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
                .send(),
        )
        .expect("DescribeImageAttribute");
    let mut users: Vec<&str> = attribute
        .launch_permissions()
        .iter()
        .filter_map(|p| p.user_id())
        .collect();
    users.sort();
    assert_eq!(users, ["123456789012", "210987654321"], "{log}");
    // moto gives every image its own default volume size, whatever the
    // instance had; the RunInstances parameters above are what EC2 acts on.

    // Temporary things are gone; the AMI and its snapshot stay.
    assert_eq!(ec2.live_instances(), Vec::<String>::new(), "{log}");
    assert_eq!(ec2.imgbuild_key_pairs(), Vec::<String>::new(), "{log}");
    assert_eq!(
        ec2.imgbuild_security_groups(),
        Vec::<String>::new(),
        "{log}"
    );
    assert_eq!(ec2.own_snapshots().len(), baseline[0] + 1, "{log}");
}
