//! The API over gRPC: the code generated from `proto/openshell/gateway/v1`, and
//! the conversions between its messages and [`crate::proto`]'s, so the gateway
//! answers one set of requests whichever way they came.

use tonic::Status;

use crate::error::{ApiError, ErrorCode};
use crate::proto;

/// The generated messages, client and server of `openshell.gateway.v1`.
/// (Generated code: a run's `started` event is larger than its other events,
/// and prost keeps oneof variants unboxed.)
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("openshell.gateway.v1");
}

/// The metadata entry of a failed call that names its stable [`ErrorCode`].
pub const ERROR_CODE_KEY: &str = "x-openshell-error";

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = match e.code {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::NotFound | ErrorCode::ImageNotFound => tonic::Code::NotFound,
            ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Unsupported => tonic::Code::Unimplemented,
            ErrorCode::Internal => tonic::Code::Internal,
        };
        let mut status = Status::new(code, e.message);
        status.metadata_mut().insert(ERROR_CODE_KEY, tonic::metadata::MetadataValue::from_static(e.code.as_str()));
        status
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> ApiError {
        let named = status.metadata().get(ERROR_CODE_KEY).and_then(|v| v.to_str().ok());
        let code = ErrorCode::ALL.into_iter().find(|c| Some(c.as_str()) == named).unwrap_or(match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => ErrorCode::InvalidArgument,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::AlreadyExists => ErrorCode::AlreadyExists,
            tonic::Code::FailedPrecondition | tonic::Code::Aborted => ErrorCode::FailedPrecondition,
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => ErrorCode::PermissionDenied,
            tonic::Code::Unimplemented => ErrorCode::Unsupported,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        });
        ApiError::new(code, status.message())
    }
}

fn phase_to(p: proto::Phase) -> v1::Phase {
    match p {
        proto::Phase::Created => v1::Phase::Created,
        proto::Phase::Running => v1::Phase::Running,
        proto::Phase::Stopped => v1::Phase::Stopped,
        proto::Phase::Dead => v1::Phase::Dead,
    }
}

fn phase_from(p: i32) -> Result<proto::Phase, ApiError> {
    match v1::Phase::try_from(p) {
        Ok(v1::Phase::Created) => Ok(proto::Phase::Created),
        Ok(v1::Phase::Running) => Ok(proto::Phase::Running),
        Ok(v1::Phase::Stopped) => Ok(proto::Phase::Stopped),
        Ok(v1::Phase::Dead) => Ok(proto::Phase::Dead),
        _ => Err(ApiError::invalid(format!("unknown sandbox phase {p}"))),
    }
}

impl From<proto::SandboxInfo> for v1::Sandbox {
    fn from(s: proto::SandboxInfo) -> v1::Sandbox {
        v1::Sandbox {
            id: s.id,
            name: s.name,
            image: s.image,
            image_digest: s.image_digest,
            policy_name: s.policy_name,
            policy_revision: s.policy_revision,
            command: s.command,
            phase: phase_to(s.phase) as i32,
            exit_code: s.exit_code,
            pid: s.pid,
            created: s.created,
            started: s.started,
            finished: s.finished,
            owner: s.owner,
        }
    }
}

impl TryFrom<v1::Sandbox> for proto::SandboxInfo {
    type Error = ApiError;
    fn try_from(s: v1::Sandbox) -> Result<proto::SandboxInfo, ApiError> {
        Ok(proto::SandboxInfo {
            id: s.id,
            name: s.name,
            image: s.image,
            image_digest: s.image_digest,
            policy_name: s.policy_name,
            policy_revision: s.policy_revision,
            command: s.command,
            phase: phase_from(s.phase)?,
            exit_code: s.exit_code,
            pid: s.pid,
            created: s.created,
            started: s.started,
            finished: s.finished,
            owner: s.owner,
        })
    }
}

impl From<proto::CreateRequest> for v1::CreateRequest {
    fn from(r: proto::CreateRequest) -> v1::CreateRequest {
        v1::CreateRequest {
            name: r.name,
            image: Some(v1::ImageRef { reference: r.image.reference, digest: r.image.digest }),
            policy_name: r.policy_name,
            policy: r.policy,
            command: r.command,
            env: r.env,
            rm: r.rm,
            attach: r.attach,
        }
    }
}

impl TryFrom<v1::CreateRequest> for proto::CreateRequest {
    type Error = ApiError;
    fn try_from(r: v1::CreateRequest) -> Result<proto::CreateRequest, ApiError> {
        let image = r.image.ok_or_else(|| ApiError::invalid("create: no image"))?;
        Ok(proto::CreateRequest {
            name: r.name,
            image: proto::ImageRef { reference: image.reference, digest: image.digest },
            policy_name: r.policy_name,
            policy: r.policy,
            command: r.command,
            env: r.env,
            rm: r.rm,
            attach: r.attach,
        })
    }
}

