//! `openshell push` and `openshell pull` (the work is in `openshell-registry`).

use std::io::BufRead;
use std::path::PathBuf;

use clap::Args;
use openshell_registry::{ConnectOptions, Login, PushSource};
use serde_json::json;

use crate::Outcome;
use crate::image_cmd::{ImageCmdError, StoreArgs};
use crate::output::Output;
use crate::policy_cmd::CliError;

/// How to reach the registry.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Plain HTTP instead of HTTPS; only for a registry on loopback.
    #[arg(long)]
    pub insecure: bool,
    /// A PEM file of CA certificates to trust besides the system's.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// User name (with --password-stdin). Default: the Docker config's credentials
    /// for the registry (`auths`, `credHelpers`, `credsStore`), else none.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

impl RegistryArgs {
    pub(crate) fn options(&self) -> Result<ConnectOptions, CliError> {
        let login = match &self.username {
            Some(username) => Some(Login { username: username.clone(), password: read_password()? }),
            None => None,
        };
        Ok(ConnectOptions { insecure: self.insecure, ca_file: self.ca_file.clone(), login })
    }
}

fn read_password() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| ImageCmdError::Password(format!("reading stdin: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(ImageCmdError::Password("stdin gave an empty password".into()).into());
    }
    Ok(password)
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// An image of the store (`name[:tag]` as `image ls` shows it, or a manifest
    /// digest prefix), or an OCI layout directory or archive that `build` wrote.
    #[arg(value_name = "IMAGE|OCI_DIR")]
    pub source: String,
    /// Where to push: `host[:port]/repository[:tag]`.
    #[arg(value_name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to pull: `host[:port]/repository[:tag]` or `...@sha256:<hex>`.
    #[arg(value_name = "REF")]
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn push(out: &Output, args: &PushArgs) -> Result<Outcome, CliError> {
    let opts = args.registry.options()?;
    let store = args.store.open()?;
    let source = PushSource::from_arg(&args.source);
    let r = openshell_registry::push(&store, &source, &args.reference, &opts).map_err(ImageCmdError::from)?;
    if out.json() {
        out.print_json(&r);
    } else {
        out.info(&format!(
            "pushed {} ({}): {} blobs sent ({} bytes), {} already there",
            r.reference, r.manifest, r.uploaded, r.bytes, r.skipped
        ));
    }
    Ok(Outcome::Ok)
}

pub fn pull(out: &Output, args: &PullArgs) -> Result<Outcome, CliError> {
    let opts = args.registry.options()?;
    let store = args.store.open()?;
    let r = openshell_registry::pull(&store, &args.reference, &opts).map_err(ImageCmdError::from)?;
    if out.json() {
        out.print_json(&json!(r));
    } else {
        if !out.quiet {
            eprintln!("{} resolved to {}", r.reference, r.resolved);
        }
        out.info(&format!(
            "pulled {}:{} ({}): {} blobs downloaded ({} bytes), {} already in the store",
            r.name, r.tag, r.manifest, r.downloaded, r.bytes, r.already_present
        ));
    }
    Ok(Outcome::Ok)
}
