//! amazon-ebs sharing and the build instance's options, end to end: the
//! real binary against moto's EC2 and a real sshd. What is shared is read
//! back from moto (DescribeImageAttribute, DescribeSnapshotAttribute);
//! what moto does not keep is read from the calls it recorded.

mod common;

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{ImageAttributeName, SnapshotAttributeName};
use common::ebs::{AL2023_6_18, COPY_REGION, REGION, World};
use common::moto::Moto;
use common::test::Test;
use common::text;

const ORG: &str = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5";
const OU: &str = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-c3d4e5f6";

#[test]
fn shares_the_ami_its_snapshots_and_the_copy() {
    let w = World::new();
    let template = w.template(
        &format!(
            r#"ami_regions = ["{COPY_REGION}"]
ami_users = ["210987654321"]
ami_groups = ["all"]
ami_org_arns = ["{ORG}"]
ami_ou_arns = ["{OU}"]
snapshot_users = ["210987654321", "109876543210"]
snapshot_groups = ["all"]"#
        ),
        "",
    );
    let (out, log) = w.run_build(&template);
    assert!(out.status.success(), "{log}");
    let stderr = text(&out.stderr);

    let mut shared_regions = Vec::new();
    for region in [REGION, COPY_REGION] {
        let ec2 = w.ec2(region);
        let images = ec2.own_images();
        assert_eq!(images.len(), 1, "{region}: {images:?}\n{log}");
        let image = &images[0];
        let id = image.image_id().expect("image id");
        assert_eq!(
            image.public(),
            Some(true),
            "{region}: {id} is public\n{log}"
        );

        let attribute = ec2
            .block(
                ec2.client
                    .describe_image_attribute()
                    .image_id(id)
                    .attribute(ImageAttributeName::LaunchPermission)
                    .send(),
            )
            .expect("DescribeImageAttribute");
        let permissions: BTreeSet<String> = attribute
            .launch_permissions()
            .iter()
            .map(|p| {
                p.user_id()
                    .map(|u| format!("user {u}"))
                    .or_else(|| p.group().map(|g| format!("group {}", g.as_str())))
                    .or_else(|| p.organization_arn().map(|a| format!("org {a}")))
                    .or_else(|| p.organizational_unit_arn().map(|a| format!("ou {a}")))
                    .unwrap_or_else(|| format!("{p:?}"))
            })
            .collect();
        let expected: BTreeSet<String> = [
            "user 210987654321".to_string(),
            "group all".to_string(),
            format!("org {ORG}"),
            format!("ou {OU}"),
        ]
        .into();
        assert_eq!(permissions, expected, "{region}: {id}\n{log}");
        assert!(
            stderr.contains(&format!(
                "{id} in {region} is public: any AWS account can launch it (ami_groups = [\"all\"])"
            )),
            "{region}: the build warns that {id} is public\n{log}"
        );

        let snapshots: Vec<String> = image
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
            .map(str::to_string)
            .collect();
        assert_eq!(snapshots.len(), 1, "{region}: {id}'s snapshots\n{log}");
        for snapshot in &snapshots {
            let attribute = ec2
                .block(
                    ec2.client
                        .describe_snapshot_attribute()
                        .snapshot_id(snapshot)
                        .attribute(SnapshotAttributeName::CreateVolumePermission)
                        .send(),
                )
                .expect("DescribeSnapshotAttribute");
            let permissions: BTreeSet<String> = attribute
                .create_volume_permissions()
                .iter()
                .map(|p| {
                    p.user_id()
                        .map(|u| format!("user {u}"))
                        .or_else(|| p.group().map(|g| format!("group {}", g.as_str())))
                        .unwrap_or_else(|| format!("{p:?}"))
                })
                .collect();
            let expected: BTreeSet<String> =
                ["user 210987654321", "user 109876543210", "group all"]
                    .map(String::from)
                    .into();
            assert_eq!(permissions, expected, "{region}: {snapshot}\n{log}");
            assert!(
                stderr.contains(&format!("snapshot {snapshot} in {region} is public")),
                "{region}: the build warns that {snapshot} is public\n{log}"
            );
        }
        shared_regions.push(region);

        assert!(ec2.imgbuild_key_pairs().is_empty(), "{region}\n{log}");
        assert!(ec2.imgbuild_security_groups().is_empty(), "{region}\n{log}");
        assert_eq!(
            ec2.live_instances(),
            Vec::<String>::new(),
            "{region}\n{log}"
        );
    }
    assert_eq!(shared_regions, [REGION, COPY_REGION]);
}

