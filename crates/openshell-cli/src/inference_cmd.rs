//! `openshell provider ...` and `openshell inference ...`: the privacy router's
//! providers (credentials kept by the gateway, never printed) and its route.

use clap::Subcommand;
use openshell_gateway::proto::{Request, Response};
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
        /// KEY=VALUE, or KEY to take the value from this environment.
        #[arg(long, value_name = "KEY[=VALUE]")]
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

/// `--credential KEY[=VALUE]`: the value given, else the environment's.
fn credential(spec: &str) -> Result<(String, String), SandboxCmdError> {
    match spec.split_once('=') {
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => match std::env::var(spec) {
            Ok(v) if !v.is_empty() => Ok((spec.to_owned(), v)),
            _ => Err(fail(format!(
                "--credential {spec}: the variable {spec} is not set in this environment (or give {spec}=VALUE)"
            ))),
        },
    }
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
        ProviderCommand::Create { name, kind, base_url, credential: spec } => {
            let (credential_name, credential) = credential(&spec)?;
            let credential = openshell_gateway::Secret(credential);
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
