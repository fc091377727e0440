//! The gateway process: one per gateway directory (a file lock says which),
//! listening on an owner-only Unix socket, keeping state in SQLite, driving
//! sandboxes through a [`Driver`].

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::db::{Db, DbError, Record};
use crate::driver::{Applied, Created, Driver, DriverError, LocalDriver, Run, Waiter};
use crate::proto::{CreateRequest, GatewayStatus, HelperMessage, Request, Response, SandboxInfo};
use crate::{GatewayDir, now, wire};

mod inference;

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
    Db(#[from] DbError),
}

struct Gateway {
    dir: GatewayDir,
    db: Mutex<Db>,
    driver: Arc<dyn Driver>,
    started: u64,
    /// Sandboxes whose last run is still being cleaned up by its supervisor (the
    /// exit was reported first); starting or removing them waits.
    cleaning: Mutex<std::collections::HashSet<String>>,
    cleaned: std::sync::Condvar,
    /// A sandbox started ahead of need for the last image and policy used.
    standby: Mutex<Option<Standby>>,
    /// Whether standby sandboxes are kept (`OPENSHELL_STANDBY=0` turns them off).
    pool: bool,
    /// Standby sandboxes being made.
    refilling: std::sync::atomic::AtomicUsize,
}

/// A sandbox whose process 1 runs and waits for a job.
struct Standby {
    key: String,
    id: String,
    created: Created,
    run: Run,
}

/// Requests with the same key can take the same standby sandbox: same store,
/// image (by manifest digest) and policy (the command and environment are the job's).
fn standby_key(req: &CreateRequest, digest: &str) -> String {
    format!("{}\n{digest}\n{}\n{}", req.store.display(), req.policy_name, req.policy)
}

type Reply<'a> = &'a OwnedFd;

/// Sends one response; false when the client went away.
fn send(conn: Reply<'_>, response: &Response, fds: &[std::os::fd::BorrowedFd<'_>]) -> bool {
    wire::send(conn, response, fds).is_ok()
}

/// Sends output: an `Output` header, then the raw bytes.
fn send_output(conn: Reply<'_>, bytes: &[u8]) -> bool {
    send(conn, &Response::Output { len: bytes.len() }, &[]) && wire::send_bytes(conn, bytes, &[]).is_ok()
}

/// Runs the gateway of `dir` until asked to shut down. `exe` is the `openshell`
/// executable (for helper processes).
pub fn serve(dir: GatewayDir, exe: std::path::PathBuf) -> Result<(), ServerError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ServerError::Io { path, source }
    };
    std::fs::create_dir_all(&dir.0).map_err(io(&dir.0))?;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir.0))?;
    for sub in [dir.sandboxes(), dir.layers(), dir.containers()] {
        std::fs::create_dir_all(&sub).map_err(io(&sub))?;
    }
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
    let db = Db::open(&dir.db())?;
    let driver: Arc<dyn Driver> = Arc::new(LocalDriver::new(dir.clone(), exe));
    let gateway = Arc::new(Gateway {
        dir: dir.clone(),
        db: Mutex::new(db),
        driver,
        started: now(),
        cleaning: Mutex::new(std::collections::HashSet::new()),
        cleaned: std::sync::Condvar::new(),
        standby: Mutex::new(None),
        pool: std::env::var("OPENSHELL_STANDBY").map_or(true, |v| v != "0"),
        refilling: std::sync::atomic::AtomicUsize::new(0),
    });
    gateway.recover();

    let socket_path = dir.socket();
    let _ = std::fs::remove_file(&socket_path);
    let listener = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .map_err(|e| io(&socket_path)(e.into()))?;
    let addr = SocketAddrUnix::new(&socket_path).map_err(|e| io(&socket_path)(e.into()))?;
    rustix::net::bind(&listener, &addr).map_err(|e| io(&socket_path)(e.into()))?;
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600)).map_err(io(&socket_path))?;
    rustix::net::listen(&listener, 128).map_err(|e| io(&socket_path)(e.into()))?;
    tracing::info!(socket = %socket_path.display(), pid = std::process::id(), "gateway listening");
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
                let _ = wire::send(
                    &conn,
                    &Response::Error { message: "permission denied: not the gateway's owner".into() },
                    &[],
                );
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

