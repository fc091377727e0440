//! The privacy router: inference requests from a sandbox (to `inference.local`,
//! or to an endpoint its policy marks `routing: inference`) are terminated with
//! the sandbox's CA, matched against the API shapes the route's provider speaks,
//! stripped of the caller's credentials and of every header not on an allow-list,
//! given the backend's credential (and the route's model), and forwarded to the
//! backend. Responses stream back as they come, with an idle timeout between
//! chunks rather than a total one. Each request is one OCSF API-activity line
//! (provider, model, status, latency, token counts); never bodies or secrets.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::{TlsAcceptor, server};

use crate::aio::Payload;
use crate::audit::{ApiEvent, now_ms};
use crate::http1::{self, Body, HeadError, Kind, RequestHead};
use crate::json::{JsonError, ModelRewriter, SseUsage, Usage, UsageFinder};
use crate::proxy::{CLIENT_BUFFER, Client, Shared, UPSTREAM_BUFFER, check_host};
use crate::tls::{DialError, Interceptor};
use crate::{aio, exchange};

/// The name a sandbox reaches the router by.
pub const INFERENCE_HOST: &str = "inference.local";

/// The providers' public API hosts: routed too while a route exists.
pub const PROVIDER_HOSTS: &[&str] = &["api.openai.com", "api.anthropic.com"];

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

/// Why an inference route cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("base URL `{url}`: {problem}")]
    BaseUrl { url: String, problem: BaseUrlProblem },
    #[error("the timeout must be at least 1 second")]
    Timeout,
    #[error("not a route file: {0}")]
    File(#[source] serde_json::Error),
}

/// What is wrong with a route's `base_url`.
#[derive(Debug, thiserror::Error)]
pub enum BaseUrlProblem {
    #[error(transparent)]
    Parse(#[from] url::ParseError),
    #[error("not an http:// or https:// URL")]
    Scheme,
    #[error("it names no host")]
    NoHost,
    #[error("port 0")]
    PortZero,
    #[error("a base URL takes no user name or password (the provider's credential is the one sent)")]
    Credentials,
    #[error("a base URL takes no query or fragment")]
    QueryOrFragment,
}

impl Backend {
    /// Parses a `base_url` (`url`'s parser: the host lower-cased, IPv6 without
    /// its brackets, the scheme's port when none is given).
    pub fn parse(base_url: &str) -> Result<Backend, RouteError> {
        let bad = |problem| RouteError::BaseUrl { url: base_url.to_owned(), problem };
        let url = url::Url::parse(base_url).map_err(|e| bad(e.into()))?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(bad(BaseUrlProblem::Scheme)),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(BaseUrlProblem::Credentials));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(BaseUrlProblem::QueryOrFragment));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(bad(BaseUrlProblem::NoHost)),
        };
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        if port == 0 {
            return Err(bad(BaseUrlProblem::PortZero));
        }
        Ok(Backend { tls, host, port, path: url.path().trim_end_matches('/').to_owned() })
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
    pub fn validate(&self) -> Result<Backend, RouteError> {
        if self.timeout_secs == 0 {
            return Err(RouteError::Timeout);
        }
        Backend::parse(&self.base_url)
    }
}

/// The route a sandbox's proxy uses, swapped live.
pub(crate) struct Active {
    pub route: InferenceRoute,
    pub backend: Backend,
}

type ClientSide = BufReader<server::TlsStream<Client>>;

/// A backend connection: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection to the backend (reused while the route stays the same).
type Upstream = BufReader<Box<dyn Io>>;

/// Who is calling, for the audit line.
pub(crate) struct Caller<'a> {
    pub binary: Option<&'a str>,
    /// The host the sandbox asked for (`inference.local` or a routed endpoint).
    pub host: &'a str,
    pub port: u16,
}

