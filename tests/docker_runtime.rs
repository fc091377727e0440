//! End-to-end: `openshell-runtime` registered with a private dockerd, running an
//! image built by `openshell lock` + `openshell build` (a static probe compiled by
//! the test): output, exit codes, `docker run -d` + `exec` (under Docker's seccomp
//! profile) + `top` + `stop` + `rm`, and policies — denial with a positive control,
//! `exec` under the container's policy, a bad policy in docker's error.
//!
//! The dockerd is the test's own (its own data root, exec root, socket, and the
//! containerd it starts), with no bridge and no iptables; the machine's dockerd is
//! not touched. Policies reach the runtime through `runtimeArgs` (`--policy FILE`)
//! of runtimes registered in the daemon's config file, because dockerd before 24
//! (Debian bookworm has 20.10) cannot pass annotations; where the daemon can, the
//! `run.openshell.policy` annotation is checked as well.
//!
//! Needs root, dockerd and docker (Debian `docker.io`), gcc with static libc
//! (`gcc`, `libc6-dev`), and the `openshell-runtime` binary built next to
//! `openshell` (`cargo nextest run --workspace` builds it; alone:
//! `cargo build -p openshell-runtime`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::dockerd::Dockerd;
use support::runtime_image::{IMAGE, build_image, require, runtime_binary, stdout, text};

mod support;

fn policy(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("policy");
    path.display().to_string()
}

fn landlock_policy(read_only: &str) -> String {
    format!(
        "version: 1\nlandlock: {{compatibility: hard_requirement}}\nfilesystem_policy:\n  include_workdir: false\n  read_only: [{read_only}]\n"
    )
}

