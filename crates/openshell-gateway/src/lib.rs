//! openshell's gateway: the one long-lived process that owns sandboxes and their
//! state, answers the API on an owner-only Unix socket, and drives sandboxes
//! through a driver (`openshell-driver`; the local one by default).
//!
//! - `state`: durable state behind one trait: SQLite (the default) or
//!   PostgreSQL (shared by replicas), with leases on sandboxes;
//! - `server`: the process (socket, requests, recovery at start, standby
//!   sandboxes, sized by `server::pool`); `server::leases` which replica
//!   reconciles which sandbox;
//!   `server::images` finds images by digest and takes uploads;
//!   `server::inference` keeps providers and the inference route;
//!   `server::grpc` answers the API over gRPC, `server::listen` on TCP with
//!   mutual TLS;
//! - `tls`: the gateway's CA, server and client certificates, revoked list.

pub mod server;
pub mod state;
pub mod tls;

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