/// A refusal names the step, the image and its region, and the build
/// removes every image it made. The account id is known only at build time
/// (so `validate` lets it pass); EC2 refuses an AMI id as an account.
#[test]
fn a_refused_share_fails_the_build_and_removes_its_images() {
    let w = World::new();
    let template = w.template(
        &format!(
            r#"ami_regions = ["{COPY_REGION}"]
ami_users = ["${{source.ami}}"]"#
        ),
        "",
    );
    let baseline = w.snapshot_baseline();
    let (out, log) = w.run_build(&template);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("ModifyImageAttribute failed"))
        .unwrap_or_else(|| panic!("no refusal\n{log}"));
    let image = line
        .split_whitespace()
        .find(|w| w.starts_with("ami-"))
        .unwrap_or_else(|| panic!("the refusal names no image: {line}"));
    assert!(
        line.contains(&format!(
            "step \"share images\" failed: sharing image {image} in {REGION}: \
             ModifyImageAttribute failed: InvalidAMIAttributeItemValue"
        )),
        "{line}\n{log}"
    );
    assert!(
        stderr.contains(&format!("deregistered image {image} in {REGION}")),
        "{log}"
    );
    w.assert_clean(&baseline, &log);
}

#[test]
fn metadata_options_and_enhanced_networking_reach_ec2() {
    let w = World::new();
    let template = w.template(
        r#"metadata_http_tokens = "optional"
metadata_http_put_response_hop_limit = 2
metadata_tags = "enabled"
ena_support = true
sriov_support = true
boot_mode = "uefi""#,
        "",
    );
    let (out, log) = w.run_build(&template);
    assert!(out.status.success(), "{log}");

    // What the build instance was launched with, as moto keeps it.
    let instances = w.ec2(REGION).instances();
    assert_eq!(instances.len(), 1, "{log}");
    let options = instances[0].metadata_options().expect("metadata options");
    assert_eq!(
        options.http_tokens().map(|t| t.as_str()),
        Some("optional"),
        "{log}"
    );
    assert_eq!(options.http_put_response_hop_limit(), Some(2), "{log}");
    assert_eq!(
        options.instance_metadata_tags().map(|t| t.as_str()),
        Some("enabled"),
        "{log}"
    );

    // ENA and SR-IOV: set on the stopped instance, one call each, before CreateImage.
    let modify = w.moto.calls("ModifyInstanceAttribute");
    let instance_id = instances[0].instance_id().expect("instance id");
    let set: Vec<(Option<&str>, Option<&str>, Option<&str>)> = modify
        .iter()
        .map(|c| {
            (
                c.get("InstanceId").map(String::as_str),
                c.get("EnaSupport.Value").map(String::as_str),
                c.get("SriovNetSupport.Value").map(String::as_str),
            )
        })
        .collect();
    assert_eq!(
        set,
        [
            (Some(instance_id), Some("true"), None),
            (Some(instance_id), None, Some("simple")),
        ],
        "{log}"
    );
    let actions = w.moto.api_actions();
    let position = |action: &str| {
        actions
            .iter()
            .position(|a| a == action)
            .unwrap_or_else(|| panic!("no {action} in {actions:?}"))
    };
    assert!(
        position("StopInstances") < position("ModifyInstanceAttribute")
            && position("ModifyInstanceAttribute") < position("CreateImage"),
        "{actions:?}"
    );
}

