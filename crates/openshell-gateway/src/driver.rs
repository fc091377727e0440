//! Where sandboxes run. The gateway talks to a [`Driver`]; the local driver (the
//! embedded default) runs them on this host through libcontainer, with one
//! supervisor process per running sandbox, so sandboxes outlive the gateway.
//! Other drivers (Docker, Kubernetes) implement the same trait.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::signal::Signal;
use openshell_oci::spec::ImageConfiguration;
use openshell_policy::KernelProfile;
use openshell_sandbox::disk::Disk;
use openshell_sandbox::idmap::IdMap;
use openshell_sandbox::rootfs::LayerCache;
use openshell_sandbox::sandbox::{ExitRecord, PlacedFile, SandboxConfig, SandboxDir, write_json};
use openshell_sandbox::{ProcessConfig, SpecInput, Writable, resolve_group, resolve_user, runtime_spec};
use openshell_store::{Digest, Store};

use crate::proto::{CreateRequest, HelperMessage, Job};
use crate::{GatewayDir, wire};

/// Why a driver operation failed; the message is for people.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

impl DriverError {
    fn new(message: impl std::fmt::Display) -> DriverError {
        DriverError(message.to_string())
    }
}

/// What creation fixed.
#[derive(Debug, Clone)]
pub struct Created {
    pub image: String,
    pub image_digest: String,
    /// The image's environment (with a default PATH): the base of every job's.
    pub env: Vec<String>,
    /// The sandbox's egress proxy, when its policy has network policies (its
    /// trust bundle is then at [`CA_BUNDLE`]).
    pub proxy: Option<String>,
}

impl Created {
    /// The job of a sandbox created by `req`: its command (none: idle) and the
    /// image's environment with the request's entries on top. `route`: the
    /// inference route's provider type, when one exists: the agents' SDKs are
    /// pointed at the router (with a placeholder key: the real one never enters
    /// the sandbox).
    pub fn job(
        &self,
        req: &CreateRequest,
        route: Option<openshell_proxy::router::ProviderKind>,
    ) -> openshell_sandbox::init::Job {
        let mut env = self.env.clone();
        if let (Some(kind), Some(_)) = (route, &self.proxy) {
            for (k, v) in routed_env(kind) {
                env.retain(|e| e.split_once('=').map(|(key, _)| key) != Some(k));
                env.push(format!("{k}={v}"));
            }
        }
        if let Some(proxy) = &self.proxy {
            // Every client finds the proxy; Node's fetch only with NODE_USE_ENV_PROXY.
            let no_proxy = "localhost,127.0.0.1,::1";
            for (k, v) in [
                ("HTTP_PROXY", proxy.as_str()),
                ("HTTPS_PROXY", proxy),
                ("ALL_PROXY", proxy),
                ("http_proxy", proxy),
                ("https_proxy", proxy),
                ("all_proxy", proxy),
                ("NO_PROXY", no_proxy),
                ("no_proxy", no_proxy),
                ("NODE_USE_ENV_PROXY", "1"),
                // The trust bundle: system roots plus the CA of L7 inspection.
                ("SSL_CERT_FILE", CA_BUNDLE),
                ("REQUESTS_CA_BUNDLE", CA_BUNDLE),
                ("CURL_CA_BUNDLE", CA_BUNDLE),
                ("NODE_EXTRA_CA_CERTS", CA_BUNDLE),
                ("GIT_SSL_CAINFO", CA_BUNDLE),
            ] {
                env.retain(|e| e.split_once('=').map(|(key, _)| key) != Some(k));
                env.push(format!("{k}={v}"));
            }
        }
        for kv in &req.env {
            let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
            env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(kv.clone());
        }
        openshell_sandbox::init::Job { args: req.command.clone(), env, idle: req.command.is_empty() }
    }
}

