//! The runtime's operations on containers under one state root, through
//! libcontainer: what `create`, `start`, `state`, `kill`, `delete`, `exec`, `run`,
//! `ps`, `list`, `pause` and `resume` do. Errors are typed; `main` renders them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::{LinuxResources, Spec, UserBuilder};
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::signal::{SigSet, Signal as NixSignal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use crate::executor::{ExecExecutor, Reporting};
use crate::pod::{self, PodError};
use crate::pod_egress::{self, EgressError};
use crate::pod_trust::{self, TrustError};
use crate::policy::{self, PolicyError, SandboxPolicy};
use crate::prepared;
use openshell_sandbox::run::InitMode;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid container id `{0}`: use letters, digits, `_`, `+`, `-` and `.` (not `.` or `..` alone)")]
    InvalidId(String),
    /// containerd's shim recognises "does not exist".
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container \"{0}\" already exists")]
    Exists(String),
    /// containerd's shim recognises "container not running" after a kill.
    #[error("container \"{0}\": container not running")]
    NotRunning(String),
    #[error("container \"{id}\" is {status}: {action} needs it {needed}")]
    Status { id: String, status: &'static str, action: &'static str, needed: &'static str },
    #[error("{}: {message}", path.display())]
    Spec { path: PathBuf, message: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Prepared(#[from] crate::prepared::PreparedError),
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("container \"{id}\": {message}")]
    Container { id: String, message: String },
    #[error("container \"{id}\": {what}")]
    Unsupported { id: String, what: String },
    #[error("invalid signal `{0}`: give a name (TERM, SIGKILL) or a number (1-31)")]
    Signal(String),
    #[error("invalid user `{0}`: give uid or uid:gid")]
    User(String),
    #[error("invalid environment variable `{0}`: give NAME=VALUE")]
    Env(String),
    #[error("exec needs a command (or --process FILE)")]
    NoCommand,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for process {pid}: {source}")]
    Wait {
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// An error and its causes on one line (libcontainer puts the useful part in sources).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

fn status_name(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

/// `create` and `run` options (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
}

/// `exec` options (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A whole OCI process (JSON); excludes the flags below that describe one.
    pub process: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub tty: bool,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub preserve_fds: i32,
    pub args: Vec<String>,
}

/// A container's state, as `runc state` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateReport {
    pub oci_version: String,
    pub id: String,
    /// 0 once stopped.
    pub pid: i32,
    pub status: &'static str,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339.
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What a bundle asks for that this host cannot give: a mount label needs
/// SELinux (runc fails the mounts with it); a process label without SELinux
/// is said in the runtime's log and the container runs without it.
fn check_labels(id: &str, spec: &Spec) -> Result<(), RuntimeError> {
    if Path::new("/sys/fs/selinux/enforce").exists() {
        return Ok(());
    }
    if let Some(label) = spec.linux().as_ref().and_then(|l| l.mount_label().as_ref()) {
        return Err(RuntimeError::Unsupported {
            id: id.to_owned(),
            what: format!("linux.mountLabel `{label}` needs SELinux, which is not enabled on this host"),
        });
    }
    if let Some(label) = spec.process().as_ref().and_then(|p| p.selinux_label().as_ref()) {
        tracing::warn!(label = %label, "process.selinuxLabel is ignored: SELinux is not enabled on this host");
    }
    Ok(())
}

/// The runtime: a state root and the global flags that apply to every container.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// Policy for bundles without the annotation (`--policy`).
    pub default_policy: Option<PathBuf>,
    /// What a gateway's Docker driver prepared for its containers (`--sandbox-dir`).
    pub sandbox_dir: Option<PathBuf>,
}

fn load_spec(bundle: &Path) -> Result<Spec, RuntimeError> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|e| RuntimeError::Spec { path, message: chain(&e) })
}

