//! `validate --junit FILE`: a JUnit XML report, one test suite per template
//! and one test case per source (plus one for the template's own settings
//! and provisioners), so a merge request's test widget names each problem.

use quick_xml::escape::escape;

use super::{Checked, located};

pub fn render(results: &[Checked]) -> String {
    let mut suites = String::new();
    let (mut tests, mut failures) = (0, 0);
    for checked in results {
        let file = checked.file.display().to_string();
        let mut cases: Vec<(String, Vec<String>)> = vec![("template".into(), Vec::new())];
        cases.extend(
            checked
                .sources
                .iter()
                .map(|s| (format!("source {} ({})", s.name, s.kind), Vec::new())),
        );
        for problem in &checked.problems {
            let case = checked
                .source_at(problem.line)
                .and_then(|s| checked.sources.iter().position(|x| x == s))
                .map_or(0, |i| i + 1);
            cases[case].1.push(located(problem));
        }
        let failed = cases.iter().filter(|(_, p)| !p.is_empty()).count();
        tests += cases.len();
        failures += failed;
        suites.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">\n",
            escape(&file),
            cases.len()
        ));
        for (name, problems) in &cases {
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                escape(&file),
                escape(name)
            );
            match problems.first() {
                None => suites.push_str(&format!("{open}/>\n")),
                Some(first) => suites.push_str(&format!(
                    "{open}>\n      <failure type=\"validation\" message=\"{}\">{}</failure>\n    </testcase>\n",
                    escape(first),
                    escape(problems.join("\n"))
                )),
            }
        }
        suites.push_str("  </testsuite>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"imgbuild validate\" tests=\"{tests}\" failures=\"{failures}\">\n{suites}</testsuites>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{TWO_SOURCES, checked};

    #[test]
    fn one_case_per_source_and_each_problem_under_its_source() {
        let report = render(&[checked(
            TWO_SOURCES,
            vec![
                (6, "invalid memory `1`; expected at least 256 <MiB>"),
                (13, "unknown key `inlne`"),
                (13, "second problem"),
            ],
        )]);
        assert_eq!(
            report,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="imgbuild validate" tests="3" failures="2">
  <testsuite name="t.toml" tests="3" failures="2">
    <testcase classname="t.toml" name="template">
      <failure type="validation" message="t.toml:13:1: unknown key `inlne`">t.toml:13:1: unknown key `inlne`
t.toml:13:1: second problem</failure>
    </testcase>
    <testcase classname="t.toml" name="source local (qemu)">
      <failure type="validation" message="t.toml:6:1: invalid memory `1`; expected at least 256 &lt;MiB&gt;">t.toml:6:1: invalid memory `1`; expected at least 256 &lt;MiB&gt;</failure>
    </testcase>
    <testcase classname="t.toml" name="source aws (amazon-ebs)"/>
  </testsuite>
</testsuites>
"#
        );
    }
}
