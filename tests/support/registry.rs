//! Debian's `docker-registry` (the distribution registry) on loopback, for the push
//! and pull tests: plain, or with TLS from a CA made here and htpasswd auth.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// The user and password [`make_htpasswd`] writes.
pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret-registry-pw";

/// An htpasswd file with one bcrypt entry (`htpasswd -B`, the password on stdin).
pub fn make_htpasswd(dir: &Path) -> PathBuf {
    require_file("/usr/bin/htpasswd", "apache2-utils");
    let mut child = Command::new("htpasswd")
        .args(["-B", "-i", "-n", USER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("htpasswd");
    child.stdin.take().expect("stdin").write_all(PASSWORD.as_bytes()).expect("write");
    let o = child.wait_with_output().expect("htpasswd");
    assert!(o.status.success(), "htpasswd failed");
    let path = dir.join("htpasswd");
    std::fs::write(&path, &o.stdout).expect("write htpasswd");
    path
}

pub fn require_file(path: &str, package: &str) {
    assert!(Path::new(path).exists(), "{path} is missing: install the Debian package `{package}` (.ci/run does)");
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One `docker-registry serve` on 127.0.0.1, in its own directory.
pub struct Registry {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Registry {
    pub fn start(dir: &Path, tls: Option<&Tls>, htpasswd: Option<&Path>) -> Registry {
        require_file(REGISTRY, "docker-registry");
        std::fs::create_dir_all(dir).expect("mkdir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: openshell-test\n",
            dir.join("data").display()
        );
        if let Some(t) = tls {
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", t.cert.display(), t.key.display()));
        }
        if let Some(h) = htpasswd {
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: openshell-test\n    path: {}\n", h.display()));
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("log");
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Registry { child, port, dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", reg.log());
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen: {}", reg.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        // Something else may have taken the port first: then the registry exits.
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(status)) = reg.child.try_wait() {
            panic!("docker-registry exited ({status}): {}", reg.log());
        }
        reg
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, and a certificate for 127.0.0.1 and localhost from it.
pub fn make_tls(dir: &Path) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).expect("mkdir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "openshell registry test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("names");
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    params.use_authority_key_identifier_extension = true;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("leaf");
    // The CA alone in `ca/`: skopeo's --cert-dir takes every *.crt there as a root and
    // wants a client certificate for every *.key.
    std::fs::create_dir_all(dir.join("ca")).expect("mkdir");
    let tls = Tls { ca: dir.join("ca/ca.crt"), cert: dir.join("server.crt"), key: dir.join("server.key") };
    std::fs::write(&tls.ca, ca.pem()).expect("write");
    std::fs::write(&tls.cert, cert.pem()).expect("write");
    std::fs::write(&tls.key, key.serialize_pem()).expect("write");
    tls
}
