//! The shapes users write in a template, one struct per table. These are
//! plain data: loading, checking and expanding them happens elsewhere.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the human way: "90s", "5m", "1h30m".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration `{text}` ({e}); write e.g. \"30s\", \"5m\" or \"1h\""
                ))
            })
    }
}

/// Written back as the user would write it, e.g. for fingerprints.
impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A port: an integer, or a string that expands to one at build time
/// (`"${var.ssh_port}"`); an empty expansion means "the builder's default".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortValue(pub String);

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        if text.contains("${") || text.parse::<u16>().is_ok_and(|p| p > 0) {
            Ok(PortValue(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid port `{text}`; expected 1-65535"
            )))
        }
    }
}

/// How to reach a machine over SSH; accepted on every source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    pub ssh_username: Option<String>,
    pub ssh_port: Option<PortValue>,
    /// Overrides the address the builder would connect to (tunnels, private networks).
    pub ssh_host: Option<String>,
    pub ssh_private_key_file: Option<String>,
    pub ssh_timeout: Option<HumanDuration>,
    /// Pins the host key (`SHA256:…` as printed by `ssh-keygen -lf`).
    pub ssh_host_key_fingerprint: Option<String>,
    pub ssh_keepalive_interval: Option<HumanDuration>,
    pub ssh_bastion_host: Option<String>,
    pub ssh_bastion_port: Option<u16>,
    pub ssh_bastion_username: Option<String>,
    pub ssh_bastion_private_key_file: Option<String>,
}

/// Keys every provisioner accepts, whatever its type.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionerCommon {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub only: Vec<String>,
    #[serde(default)]
    pub except: Vec<String>,
    pub pause_before: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    #[serde(default)]
    pub max_retries: u32,
}

/// `type = "ssh"`: an existing host, provisioned in place; no image is made.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshHostConfig {}
