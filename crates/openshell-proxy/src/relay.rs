//! Plain tunnels (CONNECT without inspection, raw TCP): this process reads
//! what one side sent and writes it to the other, in large reads.
//!
//! Why not splice(2): socket → pipe → socket in the kernel carried 54–64 % of
//! a direct connection's throughput in `cargo xtask bench proxy` (1 MiB pipes,
//! the most `pipe-max-size` allows by default), where copying through a 4 MiB
//! buffer carried 85–92 % in the same runs (README has them). One read takes
//! everything the socket holds, so the relay wakes up far less often than a
//! splice that moves at most a pipe's worth.
//!
//! After each bulk write the relay yields its thread, so that the reader it
//! woke can run ([`let_the_reader_run`]).
//!
//! A direction holds no buffer while it waits, so an idle tunnel costs its two
//! sockets only. Reads start in a small buffer; a direction whose read filled
//! one is moving bulk data and borrows a large buffer from [`Buffers`], a
//! pool bounded per proxy ([`LARGE_LENT`] lent at once, [`LARGE_KEPT`] kept
//! when free), and gives it back whenever it would wait.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A read buffer for a direction that is not (or not yet) moving bulk data.
const SMALL: usize = 64 * 1024;
/// A bulk direction's read buffer.
const LARGE: usize = 4 << 20;
/// Large buffers lent at once per proxy (32 MiB); further bulk directions
/// copy through small buffers.
const LARGE_LENT: usize = 8;
/// Free large buffers kept for the next bulk direction (already faulted in);
/// any more given back are freed.
const LARGE_KEPT: usize = 2;

/// The proxy's large buffers.
#[derive(Default)]
pub(crate) struct Buffers {
    free: Mutex<Vec<Box<[u8]>>>,
    lent: AtomicUsize,
}

impl Buffers {
    /// A buffer to read into: a large one for a bulk direction while the pool
    /// has one to lend, a small one otherwise.
    fn take(&self, bulk: bool) -> Buffer<'_> {
        if bulk && self.lent.fetch_add(1, Ordering::AcqRel) < LARGE_LENT {
            let kept = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let buf = kept.unwrap_or_else(|| vec![0; LARGE].into_boxed_slice());
            return Buffer::Large(Some(buf), self);
        }
        if bulk {
            self.lent.fetch_sub(1, Ordering::AcqRel);
        }
        Buffer::Small(vec![0; SMALL])
    }

    /// Large buffers lent now, and kept free.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.lent.load(Ordering::Acquire), self.free.lock().unwrap_or_else(|e| e.into_inner()).len())
    }
}

/// A borrowed read buffer; a large one goes back to its pool when dropped.
enum Buffer<'p> {
    Small(Vec<u8>),
    Large(Option<Box<[u8]>>, &'p Buffers),
}

