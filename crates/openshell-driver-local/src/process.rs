//! The local driver's helper processes, from the gateway's side: one is kept
//! spare, each run or exec gets one, and their ends are watched through their
//! control sockets and pidfds.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;

use nix::sys::signal::Signal;
use openshell_driver::{Applied, DriverError, Pending, Run, Stdio, Watch};
use openshell_gateway_api::wire;
use openshell_sandbox::sandbox::SandboxDir;

use crate::helper::{HelperMessage, pidfd};

/// A running sandbox's processes, as pidfds: signals never reach a process that
/// reused one's number.
#[derive(Debug)]
pub(crate) struct Pidfds {
    pub supervisor: OwnedFd,
    pub init: OwnedFd,
}

/// Sends `signal` through `pidfd`; a process that has ended is not an error.
pub fn signal_pidfd(pidfd: &OwnedFd, signal: Signal) -> Result<(), DriverError> {
    let sig = rustix::process::Signal::from_named_raw(signal as i32)
        .ok_or_else(|| DriverError::failed(format!("signal {signal} has no pidfd form")))?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(DriverError::failed(format!("signalling through a pidfd: {e}"))),
    }
}

/// A helper process waiting for its job.
pub(crate) struct Spare {
    pub child: Child,
    pub control: OwnedFd,
}

/// Starts `exe gateway helper`, logging to `log` until it has a job.
pub(crate) fn spawn_helper(exe: &Path, log: &Path) -> Result<Spare, DriverError> {
    let (ours, theirs) = wire::pair().map_err(DriverError::failed)?;
    let open_log = || std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(DriverError::io(log));
    use std::os::unix::process::CommandExt;
    let child = Command::new(exe)
        .args(["gateway", "helper"])
        .stdin(std::process::Stdio::from(theirs))
        .stdout(open_log()?)
        .stderr(open_log()?)
        .process_group(0)
        .spawn()
        .map_err(|e| DriverError::failed(format!("starting {} gateway helper: {e}", exe.display())))?;
    Ok(Spare { child, control: ours })
}

/// Waits for the end of a run (or of an exec) through its helper.
pub(crate) struct Waiter {
    pub child: Child,
    pub control: OwnedFd,
}

impl Waiter {
    /// The next message from the helper (with its descriptors).
    pub fn next(&self) -> Option<(HelperMessage, Vec<OwnedFd>)> {
        wire::recv::<HelperMessage>(&self.control).ok().flatten()
    }

    /// Ends an unassigned helper: closing its control socket is its signal to
    /// discard the sandbox; then waits for it to finish.
    fn discard(self) {
        let Waiter { mut child, control } = self;
        drop(control);
        let _ = child.wait();
    }
}

impl Watch for Waiter {
    fn code(&mut self) -> Result<i32, DriverError> {
        while let Some((message, _)) = self.next() {
            match message {
                HelperMessage::Exited { code } => return Ok(code),
                HelperMessage::Failed { message } => return Err(DriverError::failed(message)),
                _ => {}
            }
        }
        Err(DriverError::failed("the helper process ended without a result"))
    }

    fn reap(mut self: Box<Self>) -> Result<(), DriverError> {
        let mut outcome = Ok(());
        while let Some((message, _)) = self.next() {
            if let HelperMessage::Failed { message } = message {
                outcome = Err(DriverError::failed(message));
            }
        }
        let _ = self.child.wait();
        outcome
    }
}

/// Waits for a supervisor's `Started` (or its failure): the host pid of
/// process 1 and the pidfds of the supervisor (our child, not reaped) and of
/// process 1 (sent by its parent).
pub(crate) fn started(waiter: Waiter, dir: &SandboxDir) -> Result<(Waiter, i32, Pidfds), DriverError> {
    let supervisor = pidfd(waiter.child.id() as i32);
    match waiter.next() {
        Some((HelperMessage::Started { pid }, fds)) => match (supervisor, fds.into_iter().next()) {
            (Ok(supervisor), Some(init)) => Ok((waiter, pid, Pidfds { supervisor, init })),
            (Err(e), _) => Err(DriverError::failed(format!("a pidfd of the supervisor: {e}"))),
            (_, None) => Err(DriverError::failed("the supervisor sent no pidfd of process 1")),
        },
        Some((HelperMessage::Failed { message }, _)) => {
            let _ = (Box::new(waiter) as Box<dyn Watch>).wait();
            Err(DriverError::failed(message))
        }
        other => {
            let _ = (Box::new(waiter) as Box<dyn Watch>).wait();
            Err(DriverError::failed(format!(
                "the sandbox's supervisor ended without starting it ({other:?}); see {}",
                dir.0.join("helper.log").display()
            )))
        }
    }
}

/// A standby sandbox's supervisor, waiting for its assignment.
pub(crate) struct Standby {
    pub waiter: Waiter,
    pub pid: i32,
}

impl Pending for Standby {
    fn assign(self: Box<Self>, stdio: Stdio) -> Result<Run, DriverError> {
        let fds: Vec<_> = stdio.iter().map(|f| f.as_fd()).collect();
        match wire::send(&self.waiter.control, &HelperMessage::Assign, &fds) {
            Ok(()) => Ok(Run { pid: Some(self.pid), watch: Box::new(self.waiter) }),
            Err(e) => {
                // The supervisor discards it when its control socket closes.
                std::thread::spawn(move || self.waiter.discard());
                Err(DriverError::failed(format!("assigning a standby sandbox: {e}")))
            }
        }
    }

    fn discard(self: Box<Self>) {
        self.waiter.discard();
    }
}

/// A run a previous gateway started, found running: its supervisor's end is
/// watched through a pidfd, its code read from the record it leaves.
pub(crate) struct Adopted {
    pub pidfds: Arc<Pidfds>,
    pub dir: SandboxDir,
}

impl Watch for Adopted {
    fn code(&mut self) -> Result<i32, DriverError> {
        let mut fds = [rustix::event::PollFd::new(&self.pidfds.supervisor, rustix::event::PollFlags::IN)];
        while let Err(rustix::io::Errno::INTR) = rustix::event::poll(&mut fds, None) {}
        self.dir
            .read_exit()
            .map(|e| e.code)
            .ok_or_else(|| DriverError::failed("the supervisor ended without recording an exit"))
    }

    fn reap(self: Box<Self>) -> Result<(), DriverError> {
        Ok(())
    }
}

/// Signals a running supervisor (the process holding the sandbox's proxy, by
/// pidfd; `None`: not running) that a new file awaits its proxy and, with
/// `wait`, waits (5 s at most) for its answer in `applied` to reach `revision`.
pub fn hand_over(
    applied: &Path,
    supervisor: Option<&OwnedFd>,
    signal: Signal,
    revision: u64,
    wait: bool,
) -> Result<Applied, DriverError> {
    let Some(supervisor) = supervisor else { return Ok(Applied::AtStart) };
    let _ = std::fs::remove_file(applied);
    signal_pidfd(supervisor, signal)?;
    if !wait {
        return Ok(Applied::Sent);
    }
    const WAIT_SECS: u64 = 5;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(WAIT_SECS);
    loop {
        if let Ok(bytes) = std::fs::read(applied)
            && let Ok(answer) = serde_json::from_slice::<crate::helper::Applied>(&bytes)
            && answer.revision >= revision
        {
            return match answer.error {
                None => Ok(Applied::Confirmed),
                Some(e) => Err(DriverError::failed(e)),
            };
        }
        if std::time::Instant::now() > deadline {
            return Err(DriverError::Unconfirmed(WAIT_SECS));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
