//! `openshell-runtime`: an OCI runtime with runc's command line, built on
//! libcontainer (youki), so that dockerd and containerd can run containers with it
//! (`dockerd --add-runtime openshell=/usr/local/bin/openshell-runtime`, then
//! `docker run --runtime openshell IMAGE CMD`).
//!
//! # Policy by annotation
//!
//! A bundle whose `config.json` has the annotation
//! `run.openshell.policy` = *absolute host path of an openshell policy YAML* runs
//! under that policy: `create` loads and validates it (an invalid policy fails
//! `create` with the policy's `file:line:column` errors), compiles it with the
//! spec's `process.cwd` as the working directory, and the container's process
//! applies the policy's Landlock rules and then installs the policy's seccomp filter
//! right before it executes the workload. Both come *on top of* the bundle's own
//! spec: its namespaces, mounts, cgroups, capabilities, user and seccomp filter are
//! applied first, as given (the kernel stacks seccomp filters, so a syscall must
//! pass the bundle's and ours). `exec` applies the same policy (saved with the
//! container's state at `create`, so a later edit of the file changes nothing) to
//! every process it adds. The rest of the policy (user, mounts, rlimits, cgroup
//! limits, network) is not applied by this runtime: the bundle decides those.
//!
//! Without the annotation, the runtime's global `--policy FILE` (if given) is used,
//! which lets an operator register a policy per runtime name — e.g. dockerd's
//! `runtimes` with `runtimeArgs: ["--policy", "/etc/openshell/agent.yaml"]`, the way
//! to give a policy through dockerd older than 24, which cannot set annotations. The
//! annotation wins over `--policy`. With neither, the bundle's spec runs as given.
//!
//! With `--sandbox-dir DIR` (what `openshell docker install` registers), a
//! container the gateway's Docker driver prepared runs under the policy in its
//! directory there and in the network namespace of its fenced link (`prepared`);
//! that comes before the annotation and `--policy`.
//!
//! libcontainer 0.7 does not apply the spec's seccomp filter to `exec`'d processes;
//! this runtime installs it in them (see `executor`), under no_new_privs unless the
//! process keeps CAP_SYS_ADMIN.
//!
//! A bundle made by containerd's CRI plugin (a Kubernetes pod's) never runs as
//! given: it takes its pod's policy from the `run.openshell.policy.yaml` or `.file`
//! annotation, checked against `run.openshell.policy.digest`, or the baseline, and
//! is confined (`pod`). A pod created with the gateway's signer key
//! (`run.openshell.policy.signer`) takes live changes of its network policies,
//! signed with that key, on its egress proxy's control port (`pod_egress`).
//!
//! Modules: `ops` (the container operations), `events` (runc's stats JSON),
//! `hierarchies` (cgroup v1's named and unified hierarchies),
//! `policy`, `pod`, `pod_egress` (a pod's fence and egress proxy), `pod_control`
//! (the proxy's port for signed live policy updates), `pod_trust` (the pod's CA
//! and each container's trust bundle), `prepared`, `executor` (what an
//! exec'd process applies), `logging` (runc's log formats) and `spec` (`spec` and
//! `features`).

pub mod events;
pub mod executor;
pub mod hierarchies;
pub mod logging;
pub mod ops;
pub mod pod;
pub mod pod_control;
pub mod pod_egress;
pub mod pod_trust;
pub mod policy;
pub mod prepared;
pub mod spec;

pub use ops::{CreateOptions, ExecOptions, Runtime, RuntimeError, StateReport};
pub use policy::{POLICY_ANNOTATION, PolicyError, SandboxPolicy};
