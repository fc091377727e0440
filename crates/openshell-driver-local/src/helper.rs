//! The helper process the gateway keeps one of in reserve (`openshell gateway
//! helper`), so that starting a sandbox or an exec does not wait for a process
//! to start. Its stdin is a message socket to the gateway: the first message is
//! [`HelperMessage::Attach`] naming the job and the sandbox directory, with the
//! client's stdio attached (or none); it answers `Started`/`Console`, then
//! `Exited` or `Failed`. It is single-threaded until the container exists
//! (libcontainer clones its caller). Once it has a job its stdout and stderr are
//! the sandbox's `helper.log`.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use openshell_driver::{RouteUpdate, priority};
use openshell_gateway_api::wire;
use serde::{Deserialize, Serialize};

use openshell_sandbox::idmap::{IdMap, UserNamespace};
use openshell_sandbox::sandbox::{Event, ExecRequest, MadeAhead, SandboxDir, Stdio, exec, supervise, wait_exit};

use crate::files::{CA_CERT_FILE, CA_KEY_FILE};

/// Why a supervisor could not start its proxy, or an exec helper its process.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HelperError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Policy(#[from] openshell_policy::LoadError),
    #[error("signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] openshell_proxy::TlsError),
    #[error(transparent)]
    Sandbox(#[from] openshell_sandbox::sandbox::SandboxError),
    #[error(transparent)]
    Driver(#[from] openshell_driver::DriverError),
    #[error("a pidfd of process 1 ({pid}): {source}")]
    Pidfd {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for the process: {0}")]
    Wait(#[source] nix::Error),
    #[error("console socket: {0}")]
    Console(#[source] std::io::Error),
    #[error("console socket: {0}")]
    ConsoleMessage(#[source] wire::WireError),
    #[error("the console socket closed without a terminal")]
    NoTerminal,
    #[error("passing the terminal to the gateway: {0}")]
    PassTerminal(#[source] wire::WireError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HelperError + '_ {
    move |source| HelperError::Io { path: path.to_owned(), source }
}

/// Messages between the gateway and its helper processes (supervisor, exec).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HelperMessage {
    /// To a helper: its job, with descriptors attached (stdin, stdout, stderr) or none.
    Attach {
        job: HelperJob,
        dir: PathBuf,
        args: Vec<String>,
        env: Vec<String>,
        tty: bool,
        /// For a supervising job: the map of the user namespace attached first
        /// (the gateway's, for idmapped layers), when one is.
        #[serde(default)]
        userns: Option<IdMap>,
        /// For a supervising job: whether the loop device the sandbox's disk
        /// image is attached to comes next (before the stdio).
        #[serde(default)]
        disk_device: bool,
    },
    /// To a standby supervisor: its job is set; the client's stdio attached.
    Assign,
    /// From the supervisor: process 1 runs, with this host pid.
    Started {
        pid: i32,
    },
    /// From the exec helper: the terminal's master end is attached.
    Console,
    Exited {
        code: i32,
    },
    Failed {
        message: String,
    },
}

impl HelperMessage {
    /// A supervising job for the sandbox in `dir`, with a user namespace of
    /// `userns`'s map attached first when it is given, then the disk's loop
    /// device when `disk_device`.
    pub fn supervise(job: HelperJob, dir: &Path, userns: Option<IdMap>, disk_device: bool) -> HelperMessage {
        let (args, env) = (Vec::new(), Vec::new());
        HelperMessage::Attach { job, dir: dir.to_owned(), args, env, tty: false, userns, disk_device }
    }
}

/// What a helper process does for the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelperJob {
    /// Supervise one run of the sandbox in `dir`.
    Supervise,
    /// Start the sandbox in `dir` ahead of need; supervise it once assigned.
    Standby,
    /// One process joining the sandbox in `dir`.
    Exec,
}

fn report(message: &HelperMessage) {
    report_with(message, &[]);
}

fn report_with(message: &HelperMessage, fds: &[std::os::fd::BorrowedFd<'_>]) {
    // A gateway that went away (restarted) is not an error: the exit is also in exit.json.
    if let Err(e) = wire::send(std::io::stdin().as_fd(), message, fds) {
        eprintln!("reporting to the gateway: {e}");
    }
}

/// A pidfd of process `pid`.
pub fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?;
    Ok(rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?)
}

/// Where a running supervisor records itself: its pid and start time (so a
/// reused pid is never mistaken for it), then process 1's pid once it runs.
pub const SUPERVISOR_FILE: &str = "supervisor.pid";

/// A sandbox's [`SUPERVISOR_FILE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervisor {
    pub pid: i32,
    pub started: u64,
    pub init: Option<i32>,
}

impl Supervisor {
    /// The record in the sandbox directory `dir`, if it holds one.
    pub fn read(dir: &Path) -> Option<Supervisor> {
        let text = std::fs::read_to_string(dir.join(SUPERVISOR_FILE)).ok()?;
        let mut fields = text.split_whitespace();
        let pid = fields.next()?.parse().ok()?;
        let started = fields.next()?.parse().ok()?;
        Some(Supervisor { pid, started, init: fields.next().and_then(|f| f.parse().ok()) })
    }

    /// This process as the supervisor of the sandbox in `dir`.
    pub fn write(dir: &Path, init: Option<i32>) {
        let pid = std::process::id() as i32;
        let init = init.map(|i| format!(" {i}")).unwrap_or_default();
        // Whole or not at all: a reader never sees half a record.
        let (path, tmp) = (dir.join(SUPERVISOR_FILE), dir.join(format!("{SUPERVISOR_FILE}.tmp")));
        let written = std::fs::write(&tmp, format!("{pid} {}{init}\n", start_time(pid).unwrap_or(0)))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            eprintln!("supervisor: {}: {e}", path.display());
        }
    }

    /// Whether the recorded process still runs (same pid, same start time).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.started)
    }
}

/// The parent of process `pid` (field 4 of /proc/PID/stat), if it exists.
pub fn parent(pid: i32) -> Option<i32> {
    stat_field(pid, 1)?.parse().ok()
}

/// Field `n` (counted from 0 after the command name, field 3 being 0) of /proc/PID/stat.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    stat.rsplit_once(')')?.1.split_whitespace().nth(n).map(str::to_owned)
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_field(pid, 19)?.parse().ok()
}

