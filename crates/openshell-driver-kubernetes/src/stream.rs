//! A pod's end, its log and an exec's streams, as the driver's interface wants
//! them: blocking calls and descriptors, over kube's async API.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use futures_util::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use kube::api::{LogParams, WatchEvent, WatchParams};
use openshell_driver::{DriverError, Exec, Stdio, Watch};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::api::{Api, error};
use crate::pod::{self, CONTAINER, stuck, terminated};

/// The end of a pod's run: its container's exit code, seen through a watch of
/// the pod; with the client's stdout, the pod's log is copied to it meanwhile.
pub(crate) struct PodWatch {
    pub api: Arc<Api>,
    pub name: String,
    pub output: Option<tokio::task::JoinHandle<()>>,
}

impl PodWatch {
    async fn exit(&self) -> Result<i32, DriverError> {
        loop {
            let pod = match self.api.pods.get_opt(&self.name).await {
                Ok(Some(pod)) => pod,
                Ok(None) => return Err(DriverError::failed(format!("pod {} was deleted before it ended", self.name))),
                Err(e) => return Err(error("get pod", &e)),
            };
            if let Some(code) = decided(&pod)? {
                return Ok(code);
            }
            let version = pod.metadata.resource_version.clone().unwrap_or_else(|| "0".into());
            let params = WatchParams::default().fields(&format!("metadata.name={}", self.name)).timeout(290);
            let stream = self.api.pods.watch(&params, &version).await.map_err(|e| error("watch pod", &e))?;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.try_next().await.map_err(|e| error("watch pod", &e))? {
                match event {
                    WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                        if let Some(code) = decided(&pod)? {
                            return Ok(code);
                        }
                    }
                    WatchEvent::Deleted(pod) => {
                        return decided(&pod)?.ok_or_else(|| {
                            DriverError::failed(format!("pod {} was deleted before it ended", self.name))
                        });
                    }
                    // Expired: watch again from a fresh read.
                    WatchEvent::Error(_) => break,
                    WatchEvent::Bookmark(_) => {}
                }
            }
        }
    }
}

/// The exit code when the pod's container ended, an error when it cannot run.
fn decided(pod: &Pod) -> Result<Option<i32>, DriverError> {
    if let Some((code, _)) = terminated(pod) {
        return Ok(Some(code));
    }
    match stuck(pod) {
        Some(why) => Err(DriverError::failed(why)),
        None => Ok(None),
    }
}

impl Watch for PodWatch {
    fn code(&mut self) -> Result<i32, DriverError> {
        let code = self.api.runtime.block_on(self.exit());
        if let Some(output) = self.output.take() {
            let _ = self.api.runtime.block_on(output);
        }
        code
    }

    fn reap(mut self: Box<Self>) -> Result<(), DriverError> {
        if let Some(output) = self.output.take() {
            let _ = self.api.runtime.block_on(output);
        }
        Ok(())
    }
}

/// Copies the pod's log, as it grows, to `stdout` until the pod ended.
pub(crate) fn follow_log(api: &Arc<Api>, name: &str, stdout: OwnedFd) -> tokio::task::JoinHandle<()> {
    let api = Arc::clone(api);
    let name = name.to_owned();
    api.runtime.handle().clone().spawn(async move {
        let mut out = tokio::fs::File::from_std(std::fs::File::from(stdout));
        // The log exists once the container started.
        let stream = loop {
            let params = LogParams { follow: true, container: Some(CONTAINER.into()), ..Default::default() };
            match api.pods.log_stream(&name, &params).await {
                Ok(stream) => break stream,
                Err(_) => match api.pods.get_opt(&name).await {
                    Ok(Some(pod)) if terminated(&pod).is_none() && stuck(&pod).is_none() => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await
                    }
                    _ => return,
                },
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match futures_util::io::AsyncReadExt::read(&mut stream, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = out.flush().await;
                }
            }
        }
    })
}

/// The pod's log as `sandbox logs` reads it: what it holds so far, then what is
/// added (read again from the API, past what was served), 0 at the current end.
pub(crate) struct PodLog {
    pub api: Arc<Api>,
    pub name: String,
    pub served: usize,
    pub pending: Vec<u8>,
}

