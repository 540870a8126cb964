//! `type = "qemu"`: boot a copy-on-write overlay of a base image in QEMU,
//! provision it over SSH forwarded to 127.0.0.1, shut it down cleanly, and
//! write the flattened image under `output/`.

mod accel;
mod base;
mod bootstrap;
mod console;
mod family;
mod machine;
mod output;
mod processes;
mod store;
mod sweep;
mod tools;
mod wait_ssh;
mod workdir;

pub use sweep::sweep;

pub use store::image_store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::steps::Provision;
use super::{BuildContext, HasBuild, temporary_key};
use crate::communicator::Credential;
use crate::events::{Artifact, Leftover, Outcome};
use crate::family::FamilyImage;
use crate::fingerprint::Fingerprint;
use crate::pipeline::{self, Ending, OnError, RunOptions, RunReport, Step, StepError};
use crate::template::sources::QemuConfig;

use base::{Base, BaseKind};
use machine::{Boot, Machine, MachineSpec};
use output::OutputPaths;
use wait_ssh::WaitForSsh;

const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(120);

pub struct QemuContext {
    build: BuildContext,
    config: QemuConfig,
    base: Option<Base>,
    /// Overlay, seed and QMP socket, locked while the build lives.
    work: Option<workdir::WorkDir>,
    overlay: Option<PathBuf>,
    seed: Option<PathBuf>,
    machine: Option<Machine>,
    /// Kept after the build: the first place to look when boot or SSH fails.
    console_log: PathBuf,
    key: (Arc<str>, String),
    output: OutputPaths,
    /// Earlier images of this name and version in the output folders.
    family: Vec<FamilyImage>,
    fingerprint: Option<Fingerprint>,
    /// `--if-changed` found this image up to date: no new one is made.
    reuse: Option<FamilyImage>,
}

impl HasBuild for QemuContext {
    fn build(&mut self) -> &mut BuildContext {
        &mut self.build
    }
}

/// The fingerprint part for the base this source resolves to today.
pub async fn fingerprint_base(
    config: &QemuConfig,
    template: &crate::template::Template,
    scope: &crate::template::Scope,
) -> Result<crate::fingerprint::Part, String> {
    family::base_part(config, template, scope).await
}

pub async fn run(
    build: BuildContext,
    config: QemuConfig,
    opts: &RunOptions,
) -> (RunReport, BuildContext) {
    let (private, public) = temporary_key(&format!("imgbuild-{}", build.build_id));
    let layout = family::Layout::new(&build.template, &config);
    // Build 1's paths until the output step reserves this build's number.
    let mut build = build;
    let output = match layout.paths(&mut build.scope, 1) {
        Ok(paths) => paths,
        Err(e) => return (pipeline::failed_before_start("prepare", e), build),
    };
    let console_log = base::cache_dir().join("logs").join(format!(
        "{}-{}.console.log",
        build.source.name, build.build_id
    ));
    let mut ctx = QemuContext {
        build,
        config,
        base: None,
        work: None,
        overlay: None,
        seed: None,
        machine: None,
        console_log,
        key: (private.into(), public),
        output,
        family: Vec::new(),
        fingerprint: None,
        reuse: None,
    };
    // Nothing is started until the fingerprint says a build is needed.
    let check: Vec<Box<dyn Step<QemuContext>>> = vec![Box::new(family::CheckChanged {
        layout: family::Layout::new(&ctx.build.template, &ctx.config),
    })];
    let decided = pipeline::run(check, &mut ctx, opts).await;
    if decided.outcome != Outcome::Succeeded {
        return (decided, ctx.build);
    }
    if let (Some(image), Some(fp)) = (&ctx.reuse, &ctx.fingerprint) {
        family::record_reuse(&mut ctx.build, image, fp);
        return (decided, ctx.build);
    }
    let steps: Vec<Box<dyn Step<QemuContext>>> = vec![
        Box::new(CheckTools),
        Box::new(ReserveOutput {
            layout,
            created: Vec::new(),
            reserved: None,
        }),
        Box::new(PrepareBase),
        Box::new(CreateOverlay),
        Box::new(StartMachine),
        Box::new(WaitForSsh),
        Box::new(Provision),
        Box::new(super::packages::CollectPackages),
        Box::new(Shutdown),
        Box::new(ExportImage { written: false }),
    ];
    let report = decided.followed_by(pipeline::run(steps, &mut ctx, opts).await);
    if report.outcome != Outcome::Succeeded && opts.on_error == OnError::Abort {
        // Listed as kept (the overlay holds the failed machine's disk): keep it.
        if let Some(work) = ctx.work.take() {
            let _kept_path = work.keep();
        }
    }
    (report, ctx.build)
}

