//! Issue 12 point 7: stop and kill signal a sandbox's process 1 through a pidfd,
//! never by its number. The hazard, made real here: a process ends and is reaped,
//! and another process is given its number (forced through
//! /proc/sys/kernel/ns_last_pid). A signal sent by number (what the gateway did
//! before) kills that other process: the positive control. Sent through the
//! pidfd of the one that ended, it reaches nothing. Needs root (CI runs as root).

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};

use nix::sys::signal::Signal;
use openshell_driver_local::signal_pidfd;

/// A `sleep` whose pid is `pid`, if the kernel can be talked into it (other
/// processes of the machine may take the number first: a few tries).
fn decoy_at(pid: i32) -> Option<Child> {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("ns_last_pid (needs root)");
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        if child.id() as i32 == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

/// A process that has ended and been reaped, with the pidfd opened while it ran.
fn ended() -> (i32, std::os::fd::OwnedFd) {
    let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = child.id() as i32;
    let pidfd = openshell_driver_local::helper::pidfd(pid).expect("pidfd_open");
    child.kill().expect("kill");
    child.wait().expect("reap");
    (pid, pidfd)
}

#[test]
fn a_signal_through_a_pidfd_never_reaches_a_process_that_reused_the_number() {
    assert!(nix::unistd::geteuid().is_root(), "this test sets ns_last_pid: run it as root (CI does)");
    // Control: by number, the signal kills whatever has the number now.
    let (pid, _) = ended();
    let mut decoy = decoy_at(pid).expect("a process at the reused pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).expect("kill by number");
    let status = decoy.wait().expect("wait");
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "the control: a reused pid took the signal");

    // Through the pidfd of the process that ended: nothing is signalled.
    let (pid, pidfd) = ended();
    let mut decoy = decoy_at(pid).expect("a process at the reused pid");
    signal_pidfd(&pidfd, Signal::SIGTERM).expect("an ended process is not an error");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(decoy.try_wait().expect("try_wait").is_none(), "the process that reused the number was signalled");
    let _ = decoy.kill();
    let _ = decoy.wait();
}
