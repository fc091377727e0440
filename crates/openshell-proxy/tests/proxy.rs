//! The proxy pipeline against servers of the test's own on loopback. The names
//! resolve (in the proxy) to private addresses the policy allows with
//! `allowed_ips`; the test's connector carries those connections to its loopback
//! servers and records what was dialled, so the SSRF rules see real private
//! addresses and the test sees that exactly the checked address is dialled.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Recorder, Sink};
use openshell_policy::load_str;
use openshell_proxy::{Caller, Fixed, Limits, Proxy, ProxyConfig, ProxyHandle, Resolve, StaticResolver};
use openshell_proxy::{Connect, Dialing};

const POLICY: &str = "version: 1
network_policies:
  api:
    endpoints:
      - { host: api.test, port: 80, allowed_ips: [10.200.0.0/24] }
      - { host: api.test, port: 443, allowed_ips: [10.200.0.0/24] }
      - { host: silent.test, port: 443, allowed_ips: [10.200.0.0/24] }
    binaries:
      - path: /usr/bin/curl
  metadata:
    endpoints:
      - { host: meta.test, port: 80 }
    binaries:
      - path: /usr/bin/curl
  rest:
    endpoints:
      - host: rest.test
        port: 80
        protocol: rest
        allowed_ips: [10.200.0.0/24]
        rules:
          - allow: { method: GET, path: /allowed }
    binaries:
      - path: /usr/bin/curl
";

/// The same without port 443 (a live change: network policies only).
const NARROWER: &str = "version: 1
network_policies:
  api:
    endpoints:
      - { host: api.test, port: 80, allowed_ips: [10.200.0.0/24] }
    binaries:
      - path: /usr/bin/curl
";

/// A static change (filesystem): refused on a live proxy.
const STATIC_CHANGE: &str = "version: 1
filesystem_policy:
  read_write: [/tmp]
network_policies:
  api:
    endpoints:
      - { host: api.test, port: 80, allowed_ips: [10.200.0.0/24] }
    binaries:
      - path: /usr/bin/curl
";

/// Counts lookups (a denied name must never be looked up).
struct Counting(StaticResolver, Arc<Mutex<Vec<String>>>);

impl Resolve for Counting {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        self.1.lock().expect("lock").push(host.to_owned());
        self.0.resolve(host, port)
    }
}

/// Carries connections for the private test addresses to loopback servers;
/// a dial to [`SILENT`] never completes (an address that drops SYNs).
struct Redirect(HashMap<SocketAddr, SocketAddr>, Arc<Mutex<Vec<SocketAddr>>>);

/// Where silent.test resolves.
const SILENT: &str = "10.200.0.9";

impl Connect for Redirect {
    fn connect(&self, addr: SocketAddr) -> Dialing {
        self.1.lock().expect("lock").push(addr);
        if addr.ip().to_string() == SILENT {
            return Box::pin(std::future::pending());
        }
        common::redirect(&self.0, addr)
    }
}

/// An HTTP server answering `hello` and recording each request head.
fn http_server(heads: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            heads.lock().expect("lock").push(head);
            let mut conn = conn;
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
        }
    });
    addr
}

/// A server echoing what it reads (behind a CONNECT tunnel).
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = conn.try_clone().expect("clone");
                let mut conn = conn;
                let _ = std::io::copy(&mut conn, &mut out);
            });
        }
    });
    addr
}

/// What the keep-alive server saw: (connection number, target, Host headers).
type Seen = Arc<Mutex<Vec<(usize, String, Vec<String>)>>>;

/// An HTTP server keeping connections alive, answering `ok:TARGET` and
/// recording each request as it parses it.
fn keepalive_server(seen: Seen) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().flatten().enumerate() {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut out = conn;
                while let Ok(Some(head)) = openshell_proxy::http1::read_head_bytes(&mut reader) {
                    let Ok(req) = openshell_proxy::http1::parse_request(&head) else { return };
                    let hosts = req
                        .headers
                        .iter()
                        .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .collect();
                    seen.lock().expect("lock").push((n, req.target.clone(), hosts));
                    let body = format!("ok:{}", req.target);
                    let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                }
            });
        }
    });
    addr
}

