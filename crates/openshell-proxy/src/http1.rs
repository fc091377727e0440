//! Just enough HTTP/1.1 to decide and relay requests one at a time, without
//! I/O of its own: [`HeadScanner`] finds where a message head ends and checks
//! each line as it arrives; [`parse_request`] and [`parse_response`] parse a
//! head (httparse, after those checks); [`request_body`] and [`response_body`]
//! say how a body is framed; [`BodyDecoder`] walks a body as it arrives,
//! handing out its data and the framing to send on, re-encoded (a chunked body
//! leaves with canonical chunk lines: sizes in lower-case hex, no extensions).
//!
//! The proxy reads through these on tokio (see `aio`); [`read_head_bytes`] and
//! [`copy_body`] are the same over blocking readers (tests, tools).
//!
//! Refused, whatever the policy says (the ambiguities request smuggling and
//! virtual-host confusion are made of): header lines that are not UTF-8 (in
//! requests), obs-fold, a CR not followed by LF, a line over [`MAX_LINE`], a
//! head over [`MAX_HEAD`] or with more than [`MAX_HEADERS`] fields; both
//! Transfer-Encoding and Content-Length, a Transfer-Encoding whose last coding
//! is not `chunked`, more than one Content-Length; a chunk size with a sign,
//! spaces or more than 16 digits, a chunk line not ended by CRLF, chunk data
//! not followed by CRLF.

use std::io::{self, BufRead, Write};

/// The largest message head accepted (request line, fields, blank line).
pub const MAX_HEAD: usize = 64 * 1024;
/// The longest single line of a head (or of a chunked body's framing).
pub const MAX_LINE: usize = 16 * 1024;
/// The most header fields a head may have.
pub const MAX_HEADERS: usize = 100;

/// Why a message head was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("the message head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("a header line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("the connection closed inside a message head")]
    Truncated,
    #[error("a header line holds a CR that does not end it")]
    BareCr,
    #[error("a header line is folded onto the previous one (obs-fold)")]
    ObsFold,
    #[error("a header line is not UTF-8")]
    NotUtf8,
    #[error("malformed message head: {0}")]
    Malformed(httparse::Error),
    #[error("malformed message head: {0}")]
    Syntax(&'static str),
    #[error("the message head did not arrive within {0:?}")]
    Timeout(std::time::Duration),
    #[error("nothing arrived for {0:?}")]
    Idle(std::time::Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl HeadError {
    /// The status a request refused for this gets.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::LineTooLong | HeadError::TooManyHeaders => 431,
            HeadError::Timeout(_) | HeadError::Idle(_) => 408,
            _ => 400,
        }
    }
}

/// Whose head is read: requests come from the sandbox and are held to the
/// strictest rules; responses may carry obs-text (bytes over 0x7F) in values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

/// Finds the end of a head in a growing buffer, checking each line once, so a
/// head that arrives a byte at a time costs no more than one that arrives whole.
#[derive(Debug)]
pub struct HeadScanner {
    kind: Kind,
    /// How far the buffer has been scanned.
    pos: usize,
    /// Where the current line starts.
    line: usize,
    /// Where the head starts (after blank lines sent before a request).
    start: usize,
    /// Lines of the head so far.
    lines: usize,
}

impl HeadScanner {
    pub fn new(kind: Kind) -> HeadScanner {
        HeadScanner { kind, pos: 0, line: 0, start: 0, lines: 0 }
    }

