//! Builds that meet trouble: a busy EC2 (the fault proxy answers a share of
//! calls with 503 `Unavailable` / `RequestLimitExceeded`), a slow SSH link
//! that a signal interrupts mid-upload, and an SSH connection that dies
//! mid-upload. Real binary, moto, real sshd, all on 127.0.0.1.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ebs::{BUILD_LIMIT, REGION, World, describe};
use common::links::{FaultProxy, Relay};
use common::{run, send_signal, text, wait_output, wait_until};

/// What a build of `template` left in moto that it should not have: live
/// instances, imgbuild key pairs and security groups.
fn temporary_leftovers(w: &World) -> Vec<String> {
    let ec2 = w.ec2(REGION);
    let mut left = ec2.live_instances();
    left.extend(ec2.imgbuild_key_pairs());
    left.extend(ec2.imgbuild_security_groups());
    left
}

fn count(calls: &[(String, String)], action: &str, code: &str) -> usize {
    calls
        .iter()
        .filter(|(a, c)| a == action && c == code)
        .count()
}

#[test]
fn twenty_seeded_builds_through_a_busy_ec2_all_succeed_with_one_launch_each() {
    let mut w = World::new();
    let template = w.template(
        "",
        "[[provisioner]]\ntype = \"shell\"\ninline = [\"true\"]\n",
    );
    let mut faulted = 0;
    for seed in 1..=20u64 {
        let proxy = FaultProxy::start(
            &w.moto.endpoint(),
            seed,
            0.2,
            &[],
            w.scratch.path(&format!("proxy-{seed}.log")),
        );
        w.endpoint = proxy.endpoint();
        let out = run(&mut w.build(&template), BUILD_LIMIT);
        let calls = proxy.calls();
        let log = format!("seed {seed}\n{}\ncalls: {calls:?}", describe(&out));
        assert!(out.status.success(), "{log}");
        assert_eq!(count(&calls, "RunInstances", "ok"), 1, "{log}");
        assert_eq!(temporary_leftovers(&w), Vec::<String>::new(), "{log}");
        faulted += calls.iter().filter(|(_, c)| c != "ok").count();
        // One instance launched per build, ever (terminated ones stay listed).
        assert_eq!(w.ec2(REGION).instances().len(), seed as usize, "{log}");
        assert_eq!(w.ec2(REGION).own_images().len(), seed as usize, "{log}");
    }
    assert!(faulted >= 20, "the proxy faulted only {faulted} calls");
}

#[test]
fn a_busy_ec2_during_cleanup_leaves_nothing() {
    let mut w = World::new();
    let baseline = w.snapshot_baseline();
    let cleanup_calls = [
        "TerminateInstances",
        "DescribeInstances",
        "DeleteKeyPair",
        "DeleteSecurityGroup",
    ];
    let proxy = FaultProxy::start(
        &w.moto.endpoint(),
        7,
        0.5,
        &cleanup_calls,
        w.scratch.path("proxy.log"),
    );
    w.endpoint = proxy.endpoint();
    let template = w.template(
        "",
        "[[provisioner]]\ntype = \"shell\"\ninline = [\"exit 3\"]\n",
    );
    let out = run(&mut w.build(&template), BUILD_LIMIT);
    let calls = proxy.calls();
    let log = format!("{}\ncalls: {calls:?}", describe(&out));
    assert_eq!(out.status.code(), Some(1), "{log}");
    for action in ["TerminateInstances", "DeleteKeyPair", "DeleteSecurityGroup"] {
        assert_eq!(count(&calls, action, "ok"), 1, "{action}\n{log}");
    }
    assert!(
        calls
            .iter()
            .any(|(a, c)| cleanup_calls.contains(&a.as_str()) && c != "ok"),
        "no cleanup call was faulted\n{log}"
    );
    w.assert_clean(&baseline, &log);
}

