//! Scheduled rebuilds end to end against moto's EC2 and a real sshd (the
//! machine running the tests plays the instance): build numbers, the
//! fingerprint, `--if-changed` and `max_age`, and the package inventory.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::moto::{Ec2, Moto, aws_vars, tag};
use common::test::Test;
use common::{Admit, Scratch, Sshd};

const REGION: &str = "us-east-1";
/// An Amazon Linux AMI moto knows in us-east-1; the bases are copies of it.
const AL2023: &str = "ami-0e1e769742d1cfb49";
const BUILD_LIMIT: Duration = Duration::from_secs(120);

struct World {
    moto: Moto,
    sshd: Sshd,
    scratch: Option<Scratch>,
}

impl World {
    fn new() -> World {
        let moto = Moto::start();
        let sshd = Sshd::start(Admit::Moto {
            endpoint: moto.endpoint(),
            regions: vec![REGION.into()],
        });
        let world = World {
            moto,
            sshd,
            scratch: Some(Scratch::new()),
        };
        world.write("setup.sh", "echo \"$GREETING\" > \"$OUT/greeting\"\n");
        world.write("site/index.html", "<h1>hello</h1>\n");
        world.write("site/css/site.css", "body { margin: 0 }\n");
        world.write(
            "template.toml",
            &format!(
                r#"name = "web"
version = "1.2"

[variables.greeting]
default = "hello"

[source.aws]
type = "amazon-ebs"
region = "{REGION}"
temporary_sg_cidrs = ["10.0.0.0/8"]
ssh_host = "127.0.0.1"
ssh_port = {port}
ssh_username = "root"
ssh_timeout = "30s"

[source.aws.source_ami_filter]
name = "base-*"
owners = ["self"]
most_recent = true

[[provisioner]]
type = "shell"
script = "setup.sh"
env = {{ GREETING = "${{var.greeting}}", OUT = "{dir}" }}

[[provisioner]]
type = "file"
source = "site/"
destination = "{dir}/www"
"#,
                port = world.sshd.port,
                dir = world.path("remote").display(),
            ),
        );
        std::fs::create_dir_all(world.path("remote")).unwrap();
        world
    }

    fn scratch(&self) -> &Scratch {
        self.scratch.as_ref().expect("scratch")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.scratch().path(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        self.scratch().write(rel, content);
    }

    fn ec2(&self) -> Ec2 {
        self.moto.ec2(REGION)
    }

    /// An image of this account named `name`, as a base or a stray.
    fn own_image(&self, name: &str) -> String {
        let ec2 = self.ec2();
        let out = ec2
            .block(
                ec2.client
                    .copy_image()
                    .source_image_id(AL2023)
                    .source_region(REGION)
                    .name(name)
                    .send(),
            )
            .expect("CopyImage");
        out.image_id().unwrap().to_string()
    }

    /// Runs `build` with `args` in the world's folder (it must succeed);
    /// returns stdout and stderr.
    fn build(&mut self, args: &[&str]) -> (String, String) {
        self.build_with(args, |t| t)
    }

    /// `build`, with more expectations set by `expect`.
    fn build_with(&mut self, args: &[&str], expect: impl FnOnce(Test) -> Test) -> (String, String) {
        let scratch = self.scratch.take().expect("scratch");
        let home = scratch.dir.path().to_path_buf();
        let test = Test::in_scratch(scratch)
            .envs(aws_vars(&self.moto.endpoint(), &home))
            .args(["build", "template.toml", "--manifest", "manifest.json"])
            .args(args)
            .limit(BUILD_LIMIT);
        let (out, scratch) = expect(test).run();
        self.scratch = Some(scratch);
        (common::text(&out.stdout), common::text(&out.stderr))
    }

    fn manifest(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("manifest.json")).expect("manifest");
        serde_json::from_str(&text).expect("manifest is JSON")
    }

    /// The AMI the last build made or reused, and its build number.
    fn last_ami(&self) -> (String, u64) {
        let m = self.manifest();
        let build = &m["builds"][0];
        (
            build["amis"][REGION].as_str().expect("ami").to_string(),
            build["build"].as_u64().expect("build number"),
        )
    }

    fn image_tags(&self, id: &str) -> Vec<aws_sdk_ec2::types::Tag> {
        let ec2 = self.ec2();
        let out = ec2
            .block(ec2.client.describe_images().image_ids(id).send())
            .expect("DescribeImages");
        out.images()[0].tags().to_vec()
    }

    fn launches(&self) -> usize {
        self.moto
            .api_actions()
            .iter()
            .filter(|a| *a == "RunInstances")
            .count()
    }
}

