//! `openshell`: the command-line tool. Thin: parsing arguments, calling the
//! library crates, rendering their results for people (`--output text`) or
//! programs (`--output json`).

mod advise_cmd;
mod bundle_cmd;
mod docker_cmd;
mod gateways;
mod image_cmd;
mod inference_cmd;
mod kubernetes_cmd;
mod output;
mod policy_cmd;
mod registry_cmd;
mod sandbox_cmd;
mod sbom_cmd;
mod verify_cmd;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::output::Output;

/// Reproducible sandboxes for AI agents, under declarative YAML policies.
#[derive(Debug, Parser)]
#[command(name = "openshell", version, propagate_version = true, arg_required_else_help = true)]
struct Cli {
    /// How to print results.
    #[arg(long, value_enum, global = true, default_value_t = Format::Text)]
    output: Format,
    /// Print only errors (and, for `check`/`diff`, the verdict).
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace). OPENSHELL_LOG overrides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, inspect and compare sandbox policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Resolve an image definition into a lockfile that pins every artifact by hash.
    Lock(image_cmd::LockArgs),
    /// Download every artifact of a lockfile into the store, verifying each.
    Fetch(image_cmd::FetchArgs),
    /// Build the OCI image of a lockfile from the store, with no network.
    Build(image_cmd::BuildArgs),
    /// Write the SBOM (SPDX 2.3 or CycloneDX 1.5 JSON) of a lockfile or a built image.
    Sbom(sbom_cmd::SbomArgs),
    /// Push an image of the store, or an OCI layout or archive, to a registry.
    Push(registry_cmd::PushArgs),
    /// Pull an image from a registry into the store (then `image ls`, `sandbox create --image`).
    Pull(registry_cmd::PullArgs),
    /// Signed air-gap bundles: create, verify and install one file offline.
    #[command(subcommand)]
    Bundle(bundle_cmd::BundleCommand),
    /// Ed25519 keys that sign bundles.
    #[command(subcommand)]
    Key(bundle_cmd::KeyCommand),
    /// Check that the image at REF (OCI dir, archive or registry) is the one LOCK builds.
    #[command(after_help = verify_cmd::EXIT_STATUS)]
    Verify(verify_cmd::VerifyArgs),
    /// List, inspect, remove and verify built and pulled images.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Manage the content-addressed store (export/import closures, gc, verify).
    #[command(subcommand)]
    Store(image_cmd::StoreCommand),
    /// Create, run and manage sandboxes (through the local gateway).
    #[command(subcommand)]
    Sandbox(sandbox_cmd::SandboxCommand),
    /// The local gateway that owns sandboxes and their state.
    #[command(subcommand)]
    Gateway(sandbox_cmd::GatewayCommand),
    /// Model providers for the privacy router (credentials stay with the gateway).
    #[command(subcommand)]
    Provider(inference_cmd::ProviderCommand),
    /// The inference route: where sandboxes' model requests go.
    #[command(subcommand)]
    Inference(inference_cmd::InferenceCommand),
    /// The local Docker daemon: register openshell-runtime with it.
    #[command(subcommand)]
    Docker(docker_cmd::DockerCommand),
    /// Kubernetes clusters: the manifests that install openshell-runtime on nodes
    /// and the gateway's Helm chart.
    #[command(subcommand)]
    Kubernetes(kubernetes_cmd::KubernetesCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check policy files; exit 0 when all are valid, 1 when any is not.
    Validate {
        /// Policy files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Decide one request against a policy: allow, deny (with the reason) or audit.
    Check(CheckArgs),
    /// Show the kernel profile a policy compiles to (mounts, Landlock, seccomp, user, limits).
    Explain {
        /// Policy file (YAML).
        file: PathBuf,
        /// The sandbox's working directory, which `include_workdir` makes read-write.
        #[arg(long, default_value = openshell_policy::profile::DEFAULT_WORKDIR)]
        workdir: String,
    },
    /// Say whether NEW can replace OLD on a running sandbox, naming each changed field.
    Diff {
        /// The policy the sandbox runs now.
        old: PathBuf,
        /// The policy to apply.
        new: PathBuf,
    },
    /// Replace the policy of a sandbox. Changes to the filesystem, landlock or
    /// process sections are refused: they are fixed at creation.
    Set {
        /// The sandbox (name or id).
        sandbox: String,
        /// The new policy.
        file: PathBuf,
        /// Return once the sandbox's proxy has applied it.
        #[arg(long)]
        wait: bool,
    },
    /// Print a sandbox's current policy (the text of its newest revision).
    Get {
        /// The sandbox (name or id).
        sandbox: String,
    },
    /// List a sandbox's policy revisions.
    History {
        /// The sandbox (name or id).
        sandbox: String,
    },
    /// Propose the smallest policy change that allows what a sandbox was denied
    /// (its audit log): exact hosts, ports, binaries, addresses and L7 paths, never
    /// a wildcard, never over a deny rule; shown as a diff of its current policy.
    Advise {
        /// The sandbox (name or id).
        sandbox: String,
        /// Apply the proposal (hot reload, as `policy set`) after showing it.
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file (YAML).
    pub file: PathBuf,
    /// Destination host name or IP address.
    #[arg(long)]
    pub host: String,
    /// Destination TCP port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Executable of the calling process (as the kernel reports it). Without it
    /// the caller is unidentified and every policy denies (fail closed).
    #[arg(long)]
    pub binary: Option<String>,
    /// Executable of an ancestor of the caller (repeatable, nearest first).
    #[arg(long = "ancestor")]
    pub ancestors: Vec<String>,
    /// The address the host resolves to, to check the SSRF rules.
    #[arg(long)]
    pub resolved_ip: Option<std::net::IpAddr>,
    /// HTTP method of an L7 request (needs --path).
    #[arg(long, requires = "path")]
    pub method: Option<String>,
    /// HTTP path of an L7 request, without the query (needs --method).
    #[arg(long, requires = "method")]
    pub path: Option<String>,
    /// Query parameter `k=v` of an L7 request (repeatable).
    #[arg(long = "query", requires = "method", value_parser = parse_query)]
    pub query: Vec<(String, String)>,
    /// Decide a WebSocket's upgrade request or a client text message on the
    /// upgrade --path (`websocket` endpoints), not a plain request.
    #[arg(long, value_enum, requires = "method", conflicts_with = "rpc_method")]
    pub websocket: Option<WebSocketPart>,
    /// Decide one JSON-RPC call of a POST's body (`mcp`/`json-rpc` endpoints).
    #[arg(long, requires = "method")]
    pub rpc_method: Option<String>,
    /// The tool of an MCP `tools/call` (needs --rpc-method).
    #[arg(long, requires = "rpc_method")]
    pub tool: Option<String>,
}

/// Which part of a WebSocket `policy check` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WebSocketPart {
    /// The RFC 6455 upgrade request (`GET` rules).
    Upgrade,
    /// A client text message (`WEBSOCKET_TEXT` rules).
    Text,
}

fn parse_query(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("`{s}`: the parameter name is empty")),
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => Err(format!("`{s}` is not of the form name=value")),
    }
}