/// `openshell gateway helper`: waits for a job, then does it; returns the exit code.
pub fn helper_main() -> i32 {
    let control = std::io::stdin();
    let (job, dir, args, env, tty, userns, disk_device, fds) = match wire::recv::<HelperMessage>(control.as_fd()) {
        Ok(Some((HelperMessage::Attach { job, dir, args, env, tty, userns, disk_device }, fds))) => {
            (job, dir, args, env, tty, userns, disk_device, fds)
        }
        Ok(Some((other, _))) => {
            eprintln!("helper: unexpected first message {other:?}");
            return 125;
        }
        // The gateway stopped before it needed this helper.
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("helper: {e}");
            return 125;
        }
    };
    let log_path = dir.join("helper.log");
    match std::fs::OpenOptions::new().create(true).append(true).open(&log_path) {
        Ok(log) => {
            let _ = rustix::stdio::dup2_stdout(&log);
            let _ = rustix::stdio::dup2_stderr(&log);
        }
        Err(e) => eprintln!("helper: {}: {e}", log_path.display()),
    }
    let mut fds = fds.into_iter();
    let userns = userns.and_then(|map| Some(UserNamespace::from_fd(fds.next()?, map)));
    let ahead = MadeAhead { userns, disk_device: if disk_device { fds.next() } else { None } };
    let stdio = Stdio { stdin: fds.next(), stdout: fds.next(), stderr: fds.next() };
    // A standby is made ahead of need; anything else is waited for (and this
    // helper may have been started by a thread that makes standbys).
    let nice = if job == HelperJob::Standby { priority::STANDBY_NICE } else { 0 };
    if let Err(e) = priority::set_this_thread(nice) {
        eprintln!("helper: nice {nice}: {e}");
    }
    match job {
        HelperJob::Supervise => supervise_job(&dir, Some(stdio), ahead),
        HelperJob::Standby => supervise_job(&dir, None, ahead),
        HelperJob::Exec => exec_job(&dir, args, env, tty, stdio),
    }
}

/// Waits for the gateway's `Assign` (with the client's stdio); `None` when the
/// gateway discards the sandbox (or goes away) instead.
fn wait_for_assignment() -> Option<Stdio> {
    match wire::recv::<HelperMessage>(std::io::stdin().as_fd()) {
        Ok(Some((HelperMessage::Assign, fds))) => {
            let mut fds = fds.into_iter();
            Some(Stdio { stdin: fds.next(), stdout: fds.next(), stderr: fds.next() })
        }
        _ => None,
    }
}

