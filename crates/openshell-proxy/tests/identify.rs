//! The caller of a connection, from the kernel: a child process connects to a
//! listener of this test, and its executable (not its argv) and ancestors come
//! out of /proc.

use std::net::TcpListener;
use std::process::Command;

use openshell_proxy::Identify;
use openshell_proxy::identify::ProcIdentify;

#[test]
fn the_kernel_names_the_caller_and_argv_does_not() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // argv[0] claims to be curl; the executable is bash. The wait is bash's
    // own `read`: an external command as the last one would be exec'd in
    // place of bash, racing the test's look at /proc/PID/exe.
    let script = format!("exec -a /usr/bin/curl bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; read -t 5 <&3'");
    let mut child = Command::new("bash").args(["-c", &script]).spawn().expect("bash is installed");
    let (conn, peer) = listener.accept().expect("accept");
    let local = conn.local_addr().expect("local");
    let caller = ProcIdentify::new(std::process::id()).identify(peer, local).expect("the caller is found");
    let bash = std::fs::read_link(format!("/proc/{}/exe", child.id())).expect("exe").display().to_string();
    assert_eq!(caller.binary, bash, "{caller:?}");
    assert!(!caller.binary.contains("curl"));
    let me = std::fs::read_link("/proc/self/exe").expect("exe").display().to_string();
    assert_eq!(caller.ancestors.first(), Some(&me), "the nearest ancestor is this test: {caller:?}");
    // An address no socket has: unknown, so denied by the engine.
    let nobody = "127.0.0.1:1".parse().expect("addr");
    assert!(ProcIdentify::new(std::process::id()).identify(nobody, local).is_none());
    let _ = child.kill();
    let _ = child.wait();
}

/// A binary's content is pinned at its first use: the same path with other
/// content is denied afterwards.
#[test]
fn a_binary_changed_since_first_use_is_denied() {
    use std::collections::HashMap;
    use std::net::{IpAddr, SocketAddr};
    use std::os::unix::fs::PermissionsExt;

    use openshell_proxy::{Connect, Dialing};
    use openshell_proxy::{JsonLines, Proxy, ProxyConfig, StaticResolver};

    struct ToEcho(SocketAddr);
    impl Connect for ToEcho {
        fn connect(&self, _addr: SocketAddr) -> Dialing {
            Box::pin(tokio::net::TcpStream::connect(self.0))
        }
    }
    let echo = TcpListener::bind("127.0.0.1:0").expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    std::thread::spawn(move || for _conn in echo.incoming() {});

    let dir = tempfile::tempdir().expect("tempdir");
    let client = dir.path().join("client");
    std::fs::copy("/bin/bash", &client).expect("copy /bin/bash (Debian's bash)");
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let client_path = client.canonicalize().expect("canonical").display().to_string();
    let policy = format!(
        "version: 1\nnetwork_policies:\n  api:\n    endpoints:\n      - {{ host: api.test, port: 443, allowed_ips: [10.200.0.0/24] }}\n    binaries:\n      - path: {client_path}\n"
    );
    let ip: IpAddr = "10.200.0.2".parse().expect("ip");
    let proxy = Proxy::bind(
        "127.0.0.1:0".parse().expect("addr"),
        ProxyConfig {
            sandbox: "pin-test".into(),
            policy: openshell_policy::load_str("policy.yaml", &policy).expect("policy"),
            revision: 1,
            identify: Box::new(ProcIdentify::new(std::process::id())),
            resolver: Box::new(StaticResolver(HashMap::from([("api.test".to_owned(), vec![ip])]))),
            connector: Box::new(ToEcho(echo_addr)),
            audit: Box::new(JsonLines::new(std::io::sink())),
            tls: None,
            route: None,
            limits: Default::default(),
        },
    )
    .expect("proxy");
    let port = proxy.local_addr().expect("addr").port();
    std::thread::spawn(move || proxy.serve());
    let ask = || {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'CONNECT api.test:443 HTTP/1.1\\r\\n\\r\\n' >&3; read -r line <&3; echo \"$line\""
        );
        let out = Command::new(&client).args(["-c", &script]).output().expect("run the client");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert!(ask().starts_with("HTTP/1.1 200"), "first use: allowed and pinned");
    assert!(ask().starts_with("HTTP/1.1 200"), "the same content again: allowed");
    // The same path, other content.
    let mut bytes = std::fs::read(&client).expect("read");
    bytes.extend_from_slice(b"\0changed");
    std::fs::write(&client, bytes).expect("rewrite");
    assert!(ask().starts_with("HTTP/1.1 403"), "changed since first use: denied");
}
