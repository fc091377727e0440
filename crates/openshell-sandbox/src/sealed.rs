//! The runtime binary runs from a sealed copy of itself (CVE-2019-5736).
//!
//! While `openshell-runtime exec` starts a process in a container, one of its
//! own processes is inside the container's pid namespace before it executes the
//! workload: a process of the container could open `/proc/PID/exe` of it, keep
//! that handle, and once the runtime has moved on, open it for writing and
//! replace the host's runtime binary, which the next container start runs as
//! root on the host. runc answers with a sealed copy; so does this: before
//! anything else the binary copies itself into a memfd, seals it against every
//! change (`F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE`) and
//! re-executes from it, with the same arguments and environment. The `exe` a
//! container can see is then that memfd, which no one can write, and the host's
//! file is never reachable through it.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};

/// Every seal: nothing may write, grow, shrink or unseal the copy.
const SEALS: SealFlags = SealFlags::SEAL.union(SealFlags::SHRINK).union(SealFlags::GROW).union(SealFlags::WRITE);

/// Why the sealed copy could not be made or executed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("making a sealed copy of the runtime binary: {what}: {source}")]
    Copy {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("re-executing the runtime from its sealed copy: {0}")]
    Exec(std::io::Error),
}

fn copy_err(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> SealError {
    move |e| SealError::Copy { what, source: e.into() }
}

/// Whether the running binary is a sealed copy (a memfd with every seal).
pub fn is_sealed() -> bool {
    std::fs::File::open("/proc/self/exe")
        .ok()
        .and_then(|exe| rustix::fs::fcntl_get_seals(&exe).ok())
        .is_some_and(|seals| seals.contains(SEALS))
}

/// Returns when the running binary is a sealed copy; otherwise makes one and
/// executes it in place of this process (never returns then, unless that fails).
/// Call it first thing in `main`, before any thread exists.
pub fn reexec_sealed() -> Result<(), SealError> {
    if is_sealed() {
        return Ok(());
    }
    let copy = sealed_copy()?;
    let args: Vec<CString> = std::env::args_os().map(os_to_c).collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            os_to_c(kv)
        })
        .collect();
    let err = nix::unistd::fexecve(copy.as_raw_fd(), &args, &env).map_err(std::io::Error::from);
    Err(SealError::Exec(err.err().unwrap_or_else(|| std::io::Error::other("fexecve returned"))))
}

fn os_to_c(s: std::ffi::OsString) -> CString {
    use std::os::unix::ffi::OsStringExt;
    // Arguments and environment strings from the kernel never hold a NUL.
    CString::new(s.into_vec()).unwrap_or_default()
}

/// The running binary's content in a sealed memfd.
fn sealed_copy() -> Result<OwnedFd, SealError> {
    let exe = std::fs::File::open("/proc/self/exe")
        .map_err(|source| SealError::Copy { what: "opening /proc/self/exe", source })?;
    let len = exe.metadata().map_err(|source| SealError::Copy { what: "its size", source })?.len();
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC where the kernel knows it (vm.memfd_noexec may require it).
    let memfd = rustix::fs::memfd_create("openshell-runtime", flags | MemfdFlags::EXEC)
        .or_else(|_| rustix::fs::memfd_create("openshell-runtime", flags))
        .map_err(copy_err("memfd_create"))?;
    let mut left = len;
    while left > 0 {
        let chunk = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
        let n = rustix::fs::sendfile(memfd.as_fd(), exe.as_fd(), None, chunk).map_err(copy_err("copying"))?;
        if n == 0 {
            return Err(SealError::Copy {
                what: "copying",
                source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the binary ended early"),
            });
        }
        left -= n as u64;
    }
    rustix::fs::fcntl_add_seals(&memfd, SEALS).map_err(copy_err("sealing"))?;
    Ok(memfd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_the_binary_and_cannot_be_written() {
        let copy = sealed_copy().expect("copy");
        let seals = rustix::fs::fcntl_get_seals(&copy).expect("seals");
        assert!(seals.contains(SEALS), "{seals:?}");
        let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
        assert_eq!(std::fs::read(&path).expect("copy"), std::fs::read("/proc/self/exe").expect("exe"));
        // Reopened for writing (as an attacker holding /proc/PID/exe would): refused.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
        assert!(written.is_err(), "a sealed copy took a write");
        assert!(!is_sealed(), "the test binary itself runs from its file");
    }
}
