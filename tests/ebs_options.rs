//! amazon-ebs settings end to end against moto and a real sshd:
//! `skip_create_ami`, `build --dry-run`, `source_ami_ssm_parameter` with the
//! `${source.ami_*}` references, and `subnet_filter` / `vpc_filter`; and each
//! one's bad input, refused at `validate` before any call.

mod common;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use common::ebs::{AL2023_6_18, BUILD_LIMIT, REGION, World, describe};
use common::moto::{Moto, tag};
use common::test::Test;
use common::{run, text};

/// The SSM parameter moto serves for the Amazon Linux 2023 6.18 kernel AMI.
const AL2023_6_18_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.18-x86_64";

/// `validate` of `template`, written to `t.toml`.
fn validate(template: &str) -> Test {
    Test::new()
        .file("t.toml", template)
        .args(["validate", "t.toml"])
}

/// A shell provisioner that leaves `ran` in the test's folder.
fn marker_provisioner(w: &World) -> String {
    format!(
        "[[provisioner]]\ntype = \"shell\"\ninline = [\"touch {}/ran\"]\n",
        w.dir()
    )
}

#[test]
fn skip_create_ami_provisions_then_leaves_nothing_and_takes_no_number() {
    let w = World::new();
    // As a merge-request pipeline would set it: from a bool variable.
    let rest = format!(
        "{}\n[variables.skip_image]\ntype = \"bool\"\ndefault = false\n",
        marker_provisioner(&w)
    );
    let path = w.template("skip_create_ami = \"${var.skip_image}\"", &rest);
    let baseline = w.snapshot_baseline();
    let out = run(
        w.build(&path).args([
            "--var",
            "skip_image=true",
            "--dotenv",
            "out.env",
            "--if-changed",
        ]),
        BUILD_LIMIT,
    );
    let log = describe(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        w.scratch.path("ran").exists(),
        "the provisioner never ran\n{log}"
    );
    assert_eq!(text(&out.stdout), "", "{log}");
    assert!(
        text(&out.stderr)
            .contains("provisioning succeeded; no image made (skip_create_ami = true)"),
        "{log}"
    );

    // No stop, no image; the instance, key pair and group are gone.
    for action in ["StopInstances", "CreateImage", "CreateTags"] {
        assert_eq!(w.moto.calls(action).len(), 0, "{action}\n{log}");
    }
    assert_eq!(w.moto.calls("TerminateInstances").len(), 1, "{log}");
    w.assert_clean(&baseline, &log);

    // The manifest says so, and claims no build number or fingerprint.
    let manifest = w.manifest();
    let build = &manifest["builds"][0];
    assert_eq!(build["outcome"], "succeeded", "{manifest:#}");
    assert_eq!(
        build["skipped"], "no image made (skip_create_ami = true)",
        "{manifest:#}"
    );
    for absent in ["build", "amis", "ami_name", "fingerprint"] {
        assert!(build.get(absent).is_none(), "{absent}: {manifest:#}");
    }
    assert_eq!(build["artifacts"], serde_json::json!([]), "{manifest:#}");
    let dotenv = std::fs::read_to_string(w.scratch.path("out.env")).expect("dotenv written");
    let keys: Vec<&str> = dotenv.lines().filter_map(|l| l.split('=').next()).collect();
    assert_eq!(
        keys,
        [
            "IMGBUILD_IMAGE_NAME",
            "IMGBUILD_IMAGE_VERSION",
            "IMGBUILD_AWS_BUILD_ID",
            "IMGBUILD_AWS_OUTCOME"
        ],
        "{dotenv}"
    );

    // The next real build (the variable's default) is still build 1.
    let out = run(&mut w.build(&path), BUILD_LIMIT);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(w.manifest()["builds"][0]["build"], 1);
}

