//! The isolation suite (issue point 7): from inside a sandbox under the default
//! policy (`policies/default.yaml`) each escape below fails, and each has a positive
//! control in which the same probe subcommand succeeds where something permits it,
//! so no case can pass by being broken:
//!
//! - a policy variant, where a policy can express the permission (a path listed
//!   read-write or read-only, a higher `resources` limit);
//! - a kernel-profile [`Lift`], where only the kernel profile can (seccomp,
//!   capabilities, Landlock as a whole, the pid namespace, no_new_privs): the compiled
//!   default profile with exactly that restriction lifted;
//! - a lifted user namespace, where the sandbox's ids being a range of the host's
//!   is what refuses (device nodes, bpf, /proc without a pid namespace,
//!   host-owned files);
//! - the host, where a sandbox can never be given the permission (writing kernel
//!   settings needs uid 0; `/proc/PID/root` of a host process), or where the point is
//!   that the object exists outside the sandbox (the host's /root, another sandbox's
//!   files, device nodes).
//!
//! The probe is `tests/fixtures/isolation/probe.c`, compiled here with `gcc -static`.
//! Every sandbox run goes through [`in_sandbox`] / [`in_sandbox_watching`]: today
//! they build the sandbox with the library (rootfs overlay, `runtime_spec`,
//! `openshell_sandbox::run::run`), as `crates/openshell-runtime/tests/run.rs` does;
//! policy-only variants can later run through `openshell sandbox create --rm`
//! instead (the lifts and the workdir's host path need the library). The container
//! is created from a single-threaded child process (this test binary again, running
//! only [`sandbox_runner`]): libcontainer clones its caller without fork handlers,
//! and a lock held by another test thread at that moment (std's environment lock,
//! during any `Command::spawn`) deadlocked the container's init.
//!
//! Needs root, gcc and static libc (Debian: gcc, libc6-dev); CI runs as root with both.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use openshell_policy::model::Compatibility;
use openshell_policy::profile::{LandlockProfile, LandlockRule, PathAccess};
use openshell_policy::seccomp::SyscallRule;
use openshell_policy::{KernelProfile, load_str};
use openshell_sandbox::idmap::IdMap;
use openshell_sandbox::rootfs::{LayerOwners, Overlay, OverlayIds};
use openshell_sandbox::run::{RunRequest, run};
use openshell_sandbox::{ProcessConfig, SpecInput, Writable, resolve_group, resolve_user, runtime_spec};
use serde_json::{Value, json};

const DEFAULT_POLICY: &str = include_str!("../policies/default.yaml");
const PROBE_SOURCE: &str = include_str!("fixtures/isolation/probe.c");
/// Names the request file of a runner process (see [`sandbox_runner`]).
const RUNNER_ENV: &str = "OPENSHELL_ISOLATION_RUNNER_REQUEST";
/// A sandbox that runs longer than this is killed and the case fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// The sandbox's working directory (the default image's).
const WORKDIR: &str = "/sandbox";
/// The host range sandboxes' ids map to in this suite (`OPENSHELL_ID_RANGE` form).
const TEST_ID_RANGE: &str = "1879048192";
/// Read-write policy paths the runtime's own /dev provides (no mount of ours).
const DEVICE_PATHS: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts", "/dev/ptmx"];
/// Device nodes the test puts into the image (name, major, minor, block?): a usual
/// one and some that must never be reachable from a sandbox.
const IMAGE_DEVICES: &[(&str, u64, u64, bool)] = &[
    ("null", 1, 3, false),
    ("kmsg", 1, 11, false),
    ("console", 5, 1, false),
    ("tun", 10, 200, false),
    ("loop0", 7, 0, true),
];

// ---- harness -----------------------------------------------------------------

