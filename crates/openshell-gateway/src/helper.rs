//! The helper processes the gateway starts (`openshell gateway supervise DIR`,
//! `openshell gateway exec-helper DIR`). Their stdin is a message socket to the
//! gateway: the first message is [`HelperMessage::Attach`] with the client's stdio
//! attached (or none); they answer `Started`/`Console`, then `Exited` or `Failed`.
//! Both are single-threaded until the container exists (libcontainer clones its
//! caller). Their stdout and stderr are the sandbox's `helper.log`.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use openshell_runtime::sandbox::{Event, ExecRequest, SandboxDir, Stdio, exec, supervise, wait_exit};

use crate::proto::HelperMessage;
use crate::wire;

fn report(message: &HelperMessage) {
    // A gateway that went away (restarted) is not an error: the exit is also in exit.json.
    if let Err(e) = wire::send(std::io::stdin().as_fd(), message, &[]) {
        eprintln!("reporting to the gateway: {e}");
    }
}

fn attach() -> Result<(Vec<String>, Vec<String>, bool, Stdio), String> {
    let control = std::io::stdin();
    match wire::recv::<HelperMessage>(control.as_fd()) {
        Ok(Some((HelperMessage::Attach { args, env, tty }, fds))) => {
            let mut fds = fds.into_iter();
            let stdio = Stdio { stdin: fds.next(), stdout: fds.next(), stderr: fds.next() };
            Ok((args, env, tty, stdio))
        }
        Ok(Some((other, _))) => Err(format!("unexpected first message {other:?}")),
        Ok(None) => Err("the gateway closed the connection".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The supervisor of one sandbox run; returns the process's exit code.
pub fn supervisor_main(dir: &Path) -> i32 {
    let (_, _, _, stdio) = match attach() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("supervisor: {message}");
            return 125;
        }
    };
    let dir = SandboxDir(dir.to_path_buf());
    let mut on_event = |event| match event {
        Event::Started(pid) => report(&HelperMessage::Started { pid }),
        // Reported as soon as the output is delivered; cleanup follows.
        Event::Exited(code) => report(&HelperMessage::Exited { code }),
    };
    match supervise(&dir, stdio, &mut on_event) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("supervisor: {e}");
            report(&HelperMessage::Failed { message: e.to_string() });
            125
        }
    }
}

/// One `exec` into a running sandbox; returns the process's exit code.
pub fn exec_main(dir: &Path) -> i32 {
    let (args, env, tty, stdio) = match attach() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("exec: {message}");
            return 125;
        }
    };
    let dir = SandboxDir(dir.to_path_buf());
    let env = env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let outcome = (|| -> Result<i32, String> {
        if !tty {
            let pid = exec(&dir, &ExecRequest { args, env, console_socket: None }, stdio).map_err(|e| e.to_string())?;
            return wait_exit(pid).map_err(|e| format!("waiting for the process: {e}"));
        }
        let socket = dir.0.join(format!("console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        let started = exec(&dir, &ExecRequest { args, env, console_socket: Some(socket.clone()) }, Stdio::default());
        let _ = std::fs::remove_file(&socket);
        let pid = started.map_err(|e| e.to_string())?;
        let master = receive_master(&listener)?;
        wire::send(std::io::stdin().as_fd(), &HelperMessage::Console, &[master.as_fd()])
            .map_err(|e| format!("passing the terminal to the gateway: {e}"))?;
        drop(master);
        wait_exit(pid).map_err(|e| format!("waiting for the process: {e}"))
    })();
    match outcome {
        Ok(code) => {
            report(&HelperMessage::Exited { code });
            code
        }
        Err(message) => {
            eprintln!("exec: {message}");
            report(&HelperMessage::Failed { message });
            125
        }
    }
}

/// The terminal's master end, as libcontainer sends it to a console socket.
fn receive_master(listener: &UnixListener) -> Result<OwnedFd, String> {
    let (stream, _) = listener.accept().map_err(|e| format!("console socket: {e}"))?;
    match wire::recv_bytes(&stream) {
        Ok(Some((_, fds))) => fds.into_iter().next().ok_or_else(|| "no terminal on the console socket".into()),
        Ok(None) => Err("the console socket closed without a terminal".into()),
        Err(e) => Err(format!("console socket: {e}")),
    }
}
