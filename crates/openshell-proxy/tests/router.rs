//! The privacy router through the proxy: a client in the "sandbox" speaks TLS
//! to `inference.local` (or to an endpoint its policy routes), trusting only
//! the sandbox CA; a mock backend on loopback records what reaches it.

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{Recorder, Redirect, Sink, TestCa, provider};
use openshell_policy::load_str;
use openshell_proxy::http1;
use openshell_proxy::router::{InferenceRoute, ProviderKind, Secret};
use openshell_proxy::{Caller, Fixed, Interceptor, Proxy, ProxyConfig, ProxyHandle, SandboxCa, StaticResolver};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const POLICY: &str = "version: 1
network_policies:
  openai:
    endpoints:
      - { host: llm.example.com, port: 443, routing: inference }
    binaries:
      - path: /usr/bin/python3*
";

const BACKEND_KEY: &str = "sk-backend-0123456789";
const CALLER_KEY: &str = "sk-caller-abcdef";

/// One request as the backend saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A mock inference backend (plain HTTP, keep-alive). The request's `model`
/// picks the behaviour: `stream` sends two server-sent events with the second
/// held until `release`; `stall` sends one event and then nothing; `silent`
/// never answers; anything else gets a JSON body with usage.
fn backend(seen: Arc<Mutex<Vec<Seen>>>, release: mpsc::Receiver<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let release = Arc::new(Mutex::new(release));
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let seen = Arc::clone(&seen);
            let release = Arc::clone(&release);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(tcp.try_clone().expect("clone"));
                let mut out = tcp;
                while let Ok(Some(head)) = http1::read_head_bytes(&mut reader) {
                    let req = http1::parse_request(&head).expect("head");
                    let framing = http1::request_body(&req.headers).expect("framing");
                    let body = http1::read_payload(&mut reader, framing).expect("body");
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    let model = body["model"].as_str().unwrap_or_default().to_owned();
                    seen.lock().expect("lock").push(Seen {
                        method: req.method.clone(),
                        target: req.target.clone(),
                        headers: req
                            .headers
                            .iter()
                            .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(v).into_owned()))
                            .collect(),
                        body,
                    });
                    let sse =
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                    let event = |data: &str| {
                        let e = format!("data: {data}\n\n");
                        format!("{:x}\r\n{e}\r\n", e.len())
                    };
                    match model.as_str() {
                        "stream" => {
                            let _ = write!(out, "{sse}{}", event(r#"{"choices":[{"delta":{"content":"first"}}]}"#));
                            let _ = out.flush();
                            let _ = release.lock().expect("lock").recv_timeout(Duration::from_secs(10));
                            let last = r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
                            let _ = write!(out, "{}0\r\n\r\n", event(last));
                        }
                        "stall" => {
                            let _ = write!(out, "{sse}{}", event(r#"{"choices":[{"delta":{"content":"first"}}]}"#));
                            let _ = out.flush();
                            std::thread::sleep(Duration::from_secs(4));
                            return;
                        }
                        "silent" => {
                            std::thread::sleep(Duration::from_secs(4));
                            return;
                        }
                        "once" => {
                            // Answers, then closes without saying so (a backend's keep-alive timeout).
                            let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                            let _ = out.flush();
                            return;
                        }
                        _ => {
                            let answer = r#"{"id":"r1","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":11,"completion_tokens":4}}"#;
                            let _ = write!(
                                out,
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                                answer.len()
                            );
                        }
                    }
                    let _ = out.flush();
                }
            });
        }
    });
    addr
}