fn write_big_file(path: &Path, mib: usize) {
    let block: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut data = Vec::with_capacity(mib * block.len());
    for _ in 0..mib {
        data.extend_from_slice(&block);
    }
    std::fs::write(path, data).expect("write big file");
}

/// Files in `dir` whose name contains `part`.
fn files_like(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

/// The size of the hidden file an upload of `name` writes to in `dir`.
fn partial_size(dir: &Path, name: &str) -> u64 {
    files_like(dir, &format!(".{name}.imgbuild"))
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// A build whose provisioner uploads 64 MiB over a 5 MB/s link (13 s),
/// started and waited on until a few MiB have arrived.
fn start_a_slow_upload(w: &mut World) -> (std::process::Child, std::path::PathBuf) {
    write_big_file(&w.scratch.path("big.bin"), 64);
    let remote = w.scratch.path("remote");
    std::fs::create_dir_all(&remote).unwrap();
    let template = w.template(
        "",
        &format!(
            "[[provisioner]]\ntype = \"file\"\nsource = \"big.bin\"\ndestination = \"{}/big.bin\"\n",
            remote.display()
        ),
    );
    let child = w.spawn_build(&template);
    let arriving = wait_until(Duration::from_secs(90), Duration::from_millis(50), || {
        partial_size(&remote, "big.bin") > 4 << 20
    });
    assert!(arriving, "the upload never got under way");
    (child, remote)
}

fn signal_a_slow_upload(signal: i32) {
    let mut w = World::new();
    let baseline = w.snapshot_baseline();
    let relay = Relay::start(w.sshd.port, 5_000_000, 300);
    w.ssh_port = relay.port;
    let (child, remote) = start_a_slow_upload(&mut w);
    let sent = Instant::now();
    send_signal(&child, signal);
    let out = wait_output(child, Duration::from_secs(60));
    let took = sent.elapsed();
    let log = format!("exited {took:?} after the signal\n{}", describe(&out));
    eprintln!("exited {took:?} after the signal");
    assert_eq!(out.status.code(), Some(130), "{log}");
    assert!(took < Duration::from_secs(2), "{log}");
    assert_eq!(
        files_like(&remote, "big.bin"),
        Vec::<String>::new(),
        "{log}"
    );
    w.assert_clean(&baseline, &log);
    assert_eq!(w.manifest()["builds"][0]["outcome"], "cancelled");
}

#[test]
fn sigterm_during_a_slow_upload_stops_it_and_leaves_nothing() {
    signal_a_slow_upload(libc::SIGTERM);
}

#[test]
fn sigint_during_a_slow_upload_stops_it_and_leaves_nothing() {
    signal_a_slow_upload(libc::SIGINT);
}

#[test]
fn a_connection_lost_mid_upload_is_named_and_cleaned_up() {
    let mut w = World::new();
    let baseline = w.snapshot_baseline();
    let relay = Relay::start(w.sshd.port, 5_000_000, 300);
    w.ssh_port = relay.port;
    let (child, remote) = start_a_slow_upload(&mut w);
    // The session processes of the build's connection are children of the
    // listener; killing them is what a crashed sshd or a rebooted host does.
    let sessions = common::children_of(w.sshd.pid());
    assert!(!sessions.is_empty(), "no sshd session serves the build");
    for pid in sessions {
        // SAFETY: kill(2) on sshd session processes this test's sshd started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let out = wait_output(child, Duration::from_secs(60));
    let log = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stderr = text(&out.stderr);
    let expected = format!(
        "error: build `aws`: step \"provision\" failed: provisioner 1 (file, {}:21): the SSH connection to 127.0.0.1:{} was lost during upload {} to {}/big.bin\n",
        w.scratch.path("template.toml").display(),
        relay.port,
        w.scratch.path("big.bin").display(),
        remote.display()
    );
    assert!(stderr.ends_with(&expected), "{expected}\n{log}");
    assert_eq!(
        files_like(&remote, "big.bin"),
        Vec::<String>::new(),
        "{log}"
    );
    w.assert_clean(&baseline, &log);
}
