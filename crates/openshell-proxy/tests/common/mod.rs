//! What the proxy's tests (and benches) share: an audit sink that records, a
//! CA of the test's own with server certificates from it, and CPU time read
//! from `/proc`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use openshell_proxy::{ApiEvent, AuditEvent, AuditSink};
use openshell_proxy::{Caller, Fixed, Interceptor, Proxy, ProxyConfig, ProxyHandle, StaticResolver};
use openshell_proxy::{Connect, Dialing};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every audit line, as JSON text.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<String>>);

impl Recorder {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

/// The proxy's audit sink, writing into a shared [`Recorder`].
pub struct Sink(pub Arc<Recorder>);

impl AuditSink for Sink {
    fn record(&self, event: &AuditEvent) {
        self.0.0.lock().expect("lock").push(serde_json::to_string(event).expect("json"));
    }
    fn record_api(&self, event: &ApiEvent) {
        self.0.0.lock().expect("lock").push(serde_json::to_string(event).expect("json"));
    }
}

/// Carries connections for the (private) addresses the test's names resolve to
/// to its loopback servers.
pub struct Redirect(pub HashMap<SocketAddr, SocketAddr>);

impl Connect for Redirect {
    fn connect(&self, addr: SocketAddr) -> Dialing {
        redirect(&self.0, addr)
    }
}

/// Dials the test server that stands for `addr` in `servers` (none: the
/// dial fails).
pub fn redirect(servers: &HashMap<SocketAddr, SocketAddr>, addr: SocketAddr) -> Dialing {
    let to = servers.get(&addr).copied().ok_or_else(|| std::io::Error::other(format!("no test server for {addr}")));
    Box::pin(async move { tokio::net::TcpStream::connect(to?).await })
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA standing in for a public one.
pub struct TestCa {
    pub pem: String,
    pub root: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-signed");
        TestCa { pem: cert.pem(), root: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    /// A server configuration with a certificate for `host` from this CA.
    pub fn server(&self, host: &str) -> Arc<ServerConfig> {
        self.server_for(&[host])
    }

    /// The same for several names (HTTP/1.1 offered by ALPN).
    pub fn server_for(&self, names: &[&str]) -> Arc<ServerConfig> {
        let (cert, key) = self.leaf(names);
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A certificate for `host` from this CA and its key, as PEM (for a server
    /// that is not rustls).
    pub fn leaf_pem(&self, host: &str) -> String {
        let (cert, key) = self.leaf(&[host]);
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    fn leaf(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert, key)
    }
}

/// What a test proxy is given: its policy, its one caller, where names
/// resolve and dials go, and its TLS.
pub struct TestProxy<'a> {
    pub sandbox: &'a str,
    pub policy: &'a str,
    pub caller: Caller,
    pub resolver: StaticResolver,
    pub redirect: HashMap<SocketAddr, SocketAddr>,
    pub tls: Option<Arc<Interceptor>>,
}

impl TestProxy<'_> {
    /// Serves it on loopback (a thread of its own), auditing into `audit`.
    pub fn serve(self, audit: &Arc<Recorder>) -> (SocketAddr, ProxyHandle) {
        let config = ProxyConfig {
            sandbox: self.sandbox.into(),
            policy: openshell_policy::load_str("policy.yaml", self.policy).expect("policy"),
            revision: 1,
            identify: Box::new(Fixed(Some(self.caller))),
            resolver: Box::new(self.resolver),
            connector: Box::new(Redirect(self.redirect)),
            audit: Box::new(Sink(Arc::clone(audit))),
            tls: self.tls,
            route: None,
            limits: Default::default(),
        };
        let proxy = Proxy::bind("127.0.0.1:0".parse().expect("addr"), config).expect("bind proxy");
        let addr = proxy.local_addr().expect("addr");
        let handle = proxy.handle();
        std::thread::spawn(move || proxy.serve());
        (addr, handle)
    }
}

/// User + system CPU time, in clock ticks (USER_HZ, 100 a second), from the
/// text of a `/proc/<pid>[/task/<tid>]/stat` file.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}
