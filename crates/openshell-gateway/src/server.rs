//! The gateway process: one per gateway directory (a file lock says which),
//! listening on an owner-only Unix socket, keeping state in SQLite, running
//! images from its own store, driving sandboxes through a [`Driver`].

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use openshell_driver::{Applied, Created, Driver, DriverError, Exec, ExecSpec, Job, LogKind, Pending, Run};
use openshell_gateway_api::proto::{
    API_VERSION, CreateRequest, Envelope, GatewayStatus, Phase, Request, Response, SandboxInfo,
};
use openshell_gateway_api::{ApiError, ErrorCode, GatewayDir, wire};
use openshell_store::Store;
use rustix::net::SocketFlags;

use crate::now;
use crate::state::{self, Database, Record, State, StateError};
use crate::tls::{Caller, Role};

mod audit;
mod grpc;
mod images;
mod inference;
mod leases;
mod listen;
mod pool;

/// Where remote clients reach the gateway: an address for the gRPC API with
/// mutual TLS, and the gateway's TLS files.
#[derive(Debug, Clone)]
pub struct Remote {
    pub listen: std::net::SocketAddr,
    pub tls: crate::tls::TlsDir,
}

/// How a gateway is run, beyond its directory and store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where remote clients reach it, if anywhere.
    pub remote: Option<Remote>,
    /// Its state (default: SQLite in its directory).
    pub database: Option<Database>,
    /// Where the local driver keeps its sandboxes (default: the gateway's
    /// directory). Replicas on one host that share a database share this too.
    pub driver_dir: Option<std::path::PathBuf>,
    /// How long a replica's hold on its sandboxes lasts without renewal: how
    /// soon another replica takes over those of one that died.
    pub lease: Duration,
    /// Where sandboxes run.
    pub driver: DriverChoice,
}

/// Where a gateway's sandboxes run.
#[derive(Debug, Clone)]
pub enum DriverChoice {
    /// In this process's own local driver (the default).
    Local,
    /// In a driver out of process, answering on this socket (`openshell gateway driver`).
    Socket(std::path::PathBuf),
    /// As containers on the local dockerd.
    Docker(openshell_driver_docker::DockerOptions),
    /// As pods on a Kubernetes cluster (the driver keeps its records in the driver directory).
    Kubernetes(openshell_driver_kubernetes::KubernetesOptions),
}

/// Set once `gateway stop` is being answered: the files the watchdog watches
/// go first (no new client connects), and that is not a reason to exit early.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--lease`'s default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a gateway already runs for {0}")]
    AlreadyRunning(std::path::PathBuf),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the gateway's store: {0}")]
    Store(#[from] openshell_store::StoreError),
    #[error("the {0} driver: {1}")]
    Driver(&'static str, DriverError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(crate::tls::TlsError),
    #[error("OPENSHELL_STANDBY is `{0}`: give the most standby sandboxes to keep, a whole number (0 keeps none)")]
    Standby(String),
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::NameTaken(_) => ApiError::new(ErrorCode::AlreadyExists, e.to_string()),
            e => ApiError::internal(e),
        }
    }
}

struct Gateway {
    dir: GatewayDir,
    /// Every mutating request and every refusal, with its caller.
    audit: audit::AuditLog,
    db: Mutex<Box<dyn State>>,
    /// This replica's name in leases (kept in its directory, so a restarted
    /// gateway takes its own sandboxes back at once).
    replica: String,
    /// Where the state is (for `gateway status`).
    database: Database,
    /// How long its leases last unrenewed.
    lease: Duration,
    /// Sandboxes this process watches (a watch thread or an attached run).
    watching: Mutex<std::collections::HashSet<String>>,
    /// The images sandboxes run, found by manifest digest.
    store: Store,
    driver: Arc<dyn Driver>,
    started: u64,
    /// Sandboxes whose last run is still being cleaned up by its supervisor (the
    /// exit was reported first); starting or removing them waits.
    cleaning: Mutex<std::collections::HashSet<String>>,
    cleaned: std::sync::Condvar,
    /// Sandboxes started ahead of need, by image and policy (`pool`).
    standby: Mutex<pool::Pool<Standby>>,
    /// Whether standby sandboxes are kept (`OPENSHELL_STANDBY=0` turns them
    /// off, and so does a driver that has none).
    pool: std::sync::atomic::AtomicBool,
    /// Standby sandboxes being made.
    refilling: std::sync::atomic::AtomicUsize,
}

/// A sandbox whose process 1 runs and waits for a job.
struct Standby {
    id: String,
    created: Created,
    pending: Box<dyn Pending>,
}