impl Runtime {
    /// Creates the state root if missing, readable by root only (as runc's).
    fn ensure_root(&self) -> Result<(), RuntimeError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|source| RuntimeError::Io { path: self.root.clone(), source })
    }

    /// The state directory of `id` (the id checked first: it becomes a path).
    pub fn container_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let valid = !id.is_empty()
            && id != "."
            && id != ".."
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
        if !valid {
            return Err(RuntimeError::InvalidId(id.to_owned()));
        }
        Ok(self.root.join(id))
    }

    fn load(&self, id: &str) -> Result<Container, RuntimeError> {
        let dir = self.container_dir(id)?;
        if !libcontainer::container::State::file_path(&dir).exists() {
            return Err(RuntimeError::NotFound(id.to_owned()));
        }
        Container::load(dir).map_err(|e| self.container_error(id, &e))
    }

    fn container_error(&self, id: &str, e: &dyn std::error::Error) -> RuntimeError {
        RuntimeError::Container { id: id.to_owned(), message: chain(e) }
    }

    /// The container's policy (a prepared sandbox's, the annotations', `--policy`, or a
    /// pod's baseline), loaded; and the bundle rewritten where that policy or the
    /// prepared sandbox decides: a pod's confinement, the sandbox's network namespace.
    fn prepare(
        &self,
        id: &str,
        bundle: &Path,
        spec: &mut Spec,
    ) -> Result<(Option<prepared::Prepared>, Option<SandboxPolicy>), RuntimeError> {
        let prepared = match &self.sandbox_dir {
            Some(dir) => prepared::find(dir, id, spec)?,
            None => None,
        };
        let chosen = match &prepared {
            Some(p) => Some(policy::PolicySource::HostFile(p.policy.clone())),
            None => policy::select(spec, self.default_policy.as_deref())?,
        };
        let policy = chosen.map(|source| policy::load_source(&source, spec)).transpose()?;
        if let Some(policy) = &policy
            && let Some(kind) = pod::container_type(spec)
        {
            if kind == pod::ContainerType::Container {
                let sandbox = pod_egress::sandbox_id(spec)?.to_owned();
                let sandbox_dir = self.container_dir(&sandbox)?;
                pod_trust::install(bundle, spec, &sandbox_dir, &sandbox)?;
                pod::confine(bundle, spec, &policy.resources, &pod_egress::proxy_env())?;
                pod_egress::push(&sandbox_dir, &sandbox, policy.text())?;
            } else {
                pod::confine(bundle, spec, &policy.resources, &pod_egress::proxy_env())?;
            }
        }
        if let Some(prepared) = &prepared {
            prepared::check_network(id, prepared, policy.as_ref().is_some_and(|p| p.has_network))?;
            if let Some(netns) = &prepared.netns {
                prepared::join_network(bundle, spec, netns)?;
            }
        }
        Ok((prepared, policy))
    }

    /// Creates the container: its process waits for `start`. The bundle's policy
    /// (annotation or `--policy`) is loaded first, so a bad one fails here.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Pid, RuntimeError> {
        let dir = self.container_dir(id)?;
        if dir.exists() {
            return Err(RuntimeError::Exists(id.to_owned()));
        }
        self.ensure_root()?;
        let bundle = std::fs::canonicalize(&opts.bundle)
            .map_err(|source| RuntimeError::Io { path: opts.bundle.clone(), source })?;
        let mut spec = load_spec(&bundle)?;
        check_labels(id, &spec)?;
        let (prepared, policy) = self.prepare(id, &bundle, &mut spec)?;
        let cerr = |e: &dyn std::error::Error| self.container_error(id, e);
        let builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(|e| cerr(&e))?
            .with_pid_file(opts.pid_file.as_ref())
            .map_err(|e| cerr(&e))?
            .with_console_socket(opts.console_socket.as_ref())
            .with_preserved_fds(opts.preserve_fds);
        let builder = match &policy {
            Some(policy) => {
                tracing::debug!(policy = %policy.source, "applying the policy's Landlock rules and seccomp filter");
                let mode = match &prepared {
                    Some(p) => p.init_mode(),
                    None => pod::init_mode(&spec)?,
                };
                builder.with_executor(Reporting(policy.executor(mode)))
            }
            None => builder.with_executor(Reporting(DefaultExecutor {})),
        };
        let container = builder
            .as_init(&bundle)
            .with_systemd(self.systemd_cgroup)
            .with_detach(true)
            .with_no_pivot(opts.no_pivot)
            .build()
            .map_err(|e| cerr(&e))?;
        let pid = container.pid().ok_or_else(|| RuntimeError::Container {
            id: id.to_owned(),
            message: "no process id after create".into(),
        })?;
        if let Some(path) = self.named_cgroup(&spec)
            && let Err(e) = crate::hierarchies::join(&path, pid.as_raw())
        {
            let mut container = container;
            let _ = container.delete(true);
            return Err(RuntimeError::Container {
                id: id.to_owned(),
                message: format!("cgroup {}: {e}", path.display()),
            });
        }
        if pod::container_type(&spec) == Some(pod::ContainerType::Sandbox)
            && let Err(e) = pod_egress::start(&dir, id, &spec, pid.as_raw().unsigned_abs())
        {
            let mut container = container;
            let _ = container.delete(true);
            return Err(e.into());
        }
        if let Some(policy) = &policy
            && let Err(e) = policy.save(&dir)
        {
            // exec could not apply the policy: do not leave a container half-made.
            let mut container = container;
            if let Err(del) = container.delete(true) {
                tracing::error!(error = %chain(&del), "deleting the container after a failed create");
            }
            return Err(e.into());
        }
        Ok(pid)
    }

    /// Lets the created container's process exec the workload.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut container = self.load(id)?;
        if !container.can_start() {
            return Err(RuntimeError::Status {
                id: id.to_owned(),
                status: status_name(container.status()),
                action: "start",
                needed: "created",
            });
        }
        container.start().map_err(|e| self.container_error(id, &e))
    }

    /// The container's state.
    pub fn state(&self, id: &str) -> Result<StateReport, RuntimeError> {
        let container = self.load(id)?;
        report(&container)
    }

    /// Sends `signal` to the container's process (`all`: to every process in its cgroup).
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuntimeError> {
        let sig = Signal::try_from(signal).map_err(|_| RuntimeError::Signal(signal.to_owned()))?;
        let mut container = self.load(id)?;
        // runc lets `kill --all` reach what is left in a stopped container's cgroup.
        let killable = container.can_kill() || (all && container.status() == ContainerStatus::Stopped);
        if !killable {
            return Err(RuntimeError::NotRunning(id.to_owned()));
        }
        container.kill(sig, all).map_err(|e| self.container_error(id, &e))
    }

    /// Deletes the container's state and cgroup. `force` kills it first if running;
    /// with `force`, a container that does not exist (or was half-created) is not an error.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id)?;
        if !libcontainer::container::State::file_path(&dir).exists() {
            // A create that died early can leave a directory without state.
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|source| RuntimeError::Io { path: dir.clone(), source })?;
            }
            return if force { Ok(()) } else { Err(RuntimeError::NotFound(id.to_owned())) };
        }
        let mut container = self.load(id)?;
        if !force && matches!(container.status(), ContainerStatus::Running | ContainerStatus::Paused) {
            return Err(RuntimeError::Status {
                id: id.to_owned(),
                status: status_name(container.status()),
                action: "delete without --force",
                needed: "stopped or created",
            });
        }
        let named = load_spec(container.bundle()).ok().and_then(|spec| self.named_cgroup(&spec));
        if pod_egress::has_proxy(&dir) {
            pod_egress::stop(&dir);
        }
        container.delete(force).map_err(|e| self.container_error(id, &e))?;
        if let Some(path) = named {
            crate::hierarchies::remove(&path);
        }
        Ok(())
    }

    /// The container's cgroup path in the hierarchies libcgroups leaves alone
    /// (none with systemd cgroups, which systemd places).
    fn named_cgroup(&self, spec: &Spec) -> Option<PathBuf> {
        if self.systemd_cgroup {
            return None;
        }
        spec.linux().as_ref().and_then(|l| l.cgroups_path().clone())
    }

    /// Runs another process in the running container, under the container's seccomp
    /// filter and policy (if it was created with one). Returns its exit code, or
    /// `None` when detached.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<Option<i32>, RuntimeError> {
        let container = self.load(id)?;
        let dir = self.container_dir(id)?;
        let policy = SandboxPolicy::saved(&dir)?;
        let spec = load_spec(container.bundle())?;
        let executor = ExecExecutor { policy: policy.as_ref().map(|p| p.executor(InitMode::Exec)) };
        let mut process = match &opts.process {
            Some(path) => read_process(path)?,
            None => exec_process(&spec, opts)?,
        };
        if let Some(policy) = &policy
            && pod::container_type(&spec).is_some()
        {
            pod::confine_process(&mut process, &policy.resources, &pod_egress::proxy_env())?;
        }
        let process_file = dir.join(format!("openshell-exec-{}.json", std::process::id()));
        let json = serde_json::to_vec(&process)
            .map_err(|e| RuntimeError::Io { path: process_file.clone(), source: e.into() })?;
        std::fs::write(&process_file, json)
            .map_err(|source| RuntimeError::Io { path: process_file.clone(), source })?;
        let cerr = |e: &dyn std::error::Error| self.container_error(id, e);
        let built = (|| {
            ContainerBuilder::new(id.to_owned(), SyscallType::default())
                .with_root_path(&self.root)
                .map_err(|e| cerr(&e))?
                .with_pid_file(opts.pid_file.as_ref())
                .map_err(|e| cerr(&e))?
                .with_console_socket(opts.console_socket.as_ref())
                .with_preserved_fds(opts.preserve_fds)
                .with_executor(Reporting(executor))
                .as_tenant()
                .with_process(Some(&process_file))
                .with_detach(opts.detach)
                .build()
                .map_err(|e| cerr(&e))
        })();
        let _ = std::fs::remove_file(&process_file);
        let pid = built?;
        if let Some(path) = self.named_cgroup(&spec)
            && let Err(e) = crate::hierarchies::join(&path, pid.as_raw())
        {
            tracing::warn!(error = %e, "placing the exec'd process in the named cgroup hierarchies");
        }
        if opts.detach {
            return Ok(None);
        }
        let set = block_forwarded()?;
        wait_forwarding(pid, &set).map(Some)
    }

    /// `create` + `start`; in the foreground, waits (forwarding signals), deletes
    /// the container and returns its exit code; detached, returns `None`.
    pub fn run(&self, id: &str, opts: &CreateOptions, detach: bool) -> Result<Option<i32>, RuntimeError> {
        let pid = self.create(id, opts)?;
        // Before start, so that no signal meant for the container is lost in between.
        let set = if detach { None } else { Some(block_forwarded()?) };
        if let Err(e) = self.start(id) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        let Some(set) = set else { return Ok(None) };
        let code = wait_forwarding(pid, &set);
        let deleted = self.delete(id, true);
        let code = code?;
        deleted?;
        Ok(Some(code))
    }

    /// The cgroup manager of a container (with the container).
    fn cgroup(&self, id: &str) -> Result<(Container, libcgroups::common::AnyCgroupManager), RuntimeError> {
        use libcgroups::common::{CgroupConfig, create_cgroup_manager};
        let container = self.load(id)?;
        let config = container.spec().map_err(|e| self.container_error(id, &e))?;
        let manager = create_cgroup_manager(CgroupConfig {
            cgroup_path: config.cgroup_path,
            systemd_cgroup: container.systemd(),
            container_name: id.to_owned(),
        })
        .map_err(|e| self.container_error(id, &e))?;
        Ok((container, manager))
    }

    /// Applies new resource limits to a container's cgroup, as `runc update
    /// --resources` does (what containerd's task update and the CRI's
    /// `UpdateContainerResources` send).
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError> {
        use libcgroups::common::{CgroupManager, ControllerOpt};
        let (container, manager) = self.cgroup(id)?;
        if container.status() == ContainerStatus::Stopped {
            return Err(RuntimeError::Status {
                id: id.to_owned(),
                status: status_name(container.status()),
                action: "update",
                needed: "created, running or paused",
            });
        }
        // The document's own OOM-killer setting: libcgroups writes it whenever
        // the memory section is given, so an absent one means enabled.
        let disable_oom_killer = resources.memory().as_ref().and_then(|m| m.disable_oom_killer()).unwrap_or(false);
        let options = ControllerOpt { resources, disable_oom_killer, oom_score_adj: None, freezer_state: None };
        manager.apply(&options).map_err(|e| self.container_error(id, &e))
    }

    /// The container's cgroup statistics, as runc's `events --stats` prints them.
    pub fn stats(&self, id: &str) -> Result<crate::events::Event, RuntimeError> {
        use libcgroups::common::CgroupManager;
        let (container, manager) = self.cgroup(id)?;
        if container.status() == ContainerStatus::Stopped {
            return Err(RuntimeError::NotRunning(id.to_owned()));
        }
        let stats = manager.stats().map_err(|e| self.container_error(id, &e))?;
        Ok(crate::events::stats_event(id, &stats))
    }

    /// Whether the container has stopped (or is gone).
    pub fn stopped(&self, id: &str) -> bool {
        self.load(id).map_or(true, |c| c.status() == ContainerStatus::Stopped)
    }

    /// The pids in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, RuntimeError> {
        use libcgroups::common::CgroupManager;
        let (_, manager) = self.cgroup(id)?;
        let mut pids: Vec<i32> =
            manager.get_all_pids().map_err(|e| self.container_error(id, &e))?.iter().map(|p| p.as_raw()).collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Every container under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<StateReport>, RuntimeError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RuntimeError::Io { path: self.root.clone(), source }),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RuntimeError::Io { path: self.root.clone(), source })?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if !entry.path().is_dir() {
                continue;
            }
            match self.state(&id) {
                Ok(state) => out.push(state),
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => tracing::warn!(id, error = %e, "skipping a container whose state cannot be read"),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let mut container = self.load(id)?;
        container.pause().map_err(|e| self.container_error(id, &e))
    }

    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let mut container = self.load(id)?;
        container.resume().map_err(|e| self.container_error(id, &e))
    }
}

