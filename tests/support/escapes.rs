//! The isolation suite's escapes as the product paths run them (through the
//! gateway in tests/sandbox.rs, inside a Kubernetes pod in tests/cri.rs): each is
//! the isolation probe's arguments (`tests/fixtures/isolation/probe.c`), and each
//! must print `CASE: denied ...` and exit 1 in a sandbox under the default policy.

pub const ESCAPES: &[&[&str]] = &[
    &["write", "/usr/x"],
    &["write", "/etc/x"],
    &["write", "/x"],
    &["read", "/root/secret"],
    &["read", "/sandbox/../root/secret"],
    &["ps"],
    &["ptrace"],
    &["mount"],
    &["userns", "unshare"],
    &["userns", "clone"],
    &["module"],
    &["socket", "raw"],
    &["socket", "packet"],
    &["netlink", "AUDIT"],
    &["io_uring"],
    &["bpf"],
    &["perf"],
    &["keyctl"],
    &["setuid", "/usr/bin/probe-suid"],
    &["sysctl", "/proc/sys/vm/swappiness"],
    &["syswrite", "/sys/class/net/lo/mtu"],
    &["lsdev"],
    &["mknod", "/tmp/dev", "1", "3"],
    &["procroot", "1", "/etc/passwd"],
    &["dotdot", "40", "/root/secret"],
    &["fds"],
];