fn failed(e: impl std::fmt::Display) -> StepError {
    StepError::failed(e)
}

/// Fails at once when a program the build will run is missing or broken,
/// rather than after the slow steps before its first use.
struct CheckTools;

#[async_trait]
impl Step<QemuContext> for CheckTools {
    fn name(&self) -> &'static str {
        "check tools"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        tools::check(&tools::needed(&ctx.config, root))
            .await
            .map_err(failed)
    }
}

/// Takes the next build number and reserves its output name (never an
/// existing image's), creating the output folder.
struct ReserveOutput {
    layout: family::Layout,
    created: Vec<PathBuf>,
    reserved: Option<PathBuf>,
}

#[async_trait]
impl Step<QemuContext> for ReserveOutput {
    fn name(&self) -> &'static str {
        "prepare output"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        // Remember which folders this build made, to remove only those on failure.
        self.created = family::reserve(ctx, &self.layout).map_err(failed)?;
        self.reserved = Some(ctx.output.partial());
        ctx.build.events.info(format!(
            "this is build {} of {} {}: {}",
            ctx.build
                .scope
                .text("image.build")
                .as_deref()
                .unwrap_or("?"),
            ctx.build.template.name,
            ctx.build.template.version,
            ctx.output.image.display()
        ));
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut QemuContext, ending: Ending) -> Vec<Leftover> {
        if !ending.keep_outputs() {
            if let Some(partial) = &self.reserved {
                let _ = std::fs::remove_file(partial);
            }
            for dir in &self.created {
                let _ = std::fs::remove_dir(dir);
            }
        }
        let _ = ctx;
        Vec::new()
    }

    fn made(&self, _: &QemuContext) -> Vec<Leftover> {
        // The outermost folder this build created holds all the others.
        self.created
            .last()
            .map(|dir| Leftover {
                resource: "output folder".into(),
                id: dir.display().to_string(),
                reason: String::new(),
                remove_with: format!("rm -r {}", dir.display()),
            })
            .into_iter()
            .collect()
    }
}

/// Finds, downloads or bootstraps the base image.
struct PrepareBase;

#[async_trait]
impl Step<QemuContext> for PrepareBase {
    fn name(&self) -> &'static str {
        "prepare base image"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        let b = &ctx.build;
        let base = match (
            &ctx.config.base_image,
            &ctx.config.base_url,
            &ctx.config.bootstrap,
        ) {
            (Some(path), _, _) => {
                let path = b.scope.expand(path).map_err(failed)?;
                base::local(&b.template.dir().join(path)).await
            }
            (_, Some(url), _) => {
                let url = b.scope.expand(url).map_err(failed)?;
                base::download(
                    &url,
                    ctx.config.sha256.as_deref().unwrap_or_default(),
                    &b.events,
                )
                .await
            }
            (_, _, Some(cfg)) => bootstrap::base(cfg, &b.events).await,
            _ => Err("no base image configured".to_string()),
        }
        .map_err(failed)?;
        ctx.build.scope.set("source.id", base.id.clone());
        ctx.build
            .scope
            .set("source.image", base.disk.display().to_string());
        ctx.build
            .manifest
            .insert("base_id".into(), base.id.clone().into());
        ctx.base = Some(base);
        Ok(())
    }
}

