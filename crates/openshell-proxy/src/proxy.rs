//! The proxy: the listener, the limits, and the first request of each
//! connection, on a small tokio runtime (no thread per connection).
//!
//! Pipeline: read the request head (CONNECT `host:port`, or an absolute-form
//! `http://` request) → identify the caller → decide on host, port and caller
//! (before any name resolution, so a denied name is never looked up) → resolve →
//! decide again with the address (the SSRF rules) → connect to exactly that
//! address → relay (`relay`), inspect (`l7`), route (`router`), or, for plain
//! HTTP, forward request by request (`forward`). Every decision is an audit
//! event. A denial answers 403 with a JSON body naming the reason. Reloading
//! the network policy swaps the engine atomically; open connections the new
//! revision denies are closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openshell_policy::{
    Decision, Engine, HttpRequest, Message, Policy, PolicyDiff, Request, StaticChangeError, Verdict,
};
use serde_json::json;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

use crate::audit::{AuditEvent, AuditSink, WebSocketTraffic, now_ms};
use crate::http1::{self, HeadError, Kind, RequestHead};
use crate::identify::{Caller, Identify};
use crate::resolve::Resolve;
use crate::router::{Active, INFERENCE_HOST, InferenceRoute, PROVIDER_HOSTS, RouteError};
use crate::tls::Interceptor;
use crate::{aio, forward, l7, relay, router};

/// How long connecting upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer per client connection (a head may grow past it, up to
/// `http1::MAX_HEAD`).
pub(crate) const CLIENT_BUFFER: usize = 16 * 1024;
/// Read buffer per upstream connection of an inspected or forwarded exchange
/// (downloads come this way: larger reads, fewer wake-ups).
pub(crate) const UPSTREAM_BUFFER: usize = 64 * 1024;

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
    Route(#[source] RouteError),
}

/// What one sandbox may make its proxy hold. The defaults are documented in
/// README (Sandboxes).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// From a request head's first byte to its end (and, on a new connection,
    /// to its first byte).
    pub head_timeout: Duration,
    /// Between requests on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Nothing moving either way (tunnels, bodies, waiting for a response).
    pub idle_timeout: Duration,
    /// The longest a connection may last.
    pub max_lifetime: Duration,
    /// JSON-RPC body bytes held at once across the proxy's connections (each
    /// body is read whole to be decided; its share is its Content-Length, or
    /// the endpoint's `max_body_bytes` when chunked). A body whose share would
    /// pass it is answered 503 at once.
    pub rpc_bodies: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            head_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(15 * 60),
            max_lifetime: Duration::from_secs(6 * 3600),
            rpc_bodies: 64 << 20,
        }
    }
}

impl Shared {
    pub(crate) fn routed(&self) -> bool {
        self.route.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    pub(crate) fn generation(&self) -> Arc<Generation> {
        Arc::clone(&*self.generation.read().unwrap_or_else(|p| p.into_inner()))
    }
}

fn active(route: InferenceRoute) -> Result<Arc<Active>, RouteError> {
    let backend = route.validate()?;
    Ok(Arc::new(Active { route, backend }))
}

/// An upstream connection being opened (awaited on the proxy's runtime,
/// within [`CONNECT_TIMEOUT`]).
pub type Dialing = Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>>;

/// Opens upstream connections; the real one connects to the checked address.
/// The dial is awaited, never run on a thread of its own: a connect that hangs
/// (an address that drops SYNs) holds no thread.
pub trait Connect: Send + Sync {
    fn connect(&self, addr: SocketAddr) -> Dialing;
}

/// Connects to the address it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Direct;

impl Connect for Direct {
    fn connect(&self, addr: SocketAddr) -> Dialing {
        Box::pin(TcpStream::connect(addr))
    }
}

pub(crate) struct Generation {
    pub(crate) revision: u64,
    policy: Policy,
    pub(crate) engine: Engine,
}

/// What an open connection is relaying to, re-decided when the policy changes.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The checked address (none for a routed connection: never resolved).
    pub(crate) ip: Option<IpAddr>,
    pub(crate) caller: Option<Caller>,
    /// Raw TCP the fence redirected (re-decided as such: `protocol: tcp` only).
    pub(crate) raw: bool,
    /// A relayed WebSocket's upgrade request, decided again with the rest.
    pub(crate) upgrade: Option<Upgraded>,
}

/// The path and query a WebSocket was upgraded at.
#[derive(Clone)]
pub(crate) struct Upgraded {
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
}

struct Open {
    target: Target,
    cancel: Arc<Notify>,
}

