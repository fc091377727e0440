//! The Pod a sandbox runs as: RuntimeClass `openshell` (so the node's
//! openshell-runtime runs it), the image by digest, the sandbox's policy and its
//! digest by annotation (what the runtime applies and checks at creation), the
//! driver's key for live policy updates,
//! openshell's init as process 1 (`run.openshell.init`), labels naming the
//! sandbox, no service account token, never restarted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use openshell_driver::Job;

/// Labels on every pod of the driver.
pub const LABEL_SANDBOX: &str = "openshell.run/sandbox";
pub const LABEL_MANAGED: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "openshell-gateway";
/// The pod annotations openshell-runtime reads (see its `policy` and `pod` modules).
pub const POLICY_YAML: &str = "run.openshell.policy.yaml";
pub const POLICY_DIGEST: &str = "run.openshell.policy.digest";
pub const INIT: &str = "run.openshell.init";
/// The command of an idle sandbox's container: never executed (its process 1 is
/// openshell's idle init), but the CRI wants one.
pub const IDLE_COMMAND: &str = "openshell-idle";
/// The sandbox's one container.
pub const CONTAINER: &str = "sandbox";

/// The pod's name for sandbox `id`.
pub fn pod_name(id: &str) -> String {
    format!("openshell-{}", id.to_ascii_lowercase())
}

/// `sha256:HEX` of the policy's bytes (what the runtime checks the policy against).
pub fn policy_digest(text: &str) -> String {
    openshell_store::Digest::sha256(text.as_bytes()).to_string()
}

/// What a pod is made of, besides its job.
pub struct PodTemplate<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub image: &'a str,
    pub runtime_class: &'a str,
    pub policy: &'a str,
    /// The driver's key for live policy updates (`run.openshell.policy.signer`).
    pub signer: &'a str,
    /// The policy's stated resources (the container's limits).
    pub resources: &'a openshell_policy::model::Resources,
}

/// The container's limits from the policy's resources: memory, CPU and the
/// writable layer's size (ephemeral storage). Kubernetes takes requests equal to
/// the limits when none are given, so the scheduler places the pod by them; the
/// node's runtime applies the same figures as ceilings.
pub fn limits(resources: &openshell_policy::model::Resources) -> Option<ResourceRequirements> {
    let mut limits = BTreeMap::new();
    if let Some(memory) = resources.memory {
        limits.insert("memory".to_owned(), Quantity(memory.to_string()));
    }
    if let Some(millis) = resources.cpu_millis {
        limits.insert("cpu".to_owned(), Quantity(format!("{millis}m")));
    }
    if let Some(disk) = resources.disk {
        limits.insert("ephemeral-storage".to_owned(), Quantity(disk.to_string()));
    }
    (!limits.is_empty()).then(|| ResourceRequirements { limits: Some(limits), ..Default::default() })
}

