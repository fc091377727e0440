//! openshell sandboxes. So far: the OCI runtime spec a sandbox is created with,
//! derived from the image's config and the policy's compiled kernel profile
//! (`spec`), and the lookup of the policy's `sandbox` user and group in the image
//! (`identity`), applying the policy's Landlock rules (`landlock`), and root
//! filesystems from cached layers under a per-sandbox overlay (`rootfs`). Running it (libcontainer, the in-sandbox init that applies
//! Landlock, the gateway) is issue 4's remaining work and does not exist yet.

pub mod identity;
pub mod landlock;
pub mod rootfs;
pub mod spec;

pub use identity::{IdentityError, resolve_group, resolve_user};
pub use spec::{ProcessConfig, SpecError, SpecInput, Writable, runtime_spec};
