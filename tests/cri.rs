//! The kubelet's path: containerd's CRI plugin (Debian containerd 1.6, runc v2
//! shim, a CNI bridge) driven through the CRI API exactly as the kubelet does, with
//! the runtime handler `openshell` (the shim's `BinaryName` = openshell-runtime)
//! and, on the same steps, with runc: RunPodSandbox, CreateContainer and
//! StartContainer of an image built by `openshell build` and imported into
//! containerd (same digest), ExecSync, ContainerStatus, the container's log,
//! two containers of one pod sharing its network namespace, StopPodSandbox and
//! RemovePodSandbox. What runc does is the reference: both must observe the same.
//!
//! Needs root, containerd (Debian `containerd`), the CNI plugins (Debian
//! `containernetworking-plugins`), gcc with static libc, runc, and
//! `openshell-runtime` built beside `openshell`. containerd runs in a network
//! namespace of its own, so the pods' bridge never touches the host's.

use std::path::Path;

use support::cri::{CGROUP_PARENT, ContainerState, Cri, IMAGE, ISOLATION_IMAGE, K8S, Node, Pod, Spec};
use support::escapes::ESCAPES;
use support::runtime_image::text;

mod support;

fn spec<'a>(name: &'a str, command: &'a [&'a str]) -> Spec<'a> {
    Spec { name, image: IMAGE, command, annotations: &[], log: "", mounts: &[] }
}

/// What one pod's lifecycle showed, under one runtime handler.
#[derive(Debug, PartialEq)]
struct Observed {
    exec: (i32, String),
    lo: String,
    /// The second container reaches the first one's listener on 127.0.0.1.
    connect: (i32, String),
    same_netns: bool,
    pidns_differ: bool,
    job_exit: i32,
    job_log: Vec<String>,
    image_ref: String,
    sigpipe_ignored: bool,
}

/// The flags of `/proc/self/status`'s SigIgn hex mask for SIGPIPE (bit 13).
fn sigpipe_ignored(line: &str) -> bool {
    let hex = line.trim().strip_prefix("SigIgn: ").unwrap_or_else(|| panic!("not a SigIgn line: {line:?}"));
    u64::from_str_radix(hex, 16).expect("hex") & (1 << 12) != 0
}

/// A CRI log line's stream, tag and message ("TIME STREAM TAG MESSAGE").
fn log_messages(path: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    log.lines().map(|l| l.splitn(4, ' ').skip(1).collect::<Vec<_>>().join(" ")).collect()
}

fn pod_lifecycle(node: &mut Node, handler: &str) -> Observed {
    let logs = node.logs(handler);
    let cri = &mut node.cri;
    let pod: Pod = cri
        .run_pod(&format!("lifecycle-{handler}"), handler, &[], &logs, CGROUP_PARENT)
        .unwrap_or_else(|e| panic!("RunPodSandbox ({handler}): {e}\n{}", node.containerd.log()));
    let server = cri.run(&pod, &spec("server", &["/probe", "listen:8080"]));
    let main = cri.run(&pod, &spec("main", &["/probe", "serve"]));
    let (code, out, err) = cri.exec_sync(&main, &["/probe", "hello", "exit:5"]);
    assert_eq!(err, "", "ExecSync's stderr");
    let exec = (code, out);
    let lo = cri.exec_sync(&main, &["/probe", "loup"]).1;
    let (code, out, _) = cri.exec_sync(&main, &["/probe", "connect:8080"]);
    let connect = (code, out);
    let ns = |cri: &mut Cri, id: &str, name: &str| cri.exec_sync(id, &["/probe", &format!("ns:{name}")]).1;
    let same_netns = ns(cri, &main, "net") == ns(cri, &server, "net");
    let pidns_differ = ns(cri, &main, "pid") != ns(cri, &server, "pid");
    let status = cri.status(&main);
    assert_eq!(status.state, ContainerState::ContainerRunning as i32, "{status:?}");
    let image_ref = status.image_ref;
    let sigpipe = cri.exec_sync(&main, &["/probe", "status:SigIgn"]).1;
    // A container that runs to its end: exit code and log as the kubelet reads them.
    let job = cri.run(&pod, &Spec { log: "job.log", ..spec("job", &["/probe", "hello", "exit:3"]) });
    let status = cri.wait_exited(&job);
    let job_log = log_messages(&logs.join("job.log"));
    cri.stop_pod(&pod);
    assert_eq!(cri.status(&main).state, ContainerState::ContainerExited as i32, "StopPodSandbox stops its containers");
    cri.remove_pod(&pod);
    let (pods, containers) = cri.listed();
    assert!(pods.is_empty() && containers.is_empty(), "left after RemovePodSandbox: {pods:?} {containers:?}");
    Observed {
        exec,
        lo,
        connect,
        same_netns,
        pidns_differ,
        job_exit: status.exit_code,
        job_log,
        image_ref,
        sigpipe_ignored: sigpipe_ignored(&sigpipe),
    }
}

