//! amazon-ebs spot instances and the temporary IAM instance profile, end to
//! end: the real binary against moto (EC2 and IAM on one endpoint) and a real
//! sshd. moto never runs short of capacity, so the fault proxy answers the
//! launches a test wants refused, with EC2's codes and HTTP statuses.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::ebs::{BUILD_LIMIT, REGION, World, describe};
use common::links::FaultProxy;
use common::moto::{ACCOUNT, Call, Moto};
use common::test::Test;
use common::{text, wait_for_file, wait_output};

/// The values of `prefix.N.Key` / `prefix.N.Value` pairs in a call.
fn tags_of(call: &Call, prefix: &str) -> BTreeMap<String, String> {
    (1..=50)
        .filter_map(|n| {
            let key = call.get(&format!("{prefix}.{n}.Key"))?;
            let value = call.get(&format!("{prefix}.{n}.Value"))?;
            Some((key.clone(), value.clone()))
        })
        .collect()
}

/// The tags RunInstances asked for on `resource` (e.g. "spot-instances-request").
fn tags_on(call: &Call, resource: &str) -> BTreeMap<String, String> {
    (1..=10)
        .find(|n| {
            call.get(&format!("TagSpecification.{n}.ResourceType"))
                .map(String::as_str)
                == Some(resource)
        })
        .map(|n| tags_of(call, &format!("TagSpecification.{n}.Tag")))
        .unwrap_or_default()
}

/// Spot requests moto holds that are still open or active.
fn open_spot_requests(w: &World) -> Vec<String> {
    let ec2 = w.ec2(REGION);
    ec2.block(ec2.client.describe_spot_instance_requests().send())
        .expect("DescribeSpotInstanceRequests")
        .spot_instance_requests()
        .iter()
        .filter(|r| matches!(r.state().map(|s| s.as_str()), Some("open") | Some("active")))
        .filter_map(|r| r.spot_instance_request_id().map(str::to_string))
        .collect()
}

/// What a build should have removed and did not: live instances, imgbuild
/// key pairs and security groups, open spot requests.
fn temporary_leftovers(w: &World) -> Vec<String> {
    let ec2 = w.ec2(REGION);
    let mut left = ec2.live_instances();
    left.extend(ec2.imgbuild_key_pairs());
    left.extend(ec2.imgbuild_security_groups());
    left.extend(open_spot_requests(w));
    left
}

const PROVISION: &str = "[[provisioner]]\ntype = \"shell\"\ninline = [\"true\"]\n";

/// Sends the world's EC2 calls through a proxy that answers them with
/// `refusals` (moto itself never runs short of capacity).
fn refusing(w: &mut World, refusals: &[&str]) -> FaultProxy {
    let proxy = FaultProxy::refusing(&w.moto.endpoint(), refusals, w.scratch.path("proxy.log"));
    w.endpoint = proxy.endpoint();
    proxy
}

/// Runs a build of `template`; its log shows the proxy's answers too.
fn run_through(w: &World, proxy: &FaultProxy, template: &Path) -> (Output, String) {
    let (out, log) = w.run_build(template);
    (out, format!("{log}\ncalls: {:?}", proxy.calls()))
}

/// Starts a build whose provisioner waits until the test creates the path
/// returned, and returns once the provisioner runs: a window in which to
/// look at or change the build instance.
fn start_held_build(w: &World, source: &str) -> (Child, PathBuf) {
    let (running, release) = (w.scratch.path("running"), w.scratch.path("release"));
    let template = w.template(
        source,
        &format!(
            "[[provisioner]]\ntype = \"shell\"\ninline = [\"touch {}\", \"for i in $(seq 300); do [ -e {} ] && break; sleep 0.2; done\"]\n",
            running.display(),
            release.display()
        ),
    );
    let child = w.spawn_build(&template);
    assert!(
        wait_for_file(&running, Duration::from_secs(60)),
        "the provisioner never started"
    );
    (child, release)
}

