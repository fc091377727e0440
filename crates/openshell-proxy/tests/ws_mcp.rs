//! `protocol: websocket` and `protocol: mcp` through the proxy, from the
//! attacker's side: WebSockets opened with CONNECT (plain HTTP inside the
//! tunnel, as python's `websockets` does for ws://), their text messages
//! decided one by one; MCP requests as plain HTTP through the proxy (what
//! httpx does with HTTP_PROXY), each JSON-RPC call decided. The upstreams are
//! the test's own, on loopback; every denial has its positive control beside it.

mod common;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Recorder, TestProxy};
use openshell_policy::load_str;
use openshell_proxy::http1;
use openshell_proxy::{Caller, Interceptor, ProxyHandle, SandboxCa, StaticResolver};
use rustls::RootCertStore;
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

const POLICY: &str = r#"version: 1
network_policies:
  agent:
    endpoints:
      - host: ws.test
        port: 8080
        protocol: websocket
        allowed_ips: [10.200.0.0/24]
        rules:
          - allow: { method: GET, path: "/ws/**" }
          - allow: { method: WEBSOCKET_TEXT, path: /ws/chat }
      - host: mcp.test
        port: 8080
        protocol: mcp
        path: /mcp
        allowed_ips: [10.200.0.0/24]
        mcp: { max_body_bytes: 2048 }
        rules:
          - allow: { method: initialize }
          - allow: { method: notifications/initialized }
          - allow: { method: tools/list }
          - allow: { method: tools/call, tool: "read_*" }
        deny_rules:
          - { method: tools/call, tool: read_secrets }
      - host: big.test
        port: 8080
        protocol: mcp
        path: /mcp
        allowed_ips: [10.200.0.0/24]
        mcp: { max_body_bytes: 16777216 }
        rules:
          - allow: { method: initialize }
      - host: rpc.test
        port: 8080
        protocol: json-rpc
        allowed_ips: [10.200.0.0/24]
        rules:
          - allow: { method: "*" }
        deny_rules:
          - { method: admin_shutdown }
    binaries:
      - path: /usr/bin/python3
"#;

/// The same, with the chat path's upgrade no longer allowed (a live change).
fn without_chat() -> String {
    POLICY.replace(r#"- allow: { method: GET, path: "/ws/**" }"#, "- allow: { method: GET, path: /ws/feed }")
}

/// What the upstreams saw.
#[derive(Default)]
struct Seen {
    /// WebSocket connections accepted, by path.
    upgrades: Vec<String>,
    /// Messages the WebSocket server received (text as is, binary as `<n bytes>`).
    messages: Vec<String>,
    /// JSON bodies the MCP server received.
    bodies: Vec<Value>,
}

type Shared = Arc<Mutex<Seen>>;

/// A WebSocket echo server: each text and binary message comes back.
fn ws_upstream(seen: Shared) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let path = Arc::new(Mutex::new(String::new()));
                let p = Arc::clone(&path);
                // The callback's type is tungstenite's.
                #[allow(clippy::result_large_err)]
                let callback = move |req: &tungstenite::handshake::server::Request, resp| {
                    *p.lock().expect("lock") = req.uri().path().to_owned();
                    Ok(resp)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(tcp, callback) else { return };
                seen.lock().expect("lock").upgrades.push(path.lock().expect("lock").clone());
                while let Ok(message) = ws.read() {
                    let note = match &message {
                        Message::Text(t) => t.to_string(),
                        Message::Binary(b) => format!("<{} bytes>", b.len()),
                        _ => continue,
                    };
                    seen.lock().expect("lock").messages.push(note);
                    if ws.send(message).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A minimal MCP Streamable HTTP server: `tools/call` of `read_stream`
/// answers as server-sent events, its second event held until `release`;
/// everything else gets `application/json`; GET opens an event stream.
fn mcp_upstream(seen: Shared, release: Arc<Mutex<mpsc::Receiver<()>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let seen = Arc::clone(&seen);
            let release = Arc::clone(&release);
            std::thread::spawn(move || serve_mcp(tcp, &seen, &release));
        }
    });
    addr
}

