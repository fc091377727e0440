//! The gateway's Kubernetes driver (`gateway run --driver kubernetes`) against a
//! Kubernetes API server of the test's own (`tests/support/kube_api.rs`: pods,
//! watch, log and exec over a WebSocket, on k8s-openapi's types, every Pod body
//! decoded strictly) and Debian's docker-registry on loopback, where the driver
//! pushes each sandbox's image. The server's fake kubelet runs a pod's command on
//! this host: what is tested is what the driver asks of the API, not a node
//! (tests/cri.rs tests the node).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::kube_api::{KubeApi, Seen, strictly};
use support::registry::Registry;

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_openshell");

struct Env {
    dir: tempfile::TempDir,
    api: KubeApi,
    registry: Registry,
    gateway: std::process::Child,
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl Env {
    fn command(dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(dir)
            .env("HOME", dir)
            .env("OPENSHELL_GATEWAY_DIR", dir.join("gw"))
            .env_remove("OPENSHELL_STORE")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        c
    }

    /// Runs openshell; a command that has not ended after a minute fails the test
    /// with the gateway's log (instead of hanging it).
    fn run(&self, args: &[&str]) -> Output {
        let child = Self::command(self.dir.path(), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openshell");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(output) => output.expect("wait"),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("openshell {args:?} did not end in 60 s; the gateway's log:\n{}", self.log());
            }
        }
    }

    fn store(&self) -> String {
        self.dir.path().join("store").display().to_string()
    }

    fn start() -> Env {
        Env::start_on(KubeApi::start())
    }