/// What a sandbox's agents get when an inference route exists: base URLs at the
/// privacy router, a key that is only a placeholder, and opencode's providers
/// at the router with a default model of the route's API (the router rewrites
/// the model; codex, whose base URL is built in, is routed by host).
pub fn routed_env(kind: openshell_proxy::router::ProviderKind) -> Vec<(&'static str, String)> {
    use openshell_proxy::router::ProviderKind;
    let provider = r#""options":{"baseURL":"https://inference.local/v1","apiKey":"openshell-routed"}"#;
    let model = match kind {
        ProviderKind::Anthropic => "anthropic/claude-sonnet-4-5",
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => "openai/gpt-4.1",
    };
    vec![
        ("ANTHROPIC_BASE_URL", "https://inference.local".to_owned()),
        ("ANTHROPIC_API_KEY", ROUTED_KEY.to_owned()),
        ("OPENAI_BASE_URL", "https://inference.local/v1".to_owned()),
        ("OPENAI_API_KEY", ROUTED_KEY.to_owned()),
        (
            "OPENCODE_CONFIG_CONTENT",
            format!(r#"{{"model":"{model}","provider":{{"anthropic":{{{provider}}},"openai":{{{provider}}}}}}}"#),
        ),
    ]
}

/// The placeholder key routed sandboxes see (the router replaces it).
pub const ROUTED_KEY: &str = "openshell-routed";

/// A started run: its process 1 and the handle to wait for its end.
pub struct Run {
    pub pid: i32,
    pub supervisor_pid: i32,
    pub waiter: Waiter,
}

/// Waits for the end of a run (or of an exec).
pub struct Waiter {
    child: Child,
    control: OwnedFd,
}

impl Waiter {
    /// The exit code as soon as the helper reports it, or why there is none (the
    /// helper failed or died). The helper may still be cleaning up: [`Waiter::reap`].
    pub fn code(&mut self) -> Result<i32, String> {
        while let Ok(Some((message, _))) = wire::recv::<HelperMessage>(&self.control) {
            match message {
                HelperMessage::Exited { code } => return Ok(code),
                HelperMessage::Failed { message } => return Err(message),
                _ => {}
            }
        }
        Err("the helper process ended without a result".to_owned())
    }

    /// Waits for the helper process to end (its cleanup done); a failure it
    /// reports after the exit code is returned.
    pub fn reap(mut self) -> Result<(), String> {
        let mut outcome = Ok(());
        while let Ok(Some((message, _))) = wire::recv::<HelperMessage>(&self.control) {
            if let HelperMessage::Failed { message } = message {
                outcome = Err(message);
            }
        }
        let _ = self.child.wait();
        outcome
    }

    /// Ends an unassigned helper: closing its control socket is its signal to
    /// discard the sandbox; then waits for it to finish.
    pub fn discard(self) {
        let Waiter { mut child, control } = self;
        drop(control);
        let _ = child.wait();
    }

    /// The exit code once the helper has ended.
    pub fn wait(mut self) -> Result<i32, String> {
        let code = self.code();
        let reaped = self.reap();
        let code = code?;
        reaped.map(|()| code)
    }

    /// The next message from the helper (with its descriptors).
    pub fn next(&self) -> Option<(HelperMessage, Vec<OwnedFd>)> {
        wire::recv::<HelperMessage>(&self.control).ok().flatten()
    }
}

/// The boundary between the gateway (state, API) and where sandboxes run.
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;
    /// Fixes everything about a new sandbox (image, spec, policy) without starting
    /// it; its job (command, environment) is set apart ([`Driver::set_job`]).
    fn create(&self, id: &str, req: &CreateRequest) -> Result<Created, DriverError>;
    /// The manifest digest the request's image reference names now.
    fn image_digest(&self, req: &CreateRequest) -> Result<String, DriverError>;
    /// Sets what the sandbox's process 1 runs (at its next start or assignment).
    fn set_job(&self, id: &str, job: &openshell_sandbox::init::Job) -> Result<(), DriverError>;
    /// Starts the sandbox's process 1 with its job, with the client's stdio when given.
    fn start(&self, id: &str, stdio: Vec<OwnedFd>) -> Result<Run, DriverError>;
    /// Starts the sandbox's process 1 ahead of need: it waits for [`Driver::assign`].
    /// Dropping the run unassigned discards the sandbox (its files go with it).
    fn standby(&self, id: &str) -> Result<Run, DriverError>;
    /// Gives a standby sandbox its job (set before) and the client's stdio.
    fn assign(&self, run: &Run, stdio: Vec<OwnedFd>) -> Result<(), DriverError>;
    /// Runs one more process in a running sandbox; `tty` answers with a terminal.
    fn exec(
        &self,
        id: &str,
        args: &[String],
        env: &[String],
        tty: bool,
        stdio: Vec<OwnedFd>,
    ) -> Result<Waiter, DriverError>;
    /// Signals the running sandbox's process 1 (which passes it on to the
    /// workload), through a pidfd: a process that ended is never confused with
    /// one that reused its number.
    fn signal(&self, id: &str, signal: Signal) -> Result<(), DriverError>;
    /// Whether a supervisor found in the state still runs this sandbox.
    fn alive(&self, id: &str, supervisor_pid: i32) -> bool;
    /// Takes over a sandbox a previous gateway started: pidfds of its supervisor
    /// and process 1, each checked to be the recorded process after it was
    /// opened (the supervisor by its start time, process 1 as its child). False
    /// when either is gone.
    fn adopt(&self, id: &str, supervisor_pid: i32, init_pid: i32) -> bool;
    /// Blocks until the supervisor of an adopted sandbox has ended.
    fn wait_adopted(&self, id: &str);
    /// How the sandbox's last run ended, if it did.
    fn last_exit(&self, id: &str) -> Option<ExitRecord>;
    /// The sandbox's output log.
    fn log_path(&self, id: &str) -> PathBuf;
    /// The sandbox's audit log (network decisions).
    fn audit_path(&self, id: &str) -> PathBuf;
    /// Whether the sandbox has a network (and a proxy) at all.
    fn has_network(&self, id: &str) -> bool;
    /// Hands a new network policy revision to the sandbox's proxy: at once when
    /// it is `running` (confirmed when `wait`), else at its next start.
    fn reload_network(
        &self,
        id: &str,
        revision: i64,
        name: &str,
        text: &str,
        running: bool,
        wait: bool,
    ) -> Result<Applied, DriverError>;
    /// Hands the inference route to the sandbox's proxy (the file is owner-only:
    /// it holds the backend's credential); like [`Driver::reload_network`].
    fn set_route(
        &self,
        id: &str,
        route: &crate::helper::RouteFile,
        running: bool,
        wait: bool,
    ) -> Result<Applied, DriverError>;
    /// Removes everything of a stopped sandbox.
    fn remove(&self, id: &str) -> Result<(), DriverError>;
}

