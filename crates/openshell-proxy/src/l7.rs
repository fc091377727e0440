//! L7 inspection of a CONNECT tunnel. Its first byte says what it carries: a
//! TLS handshake (0x16) is terminated with a leaf from the sandbox's CA, and
//! anything else is read as plain HTTP/1. Each request on the (keep-alive or
//! pipelined) connection is read, checked (one Host header naming the
//! tunnel's host) and decided by the policy generation current when it
//! arrives: method, path and query (a WebSocket upgrade as such). An allowed
//! request is forwarded (over verified TLS when the client spoke TLS) to the
//! address that was checked at CONNECT time (`exchange::forward`: JSON-RPC
//! bodies decided call by call, WebSockets relayed frame by frame); a denied
//! one gets a 403 with a JSON body and the connection stays usable. The next
//! request's bytes stay in the proxy's buffer until the previous one was
//! decided and answered.

use std::net::IpAddr;
use std::sync::Arc;

use openshell_policy::{HttpRequest, Message, Request};
use rustls::ServerConfig;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::aio;
use crate::exchange::{self, Decided, answer, refuse};
use crate::http1::{self, Body, HeadError, Kind, RequestHead};
use crate::identify::Caller;
use crate::proxy::{CLIENT_BUFFER, Client, Conn, Head, UPSTREAM_BUFFER, authority, check_host, denial, record};
use crate::tls::Interceptor;
use crate::websocket;

/// The upstream side of an inspected tunnel, once opened: verified TLS, or
/// the plain TCP connection for plain HTTP.
type UpstreamSide = BufReader<Box<dyn Stream>>;

/// A byte stream either way (the upstream's TLS or TCP).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What the tunnel carries, as its first byte says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// A TLS handshake (0x16): terminated with the sandbox's CA, re-encrypted upstream.
    Https,
    /// Anything else: plain HTTP/1, inspected as it is (python's `websockets`
    /// opens `ws://` through a proxy with CONNECT).
    Http,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Http => 80,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// What the tunnel was opened for.
pub(crate) struct Tunnel<'a> {
    pub head: &'a Head,
    pub ip: IpAddr,
    pub caller: Option<&'a Caller>,
    pub ancestors: &'a [&'a str],
}

/// The upstream connection of a tunnel: dialled (TLS) on the first allowed request.
struct Upstream<'a> {
    tls: Option<&'a Interceptor>,
    tcp: Option<TcpStream>,
    open: Option<UpstreamSide>,
}

/// Runs an inspected tunnel until either side closes. The client has been told
/// `200 Connection Established`.
pub(crate) async fn inspect(
    conn: &Conn,
    tls: &Interceptor,
    server: Arc<ServerConfig>,
    mut client: Client,
    upstream: TcpStream,
    tunnel: &Tunnel<'_>,
) {
    // Requests and responses are small writes in turn: Nagle's algorithm would
    // hold each one for the peer's delayed ACK.
    let _ = client.get_ref().set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let limits = &conn.shared.limits;
    let first = tokio::time::timeout(limits.head_timeout, tokio::io::AsyncBufReadExt::fill_buf(&mut client)).await;
    let tls_first = match first {
        Ok(Ok([first, ..])) => *first == 0x16,
        _ => return,
    };
    if !tls_first {
        let up = Upstream { tls: None, tcp: Some(upstream), open: None };
        return serve(conn, client, up, tunnel, Scheme::Http).await;
    }
    let accepted = tokio::time::timeout(limits.head_timeout, TlsAcceptor::from(server).accept(client)).await;
    let Ok(Ok(tls_client)) = accepted else {
        return tracing::debug!(host = %tunnel.head.host, "the sandbox's TLS handshake failed");
    };
    let client = BufReader::with_capacity(CLIENT_BUFFER, tls_client);
    let up = Upstream { tls: Some(tls), tcp: Some(upstream), open: None };
    serve(conn, client, up, tunnel, Scheme::Https).await;
}

/// Each request of the tunnel, decided on its own, until either side closes.
async fn serve<C>(conn: &Conn, mut client: BufReader<C>, mut up: Upstream<'_>, tunnel: &Tunnel<'_>, scheme: Scheme)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &conn.shared.limits;
    let mut wait = limits.head_timeout;
    loop {
        let Some(req) = next_request(conn, &mut client, wait).await else { break };
        wait = limits.keepalive_timeout;
        if !request(conn, &mut client, &mut up, &req, tunnel, scheme).await {
            break;
        }
    }
    let _ = client.get_mut().shutdown().await;
}

/// Reads and parses the next request; `None` (after answering, when there is
/// something to say) ends the connection.
async fn next_request<C>(conn: &Conn, client: &mut BufReader<C>, wait: std::time::Duration) -> Option<RequestHead>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &conn.shared.limits;
    let bytes = match aio::read_head(client, Kind::Request, wait, limits.head_timeout).await {
        Ok(Some(b)) => b,
        Ok(None) | Err(HeadError::Io(_) | HeadError::Idle(_)) => return None,
        Err(e) => {
            answer(client, e.status(), &json!({"error": e.to_string()}), Body::Empty, false, limits.idle_timeout).await;
            return None;
        }
    };
    match http1::parse_request(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            answer(client, e.status(), &json!({"error": e.to_string()}), Body::Empty, false, limits.idle_timeout).await;
            None
        }
    }
}