#[test]
fn spot_auto_launches_a_one_time_spot_instance_and_leaves_nothing() {
    let w = World::new();
    let template = w.template(
        "spot_price = \"auto\"\nspot_instance_types = [\"t3.small\"]",
        PROVISION,
    );
    let (out, log) = w.run_build(&template);
    assert!(out.status.success(), "{log}");
    assert!(
        text(&out.stderr).contains("launched spot t3.small instance i-"),
        "{log}"
    );
    // EC2 never stops a one-time spot instance: CreateImage reboots it.
    assert!(
        text(&out.stderr).contains(
            "is a one-time spot instance, which EC2 cannot stop; CreateImage reboots it instead"
        ),
        "{log}"
    );
    assert_eq!(w.moto.calls("StopInstances").len(), 0, "{log}");
    let imaged = w.moto.calls("CreateImage");
    assert_eq!(imaged.len(), 1, "{log}");
    assert_ne!(imaged[0].get("NoReboot").map(String::as_str), Some("true"));

    let launches = w.moto.calls("RunInstances");
    assert_eq!(launches.len(), 1, "{log}");
    let call = &launches[0];
    let param = |k: &str| call.get(k).map(String::as_str);
    assert_eq!(param("InstanceType"), Some("t3.small"));
    assert_eq!(param("InstanceMarketOptions.MarketType"), Some("spot"));
    assert_eq!(
        param("InstanceMarketOptions.SpotOptions.SpotInstanceType"),
        Some("one-time")
    );
    assert_eq!(
        param("InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"),
        Some("terminate")
    );
    // "auto": no MaxPrice, so EC2 caps it at the on-demand price.
    assert_eq!(param("InstanceMarketOptions.SpotOptions.MaxPrice"), None);
    let request_tags = tags_on(call, "spot-instances-request");
    assert_eq!(request_tags, tags_on(call, "instance"), "{call:?}");
    assert_eq!(
        request_tags.get("imgbuild:temporary").map(String::as_str),
        Some("true")
    );
    assert!(request_tags.contains_key("imgbuild:build-id"), "{call:?}");

    // moto marks the instance spot but records no request for RunInstances:
    // the cleanup looked for the build's requests by tag and found none open.
    let ec2 = w.ec2(REGION);
    let instance = &ec2.instances()[0];
    assert_eq!(
        instance.instance_lifecycle().map(|l| l.as_str()),
        Some("spot")
    );
    let lookups = w.moto.calls("DescribeSpotInstanceRequests");
    assert_eq!(lookups.len(), 1, "{log}");
    assert_eq!(
        lookups[0].get("Filter.1.Value.1"),
        request_tags.get("imgbuild:build-id")
    );
    assert_eq!(temporary_leftovers(&w), Vec::<String>::new(), "{log}");
}