/// Restrictions of the compiled default profile that a control lifts, for
/// permissions no policy can grant.
#[derive(Debug, Clone)]
enum Lift {
    /// seccomp: these syscalls allowed, whatever their arguments (any argument
    /// filter on them removed).
    Syscalls(&'static [&'static str]),
    /// These capabilities in every set (bounding, permitted, effective,
    /// inheritable and ambient, so they survive the exec as uid 1000).
    Caps(&'static [&'static str]),
    /// No Landlock domain at all (a profile that handles no right).
    NoLandlock,
    /// Landlock: extra directory rights on a path the policy lists.
    LandlockRights(&'static str, &'static [&'static str]),
    /// No pid namespace.
    NoPidNamespace,
    /// No user namespace: the sandbox's ids are the host's (as before issue 12).
    NoUserNamespace,
    /// `noNewPrivileges` left out of the spec, so libcontainer does not set it
    /// (with `false` it would install the seccomp filter after dropping
    /// capabilities, without no_new_privs, and fail).
    NewPrivileges,
}

impl Lift {
    fn on_profile(&self, p: &mut KernelProfile) {
        match self {
            Lift::Syscalls(names) => {
                for rule in &mut p.seccomp.syscalls {
                    rule.names.retain(|n| !names.contains(n));
                }
                p.seccomp.syscalls.retain(|r| !r.names.is_empty());
                p.seccomp.syscalls.push(SyscallRule {
                    names: names.to_vec(),
                    action: "SCMP_ACT_ALLOW",
                    errno_ret: None,
                    args: Vec::new(),
                });
            }
            Lift::NoLandlock => p.landlock.handled.clear(),
            Lift::LandlockRights(path, rights) => {
                let rule = p
                    .landlock
                    .rules
                    .iter_mut()
                    .find(|r| r.path == *path)
                    .unwrap_or_else(|| panic!("the policy has no Landlock rule for {path}"));
                rule.directory_rights.extend(rights.iter().copied());
            }
            Lift::NoPidNamespace => p.namespaces.retain(|n| *n != "pid"),
            Lift::Caps(_) | Lift::NewPrivileges | Lift::NoUserNamespace => {}
        }
    }

    fn on_spec(&self, spec: &mut Value) {
        match self {
            Lift::Caps(caps) => {
                let sets = spec["process"]["capabilities"].as_object_mut().expect("process.capabilities");
                for set in ["bounding", "effective", "inheritable", "permitted", "ambient"] {
                    let list = sets.entry(set).or_insert_with(|| json!([]));
                    list.as_array_mut().expect("a capability list").extend(caps.iter().map(|c| json!(c)));
                }
            }
            Lift::NewPrivileges => {
                let removed = spec["process"].as_object_mut().expect("process").remove("noNewPrivileges");
                assert_eq!(removed, Some(json!(true)), "the default profile sets noNewPrivileges");
            }
            _ => {}
        }
    }
}

/// A sandbox configuration: a policy (YAML text, so it could be handed to the CLI
/// as a file) and kernel-profile lifts.
#[derive(Debug, Clone)]
struct Variant {
    yaml: String,
    /// How `yaml` differs from policies/default.yaml, for messages.
    edits: Vec<String>,
    lifts: Vec<Lift>,
    /// Files the host puts into the sandbox's read-write directories before it
    /// starts: (path inside, content, host owner uid and gid, mode).
    host_files: Vec<(&'static str, &'static str, u32, u32)>,
}

impl Variant {
    /// `policies/default.yaml` as it is.
    fn default_policy() -> Variant {
        Variant { yaml: DEFAULT_POLICY.to_owned(), edits: Vec::new(), lifts: Vec::new(), host_files: Vec::new() }
    }

    /// The policy text with `from` replaced by `to`; `from` must occur exactly once.
    fn edit(mut self, from: &str, to: &str) -> Variant {
        assert_eq!(self.yaml.matches(from).count(), 1, "`{from}` must occur once in policies/default.yaml");
        self.yaml = self.yaml.replacen(from, to, 1);
        self.edits.push(format!("{from:?} -> {to:?}"));
        self
    }

    fn read_write(self, path: &str) -> Variant {
        self.edit("  read_write:\n", &format!("  read_write:\n    - {path}\n"))
    }

    /// Moves `path` from the policy's read-only list to its read-write list.
    fn read_only_to_read_write(self, path: &str) -> Variant {
        self.edit(&format!("    - {path}\n"), "").read_write(path)
    }

    fn read_only(self, path: &str) -> Variant {
        self.edit("  read_only:\n", &format!("  read_only:\n    - {path}\n"))
    }

    /// A file the host puts at `path` (in a read-write directory) before the start,
    /// owned by host uid and gid `owner` with `mode`.
    fn host_file(mut self, path: &'static str, content: &'static str, owner: u32, mode: u32) -> Variant {
        self.host_files.push((path, content, owner, mode));
        self
    }

    fn lift(mut self, lift: Lift) -> Variant {
        self.lifts.push(lift);
        self
    }

    /// The host range the sandbox's ids map to (its own user namespace), unless
    /// a control lifts it. A fixed test range, not the dedicated user's (the suite
    /// does not create users on the machine it runs on).
    fn ids(&self) -> Option<IdMap> {
        let lifted = self.lifts.iter().any(|l| matches!(l, Lift::NoUserNamespace));
        (!lifted).then(|| IdMap::parse(TEST_ID_RANGE).expect("test id range"))
    }

    fn profile(&self) -> KernelProfile {
        let policy = load_str("variant.yaml", &self.yaml).unwrap_or_else(|e| panic!("policy variant: {e}"));
        let mut profile = KernelProfile::compile(&policy, WORKDIR);
        for lift in &self.lifts {
            lift.on_profile(&mut profile);
        }
        profile
    }
}

fn default() -> Variant {
    Variant::default_policy()
}

/// What one probe run printed and returned.
struct Outcome {
    what: String,
    code: i32,
    out: String,
    err: String,
    /// Host directory bound at /sandbox (sandbox runs only).
    workdir: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Outcome {
    fn describe(&self) -> String {
        format!("{}\n  exit: {}\n  stdout: {:?}\n  stderr: {:?}", self.what, self.code, self.out, self.err)
    }

    #[track_caller]
    fn line(&self) -> &str {
        match self.out.strip_suffix('\n') {
            Some(line) if !line.contains('\n') => line,
            _ => panic!("the probe prints exactly one line: {}", self.describe()),
        }
    }

    /// Asserts `CASE: denied ERRNO [DETAIL]` and exit 1; returns (ERRNO, DETAIL).
    #[track_caller]
    fn denied(&self, case: &str) -> (String, String) {
        let line = self.line();
        let rest = line
            .strip_prefix(&format!("{case}: denied "))
            .unwrap_or_else(|| panic!("expected `{case}: denied ...`: {}", self.describe()));
        assert_eq!(self.code, 1, "a denial exits 1: {}", self.describe());
        let (errno, detail) = rest.split_once(' ').unwrap_or((rest, ""));
        (errno.to_owned(), detail.to_owned())
    }

    /// Asserts a denial with one of `errnos`.
    #[track_caller]
    fn denied_with(&self, case: &str, errnos: &[&str]) -> String {
        let (errno, detail) = self.denied(case);
        assert!(errnos.contains(&errno.as_str()), "expected {errnos:?}: {}", self.describe());
        detail
    }

    /// Asserts `CASE: ok [DETAIL]` and exit 0; returns DETAIL.
    #[track_caller]
    fn ok(&self, case: &str) -> String {
        let line = self.line();
        let rest = line
            .strip_prefix(&format!("{case}: ok"))
            .unwrap_or_else(|| panic!("expected `{case}: ok ...`: {}", self.describe()));
        assert_eq!(self.code, 0, "success exits 0: {}", self.describe());
        rest.trim_start().to_owned()
    }
}

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "the isolation suite creates containers: run it as root (CI does)");
}

