//! TLS for L7 inspection: the sandbox's own CA, the leaf certificates it signs
//! (one per host, cached), and the verifier for the real upstream.
//!
//! The CA is made once, when the sandbox is created; its key stays on the host
//! side (the sandbox directory), its certificate goes into the sandbox's trust
//! bundle. A client in the sandbox that connects to an inspected endpoint sees a
//! leaf for that host signed by this CA; the proxy itself verifies the upstream
//! against the system roots plus any roots the operator configured.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

/// What went wrong with the TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the sandbox CA: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("the sandbox CA key is not a usable PEM key: {0}")]
    Key(#[source] rcgen::Error),
    #[error("issuing a certificate for `{host}`: {source}")]
    Leaf {
        host: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("`{host}` is not a name a certificate can be issued for")]
    Name { host: String },
    #[error("building the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("reading trusted roots from {path}: {message}")]
    Roots { path: PathBuf, message: String },
    #[error("no trusted roots: the system has none and none were configured")]
    NoRoots,
    #[error("the upstream roots were taken already")]
    RootsTaken,
}

/// A sandbox's certificate authority. The key is PEM text kept by the host
/// (never inside the sandbox).
pub struct SandboxCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for SandboxCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCa").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// The CA's parameters: deterministic from the sandbox name, so the issuer can
/// be rebuilt from the key alone.
fn ca_params(sandbox: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "openshell");
    dn.push(DnType::CommonName, format!("openshell sandbox {sandbox} CA"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

impl SandboxCa {
    /// A new CA for `sandbox` (ECDSA P-256).
    pub fn generate(sandbox: &str) -> Result<SandboxCa, TlsError> {
        let key = KeyPair::generate().map_err(TlsError::Generate)?;
        let params = ca_params(sandbox);
        let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
        let key_pem = key.serialize_pem();
        Ok(SandboxCa { cert_pem: cert.pem(), key_pem, issuer: Issuer::new(params, key) })
    }

    /// The CA made earlier by [`SandboxCa::generate`] for the same sandbox.
    pub fn from_pem(sandbox: &str, cert_pem: &str, key_pem: &str) -> Result<SandboxCa, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(TlsError::Key)?;
        Ok(SandboxCa {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer: Issuer::new(ca_params(sandbox), key),
        })
    }

    /// The CA certificate, for the sandbox's trust bundle.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (to be stored owner-only on the host).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A leaf certificate for `host` (a DNS name or an IP address).
    fn issue(&self, host: &str, leaf_key: &KeyPair) -> Result<CertificateDer<'static>, TlsError> {
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(|_| TlsError::Name { host: host.to_owned() })?),
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        // Unique per host and CA key; high bit clear so the DER integer is positive.
        let mut serial: [u8; 16] =
            Sha256::new().chain_update(self.key_pem.as_bytes()).chain_update(host.as_bytes()).finalize()[..16]
                .try_into()
                .unwrap_or([1; 16]);
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params
            .signed_by(leaf_key, &self.issuer)
            .map_err(|source| TlsError::Leaf { host: host.to_owned(), source })?;
        Ok(cert.der().clone())
    }
}

