//! The gateway's API, as clients and the gateway both speak it.
//!
//! - `proto`: the versioned requests and responses ([`proto::API_VERSION`]);
//! - `error`: [`ApiError`], a stable [`ErrorCode`] with a message;
//! - `wire`: SOCK_SEQPACKET messages (JSON) with descriptors attached;
//! - `client`: connecting to a local gateway (starting it on first use) and
//!   relaying a sandbox terminal;
//! - `grpc`: the API over gRPC (`proto/openshell/gateway/v1/gateway.proto`);
//! - `remote`: a remote gateway over gRPC with mutual TLS.
//!
//! The local socket is the auth boundary: its directory is 0700, the socket 0600,
//! and every connection's peer credentials must carry the gateway's own uid.

pub mod client;
pub mod error;
pub mod grpc;
pub mod proto;
pub mod remote;
pub mod wire;

pub use error::{ApiError, ErrorCode};

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
    /// The gRPC API's Unix socket (owner-only, like `socket`).
    pub fn grpc_socket(&self) -> PathBuf {
        self.0.join("gateway.grpc.sock")
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
}
