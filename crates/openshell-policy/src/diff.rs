//! What changed between two policies, and whether the change can be applied to
//! a running sandbox (network policy only) or needs it recreated.

use serde::Serialize;
use serde_json::Value;

use crate::model::Policy;

/// Sections fixed at sandbox creation.
pub const STATIC_SECTIONS: &[&str] = &["version", "filesystem_policy", "landlock", "process", "resources"];

/// One changed field, by dotted path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub change: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// How a new policy can be applied to a sandbox running the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applicability {
    /// Nothing changed.
    Unchanged,
    /// Only network policies changed: hot-reloadable.
    Live,
    /// A static section changed: the sandbox must be recreated.
    Recreate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyDiff {
    pub applicability: Applicability,
    pub static_changes: Vec<FieldChange>,
    pub network_changes: Vec<FieldChange>,
}

/// Refusal to apply static changes to a live sandbox.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", describe_static(.changes))]
pub struct StaticChangeError {
    pub changes: Vec<FieldChange>,
}

fn describe_static(changes: &[FieldChange]) -> String {
    let mut sections: Vec<&str> = changes.iter().map(|c| c.field.split(['.', '[']).next().unwrap_or("")).collect();
    sections.dedup();
    let what = sections
        .iter()
        .map(|s| match *s {
            "filesystem_policy" => "filesystem policy",
            "landlock" => "landlock policy",
            "process" => "process policy",
            "resources" => "resource limits",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ");
    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    format!(
        "{what} cannot be changed on a live sandbox (fixed at creation); changed: {}; recreate the sandbox to apply it",
        fields.join(", ")
    )
}

impl PolicyDiff {
    /// Compares two policies field by field.
    pub fn between(old: &Policy, new: &Policy) -> PolicyDiff {
        let old_v = to_value(old);
        let new_v = to_value(new);
        let mut static_changes = Vec::new();
        let mut network_changes = Vec::new();
        for section in STATIC_SECTIONS {
            walk(section.to_string(), old_v.get(*section), new_v.get(*section), &mut static_changes);
        }
        walk(
            "network_policies".into(),
            old_v.get("network_policies"),
            new_v.get("network_policies"),
            &mut network_changes,
        );
        let applicability = if !static_changes.is_empty() {
            Applicability::Recreate
        } else if !network_changes.is_empty() {
            Applicability::Live
        } else {
            Applicability::Unchanged
        };
        PolicyDiff { applicability, static_changes, network_changes }
    }

    /// `Ok` when the new policy may replace the old one on a running sandbox.
    pub fn ensure_live(&self) -> Result<(), StaticChangeError> {
        if self.static_changes.is_empty() {
            Ok(())
        } else {
            Err(StaticChangeError { changes: self.static_changes.clone() })
        }
    }
}

fn to_value(p: &Policy) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

fn walk(path: String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (None, None) => {}
        (Some(o), None) => {
            out.push(FieldChange { field: path, change: ChangeKind::Removed, old: Some(o.clone()), new: None })
        }
        (None, Some(n)) => {
            out.push(FieldChange { field: path, change: ChangeKind::Added, old: None, new: Some(n.clone()) })
        }
        (Some(o), Some(n)) if o == n => {}
        (Some(Value::Object(o)), Some(Value::Object(n))) => {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(format!("{path}.{k}"), o.get(k), n.get(k), out);
            }
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) if o.len() == n.len() && o.iter().any(Value::is_object) => {
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                walk(format!("{path}[{i}]"), Some(a), Some(b), out);
            }
        }
        (Some(o), Some(n)) => out.push(FieldChange {
            field: path,
            change: ChangeKind::Changed,
            old: Some(o.clone()),
            new: Some(n.clone()),
        }),
    }
}
