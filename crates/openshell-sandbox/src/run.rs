//! Running a sandbox's process through libcontainer (youki), with the policy's
//! Landlock rules applied by the container's own init process right before it
//! executes the workload (after the namespaces, mounts, cgroups, seccomp filter,
//! capability drop and user switch that libcontainer performs from the spec).
//! An extra seccomp filter can be installed at the same point, on top of the spec's
//! own (the kernel stacks filters: a syscall must pass every one of them).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError};
use nix::sys::wait::{WaitStatus, waitpid};
use openshell_policy::profile::LandlockProfile;

/// Applies Landlock, then (when given) installs an extra seccomp filter, then runs
/// the workload as `mode` says.
#[derive(Clone)]
pub struct LandlockExecutor {
    pub profile: LandlockProfile,
    /// Installed after Landlock, right before exec, on top of any filter of the
    /// spec. It must allow what the workload needs from exec on (`execve` first).
    pub seccomp: Option<LinuxSeccomp>,
    /// A filter compiled ahead of time ([`crate::seccomp_bpf`]), installed at the same point.
    pub bpf: Option<std::sync::Arc<Vec<u8>>>,
    /// Where process 1 reads its job ([`InitMode::Job`]).
    pub job: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// Where the process says whether its restrictions are in place, before
    /// anything of the workload runs: an empty line, or why not (then it exits
    /// [`EXIT_NOT_STARTED`] without running anything). See [`wait_ready`]; a
    /// close-on-exec descriptor, so the workload never holds it.
    pub ready: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    pub mode: InitMode,
}

/// What the container's process does once the policy is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitMode {
    /// Executes the spec's process in place (exec'd processes; bundles run as given).
    Exec,
    /// Stays as process 1 and runs the spec's process under it ([`crate::init::supervise`]).
    Supervise,
    /// Stays as process 1 and runs the [`crate::init::Job`] read from `job`.
    Job,
    /// Stays as process 1 with nothing to run ([`crate::init::idle`]).
    Idle,
}

/// Closes every descriptor above stderr except `keep`: those listed in
/// /proc/self/fd, else (no /proc under the policy) every number up to the
/// open-files limit.
fn close_inherited(keep: Option<std::os::fd::RawFd>) {
    let listed: Option<Vec<i32>> = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect());
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft.min(65_536) as i32)
        .unwrap_or(1024);
    let candidates = listed.unwrap_or_else(|| (3..limit).collect());
    for fd in candidates.into_iter().filter(|&fd| fd > 2 && Some(fd) != keep) {
        let _ = nix::unistd::close(fd);
    }
}

/// The exit code of a sandbox process whose restrictions could not be put in
/// place (nothing of its workload ran), as `openshell` reports a sandbox it
/// could not start.
pub const EXIT_NOT_STARTED: i32 = 125;

/// Why a sandbox process's restrictions could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum RestrictError {
    #[error(transparent)]
    Landlock(#[from] crate::landlock::LandlockError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Bpf(#[from] crate::seccomp_bpf::BpfError),
}

/// What [`wait_ready`] heard instead of "restricted".
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("the sandbox's process ended before its restrictions were in place")]
    Ended,
    /// The process's own reason (a [`RestrictError`], as text across the pipe).
    #[error("{0}")]
    Refused(String),
    #[error("reading whether the sandbox's restrictions are in place: {0}")]
    Read(#[source] std::io::Error),
}

impl LandlockExecutor {
    /// Landlock, then the seccomp filters: all or nothing.
    fn restrict(&self) -> Result<(), RestrictError> {
        let report = crate::landlock::apply(&self.profile)?;
        tracing::debug!(
            status = report.status,
            applied = report.applied.len(),
            skipped = report.skipped.len(),
            "landlock"
        );
        if let Some(filter) = &self.seccomp {
            install_seccomp(filter)?;
        }
        if let Some(program) = &self.bpf {
            crate::seccomp_bpf::install(program)?;
        }
        Ok(())
    }
}

impl Executor for LandlockExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if self.mode == InitMode::Job {
            // Process 1 of a local sandbox dies with its supervisor (its parent,
            // which holds its proxy, log and exit): killed any way, the supervisor
            // leaves no sandbox behind, and with it go its namespace and the
            // fence's link. Set here, after libcontainer changed the credentials
            // (which would clear it). A supervisor gone before this point never
            // wrote the job: its pipe ends, and `run_job` exits.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(|e| ExecutorError::Other(format!("sandbox init: PR_SET_PDEATHSIG: {e}")))?;
        }
        let restricted = self.restrict();
        if let Some(ready) = &self.ready {
            let line = restricted.as_ref().err().map_or_else(String::new, |e| e.to_string().replace('\n', " "));
            let _ = std::io::Write::write_all(
                &mut std::fs::File::from(
                    ready
                        .try_clone()
                        .map_err(|e| ExecutorError::Other(format!("sandbox init: the ready pipe: {e}")))?,
                ),
                format!("{line}\n").as_bytes(),
            );
        }
        if let Err(why) = restricted {
            // Fail closed: nothing of the workload runs without its restrictions.
            eprintln!("openshell: the sandbox's restrictions could not be put in place, so it does not start: {why}");
            std::process::exit(EXIT_NOT_STARTED);
        }
        let process = spec.process().as_ref();
        if self.mode != InitMode::Exec {
            // openshell's init stays (no exec): it would keep every descriptor the
            // supervisor had when libcontainer cloned it, among them the write end
            // of the workload's stdin, which then never reached end of file.
            let keep = self.job.as_ref().map(|fd| std::os::fd::AsRawFd::as_raw_fd(&**fd));
            close_inherited(keep);
        }
        let outcome = match self.mode {
            InitMode::Exec => return DefaultExecutor {}.exec(spec),
            InitMode::Supervise => {
                let args = process.and_then(|p| p.args().as_deref()).unwrap_or_default();
                crate::init::supervise(args, process.and_then(|p| p.terminal()).unwrap_or(false))
            }
            InitMode::Job => {
                let source =
                    self.job.as_ref().ok_or_else(|| ExecutorError::Other("sandbox init: no job source".into()))?;
                let source = source.try_clone().map_err(|e| ExecutorError::Other(format!("sandbox init: {e}")))?;
                crate::init::run_job(std::fs::File::from(source), process.and_then(|p| p.terminal()).unwrap_or(false))
            }
            InitMode::Idle => crate::init::idle(),
        };
        match outcome {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(ExecutorError::Other(format!("sandbox init: {e}"))),
        }
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        // openshell's init runs the workload and reports a program it cannot
        // run as a shell does (127, naming it); only an exec'd bundle is checked.
        if self.mode != InitMode::Exec {
            return Ok(());
        }
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(&self, envs: std::collections::HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}