/// One run of a sandbox (given its stdio now, or on assignment), with what the
/// gateway made for it ahead; returns its exit code.
fn supervise_job(dir: &Path, stdio: Option<Stdio>, ahead: MadeAhead) -> i32 {
    let standby = stdio.is_none();
    Supervisor::write(dir, None);
    let record = dir.join(SUPERVISOR_FILE);
    let dir = SandboxDir(dir.to_path_buf());
    let init = std::cell::Cell::new(None);
    let mut on_event = |event| {
        match event {
            Event::Created(pid) => return start_proxy(&dir, pid).map_err(Into::into),
            // With a pidfd of process 1, opened here, by its parent, before it can
            // have been reaped: the gateway signals through it, never by number.
            Event::Started(pid) => match pidfd(pid) {
                Ok(fd) => {
                    init.set(Some(pid));
                    Supervisor::write(&dir.0, Some(pid));
                    report_with(&HelperMessage::Started { pid }, &[fd.as_fd()]);
                }
                Err(source) => return Err(HelperError::Pidfd { pid, source }.into()),
            },
            // Reported as soon as the output is delivered; cleanup follows.
            Event::Exited(code) => report(&HelperMessage::Exited { code }),
        }
        Ok(())
    };
    let mut stdio = stdio;
    let mut assign = || {
        if !standby {
            return stdio.take();
        }
        let assigned = wait_for_assignment()?;
        // Before process 1 gets its job: the job runs at normal priority.
        let pids: Vec<i32> = [std::process::id() as i32].into_iter().chain(init.get()).collect();
        if let Err(e) = priority::restore(&pids) {
            eprintln!("supervisor: back to normal priority: {e}");
        }
        Some(assigned)
    };
    let code = match supervise(&dir, ahead, &mut on_event, &mut assign) {
        Ok(Some(code)) => code,
        Ok(None) => {
            // Discarded before it had a job: nothing of it is kept.
            let _ = std::fs::remove_file(dir.0.join(SUPERVISOR_FILE));
            if let Err(e) = std::fs::remove_dir_all(&dir.0) {
                eprintln!("supervisor: removing {}: {e}", dir.0.display());
            }
            return 0;
        }
        Err(e) => {
            eprintln!("supervisor: {e}");
            report(&HelperMessage::Failed { message: e.to_string() });
            125
        }
    };
    let _ = std::fs::remove_file(&record);
    code
}

/// The audit log of a sandbox's proxy (OCSF JSON lines).
pub const AUDIT_FILE: &str = "audit.log";
/// The newest network policy revision ([`NetworkRevision`]), written by the gateway.
pub const NETWORK_FILE: &str = "network.json";
/// What the proxy made of it ([`Applied`]), written by the supervisor.
pub const APPLIED_FILE: &str = "network.applied.json";

/// A network policy revision for the proxy.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NetworkRevision {
    pub revision: u64,
    pub name: String,
    pub text: String,
}

/// The inference route for this sandbox's privacy router ([`RouteUpdate`]),
/// written by the gateway (0600: it holds the backend's credential).
pub const ROUTE_FILE: &str = "inference.json";
/// What the proxy made of it ([`Applied`], `revision` = the file's generation).
pub const ROUTE_APPLIED_FILE: &str = "inference.applied.json";