/// Runs sandboxes on this host (libcontainer).
pub struct LocalDriver {
    dir: GatewayDir,
    /// The `openshell` executable, for helper processes.
    exe: PathBuf,
    /// A helper process started ahead of need (`openshell gateway helper`).
    spare: std::sync::Arc<std::sync::Mutex<Option<Spare>>>,
    /// Held while a sandbox's network is numbered (creates run concurrently).
    numbering: std::sync::Mutex<()>,
    /// The host range sandboxes' ids map to, and whether layers can be mounted
    /// idmapped here: found at the first create.
    user_namespaces: std::sync::OnceLock<Result<(IdMap, bool), String>>,
    /// Pidfds of each running sandbox's supervisor and process 1, by sandbox id.
    running: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Pidfds>>>,
}

/// A running sandbox's processes, as pidfds: signals never reach a process that
/// reused one's number.
#[derive(Debug)]
pub struct Pidfds {
    pub supervisor: OwnedFd,
    pub init: OwnedFd,
}

/// Sends `signal` through `pidfd`; a process that has ended is not an error.
pub fn signal_pidfd(pidfd: &OwnedFd, signal: Signal) -> Result<(), DriverError> {
    let sig = rustix::process::Signal::from_named_raw(signal as i32)
        .ok_or_else(|| DriverError::new(format!("signal {signal} has no pidfd form")))?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(DriverError::new(format!("signalling through a pidfd: {e}"))),
    }
}

/// What became of a network policy revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The proxy confirmed it: new connections are decided by it.
    Confirmed,
    /// Handed to the running proxy (not waited for).
    Sent,
    /// The sandbox is not running: its proxy starts with it.
    AtStart,
}

/// The port of every sandbox's proxy, on the host end of its link.
pub const PROXY_PORT: u16 = 3128;

/// A helper process waiting for its job.
struct Spare {
    child: Child,
    control: OwnedFd,
}

fn spawn_helper(exe: &Path, dir: &GatewayDir) -> Result<Spare, DriverError> {
    let (ours, theirs) = wire::pair().map_err(DriverError::new)?;
    let log_path = dir.0.join("helpers.log");
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| DriverError::new(format!("{}: {e}", log_path.display())))
    };
    use std::os::unix::process::CommandExt;
    let child = Command::new(exe)
        .args(["gateway", "helper"])
        .stdin(std::process::Stdio::from(theirs))
        .stdout(open_log()?)
        .stderr(open_log()?)
        .process_group(0)
        .spawn()
        .map_err(|e| DriverError::new(format!("starting {} gateway helper: {e}", exe.display())))?;
    Ok(Spare { child, control: ours })
}