/// HTTPS in front of the plain mock: each request forwarded, its whole answer back.
fn tls_front(config: Arc<rustls::ServerConfig>, plain: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                let mut tls = BufReader::new(StreamOwned::new(conn, tcp));
                while let Ok(Some(head)) = http1::read_head_bytes(&mut tls) {
                    let req = http1::parse_request(&head).expect("head");
                    let mut body = Vec::new();
                    let framing = http1::request_body(&req.headers).expect("framing");
                    http1::copy_body(&mut tls, &mut body, framing).expect("body");
                    let mut up = BufReader::new(TcpStream::connect(plain).expect("mock"));
                    up.get_mut().write_all(&head).and_then(|()| up.get_mut().write_all(&body)).expect("forward");
                    let answer = http1::read_head_bytes(&mut up).expect("answer").expect("a head");
                    let parsed = http1::parse_response(&answer).expect("parse");
                    let out = tls.get_mut();
                    out.write_all(&answer).expect("head back");
                    http1::copy_body(&mut up, out, http1::response_body(&req.method, &parsed)).expect("body back");
                    out.flush().expect("flush");
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
    ca: String,
    release: mpsc::Sender<()>,
}

fn route(kind: ProviderKind, model: Option<&str>, timeout_secs: u64) -> InferenceRoute {
    InferenceRoute {
        provider: "mock".into(),
        kind,
        base_url: "http://backend.test:8000/v1".into(),
        credential: Secret(BACKEND_KEY.into()),
        model: model.map(str::to_owned),
        timeout_secs,
    }
}

fn setup(route: Option<InferenceRoute>) -> Setup {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (release, gate) = mpsc::channel();
    let mock = backend(Arc::clone(&seen), gate);
    // HTTPS backends: one with a certificate the proxy trusts (8443), one without (8444).
    let (trusted, stranger) = (TestCa::new("test backend CA"), TestCa::new("a CA nobody trusts"));
    let https = tls_front(trusted.server("backend.test"), mock);
    let forged = tls_front(stranger.server("backend.test"), mock);
    let mut roots = RootCertStore::empty();
    roots.add(trusted.root.clone()).expect("root");
    let ip: IpAddr = "10.200.0.9".parse().expect("ip");
    let ca = SandboxCa::generate("router-test").expect("ca");
    let ca_pem = ca.cert_pem().to_owned();
    let audit = Arc::new(Recorder::default());
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().expect("addr"),
        ProxyConfig {
            sandbox: "router-test".into(),
            policy: load_str("policy.yaml", POLICY).expect("policy"),
            revision: 1,
            identify: Box::new(Fixed(Some(Caller {
                binary: "/usr/bin/python3.13".into(),
                ancestors: vec![],
                sha256: None,
            }))),
            resolver: Box::new(StaticResolver(HashMap::from([("backend.test".to_owned(), vec![ip])]))),
            connector: Box::new(Redirect(HashMap::from([
                (SocketAddr::new(ip, 8000), mock),
                (SocketAddr::new(ip, 8443), https),
                (SocketAddr::new(ip, 8444), forged),
            ]))),
            audit: Box::new(Sink(Arc::clone(&audit))),
            tls: Some(Arc::new(Interceptor::new(ca, roots).expect("interceptor"))),
            route,
            limits: Default::default(),
        },
    )
    .expect("bind");
    let addr = proxy.local_addr().expect("addr");
    let handle = proxy.handle();
    std::thread::spawn(move || proxy.serve());
    Setup { addr, handle, audit, seen, ca: ca_pem, release }
}

type Client = BufReader<StreamOwned<ClientConnection, TcpStream>>;

fn open(s: &Setup, host: &str) -> Client {
    let mut tcp = TcpStream::connect(s.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(tcp, "CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").expect("write");
    let mut reply = [0u8; 39];
    tcp.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply[..12], b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&reply));
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(s.ca.as_bytes()).expect("pem")).expect("root");
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        ClientConnection::new(Arc::new(config), ServerName::try_from(host.to_owned()).expect("name")).expect("tls");
    BufReader::new(StreamOwned::new(conn, tcp))
}

/// Sends a request to inference.local; returns (status, head, body).
fn call(c: &mut Client, method: &str, path: &str, extra: &str, body: &str) -> (u16, String, Vec<u8>) {
    call_as(c, "inference.local", method, path, extra, body)
}

