//! `spec`: a default `config.json` (runc's defaults through oci-spec) and
//! `features`: what this runtime supports, in the shape `runc features` prints.

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::policy::POLICY_ANNOTATION;

/// Why `spec` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: exists already; remove it first", .0.display())]
    Exists(PathBuf),
    #[error("{}: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// The default spec: runc's (root `rootfs` read-only, `sh`, the usual mounts,
/// namespaces, masked and read-only paths, default capabilities, no_new_privs),
/// except that the process has no terminal: this runtime allocates none of its own
/// (a terminal needs `--console-socket`).
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("openshell".into()));
    if let Some(mut process) = spec.process().clone() {
        process.set_terminal(Some(false));
        spec.set_process(Some(process));
    }
    spec
}

/// Writes the default spec to `bundle/config.json`, refusing to overwrite one.
pub fn write_default(bundle: &Path) -> Result<PathBuf, SpecError> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(SpecError::Exists(path));
    }
    let json = serde_json::to_vec_pretty(&default_spec())
        .map_err(|e| SpecError::Write { path: path.clone(), message: e.to_string() })?;
    std::fs::write(&path, json).map_err(|e| SpecError::Write { path: path.clone(), message: e.to_string() })?;
    Ok(path)
}

/// What this runtime supports (the runtime-spec `features` document).
pub fn features() -> Value {
    let mut capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": libcontainer::oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
            "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid", "private",
            "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw",
            "shared", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": [
                    "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"
                ]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "run.openshell.runtime.version": env!("CARGO_PKG_VERSION"),
            "run.openshell.policy.annotation": POLICY_ANNOTATION,
            // runc says `org.opencontainers.runc.checkpoint.enabled: true`;
            // this runtime has no `checkpoint` or `restore`.
            "run.openshell.checkpoint.enabled": "false"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_loadable_and_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_default(dir.path()).expect("write");
        let spec = Spec::load(&path).expect("load");
        assert_eq!(spec.root().as_ref().map(|r| r.path().clone()), Some(PathBuf::from("rootfs")));
        assert_eq!(spec.process().as_ref().and_then(|p| p.terminal()), Some(false));
        assert!(matches!(write_default(dir.path()), Err(SpecError::Exists(_))));
    }

    #[test]
    fn features_list_what_is_supported() {
        let f = features();
        assert!(f["linux"]["namespaces"].as_array().is_some_and(|n| n.iter().any(|x| x == "pid")));
        assert!(f["linux"]["capabilities"].as_array().is_some_and(|c| c.iter().any(|x| x == "CAP_SYS_ADMIN")));
        assert_eq!(f["annotations"]["run.openshell.policy.annotation"], POLICY_ANNOTATION);
        assert_eq!(f["annotations"]["run.openshell.checkpoint.enabled"], "false");
    }
}
