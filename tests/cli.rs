//! End-to-end tests of the `openshell` binary: exit codes, text and JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn openshell(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openshell"))
        .args(args)
        .current_dir(root())
        .env_remove("OPENSHELL_LOG")
        .output()
        .expect("run openshell")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("openshell-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write temp file");
    p
}

const DEFAULT: &str = "policies/default.yaml";

#[test]
fn validate_shipped_policies() {
    let o = openshell(&[
        "policy",
        "validate",
        DEFAULT,
        "policies/examples/l4-only.yaml",
        "policies/examples/rest-read-only.yaml",
        "policies/examples/deny-rule.yaml",
        "policies/examples/websocket-mcp.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("policies/default.yaml: valid (3 network policies"));
}

#[test]
fn validate_reports_every_error_with_position() {
    let p = temp_file(
        "bad.yaml",
        "version: 2\nfoo: 1\nnetwork_policies:\n  a:\n    endpoints: [{host: \"*.com\", port: 0}]\n    binaries: [{path: /usr/bin/curl}]\n",
    );
    let o = openshell(&["policy", "validate", p.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let name = p.display().to_string();
    for want in [
        format!("{name}:1:10: version: unsupported policy version 2"),
        format!("{name}:2:1: foo: unknown field `foo`"),
        format!("{name}:5:24: network_policies.a.endpoints[0].host: invalid host `*.com`"),
        format!("{name}:5:39: network_policies.a.endpoints[0].port: 0 is out of range"),
        format!("{name}: invalid (4 errors)"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn validate_json_and_mixed_files() {
    let bad = temp_file("dup.yaml", "version: 1\nversion: 1\n");
    let o = openshell(&["--output", "json", "policy", "validate", DEFAULT, bad.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["files"][0]["valid"], true);
    assert_eq!(v["files"][1]["valid"], false);
    assert_eq!(v["files"][1]["errors"][0]["line"], 2);
    assert_eq!(v["files"][1]["errors"][0]["column"], 1);
    assert_eq!(v["files"][1]["errors"][0]["key"], "version");
}

#[test]
fn validate_missing_file_is_exit_2() {
    let o = openshell(&["policy", "validate", "does/not/exist.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does/not/exist.yaml: cannot read policy file"));
}

#[test]
fn check_allow_and_deny_text() {
    let o = openshell(&[
        "policy",
        "check",
        DEFAULT,
        "--host",
        "api.anthropic.com",
        "--port",
        "443",
        "--binary",
        "/usr/local/bin/claude",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("allow: allowed by policy 'claude_code'"), "{}", stdout(&o));

    let o = openshell(&[
        "policy",
        "check",
        DEFAULT,
        "--host",
        "api.openai.com",
        "--port",
        "443",
        "--binary",
        "/usr/bin/curl",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("deny: binary not allowed"), "{}", stdout(&o));

    let o = openshell(&[
        "policy",
        "check",
        DEFAULT,
        "--host",
        "evil.example.com",
        "--port",
        "443",
        "--binary",
        "/usr/local/bin/codex",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("deny: no matching policy"), "{}", stdout(&o));
}

#[test]
fn check_ancestor_binary_counts() {
    let o = openshell(&[
        "policy",
        "check",
        DEFAULT,
        "--host",
        "api.openai.com",
        "--port",
        "443",
        "--binary",
        "/usr/bin/git",
        "--ancestor",
        "/bin/bash",
        "--ancestor",
        "/usr/local/lib/node_modules/@openai/codex/bin/codex-x86_64-unknown-linux-musl",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// `policy check` decides a WebSocket's upgrade and text messages, and
/// JSON-RPC calls, as the proxy does.
#[test]
fn check_websocket_and_mcp_decisions() {
    let check = |host: &str, extra: &[&str]| {
        let mut args = vec!["--output", "json", "policy", "check", "policies/examples/websocket-mcp.yaml", "--host"];
        args.extend_from_slice(&[host, "--port", "443", "--binary", "/usr/bin/python3.13"]);
        args.extend_from_slice(extra);
        let o = openshell(&args);
        (o.status.code(), json(&o))
    };
    let ws =
        |path: &str, part: &str| check("chat.example.com", &["--method", "GET", "--path", path, "--websocket", part]);
    assert_eq!(ws("/ws/feed", "upgrade").0, Some(0));
    assert_eq!(ws("/ws/chat", "text").0, Some(0));
    let (code, v) = ws("/ws/feed", "text");
    assert_eq!((code, &v["reason"]), (Some(1), &serde_json::json!("method/path not permitted")), "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("WEBSOCKET_TEXT /ws/feed")), "{v}");
    // Without --websocket, a plain GET: not what a websocket endpoint takes.
    let (code, v) = check("chat.example.com", &["--method", "GET", "--path", "/ws/chat"]);
    assert_eq!(code, Some(1));
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("not a WebSocket upgrade")), "{v}");
    let call = |tool: &str| {
        let args = ["--method", "POST", "--path", "/mcp", "--rpc-method", "tools/call", "--tool", tool];
        check("tools.example.com", &args)
    };
    assert_eq!(call("read_file").0, Some(0));
    let (code, v) = call("read_secrets");
    assert_eq!((code, &v["reason"]), (Some(1), &serde_json::json!("blocked by deny rule")), "{v}");
    let (code, v) = call("write_file");
    assert_eq!((code, &v["reason"]), (Some(1), &serde_json::json!("call not permitted")), "{v}");
    // The POST itself: allowed, its calls to be decided one by one.
    let (code, v) = check("tools.example.com", &["--method", "POST", "--path", "/mcp"]);
    assert_eq!(code, Some(0));
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("read as JSON-RPC")), "{v}");
}

#[test]
fn check_json_l7_decisions() {
    let file = "policies/examples/deny-rule.yaml";
    let base = [
        "--output",
        "json",
        "policy",
        "check",
        file,
        "--host",
        "registry.example.com",
        "--port",
        "443",
        "--binary",
        "/usr/bin/npm",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let o = openshell(&args);
        (o.status.code(), json(&o))
    };
    let (code, v) = run(&["--method", "GET", "--path", "/lodash"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["policy"], "registry");
    assert!(v["reason"].is_null());

    let (code, v) = run(&["--method", "PUT", "--path", "/@my-scope/pkg", "--query", "write=true"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reason"], "blocked by deny rule");

    let (code, v) = run(&["--method", "DELETE", "--path", "/lodash"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["reason"], "method/path not permitted");

    let (code, v) = run(&["--method", "PUT", "--path", "/@my-scope/pkg"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["decision"], "allow");
}

#[test]
fn check_audit_decision() {
    let p = temp_file(
        "audit.yaml",
        "version: 1\nnetwork_policies:\n  api:\n    endpoints:\n      - host: api.example.com\n        port: 443\n        protocol: rest\n        enforcement: audit\n        access: read-only\n    binaries: [{path: /usr/bin/curl}]\n",
    );
    let o = openshell(&[
        "--output",
        "json",
        "policy",
        "check",
        p.to_str().expect("utf8"),
        "--host",
        "api.example.com",
        "--port",
        "443",
        "--binary",
        "/usr/bin/curl",
        "--method",
        "POST",
        "--path",
        "/x",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["decision"], "audit");
    assert_eq!(v["reason"], "method/path not permitted");
}

#[test]
fn check_rejects_bad_arguments() {
    let o = openshell(&["policy", "check", DEFAULT, "--host", "a.example.com", "--port", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = openshell(&["policy", "check", DEFAULT, "--host", "a.example.com", "--port", "443", "--binary", "curl"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--binary `curl`: must be an absolute path"), "{}", stderr(&o));
    let o = openshell(&["policy", "check", DEFAULT, "--host", "a.example.com", "--port", "443", "--method", "GET"]);
    assert_eq!(o.status.code(), Some(2), "--method without --path is a usage error");
    let o = openshell(&["policy", "check", "missing.yaml", "--host", "a.example.com", "--port", "443"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn explain_text_and_json() {
    let o = openshell(&["policy", "explain", DEFAULT]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    for want in [
        "Mount plan:",
        "read-write        /sandbox",
        "masked            /proc/kcore",
        "Landlock",
        "Capabilities: none",
        "RLIMIT_CORE",
        "pids.max        4096",
        "\"defaultAction\": \"SCMP_ACT_ERRNO\"",
    ] {
        assert!(s.contains(want), "missing {want:?}");
    }
    let o = openshell(&["--output", "json", "policy", "explain", DEFAULT]);
    let v = json(&o);
    assert_eq!(v["kernel"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(v["kernel"]["capabilities"]["bounding"], serde_json::json!([]));
    assert_eq!(v["kernel"]["cgroup"]["memory_max"], 4u64 << 30);
    assert_eq!(v["kernel"]["user"]["user"], "sandbox");
    // A policy that omits Landlock's compatibility gets hard_requirement wherever the
    // kernel has Landlock, and explain says so (issue 12: fail closed).
    let omitted = temp_file("omitted.yaml", "version: 1\n");
    let o = openshell(&["policy", "explain", omitted.to_str().expect("utf8")]);
    assert!(
        stdout(&o).contains(
            "compatibility hard_requirement (the default when omitted; best_effort only on a kernel without Landlock)"
        ),
        "{}",
        stdout(&o)
    );
    let o = openshell(&["--output", "json", "policy", "explain", omitted.to_str().expect("utf8")]);
    assert_eq!(json(&o)["kernel"]["landlock"]["compatibility"], "hard_where_supported");
    // Without filesystem_policy: OpenShell's baseline paths, and explain says so
    // (issue 16); a written section is exactly as written, with no such line.
    let o = openshell(&["policy", "explain", omitted.to_str().expect("utf8")]);
    let s = stdout(&o);
    assert!(s.contains("No filesystem_policy in the file: OpenShell's baseline"), "{s}");
    for want in ["read-only         /usr", "read-only         /dev/urandom", "read-write        /tmp"] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    let o = openshell(&["--output", "json", "policy", "explain", omitted.to_str().expect("utf8")]);
    assert_eq!(json(&o)["filesystem_policy"], "baseline");
    let o = openshell(&["policy", "explain", DEFAULT]);
    assert!(!stdout(&o).contains("No filesystem_policy"), "{}", stdout(&o));
    let o = openshell(&["--output", "json", "policy", "explain", DEFAULT]);
    assert_eq!(json(&o)["filesystem_policy"], "written");
}

#[test]
fn diff_live_and_recreate() {
    let old = std::fs::read_to_string(root().join(DEFAULT)).expect("read default");
    let live = temp_file("live.yaml", &old.replace("models.dev", "models.example.com"));
    let o = openshell(&["policy", "diff", DEFAULT, live.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0));
    let s = stdout(&o);
    assert!(s.starts_with("live:"), "{s}");
    assert!(s.contains("network_policies.opencode.endpoints[2].host: \"models.dev\" -> \"models.example.com\""), "{s}");

    let recreate = temp_file("recreate.yaml", &old.replace("    - /tmp\n", "    - /data\n"));
    let o = openshell(&["--output", "json", "policy", "diff", DEFAULT, recreate.to_str().expect("utf8")]);
    let v = json(&o);
    assert_eq!(v["applicability"], "recreate");
    assert_eq!(v["static_changes"][0]["field"], "filesystem_policy.read_write");

    let o = openshell(&["policy", "diff", DEFAULT, recreate.to_str().expect("utf8")]);
    let s = stdout(&o);
    assert!(s.contains("filesystem policy cannot be changed on a live sandbox (fixed at creation)"), "{s}");
    assert!(s.contains("filesystem_policy.read_write: added \"/data\"; removed \"/tmp\""), "{s}");

    let o = openshell(&["policy", "diff", DEFAULT, DEFAULT]);
    assert!(stdout(&o).starts_with("unchanged"));
}

#[test]
fn help_everywhere_and_completions() {
    for args in [
        vec!["--help"],
        vec!["policy", "--help"],
        vec!["policy", "validate", "--help"],
        vec!["policy", "check", "--help"],
        vec!["policy", "explain", "--help"],
        vec!["policy", "diff", "--help"],
        vec!["completions", "--help"],
        vec!["push", "--help"],
        vec!["pull", "--help"],
        vec!["kubernetes", "manifests", "--help"],
    ] {
        let o = openshell(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let o = openshell(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).contains("openshell"));
    }
    let o = openshell(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

/// A gateway directory of the test's own (the gateway starts on first use and is
/// stopped when this is dropped).
struct Gateway {
    dir: tempfile::TempDir,
}

impl Gateway {
    fn new() -> Gateway {
        // Short: the gateway's socket path must fit a sockaddr_un.
        Gateway { dir: tempfile::Builder::new().prefix("osc").tempdir_in("/tmp").expect("tempdir") }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_openshell"));
        c.args(args)
            .env("HOME", self.dir.path())
            .env("OPENSHELL_GATEWAY_DIR", self.dir.path().join("gw"))
            .env_remove("OPENSHELL_LOG")
            .stdin(std::process::Stdio::null());
        c
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.command(&["gateway", "stop"]).output();
    }
}

/// Every process's command line (`/proc/PID/cmdline`, what `ps` shows any user).
fn all_command_lines() -> Vec<String> {
    let procs = std::fs::read_dir("/proc").expect("/proc");
    let pids = procs.flatten().filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()));
    pids.filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect()
}

/// `provider create --credential NAME` reads the value from stdin when NAME is not
/// set: the provider works, `provider get` shows it set and never prints it, and no
/// process the CLI started (the gateway, its helper) carries it in its command line.
/// `NAME=VALUE` is refused without echoing the value.
#[test]
fn provider_credentials_never_reach_a_command_line() {
    let key = format!("sk-stdin-{}-5d1e8b2a9c", std::process::id());
    let gw = Gateway::new();
    let create = |credential: &str| {
        let mut c = gw.command(&["provider", "create", "--name", "p", "--type", "openai", "--credential", credential]);
        c.env_remove("TEST_PROVIDER_KEY");
        c
    };

    let o = create(&format!("TEST_PROVIDER_KEY={key}")).output().expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("never taken from the command line"), "{}", stderr(&o));
    assert!(stderr(&o).contains("`--credential TEST_PROVIDER_KEY`"), "says how: {}", stderr(&o));
    assert!(!stderr(&o).contains(&key) && !stdout(&o).contains(&key), "the value is not echoed");
    let o = create("TEST_PROVIDER_KEY").output().expect("run");
    assert_eq!(o.status.code(), Some(1), "no variable, empty stdin: {}", stderr(&o));
    assert!(stderr(&o).contains("stdin gave an empty line"), "{}", stderr(&o));

    let mut child = create("TEST_PROVIDER_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(format!("{key}\n").as_bytes()).expect("write the key");
    }
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [&["provider", "get", "p"][..], &["--output", "json", "provider", "list"]] {
        let o = gw.command(args).output().expect("run");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("TEST_PROVIDER_KEY"), "{}", stdout(&o));
        assert!(!stdout(&o).contains(&key) && !stderr(&o).contains(&key), "never printed");
    }
    assert!(stdout(&gw.command(&["provider", "get", "p"]).output().expect("run")).contains("TEST_PROVIDER_KEY (set)"));

    // Positive control: the scan sees a value that is on a command line, and sees
    // the gateway the CLI started.
    // One process (`read` is a builtin: no child outlives it), stdio not the test's.
    let mut marker = Command::new("sh")
        .args(["-c", "read line", &key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh");
    let marker_line = std::path::PathBuf::from(format!("/proc/{}/cmdline", marker.id()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read(&marker_line).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&key)) {
        assert!(std::time::Instant::now() < deadline, "the marker process did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let lines = all_command_lines();
    let _ = marker.kill();
    let _ = marker.wait();
    assert!(lines.iter().any(|l| l.contains(&key)), "the scan finds a value in argv");
    assert!(lines.iter().any(|l| l.contains("gateway run")), "the gateway runs: {lines:?}");
    let leaked: Vec<String> = all_command_lines().into_iter().filter(|l| l.contains(&key)).collect();
    assert!(leaked.is_empty(), "the credential is on a command line: {leaked:?}");
}

/// A credential read from the caller's environment (`--credential NAME` with NAME
/// set) does not follow the gateway that command starts: the gateway keeps only
/// the variables it reads. Positive control: an `OPENSHELL_*` variable set on the
/// same command is in the gateway's environment, so the check reads the right one.
#[test]
fn a_credential_in_the_environment_does_not_reach_the_gateway() {
    let key = format!("sk-env-{}-7c2f9e1d", std::process::id());
    let gw = Gateway::new();
    let o = gw
        .command(&["provider", "create", "--name", "p", "--type", "openai", "--credential", "TEST_PROVIDER_KEY"])
        .env("TEST_PROVIDER_KEY", &key)
        .env("OPENSHELL_TEST_MARKER", "marker-7c2f9e1d")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gw.command(&["--output", "json", "gateway", "status"]).output().expect("status");
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    let pid = status["pid"].as_i64().expect("the gateway's pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains("OPENSHELL_TEST_MARKER=marker-7c2f9e1d"), "control: {environ}");
    assert!(!environ.contains(&key), "the credential followed the gateway into its environment");
}

/// `kubernetes manifests --out DIR` writes what the repository keeps under
/// deploy/, and `--check` says so of both (and names what differs otherwise).
#[test]
fn kubernetes_manifests_write_what_deploy_holds() {
    let o = openshell(&["kubernetes", "manifests", "--out", "deploy", "--check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "deploy/ drifted; regenerate: openshell kubernetes manifests --out deploy\n{}",
        stdout(&o)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf8");
    let o = openshell(&["--output", "json", "kubernetes", "manifests", "--out", out]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let written = json(&o)["written"].as_array().map(Vec::len);
    assert_eq!(written, Some(13));
    let o = openshell(&["kubernetes", "manifests", "--out", out, "--check"]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), format!("{out}: as generated\n")));

    std::fs::write(dir.path().join("node/k3s.yaml"), "edited").expect("edit");
    std::fs::write(dir.path().join("node/extra.yaml"), "").expect("add");
    let o = openshell(&["--output", "json", "kubernetes", "manifests", "--out", out, "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        json(&o),
        serde_json::json!({ "same": false, "differences": [
            { "path": "node/k3s.yaml", "difference": "changed" },
            { "path": "node/extra.yaml", "difference": "not generated" },
        ]})
    );
}

#[test]
fn kubernetes_manifests_print_one_flavor() {
    for flavor in ["k3s", "containerd"] {
        let o = openshell(&["kubernetes", "manifests", "--flavor", flavor]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let kept = std::fs::read_to_string(root().join(format!("deploy/node/{flavor}.yaml"))).expect("deploy");
        assert_eq!(stdout(&o), kept, "{flavor}");
    }
}

/// `--output json` is a List (kubectl applies it too), with the flags' settings.
#[test]
fn kubernetes_manifests_json_with_settings() {
    let o = openshell(&[
        "--output",
        "json",
        "kubernetes",
        "manifests",
        "--flavor",
        "containerd",
        "--image",
        "mirror/openshell-installer:1",
        "--namespace",
        "openshell-system",
        "--runtime-path",
        "/opt/openshell/openshell-runtime",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list = json(&o);
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().expect("items");
    let kinds: Vec<&str> = items.iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "RuntimeClass"]
    );
    let daemon_set = &items[5];
    assert_eq!(daemon_set["metadata"]["namespace"], "openshell-system");
    let pod = &daemon_set["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["image"], "mirror/openshell-installer:1");
    assert_eq!(pod["volumes"][1]["hostPath"]["path"], "/opt/openshell");
    let drop_in = items[4]["data"]["drop-in-v2.toml"].as_str().expect("drop-in");
    assert!(drop_in.contains("BinaryName = \"/opt/openshell/openshell-runtime\""), "{drop_in}");
}

#[test]
fn kubernetes_manifests_refuse_bad_settings() {
    for (args, says) in [
        (vec!["--flavor", "k3s", "--namespace", "Open_Shell"], "namespace `Open_Shell`: only lowercase"),
        (vec!["--flavor", "k3s", "--runtime-path", "bin/openshell-runtime"], "runtime path `bin/openshell-runtime`"),
        (vec!["--flavor", "k3s", "--image", "a b"], "image `a b`"),
        (vec![], "--flavor"),
        (vec!["--check"], "--out"),
        (vec!["--flavor", "k3s", "--check"], "cannot be used with"),
        (vec!["--flavor", "k3s", "--out", "x"], "cannot be used with"),
    ] {
        let o = openshell(&[&["kubernetes", "manifests"][..], &args[..]].concat());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
}

/// The chart's Deployment runs `openshell gateway run` with flags it has.
#[test]
fn the_gateway_chart_uses_real_flags() {
    let deployment =
        std::fs::read_to_string(root().join("deploy/helm/openshell-gateway/templates/deployment.yaml")).expect("chart");
    assert!(deployment.contains("command: [openshell]\n          args:\n            - gateway\n            - run\n"));
    let help = stdout(&openshell(&["gateway", "run", "--help"]));
    let flags: Vec<&str> = deployment.lines().filter_map(|l| l.trim().strip_prefix("- --")).collect();
    assert_eq!(
        flags,
        ["listen", "tls-dir", "store", "driver", "namespace", "image-registry", "runtime-class", "database"]
    );
    for flag in flags {
        assert!(help.contains(&format!("--{flag} ")), "`gateway run` has no --{flag}:\n{help}");
    }
}