impl From<proto::GatewayStatus> for v1::GatewayStatus {
    fn from(s: proto::GatewayStatus) -> v1::GatewayStatus {
        v1::GatewayStatus {
            pid: s.pid,
            version: s.version,
            dir: s.dir.display().to_string(),
            socket: s.socket.display().to_string(),
            store: s.store.display().to_string(),
            started: s.started,
            sandboxes: s.sandboxes as u64,
            running: s.running as u64,
            driver: s.driver,
            database: s.database,
            replica: s.replica,
        }
    }
}

impl From<v1::GatewayStatus> for proto::GatewayStatus {
    fn from(s: v1::GatewayStatus) -> proto::GatewayStatus {
        proto::GatewayStatus {
            pid: s.pid,
            version: s.version,
            dir: s.dir.into(),
            socket: s.socket.into(),
            store: s.store.into(),
            started: s.started,
            sandboxes: s.sandboxes as usize,
            running: s.running as usize,
            driver: s.driver,
            database: s.database,
            replica: s.replica,
        }
    }
}

impl From<proto::PolicyRevision> for v1::PolicyRevision {
    fn from(r: proto::PolicyRevision) -> v1::PolicyRevision {
        v1::PolicyRevision { revision: r.revision, name: r.name, created: r.created, text: r.text }
    }
}

impl From<v1::PolicyRevision> for proto::PolicyRevision {
    fn from(r: v1::PolicyRevision) -> proto::PolicyRevision {
        proto::PolicyRevision { revision: r.revision, name: r.name, created: r.created, text: r.text }
    }
}

impl From<proto::ProviderInfo> for v1::Provider {
    fn from(p: proto::ProviderInfo) -> v1::Provider {
        v1::Provider {
            name: p.name,
            kind: p.kind,
            base_url: p.base_url,
            credential_name: p.credential_name,
            created: p.created,
        }
    }
}

impl From<v1::Provider> for proto::ProviderInfo {
    fn from(p: v1::Provider) -> proto::ProviderInfo {
        proto::ProviderInfo {
            name: p.name,
            kind: p.kind,
            base_url: p.base_url,
            credential_name: p.credential_name,
            created: p.created,
        }
    }
}

impl From<proto::RouteInfo> for v1::Route {
    fn from(r: proto::RouteInfo) -> v1::Route {
        v1::Route {
            provider: r.provider,
            kind: r.kind,
            base_url: r.base_url,
            model: r.model,
            timeout_secs: r.timeout_secs,
        }
    }
}

impl From<v1::Route> for proto::RouteInfo {
    fn from(r: v1::Route) -> proto::RouteInfo {
        proto::RouteInfo {
            provider: r.provider,
            kind: r.kind,
            base_url: r.base_url,
            model: r.model,
            timeout_secs: r.timeout_secs,
        }
    }
}

impl From<proto::ImageUpload> for v1::ImageUpload {
    fn from(u: proto::ImageUpload) -> v1::ImageUpload {
        v1::ImageUpload {
            name: u.name,
            tag: u.tag,
            manifest: u.manifest,
            config: u.config,
            layers: u.layers,
            size: u.size,
            uncompressed_size: u.uncompressed_size,
        }
    }
}

impl From<v1::ImageUpload> for proto::ImageUpload {
    fn from(u: v1::ImageUpload) -> proto::ImageUpload {
        proto::ImageUpload {
            name: u.name,
            tag: u.tag,
            manifest: u.manifest,
            config: u.config,
            layers: u.layers,
            size: u.size,
            uncompressed_size: u.uncompressed_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_survives_a_status() {
        for code in ErrorCode::ALL {
            let back = ApiError::from(Status::from(ApiError::new(code, "m")));
            assert_eq!((back.code, back.message.as_str()), (code, "m"));
        }
        // A status from elsewhere (no metadata) gets the code of its meaning.
        assert_eq!(ApiError::from(Status::not_found("x")).code, ErrorCode::NotFound);
        assert_eq!(ApiError::from(Status::unavailable("x")).code, ErrorCode::Unavailable);
    }

    #[test]
    fn a_sandbox_survives_the_wire() {
        let info = proto::SandboxInfo {
            id: "a1".into(),
            name: "n".into(),
            image: "img:1".into(),
            image_digest: "sha256:00".into(),
            policy_name: "p".into(),
            policy_revision: 3,
            command: vec!["sh".into()],
            phase: proto::Phase::Stopped,
            exit_code: Some(3),
            pid: None,
            created: 1,
            started: Some(2),
            finished: Some(3),
            owner: "alice".into(),
        };
        assert_eq!(proto::SandboxInfo::try_from(v1::Sandbox::from(info.clone())).expect("back"), info);
        let unknown = v1::Sandbox { phase: 99, ..v1::Sandbox::from(info) };
        assert_eq!(proto::SandboxInfo::try_from(unknown).expect_err("phase 99").code, ErrorCode::InvalidArgument);
    }
}
