//! The programs a local build will run, checked before its first slow step:
//! a missing or broken one fails the build at once, naming every such tool
//! and its package, instead of after a minute of bootstrapping.

use std::time::Duration;

use tokio::process::Command;

use super::bootstrap;
use crate::template::sources::QemuConfig;

/// A program the build runs, the call that proves it works, and the Debian
/// package that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub version_arg: &'static str,
    pub package: &'static str,
}

const fn tool(program: &'static str, version_arg: &'static str, package: &'static str) -> Tool {
    Tool {
        program,
        version_arg,
        package,
    }
}

const QEMU_IMG: Tool = tool("qemu-img", "--version", "qemu-utils");
const QEMU_SYSTEM: Tool = tool("qemu-system-x86_64", "--version", "qemu-system-x86");
const MMDEBSTRAP: Tool = tool("mmdebstrap", "--version", "mmdebstrap");
const SFDISK: Tool = tool("sfdisk", "--version", "fdisk");
const MKFS_EXT4: Tool = tool("mkfs.ext4", "-V", "e2fsprogs");
const SUDO: Tool = tool("sudo", "--version", "sudo");
const GENISOIMAGE: Tool = tool("genisoimage", "--version", "genisoimage");

/// A version call that takes longer than this counts as broken.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// The tools a build of `config` will call. Bootstrapping tools are needed
/// only when the base is not cached yet; `sudo` only when not root.
pub fn needed(config: &QemuConfig, root: bool) -> Vec<Tool> {
    let mut tools = vec![QEMU_IMG, QEMU_SYSTEM];
    match &config.bootstrap {
        Some(cfg) if !bootstrap::is_cached(cfg) => {
            tools.extend([MMDEBSTRAP, SFDISK, MKFS_EXT4]);
            if !root {
                tools.push(SUDO);
            }
        }
        Some(_) => {}
        // A cloud image gets its SSH key through a cloud-init seed ISO.
        None => tools.push(GENISOIMAGE),
    }
    tools
}

/// Runs every tool's version call at once; fails naming each one that is
/// missing or does not run, with the packages that provide them.
pub async fn check(tools: &[Tool]) -> Result<(), String> {
    let mut probes = tokio::task::JoinSet::new();
    for (i, t) in tools.iter().copied().enumerate() {
        probes.spawn(async move { (i, t, probe(&t).await) });
    }
    let mut broken: Vec<(usize, Tool, String)> = Vec::new();
    while let Some(done) = probes.join_next().await {
        let (i, t, result) = done.map_err(|e| format!("checking tools: {e}"))?;
        if let Err(why) = result {
            broken.push((i, t, why));
        }
    }
    if broken.is_empty() {
        return Ok(());
    }
    broken.sort_by_key(|(i, _, _)| *i);
    let broken: Vec<(&Tool, String)> = broken.iter().map(|(_, t, why)| (t, why.clone())).collect();
    Err(describe(&broken))
}

fn describe(broken: &[(&Tool, String)]) -> String {
    let lines: Vec<String> = broken
        .iter()
        .map(|(t, why)| format!("  {} (package {}): {why}", t.program, t.package))
        .collect();
    let mut packages: Vec<&str> = broken.iter().map(|(t, _)| t.package).collect();
    packages.dedup();
    format!(
        "{} this build needs {} missing or broken:\n{}\nrun scripts/setup, or install them: apt-get install {}",
        if broken.len() == 1 { "a tool" } else { "tools" },
        if broken.len() == 1 { "is" } else { "are" },
        lines.join("\n"),
        packages.join(" ")
    )
}

async fn probe(t: &Tool) -> Result<(), String> {
    let run = Command::new(t.program)
        .arg(t.version_arg)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(PROBE_LIMIT, run).await {
        Err(_) => return Err(format!("`{} {}` did not answer", t.program, t.version_arg)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("not found".into());
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default().trim();
    Err(format!(
        "`{} {}` failed ({}){}",
        t.program,
        t.version_arg,
        out.status,
        if first.is_empty() {
            String::new()
        } else {
            format!(": {first}")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_image_needs_qemu_and_the_seed_tool() {
        let cfg = QemuConfig {
            base_image: Some("base.qcow2".into()),
            ..Default::default()
        };
        assert_eq!(needed(&cfg, true), vec![QEMU_IMG, QEMU_SYSTEM, GENISOIMAGE]);
    }

    #[test]
    fn the_message_names_every_broken_tool_and_its_package() {
        let why = describe(&[
            (&QEMU_IMG, "not found".to_string()),
            (&MMDEBSTRAP, "not found".to_string()),
        ]);
        assert_eq!(
            why,
            "tools this build needs are missing or broken:\n  qemu-img (package qemu-utils): not found\n  mmdebstrap (package mmdebstrap): not found\nrun scripts/setup, or install them: apt-get install qemu-utils mmdebstrap"
        );
    }
}
