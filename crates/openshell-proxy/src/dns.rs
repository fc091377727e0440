//! The sandbox's DNS responder: the only resolver a fenced sandbox reaches (its
//! fence sends every UDP query on port 53 here, whatever server the client
//! named). It answers A and AAAA for names the current network policy names
//! (any endpoint's host), with the addresses the proxy pins for that name and
//! could dial (a blocked range never; a private one only through an endpoint's
//! `allowed_ips`); every other name is NXDOMAIN, audited as OCSF DNS activity (class
//! 4003). No query leaves the host but this responder's own lookup through the
//! proxy's resolver. Messages are parsed and written with `hickory-proto`.
//!
//! A reply longer than the query's UDP payload size (512 bytes without EDNS) goes
//! back truncated: no answers, TC set. Queries over TCP (RFC 7766: each message
//! after its two-byte length; a client falls back to it for a truncated answer,
//! `dig +tcp`, `options use-vc`) get the whole answers, one connection per thread, at most [`TCP_CONNECTIONS`] at once
//! (a further one is closed at once), each closed after [`TCP_IDLE`] without a
//! query or at the first message that is not one.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

use crate::audit::{AuditEvent, now_ms};
use crate::proxy::Shared;

/// The DNS port, on the host end of a sandbox's link.
pub const DNS_PORT: u16 = 53;
/// Queries answered at the same time; more are dropped (the client retries).
const IN_FLIGHT: usize = 32;
/// Largest query read (EDNS clients advertise up to 1232 bytes and more).
const MAX_QUERY: usize = 4096;
/// TCP connections served at once.
pub const TCP_CONNECTIONS: usize = 8;
/// How long a TCP connection may wait for its next query.
pub const TCP_IDLE: Duration = Duration::from_secs(10);

/// A bound responder; [`Dns::serve`] runs it.
pub struct Dns {
    pub(crate) socket: UdpSocket,
    /// Where queries over TCP come, when they do.
    pub(crate) tcp: Option<TcpListener>,
    pub(crate) shared: Arc<Shared>,
    /// The only peer address answered (the sandbox's); `None`: any.
    pub(crate) peer: Option<IpAddr>,
}

impl Dns {
    /// Also answers queries over TCP on `listener`.
    pub fn with_tcp(self, listener: TcpListener) -> Dns {
        Dns { tcp: Some(listener), ..self }
    }

