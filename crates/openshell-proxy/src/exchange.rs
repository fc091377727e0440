//! One decided request forwarded and its response relayed, and the proxy's
//! own answers on a connection that stays open: shared by plain HTTP
//! (`forward`) and inspected tunnels (`l7`).

use std::io;
use std::time::Duration;

use openshell_policy::Request;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use crate::aio::{self, CopyError};
use crate::http1::{self, Body, HeadError, Kind, RequestHead};
use crate::proxy::{Conn, record_refusal};

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

/// Forwards `req` (its target as `origin`, origin-form) with its body, and
/// relays the response. `Ok(true)`: both connections may carry another request.
pub(crate) async fn exchange<C, U>(
    client: &mut BufReader<C>,
    up: &mut BufReader<U>,
    req: &RequestHead,
    origin: &str,
    body: Body,
    idle: Duration,
) -> Result<bool, ExchangeError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if http1::has_token(&req.headers, "expect", "100-continue") {
        // Answered here: the request was decided already, the body may come.
        aio::send(client.get_mut(), b"HTTP/1.1 100 Continue\r\n\r\n", idle).await?;
    }
    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(req.method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(origin.as_bytes());
    head.extend_from_slice(if req.version == 0 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    http1::push_headers(&mut head, &req.headers, HOP_BY_HOP);
    if req.version == 0 && client_keeps(req) {
        head.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
    aio::send(up.get_mut(), &head, idle).await?;
    aio::copy_body(client, up.get_mut(), body, idle, &mut |_| {}).await?;
    let response = loop {
        let bytes = aio::read_head(up, Kind::Response, idle, idle).await?.ok_or(ExchangeError::NoResponse)?;
        let parsed = http1::parse_response(&bytes)?;
        if parsed.status == 101 {
            return Err(ExchangeError::Switched);
        }
        aio::send(client.get_mut(), &bytes, idle).await?;
        if !(100..200).contains(&parsed.status) {
            break parsed;
        }
    };
    let framing = http1::response_body(&req.method, &response);
    aio::copy_body(up, client.get_mut(), framing, idle, &mut |_| {}).await?;
    Ok(framing != Body::UntilClose
        && client_keeps(req)
        && response.version == 1
        && !http1::has_token(&response.headers, "connection", "close"))
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
