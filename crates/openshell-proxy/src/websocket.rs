//! WebSockets on `protocol: websocket` endpoints (RFC 6455): the upgrade
//! request is recognised here and decided like any L7 request; once the
//! upstream has answered `101`, frames are relayed both ways, their headers
//! parsed by `tungstenite` (payloads stream through, never held whole). Each
//! client text message (a text frame and its continuations) is decided at its
//! first frame's header, as `WEBSOCKET_TEXT` on the upgrade path, by the
//! policy generation current at that moment: denied, the client gets a close
//! frame with code 1008 (policy violation) and both sides are closed; the
//! message's bytes never reach the upstream. Binary and control frames pass.
//! When the connection ends, one audit event counts frames and payload bytes
//! each way.

use std::io::Cursor;
use std::time::Duration;

use openshell_policy::{Decision, HttpRequest, Message, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::audit::WebSocketTraffic;
use crate::http1::{self, RequestHead};
use crate::proxy::{Conn, record};

/// Why a request with an `Upgrade` header is not a WebSocket upgrade the proxy relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpgradeError {
    #[error("only WebSocket upgrades are relayed (`Upgrade: websocket`)")]
    NotWebSocket,
    #[error("a WebSocket upgrade is a GET request")]
    NotGet,
    #[error("a WebSocket upgrade needs `Connection: upgrade`")]
    NoConnectionUpgrade,
    #[error("a WebSocket upgrade needs one Sec-WebSocket-Key")]
    NoKey,
    #[error("only WebSocket version 13 is relayed (`Sec-WebSocket-Version: 13`)")]
    Version,
}

/// Whether `req` asks for a WebSocket: `Ok(false)` without an `Upgrade`
/// header, `Err` for an upgrade the proxy does not relay.
pub(crate) fn upgrade(req: &RequestHead) -> Result<bool, UpgradeError> {
    if http1::header(&req.headers, "upgrade").is_none() {
        return Ok(false);
    }
    let keys = req.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")).count();
    let version = http1::header(&req.headers, "sec-websocket-version").map(<[u8]>::trim_ascii);
    if !http1::has_token(&req.headers, "upgrade", "websocket") {
        Err(UpgradeError::NotWebSocket)
    } else if req.method != "GET" {
        Err(UpgradeError::NotGet)
    } else if !http1::has_token(&req.headers, "connection", "upgrade") {
        Err(UpgradeError::NoConnectionUpgrade)
    } else if keys != 1 {
        Err(UpgradeError::NoKey)
    } else if version != Some(b"13".as_slice()) {
        Err(UpgradeError::Version)
    } else {
        Ok(true)
    }
}

/// A frame stream that could not be followed: the connection ends.
#[derive(Debug, thiserror::Error)]
#[error("a WebSocket frame header: {0}")]
pub(crate) struct FrameError(#[from] tungstenite::Error);

/// What one step over a direction's bytes found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bytes of a header still incomplete, held (nothing to forward yet).
    Held,
    /// A complete frame header; `bytes` is the header as sent (to forward
    /// once it is allowed).
    Header { text_start: bool, bytes: Vec<u8> },
    /// Payload bytes, to forward as they are.
    Payload,
}

/// Follows the frames of one direction without holding payloads: where each
/// header is, which frame starts a text message, how much moved.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// A header's bytes so far (at most 14).
    held: Vec<u8>,
    /// Payload bytes left of the current frame.
    remaining: u64,
    pub(crate) frames: u64,
    /// Payload bytes.
    pub(crate) bytes: u64,
}

/// The longest frame header (RFC 6455, 5.2).
const MAX_HEADER: usize = 14;

impl Framer {
    /// Looks at the start of `input`: returns how many of its bytes the step took.
    pub(crate) fn step(&mut self, input: &[u8]) -> Result<(usize, Step), FrameError> {
        if self.remaining > 0 {
            let n = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(input.len());
            self.remaining -= n as u64;
            self.bytes += n as u64;
            return Ok((n, Step::Payload));
        }
        let before = self.held.len();
        let take = input.len().min(MAX_HEADER - before);
        self.held.extend_from_slice(&input[..take]);
        let mut cursor = Cursor::new(self.held.as_slice());
        match FrameHeader::parse(&mut cursor)? {
            None => Ok((take, Step::Held)),
            Some((header, length)) => {
                let end = usize::try_from(cursor.position()).unwrap_or(MAX_HEADER);
                let bytes = self.held[..end].to_vec();
                self.held.clear();
                self.remaining = length;
                self.frames += 1;
                let text_start = header.opcode == OpCode::Data(Data::Text);
                Ok((end - before, Step::Header { text_start, bytes }))
            }
        }
    }

