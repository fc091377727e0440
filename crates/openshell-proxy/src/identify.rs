//! Who is calling: the executable of the process on the other end of a
//! connection, and its ancestors. Inside a sandbox this comes from the kernel
//! (socket inode → owning process → `/proc/PID/exe`), never from argv; that
//! implementation plugs in through [`Identify`]. An unidentified caller is denied.

use std::net::SocketAddr;

/// The calling process, as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `/proc/PID/exe` of the process that owns the connection.
    pub binary: String,
    /// The same for its ancestors, nearest first.
    pub ancestors: Vec<String>,
}

/// Finds the caller of a connection from its addresses; `None`: unknown.
pub trait Identify: Send + Sync {
    fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Option<Caller>;
}

/// Every connection is the same caller (tests, and single-binary setups).
#[derive(Debug, Clone)]
pub struct Fixed(pub Option<Caller>);

impl Identify for Fixed {
    fn identify(&self, _peer: SocketAddr, _local: SocketAddr) -> Option<Caller> {
        self.0.clone()
    }
}
