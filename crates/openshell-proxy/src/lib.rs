//! openshell's egress proxy and privacy router: CONNECT and absolute-form HTTP
//! through one pipeline, decided by the policy engine, with the SSRF rules,
//! L7 inspection, inference routing, audit events and atomic hot reload.
//!
//! - `proxy`: the listener, the limits, and the first request of each
//!   connection (read the request head, identify the caller, decide, resolve,
//!   decide again, connect to the checked address; then `relay`, `l7`,
//!   `router` or `forward`), on a small tokio runtime;
//! - `forward`: plain HTTP, each request of a connection checked and decided;
//! - `l7`: inspected tunnels (TLS terminated, or plain HTTP; each request decided);
//! - `exchange`: one decided request forwarded and its response relayed;
//! - `websocket`: upgrades recognised, frames relayed and client text
//!   messages decided (`protocol: websocket`);
//! - `rpc`: JSON-RPC bodies read, parsed and decided call by call
//!   (`protocol: mcp`, `protocol: json-rpc`);
//! - `relay`: plain tunnels, copied in large reads (a bounded pool of large
//!   buffers for bulk data; none held while waiting);
//! - `raw_tcp`: raw TCP the sandbox's fence redirected, for `protocol: tcp`
//!   endpoints (the original destination mapped back to pinned names);
//! - `aio`: heads and bodies read on tokio, every wait bounded;
//! - `router`: the privacy router (`inference.local`, routed endpoints);
//! - `tls`: the sandbox CA, its leaves, the upstream roots;
//! - `http1`: message heads and body framing, without I/O (checked line by line);
//! - `identify`: who is calling ([`Identify`]; the kernel's view in a sandbox,
//!   with the binary's sha256 pinned at first use);
//! - `resolve`: name resolution in the proxy ([`Resolve`]: the system's, or a
//!   fixed table);
//! - `json`: JSON as it streams (the router's model rewrite, token counts in
//!   bodies and server-sent events), in bounded memory;
//! - `dns`: the sandbox's DNS responder (A/AAAA for names the policy names,
//!   with the addresses the proxy pins and dials; NXDOMAIN otherwise);
//! - `audit`: OCSF JSON lines (network activity 4001, HTTP activity 4002, DNS
//!   activity 4003, API activity 6003).
//!
//! A sandbox whose policy has network policies runs one of these in its
//! supervisor (see the gateway's helper), behind the runtime's fence.

mod aio;
pub mod audit;
pub mod dns;
mod exchange;
mod forward;
pub mod http1;
pub mod identify;
pub mod json;
mod l7;
pub mod proxy;
mod raw_tcp;
mod relay;
pub mod resolve;
pub mod router;
mod rpc;
pub mod tls;
mod websocket;

pub use audit::{ApiEvent, AuditEvent, AuditSink, JsonLines, WebSocketTraffic};
pub use identify::{Caller, Fixed, Identify, ProcIdentify};
pub use proxy::{Connect, Dialing, Direct, Fenced, Limits, Proxy, ProxyConfig, ProxyError, ProxyHandle};
pub use resolve::{OverrideError, Resolve, StaticResolver, SystemResolver, WithOverrides};
pub use tls::{Interceptor, SandboxCa, TlsError};
