//! `cargo xtask bench proxy`: the proxy against a direct connection on the same
//! path, in one run (loopback servers of the bench's own):
//! - throughput: a 1 GiB download through a CONNECT tunnel vs the same download
//!   direct (5 rounds each, interleaved; medians);
//! - added latency per request: a small plain-HTTP request through the proxy
//!   (absolute-form, a new connection each) vs the same request direct (p50, p99);
//! - the L7 path (TLS terminated with the sandbox's CA, each request decided,
//!   verified TLS to the upstream): a 1 GiB HTTPS download through it vs the same
//!   download over TLS direct, and the added latency of a request on an open
//!   keep-alive connection (p50, p99);
//! - a peer proxy on the same downloads, in the same rounds: haproxy (see
//!   `peers/haproxy.rs`) relaying the tunnel's download as TCP and terminating
//!   and re-encrypting the HTTPS one; the bench fails naming the package when
//!   haproxy is missing;
//! - under each download (tunnel and L7), the CPU seconds per GB each side spent
//!   on it, read from /proc (client: the main thread; proxy: its runtime's
//!   threads, or haproxy's process; server: the rest of the process; medians);
//! - decision cost: the policy engine's decision for an L4 and an L7 request;
//! - hot reload: from `reload()` being called to the new revision deciding;
//! - concurrent tunnels: 1,000 CONNECT tunnels held open at once (100 under
//!   `cargo test --benches`) to a server that keeps every connection, and this
//!   process's resident memory before and after, divided by the tunnels: an
//!   upper bound of the proxy's memory per open tunnel (the clients' and the
//!   server's sockets hold no buffers of their own here). The bench fails above
//!   [`TUNNEL_BOUND_KIB`].
//!
//! `OPENSHELL_BENCH_PROXY_BYTES` changes the download size; under `cargo test
//! --benches` (no `--bench` argument) it runs one small round.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "peers/haproxy.rs"]
mod haproxy;

use std::collections::HashMap;

use common::Redirect;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use openshell_policy::{Engine, HttpRequest, Request, load_str};
use openshell_proxy::http1;
use openshell_proxy::{Caller, Fixed, Interceptor, JsonLines, Proxy, ProxyConfig, SandboxCa, StaticResolver};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

const POLICY: &str = "version: 1
network_policies:
  bench:
    endpoints:
      - { host: bulk.test, port: 443, allowed_ips: [10.200.0.0/24] }
      - { host: small.test, port: 80, allowed_ips: [10.200.0.0/24] }
      - { host: hold.test, port: 443, allowed_ips: [10.200.0.0/24] }
      - host: tls.test
        port: 443
        protocol: rest
        allowed_ips: [10.200.0.0/24]
        rules:
          - allow: { method: GET, path: '/**' }
        deny_rules:
          - { method: GET, path: '/admin/**' }
    binaries:
      - path: /usr/bin/curl
";

/// The most resident memory one open, idle tunnel may cost (KiB).
const TUNNEL_BOUND_KIB: f64 = 32.0;

/// Keeps every connection it accepts, on one thread; counts them.
fn holding_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (addr, count)
}

/// This process's resident set (VmRSS), KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Opens `n` tunnels to hold.test and keeps them: the resident memory each added (KiB).
fn concurrent_tunnels(proxy: SocketAddr, held: &std::sync::atomic::AtomicUsize, n: usize) -> f64 {
    // Each tunnel is four sockets and two pipes (four descriptors) in this process.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let need = (n as u64) * 8 + 256;
    if limit.current.is_some_and(|s| s < need) {
        let current = Some(limit.maximum.map_or(need, |h| h.min(need)));
        let raised = rustix::process::Rlimit { current, maximum: limit.maximum };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, raised).expect("raising RLIMIT_NOFILE");
    }
    let before = rss_kib();
    let tunnels: Vec<TcpStream> = (0..n).map(|_| open_tunnel(proxy, "hold.test")).collect();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while held.load(std::sync::atomic::Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} tunnels reached the server",
            held.load(std::sync::atomic::Ordering::SeqCst)
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let after = rss_kib();
    drop(tunnels);
    after.saturating_sub(before) as f64 / n as f64
}

