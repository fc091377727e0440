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
    /// sha256 of the executable's content (hex), when it could be read: the
    /// proxy pins it on first use.
    pub sha256: Option<String>,
}

/// Finds the caller of a connection from its addresses; `None`: unknown.
pub trait Identify: Send + Sync {
    fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Option<Caller>;

    /// Whether [`Identify::identify`] may block (reads files, scans `/proc`):
    /// the proxy then runs it on its blocking pool; one that answers from
    /// memory runs in place.
    fn blocks(&self) -> bool {
        true
    }
}

/// Every connection is the same caller (tests, and single-binary setups).
#[derive(Debug, Clone)]
pub struct Fixed(pub Option<Caller>);

impl Identify for Fixed {
    fn identify(&self, _peer: SocketAddr, _local: SocketAddr) -> Option<Caller> {
        self.0.clone()
    }

    fn blocks(&self) -> bool {
        false
    }
}

/// The kernel's answer: the connection's socket is found by its addresses in the
/// sandbox's `/proc/PID/net/tcp{,6}` (seen from the namespace the caller lives
/// in), its inode among the file descriptors of the processes of that network
/// namespace, and the owner's executable is `/proc/PID/exe`; ancestors follow the
/// parent chain while it stays in the namespace. Never argv. The caller's
/// executable can still be a script's interpreter, or have a library preloaded:
/// binary identity is a convenience, not a boundary.
#[derive(Debug)]
pub struct ProcIdentify {
    /// A process in the sandbox's network namespace (e.g. its process 1).
    pub member: u32,
    /// The `/proc` to read (tests point it elsewhere only to fail).
    pub proc_root: std::path::PathBuf,
    /// Hashes of executables by (device, inode, size, mtime): a 100 MB runtime is
    /// hashed once, not per connection.
    hashes: std::sync::Mutex<std::collections::HashMap<(u64, u64, u64, i64), String>>,
}

impl ProcIdentify {
    pub fn new(member: u32) -> ProcIdentify {
        ProcIdentify { member, proc_root: "/proc".into(), hashes: Default::default() }
    }

    /// sha256 of `/proc/PID/exe`'s content (the file the process runs, even when
    /// its path was replaced since).
    fn sha256(&self, pid: u32) -> Option<String> {
        use sha2::Digest;
        use std::os::unix::fs::MetadataExt;
        let path = self.proc_root.join(pid.to_string()).join("exe");
        let meta = std::fs::metadata(&path).ok()?;
        let key = (meta.dev(), meta.ino(), meta.size(), meta.mtime());
        if let Some(h) = self.hashes.lock().ok()?.get(&key) {
            return Some(h.clone());
        }
        let mut file = std::fs::File::open(&path).ok()?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).ok()?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.hashes.lock().ok()?.insert(key, hex.clone());
        Some(hex)
    }

    fn netns(&self, pid: &str) -> Option<std::path::PathBuf> {
        std::fs::read_link(self.proc_root.join(pid).join("ns/net")).ok()
    }

    /// The inode of the TCP socket whose local end is `peer` and remote end `local`.
    fn socket_inode(&self, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
        let want_local = hex_addr(peer);
        let want_remote = hex_addr(local);
        for table in ["tcp", "tcp6"] {
            let path = self.proc_root.join(self.member.to_string()).join("net").join(table);
            let Ok(text) = std::fs::read_to_string(path) else { continue };
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(l), Some(r), Some(inode)) = (fields.get(1), fields.get(2), fields.get(9)) else { continue };
                if want_local.iter().any(|w| w == l) && want_remote.iter().any(|w| w == r) {
                    return inode.parse().ok().filter(|i| *i != 0);
                }
            }
        }
        None
    }

    fn owner(&self, inode: u64, netns: &std::path::Path) -> Option<u32> {
        let target = std::path::PathBuf::from(format!("socket:[{inode}]"));
        for entry in std::fs::read_dir(&self.proc_root).ok()?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
            if self.netns(pid).as_deref() != Some(netns) {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
            if fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == target)) {
                return pid.parse().ok();
            }
        }
        None
    }

    fn exe(&self, pid: u32) -> Option<String> {
        std::fs::read_link(self.proc_root.join(pid.to_string()).join("exe")).ok().map(|p| p.display().to_string())
    }

    fn parent(&self, pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok().filter(|p| *p > 0)
    }
}

/// The forms `/proc/net/tcp{,6}` may spell an address in (IPv4 also appears
/// IPv4-mapped in tcp6).
fn hex_addr(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let v6 = |octets: [u8; 16]| {
        let words: String =
            octets.chunks(4).map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))).collect();
        format!("{words}:{port:04X}")
    };
    match addr {
        SocketAddr::V4(a) => {
            let o = a.ip().octets();
            vec![format!("{:08X}:{port:04X}", u32::from_ne_bytes(o)), v6(a.ip().to_ipv6_mapped().octets())]
        }
        SocketAddr::V6(a) => vec![v6(a.ip().octets())],
    }
}

impl Identify for ProcIdentify {
    fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Option<Caller> {
        let netns = self.netns(&self.member.to_string())?;
        let inode = self.socket_inode(peer, local)?;
        let pid = self.owner(inode, &netns)?;
        let binary = self.exe(pid)?;
        let sha256 = self.sha256(pid);
        let mut ancestors = Vec::new();
        let mut current = pid;
        while let Some(parent) = self.parent(current) {
            if self.netns(&parent.to_string()).as_deref() != Some(netns.as_path()) || ancestors.len() >= 64 {
                break;
            }
            match self.exe(parent) {
                Some(exe) => ancestors.push(exe),
                None => break,
            }
            current = parent;
        }
        Some(Caller { binary, ancestors, sha256 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_spelled_as_proc_net_tcp_does() {
        let a: SocketAddr = "10.213.208.1:3128".parse().expect("addr");
        assert_eq!(hex_addr(a)[0], "01D0D50A:0C38");
        assert_eq!(hex_addr(a)[1], "0000000000000000FFFF000001D0D50A:0C38");
    }
}
