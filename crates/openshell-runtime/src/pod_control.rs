//! The pod egress proxy's control port: signed updates of the pod's network
//! policy (`openshell_policy_update`), one JSON line in and one out per
//! connection. Whatever is in the pod can connect too (the port is on the pod's
//! loopback, where pods/portforward arrives), so the daemon behind [`Apply`]
//! verifies every update; here only the connections are bounded, so that a
//! sandbox holding connections open cannot keep the gateway's updates out.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use openshell_policy_update::Answer;

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What takes one update's line and answers it.
pub trait Apply: Send + Sync + 'static {
    fn apply_update(&self, line: &str) -> Answer;
}

/// Serves `listener` until it fails, each connection on a thread of its own.
pub fn serve(listener: TcpListener, daemon: Arc<dyn Apply>) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let (daemon, open) = (Arc::clone(&daemon), Arc::clone(&open));
        std::thread::spawn(move || {
            if let Err(e) = answer(stream, daemon.as_ref()) {
                eprintln!("pod-proxy: control connection: {e}");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn answer(mut stream: TcpStream, daemon: &dyn Apply) -> std::io::Result<()> {
    use std::io::Write;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let answer = match openshell_policy_update::read_line(&stream) {
        Ok(line) => daemon.apply_update(&line),
        Err(e) => Answer::Refused { reason: format!("reading the update: {e}") },
    };
    let mut line = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}
