//! The privacy router: inference requests from a sandbox (to `inference.local`,
//! or to an endpoint its policy marks `routing: inference`) are terminated with
//! the sandbox's CA, matched against the API shapes the route's provider speaks,
//! stripped of the caller's credentials and of every header not on an allow-list,
//! given the backend's credential (and the route's model), and forwarded to the
//! backend. Responses stream back as they come, with an idle timeout between
//! chunks rather than a total one. Each request is one OCSF API-activity line
//! (provider, model, status, latency, token counts); never bodies or secrets.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::{ApiEvent, now_ms};
use crate::http1::{self, Body, HeadError, RequestHead};
use crate::l7::Prefixed;
use crate::proxy::Shared;
use crate::tls::Interceptor;

/// The name a sandbox reaches the router by.
pub const INFERENCE_HOST: &str = "inference.local";

/// The providers' public API hosts: routed too while a route exists.
pub const PROVIDER_HOSTS: &[&str] = &["api.openai.com", "api.anthropic.com"];

/// The largest request body the router reads (it rewrites JSON bodies).
const MAX_BODY: u64 = 32 << 20;

/// The API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    OpenaiCompatible,
}

impl ProviderKind {
    pub fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "openai" => Some(ProviderKind::Openai),
            "anthropic" => Some(ProviderKind::Anthropic),
            "openai-compatible" => Some(ProviderKind::OpenaiCompatible),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenaiCompatible => "openai-compatible",
        }
    }

    /// The provider's public API root, when it has one.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::OpenaiCompatible => None,
        }
    }

    fn shapes(self) -> &'static [(&'static str, &'static str)] {
        match self {
            ProviderKind::Anthropic => &[("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")],
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => &[
                ("POST", "/v1/chat/completions"),
                ("POST", "/v1/completions"),
                ("POST", "/v1/responses"),
                ("POST", "/v1/embeddings"),
                ("GET", "/v1/models"),
            ],
        }
    }

    /// Headers a caller may send that this provider's API uses (beyond the
    /// common ones).
    fn extra_headers(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Anthropic => &["anthropic-version", "anthropic-beta"],
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                &["openai-organization", "openai-project", "openai-beta"]
            }
        }
    }
}

/// Headers any caller may send; everything else is dropped.
const COMMON_HEADERS: &[&str] = &["content-type", "accept", "accept-encoding", "user-agent"];

/// A secret that never prints.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where inference goes: written by the gateway for each sandbox (owner-only,
/// on the host side), applied live.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InferenceRoute {
    pub provider: String,
    pub kind: ProviderKind,
    /// The API root: `https://api.openai.com/v1`, `https://api.anthropic.com`,
    /// `http://10.0.0.5:8000/v1`. A root ending in `/v1` takes request paths
    /// without their own `/v1`.
    pub base_url: String,
    pub credential: Secret,
    /// The model every request is rewritten to (`None`: as the caller asked).
    pub model: Option<String>,
    /// The longest wait for the backend's next bytes, in seconds.
    pub timeout_secs: u64,
}

/// A parsed `base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Without a trailing `/` (empty for the root).
    pub path: String,
}

impl Backend {
    pub fn parse(url: &str) -> Result<Backend, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = crate::proxy::authority(authority, Some(if tls { 443 } else { 80 }))
            .ok_or_else(|| format!("`{url}` has no usable host"))?;
        if path.contains(['?', '#']) {
            return Err(format!("`{url}`: a base URL takes no query or fragment"));
        }
        Ok(Backend { tls, host, port, path: path.trim_end_matches('/').to_owned() })
    }

    /// The backend path for a request path (`/v1/...`).
    fn join(&self, path: &str) -> String {
        match path.strip_prefix("/v1") {
            Some(rest) if self.path.ends_with("/v1") => format!("{}{rest}", self.path),
            _ => format!("{}{path}", self.path),
        }
    }

    fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }
}

impl InferenceRoute {
    /// Checks the route (its base URL) before it is used.
    pub fn validate(&self) -> Result<Backend, String> {
        if self.timeout_secs == 0 {
            return Err("the timeout must be at least 1 second".into());
        }
        Backend::parse(&self.base_url)
    }
}

