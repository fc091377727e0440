//! A driver out of process: [`serve`] answers the [`Driver`] API on a Unix
//! socket for any driver, and [`SocketDriver`] is a `Driver` that makes each
//! call over that socket. The gateway uses either alike.
//!
//! One connection per call, on the gateway's message wire (one JSON document
//! per SOCK_SEQPACKET message, descriptors attached). Calls that hand out a
//! run (start, an assigned standby, exec, a sandbox found running) keep their
//! connection: the server sends the run's exit code, then its cleanup's
//! outcome, as they come. A standby's connection waits for `Assign` (with the
//! client's stdio) or `Discard`; a log's answers `Read`s; a sweep asks the
//! client, once it has listed what it holds, which ids are known.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use nix::sys::signal::Signal;
use openshell_gateway_api::{ErrorCode, wire};
use serde::{Deserialize, Serialize};

use crate::{
    Applied, Created, Driver, DriverError, Exec, ExecSpec, Exit, Found, Job, LogKind, LogStream, Pending, RouteUpdate,
    Run, SandboxSpec, Stdio, Watch,
};

/// The most bytes one `Read` of a log answers (as JSON numbers, within a message).
const READ_MAX: usize = 16 * 1024;

#[derive(Debug, Serialize, Deserialize)]
enum Call {
    Name,
    Create {
        id: String,
        spec: SandboxSpec,
    },
    SetJob {
        id: String,
        job: Job,
    },
    /// With the client's stdio attached.
    Start {
        id: String,
    },
    Standby {
        id: String,
    },
    /// On a standby's connection, with the client's stdio attached.
    Assign,
    Discard,
    /// With the client's stdio attached.
    Exec {
        id: String,
        spec: ExecSpec,
    },
    Connect {
        id: String,
        port: u16,
    },
    Signal {
        id: String,
        signal: i32,
    },
    Find {
        id: String,
    },
    Sweep,
    /// The answer to `Reply::AskKnown`.
    Known {
        ids: Option<HashSet<String>>,
    },
    LastExit {
        id: String,
    },
    Log {
        id: String,
        kind: LogKind,
    },
    Read {
        max: usize,
    },
    HasNetwork {
        id: String,
    },
    ReloadNetwork {
        id: String,
        revision: i64,
        policy_name: String,
        policy: String,
        running: bool,
        wait: bool,
    },
    SetRoute {
        id: String,
        route: RouteUpdate,
        running: bool,
        wait: bool,
    },
    Remove {
        id: String,
    },
}

/// A driver error as it crosses the socket: its code and message.
#[derive(Debug, Serialize, Deserialize)]
struct WireError {
    code: ErrorCode,
    message: String,
}

impl From<DriverError> for WireError {
    fn from(e: DriverError) -> Self {
        WireError { code: e.code(), message: e.to_string() }
    }
}

impl From<WireError> for DriverError {
    fn from(e: WireError) -> Self {
        DriverError::Remote { code: e.code, message: e.message }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Name(String),
    Created(Created),
    Done,
    /// A run started (also a standby assigned, an exec, one found running);
    /// `console` when a terminal's master end is attached.
    Started {
        pid: Option<i32>,
        console: bool,
    },
    /// A standby waits for `Assign` or `Discard` on this connection.
    Standing,
    Connected,
    Ended(Option<Exit>),
    LastExit(Option<Exit>),
    Log,
    Bytes(Vec<u8>),
    Bool(bool),
    Applied(Applied),
    /// The run's exit code (or why there is none).
    Code(Result<i32, WireError>),
    /// The run's cleanup is done (or failed).
    Reaped(Result<(), WireError>),
    /// Which ids does the state know? (during a sweep)
    AskKnown,
    Error(WireError),
}

fn lost(e: impl std::fmt::Display) -> DriverError {
    DriverError::failed(format!("the driver's socket: {e}"))
}

/// A [`Driver`] whose calls go to [`serve`] on the socket at `path`.
pub struct SocketDriver {
    path: std::path::PathBuf,
    name: &'static str,
}

impl SocketDriver {
    /// Connects once to learn the driver's name (and that it answers).
    pub fn connect(path: &Path) -> Result<SocketDriver, DriverError> {
        let mut driver = SocketDriver { path: path.to_path_buf(), name: "" };
        let name = match driver.call(&Call::Name, &[])?.0 {
            Reply::Name(name) => name,
            other => return Err(unexpected(&other)),
        };
        // Once per gateway: `Driver::name` lends a `'static` name.
        driver.name = Box::leak(format!("{name} (out of process, {})", path.display()).into_boxed_str());
        Ok(driver)
    }