/// The same with `host` as the Host header.
fn call_as(c: &mut Client, host: &str, method: &str, path: &str, extra: &str, body: &str) -> (u16, String, Vec<u8>) {
    let out = c.get_mut();
    write!(
        out,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .expect("write");
    out.flush().expect("flush");
    let head = http1::read_head_bytes(c).expect("head").expect("a response");
    let parsed = http1::parse_response(&head).expect("parse");
    let mut got = Vec::new();
    http1::copy_body(c, &mut got, http1::response_body(method, &parsed)).expect("body");
    (parsed.status, String::from_utf8_lossy(&head).into_owned(), got)
}

/// The API-activity lines, once there are at least `n` (the router writes one
/// after the response has gone to the client).
fn api_events(audit: &Recorder, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events: Vec<serde_json::Value> = audit
            .0
            .lock()
            .expect("lock")
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .filter(|e| e["class_uid"] == 6003)
            .collect();
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_callers_credentials_are_replaced_by_the_backends() {
    let s = setup(Some(route(ProviderKind::Openai, Some("served-model"), 30)));
    let mut c = open(&s, "inference.local");
    let headers = format!(
        "Authorization: Bearer {CALLER_KEY}\r\nx-api-key: {CALLER_KEY}\r\nCookie: session=abc\r\nProxy-Authorization: Basic eA==\r\nX-Custom: leak\r\nUser-Agent: OpenAI/Python 1.0\r\nOpenAI-Organization: org-1\r\n"
    );
    let (status, _, body) =
        call(&mut c, "POST", "/v1/chat/completions", &headers, r#"{"model":"gpt-4o","messages":[]}"#);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = s.seen.lock().expect("lock").clone();
    let r = &seen[0];
    assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(r.header("authorization"), Some(format!("Bearer {BACKEND_KEY}").as_str()));
    assert_eq!(r.header("host"), Some("backend.test:8000"));
    assert_eq!(r.header("user-agent"), Some("OpenAI/Python 1.0"));
    assert_eq!(r.header("openai-organization"), Some("org-1"));
    for dropped in ["x-api-key", "cookie", "proxy-authorization", "x-custom"] {
        assert_eq!(r.header(dropped), None, "{dropped} reached the backend");
    }
    assert!(!format!("{r:?}").contains(CALLER_KEY), "the caller's key never reaches the backend");
    assert_eq!(r.body["model"], "served-model", "the route's model");

    let events = api_events(&s.audit, 1);
    let e = &events[0];
    assert_eq!(
        (e["operation"].as_str(), e["provider"].as_str(), e["model"].as_str(), e["status"].as_u64()),
        (Some("POST /v1/chat/completions"), Some("mock"), Some("served-model"), Some(200))
    );
    assert_eq!((e["input_tokens"].as_u64(), e["output_tokens"].as_u64()), (Some(11), Some(4)));
    let all = s.audit.0.lock().expect("lock").join("\n");
    assert!(!all.contains(BACKEND_KEY) && !all.contains(CALLER_KEY) && !all.contains("messages"), "{all}");
}

#[test]
fn anthropic_routes_send_x_api_key_and_a_version() {
    let s = setup(Some(route(ProviderKind::Anthropic, None, 30)));
    let mut c = open(&s, "inference.local");
    let (status, _, _) = call(
        &mut c,
        "POST",
        "/v1/messages",
        &format!("x-api-key: {CALLER_KEY}\r\nanthropic-beta: tools-1\r\n"),
        r#"{"model":"claude-x","max_tokens":5,"messages":[]}"#,
    );
    assert_eq!(status, 200);
    let r = s.seen.lock().expect("lock")[0].clone();
    assert_eq!(r.target, "/v1/messages", "a base URL ending in /v1 takes the path without its own /v1");
    assert_eq!(r.header("x-api-key"), Some(BACKEND_KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("anthropic-beta"), Some("tools-1"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.body["model"], "claude-x", "no model in the route: the caller's");
}

#[test]
fn streams_arrive_chunk_by_chunk() {
    let s = setup(Some(route(ProviderKind::Openai, None, 30)));
    let mut c = open(&s, "inference.local");
    let out = c.get_mut();
    let body = r#"{"model":"stream","stream":true,"messages":[]}"#;
    write!(
        out,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    out.flush().expect("flush");
    let head = http1::read_head_bytes(&mut c).expect("head").expect("response");
    assert!(String::from_utf8_lossy(&head).contains("text/event-stream"));
    // The first event is here while the backend still holds the last.
    let mut line = String::new();
    while !line.contains("first") {
        let mut byte = [0u8; 1];
        c.read_exact(&mut byte).expect("the first event before the last is sent");
        line.push(byte[0] as char);
    }
    s.release.send(()).expect("release");
    let mut rest = String::new();
    while !rest.ends_with("0\r\n\r\n") {
        let mut byte = [0u8; 1];
        c.read_exact(&mut byte).expect("the rest of the stream");
        rest.push(byte[0] as char);
    }
    assert!(rest.contains("completion_tokens"), "{rest}");
    let events = api_events(&s.audit, 1);
    assert_eq!((events[0]["input_tokens"].as_u64(), events[0]["output_tokens"].as_u64()), (Some(5), Some(2)));
}

#[test]
fn a_stalled_backend_meets_the_idle_timeout() {
    let s = setup(Some(route(ProviderKind::Openai, None, 1)));
    // Silent before the response head: 504 after about the timeout.
    let mut c = open(&s, "inference.local");
    let started = Instant::now();
    let (status, _, body) = call(&mut c, "POST", "/v1/chat/completions", "", r#"{"model":"silent"}"#);
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // Silent between chunks: the first chunk arrives, then the connection ends.
    let mut c = open(&s, "inference.local");
    let out = c.get_mut();
    let body = r#"{"model":"stall"}"#;
    write!(
        out,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    out.flush().expect("flush");
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(String::from_utf8_lossy(&got).contains("first"));
    assert!(started.elapsed() < Duration::from_secs(3), "ended by the idle timeout: {:?}", started.elapsed());
    let events = api_events(&s.audit, 2);
    assert!(events.iter().any(|e| e["note"].as_str().is_some_and(|n| n.contains("idle timeout"))), "{events:?}");
}

#[test]
fn https_backends_are_verified() {
    let https =
        InferenceRoute { base_url: "https://backend.test:8443/v1".into(), ..route(ProviderKind::Openai, None, 30) };
    let s = setup(Some(https));
    let mut c = open(&s, "inference.local");
    let (status, _, body) = call(&mut c, "POST", "/v1/chat/completions", "", r#"{"model":"m"}"#);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(s.seen.lock().expect("lock")[0].header("authorization"), Some(format!("Bearer {BACKEND_KEY}").as_str()));
    // A backend whose certificate no trusted CA signed: 502, nothing sent to it.
    let forged =
        InferenceRoute { base_url: "https://backend.test:8444/v1".into(), ..route(ProviderKind::Openai, None, 30) };
    s.handle.set_route(Some(forged)).expect("route");
    let (status, _, body) = call(&mut c, "POST", "/v1/chat/completions", "", r#"{"model":"m"}"#);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("TLS to the backend failed") && text.contains("UnknownIssuer"), "{text}");
    assert_eq!(s.seen.lock().expect("lock").len(), 1);
}

#[test]
fn a_kept_backend_connection_that_closed_is_replaced() {
    let s = setup(Some(route(ProviderKind::Openai, Some("once"), 30)));
    let mut c = open(&s, "inference.local");
    for _ in 0..3 {
        let (status, _, body) = call(&mut c, "POST", "/v1/chat/completions", "", "{}");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(s.seen.lock().expect("lock").len(), 3);
}

#[test]
fn other_requests_are_refused_saying_what_is_supported() {
    let s = setup(Some(route(ProviderKind::Openai, None, 30)));
    let mut c = open(&s, "inference.local");
    let (status, _, body) = call(&mut c, "GET", "/v1/files", "", "");
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(v["supported"].as_array().is_some_and(|a| a.iter().any(|x| x == "POST /v1/chat/completions")), "{v}");
    let (status, _, _) = call(&mut c, "POST", "/v1/messages", "", "{}");
    assert_eq!(status, 400, "an Anthropic request on an OpenAI route");
    let (status, _, _) = call(&mut c, "GET", "/v1/models", "", "");
    assert_eq!(status, 200, "the connection stays usable");
    assert_eq!(s.seen.lock().expect("lock").len(), 1, "only the supported request reached the backend");
}

#[test]
fn without_a_route_the_router_says_how_to_set_one_and_a_new_route_applies_live() {
    let s = setup(None);
    let mut c = open(&s, "inference.local");
    let (status, _, body) = call(&mut c, "POST", "/v1/chat/completions", "", "{}");
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("openshell inference set"));
    s.handle.set_route(Some(route(ProviderKind::Openai, Some("m1"), 30))).expect("route");
    assert_eq!(call(&mut c, "POST", "/v1/chat/completions", "", "{}").0, 200);
    s.handle.set_route(Some(route(ProviderKind::Openai, Some("m2"), 30))).expect("route");
    assert_eq!(call(&mut c, "POST", "/v1/chat/completions", "", "{}").0, 200);
    let models: Vec<String> =
        s.seen.lock().expect("lock").iter().map(|r| r.body["model"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(models, ["m1", "m2"]);
    let bad = InferenceRoute { base_url: "ftp://x".into(), ..route(ProviderKind::Openai, None, 30) };
    assert!(s.handle.set_route(Some(bad)).is_err());
}

#[test]
fn endpoints_the_policy_routes_reach_the_router() {
    let s = setup(Some(route(ProviderKind::Openai, None, 30)));
    let mut c = open(&s, "llm.example.com");
    let (status, _, _) = call_as(
        &mut c,
        "llm.example.com",
        "POST",
        "/v1/embeddings",
        &format!("Authorization: Bearer {CALLER_KEY}\r\n"),
        r#"{"model":"e","input":"x"}"#,
    );
    assert_eq!(status, 200);
    let r = s.seen.lock().expect("lock")[0].clone();
    assert_eq!(r.header("authorization"), Some(format!("Bearer {BACKEND_KEY}").as_str()));
    let all = s.audit.0.lock().expect("lock").join("\n");
    assert!(all.contains("routed to the privacy router"), "{all}");
}

#[test]
fn the_providers_hosts_are_routed_while_a_route_exists() {
    let s = setup(Some(route(ProviderKind::Openai, None, 30)));
    // No policy names api.anthropic.com; with a route it is the router.
    let mut c = open(&s, "api.anthropic.com");
    let (status, _, body) =
        call_as(&mut c, "api.anthropic.com", "POST", "/v1/chat/completions", "", r#"{"model":"m"}"#);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // A WebSocket upgrade is refused with 426, so clients fall back to HTTP.
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let (status, _, _) = call_as(&mut c, "api.anthropic.com", "GET", "/v1/responses", upgrade, "");
    assert_eq!(status, 426);
    // Without a route, the policy decides (and denies): the router is not involved.
    s.handle.set_route(None).expect("no route");
    let mut tcp = TcpStream::connect(s.addr).expect("connect");
    tcp.write_all(b"CONNECT api.anthropic.com:443 HTTP/1.1\r\n\r\n").expect("write");
    let mut reply = String::new();
    let _ = tcp.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
}

/// A body larger than the router holds (and than the 32 MiB it used to
/// buffer whole) streams through, its model rewritten on the way.
#[test]
fn large_bodies_stream_through_with_the_model_rewritten() {
    let s = setup(Some(route(ProviderKind::Openai, Some("served-model"), 30)));
    let mut c = open(&s, "inference.local");
    let text = "x".repeat(40 << 20);
    let body = format!(r#"{{"messages":[{{"role":"user","content":"{text}"}}],"model":"gpt-x"}}"#);
    let (status, _, answer) = call(&mut c, "POST", "/v1/chat/completions", "", &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let seen = s.seen.lock().expect("lock").clone();
    assert_eq!(seen[0].body["model"], "served-model");
    assert_eq!(seen[0].body["messages"][0]["content"].as_str().map(str::len), Some(40 << 20));
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"), "streamed, not held");
}

/// A large body that stops being JSON part-way: 400 to the sandbox, and the
/// backend, which got its start, never sees a complete request.
#[test]
fn a_large_body_that_is_not_json_is_refused_part_way() {
    let s = setup(Some(route(ProviderKind::Openai, Some("served-model"), 30)));
    let mut c = open(&s, "inference.local");
    let body = format!(r#"{{"messages":["{}"]"#, "y".repeat(200 << 10)) + "} trailing";
    let (status, _, answer) = call(&mut c, "POST", "/v1/chat/completions", "", &body);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("not JSON"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(call(&mut c, "POST", "/v1/chat/completions", "", "{}").0, 200, "the connection stays usable");
    let seen = s.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "only the second request reached the backend whole: {seen:?}");
}
