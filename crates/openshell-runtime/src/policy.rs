//! The openshell policy of a container: chosen by the bundle's annotations (or the
//! runtime's `--policy` default, or for a Kubernetes pod the baseline), loaded and
//! compiled at `create`, and kept with the container's state so that `exec` applies
//! the very same rules to every process it adds.

use std::io::Read;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use openshell_policy::model::Resources;
use openshell_policy::profile::LandlockProfile;
use openshell_policy::{KernelProfile, LoadError, MAX_POLICY_BYTES};
use openshell_sandbox::run::{InitMode, LandlockExecutor};
use serde::{Deserialize, Serialize};

use crate::pod;

/// Bundle annotation naming the policy: the absolute host path of an openshell policy
/// YAML (for dockerd and `ctr`; refused from a Kubernetes pod).
pub const POLICY_ANNOTATION: &str = "run.openshell.policy";
/// The policy's text itself (a pod's annotation), checked against [`DIGEST_ANNOTATION`].
pub const YAML_ANNOTATION: &str = "run.openshell.policy.yaml";
/// The absolute path, inside the container, of a policy file on a mounted volume (a
/// pod's ConfigMap), checked against [`DIGEST_ANNOTATION`].
pub const FILE_ANNOTATION: &str = "run.openshell.policy.file";
/// `sha256:HEX` of the policy's bytes, required with [`YAML_ANNOTATION`] and [`FILE_ANNOTATION`].
pub const DIGEST_ANNOTATION: &str = "run.openshell.policy.digest";

/// How messages name the baseline.
const BASELINE_NAME: &str = "the Kubernetes baseline policy";

/// File in the container's state directory holding the policy it was created with.
const SAVED_POLICY: &str = "openshell-policy.json";

/// Why a container's policy could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("annotation {POLICY_ANNOTATION}: `{0}` is not an absolute path")]
    Relative(String),
    #[error(
        "annotation {POLICY_ANNOTATION} names a host file, which a Kubernetes pod may not do: give the policy with {YAML_ANNOTATION} or {FILE_ANNOTATION}, and {DIGEST_ANNOTATION}"
    )]
    HostPathFromPod,
    #[error("annotations {YAML_ANNOTATION} and {FILE_ANNOTATION} both give a policy: keep one")]
    TwoPolicies,
    #[error("annotation {0} needs {DIGEST_ANNOTATION} (`sha256:` and the policy's SHA-256 in hex)")]
    NoDigest(&'static str),
    #[error("annotation {DIGEST_ANNOTATION} is given without a policy ({YAML_ANNOTATION} or {FILE_ANNOTATION})")]
    DigestWithoutPolicy,
    #[error("annotation {DIGEST_ANNOTATION}: `{0}` is not `sha256:` and 64 lowercase hex digits")]
    BadDigest(String),
    #[error(
        "the policy in {source_name} has digest {actual}, not {annotated} as annotation {DIGEST_ANNOTATION} says: refusing to create the container"
    )]
    DigestMismatch { source_name: String, annotated: String, actual: String },
    #[error("annotation {FILE_ANNOTATION}: `{path}` {reason}")]
    Mounted { path: String, reason: String },
    /// The policy's own error: file, line, column and key of every problem.
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("{source_name}: internal: the compiled seccomp filter is not an OCI LinuxSeccomp: {message}")]
    Seccomp { source_name: String, message: String },
    #[error("{}: saving the container's policy: {source}", path.display())]
    Save {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: reading the container's policy: {message}", path.display())]
    Saved { path: PathBuf, message: String },
}

/// Where a container's policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A host file: [`POLICY_ANNOTATION`], `--policy`, or a prepared sandbox's.
    HostFile(PathBuf),
    /// [`YAML_ANNOTATION`]'s text, whose digest must be `digest`.
    Annotation { digest: String },
    /// A file on one of the container's mounts ([`FILE_ANNOTATION`]).
    Mounted { path: String, digest: String },
    /// A Kubernetes pod's container without a policy, or its sandbox container.
    Baseline,
}