    /// Sends `call` on a new connection; returns the first answer and the
    /// connection (for calls that go on).
    fn call(&self, call: &Call, fds: &[BorrowedFd<'_>]) -> Result<(Reply, Vec<OwnedFd>, OwnedFd), DriverError> {
        let conn = wire::connect(&self.path).map_err(|e| lost(format!("{}: {e}", self.path.display())))?;
        wire::send(&conn, call, fds).map_err(lost)?;
        let (reply, fds) = next(&conn)?;
        match reply {
            Reply::Error(e) => Err(e.into()),
            reply => Ok((reply, fds, conn)),
        }
    }

    fn simple(&self, call: &Call) -> Result<Reply, DriverError> {
        self.call(call, &[]).map(|(reply, _, _)| reply)
    }
}

fn next(conn: &OwnedFd) -> Result<(Reply, Vec<OwnedFd>), DriverError> {
    wire::recv::<Reply>(conn).map_err(lost)?.ok_or_else(|| lost("closed without an answer"))
}

fn unexpected(reply: &Reply) -> DriverError {
    DriverError::failed(format!("the driver answered {reply:?}"))
}

fn borrowed(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}

/// A run on the other side: its code, then its cleanup, arrive on `conn`.
struct RemoteWatch {
    conn: OwnedFd,
}

impl Watch for RemoteWatch {
    fn code(&mut self) -> Result<i32, DriverError> {
        match next(&self.conn)?.0 {
            Reply::Code(code) => code.map_err(DriverError::from),
            other => Err(unexpected(&other)),
        }
    }

    fn reap(self: Box<Self>) -> Result<(), DriverError> {
        match next(&self.conn)?.0 {
            Reply::Reaped(reaped) => reaped.map_err(DriverError::from),
            other => Err(unexpected(&other)),
        }
    }
}

fn started(reply: Reply, conn: OwnedFd) -> Result<Run, DriverError> {
    match reply {
        Reply::Started { pid, .. } => Ok(Run { pid, watch: Box::new(RemoteWatch { conn }) }),
        other => Err(unexpected(&other)),
    }
}

struct RemotePending {
    conn: OwnedFd,
}

impl Pending for RemotePending {
    fn assign(self: Box<Self>, stdio: Stdio) -> Result<Run, DriverError> {
        wire::send(&self.conn, &Call::Assign, &borrowed(&stdio)).map_err(lost)?;
        match next(&self.conn)?.0 {
            Reply::Error(e) => Err(e.into()),
            reply => started(reply, self.conn),
        }
    }

    fn discard(self: Box<Self>) {
        if wire::send(&self.conn, &Call::Discard, &[]).is_ok() {
            let _ = next(&self.conn);
        }
    }
}

struct RemoteLog {
    conn: OwnedFd,
}

impl LogStream for RemoteLog {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DriverError> {
        wire::send(&self.conn, &Call::Read { max: buf.len().min(READ_MAX) }, &[]).map_err(lost)?;
        match next(&self.conn)?.0 {
            Reply::Bytes(bytes) if bytes.len() <= buf.len() => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            Reply::Error(e) => Err(e.into()),
            other => Err(unexpected(&other)),
        }
    }
}

impl Driver for SocketDriver {
    fn name(&self) -> &'static str {
        self.name
    }

    fn create(&self, id: &str, spec: &SandboxSpec) -> Result<Created, DriverError> {
        match self.simple(&Call::Create { id: id.into(), spec: spec.clone() })? {
            Reply::Created(created) => Ok(created),
            other => Err(unexpected(&other)),
        }
    }

    fn set_job(&self, id: &str, job: &Job) -> Result<(), DriverError> {
        self.simple(&Call::SetJob { id: id.into(), job: job.clone() }).map(drop)
    }

    fn start(&self, id: &str, stdio: Stdio) -> Result<Run, DriverError> {
        let (reply, _, conn) = self.call(&Call::Start { id: id.into() }, &borrowed(&stdio))?;
        started(reply, conn)
    }

    fn standby(&self, id: &str) -> Result<Box<dyn Pending>, DriverError> {
        match self.call(&Call::Standby { id: id.into() }, &[])? {
            (Reply::Standing, _, conn) => Ok(Box::new(RemotePending { conn })),
            (other, _, _) => Err(unexpected(&other)),
        }
    }

    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<Exec, DriverError> {
        let (reply, fds, conn) = self.call(&Call::Exec { id: id.into(), spec: spec.clone() }, &borrowed(&stdio))?;
        let console = matches!(reply, Reply::Started { console: true, .. }).then(|| fds.into_iter().next()).flatten();
        Ok(Exec { console, watch: started(reply, conn)?.watch })
    }

