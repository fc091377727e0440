//! `cargo xtask bench router`: the privacy router against the same requests
//! sent direct to the mock backend, in one run (loopback, keep-alive on both
//! paths, interleaved):
//! - time to first byte of a streamed response (the first server-sent event);
//! - latency of a small non-streamed request.
//!
//! The direct client speaks plain HTTP to the backend; the routed one speaks TLS
//! to `inference.local` (as a sandbox does), so the added time includes the
//! router's TLS, header filtering, credential injection and model rewrite.
//! Under `cargo test --benches` it runs a few rounds only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;

use common::Redirect;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use openshell_policy::load_str;
use openshell_proxy::http1;
use openshell_proxy::router::{InferenceRoute, ProviderKind, Secret};
use openshell_proxy::{Caller, Fixed, Interceptor, JsonLines, Proxy, ProxyConfig, SandboxCa, StaticResolver};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A mock backend: `"stream": true` gets three events (the first at once), the
/// rest a small JSON body.
fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = tcp.set_nodelay(true);
                let mut reader = BufReader::new(tcp.try_clone().expect("clone"));
                let mut out = tcp;
                while let Ok(Some(head)) = http1::read_head_bytes(&mut reader) {
                    let req = http1::parse_request(&head).expect("head");
                    let mut body = Vec::new();
                    let framing = http1::request_body(&req.headers).expect("framing");
                    http1::copy_body(&mut reader, &mut body, framing).expect("body");
                    if body.windows(14).any(|w| w == b"\"stream\":true}") {
                        let mut events = String::new();
                        for i in 0..3 {
                            let e = format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"t{i}\"}}}}]}}\n\n");
                            events.push_str(&format!("{:x}\r\n{e}\r\n", e.len()));
                        }
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{events}0\r\n\r\n"
                        );
                    } else {
                        let answer = r#"{"choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                    }
                    let _ = out.flush();
                }
            });
        }
    });
    addr
}

fn request(body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\nAuthorization: Bearer caller\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `req` and returns (time to the first event or body byte, time to the end).
fn exchange<S: Read + Write>(conn: &mut BufReader<S>, req: &str) -> (f64, f64) {
    let started = Instant::now();
    conn.get_mut().write_all(req.as_bytes()).expect("write");
    conn.get_mut().flush().expect("flush");
    let head = http1::read_head_bytes(conn).expect("head").expect("response");
    let parsed = http1::parse_response(&head).expect("parse");
    assert_eq!(parsed.status, 200, "{}", String::from_utf8_lossy(&head));
    let mut first = None;
    let mut line = Vec::new();
    match http1::response_body("POST", &parsed) {
        http1::Body::Chunked => loop {
            line.clear();
            conn.read_until(b'\n', &mut line).expect("read");
            if first.is_none() && line.starts_with(b"data:") {
                first = Some(started.elapsed());
            }
            if line == b"0\r\n" {
                conn.read_until(b'\n', &mut line).expect("end");
                break;
            }
        },
        framing => {
            let mut sink = Vec::new();
            http1::copy_body(conn, &mut sink, framing).expect("body");
            first = Some(started.elapsed());
        }
    }
    let first = first.expect("an event").as_secs_f64() * 1e6;
    (first, started.elapsed().as_secs_f64() * 1e6)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let test_mode = !std::env::args().any(|a| a == "--bench");
    let rounds = if test_mode { 20 } else { 2000 };
    let mock = backend();
    let ip: IpAddr = "10.200.0.9".parse().expect("ip");
    let ca = SandboxCa::generate("bench").expect("ca");
    let root = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("pem");
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().expect("addr"),
        ProxyConfig {
            sandbox: "bench".into(),
            policy: load_str("bench.yaml", "version: 1\n").expect("policy"),
            revision: 1,
            identify: Box::new(Fixed(Some(Caller {
                binary: "/usr/bin/python3".into(),
                ancestors: vec![],
                sha256: None,
            }))),
            resolver: Box::new(StaticResolver(HashMap::from([("backend.test".to_owned(), vec![ip])]))),
            connector: Box::new(Redirect(HashMap::from([(SocketAddr::new(ip, 8000), mock)]))),
            audit: Box::new(JsonLines::new(std::io::sink())),
            tls: Some(Arc::new(Interceptor::new(ca, RootCertStore::empty()).expect("interceptor"))),
            route: Some(InferenceRoute {
                provider: "mock".into(),
                kind: ProviderKind::OpenaiCompatible,
                base_url: "http://backend.test:8000/v1".into(),
                credential: Secret("sk-bench".into()),
                model: Some("served".into()),
                timeout_secs: 30,
            }),
            limits: Default::default(),
        },
    )
    .expect("proxy");
    let proxy_addr = proxy.local_addr().expect("addr");
    std::thread::spawn(move || proxy.serve());

    let direct_tcp = TcpStream::connect(mock).expect("direct");
    direct_tcp.set_nodelay(true).expect("nodelay");
    let mut direct = BufReader::new(direct_tcp);
    let mut tcp = TcpStream::connect(proxy_addr).expect("proxy");
    tcp.set_nodelay(true).expect("nodelay");
    tcp.write_all(b"CONNECT inference.local:443 HTTP/1.1\r\n\r\n").expect("connect");
    let mut reply = [0u8; 39];
    tcp.read_exact(&mut reply).expect("reply");
    let mut roots = RootCertStore::empty();
    roots.add(root).expect("root");
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("inference.local").expect("name");
    let conn = ClientConnection::new(Arc::new(config), name).expect("tls");
    let mut routed = BufReader::new(StreamOwned::new(conn, tcp));

    let stream = request(r#"{"model":"m","messages":[],"stream":true}"#);
    let small = request(r#"{"model":"m","messages":[]}"#);
    let (mut d_ttfb, mut r_ttfb, mut d_lat, mut r_lat) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The first routed request opens the backend connection: warm both paths up.
    for _ in 0..3 {
        exchange(&mut direct, &stream);
        exchange(&mut routed, &stream);
    }
    for _ in 0..rounds {
        d_ttfb.push(exchange(&mut direct, &stream).0);
        r_ttfb.push(exchange(&mut routed, &stream).0);
        d_lat.push(exchange(&mut direct, &small).1);
        r_lat.push(exchange(&mut routed, &small).1);
    }
    println!("\nrouter bench: {rounds} requests of each kind, keep-alive, interleaved (loopback mock backend)");
    println!("{:<44} {:>12} {:>12} {:>10}", "", "direct", "routed", "added");
    for (label, d, r) in [
        ("streamed response, time to first event", &mut d_ttfb, &mut r_ttfb),
        ("small request, whole response", &mut d_lat, &mut r_lat),
    ] {
        for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
            let (a, b) = (pct(d, p), pct(r, p));
            println!("{:<44} {:>9.0} µs {:>9.0} µs {:>7.0} µs", format!("{label}, {name}"), a, b, b - a);
        }
    }
}
