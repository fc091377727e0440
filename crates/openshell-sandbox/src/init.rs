//! The sandbox's init: process 1 of the sandbox's pid namespace.
//!
//! libcontainer has prepared everything from the spec (namespaces, mounts,
//! cgroups, capability drop, user switch, seccomp) when its executor runs. Our
//! init then applies the policy's Landlock rules to itself, so the domain is
//! inherited by everything it starts, spawns the workload and stays as process 1:
//! it reaps every orphan that the kernel re-parents to it (so no zombie outlives
//! its parent) and forwards the signals it receives to the workload. It exits
//! with the workload's exit code (128 + signal when the workload was killed);
//! the kernel then kills whatever is left in the namespace.
//!
//! Everything happens on one thread: the signal handlers only write to a pipe
//! (signal-hook) that the loop reads. A handler is needed even for signals that
//! are only forwarded: the kernel drops a signal sent to a pid namespace's init
//! while its disposition is the default. Handlers reset to the default on exec,
//! so the workload starts with default dispositions and an empty mask.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::Signals;

/// Exit code when the workload cannot be started (as shells report a missing command).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code when the workload exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;

/// Why the init itself failed (the workload's failures are its exit status).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("reading the sandbox's job: {0}")]
    Job(std::io::Error),
}

/// Spawns `args` and supervises it as process 1 until it exits; returns the code
/// the init should exit with. With `terminal`, the workload gets its own process
/// group in the foreground of the terminal on stdin, so the terminal's signals
/// (Ctrl-C, window size) reach it directly.
pub fn supervise(args: &[String], terminal: bool) -> Result<i32, InitError> {
    supervise_with_env(args, None, terminal)
}

/// What process 1 of a sandbox runs, sent by its supervisor as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub args: Vec<String>,
    /// `K=V` entries: the workload's whole environment.
    pub env: Vec<String>,
    /// No workload: wait for processes that join with `exec`.
    pub idle: bool,
}

/// Process 1 of a sandbox that was started before its command was known: reads
/// its [`Job`] from `source` (one line), then supervises it (or idles). A source
/// that ends first means the sandbox was discarded: exit 0.
pub fn run_job(source: std::fs::File, terminal: bool) -> Result<i32, InitError> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(source).read_line(&mut line).map_err(InitError::Job)?;
    if line.trim().is_empty() {
        return Ok(0);
    }
    let job: Job = serde_json::from_str(&line).map_err(|e| InitError::Job(e.into()))?;
    if job.idle {
        return idle();
    }
    supervise_with_env(&job.args, Some(&job.env), terminal)
}

fn supervise_with_env(args: &[String], env: Option<&[String]>, terminal: bool) -> Result<i32, InitError> {
    let Some((program, rest)) = args.split_first() else {
        eprintln!("openshell: no command to run in the sandbox");
        return Ok(EXIT_NOT_FOUND);
    };
    let mut signals = Signals::new(FORWARDED.iter().chain([&SIGCHLD])).map_err(InitError::Signals)?;
    let mut command = Command::new(program);
    command.args(rest);
    if let Some(env) = env {
        command.env_clear().envs(env.iter().filter_map(|kv| kv.split_once('=')));
        // libcontainer sets HOME from the image's passwd when the spec has none.
        if !env.iter().any(|kv| kv.starts_with("HOME="))
            && let Some(home) = std::env::var_os("HOME")
        {
            command.env("HOME", home);
        }
    }
    if terminal {
        command.process_group(0);
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("openshell: cannot run {program} in the sandbox: {e}");
            return Ok(if e.kind() == std::io::ErrorKind::NotFound { EXIT_NOT_FOUND } else { EXIT_CANNOT_EXECUTE });
        }
    };
    let workload = Pid::from_raw(child.id() as i32);
    if terminal {
        // Best effort: without a controlling terminal on stdin there is nothing to hand over.
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), workload);
    }
    drop(child);
    // A SIGCHLD that arrived before this loop is waiting in the pipe.
    for signal in signals.forever() {
        if signal != SIGCHLD {
            let Ok(signal) = Signal::try_from(signal) else { continue };
            match kill(workload, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => tracing::debug!(%e, ?signal, "forwarding a signal"),
            }
            continue;
        }
        if let Some(code) = reap(workload) {
            return Ok(code);
        }
    }
    // `forever` only ends when the handle is closed, which nothing here does.
    Ok(reap(workload).unwrap_or(EXIT_CANNOT_EXECUTE))
}

/// Signals passed on to the workload (the ones `kill`, `docker stop`, a terminal or
/// a job-control shell send). Others stay with the init.
const FORWARDED: &[i32] = &[SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT];

/// Process 1 of a sandbox with no workload of its own (processes join it with
/// `exec`): reaps orphans until asked to stop (SIGTERM, SIGINT, SIGHUP), then
/// exits 0.
pub fn idle() -> Result<i32, InitError> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD]).map_err(InitError::Signals)?;
    for signal in signals.forever() {
        if signal == SIGCHLD {
            reap(Pid::from_raw(0));
        } else {
            return Ok(0);
        }
    }
    Ok(0)
}

/// Reaps every exited child; returns the workload's exit code once it has exited.
fn reap(workload: Pid) -> Option<i32> {
    let mut exited = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == workload => exited = Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == workload => exited = Some(128 + signal as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return exited,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::debug!(%e, "reaping");
                return exited;
            }
        }
    }
}
