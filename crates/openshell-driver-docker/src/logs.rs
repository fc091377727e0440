//! A container's output log through the Docker API, as a [`LogStream`]: what
//! it holds now (`read` answers 0 at its end), then, when read again, what is
//! appended (a following stream from the last line's timestamp on, lines
//! already given skipped).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};

use bollard::container::LogOutput;
use futures_util::StreamExt;
use openshell_driver::{DriverError, LogStream};

use crate::api::Api;

/// One log line: its time (nanoseconds since the epoch) and its bytes.
type Line = (i128, Vec<u8>);

pub(crate) struct DockerLog {
    api: Arc<Api>,
    container: String,
    lines: Receiver<Line>,
    /// Bytes of a line not yet read.
    pending: Vec<u8>,
    /// The time of the last line given.
    last: i128,
    /// Whether the stream is the following one.
    following: bool,
}

/// `2026-12-04T19:00:00.123456789Z text` → (its time, `text`).
fn split_timestamp(message: &[u8]) -> Option<Line> {
    let space = message.iter().position(|b| *b == b' ')?;
    let stamp = std::str::from_utf8(&message[..space]).ok()?;
    let time = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    Some((time.unix_timestamp_nanos(), message[space + 1..].to_vec()))
}

impl DockerLog {
    pub fn open(api: Arc<Api>, container: String) -> DockerLog {
        let lines = stream(&api, &container, false, 0);
        DockerLog { api, container, lines, pending: Vec::new(), last: i128::MIN, following: false }
    }
}

/// The container's log lines from `since` (seconds) on, in a channel, read by
/// a task of the driver's runtime.
fn stream(api: &Api, container: &str, follow: bool, since: i32) -> Receiver<Line> {
    let (tx, rx) = sync_channel::<Line>(256);
    let options = bollard::query_parameters::LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        since,
        until: 0,
        timestamps: true,
        tail: "all".to_owned(),
    };
    let mut logs = api.docker.logs(container, Some(options));
    api.runtime.spawn_blocking({
        let rt = api.runtime.handle().clone();
        move || {
            while let Some(Ok(frame)) = rt.block_on(logs.next()) {
                let (LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message }) =
                    frame
                else {
                    continue;
                };
                if let Some(line) = split_timestamp(&message)
                    && tx.send(line).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

impl LogStream for DockerLog {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DriverError> {
        loop {
            if !self.pending.is_empty() {
                let n = buf.len().min(self.pending.len());
                buf[..n].copy_from_slice(&self.pending[..n]);
                self.pending.drain(..n);
                return Ok(n);
            }
            // The first stream ends at the log's current end; the following one
            // waits a little for more, then answers 0 for now.
            let wait = if self.following { 100 } else { 30_000 };
            match self.lines.recv_timeout(std::time::Duration::from_millis(wait)) {
                Ok((time, bytes)) => {
                    if time <= self.last && self.following {
                        continue;
                    }
                    self.last = self.last.max(time);
                    self.pending = bytes;
                }
                Err(RecvTimeoutError::Timeout) => return Ok(0),
                Err(RecvTimeoutError::Disconnected) if self.following => return Ok(0),
                Err(RecvTimeoutError::Disconnected) => {
                    let since = i32::try_from(self.last.max(0) / 1_000_000_000).unwrap_or(0);
                    self.lines = stream(&self.api, &self.container, true, since);
                    self.following = true;
                    return Ok(0);
                }
            }
        }
    }
}
