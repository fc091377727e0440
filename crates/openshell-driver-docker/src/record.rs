//! What the driver keeps of a sandbox, in its directory (`docker.json`).

use std::path::Path;

use bollard::models::ContainerCreateBody;
use openshell_driver::DriverError;
use openshell_sandbox::fence::Fence;
use serde::{Deserialize, Serialize};

pub(crate) const RECORD_FILE: &str = "docker.json";

/// One sandbox of the Docker driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    pub name: String,
    /// What its container is made with, but the job.
    pub template: ContainerCreateBody,
    /// Its fenced link to its proxy, when its policy has network policies.
    pub network: Option<Fence>,
    /// The container's id, once it was made (at the first start).
    pub container: Option<String>,
}

impl Record {
    pub fn read(dir: &Path) -> Result<Record, DriverError> {
        let path = dir.join(RECORD_FILE);
        let bytes = std::fs::read(&path).map_err(DriverError::io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| DriverError::failed(format!("{}: {e}", path.display())))
    }

    /// Written whole or not at all.
    pub fn write(&self, dir: &Path) -> Result<(), DriverError> {
        openshell_sandbox::sandbox::write_json(&dir.join(RECORD_FILE), self).map_err(DriverError::failed)
    }
}