    fn connect(&self, id: &str, port: u16) -> Result<OwnedFd, DriverError> {
        match self.call(&Call::Connect { id: id.into(), port }, &[])? {
            (Reply::Connected, fds, _) => fds.into_iter().next().ok_or_else(|| lost("no socket attached")),
            (other, _, _) => Err(unexpected(&other)),
        }
    }

    fn signal(&self, id: &str, signal: Signal) -> Result<(), DriverError> {
        self.simple(&Call::Signal { id: id.into(), signal: signal as i32 }).map(drop)
    }

    fn find(&self, id: &str) -> Found {
        match self.call(&Call::Find { id: id.into() }, &[]) {
            Ok((Reply::Ended(exit), _, _)) => Found::Ended(exit),
            Ok((reply @ Reply::Started { .. }, _, conn)) => match started(reply, conn) {
                Ok(run) => Found::Running(run),
                Err(_) => Found::Ended(None),
            },
            // The driver cannot say: nothing is adopted, and its last exit is unknown.
            _ => Found::Ended(None),
        }
    }

    fn sweep(&self, known: &dyn Fn() -> Option<HashSet<String>>) {
        let Ok((mut reply, _, conn)) = self.call(&Call::Sweep, &[]) else { return };
        while let Reply::AskKnown = reply {
            if wire::send(&conn, &Call::Known { ids: known() }, &[]).is_err() {
                return;
            }
            match next(&conn) {
                Ok((r, _)) => reply = r,
                Err(_) => return,
            }
        }
    }

    fn last_exit(&self, id: &str) -> Option<Exit> {
        match self.simple(&Call::LastExit { id: id.into() }) {
            Ok(Reply::LastExit(exit)) => exit,
            _ => None,
        }
    }

    fn log(&self, id: &str, kind: LogKind) -> Result<Box<dyn LogStream>, DriverError> {
        match self.call(&Call::Log { id: id.into(), kind }, &[])? {
            (Reply::Log, _, conn) => Ok(Box::new(RemoteLog { conn })),
            (other, _, _) => Err(unexpected(&other)),
        }
    }

    fn has_network(&self, id: &str) -> bool {
        matches!(self.simple(&Call::HasNetwork { id: id.into() }), Ok(Reply::Bool(true)))
    }

    fn reload_network(
        &self,
        id: &str,
        revision: i64,
        policy_name: &str,
        policy: &str,
        running: bool,
        wait: bool,
    ) -> Result<Applied, DriverError> {
        let call = Call::ReloadNetwork {
            id: id.into(),
            revision,
            policy_name: policy_name.into(),
            policy: policy.into(),
            running,
            wait,
        };
        match self.simple(&call)? {
            Reply::Applied(applied) => Ok(applied),
            other => Err(unexpected(&other)),
        }
    }

