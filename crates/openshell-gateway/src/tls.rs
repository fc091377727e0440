//! Mutual TLS for a remote gateway: its own CA (made by `openshell gateway
//! init`), the server's certificate, client certificates that name a user and
//! a role, and the list of revoked ones (a CRL signed by the CA, read again
//! whenever it changes).
//!
//! A client certificate's subject says who calls: CN = the user, OU = the role
//! (`admin` or `user`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// Why a TLS file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{0} exists already: the gateway's TLS files are made once (remove the directory to start over)")]
    Exists(PathBuf),
    #[error("no client certificate named `{0}` (see `openshell gateway cert issue`)")]
    NoClient(String),
    #[error("invalid {what} `{name}`: use 1 to 63 of a-z, 0-9, `_`, `.`, `-`, starting with a letter or digit")]
    Name { what: &'static str, name: String },
    #[error("a certificate without an openshell identity (CN = user, OU = admin|user): {0}")]
    Identity(String),
    #[error("`{0}` names the local gateway's owner: choose another client name")]
    Reserved(String),
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: providers, the inference route, gateway settings, every sandbox.
    Admin,
    /// Its own sandboxes only.
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Admin, Role::User].into_iter().find(|r| r.as_str() == text)
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The owner of a local gateway (its socket admits only the gateway's uid).
    pub fn owner() -> Caller {
        Caller { name: "local".into(), role: Role::Admin }
    }

    /// The caller a client certificate (verified by the TLS layer) names.
    pub fn from_certificate(der: &[u8]) -> Result<Caller, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Identity(e.to_string()))?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| TlsError::Identity("no CN".into()))?;
        if name == Caller::owner().name {
            return Err(TlsError::Reserved(name));
        }
        let role = subject
            .iter_organizational_unit()
            .next()
            .and_then(|a| a.as_str().ok())
            .and_then(Role::parse)
            .ok_or_else(|| TlsError::Identity(format!("CN={name}: no OU of admin or user")))?;
        Ok(Caller { name, role })
    }
}

/// The TLS files of a gateway: `DIR/tls` by default.
#[derive(Debug, Clone)]
pub struct TlsDir(pub PathBuf);

impl TlsDir {
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.0.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.0.join("server-key.pem")
    }
    /// The revoked client certificates (a CRL, PEM).
    pub fn crl(&self) -> PathBuf {
        self.0.join("revoked.crl.pem")
    }
    /// A client's certificate and key.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.0.join("clients");
        (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_owned(), source }
}

/// Writes `text` to a new file of `mode`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))
}

fn check_name(what: &'static str, name: &str) -> Result<(), TlsError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok { Ok(()) } else { Err(TlsError::Name { what, name: name.to_owned() }) }
}

fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "openshell gateway CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    Ok(params)
}

fn issuer(dir: &TlsDir) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let key_path = dir.ca_key();
    let pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let key = KeyPair::from_pem(&pem).map_err(|e| TlsError::Pem { path: key_path, message: e.to_string() })?;
    Ok(Issuer::new(ca_params()?, key))
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// The parameters of a certificate valid from an hour ago for `days`.
pub fn leaf_params(names: Vec<String>, days: i64) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(names)?;
    params.serial_number = Some(random_serial());
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Makes a gateway's CA, its server certificate (for `server_names`: DNS names
/// or IP addresses) and a first client certificate, `admin` (role admin).
/// Returns the files written.
pub fn init(dir: &TlsDir, server_names: &[String]) -> Result<Vec<PathBuf>, TlsError> {
    if dir.ca().exists() {
        return Err(TlsError::Exists(dir.ca()));
    }
    let ca_key = KeyPair::generate()?;
    let ca = ca_params()?.self_signed(&ca_key)?;
    write_new(&dir.ca_key(), &ca_key.serialize_pem(), 0o600)?;
    write_new(&dir.ca(), &ca.pem(), 0o644)?;
    let issuer = issuer(dir)?;
    let mut params = leaf_params(server_names.to_vec(), 825)?;
    params.distinguished_name.push(DnType::CommonName, "openshell gateway");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_new(&dir.server_key(), &key.serialize_pem(), 0o600)?;
    write_new(&dir.server_cert(), &cert.pem(), 0o644)?;
    let (client, client_key) = issue(dir, "admin", Role::Admin, 365)?;
    Ok(vec![dir.ca(), dir.ca_key(), dir.server_cert(), dir.server_key(), client, client_key])
}

