//! Containers an openshell gateway prepared (its Docker driver): with the
//! runtime's `--sandbox-dir DIR`, a container whose id has a directory
//! `DIR/containers/ID` runs under that directory's `policy.yaml` and, when it
//! holds one, in the network namespace bound at `netns` (the sandbox's fenced
//! link to its egress proxy) instead of the bundle's own. This is how the policy
//! and the network reach the runtime through dockerd before 24, which cannot set
//! annotations.
//!
//! A bundle whose process environment marks it as a sandbox ([`SANDBOX_ENV`])
//! must have its directory, and its namespace when its policy has network
//! policies: started any other way (by hand, by dockerd at boot) it is refused,
//! never run without its policy or fence.

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, Spec};
use openshell_sandbox::run::InitMode;

/// The environment variable the driver puts in a sandbox container's process.
pub const SANDBOX_ENV: &str = "OPENSHELL_SANDBOX";

/// Why a prepared container could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PreparedError {
    #[error(
        "container \"{id}\" is openshell sandbox `{sandbox}` but {} is missing: it runs only when its gateway starts it",
        dir.display()
    )]
    Missing { id: String, sandbox: String, dir: PathBuf },
    #[error(
        "container \"{id}\": its policy has network policies but {} is not there: its network helper is not running (started outside its gateway?)",
        path.display()
    )]
    NoNetwork { id: String, path: PathBuf },
    #[error("{}: {message}", path.display())]
    Spec { path: PathBuf, message: String },
}

/// What the gateway prepared for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub policy: PathBuf,
    /// The network namespace to join, when there is one.
    pub netns: Option<PathBuf>,
    /// Its job has no command: process 1 idles (processes join with exec).
    pub idle: bool,
}

impl Prepared {
    /// A sandbox's process 1 is openshell's init, as with the local driver: it
    /// passes signals on to the workload and reaps, or idles.
    pub fn init_mode(&self) -> InitMode {
        if self.idle { InitMode::Idle } else { InitMode::Supervise }
    }
}

/// The job the driver wrote (`job.json`: `{"args": [...], ...}`).
#[derive(serde::Deserialize)]
struct Job {
    args: Vec<String>,
}

/// The sandbox the bundle's process says it is, if any.
fn marked(spec: &Spec) -> Option<String> {
    let env = spec.process().as_ref()?.env().as_ref()?;
    env.iter().find_map(|kv| kv.strip_prefix(SANDBOX_ENV)?.strip_prefix('=').map(str::to_owned))
}

/// What `sandbox_dir` holds for container `id` (`None`: not a sandbox).
pub fn find(sandbox_dir: &Path, id: &str, spec: &Spec) -> Result<Option<Prepared>, PreparedError> {
    let dir = sandbox_dir.join("containers").join(id);
    let sandbox = marked(spec);
    if !dir.is_dir() {
        return match sandbox {
            Some(sandbox) => Err(PreparedError::Missing { id: id.to_owned(), sandbox, dir }),
            None => Ok(None),
        };
    }
    let netns = dir.join("netns");
    let job = dir.join("job.json");
    let idle = match std::fs::read(&job) {
        Ok(bytes) => serde_json::from_slice::<Job>(&bytes)
            .map_err(|e| PreparedError::Spec { path: job.clone(), message: e.to_string() })?
            .args
            .is_empty(),
        Err(_) => false,
    };
    Ok(Some(Prepared { policy: dir.join("policy.yaml"), netns: netns.exists().then_some(netns), idle }))
}

/// Checks that a policy with network policies has its namespace.
pub fn check_network(id: &str, prepared: &Prepared, has_network: bool) -> Result<(), PreparedError> {
    match (&prepared.netns, has_network) {
        (None, true) => {
            Err(PreparedError::NoNetwork { id: id.to_owned(), path: prepared.policy.with_file_name("netns") })
        }
        _ => Ok(()),
    }
}

/// Points the bundle's network namespace at `netns`, in its `config.json`
/// (libcontainer reads the spec from the bundle).
pub fn join_network(bundle: &Path, spec: &mut Spec, netns: &Path) -> Result<(), PreparedError> {
    let path = bundle.join("config.json");
    let err = |message: String| PreparedError::Spec { path: path.clone(), message };
    let linux = spec.linux_mut().as_mut().ok_or_else(|| err("no `linux` section".into()))?;
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
    let joined = LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::Network)
        .path(netns.to_path_buf())
        .build()
        .map_err(|e| err(e.to_string()))?;
    namespaces.push(joined);
    linux.set_namespaces(Some(namespaces));
    spec.save(&path).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::oci_spec::runtime::ProcessBuilder;

    fn spec(env: &[&str]) -> Spec {
        let mut spec = Spec::default();
        let process = ProcessBuilder::default()
            .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .expect("process");
        spec.set_process(Some(process));
        spec
    }

    #[test]
    fn a_marked_container_without_its_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marked = spec(&["PATH=/bin", "OPENSHELL_SANDBOX=abc"]);
        let err = find(dir.path(), "c1", &marked).expect_err("refused");
        assert!(err.to_string().contains("is openshell sandbox `abc`"), "{err}");
        // Positive control: an unmarked container runs as its bundle says.
        assert_eq!(find(dir.path(), "c1", &spec(&["PATH=/bin"])).expect("unmarked"), None);
    }

    #[test]
    fn a_prepared_container_gets_its_policy_and_namespace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = dir.path().join("containers/c1");
        std::fs::create_dir_all(&c).expect("mkdir");
        let found = find(dir.path(), "c1", &spec(&["OPENSHELL_SANDBOX=abc"])).expect("found").expect("some");
        assert_eq!(found, Prepared { policy: c.join("policy.yaml"), netns: None, idle: false });
        std::fs::write(c.join("job.json"), r#"{"args": [], "env": []}"#).expect("job");
        let idle = find(dir.path(), "c1", &spec(&[])).expect("found").expect("some");
        assert_eq!(idle.init_mode(), InitMode::Idle);
        assert!(matches!(check_network("c1", &found, true), Err(PreparedError::NoNetwork { .. })));
        check_network("c1", &found, false).expect("no network needed");
        std::fs::write(c.join("netns"), "").expect("netns");
        let found = find(dir.path(), "c1", &spec(&[])).expect("found").expect("some");
        assert_eq!(found.netns, Some(c.join("netns")));
        check_network("c1", &found, true).expect("has its namespace");
    }

    #[test]
    fn joining_replaces_the_bundles_network_namespace() {
        let bundle = tempfile::tempdir().expect("tempdir");
        let mut spec = Spec::default();
        join_network(bundle.path(), &mut spec, Path::new("/run/x/netns")).expect("join");
        let saved = Spec::load(bundle.path().join("config.json")).expect("saved");
        let namespaces = saved.linux().as_ref().and_then(|l| l.namespaces().clone()).expect("namespaces");
        let net: Vec<_> = namespaces.iter().filter(|n| n.typ() == LinuxNamespaceType::Network).collect();
        assert_eq!(net.len(), 1);
        assert_eq!(net[0].path().as_deref(), Some(Path::new("/run/x/netns")));
    }
}
