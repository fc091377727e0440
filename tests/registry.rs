//! End-to-end: `openshell push` and `openshell pull` against Debian's
//! `docker-registry` (the distribution registry), started by the tests on loopback:
//! one plain instance (`--insecure`) and one with TLS (a CA made here, `--ca-file`)
//! and htpasswd (bcrypt) authentication. A small loopback proxy in front of the
//! plain one counts requests, corrupts one blob, or drops one upload.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::built::{Built, json, ok, openshell, run, text, with_stdin_line};
use support::registry::{PASSWORD, Registry, USER, free_port, make_htpasswd, make_tls};

fn require_tool(tool: &str, package: &str) {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`{tool}` is not installed: install the Debian package `{package}` (.ci/run does)");
}

/// What the proxy does to the traffic it forwards.
#[derive(Debug, Clone)]
enum Mode {
    Pass,
    /// Flip the last byte of the body of GET .../blobs/DIGEST.
    Corrupt(String),
    /// Drop the connection, unanswered, at the Nth request whose method is `method`
    /// and whose path contains `path` (counting from 1).
    Drop {
        method: &'static str,
        path: &'static str,
        nth: usize,
    },
}

/// A loopback HTTP proxy in front of a plain registry (one request per connection).
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<(String, String)>>>,
    mode: Arc<Mutex<Mode>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let (l, m) = (Arc::clone(&log), Arc::clone(&mode));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (l, m) = (Arc::clone(&l), Arc::clone(&m));
                std::thread::spawn(move || forward(conn, upstream, &l, &m));
            }
        });
        Proxy { port, log, mode }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    /// The requests since the last call.
    fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

fn forward(client: TcpStream, upstream: u16, log: &Mutex<Vec<(String, String)>>, mode: &Mutex<Mode>) {
    let mut reader = BufReader::new(client.try_clone().expect("dup"));
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut first = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if first.is_empty() {
            first = line.clone();
            head.extend_from_slice(line.as_bytes());
            continue;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().expect("content-length");
        }
        if !lower.starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).expect("request body");
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let current = {
        let mut log = log.lock().expect("log");
        log.push((method.clone(), path.clone()));
        let m = mode.lock().expect("mode").clone();
        if let Mode::Drop { method: dm, path: dp, nth } = &m {
            let seen = log.iter().filter(|(mm, pp)| mm == dm && pp.contains(dp)).count();
            if seen == *nth && method == *dm && path.contains(dp) {
                return; // the connection closes unanswered
            }
        }
        m
    };
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).expect("upstream");
    up.write_all(&head).and_then(|()| up.write_all(&body)).expect("forward");
    let mut response = Vec::new();
    up.read_to_end(&mut response).expect("response");
    if let Mode::Corrupt(digest) = &current
        && method == "GET"
        && path.ends_with(&format!("/blobs/{digest}"))
        && response.starts_with(b"HTTP/1.1 200")
    {
        let last = response.len() - 1;
        response[last] ^= 0x01;
    }
    let mut client = client;
    let _ = client.write_all(&response);
}

fn count(log: &[(String, String)], method: &str, path: &str) -> usize {
    log.iter().filter(|(m, p)| m == method && p.contains(path)).count()
}

fn blobs_in(store: &Path) -> usize {
    std::fs::read_dir(store.join("blobs/sha256")).map_or(0, |d| d.count())
}

/// `openshell --output json push openshell/regtest TARGET --insecure` from the
/// built store; its report.
fn push_json(p: &Path, target: &str, built: &Built) -> serde_json::Value {
    json(&ok(openshell(p).args([
        "--output",
        "json",
        "push",
        "openshell/regtest",
        target,
        "--insecure",
        "--store",
        &built.store(),
    ])))
}