/// Requests with the same key can take the same standby sandbox: same image
/// (by manifest digest) and policy (the command and environment are the job's).
fn standby_key(req: &CreateRequest) -> String {
    format!("{}\n{}\n{}", req.image.digest, req.policy_name, req.policy)
}

/// Where a request's answers go (and an upload's blobs come from): the local
/// socket, or a gRPC call's streams.
pub(crate) trait Answer: Sync {
    /// Sends one response with descriptors attached; false when the client went away.
    fn send(&self, response: &Response, fds: &[std::os::fd::BorrowedFd<'_>]) -> bool;
    /// Sends output bytes (a log); false when the client went away.
    fn output(&self, bytes: &[u8]) -> bool;
    /// The next blob of an upload: its digest and its content.
    fn blob(&self) -> Result<(String, Box<dyn Read + '_>), ApiError>;
}

type Reply<'a> = &'a dyn Answer;

fn send(reply: Reply<'_>, response: &Response, fds: &[std::os::fd::BorrowedFd<'_>]) -> bool {
    reply.send(response, fds)
}

fn send_output(reply: Reply<'_>, bytes: &[u8]) -> bool {
    reply.output(bytes)
}

/// A connection to the local socket: messages with descriptors attached.
struct SocketAnswer(OwnedFd);

impl Answer for SocketAnswer {
    fn send(&self, response: &Response, fds: &[std::os::fd::BorrowedFd<'_>]) -> bool {
        wire::send(&self.0, response, fds).is_ok()
    }

    /// An `Output` header, then the raw bytes.
    fn output(&self, bytes: &[u8]) -> bool {
        self.send(&Response::Output { len: bytes.len() }, &[]) && wire::send_bytes(&self.0, bytes, &[]).is_ok()
    }

    fn blob(&self) -> Result<(String, Box<dyn Read + '_>), ApiError> {
        let (part, fds) = wire::recv::<openshell_gateway_api::proto::BlobFollows>(&self.0)
            .map_err(|e| ApiError::invalid(format!("image upload: {e}")))?
            .ok_or_else(|| ApiError::invalid("image upload: the client went away"))?;
        let fd = fds
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::invalid(format!("image upload: blob {} came without its content", part.digest)))?;
        Ok((part.digest, Box::new(std::fs::File::from(fd))))
    }
}

/// Runs the gateway of `dir` until asked to shut down, running images from the
/// store at `store`. `exe` is the `openshell` executable (for helper processes).
pub fn serve(
    dir: GatewayDir,
    exe: std::path::PathBuf,
    store: &std::path::Path,
    options: Options,
) -> Result<(), ServerError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ServerError::Io { path, source }
    };
    std::fs::create_dir_all(&dir.0).map_err(io(&dir.0))?;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir.0))?;
    let lock_path = dir.lock();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(ServerError::AlreadyRunning(dir.0.clone())),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    let database = options.database.clone().unwrap_or_else(|| Database::Sqlite(dir.db()));
    let db = state::open(&database)?;
    let replica = leases::replica_name(&dir)?;
    let store = Store::open(store)?;
    let driver: Arc<dyn Driver> = match &options.driver {
        DriverChoice::Socket(socket) => Arc::new(
            openshell_driver::socket::SocketDriver::connect(socket).map_err(|e| ServerError::Driver("socket", e))?,
        ),
        DriverChoice::Docker(docker) => Arc::new(
            openshell_driver_docker::DockerDriver::new(docker, exe, store.clone())
                .map_err(|e| ServerError::Driver("docker", e))?,
        ),
        DriverChoice::Kubernetes(kubernetes) => {
            let driver_dir = options.driver_dir.clone().unwrap_or_else(|| dir.0.join("kubernetes"));
            Arc::new(
                openshell_driver_kubernetes::KubernetesDriver::new(kubernetes.clone(), driver_dir, store.clone())
                    .map_err(|e| ServerError::Driver("kubernetes", e))?,
            )
        }
        DriverChoice::Local => {
            let driver_dir = options.driver_dir.clone().unwrap_or_else(|| dir.0.clone());
            let local = openshell_driver_local::LocalDriver::new(driver_dir, exe, store.clone())
                .map_err(|e| ServerError::Driver("local", e))?;
            Arc::new(local)
        }
    };
    let max_standby = match std::env::var("OPENSHELL_STANDBY") {
        Ok(v) => v.trim().parse::<usize>().map_err(|_| ServerError::Standby(v))?,
        Err(_) => pool::DEFAULT_MAX,
    };
    let gateway = Arc::new(Gateway {
        audit: audit::AuditLog::open(&dir.0.join(audit::AUDIT_FILE)).map_err(io(&dir.0.join(audit::AUDIT_FILE)))?,
        dir: dir.clone(),
        db: Mutex::new(db),
        replica,
        database: database.clone(),
        lease: options.lease,
        watching: Mutex::new(std::collections::HashSet::new()),
        store,
        driver,
        started: now(),
        cleaning: Mutex::new(std::collections::HashSet::new()),
        cleaned: std::sync::Condvar::new(),
        standby: Mutex::new(pool::Pool::new(max_standby)),
        pool: (max_standby > 0).into(),
        refilling: std::sync::atomic::AtomicUsize::new(0),
    });
    gateway.start_reconciling();

    let socket_path = dir.socket();
    let listener = wire::listen(&socket_path).map_err(io(&socket_path))?;
    tracing::info!(socket = %socket_path.display(), pid = std::process::id(), "gateway listening");
    listen::serve_unix(Arc::clone(&gateway), &dir.grpc_socket())?;
    if let Some(remote) = options.remote {
        listen::serve_tls(Arc::clone(&gateway), remote.listen, remote.tls)?;
    }
    watch_files(&dir, &database)?;
    let uid = rustix::process::geteuid();
    loop {
        let conn = match rustix::net::accept_with(&listener, SocketFlags::CLOEXEC) {
            Ok(c) => c,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::warn!(%e, "accept");
                continue;
            }
        };
        match rustix::net::sockopt::socket_peercred(&conn) {
            Ok(cred) if cred.uid == uid => {}
            Ok(cred) => {
                tracing::warn!(
                    uid = cred.uid.as_raw(),
                    pid = cred.pid.as_raw_nonzero().get(),
                    "refused a connection of another user"
                );
                let error = ApiError::new(ErrorCode::PermissionDenied, "permission denied: not the gateway's owner");
                let _ = wire::send(&conn, &Response::Error { error }, &[]);
                continue;
            }
            Err(e) => {
                tracing::warn!(%e, "peer credentials");
                continue;
            }
        }
        let gateway = Arc::clone(&gateway);
        std::thread::spawn(move || gateway.connection(conn));
    }
}

