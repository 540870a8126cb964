//! Retiring images gently, end to end against moto's EC2 and a real sshd:
//! `deprecate_after` at build time. moto implements no
//! EnableImageDeprecation, so the build shows what happens whenever EC2
//! refuses the call: the images stay, and a warning names each one with the
//! command that deprecates it by hand.

mod common;

use common::ebs::{BUILD_LIMIT, COPY_REGION, REGION, World, describe};
use common::test::Test;
use common::{run, text};

#[test]
fn deprecate_after_asks_for_every_image_and_a_refusal_only_warns() {
    let mut w = World::new();
    // moto answers the call it lacks with a 500, which the SDK would retry
    // for a minute by default.
    w.env.push(("AWS_MAX_ATTEMPTS", "1".into()));
    let template = w.template(
        &format!("deprecate_after = \"90d\"\nami_regions = [\"{COPY_REGION}\"]"),
        "",
    );
    let before = std::time::SystemTime::now();
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let after = std::time::SystemTime::now();
    let log = describe(&out);
    assert!(out.status.success(), "{log}");

    let manifest = w.manifest();
    let amis = &manifest["builds"][0]["amis"];
    let stderr = text(&out.stderr);
    let calls = w.moto.calls("EnableImageDeprecation");
    assert_eq!(calls.len(), 2, "one call per image\n{log}");
    for region in [REGION, COPY_REGION] {
        let ami = amis[region].as_str().expect("ami of the region");
        assert_eq!(w.ec2(region).own_images().len(), 1, "{region}\n{log}");
        let call = calls
            .iter()
            .find(|c| c.get("ImageId").map(String::as_str) == Some(ami))
            .unwrap_or_else(|| panic!("no EnableImageDeprecation for {ami}\n{log}"));
        let at = call.get("DeprecateAt").expect("DeprecateAt");
        let at = humantime::parse_rfc3339_weak(at.trim_end_matches('Z'))
            .unwrap_or_else(|e| panic!("DeprecateAt `{at}`: {e}"));
        let ninety_days = std::time::Duration::from_secs(90 * 86_400);
        let second = std::time::Duration::from_secs(1);
        assert!(
            at + second >= before + ninety_days && at <= after + ninety_days,
            "DeprecateAt {call:?} is not 90 days after the build\n{log}"
        );
        let warning = stderr
            .lines()
            .find(|l| l.contains(&format!("could not deprecate {ami} in {region} from ")))
            .unwrap_or_else(|| panic!("no warning for {ami}\n{log}"));
        assert!(
            warning.contains("the image itself is fine; to deprecate it by hand: ")
                && warning.contains(&format!(
                    "aws ec2 enable-image-deprecation --image-id {ami} --deprecate-at "
                ))
                && warning.ends_with(&format!("Z --region {region}")),
            "{warning}"
        );
    }
}

#[test]
fn deprecate_after_is_checked_where_it_is_written() {
    let source = |name: &str, after: &str| {
        format!(
            "[source.{name}]\ntype = \"amazon-ebs\"\nregion = \"eu-west-3\"\nsource_ami = \"ami-0123456789abcdef0\"\ndeprecate_after = \"{after}\"\n"
        )
    };
    let template = format!(
        "name = \"web\"\nversion = \"1.2\"\n\n{}\n{}\n{}",
        source("never", "0s"),
        source("far", "4000d"),
        source("vague", "soon"),
    );
    Test::new()
        .file("t.toml", &template)
        .args(["validate", "t.toml"])
        .stdout("")
        .stderr(
            r#"error: t.toml:8:19: `deprecate_after` must be longer than 0s
 8 | deprecate_after = "0s"
   |                   ^^^^
  help: write e.g. "90d"; leave it out to never deprecate

error: t.toml:14:19: `deprecate_after` may be at most "3650d": EC2 takes a deprecation time up to ten years ahead
 14 | deprecate_after = "4000d"
    |                   ^^^^^^^

error: t.toml:20:19: invalid duration `soon` (expected number at 0); write e.g. "30s", "5m" or "1h"
 20 | deprecate_after = "soon"
    |                   ^^^^^^

3 errors found
"#,
        )
        .status(2)
        .run();
}
