//! Why a driver operation failed.

use openshell_gateway_api::ErrorCode;

/// A driver's failure; [`DriverError::code`] is what the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The sandbox's policy does not load.
    #[error("{0}")]
    Policy(String),
    /// The image cannot be used (missing from the store, malformed).
    #[error("{0}")]
    Image(String),
    /// The sandbox is not running (or not known to the driver).
    #[error("sandbox {0} is not running")]
    NotRunning(String),
    /// A file or directory of the driver's.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A helper process, the container runtime or the proxy failed.
    #[error("{0}")]
    Failed(String),
    /// Nothing accepted a connection to a port in the sandbox.
    #[error("port {port} in sandbox {id}: {source}")]
    Unreachable {
        id: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// What a driver out of process answered (`socket`), with its code.
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
    /// The proxy did not confirm a change in time.
    #[error("the proxy did not confirm within {0} s")]
    Unconfirmed(u64),
    /// This driver does not do that (e.g. standby sandboxes under Docker).
    #[error("the {driver} driver does not support {what}")]
    Unsupported { driver: &'static str, what: &'static str },
}

impl DriverError {
    pub fn failed(message: impl std::fmt::Display) -> DriverError {
        DriverError::Failed(message.to_string())
    }

    pub fn io(path: impl Into<std::path::PathBuf>) -> impl FnOnce(std::io::Error) -> DriverError {
        let path = path.into();
        move |source| DriverError::Io { path, source }
    }

    /// The stable code the API answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DriverError::Policy(_) => ErrorCode::InvalidArgument,
            DriverError::Image(_) => ErrorCode::InvalidArgument,
            DriverError::NotRunning(_) | DriverError::Unreachable { .. } => ErrorCode::FailedPrecondition,
            DriverError::Unconfirmed(_) => ErrorCode::Unavailable,
            DriverError::Unsupported { .. } => ErrorCode::Unsupported,
            DriverError::Remote { code, .. } => *code,
            DriverError::Io { .. } | DriverError::Failed(_) => ErrorCode::Internal,
        }
    }
}

impl From<DriverError> for openshell_gateway_api::ApiError {
    fn from(e: DriverError) -> Self {
        openshell_gateway_api::ApiError::new(e.code(), e)
    }
}
