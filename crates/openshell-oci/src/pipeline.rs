//! Bounded in-process pipes between the stages of layer writing (tar → gzip → store),
//! so the stages run on different cores without holding a layer in memory. Buffers
//! are recycled. A stream is complete only when its writer called
//! [`ChunkWriter::finish`]: a producer that failed or panicked makes the reader fail,
//! so a truncated stream is never stored.

use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};

/// Size of the chunks passed between stages.
pub(crate) const CHUNK: usize = 1024 * 1024;
/// Chunks in flight per pipe.
const DEPTH: usize = 4;

enum Msg {
    Data(Vec<u8>),
    End,
}

/// The writing end.
pub(crate) struct ChunkWriter {
    tx: SyncSender<Msg>,
    free: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

/// The reading end.
pub(crate) struct ChunkReader {
    rx: Receiver<Msg>,
    free: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
    total: u64,
}

/// A new pipe.
pub(crate) fn pipe() -> (ChunkWriter, ChunkReader) {
    let (tx, rx) = sync_channel(DEPTH);
    let (free_tx, free_rx) = channel();
    (
        ChunkWriter { tx, free: free_rx, buf: Vec::with_capacity(CHUNK) },
        ChunkReader { rx, free: free_tx, cur: Vec::new(), pos: 0, done: false, total: 0 },
    )
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the next pipeline stage stopped")
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        let next = match self.free.try_recv() {
            Ok(mut v) => {
                v.clear();
                v
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
        };
        let full = std::mem::replace(&mut self.buf, next);
        self.tx.send(Msg::Data(full)).map_err(|_| closed())
    }

    /// Sends what is buffered and marks the stream complete.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx.send(Msg::End).map_err(|_| closed())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ChunkReader {
    /// Bytes delivered so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.cur.len() && !self.done {
            match self.rx.recv() {
                Ok(Msg::Data(v)) => {
                    let old = std::mem::replace(&mut self.cur, v);
                    self.pos = 0;
                    if old.capacity() > 0 {
                        let _ = self.free.send(old);
                    }
                }
                Ok(Msg::End) => self.done = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the previous pipeline stage stopped before the end of the stream",
                    ));
                }
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
        self.total += amt as u64;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let (mut w, mut r) = pipe();
        let t = std::thread::spawn(move || {
            for i in 0..3000u32 {
                w.write_all(&i.to_le_bytes().repeat(300)).expect("write");
            }
            w.finish().expect("finish");
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("read");
        t.join().expect("join");
        assert_eq!(got.len(), 3000 * 1200);
        assert_eq!(r.total(), got.len() as u64);

        let (mut w, mut r) = pipe();
        w.write_all(b"partial").expect("write");
        drop(w);
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err(), "a writer dropped without finish must fail the reader");
    }
}
