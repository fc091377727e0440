//! The gateway's inference route for pods. Its credential lives in a Kubernetes
//! Secret of the driver's namespace ([`SECRET`], the route as JSON under
//! [`KEY`]), never in a pod: each pod's egress proxy gets the route by a signed
//! update through pods/portforward (`live`), pushed when the route changes (to
//! running pods) and when a pod starts running (read back from the Secret, which
//! outlives the gateway's process).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use openshell_driver::{DriverError, RouteUpdate};
use openshell_policy_update::{Kind, Signer};

use crate::api::{Api, error, not_found};
use crate::live;

/// The Secret holding the route, and its key.
pub(crate) const SECRET: &str = "openshell-inference-route";
pub(crate) const KEY: &str = "route.json";
/// How long a starting pod may take to run before its route is pushed.
const RUNNING: Duration = Duration::from_secs(120);

/// Keeps `route` in the Secret (deleted when there is no route).
pub(crate) fn store(api: &Api, route: &RouteUpdate) -> Result<(), DriverError> {
    if route.route.is_none() {
        return match api.runtime.block_on(api.secrets.delete(SECRET, &DeleteParams::default())) {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(error("delete Secret", &e)),
        };
    }
    let json = serde_json::to_vec(route).map_err(|e| DriverError::failed(format!("the route: {e}")))?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SECRET.to_owned()),
            labels: Some(BTreeMap::from([(crate::pod::LABEL_MANAGED.to_owned(), crate::pod::MANAGED_BY.to_owned())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(KEY.to_owned(), ByteString(json))])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    };
    let existing = api.runtime.block_on(api.secrets.get_opt(SECRET)).map_err(|e| error("get Secret", &e))?;
    let written = match existing {
        Some(old) => {
            let secret = Secret {
                metadata: ObjectMeta { resource_version: old.metadata.resource_version, ..secret.metadata },
                ..secret
            };
            api.runtime.block_on(api.secrets.replace(SECRET, &PostParams::default(), &secret))
        }
        None => api.runtime.block_on(api.secrets.create(&PostParams::default(), &secret)),
    };
    written.map(drop).map_err(|e| error("write Secret", &e))
}

/// The route the Secret holds, if any.
pub(crate) fn load(api: &Api) -> Result<Option<RouteUpdate>, DriverError> {
    let Some(secret) = api.runtime.block_on(api.secrets.get_opt(SECRET)).map_err(|e| error("get Secret", &e))? else {
        return Ok(None);
    };
    let bytes = secret.data.as_ref().and_then(|d| d.get(KEY)).map(|b| b.0.clone()).unwrap_or_default();
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| DriverError::failed(format!("Secret {SECRET}, key {KEY}: not a route: {e}")))
}

/// Sends `route` to `pod`'s egress proxy (revision: its generation).
pub(crate) fn push(api: &Arc<Api>, signer: &Signer, pod: &Pod, route: &RouteUpdate) -> Result<(), DriverError> {
    let body = serde_json::to_string(&route.route).map_err(|e| DriverError::failed(format!("the route: {e}")))?;
    live::send(api, signer, pod, Kind::Route, route.generation, &body)
}

/// In the background: once pod `name` runs, gives its proxy the Secret's route
/// (if there is one). Failures are logged: the pod runs without a route.
pub(crate) fn push_when_running(api: &Arc<Api>, signer: &Arc<Signer>, name: String) {
    let (api, signer) = (Arc::clone(api), Arc::clone(signer));
    std::thread::spawn(move || {
        let deadline = Instant::now() + RUNNING;
        let pod = loop {
            match api.runtime.block_on(api.pods.get_opt(&name)) {
                Ok(Some(pod)) if crate::pod::running(&pod) => break pod,
                Ok(Some(pod)) if crate::pod::terminated(&pod).is_some() => return,
                _ => {}
            }
            if Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let pushed = load(&api).and_then(|route| match route {
            Some(route) if route.route.is_some() => push(&api, &signer, &pod, &route),
            _ => Ok(()),
        });
        if let Err(e) = pushed {
            tracing::warn!(pod = %name, %e, "giving the pod its inference route");
        }
    });
}
