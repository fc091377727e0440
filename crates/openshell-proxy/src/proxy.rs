//! The proxy: one thread per connection.
//!
//! Pipeline: read the request head (CONNECT `host:port`, or an absolute-form
//! `http://` request) → identify the caller → decide on host, port and caller
//! (before any name resolution, so a denied name is never looked up) → resolve →
//! decide again with the address (the SSRF rules) → connect to exactly that
//! address → relay. Every decision is an audit event. A denial answers 403 with a
//! JSON body naming the reason. Reloading the network policy swaps the engine
//! atomically; open connections the new revision denies are closed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openshell_policy::{Decision, Engine, HttpRequest, Policy, PolicyDiff, Request, StaticChangeError, Verdict};
use serde_json::json;

use crate::audit::{AuditEvent, AuditSink, now_ms};
use crate::identify::{Caller, Identify};
use crate::resolve::Resolve;
use crate::router::{Active, INFERENCE_HOST, InferenceRoute, PROVIDER_HOSTS};
use crate::tls::Interceptor;
use crate::{http1, l7, router};

/// The largest request head read before deciding.
const MAX_HEAD: usize = 64 * 1024;
/// How long connecting upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("binding the proxy to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the inference route: {0}")]
    Route(String),
}

impl Shared {
    fn routed(&self) -> bool {
        self.route.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

fn active(route: InferenceRoute) -> Result<Arc<Active>, String> {
    let backend = route.validate()?;
    Ok(Arc::new(Active { route, backend }))
}

/// Opens upstream connections; the real one connects to the checked address.
pub trait Connect: Send + Sync {
    fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream>;
}

/// Connects to the address it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Direct;

impl Connect for Direct {
    fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
    }
}

pub(crate) struct Generation {
    pub(crate) revision: u64,
    policy: Policy,
    pub(crate) engine: Engine,
}

/// An open relay, re-decided when the policy changes.
struct Open {
    host: String,
    port: u16,
    /// The checked address (none for a routed connection: never resolved).
    ip: Option<IpAddr>,
    caller: Option<Caller>,
    streams: Vec<TcpStream>,
}

pub(crate) struct Shared {
    pub(crate) sandbox: String,
    pub(crate) generation: RwLock<Arc<Generation>>,
    identify: Box<dyn Identify>,
    pub(crate) resolver: Box<dyn Resolve>,
    pub(crate) connector: Box<dyn Connect>,
    pub(crate) audit: Box<dyn AuditSink>,
    tls: Option<Arc<Interceptor>>,
    /// The privacy router's route (none: inference requests get a 503 saying so).
    pub(crate) route: RwLock<Option<Arc<Active>>>,
    open: Mutex<HashMap<u64, Open>>,
    next: AtomicU64,
    /// Each binary's sha256 as first seen: a binary whose content changed since
    /// is denied.
    pins: Mutex<HashMap<String, String>>,
}

/// A bound proxy; [`Proxy::serve`] runs it.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Controls a running proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

/// What the proxy is made of.
pub struct ProxyConfig {
    pub sandbox: String,
    pub policy: Policy,
    /// The policy's revision (1 for a sandbox's creation policy).
    pub revision: u64,
    pub identify: Box<dyn Identify>,
    pub resolver: Box<dyn Resolve>,
    pub connector: Box<dyn Connect>,
    pub audit: Box<dyn AuditSink>,
    /// TLS termination for endpoints with L7 rules and for the privacy router;
    /// without it such endpoints are refused (fail closed).
    pub tls: Option<Arc<Interceptor>>,
    /// Where inference requests go (changed live with [`ProxyHandle::set_route`]).
    pub route: Option<InferenceRoute>,
}

impl Proxy {
    pub fn bind(addr: SocketAddr, config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let route = config.route.map(active).transpose().map_err(ProxyError::Route)?;
        let listener = TcpListener::bind(addr).map_err(|source| ProxyError::Bind { addr, source })?;
        let engine = Engine::new(&config.policy);
        let shared = Arc::new(Shared {
            sandbox: config.sandbox,
            generation: RwLock::new(Arc::new(Generation { revision: config.revision, policy: config.policy, engine })),
            identify: config.identify,
            resolver: config.resolver,
            connector: config.connector,
            audit: config.audit,
            tls: config.tls,
            route: RwLock::new(route),
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            pins: Mutex::new(HashMap::new()),
        });
        Ok(Proxy { listener, shared })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle { shared: Arc::clone(&self.shared) }
    }

