//! haproxy, the proxy bench's peer: another proxy carrying the same downloads
//! in the same run. A TCP frontend relays to the bulk server (splice(2) both
//! ways, as haproxy does at its fastest); an HTTP frontend terminates TLS with a
//! certificate from the upstream's CA and re-encrypts to the TLS server,
//! verifying it as the openshell proxy does. Buffers are raised from haproxy's
//! defaults (16 KiB buffers and 64 KiB pipes carried the tunnel at 37–39% and
//! the L7 download at 39–49% of direct on the 2-core VM; with these, 58–63% and
//! 46–58%).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running haproxy, killed (by its pid) when dropped, and by the kernel when
/// the bench's main thread ends any other way (`setpriv --pdeathsig KILL`: the
/// bench may not use `unsafe`, which setting it in `pre_exec` needs).
pub struct Haproxy {
    child: Child,
    /// Its version line (`HAProxy version …`).
    pub version: String,
    /// Relays TCP to the bulk server.
    pub tunnel: SocketAddr,
    /// Terminates TLS for `tls.test` and forwards each request over TLS.
    pub l7: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts haproxy between the bench's client and its `bulk` (plain TCP) and
    /// `tls` (HTTPS for `tls.test`) servers. `leaf_pem` is its certificate and
    /// key for `tls.test`; `upstream_ca_pem` verifies the TLS server.
    pub fn start(bulk: SocketAddr, tls: SocketAddr, leaf_pem: &str, upstream_ca_pem: &str) -> Haproxy {
        let program = find().unwrap_or_else(|| {
            panic!("the proxy bench runs haproxy as its peer and finds none on PATH or in /usr/sbin: install it (Debian: apt-get install haproxy)")
        });
        let version = version(&program);
        let dir = tempfile::tempdir().expect("temporary directory");
        let [tunnel, l7] = free_ports();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            path
        };
        let leaf = file("leaf.pem", leaf_pem);
        let ca = file("upstream-ca.pem", upstream_ca_pem);
        let config = file("haproxy.cfg", &config(tunnel, bulk, l7, tls, &leaf, &ca));
        let log = dir.path().join("haproxy.log");
        let out = std::fs::File::create(&log).expect("haproxy's log");
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&program)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} under setpriv (util-linux): {e}", program.display()));
        let mut haproxy = Haproxy { child, version, tunnel, l7, _dir: dir };
        haproxy.wait_listening(&log);
        haproxy
    }

    /// Its pid, for its CPU time in `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while [self.tunnel, self.l7].iter().any(|a| TcpStream::connect(a).is_err()) {
            let exited = self.child.try_wait().expect("haproxy's status");
            if exited.is_some() || Instant::now() > deadline {
                let mut text = String::new();
                let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut text));
                panic!("haproxy did not listen on {} and {} ({exited:?}): {text}", self.tunnel, self.l7);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(tunnel: SocketAddr, bulk: SocketAddr, l7: SocketAddr, tls: SocketAddr, leaf: &Path, ca: &Path) -> String {
    let (leaf, ca) = (leaf.display(), ca.display());
    format!(
        "global
    maxconn 2000
    tune.bufsize 262144
    tune.pipesize 4194304
defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tunnel
    mode tcp
    bind {tunnel}
    default_backend bulk
backend bulk
    mode tcp
    option splice-request
    option splice-response
    server bulk {bulk}
frontend l7
    mode http
    bind {l7} ssl crt {leaf}
    default_backend tls
backend tls
    mode http
    server tls {tls} ssl verify required ca-file {ca} sni str(tls.test)
"
    )
}

fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
}

fn version(program: &Path) -> String {
    let out = Command::new(program).arg("-v").output().unwrap_or_else(|e| panic!("{} -v: {e}", program.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().unwrap_or("haproxy").trim().to_owned()
}

/// Two loopback ports nothing listens on now (the bench's own servers bind
/// port 0; haproxy needs the numbers in its configuration).
fn free_ports() -> [SocketAddr; 2] {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let held = [bind(), bind()];
    held.map(|l| l.local_addr().expect("address"))
}
