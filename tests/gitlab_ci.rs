//! The GitLab CI component as users get it: checked against GitLab's CI
//! schema (check-jsonschema's vendored copy), and its jobs run for real by
//! gitlab-ci-local with its shell executor in a throwaway repository made
//! from this one's templates and provisioners; the build job against moto
//! and a real sshd.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::moto::Moto;
use common::{Admit, Scratch, Sshd, run, text};

const LIMIT: Duration = Duration::from_secs(300);
const COMPONENT: &str = "ci/imgbuild.gitlab-ci.yml";
const REGION: &str = "us-east-1";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where `scripts/setup --test` installs the test tools from npm.
fn gitlab_ci_local() -> PathBuf {
    let tools = std::env::var_os("IMGBUILD_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/imgbuild-tools")
        });
    tools.join("node_modules/.bin/gitlab-ci-local")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A user's project: this repository's templates/ and provisioners/, the
/// component, and a .gitlab-ci.yml including it, pushed to a local origin.
struct Project {
    scratch: Scratch,
}

impl Project {
    fn new(templates: &[&str], extra_inputs: &str) -> Project {
        let scratch = Scratch::new();
        let dir = scratch.path("project");
        copy_tree(&repo().join("templates"), &dir.join("templates"));
        copy_tree(&repo().join("provisioners"), &dir.join("provisioners"));
        fs::create_dir_all(dir.join("ci")).unwrap();
        fs::copy(repo().join(COMPONENT), dir.join(COMPONENT)).unwrap();
        let list = templates
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        fs::write(
            dir.join(".gitlab-ci.yml"),
            format!(
                "include:\n  - local: {COMPONENT}\n    inputs:\n      templates: [{list}]\n      image: registry.example.com/platform/imgbuild:1\n{extra_inputs}"
            ),
        )
        .unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        git(&dir, &["add", "-A"]);
        git(&dir, &["commit", "-q", "-m", "images"]);
        let origin = scratch.path("origin.git");
        git(
            scratch.dir.path(),
            &["init", "-q", "--bare", origin.to_str().unwrap()],
        );
        git(&dir, &["remote", "add", "origin", origin.to_str().unwrap()]);
        git(&dir, &["push", "-q", "origin", "main"]);
        git(&dir, &["remote", "set-head", "origin", "main"]);
        Project { scratch }
    }

    fn dir(&self) -> PathBuf {
        self.scratch.path("project")
    }

    fn write(&self, rel: &str, content: &str) {
        fs::write(self.dir().join(rel), content).unwrap();
    }