/// CreateImage keeps the source AMI's boot mode and NitroTPM support, so a
/// source that differs from what the template asks fails the build before
/// anything is made. moto's AMIs boot `uefi` and have no NitroTPM.
#[test]
fn a_source_ami_that_boots_otherwise_fails_before_anything_is_made() {
    let w = World::new();
    for (settings, error) in [
        (
            r#"boot_mode = "legacy-bios""#,
            format!(
                "`boot_mode = \"legacy-bios\"` but source AMI {AL2023_6_18} has boot mode `uefi`; \
                 CreateImage keeps the source AMI's, so pick a source AMI registered with it"
            ),
        ),
        (
            "boot_mode = \"uefi\"\ntpm_support = \"v2.0\"",
            format!(
                "`tpm_support = \"v2.0\"` but source AMI {AL2023_6_18} has NitroTPM support none"
            ),
        ),
    ] {
        let (out, log) = w.run_build(&w.template(settings, ""));
        assert_eq!(out.status.code(), Some(1), "{log}");
        assert!(text(&out.stderr).contains(&error), "{log}");
    }
    let actions = w.moto.api_actions();
    for made in ["ImportKeyPair", "CreateSecurityGroup", "RunInstances"] {
        assert!(!actions.iter().any(|a| a == made), "{made} in {actions:?}");
    }
}

const HEAD: &str = r#"name = "web"
version = "1.2"

[source.aws]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0e1e769742d1cfb49"
"#;

#[test]
fn bad_sharing_and_instance_settings_fail_validation_without_calling_aws() {
    let moto = Moto::start();
    Test::new()
    .aws(&moto.endpoint())
    .file(
        "sharing.toml",
        &format!(
            r#"{HEAD}ami_users = ["210987654321", "2109"]
snapshot_users = ["21098765432x"]
ami_groups = ["everyone"]
snapshot_groups = ["all", "public"]
ami_org_arns = ["o-a1b2c3d4e5"]
ami_ou_arns = ["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5"]
"#
        ),
    )
    .file(
        "instance.toml",
        &format!(
            r#"{HEAD}boot_mode = "bios"
tpm_support = "v1.2"
uefi_data = "QU1aTlVFRkk="
metadata_http_put_response_hop_limit = 65
metadata_http_tokens = "sometimes"
metadata_tags = "on"
"#
        ),
    )
    .file(
        "tpm.toml",
        &format!(
            "{HEAD}boot_mode = \"legacy-bios\"\ntpm_support = \"v2.0\"\nmetadata_http_put_response_hop_limit = 0\n"
        ),
    )
    .file("ena.toml", &format!("{HEAD}ena_support = \"yes\"\n"))
    .file("sriov.toml", &format!("{HEAD}sriov_support = 1\n"))
    .args([
        "validate",
        "sharing.toml",
        "instance.toml",
        "tpm.toml",
        "ena.toml",
        "sriov.toml",
    ])
    .stdout("")
    .stderr(
        r#"error: sharing.toml:8:30: `2109` is not a 12-digit AWS account id
 8 | ami_users = ["210987654321", "2109"]
   |                              ^^^^^^

error: sharing.toml:9:19: `21098765432x` is not a 12-digit AWS account id
 9 | snapshot_users = ["21098765432x"]
   |                   ^^^^^^^^^^^^^^

error: sharing.toml:10:15: `everyone` is not a group; the only group is "all" (public)
 10 | ami_groups = ["everyone"]
    |               ^^^^^^^^^^

error: sharing.toml:11:27: `public` is not a group; the only group is "all" (public)
 11 | snapshot_groups = ["all", "public"]
    |                           ^^^^^^^^

error: sharing.toml:12:17: `o-a1b2c3d4e5` is not an organization ARN like arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5
 12 | ami_org_arns = ["o-a1b2c3d4e5"]
    |                 ^^^^^^^^^^^^^^

error: sharing.toml:13:16: `arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5` is not an organizational unit ARN like arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-a1b2-c3d4e5f6
 13 | ami_ou_arns = ["arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5"]
    |                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

error: instance.toml:8:13: `bios` is not a boot mode; use one of legacy-bios, uefi, uefi-preferred
 8 | boot_mode = "bios"
   |             ^^^^^^

error: instance.toml:9:15: `tpm_support` may only be "v2.0", not `v1.2`
 9 | tpm_support = "v1.2"
   |               ^^^^^^

error: instance.toml:10:13: amazon-ebs cannot set `uefi_data`: it makes the AMI with CreateImage, which keeps the build instance's UEFI variables
 10 | uefi_data = "QU1aTlVFRkk="
    |             ^^^^^^^^^^^^^^
  help: start from a source AMI registered with these UEFI variables; the build instance and the new AMI keep them

error: instance.toml:11:40: `metadata_http_put_response_hop_limit` is from 1 to 64, not 65
 11 | metadata_http_put_response_hop_limit = 65
    |                                        ^^
  help: 2 lets containers on the build instance reach the metadata service

error: instance.toml:12:24: `metadata_http_tokens` may be "required" (the default, IMDSv2 only) or "optional", not `sometimes`
 12 | metadata_http_tokens = "sometimes"
    |                        ^^^^^^^^^^^

error: instance.toml:13:17: `metadata_tags` may be "enabled" or "disabled" (the default), not `on`
 13 | metadata_tags = "on"
    |                 ^^^^

error: tpm.toml:9:15: `tpm_support` needs `boot_mode = "uefi"` (or "uefi-preferred"): NitroTPM works only with UEFI boot
 9 | tpm_support = "v2.0"
   |               ^^^^^^

error: tpm.toml:10:40: `metadata_http_put_response_hop_limit` is from 1 to 64, not 0
 10 | metadata_http_put_response_hop_limit = 0
    |                                        ^
  help: 2 lets containers on the build instance reach the metadata service

error: ena.toml:8:15: `ena_support` expects a boolean (true or false), got "yes"
 8 | ena_support = "yes"
   |               ^^^^^

error: sriov.toml:8:17: `sriov_support` expects a boolean (true or false), got 1
 8 | sriov_support = 1
   |                 ^

16 errors found
"#,
    )
    .status(2)
    .run();
    moto.assert_no_requests("validation must not call AWS");
}