impl openshell_driver::LogStream for PodLog {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DriverError> {
        if self.pending.is_empty() {
            let params = LogParams { container: Some(CONTAINER.into()), ..Default::default() };
            let text = match self.api.runtime.block_on(self.api.pods.logs(&self.name, &params)) {
                Ok(text) => text,
                // Not started yet (or gone): nothing more now.
                Err(_) => return Ok(0),
            };
            let bytes = text.into_bytes();
            if bytes.len() > self.served {
                self.pending = bytes[self.served..].to_vec();
                self.served = bytes.len();
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// Copies `from` to `to` until either ends.
pub(crate) async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = to.flush().await;
            }
        }
    }
    let _ = to.shutdown().await;
}

/// An exec's end: the status the API server sends on the error channel.
pub(crate) struct ExecWatch {
    pub api: Arc<Api>,
    pub status: Option<tokio::task::JoinHandle<Option<Status>>>,
    /// kube's task driving the connection: once it ended, nothing more comes.
    pub connection: Option<tokio::task::JoinHandle<()>>,
    /// The client's input, copied until it ends, or until the process did: then
    /// it is dropped, which closes the exec's stdin and lets the connection end.
    pub input: Option<tokio::task::JoinHandle<()>>,
    /// Follows the terminal's size ([`follow_size`]) until the process ended.
    pub resize: Option<tokio::task::JoinHandle<()>>,
    pub output: Vec<tokio::task::JoinHandle<()>>,
}

/// How often the terminal's size is looked at.
const SIZE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Sends the exec's terminal size (pods/exec's resize channel) whenever the
/// client changes it on the master end. Nothing tells this process of a change
/// (SIGWINCH goes to the terminal's foreground process group, which it is not):
/// the slave end's size is read every [`SIZE_POLL`].
async fn follow_size(slave: std::fs::File, mut resize: impl futures_util::Sink<kube::api::TerminalSize> + Unpin) {
    use futures_util::SinkExt;
    let mut last = None;
    loop {
        if let Ok(size) = rustix::termios::tcgetwinsize(&slave) {
            let now = (size.ws_col, size.ws_row);
            if now.0 > 0 && now.1 > 0 && last != Some(now) {
                last = Some(now);
                let size = kube::api::TerminalSize { width: now.0, height: now.1 };
                if resize.send(size).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(SIZE_POLL).await;
    }
}

/// The exit code an exec's final status gives (`NonZeroExitCode` names it).
pub(crate) fn exit_code(status: Option<&Status>) -> Result<i32, DriverError> {
    let Some(status) = status else {
        return Err(DriverError::failed("the exec ended without a status"));
    };
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let causes = status.details.as_ref().and_then(|d| d.causes.as_deref()).unwrap_or_default();
    causes
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.parse().ok())
        .ok_or_else(|| DriverError::failed(format!("exec: {}", status.message.clone().unwrap_or_default())))
}

impl Watch for ExecWatch {
    fn code(&mut self) -> Result<i32, DriverError> {
        let status = match self.status.take() {
            Some(task) => self.api.runtime.block_on(task).ok().flatten(),
            None => None,
        };
        for task in [self.input.take(), self.resize.take()].into_iter().flatten() {
            task.abort();
        }
        self.drain();
        exit_code(status.as_ref())
    }

    fn reap(mut self: Box<Self>) -> Result<(), DriverError> {
        self.drain();
        Ok(())
    }
}

impl ExecWatch {
    /// Waits for the connection's end, then for the output copied to the client.
    /// kube shuts its output streams only when the connection ended cleanly: after
    /// a failed one they never end, so what is left is given a moment and dropped.
    fn drain(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = self.api.runtime.block_on(connection);
        }
        for task in self.output.drain(..) {
            let abort = task.abort_handle();
            let waited = self
                .api
                .runtime
                .block_on(async { tokio::time::timeout(std::time::Duration::from_millis(500), task).await });
            if waited.is_err() {
                abort.abort();
            }
        }
    }
}

