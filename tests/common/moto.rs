//! moto's EC2 server on 127.0.0.1, one per test, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, wait_for_port};

pub struct Moto {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto (pip install 'moto[server]')");
        let moto = Moto { port, dir, child };
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "moto did not start"
        );
        let until = Instant::now() + Duration::from_secs(30);
        while !moto
            .get("/moto-api/")
            .is_some_and(|s| s.starts_with("HTTP/1.1 200") || s.starts_with("HTTP/1.0 200"))
        {
            assert!(Instant::now() < until, "moto did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto.post("/moto-api/recorder/reset-recording");
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn recording_path(&self) -> PathBuf {
        self.dir.path().join("recording.jsonl")
    }

    fn request(&self, method: &str, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    pub fn get(&self, path: &str) -> Option<String> {
        self.request("GET", path)
    }

    pub fn post(&self, path: &str) -> Option<String> {
        self.request("POST", path)
    }

    /// EC2 API requests the server received from anything but the test's own
    /// helpers (the sshd key lookup identifies itself by User-Agent).
    pub fn api_requests(&self) -> Vec<String> {
        let body = self
            .get("/moto-api/recorder/download-recording")
            .unwrap_or_default();
        let body = body
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !l.contains("/moto-api/"))
            .filter(|l| !l.contains("imgbuild-test-authorized-keys"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
