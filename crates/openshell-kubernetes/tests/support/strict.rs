//! Strict decoding of manifests into k8s-openapi's types. Those types skip fields
//! they do not know, so a document is decoded, encoded again and compared with
//! itself: a misspelled or unknown field, or a value the type would change, is a
//! difference, named by its path.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a document is not strict; a failing test prints it.
#[derive(Debug)]
#[allow(dead_code, reason = "read through Debug when a test fails")]
pub enum NotStrict {
    /// No type here for this apiVersion and kind.
    UnknownKind(String),
    /// The document does not decode into its type.
    Decode { kind: String, error: serde_json::Error },
    /// Decoded and encoded again, the document differs at `path`.
    Differs { kind: String, path: String, original: Value, decoded: Value },
}

/// Decodes one document (a YAML or JSON value) strictly; returns its kind.
pub fn decode(doc: &Value) -> Result<String, NotStrict> {
    let text = |key: &str| doc.get(key).and_then(Value::as_str).unwrap_or("");
    let kind = format!("{}/{}", text("apiVersion"), text("kind"));
    match kind.as_str() {
        "v1/Namespace" => round_trip::<Namespace>(doc, &kind),
        "v1/ServiceAccount" => round_trip::<ServiceAccount>(doc, &kind),
        "v1/ConfigMap" => round_trip::<ConfigMap>(doc, &kind),
        "v1/Service" => round_trip::<Service>(doc, &kind),
        "v1/PersistentVolumeClaim" => round_trip::<PersistentVolumeClaim>(doc, &kind),
        "apps/v1/DaemonSet" => round_trip::<DaemonSet>(doc, &kind),
        "apps/v1/Deployment" => round_trip::<Deployment>(doc, &kind),
        "rbac.authorization.k8s.io/v1/ClusterRole" => round_trip::<ClusterRole>(doc, &kind),
        "rbac.authorization.k8s.io/v1/ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(doc, &kind),
        "rbac.authorization.k8s.io/v1/Role" => round_trip::<Role>(doc, &kind),
        "rbac.authorization.k8s.io/v1/RoleBinding" => round_trip::<RoleBinding>(doc, &kind),
        "node.k8s.io/v1/RuntimeClass" => round_trip::<RuntimeClass>(doc, &kind),
        _ => Err(NotStrict::UnknownKind(kind.clone())),
    }?;
    Ok(kind)
}

fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value, kind: &str) -> Result<(), NotStrict> {
    let typed: T =
        serde_json::from_value(doc.clone()).map_err(|error| NotStrict::Decode { kind: kind.to_owned(), error })?;
    let decoded = serde_json::to_value(&typed).map_err(|error| NotStrict::Decode { kind: kind.to_owned(), error })?;
    match first_difference(doc, &decoded, String::new()) {
        None => Ok(()),
        Some((path, original, decoded)) => Err(NotStrict::Differs { kind: kind.to_owned(), path, original, decoded }),
    }
}

/// Where `a` and `b` first differ (`spec.template.spec.hostPid`), with both values there.
fn first_difference(a: &Value, b: &Value, path: String) -> Option<(String, Value, Value)> {
    let at = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
            keys.map(|k| (k, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null)))
                .find_map(|(k, x, y)| first_difference(x, y, at(k)))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]")))
        }
        _ if a == b => None,
        _ => Some((path, a.clone(), b.clone())),
    }
}

/// Every document of a YAML stream, empty ones (a template that rendered
/// nothing) left out.
pub fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("not YAML ({e}):\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}
