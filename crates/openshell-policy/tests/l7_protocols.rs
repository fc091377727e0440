//! Decisions on `websocket`, `mcp` and `json-rpc` endpoints: the upgrade
//! request and text messages of a WebSocket, each JSON-RPC call (and MCP tool)
//! of a request body; deny rules beating allow rules; the explanations.

use openshell_policy::{Decision, Engine, HttpRequest, Message, Policy, Reason, Request, RpcCall, Verdict, load_str};

const POLICY: &str = r#"version: 1
network_policies:
  ws:
    endpoints:
      - host: ws.test
        port: 443
        protocol: websocket
        rules:
          - allow: { method: GET, path: "/ws/**" }
          - allow: { method: WEBSOCKET_TEXT, path: /ws/chat }
          - allow: { method: WEBSOCKET_TEXT, path: /ws/admin }
        deny_rules:
          - { method: WEBSOCKET_TEXT, path: /ws/admin }
      - host: feed.test
        port: 443
        protocol: websocket
        access: read-only
    binaries:
      - path: /usr/bin/python3
  tools:
    endpoints:
      - host: mcp.test
        port: 443
        protocol: mcp
        path: /mcp
        rules:
          - allow: { method: initialize }
          - allow: { method: notifications/initialized }
          - allow: { method: "tools/*" }
          - allow: { method: tools/call, tool: "read_*" }
          - allow: { method: tools/call, tool: { any: [search, fetch] } }
        deny_rules:
          - { method: tools/call, tool: read_secrets }
      - host: all.test
        port: 443
        protocol: mcp
        mcp: { allow_all_known_mcp_methods: true }
        rules:
          - allow: { tool: search }
      - host: loose.test
        port: 443
        protocol: mcp
        mcp: { strict_tool_names: false }
        rules:
          - allow: { method: tools/call, tool: "odd name" }
      - host: rpc.test
        port: 443
        protocol: json-rpc
        path: /rpc
        rules:
          - allow: { method: "*" }
        deny_rules:
          - { method: admin_shutdown }
      - host: audit.test
        port: 443
        protocol: json-rpc
        enforcement: audit
        rules:
          - allow: { method: eth_call }
    binaries:
      - path: /usr/bin/python3
"#;

fn policy() -> Policy {
    load_str("policy.yaml", POLICY).unwrap_or_else(|e| panic!("the test policy loads:\n{e}"))
}

fn request<'a>(host: &'a str, http: HttpRequest<'a>) -> Request<'a> {
    Request { http: Some(http), ..Request::l4(host, 443, "/usr/bin/python3") }
}

fn decide<'e>(engine: &'e Engine, host: &str, http: HttpRequest<'_>) -> (Decision<'e>, String) {
    let req = request(host, http);
    let d = engine.decide(&req);
    let text = d.explain(engine, &req);
    (d, text)
}

fn ws(method: &'static str, path: &'static str, message: Message<'static>) -> HttpRequest<'static> {
    HttpRequest { method, path, query: &[], message }
}

fn call(path: &'static str, method: &'static str, tool: Option<&'static str>) -> HttpRequest<'static> {
    HttpRequest { method: "POST", path, query: &[], message: Message::Rpc(RpcCall { method, tool }) }
}

#[track_caller]
fn assert_verdict(d: &Decision<'_>, text: &str, verdict: Verdict, reason: Option<Reason>) {
    assert_eq!((d.verdict, d.reason), (verdict, reason), "{text}");
}

#[test]
fn websocket_upgrade_and_text_messages() {
    let p = policy();
    let e = Engine::new(&p);
    let (d, t) = decide(&e, "ws.test", ws("GET", "/ws/chat", Message::WebSocketUpgrade));
    assert_verdict(&d, &t, Verdict::Allow, None);
    assert!(d.inspect && d.rpc.is_none());
    // The text rule is per path: chat yes, the upgrade-only path no.
    let (d, t) = decide(&e, "ws.test", ws("GET", "/ws/chat", Message::WebSocketText));
    assert_verdict(&d, &t, Verdict::Allow, None);
    let (d, t) = decide(&e, "ws.test", ws("GET", "/ws/feed", Message::WebSocketUpgrade));
    assert_verdict(&d, &t, Verdict::Allow, None);
    let (d, t) = decide(&e, "ws.test", ws("GET", "/ws/feed", Message::WebSocketText));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::MethodPathNotPermitted));
    assert!(t.contains("WEBSOCKET_TEXT /ws/feed is not permitted"), "{t}");
    // Deny beats allow.
    let (d, t) = decide(&e, "ws.test", ws("GET", "/ws/admin", Message::WebSocketText));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::BlockedByDenyRule));
    assert!(t.contains("deny rule `WEBSOCKET_TEXT /ws/admin`"), "{t}");
    // ... and sees the canonical path.
    let (d, t) = decide(&e, "ws.test", ws("GET", "/ws/x/../admin/", Message::WebSocketText));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::BlockedByDenyRule));
    // An upgrade outside the rules.
    let (d, t) = decide(&e, "ws.test", ws("GET", "/other", Message::WebSocketUpgrade));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::MethodPathNotPermitted));
    // A plain request is never a websocket endpoint's, even on an allowed path.
    let (d, t) = decide(&e, "ws.test", ws("GET", "/ws/chat", Message::Plain));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::MethodPathNotPermitted));
    assert!(t.contains("is not a WebSocket upgrade"), "{t}");
}

