//! The network fence of a sandbox with network policies: a veth pair from the host into the sandbox's network namespace, with an
//! nftables table inside the namespace under which the only reachable destinations
//! are the proxy's address and port, and the DNS responder beside it: every UDP
//! or TCP query to port 53, whatever server it names, goes to the responder on the same
//! address. Every other outbound TCP connection (IPv4) goes to the proxy's raw
//! TCP listener on the sandbox's own address ([`RAW_TCP_PORT`]), which relays
//! what a `protocol: tcp` endpoint allows and resets the rest. Everything else
//! fails fast, IPv4 and IPv6
//! alike: TCP to another port of the proxy's address is answered with a reset
//! (connection refused); a datagram is
//! redirected to a closed port of the sandbox's own address, so the kernel
//! answers port-unreachable and a connected socket gets connection refused;
//! IPv6 has no route (network unreachable).
//!
//! It is set up in-process through netlink ([`crate::netlink`], [`crate::nft`]):
//! the pair is made with its peer already in the sandbox's namespace, and a thread
//! that joined that namespace loads the table (one batch) and configures its side.
//! The pair goes with the namespace, so when the sandbox's last process ends the
//! host holds nothing of it, whatever killed it.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use crate::netlink::{LOOPBACK_INDEX, NamespaceError, Netlink, NetlinkError, in_namespace, link_index};
use crate::nft::{Chain, ChainHook, ChainKind, Match, Rule, Statement, Table};

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
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("listening on {addr} in the sandbox's network namespace: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("interface name `{0}` is longer than 15 bytes")]
    Name(String),
}

/// The sandbox's side of the pair.
const SANDBOX_IF: &str = "eth0";
/// Each side's prefix length: the pair is a /30.
const PREFIX: u8 = 30;
/// Where the sandbox's DNS responder listens, on the proxy's address.
pub const DNS_PORT: u16 = 53;
/// Where raw TCP goes, on the sandbox's own address: the proxy's listener for
/// `protocol: tcp` endpoints, made inside the sandbox's namespace (where the
/// redirect happened, so that SO_ORIGINAL_DST finds it). A privileged port,
/// bound before the sandbox's processes run: none of them can take it.
pub const RAW_TCP_PORT: u16 = 1023;

/// The nftables table inside the sandbox's namespace. As `nft` would list it:
///
/// ```text
/// table inet openshell_fence {
///   chain divert { type nat hook output priority -100; policy accept;
///     meta nfproto ipv4 udp dport 53 oif != "lo" dnat ip to PROXY:53
///     meta nfproto ipv4 tcp dport 53 oif != "lo" dnat ip to PROXY:53
///     meta nfproto ipv4 meta l4proto udp oif != "lo" dnat ip to SANDBOX:9
///     ip daddr PROXY accept
///     meta nfproto ipv4 meta l4proto tcp oif != "lo" dnat ip to SANDBOX:1023 }
///   chain output { type filter hook output priority 0; policy drop;
///     oif "lo" accept
///     ip daddr SANDBOX accept
///     ip daddr PROXY tcp dport PORT accept
///     ip daddr PROXY udp dport 53 accept
///     ip daddr PROXY tcp dport 53 accept
///     meta l4proto tcp reject with tcp reset
///     reject with icmpx type port-unreachable }
///   chain input { type filter hook input priority 0; policy drop;
///     iif "lo" accept
///     ct state established,related accept
///     meta l4proto tcp reject with tcp reset
///     reject with icmpx type port-unreachable }
/// }
/// ```
pub fn ruleset(fence: &Fence) -> Table {
    let rule = |matches: Vec<Match>, statement| Rule { matches, statement };
    let refuse_the_rest =
        || vec![rule(vec![Match::Tcp], Statement::RejectWithTcpReset), rule(vec![], Statement::RejectPortUnreachable)];
    let [dns, dns_tcp] = dns_divert(fence.host_addr);
    let udp_refuse = rule(
        vec![Match::Ipv4, Match::Udp, Match::OutputIsLoopback(false)],
        Statement::DestinationNat(fence.sandbox_addr, 9),
    );
    // TCP to the proxy's address stays as it is (its port is open, the rest refused).
    let to_proxy = rule(vec![Match::Ipv4Destination(fence.host_addr)], Statement::Accept);
    let raw_tcp = rule(
        vec![Match::Ipv4, Match::Tcp, Match::OutputIsLoopback(false)],
        Statement::DestinationNat(fence.sandbox_addr, RAW_TCP_PORT),
    );
    let mut output = vec![
        rule(vec![Match::OutputIsLoopback(true)], Statement::Accept),
        rule(vec![Match::Ipv4Destination(fence.sandbox_addr)], Statement::Accept),
        rule(
            vec![Match::Ipv4Destination(fence.host_addr), Match::TcpDestinationPort(fence.proxy_port)],
            Statement::Accept,
        ),
    ];
    output.extend(dns_accept(fence.host_addr));
    output.extend(refuse_the_rest());
    let mut input = vec![
        rule(vec![Match::InputIsLoopback], Statement::Accept),
        rule(vec![Match::EstablishedOrRelated], Statement::Accept),
    ];
    input.extend(refuse_the_rest());
    Table {
        name: "openshell_fence",
        chains: vec![
            Chain {
                name: "divert",
                kind: ChainKind::Nat,
                hook: ChainHook::Output,
                priority: -100,
                accept_by_default: true,
                rules: vec![dns, dns_tcp, udp_refuse, to_proxy, raw_tcp],
            },
            filter("output", ChainHook::Output, output),
            filter("input", ChainHook::Input, input),
        ],
    }
}