fn random_id() -> String {
    let mut bytes = [0u8; 6];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        bytes.copy_from_slice(&(t as u64 ^ u64::from(std::process::id())).to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Names are `[a-z0-9][a-z0-9_.-]*`, at most 63 characters (they become hostnames).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid sandbox name `{name}`: use 1 to 63 of a-z, 0-9, `_`, `.`, `-`, starting with a letter or digit"
        ))
    }
}

impl Gateway {
    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sandboxes the state says run: still supervised (watch them again), or
    /// ended while no gateway watched (their exit.json says how), or lost (`dead`).
    fn recover(self: &Arc<Self>) {
        let records = match self.db().all() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%e, "reading the state");
                return;
            }
        };
        // Directories no record names: standby sandboxes of a gateway that died (their
        // supervisors discard them when alive; what a killed one left is removed here).
        let known: std::collections::HashSet<&str> = records.iter().map(|r| r.info.id.as_str()).collect();
        for entry in std::fs::read_dir(self.dir.sandboxes()).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if known.contains(id.as_str()) {
                continue;
            }
            let record = std::fs::read_to_string(entry.path().join(crate::helper::SUPERVISOR_FILE)).unwrap_or_default();
            let pid = record.split_whitespace().next().and_then(|p| p.parse().ok());
            if !pid.is_some_and(|pid| self.driver.alive(&id, pid)) {
                tracing::info!(%id, "removing an unrecorded sandbox directory");
                if let Err(e) = self.driver.remove(&id) {
                    tracing::warn!(%e, "removing an unrecorded sandbox directory");
                }
            }
        }
        for rec in records.into_iter().filter(|r| r.info.status == "running") {
            match (rec.supervisor_pid, rec.info.pid) {
                (Some(sup), Some(init)) if self.driver.adopt(&rec.info.id, sup, init) => {
                    tracing::info!(sandbox = %rec.info.name, supervisor = sup, "found running");
                    let gateway = Arc::clone(self);
                    std::thread::spawn(move || {
                        gateway.driver.wait_adopted(&rec.info.id);
                        gateway.finish_and_remove(&rec.info.id, None);
                    });
                }
                _ => self.finish_and_remove(&rec.info.id, None),
            }
        }
    }

    /// Records the end of a run (`code` from the supervisor, else its exit.json,
    /// else `dead`). A `--rm` sandbox leaves the state at once; returns true when
    /// its files are to be removed (by the caller, once its supervisor is done).
    fn finish(&self, id: &str, code: Option<i32>) -> bool {
        let last = self.driver.last_exit(id);
        let code = code.or(last.map(|e| e.code));
        let db = self.db();
        if let Err(e) = db.set_finished(id, code, last.map(|e| e.finished)) {
            tracing::error!(%e, "recording an exit");
        }
        let remove = matches!(db.find(id), Ok(Some(rec)) if rec.auto_remove);
        if remove && let Err(e) = db.remove(id) {
            tracing::error!(%e, "removing a --rm sandbox from the state");
        }
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

    fn find(&self, name: &str) -> Result<Record, String> {
        match self.db().find(name) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(format!("no sandbox named `{name}`")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn info(&self, id: &str) -> Result<SandboxInfo, String> {
        self.find(id).map(|r| r.info)
    }

    fn connection(self: Arc<Self>, conn: OwnedFd) {
        let (request, fds) = match wire::recv::<Request>(&conn) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = wire::send(&conn, &Response::Error { message: format!("bad request: {e}") }, &[]);
                return;
            }
        };
        match self.handle(request, fds, &conn) {
            Ok(Some(last)) => {
                send(&conn, &last, &[]);
            }
            Ok(None) => {}
            Err(message) => {
                send(&conn, &Response::Error { message }, &[]);
            }
        }
    }

    /// Answers one request; the returned response (if any) is the last message.
    fn handle(
        self: &Arc<Self>,
        request: Request,
        fds: Vec<OwnedFd>,
        reply: Reply<'_>,
    ) -> Result<Option<Response>, String> {
        match request {
            Request::Create(req) => self.create(req, fds, reply),
            Request::Start { name, attach } => {
                let rec = self.find(&name)?;
                if rec.info.status == "running" {
                    return Err(format!("sandbox `{}` is already running", rec.info.name));
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
                if rec.info.status != "running" {
                    return Err(format!("sandbox `{}` is not running", rec.info.name));
                }
                let signal = Signal::try_from(signal).map_err(|e| format!("signal {signal}: {e}"))?;
                self.driver.signal(&rec.info.id, signal).map_err(|e| e.to_string())?;
                Ok(Some(Response::Done { message: String::new() }))
            }
            Request::Delete { name } => {
                let rec = self.find(&name)?;
                if rec.info.status == "running" {
                    self.stop(&rec, Duration::from_secs(10))?;
                }
                self.wait_cleaned(&rec.info.id);
                self.driver.remove(&rec.info.id).map_err(|e| e.to_string())?;
                self.db().remove(&rec.info.id).map_err(|e| e.to_string())?;
                Ok(Some(Response::Done { message: format!("deleted sandbox `{}`", rec.info.name) }))
            }
            Request::List => {
                let all = self.db().all().map_err(|e| e.to_string())?;
                Ok(Some(Response::Sandboxes { sandboxes: all.into_iter().map(|r| r.info).collect() }))
            }
            Request::Get { name } => Ok(Some(Response::Sandbox { sandbox: self.find(&name)?.info })),
            Request::Logs { name, follow, audit } => self.logs(&name, follow, audit, reply),
            Request::Exec { name, args, env, tty } => {
                let rec = self.find(&name)?;
                if rec.info.status != "running" {
                    return Err(format!("sandbox `{}` is not running ({})", rec.info.name, rec.info.status));
                }
                let waiter = self.driver.exec(&rec.info.id, &args, &env, tty, fds).map_err(|e| e.to_string())?;
                relay_exec(waiter, tty, reply)
            }
            Request::PolicySet { name, policy_name, policy, wait } => {
                self.policy_set(&name, &policy_name, &policy, wait)
            }
            Request::PolicyGet { name, all } => {
                let rec = self.find(&name)?;
                let mut revisions = self.db().policies(&rec.info.id).map_err(|e| e.to_string())?;
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
                let all = self.db().all().map_err(|e| e.to_string())?;
                Ok(Some(Response::Status {
                    status: GatewayStatus {
                        pid: std::process::id(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        dir: self.dir.0.clone(),
                        socket: self.dir.socket(),
                        started: self.started,
                        sandboxes: all.len(),
                        running: all.iter().filter(|r| r.info.status == "running").count(),
                        driver: self.driver.name().to_owned(),
                    },
                }))
            }
            Request::Shutdown => {
                let _ = std::fs::remove_file(self.dir.socket());
                tracing::info!("shutting down");
                // A standby being made is finished, then discarded with the others:
                // nothing half-made is left behind.
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.refilling.load(std::sync::atomic::Ordering::SeqCst) > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if let Some(standby) = self.standby.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    standby.run.waiter.discard();
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
    ) -> Result<Option<Response>, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("sandboxes need root: the local driver creates namespaces, cgroups and mounts (rootless sandboxes are not supported)".into());
        }
        if let Some(n) = &req.name {
            check_name(n)?;
            if self.db().name_taken(n).map_err(|e| e.to_string())? {
                return Err(format!("a sandbox named `{n}` exists already"));
            }
        }
        let stdio = if req.attach { fds } else { Vec::new() };
        // The key names the image by digest: a rebuilt tag is another image.
        let key = standby_key(&req, &self.driver.image_digest(&req).map_err(|e| e.to_string())?);
        let taken = {
            let mut slot = self.standby.lock().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_some_and(|s| s.key == key) { slot.take() } else { None }
        };
        let outcome = match taken {
            // A sandbox of this image and policy was started ahead of need: it only
            // needs its job.
            Some(standby) => self.assign(standby, &req, stdio, reply),
            None => self.create_cold(&req, stdio, reply),
        };
        if outcome.is_ok() && self.pool {
            self.refill_standby(key, req);
        }
        outcome
    }

    /// The record of a new sandbox, in the state from now on.
    fn insert(&self, id: &str, req: &CreateRequest, created: &Created) -> Result<(), String> {
        let name = req.name.clone().unwrap_or_else(|| format!("sandbox-{id}"));
        let rec = Record {
            info: SandboxInfo {
                id: id.to_owned(),
                name,
                image: created.image.clone(),
                image_digest: created.image_digest.clone(),
                policy_name: req.policy_name.clone(),
                policy_revision: 1,
                command: req.command.clone(),
                status: "created".into(),
                exit_code: None,
                pid: None,
                created: now(),
                started: None,
                finished: None,
            },
            supervisor_pid: None,
            auto_remove: req.rm,
        };
        self.db().insert(&rec, &req.policy).map_err(|e| e.to_string())
    }

    fn create_cold(
        self: &Arc<Self>,
        req: &CreateRequest,
        stdio: Vec<OwnedFd>,
        reply: Reply<'_>,
    ) -> Result<Option<Response>, String> {
        let id = random_id();
        let prepared = self.driver.create(&id, req).and_then(|created| {
            let route = self.give_route(&id).map_err(DriverError)?;
            self.driver.set_job(&id, &created.job(req, route))?;
            Ok(created)
        });
        let created = match prepared {
            Ok(c) => c,
            Err(e) => {
                let _ = self.driver.remove(&id);
                return Err(e.to_string());
            }
        };
        if let Err(e) = self.insert(&id, req, &created) {
            let _ = self.driver.remove(&id);
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
    ) -> Result<Option<Response>, String> {
        let Standby { id, created, run, .. } = standby;
        let route = self.route_file().ok().and_then(|f| f.route).map(|r| r.kind);
        if let Err(e) = self
            .driver
            .set_job(&id, &created.job(req, route))
            .and_then(|()| self.insert(&id, req, &created).map_err(DriverError))
        {
            self.discard(run);
            return Err(e.to_string());
        }
        if let Err(e) = self.driver.assign(&run, stdio) {
            self.discard(run);
            let _ = self.db().remove(&id);
            return Err(e.to_string());
        }
        self.follow(&id, run, req.attach, reply)
    }

    /// Starts a sandbox ahead of need for the next request like `req` (one at a
    /// time: a standby for another image or policy is discarded).
    fn refill_standby(self: &Arc<Self>, key: String, req: CreateRequest) {
        let gateway = Arc::clone(self);
        self.refilling.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::spawn(move || {
            gateway.refill(key, req);
            gateway.refilling.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }

    fn refill(self: &Arc<Self>, key: String, req: CreateRequest) {
        let gateway = self;
        if gateway.standby.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|s| s.key == key) {
            return;
        }
        let id = random_id();
        let created = match gateway.driver.create(&id, &req).and_then(|c| {
            gateway.give_route(&id).map_err(DriverError)?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "preparing a standby sandbox");
                let _ = gateway.driver.remove(&id);
                return;
            }
        };
        match gateway.driver.standby(&id) {
            Ok(run) => {
                let old = gateway.standby.lock().unwrap_or_else(|p| p.into_inner()).replace(Standby {
                    key,
                    id,
                    created,
                    run,
                });
                if let Some(old) = old {
                    gateway.discard(old.run);
                }
            }
            Err(e) => {
                tracing::warn!(%e, "starting a standby sandbox");
                let _ = gateway.driver.remove(&id);
            }
        }
    }

    /// Ends an unassigned standby sandbox: its supervisor sees the control socket
    /// close, kills it and removes its files.
    fn discard(&self, run: Run) {
        // The supervisor discards it when its control socket closes (not before:
        // waiting on the socket open would keep it waiting for an assignment).
        std::thread::spawn(move || run.waiter.discard());
    }

    /// Starts a sandbox; attached, waits for its end and answers its exit code.
    fn run(
        self: &Arc<Self>,
        id: &str,
        stdio: Vec<OwnedFd>,
        attach: bool,
        reply: Reply<'_>,
    ) -> Result<Option<Response>, String> {
        self.wait_cleaned(id);
        let run = match self.driver.start(id, stdio) {
            Ok(r) => r,
            Err(e) => {
                self.finish_and_remove(id, None);
                return Err(e.to_string());
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
    ) -> Result<Option<Response>, String> {
        self.db().set_running(id, run.pid, run.supervisor_pid).map_err(|e| e.to_string())?;
        let info = self.info(id)?;
        send(reply, &Response::Sandbox { sandbox: info }, &[]);
        if attach {
            // The client gets the code as soon as the output is complete; the
            // sandbox's cleanup (and a --rm removal) happens after.
            let mut waiter = run.waiter;
            let outcome = waiter.code();
            self.cleaning.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned());
            let remove = self.finish(id, outcome.as_ref().ok().copied());
            send(
                reply,
                &match &outcome {
                    Ok(code) => Response::Exited { code: *code },
                    Err(message) => Response::Error { message: message.clone() },
                },
                &[],
            );
            if let Err(message) = waiter.reap() {
                tracing::warn!(sandbox = id, %message, "cleanup after the run");
            }
            if remove && let Err(e) = self.driver.remove(id) {
                tracing::error!(%e, "removing a --rm sandbox");
            }
            self.cleaning.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
            self.cleaned.notify_all();
            return Ok(None);
        }
        let gateway = Arc::clone(self);
        let id = id.to_owned();
        std::thread::spawn(move || {
            let outcome = run.waiter.wait();
            gateway.finish_and_remove(&id, outcome.ok());
        });
        Ok(None)
    }

    /// SIGTERM to process 1 (passed on to the workload), SIGKILL after `timeout`.
    fn stop(&self, rec: &Record, timeout: Duration) -> Result<(), String> {
        if rec.info.status != "running" {
            return Ok(());
        }
        let id = rec.info.id.as_str();
        let running = || self.db().find(id).ok().flatten().is_some_and(|r| r.info.status == "running");
        self.driver.signal(id, Signal::SIGTERM).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if running() {
            self.driver.signal(id, Signal::SIGKILL).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if running() {
            return Err(format!("sandbox `{}` did not stop", rec.info.name));
        }
        Ok(())
    }

    fn logs(&self, name: &str, follow: bool, audit: bool, reply: Reply<'_>) -> Result<Option<Response>, String> {
        let rec = self.find(name)?;
        let path = if audit { self.driver.audit_path(&rec.info.id) } else { self.driver.log_path(&rec.info.id) };
        let mut buf = vec![0u8; 64 * 1024];
        // A log rotates at the policy's size: the older file first.
        if let Ok(mut older) = std::fs::File::open(openshell_sandbox::logs::previous(&path)) {
            loop {
                let n = older.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
                if n == 0 {
                    break;
                }
                if !send_output(reply, &buf[..n]) {
                    return Ok(None);
                }
            }
        }
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        loop {
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            let n = match &mut file {
                Some(f) => f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?,
                None => 0,
            };
            if n > 0 {
                if !send_output(reply, &buf[..n]) {
                    return Ok(None);
                }
                continue;
            }
            // Followed past a rotation: the old file is read to its end, the new one next.
            if file.as_ref().is_some_and(|f| rotated_away(f, &path)) {
                file = std::fs::File::open(&path).ok();
                continue;
            }
            let running = self.db().find(&rec.info.id).ok().flatten().is_some_and(|r| r.info.status == "running");
            if !follow || !running {
                // One last read: output written just before the end.
                if let Some(f) = &mut file {
                    let n = f.read(&mut buf).unwrap_or(0);
                    if n > 0 && !send_output(reply, &buf[..n]) {
                        return Ok(None);
                    }
                    if n > 0 {
                        continue;
                    }
                }
                return Ok(Some(Response::Done { message: String::new() }));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn policy_set(&self, name: &str, policy_name: &str, text: &str, wait: bool) -> Result<Option<Response>, String> {
        let rec = self.find(name)?;
        let new = openshell_policy::load_str(policy_name, text).map_err(|e| e.to_string())?;
        let (_, old_name, old_text) = self
            .db()
            .policy(&rec.info.id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("sandbox `{name}` has no policy recorded"))?;
        let old = openshell_policy::load_str(&old_name, &old_text).map_err(|e| e.to_string())?;
        openshell_policy::PolicyDiff::between(&old, &new)
            .ensure_live()
            .map_err(|e| format!("sandbox `{}`: {e}", rec.info.name))?;
        if !self.driver.has_network(&rec.info.id) {
            if new.network_policies.is_empty() {
                let revision = self.db().add_policy(&rec.info.id, policy_name, text).map_err(|e| e.to_string())?;
                return Ok(Some(Response::Done {
                    message: format!("sandbox `{}`: policy revision {revision} (no network policies)", rec.info.name),
                }));
            }
            return Err(format!(
                "sandbox `{}` was created without network policies: its network is loopback only, and network policies cannot be added to it; recreate it with them",
                rec.info.name
            ));
        }
        let revision = self.db().add_policy(&rec.info.id, policy_name, text).map_err(|e| e.to_string())?;
        let running = rec.info.status == "running";
        let applied = self
            .driver
            .reload_network(&rec.info.id, revision, policy_name, text, running, wait)
            .map_err(|e| format!("sandbox `{}`: revision {revision} recorded, but: {e}", rec.info.name))?;
        Ok(Some(Response::Done {
            message: match applied {
                Applied::Confirmed => {
                    format!("sandbox `{}`: network policy revision {revision} applied", rec.info.name)
                }
                Applied::Sent => {
                    format!(
                        "sandbox `{}`: network policy revision {revision} handed to the proxy (--wait confirms)",
                        rec.info.name
                    )
                }
                Applied::AtStart => format!(
                    "sandbox `{}`: network policy revision {revision} recorded; it applies when the sandbox starts",
                    rec.info.name
                ),
            },
        }))
    }
}

/// Whether the log at `path` is no longer the file `open` (it was rotated).
fn rotated_away(open: &std::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        _ => false,
    }
}

/// Passes an exec helper's terminal (if any) and exit code to the client.
fn relay_exec(waiter: Waiter, tty: bool, reply: Reply<'_>) -> Result<Option<Response>, String> {
    if tty {
        match waiter.next() {
            Some((HelperMessage::Console, fds)) if !fds.is_empty() => {
                let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
                send(reply, &Response::Console, &fds);
            }
            Some((HelperMessage::Failed { message }, _)) => {
                let _ = waiter.wait();
                return Err(message);
            }
            other => {
                let _ = waiter.wait();
                return Err(format!("exec ended without a terminal ({other:?})"));
            }
        }
    }
    waiter.wait().map(|code| Some(Response::Exited { code }))
}
