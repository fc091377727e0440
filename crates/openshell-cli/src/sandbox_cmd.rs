//! `openshell sandbox ...`, `openshell gateway ...` and `openshell policy set`:
//! requests to the local gateway (started on first use).

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use openshell_build::images::ImageRecord;
use openshell_gateway::server;
use openshell_gateway_api::client::{Client, ClientError, relay_terminal};
use openshell_gateway_api::grpc::v1;
use openshell_gateway_api::proto::{
    BlobFollows, CreateRequest, ImageRef, ImageUpload, Phase, Request, Response, SandboxInfo,
};
use openshell_gateway_api::remote::{Remote, RemoteConfig, RunEnd, RunIo};
use openshell_gateway_api::{ApiError, ErrorCode, GatewayDir};
use serde_json::json;

use crate::image_cmd::StoreArgs;
use crate::output::Output;

mod forward;
mod transfer;

/// The policy a sandbox gets when none is given.
const DEFAULT_POLICY: &str = include_str!("../../../policies/default.yaml");
const DEFAULT_POLICY_NAME: &str = "policies/default.yaml (built in)";
/// The image a sandbox gets when none is given (the newest tag in the store).
const DEFAULT_IMAGE: &str = "openshell/default";

/// Why a sandbox command failed; `code` is its exit code, `api` the gateway's
/// error code when the gateway answered with one (rendered, and carried by
/// `--output json`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SandboxCmdError {
    pub message: String,
    pub code: u8,
    pub api: Option<ErrorCode>,
}

pub(crate) fn fail(message: impl std::fmt::Display) -> SandboxCmdError {
    SandboxCmdError { message: message.to_string(), code: 1, api: None }
}

impl From<ClientError> for SandboxCmdError {
    fn from(e: ClientError) -> Self {
        SandboxCmdError { message: e.to_string(), code: 1, api: Some(e.code()) }
    }
}

impl From<ApiError> for SandboxCmdError {
    fn from(e: ApiError) -> Self {
        SandboxCmdError { message: e.message, code: 1, api: Some(e.code) }
    }
}

/// A failed run of a command in a sandbox: exit code 125.
fn run_failed(e: impl Into<SandboxCmdError>) -> SandboxCmdError {
    SandboxCmdError { code: EXIT_RUN_FAILED, ..e.into() }
}

/// Exit code of openshell's own failure around a command run in a sandbox (as
/// `docker run` does), so it cannot be mistaken for the command's own 1 or 2.
pub const EXIT_RUN_FAILED: u8 = 125;

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox from an image under a policy, and run a command in it (or,
    /// without one, open a shell; with --detach, keep it idle for `exec`).
    /// Exit code: the command's; 125 when the sandbox could not run it.
    Create(CreateArgs),
    /// Run a command in a running sandbox; exit code: the command's.
    Exec {
        name: String,
        /// Give the command a terminal (interactive programs).
        #[arg(long, short = 't')]
        tty: bool,
        /// Extra environment, K=V (repeatable).
        #[arg(long = "env", short = 'e', value_name = "K=V")]
        env: Vec<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Open an interactive shell in a running sandbox.
    Connect { name: String },
    /// Copy a local file or directory into a running sandbox, as DST (into DST
    /// when it ends with `/`). Unpacked by the sandbox's own `tar`: writes land
    /// only where its filesystem policy allows.
    Upload {
        name: String,
        src: PathBuf,
        /// An absolute path inside the sandbox.
        dst: String,
    },
    /// Forward a local port (on 127.0.0.1) to PORT on a running sandbox's own
    /// loopback, through the gateway, until the sandbox stops. LOCAL defaults
    /// to PORT; 0 picks a free one.
    Forward {
        name: String,
        #[arg(value_name = "[LOCAL:]PORT")]
        ports: String,
    },
    /// Copy a file or directory out of a running sandbox to DST (into DST when
    /// it is a directory or ends with `/`); an existing file is never
    /// overwritten.
    Download {
        name: String,
        /// An absolute path inside the sandbox.
        src: String,
        dst: PathBuf,
    },
    /// List sandboxes.
    List,
    /// Show one sandbox.
    Get { name: String },
    /// Print what a sandbox's main process wrote.
    Logs {
        name: String,
        /// Keep printing until the sandbox stops.
        #[arg(long, short = 'f')]
        follow: bool,
        /// The audit log instead: one OCSF JSON line per network decision.
        #[arg(long)]
        audit: bool,
    },
    /// Stop a sandbox (SIGTERM to its process 1, which passes it on; SIGKILL after --time).
    Stop {
        name: String,
        /// Seconds to wait before SIGKILL.
        #[arg(long, short = 't', default_value_t = 10)]
        time: u64,
    },
    /// Start a stopped sandbox again (its read-write paths, e.g. /sandbox, kept).
    Start { name: String },
    /// Delete a sandbox and everything it wrote (stopping it first).
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Sandbox name (default: sandbox-<id>).
    #[arg(long)]
    name: Option<String>,
    /// An image reference in the store (`name:tag`, digest), or a lockfile to build
    /// (a no-op when built). Default: the newest `openshell/default` in the store.
    #[arg(long, value_name = "REF|LOCK")]
    image: Option<String>,
    /// The policy (default: policies/default.yaml, built in).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Delete the sandbox when its command exits.
    #[arg(long)]
    rm: bool,
    /// Return once the sandbox runs; its output goes to `sandbox logs`.
    #[arg(long, short = 'd')]
    detach: bool,
    /// Extra environment, K=V (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    env: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// The command and its arguments (default: none; see above).
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a client certificate NAME (CN = NAME, OU = its role).
    Issue {
        name: String,
        /// admin (providers, settings, every sandbox) or user (its own sandboxes).
        #[arg(long, default_value = "user")]
        role: String,
        /// Days it is valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// The TLS files (default: the gateway directory's tls/).
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
    },
    /// Revoke client certificate NAME (a running gateway refuses it at once).
    Revoke {
        name: String,
        /// The TLS files (default: the gateway directory's tls/).
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
    },
}

/// Where `gateway run` runs sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    Local,
    Docker,
    Kubernetes,
}