#[test]
fn an_unchanged_rebuild_reuses_the_image_and_each_change_rebuilds_naming_it() {
    let mut w = World::new();
    w.own_image("base-1");

    let (stdout, stderr) = w.build(&["--if-changed"]);
    let (first, build) = w.last_ami();
    assert_eq!(stdout, format!("{REGION}: {first}\n"));
    assert_eq!(build, 1);
    assert!(
        stderr.contains("building: no earlier image in us-east-1"),
        "{stderr}"
    );
    let manifest = w.manifest();
    let entry = &manifest["builds"][0];
    let fingerprint = entry["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let tags = w.image_tags(&first);
    assert_eq!(tag(&tags, "imgbuild:build"), Some("1"));
    assert_eq!(
        tag(&tags, "imgbuild:fingerprint"),
        Some(fingerprint.as_str())
    );
    assert_eq!(tag(&tags, "Name"), Some("web-1.2-1"));

    // The package inventory of the machine the provisioners ran on (this one).
    let packages = entry["packages"].as_array().expect("packages");
    assert!(
        packages
            .iter()
            .any(|p| p["name"] == "bash" && p["arch"] == "amd64"),
        "{packages:?}"
    );
    assert_eq!(
        tag(&tags, "imgbuild:packages-sha256"),
        entry["packages_sha256"].as_str()
    );
    let sbom: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.path("web-1.2-1.aws.cdx.json")).expect("SBOM written"),
    )
    .expect("SBOM is JSON");
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["metadata"]["component"]["name"], "web");
    assert_eq!(sbom["metadata"]["component"]["version"], "1.2-1");
    assert_eq!(
        sbom["components"].as_array().map(Vec::len),
        Some(packages.len())
    );
    assert!(
        sbom["components"][0]["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:deb/")
    );

    // Nothing changed: nothing is launched, the results point at the first image.
    w.moto.post("/moto-api/recorder/reset-recording");
    let built_at = tag(&tags, "imgbuild:built-at")
        .expect("built-at")
        .to_string();
    let began = Instant::now();
    let expected = format!(
        "unchanged: {REGION}: {first} (built {built_at}, fingerprint {})\n",
        &fingerprint[..12]
    );
    let (_, stderr) = w.build_with(&["--if-changed"], |t| t.stdout(&expected));
    eprintln!("unchanged --if-changed run took {:?}", began.elapsed());
    assert_eq!(w.launches(), 0, "no instance for an unchanged build");
    assert_eq!(
        w.moto.api_actions(),
        ["DescribeImages", "DescribeImages"],
        "the whole decision: the family, then the base"
    );
    assert!(stderr.contains("build finished in"), "{stderr}");
    assert_eq!(w.last_ami(), (first.clone(), 1));
    assert_eq!(w.manifest()["builds"][0]["unchanged"], true);
    assert_eq!(
        w.manifest()["builds"][0]["artifacts"][0]["id"],
        first.as_str()
    );

    // One byte of a provisioner script.
    w.write("setup.sh", "echo \"$GREETING\" > \"$OUT/greeting\" \n");
    let (_, stderr) = w.build(&["--if-changed"]);
    assert!(
        stderr.contains(&format!(
            "building: changed since build 1 ({first}) in us-east-1: provisioner 1 (shell, template.toml:"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "aws: packages since build 1 ({first}): no package changes"
        )),
        "{stderr}"
    );
    let (second, build) = w.last_ami();
    assert_eq!(build, 2);
    assert_eq!(w.launches(), 1, "a changed build launches its instance");
    assert_eq!(
        w.manifest()["builds"][0]["package_changes"]["changed"],
        serde_json::json!([])
    );

    // One byte of a file under an uploaded folder.
    w.write("site/css/site.css", "body { margin: 1 }\n");
    let (_, stderr) = w.build(&["--if-changed"]);
    assert!(
        stderr.contains(&format!(
            "building: changed since build 2 ({second}) in us-east-1: provisioner 2 (file, template.toml:"
        )),
        "{stderr}"
    );
    let (third, _) = w.last_ami();

    // A variable's value.
    let (_, stderr) = w.build(&["--if-changed", "--var", "greeting=hi"]);
    assert!(
        stderr.contains(&format!(
            "building: changed since build 3 ({third}) in us-east-1: variable `greeting`\n"
        )),
        "{stderr}"
    );
    let (fourth, _) = w.last_ami();

    // The filter now picks a newer base.
    let newer = w.own_image("base-2");
    let (_, stderr) = w.build(&["--if-changed", "--var", "greeting=hi"]);
    assert!(
        stderr.contains(&format!(
            "building: changed since build 4 ({fourth}) in us-east-1: base AMI (now {newer} base-2)\n"
        )),
        "{stderr}"
    );
    assert_eq!(w.last_ami().1, 5);
}

#[test]
fn builds_number_themselves_skip_taken_names_and_rebuild_past_max_age() {
    let mut w = World::new();
    w.own_image("base-1");
    w.build(&[]);
    assert_eq!(w.last_ami().1, 1);
    w.build(&[]);
    let (second, build) = w.last_ami();
    assert_eq!(build, 2);
    let tags = w.image_tags(&second);
    assert_eq!(tag(&tags, "Name"), Some("web-1.2-2"));
    assert_eq!(tag(&tags, "imgbuild:build"), Some("2"));

    // A name taken by an image outside the family moves the build on.
    let stray = w.own_image("web-1.2-3");
    let (_, stderr) = w.build(&[]);
    assert!(
        stderr.contains(&format!(
            "an AMI named `web-1.2-3` already exists in us-east-1 ({stray}); taking build 4"
        )),
        "{stderr}"
    );
    let (fourth, build) = w.last_ami();
    assert_eq!(build, 4);
    assert_eq!(tag(&w.image_tags(&fourth), "Name"), Some("web-1.2-4"));

    // Unchanged, but older than max_age.
    std::thread::sleep(Duration::from_secs(2));
    // Set in the template this time, as a scheduled job would.
    let template = std::fs::read_to_string(w.path("template.toml")).unwrap();
    w.write(
        "template.toml",
        &format!("rebuild = \"if-changed\"\nmax_age = \"1s\"\n{template}"),
    );
    let (_, stderr) = w.build(&[]);
    assert!(
        stderr.contains(&format!(
            "building: build 4 ({fourth}) in us-east-1 is unchanged but too old: built "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("past max_age 1s"), "{stderr}");
    assert_eq!(w.last_ami().1, 5);
}
