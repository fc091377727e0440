//! L7 inspection of a CONNECT tunnel: TLS is terminated with a leaf from the
//! sandbox's CA, and each request on the (keep-alive) connection is decided by
//! the policy generation current when it arrives: method, path and query. An
//! allowed request is forwarded over verified TLS to the address that was
//! checked at CONNECT time; a denied one gets a 403 with a JSON body and the
//! connection stays usable.

use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;

use openshell_policy::{HttpRequest, Request};
use rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};
use serde_json::json;

use crate::http1::{self, Body, HeadError, RequestHead};
use crate::identify::Caller;
use crate::proxy::{Head, Shared, authority, denial, record, record_refusal};
use crate::tls::Interceptor;

/// Request headers never forwarded upstream.
const HOP_BY_HOP: &[&str] = &["proxy-authorization", "proxy-connection", "keep-alive", "expect"];

/// A client stream with bytes that were read ahead of the TLS handshake.
pub(crate) struct Prefixed {
    pub(crate) prefix: io::Cursor<Vec<u8>>,
    pub(crate) inner: TcpStream,
}

impl Read for Prefixed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.prefix.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type ClientSide = BufReader<StreamOwned<ServerConnection, Prefixed>>;
type UpstreamSide = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// What the tunnel was opened for.
pub(crate) struct Tunnel<'a> {
    pub head: &'a Head,
    pub ip: IpAddr,
    pub caller: Option<&'a Caller>,
    pub ancestors: &'a [&'a str],
}

/// Runs an inspected tunnel until either side closes. The client has been told
/// `200 Connection Established`.
pub(crate) fn inspect(
    shared: &Shared,
    tls: &Interceptor,
    server: Arc<ServerConfig>,
    client: TcpStream,
    upstream: TcpStream,
    tunnel: &Tunnel<'_>,
) {
    // Requests and responses are small writes in turn: Nagle's algorithm would
    // hold each one for the peer's delayed ACK.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let conn = match ServerConnection::new(server) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "starting TLS towards the sandbox"),
    };
    let prefixed = Prefixed { prefix: io::Cursor::new(tunnel.head.rest.clone()), inner: client };
    let mut client: ClientSide = BufReader::with_capacity(64 * 1024, StreamOwned::new(conn, prefixed));
    let mut upstream = Some(upstream);
    let mut open: Option<UpstreamSide> = None;
    loop {
        let bytes = match http1::read_head_bytes(&mut client) {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(HeadError::Io(e)) => {
                tracing::debug!(error = %e, host = %tunnel.head.host, "inspected connection ended");
                break;
            }
            Err(e) => {
                reply(&mut client, 400, &json!({"error": e.to_string()}), true);
                break;
            }
        };
        let req = match http1::parse_request(&bytes) {
            Ok(r) => r,
            Err(e) => {
                reply(&mut client, 400, &json!({"error": e.to_string()}), true);
                break;
            }
        };
        let body = match http1::request_body(&req.headers) {
            Ok(b) => b,
            Err(message) => {
                reply(&mut client, 400, &json!({"error": message}), true);
                break;
            }
        };
        let generation = Arc::clone(&*shared.generation.read().unwrap_or_else(|p| p.into_inner()));
        if let Some(refusal) = refuse(&req, tunnel) {
            let (path, _) = split_target(&req.target);
            let http = HttpRequest { method: &req.method, path, query: &[] };
            record_refusal(shared, &generation, &engine_request(tunnel, Some(http)), refusal);
            if !drain(&mut client, body) {
                reply(&mut client, 403, &json!({"error": format!("blocked: {refusal}")}), true);
                break;
            }
            reply(&mut client, 403, &json!({"error": format!("blocked: {refusal}")}), false);
            continue;
        }
        let (path, query) = split_target(&req.target);
        let pairs = http1::query_pairs(query);
        let query: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let http = HttpRequest { method: &req.method, path, query: &query };
        let engine_req = engine_request(tunnel, Some(http));
        let decision = generation.engine.decide(&engine_req);
        record(shared, &generation, &engine_req, &decision, None);
        if !decision.is_allowed() {
            let body_json = denial(tunnel.head, &decision, &generation, &engine_req);
            let close = !drain(&mut client, body);
            reply(&mut client, 403, &body_json, close);
            if close {
                break;
            }
            continue;
        }
        if open.is_none() {
            let Some(tcp) = upstream.take() else { break };
            match connect_upstream(tls, tcp, &tunnel.head.host) {
                Ok(u) => open = Some(u),
                Err(message) => {
                    let body = json!({"error": message, "host": tunnel.head.host});
                    reply(&mut client, 502, &body, true);
                    break;
                }
            }
        }
        let Some(up) = open.as_mut() else { break };
        match exchange(&mut client, up, &req, body) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::debug!(error = %e, host = %tunnel.head.host, "inspected exchange ended");
                break;
            }
        }
    }
    let stream = client.get_mut();
    stream.conn.send_close_notify();
    let _ = stream.flush();
    let _ = stream.sock.inner.shutdown(std::net::Shutdown::Both);
}