/// The route a sandbox's proxy uses, swapped live.
pub(crate) struct Active {
    pub route: InferenceRoute,
    pub backend: Backend,
}

type ClientSide = BufReader<StreamOwned<ServerConnection, Prefixed>>;

/// An open connection to the backend (reused while the route stays the same).
enum Upstream {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<StreamOwned<ClientConnection, TcpStream>>>),
}

impl Upstream {
    fn reader(&mut self) -> &mut dyn io::BufRead {
        match self {
            Upstream::Plain(r) => r,
            Upstream::Tls(r) => r.as_mut(),
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Upstream::Plain(r) => r.get_mut(),
            Upstream::Tls(r) => r.get_mut(),
        }
    }
}

/// Who is calling, for the audit line.
pub(crate) struct Caller<'a> {
    pub binary: Option<&'a str>,
    /// The host the sandbox asked for (`inference.local` or a routed endpoint).
    pub host: &'a str,
}

/// Serves one routed connection until either side closes. The client has been
/// told `200 Connection Established`.
pub(crate) fn serve(
    shared: &Shared,
    tls: &Interceptor,
    server: Arc<ServerConfig>,
    client: TcpStream,
    prefix: Vec<u8>,
    caller: &Caller<'_>,
) {
    let _ = client.set_nodelay(true);
    let Ok(conn) = ServerConnection::new(server) else { return };
    let prefixed = Prefixed { prefix: io::Cursor::new(prefix), inner: client };
    let mut client: ClientSide = BufReader::with_capacity(64 * 1024, StreamOwned::new(conn, prefixed));
    let mut upstream: Option<(Arc<Active>, Upstream)> = None;
    loop {
        let head = match http1::read_head_bytes(&mut client) {
            Ok(Some(b)) => b,
            Ok(None) | Err(HeadError::Io(_)) => break,
            Err(e) => {
                reply(&mut client, 400, &json!({"error": e.to_string()}), true);
                break;
            }
        };
        let Ok(req) = http1::parse_request(&head) else {
            reply(&mut client, 400, &json!({"error": "malformed request head"}), true);
            break;
        };
        match request(shared, tls, &mut client, &mut upstream, &req, caller) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::debug!(error = %e, "routed connection ended");
                break;
            }
        }
    }
    let stream = client.get_mut();
    stream.conn.send_close_notify();
    let _ = stream.flush();
    let _ = stream.sock.inner.shutdown(std::net::Shutdown::Both);
}

/// What one request came to, for the audit line.
struct Outcome {
    status: u16,
    model: Option<String>,
    tokens: Usage,
    note: Option<String>,
}

