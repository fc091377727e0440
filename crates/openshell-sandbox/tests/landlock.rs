//! Landlock from a policy, applied to a thread: what the policy lists is reachable
//! with its rights, everything else is not. Every denial has a positive control:
//! the same operation succeeds in an unrestricted thread.

use std::path::Path;

use openshell_policy::{KernelProfile, load_str};
use openshell_sandbox::landlock::{LandlockReport, apply};

/// Runs `f` in a new thread restricted by `policy` (Landlock restricts only the
/// calling thread and what it executes).
fn restricted<T: Send + 'static>(policy: &str, f: impl FnOnce() -> T + Send + 'static) -> (LandlockReport, T) {
    let policy = load_str("test.yaml", policy).unwrap_or_else(|e| panic!("{e}"));
    let profile = KernelProfile::compile(&policy, "/nonexistent-workdir").landlock;
    std::thread::spawn(move || {
        let report = apply(&profile).unwrap_or_else(|e| panic!("{e}"));
        (report, f())
    })
    .join()
    .expect("thread")
}

fn write(p: &Path) -> bool {
    std::fs::write(p, b"x").is_ok()
}

fn read(p: &Path) -> bool {
    std::fs::read(p).is_ok()
}

#[test]
fn policy_paths_and_only_those() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_owned();
    for d in ["ro", "rw", "secret"] {
        std::fs::create_dir(base.join(d)).expect("mkdir");
        std::fs::write(base.join(d).join("file"), b"data").expect("write");
    }
    let policy = format!(
        "version: 1\nlandlock: {{compatibility: hard_requirement}}\nfilesystem_policy:\n  include_workdir: true\n  read_only: [{0}/ro, /does/not/exist]\n  read_write: [{0}/rw]\n",
        base.display()
    );
    let b = base.clone();
    let (report, results) = restricted(&policy, move || {
        [
            ("read ro", read(&b.join("ro/file"))),
            ("write ro", write(&b.join("ro/file"))),
            ("create in ro", write(&b.join("ro/new"))),
            ("read rw", read(&b.join("rw/file"))),
            ("write rw", write(&b.join("rw/file"))),
            ("create in rw", write(&b.join("rw/new"))),
            ("read secret", read(&b.join("secret/file"))),
            ("write secret", write(&b.join("secret/file"))),
            ("read /etc/hostname", read(Path::new("/etc/hostname"))),
        ]
    });
    assert_eq!(report.status, "fully enforced");
    assert!(report.skipped.iter().any(|(p, _)| p == "/does/not/exist"), "missing paths are skipped: {report:?}");
    let want = [
        ("read ro", true),
        ("write ro", false),
        ("create in ro", false),
        ("read rw", true),
        ("write rw", true),
        ("create in rw", true),
        ("read secret", false),
        ("write secret", false),
        ("read /etc/hostname", false),
    ];
    assert_eq!(results, want);
    // Positive controls: without Landlock every one of these succeeds.
    assert!(read(&base.join("secret/file")) && write(&base.join("secret/file")) && write(&base.join("ro/file")));
}

#[test]
fn hard_requirement_with_no_usable_path_refuses() {
    let policy = "version: 1\nlandlock: {compatibility: hard_requirement}\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/does/not/exist]\n";
    let policy = load_str("t.yaml", policy).unwrap_or_else(|e| panic!("{e}"));
    let profile = KernelProfile::compile(&policy, "/sandbox").landlock;
    let e = std::thread::spawn(move || apply(&profile)).join().expect("thread").expect_err("no paths");
    assert!(e.to_string().contains("none of the policy's paths could be applied"), "{e}");
}

#[test]
fn a_profile_that_handles_no_right_applies_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, b"data").expect("write");
    let policy = "version: 1\nlandlock: {compatibility: hard_requirement}\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/usr]\n";
    let policy = load_str("t.yaml", policy).unwrap_or_else(|e| panic!("{e}"));
    let mut profile = KernelProfile::compile(&policy, "/sandbox").landlock;
    // As compiled, the file (not listed) is out of reach.
    let (p, f) = (profile.clone(), file.clone());
    let (report, readable) =
        std::thread::spawn(move || (apply(&p).unwrap_or_else(|e| panic!("{e}")), read(&f))).join().expect("thread");
    assert_eq!((report.status, readable), ("fully enforced", false));
    // Handling nothing: no domain, the same read succeeds.
    profile.handled.clear();
    let (report, readable) =
        std::thread::spawn(move || (apply(&profile).unwrap_or_else(|e| panic!("{e}")), read(&file)))
            .join()
            .expect("thread");
    assert_eq!((report.status, readable, report.applied.len()), ("not enforced", true, 0));
}