#[test]
fn the_kubelets_path_runs_pods_through_openshell_runtime_as_through_runc() {
    let mut node = Node::start();
    let version = node.cri.version();
    assert_eq!(version.runtime_name, "containerd", "{version:?}");
    // The image containerd holds is the one `openshell build` made: same manifest digest.
    let image = node.cri.image(IMAGE).expect("the imported image is listed by ImageStatus");
    // ImageStatus names it by its config's digest; containerd holds that name and
    // the tag with the built manifest's digest (an import has no repo digest).
    let listed = node.containerd.ctr(K8S, &["images", "ls"]);
    for name in [IMAGE, image.id.as_str()] {
        let line = text(&listed).lines().find(|l| l.starts_with(&format!("{name} "))).map(str::to_owned);
        assert!(
            line.as_deref().is_some_and(|l| l.contains(&format!(" {} ", node.image.manifest))),
            "{name} is not the built manifest {}: {}",
            node.image.manifest,
            text(&listed)
        );
    }
    let runc = pod_lifecycle(&mut node, "runc");
    let ours = pod_lifecycle(&mut node, "openshell");
    assert_eq!(ours, runc, "openshell-runtime and runc observed differently");
    // What both observed is what Kubernetes requires.
    assert_eq!(ours.exec, (5, "hello from openshell\n".into()));
    assert_eq!(ours.lo, "lo: up\n");
    assert_eq!(ours.connect, (0, "connect: pong\n".into()), "the pod's containers share localhost");
    assert!(ours.same_netns && ours.pidns_differ, "{ours:?}");
    assert_eq!(ours.job_exit, 3);
    assert_eq!(ours.job_log, ["stdout F hello from openshell"]);
    assert_eq!(ours.image_ref, image.id, "the containers run the imported image");
    assert!(!ours.sigpipe_ignored, "{ours:?}");
}

/// A policy that lets the probe read only itself and the cgroup files, with a pids limit.
const NARROW: &str = "version: 1\nlandlock: {compatibility: hard_requirement}\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/probe, /sys/fs/cgroup]\nresources: {pids: 64}\n";

fn sha256(text: &str) -> String {
    openshell_store::Digest::sha256(text.as_bytes()).to_string()
}

/// `/probe status:KEY` in a running container: the value.
fn status_line(cri: &mut Cri, id: &str, key: &str) -> String {
    let (_, out, _) = cri.exec_sync(id, &["/probe", &format!("status:{key}")]);
    out.trim().strip_prefix(&format!("{key}: ")).unwrap_or_else(|| panic!("{key}: {out:?}")).to_owned()
}

/// What a pod's containers showed under one handler.
#[derive(Debug)]
struct Confinement {
    /// The annotated policy: reading /data/secret and the pids limit.
    annotated: String,
    /// The same through ExecSync in a running container.
    annotated_exec: String,
    /// The policy from a mounted ConfigMap-like volume.
    mounted: String,
    /// No policy: bounding capabilities, no_new_privs, seccomp mode, ptrace.
    baseline: (String, String, String, String),
}

fn confinement(node: &mut Node, handler: &str) -> Confinement {
    let logs = node.logs(handler);
    let volume = node.dir.path().join(format!("volume-{handler}"));
    std::fs::create_dir_all(volume.join("..2026_12_04")).expect("mkdir");
    std::fs::write(volume.join("..2026_12_04/policy.yaml"), NARROW).expect("write");
    std::os::unix::fs::symlink("..2026_12_04", volume.join("..data")).expect("link");
    std::os::unix::fs::symlink("..data/policy.yaml", volume.join("policy.yaml")).expect("link");
    let digest = sha256(NARROW);
    let cri = &mut node.cri;
    let probe = ["/probe", "read:/data/secret", "read:/sys/fs/cgroup/pids/pids.max"];
    let pod_err = |e| panic!("RunPodSandbox ({handler}): {e}");

    let inline = [("run.openshell.policy.yaml", NARROW), ("run.openshell.policy.digest", digest.as_str())];
    let pod = cri.run_pod(&format!("inline-{handler}"), handler, &inline, &logs, CGROUP_PARENT).unwrap_or_else(pod_err);
    let job = cri.run(&pod, &Spec { log: "inline.log", ..spec("job", &probe) });
    cri.wait_exited(&job);
    let annotated = log_messages(&logs.join("inline.log")).join("\n");
    let main = cri.run(&pod, &spec("main", &["/probe", "serve"]));
    let annotated_exec = cri.exec_sync(&main, &probe).1;
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);

    let file = [("run.openshell.policy.file", "/etc/openshell/policy.yaml"), ("run.openshell.policy.digest", &digest)];
    let pod = cri.run_pod(&format!("mounted-{handler}"), handler, &file, &logs, CGROUP_PARENT).unwrap_or_else(pod_err);
    let mounts = [("/etc/openshell", volume.as_path())];
    let job = cri.run(&pod, &Spec { log: "mounted.log", mounts: &mounts, ..spec("job", &probe) });
    cri.wait_exited(&job);
    let mounted = log_messages(&logs.join("mounted.log")).join("\n");
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);

    let pod = cri.run_pod(&format!("bare-{handler}"), handler, &[], &logs, CGROUP_PARENT).unwrap_or_else(pod_err);
    let main = cri.run(&pod, &spec("main", &["/probe", "serve"]));
    let baseline = (
        status_line(cri, &main, "CapBnd"),
        status_line(cri, &main, "NoNewPrivs"),
        status_line(cri, &main, "Seccomp"),
        cri.exec_sync(&main, &["/probe", "ptrace"]).1,
    );
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);
    Confinement { annotated, annotated_exec, mounted, baseline }
}