/// A loaded and compiled policy.
#[derive(Debug, Clone)]
pub struct SandboxPolicy {
    /// Where it was read from, for messages (a host path, an annotation, the baseline).
    pub source: String,
    /// The working directory `include_workdir` refers to (the spec's `process.cwd`).
    pub workdir: String,
    /// The policy's text, as read (saved with the container for `exec`).
    text: String,
    pub landlock: LandlockProfile,
    pub seccomp: LinuxSeccomp,
    /// Whether it has network policies (egress through a proxy).
    pub has_network: bool,
    /// The limits the policy states (`None` where it states none).
    pub resources: Resources,
    /// Whether this is the Kubernetes baseline (Landlock lifted).
    pub baseline: bool,
    /// Paths its Landlock rules let read beyond what it lists (a pod's trust bundle).
    also_read: Vec<String>,
}

/// What is saved in the container's state directory.
#[derive(Serialize, Deserialize)]
struct Saved {
    source: String,
    workdir: String,
    policy: String,
    #[serde(default)]
    baseline: bool,
    #[serde(default)]
    also_read: Vec<String>,
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a String> {
    spec.annotations().as_ref().and_then(|a| a.get(key))
}

/// The policy a bundle asks for: its annotations, else the runtime's default, else
/// for a Kubernetes pod the baseline. A pod's sandbox container always runs under
/// the baseline (it runs the node's pause image, not the pod author's).
pub fn select(spec: &Spec, default: Option<&Path>) -> Result<Option<PolicySource>, PolicyError> {
    let in_pod = pod::container_type(spec);
    if let Some(path) = annotation(spec, POLICY_ANNOTATION) {
        if in_pod.is_some() {
            return Err(PolicyError::HostPathFromPod);
        }
        if !Path::new(path).is_absolute() {
            return Err(PolicyError::Relative(path.clone()));
        }
        if let Some(default) = default {
            tracing::info!(annotation = %path, default = %default.display(), "the annotation's policy replaces the runtime's default");
        }
        return Ok(Some(PolicySource::HostFile(PathBuf::from(path))));
    }
    if in_pod == Some(pod::ContainerType::Sandbox) {
        return Ok(Some(PolicySource::Baseline));
    }
    let digest = annotation(spec, DIGEST_ANNOTATION).map(|d| checked_digest(d)).transpose()?;
    match (annotation(spec, YAML_ANNOTATION), annotation(spec, FILE_ANNOTATION), digest) {
        (Some(_), Some(_), _) => Err(PolicyError::TwoPolicies),
        (Some(_), None, None) => Err(PolicyError::NoDigest(YAML_ANNOTATION)),
        (None, Some(_), None) => Err(PolicyError::NoDigest(FILE_ANNOTATION)),
        (Some(_), None, Some(digest)) => Ok(Some(PolicySource::Annotation { digest })),
        (None, Some(path), Some(digest)) => Ok(Some(PolicySource::Mounted { path: path.clone(), digest })),
        (None, None, Some(_)) => Err(PolicyError::DigestWithoutPolicy),
        (None, None, None) => Ok(match (default, in_pod) {
            (Some(default), _) => Some(PolicySource::HostFile(default.to_path_buf())),
            (None, Some(_)) => Some(PolicySource::Baseline),
            (None, None) => None,
        }),
    }
}

fn checked_digest(d: &str) -> Result<String, PolicyError> {
    let hex = d.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(d.to_owned())
    } else {
        Err(PolicyError::BadDigest(d.to_owned()))
    }
}

/// `sha256:HEX` of `bytes` (the store's digest, as text).
pub fn digest_of(bytes: &[u8]) -> String {
    openshell_store::Digest::sha256(bytes).to_string()
}

fn verified(source_name: String, bytes: &[u8], annotated: &str) -> Result<String, PolicyError> {
    let actual = digest_of(bytes);
    if actual == annotated {
        Ok(source_name)
    } else {
        Err(PolicyError::DigestMismatch { source_name, annotated: annotated.to_owned(), actual })
    }
}

/// The working directory of a spec's process (`/` when unset).
pub fn workdir(spec: &Spec) -> String {
    spec.process().as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_else(|| "/".into())
}

/// Reads a policy file, at most one byte more than a policy may have.
fn read_bounded(path: &Path) -> Result<Vec<u8>, LoadError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    Ok(bytes)
}

