//! A Kubernetes API server of the test's own, on loopback: the subset the
//! gateway's Kubernetes driver speaks (pods: create, get, list, watch, delete,
//! log, exec over a WebSocket with the `v5.channel.k8s.io` / `v4.channel.k8s.io`
//! protocols, and portforward over the same), built on k8s-openapi's types. Every request is recorded, and
//! every Pod the driver sends is decoded strictly (a field the type does not
//! have fails the request with 400, as a real server's strict field validation).
//!
//! Its "kubelet" runs a pod's container command on this host as a child process
//! (no isolation: it fakes the API, not the node): Pending, then Running, then
//! Succeeded or Failed with the exit code; the output is the pod's log. A pod whose
//! `run.openshell.init` is `idle` runs nothing and stays Running until deleted.
//! Deleting sends SIGTERM (SIGKILL with a grace period of 0), records the end, then
//! removes the pod, with a watch event for each step.
//!
//! Started with [`KubeApi::start_with_agent_sandbox`], it also serves Agent
//! Sandbox's `Sandbox` (`agent_sandbox`); either way it answers API discovery.

mod agent_sandbox;

pub use agent_sandbox::AgentSandbox;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

type Body = BoxBody<Bytes, Infallible>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: serde_json::Value,
}

struct Entry {
    pod: Pod,
    log: Arc<Mutex<Vec<u8>>>,
    pid: Option<u32>,
    /// Processes started in it by pods/exec: they end with the pod, as on a node.
    execs: Vec<u32>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, Entry>,
    version: u64,
    /// Every event, with its resource version, for watches that start behind.
    history: Vec<(u64, &'static str, Pod)>,
    seen: Vec<Seen>,
    /// pods/portforward of a pod's port to another port of this host.
    forwards: HashMap<u16, u16>,
    /// Secrets, by name (strictly decoded).
    secrets: HashMap<String, k8s_openapi::api::core::v1::Secret>,
    /// Terminal sizes sent on pods/exec's resize channel: (pod, width, height).
    resizes: Vec<(String, u16, u16)>,
    /// Whether Agent Sandbox is installed, and its Sandbox resources.
    agent_sandbox: bool,
    sandboxes: HashMap<String, AgentSandbox>,
}

type Shared = Arc<(Mutex<State>, broadcast::Sender<(u64, &'static str, Pod)>)>;

pub struct KubeApi {
    pub addr: SocketAddr,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

fn json_response(code: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("json");
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("response")
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let value = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    json_response(code, &value)
}

/// Why a document is not strictly a `T`.
#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    #[error("not the type: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("fields the type does not have: sent {sent}, typed {typed}")]
    Unknown { sent: serde_json::Value, typed: serde_json::Value },
}

/// Decodes `value` into `T` and back: equal only when nothing was unknown.
pub fn strictly<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: &serde_json::Value,
) -> Result<T, StrictError> {
    let typed: T = serde_json::from_value(value.clone())?;
    let back = serde_json::to_value(&typed)?;
    if &back == value { Ok(typed) } else { Err(StrictError::Unknown { sent: value.clone(), typed: back }) }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl State {
    fn bump(&mut self, kind: &'static str, name: &str, events: &broadcast::Sender<(u64, &'static str, Pod)>) {
        self.version += 1;
        let version = self.version;
        let Some(entry) = self.pods.get_mut(name) else { return };
        entry.pod.metadata.resource_version = Some(version.to_string());
        let pod = entry.pod.clone();
        self.history.push((version, kind, pod.clone()));
        let _ = events.send((version, kind, pod));
    }
}

fn set_state(pod: &mut Pod, phase: &str, state: ContainerState) {
    let status = pod.status.get_or_insert_with(PodStatus::default);
    status.phase = Some(phase.to_owned());
    status.container_statuses = Some(vec![ContainerStatus {
        name: "sandbox".into(),
        state: Some(state),
        image: String::new(),
        image_id: String::new(),
        ready: phase == "Running",
        restart_count: 0,
        ..Default::default()
    }]);
}

fn terminated(code: i32) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated { exit_code: code, finished_at: Some(now()), ..Default::default() }),
        ..Default::default()
    }
}