/// Issues a client certificate for `name` with `role`, valid for `days`.
pub fn issue(dir: &TlsDir, name: &str, role: Role, days: i64) -> Result<(PathBuf, PathBuf), TlsError> {
    check_name("client name", name)?;
    if name == Caller::owner().name {
        // The local socket's caller owns what it creates under this name.
        return Err(TlsError::Reserved(name.to_owned()));
    }
    let (cert_path, key_path) = dir.client(name);
    if cert_path.exists() {
        return Err(TlsError::Exists(cert_path));
    }
    let mut params = leaf_params(Vec::new(), days)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationalUnitName, role.as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer(dir)?)?;
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok((cert_path, key_path))
}

/// Adds client `name`'s certificate to the revoked list (the CRL, signed again).
pub fn revoke(dir: &TlsDir, name: &str) -> Result<usize, TlsError> {
    let (cert_path, _) = dir.client(name);
    if !cert_path.exists() {
        return Err(TlsError::NoClient(name.to_owned()));
    }
    let mut serials = revoked_serials(dir)?;
    let der = read_certs(&cert_path)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::Pem { path: cert_path.clone(), message: "no certificate".into() })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| TlsError::Pem { path: cert_path.clone(), message: e.to_string() })?;
    let serial = cert.raw_serial().to_vec();
    if !serials.contains(&serial) {
        serials.push(serial);
    }
    let now = time::OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(3650),
        crl_number: random_serial(),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: now - time::Duration::minutes(5),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer(dir)?)?;
    let tmp = dir.crl().with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &crl.pem().map_err(TlsError::Generate)?, 0o644)?;
    std::fs::rename(&tmp, dir.crl()).map_err(io(&dir.crl()))?;
    Ok(serials.len())
}

fn revoked_serials(dir: &TlsDir) -> Result<Vec<Vec<u8>>, TlsError> {
    let path = dir.crl();
    let Some(der) = read_crl(&path)? else { return Ok(Vec::new()) };
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
        .map_err(|e| TlsError::Pem { path: path.clone(), message: e.to_string() })?;
    Ok(crl.iter_revoked_certificates().map(|r| r.raw_serial().to_vec()).collect())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), message: "no certificate".into() });
    }
    Ok(certs)
}

fn read_crl(path: &Path) -> Result<Option<CertificateRevocationListDer<'static>>, TlsError> {
    if !path.exists() {
        return Ok(None);
    }
    CertificateRevocationListDer::from_pem_file(path)
        .map(Some)
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: e.to_string() })
}

/// A client's TLS configuration that trusts the certificates in `ca` only
/// (for the connection to PostgreSQL).
pub fn client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The server's TLS configuration: its certificate, client certificates
/// required and verified against the CA and its CRL, HTTP/2.
pub fn server_config(dir: &TlsDir) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&dir.ca())? {
        roots.add(cert).map_err(|e| TlsError::Config(format!("{}: {e}", dir.ca().display())))?;
    }
    let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(crl) = read_crl(&dir.crl())? {
        verifier = verifier.with_crls([crl]).only_check_end_entity_revocation();
    }
    let verifier = verifier.build().map_err(|e| TlsError::Config(e.to_string()))?;
    let key_path = dir.server_key();
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| TlsError::Pem { path: key_path.clone(), message: e.to_string() })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&dir.server_cert())?, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
