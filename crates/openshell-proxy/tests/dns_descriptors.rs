//! The DNS responder's TCP listener when its process is out of descriptors: a
//! connection waiting to be accepted must not make it spin. Alone in its test
//! binary: it lowers this process's descriptor limit and uses it up.

use std::collections::HashMap;
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use openshell_policy::load_str;
use openshell_proxy::{Caller, Direct, Fixed, JsonLines, Proxy, ProxyConfig, StaticResolver};

const POLICY: &str = "version: 1
network_policies:
  api:
    endpoints:
      - { host: api.test, port: 443 }
    binaries:
      - path: /usr/bin/curl
";

/// This process's CPU time (user + system), in clock ticks, from `stat`
/// (`/proc/self/stat`, opened before the descriptors ran out; read again at 0).
fn cpu_ticks(stat: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).expect("stat");
    common::cpu_ticks(&String::from_utf8_lossy(&buf[..n])).expect("utime and stime")
}

/// Opens /dev/null until the process has no descriptor left.
fn use_up(held: &mut Vec<std::fs::File>) {
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
    }
}

#[test]
fn a_pending_connection_out_of_descriptors_does_not_make_the_responder_spin() {
    let config = ProxyConfig {
        sandbox: "dns-descriptors".into(),
        policy: load_str("policy.yaml", POLICY).expect("policy"),
        revision: 1,
        identify: Box::new(Fixed(Some(Caller { binary: "/usr/bin/curl".into(), ancestors: vec![], sha256: None }))),
        resolver: Box::new(StaticResolver(HashMap::new())),
        connector: Box::new(Direct),
        audit: Box::new(JsonLines::new(std::io::sink())),
        tls: None,
        route: None,
        limits: Default::default(),
    };
    let proxy = Proxy::bind("127.0.0.1:0".parse().expect("addr"), config).expect("proxy");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp");
    let port = tcp.local_addr().expect("addr").port();
    let responder = proxy.dns_on(UdpSocket::bind("127.0.0.1:0").expect("udp")).with_tcp(tcp);
    std::thread::spawn(move || responder.serve());
    std::thread::sleep(Duration::from_millis(100));

    let stat = std::fs::File::open("/proc/self/stat").expect("stat");
    let limit = rustix::process::Rlimit { current: Some(256), maximum: None };
    let maximum = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    rustix::process::setrlimit(rustix::process::Resource::Nofile, rustix::process::Rlimit { maximum, ..limit })
        .expect("setrlimit");
    let mut held = Vec::new();
    use_up(&mut held);
    // Room for the client's spawn only, then none again.
    held.truncate(held.len() - 8);
    let mut client = Command::new("bash")
        .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 3")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bash");
    use_up(&mut held);

    // The connection waits in the listener's queue; accepting it fails (EMFILE).
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(&stat);
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(&stat) - before;
    drop(held);
    let _ = client.kill();
    let _ = client.wait();
    // A retry at once would take the whole second (100 ticks at 100 Hz).
    assert!(spent < 20, "the responder spent {spent} ticks of CPU in one second waiting for a descriptor");
}