pub(crate) struct Shared {
    pub(crate) sandbox: String,
    pub(crate) generation: RwLock<Arc<Generation>>,
    identify: Arc<dyn Identify>,
    pub(crate) resolver: Arc<dyn Resolve>,
    connector: Box<dyn Connect>,
    pub(crate) audit: Box<dyn AuditSink>,
    pub(crate) tls: Option<Arc<Interceptor>>,
    /// The privacy router's route (none: inference requests get a 503 saying so).
    pub(crate) route: RwLock<Option<Arc<Active>>>,
    pub(crate) limits: Limits,
    slots: Arc<Semaphore>,
    /// Room for JSON-RPC bodies being held, in bytes ([`Limits::rpc_bodies`]).
    pub(crate) rpc_bodies: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Open>>,
    next: AtomicU64,
    /// Refusals not audited one by one (see [`Shared::refuse_quietly`]).
    quiet: Mutex<Quiet>,
    /// Each binary's sha256 as first seen: a binary whose content changed since
    /// is denied.
    pins: Mutex<HashMap<String, String>>,
    /// Each name's addresses as first resolved, until [`PIN_TTL`] has passed:
    /// the DNS responder answers with them and the proxy dials them, so the
    /// two agree.
    resolved: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
    /// The large buffers plain tunnels borrow for bulk data.
    pub(crate) buffers: relay::Buffers,
}

/// How long a name's resolution stays pinned.
pub const PIN_TTL: Duration = Duration::from_secs(60);

/// Connection-level refusals are audited at most once a second, with a count.
#[derive(Default)]
struct Quiet {
    last: Option<Instant>,
    held: u64,
}

/// A bound proxy; [`Proxy::serve`] runs it.
pub struct Proxy {
    listener: std::net::TcpListener,
    /// Where the fence sends raw TCP (see [`Proxy::raw_tcp_on`]).
    raw_tcp: Option<std::net::TcpListener>,
    shared: Arc<Shared>,
    /// The only peer address served (a fenced sandbox's own); `None`: any.
    peer: Option<IpAddr>,
}

/// How a connection reached the proxy.
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// The proxy's own port: CONNECT or an absolute-form HTTP request.
    Proxy,
    /// The raw TCP listener: a connection the fence redirected.
    RawTcp,
}

/// Where a sandbox's proxy listens: on the host end of its fenced link, for
/// its own sandbox only.
#[derive(Debug, Clone)]
pub struct Fenced {
    /// The host end's address and the proxy's port.
    pub addr: SocketAddr,
    /// The host end's interface: the listener is bound to it (SO_BINDTODEVICE),
    /// so a connection that arrives over another sandbox's link is refused by
    /// the kernel.
    pub device: String,
    /// The sandbox's address (IPv4): packets from any other source are dropped
    /// by the kernel (a socket filter; this is what keeps the host's own
    /// processes out), and any other peer is refused in-process too.
    pub peer: IpAddr,
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
    pub limits: Limits,
}