/// Serves one routed connection until either side closes. The client has been
/// told `200 Connection Established`.
pub(crate) async fn serve(
    shared: &Shared,
    tls: &Interceptor,
    server: Arc<ServerConfig>,
    client: Client,
    caller: &Caller<'_>,
) {
    let _ = client.get_ref().set_nodelay(true);
    let limits = &shared.limits;
    let accepted = tokio::time::timeout(limits.head_timeout, TlsAcceptor::from(server).accept(client)).await;
    let Ok(Ok(tls_client)) = accepted else { return };
    let mut client: ClientSide = BufReader::with_capacity(CLIENT_BUFFER, tls_client);
    let mut upstream: Option<(Arc<Active>, Upstream)> = None;
    let mut wait = limits.head_timeout;
    loop {
        let head = match aio::read_head(&mut client, Kind::Request, wait, limits.head_timeout).await {
            Ok(Some(b)) => b,
            Ok(None) | Err(HeadError::Io(_) | HeadError::Idle(_)) => break,
            Err(e) => {
                reply(&mut client, e.status(), &json!({"error": e.to_string()}), true, limits.idle_timeout).await;
                break;
            }
        };
        wait = limits.keepalive_timeout;
        let req = match http1::parse_request(&head) {
            Ok(r) => r,
            Err(e) => {
                reply(&mut client, e.status(), &json!({"error": e.to_string()}), true, limits.idle_timeout).await;
                break;
            }
        };
        let mut exchange = Exchange::new(shared, caller, &req);
        match exchange.request(tls, &mut client, &mut upstream, &req).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::debug!(error = %e, "routed connection ended");
                break;
            }
        }
    }
    let _ = client.get_mut().shutdown().await;
}

/// What one request came to, for the audit line.
#[derive(Default)]
struct Outcome {
    status: u16,
    model: Option<String>,
    tokens: Usage,
    note: Option<String>,
}

impl Outcome {
    fn refused(status: u16, note: impl Into<String>) -> Outcome {
        Outcome { status, note: Some(note.into()), ..Outcome::default() }
    }
}

/// One request through the router, and its audit line.
struct Exchange<'a> {
    shared: &'a Shared,
    caller: &'a Caller<'a>,
    started: Instant,
    operation: String,
    path: String,
    active: Option<Arc<Active>>,
}

