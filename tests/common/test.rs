//! The one builder every suite drives the real binary through: arrange
//! files in a scratch folder, run `imgbuild` there, and expect its stdout,
//! stderr and exit status exactly.
//!
//! ```ignore
//! Test::new()
//!     .file("t.toml", "name = \"x\"\n")
//!     .args(["validate", "t.toml"])
//!     .stderr("error: ...\n")
//!     .status(2)
//!     .run();
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use super::{Scratch, imgbuild, run, text};

/// What a stream must hold.
enum Expect {
    Exactly(String),
    Contains(Vec<String>),
}

pub struct Test {
    scratch: Scratch,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    stdout: Option<Expect>,
    stderr: Option<Expect>,
    status: i32,
    limit: Duration,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Test {
        Test::in_scratch(Scratch::new())
    }

    /// Runs in a scratch folder the caller has already arranged.
    pub fn in_scratch(scratch: Scratch) -> Test {
        Test {
            scratch,
            args: Vec::new(),
            env: Vec::new(),
            stdout: None,
            stderr: None,
            status: 0,
            limit: Duration::from_secs(60),
        }
    }

    /// Writes `content` to `rel` inside the scratch folder.
    pub fn file(self, rel: &str, content: &str) -> Test {
        self.scratch.write(rel, content);
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.scratch.path(rel)
    }

    pub fn dir(&self) -> &Path {
        self.scratch.dir.path()
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Test {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Test {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Sets (`Some`) or removes (`None`) each variable, e.g. `moto::aws_vars`.
    pub fn envs<K: Into<OsString>, V: Into<OsString>>(
        mut self,
        vars: impl IntoIterator<Item = (K, Option<V>)>,
    ) -> Test {
        for (key, value) in vars {
            self.env.push((key.into(), value.map(Into::into)));
        }
        self
    }

    /// Talks to `endpoint` as its AWS with dummy credentials and HOME its
    /// own folder (`moto::aws_vars`), as every command run against moto does.
    pub fn aws(self, endpoint: &str) -> Test {
        let home = self.dir().to_path_buf();
        self.envs(super::moto::aws_vars(endpoint, &home))
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> Test {
        self.env.push((key.into(), None));
        self
    }

    /// stdout must be exactly this.
    pub fn stdout(mut self, exactly: &str) -> Test {
        self.stdout = Some(Expect::Exactly(exactly.to_string()));
        self
    }

    /// stderr must be exactly this.
    pub fn stderr(mut self, exactly: &str) -> Test {
        self.stderr = Some(Expect::Exactly(exactly.to_string()));
        self
    }

    /// stdout must contain each of these (for output that names absolute paths).
    pub fn stdout_contains(mut self, part: &str) -> Test {
        match &mut self.stdout {
            Some(Expect::Contains(parts)) => parts.push(part.to_string()),
            _ => self.stdout = Some(Expect::Contains(vec![part.to_string()])),
        }
        self
    }

    /// stderr must contain each of these (for output with times or ids in it).
    pub fn stderr_contains(mut self, part: &str) -> Test {
        match &mut self.stderr {
            Some(Expect::Contains(parts)) => parts.push(part.to_string()),
            _ => self.stderr = Some(Expect::Contains(vec![part.to_string()])),
        }
        self
    }

    pub fn status(mut self, code: i32) -> Test {
        self.status = code;
        self
    }

    pub fn limit(mut self, limit: Duration) -> Test {
        self.limit = limit;
        self
    }

    /// Runs and checks every expectation; returns the output and the scratch
    /// folder for further checks.
    pub fn run(self) -> (Output, Scratch) {
        let mut cmd = imgbuild();
        cmd.args(&self.args).current_dir(self.scratch.dir.path());
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        let out = run(&mut cmd, self.limit);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let shown = format!("--- stdout\n{stdout}--- stderr\n{stderr}---");
        check("stdout", &stdout, self.stdout.as_ref(), &shown);
        check("stderr", &stderr, self.stderr.as_ref(), &shown);
        assert_eq!(
            out.status.code(),
            Some(self.status),
            "exit status of imgbuild {:?}\n{shown}",
            self.args
        );
        (out, self.scratch)
    }
}

fn check(stream: &str, actual: &str, expect: Option<&Expect>, shown: &str) {
    match expect {
        None => {}
        Some(Expect::Exactly(want)) => {
            assert!(
                actual == want,
                "{stream} differs\n--- expected\n{want}--- actual\n{actual}---\n{shown}"
            );
        }
        Some(Expect::Contains(parts)) => {
            for part in parts {
                assert!(
                    actual.contains(part.as_str()),
                    "{stream} lacks {part:?}\n{shown}"
                );
            }
        }
    }
}