#[test]
fn websocket_access_presets() {
    let p = policy();
    let e = Engine::new(&p);
    let (d, t) = decide(&e, "feed.test", ws("GET", "/anything", Message::WebSocketUpgrade));
    assert_verdict(&d, &t, Verdict::Allow, None);
    let (d, t) = decide(&e, "feed.test", ws("GET", "/anything", Message::WebSocketText));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::MethodPathNotPermitted));
    let rw = POLICY.replace("access: read-only", "access: read-write");
    let p = load_str("rw.yaml", &rw).expect("read-write loads");
    let e = Engine::new(&p);
    let (d, t) = decide(&e, "feed.test", ws("GET", "/anything", Message::WebSocketText));
    assert_verdict(&d, &t, Verdict::Allow, None);
}

#[test]
fn mcp_requests_by_http_method_and_path() {
    let p = policy();
    let e = Engine::new(&p);
    // A POST to the endpoint's path: allowed, its body to be read as JSON-RPC.
    let (d, t) = decide(&e, "mcp.test", HttpRequest::plain("POST", "/mcp", &[]));
    assert_verdict(&d, &t, Verdict::Allow, None);
    assert_eq!(d.rpc.map(|r| r.max_body_bytes()), Some(65536));
    assert!(t.contains("read as JSON-RPC"), "{t}");
    // The SSE stream and session end pass without a body to read.
    for method in ["GET", "DELETE"] {
        let (d, t) = decide(&e, "mcp.test", HttpRequest::plain(method, "/mcp", &[]));
        assert_verdict(&d, &t, Verdict::Allow, None);
        assert!(d.rpc.is_none());
    }
    let (d, t) = decide(&e, "mcp.test", HttpRequest::plain("PUT", "/mcp", &[]));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::MethodPathNotPermitted));
    // Another path is not this endpoint's.
    let (d, t) = decide(&e, "mcp.test", HttpRequest::plain("POST", "/other", &[]));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::MethodPathNotPermitted));
    assert_eq!(d.policy, Some("tools"));
    // json-rpc takes POST only.
    let (d, t) = decide(&e, "rpc.test", HttpRequest::plain("GET", "/rpc", &[]));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::MethodPathNotPermitted));
}

#[test]
fn mcp_calls_and_tools() {
    let p = policy();
    let e = Engine::new(&p);
    let cases: &[(&str, Option<&str>, Verdict, Option<Reason>)] = &[
        ("initialize", None, Verdict::Allow, None),
        ("tools/list", None, Verdict::Allow, None),
        ("tools/call", Some("read_file"), Verdict::Allow, None),
        ("tools/call", Some("search"), Verdict::Allow, None),
        ("tools/call", Some("fetch"), Verdict::Allow, None),
        // A rule without `tool` (`tools/*`) allows every tool of the methods it matches.
        ("tools/call", Some("write_file"), Verdict::Allow, None),
        ("tools/call", Some("read_secrets"), Verdict::Deny, Some(Reason::BlockedByDenyRule)),
        ("tools/call", Some("bad name"), Verdict::Deny, Some(Reason::InvalidToolName)),
        ("resources/read", None, Verdict::Deny, Some(Reason::CallNotPermitted)),
        ("ping", None, Verdict::Deny, Some(Reason::CallNotPermitted)),
    ];
    for &(method, tool, verdict, reason) in cases {
        let (d, t) = decide(&e, "mcp.test", call("/mcp", method, tool));
        assert_verdict(&d, &t, verdict, reason);
    }
    let (_, t) = decide(&e, "mcp.test", call("/mcp", "tools/call", Some("read_secrets")));
    assert!(t.contains("deny rule `tools/call tool=read_secrets` of policy 'tools'"), "{t}");
    let (_, t) = decide(&e, "mcp.test", call("/mcp", "tools/call", Some("bad name")));
    assert!(t.contains("tool name `bad name`"), "{t}");
}

