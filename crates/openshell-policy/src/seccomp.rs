//! The sandbox seccomp filter, as OCI `LinuxSeccomp` JSON: a default-deny
//! allowlist (EPERM for anything not listed), with argument filters for
//! `socket`, `clone`, `unshare` and `personality`, and `clone3` answering ENOSYS
//! so libc falls back to `clone`, whose flags can be inspected.
//!
//! Argument filters use only `SCMP_CMP_EQ` and `SCMP_CMP_LT`, never
//! `SCMP_CMP_MASKED_EQ`: runtimes disagree on its operands (runc reads
//! `(arg & value) == valueTwo`, libcontainer 0.7 `(arg & valueTwo) == value`), and
//! a masked rule read the other way round matched every argument: the sandbox
//! could create user namespaces and the socket type filter let raw sockets through
//! (found by tests/isolation.rs).

use serde::Serialize;

/// OCI `LinuxSeccomp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxSeccomp {
    pub default_action: &'static str,
    pub default_errno_ret: u32,
    pub architectures: Vec<&'static str>,
    pub syscalls: Vec<SyscallRule>,
}

/// OCI `LinuxSyscall`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    pub names: Vec<&'static str>,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<SyscallArg>,
}

/// OCI `LinuxSeccompArg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallArg {
    pub index: u32,
    pub value: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub value_two: u64,
    pub op: &'static str,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

pub const EPERM: u32 = 1;
pub const ENOSYS: u32 = 38;
pub const EAFNOSUPPORT: u32 = 97;

const AF_UNIX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const AF_NETLINK: u64 = 16;
const NETLINK_ROUTE: u64 = 0;
const SOCK_STREAM: u64 = 1;
const SOCK_DGRAM: u64 = 2;
const SOCK_SEQPACKET: u64 = 5;
/// Flags a socket type may carry (x86_64 and aarch64 values).
const SOCK_NONBLOCK: u64 = 0x800;
const SOCK_CLOEXEC: u64 = 0x8_0000;
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0080;
/// `clone` and `unshare` are allowed only with flags below this value
/// (CLONE_NEWCGROUP, the lowest of CLONE_NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
/// NEWPID, NEWNET). The namespace flags under it, CLONE_NEWNS and CLONE_NEWTIME,
/// need CAP_SYS_ADMIN, which a sandbox never has and, without a user namespace,
/// cannot get. The flags libc uses for fork, threads and posix_spawn are all below.
pub const CLONE_FLAGS_LIMIT: u64 = 0x0200_0000;

/// Syscalls that are never allowed: each is absent from the allowlist (and so
/// answered EPERM). Kept as a list so tests and docs can name them.
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "chroot",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
];

/// Allowed without conditions.
pub const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_mempolicy",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "mbind",
    "membarrier",
    "memfd_create",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_mempolicy",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "wait4",
    "waitid",
    "write",
    "writev",
];

fn arg(index: u32, value: u64, op: &'static str) -> SyscallArg {
    SyscallArg { index, value, value_two: 0, op }
}

