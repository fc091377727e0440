//! L7 inspection through a CONNECT tunnel: TLS terminated with the sandbox's
//! CA, each request decided on its own, the upstream verified. The upstream is
//! an HTTPS server of the test's own on loopback with a certificate from a test
//! CA that the proxy is told to trust; the client trusts only the sandbox CA.

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Recorder, TestCa, TestProxy, provider};
use openshell_policy::load_str;
use openshell_proxy::http1::{self, Body};
use openshell_proxy::{Caller, Interceptor, ProxyHandle, SandboxCa, StaticResolver};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

const POLICY: &str = r#"version: 1
network_policies:
  api:
    endpoints:
      - host: api.test
        port: 443
        protocol: rest
        allowed_ips: [10.200.0.0/24]
        rules:
          - allow: { method: GET, path: "/v1/**" }
          - allow: { method: POST, path: /v1/items }
        deny_rules:
          - { method: GET, path: "/v1/secret/**" }
          - { method: GET, path: /v1/search, query: { q: "drop*" } }
      - host: api.test
        port: 443
        protocol: mcp
        path: /mcp
        allowed_ips: [10.200.0.0/24]
        rules:
          - allow: { method: tools/call, tool: "read_*" }
      - host: watch.test
        port: 443
        protocol: rest
        enforcement: audit
        allowed_ips: [10.200.0.0/24]
        rules:
          - allow: { method: GET, path: /ok }
      - host: forged.test
        port: 443
        protocol: rest
        allowed_ips: [10.200.0.0/24]
        access: full
    binaries:
      - path: /usr/bin/curl
"#;

/// The same with POST no longer allowed (a live change).
const NO_POST: &str = r#"version: 1
network_policies:
  api:
    endpoints:
      - host: api.test
        port: 443
        protocol: rest
        allowed_ips: [10.200.0.0/24]
        rules:
          - allow: { method: GET, path: "/v1/**" }
    binaries:
      - path: /usr/bin/curl
"#;

/// What the upstream received, one entry per request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// An HTTPS upstream answering every request on a keep-alive connection with
/// `200` and a short body, except `/stream`: chunked, its last chunk held until
/// `release` says so.
fn https_upstream(
    config: Arc<ServerConfig>,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            let seen = Arc::clone(&seen);
            let release = Arc::clone(&release);
            std::thread::spawn(move || {
                let Ok(conn) = ServerConnection::new(config) else { return };
                let mut tls = BufReader::new(StreamOwned::new(conn, tcp));
                while let Ok(Some(bytes)) = http1::read_head_bytes(&mut tls) {
                    let head = http1::parse_request(&bytes).expect("request head");
                    let mut body = Vec::new();
                    let framing = http1::request_body(&head.headers).expect("framing");
                    http1::copy_body(&mut tls, &mut body, framing).expect("body");
                    seen.lock().expect("lock").push(Seen {
                        method: head.method.clone(),
                        target: head.target.clone(),
                        headers: head
                            .headers
                            .iter()
                            .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(v).into_owned()))
                            .collect(),
                        body,
                    });
                    let out = tls.get_mut();
                    if head.target == "/v1/stream" {
                        let _ = out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n");
                        let _ = out.flush();
                        let _ = release.lock().expect("lock").recv_timeout(Duration::from_secs(10));
                        let _ = out.write_all(b"5\r\nlast\n\r\n0\r\n\r\n");
                    } else {
                        let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                    let _ = out.flush();
                }
            });
        }
    });
    addr
}

struct Setup {
    addr: SocketAddr,
    handle: ProxyHandle,
    audit: Arc<Recorder>,
    seen: Arc<Mutex<Vec<Seen>>>,
    sandbox_ca: String,
    release: mpsc::Sender<()>,
}

