//! The cgroup v1 hierarchies libcgroups' v1 manager does not place a
//! container in: `name=systemd` (systemd's own) and, on a hybrid host, the
//! unified (cgroup2) one mounted at `/sys/fs/cgroup/unified`. runc puts the
//! container's processes in both, under the same path as in the controllers';
//! so does this runtime (at `create` and `exec`), and removes the directory at
//! `delete`. With systemd cgroups (`--systemd-cgroup`) systemd places them.

use std::path::{Path, PathBuf};

/// The hierarchies, where this host has them mounted (none on a cgroup2-only host).
fn mounted() -> Vec<PathBuf> {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return Vec::new();
    }
    ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .filter(|h| h.join("cgroup.procs").exists())
        .collect()
}

/// The container's directory in `hierarchy`.
fn dir(hierarchy: &Path, cgroups_path: &Path) -> PathBuf {
    hierarchy.join(cgroups_path.strip_prefix("/").unwrap_or(cgroups_path))
}

/// Puts process `pid` in the container's directory of each hierarchy.
pub fn join(cgroups_path: &Path, pid: i32) -> std::io::Result<()> {
    for hierarchy in mounted() {
        let dir = dir(&hierarchy, cgroups_path);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
    }
    Ok(())
}

/// Removes the container's directory of each hierarchy (its processes gone).
pub fn remove(cgroups_path: &Path) {
    for hierarchy in mounted() {
        let dir = dir(&hierarchy, cgroups_path);
        if let Err(e) = std::fs::remove_dir(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "removing the container's cgroup");
        }
    }
}