#[test]
fn spot_falls_back_across_types_then_to_on_demand() {
    let mut w = World::new();
    // EC2 answers InsufficientInstanceCapacity with HTTP 500, which the SDK
    // would retry for minutes; the build moves on to the next type at once.
    let proxy = refusing(
        &mut w,
        &[
            "RunInstances:InsufficientInstanceCapacity:500",
            "RunInstances:SpotMaxPriceTooLow:400",
        ],
    );
    let template = w.template(
        "spot_price = \"0.05\"\nspot_instance_types = [\"t3.small\", \"t3.medium\"]\nfallback_to_on_demand = true",
        PROVISION,
    );
    let (out, log) = run_through(&w, &proxy, &template);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        proxy.answers("RunInstances"),
        ["InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "ok"],
        "{log}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("spot t3.small: RunInstances failed: InsufficientInstanceCapacity: InsufficientInstanceCapacity; trying spot t3.medium"), "{log}");
    assert!(stderr.contains("spot t3.medium: RunInstances failed: SpotMaxPriceTooLow: SpotMaxPriceTooLow; trying on-demand t3.small"), "{log}");
    assert!(
        stderr.contains("launched on-demand t3.small instance i-"),
        "{log}"
    );

    // The one launch that reached EC2 is on-demand, of the first type, with
    // a client token of its own.
    let reached = w.moto.calls("RunInstances");
    assert_eq!(reached.len(), 1, "{log}");
    assert_eq!(
        reached[0].get("InstanceType").map(String::as_str),
        Some("t3.small")
    );
    assert_eq!(reached[0].get("InstanceMarketOptions.MarketType"), None);
    assert!(
        reached[0]["ClientToken"].ends_with("-2"),
        "{:?}",
        reached[0]
    );
    assert_eq!(
        tags_on(&reached[0], "spot-instances-request"),
        BTreeMap::new()
    );
    assert_eq!(temporary_leftovers(&w), Vec::<String>::new(), "{log}");
}

#[test]
fn spot_without_fallback_fails_naming_every_type_tried() {
    let mut w = World::new();
    let proxy = refusing(
        &mut w,
        &[
            "RunInstances:InsufficientInstanceCapacity:500",
            "RunInstances:MaxSpotInstanceCountExceeded:400",
        ],
    );
    let template = w.template(
        "spot_price = \"auto\"\nspot_instance_types = [\"t3.small\", \"t3.medium\"]",
        PROVISION,
    );
    let baseline = w.snapshot_baseline();
    let (out, log) = run_through(&w, &proxy, &template);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("step \"launch instance\" failed: launching from ami-"),
        "{log}"
    );
    assert!(
        stderr.contains(&format!(
            " in {REGION}: no capacity for spot t3.small: InsufficientInstanceCapacity, spot t3.medium: MaxSpotInstanceCountExceeded\n"
        )),
        "{log}"
    );
    assert_eq!(w.moto.calls("RunInstances").len(), 0, "{log}");
    assert_eq!(open_spot_requests(&w), Vec::<String>::new());
    w.assert_clean(&baseline, &log);
}

const SSM_POLICY: &str = r#"temporary_iam_instance_profile_policy_document = { Version = "2012-10-17", Statement = [{ Effect = "Allow", Action = ["ssm:*"], Resource = ["*"] }] }"#;

/// The IAM actions of a build (not the test's own listings), and the
/// TerminateInstances among them, in order.
fn iam_and_terminate(w: &World) -> Vec<String> {
    w.moto
        .api_actions()
        .into_iter()
        .filter(|a| !a.starts_with("List"))
        .filter(|a| {
            a == "TerminateInstances" || a.contains("Role") || a.contains("InstanceProfile")
        })
        .collect()
}