/// Sends `bytes` zero bytes to every connection.
fn bulk_server(bytes: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let chunk = vec![0u8; 256 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if conn.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
    addr
}

/// Answers each request with a 2-byte body.
fn small_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let mut conn = conn;
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            });
        }
    });
    addr
}

/// HTTPS on keep-alive connections: `/bulk` is `bytes` zero bytes, anything
/// else a 2-byte body.
fn tls_server(config: Arc<ServerConfig>, bytes: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let _ = tcp.set_nodelay(true);
                let Ok(conn) = ServerConnection::new(config) else { return };
                let mut tls = BufReader::new(StreamOwned::new(conn, tcp));
                let chunk = vec![0u8; 256 * 1024];
                while let Ok(Some(head)) = http1::read_head_bytes(&mut tls) {
                    let out = tls.get_mut();
                    if head.starts_with(b"GET /bulk ") {
                        let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {bytes}\r\n\r\n");
                        let mut left = bytes;
                        while left > 0 {
                            let n = left.min(chunk.len() as u64) as usize;
                            if out.write_all(&chunk[..n]).is_err() {
                                return;
                            }
                            left -= n as u64;
                        }
                    } else {
                        let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                    let _ = out.flush();
                }
            });
        }
    });
    addr
}

/// CPU seconds (user + system) spent so far: by the whole process (threads
/// that ended included), by its main thread (the bench's client), by each
/// live thread of the proxy's runtime (named `openshell-proxy`), by thread id,
/// and by the peer proxy's process (haproxy).
#[derive(Default)]
struct CpuReading {
    process: f64,
    main: f64,
    proxy: HashMap<String, f64>,
    peer: f64,
}

/// CPU seconds per GB one download cost each side. The proxy's share is the
/// openshell proxy's and haproxy's together (each is idle while the other
/// carries a download). The server's share is the rest of this process: its
/// threads may end before the reading.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    client: f64,
    proxy: f64,
    server: f64,
}

/// utime + stime of a `/proc/.../stat` file, in seconds (ticks of USER_HZ, 100 a second).
fn stat_cpu(path: &std::path::Path) -> Option<f64> {
    Some(common::cpu_ticks(&std::fs::read_to_string(path).ok()?)? as f64 / 100.0)
}

fn cpu_reading(peer: u32) -> CpuReading {
    let pid = std::process::id().to_string();
    let peer_stat = format!("/proc/{peer}/stat");
    let mut reading = CpuReading {
        process: stat_cpu("/proc/self/stat".as_ref()).expect("/proc/self/stat"),
        peer: stat_cpu(peer_stat.as_ref()).unwrap_or_else(|| panic!("{peer_stat}: haproxy has gone")),
        ..CpuReading::default()
    };
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let (Ok(comm), Some(secs)) =
            (std::fs::read_to_string(entry.path().join("comm")), stat_cpu(&entry.path().join("stat")))
        else {
            continue; // the thread ended meanwhile
        };
        if tid == pid {
            reading.main = secs;
        } else if comm.starts_with("openshell-proxy") {
            reading.proxy.insert(tid, secs);
        }
    }
    reading
}

/// Runs `download` (of `bytes`) and measures it: bytes per second, and CPU
/// seconds per GB by side (`peer`: haproxy's pid).
fn measured(bytes: u64, peer: u32, download: impl FnOnce() -> u64) -> (f64, Cpu) {
    let before = cpu_reading(peer);
    let started = Instant::now();
    assert_eq!(download(), bytes);
    let rate = bytes as f64 / started.elapsed().as_secs_f64();
    let after = cpu_reading(peer);
    let proxy: f64 = after.proxy.iter().map(|(tid, secs)| secs - before.proxy.get(tid).copied().unwrap_or(0.0)).sum();
    let client = after.main - before.main;
    let per_gb = |secs: f64| secs / (bytes as f64 / 1e9);
    // Ticks are whole: the rest can come out a tick below zero.
    let server = (after.process - before.process - client - proxy).max(0.0);
    let proxy = proxy + after.peer - before.peer;
    (rate, Cpu { client: per_gb(client), proxy: per_gb(proxy), server: per_gb(server) })
}

/// One kind of download, every round: bytes per second and CPU per GB.
#[derive(Default)]
struct Downloads {
    rates: Vec<f64>,
    cpu: Vec<Cpu>,
}

