//! The image family on this machine: the images of one name and version in
//! the output folders, known by their metadata files. A build takes the next
//! build number and its own output folder from them, and `--if-changed`
//! reuses the newest when its fingerprint matches.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::QemuContext;
use super::bootstrap;
use super::output::OutputPaths;
use crate::builder::BuildContext;
use crate::builder::packages::PreviousPackages;
use crate::builder::rebuild;
use crate::events::Artifact;
use crate::family::{self, FamilyImage};
use crate::fingerprint::{self, Fingerprint, Input, Part};
use crate::pipeline::{Step, StepError};
use crate::template::sources::QemuConfig;
use crate::template::{Scope, Template};

/// Local images all live in one place for the decision, named so in messages.
const LOCATION: &str = "the output folders";
/// How many taken output names in a row a build skips before it gives up.
const NUMBER_ATTEMPTS: u32 = 100;

/// Where each build number's image goes: `output_directory` (default
/// `output/{name}-{version}-{build}`) holding `{name}-{version}-{build}.qcow2`.
pub struct Layout {
    written: Option<String>,
    name: String,
    version: String,
}

impl Layout {
    pub fn new(template: &Template, config: &QemuConfig) -> Layout {
        Layout {
            written: config.output_directory.clone(),
            name: template.name.clone(),
            version: template.version.clone(),
        }
    }

    /// The paths for build `number`; sets `${image.build}` in `scope`.
    pub fn paths(&self, scope: &mut Scope, number: u32) -> Result<OutputPaths, String> {
        scope.set("image.build", number.to_string());
        let dir = match &self.written {
            Some(dir) => PathBuf::from(scope.expand(dir).map_err(|e| e.to_string())?),
            None => PathBuf::from(format!("output/{}-{}-{number}", self.name, self.version)),
        };
        Ok(OutputPaths::new(dir, &self.name, &self.version, number))
    }

    /// The family's images: metadata files in the output folder and in the
    /// folders beside it (where the other build numbers' folders are).
    pub fn images(&self, first: &OutputPaths) -> Vec<FamilyImage> {
        let mut files = Vec::new();
        let parent = first
            .dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for dir in std::iter::once(first.dir.clone()).chain(subfolders(parent)) {
            files.extend(json_files(&dir));
        }
        files.sort();
        files.dedup();
        files
            .iter()
            .filter_map(|f| read_metadata(f))
            .filter(|i| i.version == self.version && i.name == self.name)
            .map(|i| i.image)
            .collect()
    }
}

fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| dir.join(e.file_name()))
        .collect()
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| dir.join(e.file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect()
}

struct Found {
    name: String,
    version: String,
    image: FamilyImage,
}

/// A metadata file written by a build (anything else is skipped).
fn read_metadata(path: &Path) -> Option<Found> {
    let text = std::fs::read_to_string(path).ok()?;
    let m: serde_json::Value = serde_json::from_str(&text).ok()?;
    let image = path.with_extension("qcow2");
    if m.get("format")?.as_str()? != "qcow2" || !image.exists() {
        return None;
    }
    let text_of = |key: &str| m.get(key).and_then(|v| v.as_str()).map(str::to_string);
    Some(Found {
        name: text_of("name")?,
        version: text_of("version")?,
        image: FamilyImage {
            location: LOCATION.into(),
            id: image.display().to_string(),
            version: text_of("version")?,
            build: m.get("build").and_then(|b| b.as_u64()).unwrap_or(0) as u32,
            built_at: text_of("built_at").and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok()),
            fingerprint: text_of("fingerprint"),
            parts: text_of("fingerprint_parts"),
        },
    })
}

/// Finds the family, takes the next build number and reserves its image
/// name: `{image}.partial` is created exclusively, so two builds at once
/// never share a number; a taken name moves on to the next number. Returns
/// the folders it created, innermost first.
pub fn reserve(ctx: &mut QemuContext, layout: &Layout) -> Result<Vec<PathBuf>, String> {
    let first = layout.paths(&mut ctx.build.scope, 1)?;
    let found = layout.images(&first);
    let mut number = family::next_build(&found);
    ctx.family = found;
    for _ in 0..NUMBER_ATTEMPTS {
        let paths = layout.paths(&mut ctx.build.scope, number)?;
        let taken = paths.files().into_iter().find(|f| f.exists());
        if let Some(taken) = taken {
            ctx.build.events.info(format!(
                "{} already exists (imgbuild never overwrites an image); taking build {}",
                taken.display(),
                number + 1
            ));
            number += 1;
            continue;
        }
        let mut missing = Vec::new();
        let mut dir = Some(paths.dir.as_path());
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            missing.push(d.to_path_buf());
            dir = d.parent();
        }
        std::fs::create_dir_all(&paths.dir)
            .map_err(|e| format!("cannot create {}: {e}", paths.dir.display()))?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(paths.partial())
        {
            Ok(_) => {
                ctx.build.manifest.insert("build".into(), number.into());
                ctx.output = paths;
                return Ok(missing);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                ctx.build.events.info(format!(
                    "another build is writing {}; taking build {}",
                    paths.image.display(),
                    number + 1
                ));
                number += 1;
            }
            Err(e) => return Err(format!("cannot create {}: {e}", paths.partial().display())),
        }
    }
    Err(format!(
        "no free build number for {} {} after {NUMBER_ATTEMPTS} tries",
        layout.name, layout.version
    ))
}

