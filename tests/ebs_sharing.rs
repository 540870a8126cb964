//! amazon-ebs sharing, end to end: the real binary against moto's EC2 and
//! a real sshd. What is shared is read back from moto
//! (DescribeImageAttribute, DescribeSnapshotAttribute).

mod common;

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{ImageAttributeName, SnapshotAttributeName};
use common::ebs::{BUILD_LIMIT, COPY_REGION, REGION, World, describe};
use common::moto::{Moto, aws_vars};
use common::test::Test;
use common::{run, text};

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
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let log = describe(&out);
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

const HEAD: &str = r#"name = "web"
version = "1.2"

[source.aws]
type = "amazon-ebs"
region = "us-east-1"
source_ami = "ami-0e1e769742d1cfb49"
"#;

#[test]
fn bad_sharing_settings_fail_validation_without_calling_aws() {
    let moto = Moto::start();
    let test = Test::new();
    let home = test.path("home");
    std::fs::create_dir_all(&home).unwrap();
    test.file(
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
    .envs(aws_vars(&moto.endpoint(), &home))
    .args(["validate", "sharing.toml"])
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

6 errors found
"#,
    )
    .status(2)
    .run();
    assert_eq!(
        moto.api_requests(),
        Vec::<String>::new(),
        "validation must not call AWS"
    );
}

#[test]
fn validate_warns_about_public_images_and_snapshots() {
    Test::new()
        .file(
            "public.toml",
            &format!(
                "{HEAD}ami_groups = [\"all\"]\nsnapshot_groups = [\"all\"]\n"
            ),
        )
        .args(["validate", "public.toml"])
        .stdout("public.toml: ok (1 source, 0 provisioners)\n")
        .stderr(
            r#"warning: public.toml: source `aws`: ami_groups = ["all"] makes the AMI and every copy public: any AWS account can launch it
warning: public.toml: source `aws`: snapshot_groups = ["all"] makes the AMI's snapshots public: any AWS account can read the disk
"#,
        )
        .run();
}
