//! A client's stdio and terminal carried to and from dockerd's attached
//! streams, and the ends of runs and execs as dockerd reports them.
//!
//! Each direction is a thread of its own (the client's descriptors are
//! blocking), driving the async stream through the driver's runtime.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use bollard::container::LogOutput;
use futures_util::{Stream, StreamExt};
use openshell_driver::{DriverError, Watch};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::api::Api;

pub(crate) type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
pub(crate) type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Copies dockerd's output to the client's stdout and stderr (a terminal's
/// output to stdout) until it ends.
pub(crate) fn pump_output(
    rt: tokio::runtime::Handle,
    mut output: Output,
    mut stdout: Option<File>,
    mut stderr: Option<File>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while let Some(Ok(frame)) = rt.block_on(output.next()) {
            let (to, bytes) = match frame {
                LogOutput::StdErr { message } => (stderr.as_mut(), message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => (stdout.as_mut(), message),
                LogOutput::StdIn { .. } => continue,
            };
            if let Some(to) = to
                && to.write_all(&bytes).is_err()
            {
                // The client went away: the rest is in the container's log.
                stdout = None;
                stderr = None;
            }
        }
    })
}

/// Copies the client's input into dockerd's stdin until it ends (then closes
/// that stdin) or `done` is set.
pub(crate) fn pump_input(rt: tokio::runtime::Handle, mut input: Input, from: OwnedFd, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut file = File::from(from);
        let mut buf = vec![0u8; 64 * 1024];
        while !done.load(Ordering::SeqCst) {
            let mut fds = [rustix::event::PollFd::new(&file, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => break,
            }
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if rt.block_on(input.write_all(&buf[..n])).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = rt.block_on(input.shutdown());
    });
}

/// A terminal for an exec under Docker: the client gets the master end as with
/// the local driver; its slave end (raw: bytes pass unchanged) is relayed to
/// and from dockerd's terminal, and its size follows the client's.
pub(crate) struct Terminal {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Terminal {
    pub fn open() -> Result<Terminal, DriverError> {
        let pty = nix::pty::openpty(None, None).map_err(|e| DriverError::failed(format!("a terminal: {e}")))?;
        let mut attrs =
            nix::sys::termios::tcgetattr(&pty.slave).map_err(|e| DriverError::failed(format!("a terminal: {e}")))?;
        nix::sys::termios::cfmakeraw(&mut attrs);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &attrs)
            .map_err(|e| DriverError::failed(format!("a terminal: {e}")))?;
        Ok(Terminal { master: pty.master, slave: pty.slave })
    }
}

/// Follows the size of `slave` (set by the client on its master end) into the
/// exec's terminal until `done`.
pub(crate) fn follow_size(api: Arc<Api>, exec: String, slave: OwnedFd, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut last = None;
        while !done.load(Ordering::SeqCst) {
            if let Ok(size) = rustix::termios::tcgetwinsize(slave.as_fd())
                && size.ws_row > 0
                && last != Some((size.ws_row, size.ws_col))
            {
                last = Some((size.ws_row, size.ws_col));
                let options = bollard::query_parameters::ResizeExecOptions {
                    h: i32::from(size.ws_row),
                    w: i32::from(size.ws_col),
                };
                let _ = api.runtime.block_on(api.docker.resize_exec(&exec, options));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
}

/// The client's stdio as files: stdin, stdout, stderr (any may be missing).
pub(crate) fn split(stdio: openshell_driver::Stdio) -> (Option<OwnedFd>, Option<File>, Option<File>) {
    let mut fds = stdio.into_iter();
    (fds.next(), fds.next().map(File::from), fds.next().map(File::from))
}

/// A container's run: its output delivered, then its exit as dockerd waits for it.
pub(crate) struct RunWatch {
    pub api: Arc<Api>,
    pub container: String,
    pub output: Option<JoinHandle<()>>,
    pub input_done: Arc<AtomicBool>,
    /// The network helper, which ends when the container's process 1 does.
    pub helper: Option<std::process::Child>,
}

/// The exit code dockerd reports for `container` once it is not running.
pub(crate) fn wait_exit(api: &Api, container: &str) -> Result<i32, DriverError> {
    let options = bollard::query_parameters::WaitContainerOptions { condition: "not-running".to_owned() };
    let mut waits = api.docker.wait_container(container, Some(options));
    match api.runtime.block_on(waits.next()) {
        Some(Ok(answer)) => Ok(i32::try_from(answer.status_code).unwrap_or(255)),
        // bollard answers a non-zero exit as this error, with the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
            Ok(i32::try_from(code).unwrap_or(255))
        }
        Some(Err(e)) => Err(api.error("wait", &e)),
        None => Err(DriverError::failed(format!("docker wait {container}: no answer"))),
    }
}

impl Watch for RunWatch {
    fn code(&mut self) -> Result<i32, DriverError> {
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
        let code = wait_exit(&self.api, &self.container);
        self.input_done.store(true, Ordering::SeqCst);
        code
    }

    fn reap(mut self: Box<Self>) -> Result<(), DriverError> {
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.wait();
        }
        Ok(())
    }
}

/// An exec's end: its output delivered, then its exit code from dockerd.
pub(crate) struct ExecWatch {
    pub api: Arc<Api>,
    pub exec: String,
    pub output: Option<JoinHandle<()>>,
    pub done: Arc<AtomicBool>,
}

impl Watch for ExecWatch {
    fn code(&mut self) -> Result<i32, DriverError> {
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
        self.done.store(true, Ordering::SeqCst);
        let inspected = self.api.call("exec inspect", self.api.docker.inspect_exec(&self.exec))?;
        let code = inspected
            .exit_code
            .ok_or_else(|| DriverError::failed(format!("docker exec {}: no exit code", self.exec)))?;
        Ok(i32::try_from(code).unwrap_or(255))
    }

    fn reap(self: Box<Self>) -> Result<(), DriverError> {
        Ok(())
    }
}
