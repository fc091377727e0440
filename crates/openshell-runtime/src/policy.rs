//! The openshell policy of a container: named by the bundle's annotation
//! [`POLICY_ANNOTATION`] (or the runtime's `--policy` default), loaded and compiled
//! at `create`, and kept with the container's state so that `exec` applies the very
//! same rules to every process it adds.

use std::io::Read;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use openshell_policy::profile::LandlockProfile;
use openshell_policy::{KernelProfile, LoadError, MAX_POLICY_BYTES};
use openshell_sandbox::run::{InitMode, LandlockExecutor};
use serde::{Deserialize, Serialize};

/// Bundle annotation naming the policy: the absolute host path of an openshell policy YAML.
pub const POLICY_ANNOTATION: &str = "run.openshell.policy";

/// File in the container's state directory holding the policy it was created with.
const SAVED_POLICY: &str = "openshell-policy.json";

/// Why a container's policy could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("annotation {POLICY_ANNOTATION}: `{0}` is not an absolute path")]
    Relative(String),
    /// The policy's own error: file, line, column and key of every problem.
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("{}: internal: the compiled seccomp filter is not an OCI LinuxSeccomp: {message}", path.display())]
    Seccomp { path: PathBuf, message: String },
    #[error("{}: saving the container's policy: {source}", path.display())]
    Save {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: reading the container's policy: {message}", path.display())]
    Saved { path: PathBuf, message: String },
}

/// A loaded and compiled policy.
#[derive(Debug, Clone)]
pub struct SandboxPolicy {
    /// Where it was read from (host path).
    pub source: PathBuf,
    /// The working directory `include_workdir` refers to (the spec's `process.cwd`).
    pub workdir: String,
    /// The policy's text, as read (saved with the container for `exec`).
    text: String,
    pub landlock: LandlockProfile,
    pub seccomp: LinuxSeccomp,
    /// Whether it has network policies (egress through a proxy).
    pub has_network: bool,
}

/// What is saved in the container's state directory.
#[derive(Serialize, Deserialize)]
struct Saved {
    source: PathBuf,
    workdir: String,
    policy: String,
}

/// The policy a bundle asks for: its annotation, else the runtime's default.
pub fn select(spec: &Spec, default: Option<&Path>) -> Result<Option<PathBuf>, PolicyError> {
    let annotated = spec.annotations().as_ref().and_then(|a| a.get(POLICY_ANNOTATION));
    match annotated {
        Some(path) if !Path::new(path).is_absolute() => Err(PolicyError::Relative(path.clone())),
        Some(path) => {
            if let Some(default) = default {
                tracing::info!(annotation = %path, default = %default.display(), "the annotation's policy replaces the runtime's default");
            }
            Ok(Some(PathBuf::from(path)))
        }
        None => Ok(default.map(Path::to_path_buf)),
    }
}

/// The working directory of a spec's process (`/` when unset).
pub fn workdir(spec: &Spec) -> String {
    spec.process().as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_else(|| "/".into())
}

/// Reads, validates and compiles the policy at `path`.
pub fn load(path: &Path, workdir: &str) -> Result<SandboxPolicy, PolicyError> {
    let read_err = |source| LoadError::Read { path: path.to_owned(), source };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    compile(path, workdir, &bytes)
}

fn compile(path: &Path, workdir: &str, bytes: &[u8]) -> Result<SandboxPolicy, PolicyError> {
    let policy = openshell_policy::load_bytes(&path.display().to_string(), bytes)?;
    if policy.filesystem_policy.include_workdir && workdir == "/" {
        tracing::warn!(
            policy = %path.display(),
            "include_workdir makes the working directory `/` read-write: Landlock then allows the whole filesystem"
        );
    }
    let profile = KernelProfile::compile(&policy, workdir);
    let seccomp = serde_json::to_value(&profile.seccomp)
        .and_then(serde_json::from_value::<LinuxSeccomp>)
        .map_err(|e| PolicyError::Seccomp { path: path.to_owned(), message: e.to_string() })?;
    Ok(SandboxPolicy {
        source: path.to_owned(),
        workdir: workdir.to_owned(),
        // load_bytes accepted it, so it is UTF-8.
        text: String::from_utf8_lossy(bytes).into_owned(),
        landlock: profile.landlock,
        seccomp,
        has_network: !policy.network_policies.is_empty(),
    })
}