#[test]
fn a_temporary_instance_profile_is_made_attached_and_removed() {
    let w = World::new();
    let before = w.moto.iam_names();
    // The provisioner waits for the test to look at the running instance.
    let (child, looked) = start_held_build(&w, SSM_POLICY);
    // moto drops the association when the instance terminates: look now.
    let attached: Vec<String> = w
        .ec2(REGION)
        .instances()
        .iter()
        .filter_map(|i| {
            i.iam_instance_profile()
                .and_then(|p| p.arn())
                .map(str::to_string)
        })
        .collect();
    std::fs::write(&looked, "").unwrap();
    let out = wait_output(child, BUILD_LIMIT);
    let log = describe(&out);
    assert!(out.status.success(), "{log}");

    let created = w.moto.calls("CreateRole");
    assert_eq!(created.len(), 1, "{log}");
    let role = &created[0];
    let name = role["RoleName"].clone();
    assert!(name.starts_with("imgbuild-"), "{role:?}");
    assert_eq!(role["Path"], "/imgbuild/");
    let trust: serde_json::Value = serde_json::from_str(&role["AssumeRolePolicyDocument"]).unwrap();
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "ec2.amazonaws.com"
    );
    let role_tags = tags_of(role, "Tags.member");
    assert_eq!(role_tags["imgbuild:build-id"], name["imgbuild-".len()..]);
    assert_eq!(role_tags["imgbuild:temporary"], "true");
    assert!(role_tags.contains_key("imgbuild:expires-at"), "{role:?}");
    // IAM takes fewer characters than EC2: "(aws)" becomes "_aws_".
    assert_eq!(role_tags["Name"], "imgbuild web 1.2 _aws_");

    let policy = &w.moto.calls("PutRolePolicy")[0];
    assert_eq!(policy["RoleName"], name);
    assert_eq!(
        policy["PolicyDocument"],
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:*"],"Resource":["*"]}]}"#
    );
    let profile = &w.moto.calls("CreateInstanceProfile")[0];
    assert_eq!(profile["InstanceProfileName"], name);
    assert_eq!(profile["Path"], "/imgbuild/");
    assert_eq!(tags_of(profile, "Tags.member"), role_tags);
    let added = &w.moto.calls("AddRoleToInstanceProfile")[0];
    assert_eq!(
        (&added["InstanceProfileName"], &added["RoleName"]),
        (&name, &name)
    );

    let launch = &w.moto.calls("RunInstances")[0];
    assert_eq!(
        launch.get("IamInstanceProfile.Name"),
        Some(&name),
        "{launch:?}"
    );
    assert_eq!(
        attached,
        [format!(
            "arn:aws:iam::{ACCOUNT}:instance-profile/imgbuild/{name}"
        )]
    );

    // Removed after the instance is gone, in the order IAM needs.
    assert_eq!(
        iam_and_terminate(&w),
        [
            "CreateRole",
            "PutRolePolicy",
            "CreateInstanceProfile",
            "AddRoleToInstanceProfile",
            "GetInstanceProfile",
            "TerminateInstances",
            "RemoveRoleFromInstanceProfile",
            "DeleteInstanceProfile",
            "DeleteRolePolicy",
            "DeleteRole",
        ],
        "{log}"
    );
    assert!(
        text(&out.stderr).contains(&format!("deleted IAM role and instance profile {name}")),
        "{log}"
    );
    assert_eq!(w.moto.iam_names(), before, "{log}");
    assert_eq!(temporary_leftovers(&w), Vec::<String>::new(), "{log}");
}

#[test]
fn a_temporary_instance_profile_is_removed_when_provisioning_fails() {
    let w = World::new();
    let template = w.template(
        SSM_POLICY,
        "[[provisioner]]\ntype = \"shell\"\ninline = [\"exit 3\"]\n",
    );
    let before = w.moto.iam_names();
    let baseline = w.snapshot_baseline();
    let (out, log) = w.run_build(&template);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        text(&out.stderr).contains("step \"provision\" failed"),
        "{log}"
    );
    assert_eq!(w.moto.calls("CreateRole").len(), 1, "{log}");
    assert_eq!(w.moto.calls("DeleteRole").len(), 1, "{log}");
    assert_eq!(w.moto.iam_names(), before, "{log}");
    w.assert_clean(&baseline, &log);
}