/// One request on the tunnel; `false`: the connection ends.
async fn request<C>(
    conn: &Conn,
    client: &mut BufReader<C>,
    up: &mut Upstream<'_>,
    req: &RequestHead,
    tunnel: &Tunnel<'_>,
    scheme: Scheme,
) -> bool
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let shared = &conn.shared;
    let idle = shared.limits.idle_timeout;
    let generation = shared.generation();
    let (path, raw_query) = split_target(&req.target);
    let pairs = http1::query_pairs(raw_query);
    let query: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut engine_req = engine_request(tunnel, Some(HttpRequest::plain(&req.method, path, &query)));
    let framing = match http1::request_framing(req) {
        Ok(b) => b,
        Err(e) => return refuse(conn, client, &engine_req, 400, &e.to_string(), Body::Empty, false).await,
    };
    if let Some((status, reason)) = refuse_always(req, tunnel, scheme) {
        return refuse(conn, client, &engine_req, status, reason, framing, status == 403).await;
    }
    match websocket::upgrade(req) {
        Ok(false) => {}
        Ok(true) => {
            engine_req.http = Some(HttpRequest {
                message: Message::WebSocketUpgrade,
                ..HttpRequest::plain(&req.method, path, &query)
            })
        }
        Err(e) => return refuse(conn, client, &engine_req, 403, &e.to_string(), framing, true).await,
    }
    let decision = generation.engine.decide(&engine_req);
    record(shared, &generation, &engine_req, &decision, None);
    if !decision.is_allowed() {
        let body = denial(&tunnel.head.host, tunnel.head.port, &decision, &generation, &engine_req);
        return answer(client, 403, &body, framing, true, idle).await;
    }
    let upstream = match opened(up, tunnel, idle).await {
        Ok(u) => u,
        Err(e) => {
            let body = json!({"error": format!("TLS to the upstream {e}"), "host": tunnel.head.host});
            return answer(client, 502, &body, framing, false, idle).await;
        }
    };
    let origin = if raw_query.is_empty() { path.to_owned() } else { format!("{path}?{raw_query}") };
    let decided = Decided {
        head: req,
        origin: &origin,
        framing,
        request: &engine_req,
        rpc: decision.rpc,
        bodiless: decision.bodiless,
        caller: tunnel.caller,
    };
    exchange::forward(conn, client, upstream, &decided).await
}

/// Why a tunnel's upstream could not be used.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{0}")]
    Tls(#[from] crate::tls::DialError),
    #[error("failed: the connection was lost")]
    Gone,
}

/// The upstream connection, opened (TLS dialled) on first use.
async fn opened<'u>(
    up: &'u mut Upstream<'_>,
    tunnel: &Tunnel<'_>,
    idle: std::time::Duration,
) -> Result<&'u mut UpstreamSide, OpenError> {
    if up.open.is_none() {
        let tcp = up.tcp.take().ok_or(OpenError::Gone)?;
        let stream: Box<dyn Stream> = match up.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(crate::tls::dial(tls, tcp, &tunnel.head.host, idle).await?),
        };
        up.open = Some(BufReader::with_capacity(UPSTREAM_BUFFER, stream));
    }
    up.open.as_mut().ok_or(OpenError::Gone)
}

/// A request the proxy will not forward whatever the policy says, with its
/// status: 400 for a Host header (or absolute-form target) that does not name
/// the tunnel's host (anything else would let a request reach a virtual host
/// the policy never saw), 403 for what is not inspected.
fn refuse_always(req: &RequestHead, tunnel: &Tunnel<'_>, scheme: Scheme) -> Option<(u16, &'static str)> {
    if req.method.eq_ignore_ascii_case("CONNECT") {
        return Some((403, "CONNECT inside an inspected tunnel"));
    }
    let default = scheme.default_port();
    if let Err(e) = check_host(req, &tunnel.head.host, tunnel.head.port, default) {
        return Some((400, host_reason(e)));
    }
    if let Some(i) = req.target.find("://") {
        let auth = req.target[i + 3..].split(['/', '?', '#']).next().unwrap_or_default();
        let same = authority(auth, Some(default)).is_some_and(|(h, p)| h == tunnel.head.host && p == tunnel.head.port);
        if !req.target[..i].eq_ignore_ascii_case(scheme.as_str()) || !same {
            return Some((400, "the request's target does not name the host of the tunnel"));
        }
    }
    None
}

fn host_reason(e: http1::HostError) -> &'static str {
    match e {
        http1::HostError::Missing => "the request has no Host header",
        http1::HostError::Duplicate => "the request has more than one Host header",
        http1::HostError::Malformed => "the Host header is not a host[:port]",
        http1::HostError::Mismatch => "the Host header does not name the host of the tunnel",
    }
}

fn engine_request<'a>(tunnel: &'a Tunnel<'a>, http: Option<HttpRequest<'a>>) -> Request<'a> {
    Request {
        host: &tunnel.head.host,
        port: tunnel.head.port,
        binary: tunnel.caller.map(|c| c.binary.as_str()),
        ancestors: tunnel.ancestors,
        resolved_ip: Some(tunnel.ip),
        http,
    }
}

/// The path (origin-form, or the path of an absolute-form target) and the query.
fn split_target(target: &str) -> (&str, &str) {
    let origin = match target.find("://") {
        Some(i) => target[i + 3..].find('/').map_or("/", |j| &target[i + 3 + j..]),
        None => target,
    };
    let origin = origin.split('#').next().unwrap_or(origin);
    match origin.split_once('?') {
        Some((p, q)) => (p, q),
        None => (origin, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::split_target;

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(split_target("/a/b?x=1&y=2"), ("/a/b", "x=1&y=2"));
        assert_eq!(split_target("/a#frag"), ("/a", ""));
        assert_eq!(split_target("https://h.test/p?q"), ("/p", "q"));
        assert_eq!(split_target("https://h.test"), ("/", ""));
    }
}
