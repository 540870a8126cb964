//! `imgbuild diff`: package changes from a manifest, or between two
//! inventories (local images, `.packages.json` files, manifests).

mod common;

use common::test::Test;

const OLD: &str = r#"{"manager":"dpkg","os":"debian","packages":[
  {"name":"bash","version":"5.2.15-2+b7","arch":"amd64"},
  {"name":"openssl","version":"3.0.11-1~deb12u2","arch":"amd64"},
  {"name":"telnet","version":"0.17+2.4-2","arch":"amd64"}]}"#;

const NEW: &str = r#"{"manager":"dpkg","os":"debian","packages":[
  {"name":"bash","version":"5.2.15-2+b7","arch":"amd64"},
  {"name":"curl","version":"7.88.1-10+deb12u8","arch":"amd64"},
  {"name":"openssl","version":"3.0.15-1~deb12u1","arch":"amd64"}]}"#;

#[test]
fn compares_two_local_images() {
    Test::new()
        .file("out/web-1.2-1/web-1.2-1.packages.json", OLD)
        .file("out/web-1.2-2/web-1.2-2.packages.json", NEW)
        .args([
            "diff",
            "out/web-1.2-1/web-1.2-1.qcow2",
            "out/web-1.2-2/web-1.2-2.packages.json",
        ])
        .stdout(
            "packages from out/web-1.2-1/web-1.2-1.qcow2 to out/web-1.2-2/web-1.2-2.packages.json: 1 changed, 1 added, 1 removed\n  openssl 3.0.11-1~deb12u2 → 3.0.15-1~deb12u1\n  + curl 7.88.1-10+deb12u8\n  - telnet 0.17+2.4-2\n",
        )
        .stderr("")
        .run();
}

#[test]
fn shows_what_each_build_of_a_manifest_recorded() {
    let manifest = r#"{"template":"t.toml","builds":[
      {"name":"aws","package_changes":{"compared_with":"build 3 (ami-0123456789abcdef0)","added":[],"removed":[],
        "changed":[{"name":"openssl","arch":"amd64","from":"3.0.11-1","to":"3.0.13-1"}]}},
      {"name":"local","package_changes":{"compared_with":"build 2 (out/web-1.2-2.qcow2)","added":[],"removed":[],"changed":[]}},
      {"name":"old","unchanged":true},
      {"name":"first"}]}"#;
    Test::new()
        .file("imgbuild-manifest.json", manifest)
        .args(["diff"])
        .stdout(
            "aws: packages since build 3 (ami-0123456789abcdef0): 1 changed, 0 added, 0 removed\n  openssl 3.0.11-1 → 3.0.13-1\nlocal: packages since build 2 (out/web-1.2-2.qcow2): no package changes\nold: unchanged, no new image\nfirst: no earlier inventory to compare with\n",
        )
        .run();
}

#[test]
fn a_file_without_an_inventory_is_a_usage_error() {
    Test::new()
        .file("a.json", "{}")
        .file("b.packages.json", NEW)
        .args(["diff", "a.json", "b.packages.json"])
        .stdout("")
        .stderr("error: a.json holds no package inventory\n")
        .status(2)
        .run();
}