    /// Accepts connections until the listener fails.
    pub fn serve(self) -> std::io::Result<()> {
        loop {
            let (client, _) = self.listener.accept()?;
            let shared = Arc::clone(&self.shared);
            std::thread::spawn(move || connection(&shared, client));
        }
    }
}

impl ProxyHandle {
    /// The revision deciding new connections.
    pub fn revision(&self) -> u64 {
        self.shared.generation.read().unwrap_or_else(|p| p.into_inner()).revision
    }

    /// Replaces the network policy. A change to a static section is refused with
    /// the spine's error and nothing changes. New connections are decided by the
    /// new revision from the moment this returns; open ones it denies are closed.
    pub fn reload(&self, policy: Policy) -> Result<u64, StaticChangeError> {
        self.swap(policy, None)
    }

    /// [`ProxyHandle::reload`] numbered by the caller (the gateway's revisions).
    pub fn reload_as(&self, policy: Policy, revision: u64) -> Result<(), StaticChangeError> {
        self.swap(policy, Some(revision)).map(drop)
    }

    fn swap(&self, policy: Policy, revision: Option<u64>) -> Result<u64, StaticChangeError> {
        let new = {
            let mut current = self.shared.generation.write().unwrap_or_else(|p| p.into_inner());
            PolicyDiff::between(&current.policy, &policy).ensure_live()?;
            let engine = Engine::new(&policy);
            let revision = revision.unwrap_or(current.revision + 1);
            let new = Arc::new(Generation { revision, policy, engine });
            *current = Arc::clone(&new);
            new
        };
        let mut open = self.shared.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, o| {
            let ancestors: Vec<&str> = o.caller.iter().flat_map(|c| c.ancestors.iter().map(String::as_str)).collect();
            let req = Request {
                host: &o.host,
                port: o.port,
                binary: o.caller.as_ref().map(|c| c.binary.as_str()),
                ancestors: &ancestors,
                resolved_ip: o.ip,
                http: None,
            };
            let decision = new.engine.decide(&req);
            if decision.is_allowed() {
                return true;
            }
            record(&self.shared, &new, &req, &decision, Some("closed: the new revision denies it"));
            for s in &o.streams {
                let _ = s.shutdown(Shutdown::Both);
            }
            false
        });
        Ok(new.revision)
    }

    /// Replaces the inference route (`None`: no route); the next request uses it.
    pub fn set_route(&self, route: Option<InferenceRoute>) -> Result<(), String> {
        let route = route.map(active).transpose()?;
        *self.shared.route.write().unwrap_or_else(|p| p.into_inner()) = route;
        Ok(())
    }

    /// How many connections are being relayed.
    pub fn open_connections(&self) -> usize {
        self.shared.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The request head: what the client asked for.
pub(crate) struct Head {
    connect: bool,
    method: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Absolute-form HTTP: the path (without query) and the whole origin-form target.
    path: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    /// Bytes read after the head (the start of a body or of the tunnelled stream).
    pub(crate) rest: Vec<u8>,
}

fn read_head(client: &mut TcpStream) -> Result<Head, (u16, String)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err((431, "request head too large".into()));
        }
        match client.read(&mut chunk) {
            Ok(0) => return Err((400, "connection closed before the request head ended".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err((400, format!("reading the request: {e}"))),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Err((400, "malformed request head".into())),
    }
    let method = req.method.unwrap_or("").to_owned();
    let target = req.path.unwrap_or("").to_owned();
    let headers: Vec<(String, Vec<u8>)> = req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
    let rest = buf[end..].to_vec();
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) =
            authority(&target, None).ok_or((400, format!("CONNECT target `{target}` is not host:port")))?;
        return Ok(Head { connect: true, method, host, port, path: String::new(), target, headers, rest });
    }
    let Some(after) = target.strip_prefix("http://") else {
        let message = if target.starts_with("https://") {
            "https:// requests go through CONNECT".to_owned()
        } else {
            format!("`{target}` is not an absolute http:// URL (this is a proxy)")
        };
        return Err((400, message));
    };
    let (auth, origin) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    let (host, port) = authority(auth, Some(80)).ok_or((400, format!("bad host in `{target}`")))?;
    let path = origin.split(['?', '#']).next().unwrap_or("/").to_owned();
    Ok(Head { connect: false, method, host, port, path, target: origin.to_owned(), headers, rest })
}

