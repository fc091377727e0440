//! The Kubernetes API on the driver's own tokio runtime (kube's client is async;
//! the driver's interface is not).

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use openshell_driver::DriverError;

pub(crate) struct Api {
    pub runtime: tokio::runtime::Runtime,
    pub pods: kube::Api<Pod>,
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
        let pods = kube::Api::namespaced(client, namespace);
        Ok(Api { runtime, pods })
    }
}