impl Downloads {
    fn run(&mut self, bytes: u64, peer: u32, download: impl FnOnce() -> u64) {
        let (rate, cpu) = measured(bytes, peer, download);
        self.rates.push(rate);
        self.cpu.push(cpu);
    }

    fn median(&self) -> f64 {
        median(&mut self.rates.clone())
    }
}

/// `runs`' medians, printed as "client + server" or "client + proxy + server".
fn median_cpu(runs: &[Cpu], through_proxy: bool) -> String {
    let med = |f: fn(&Cpu) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let proxy = if through_proxy { format!(" {:.2} +", med(|c| c.proxy)) } else { String::new() };
    format!("{:.2} +{proxy} {:.2}", med(|c| c.client), med(|c| c.server))
}

type Tls = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// TLS to `tls.test` over `tcp`, trusting only `root`.
fn tls_client(tcp: TcpStream, root: &CertificateDer<'static>) -> Tls {
    use common::provider;
    let _ = tcp.set_nodelay(true);
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("tls.test").expect("name");
    let conn = ClientConnection::new(Arc::new(config), name).expect("client");
    BufReader::with_capacity(256 * 1024, StreamOwned::new(conn, tcp))
}

/// A CONNECT tunnel to `host:443` through the proxy.
fn open_tunnel(proxy: SocketAddr, host: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy).expect("proxy");
    write!(s, "CONNECT {host}:443 HTTP/1.1\r\n\r\n").expect("write");
    let mut reply = [0u8; 39];
    s.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply[..12], b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&reply));
    s
}

/// One GET on `c`; returns the body's length.
fn get(c: &mut Tls, path: &str) -> u64 {
    let out = c.get_mut();
    write!(out, "GET {path} HTTP/1.1\r\nHost: tls.test\r\n\r\n").expect("write");
    out.flush().expect("flush");
    let head = http1::read_head_bytes(c).expect("head").expect("response");
    let parsed = http1::parse_response(&head).expect("parse");
    assert_eq!(parsed.status, 200, "{}", String::from_utf8_lossy(&head));
    let mut sink = std::io::sink();
    http1::copy_body(c, &mut sink, http1::response_body("GET", &parsed)).expect("body")
}