/// `host:port`, `[v6]:port`, or `host` with a default port.
pub(crate) fn authority(s: &str, default: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default?,
        };
        (h.to_owned(), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (s.to_owned(), default?),
        }
    };
    (!host.is_empty() && port != 0).then_some((host.to_ascii_lowercase(), port))
}

fn respond(client: &mut TcpStream, status: u16, body: &serde_json::Value) {
    let _ = client.write_all(&http1::json_response(status, body, true));
    let _ = client.flush();
}

/// Records a refusal made by the proxy itself (not by the policy).
pub(crate) fn record_refusal(shared: &Shared, generation: &Generation, req: &Request<'_>, reason: &str) {
    audit_event(shared, generation, req, "blocked", None, Some(reason.to_owned()));
}

fn audit_event(
    shared: &Shared,
    generation: &Generation,
    req: &Request<'_>,
    disposition: &'static str,
    policy: Option<&str>,
    reason: Option<String>,
) {
    let http = req.http.as_ref();
    shared.audit.record(&AuditEvent {
        time: now_ms(),
        class_uid: if http.is_some() { 4002 } else { 4001 },
        class_name: if http.is_some() { "HTTP Activity" } else { "Network Activity" },
        disposition,
        sandbox: shared.sandbox.clone(),
        actor_process: req.binary.map(str::to_owned),
        dst_hostname: req.host.to_owned(),
        dst_port: req.port,
        dst_ip: req.resolved_ip.map(|ip| ip.to_string()),
        http_method: http.map(|h| h.method.to_owned()),
        http_path: http.map(|h| h.path.to_owned()),
        policy: policy.map(str::to_owned),
        reason,
        revision: generation.revision,
    });
}

pub(crate) fn record(
    shared: &Shared,
    generation: &Generation,
    req: &Request<'_>,
    decision: &Decision<'_>,
    note: Option<&str>,
) {
    let disposition = match decision.verdict {
        Verdict::Allow => "allowed",
        Verdict::Audit => "audited",
        Verdict::Deny => "blocked",
    };
    let reason = match (decision.reason, note) {
        (Some(r), Some(n)) => Some(format!("{r} ({n})")),
        (Some(r), None) => Some(r.to_string()),
        (None, n) => n.map(str::to_owned),
    };
    audit_event(shared, generation, req, disposition, decision.policy, reason);
}

pub(crate) fn denial(
    head: &Head,
    decision: &Decision<'_>,
    generation: &Generation,
    engine_req: &Request<'_>,
) -> serde_json::Value {
    json!({
        "error": "blocked by the sandbox's network policy",
        "host": head.host,
        "port": head.port,
        "reason": decision.reason.map(|r| r.as_str()),
        "detail": decision.explain(&generation.engine, engine_req),
        "revision": generation.revision,
    })
}