/// A copy-on-write overlay on the base (the base is never written), and the
/// cloud-init seed for cloud images.
struct CreateOverlay;

#[async_trait]
impl Step<QemuContext> for CreateOverlay {
    fn name(&self) -> &'static str {
        "create overlay"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        let base = ctx.base.clone().ok_or_else(|| failed("no base image"))?;
        let work = workdir::WorkDir::create(&ctx.build.build_id).map_err(|e| {
            failed(format!(
                "cannot make a work folder under {}: {e}",
                workdir::root().display()
            ))
        })?;
        let overlay = work.path().join("overlay.qcow2");
        let base_path = std::fs::canonicalize(&base.disk)
            .map_err(|e| failed(format!("{}: {e}", base.disk.display())))?;
        let mut args = vec![
            "create".to_string(),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            "-F".into(),
            base.format.clone(),
            "-b".into(),
            base_path.display().to_string(),
            overlay.display().to_string(),
        ];
        if let Some(size) = &ctx.config.disk_size {
            args.push(size.clone());
        }
        run_tool("qemu-img", &args).await.map_err(failed)?;
        if matches!(base.kind, BaseKind::CloudImage) {
            let seed = work.path().join("seed.iso");
            let user = ssh_user(ctx);
            write_seed(work.path(), &seed, &user, &ctx.key.1, &ctx.build.build_id)
                .await
                .map_err(failed)?;
            ctx.seed = Some(seed);
        }
        ctx.overlay = Some(overlay);
        ctx.work = Some(work);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut QemuContext, _: Ending) -> Vec<Leftover> {
        let Some(work) = ctx.work.take() else {
            return Vec::new();
        };
        let path = work.path().to_path_buf();
        match work.close() {
            Ok(()) => Vec::new(),
            Err(e) => vec![work_folder(&path, e.to_string())],
        }
    }

    fn made(&self, ctx: &QemuContext) -> Vec<Leftover> {
        ctx.work
            .iter()
            .map(|w| work_folder(w.path(), String::new()))
            .collect()
    }
}

fn work_folder(path: &Path, reason: String) -> Leftover {
    Leftover {
        resource: "build work folder (overlay disk, seed)".into(),
        id: path.display().to_string(),
        reason,
        remove_with: format!("rm -rf {}", path.display()),
    }
}

fn ssh_user(ctx: &QemuContext) -> String {
    ctx.build
        .source
        .ssh
        .ssh_username
        .clone()
        .unwrap_or_else(|| "root".into())
}

async fn run_tool(program: &str, args: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e} (scripts/setup installs it)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A NoCloud seed: the build user, authorised by the temporary key.
async fn write_seed(
    dir: &std::path::Path,
    seed: &std::path::Path,
    user: &str,
    public_key: &str,
    build_id: &str,
) -> Result<(), String> {
    let account = if user == "root" {
        "disable_root: false\nusers:\n  - default\n  - name: root\n    ssh_authorized_keys:\n      - KEY\n".to_string()
    } else {
        format!(
            "users:\n  - default\n  - name: {user}\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    shell: /bin/bash\n    lock_passwd: true\n    ssh_authorized_keys:\n      - KEY\n"
        )
    };
    // Without these, cloud-init reports an error and takes a minute longer.
    let user_data = format!(
        "#cloud-config\nlocale: C.UTF-8\nssh_genkeytypes: [ed25519]\nssh_pwauth: false\n{}",
        account.replace("KEY", public_key.trim())
    );
    let files = dir.join("seed");
    std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    std::fs::write(files.join("user-data"), user_data).map_err(|e| e.to_string())?;
    std::fs::write(
        files.join("meta-data"),
        format!("instance-id: imgbuild-{build_id}\nlocal-hostname: imgbuild\n"),
    )
    .map_err(|e| e.to_string())?;
    let args: Vec<String> = ["-quiet", "-output"]
        .iter()
        .map(|s| s.to_string())
        .chain([seed.display().to_string()])
        .chain(
            ["-volid", "cidata", "-joliet", "-rock"]
                .iter()
                .map(|s| s.to_string()),
        )
        .chain([
            files.join("user-data").display().to_string(),
            files.join("meta-data").display().to_string(),
        ])
        .collect();
    run_tool("genisoimage", &args).await
}

