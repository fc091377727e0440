//! openshell's egress proxy (issue 5, first part): CONNECT and absolute-form HTTP
//! through one pipeline, decided by the policy engine, with the SSRF rules,
//! audit events and atomic hot reload.
//!
//! - `proxy`: the listener and the per-connection pipeline (read the request head,
//!   identify the caller, resolve, decide, connect to the checked address, relay);
//! - `identify`: who is calling ([`Identify`]; the sandbox's kernel-based identity
//!   plugs in here);
//! - `resolve`: name resolution in the proxy ([`Resolve`]: the system's, or a
//!   fixed table);
//! - `audit`: OCSF JSON lines (network activity 4001, HTTP activity 4002).
//!
//! A sandbox whose policy has network policies runs one of these in its
//! supervisor (see the gateway's helper), behind the runtime's fence. Not here
//! yet: TLS termination for L7 rules (such endpoints are refused, fail closed)
//! and pinning the caller's binary by hash.

pub mod audit;
pub mod http1;
pub mod identify;
mod l7;
pub mod proxy;
pub mod resolve;
pub mod router;
pub mod tls;

pub use audit::{ApiEvent, AuditEvent, AuditSink, JsonLines};
pub use identify::{Caller, Fixed, Identify, ProcIdentify};
pub use proxy::{Connect, Direct, Proxy, ProxyConfig, ProxyError, ProxyHandle};
pub use resolve::{Resolve, StaticResolver, SystemResolver, WithOverrides};
pub use tls::{Interceptor, SandboxCa, TlsError};
