//! The Kubernetes API on the driver's own tokio runtime (kube's client is async;
//! the driver's interface is not), and how a sandbox's pod is made and deleted:
//! directly, or through Agent Sandbox's `Sandbox` when the cluster serves it.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use openshell_driver::DriverError;

use crate::agent_sandbox::{self, Workload};

/// How long Agent Sandbox's controller may take to make a `Sandbox`'s pod.
const POD_MADE: Duration = Duration::from_secs(60);

pub(crate) struct Api {
    pub runtime: tokio::runtime::Runtime,
    pub pods: kube::Api<Pod>,
    /// The inference route's Secret (`route`).
    pub secrets: kube::Api<Secret>,
    client: kube::Client,
    namespace: String,
    /// Found by discovery when the first pod is made.
    workload: OnceLock<Workload>,
}

/// A kube error, for people: the API server's own message when it answered.
pub(crate) fn error(what: &str, e: &kube::Error) -> DriverError {
    match e {
        kube::Error::Api(status) => {
            DriverError::failed(format!("Kubernetes API, {what}: {} ({})", status.message, status.code))
        }
        other => DriverError::failed(format!("Kubernetes API, {what}: {other}")),
    }
}

/// Whether the API server answered 404.
pub(crate) fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

impl Api {
    /// Connects with `kubeconfig` (else kube's inference: `KUBECONFIG`,
    /// `~/.kube/config`, or the pod's service account in a cluster), to `namespace`.
    pub fn connect(kubeconfig: Option<&Path>, namespace: &str) -> Result<Api, DriverError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| DriverError::failed(format!("the Kubernetes driver's runtime: {e}")))?;
        let config = runtime.block_on(async {
            match kubeconfig {
                Some(path) => {
                    let file = Kubeconfig::read_from(path)
                        .map_err(|e| DriverError::failed(format!("{}: {e}", path.display())))?;
                    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                        .await
                        .map_err(|e| DriverError::failed(format!("{}: {e}", path.display())))
                }
                None => kube::Config::infer()
                    .await
                    .map_err(|e| DriverError::failed(format!("no Kubernetes configuration found: {e}"))),
            }
        })?;
        let client = {
            let _guard = runtime.enter();
            kube::Client::try_from(config).map_err(|e| DriverError::failed(format!("a Kubernetes client: {e}")))?
        };
        let pods = kube::Api::namespaced(client.clone(), namespace);
        let secrets = kube::Api::namespaced(client.clone(), namespace);
        Ok(Api { runtime, pods, secrets, client, namespace: namespace.to_owned(), workload: OnceLock::new() })
    }

    fn workload(&self) -> Result<&Workload, DriverError> {
        if let Some(workload) = self.workload.get() {
            return Ok(workload);
        }
        let found = self.runtime.block_on(agent_sandbox::discover(&self.client))?;
        if let Workload::AgentSandbox(kind) = &found {
            tracing::info!(version = %kind.api_version, "sandboxes' pods are made through Agent Sandbox's Sandbox");
        }
        Ok(self.workload.get_or_init(|| found))
    }

    fn sandboxes(&self, kind: &kube::api::ApiResource) -> kube::Api<DynamicObject> {
        kube::Api::namespaced_with(self.client.clone(), &self.namespace, kind)
    }

    /// Makes `pod`: directly, or as a `Sandbox` whose controller makes it (then
    /// returns once the pod exists).
    pub fn create(&self, pod: &Pod) -> Result<(), DriverError> {
        let Workload::AgentSandbox(kind) = self.workload()? else {
            return self
                .runtime
                .block_on(self.pods.create(&PostParams::default(), pod))
                .map(drop)
                .map_err(|e| error("create pod", &e));
        };
        let object = agent_sandbox::resource(pod, kind)?;
        self.runtime
            .block_on(self.sandboxes(kind).create(&PostParams::default(), &object))
            .map_err(|e| error("create Sandbox", &e))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let deadline = Instant::now() + POD_MADE;
        while self.runtime.block_on(self.pods.get_opt(&name)).map_err(|e| error("get pod", &e))?.is_none() {
            if Instant::now() > deadline {
                return Err(DriverError::failed(format!(
                    "Agent Sandbox's controller did not make the pod of Sandbox {name} in {} s",
                    POD_MADE.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Deletes pod `name` (grace: seconds before SIGKILL) and its `Sandbox`, if
    /// any (first, so that its controller does not make the pod again). What is
    /// already gone is not an error.
    pub fn delete(&self, name: &str, grace: u32) -> Result<(), DriverError> {
        let params = DeleteParams { grace_period_seconds: Some(grace), ..Default::default() };
        if let Workload::AgentSandbox(kind) = self.workload()? {
            match self.runtime.block_on(self.sandboxes(kind).delete(name, &DeleteParams::default())) {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(error("delete Sandbox", &e)),
            }
        }
        match self.runtime.block_on(self.pods.delete(name, &params)) {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(error("delete pod", &e)),
        }
    }
}