/// The probe, compiled once per test process (to a fresh name, then renamed into
/// place, so concurrent test processes never see a half-written file).
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        require_root();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let pid = std::process::id();
        let src = dir.join(format!("isolation-probe-{pid}.c"));
        let tmp = dir.join(format!("isolation-probe-{pid}"));
        std::fs::write(&src, PROBE_SOURCE).expect("write probe source");
        let out = Command::new("gcc")
            .args(["-static", "-O1", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run gcc ({e}): install gcc and libc6-dev"));
        let _ = std::fs::remove_file(&src);
        assert!(
            out.status.success(),
            "gcc -static failed (install gcc and libc6-dev for a static libc): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dest = dir.join("isolation-probe");
        std::fs::rename(&tmp, &dest).expect("rename probe");
        dest
    })
}

fn make_devices(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir devices");
    for &(name, major, minor, block) in IMAGE_DEVICES {
        let kind = if block { SFlag::S_IFBLK } else { SFlag::S_IFCHR };
        let path = dir.join(name);
        mknod(&path, kind, Mode::from_bits_truncate(0o666), makedev(major, minor))
            .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod device");
    }
}

/// The image: the probe at /usr/bin/probe, a setuid-root copy, the `sandbox` user
/// (1000:1000), a secret in /root readable by anyone as far as file modes go (only
/// the policy keeps it from the sandbox), device nodes under /opt/dev.
fn build_image(root: &Path) {
    for d in ["usr/bin", "usr/local", "etc", "root", "opt/dev", "sandbox", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir image");
    }
    std::fs::copy(probe(), root.join("usr/bin/probe")).expect("copy probe");
    std::fs::set_permissions(root.join("usr/bin/probe"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::copy(probe(), root.join("usr/bin/probe-suid")).expect("copy probe");
    std::os::unix::fs::chown(root.join("usr/bin/probe-suid"), Some(0), Some(0)).expect("chown");
    std::fs::set_permissions(root.join("usr/bin/probe-suid"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod setuid");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000::/sandbox:/bin/sh\n")
        .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nsandbox:x:1000:\n").expect("group");
    std::fs::write(root.join("root/secret"), "image secret\n").expect("secret");
    std::fs::set_permissions(root.join("root/secret"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    make_devices(&root.join("opt/dev"));
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Removes what a failed run may leave behind: the sandbox's cgroups (in every
/// hierarchy, killing any process still in them) and the rootfs overlay.
struct Cleanup {
    cgroup: String,
    overlay: Option<Overlay>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let rel = self.cgroup.trim_start_matches('/');
        let mut dirs = vec![Path::new("/sys/fs/cgroup").join(rel)];
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            dirs.extend(entries.flatten().map(|e| e.path().join(rel)));
        }
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            for _ in 0..50 {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
                }
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(overlay) = &self.overlay
            && overlay.unmount().is_err()
        {
            let _ = nix::mount::umount2(&overlay.target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Runs the probe with `args` in a new sandbox under `variant`.
fn in_sandbox(variant: &Variant, args: &[&str]) -> Outcome {
    in_sandbox_watching(variant, args, &mut |_| {})
}

/// [`in_sandbox`], calling `on_line` with each line the probe prints, while it runs.
fn in_sandbox_watching(variant: &Variant, args: &[&str], on_line: &mut dyn FnMut(&str)) -> Outcome {
    let dir = tempfile::Builder::new()
        .prefix("isolation-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir in CARGO_TARGET_TMPDIR");
    let base = dir.path();
    let id = format!("openshell-iso-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let what = format!(
        "sandbox {id}: probe {} (policy edits: {:?}, lifts: {:?})",
        args.join(" "),
        variant.edits,
        variant.lifts
    );
    let mut cleanup = Cleanup { cgroup: format!("/openshell-test/{id}"), overlay: None };
    let ids = variant.ids();

    let image = base.join("image");
    build_image(&image);
    let profile = variant.profile();
    let passwd = std::fs::read_to_string(image.join("etc/passwd")).expect("passwd");
    let group = std::fs::read_to_string(image.join("etc/group")).expect("group");
    let uid = resolve_user(profile.user.user, &passwd).expect("uid");
    let gid = resolve_group(profile.user.group, &group).expect("gid");

    let mut writable = Vec::new();
    let mut workdir = None;
    for path in &profile.mounts.read_write {
        if DEVICE_PATHS.contains(&path.as_str()) {
            continue;
        }
        if path == "/tmp" {
            writable.push(Writable::Tmpfs { path: path.clone() });
            continue;
        }
        let source = base.join("rw").join(path.trim_start_matches('/').replace('/', "_"));
        std::fs::create_dir_all(&source).expect("mkdir read-write source");
        let (owner, group) = ids.map_or((uid, gid), |ids| ids.to_host((uid, gid)));
        std::os::unix::fs::chown(&source, Some(owner), Some(group)).expect("chown read-write source");
        if path == WORKDIR {
            workdir = Some(source.clone());
        }
        for &(file, content, owner, mode) in &variant.host_files {
            if let Some(rel) = file.strip_prefix(path.as_str()).and_then(|r| r.strip_prefix('/')) {
                let at = source.join(rel);
                std::fs::write(&at, content).expect("host file");
                std::os::unix::fs::chown(&at, Some(owner), Some(owner)).expect("chown host file");
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode)).expect("chmod host file");
            }
        }
        writable.push(Writable::Bind { path: path.clone(), source });
    }

    let overlay = Overlay {
        layers: vec![image],
        upper: base.join("upper"),
        work: base.join("work"),
        target: base.join("rootfs"),
        ids: ids.map(|map| OverlayIds { map, layers: LayerOwners::Idmapped { staging: base.join("lower") } }),
    };
    overlay.mount().unwrap_or_else(|e| panic!("{e}"));
    cleanup.overlay = Some(overlay.clone());

    let mut process_args = vec!["/usr/bin/probe".to_owned()];
    process_args.extend(args.iter().map(|a| a.to_string()));
    let spec = runtime_spec(&SpecInput {
        profile: &profile,
        process: ProcessConfig {
            args: process_args,
            env: vec!["PATH=/usr/bin:/bin".into(), "HOME=/sandbox".into()],
            cwd: WORKDIR.into(),
            terminal: false,
        },
        uid,
        gid,
        rootfs: overlay.target.clone(),
        hostname: id.clone(),
        writable,
        cgroups_path: cleanup.cgroup.clone(),
        ids,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut spec = serde_json::to_value(&spec).expect("spec as JSON");
    for lift in &variant.lifts {
        lift.on_spec(&mut spec);
    }
    let bundle = base.join("bundle");
    std::fs::create_dir_all(&bundle).expect("mkdir bundle");
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec).expect("json")).expect("config");

    let (out_path, err_path) = (base.join("stdout"), base.join("stderr"));
    std::fs::File::create(&out_path).expect("stdout file");
    std::fs::File::create(&err_path).expect("stderr file");
    let request = base.join("request.json");
    let landlock = serde_json::to_value(&profile.landlock).expect("landlock as JSON");
    assert_eq!(landlock_from_json(&landlock), profile.landlock, "the Landlock profile survives the trip to the runner");
    let req = json!({
        "id": id, "bundle": bundle, "state_root": base.join("state"), "landlock": landlock,
        "stdout": out_path, "stderr": err_path, "result": base.join("result"),
    });
    std::fs::write(&request, serde_json::to_vec(&req).expect("json")).expect("request");
    // The runner: this test binary again, running only `sandbox_runner`, so the
    // process libcontainer clones is single-threaded (see `run`'s documentation).
    let log = std::fs::File::create(base.join("runner.log")).expect("runner log");
    let mut runner = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "sandbox_runner", "--ignored", "--test-threads=1", "--nocapture"])
        .env(RUNNER_ENV, &request)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the sandbox runner");
    let started = Instant::now();
    let mut seen = 0;
    let status = loop {
        let status = runner.try_wait().expect("wait for the runner");
        let text = std::fs::read(&out_path).unwrap_or_default();
        while let Some(nl) = text.get(seen..).and_then(|t| t.iter().position(|&b| b == b'\n')) {
            on_line(&String::from_utf8_lossy(&text[seen..seen + nl]));
            seen += nl + 1;
        }
        if let Some(status) = status {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = runner.kill();
            break runner.wait().expect("killed runner");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let log = std::fs::read_to_string(base.join("runner.log")).unwrap_or_default();
    let result = std::fs::read_to_string(base.join("result")).unwrap_or_default();
    let code = result.strip_prefix("exit ").and_then(|c| c.parse().ok()).unwrap_or_else(|| {
        panic!(
            "{what}: the runner failed ({status}, after {:?}): {result}\n  stdout: {out:?}\n  stderr: {err:?}\n  runner: {log}",
            started.elapsed()
        )
    });
    drop(cleanup);
    eprintln!("{what} ({:?}): exit {code}: {}", started.elapsed(), out.trim_end());
    Outcome { what, code, out, err, workdir, _dir: Some(dir) }
}

/// Runs the probe on the host (as the test's user, root), in `cwd`.
fn on_host(args: &[&str], cwd: &Path) -> Outcome {
    let out = Command::new(probe()).args(args).current_dir(cwd).output().expect("run the probe on the host");
    Outcome {
        what: format!("host: probe {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        workdir: None,
        _dir: None,
    }
}

/// A Landlock profile back from its JSON form (the policy crate only serializes it).
fn landlock_from_json(v: &Value) -> LandlockProfile {
    // Every right name, as the policy crate spells them: all are handled.
    let names = default().profile().landlock.handled;
    let name = |r: &Value| -> &'static str {
        let r = r.as_str().expect("a right");
        names.iter().copied().find(|n| *n == r).unwrap_or_else(|| panic!("unknown Landlock right {r}"))
    };
    let list = |v: &Value| -> Vec<&'static str> { v.as_array().expect("a list").iter().map(name).collect() };
    LandlockProfile {
        compatibility: match v["compatibility"].as_str() {
            Some("hard_requirement") => Compatibility::HardRequirement,
            Some("best_effort") => Compatibility::BestEffort,
            Some("hard_where_supported") => Compatibility::HardWhereSupported,
            other => panic!("compatibility {other:?}"),
        },
        abi: v["abi"].as_u64().and_then(|a| u32::try_from(a).ok()).expect("abi"),
        handled: list(&v["handled"]),
        rules: v["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| LandlockRule {
                path: r["path"].as_str().expect("path").to_owned(),
                access: match r["access"].as_str() {
                    Some("read-only") => PathAccess::ReadOnly,
                    Some("read-write") => PathAccess::ReadWrite,
                    other => panic!("access {other:?}"),
                },
                directory_rights: list(&r["directory_rights"]),
                file_rights: list(&r["file_rights"]),
            })
            .collect(),
    }
}

/// Not a case: the runner process of [`in_sandbox_watching`], which starts this
/// binary with only this test and a request file. It runs the prepared bundle and
/// writes `exit CODE` (or `error: ...`) to the result file.
#[test]
#[ignore = "the isolation harness runs it in a child process"]
fn sandbox_runner() {
    let path = std::env::var_os(RUNNER_ENV)
        .unwrap_or_else(|| panic!("sandbox_runner is run by the isolation harness, with {RUNNER_ENV} set"));
    let req: Value = serde_json::from_slice(&std::fs::read(&path).expect("request")).expect("request JSON");
    let p = |k: &str| PathBuf::from(req[k].as_str().unwrap_or_else(|| panic!("request.{k}")));
    let file = |k: &str| OwnedFd::from(std::fs::OpenOptions::new().append(true).open(p(k)).expect("output file"));
    let result = run(RunRequest {
        id: req["id"].as_str().expect("id").to_owned(),
        bundle: p("bundle"),
        state_root: p("state_root"),
        landlock: landlock_from_json(&req["landlock"]),
        stdout: Some(file("stdout")),
        stderr: Some(file("stderr")),
    });
    let text = match result {
        Ok(code) => format!("exit {code}"),
        Err(e) => format!("error: {e}"),
    };
    std::fs::write(p("result"), text).expect("result");
}

fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("isolation-host-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

/// A file on the host, removed when dropped.
struct HostFile(PathBuf);

impl HostFile {
    fn create(path: PathBuf, content: &str) -> HostFile {
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        HostFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `f` while a host thread keeps spawning a process every 20 ms; asserts every
/// spawn succeeded. Returns `f`'s result and the number of host spawns.
fn host_keeps_working<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let spawner = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let status = Command::new("true").status().expect("the host can spawn a process");
                assert!(status.success(), "`true` on the host: {status}");
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        });
        let result = f();
        stop.store(true, Ordering::Relaxed);
        (result, spawner.join().expect("host spawner"))
    })
}

// ---- filesystem ----------------------------------------------------------------

#[test]
fn writing_outside_read_write_paths_fails() {
    let d = default();
    // The default policy's own read-write paths: the same write succeeds.
    in_sandbox(&d, &["write", "/sandbox/x"]).ok("write");
    in_sandbox(&d, &["write", "/tmp/x"]).ok("write");
    // Read-only root filesystem (and Landlock, and file modes).
    for path in ["/x", "/usr/local/x", "/opt/x", "/etc/x"] {
        in_sandbox(&d, &["write", path]).denied_with("write", &["EROFS", "EACCES"]);
    }
    // /dev/shm is a writable tmpfs anyone may write: only Landlock refuses.
    in_sandbox(&d, &["write", "/dev/shm/x"]).denied_with("write", &["EACCES"]);
    // Controls: each listed read-write in a policy variant.
    for (dir, path) in [("/usr/local", "/usr/local/x"), ("/dev/shm", "/dev/shm/x")] {
        in_sandbox(&d.clone().read_write(dir), &["write", path]).ok("write");
    }
    in_sandbox(&d.clone().read_only_to_read_write("/opt"), &["write", "/opt/x"]).ok("write");
}

#[test]
fn reading_paths_the_policy_does_not_list_fails() {
    require_root();
    let d = default();
    // The image's /root/secret is world-readable by mode: Landlock alone refuses it.
    in_sandbox(&d, &["read", "/root/secret"]).denied_with("read", &["EACCES"]);
    in_sandbox(&d.clone().read_only("/root"), &["read", "/root/secret"]).ok("read");
    // The host's /root does not exist in a sandbox, listed or not; the host reads it.
    let host = HostFile::create(
        PathBuf::from(format!("/root/.openshell-isolation-{}-secret", std::process::id())),
        "host secret\n",
    );
    in_sandbox(&d, &["read", host.path()]).denied_with("read", &["ENOENT", "EACCES"]);
    in_sandbox(&d.clone().read_only("/root"), &["read", host.path()]).denied_with("read", &["ENOENT"]);
    on_host(&["read", host.path()], Path::new("/")).ok("read");
}

/// Issue 12 point 3: the sandbox's uid 1000 is not the host's uid 1000. A host file
/// owned by host uid 1000, mode 0600, in a directory the policy lists read-write,
/// cannot be read inside (the sandbox's 1000 is a host id of its range); the
/// control, without the user namespace, reads it.
#[test]
fn the_sandbox_user_is_not_the_host_user_of_the_same_number() {
    let d = default().host_file("/sandbox/host-owned", "host secret\n", 1000, 0o600);
    in_sandbox(&d, &["read", "/sandbox/host-owned"]).denied_with("read", &["EACCES"]);
    in_sandbox(&d.clone().lift(Lift::NoUserNamespace), &["read", "/sandbox/host-owned"]).ok("read");
}

#[test]
fn other_sandboxes_files_are_unreachable() {
    let d = default();
    let b = in_sandbox(&d, &["write", "/sandbox/b-file"]);
    b.ok("write");
    let on_b_host = b.workdir.as_ref().expect("workdir").join("b-file");
    let on_b_host = on_b_host.to_str().expect("UTF-8");
    // Control: the file is there, where sandbox B's /sandbox lives on the host.
    on_host(&["read", on_b_host], Path::new("/")).ok("read");
    // Sandbox A has its own /sandbox, and B's host path does not exist in A.
    in_sandbox(&d, &["read", "/sandbox/b-file"]).denied_with("read", &["ENOENT"]);
    in_sandbox(&d, &["read", on_b_host]).denied_with("read", &["ENOENT", "EACCES"]);
}

#[test]
fn escapes_through_proc_root_symlinks_dotdot_and_descriptors_fail() {
    require_root();
    let d = default();
    let host = host_dir();
    let marker = HostFile::create(host.path().join("marker"), "host file\n");
    let m = marker.path();
    let me = std::process::id().to_string();

    // /proc/1/root: pid 1 of a sandbox is the sandbox's own init (not dumpable after
    // its switch to the sandbox user: EACCES; its root would be the sandbox's root
    // anyway). Control: on the host, /proc/PID/root of a host process (this test; the
    // host's pid 1 may refuse even root) reaches the host's files.
    in_sandbox(&d, &["procroot", "1", m]).denied_with("procroot", &["ENOENT", "EACCES"]);
    on_host(&["procroot", &me, m], Path::new("/")).ok("procroot");
    // The host's pid for this test does not exist in a sandbox.
    in_sandbox(&d, &["procroot", &me, m]).denied_with("procroot", &["ENOENT"]);

    // Symlinks resolve in the sandbox's view: to a host path, nothing; to a path the
    // policy does not list, Landlock. Controls: the host; /root listed read-only.
    in_sandbox(&d, &["symlink", m, "/sandbox/link"]).denied_with("symlink", &["ENOENT"]);
    on_host(&["symlink", m, host.path().join("link").to_str().expect("UTF-8")], Path::new("/")).ok("symlink");
    in_sandbox(&d, &["symlink", "/root/secret", "/sandbox/link"]).denied_with("symlink", &["EACCES"]);
    in_sandbox(&d.clone().read_only("/root"), &["symlink", "/root/secret", "/sandbox/link"]).ok("symlink");

    // `..` stops at the sandbox's root. Control: the same climb on the host.
    in_sandbox(&d, &["dotdot", "40", m]).denied_with("dotdot", &["ENOENT"]);
    on_host(&["dotdot", "40", m], host.path()).ok("dotdot");
    in_sandbox(&d, &["read", "/sandbox/../root/secret"]).denied_with("read", &["EACCES"]);
    in_sandbox(&d.clone().read_only("/root"), &["read", "/sandbox/../root/secret"]).ok("read");

    // No descriptor beyond stdin/stdout/stderr reaches the sandbox. Control: one
    // inherited on the host is found.
    in_sandbox(&d, &["fds"]).denied_with("fds", &["EBADF"]);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3<'{m}'; exec '{}' fds", probe().display()))
        .output()
        .expect("sh");
    let o = Outcome {
        what: "host: sh -c 'exec 3<marker; probe fds'".into(),
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        workdir: None,
        _dir: None,
    };
    assert!(o.ok("fds").contains(&format!("3->{m}")), "{}", o.describe());
}

// ---- processes -------------------------------------------------------------------

#[test]
fn host_processes_are_invisible() {
    let d = default();
    let status = format!("/proc/{}/status", std::process::id());
    in_sandbox(&d, &["ps"]).denied_with("ps", &["ESRCH"]);
    in_sandbox(&d, &["read", &status]).denied_with("read", &["ENOENT"]);
    // Control: without the pid namespace the same sandbox sees the host's processes
    // (and without its user namespace, which cannot mount /proc without its own
    // pid namespace).
    let no_pidns = d.clone().lift(Lift::NoPidNamespace).lift(Lift::NoUserNamespace);
    in_sandbox(&no_pidns, &["ps"]).ok("ps");
    in_sandbox(&no_pidns, &["read", &status]).ok("read");
}

#[test]
fn ptrace_fails() {
    in_sandbox(&default(), &["ptrace"]).denied_with("ptrace", &["EPERM"]);
    // Control: seccomp alone stands in the way; with ptrace allowed, attaching to our
    // own child works.
    in_sandbox(&default().lift(Lift::Syscalls(&["ptrace"])), &["ptrace"]).ok("ptrace");
}

#[test]
fn setuid_binaries_do_not_give_uid_0() {
    let suid = ["setuid", "/usr/bin/probe-suid"];
    let detail = in_sandbox(&default(), &suid).denied_with("setuid", &["EPERM"]);
    assert!(detail.starts_with("euid=1000 "), "the setuid binary ran, without its privilege: {detail}");
    // no_new_privs is set twice: by the spec, and by Landlock's restrict_self. Each
    // alone holds; the control lifts both.
    let no_nnp = default().lift(Lift::NewPrivileges);
    in_sandbox(&no_nnp, &suid).denied_with("setuid", &["EPERM"]);
    in_sandbox(&default().lift(Lift::NoLandlock), &suid).denied_with("setuid", &["EPERM"]);
    let detail = in_sandbox(&no_nnp.lift(Lift::NoLandlock), &suid).ok("setuid");
    assert!(detail.starts_with("euid=0 uid=1000"), "{detail}");
}

#[test]
fn fork_bomb_is_contained_by_the_pids_limit() {
    let limit = default().profile().cgroup.pids_max;
    let mut host_during_bomb = Vec::new();
    let started = Instant::now();
    let (o, spawns) = host_keeps_working(|| {
        in_sandbox_watching(&default(), &["forkbomb", "5000", "1000"], &mut |line| {
            // The probe prints once its children are all alive, then holds them 1 s.
            if line.starts_with("forkbomb:") {
                host_during_bomb.push(Command::new("true").status().map(|s| s.success()).unwrap_or(false));
            }
        })
    });
    eprintln!("fork bomb under the default policy: {:?}", started.elapsed());
    let detail = o.denied_with("forkbomb", &["EAGAIN"]);
    let forks: u64 = detail.trim_end_matches(" forks").parse().expect("fork count");
    assert!(forks < limit && forks + 16 >= limit, "{forks} forks against a pids limit of {limit}: {}", o.describe());
    assert_eq!(host_during_bomb, [true], "the host spawns a process while the bomb holds its maximum");
    assert!(spawns > 0, "the host kept spawning processes during the run");
    // Control: a higher limit allows more forks than the default's limit.
    let higher = default().edit("pids: 4096", "pids: 8192");
    assert_eq!(in_sandbox(&higher, &["forkbomb", "5000", "0"]).ok("forkbomb"), "5000 forks");
}

#[test]
fn memory_exhaustion_is_contained() {
    let small = default().edit("memory: 4GiB", "memory: 64MiB");
    let (o, spawns) = host_keeps_working(|| in_sandbox(&small, &["oom", "256"]));
    assert_eq!((o.code, o.out.as_str()), (137, ""), "killed inside (SIGKILL) before finishing: {}", o.describe());
    assert!(spawns > 0);
    // Control: an allocation under the limit succeeds.
    assert_eq!(in_sandbox(&small, &["oom", "32"]).ok("oom"), "32 MiB allocated");

    // The default policy: 4 GiB.
    let limit_mib = default().profile().cgroup.memory_max >> 20;
    let started = Instant::now();
    let over = (limit_mib * 2).to_string();
    let (o, spawns) = host_keeps_working(|| in_sandbox(&default(), &["oom", &over]));
    eprintln!("OOM under the default policy ({limit_mib} MiB): {:?}", started.elapsed());
    assert_eq!((o.code, o.out.as_str()), (137, ""), "killed inside: {}", o.describe());
    assert!(spawns > 0);
    assert_eq!(in_sandbox(&default(), &["oom", "1024"]).ok("oom"), "1024 MiB allocated");
}

// ---- kernel attack surface ---------------------------------------------------------

#[test]
fn mount_fails() {
    let mount = ["mount"];
    in_sandbox(&default(), &mount).denied_with("mount", &["EPERM"]);
    // Three layers refuse a mount: seccomp, no CAP_SYS_ADMIN, and Landlock (any
    // domain refuses mounts). Lifting any two leaves it denied; lifting all three, a
    // tmpfs mounts in the sandbox's own mount namespace.
    let seccomp = Lift::Syscalls(&["mount"]);
    let cap = Lift::Caps(&["CAP_SYS_ADMIN"]);
    for (a, b) in [(&seccomp, &cap), (&seccomp, &Lift::NoLandlock), (&cap, &Lift::NoLandlock)] {
        in_sandbox(&default().lift(a.clone()).lift(b.clone()), &mount).denied_with("mount", &["EPERM"]);
    }
    in_sandbox(&default().lift(seccomp).lift(cap).lift(Lift::NoLandlock), &mount).ok("mount");
}

#[test]
fn user_namespaces_fail() {
    // The same clone filter lets threads and fork through.
    in_sandbox(&default(), &["thread"]).ok("thread");
    assert_eq!(in_sandbox(&default(), &["forkbomb", "4", "0"]).ok("forkbomb"), "4 forks");
    let lifted = default().lift(Lift::Syscalls(&["clone", "unshare"]));
    for how in ["unshare", "clone"] {
        in_sandbox(&default(), &["userns", how]).denied_with("userns", &["EPERM"]);
        // Control: seccomp's flag filter alone refuses it; the kernel lets uid 1000
        // make a user namespace.
        in_sandbox(&lifted, &["userns", how]).ok("userns");
    }
}

#[test]
fn kernel_modules_fail() {
    in_sandbox(&default(), &["module"]).denied_with("module", &["EPERM"]);
    // Control: with init_module allowed and CAP_SYS_MODULE, the garbage image reaches
    // the kernel (which refuses it; never a real module).
    let lifted = default().lift(Lift::Syscalls(&["init_module"])).lift(Lift::Caps(&["CAP_SYS_MODULE"]));
    let detail = in_sandbox(&lifted, &["module"]).ok("module");
    assert!(detail.starts_with("reached the kernel"), "{detail}");
}

#[test]
fn raw_and_packet_sockets_fail() {
    // The filter lets ordinary sockets through (with SOCK_NONBLOCK/SOCK_CLOEXEC).
    for kind in ["tcp", "udp6", "unix"] {
        in_sandbox(&default(), &["socket", kind]).ok("socket");
    }
    // Two layers refuse raw and packet sockets: seccomp and no CAP_NET_RAW. Each
    // alone holds; with both lifted they open (in the sandbox's own netns).
    let seccomp = Lift::Syscalls(&["socket"]);
    let cap = Lift::Caps(&["CAP_NET_RAW"]);
    for kind in ["raw", "raw6", "packet"] {
        in_sandbox(&default(), &["socket", kind]).denied_with("socket", &["EPERM"]);
        in_sandbox(&default().lift(seccomp.clone()), &["socket", kind]).denied_with("socket", &["EPERM"]);
        in_sandbox(&default().lift(cap.clone()), &["socket", kind]).denied_with("socket", &["EPERM"]);
        in_sandbox(&default().lift(seccomp.clone()).lift(cap.clone()), &["socket", kind]).ok("socket");
    }
}

#[test]
fn netlink_other_than_route_fails() {
    // The default policy allows NETLINK_ROUTE: the same call succeeds.
    in_sandbox(&default(), &["netlink", "ROUTE"]).ok("netlink");
    let lifted = default().lift(Lift::Syscalls(&["socket"]));
    for family in ["AUDIT", "SOCK_DIAG", "KOBJECT_UEVENT", "GENERIC", "NETFILTER", "XFRM"] {
        in_sandbox(&default(), &["netlink", family]).denied_with("netlink", &["EPERM"]);
        // Control: with socket() unfiltered, uid 1000 opens it in its netns.
        in_sandbox(&lifted, &["netlink", family]).ok("netlink");
    }
}

#[test]
fn io_uring_bpf_perf_and_keyctl_fail() {
    // (case, the control's lifts): seccomp alone, except bpf, which this kernel
    // (unprivileged_bpf_disabled) also keeps to CAP_BPF in the host's user namespace.
    let cases: [(&str, Vec<Lift>); 4] = [
        ("io_uring", vec![Lift::Syscalls(&["io_uring_setup"])]),
        ("bpf", vec![Lift::Syscalls(&["bpf"]), Lift::Caps(&["CAP_BPF"]), Lift::NoUserNamespace]),
        ("perf", vec![Lift::Syscalls(&["perf_event_open"])]),
        ("keyctl", vec![Lift::Syscalls(&["keyctl"])]),
    ];
    for (case, lifts) in cases {
        in_sandbox(&default(), &[case]).denied_with(case, &["EPERM"]);
        let lifted = lifts.into_iter().fold(default(), Variant::lift);
        in_sandbox(&lifted, &[case]).ok(case);
    }
}

#[test]
fn writing_proc_sys_and_sys_fails() {
    require_root();
    // Controls on the host: only root may write these (a sandbox never runs as uid 0);
    // the probe writes back the value it read, so nothing changes.
    for (case, path) in [("sysctl", "/proc/sys/vm/swappiness"), ("syswrite", "/sys/class/net/lo/mtu")] {
        in_sandbox(&default(), &[case, path]).denied_with(case, &["EACCES", "EROFS", "EPERM"]);
        on_host(&[case, path], Path::new("/")).ok(case);
    }
}

// ---- devices -----------------------------------------------------------------------

#[test]
fn only_the_usual_devices_are_reachable() {
    require_root();
    let d = default();
    let usual: BTreeSet<&str> = ["full", "null", "pts/ptmx", "random", "tty", "urandom", "zero"].into();
    // The policy does not list /dev itself: Landlock refuses to list it. Its content
    // is the runtime's, not Landlock's: listed with Landlock lifted, the usual only.
    in_sandbox(&d, &["lsdev"]).denied_with("lsdev", &["EACCES"]);
    let listed = in_sandbox(&d.clone().lift(Lift::NoLandlock), &["lsdev"]).ok("lsdev");
    let listed: BTreeSet<&str> = listed.split(',').collect();
    assert_eq!(listed, usual, "device nodes in the sandbox's /dev");
    // Control: the same walk on the host finds the host's other devices.
    let host = on_host(&["lsdev"], Path::new("/")).ok("lsdev");
    assert!(host.split(',').any(|n| !usual.contains(n)), "the host has devices outside the usual set: {host}");

    for dev in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/ptmx"] {
        in_sandbox(&d, &["opendev", dev]).ok("opendev");
    }
    // /dev/tty is allowed and reaches its driver, which has no terminal to give.
    in_sandbox(&d, &["opendev", "/dev/tty"]).denied_with("opendev", &["ENXIO"]);

    // Device nodes that come with the image (even a usual one) are not devices
    // there. Control: the same nodes, made on the host, open.
    let host_nodes = host_dir();
    make_devices(host_nodes.path());
    for &(name, ..) in IMAGE_DEVICES {
        in_sandbox(&d, &["opendev", &format!("/opt/dev/{name}")]).denied_with("opendev", &["EACCES", "EPERM"]);
        on_host(&["opendev", host_nodes.path().join(name).to_str().expect("UTF-8")], Path::new("/")).ok("opendev");
    }

    // mknod: no CAP_MKNOD, Landlock grants no make_char, and a user namespace never
    // makes device nodes. Control: all three lifted, a copy of /dev/null is made
    // (and removed) in /tmp.
    let mknod = ["mknod", "/tmp/null-copy", "1", "3"];
    in_sandbox(&d, &mknod).denied_with("mknod", &["EPERM", "EACCES"]);
    let lifted = d
        .clone()
        .lift(Lift::Caps(&["CAP_MKNOD"]))
        .lift(Lift::LandlockRights("/tmp", &["make_char"]))
        .lift(Lift::NoUserNamespace);
    in_sandbox(&lifted, &mknod).ok("mknod");
}
