//! `validate --codequality FILE`: GitLab's Code Quality report (a JSON array
//! in the Code Climate format), so each problem shows on the merge request's
//! diff at its line.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Checked;

#[derive(Serialize)]
struct Issue<'a> {
    description: String,
    check_name: &'static str,
    fingerprint: String,
    severity: &'static str,
    location: Location<'a>,
}

#[derive(Serialize)]
struct Location<'a> {
    path: &'a str,
    lines: Lines,
}

#[derive(Serialize)]
struct Lines {
    begin: usize,
}

pub fn render(results: &[Checked]) -> String {
    let paths: Vec<String> = results
        .iter()
        .map(|c| c.file.display().to_string())
        .collect();
    let issues: Vec<Issue> = results
        .iter()
        .zip(&paths)
        .flat_map(|(checked, path)| {
            checked.problems.iter().map(move |p| {
                let description = match &p.help {
                    Some(help) => format!("{} ({help})", p.message),
                    None => p.message.clone(),
                };
                // Stable across runs and line moves: the same problem in the
                // same file keeps its fingerprint, so GitLab can tell new from fixed.
                let fingerprint = hex::encode(Sha256::digest(format!("{path}\0{}", p.message)));
                Issue {
                    description,
                    check_name: "imgbuild-validate",
                    fingerprint,
                    severity: "major",
                    location: Location {
                        path,
                        lines: Lines { begin: p.line },
                    },
                }
            })
        })
        .collect();
    let mut json = serde_json::to_string_pretty(&issues).expect("serialisable");
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{TWO_SOURCES, checked};

    #[test]
    fn each_problem_is_an_issue_at_its_line() {
        let mut c = checked(TWO_SOURCES, vec![(6, "invalid memory `1`")]);
        c.problems[0].help = Some("use at least 256".into());
        assert_eq!(
            render(&[c]),
            r#"[
  {
    "description": "invalid memory `1` (use at least 256)",
    "check_name": "imgbuild-validate",
    "fingerprint": "2cb999e0f6db65a9163f9fb315f0d82590736ec22da3275940aa5e81b66542d4",
    "severity": "major",
    "location": {
      "path": "t.toml",
      "lines": {
        "begin": 6
      }
    }
  }
]
"#
        );
    }
}