    /// The gateway, with its driver on `api`.
    fn start_on(api: KubeApi) -> Env {
        // Short: the gateway's socket path must fit a sockaddr_un.
        let dir = tempfile::Builder::new().prefix("osk").tempdir_in("/tmp").expect("tempdir");
        let p = dir.path();
        // A one-file image: the fake kubelet runs commands on this host, so only
        // its digest matters.
        std::fs::write(p.join("image.yaml"), "name: openshell/ktest\nfiles:\n  - path: /etc/motd\n    content: \"k\\n\"\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\nenv:\n  PATH: /usr/bin:/bin\n").expect("definition");
        let store = p.join("store").display().to_string();
        for args in
            [vec!["lock", "image.yaml", "--store", &store], vec!["build", "lockfiles/image.lock", "--store", &store]]
        {
            let o = Self::command(p, &args).output().expect("openshell");
            assert!(o.status.success(), "{args:?}: {}", text(&o));
        }
        let registry = Registry::start(&p.join("registry"), None, None);
        let kubeconfig = p.join("kubeconfig");
        api.kubeconfig(&kubeconfig);
        let repo = format!("{}/openshell/sandboxes", registry.host());
        let log = std::fs::File::create(p.join("gateway.log")).expect("log");
        let gateway = Self::command(
            p,
            &[
                "gateway",
                "run",
                "--store",
                &store,
                "--driver",
                "kubernetes",
                "--kubeconfig",
                &kubeconfig.display().to_string(),
                "--namespace",
                "agents",
                "--image-registry",
                &repo,
                "--registry-insecure",
            ],
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("gateway run");
        let env = Env { dir, api, registry, gateway };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !env.dir.path().join("gw/gateway.sock").exists() {
            assert!(Instant::now() < deadline, "the gateway did not start: {}", env.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        env
    }

    /// `sandbox create --rm --name NAME -- /bin/sh -c SCRIPT` of the test's image.
    fn create_rm(&self, name: &str, script: &str) -> Output {
        let store = self.store();
        let args = ["sandbox", "create", "--rm", "--name", name, "--store", &store, "--image", "openshell/ktest"];
        self.run(&[&args[..], &["--", "/bin/sh", "-c", script]].concat())
    }

    /// Runs `script` with `--rm` until a run is handed to the standby pod `pod`
    /// (its exec seen), at most twice; returns that run and the API requests it
    /// made. The standby shows in the API before the gateway, which makes it at
    /// low priority, holds it: a create in between goes cold, and the next one
    /// takes the standby.
    fn create_rm_on_standby(&self, name: &str, script: &str, pod: &str) -> (Output, Vec<Seen>) {
        let exec = format!("/api/v1/namespaces/agents/pods/{pod}/exec?");
        let mut tries = Vec::new();
        for _ in 0..2 {
            let before = self.api.seen().len();
            let o = self.create_rm(name, script);
            let seen = self.api.seen().split_off(before);
            if seen.iter().any(|s| s.uri.starts_with(&exec)) {
                return (o, seen);
            }
            let execs: Vec<&str> = seen.iter().filter(|s| s.uri.contains("/exec?")).map(|s| s.uri.as_str()).collect();
            let posts: Vec<&str> = seen.iter().filter(|s| s.method == "POST").map(|s| s.uri.as_str()).collect();
            tries.push(format!(
                "{}; execs {execs:?}; posts {posts:?}; sandboxes {:?}",
                text(&o),
                self.api.sandbox_names()
            ));
        }
        panic!("no run was handed to the standby pod {pod}: {tries:?}\n{}", self.log());
    }

    /// Waits (up to 20 s) until `listed` holds exactly one name and it is not
    /// `once` (a run's object may still be listed for a moment after its DELETE,
    /// which the test API server records as it arrives and applies after); returns
    /// it: the standby's `kind` object.
    fn sole_other(&self, kind: &str, listed: impl Fn() -> Vec<String>, once: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let names = listed();
            if let [only] = names.as_slice()
                && only != once
            {
                return only.clone();
            }
            assert!(Instant::now() < deadline, "no standby {kind}: {names:?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The name of the pod of sandbox `name` (`openshell-ID`).
    fn pod_of(&self, name: &str) -> String {
        let got = self.run(&["sandbox", "get", name, "--output", "json"]);
        let id = serde_json::from_slice::<serde_json::Value>(&got.stdout).expect("sandbox get json")["id"]
            .as_str()
            .expect("an id")
            .to_ascii_lowercase();
        format!("openshell-{id}")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    fn manifest(&self) -> String {
        let o = self.run(&["image", "ls", "--store", &self.store(), "--output", "json"]);
        let listed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("image ls json");
        listed[0]["manifest"].as_str().expect("a manifest digest").to_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Self::command(self.dir.path(), &["gateway", "stop"]).output();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.gateway.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.gateway.kill();
                let _ = self.gateway.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn sha256(text: &str) -> String {
    openshell_store::Digest::sha256(text.as_bytes()).to_string()
}

#[test]
fn the_kubernetes_driver_runs_each_sandbox_as_a_pod() {
    let env = Env::start();
    let store = env.store();
    let manifest = env.manifest();
    // A foreground run: the pod's output and its exit code come back.
    let o = env.create_rm("once", "echo from the pod; exit 3");
    assert_eq!(o.status.code(), Some(3), "{}\n{}", text(&o), env.log());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from the pod\n", "{}", env.log());

    // The Pod the driver sent: strictly a Pod, under RuntimeClass openshell, the
    // image by digest from the registry, the policy and its digest by annotation.
    let seen = env.api.seen();
    let created: Vec<_> =
        seen.iter().filter(|s| s.method == "POST" && s.body.to_string().contains("echo from the pod")).collect();
    assert_eq!(created.len(), 1, "{seen:?}");
    assert!(created[0].uri.starts_with("/api/v1/namespaces/agents/pods"), "{}", created[0].uri);
    let pod: k8s_openapi::api::core::v1::Pod = strictly(&created[0].body).expect("a Pod, strictly");
    let spec = pod.spec.clone().expect("spec");
    assert_eq!(spec.runtime_class_name.as_deref(), Some("openshell"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    let container = &spec.containers[0];
    // The default policy's stated memory (4 GiB) is the container's limit.
    let limits = container.resources.as_ref().and_then(|r| r.limits.clone()).expect("limits");
    assert_eq!(limits["memory"].0, (4u64 << 30).to_string());
    assert_eq!(
        container.image.as_deref(),
        Some(format!("{}/openshell/sandboxes@{manifest}", env.registry.host()).as_str())
    );
    assert_eq!(
        container.command.as_deref(),
        Some(&["/bin/sh".to_owned(), "-c".into(), "echo from the pod; exit 3".into()][..])
    );
    let annotations = pod.metadata.annotations.clone().expect("annotations");
    let policy = &annotations["run.openshell.policy.yaml"];
    assert_eq!(annotations["run.openshell.policy.digest"], sha256(policy));
    assert_eq!(annotations["run.openshell.init"], "supervise");
    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml"))
        .expect("default policy");
    assert_eq!(policy, &default, "the sandbox's policy (the default) travels whole");
    // The registry holds what the pod pulls.
    let url = format!("http://{}/v2/openshell/sandboxes/manifests/{manifest}", env.registry.host());
    let curl = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "-H", "Accept: application/vnd.oci.image.manifest.v1+json", &url])
        .status();
    assert!(curl.is_ok_and(|s| s.success()), "the registry lacks {url}");
    // --rm: the pod is gone; the one left is the standby the gateway keeps for the
    // next create of this image and policy (idle).
    // (The once-run's pod may still be listed for a moment after its DELETE.)
    let once = pod.metadata.name.clone().expect("the pod's name");
    let standby = env.sole_other("pod", || env.api.pod_names(), &once);

    // The next create takes the standby pod: its job goes in by exec, no new pod.
    let (o, seen) = env.create_rm_on_standby("warm", "echo warm; exit 4", &standby);
    assert_eq!(o.status.code(), Some(4), "{}\n{}", text(&o), env.log());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "warm\n");
    assert!(
        !seen.iter().any(|s| s.method == "POST" && s.body.to_string().contains("echo warm")),
        "a new pod for the warm create"
    );
    assert!(
        seen.iter().any(|s| s.uri.starts_with(&format!("/api/v1/namespaces/agents/pods/{standby}/exec?"))
            && s.uri.contains("echo+warm")),
        "the job was not handed to the standby pod {standby}: {seen:?}"
    );
    assert!(!env.api.pod_names().contains(&standby), "the standby pod outlived its run");

    // A sandbox without a command: an idle pod; exec goes through pods/exec.
    let o = env.run(&["sandbox", "create", "-d", "--name", "idle", "--store", &store, "--image", "openshell/ktest"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    let seen = env.api.seen();
    let idle: k8s_openapi::api::core::v1::Pod =
        strictly(&seen.iter().rfind(|s| s.method == "POST").expect("POST").body).expect("Pod");
    // Idle, whether made for it or a standby it took.
    let idle_pod = env.pod_of("idle");
    assert!(env.api.pod_names().contains(&idle_pod), "{idle_pod} not among {:?}", env.api.pod_names());
    assert_eq!(idle.metadata.annotations.as_ref().expect("annotations")["run.openshell.init"], "idle");
    assert_eq!(
        idle.spec.as_ref().expect("spec").containers[0].command.as_deref(),
        Some(&["openshell-idle".to_owned()][..])
    );
    let o = env.run(&["sandbox", "exec", "idle", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}\n{}", text(&o), env.log());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    assert!(
        env.api.seen().iter().any(|s| s.uri.contains("/pods/openshell-") && s.uri.contains("/exec?")),
        "no pods/exec request"
    );
    // Stop deletes the pod (SIGTERM with a grace period).
    let o = env.run(&["sandbox", "stop", "idle"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());

    // sandbox forward: pods/portforward to the pod's port (the fake kubelet's
    // pods run on this host: busybox's nc answering one line per connection).
    let port = support::registry::free_port();
    let answer = env.dir.path().join("answer");
    std::fs::write(&answer, "#!/bin/sh\nread line\necho \"pong $line\"\n").expect("answer");
    std::fs::set_permissions(&answer, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let answer = answer.display().to_string();
    let serve = ["/bin/busybox", "nc", "-ll", "-p", &port.to_string(), "-e", &answer];
    let args = ["sandbox", "create", "-d", "--name", "echo", "--store", &store, "--image", "openshell/ktest", "--"];
    let o = env.run(&[&args[..], &serve[..]].concat());
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    // Listening (the fake kubelet's pods run on this host).
    drop(support::connect_when_listening(port));
    let local = support::registry::free_port();
    let forward = Env::command(env.dir.path(), &["sandbox", "forward", "echo", &format!("{local}:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forward");
    let echoed = support::echo(local, "through the forward\n");
    assert_eq!(echoed.as_deref().ok(), Some("pong through the forward\n"), "{echoed:?}\n{}", env.log());
    let portforward = format!("ports={port}");
    assert!(
        env.api.seen().iter().any(|s| s.uri.contains("/portforward?") && s.uri.contains(&portforward)),
        "no pods/portforward request"
    );
    let o = env.run(&["sandbox", "stop", "echo"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    // The forward ends with its sandbox.
    let mut forward = forward;
    let deadline = Instant::now() + Duration::from_secs(10);
    while forward.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = forward.kill();
            panic!("the forward kept running after its sandbox stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let deleted = env.api.seen().into_iter().filter(|s| s.method == "DELETE").count();
    assert!(deleted >= 1, "stop sent no DELETE");
    let o = env.run(&["sandbox", "delete", "idle"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    assert!(!env.api.pod_names().contains(&idle_pod), "{:?}", env.api.pod_names());
}

#[test]
fn the_kubernetes_driver_needs_a_registry_and_says_so() {
    let dir = tempfile::Builder::new().prefix("osk").tempdir_in("/tmp").expect("tempdir");
    let o = Env::command(dir.path(), &["gateway", "run", "--driver", "kubernetes"]).output().expect("openshell");
    assert!(!o.status.success());
    assert!(text(&o).contains("--driver kubernetes needs --image-registry"), "{}", text(&o));
}

/// `policy set` on a running sandbox: the driver signs the new policy for the
/// sandbox's pod and sends it through pods/portforward to the control port of the
/// pod's egress proxy (here the test, checking it as the node's proxy does), and
/// reports the proxy's answer.
#[test]
fn a_running_sandboxs_network_policy_changes_through_its_pods_proxy() {
    use openshell_policy_update::{Answer, CONTROL_PORT, PodIdentity, SIGNER_ANNOTATION, Verifier};
    let env = Env::start();
    let store = env.store();
    let o = env.run(&["sandbox", "create", "-d", "--name", "live", "--store", &store, "--image", "openshell/ktest"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    let name = env.pod_of("live");
    let seen = env.api.seen();
    let post = seen
        .iter()
        .find(|s| s.method == "POST" && s.body["metadata"]["name"] == name.as_str())
        .expect("the sandbox's pod");
    let pod: k8s_openapi::api::core::v1::Pod = strictly(&post.body).expect("a Pod, strictly");
    let signer = pod.metadata.annotations.as_ref().expect("annotations")[SIGNER_ANNOTATION].clone();
    let this = PodIdentity { namespace: "agents".into(), name: name.clone(), uid: format!("uid-{name}") };
    let mut verifier = Verifier::new(&signer, this).expect("the pod's signer annotation");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    env.api.forward(CONTROL_PORT, listener.local_addr().expect("addr").port());
    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml"))
        .expect("default policy");
    let narrower = default.replace("      - { host: console.anthropic.com, port: 443 }\n", "");
    assert_ne!(narrower, default);
    std::fs::write(env.dir.path().join("narrower.yaml"), &narrower).expect("policy");
    std::fs::write(env.dir.path().join("default.yaml"), &default).expect("policy");
    // One update, answered as the node's proxy would (or refused with `refusal`).
    let mut answer_one = |refusal: Option<&str>| {
        let (stream, _) = listener.accept().expect("the driver's connection");
        let line = openshell_policy_update::read_line(&stream).expect("one line");
        let update = verifier.check(&line).unwrap_or_else(|e| panic!("the driver's update does not verify: {e}"));
        let answer = match refusal {
            None => {
                verifier.applied(&update);
                Answer::Applied { revision: update.revision, digest: sha256(&update.body) }
            }
            Some(reason) => Answer::Refused { reason: reason.to_owned() },
        };
        let mut stream = stream;
        let reply = serde_json::to_string(&answer).expect("answer");
        std::io::Write::write_all(&mut stream, format!("{reply}\n").as_bytes()).expect("answer");
        update
    };
    let (update, o) = std::thread::scope(|s| {
        let set = s.spawn(|| env.run(&["policy", "set", "live", "narrower.yaml"]));
        (answer_one(None), set.join().expect("policy set"))
    });
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    assert!(text(&o).contains(&format!("network policy revision {} applied", update.revision)), "{}", text(&o));
    assert_eq!(update.body, narrower);
    // The proxy's refusal reaches the user; a later update has a higher revision.
    let (later, o) = std::thread::scope(|s| {
        let set = s.spawn(|| env.run(&["policy", "set", "live", "default.yaml"]));
        (answer_one(Some("the test refuses it")), set.join().expect("policy set"))
    });
    assert!(!o.status.success(), "a refused update reported as applied");
    assert!(text(&o).contains("refused the update: the test refuses it"), "{}", text(&o));
    assert!(later.revision > update.revision, "{} after {}", later.revision, update.revision);
    assert!(
        env.api.seen().iter().any(|s| s.uri.contains(&format!("/pods/{name}/portforward?"))
            && s.uri.contains(&format!("ports={CONTROL_PORT}"))),
        "no pods/portforward to the control port"
    );
    let o = env.run(&["sandbox", "delete", "live"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
}

/// With Agent Sandbox installed (its `Sandbox` kind served), the driver makes each
/// sandbox's pod through a `Sandbox` resource, whose controller (the test server's)
/// makes the pod; runs, standby hand-outs and stop work as with pods, and deleting
/// deletes the `Sandbox`.
#[test]
fn with_agent_sandbox_installed_each_sandbox_is_a_sandbox_resource() {
    use support::kube_api::AgentSandbox;
    let env = Env::start_on(KubeApi::start_with_agent_sandbox());
    let store = env.store();
    let o = env.create_rm("once", "echo through a Sandbox; exit 3");
    assert_eq!(o.status.code(), Some(3), "{}\n{}", text(&o), env.log());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through a Sandbox\n", "{}", env.log());
    let seen = env.api.seen();
    let sandboxes = "/apis/agents.x-k8s.io/v1alpha1/namespaces/agents/sandboxes";
    let created: Vec<_> = seen.iter().filter(|s| s.method == "POST" && s.uri.starts_with(sandboxes)).collect();
    assert!(!created.is_empty(), "no Sandbox created: {seen:?}");
    assert!(
        !seen.iter().any(|s| s.method == "POST" && s.uri.starts_with("/api/v1/")),
        "a pod created directly beside Agent Sandbox"
    );
    let sandbox: AgentSandbox = strictly(&created[0].body).expect("a Sandbox, strictly");
    let template = &sandbox.spec.pod_template;
    assert_eq!(template.spec.runtime_class_name.as_deref(), Some("openshell"));
    assert_eq!(
        template.spec.containers[0].command.as_deref(),
        Some(&["/bin/sh".to_owned(), "-c".into(), "echo through a Sandbox; exit 3".into()][..])
    );
    let annotations = template.metadata.as_ref().and_then(|m| m.annotations.clone()).expect("annotations");
    assert_eq!(annotations["run.openshell.policy.digest"], sha256(&annotations["run.openshell.policy.yaml"]));
    assert!(annotations["run.openshell.policy.signer"].starts_with("ed25519:"));
    let name = sandbox.metadata.name.clone().expect("name");
    assert!(
        env.api.seen().iter().any(|s| s.method == "DELETE" && s.uri.starts_with(&format!("{sandboxes}/{name}"))),
        "--rm did not delete the Sandbox"
    );
    // The standby is a Sandbox too; the next create takes its pod by exec. (The
    // once-run's Sandbox may still be listed for a moment: its DELETE is recorded
    // as it arrives, before the server applies it.)
    let standby = env.sole_other("Sandbox", || env.api.sandbox_names(), &name);
    assert_eq!(env.api.pod_names(), std::slice::from_ref(&standby), "the standby Sandbox's pod");
    let (o, _) = env.create_rm_on_standby("warm", "echo warm; exit 4", &standby);
    assert_eq!(o.status.code(), Some(4), "{}\n{}", text(&o), env.log());
    assert!(!env.api.sandbox_names().contains(&standby), "the standby's Sandbox outlived its run");
    // A detached sandbox, stopped: its Sandbox and pod are gone.
    let o = env.run(&["sandbox", "create", "-d", "--name", "idle", "--store", &store, "--image", "openshell/ktest"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    let pod = env.pod_of("idle");
    assert!(env.api.sandbox_names().contains(&pod), "{pod} not among {:?}", env.api.sandbox_names());
    let o = env.run(&["sandbox", "stop", "idle"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.api.sandbox_names().contains(&pod) || env.api.pod_names().contains(&pod) {
        assert!(Instant::now() < deadline, "{pod} outlived stop: {:?}", env.api.sandbox_names());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The standby pool keeps pods per image and policy: after creates under two
/// policies, each has an idle pod, and the next create of each takes its own.
#[test]
fn the_standby_pool_keeps_a_pod_per_image_and_policy() {
    let env = Env::start();
    let store = env.store();
    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml"))
        .expect("default policy");
    let other = default.replace("      - { host: console.anthropic.com, port: 443 }\n", "");
    std::fs::write(env.dir.path().join("other.yaml"), &other).expect("policy");
    let create = |policy: &[&str], script: &str| {
        let args = ["sandbox", "create", "--rm", "--store", &store, "--image", "openshell/ktest"];
        env.run(&[&args[..], policy, &["--", "/bin/sh", "-c", script]].concat())
    };
    for (policy, script) in [(&[][..], "exit 0"), (&["--policy", "other.yaml"][..], "exit 0")] {
        let o = create(policy, script);
        assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    }
    // One idle pod per policy, told apart by their policy digest.
    let idle_by_policy = || -> Vec<(String, String)> {
        let seen = env.api.seen();
        let names = env.api.pod_names();
        let mut pods: Vec<(String, String)> = seen
            .iter()
            .filter(|s| s.method == "POST")
            .filter_map(|s| {
                let pod: k8s_openapi::api::core::v1::Pod = strictly(&s.body).ok()?;
                let name = pod.metadata.name.clone()?;
                let annotations = pod.metadata.annotations?;
                (names.contains(&name) && annotations["run.openshell.init"] == "idle")
                    .then(|| (annotations["run.openshell.policy.digest"].clone(), name))
            })
            .collect();
        pods.sort();
        pods
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while idle_by_policy().len() != 2 {
        assert!(Instant::now() < deadline, "not one standby per policy: {:?}\n{}", idle_by_policy(), env.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let standby = idle_by_policy();
    assert_ne!(standby[0].0, standby[1].0, "{standby:?}");
    let digests = [sha256(&default), sha256(&other)];
    for (policy, digest) in [(&[][..], &digests[0]), (&["--policy", "other.yaml"][..], &digests[1])] {
        let pod = &standby.iter().find(|(d, _)| d == digest).expect("a standby of this policy").1;
        let o = create(policy, "echo taken");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "taken\n", "{}\n{}", text(&o), env.log());
        assert!(
            env.api.seen().iter().any(|s| s.uri.starts_with(&format!("/api/v1/namespaces/agents/pods/{pod}/exec?"))
                && s.uri.contains("echo+taken")),
            "the create under {policy:?} did not take its standby {pod}"
        );
    }
}

/// `sandbox exec -t`: the client's terminal size reaches the process in the pod
/// (pods/exec's resize channel), when it starts and when the terminal changes.
#[test]
fn an_exec_terminal_follows_the_clients_size() {
    use std::io::Write;
    let env = Env::start();
    let store = env.store();
    let o = env.run(&["sandbox", "create", "-d", "--name", "term", "--store", &store, "--image", "openshell/ktest"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    let pod = env.pod_of("term");
    let size =
        |cols: u16, rows: u16| rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(None, None).expect("a terminal");
    let master = std::fs::File::from(pty.master);
    rustix::termios::tcsetwinsize(&master, size(111, 33)).expect("sizing the test's terminal");
    let slave = std::fs::File::from(pty.slave);
    let stdio = || Stdio::from(slave.try_clone().expect("dup"));
    // setsid -c: the client leads a session whose terminal is this one, so it
    // gets SIGWINCH when the size changes.
    let mut client = Command::new("setsid")
        .args(["-c", BIN, "sandbox", "exec", "-t", "term", "--", "/bin/sh", "-c", "read line; echo got $line"])
        .current_dir(env.dir.path())
        .env("HOME", env.dir.path())
        .env("OPENSHELL_GATEWAY_DIR", env.dir.path().join("gw"))
        .env_remove("OPENSHELL_STORE")
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .expect("setsid (util-linux) runs openshell");
    drop(slave);
    let sent = |cols: u16, rows: u16| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !env.api.resizes().contains(&(pod.clone(), cols, rows)) {
            assert!(Instant::now() < deadline, "{cols}x{rows} never sent: {:?}\n{}", env.api.resizes(), env.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    sent(111, 33);
    rustix::termios::tcsetwinsize(&master, size(120, 40)).expect("resizing the test's terminal");
    sent(120, 40);
    (&master).write_all(b"done\n").expect("type a line");
    let status = client.wait().expect("wait");
    assert!(status.success(), "{status:?}\n{}", env.log());
    let o = env.run(&["sandbox", "delete", "term"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
}

/// What the test's stand-in for the pods' egress proxies received: (pod, kind,
/// revision, body), each update verified as the node's proxy does.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, openshell_policy_update::Kind, u64, String)>>>;

/// Answers every update sent to the pods' control port (forwarded here): checked
/// with the driver's key (`signer`, from the pods' annotation) for the pod it
/// names, which must be one the API server holds, then recorded and applied.
fn control_port(env: &Env, signer: String) -> Received {
    use openshell_policy_update::{Answer, CONTROL_PORT, Verifier};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    env.api.forward(CONTROL_PORT, listener.local_addr().expect("addr").port());
    let received: Received = Default::default();
    let record = std::sync::Arc::clone(&received);
    std::thread::spawn(move || {
        let mut verifiers: std::collections::HashMap<String, Verifier> = Default::default();
        for stream in listener.incoming().flatten() {
            let Ok(line) = openshell_policy_update::read_line(&stream) else { continue };
            let update: openshell_policy_update::Update = serde_json::from_str(&line).expect("an update");
            assert_eq!(update.pod.uid, format!("uid-{}", update.pod.name), "{:?}", update.pod);
            let verifier = verifiers
                .entry(update.pod.name.clone())
                .or_insert_with(|| Verifier::new(&signer, update.pod.clone()).expect("the signer"));
            let checked = verifier.check(&line).unwrap_or_else(|e| panic!("the driver's update does not verify: {e}"));
            verifier.applied(&checked);
            let digest = sha256(&checked.body);
            record.lock().expect("received").push((checked.pod.name, checked.kind, checked.revision, checked.body));
            let answer = serde_json::to_string(&Answer::Applied { revision: checked.revision, digest }).expect("json");
            let mut stream = stream;
            let _ = std::io::Write::write_all(&mut stream, format!("{answer}\n").as_bytes());
        }
    });
    received
}

/// Inference routing for pods: the route (with its credential) is kept in a
/// Kubernetes Secret and reaches each pod's proxy by a signed update, when its pod
/// starts and when the route changes; the pod's spec never holds the credential,
/// and its environment points the agents' SDKs at the router.
#[test]
fn the_inference_route_reaches_pods_by_signed_updates_and_its_credential_stays_in_a_secret() {
    use openshell_policy_update::{Kind, SIGNER_ANNOTATION};
    const KEY: &str = "sk-route-credential-5d1e";
    let env = Env::start();
    let store = env.store();
    let args = support::provider_create("mock", "openai-compatible", "http://backend.test:8000/v1", "MOCK_API_KEY");
    let mut create = Env::command(env.dir.path(), &args);
    let o = create.env("MOCK_API_KEY", KEY).output().expect("provider create");
    assert!(o.status.success(), "{}", text(&o));
    let o = env.run(&["inference", "set", "--provider", "mock", "--model", "first", "--timeout", "2"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    // The first pod's annotation names the driver's key; the stand-in proxies check with it.
    let o = env.run(&["sandbox", "create", "-d", "--name", "routed", "--store", &store, "--image", "openshell/ktest"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    let name = env.pod_of("routed");
    let seen = env.api.seen();
    let post = seen.iter().find(|s| s.method == "POST" && s.body["metadata"]["name"] == name.as_str()).expect("pod");
    assert!(!post.body.to_string().contains(KEY), "the credential is in the pod's spec");
    let pod: k8s_openapi::api::core::v1::Pod = strictly(&post.body).expect("a Pod, strictly");
    let env_vars: Vec<(String, String)> = pod.spec.expect("spec").containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert!(env_vars.contains(&("OPENAI_BASE_URL".into(), "https://inference.local/v1".into())), "{env_vars:?}");
    assert!(env_vars.contains(&("OPENAI_API_KEY".into(), "openshell-routed".into())), "{env_vars:?}");
    assert!(
        !env_vars.iter().any(|(k, _)| k == "HTTPS_PROXY" || k == "SSL_CERT_FILE"),
        "the runtime sets those: {env_vars:?}"
    );
    let signer = pod.metadata.annotations.expect("annotations")[SIGNER_ANNOTATION].clone();
    let received = control_port(&env, signer);
    // The Secret holds the route and its credential.
    let secret = env.api.secret("openshell-inference-route").expect("the route's Secret");
    let data = String::from_utf8(secret.data.expect("data")["route.json"].0.clone()).expect("utf-8");
    assert!(data.contains(KEY) && data.contains("http://backend.test:8000/v1"), "{data}");
    // (The stand-in listens only now: the push when the first pod started found
    // nothing; the driver logged it.) A route change reaches the running pod.
    let routes_for = |pod: &str| -> Vec<(u64, String)> {
        let got = received.lock().expect("received").clone();
        got.into_iter().filter(|(p, k, _, _)| p == pod && *k == Kind::Route).map(|(_, _, r, b)| (r, b)).collect()
    };
    let o = env.run(&["inference", "set", "--provider", "mock", "--model", "second", "--timeout", "2"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    let routes = routes_for(&name);
    let last = routes.last().expect("the route change reached the running pod");
    assert!(last.1.contains(KEY) && last.1.contains("\"second\""), "{routes:?}");
    // A sandbox started now gets it when its pod runs.
    let o = env.run(&["sandbox", "create", "-d", "--name", "later", "--store", &store, "--image", "openshell/ktest"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    let later = env.pod_of("later");
    let deadline = Instant::now() + Duration::from_secs(20);
    while routes_for(&later).is_empty() {
        assert!(Instant::now() < deadline, "no route for {later}: {:?}\n{}", received.lock().expect("r"), env.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(routes_for(&later)[0].1.contains("\"second\""));
    // No route: the Secret goes, and running pods are told.
    let o = env.run(&["inference", "delete"]);
    assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    assert!(env.api.secret("openshell-inference-route").is_none(), "the Secret outlived the route");
    assert_eq!(routes_for(&name).last().map(|(_, b)| b.as_str()), Some("null"));
    for sandbox in ["routed", "later"] {
        let o = env.run(&["sandbox", "delete", sandbox]);
        assert!(o.status.success(), "{}\n{}", text(&o), env.log());
    }
}