/// Push by name, pull into an empty store (same digest, listed, inspectable and
/// verifiable), push again (nothing sent), push the layout and the archive;
/// skopeo reads what was pushed.
#[test]
fn push_pull_round_trip_on_a_plain_loopback_registry() {
    require_tool("skopeo", "skopeo");
    let built = Built::new();
    let p = built.path();
    let reg = Registry::start(&p.join("registry"), None, None);
    let proxy = Proxy::start(reg.port);
    let target = format!("{}/openshell/regtest:v1", proxy.host());

    let v = push_json(p, &target, &built);
    assert_eq!(v["manifest"], built.manifest.as_str());
    assert_eq!(v["uploaded"].as_u64(), Some(built.blob_count() as u64), "{v}");
    let first = proxy.take();
    assert_eq!(count(&first, "HEAD", "/blobs/"), built.blob_count(), "HEAD first, for every blob: {first:?}");
    assert!(count(&first, "PATCH", "/blobs/uploads/") >= built.blob_count(), "chunked uploads: {first:?}");
    assert_eq!(count(&first, "PUT", "/manifests/v1"), 1);

    // Again: the registry has every blob; only the manifest is sent.
    let v = push_json(p, &target, &built);
    assert_eq!((v["uploaded"].as_u64(), v["skipped"].as_u64()), (Some(0), Some(built.blob_count() as u64)), "{v}");
    let second = proxy.take();
    for method in ["POST", "PATCH"] {
        assert_eq!(count(&second, method, "/blobs/"), 0, "no blob is sent again: {second:?}");
    }
    assert_eq!(count(&second, "PUT", "/blobs/"), 0, "{second:?}");

    // Pull into an empty store: the tag resolves once, to the pushed digest.
    let empty = p.join("pulled-store").display().to_string();
    let o = ok(openshell(p).args(["pull", &target, "--insecure", "--store", &empty]));
    assert!(text(&o).contains(&format!("resolved to {}", built.manifest)), "{}", text(&o));
    let pulled = proxy.take();
    assert_eq!(count(&pulled, "HEAD", "/manifests/v1"), 1, "the tag is resolved once: {pulled:?}");
    assert_eq!(count(&pulled, "GET", "/manifests/v1"), 0, "then everything goes by digest: {pulled:?}");
    let ls = json(&ok(openshell(p).args(["--output", "json", "image", "ls", "--store", &empty])));
    assert_eq!(ls[0]["name"], format!("{}/openshell/regtest", proxy.host()));
    assert_eq!(ls[0]["tag"], "v1");
    assert_eq!(ls[0]["manifest"], built.manifest.as_str());
    let orig = json(&ok(openshell(p).args(["--output", "json", "image", "ls", "--store", &built.store()])));
    assert_eq!(ls[0]["size"], orig[0]["size"]);
    assert_eq!(ls[0]["uncompressed_size"], orig[0]["uncompressed_size"]);
    ok(openshell(p).args(["image", "verify", &format!("{}/openshell/regtest:v1", proxy.host()), "--store", &empty]));
    // Pulling again downloads nothing.
    let v = json(&ok(openshell(p).args(["--output", "json", "pull", &target, "--insecure", "--store", &empty])));
    assert_eq!(v["downloaded"].as_u64(), Some(0), "{v}");

    // The layout directory and the archive push too, to the same digest.
    for src in ["oci", "t.tar"] {
        let to = format!("{}/openshell/from-{}:latest", reg.host(), src.replace('.', "-"));
        let v = json(&ok(openshell(p).args(["--output", "json", "push", src, &to, "--insecure"])));
        assert_eq!(v["manifest"], built.manifest.as_str(), "{src}");
    }

    // skopeo reads what we pushed.
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{}/openshell/regtest:v1", reg.host())])
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "skopeo inspect: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["Digest"], built.manifest.as_str());
    let copy = p.join("skopeo-copy");
    let o = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &format!("docker://{}/openshell/regtest:v1", reg.host())])
        .arg(format!("oci:{}:v1", copy.display()))
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "skopeo copy: {}", text(&o));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).expect("index")).expect("json");
    assert_eq!(index["manifests"][0]["digest"], built.manifest.as_str(), "skopeo kept the manifest byte for byte");
    ok(openshell(p).args(["image", "verify"]).arg(&copy));
}

/// A registry (here: the proxy) serving one wrong byte of a layer: the pull is
/// refused naming that blob, and the store holds nothing afterwards.
#[test]
fn a_wrong_blob_is_refused_by_name_and_nothing_is_stored() {
    let built = Built::new();
    let p = built.path();
    let reg = Registry::start(&p.join("registry"), None, None);
    let proxy = Proxy::start(reg.port);
    let target = format!("{}/openshell/regtest:bad", proxy.host());
    ok(openshell(p).args(["push", "openshell/regtest", &target, "--insecure", "--store", &built.store()]));
    let victim = built.largest_layer();
    proxy.set(Mode::Corrupt(victim.clone()));
    let empty = p.join("empty-store");
    let o = run(openshell(p).args(["pull", &target, "--insecure", "--store"]).arg(&empty));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&victim), "the blob is named: {}", text(&o));
    assert!(text(&o).contains("refused"), "{}", text(&o));
    assert_eq!(blobs_in(&empty), 0, "no blob was stored");
    assert!(std::fs::read_dir(empty.join("tmp")).expect("tmp").next().is_none(), "nothing left in tmp/");
    let ls = json(&ok(openshell(p).args(["--output", "json", "image", "ls", "--store"]).arg(&empty)));
    assert_eq!(ls, serde_json::json!([]), "no image recorded");
    // Positive control: the same pull through an honest proxy works.
    proxy.set(Mode::Pass);
    ok(openshell(p).args(["pull", &target, "--insecure", "--store"]).arg(&empty));
    assert!(blobs_in(&empty) > built.blob_count());
}

