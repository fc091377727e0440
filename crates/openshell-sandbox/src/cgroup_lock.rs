//! A cold start's cgroup migration, made short.
//!
//! Moving a process into a cgroup takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing. The first writer after a quiet spell
//! waits for an RCU grace period (10–16 ms measured on the 2-core VM of the
//! benchmarks); writers that follow within the next grace period do not.
//! libcontainer's intermediate process moves itself into the sandbox's cgroup
//! at a point of a cold start where nothing else can proceed, so it paid that
//! wait every time.
//!
//! [`warm`] starts the wait early, on a thread of its own, while the rest of the
//! start (the sandbox's directory, disk, loop mount, overlay) goes on: it moves
//! the calling process into the cgroup it is already in, which changes nothing
//! but takes the lock. Measured with `cargo xtask bench sandbox`: see README.

use std::path::{Path, PathBuf};

/// Takes the cgroup migration lock once, in the background. Best effort: when
/// no cgroup file can be found or written, the start waits as before.
pub fn warm() {
    std::thread::spawn(|| {
        if let Err(e) = take_lock() {
            tracing::debug!(%e, "warming the cgroup migration lock");
        }
    });
}

/// Moves this process into its own cgroup: a migration that moves nothing.
/// Returns the `cgroup.procs` written. The file is found again each time (one
/// read of /proc/self/cgroup and of mountinfo, on the thread of [`warm`]): a
/// path kept from before would move the process back had it been moved since.
fn take_lock() -> std::io::Result<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    let procs = own_procs_file(&own, &|| libcgroups::v2::util::get_unified_mount_point().ok(), &|| {
        libcgroups::v1::util::get_subsystem_mount_point(&libcgroups::v1::ControllerType::Pids).ok()
    })
    .ok_or_else(|| std::io::Error::other("no cgroup of this process found in /proc/self/cgroup and mountinfo"))?;
    // "0" is the writing process itself.
    std::fs::write(&procs, "0")?;
    Ok(procs)
}

/// The `cgroup.procs` of this process's own cgroup (`own` is /proc/self/cgroup):
/// in the unified hierarchy when it is mounted, else in the v1 `pids` one.
fn own_procs_file(
    own: &str,
    unified: &dyn Fn() -> Option<PathBuf>,
    pids: &dyn Fn() -> Option<PathBuf>,
) -> Option<PathBuf> {
    let entry = |controller: &str| {
        own.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let named = if controller.is_empty() {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == controller)
            };
            named.then(|| path.trim_start_matches('/').to_owned())
        })
    };
    let under = |mount: PathBuf, path: String| mount.join(Path::new(&path)).join("cgroup.procs");
    if let (Some(path), Some(mount)) = (entry(""), unified()) {
        return Some(under(mount, path));
    }
    Some(under(pids()?, entry("pids")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "9:name=systemd:/\n8:pids:/user.slice\n4:memory:/x/y\n0::/init.scope\n";

    #[test]
    fn the_unified_hierarchy_is_used_when_mounted_else_pids() {
        let unified = || Some(PathBuf::from("/sys/fs/cgroup/unified"));
        let pids = || Some(PathBuf::from("/sys/fs/cgroup/pids"));
        let none = || None;
        assert_eq!(
            own_procs_file(HYBRID, &unified, &pids),
            Some(PathBuf::from("/sys/fs/cgroup/unified/init.scope/cgroup.procs"))
        );
        assert_eq!(
            own_procs_file(HYBRID, &none, &pids),
            Some(PathBuf::from("/sys/fs/cgroup/pids/user.slice/cgroup.procs"))
        );
        assert_eq!(
            own_procs_file("8:pids:/\n", &unified, &pids),
            Some(PathBuf::from("/sys/fs/cgroup/pids/cgroup.procs"))
        );
        assert_eq!(own_procs_file("4:memory:/\n", &none, &pids), None);
        assert_eq!(own_procs_file(HYBRID, &none, &none), None);
    }

    /// As root: the lock is taken through a real cgroup file, and the process
    /// stays exactly where it was in every hierarchy.
    #[test]
    fn taking_the_lock_moves_nothing() {
        assert!(rustix::process::geteuid().is_root(), "this test writes cgroup files: run it as root (CI does)");
        let before = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let written = take_lock().expect("the migration lock is taken through this process's own cgroup.procs");
        assert!(written.ends_with("cgroup.procs"), "{}", written.display());
        assert_eq!(std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup"), before);
    }
}