    /// Whether what was forwarded ends at a frame boundary (a frame of the
    /// proxy's own may go next).
    pub(crate) fn at_boundary(&self) -> bool {
        self.remaining == 0
    }
}

/// The close frame a denied message gets: 1008, policy violation.
fn policy_close() -> Vec<u8> {
    let frame = Frame::close(Some(CloseFrame {
        code: CloseCode::Policy,
        reason: "blocked by the sandbox's network policy".into(),
    }));
    let mut out = Vec::with_capacity(64);
    // Writing to a Vec does not fail.
    let _ = frame.format(&mut out);
    out
}

/// The upgraded connection's request, as rules see its messages.
pub(crate) struct Session<'a> {
    /// The upgrade request as decided (host, port, caller, path, query).
    pub(crate) request: Request<'a>,
    pub(crate) idle: Duration,
}

/// How a relayed WebSocket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// A side closed (or went idle).
    Closed,
    /// A client text message was denied; the client got 1008.
    Denied,
    /// A frame header could not be parsed.
    Malformed,
}

impl End {
    fn describe(self) -> &'static str {
        match self {
            End::Closed => "websocket closed",
            End::Denied => "websocket closed with 1008: a client text message was denied",
            End::Malformed => "websocket closed: a frame header could not be parsed",
        }
    }
}

/// One direction's buffer and frame state.
struct Side {
    buf: Vec<u8>,
    framer: Framer,
}

impl Side {
    fn new() -> Side {
        Side { buf: vec![0; 16 * 1024], framer: Framer::default() }
    }
}

/// Relays frames until either side closes, a client text message is denied,
/// or nothing moves for `session.idle`; then records the counts.
pub(crate) async fn relay<C, U>(conn: &Conn, client: &mut BufReader<C>, up: &mut BufReader<U>, session: &Session<'_>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut from_client, mut from_up) = (Side::new(), Side::new());
    let end = loop {
        let step = tokio::select! {
            read = client.read(&mut from_client.buf) => match read {
                Ok(n) if n > 0 => {
                    forward(&mut from_client, n, up.get_mut(), session.idle, || text_allowed(conn, session)).await
                }
                _ => Ok(Some(End::Closed)),
            },
            read = up.read(&mut from_up.buf) => match read {
                Ok(n) if n > 0 => forward(&mut from_up, n, client.get_mut(), session.idle, || true).await,
                _ => Ok(Some(End::Closed)),
            },
            () = tokio::time::sleep(session.idle) => Ok(Some(End::Closed)),
        };
        match step {
            Ok(None) => continue,
            Ok(Some(end)) => break end,
            Err(_) => break End::Closed,
        }
    };
    if end == End::Denied && from_up.framer.at_boundary() {
        let _ = crate::aio::send(client.get_mut(), &policy_close(), session.idle).await;
    }
    let _ = up.get_mut().shutdown().await;
    let _ = client.get_mut().shutdown().await;
    let traffic = WebSocketTraffic {
        client_frames: from_client.framer.frames,
        client_bytes: from_client.framer.bytes,
        server_frames: from_up.framer.frames,
        server_bytes: from_up.framer.bytes,
    };
    crate::proxy::record_websocket(&conn.shared, &session.request, traffic, end.describe());
}

/// Forwards the `n` bytes a side sent, asking `text` about each text
/// message at its first header. `Some(end)`: the relay ends.
async fn forward<W: AsyncWrite + Unpin>(
    side: &mut Side,
    n: usize,
    out: &mut W,
    idle: Duration,
    text: impl Fn() -> bool,
) -> std::io::Result<Option<End>> {
    let mut at = 0;
    while at < n {
        let (used, step) = match side.framer.step(&side.buf[at..n]) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "relaying WebSocket frames");
                return Ok(Some(End::Malformed));
            }
        };
        match step {
            Step::Held => {}
            Step::Payload => crate::aio::send(out, &side.buf[at..at + used], idle).await?,
            Step::Header { text_start, bytes } => {
                if text_start && !text() {
                    return Ok(Some(End::Denied));
                }
                crate::aio::send(out, &bytes, idle).await?;
            }
        }
        at += used;
    }
    Ok(None)
}

