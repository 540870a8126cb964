//! What is installed on the machine an image is made from: every package's
//! name, version and architecture, read with dpkg-query (Debian, Ubuntu) or
//! rpm (Amazon Linux, RHEL and the like). Stored with the image, compared
//! with the previous build's, and written as a CycloneDX SBOM.

pub mod diff;
pub mod sbom;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// Every installed package, sorted, and the system they belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// `dpkg` or `rpm`.
    pub manager: String,
    /// `ID` of /etc/os-release (`debian`, `amzn`), for package URLs.
    pub os: String,
    pub packages: Vec<Package>,
}

/// Prints `MANAGER OS` on the first line, then `name\tversion\tarch` per
/// installed package. dpkg also lists removed packages whose configuration
/// remains; only installed ones (status `?i`) count.
pub const COMMAND: &str = r#"os=$(. /etc/os-release 2>/dev/null && echo "$ID"); \
if command -v dpkg-query >/dev/null 2>&1; then echo "dpkg ${os:-unknown}"; \
dpkg-query -W -f='${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n' | awk -F'\t' 'substr($1,2,1)=="i" {print $2"\t"$3"\t"$4}'; \
elif command -v rpm >/dev/null 2>&1; then echo "rpm ${os:-unknown}"; \
rpm -qa --qf '%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n'; \
else echo "neither dpkg-query nor rpm is installed" >&2; exit 3; fi"#;

impl Inventory {
    /// Reads what `COMMAND` printed.
    pub fn parse(output: &str) -> Result<Inventory, String> {
        let mut lines = output.lines();
        let first = lines.next().unwrap_or_default();
        let (manager, os) = first
            .split_once(' ')
            .ok_or_else(|| format!("unexpected package list header `{first}`"))?;
        let mut packages = Vec::new();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let mut fields = line.split('\t');
            match (fields.next(), fields.next(), fields.next()) {
                (Some(name), Some(version), Some(arch)) if !name.is_empty() => {
                    packages.push(Package {
                        name: name.into(),
                        version: version.into(),
                        arch: arch.into(),
                    })
                }
                _ => return Err(format!("unexpected package line `{line}`")),
            }
        }
        packages.sort();
        packages.dedup();
        Ok(Inventory {
            manager: manager.into(),
            os: os.into(),
            packages,
        })
    }

    /// The inventory a manifest's build entry records (`packages`,
    /// `package_manager`, `os`), if it has one.
    pub fn from_manifest(build: &serde_json::Value) -> Option<Inventory> {
        Some(Inventory {
            manager: build["package_manager"].as_str().unwrap_or_default().into(),
            os: build["os"].as_str().unwrap_or_default().into(),
            packages: serde_json::from_value(build.get("packages")?.clone()).ok()?,
        })
    }

    /// sha256 of the package list (name, version, architecture per line):
    /// the `imgbuild:packages-sha256` tag.
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        for p in &self.packages {
            h.update(format!("{}\t{}\t{}\n", p.name, p.version, p.arch).as_bytes());
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sorts_the_listing() {
        let inv =
            Inventory::parse("dpkg debian\nzlib1g\t1:1.2.13\tamd64\nbash\t5.2.15-2+b7\tamd64\n")
                .unwrap();
        assert_eq!((inv.manager.as_str(), inv.os.as_str()), ("dpkg", "debian"));
        assert_eq!(inv.packages[0].name, "bash");
        assert_eq!(inv.packages[1].version, "1:1.2.13");
        assert_eq!(inv.sha256().len(), 64);
        assert!(Inventory::parse("dpkg debian\nbroken line\n").is_err());
    }
}