/// The NAT rules that send every query to port 53 (UDP, then TCP), whatever
/// server it names, to the responder at `responder`.
fn dns_divert(responder: Ipv4Addr) -> [Rule; 2] {
    [Match::UdpDestinationPort(DNS_PORT), Match::TcpDestinationPort(DNS_PORT)].map(|port| Rule {
        matches: vec![Match::Ipv4, port, Match::OutputIsLoopback(false)],
        statement: Statement::DestinationNat(responder, DNS_PORT),
    })
}

/// The filter rules that let queries reach the responder at `responder`.
fn dns_accept(responder: Ipv4Addr) -> [Rule; 2] {
    [Match::UdpDestinationPort(DNS_PORT), Match::TcpDestinationPort(DNS_PORT)]
        .map(|port| Rule { matches: vec![Match::Ipv4Destination(responder), port], statement: Statement::Accept })
}

/// A filter chain at priority 0 that drops what its rules leave.
fn filter(name: &'static str, hook: ChainHook, rules: Vec<Rule>) -> Chain {
    Chain { name, kind: ChainKind::Filter, hook, priority: 0, accept_by_default: false, rules }
}

/// Sets up `fence` for the network namespace at `netns` (`/proc/PID/ns/net` or
/// `/run/netns/NAME`). On failure nothing of it is left on the host.
pub fn install(fence: &Fence, netns: &str) -> Result<(), FenceError> {
    if fence.host_if.len() > 15 {
        return Err(FenceError::Name(fence.host_if.clone()));
    }
    let ns = std::fs::File::open(netns).map_err(|source| NamespaceError::Join { path: netns.to_owned(), source })?;
    let mut route = Netlink::route()?;
    route.add_veth(&fence.host_if, SANDBOX_IF, ns.as_fd())?;
    let configured = (|| {
        let index = link_index(&fence.host_if)?;
        route.add_address(index, fence.host_addr, PREFIX)?;
        route.set_up(index)?;
        let fence = fence.clone();
        in_namespace(netns, move || {
            crate::nft::apply(&ruleset(&fence))?;
            let mut route = Netlink::route()?;
            let index = link_index(SANDBOX_IF)?;
            route.add_address(index, fence.sandbox_addr, PREFIX)?;
            route.set_up(index)?;
            route.set_up(LOOPBACK_INDEX)?;
            Ok(route.add_default_route(fence.host_addr)?)
        })
    })();
    if configured.is_err() {
        let _ = route.delete_link(&fence.host_if);
    }
    configured
}