impl LocalDriver {
    pub fn new(dir: GatewayDir, exe: PathBuf) -> LocalDriver {
        let driver = LocalDriver {
            dir,
            exe,
            spare: Default::default(),
            numbering: Default::default(),
            user_namespaces: Default::default(),
            running: Default::default(),
        };
        driver.refill();
        driver
    }

    fn sandbox(&self, id: &str) -> SandboxDir {
        SandboxDir(self.dir.sandboxes().join(id))
    }

    /// The pidfds of a sandbox's current run (or of its last one: signals
    /// through them reach nothing once it ended).
    fn pidfds(&self, id: &str) -> Option<std::sync::Arc<Pidfds>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Keeps a started run's pidfds.
    fn record(&self, id: &str, (run, pidfds): (Run, Pidfds)) -> Result<Run, DriverError> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), pidfds.into());
        Ok(run)
    }

    /// The range sandboxes' ids map to (`OPENSHELL_ID_RANGE`, else the dedicated
    /// user's, made when missing) and whether layers can be idmapped here (else
    /// they are unpacked with shifted owners).
    fn user_namespaces(&self) -> Result<(IdMap, bool), DriverError> {
        self.user_namespaces
            .get_or_init(|| {
                let ids = IdMap::for_host().map_err(|e| format!("the sandboxes' user namespace: {e}"))?;
                let idmapped = openshell_sandbox::rootfs::idmapped_overlay_works(&self.dir.layers(), &ids);
                if !idmapped {
                    tracing::warn!("this kernel cannot idmap image layers; they are unpacked with shifted owners");
                }
                Ok((ids, idmapped))
            })
            .clone()
            .map_err(DriverError)
    }

    /// The lowest network number no sandbox directory holds.
    fn number_network(&self, id: &str) -> Result<openshell_sandbox::fence::Fence, DriverError> {
        let mut used = std::collections::HashSet::new();
        for entry in std::fs::read_dir(self.dir.sandboxes()).into_iter().flatten().flatten() {
            if let Ok(config) = SandboxDir(entry.path()).read_config()
                && let Some(fence) = config.network
            {
                used.insert(fence.host_addr);
            }
        }
        let host_if = format!("osh{}", &id[..id.len().min(12)]);
        // Other gateways on this machine number their sandboxes too: start at a place
        // of this id's own, and skip addresses the host has already (a bind to one
        // succeeds only when it is local).
        let start = u32::from_str_radix(&id[..id.len().min(4)], 16).unwrap_or(0);
        (0..1u32 << 14)
            .filter_map(|i| {
                openshell_sandbox::fence::Fence::numbered((start + i) % (1 << 14), host_if.clone(), PROXY_PORT)
            })
            .find(|f| !used.contains(&f.host_addr) && std::net::TcpListener::bind((f.host_addr, 0)).is_err())
            .ok_or_else(|| DriverError::new("no free sandbox network in 10.213.0.0/16"))
    }

    /// Starts the next spare helper in the background.
    fn refill(&self) {
        let (exe, dir, spare) = (self.exe.clone(), self.dir.clone(), std::sync::Arc::clone(&self.spare));
        std::thread::spawn(move || match spawn_helper(&exe, &dir) {
            Ok(new) => {
                let mut slot = spare.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(new);
                    return;
                }
                drop(slot);
                // One is ready already: closing its control socket ends this one.
                let Spare { mut child, control } = new;
                drop(control);
                let _ = child.wait();
            }
            Err(e) => tracing::warn!(%e, "starting a spare helper"),
        });
    }

    /// Gives a helper its job: the spare one when it is ready, else a new one.
    fn helper(&self, attach: HelperMessage, stdio: &[OwnedFd]) -> Result<Waiter, DriverError> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut helper = match spare {
            Some(mut s) => match s.child.try_wait() {
                Ok(None) => s,
                _ => spawn_helper(&self.exe, &self.dir)?,
            },
            None => spawn_helper(&self.exe, &self.dir)?,
        };
        self.refill();
        let fds: Vec<_> = stdio.iter().map(|f| f.as_fd()).collect();
        if let Err(e) = wire::send(&helper.control, &attach, &fds) {
            let _ = helper.child.kill();
            let _ = helper.child.wait();
            return Err(DriverError::new(format!("gateway helper: {e}")));
        }
        Ok(Waiter { child: helper.child, control: helper.control })
    }
}