/// Handles one request; `Ok(false)`: close the connection.
fn request(
    shared: &Shared,
    tls: &Interceptor,
    client: &mut ClientSide,
    upstream: &mut Option<(Arc<Active>, Upstream)>,
    req: &RequestHead,
    caller: &Caller<'_>,
) -> io::Result<bool> {
    let started = Instant::now();
    let active = shared.route.read().unwrap_or_else(|p| p.into_inner()).clone();
    let path = req.target.split(['?', '#']).next().unwrap_or("/").to_owned();
    let operation = format!("{} {path}", req.method);
    let audit = |outcome: &Outcome, active: Option<&Active>| {
        shared.audit.record_api(&ApiEvent {
            time: now_ms(),
            class_uid: 6003,
            class_name: "API Activity",
            sandbox: shared.sandbox.clone(),
            actor_process: caller.binary.map(str::to_owned),
            dst_hostname: caller.host.to_owned(),
            operation: operation.clone(),
            provider: active.map(|a| a.route.provider.clone()),
            backend: active.map(|a| a.backend.host_header()),
            model: outcome.model.clone(),
            status: outcome.status,
            latency_ms: started.elapsed().as_millis() as u64,
            input_tokens: outcome.tokens.input,
            output_tokens: outcome.tokens.output,
            note: outcome.note.clone(),
        });
    };
    let refuse = |client: &mut ClientSide, status: u16, body: Value, close: bool| {
        reply(client, status, &body, close);
    };
    let framing = match http1::request_body(&req.headers) {
        Ok(b) => b,
        Err(message) => {
            refuse(client, 400, json!({"error": message}), true);
            audit(&Outcome { status: 400, model: None, tokens: Usage::default(), note: Some(message.into()) }, None);
            return Ok(false);
        }
    };
    let Some(active) = active else {
        let close = !drain(client, framing);
        let message = "no inference route is set: on the host, `openshell inference set --provider NAME --model MODEL`";
        refuse(client, 503, json!({"error": message}), close);
        audit(&Outcome { status: 503, model: None, tokens: Usage::default(), note: Some("no route".into()) }, None);
        return Ok(!close);
    };
    let kind = active.route.kind;
    if http1::header(&req.headers, "upgrade").is_some() {
        // WebSocket transports are not routed: clients that have an HTTP
        // transport (codex's Responses WebSocket) fall back to it.
        let close = !drain(client, framing);
        let message = "the privacy router does not route WebSocket upgrades; use the HTTP API";
        refuse(client, 426, json!({"error": message}), close);
        audit(
            &Outcome { status: 426, model: None, tokens: Usage::default(), note: Some("upgrade refused".into()) },
            Some(&active),
        );
        return Ok(!close);
    }
    if !kind.shapes().iter().any(|(m, p)| req.method.eq_ignore_ascii_case(m) && path == *p) {
        let close = !drain(client, framing);
        let supported: Vec<String> = kind.shapes().iter().map(|(m, p)| format!("{m} {p}")).collect();
        let body = json!({
            "error": format!(
                "`{operation}` is not an inference request the privacy router forwards to this route's provider ({}); supported: {}",
                kind.as_str(),
                supported.join(", ")
            ),
            "supported": supported,
        });
        refuse(client, 400, body, close);
        audit(
            &Outcome { status: 400, model: None, tokens: Usage::default(), note: Some("unsupported request".into()) },
            Some(&active),
        );
        return Ok(!close);
    }
    // The body: read whole (bounded), the model rewritten when the route says so.
    let mut body = Vec::new();
    let read = match framing {
        Body::Length(n) if n > MAX_BODY => Err(io::Error::other("request body too large")),
        _ => http1::copy_body(client, &mut LimitedVec(&mut body), framing).map(drop),
    };
    if let Err(e) = read {
        refuse(client, 413, json!({"error": format!("reading the request body: {e} (limit {MAX_BODY} bytes)")}), true);
        return Ok(false);
    }
    let body = if framing == Body::Chunked { dechunk(&body) } else { body };
    let (body, model) = match rewrite_model(&body, active.route.model.as_deref()) {
        Ok(b) => b,
        Err(message) => {
            refuse(client, 400, json!({"error": message}), false);
            audit(&Outcome { status: 400, model: None, tokens: Usage::default(), note: Some(message) }, Some(&active));
            return Ok(true);
        }
    };
    // The backend request: allow-listed headers only, the backend's credential.
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method,
        active.backend.join(&path_and_query(req)),
        active.backend.host_header()
    )
    .into_bytes();
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if COMMON_HEADERS.contains(&lower.as_str()) || kind.extra_headers().contains(&lower.as_str()) {
            head.extend_from_slice(format!("{name}: ").as_bytes());
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
    }
    match kind {
        ProviderKind::Anthropic => {
            head.extend_from_slice(format!("x-api-key: {}\r\n", active.route.credential.0).as_bytes());
            if http1::header(&req.headers, "anthropic-version").is_none() {
                head.extend_from_slice(b"anthropic-version: 2023-06-01\r\n");
            }
        }
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            head.extend_from_slice(format!("Authorization: Bearer {}\r\n", active.route.credential.0).as_bytes());
        }
    }
    if !body.is_empty() || req.method.eq_ignore_ascii_case("POST") {
        head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    head.extend_from_slice(b"\r\n");

    let timeout = Duration::from_secs(active.route.timeout_secs);
    if !matches!(upstream, Some((a, _)) if Arc::ptr_eq(a, &active)) {
        *upstream = None;
    }
    // Send, and wait for the first response head. A kept connection that the
    // backend had closed fails before any answer: then once more on a new one.
    let mut first = None;
    let mut retried = false;
    while first.is_none() {
        let fresh = upstream.is_none();
        if fresh {
            match connect(shared, tls, &active.backend, timeout) {
                Ok(up) => *upstream = Some((Arc::clone(&active), up)),
                Err(message) => {
                    refuse(client, 502, json!({"error": message, "backend": active.backend.host_header()}), false);
                    audit(
                        &Outcome { status: 502, model, tokens: Usage::default(), note: Some(message) },
                        Some(&active),
                    );
                    return Ok(true);
                }
            }
        }
        let Some((_, up)) = upstream.as_mut() else { return Ok(false) };
        let answered = send(up, &head, &body).and_then(|()| match http1::read_head_bytes(up.reader()) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
            Err(HeadError::Io(e)) => Err(e),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        });
        match answered {
            Ok(bytes) => first = Some(bytes),
            Err(_) if !fresh && !retried => {
                retried = true;
                *upstream = None;
            }
            Err(e) => {
                *upstream = None;
                let (status, message) = if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                    (504, format!("the backend sent nothing for {} s", timeout.as_secs()))
                } else {
                    (502, format!("the backend did not answer: {e}"))
                };
                refuse(client, status, json!({"error": message}), false);
                audit(&Outcome { status, model, tokens: Usage::default(), note: Some(message) }, Some(&active));
                return Ok(true);
            }
        }
    }
    let Some((_, up)) = upstream.as_mut() else { return Ok(false) };
    // The response head: interim ones passed on; the wait bounded by the timeout.
    let response = loop {
        let bytes = match first.take() {
            Some(b) => b,
            None => match http1::read_head_bytes(up.reader()) {
                Ok(Some(b)) => b,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend ended after an interim answer",
                    ));
                }
            },
        };
        let parsed = http1::parse_response(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        client.get_mut().write_all(&bytes)?;
        if (100..200).contains(&parsed.status) {
            client.get_mut().flush()?;
            continue;
        }
        break parsed;
    };
    let framing = http1::response_body(&req.method, &response);
    let mut usage = UsageScanner::default();
    let copied = {
        let mut tee = Tee { out: client.get_mut(), scanner: &mut usage };
        http1::copy_body(up.reader(), &mut tee, framing)
    };
    client.get_mut().flush()?;
    let keep_backend =
        copied.is_ok() && framing != Body::UntilClose && !http1::has_token(&response.headers, "connection", "close");
    let note = match &copied {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            Some(format!("idle timeout: the backend sent nothing for {} s", timeout.as_secs()))
        }
        Err(e) => Some(format!("the response ended early: {e}")),
        Ok(_) => None,
    };
    audit(&Outcome { status: response.status, model, tokens: usage.finish(), note: note.clone() }, Some(&active));
    if !keep_backend {
        *upstream = None;
    }
    // A response cut short cannot be mended: the client's connection ends too.
    Ok(note.is_none() && framing != Body::UntilClose && !http1::has_token(&req.headers, "connection", "close"))
}