#[test]
fn every_spot_and_profile_setting_is_checked_at_validate_without_calling_aws() {
    let sources = [
        ("price", r#"spot_price = "cheap""#),
        ("zero", r#"spot_price = "0""#),
        ("none", "spot_price = \"auto\"\nspot_instance_types = []"),
        (
            "both",
            "instance_type = \"t3.micro\"\nspot_price = \"auto\"\nspot_instance_types = [\"t3.small\", \"\"]",
        ),
        (
            "nospot",
            "spot_instance_types = [\"t3.small\"]\nfallback_to_on_demand = true",
        ),
        (
            "profile",
            &format!("iam_instance_profile = \"builder\"\n{SSM_POLICY}"),
        ),
        (
            "policy",
            r#"temporary_iam_instance_profile_policy_document = { Version = "2020-01-01", Statement = [{ Effect = "Permit", Action = [], Resource = [""] }] }"#,
        ),
        (
            "empty",
            r#"temporary_iam_instance_profile_policy_document = { Version = "2012-10-17", Statement = [] }"#,
        ),
        (
            "unknown",
            r#"temporary_iam_instance_profile_policy_document = { Version = "2012-10-17", Statement = [{ Effect = "Allow", Action = ["s3:GetObject"], Resource = ["*"], Principal = "*" }] }"#,
        ),
        ("stopped", "spot_price = \"auto\"\nena_support = true"),
    ];
    let mut template = String::from("name = \"web\"\nversion = \"1.2\"\n");
    for (name, body) in sources {
        template.push_str(&format!(
            "\n[source.{name}]\ntype = \"amazon-ebs\"\nregion = \"eu-west-3\"\nsource_ami = \"ami-0123456789abcdef0\"\n{body}\n"
        ));
    }
    let moto = Moto::start();
    Test::new()
        .file("t.toml", &template)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .args(["validate", "t.toml"])
        .stdout("")
        .stderr(
            r#"error: t.toml:8:14: `cheap` is not a spot price: write "auto" or a positive decimal
 8 | spot_price = "cheap"
   |              ^^^^^^^
  help: "auto" pays at most the on-demand price; "0.05" at most 0.05 USD an hour

error: t.toml:14:14: `0` is not a spot price: write "auto" or a positive decimal
 14 | spot_price = "0"
    |              ^^^
  help: "auto" pays at most the on-demand price; "0.05" at most 0.05 USD an hour

error: t.toml:21:23: `spot_instance_types` needs at least one instance type
 21 | spot_instance_types = []
    |                       ^^

error: t.toml:27:17: set either `instance_type` or `spot_instance_types`, not both
 27 | instance_type = "t3.micro"
    |                 ^^^^^^^^^^
  help: list every acceptable type in `spot_instance_types`

error: t.toml:29:36: an instance type may not be empty
 29 | spot_instance_types = ["t3.small", ""]
    |                                    ^^

error: t.toml:35:23: `spot_instance_types` applies to spot instances; set `spot_price` too
 35 | spot_instance_types = ["t3.small"]
    |                       ^^^^^^^^^^^^

error: t.toml:36:25: `fallback_to_on_demand` applies to spot instances; set `spot_price` too
 36 | fallback_to_on_demand = true
    |                         ^^^^

error: t.toml:43:50: set either `iam_instance_profile` or `temporary_iam_instance_profile_policy_document`, not both
 43 | temporary_iam_instance_profile_policy_document = { Version = "2012-10-17", Statement = [{ Effect = "Allow", Action = ["ssm:*"], Resource = ["*"] }] }
    |                                                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:49:62: `2020-01-01` is not an IAM policy version; use "2012-10-17"
 49 | temporary_iam_instance_profile_policy_document = { Version = "2020-01-01", Statement = [{ Effect = "Permit", Action = [], Resource = [""] }] }
    |                                                              ^^^^^^^^^^^^

error: t.toml:49:100: `Effect` is "Allow" or "Deny", not `Permit`
 49 | temporary_iam_instance_profile_policy_document = { Version = "2020-01-01", Statement = [{ Effect = "Permit", Action = [], Resource = [""] }] }
    |                                                                                                    ^^^^^^^^

error: t.toml:49:119: `Action` needs one or more non-empty values
 49 | temporary_iam_instance_profile_policy_document = { Version = "2020-01-01", Statement = [{ Effect = "Permit", Action = [], Resource = [""] }] }
    |                                                                                                                       ^^

error: t.toml:49:134: `Resource` needs one or more non-empty values
 49 | temporary_iam_instance_profile_policy_document = { Version = "2020-01-01", Statement = [{ Effect = "Permit", Action = [], Resource = [""] }] }
    |                                                                                                                                      ^^^^

error: t.toml:55:88: the policy needs at least one statement
 55 | temporary_iam_instance_profile_policy_document = { Version = "2012-10-17", Statement = [] }
    |                                                                                        ^^

error: t.toml:61:89: unknown field `Principal`, expected one of `Sid`, `Effect`, `Action`, `Resource`
 61 | temporary_iam_instance_profile_policy_document = { Version = "2012-10-17", Statement = [{ Effect = "Allow", Action = ["s3:GetObject"], Resource = ["*"], Principal = "*" }] }
    |                                                                                         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

error: t.toml:68:15: `ena_support` is set on the stopped instance, and a spot instance cannot be stopped; leave out `ena_support` or `spot_price`
 68 | ena_support = true
    |               ^^^^

15 errors found
"#,
        )
        .status(2)
        .run();
    assert_eq!(moto.api_actions(), Vec::<String>::new());
}

#[test]
fn the_launch_waits_until_ec2_knows_the_new_instance_profile() {
    let mut w = World::new();
    // What EC2 answers for a profile IAM made a moment ago.
    let proxy = refusing(
        &mut w,
        &["RunInstances:InvalidParameterValue:400:Value (imgbuild) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name";
            2],
    );
    let template = w.template(SSM_POLICY, PROVISION);
    let before = w.moto.iam_names();
    let (out, log) = run_through(&w, &proxy, &template);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        proxy.answers("RunInstances"),
        ["InvalidParameterValue", "InvalidParameterValue", "ok"],
        "{log}"
    );
    assert_eq!(w.moto.iam_names(), before, "{log}");
    assert_eq!(temporary_leftovers(&w), Vec::<String>::new(), "{log}");
}

#[test]
fn another_invalid_parameter_fails_the_launch_at_once() {
    let mut w = World::new();
    let proxy = refusing(
        &mut w,
        &["RunInstances:InvalidParameterValue:400:Invalid value for parameter instanceType"],
    );
    let template = w.template(SSM_POLICY, PROVISION);
    let before = w.moto.iam_names();
    let baseline = w.snapshot_baseline();
    let (out, log) = run_through(&w, &proxy, &template);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        text(&out.stderr).contains(&format!(
            "step \"launch instance\" failed: launching on-demand t3.micro from {} in {REGION}: RunInstances failed: InvalidParameterValue: Invalid value for parameter instanceType\n",
            common::ebs::AL2023_6_18
        )),
        "{log}"
    );
    assert_eq!(proxy.answers("RunInstances").len(), 1, "{log}");
    assert_eq!(w.moto.iam_names(), before, "{log}");
    w.assert_clean(&baseline, &log);
}

