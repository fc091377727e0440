//! A sandbox container's network, made before dockerd starts it: the network
//! helper (`openshell gateway docker-network`, one process per run) makes a
//! network namespace (held by a child process of its own), binds it at
//! `netns` in the sandbox's directory (where `openshell-runtime
//! --sandbox-dir` has the container join it), sets up the same fence as the
//! local driver's (a veth pair to the host, nftables inside: only the proxy
//! reachable) and serves the sandbox's egress proxy on the host end. It then
//! watches the container's process 1 (a pidfd the driver sends once dockerd
//! started it) and, when it ends, takes all of it down: veth, binding, holder.
//!
//! Its control socket (stdin) carries [`NetworkMessage`]s: `Prepare` in,
//! `Ready` or `Failed` out, then `Watch` in with the pidfd attached.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use openshell_gateway_api::wire;
use openshell_sandbox::fence::Fence;
use openshell_sandbox::sandbox::SandboxDir;
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Where the namespace is bound, in the sandbox's directory.
pub(crate) const NETNS_FILE: &str = "netns";
/// The helper's log, in the sandbox's directory.
pub(crate) const LOG_FILE: &str = "network.log";

/// Messages between the driver and a network helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NetworkMessage {
    /// To the helper: the sandbox's directory.
    Prepare {
        dir: PathBuf,
    },
    /// From the helper: namespace bound, fence up, proxy listening.
    Ready,
    Failed {
        message: String,
    },
    /// To the helper: the container's process 1 runs (its pidfd attached).
    Watch,
}

/// Why the network could not be made.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// A process of the helper's own, alone in a new network namespace until the
/// helper ends (it dies with it): this executable again, as
/// `gateway docker-network --hold` ([`hold_main`]).
fn spawn_holder() -> Result<std::process::Child, Failure> {
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(&exe)
        .args(["gateway", "docker-network", "--hold"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("starting {} gateway docker-network --hold: {e}", exe.display())))?;
    let mut ready = [0u8; 1];
    let read = child.stdout.take().map(|mut out| std::io::Read::read(&mut out, &mut ready));
    if !matches!(read, Some(Ok(1))) || ready[0] != b'1' {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Failure("the namespace holder could not make a network namespace".into()));
    }
    Ok(child)
}

/// `gateway docker-network --hold`: moves into a new network namespace, says
/// so on stdout, and waits to be killed (by its helper, or as it dies).
pub fn hold_main() -> i32 {
    use std::io::Write;
    let ok = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_ok()
        && nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_ok();
    let mut out = std::io::stdout();
    let _ = out.write_all(if ok { b"1" } else { b"0" }).and_then(|()| out.flush());
    if !ok {
        return 1;
    }
    loop {
        nix::unistd::pause();
    }
}

/// Takes down what a previous run may have left (its helper killed): the
/// binding and the host end of the veth pair.
fn clear(netns: &Path, fence: &Fence) {
    let _ = nix::mount::umount2(netns, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(netns);
    let _ = openshell_sandbox::fence::remove(&fence.host_if);
}

/// Makes the network of the sandbox in `dir`; returns the holder and the fence.
fn prepare(dir: &SandboxDir) -> Result<(std::process::Child, Fence), Failure> {
    let record = Record::read(&dir.0)?;
    let fence = record.network.clone().ok_or_else(|| Failure("the sandbox has no network".into()))?;
    let netns = dir.0.join(NETNS_FILE);
    clear(&netns, &fence);
    let holder = spawn_holder()?;
    std::fs::write(&netns, b"").map_err(|e| Failure(format!("{}: {e}", netns.display())))?;
    let source = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
    nix::mount::mount(Some(&source), &netns, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| Failure(format!("binding {} at {}: {e}", source.display(), netns.display())))?;
    openshell_sandbox::fence::install(&fence, &netns.display().to_string())?;
    openshell_driver_local::helper::serve_proxy(dir, &record.id, &fence, holder.id())?;
    Ok((holder, fence))
}

fn report(message: &NetworkMessage, fds: &[std::os::fd::BorrowedFd<'_>]) {
    if let Err(e) = wire::send(std::io::stdin().as_fd(), message, fds) {
        eprintln!("network helper: reporting to the gateway: {e}");
    }
}

/// Waits until `pidfd`'s process ends.
fn wait_for(pidfd: &OwnedFd) {
    let mut fds = [rustix::event::PollFd::new(pidfd, rustix::event::PollFlags::IN)];
    while let Err(rustix::io::Errno::INTR) = rustix::event::poll(&mut fds, None) {}
}

/// `openshell gateway docker-network`: makes a sandbox's network, serves its
/// proxy while its container runs, then takes it down. Returns the exit code.
pub fn helper_main() -> i32 {
    let control = std::io::stdin();
    let dir = match wire::recv::<NetworkMessage>(control.as_fd()) {
        Ok(Some((NetworkMessage::Prepare { dir }, _))) => dir,
        Ok(None) => return 0,
        other => {
            eprintln!("network helper: unexpected first message {other:?}");
            return 125;
        }
    };
    let log_path = dir.join(LOG_FILE);
    if let Ok(log) = std::fs::OpenOptions::new().create(true).append(true).open(&log_path) {
        let _ = rustix::stdio::dup2_stdout(&log);
        let _ = rustix::stdio::dup2_stderr(&log);
    }
    let dir = SandboxDir(dir);
    let (mut holder, fence) = match prepare(&dir) {
        Ok(made) => made,
        Err(Failure(message)) => {
            eprintln!("network helper: {message}");
            report(&NetworkMessage::Failed { message }, &[]);
            return 125;
        }
    };
    openshell_driver_local::helper::Supervisor::write(&dir.0, None);
    report(&NetworkMessage::Ready, &[]);
    // The container's end (or the driver's, before it could send it) ends this run.
    if let Ok(Some((NetworkMessage::Watch, fds))) = wire::recv::<NetworkMessage>(control.as_fd())
        && let Some(pidfd) = fds.into_iter().next()
    {
        wait_for(&pidfd);
    }
    let _ = holder.kill();
    let _ = holder.wait();
    clear(&dir.0.join(NETNS_FILE), &fence);
    let _ = std::fs::remove_file(dir.0.join(openshell_driver_local::helper::SUPERVISOR_FILE));
    0
}
