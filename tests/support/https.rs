//! HTTPS in front of the tests' own servers: a test CA (standing in for the
//! public ones), one certificate for every name served, requests routed by the
//! Host header to a plain loopback [`Server`](super::server::Server) or to
//! `git http-backend` (CGI). The listener is bound by the caller, typically
//! inside a network namespace the test created.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use openshell_proxy::http1;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// A certificate authority of the test's own (shared with the proxy's tests).
#[allow(unused_imports)]
pub use super::proxy_common::TestCa;

/// Where requests for one host go.
#[derive(Clone)]
pub enum Route {
    /// A plain HTTP server on loopback (requests forwarded as they came).
    Plain(SocketAddr),
    /// `git http-backend` serving the repositories under this directory.
    Git(PathBuf),
}

/// Serves HTTPS on `listener` until the process ends.
pub fn serve(listener: TcpListener, config: Arc<ServerConfig>, routes: HashMap<String, Route>) {
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            let routes = Arc::clone(&routes);
            std::thread::spawn(move || connection(tcp, config, &routes));
        }
    });
}

type Tls = BufReader<StreamOwned<ServerConnection, TcpStream>>;

fn connection(tcp: TcpStream, config: Arc<ServerConfig>, routes: &HashMap<String, Route>) {
    let Ok(conn) = ServerConnection::new(config) else { return };
    let mut tls: Tls = BufReader::new(StreamOwned::new(conn, tcp));
    while let Ok(Some(head_bytes)) = http1::read_head_bytes(&mut tls) {
        let Ok(head) = http1::parse_request(&head_bytes) else { return };
        let Ok(framing) = http1::request_body(&head.headers) else { return };
        let mut body = Vec::new();
        if http1::copy_body(&mut tls, &mut body, framing).is_err() {
            return;
        }
        let host = http1::header(&head.headers, "host")
            .map(|h| String::from_utf8_lossy(h).split(':').next().unwrap_or_default().to_ascii_lowercase())
            .unwrap_or_default();
        let response = match routes.get(&host) {
            Some(Route::Plain(addr)) => forward(*addr, &head_bytes, &body),
            Some(Route::Git(root)) => git(root, &head, dechunk(framing, &body)),
            None => Ok(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()),
        };
        let response = response.unwrap_or_else(|e| {
            format!("HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\n\r\n{e}", e.len()).into_bytes()
        });
        let out = tls.get_mut();
        if out.write_all(&response).and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

/// The body without chunked framing.
fn dechunk(framing: http1::Body, raw: &[u8]) -> Vec<u8> {
    if framing != http1::Body::Chunked {
        return raw.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    out
}

/// One request to a plain loopback server, its whole response back.
fn forward(addr: SocketAddr, head: &[u8], body: &[u8]) -> Result<Vec<u8>, String> {
    let mut up = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    up.write_all(head).and_then(|()| up.write_all(body)).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(up);
    let bytes = http1::read_head_bytes(&mut reader).map_err(|e| e.to_string())?.ok_or("no response")?;
    let parsed = http1::parse_response(&bytes).map_err(|e| e.to_string())?;
    let mut out = bytes;
    http1::copy_body(&mut reader, &mut out, http1::response_body("GET", &parsed)).map_err(|e| e.to_string())?;
    Ok(out)
}

/// One request through `git http-backend` (CGI/1.1), answered with a length.
fn git(root: &std::path::Path, head: &http1::RequestHead, body: Vec<u8>) -> Result<Vec<u8>, String> {
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let header = |name: &str| http1::header(&head.headers, name).map(|v| String::from_utf8_lossy(v).into_owned());
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &head.method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "10.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string());
    for (cgi, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("GIT_PROTOCOL", "git-protocol"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
    ] {
        if let Some(v) = header(name) {
            cmd.env(cgi, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("git http-backend (install git): {e}"))?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let mut output = Vec::new();
    child.stdout.take().ok_or("stdout")?.read_to_end(&mut output).map_err(|e| e.to_string())?;
    let _ = writer.join();
    let _ = child.wait();
    let split = output.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let split = split.or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
    let (end, body_at) = split.ok_or("git http-backend printed no header")?;
    let cgi_head = String::from_utf8_lossy(&output[..end]).into_owned();
    let mut status = "200 OK".to_owned();
    let mut response_head = String::new();
    for line in cgi_head.lines() {
        match line.split_once(':') {
            Some((n, v)) if n.eq_ignore_ascii_case("status") => status = v.trim().to_owned(),
            Some(_) => {
                response_head.push_str(line.trim_end());
                response_head.push_str("\r\n");
            }
            None => {}
        }
    }
    let body = &output[body_at..];
    let mut out = format!("HTTP/1.1 {status}\r\n{response_head}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    Ok(out)
}