#[test]
fn mcp_tool_rules_without_a_method_glob() {
    // Without `tools/*`, a tool rule is the whole of tools/call.
    let narrow = POLICY.replace("          - allow: { method: \"tools/*\" }\n", "");
    let p = load_str("narrow.yaml", &narrow).expect("loads");
    let e = Engine::new(&p);
    let (d, t) = decide(&e, "mcp.test", call("/mcp", "tools/call", Some("write_file")));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::CallNotPermitted));
    assert!(t.contains("tools/call of tool `write_file` is not permitted"), "{t}");
    let (d, t) = decide(&e, "mcp.test", call("/mcp", "tools/call", Some("read_file")));
    assert_verdict(&d, &t, Verdict::Allow, None);
    let (d, t) = decide(&e, "mcp.test", call("/mcp", "tools/call", None));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::CallNotPermitted));
}

#[test]
fn allow_all_known_methods_narrowed_by_tool_rules() {
    let p = policy();
    let e = Engine::new(&p);
    for method in ["initialize", "ping", "tools/list", "resources/read", "logging/setLevel", "completion/complete"] {
        let (d, t) = decide(&e, "all.test", call("/", method, None));
        assert_verdict(&d, &t, Verdict::Allow, None);
    }
    let (d, t) = decide(&e, "all.test", call("/", "tools/call", Some("search")));
    assert_verdict(&d, &t, Verdict::Allow, None);
    let (d, t) = decide(&e, "all.test", call("/", "tools/call", Some("delete_all")));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::CallNotPermitted));
    // An unknown method is not among the known ones.
    let (d, t) = decide(&e, "all.test", call("/", "x/custom", None));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::CallNotPermitted));
    // Without tool rules, every tool.
    let open = POLICY.replace("        rules:\n          - allow: { tool: search }\n", "");
    let p = load_str("open.yaml", &open).expect("loads");
    let e = Engine::new(&p);
    let (d, t) = decide(&e, "all.test", call("/", "tools/call", Some("delete_all")));
    assert_verdict(&d, &t, Verdict::Allow, None);
}

#[test]
fn strict_tool_names_off_lets_any_name_be_matched_literally() {
    let p = policy();
    let e = Engine::new(&p);
    let (d, t) = decide(&e, "loose.test", call("/", "tools/call", Some("odd name")));
    assert_verdict(&d, &t, Verdict::Allow, None);
    let (d, t) = decide(&e, "loose.test", call("/", "tools/call", Some("odd name2")));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::CallNotPermitted));
}

#[test]
fn json_rpc_any_method_and_deny_rules() {
    let p = policy();
    let e = Engine::new(&p);
    let (d, t) = decide(&e, "rpc.test", call("/rpc", "eth_blockNumber", None));
    assert_verdict(&d, &t, Verdict::Allow, None);
    let (d, t) = decide(&e, "rpc.test", call("/rpc", "admin_shutdown", None));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::BlockedByDenyRule));
    assert!(t.contains("deny rule `admin_shutdown`"), "{t}");
    // Enforcement audit: a call the rules miss is allowed and logged.
    let (d, t) = decide(&e, "audit.test", call("/", "eth_sendTransaction", None));
    assert_verdict(&d, &t, Verdict::Audit, Some(Reason::CallNotPermitted));
    let (d, t) = decide(&e, "audit.test", call("/", "eth_call", None));
    assert_verdict(&d, &t, Verdict::Allow, None);
}

#[test]
fn l4_decisions_on_these_protocols_inspect_and_say_so() {
    let p = policy();
    let e = Engine::new(&p);
    for (host, words) in
        [("ws.test", "protocol websocket"), ("mcp.test", "protocol mcp"), ("rpc.test", "protocol json-rpc")]
    {
        let req = Request::l4(host, 443, "/usr/bin/python3");
        let d = e.decide(&req);
        let t = d.explain(&e, &req);
        assert!(d.inspect && d.is_allowed(), "{host}: {t}");
        assert!(t.contains(words), "{t}");
    }
    // A rest endpoint's rules never take a WebSocket upgrade or a text message.
    let rest = "version: 1\nnetwork_policies:\n  r:\n    endpoints:\n      - { host: r.test, port: 443, protocol: rest, access: full }\n    binaries: [{ path: /usr/bin/python3 }]\n";
    let p = load_str("rest.yaml", rest).expect("loads");
    let e = Engine::new(&p);
    let (d, t) = decide(&e, "r.test", ws("GET", "/ws", Message::WebSocketUpgrade));
    assert_verdict(&d, &t, Verdict::Deny, Some(Reason::MethodPathNotPermitted));
    let (d, t) = decide(&e, "r.test", HttpRequest::plain("GET", "/ws", &[]));
    assert_verdict(&d, &t, Verdict::Allow, None);
}
