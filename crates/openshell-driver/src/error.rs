//! Why a driver operation failed.

use openshell_gateway_api::ErrorCode;

/// A driver's failure; [`DriverError::code`] is what the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The sandbox's policy does not load: the policy's error.
    #[error(transparent)]
    Policy(Box<dyn std::error::Error + Send + Sync>),
    /// The image cannot be used (missing from the store, malformed): why, with
    /// the image or layer named.
    #[error(transparent)]
    Image(Box<dyn std::error::Error + Send + Sync>),
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
    /// A helper process, the container runtime or the proxy failed: their
    /// error, typed where it comes from this process (its sources kept), or
    /// the message another process reported.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
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
    /// The sandbox's policy does not load (`source`: the policy's error).
    pub fn policy(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DriverError {
        DriverError::Policy(source.into())
    }

    /// The image cannot be used: `source` says why and names it.
    pub fn image(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DriverError {
        DriverError::Image(source.into())
    }

    /// A failure of `source`: an error of this process, or a message
    /// (`String`/`&str`) another one reported.
    pub fn failed(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DriverError {
        DriverError::Failed(source.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("starting the proxy")]
    struct Outer(#[source] std::io::Error);

    /// A typed error keeps its message and its sources; a message stays one.
    #[test]
    fn failures_keep_the_error_they_come_from() {
        let e = DriverError::failed(Outer(std::io::Error::other("address in use")));
        assert_eq!(e.to_string(), "starting the proxy");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("address in use"));
        assert_eq!(e.code(), ErrorCode::Internal);

        let e = DriverError::policy(String::from("policy.yaml: line 3: unknown field `filesytem`"));
        assert_eq!(e.to_string(), "policy.yaml: line 3: unknown field `filesytem`");
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }
}
