//! `imgbuild fingerprint` and the template keys of scheduled rebuilds, with
//! the real binary; the package mirror is a file server on 127.0.0.1.

mod common;

use common::Scratch;
use common::http::FileServer;
use common::test::Test;

const IN_RELEASE: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 06 Sep 2026 09:12:50 UTC\nValid-Until: Sat, 13 Sep 2026 09:12:50 UTC\nSHA256:\n 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 main/Contents-all\n";

fn template(mirror: &str) -> String {
    format!(
        r#"name = "web"
version = "1.2"

[variables.greeting]
default = "hello"

[source.local]
type = "qemu"
bootstrap = {{ distribution = "debian", suite = "bookworm", mirror = "{mirror}" }}
output_directory = "out/${{image.build}}"

[[provisioner]]
type = "shell"
inline = ["echo ${{var.greeting}} ${{build.id}} ${{build.timestamp}} ${{image.build}}"]

[[provisioner]]
type = "file"
source = "site/"
destination = "/var/www"
"#
    )
}

/// A mirror with the suite and, unless `security` is false, its security suite.
fn mirror(scratch: &Scratch, date: &str, security: bool) {
    scratch.write(
        "mirror/debian/dists/bookworm/InRelease",
        &IN_RELEASE.replace("06 Sep", date),
    );
    if security {
        scratch.write(
            "mirror/debian-security/dists/bookworm-security/InRelease",
            &IN_RELEASE.replace("stable", "stable-security"),
        );
    }
}

fn fingerprint(scratch: Scratch, args: &[&str]) -> (String, Scratch) {
    let (out, scratch) = Test::in_scratch(scratch)
        .args(["fingerprint", "t.toml"])
        .args(args)
        .run();
    (common::text(&out.stdout), scratch)
}

fn digest(listing: &str) -> String {
    listing
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn lists_the_parts_and_follows_the_package_archive() {
    let scratch = Scratch::new();
    let root = scratch.path("mirror");
    let server = FileServer::start(&root);
    let url = server.url("/debian");
    scratch.write("t.toml", &template(&url));
    scratch.write("site/index.html", "hi\n");
    mirror(&scratch, "06 Sep", true);

    let (first, scratch) = fingerprint(scratch, &[]);
    let d = digest(&first);
    assert_eq!(d.len(), 64);
    assert_eq!(
        first,
        format!(
            "local: {d}\n  source `local` settings\n  provisioner 1 (shell, t.toml:12)\n  provisioner 2 (file, t.toml:16)\n  variable `greeting`\n  package archive bookworm ({url})\n"
        )
    );
    let (again, scratch) = fingerprint(scratch, &[]);
    assert_eq!(again, first, "the same inputs give the same fingerprint");

    // -v: each part's and input's hash; the archive by its two InRelease files.
    let (verbose, scratch) = fingerprint(scratch, &["-v"]);
    let lines: Vec<&str> = verbose.lines().collect();
    assert_eq!(lines[0], format!("local: {d}"));
    let labels: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.trim_start().rsplit_once("  ").unwrap().0)
        .collect();
    assert_eq!(
        labels,
        [
            "source `local` settings",
            "settings",
            "provisioner 1 (shell, t.toml:12)",
            "settings",
            "provisioner 2 (file, t.toml:16)",
            "settings",
            "site/",
            "site/index.html",
            "variable `greeting`",
            "value",
            "package archive bookworm (URL)"
                .replace("URL", &url)
                .as_str(),
            format!("bootstrap recipe from {url}").as_str(),
            format!("{url}/dists/bookworm/InRelease").as_str(),
            format!("{url}-security/dists/bookworm-security/InRelease").as_str(),
        ]
    );

    // A new archive state (a point release, a security update) changes it.
    mirror(&scratch, "07 Sep", true);
    let (updated, scratch) = fingerprint(scratch, &[]);
    assert_ne!(digest(&updated), d);

    // A mirror without the security suite still gives a fingerprint.
    std::fs::remove_dir_all(scratch.path("mirror/debian-security")).unwrap();
    let (no_security, scratch) = fingerprint(scratch, &[]);
    assert_ne!(digest(&no_security), digest(&updated));

    // A variable's value counts, not where it comes from.
    let (with_var, scratch) = fingerprint(scratch, &["--var", "greeting=hello"]);
    assert_eq!(digest(&with_var), digest(&no_security));
    let (other_var, _) = fingerprint(scratch, &["--var", "greeting=bye"]);
    assert_ne!(digest(&other_var), digest(&no_security));
}

#[test]
fn an_unreachable_mirror_is_an_error_naming_the_url() {
    let scratch = Scratch::new();
    let server = FileServer::start(&scratch.path("empty"));
    let url = server.url("/debian");
    Test::in_scratch(scratch)
        .file("t.toml", &template(&url))
        .file("site/index.html", "hi\n")
        .args(["fingerprint", "t.toml"])
        .stdout("")
        .stderr(&format!(
            "error: source `local`: {url}/dists/bookworm/InRelease: not found (404)\n"
        ))
        .status(1)
        .run();
}

#[test]
fn rebuild_and_max_age_are_checked_where_they_are_written() {
    Test::new()
        .file(
            "t.toml",
            "name = \"web\"\nversion = \"1\"\nrebuild = \"sometimes\"\nmax_age = \"soon\"\n\n[source.s]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\n",
        )
        .args(["validate", "t.toml"])
        .stderr(
            "error: t.toml:3:11: `rebuild` must be \"always\" or \"if-changed\"\n 3 | rebuild = \"sometimes\"\n   |           ^^^^^^^^^^^\n  help: \"if-changed\" skips the build when the newest image has the same fingerprint\n\nerror: t.toml:4:11: `max_age`: invalid duration `soon` (expected number at 0); write e.g. \"14d\" or \"36h\"\n 4 | max_age = \"soon\"\n   |           ^^^^^^\n\n2 errors found\n",
        )
        .status(2)
        .run();
    Test::new()
        .file(
            "t.toml",
            "name = \"web\"\nversion = \"1\"\nrebuild = \"if-changed\"\nmax_age = \"14d\"\n\n[source.s]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\n\n[[provisioner]]\ntype = \"shell\"\ninline = [\"echo ${image.build}\"]\n",
        )
        .args(["validate", "t.toml"])
        .status(0)
        .run();
}
