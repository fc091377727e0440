//! Agent Sandbox on the test's API server, when started with it: discovery
//! (`/apis`, the group, its version's resource list, on k8s-openapi's types), and
//! `Sandbox` resources (create, get, delete), each decoded strictly into the
//! types below (v1alpha1's schema). Its "controller" makes each Sandbox's pod at
//! once: named like it, the template's labels, annotations and spec, owned by it;
//! deleting the Sandbox deletes the pod (as the garbage collector would).

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery, ObjectMeta, OwnerReference,
};
use serde::{Deserialize, Serialize};

use super::{Body, Response, Shared, StatusCode, json_response, status, strictly};

pub const GROUP: &str = "agents.x-k8s.io";
pub const VERSION: &str = "v1alpha1";

/// `Sandbox` (agents.x-k8s.io/v1alpha1), every field its schema has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentSandbox {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: AgentSandboxSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentSandboxSpec {
    pub pod_template: PodTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodTemplate {
    pub spec: PodSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodMetadata>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// `/apis`: the group only when Agent Sandbox is installed.
pub fn groups(installed: bool) -> Response<Body> {
    let version = GroupVersionForDiscovery { group_version: format!("{GROUP}/{VERSION}"), version: VERSION.into() };
    let group = APIGroup {
        name: GROUP.into(),
        versions: vec![version.clone()],
        preferred_version: Some(version),
        server_address_by_client_cidrs: None,
    };
    let groups = if installed { vec![group] } else { Vec::new() };
    json_response(StatusCode::OK, &APIGroupList { groups })
}

/// `/apis/agents.x-k8s.io/v1alpha1`.
pub fn resources() -> Response<Body> {
    let verbs = ["create", "delete", "get", "list", "patch", "update", "watch"].map(String::from).to_vec();
    let sandboxes = APIResource {
        name: "sandboxes".into(),
        singular_name: "sandbox".into(),
        namespaced: true,
        kind: "Sandbox".into(),
        verbs,
        ..Default::default()
    };
    json_response(
        StatusCode::OK,
        &APIResourceList { group_version: format!("{GROUP}/{VERSION}"), resources: vec![sandboxes] },
    )
}

/// Creates the Sandbox and, as its controller, its pod.
pub fn create(shared: &Shared, ns: &str, body: &serde_json::Value) -> Response<Body> {
    let mut sandbox: AgentSandbox = match strictly(body) {
        Ok(sandbox) => sandbox,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &format!("strict decoding error: {e}")),
    };
    let name = sandbox.metadata.name.clone().unwrap_or_default();
    let uid = format!("uid-sandbox-{name}");
    {
        let mut state = shared.0.lock().expect("state");
        if state.sandboxes.contains_key(&name) {
            return status(StatusCode::CONFLICT, "AlreadyExists", &format!("sandboxes \"{name}\" already exists"));
        }
        sandbox.metadata.namespace = Some(ns.to_owned());
        sandbox.metadata.uid = Some(uid.clone());
        state.sandboxes.insert(name.clone(), sandbox.clone());
    }
    let template = sandbox.spec.pod_template.clone();
    let (labels, annotations) = template.metadata.map(|m| (m.labels, m.annotations)).unwrap_or_default();
    let owner = OwnerReference {
        api_version: format!("{GROUP}/{VERSION}"),
        kind: "Sandbox".into(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let pod = k8s_openapi::api::core::v1::Pod {
        metadata: ObjectMeta {
            name: Some(name),
            labels,
            annotations,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(template.spec),
        status: None,
    };
    let made = super::create(shared, ns, &serde_json::to_value(&pod).expect("pod"));
    if made.status() != StatusCode::CREATED {
        return made;
    }
    json_response(StatusCode::CREATED, &sandbox)
}

pub fn get(shared: &Shared, name: &str) -> Response<Body> {
    match shared.0.lock().expect("state").sandboxes.get(name) {
        Some(sandbox) => json_response(StatusCode::OK, sandbox),
        None => status(StatusCode::NOT_FOUND, "NotFound", &format!("sandboxes \"{name}\" not found")),
    }
}

/// Deletes the Sandbox and the pod it owns (its default grace period).
pub fn delete(shared: &Shared, name: &str) -> Response<Body> {
    let Some(sandbox) = shared.0.lock().expect("state").sandboxes.remove(name) else {
        return status(StatusCode::NOT_FOUND, "NotFound", &format!("sandboxes \"{name}\" not found"));
    };
    let _ = super::delete(shared, name, 30);
    json_response(StatusCode::OK, &sandbox)
}
