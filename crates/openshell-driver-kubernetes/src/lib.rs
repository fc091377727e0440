//! The Kubernetes driver (`gateway run --driver kubernetes`): each sandbox is a
//! Pod in the driver's namespace under RuntimeClass `openshell`, so the node's
//! openshell-runtime runs it (see docs/kubernetes.md): the policy travels as the
//! pod's `run.openshell.policy.yaml` annotation with its digest, and the runtime
//! applies it (Landlock, seccomp, no capabilities, the pod's egress only through
//! its proxy) when the container is created. Everything goes through the
//! Kubernetes API (kube + k8s-openapi): the image is pushed from the gateway's
//! store to `--image-registry` and the pod pulls it by digest; the pod's status is
//! watched for the run's end; logs, exec (pods/exec over a WebSocket) and delete.
//!
//! Process 1 is openshell's init (`run.openshell.init: supervise`, or `idle` for
//! a sandbox without a command), so signals reach the job as on the host. Stopping
//! deletes the pod (SIGTERM with a grace period, SIGKILL at once); `start` makes
//! a new one: files written in a pod do not outlive it.
//!
//! Standby sandboxes (`warm`): an idle pod made ahead of need, the job handed to
//! it by exec.
//!
//! `sandbox forward` goes through pods/portforward.
//!
//! With Agent Sandbox installed, each pod is made through its `Sandbox` resource
//! (`agent_sandbox`; `api` decides by discovery and creates and deletes either way).
//!
//! A running sandbox's network policies change live (`live`): signed with the
//! driver's key, sent through pods/portforward to the pod's egress proxy. So does
//! the inference route (`route`), whose credential lives in a Kubernetes Secret.
//!
//! Not done: the audit log through the gateway (it is on the node, in the pod's log
//! directory), and a foreground create's stdin (its output is the pod's log).
//!
//! Modules: `api` (kube on the driver's runtime; making and deleting a pod),
//! `agent_sandbox` (the `Sandbox` resource), `pod` (the Pod), `record`,
//! `stream` (the pod's end, its log, exec relays), `warm` (standby pods), `live`
//! (live policy updates).

mod agent_sandbox;
mod api;
mod live;
pub mod pod;
mod record;
mod route;
mod stream;
mod warm;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use nix::sys::signal::Signal;
use openshell_driver::{
    Applied, Created, Driver, DriverError, Exec, ExecSpec, Exit, Found, Job, LogKind, LogStream, Pending, RouteUpdate,
    Run, SandboxSpec, Stdio,
};
use openshell_policy_update::Signer;
use openshell_store::Store;

use crate::api::{Api, error};
use crate::pod::{PodTemplate, pod_name};
use crate::record::Record;

const DRIVER: &str = "kubernetes";

/// Where the driver runs sandboxes and where their images go.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// A kubeconfig file (default: kube's inference — `KUBECONFIG`,
    /// `~/.kube/config`, or the service account of the pod the gateway runs in).
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    /// `HOST[:PORT]/REPOSITORY` the cluster pulls from; the gateway pushes each
    /// sandbox's image there (tagged `sha256-HEX`) before its pod is made.
    pub registry: String,
    /// Plain HTTP to the registry (refused unless it is on loopback, as for `openshell push`).
    pub registry_insecure: bool,
    /// The RuntimeClass whose handler is openshell-runtime.
    pub runtime_class: String,
}

/// Runs sandboxes as pods.
pub struct KubernetesDriver {
    api: Arc<Api>,
    options: KubernetesOptions,
    /// `sandboxes/ID/`: each sandbox's record and job.
    root: PathBuf,
    store: Store,
    /// Signs live policy updates; its public half is on every pod.
    signer: Arc<Signer>,
    /// The route generation last written to the Secret (the gateway hands the
    /// same route to every sandbox in turn).
    stored: std::sync::Mutex<Option<u64>>,
}