fn allow(names: &[&'static str], args: Vec<SyscallArg>) -> SyscallRule {
    SyscallRule { names: names.to_vec(), action: "SCMP_ACT_ALLOW", errno_ret: None, args }
}

/// The OCI architecture names for a Rust `target_arch`.
pub fn architectures(arch: &str) -> Vec<&'static str> {
    match arch {
        "x86_64" => vec!["SCMP_ARCH_X86_64"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64"],
        _ => Vec::new(),
    }
}

/// The sandbox filter for `arch` (a Rust `target_arch`). Only the native ABI is
/// listed, so 32-bit compat syscalls are refused by the kernel filter.
pub fn profile(arch: &str) -> LinuxSeccomp {
    let mut syscalls = vec![allow(ALLOWED, Vec::new())];
    // socket: only UNIX, IPv4 and IPv6 stream/datagram/seqpacket sockets (no raw,
    // no packet), each type alone or with SOCK_NONBLOCK / SOCK_CLOEXEC, and netlink
    // only for NETLINK_ROUTE.
    for family in [AF_UNIX, AF_INET, AF_INET6] {
        for ty in [SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET] {
            for flags in [0, SOCK_NONBLOCK, SOCK_CLOEXEC, SOCK_NONBLOCK | SOCK_CLOEXEC] {
                syscalls
                    .push(allow(&["socket"], vec![arg(0, family, "SCMP_CMP_EQ"), arg(1, ty | flags, "SCMP_CMP_EQ")]));
            }
        }
    }
    syscalls.push(allow(&["socket"], vec![arg(0, AF_NETLINK, "SCMP_CMP_EQ"), arg(2, NETLINK_ROUTE, "SCMP_CMP_EQ")]));
    syscalls.push(allow(&["socketpair"], vec![arg(0, AF_UNIX, "SCMP_CMP_EQ")]));
    // clone/unshare without the namespace flags that need no privilege (a user
    // namespace would grant capabilities); see CLONE_FLAGS_LIMIT.
    syscalls.push(allow(&["clone", "unshare"], vec![arg(0, CLONE_FLAGS_LIMIT, "SCMP_CMP_LT")]));
    // personality: the values Docker allows (Linux default, UNAME26, query).
    for p in [0x0_u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(allow(&["personality"], vec![arg(0, p, "SCMP_CMP_EQ")]));
    }
    // clone3 cannot be filtered by flags (they are behind a pointer): ENOSYS makes libc use clone.
    syscalls.push(SyscallRule {
        names: vec!["clone3"],
        action: "SCMP_ACT_ERRNO",
        errno_ret: Some(ENOSYS),
        args: Vec::new(),
    });
    LinuxSeccomp {
        default_action: "SCMP_ACT_ERRNO",
        default_errno_ret: EPERM,
        architectures: architectures(arch),
        syscalls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_are_not_allowed() {
        for d in DENIED {
            assert!(!ALLOWED.contains(d), "{d} is both denied and allowed");
        }
        let p = profile("x86_64");
        for rule in &p.syscalls {
            for n in &rule.names {
                assert!(!DENIED.contains(n), "{n} appears in a rule");
            }
        }
    }

    #[test]
    fn allowlist_is_sorted_and_unique() {
        let mut sorted = ALLOWED.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, ALLOWED, "keep ALLOWED sorted and free of duplicates");
    }

    #[test]
    fn no_masked_comparisons() {
        // Runtimes read SCMP_CMP_MASKED_EQ's operands in different orders.
        for rule in &profile("x86_64").syscalls {
            for a in &rule.args {
                assert!(matches!(a.op, "SCMP_CMP_EQ" | "SCMP_CMP_LT"), "{rule:?}");
                assert_eq!(a.value_two, 0, "{rule:?}");
            }
        }
    }

    #[test]
    fn clone_limit_excludes_unprivileged_namespaces_and_keeps_libc_flags() {
        const CLONE_NEWNS: u64 = 0x2_0000;
        const CLONE_NEWTIME: u64 = 0x80;
        for bit in (0..64).map(|b| 1_u64 << b).filter(|b| CLONE_NAMESPACE_FLAGS & b != 0) {
            let below = bit < CLONE_FLAGS_LIMIT;
            assert_eq!(below, bit == CLONE_NEWNS || bit == CLONE_NEWTIME, "namespace flag {bit:#x}");
        }
        // glibc fork (CHILD_SETTID|CHILD_CLEARTID|SIGCHLD), pthread_create, posix_spawn (VM|VFORK|SIGCHLD).
        for flags in [0x0120_0011_u64, 0x003d_0f00, 0x4111] {
            assert!(flags < CLONE_FLAGS_LIMIT, "{flags:#x}");
        }
    }

    #[test]
    fn isolation_md_minimum_is_denied() {
        for name in [
            "ptrace",
            "bpf",
            "process_vm_readv",
            "process_vm_writev",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "userfaultfd",
            "perf_event_open",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "mount",
            "umount2",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "pivot_root",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
        ] {
            assert!(DENIED.contains(&name), "{name} must be denied");
        }
    }
}