#[test]
fn dry_run_checks_each_call_with_dry_run_and_makes_nothing() {
    let moto = Moto::start();
    let (_, scratch) = Test::new()
        .aws(&moto.endpoint())
        .file(
            "t.toml",
            &format!(
                r#"name = "web"
version = "1.2"

[source.aws]
type = "amazon-ebs"
region = "{REGION}"
source_ami = "{AL2023_6_18}"
temporary_sg_cidrs = ["10.0.0.0/8"]
ssh_username = "root"

[source.local]
type = "qemu"
base_image = "base.qcow2"
ssh_username = "root"
"#
            ),
        )
        .file("base.qcow2", "")
        .args(["build", "--dry-run", "t.toml", "--dotenv", "out.env"])
        .stdout(
            "aws: ec2:ImportKeyPair: allowed\n\
         aws: ec2:CreateSecurityGroup: allowed\n\
         aws: ec2:RunInstances: allowed\n\
         aws: ec2:CreateImage: allowed\n\
         aws: ec2:ModifyImageAttribute: not checked (needs the build's image)\n\
         local: nothing to check (qemu)\n",
        )
        .stderr_contains("--dry-run checks cloud permissions; a `qemu` source has none to check")
        .status(0)
        .run();

    // Every call that makes something went with DryRun, and nothing was made.
    for action in [
        "ImportKeyPair",
        "CreateSecurityGroup",
        "RunInstances",
        "CreateImage",
    ] {
        let calls = moto.calls(action);
        assert_eq!(calls.len(), 1, "{action}: {calls:?}");
        assert_eq!(
            calls[0].get("DryRun").map(String::as_str),
            Some("true"),
            "{action}"
        );
    }
    let run_instances = &moto.calls("RunInstances")[0];
    assert_eq!(run_instances["ImageId"], AL2023_6_18);
    assert_eq!(run_instances["TagSpecification.1.ResourceType"], "instance");
    let ec2 = moto.ec2(REGION);
    assert_eq!(ec2.instances().len(), 0);
    assert_eq!(ec2.own_images().len(), 0);
    assert_eq!(ec2.imgbuild_key_pairs(), Vec::<String>::new());
    assert_eq!(ec2.imgbuild_security_groups(), Vec::<String>::new());
    assert!(!scratch.path("imgbuild-manifest.json").exists());
    assert!(!scratch.path("out.env").exists());
}

#[test]
fn dry_run_fails_naming_the_call_that_would_fail() {
    let moto = Moto::start();
    Test::new()
    .aws(&moto.endpoint())
    .file(
        "t.toml",
        &format!(
            "name = \"web\"\nversion = \"1.2\"\n[source.aws]\ntype = \"amazon-ebs\"\nregion = \"{REGION}\"\nsource_ami = \"{AL2023_6_18}\"\nssh_username = \"root\"\nskip_create_ami = true\nsecurity_group_ids = [\"sg-0123456789abcdef0\"]\niam_instance_profile = \"no-such-profile\"\n"
        ),
    )
    .args(["build", "--dry-run", "t.toml"])
    .stdout(
        "aws: ec2:ImportKeyPair: allowed\n\
         aws: ec2:RunInstances: would fail (RunInstances failed: NoSuchEntity: Instance profile no-such-profile not found)\n",
    )
    .stderr_contains(
        "error: build `aws`: step \"check permissions\" failed: would fail: ec2:RunInstances\n",
    )
    .status(1)
    .run();
    assert_eq!(moto.ec2(REGION).instances().len(), 0);
}