/// Starts QEMU with the overlay, SSH forwarded from a free local port.
struct StartMachine;

#[async_trait]
impl Step<QemuContext> for StartMachine {
    fn name(&self) -> &'static str {
        "boot"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        let base = ctx.base.clone().ok_or_else(|| failed("no base image"))?;
        let work = ctx
            .work
            .as_ref()
            .ok_or_else(|| failed("no overlay"))?
            .path()
            .to_path_buf();
        let (boot, probe_kernel) = match &base.kind {
            BaseKind::Bootstrapped {
                direct_boot: Some((kernel, initrd)),
            } => (
                Boot::Kernel {
                    kernel: kernel.clone(),
                    initrd: initrd.clone(),
                    append: bootstrap::BUILD_BOOT_COMMAND_LINE.into(),
                },
                Some(kernel.clone()),
            ),
            BaseKind::Bootstrapped { direct_boot: None } | BaseKind::CloudImage => {
                (Boot::Firmware, bootstrap::any_cached_kernel())
            }
        };
        let accel = accel::choose(ctx.config.accelerator, probe_kernel.as_deref(), &work)
            .await
            .map_err(failed)?;
        ctx.build
            .events
            .info(format!("accelerator: {}", accel.name()));
        if let Some(dir) = ctx.console_log.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let credentials = match base.kind {
            BaseKind::Bootstrapped { .. } => vec![(
                "ssh.authorized_keys.root".to_string(),
                ctx.key.1.trim().to_string(),
            )],
            BaseKind::CloudImage => Vec::new(),
        };
        // A port can be taken between choosing and binding it; try a few.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port().map_err(failed)?;
            let spec = MachineSpec {
                name: format!("{}-{}", ctx.build.source.name, ctx.build.build_id),
                disk: ctx.overlay.clone().ok_or_else(|| failed("no overlay"))?,
                boot: boot.clone(),
                accel,
                memory_mib: ctx.config.memory.unwrap_or(1024),
                cpus: ctx.config.cpus.unwrap_or(2),
                ssh_port: port,
                seed: ctx.seed.clone(),
                credentials: credentials.clone(),
                run_dir: work.clone(),
            };
            let machine = Machine::start(spec).map_err(|e| {
                failed(format!(
                    "cannot start qemu-system-x86_64: {e} (scripts/setup installs it)"
                ))
            })?;
            ctx.build.events.info(format!(
                "QEMU started (pid {}), SSH forwarded from 127.0.0.1:{port}; serial console: {}",
                machine.pid().unwrap_or(0),
                ctx.console_log.display()
            ));
            ctx.machine = Some(machine);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let machine = ctx.machine.as_mut().expect("just set");
            match machine.exited() {
                None => {
                    let user = ssh_user(ctx);
                    let credential = Credential::Key {
                        private_pem: ctx.key.0.clone(),
                        label: "the build's temporary key".into(),
                    };
                    let target = super::ssh_target(
                        &ctx.build.template,
                        &ctx.build.source,
                        &ctx.build.scope,
                        "127.0.0.1",
                        port,
                        &user,
                        credential,
                    )
                    .map_err(failed)?;
                    ctx.build.ssh_target = Some(target);
                    return Ok(());
                }
                Some(status) => {
                    last_error =
                        format!("QEMU exited at once ({status}): {}", machine.stderr_text());
                    ctx.machine = None;
                }
            }
        }
        Err(failed(last_error))
    }

    async fn cleanup(&mut self, ctx: &mut QemuContext, _: Ending) -> Vec<Leftover> {
        if let Some(mut machine) = ctx.machine.take() {
            let pid = machine.pid();
            machine.kill().await;
            if machine.exited().is_none() {
                return vec![Leftover {
                    resource: "QEMU process".into(),
                    id: format!("{pid:?}"),
                    reason: "it did not exit when killed".into(),
                    remove_with: format!("kill -9 {}", pid.unwrap_or(0)),
                }];
            }
        }
        Vec::new()
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Copies the serial log out of the temporary folder, where it survives the build.
pub(super) fn save_console_log(ctx: &QemuContext) {
    if let Some(work) = &ctx.work {
        let _ = std::fs::copy(work.path().join("console.log"), &ctx.console_log);
    }
}

/// Powers the guest off and waits for QEMU to exit; only a clean exit
/// leaves a consistent disk.
struct Shutdown;

#[async_trait]
impl Step<QemuContext> for Shutdown {
    fn name(&self) -> &'static str {
        "shut down"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        let limit = ctx
            .config
            .shutdown_timeout
            .map(|t| t.0)
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
        if let Some(comm) = ctx.build.comm.take() {
            // The temporary key must not stay authorised in the image (a file
            // left empty would also stop the next boot's key credential).
            let key = ctx
                .key
                .1
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let forget_key = format!(
                "f=\"$HOME/.ssh/authorized_keys\"; if [ -f \"$f\" ]; then grep -v -F '{key}' \"$f\" > \"$f.new\"; \
                 if [ -s \"$f.new\" ]; then mv \"$f.new\" \"$f\"; else rm -f \"$f\" \"$f.new\"; fi; fi"
            );
            // Every machine made from a bootstrapped image gets its own SSH
            // host key (a unit in the image makes one) and machine id.
            let reset = matches!(
                ctx.base.as_ref().map(|b| &b.kind),
                Some(BaseKind::Bootstrapped { .. })
            )
            .then_some("rm -f /etc/ssh/ssh_host_* && : > /etc/machine-id");
            let poweroff = "if [ \"$(id -u)\" -eq 0 ]; then systemctl poweroff --no-block || poweroff; \
                            else sudo -n systemctl poweroff --no-block || sudo -n poweroff; fi";
            // One command for all of it: under emulation each SSH command
            // costs the guest a new shell, about a second.
            let script = shutdown_script(&forget_key, reset, poweroff);
            let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = warnings.clone();
            // The connection may drop as the guest goes down: that is the point.
            let _ = comm
                .exec(&script, Some(Duration::from_secs(30)), move |_, line| {
                    if let Some(warning) = line.strip_prefix(SHUTDOWN_WARNING) {
                        sink.lock()
                            .expect("warnings lock")
                            .push(warning.to_string());
                    }
                })
                .await;
            for warning in warnings.lock().expect("warnings lock").drain(..) {
                ctx.build.events.warn(warning);
            }
            comm.close().await;
        }
        let machine = ctx
            .machine
            .as_mut()
            .ok_or_else(|| failed("QEMU is not running"))?;
        if machine.wait_exit(limit).await.is_none() {
            ctx.build.events.warn(format!(
                "the guest did not power off within {}; pressing the power button (ACPI)",
                humantime::format_duration(limit)
            ));
            let _ = machine.powerdown().await;
            if machine.wait_exit(Duration::from_secs(60)).await.is_none() {
                save_console_log(ctx);
                return Err(failed(format!(
                    "the guest did not shut down; its disk may be inconsistent, so no image is written (serial console: {})",
                    ctx.console_log.display()
                )));
            }
        }
        save_console_log(ctx);
        ctx.machine = None;
        Ok(())
    }
}