fn path_and_query(req: &RequestHead) -> String {
    let target = req.target.split('#').next().unwrap_or("/");
    target.to_owned()
}

fn send(up: &mut Upstream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let w = up.writer();
    w.write_all(head)?;
    w.write_all(body)?;
    w.flush()
}

/// Opens a connection to the backend (TLS verified against the upstream roots).
fn connect(shared: &Shared, tls: &Interceptor, backend: &Backend, timeout: Duration) -> Result<Upstream, String> {
    let ips = shared
        .resolver
        .resolve(&backend.host, backend.port)
        .map_err(|e| format!("cannot resolve the backend {}: {e}", backend.host))?;
    let ip = ips.first().ok_or_else(|| format!("cannot resolve the backend {}", backend.host))?;
    let tcp = shared
        .connector
        .connect(SocketAddr::new(*ip, backend.port))
        .map_err(|e| format!("cannot connect to the backend {}: {e}", backend.host_header()))?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    if !backend.tls {
        return Ok(Upstream::Plain(BufReader::with_capacity(64 * 1024, tcp)));
    }
    let name = Interceptor::server_name(&backend.host).map_err(|e| e.to_string())?;
    let config = tls.client_config().map_err(|e| format!("TLS to the backend: {e}"))?;
    let mut conn = ClientConnection::new(config, name).map_err(|e| format!("TLS to the backend: {e}"))?;
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| format!("TLS to the backend failed: {e}"))?;
    }
    Ok(Upstream::Tls(Box::new(BufReader::with_capacity(64 * 1024, StreamOwned::new(conn, tcp)))))
}

