//! What the driver keeps of a sandbox between calls, in its directory
//! (`DIR/sandboxes/ID/`): the pod's template and the job.

use std::path::Path;

use openshell_driver::{DriverError, Job};
use serde::{Deserialize, Serialize};

const RECORD_FILE: &str = "record.json";
const JOB_FILE: &str = "job.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub name: String,
    /// `REGISTRY/REPOSITORY@sha256:…`: what the pod pulls.
    pub image: String,
    /// The policy's text (the pod's annotation).
    pub policy: String,
    pub has_network: bool,
    /// The image's environment (a standby pod's, before any job).
    #[serde(default)]
    pub env: Vec<String>,
    /// How a run handed to a standby pod ended (its pod is gone then):
    /// (exit code, seconds since the epoch).
    #[serde(default)]
    pub exit: Option<(i32, u64)>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, DriverError> {
    let bytes = std::fs::read(path).map_err(DriverError::io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| DriverError::failed(format!("{}: {e}", path.display())))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), DriverError> {
    let json = serde_json::to_vec(value).map_err(|e| DriverError::failed(format!("{}: {e}", path.display())))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, path)).map_err(DriverError::io(path))
}

impl Record {
    pub fn read(dir: &Path) -> Result<Record, DriverError> {
        read_json(&dir.join(RECORD_FILE))
    }

    pub fn write(&self, dir: &Path) -> Result<(), DriverError> {
        std::fs::create_dir_all(dir).map_err(DriverError::io(dir))?;
        write_json(&dir.join(RECORD_FILE), self)
    }
}

pub(crate) fn read_job(dir: &Path) -> Result<Job, DriverError> {
    read_json(&dir.join(JOB_FILE))
}

pub(crate) fn write_job(dir: &Path, job: &Job) -> Result<(), DriverError> {
    write_json(&dir.join(JOB_FILE), job)
}