/// Marks a line of the shutdown script that reports a step that failed.
const SHUTDOWN_WARNING: &str = "imgbuild-shutdown-warning: ";

/// Forgets the temporary key, resets the machine's identity (when asked)
/// and powers off; a step that fails says so on a `SHUTDOWN_WARNING` line,
/// with its output, and the next steps still run.
fn shutdown_script(forget_key: &str, reset: Option<&str>, poweroff: &str) -> String {
    let step = |command: &str, what: &str| {
        format!(
            "if ! out=$( {{ {command}; }} 2>&1 ); then echo \"{SHUTDOWN_WARNING}{what}: $out\"; fi\n"
        )
    };
    let mut script = step(
        forget_key,
        "could not remove the temporary key from authorized_keys",
    );
    if let Some(reset) = reset {
        script += &step(reset, "could not reset the machine's identity");
    }
    script + poweroff + "\n"
}

/// Flattens the overlay into the versioned output image, with its checksum
/// and metadata; removes them again if the build does not succeed.
struct ExportImage {
    written: bool,
}

#[async_trait]
impl Step<QemuContext> for ExportImage {
    fn name(&self) -> &'static str {
        "write image"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        let overlay = ctx.overlay.clone().ok_or_else(|| failed("no overlay"))?;
        let out = ctx.output.clone();
        let partial = out.partial();
        self.written = true;
        run_tool(
            "qemu-img",
            &output::convert_args(&overlay, &partial, ctx.config.compression),
        )
        .await
        .map_err(failed)?;
        std::fs::rename(&partial, &out.image).map_err(failed)?;
        let image = out.image.clone();
        let sha = tokio::task::spawn_blocking(move || base::sha256_file(&image))
            .await
            .map_err(failed)?
            .map_err(failed)?;
        std::fs::write(&out.checksum, output::checksum_line(&sha, &out.image)).map_err(failed)?;
        let size = std::fs::metadata(&out.image).map_err(failed)?.len();
        let b = &ctx.build;
        let metadata = output::Metadata {
            name: b.template.name.clone(),
            version: b.template.version.clone(),
            build: b
                .scope
                .text("image.build")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            build_id: b.build_id.clone(),
            built_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            format: "qcow2",
            compression: output::compression_name(ctx.config.compression),
            sha256: sha.clone(),
            size_bytes: size,
            base_id: ctx.base.as_ref().map(|b| b.id.clone()).unwrap_or_default(),
            fingerprint: ctx.fingerprint.as_ref().map(|f| f.digest.clone()),
            fingerprint_parts: ctx.fingerprint.as_ref().map(|f| f.stored_parts()),
            git_commit: std::env::var("CI_COMMIT_SHA").ok(),
            pipeline_url: std::env::var("CI_PIPELINE_URL").ok(),
        };
        let json = serde_json::to_string_pretty(&metadata).map_err(failed)?;
        std::fs::write(&out.metadata, json + "\n").map_err(failed)?;
        if let Some(inventory) = &ctx.build.packages {
            let json = serde_json::to_string_pretty(inventory).map_err(failed)?;
            std::fs::write(&out.packages, json + "\n").map_err(failed)?;
        }
        ctx.build.events.info(format!(
            "wrote {} ({:.0} MiB, sha256 {sha})",
            out.image.display(),
            size as f64 / 1048576.0
        ));
        let b = &mut ctx.build;
        b.manifest
            .insert("image".into(), out.image.display().to_string().into());
        b.manifest.insert("sha256".into(), sha.into());
        b.artifacts.push(Artifact {
            builder: "qemu".into(),
            location: out.dir.display().to_string(),
            id: out.image.display().to_string(),
        });
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut QemuContext, ending: Ending) -> Vec<Leftover> {
        if self.written && !ending.keep_outputs() {
            let partial = ctx.output.partial();
            for file in ctx.output.files().into_iter().chain([partial.as_path()]) {
                let _ = std::fs::remove_file(file);
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_shutdown_script_reports_a_failed_step_and_still_powers_off() {
        let script = shutdown_script("echo no such file >&2; false", Some("true"), "echo off");
        assert_eq!(
            run_sh(&script),
            format!(
                "{SHUTDOWN_WARNING}could not remove the temporary key from authorized_keys: no such file\noff\n"
            )
        );
        let script = shutdown_script("true", Some("echo read-only; false"), "echo off");
        assert_eq!(
            run_sh(&script),
            format!("{SHUTDOWN_WARNING}could not reset the machine's identity: read-only\noff\n")
        );
        assert_eq!(run_sh(&shutdown_script("true", None, "echo off")), "off\n");
    }
}
