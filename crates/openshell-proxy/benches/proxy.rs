//! `cargo xtask bench proxy`: the proxy against a direct connection on the same
//! path, in one run (loopback servers of the bench's own):
//! - throughput: a 1 GiB download through a CONNECT tunnel vs the same download
//!   direct (3 rounds each, interleaved; medians);
//! - added latency per request: a small plain-HTTP request through the proxy
//!   (absolute-form, a new connection each) vs the same request direct (p50, p99);
//! - hot reload: from `reload()` being called to the new revision deciding.
//!
//! `OPENSHELL_BENCH_PROXY_BYTES` changes the download size; under `cargo test
//! --benches` (no `--bench` argument) it runs one small round.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use openshell_policy::load_str;
use openshell_proxy::proxy::Connect;
use openshell_proxy::{Caller, Fixed, JsonLines, Proxy, ProxyConfig, StaticResolver};

const POLICY: &str = "version: 1
network_policies:
  bench:
    endpoints:
      - { host: bulk.test, port: 443, allowed_ips: [10.200.0.0/24] }
      - { host: small.test, port: 80, allowed_ips: [10.200.0.0/24] }
    binaries:
      - path: /usr/bin/curl
";

struct Redirect(HashMap<SocketAddr, SocketAddr>);

impl Connect for Redirect {
    fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        TcpStream::connect(self.0.get(&addr).ok_or_else(|| std::io::Error::other("no server"))?)
    }
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
    let (rounds, requests) = if test_mode { (1, 20) } else { (3, 400) };
    let bulk = bulk_server(bytes);
    let small = small_server();
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
            ]))),
            connector: Box::new(Redirect(HashMap::from([
                (SocketAddr::new(ip, 443), bulk),
                (SocketAddr::new(ip, 80), small),
            ]))),
            audit: Box::new(JsonLines::new(std::io::sink())),
            tls: None,
        },
    )
    .expect("proxy");
    let proxy_addr = proxy.local_addr().expect("addr");
    let handle = proxy.handle();
    std::thread::spawn(move || proxy.serve());

    // Throughput, interleaved.
    let (mut direct, mut tunnel) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let got = drain(TcpStream::connect(bulk).expect("direct"));
        assert_eq!(got, bytes);
        direct.push(bytes as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut s = TcpStream::connect(proxy_addr).expect("proxy");
        s.write_all(b"CONNECT bulk.test:443 HTTP/1.1\r\n\r\n").expect("write");
        let mut reply = [0u8; 39];
        s.read_exact(&mut reply).expect("reply");
        assert_eq!(&reply[..12], b"HTTP/1.1 200");
        let got = drain(s);
        assert_eq!(got, bytes);
        tunnel.push(bytes as f64 / started.elapsed().as_secs_f64());
    }
    let (d, t) = (median(&mut direct), median(&mut tunnel));

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

    println!("\nproxy bench: {} MiB download x{rounds}, {requests} requests (loopback servers, one run)", bytes >> 20);
    println!("{:<40} {:>14} {:>14} {:>8}", "", "direct", "through proxy", "ratio");
    println!(
        "{:<40} {:>10.0} MB/s {:>10.0} MB/s {:>7.1}%",
        "CONNECT tunnel throughput (median)",
        d / 1e6,
        t / 1e6,
        100.0 * t / d
    );
    println!(
        "{:<40} {:>11.0} µs {:>11.0} µs {:>8}",
        "plain HTTP request, p50",
        median(&mut d_lat),
        median(&mut p_lat),
        format!("+{added50:.0} µs")
    );
    println!(
        "{:<40} {:>11.0} µs {:>11.0} µs {:>8}",
        "plain HTTP request, p99",
        pct(&mut d_lat, 0.99),
        pct(&mut p_lat, 0.99),
        format!("+{added99:.0} µs")
    );
    println!("{:<40} {:>29.0} µs (median, reload + first decision)", "hot reload", median(&mut reload));
    println!("L7 (TLS-terminated) path: not measured, it does not exist yet.");
}