#[test]
fn the_base_ami_comes_from_ssm_and_its_name_lands_in_a_tag() {
    let w = World::new();
    let path = w.template(
        &format!("source_ami_ssm_parameter = \"{AL2023_6_18_PARAMETER}\""),
        "[source.aws.tags]\nBase = \"${source.ami_name}\"\nBaseOwner = \"${source.ami_owner}\"\nBaseDate = \"${source.ami_creation_date}\"\n\n[source.aws.run_tags]\nBase = \"${source.ami_name}\"\n",
    );
    let (out, log) = w.run_build(&path);
    assert!(out.status.success(), "{log}");
    let launches = w.moto.calls("RunInstances");
    assert_eq!(launches.len(), 1, "{log}");
    assert_eq!(launches[0]["ImageId"], AL2023_6_18, "{log}");
    // The build instance is tagged with it too.
    let instance = &w.ec2(REGION).instances()[0];

    let ec2 = w.ec2(REGION);
    let base = ec2
        .block(ec2.client.describe_images().image_ids(AL2023_6_18).send())
        .expect("DescribeImages")
        .images()[0]
        .clone();
    let made = ec2.own_images();
    assert_eq!(made.len(), 1, "{log}");
    assert_eq!(tag(made[0].tags(), "Base"), base.name(), "{log}");
    assert_eq!(tag(made[0].tags(), "BaseOwner"), base.owner_id(), "{log}");
    assert_eq!(
        tag(made[0].tags(), "BaseDate"),
        base.creation_date(),
        "{log}"
    );
    assert_eq!(tag(instance.tags(), "Base"), base.name(), "{log}");
    assert_eq!(w.manifest()["builds"][0]["source_ami"], AL2023_6_18);
}

#[test]
fn an_ssm_parameter_that_is_missing_or_names_no_image_is_a_clear_error() {
    let w = World::new();
    w.moto
        .put_ssm_parameter(REGION, "/team/base", "ami-0123456789abcdef0");
    for (parameter, error) in [
        (
            "/team/base",
            "source_ami_ssm_parameter /team/base names ami-0123456789abcdef0, but source AMI ami-0123456789abcdef0 does not exist in us-east-1 (DescribeImages failed: InvalidAMIID.NotFound: ",
        ),
        (
            "/team/none",
            "source_ami_ssm_parameter /team/none does not exist in us-east-1\n",
        ),
    ] {
        let path = w.template(&format!("source_ami_ssm_parameter = \"{parameter}\""), "");
        let (out, log) = w.run_build(&path);
        assert_eq!(out.status.code(), Some(1), "{log}");
        assert!(
            text(&out.stderr).contains(&format!(
                "error: build `aws`: step \"find source AMI\" failed: {error}"
            )),
            "{log}"
        );
    }
    assert_eq!(w.moto.calls("RunInstances").len(), 0);
}

#[test]
fn the_fingerprint_follows_the_ami_the_parameter_names_today() {
    let moto = Moto::start();
    let put = |value: &str| moto.put_ssm_parameter(REGION, "/team/base", value);
    let fingerprint = || {
        let (out, _) = Test::new()
            .aws(&moto.endpoint())
            .file(
                "t.toml",
                &format!(
                    "name = \"web\"\nversion = \"1.2\"\n[source.aws]\ntype = \"amazon-ebs\"\nregion = \"{REGION}\"\nsource_ami_ssm_parameter = \"/team/base\"\n"
                ),
            )
            .args(["fingerprint", "t.toml"])
            .run();
        text(&out.stdout)
    };
    put(AL2023_6_18);
    let before = fingerprint();
    assert!(
        before.contains(&format!("base AMI (now {AL2023_6_18} ")),
        "{before}"
    );
    // Another AMI moto has: the parameter moves on, and so does the fingerprint.
    put("ami-0ed094fb1304fd857");
    let after = fingerprint();
    assert!(
        after.contains("base AMI (now ami-0ed094fb1304fd857 "),
        "{after}"
    );
    assert_ne!(
        before.lines().next(),
        after.lines().next(),
        "{before}\n{after}"
    );
}

/// Two subnets tagged `Purpose = builds` in the default VPC: a /28 with 11
/// free addresses and a /24 with 251. Returns (small, large).
fn build_subnets(w: &World) -> (String, String) {
    let ec2 = w.ec2(REGION);
    let vpc = ec2
        .block(
            ec2.client
                .describe_vpcs()
                .filters(Filter::builder().name("is-default").values("true").build())
                .send(),
        )
        .expect("DescribeVpcs")
        .vpcs()[0]
        .vpc_id()
        .expect("vpc id")
        .to_string();
    let make = |cidr: &str| {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Subnet)
            .tags(Tag::builder().key("Purpose").value("builds").build())
            .build();
        ec2.block(
            ec2.client
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(cidr)
                .tag_specifications(tags)
                .send(),
        )
        .expect("CreateSubnet")
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id")
        .to_string()
    };
    (make("172.31.200.0/28"), make("172.31.201.0/24"))
}