impl Proxy {
    /// A proxy serving whoever reaches `addr` (tests and benches on loopback;
    /// a sandbox's proxy is [`Proxy::bind_fenced`]).
    pub fn bind(addr: SocketAddr, config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|source| ProxyError::Bind { addr, source })?;
        Proxy::with_listener(listener, None, config)
    }

    /// A sandbox's proxy: bound to the host end of its link, serving only
    /// the sandbox's own address.
    pub fn bind_fenced(fenced: &Fenced, config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let addr = fenced.addr;
        let listener = fenced_listener(fenced).map_err(|source| ProxyError::Bind { addr, source })?;
        Proxy::with_listener(listener, Some(fenced.peer), config)
    }

    /// The sandbox's DNS responder, on the same fenced link (port
    /// [`crate::dns::DNS_PORT`], UDP and TCP), answering from this proxy's policy
    /// and pins.
    pub fn dns_fenced(&self, fenced: &Fenced) -> Result<crate::dns::Dns, ProxyError> {
        let addr = SocketAddr::new(fenced.addr.ip(), crate::dns::DNS_PORT);
        let bind = |kind| fenced_socket(fenced, addr, kind).map_err(|source| ProxyError::Bind { addr, source });
        let udp = bind(socket2::Type::DGRAM)?;
        let tcp = bind(socket2::Type::STREAM)?;
        tcp.listen(crate::dns::TCP_CONNECTIONS as i32).map_err(|source| ProxyError::Bind { addr, source })?;
        Ok(crate::dns::Dns {
            socket: udp.into(),
            tcp: Some(tcp.into()),
            shared: Arc::clone(&self.shared),
            peer: Some(fenced.peer),
        })
    }

    /// A DNS responder on `socket` (UDP; [`crate::dns::Dns::with_tcp`] adds TCP)
    /// for whoever reaches it: a pod's, on its loopback, and tests.
    pub fn dns_on(&self, socket: std::net::UdpSocket) -> crate::dns::Dns {
        crate::dns::Dns { socket, tcp: None, shared: Arc::clone(&self.shared), peer: None }
    }

    /// A proxy on a listener made elsewhere, serving whoever reaches it: a
    /// Kubernetes pod's, bound to loopback inside the pod's network namespace by
    /// a thread that joined it, while the proxy itself dials from the node's.
    pub fn from_listener(listener: std::net::TcpListener, config: ProxyConfig) -> Result<Proxy, ProxyError> {
        Proxy::with_listener(listener, None, config)
    }

    fn with_listener(
        listener: std::net::TcpListener,
        peer: Option<IpAddr>,
        config: ProxyConfig,
    ) -> Result<Proxy, ProxyError> {
        let route = config.route.map(active).transpose().map_err(ProxyError::Route)?;
        let engine = Engine::new(&config.policy);
        let shared = Arc::new(Shared {
            sandbox: config.sandbox,
            generation: RwLock::new(Arc::new(Generation { revision: config.revision, policy: config.policy, engine })),
            identify: Arc::from(config.identify),
            resolver: Arc::from(config.resolver),
            connector: config.connector,
            audit: config.audit,
            tls: config.tls,
            route: RwLock::new(route),
            slots: Arc::new(Semaphore::new(config.limits.max_connections)),
            rpc_bodies: Arc::new(Semaphore::new(config.limits.rpc_bodies.min(Semaphore::MAX_PERMITS))),
            limits: config.limits,
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            quiet: Mutex::new(Quiet::default()),
            pins: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            buffers: relay::Buffers::default(),
        });
        Ok(Proxy { listener, raw_tcp: None, shared, peer })
    }

    /// Also serves raw TCP for `protocol: tcp` endpoints on `listener`: the
    /// sandbox's fence redirects every other outbound TCP connection to it.
    /// It must have been made inside the sandbox's network namespace, where the
    /// redirect happened: that is where SO_ORIGINAL_DST finds where a
    /// connection was headed.
    pub fn raw_tcp_on(mut self, listener: std::net::TcpListener) -> Proxy {
        self.raw_tcp = Some(listener);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle { shared: Arc::clone(&self.shared) }
    }

    /// Runs the proxy on a runtime of its own (two worker threads; lookups,
    /// caller identification and hashing on at most four more) until the
    /// listener fails.
    pub fn serve(self) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .thread_name("openshell-proxy")
            .enable_all()
            .build()?;
        // The accept loop runs as a task on a worker (a future given to
        // `block_on` runs on this thread, which is not one): each connection's
        // task then starts on the worker that accepted it, with no other
        // thread woken on the way.
        let Proxy { listener, raw_tcp, shared, peer } = self;
        runtime.block_on(async {
            let raw = raw_tcp.map(|l| tokio::spawn(accept_loop(l, Arc::clone(&shared), peer, Entry::RawTcp)));
            let served = tokio::spawn(accept_loop(listener, shared, peer, Entry::Proxy));
            let first = match raw {
                Some(raw) => tokio::select! { r = served => r, r = raw => r },
                None => served.await,
            };
            first.map_err(std::io::Error::other)?
        })
    }
}

/// Accepts connections on `listener` until it fails, each served on a task of
/// its own within the connection limit.
async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    peer: Option<IpAddr>,
    entry: Entry,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (client, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors or memory for a moment, or a connection
            // that went away before it was accepted: not the listener's end.
            Err(e) if e.raw_os_error().is_some_and(transient) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if peer.is_some_and(|p| p != from.ip()) {
            let reason = format!("a connection from {from}, which is not this sandbox's address");
            shared.refuse_quietly(&reason);
            continue;
        }
        let Ok(slot) = Arc::clone(&shared.slots).try_acquire_owned() else {
            busy(&shared, client, entry);
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let conn = Conn::new(shared);
            conn.run(client, entry).await;
            drop(slot);
        });
    }
}

/// Whether an accept failed for a moment (descriptors, memory, a connection
/// gone before it was taken) rather than for good.
pub(crate) fn transient(errno: i32) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM, Errno::CONNABORTED, Errno::PERM]
        .iter()
        .any(|e| e.raw_os_error() == errno)
}

/// Over the connection limit: a 503 saying so (if the socket takes it at
/// once; raw TCP is reset instead), closed, audited.
fn busy(shared: &Shared, client: TcpStream, entry: Entry) {
    let limit = shared.limits.max_connections;
    let body = json!({"error": format!("too many connections from this sandbox (limit {limit}); retry when some have closed")});
    shared.refuse_quietly(&format!("over the limit of {limit} open connections"));
    if let Entry::RawTcp = entry {
        return crate::raw_tcp::reset(client);
    }
    // Written straight to the socket (it is non-blocking; a fresh socket
    // takes a short answer at once), not through the runtime's readiness.
    if let Ok(mut socket) = client.into_std() {
        let _ = std::io::Write::write(&mut socket, &http1::json_response(503, &body, true));
    }
}