#[test]
fn a_pods_policy_is_locked_at_creation_and_no_pod_runs_unconfined() {
    let mut node = Node::start();
    // runc ignores openshell's annotations: the positive control of every check.
    let runc = confinement(&mut node, "runc");
    assert_eq!(runc.annotated, "stdout F read /data/secret: s3cret\nstdout F read /sys/fs/cgroup/pids/pids.max: max");
    assert_eq!(runc.mounted, runc.annotated);
    assert_eq!(runc.annotated_exec, "read /data/secret: s3cret\nread /sys/fs/cgroup/pids/pids.max: max\n");
    assert_ne!(runc.baseline.0, "0000000000000000", "{runc:?}");
    assert_eq!((runc.baseline.1.as_str(), runc.baseline.2.as_str()), ("0", "0"), "{runc:?}");
    assert_eq!(runc.baseline.3, "ptrace: allowed\n");

    let ours = confinement(&mut node, "openshell");
    let denied = "stdout F read /data/secret: Permission denied\nstdout F read /sys/fs/cgroup/pids/pids.max: 64";
    assert_eq!(ours.annotated, denied, "the annotated policy (Landlock, pids limit) applies: {ours:?}");
    assert_eq!(ours.mounted, denied, "the mounted policy applies: {ours:?}");
    assert_eq!(ours.annotated_exec, "read /data/secret: Permission denied\nread /sys/fs/cgroup/pids/pids.max: 64\n");
    // The baseline: no capabilities, no_new_privs, the seccomp filter (ptrace fails).
    assert_eq!(ours.baseline.0, "0000000000000000", "{ours:?}");
    assert_eq!((ours.baseline.1.as_str(), ours.baseline.2.as_str()), ("1", "2"), "{ours:?}");
    assert!(ours.baseline.3.starts_with("ptrace: ") && ours.baseline.3 != "ptrace: allowed\n", "{ours:?}");

    // A digest that is not the policy's: the container is refused at start, and
    // the error the kubelet turns into the pod's event says why.
    let logs = node.logs("mismatch");
    let wrong = sha256("version: 1\n");
    let annotations = [("run.openshell.policy.yaml", NARROW), ("run.openshell.policy.digest", wrong.as_str())];
    let cri = &mut node.cri;
    let pod =
        cri.run_pod("mismatch", "openshell", &annotations, &logs, CGROUP_PARENT).expect("the sandbox runs (baseline)");
    let id = cri.create(&pod, &spec("job", &["/probe", "hello"])).expect("CreateContainer");
    let err = cri.start(&id).expect_err("StartContainer must fail").message().to_owned();
    assert!(err.contains(&wrong) && err.contains(&sha256(NARROW)) && err.contains("refusing"), "{err}");
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);
}

fn default_policy() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml"))
        .expect("policies/default.yaml")
}

/// A pod under `policy` (by annotation) with one running isolation container.
fn isolation_pod(node: &mut Node, name: &str, handler: &str, policy: &str) -> (Pod, String) {
    let logs = node.logs(name);
    let digest = sha256(policy);
    let annotations = [("run.openshell.policy.yaml", policy), ("run.openshell.policy.digest", digest.as_str())];
    let cri = &mut node.cri;
    let pod = cri.run_pod(name, handler, &annotations, &logs, CGROUP_PARENT).expect("RunPodSandbox");
    let main = cri.run(&pod, &Spec { image: ISOLATION_IMAGE, ..spec("main", &["/usr/bin/runtime-probe", "serve"]) });
    (pod, main)
}

fn probe(cri: &mut Cri, id: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["/usr/bin/probe"];
    all.extend_from_slice(args);
    let (code, out, err) = cri.exec_sync(id, &all);
    (code, format!("{out}{err}"))
}

#[test]
fn the_isolation_suite_holds_inside_a_pod() {
    let mut node = Node::start();
    let default = default_policy();
    let (pod, main) = isolation_pod(&mut node, "isolation", "openshell", &default);
    let mut failures = Vec::new();
    for args in ESCAPES {
        let (code, out) = probe(&mut node.cri, &main, args);
        if !(code == 1 && out.starts_with(&format!("{}: denied ", args[0]))) {
            failures.push(format!("{args:?}: exit {code}: {out}"));
        }
    }
    // What the default policy allows works there (the probe is not broken).
    for args in [&["netlink", "ROUTE"][..], &["socket", "tcp"], &["thread"], &["read", "/usr/bin/probe"]] {
        let (code, out) = probe(&mut node.cri, &main, args);
        if !(code == 0 && out.starts_with(&format!("{}: ok", args[0]))) {
            failures.push(format!("allowed {args:?}: exit {code}: {out}"));
        }
    }
    assert!(failures.is_empty(), "inside the pod under the default policy:\n{}", failures.join("\n"));
    // As the container's process 1 too.
    let logs = node.logs("isolation");
    let cri = &mut node.cri;
    let job =
        cri.run(&pod, &Spec { image: ISOLATION_IMAGE, log: "job.log", ..spec("job", &["/usr/bin/probe", "ptrace"]) });
    assert_eq!(cri.wait_exited(&job).exit_code, 1);
    let log = log_messages(&logs.join("job.log"));
    assert!(log.len() == 1 && log[0].starts_with("stdout F ptrace: denied "), "{log:?}");
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);

    // Positive controls: a policy listing /root lets the same read through, and
    // runc (no policy applied) lets ptrace and the user namespace through.
    let root_listed = default.replace("  read_only:\n", "  read_only:\n    - /root\n");
    let (pod, main) = isolation_pod(&mut node, "root-listed", "openshell", &root_listed);
    let (code, out) = probe(&mut node.cri, &main, &["read", "/root/secret"]);
    assert!(code == 0 && out.starts_with("read: ok"), "{out}");
    node.cri.stop_pod(&pod);
    node.cri.remove_pod(&pod);
    let (pod, main) = isolation_pod(&mut node, "under-runc", "runc", &default);
    for args in [&["ptrace"][..], &["read", "/root/secret"]] {
        let (code, out) = probe(&mut node.cri, &main, args);
        assert!(code == 0 && out.starts_with(&format!("{}: ok", args[0])), "runc {args:?}: {out}");
    }
    node.cri.stop_pod(&pod);
    node.cri.remove_pod(&pod);
}

