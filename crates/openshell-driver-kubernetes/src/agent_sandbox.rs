//! Agent Sandbox (kubernetes-sigs/agent-sandbox): when the cluster serves its
//! `Sandbox` kind (group `agents.x-k8s.io`, found by API discovery the first time
//! the driver makes a pod), each sandbox's pod is made through a `Sandbox`
//! resource instead of directly: the same Pod (labels, annotations, spec) as its
//! `spec.podTemplate`, named like the pod, which Agent Sandbox's controller makes
//! under that name and owns. Everything after that (watch, log, exec,
//! portforward) goes to the pod as without it; deleting deletes the `Sandbox`
//! first, so that its controller does not make the pod again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::{ApiResource, DynamicObject};
use kube::discovery::ApiGroup;
use openshell_driver::DriverError;
use serde::Serialize;

use crate::api::error;

/// Agent Sandbox's API group and kind.
pub(crate) const GROUP: &str = "agents.x-k8s.io";
pub(crate) const KIND: &str = "Sandbox";

/// How the driver makes a sandbox's pod.
#[derive(Debug, Clone)]
pub(crate) enum Workload {
    /// A Pod, created directly.
    Pod,
    /// A `Sandbox` resource of this version, whose controller makes the Pod.
    AgentSandbox(ApiResource),
}

/// Asks the API server whether it serves Agent Sandbox's `Sandbox` (at the
/// group's preferred version).
pub(crate) async fn discover(client: &kube::Client) -> Result<Workload, DriverError> {
    match kube::discovery::group(client, GROUP).await {
        Ok(group) => Ok(kind(&group).map_or(Workload::Pod, Workload::AgentSandbox)),
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => Ok(Workload::Pod),
        Err(e) => Err(error(&format!("discovery of {GROUP}"), &e)),
    }
}

fn kind(group: &ApiGroup) -> Option<ApiResource> {
    group.recommended_kind(KIND).map(|(resource, _)| resource)
}

/// `spec` of a `Sandbox` (the fields the driver sets; the rest keep their defaults:
/// one replica, running, no Service, no expiry).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SandboxSpec {
    pod_template: PodTemplate,
}

#[derive(Serialize)]
struct PodTemplate {
    metadata: PodMetadata,
    spec: PodSpec,
}

#[derive(Serialize)]
struct PodMetadata {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// The `Sandbox` whose controller makes `pod` (same name, labels on both).
pub(crate) fn resource(pod: &Pod, kind: &ApiResource) -> Result<DynamicObject, DriverError> {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    let template = PodTemplate {
        metadata: PodMetadata { labels: labels.clone(), annotations: meta.annotations.clone().unwrap_or_default() },
        spec: pod.spec.clone().unwrap_or_default(),
    };
    let spec = serde_json::to_value(SandboxSpec { pod_template: template })
        .map_err(|e| DriverError::failed(format!("the Sandbox resource: {e}")))?;
    let mut object = DynamicObject::new(&name, kind).data(serde_json::json!({ "spec": spec }));
    object.metadata.labels = Some(labels);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn the_sandbox_carries_the_pod_whole_as_its_template() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("openshell-ab".into()),
                labels: Some(BTreeMap::from([("a".into(), "1".into())])),
                annotations: Some(BTreeMap::from([("run.openshell.init".into(), "idle".into())])),
                ..Default::default()
            },
            spec: Some(PodSpec { runtime_class_name: Some("openshell".into()), ..Default::default() }),
            status: None,
        };
        let kind = ApiResource {
            group: GROUP.into(),
            version: "v1alpha1".into(),
            api_version: format!("{GROUP}/v1alpha1"),
            kind: KIND.into(),
            plural: "sandboxes".into(),
        };
        let object = serde_json::to_value(resource(&pod, &kind).expect("resource")).expect("json");
        assert_eq!(object["apiVersion"], "agents.x-k8s.io/v1alpha1");
        assert_eq!(object["kind"], "Sandbox");
        assert_eq!(object["metadata"]["name"], "openshell-ab");
        assert_eq!(object["metadata"]["labels"]["a"], "1");
        let template = &object["spec"]["podTemplate"];
        assert_eq!(template["metadata"]["annotations"]["run.openshell.init"], "idle");
        assert_eq!(template["spec"]["runtimeClassName"], "openshell");
    }
}
