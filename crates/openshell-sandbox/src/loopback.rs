//! Bringing up `lo` in a sandbox's new network namespace (it starts down, so not
//! even 127.0.0.1 would work). Done from the host side between creating the
//! container and starting it: a thread joins the namespace of the container's
//! process 1 and sends one RTM_NEWLINK (IFF_UP on the loopback device, index 1 in
//! a new namespace); the kernel then gives it 127.0.0.1/8 and ::1.

use std::os::fd::AsFd;

use crate::netlink::{LOOPBACK_INDEX, Netlink, NetlinkError};

/// Why `lo` could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error("joining the network namespace of process {pid}: {source}")]
    Join {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("bringing up lo: the thread that joined the namespace of process {0} panicked")]
    Panicked(i32),
}

/// Brings up `lo` in the network namespace of process `pid`.
pub fn bring_up(pid: i32) -> Result<(), LoopbackError> {
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&ns_path).map_err(|source| LoopbackError::Join { pid, source })?;
    // setns changes the calling thread's namespace: a thread of its own does it.
    let worker = std::thread::spawn(move || -> Result<(), LoopbackError> {
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(|e| LoopbackError::Join { pid, source: e.into() })?;
        Ok(Netlink::route()?.set_up(LOOPBACK_INDEX)?)
    });
    worker.join().unwrap_or(Err(LoopbackError::Panicked(pid)))
}
