//! The network fence in a network namespace this test creates: only the proxy's
//! address and port are reachable, everything else fails fast. Positive control:
//! with the fence's table removed, the same connection to a second host-side
//! server succeeds. The tables the fence sends over netlink are compared with the
//! same tables loaded by `nft -f` from their text (the oracle), and a fence whose
//! namespace's process is killed leaves nothing on the host. Needs root, `ip`
//! (iproute2) and `nft` (nftables), the test's tools only; CI has them.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use openshell_sandbox::fence::{Fence, RAW_TCP_PORT, install, listen_in, pod_ruleset, remove, ruleset};

struct Netns {
    name: String,
    host_if: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = remove(&self.host_if);
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Root (the tests make network namespaces), `ip` and `nft` (the tests' tools).
fn require_root_ip_and_nft() {
    require_root();
    require("ip", "iproute2");
    require("nft", "nftables");
}

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the fence test creates network namespaces: run it as root (CI does)"
    );
}

fn require(tool: &str, package: &str) {
    let found = Command::new(tool).arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(found, "`{tool}` is missing: install Debian's {package}");
}

/// Runs `f` on a thread inside the namespace.
fn inside<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = std::fs::File::open(netns).expect("open the namespace");
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        f()
    })
    .join()
    .expect("the thread inside the namespace")
}

fn serve(addr: SocketAddr, greeting: &'static [u8]) {
    let listener = TcpListener::bind(addr).expect("bind on the host side");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(greeting);
        }
    });
}

fn fast(started: Instant) -> bool {
    started.elapsed() < Duration::from_secs(1)
}