impl KubeApi {
    /// With Agent Sandbox's `Sandbox` installed.
    pub fn start_with_agent_sandbox() -> KubeApi {
        let api = KubeApi::start();
        api.shared.0.lock().expect("state").agent_sandbox = true;
        api
    }

    /// The Secret `name`, if it exists.
    pub fn secret(&self, name: &str) -> Option<k8s_openapi::api::core::v1::Secret> {
        self.shared.0.lock().expect("state").secrets.get(name).cloned()
    }

    /// The terminal sizes exec'd processes were given, in order: (pod, width, height).
    pub fn resizes(&self) -> Vec<(String, u16, u16)> {
        self.shared.0.lock().expect("state").resizes.clone()
    }

    pub fn sandbox_names(&self) -> Vec<String> {
        self.shared.0.lock().expect("state").sandboxes.keys().cloned().collect()
    }

    pub fn start() -> KubeApi {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (events, _) = broadcast::channel(1024);
        let shared: Shared = Arc::new((Mutex::new(State::default()), events));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let serving = Arc::clone(&shared);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let shared = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(Arc::clone(&shared), req));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
                });
            }
        });
        KubeApi { addr, shared, _runtime: runtime }
    }

    /// A kubeconfig for this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self, path: &std::path::Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(path, text).expect("kubeconfig");
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.0.lock().expect("state").seen.clone()
    }

    /// Sends pods/portforward of every pod's `pod_port` to this host's `host_port`.
    pub fn forward(&self, pod_port: u16, host_port: u16) {
        self.shared.0.lock().expect("state").forwards.insert(pod_port, host_port);
    }

    pub fn pod_names(&self) -> Vec<String> {
        self.shared.0.lock().expect("state").pods.keys().cloned().collect()
    }
}

async fn handle(shared: Shared, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let path = req.uri().path().to_owned();
    let query: Vec<(String, String)> = req.uri().query().map(url_pairs).unwrap_or_default();
    if req.headers().contains_key(hyper::header::UPGRADE) {
        shared.0.lock().expect("state").seen.push(Seen { method, uri, body: serde_json::Value::Null });
        return Ok(upgrade(shared, req, &path, &query));
    }
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    shared.0.lock().expect("state").seen.push(Seen { method: method.clone(), uri, body: body.clone() });
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    Ok(match (method.as_str(), parts.as_slice()) {
        ("POST", ["api", "v1", "namespaces", ns, "pods"]) => create(&shared, ns, &body),
        ("GET", ["apis"]) => agent_sandbox::groups(shared.0.lock().expect("state").agent_sandbox),
        ("POST", ["api", "v1", "namespaces", _, "secrets"]) => put_secret(&shared, None, &body),
        ("PUT", ["api", "v1", "namespaces", _, "secrets", name]) => put_secret(&shared, Some(name), &body),
        ("GET", ["api", "v1", "namespaces", _, "secrets", name]) => {
            match shared.0.lock().expect("state").secrets.get(*name) {
                Some(secret) => json_response(StatusCode::OK, secret),
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("secrets \"{name}\" not found")),
            }
        }
        ("DELETE", ["api", "v1", "namespaces", _, "secrets", name]) => {
            match shared.0.lock().expect("state").secrets.remove(*name) {
                Some(secret) => json_response(StatusCode::OK, &secret),
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("secrets \"{name}\" not found")),
            }
        }
        ("GET", ["apis", agent_sandbox::GROUP, agent_sandbox::VERSION])
            if shared.0.lock().expect("state").agent_sandbox =>
        {
            agent_sandbox::resources()
        }
        ("POST", ["apis", agent_sandbox::GROUP, agent_sandbox::VERSION, "namespaces", ns, "sandboxes"])
            if shared.0.lock().expect("state").agent_sandbox =>
        {
            agent_sandbox::create(&shared, ns, &body)
        }
        ("GET", ["apis", agent_sandbox::GROUP, agent_sandbox::VERSION, "namespaces", _, "sandboxes", name]) => {
            agent_sandbox::get(&shared, name)
        }
        ("DELETE", ["apis", agent_sandbox::GROUP, agent_sandbox::VERSION, "namespaces", _, "sandboxes", name]) => {
            agent_sandbox::delete(&shared, name)
        }
        ("GET", ["api", "v1", "namespaces", _, "pods"]) if get("watch").as_deref() == Some("true") => {
            let name = get("fieldSelector").and_then(|f| f.strip_prefix("metadata.name=").map(str::to_owned));
            let from = get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            watch(&shared, name, from)
        }
        ("GET", ["api", "v1", "namespaces", _, "pods"]) => {
            let state = shared.0.lock().expect("state");
            let items: Vec<&Pod> = state.pods.values().map(|e| &e.pod).collect();
            json_response(
                StatusCode::OK,
                &serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
            )
        }
        ("GET", ["api", "v1", "namespaces", _, "pods", name]) => {
            match shared.0.lock().expect("state").pods.get(*name) {
                Some(e) => json_response(StatusCode::OK, &e.pod),
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{name}\" not found")),
            }
        }
        ("GET", ["api", "v1", "namespaces", _, "pods", name, "log"]) => {
            log(&shared, name, get("follow").as_deref() == Some("true"))
        }
        ("DELETE", ["api", "v1", "namespaces", _, "pods", name]) => {
            let grace =
                body["gracePeriodSeconds"].as_u64().or_else(|| get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
            delete(&shared, name, grace.unwrap_or(30))
        }
        _ => status(StatusCode::NOT_FOUND, "NotFound", &format!("{method} {path}: not served by the test API server")),
    })
}

