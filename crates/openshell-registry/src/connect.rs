//! The registry session: scheme, trust roots, credentials, and error mapping.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::RegistryError;

/// A user name and password given on the command line (the password read from
/// stdin, never from an argument).
#[derive(Clone)]
pub struct Login {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Plain HTTP; refused unless the registry is on loopback.
    pub insecure: bool,
    /// A PEM file of extra roots, trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// `--username`/`--password-stdin`; without it the Docker config is read.
    pub login: Option<Login>,
}

/// Where a session's credentials came from (named in authentication errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--username` and `--password-stdin`.
    Flags { username: String },
    /// The Docker config (`auths`, or a helper it names, which is run).
    DockerConfig { path: PathBuf },
    /// None found: anonymous.
    Anonymous { looked_in: Option<PathBuf> },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Flags { username } => write!(f, "the credentials of --username {username}"),
            CredentialSource::DockerConfig { path } => write!(f, "the credentials from {}", path.display()),
            CredentialSource::Anonymous { looked_in: Some(p) } => write!(
                f,
                "no credentials (none for this registry in {}; give --username and --password-stdin)",
                p.display()
            ),
            CredentialSource::Anonymous { looked_in: None } => {
                write!(f, "no credentials (no Docker config; give --username and --password-stdin)")
            }
        }
    }
}

/// An authenticated connection to one repository of a registry.
pub struct Session {
    pub(crate) client: Client,
    pub(crate) auth: RegistryAuth,
    pub(crate) credentials: CredentialSource,
    pub(crate) registry: String,
}

/// Parses a registry reference (`host[:port]/repository[:tag][@digest]`).
pub fn parse_reference(reference: &str) -> Result<Reference, RegistryError> {
    reference
        .parse::<Reference>()
        .map_err(|e| RegistryError::Reference { reference: reference.to_owned(), reason: e.to_string() })
}

/// Parses a reference that names its registry: the part before the first `/` has a
/// `.` or a `:` or is `localhost` (Docker's rule). Used where an argument may also
/// be a path: without the rule, a mistyped path like `image.tar` would parse as an
/// image on Docker Hub.
pub fn parse_registry_reference(reference: &str) -> Result<Reference, RegistryError> {
    let names_host =
        reference.split_once('/').is_some_and(|(first, _)| first.contains(['.', ':']) || first == "localhost");
    if !names_host {
        return Err(RegistryError::Reference {
            reference: reference.to_owned(),
            reason: "it names no registry host (HOST[:PORT]/REPOSITORY[:TAG|@sha256:HEX])".into(),
        });
    }
    parse_reference(reference)
}

/// Whether a registry host (`host[:port]`, `[v6]:port`) is a loopback address.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry
            .rsplit_once(':')
            .map_or(registry, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { registry }),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn ca_certificates(path: &Path) -> Result<Vec<Certificate>, RegistryError> {
    let bad = |message: String| RegistryError::CaFile { path: path.to_owned(), message };
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let pem = String::from_utf8_lossy(&text);
    // reqwest takes one certificate per `Certificate`: split the bundle at its markers.
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut rest = pem.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else { return Err(bad("a certificate has no END line".into())) };
        let end = start + len + END.len();
        certs.push(Certificate { encoding: CertificateEncoding::Pem, data: rest.as_bytes()[start..end].to_vec() });
        rest = &rest[end..];
    }
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn docker_config_path() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|d| d.join("config.json"))
}