/// Waits for a process's [`LandlockExecutor::ready`] answer on `from` (whose
/// write end the caller has closed): `Ok` once its restrictions are in place,
/// `Err` with the process's reason, or with "ended before" when it died first.
pub fn wait_ready(from: OwnedFd) -> Result<(), ReadyError> {
    use std::io::BufRead;
    let mut line = String::new();
    match std::io::BufReader::new(std::fs::File::from(from)).read_line(&mut line) {
        Ok(0) => Err(ReadyError::Ended),
        Ok(_) if line.trim().is_empty() => Ok(()),
        Ok(_) => Err(ReadyError::Refused(line.trim().to_owned())),
        Err(e) => Err(ReadyError::Read(e)),
    }
}

/// Why the extra seccomp filter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: the filter uses SCMP_ACT_NOTIFY, which needs a listener this runtime does not run")]
    Notify,
    #[error("seccomp: setting no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    /// libcontainer's error with its causes (libseccomp's message is in the source).
    #[error("seccomp: {0}")]
    Load(String),
}

/// Installs `filter` on the calling thread (and everything it later executes).
/// Sets no_new_privs first: loading a filter without CAP_SYS_ADMIN requires it, and
/// a sandboxed process must not regain privileges through setuid binaries anyway.
pub fn install_seccomp(filter: &LinuxSeccomp) -> Result<(), SeccompError> {
    if libcontainer::seccomp::is_notify(filter) {
        return Err(SeccompError::Notify);
    }
    nix::sys::prctl::set_no_new_privs().map_err(SeccompError::NoNewPrivs)?;
    libcontainer::seccomp::initialize_seccomp(filter).map_err(|e| {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        SeccompError::Load(message)
    })?;
    Ok(())
}

/// A container to run in the foreground.
pub struct RunRequest {
    /// Container id (unique under `state_root`).
    pub id: String,
    /// Bundle directory: `config.json` (the runtime spec) and the root filesystem it names.
    pub bundle: PathBuf,
    /// Where libcontainer keeps container state.
    pub state_root: PathBuf,
    pub landlock: LandlockProfile,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Why a run failed (the workload's own failure is its exit status, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("container {id}: {message}")]
    Container { id: String, message: String },
    #[error("container {id}: waiting for the process: {source}")]
    Wait {
        id: String,
        #[source]
        source: nix::Error,
    },
}

/// Creates, starts and waits for the container; returns the process's exit code
/// (128 + signal when killed). The container is deleted afterwards.
///
/// Call it from a single-threaded process: libcontainer clones the calling process
/// without fork handlers and its init keeps running Rust code (and sets environment
/// variables) before exec, so a lock another thread holds at that moment (std's
/// environment lock, held by any concurrent `Command::spawn`; a malloc arena)
/// deadlocks the container's init. tests/isolation.rs hit exactly that.
pub fn run(req: RunRequest) -> Result<i32, RunError> {
    let id = req.id.clone();
    let cerr = |e: &dyn std::fmt::Display| RunError::Container { id: id.clone(), message: e.to_string() };
    let mut builder = ContainerBuilder::new(req.id.clone(), SyscallType::default())
        .with_root_path(&req.state_root)
        .map_err(|e| cerr(&e))?
        .with_executor(LandlockExecutor {
            profile: req.landlock.clone(),
            seccomp: None,
            bpf: None,
            job: None,
            ready: None,
            mode: InitMode::Supervise,
        });
    if let Some(fd) = req.stdout {
        builder = builder.with_stdout(fd);
    }
    if let Some(fd) = req.stderr {
        builder = builder.with_stderr(fd);
    }
    let mut container =
        builder.as_init(&req.bundle).with_systemd(false).with_detach(true).build().map_err(|e| cerr(&e))?;
    let outcome = (|| {
        container.start().map_err(|e| cerr(&e))?;
        let pid = container.pid().ok_or_else(|| cerr(&"no process id after start"))?;
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => continue,
                Err(nix::Error::EINTR) => continue,
                Err(source) => return Err(RunError::Wait { id: id.clone(), source }),
            }
        }
    })();
    let deleted = container.delete(true).map_err(|e| cerr(&e));
    let code = outcome?;
    deleted?;
    Ok(code)
}
