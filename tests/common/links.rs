//! What the tests put between imgbuild and its servers: a proxy that makes
//! EC2 busy, and a relay that makes the SSH link slow. Each is a script in
//! `tests/support`, run as a child and stopped by its pid when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{free_port, support_dir};

/// A helper script that has printed "ready".
struct Helper {
    child: Child,
}

impl Helper {
    fn start(script: &str, args: &[String]) -> Helper {
        let mut child = Command::new("python3")
            .arg(support_dir().join(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let mut line = String::new();
        // The script prints "ready" once it listens, or exits (EOF).
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read helper output");
        assert_eq!(line.trim(), "ready", "{script} did not start");
        Helper { child }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ec2_fault_proxy.py` in front of moto.
pub struct FaultProxy {
    pub port: u16,
    pub log: PathBuf,
    _helper: Helper,
}

impl FaultProxy {
    /// Faults `fraction` of the calls of `actions` (all actions when empty),
    /// chosen by `seed`; `log` receives one "ACTION CODE" line per call.
    pub fn start(
        moto_endpoint: &str,
        seed: u64,
        fraction: f64,
        actions: &[&str],
        log: PathBuf,
    ) -> FaultProxy {
        let mut more = Vec::new();
        if !actions.is_empty() {
            more.push("--actions".into());
            more.push(actions.join(","));
        }
        FaultProxy::with(moto_endpoint, seed, fraction, more, log)
    }

    /// Answers the calls of an action with the refusals given for it, in
    /// order ("RunInstances:InsufficientInstanceCapacity:500"); passes on
    /// every other call.
    pub fn refusing(moto_endpoint: &str, refusals: &[&str], log: PathBuf) -> FaultProxy {
        let more = refusals
            .iter()
            .flat_map(|r| ["--refuse".to_string(), r.to_string()])
            .collect();
        FaultProxy::with(moto_endpoint, 0, 0.0, more, log)
    }

    /// Passes every call on, but holds the first call after one of `action`
    /// for `seconds`: a window in which the build is surely inside the step
    /// that made that call.
    pub fn holding_after(
        moto_endpoint: &str,
        action: &str,
        seconds: u32,
        log: PathBuf,
    ) -> FaultProxy {
        let more = vec!["--hold-after".into(), format!("{action}:{seconds}")];
        FaultProxy::with(moto_endpoint, 0, 0.0, more, log)
    }

    fn with(
        moto_endpoint: &str,
        seed: u64,
        fraction: f64,
        more: Vec<String>,
        log: PathBuf,
    ) -> FaultProxy {
        let port = free_port();
        let mut args = vec![
            port.to_string(),
            moto_endpoint.to_string(),
            seed.to_string(),
            fraction.to_string(),
            log.display().to_string(),
            "--max-seconds".into(),
            "900".into(),
        ];
        args.extend(more);
        FaultProxy {
            port,
            log,
            _helper: Helper::start("ec2_fault_proxy.py", &args),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The calls logged so far, as (action, code) with `ok` for passed on.
    pub fn calls(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, c)| (a.to_string(), c.to_string()))
            .collect()
    }

    /// What the calls of `action` were answered, in order (`ok` for passed
    /// on): the refusals a build met and whether it went on after them.
    pub fn answers(&self, action: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|(a, _)| a == action)
            .map(|(_, c)| c)
            .collect()
    }
}

/// `throttle_relay.py`: a slow TCP link to a local port.
pub struct Relay {
    pub port: u16,
    _helper: Helper,
}

impl Relay {
    /// Relays to `target_port` at `bytes_per_second` each way, for at most
    /// `max_seconds`.
    pub fn start(target_port: u16, bytes_per_second: u64, max_seconds: u64) -> Relay {
        let port = free_port();
        let args = [
            port.to_string(),
            target_port.to_string(),
            bytes_per_second.to_string(),
            max_seconds.to_string(),
        ];
        Relay {
            port,
            _helper: Helper::start("throttle_relay.py", &args),
        }
    }
}
