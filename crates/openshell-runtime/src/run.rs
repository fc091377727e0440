//! Running a sandbox's process through libcontainer (youki), with the policy's
//! Landlock rules applied by the container's own init process right before it
//! executes the workload (after the namespaces, mounts, cgroups, seccomp filter,
//! capability drop and user switch that libcontainer performs from the spec).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError};
use nix::sys::wait::{WaitStatus, waitpid};
use openshell_policy::profile::LandlockProfile;

/// Applies Landlock, then executes the workload as libcontainer's default executor does.
#[derive(Clone)]
pub struct LandlockExecutor {
    pub profile: LandlockProfile,
}

impl Executor for LandlockExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let report = crate::landlock::apply(&self.profile).map_err(|e| ExecutorError::Other(e.to_string()))?;
        tracing::debug!(
            status = report.status,
            applied = report.applied.len(),
            skipped = report.skipped.len(),
            "landlock"
        );
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(&self, envs: std::collections::HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
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
        .with_executor(LandlockExecutor { profile: req.landlock.clone() });
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