fn drain(mut s: TcpStream) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n as u64,
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    let test_mode = !std::env::args().any(|a| a == "--bench");
    let bytes: u64 = std::env::var("OPENSHELL_BENCH_PROXY_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if test_mode { 8 << 20 } else { 1 << 30 });
    let (rounds, requests) = if test_mode { (1, 20) } else { (5, 400) };
    let bulk = bulk_server(bytes);
    let small = small_server();
    let upstream = common::TestCa::new("bench upstream CA");
    let upstream_ca = upstream.root.clone();
    let tls = tls_server(upstream.server("tls.test"), bytes);
    let haproxy = haproxy::Haproxy::start(bulk, tls, &upstream.leaf_pem("tls.test"), &upstream.pem);
    let (hold, held) = holding_server();
    let tunnels = if test_mode { 100 } else { 1_000 };
    let sandbox_ca = SandboxCa::generate("bench").expect("sandbox CA");
    let sandbox_root = CertificateDer::from_pem_slice(sandbox_ca.cert_pem().as_bytes()).expect("pem");
    let mut upstream_roots = RootCertStore::empty();
    upstream_roots.add(upstream_ca.clone()).expect("root");
    let interceptor = Interceptor::new(sandbox_ca, upstream_roots).expect("interceptor");
    let ip: IpAddr = "10.200.0.2".parse().expect("ip");
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().expect("addr"),
        ProxyConfig {
            sandbox: "bench".into(),
            policy: load_str("bench.yaml", POLICY).expect("policy"),
            revision: 1,
            identify: Box::new(Fixed(Some(Caller { binary: "/usr/bin/curl".into(), ancestors: vec![], sha256: None }))),
            resolver: Box::new(StaticResolver(HashMap::from([
                ("bulk.test".to_owned(), vec![ip]),
                ("small.test".to_owned(), vec![ip]),
                ("tls.test".to_owned(), vec!["10.200.0.3".parse().expect("ip")]),
                ("hold.test".to_owned(), vec!["10.200.0.4".parse().expect("ip")]),
            ]))),
            connector: Box::new(Redirect(HashMap::from([
                (SocketAddr::new(ip, 443), bulk),
                (SocketAddr::new(ip, 80), small),
                (SocketAddr::new("10.200.0.3".parse().expect("ip"), 443), tls),
                (SocketAddr::new("10.200.0.4".parse().expect("ip"), 443), hold),
            ]))),
            audit: Box::new(JsonLines::new(std::io::sink())),
            tls: Some(Arc::new(interceptor)),
            route: None,
            // Room for the concurrent tunnels (a sandbox's proxy holds 512 by default).
            limits: openshell_proxy::Limits { max_connections: 2 * tunnels, ..Default::default() },
        },
    )
    .expect("proxy");
    let proxy_addr = proxy.local_addr().expect("addr");
    let handle = proxy.handle();
    std::thread::spawn(move || proxy.serve());

    // Throughput, interleaved: direct, through the proxy, through haproxy. Each
    // side's CPU is read around each download (on the 2-core VM the figures
    // come from, client, proxy and server share the cores).
    let peer = haproxy.pid();
    let (mut direct, mut tunnel, mut peer_tunnel) = (Downloads::default(), Downloads::default(), Downloads::default());
    for _ in 0..rounds {
        direct.run(bytes, peer, || drain(TcpStream::connect(bulk).expect("direct")));
        tunnel.run(bytes, peer, || drain(open_tunnel(proxy_addr, "bulk.test")));
        peer_tunnel.run(bytes, peer, || drain(TcpStream::connect(haproxy.tunnel).expect("haproxy")));
    }

    // L7 throughput, interleaved: HTTPS direct, through the TLS-terminating
    // proxy, through haproxy terminating TLS.
    let (mut tls_direct, mut inspected, mut peer_l7) =
        (Downloads::default(), Downloads::default(), Downloads::default());
    let https = |tcp: TcpStream, root: &CertificateDer<'static>| get(&mut tls_client(tcp, root), "/bulk");
    for _ in 0..rounds {
        tls_direct.run(bytes, peer, || https(TcpStream::connect(tls).expect("direct"), &upstream_ca));
        inspected.run(bytes, peer, || https(open_tunnel(proxy_addr, "tls.test"), &sandbox_root));
        peer_l7.run(bytes, peer, || https(TcpStream::connect(haproxy.l7).expect("haproxy"), &upstream_ca));
    }

    // L7 latency: a request on an open keep-alive connection, direct vs inspected.
    let mut direct_conn = tls_client(TcpStream::connect(tls).expect("direct"), &upstream_ca);
    let mut l7_conn = tls_client(open_tunnel(proxy_addr, "tls.test"), &sandbox_root);
    let (mut d7, mut p7) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        let started = Instant::now();
        assert_eq!(get(&mut direct_conn, "/small"), 2);
        d7.push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        assert_eq!(get(&mut l7_conn, "/small"), 2);
        p7.push(started.elapsed().as_secs_f64() * 1e6);
    }

    // Decision cost: the engine alone, an L4 request and an L7 one.
    let engine = Engine::new(&load_str("bench.yaml", POLICY).expect("policy"));
    let ancestors = ["/usr/bin/bash"];
    let mut l4 = Request::l4("bulk.test", 443, "/usr/bin/curl");
    l4.ancestors = &ancestors;
    let query = [("page", "2")];
    let mut l7 = Request::l4("tls.test", 443, "/usr/bin/curl");
    l7.resolved_ip = Some("10.200.0.3".parse().expect("ip"));
    l7.http = Some(HttpRequest::plain("GET", "/v1/items/7", &query));
    let n = if test_mode { 1_000 } else { 200_000 };
    let time_decide = |req: &Request<'_>| {
        let started = Instant::now();
        for _ in 0..n {
            assert!(std::hint::black_box(engine.decide(std::hint::black_box(req))).is_allowed());
        }
        started.elapsed().as_secs_f64() * 1e9 / n as f64
    };
    let (decide4, decide7) = (time_decide(&l4), time_decide(&l7));

    // Latency per request, interleaved.
    let (mut d_lat, mut p_lat) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        let started = Instant::now();
        let mut s = TcpStream::connect(small).expect("direct");
        s.write_all(b"GET / HTTP/1.1\r\nHost: small.test\r\n\r\n").expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.ends_with("ok"));
        d_lat.push(started.elapsed().as_secs_f64() * 1e6);

        let started = Instant::now();
        let mut s = TcpStream::connect(proxy_addr).expect("proxy");
        s.write_all(b"GET http://small.test/ HTTP/1.1\r\nHost: small.test\r\n\r\n").expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.ends_with("ok"), "{out}");
        p_lat.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let added50 = median(&mut p_lat) - median(&mut d_lat);
    let added99 = pct(&mut p_lat, 0.99) - pct(&mut d_lat, 0.99);

    // Hot reload: the call, then the first connection decided by the new revision.
    let mut reload = Vec::new();
    for i in 0..if test_mode { 3 } else { 50 } {
        let policy = load_str("bench.yaml", POLICY).expect("policy");
        let started = Instant::now();
        let revision = handle.reload(policy).expect("reload");
        let mut s = TcpStream::connect(proxy_addr).expect("proxy");
        s.write_all(b"CONNECT elsewhere.test:443 HTTP/1.1\r\n\r\n").expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.contains(&format!("\"revision\":{revision}")), "round {i}: {out}");
        reload.push(started.elapsed().as_secs_f64() * 1e6);
    }

    // Concurrent tunnels: memory per open tunnel, last (the others leave allocations behind).
    let per_tunnel = concurrent_tunnels(proxy_addr, &held, tunnels);

    // A download's row, its CPU, and the same through haproxy.
    let throughput = |label: &str, direct: &Downloads, proxied: &Downloads, peer: &Downloads| {
        let (d, p, h) = (direct.median(), proxied.median(), peer.median());
        println!("{label:<40} {:>10.0} MB/s {:>10.0} MB/s {:>7.1}%", d / 1e6, p / 1e6, 100.0 * p / d);
        let (dc, pc) = (median_cpu(&direct.cpu, false), median_cpu(&proxied.cpu, true));
        println!("{:<40} {dc:>14} {pc:>21}", "  CPU-s per GB: client (+ proxy) + server");
        println!(
            "{:<40} {:>14} {:>10.0} MB/s {:>7.1}%",
            "  the same through haproxy (peer)",
            "",
            h / 1e6,
            100.0 * h / d
        );
        println!("{:<40} {:>14} {:>21}", "  CPU-s per GB: client + haproxy + server", "", median_cpu(&peer.cpu, true));
    };
    println!("\nproxy bench: {} MiB download x{rounds}, {requests} requests (loopback servers, one run)", bytes >> 20);
    println!("peer: {}", haproxy.version);
    println!("{:<40} {:>14} {:>14} {:>8}", "", "direct", "through proxy", "ratio");
    throughput("CONNECT tunnel throughput (median)", &direct, &tunnel, &peer_tunnel);
    println!(
        "{:<40} {:>11.0} µs {:>11.0} µs {:>8}",
        "plain HTTP request, p50",
        median(&mut d_lat),
        median(&mut p_lat),
        format!("{added50:+.0} µs")
    );
    println!(
        "{:<40} {:>11.0} µs {:>11.0} µs {:>8}",
        "plain HTTP request, p99",
        pct(&mut d_lat, 0.99),
        pct(&mut p_lat, 0.99),
        format!("{added99:+.0} µs")
    );
    throughput("HTTPS download, L7 path (median)", &tls_direct, &inspected, &peer_l7);
    for (label, p) in [("HTTPS request on an open conn, p50", 0.5), ("HTTPS request on an open conn, p99", 0.99)] {
        let (a, b) = (pct(&mut d7, p), pct(&mut p7, p));
        println!("{label:<40} {a:>11.0} µs {b:>11.0} µs {:>8}", format!("{:+.0} µs", b - a));
    }
    println!("{:<40} {:>29.0} ns", "decision, L4 request", decide4);
    println!("{:<40} {:>29.0} ns", "decision, L7 request", decide7);
    println!("{:<40} {:>29.0} µs (median, reload + first decision)", "hot reload", median(&mut reload));
    println!(
        "{:<40} {:>26.1} KiB RSS per open tunnel (bound {TUNNEL_BOUND_KIB:.0} KiB)",
        format!("{tunnels} concurrent tunnels"),
        per_tunnel
    );
    assert!(
        per_tunnel <= TUNNEL_BOUND_KIB,
        "{per_tunnel:.1} KiB per open tunnel, over the bound {TUNNEL_BOUND_KIB} KiB"
    );
}