/// Creates (`name` none) or replaces a Secret, strictly decoded.
fn put_secret(shared: &Shared, name: Option<&str>, body: &serde_json::Value) -> Response<Body> {
    let mut secret: k8s_openapi::api::core::v1::Secret = match strictly(body) {
        Ok(secret) => secret,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &format!("strict decoding error: {e}")),
    };
    let named = secret.metadata.name.clone().unwrap_or_default();
    let mut state = shared.0.lock().expect("state");
    let code = match name {
        None if state.secrets.contains_key(&named) => {
            return status(StatusCode::CONFLICT, "AlreadyExists", &format!("secrets \"{named}\" already exists"));
        }
        None => StatusCode::CREATED,
        Some(name) if name != named || !state.secrets.contains_key(name) => {
            return status(StatusCode::NOT_FOUND, "NotFound", &format!("secrets \"{name}\" not found"));
        }
        Some(_) => StatusCode::OK,
    };
    state.version += 1;
    secret.metadata.resource_version = Some(state.version.to_string());
    state.secrets.insert(named, secret.clone());
    json_response(code, &secret)
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn create(shared: &Shared, ns: &str, body: &serde_json::Value) -> Response<Body> {
    let mut pod: Pod = match strictly(body) {
        Ok(pod) => pod,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &format!("strict decoding error: {e}")),
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (state, events) = (&shared.0, &shared.1);
    let mut state = state.lock().expect("state");
    if state.pods.contains_key(&name) {
        return status(StatusCode::CONFLICT, "AlreadyExists", &format!("pods \"{name}\" already exists"));
    }
    pod.metadata.namespace = Some(ns.to_owned());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
    let log = Arc::new(Mutex::new(Vec::new()));
    state.pods.insert(name.clone(), Entry { pod: pod.clone(), log: Arc::clone(&log), pid: None, execs: Vec::new() });
    state.bump("ADDED", &name, events);
    let created = state.pods[&name].pod.clone();
    drop(state);
    let shared = Arc::clone(shared);
    tokio::spawn(kubelet(shared, name, pod, log));
    json_response(StatusCode::CREATED, &created)
}