/// Exits the gateway, saying why, when its directory, socket or database is
/// removed or replaced under it: a gateway without them serves no one, and
/// another would start beside it (its lock file went with the directory).
fn watch_files(dir: &GatewayDir, database: &Database) -> Result<(), ServerError> {
    use std::os::unix::fs::MetadataExt;
    let identity = |path: &std::path::Path| std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
    let mut watched = vec![("directory", dir.0.clone()), ("socket", dir.socket())];
    if let Database::Sqlite(file) = database {
        watched.push(("database", file.clone()));
    }
    let mut files = Vec::new();
    for (what, path) in watched {
        let id = identity(&path).map_err(|source| ServerError::Io { path: path.clone(), source })?;
        files.push((what, path, id));
    }
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            for (what, path, id) in &files {
                if identity(path).ok() != Some(*id) {
                    tracing::error!(path = %path.display(), "the gateway's {what} was removed or replaced: the gateway exits (running sandboxes keep running)");
                    eprintln!("openshell gateway: its {what} {} was removed or replaced; exiting", path.display());
                    std::process::exit(1);
                }
            }
        }
    });
    Ok(())
}

fn random_id() -> String {
    let mut bytes = [0u8; 6];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        bytes.copy_from_slice(&(t as u64 ^ u64::from(std::process::id())).to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Names are `[a-z0-9][a-z0-9_.-]*`, at most 63 characters (they become
/// hostnames); `what` is what is named (`sandbox`, `provider`).
pub fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid {what} name `{name}`: use 1 to 63 of a-z, 0-9, `_`, `.`, `-`, starting with a letter or digit"
        )))
    }
}

impl Gateway {
    fn db(&self) -> std::sync::MutexGuard<'_, Box<dyn State>> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the end of a run (`code` from the supervisor, else its exit.json,
    /// else `dead`). A `--rm` sandbox leaves the state at once; returns true when
    /// its files are to be removed (by the caller, once its supervisor is done).
    fn finish(&self, id: &str, code: Option<i32>) -> bool {
        let last = self.driver.last_exit(id);
        let code = code.or(last.map(|e| e.code));
        // An ended sandbox needs no one to reconcile it: the lease goes with it.
        let remove = match self.db().finish(id, code, last.map(|e| e.finished), &self.replica) {
            Ok(removed) => removed,
            Err(e) => {
                tracing::error!(%e, "recording an exit");
                false
            }
        };
        self.watching.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        remove
    }