fn report(container: &Container) -> Result<StateReport, RuntimeError> {
    let bundle = container.bundle().clone();
    let spec = load_spec(&bundle)?;
    let root = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
    let rootfs = if root.is_absolute() { root } else { bundle.join(root) };
    let status = container.status();
    Ok(StateReport {
        oci_version: spec.version().clone(),
        id: container.id().to_owned(),
        pid: if status == ContainerStatus::Stopped { 0 } else { container.pid().map_or(0, Pid::as_raw) },
        status: status_name(status),
        bundle,
        rootfs,
        created: container.created().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)).unwrap_or_default(),
        owner: String::new(),
        annotations: container.state.annotations.clone().unwrap_or_default().into_iter().collect(),
    })
}

/// The process JSON `exec --process FILE` names (runc's: the whole OCI process).
fn read_process(path: &Path) -> Result<libcontainer::oci_spec::runtime::Process, RuntimeError> {
    let text = std::fs::read(path).map_err(|source| RuntimeError::Io { path: path.to_owned(), source })?;
    serde_json::from_slice(&text)
        .map_err(|e| RuntimeError::Spec { path: path.to_owned(), message: format!("not an OCI process: {e}") })
}

/// The process `exec` runs without `--process`: the container's own process with
/// runc's overrides (args, `--tty`, `--cwd`, `--env`, `--user`).
fn exec_process(spec: &Spec, opts: &ExecOptions) -> Result<libcontainer::oci_spec::runtime::Process, RuntimeError> {
    if opts.args.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(opts.args.clone()));
    process.set_terminal(Some(opts.tty));
    if let Some(cwd) = &opts.cwd {
        process.set_cwd(cwd.clone());
    }
    let mut env = process.env().clone().unwrap_or_default();
    for var in &opts.env {
        let Some((name, _)) = var.split_once('=') else { return Err(RuntimeError::Env(var.clone())) };
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != name);
        env.push(var.clone());
    }
    process.set_env(Some(env));
    if let Some(user) = &opts.user {
        let bad = || RuntimeError::User(user.clone());
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u.parse::<u32>().map_err(|_| bad())?, g.parse::<u32>().map_err(|_| bad())?),
            None => (user.parse::<u32>().map_err(|_| bad())?, process.user().gid()),
        };
        let user = UserBuilder::default().uid(uid).gid(gid).build().map_err(|_| bad())?;
        process.set_user(user);
    }
    // A console size belongs to the container's first terminal, not to this one.
    process.set_console_size(None);
    Ok(process)
}

