//! The OCI runtime spec of a sandbox: the image's process, the policy's kernel
//! profile. Fixed at creation; nothing here changes on a live sandbox.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use openshell_policy::KernelProfile;

use crate::idmap::IdMap;
use serde_json::{Value, json};

/// The image's process (from its OCI config, possibly overridden by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub terminal: bool,
}

/// A read-write path of the policy and where its contents live on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writable {
    /// Bind-mounted from a per-sandbox host directory (persists across stop/start).
    Bind { path: String, source: PathBuf },
    /// A fresh tmpfs (e.g. `/tmp`).
    Tmpfs { path: String },
}

/// Everything the spec is made from.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub profile: &'a KernelProfile,
    pub process: ProcessConfig,
    pub uid: u32,
    pub gid: u32,
    pub rootfs: PathBuf,
    pub hostname: String,
    pub writable: Vec<Writable>,
    /// cgroup path of the sandbox (e.g. `/openshell/<id>`).
    pub cgroups_path: String,
    /// The host range the sandbox's ids map to: a user namespace of its own, so
    /// `uid` inside is not `uid` outside. `None`: no user namespace.
    pub ids: Option<IdMap>,
}

/// Why a spec could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the process has no command (the image has no entrypoint or cmd, and none was given)")]
    NoCommand,
    #[error("uid/gid 0 is not allowed in a sandbox")]
    Root,
    #[error("`{0}` is not an absolute path")]
    Relative(String),
    #[error("internal: the generated spec does not parse as an OCI runtime spec: {0}")]
    Invalid(String),
}

/// Paths whose policy entry is satisfied by the runtime's own /dev setup.
const DEVICE_PATHS: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts", "/dev/ptmx"];

/// Builds the runtime spec. The root filesystem is read-only; the policy's
/// read-write paths are the `writable` mounts; no capability in any set;
/// `noNewPrivileges`; the policy's rlimits, cgroup limits and seccomp filter;
/// runc's masked and read-only kernel paths.
pub fn runtime_spec(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let p = input.profile;
    if input.process.args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    if input.uid == 0 || input.gid == 0 {
        return Err(SpecError::Root);
    }
    if !input.process.cwd.starts_with('/') {
        return Err(SpecError::Relative(input.process.cwd.clone()));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for w in &input.writable {
        let (path, mount) = match w {
            Writable::Bind { path, source } => (
                path,
                json!({"destination": path, "type": "bind", "source": source, "options": ["rbind", "rw", "nosuid", "nodev"]}),
            ),
            Writable::Tmpfs { path } => (
                path,
                json!({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}),
            ),
        };
        if !path.starts_with('/') {
            return Err(SpecError::Relative(path.clone()));
        }
        if DEVICE_PATHS.contains(&path.as_str()) {
            continue;
        }
        mounts.push(mount);
    }
    let rlimits: Vec<Value> =
        p.rlimits.iter().map(|r| json!({"type": r.kind, "hard": r.hard, "soft": r.soft})).collect();
    let mut namespaces: Vec<Value> = p.namespaces.iter().map(|n| json!({"type": n})).collect();
    if input.ids.is_some() {
        namespaces.insert(0, json!({"type": "user"}));
    }
    let mut resources = json!({
        "memory": {"limit": p.cgroup.memory_max, "swap": p.cgroup.memory_max},
        "pids": {"limit": p.cgroup.pids_max},
        "devices": [{"allow": false, "access": "rwm"}],
    });
    if let Some((quota, period)) = p.cgroup.cpu_max {
        resources["cpu"] = json!({"quota": quota, "period": period});
    }
    let empty: Vec<String> = Vec::new();
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": input.process.terminal,
            "user": {"uid": input.uid, "gid": input.gid, "additionalGids": []},
            "args": input.process.args,
            "env": input.process.env,
            "cwd": input.process.cwd,
            "capabilities": {"bounding": empty, "effective": empty, "inheritable": empty, "permitted": empty, "ambient": empty},
            "rlimits": rlimits,
            "noNewPrivileges": p.no_new_privileges,
        },
        "root": {"path": input.rootfs, "readonly": p.mounts.rootfs_read_only},
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "cgroupsPath": input.cgroups_path,
            "seccomp": serde_json::to_value(&p.seccomp).map_err(|e| SpecError::Invalid(e.to_string()))?,
            "maskedPaths": p.mounts.masked,
            "readonlyPaths": p.mounts.kernel_read_only,
            "rootfsPropagation": "private",
        },
    });
    let mut spec = spec;
    if let Some(ids) = &input.ids {
        let map = |r: crate::idmap::IdRange| json!([{"containerID": 0, "hostID": r.host, "size": r.size}]);
        spec["linux"]["uidMappings"] = map(ids.uids);
        spec["linux"]["gidMappings"] = map(ids.gids);
    }
    serde_json::from_value(spec).map_err(|e| SpecError::Invalid(e.to_string()))
}