fn read_route(dir: &SandboxDir) -> Result<RouteUpdate, HelperError> {
    let path = dir.0.join(ROUTE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| HelperError::Json { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RouteUpdate { generation: 0, route: None }),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The proxy's answer to a revision.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub revision: u64,
    pub error: Option<String>,
}

/// The policy the proxy starts with: the newest revision, else the creation's.
fn network_policy(dir: &SandboxDir) -> Result<(u64, openshell_policy::Policy), HelperError> {
    if let Ok(bytes) = std::fs::read(dir.0.join(NETWORK_FILE))
        && let Ok(rev) = serde_json::from_slice::<NetworkRevision>(&bytes)
    {
        return Ok((rev.revision, openshell_policy::load_str(&rev.name, &rev.text)?));
    }
    let path = dir.policy();
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    Ok((1, openshell_policy::load_str(&path.display().to_string(), &text)?))
}

/// Applies the newest network revision on SIGHUP and the newest inference route
/// on SIGUSR1 (both from the gateway), and says how it went.
fn reload_on_hangup(dir: SandboxDir, handle: openshell_proxy::ProxyHandle) -> Result<(), HelperError> {
    use signal_hook::consts::{SIGHUP, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGUSR1]).map_err(HelperError::Signals)?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGUSR1 {
                let applied = match read_route(&dir) {
                    Ok(file) => match handle.set_route(file.route) {
                        Ok(()) => Applied { revision: file.generation, error: None },
                        Err(error) => Applied { revision: file.generation, error: Some(error.to_string()) },
                    },
                    Err(error) => Applied { revision: u64::MAX, error: Some(error.to_string()) },
                };
                if let Err(e) = openshell_sandbox::sandbox::write_json(&dir.0.join(ROUTE_APPLIED_FILE), &applied) {
                    eprintln!("proxy: {e}");
                }
                continue;
            }
            let outcome = std::fs::read(dir.0.join(NETWORK_FILE))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<NetworkRevision>(&b).map_err(|e| e.to_string()))
                .and_then(|rev| {
                    let policy = openshell_policy::load_str(&rev.name, &rev.text).map_err(|e| e.to_string())?;
                    handle.reload_as(policy, rev.revision).map_err(|e| e.to_string()).map(|()| rev.revision)
                });
            let applied = match outcome {
                Ok(revision) => Applied { revision, error: None },
                Err(error) => Applied { revision: u64::MAX, error: Some(error) },
            };
            if let Err(e) = openshell_sandbox::sandbox::write_json(&dir.0.join(APPLIED_FILE), &applied) {
                eprintln!("proxy: {e}");
            }
        }
    });
    Ok(())
}

/// TLS inspection for the sandbox's L7 endpoints and its router: its CA (made at
/// creation); the upstream roots (the system's plus `OPENSHELL_UPSTREAM_CA`) are
/// read when first needed. Without a CA, such endpoints are refused and the
/// reason is logged.
fn interceptor(dir: &SandboxDir, id: &str) -> Option<std::sync::Arc<openshell_proxy::Interceptor>> {
    let made = (|| -> Result<openshell_proxy::Interceptor, HelperError> {
        let read = |name: &str| {
            let path = dir.0.join(name);
            std::fs::read_to_string(&path).map_err(io(&path))
        };
        let ca = openshell_proxy::SandboxCa::from_pem(id, &read(CA_CERT_FILE)?, &read(CA_KEY_FILE)?)?;
        Ok(openshell_proxy::Interceptor::with_env_roots(ca)?)
    })();
    match made {
        Ok(i) => Some(std::sync::Arc::new(i)),
        Err(e) => {
            eprintln!("proxy: no TLS inspection, endpoints with L7 rules are refused: {e}");
            None
        }
    }
}

/// The sandbox's egress proxy, on the host end of its fenced link, in this
/// supervisor (a small tokio runtime on its own threads: started once the
/// container exists, since libcontainer needs this process single-threaded
/// until then). Without a link (no network policies) there is nothing to start.
fn start_proxy(dir: &SandboxDir, init: i32) -> Result<(), HelperError> {
    let config = dir.read_config()?;
    let Some(fence) = config.network else { return Ok(()) };
    Ok(serve_proxy(dir, &config.id, &fence, init as u32)?)
}

