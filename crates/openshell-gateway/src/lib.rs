//! openshell's gateway: the one long-lived process that owns sandboxes and their
//! state, answers the API on an owner-only Unix socket, and drives sandboxes
//! through a driver (`openshell-driver`; the local one by default).
//!
//! - `db`: durable state in SQLite;
//! - `server`: the process (socket, requests, recovery at start, the standby
//!   sandbox); `server::images` finds images by digest and takes uploads;
//!   `server::inference` keeps providers and the inference route;
//!   `server::grpc` answers the API over gRPC, `server::listen` on TCP with
//!   mutual TLS;
//! - `tls`: the gateway's CA, server and client certificates, revoked list.

pub mod db;
pub mod server;
pub mod tls;

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
