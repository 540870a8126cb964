//! `type = "file"`: upload or download files and folders. Folder paths follow
//! rsync: `dir/` copies the folder's contents, `dir` copies the folder itself.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use crate::communicator::{SshError, base_name};
use crate::template::Provisioner;
use crate::template::check::Checker;

use super::{After, Context, ProvisionError, ProvisionerConfig, ProvisionerSchema, progress};

/// `type = "file"`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub source: Option<String>,
    pub sources: Option<Vec<String>>,
    pub content: Option<String>,
    pub destination: String,
    #[serde(default)]
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Upload,
    Download,
}

#[async_trait]
impl ProvisionerConfig for FileConfig {
    fn type_name(&self) -> &'static str {
        Self::TYPE
    }

    fn local_inputs(&self) -> Vec<&str> {
        match self.direction {
            Direction::Upload => self
                .source
                .iter()
                .chain(self.sources.iter().flatten())
                .map(String::as_str)
                .collect(),
            Direction::Download => Vec::new(),
        }
    }

    fn summary(&self) -> String {
        let from = match (&self.source, &self.sources) {
            (Some(s), _) => s.clone(),
            (_, Some(list)) => list.join(", "),
            _ => "inline content".to_string(),
        };
        match self.direction {
            Direction::Upload => format!("file: {from} -> {}", self.destination),
            Direction::Download => format!("file: {} <- {from} (download)", self.destination),
        }
    }

    async fn run(&self, p: &Provisioner, cx: &Context<'_>) -> Result<After, ProvisionError> {
        match p.common.timeout {
            Some(limit) => tokio::time::timeout(limit.0, run(self, cx))
                .await
                .unwrap_or(Err(ProvisionError::Ssh(SshError::TimedOut(limit.0)))),
            None => run(self, cx).await,
        }
    }
}

impl ProvisionerSchema for FileConfig {
    const TYPE: &'static str = "file";

    fn check(&self, checker: &mut Checker<'_>) {
        let given = [
            self.source.is_some(),
            self.sources.is_some(),
            self.content.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            1 => {}
            0 => {
                checker.error(
                    "",
                    "a file provisioner needs one of `source`, `sources` or `content`",
                );
            }
            _ => {
                checker.error(
                    "",
                    "a file provisioner takes only one of `source`, `sources` or `content`",
                );
            }
        }
        if self.direction == Direction::Download {
            if self.content.is_some() {
                checker.error(
                    "content",
                    "`content` only makes sense with `direction = \"upload\"`",
                );
            }
            return;
        }
        if let Some(src) = &self.source {
            checker.local_file(&checker.base.key("source"), src);
        }
        for (i, src) in self.sources.iter().flatten().enumerate() {
            checker.local_file(&checker.base.key("sources").index(i), src);
        }
    }
}

/// Where one source lands, given the destination and how many sources there are.
fn target(destination: &str, source: &str, into_folder: bool) -> String {
    if into_folder || destination.ends_with('/') {
        format!(
            "{}/{}",
            destination.trim_end_matches('/'),
            base_name(source)
        )
    } else {
        destination.to_string()
    }
}

async fn run(c: &FileConfig, cx: &Context<'_>) -> Result<After, ProvisionError> {
    let destination = cx.scope.expand(&c.destination)?;
    if let Some(content) = &c.content {
        let content = cx.scope.expand(content)?;
        cx.comm
            .upload_bytes(content.into_bytes(), &destination, 0o644)
            .await?;
        return Ok(After::Connected);
    }
    let sources = cx.scope.expand_all(
        &c.source
            .iter()
            .chain(c.sources.iter().flatten())
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    let many = sources.len() > 1;
    for source in &sources {
        match c.direction {
            Direction::Upload => upload(cx, source, &destination, many).await?,
            Direction::Download => download(cx, source, &destination, many).await?,
        }
    }
    Ok(After::Connected)
}

async fn upload(
    cx: &Context<'_>,
    source: &str,
    destination: &str,
    many: bool,
) -> Result<(), ProvisionError> {
    let local = cx.template_dir.join(source);
    let meta = std::fs::metadata(&local).map_err(|e| ProvisionError::Local {
        context: format!("cannot read {}", local.display()),
        source: e,
    })?;
    let label = format!("upload {source}");
    if meta.is_dir() {
        let remote = if source.ends_with('/') {
            destination.to_string()
        } else {
            format!(
                "{}/{}",
                destination.trim_end_matches('/'),
                base_name(source)
            )
        };
        cx.events
            .info(format!("uploading folder {} to {remote}", local.display()));
        cx.comm
            .upload_dir(&local, &remote, progress(cx.events, label))
            .await?;
    } else {
        let remote = target(destination, source, many);
        cx.events
            .info(format!("uploading {} to {remote}", local.display()));
        cx.comm
            .upload_file(&local, &remote, progress(cx.events, label))
            .await?;
    }
    Ok(())
}

async fn download(
    cx: &Context<'_>,
    source: &str,
    destination: &str,
    many: bool,
) -> Result<(), ProvisionError> {
    let local_dest = cx.template_dir.join(destination);
    let label = format!("download {source}");
    if cx.comm.is_remote_dir(source).await? {
        let local = if source.ends_with('/') {
            local_dest
        } else {
            local_dest.join(base_name(source))
        };
        cx.events.info(format!(
            "downloading folder {source} to {}",
            local.display()
        ));
        cx.comm
            .download_dir(source, &local, progress(cx.events, label))
            .await?;
    } else {
        let into_folder = many || destination.ends_with('/') || local_dest.is_dir();
        let local: PathBuf = if into_folder {
            local_dest.join(base_name(source))
        } else {
            local_dest
        };
        create_parent(&local)?;
        cx.events
            .info(format!("downloading {source} to {}", local.display()));
        cx.comm
            .download_file(source, &local, progress(cx.events, label))
            .await?;
    }
    Ok(())
}

fn create_parent(path: &Path) -> Result<(), ProvisionError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| ProvisionError::Local {
                context: format!("cannot create {}", parent.display()),
                source: e,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_targets_follow_the_destination_shape() {
        assert_eq!(
            target("/etc/httpd.conf", "conf/a.conf", false),
            "/etc/httpd.conf"
        );
        assert_eq!(
            target("/etc/httpd/", "conf/a.conf", false),
            "/etc/httpd/a.conf"
        );
        assert_eq!(
            target("/etc/httpd", "conf/a.conf", true),
            "/etc/httpd/a.conf"
        );
    }
}