impl PodTemplate<'_> {
    /// The pod running `job` (no command: idle, processes join with exec).
    pub fn pod(&self, job: &Job) -> Pod {
        let labels = BTreeMap::from([
            (LABEL_SANDBOX.to_owned(), self.id.to_owned()),
            (LABEL_MANAGED.to_owned(), MANAGED_BY.to_owned()),
        ]);
        let (init, command) =
            if job.args.is_empty() { ("idle", vec![IDLE_COMMAND.to_owned()]) } else { ("supervise", job.args.clone()) };
        let annotations = BTreeMap::from([
            (POLICY_YAML.to_owned(), self.policy.to_owned()),
            (POLICY_DIGEST.to_owned(), policy_digest(self.policy)),
            (INIT.to_owned(), init.to_owned()),
            (openshell_policy_update::SIGNER_ANNOTATION.to_owned(), self.signer.to_owned()),
            ("openshell.run/name".to_owned(), self.name.to_owned()),
        ]);
        let env = job
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| EnvVar { name: k.to_owned(), value: Some(v.to_owned()), value_from: None })
            .collect();
        let container = Container {
            name: CONTAINER.to_owned(),
            image: Some(self.image.to_owned()),
            command: Some(command),
            env: Some(env),
            resources: limits(self.resources),
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(pod_name(self.id)),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(PodSpec {
                runtime_class_name: Some(self.runtime_class.to_owned()),
                restart_policy: Some("Never".to_owned()),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                containers: vec![container],
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// How a pod's container ended, if it has: (exit code, when, in seconds since the epoch).
pub fn terminated(pod: &Pod) -> Option<(i32, u64)> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let state = statuses.iter().find(|s| s.name == CONTAINER)?.state.as_ref()?;
    let t = state.terminated.as_ref()?;
    let finished = t.finished_at.as_ref().map(|f| f.0.as_second()).unwrap_or(0);
    Some((t.exit_code, u64::try_from(finished).unwrap_or(0)))
}

/// Whether the pod's container runs.
pub fn running(pod: &Pod) -> bool {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses
        .into_iter()
        .flatten()
        .any(|s| s.name == CONTAINER && s.state.as_ref().is_some_and(|st| st.running.is_some()))
}

/// Why a pod cannot run, when Kubernetes says so (an image that cannot be
/// pulled, a container the runtime refused, a pod that failed to schedule).
pub fn stuck(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let statuses = status.container_statuses.as_ref();
    let waiting = statuses.into_iter().flatten().filter_map(|s| s.state.as_ref()?.waiting.as_ref()).find(|w| {
        matches!(
            w.reason.as_deref(),
            Some(
                "ErrImagePull"
                    | "ImagePullBackOff"
                    | "CreateContainerError"
                    | "CreateContainerConfigError"
                    | "InvalidImageName"
                    | "RunContainerError"
            )
        )
    });
    if let Some(w) = waiting {
        return Some(format!("{}: {}", w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default()));
    }
    (status.phase.as_deref() == Some("Failed") && terminated(pod).is_none())
        .then(|| format!("the pod failed: {}", status.message.clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> PodTemplate<'static> {
        PodTemplate {
            id: "AB12",
            name: "dev",
            image: "r.test/openshell/sandboxes@sha256:00",
            runtime_class: "openshell",
            policy: "version: 1\n",
            signer: "ed25519:AAAA",
            resources: &RESOURCES,
        }
    }

    #[test]
    fn a_job_runs_under_openshells_init_and_no_job_idles() {
        let job =
            Job { args: vec!["/bin/sh".into(), "-c".into(), "true".into()], env: vec!["A=1".into(), "B=x=y".into()] };
        let pod = template().pod(&job);
        let annotations = pod.metadata.annotations.clone().expect("annotations");
        assert_eq!(annotations[INIT], "supervise");
        assert_eq!(annotations[POLICY_DIGEST], policy_digest("version: 1\n"));
        assert_eq!(pod.metadata.name.as_deref(), Some("openshell-ab12"));
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        assert_eq!(container.command.as_ref(), Some(&job.args));
        let env: Vec<(String, Option<String>)> =
            container.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone())).collect();
        assert_eq!(env, [("A".into(), Some("1".into())), ("B".into(), Some("x=y".into()))]);
        let idle = template().pod(&Job { args: vec![], env: vec![] });
        assert_eq!(idle.metadata.annotations.expect("annotations")[INIT], "idle");
        assert_eq!(idle.spec.expect("spec").containers[0].command, Some(vec![IDLE_COMMAND.to_owned()]));
    }

    static RESOURCES: openshell_policy::model::Resources = openshell_policy::model::Resources {
        memory: Some(1 << 30),
        pids: Some(64),
        cpu_millis: Some(1500),
        open_files: None,
        disk: None,
        logs: None,
    };

    #[test]
    fn the_policys_resources_are_the_containers_limits() {
        let pod = template().pod(&Job { args: vec![], env: vec![] });
        let limits =
            pod.spec.expect("spec").containers[0].resources.clone().expect("resources").limits.expect("limits");
        assert_eq!(limits["memory"], Quantity("1073741824".into()));
        assert_eq!(limits["cpu"], Quantity("1500m".into()));
        assert!(!limits.contains_key("ephemeral-storage"));
        assert!(super::limits(&openshell_policy::model::Resources::default()).is_none());
    }

    #[test]
    fn the_policy_digest_is_sha256_of_its_bytes() {
        // sha256("") is well known.
        assert_eq!(policy_digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