/// The runtime's state directory of a pod's sandbox container (the runc v2 shim's
/// default root for the `k8s.io` namespace).
fn sandbox_state(pod: &Pod) -> std::path::PathBuf {
    Path::new("/run/containerd/runc").join(K8S).join(&pod.id)
}

#[test]
fn a_pods_egress_leaves_only_through_its_proxy() {
    let mut node = Node::start();
    let logs = node.logs("egress");
    let cri = &mut node.cri;
    // The upstream: a pod under runc listening on its address.
    let server = cri.run_pod("upstream", "runc", &[], &logs, CGROUP_PARENT).expect("RunPodSandbox upstream");
    cri.run(&server, &spec("listen", &["/probe", "listen-any:8080"]));
    cri.run(&server, &spec("listen-raw", &["/probe", "listen-any:8081"]));
    let ip = cri.pod_ip(&server);
    let policy = format!(
        "version: 1\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/probe, /usr]\nnetwork_policies:\n  upstream:\n    name: upstream\n    endpoints:\n      - {{ host: \"{ip}\", port: 8080, allowed_ips: [\"{ip}/32\"] }}\n      - {{ host: \"{ip}\", port: 8081, protocol: tcp, allowed_ips: [\"{ip}/32\"] }}\n    binaries:\n      - path: /probe\n"
    );
    let digest = sha256(&policy);
    let annotations =
        [("run.openshell.policy.yaml", policy.as_str()), ("run.openshell.policy.digest", digest.as_str())];
    let pod = cri.run_pod("egress", "openshell", &annotations, &logs, CGROUP_PARENT).expect("RunPodSandbox egress");
    let main = cri.run(&pod, &Spec { image: ISOLATION_IMAGE, ..spec("main", &["/probe", "serve"]) });
    let run = |cri: &mut Cri, id: &str, args: &[&str]| cri.exec_sync(id, args).1;
    let allowed = format!("tunnel:{ip}:8080");
    // Allowed by the policy, for the binary it names: through the proxy.
    assert_eq!(run(cri, &main, &["/probe", &allowed]), "tunnel: 200 pong\n");
    // Another port, another binary (the same program elsewhere): refused by the proxy.
    assert_eq!(run(cri, &main, &["/probe", &format!("tunnel:{ip}:9")]), "tunnel: 403\n");
    assert_eq!(run(cri, &main, &["/usr/bin/runtime-probe", &allowed]), "tunnel: 403\n");
    // Raw TCP (issue 16): the fence sends it to the proxy, which relays what a
    // `protocol: tcp` endpoint allows for its binary and resets the rest, the
    // endpoint meant for the proxy included.
    let raw = format!("dial:{ip}:8081");
    assert_eq!(run(cri, &main, &["/probe", &raw]), "dial: pong\n");
    assert_eq!(run(cri, &main, &["/usr/bin/runtime-probe", &raw]), "dial: Connection reset by peer\n");
    assert_eq!(run(cri, &main, &["/probe", &format!("dial:{ip}:8080")]), "dial: Connection reset by peer\n");
    // Each decision is in the pod's egress audit log, in its log directory.
    let audit = std::fs::read_to_string(logs.join("openshell-egress.log")).expect("the pod's egress audit log");
    let lines: Vec<serde_json::Value> =
        audit.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let seen: Vec<(&str, &str, u64, &str)> = lines
        .iter()
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or("");
            (text("disposition"), text("actor_process"), l["dst_port"].as_u64().unwrap_or(0), text("reason"))
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("allowed", "/probe", 8080, ""),
            ("blocked", "/probe", 9, "port not allowed"),
            ("blocked", "/usr/bin/runtime-probe", 8080, "binary not allowed"),
            ("allowed", "/probe", 8081, ""),
            ("blocked", "/usr/bin/runtime-probe", 8081, "binary not allowed"),
            ("blocked", "/probe", 8080, "port not allowed"),
        ],
        "{audit}"
    );
    let raw_tcp: Vec<bool> = lines.iter().map(|l| l["raw_tcp"] == true).collect();
    assert_eq!(raw_tcp, [false, false, false, true, true, true], "{audit}");

    // A pod without a policy: nothing allowed, through the proxy or around it.
    let bare = cri.run_pod("bare", "openshell", &[], &logs, CGROUP_PARENT).expect("RunPodSandbox bare");
    let alone = cri.run(&bare, &spec("main", &["/probe", "serve"]));
    assert_eq!(run(cri, &alone, &["/probe", &allowed]), "tunnel: 403\n");
    assert_eq!(run(cri, &alone, &["/probe", &format!("dial:{ip}:8080")]), "dial: Connection reset by peer\n");
    // The proxy killed: egress fails closed.
    let state = sandbox_state(&bare);
    let pid = std::fs::read_to_string(state.join("openshell-pod-proxy.pid")).expect("the proxy's pid");
    let killed = std::process::Command::new("kill").args(["-9", pid.trim()]).status().expect("kill");
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        run(cri, &alone, &["/probe", &allowed]).starts_with("tunnel: proxy http://127.0.0.1:15128: Connection refused")
    );
    assert_eq!(run(cri, &alone, &["/probe", &format!("dial:{ip}:8080")]), "dial: Connection refused\n");
    // And no new container of that pod starts without it.
    let id = cri.create(&bare, &spec("late", &["/probe", "hello"])).expect("CreateContainer");
    let err = cri.start(&id).expect_err("a container of a pod whose proxy is gone must not start").message().to_owned();
    assert!(err.contains("egress proxy") && err.contains("gone"), "{err}");

    // Positive control: a pod under runc reaches the upstream directly.
    let open = cri.run_pod("open", "runc", &[], &logs, CGROUP_PARENT).expect("RunPodSandbox open");
    let client = cri.run(&open, &spec("main", &["/probe", "serve"]));
    assert_eq!(run(cri, &client, &["/probe", &format!("dial:{ip}:8080")]), "dial: pong\n");

    // Removing the pod stops its proxy.
    let proxy_dir = sandbox_state(&pod);
    let pid = std::fs::read_to_string(proxy_dir.join("openshell-pod-proxy.pid")).expect("the proxy's pid");
    for p in [&pod, &bare, &open, &server] {
        cri.stop_pod(p);
        cri.remove_pod(p);
    }
    // Gone, or a zombie its new parent (the shim) has yet to reap.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    assert!(matches!(state, None | Some(Some('Z'))), "the pod's proxy outlived the pod: {stat}");
}

