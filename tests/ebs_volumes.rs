//! amazon-ebs block devices and encryption: what RunInstances, CreateImage
//! and CopyImage are asked for, against moto's EC2 and a real sshd, and what
//! `validate` says of bad settings without calling EC2.
//!
//! moto ignores CreateImage's BlockDeviceMappings (every image it makes
//! shows one root mapping of its own) and CopyImage's Encrypted/KmsKeyId, so
//! for those the tests check the requests moto received.

mod common;

use std::collections::BTreeMap;

use common::ebs::{AL2023_6_18, COPY_REGION, REGION, World};
use common::moto::{Call, Moto};
use common::test::Test;

/// The parameters of `call` whose names start with `prefix`.
fn params_under(call: &Call, prefix: &str) -> BTreeMap<String, String> {
    call.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn root_device_of_source(w: &World) -> String {
    let ec2 = w.ec2(REGION);
    let out = ec2
        .block(ec2.client.describe_images().image_ids(AL2023_6_18).send())
        .expect("DescribeImages");
    out.images()[0]
        .root_device_name()
        .expect("root device name")
        .to_string()
}

/// Builds an 8 GiB image encrypted at boot, with one copy in `COPY_REGION`
/// (`keys` names the keys, if any); checks that the launch encrypted the
/// root volume (with `key`, or EBS's default key when `None`), so the image
/// made from it is, and returns the one CopyImage call with the build's log.
fn build_encrypted_with_a_copy(w: &World, keys: &str, key: Option<&str>) -> (Call, String) {
    let template = w.template(
        &format!(
            "root_volume_size = 8\nencrypt_boot = true\nami_regions = [\"{COPY_REGION}\"]\n{keys}"
        ),
        "",
    );
    let root = root_device_of_source(w);
    let (out, log) = w.run_build(&template);
    assert!(out.status.success(), "{log}");
    let mut want = expected(&[
        ("BlockDeviceMapping.1.DeviceName", root.as_str()),
        ("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"),
        ("BlockDeviceMapping.1.Ebs.Encrypted", "true"),
        ("BlockDeviceMapping.1.Ebs.VolumeSize", "8"),
    ]);
    if let Some(key) = key {
        want.insert("BlockDeviceMapping.1.Ebs.KmsKeyId".into(), key.into());
    }
    let launches = w.moto.calls("RunInstances");
    assert_eq!(
        params_under(&launches[0], "BlockDeviceMapping."),
        want,
        "{log}"
    );
    let mut copies = w.moto.calls("CopyImage");
    assert_eq!(copies.len(), 1, "{log}");
    (copies.remove(0), log)
}

/// Runs `validate` on `template` with moto as AWS, expecting exactly
/// `stderr` and exit 2, and checks that validation called no AWS API.
fn refused_at_validate(template: &str, stderr: &str) {
    let moto = Moto::start();
    Test::new()
        .aws(&moto.endpoint())
        .file("t.toml", template)
        .args(["validate", "t.toml"])
        .stdout("")
        .stderr(stderr)
        .status(2)
        .run();
    moto.assert_no_requests("validation must not call AWS");
}

#[test]
fn extra_launch_volumes_go_with_the_instance_and_the_ami_records_its_own_mappings() {
    let w = World::new();
    let template = w.template(
        "root_volume_size = 12",
        r#"[[source.aws.launch_block_device]]
device_name = "/dev/sdb"
volume_size = 10
volume_type = "gp3"
iops = 4000
throughput = 250

[[source.aws.launch_block_device]]
device_name = "/dev/sdc"
volume_size = 5
volume_type = "gp2"

[[source.aws.ami_block_device]]
device_name = "/dev/sdb"
delete_on_termination = false

[[source.aws.ami_block_device]]
device_name = "/dev/sdd"
virtual_name = "ephemeral0"
"#,
    );
    let root = root_device_of_source(&w);
    let volumes_before = w.ec2(REGION).volume_ids();
    let (out, log) = w.run_build(&template);
    assert!(out.status.success(), "{log}");

    // The instance was launched with the root volume and both extra volumes,
    // every one deleted with the instance, and tagged as temporary.
    let launches = w.moto.calls("RunInstances");
    assert_eq!(launches.len(), 1, "{log}");
    let r = |n: usize, rest: &str| format!("BlockDeviceMapping.{n}.{rest}");
    let mut want = BTreeMap::new();
    for (n, device, size, kind) in [
        (1, root.as_str(), "12", None),
        (2, "/dev/sdb", "10", Some("gp3")),
        (3, "/dev/sdc", "5", Some("gp2")),
    ] {
        want.insert(r(n, "DeviceName"), device.to_string());
        want.insert(r(n, "Ebs.VolumeSize"), size.to_string());
        want.insert(r(n, "Ebs.DeleteOnTermination"), "true".to_string());
        if let Some(kind) = kind {
            want.insert(r(n, "Ebs.VolumeType"), kind.to_string());
        }
    }
    want.insert(r(2, "Ebs.Iops"), "4000".into());
    want.insert(r(2, "Ebs.Throughput"), "250".into());
    assert_eq!(
        params_under(&launches[0], "BlockDeviceMapping."),
        want,
        "{log}"
    );
    let volume_tags = params_under(&launches[0], "TagSpecification.2.");
    assert_eq!(
        volume_tags
            .get("TagSpecification.2.ResourceType")
            .map(String::as_str),
        Some("volume")
    );
    assert!(
        volume_tags.values().any(|v| v == "imgbuild:temporary"),
        "{volume_tags:?}"
    );

    // The AMI records /dev/sdb (kept on instances launched from it) and an
    // instance store volume; the scratch volume /dev/sdc is left out.
    let images = w.moto.calls("CreateImage");
    assert_eq!(images.len(), 1, "{log}");
    assert_eq!(
        params_under(&images[0], "BlockDeviceMapping."),
        expected(&[
            ("BlockDeviceMapping.1.DeviceName", "/dev/sdb"),
            ("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "false"),
            ("BlockDeviceMapping.2.DeviceName", "/dev/sdd"),
            ("BlockDeviceMapping.2.VirtualName", "ephemeral0"),
            ("BlockDeviceMapping.3.DeviceName", "/dev/sdc"),
            ("BlockDeviceMapping.3.NoDevice", ""),
        ]),
        "{log}"
    );

    // No volume outlives the build.
    assert_eq!(
        w.ec2(REGION).volume_ids(),
        volumes_before,
        "volumes left\n{log}"
    );
    assert_eq!(w.ec2(REGION).own_images().len(), 1, "{log}");
}

#[test]
fn each_copy_is_encrypted_with_its_regions_key() {
    let w = World::new();
    let build_key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let (copy, log) = build_encrypted_with_a_copy(
        &w,
        &format!(
            r#"kms_key_id = "{build_key}"
region_kms_key_ids = {{ "{COPY_REGION}" = "alias/images-eu" }}"#
        ),
        Some(build_key),
    );
    // The copy is encrypted with its own region's key.
    for (key, value) in [
        ("SourceRegion", REGION),
        ("Encrypted", "true"),
        ("KmsKeyId", "alias/images-eu"),
    ] {
        assert_eq!(
            copy.get(key).map(String::as_str),
            Some(value),
            "{key}\n{log}"
        );
    }
    assert_eq!(w.ec2(COPY_REGION).own_images().len(), 1, "{log}");
}

#[test]
fn bad_block_devices_fail_validation_without_calling_aws() {
    refused_at_validate(
        r#"name = "web"
version = "1.2"

[source.devices]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0123456789abcdef0"
root_volume_size = 20

[[source.devices.launch_block_device]]
device_name = "/dev/xvda"
volume_size = 30

[[source.devices.launch_block_device]]
device_name = "sdb"
volume_size = 0
volume_type = "gp4"

[[source.devices.launch_block_device]]
device_name = "/dev/sdc"
volume_type = "gp2"
iops = 3000
throughput = 200

[[source.devices.launch_block_device]]
device_name = "/dev/sdd"
volume_type = "gp3"
iops = 20000
throughput = 2000
delete_on_termination = false

[[source.devices.launch_block_device]]
device_name = "/dev/sdd"
volume_type = "io2"
snapshot_id = "snap-xyz"
kms_key_id = "my-key"
encrypted = false

[[source.devices.launch_block_device]]
volume_size = 8

[[source.devices.ami_block_device]]
device_name = "/dev/sdc"
volume_size = 50
delete_on_termination = false

[[source.devices.ami_block_device]]
device_name = "/dev/sde"
no_device = true
volume_size = 5

[[source.devices.ami_block_device]]
device_name = "/dev/sdf"
virtual_name = "scratch"
kms_key_id = "alias/images"

[[source.devices.ami_block_device]]
device_name = "/dev/sdg"
snapshot_id = "snap-0123456789abcdef0"
kms_key_id = "alias/images"
encrypted = false

[[source.devices.ami_block_device]]
device_name = "/dev/xvda"
volume_size = 100
delete_on_termination = true
"#,
        r#"error: t.toml:11:15: `/dev/xvda` is the root device, which `root_volume_size` already sets; describe the root volume in one place
 11 | device_name = "/dev/xvda"
    |               ^^^^^^^^^^^

error: t.toml:15:15: `sdb` is not a device name like /dev/sdf or /dev/xvdf
 15 | device_name = "sdb"
    |               ^^^^^
  help: EC2 names devices /dev/sd[a-z] or /dev/xvd[a-z], the root often /dev/xvda or /dev/sda1

error: t.toml:16:15: `volume_size` is in GiB, from 1 to 65536
 16 | volume_size = 0
    |               ^

error: t.toml:17:15: unknown volume type `gp4`; use one of gp2, gp3, io1, io2, st1, sc1, standard
 17 | volume_type = "gp4"
    |               ^^^^^

error: t.toml:22:8: `iops` applies only to io1, io2 and gp3 volumes (`volume_type`)
 22 | iops = 3000
    |        ^^^^

error: t.toml:23:14: `throughput` applies only to gp3 volumes (`volume_type`)
 23 | throughput = 200
    |              ^^^

error: t.toml:28:8: `iops` of a gp3 volume is from 3000 to 16000
 28 | iops = 20000
    |        ^^^^^

error: t.toml:29:14: `throughput` is in MiB/s, from 125 to 1000
 29 | throughput = 2000
    |              ^^^^

error: t.toml:30:25: the build instance's volumes are deleted with it; `delete_on_termination = false` would leave this one behind
 30 | delete_on_termination = false
    |                         ^^^^^
  help: to keep the volume on instances launched from the image, set `delete_on_termination = false` on the `ami_block_device` of the same device

error: t.toml:33:15: `/dev/sdd` is mapped twice in `launch_block_device`
 33 | device_name = "/dev/sdd"
    |               ^^^^^^^^^^

error: t.toml:34:15: an io2 volume needs `iops`
 34 | volume_type = "io2"
    |               ^^^^^

error: t.toml:35:15: `snap-xyz` is not a snapshot id
 35 | snapshot_id = "snap-xyz"
    |               ^^^^^^^^^^
  help: snapshot ids look like `snap-0123456789abcdef0`

error: t.toml:36:14: `my-key` is not a KMS key id, key ARN or `alias/NAME`
 36 | kms_key_id = "my-key"
    |              ^^^^^^^^

error: t.toml:39:1: each `launch_block_device` needs a `device_name`
 39 | [[source.devices.launch_block_device]]
    | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:44:15: `volume_size` of /dev/sdc comes from the build instance's volume: of a volume the instance has, the AMI changes only `delete_on_termination`
 44 | volume_size = 50
    |               ^^
  help: set it on the `launch_block_device` of /dev/sdc (for the root, `root_volume_*` does too)

error: t.toml:50:15: `volume_size` does not apply with `no_device = true`
 50 | volume_size = 5
    |               ^

error: t.toml:54:16: `scratch` is not an instance store name like ephemeral0
 54 | virtual_name = "scratch"
    |                ^^^^^^^^^

error: t.toml:55:14: `kms_key_id` does not apply to an instance store volume (`virtual_name`)
 55 | kms_key_id = "alias/images"
    |              ^^^^^^^^^^^^^^

error: t.toml:60:14: `kms_key_id` encrypts the volume, which `encrypted = false` says not to
 60 | kms_key_id = "alias/images"
    |              ^^^^^^^^^^^^^^

error: t.toml:65:15: `volume_size` of /dev/xvda comes from the build instance's volume: of a volume the instance has, the AMI changes only `delete_on_termination`
 65 | volume_size = 100
    |               ^^^
  help: set it on the `launch_block_device` of /dev/xvda (for the root, `root_volume_*` does too)

20 errors found
"#,
    );
}

#[test]
fn bad_encryption_settings_fail_validation_without_calling_aws() {
    refused_at_validate(
        r#"name = "web"
version = "1.2"

[source.keyed]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0123456789abcdef0"
encrypt_boot = true
kms_key_id = "alias/images"
ami_regions = ["eu-west-1", "eu-west-3"]

[source.keyed.region_kms_key_ids]
"eu-west-1" = "alias/images-eu"
"us-east-1" = "alias/other"
"ap-south-1" = "alias/images-ap"
"Paris" = "not a key"

[source.contradict]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0123456789abcdef0"
encrypt_boot = true
root_volume_encrypted = false

[source.plain]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0123456789abcdef0"
encrypt_boot = false
kms_key_id = "alias/images"

[source.default_key]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0123456789abcdef0"
encrypt_boot = true
ami_regions = ["eu-west-3"]

[source.root_key]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0123456789abcdef0"
root_volume_encrypted = false
kms_key_id = "alias/images"
"#,
        r#"error: t.toml:10:29: the image is encrypted with a key of us-east-1; the copy in `eu-west-3` needs a key of its own in `region_kms_key_ids`
 10 | ami_regions = ["eu-west-1", "eu-west-3"]
    |                             ^^^^^^^^^^^
  help: add `region_kms_key_ids = { "eu-west-3" = "alias/…" }`, or "alias/aws/ebs" for EBS's default key there

error: t.toml:14:15: `kms_key_id` already names the key of the build region us-east-1; name it once
 14 | "us-east-1" = "alias/other"
    |               ^^^^^^^^^^^^^

error: t.toml:15:16: `ap-south-1` is neither the build region us-east-1 nor in `ami_regions`; its key would not be used
 15 | "ap-south-1" = "alias/images-ap"
    |                ^^^^^^^^^^^^^^^^^

error: t.toml:16:11: `Paris` is not an AWS region name like eu-west-3
 16 | "Paris" = "not a key"
    |           ^^^^^^^^^^^

error: t.toml:16:11: `not a key` is not a KMS key id, key ARN or `alias/NAME`
 16 | "Paris" = "not a key"
    |           ^^^^^^^^^^^

error: t.toml:23:25: `root_volume_encrypted = false` contradicts `encrypt_boot = true`
 23 | root_volume_encrypted = false
    |                         ^^^^^

error: t.toml:29:16: `encrypt_boot = false` contradicts `kms_key_id`
 29 | encrypt_boot = false
    |                ^^^^^

error: t.toml:43:25: `root_volume_encrypted = false` contradicts `kms_key_id`, which encrypts the root volume
 43 | root_volume_encrypted = false
    |                         ^^^^^

8 errors found
"#,
    );
}

#[test]
fn a_launch_volume_ec2_refuses_fails_the_launch_and_leaves_nothing() {
    let w = World::new();
    // A new volume needs a size or a snapshot; EC2 says so only at launch.
    let template = w.template(
        "",
        "[[source.aws.launch_block_device]]\ndevice_name = \"/dev/sdf\"\nvolume_type = \"gp3\"\n",
    );
    let baseline = w.snapshot_baseline();
    let volumes_before = w.ec2(REGION).volume_ids();
    let (out, log) = w.run_build(&template);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stderr = common::text(&out.stderr);
    assert_eq!(
        stderr.lines().last(),
        Some(
            "error: build `aws`: step \"launch instance\" failed: launching on-demand t3.micro from ami-0e1e769742d1cfb49 in us-east-1: RunInstances failed: MissingParameter: The request must contain the parameter size or snapshotId"
        ),
        "{log}"
    );
    w.assert_clean(&baseline, &log);
    assert_eq!(w.ec2(REGION).volume_ids(), volumes_before, "{log}");
}

#[test]
fn with_ebs_default_keys_the_image_and_its_copy_are_encrypted_without_naming_a_key() {
    let w = World::new();
    let (copy, log) = build_encrypted_with_a_copy(&w, "", None);
    assert_eq!(
        copy.get("Encrypted").map(String::as_str),
        Some("true"),
        "{log}"
    );
    assert_eq!(copy.get("KmsKeyId"), None, "{log}");
}
