//! Errors of loading a policy: every problem of a file, each with its position.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::yaml::Pos;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub line: u32,
    pub column: u32,
    /// Dotted path of the offending key, e.g. `network_policies.github.endpoints[0].host`;
    /// empty for the document itself.
    pub key: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(pos: Pos, key: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic { line: pos.line, column: pos.column, key: key.into(), message: message.into() }
    }

    pub fn pos(&self) -> Pos {
        Pos { line: self.line, column: self.column }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.line, self.column, self.key, self.message)
        }
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read policy file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_invalid(file, diagnostics))]
    Invalid { file: String, diagnostics: Vec<Diagnostic> },
}

impl LoadError {
    /// The positioned problems, when the file was read but is not a valid policy.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            LoadError::Invalid { diagnostics, .. } => diagnostics,
            LoadError::Read { .. } => &[],
        }
    }
}

fn render_invalid(file: &str, diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(|d| format!("{file}:{d}")).collect();
    lines.join("\n")
}