/// The roots an upstream is verified against: the system's, plus PEM files the
/// operator names (how tests trust their own servers).
pub fn upstream_roots(extra: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for path in extra {
        let certs = read_certs(path)?;
        if certs.is_empty() {
            return Err(TlsError::Roots { path: path.clone(), message: "no PEM certificates in it".into() });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::Roots { path: path.clone(), message: e.to_string() })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(roots)
}

/// Reads the extra upstream roots named by `OPENSHELL_UPSTREAM_CA` (a
/// colon-separated list of PEM files), if set.
pub fn upstream_roots_from_env() -> Result<RootCertStore, TlsError> {
    let extra: Vec<PathBuf> = std::env::var_os("OPENSHELL_UPSTREAM_CA")
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    upstream_roots(&extra)
}

/// ring's suites with AES-128-GCM first: the proxy encrypts every inspected
/// byte twice, and AES-128 costs about two thirds of AES-256 (both are sound).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::CipherSuite::{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256};
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| !matches!(s.suite(), TLS13_AES_128_GCM_SHA256 | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
    Arc::new(provider)
}

/// Terminates TLS for inspected connections: serves leaves for the sandbox's
/// CA to the client, and opens verified TLS to the upstream.
pub struct Interceptor {
    ca: SandboxCa,
    leaf_key: KeyPair,
    servers: Mutex<HashMap<String, Arc<ServerConfig>>>,
    /// Where the upstream roots come from, taken when the client side is first made.
    roots: Mutex<Option<Roots>>,
    client: std::sync::OnceLock<Result<Arc<ClientConfig>, Arc<TlsError>>>,
}

/// The upstream roots: given, or read (system + `OPENSHELL_UPSTREAM_CA`) on
/// first use, so a sandbox that never opens verified TLS never pays for it.
enum Roots {
    Given(RootCertStore),
    FromEnv,
}

impl Interceptor {
    pub fn new(ca: SandboxCa, roots: RootCertStore) -> Result<Interceptor, TlsError> {
        Interceptor::with(ca, Roots::Given(roots))
    }

    /// Upstream roots from the system and `OPENSHELL_UPSTREAM_CA`, read when the
    /// first upstream TLS connection is made (about 5 ms, kept off sandbox start).
    pub fn with_env_roots(ca: SandboxCa) -> Result<Interceptor, TlsError> {
        Interceptor::with(ca, Roots::FromEnv)
    }

    fn with(ca: SandboxCa, roots: Roots) -> Result<Interceptor, TlsError> {
        let leaf_key = KeyPair::generate().map_err(TlsError::Generate)?;
        Ok(Interceptor {
            ca,
            leaf_key,
            servers: Mutex::new(HashMap::new()),
            roots: Mutex::new(Some(roots)),
            client: std::sync::OnceLock::new(),
        })
    }

    pub fn ca(&self) -> &SandboxCa {
        &self.ca
    }

    /// The server side for clients connecting to `host`: a leaf for it, made
    /// on first use and cached. Only HTTP/1.1 is offered.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, TlsError> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = servers.get(host) {
            return Ok(Arc::clone(config));
        }
        let leaf = self.ca.issue(host, &self.leaf_key)?;
        let key = PrivateKeyDer::try_from(self.leaf_key.serialize_der())
            .map_err(|e| TlsError::Key(rcgen::Error::PemError(e.to_string())))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(vec![leaf], key)
            .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // The proxy's preference (AES-128-GCM first) over the client's.
        config.ignore_client_order = true;
        let config = Arc::new(config);
        servers.insert(host.to_owned(), Arc::clone(&config));
        Ok(config)
    }

    /// The client side towards real upstreams; the error says why there is none.
    /// Made once: a failure is kept and given to every caller.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Arc<TlsError>> {
        self.client
            .get_or_init(|| {
                let roots = match self.roots.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    Some(Roots::Given(roots)) => roots,
                    Some(Roots::FromEnv) => upstream_roots_from_env()?,
                    None => return Err(TlsError::RootsTaken.into()),
                };
                let mut client = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(TlsError::Config)?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                client.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(Arc::new(client))
            })
            .clone()
    }

    /// `host` as a TLS server name (DNS name or IP address).
    pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
        ServerName::try_from(host.to_owned()).map_err(|_| TlsError::Name { host: host.to_owned() })
    }
}

/// Why verified TLS to an upstream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0}")]
    Name(#[from] TlsError),
    #[error("has no roots to verify with: {0}")]
    Config(#[source] Arc<TlsError>),
    #[error("failed: {0}")]
    Handshake(std::io::Error),
    #[error("timed out")]
    Timeout,
}

/// Ciphertext read from an upstream per system call. rustls reads into its
/// own record buffer, which holds at most one record (16 KiB and a header),
/// so an unbuffered socket under it costs a `recvfrom` per record of a download
/// (seen under strace: a median of 16,406 bytes a call); with this buffer in
/// between, one call brings in up to 64 KiB and rustls's reads are copies from it.
const UPSTREAM_TLS_READ: usize = 64 * 1024;

/// Verified TLS to an upstream, over a read-buffered socket.
pub(crate) type UpstreamTls = tokio_rustls::client::TlsStream<tokio::io::BufReader<tokio::net::TcpStream>>;

/// Opens TLS to `host` over `tcp`, verified against the upstream roots,
/// within `timeout`.
pub(crate) async fn dial(
    interceptor: &Interceptor,
    tcp: tokio::net::TcpStream,
    host: &str,
    timeout: std::time::Duration,
) -> Result<UpstreamTls, DialError> {
    let tcp = tokio::io::BufReader::with_capacity(UPSTREAM_TLS_READ, tcp);
    let name = Interceptor::server_name(host)?;
    let config = interceptor.client_config().map_err(DialError::Config)?;
    match tokio::time::timeout(timeout, tokio_rustls::TlsConnector::from(config).connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(DialError::Handshake(e)),
        Err(_) => Err(DialError::Timeout),
    }
}

/// Writes the sandbox's trust bundle: the image's system roots (when it has
/// them) followed by the sandbox CA. Clients pointed at it keep trusting the
/// public roots for endpoints that are not inspected.
pub fn trust_bundle(system_roots: Option<&str>, ca: &SandboxCa) -> String {
    let mut bundle = String::new();
    if let Some(roots) = system_roots {
        bundle.push_str(roots);
        if !roots.ends_with('\n') {
            bundle.push('\n');
        }
    }
    bundle.push_str("# openshell sandbox CA (TLS inspection for L7 rules)\n");
    bundle.push_str(ca.cert_pem());
    bundle
}

/// Where a Debian-family image keeps its system roots.
pub const SYSTEM_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// Where a sandbox with an egress proxy finds its trust bundle (the image's
/// system roots plus the sandbox's CA), inside the sandbox.
pub const SANDBOX_BUNDLE: &str = "/etc/openshell/ca-bundle.pem";

/// The variables that point common clients at a trust bundle: OpenSSL's,
/// Python requests', curl's, Node's (added to its own roots) and git's.
pub const TRUST_VARIABLES: [&str; 5] =
    ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"];

/// Reads PEM certificates from `path` (for tests and tools).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Roots { path: path.to_path_buf(), message: e.to_string() })
}