/// The nftables table of a Kubernetes pod's network namespace under
/// openshell-runtime: nothing leaves it but loopback and replies to connections
/// that came in (Services, probes). The pod's way out is its egress proxy, which
/// listens on the pod's loopback and dials from the node's namespace. Every UDP
/// or TCP query to port 53 (the cluster's DNS or any other server) goes to the proxy's
/// DNS responder on the pod's loopback, and every other outbound TCP connection
/// (IPv4) to the proxy's raw TCP listener there ([`RAW_TCP_PORT`]), which relays
/// what a `protocol: tcp` endpoint allows and resets the rest. Anything else
/// fails fast (TCP reset, port-unreachable otherwise).
///
/// ```text
/// table inet openshell_pod_fence {
///   chain divert { type nat hook output priority -100; policy accept;
///     meta nfproto ipv4 udp dport 53 oif != "lo" dnat ip to 127.0.0.1:53
///     meta nfproto ipv4 tcp dport 53 oif != "lo" dnat ip to 127.0.0.1:53
///     meta nfproto ipv4 meta l4proto tcp oif != "lo" dnat ip to 127.0.0.1:1023 }
///   chain output { type filter hook output priority 0; policy drop;
///     oif "lo" accept
///     ip daddr 127.0.0.1 udp dport 53 accept
///     ip daddr 127.0.0.1 tcp dport 53 accept
///     ip daddr 127.0.0.1 tcp dport 1023 accept
///     ct state established,related accept
///     meta l4proto tcp reject with tcp reset
///     reject with icmpx type port-unreachable }
/// }
/// ```
///
/// (A packet sent to 127.0.0.1 by the `divert` chain keeps its first output
/// interface in the filter chain, whose `oif` is fixed for the hook: hence their
/// own rules.)
pub fn pod_ruleset() -> Table {
    let rule = |matches: Vec<Match>, statement| Rule { matches, statement };
    let mut output = vec![rule(vec![Match::OutputIsLoopback(true)], Statement::Accept)];
    output.extend(dns_accept(Ipv4Addr::LOCALHOST));
    output.extend([
        rule(
            vec![Match::Ipv4Destination(Ipv4Addr::LOCALHOST), Match::TcpDestinationPort(RAW_TCP_PORT)],
            Statement::Accept,
        ),
        rule(vec![Match::EstablishedOrRelated], Statement::Accept),
        rule(vec![Match::Tcp], Statement::RejectWithTcpReset),
        rule(vec![], Statement::RejectPortUnreachable),
    ]);
    let [dns, dns_tcp] = dns_divert(Ipv4Addr::LOCALHOST);
    let raw_tcp = rule(
        vec![Match::Ipv4, Match::Tcp, Match::OutputIsLoopback(false)],
        Statement::DestinationNat(Ipv4Addr::LOCALHOST, RAW_TCP_PORT),
    );
    let divert = Chain {
        name: "divert",
        kind: ChainKind::Nat,
        hook: ChainHook::Output,
        priority: -100,
        accept_by_default: true,
        rules: vec![dns, dns_tcp, raw_tcp],
    };
    Table { name: "openshell_pod_fence", chains: vec![divert, filter("output", ChainHook::Output, output)] }
}

/// Installs [`pod_ruleset`] in the pod's network namespace at `netns`, and brings
/// its loopback up.
pub fn install_pod(netns: &str) -> Result<(), FenceError> {
    in_namespace(netns, || {
        crate::nft::apply(&pod_ruleset())?;
        Ok(Netlink::route()?.set_up(LOOPBACK_INDEX)?)
    })
}

/// A listener on `addr` inside the network namespace at `netns`.
pub fn listen_in(netns: &str, addr: std::net::SocketAddr) -> Result<std::net::TcpListener, FenceError> {
    in_namespace(netns, move || std::net::TcpListener::bind(addr).map_err(|source| FenceError::Listen { addr, source }))
}

/// A UDP socket on `addr` inside the network namespace at `netns`.
pub fn udp_in(netns: &str, addr: std::net::SocketAddr) -> Result<std::net::UdpSocket, FenceError> {
    in_namespace(netns, move || std::net::UdpSocket::bind(addr).map_err(|source| FenceError::Listen { addr, source }))
}

/// Removes the veth pair (the namespace's end and its rules go with the namespace).
pub fn remove(host_if: &str) -> Result<(), FenceError> {
    Ok(Netlink::route()?.delete_link(host_if)?)
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
