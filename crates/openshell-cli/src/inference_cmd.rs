//! `openshell provider ...` and `openshell inference ...`: the privacy router's
//! providers (credentials kept by the gateway, never printed) and its route.

use clap::Subcommand;
use openshell_gateway_api::proto::{Request, Response};
use serde_json::json;

use crate::output::Output;
use crate::sandbox_cmd::{SandboxCmdError, age, call, fail};

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Register a model provider and its credential with the gateway.
    Create {
        /// The provider's name.
        #[arg(long)]
        name: String,
        /// openai, anthropic or openai-compatible.
        #[arg(long = "type", value_name = "TYPE")]
        kind: String,
        /// The API root (defaults: https://api.openai.com/v1, https://api.anthropic.com;
        /// required for openai-compatible, e.g. http://10.0.0.5:8000/v1).
        #[arg(long)]
        base_url: Option<String>,
        /// The credential's name: its value is read from the environment variable
        /// NAME or, when NAME is not set, from one line of stdin (not echoed on a
        /// terminal). `NAME=VALUE` is refused: a value on a command line is visible
        /// to every user in `ps` and stays in shell history.
        #[arg(long, value_name = "NAME")]
        credential: String,
    },
    /// List providers (never their credentials).
    List,
    /// Show one provider.
    Get { name: String },
    /// Remove a provider (not while the inference route uses it).
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum InferenceCommand {
    /// Route sandboxes' inference requests to a provider's model; running
    /// sandboxes switch at once.
    Set {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        model: String,
        /// The longest wait for the backend's next bytes (seconds).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Show the route.
    Get,
    /// Remove the route (inference requests are then answered 503).
    Delete,
}

/// Why `--credential` gave no value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "--credential {name}=...: a credential's value is never taken from the command line (every user sees \
         command lines in `ps`, and shells keep them in history); give its name, `--credential {name}`, with the \
         value in the environment variable {name} or on stdin"
    )]
    OnCommandLine { name: String },
    #[error("--credential {0:?}: not a variable name (letters, digits and `_`, not starting with a digit)")]
    BadName(String),
    #[error("--credential {name}: {name} is not set, and stdin gave an empty line")]
    Empty { name: String },
    #[error("--credential {name}: {name} is not set, and reading stdin failed: {source}")]
    Stdin {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

impl CredentialError {
    /// 2 for a bad flag (as for any other), 1 when no value came.
    fn exit_code(&self) -> u8 {
        match self {
            CredentialError::OnCommandLine { .. } | CredentialError::BadName(_) => 2,
            CredentialError::Empty { .. } | CredentialError::Stdin { .. } => 1,
        }
    }
}

/// The longest credential line read from stdin.
const MAX_CREDENTIAL: u64 = 64 * 1024;

/// `--credential NAME`: the value of the variable NAME, else one line of stdin.
fn credential(name: &str) -> Result<String, CredentialError> {
    if let Some((key, _)) = name.split_once('=') {
        return Err(CredentialError::OnCommandLine { name: key.to_owned() });
    }
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(CredentialError::BadName(name.to_owned()));
    }
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => stdin_line(name),
    }
}

/// One line of stdin, without its line ending; on a terminal, prompted on stderr
/// and not echoed.
fn stdin_line(name: &str) -> Result<String, CredentialError> {
    use std::io::{BufRead, IsTerminal, Read};
    let stdin = std::io::stdin();
    let echo = stdin.is_terminal().then(|| {
        eprint!("{name} (not echoed): ");
        quiet_terminal(&stdin)
    });
    let mut line = String::new();
    let read = stdin.lock().take(MAX_CREDENTIAL).read_line(&mut line);
    if let Some(Some(saved)) = echo {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
        eprintln!();
    }
    read.map_err(|source| CredentialError::Stdin { name: name.to_owned(), source })?;
    let value = line.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(CredentialError::Empty { name: name.to_owned() });
    }
    Ok(value.to_owned())
}

/// Turns the terminal's echo off; the settings to restore.
fn quiet_terminal(stdin: &std::io::Stdin) -> Option<rustix::termios::Termios> {
    let saved = rustix::termios::tcgetattr(stdin).ok()?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &quiet).ok()?;
    Some(saved)
}

fn done(out: &Output, response: Response) {
    if let Response::Done { message } = response {
        if out.json() {
            out.print_json(&json!({"ok": true, "message": message}));
        } else {
            out.info(&message);
        }
    }
}

pub fn provider(out: &Output, cmd: ProviderCommand) -> Result<u8, SandboxCmdError> {
    match cmd {
        ProviderCommand::Create { name, kind, base_url, credential: credential_name } => {
            let credential = credential(&credential_name).map_err(|e| SandboxCmdError {
                message: e.to_string(),
                code: e.exit_code(),
                api: None,
            })?;
            let credential = openshell_gateway_api::proto::Credential(credential);
            done(out, call(&Request::ProviderCreate { name, kind, base_url, credential_name, credential })?);
        }
        ProviderCommand::List | ProviderCommand::Get { .. } => {
            let (request, one) = match cmd {
                ProviderCommand::Get { name } => (Request::ProviderGet { name }, true),
                _ => (Request::ProviderList, false),
            };
            let Response::Providers { providers } = call(&request)? else { return Err(fail("unexpected answer")) };
            if out.json() {
                match (one, providers.first()) {
                    (true, Some(p)) => out.print_json(p),
                    _ => out.print_json(&providers),
                }
                return Ok(0);
            }
            out.line(&format!("{:<20} {:<18} {:<40} {:<20} CREATED", "NAME", "TYPE", "BASE URL", "CREDENTIAL"));
            for p in &providers {
                out.line(&format!(
                    "{:<20} {:<18} {:<40} {:<20} {}",
                    p.name,
                    p.kind,
                    p.base_url,
                    format!("{} (set)", p.credential_name),
                    age(p.created)
                ));
            }
        }
        ProviderCommand::Delete { name } => done(out, call(&Request::ProviderDelete { name })?),
    }
    Ok(0)
}

pub fn inference(out: &Output, cmd: InferenceCommand) -> Result<u8, SandboxCmdError> {
    match cmd {
        InferenceCommand::Set { provider, model, timeout } => {
            done(out, call(&Request::InferenceSet { provider, model, timeout_secs: timeout })?);
        }
        InferenceCommand::Get => {
            let Response::Inference { route } = call(&Request::InferenceGet)? else {
                return Err(fail("unexpected answer"));
            };
            if out.json() {
                out.print_json(&route);
                return Ok(0);
            }
            match route {
                Some(r) => out.line(&format!(
                    "provider {} ({}, {}), model {}, idle timeout {} s",
                    r.provider, r.kind, r.base_url, r.model, r.timeout_secs
                )),
                None => out.line("no inference route is set"),
            }
        }
        InferenceCommand::Delete => done(out, call(&Request::InferenceDelete)?),
    }
    Ok(0)
}