/// An upload dropped mid-push fails the push; the next push completes, sending
/// only the blobs the registry does not have yet.
#[test]
fn an_interrupted_push_resumes() {
    let built = Built::new();
    let p = built.path();
    let reg = Registry::start(&p.join("registry"), None, None);
    let proxy = Proxy::start(reg.port);
    let target = format!("{}/openshell/regtest:resume", proxy.host());
    let n = built.blob_count();
    assert!(n >= 3, "the fixture has several blobs ({n})");
    // The second blob's closing PUT never gets an answer.
    proxy.set(Mode::Drop { method: "PUT", path: "/blobs/uploads/", nth: 2 });
    let o = run(openshell(p).args(["push", "openshell/regtest", &target, "--insecure", "--store", &built.store()]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("uploading layer 1"), "{}", text(&o));
    proxy.take();
    proxy.set(Mode::Pass);
    let v = push_json(p, &target, &built);
    assert_eq!((v["uploaded"].as_u64(), v["skipped"].as_u64()), (Some(n as u64 - 1), Some(1)), "{v}");
    let log = proxy.take();
    assert_eq!(count(&log, "POST", "/blobs/uploads/"), n - 1, "{log:?}");
    let empty = p.join("after-resume").display().to_string();
    let v = json(&ok(openshell(p).args(["--output", "json", "pull", &target, "--insecure", "--store", &empty])));
    assert_eq!(v["manifest"], built.manifest.as_str());
}

/// TLS with a CA of the test's own and htpasswd (bcrypt) authentication: flags,
/// the Docker config's `auths` and a credential helper all work; wrong or missing
/// credentials and an unknown CA are clear errors; skopeo reads the image with
/// the CA and the credentials.
#[test]
fn tls_and_basic_auth() {
    require_tool("skopeo", "skopeo");
    let built = Built::new();
    let p = built.path();
    let tls = make_tls(&p.join("tls"));
    let htpasswd = make_htpasswd(p);
    let reg = Registry::start(&p.join("registry"), Some(&tls), Some(&htpasswd));
    let target = format!("{}/openshell/regtest:tls", reg.host());
    let ca = tls.ca.display().to_string();
    let with_password = |c: &mut Command, password: &str| -> Output { with_stdin_line(c, password) };
    let push = |extra: &[&str]| {
        let mut c = openshell(p);
        c.args(["--output", "json", "push", "openshell/regtest", &target, "--store", &built.store()]).args(extra);
        c
    };

    // No CA: the certificate is not trusted.
    let o = run(&mut push(&[]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).to_lowercase().contains("certificate"), "{}", text(&o));
    // No credentials, then wrong ones: authentication errors naming the registry.
    let o = run(&mut push(&["--ca-file", &ca]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&format!("{}: authentication failed with no credentials", reg.host())), "{}", text(&o));
    let o = with_password(&mut push(&["--ca-file", &ca, "--username", USER, "--password-stdin"]), "wrong");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("authentication failed with the credentials of --username {USER}")),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("wrong\n") && !text(&o).contains(PASSWORD), "no password is printed");
    // The right ones.
    let o = with_password(&mut push(&["--ca-file", &ca, "--username", USER, "--password-stdin"]), PASSWORD);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o)["manifest"], built.manifest.as_str());

    // The Docker config's `auths`.
    let docker = p.join(".docker");
    std::fs::create_dir_all(&docker).expect("mkdir");
    let auth = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
    std::fs::write(docker.join("config.json"), format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()))
        .expect("write config");
    let empty = p.join("tls-store").display().to_string();
    let v = json(&ok(openshell(p).args(["--output", "json", "pull", &target, "--ca-file", &ca, "--store", &empty])));
    assert_eq!(v["manifest"], built.manifest.as_str());

    // A credential helper (`credHelpers`), given the server on stdin.
    let bin = p.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let helper = bin.join("docker-credential-openshelltest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n[ \"$server\" = \"{}\" ] || {{ echo \"wrong server $server\" >&2; exit 3; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            reg.host()
        ),
    )
    .expect("write helper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(docker.join("config.json"), format!(r#"{{"credHelpers":{{"{}":"openshelltest"}}}}"#, reg.host()))
        .expect("write config");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let helper_store = p.join("helper-store").display().to_string();
    ok(openshell(p).env("PATH", &path).args(["pull", &target, "--ca-file", &ca, "--store", &helper_store]));

    // skopeo with the CA (a directory holding it as *.crt) and the credentials.
    let o = Command::new("skopeo")
        .args(["inspect", "--cert-dir"])
        .arg(p.join("tls/ca"))
        .args(["--creds", &format!("{USER}:{PASSWORD}"), &format!("docker://{target}")])
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "skopeo inspect: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["Digest"], built.manifest.as_str());
    let copy = p.join("skopeo-tls-copy");
    let o = Command::new("skopeo")
        .args(["copy", "--src-cert-dir"])
        .arg(p.join("tls/ca"))
        .args(["--src-creds", &format!("{USER}:{PASSWORD}"), &format!("docker://{target}")])
        .arg(format!("oci:{}:tls", copy.display()))
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "skopeo copy: {}", text(&o));
    assert!(reg.log().contains("openshell/regtest"), "the registry logged the requests");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `--insecure` is for loopback registries only; bad references and CA files are
