//! What a container's process runs right before it executes its command.
//!
//! libcontainer 0.7 rebuilds an exec'd process's spec without the container's
//! seccomp filter (runc applies it), so without this an exec'd process would escape
//! e.g. Docker's seccomp profile. [`ExecExecutor`] installs the container's filter
//! first, then applies the container's policy (if any) as `create` did.
//!
//! These steps run after `start` has returned, so their failure would only be an
//! exit status; [`Reporting`] also writes it to the process's stderr, which is the
//! container's (what `docker run` and `docker logs` show).

use std::collections::HashMap;
use std::io::Write;

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError};
use openshell_sandbox::run::LandlockExecutor;

/// Why the container's own seccomp filter could not be installed in an exec'd process.
#[derive(Debug, thiserror::Error)]
pub enum SpecFilterError {
    #[error("the container's seccomp filter uses SCMP_ACT_NOTIFY, which exec does not support")]
    Notify,
    #[error("setting no_new_privs for the container's seccomp filter: {0}")]
    NoNewPrivs(nix::Error),
    #[error("the container's seccomp filter: {0}")]
    Load(String),
}

/// Installs the container's own filter in the calling (exec'd) process. By now its
/// capabilities are the spec's: without CAP_SYS_ADMIN the kernel loads a filter only
/// under no_new_privs, so that is set first (stricter than runc, which loads the
/// filter before dropping capabilities: setuid binaries do not elevate in such a process).
pub fn install_spec_filter(filter: &LinuxSeccomp) -> Result<(), SpecFilterError> {
    if libcontainer::seccomp::is_notify(filter) {
        return Err(SpecFilterError::Notify);
    }
    let admin = caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_ADMIN).unwrap_or(false);
    if !admin {
        nix::sys::prctl::set_no_new_privs().map_err(SpecFilterError::NoNewPrivs)?;
    }
    libcontainer::seccomp::initialize_seccomp(filter).map_err(|e| SpecFilterError::Load(crate::ops::chain(&e)))?;
    Ok(())
}

/// The executor of an exec'd process: the container's seccomp filter, then the
/// container's policy (Landlock and its filter), then exec.
#[derive(Clone)]
pub struct ExecExecutor {
    pub spec_seccomp: Option<LinuxSeccomp>,
    pub policy: Option<LandlockExecutor>,
}

impl Executor for ExecExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(filter) = &self.spec_seccomp {
            install_spec_filter(filter).map_err(|e| ExecutorError::Other(e.to_string()))?;
        }
        match &self.policy {
            Some(policy) => policy.exec(spec),
            None => DefaultExecutor {}.exec(spec),
        }
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}

/// Runs `E`; if it fails (it returns only on failure), writes why to stderr first.
#[derive(Clone)]
pub struct Reporting<E>(pub E);

impl<E: Executor + Clone + 'static> Executor for Reporting<E> {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let result = self.0.exec(spec);
        if let Err(e) = &result {
            let _ = writeln!(std::io::stderr(), "openshell-runtime: {}", crate::ops::chain(e));
        }
        result
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        self.0.validate(spec)
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        self.0.setup_envs(envs)
    }
}