/// A listener on `fenced.addr` that the kernel lets only the sandbox reach:
/// bound to `fenced.device` (SO_BINDTODEVICE: a SYN that arrives over another
/// sandbox's link finds no listener and is refused), with a socket filter that
/// drops every packet whose source is not the sandbox's address (the host's
/// own connections to the link's address arrive with the host's address and
/// are dropped before a handshake; the device binding alone would let them
/// in, since the kernel sees them on the device that owns the address).
fn fenced_listener(fenced: &Fenced) -> std::io::Result<std::net::TcpListener> {
    let socket = fenced_socket(fenced, fenced.addr, socket2::Type::STREAM)?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A socket of `kind` bound to `addr` on the host end of a fenced link (the
/// device), that the kernel gives only the sandbox's packets.
fn fenced_socket(fenced: &Fenced, addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, SockFilter, Socket};
    let IpAddr::V4(peer) = fenced.peer else {
        return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "a fenced sandbox's address is IPv4"));
    };
    // Classic BPF: load the IPv4 source address (SKF_NET_OFF + 12), keep the
    // packet when it is the sandbox's, drop it otherwise.
    const SKF_NET_OFF: u32 = 0xfff0_0000;
    let (ld_w_abs, jeq_k, ret_k) = (0x20, 0x15, 0x06);
    let filter = [
        SockFilter::new(ld_w_abs, 0, 0, SKF_NET_OFF + 12),
        SockFilter::new(jeq_k, 0, 1, u32::from(peer)),
        SockFilter::new(ret_k, 0, 0, u32::MAX),
        SockFilter::new(ret_k, 0, 0, 0),
    ];
    let socket = Socket::new(Domain::for_address(addr), kind.cloexec(), None)?;
    socket.bind_device(Some(fenced.device.as_bytes()))?;
    socket.attach_filter(&filter)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

impl Shared {
    /// Audits a connection-level refusal: the first at once, later ones at
    /// most once a second with the number held back (a flood of connections
    /// does not become a flood of audit lines).
    pub(crate) fn refuse_quietly(&self, reason: &str) {
        let held = {
            let mut quiet = self.quiet.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if quiet.last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
                quiet.held += 1;
                return;
            }
            quiet.last = Some(now);
            std::mem::take(&mut quiet.held)
        };
        let reason = match held {
            0 => reason.to_owned(),
            n => format!("{reason} (and {n} more refusals in the last second)"),
        };
        let req = Request { host: "", port: 0, binary: None, ancestors: &[], resolved_ip: None, http: None };
        record_refusal(self, &self.generation(), &req, &reason);
    }

    /// Connects to the checked address within [`CONNECT_TIMEOUT`].
    pub(crate) async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect(addr)).await {
            Ok(dialled) => dialled,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out")),
        }
    }

    /// Resolves in the proxy: a known or pinned answer at once, a lookup on
    /// the blocking pool (getaddrinfo blocks), pinned for the DNS responder.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        if let Some(answer) = self.answered(host, port) {
            return answer.map(|(addresses, _)| addresses);
        }
        let resolver = Arc::clone(&self.resolver);
        let name = host.to_owned();
        let addresses = tokio::task::spawn_blocking(move || resolver.resolve(&name, port))
            .await
            .map_err(std::io::Error::other)??;
        Ok(self.pin(host, addresses).0)
    }

    /// `host`'s addresses and the seconds they stay pinned: known ones as they
    /// are (for [`PIN_TTL`]), pinned ones while the pin holds, else a lookup
    /// (which blocks), pinned from now.
    pub(crate) fn resolve_pinned(&self, host: &str, port: u16) -> std::io::Result<(Vec<IpAddr>, u32)> {
        if let Some(answer) = self.answered(host, port) {
            return answer;
        }
        let addresses = self.resolver.resolve(host, port)?;
        Ok(self.pin(host, addresses))
    }

    /// The answer known without a lookup (an IP literal or fixed name; pinned
    /// too, so that raw TCP to its addresses finds the name), or pinned, with
    /// the seconds it holds; `None`: look it up.
    fn answered(&self, host: &str, port: u16) -> Option<std::io::Result<(Vec<IpAddr>, u32)>> {
        match self.resolver.known(host, port) {
            Some(answer) => Some(answer.map(|addresses| self.pin(host, addresses))),
            None => self.pinned_addresses(host).map(Ok),
        }
    }

    /// The names pinned to `ip` (what the DNS responder or the proxy resolved
    /// them to, while the pin holds), most recently pinned first.
    pub(crate) fn names_for(&self, ip: IpAddr) -> Vec<String> {
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<(Instant, String)> = resolved
            .iter()
            .filter(|(_, (at, addresses))| at.elapsed() < PIN_TTL && addresses.contains(&ip))
            .map(|(name, (at, _))| (*at, name.clone()))
            .collect();
        names.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        names.into_iter().map(|(_, name)| name).collect()
    }

    /// Pins `addresses` for `host`, unless a lookup that finished first pinned
    /// others: the pinned ones, and their seconds left.
    fn pin(&self, host: &str, addresses: Vec<IpAddr>) -> (Vec<IpAddr>, u32) {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        resolved.retain(|_, (at, _)| at.elapsed() < PIN_TTL);
        let (at, pinned) = resolved.entry(key).or_insert_with(|| (Instant::now(), addresses));
        let left = PIN_TTL.saturating_sub(at.elapsed()).as_secs().max(1) as u32;
        (pinned.clone(), left)
    }

    /// The addresses pinned for `host` and the seconds left, while the pin holds.
    fn pinned_addresses(&self, host: &str) -> Option<(Vec<IpAddr>, u32)> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let (at, addresses) = resolved.get(&key)?;
        let left = PIN_TTL.checked_sub(at.elapsed())?;
        Some((addresses.clone(), left.as_secs().max(1) as u32))
    }
}

