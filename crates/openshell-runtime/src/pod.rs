//! Containers a Kubernetes node creates: containerd's CRI plugin marks each one's
//! bundle with the annotation [`CONTAINER_TYPE_ANNOTATION`] (`sandbox` for the pod's
//! pause container, `container` for the pod's own). Under this runtime none of them
//! runs unconfined: each runs under its pod's policy (the `run.openshell.policy.*`
//! annotations, which the node's runtime entry passes through with
//! `pod_annotations`) or under [`BASELINE`], and [`confine`] writes into the bundle
//! what the policy decides that the pod's spec would otherwise decide: capabilities,
//! no_new_privs, and the policy's stated limits as ceilings.

use std::path::{Component, Path, PathBuf};

use libcontainer::oci_spec::runtime::{
    LinuxCapabilities, LinuxPidsBuilder, LinuxResources, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process,
    Spec,
};
use openshell_policy::model::Resources;

/// The CRI plugin's annotation on every bundle it makes.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// The policy of a pod's container that gives none, and of every pod's sandbox
/// container: the sandbox seccomp filter (an allowlist: ptrace, mount, bpf, keyctl,
/// io_uring, new user namespaces, kernel modules and raw sockets fail), no
/// capabilities, no_new_privs. Landlock is lifted (no list of paths fits every
/// image); the pod's own limits stay.
pub const BASELINE: &str = "version: 1\nfilesystem_policy:\n  include_workdir: false\n";

/// Which of a pod's containers a bundle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerType {
    /// The pod's sandbox ("pause") container, which holds its namespaces.
    Sandbox,
    /// One of the pod's own containers.
    Container,
}

/// The bundle's place in a pod, if a Kubernetes node made it.
pub fn container_type(spec: &Spec) -> Option<ContainerType> {
    match spec.annotations().as_ref()?.get(CONTAINER_TYPE_ANNOTATION)?.as_str() {
        "sandbox" => Some(ContainerType::Sandbox),
        // Anything else the CRI may add later is a container of the pod's.
        _ => Some(ContainerType::Container),
    }
}

/// The pod annotation choosing process 1 of the pod's containers: `supervise`
/// (openshell's init runs the container's command under it, passes signals on and
/// reaps) or `idle` (openshell's init with nothing to run: processes join with exec;
/// the container's command is not run). Without it, the command is process 1.
pub const INIT_ANNOTATION: &str = "run.openshell.init";

/// What process 1 of a pod's container is (see [`INIT_ANNOTATION`]).
pub fn init_mode(spec: &Spec) -> Result<openshell_sandbox::run::InitMode, PodError> {
    use openshell_sandbox::run::InitMode;
    if container_type(spec) != Some(ContainerType::Container) {
        return Ok(InitMode::Exec);
    }
    match spec.annotations().as_ref().and_then(|a| a.get(INIT_ANNOTATION)).map(String::as_str) {
        None => Ok(InitMode::Exec),
        Some("supervise") => Ok(InitMode::Supervise),
        Some("idle") => Ok(InitMode::Idle),
        Some(other) => Err(PodError::Init(other.to_owned())),
    }
}

/// Why a pod's bundle could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("annotation {INIT_ANNOTATION}: `{0}` is neither `supervise` nor `idle`")]
    Init(String),
    #[error("{}: writing the confined spec: {message}", path.display())]
    Spec { path: PathBuf, message: String },
    /// An OCI value the policy's limits make that oci-spec refuses.
    #[error("the policy's limits: {0}")]
    Limits(#[from] libcontainer::oci_spec::OciSpecError),
}

/// Why a path inside the container does not name a file on one of its mounts.
#[derive(Debug, thiserror::Error)]
pub enum MountedFileError {
    #[error("is not an absolute path without `..`")]
    NotAbsolute,
    #[error("is on no bind mount of the container (a ConfigMap volume, say)")]
    NoMount,
    #[error("resolves to {}, outside its mount's source {}", resolved.display(), source_dir.display())]
    Escapes { resolved: PathBuf, source_dir: PathBuf },
    #[error("cannot be resolved on the host ({}): {error}", path.display())]
    Resolve { path: PathBuf, error: std::io::Error },
}

