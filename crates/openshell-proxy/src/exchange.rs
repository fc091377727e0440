//! One decided request forwarded and its response relayed, and the proxy's
//! own answers on a connection that stays open: shared by plain HTTP
//! (`forward`) and inspected tunnels (`l7`).

use std::io;
use std::time::Duration;

use openshell_policy::model::Rpc;
use openshell_policy::{Message, Request};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use crate::aio::{self, CopyError};
use crate::http1::{self, Body, HeadError, Kind, RequestHead};
use crate::identify::Caller;
use crate::proxy::{Conn, Target, Upgraded, record_refusal};
use crate::rpc::{self, Checked, Post};
use crate::websocket;

/// Request headers never forwarded upstream (the proxy's own and hop-by-hop
/// ones; `Expect: 100-continue` is answered by the proxy).
const HOP_BY_HOP: &[&str] =
    &["proxy-authorization", "proxy-connection", "connection", "keep-alive", "te", "upgrade", "expect"];

/// Why an exchange ended the connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("relaying a body: {0}")]
    Copy(#[from] CopyError),
    #[error("the upstream's response: {0}")]
    Response(#[from] HeadError),
    #[error("the upstream closed without answering")]
    NoResponse,
    #[error("the upstream switched protocols, which was not asked for")]
    Switched,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What follows a forwarded request's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outgoing<'b> {
    /// Its body, streamed from the client as framed.
    Stream(Body),
    /// Nothing: a WebSocket upgrade (checked by `websocket::upgrade` and
    /// decided); its `Upgrade` and `Connection` go upstream, and a `101` is relayed.
    Upgrade,
    /// A body the proxy read whole and decided (JSON-RPC), sent with a Content-Length.
    Read(&'b [u8]),
}

/// Request headers a body read whole replaces.
const BODY_FRAMING: &[&str] = &["content-length", "transfer-encoding"];

/// How an exchange left the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exchanged {
    /// A response was relayed; `keep`: both connections may carry another request.
    Done { keep: bool },
    /// The upstream answered a WebSocket upgrade with `101`, relayed: frames follow.
    Switched,
}

/// Forwards `req` (its target as `origin`, origin-form) with its body, and
/// relays the response.
pub(crate) async fn exchange<C, U>(
    client: &mut BufReader<C>,
    up: &mut BufReader<U>,
    req: &RequestHead,
    origin: &str,
    out: Outgoing<'_>,
    idle: Duration,
) -> Result<Exchanged, ExchangeError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if matches!(out, Outgoing::Stream(_)) && http1::has_token(&req.headers, "expect", "100-continue") {
        // Answered here: the request was decided already, the body may come.
        aio::send(client.get_mut(), b"HTTP/1.1 100 Continue\r\n\r\n", idle).await?;
    }
    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(req.method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(origin.as_bytes());
    head.extend_from_slice(if req.version == 0 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    let read = match out {
        Outgoing::Read(bytes) => Some(bytes),
        Outgoing::Stream(_) | Outgoing::Upgrade => None,
    };
    if read.is_some() || out == Outgoing::Upgrade {
        let skip: Vec<&str> = HOP_BY_HOP.iter().chain(BODY_FRAMING).copied().collect();
        http1::push_headers(&mut head, &req.headers, &skip);
    } else {
        http1::push_headers(&mut head, &req.headers, HOP_BY_HOP);
    }
    if out == Outgoing::Upgrade {
        head.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    } else if req.version == 0 && client_keeps(req) {
        head.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    if let Some(bytes) = read {
        head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", bytes.len()).as_bytes());
        head.extend_from_slice(bytes);
    } else {
        head.extend_from_slice(b"\r\n");
    }
    aio::send(up.get_mut(), &head, idle).await?;
    if let Outgoing::Stream(body) = out {
        aio::copy_body(client, up.get_mut(), body, idle, &mut |_| {}).await?;
    }
    let response = loop {
        let bytes = aio::read_head(up, Kind::Response, idle, idle).await?.ok_or(ExchangeError::NoResponse)?;
        let parsed = http1::parse_response(&bytes)?;
        if parsed.status == 101 && out != Outgoing::Upgrade {
            return Err(ExchangeError::Switched);
        }
        aio::send(client.get_mut(), &bytes, idle).await?;
        if parsed.status == 101 {
            return Ok(Exchanged::Switched);
        }
        if !(100..200).contains(&parsed.status) {
            break parsed;
        }
    };
    let framing = http1::response_body(&req.method, &response);
    aio::copy_body(up, client.get_mut(), framing, idle, &mut |_| {}).await?;
    // An upgrade the upstream refused ends the connection: its state after
    // one is the server's to define.
    let keep = framing != Body::UntilClose
        && out != Outgoing::Upgrade
        && client_keeps(req)
        && response.version == 1
        && !http1::has_token(&response.headers, "connection", "close");
    Ok(Exchanged::Done { keep })
}

/// An allowed request, ready to go upstream.
pub(crate) struct Decided<'a> {
    pub(crate) head: &'a RequestHead,
    /// The target as sent upstream (origin-form).
    pub(crate) origin: &'a str,
    pub(crate) framing: Body,
    /// As the engine decided it (a WebSocket upgrade is `Message::WebSocketUpgrade`).
    pub(crate) request: &'a Request<'a>,
    /// The endpoint whose calls are in the body (`Decision::rpc`).
    pub(crate) rpc: Option<&'a Rpc>,
    /// It must carry no body (`Decision::bodiless`).
    pub(crate) bodiless: bool,
    pub(crate) caller: Option<&'a Caller>,
}

/// Forwards an allowed request: a JSON-RPC body read and decided call by call
/// first, a WebSocket relayed frame by frame once switched. `true`: the
/// connection may carry another request.
pub(crate) async fn forward<C, U>(
    conn: &Conn,
    client: &mut BufReader<C>,
    up: &mut BufReader<U>,
    d: &Decided<'_>,
) -> bool
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let idle = conn.shared.limits.idle_timeout;
    let http = d.request.http;
    let upgrade = http.is_some_and(|h| h.message == Message::WebSocketUpgrade);
    if (d.bodiless || upgrade) && !matches!(d.framing, Body::Empty | Body::Length(0)) {
        // Never forwarded: bytes the upstream would read as this body, and the
        // proxy as the next request, would be decided as one and served as another.
        let reason = "a body on a WebSocket upgrade or an MCP GET or DELETE would reach the server undecided";
        return refuse(conn, client, d.request, 400, reason, d.framing, false).await;
    }
    let body;
    let out = match (http.map(|h| h.message), d.rpc) {
        (Some(Message::WebSocketUpgrade), _) => Outgoing::Upgrade,
        (_, Some(rpc)) => {
            match rpc::check(conn, client, rpc, &Post { request: d.request, head: d.head, framing: d.framing }).await {
                Checked::Forward(held) => {
                    body = held;
                    Outgoing::Read(&body.body)
                }
                Checked::Answered { keep } => return keep,
            }
        }
        _ => Outgoing::Stream(d.framing),
    };
    match exchange(client, up, d.head, d.origin, out, idle).await {
        Ok(Exchanged::Done { keep }) => keep,
        Ok(Exchanged::Switched) => {
            let req = d.request;
            let upgrade = http.map(|h| Upgraded {
                path: h.path.to_owned(),
                query: h.query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            });
            let caller = d.caller.cloned();
            conn.register(Target {
                host: req.host.to_owned(),
                port: req.port,
                ip: req.resolved_ip,
                caller,
                upgrade,
                raw: false,
            });
            websocket::relay(conn, client, up, &websocket::Session { request: *req, idle }).await;
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, host = %d.request.host, "exchange ended");
            false
        }
    }
}

/// Whether the client asked to keep its connection after this request.
pub(crate) fn client_keeps(req: &RequestHead) -> bool {
    if req.version == 0 {
        http1::has_token(&req.headers, "connection", "keep-alive")
    } else {
        !http1::has_token(&req.headers, "connection", "close")
    }
}

/// Answers a request the proxy refused. The connection stays open when
/// `keep` and the refused request's body could be read past (`true`
/// returned); otherwise it closes after the answer.
pub(crate) async fn answer<C>(
    client: &mut BufReader<C>,
    status: u16,
    body: &Value,
    framing: Body,
    keep: bool,
    idle: Duration,
) -> bool
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let keep = keep && aio::drain(client, framing, idle).await;
    let _ = aio::send(client.get_mut(), &http1::json_response(status, body, !keep), idle).await;
    keep
}

/// Refuses a request the proxy will not forward whatever the policy says:
/// audited, answered (`keep`: the connection may stay open).
pub(crate) async fn refuse<C>(
    conn: &Conn,
    client: &mut BufReader<C>,
    req: &Request<'_>,
    status: u16,
    reason: &str,
    framing: Body,
    keep: bool,
) -> bool
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    record_refusal(&conn.shared, &conn.shared.generation(), req, reason);
    let body = json!({"error": format!("blocked: {reason}"), "host": req.host, "port": req.port});
    answer(client, status, &body, framing, keep, conn.shared.limits.idle_timeout).await
}
