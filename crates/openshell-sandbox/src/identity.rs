//! Turning the policy's `run_as_user` / `run_as_group` into numeric ids, using the
//! image's own `/etc/passwd` and `/etc/group` (never the host's).

use openshell_policy::model::Identity;

/// Why an identity could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the image has no `{name}` {what} in its {file}; the policy runs the sandbox as `{name}`")]
    Missing { name: String, what: &'static str, file: &'static str },
    #[error("{file}: the `{name}` entry resolves to id 0 (root), which a sandbox may never run as")]
    Root { name: String, file: &'static str },
    #[error("{file} line {line}: malformed entry `{text}`")]
    Malformed { file: &'static str, line: usize, text: String },
}

fn lookup(db: &str, name: &str, file: &'static str, what: &'static str, field: usize) -> Result<u32, IdentityError> {
    for (i, line) in db.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            continue;
        }
        let id: u32 = fields.get(field).and_then(|f| f.parse().ok()).ok_or_else(|| IdentityError::Malformed {
            file,
            line: i + 1,
            text: line.to_owned(),
        })?;
        if id == 0 {
            return Err(IdentityError::Root { name: name.to_owned(), file });
        }
        return Ok(id);
    }
    Err(IdentityError::Missing { name: name.to_owned(), what, file })
}

/// The uid of `id`: numeric ids as they are, `sandbox` from the image's `/etc/passwd`.
pub fn resolve_user(id: Identity, passwd: &str) -> Result<u32, IdentityError> {
    match id {
        Identity::Id(n) => Ok(n),
        Identity::Sandbox => lookup(passwd, "sandbox", "/etc/passwd", "user", 2),
    }
}

/// The gid of `id`: numeric ids as they are, `sandbox` from the image's `/etc/group`.
pub fn resolve_group(id: Identity, group: &str) -> Result<u32, IdentityError> {
    match id {
        Identity::Id(n) => Ok(n),
        Identity::Sandbox => lookup(group, "sandbox", "/etc/group", "group", 2),
    }
}