impl SandboxPolicy {
    /// The executor applying this policy in the container's process right
    /// before exec (`InitMode::Exec`: Docker and containerd bring their own
    /// init), or staying as its process 1 (a sandbox the gateway prepared).
    pub fn executor(&self, mode: InitMode) -> LandlockExecutor {
        LandlockExecutor {
            profile: self.landlock.clone(),
            seccomp: Some(self.seccomp.clone()),
            bpf: None,
            job: None,
            ready: None,
            mode,
        }
    }

    /// Saves the policy with the container's state (`container_dir`).
    pub fn save(&self, container_dir: &Path) -> Result<(), PolicyError> {
        let path = container_dir.join(SAVED_POLICY);
        let saved = Saved { source: self.source.clone(), workdir: self.workdir.clone(), policy: self.text.clone() };
        let json =
            serde_json::to_vec(&saved).map_err(|e| PolicyError::Save { path: path.clone(), source: e.into() })?;
        std::fs::write(&path, json).map_err(|source| PolicyError::Save { path, source })
    }

    /// The policy a container was created with, if any.
    pub fn saved(container_dir: &Path) -> Result<Option<SandboxPolicy>, PolicyError> {
        let path = container_dir.join(SAVED_POLICY);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PolicyError::Saved { path, message: e.to_string() }),
        };
        let saved: Saved =
            serde_json::from_slice(&bytes).map_err(|e| PolicyError::Saved { path, message: e.to_string() })?;
        compile(&saved.source, &saved.workdir, saved.policy.as_bytes()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        spec.set_annotations(Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
        spec
    }

    #[test]
    fn the_annotation_wins_over_the_default() {
        let default = Path::new("/etc/openshell/default.yaml");
        let s = spec(&[(POLICY_ANNOTATION, "/srv/p.yaml")]);
        assert_eq!(select(&s, Some(default)).expect("select"), Some(PathBuf::from("/srv/p.yaml")));
        assert_eq!(select(&spec(&[]), Some(default)).expect("select"), Some(default.to_path_buf()));
        assert_eq!(select(&spec(&[]), None).expect("select"), None);
        assert!(matches!(select(&spec(&[(POLICY_ANNOTATION, "p.yaml")]), None), Err(PolicyError::Relative(_))));
    }

    #[test]
    fn load_compiles_and_round_trips_through_the_state_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, "version: 1\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/usr]\n")
            .expect("write");
        let policy = load(&path, "/work").expect("load");
        assert_eq!(policy.landlock.rules.len(), 1);
        assert_eq!(policy.landlock.rules[0].path, "/usr");
        assert!(policy.seccomp.syscalls().as_ref().is_some_and(|s| !s.is_empty()));
        assert!(SandboxPolicy::saved(dir.path()).expect("none saved").is_none());
        policy.save(dir.path()).expect("save");
        // The saved copy is what exec uses, whatever happens to the source later.
        std::fs::write(&path, "garbage: [").expect("overwrite");
        let again = SandboxPolicy::saved(dir.path()).expect("read").expect("saved");
        assert_eq!(again.landlock, policy.landlock);
        assert_eq!(again.seccomp, policy.seccomp);
        assert_eq!(again.workdir, "/work");
    }

    #[test]
    fn a_bad_policy_names_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, "version: 1\nfilesystem_policy:\n  read_only: 7\n").expect("write");
        let err = load(&path, "/").expect_err("invalid").to_string();
        assert!(err.starts_with(&format!("{}:3:", path.display())), "{err}");
        let err = load(&dir.path().join("missing.yaml"), "/").expect_err("missing").to_string();
        assert!(err.contains("missing.yaml: cannot read policy file"), "{err}");
    }
}