/// Reads, verifies and compiles the policy `source` names for the container `spec` describes.
pub fn load_source(source: &PolicySource, spec: &Spec) -> Result<SandboxPolicy, PolicyError> {
    let workdir = workdir(spec);
    match source {
        PolicySource::HostFile(path) => load(path, &workdir),
        PolicySource::Annotation { digest } => {
            let text = annotation(spec, YAML_ANNOTATION).map(String::as_str).unwrap_or_default();
            let name = verified(format!("annotation {YAML_ANNOTATION}"), text.as_bytes(), digest)?;
            compile_for_pod(&name, &workdir, text.as_bytes())
        }
        PolicySource::Mounted { path, digest } => {
            let host = pod::mounted_file(spec, path)
                .map_err(|reason| PolicyError::Mounted { path: path.clone(), reason: reason.to_string() })?;
            let bytes = read_bounded(&host)?;
            let name = verified(format!("{path} (annotation {FILE_ANNOTATION})"), &bytes, digest)?;
            compile_for_pod(&name, &workdir, &bytes)
        }
        PolicySource::Baseline => baseline(&workdir),
    }
}

/// The baseline (`pod::BASELINE`): its seccomp filter, and Landlock lifted (no
/// right handled), since no list of paths fits every image.
fn baseline(workdir: &str) -> Result<SandboxPolicy, PolicyError> {
    let mut policy = compile(BASELINE_NAME, workdir, pod::BASELINE.as_bytes())?;
    policy.landlock.handled.clear();
    policy.landlock.rules.clear();
    policy.baseline = true;
    Ok(policy)
}

/// Reads, validates and compiles the policy at `path`.
pub fn load(path: &Path, workdir: &str) -> Result<SandboxPolicy, PolicyError> {
    let bytes = read_bounded(path)?;
    compile(&path.display().to_string(), workdir, &bytes)
}

fn compile(name: &str, workdir: &str, bytes: &[u8]) -> Result<SandboxPolicy, PolicyError> {
    compile_reading(name, workdir, bytes, &[])
}

/// A pod container's policy: its Landlock rules also let it read the pod's
/// trust bundle (`pod_trust`), which the policy cannot be expected to name.
fn compile_for_pod(name: &str, workdir: &str, bytes: &[u8]) -> Result<SandboxPolicy, PolicyError> {
    compile_reading(name, workdir, bytes, &[crate::pod_trust::POD_BUNDLE_DIR])
}

/// Compiles the policy in `bytes`, with `also_read` added to its read-only paths.
fn compile_reading(name: &str, workdir: &str, bytes: &[u8], also_read: &[&str]) -> Result<SandboxPolicy, PolicyError> {
    let mut policy = openshell_policy::load_bytes(name, bytes)?;
    let also_read: Vec<String> = also_read.iter().map(|p| (*p).to_owned()).collect();
    policy.filesystem_policy.read_only.extend(also_read.iter().cloned());
    if policy.filesystem_policy.include_workdir && workdir == "/" {
        tracing::warn!(
            policy = %name,
            "include_workdir makes the working directory `/` read-write: Landlock then allows the whole filesystem"
        );
    }
    let profile = KernelProfile::compile(&policy, workdir);
    let seccomp = serde_json::to_value(&profile.seccomp)
        .and_then(serde_json::from_value::<LinuxSeccomp>)
        .map_err(|e| PolicyError::Seccomp { source_name: name.to_owned(), message: e.to_string() })?;
    Ok(SandboxPolicy {
        source: name.to_owned(),
        workdir: workdir.to_owned(),
        // load_bytes accepted it, so it is UTF-8.
        text: String::from_utf8_lossy(bytes).into_owned(),
        landlock: profile.landlock,
        seccomp,
        has_network: !policy.network_policies.is_empty(),
        resources: policy.resources,
        baseline: false,
        also_read,
    })
}