impl ProxyHandle {
    /// The revision deciding new connections.
    pub fn revision(&self) -> u64 {
        self.shared.generation().revision
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
            let t = &o.target;
            let ancestors: Vec<&str> = t.caller.iter().flat_map(|c| c.ancestors.iter().map(String::as_str)).collect();
            let query: Vec<(&str, &str)> =
                t.upgrade.iter().flat_map(|u| u.query.iter().map(|(k, v)| (k.as_str(), v.as_str()))).collect();
            let http = t.upgrade.as_ref().map(|u| HttpRequest {
                method: "GET",
                path: &u.path,
                query: &query,
                message: Message::WebSocketUpgrade,
            });
            let req = Request {
                host: &t.host,
                port: t.port,
                binary: t.caller.as_ref().map(|c| c.binary.as_str()),
                ancestors: &ancestors,
                resolved_ip: t.ip,
                http,
            };
            let decision = if t.raw { new.engine.decide_transparent(&req) } else { new.engine.decide(&req) };
            if decision.is_allowed() {
                return true;
            }
            record(&self.shared, &new, &req, &decision, Some("closed: the new revision denies it"));
            o.cancel.notify_one();
            false
        });
        Ok(new.revision)
    }

    /// Replaces the inference route (`None`: no route); the next request uses it.
    pub fn set_route(&self, route: Option<InferenceRoute>) -> Result<(), RouteError> {
        let route = route.map(active).transpose()?;
        *self.shared.route.write().unwrap_or_else(|p| p.into_inner()) = route;
        Ok(())
    }

    /// How many connections are being relayed.
    pub fn open_connections(&self) -> usize {
        self.shared.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One client connection: its id, how a reload closes it, its caller.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    id: u64,
    cancel: Arc<Notify>,
}

/// The client's side of a connection: reads are buffered, writes go through.
pub(crate) type Client = BufReader<TcpStream>;

impl Conn {
    fn new(shared: Arc<Shared>) -> Conn {
        let id = shared.next.fetch_add(1, Ordering::Relaxed);
        Conn { shared, id, cancel: Arc::new(Notify::new()) }
    }

    /// Serves the connection until it ends, a reload denies what it relays,
    /// or it reaches its lifetime.
    async fn run(self, client: TcpStream, entry: Entry) {
        let lifetime = self.shared.limits.max_lifetime;
        let cancel = Arc::clone(&self.cancel);
        let served = async {
            match entry {
                Entry::Proxy => self.serve(client).await,
                Entry::RawTcp => crate::raw_tcp::serve(&self, client).await,
            }
        };
        tokio::select! {
            () = served => {}
            () = cancel.notified() => {}
            () = tokio::time::sleep(lifetime) => {
                let req = Request { host: "", port: 0, binary: None, ancestors: &[], resolved_ip: None, http: None };
                let reason = format!("closed: open longer than {} s", lifetime.as_secs());
                record_refusal(&self.shared, &self.shared.generation(), &req, &reason);
            }
        }
        self.shared.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }

    async fn serve(&self, client: TcpStream) {
        let (Ok(peer), Ok(local)) = (client.peer_addr(), client.local_addr()) else { return };
        let mut client = BufReader::with_capacity(CLIENT_BUFFER, client);
        let limits = &self.shared.limits;
        let head = match read_request(&mut client, limits.head_timeout, limits.head_timeout).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(refusal) => return refusal.send(&mut client).await,
        };
        let caller = self.identify(peer, local).await;
        if let Some(refusal) = self.pinned(&head.host, head.port, caller.as_ref()) {
            return refusal.send(&mut client).await;
        }
        if head.connect {
            self.tunnel(client, &head, caller).await;
        } else {
            forward::serve(self, client, head, caller).await;
        }
    }

    /// The kernel's answer (reads /proc: on the blocking pool; an answer
    /// held in memory at once).
    pub(crate) async fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Option<Caller> {
        if !self.shared.identify.blocks() {
            return self.shared.identify.identify(peer, local);
        }
        let identify = Arc::clone(&self.shared.identify);
        tokio::task::spawn_blocking(move || identify.identify(peer, local)).await.ok().flatten()
    }

    /// A binary whose content changed since its first use is refused.
    pub(crate) fn pinned(&self, host: &str, port: u16, caller: Option<&Caller>) -> Option<Refusal> {
        let Some(Caller { binary, sha256: Some(hash), .. }) = caller else { return None };
        {
            let mut pins = self.shared.pins.lock().unwrap_or_else(|p| p.into_inner());
            let pinned = pins.entry(binary.clone()).or_insert_with(|| hash.clone());
            if pinned == hash {
                return None;
            }
        }
        let req = Request::l4(host, port, binary);
        record_refusal(&self.shared, &self.shared.generation(), &req, "binary changed since first use");
        let body = json!({"error": "blocked: the calling binary changed since its first use in this sandbox", "binary": binary, "reason": "binary changed since first use"});
        Some(Refusal { status: 403, body })
    }

    /// Tracks what the connection relays to, so that a reload can re-decide and close it.
    pub(crate) fn register(&self, target: Target) {
        let open = Open { target, cancel: Arc::clone(&self.cancel) };
        self.shared.open.lock().unwrap_or_else(|p| p.into_inner()).insert(self.id, open);
    }

    /// A CONNECT: the privacy router, an inspected tunnel, or a plain one.
    pub(crate) async fn tunnel(&self, mut client: Client, head: &Head, caller: Option<Caller>) {
        let shared = &self.shared;
        let generation = shared.generation();
        let ancestors: Vec<&str> = caller.iter().flat_map(|c| c.ancestors.iter().map(String::as_str)).collect();
        let mut req = Request {
            host: &head.host,
            port: head.port,
            binary: caller.as_ref().map(|c| c.binary.as_str()),
            ancestors: &ancestors,
            resolved_ip: None,
            http: None,
        };
        // The privacy router's own name, and the providers' API hosts while a
        // route exists (agents with built-in base URLs are routed, and a key a
        // sandbox might hold never reaches the provider): open to every process
        // of the sandbox the kernel identified, never resolved.
        let provider = PROVIDER_HOSTS.contains(&head.host.as_str()) && head.port == 443 && shared.routed();
        if head.host == INFERENCE_HOST || provider {
            if caller.is_none() {
                let reason = "the privacy router serves only callers identified in the sandbox";
                record_refusal(shared, &generation, &req, reason);
                return Refusal::new(403, &format!("blocked: {reason}")).send(&mut client).await;
            }
            if head.port != 443 {
                let message = format!("{INFERENCE_HOST} is reached over HTTPS (https://{INFERENCE_HOST}/)");
                return Refusal::new(400, &message).send(&mut client).await;
            }
            let note = provider.then(|| "a provider's API host, routed while a route exists".to_owned());
            shared.audit.record(&event(shared, &generation, &req, "allowed", Some("privacy router"), note));
            return self.route(client, head, caller.as_ref(), false).await;
        }
        // Decided before resolving: a name the policy does not allow is never looked up.
        let decision = generation.engine.decide(&req);
        if !decision.is_allowed() {
            record(shared, &generation, &req, &decision, None);
            let body = denial(&head.host, head.port, &decision, &generation, &req);
            return Refusal { status: 403, body }.send(&mut client).await;
        }
        if decision.route {
            record(shared, &generation, &req, &decision, Some("routed to the privacy router"));
            return self.route(client, head, caller.as_ref(), true).await;
        }
        let inspect = decision.inspect;
        if inspect && shared.tls.is_none() {
            // Fail closed: this endpoint's rules need TLS termination, and this proxy has no CA.
            let reason = "L7 rules need TLS inspection, and this proxy has no CA";
            record_refusal(shared, &generation, &req, reason);
            return Refusal::new(403, &format!("blocked: {reason}")).send(&mut client).await;
        }
        let ip = match self.checked_address(&mut req, &generation).await {
            Ok(ip) => ip,
            Err(refusal) => return refusal.send(&mut client).await,
        };
        let upstream = match shared.connect(SocketAddr::new(ip, head.port)).await {
            Ok(s) => s,
            Err(e) => return Refusal::unreachable(&head.host, ip, &e).send(&mut client).await,
        };
        let target = Target {
            host: head.host.clone(),
            port: head.port,
            ip: Some(ip),
            caller: caller.clone(),
            upgrade: None,
            raw: false,
        };
        if let (true, Some(tls)) = (inspect, shared.tls.as_ref()) {
            let server = match tls.server_config(&head.host) {
                Ok(s) => s,
                Err(e) => return Refusal::new(502, &e.to_string()).send(&mut client).await,
            };
            if !established(&mut client).await {
                return;
            }
            self.register(target);
            let tunnel = l7::Tunnel { head, ip, caller: caller.as_ref(), ancestors: &ancestors };
            return l7::inspect(self, tls, server, client, upstream, &tunnel).await;
        }
        if !established(&mut client).await {
            return;
        }
        // Bytes the client sent after the CONNECT head go first.
        let early = client.buffer().to_vec();
        let client = client.into_inner();
        let mut upstream = upstream;
        if upstream.write_all(&early).await.is_err() {
            return;
        }
        self.register(target);
        relay::relay(&client, &upstream, &shared.buffers, shared.limits.idle_timeout).await;
    }

    /// Resolves the host and decides again with the first address (the SSRF
    /// rules); exactly that address is dialled. Records the decision.
    pub(crate) async fn checked_address(
        &self,
        req: &mut Request<'_>,
        generation: &Generation,
    ) -> Result<IpAddr, Refusal> {
        let shared = &self.shared;
        let ips = match shared.resolve(req.host, req.port).await {
            Ok(ips) if !ips.is_empty() => ips,
            Ok(_) | Err(_) => {
                record_refusal(shared, generation, req, "cannot resolve the host");
                let body = json!({"error": "cannot resolve the host", "host": req.host});
                return Err(Refusal { status: 502, body });
            }
        };
        let ip = ips[0];
        req.resolved_ip = Some(ip);
        let decision = generation.engine.decide(req);
        record(shared, generation, req, &decision, None);
        if !decision.is_allowed() {
            return Err(Refusal { status: 403, body: denial(req.host, req.port, &decision, generation, req) });
        }
        Ok(ip)
    }

    /// Hands a CONNECT to the privacy router. `policy_routed`: the connection was
    /// allowed by a `routing: inference` endpoint (a reload that denies it closes it).
    async fn route(&self, mut client: Client, head: &Head, caller: Option<&Caller>, policy_routed: bool) {
        let Some(tls) = self.shared.tls.as_ref() else {
            let message = "blocked: the privacy router needs TLS termination, and this proxy has no CA";
            return Refusal::new(403, message).send(&mut client).await;
        };
        let server = match tls.server_config(&head.host) {
            Ok(s) => s,
            Err(e) => return Refusal::new(502, &e.to_string()).send(&mut client).await,
        };
        if !established(&mut client).await {
            return;
        }
        if policy_routed {
            let target = Target {
                host: head.host.clone(),
                port: head.port,
                ip: None,
                caller: caller.cloned(),
                upgrade: None,
                raw: false,
            };
            self.register(target);
        }
        let who = router::Caller { binary: caller.map(|c| c.binary.as_str()), host: &head.host, port: head.port };
        router::serve(&self.shared, tls, server, client, &who).await;
    }
}