impl<'a> Exchange<'a> {
    fn new(shared: &'a Shared, caller: &'a Caller<'a>, req: &RequestHead) -> Exchange<'a> {
        let path = req.target.split(['?', '#']).next().unwrap_or("/").to_owned();
        Exchange {
            shared,
            caller,
            started: Instant::now(),
            operation: format!("{} {path}", req.method),
            path,
            active: shared.route.read().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    fn audit(&self, outcome: &Outcome) {
        let active = self.active.as_deref();
        self.shared.audit.record_api(&ApiEvent {
            time: now_ms(),
            class_uid: 6003,
            class_name: "API Activity",
            sandbox: self.shared.sandbox.clone(),
            actor_process: self.caller.binary.map(str::to_owned),
            dst_hostname: self.caller.host.to_owned(),
            operation: self.operation.clone(),
            provider: active.map(|a| a.route.provider.clone()),
            backend: active.map(|a| a.backend.host_header()),
            model: outcome.model.clone(),
            status: outcome.status,
            latency_ms: self.started.elapsed().as_millis() as u64,
            input_tokens: outcome.tokens.input,
            output_tokens: outcome.tokens.output,
            note: outcome.note.clone(),
        });
    }

    /// Answers with the router's own error (after reading past the request's
    /// body when it can), audited; `Ok(false)`: the connection closes.
    async fn refuse(
        &self,
        client: &mut ClientSide,
        framing: Body,
        keep: bool,
        body: Value,
        outcome: Outcome,
    ) -> io::Result<bool> {
        let idle = self.shared.limits.idle_timeout;
        let keep = keep && aio::drain(client, framing, idle).await;
        reply(client, outcome.status, &body, !keep, idle).await;
        self.audit(&outcome);
        Ok(keep)
    }

    /// Handles one request; `Ok(false)`: close the connection.
    async fn request(
        &mut self,
        tls: &Interceptor,
        client: &mut ClientSide,
        upstream: &mut Option<(Arc<Active>, Upstream)>,
        req: &RequestHead,
    ) -> io::Result<bool> {
        let framing = match http1::request_framing(req) {
            Ok(b) => b,
            Err(e) => {
                return self
                    .refuse(
                        client,
                        Body::Empty,
                        false,
                        json!({"error": e.to_string()}),
                        Outcome::refused(400, e.to_string()),
                    )
                    .await;
            }
        };
        if let Err(e) = check_host(req, self.caller.host, self.caller.port, 443) {
            return self
                .refuse(client, framing, false, json!({"error": e.to_string()}), Outcome::refused(400, e.to_string()))
                .await;
        }
        let Some(active) = self.active.clone() else {
            let message =
                "no inference route is set: on the host, `openshell inference set --provider NAME --model MODEL`";
            return self
                .refuse(client, framing, true, json!({"error": message}), Outcome::refused(503, "no route"))
                .await;
        };
        let kind = active.route.kind;
        if http1::header(&req.headers, "upgrade").is_some() {
            // WebSocket transports are not routed: clients that have an HTTP
            // transport (codex's Responses WebSocket) fall back to it.
            let message = "the privacy router does not route WebSocket upgrades; use the HTTP API";
            return self
                .refuse(client, framing, true, json!({"error": message}), Outcome::refused(426, "upgrade refused"))
                .await;
        }
        if !kind.shapes().iter().any(|(m, p)| req.method.eq_ignore_ascii_case(m) && self.path == *p) {
            let supported: Vec<String> = kind.shapes().iter().map(|(m, p)| format!("{m} {p}")).collect();
            let body = json!({
                "error": format!(
                    "`{}` is not an inference request the privacy router forwards to this route's provider ({}); supported: {}",
                    self.operation,
                    kind.as_str(),
                    supported.join(", ")
                ),
                "supported": supported,
            });
            return self.refuse(client, framing, true, body, Outcome::refused(400, "unsupported request")).await;
        }
        let timeout = Duration::from_secs(active.route.timeout_secs);
        if !matches!(upstream, Some((a, _)) if Arc::ptr_eq(a, &active)) {
            *upstream = None;
        }
        let route_model = active.route.model.as_deref();
        let mut body = Outgoing { rewriter: ModelRewriter::new(route_model), held: Vec::new(), streaming: false };
        let first = match self.forward(tls, client, upstream, &active, req, framing, &mut body, timeout).await {
            Ok(first) => first,
            Err(Failed::Refused(answer, keep)) => {
                let outcome = Outcome { model: body.rewriter.model(route_model), ..answer.outcome };
                return self.refuse(client, Body::Empty, keep, answer.body, outcome).await;
            }
            Err(Failed::Closed(e)) => return Err(e),
        };
        let model = body.rewriter.model(route_model);
        let Some((_, up)) = upstream.as_mut() else { return Ok(false) };
        self.relay(client, up, req, first, model, timeout).await.map(|(keep_client, keep_backend)| {
            if !keep_backend {
                *upstream = None;
            }
            keep_client
        })
    }

    /// Reads the request body from the client and sends it on, the model
    /// rewritten as it passes. A body that fits [`HOLD`] goes whole, with a
    /// Content-Length (and once more on a new connection if a kept one turns
    /// out closed); a larger one streams, chunked, as it arrives: the router
    /// never holds more than [`HOLD`] of it. Returns the first response head.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        tls: &Interceptor,
        client: &mut ClientSide,
        upstream: &mut Option<(Arc<Active>, Upstream)>,
        active: &Arc<Active>,
        req: &RequestHead,
        framing: Body,
        body: &mut Outgoing,
        timeout: Duration,
    ) -> Result<Vec<u8>, Failed> {
        let idle = self.shared.limits.idle_timeout;
        let head = backend_head(req, active);
        let mut payload = Payload::new(framing);
        let empty = framing == Body::Empty;
        loop {
            let data = match payload.next(client, idle).await {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => return Err(Failed::Closed(io::Error::other(e))),
            };
            if let Err(e) = body.rewriter.feed(data, &mut body.held) {
                return Err(self.bad_body(client, &mut payload, upstream, body.streaming, &e).await);
            }
            if body.held.len() >= HOLD {
                self.stream(tls, upstream, active, &head, body, timeout).await?;
            }
        }
        if !empty && let Err(e) = body.rewriter.finish() {
            return Err(self.bad_body(client, &mut payload, upstream, body.streaming, &e).await);
        }
        if body.streaming {
            return finish_stream(upstream, &body.held, timeout).await;
        }
        let mut whole = head;
        if !body.held.is_empty() || req.method.eq_ignore_ascii_case("POST") {
            whole.extend_from_slice(format!("Content-Length: {}\r\n", body.held.len()).as_bytes());
        }
        whole.extend_from_slice(b"\r\n");
        whole.extend_from_slice(&body.held);
        self.send(tls, upstream, active, &whole, timeout).await.map_err(|answer| Failed::Refused(answer, true))
    }

    /// The held part of a large body goes out: the request head first (on a
    /// connection known to be open: a streamed body cannot be sent twice).
    async fn stream(
        &self,
        tls: &Interceptor,
        upstream: &mut Option<(Arc<Active>, Upstream)>,
        active: &Arc<Active>,
        head: &[u8],
        body: &mut Outgoing,
        timeout: Duration,
    ) -> Result<(), Failed> {
        if !body.streaming {
            if let Some((_, up)) = upstream.as_mut()
                && !alive(up).await
            {
                *upstream = None;
            }
            if upstream.is_none() {
                let up = connect(self.shared, tls, &active.backend, timeout)
                    .await
                    .map_err(|e| Failed::Refused(e.refused(&active.backend), false))?;
                *upstream = Some((Arc::clone(active), up));
            }
            let Some((_, up)) = upstream.as_mut() else { return Err(Failed::Closed(closed())) };
            let mut chunked = head.to_vec();
            chunked.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            aio::send(up.get_mut(), &chunked, timeout).await.map_err(Failed::Closed)?;
            body.streaming = true;
        }
        let Some((_, up)) = upstream.as_mut() else { return Err(Failed::Closed(closed())) };
        send_chunk(up, &body.held, timeout).await.map_err(Failed::Closed)?;
        body.held.clear();
        Ok(())
    }

    /// A body that is not the JSON object the route needs: 400, after reading
    /// past the rest of it (the connection stays open when that works); a
    /// backend that already got part of it is dropped, so it never sees a
    /// complete request.
    async fn bad_body(
        &self,
        client: &mut ClientSide,
        payload: &mut Payload,
        upstream: &mut Option<(Arc<Active>, Upstream)>,
        streaming: bool,
        e: &JsonError,
    ) -> Failed {
        if streaming {
            *upstream = None;
        }
        let idle = self.shared.limits.idle_timeout;
        let keep = loop {
            match payload.next(client, idle).await {
                Ok(Some(_)) => {}
                Ok(None) => break true,
                Err(_) => break false,
            }
        };
        let message = e.to_string();
        Failed::Refused(Refused { body: json!({"error": message}), outcome: Outcome::refused(400, message) }, keep)
    }

    /// Sends the request and waits for the first response head. A kept
    /// connection that the backend had closed fails before any answer: then
    /// once more on a new one.
    async fn send(
        &self,
        tls: &Interceptor,
        upstream: &mut Option<(Arc<Active>, Upstream)>,
        active: &Arc<Active>,
        message: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, Refused> {
        let mut retried = false;
        loop {
            let fresh = upstream.is_none();
            if fresh {
                match connect(self.shared, tls, &active.backend, timeout).await {
                    Ok(up) => *upstream = Some((Arc::clone(active), up)),
                    Err(e) => return Err(e.refused(&active.backend)),
                }
            }
            let Some((_, up)) = upstream.as_mut() else { continue };
            let answered = async {
                aio::send(up.get_mut(), message, timeout).await?;
                aio::read_head(up, Kind::Response, timeout, timeout).await.map_err(head_io)?.ok_or_else(closed)
            };
            match answered.await {
                Ok(bytes) => return Ok(bytes),
                Err(_) if !fresh && !retried => {
                    retried = true;
                    *upstream = None;
                }
                Err(e) => {
                    *upstream = None;
                    return Err(unanswered(&e, timeout));
                }
            }
        }
    }

    /// Relays the response (interim heads passed on), counting tokens as they
    /// pass; audited. `(keep the client's connection, keep the backend's)`.
    async fn relay(
        &self,
        client: &mut ClientSide,
        up: &mut Upstream,
        req: &RequestHead,
        first: Vec<u8>,
        model: Option<String>,
        timeout: Duration,
    ) -> io::Result<(bool, bool)> {
        let mut next = Some(first);
        let response = loop {
            let bytes = match next.take() {
                Some(b) => b,
                None => {
                    aio::read_head(up, Kind::Response, timeout, timeout).await.map_err(head_io)?.ok_or_else(closed)?
                }
            };
            let parsed = http1::parse_response(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            aio::send(client.get_mut(), &bytes, timeout).await?;
            if !(100..200).contains(&parsed.status) {
                break parsed;
            }
        };
        let framing = http1::response_body(&req.method, &response);
        // Token counts from a JSON body or from server-sent events, whichever it is.
        let (mut body_usage, mut events) = (UsageFinder::default(), SseUsage::new());
        let copied = aio::copy_body(up, client.get_mut(), framing, timeout, &mut |data: &[u8]| {
            body_usage.feed(data);
            events.feed(data);
        })
        .await;
        let (a, b) = (body_usage.finish(), events.finish());
        let usage = Usage { input: a.input.or(b.input), output: a.output.or(b.output) };
        let note = match &copied {
            Err(e) if e.is_idle() => {
                Some(format!("idle timeout: the backend sent nothing for {} s", timeout.as_secs()))
            }
            Err(e) => Some(format!("the response ended early: {e}")),
            Ok(_) => None,
        };
        self.audit(&Outcome { status: response.status, model, tokens: usage, note: note.clone() });
        let keep_backend = copied.is_ok()
            && framing != Body::UntilClose
            && !http1::has_token(&response.headers, "connection", "close");
        // A response cut short cannot be mended: the client's connection ends too.
        let keep_client = note.is_none() && framing != Body::UntilClose && exchange::client_keeps(req);
        Ok((keep_client, keep_backend))
    }
}

/// The router's answer when the backend could not be asked.
struct Refused {
    body: Value,
    outcome: Outcome,
}

/// Why a request was not forwarded: answered (keep the client's connection
/// or not), or the connection is gone.
enum Failed {
    Refused(Refused, bool),
    Closed(io::Error),
}

/// The most of a request body the router holds: a larger one is streamed.
const HOLD: usize = 64 * 1024;

/// A request body on its way to the backend.
struct Outgoing {
    rewriter: ModelRewriter,
    /// Rewritten bytes not sent yet.
    held: Vec<u8>,
    /// The head has gone, chunked: the rest follows as chunks.
    streaming: bool,
}

/// The backend's silence or failure, as the sandbox hears of it.
fn unanswered(e: &io::Error, timeout: Duration) -> Refused {
    let (status, message) = if e.kind() == io::ErrorKind::TimedOut {
        (504, format!("the backend sent nothing for {} s", timeout.as_secs()))
    } else {
        (502, format!("the backend did not answer: {e}"))
    };
    Refused { body: json!({"error": message}), outcome: Outcome::refused(status, message) }
}

/// Whether a kept backend connection is still open (nothing waiting on it:
/// a backend that closed it shows as the end of the stream).
async fn alive(up: &mut Upstream) -> bool {
    tokio::time::timeout(Duration::ZERO, up.fill_buf()).await.is_err()
}

async fn send_chunk(up: &mut Upstream, data: &[u8], timeout: Duration) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    aio::send(up.get_mut(), &chunk, timeout).await
}

/// The last chunks of a streamed body, then the first response head.
async fn finish_stream(
    upstream: &mut Option<(Arc<Active>, Upstream)>,
    held: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, Failed> {
    let Some((_, up)) = upstream.as_mut() else { return Err(Failed::Closed(closed())) };
    let sent = async {
        send_chunk(up, held, timeout).await?;
        aio::send(up.get_mut(), b"0\r\n\r\n", timeout).await?;
        aio::read_head(up, Kind::Response, timeout, timeout).await.map_err(head_io)?.ok_or_else(closed)
    };
    match sent.await {
        Ok(head) => Ok(head),
        Err(e) => {
            *upstream = None;
            Err(Failed::Refused(unanswered(&e, timeout), true))
        }
    }
}

fn head_io(e: HeadError) -> io::Error {
    match e {
        HeadError::Io(e) => e,
        HeadError::Timeout(_) | HeadError::Idle(_) => {
            io::Error::new(io::ErrorKind::TimedOut, "the backend sent nothing")
        }
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the backend closed")
}

/// The backend request's head without its framing and final blank line:
/// allow-listed headers only, the backend's credential.
fn backend_head(req: &RequestHead, active: &Active) -> Vec<u8> {
    let kind = active.route.kind;
    let target = req.target.split('#').next().unwrap_or("/");
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method,
        active.backend.join(target),
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
    head
}

/// Why the backend could not be reached.
#[derive(Debug, thiserror::Error)]
enum BackendError {
    #[error("cannot resolve the backend {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot resolve the backend {0}")]
    NoAddress(String),
    #[error("cannot connect to the backend {host}: {source}")]
    Connect { host: String, source: io::Error },
    #[error("TLS to the backend {0}")]
    Tls(#[from] DialError),
}

impl BackendError {
    /// The router's answer (502), naming the backend.
    fn refused(&self, backend: &Backend) -> Refused {
        let message = self.to_string();
        Refused {
            body: json!({"error": message, "backend": backend.host_header()}),
            outcome: Outcome::refused(502, message),
        }
    }
}

/// Opens a connection to the backend (TLS verified against the upstream roots).
async fn connect(
    shared: &Shared,
    tls: &Interceptor,
    backend: &Backend,
    timeout: Duration,
) -> Result<Upstream, BackendError> {
    let host = || backend.host.clone();
    let ips = shared
        .resolve(&backend.host, backend.port)
        .await
        .map_err(|source| BackendError::Resolve { host: host(), source })?;
    let ip = ips.first().ok_or_else(|| BackendError::NoAddress(host()))?;
    let tcp = shared
        .connect(SocketAddr::new(*ip, backend.port))
        .await
        .map_err(|source| BackendError::Connect { host: backend.host_header(), source })?;
    let _ = tcp.set_nodelay(true);
    if !backend.tls {
        return Ok(BufReader::with_capacity(UPSTREAM_BUFFER, Box::new(tcp)));
    }
    let stream = crate::tls::dial(tls, tcp, &backend.host, timeout).await?;
    Ok(BufReader::with_capacity(UPSTREAM_BUFFER, Box::new(stream)))
}

async fn reply(client: &mut ClientSide, status: u16, body: &Value, close: bool, idle: Duration) {
    let _ = aio::send(client.get_mut(), &http1::json_response(status, &api_error(status, body), close), idle).await;
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

/// Parses a route file (`inference.json`).
pub fn read_route(bytes: &[u8]) -> Result<InferenceRoute, RouteError> {
    let route: InferenceRoute = serde_json::from_slice(bytes).map_err(RouteError::File)?;
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
        let v6 = Backend::parse("http://[fd00::5]:8000/v1").expect("url");
        assert_eq!((v6.host.as_str(), v6.port, v6.host_header()), ("fd00::5", 8000, "[fd00::5]:8000".to_owned()));
        assert_eq!(Backend::parse("HTTPS://API.Example.TEST/v1").expect("url").host, "api.example.test");
        let problem = |url: &str| match Backend::parse(url) {
            Err(RouteError::BaseUrl { problem, .. }) => problem,
            other => panic!("{url}: {other:?}"),
        };
        assert!(matches!(problem("ftp://x.test"), BaseUrlProblem::Scheme));
        assert!(matches!(problem("https://"), BaseUrlProblem::Parse(_)));
        assert!(matches!(problem("api.example.test/v1"), BaseUrlProblem::Parse(_)));
        assert!(matches!(problem("https://h.test/v1?x=1"), BaseUrlProblem::QueryOrFragment));
        assert!(matches!(problem("https://h.test/v1#f"), BaseUrlProblem::QueryOrFragment));
        assert!(matches!(problem("https://h.test:0/v1"), BaseUrlProblem::PortZero));
        // Before `url`, this host was `user@h.test`.
        assert!(matches!(problem("https://user@h.test/v1"), BaseUrlProblem::Credentials));
        assert!(matches!(problem("https://user:pw@h.test/v1"), BaseUrlProblem::Credentials));
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
