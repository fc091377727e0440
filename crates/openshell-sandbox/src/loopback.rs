//! Bringing up `lo` in a sandbox's new network namespace (it starts down, so not
//! even 127.0.0.1 would work). Done from the host side between creating the
//! container and starting it: a thread joins the namespace of the container's
//! process 1 and sends one RTM_NEWLINK (IFF_UP on the loopback device, index 1 in
//! a new namespace); the kernel then gives it 127.0.0.1/8 and ::1.

use crate::netlink::{LOOPBACK_INDEX, NamespaceError, Netlink, NetlinkError, in_namespace};

/// Why `lo` could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// Brings up `lo` in the network namespace of process `pid`.
pub fn bring_up(pid: i32) -> Result<(), LoopbackError> {
    in_namespace(&format!("/proc/{pid}/ns/net"), || Ok(Netlink::route()?.set_up(LOOPBACK_INDEX)?))
}