/// Waits for a supervisor's `Started` (or its failure); the pidfds of the
/// supervisor (our child, not reaped) and of process 1 (sent by its parent).
fn started(waiter: Waiter, dir: SandboxDir) -> Result<(Run, Pidfds), DriverError> {
    let supervisor_pid = waiter.child.id() as i32;
    let supervisor = crate::helper::pidfd(supervisor_pid);
    match waiter.next() {
        Some((HelperMessage::Started { pid }, fds)) => {
            let init = fds.into_iter().next();
            match (supervisor, init) {
                (Ok(supervisor), Some(init)) => Ok((Run { pid, supervisor_pid, waiter }, Pidfds { supervisor, init })),
                (Err(e), _) => Err(DriverError::new(format!("a pidfd of the supervisor: {e}"))),
                (_, None) => Err(DriverError::new("the supervisor sent no pidfd of process 1")),
            }
        }
        Some((HelperMessage::Failed { message }, _)) => {
            let _ = waiter.wait();
            Err(DriverError::new(message))
        }
        other => {
            let _ = waiter.wait();
            Err(DriverError::new(format!(
                "the sandbox's supervisor ended without starting it ({other:?}); see {}",
                dir.0.join("helper.log").display()
            )))
        }
    }
}

/// The image's environment, command (`Entrypoint` then `Cmd`) and working directory.
fn image_config(config: &ImageConfiguration) -> (Vec<String>, Vec<String>, String) {
    let Some(c) = config.config() else { return (Vec::new(), Vec::new(), "/".to_owned()) };
    let mut args = c.entrypoint().clone().unwrap_or_default();
    args.extend(c.cmd().iter().flatten().cloned());
    let workdir = c.working_dir().as_deref().filter(|w| !w.is_empty()).unwrap_or("/").to_owned();
    (c.env().clone().unwrap_or_default(), args, workdir)
}