/// A request the proxy will not forward whatever the policy says.
fn refuse(req: &RequestHead, tunnel: &Tunnel<'_>) -> Option<&'static str> {
    if http1::header(&req.headers, "upgrade").is_some() {
        return Some("protocol upgrades (such as WebSocket) are not inspected");
    }
    if req.method.eq_ignore_ascii_case("CONNECT") {
        return Some("CONNECT inside an inspected tunnel");
    }
    // The Host header must name the host the tunnel was decided for: anything
    // else would let a request reach a virtual host the policy never saw.
    let host = http1::header(&req.headers, "host").and_then(|v| std::str::from_utf8(v).ok())?;
    let same =
        authority(host, Some(tunnel.head.port)).is_some_and(|(h, p)| h == tunnel.head.host && p == tunnel.head.port);
    (!same).then_some("the Host header does not name the host of the tunnel")
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

/// Opens verified TLS to the upstream; the error says why, for the client.
fn connect_upstream(tls: &Interceptor, tcp: TcpStream, host: &str) -> Result<UpstreamSide, String> {
    let name = Interceptor::server_name(host).map_err(|e| e.to_string())?;
    let config = tls.client_config().map_err(|e| format!("TLS to the upstream: {e}"))?;
    let mut conn = ClientConnection::new(config, name).map_err(|e| format!("TLS to the upstream: {e}"))?;
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| format!("TLS to the upstream failed: {e}"))?;
    }
    Ok(BufReader::with_capacity(256 * 1024, StreamOwned::new(conn, tcp)))
}

/// Forwards one request and its response. `Ok(false)`: the connection ends
/// after this exchange.
fn exchange(client: &mut ClientSide, up: &mut UpstreamSide, req: &RequestHead, body: Body) -> io::Result<bool> {
    if http1::has_token(&req.headers, "expect", "100-continue") {
        // Answered here: the request was decided already, the body may come.
        client.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        client.get_mut().flush()?;
    }
    let (path, query) = split_target(&req.target);
    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(req.method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        head.push(b'?');
        head.extend_from_slice(query.as_bytes());
    }
    head.extend_from_slice(if req.version == 0 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
    http1::push_headers(&mut head, &req.headers, HOP_BY_HOP);
    head.extend_from_slice(b"\r\n");
    up.get_mut().write_all(&head)?;
    http1::copy_body(client, up.get_mut(), body)?;
    up.get_mut().flush()?;
    let response = loop {
        let bytes = match http1::read_head_bytes(up) {
            Ok(Some(b)) => b,
            Ok(None) | Err(HeadError::Truncated) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the upstream closed without answering"));
            }
            Err(HeadError::Io(e)) => return Err(e),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        let parsed = http1::parse_response(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        client.get_mut().write_all(&bytes)?;
        if (100..200).contains(&parsed.status) && parsed.status != 101 {
            client.get_mut().flush()?;
            continue;
        }
        break parsed;
    };
    let framing = http1::response_body(&req.method, &response);
    http1::copy_body(up, client.get_mut(), framing)?;
    client.get_mut().flush()?;
    let keep = response.status != 101
        && framing != Body::UntilClose
        && req.version == 1
        && response.version == 1
        && !http1::has_token(&req.headers, "connection", "close")
        && !http1::has_token(&response.headers, "connection", "close");
    Ok(keep)
}

/// Reads and drops a refused request's body; `false` when it cannot be
/// delimited (the connection must then close).
fn drain(client: &mut ClientSide, body: Body) -> bool {
    http1::copy_body(client, &mut io::sink(), body).is_ok()
}

fn reply(client: &mut ClientSide, status: u16, body: &serde_json::Value, close: bool) {
    let stream = client.get_mut();
    let _ = stream.write_all(&http1::json_response(status, body, close));
    let _ = stream.flush();
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
