//! The cluster-side objects that put `openshell-runtime` on every node: a
//! namespace, the installer's service account and its one permission (patch
//! nodes, to label its own), the ConfigMap with `install.sh` and the files it
//! installs, the DaemonSet that runs it, and the RuntimeClass `openshell`, which
//! schedules pods onto nodes the installer labeled.
//!
//! The DaemonSet's init container is privileged: it writes root-owned host files
//! (the runtime, containerd's config or K3s's templates, through hostPath
//! mounts of those directories only) and runs the host's own `containerd` (to
//! validate the new config with the version that will read it) and `systemctl`
//! (to restart containerd or K3s) in the host's mount namespace, through
//! `nsenter --target 1`, which needs the host's process list (hostPID). The
//! container that then keeps the pod Ready holds no capability, runs as nobody and
//! only sleeps: a pod that is Ready has installed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HostPathVolumeSource, Namespace,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, ResourceRequirements, SecurityContext, ServiceAccount, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::api::node::v1::{RuntimeClass, Scheduling};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::config::Config;
use crate::containerd::HANDLER;
use crate::error::ManifestError;
use crate::installer::{self, Flavor, Settings};

/// The installer's name: its DaemonSet, ConfigMap, service account and role.
pub const NAME: &str = "openshell-runtime-installer";
/// What keeps the pod running once the init container has installed.
const HOLD: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

/// One object of the node manifests, serialized as itself.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum NodeObject {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    ConfigMap(ConfigMap),
    DaemonSet(Box<DaemonSet>),
    RuntimeClass(RuntimeClass),
}

/// Every object a cluster of `flavor` nodes needs, in the order to apply them.
pub fn objects(config: &Config, flavor: Flavor) -> Vec<NodeObject> {
    vec![
        NodeObject::Namespace(namespace(config)),
        NodeObject::ServiceAccount(ServiceAccount { metadata: meta(NAME, Some(config)), ..Default::default() }),
        NodeObject::ClusterRole(cluster_role()),
        NodeObject::ClusterRoleBinding(cluster_role_binding(config)),
        NodeObject::ConfigMap(config_map(config, flavor)),
        NodeObject::DaemonSet(Box::new(daemon_set(config, flavor))),
        NodeObject::RuntimeClass(runtime_class()),
    ]
}

/// The objects as one YAML stream, `kubectl apply -f`'s input.
pub fn yaml(config: &Config, flavor: Flavor) -> Result<String, ManifestError> {
    let documents = serde_saphyr::to_string_multiple(&objects(config, flavor))
        .map_err(|source| ManifestError::Yaml { kind: "node", source })?;
    Ok(format!(
        "# openshell-runtime on {} nodes: `kubectl apply -f` this file.\n# Written by `openshell kubernetes \
         manifests` (crates/openshell-kubernetes); regenerate it, do not edit it.\n{documents}",
        flavor.name()
    ))
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), name.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "openshell".to_owned()),
    ])
}

/// Named, labeled, and in the config's namespace unless cluster-wide.
fn meta(name: &str, namespaced: Option<&Config>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespaced.map(|c| c.namespace().to_owned()),
        labels: Some(labels(name)),
        ..Default::default()
    }
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

/// Pod security admission must let the installer's privileged, hostPID pod in.
fn namespace(config: &Config) -> Namespace {
    let mut metadata = meta(config.namespace(), None);
    metadata.labels.get_or_insert_default().insert("pod-security.kubernetes.io/enforce".into(), "privileged".into());
    Namespace { metadata, ..Default::default() }
}

/// Patch nodes, nothing else: a merge patch adds the label without reading the
/// node first. (RBAC cannot narrow it to the pod's own node.)
fn cluster_role() -> ClusterRole {
    let rule = PolicyRule {
        api_groups: strings(&[""]),
        resources: strings(&["nodes"]),
        verbs: vec!["patch".to_owned()],
        ..Default::default()
    };
    ClusterRole { metadata: meta(NAME, None), rules: Some(vec![rule]), ..Default::default() }
}

fn cluster_role_binding(config: &Config) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(NAME, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: NAME.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: NAME.into(),
            namespace: Some(config.namespace().to_owned()),
            ..Default::default()
        }]),
    }
}

fn config_map(config: &Config, flavor: Flavor) -> ConfigMap {
    ConfigMap {
        metadata: meta(NAME, Some(config)),
        data: Some(installer::files(flavor, config.binary()).into_iter().collect()),
        ..Default::default()
    }
}

