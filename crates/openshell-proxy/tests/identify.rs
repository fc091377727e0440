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
    // argv[0] claims to be curl; the executable is bash.
    let script = format!("exec -a /usr/bin/curl bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 5'");
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
