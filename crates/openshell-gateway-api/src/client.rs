//! The client side: connecting to the gateway (starting it on first use) and
//! relaying a sandbox terminal.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{ApiError, ErrorCode};
use crate::proto::{API_VERSION, Request, Response};
use crate::{GatewayDir, wire};

/// Why talking to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no gateway runs for {0} (start one with `openshell gateway run`, or let any sandbox command start it)")]
    NotRunning(std::path::PathBuf),
    #[error("the gateway did not start: {0}")]
    Start(String),
    #[error("gateway connection: {0}")]
    Wire(#[from] wire::WireError),
    #[error("the gateway closed the connection without an answer")]
    NoAnswer,
    /// The gateway's answer was an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A remote gateway could not be reached or refused the connection.
    #[error("{0}")]
    Remote(String),
}

impl ClientError {
    /// The stable code of this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Api(e) => e.code,
            ClientError::NotRunning(_)
            | ClientError::Start(_)
            | ClientError::Wire(_)
            | ClientError::NoAnswer
            | ClientError::Remote(_) => ErrorCode::Unavailable,
        }
    }
}

/// A [`crate::proto::Envelope`] as sent (borrowing its request).
#[derive(serde::Serialize)]
struct Outgoing<'a> {
    api: u32,
    request: &'a Request,
}

pub struct Client {
    conn: OwnedFd,
}

fn connect_once(socket: &Path) -> Result<OwnedFd, rustix::io::Errno> {
    wire::connect(socket)
}

impl Client {
    /// Connects to the gateway of `dir`; with `start`, starts `exe gateway run`
    /// (detached, logging to the directory's gateway.log) when none runs.
    pub fn connect(dir: &GatewayDir, exe: &Path, start: bool) -> Result<Client, ClientError> {
        let socket = dir.socket();
        match connect_once(&socket) {
            Ok(conn) => return Ok(Client { conn }),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::CONNREFUSED) if start => {}
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::CONNREFUSED) => {
                return Err(ClientError::NotRunning(dir.0.clone()));
            }
            Err(e) => return Err(ClientError::Wire(wire::WireError::Io(e.into()))),
        }
        let start_err = ClientError::Start;
        std::fs::create_dir_all(&dir.0).map_err(|e| start_err(format!("{}: {e}", dir.0.display())))?;
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| start_err(format!("{}: {e}", dir.0.display())))?;
        let log_path = dir.log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| start_err(format!("{}: {e}", log_path.display())))?;
        let log2 = log.try_clone().map_err(|e| start_err(format!("{}: {e}", log_path.display())))?;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(exe)
            .args(["gateway", "run"])
            // Only what a gateway reads: a caller's credential variables
            // (`provider create --credential NAME`) never follow it.
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| gateway_reads(k)))
            .env("OPENSHELL_GATEWAY_DIR", &dir.0)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| start_err(format!("{} gateway run: {e}", exe.display())))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(conn) = connect_once(&socket) {
                return Ok(Client { conn });
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Another client's gateway may have won the race for the lock.
                if let Ok(conn) = connect_once(&socket) {
                    return Ok(Client { conn });
                }
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(start_err(format!("it exited ({status}): {}", tail.join("\n"))));
            }
            if Instant::now() > deadline {
                return Err(start_err(format!(
                    "no socket at {} after 10 s; see {}",
                    socket.display(),
                    log_path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn send(&self, request: &Request, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        Ok(wire::send(&self.conn, &Outgoing { api: API_VERSION, request }, fds)?)
    }

    /// Sends one more message of a request (an upload's [`crate::proto::BlobFollows`]).
    pub fn send_part<T: serde::Serialize>(&self, part: &T, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        Ok(wire::send(&self.conn, part, fds)?)
    }

    /// The next response (with descriptors); an `Output` response is followed by
    /// its bytes, read with [`Client::output`].
    pub fn recv(&self) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        wire::recv(&self.conn)?.ok_or(ClientError::NoAnswer)
    }

    pub fn output(&self) -> Result<Vec<u8>, ClientError> {
        Ok(wire::recv_bytes(&self.conn)?.ok_or(ClientError::NoAnswer)?.0)
    }

    /// Sends `request` and returns its one answer (for requests that have one);
    /// an `Error` answer is [`ClientError::Api`].
    pub fn call(&self, request: &Request) -> Result<Response, ClientError> {
        self.send(request, &[])?;
        match self.recv()?.0 {
            Response::Error { error } => Err(ClientError::Api(error)),
            other => Ok(other),
        }
    }
}

/// Relays the caller's terminal to a sandbox terminal's master end until the
/// gateway's next message (the exit) arrives: raw mode while it lasts, the
/// window size kept in step (SIGWINCH).
pub fn relay_terminal(client: &Client, master: OwnedFd) -> Result<(Response, Vec<OwnedFd>), ClientError> {
    let stdin = std::io::stdin();
    let saved = rustix::termios::tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
    }
    let resize = |master: BorrowedFd<'_>| {
        if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) {
            let _ = rustix::termios::tcsetwinsize(master, size);
        }
    };
    resize(master.as_fd());
    let to_sandbox = master.try_clone().ok().map(std::fs::File::from);
    let from_sandbox = master.try_clone().ok().map(std::fs::File::from);
    if let Some(mut to) = to_sandbox {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    let output = from_sandbox.map(|mut from| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdout = std::io::stdout();
            // EIO once the process and its children closed the terminal.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()).is_err() {
                    break;
                }
            }
        })
    });
    if let Ok(master_for_signals) = master.try_clone()
        && let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
    {
        std::thread::spawn(move || {
            for _ in signals.forever() {
                resize(master_for_signals.as_fd());
            }
        });
    }
    drop(master);
    let answer = client.recv();
    if let Some(handle) = output {
        // The process is gone: what it wrote is in the terminal's buffer, drained here.
        let deadline = Instant::now() + Duration::from_millis(500);
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if let Some(saved) = &saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, saved);
    }
    answer
}

/// The variables an auto-started gateway keeps from its caller's environment: its
/// own (`OPENSHELL_*`), logging (`RUST_LOG`, `RUST_BACKTRACE`), where things are
/// (`PATH`, `HOME`, `TMPDIR`, `XDG_*`), locale, and the system's TLS roots
/// (`SSL_CERT_FILE`, `SSL_CERT_DIR`: upstream verification reads them).
fn gateway_reads(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else { return false };
    const EXACT: &[&str] =
        &["PATH", "HOME", "TMPDIR", "LANG", "RUST_LOG", "RUST_BACKTRACE", "SSL_CERT_FILE", "SSL_CERT_DIR"];
    EXACT.contains(&name) || ["OPENSHELL_", "XDG_", "LC_"].iter().any(|p| name.starts_with(p))
}
