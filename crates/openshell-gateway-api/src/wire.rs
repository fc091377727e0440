//! Messages between the CLI, the gateway and its helper processes: one JSON
//! document per SOCK_SEQPACKET message (boundaries kept by the kernel), with file
//! descriptors attached as SCM_RIGHTS when a message carries them (a client's
//! stdio, a terminal's master end).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest message (a request, a response, a chunk of output).
pub const MAX_MESSAGE: usize = 128 * 1024;
/// The most descriptors one message carries (a supervising job: the layers'
/// user namespace, the disk's loop device and three stdio).
pub const MAX_FDS: usize = 5;

/// Why a message could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("message of {0} bytes is larger than {MAX_MESSAGE}")]
    TooLarge(usize),
    #[error("the other side closed the connection")]
    Closed,
    /// The message or its descriptors did not fit (the kernel dropped the
    /// rest): refused whole, never read with descriptors missing.
    #[error("message truncated: more than {MAX_MESSAGE} bytes or {MAX_FDS} descriptors")]
    Truncated,
}

/// Sends `value` with `fds` attached.
pub fn send<T: Serialize>(socket: impl AsFd, value: &T, fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<(), WireError> {
    let bytes = serde_json::to_vec(value)?;
    send_bytes(socket, &bytes, fds)
}

/// Sends raw bytes (one message) with `fds` attached.
pub fn send_bytes(socket: impl AsFd, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<(), WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    // The buffer is rounded up and would take one more than the receiver does.
    if fds.len() > MAX_FDS || (!fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(WireError::TooLarge(fds.len()));
    }
    loop {
        match rustix::net::sendmsg(&socket, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::PIPE) => return Err(WireError::Closed),
            Err(e) => return Err(WireError::Io(e.into())),
        }
    }
}

/// One message: its bytes and the descriptors it carried.
pub type Message = (Vec<u8>, Vec<OwnedFd>);

/// Receives one message as raw bytes and its descriptors; `None` at end of stream.
pub fn recv_bytes(socket: impl AsFd) -> Result<Option<Message>, WireError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = loop {
        match rustix::net::recvmsg(&socket, &mut [IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(r) => break r,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::CONNRESET) => return Ok(None),
            Err(e) => return Err(WireError::Io(e.into())),
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    // The control buffer is rounded up and may hold one more than `MAX_FDS`.
    let truncated = received.flags.intersects(rustix::net::ReturnFlags::CTRUNC | rustix::net::ReturnFlags::TRUNC);
    if truncated || fds.len() > MAX_FDS {
        return Err(WireError::Truncated);
    }
    if received.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    buf.truncate(received.bytes);
    Ok(Some((buf, fds)))
}

/// Receives one JSON message and its descriptors; `None` at end of stream.
pub fn recv<T: DeserializeOwned>(socket: impl AsFd) -> Result<Option<(T, Vec<OwnedFd>)>, WireError> {
    match recv_bytes(socket)? {
        None => Ok(None),
        Some((bytes, fds)) => Ok(Some((serde_json::from_slice(&bytes)?, fds))),
    }
}

/// A message socket connected to the listener at `path`.
pub fn connect(path: &std::path::Path) -> Result<OwnedFd, rustix::io::Errno> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(fd)
}

/// A message socket listening at `path` (a stale socket there is replaced),
/// owner-only (0600).
pub fn listen(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    rustix::net::listen(&fd, 128)?;
    Ok(fd)
}

/// A connected pair of message sockets (close-on-exec).
pub fn pair() -> Result<(OwnedFd, OwnedFd), WireError> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .map_err(|e| WireError::Io(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_boundaries_and_carry_descriptors() {
        let (a, b) = pair().expect("pair");
        let file = tempfile::tempfile().expect("tempfile");
        send(&a, &serde_json::json!({"n": 1}), &[file.as_fd()]).expect("send");
        send(&a, &serde_json::json!({"n": 2}), &[]).expect("send");
        let (first, fds): (serde_json::Value, _) = recv(&b).expect("recv").expect("message");
        assert_eq!((first["n"].as_i64(), fds.len()), (Some(1), 1));
        let (second, fds): (serde_json::Value, _) = recv(&b).expect("recv").expect("message");
        assert_eq!((second["n"].as_i64(), fds.len()), (Some(2), 0));
        drop(a);
        assert!(recv::<serde_json::Value>(&b).expect("recv").is_none());
    }

    /// A message with more descriptors than fit is refused, not read with some
    /// dropped (the receiver reads them by position). Positive control: the
    /// most that fit arrive, in order.
    #[test]
    fn a_message_with_descriptors_that_do_not_fit_is_refused() {
        let (a, b) = pair().expect("pair");
        let files: Vec<_> = (0..MAX_FDS).map(|_| tempfile::tempfile().expect("tempfile")).collect();
        let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
        send(&a, &serde_json::json!({}), &fds).expect("send");
        let (_, got): (serde_json::Value, _) = recv(&b).expect("recv").expect("message");
        let inode = |fd: std::os::fd::BorrowedFd<'_>| rustix::fs::fstat(fd).expect("fstat").st_ino;
        let sent: Vec<_> = fds.iter().map(|f| inode(*f)).collect();
        assert_eq!(got.iter().map(|f| inode(f.as_fd())).collect::<Vec<_>>(), sent);

        let more: Vec<_> = (0..MAX_FDS + 1).map(|_| tempfile::tempfile().expect("tempfile")).collect();
        let more: Vec<_> = more.iter().map(|f| f.as_fd()).collect();
        assert!(matches!(send(&a, &serde_json::json!({}), &more), Err(WireError::TooLarge(_))), "send refuses more");

        // More than `send` allows, sent as a raw peer could: one more (within
        // the receiver's rounded-up buffer), and three more (past it: the
        // kernel drops the rest).
        for extra in [1, 3] {
            let files: Vec<_> = (0..MAX_FDS + extra).map(|_| tempfile::tempfile().expect("tempfile")).collect();
            let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS + 3))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
            rustix::net::sendmsg(&a, &[IoSlice::new(b"{}")], &mut control, SendFlags::empty()).expect("sendmsg");
            let got = recv::<serde_json::Value>(&b);
            assert!(matches!(got, Err(WireError::Truncated)), "{} descriptors: {got:?}", MAX_FDS + extra);
        }
    }
}
