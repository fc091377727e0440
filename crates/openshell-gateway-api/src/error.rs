//! Errors as they cross the API: a stable code (what programs match on, carried
//! by `--output json`) and a message for people.

use serde::{Deserialize, Serialize};

/// What kind of failure an answer reports. The names are stable: scripts match
/// them, and each maps onto the gRPC status code of the same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request itself is wrong (a bad name, a policy that does not load).
    InvalidArgument,
    /// The sandbox, provider or route named does not exist.
    NotFound,
    /// The gateway's store has no image of that manifest digest: upload it.
    ImageNotFound,
    /// A sandbox or provider of that name exists already.
    AlreadyExists,
    /// Not possible in the current state (not running, a live policy change
    /// outside the network section, a provider the route uses).
    FailedPrecondition,
    /// The caller may not do this.
    PermissionDenied,
    /// The gateway (or a driver) cannot be reached or did not answer.
    Unavailable,
    /// The request speaks another version of the API.
    Unsupported,
    /// A driver or the gateway failed doing what was asked.
    Internal,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::ImageNotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::FailedPrecondition,
        ErrorCode::PermissionDenied,
        ErrorCode::Unavailable,
        ErrorCode::Unsupported,
        ErrorCode::Internal,
    ];

    /// The stable name (`not_found`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ImageNotFound => "image_not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure as the gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl std::fmt::Display) -> ApiError {
        ApiError { code, message: message.to_string() }
    }
    pub fn invalid(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }
    pub fn precondition(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::FailedPrecondition, message)
    }
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::Internal, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_their_stable_names_on_the_wire() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).expect("json");
            assert_eq!(json, serde_json::Value::from(code.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(json).expect("back"), code);
        }
    }
}