/// A listener on `addr`, bound inside the network namespace of process `pid`.
fn listen_in_netns(pid: u32, addr: &str) -> std::net::TcpListener {
    let addr = addr.to_owned();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("the network namespace");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        std::net::TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
    })
    .join()
    .expect("the binding thread")
}

/// HTTPS from a pod is inspected as on the host: for an endpoint with L7 rules
/// the pod's proxy terminates TLS with the pod's CA (which the container trusts
/// through the bundle mounted for it) and decides each request by method and
/// path; an endpoint without rules is tunnelled, the client sees the upstream's
/// own certificate (which it does not trust: the bundle holds the pod's CA).
#[test]
fn a_pods_https_is_inspected_by_its_proxy_with_l7_rules() {
    use support::https::{Route, TestCa};
    let keep = tempfile::tempdir().expect("tempdir");
    let upstream_ca = TestCa::new("openshell test upstream CA");
    let ca_path = keep.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &upstream_ca.pem).expect("write");
    let ca = ca_path.display().to_string();
    // The pods' bridge address, in containerd's namespace, stands for the API.
    let gateway_ip = "10.203.7.1";
    let hosts = format!("api.example.test={gateway_ip},tunnel.example.test={gateway_ip}");
    let mut node = Node::start_with(&[("OPENSHELL_PROXY_HOSTS", &hosts), ("OPENSHELL_UPSTREAM_CA", &ca)]);
    let image = support::runtime_image::build_tls_image(node.dir.path(), "cri-tls");
    let o = node.containerd.ctr(K8S, &["images", "import", &image.archive.display().to_string()]);
    assert!(o.status.success(), "ctr images import: {}", text(&o));
    let logs = node.logs("tls");
    let policy = format!(
        "version: 1\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/probe, /tls-probe]\nnetwork_policies:\n  api:\n    name: api\n    endpoints:\n      - host: api.example.test\n        port: 8443\n        protocol: rest\n        allowed_ips: [\"{gateway_ip}/32\"]\n        rules:\n          - allow: {{ method: GET, path: \"/public/**\" }}\n      - {{ host: tunnel.example.test, port: 8444, allowed_ips: [\"{gateway_ip}/32\"] }}\n    binaries:\n      - path: /tls-probe\n"
    );
    let digest = sha256(&policy);
    let annotations =
        [("run.openshell.policy.yaml", policy.as_str()), ("run.openshell.policy.digest", digest.as_str())];
    let cri = &mut node.cri;
    let pod = cri.run_pod("tls", "openshell", &annotations, &logs, CGROUP_PARENT).expect("RunPodSandbox tls");
    let main = cri.run(&pod, &Spec { image: "docker.io/openshell/cri-tls:1", ..spec("main", &["/probe", "serve"]) });
    // The upstream: HTTPS with the test's CA, on the bridge's address.
    let files = support::server::Server::start();
    files.add("public/hello", "hello over https\n", "text/plain");
    files.add("private/secret", "secret\n", "text/plain");
    let plain = files.base.trim_start_matches("http://").trim_end_matches('/').parse().expect("address");
    let names = ["api.example.test", "tunnel.example.test"];
    let routes = std::collections::HashMap::from(names.map(|n| (n.to_owned(), Route::Plain(plain))));
    for port in [8443, 8444] {
        let listener = listen_in_netns(node.containerd.pid(), &format!("{gateway_ip}:{port}"));
        support::https::serve(listener, upstream_ca.server_for(&names), routes.clone());
    }
    let https = |cri: &mut Cri, target: &str, path: &str| cri.exec_sync(&main, &["/tls-probe", target, path]).1;
    // L7: allowed by method and path, under the pod's CA.
    let allowed = https(cri, "api.example.test:8443", "/public/hello");
    assert!(allowed.starts_with("https: 200 hello over https [openshell sandbox "), "{allowed}");
    assert!(allowed.trim_end().ends_with(" CA]"), "{allowed}");
    let denied = https(cri, "api.example.test:8443", "/private/secret");
    assert!(denied.starts_with("https: 403 "), "{denied}");
    // L4: tunnelled, so the client sees the upstream's certificate and, trusting
    // only the image's roots and the pod's CA, refuses it.
    let tunnelled = https(cri, "tunnel.example.test:8444", "/public/hello");
    assert_eq!(tunnelled, "https: certificate: unable to get local issuer certificate\n");
    // DNS (issue 16): any server's port 53 (here an address on the pod's subnet,
    // which the test's bridge routes; a cluster's DNS Service goes by the default
    // route) is the pod's responder, which answers the names its policy allows with
    // what its proxy dials, and NXDOMAIN the rest.
    let dns = |cri: &mut Cri, query: &str| cri.exec_sync(&main, &["/probe", &format!("dns:{query}")]).1;
    assert_eq!(dns(cri, "10.203.7.53:api.example.test"), format!("dns: {gateway_ip}\n"));
    assert_eq!(dns(cri, "127.0.0.1:tunnel.example.test"), format!("dns: {gateway_ip}\n"));
    assert_eq!(dns(cri, "10.203.7.53:elsewhere.example.test"), "dns: NXDOMAIN\n");
    // The bundle the container trusts, mounted read-only.
    let (_, bundle, _) = cri.exec_sync(&main, &["/probe", "read:/run/openshell/ca-bundle.pem"]);
    assert!(bundle.contains("openshell sandbox CA"), "{bundle}");
    let audit = std::fs::read_to_string(logs.join("openshell-egress.log")).expect("the pod's egress audit log");
    let lines: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let decided = |disposition: &str, path: &str| {
        lines.iter().any(|l| l["disposition"] == disposition && l["http_path"] == path && l["http_method"] == "GET")
    };
    assert!(decided("allowed", "/public/hello") && decided("blocked", "/private/secret"), "{audit}");
    assert!(
        lines.iter().any(|l| l["class_uid"] == 4003 && l["dst_hostname"] == "elsewhere.example.test"),
        "a refused name is audited: {audit}"
    );
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);
}