#[test]
fn docker_runs_containers_through_openshell_sandbox() {
    let euid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&euid.stdout).trim(),
        "0",
        "this test starts its own dockerd: run it as root (CI does)"
    );
    require("dockerd", "docker.io");
    require("docker", "docker.io");
    let runtime = runtime_binary();
    // Short: dockerd's and containerd's unix sockets live under it.
    let dir = tempfile::Builder::new().prefix("osd").tempdir_in("/tmp").expect("tempdir");
    let image = build_image(dir.path());

    let deny = policy(dir.path(), "deny.yaml", &landlock_policy("/probe"));
    let allow = policy(dir.path(), "allow.yaml", &landlock_policy("/probe, /data"));
    let bad = policy(dir.path(), "bad.yaml", "version: 1\nfilesystem_policy:\n  read_only: 7\n");
    let rt = runtime.display().to_string();
    let with_policy = |p: &str| serde_json::json!({"path": rt, "runtimeArgs": ["--policy", p]});
    let config = serde_json::json!({"runtimes": {
        "openshell": {"path": rt},
        "openshell-deny": with_policy(&deny),
        "openshell-allow": with_policy(&allow),
        "openshell-bad": with_policy(&bad),
    }});
    let d = Dockerd::start(dir.path(), &config);
    let o = d.docker(&["info", "--format", "{{json .Runtimes}}"]);
    assert!(stdout(&o).contains("openshell-deny"), "runtimes registered: {}", text(&o));
    let o = d.docker(&["load", "-i", &image.display().to_string()]);
    assert!(o.status.success(), "docker load: {}", text(&o));

    let run = |runtime: &str, extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "none", "--runtime", runtime];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        d.docker(&args)
    };

    // The image's command, then an exit code passed through.
    let o = run("openshell", &[], &[]);
    assert!(o.status.success(), "docker run: {}\n{}", text(&o), d.log());
    assert_eq!(stdout(&o), "hello from openshell\n");
    let o = run("openshell", &[], &["/probe", "hello", "exit:7"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(stdout(&o), "hello from openshell\n");
    // A terminal (the runtime hands its master to containerd through --console-socket).
    let o = run("openshell", &["-t"], &["/probe", "hello"]);
    assert!(o.status.success(), "docker run -t: {}", text(&o));
    assert_eq!(stdout(&o), "hello from openshell\r\n", "a pty turns \\n into \\r\\n");

    // No policy: the bundle's spec as docker made it (its seccomp profile allows ptrace).
    let probe = ["/probe", "read:/data/secret", "ptrace"];
    let o = run("openshell", &[], &probe);
    assert_eq!(stdout(&o), "read /data/secret: s3cret\nptrace: allowed\n", "{}", text(&o));
    // A policy not listing /data: Landlock denies the read, its seccomp filter ptrace.
    let o = run("openshell-deny", &[], &probe);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(stdout(&o), "read /data/secret: Permission denied\nptrace: Operation not permitted\n", "{}", text(&o));
    // Positive control: listing /data lets the same probe read it.
    let o = run("openshell-allow", &[], &probe);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(stdout(&o), "read /data/secret: s3cret\nptrace: Operation not permitted\n", "{}", text(&o));
    // A bad policy: docker run fails and shows the policy's file:line:column.
    let o = run("openshell-bad", &[], &["/probe", "hello"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!stdout(&o).contains("hello"), "the workload must not run: {}", text(&o));
    let expected = format!("{bad}:3:14: filesystem_policy.read_only: expected a list");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&expected), "docker's error lacks `{expected}`: {}", text(&o));

    // The annotation, where the daemon can pass one (API 1.43, dockerd 24).
    let o = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let api: Vec<u32> = stdout(&o).trim().split('.').filter_map(|p| p.parse().ok()).collect();
    if api >= vec![1, 43] {
        let annotation = format!("run.openshell.policy={deny}");
        let o = run("openshell", &["--annotation", &annotation], &probe);
        assert_eq!(
            stdout(&o),
            "read /data/secret: Permission denied\nptrace: Operation not permitted\n",
            "{}",
            text(&o)
        );
    } else {
        eprintln!("note: dockerd API {api:?} < 1.43 cannot pass annotations; the policy went through runtimeArgs");
    }

    // Detached: exec (under Docker's seccomp profile, which denies keyctl), top, stop, rm.
    let o = run("openshell", &["--security-opt", "seccomp=unconfined"], &["/probe", "keyctl"]);
    assert_eq!(stdout(&o), "keyctl: allowed\n", "without Docker's profile keyctl answers: {}", text(&o));
    let serve = |runtime: &str| {
        let o = d.docker(&["run", "-d", "--network", "none", "--runtime", runtime, IMAGE, "/probe", "serve"]);
        assert!(o.status.success(), "docker run -d: {}\n{}", text(&o), d.log());
        let id = stdout(&o).trim().to_owned();
        let start = Instant::now();
        while !text(&d.docker(&["logs", &id])).contains("serving") {
            assert!(start.elapsed() < Duration::from_secs(30), "the container did not start serving");
            std::thread::sleep(Duration::from_millis(100));
        }
        id
    };
    let id = serve("openshell");
    let o = d.docker(&["exec", &id, "/probe", "hello", "keyctl", "exit:5"]);
    assert_eq!(o.status.code(), Some(5), "docker exec: {}", text(&o));
    assert_eq!(stdout(&o), "hello from openshell\nkeyctl: denied\n");
    let o = d.docker(&["exec", "-t", &id, "/probe", "hello"]);
    assert_eq!(stdout(&o), "hello from openshell\r\n", "docker exec -t: {}", text(&o));
    let o = d.docker(&["exec", "-u", "1000:1000", "-w", "/data", &id, "/probe", "read:secret"]);
    assert_eq!(stdout(&o), "read secret: s3cret\n", "docker exec -u -w: {}", text(&o));
    let o = d.docker(&["top", &id]);
    assert!(o.status.success() && stdout(&o).contains("/probe serve"), "docker top: {}", text(&o));
    let o = d.docker(&["stop", "-t", "10", &id]);
    assert!(o.status.success(), "docker stop: {}", text(&o));
    let o = d.docker(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", &id]);
    assert_eq!(stdout(&o).trim(), "exited 0", "the probe exits 0 on SIGTERM: {}", text(&o));
    let o = d.docker(&["rm", &id]);
    assert!(o.status.success(), "docker rm: {}", text(&o));

    // Under a policy, exec'd processes get the same policy.
    let id = serve("openshell-deny");
    let o = d.docker(&["exec", &id, "/probe", "hello", "read:/data/secret", "ptrace", "exit:5"]);
    assert_eq!(o.status.code(), Some(5), "docker exec: {}", text(&o));
    assert_eq!(
        stdout(&o),
        "hello from openshell\nread /data/secret: Permission denied\nptrace: Operation not permitted\n"
    );
    let o = d.docker(&["rm", "-f", &id]);
    assert!(o.status.success(), "docker rm -f: {}", text(&o));
    let o = d.docker(&["ps", "-aq"]);
    assert_eq!(stdout(&o).trim(), "", "nothing left");
    drop(d);
}

/// Issue 14: `openshell docker install` registers the runtime in a running
/// dockerd's daemon.json (its other settings and runtimes kept, the previous
/// file kept as `.bak`), has dockerd read it again without a restart, and
/// `docker run --runtime openshell` then runs an openshell-built image. A
/// daemon.json that is not JSON is refused with where, and left as it was.
#[test]
fn docker_install_registers_the_runtime_with_a_running_dockerd() {
    let euid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(String::from_utf8_lossy(&euid.stdout).trim(), "0", "this test starts its own dockerd: run it as root");
    require("dockerd", "docker.io");
    require("docker", "docker.io");
    let runtime = runtime_binary();
    let dir = tempfile::Builder::new().prefix("osi").tempdir_in("/tmp").expect("tempdir");
    let image = build_image(dir.path());
    let config = serde_json::json!({"max-concurrent-downloads": 2, "runtimes": {"other": {"path": "/bin/true"}}});
    let d = Dockerd::start(dir.path(), &config);
    let o = d.docker(&["info", "--format", "{{json .Runtimes}}"]);
    assert!(!stdout(&o).contains("\"openshell\""), "registered before the install: {}", text(&o));

    let daemon_json = dir.path().join("daemon.json");
    let install = || {
        Command::new(env!("CARGO_BIN_EXE_openshell"))
            .args(["docker", "install", "--runtime"])
            .arg(&runtime)
            .arg("--config")
            .arg(&daemon_json)
            .arg("--pid-file")
            .arg(dir.path().join("docker.pid"))
            .arg("--socket")
            .arg(dir.path().join("docker.sock"))
            .output()
            .expect("openshell docker install")
    };
    let o = install();
    assert!(o.status.success(), "docker install: {}\n{}", text(&o), d.log());
    assert!(stdout(&o).contains("dockerd lists it"), "{}", text(&o));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&daemon_json).expect("daemon.json")).expect("json");
    assert_eq!(written["max-concurrent-downloads"], 2);
    assert_eq!(written["runtimes"]["other"]["path"], "/bin/true");
    assert_eq!(written["runtimes"]["openshell"]["path"], runtime.display().to_string());
    assert_eq!(
        written["runtimes"]["openshell"]["runtimeArgs"],
        serde_json::json!(["--sandbox-dir", "/var/lib/openshell/docker"])
    );
    let backup = std::fs::read_to_string(daemon_json.with_extension("json.bak")).expect("backup");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&backup).expect("backup json"), config);
    let o = d.docker(&["load", "-i", &image.display().to_string()]);
    assert!(o.status.success(), "docker load: {}", text(&o));
    let o = d.docker(&["run", "--rm", "--network", "none", "--runtime", "openshell", IMAGE]);
    assert!(o.status.success(), "docker run --runtime openshell: {}\n{}", text(&o), d.log());
    assert_eq!(stdout(&o), "hello from openshell\n");
    let o = install();
    assert!(o.status.success() && stdout(&o).contains("already"), "a second install: {}", text(&o));

    std::fs::write(&daemon_json, "{\n  \"log-level\": \"warn\",\n}\n").expect("write");
    let o = install();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not valid JSON (line 3, column 1)"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&daemon_json).expect("kept"), "{\n  \"log-level\": \"warn\",\n}\n");
}