#[test]
fn only_the_proxy_is_reachable_and_the_rest_fails_fast() {
    require_root_ip_and_nft();
    let pid = std::process::id();
    let ns = Netns { name: format!("osh-fence-{pid}"), host_if: format!("oshf{}", pid % 100_000) };
    let status = Command::new("ip").args(["netns", "add", &ns.name]).status().expect("ip netns add");
    assert!(status.success());
    let netns = format!("/run/netns/{}", ns.name);
    let third = (pid % 200 + 20) as u8;
    let fence = Fence {
        host_if: ns.host_if.clone(),
        host_addr: Ipv4Addr::new(10, 213, third, 1),
        sandbox_addr: Ipv4Addr::new(10, 213, third, 2),
        proxy_port: 3128,
    };
    install(&fence, &netns).unwrap_or_else(|e| panic!("{e}"));
    let proxy = SocketAddr::new(fence.host_addr.into(), 3128);
    let other = SocketAddr::new(fence.host_addr.into(), 8080);
    serve(proxy, b"proxy");
    serve(other, b"other");
    // The DNS responder's place: every query to port 53 comes here, over TCP too.
    serve(SocketAddr::new(fence.host_addr.into(), 53), b"dns over tcp");
    let dns = UdpSocket::bind(SocketAddr::new(fence.host_addr.into(), 53)).expect("bind port 53 on the host side");
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = dns.recv_from(&mut buf) {
            let _ = dns.send_to(b"dns", from);
        }
    });

    let results = inside(&netns, move || {
        let mut out = Vec::new();
        // The proxy answers.
        let mut s = TcpStream::connect_timeout(&proxy, Duration::from_secs(5)).expect("the proxy is reachable");
        let mut greeting = String::new();
        s.read_to_string(&mut greeting).expect("read");
        out.push(("proxy", greeting));
        // TCP to any server's port 53 reaches the responder (not the raw TCP listener).
        let mut s = TcpStream::connect_timeout(&"192.0.2.1:53".parse().expect("addr"), Duration::from_secs(5))
            .expect("DNS over TCP reaches the responder");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        out.push(("dns over tcp anywhere", answer));
        // Another port of the same host, another host, UDP, IPv6: refused at once.
        for (what, addr) in [("other port", other), ("other host", "192.0.2.1:80".parse().expect("addr"))] {
            let started = Instant::now();
            let e = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect_err(what);
            out.push((what, format!("{:?} fast={}", e.kind(), fast(started))));
        }
        for (what, to) in [
            ("udp", "192.0.2.1:5353".parse().expect("addr")),
            ("udp to the proxy", proxy),
            ("dns anywhere", "192.0.2.1:53".parse().expect("addr")),
        ] {
            let started = Instant::now();
            let udp = UdpSocket::bind("0.0.0.0:0").expect("udp");
            udp.connect(to).expect("udp connect");
            udp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let sent = udp.send(b"query");
            let mut buf = [0u8; 16];
            let got = sent.and_then(|_| udp.recv(&mut buf));
            let got = got.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
            out.push((what, format!("{:?} fast={}", got.map_err(|e| e.kind()), fast(started))));
        }
        let started = Instant::now();
        let v6 = TcpStream::connect_timeout(&"[2001:db8::1]:80".parse().expect("addr"), Duration::from_secs(5));
        out.push(("ipv6", format!("{:?} fast={}", v6.map_err(|e| e.kind()).map(drop), fast(started))));
        // Loopback inside the namespace works.
        let lo = TcpListener::bind("127.0.0.1:0").expect("bind lo");
        let lo_addr = lo.local_addr().expect("addr");
        out.push(("loopback", format!("{}", TcpStream::connect(lo_addr).is_ok())));
        out
    });
    let get = |what: &str| results.iter().find(|(w, _)| *w == what).map(|(_, r)| r.clone()).expect(what);
    assert_eq!(get("proxy"), "proxy");
    assert_eq!(get("other port"), "ConnectionRefused fast=true");
    assert_eq!(get("other host"), "ConnectionRefused fast=true");
    // A datagram goes to a closed port of the sandbox's own address: refused, at once.
    assert_eq!(get("udp"), "Err(ConnectionRefused) fast=true");
    assert_eq!(get("udp to the proxy"), "Err(ConnectionRefused) fast=true");
    // A query to any server reaches the responder on the host end.
    assert_eq!(get("dns anywhere"), "Ok(\"dns\") fast=true");
    assert_eq!(get("dns over tcp anywhere"), "dns over tcp");
    assert_eq!(get("ipv6"), "Err(NetworkUnreachable) fast=true");
    assert_eq!(get("loopback"), "true");

    // With the proxy's raw TCP listener on the sandbox's own address, TCP to any
    // other host arrives there, and the listener learns where it was headed
    // (SO_ORIGINAL_DST): what the proxy decides raw TCP by.
    let raw = listen_in(&netns, SocketAddr::new(fence.sandbox_addr.into(), RAW_TCP_PORT)).expect("raw TCP listener");
    let headed: SocketAddr = "192.0.2.1:80".parse().expect("addr");
    let client = inside(&netns, move || TcpStream::connect_timeout(&headed, Duration::from_secs(5)));
    let client = client.expect("redirected to the raw TCP listener");
    let (accepted, from) = raw.accept().expect("accept");
    let original = socket2::SockRef::from(&accepted).original_dst_v4().expect("SO_ORIGINAL_DST");
    assert_eq!(original.as_socket(), Some(headed));
    assert_eq!(from.ip(), IpAddr::from(fence.sandbox_addr));
    assert_eq!(client.peer_addr().expect("peer"), headed, "the client still sees where it connected to");
    // The proxy's other ports are not redirected: still refused.
    let refused = inside(&netns, move || TcpStream::connect_timeout(&other, Duration::from_secs(5)).map(drop));
    assert_eq!(refused.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionRefused));

    // Positive control: without the fence's table, the other port is reachable.
    let inside_ns = std::fs::File::open(&netns).expect("namespace");
    let control = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(inside_ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        let status = Command::new("nft").args(["delete", "table", "inet", "openshell_fence"]).status().expect("nft");
        assert!(status.success());
        let mut s = TcpStream::connect_timeout(&other, Duration::from_secs(5)).expect("reachable without the fence");
        let mut greeting = String::new();
        s.read_to_string(&mut greeting).expect("read");
        greeting
    })
    .join()
    .expect("control thread");
    assert_eq!(control, "other");
}