impl SandboxPolicy {
    /// The policy's text, as read and verified.
    pub fn text(&self) -> &str {
        &self.text
    }

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
        let saved = Saved {
            source: self.source.clone(),
            workdir: self.workdir.clone(),
            policy: self.text.clone(),
            baseline: self.baseline,
            also_read: self.also_read.clone(),
        };
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
        if saved.baseline {
            return baseline(&saved.workdir).map(Some);
        }
        let also_read: Vec<&str> = saved.also_read.iter().map(String::as_str).collect();
        compile_reading(&saved.source, &saved.workdir, saved.policy.as_bytes(), &also_read).map(Some)
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
        let file = |p: &str| Some(PolicySource::HostFile(PathBuf::from(p)));
        assert_eq!(select(&s, Some(default)).expect("select"), file("/srv/p.yaml"));
        assert_eq!(select(&spec(&[]), Some(default)).expect("select"), file("/etc/openshell/default.yaml"));
        assert_eq!(select(&spec(&[]), None).expect("select"), None);
        assert!(matches!(select(&spec(&[(POLICY_ANNOTATION, "p.yaml")]), None), Err(PolicyError::Relative(_))));
    }

    const POD: (&str, &str) = (pod::CONTAINER_TYPE_ANNOTATION, "container");
    const SANDBOX: (&str, &str) = (pod::CONTAINER_TYPE_ANNOTATION, "sandbox");

    #[test]
    fn a_pod_gives_its_policy_with_a_digest_and_never_runs_unconfined() {
        let text = "version: 1\n";
        let digest = digest_of(text.as_bytes());
        let d = digest.as_str();
        // No policy: the baseline, not the bundle as given; the sandbox container always.
        assert_eq!(select(&spec(&[POD]), None).expect("select"), Some(PolicySource::Baseline));
        let annotated = [SANDBOX, (YAML_ANNOTATION, text), (DIGEST_ANNOTATION, d)];
        assert_eq!(select(&spec(&annotated), None).expect("select"), Some(PolicySource::Baseline));
        let s = spec(&[POD, (YAML_ANNOTATION, text), (DIGEST_ANNOTATION, d)]);
        assert_eq!(select(&s, None).expect("select"), Some(PolicySource::Annotation { digest: digest.clone() }));
        let policy = load_source(&PolicySource::Annotation { digest: digest.clone() }, &s).expect("load");
        assert_eq!(policy.source, "annotation run.openshell.policy.yaml");
        let s = spec(&[POD, (FILE_ANNOTATION, "/etc/p/policy.yaml"), (DIGEST_ANNOTATION, d)]);
        let mounted = PolicySource::Mounted { path: "/etc/p/policy.yaml".into(), digest: digest.clone() };
        assert_eq!(select(&s, None).expect("select"), Some(mounted));
        // What is refused, each with its reason.
        let refused = |a: &[(&str, &str)]| select(&spec(a), None).expect_err("refused").to_string();
        assert!(refused(&[POD, (POLICY_ANNOTATION, "/etc/shadow")]).contains("host file"));
        assert!(refused(&[POD, (YAML_ANNOTATION, text)]).contains("needs run.openshell.policy.digest"));
        assert!(refused(&[POD, (DIGEST_ANNOTATION, d)]).contains("without a policy"));
        assert!(
            refused(&[POD, (YAML_ANNOTATION, text), (DIGEST_ANNOTATION, "sha256:AB")]).contains("64 lowercase hex")
        );
        let both = [POD, (YAML_ANNOTATION, text), (FILE_ANNOTATION, "/p"), (DIGEST_ANNOTATION, d)];
        assert!(refused(&both).contains("keep one"));
        // A digest that is not the text's refuses the container and names both.
        let other = digest_of(b"version: 1\nresources: {pids: 5}\n");
        let s = spec(&[POD, (YAML_ANNOTATION, text), (DIGEST_ANNOTATION, &other)]);
        let err = load_source(&select(&s, None).expect("select").expect("some"), &s).expect_err("mismatch").to_string();
        assert!(err.contains(&digest) && err.contains(&other) && err.contains("refusing"), "{err}");
    }

    #[test]
    fn the_baseline_lifts_landlock_and_keeps_seccomp_through_exec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = load_source(&PolicySource::Baseline, &spec(&[POD])).expect("baseline");
        assert!(policy.landlock.handled.is_empty() && policy.baseline);
        assert!(policy.seccomp.syscalls().as_ref().is_some_and(|s| !s.is_empty()));
        policy.save(dir.path()).expect("save");
        let again = SandboxPolicy::saved(dir.path()).expect("read").expect("saved");
        assert!(again.landlock.handled.is_empty() && again.baseline);
        assert_eq!(again.seccomp, policy.seccomp);
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
