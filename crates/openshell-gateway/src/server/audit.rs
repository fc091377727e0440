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
        // One write of the whole line: `writeln!` with a JSON value makes one
        // write(2) per token, which other gateways appending to this file
        // (replicas sharing the directory) could interleave with theirs.
        let line = format!("{line}\n");
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::error!(%e, "writing the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two gateways sharing a directory append to one audit log at once: every
    /// line stays whole.
    #[test]
    fn lines_from_two_gateways_at_once_stay_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(AUDIT_FILE);
        let logs = [AuditLog::open(&path).expect("open"), AuditLog::open(&path).expect("open")];
        let (threads, each) = (4, 300);
        std::thread::scope(|scope| {
            for log in &logs {
                for t in 0..threads {
                    scope.spawn(move || {
                        let caller = Caller::owner();
                        for n in 0..each {
                            let request =
                                Request::ProviderDelete { name: format!("provider-{t}-{n}-{}", "x".repeat(64)) };
                            log.record(&caller, &request, None);
                        }
                    });
                }
            }
        });
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 * threads * each);
        for line in lines {
            let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(parsed["op"], "provider.delete");
        }
    }
}