/// The host file behind `path` inside the container: the bind mount with the
/// longest destination that holds it, and the rest of the path under the mount's
/// source. Symlinks are resolved (a ConfigMap's files are links into `..data`), and
/// the result must stay under the mount's source: a link out of the volume is refused.
pub fn mounted_file(spec: &Spec, path: &str) -> Result<PathBuf, MountedFileError> {
    let inside = Path::new(path);
    if !inside.is_absolute() || inside.components().any(|c| c == Component::ParentDir) {
        return Err(MountedFileError::NotAbsolute);
    }
    let is_bind = |m: &&libcontainer::oci_spec::runtime::Mount| {
        m.typ().as_deref() == Some("bind")
            || m.options().as_ref().is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
    };
    let mount = spec
        .mounts()
        .iter()
        .flatten()
        .filter(is_bind)
        .filter(|m| inside.starts_with(m.destination()))
        .max_by_key(|m| m.destination().components().count())
        .ok_or(MountedFileError::NoMount)?;
    let source = mount.source().as_ref().ok_or(MountedFileError::NoMount)?;
    let rest = inside.strip_prefix(mount.destination()).map_err(|_| MountedFileError::NoMount)?;
    let resolve =
        |p: &Path| std::fs::canonicalize(p).map_err(|error| MountedFileError::Resolve { path: p.to_owned(), error });
    let source_dir = resolve(source)?;
    let resolved = resolve(&source.join(rest))?;
    if !resolved.starts_with(&source_dir) {
        return Err(MountedFileError::Escapes { resolved, source_dir });
    }
    Ok(resolved)
}

/// Writes into the bundle's `config.json` (and `spec`) what a policy decides for a
/// pod's container: every capability set emptied, no_new_privs, the memory, pids,
/// CPU and open-files limits the policy states (`stated`) as ceilings on the pod's,
/// and `env` (`KEY=value`, replacing the pod's own `KEY`).
pub fn confine(bundle: &Path, spec: &mut Spec, stated: &Resources, env: &[String]) -> Result<(), PodError> {
    let path = bundle.join("config.json");
    if let Some(mut process) = spec.process().clone() {
        confine_process(&mut process, stated, env)?;
        spec.set_process(Some(process));
    }
    if let Some(linux) = spec.linux_mut() {
        let mut resources = linux.resources().clone().unwrap_or_default();
        cap_resources(&mut resources, stated)?;
        linux.set_resources(Some(resources));
    }
    spec.save(&path).map_err(|e| PodError::Spec { path, message: e.to_string() })
}

/// What [`confine`] does to a pod container's process, for one `exec` adds: the
/// process JSON containerd hands over is built from the pod's spec, not the bundle
/// this runtime rewrote.
pub fn confine_process(process: &mut Process, stated: &Resources, env: &[String]) -> Result<(), PodError> {
    let key = |kv: &str| kv.split('=').next().unwrap_or_default().to_owned();
    let replaced: Vec<String> = env.iter().map(|kv| key(kv)).collect();
    let mut all: Vec<String> =
        process.env().clone().unwrap_or_default().into_iter().filter(|kv| !replaced.contains(&key(kv))).collect();
    all.extend(env.iter().cloned());
    process.set_env(Some(all));
    process.set_capabilities(Some(no_capabilities()));
    process.set_no_new_privileges(Some(true));
    if let Some(limit) = stated.open_files {
        let mut rlimits = process.rlimits().clone().unwrap_or_default();
        cap_rlimit(&mut rlimits, limit)?;
        process.set_rlimits(Some(rlimits));
    }
    Ok(())
}

fn no_capabilities() -> LinuxCapabilities {
    let mut caps = LinuxCapabilities::default();
    for set in [
        LinuxCapabilities::set_bounding,
        LinuxCapabilities::set_effective,
        LinuxCapabilities::set_inheritable,
        LinuxCapabilities::set_permitted,
        LinuxCapabilities::set_ambient,
    ] {
        set(&mut caps, Some(Default::default()));
    }
    caps
}

fn lower(current: Option<i64>, ceiling: u64) -> i64 {
    let ceiling = i64::try_from(ceiling).unwrap_or(i64::MAX);
    match current {
        Some(c) if c > 0 && c < ceiling => c,
        _ => ceiling,
    }
}

fn cap_rlimit(rlimits: &mut Vec<PosixRlimit>, limit: u64) -> Result<(), PodError> {
    let existing = rlimits.iter().position(|r| r.typ() == PosixRlimitType::RlimitNofile);
    let (soft, hard) = match existing.map(|i| rlimits.remove(i)) {
        Some(r) => (r.soft().min(limit), r.hard().min(limit)),
        None => (limit, limit),
    };
    let capped = PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).soft(soft).hard(hard).build()?;
    rlimits.push(capped);
    Ok(())
}

