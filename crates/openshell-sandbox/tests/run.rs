//! A process run through libcontainer under a policy: Landlock, user, exit code.
//! Needs root and gcc with static libc (CI installs both).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;

use openshell_policy::{KernelProfile, load_str};
use openshell_sandbox::run::{RunRequest, run};
use openshell_sandbox::{ProcessConfig, SpecInput, Writable, runtime_spec};

const PROBE: &str = r#"
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
int main(void) {
    printf("uid=%d\n", (int)getuid());
    printf("secret:%s\n", open("/etc/secret", O_RDONLY) >= 0 ? "read" : "denied");
    printf("bin-write:%s\n", open("/bin/new", O_WRONLY | O_CREAT, 0644) >= 0 ? "ok" : "denied");
    printf("tmp-write:%s\n", open("/tmp/new", O_WRONLY | O_CREAT, 0644) >= 0 ? "ok" : "denied");
    fflush(stdout);
    return 7;
}
"#;

/// Leaves an orphan that only process 1 can reap, then counts zombies; or waits
/// for SIGTERM (forwarded by the init) after announcing itself in /tmp/ready.
const SUPERVISED: &str = r#"
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void term(int sig) { (void)sig; printf("got SIGTERM\n"); fflush(stdout); _exit(42); }
static int zombies(void) {
    int n = 0; DIR *d = opendir("/proc"); struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], buf[512]; snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r"); if (!f) continue;
        if (fgets(buf, sizeof buf, f)) { char *p = strrchr(buf, ')'); if (p && p[2] == 'Z') n++; }
        fclose(f);
    }
    if (d) closedir(d);
    return n;
}
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "orphan") == 0) {
        pid_t a = fork();
        if (a == 0) { if (fork() == 0) _exit(0); _exit(0); }
        waitpid(a, NULL, 0);
        usleep(300000);
        printf("pid=%d zombies=%d\n", (int)getpid(), zombies());
        return 0;
    }
    signal(SIGTERM, term);
    FILE *f = fopen("/tmp/ready", "w"); if (f) fclose(f);
    for (;;) pause();
}
"#;

fn compile(dir: &Path, name: &str, source: &str, out: &Path) {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).expect("write");
    let built = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .expect("gcc is not installed: install gcc and libc6-dev");
    assert!(built.status.success(), "gcc -static (install libc6-dev): {}", String::from_utf8_lossy(&built.stderr));
}

fn rootfs(dir: &Path) -> std::path::PathBuf {
    assert!(nix::unistd::geteuid().is_root(), "this test creates containers: run it as root (CI does)");
    let root = dir.join("bundle/rootfs");
    for d in ["bin", "etc", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    compile(dir, "probe", PROBE, &root.join("bin/probe"));
    compile(dir, "supervised", SUPERVISED, &root.join("bin/supervised"));
    std::fs::write(root.join("etc/secret"), "s3cret").expect("secret");
    root
}

/// Runs `args` in the bundle under a policy that lists `read_only` (and /tmp
/// read-write, bound from `tmp` on the host when given); returns the exit code and stdout.
fn run_in(dir: &Path, id: &str, read_only: &str, args: &[&str], tmp: Option<&Path>) -> (i32, String) {
    // libcontainer changes the calling process's working directory: one container at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let policy = format!(
        "version: 1\nlandlock: {{compatibility: hard_requirement}}\nfilesystem_policy:\n  include_workdir: false\n  read_only: [{read_only}]\n  read_write: [/tmp]\nprocess: {{run_as_user: 1000, run_as_group: 1000}}\n"
    );
    let policy = load_str("test.yaml", &policy).unwrap_or_else(|e| panic!("{e}"));
    let profile = KernelProfile::compile(&policy, "/sandbox");
    let bundle = dir.join("bundle");
    let writable = match tmp {
        Some(source) => Writable::Bind { path: "/tmp".into(), source: source.to_path_buf() },
        None => Writable::Tmpfs { path: "/tmp".into() },
    };
    let spec = runtime_spec(&SpecInput {
        profile: &profile,
        process: ProcessConfig {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            terminal: false,
        },
        uid: 1000,
        gid: 1000,
        rootfs: bundle.join("rootfs"),
        hostname: id.into(),
        writable: vec![writable],
        cgroups_path: format!("/openshell-test/{id}"),
        ids: None,
    })
    .expect("spec");
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec).expect("json")).expect("config");
    let out_path = dir.join(format!("{id}.out"));
    let out = OwnedFd::from(std::fs::File::create(&out_path).expect("out"));
    let code = run(RunRequest {
        id: id.into(),
        bundle,
        state_root: dir.join("state"),
        landlock: profile.landlock.clone(),
        stdout: Some(out),
        stderr: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (code, std::fs::read_to_string(out_path).expect("read output"))
}

#[test]
fn policy_applies_inside_the_container() {
    let dir = tempfile::tempdir().expect("tempdir");
    rootfs(dir.path());
    let (code, out) = run_in(dir.path(), "openshell-run-test-a", "/bin", &["/bin/probe"], None);
    assert_eq!(code, 7, "exit code is the process's: {out}");
    assert_eq!(out, "uid=1000\nsecret:denied\nbin-write:denied\ntmp-write:ok\n");
    // Positive control: the same probe where the policy lists /etc.
    let (code, out) = run_in(dir.path(), "openshell-run-test-b", "/bin, /etc", &["/bin/probe"], None);
    assert_eq!(code, 7);
    assert_eq!(out, "uid=1000\nsecret:read\nbin-write:denied\ntmp-write:ok\n");
}

#[test]
fn init_reaps_orphans() {
    let dir = tempfile::tempdir().expect("tempdir");
    rootfs(dir.path());
    let (code, out) = run_in(dir.path(), "openshell-run-test-c", "/bin, /proc", &["/bin/supervised", "orphan"], None);
    assert_eq!(code, 0, "{out}");
    // The workload is not process 1: the init is, and it reaped the orphan.
    assert_eq!(out, "pid=2 zombies=0\n");
}

#[test]
fn init_forwards_signals() {
    let dir = tempfile::tempdir().expect("tempdir");
    rootfs(dir.path());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("chmod");
    let id = "openshell-run-test-d";
    let state = dir.path().join("state").join(id).join("state.json");
    let signaller = {
        let ready = tmp.join("ready");
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !ready.exists() {
                assert!(std::time::Instant::now() < deadline, "the workload never became ready");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            // libcontainer may be rewriting state.json: read it until it parses.
            let pid = loop {
                let parsed =
                    std::fs::read(&state).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                if let Some(pid) = parsed.and_then(|s| s["pid"].as_i64()) {
                    break pid as i32;
                }
                assert!(std::time::Instant::now() < deadline, "no init pid in {}", state.display());
                std::thread::sleep(std::time::Duration::from_millis(10));
            };
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
                .expect("signal the init");
        })
    };
    let (code, out) = run_in(dir.path(), id, "/bin", &["/bin/supervised"], Some(&tmp));
    signaller.join().expect("signaller");
    assert_eq!((code, out.as_str()), (42, "got SIGTERM\n"), "the init passes SIGTERM on and the workload's code back");
}
