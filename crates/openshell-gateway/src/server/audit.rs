//! The gateway's audit log: one JSON line per mutating request and per refusal,
//! naming the caller (`local` on the owner-only socket; a remote client's
//! certificate name and role).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use openshell_gateway_api::ApiError;
use openshell_gateway_api::proto::Request;

use crate::tls::Caller;

/// In the gateway directory.
pub const AUDIT_FILE: &str = "audit.log";

pub struct AuditLog(Mutex<std::fs::File>);

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(AuditLog(Mutex::new(file)))
    }

    /// Records `request` of `caller`: allowed, or refused with `refused`.
    pub fn record(&self, caller: &Caller, request: &Request, refused: Option<&ApiError>) {
        let target = match request {
            Request::Create(c) => c.name.clone(),
            Request::ProviderCreate { name, .. } | Request::ProviderDelete { name } => Some(name.clone()),
            Request::InferenceSet { provider, .. } => Some(provider.clone()),
            Request::ImageUpload(u) => Some(format!("{}:{}@{}", u.name, u.tag, u.manifest)),
            other => other.sandbox().map(str::to_owned),
        };
        let line = serde_json::json!({
            "time": crate::now(),
            "caller": caller.name,
            "role": caller.role.as_str(),
            "op": request.op(),
            "target": target,
            "decision": if refused.is_some() { "refused" } else { "allowed" },
            "reason": refused.map(|e| e.message.clone()),
        });
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(file, "{line}") {
            tracing::error!(%e, "writing the audit log");
        }
    }
}
