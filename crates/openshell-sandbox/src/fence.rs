//! The network fence of a sandbox with network policies: a veth pair from the host into the sandbox's network namespace, with an
//! nftables table inside the namespace under which the only reachable destination
//! is the proxy's address and port. Everything else fails fast, IPv4 and IPv6
//! alike: TCP is answered with a reset (connection refused); a datagram is
//! redirected to a closed port of the sandbox's own address, so the kernel
//! answers port-unreachable and a connected socket gets connection refused;
//! IPv6 has no route (network unreachable).
//!
//! It is set up with `ip` (iproute2) and `nft` (nftables): from a thread that has
//! joined the sandbox's network namespace, so the commands it starts run there.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

/// One sandbox's fence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    /// The host side of the veth pair (at most 15 bytes).
    pub host_if: String,
    /// The host side's address (where the proxy listens) in a /30.
    pub host_addr: Ipv4Addr,
    /// The sandbox side's address in the same /30 (its interface is `eth0`).
    pub sandbox_addr: Ipv4Addr,
    /// The proxy's port on `host_addr`.
    pub proxy_port: u16,
}

/// Why the fence could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("{path}: {source}")]
    Namespace {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` is not installed (Debian package {package})")]
    Missing { command: &'static str, package: &'static str },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("interface name `{0}` is longer than 15 bytes")]
    Name(String),
}

/// The nftables ruleset inside the sandbox's namespace.
pub fn ruleset(fence: &Fence) -> String {
    format!(
        "table inet openshell_fence {{
  chain udp_refuse {{
    type nat hook output priority -100; policy accept;
    meta nfproto ipv4 meta l4proto udp oif != \"lo\" dnat ip to {sandbox}:9
  }}
  chain output {{
    type filter hook output priority 0; policy drop;
    oif \"lo\" accept
    ip daddr {sandbox} accept
    ip daddr {proxy} tcp dport {port} accept
    meta l4proto tcp reject with tcp reset
    reject with icmpx type port-unreachable
  }}
  chain input {{
    type filter hook input priority 0; policy drop;
    iif \"lo\" accept
    ct state established,related accept
    meta l4proto tcp reject with tcp reset
    reject with icmpx type port-unreachable
  }}
}}
",
        proxy = fence.host_addr,
        port = fence.proxy_port,
        sandbox = fence.sandbox_addr
    )
}

fn run(mut cmd: Command, input: Option<&str>, name: &'static str, package: &'static str) -> Result<(), FenceError> {
    let line = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FenceError::Missing { command: name, package },
            _ => FenceError::Command { command: line.clone(), stderr: e.to_string() },
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| FenceError::Command { command: line.clone(), stderr: e.to_string() })?;
    }
    let out =
        child.wait_with_output().map_err(|e| FenceError::Command { command: line.clone(), stderr: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FenceError::Command { command: line, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

fn ip_batch(commands: &str) -> Result<(), FenceError> {
    let mut cmd = Command::new("ip");
    cmd.args(["-batch", "-"]);
    run(cmd, Some(commands), "ip", "iproute2")
}

/// Sets up `fence` for the network namespace at `netns` (`/proc/PID/ns/net` or
/// `/run/netns/NAME`).
pub fn install(fence: &Fence, netns: &str) -> Result<(), FenceError> {
    if fence.host_if.len() > 15 {
        return Err(FenceError::Name(fence.host_if.clone()));
    }
    std::fs::File::open(netns).map_err(|source| FenceError::Namespace { path: netns.to_owned(), source })?;
    // The peer is made in the host namespace and moved into the sandbox's.
    let peer = format!("{}p", &fence.host_if[..fence.host_if.len().min(14)]);
    ip_batch(&format!(
        "link add {host} type veth peer name {peer}\nlink set {peer} netns {netns}\naddr add {haddr}/30 dev {host}\nlink set {host} up\n",
        host = fence.host_if,
        haddr = fence.host_addr,
    ))?;
    let fence = fence.clone();
    in_namespace(netns, move || {
        let mut nft = Command::new("nft");
        nft.args(["-f", "-"]);
        run(nft, Some(&ruleset(&fence)), "nft", "nftables")?;
        ip_batch(&format!(
            "link set {peer} name eth0\naddr add {saddr}/30 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via {haddr}\n",
            saddr = fence.sandbox_addr,
            haddr = fence.host_addr,
        ))
    })
}

/// The nftables ruleset of a Kubernetes pod's network namespace under
/// openshell-runtime: nothing leaves it but loopback and replies to connections
/// that came in (Services, probes). Every new outbound connection fails fast (TCP
/// reset, port-unreachable otherwise); the pod's way out is its egress proxy,
/// which listens on the pod's loopback and dials from the node's namespace.
pub fn pod_ruleset() -> &'static str {
    "table inet openshell_pod_fence {
  chain output {
    type filter hook output priority 0; policy drop;
    oif \"lo\" accept
    ct state established,related accept
    meta l4proto tcp reject with tcp reset
    reject with icmpx type port-unreachable
  }
}
"
}

/// Runs `f` on a thread that joined the network namespace at `netns`: what it
/// creates (sockets, the commands it starts) lives there.
fn in_namespace<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> Result<T, FenceError> + Send + 'static,
) -> Result<T, FenceError> {
    let ns = std::fs::File::open(netns).map_err(|source| FenceError::Namespace { path: netns.to_owned(), source })?;
    let path = netns.to_owned();
    let inside = std::thread::spawn(move || -> Result<T, FenceError> {
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(|e| FenceError::Namespace { path, source: e.into() })?;
        f()
    });
    inside
        .join()
        .unwrap_or_else(|_| Err(FenceError::Command { command: "fence".into(), stderr: "the thread panicked".into() }))
}

/// Installs [`pod_ruleset`] in the pod's network namespace at `netns`, and brings
/// its loopback up.
pub fn install_pod(netns: &str) -> Result<(), FenceError> {
    in_namespace(netns, || {
        let mut nft = Command::new("nft");
        nft.args(["-f", "-"]);
        run(nft, Some(pod_ruleset()), "nft", "nftables")?;
        ip_batch("link set lo up\n")
    })
}

/// A listener on `addr` inside the network namespace at `netns`.
pub fn listen_in(netns: &str, addr: std::net::SocketAddr) -> Result<std::net::TcpListener, FenceError> {
    in_namespace(netns, move || {
        std::net::TcpListener::bind(addr)
            .map_err(|e| FenceError::Command { command: format!("listen on {addr}"), stderr: e.to_string() })
    })
}

/// Removes the veth pair (the namespace's end and its rules go with the namespace).
pub fn remove(host_if: &str) -> Result<(), FenceError> {
    ip_batch(&format!("link del {host_if}\n"))
}

impl Fence {
    /// The fence of the `index`th sandbox: 10.213.0.0/16 cut into /30s.
    pub fn numbered(index: u32, host_if: String, proxy_port: u16) -> Option<Fence> {
        if index >= 1 << 14 {
            return None;
        }
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + index * 4;
        Some(Fence { host_if, host_addr: Ipv4Addr::from(base + 1), sandbox_addr: Ipv4Addr::from(base + 2), proxy_port })
    }

    /// The proxy's URL for the sandbox's environment.
    pub fn proxy_url(&self) -> String {
        format!("http://{}:{}", self.host_addr, self.proxy_port)
    }
}
