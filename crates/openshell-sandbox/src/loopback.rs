//! Bringing up `lo` in a sandbox's new network namespace (it starts down, so not
//! even 127.0.0.1 would work). Done from the host side between creating the
//! container and starting it: a thread joins the namespace of the container's
//! process 1 and sends one RTM_NEWLINK (IFF_UP on the loopback device, index 1 in
//! a new namespace) over NETLINK_ROUTE; the kernel then gives it 127.0.0.1/8 and ::1.

use std::os::fd::AsFd;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// Why `lo` could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error("joining the network namespace of process {pid}: {source}")]
    Join {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("bringing up lo: {0}")]
    Netlink(std::io::Error),
    #[error("bringing up lo: the kernel answered error {0}")]
    Refused(i32),
}

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFF_UP: u32 = 1;
const LOOPBACK_INDEX: i32 = 1;

/// The RTM_NEWLINK request: `nlmsghdr` then `ifinfomsg`, native byte order.
fn request() -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0..4].copy_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    // nlmsg_pid 0; ifi_family AF_UNSPEC, pad, ifi_type 0
    m[20..24].copy_from_slice(&LOOPBACK_INDEX.to_ne_bytes());
    m[24..28].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    m[28..32].copy_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    m
}

/// Brings up `lo` in the network namespace of process `pid`.
pub fn bring_up(pid: i32) -> Result<(), LoopbackError> {
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&ns_path).map_err(|source| LoopbackError::Join { pid, source })?;
    // setns changes the calling thread's namespace: a thread of its own does it.
    let worker = std::thread::spawn(move || -> Result<(), LoopbackError> {
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(|e| LoopbackError::Join { pid, source: e.into() })?;
        let socket = rustix::net::socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, None)
            .map_err(|e| LoopbackError::Netlink(e.into()))?;
        let kernel = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
        rustix::net::sendto(&socket, &request(), SendFlags::empty(), &kernel)
            .map_err(|e| LoopbackError::Netlink(e.into()))?;
        let mut answer = [0u8; 512];
        let (n, _) = rustix::net::recv(&socket, &mut answer, RecvFlags::empty())
            .map_err(|e| LoopbackError::Netlink(e.into()))?;
        // nlmsghdr (16 bytes), then for NLMSG_ERROR an i32 error (0: acknowledged).
        if n >= 20 && u16::from_ne_bytes([answer[4], answer[5]]) == NLMSG_ERROR {
            let error = i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]);
            if error != 0 {
                return Err(LoopbackError::Refused(-error));
            }
        }
        Ok(())
    });
    worker.join().unwrap_or_else(|_| Err(LoopbackError::Netlink(std::io::Error::other("the worker thread panicked"))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_request_is_one_rtm_newlink_for_index_1() {
        let m = super::request();
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 32);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 16);
        assert_eq!(i32::from_ne_bytes([m[20], m[21], m[22], m[23]]), 1);
    }
}
