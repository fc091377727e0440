//! A running sandbox's network policies, changed live as on the host: the new
//! policy, signed with the driver's key for the sandbox's pod and the gateway's
//! revision (`openshell_policy_update`), goes through pods/portforward to the
//! control port of the pod's egress proxy on its node, which verifies and applies
//! it and answers. The key's public half is the annotation every pod of the driver
//! is made with; the key itself stays in the driver's directory.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use openshell_driver::DriverError;
use openshell_policy_update::{Answer, CONTROL_PORT, Kind, PodIdentity, Signer};

use crate::api::Api;
use crate::stream;

/// The driver's signing key, in its directory.
pub(crate) const KEY_FILE: &str = "policy-signer.pk8";
/// How long the pod's proxy may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `text` as revision `revision` of `pod`'s policy; returns once its proxy
/// applied it.
pub(crate) fn update(api: &Arc<Api>, signer: &Signer, pod: &Pod, revision: i64, text: &str) -> Result<(), DriverError> {
    let revision =
        u64::try_from(revision).map_err(|_| DriverError::failed(format!("policy revision {revision} is negative")))?;
    send(api, signer, pod, Kind::Policy, revision, text)
}

/// Sends `body` as revision `revision` of `pod`'s `kind`; returns once its proxy
/// applied it.
pub(crate) fn send(
    api: &Arc<Api>,
    signer: &Signer,
    pod: &Pod,
    kind: Kind,
    revision: u64,
    body: &str,
) -> Result<(), DriverError> {
    let identity = identity(pod)?;
    let update = signer.sign(&identity, kind, revision, body);
    let fd = stream::forward(api, &identity.name, CONTROL_PORT)?;
    let stream = std::os::unix::net::UnixStream::from(fd);
    let refused = |reason: String| DriverError::failed(format!("pod {}'s egress proxy: {reason}", identity.name));
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(|e| refused(e.to_string()))?;
    match openshell_policy_update::send(stream, &update).map_err(|e| refused(e.to_string()))? {
        Answer::Applied { revision: applied, digest }
            if applied == revision && digest == crate::pod::policy_digest(body) =>
        {
            Ok(())
        }
        Answer::Applied { revision, digest } => {
            Err(refused(format!("applied revision {revision} ({digest}), not ours")))
        }
        Answer::Refused { reason } => Err(refused(format!("refused the update: {reason}"))),
    }
}

/// The pod as the node's runtime knows it (namespace, name, uid).
fn identity(pod: &Pod) -> Result<PodIdentity, DriverError> {
    let meta = &pod.metadata;
    let missing = |what: &str| DriverError::failed(format!("the API server's pod has no {what}"));
    Ok(PodIdentity {
        namespace: meta.namespace.clone().ok_or_else(|| missing("namespace"))?,
        name: meta.name.clone().ok_or_else(|| missing("name"))?,
        uid: meta.uid.clone().ok_or_else(|| missing("uid"))?,
    })
}
