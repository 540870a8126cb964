//! The inventory as a CycloneDX 1.5 JSON SBOM: the image is the described
//! component, each package a component with its package URL (purl).

use serde_json::{Value, json};

use super::Inventory;

/// The SBOM of image `name` `version` (`1.2-3`), made at `timestamp` (RFC 3339).
pub fn cyclonedx(inv: &Inventory, name: &str, version: &str, timestamp: &str) -> Value {
    let components: Vec<Value> = inv
        .packages
        .iter()
        .map(|p| {
            let purl = format!(
                "pkg:{}/{}/{}@{}?arch={}",
                purl_type(&inv.manager),
                encode(&inv.os),
                encode(&p.name),
                encode(&p.version),
                encode(&p.arch)
            );
            json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "properties": [{ "name": "imgbuild:arch", "value": p.arch }],
            })
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_v4()),
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": { "components": [{
                "type": "application",
                "name": "imgbuild",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "operating-system",
                "bom-ref": format!("image:{name}@{version}"),
                "name": name,
                "version": version,
            },
        },
        "components": components,
    })
}

fn purl_type(manager: &str) -> &str {
    match manager {
        "dpkg" => "deb",
        "rpm" => "rpm",
        other => other,
    }
}

/// Percent-encodes all but the characters a purl segment may hold as they are.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"._-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn uuid_v4() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Package;

    #[test]
    fn components_carry_package_urls() {
        let inv = Inventory {
            manager: "dpkg".into(),
            os: "debian".into(),
            packages: vec![Package {
                name: "zlib1g".into(),
                version: "1:1.2.13.dfsg-1+b1".into(),
                arch: "amd64".into(),
            }],
        };
        let bom = cyclonedx(&inv, "web", "1.2-3", "2026-12-01T09:00:00Z");
        assert_eq!(bom["bomFormat"], "CycloneDX");
        assert_eq!(bom["specVersion"], "1.5");
        assert_eq!(bom["metadata"]["component"]["version"], "1.2-3");
        assert_eq!(
            bom["components"][0]["purl"],
            "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1%2Bb1?arch=amd64"
        );
        let serial = bom["serialNumber"].as_str().unwrap();
        assert_eq!(serial.len(), "urn:uuid:".len() + 36);
    }
}
