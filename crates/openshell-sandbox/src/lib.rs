//! openshell sandboxes. So far:
//! - `spec`: the OCI runtime spec of a sandbox, from the image's process and the
//!   policy's compiled kernel profile;
//! - `identity`: the policy's `sandbox` user and group, looked up in the image;
//! - `cgroup_lock`: the kernel's cgroup migration lock taken early on a cold start;
//! - `idmap`: the unprivileged host range a sandbox's ids map to (user namespaces);
//! - `landlock`: applying the policy's Landlock rules;
//! - `rootfs`: layers unpacked once per diff_id, under a per-sandbox overlay;
//! - `inroot`: paths inside a sandbox's root resolved without leaving it, and
//!   mounted through their handles;
//! - `disk`: the filesystem of a sandbox's size that holds its writable layer;
//! - `fence`: a veth pair and nftables under which only the proxy is reachable;
//! - `logs`: a sandbox's logs on the host, rotated at the policy's size;
//! - `loopback`: `lo` brought up in a sandbox's new network namespace;
//! - `init`: process 1 of a sandbox (reaps orphans, forwards signals);
//! - `run`: a bundle run through libcontainer, Landlock applied right before exec.
//!
//! - `sandbox`: one sandbox's directory, its supervisor and `exec`;
//! - `sealed`: the runtime binary re-executed from a sealed copy of itself;
//! - `seccomp_bpf`: the seccomp filter compiled once at creation, installed from BPF.

pub mod cgroup_lock;
pub mod disk;
pub mod fence;
pub mod identity;
pub mod idmap;
pub mod init;
pub mod inroot;
pub mod landlock;
pub mod logs;
pub mod loopback;
pub mod netlink;
pub mod nft;
pub mod rootfs;
pub mod run;
pub mod sandbox;
pub mod sealed;
pub mod seccomp_bpf;
pub mod spec;

pub use identity::{IdentityError, resolve_group, resolve_user};
pub use spec::{ProcessConfig, SpecError, SpecInput, Writable, runtime_spec};
