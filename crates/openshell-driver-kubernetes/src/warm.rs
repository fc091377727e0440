//! Standby sandboxes: a pod started ahead of need, idle (openshell's init with
//! nothing to run), whose job is handed to it by exec when a create takes it, so a
//! create skips scheduling, the image pull and the container's start. The job's end
//! is the exec's; the pod is deleted then, and the exit is kept in the record.

use std::path::PathBuf;
use std::sync::Arc;

use openshell_driver::{DriverError, Pending, Run, Stdio, Watch};

use crate::api::Api;
use crate::pod::pod_name;
use crate::record::{self, Record};
use crate::stream;

/// A standby sandbox's pod.
pub(crate) struct WarmPod {
    pub api: Arc<Api>,
    pub id: String,
    /// The sandbox's record directory.
    pub dir: PathBuf,
}

impl WarmPod {
    fn delete(&self) {
        if let Err(e) = self.api.delete(&pod_name(&self.id), 0) {
            tracing::warn!(%e, "deleting a standby pod");
        }
    }
}

impl Pending for WarmPod {
    fn assign(self: Box<Self>, stdio: Stdio) -> Result<Run, DriverError> {
        let job = record::read_job(&self.dir)?;
        let record = Record::read(&self.dir)?;
        if job.args.is_empty() {
            // An idle sandbox: the standby pod is it.
            let watch = stream::PodWatch { api: Arc::clone(&self.api), name: pod_name(&self.id), output: None };
            return Ok(Run { pid: None, watch: Box::new(watch) });
        }
        let command = crate::exec_command(&record.env, &job.env, &job.args);
        let exec = stream::exec(&self.api, &pod_name(&self.id), command, false, stdio)?;
        Ok(Run { pid: None, watch: Box::new(AssignedWatch { pod: *self, exec: Some(exec.watch) }) })
    }

    fn discard(self: Box<Self>) {
        self.delete();
    }
}

/// The end of a job handed to a standby pod.
struct AssignedWatch {
    pod: WarmPod,
    exec: Option<Box<dyn Watch>>,
}

impl Watch for AssignedWatch {
    fn code(&mut self) -> Result<i32, DriverError> {
        let exec = self.exec.as_mut().ok_or_else(|| DriverError::failed("the run's end was taken"))?;
        let code = match exec.code() {
            Ok(code) => code,
            // Its pod was deleted under it (`sandbox stop`): ended by SIGTERM.
            Err(_)
                if self
                    .pod
                    .api
                    .runtime
                    .block_on(self.pod.api.pods.get_opt(&pod_name(&self.pod.id)))
                    .ok()
                    .flatten()
                    .is_none() =>
            {
                143
            }
            Err(e) => return Err(e),
        };
        if let Ok(mut record) = Record::read(&self.pod.dir) {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            record.exit = Some((code, now));
            record.write(&self.pod.dir)?;
        }
        self.pod.delete();
        Ok(code)
    }

    fn reap(mut self: Box<Self>) -> Result<(), DriverError> {
        match self.exec.take() {
            Some(exec) => exec.reap(),
            None => Ok(()),
        }
    }
}
