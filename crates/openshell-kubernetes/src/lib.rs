//! What a Kubernetes cluster needs to run pods through `openshell-runtime`, as
//! `openshell kubernetes manifests` prints it and the repository keeps it under
//! `deploy/`:
//!
//! - `containerd`: the runtime entry (handler `openshell`) in containerd's
//!   config, for config versions 2 and 3, as a `conf.d` drop-in and as K3s
//!   templates; [`containerd::runtime_entry`] is the one place its text is
//!   written.
//! - `installer`: the script a DaemonSet runs on every node (copy the runtime,
//!   register it, validate with the host's containerd, restart, roll back on
//!   failure, label the node) and the environment that configures it.
//! - `node`: the typed Kubernetes objects (k8s-openapi) around it: namespace,
//!   RBAC, ConfigMap, DaemonSet, RuntimeClass, serialized to YAML.
//! - `chart`: the gateway's Helm chart, written by hand under `deploy/helm/`.
//! - `deploy`: the whole tree, written to a directory or compared with one.
//!
//! Nothing here talks to a cluster: it makes files. Dependencies point one way:
//! deploy → {node, chart}; node → {installer, config}; installer, config →
//! containerd → error.

pub mod chart;
pub mod config;
pub mod containerd;
pub mod deploy;
pub mod error;
pub mod installer;
pub mod node;

pub use config::Config;
pub use error::ManifestError;
pub use installer::Flavor;