/// Tells the client its tunnel is open; `false` when it is gone.
async fn established(client: &mut Client) -> bool {
    let idle = Duration::from_secs(10);
    aio::send(client.get_mut(), b"HTTP/1.1 200 Connection Established\r\n\r\n", idle).await.is_ok()
}

/// A request head as the proxy reads it: what the client asked for.
pub(crate) struct Head {
    pub(crate) connect: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Absolute-form HTTP: the path (without query) and the origin-form target.
    pub(crate) path: String,
    pub(crate) target: String,
    pub(crate) req: RequestHead,
}

/// An answer the proxy gives instead of relaying.
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
}

impl Refusal {
    pub(crate) fn new(status: u16, message: &str) -> Refusal {
        Refusal { status, body: json!({ "error": message }) }
    }

    fn unreachable(host: &str, ip: IpAddr, e: &std::io::Error) -> Refusal {
        Refusal {
            status: 502,
            body: json!({"error": format!("cannot connect: {e}"), "host": host, "ip": ip.to_string()}),
        }
    }

    /// Sends it; the connection closes after.
    pub(crate) async fn send(self, client: &mut Client) {
        let _ =
            aio::send(client.get_mut(), &http1::json_response(self.status, &self.body, true), Duration::from_secs(10))
                .await;
        let _ = client.get_mut().shutdown().await;
    }
}

/// Reads the next request head. `Ok(None)`: the client closed (or stayed
/// silent) before one began.
pub(crate) async fn read_request(
    client: &mut Client,
    first: Duration,
    whole: Duration,
) -> Result<Option<Head>, Refusal> {
    let bytes = match aio::read_head(client, Kind::Request, first, whole).await {
        Ok(Some(b)) => b,
        Ok(None) | Err(HeadError::Io(_) | HeadError::Idle(_)) => return Ok(None),
        Err(e) => return Err(Refusal::new(e.status(), &e.to_string())),
    };
    let req = http1::parse_request(&bytes).map_err(|e| Refusal::new(e.status(), &e.to_string()))?;
    if req.method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = authority(&req.target, None)
            .ok_or_else(|| Refusal::new(400, &format!("CONNECT target `{}` is not host:port", req.target)))?;
        return Ok(Some(Head { connect: true, host, port, path: String::new(), target: String::new(), req }));
    }
    let Some(after) = req.target.strip_prefix("http://") else {
        let message = if req.target.starts_with("https://") {
            "https:// requests go through CONNECT".to_owned()
        } else {
            format!("`{}` is not an absolute http:// URL (this is a proxy)", req.target)
        };
        return Err(Refusal::new(400, &message));
    };
    let (auth, origin) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    let (host, port) =
        authority(auth, Some(80)).ok_or_else(|| Refusal::new(400, &format!("bad host in `{}`", req.target)))?;
    let path = origin.split(['?', '#']).next().unwrap_or("/").to_owned();
    let target = origin.split('#').next().unwrap_or(origin).to_owned();
    Ok(Some(Head { connect: false, host, port, path, target, req }))
}

