//! openshell's local gateway: the one long-lived process that owns sandboxes.
//!
//! - `wire`: SOCK_SEQPACKET messages (JSON) with descriptors attached;
//! - `proto`: requests and responses;
//! - `db`: durable state in SQLite;
//! - `driver`: the boundary between the gateway and where sandboxes run, and the
//!   local driver (libcontainer, one supervisor process per running sandbox);
//! - `helper`: the supervisor and exec helper processes' side;
//! - `server`: the gateway process (owner-only Unix socket, recovery at start);
//! - `client`: connecting (and starting the gateway on first use).
//!
//! The socket is the auth boundary: its directory is 0700, the socket 0600, and
//! every connection's peer credentials must carry the gateway's own uid.

pub mod client;
pub mod db;
pub mod driver;
pub mod helper;
pub mod proto;
pub mod server;
pub mod wire;

pub use openshell_proxy::router::Secret;

use std::path::{Path, PathBuf};

/// The files of a gateway directory.
#[derive(Debug, Clone)]
pub struct GatewayDir(pub PathBuf);

impl GatewayDir {
    /// `$OPENSHELL_GATEWAY_DIR`, else `$XDG_STATE_HOME/openshell/gateway`, else
    /// `~/.local/state/openshell/gateway`.
    pub fn from_env() -> Option<GatewayDir> {
        if let Some(dir) = std::env::var_os("OPENSHELL_GATEWAY_DIR").filter(|d| !d.is_empty()) {
            return Some(GatewayDir(PathBuf::from(dir)));
        }
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
            return Some(GatewayDir(Path::new(&state).join("openshell/gateway")));
        }
        let home = std::env::var_os("HOME").filter(|d| !d.is_empty())?;
        Some(GatewayDir(Path::new(&home).join(".local/state/openshell/gateway")))
    }
    pub fn socket(&self) -> PathBuf {
        self.0.join("gateway.sock")
    }
    pub fn lock(&self) -> PathBuf {
        self.0.join("gateway.lock")
    }
    pub fn db(&self) -> PathBuf {
        self.0.join("state.db")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("gateway.log")
    }
    pub fn sandboxes(&self) -> PathBuf {
        self.0.join("sandboxes")
    }
    pub fn layers(&self) -> PathBuf {
        self.0.join("layers")
    }
    pub fn containers(&self) -> PathBuf {
        self.0.join("containers")
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