/// Runs `command` in the pod `name` through pods/exec, relaying the client's
/// stdio (or a terminal, whose master end is returned).
pub(crate) fn exec(
    api: &Arc<Api>,
    name: &str,
    command: Vec<String>,
    tty: bool,
    stdio: Stdio,
) -> Result<Exec, DriverError> {
    let mut stdio = stdio.into_iter();
    let (stdin, stdout, stderr) = (stdio.next(), stdio.next(), stdio.next());
    let params = AttachParams::default()
        .container(pod::CONTAINER)
        .stdin(stdin.is_some() || tty)
        .stdout(true)
        .stderr(!tty)
        .tty(tty);
    let mut attached = api.runtime.block_on(api.pods.exec(name, command, &params)).map_err(|e| error("exec", &e))?;
    let rt = api.runtime.handle().clone();
    let file = |fd: OwnedFd| tokio::fs::File::from_std(std::fs::File::from(fd));
    let mut output = Vec::new();
    let mut input_task = None;
    let mut resize_task = None;
    let console = if tty {
        let pty = nix::pty::openpty(None, None).map_err(|e| DriverError::failed(format!("a terminal: {e}")))?;
        let slave = std::fs::File::from(pty.slave);
        let reader = slave.try_clone().map_err(|e| DriverError::failed(format!("a terminal: {e}")))?;
        if let Some(input) = attached.stdin() {
            input_task = Some(rt.spawn(pump(tokio::fs::File::from_std(reader), input)));
        }
        if let (Some(resize), Ok(sized)) = (attached.terminal_size(), slave.try_clone()) {
            resize_task = Some(rt.spawn(follow_size(sized, resize)));
        }
        if let Some(out) = attached.stdout() {
            output.push(rt.spawn(pump(out, tokio::fs::File::from_std(slave))));
        }
        Some(pty.master)
    } else {
        if let (Some(input), Some(stdin)) = (attached.stdin(), stdin) {
            input_task = Some(rt.spawn(pump(file(stdin), input)));
        }
        for (from, to) in [(attached.stdout(), stdout), (attached.stderr(), stderr)] {
            if let (Some(from), Some(to)) = (from, to) {
                output.push(rt.spawn(pump(from, file(to))));
            }
        }
        None
    };
    let status = attached.take_status().map(|s| rt.spawn(s));
    // The connection is driven by kube's own task; joining it ends with it.
    let connection = rt.spawn(async move {
        if let Err(e) = attached.join().await {
            tracing::warn!(error = %e, "pods/exec connection");
        }
    });
    let watch = ExecWatch {
        api: Arc::clone(api),
        status,
        connection: Some(connection),
        input: input_task,
        resize: resize_task,
        output,
    };
    Ok(Exec { console, watch: Box::new(watch) })
}

/// A connection to `port` on the pod's loopback through pods/portforward, as a
/// descriptor: one end of a socket pair whose other end is relayed to the
/// forwarded stream until either side closes.
pub(crate) fn forward(api: &Arc<Api>, name: &str, port: u16) -> Result<OwnedFd, DriverError> {
    let mut forwarder =
        api.runtime.block_on(api.pods.portforward(name, &[port])).map_err(|e| error("portforward", &e))?;
    let stream = forwarder
        .take_stream(port)
        .ok_or_else(|| DriverError::failed(format!("portforward: no stream for port {port}")))?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|source| DriverError::Unreachable {
        id: name.to_owned(),
        port,
        source,
    })?;
    ours.set_nonblocking(true).map_err(|source| DriverError::Unreachable { id: name.to_owned(), port, source })?;
    api.runtime.spawn(async move {
        if let Ok(ours) = tokio::net::UnixStream::from_std(ours) {
            let (mut our_read, mut our_write) = ours.into_split();
            let (mut pod_read, mut pod_write) = tokio::io::split(stream);
            // The client's end of input is not passed on: kube's portforward
            // closes the way back too when its writer is shut down, and the
            // answer would be lost. The connection ends when the pod's side does.
            let up = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut our_read, &mut pod_write).await;
                std::future::pending::<()>().await;
            });
            let _ = tokio::io::copy(&mut pod_read, &mut our_write).await;
            let _ = our_write.shutdown().await;
            up.abort();
        }
        if let Err(e) = forwarder.join().await {
            tracing::debug!(error = %e, "pods/portforward connection");
        }
    });
    Ok(OwnedFd::from(theirs))
}