/// A spot request tagged as build `build_id`'s, made by hand: moto records
/// none for a spot RunInstances. (moto starts an untagged instance for it.)
fn spot_request(w: &World, build_id: &str, expires_at: &str) -> String {
    use aws_sdk_ec2::types::{RequestSpotLaunchSpecification, ResourceType, Tag, TagSpecification};
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let ec2 = w.ec2(REGION);
    let out = ec2
        .block(
            ec2.client
                .request_spot_instances()
                .spot_price("0.05")
                .launch_specification(
                    RequestSpotLaunchSpecification::builder()
                        .image_id(common::ebs::AL2023_6_18)
                        .instance_type("t3.micro".into())
                        .build(),
                )
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::SpotInstancesRequest)
                        .tags(tag("imgbuild:temporary", "true"))
                        .tags(tag("imgbuild:build-id", build_id))
                        .tags(tag("imgbuild:started-at", "2026-01-01T00:00:00Z"))
                        .tags(tag("imgbuild:expires-at", expires_at))
                        .build(),
                )
                .send(),
        )
        .expect("RequestSpotInstances");
    out.spot_instance_requests()[0]
        .spot_instance_request_id()
        .unwrap()
        .to_string()
}

#[test]
fn gc_removes_the_instance_profile_and_spot_request_of_a_killed_build() {
    let mut w = World::new();
    let before = w.moto.iam_names();
    let request = spot_request(&w, "0badc0ffee00", "2026-01-01T01:00:00Z");
    assert_eq!(open_spot_requests(&w), vec![request.clone()]);

    // A build whose timeouts add up to seconds, killed while it provisions.
    let marker = w.scratch.path("provisioning");
    let template = w.template(
        &format!("{SSM_POLICY}\nssh_timeout = \"5s\""),
        &format!(
            "[source.aws.timeouts]\ninstance_running = \"1s\"\ninstance_stopped = \"1s\"\nimage_available = \"1s\"\nsnapshots_completed = \"1s\"\ninstance_terminated = \"1s\"\ninstance_profile_ready = \"1s\"\n\n[[provisioner]]\ntype = \"shell\"\ninline = [\"touch {}\", \"sleep 60\"]\n",
            marker.display()
        ),
    );
    let killed = w
        .command(&["build", "--cleanup-timeout", "1s"])
        .arg(&template)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(
        wait_for_file(&marker, Duration::from_secs(60)),
        "the build never provisioned"
    );
    common::send_signal(&killed, libc::SIGKILL);
    let _ = wait_output(killed, Duration::from_secs(10));
    let role = w.moto.calls("CreateRole")[0]["RoleName"].clone();
    let build_id = role["imgbuild-".len()..].to_string();
    let (roles, profiles) = w.moto.iam_names();
    assert!(
        roles.contains(&role) && profiles.contains(&role),
        "what SIGKILL left"
    );
    let expires =
        tags_of(&w.moto.calls("CreateRole")[0], "Tags.member")["imgbuild:expires-at"].clone();
    let expires = humantime::parse_rfc3339(&expires).expect("expires-at");
    assert!(
        common::wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            std::time::SystemTime::now() > expires + Duration::from_secs(1)
        }),
        "the killed build's time never ran out"
    );

    let scratch = std::mem::replace(&mut w.scratch, common::Scratch::new());
    Test::in_scratch(scratch)
        .aws(&w.endpoint)
        .args(["gc", "--older-than", "0s", "--region", REGION])
        .limit(BUILD_LIMIT)
        .stdout_contains(&format!(
            "global: removed IAM role {role} (build {build_id})\n"
        ))
        .stdout_contains(&format!(
            "{REGION}: removed spot request {request} (build 0badc0ffee00)\n"
        ))
        // Its instance, security group and key pair; the spot request; the role.
        .stderr("gc: removed 5, kept 0\n")
        .run();
    assert_eq!(w.moto.iam_names(), before);
    assert_eq!(open_spot_requests(&w), Vec::<String>::new());
}

#[test]
fn the_cleanup_cancels_the_builds_spot_request_found_by_its_tag() {
    let w = World::new();
    // The provisioner waits while the test makes the build's spot request.
    let (child, made) = start_held_build(&w, "spot_price = \"auto\"");
    let instance = w.ec2(REGION).instances()[0].clone();
    let build_id = common::moto::tag(instance.tags(), "imgbuild:build-id")
        .expect("build id")
        .to_string();
    let request = spot_request(&w, &build_id, "2099-01-01T00:00:00Z");
    std::fs::write(&made, "").unwrap();
    let out = wait_output(child, BUILD_LIMIT);
    let log = describe(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        text(&out.stderr).contains(&format!("cancelled spot request {request}\n")),
        "{log}"
    );
    let cancels = w.moto.calls("CancelSpotInstanceRequests");
    assert_eq!(cancels.len(), 1, "{log}");
    assert_eq!(cancels[0].get("SpotInstanceRequestId.1"), Some(&request));
    assert_eq!(open_spot_requests(&w), Vec::<String>::new());
    let ours = w
        .ec2(REGION)
        .instances()
        .into_iter()
        .find(|i| i.instance_id() == instance.instance_id())
        .unwrap();
    assert_eq!(
        ours.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("terminated")
    );
}
