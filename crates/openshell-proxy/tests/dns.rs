//! The DNS responder against queries on loopback: A and AAAA for a name the
//! policy names, NXDOMAIN (and a DNS-activity audit line) for any other, no data
//! for other types, and the same addresses the proxy then dials (the pin): a
//! resolver that answers differently on each lookup is asked once; the same over
//! TCP, with its connections bounded. Real clients (getent, Python, Node, dig,
//! `dig +tcp`) are tested in a sandbox by `tests/sandbox.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Recorder, Sink};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use openshell_policy::load_str;
use openshell_proxy::{Caller, Connect, Dialing, Fixed, Proxy, ProxyConfig, Resolve};

const POLICY: &str = "version: 1
network_policies:
  api:
    endpoints:
      - { host: api.test, port: 443, allowed_ips: [10.200.0.0/24, 'fd00::/64'] }
      - { host: meta.test, port: 443 }
      - { host: many.test, port: 443, allowed_ips: [10.201.0.0/24] }
    binaries:
      - path: /usr/bin/curl
";

/// Answers api.test with another address at each lookup (10.200.0.2, .3, ...).
struct Shifting(AtomicUsize);

impl Resolve for Shifting {
    fn resolve(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        if host.trim_end_matches('.') == "many.test" {
            // More A records than 512 bytes hold.
            return Ok((1..=60).map(|n| IpAddr::from([10, 201, 0, n])).collect());
        }
        if host.trim_end_matches('.') == "meta.test" {
            // The cloud metadata address, a private one no allowed_ips covers, a public one.
            return Ok(["169.254.169.254", "10.9.9.9", "192.0.2.7"].map(|a| a.parse().expect("ip")).to_vec());
        }
        if host.trim_end_matches('.') != "api.test" {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"));
        }
        let n = 2 + self.0.fetch_add(1, Ordering::SeqCst) as u8;
        Ok(vec![IpAddr::from([10, 200, 0, n]), IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(n)])])
    }
}

/// Records where the proxy dials, and connects it to the test's server.
struct Dialled(SocketAddr, Arc<Mutex<Vec<SocketAddr>>>);

impl Connect for Dialled {
    fn connect(&self, addr: SocketAddr) -> Dialing {
        self.1.lock().expect("lock").push(addr);
        let to = self.0;
        Box::pin(async move { tokio::net::TcpStream::connect(to).await })
    }
}

/// What a test gets: the responder's and the proxy's addresses, the audit
/// lines, the resolver (its lookups counted) and where the proxy dialled.
struct Setup {
    dns: SocketAddr,
    dns_tcp: SocketAddr,
    proxy: SocketAddr,
    audit: Arc<Recorder>,
    lookups: Arc<Shifting>,
    dialled: Arc<Mutex<Vec<SocketAddr>>>,
}

struct Shared(Arc<Shifting>);

impl Resolve for Shared {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        self.0.resolve(host, port)
    }
}

fn setup() -> Setup {
    let server = TcpListener::bind("127.0.0.1:0").expect("server");
    let server_addr = server.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut c in server.incoming().flatten() {
            let _ = c.write_all(b"upstream");
        }
    });
    let audit = Arc::new(Recorder::default());
    let lookups = Arc::new(Shifting(AtomicUsize::new(0)));
    let dialled = Arc::new(Mutex::new(Vec::new()));
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().expect("addr"),
        ProxyConfig {
            sandbox: "dns-test".into(),
            policy: load_str("policy.yaml", POLICY).expect("policy"),
            revision: 1,
            identify: Box::new(Fixed(Some(Caller {
                binary: "/usr/bin/curl".into(),
                ancestors: Vec::new(),
                sha256: None,
            }))),
            resolver: Box::new(Shared(Arc::clone(&lookups))),
            connector: Box::new(Dialled(server_addr, Arc::clone(&dialled))),
            audit: Box::new(Sink(Arc::clone(&audit))),
            tls: None,
            route: None,
            limits: Default::default(),
        },
    )
    .expect("bind proxy");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let dns = socket.local_addr().expect("addr");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp");
    let dns_tcp = tcp.local_addr().expect("addr");
    let responder = proxy.dns_on(socket).with_tcp(tcp);
    std::thread::spawn(move || responder.serve());
    let proxy_addr = proxy.local_addr().expect("addr");
    std::thread::spawn(move || proxy.serve());
    Setup { dns, dns_tcp, proxy: proxy_addr, audit, lookups, dialled }
}