/// input errors (exit 2).
#[test]
fn insecure_only_on_loopback_and_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let store = p.join("store").display().to_string();
    for reference in ["192.0.2.10:5000/x/y:1", "registry.example:5000/x/y:1", "localhost.example:5000/x/y:1"] {
        let o = run(openshell(p).args(["pull", reference, "--insecure", "--store", &store]));
        assert_eq!(o.status.code(), Some(2), "{reference}: {}", text(&o));
        assert!(text(&o).contains("only allowed for a loopback registry"), "{}", text(&o));
    }
    let o = run(openshell(p).args(["pull", "127.0.0.1:1/UPPER/case", "--insecure", "--store", &store]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("invalid registry reference `127.0.0.1:1/UPPER/case`"), "{}", text(&o));
    let o = run(openshell(p).args(["pull", "127.0.0.1:1/x/y:1", "--ca-file", "/nonexistent.pem", "--store", &store]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--ca-file /nonexistent.pem"), "{}", text(&o));
    // Positive control: loopback with --insecure gets past the check (to a refused connection).
    let port = free_port();
    let o = run(openshell(p).args(["pull", &format!("127.0.0.1:{port}/x/y:1"), "--insecure", "--store", &store]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!text(&o).contains("loopback"), "{}", text(&o));
}

/// Pushing a large layer streams it: the push's peak RSS stays far below the layer.
#[test]
fn a_large_layer_is_streamed_with_flat_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let mb: usize = std::env::var("OPENSHELL_TEST_PUSH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(160);
    let layout = p.join("big");
    let layer = random_layout(&layout, mb);
    let reg = Registry::start(&p.join("registry"), None, None);
    let target = format!("{}/openshell/big:1", reg.host());
    let started = Instant::now();
    let mut child = openshell(p)
        .args(["--output", "json", "push"])
        .arg(&layout)
        .args([&target, "--insecure"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let peak_kib = peak_rss_kib(&mut child);
    let o = child.wait_with_output().expect("wait");
    let secs = started.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}\nregistry log:\n{}", text(&o), reg.log());
    eprintln!("pushed {mb} MiB in {secs:.2}s; peak RSS {} MiB", peak_kib / 1024);
    assert_eq!(json(&o)["uploaded"].as_u64(), Some(2), "layer and config sent (the registry checked their digests)");
    assert!(peak_kib > 1024, "the sampling saw the process ({peak_kib} KiB)");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB for a {mb} MiB layer: not streamed");
    assert!(mb > 2 * 64, "the layer ({mb} MiB) is large against the bound");
    // The registry has the layer (it checked the digest at the closing PUT).
    let mut conn = TcpStream::connect(("127.0.0.1", reg.port)).expect("connect");
    write!(conn, "HEAD /v2/openshell/big/blobs/{layer} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", reg.host())
        .expect("request");
    let mut head = String::new();
    conn.read_to_string(&mut head).expect("response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// The child's peak resident set (VmHWM), sampled until it exits.
fn peak_rss_kib(child: &mut Child) -> usize {
    let status = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak = 0;
    while child.try_wait().expect("try_wait").is_none() {
        let hwm = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        });
        peak = peak.max(hwm.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    }
    peak
}

/// An OCI layout with one layer of `mb` MiB of random bytes (the registry does not
/// unpack layers; push sends blobs as they are).
fn random_layout(dir: &Path, mb: usize) -> String {
    use sha2::Digest as _;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let tmp = dir.join("layer.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("create"));
    let mut urandom = std::fs::File::open("/dev/urandom").expect("urandom");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    for _ in 0..mb {
        urandom.read_exact(&mut buf).expect("random");
        h.update(&buf);
        f.write_all(&buf).expect("write");
    }
    f.flush().expect("flush");
    drop(f);
    let layer = format!("sha256:{}", hex(&h.finalize()));
    std::fs::rename(&tmp, blobs.join(&layer[7..])).expect("rename");
    let put = |bytes: &[u8]| -> String {
        let d = hex(&sha2::Sha256::digest(bytes));
        std::fs::write(blobs.join(&d), bytes).expect("write");
        format!("sha256:{d}")
    };
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    let config_digest = put(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{}}}]}}"#,
        config.len(),
        mb * 1024 * 1024
    );
    let manifest_digest = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{}}}]}}"#,
            manifest.len()
        ),
    )
    .expect("write");
    layer
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