fn setup(with_tls: bool) -> Setup {
    let upstream_ca = TestCa::new("test upstream CA");
    let stranger = TestCa::new("a CA nobody trusts");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (release, gate) = mpsc::channel();
    let gate = Arc::new(Mutex::new(gate));
    let api = https_upstream(upstream_ca.server("api.test"), Arc::clone(&seen), Arc::clone(&gate));
    let watch = https_upstream(upstream_ca.server("watch.test"), Arc::clone(&seen), Arc::clone(&gate));
    let forged = https_upstream(stranger.server("forged.test"), Arc::clone(&seen), gate);
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let resolver = StaticResolver(HashMap::from([
        ("api.test".to_owned(), vec![ip("10.200.0.2")]),
        ("watch.test".to_owned(), vec![ip("10.200.0.3")]),
        ("forged.test".to_owned(), vec![ip("10.200.0.4")]),
    ]));
    let redirect = HashMap::from([
        (SocketAddr::new(ip("10.200.0.2"), 443), api),
        (SocketAddr::new(ip("10.200.0.3"), 443), watch),
        (SocketAddr::new(ip("10.200.0.4"), 443), forged),
    ]);
    let sandbox_ca = SandboxCa::generate("l7-test").expect("sandbox CA");
    let sandbox_ca_pem = sandbox_ca.cert_pem().to_owned();
    let tls = with_tls.then(|| {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(upstream_ca.pem.as_bytes()).expect("pem")).expect("root");
        Arc::new(Interceptor::new(sandbox_ca, roots).expect("interceptor"))
    });
    let audit = Arc::new(Recorder::default());
    let caller = Caller { binary: "/usr/bin/curl".into(), ancestors: vec!["/usr/bin/bash".into()], sha256: None };
    let (addr, handle) =
        TestProxy { sandbox: "l7-test", policy: POLICY, caller, resolver, redirect, tls }.serve(&audit);
    Setup { addr, handle, audit, seen, sandbox_ca: sandbox_ca_pem, release }
}

use rustls::pki_types::pem::PemObject;

type Client = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// CONNECTs to `host:443` and speaks TLS trusting only `ca`.
fn open(addr: SocketAddr, host: &str, ca: &str) -> Result<Client, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(tcp, "CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(tcp);
    let head = http1::read_head_bytes(&mut reader).map_err(|e| e.to_string())?.ok_or("closed")?;
    let text = String::from_utf8_lossy(&head).into_owned();
    if !text.starts_with("HTTP/1.1 200") {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        return Err(format!("{text}{rest}"));
    }
    let tcp = reader.into_inner();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| e.to_string())?;
    }
    Ok(BufReader::new(stream))
}

/// Sends one request on `client` and reads its response: (status, headers, body).
fn request(client: &mut Client, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let out = client.get_mut();
    out.write_all(head.as_bytes()).expect("write head");
    out.write_all(body).expect("write body");
    out.flush().expect("flush");
    let bytes = http1::read_head_bytes(client).expect("response head").expect("a response");
    let parsed = http1::parse_response(&bytes).expect("parse");
    let mut got = Vec::new();
    http1::copy_body(client, &mut got, http1::response_body("GET", &parsed)).expect("body");
    (parsed.status, String::from_utf8_lossy(&bytes).into_owned(), got)
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic c2VjcmV0\r\nX-Trace: 7\r\n\r\n")
}

fn events(audit: &Recorder) -> Vec<serde_json::Value> {
    audit.0.lock().expect("lock").iter().map(|l| serde_json::from_str(l).expect("json")).collect()
}

/// MCP inside a TLS tunnel: the POST's calls are decided one by one; a denied
/// one gets the JSON-RPC error and the connection stays usable; the REST
/// endpoint of the same host still decides its own paths.
#[test]
fn mcp_calls_in_a_tls_tunnel_are_decided_one_by_one() {
    let s = setup(true);
    let mut c = open(s.addr, "api.test", &s.sandbox_ca).expect("tunnel");
    let post = |c: &mut Client, tool: &str| {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool}});
        let body = body.to_string();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        request(c, &head, body.as_bytes())
    };
    let (status, _, _) = post(&mut c, "read_file");
    assert_eq!(status, 200);
    let (status, head, body) = post(&mut c, "write_file");
    assert_eq!(status, 403, "{head}");
    let error: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (&error["id"], &error["error"]["data"]["tool"]),
        (&serde_json::json!(7), &serde_json::json!("write_file"))
    );
    let (status, _, _) = request(&mut c, &get("/v1/items", "api.test"), b"");
    assert_eq!(status, 200, "the connection stays usable, the REST rules apply to their paths");
    let seen = s.seen.lock().expect("lock").clone();
    let bodies: Vec<String> = seen.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    assert_eq!(seen.len(), 2, "{bodies:?}");
    assert!(bodies[0].contains("read_file") && seen[1].target == "/v1/items", "{bodies:?}");
}

