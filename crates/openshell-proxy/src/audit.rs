//! Audit events: one OCSF JSON line per decision — network activity (class 4001)
//! for connections, HTTP activity (class 4002) for inspected requests, API
//! activity (class 6003) for requests through the privacy router; JSON-RPC
//! calls and WebSocket messages are HTTP activity too. They
//! carry time, sandbox, binary, destination, decision, and the matched policy or
//! the reason; never query strings, headers or bodies.

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;

/// One decision, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Milliseconds since the Unix epoch.
    pub time: u64,
    /// 4001 (network activity) or 4002 (HTTP activity).
    pub class_uid: u32,
    pub class_name: &'static str,
    /// `allowed`, `blocked`, or `audited` (allowed; enforcement would block it).
    pub disposition: &'static str,
    pub sandbox: String,
    /// The caller's executable; `null` when it could not be identified.
    pub actor_process: Option<String>,
    pub dst_hostname: String,
    pub dst_port: u16,
    /// The address the proxy connected to (or refused).
    pub dst_ip: Option<String>,
    /// For HTTP: method and path, without the query string.
    pub http_method: Option<String>,
    pub http_path: Option<String>,
    /// The policy key that allowed it.
    pub policy: Option<String>,
    /// Why it was blocked (or would be).
    pub reason: Option<String>,
    /// The policy revision that decided.
    pub revision: u64,
    /// A raw TCP connection the fence redirected (for `protocol: tcp`
    /// endpoints), not one asked of the proxy; written only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub raw_tcp: bool,
    /// For one JSON-RPC message of an `mcp`/`json-rpc` request: its method
    /// (none for a response the client sent) and the tool of a `tools/call`.
    /// Left out of other events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_tool: Option<String>,
    /// For the end of a WebSocket: frames and payload bytes each way.
    /// Left out of other events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketTraffic>,
}

/// What crossed a WebSocket, counted as it was relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WebSocketTraffic {
    pub client_frames: u64,
    pub client_bytes: u64,
    pub server_frames: u64,
    pub server_bytes: u64,
}

/// One request through the privacy router (OCSF API activity, class 6003):
/// what was asked, of whom, and how it went; never bodies or credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiEvent {
    pub time: u64,
    pub class_uid: u32,
    pub class_name: &'static str,
    pub sandbox: String,
    pub actor_process: Option<String>,
    /// What the sandbox connected to (`inference.local` or a routed endpoint).
    pub dst_hostname: String,
    /// `POST /v1/chat/completions`.
    pub operation: String,
    pub provider: Option<String>,
    /// The backend's host (and port when not the scheme's).
    pub backend: Option<String>,
    pub model: Option<String>,
    /// The HTTP status the sandbox got.
    pub status: u16,
    pub latency_ms: u64,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Why it failed or ended early, when it did.
    pub note: Option<String>,
}

/// Where audit events go.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: &AuditEvent);
    fn record_api(&self, event: &ApiEvent);
}

/// Writes each event as one JSON line.
pub struct JsonLines<W: Write + Send>(pub Mutex<W>);

impl<W: Write + Send> AuditSink for JsonLines<W> {
    fn record(&self, event: &AuditEvent) {
        self.line(event);
    }
    fn record_api(&self, event: &ApiEvent) {
        self.line(event);
    }
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(w: W) -> Self {
        JsonLines(Mutex::new(w))
    }

    fn line(&self, event: &impl Serialize) {
        let Ok(mut line) = serde_json::to_vec(event) else { return };
        line.push(b'\n');
        if let Ok(mut w) = self.0.lock() {
            let _ = w.write_all(&line).and_then(|()| w.flush());
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
