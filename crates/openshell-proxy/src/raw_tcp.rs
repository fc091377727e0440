//! Raw TCP for `protocol: tcp` endpoints (an ssh client, a database driver:
//! programs that know nothing of proxies). The sandbox's fence redirects every
//! outbound TCP connection that is not to the proxy to a listener inside the
//! sandbox's namespace; here the connection's original destination
//! (SO_ORIGINAL_DST) is mapped back to the names the DNS responder (or the
//! proxy) pinned to that address, then to the address itself, and each is
//! decided against `protocol: tcp` endpoints only: host, port, the calling
//! binary (found by the connection as the caller's socket sees it) and the
//! address rules. The first allowed one is relayed to exactly that address
//! (relayed as a CONNECT tunnel); anything else is reset at once and audited.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use openshell_policy::Request;
use tokio::net::TcpStream;

use crate::audit::AuditEvent;
use crate::identify::Caller;
use crate::proxy::{Conn, Shared, Target, decision_event, event};
use crate::relay;

/// Serves one redirected connection until either side closes it.
pub(crate) async fn serve(conn: &Conn, client: TcpStream) {
    let (Ok(peer), Ok(local)) = (client.peer_addr(), client.local_addr()) else { return };
    let original = match original_destination(&client) {
        Some(original) if original != local => original,
        // Not redirected: a connection straight to the listener's own address.
        _ => {
            conn.shared.refuse_quietly("raw TCP to the proxy's raw TCP listener itself");
            return reset(client);
        }
    };
    let caller = conn.identify(peer, original).await;
    let hosts = candidates(&conn.shared, original.ip());
    if conn.pinned(&hosts[0], original.port(), caller.as_ref()).is_some() {
        return reset(client);
    }
    match decide(&conn.shared, &hosts, original, caller.as_ref()) {
        Some(host) => {
            let (ip, port) = (Some(original.ip()), original.port());
            relay(conn, client, Target { host, port, ip, caller, upgrade: None, raw: true }).await;
        }
        None => reset(client),
    }
}

/// The hosts `ip` may stand for: the names pinned to it, most recent first,
/// then the address itself.
fn candidates(shared: &Shared, ip: IpAddr) -> Vec<String> {
    let literal = ip.to_string();
    let mut hosts = shared.names_for(ip);
    hosts.retain(|h| *h != literal);
    hosts.push(literal);
    hosts
}

/// Decides the connection to `original` under each of `hosts` (`protocol: tcp`
/// endpoints only) and audits the outcome: the first allowed host, or the
/// denial under the first (the name most recently given to the address).
fn decide(shared: &Shared, hosts: &[String], original: SocketAddr, caller: Option<&Caller>) -> Option<String> {
    let generation = shared.generation();
    let ancestors: Vec<&str> = caller.iter().flat_map(|c| c.ancestors.iter().map(String::as_str)).collect();
    let request = |host| Request {
        host,
        port: original.port(),
        binary: caller.map(|c| c.binary.as_str()),
        ancestors: &ancestors,
        resolved_ip: Some(original.ip()),
        http: None,
    };
    let decisions: Vec<_> = hosts.iter().map(|h| (h, generation.engine.decide_transparent(&request(h)))).collect();
    let (host, decision) = decisions.iter().find(|(_, d)| d.is_allowed()).unwrap_or(&decisions[0]);
    let others: Vec<&str> = hosts[..hosts.len() - 1].iter().filter(|h| h != host).map(String::as_str).collect();
    let note = (!others.is_empty()).then(|| format!("the address is also the answer for {}", others.join(", ")));
    audit(shared, decision_event(shared, &generation, &request(host), decision, note.as_deref()));
    decision.is_allowed().then(|| (*host).clone())
}

/// Dials the checked address and relays both ways until either side closes.
async fn relay(conn: &Conn, client: TcpStream, target: Target) {
    let shared = &conn.shared;
    let Some(ip) = target.ip else { return };
    let upstream = match shared.connect(SocketAddr::new(ip, target.port)).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let binary = target.caller.as_ref().map(|c| c.binary.as_str());
            let req = Request {
                host: &target.host,
                port: target.port,
                binary,
                ancestors: &[],
                resolved_ip: Some(ip),
                http: None,
            };
            let reason = Some(format!("cannot connect: {e}"));
            audit(shared, event(shared, &shared.generation(), &req, "blocked", None, reason));
            return reset(client);
        }
    };
    conn.register(target);
    relay::relay(&client, &upstream, &shared.buffers, shared.limits.idle_timeout).await;
}

/// Records `event` as one about raw TCP.
fn audit(shared: &Shared, mut event: AuditEvent) {
    event.raw_tcp = true;
    shared.audit.record(&event);
}

/// Where the connection was headed before the fence redirected it.
fn original_destination(client: &TcpStream) -> Option<SocketAddr> {
    let original = socket2::SockRef::from(client).original_dst_v4().ok()?;
    original.as_socket().filter(|a| !matches!(a.ip(), IpAddr::V6(_)))
}

/// Closes with a reset: the client learns at once that nothing is there for it.
pub(crate) fn reset(client: TcpStream) {
    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
    drop(client);
}
