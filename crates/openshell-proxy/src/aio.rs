//! The proxy's reads and writes on tokio: a message head or a body through
//! `http1`'s framing, every wait bounded by a timeout.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::{Instant, timeout, timeout_at};

use crate::http1::{Body, BodyDecoder, BodyError, HeadError, HeadScanner, Kind, Piece};

/// Why a body could not be copied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("nothing moved for {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl CopyError {
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self, CopyError::Idle(_))
    }
}

/// Reads one head. The first byte may take up to `first` (else
/// [`HeadError::Idle`]); from then on the whole head must arrive within
/// `whole` (a slow sender is cut off). `Ok(None)`: the peer closed before a
/// head began.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    kind: Kind,
    first: Duration,
    whole: Duration,
) -> Result<Option<Vec<u8>>, HeadError> {
    let mut scanner = HeadScanner::new(kind);
    let mut head = Vec::new();
    let mut deadline = Instant::now() + first;
    loop {
        let filled = match timeout_at(deadline, r.fill_buf()).await {
            Err(_) if head.is_empty() => return Err(HeadError::Idle(first)),
            Err(_) => return Err(HeadError::Timeout(whole)),
            Ok(filled) => filled,
        };
        let buf = match filled {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && head.is_empty() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            return if head.len() == scanner.start() { Ok(None) } else { Err(HeadError::Truncated) };
        }
        if head.is_empty() {
            deadline = Instant::now() + whole;
        }
        let (used, done) = scanner.take(&mut head, buf)?;
        r.consume(used);
        if done.is_some() {
            return Ok(done);
        }
    }
}

/// Copies a body from `r` to `w` as framed (chunked bodies re-encoded),
/// showing its payload to `observe`; each read and write may wait up to
/// `idle`. Returns the payload's length.
pub(crate) async fn copy_body<R, W>(
    r: &mut BufReader<R>,
    w: &mut W,
    body: Body,
    idle: Duration,
    observe: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut decoder = BodyDecoder::new(body);
    let mut total = 0;
    loop {
        if decoder.is_done() || r.buffer().is_empty() {
            // About to wait (or done): what was written goes out now.
            bounded(idle, w.flush()).await?;
        }
        if decoder.is_done() {
            return Ok(total);
        }
        let buf = match bounded(idle, r.fill_buf()).await {
            Ok(b) => b,
            Err(CopyError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => &[],
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            decoder.finish()?;
            bounded(idle, w.flush()).await?;
            return Ok(total);
        }
        let (used, piece) = decoder.decode(buf)?;
        match piece {
            Some(Piece::Data(data)) => {
                observe(data);
                bounded(idle, w.write_all(data)).await?;
                total += data.len() as u64;
            }
            Some(Piece::Framing(bytes)) => bounded(idle, w.write_all(&bytes)).await?,
            Some(Piece::Done) | None => {}
        }
        r.consume(used);
    }
}

/// Reads and drops a body; `false` when it cannot be delimited or does not
/// arrive in time (the connection must then close).
pub(crate) async fn drain<R: AsyncRead + Unpin>(r: &mut BufReader<R>, body: Body, idle: Duration) -> bool {
    copy_body(r, &mut tokio::io::sink(), body, idle, &mut |_| {}).await.is_ok()
}

/// Writes `bytes` and flushes, within `idle`.
pub(crate) async fn send<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, bytes: &[u8], idle: Duration) -> io::Result<()> {
    let sent = timeout(idle, async {
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await;
    sent.unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "the peer took nothing")))
}

async fn bounded<T>(idle: Duration, f: impl Future<Output = io::Result<T>>) -> Result<T, CopyError> {
    match timeout(idle, f).await {
        Ok(r) => r.map_err(CopyError::Io),
        Err(_) => Err(CopyError::Idle(idle)),
    }
}

/// A body's payload, pulled piece by piece (framing left out).
pub(crate) struct Payload {
    decoder: BodyDecoder,
    /// Bytes of the last piece handed out, consumed on the next pull.
    used: usize,
}

impl Payload {
    pub(crate) fn new(body: Body) -> Payload {
        Payload { decoder: BodyDecoder::new(body), used: 0 }
    }

    /// The next payload bytes (borrowed from the reader's buffer); `None` at
    /// the end of the body. Each read may wait up to `idle`.
    pub(crate) async fn next<'r, R: AsyncRead + Unpin>(
        &mut self,
        r: &'r mut BufReader<R>,
        idle: Duration,
    ) -> Result<Option<&'r [u8]>, CopyError> {
        std::pin::Pin::new(&mut *r).consume(std::mem::take(&mut self.used));
        loop {
            if self.decoder.is_done() {
                return Ok(None);
            }
            let buf = match bounded(idle, r.fill_buf()).await {
                Ok(b) => b,
                Err(CopyError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => &[],
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                self.decoder.finish()?;
                return Ok(None);
            }
            let (used, piece) = self.decoder.decode(buf)?;
            if let Some(Piece::Data(_)) = piece {
                self.used = used;
                let buf = r.buffer();
                return Ok(Some(&buf[..used]));
            }
            std::pin::Pin::new(&mut *r).consume(used);
        }
    }
}