/// Exit codes: 0 yes/ok, 1 a negative answer (invalid policy, deny), 2 could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    No,
    /// Reported already, but some input could not be read.
    Unanswered,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Helper processes: libcontainer logs from inside a container would land in
    // the container's stderr (the user's output); their failures are reported.
    let helper = matches!(&cli.command, Command::Gateway(sandbox_cmd::GatewayCommand::Helper));
    init_tracing(if helper { 0 } else { cli.verbose }, helper);
    let out = Output::new(cli.output, cli.quiet);
    let result = match cli.command {
        Command::Policy(cmd) => match cmd {
            PolicyCommand::Validate { files } => policy_cmd::validate(&out, &files),
            PolicyCommand::Check(args) => policy_cmd::check(&out, &args),
            PolicyCommand::Explain { file, workdir } => policy_cmd::explain(&out, &file, &workdir),
            PolicyCommand::Diff { old, new } => policy_cmd::diff(&out, &old, &new),
            PolicyCommand::Set { sandbox, file, wait } => {
                return sandbox_exit(&out, sandbox_cmd::policy_set(&out, &sandbox, &file, wait));
            }
            PolicyCommand::Get { sandbox } => {
                return sandbox_exit(&out, sandbox_cmd::policy_get(&out, &sandbox, false));
            }
            PolicyCommand::History { sandbox } => {
                return sandbox_exit(&out, sandbox_cmd::policy_get(&out, &sandbox, true));
            }
            PolicyCommand::Advise { sandbox, apply } => {
                return sandbox_exit(&out, advise_cmd::policy_advise(&out, &sandbox, apply));
            }
        },
        Command::Sandbox(cmd) => return sandbox_exit(&out, sandbox_cmd::sandbox(&out, cmd)),
        Command::Gateway(cmd) => return sandbox_exit(&out, sandbox_cmd::gateway(&out, cmd)),
        Command::Provider(cmd) => return sandbox_exit(&out, inference_cmd::provider(&out, cmd)),
        Command::Inference(cmd) => return sandbox_exit(&out, inference_cmd::inference(&out, cmd)),
        Command::Lock(args) => image_cmd::lock(&out, &args),
        Command::Fetch(args) => image_cmd::fetch(&out, &args),
        Command::Build(args) => image_cmd::build(&out, &args),
        Command::Push(args) => registry_cmd::push(&out, &args),
        Command::Pull(args) => registry_cmd::pull(&out, &args),
        Command::Bundle(cmd) => bundle_cmd::bundle(&out, &cmd),
        Command::Key(cmd) => bundle_cmd::key(&out, &cmd),
        Command::Verify(args) => verify_cmd::verify(&out, &args),
        Command::Image(cmd) => image_cmd::image(&out, &cmd),
        Command::Sbom(args) => sbom_cmd::sbom(&out, &args),
        Command::Store(cmd) => image_cmd::store(&out, &cmd),
        Command::Docker(cmd) => docker_cmd::docker(&out, &cmd),
        Command::Kubernetes(cmd) => kubernetes_cmd::kubernetes(&out, &cmd),
        Command::Completions { shell } => {
            let mut stdout = std::io::stdout().lock();
            clap_complete::generate(shell, &mut Cli::command(), "openshell", &mut stdout);
            let _ = stdout.flush();
            Ok(Outcome::Ok)
        }
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::No) => ExitCode::from(1),
        Ok(Outcome::Unanswered) => ExitCode::from(2),
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// Sandbox commands exit with their command's code (or their own failure's).
fn sandbox_exit(out: &Output, result: Result<u8, sandbox_cmd::SandboxCmdError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            out.message_error(&e.message, e.api.map(|c| c.as_str()));
            ExitCode::from(e.code)
        }
    }
}

fn init_tracing(verbose: u8, helper: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let level = if helper { "warn,libcontainer=off,libcgroups=off" } else { level };
    let filter = EnvFilter::try_from_env("OPENSHELL_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().try_init();
}