/// What a signed update sent to `main`'s pod from inside it (where
/// pods/portforward arrives too) was answered.
fn send_update(cri: &mut Cri, main: &str, update: &openshell_policy_update::Update) -> openshell_policy_update::Answer {
    let line = serde_json::to_string(update).expect("update");
    let port = openshell_policy_update::CONTROL_PORT;
    let (_, out, _) = cri.exec_sync(main, &["/probe", &format!("send:{port}:{line}")]);
    let answer = out.trim().strip_prefix("send: ").unwrap_or_else(|| panic!("no answer: {out}"));
    serde_json::from_str(answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn refused(answer: &openshell_policy_update::Answer) -> &str {
    match answer {
        openshell_policy_update::Answer::Refused { reason } => reason,
        applied => panic!("applied, not refused: {applied:?}"),
    }
}

/// A running pod's network policies change only by an update signed with the key
/// its annotation names, for this pod, newer than the last: anything in the pod can
/// reach the control port and tries forged, other pods', tampered and replayed ones.
#[test]
fn a_running_pods_network_policy_changes_only_by_a_signed_update() {
    use openshell_policy_update::{Answer, Kind, PodIdentity, SIGNER_ANNOTATION, Signer};
    let mut node = Node::start();
    let logs = node.logs("update");
    let keys = tempfile::tempdir().expect("tempdir");
    let gateway = Signer::load_or_create(&keys.path().join("gateway.pk8")).expect("the gateway's key");
    let attacker = Signer::load_or_create(&keys.path().join("attacker.pk8")).expect("another key");
    let cri = &mut node.cri;
    let server = cri.run_pod("upstream", "runc", &[], &logs, CGROUP_PARENT).expect("RunPodSandbox upstream");
    for port in ["8080", "8081"] {
        let listen = format!("listen-any:{port}");
        cri.run(&server, &spec(&format!("listen-{port}"), &["/probe", &listen]));
    }
    let ip = cri.pod_ip(&server);
    let policy = |ports: &[u16]| {
        let endpoints: String = ports
            .iter()
            .map(|p| format!("      - {{ host: \"{ip}\", port: {p}, allowed_ips: [\"{ip}/32\"] }}\n"))
            .collect();
        let network = if ports.is_empty() {
            String::new()
        } else {
            format!(
                "network_policies:\n  upstream:\n    name: upstream\n    endpoints:\n{endpoints}    binaries:\n      - path: /probe\n"
            )
        };
        format!("version: 1\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/probe, /usr]\n{network}")
    };
    let first = policy(&[8080]);
    let digest = sha256(&first);
    let signer = gateway.annotation();
    let annotations = [
        ("run.openshell.policy.yaml", first.as_str()),
        ("run.openshell.policy.digest", digest.as_str()),
        (SIGNER_ANNOTATION, signer.as_str()),
    ];
    let pod = cri.run_pod("update", "openshell", &annotations, &logs, CGROUP_PARENT).expect("RunPodSandbox update");
    let main = cri.run(&pod, &Spec { image: ISOLATION_IMAGE, ..spec("main", &["/probe", "serve"]) });
    let this = PodIdentity { namespace: "default".into(), name: "update".into(), uid: "update-uid".into() };
    let tunnel = |cri: &mut Cri, port: u16| cri.exec_sync(&main, &["/probe", &format!("tunnel:{ip}:{port}")]).1;
    assert_eq!(tunnel(cri, 8080), "tunnel: 200 pong\n");
    assert_eq!(tunnel(cri, 8081), "tunnel: 403\n");

    // From inside the pod: another key, another pod, the policy or revision changed
    // after signing. Each is refused and nothing changes.
    let wider = policy(&[8080, 8081]);
    let forged = send_update(cri, &main, &attacker.sign(&this, Kind::Policy, 1, &wider));
    assert!(refused(&forged).contains("signature"), "{forged:?}");
    let elsewhere = PodIdentity { name: "other".into(), ..this.clone() };
    let other = send_update(cri, &main, &gateway.sign(&elsewhere, Kind::Policy, 1, &wider));
    assert!(refused(&other).contains("for pod default/other"), "{other:?}");
    let mut tampered = gateway.sign(&this, Kind::Policy, 1, &first);
    tampered.body = wider.clone();
    assert!(refused(&send_update(cri, &main, &tampered)).contains("signature"));
    assert_eq!(tunnel(cri, 8081), "tunnel: 403\n");

    // Positive control: the gateway's update for this pod is applied at once.
    let good = gateway.sign(&this, Kind::Policy, 1, &wider);
    let answer = send_update(cri, &main, &good);
    assert_eq!(answer, Answer::Applied { revision: 1, digest: sha256(&wider) });
    assert_eq!(tunnel(cri, 8081), "tunnel: 200 pong\n");
    // Sent again: taken, and nothing changes.
    assert_eq!(send_update(cri, &main, &good), Answer::Applied { revision: 1, digest: sha256(&wider) });
    // Narrowed by revision 2 (nothing allowed), then revision 1 replayed to widen again.
    let none = policy(&[]);
    assert_eq!(
        send_update(cri, &main, &gateway.sign(&this, Kind::Policy, 2, &none)),
        Answer::Applied { revision: 2, digest: sha256(&none) }
    );
    assert_eq!(tunnel(cri, 8080), "tunnel: 403\n");
    assert!(refused(&send_update(cri, &main, &good)).contains("not above the last applied, 2"));
    assert_eq!(tunnel(cri, 8080), "tunnel: 403\n");
    // A container made now would bring the first policy back: refused.
    let id = cri.create(&pod, &spec("late", &["/probe", "hello"])).expect("CreateContainer");
    let err = cri.start(&id).expect_err("a container after a live change must not start").message().to_owned();
    assert!(err.contains("changed by the gateway (revision 2)"), "{err}");
    let audit = std::fs::read_to_string(sandbox_state(&pod).join("openshell-pod-proxy.log")).expect("the proxy's log");
    assert_eq!(audit.matches("refused an update").count(), 4, "{audit}");

    // A pod made without a signer has no control port.
    let bare = cri.run_pod("bare", "openshell", &annotations[..2], &logs, CGROUP_PARENT).expect("RunPodSandbox bare");
    let alone = cri.run(&bare, &Spec { image: ISOLATION_IMAGE, ..spec("main", &["/probe", "serve"]) });
    let send = format!("send:{}:{{}}", openshell_policy_update::CONTROL_PORT);
    let (_, out, _) = cri.exec_sync(&alone, &["/probe", &send]);
    assert_eq!(out, "send: Connection refused\n");
    // A malformed signer key refuses the pod, naming the annotation.
    let bad = [annotations[0], annotations[1], (SIGNER_ANNOTATION, "ed25519:short")];
    let err =
        cri.run_pod("bad", "openshell", &bad, &logs, CGROUP_PARENT).expect_err("a bad signer key").message().to_owned();
    assert!(err.contains(SIGNER_ANNOTATION) && err.contains("ed25519:short"), "{err}");
    for p in [&pod, &bare, &server] {
        cri.stop_pod(p);
        cri.remove_pod(p);
    }
}

/// A backend on `listener` that answers every request with the Authorization
/// header it was sent.
fn echo_authorization(listener: std::net::TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{BufRead, Write};
            let mut reader = std::io::BufReader::new(&stream);
            let mut authorization = String::from("(none)");
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    authorization = v.trim().to_owned();
                }
                line.clear();
            }
            let body = format!("{authorization}\n");
            let _ =
                write!(&stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
}

/// A pod's inference route (with its credential) comes only by an update signed
/// for it, as policy changes do: before, `inference.local` has no backend; a route
/// signed with another key is refused; the gateway's is applied, and the backend
/// gets the route's credential, never the caller's.
#[test]
fn a_pods_inference_route_comes_only_by_a_signed_update() {
    use openshell_policy_update::{Answer, Kind, PodIdentity, SIGNER_ANNOTATION, Signer};
    let keys = tempfile::tempdir().expect("tempdir");
    let gateway = Signer::load_or_create(&keys.path().join("gateway.pk8")).expect("the gateway's key");
    let attacker = Signer::load_or_create(&keys.path().join("attacker.pk8")).expect("another key");
    let mut node = Node::start();
    let image = support::runtime_image::build_tls_image(node.dir.path(), "cri-tls");
    let o = node.containerd.ctr(K8S, &["images", "import", &image.archive.display().to_string()]);
    assert!(o.status.success(), "ctr images import: {}", text(&o));
    let logs = node.logs("route");
    let policy = "version: 1\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/probe, /tls-probe]\n";
    let digest = sha256(policy);
    let signer = gateway.annotation();
    let annotations = [
        ("run.openshell.policy.yaml", policy),
        ("run.openshell.policy.digest", digest.as_str()),
        (SIGNER_ANNOTATION, signer.as_str()),
    ];
    let cri = &mut node.cri;
    let pod = cri.run_pod("route", "openshell", &annotations, &logs, CGROUP_PARENT).expect("RunPodSandbox route");
    let main = cri.run(&pod, &Spec { image: "docker.io/openshell/cri-tls:1", ..spec("main", &["/probe", "serve"]) });
    // The backend, on the node (the bridge's address in containerd's namespace).
    echo_authorization(listen_in_netns(node.containerd.pid(), "10.203.7.1:8090"));
    let this = PodIdentity { namespace: "default".into(), name: "route".into(), uid: "route-uid".into() };
    let route = serde_json::json!({
        "provider": "test", "kind": "openai-compatible", "base_url": "http://10.203.7.1:8090/v1",
        "credential": "sk-the-backends-own", "model": null, "timeout_secs": 30
    })
    .to_string();
    let ask = |cri: &mut Cri| cri.exec_sync(&main, &["/tls-probe", "inference.local:443", "/v1/models"]).1;
    let before = ask(cri);
    assert!(!before.contains("sk-the-backends-own"), "{before}");
    let forged = send_update(cri, &main, &attacker.sign(&this, Kind::Route, 1, &route));
    assert!(refused(&forged).contains("signature"), "{forged:?}");
    assert!(!ask(cri).contains("sk-the-backends-own"));
    // Positive control: the gateway's route is applied and used.
    let answer = send_update(cri, &main, &gateway.sign(&this, Kind::Route, 1, &route));
    assert_eq!(answer, Answer::Applied { revision: 1, digest: sha256(&route) });
    let routed = ask(cri);
    assert!(routed.starts_with("https: 200 Bearer sk-the-backends-own [openshell sandbox "), "{routed}");
    // Taken away again (revision 2: no route).
    assert!(matches!(send_update(cri, &main, &gateway.sign(&this, Kind::Route, 2, "null")), Answer::Applied { .. }));
    assert!(!ask(cri).contains("sk-the-backends-own"));
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);
}