struct Setup {
    addr: SocketAddr,
    seen: Seen,
    handle: ProxyHandle,
    audit: Arc<Recorder>,
    lookups: Arc<Mutex<Vec<String>>>,
    dialled: Arc<Mutex<Vec<SocketAddr>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

fn setup(caller: Option<&str>) -> Setup {
    setup_with(caller, Limits::default())
}

fn setup_with(caller: Option<&str>, limits: Limits) -> Setup {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let http = http_server(Arc::clone(&heads));
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let rest = keepalive_server(Arc::clone(&seen));
    let echo = echo_server();
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let resolver = StaticResolver(HashMap::from([
        ("api.test".to_owned(), vec![ip("10.200.0.2")]),
        ("meta.test".to_owned(), vec![ip("169.254.169.254")]),
        ("rest.test".to_owned(), vec![ip("10.200.0.5")]),
        ("silent.test".to_owned(), vec![ip(SILENT)]),
    ]));
    let lookups = Arc::new(Mutex::new(Vec::new()));
    let dialled = Arc::new(Mutex::new(Vec::new()));
    let redirect = HashMap::from([
        (SocketAddr::new(ip("10.200.0.2"), 80), http),
        (SocketAddr::new(ip("10.200.0.2"), 443), echo),
        (SocketAddr::new(ip("169.254.169.254"), 80), http),
        (SocketAddr::new(ip("10.200.0.5"), 80), rest),
    ]);
    let audit = Arc::new(Recorder::default());
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().expect("addr"),
        ProxyConfig {
            sandbox: "test-sandbox".into(),
            policy: load_str("policy.yaml", POLICY).expect("policy"),
            revision: 1,
            identify: Box::new(Fixed(caller.map(|b| Caller {
                binary: b.into(),
                ancestors: vec!["/usr/bin/bash".into()],
                sha256: None,
            }))),
            resolver: Box::new(Counting(resolver, Arc::clone(&lookups))),
            connector: Box::new(Redirect(redirect, Arc::clone(&dialled))),
            audit: Box::new(Sink(Arc::clone(&audit))),
            tls: None,
            route: None,
            limits,
        },
    )
    .expect("bind proxy");
    let addr = proxy.local_addr().expect("addr");
    let handle = proxy.handle();
    std::thread::spawn(move || proxy.serve());
    Setup { addr, seen, handle, audit, lookups, dialled, heads }
}