/// Where `gateway run --driver kubernetes` runs sandboxes.
#[derive(Debug, clap::Args)]
pub struct KubernetesArgs {
    /// The cluster's kubeconfig (with --driver kubernetes; default: KUBECONFIG,
    /// ~/.kube/config, or the service account of the pod the gateway runs in).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The namespace sandboxes' pods are made in (with --driver kubernetes).
    #[arg(long, value_name = "NAME", default_value = "openshell")]
    namespace: String,
    /// `HOST[:PORT]/REPOSITORY` the cluster pulls sandbox images from; the
    /// gateway pushes each image there (with --driver kubernetes).
    #[arg(long, value_name = "REPO")]
    image_registry: Option<String>,
    /// Plain HTTP to --image-registry (only on loopback).
    #[arg(long)]
    registry_insecure: bool,
    /// The RuntimeClass that runs pods with openshell-runtime (with --driver kubernetes).
    #[arg(long, value_name = "NAME", default_value = "openshell")]
    runtime_class: String,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Show the gateway (starting it if none runs).
    Status,
    /// Stop the gateway; running sandboxes keep running and are found again.
    Stop,
    /// Run the gateway in the foreground (sandbox commands start it on their own).
    Run {
        /// The store it runs images from (default: $OPENSHELL_STORE, else
        /// ~/.local/share/openshell/store); images of other stores are uploaded to it.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Also serve the API to remote clients on ADDR (gRPC, mutual TLS with the
        /// files `gateway init` made).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// The TLS files (default: the gateway directory's tls/).
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
        /// Where the state is kept: `postgres://USER@HOST/DB` (shared by gateway
        /// replicas), or a SQLite file (default: state.db in the gateway
        /// directory, one gateway at a time).
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// The CA that PostgreSQL's certificate must chain to (default: the
        /// system's roots); TLS is used as the URL's `sslmode` says
        /// (`?sslmode=require` to insist on it).
        #[arg(long, value_name = "FILE", requires = "database")]
        database_ca: Option<PathBuf>,
        /// Where the local driver keeps its sandboxes (default: the gateway
        /// directory). Replicas on one host sharing a database share this too.
        #[arg(long, value_name = "DIR")]
        driver_dir: Option<PathBuf>,
        /// Seconds a replica's hold on its sandboxes lasts unrenewed: how soon
        /// another replica takes over those of one that died.
        #[arg(long, value_name = "SECS", default_value_t = server::DEFAULT_LEASE.as_secs(),
              value_parser = clap::value_parser!(u64).range(3..=3600))]
        lease: u64,
        /// Use the driver answering on this socket (`openshell gateway driver`)
        /// instead of running sandboxes in this process's own local driver.
        #[arg(long, value_name = "PATH", conflicts_with_all = ["driver_dir", "driver"])]
        driver_socket: Option<PathBuf>,
        /// Where sandboxes run: `local` (libcontainer, in this process),
        /// `docker` (containers on the local dockerd, through the runtime
        /// `openshell docker install` registered) or `kubernetes` (pods under
        /// RuntimeClass openshell; see docs/kubernetes.md).
        #[arg(long, value_enum, default_value_t = DriverKind::Local)]
        driver: DriverKind,
        /// dockerd's API socket (with --driver docker).
        #[arg(long, value_name = "PATH", default_value = openshell_docker::DOCKER_SOCKET)]
        docker_socket: String,
        /// The runtime's name in dockerd (with --driver docker).
        #[arg(long, value_name = "NAME", default_value = "openshell")]
        docker_runtime: String,
        #[command(flatten)]
        kubernetes: Box<KubernetesArgs>,
    },
    /// (internal) A Docker sandbox's network helper (`--hold`: its namespace's holder).
    #[command(hide = true, name = "docker-network")]
    DockerNetwork {
        #[arg(long)]
        hold: bool,
    },
    /// Run the local driver out of the gateway's process, answering the
    /// driver API on a Unix socket (owner-only) for `gateway run --driver-socket`.
    Driver {
        /// Where to listen.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// The store it runs images from (default: as `gateway run`).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Where it keeps its sandboxes (default: the gateway directory).
        #[arg(long, value_name = "DIR")]
        driver_dir: Option<PathBuf>,
    },
    /// Make the TLS files of a remote gateway: a CA, the server's certificate
    /// (for each --server-name) and a client certificate `admin`.
    Init {
        /// A DNS name or IP address clients reach the gateway by (repeatable;
        /// default: localhost and 127.0.0.1).
        #[arg(long = "server-name", value_name = "NAME")]
        server_names: Vec<String>,
        /// Where to write them (default: the gateway directory's tls/).
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
    },
    /// Client certificates of this gateway.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Remember a remote gateway: its URL, its CA and this client's certificate.
    Add {
        name: String,
        /// https://HOST:PORT
        url: String,
        /// The gateway's CA certificate.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// This client's certificate.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// This client's key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Talk to gateway NAME from now on (`local`: the local gateway).
    Select { name: String },
    /// The gateways this client knows.
    List,
    /// (internal) A helper process waiting for a job from the gateway.
    #[command(hide = true)]
    Helper,
}

