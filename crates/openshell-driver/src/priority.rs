//! Work done ahead of need yields the CPU to work someone waits for. A standby
//! sandbox is started beside creates that clients wait on: the gateway's thread
//! that makes standbys lowers itself to [`STANDBY_NICE`], and so does the
//! process that starts one (the local driver's supervisor, single-threaded
//! then), so that what they start inherits it: process 1, the proxy's threads,
//! the next spare helper. Whoever takes on a job someone waits for sets itself
//! back to 0, and a standby, once assigned, brings every thread of its
//! supervisor and of its process 1 back to 0 ([`restore`]) before the job
//! starts, so the job runs at the priority of a sandbox started cold. Raising a
//! priority needs `CAP_SYS_NICE`: the gateway runs as root.

use rustix::io::Errno;
use rustix::process::{Pid, getpriority_process, setpriority_process};

/// The nice value standby sandboxes are made at (0 is normal, 19 the lowest):
/// under load, CFS gives a nice-10 thread about a tenth of a nice-0 one's share.
pub const STANDBY_NICE: i32 = 10;

/// Why a priority could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    #[error("the threads of process {pid}: {source}")]
    Threads {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("the priority of thread {tid}: {source}")]
    Set {
        tid: i32,
        #[source]
        source: std::io::Error,
    },
}

/// Sets the calling thread (not the others of its process) to `nice`; the
/// threads and processes it starts from now on inherit it.
pub fn set_this_thread(nice: i32) -> Result<(), PriorityError> {
    let tid = rustix::thread::gettid();
    setpriority_process(Some(tid), nice)
        .map_err(|e| PriorityError::Set { tid: tid.as_raw_nonzero().get(), source: e.into() })
}

/// Every thread of the processes `pids` back to nice 0. A thread made during a
/// pass by one not yet changed inherits the old value: passes repeat until one
/// changes nothing. A thread or process that ends meanwhile is skipped.
pub fn restore(pids: &[i32]) -> Result<(), PriorityError> {
    loop {
        let mut changed = false;
        for &pid in pids {
            for tid in threads(pid)? {
                changed |= renice(tid)?;
            }
        }
        if !changed {
            return Ok(());
        }
    }
}

/// Sets thread `tid` to nice 0; whether it was not.
fn renice(tid: Pid) -> Result<bool, PriorityError> {
    let set = |e: Errno| PriorityError::Set { tid: tid.as_raw_nonzero().get(), source: e.into() };
    match getpriority_process(Some(tid)) {
        Ok(0) | Err(Errno::SRCH) => Ok(false),
        Ok(_) => match setpriority_process(Some(tid), 0) {
            Ok(()) => Ok(true),
            Err(Errno::SRCH) => Ok(false),
            Err(e) => Err(set(e)),
        },
        Err(e) => Err(set(e)),
    }
}

/// The threads of process `pid` (none once it has ended).
fn threads(pid: i32) -> Result<Vec<Pid>, PriorityError> {
    let entries = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(PriorityError::Threads { pid, source }),
    };
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter_map(Pid::from_raw)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of(tid: Pid) -> i32 {
        getpriority_process(Some(tid)).expect("getpriority")
    }

    /// A lowered thread's later threads inherit its nice value; `restore` brings
    /// back every thread of the process, one made after the lowering included.
    /// (Nice values are per thread: the test binary's other threads keep theirs.
    /// Going back to 0 needs root, as the gateway is.)
    #[test]
    fn restore_brings_back_every_thread_of_a_lowered_process() {
        std::thread::spawn(|| {
            let me = rustix::thread::gettid();
            set_this_thread(STANDBY_NICE).expect("lower");
            assert_eq!(nice_of(me), STANDBY_NICE);
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, stopped) = std::sync::mpsc::channel::<()>();
            let inheritor = std::thread::spawn(move || {
                tx.send(rustix::thread::gettid()).expect("send");
                let _ = stopped.recv();
            });
            let inheritor_tid = rx.recv().expect("tid");
            assert_eq!(nice_of(inheritor_tid), STANDBY_NICE, "a thread inherits its maker's nice value");
            restore(&[std::process::id() as i32]).expect("restore (as root)");
            assert_eq!((nice_of(me), nice_of(inheritor_tid)), (0, 0));
            drop(stop);
            inheritor.join().expect("join");
        })
        .join()
        .expect("the lowered thread");
    }
}