    /// Scans `buf` (the same buffer, grown, on every call) from where the last
    /// call stopped. `Some(end)`: the head is `buf[self.start()..end]`.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, HeadError> {
        while self.pos < buf.len() {
            let newline = buf[self.pos..].iter().position(|&b| b == b'\n');
            let Some(i) = newline else {
                self.pos = buf.len();
                return self.check_length().map(|()| None);
            };
            self.pos += i + 1;
            self.check_length()?;
            let line = &buf[self.line..self.pos - 1];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line = self.pos;
            if line.is_empty() {
                if self.lines == 0 {
                    // Blank lines before a request line (RFC 9112 §2.2): skipped.
                    self.start = self.pos;
                    continue;
                }
                return Ok(Some(self.pos));
            }
            self.check_line(line)?;
        }
        Ok(None)
    }

    /// Appends `more` to `head` and scans it: how many bytes of `more` belong
    /// to the head, and the head (without leading blank lines) once complete.
    pub fn take(&mut self, head: &mut Vec<u8>, more: &[u8]) -> Result<(usize, Option<Vec<u8>>), HeadError> {
        let before = head.len();
        head.extend_from_slice(more);
        match self.scan(head)? {
            Some(end) => {
                head.truncate(end);
                let whole = head.split_off(self.start);
                Ok((end - before, Some(whole)))
            }
            None => Ok((more.len(), None)),
        }
    }

    /// Where the head starts in the buffer.
    pub fn start(&self) -> usize {
        self.start
    }

    fn check_length(&self) -> Result<(), HeadError> {
        if self.pos - self.line > MAX_LINE + 2 {
            return Err(HeadError::LineTooLong);
        }
        if self.pos > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        Ok(())
    }

    fn check_line(&mut self, line: &[u8]) -> Result<(), HeadError> {
        if line.len() > MAX_LINE {
            return Err(HeadError::LineTooLong);
        }
        if line.contains(&b'\r') {
            return Err(HeadError::BareCr);
        }
        if self.lines > 0 && matches!(line[0], b' ' | b'\t') {
            return Err(HeadError::ObsFold);
        }
        if self.kind == Kind::Request && std::str::from_utf8(line).is_err() {
            return Err(HeadError::NotUtf8);
        }
        self.lines += 1;
        if self.lines > MAX_HEADERS + 1 {
            return Err(HeadError::TooManyHeaders);
        }
        Ok(())
    }
}

/// Checks that `bytes` is exactly one head (blank lines before it allowed)
/// by [`HeadScanner`]'s rules; the head without the leading blank lines.
fn whole_head(bytes: &[u8], kind: Kind) -> Result<&[u8], HeadError> {
    let mut scanner = HeadScanner::new(kind);
    match scanner.scan(bytes)? {
        Some(end) if end == bytes.len() => Ok(&bytes[scanner.start()..]),
        Some(_) => Err(HeadError::Syntax("bytes after the end of the head")),
        None => Err(HeadError::Truncated),
    }
}

/// Header fields as parsed: names as sent, values as bytes.
pub type Headers = Vec<(String, Vec<u8>)>;

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Headers,
}

/// Parses one request head (as [`read_head_bytes`] returns it), after the
/// line checks of [`HeadScanner`] for requests.
pub fn parse_request(bytes: &[u8]) -> Result<RequestHead, HeadError> {
    let head = whole_head(bytes, Kind::Request)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head).map_err(HeadError::Malformed)? {
        httparse::Status::Complete(n) if n == head.len() => {}
        _ => return Err(HeadError::Truncated),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Truncated);
    };
    Ok(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers: req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
    })
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub version: u8,
    pub headers: Headers,
}

/// Parses one response head, after the line checks of [`HeadScanner`].
pub fn parse_response(bytes: &[u8]) -> Result<ResponseHead, HeadError> {
    let head = whole_head(bytes, Kind::Response)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head).map_err(HeadError::Malformed)? {
        httparse::Status::Complete(n) if n == head.len() => {}
        _ => return Err(HeadError::Truncated),
    }
    let (Some(status), Some(version)) = (resp.code, resp.version) else { return Err(HeadError::Truncated) };
    Ok(ResponseHead {
        status,
        version,
        headers: resp.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
    })
}

/// The value of the first header called `name`.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