impl Buffer<'_> {
    fn bytes(&mut self) -> &mut [u8] {
        match self {
            Buffer::Small(v) => v,
            Buffer::Large(b, _) => b.as_deref_mut().unwrap_or_default(),
        }
    }

    fn is_large(&self) -> bool {
        matches!(self, Buffer::Large(..))
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        if let Buffer::Large(buf, pool) = self {
            let mut free = pool.free.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(buf) = buf.take().filter(|_| free.len() < LARGE_KEPT) {
                free.push(buf);
            }
            pool.lent.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Relays both ways until both sides have ended, or nothing moved either way
/// for `idle`.
pub(crate) async fn relay(a: &TcpStream, b: &TcpStream, buffers: &Buffers, idle: Duration) {
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let moved = Moved { last: &last, started };
    let both = async { tokio::join!(one_way(a, b, buffers, moved), one_way(b, a, buffers, moved)) };
    let watch = async {
        loop {
            let at = started + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= at {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    };
    tokio::select! {
        _ = both => {}
        () = watch => {}
    }
}

/// When bytes last moved either way (milliseconds after `started`).
#[derive(Clone, Copy)]
struct Moved<'a> {
    last: &'a AtomicU64,
    started: Instant,
}

impl Moved<'_> {
    fn now(self) {
        self.last.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Moves what `from` sends to `to`, then ends `to`'s writing side.
async fn one_way(from: &TcpStream, to: &TcpStream, buffers: &Buffers, moved: Moved<'_>) {
    let _ = pump(from, to, buffers, moved).await;
    let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
}

async fn pump(from: &TcpStream, to: &TcpStream, buffers: &Buffers, moved: Moved<'_>) -> io::Result<()> {
    let mut bulk = false;
    loop {
        from.readable().await?;
        let mut buf = buffers.take(bulk);
        loop {
            let n = match from.try_read(buf.bytes()) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            moved.now();
            write_all(to, &buf.bytes()[..n], moved).await?;
            bulk = n >= SMALL;
            if bulk {
                let_the_reader_run();
                if !buf.is_large() {
                    buf = buffers.take(true);
                }
            }
        }
    }
}

/// Called after a bulk write. Writing woke the reader at the other end, and
/// Linux wakes a socket's reader as a "sync" wakeup: it expects the writer to
/// sleep next, so it may queue the reader on the writer's CPU. A relay does not
/// sleep next; it reads the data that came in meanwhile and writes again, and
/// the reader waits behind it while the other CPU can go idle. Yielding lets the
/// reader run now, on the CPU whose cache holds what was just written.
///
/// The tunnel download of `cargo xtask bench proxy` (a build of the bench that
/// stopped after it) on a 2-core VM, 14 pairs of runs in random order: the
/// tunnel carried a median 91.6 % of direct with the yield, 84.4 % without
/// (9 pairs of 14 better), the proxy spending 0.17–0.22 CPU-s per GB against
/// 0.20–0.27. The cost where nothing else wants the CPU is one `sched_yield` per
/// bulk read (64 KiB or more). The L7 path did worse with the same yield after
/// its writes (5 pairs: a median 53.7 % of direct against 57.9 %; it is bound by
/// its CPU there), so it has none.
fn let_the_reader_run() {
    std::thread::yield_now();
}

async fn write_all(to: &TcpStream, mut bytes: &[u8], moved: Moved<'_>) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = to.async_io(Interest::WRITABLE, || to.try_write(bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
        moved.now();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dial = TcpStream::connect(listener.local_addr().expect("addr"));
        let (dialled, accepted) = tokio::join!(dial, listener.accept());
        (dialled.expect("connect"), accepted.expect("accept").0)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// The client end, the server end, and the relay running between them.
    async fn tunnel(buffers: &'static Buffers, idle: Duration) -> (TcpStream, TcpStream, tokio::task::JoinHandle<()>) {
        let (client, near) = pair().await;
        let (far, server) = pair().await;
        let relay = tokio::spawn(async move { relay(&near, &far, buffers, idle).await });
        (client, server, relay)
    }

    #[tokio::test]
    async fn bulk_both_ways_arrives_whole_and_half_closes_carry_over() {
        let buffers: &'static Buffers = Box::leak(Box::default());
        let (mut client, mut server, relay) = tunnel(buffers, Duration::from_secs(30)).await;
        let up = pattern(3 << 20, 1);
        let down = pattern(24 << 20, 7);
        let (up2, down2) = (up.clone(), down.clone());
        let server_side = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.expect("server read");
            assert!(got == up2, "the upload arrived changed ({} bytes)", got.len());
            server.write_all(&down2).await.expect("server write");
        });
        client.write_all(&up).await.expect("client write");
        client.shutdown().await.expect("half close");
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut got)).await;
        read.expect("the server's half close reached the client").expect("client read");
        assert!(got == down, "the download arrived changed ({} bytes)", got.len());
        server_side.await.expect("server");
        relay.await.expect("relay");
        let (lent, free) = buffers.counts();
        assert_eq!(lent, 0, "every large buffer went back");
        assert!((1..=LARGE_KEPT).contains(&free), "{free} large buffers kept; bulk should have borrowed one");
    }

    #[tokio::test]
    async fn an_idle_tunnel_holds_no_large_buffer_and_ends_after_idle() {
        let buffers: &'static Buffers = Box::leak(Box::default());
        let (mut client, mut server, relay) = tunnel(buffers, Duration::from_millis(300)).await;
        client.write_all(b"ping").await.expect("write");
        let mut four = [0; 4];
        server.read_exact(&mut four).await.expect("read");
        assert_eq!(&four, b"ping");
        assert_eq!(buffers.counts(), (0, 0), "a small message borrowed a large buffer");
        tokio::time::timeout(Duration::from_secs(5), relay).await.expect("the idle tunnel ended").expect("relay");
        assert_eq!(server.read(&mut four).await.expect("read"), 0, "the server saw the tunnel end");
    }

    #[test]
    fn the_pool_lends_at_most_its_bound_and_keeps_at_most_its_bound() {
        let buffers = Buffers::default();
        let taken: Vec<Buffer<'_>> = (0..LARGE_LENT + 3).map(|_| buffers.take(true)).collect();
        assert_eq!(taken.iter().filter(|b| b.is_large()).count(), LARGE_LENT);
        assert_eq!(buffers.counts(), (LARGE_LENT, 0));
        drop(taken);
        assert_eq!(buffers.counts(), (0, LARGE_KEPT));
        assert!(!buffers.take(false).is_large());
    }
}