    /// Answers queries until the UDP socket fails; each on a thread of its own
    /// (a lookup may block), at most [`IN_FLIGHT`] at once. Queries over TCP are
    /// served on threads of their own.
    pub fn serve(self) -> std::io::Result<()> {
        if let Some(listener) = self.tcp {
            let (shared, peer) = (Arc::clone(&self.shared), self.peer);
            std::thread::spawn(move || {
                if let Err(e) = serve_tcp(&listener, &shared, peer) {
                    eprintln!("dns over tcp: {e}");
                }
            });
        }
        let socket = Arc::new(self.socket);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut buffer = vec![0u8; MAX_QUERY];
        loop {
            let (n, from) = socket.recv_from(&mut buffer)?;
            if self.peer.is_some_and(|peer| peer != from.ip()) || in_flight.load(Ordering::SeqCst) >= IN_FLIGHT {
                continue;
            }
            let query = buffer[..n].to_vec();
            let (socket, shared, in_flight) = (Arc::clone(&socket), Arc::clone(&self.shared), Arc::clone(&in_flight));
            in_flight.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                if let Some(reply) = answer_udp(&shared, &query, from) {
                    let _ = socket.send_to(&reply, from);
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// Serves the TCP connections `listener` accepts until it fails.
fn serve_tcp(listener: &TcpListener, shared: &Arc<Shared>, peer: Option<IpAddr>) -> std::io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (conn, from) = match listener.accept() {
            Ok(accepted) => accepted,
            // As the proxy's accept loop: out of descriptors for a moment (a
            // retry at once would spin), not the listener's end.
            Err(e) if e.raw_os_error().is_some_and(crate::proxy::transient) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(e),
        };
        // Only this thread adds: a count read here never grows before the add.
        if peer.is_some_and(|peer| peer != from.ip()) || open.load(Ordering::SeqCst) >= TCP_CONNECTIONS {
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (shared, open) = (Arc::clone(shared), Arc::clone(&open));
        std::thread::spawn(move || {
            let _ = answer_stream(conn, &shared, from);
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Answers the queries of one TCP connection, in order, until it ends, idles
/// for [`TCP_IDLE`] or sends what is not a query.
fn answer_stream(mut conn: TcpStream, shared: &Shared, from: SocketAddr) -> std::io::Result<()> {
    conn.set_read_timeout(Some(TCP_IDLE))?;
    conn.set_write_timeout(Some(TCP_IDLE))?;
    loop {
        let mut length = [0u8; 2];
        conn.read_exact(&mut length)?;
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
        conn.read_exact(&mut query)?;
        let Some(reply) = answer(shared, &query, from).and_then(|(reply, _)| reply.to_vec().ok()) else {
            return Ok(());
        };
        let Ok(length) = u16::try_from(reply.len()) else { return Ok(()) };
        let mut framed = Vec::with_capacity(2 + reply.len());
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&reply);
        conn.write_all(&framed)?;
    }
}

/// The reply to `query` over UDP: when it is longer than the query's UDP payload
/// size (512 bytes, or what its EDNS record says), the same without its answers
/// and with TC set, which sends the client to TCP for the whole answer.
fn answer_udp(shared: &Shared, query: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let (reply, max_payload) = answer(shared, query, from)?;
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= usize::from(max_payload) {
        return Some(bytes);
    }
    reply.truncate().to_vec().ok()
}

/// The reply to `query` and the query's UDP payload size, or none for what is
/// not a query (dropped).
fn answer(shared: &Shared, query: &[u8], from: SocketAddr) -> Option<(Message, u16)> {
    let query = Message::from_vec(query).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let code = match (query.metadata.op_code, query.queries.as_slice()) {
        (OpCode::Query, [question]) => {
            reply.add_query(question.clone());
            let name = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
            let (code, answers) = lookup(shared, &name, question.query_type(), from);
            for (ip, ttl) in answers {
                let rdata = match ip {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                };
                reply.add_answer(Record::from_rdata(question.name().clone(), ttl, rdata));
            }
            code
        }
        (OpCode::Query, _) => ResponseCode::FormErr,
        _ => ResponseCode::NotImp,
    };
    reply.metadata.response_code = code;
    Some((reply, query.max_payload()))
}

/// The answer for `name`: NXDOMAIN (audited) when no network policy names it,
/// else its pinned addresses of the asked family (none for other types).
fn lookup(shared: &Shared, name: &str, kind: RecordType, from: SocketAddr) -> (ResponseCode, Vec<(IpAddr, u32)>) {
    let generation = shared.generation();
    let Some(&port) = generation.engine.ports_for_host(name).first() else {
        refuse(shared, generation.revision, name, from);
        return (ResponseCode::NXDomain, Vec::new());
    };
    let family = match kind {
        RecordType::A => IpAddr::is_ipv4,
        RecordType::AAAA => IpAddr::is_ipv6,
        _ => return (ResponseCode::NoError, Vec::new()),
    };
    match shared.resolve_pinned(name, port) {
        // Only addresses the proxy could dial for this name (never a blocked range,
        // a private one only through an endpoint's allowed_ips).
        Ok((addresses, ttl)) => (
            ResponseCode::NoError,
            addresses
                .into_iter()
                .filter(|ip| family(ip) && generation.engine.address_allowed_for_host(name, *ip))
                .map(|ip| (ip, ttl))
                .collect(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (ResponseCode::NXDomain, Vec::new()),
        Err(_) => (ResponseCode::ServFail, Vec::new()),
    }
}

/// Audits a refused name (OCSF DNS activity).
fn refuse(shared: &Shared, revision: u64, name: &str, from: SocketAddr) {
    shared.audit.record(&AuditEvent {
        time: now_ms(),
        class_uid: 4003,
        class_name: "DNS Activity",
        disposition: "blocked",
        sandbox: shared.sandbox.clone(),
        actor_process: None,
        dst_hostname: name.to_owned(),
        dst_port: DNS_PORT,
        dst_ip: None,
        http_method: None,
        http_path: None,
        policy: None,
        reason: Some(format!("no network policy names {name} (query from {from})")),
        revision,
        raw_tcp: false,
        rpc_method: None,
        rpc_tool: None,
        websocket: None,
    });
}