/// Serves the egress proxy of the sandbox `id` (files in `dir`: its policy and
/// revisions, CA, route, audit log) on the host end of `fence`, on threads of
/// this process, and applies new revisions and routes on SIGHUP and SIGUSR1.
/// `member` is a process in the sandbox's network namespace: callers are
/// identified through it. The local supervisor and the Docker driver's network
/// helper both run it.
pub fn serve_proxy(
    dir: &SandboxDir,
    id: &str,
    fence: &openshell_sandbox::fence::Fence,
    member: u32,
) -> Result<(), openshell_driver::DriverError> {
    use openshell_driver::DriverError;
    let (revision, policy) = network_policy(dir).map_err(DriverError::policy)?;
    let resolver = match std::env::var("OPENSHELL_PROXY_HOSTS") {
        Ok(spec) => openshell_proxy::WithOverrides::parse(&spec)
            .map_err(|e| DriverError::failed(format!("OPENSHELL_PROXY_HOSTS: {e}")))?,
        Err(_) => openshell_proxy::WithOverrides::default(),
    };
    let audit_path = dir.0.join(AUDIT_FILE);
    // Rotated at the policy's size, as the output log is: a sandbox that makes
    // its proxy refuse in a loop cannot fill the host's disk with audit lines.
    let rotate = policy.resources.logs.unwrap_or(openshell_policy::model::Resources::DEFAULT_LOGS);
    let audit =
        openshell_sandbox::logs::RotatingLog::open(&audit_path, rotate).map_err(DriverError::io(&audit_path))?;
    // Only the sandbox reaches it: bound to the host end of its link, serving
    // the sandbox's address alone.
    let listen = openshell_proxy::Fenced {
        addr: std::net::SocketAddr::new(fence.host_addr.into(), fence.proxy_port),
        device: fence.host_if.clone(),
        peer: fence.sandbox_addr.into(),
    };
    let proxy = openshell_proxy::Proxy::bind_fenced(
        &listen,
        openshell_proxy::ProxyConfig {
            sandbox: id.to_owned(),
            policy,
            revision,
            identify: Box::new(openshell_proxy::ProcIdentify::new(member)),
            resolver: Box::new(resolver),
            connector: Box::new(openshell_proxy::Direct),
            audit: Box::new(openshell_proxy::JsonLines::new(audit)),
            tls: interceptor(dir, id),
            route: read_route(dir).map_err(DriverError::failed)?.route,
            limits: Default::default(),
        },
    )
    .map_err(DriverError::failed)?;
    // Raw TCP for `protocol: tcp` endpoints: the fence sends it to a listener on
    // the sandbox's own address, made inside its namespace.
    let raw_tcp = std::net::SocketAddr::new(fence.sandbox_addr.into(), openshell_sandbox::fence::RAW_TCP_PORT);
    let raw_tcp =
        openshell_sandbox::fence::listen_in(&format!("/proc/{member}/ns/net"), raw_tcp).map_err(DriverError::failed)?;
    let proxy = proxy.raw_tcp_on(raw_tcp);
    let dns = proxy.dns_fenced(&listen).map_err(DriverError::failed)?;
    reload_on_hangup(dir.clone(), proxy.handle()).map_err(DriverError::failed)?;
    std::thread::spawn(move || {
        if let Err(e) = proxy.serve() {
            eprintln!("proxy: {e}");
        }
    });
    std::thread::spawn(move || {
        if let Err(e) = dns.serve() {
            eprintln!("dns: {e}");
        }
    });
    Ok(())
}

/// One `exec` into a running sandbox; returns the process's exit code.
fn exec_job(dir: &Path, args: Vec<String>, env: Vec<String>, tty: bool, stdio: Stdio) -> i32 {
    let dir = SandboxDir(dir.to_path_buf());
    let env = env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let outcome = (|| -> Result<i32, HelperError> {
        if !tty {
            let pid = exec(&dir, &ExecRequest { args, env, console_socket: None }, stdio)?;
            return wait_exit(pid).map_err(HelperError::Wait);
        }
        let socket = dir.0.join(format!("console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(io(&socket))?;
        let started = exec(&dir, &ExecRequest { args, env, console_socket: Some(socket.clone()) }, Stdio::default());
        let _ = std::fs::remove_file(&socket);
        let pid = started?;
        let master = receive_master(&listener)?;
        wire::send(std::io::stdin().as_fd(), &HelperMessage::Console, &[master.as_fd()])
            .map_err(HelperError::PassTerminal)?;
        drop(master);
        wait_exit(pid).map_err(HelperError::Wait)
    })();
    match outcome {
        Ok(code) => {
            report(&HelperMessage::Exited { code });
            code
        }
        Err(e) => {
            eprintln!("exec: {e}");
            report(&HelperMessage::Failed { message: e.to_string() });
            125
        }
    }
}

/// The terminal's master end, as libcontainer sends it to a console socket.
fn receive_master(listener: &UnixListener) -> Result<OwnedFd, HelperError> {
    let (stream, _) = listener.accept().map_err(HelperError::Console)?;
    match wire::recv_bytes(&stream) {
        Ok(Some((_, fds))) => fds.into_iter().next().ok_or(HelperError::NoTerminal),
        Ok(None) => Err(HelperError::NoTerminal),
        Err(e) => Err(HelperError::ConsoleMessage(e)),
    }
}