fn serve_mcp(tcp: TcpStream, seen: &Shared, release: &Mutex<mpsc::Receiver<()>>) {
    let mut r = BufReader::new(tcp);
    while let Ok(Some(bytes)) = http1::read_head_bytes(&mut r) {
        let head = http1::parse_request(&bytes).expect("request head");
        let framing = http1::request_body(&head.headers).expect("framing");
        let body = http1::read_payload(&mut r, framing).expect("body");
        let out = r.get_mut();
        if head.method == "GET" {
            if !body.is_empty() {
                seen.lock().expect("lock").bodies.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            let _ = out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 13\r\n\r\nevent: ping\n\n",
            );
            continue;
        }
        let value: Value = serde_json::from_slice(&body).expect("the proxy forwards JSON");
        seen.lock().expect("lock").bodies.push(value.clone());
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        if value["params"]["name"] == "read_stream" {
            let first = format!("data: {}\n\n", json!({"jsonrpc": "2.0", "method": "notifications/progress"}));
            let last = format!("data: {}\n\n", json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}));
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
                first.len()
            );
            let _ = out.flush();
            let _ = release.lock().expect("lock").recv_timeout(Duration::from_secs(10));
            let _ = write!(out, "{:x}\r\n{last}\r\n0\r\n\r\n", last.len());
        } else {
            let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"ok": true}}).to_string();
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                reply.len()
            );
        }
        let _ = out.flush();
    }
}

struct Setup {
    addr: SocketAddr,
    handle: ProxyHandle,
    audit: Arc<Recorder>,
    seen: Shared,
    release: mpsc::Sender<()>,
}

fn setup() -> Setup {
    let seen = Shared::default();
    let (release, gate) = mpsc::channel();
    let ws = ws_upstream(Arc::clone(&seen));
    let mcp = mcp_upstream(Arc::clone(&seen), Arc::new(Mutex::new(gate)));
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let resolver = StaticResolver(HashMap::from([
        ("ws.test".to_owned(), vec![ip("10.200.0.2")]),
        ("mcp.test".to_owned(), vec![ip("10.200.0.3")]),
        ("rpc.test".to_owned(), vec![ip("10.200.0.4")]),
        ("big.test".to_owned(), vec![ip("10.200.0.5")]),
    ]));
    // The JSON-RPC endpoint's server is the MCP one (it answers any call).
    let redirect = HashMap::from([
        (SocketAddr::new(ip("10.200.0.2"), 8080), ws),
        (SocketAddr::new(ip("10.200.0.3"), 8080), mcp),
        (SocketAddr::new(ip("10.200.0.4"), 8080), mcp),
        (SocketAddr::new(ip("10.200.0.5"), 8080), mcp),
    ]);
    let ca = SandboxCa::generate("ws-mcp-test").expect("sandbox CA");
    let tls = Arc::new(Interceptor::new(ca, RootCertStore::empty()).expect("interceptor"));
    let audit = Arc::new(Recorder::default());
    let caller = Caller { binary: "/usr/bin/python3".into(), ancestors: vec![], sha256: None };
    let (addr, handle) =
        TestProxy { sandbox: "ws-mcp-test", policy: POLICY, caller, resolver, redirect, tls: Some(tls) }.serve(&audit);
    Setup { addr, handle, audit, seen, release }
}

