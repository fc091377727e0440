//! What a Kubernetes cluster needs to run pods through `openshell-runtime`:
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
//!
//! Nothing here talks to a cluster: it makes files. Dependencies point one way:
//! node → {installer, config}; installer, config → containerd → error.

pub mod config;
pub mod containerd;
pub mod error;
pub mod installer;
pub mod node;

pub use config::Config;
pub use error::ManifestError;
pub use installer::Flavor;