/// What the Kubernetes driver's pods ask for (`run.openshell.init`): openshell's
/// init as process 1, running the command (`supervise`) or nothing (`idle`, the
/// container's command never run).
#[test]
fn a_pod_can_have_openshells_init_as_process_1() {
    let mut node = Node::start();
    let logs = node.logs("init");
    let cri = &mut node.cri;
    let idle = [("run.openshell.init", "idle")];
    let pod = cri.run_pod("idle", "openshell", &idle, &logs, CGROUP_PARENT).expect("RunPodSandbox idle");
    let main = cri.run(&pod, &spec("main", &["openshell-idle"]));
    let status = cri.status(&main);
    assert_eq!(status.state, ContainerState::ContainerRunning as i32, "{status:?}");
    assert_eq!(
        cri.exec_sync(&main, &["/probe", "hello", "exit:6"]),
        (6, "hello from openshell\n".into(), String::new())
    );
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);

    let supervise = [("run.openshell.init", "supervise")];
    let pod = cri.run_pod("supervised", "openshell", &supervise, &logs, CGROUP_PARENT).expect("RunPodSandbox");
    let job = cri.run(&pod, &Spec { log: "supervised.log", ..spec("job", &["/probe", "status:PPid", "exit:4"]) });
    assert_eq!(cri.wait_exited(&job).exit_code, 4);
    // The command is not process 1: openshell's init is, and passes its code on.
    assert_eq!(log_messages(&logs.join("supervised.log")), ["stdout F PPid: 1"]);
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);

    // Anything else is refused with the annotation's name.
    let bad = [("run.openshell.init", "sometimes")];
    let pod = cri.run_pod("bad-init", "openshell", &bad, &logs, CGROUP_PARENT).expect("RunPodSandbox");
    let id = cri.create(&pod, &spec("job", &["/probe", "hello"])).expect("CreateContainer");
    let err = cri.start(&id).expect_err("StartContainer must fail").message().to_owned();
    assert!(err.contains("run.openshell.init") && err.contains("sometimes"), "{err}");
    cri.stop_pod(&pod);
    cri.remove_pod(&pod);
}
