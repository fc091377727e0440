//! A remote gateway: `openshell gateway run --listen ADDR` serves the API over
//! gRPC with mutual TLS, and every sandbox command works the same through it
//! (`gateway add`, `gateway select`/`$OPENSHELL_GATEWAY`). Tried from the
//! attacker's side: a client without a certificate, with another CA's, with an
//! expired or a revoked one, and a server answering for another name are all
//! refused, each next to the same call made with the admin's certificate.
//! Needs root (sandboxes); the gateway listens on 127.0.0.1 only.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openshell");
const TEST_ID_RANGE: u32 = 1_879_048_192;

/// A gateway listening on a loopback port with the TLS files `gateway init`
/// made, an image in a store of the client's own, and the client's config.
struct Remote {
    dir: tempfile::TempDir,
    port: u16,
    gateway: Child,
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl Remote {
    fn start(server_names: &[&str]) -> Remote {
        assert!(nix::unistd::geteuid().is_root(), "remote gateway tests run sandboxes: run them as root (CI does)");
        assert!(Path::new("/bin/busybox").is_file(), "/bin/busybox is missing: install Debian's busybox-static");
        let dir = tempfile::Builder::new().prefix("orm").tempdir_in("/tmp").expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
        let mut init = vec!["gateway", "init"];
        for name in server_names {
            init.extend(["--server-name", name]);
        }
        let mut remote = Remote { dir, port, gateway: Command::new("true").spawn().expect("true") };
        let out = remote.run(&init);
        assert!(out.status.success(), "gateway init: {}", text(&out));
        let listen = format!("127.0.0.1:{port}");
        remote.gateway = remote
            .command(&["gateway", "run", "--listen", &listen])
            .stderr(std::fs::File::create(remote.path().join("gateway.err")).expect("log"))
            .spawn()
            .expect("gateway run");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the gateway does not listen: {}", remote.gateway_log());
            std::thread::sleep(Duration::from_millis(20));
        }
        remote
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn tls(&self) -> PathBuf {
        self.path().join("gw/tls")
    }

    fn gateway_log(&self) -> String {
        std::fs::read_to_string(self.path().join("gateway.err")).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("OPENSHELL_GATEWAY_DIR", self.path().join("gw"))
            .env("OPENSHELL_ID_RANGE", TEST_ID_RANGE.to_string())
            .env_remove("OPENSHELL_STORE")
            .env_remove("OPENSHELL_GATEWAY")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run openshell")
    }

    /// `openshell` as a client of gateway `name`.
    fn client(&self, name: &str, args: &[&str]) -> Output {
        self.command(args).env("OPENSHELL_GATEWAY", name).output().expect("run openshell")
    }

    /// `gateway add NAME` with the client certificate `cert` (and its key).
    fn add(&self, name: &str, host: &str, cert: &Path, key: &Path) {
        let url = format!("https://{host}:{}", self.port);
        let ca = self.tls().join("ca.pem");
        let args = ["gateway", "add", name, &url, "--ca", s(&ca), "--cert", s(cert), "--key", s(key)];
        let out = self.run(&args);
        assert!(out.status.success(), "gateway add: {}", text(&out));
    }

    fn admin(&self) -> (PathBuf, PathBuf) {
        (self.tls().join("clients/admin.pem"), self.tls().join("clients/admin-key.pem"))
    }

    /// The busybox image in the client's own store (the gateway's is another).
    fn build_image(&self) -> String {
        let mut def = String::from("name: openshell/rmtest\nfiles:\n");
        for name in ["busybox", "sh", "cat", "echo", "sleep", "hostname", "tar", "nc"] {
            def.push_str(&format!("  - path: /bin/{name}\n    source: /bin/busybox\n    mode: \"0755\"\n"));
        }
        def.push_str("user: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\nworkdir: /sandbox\nenv:\n  PATH: /bin\ncmd: [/bin/sh]\n");
        std::fs::write(self.path().join("image.yaml"), def).expect("definition");
        let store = self.path().join("client-store").display().to_string();
        let out = self.run(&["lock", "image.yaml", "--store", &store]);
        assert!(out.status.success(), "lock: {}", text(&out));
        let out = self.run(&["build", "lockfiles/image.lock", "--store", &store]);
        assert!(out.status.success(), "build: {}", text(&out));
        store
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

impl Drop for Remote {
    fn drop(&mut self) {
        let out = self.client("local", &["--output", "json", "sandbox", "list"]);
        for s in serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default() {
            if let Some(name) = s["name"].as_str() {
                let _ = self.client("local", &["sandbox", "delete", name]);
            }
        }
        let _ = self.client("local", &["gateway", "stop"]);
        let _ = self.gateway.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_dir(self.path().join("gw/sandboxes")).is_ok_and(|mut d| d.next().is_some())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn sandbox_commands_work_against_a_remote_gateway() {
    let remote = Remote::start(&[]);
    let store = remote.build_image();
    let (cert, key) = remote.admin();
    remote.add("lab", "localhost", &cert, &key);
    let out = remote.run(&["gateway", "select", "lab"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = remote.run(&["gateway", "list"]);
    assert!(text(&out).contains("* lab"), "{}", text(&out));

    // The image is in the client's store only: the create uploads it, then runs
    // attached (stdin in, stdout and stderr apart, the exit code back).
    let mut child = remote
        .command(&[
            "sandbox",
            "create",
            "--rm",
            "--store",
            &store,
            "--image",
            "openshell/rmtest",
            "--",
            "sh",
            "-c",
            "cat; echo err >&2; exit 7",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("create");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"through the gateway\n").expect("stdin");
    }
    let out = child.wait_with_output().expect("create");
    assert_eq!(out.status.code(), Some(7), "{}\n{}", text(&out), remote.gateway_log());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through the gateway\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"), "{}", text(&out));

    // Detached, then exec, logs, list, get, stop, start, delete: all remote.
    let out = remote.run(&[
        "sandbox",
        "create",
        "-d",
        "--name",
        "far",
        "--store",
        &store,
        "--image",
        "openshell/rmtest",
        "--",
        "sh",
        "-c",
        "echo started; sleep 600",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = remote.run(&["sandbox", "exec", "far", "--", "sh", "-c", "echo in $(hostname); exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("in sandbox-"), "{}", text(&out));
    let out = remote.run(&["sandbox", "logs", "far"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n", "{}", text(&out));
    // Files in and out through the remote gateway (tar streams in the exec's streams).
    let local = remote.path().join("note.txt");
    std::fs::write(&local, "over the wire\n").expect("write");
    let out = remote.run(&["sandbox", "upload", "far", s(&local), "/sandbox/note.txt"]);
    assert!(out.status.success(), "remote upload: {}", text(&out));
    let back = remote.path().join("note-back.txt");
    let out = remote.run(&["sandbox", "download", "far", "/sandbox/note.txt", s(&back)]);
    assert!(out.status.success(), "remote download: {}", text(&out));
    assert_eq!(std::fs::read_to_string(&back).expect("downloaded"), "over the wire\n");
    // A port forwarded through the remote gateway: an echo server in a sandbox.
    let args = ["sandbox", "create", "-d", "--name", "echo", "--store", &store, "--image", "openshell/rmtest"];
    let out = remote.command(&args).args(["--", "nc", "-ll", "-p", "8080", "-e", "/bin/cat"]).output().expect("create");
    assert!(out.status.success(), "{}", text(&out));
    let local = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut forward = remote
        .command(&["sandbox", "forward", "echo", &format!("{local}:8080")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("forward");
    assert_eq!(support::echo(local, "echoed afar\n").expect("echo"), "echoed afar\n");
    let out = remote.run(&["sandbox", "delete", "echo"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = forward.wait().expect("forward");
    assert!(status.success(), "forward: {status}");
    let out = remote.run(&["--output", "json", "sandbox", "get", "far"]);
    let far: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(far["status"], "running", "{far}");
    let out = remote.run(&["sandbox", "stop", "far", "--time", "1"]);
    assert!(out.status.success() && text(&out).contains("stopped"), "{}", text(&out));
    let out = remote.run(&["sandbox", "delete", "far"]);
    assert!(out.status.success(), "{}", text(&out));
    // Errors keep their codes across the wire.
    let out = remote.run(&["--output", "json", "sandbox", "get", "far"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
    assert_eq!(doc["code"], "not_found", "{doc}");
    // The same state is the local gateway's: one gateway, two ways in.
    let out = remote.client("local", &["--output", "json", "gateway", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status");
    assert_eq!(status["sandboxes"], 0, "{status}");
}

/// A client TLS configuration trusting the gateway's CA, with `identity`.
fn tls_client(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).expect("ca")).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).expect("cert")],
                PrivateKeyDer::from_pem_file(key).expect("key"),
            )
            .expect("identity"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A TLS session's first read from the gateway: what the server said of this client.
fn first_read(port: u16, config: Arc<rustls::ClientConfig>) -> Result<(), String> {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The HTTP/2 preface: a server that accepted the client answers with SETTINGS.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 9];
    tls.read_exact(&mut buf).map_err(|e| e.to_string())
}

/// A certificate signed by `issuer` (CN = `name`, OU = user), valid from
/// `days.0` to `days.1` days from now.
fn client_cert(
    dir: &Path,
    name: &str,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    days: (i64, i64),
) -> (PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, "user");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(days.0);
    params.not_after = now + time::Duration::days(days.1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
    std::fs::write(&cert_path, cert.pem()).expect("cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("key");
    (cert_path, key_path)
}

/// The gateway's own CA, as `gateway init` wrote it (to sign an expired certificate).
fn gateway_issuer(remote: &Remote) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let pem = std::fs::read_to_string(remote.tls().join("ca.pem")).expect("ca");
    let key = std::fs::read_to_string(remote.tls().join("ca-key.pem")).expect("ca key");
    rcgen::Issuer::from_ca_cert_pem(&pem, rcgen::KeyPair::from_pem(&key).expect("key")).expect("issuer")
}

#[test]
fn the_gateway_refuses_clients_it_cannot_trust() {
    let remote = Remote::start(&[]);
    let ca = remote.tls().join("ca.pem");
    let (cert, key) = remote.admin();
    // The positive control for each refusal: the admin's certificate is accepted.
    first_read(remote.port, tls_client(&ca, Some((&cert, &key)))).expect("the admin's certificate is accepted");
    remote.add("lab", "localhost", &cert, &key);
    let out = remote.client("lab", &["sandbox", "list"]);
    assert!(out.status.success(), "{}", text(&out));

    // No client certificate at all.
    let refused = first_read(remote.port, tls_client(&ca, None)).expect_err("a client without a certificate");
    assert!(refused.contains("CertificateRequired"), "{refused}");

    // Another CA's certificate (same name and role).
    let other_key = rcgen::KeyPair::generate().expect("key");
    let mut other = rcgen::CertificateParams::new(Vec::new()).expect("params");
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = rcgen::Issuer::new(other, other_key);
    let (mallory, mallory_key) = client_cert(remote.path(), "admin-elsewhere", &other, (-1, 30));
    remote.add("other-ca", "localhost", &mallory, &mallory_key);
    let out = remote.client("other-ca", &["sandbox", "list"]);
    assert!(!out.status.success() && text(&out).contains("not signed by its CA"), "{}", text(&out));

    // Signed by the gateway's CA, but expired.
    let (old, old_key) = client_cert(remote.path(), "old", &gateway_issuer(&remote), (-30, -1));
    remote.add("expired", "localhost", &old, &old_key);
    let out = remote.client("expired", &["sandbox", "list"]);
    assert!(!out.status.success() && text(&out).contains("expired"), "{}", text(&out));

    // Issued, accepted, then revoked: the running gateway refuses it from then on.
    let out = remote.run(&["gateway", "cert", "issue", "bob", "--role", "user"]);
    assert!(out.status.success(), "{}", text(&out));
    let (bob, bob_key) = (remote.tls().join("clients/bob.pem"), remote.tls().join("clients/bob-key.pem"));
    remote.add("bob", "localhost", &bob, &bob_key);
    let out = remote.client("bob", &["sandbox", "list"]);
    assert!(out.status.success(), "bob before revocation: {}", text(&out));
    let out = remote.run(&["gateway", "cert", "revoke", "bob"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = remote.client("bob", &["sandbox", "list"]);
    assert!(!out.status.success() && text(&out).contains("revoked"), "{}", text(&out));
    let out = remote.client("lab", &["sandbox", "list"]);
    assert!(out.status.success(), "the admin after bob's revocation: {}", text(&out));

    // A server whose certificate does not name the host the client asked for.
    remote.add("wrong-name", "127.0.0.1", &cert, &key);
    let out = remote.client("wrong-name", &["sandbox", "list"]);
    assert!(out.status.success(), "127.0.0.1 is one of the server's names: {}", text(&out));
    let log = remote.gateway_log();
    assert!(log.contains("refused a remote client"), "refusals are logged: {log}");
}

#[test]
fn a_client_refuses_a_gateway_certified_for_another_name() {
    let remote = Remote::start(&["gateway.test"]);
    let (cert, key) = remote.admin();
    remote.add("lab", "localhost", &cert, &key);
    let out = remote.client("lab", &["sandbox", "list"]);
    assert!(!out.status.success() && text(&out).contains("not valid for the name in its URL"), "{}", text(&out));
    assert!(remote.run(&["gateway", "select", "nosuch"]).status.code() == Some(1));
}

#[test]
fn a_user_manages_only_its_own_sandboxes_and_every_change_is_audited() {
    let remote = Remote::start(&[]);
    let store = remote.build_image();
    let (cert, key) = remote.admin();
    remote.add("admin", "localhost", &cert, &key);
    for user in ["alice", "bob"] {
        let out = remote.run(&["gateway", "cert", "issue", user, "--role", "user"]);
        assert!(out.status.success(), "{}", text(&out));
        let (c, k) =
            (remote.tls().join(format!("clients/{user}.pem")), remote.tls().join(format!("clients/{user}-key.pem")));
        remote.add(user, "localhost", &c, &k);
    }
    // The gateway host's own store (the gateway's too) has another image under the
    // name alice's upload will carry: the upload must not take the name over (the
    // host's commands pick images by name).
    let host_store = remote.path().join(".local/share/openshell/store").display().to_string();
    let mut other = std::fs::read_to_string(remote.path().join("image.yaml")).expect("definition");
    other = other.replacen(
        "files:\n",
        "files:\n  - path: /bin/host-only\n    source: /bin/busybox\n    mode: \"0755\"\n",
        1,
    );
    std::fs::write(remote.path().join("host.yaml"), other).expect("host definition");
    for args in [
        vec!["lock", "host.yaml", "--store", &host_store, "-o", "host.lock"],
        vec!["build", "host.lock", "--store", &host_store],
    ] {
        let out = remote.run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let host_image = || {
        let out = remote.run(&["image", "inspect", "openshell/rmtest", "--store", &host_store]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect json");
        doc["manifest_digest"].as_str().expect("digest").to_owned()
    };
    let before = host_image();
    let out = remote.run(&["gateway", "cert", "issue", "local", "--role", "user"]);
    assert!(!out.status.success() && text(&out).contains("local gateway's owner"), "{}", text(&out));

    let image = ["--store", &store, "--image", "openshell/rmtest"];
    let mut create = vec!["sandbox", "create", "-d", "--name", "alices"];
    create.extend(image);
    create.extend(["--", "sh", "-c", "echo alice-secret; sleep 600"]);
    let out = remote.client("alice", &create);
    assert!(out.status.success(), "{}", text(&out));

    // Her image was uploaded (her sandbox runs it, by digest), the host's name was not taken.
    let out = remote.client("alice", &["--output", "json", "sandbox", "get", "alices"]);
    let alices: serde_json::Value = serde_json::from_slice(&out.stdout).expect("get json");
    assert_ne!(alices["image_digest"].as_str(), Some(before.as_str()), "{alices}");
    assert_eq!(host_image(), before, "an upload took over the name openshell/rmtest in the host's store");

    // The positive control: alice reaches her own sandbox.
    let out = remote.client("alice", &["sandbox", "exec", "alices", "--", "echo", "mine"]);
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), "mine\n".into()),
        "{}",
        text(&out)
    );
    let out = remote.client("alice", &["sandbox", "logs", "alices"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice-secret"), "{}", text(&out));

    // Bob does not: exec, logs, delete, stop are refused with permission_denied.
    for args in [
        vec!["sandbox", "exec", "alices", "--", "echo", "in"],
        vec!["sandbox", "logs", "alices"],
        vec!["sandbox", "delete", "alices"],
        vec!["sandbox", "stop", "alices"],
    ] {
        let out = remote.client("bob", &args);
        assert!(
            !out.status.success()
                && text(&out).contains("error[permission_denied]")
                && !text(&out).contains("alice-secret"),
            "bob {args:?}: {}",
            text(&out)
        );
    }
    // Bob's list does not show it; the admin's does.
    let out = remote.client("bob", &["--output", "json", "sandbox", "list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "{}", text(&out));
    let out = remote.client("admin", &["--output", "json", "sandbox", "list"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("list");
    assert_eq!((all.len(), all[0]["owner"].as_str()), (1, Some("alice")), "{all:?}");

    // Providers are the admin's: a user is refused, the admin is not.
    let provider = [
        "provider",
        "create",
        "--name",
        "p1",
        "--type",
        "openai-compatible",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--credential",
        "K",
    ];
    let out = remote.command(&provider).env("OPENSHELL_GATEWAY", "bob").env("K", "secret").output().expect("run");
    assert!(!out.status.success() && text(&out).contains("needs an admin certificate"), "{}", text(&out));
    let out = remote.command(&provider).env("OPENSHELL_GATEWAY", "admin").env("K", "secret").output().expect("run");
    assert!(out.status.success(), "{}", text(&out));

    // Alice deletes her own.
    let out = remote.client("alice", &["sandbox", "delete", "alices"]);
    assert!(out.status.success(), "{}", text(&out));

    // Every change and every refusal, with its caller.
    let audit = std::fs::read_to_string(remote.path().join("gw/audit.log")).expect("audit.log");
    let lines: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let has = |caller: &str, op: &str, decision: &str| {
        lines.iter().any(|l| l["caller"] == caller && l["op"] == op && l["decision"] == decision)
    };
    assert!(has("alice", "sandbox.create", "allowed"), "{audit}");
    assert!(has("bob", "sandbox.exec", "refused") && has("bob", "sandbox.logs", "refused"), "{audit}");
    assert!(has("bob", "sandbox.delete", "refused") && has("bob", "provider.create", "refused"), "{audit}");
    assert!(has("admin", "provider.create", "allowed") && has("alice", "sandbox.delete", "allowed"), "{audit}");
    assert!(!audit.contains("secret"), "no credential in the audit log: {audit}");
}

/// Output kept in memory (a gRPC run's stdout).
struct Kept(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Kept {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 14: the gateway serves the same gRPC API on a Unix socket of its own
/// (owner-only, like its local socket), for programs on its machine: status,
/// the sandboxes the CLI made through the local socket, and an exec.
#[test]
fn the_gateway_serves_grpc_on_its_unix_socket_too() {
    use openshell_gateway_api::grpc::v1;
    use openshell_gateway_api::proto::{Request, Response};
    use openshell_gateway_api::remote::{Remote as Grpc, RunEnd, RunIo};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let remote = Remote::start(&[]);
    let store = remote.build_image();
    let args = ["sandbox", "create", "-d", "--name", "near", "--store", &store, "--image", "openshell/rmtest"];
    let out = remote.client("local", &args);
    assert!(out.status.success(), "{}", text(&out));
    let socket = remote.path().join("gw").join("gateway.grpc.sock");
    let meta = std::fs::metadata(&socket).expect("the gRPC socket");
    assert_eq!((meta.permissions().mode() & 0o777, meta.uid()), (0o600, 0), "owner-only");

    let grpc = Grpc::connect_unix(&socket).expect("connect");
    let Ok(Response::Status { status }) = grpc.call(&Request::Status) else { panic!("no status") };
    assert_eq!(status.sandboxes, 1, "{status:?}");
    let Ok(Response::Sandbox { sandbox }) = grpc.call(&Request::Get { name: "near".into() }) else {
        panic!("no sandbox `near`")
    };
    assert_eq!(sandbox.phase.as_str(), "running");
    let said = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let exec = v1::ExecRequest {
        name: "near".into(),
        args: vec!["echo".into(), "over the unix socket".into()],
        env: Vec::new(),
        tty: false,
        size: None,
    };
    let io =
        RunIo { stdin: None, stdout: Box::new(Kept(std::rc::Rc::clone(&said))), stderr: Box::new(std::io::sink()) };
    let end = grpc.run(v1::run_input::Input::Exec(exec), io, &mut |_| {}, None).expect("exec");
    assert!(matches!(end, RunEnd::Exited(0)));
    assert_eq!(String::from_utf8_lossy(&said.borrow()), "over the unix socket\n");
}