/// `host:port`, `[v6]:port`, or `host` with a default port.
pub(crate) fn authority(s: &str, default: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default?,
            None => return None,
        };
        (h.to_owned(), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), parse_port(p)?),
            None => (s.to_owned(), default?),
        }
    };
    (!host.is_empty() && port != 0).then_some((host.to_ascii_lowercase(), port))
}

fn parse_port(p: &str) -> Option<u16> {
    (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok()).flatten()
}

/// Checks that the request carries exactly one Host header naming `host:port`
/// (case-insensitive; `default` is the port a Host without one means).
pub(crate) fn check_host(req: &RequestHead, host: &str, port: u16, default: u16) -> Result<(), http1::HostError> {
    let value = http1::host_header(&req.headers)?;
    let (h, p) = authority(value, Some(default)).ok_or(http1::HostError::Malformed)?;
    let h = h.trim_end_matches('.');
    if h == host.trim_end_matches('.') && p == port { Ok(()) } else { Err(http1::HostError::Mismatch) }
}

/// Records a refusal made by the proxy itself (not by the policy).
pub(crate) fn record_refusal(shared: &Shared, generation: &Generation, req: &Request<'_>, reason: &str) {
    shared.audit.record(&event(shared, generation, req, "blocked", None, Some(reason.to_owned())));
}

/// Records how a relayed WebSocket ended, with what crossed it.
pub(crate) fn record_websocket(shared: &Shared, req: &Request<'_>, traffic: WebSocketTraffic, end: &str) {
    let mut event = event(shared, &shared.generation(), req, "allowed", None, Some(end.to_owned()));
    event.websocket = Some(traffic);
    shared.audit.record(&event);
}

/// The audit event of a decision about `req` (recorded by the caller).
pub(crate) fn event(
    shared: &Shared,
    generation: &Generation,
    req: &Request<'_>,
    disposition: &'static str,
    policy: Option<&str>,
    reason: Option<String>,
) -> AuditEvent {
    let http = req.http.as_ref();
    let call = match http.map(|h| h.message) {
        Some(Message::Rpc(call)) => Some(call),
        _ => None,
    };
    AuditEvent {
        time: now_ms(),
        class_uid: if http.is_some() { 4002 } else { 4001 },
        class_name: if http.is_some() { "HTTP Activity" } else { "Network Activity" },
        disposition,
        sandbox: shared.sandbox.clone(),
        actor_process: req.binary.map(str::to_owned),
        dst_hostname: req.host.to_owned(),
        dst_port: req.port,
        dst_ip: req.resolved_ip.map(|ip| ip.to_string()),
        http_method: http.map(|h| h.rule_method().to_owned()),
        http_path: http.map(|h| h.path.to_owned()),
        policy: policy.map(str::to_owned),
        reason,
        revision: generation.revision,
        raw_tcp: false,
        rpc_method: call.map(|c| c.method.to_owned()),
        rpc_tool: call.and_then(|c| c.tool).map(str::to_owned),
        websocket: None,
    }
}

pub(crate) fn record(
    shared: &Shared,
    generation: &Generation,
    req: &Request<'_>,
    decision: &Decision<'_>,
    note: Option<&str>,
) {
    shared.audit.record(&decision_event(shared, generation, req, decision, note));
}

/// The audit event of the engine's `decision` about `req`, with a `note`.
pub(crate) fn decision_event(
    shared: &Shared,
    generation: &Generation,
    req: &Request<'_>,
    decision: &Decision<'_>,
    note: Option<&str>,
) -> AuditEvent {
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
    event(shared, generation, req, disposition, decision.policy, reason)
}

pub(crate) fn denial(
    host: &str,
    port: u16,
    decision: &Decision<'_>,
    generation: &Generation,
    engine_req: &Request<'_>,
) -> serde_json::Value {
    json!({
        "error": "blocked by the sandbox's network policy",
        "host": host,
        "port": port,
        "reason": decision.reason.map(|r| r.as_str()),
        "detail": decision.explain(&generation.engine, engine_req),
        "revision": generation.revision,
    })
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
        assert_eq!(authority("h:+80", None), None);
        assert_eq!(authority("h: 80", None), None);
        assert_eq!(authority("[::1]x", Some(80)), None);
    }
}