fn gateway_dir() -> Result<GatewayDir, SandboxCmdError> {
    GatewayDir::from_env().ok_or_else(|| fail("no gateway directory: set OPENSHELL_GATEWAY_DIR or HOME"))
}

fn exe() -> Result<PathBuf, SandboxCmdError> {
    std::env::current_exe().map_err(|e| fail(format!("finding the openshell executable: {e}")))
}

/// A connection to the selected gateway.
enum Gateway {
    Local(Client),
    Remote(Box<Remote>),
}

fn remote() -> Result<Option<RemoteConfig>, SandboxCmdError> {
    Ok(crate::gateways::Gateways::load()?.selected()?.map(|(_, config)| config))
}

fn connect_local(start: bool) -> Result<Client, SandboxCmdError> {
    let dir = gateway_dir()?;
    Ok(Client::connect(&dir, &exe()?, start)?)
}

/// Connects to the selected gateway (the local one started when `start`).
fn connect(start: bool) -> Result<Gateway, SandboxCmdError> {
    match remote()? {
        Some(config) => Ok(Gateway::Remote(Box::new(Remote::connect(&config)?))),
        None => Ok(Gateway::Local(connect_local(start)?)),
    }
}

fn rpc_err(e: ClientError) -> SandboxCmdError {
    e.into()
}

impl Gateway {
    fn call(&self, request: &Request) -> Result<Response, SandboxCmdError> {
        Ok(match self {
            Gateway::Local(c) => c.call(request)?,
            Gateway::Remote(r) => r.call(request)?,
        })
    }
}

/// Sends a request with one answer; an `Error` answer is an error.
pub(crate) fn call(request: &Request) -> Result<Response, SandboxCmdError> {
    connect(true)?.call(request)
}

pub(crate) fn age(secs: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let d = now.saturating_sub(secs);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

fn status_text(s: &SandboxInfo) -> String {
    match (s.phase, s.exit_code) {
        (Phase::Stopped, Some(code)) => format!("stopped ({code})"),
        (phase, _) => phase.to_string(),
    }
}

fn print_sandbox(out: &Output, s: &SandboxInfo) {
    if out.json() {
        out.print_json(s);
        return;
    }
    out.line(&format!("name:      {}", s.name));
    out.line(&format!("id:        {}", s.id));
    out.line(&format!("status:    {}", status_text(s)));
    out.line(&format!("image:     {} ({})", s.image, s.image_digest));
    out.line(&format!("policy:    {} (revision {})", s.policy_name, s.policy_revision));
    let command =
        if s.command.is_empty() { "(none: idle, join with exec/connect)".to_owned() } else { s.command.join(" ") };
    out.line(&format!("command:   {command}"));
    out.line(&format!("created:   {}", age(s.created)));
    out.line(&format!("owner:     {}", s.owner));
    if let Some(pid) = s.pid {
        out.line(&format!("pid:       {pid}"));
    }
}

/// Reads answers until the last one; returns the exit code of an attached run.
fn finish_attached(client: &Client) -> Result<u8, SandboxCmdError> {
    loop {
        match client.recv().map_err(rpc_err)? {
            (Response::Exited { code }, _) => return Ok(code.clamp(0, 255) as u8),
            (Response::Error { error }, _) => return Err(run_failed(error)),
            (Response::Console, fds) => {
                let master = fds.into_iter().next().ok_or_else(|| fail("the gateway sent no terminal"))?;
                match relay_terminal(client, master).map_err(rpc_err)? {
                    (Response::Exited { code }, _) => return Ok(code.clamp(0, 255) as u8),
                    (Response::Error { error }, _) => return Err(run_failed(error)),
                    (other, _) => return Err(fail(format!("unexpected answer {other:?}"))),
                }
            }
            _ => continue,
        }
    }
}

/// Where signals to a foreground client go: the sandbox, once its name is known.
type Target = std::sync::Arc<(std::sync::Mutex<Option<String>>, std::sync::Condvar)>;

/// Passes SIGINT, SIGTERM and SIGHUP of this process on to the sandbox while a
/// foreground command runs (the sandbox does not die with the client). Installed
/// before the request goes out: the command may run (and be signalled) before
/// the answer naming its sandbox arrives; such signals wait for [`aim`].
fn forward_signals() -> Target {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let target: Target = Default::default();
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return target };
    let aimed = std::sync::Arc::clone(&target);
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let (lock, named) = &*aimed;
            let mut name = lock.lock().unwrap_or_else(|p| p.into_inner());
            while name.is_none() {
                name = named.wait(name).unwrap_or_else(|p| p.into_inner());
            }
            let name = name.clone().unwrap_or_default();
            if let Ok(client) = connect(false) {
                let _ = client.call(&Request::Kill { name, signal });
            }
        }
    });
    target
}