fn connection(shared: &Shared, mut client: TcpStream) {
    let (Ok(peer), Ok(local)) = (client.peer_addr(), client.local_addr()) else { return };
    let head = match read_head(&mut client) {
        Ok(h) => h,
        Err((status, message)) => return respond(&mut client, status, &json!({ "error": message })),
    };
    let caller = shared.identify.identify(peer, local);
    if let Some(Caller { binary, sha256: Some(hash), .. }) = &caller {
        let mut pins = shared.pins.lock().unwrap_or_else(|p| p.into_inner());
        let pinned = pins.entry(binary.clone()).or_insert_with(|| hash.clone());
        if pinned != hash {
            let generation = Arc::clone(&*shared.generation.read().unwrap_or_else(|p| p.into_inner()));
            drop(pins);
            let req = Request::l4(&head.host, head.port, binary);
            record_refusal(shared, &generation, &req, "binary changed since first use");
            let body = json!({"error": "blocked: the calling binary changed since its first use in this sandbox", "binary": binary, "reason": "binary changed since first use"});
            return respond(&mut client, 403, &body);
        }
    }
    let generation = Arc::clone(&*shared.generation.read().unwrap_or_else(|p| p.into_inner()));
    let ancestors: Vec<&str> = caller.iter().flat_map(|c| c.ancestors.iter().map(String::as_str)).collect();
    let pairs = head.target.split_once('?').map(|(_, q)| http1::query_pairs(q.split('#').next().unwrap_or(q)));
    let query: Vec<(&str, &str)> = pairs.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let http = (!head.connect).then(|| HttpRequest { method: &head.method, path: &head.path, query: &query });
    let mut req = Request {
        host: &head.host,
        port: head.port,
        binary: caller.as_ref().map(|c| c.binary.as_str()),
        ancestors: &ancestors,
        resolved_ip: None,
        http,
    };
    // The privacy router's own name: open to every caller (the router is the
    // boundary; no credential of the sandbox's reaches it), never resolved.
    if head.host == INFERENCE_HOST {
        if !head.connect || head.port != 443 {
            let body = json!({"error": format!("{INFERENCE_HOST} is reached over HTTPS (https://{INFERENCE_HOST}/)")});
            return respond(&mut client, 400, &body);
        }
        audit_event(shared, &generation, &req, "allowed", Some("privacy router"), None);
        return route_connection(shared, client, &head, caller.as_ref(), None);
    }
    // While a route exists, the providers' own API hosts are the router too:
    // agents with built-in base URLs (codex) are routed, and a key a sandbox
    // might hold never reaches the provider.
    if head.connect && head.port == 443 && PROVIDER_HOSTS.contains(&head.host.as_str()) && shared.routed() {
        let note = Some("a provider's API host, routed while a route exists".to_owned());
        audit_event(shared, &generation, &req, "allowed", Some("privacy router"), note);
        return route_connection(shared, client, &head, caller.as_ref(), None);
    }
    // Decided before resolving: a name the policy does not allow is never looked up.
    let decision = generation.engine.decide(&req);
    if !decision.is_allowed() {
        record(shared, &generation, &req, &decision, None);
        return respond(&mut client, 403, &denial(&head, &decision, &generation, &req));
    }
    if decision.route {
        record(shared, &generation, &req, &decision, Some("routed to the privacy router"));
        if !head.connect {
            let body = json!({"error": "this endpoint is routed to the privacy router, which is reached over HTTPS"});
            return respond(&mut client, 400, &body);
        }
        return route_connection(shared, client, &head, caller.as_ref(), Some(&ancestors));
    }
    let inspect = head.connect && decision.inspect;
    if inspect && shared.tls.is_none() {
        // Fail closed: this endpoint's rules need TLS termination, and this proxy has no CA.
        let reason = "L7 rules need TLS inspection, and this proxy has no CA";
        record_refusal(shared, &generation, &req, reason);
        return respond(
            &mut client,
            403,
            &json!({"error": format!("blocked: {reason}"), "host": head.host, "port": head.port}),
        );
    }
    let ips = match shared.resolver.resolve(&head.host, head.port) {
        Ok(ips) if !ips.is_empty() => ips,
        Ok(_) | Err(_) => {
            record_refusal(shared, &generation, &req, "cannot resolve the host");
            return respond(&mut client, 502, &json!({"error": "cannot resolve the host", "host": head.host}));
        }
    };
    // The first address: checked against the SSRF rules, then exactly it is dialled.
    let ip = ips[0];
    req.resolved_ip = Some(ip);
    let decision = generation.engine.decide(&req);
    record(shared, &generation, &req, &decision, None);
    if !decision.is_allowed() {
        return respond(&mut client, 403, &denial(&head, &decision, &generation, &req));
    }
    let mut upstream = match shared.connector.connect(SocketAddr::new(ip, head.port)) {
        Ok(s) => s,
        Err(e) => {
            let body = json!({"error": format!("cannot connect: {e}"), "host": head.host, "ip": ip.to_string()});
            return respond(&mut client, 502, &body);
        }
    };
    if let (true, Some(tls)) = (inspect, shared.tls.as_ref()) {
        let server = match tls.server_config(&head.host) {
            Ok(s) => s,
            Err(e) => return respond(&mut client, 502, &json!({"error": e.to_string(), "host": head.host})),
        };
        if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").is_err() {
            return;
        }
        let (Ok(c), Ok(u)) = (client.try_clone(), upstream.try_clone()) else { return };
        let id = register(shared, &head, Some(ip), caller.clone(), vec![c, u]);
        let tunnel = l7::Tunnel { head: &head, ip, caller: caller.as_ref(), ancestors: &ancestors };
        l7::inspect(shared, tls, server, client, upstream, &tunnel);
        return unregister(shared, id);
    }
    let started = if head.connect {
        client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    } else {
        upstream.write_all(&origin_form(&head))
    };
    if started.and_then(|()| upstream.write_all(&head.rest)).is_err() {
        return;
    }
    relay(shared, client, upstream, &head, ip, caller);
}

