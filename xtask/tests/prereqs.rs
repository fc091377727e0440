//! `cargo xtask prereqs` on a machine that lacks packages: their files are hidden in
//! a private mount namespace (an empty file bound over each), and the check runs as
//! an unprivileged uid, so it must print the apt-get line rather than install. The
//! positive control runs it with nothing hidden. Needs root (CI runs as root), and
//! util-linux's `unshare` and `setpriv`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn require_root_and_util_linux() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1));
    assert_eq!(euid, Some("0"), "this test makes a mount namespace: run it as root (CI does)");
    for tool in ["unshare", "setpriv"] {
        let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(ok, "`{tool}` is missing: install the Debian package util-linux");
    }
}

/// Every place the check could find `name` (PATH of an unprivileged user, then sbin).
fn program_paths(name: &str) -> Vec<PathBuf> {
    let dirs = USER_PATH.split(':').chain(["/usr/local/sbin", "/usr/sbin", "/sbin"]);
    let mut found: Vec<PathBuf> =
        dirs.map(|d| Path::new(d).join(name)).filter(|p| p.is_file()).filter_map(|p| p.canonicalize().ok()).collect();
    found.sort();
    found.dedup();
    assert!(!found.is_empty(), "`{name}` is not installed here: the positive control needs it (.ci/run installs it)");
    found
}

/// `xtask prereqs` as uid 65534 in a mount namespace where `hidden` are empty files.
fn check_as_nobody(hidden: &[PathBuf]) -> (Output, Duration) {
    let dir = std::env::temp_dir().join(format!("xtask-prereqs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").expect("empty file");
    let script = r#"empty=$1; xtask=$2; shift 2
for f in "$@"; do mount --bind "$empty" "$f"; done
exec setpriv --reuid 65534 --regid 65534 --clear-groups "$xtask" prereqs"#;
    let start = Instant::now();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-euc", script, "sh"])
        .arg(&empty)
        .arg(XTASK)
        .args(hidden)
        .env_clear()
        .env("PATH", USER_PATH)
        .current_dir("/")
        .output()
        .expect("unshare");
    let took = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    (out, took)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn missing_packages_give_the_exact_apt_get_line() {
    require_root_and_util_linux();
    // Positive control: nothing hidden, everything present.
    let (o, took) = check_as_nobody(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("prerequisites: all"), "{}", text(&o));
    assert!(took < Duration::from_secs(5), "the check takes seconds at most: {took:?}");

    let mut hidden = vec![PathBuf::from("/usr/include/seccomp.h")];
    for name in ["pkg-config", "useradd", "mkfs.ext4"] {
        hidden.extend(program_paths(name));
    }
    let (o, took) = check_as_nobody(&hidden);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.lines()
            .any(|l| l == "  apt-get install -y --no-install-recommends e2fsprogs libseccomp-dev passwd pkg-config"),
        "the exact line: {t}"
    );
    assert!(t.contains("  apt-get update\n"), "{t}");
    for what in ["libseccomp headers (/usr/include/seccomp.h)", "program `pkg-config`", "program `useradd`"] {
        assert!(t.contains(what), "names {what}: {t}");
    }
    assert!(!t.contains("$ apt-get"), "an unprivileged check installs nothing: {t}");
    assert!(took < Duration::from_secs(5), "stops at once: {took:?}");
}