/// The credentials for `registry`: the flags, else the Docker config (through
/// `docker_credential`, which runs `docker-credential-NAME get` with the server on
/// stdin for `credHelpers`/`credsStore`), else anonymous.
fn credentials(registry: &str, login: Option<&Login>) -> Result<(RegistryAuth, CredentialSource), RegistryError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    if let Some(l) = login {
        return Ok((
            RegistryAuth::Basic(l.username.clone(), l.password.clone()),
            CredentialSource::Flags { username: l.username.clone() },
        ));
    }
    let Some(config) = docker_config_path().filter(|p| p.is_file()) else {
        return Ok((RegistryAuth::Anonymous, CredentialSource::Anonymous { looked_in: None }));
    };
    match docker_credential::get_credential(registry) {
        Ok(DockerCredential::UsernamePassword(u, p)) => {
            Ok((RegistryAuth::Basic(u, p), CredentialSource::DockerConfig { path: config }))
        }
        Ok(DockerCredential::IdentityToken(t)) => {
            Ok((RegistryAuth::Bearer(t), CredentialSource::DockerConfig { path: config }))
        }
        Err(E::NoCredentialConfigured) => {
            Ok((RegistryAuth::Anonymous, CredentialSource::Anonymous { looked_in: Some(config) }))
        }
        Err(e) => Err(RegistryError::Credentials {
            registry: registry.to_owned(),
            source_name: config.display().to_string(),
            message: e.to_string(),
        }),
    }
}

impl Session {
    /// Connects to the registry of `reference` and authenticates for `op`.
    pub async fn open(
        reference: &Reference,
        opts: &ConnectOptions,
        op: RegistryOperation,
    ) -> Result<Session, RegistryError> {
        let registry = reference.resolve_registry().to_owned();
        if opts.insecure && !is_loopback(&registry) {
            return Err(RegistryError::InsecureNotLoopback { registry });
        }
        // reqwest is built without a TLS provider of its own: the workspace's
        // rustls uses ring. Installing it twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if opts.insecure { ClientProtocol::Http } else { ClientProtocol::Https },
            extra_root_certificates: match &opts.ca_file {
                Some(p) => ca_certificates(p)?,
                None => Vec::new(),
            },
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(300)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|source| RegistryError::Request {
            registry: registry.clone(),
            what: "setting up the HTTP client".into(),
            source,
        })?;
        let (auth, credentials) = credentials(&registry, opts.login.as_ref())?;
        let session = Session { client, auth, credentials, registry };
        session.client.auth(reference, &session.auth, op).await.map_err(|e| session.error("authenticating", e))?;
        Ok(session)
    }

    /// Maps a client error: authentication failures name the credentials' source.
    pub(crate) fn error(&self, what: &str, source: OciDistributionError) -> RegistryError {
        if is_auth_failure(&source) {
            RegistryError::Auth { registry: self.registry.clone(), credentials: self.credentials.clone(), source }
        } else {
            RegistryError::Request { registry: self.registry.clone(), what: what.to_owned(), source }
        }
    }
}

/// An error with its causes (`reqwest`'s own message leaves out why a connection
/// failed, e.g. an untrusted certificate).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn is_auth_failure(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
        }
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.8.9.1:1", "[::1]:5000", "[::1]"]
        {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1:5000", "registry.example:5000", "[fe80::1]:5000", "0.0.0.0:5000", "localhost.example"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn a_registry_reference_names_its_host() {
        for (good, host) in [
            ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000"),
            ("localhost/a", "localhost"),
            ("registry.example/a", "registry.example"),
        ] {
            let r = parse_registry_reference(good).expect(good);
            assert_eq!(r.registry(), host);
        }
        for bad in ["image.tar", "out/image.tar", "name:tag", "library/debian"] {
            let e = parse_registry_reference(bad).expect_err(bad).to_string();
            assert!(e.contains(bad) && e.contains("names no registry host"), "{e}");
        }
    }

    #[test]
    fn flags_win_and_the_password_never_prints() {
        let login = Login { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{login:?}").contains("hunter2"));
        let (auth, src) = credentials("127.0.0.1:1", Some(&login)).expect("flags");
        assert!(matches!(auth, RegistryAuth::Basic(u, p) if u == "u" && p == "hunter2"));
        assert_eq!(src, CredentialSource::Flags { username: "u".into() });
    }
}
