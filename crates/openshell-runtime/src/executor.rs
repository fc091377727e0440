//! What a container's process runs right before it executes its command.
//!
//! An exec'd process gets the container's own seccomp filter from libcontainer
//! (patched: 0.7 rebuilt the process's spec without it), loaded before its
//! capabilities are dropped, so without no_new_privs, as runc does.
//! [`ExecExecutor`] then applies the container's policy (if any) as `create` did.
//!
//! These steps run after `start` has returned, so their failure would only be an
//! exit status; [`Reporting`] also writes it to the process's stderr, which is the
//! container's (what `docker run` and `docker logs` show).

use std::collections::HashMap;
use std::io::Write;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError};
use openshell_sandbox::run::LandlockExecutor;

/// The executor of an exec'd process: the container's policy (Landlock and its
/// filter), then exec.
#[derive(Clone)]
pub struct ExecExecutor {
    pub policy: Option<LandlockExecutor>,
}

impl Executor for ExecExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
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
