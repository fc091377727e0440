//! `openshell kubernetes manifests`: what a cluster needs to run pods through
//! openshell-runtime (`openshell-kubernetes` makes it; this prints or writes it).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use openshell_kubernetes::config::{DEFAULT_IMAGE, DEFAULT_NAMESPACE};
use openshell_kubernetes::containerd::DEFAULT_BINARY;
use openshell_kubernetes::deploy::{self, DeployFile, Difference};
use openshell_kubernetes::{Config, Flavor, node};
use serde_json::json;

use crate::Outcome;
use crate::output::Output;
use crate::policy_cmd::CliError;

#[derive(Debug, Subcommand)]
pub enum KubernetesCommand {
    /// Print the node manifests of one flavor (`kubectl apply -f -`: namespace,
    /// RBAC, the installer's ConfigMap and DaemonSet, the RuntimeClass `openshell`),
    /// or with --out write every file the repository keeps under deploy/ (both
    /// flavors, the containerd entry as files, the gateway's Helm chart).
    Manifests(ManifestsArgs),
}

#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// How the cluster's nodes run containerd: `k3s` (K3s renders containerd's
    /// config from templates) or `containerd` (a drop-in under conf.d).
    #[arg(long, value_enum, required_unless_present = "out", conflicts_with = "out")]
    flavor: Option<FlavorArg>,
    /// The installer's image: sh, coreutils, nsenter, curl and the runtime at
    /// /usr/local/bin/openshell-runtime.
    #[arg(long, value_name = "REF", default_value = DEFAULT_IMAGE)]
    image: String,
    /// The installer's namespace.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Where the runtime goes on each node (the containerd entry's BinaryName).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_BINARY)]
    runtime_path: PathBuf,
    /// Write every file into DIR (as deploy/ holds them) instead of printing.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// With --out: write nothing, exit 1 if DIR differs from what would be written.
    #[arg(long, requires = "out", conflicts_with = "flavor")]
    check: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FlavorArg {
    K3s,
    Containerd,
}

impl From<FlavorArg> for Flavor {
    fn from(flavor: FlavorArg) -> Flavor {
        match flavor {
            FlavorArg::K3s => Flavor::K3s,
            FlavorArg::Containerd => Flavor::Containerd,
        }
    }
}

pub fn kubernetes(out: &Output, cmd: &KubernetesCommand) -> Result<Outcome, CliError> {
    let KubernetesCommand::Manifests(args) = cmd;
    let config = Config::new(&args.namespace, &args.image, &args.runtime_path)?;
    match (&args.out, args.flavor) {
        (Some(dir), _) if args.check => check(out, dir, &deploy::files(&config)?),
        (Some(dir), _) => write(out, dir, &deploy::files(&config)?),
        (None, Some(flavor)) => print(out, &config, flavor.into()),
        (None, None) => Err(CliError::Missing("give --flavor (k3s or containerd), or --out DIR".to_owned())),
    }
}

/// The manifests as YAML, or with `--output json` as a `List` (which kubectl
/// applies too).
fn print(out: &Output, config: &Config, flavor: Flavor) -> Result<Outcome, CliError> {
    if out.json() {
        out.print_json(&json!({ "apiVersion": "v1", "kind": "List", "items": node::objects(config, flavor) }));
    } else {
        out.line(node::yaml(config, flavor)?.trim_end());
    }
    Ok(Outcome::Ok)
}

fn write(out: &Output, dir: &std::path::Path, files: &[DeployFile]) -> Result<Outcome, CliError> {
    deploy::write(dir, files)?;
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(&f.path)).collect();
    if out.json() {
        out.print_json(&json!({ "written": paths }));
    } else {
        for path in &paths {
            out.info(&format!("wrote {}", path.display()));
        }
    }
    Ok(Outcome::Ok)
}

fn check(out: &Output, dir: &std::path::Path, files: &[DeployFile]) -> Result<Outcome, CliError> {
    let differences = deploy::differences(dir, files)?;
    let rows: Vec<(&str, &str)> = differences
        .iter()
        .map(|d| match d {
            Difference::Missing(path) => ("missing", path.as_str()),
            Difference::Changed(path) => ("changed", path.as_str()),
            Difference::Extra(path) => ("not generated", path.as_str()),
        })
        .collect();
    if out.json() {
        let rows: Vec<_> = rows.iter().map(|(what, path)| json!({ "path": path, "difference": what })).collect();
        out.print_json(&json!({ "same": rows.is_empty(), "differences": rows }));
    } else if rows.is_empty() {
        out.info(&format!("{}: as generated", dir.display()));
    } else {
        for (what, path) in &rows {
            out.line(&format!("{}: {what}", dir.join(path).display()));
        }
    }
    Ok(if rows.is_empty() { Outcome::Ok } else { Outcome::No })
}