#[test]
fn subnet_filter_with_most_free_picks_the_freer_subnet() {
    let w = World::new();
    let (small, large) = build_subnets(&w);
    let path = w.template(
        "",
        "[source.aws.subnet_filter]\nfilters = { \"tag:Purpose\" = \"builds\" }\nmost_free = true\n\n\
         [source.aws.vpc_filter]\nfilters = { \"is-default\" = \"true\" }\n",
    );
    let (out, log) = w.run_build(&path);
    assert!(out.status.success(), "{log}");
    let launches = w.moto.calls("RunInstances");
    assert_eq!(launches.len(), 1, "{log}");
    assert_eq!(launches[0]["SubnetId"], large, "not {small}\n{log}");
    // The subnet filter was kept to the VPC that vpc_filter found.
    let lookups = w.moto.calls("DescribeSubnets");
    assert!(
        lookups
            .iter()
            .any(|c| c.values().any(|v| v == "vpc-id") && c.values().any(|v| v == "tag:Purpose")),
        "{lookups:?}"
    );
}

#[test]
fn a_vpc_without_a_subnet_launches_in_its_freest_subnet() {
    let w = World::new();
    let path = w.template(
        "",
        "[source.aws.vpc_filter]\nfilters = { \"is-default\" = \"true\" }\n",
    );
    let ec2 = w.ec2(REGION);
    let subnets = ec2
        .block(ec2.client.describe_subnets().send())
        .expect("DescribeSubnets")
        .subnets()
        .to_vec();
    let vpc = ec2.default_vpc();
    // The most free addresses; equal counts go to the smallest id.
    let freest = subnets
        .iter()
        .filter(|s| s.vpc_id() == Some(vpc.as_str()))
        .min_by_key(|s| {
            (
                -s.available_ip_address_count().unwrap_or(0),
                s.subnet_id().unwrap().to_string(),
            )
        })
        .unwrap();
    // Chosen before the build: moto counts the instance's address as taken.
    let (out, log) = w.run_build(&path);
    assert!(out.status.success(), "{log}");
    let launches = w.moto.calls("RunInstances");
    assert_eq!(launches.len(), 1, "{log}");
    assert_eq!(
        launches[0].get("SubnetId").map(String::as_str),
        freest.subnet_id(),
        "{log}"
    );
}

#[test]
fn a_subnet_filter_that_matches_nothing_or_several_fails_before_anything_is_made() {
    let w = World::new();
    build_subnets(&w);
    let baseline = w.snapshot_baseline();
    for (filter, error) in [
        (
            "filters = { \"tag:Purpose\" = \"nothing\" }",
            "step \"choose network\" failed: subnet_filter (tag:Purpose=nothing) in us-east-1: nothing matches",
        ),
        (
            "filters = { \"tag:Purpose\" = \"builds\" }",
            "step \"choose network\" failed: subnet_filter (tag:Purpose=builds) in us-east-1: 2 match (",
        ),
    ] {
        let path = w.template("", &format!("[source.aws.subnet_filter]\n{filter}\n"));
        let (out, log) = w.run_build(&path);
        assert_eq!(out.status.code(), Some(1), "{log}");
        assert!(text(&out.stderr).contains(error), "{log}");
        w.assert_clean(&baseline, &log);
    }
    assert_eq!(w.moto.calls("RunInstances").len(), 0);
    assert_eq!(w.moto.calls("ImportKeyPair").len(), 0);
}

