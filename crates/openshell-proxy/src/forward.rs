//! Plain HTTP through the proxy (absolute-form `http://` requests), request
//! by request: each request of a kept-alive or pipelined connection is read,
//! checked (one Host header naming the request's target), decided (host, port,
//! caller, method, path, query) and only then forwarded; the next request's
//! bytes stay in the proxy's buffer until the previous response has been
//! relayed. A request for another host than the previous one is decided and
//! connected on its own.

use std::net::IpAddr;

use openshell_policy::{HttpRequest, Message, Request};
use serde_json::json;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::exchange::{self, Decided, answer, refuse};
use crate::http1::{self, Body};
use crate::identify::Caller;
use crate::proxy::{Client, Conn, Head, Target, check_host, denial, read_request, record};
use crate::router::INFERENCE_HOST;
use crate::websocket;

/// The upstream connection kept between requests.
struct Upstream {
    host: String,
    port: u16,
    ip: IpAddr,
    conn: BufReader<TcpStream>,
}

/// Serves a connection whose first request was `first`, until either side
/// ends it.
pub(crate) async fn serve(conn: &Conn, mut client: Client, first: Head, caller: Option<Caller>) {
    // Requests and responses are small writes in turn: Nagle's algorithm would
    // hold each one for the peer's delayed ACK.
    let _ = client.get_ref().set_nodelay(true);
    let limits = &conn.shared.limits;
    let mut upstream: Option<Upstream> = None;
    let mut next = Some(first);
    loop {
        let head = match next.take() {
            Some(h) => h,
            None => match read_request(&mut client, limits.keepalive_timeout, limits.head_timeout).await {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(refusal) => return refusal.send(&mut client).await,
            },
        };
        if head.connect {
            return conn.tunnel(client, &head, caller).await;
        }
        if !request(conn, &mut client, &mut upstream, &head, caller.as_ref()).await {
            return;
        }
    }
}

/// One request; `false`: the connection ends.
async fn request(
    conn: &Conn,
    client: &mut Client,
    upstream: &mut Option<Upstream>,
    head: &Head,
    caller: Option<&Caller>,
) -> bool {
    let shared = &conn.shared;
    let idle = shared.limits.idle_timeout;
    let generation = shared.generation();
    let ancestors: Vec<&str> = caller.iter().flat_map(|c| c.ancestors.iter().map(String::as_str)).collect();
    let pairs = head.target.split_once('?').map(|(_, q)| http1::query_pairs(q));
    let query: Vec<(&str, &str)> = pairs.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut http = HttpRequest::plain(&head.req.method, &head.path, &query);
    let upgrade = websocket::upgrade(&head.req);
    if upgrade == Ok(true) {
        http.message = Message::WebSocketUpgrade;
    }
    let mut req = Request {
        host: &head.host,
        port: head.port,
        binary: caller.map(|c| c.binary.as_str()),
        ancestors: &ancestors,
        resolved_ip: None,
        http: Some(http),
    };
    let framing = match http1::request_framing(&head.req) {
        Ok(b) => b,
        Err(e) => return refuse(conn, client, &req, 400, &e.to_string(), Body::Empty, false).await,
    };
    if head.host == INFERENCE_HOST {
        let reason = format!("{INFERENCE_HOST} is reached over HTTPS (https://{INFERENCE_HOST}/)");
        return refuse(conn, client, &req, 400, &reason, framing, true).await;
    }
    // Decided before resolving: a name the policy does not allow is never looked up.
    let decision = generation.engine.decide(&req);
    if !decision.is_allowed() {
        record(shared, &generation, &req, &decision, None);
        let body = denial(&head.host, head.port, &decision, &generation, &req);
        return answer(client, 403, &body, framing, true, idle).await;
    }
    if decision.route {
        let reason = "this endpoint is routed to the privacy router, which is reached over HTTPS";
        return refuse(conn, client, &req, 400, reason, framing, true).await;
    }
    // Allowed by name: the Host header must name the same target, or the
    // request could reach a virtual host the policy never saw.
    if let Err(e) = check_host(&head.req, &head.host, head.port, 80) {
        return refuse(conn, client, &req, 400, &e.to_string(), framing, false).await;
    }
    if let Err(e) = upgrade {
        return refuse(conn, client, &req, 403, &e.to_string(), framing, true).await;
    }
    let kept = upstream.take().filter(|u| u.host == head.host && u.port == head.port);
    let reused = kept.is_some();
    let mut up = match kept {
        Some(u) => {
            // The kept connection's address, decided again for this request.
            req.resolved_ip = Some(u.ip);
            u
        }
        None => match connect(conn, &mut req, &generation, caller).await {
            Ok(u) => u,
            Err(refusal) => return answer(client, refusal.status, &refusal.body, framing, true, idle).await,
        },
    };
    // Decided with the address (a new connection's decision was recorded by `connect`).
    let decision = generation.engine.decide(&req);
    if reused {
        record(shared, &generation, &req, &decision, None);
    }
    if !decision.is_allowed() {
        let body = denial(&head.host, head.port, &decision, &generation, &req);
        return answer(client, 403, &body, framing, true, idle).await;
    }
    let decided = Decided {
        head: &head.req,
        origin: &head.target,
        framing,
        request: &req,
        rpc: decision.rpc,
        bodiless: decision.bodiless,
        caller,
    };
    let keep = exchange::forward(conn, client, &mut up.conn, &decided).await;
    if keep {
        *upstream = Some(up);
    }
    keep
}

/// Resolves, decides with the address, connects; the connection is tracked
/// for reloads.
async fn connect(
    conn: &Conn,
    req: &mut Request<'_>,
    generation: &crate::proxy::Generation,
    caller: Option<&Caller>,
) -> Result<Upstream, crate::proxy::Refusal> {
    let ip = conn.checked_address(req, generation).await?;
    let (host, port) = (req.host.to_owned(), req.port);
    let tcp = conn.shared.connect(std::net::SocketAddr::new(ip, port)).await.map_err(|e| crate::proxy::Refusal {
        status: 502,
        body: json!({"error": format!("cannot connect: {e}"), "host": host, "ip": ip.to_string()}),
    })?;
    let _ = tcp.set_nodelay(true);
    conn.register(Target {
        host: host.clone(),
        port,
        ip: Some(ip),
        caller: caller.cloned(),
        upgrade: None,
        raw: false,
    });
    Ok(Upstream { host, port, ip, conn: BufReader::with_capacity(crate::proxy::UPSTREAM_BUFFER, tcp) })
}