/// A query for `name`'s `kind` records with `id`.
fn query(id: u16, name: &str, kind: RecordType) -> Vec<u8> {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
    query.to_vec().expect("encode")
}

/// A DNS message after its two-byte length, as over TCP.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(message.len()).expect("short").to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// The next message on a TCP connection.
fn read_framed(c: &mut TcpStream) -> Message {
    let mut length = [0u8; 2];
    c.read_exact(&mut length).expect("a length");
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
    c.read_exact(&mut message).expect("a message");
    Message::from_vec(&message).expect("a DNS message")
}

/// A TCP connection to the responder, with a read timeout.
fn dial(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    c
}

/// Whether the responder closes `c` (end of file, or a reset) before answering.
fn closed(c: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match c.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
    }
}

/// Asks `dns` for `name`'s `kind` records.
fn ask(dns: SocketAddr, name: &str, kind: RecordType) -> Message {
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
    socket.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    socket.send_to(&query.to_vec().expect("encode"), dns).expect("send");
    let mut buffer = [0u8; 1500];
    let n = socket.recv(&mut buffer).expect("an answer");
    let reply = Message::from_vec(&buffer[..n]).expect("a DNS message");
    assert_eq!(reply.metadata.id, 7);
    reply
}

fn addresses(reply: &Message) -> Vec<IpAddr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn allowed_names_get_the_addresses_the_proxy_dials_and_others_nxdomain() {
    let s = setup();
    let a = ask(s.dns, "api.test.", RecordType::A);
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&a), [IpAddr::from([10, 200, 0, 2])]);
    assert!(a.answers.iter().all(|r| r.ttl <= 60 && r.ttl > 0), "{:?}", a.answers);
    // Case does not matter; AAAA from the same pinned lookup.
    let aaaa = ask(s.dns, "API.Test.", RecordType::AAAA);
    assert_eq!(addresses(&aaaa), ["fd00::2".parse::<IpAddr>().expect("ip")]);
    // Another type: the name exists, no data.
    let mx = ask(s.dns, "api.test.", RecordType::MX);
    assert_eq!((mx.metadata.response_code, mx.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(s.lookups.0.load(Ordering::SeqCst), 1, "one lookup, pinned");

    // The proxy dials the address DNS gave (the resolver would now say .3).
    let mut c = TcpStream::connect(s.proxy).expect("proxy");
    c.write_all(b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n").expect("write");
    let mut answer = [0u8; 256];
    let n = c.read(&mut answer).expect("read");
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert_eq!(s.dialled.lock().expect("lock").as_slice(), [SocketAddr::from(([10, 200, 0, 2], 443))]);
    assert_eq!(s.lookups.0.load(Ordering::SeqCst), 1, "the proxy used the pin");

    // A name no policy names: NXDOMAIN, audited as DNS activity; never looked up.
    let denied = ask(s.dns, "evil.test.", RecordType::A);
    assert_eq!((denied.metadata.response_code, denied.answers.len()), (ResponseCode::NXDomain, 0));
    let lines = s.audit.lines();
    let line = lines.iter().find(|l| l.contains("evil.test")).unwrap_or_else(|| panic!("no audit line: {lines:?}"));
    let event: serde_json::Value = serde_json::from_str(line).expect("json");
    assert_eq!((event["class_uid"].as_u64(), event["disposition"].as_str()), (Some(4003), Some("blocked")), "{event}");
    assert_eq!(s.lookups.0.load(Ordering::SeqCst), 1, "a refused name is not looked up");

    // Addresses the proxy would refuse are never answered: of a name resolving to
    // the metadata address, an uncovered private one and a public one, only the last.
    let meta = ask(s.dns, "meta.test.", RecordType::A);
    assert_eq!(addresses(&meta), [IpAddr::from([192, 0, 2, 7])]);
}

#[test]
fn queries_over_tcp_get_the_same_answers_in_order_on_one_connection() {
    let s = setup();
    let mut c = dial(s.dns_tcp);
    // Two queries written at once (pipelined): both answered, in order.
    let mut both = framed(&query(1, "api.test.", RecordType::A));
    both.extend(framed(&query(2, "evil.test.", RecordType::A)));
    c.write_all(&both).expect("write");
    let first = read_framed(&mut c);
    assert_eq!((first.metadata.id, first.metadata.response_code), (1, ResponseCode::NoError));
    assert_eq!(addresses(&first), [IpAddr::from([10, 200, 0, 2])]);
    let second = read_framed(&mut c);
    assert_eq!((second.metadata.id, second.metadata.response_code), (2, ResponseCode::NXDomain));
    assert!(s.audit.lines().iter().any(|l| l.contains("evil.test")), "the refusal is audited");
    // The UDP answer is the same pin.
    assert_eq!(addresses(&ask(s.dns, "api.test.", RecordType::A)), [IpAddr::from([10, 200, 0, 2])]);
    assert_eq!(s.lookups.0.load(Ordering::SeqCst), 1);
    // A message that is not a DNS query ends the connection.
    c.write_all(&framed(b"not dns")).expect("write");
    assert!(closed(&mut c), "the connection stays open after garbage");
}

#[test]
fn tcp_connections_are_bounded_and_a_closed_one_frees_its_place() {
    let s = setup();
    let held: Vec<TcpStream> = (0..openshell_proxy::dns::TCP_CONNECTIONS)
        .map(|i| {
            let mut c = dial(s.dns_tcp);
            // Answered: each is being served.
            c.write_all(&framed(&query(i as u16, "api.test.", RecordType::A))).expect("write");
            assert_eq!(read_framed(&mut c).metadata.id, i as u16);
            c
        })
        .collect();
    let mut over = dial(s.dns_tcp);
    assert!(closed(&mut over), "a connection past the bound is served");
    drop(held);
    // Their threads see the ends and free the places.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = dial(s.dns_tcp);
        if c.write_all(&framed(&query(99, "api.test.", RecordType::A))).is_ok() && answered(&mut c) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no place freed after the held connections closed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether an answer's length comes (the connection is served), rather than
/// the end of the connection.
fn answered(c: &mut TcpStream) -> bool {
    let mut length = [0u8; 2];
    c.read_exact(&mut length).is_ok()
}

#[test]
fn an_answer_too_long_for_udp_is_truncated_and_whole_over_tcp() {
    let s = setup();
    // 60 A records: over 512 bytes, the UDP size of a query without EDNS.
    let udp = ask(s.dns, "many.test.", RecordType::A);
    assert!(udp.metadata.truncation, "{udp:?}");
    assert!(udp.answers.is_empty());
    // The client's retry over TCP gets them all.
    let mut c = dial(s.dns_tcp);
    c.write_all(&framed(&query(3, "many.test.", RecordType::A))).expect("write");
    let tcp = read_framed(&mut c);
    assert!(!tcp.metadata.truncation);
    assert_eq!(addresses(&tcp).len(), 60);
    // The positive control: a short answer is whole over UDP.
    let short = ask(s.dns, "api.test.", RecordType::A);
    assert!(!short.metadata.truncation);
    assert_eq!(addresses(&short).len(), 1);
}
