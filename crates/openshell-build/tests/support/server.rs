//! A small HTTP/1.1 file server on loopback for hermetic tests: GET and HEAD,
//! `Range: bytes=N-`, and injected failures (cut a response after N bytes once).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Default)]
struct State {
    files: HashMap<String, (Vec<u8>, String)>,
    cut_once: HashMap<String, usize>,
    ignore_range: bool,
    log: Vec<String>,
}

/// A running server; stops when dropped (the listener thread ends with the process).
pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        Server { base: format!("http://{addr}/"), state }
    }

    /// Serves `bytes` at `path` (no leading `/`).
    pub fn add(&self, path: &str, bytes: impl Into<Vec<u8>>, content_type: &str) {
        self.state.lock().expect("lock").files.insert(format!("/{path}"), (bytes.into(), content_type.to_owned()));
    }

    /// The next GET of `path` sends only `n` body bytes, then closes the connection.
    pub fn cut_once(&self, path: &str, n: usize) {
        self.state.lock().expect("lock").cut_once.insert(format!("/{path}"), n);
    }

    pub fn ignore_range(&self, yes: bool) {
        self.state.lock().expect("lock").ignore_range = yes;
    }

    /// Request lines seen so far (`GET /x bytes=10-`).
    pub fn log(&self) -> Vec<String> {
        self.state.lock().expect("lock").log.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
        let mut range_start: Option<usize> = None;
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("range: bytes=") {
                range_start = v.trim().trim_end_matches('-').parse().ok();
            }
            if let Some(v) = lower.strip_prefix("content-length: ") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body_in = vec![0u8; content_length];
        reader.read_exact(&mut body_in)?;
        let (found, cut, ignore_range) = {
            let mut st = state.lock().expect("lock");
            st.log.push(format!("{method} {path}{}", range_start.map(|r| format!(" bytes={r}-")).unwrap_or_default()));
            let found = st.files.get(&path).cloned();
            let cut = if method == "GET" { st.cut_once.remove(&path) } else { None };
            (found, cut, st.ignore_range)
        };
        let Some((bytes, ctype)) = found else {
            write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let start = if ignore_range { None } else { range_start };
        let (status, body) = match start {
            Some(s) if s >= bytes.len() => {
                write!(out, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n")?;
                continue;
            }
            Some(s) => ("206 Partial Content", &bytes[s..]),
            None => ("200 OK", &bytes[..]),
        };
        write!(out, "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n", body.len())?;
        if method == "HEAD" {
            continue;
        }
        if let Some(n) = cut {
            out.write_all(&body[..n.min(body.len())])?;
            out.flush()?;
            return Ok(());
        }
        out.write_all(body)?;
    }
}