#[test]
fn each_request_on_a_keepalive_connection_is_decided_on_its_own() {
    let s = setup(true);
    let mut c = open(s.addr, "api.test", &s.sandbox_ca).expect("a tunnel whose leaf the sandbox CA signed");
    let (status, _, body) = request(&mut c, &get("/v1/items?token=hunter2", "api.test"), b"");
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    // Denied by a deny rule: 403 naming it, and the connection stays usable.
    let (status, head, body) = request(&mut c, &get("/v1/secret/keys", "api.test"), b"");
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("keep-alive"), "{head}");
    let reason: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reason["reason"], "blocked by deny rule", "{reason}");
    // A deny rule on a query parameter, percent-encoded to dodge it.
    let (status, _, _) = request(&mut c, &get("/v1/search?q=%64rop%20table", "api.test"), b"");
    assert_eq!(status, 403);
    let (status, _, _) = request(&mut c, &get("/v1/search?q=select", "api.test"), b"");
    assert_eq!(status, 200);
    // No rule allows DELETE; the refused request's body is read and dropped.
    let del = "DELETE /v1/items HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\n";
    let (status, _, body) = request(&mut c, del, b"xyz");
    assert_eq!(status, 403);
    let reason: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reason["reason"], "method/path not permitted", "{reason}");
    // An allowed POST with a chunked body, and Expect: 100-continue answered by the proxy.
    let post =
        "POST /v1/items HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
    let out = c.get_mut();
    out.write_all(post.as_bytes()).expect("write");
    out.flush().expect("flush");
    let interim = http1::read_head_bytes(&mut c).expect("read").expect("interim");
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&interim));
    let (status, _, _) = request(&mut c, "", b"5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(status, 200);

    let seen = s.seen.lock().expect("lock").clone();
    let targets: Vec<(&str, &str)> = seen.iter().map(|r| (r.method.as_str(), r.target.as_str())).collect();
    assert_eq!(
        targets,
        [("GET", "/v1/items?token=hunter2"), ("GET", "/v1/search?q=select"), ("POST", "/v1/items")],
        "only allowed requests reach the upstream"
    );
    assert_eq!(seen[2].body, b"5\r\nhello\r\n0\r\n\r\n", "the chunked body is forwarded as sent");
    for r in &seen {
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(!names.contains(&"proxy-authorization") && !names.contains(&"expect"), "{names:?}");
    }
    assert!(seen[0].headers.contains(&("x-trace".into(), "7".into())), "other headers pass");

    let events = events(&s.audit);
    let http: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["class_uid"] == 4002)
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (f("http_method"), f("http_path"), f("disposition"))
        })
        .collect();
    let expect = |m: &str, p: &str, d: &str| (m.to_owned(), p.to_owned(), d.to_owned());
    assert_eq!(
        http,
        [
            expect("GET", "/v1/items", "allowed"),
            expect("GET", "/v1/secret/keys", "blocked"),
            expect("GET", "/v1/search", "blocked"),
            expect("GET", "/v1/search", "allowed"),
            expect("DELETE", "/v1/items", "blocked"),
            expect("POST", "/v1/items", "allowed"),
        ]
    );
    let all = s.audit.0.lock().expect("lock").join("\n");
    assert!(!all.contains("hunter2") && !all.contains("token") && !all.contains("select"), "no query in the audit");
}