#[test]
fn validate_warns_about_public_images_and_imdsv1() {
    Test::new()
        .file(
            "public.toml",
            &format!(
                "{HEAD}ami_groups = [\"all\"]\nsnapshot_groups = [\"all\"]\nmetadata_http_tokens = \"optional\"\n"
            ),
        )
        .file(
            "quiet.toml",
            &format!("{HEAD}metadata_http_tokens = \"optional\"\nimds_support = \"none\"\n"),
        )
        .args(["validate", "public.toml", "quiet.toml"])
        .stdout(
            "public.toml: ok (1 source, 0 provisioners)\nquiet.toml: ok (1 source, 0 provisioners)\n",
        )
        .stderr(
            r#"warning: public.toml: source `aws`: ami_groups = ["all"] makes the AMI and every copy public: any AWS account can launch it
warning: public.toml: source `aws`: snapshot_groups = ["all"] makes the AMI's snapshots public: any AWS account can read the disk
warning: public.toml: source `aws`: metadata_http_tokens = "optional" allows IMDSv1 on the build instance only: the AMI still requires IMDSv2 (imds_support = "v2.0"); set imds_support = "none" to leave that to the source AMI
"#,
        )
        .run();
}

#[test]
fn an_encrypted_image_is_never_public_nor_shared_under_the_default_key() {
    let moto = Moto::start();
    Test::new()
        .aws(&moto.endpoint())
        .file(
            "t.toml",
            &format!(
                "{HEAD}kms_key_id = \"alias/aws/ebs\"\nami_groups = [\"all\"]\nsnapshot_users = [\"210987654321\"]\n"
            ),
        )
        .args(["validate", "t.toml"])
        .stdout("")
        .stderr(
            r#"error: t.toml:9:14: EC2 cannot make an encrypted image or snapshot public; leave out `ami_groups = ["all"]` or the encryption
 9 | ami_groups = ["all"]
   |              ^^^^^^^

error: t.toml:10:18: an image encrypted with EBS's default key (`alias/aws/ebs`) cannot be shared with other accounts
 10 | snapshot_users = ["210987654321"]
    |                  ^^^^^^^^^^^^^^^^
  help: give `kms_key_id` (and `region_kms_key_ids`) a customer managed key whose policy lets those accounts use it

2 errors found
"#,
        )
        .status(2)
        .run();
    moto.assert_no_requests("validation must not call AWS");
}