/// Sends `request` to the proxy and reads one answer (head and body).
fn ask(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut r = BufReader::new(s);
    let Ok(Some(head)) = openshell_proxy::http1::read_head_bytes(&mut r) else { return String::new() };
    let mut out = head.clone();
    if let Ok(parsed) = openshell_proxy::http1::parse_response(&head) {
        let framing = openshell_proxy::http1::response_body("GET", &parsed);
        let _ = openshell_proxy::http1::copy_body(&mut r, &mut out, framing);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_body(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {response}"))
}

/// A CONNECT tunnel to api.test:443 through the proxy, established.
fn tunnel(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n").expect("write");
    let mut reply = [0u8; 39];
    s.read_exact(&mut reply).expect("read");
    assert_eq!(&reply[..], b"HTTP/1.1 200 Connection Established\r\n\r\n");
    s
}

fn events(audit: &Recorder) -> Vec<serde_json::Value> {
    audit.0.lock().expect("lock").iter().map(|l| serde_json::from_str(l).expect("json")).collect()
}

#[test]
fn connect_tunnels_to_the_checked_address() {
    let t = setup(Some("/usr/bin/curl"));
    let mut s = tunnel(t.addr);
    s.write_all(b"ping through the tunnel").expect("write");
    let mut echoed = [0u8; 23];
    s.read_exact(&mut echoed).expect("echo");
    assert_eq!(&echoed[..], b"ping through the tunnel");
    assert_eq!(*t.dialled.lock().expect("lock"), ["10.200.0.2:443".parse::<SocketAddr>().expect("addr")]);
    let e = &events(&t.audit)[0];
    assert_eq!((e["class_uid"].as_u64(), e["disposition"].as_str()), (Some(4001), Some("allowed")), "{e}");
    assert_eq!((e["policy"].as_str(), e["dst_ip"].as_str()), (Some("api"), Some("10.200.0.2")), "{e}");
    assert_eq!(e["actor_process"], "/usr/bin/curl");
}

#[test]
fn plain_http_is_forwarded_without_proxy_headers_and_audited_without_query() {
    let t = setup(Some("/usr/bin/curl"));
    let answer = ask(
        t.addr,
        "GET http://api.test/v1/items?token=s3cret HTTP/1.1\r\nHost: api.test\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("hello"), "{answer}");
    let heads = t.heads.lock().expect("lock");
    assert!(heads[0].starts_with("GET /v1/items?token=s3cret HTTP/1.1\r\n"), "{heads:?}");
    assert!(!heads[0].to_ascii_lowercase().contains("proxy-"), "proxy headers are not forwarded: {heads:?}");
    let e = &events(&t.audit)[0];
    assert_eq!((e["class_uid"].as_u64(), e["http_method"].as_str()), (Some(4002), Some("GET")), "{e}");
    assert_eq!(e["http_path"], "/v1/items");
    let all = t.audit.0.lock().expect("lock").join("\n");
    assert!(!all.contains("s3cret") && !all.contains("token"), "no query strings in audit: {all}");
}

#[test]
fn denials_answer_403_with_the_reason_and_are_never_resolved() {
    let t = setup(Some("/usr/bin/wget"));
    let answer = ask(t.addr, "CONNECT api.test:443 HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden"), "{answer}");
    assert_eq!(json_body(&answer)["reason"], "binary not allowed");
    let answer = ask(t.addr, "GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(json_body(&answer)["reason"], "no matching policy");
    assert!(t.lookups.lock().expect("lock").is_empty(), "denied names are not looked up");
    assert!(t.dialled.lock().expect("lock").is_empty());
    let e = events(&t.audit);
    assert_eq!(e.len(), 2);
    assert!(e.iter().all(|e| e["disposition"] == "blocked"), "{e:?}");
    assert_eq!(e[0]["reason"], "binary not allowed");

    // An unidentified caller is denied (fail closed).
    let t = setup(None);
    let answer = ask(t.addr, "CONNECT api.test:443 HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(t.dialled.lock().expect("lock").is_empty());
}

#[test]
fn ssrf_addresses_are_refused_after_resolution() {
    let t = setup(Some("/usr/bin/curl"));
    // meta.test is allowed by name, but resolves to the metadata address.
    let answer = ask(t.addr, "GET http://meta.test/latest/meta-data HTTP/1.1\r\nHost: meta.test\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(json_body(&answer)["reason"], "SSRF-blocked address");
    assert_eq!(*t.lookups.lock().expect("lock"), ["meta.test"]);
    assert!(t.dialled.lock().expect("lock").is_empty(), "the refused address is never dialled");
    // An IP literal of a private range not in allowed_ips: no policy names it.
    let answer = ask(t.addr, "CONNECT 10.200.0.2:443 HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[test]
fn bad_requests_get_400() {
    let t = setup(Some("/usr/bin/curl"));
    for request in [
        "GET /relative HTTP/1.1\r\n\r\n",
        "CONNECT nohostport HTTP/1.1\r\n\r\n",
        "GET https://api.test/ HTTP/1.1\r\n\r\n",
    ] {
        let answer = ask(t.addr, request);
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
        assert!(json_body(&answer)["error"].is_string());
    }
}

#[test]
fn reload_swaps_the_policy_and_closes_tunnels_it_denies() {
    let t = setup(Some("/usr/bin/curl"));
    let mut s = tunnel(t.addr);
    while t.handle.open_connections() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A static change is refused and nothing changes.
    let refused = t.handle.reload(load_str("static.yaml", STATIC_CHANGE).expect("policy"));
    let message = refused.expect_err("a filesystem change is static").to_string();
    assert!(message.contains("filesystem"), "{message}");
    assert_eq!(t.handle.revision(), 1);
    // A network-only change applies at once and closes the tunnel it denies.
    let revision = t.handle.reload(load_str("narrower.yaml", NARROWER).expect("policy")).expect("live change");
    assert_eq!((revision, t.handle.revision()), (2, 2));
    let mut rest = Vec::new();
    let n = s.read_to_end(&mut rest).expect("the tunnel is closed, not hung");
    assert_eq!(n, 0);
    let answer = ask(t.addr, "CONNECT api.test:443 HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(json_body(&answer)["revision"], 2);
    let answer = ask(t.addr, "GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n");
    assert!(answer.ends_with("hello"), "port 80 is still allowed: {answer}");
    let closed =
        events(&t.audit).into_iter().find(|e| e["reason"].as_str().is_some_and(|r| r.contains("new revision")));
    assert!(closed.is_some(), "closing the tunnel is audited");
}

/// Reads one response (Content-Length framed) from a kept-alive connection:
/// (status, body); `None` when the proxy closed or said nothing in time.
fn response(r: &mut BufReader<TcpStream>) -> Option<(u16, String)> {
    let head = openshell_proxy::http1::read_head_bytes(r).ok()??;
    let parsed = openshell_proxy::http1::parse_response(&head).ok()?;
    let mut body = Vec::new();
    let framing = openshell_proxy::http1::response_body("GET", &parsed);
    openshell_proxy::http1::copy_body(r, &mut body, framing).ok()?;
    Some((parsed.status, String::from_utf8_lossy(&body).into_owned()))
}

fn keepalive(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    BufReader::new(s)
}

fn get(url: &str, host: &str) -> String {
    format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// Two requests in one write: the first is allowed and answered, the second
/// is denied by the endpoint's rules, answered 403, and never reaches the
/// upstream (today's proxy forwarded both, the second undecided).
#[test]
fn pipelined_requests_are_decided_one_by_one() {
    let t = setup(Some("/usr/bin/curl"));
    let mut c = keepalive(t.addr);
    let both =
        format!("{}{}", get("http://rest.test/allowed", "rest.test"), get("http://rest.test/admin", "rest.test"));
    c.get_mut().write_all(both.as_bytes()).expect("write");
    assert_eq!(response(&mut c), Some((200, "ok:/allowed".to_owned())));
    let (status, body) = response(&mut c).expect("an answer to the second request");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("method/path not permitted"), "{body}");
    let targets: Vec<String> = t.seen.lock().expect("lock").iter().map(|(_, t, _)| t.clone()).collect();
    assert_eq!(targets, ["/allowed"], "the denied request never reached the upstream");
    let http: Vec<(String, String)> = events(&t.audit)
        .iter()
        .filter(|e| e["class_uid"] == 4002)
        .map(|e| {
            (
                e["http_path"].as_str().unwrap_or_default().to_owned(),
                e["disposition"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(http, [("/allowed".to_owned(), "allowed".to_owned()), ("/admin".to_owned(), "blocked".to_owned())]);
}

/// Allowed requests reuse the kept-alive connection (and the proxy's
/// connection to the upstream); a request for another host on the same
/// connection is decided and connected on its own.
#[test]
fn keep_alive_connections_carry_one_decided_request_after_another() {
    let t = setup(Some("/usr/bin/curl"));
    let mut c = keepalive(t.addr);
    for _ in 0..3 {
        c.get_mut().write_all(get("http://rest.test/allowed", "rest.test").as_bytes()).expect("write");
        assert_eq!(response(&mut c), Some((200, "ok:/allowed".to_owned())), "{:?}", t.audit.lines());
    }
    let connections: Vec<usize> = t.seen.lock().expect("lock").iter().map(|(n, _, _)| *n).collect();
    assert_eq!(connections, [0, 0, 0], "one upstream connection for the three");
    // Another host on the same connection: its own decision and connection.
    c.get_mut().write_all(get("http://api.test/v1", "api.test").as_bytes()).expect("write");
    assert_eq!(response(&mut c), Some((200, "hello".to_owned())));
    let heads = t.heads.lock().expect("lock").clone();
    assert!(heads[0].starts_with("GET /v1 HTTP/1.1\r\n"), "{heads:?}");
    // api.test closed its connection (Connection: close): the proxy's answer says so.
    let mut c = keepalive(t.addr);
    c.get_mut().write_all(get("http://other.test/", "other.test").as_bytes()).expect("write");
    assert_eq!(response(&mut c).map(|(s, _)| s), Some(403));
    c.get_mut().write_all(get("http://rest.test/allowed", "rest.test").as_bytes()).expect("write");
    assert_eq!(response(&mut c), Some((200, "ok:/allowed".to_owned())), "a denial keeps the connection usable");
}

/// A request must carry exactly one Host header naming its target (case and
/// the default port aside); otherwise 400, audited, and nothing is forwarded.
#[test]
fn the_host_header_must_name_the_target() {
    let t = setup(Some("/usr/bin/curl"));
    for request in [
        "GET http://rest.test/allowed HTTP/1.1\r\nHost: admin.internal.test\r\n\r\n",
        "GET http://rest.test/allowed HTTP/1.1\r\nAccept: */*\r\n\r\n",
        "GET http://rest.test/allowed HTTP/1.1\r\nHost: rest.test\r\nHost: admin.internal.test\r\n\r\n",
        "GET http://rest.test/allowed HTTP/1.1\r\nHost: rest.test:8080\r\n\r\n",
    ] {
        let answer = ask(t.addr, request);
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
        assert!(json_body(&answer)["error"].as_str().is_some_and(|e| e.contains("Host")), "{answer}");
    }
    assert!(t.seen.lock().expect("lock").is_empty(), "nothing was forwarded: {:?}", t.seen.lock().expect("lock"));
    let refused = events(&t.audit).iter().filter(|e| e["reason"].as_str().is_some_and(|r| r.contains("Host"))).count();
    assert_eq!(refused, 4, "{:?}", t.audit.lines());
    // Positive control: the same host, spelled differently.
    let mut c = keepalive(t.addr);
    c.get_mut().write_all(get("http://rest.test/allowed", "REST.test:80").as_bytes()).expect("write");
    assert_eq!(response(&mut c), Some((200, "ok:/allowed".to_owned())));
    assert_eq!(t.seen.lock().expect("lock")[0].2, ["REST.test:80"]);
}

/// Header lines the proxy cannot read one way only are refused before
/// anything is forwarded.
#[test]
fn ambiguous_heads_are_refused() {
    let t = setup(Some("/usr/bin/curl"));
    for request in [
        &b"GET http://rest.test/allowed HTTP/1.1\r\nHost: rest.test\r\nX-A: 1\r\n folded\r\n\r\n"[..],
        b"GET http://rest.test/allowed HTTP/1.1\r\nHost: rest.test\rX-A: 1\r\n\r\n",
        b"GET http://rest.test/allowed HTTP/1.1\r\nHost: rest.test\r\nX-A: \xff\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(t.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(request).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 400"), "{:?}: {out}", String::from_utf8_lossy(request));
    }
    let long =
        format!("GET http://rest.test/allowed HTTP/1.1\r\nHost: rest.test\r\nX-A: {}\r\n\r\n", "a".repeat(20_000));
    assert!(ask(t.addr, &long).starts_with("HTTP/1.1 431"));
    assert!(t.seen.lock().expect("lock").is_empty());
}

/// The proxy holds at most its limit of connections (the next gets a 503
/// saying so, audited); a connection that sends nothing, or a head too
/// slowly, is closed at the head timeout (the slow one with a 408).
#[test]
fn connections_are_bounded_in_number_and_time() {
    let limits = Limits { max_connections: 3, head_timeout: Duration::from_millis(800), ..Limits::default() };
    let t = setup_with(Some("/usr/bin/curl"), limits);
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(t.addr).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(100));
    let answer = ask(t.addr, "GET http://rest.test/allowed HTTP/1.1\r\nHost: rest.test\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("limit 3"), "{answer}");
    assert!(
        t.audit.lines().iter().any(|l| l.contains("over the limit of 3 open connections")),
        "{:?}",
        t.audit.lines()
    );
    // The idle ones are closed at the head timeout, silently.
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut rest = Vec::new();
        let started = std::time::Instant::now();
        assert_eq!(s.read_to_end(&mut rest).expect("closed, not hung"), 0);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    // A head sent a byte at a time is cut off with a 408.
    let mut slow = TcpStream::connect(t.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let mut answer = Vec::new();
    for b in b"GET http://rest.test/allowed HTTP/1.1\r\nHost: rest.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(n) = slow.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Positive control: a whole request in time is served.
    let mut c = keepalive(t.addr);
    c.get_mut().write_all(get("http://rest.test/allowed", "rest.test").as_bytes()).expect("write");
    assert_eq!(response(&mut c), Some((200, "ok:/allowed".to_owned())));
}

/// A dial that never completes holds no thread: with more of them waiting than
/// the proxy has blocking threads (four), a request to a server that answers is
/// still served at once.
#[test]
fn dials_that_hang_hold_no_thread() {
    let t = setup(Some("/usr/bin/curl"));
    let silent: SocketAddr = format!("{SILENT}:443").parse().expect("addr");
    let hanging: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(t.addr).expect("connect");
            s.write_all(b"CONNECT silent.test:443 HTTP/1.1\r\nHost: silent.test:443\r\n\r\n").expect("write");
            s
        })
        .collect();
    let dialling = || t.dialled.lock().expect("lock").iter().filter(|a| **a == silent).count();
    let started = std::time::Instant::now();
    while dialling() < 4 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(dialling() >= 4, "the silent dials began: {:?}", t.dialled.lock().expect("lock"));
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let answer = ask(t.addr, "GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n");
    assert!(answer.ends_with("hello"), "served while {} dials hang: {answer:?}", dialling());
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(dialling(), 8, "every silent dial is under way, none waits for a thread");
    drop(hanging);
}
