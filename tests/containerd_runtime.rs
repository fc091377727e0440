//! End-to-end: `openshell-runtime` as the binary of containerd's runc v2 shim
//! (`ctr run --runc-binary`), on a containerd of the test's own (its own root,
//! state and sockets; the CRI plugin off), running an image built by
//! `openshell lock` + `openshell build` and imported with `ctr images import`:
//! the shim's contract as containerd drives it — `create`/`start` with pipes,
//! exit codes, `exec` (`ctr task exec`), `ps --format json` (`ctr task ps`),
//! stats (`ctr task metrics`, from the cgroup the runtime made),
//! `pause`/`resume`, `kill` and `kill --all` and `delete`, a terminal through
//! the console socket (`ctr run -t`), a policy by annotation (`ctr run
//! --annotation run.openshell.policy=FILE`, with a positive control), and
//! SIGPIPE at its default.
//!
//! Needs root, containerd and ctr (Debian `containerd`), gcc with static libc,
//! and `openshell-runtime` built beside `openshell`.

use std::process::Output;
use std::time::{Duration, Instant};

use support::containerd::Containerd;
use support::runtime_image::{build_image, runtime_binary, stdout, text};

mod support;

const NAMESPACE: &str = "openshell-rt";

/// The imported image's name (ctr prefixes the archive's with docker.io/).
fn image_name(c: &Containerd) -> String {
    let o = c.ctr(NAMESPACE, &["images", "ls", "-q"]);
    stdout(&o)
        .lines()
        .find(|l| l.contains("runtime-e2e"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("the imported image is not listed: {}", text(&o)))
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}", text(&o));
    o
}

