//! The Docker API as the driver uses it: bollard on a small tokio runtime of
//! the driver's own, called from the gateway's (blocking) threads.

use std::future::Future;

use bollard::Docker;
use openshell_driver::DriverError;

/// A connection to one dockerd.
pub(crate) struct Api {
    pub docker: Docker,
    pub runtime: tokio::runtime::Runtime,
    /// Its socket, for errors.
    pub socket: String,
}

/// Whether a Docker error is dockerd's "no such container/image".
pub(crate) fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

impl Api {
    /// Connects to dockerd at `socket`, speaking the newest API version both know.
    pub fn connect(socket: &str) -> Result<Api, DriverError> {
        let fail = |e: &dyn std::fmt::Display| DriverError::failed(format!("the Docker API at {socket}: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("docker-api")
            .enable_all()
            .build()
            .map_err(|e| fail(&e))?;
        let docker = Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION).map_err(|e| fail(&e))?;
        let docker = runtime.block_on(docker.negotiate_version()).map_err(|e| fail(&e))?;
        Ok(Api { docker, runtime, socket: socket.to_owned() })
    }

    /// Runs one API call to its end.
    pub fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DriverError> {
        self.runtime.block_on(call).map_err(|e| self.error(what, &e))
    }

    pub fn error(&self, what: &str, e: &bollard::errors::Error) -> DriverError {
        DriverError::failed(format!("docker {what} (at {}): {e}", self.socket))
    }
}