fn events(audit: &Recorder) -> Vec<Value> {
    audit.lines().iter().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// Waits (a little) for the audit event `pick` finds.
fn wait_event(audit: &Recorder, pick: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        if let Some(e) = events(audit).into_iter().find(&pick) {
            return e;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no such audit event in:\n{}", audit.lines().join("\n"));
}

type Ws = tungstenite::WebSocket<TcpStream>;

/// A connection to the proxy that gives up reading after 10 s.
fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    tcp
}

/// Sends `request` as written on a connection of its own; returns the
/// response's head and the reader, positioned after it.
fn send(addr: SocketAddr, request: &str) -> (Vec<u8>, BufReader<TcpStream>) {
    let mut tcp = connect(addr);
    tcp.write_all(request.as_bytes()).expect("write");
    let mut r = BufReader::new(tcp);
    let head = http1::read_head_bytes(&mut r).expect("head").expect("a response");
    (head, r)
}

/// CONNECT ws.test:8080, then a WebSocket handshake for `path` inside the tunnel.
fn websocket(addr: SocketAddr, path: &str) -> Result<Ws, tungstenite::Error> {
    let mut tcp = connect(addr);
    tcp.write_all(b"CONNECT ws.test:8080 HTTP/1.1\r\nHost: ws.test:8080\r\n\r\n").expect("write");
    let mut head = [0u8; 39];
    tcp.read_exact(&mut head).expect("CONNECT answer");
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    tungstenite::client(format!("ws://ws.test:8080{path}"), tcp).map(|(ws, _)| ws).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking socket"),
    })
}

#[test]
fn allowed_text_and_binary_frames_are_relayed_and_counted() {
    let s = setup();
    let mut ws = websocket(s.addr, "/ws/chat").expect("allowed upgrade");
    ws.send(Message::text("hello")).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::text("hello"));
    ws.send(Message::binary(vec![1u8; 70_000])).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::binary(vec![1u8; 70_000]));
    ws.close(None).expect("close");
    while ws.read().is_ok() {}
    let end = wait_event(&s.audit, |e| e["websocket"].is_object());
    assert_eq!(end["http_path"], "/ws/chat");
    let w = &end["websocket"];
    // text, binary, close each way.
    assert_eq!((w["client_frames"].as_u64(), w["server_frames"].as_u64()), (Some(3), Some(3)), "{end}");
    assert_eq!(w["client_bytes"], 5 + 70_000, "{end}");
    // The server's close may carry a status code.
    assert!(w["server_bytes"].as_u64().is_some_and(|b| (70_005..=70_007).contains(&b)), "{end}");
    assert_eq!(s.seen.lock().expect("lock").messages, ["hello", "<70000 bytes>"]);
}

#[test]
fn an_upgrade_outside_the_rules_is_refused() {
    let s = setup();
    match websocket(s.addr, "/elsewhere") {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| "a WebSocket")),
    }
    // The positive control on the same proxy.
    websocket(s.addr, "/ws/feed").expect("allowed upgrade");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.seen.lock().expect("lock").upgrades, ["/ws/feed"]);
    let blocked = wait_event(&s.audit, |e| e["disposition"] == "blocked");
    assert_eq!(blocked["http_path"], "/elsewhere");
    assert_eq!(blocked["reason"], "method/path not permitted");
}

#[test]
fn a_denied_text_message_gets_1008_while_binary_frames_pass() {
    let s = setup();
    let mut ws = websocket(s.addr, "/ws/feed").expect("the upgrade is allowed");
    ws.send(Message::binary(vec![9u8; 10])).expect("send");
    assert_eq!(ws.read().expect("binary passes"), Message::binary(vec![9u8; 10]));
    ws.send(Message::Ping(vec![1].into())).expect("ping");
    ws.send(Message::text("not here")).expect("send");
    let close = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(Message::Pong(_)) => continue,
            other => panic!("expected the proxy's close, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Policy));
    let blocked = wait_event(&s.audit, |e| e["http_method"] == "WEBSOCKET_TEXT");
    assert_eq!(blocked["disposition"], "blocked");
    assert_eq!(blocked["http_path"], "/ws/feed");
    let end = wait_event(&s.audit, |e| e["websocket"].is_object());
    assert!(end["reason"].as_str().is_some_and(|r| r.contains("1008")), "{end}");
    // Binary and ping forwarded; the text's frame seen (counted), never forwarded.
    assert_eq!(end["websocket"]["client_frames"], 3, "{end}");
    assert_eq!(s.seen.lock().expect("lock").messages, ["<10 bytes>"]);
}

#[test]
fn a_reload_that_denies_the_upgrade_path_closes_the_websocket() {
    let s = setup();
    let mut chat = websocket(s.addr, "/ws/chat").expect("chat");
    let mut feed = websocket(s.addr, "/ws/feed").expect("feed");
    chat.send(Message::text("before")).expect("send");
    assert_eq!(chat.read().expect("echo"), Message::text("before"));
    s.handle.reload(load_str("p.yaml", &without_chat()).expect("policy")).expect("reload");
    // Closed: a read ends (not by the read timeout); an echo of a message sent
    // while the close was on its way may come first.
    let _ = chat.send(Message::text("after"));
    let ended = |r: Result<Message, tungstenite::Error>| match r {
        Ok(_) => None,
        Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Some(false)
        }
        Err(_) => Some(true),
    };
    let closed = (0..3).find_map(|_| ended(chat.read()));
    assert_eq!(closed, Some(true), "the chat WebSocket is closed");
    // The feed's upgrade is still allowed: it stays open.
    feed.send(Message::binary(vec![1])).expect("send");
    assert_eq!(feed.read().expect("echo"), Message::binary(vec![1]));
}