    fn finish_and_remove(&self, id: &str, code: Option<i32>) {
        if self.finish(id, code)
            && let Err(e) = self.driver.remove(id)
        {
            tracing::error!(%e, "removing a --rm sandbox");
        }
    }

    /// Waits until the supervisor of `id`'s last run has cleaned up.
    fn wait_cleaned(&self, id: &str) {
        let mut cleaning = self.cleaning.lock().unwrap_or_else(|p| p.into_inner());
        while cleaning.contains(id) {
            cleaning = self.cleaned.wait(cleaning).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn find(&self, name: &str) -> Result<Record, ApiError> {
        self.db().find(name)?.ok_or_else(|| ApiError::not_found(format!("no sandbox named `{name}`")))
    }

    fn info(&self, id: &str) -> Result<SandboxInfo, ApiError> {
        self.find(id).map(|r| r.info)
    }

    fn running(&self, id: &str) -> bool {
        self.db().find(id).ok().flatten().is_some_and(|r| r.info.phase == Phase::Running)
    }

    fn connection(self: Arc<Self>, conn: OwnedFd) {
        const MAX_REQUEST_FDS: usize = 3;
        let (request, fds) = match wire::recv::<Envelope>(&conn) {
            Ok(Some((envelope, _))) if envelope.api != API_VERSION => {
                let error = ApiError::new(
                    ErrorCode::Unsupported,
                    format!("this gateway speaks API version {API_VERSION}, the request version {}", envelope.api),
                );
                let _ = wire::send(&conn, &Response::Error { error }, &[]);
                return;
            }
            // A driver's job sends two more of its own beside a client's stdio.
            Ok(Some((_, fds))) if fds.len() > MAX_REQUEST_FDS => {
                let error = ApiError::invalid(format!(
                    "bad request: {} descriptors attached; a request carries at most {MAX_REQUEST_FDS} (stdin, stdout, stderr)",
                    fds.len()
                ));
                let _ = wire::send(&conn, &Response::Error { error }, &[]);
                return;
            }
            Ok(Some((envelope, fds))) => (envelope.request, fds),
            Ok(None) => return,
            Err(e) => {
                let error = ApiError::invalid(format!("bad request: {e}"));
                let _ = wire::send(&conn, &Response::Error { error }, &[]);
                return;
            }
        };
        let answer = SocketAnswer(conn);
        match self.handle(request, fds, &answer, &Caller::owner()) {
            Ok(Some(last)) => {
                answer.send(&last, &[]);
            }
            Ok(None) => {}
            Err(error) => {
                answer.send(&Response::Error { error }, &[]);
            }
        }
    }

    /// Answers one request; the returned response (if any) is the last message.
    /// Answers one request of `caller`, once allowed; the returned response (if
    /// any) is the last message.
    fn handle(
        self: &Arc<Self>,
        request: Request,
        fds: Vec<OwnedFd>,
        reply: Reply<'_>,
        caller: &Caller,
    ) -> Result<Option<Response>, ApiError> {
        let allowed = self.authorize(&request, caller);
        if request.mutates() || allowed.is_err() {
            self.audit.record(caller, &request, allowed.as_ref().err());
        }
        allowed?;
        self.dispatch(request, fds, reply, caller)
    }

    /// An admin may do anything; a user only acts on its own sandboxes and
    /// never on providers, the inference route or the gateway itself.
    fn authorize(&self, request: &Request, caller: &Caller) -> Result<(), ApiError> {
        if caller.role == Role::Admin {
            return Ok(());
        }
        if request.admin_only() {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("{} needs an admin certificate (`{}` is a user)", request.op(), caller.name),
            ));
        }
        if let Some(name) = request.sandbox() {
            let rec = self.find(name)?;
            if rec.info.owner != caller.name {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("sandbox `{}` belongs to another user", rec.info.name),
                ));
            }
        }
        Ok(())
    }

    fn dispatch(
        self: &Arc<Self>,
        request: Request,
        fds: Vec<OwnedFd>,
        reply: Reply<'_>,
        caller: &Caller,
    ) -> Result<Option<Response>, ApiError> {
        match request {
            Request::Create(req) => self.create(req, fds, reply, &caller.name),
            Request::ImageUpload(upload) => self.upload(upload, reply),
            Request::Start { name, attach } => {
                let rec = self.find(&name)?;
                if rec.info.phase == Phase::Running {
                    return Err(ApiError::precondition(format!("sandbox `{}` is already running", rec.info.name)));
                }
                self.run(&rec.info.id, if attach { fds } else { Vec::new() }, attach, reply)
            }
            Request::Stop { name, timeout_secs } => {
                let rec = self.find(&name)?;
                self.stop(&rec, Duration::from_secs(timeout_secs))?;
                Ok(Some(Response::Sandbox { sandbox: self.info(&rec.info.id)? }))
            }
            Request::Kill { name, signal } => {
                let rec = self.find(&name)?;
                if rec.info.phase != Phase::Running {
                    return Err(ApiError::precondition(format!("sandbox `{}` is not running", rec.info.name)));
                }
                let signal =
                    Signal::try_from(signal).map_err(|e| ApiError::invalid(format!("signal {signal}: {e}")))?;
                self.driver.signal(&rec.info.id, signal)?;
                Ok(Some(Response::Done { message: String::new() }))
            }
            Request::Delete { name } => {
                let rec = self.find(&name)?;
                if rec.info.phase == Phase::Running {
                    self.stop(&rec, Duration::from_secs(10))?;
                }
                self.wait_cleaned(&rec.info.id);
                self.driver.remove(&rec.info.id)?;
                self.db().remove(&rec.info.id)?;
                Ok(Some(Response::Done { message: format!("deleted sandbox `{}`", rec.info.name) }))
            }
            Request::List => {
                let mut all: Vec<SandboxInfo> = self.db().all()?.into_iter().map(|r| r.info).collect();
                if caller.role != Role::Admin {
                    all.retain(|s| s.owner == caller.name);
                }
                Ok(Some(Response::Sandboxes { sandboxes: all }))
            }
            Request::Get { name } => Ok(Some(Response::Sandbox { sandbox: self.find(&name)?.info })),
            Request::Logs { name, follow, audit } => self.logs(&name, follow, audit, reply),
            Request::Exec { name, args, env, tty } => {
                let rec = self.find(&name)?;
                if rec.info.phase != Phase::Running {
                    return Err(ApiError::precondition(format!(
                        "sandbox `{}` is not running ({})",
                        rec.info.name, rec.info.phase
                    )));
                }
                let exec = self.driver.exec(&rec.info.id, &ExecSpec { args, env, tty }, fds)?;
                relay_exec(exec, reply)
            }
            Request::Forward { name, port } => {
                let rec = self.find(&name)?;
                if rec.info.phase != Phase::Running {
                    return Err(ApiError::precondition(format!("sandbox `{}` is not running", rec.info.name)));
                }
                let stream = self.driver.connect(&rec.info.id, port)?;
                send(reply, &Response::Connected, &[stream.as_fd()]);
                Ok(None)
            }
            Request::PolicySet { name, policy_name, policy, wait } => {
                self.policy_set(&name, &policy_name, &policy, wait)
            }
            Request::PolicyGet { name, all } => {
                let rec = self.find(&name)?;
                let mut revisions = self.db().policies(&rec.info.id)?;
                if !all {
                    revisions = revisions.split_off(revisions.len().saturating_sub(1));
                }
                Ok(Some(Response::Policies { revisions }))
            }
            Request::ProviderCreate { name, kind, base_url, credential_name, credential } => {
                self.provider_create(&name, &kind, base_url.as_deref(), &credential_name, credential.0)
            }
            Request::ProviderList => self.provider_list(None),
            Request::ProviderGet { name } => self.provider_list(Some(&name)),
            Request::ProviderDelete { name } => self.provider_delete(&name),
            Request::InferenceSet { provider, model, timeout_secs } => {
                self.inference_set(&provider, &model, timeout_secs)
            }
            Request::InferenceGet => self.inference_get(),
            Request::InferenceDelete => self.inference_delete(),
            Request::Status => {
                let all = self.db().all()?;
                Ok(Some(Response::Status {
                    status: GatewayStatus {
                        pid: std::process::id(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        dir: self.dir.0.clone(),
                        socket: self.dir.socket(),
                        store: self.store.root().to_owned(),
                        started: self.started,
                        sandboxes: all.len(),
                        running: all.iter().filter(|r| r.info.phase == Phase::Running).count(),
                        driver: self.driver.name().to_owned(),
                        database: self.database.describe(),
                        replica: self.replica.clone(),
                    },
                }))
            }
            Request::Shutdown => {
                STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = std::fs::remove_file(self.dir.socket());
                let _ = std::fs::remove_file(self.dir.grpc_socket());
                tracing::info!("shutting down");
                // A standby being made is finished, then discarded with the others:
                // nothing half-made is left behind.
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.refilling.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                for standby in self.standby.lock().unwrap_or_else(|p| p.into_inner()).drain() {
                    standby.pending.discard();
                }
                self.driver.shutdown();
                // Its sandboxes run on: another replica takes them over at once.
                if let Err(e) = self.db().release_all(&self.replica) {
                    tracing::warn!(%e, "giving up this replica's leases");
                }
                send(reply, &Response::Done { message: "gateway stopped; running sandboxes keep running".into() }, &[]);
                std::process::exit(0);
            }
        }
    }

    fn create(
        self: &Arc<Self>,
        req: CreateRequest,
        fds: Vec<OwnedFd>,
        reply: Reply<'_>,
        owner: &str,
    ) -> Result<Option<Response>, ApiError> {
        if self.driver.needs_root() && !rustix::process::geteuid().is_root() {
            return Err(ApiError::precondition(
                "sandboxes need root: the local driver creates namespaces, cgroups and mounts (rootless sandboxes are not supported)",
            ));
        }
        if let Some(n) = &req.name {
            check_name(n, "sandbox")?;
            if self.db().name_taken(n)? {
                return Err(ApiError::new(ErrorCode::AlreadyExists, format!("a sandbox named `{n}` exists already")));
            }
        }
        self.image_present(&req.image)?;
        let stdio = if req.attach { fds } else { Vec::new() };
        // The key names the image by digest: a rebuilt tag is another image.
        let key = standby_key(&req);
        let (taken, idle) = self.standby.lock().unwrap_or_else(|p| p.into_inner()).take(&key, Instant::now());
        for extra in idle {
            self.discard(extra.id, extra.pending);
        }
        let outcome = match taken {
            // A sandbox of this image and policy was started ahead of need: it only
            // needs its job.
            Some(standby) => self.assign(standby, &req, stdio, reply, owner),
            None => self.create_cold(&req, stdio, reply, owner),
        };
        if outcome.is_ok() && self.pool.load(std::sync::atomic::Ordering::SeqCst) {
            self.refill_standby(key, req);
        }
        outcome
    }

    /// The record of a new sandbox, in the state from now on.
    fn insert(&self, id: &str, req: &CreateRequest, owner: &str) -> Result<(), ApiError> {
        let name = Self::name_of(id, req);
        let rec = Record {
            info: SandboxInfo {
                id: id.to_owned(),
                name,
                image: req.image.reference.clone(),
                image_digest: req.image.digest.clone(),
                policy_name: req.policy_name.clone(),
                policy_revision: 1,
                command: req.command.clone(),
                phase: Phase::Created,
                owner: owner.to_owned(),
                exit_code: None,
                pid: None,
                created: now(),
                started: None,
                finished: None,
            },
            auto_remove: req.rm,
        };
        Ok(self.db().insert(&rec, &req.policy)?)
    }

    /// The name the sandbox `id` made for `req` goes by.
    fn name_of(id: &str, req: &CreateRequest) -> String {
        req.name.clone().unwrap_or_else(|| format!("sandbox-{id}"))
    }

    /// What the driver is asked to create for `req` as sandbox `id`.
    fn spec(id: &str, req: &CreateRequest) -> openshell_driver::SandboxSpec {
        openshell_driver::SandboxSpec {
            name: Self::name_of(id, req),
            image_digest: req.image.digest.clone(),
            policy_name: req.policy_name.clone(),
            policy: req.policy.clone(),
        }
    }

    fn create_cold(
        self: &Arc<Self>,
        req: &CreateRequest,
        stdio: Vec<OwnedFd>,
        reply: Reply<'_>,
        owner: &str,
    ) -> Result<Option<Response>, ApiError> {
        let id = random_id();
        // Leased before the driver holds anything of it: no other replica's
        // sweep takes it for a leftover.
        self.take_lease(&id)?;
        let prepared = self.driver.create(&id, &Self::spec(&id, req)).map_err(ApiError::from).and_then(|created| {
            let route = self.give_route(&id)?;
            self.driver.set_job(&id, &Job::new(&created, &req.command, &req.env, route))?;
            Ok(created)
        });
        if let Err(e) = prepared.and_then(|_| self.insert(&id, req, owner)) {
            let _ = self.driver.remove(&id);
            self.release_lease(&id);
            return Err(e);
        }
        self.run(&id, stdio, req.attach, reply)
    }

    /// Gives a standby sandbox the request's job and stdio.
    fn assign(
        self: &Arc<Self>,
        standby: Standby,
        req: &CreateRequest,
        stdio: Vec<OwnedFd>,
        reply: Reply<'_>,
        owner: &str,
    ) -> Result<Option<Response>, ApiError> {
        let Standby { id, created, pending, .. } = standby;
        let route = self.route_file().ok().and_then(|f| f.route).map(|r| r.kind);
        let job = Job::new(&created, &req.command, &req.env, route);
        if let Err(e) =
            self.driver.set_job(&id, &job).map_err(ApiError::from).and_then(|()| self.insert(&id, req, owner))
        {
            self.discard(id, pending);
            return Err(e);
        }
        match pending.assign(stdio) {
            Ok(run) => self.follow(&id, run, req.attach, reply),
            Err(e) => {
                let _ = self.db().remove(&id);
                Err(e.into())
            }
        }
    }

    /// Tops the standby sandboxes of `req`'s key up to the pool's target for it,
    /// one after another, in the background (one refill per key at a time).
    fn refill_standby(self: &Arc<Self>, key: String, req: CreateRequest) {
        if !self.standby.lock().unwrap_or_else(|p| p.into_inner()).start_refill(&key) {
            return;
        }
        let gateway = Arc::clone(self);
        self.refilling.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::spawn(move || {
            // Ahead of need: the creates clients wait for come first.
            if let Err(e) = openshell_driver::priority::set_this_thread(openshell_driver::priority::STANDBY_NICE) {
                tracing::warn!(%e, "refilling standby sandboxes at normal priority");
            }
            while !STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
                let wanted = gateway.standby.lock().unwrap_or_else(|p| p.into_inner()).want(&key);
                let Some(evicted) = wanted else { break };
                for old in evicted {
                    gateway.discard(old.id, old.pending);
                }
                match gateway.make_standby(&req) {
                    Some(standby) => gateway.standby.lock().unwrap_or_else(|p| p.into_inner()).add(&key, standby),
                    None => {
                        gateway.standby.lock().unwrap_or_else(|p| p.into_inner()).failed(&key);
                        break;
                    }
                }
            }
            gateway.standby.lock().unwrap_or_else(|p| p.into_inner()).end_refill(&key);
            gateway.refilling.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }

    /// A standby sandbox for requests like `req`; none when it cannot be made
    /// (logged: nobody asked for it).
    fn make_standby(self: &Arc<Self>, req: &CreateRequest) -> Option<Standby> {
        let id = random_id();
        if let Err(e) = self.take_lease(&id) {
            tracing::warn!(%e, "starting a standby sandbox");
            return None;
        }
        // Its name comes with the request that takes it; `req` was the last one.
        let spec = openshell_driver::SandboxSpec { name: format!("sandbox-{id}"), ..Self::spec(&id, req) };
        let made = self.driver.create(&id, &spec).map_err(ApiError::from).and_then(|created| {
            self.give_route(&id)?;
            let pending = self.driver.standby(&id)?;
            Ok(Standby { id: id.clone(), created, pending })
        });
        made.inspect_err(|e| {
            if e.code == ErrorCode::Unsupported {
                // Asked once: this driver keeps none.
                tracing::info!(%e, "no standby sandboxes");
                self.pool.store(false, std::sync::atomic::Ordering::SeqCst);
            } else {
                tracing::warn!(%e, "starting a standby sandbox");
            }
            let _ = self.driver.remove(&id);
            self.release_lease(&id);
        })
        .ok()
    }

    /// Starts a sandbox; attached, waits for its end and answers its exit code.
    fn run(
        self: &Arc<Self>,
        id: &str,
        stdio: Vec<OwnedFd>,
        attach: bool,
        reply: Reply<'_>,
    ) -> Result<Option<Response>, ApiError> {
        self.wait_cleaned(id);
        self.take_lease(id)?;
        let run = match self.driver.start(id, stdio) {
            Ok(r) => r,
            Err(e) => {
                self.finish_and_remove(id, None);
                return Err(e.into());
            }
        };
        self.follow(id, run, attach, reply)
    }

    /// Records a started run; attached, waits for its end and answers its exit code.
    fn follow(
        self: &Arc<Self>,
        id: &str,
        run: Run,
        attach: bool,
        reply: Reply<'_>,
    ) -> Result<Option<Response>, ApiError> {
        self.db().set_running(id, run.pid)?;
        let info = self.info(id)?;
        send(reply, &Response::Sandbox { sandbox: info }, &[]);
        if !attach {
            self.watch(id, run);
            return Ok(None);
        }
        self.watching.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned());
        let mut watch = run.watch;
        // The client gets the code as soon as the output is complete; the
        // sandbox's cleanup (and a --rm removal) happens after.
        let outcome = watch.code();
        self.cleaning.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned());
        let remove = self.finish(id, outcome.as_ref().ok().copied());
        let last = match outcome {
            Ok(code) => Response::Exited { code },
            Err(e) => Response::Error { error: e.into() },
        };
        send(reply, &last, &[]);
        if let Err(e) = watch.reap() {
            tracing::warn!(sandbox = id, %e, "cleanup after the run");
        }
        if remove && let Err(e) = self.driver.remove(id) {
            tracing::error!(%e, "removing a --rm sandbox");
        }
        self.cleaning.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.cleaned.notify_all();
        Ok(None)
    }

    /// SIGTERM to process 1 (passed on to the workload), SIGKILL after `timeout`.
    fn stop(&self, rec: &Record, timeout: Duration) -> Result<(), ApiError> {
        if rec.info.phase != Phase::Running {
            return Ok(());
        }
        let id = rec.info.id.as_str();
        let wait_until = |deadline: Instant| {
            while self.running(id) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        self.driver.signal(id, Signal::SIGTERM)?;
        wait_until(Instant::now() + timeout);
        if self.running(id) {
            self.driver.signal(id, Signal::SIGKILL)?;
            wait_until(Instant::now() + Duration::from_secs(10));
        }
        if self.running(id) {
            return Err(ApiError::internal(format!("sandbox `{}` did not stop", rec.info.name)));
        }
        Ok(())
    }

    fn logs(&self, name: &str, follow: bool, audit: bool, reply: Reply<'_>) -> Result<Option<Response>, ApiError> {
        let rec = self.find(name)?;
        let mut log = self.driver.log(&rec.info.id, if audit { LogKind::Audit } else { LogKind::Output })?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = log.read(&mut buf)?;
            if n > 0 {
                if !send_output(reply, &buf[..n]) {
                    return Ok(None);
                }
                continue;
            }
            if !follow || !self.running(&rec.info.id) {
                // One last read: output written just before the end.
                let n = log.read(&mut buf)?;
                if n > 0 {
                    if !send_output(reply, &buf[..n]) {
                        return Ok(None);
                    }
                    continue;
                }
                return Ok(Some(Response::Done { message: String::new() }));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn policy_set(&self, name: &str, policy_name: &str, text: &str, wait: bool) -> Result<Option<Response>, ApiError> {
        let rec = self.find(name)?;
        let new = openshell_policy::load_str(policy_name, text).map_err(ApiError::invalid)?;
        let (_, old_name, old_text) = self
            .db()
            .policy(&rec.info.id)?
            .ok_or_else(|| ApiError::internal(format!("sandbox `{name}` has no policy recorded")))?;
        let old = openshell_policy::load_str(&old_name, &old_text).map_err(ApiError::internal)?;
        openshell_policy::PolicyDiff::between(&old, &new)
            .ensure_live()
            .map_err(|e| ApiError::precondition(format!("sandbox `{}`: {e}", rec.info.name)))?;
        if !self.driver.has_network(&rec.info.id) {
            if new.network_policies.is_empty() {
                let revision = self.db().add_policy(&rec.info.id, policy_name, text)?;
                return Ok(Some(Response::Done {
                    message: format!("sandbox `{}`: policy revision {revision} (no network policies)", rec.info.name),
                }));
            }
            return Err(ApiError::precondition(format!(
                "sandbox `{}` was created without network policies: its network is loopback only, and network policies cannot be added to it; recreate it with them",
                rec.info.name
            )));
        }
        let revision = self.db().add_policy(&rec.info.id, policy_name, text)?;
        let running = rec.info.phase == Phase::Running;
        let applied =
            self.driver.reload_network(&rec.info.id, revision, policy_name, text, running, wait).map_err(|e| {
                ApiError::new(e.code(), format!("sandbox `{}`: revision {revision} recorded, but: {e}", rec.info.name))
            })?;
        let name = &rec.info.name;
        let message = match applied {
            Applied::Confirmed => format!("sandbox `{name}`: network policy revision {revision} applied"),
            Applied::Sent => {
                format!("sandbox `{name}`: network policy revision {revision} handed to the proxy (--wait confirms)")
            }
            Applied::AtStart => format!(
                "sandbox `{name}`: network policy revision {revision} recorded; it applies when the sandbox starts"
            ),
        };
        Ok(Some(Response::Done { message }))
    }
}

/// Passes an exec's terminal (if any) and exit code to the client.
fn relay_exec(exec: Exec, reply: Reply<'_>) -> Result<Option<Response>, ApiError> {
    if let Some(console) = &exec.console {
        send(reply, &Response::Console, &[console.as_fd()]);
    }
    drop(exec.console);
    Ok(Some(Response::Exited { code: exec.watch.wait()? }))
}
