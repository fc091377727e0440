//! Shared fixtures for the end-to-end tests.

#![allow(dead_code)]

#[path = "../../crates/openshell-build/tests/support/server.rs"]
pub mod server;

#[path = "../../crates/openshell-proxy/tests/common/mod.rs"]
pub mod proxy_common;

pub mod built;
pub mod containerd;
pub mod cri;
pub mod debian_archive;
pub mod dockerd;
pub mod escapes;
pub mod gpg;
pub mod https;
pub mod kube_api;
pub mod npm_registry;
pub mod postgres;
pub mod pypi_index;
pub mod registry;
pub mod runtime_image;

/// `openshell provider create` arguments: the provider `name` of type `kind` at
/// `base`, its credential read from the environment variable `var`.
pub fn provider_create<'a>(name: &'a str, kind: &'a str, base: &'a str, var: &'a str) -> [&'a str; 10] {
    ["provider", "create", "--name", name, "--type", kind, "--base-url", base, "--credential", var]
}

/// A connection to 127.0.0.1:`port` once something listens there (10 s at most).
pub fn connect_when_listening(port: u16) -> std::net::TcpStream {
    connect_when_listening_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A connection to `addr` once something listens there (10 s at most).
pub fn connect_when_listening_at(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            Ok(c) => return c,
            Err(e) => assert!(std::time::Instant::now() < deadline, "nothing listens on {addr}: {e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends `line` to 127.0.0.1:`port`, ends the sending side, and reads the
/// answer to its end.
pub fn echo(port: u16, line: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut conn = connect_when_listening(port);
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    conn.write_all(line.as_bytes())?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut back = String::new();
    conn.read_to_string(&mut back).map(|_| back)
}