/// Replaces the JSON body's `model` when the route names one; returns the body
/// and the model the backend is asked for.
fn rewrite_model(body: &[u8], model: Option<&str>) -> Result<(Vec<u8>, Option<String>), String> {
    if body.is_empty() {
        return Ok((Vec::new(), model.map(str::to_owned)));
    }
    let mut doc: Value = serde_json::from_slice(body).map_err(|e| format!("the request body is not JSON: {e}"))?;
    let Some(obj) = doc.as_object_mut() else {
        return Err("the request body is not a JSON object".into());
    };
    match model {
        Some(m) => {
            obj.insert("model".into(), Value::String(m.to_owned()));
            let bytes = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
            Ok((bytes, Some(m.to_owned())))
        }
        None => Ok((body.to_vec(), obj.get("model").and_then(Value::as_str).map(str::to_owned))),
    }
}

/// Reads and drops a refused request's body; `false` when it cannot be delimited.
fn drain(client: &mut ClientSide, body: Body) -> bool {
    http1::copy_body(client, &mut io::sink(), body).is_ok()
}

fn reply(client: &mut ClientSide, status: u16, body: &Value, close: bool) {
    let stream = client.get_mut();
    let _ = stream.write_all(&http1::json_response(status, &api_error(status, body), close));
    let _ = stream.flush();
}

/// The router's own answers in the providers' error shape (`{"type": "error",
/// "error": {"type", "message"}}`), so SDKs show the message; other fields stay.
fn api_error(status: u16, body: &Value) -> Value {
    let mut out = body.clone();
    if let Some(Value::String(message)) = body.get("error") {
        let kind = match status {
            400 | 413 => "invalid_request_error",
            403 => "permission_error",
            _ => "api_error",
        };
        out["type"] = json!("error");
        out["error"] = json!({"type": kind, "message": message});
    }
    out
}

/// A `Vec` writer that refuses to grow past [`MAX_BODY`].
struct LimitedVec<'a>(&'a mut Vec<u8>);

impl Write for LimitedVec<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() as u64 + buf.len() as u64 > MAX_BODY {
            return Err(io::Error::other("request body too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A chunked body's data.
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r = BufReader::new(raw);
    let mut w = Dechunk { out: &mut out, state: DechunkState::default() };
    let _ = io::copy(&mut r, &mut w);
    out
}

#[derive(Default)]
struct DechunkState {
    left: usize,
    line: Vec<u8>,
    done: bool,
    /// After a chunk's data: its CRLF is skipped.
    skip_crlf: bool,
}

struct Dechunk<'a> {
    out: &'a mut Vec<u8>,
    state: DechunkState,
}

impl Write for Dechunk<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let s = &mut self.state;
        let mut i = 0;
        while i < buf.len() && !s.done {
            if s.left > 0 {
                let take = s.left.min(buf.len() - i);
                self.out.extend_from_slice(&buf[i..i + take]);
                s.left -= take;
                i += take;
                if s.left == 0 {
                    s.skip_crlf = true;
                }
                continue;
            }
            let b = buf[i];
            i += 1;
            if b != b'\n' {
                s.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&s.line).trim().to_owned();
            s.line.clear();
            if s.skip_crlf {
                s.skip_crlf = false;
                continue;
            }
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
            if size == 0 {
                s.done = true;
            }
            s.left = size;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Token counts, when the response carries them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    input: Option<u64>,
    output: Option<u64>,
}

/// Finds token counts in a response as it passes: a JSON body's `usage`, or
/// the `usage` of server-sent events (OpenAI's last chunk; Anthropic's
/// `message_start` and `message_delta`). Bounded: it keeps at most 1 MiB.
#[derive(Default)]
struct UsageScanner {
    body: Vec<u8>,
    overflow: bool,
    line: Vec<u8>,
    usage: Usage,
}

const SCAN_LIMIT: usize = 1 << 20;

impl UsageScanner {
    fn feed(&mut self, bytes: &[u8]) {
        if !self.overflow {
            if self.body.len() + bytes.len() <= SCAN_LIMIT {
                self.body.extend_from_slice(bytes);
            } else {
                self.overflow = true;
                self.body = Vec::new();
            }
        }
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                if let Some(data) = line.strip_prefix(b"data:")
                    && let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii())
                {
                    self.take(&v);
                }
            } else if self.line.len() < SCAN_LIMIT {
                self.line.push(b);
            }
        }
    }

    fn take(&mut self, v: &Value) {
        let usage = v.get("usage").or_else(|| v.get("message").and_then(|m| m.get("usage")));
        let usage = usage.or_else(|| v.get("response").and_then(|r| r.get("usage")));
        let Some(u) = usage else { return };
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(i) = n("prompt_tokens").or_else(|| n("input_tokens")) {
            self.usage.input = Some(i);
        }
        if let Some(o) = n("completion_tokens").or_else(|| n("output_tokens")) {
            self.usage.output = Some(o);
        }
    }

    fn finish(mut self) -> Usage {
        if !self.overflow && self.usage == Usage::default() {
            let body = std::mem::take(&mut self.body);
            // A chunked JSON body: its data, without the framing.
            let plain = serde_json::from_slice::<Value>(&body).or_else(|_| serde_json::from_slice(&dechunk(&body)));
            if let Ok(v) = plain {
                self.take(&v);
            }
        }
        self.usage
    }
}