/// The fence's table, as `nft -f` reads it (what the fence ran before it spoke netlink).
fn fence_text(fence: &Fence) -> String {
    format!(
        "table inet openshell_fence {{
  chain divert {{
    type nat hook output priority -100; policy accept;
    meta nfproto ipv4 udp dport 53 oif != \"lo\" dnat ip to {proxy}:53
    meta nfproto ipv4 tcp dport 53 oif != \"lo\" dnat ip to {proxy}:53
    meta nfproto ipv4 meta l4proto udp oif != \"lo\" dnat ip to {sandbox}:9
    ip daddr {proxy} accept
    meta nfproto ipv4 meta l4proto tcp oif != \"lo\" dnat ip to {sandbox}:1023
  }}
  chain output {{
    type filter hook output priority 0; policy drop;
    oif \"lo\" accept
    ip daddr {sandbox} accept
    ip daddr {proxy} tcp dport {port} accept
    ip daddr {proxy} udp dport 53 accept
    ip daddr {proxy} tcp dport 53 accept
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

const POD_TEXT: &str = "table inet openshell_pod_fence {
  chain divert {
    type nat hook output priority -100; policy accept;
    meta nfproto ipv4 udp dport 53 oif != \"lo\" dnat ip to 127.0.0.1:53
    meta nfproto ipv4 tcp dport 53 oif != \"lo\" dnat ip to 127.0.0.1:53
    meta nfproto ipv4 meta l4proto tcp oif != \"lo\" dnat ip to 127.0.0.1:1023
  }
  chain output {
    type filter hook output priority 0; policy drop;
    oif \"lo\" accept
    ip daddr 127.0.0.1 udp dport 53 accept
    ip daddr 127.0.0.1 tcp dport 53 accept
    ip daddr 127.0.0.1 tcp dport 1023 accept
    ct state established,related accept
    meta l4proto tcp reject with tcp reset
    reject with icmpx type port-unreachable
  }
}
";

/// A network namespace of the test's own, named, removed at the end.
struct Named(String);

impl Named {
    fn new(name: String) -> Named {
        let status = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(status.success(), "ip netns add {name}");
        Named(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    /// `nft ARGS` inside it, with `input` on stdin; its stdout.
    fn nft(&self, args: &[&str], input: &str) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("nft");
        assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The oracle: each table sent over netlink lists, under `nft`, exactly as the
/// same table loaded by `nft -f` from its text.
#[test]
fn the_tables_sent_over_netlink_are_the_ones_nft_loads_from_their_text() {
    require_root_ip_and_nft();
    let pid = std::process::id();
    let fence = Fence {
        host_if: "unused".into(),
        host_addr: Ipv4Addr::new(10, 213, 7, 5),
        sandbox_addr: Ipv4Addr::new(10, 213, 7, 6),
        proxy_port: 3128,
    };
    for (name, table, text, list) in [
        ("fence", ruleset(&fence), fence_text(&fence), "openshell_fence"),
        ("pod", pod_ruleset(), POD_TEXT.to_owned(), "openshell_pod_fence"),
    ] {
        let ours = Named::new(format!("osh-nft-ours-{name}-{pid}"));
        let theirs = Named::new(format!("osh-nft-text-{name}-{pid}"));
        let sent = table.clone();
        inside(&ours.path(), move || openshell_sandbox::nft::apply(&sent)).unwrap_or_else(|e| panic!("{name}: {e}"));
        theirs.nft(&["-f", "-"], &text);
        let listed = |ns: &Named| ns.nft(&["list", "table", "inet", list], "");
        let (ours_listed, theirs_listed) = (listed(&ours), listed(&theirs));
        assert_eq!(ours_listed, theirs_listed, "{name}: netlink's table differs from nft's");
        assert!(ours_listed.contains("reject with tcp reset"), "{name}: {ours_listed}");
    }
}

/// Whatever ends the namespace's last process (here SIGKILL), the veth pair goes
/// with it: the host keeps nothing of the fence.
#[test]
fn a_fence_goes_with_its_namespace_when_its_process_is_killed() {
    require_root();
    require("ip", "iproute2");
    let pid = std::process::id();
    let mut holder = Command::new("unshare").args(["--net", "sleep", "1000"]).spawn().expect("unshare (util-linux)");
    let host_if = format!("oshk{}", pid % 100_000);
    let fence = Fence {
        host_if: host_if.clone(),
        host_addr: Ipv4Addr::new(10, 213, 8, 1),
        sandbox_addr: Ipv4Addr::new(10, 213, 8, 2),
        proxy_port: 3128,
    };
    let netns = format!("/proc/{}/ns/net", holder.id());
    // unshare has made the namespace once its child runs sleep.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(&netns).ok() == std::fs::read_link("/proc/self/ns/net").ok() {
        assert!(Instant::now() < deadline, "unshare made no network namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    install(&fence, &netns).unwrap_or_else(|e| panic!("{e}"));
    let exists = || Path::new("/sys/class/net").join(&host_if).exists();
    assert!(exists(), "the host end {host_if} is there while the sandbox lives");
    holder.kill().expect("SIGKILL");
    holder.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(5);
    while exists() {
        assert!(Instant::now() < deadline, "{host_if} outlived its namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
}
