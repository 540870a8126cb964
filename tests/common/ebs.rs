//! The world an amazon-ebs test builds in: its own moto, its own sshd that
//! admits exactly the key pairs of running instances, its own folder, and
//! optionally a fault-injecting proxy or a slow link in between.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::moto::{Ec2, Moto, aws_env};
use super::{Admit, Scratch, Sshd, imgbuild, run, text, wait_for_file};

pub const REGION: &str = "us-east-1";
pub const COPY_REGION: &str = "eu-west-1";
/// The newest `al2023-ami-2023*-x86_64` in us-east-1. moto gives all three
/// the same CreationDate, so the builder's tie-break (greatest name) decides.
pub const AL2023_6_18: &str = "ami-0e1e769742d1cfb49";
pub const BUILD_LIMIT: Duration = Duration::from_secs(120);

/// One test's world: its own moto, its own sshd, its own folder.
pub struct World {
    pub moto: Moto,
    pub sshd: Sshd,
    pub scratch: Scratch,
    /// Where builds send EC2 calls: moto, or a proxy in front of it.
    pub endpoint: String,
    /// Where builds connect over SSH: the sshd, or a relay in front of it.
    pub ssh_port: u16,
    /// More environment for builds.
    pub env: Vec<(&'static str, String)>,
}

impl World {
    /// sshd admits the keys of running instances in moto.
    pub fn new() -> World {
        let moto = Moto::start();
        let sshd = Sshd::start(Admit::Moto {
            endpoint: moto.endpoint(),
            regions: vec![REGION.into()],
        });
        World {
            endpoint: moto.endpoint(),
            ssh_port: sshd.port,
            env: Vec::new(),
            moto,
            sshd,
            scratch: Scratch::new(),
        }
    }

    /// sshd admits only an unrelated key: every build key is rejected.
    pub fn rejecting() -> World {
        let moto = Moto::start();
        let scratch = Scratch::new();
        let (_, authorized) = scratch.client_key();
        let sshd = Sshd::start(Admit::KeysFile(authorized));
        World {
            endpoint: moto.endpoint(),
            ssh_port: sshd.port,
            env: Vec::new(),
            moto,
            sshd,
            scratch,
        }
    }

    pub fn dir(&self) -> String {
        self.scratch.dir.path().display().to_string()
    }

    /// A template: `source` holds extra lines for `[source.aws]` (replacing the
    /// default `ami_name` or `ssh_timeout` if it sets them, and the default
    /// `source_ami_filter` if it names the base AMI with `source_ami` or
    /// `source_ami_ssm_parameter`), `rest` more tables.
    pub fn template(&self, source: &str, rest: &str) -> PathBuf {
        let names_base = source
            .lines()
            .any(|l| l.starts_with("source_ami ") || l.starts_with("source_ami_ssm_parameter "));
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

{filter}{rest}
"#,
            port = self.ssh_port,
            filter = if names_base {
                ""
            } else {
                "[source.aws.source_ami_filter]\nname = \"al2023-ami-2023*-x86_64\"\nowners = [\"amazon\"]\narchitecture = \"x86_64\"\nmost_recent = true\n\n"
            },
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

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = imgbuild();
        cmd.args(args).current_dir(self.scratch.dir.path());
        aws_env(&mut cmd, &self.endpoint, self.scratch.dir.path());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn build(&self, template: &Path) -> Command {
        let manifest = self.scratch.path("manifest.json");
        let mut cmd = self.command(&["build"]);
        cmd.arg(template)
            .arg("--manifest")
            .arg(manifest)
            .arg("--cleanup-timeout")
            .arg("2m");
        cmd
    }

    /// Runs a build of `template` to completion (within `BUILD_LIMIT`) and
    /// returns its output with the log that assertion messages show.
    pub fn run_build(&self, template: &Path) -> (Output, String) {
        let out = run(&mut self.build(template), BUILD_LIMIT);
        let log = describe(&out);
        (out, log)
    }

    /// Starts a build of `template` and returns at once, its output piped,
    /// for tests that look at or signal the build while it runs.
    pub fn spawn_build(&self, template: &Path) -> Child {
        self.build(template)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    }

    pub fn ec2(&self, region: &str) -> Ec2 {
        self.moto.ec2(region)
    }

    /// Own snapshots in each region, before the build.
    pub fn snapshot_baseline(&self) -> Vec<usize> {
        [REGION, COPY_REGION]
            .iter()
            .map(|r| self.ec2(r).own_snapshots().len())
            .collect()
    }

    /// Nothing from the build remains: no live instance, key pair, security
    /// group, image, or snapshot beyond the baseline.
    pub fn assert_clean(&self, baseline: &[usize], context: &str) {
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
    pub fn start_a_sleeping_provisioner(&self) -> std::process::Child {
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
        let child = self.spawn_build(&template);
        assert!(
            wait_for_file(&marker, Duration::from_secs(60)),
            "the provisioner never started"
        );
        child
    }

    pub fn manifest(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.scratch.path("manifest.json")).expect("manifest written");
        serde_json::from_str(&text).expect("manifest is JSON")
    }
}

pub fn describe(out: &std::process::Output) -> String {
    format!(
        "exit: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}
