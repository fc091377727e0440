//! Plain tunnels: bytes move socket → pipe → socket inside the kernel with
//! splice(2), never through this process. tokio says when a socket is
//! readable or writable; the splices themselves never block.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How much a pipe holds (the default is 64 KiB; a larger one moves more per
/// splice; the system's pipe-max-size may refuse, and then the default does).
const PIPE: usize = 1 << 20;

/// A pipe for one direction of a tunnel.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    pub(crate) fn new() -> io::Result<Pipe> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let _ = fcntl_setpipe_size(&write, PIPE);
        Ok(Pipe { read, write })
    }
}

/// Relays both ways until both sides have ended, or nothing moved either way
/// for `idle`.
pub(crate) async fn relay(a: &TcpStream, b: &TcpStream, pipes: [Pipe; 2], idle: Duration) {
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let [ab, ba] = pipes;
    let both = async { tokio::join!(one_way(a, b, &ab, &last, started), one_way(b, a, &ba, &last, started)) };
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

/// Moves what `from` sends to `to`, then ends `to`'s writing side.
async fn one_way(from: &TcpStream, to: &TcpStream, pipe: &Pipe, last: &AtomicU64, started: Instant) {
    let _ = pump(from, to, pipe, last, started).await;
    let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
}

async fn pump(from: &TcpStream, to: &TcpStream, pipe: &Pipe, last: &AtomicU64, started: Instant) -> io::Result<()> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        let n = from.async_io(Interest::READABLE, || Ok(splice(from, None, &pipe.write, None, PIPE, flags)?)).await?;
        if n == 0 {
            return Ok(());
        }
        last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let mut left = n;
        while left > 0 {
            let m = to.async_io(Interest::WRITABLE, || Ok(splice(&pipe.read, None, to, None, left, flags)?)).await?;
            if m == 0 {
                return Ok(());
            }
            left -= m;
            last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
}