/// Runs the pod's container command on this host; reports its states.
async fn kubelet(shared: Shared, name: String, pod: Pod, log: Arc<Mutex<Vec<u8>>>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let container = spec.containers.first().cloned().unwrap_or_default();
    let idle =
        pod.metadata.annotations.as_ref().and_then(|a| a.get("run.openshell.init")).map(String::as_str) == Some("idle");
    let running =
        ContainerState { running: Some(ContainerStateRunning { started_at: Some(now()) }), ..Default::default() };
    let mut child = None;
    if !idle {
        let command = container.command.clone().unwrap_or_default();
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..]).env_clear().stdin(std::process::Stdio::null());
        for e in container.env.iter().flatten() {
            cmd.env(&e.name, e.value.clone().unwrap_or_default());
        }
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        match cmd.spawn() {
            Ok(c) => child = Some(c),
            Err(e) => {
                log.lock().expect("log").extend_from_slice(format!("{e}\n").as_bytes());
                let mut state = shared.0.lock().expect("state");
                if let Some(entry) = state.pods.get_mut(&name) {
                    set_state(&mut entry.pod, "Failed", terminated(128));
                }
                state.bump("MODIFIED", &name, &shared.1);
                return;
            }
        }
    }
    {
        let mut state = shared.0.lock().expect("state");
        let Some(entry) = state.pods.get_mut(&name) else { return };
        set_state(&mut entry.pod, "Running", running);
        entry.pid = child.as_ref().and_then(|c| c.id());
        state.bump("MODIFIED", &name, &shared.1);
    }
    let Some(mut child) = child else { return };
    let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let copy = |mut from: Box<dyn tokio::io::AsyncRead + Unpin + Send>, log: Arc<Mutex<Vec<u8>>>| async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            log.lock().expect("log").extend_from_slice(&buf[..n]);
        }
    };
    let (a, b) = tokio::join!(copy(Box::new(&mut out), Arc::clone(&log)), copy(Box::new(&mut err), Arc::clone(&log)));
    let _ = (a, b);
    let code = child
        .wait()
        .await
        .map(|s| s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)))
        .unwrap_or(128);
    let mut state = shared.0.lock().expect("state");
    if let Some(entry) = state.pods.get_mut(&name) {
        set_state(&mut entry.pod, if code == 0 { "Succeeded" } else { "Failed" }, terminated(code));
        entry.pid = None;
        state.bump("MODIFIED", &name, &shared.1);
    }
}

fn delete(shared: &Shared, name: &str, grace: u64) -> Response<Body> {
    let mut state = shared.0.lock().expect("state");
    let Some(entry) = state.pods.get_mut(name) else {
        return status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{name}\" not found"));
    };
    let signal = if grace == 0 { nix::sys::signal::Signal::SIGKILL } else { nix::sys::signal::Signal::SIGTERM };
    for pid in entry.pid.take().into_iter().chain(entry.execs.drain(..)) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
    }
    let code = if grace == 0 { 137 } else { 143 };
    let ended = entry
        .pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()));
    if !ended {
        set_state(&mut entry.pod, "Failed", terminated(code));
        state.bump("MODIFIED", name, &shared.1);
    }
    state.bump("DELETED", name, &shared.1);
    let pod = state.pods.remove(name).map(|e| e.pod);
    json_response(StatusCode::OK, &pod)
}