/// Names the sandbox that forwarded signals go to.
fn aim(target: &Target, name: &str) {
    let (lock, named) = &**target;
    *lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.to_owned());
    named.notify_all();
}

/// Sends `request` with this process's stdin, stdout and stderr attached.
fn send_with_stdio(client: &Client, request: &Request) -> Result<(), SandboxCmdError> {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    client.send(request, &[stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]).map_err(rpc_err)
}

fn shell() -> Vec<String> {
    ["/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn exec_tty(name: &str, command: Vec<String>, env: Vec<String>, tty: bool) -> Result<u8, SandboxCmdError> {
    let client = match connect(true)? {
        Gateway::Local(c) => c,
        Gateway::Remote(remote) => return exec_remote(&remote, name, command, env, tty),
    };
    let request = Request::Exec { name: name.to_owned(), args: command, env, tty };
    let target = forward_signals();
    aim(&target, name);
    if tty {
        client.send(&request, &[]).map_err(rpc_err)?;
    } else {
        send_with_stdio(&client, &request)?;
    }
    finish_attached(&client)
}

fn read_policy(policy: &Option<PathBuf>) -> Result<(String, String), SandboxCmdError> {
    match policy {
        None => Ok((DEFAULT_POLICY_NAME.to_owned(), DEFAULT_POLICY.to_owned())),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            Ok((path.display().to_string(), text))
        }
    }
}

/// The image to run, from the caller's store (built first when a lockfile is
/// given): its record, which the gateway gets by digest (or as an upload).
fn resolve_image(args: &CreateArgs) -> Result<(openshell_store::Store, ImageRecord), SandboxCmdError> {
    let to_err = |e: crate::policy_cmd::CliError| fail(e.to_string());
    let (root, reference) = match &args.image {
        Some(image) if Path::new(image).is_file() => {
            crate::image_cmd::build_for_sandbox(&args.store, Path::new(image)).map_err(to_err)?
        }
        Some(image) => (crate::image_cmd::store_root(&args.store).map_err(to_err)?, image.clone()),
        None => (crate::image_cmd::store_root(&args.store).map_err(to_err)?, String::new()),
    };
    let store = openshell_store::Store::open(&root).map_err(|e| fail(e.to_string()))?;
    let found = if reference.is_empty() {
        openshell_build::images::newest(&store, DEFAULT_IMAGE).map_err(|_| {
            run_failed(fail(format!(
                "no --image given and no {DEFAULT_IMAGE} image in the store {}: build it with `openshell build lockfiles/default.lock`, or give --image",
                root.display()
            )))
        })?
    } else {
        openshell_build::images::find(&store, &reference).map_err(|e| run_failed(fail(e)))?
    };
    Ok((store, found))
}