/// A client text message decided by the generation current now; a denial
/// (or an audit-allow) is recorded.
fn text_allowed(conn: &Conn, session: &Session<'_>) -> bool {
    let shared = &conn.shared;
    let generation = shared.generation();
    let Some(upgrade) = session.request.http else { return false };
    let http = HttpRequest { message: Message::WebSocketText, ..upgrade };
    let req = Request { http: Some(http), ..session.request };
    let decision: Decision<'_> = generation.engine.decide(&req);
    if decision.verdict != openshell_policy::Verdict::Allow {
        let note = (!decision.is_allowed()).then_some("closed with 1008");
        record(shared, &generation, &req, &decision, note);
    }
    decision.is_allowed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &str) -> RequestHead {
        http1::parse_request(format!("{lines}\r\n\r\n").replace('\n', "\r\n").replace("\r\r", "\r").as_bytes())
            .expect("head")
    }

    const OK: &str = "GET /ws HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: keep-alive, Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13";

    #[test]
    fn upgrades_are_recognised_and_checked() {
        assert_eq!(upgrade(&head(OK)), Ok(true));
        assert_eq!(upgrade(&head("GET /ws HTTP/1.1\nHost: h")), Ok(false));
        assert_eq!(upgrade(&head(&OK.replace("Upgrade: websocket", "Upgrade: h2c"))), Err(UpgradeError::NotWebSocket));
        assert_eq!(upgrade(&head(&OK.replace("GET", "POST"))), Err(UpgradeError::NotGet));
        assert_eq!(
            upgrade(&head(&OK.replace("keep-alive, Upgrade", "keep-alive"))),
            Err(UpgradeError::NoConnectionUpgrade)
        );
        assert_eq!(
            upgrade(&head(&OK.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n", ""))),
            Err(UpgradeError::NoKey)
        );
        assert_eq!(upgrade(&head(&OK.replace("Version: 13", "Version: 8"))), Err(UpgradeError::Version));
    }

    /// A masked client frame.
    fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = Frame::message(payload.to_vec(), opcode, fin);
        f.header_mut().mask = Some([1, 2, 3, 4]);
        let mut out = Vec::new();
        f.format(&mut out).expect("format");
        out
    }

    /// Steps over `input` fed in pieces of `piece` bytes; the headers seen.
    fn walk(input: &[u8], piece: usize) -> (Vec<bool>, Framer, usize) {
        let mut framer = Framer::default();
        let (mut headers, mut payload) = (Vec::new(), 0);
        for chunk in input.chunks(piece) {
            let mut at = 0;
            while at < chunk.len() {
                let (used, step) = framer.step(&chunk[at..]).expect("frames");
                match step {
                    Step::Header { text_start, .. } => headers.push(text_start),
                    Step::Payload => payload += used,
                    Step::Held => {}
                }
                at += used;
            }
        }
        (headers, framer, payload)
    }

    #[test]
    fn frames_are_followed_whatever_the_read_sizes() {
        let big = vec![7u8; 70_000];
        let mut input = frame(OpCode::Data(Data::Text), false, b"hel");
        input.extend(frame(OpCode::Data(Data::Continue), true, b"lo"));
        input.extend(frame(OpCode::Data(Data::Binary), true, &big));
        input.extend(frame(OpCode::Data(Data::Text), true, b""));
        for piece in [1, 2, 3, 13, 4096, input.len()] {
            let (headers, framer, payload) = walk(&input, piece);
            assert_eq!(headers, vec![true, false, false, true], "piece {piece}");
            assert_eq!((framer.frames, framer.bytes), (4, 70_005), "piece {piece}");
            assert_eq!(payload, 70_005);
            assert!(framer.at_boundary());
        }
    }

    #[test]
    fn a_reserved_opcode_is_an_error() {
        let mut framer = Framer::default();
        assert!(framer.step(&[0x83, 0x80, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn the_policy_close_frame_is_1008() {
        let bytes = policy_close();
        assert_eq!(bytes[0], 0x88, "FIN + close");
        assert_eq!(&bytes[2..4], &1008u16.to_be_bytes());
    }
}