fn cap_resources(resources: &mut LinuxResources, stated: &Resources) -> Result<(), PodError> {
    if let Some(memory) = stated.memory {
        let limit = lower(resources.memory().as_ref().and_then(|m| m.limit()), memory);
        let mut m = resources.memory().unwrap_or_default();
        m.set_limit(Some(limit));
        // No swap on top, as on the host.
        m.set_swap(Some(limit));
        resources.set_memory(Some(m));
    }
    if let Some(pids) = stated.pids {
        let current = resources.pids().as_ref().map(|p| p.limit());
        let p = LinuxPidsBuilder::default().limit(lower(current, pids)).build()?;
        resources.set_pids(Some(p));
    }
    if let Some(millis) = stated.cpu_millis {
        const PERIOD: u64 = 100_000;
        let mut c = resources.cpu().clone().unwrap_or_default();
        // The pod's quota stays when it is the smaller share of a core.
        let pods = match (c.quota(), c.period()) {
            (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as u128 * 1000 / p as u128),
            _ => None,
        };
        if pods.is_none_or(|share| share > u128::from(millis)) {
            c.set_quota(Some(i64::try_from(millis * PERIOD / 1000).unwrap_or(i64::MAX)));
            c.set_period(Some(PERIOD));
        }
        resources.set_cpu(Some(c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::oci_spec::runtime::{LinuxMemory, LinuxPids, MountBuilder};
    use std::os::unix::fs::symlink;

    fn spec_with_mount(source: &Path, destination: &str) -> Spec {
        let mut spec = Spec::default();
        let mount = MountBuilder::default()
            .destination(destination)
            .typ("bind")
            .source(source)
            .options(vec!["rbind".to_string(), "ro".to_string()])
            .build()
            .expect("mount");
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(mount);
        spec.set_mounts(Some(mounts));
        spec
    }

    #[test]
    fn a_file_on_a_configmap_volume_is_found_and_links_out_of_it_are_refused() {
        // The kubelet's layout: policy.yaml -> ..data/policy.yaml, ..data -> ..2026_12_04.
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(volume.join("..2026_12_04")).expect("mkdir");
        std::fs::write(volume.join("..2026_12_04/policy.yaml"), "version: 1\n").expect("write");
        symlink("..2026_12_04", volume.join("..data")).expect("link");
        symlink("..data/policy.yaml", volume.join("policy.yaml")).expect("link");
        std::fs::write(dir.path().join("secret"), "host\n").expect("write");
        symlink(dir.path().join("secret"), volume.join("out")).expect("link");
        let spec = spec_with_mount(&volume, "/etc/openshell");
        let found = mounted_file(&spec, "/etc/openshell/policy.yaml").expect("found");
        assert_eq!(found, std::fs::canonicalize(volume.join("..2026_12_04/policy.yaml")).expect("canonical"));
        let err = |p: &str| mounted_file(&spec, p).expect_err("refused");
        assert!(matches!(err("/etc/openshell/out"), MountedFileError::Escapes { .. }));
        assert!(matches!(err("/etc/passwd"), MountedFileError::NoMount));
        assert!(matches!(err("/etc/openshell/../passwd"), MountedFileError::NotAbsolute));
        assert!(matches!(err("etc/openshell/policy.yaml"), MountedFileError::NotAbsolute));
        assert!(matches!(err("/etc/openshell/missing"), MountedFileError::Resolve { .. }));
    }

    #[test]
    fn confining_empties_capabilities_sets_no_new_privs_and_lowers_limits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = Spec::default();
        let mut resources = LinuxResources::default();
        let mut pids = LinuxPids::default();
        pids.set_limit(100);
        resources.set_pids(Some(pids));
        let mut memory = LinuxMemory::default();
        memory.set_limit(Some(1 << 30));
        resources.set_memory(Some(memory));
        spec.linux_mut().as_mut().expect("linux").set_resources(Some(resources));
        let stated =
            Resources { memory: Some(64 << 20), pids: Some(4096), open_files: Some(512), ..Resources::default() };
        confine(dir.path(), &mut spec, &stated, &["HTTPS_PROXY=http://127.0.0.1:1".into()]).expect("confine");
        let saved = Spec::load(dir.path().join("config.json")).expect("saved");
        let process = saved.process().as_ref().expect("process");
        let caps = process.capabilities().as_ref().expect("caps");
        assert!(caps.bounding().as_ref().is_some_and(|s| s.is_empty()));
        assert!(caps.permitted().as_ref().is_some_and(|s| s.is_empty()));
        assert_eq!(process.no_new_privileges(), Some(true));
        let env = process.env().clone().unwrap_or_default();
        assert_eq!(
            env.iter().filter(|kv| kv.starts_with("HTTPS_PROXY=")).collect::<Vec<_>>(),
            ["HTTPS_PROXY=http://127.0.0.1:1"]
        );
        let nofile = process.rlimits().iter().flatten().find(|r| r.typ() == PosixRlimitType::RlimitNofile);
        assert_eq!(nofile.map(|r| (r.soft(), r.hard())), Some((512, 512)));
        let resources = saved.linux().as_ref().and_then(|l| l.resources().clone()).expect("resources");
        // The policy's 64 MiB is lower than the pod's 1 GiB; the pod's 100 pids lower than 4096.
        assert_eq!(resources.memory().as_ref().and_then(|m| m.limit()), Some(64 << 20));
        assert_eq!(resources.pids().as_ref().map(|p| p.limit()), Some(100));
    }
}