/// Sends an image the gateway's store lacks: its record, then each blob's
/// content as a descriptor (the gateway checks every byte).
fn upload_image(store: &openshell_store::Store, rec: &ImageRecord) -> Result<(), SandboxCmdError> {
    let upload = ImageUpload {
        name: rec.name.clone(),
        tag: rec.tag.clone(),
        manifest: rec.manifest.clone(),
        config: rec.config.clone(),
        layers: rec.layers.clone(),
        size: rec.size,
        uncompressed_size: rec.uncompressed_size,
    };
    let client = match connect(true)? {
        Gateway::Local(c) => c,
        Gateway::Remote(remote) => {
            let open = |blob: &str| -> std::io::Result<std::fs::File> {
                let digest: openshell_store::Digest = blob.parse().map_err(std::io::Error::other)?;
                std::fs::File::open(store.blob_path(&digest))
            };
            remote.upload(upload, &open)?;
            return Ok(());
        }
    };
    client.send(&Request::ImageUpload(upload.clone()), &[])?;
    for blob in upload.blobs() {
        let digest: openshell_store::Digest =
            blob.parse().map_err(|e| fail(format!("image {}: {e}", rec.reference())))?;
        let path = store.blob_path(&digest);
        let file = std::fs::File::open(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        client.send_part(&BlobFollows { digest: blob.to_owned() }, &[file.as_fd()])?;
    }
    match client.recv()?.0 {
        Response::Error { error } => Err(error.into()),
        _ => Ok(()),
    }
}

pub fn sandbox(out: &Output, cmd: SandboxCommand) -> Result<u8, SandboxCmdError> {
    match cmd {
        SandboxCommand::Create(args) => create(out, args),
        SandboxCommand::Exec { name, tty, env, command } => exec_tty(&name, command, env, tty),
        SandboxCommand::Forward { name, ports } => forward::forward(out, &name, &ports),
        SandboxCommand::Upload { name, src, dst } => transfer::upload(&name, &src, &dst),
        SandboxCommand::Download { name, src, dst } => transfer::download(&name, &src, &dst),
        SandboxCommand::Connect { name } => {
            if !std::io::stdin().is_terminal() {
                return Err(fail("`sandbox connect` needs a terminal on stdin; use `sandbox exec NAME -- CMD`"));
            }
            exec_tty(&name, shell(), Vec::new(), true)
        }
        SandboxCommand::List => {
            let Response::Sandboxes { sandboxes } = call(&Request::List)? else {
                return Err(fail("unexpected answer"));
            };
            if out.json() {
                out.print_json(&sandboxes);
            } else {
                out.line(&format!("{:<24} {:<14} {:<28} {:<10} COMMAND", "NAME", "STATUS", "IMAGE", "CREATED"));
                for s in &sandboxes {
                    out.line(&format!(
                        "{:<24} {:<14} {:<28} {:<10} {}",
                        s.name,
                        status_text(s),
                        s.image,
                        age(s.created),
                        s.command.join(" ")
                    ));
                }
            }
            Ok(0)
        }
        SandboxCommand::Get { name } => {
            let Response::Sandbox { sandbox } = call(&Request::Get { name })? else {
                return Err(fail("unexpected answer"));
            };
            print_sandbox(out, &sandbox);
            Ok(0)
        }
        SandboxCommand::Logs { name, follow, audit } => {
            write_logs(&name, follow, audit, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        SandboxCommand::Stop { name, time } => report_sandbox(out, &Request::Stop { name, timeout_secs: time }),
        SandboxCommand::Start { name } => report_sandbox(out, &Request::Start { name, attach: false }),
        SandboxCommand::Delete { name } => {
            let response = call(&Request::Delete { name })?;
            if let Response::Done { message } = response {
                if out.json() {
                    out.print_json(&json!({"deleted": true, "message": message}));
                } else {
                    out.info(&message);
                }
            }
            Ok(0)
        }
    }
}

/// Writes a sandbox's output log (or audit log) to `out`, following it with
/// `follow`; stops quietly when `out` is closed.
pub(crate) fn write_logs(name: &str, follow: bool, audit: bool, out: &mut dyn Write) -> Result<(), SandboxCmdError> {
    let client = match connect(true)? {
        Gateway::Local(c) => c,
        Gateway::Remote(remote) => return Ok(remote.logs(name, follow, audit, out)?),
    };
    client.send(&Request::Logs { name: name.to_owned(), follow, audit }, &[]).map_err(rpc_err)?;
    loop {
        match client.recv().map_err(rpc_err)? {
            (Response::Output { .. }, _) => {
                let bytes = client.output().map_err(rpc_err)?;
                if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
            (Response::Error { error }, _) => return Err(error.into()),
            _ => return Ok(()),
        }
    }
}

/// Sends a request answered by a sandbox (stop, start) and reports its status.
fn report_sandbox(out: &Output, request: &Request) -> Result<u8, SandboxCmdError> {
    let Response::Sandbox { sandbox } = call(request)? else {
        return Err(fail("unexpected answer"));
    };
    if out.json() {
        out.print_json(&sandbox);
    } else {
        out.info(&format!("{}: {}", sandbox.name, status_text(&sandbox)));
    }
    Ok(0)
}

fn create(out: &Output, args: CreateArgs) -> Result<u8, SandboxCmdError> {
    let interactive = args.command.is_empty() && !args.detach;
    if interactive && !std::io::stdin().is_terminal() {
        return Err(fail(
            "no command given and stdin is not a terminal: give a command after `--`, or --detach and use `sandbox exec`",
        ));
    }
    for kv in &args.env {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(SandboxCmdError { message: format!("--env `{kv}`: expected K=V"), code: 2, api: None });
        }
    }
    let (policy_name, policy) = read_policy(&args.policy)?;
    let (store, image) = resolve_image(&args)?;
    let attach = !args.detach && !interactive;
    let request = Request::Create(CreateRequest {
        name: args.name.clone(),
        image: ImageRef { reference: image.reference(), digest: image.manifest.clone() },
        policy_name,
        policy,
        command: args.command.clone(),
        env: args.env.clone(),
        rm: args.rm,
        attach,
    });
    let target = attach.then(forward_signals);
    if let Some(config) = remote()? {
        let remote = Remote::connect(&config)?;
        return create_remote(out, &remote, &args, request, &store, &image, target.as_ref());
    }
    let send_create = || -> Result<(Client, Response), SandboxCmdError> {
        let client = connect_local(true)?;
        if attach {
            send_with_stdio(&client, &request)?;
        } else {
            client.send(&request, &[]).map_err(rpc_err)?;
        }
        let answer = client.recv().map_err(rpc_err)?.0;
        Ok((client, answer))
    };
    let (mut client, mut answer) = send_create()?;
    if let Response::Error { error } = &answer
        && error.code == ErrorCode::ImageNotFound
    {
        // The gateway runs images from its own store: this one goes there first.
        upload_image(&store, &image).map_err(run_failed)?;
        (client, answer) = send_create()?;
    }
    let sandbox = match answer {
        Response::Sandbox { sandbox } => sandbox,
        Response::Error { error } => return Err(run_failed(error)),
        other => return Err(fail(format!("unexpected answer {other:?}"))),
    };
    if let Some(target) = &target {
        aim(target, &sandbox.name);
        return finish_attached(&client);
    }
    if interactive {
        let code = exec_tty(&sandbox.name, shell(), args.env.clone(), true);
        if args.rm {
            let _ = call(&Request::Delete { name: sandbox.name.clone() });
        }
        return code;
    }
    if out.json() {
        out.print_json(&sandbox);
    } else {
        out.line(&sandbox.name);
    }
    Ok(0)
}

pub fn gateway(out: &Output, cmd: GatewayCommand) -> Result<u8, SandboxCmdError> {
    match cmd {
        GatewayCommand::Status => {
            let Response::Status { status } = call(&Request::Status)? else {
                return Err(fail("unexpected answer"));
            };
            if out.json() {
                out.print_json(&status);
            } else {
                out.line(&format!("gateway:   running (pid {}, version {})", status.pid, status.version));
                out.line(&format!("socket:    {}", status.socket.display()));
                out.line(&format!("directory: {}", status.dir.display()));
                if !status.database.is_empty() {
                    out.line(&format!("database:  {}", status.database));
                    out.line(&format!("replica:   {}", status.replica));
                }
                out.line(&format!("driver:    {}", status.driver));
                out.line(&format!("sandboxes: {} ({} running)", status.sandboxes, status.running));
                out.line(&format!("started:   {}", age(status.started)));
            }
            Ok(0)
        }
        GatewayCommand::Stop => {
            let client = match connect(false) {
                Ok(Gateway::Local(c)) => c,
                Ok(Gateway::Remote(_)) => {
                    return Err(fail("`gateway stop` stops the local gateway: `gateway select local` first"));
                }
                Err(_) => {
                    out.info("no gateway runs");
                    return Ok(0);
                }
            };
            if let Response::Done { message } = client.call(&Request::Shutdown).map_err(rpc_err)? {
                out.info(&message);
            }
            Ok(0)
        }
        GatewayCommand::Driver { socket, store, driver_dir } => {
            let store = match store {
                Some(s) => s,
                None => openshell_store::Store::default_root().map_err(fail)?,
            };
            let store = openshell_store::Store::open(&store).map_err(fail)?;
            let dir = match driver_dir {
                Some(d) => d,
                None => gateway_dir()?.0,
            };
            let local = openshell_driver_local::LocalDriver::new(dir, exe()?, store).map_err(fail)?;
            openshell_driver::socket::serve(std::sync::Arc::new(local), &socket).map_err(fail)?;
            Ok(0)
        }
        GatewayCommand::Run {
            store,
            listen,
            tls_dir,
            database,
            database_ca,
            driver_dir,
            lease,
            driver_socket,
            driver,
            docker_socket,
            docker_runtime,
            kubernetes,
        } => {
            let dir = gateway_dir()?;
            let store = match store {
                Some(s) => s,
                None => openshell_store::Store::default_root().map_err(fail)?,
            };
            let remote = listen.map(|listen| server::Remote { listen, tls: tls_dir_of(&dir, tls_dir) });
            let database = database
                .map(|d| openshell_gateway::state::Database::parse(&d).and_then(|db| db.with_ca(database_ca)))
                .transpose()
                .map_err(fail)?;
            let lease = std::time::Duration::from_secs(lease);
            let driver = match (driver_socket, driver) {
                (Some(socket), _) => server::DriverChoice::Socket(socket),
                (None, DriverKind::Local) => server::DriverChoice::Local,
                (None, DriverKind::Docker) if driver_dir.is_some() => {
                    return Err(fail(
                        "--driver-dir is the local driver's: the Docker driver keeps its sandboxes in the runtime's --sandbox-dir",
                    ));
                }
                (None, DriverKind::Docker) => server::DriverChoice::Docker(openshell_driver_docker::DockerOptions {
                    socket: docker_socket,
                    runtime: docker_runtime,
                }),
                (None, DriverKind::Kubernetes) => {
                    let KubernetesArgs { kubeconfig, namespace, image_registry, registry_insecure, runtime_class } =
                        *kubernetes;
                    let registry = image_registry.ok_or_else(|| {
                        fail("--driver kubernetes needs --image-registry HOST[:PORT]/REPOSITORY: the cluster pulls sandbox images from there")
                    })?;
                    server::DriverChoice::Kubernetes(openshell_driver_kubernetes::KubernetesOptions {
                        kubeconfig,
                        namespace,
                        registry,
                        registry_insecure,
                        runtime_class,
                    })
                }
            };
            let options = server::Options { remote, database, driver_dir, lease, driver };
            match server::serve(dir, exe()?, &store, options) {
                Ok(()) => Ok(0),
                Err(e @ server::ServerError::AlreadyRunning(_)) => {
                    out.info(&e.to_string());
                    Ok(0)
                }
                Err(e) => Err(fail(e)),
            }
        }
        GatewayCommand::Helper => Ok(openshell_driver_local::helper::helper_main().clamp(0, 255) as u8),
        GatewayCommand::DockerNetwork { hold: true } => {
            Ok(openshell_driver_docker::network::hold_main().clamp(0, 255) as u8)
        }
        GatewayCommand::DockerNetwork { hold: false } => {
            Ok(openshell_driver_docker::network::helper_main().clamp(0, 255) as u8)
        }
        GatewayCommand::Init { server_names, tls_dir } => {
            let tls = tls_dir_of(&gateway_dir()?, tls_dir);
            let names =
                if server_names.is_empty() { vec!["localhost".into(), "127.0.0.1".into()] } else { server_names };
            let written = openshell_gateway::tls::init(&tls, &names).map_err(fail)?;
            if out.json() {
                out.print_json(&json!({"tls_dir": tls.0, "files": written}));
            } else {
                for file in &written {
                    out.line(&file.display().to_string());
                }
                let (cert, key) = tls.client("admin");
                out.info(&format!(
                    "serve with `openshell gateway run --listen ADDR`; on a client: `openshell gateway add NAME https://{}:PORT --ca {} --cert {} --key {}`",
                    names[0],
                    tls.ca().display(),
                    cert.display(),
                    key.display()
                ));
            }
            Ok(0)
        }
        GatewayCommand::Cert(CertCommand::Issue { name, role, days, tls_dir }) => {
            let role = openshell_gateway::tls::Role::parse(&role).ok_or_else(|| SandboxCmdError {
                message: format!("--role `{role}`: use admin or user"),
                code: 2,
                api: None,
            })?;
            let tls = tls_dir_of(&gateway_dir()?, tls_dir);
            let (cert, key) = openshell_gateway::tls::issue(&tls, &name, role, days).map_err(fail)?;
            if out.json() {
                out.print_json(&json!({"cert": cert, "key": key, "role": role.as_str()}));
            } else {
                out.line(&cert.display().to_string());
                out.line(&key.display().to_string());
            }
            Ok(0)
        }
        GatewayCommand::Cert(CertCommand::Revoke { name, tls_dir }) => {
            let tls = tls_dir_of(&gateway_dir()?, tls_dir);
            let count = openshell_gateway::tls::revoke(&tls, &name).map_err(fail)?;
            out.info(&format!("revoked `{name}` ({count} revoked in {})", tls.crl().display()));
            Ok(0)
        }
        GatewayCommand::Add { name, url, ca, cert, key } => {
            if name == crate::gateways::LOCAL {
                return Err(fail("`local` names the local gateway; choose another name"));
            }
            let absolute = |p: PathBuf| std::path::absolute(&p).map_err(|e| fail(format!("{}: {e}", p.display())));
            for (flag, path) in [("--ca", &ca), ("--cert", &cert), ("--key", &key)] {
                if !path.is_file() {
                    return Err(SandboxCmdError {
                        message: format!("{flag} {}: no such file", path.display()),
                        code: 2,
                        api: None,
                    });
                }
            }
            let config = RemoteConfig { url, ca: absolute(ca)?, cert: absolute(cert)?, key: absolute(key)? };
            let mut gateways = crate::gateways::Gateways::load()?;
            gateways.gateways.insert(name.clone(), config);
            gateways.save()?;
            out.info(&format!("gateway `{name}` added (`openshell gateway select {name}` to use it)"));
            Ok(0)
        }
        GatewayCommand::Select { name } => {
            let mut gateways = crate::gateways::Gateways::load()?;
            if name != crate::gateways::LOCAL && !gateways.gateways.contains_key(&name) {
                return Err(fail(format!("no gateway named `{name}` (see `openshell gateway list`)")));
            }
            gateways.current = (name != crate::gateways::LOCAL).then(|| name.clone());
            gateways.save()?;
            out.info(&format!("gateway `{name}` selected"));
            Ok(0)
        }
        GatewayCommand::List => {
            let gateways = crate::gateways::Gateways::load()?;
            let current = gateways.selected()?.map(|(n, _)| n).unwrap_or_else(|| crate::gateways::LOCAL.into());
            if out.json() {
                out.print_json(&json!({"current": current, "gateways": gateways.gateways}));
            } else {
                let mark = |n: &str| if n == current { "*" } else { " " };
                out.line(&format!("{} {:<16} (this machine)", mark(crate::gateways::LOCAL), crate::gateways::LOCAL));
                for (name, config) in &gateways.gateways {
                    out.line(&format!("{} {name:<16} {}", mark(name), config.url));
                }
            }
            Ok(0)
        }
    }
}

/// `openshell policy set SANDBOX FILE`.
pub fn policy_set(out: &Output, sandbox: &str, file: &Path, wait: bool) -> Result<u8, SandboxCmdError> {
    let (policy_name, policy) = read_policy(&Some(file.to_path_buf()))?;
    let response = call(&Request::PolicySet { name: sandbox.to_owned(), policy_name, policy, wait })?;
    if let Response::Done { message } = response {
        if out.json() {
            out.print_json(&json!({"accepted": true, "message": message}));
        } else {
            out.info(&message);
        }
    }
    Ok(0)
}

/// `openshell policy get SANDBOX` (the current text) and `policy history SANDBOX`.
pub fn policy_get(out: &Output, sandbox: &str, all: bool) -> Result<u8, SandboxCmdError> {
    let Response::Policies { revisions } = call(&Request::PolicyGet { name: sandbox.to_owned(), all })? else {
        return Err(fail("unexpected answer"));
    };
    if out.json() {
        if all {
            out.print_json(&revisions);
        } else if let Some(current) = revisions.last() {
            out.print_json(current);
        }
        return Ok(0);
    }
    if all {
        out.line(&format!("{:<9} {:<10} SOURCE", "REVISION", "CREATED"));
        for r in &revisions {
            out.line(&format!("{:<9} {:<10} {}", r.revision, age(r.created), r.name));
        }
    } else if let Some(current) = revisions.last() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(current.text.as_bytes());
    }
    Ok(0)
}

fn tls_dir_of(dir: &GatewayDir, given: Option<PathBuf>) -> openshell_gateway::tls::TlsDir {
    openshell_gateway::tls::TlsDir(given.unwrap_or_else(|| dir.0.join("tls")))
}

/// `sandbox create` against a remote gateway: the image uploaded when it lacks
/// it, stdio through the call's streams.
fn create_remote(
    out: &Output,
    remote: &Remote,
    args: &CreateArgs,
    request: Request,
    store: &openshell_store::Store,
    image: &ImageRecord,
    target: Option<&Target>,
) -> Result<u8, SandboxCmdError> {
    let Request::Create(create) = request else { return Err(fail("not a create")) };
    let attach = create.attach;
    let mut named = |s: &SandboxInfo| {
        if let Some(target) = target {
            aim(target, &s.name);
        }
    };
    let run = |named: &mut dyn FnMut(&SandboxInfo)| {
        remote.run(v1::run_input::Input::Create(create.clone().into()), RunIo::inherited(attach), named, None)
    };
    let end = match run(&mut named) {
        Err(ClientError::Api(e)) if e.code == ErrorCode::ImageNotFound => {
            upload_image(store, image).map_err(run_failed)?;
            run(&mut named)
        }
        other => other,
    };
    match end.map_err(run_failed)? {
        RunEnd::Exited(code) => Ok(code.clamp(0, 255) as u8),
        RunEnd::Detached(sandbox) if args.command.is_empty() && !args.detach => {
            let code = exec_tty(&sandbox.name, shell(), args.env.clone(), true);
            if args.rm {
                let _ = call(&Request::Delete { name: sandbox.name.clone() });
            }
            code
        }
        RunEnd::Detached(sandbox) => {
            if out.json() {
                out.print_json(&sandbox);
            } else {
                out.line(&sandbox.name);
            }
            Ok(0)
        }
    }
}

/// `sandbox exec` against a remote gateway: with a terminal, this one raw and
/// its size kept in step.
fn exec_remote(
    remote: &Remote,
    name: &str,
    args: Vec<String>,
    env: Vec<String>,
    tty: bool,
) -> Result<u8, SandboxCmdError> {
    let size = || {
        rustix::termios::tcgetwinsize(std::io::stdin())
            .ok()
            .map(|w| v1::WindowSize { rows: u32::from(w.ws_row), cols: u32::from(w.ws_col) })
    };
    let target = forward_signals();
    aim(&target, name);
    let exec = v1::ExecRequest { name: name.to_owned(), args, env, tty, size: if tty { size() } else { None } };
    let stdin = std::io::stdin();
    let saved = if tty { rustix::termios::tcgetattr(&stdin).ok() } else { None };
    if let Some(saved) = &saved {
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
    }
    let resizes = if tty {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH]) {
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    if let Some(size) = size()
                        && tx.send(size).is_err()
                    {
                        break;
                    }
                }
            });
        }
        Some(rx)
    } else {
        None
    };
    let end = remote.run(v1::run_input::Input::Exec(exec), RunIo::inherited(true), &mut |_| {}, resizes);
    if let Some(saved) = &saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, saved);
    }
    match end.map_err(run_failed)? {
        RunEnd::Exited(code) => Ok(code.clamp(0, 255) as u8),
        RunEnd::Detached(_) => Err(run_failed(fail("the exec ended without an exit code"))),
    }
}
