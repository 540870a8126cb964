//! The amazon-ebs builder end to end: the real binary against moto's EC2
//! (through AWS_ENDPOINT_URL, dummy credentials) and a real sshd that admits
//! exactly the key pairs of running instances.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::moto::{Ec2, Moto, aws_env, tag};
use common::{Admit, Scratch, Sshd, imgbuild, run, send_signal, text, wait_for_file, wait_output};

const REGION: &str = "us-east-1";
const COPY_REGION: &str = "eu-west-1";
/// The newest `al2023-ami-2023*-x86_64` in us-east-1. moto gives all three
/// the same CreationDate, so the builder's tie-break (greatest name) decides.
const AL2023_6_18: &str = "ami-0e1e769742d1cfb49";
const BUILD_LIMIT: Duration = Duration::from_secs(120);

/// One test's world: its own moto, its own sshd, its own folder.
struct World {
    moto: Moto,
    sshd: Sshd,
    scratch: Scratch,
}

impl World {
    /// sshd admits the keys of running instances in moto.
    fn new() -> World {
        let moto = Moto::start();
        let sshd = Sshd::start(Admit::Moto {
            endpoint: moto.endpoint(),
            regions: vec![REGION.into()],
        });
        World {
            moto,
            sshd,
            scratch: Scratch::new(),
        }
    }

    /// sshd admits only an unrelated key: every build key is rejected.
    fn rejecting() -> World {
        let moto = Moto::start();
        let scratch = Scratch::new();
        let (_, authorized) = scratch.client_key();
        let sshd = Sshd::start(Admit::KeysFile(authorized));
        World {
            moto,
            sshd,
            scratch,
        }
    }

    fn dir(&self) -> String {
        self.scratch.dir.path().display().to_string()
    }

    /// A template: `source` holds extra lines for `[source.aws]` (replacing the
    /// default `ami_name` or `ssh_timeout` if it sets them), `rest` more tables.
    fn template(&self, source: &str, rest: &str) -> PathBuf {
        let text = format!(
            r#"name = "web"
version = "1.2"

[source.aws]
type = "amazon-ebs"
region = "{REGION}"
{ami_name}temporary_sg_cidrs = ["10.0.0.0/8"]
ssh_host = "127.0.0.1"
ssh_port = {port}
ssh_username = "root"
{timeout}{source}

[source.aws.source_ami_filter]
name = "al2023-ami-2023*-x86_64"
owners = ["amazon"]
architecture = "x86_64"
most_recent = true

{rest}
"#,
            port = self.sshd.port,
            ami_name = if source.contains("ami_name") {
                ""
            } else {
                "ami_name = \"web-${image.version}-${build.id}\"\n"
            },
            timeout = if source.contains("ssh_timeout") {
                ""
            } else {
                "ssh_timeout = \"30s\"\n"
            },
        );
        self.scratch.write("template.toml", &text)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = imgbuild();
        cmd.args(args).current_dir(self.scratch.dir.path());
        aws_env(&mut cmd, &self.moto.endpoint(), self.scratch.dir.path());
        cmd
    }

    fn build(&self, template: &Path) -> Command {
        let manifest = self.scratch.path("manifest.json");
        let mut cmd = self.command(&["build"]);
        cmd.arg(template)
            .arg("--manifest")
            .arg(manifest)
            .arg("--cleanup-timeout")
            .arg("2m");
        cmd
    }

    fn ec2(&self, region: &str) -> Ec2 {
        self.moto.ec2(region)
    }

    /// Own snapshots in each region, before the build.
    fn snapshot_baseline(&self) -> Vec<usize> {
        [REGION, COPY_REGION]
            .iter()
            .map(|r| self.ec2(r).own_snapshots().len())
            .collect()
    }

    /// Nothing from the build remains: no live instance, key pair, security
    /// group, image, or snapshot beyond the baseline.
    fn assert_clean(&self, baseline: &[usize], context: &str) {
        for (region, before) in [REGION, COPY_REGION].iter().zip(baseline) {
            let ec2 = self.ec2(region);
            assert_eq!(
                ec2.live_instances(),
                Vec::<String>::new(),
                "{region}: instances left\n{context}"
            );
            assert_eq!(
                ec2.imgbuild_key_pairs(),
                Vec::<String>::new(),
                "{region}: key pairs left\n{context}"
            );
            assert_eq!(
                ec2.imgbuild_security_groups(),
                Vec::<String>::new(),
                "{region}: security groups left\n{context}"
            );
            let images: Vec<String> = ec2
                .own_images()
                .iter()
                .filter_map(|i| i.image_id())
                .map(str::to_string)
                .collect();
            assert_eq!(
                images,
                Vec::<String>::new(),
                "{region}: images left\n{context}"
            );
            assert_eq!(
                ec2.own_snapshots().len(),
                *before,
                "{region}: snapshots left\n{context}"
            );
        }
    }

    /// Starts a build and returns once its provisioner runs (a minute's sleep).
    fn start_a_sleeping_provisioner(&self) -> std::process::Child {
        let marker = self.scratch.path("provisioning");
        let template = self.template(
            "",
            &format!(
                r#"[[provisioner]]
type = "shell"
inline = ["touch {}", "sleep 60"]
"#,
                marker.display()
            ),
        );
        let child = self
            .build(&template)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        assert!(
            wait_for_file(&marker, Duration::from_secs(60)),
            "the provisioner never started"
        );
        child
    }

    fn manifest(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.scratch.path("manifest.json")).expect("manifest written");
        serde_json::from_str(&text).expect("manifest is JSON")
    }
}

fn describe(out: &std::process::Output) -> String {
    format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

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
    let w = World::new();
    let template = w.template("", "");
    let baseline = w.snapshot_baseline();
    let mut child = w
        .build(&template)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
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
    w.moto.pause();
    send_signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    w.moto.resume();
    let out = wait_output(child, Duration::from_secs(60));
    let stderr = reader.join().expect("reader");
    let log = format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status.code(),
        text(&out.stdout)
    );
    let created = created.unwrap_or_else(|_| panic!("no image was created\n{log}"));
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

    assert_eq!(
        moto.api_requests(),
        Vec::<String>::new(),
        "validation must not call AWS"
    );
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
