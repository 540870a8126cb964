//! The state of a Debian package archive, as one small request per suite
//! shows it: the header of `dists/SUITE/InRelease` (its `Date`, `Version`,
//! suite and components), read from the mirror the bootstrap uses. A new
//! point release or security update changes it, and so the fingerprint.

use std::io::Read;
use std::time::Duration;

use super::Input;

/// Enough of an InRelease file to hold its header; the checksums follow.
const HEADER_BYTES: u64 = 8192;

/// One input per suite: `SUITE` and `SUITE-security` (the Debian layout puts
/// it beside the mirror, `…/debian-security`). A mirror without the security
/// suite says so in the input; any other failure is an error.
pub async fn archive_state(mirror: &str, suite: &str) -> Result<Vec<Input>, String> {
    let mirror = mirror.trim_end_matches('/').to_string();
    let suite = suite.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let main = format!("{mirror}/dists/{suite}/InRelease");
        let security = format!("{mirror}-security/dists/{suite}-security/InRelease");
        let mut inputs = Vec::new();
        for (url, required) in [(main, true), (security, false)] {
            let header = match fetch_header(&agent, &url)? {
                Some(h) => h,
                None if required => return Err(format!("{url}: not found (404)")),
                None => "not on this mirror".to_string(),
            };
            inputs.push(Input {
                label: url,
                hash: super::sha256_hex(header),
            });
        }
        Ok(inputs)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The header fields of the InRelease at `url`, or None when it is absent.
fn fetch_header(agent: &ureq::Agent, url: &str) -> Result<Option<String>, String> {
    let mut response = agent
        .get(url)
        .header("Range", format!("bytes=0-{}", HEADER_BYTES - 1))
        .call()
        .map_err(|e| format!("{url}: {e}"))?;
    match response.status().as_u16() {
        200 | 206 => {}
        404 => return Ok(None),
        code => return Err(format!("{url}: HTTP {code}")),
    }
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(HEADER_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(Some(header_fields(&String::from_utf8_lossy(&bytes))))
}

/// The fields before the checksum lists, less `Valid-Until` (which moves on
/// a schedule whether or not anything was published).
fn header_fields(text: &str) -> String {
    text.lines()
        .skip_while(|l| !l.contains(':') || l.starts_with("-----") || l.starts_with("Hash:"))
        .take_while(|l| !matches!(*l, "MD5Sum:" | "SHA1:" | "SHA256:" | "SHA512:"))
        .filter(|l| !l.starts_with("Valid-Until:") && !l.starts_with(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN_RELEASE: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nSuite: stable\nVersion: 12.12\nCodename: bookworm\nDate: Sat, 06 Sep 2026 09:12:50 UTC\nValid-Until: Sat, 13 Sep 2026 09:12:50 UTC\nComponents: main contrib\nMD5Sum:\n 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all\n";

    #[test]
    fn keeps_the_header_without_valid_until_or_checksums() {
        assert_eq!(
            header_fields(IN_RELEASE),
            "Origin: Debian\nSuite: stable\nVersion: 12.12\nCodename: bookworm\nDate: Sat, 06 Sep 2026 09:12:50 UTC\nComponents: main contrib"
        );
        let re_signed = IN_RELEASE.replace("13 Sep", "14 Sep");
        assert_eq!(header_fields(&re_signed), header_fields(IN_RELEASE));
        let updated = IN_RELEASE.replace("06 Sep", "07 Sep");
        assert_ne!(header_fields(&updated), header_fields(IN_RELEASE));
    }
}
