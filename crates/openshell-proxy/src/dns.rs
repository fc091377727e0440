//! The sandbox's DNS responder: the only resolver a fenced sandbox reaches (its
//! fence sends every UDP query on port 53 here, whatever server the client
//! named). It answers A and AAAA for names the current network policy names
//! (any endpoint's host), with the addresses the proxy pins for that name and
//! could dial (a blocked range never; a private one only through an endpoint's
//! `allowed_ips`); every other name is NXDOMAIN, audited as OCSF DNS activity (class
//! 4003). No query leaves the host but this responder's own lookup through the
//! proxy's resolver. Messages are parsed and written with `hickory-proto`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// A bound responder; [`Dns::serve`] runs it.
pub struct Dns {
    pub(crate) socket: UdpSocket,
    pub(crate) shared: Arc<Shared>,
    /// The only peer address answered (the sandbox's); `None`: any.
    pub(crate) peer: Option<IpAddr>,
}

impl Dns {
    /// Answers queries until the socket fails; each on a thread of its own (a
    /// lookup may block), at most [`IN_FLIGHT`] at once.
    pub fn serve(self) -> std::io::Result<()> {
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
                if let Some(reply) = answer(&shared, &query, from) {
                    let _ = socket.send_to(&reply, from);
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// The reply to `query`, or none for what is not a query (dropped).
fn answer(shared: &Shared, query: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
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
    reply.to_vec().ok()
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