/// Why a request's Host header cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the request has no Host header")]
    Missing,
    #[error("the request has more than one Host header")]
    Duplicate,
    #[error("the Host header is not a host[:port]")]
    Malformed,
    #[error("the Host header does not name the request's target")]
    Mismatch,
}

/// The request's one Host header.
pub fn host_header(headers: &[(String, Vec<u8>)]) -> Result<&str, HostError> {
    let mut hosts = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("host"));
    let (_, value) = hosts.next().ok_or(HostError::Missing)?;
    if hosts.next().is_some() {
        return Err(HostError::Duplicate);
    }
    std::str::from_utf8(value).map_err(|_| HostError::Malformed)
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
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
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

/// Why a request's body framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("a request with both Transfer-Encoding and Content-Length")]
    Both,
    #[error("a request body must end with the chunked coding when Transfer-Encoding is sent")]
    NotChunked,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    Http10,
    #[error("a request with more than one Content-Length")]
    ManyLengths,
    #[error("Content-Length is not a number")]
    BadLength,
}

/// A request's body framing; the error names an ambiguity the proxy refuses.
pub fn request_body(headers: &[(String, Vec<u8>)]) -> Result<Body, FramingError> {
    let codings: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    let lengths: Vec<&[u8]> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.as_slice()).collect();
    match (codings.as_slice(), lengths.as_slice()) {
        ([], []) => Ok(Body::Empty),
        ([], [one]) => parse_length(one).map(|n| if n == 0 { Body::Empty } else { Body::Length(n) }),
        ([], _) => Err(FramingError::ManyLengths),
        (_, [_, ..]) => Err(FramingError::Both),
        ([.., last], []) => {
            let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
            if chunked(last) && codings.iter().filter(|c| chunked(c)).count() == 1 {
                Ok(Body::Chunked)
            } else {
                Err(FramingError::NotChunked)
            }
        }
    }
}

/// [`request_body`] for a request of `version`: no Transfer-Encoding in HTTP/1.0.
pub fn request_framing(req: &RequestHead) -> Result<Body, FramingError> {
    if req.version == 0 && header(&req.headers, "transfer-encoding").is_some() {
        return Err(FramingError::Http10);
    }
    request_body(&req.headers)
}

fn parse_length(v: &[u8]) -> Result<u64, FramingError> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(FramingError::BadLength);
    }
    std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or(FramingError::BadLength)
}