#[test]
fn audit_mode_lets_requests_through_and_says_so() {
    let s = setup(true);
    let mut c = open(s.addr, "watch.test", &s.sandbox_ca).expect("tunnel");
    assert_eq!(request(&mut c, &get("/ok", "watch.test"), b"").0, 200);
    assert_eq!(request(&mut c, &get("/not-in-the-rules", "watch.test"), b"").0, 200);
    let dispositions: Vec<String> = events(&s.audit)
        .iter()
        .filter(|e| e["class_uid"] == 4002)
        .map(|e| e["disposition"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(dispositions, ["allowed", "audited"]);
}

#[test]
fn the_upstream_certificate_is_verified() {
    let s = setup(true);
    let mut c = open(s.addr, "forged.test", &s.sandbox_ca).expect("the sandbox side still handshakes");
    let (status, _, body) = request(&mut c, &get("/", "forged.test"), b"");
    assert_eq!(status, 502);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("TLS to the upstream failed") && text.contains("UnknownIssuer"), "{text}");
    assert!(s.seen.lock().expect("lock").is_empty(), "nothing was sent to the forged upstream");
}

#[test]
fn a_client_that_does_not_trust_the_sandbox_ca_refuses_the_leaf() {
    let s = setup(true);
    let other = SandboxCa::generate("another sandbox").expect("ca");
    let err = open(s.addr, "api.test", other.cert_pem()).expect_err("handshake fails");
    assert!(err.contains("UnknownIssuer") || err.contains("certificate"), "{err}");
}

#[test]
fn the_host_header_must_name_the_tunnelled_host() {
    let s = setup(true);
    // Positive control: the same host, spelled differently (case, default port).
    let mut c = open(s.addr, "api.test", &s.sandbox_ca).expect("tunnel");
    let (status, _, _) = request(&mut c, &get("/v1/items", "API.test:443"), b"");
    assert_eq!(status, 200, "the same host, spelled differently");
    // Missing, duplicate and non-matching Host headers: 400, audited, and the
    // connection closes; the upstream never sees them.
    let bad = [
        "GET /v1/items HTTP/1.1\r\nX-Trace: 7\r\n\r\n",
        "GET /v1/items HTTP/1.1\r\nHost: api.test\r\nHost: watch.test\r\n\r\n",
        "GET /v1/items HTTP/1.1\r\nHost: watch.test\r\n\r\n",
        "GET /v1/items HTTP/1.1\r\nHost: api.test:8443\r\n\r\n",
        "GET https://watch.test/v1/items HTTP/1.1\r\nHost: api.test\r\n\r\n",
    ];
    for head in bad {
        let mut c = open(s.addr, "api.test", &s.sandbox_ca).expect("tunnel");
        let (status, response, body) = request(&mut c, head, b"");
        assert_eq!(status, 400, "{head:?}: {response}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("Host") || text.contains("target"), "{head:?}: {text}");
        assert!(response.contains("Connection: close"), "{response}");
    }
    let upgrade = "GET /v1/ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let (status, _, _) = request(&mut c, upgrade, b"");
    assert_eq!(status, 403);
    assert_eq!(s.seen.lock().expect("lock").len(), 1, "only the positive control reached the upstream");
    let refusals: Vec<serde_json::Value> = events(&s.audit)
        .into_iter()
        .filter(|e| e["reason"].as_str().is_some_and(|r| r.contains("Host") || r.contains("target")))
        .collect();
    assert_eq!(refusals.len(), bad.len(), "each refusal is audited: {refusals:?}");
}

/// Requests pipelined inside the tunnel are decided one by one: the denied
/// one never reaches the upstream, the allowed ones around it do.
#[test]
fn pipelined_requests_in_a_tunnel_are_decided_one_by_one() {
    let s = setup(true);
    let mut c = open(s.addr, "api.test", &s.sandbox_ca).expect("tunnel");
    let all = format!(
        "{}{}{}",
        get("/v1/items", "api.test"),
        get("/v1/secret/keys", "api.test"),
        get("/v1/other", "api.test")
    );
    let out = c.get_mut();
    out.write_all(all.as_bytes()).expect("write");
    out.flush().expect("flush");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let bytes = http1::read_head_bytes(&mut c).expect("head").expect("a response");
        let parsed = http1::parse_response(&bytes).expect("parse");
        http1::copy_body(&mut c, &mut std::io::sink(), http1::response_body("GET", &parsed)).expect("body");
        statuses.push(parsed.status);
    }
    assert_eq!(statuses, [200, 403, 200]);
    let targets: Vec<String> = s.seen.lock().expect("lock").iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/v1/items", "/v1/other"]);
}

#[test]
fn streamed_responses_arrive_chunk_by_chunk() {
    let s = setup(true);
    let mut c = open(s.addr, "api.test", &s.sandbox_ca).expect("tunnel");
    let out = c.get_mut();
    out.write_all(get("/v1/stream", "api.test").as_bytes()).expect("write");
    out.flush().expect("flush");
    let bytes = http1::read_head_bytes(&mut c).expect("head").expect("response");
    assert!(bytes.starts_with(b"HTTP/1.1 200"));
    // The first chunk arrives while the upstream is still holding the last one.
    let mut first = [0u8; 11];
    c.read_exact(&mut first).expect("the first chunk before the last is sent");
    assert_eq!(&first, b"6\r\nfirst\n\r\n");
    s.release.send(()).expect("release");
    let mut rest = Vec::new();
    http1::copy_body(&mut c, &mut rest, Body::Length(15)).expect("rest");
    assert_eq!(rest, b"5\r\nlast\n\r\n0\r\n\r\n");
}

#[test]
fn a_reload_applies_to_the_next_request_on_an_open_connection() {
    let s = setup(true);
    let mut c = open(s.addr, "api.test", &s.sandbox_ca).expect("tunnel");
    let post = "POST /v1/items HTTP/1.1\r\nHost: api.test\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(request(&mut c, post, b"{}").0, 200);
    s.handle.reload(load_str("narrow.yaml", NO_POST).expect("policy")).expect("reload");
    assert_eq!(request(&mut c, post, b"{}").0, 403, "the same connection, the new revision");
    assert_eq!(request(&mut c, &get("/v1/items", "api.test"), b"").0, 200);
}

#[test]
fn without_a_ca_l7_endpoints_are_refused() {
    let s = setup(false);
    let err = open(s.addr, "api.test", &s.sandbox_ca).expect_err("refused");
    assert!(err.starts_with("HTTP/1.1 403") && err.contains("no CA"), "{err}");
}
