//! The default region, found the way the SDK would, minus the network.

/// The region the standard chain would pick without asking the network:
/// AWS_REGION, AWS_DEFAULT_REGION, then the profile's `region` in the shared
/// config (or credentials) file. The instance metadata service is left out on
/// purpose: validation never touches the network.
pub fn default_region() -> Option<String> {
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return Some(v.trim().to_string());
        }
    }
    let profile = std::env::var("AWS_PROFILE")
        .or_else(|_| std::env::var("AWS_DEFAULT_PROFILE"))
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
    let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let from_config = config
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| ini_value(&t, &[&config_section, &profile], "region"));
    from_config.or_else(|| {
        credentials
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| ini_value(&t, &[&profile], "region"))
    })
}

/// `key` in the first of `sections` of an AWS-style INI file that has it.
fn ini_value(text: &str, sections: &[&str], key: &str) -> Option<String> {
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.split_whitespace().collect::<Vec<_>>().join(" "));
            continue;
        }
        if let (Some(section), Some((k, v))) = (&current, line.split_once('='))
            && sections.contains(&section.as_str())
            && k.trim() == key
            && !v.trim().is_empty()
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_profile_region() {
        let text = "[default]\nregion = eu-west-1\n\n[profile ci]\n# comment\nregion=eu-west-3\n";
        assert_eq!(
            ini_value(text, &["profile ci", "ci"], "region").as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(
            ini_value(text, &["default"], "region").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(ini_value(text, &["profile other"], "region"), None);
    }
}
