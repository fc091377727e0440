//! Just enough HTTP/1.1 to relay requests one at a time: read a message head,
//! work out how its body is framed, copy the body through without buffering it.

use std::io::{self, BufRead, Write};

/// The largest message head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// Why a message head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("the message head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("the connection closed inside a message head")]
    Truncated,
    #[error("malformed message head")]
    Malformed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one head (through the blank line). `Ok(None)`: the peer closed
/// cleanly before sending anything.
pub fn read_head_bytes<R: BufRead + ?Sized>(r: &mut R) -> Result<Option<Vec<u8>>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    loop {
        let before = head.len();
        let n = read_line_into(r, &mut head, MAX_HEAD)?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(HeadError::Truncated) };
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // A stray empty line between messages (RFC 9112 §2.2): skip it.
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

/// Appends one line (with its `\n`) to `out`, refusing to grow past `limit`.
fn read_line_into<R: BufRead + ?Sized>(r: &mut R, out: &mut Vec<u8>, limit: usize) -> Result<usize, HeadError> {
    let mut total = 0;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A TLS peer that closes without close_notify ends the stream too.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && out.is_empty() => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > limit {
            return Err(HeadError::TooLarge);
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

pub fn parse_request(bytes: &[u8]) -> Result<RequestHead, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(HeadError::Malformed),
    }
    Ok(RequestHead {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        version: req.version.unwrap_or(1),
        headers: req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
    })
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

pub fn parse_response(bytes: &[u8]) -> Result<ResponseHead, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(HeadError::Malformed),
    }
    Ok(ResponseHead {
        status: resp.code.unwrap_or_default(),
        version: resp.version.unwrap_or(1),
        headers: resp.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
    })
}

/// The value of the first header called `name`.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

/// Whether any `name` header lists `token` (comma-separated, case-insensitive).
pub fn has_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Appends `name: value` lines for `headers`, leaving out those named in
/// `skip` (lower case).
pub fn push_headers(out: &mut Vec<u8>, headers: &[(String, Vec<u8>)], skip: &[&str]) {
    for (name, value) in headers {
        if skip.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// A complete response with a JSON body (the proxy's own answers).
pub fn json_response(status: u16, body: &serde_json::Value, close: bool) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Error",
    };
    let body = body.to_string();
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// A request's body framing; `Err` names an ambiguity the proxy refuses
/// (the ones request smuggling is made of).
pub fn request_body(headers: &[(String, Vec<u8>)]) -> Result<Body, &'static str> {
    let te = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    let lengths: Vec<&[u8]> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.as_slice()).collect();
    match (te, lengths.as_slice()) {
        (true, []) if has_token(headers, "transfer-encoding", "chunked") => Ok(Body::Chunked),
        (true, []) => Err("a request body must be chunked when Transfer-Encoding is sent"),
        (true, _) => Err("a request with both Transfer-Encoding and Content-Length"),
        (false, []) => Ok(Body::Empty),
        (false, [one]) => parse_length(one).map(|n| if n == 0 { Body::Empty } else { Body::Length(n) }),
        (false, _) => Err("a request with more than one Content-Length"),
    }
}

fn parse_length(v: &[u8]) -> Result<u64, &'static str> {
    let s = std::str::from_utf8(v).map_err(|_| "Content-Length is not a number")?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Content-Length is not a number");
    }
    s.parse().map_err(|_| "Content-Length is too large")
}

/// A response's body framing, given the request's method.
pub fn response_body(method: &str, head: &ResponseHead) -> Body {
    if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&head.status) || matches!(head.status, 204 | 304) {
        return Body::Empty;
    }
    if has_token(&head.headers, "transfer-encoding", "chunked") {
        return Body::Chunked;
    }
    match header(&head.headers, "content-length").map(parse_length) {
        Some(Ok(n)) => Body::Length(n),
        _ => Body::UntilClose,
    }
}

/// Copies a body from `r` to `w` as framed, flushing as data arrives (so
/// streamed responses, such as server-sent events, are not held back).
pub fn copy_body<R: BufRead + ?Sized, W: Write + ?Sized>(r: &mut R, w: &mut W, body: Body) -> io::Result<u64> {
    match body {
        Body::Empty => Ok(0),
        Body::Length(n) => copy_exact(r, w, n),
        Body::UntilClose => copy_exact(r, w, u64::MAX),
        Body::Chunked => copy_chunked(r, w),
    }
}

/// Copies `n` bytes (`u64::MAX`: until the end of the stream).
fn copy_exact<R: BufRead + ?Sized, W: Write + ?Sized>(r: &mut R, w: &mut W, n: u64) -> io::Result<u64> {
    let mut left = n;
    while left > 0 {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && n == u64::MAX => break,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if n == u64::MAX {
                break;
            }
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early"));
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        w.write_all(&buf[..take])?;
        r.consume(take);
        left -= take as u64;
        w.flush()?;
    }
    Ok(n.saturating_sub(left))
}

