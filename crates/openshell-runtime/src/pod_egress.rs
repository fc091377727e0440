//! A Kubernetes pod's egress under openshell-runtime. When containerd creates a
//! pod's sandbox container, the runtime fences the pod's network namespace (only
//! loopback and replies to inbound connections leave it: `fence::pod_ruleset`) and
//! starts the pod's egress proxy, a daemon of this binary (`pod-proxy`, see
//! [`serve`]): it listens on `127.0.0.1:PROXY_PORT` inside the pod's namespace (the
//! socket made by a thread that joined it) and dials from the node's namespace, so
//! the proxy is the pod's only way out. It starts with no network policy (everything
//! denied); each of the pod's containers, when created, hands it the network
//! policies of the pod's policy ([`push`]), and the container is refused unless the
//! proxy applied them. Decisions, caller identification (by `/proc`, through the
//! pause process's namespace) and audit lines are the host proxy's; the audit goes
//! to `openshell-egress.log` in the pod's log directory (`/var/log/pods/...`).
//! The proxy stops when the sandbox container is deleted.
//!
//! A running pod's network policies change live, as on the host, when the pod was
//! created with a signer key (`run.openshell.policy.signer`, the gateway's): the
//! daemon then also listens on the pod's loopback at `CONTROL_PORT` for updates
//! signed by that key for this pod with a revision above the last
//! (`openshell_policy_update`, served by `pod_control`), which is how the gateway
//! reaches it through pods/portforward. Once one is applied, a container created
//! later in the pod is refused rather than bring back the pod's first policy.
//!
//! TLS is inspected as on the host (L7 rules over HTTPS), with the pod's CA
//! (`pod_trust`).
//!
//! Not here: the inference router.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use openshell_policy_update::{Answer, CONTROL_PORT, Kind, PodIdentity, SIGNER_ANNOTATION, Verifier};
use serde::{Deserialize, Serialize};

use crate::pod;
use crate::pod_control;
use crate::pod_trust;

/// The proxy's port on the pod's loopback.
pub const PROXY_PORT: u16 = openshell_policy_update::PROXY_PORT;

/// What the daemon needs, in the sandbox container's state directory.
const STATE_FILE: &str = "openshell-pod-egress.json";
const PID_FILE: &str = "openshell-pod-proxy.pid";
const LOG_FILE: &str = "openshell-pod-proxy.log";
/// The pod's policy text a container hands over, and the daemon's answer.
const NETWORK_FILE: &str = "openshell-pod-network.yaml";
const APPLIED_FILE: &str = "openshell-pod-network.applied";
/// CRI's annotations: the pod's sandbox id (on its containers) and log directory.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
const LOG_DIRECTORY_ANNOTATION: &str = "io.kubernetes.cri.sandbox-log-directory";
/// The sysctl below which ports are privileged.
const UNPRIVILEGED_PORTS: &str = "net.ipv4.ip_unprivileged_port_start";
/// CRI's annotations naming the pod (what a signed update must name).
const NAMESPACE_ANNOTATION: &str = "io.kubernetes.cri.sandbox-namespace";
const NAME_ANNOTATION: &str = "io.kubernetes.cri.sandbox-name";
const UID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-uid";
const AUDIT_FILE: &str = "openshell-egress.log";
/// How long a container's create waits for the proxy.
const WAIT: Duration = Duration::from_secs(5);

/// The environment every container of the pod gets: its clients use the proxy
/// (Node's fetch only with NODE_USE_ENV_PROXY) and trust the pod's CA.
pub fn proxy_env() -> Vec<String> {
    let url = format!("http://127.0.0.1:{PROXY_PORT}");
    let proxies = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"];
    let mut env: Vec<String> = proxies.iter().map(|k| format!("{k}={url}")).collect();
    env.extend(["NO_PROXY=localhost,127.0.0.1,::1".to_owned(), "no_proxy=localhost,127.0.0.1,::1".to_owned()]);
    env.push("NODE_USE_ENV_PROXY=1".to_owned());
    let bundle = pod_trust::POD_BUNDLE;
    env.extend(openshell_proxy::tls::TRUST_VARIABLES.iter().map(|k| format!("{k}={bundle}")));
    env
}