    /// gitlab-ci-local in this project, as a pipeline from `source`.
    fn gitlab_ci_local(&self, source: &str, args: &[&str], vars: &[(&str, String)]) -> Output {
        let bin = Path::new(env!("CARGO_BIN_EXE_imgbuild")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(gitlab_ci_local());
        cmd.current_dir(self.dir())
            .env("PATH", path)
            .env_remove("GITLAB_CI")
            .args(["--home", self.scratch.path("gcl-home").to_str().unwrap()])
            .args(["--ignore-predefined-vars", "CI_PIPELINE_SOURCE"])
            .arg("--variable")
            .arg(format!("CI_PIPELINE_SOURCE={source}"));
        for (k, v) in vars {
            cmd.arg("--variable").arg(format!("{k}={v}"));
        }
        cmd.args(args);
        run(&mut cmd, LIMIT)
    }

    /// The jobs a pipeline from `source` would run, by name.
    fn jobs(&self, source: &str) -> Vec<String> {
        let out = self.gitlab_ci_local(source, &["--list-csv"], &[]);
        assert!(
            out.status.success(),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
            .lines()
            .skip_while(|l| !l.starts_with("name;"))
            .skip(1)
            .map(|l| l.split(';').next().unwrap().to_string())
            .collect()
    }

    /// A file the job `kind` (`validate`, `build`) of `template` exported.
    fn artifact(&self, kind: &str, template: &str, file: &str) -> Option<String> {
        // gitlab-ci-local names each job's artifact folder after the job,
        // its punctuation encoded: find it by the words it keeps.
        let stem = Path::new(template).file_stem()?.to_str()?.to_string();
        let root = self.dir().join(".gitlab-ci-local/artifacts");
        fs::read_dir(root)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                name.starts_with(&format!("imgbuildOg{kind}")) && name.contains(&stem)
            })
            .find_map(|dir| fs::read_to_string(dir.join(file)).ok())
    }
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn the_component_and_an_example_pipeline_match_gitlabs_schema() {
    let component = fs::read_to_string(repo().join(COMPONENT)).unwrap();
    let (spec, jobs) = component
        .split_once("\n---\n")
        .expect("a component is a spec document and a jobs document");
    // The jobs as GitLab sees them once an include sets the inputs.
    let mut jobs = jobs.to_string();
    for (input, value) in [
        (
            "templates",
            r#"["images/httpd.toml", "images/tomcat.toml"]"#,
        ),
        ("image", "registry.example.com/platform/imgbuild:1"),
        ("validate_stage", "test"),
        ("build_stage", "deploy"),
        ("only", "aws"),
        ("role_arn", "arn:aws:iam::123456789012:role/imgbuild"),
        ("audience", "sts.amazonaws.com"),
        ("timeout", "3h"),
        ("changes", r#"["**/*.toml", "provisioners/**/*"]"#),
        ("if_changed", "true"),
        ("max_age", ""),
        ("prune", "false"),
        ("expire_in", "30 days"),
    ] {
        jobs = jobs.replace(&format!("$[[ inputs.{input} ]]"), value);
    }
    assert!(!jobs.contains("$[["), "every input is substituted:\n{jobs}");
    let scratch = Scratch::new();
    let files = [
        scratch.write("spec.yml", spec),
        scratch.write("jobs.yml", &jobs),
        repo().join("ci/example.gitlab-ci.yml"),
    ];
    let out = run(
        Command::new("python3")
            .args([
                "-m",
                "check_jsonschema",
                "--builtin-schema",
                "vendor.gitlab-ci",
            ])
            .args(&files),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn each_kind_of_pipeline_runs_the_expected_jobs() {
    let project = Project::new(&["templates/httpd.toml"], "");
    assert_eq!(
        project.jobs("push"),
        [
            "imgbuild:validate: [templates/httpd.toml]",
            "imgbuild:build: [templates/httpd.toml]"
        ],
        "the default branch validates, then builds"
    );
    assert_eq!(
        project.jobs("schedule"),
        [
            "imgbuild:validate: [templates/httpd.toml]",
            "imgbuild:scheduled: [templates/httpd.toml]"
        ],
        "a schedule validates, then rebuilds"
    );
    // A merge request from a branch: validate only, and only when a
    // template or provisioner changed.
    git(&project.dir(), &["checkout", "-q", "-b", "docs"]);
    project.write("NOTES.md", "notes\n");
    git(&project.dir(), &["add", "-A"]);
    git(&project.dir(), &["commit", "-q", "-m", "docs"]);
    assert_eq!(
        project.jobs("merge_request_event"),
        Vec::<String>::new(),
        "nothing runs for a change outside templates and provisioners"
    );
    project.write(
        "provisioners/httpd/configure.sh",
        "#!/bin/sh\necho changed\n",
    );
    git(&project.dir(), &["commit", "-q", "-am", "provisioner"]);
    assert_eq!(
        project.jobs("merge_request_event"),
        ["imgbuild:validate: [templates/httpd.toml]"]
    );
}

#[test]
fn the_validate_job_passes_a_good_template_and_reports_a_bad_one() {
    let project = Project::new(&["templates/httpd.toml", "templates/broken.toml"], "");
    project.write(
        "templates/broken.toml",
        "name = \"broken\"\nversion = \"1\"\n\n[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_usernme = \"u\"\n",
    );
    git(&project.dir(), &["add", "-A"]);
    git(&project.dir(), &["commit", "-q", "-m", "broken"]);
    let out = project.gitlab_ci_local(
        "push",
        &[
            "--force-shell-executor",
            "--shell-isolation",
            "imgbuild:validate: [templates/httpd.toml]",
            "imgbuild:validate: [templates/broken.toml]",
        ],
        &[],
    );
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "a bad template fails the pipeline\n{log}"
    );
    assert!(
        log.contains(" PASS  imgbuild:validate: [templates/httpd.toml]"),
        "{log}"
    );
    assert!(
        log.contains(" FAIL  imgbuild:validate: [templates/broken.toml]"),
        "{log}"
    );

    let junit = project
        .artifact("validate", "templates/broken.toml", "imgbuild-junit.xml")
        .unwrap_or_else(|| panic!("the failed job still exports its JUnit report\n{log}"));
    assert_eq!(
        junit,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="imgbuild validate" tests="2" failures="1">
  <testsuite name="templates/broken.toml" tests="2" failures="1">
    <testcase classname="templates/broken.toml" name="template"/>
    <testcase classname="templates/broken.toml" name="source box (ssh)">
      <failure type="validation" message="templates/broken.toml:7:1: unknown key `ssh_usernme` in source `box` (type &quot;ssh&quot;)">templates/broken.toml:7:1: unknown key `ssh_usernme` in source `box` (type &quot;ssh&quot;)</failure>
    </testcase>
  </testsuite>
</testsuites>
"#
    );
    let quality = project
        .artifact(
            "validate",
            "templates/broken.toml",
            "imgbuild-codequality.json",
        )
        .expect("code quality report");
    let issues: serde_json::Value = serde_json::from_str(&quality).unwrap();
    assert_eq!(issues[0]["location"]["path"], "templates/broken.toml");
    assert_eq!(issues[0]["location"]["lines"]["begin"], 7);
    let good = project
        .artifact("validate", "templates/httpd.toml", "imgbuild-junit.xml")
        .expect("JUnit report of the good template");
    assert!(good.contains(r#"failures="0""#), "{good}");
}

/// A project whose `images/web.toml` builds one AMI in moto, provisioned
/// over `sshd`, with the component's `extra_inputs`.
fn web_project(sshd: &Sshd, extra_inputs: &str) -> Project {
    let project = Project::new(&["images/web.toml"], extra_inputs);
    fs::create_dir_all(project.dir().join("images")).unwrap();
    project.write(
        "images/web.toml",
        &format!(
            r#"name = "web"
version = "1.2"

[source.aws]
type = "amazon-ebs"
region = "{REGION}"
source_ami = "ami-0e1e769742d1cfb49"
temporary_sg_cidrs = ["10.0.0.0/8"]
ssh_host = "127.0.0.1"
ssh_port = {port}
ssh_username = "root"
ssh_timeout = "30s"

[retention]
keep = 1

[[provisioner]]
type = "shell"
inline = ["echo provisioned"]
"#,
            port = sshd.port
        ),
    );
    git(&project.dir(), &["add", "-A"]);
    git(&project.dir(), &["commit", "-q", "-m", "web"]);
    project
}

/// What the runner gives a build job: moto as EC2, and GitLab's ID token.
fn build_job_vars(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", REGION.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        // GitLab mints this from `id_tokens`; moto's STS takes any token.
        (
            "IMGBUILD_ID_TOKEN",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0In0.c2ln".into(),
        ),
    ]
}

const ROLE_INPUTS: &str =
    "      only: aws\n      role_arn: arn:aws:iam::123456789012:role/imgbuild\n";

#[test]
fn the_scheduled_job_reuses_an_unchanged_image_says_so_in_its_reports_and_prunes() {
    let moto = Moto::start();
    let sshd = Sshd::start(Admit::Moto {
        endpoint: moto.endpoint(),
        regions: vec![REGION.into()],
    });
    let project = web_project(&sshd, &format!("{ROLE_INPUTS}      prune: true\n"));
    let job = [
        "--force-shell-executor",
        "imgbuild:scheduled: [images/web.toml]",
    ];
    let mut dotenvs = Vec::new();
    let mut logs = Vec::new();
    for run in ["first", "second"] {
        let out = project.gitlab_ci_local("schedule", &job, &build_job_vars(&moto));
        let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{run} run\n{log}\n{}", sshd.log());
        logs.push(log.clone());
        dotenvs.push(
            project
                .artifact("scheduled", "images/web.toml", "imgbuild.env")
                .unwrap_or_else(|| panic!("dotenv artifact of the {run} run\n{log}")),
        );
    }
    let variable = |dotenv: &str, name: &str| {
        dotenv
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in:\n{dotenv}"))
            .to_string()
    };
    // The second run launched nothing and pointed its reports at the first image.
    assert_eq!(moto.calls("RunInstances").len(), 1);
    for (dotenv, unchanged) in dotenvs.iter().zip(["false", "true"]) {
        assert_eq!(
            variable(dotenv, "IMGBUILD_AWS_UNCHANGED"),
            unchanged,
            "{dotenv}"
        );
        assert_eq!(variable(dotenv, "IMGBUILD_AWS_BUILD"), "1", "{dotenv}");
    }
    assert_eq!(
        variable(&dotenvs[1], "IMGBUILD_AWS_US_EAST_1_AMI"),
        variable(&dotenvs[0], "IMGBUILD_AWS_US_EAST_1_AMI")
    );
    assert_eq!(
        variable(&dotenvs[1], "IMGBUILD_AWS_FINGERPRINT"),
        variable(&dotenvs[0], "IMGBUILD_AWS_FINGERPRINT")
    );
    // Then it pruned as `[retention]` says: the one image is the newest.
    let ami = variable(&dotenvs[0], "IMGBUILD_AWS_US_EAST_1_AMI");
    for log in &logs {
        assert!(
            log.contains(&format!(
                "{REGION}: kept {ami} (build 1 of web 1.2): newest 1"
            )),
            "{log}"
        );
    }
}

#[test]
fn the_build_job_assumes_the_role_builds_against_moto_and_exports_the_ami() {
    let moto = Moto::start();
    let sshd = Sshd::start(Admit::Moto {
        endpoint: moto.endpoint(),
        regions: vec![REGION.into()],
    });
    let project = web_project(&sshd, ROLE_INPUTS);
    let out = project.gitlab_ci_local(
        "push",
        &[
            "--force-shell-executor",
            "imgbuild:build: [images/web.toml]",
        ],
        &build_job_vars(&moto),
    );
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{log}\n{}", sshd.log());

    let dotenv = project
        .artifact("build", "images/web.toml", "imgbuild.env")
        .unwrap_or_else(|| panic!("dotenv artifact\n{log}"));
    let ami = dotenv
        .lines()
        .find_map(|l| l.strip_prefix("IMGBUILD_AWS_US_EAST_1_AMI="))
        .unwrap_or_else(|| panic!("no AMI in the dotenv:\n{dotenv}"));
    assert!(ami.starts_with("ami-"), "{dotenv}");
    let manifest: serde_json::Value = serde_json::from_str(
        &project
            .artifact("build", "images/web.toml", "imgbuild-manifest.json")
            .expect("manifest artifact"),
    )
    .unwrap();
    assert_eq!(manifest["builds"][0]["artifacts"][0]["id"], ami);
    // One AssumeRoleWithWebIdentity (the body is recorded base64-encoded:
    // this is "Action=AssumeRoleWithWebIdentity"), then every EC2 call
    // signed with the temporary credentials it returned (ASIA…).
    let requests = moto.api_requests();
    let assumed = requests
        .iter()
        .filter(|r| r.contains("QWN0aW9uPUFzc3VtZVJvbGVXaXRoV2ViSWRlbnRp"))
        .count();
    assert_eq!(assumed, 1, "{}", requests.join("\n"));
    let ec2: Vec<_> = requests.iter().filter(|r| r.contains("api/ec2/")).collect();
    assert!(!ec2.is_empty());
    for r in ec2 {
        assert!(
            r.contains("Credential=ASIA"),
            "signed with the role's credentials: {r}"
        );
    }

    let mut files = Vec::new();
    all_files(&project.dir(), &mut files);
    let tokens: Vec<_> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "imgbuild-oidc-token"))
        .collect();
    assert!(tokens.is_empty(), "token files left: {tokens:?}");
}
