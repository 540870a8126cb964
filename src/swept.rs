//! What `imgbuild gc` did with each thing a killed build left, wherever it
//! was found: an EC2 region or this machine's cache.

/// What became of one stray.
#[derive(Debug, Clone)]
pub struct Swept {
    /// An AWS region, or `local` for this machine.
    pub place: String,
    pub resource: &'static str,
    pub id: String,
    pub build_id: String,
    /// An image's snapshots, which go with it.
    pub snapshots: Vec<String>,
    pub action: SweptAction,
    /// The commands that remove it by hand.
    pub commands: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum SweptAction {
    Kept(String),
    WouldRemove,
    Removed,
    Failed(String),
}

/// Why a stray younger than `--older-than` is kept, wherever it is.
pub fn not_old_enough(made: time::OffsetDateTime) -> String {
    use time::format_description::well_known::Rfc3339;
    let made = made.replace_nanosecond(0).unwrap_or(made);
    let at = made.format(&Rfc3339).unwrap_or_else(|_| made.to_string());
    format!("made {at}, not older than --older-than")
}
