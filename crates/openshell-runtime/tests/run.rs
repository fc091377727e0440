//! A process run through libcontainer under a policy: Landlock, user, exit code.
//! Needs root and gcc with static libc (CI installs both).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;

use openshell_policy::{KernelProfile, load_str};
use openshell_runtime::run::{RunRequest, run};
use openshell_runtime::{ProcessConfig, SpecInput, Writable, runtime_spec};

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

fn rootfs(dir: &Path) -> std::path::PathBuf {
    assert!(nix::unistd::geteuid().is_root(), "this test creates containers: run it as root (CI does)");
    let root = dir.join("bundle/rootfs");
    for d in ["bin", "etc", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(dir.join("probe.c"), PROBE).expect("write");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(root.join("bin/probe"))
        .arg(dir.join("probe.c"))
        .output()
        .expect("gcc is not installed: install gcc and libc6-dev");
    assert!(out.status.success(), "gcc -static (install libc6-dev): {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(root.join("etc/secret"), "s3cret").expect("secret");
    root
}

fn run_probe(dir: &Path, id: &str, read_only: &str) -> (i32, String) {
    let policy = format!(
        "version: 1\nlandlock: {{compatibility: hard_requirement}}\nfilesystem_policy:\n  include_workdir: false\n  read_only: [{read_only}]\n  read_write: [/tmp]\nprocess: {{run_as_user: 1000, run_as_group: 1000}}\n"
    );
    let policy = load_str("test.yaml", &policy).unwrap_or_else(|e| panic!("{e}"));
    let profile = KernelProfile::compile(&policy, "/sandbox");
    let bundle = dir.join("bundle");
    let spec = runtime_spec(&SpecInput {
        profile: &profile,
        process: ProcessConfig {
            args: vec!["/bin/probe".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            terminal: false,
        },
        uid: 1000,
        gid: 1000,
        rootfs: bundle.join("rootfs"),
        hostname: id.into(),
        writable: vec![Writable::Tmpfs { path: "/tmp".into() }],
        cgroups_path: format!("/openshell-test/{id}"),
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
    let (code, out) = run_probe(dir.path(), "openshell-run-test-a", "/bin");
    assert_eq!(code, 7, "exit code is the process's: {out}");
    assert_eq!(out, "uid=1000\nsecret:denied\nbin-write:denied\ntmp-write:ok\n");
    // Positive control: the same probe where the policy lists /etc.
    let (code, out) = run_probe(dir.path(), "openshell-run-test-b", "/bin, /etc");
    assert_eq!(code, 7);
    assert_eq!(out, "uid=1000\nsecret:read\nbin-write:denied\ntmp-write:ok\n");
}