#[test]
fn bad_new_settings_are_refused_at_validate() {
    validate(
        r#"name = "web"
version = "1.2"

[source.aws]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0123456789abcdef0"
source_ami_ssm_parameter = "/aws/service/ami latest"
subnet_id = "subnet-0123456789abcdef0"
vpc_id = "vpc-0123456789abcdef0"
ssh_username = "root"

[source.aws.subnet_filter]
filters = { "tag:Purpose" = "" }
most_free = true
random = true

[source.aws.vpc_filter]

[source.flags]
type = "amazon-ebs"
region = "us-east-1"
ssh_username = "root"
skip_create_ami = "yes"

[source.deprecated]
type = "amazon-ebs"
region = "us-east-1"
ssh_username = "root"

[source.deprecated.source_ami_filter]
name = "al2023-*"
owners = ["amazon"]
include_deprecated = "yes"

[source.typo]
type = "amazon-ebs"
region = "us-east-1"
source_ami_ssm_parameter = "/team/base"
ssh_username = "root"

[source.typo.subnet_filter]
filters = { "tag:Purpose" = "builds" }
most_recent = true

[source.reference]
type = "amazon-ebs"
region = "us-east-1"
source_ami_ssm_parameter = "/team/base"
ssh_username = "root"

[source.reference.tags]
Base = "${source.ami_nam}"
"#,
    )
    .env_remove("AWS_REGION")
    .stdout("")
        .stderr(
            r#"error: t.toml:8:28: `source_ami` already gives the base AMI; set only one of `source_ami`, `source_ami_filter` or `source_ami_ssm_parameter`
 8 | source_ami_ssm_parameter = "/aws/service/ami latest"
   |                            ^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:8:28: `/aws/service/ami latest` is not an SSM parameter name
 8 | source_ami_ssm_parameter = "/aws/service/ami latest"
   |                            ^^^^^^^^^^^^^^^^^^^^^^^^^
  help: e.g. "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

error: t.toml:13:1: set either `subnet_id` or `subnet_filter`, not both
 13 | [source.aws.subnet_filter]
    | ^^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:13:1: `most_free` and `random` each choose among several subnets; set one
 13 | [source.aws.subnet_filter]
    | ^^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:14:29: filter `tag:Purpose` has no value
 14 | filters = { "tag:Purpose" = "" }
    |                             ^^

error: t.toml:18:1: set either `vpc_id` or `vpc_filter`, not both
 18 | [source.aws.vpc_filter]
    | ^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:18:1: `vpc_filter` needs `filters`
 18 | [source.aws.vpc_filter]
    | ^^^^^^^^^^^^^^^^^^^^^^^
  help: e.g. `filters = { "tag:Name" = "builds" }`; without filters every one in the region matches

error: t.toml:24:19: `skip_create_ami` expects a boolean (true or false), got "yes"
 24 | skip_create_ami = "yes"
    |                   ^^^^^

error: t.toml:34:22: `source_ami_filter.include_deprecated` expects a boolean (true or false), got "yes"
 34 | include_deprecated = "yes"
    |                      ^^^^^

error: t.toml:42:1: unknown field `most_recent`, expected one of `filters`, `most_free`, `random`
 42 | [source.typo.subnet_filter]
    | ^^^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:53:9: `${source.ami_nam}` is not provided by source "reference"
 53 | Base = "${source.ami_nam}"
    |         ^^^^^^^^^^^^^^^^^

11 errors found
"#,
        )
        .status(2)
        .run();
}

#[test]
fn the_source_ami_references_and_new_settings_validate() {
    validate(
        r#"name = "web"
version = "1.2"

[source.aws]
type = "amazon-ebs"
region = "us-east-1"
source_ami_ssm_parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
skip_create_ami = true
ssh_username = "root"

[source.aws.subnet_filter]
filters = { "tag:Purpose" = "builds" }
random = true

[source.aws.vpc_filter]
filters = { "tag:Name" = "builds" }

[source.aws.tags]
Base = "${source.ami_name} ${source.ami_owner} ${source.ami_creation_date}"
"#,
    )
    .stdout("t.toml: ok (1 source, 0 provisioners)\n")
    .stderr("")
    .run();
}