/// Signals a foreground `run`/`exec` passes on to the container's process.
const FORWARDED: &[NixSignal] = &[
    NixSignal::SIGHUP,
    NixSignal::SIGINT,
    NixSignal::SIGQUIT,
    NixSignal::SIGTERM,
    NixSignal::SIGUSR1,
    NixSignal::SIGUSR2,
    NixSignal::SIGWINCH,
];

/// Blocks the signals a foreground `run`/`exec` forwards (and SIGCHLD), so that they
/// queue for [`wait_forwarding`]. Called once the container's process is forked (it
/// keeps the mask it was forked with; commands libcontainer runs later, such as
/// hooks, start with an empty mask).
fn block_forwarded() -> Result<SigSet, RuntimeError> {
    let mut set = SigSet::empty();
    set.add(NixSignal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    set.thread_block().map_err(|source| RuntimeError::Sys { what: "blocking signals", source })?;
    Ok(set)
}

/// Waits for our child `pid` (the container's process), forwarding the signals of
/// `set` to it; returns its exit code (128 + signal when killed). Other children are reaped.
fn wait_forwarding(pid: Pid, set: &SigSet) -> Result<i32, RuntimeError> {
    loop {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(128 + sig as i32),
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::Error::EINTR) => continue,
                Err(source) => return Err(RuntimeError::Wait { pid: pid.as_raw(), source }),
            }
        }
        let sig = set.wait().map_err(|source| RuntimeError::Sys { what: "waiting for signals", source })?;
        if sig != NixSignal::SIGCHLD {
            tracing::debug!(signal = %sig, pid = pid.as_raw(), "forwarding");
            if let Err(e) = nix::sys::signal::kill(pid, sig) {
                tracing::warn!(signal = %sig, error = %e, "forwarding a signal to the container's process");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> Runtime {
        Runtime {
            root: PathBuf::from("/nonexistent-openshell-root"),
            systemd_cgroup: false,
            default_policy: None,
            sandbox_dir: None,
        }
    }

    #[test]
    fn ids_cannot_escape_the_root() {
        for bad in ["", ".", "..", "../x", "a/b", "a b", "é"] {
            assert!(matches!(rt().container_dir(bad), Err(RuntimeError::InvalidId(_))), "{bad:?}");
        }
        assert_eq!(
            rt().container_dir("abc-1_2+3.4").expect("valid"),
            PathBuf::from("/nonexistent-openshell-root/abc-1_2+3.4")
        );
    }

    #[test]
    fn missing_containers_are_named_as_containerd_expects() {
        let e = rt().state("nope").expect_err("missing");
        assert_eq!(e.to_string(), "container \"nope\" does not exist");
        rt().delete("nope", true).expect("force-deleting a missing container is not an error");
        assert!(matches!(rt().delete("nope", false), Err(RuntimeError::NotFound(_))));
        assert!(matches!(rt().kill("nope", "9", false), Err(RuntimeError::NotFound(_))));
        assert!(matches!(rt().kill("nope", "SIGNOPE", false), Err(RuntimeError::Signal(_))));
    }

    #[test]
    fn exec_process_applies_runc_overrides() {
        let mut spec = Spec::default();
        let mut p = spec.process().clone().expect("process");
        p.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        spec.set_process(Some(p));
        let opts = ExecOptions {
            args: vec!["/bin/x".into(), "y".into()],
            env: vec!["A=2".into(), "B=3".into()],
            user: Some("1000:1001".into()),
            cwd: Some("/work".into()),
            tty: false,
            ..ExecOptions::default()
        };
        let p = exec_process(&spec, &opts).expect("process");
        assert_eq!(p.args().as_deref(), Some(&["/bin/x".to_string(), "y".to_string()][..]));
        assert_eq!(p.env().as_deref(), Some(&["PATH=/bin".to_string(), "A=2".into(), "B=3".into()][..]));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.cwd(), Path::new("/work"));
        assert_eq!(p.terminal(), Some(false));
        assert!(matches!(exec_process(&spec, &ExecOptions::default()), Err(RuntimeError::NoCommand)));
        let bad = ExecOptions { args: vec!["x".into()], user: Some("root".into()), ..ExecOptions::default() };
        assert!(matches!(exec_process(&spec, &bad), Err(RuntimeError::User(_))));
        let bad = ExecOptions { args: vec!["x".into()], env: vec!["NOEQUALS".into()], ..ExecOptions::default() };
        assert!(matches!(exec_process(&spec, &bad), Err(RuntimeError::Env(_))));
    }
}
