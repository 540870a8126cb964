//! Hints for names a template gets wrong: a "did you mean" only for what is
//! plainly a typo of a name that exists, and a specific answer for the names
//! Packer templates use.

/// Names longer than this get no suggestion: nothing that long is a typo of
/// a setting, and comparing costs time that grows with the square of length.
const LONGEST_TYPO: usize = 64;

/// The candidate `word` is a typo of, if there is one: the same words, in
/// the same order, with one of them misspelled by a letter or two (or the
/// separators left out). `shell-local` is not a typo of `shell`, nor
/// `snapshot_users` of `snapshot_tags`: a different word is a different thing.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if word.len() > LONGEST_TYPO {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| c.len() <= LONGEST_TYPO)
        .filter_map(|c| typo_distance(word, c).map(|d| (d, c)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// How far `word` is from `candidate` when it is a typo of it.
fn typo_distance(word: &str, candidate: &str) -> Option<usize> {
    let words = |s: &str| -> Vec<String> {
        s.split(['_', '-', '.'])
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let (a, b) = (words(word), words(candidate));
    if a.concat() == b.concat() {
        return Some(0);
    }
    if a.len() != b.len() {
        return None;
    }
    let differ: Vec<(&String, &String)> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
    match differ.as_slice() {
        [(x, y)] => {
            let d = strsim::damerau_levenshtein(x, y);
            let allowed = if y.len() <= 4 { 1 } else { 2 };
            (d <= allowed).then_some(d)
        }
        _ => None,
    }
}

/// What imgbuild calls a Packer setting, or why it has no equivalent.
pub fn packer_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "environment_vars" => "imgbuild calls this `env`, a table: `env = { NAME = \"value\" }`",
        "associate_public_ip_address" => "imgbuild calls this `associate_public_ip`",
        "temporary_security_group_source_cidrs" => "imgbuild calls this `temporary_sg_cidrs`",
        "launch_block_device_mappings" => {
            "imgbuild writes each mapping as a `[[source.NAME.launch_block_device]]` table"
        }
        "ami_block_device_mappings" => {
            "imgbuild writes each mapping as a `[[source.NAME.ami_block_device]]` table"
        }
        "run_volume_tags" => "`run_tags` also tag the build instance's volumes",
        "spot_tags" => "`run_tags` also tag the spot request",
        "metadata_options" => {
            "imgbuild takes `metadata_http_tokens`, `metadata_http_put_response_hop_limit` and `metadata_tags` as settings of the source"
        }
        "communicator" => "imgbuild always connects with SSH; the `ssh_*` settings configure it",
        "ssh_pty" => "imgbuild runs scripts without a terminal; there is no `ssh_pty`",
        "security_group_filter" => "imgbuild takes security groups by id: `security_group_ids`",
        "source_ami_owners" => "give the owners in `source_ami_filter`: `owners = [\"amazon\"]`",
        "force_delete_snapshot" => {
            "`force_deregister = true` also deletes the replaced AMI's snapshots"
        }
        "skip_clean" => "imgbuild never deletes files after a build; there is nothing to skip",
        _ => return None,
    })
}

/// The help for an unknown key: Packer's name first, else a typo, else none.
pub fn unknown_key_help<'a>(
    key: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    packer_key(key)
        .map(str::to_string)
        .or_else(|| did_you_mean(key, candidates).map(|h| format!("did you mean `{h}`?")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_only() {
        let keys = [
            "ssh_username",
            "ssh_port",
            "region",
            "snapshot_tags",
            "ami_regions",
        ];
        assert_eq!(did_you_mean("ssh_usernme", keys), Some("ssh_username"));
        assert_eq!(did_you_mean("ssh_prot", keys), Some("ssh_port"));
        assert_eq!(did_you_mean("sshusername", keys), Some("ssh_username"));
        assert_eq!(did_you_mean("regoin", keys), Some("region"));
        assert_eq!(did_you_mean("flavour", keys), None);
        assert_eq!(did_you_mean("snapshot_users", keys), None);
        assert_eq!(did_you_mean("ami_groups", keys), None);
        assert_eq!(did_you_mean("shell-local", ["shell", "file"]), None);
        assert_eq!(did_you_mean("vesion", ["version", "name"]), Some("version"));
        assert_eq!(did_you_mean("whom", ["who"]), Some("who"));
    }

    #[test]
    fn packer_names_get_their_own_answer() {
        assert_eq!(
            unknown_key_help("environment_vars", ["env", "inline"]).as_deref(),
            Some("imgbuild calls this `env`, a table: `env = { NAME = \"value\" }`")
        );
        assert_eq!(
            unknown_key_help("associate_public_ip_address", ["associate_public_ip"]).as_deref(),
            Some("imgbuild calls this `associate_public_ip`")
        );
    }

    #[test]
    fn names_too_long_to_be_typos_are_not_compared() {
        // A 1 MiB key is not compared at all (comparing costs its length
        // squared); the bound is the rule, so it is what is tested.
        let huge = "k".repeat(1 << 20);
        assert_eq!(did_you_mean(&huge, ["ssh_username"; 100]), None);
        let long = format!("ssh_username{}", "x".repeat(LONGEST_TYPO));
        assert_eq!(did_you_mean(&long, ["ssh_username"]), None);
    }
}