/// Why a pod's egress could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(
        "the pod shares the node's network namespace (hostNetwork): its egress cannot be fenced, so openshell-runtime does not run it"
    )]
    HostNetwork,
    #[error("the pod's network fence: {0}")]
    Fence(#[from] openshell_sandbox::fence::FenceError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the pod's egress proxy (sandbox {sandbox}) is not running: {reason}")]
    NoProxy { sandbox: String, reason: String },
    #[error("the pod's egress proxy (sandbox {sandbox}) did not apply the pod's network policies: {reason}")]
    NotApplied { sandbox: String, reason: String },
    #[error("{0} has no annotation {SANDBOX_ID_ANNOTATION}")]
    NoSandboxId(&'static str),
    #[error("the pod names a policy signer ({SIGNER_ANNOTATION}) but its sandbox container has no annotation {0}")]
    NoPodIdentity(&'static str),
    #[error("the pod's policy updates: {0}")]
    Update(#[from] openshell_policy_update::UpdateError),
    #[error(
        "the pod sets {UNPRIVILEGED_PORTS} to {0}: its processes could listen on the egress proxy's control port ({CONTROL_PORT}); openshell-runtime does not run it"
    )]
    PrivilegedPorts(String),
    #[error(transparent)]
    Trust(#[from] pod_trust::TrustError),
    #[error("the pod's egress proxy: {0}")]
    Proxy(#[from] openshell_proxy::ProxyError),
    #[error("the pod's egress proxy: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the pod's egress proxy's policy: {0}")]
    Policy(#[from] openshell_policy::LoadError),
    #[error("the pod's egress proxy's state {}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the pod's egress proxy: blocking SIGHUP: {0}")]
    Signals(#[source] nix::Error),
    #[error("the pod's egress proxy: OPENSHELL_PROXY_HOSTS: {0}")]
    Hosts(#[source] openshell_proxy::OverrideError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EgressError + '_ {
    move |source| EgressError::Io { path: path.to_owned(), source }
}

/// What the daemon is started with.
#[derive(Debug, Serialize, Deserialize)]
struct EgressState {
    netns: PathBuf,
    /// The pause process: caller identification looks through its namespace.
    member: u32,
    audit: PathBuf,
    sandbox: String,
    /// The pod's signer key and identity, when it takes live updates.
    control: Option<Control>,
}

/// Whose signed updates the daemon takes, for which pod.
#[derive(Debug, Serialize, Deserialize)]
struct Control {
    signer: String,
    pod: PodIdentity,
}

impl Control {
    /// From the pod's annotations: none without a signer; refused when the signer
    /// key is malformed or the pod is not named.
    fn of(spec: &Spec) -> Result<Option<Control>, EgressError> {
        let Some(signer) = annotation(spec, SIGNER_ANNOTATION) else { return Ok(None) };
        let field = |key: &'static str| annotation(spec, key).cloned().ok_or(EgressError::NoPodIdentity(key));
        let pod = PodIdentity {
            namespace: field(NAMESPACE_ANNOTATION)?,
            name: field(NAME_ANNOTATION)?,
            uid: field(UID_ANNOTATION)?,
        };
        let control = Control { signer: signer.clone(), pod };
        control.verifier()?;
        // The control port is privileged; a pod that lowered the bound could have
        // a process of its own listen there if the proxy ever stopped.
        let sysctl = spec.linux().as_ref().and_then(|l| l.sysctl().clone()).unwrap_or_default();
        if let Some(value) = sysctl.get(UNPRIVILEGED_PORTS) {
            let start: u32 = value.trim().parse().unwrap_or(0);
            if start <= u32::from(CONTROL_PORT) {
                return Err(EgressError::PrivilegedPorts(value.clone()));
            }
        }
        Ok(Some(control))
    }

    fn verifier(&self) -> Result<Verifier, EgressError> {
        Ok(Verifier::new(&self.signer, self.pod.clone())?)
    }
}

/// The pod's network namespace, as the CRI gives the sandbox container.
fn netns(spec: &Spec) -> Result<PathBuf, EgressError> {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    let net = namespaces.iter().find(|n| n.typ() == LinuxNamespaceType::Network).ok_or(EgressError::HostNetwork)?;
    // A new namespace without a path would be one no CNI set up: nothing to fence.
    net.path().clone().ok_or(EgressError::HostNetwork)
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a String> {
    spec.annotations().as_ref().and_then(|a| a.get(key))
}

/// Fences the pod's network namespace and starts its egress proxy, for the
/// sandbox container `id` whose process 1 is `member`.
pub fn start(dir: &Path, id: &str, spec: &Spec, member: u32) -> Result<(), EgressError> {
    let netns = netns(spec)?;
    let control = Control::of(spec)?;
    openshell_sandbox::fence::install_pod(&netns.display().to_string())?;
    pod_trust::make_ca(dir, id)?;
    let audit = annotation(spec, LOG_DIRECTORY_ANNOTATION)
        .map(|d| PathBuf::from(d).join(AUDIT_FILE))
        .unwrap_or_else(|| dir.join(AUDIT_FILE));
    let state = EgressState { netns, member, audit, sandbox: id.to_owned(), control };
    let path = dir.join(STATE_FILE);
    let json = serde_json::to_vec(&state).map_err(|source| EgressError::State { path: path.clone(), source })?;
    std::fs::write(&path, json).map_err(io(&path))?;
    // The proxy starts with what the pod's containers will hand it, so that their
    // creates find it applied: the pod's annotated policy when its digest holds,
    // else the baseline's. Nobody waits for it here: a container's create does.
    let network = dir.join(NETWORK_FILE);
    std::fs::write(&network, initial_policy(spec)).map_err(io(&network))?;
    spawn(dir)
}

/// The pod's annotated policy text (its digest checked), else the baseline's.
fn initial_policy(spec: &Spec) -> String {
    let annotated = annotation(spec, crate::policy::YAML_ANNOTATION);
    let digest = annotation(spec, crate::policy::DIGEST_ANNOTATION);
    match (annotated, digest) {
        (Some(text), Some(digest)) if crate::policy::digest_of(text.as_bytes()) == *digest => text.clone(),
        _ => pod::BASELINE.to_owned(),
    }
}

/// Starts `openshell-runtime pod-proxy DIR` in a session of its own.
fn spawn(dir: &Path) -> Result<(), EgressError> {
    use std::os::unix::process::CommandExt;
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let err = log.try_clone().map_err(io(&log_path))?;
    // The sealed copy this process runs from (see `main`).
    let exe = PathBuf::from("/proc/self/exe");
    let child = std::process::Command::new(&exe)
        .arg("pod-proxy")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io(&exe))?;
    let pid_path = dir.join(PID_FILE);
    std::fs::write(&pid_path, child.id().to_string()).map_err(io(&pid_path))
}

/// The daemon's pid, if it is still the daemon of `dir` (its command line names it).
fn daemon(dir: &Path) -> Option<Pid> {
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE)).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    use std::os::unix::ffi::OsStrExt;
    let mut args = cmdline.split(|b| *b == 0);
    let ours = args.any(|a| a == b"pod-proxy")
        && args.next().is_some_and(|a| Path::new(std::ffi::OsStr::from_bytes(a)) == dir);
    ours.then_some(Pid::from_raw(pid))
}

/// Stops the pod's egress proxy (SIGTERM, then SIGKILL after two seconds).
pub fn stop(dir: &Path) {
    let Some(pid) = daemon(dir) else { return };
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while daemon(dir).is_some() {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `dir` is a sandbox container's that started a proxy.
pub fn has_proxy(dir: &Path) -> bool {
    dir.join(PID_FILE).exists()
}

/// The id of the pod's sandbox container, from one of the pod's containers' spec.
pub fn sandbox_id(spec: &Spec) -> Result<&str, EgressError> {
    annotation(spec, SANDBOX_ID_ANNOTATION).map(String::as_str).ok_or(EgressError::NoSandboxId("the container"))
}

/// Hands the pod's policy (`text`, already verified and compiled for one of its
/// containers) to the egress proxy of the pod's sandbox container (`dir`, its state
/// directory), and waits until the proxy applied its network policies.
pub fn push(dir: &Path, sandbox: &str, text: &str) -> Result<(), EgressError> {
    let sandbox = sandbox.to_owned();
    if !dir.join(PID_FILE).exists() {
        return Err(EgressError::NoProxy { sandbox, reason: "no proxy for the pod's sandbox container".into() });
    }
    let applied = dir.join(APPLIED_FILE);
    let want = crate::policy::digest_of(text.as_bytes());
    // The proxy answers once it runs (SIGHUP before that would end it).
    let deadline = Instant::now() + WAIT;
    let current = loop {
        if let Ok(answer) = std::fs::read_to_string(&applied) {
            break answer;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
            return Err(EgressError::NoProxy { sandbox, reason: format!("it never answered: {}", log.trim()) });
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    // It answered, so it runs as itself: a process gone since fails the create.
    let pid = daemon(dir)
        .ok_or_else(|| EgressError::NoProxy { sandbox: sandbox.clone(), reason: "its process is gone".into() })?;
    if current == want {
        return Ok(());
    }
    let _ = std::fs::remove_file(&applied);
    let staged = dir.join(format!("{NETWORK_FILE}.{}", std::process::id()));
    std::fs::write(&staged, text).map_err(io(&staged))?;
    let network = dir.join(NETWORK_FILE);
    std::fs::rename(&staged, &network).map_err(io(&network))?;
    kill(pid, Signal::SIGHUP).map_err(|e| EgressError::NoProxy { sandbox: sandbox.clone(), reason: e.to_string() })?;
    let deadline = Instant::now() + WAIT;
    loop {
        match std::fs::read_to_string(&applied) {
            Ok(answer) if answer == want => return Ok(()),
            // An answer for another container's push: wait for ours.
            Ok(answer) if answer.starts_with("sha256:") => {}
            Ok(answer) => return Err(EgressError::NotApplied { sandbox: sandbox.clone(), reason: answer }),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            return Err(EgressError::NotApplied { sandbox: sandbox.clone(), reason: "no answer in 5 s".into() });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The network-only policy the proxy serves: `pushed`'s network policies over
/// the baseline's static sections (which the proxy does not use and which a live
/// reload may not change).
fn network_only(baseline: &openshell_policy::Policy, pushed: openshell_policy::Policy) -> openshell_policy::Policy {
    openshell_policy::Policy { network_policies: pushed.network_policies, ..baseline.clone() }
}

/// The daemon (`openshell-runtime pod-proxy DIR`): serves the pod's egress proxy
/// until it is stopped, starting with `NETWORK_FILE`'s policy. It answers in
/// `APPLIED_FILE` (the digest of the policy applied, or the error) once it listens,
/// and again after each SIGHUP, which applies the pushed policy. With a signer, it
/// serves signed updates on the control port.
pub fn serve(dir: &Path) -> Result<(), EgressError> {
    use nix::sys::signal::SigSet;
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let state: EgressState =
        serde_json::from_slice(&bytes).map_err(|source| EgressError::State { path: path.clone(), source })?;
    // Blocked before the proxy's threads exist, so that only the waiting thread gets it.
    let mut hangup = SigSet::empty();
    hangup.add(Signal::SIGHUP);
    hangup.thread_block().map_err(EgressError::Signals)?;
    let netns = state.netns.display().to_string();
    let listener =
        openshell_sandbox::fence::listen_in(&netns, std::net::SocketAddr::from(([127, 0, 0, 1], PROXY_PORT)))?;
    let control = match &state.control {
        Some(control) => {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], CONTROL_PORT));
            Some((openshell_sandbox::fence::listen_in(&netns, addr)?, control.verifier()?))
        }
        None => None,
    };
    let baseline = openshell_policy::load_str("the Kubernetes baseline policy", pod::BASELINE)?;
    let network = dir.join(NETWORK_FILE);
    let text = std::fs::read_to_string(&network).map_err(io(&network))?;
    let initial = openshell_policy::load_str("the pod's policy", &text)?;
    let proxy =
        openshell_proxy::Proxy::from_listener(listener, config(dir, &state, network_only(&baseline, initial))?)?;
    // Raw TCP for `protocol: tcp` endpoints: the pod's fence sends it here.
    let raw_tcp = std::net::SocketAddr::from(([127, 0, 0, 1], openshell_sandbox::fence::RAW_TCP_PORT));
    let proxy = proxy.raw_tcp_on(openshell_sandbox::fence::listen_in(&netns, raw_tcp)?);
    // The pod's DNS responder: its fence sends every query to port 53 here.
    let dns_addr = std::net::SocketAddr::from(([127, 0, 0, 1], openshell_sandbox::fence::DNS_PORT));
    let dns = proxy
        .dns_on(openshell_sandbox::fence::udp_in(&netns, dns_addr)?)
        .with_tcp(openshell_sandbox::fence::listen_in(&netns, dns_addr)?);
    std::thread::spawn(move || {
        if let Err(e) = dns.serve() {
            eprintln!("dns: {e}");
        }
    });
    let (listener, verifier) = control.unzip();
    let daemon =
        Arc::new(Daemon { dir: dir.to_owned(), baseline, handle: proxy.handle(), verifier: Mutex::new(verifier) });
    let pushes = Arc::clone(&daemon);
    std::thread::spawn(move || {
        while hangup.wait().is_ok() {
            pushes.apply_pushed();
        }
    });
    if let Some(listener) = listener {
        let daemon: Arc<dyn pod_control::Apply> = daemon;
        std::thread::spawn(move || pod_control::serve(listener, daemon));
    }
    write_answer(dir, &crate::policy::digest_of(text.as_bytes()))?;
    proxy.serve().map_err(EgressError::Serve)
}

/// Writes the daemon's answer to `APPLIED_FILE` whole: staged, then renamed, so
/// that a create waiting on it never reads it half written (an empty answer
/// read as the error's text failed a create).
fn write_answer(dir: &Path, answer: &str) -> Result<(), EgressError> {
    static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staged = dir.join(format!("{APPLIED_FILE}.{}-{n}", std::process::id()));
    std::fs::write(&staged, answer).map_err(io(&staged))?;
    let applied = dir.join(APPLIED_FILE);
    std::fs::rename(&staged, &applied).map_err(io(&applied))
}

/// The running daemon's policy: what applies pushes and updates, one at a time
/// (the verifier's lock is held while either applies).
struct Daemon {
    dir: PathBuf,
    baseline: openshell_policy::Policy,
    handle: openshell_proxy::ProxyHandle,
    /// The signed updates' check, when the pod has a signer.
    verifier: Mutex<Option<Verifier>>,
}

impl Daemon {
    /// Applies `text`'s network policies; the digest of `text`.
    fn apply(&self, text: &str) -> Result<String, ApplyError> {
        let policy = openshell_policy::load_str("the pod's policy", text)?;
        self.handle.reload(network_only(&self.baseline, policy))?;
        Ok(crate::policy::digest_of(text.as_bytes()))
    }

    /// Routes the pod's inference as `json` says (`null`: no route); the digest
    /// of `json`.
    fn route(&self, json: &str) -> Result<String, ApplyError> {
        let route: Option<openshell_proxy::router::InferenceRoute> = serde_json::from_str(json)?;
        self.handle.set_route(route).map_err(ApplyError::Route)?;
        Ok(crate::policy::digest_of(json.as_bytes()))
    }

    /// The answer a container's create waits for: a digest, or `error: ...`.
    fn answer(&self, answer: &str) {
        if let Err(e) = write_answer(&self.dir, answer) {
            eprintln!("pod-proxy: {e}");
        }
    }

    /// A container's push (SIGHUP): `NETWORK_FILE`, unless a signed update
    /// changed the policy since the pod was made. Answers in `APPLIED_FILE`.
    fn apply_pushed(&self) {
        let verifier = self.verifier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let outcome = match verifier.as_ref().map(|v| v.last(Kind::Policy)) {
            Some(revision) if revision > 0 => Err(ApplyError::ChangedLive(revision)),
            _ => std::fs::read_to_string(self.dir.join(NETWORK_FILE)).map_err(ApplyError::Read),
        }
        .and_then(|text| self.apply(&text));
        self.answer(&outcome.unwrap_or_else(|e| format!("error: {e}")));
    }
}

impl pod_control::Apply for Daemon {
    fn apply_update(&self, line: &str) -> Answer {
        let mut verifier = self.verifier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(verifier) = verifier.as_mut() else {
            return Answer::Refused { reason: "the pod takes no policy updates".into() };
        };
        let update = match verifier.check(line) {
            Ok(update) => update,
            Err(e) => {
                eprintln!("pod-proxy: refused an update: {e}");
                return Answer::Refused { reason: e.to_string() };
            }
        };
        let applied = match update.kind {
            Kind::Policy => self.apply(&update.body).inspect(|digest| self.answer(digest)),
            Kind::Route => self.route(&update.body),
        };
        match applied {
            Ok(digest) => {
                verifier.applied(&update);
                eprintln!("pod-proxy: applied {:?} revision {} ({digest})", update.kind, update.revision);
                Answer::Applied { revision: update.revision, digest }
            }
            Err(e) => Answer::Refused { reason: e.to_string() },
        }
    }
}

/// Why the daemon did not apply a push or an update (its answer says so).
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(
        "the pod's network policy was changed by the gateway (revision {0}) after the pod was made; a container made now would bring back the first one"
    )]
    ChangedLive(u64),
    #[error("the pushed policy: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Policy(#[from] openshell_policy::LoadError),
    #[error(transparent)]
    Reload(#[from] openshell_policy::StaticChangeError),
    #[error("the route: {0}")]
    RouteJson(#[from] serde_json::Error),
    #[error("the route: {0}")]
    Route(#[source] openshell_proxy::router::RouteError),
}

fn config(
    dir: &Path,
    state: &EgressState,
    policy: openshell_policy::Policy,
) -> Result<openshell_proxy::ProxyConfig, EgressError> {
    let resolver = match std::env::var("OPENSHELL_PROXY_HOSTS") {
        Ok(spec) => openshell_proxy::WithOverrides::parse(&spec).map_err(EgressError::Hosts)?,
        Err(_) => openshell_proxy::WithOverrides::default(),
    };
    let rotate = openshell_policy::model::Resources::DEFAULT_LOGS;
    let audit = openshell_sandbox::logs::RotatingLog::open(&state.audit, rotate).map_err(io(&state.audit))?;
    Ok(openshell_proxy::ProxyConfig {
        sandbox: state.sandbox.clone(),
        policy,
        revision: 1,
        identify: Box::new(openshell_proxy::ProcIdentify::new(state.member)),
        resolver: Box::new(resolver),
        connector: Box::new(openshell_proxy::Direct),
        audit: Box::new(openshell_proxy::JsonLines::new(audit)),
        tls: Some(pod_trust::interceptor(dir, &state.sandbox)?),
        route: None,
        limits: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A create waiting on the daemon's answer reads it whole or not at all,
    /// never empty or half written while the daemon writes it (an empty answer
    /// was taken for an error and failed a pod's create in CI).
    #[test]
    fn the_daemons_answer_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let answers = [format!("sha256:{}", "a".repeat(64)), format!("error: {}", "b".repeat(4000))];
        let writer = {
            let (dir, answers) = (dir.path().to_owned(), answers.clone());
            std::thread::spawn(move || {
                for n in 0..3000 {
                    write_answer(&dir, &answers[n % 2]).expect("write");
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() {
            if let Ok(answer) = std::fs::read_to_string(dir.path().join(APPLIED_FILE)) {
                assert!(
                    answers.contains(&answer),
                    "read {} bytes: {:?}…",
                    answer.len(),
                    &answer[..answer.len().min(20)]
                );
                seen += 1;
            }
        }
        writer.join().expect("writer");
        assert!(seen > 0, "the reader saw answers");
    }
    use libcontainer::oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder};

    fn with_network(path: Option<&str>) -> Spec {
        let mut builder = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
        if let Some(path) = path {
            builder = builder.path(path);
        }
        let namespaces = vec![builder.build().expect("namespace")];
        let mut spec = Spec::default();
        spec.set_linux(Some(LinuxBuilder::default().namespaces(namespaces).build().expect("linux")));
        spec
    }

    #[test]
    fn a_pod_that_unprivileges_the_control_port_is_refused() {
        let signer = {
            let dir = tempfile::tempdir().expect("tempdir");
            openshell_policy_update::Signer::load_or_create(&dir.path().join("k")).expect("key").annotation()
        };
        let pod = |start: Option<&str>| {
            let mut spec = with_network(Some("/var/run/netns/cni-1"));
            let annotations = [
                (SIGNER_ANNOTATION, signer.as_str()),
                (NAMESPACE_ANNOTATION, "default"),
                (NAME_ANNOTATION, "p"),
                (UID_ANNOTATION, "u"),
            ];
            spec.set_annotations(Some(annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()));
            if let Some(start) = start {
                let mut linux = spec.linux().clone().expect("linux");
                linux.set_sysctl(Some([(UNPRIVILEGED_PORTS.to_owned(), start.to_owned())].into()));
                spec.set_linux(Some(linux));
            }
            spec
        };
        assert!(matches!(Control::of(&pod(Some("0"))), Err(EgressError::PrivilegedPorts(v)) if v == "0"));
        assert!(matches!(Control::of(&pod(Some("1015"))), Err(EgressError::PrivilegedPorts(_))));
        // Positive controls: the default bound, or one above the port.
        assert!(Control::of(&pod(None)).expect("the default").is_some());
        assert!(Control::of(&pod(Some("1024"))).expect("above").is_some());
    }

    #[test]
    fn a_pod_on_the_nodes_network_is_refused() {
        assert_eq!(
            netns(&with_network(Some("/var/run/netns/cni-1"))).expect("netns"),
            Path::new("/var/run/netns/cni-1")
        );
        // hostNetwork: no network namespace of the pod's own; or one nobody set up.
        let mut host = Spec::default();
        host.set_linux(Some(LinuxBuilder::default().namespaces(vec![]).build().expect("linux")));
        assert!(matches!(netns(&host), Err(EgressError::HostNetwork)));
        assert!(matches!(netns(&with_network(None)), Err(EgressError::HostNetwork)));
    }

    #[test]
    fn the_proxy_serves_the_pushed_network_policies_over_the_baselines_static_sections() {
        let baseline = openshell_policy::load_str("baseline", pod::BASELINE).expect("baseline");
        let pushed = openshell_policy::load_str(
            "pushed",
            "version: 1\nfilesystem_policy:\n  read_only: [/usr]\nnetwork_policies:\n  a:\n    name: a\n    endpoints: [{host: a.test, port: 443}]\n    binaries: [{path: /bin/a}]\n",
        )
        .expect("pushed");
        let served = network_only(&baseline, pushed.clone());
        assert_eq!(served.network_policies, pushed.network_policies);
        assert_eq!(served.filesystem_policy, baseline.filesystem_policy);
        assert!(openshell_policy::PolicyDiff::between(&baseline, &served).ensure_live().is_ok());
    }
}