#[test]
fn a_plain_request_to_a_websocket_endpoint_is_refused() {
    let s = setup();
    let (status, body) = post(s.addr, "ws.test", "/ws/chat", "GET", "");
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("not a WebSocket upgrade")), "{body}");
}

/// One request through the proxy as plain HTTP (absolute-form), on its own connection.
fn post(addr: SocketAddr, host: &str, path: &str, method: &str, body: &str) -> (u16, Value) {
    let (head, mut r) = send(
        addr,
        &format!(
            "{method} http://{host}:8080{path} HTTP/1.1\r\nHost: {host}:8080\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    let head = http1::parse_response(&head).expect("response");
    let text = http1::read_payload(&mut r, http1::response_body(method, &head)).expect("body");
    (head.status, serde_json::from_slice(&text).unwrap_or(Value::Null))
}

fn call(id: u64, method: &str, tool: Option<&str>) -> Value {
    let params = tool.map_or(json!({}), |t| json!({"name": t, "arguments": {}}));
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[test]
fn mcp_calls_are_decided_one_by_one_and_a_batch_is_denied_whole() {
    let s = setup();
    let (status, body) = post(s.addr, "mcp.test", "/mcp", "POST", &call(1, "initialize", None).to_string());
    assert_eq!((status, &body["result"]["ok"]), (200, &json!(true)), "{body}");
    let (status, _) = post(s.addr, "mcp.test", "/mcp", "POST", &call(2, "tools/call", Some("read_file")).to_string());
    assert_eq!(status, 200, "an allowed tool");
    let (status, body) =
        post(s.addr, "mcp.test", "/mcp", "POST", &call(3, "tools/call", Some("write_file")).to_string());
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["id"], 3, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(body["error"]["data"]["tool"], "write_file", "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("tool `write_file`")), "{body}");
    // A batch: one denied call (deny rule beats the read_* allow) denies it whole.
    let batch = json!([call(4, "tools/list", None), call(5, "tools/call", Some("read_secrets"))]);
    let (status, body) = post(s.addr, "mcp.test", "/mcp", "POST", &batch.to_string());
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("deny rule")), "{body}");
    // A response the client sends is allowed.
    let response = json!({"jsonrpc": "2.0", "id": 9, "result": {}});
    let (status, _) = post(s.addr, "mcp.test", "/mcp", "POST", &response.to_string());
    assert_eq!(status, 200);
    let bodies = s.seen.lock().expect("lock").bodies.clone();
    let ids: Vec<&Value> = bodies.iter().map(|b| &b["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2), &json!(9)], "only allowed requests reached the server");
    let blocked: Vec<Value> = events(&s.audit).into_iter().filter(|e| e["disposition"] == "blocked").collect();
    let tools: Vec<&Value> = blocked.iter().map(|e| &e["rpc_tool"]).collect();
    assert_eq!(tools, [&json!("write_file"), &json!("read_secrets")], "{blocked:?}");
    let allowed_list =
        events(&s.audit).into_iter().find(|e| e["rpc_method"] == "tools/list").expect("each call audited");
    assert_eq!(allowed_list["disposition"], "allowed");
}

#[test]
fn mcp_bodies_over_the_limit_and_malformed_ones_are_refused() {
    let s = setup();
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"pad": "x".repeat(3000)}});
    let (status, body) = post(s.addr, "mcp.test", "/mcp", "POST", &big.to_string());
    assert_eq!(status, 413, "{body}");
    let (status, body) = post(s.addr, "mcp.test", "/mcp", "POST", "{not json");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], -32700, "{body}");
    // Other paths are not the endpoint's; PUT is not MCP's.
    let (status, _) = post(s.addr, "mcp.test", "/other", "POST", &call(1, "initialize", None).to_string());
    assert_eq!(status, 403);
    let (status, _) = post(s.addr, "mcp.test", "/mcp", "PUT", "");
    assert_eq!(status, 403);
    // The positive control: a small one passes.
    let (status, _) = post(s.addr, "mcp.test", "/mcp", "POST", &call(2, "initialize", None).to_string());
    assert_eq!(status, 200);
    assert_eq!(s.seen.lock().expect("lock").bodies.len(), 1);
    let refused = wait_event(&s.audit, |e| e["reason"].as_str().is_some_and(|r| r.contains("max_body_bytes")));
    assert_eq!(refused["disposition"], "blocked");
}

