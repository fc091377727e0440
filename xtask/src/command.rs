//! The commands tasks and benches drive: set-up commands (logged; their stdout
//! kept), timed ones, and why one failed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::root;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Failed { command: String, status: ExitStatus, stderr: String },
    #[error("`{command}` took longer than {} s; killed it", limit.as_secs())]
    Timeout { command: String, limit: Duration },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A command as a shell would show it.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `program args` in the workspace root (logged), its output to ours.
pub fn run(program: &str, args: &[&str]) -> Result<(), CommandError> {
    run_with(program, args, &[])
}

/// [`run`] with `env` added to the environment.
pub fn run_with(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), CommandError> {
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env.iter().copied()).current_dir(root());
    let command = show(&cmd);
    eprintln!("xtask: $ {command}");
    let status = cmd.status().map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    if status.success() { Ok(()) } else { Err(CommandError::Failed { command, status, stderr: String::new() }) }
}

/// Runs a set-up command (logged), returning its stdout; fails with its stderr.
pub fn capture(cmd: &mut Command) -> Result<String, CommandError> {
    let command = show(cmd);
    eprintln!("xtask: $ {command}");
    let out =
        cmd.stdin(Stdio::null()).output().map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(CommandError::Failed { command, status: out.status, stderr })
}

/// Runs one timed command: stdin and stdout /dev/null, stderr to `errors` (read back
/// on failure); the time is from spawn to the process's exit, at most `limit`.
pub fn time_once(mut cmd: Command, errors: &Path, limit: Duration) -> Result<Duration, CommandError> {
    let command = show(&cmd);
    let err = File::create(errors).map_err(|source| CommandError::Io { path: errors.to_owned(), source })?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    let pid = child.id();
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, start.elapsed()));
    });
    let Ok((status, elapsed)) = rx.recv_timeout(limit) else {
        // Our own child, by its pid.
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        return Err(CommandError::Timeout { command, limit });
    };
    let status = status.map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
    if status.success() {
        return Ok(elapsed);
    }
    let stderr = std::fs::read_to_string(errors).unwrap_or_default().trim().to_owned();
    Err(CommandError::Failed { command, status, stderr })
}