#[test]
fn containerd_runs_containers_through_openshell_runtime() {
    let euid = std::process::Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(String::from_utf8_lossy(&euid.stdout).trim(), "0", "this test starts containerd: run it as root");
    let runtime = runtime_binary().display().to_string();
    // Short: containerd's sockets live under it.
    let dir = tempfile::Builder::new().prefix("osc").tempdir_in("/tmp").expect("tempdir");
    let image = build_image(dir.path());
    let c = Containerd::start(&dir.path().join("containerd"));
    ok(c.ctr(NAMESPACE, &["images", "import", &image.display().to_string()]), "ctr images import");
    let name = image_name(&c);
    let run = |id: &str, args: &[&str]| {
        let mut all = vec!["run", "--rm", "--runc-binary", runtime.as_str(), name.as_str(), id];
        all.extend_from_slice(args);
        c.ctr(NAMESPACE, &all)
    };

    // Foreground: output through the shim's pipes, the exit code passed on.
    let o = run("fg", &["/probe", "hello", "exit:7"]);
    assert_eq!(o.status.code(), Some(7), "ctr run: {}\n{}", text(&o), c.log());
    assert_eq!(stdout(&o), "hello from openshell\n");
    // The runtime is ours: a policy by annotation (Landlock: /probe alone
    // readable) denies the read that runs without it (the positive control).
    let policy = dir.path().join("deny.yaml");
    std::fs::write(
        &policy,
        "version: 1\nlandlock: {compatibility: hard_requirement}\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/probe]\n",
    )
    .expect("policy");
    let o = run("open", &["/probe", "read:/data/secret"]);
    assert_eq!(stdout(&o), "read /data/secret: s3cret\n", "without a policy: {}", text(&o));
    let annotation = format!("run.openshell.policy={}", policy.display());
    let o = c.ctr(
        NAMESPACE,
        &[
            "run",
            "--rm",
            "--runc-binary",
            &runtime,
            "--annotation",
            &annotation,
            &name,
            "denied",
            "/probe",
            "read:/data/secret",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(stdout(&o), "read /data/secret: Permission denied\n", "under the annotated policy: {}", text(&o));
    // SIGPIPE is at its default in the container (bit 13 of SigIgn clear).
    let o = ok(run("sig", &["/probe", "status:SigIgn"]), "ctr run status");
    let mask = stdout(&o).trim().strip_prefix("SigIgn: ").map(|m| u64::from_str_radix(m, 16).expect("hex"));
    assert_eq!(mask.map(|m| m & (1 << 12)), Some(0), "{}", text(&o));

    // A terminal: ctr run -t hands the runtime a console socket (ctr itself
    // needs one on its stdin: `script` gives it).
    let cmd = format!(
        "/usr/bin/ctr --address {} --namespace {NAMESPACE} run -t --rm --runc-binary {runtime} {name} term /probe tty",
        c.address.display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (bsdutils) runs ctr");
    assert!(stdout(&o).contains("tty: /dev/pts/"), "the container has a terminal: {}\n{}", text(&o), c.log());

    // kill --all: every process of the task. SIGUSR1 (no handler) ends the
    // exec'd process; process 1 of a pid namespace takes from its ancestors only
    // signals it handles, so it stays: without --all, only it would be signalled.
    let o = c.ctr(NAMESPACE, &["run", "-d", "--runc-binary", &runtime, &name, "many", "/probe", "serve"]);
    ok(o, "ctr run -d many");
    let start = Instant::now();
    while !stdout(&c.ctr(NAMESPACE, &["task", "ls"])).lines().any(|l| l.starts_with("many") && l.contains("RUNNING")) {
        assert!(start.elapsed() < Duration::from_secs(20), "the task never ran: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(c.ctr(NAMESPACE, &["task", "exec", "-d", "--exec-id", "extra", "many", "/probe", "serve"]), "ctr task exec -d");
    let listed = stdout(&c.ctr(NAMESPACE, &["task", "ls"]));
    let init = listed.lines().find(|l| l.starts_with("many")).and_then(|l| l.split_whitespace().nth(1)).expect("pid");
    let pids: Vec<String> = stdout(&ok(c.ctr(NAMESPACE, &["task", "ps", "many"]), "ctr task ps"))
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    let extra: Vec<&String> = pids.iter().filter(|p| *p != init).collect();
    assert_eq!(extra.len(), 1, "process 1 ({init}) and the exec'd one: {pids:?}");
    let alive = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    ok(c.ctr(NAMESPACE, &["task", "kill", "--all", "--signal", "SIGUSR1", "many"]), "ctr task kill --all");
    let start = Instant::now();
    while alive(extra[0]) {
        assert!(start.elapsed() < Duration::from_secs(20), "kill --all missed the exec'd process: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(alive(init), "process 1 took a signal it has no handler for");
    ok(c.ctr(NAMESPACE, &["task", "kill", "--signal", "SIGKILL", "many"]), "ctr task kill");
    let start = Instant::now();
    while !stdout(&c.ctr(NAMESPACE, &["task", "ls"])).lines().any(|l| l.starts_with("many") && l.contains("STOPPED")) {
        assert!(start.elapsed() < Duration::from_secs(20), "the task never stopped: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(c.ctr(NAMESPACE, &["task", "delete", "many"]), "ctr task delete many");
    ok(c.ctr(NAMESPACE, &["containers", "delete", "many"]), "ctr containers delete many");

    // Detached: exec, ps, pause/resume, kill, delete.
    let id = "served";
    let o = c.ctr(NAMESPACE, &["run", "-d", "--runc-binary", &runtime, &name, id, "/probe", "serve"]);
    ok(o, "ctr run -d");
    let start = Instant::now();
    while !stdout(&c.ctr(NAMESPACE, &["task", "ls"])).lines().any(|l| l.starts_with(id) && l.contains("RUNNING")) {
        assert!(start.elapsed() < Duration::from_secs(20), "the task never ran: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = c.ctr(NAMESPACE, &["task", "exec", "--exec-id", "e1", id, "/probe", "hello", "exit:5"]);
    assert_eq!(o.status.code(), Some(5), "ctr task exec: {}", text(&o));
    assert_eq!(stdout(&o), "hello from openshell\n");
    let o = ok(c.ctr(NAMESPACE, &["task", "ps", id]), "ctr task ps");
    assert!(stdout(&o).lines().count() >= 2, "ctr task ps lists the task's process: {}", text(&o));
    // Stats: the shim reads the cgroup the runtime put the task in.
    let o = ok(c.ctr(NAMESPACE, &["task", "metrics", id]), "ctr task metrics");
    assert!(text(&o).contains("memory"), "ctr task metrics shows the task's memory: {}", text(&o));
    ok(c.ctr(NAMESPACE, &["task", "pause", id]), "ctr task pause");
    let o = c.ctr(NAMESPACE, &["task", "ls"]);
    assert!(stdout(&o).lines().any(|l| l.starts_with(id) && l.contains("PAUSED")), "{}", text(&o));
    ok(c.ctr(NAMESPACE, &["task", "resume", id]), "ctr task resume");
    ok(c.ctr(NAMESPACE, &["task", "kill", "--signal", "SIGTERM", id]), "ctr task kill");
    let start = Instant::now();
    while !stdout(&c.ctr(NAMESPACE, &["task", "ls"])).lines().any(|l| l.starts_with(id) && l.contains("STOPPED")) {
        assert!(start.elapsed() < Duration::from_secs(20), "the task never stopped: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(c.ctr(NAMESPACE, &["task", "delete", id]), "ctr task delete");
    ok(c.ctr(NAMESPACE, &["containers", "delete", id]), "ctr containers delete");
    let o = c.ctr(NAMESPACE, &["task", "ls", "-q"]);
    assert_eq!(stdout(&o).trim(), "", "no task left: {}", text(&o));
}