/// A sandbox that opens connections with large MCP bodies and sends them slowly
/// cannot make its proxy hold more than `Limits::rpc_bodies` (64 MiB): of five
/// bodies of 16 MiB begun at once, one is answered 503 (before the bound, the
/// proxy read all five), the others wait for their bytes; once one of those
/// goes, its room is free again.
#[test]
fn held_mcp_bodies_are_bounded_across_connections() {
    let s = setup();
    let begin = |size: usize| {
        let mut tcp = connect(s.addr);
        // The refused one is answered at once; the others are read past after this.
        tcp.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
        let head = format!(
            "POST http://big.test:8080/mcp HTTP/1.1\r\nHost: big.test:8080\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n["
        );
        tcp.write_all(head.as_bytes()).expect("write");
        BufReader::new(tcp)
    };
    let mut begun: Vec<_> = (0..5).map(|_| begin(16 << 20)).collect();
    let answers: Vec<Option<u16>> = begun
        .iter_mut()
        .map(|r| http1::read_head_bytes(r).ok().flatten().map(|h| http1::parse_response(&h).expect("head").status))
        .collect();
    assert_eq!(answers.iter().filter(|a| **a == Some(503)).count(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 4, "the others wait for their bodies: {answers:?}");
    let refused = wait_event(&s.audit, |e| e["reason"].as_str().is_some_and(|r| r.contains("JSON-RPC bodies at once")));
    assert_eq!(refused["disposition"], "blocked");
    // One waiting body goes: its room comes back, and a whole request passes.
    let waiting = answers.iter().position(Option::is_none).expect("a waiting one");
    drop(begun.remove(waiting));
    let whole = call(1, "initialize", None).to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = post(s.addr, "big.test", "/mcp", "POST", &whole);
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(std::time::Instant::now() < deadline, "the room of a closed connection never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An upgrade request with a body: the upstream would read the body and the
/// proxy the bytes after it as the next request, each deciding other bytes
/// (request smuggling past the rules). Refused with 400, nothing reaches the
/// server; the same upgrade without a body is relayed.
#[test]
fn a_websocket_upgrade_with_a_body_is_refused() {
    let s = setup();
    let smuggled = "GET /elsewhere HTTP/1.1\r\nHost: ws.test:8080\r\n\r\n";
    let (head, _) = send(
        s.addr,
        &format!(
            "GET http://ws.test:8080/ws/chat HTTP/1.1\r\nHost: ws.test:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
    );
    assert_eq!(http1::parse_response(&head).expect("response").status, 400);
    assert!(s.seen.lock().expect("lock").upgrades.is_empty(), "nothing reached the server");
    websocket(s.addr, "/ws/chat").expect("the positive control: the upgrade without a body");
}

/// The event stream's GET (and the session's DELETE) carry no JSON-RPC: one with
/// a body is refused, and its body (a tool call the rules deny) never reaches
/// the server; without one it passes.
#[test]
fn an_mcp_get_or_delete_with_a_body_is_refused() {
    let s = setup();
    let denied_call = call(7, "tools/call", Some("write_file")).to_string();
    for method in ["GET", "DELETE"] {
        let (status, body) = post(s.addr, "mcp.test", "/mcp", method, &denied_call);
        assert_eq!(status, 400, "{method}: {body}");
    }
    let (status, _) = post(s.addr, "mcp.test", "/mcp", "GET", "");
    assert_eq!(status, 200, "the positive control: a GET without a body");
    assert!(s.seen.lock().expect("lock").bodies.is_empty(), "no body reached the server");
    let refused = wait_event(&s.audit, |e| e["reason"].as_str().is_some_and(|r| r.contains("undecided")));
    assert_eq!(refused["disposition"], "blocked");
}

#[test]
fn server_sent_events_stream_through() {
    let s = setup();
    let body = call(7, "tools/call", Some("read_stream")).to_string();
    let (head, mut r) = send(
        s.addr,
        &format!(
            "POST http://mcp.test:8080/mcp HTTP/1.1\r\nHost: mcp.test:8080\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(String::from_utf8_lossy(&head).contains("text/event-stream"));
    // The first event arrives while the server holds the rest.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("notifications/progress") {
        let mut byte = [0u8; 256];
        let n = r.read(&mut byte).expect("the first event before the response ends");
        assert!(n > 0, "closed early");
        seen.extend_from_slice(&byte[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("\"result\""), "the last event is still held");
    s.release.send(()).expect("release");
    let mut rest = Vec::new();
    while !String::from_utf8_lossy(&rest).contains("0\r\n\r\n") {
        let mut byte = [0u8; 256];
        let n = r.read(&mut byte).expect("the rest");
        assert!(n > 0, "closed early");
        rest.extend_from_slice(&byte[..n]);
    }
    assert!(String::from_utf8_lossy(&rest).contains("\"result\""));
    // GET (the SSE receive stream) on the endpoint's path is allowed.
    let (status, _) = post(s.addr, "mcp.test", "/mcp", "GET", "");
    assert_eq!(status, 200);
}

#[test]
fn json_rpc_calls_are_decided_by_method() {
    let s = setup();
    let (status, body) = post(s.addr, "rpc.test", "/any", "POST", &call(1, "eth_blockNumber", None).to_string());
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(s.addr, "rpc.test", "/any", "POST", &call(2, "admin_shutdown", None).to_string());
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("deny rule `admin_shutdown`")), "{body}");
    let ids: Vec<Value> = s.seen.lock().expect("lock").bodies.iter().map(|b| b["id"].clone()).collect();
    assert_eq!(ids, [json!(1)]);
}

/// A WebSocket opened as plain HTTP through the proxy (an absolute-form
/// upgrade request, no CONNECT): decided and relayed the same way.
#[test]
fn a_websocket_through_plain_http_is_relayed_and_its_text_decided() {
    use tungstenite::protocol::{Role, WebSocket};
    let s = setup();
    let open = |path: &str| {
        let (head, r) = send(
            s.addr,
            &format!(
                "GET http://ws.test:8080{path} HTTP/1.1\r\nHost: ws.test:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
        );
        let status = http1::parse_response(&head).expect("response").status;
        (status, r)
    };
    let (status, r) = open("/ws/chat");
    assert_eq!(status, 101);
    assert!(r.buffer().is_empty());
    let mut ws = WebSocket::from_raw_socket(r.into_inner(), Role::Client, None);
    ws.send(Message::text("plain")).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::text("plain"));
    let (status, r) = open("/ws/feed");
    assert_eq!(status, 101);
    let mut ws = WebSocket::from_raw_socket(r.into_inner(), Role::Client, None);
    ws.send(Message::text("denied here")).expect("send");
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Policy),
        other => panic!("expected close 1008, got {other:?}"),
    }
    let (status, _) = open("/elsewhere");
    assert_eq!(status, 403);
}