fn runtime_class() -> RuntimeClass {
    let (key, value) = installer::NODE_LABEL;
    RuntimeClass {
        metadata: meta(HANDLER, None),
        handler: HANDLER.to_owned(),
        scheduling: Some(Scheduling {
            node_selector: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One node at a time when the DaemonSet changes: each restarts its containerd.
fn daemon_set(config: &Config, flavor: Flavor) -> DaemonSet {
    let selector = LabelSelector { match_labels: Some(labels(NAME)), ..Default::default() };
    let rolling = RollingUpdateDaemonSet { max_unavailable: Some(IntOrString::Int(1)), ..Default::default() };
    DaemonSet {
        metadata: meta(NAME, Some(config)),
        spec: Some(DaemonSetSpec {
            selector,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(NAME)), ..Default::default() }),
                spec: Some(pod_spec(config, flavor)),
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(rolling),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every Linux x86_64 node (the runtime's one architecture), tainted or not.
fn pod_spec(config: &Config, flavor: Flavor) -> PodSpec {
    PodSpec {
        service_account_name: Some(NAME.to_owned()),
        host_pid: Some(true),
        node_selector: Some(BTreeMap::from([
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
        ])),
        tolerations: Some(vec![Toleration { operator: Some("Exists".into()), ..Default::default() }]),
        init_containers: Some(vec![install_container(config, flavor)]),
        containers: vec![hold_container(config)],
        volumes: Some(volumes(config, flavor)),
        termination_grace_period_seconds: Some(5),
        ..Default::default()
    }
}

fn resources(request: &str, limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("10m".into())),
            ("memory".to_owned(), Quantity(request.into())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity(limit.into()))])),
        ..Default::default()
    }
}

fn install_container(config: &Config, flavor: Flavor) -> Container {
    let settings = Settings::in_pod(flavor, config.binary());
    let mut env: Vec<EnvVar> = settings
        .environment()
        .into_iter()
        .map(|(name, value)| EnvVar { name: name.into(), value: Some(value), ..Default::default() })
        .collect();
    env.push(EnvVar {
        name: "NODE_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "spec.nodeName".into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    });
    Container {
        name: "install".into(),
        image: Some(config.image().to_owned()),
        command: strings(&["/bin/sh", &format!("{}/{}", installer::FILES_MOUNT, installer::SCRIPT_NAME)]),
        env: Some(env),
        security_context: Some(SecurityContext { privileged: Some(true), ..Default::default() }),
        resources: Some(resources("32Mi", "256Mi")),
        volume_mounts: Some(host_mounts(config, flavor).into_iter().map(|(mount, _)| mount).collect()),
        ..Default::default()
    }
}

fn hold_container(config: &Config) -> Container {
    Container {
        name: "hold".into(),
        image: Some(config.image().to_owned()),
        command: strings(&["/bin/sh", "-c", HOLD]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: strings(&["ALL"]), ..Default::default() }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(65534),
            ..Default::default()
        }),
        resources: Some(resources("8Mi", "16Mi")),
        ..Default::default()
    }
}

/// The installer's mounts with their volumes: the ConfigMap, and each host
/// directory it writes to under [`installer::HOST_MOUNT`].
fn host_mounts(config: &Config, flavor: Flavor) -> Vec<(VolumeMount, Volume)> {
    let files = Volume {
        name: "files".into(),
        config_map: Some(ConfigMapVolumeSource { name: NAME.into(), default_mode: Some(0o444), ..Default::default() }),
        ..Default::default()
    };
    let files_mount = VolumeMount {
        name: "files".into(),
        mount_path: installer::FILES_MOUNT.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let (name, dir, type_) = match flavor {
        Flavor::Containerd => ("containerd-config", parent(installer::CONTAINERD_CONFIG), "DirectoryOrCreate"),
        Flavor::K3s => ("k3s-containerd", installer::K3S_DIR, "Directory"),
    };
    vec![
        (files_mount, files),
        host_dir("runtime-dir", config.binary().dir(), "DirectoryOrCreate"),
        host_dir(name, dir, type_),
    ]
}

fn host_dir(name: &str, dir: &str, type_: &str) -> (VolumeMount, Volume) {
    let mount = VolumeMount {
        name: name.into(),
        mount_path: format!("{}{}", installer::HOST_MOUNT, dir),
        ..Default::default()
    };
    let volume = Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: dir.into(), type_: Some(type_.into()) }),
        ..Default::default()
    };
    (mount, volume)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("/", |(dir, _)| dir)
}

fn volumes(config: &Config, flavor: Flavor) -> Vec<Volume> {
    host_mounts(config, flavor).into_iter().map(|(_, volume)| volume).collect()
}