impl KubernetesDriver {
    /// Connects to the cluster; `root` is the driver's directory.
    pub fn new(options: KubernetesOptions, root: PathBuf, store: Store) -> Result<KubernetesDriver, DriverError> {
        let api = Api::connect(options.kubeconfig.as_deref(), &options.namespace)?;
        let sandboxes = root.join("sandboxes");
        std::fs::create_dir_all(&sandboxes).map_err(DriverError::io(&sandboxes))?;
        let signer = Arc::new(Signer::load_or_create(&root.join(live::KEY_FILE)).map_err(DriverError::failed)?);
        Ok(KubernetesDriver { api: Arc::new(api), options, root, store, signer, stored: Default::default() })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("sandboxes").join(id)
    }

    fn record(&self, id: &str) -> Result<Record, DriverError> {
        Record::read(&self.dir(id))
    }

    /// Pushes the image from the store to the registry; returns what pods pull.
    fn push_image(&self, digest: &str) -> Result<String, DriverError> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let reference = format!("{}:sha256-{hex}", self.options.registry);
        let opts =
            openshell_registry::ConnectOptions { insecure: self.options.registry_insecure, ..Default::default() };
        openshell_registry::push(
            &self.store,
            &openshell_registry::PushSource::Image(digest.to_owned()),
            &reference,
            &opts,
        )
        .map_err(|e| DriverError::image(format!("pushing the sandbox's image to {}: {e}", self.options.registry)))?;
        Ok(format!("{}@{digest}", self.options.registry))
    }

    fn get_pod(&self, id: &str) -> Result<Option<k8s_openapi::api::core::v1::Pod>, DriverError> {
        self.api.runtime.block_on(self.api.pods.get_opt(&pod_name(id))).map_err(|e| error("get pod", &e))
    }

    /// Deletes the sandbox's pod (grace: seconds before SIGKILL) and, with
    /// `wait`, returns once it is gone.
    fn delete_pod(&self, id: &str, grace: u32, wait: bool) -> Result<(), DriverError> {
        self.api.delete(&pod_name(id), grace)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(grace) + 30);
        while wait && self.get_pod(id)?.is_some() {
            if std::time::Instant::now() > deadline {
                return Err(DriverError::failed(format!("pod {} was not deleted in time", pod_name(id))));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Makes the sandbox's pod, running `job`.
    fn create_pod(&self, id: &str, record: &Record, job: &Job) -> Result<(), DriverError> {
        let policy = openshell_policy::load_str("the sandbox's policy", &record.policy).map_err(DriverError::policy)?;
        let template = PodTemplate {
            id,
            name: &record.name,
            image: &record.image,
            runtime_class: &self.options.runtime_class,
            policy: &record.policy,
            signer: &self.signer.annotation(),
            resources: &policy.resources,
        };
        self.api.create(&template.pod(job))
    }

    /// The environment the sandbox's pod was made with: the job's, or the image's
    /// for a standby pod (its job came later, by exec).
    fn pod_env(&self, id: &str, job: &Job) -> Result<Vec<String>, DriverError> {
        let pod = self.get_pod(id)?.ok_or_else(|| DriverError::NotRunning(id.to_owned()))?;
        let idle = pod.metadata.annotations.as_ref().and_then(|a| a.get(pod::INIT)).map(String::as_str) == Some("idle");
        let standby = idle && !job.args.is_empty();
        Ok(if standby { self.record(id)?.env } else { job.env.clone() })
    }

    fn running_pod(&self, id: &str) -> Result<String, DriverError> {
        match self.get_pod(id)? {
            Some(pod) if pod::running(&pod) => Ok(pod_name(id)),
            _ => Err(DriverError::NotRunning(id.to_owned())),
        }
    }
}

/// The exec's command: `env K=V... ARGS` when it adds to the pod's environment
/// `base` (the pods/exec API takes no environment; `env` must be in the image then).
pub(crate) fn exec_command(base: &[String], env: &[String], args: &[String]) -> Vec<String> {
    let extra: Vec<String> = env.iter().filter(|kv| !base.contains(kv)).cloned().collect();
    if extra.is_empty() {
        return args.to_vec();
    }
    let mut command = vec!["env".to_owned()];
    command.extend(extra);
    command.extend(args.iter().cloned());
    command
}

impl Driver for KubernetesDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn create(&self, id: &str, spec: &SandboxSpec) -> Result<Created, DriverError> {
        let policy = openshell_policy::load_str(&spec.policy_name, &spec.policy).map_err(DriverError::policy)?;
        let (_, config) = openshell_build::images::documents_by_digest(&self.store, &spec.image_digest)
            .map_err(|e| DriverError::image(format!("{}: {e}", spec.image_digest)))?;
        let (mut env, _, _) = openshell_driver_local::image_config(&config);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let image = self.push_image(&spec.image_digest)?;
        let record = Record {
            name: spec.name.clone(),
            image,
            policy: spec.policy.clone(),
            has_network: !policy.network_policies.is_empty(),
            env: env.clone(),
            exit: None,
        };
        record.write(&self.dir(id))?;
        // The node's runtime sets the proxy's variables in the pod itself (over
        // these): naming it here gives a routed sandbox the router's variables.
        let proxy = format!("http://127.0.0.1:{}", openshell_policy_update::PROXY_PORT);
        Ok(Created { env, proxy: Some(proxy) })
    }

    /// The node's runtime gives the pod its proxy's variables (its trust bundle
    /// is elsewhere than a host sandbox's): the job keeps the router's only.
    fn set_job(&self, id: &str, job: &Job) -> Result<(), DriverError> {
        record::write_job(&self.dir(id), &job.without_proxy_variables())
    }

    fn start(&self, id: &str, stdio: Stdio) -> Result<Run, DriverError> {
        let record = self.record(id)?;
        let job = record::read_job(&self.dir(id))?;
        // A pod of an earlier run that ended on its own.
        self.delete_pod(id, 0, true)?;
        self.create_pod(id, &record, &job)?;
        route::push_when_running(&self.api, &self.signer, pod_name(id));
        let output = stdio.into_iter().nth(1).map(|stdout| stream::follow_log(&self.api, &pod_name(id), stdout));
        Ok(Run {
            pid: None,
            watch: Box::new(stream::PodWatch { api: Arc::clone(&self.api), name: pod_name(id), output }),
        })
    }

    fn standby(&self, id: &str) -> Result<Box<dyn Pending>, DriverError> {
        let record = self.record(id)?;
        // Idle, with the image's environment: the job comes at assignment, by exec.
        self.create_pod(id, &record, &Job { args: Vec::new(), env: record.env.clone() })?;
        route::push_when_running(&self.api, &self.signer, pod_name(id));
        Ok(Box::new(warm::WarmPod { api: Arc::clone(&self.api), id: id.to_owned(), dir: self.dir(id) }))
    }

    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<Exec, DriverError> {
        let name = self.running_pod(id)?;
        let job = record::read_job(&self.dir(id))?;
        let command = exec_command(&self.pod_env(id, &job)?, &spec.env, &spec.args);
        stream::exec(&self.api, &name, command, spec.tty, stdio)
    }

    fn connect(&self, id: &str, port: u16) -> Result<OwnedFd, DriverError> {
        let name = self.running_pod(id)?;
        stream::forward(&self.api, &name, port)
    }

    fn signal(&self, id: &str, signal: Signal) -> Result<(), DriverError> {
        match signal {
            Signal::SIGKILL => self.delete_pod(id, 0, false),
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT => self.delete_pod(id, 10, false),
            _ => Err(DriverError::Unsupported {
                driver: DRIVER,
                what: "signals other than TERM, INT, HUP, QUIT and KILL",
            }),
        }
    }

    fn find(&self, id: &str) -> Found {
        match self.get_pod(id) {
            Ok(Some(pod)) if pod::terminated(&pod).is_none() && pod::stuck(&pod).is_none() => Found::Running(Run {
                pid: None,
                watch: Box::new(stream::PodWatch { api: Arc::clone(&self.api), name: pod_name(id), output: None }),
            }),
            _ => Found::Ended(self.last_exit(id)),
        }
    }

    fn sweep(&self, known: &dyn Fn() -> Option<std::collections::HashSet<String>>) {
        let held = openshell_driver_local::entry_names(&self.root.join("sandboxes"));
        let params = ListParams::default().labels(&format!("{}={}", pod::LABEL_MANAGED, pod::MANAGED_BY));
        let pods = self.api.runtime.block_on(self.api.pods.list(&params)).map(|l| l.items).unwrap_or_default();
        let Some(known) = known() else { return };
        let labelled = pods.iter().filter_map(|p| p.metadata.labels.as_ref()?.get(pod::LABEL_SANDBOX).cloned());
        let mut unknown: Vec<String> = held.into_iter().chain(labelled).filter(|id| !known.contains(id)).collect();
        unknown.sort();
        unknown.dedup();
        for id in unknown {
            tracing::info!(%id, "removing an unrecorded sandbox's pod");
            if let Err(e) = self.remove(&id) {
                tracing::warn!(%e, "removing an unrecorded sandbox's pod");
            }
        }
    }

    fn last_exit(&self, id: &str) -> Option<Exit> {
        let from_pod = self.get_pod(id).ok().flatten().and_then(|pod| pod::terminated(&pod));
        let (code, finished) = from_pod.or_else(|| self.record(id).ok()?.exit)?;
        Some(Exit { code, finished })
    }

    fn log(&self, id: &str, kind: LogKind) -> Result<Box<dyn LogStream>, DriverError> {
        self.record(id)?;
        match kind {
            LogKind::Output => Ok(Box::new(stream::PodLog {
                api: Arc::clone(&self.api),
                name: pod_name(id),
                served: 0,
                pending: Vec::new(),
            })),
            LogKind::Audit => Err(DriverError::Unsupported {
                driver: DRIVER,
                what: "audit logs through the gateway (each pod's is on its node, in the pod's log directory)",
            }),
        }
    }

    fn has_network(&self, id: &str) -> bool {
        self.record(id).is_ok_and(|r| r.has_network)
    }

    /// Running: sent to the pod's proxy and confirmed (whether asked to wait or
    /// not). Either way, the pod's annotation at the next start.
    fn reload_network(
        &self,
        id: &str,
        revision: i64,
        _name: &str,
        text: &str,
        running: bool,
        _wait: bool,
    ) -> Result<Applied, DriverError> {
        let mut record = self.record(id)?;
        let current =
            openshell_policy::load_str("the sandbox's policy", &record.policy).map_err(DriverError::policy)?;
        let new = openshell_policy::load_str("the new network policy", text).map_err(DriverError::policy)?;
        openshell_policy::PolicyDiff::between(&current, &new).ensure_live().map_err(DriverError::policy)?;
        let applied = if running {
            let pod = self.get_pod(id)?.filter(pod::running).ok_or_else(|| DriverError::NotRunning(id.to_owned()))?;
            live::update(&self.api, &self.signer, &pod, revision, text)?;
            Applied::Confirmed
        } else {
            Applied::AtStart
        };
        record.policy = text.to_owned();
        record.has_network = !new.network_policies.is_empty();
        record.write(&self.dir(id))?;
        Ok(applied)
    }

    /// Kept in the Secret; a running sandbox's proxy gets it at once (confirmed,
    /// whether asked to wait or not), a starting one when its pod runs.
    fn set_route(&self, id: &str, route: &RouteUpdate, running: bool, _wait: bool) -> Result<Applied, DriverError> {
        {
            let mut stored = self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *stored != Some(route.generation) {
                route::store(&self.api, route)?;
                *stored = Some(route.generation);
            }
        }
        if !running {
            return Ok(Applied::AtStart);
        }
        let pod = self.get_pod(id)?.filter(pod::running).ok_or_else(|| DriverError::NotRunning(id.to_owned()))?;
        route::push(&self.api, &self.signer, &pod, route)?;
        Ok(Applied::Confirmed)
    }

    /// Pods are made by the cluster, not on this host.
    fn needs_root(&self) -> bool {
        false
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        self.delete_pod(id, 0, true)?;
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::Io { path: dir, source: e }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_adds_only_what_the_job_lacks_through_env() {
        let job = Job { args: vec![], env: vec!["PATH=/bin".into(), "A=1".into()] };
        let spec = |env: &[&str]| ExecSpec {
            args: vec!["ls".into(), "-l".into()],
            env: env.iter().map(|s| (*s).to_owned()).collect(),
            tty: false,
        };
        let run = |s: ExecSpec| exec_command(&job.env, &s.env, &s.args);
        assert_eq!(run(spec(&["PATH=/bin", "A=1"])), ["ls", "-l"]);
        assert_eq!(run(spec(&["PATH=/bin", "B=2"])), ["env", "B=2", "ls", "-l"]);
    }
}