/// A response's body framing, given the request's method.
pub fn response_body(method: &str, head: &ResponseHead) -> Body {
    if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&head.status) || matches!(head.status, 204 | 304) {
        return Body::Empty;
    }
    if header(&head.headers, "transfer-encoding").is_some() {
        return match request_body(&head.headers) {
            Ok(Body::Chunked) => Body::Chunked,
            _ => Body::UntilClose,
        };
    }
    let mut lengths = head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    match (lengths.next().map(|(_, v)| parse_length(v)), lengths.next()) {
        (Some(Ok(n)), None) => Body::Length(n),
        _ => Body::UntilClose,
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body ended early")]
    Truncated,
    #[error("bad chunk size line: {0}")]
    ChunkSize(&'static str),
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    #[error("bad trailer field: {0}")]
    Trailer(&'static str),
}

impl From<BodyError> for io::Error {
    fn from(e: BodyError) -> io::Error {
        let kind = if e == BodyError::Truncated { io::ErrorKind::UnexpectedEof } else { io::ErrorKind::InvalidData };
        io::Error::new(kind, e)
    }
}

/// One step through a body.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Payload bytes (a slice of the input).
    Data(&'a [u8]),
    /// Framing to send on before what follows (chunk lines, trailers).
    Framing(Vec<u8>),
    /// The body is complete.
    Done,
}

/// Walks a body as its bytes arrive: payload out as [`Piece::Data`], chunk
/// framing re-encoded canonically as [`Piece::Framing`].
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    /// A chunk line or trailer line being collected.
    line: Vec<u8>,
    /// Bytes of trailers so far.
    trailers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `n` payload bytes left (`u64::MAX` with `until_close`).
    Left {
        n: u64,
        chunk: bool,
    },
    UntilClose,
    ChunkLine,
    /// The CRLF after a chunk's data; `false`: the CR is still to come.
    ChunkEnd {
        cr: bool,
    },
    Trailer,
    Done,
}

impl BodyDecoder {
    pub fn new(body: Body) -> BodyDecoder {
        let state = match body {
            Body::Empty | Body::Length(0) => State::Done,
            Body::Length(n) => State::Left { n, chunk: false },
            Body::Chunked => State::ChunkLine,
            Body::UntilClose => State::UntilClose,
        };
        BodyDecoder { state, line: Vec::new(), trailers: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes the decoder holds (a chunk or trailer line being collected).
    pub fn held(&self) -> usize {
        self.line.capacity()
    }

    /// Takes bytes from `input`: how many were used, and what they came to
    /// (`None`: all of `input` was used and more is needed).
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Piece<'a>>), BodyError> {
        match self.state {
            State::Done => Ok((0, Some(Piece::Done))),
            State::UntilClose if input.is_empty() => Ok((0, None)),
            State::UntilClose => Ok((input.len(), Some(Piece::Data(input)))),
            State::Left { n, chunk } => {
                let take = input.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                let left = n - take as u64;
                self.state = match (left, chunk) {
                    (0, false) => State::Done,
                    (0, true) => State::ChunkEnd { cr: false },
                    (n, chunk) => State::Left { n, chunk },
                };
                if take == 0 {
                    return Ok((0, None));
                }
                Ok((take, Some(Piece::Data(&input[..take]))))
            }
            State::ChunkEnd { cr } => self.chunk_end(input, cr),
            State::ChunkLine | State::Trailer => self.line_step(input),
        }
    }

    /// The input ended: fine only where the body may end.
    pub fn finish(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(BodyError::Truncated),
        }
    }

    fn chunk_end<'a>(&mut self, input: &'a [u8], cr: bool) -> Result<(usize, Option<Piece<'a>>), BodyError> {
        let want: &[u8] = if cr { b"\n" } else { b"\r\n" };
        let n = want.len().min(input.len());
        if input[..n] != want[..n] {
            return Err(BodyError::ChunkEnd);
        }
        if n < want.len() {
            self.state = State::ChunkEnd { cr: n == 1 || cr };
            return Ok((n, None));
        }
        self.state = State::ChunkLine;
        Ok((n, Some(Piece::Framing(b"\r\n".to_vec()))))
    }

    /// Collects a chunk size line or a trailer line (CRLF-terminated).
    fn line_step<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Piece<'a>>), BodyError> {
        let (used, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        if self.line.len() + used > MAX_LINE + 2 {
            return Err(match self.state {
                State::Trailer => BodyError::Trailer("a line is too long"),
                _ => BodyError::ChunkSize("too long"),
            });
        }
        self.line.extend_from_slice(&input[..used]);
        if !complete {
            return Ok((used, None));
        }
        let line = std::mem::take(&mut self.line);
        let Some(content) = line.strip_suffix(b"\r\n") else {
            return Err(match self.state {
                State::Trailer => BodyError::Trailer("not ended by CRLF"),
                _ => BodyError::ChunkSize("not ended by CRLF"),
            });
        };
        let piece = if self.state == State::Trailer { self.trailer(content)? } else { self.size_line(content)? };
        Ok((used, Some(piece)))
    }

    fn size_line<'a>(&mut self, line: &[u8]) -> Result<Piece<'a>, BodyError> {
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(BodyError::ChunkSize("no hexadecimal size"));
        }
        if digits > 16 {
            return Err(BodyError::ChunkSize("the size has more than 16 digits"));
        }
        let ext = &line[digits..];
        if !(ext.is_empty() || ext[0] == b';' && ext.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))) {
            return Err(BodyError::ChunkSize("the size is followed by something other than an extension"));
        }
        let size = line[..digits].iter().fold(0u64, |n, &b| n << 4 | u64::from(hex_value(b)));
        if size == 0 {
            self.state = State::Trailer;
            return Ok(Piece::Framing(b"0\r\n".to_vec()));
        }
        self.state = State::Left { n: size, chunk: true };
        Ok(Piece::Framing(format!("{size:x}\r\n").into_bytes()))
    }

    fn trailer<'a>(&mut self, line: &[u8]) -> Result<Piece<'a>, BodyError> {
        if line.is_empty() {
            self.state = State::Done;
            return Ok(Piece::Framing(b"\r\n".to_vec()));
        }
        self.trailers += line.len() + 2;
        if self.trailers > MAX_HEAD {
            return Err(BodyError::Trailer("the trailers are too large"));
        }
        let name_len = line.iter().position(|&b| b == b':').ok_or(BodyError::Trailer("no colon"))?;
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if name_len == 0 || !line[..name_len].iter().all(token) {
            return Err(BodyError::Trailer("the name is not a token"));
        }
        if line.contains(&b'\r') || std::str::from_utf8(line).is_err() {
            return Err(BodyError::Trailer("a bare CR or bytes that are not UTF-8"));
        }
        let mut out = line.to_vec();
        out.extend_from_slice(b"\r\n");
        Ok(Piece::Framing(out))
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Reads one head (through the blank line) from a blocking reader. `Ok(None)`:
/// the peer closed cleanly before sending anything.
pub fn read_head_bytes<R: BufRead + ?Sized>(r: &mut R) -> Result<Option<Vec<u8>>, HeadError> {
    let mut scanner = HeadScanner::new(Kind::Response);
    let mut head = Vec::with_capacity(1024);
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A TLS peer that closes without close_notify ends the stream too.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && head.is_empty() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            return if head.len() == scanner.start() { Ok(None) } else { Err(HeadError::Truncated) };
        }
        let (used, done) = scanner.take(&mut head, buf)?;
        r.consume(used);
        if done.is_some() {
            return Ok(done);
        }
    }
}

