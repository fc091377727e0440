//! openshell's policy engine.
//!
//! - [`load_file`] / [`load_str`]: strict YAML loading of OpenShell-compatible
//!   policies, every error with file, line, column and key.
//! - [`Engine`]: the decision function for network requests (L4 and L7).
//! - [`KernelProfile`]: the static sections compiled into what the runtime
//!   applies (mounts, Landlock, seccomp, user, capabilities, rlimits, cgroups).
//! - [`PolicyDiff`]: whether a new policy can be hot-applied to a running sandbox.
//!
//! No I/O beyond reading the policy file.

pub mod advise;
pub mod decode;
pub mod diff;
pub mod engine;
pub mod error;
pub mod glob;
pub mod host;
pub mod model;
pub mod net;
pub mod profile;
pub mod seccomp;
pub mod yaml;

pub use decode::{MAX_PATH_LEN, MAX_PATHS, MAX_POLICY_BYTES, load_bytes, load_file, load_str, parse};
pub use diff::{Applicability, PolicyDiff, StaticChangeError};
pub use engine::{Decision, Engine, HttpRequest, Message, Reason, Request, RpcCall, Verdict};
pub use error::{Diagnostic, LoadError};
pub use model::Policy;
pub use profile::KernelProfile;
