//! The errors the command line reports, each with its exit code.

use crate::template::Diagnostic;

/// Documented exit codes.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const BUILD_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    /// Every problem found in the templates; already located.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    #[error("{0}")]
    BuildFailed(String),
    #[error("interrupted; cleanup finished")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Invalid(_) => exit::USAGE,
            Error::BuildFailed(_) => exit::BUILD_FAILED,
            Error::Interrupted => exit::INTERRUPTED,
        }
    }
}

fn render_diagnostics(diags: &[Diagnostic]) -> String {
    let mut out = diags
        .iter()
        .map(|d| format!("error: {d}"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let n = diags.len();
    out.push_str(&format!(
        "\n\n{n} error{} found",
        if n == 1 { "" } else { "s" }
    ));
    out
}