/// `/etc/<name>` of the image: the top-most layer that has it.
/// Signals a running supervisor that a new file awaits its proxy and, with
/// `wait`, waits (5 s at most) for its answer in `applied` to reach `revision`.
fn hand_over(
    applied: &Path,
    supervisor: Option<std::sync::Arc<Pidfds>>,
    signal: Signal,
    revision: u64,
    wait: bool,
) -> Result<Applied, DriverError> {
    let Some(pidfds) = supervisor else { return Ok(Applied::AtStart) };
    let _ = std::fs::remove_file(applied);
    signal_pidfd(&pidfds.supervisor, signal)?;
    if !wait {
        return Ok(Applied::Sent);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Ok(bytes) = std::fs::read(applied)
            && let Ok(answer) = serde_json::from_slice::<crate::helper::Applied>(&bytes)
            && answer.revision >= revision
        {
            return match answer.error {
                None => Ok(Applied::Confirmed),
                Some(e) => Err(DriverError::new(e)),
            };
        }
        if std::time::Instant::now() > deadline {
            return Err(DriverError::new("the proxy did not confirm within 5 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A file of the image (`rel` relative to its root), from the topmost layer
/// that has it. Symlinks resolve inside that layer, never onto the host.
fn image_file(layers: &[PathBuf], rel: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    layers.iter().rev().find_map(|layer| {
        let root = rustix::fs::open(layer, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        let fd = rustix::fs::openat2(&root, rel, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), how).ok()?;
        std::io::read_to_string(std::fs::File::from(fd)).ok()
    })
}

/// Where a sandbox with an egress proxy finds its trust bundle (the image's
/// system roots plus the sandbox's CA).
pub const CA_BUNDLE: &str = "/etc/openshell/ca-bundle.pem";
/// The sandbox CA's certificate and key, in the sandbox directory (host side).
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Makes the sandbox's CA (key owner-only, on the host side) and puts the
/// trust bundle into its writable layer, where the sandbox reads it.
/// Makes the sandbox's CA (key owner-only, on the host side) and its trust
/// bundle, which the supervisor puts into the sandbox's root at every start.
fn install_ca(dir: &SandboxDir, id: &str, layers: &[PathBuf]) -> Result<PlacedFile, DriverError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let ca = openshell_proxy::SandboxCa::generate(id).map_err(DriverError::new)?;
    let write = |path: PathBuf, text: &str, mode: u32| -> Result<(), DriverError> {
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| DriverError::new(format!("{}: {e}", path.display())))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .and_then(|()| file.write_all(text.as_bytes()))
            .map_err(|e| DriverError::new(format!("{}: {e}", path.display())))
    };
    write(dir.0.join(CA_KEY_FILE), ca.key_pem(), 0o600)?;
    write(dir.0.join(CA_CERT_FILE), ca.cert_pem(), 0o644)?;
    let roots = image_file(layers, openshell_proxy::tls::SYSTEM_BUNDLE);
    if roots.is_none() {
        tracing::warn!(sandbox = id, "the image has no system roots; its trust bundle holds only the sandbox CA");
    }
    let bundle = openshell_proxy::tls::trust_bundle(roots.as_deref(), &ca);
    let source = dir.0.join(CA_BUNDLE_FILE);
    write(source.clone(), &bundle, 0o644)?;
    Ok(PlacedFile { path: CA_BUNDLE.to_owned(), source, mode: 0o644 })
}

/// The trust bundle on the host side (the supervisor copies it into the root).
pub const CA_BUNDLE_FILE: &str = "ca-bundle.pem";

impl Driver for LocalDriver {
    fn name(&self) -> &'static str {
        "local"
    }

    fn create(&self, id: &str, req: &CreateRequest) -> Result<Created, DriverError> {
        let policy = openshell_policy::load_str(&req.policy_name, &req.policy).map_err(DriverError::new)?;
        let store = Store::open(&req.store).map_err(DriverError::new)?;
        let rec = openshell_build::images::find(&store, &req.image).map_err(DriverError::new)?;
        let (manifest, config) = openshell_build::images::documents(&store, &rec).map_err(DriverError::new)?;
        let blobs: Vec<&str> = manifest.layers().iter().map(|l| l.digest().as_ref()).collect();
        let diff_ids: Vec<&str> = config.rootfs().diff_ids().iter().map(String::as_str).collect();
        if blobs.len() != diff_ids.len() {
            return Err(DriverError::new(format!(
                "image {}: {} layers but {} diff_ids",
                rec.reference(),
                blobs.len(),
                diff_ids.len()
            )));
        }
        let (ids, idmapped) = self.user_namespaces()?;
        let cache = LayerCache::open(self.dir.layers()).map_err(DriverError::new)?;
        let mut layers = Vec::new();
        for (blob, diff_id) in blobs.iter().zip(&diff_ids) {
            let parse = |d: &str| d.parse::<Digest>().map_err(|e| DriverError::new(format!("image layer {d}: {e}")));
            let (blob, diff_id) = (parse(blob)?, parse(diff_id)?);
            let layer = if idmapped {
                cache.ensure(&store, &blob, &diff_id)
            } else {
                cache.ensure_shifted(&store, &blob, &diff_id, &ids)
            };
            layers.push(layer.map_err(DriverError::new)?);
        }
        let (image_env, image_args, image_cwd) = image_config(&config);
        let workdir =
            if image_cwd == "/" { openshell_policy::profile::DEFAULT_WORKDIR.to_owned() } else { image_cwd.clone() };
        let profile = KernelProfile::compile(&policy, &workdir);
        let passwd = image_file(&layers, "etc/passwd").unwrap_or_default();
        let uid = resolve_user(profile.user.user, &passwd).map_err(DriverError::new)?;
        let group = image_file(&layers, "etc/group").unwrap_or_default();
        let gid = resolve_group(profile.user.group, &group).map_err(DriverError::new)?;

        let dir = self.sandbox(id);
        std::fs::create_dir_all(dir.bundle()).map_err(|e| DriverError::new(format!("{}: {e}", dir.0.display())))?;
        // Process 1 runs its job (job.json); the spec names the image's command.
        let args = if image_args.is_empty() { vec!["/bin/sh".to_owned()] } else { image_args };
        let mut env = image_env;
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let mut writable = Vec::new();
        let mut bind_paths = Vec::new();
        for path in &profile.mounts.read_write {
            if path == "/tmp" {
                writable.push(Writable::Tmpfs { path: path.clone() });
            } else if !path.starts_with("/dev/") && path != "/" {
                // Bound from the directory the supervisor resolves inside the overlay
                // at each start (see `SandboxDir::bind_source`), never from a path
                // string through the sandbox's own files.
                writable.push(Writable::Bind { path: path.clone(), source: dir.bind_source(bind_paths.len()) });
                bind_paths.push(path.clone());
            }
        }
        let spec = runtime_spec(&SpecInput {
            profile: &profile,
            process: ProcessConfig { args, env: env.clone(), cwd: image_cwd, terminal: false },
            uid,
            gid,
            rootfs: dir.rootfs(),
            hostname: format!("sandbox-{id}"),
            writable,
            cgroups_path: format!("/openshell/{id}"),
            ids: Some(ids),
        })
        .map_err(DriverError::new)?;
        // The seccomp filter is compiled once, here, and installed from BPF at every
        // start and exec (libcontainer would compile it each time).
        let mut spec = spec;
        if let Some(filter) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
            openshell_sandbox::seccomp_bpf::compile_to(&filter, &dir.bpf()).map_err(DriverError::new)?;
            write_json(&dir.0.join("seccomp.json"), &filter).map_err(DriverError::new)?;
            if let Some(linux) = spec.linux_mut() {
                linux.set_seccomp(None);
            }
        }
        let spec_path = dir.bundle().join("config.json");
        write_json(&spec_path, &spec).map_err(DriverError::new)?;
        std::fs::write(dir.policy(), &req.policy)
            .map_err(|e| DriverError::new(format!("{}: {e}", dir.policy().display())))?;
        // A sandbox with network policies gets a fenced link to its own proxy;
        // without any, loopback alone (network policies cannot be added later).
        let _numbering = self.numbering.lock().unwrap_or_else(|p| p.into_inner());
        let network = if policy.network_policies.is_empty() { None } else { Some(self.number_network(id)?) };
        let proxy = network.as_ref().map(|f| f.proxy_url());
        let files = match network {
            Some(_) => vec![install_ca(&dir, id, &layers)?],
            None => Vec::new(),
        };
        // The writable layer on a filesystem of the policy's size.
        let disk = Disk { image: dir.0.join("disk.img"), size: profile.storage.disk };
        disk.create(&self.dir.0.join("disk-templates")).map_err(DriverError::new)?;
        let config = SandboxConfig {
            network,
            id: id.to_owned(),
            state_root: self.dir.containers(),
            layers,
            workdir,
            uid,
            gid,
            bind_paths,
            ids: Some(ids),
            idmapped_layers: idmapped,
            disk: Some(disk),
            files,
        };
        write_json(&dir.config(), &config).map_err(DriverError::new)?;
        Ok(Created { image: rec.reference(), image_digest: rec.manifest.clone(), env, proxy })
    }

    fn image_digest(&self, req: &CreateRequest) -> Result<String, DriverError> {
        let store = Store::open(&req.store).map_err(DriverError::new)?;
        Ok(openshell_build::images::find(&store, &req.image).map_err(DriverError::new)?.manifest)
    }

    fn set_job(&self, id: &str, job: &openshell_sandbox::init::Job) -> Result<(), DriverError> {
        write_json(&self.sandbox(id).job(), job).map_err(DriverError::new)
    }

    fn standby(&self, id: &str) -> Result<Run, DriverError> {
        let attach = HelperMessage::Attach {
            job: Job::Standby,
            dir: self.sandbox(id).0,
            args: Vec::new(),
            env: Vec::new(),
            tty: false,
        };
        let waiter = self.helper(attach, &[])?;
        self.record(id, started(waiter, self.sandbox(id))?)
    }

    fn assign(&self, run: &Run, stdio: Vec<OwnedFd>) -> Result<(), DriverError> {
        let fds: Vec<_> = stdio.iter().map(|f| f.as_fd()).collect();
        wire::send(&run.waiter.control, &HelperMessage::Assign, &fds)
            .map_err(|e| DriverError::new(format!("assigning a standby sandbox: {e}")))
    }

    fn start(&self, id: &str, stdio: Vec<OwnedFd>) -> Result<Run, DriverError> {
        let _ = std::fs::remove_file(self.sandbox(id).exit());
        let attach = HelperMessage::Attach {
            job: Job::Supervise,
            dir: self.sandbox(id).0,
            args: Vec::new(),
            env: Vec::new(),
            tty: false,
        };
        let waiter = self.helper(attach, &stdio)?;
        drop(stdio);
        self.record(id, started(waiter, self.sandbox(id))?)
    }

    fn exec(
        &self,
        id: &str,
        args: &[String],
        env: &[String],
        tty: bool,
        stdio: Vec<OwnedFd>,
    ) -> Result<Waiter, DriverError> {
        let attach = HelperMessage::Attach {
            job: Job::Exec,
            dir: self.sandbox(id).0,
            args: args.to_vec(),
            env: env.to_vec(),
            tty,
        };
        self.helper(attach, &stdio)
    }

    fn signal(&self, id: &str, signal: Signal) -> Result<(), DriverError> {
        let pidfds = self.pidfds(id).ok_or_else(|| DriverError::new(format!("sandbox {id} is not running")))?;
        signal_pidfd(&pidfds.init, signal)
    }

    fn adopt(&self, id: &str, supervisor_pid: i32, init_pid: i32) -> bool {
        let opened = crate::helper::pidfd(supervisor_pid).and_then(|s| crate::helper::pidfd(init_pid).map(|i| (s, i)));
        let Ok((supervisor, init)) = opened else { return false };
        // Checked after opening: the pidfds hold the processes, so what the
        // checks see is what the pidfds name.
        let own_child = crate::helper::parent(init_pid) == Some(supervisor_pid);
        if !self.alive(id, supervisor_pid) || !own_child {
            return false;
        }
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), Pidfds { supervisor, init }.into());
        true
    }

    fn wait_adopted(&self, id: &str) {
        if let Some(pidfds) = self.pidfds(id) {
            let mut fds = [rustix::event::PollFd::new(&pidfds.supervisor, rustix::event::PollFlags::IN)];
            while let Err(rustix::io::Errno::INTR) = rustix::event::poll(&mut fds, None) {}
        }
    }

    fn alive(&self, id: &str, supervisor_pid: i32) -> bool {
        // The supervisor recorded its pid and start time: a reused pid does not match.
        let record =
            std::fs::read_to_string(self.sandbox(id).0.join(crate::helper::SUPERVISOR_FILE)).unwrap_or_default();
        let mut fields = record.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (Some(Some(pid)), Some(Some(started))) = (fields.next(), fields.next()) else { return false };
        pid == supervisor_pid as u64 && crate::helper::start_time(supervisor_pid) == Some(started)
    }

    fn last_exit(&self, id: &str) -> Option<ExitRecord> {
        self.sandbox(id).read_exit()
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.sandbox(id).log()
    }

    fn audit_path(&self, id: &str) -> PathBuf {
        self.sandbox(id).0.join(crate::helper::AUDIT_FILE)
    }

    fn has_network(&self, id: &str) -> bool {
        self.sandbox(id).read_config().is_ok_and(|c| c.network.is_some())
    }

    fn reload_network(
        &self,
        id: &str,
        revision: i64,
        name: &str,
        text: &str,
        running: bool,
        wait: bool,
    ) -> Result<Applied, DriverError> {
        let dir = self.sandbox(id);
        let record =
            crate::helper::NetworkRevision { revision: revision as u64, name: name.to_owned(), text: text.to_owned() };
        write_json(&dir.0.join(crate::helper::NETWORK_FILE), &record).map_err(DriverError::new)?;
        let supervisor = self.pidfds(id).filter(|_| running);
        let signal = nix::sys::signal::Signal::SIGHUP;
        hand_over(&dir.0.join(crate::helper::APPLIED_FILE), supervisor, signal, revision as u64, wait)
    }

    fn set_route(
        &self,
        id: &str,
        route: &crate::helper::RouteFile,
        running: bool,
        wait: bool,
    ) -> Result<Applied, DriverError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.sandbox(id);
        let path = dir.0.join(crate::helper::ROUTE_FILE);
        let tmp = dir.0.join(format!("{}.tmp", crate::helper::ROUTE_FILE));
        let bytes = serde_json::to_vec(route).map_err(DriverError::new)?;
        let _ = std::fs::remove_file(&tmp);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| DriverError::new(format!("{}: {e}", path.display())))?;
        let supervisor = self.pidfds(id).filter(|_| running);
        let signal = nix::sys::signal::Signal::SIGUSR1;
        hand_over(&dir.0.join(crate::helper::ROUTE_APPLIED_FILE), supervisor, signal, route.generation, wait)
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let dir = self.sandbox(id);
        // Its mounts lived in its supervisor's own mount namespace: nothing to unmount.
        // The container's state knows its cgroups: libcontainer removes both.
        let state = self.dir.containers().join(id);
        if state.exists() {
            match libcontainer::container::Container::load(state.clone()) {
                Ok(mut container) => {
                    if let Err(e) = container.delete(true) {
                        tracing::warn!(%e, sandbox = id, "deleting the container");
                    }
                }
                Err(e) => tracing::warn!(%e, sandbox = id, "loading the container's state"),
            }
        }
        let _ = std::fs::remove_dir_all(&state);
        // Whatever is left of its cgroups.
        openshell_sandbox::sandbox::remove_cgroups(&format!("/openshell/{id}"));
        match std::fs::remove_dir_all(&dir.0) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::new(format!("{}: {e}", dir.0.display()))),
        }
    }
}