/// Copies a body from `r` to `w` as framed (chunked framing re-encoded),
/// flushing as data arrives (so streamed responses, such as server-sent
/// events, are not held back); returns the payload's length.
pub fn copy_body<R: BufRead + ?Sized, W: Write + ?Sized>(r: &mut R, w: &mut W, body: Body) -> io::Result<u64> {
    let mut total = 0;
    walk_body(r, body, &mut |piece| match piece {
        Piece::Data(data) => {
            total += data.len() as u64;
            w.write_all(data)
        }
        Piece::Framing(bytes) => w.write_all(&bytes),
        Piece::Done => w.flush(),
    })?;
    Ok(total)
}

/// Reads a body's payload (framing left out) from a blocking reader.
pub fn read_payload<R: BufRead + ?Sized>(r: &mut R, body: Body) -> io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    walk_body(r, body, &mut |piece| {
        if let Piece::Data(data) = piece {
            payload.extend_from_slice(data);
        }
        Ok(())
    })?;
    Ok(payload)
}

/// Reads a body from `r`, showing each piece to `each` (then `Done`).
fn walk_body<R: BufRead + ?Sized>(
    r: &mut R,
    body: Body,
    each: &mut dyn FnMut(Piece<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut decoder = BodyDecoder::new(body);
    loop {
        if decoder.is_done() {
            return each(Piece::Done);
        }
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => &[],
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            decoder.finish()?;
            return each(Piece::Done);
        }
        let (used, piece) = decoder.decode(buf)?;
        match piece {
            Some(Piece::Done) => {}
            Some(piece) => each(piece)?,
            // More is needed: what was handed on goes out before the wait.
            None => each(Piece::Done)?,
        }
        r.consume(used);
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
        let mut huge = Cursor::new(vec![b'a'; MAX_LINE + 10]);
        assert!(matches!(read_head_bytes(&mut huge), Err(HeadError::LineTooLong)));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..60 {
            many.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(2000)).as_bytes());
        }
        let mut many = Cursor::new(many);
        assert!(matches!(read_head_bytes(&mut many), Err(HeadError::TooLarge)));
    }

    #[test]
    fn ambiguous_header_lines_are_refused() {
        let refused = |head: &[u8]| parse_request(head).expect_err("refused");
        assert!(matches!(refused(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"), HeadError::ObsFold));
        assert!(matches!(refused(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), HeadError::BareCr));
        assert!(matches!(refused(b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n"), HeadError::NotUtf8));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_LINE));
        assert!(matches!(refused(long.as_bytes()), HeadError::LineTooLong));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(refused(&many), HeadError::TooManyHeaders));
        // Responses may carry obs-text; requests may not.
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nX: caf\xe9\r\n\r\n").is_ok());
    }

    #[test]
    fn the_host_header_is_exactly_one() {
        assert_eq!(host_header(&h(&[("Host", "a.test")])), Ok("a.test"));
        assert_eq!(host_header(&h(&[])), Err(HostError::Missing));
        assert_eq!(host_header(&h(&[("Host", "a"), ("host", "b")])), Err(HostError::Duplicate));
    }

    #[test]
    fn request_framing_refuses_ambiguity() {
        assert_eq!(request_body(&h(&[])), Ok(Body::Empty));
        assert_eq!(request_body(&h(&[("Content-Length", "5")])), Ok(Body::Length(5)));
        assert_eq!(request_body(&h(&[("Transfer-Encoding", "chunked")])), Ok(Body::Chunked));
        assert_eq!(request_body(&h(&[("Transfer-Encoding", "gzip, chunked")])), Ok(Body::Chunked));
        assert!(request_body(&h(&[("Transfer-Encoding", "chunked"), ("Content-Length", "5")])).is_err());
        assert!(request_body(&h(&[("Content-Length", "5"), ("Content-Length", "6")])).is_err());
        assert!(request_body(&h(&[("Content-Length", "5"), ("Content-Length", "5")])).is_err());
        assert!(request_body(&h(&[("Content-Length", "-1")])).is_err());
        assert!(request_body(&h(&[("Content-Length", "+1")])).is_err());
        assert!(request_body(&h(&[("Transfer-Encoding", "gzip")])).is_err());
        assert!(request_body(&h(&[("Transfer-Encoding", "chunked, gzip")])).is_err());
        assert!(request_body(&h(&[("Transfer-Encoding", "chunked, chunked")])).is_err());
        let http10 = parse_request(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").expect("parse");
        assert_eq!(request_framing(&http10), Err(FramingError::Http10));
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
    fn chunked_bodies_are_re_encoded_and_end_at_the_last_chunk() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT".to_vec();
        let mut r = Cursor::new(wire.clone());
        let mut out = Vec::new();
        assert_eq!(copy_body(&mut r, &mut out, Body::Chunked).expect("copy"), 9);
        assert_eq!(out, b"4\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut r, &mut rest).expect("rest");
        assert_eq!(rest, "NEXT");
        let mut short = Cursor::new(b"abc".to_vec());
        assert!(copy_body(&mut short, &mut Vec::new(), Body::Length(5)).is_err());
    }

    #[test]
    fn chunk_sizes_with_signs_spaces_or_overflow_are_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"10000000000000000\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
        ] {
            let err = copy_body(&mut Cursor::new(bad.to_vec()), &mut Vec::new(), Body::Chunked);
            assert!(err.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let max = b"ffffffffffffffff\r\nab".to_vec();
        let err = copy_body(&mut Cursor::new(max), &mut Vec::new(), Body::Chunked).expect_err("ends early");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
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