/// Writes to the client and shows the scanner what passed.
struct Tee<'a, W: Write> {
    out: &'a mut W,
    scanner: &'a mut UsageScanner,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.scanner.feed(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Parses a route file (`inference.json`).
pub fn read_route(bytes: &[u8]) -> Result<InferenceRoute, String> {
    let route: InferenceRoute = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    route.validate()?;
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_and_paths() {
        let b = Backend::parse("https://api.openai.com/v1").expect("url");
        assert_eq!((b.tls, b.host.as_str(), b.port, b.path.as_str()), (true, "api.openai.com", 443, "/v1"));
        assert_eq!(b.join("/v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(b.host_header(), "api.openai.com");
        let a = Backend::parse("https://api.anthropic.com").expect("url");
        assert_eq!(a.join("/v1/messages"), "/v1/messages");
        let local = Backend::parse("http://10.0.0.5:8000/openai/v1/").expect("url");
        assert_eq!((local.tls, local.port, local.host_header()), (false, 8000, "10.0.0.5:8000".to_owned()));
        assert_eq!(local.join("/v1/models"), "/openai/v1/models");
        assert!(Backend::parse("ftp://x").is_err());
        assert!(Backend::parse("https://").is_err());
        assert!(Backend::parse("https://h/v1?x=1").is_err());
    }

    #[test]
    fn models_are_rewritten_only_when_the_route_says() {
        let (body, model) = rewrite_model(br#"{"model":"gpt-x","messages":[]}"#, Some("local-7b")).expect("json");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!((v["model"].as_str(), model.as_deref()), (Some("local-7b"), Some("local-7b")));
        let (body, model) = rewrite_model(br#"{"model":"gpt-x"}"#, None).expect("json");
        assert_eq!((body.as_slice(), model.as_deref()), (&br#"{"model":"gpt-x"}"#[..], Some("gpt-x")));
        assert!(rewrite_model(b"not json", None).is_err());
        assert!(rewrite_model(b"[1]", Some("m")).is_err());
    }

    #[test]
    fn usage_is_found_in_json_and_in_events() {
        let mut s = UsageScanner::default();
        s.feed(br#"{"id":"x","usage":{"prompt_tokens":12,"completion_tokens":3}}"#);
        assert_eq!(s.finish(), Usage { input: Some(12), output: Some(3) });
        let mut s = UsageScanner::default();
        s.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n");
        s.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n");
        assert_eq!(s.finish(), Usage { input: Some(9), output: Some(7) });
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n"), b"Wikipedia");
    }

    #[test]
    fn secrets_do_not_print() {
        let route = InferenceRoute {
            provider: "p".into(),
            kind: ProviderKind::Openai,
            base_url: "https://api.openai.com/v1".into(),
            credential: Secret("sk-live-123".into()),
            model: None,
            timeout_secs: 60,
        };
        assert!(!format!("{route:?}").contains("sk-live"));
    }
}
