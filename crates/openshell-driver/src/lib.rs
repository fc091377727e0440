//! The boundary between the gateway (state, API, auth) and where sandboxes run.
//!
//! A [`Driver`] speaks in sandbox ids, specs, streams (descriptors, log streams)
//! and events (a run's exit): never in host pids or paths, which a Docker or
//! Kubernetes driver cannot have. The local driver (`openshell-driver-local`)
//! runs sandboxes on this host through libcontainer.

mod error;
mod job;
pub mod priority;
pub mod socket;

pub use error::DriverError;
pub use job::{CA_BUNDLE, Job, ROUTED_KEY, routed_env};

use std::os::fd::OwnedFd;

use nix::sys::signal::Signal;

/// What creation needs: the sandbox's name (what a driver may show, e.g. as a
/// container's name), the image by manifest digest (in the store the driver
/// was given) and the policy's text (named in its errors by `policy_name`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SandboxSpec {
    pub name: String,
    pub image_digest: String,
    pub policy_name: String,
    pub policy: String,
}

/// What creation fixed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Created {
    /// The image's environment (with a default PATH): the base of every job's.
    pub env: Vec<String>,
    /// The sandbox's egress proxy URL, when its policy has network policies (its
    /// trust bundle is then at [`CA_BUNDLE`]).
    pub proxy: Option<String>,
}

/// A client's stdin, stdout and stderr (in that order), or none: the run's
/// output then goes only to its log.
pub type Stdio = Vec<OwnedFd>;

/// A started run.
pub struct Run {
    /// The host pid of its process 1, where the driver has one: shown to
    /// people, never acted on.
    pub pid: Option<i32>,
    pub watch: Box<dyn Watch>,
}

/// The end of a run (or of an exec), as its driver sees it.
pub trait Watch: Send {
    /// The exit code as soon as it is known (the output delivered), or why there
    /// is none. The driver may still be cleaning up: [`Watch::reap`].
    fn code(&mut self) -> Result<i32, DriverError>;
    /// Waits until the driver has cleaned up after the run; a failure reported
    /// after the exit code is returned.
    fn reap(self: Box<Self>) -> Result<(), DriverError>;
}

impl dyn Watch {
    /// The exit code once the driver is done with the run.
    pub fn wait(mut self: Box<Self>) -> Result<i32, DriverError> {
        let code = self.code();
        let reaped = self.reap();
        let code = code?;
        reaped.map(|()| code)
    }
}

/// A sandbox started ahead of need: process 1 runs and waits for its job.
pub trait Pending: Send {
    /// Gives it the job set before ([`Driver::set_job`]) and the client's stdio.
    fn assign(self: Box<Self>, stdio: Stdio) -> Result<Run, DriverError>;
    /// Ends it unassigned; nothing of it is kept.
    fn discard(self: Box<Self>);
}

/// One process joining a running sandbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// `K=V` entries on top of the sandbox's job environment.
    pub env: Vec<String>,
    /// Give it a terminal.
    pub tty: bool,
}

/// A started exec: the terminal's master end (with `tty`) and its end.
pub struct Exec {
    pub console: Option<OwnedFd>,
    pub watch: Box<dyn Watch>,
}

/// How a run ended, as the driver recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    pub code: i32,
    /// Seconds since the Unix epoch.
    pub finished: u64,
}

/// What a sandbox is found doing when a gateway (re)starts.
pub enum Found {
    /// Still running: its end is watched again.
    Running(Run),
    /// Not running (its last exit, if the driver recorded one).
    Ended(Option<Exit>),
}

/// Which of a sandbox's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogKind {
    /// What its main process wrote.
    Output,
    /// One OCSF JSON line per network decision of its proxy.
    Audit,
}

/// A log being read: older content first, then what is appended (a rotation
/// followed). `read` answers 0 at the current end.
pub trait LogStream: Send {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DriverError>;
}

/// What became of a policy or route handed to a sandbox's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Applied {
    /// The proxy confirmed it: new connections are decided by it.
    Confirmed,
    /// Handed to the running proxy (not waited for).
    Sent,
    /// The sandbox is not running: its proxy starts with it.
    AtStart,
}

/// The gateway's inference route as one sandbox's proxy gets it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RouteUpdate {
    /// Grows with every change, so an answer can be matched to it.
    pub generation: u64,
    pub route: Option<openshell_proxy::router::InferenceRoute>,
}

/// Where sandboxes run. Every method names a sandbox by its id.
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;
    /// Fixes everything about a new sandbox (image, spec, policy) without starting
    /// it; its job (command, environment) is set apart ([`Driver::set_job`]).
    fn create(&self, id: &str, spec: &SandboxSpec) -> Result<Created, DriverError>;
    /// Sets what the sandbox's process 1 runs (at its next start or assignment).
    fn set_job(&self, id: &str, job: &Job) -> Result<(), DriverError>;
    /// Starts the sandbox's process 1 with its job, with the client's stdio when given.
    fn start(&self, id: &str, stdio: Stdio) -> Result<Run, DriverError>;
    /// Starts the sandbox's process 1 ahead of need; it waits for [`Pending::assign`].
    fn standby(&self, id: &str) -> Result<Box<dyn Pending>, DriverError>;
    /// Runs one more process in a running sandbox.
    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<Exec, DriverError>;
    /// A TCP connection to `port` on the running sandbox's own loopback (what
    /// `sandbox forward` relays).
    fn connect(&self, id: &str, port: u16) -> Result<OwnedFd, DriverError>;
    /// Signals the running sandbox's process 1 (which passes it on to the
    /// workload); a process that ended is never confused with one that reused
    /// its number.
    fn signal(&self, id: &str, signal: Signal) -> Result<(), DriverError>;
    /// What a sandbox the state says runs (or was being started) is doing now
    /// (a gateway restarted).
    fn find(&self, id: &str) -> Found;
    /// Removes what the driver holds of sandboxes the state does not know (a
    /// standby sandbox of a gateway that died). `known` is asked after the
    /// driver has listed what it holds, so that a sandbox another replica begins
    /// meanwhile is known by then; `None` (the state could not be read) keeps all.
    fn sweep(&self, known: &dyn Fn() -> Option<std::collections::HashSet<String>>);
    /// The gateway is stopping (its sandboxes run on): work done ahead of need
    /// is finished or undone, so that none of it outlives the gateway half made.
    fn shutdown(&self) {}
    /// How the sandbox's last run ended, if it did.
    fn last_exit(&self, id: &str) -> Option<Exit>;
    /// One of the sandbox's logs.
    fn log(&self, id: &str, kind: LogKind) -> Result<Box<dyn LogStream>, DriverError>;
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
    /// Hands the inference route to the sandbox's proxy (it holds the backend's
    /// credential, which never enters the sandbox); like [`Driver::reload_network`].
    fn set_route(&self, id: &str, route: &RouteUpdate, running: bool, wait: bool) -> Result<Applied, DriverError>;
    /// Removes everything of a stopped sandbox.
    fn remove(&self, id: &str) -> Result<(), DriverError>;
    /// Whether the gateway must run as root to create sandboxes with this driver
    /// (it makes namespaces, cgroups or mounts on this host); a driver that only
    /// asks another system (a cluster's API) answers false.
    fn needs_root(&self) -> bool {
        true
    }
}
