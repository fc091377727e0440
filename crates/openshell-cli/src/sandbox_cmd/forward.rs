//! `sandbox forward NAME [LOCAL:]PORT`: a local port (on 127.0.0.1) whose
//! connections each become a connection to PORT on the sandbox's own loopback,
//! made by the gateway's driver inside the sandbox's network namespace. Over
//! the local socket the gateway hands over the connected socket and this
//! process relays between the two; over a remote gateway the connection's two
//! directions are the streams of a gRPC call. Forwarding ends when the sandbox
//! stops.

use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use openshell_gateway_api::grpc::v1;
use openshell_gateway_api::proto::{Phase, Request, Response};
use openshell_gateway_api::remote::{Remote, RunIo};

use super::{Gateway, SandboxCmdError, connect, connect_local, fail};
use crate::output::Output;

/// `[LOCAL:]PORT`: the local port (the same as PORT when not given; 0 picks a
/// free one) and the sandbox's.
pub(super) fn parse_ports(text: &str) -> Result<(u16, u16), SandboxCmdError> {
    let port = |p: &str, zero: bool| {
        p.parse::<u16>()
            .ok()
            .filter(|n| zero || *n > 0)
            .ok_or_else(|| fail(format!("`{text}`: `{p}` is not a port (use PORT or LOCAL:PORT)")))
    };
    match text.split_once(':') {
        Some((local, remote)) => Ok((port(local, true)?, port(remote, false)?)),
        None => port(text, false).map(|p| (p, p)),
    }
}

/// Where each accepted connection goes.
#[derive(Clone)]
enum Via {
    Local,
    Remote(Arc<Remote>),
}

pub(super) fn forward(out: &Output, name: &str, ports: &str) -> Result<u8, SandboxCmdError> {
    let (local, port) = parse_ports(ports)?;
    let via = match connect(true)? {
        Gateway::Local(_) => Via::Local,
        Gateway::Remote(remote) => Via::Remote(Arc::from(remote)),
    };
    ensure_running(&via, name)?;
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, local)).map_err(|e| fail(format!("127.0.0.1:{local}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| fail(format!("127.0.0.1:{local}: {e}")))?;
    out.info(&format!("forwarding {bound} to port {port} in sandbox `{name}` (until it stops)"));
    watch_sandbox(out.clone(), name.to_owned(), via.clone());
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%e, "accepting a connection");
                continue;
            }
        };
        let (via, name) = (via.clone(), name.to_owned());
        std::thread::spawn(move || {
            if let Err(e) = relay(&via, &name, port, conn) {
                eprintln!("openshell: a connection to port {port} in sandbox `{name}`: {e}");
            }
        });
    }
    Ok(0)
}

fn ensure_running(via: &Via, name: &str) -> Result<(), SandboxCmdError> {
    let request = Request::Get { name: name.to_owned() };
    let answer = match via {
        Via::Local => connect_local(false)?.call(&request)?,
        Via::Remote(remote) => remote.call(&request)?,
    };
    match answer {
        Response::Sandbox { sandbox } if sandbox.phase == Phase::Running => Ok(()),
        Response::Sandbox { sandbox } => Err(fail(format!("sandbox `{name}` is not running ({})", sandbox.phase))),
        other => Err(fail(format!("unexpected answer {other:?}"))),
    }
}

/// Ends this process once the sandbox no longer runs (checked every second).
fn watch_sandbox(out: Output, name: String, via: Via) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            if let Err(e) = ensure_running(&via, &name) {
                out.info(&format!("{e}: forwarding ends"));
                std::process::exit(0);
            }
        }
    });
}

/// One accepted connection, relayed to `port` in the sandbox until both
/// directions end.
fn relay(via: &Via, name: &str, port: u16, conn: TcpStream) -> Result<(), SandboxCmdError> {
    let io = |e: std::io::Error| fail(format!("the local connection: {e}"));
    match via {
        Via::Local => {
            let client = connect_local(false)?;
            client.send(&Request::Forward { name: name.to_owned(), port }, &[]).map_err(super::rpc_err)?;
            let stream = match client.recv().map_err(super::rpc_err)? {
                (Response::Connected, fds) => {
                    fds.into_iter().next().ok_or_else(|| fail("the gateway sent no socket"))?
                }
                (Response::Error { error }, _) => return Err(error.into()),
                (other, _) => return Err(fail(format!("unexpected answer {other:?}"))),
            };
            splice_both(conn, TcpStream::from(stream)).map_err(io)
        }
        Via::Remote(remote) => {
            let forward = v1::ForwardRequest { name: name.to_owned(), port: u32::from(port) };
            let run_io = RunIo {
                stdin: Some(Box::new(conn.try_clone().map_err(io)?)),
                stdout: Box::new(conn.try_clone().map_err(io)?),
                stderr: Box::new(std::io::sink()),
            };
            let ended = remote.run(v1::run_input::Input::Forward(forward), run_io, &mut |_| {}, None);
            let _ = conn.shutdown(Shutdown::Both);
            ended.map(drop).map_err(SandboxCmdError::from)
        }
    }
}

/// Copies each way between `a` and `b`; each direction's end is passed on
/// (a half-close), and both ends are waited for.
fn splice_both(a: TcpStream, b: TcpStream) -> std::io::Result<()> {
    let (mut a_read, mut b_write) = (a.try_clone()?, b.try_clone()?);
    let upstream = std::thread::spawn(move || {
        let copied = std::io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(Shutdown::Write);
        copied
    });
    let (mut b_read, mut a_write) = (b, a);
    let copied = std::io::copy(&mut b_read, &mut a_write);
    let _ = a_write.shutdown(Shutdown::Write);
    let up = upstream.join().map_err(|_| std::io::Error::other("the relay's thread failed"))?;
    copied.and(up).map(drop)
}

#[cfg(test)]
mod tests {
    use super::parse_ports;

    #[test]
    fn ports_are_port_or_local_colon_port() {
        assert_eq!(parse_ports("8080").ok().map(|p| (p.0, p.1)), Some((8080, 8080)));
        assert_eq!(parse_ports("9000:80").ok().map(|p| (p.0, p.1)), Some((9000, 80)));
        assert_eq!(parse_ports("0:80").ok().map(|p| (p.0, p.1)), Some((0, 80)));
        for bad in ["", "0", "x", "80:", "80:0", "70000", "1:2:3"] {
            let e = parse_ports(bad).expect_err(bad).message;
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }
}
