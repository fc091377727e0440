//! Rendering for people (text) and programs (JSON).

use std::io::Write;

use serde::Serialize;

use crate::Format;

/// Where and how results are printed.
#[derive(Clone)]
pub struct Output {
    pub format: Format,
    pub quiet: bool,
}

impl Output {
    pub fn new(format: Format, quiet: bool) -> Self {
        Output { format, quiet }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints a JSON document on stdout.
    pub fn print_json<T: Serialize>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(s) => self.line(&s),
            Err(e) => eprintln!("error: cannot render JSON: {e}"),
        }
    }

    /// A line on stdout.
    pub fn line(&self, s: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}");
    }

    /// A line on stdout unless `--quiet`.
    pub fn info(&self, s: &str) {
        if !self.quiet {
            self.line(s);
        }
    }

    /// An error for people on stderr; with `--output json`, also a JSON object on stdout.
    pub fn error(&self, e: &crate::policy_cmd::CliError) {
        if self.json() {
            self.print_json(&serde_json::json!({ "error": e.to_string(), "diagnostics": e.diagnostics() }));
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "error: {e}");
    }

    /// A plain error message (stderr; with `--output json`, also on stdout),
    /// with the gateway's stable error code when it gave one (`error[not_found]: ...`,
    /// `{"error": ..., "code": "not_found"}`).
    pub fn message_error(&self, message: &str, code: Option<&str>) {
        if self.json() {
            let mut doc = serde_json::json!({ "error": message });
            if let Some(code) = code {
                doc["code"] = code.into();
            }
            self.print_json(&doc);
        }
        let mut err = std::io::stderr().lock();
        let _ = match code {
            Some(code) => writeln!(err, "error[{code}]: {message}"),
            None => writeln!(err, "error: {message}"),
        };
    }
}
