//! Compiles the static sections of a policy into the kernel profile a sandbox is
//! created with: mount plan, Landlock rules, seccomp filter (OCI `LinuxSeccomp`),
//! user and group, capabilities, rlimits and cgroup limits.
//!
//! Pure: nothing here touches the host. Paths are resolved, and `sandbox` turned
//! into numeric ids, by the runtime against the image at creation.

use serde::Serialize;

use crate::model::{Compatibility, Identity, Policy, Resources};
use crate::seccomp::{self, LinuxSeccomp};

/// The default working directory, added read-write by `include_workdir`.
pub const DEFAULT_WORKDIR: &str = "/sandbox";

/// Everything the runtime needs to build a sandbox's isolation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelProfile {
    pub mounts: MountPlan,
    /// What the sandbox may make the host hold on disk.
    pub storage: StorageLimits,
    pub landlock: LandlockProfile,
    pub seccomp: LinuxSeccomp,
    pub user: UserSpec,
    pub capabilities: Capabilities,
    pub no_new_privileges: bool,
    pub rlimits: Vec<Rlimit>,
    pub cgroup: CgroupLimits,
    pub namespaces: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountPlan {
    /// The image's root filesystem is mounted read-only.
    pub rootfs_read_only: bool,
    pub read_only: Vec<String>,
    pub read_write: Vec<String>,
    /// Hidden from the sandbox (as runc does): empty files or tmpfs over them.
    pub masked: Vec<&'static str>,
    /// Kernel interfaces bound read-only (as runc does).
    pub kernel_read_only: Vec<&'static str>,
}

/// runc's default masked paths, plus Docker's powercap addition.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// runc's default read-only kernel paths.
pub const KERNEL_READ_ONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LandlockProfile {
    pub compatibility: Compatibility,
    /// Minimum Landlock ABI whose rights these rules use (v3 adds truncate).
    pub abi: u32,
    /// Every right below is handled: what no rule grants is denied.
    pub handled: Vec<&'static str>,
    pub rules: Vec<LandlockRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LandlockRule {
    pub path: String,
    pub access: PathAccess,
    /// Rights when the path is a directory (applies beneath it).
    pub directory_rights: Vec<&'static str>,
    /// Rights when the path is a regular file or device.
    pub file_rights: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathAccess {
    ReadOnly,
    ReadWrite,
}

const READ_FILE: &[&str] = &["execute", "read_file"];
const READ_DIR: &[&str] = &["execute", "read_file", "read_dir"];
const WRITE_FILE: &[&str] = &["execute", "read_file", "write_file", "truncate"];
const WRITE_DIR: &[&str] = &[
    "execute",
    "read_file",
    "read_dir",
    "write_file",
    "truncate",
    "remove_dir",
    "remove_file",
    "make_dir",
    "make_reg",
    "make_sock",
    "make_fifo",
    "make_sym",
    "refer",
];
/// Handled (and so denied unless granted). `make_char` and `make_block` are never granted.
const HANDLED: &[&str] = &[
    "execute",
    "write_file",
    "read_file",
    "read_dir",
    "remove_dir",
    "remove_file",
    "make_char",
    "make_dir",
    "make_reg",
    "make_sock",
    "make_fifo",
    "make_block",
    "make_sym",
    "refer",
    "truncate",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSpec {
    /// `sandbox` is looked up in the image's /etc/passwd at creation.
    pub user: Identity,
    pub group: Identity,
    /// No supplementary groups.
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub bounding: Vec<&'static str>,
    pub effective: Vec<&'static str>,
    pub inheritable: Vec<&'static str>,
    pub permitted: Vec<&'static str>,
    pub ambient: Vec<&'static str>,
}

/// An OCI `POSIXRlimit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupLimits {
    /// memory.max in bytes.
    pub memory_max: u64,
    /// memory.swap.max: no swap on top of the memory limit.
    pub memory_swap_max: u64,
    pub pids_max: u64,
    /// cpu.max as (quota, period) in microseconds; `None` = unlimited.
    pub cpu_max: Option<(u64, u64)>,
}

/// Disk the host spends on a sandbox (our `resources` extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StorageLimits {
    /// Size of the writable layer (a filesystem of this size holds it).
    pub disk: u64,
    /// Size at which each log rotates (one previous file kept).
    pub log_rotate: u64,
}

/// The CPU period used for `cpu.max`.
pub const CPU_PERIOD_US: u64 = 100_000;

impl KernelProfile {
    /// Compiles the static sections of `policy`; `workdir` is where
    /// `include_workdir` points (the image's working directory).
    pub fn compile(policy: &Policy, workdir: &str) -> KernelProfile {
        let fs = &policy.filesystem_policy;
        let mut read_write = fs.read_write.clone();
        if fs.include_workdir && !read_write.iter().any(|p| p == workdir) {
            read_write.push(workdir.to_owned());
        }
        let read_only: Vec<String> = fs.read_only.iter().filter(|p| !read_write.contains(p)).cloned().collect();
        let mut rules: Vec<LandlockRule> = read_only
            .iter()
            .map(|p| LandlockRule {
                path: p.clone(),
                access: PathAccess::ReadOnly,
                directory_rights: READ_DIR.to_vec(),
                file_rights: READ_FILE.to_vec(),
            })
            .collect();
        rules.extend(read_write.iter().map(|p| LandlockRule {
            path: p.clone(),
            access: PathAccess::ReadWrite,
            directory_rights: WRITE_DIR.to_vec(),
            file_rights: WRITE_FILE.to_vec(),
        }));
        let r = &policy.resources;
        let memory = r.memory.unwrap_or(Resources::DEFAULT_MEMORY);
        let open_files = r.open_files.unwrap_or(Resources::DEFAULT_OPEN_FILES);
        KernelProfile {
            storage: StorageLimits {
                disk: r.disk.unwrap_or(Resources::DEFAULT_DISK),
                log_rotate: r.logs.unwrap_or(Resources::DEFAULT_LOGS),
            },
            mounts: MountPlan {
                rootfs_read_only: true,
                read_only,
                read_write,
                masked: MASKED_PATHS.to_vec(),
                kernel_read_only: KERNEL_READ_ONLY_PATHS.to_vec(),
            },
            landlock: LandlockProfile {
                compatibility: policy.landlock.compatibility,
                abi: 3,
                handled: HANDLED.to_vec(),
                rules,
            },
            seccomp: seccomp::profile(std::env::consts::ARCH),
            user: UserSpec {
                user: policy.process.run_as_user,
                group: policy.process.run_as_group,
                additional_gids: Vec::new(),
            },
            capabilities: Capabilities {
                bounding: Vec::new(),
                effective: Vec::new(),
                inheritable: Vec::new(),
                permitted: Vec::new(),
                ambient: Vec::new(),
            },
            no_new_privileges: true,
            rlimits: vec![
                Rlimit { kind: "RLIMIT_CORE", hard: 0, soft: 0 },
                Rlimit { kind: "RLIMIT_NOFILE", hard: open_files, soft: open_files },
            ],
            cgroup: CgroupLimits {
                memory_max: memory,
                memory_swap_max: 0,
                pids_max: r.pids.unwrap_or(Resources::DEFAULT_PIDS),
                cpu_max: r.cpu_millis.map(|m| (m * CPU_PERIOD_US / 1000, CPU_PERIOD_US)),
            },
            namespaces: vec!["mount", "pid", "ipc", "uts", "network", "cgroup"],
        }
    }
}