/// The absolute-form request rewritten for the origin: origin-form target, the
/// client's headers without proxy and hop-by-hop ones, one request per connection.
fn origin_form(head: &Head) -> Vec<u8> {
    const DROPPED: &[&str] = &["proxy-authorization", "proxy-connection", "connection", "keep-alive"];
    let mut out = format!("{} {} HTTP/1.1\r\n", head.method, head.target).into_bytes();
    http1::push_headers(&mut out, &head.headers, DROPPED);
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

fn relay(shared: &Shared, client: TcpStream, upstream: TcpStream, head: &Head, ip: IpAddr, caller: Option<Caller>) {
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) =
        (client.try_clone(), upstream.try_clone(), client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let id = register(shared, head, Some(ip), caller, vec![c3, u3]);
    let down = std::thread::spawn(move || copy_then_close(u2, c2));
    copy_then_close(client, upstream);
    let _ = down.join();
    unregister(shared, id);
}

/// Hands a CONNECT to the privacy router. `policy_routed`: the connection was
/// allowed by a `routing: inference` endpoint (a reload that denies it closes it).
fn route_connection(
    shared: &Shared,
    mut client: TcpStream,
    head: &Head,
    caller: Option<&Caller>,
    policy_routed: Option<&[&str]>,
) {
    let Some(tls) = shared.tls.as_ref() else {
        let body = json!({"error": "blocked: the privacy router needs TLS termination, and this proxy has no CA"});
        return respond(&mut client, 403, &body);
    };
    let server = match tls.server_config(&head.host) {
        Ok(s) => s,
        Err(e) => return respond(&mut client, 502, &json!({"error": e.to_string(), "host": head.host})),
    };
    if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").is_err() {
        return;
    }
    let id = match (policy_routed, client.try_clone()) {
        (Some(_), Ok(c)) => Some(register(shared, head, None, caller.cloned(), vec![c])),
        _ => None,
    };
    let who = router::Caller { binary: caller.map(|c| c.binary.as_str()), host: &head.host };
    router::serve(shared, tls, server, client, head.rest.clone(), &who);
    if let Some(id) = id {
        unregister(shared, id);
    }
}

/// Tracks an open connection so that a reload can re-decide and close it.
fn register(shared: &Shared, head: &Head, ip: Option<IpAddr>, caller: Option<Caller>, streams: Vec<TcpStream>) -> u64 {
    let id = shared.next.fetch_add(1, Ordering::Relaxed);
    let open = Open { host: head.host.clone(), port: head.port, ip, caller, streams };
    shared.open.lock().unwrap_or_else(|p| p.into_inner()).insert(id, open);
    id
}

fn unregister(shared: &Shared, id: u64) {
    shared.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
}

/// Copies until the source ends, then ends the destination's writing side. The
/// bytes move socket → pipe → socket inside the kernel (splice), never through
/// this process; without a pipe, through a buffer.
fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    if splice_all(&from, &to).is_err() {
        let _ = std::io::copy(&mut from, &mut to);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Moves everything `from` sends to `to` with splice(2); `Err` before the first
/// byte when splicing is not possible (the caller copies instead).
fn splice_all(from: &TcpStream, to: &TcpStream) -> Result<(), ()> {
    use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
    const CHUNK: usize = 1 << 20;
    let (pipe_r, pipe_w) = pipe_with(PipeFlags::CLOEXEC).map_err(drop)?;
    // A larger pipe moves more per splice (the default holds 64 KiB); the
    // system's pipe-max-size may refuse, and then the default does.
    let _ = rustix::pipe::fcntl_setpipe_size(&pipe_w, CHUNK);
    let mut moved_any = false;
    loop {
        let n = match splice(from, None, &pipe_w, None, CHUNK, SpliceFlags::MOVE) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) if !moved_any => return Err(()),
            Err(_) => return Ok(()),
        };
        moved_any = true;
        let mut left = n;
        while left > 0 {
            match splice(&pipe_r, None, to, None, left, SpliceFlags::MOVE) {
                Ok(0) => return Ok(()),
                Ok(m) => left -= m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authorities() {
        assert_eq!(authority("api.test:443", None), Some(("api.test".into(), 443)));
        assert_eq!(authority("API.test", Some(80)), Some(("api.test".into(), 80)));
        assert_eq!(authority("[::1]:8080", None), Some(("::1".into(), 8080)));
        assert_eq!(authority("api.test", None), None);
        assert_eq!(authority(":443", None), None);
        assert_eq!(authority("h:0", None), None);
    }
}