fn watch(shared: &Shared, name: Option<String>, from: u64) -> Response<Body> {
    let (backlog, mut events) = {
        let state = shared.0.lock().expect("state");
        let backlog: Vec<_> = state.history.iter().filter(|(v, _, _)| *v > from).cloned().collect();
        (backlog, shared.1.subscribe())
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let wanted = move |pod: &Pod| name.is_none() || pod.metadata.name == name;
    tokio::spawn(async move {
        let line = |kind: &str, pod: &Pod| {
            let mut bytes = serde_json::to_vec(&serde_json::json!({"type": kind, "object": pod})).expect("json");
            bytes.push(b'\n');
            Ok(Frame::data(Bytes::from(bytes)))
        };
        let mut last = from;
        for (version, kind, pod) in backlog.iter().filter(|(_, _, p)| wanted(p)) {
            last = *version;
            if tx.send(line(kind, pod)).await.is_err() {
                return;
            }
        }
        while let Ok((version, kind, pod)) = events.recv().await {
            if version > last && wanted(&pod) && tx.send(line(kind, &pod)).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("response")
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn log(shared: &Shared, name: &str, follow: bool) -> Response<Body> {
    let log = match shared.0.lock().expect("state").pods.get(name) {
        Some(e) => Arc::clone(&e.log),
        None => return status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{name}\" not found")),
    };
    if !follow {
        let text = log.lock().expect("log").clone();
        return Response::builder()
            .status(StatusCode::OK)
            .body(Full::new(Bytes::from(text)).boxed())
            .expect("response");
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let shared = Arc::clone(shared);
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut sent = 0;
        loop {
            let (chunk, ended) = {
                let state = shared.0.lock().expect("state");
                let ended = state.pods.get(&name).is_none_or(|e| {
                    e.pid.is_none()
                        && e.pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Pending")
                        && e.pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running")
                });
                let bytes = log.lock().expect("log");
                (bytes[sent..].to_vec(), ended)
            };
            sent += chunk.len();
            if !chunk.is_empty() && tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                return;
            }
            if ended {
                let rest = log.lock().expect("log")[sent..].to_vec();
                if !rest.is_empty() {
                    let _ = tx.send(Ok(Frame::data(Bytes::from(rest)))).await;
                }
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .body(BodyExt::boxed(StreamBody::new(tokio_stream_from(rx))))
        .expect("response")
}

/// The WebSocket handshake's answer for `req`, choosing a channel protocol it offers.
fn switching(req: &Request<Incoming>) -> Response<Body> {
    let offered = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let protocol = if offered.contains("v5.channel.k8s.io") { "v5.channel.k8s.io" } else { "v4.channel.k8s.io" };
    let key = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()).unwrap_or_default();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", protocol)
        .body(Full::new(Bytes::new()).boxed())
        .expect("response")
}

/// The upgraded connection of `req`, as a server-side WebSocket.
async fn upgraded(
    req: Request<Incoming>,
) -> Option<tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>> {
    let upgraded = hyper::upgrade::on(req).await.ok()?;
    let io = hyper_util::rt::TokioIo::new(upgraded);
    Some(
        tokio_tungstenite::WebSocketStream::from_raw_socket(
            io,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await,
    )
}

/// pods/portforward for one port: the pod is this host, so the stream goes to
/// 127.0.0.1:PORT (or the port [`KubeApi::forward`] maps it to). Channel 0 carries
/// the data, 1 the error; each first sends the port (little-endian), as the API
/// server does.
fn portforward(shared: &Shared, req: Request<Incoming>, query: &[(String, String)]) -> Response<Body> {
    let port: u16 = query.iter().find(|(k, _)| k == "ports").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let host_port = shared.0.lock().expect("state").forwards.get(&port).copied().unwrap_or(port);
    let response = switching(&req);
    tokio::spawn(async move {
        let Some(ws) = upgraded(req).await else { return };
        let (mut sink, mut source) = ws.split();
        let [lo, hi] = port.to_le_bytes();
        for channel in [0u8, 1] {
            if sink.send(Message::binary(vec![channel, lo, hi])).await.is_err() {
                return;
            }
        }
        let tcp = match tokio::net::TcpStream::connect(("127.0.0.1", host_port)).await {
            Ok(tcp) => tcp,
            Err(e) => {
                let mut frame = vec![1u8];
                frame.extend_from_slice(format!("connect to port {port}: {e}").as_bytes());
                let _ = sink.send(Message::binary(frame)).await;
                let _ = sink.close().await;
                return;
            }
        };
        let (mut from_pod, mut to_pod) = tcp.into_split();
        let upstream = tokio::spawn(async move {
            while let Some(Ok(message)) = source.next().await {
                let data = message.into_data();
                if data.first() == Some(&0)
                    && data.len() > 1
                    && tokio::io::AsyncWriteExt::write_all(&mut to_pod, &data[1..]).await.is_err()
                {
                    break;
                }
            }
        });
        let mut buf = [0u8; 4096];
        while let Ok(n) = from_pod.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut frame = vec![0u8];
            frame.extend_from_slice(&buf[..n]);
            if sink.send(Message::binary(frame)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
        upstream.abort();
    });
    response
}

/// The WebSocket subresources: pods/portforward, and pods/exec (the command run on
/// this host with the pod's environment, its streams on channels 0-2 and its end
/// on 3).
fn upgrade(shared: Shared, req: Request<Incoming>, path: &str, query: &[(String, String)]) -> Response<Body> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["api", "v1", "namespaces", _, "pods", _, "portforward"] = parts.as_slice() {
        return portforward(&shared, req, query);
    }
    let ["api", "v1", "namespaces", _, "pods", name, "exec"] = parts.as_slice() else {
        return status(StatusCode::NOT_FOUND, "NotFound", "only pods/exec and pods/portforward upgrade here");
    };
    let env: Vec<(String, String)> = match shared.0.lock().expect("state").pods.get(*name) {
        Some(e) => e
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect(),
        None => return status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{name}\" not found")),
    };
    let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let response = switching(&req);
    let pod = (*name).to_owned();
    tokio::spawn(async move {
        if let Some(ws) = upgraded(req).await {
            run_exec(ws, command, env, shared, pod).await;
        }
    });
    response
}

async fn run_exec<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    command: Vec<String>,
    env: Vec<(String, String)>,
    shared: Shared,
    pod: String,
) {
    let (mut sink, mut source) = ws.split();
    let mut cmd = tokio::process::Command::new(command.first().cloned().unwrap_or_default());
    cmd.args(command.iter().skip(1)).env_clear().envs(env);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let status =
                serde_json::json!({"status": "Failure", "message": format!("exec: {e}"), "reason": "InternalError"});
            let mut frame = vec![3u8];
            frame.extend(serde_json::to_vec(&status).expect("json"));
            let _ = sink.send(Message::binary(frame)).await;
            let _ = sink.close().await;
            return;
        }
    };
    if let (Some(pid), Some(entry)) = (child.id(), shared.0.lock().expect("state").pods.get_mut(&pod)) {
        entry.execs.push(pid);
    }
    let mut stdin = child.stdin.take();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    for (channel, pipe) in [
        (1u8, child.stdout.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
        (2u8, child.stderr.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut frame = vec![channel];
                frame.extend_from_slice(&buf[..n]);
                if tx.send(frame).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let resizes = Arc::clone(&shared);
    let input = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            let data = message.into_data();
            match data.first() {
                Some(0) => {
                    if let Some(stdin) = stdin.as_mut() {
                        let _ = tokio::io::AsyncWriteExt::write_all(stdin, &data[1..]).await;
                    }
                }
                // v5: close a stream (stdin).
                Some(255) if data.get(1) == Some(&0) => stdin = None,
                // The terminal's size: {"Width": W, "Height": H}.
                Some(4) => {
                    let size: serde_json::Value = serde_json::from_slice(&data[1..]).unwrap_or_default();
                    let wh = (size["Width"].as_u64().unwrap_or(0), size["Height"].as_u64().unwrap_or(0));
                    resizes.0.lock().expect("state").resizes.push((pod.clone(), wh.0 as u16, wh.1 as u16));
                }
                _ => {}
            }
        }
    });
    while let Some(frame) = rx.recv().await {
        if sink.send(Message::binary(frame)).await.is_err() {
            break;
        }
    }
    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(128);
    let status = if code == 0 {
        serde_json::json!({"status": "Success", "metadata": {}})
    } else {
        serde_json::json!({"status": "Failure", "reason": "NonZeroExitCode", "message": format!("command terminated with non-zero exit code: {code}"),
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}, "metadata": {}})
    };
    let mut frame = vec![3u8];
    frame.extend(serde_json::to_vec(&status).expect("json"));
    let _ = sink.send(Message::binary(frame)).await;
    // A closing handshake, as the API server's: the client answers the close, and
    // then the connection goes (dropping it at once could reset it before the
    // client read the status).
    let _ = sink.close().await;
    let abort = input.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(2), input).await.is_err() {
        // The client never closed: drop it.
        abort.abort();
    }
}
