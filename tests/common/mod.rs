//! Test support shared by the end-to-end suites: a real OpenSSH sshd on
//! 127.0.0.1, the real `imgbuild` binary, and a scratch folder per test.
#![allow(dead_code)]

pub mod ebs;
pub mod http;
pub mod links;
pub mod local;
pub mod moto;
pub mod test;

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Checks `done` every `every` until it holds or `limit` has passed, and
/// says whether it held: the one bounded wait the suites poll with.
pub fn wait_until(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Waits (bounded) until something accepts connections on the port.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    wait_until(limit, Duration::from_millis(25), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "imgbuild-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed");
}

/// Who the sshd lets in.
pub enum Admit {
    /// The public keys in this file.
    KeysFile(PathBuf),
    /// Keys of key pairs attached to running instances in the emulator.
    Moto {
        endpoint: String,
        regions: Vec<String>,
    },
}

/// A real sshd on 127.0.0.1, stopped when dropped.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    child: Option<Child>,
}

impl Sshd {
    pub fn start(admit: Admit) -> Sshd {
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        keygen(&dir.path().join("ssh_host_ed25519_key"));
        let auth = match admit {
            Admit::KeysFile(file) => format!("AuthorizedKeysFile {}", file.display()),
            Admit::Moto { endpoint, regions } => format!(
                "AuthorizedKeysFile none\nAuthorizedKeysCommand /usr/bin/python3 {} {endpoint} {}\nAuthorizedKeysCommandUser root",
                support_dir().join("moto_authorized_keys.py").display(),
                regions.join(" ")
            ),
        };
        let port = free_port();
        let text = fs::read_to_string(support_dir().join("sshd_config.template"))
            .expect("read sshd template")
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", &dir.path().display().to_string())
            .replace("@AUTH@", &auth);
        let config = dir.path().join("sshd_config");
        fs::write(&config, text).expect("write sshd config");
        let mut sshd = Sshd {
            port,
            dir,
            config,
            child: None,
        };
        sshd.launch();
        sshd
    }

    fn launch(&mut self) {
        let log = fs::File::create(self.dir.path().join("sshd.log")).expect("sshd log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "sshd did not listen; log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Stops the listener (sessions it started keep running, as with a real sshd).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch folder holding a template, keys and files for one test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&path, content).expect("write");
        path
    }

    /// A client key pair admitted by a keys-file sshd: returns (private key path, authorized_keys path).
    pub fn client_key(&self) -> (PathBuf, PathBuf) {
        let key = self.path("id_ed25519");
        keygen(&key);
        let authorized = self.path("authorized_keys");
        fs::copy(key.with_extension("pub"), &authorized).expect("copy public key");
        (key, authorized)
    }
}

/// A scratch folder with a client key (`id_ed25519`) and a real sshd that
/// admits it: the machine a `type = "ssh"` source provisions.
pub fn ssh_box() -> (Scratch, Sshd) {
    let scratch = Scratch::new();
    let (_, authorized) = scratch.client_key();
    let sshd = Sshd::start(Admit::KeysFile(authorized));
    (scratch, sshd)
}

/// A template's start: image `test` 1.0 and `[source.box]`, which logs in to
/// `sshd` as root with the scratch key; `extra` holds more source lines.
pub fn ssh_template(sshd: &Sshd, extra: &str) -> String {
    format!(
        "name = \"test\"\nversion = \"1.0\"\n\n[source.box]\ntype = \"ssh\"\nssh_host = \"127.0.0.1\"\nssh_port = {}\nssh_username = \"root\"\nssh_private_key_file = \"id_ed25519\"\nssh_timeout = \"20s\"\n{extra}\n",
        sshd.port
    )
}

/// Writes `template` to `t.toml` in the scratch folder and builds it there
/// (the manifest goes to `imgbuild-manifest.json` beside it).
pub fn build_in(scratch: &Scratch, template: &str, limit: Duration) -> Output {
    scratch.write("t.toml", template);
    run(
        imgbuild()
            .arg("build")
            .arg("t.toml")
            .current_dir(scratch.dir.path()),
        limit,
    )
}

/// Starts building `t.toml` in the scratch folder and returns at once, for
/// tests that signal the build while it runs.
pub fn start_build(scratch: &Scratch, envs: &[(&str, &Path)]) -> Child {
    let mut cmd = imgbuild();
    for (key, value) in envs {
        cmd.env(key, value);
    }
    cmd.arg("build")
        .arg("t.toml")
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgbuild")
}

pub fn imgbuild() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgbuild"));
    cmd.env("CI", "true")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env_remove("IMGBUILD_LOG");
    cmd
}

/// Runs the binary to completion (bounded) and returns its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgbuild");
    wait_output(child, limit)
}

pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            child.stdout.take().map(|mut s| s.read_to_end(&mut stdout));
            child.stderr.take().map(|mut s| s.read_to_end(&mut stderr));
            return Output {
                status,
                stdout,
                stderr,
            };
        }
        if Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "imgbuild did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits (bounded) until `path` exists.
pub fn wait_for_file(path: &Path, limit: Duration) -> bool {
    wait_until(limit, Duration::from_millis(50), || path.exists())
}

pub fn send_signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a child process id we own.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// The pids of the processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// Processes whose command line contains `needle` (excluding this test process).
pub fn processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}