/// The inventory written beside an earlier image, if it has one.
fn previous_packages(image: &FamilyImage) -> Option<PreviousPackages> {
    let path = Path::new(&image.id).with_extension("packages.json");
    let text = std::fs::read_to_string(path).ok()?;
    Some(PreviousPackages {
        label: format!("build {} ({})", image.build, image.id),
        image: image.id.clone(),
        inventory: serde_json::from_str(&text).ok()?,
    })
}

/// The fingerprint part for the base: the local image's checksum, the
/// download's, or for a bootstrap its recipe and the archive's state.
pub async fn base_part(
    config: &QemuConfig,
    template: &Template,
    scope: &Scope,
) -> Result<Part, String> {
    if let Some(path) = &config.base_image {
        let path = template
            .dir()
            .join(scope.expand(path).map_err(|e| e.to_string())?);
        let shown = path.display().to_string();
        let sha = tokio::task::spawn_blocking(move || super::base::sha256_file(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{shown}: {e}"))?;
        return Ok(Part::new(
            "base",
            format!("base image {shown}"),
            vec![Input {
                label: shown,
                hash: sha,
            }],
        ));
    }
    if let Some(sha) = &config.sha256 {
        return Ok(Part::new(
            "base",
            "base image download",
            vec![Input {
                label: "sha256".into(),
                hash: sha.trim().to_ascii_lowercase(),
            }],
        ));
    }
    let cfg = config
        .bootstrap
        .as_ref()
        .ok_or("no base image configured")?;
    let mirror = cfg.mirror.clone().unwrap_or_else(bootstrap::host_mirror);
    let mut inputs = vec![Input {
        label: format!("bootstrap recipe from {mirror}"),
        hash: bootstrap::fingerprint(cfg, &mirror),
    }];
    inputs.extend(fingerprint::archive_state(&mirror, &cfg.suite).await?);
    Ok(Part::new(
        "archive",
        format!("package archive {} ({mirror})", cfg.suite),
        inputs,
    ))
}

/// Computes the fingerprint and, with `--if-changed`, decides whether to build.
pub struct CheckChanged {
    pub layout: Layout,
}

#[async_trait]
impl Step<QemuContext> for CheckChanged {
    fn name(&self) -> &'static str {
        "compare fingerprint"
    }

    async fn run(&mut self, ctx: &mut QemuContext) -> Result<(), StepError> {
        let first = self
            .layout
            .paths(&mut ctx.build.scope, 1)
            .map_err(StepError::failed)?;
        ctx.family = self.layout.images(&first);
        if let Some(previous) = family::newest_in(&ctx.family, LOCATION).and_then(previous_packages)
        {
            ctx.build.previous_packages = Some(previous);
        }
        let b = &ctx.build;
        let fp = match base_part(&ctx.config, &b.template, &b.scope)
            .await
            .and_then(|base| {
                fingerprint::compute(&ctx.build.template, &ctx.build.source, vec![base])
            }) {
            Ok(fp) => fp,
            Err(e) if ctx.build.rebuild.if_changed => {
                ctx.build.events.warn(format!(
                    "cannot tell whether anything changed ({e}); building"
                ));
                return Ok(());
            }
            Err(e) => {
                ctx.build
                    .events
                    .warn(format!("the image gets no fingerprint: {e}"));
                return Ok(());
            }
        };
        let reuse = rebuild::decide(&mut ctx.build, &fp, &ctx.family, &[LOCATION.to_string()]);
        ctx.reuse = reuse.and_then(|found| found.into_iter().next());
        ctx.fingerprint = Some(fp);
        Ok(())
    }
}

/// Points the build's results at the image `--if-changed` found up to date.
pub fn record_reuse(build: &mut BuildContext, image: &FamilyImage, fp: &Fingerprint) {
    let dir = Path::new(&image.id)
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    build.artifacts.push(Artifact {
        builder: "qemu".into(),
        location: dir,
        id: image.id.clone(),
    });
    let m = &mut build.manifest;
    m.insert("image".into(), image.id.clone().into());
    m.insert("build".into(), image.build.into());
    m.insert("fingerprint".into(), fp.digest.clone().into());
    m.insert("unchanged".into(), true.into());
    let mut built = serde_json::Map::new();
    built.insert(image.id.clone(), image.built_at_text().into());
    m.insert("built_at".into(), built.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_metadata_of_images_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("web-1.2-3.json");
        std::fs::write(
            &meta,
            r#"{"name":"web","version":"1.2","build":3,"format":"qcow2","built_at":"2026-11-30T10:00:00Z","fingerprint":"ab","fingerprint_parts":"base=12345678"}"#,
        )
        .unwrap();
        assert!(read_metadata(&meta).is_none(), "no image beside it");
        std::fs::write(dir.path().join("web-1.2-3.qcow2"), "").unwrap();
        let found = read_metadata(&meta).unwrap();
        assert_eq!((found.name.as_str(), found.image.build), ("web", 3));
        assert_eq!(found.image.fingerprint.as_deref(), Some("ab"));
        assert_eq!(found.image.built_at_text(), "2026-11-30T10:00:00Z");
        std::fs::write(dir.path().join("web-1.2-3.packages.json"), "[]").unwrap();
        assert!(read_metadata(&dir.path().join("web-1.2-3.packages.json")).is_none());
    }
}