fn copy_chunked<R: BufRead + ?Sized, W: Write + ?Sized>(r: &mut R, w: &mut W) -> io::Result<u64> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    let mut total = 0;
    let mut line = Vec::with_capacity(64);
    loop {
        line.clear();
        match read_line_into(r, &mut line, 4096) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the chunked body ended early")),
            Ok(_) => {}
            Err(HeadError::Io(e)) => return Err(e),
            Err(_) => return Err(bad("chunk size line too long")),
        }
        let size_text = line.split(|&b| b == b';' || b == b'\r' || b == b'\n').next().unwrap_or_default();
        let size_text = std::str::from_utf8(size_text).map_err(|_| bad("bad chunk size"))?.trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        w.write_all(&line)?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                line.clear();
                match read_line_into(r, &mut line, 4096) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no end to the chunked body")),
                    Ok(_) => {}
                    Err(HeadError::Io(e)) => return Err(e),
                    Err(_) => return Err(bad("trailer line too long")),
                }
                w.write_all(&line)?;
                if line == b"\r\n" || line == b"\n" {
                    w.flush()?;
                    return Ok(total);
                }
            }
        }
        copy_exact(r, w, size)?;
        total += size;
        line.clear();
        match read_line_into(r, &mut line, 4096) {
            Ok(_) if line == b"\r\n" || line == b"\n" => w.write_all(&line)?,
            Ok(_) | Err(_) => return Err(bad("chunk not followed by CRLF")),
        }
        w.flush()?;
    }
}

/// Splits a query string into percent-decoded `(key, value)` pairs.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn heads_end_at_the_blank_line_and_skip_leading_blank_lines() {
        let mut r = Cursor::new(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nrest".to_vec());
        let head = read_head_bytes(&mut r).expect("head").expect("some");
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse_request(&head).expect("parse").target, "/");
        let mut empty = Cursor::new(Vec::new());
        assert!(read_head_bytes(&mut empty).expect("eof").is_none());
        let mut cut = Cursor::new(b"GET / HTTP/1.1\r\nHo".to_vec());
        assert!(matches!(read_head_bytes(&mut cut), Err(HeadError::Truncated)));
        let mut huge = Cursor::new(vec![b'a'; MAX_HEAD + 10]);
        assert!(matches!(read_head_bytes(&mut huge), Err(HeadError::TooLarge)));
    }

    #[test]
    fn request_framing_refuses_ambiguity() {
        assert_eq!(request_body(&h(&[])), Ok(Body::Empty));
        assert_eq!(request_body(&h(&[("Content-Length", "5")])), Ok(Body::Length(5)));
        assert_eq!(request_body(&h(&[("Transfer-Encoding", "chunked")])), Ok(Body::Chunked));
        assert!(request_body(&h(&[("Transfer-Encoding", "chunked"), ("Content-Length", "5")])).is_err());
        assert!(request_body(&h(&[("Content-Length", "5"), ("Content-Length", "6")])).is_err());
        assert!(request_body(&h(&[("Content-Length", "-1")])).is_err());
        assert!(request_body(&h(&[("Transfer-Encoding", "gzip")])).is_err());
    }

    #[test]
    fn response_framing() {
        let resp = |status, hs: &[(&str, &str)]| ResponseHead { status, version: 1, headers: h(hs) };
        assert_eq!(response_body("GET", &resp(200, &[("Content-Length", "3")])), Body::Length(3));
        assert_eq!(response_body("HEAD", &resp(200, &[("Content-Length", "3")])), Body::Empty);
        assert_eq!(response_body("GET", &resp(204, &[])), Body::Empty);
        assert_eq!(response_body("GET", &resp(200, &[("Transfer-Encoding", "chunked")])), Body::Chunked);
        assert_eq!(response_body("GET", &resp(200, &[])), Body::UntilClose);
    }

    #[test]
    fn chunked_bodies_are_copied_verbatim_and_end_at_the_last_chunk() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT".to_vec();
        let mut r = Cursor::new(wire.clone());
        let mut out = Vec::new();
        assert_eq!(copy_body(&mut r, &mut out, Body::Chunked).expect("copy"), 9);
        assert_eq!(out, &wire[..wire.len() - 4]);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut r, &mut rest).expect("rest");
        assert_eq!(rest, "NEXT");
        let mut bad = Cursor::new(b"zz\r\n".to_vec());
        assert!(copy_body(&mut bad, &mut Vec::new(), Body::Chunked).is_err());
        let mut short = Cursor::new(b"abc".to_vec());
        assert!(copy_body(&mut short, &mut Vec::new(), Body::Length(5)).is_err());
    }

    #[test]
    fn queries_are_split_and_decoded() {
        assert_eq!(
            query_pairs("a=1&b=%2Fx&flag&&c="),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "/x".into()),
                ("flag".into(), String::new()),
                ("c".into(), String::new())
            ]
        );
    }

    #[test]
    fn tokens() {
        let hs = h(&[("Connection", "keep-alive, Close")]);
        assert!(has_token(&hs, "connection", "close"));
        assert!(!has_token(&hs, "connection", "upgrade"));
    }
}