    fn set_route(&self, id: &str, route: &RouteUpdate, running: bool, wait: bool) -> Result<Applied, DriverError> {
        match self.simple(&Call::SetRoute { id: id.into(), route: route.clone(), running, wait })? {
            Reply::Applied(applied) => Ok(applied),
            other => Err(unexpected(&other)),
        }
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        self.simple(&Call::Remove { id: id.into() }).map(drop)
    }
}

/// Answers the Driver API for `driver` on a socket at `path` (0600), a thread
/// per connection, until the process ends.
pub fn serve(driver: Arc<dyn Driver>, path: &Path) -> Result<(), DriverError> {
    let listener = wire::listen(path).map_err(DriverError::io(path))?;
    loop {
        let conn = match rustix::net::accept_with(&listener, rustix::net::SocketFlags::CLOEXEC) {
            Ok(c) => c,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(DriverError::io(path)(e.into())),
        };
        // The socket is owner-only; the peer must be this process's own uid too.
        let peer = rustix::net::sockopt::socket_peercred(&conn).map(|c| c.uid);
        if peer.ok() != Some(rustix::process::geteuid()) {
            continue;
        }
        let driver = Arc::clone(&driver);
        std::thread::spawn(move || {
            if let Ok(Some((call, fds))) = wire::recv::<Call>(&conn) {
                answer(driver.as_ref(), call, fds, &conn);
            }
        });
    }
}

fn reply(conn: &OwnedFd, reply: &Reply, fds: &[BorrowedFd<'_>]) -> bool {
    wire::send(conn, reply, fds).is_ok()
}

/// Sends a run's start, then its code and cleanup as they come.
fn follow(conn: &OwnedFd, pid: Option<i32>, console: Option<OwnedFd>, mut watch: Box<dyn Watch>) {
    let fds: Vec<BorrowedFd<'_>> = console.iter().map(|c| c.as_fd()).collect();
    if !reply(conn, &Reply::Started { pid, console: console.is_some() }, &fds) {
        return;
    }
    drop(console);
    let code = watch.code().map_err(WireError::from);
    if !reply(conn, &Reply::Code(code), &[]) {
        return;
    }
    let reaped = watch.reap().map_err(WireError::from);
    reply(conn, &Reply::Reaped(reaped), &[]);
}

fn answer(driver: &dyn Driver, call: Call, fds: Vec<OwnedFd>, conn: &OwnedFd) {
    let outcome = match call {
        Call::Name => Ok(Reply::Name(driver.name().to_owned())),
        Call::Create { id, spec } => driver.create(&id, &spec).map(Reply::Created),
        Call::SetJob { id, job } => driver.set_job(&id, &job).map(|()| Reply::Done),
        Call::Start { id } => match driver.start(&id, fds) {
            Ok(run) => return follow(conn, run.pid, None, run.watch),
            Err(e) => Err(e),
        },
        Call::Standby { id } => match driver.standby(&id) {
            Ok(pending) => return standby(conn, pending),
            Err(e) => Err(e),
        },
        Call::Exec { id, spec } => match driver.exec(&id, &spec, fds) {
            Ok(exec) => return follow(conn, None, exec.console, exec.watch),
            Err(e) => Err(e),
        },
        Call::Connect { id, port } => match driver.connect(&id, port) {
            Ok(stream) => {
                reply(conn, &Reply::Connected, &[stream.as_fd()]);
                return;
            }
            Err(e) => Err(e),
        },
        Call::Signal { id, signal } => Signal::try_from(signal)
            .map_err(|e| DriverError::failed(format!("signal {signal}: {e}")))
            .and_then(|s| driver.signal(&id, s))
            .map(|()| Reply::Done),
        Call::Find { id } => match driver.find(&id) {
            Found::Running(run) => return follow(conn, run.pid, None, run.watch),
            Found::Ended(exit) => Ok(Reply::Ended(exit)),
        },
        Call::Sweep => {
            driver.sweep(&|| {
                if !reply(conn, &Reply::AskKnown, &[]) {
                    return None;
                }
                match wire::recv::<Call>(conn) {
                    Ok(Some((Call::Known { ids }, _))) => ids,
                    _ => None,
                }
            });
            Ok(Reply::Done)
        }
        Call::LastExit { id } => Ok(Reply::LastExit(driver.last_exit(&id))),
        Call::Log { id, kind } => match driver.log(&id, kind) {
            Ok(log) => return serve_log(conn, log),
            Err(e) => Err(e),
        },
        Call::HasNetwork { id } => Ok(Reply::Bool(driver.has_network(&id))),
        Call::ReloadNetwork { id, revision, policy_name, policy, running, wait } => {
            driver.reload_network(&id, revision, &policy_name, &policy, running, wait).map(Reply::Applied)
        }
        Call::SetRoute { id, route, running, wait } => driver.set_route(&id, &route, running, wait).map(Reply::Applied),
        Call::Remove { id } => driver.remove(&id).map(|()| Reply::Done),
        Call::Assign | Call::Discard | Call::Known { .. } | Call::Read { .. } => {
            Err(DriverError::failed("a call that only continues another"))
        }
    };
    let answer = outcome.unwrap_or_else(|e| Reply::Error(e.into()));
    reply(conn, &answer, &[]);
}

/// A standby: waits for `Assign` (then follows the run) or `Discard`; a
/// connection closed without either discards it.
fn standby(conn: &OwnedFd, pending: Box<dyn Pending>) {
    if !reply(conn, &Reply::Standing, &[]) {
        return pending.discard();
    }
    match wire::recv::<Call>(conn) {
        Ok(Some((Call::Assign, stdio))) => match pending.assign(stdio) {
            Ok(run) => follow(conn, run.pid, None, run.watch),
            Err(e) => {
                reply(conn, &Reply::Error(e.into()), &[]);
            }
        },
        _ => {
            pending.discard();
            reply(conn, &Reply::Done, &[]);
        }
    }
}

fn serve_log(conn: &OwnedFd, mut log: Box<dyn LogStream>) {
    if !reply(conn, &Reply::Log, &[]) {
        return;
    }
    let mut buf = vec![0u8; READ_MAX];
    while let Ok(Some((Call::Read { max }, _))) = wire::recv::<Call>(conn) {
        let answer = match log.read(&mut buf[..max.min(READ_MAX)]) {
            Ok(n) => Reply::Bytes(buf[..n].to_vec()),
            Err(e) => Reply::Error(e.into()),
        };
        if !reply(conn, &answer, &[]) {
            return;
        }
    }
}
