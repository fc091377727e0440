//! What a machine needs before `cargo xtask quickstart` can build openshell and run
//! its main job, in one list: the C toolchain and libseccomp that building needs,
//! and every program openshell runs (the sandboxes quickstart's image is for
//! included). The check only looks at files, so it takes milliseconds; as root,
//! quickstart installs what is missing with apt-get, otherwise it stops at once
//! with the apt-get line to run. `cargo xtask prereqs` runs the check alone
//! (`--install` installs as quickstart does); `.ci/run` runs quickstart.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a prerequisite is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// An executable file of this name on `PATH` or in the sbin directories
    /// (root's tools are there, and openshell runs them as root).
    Program(&'static str),
    /// A non-empty regular file at this path.
    File(&'static str),
}

/// One prerequisite and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prereq {
    pub what: &'static str,
    pub probe: Probe,
    pub package: &'static str,
}

const fn program(what: &'static str, name: &'static str, package: &'static str) -> Prereq {
    Prereq { what, probe: Probe::Program(name), package }
}

const fn file(what: &'static str, path: &'static str, package: &'static str) -> Prereq {
    Prereq { what, probe: Probe::File(path), package }
}

/// Everything quickstart needs. Building: a C compiler and libc's headers and
/// start files (Rust links through `cc`), pkg-config and libseccomp's headers and
/// library (libcontainer links `-lseccomp`). Running: the CA bundle (downloads are
/// verified against the system roots), gpgv and the archive keyring (`openshell
/// lock` verifies Debian's InRelease),
/// `mkfs.ext4` and `mount` (a sandbox's disk quota), `useradd`/`usermod` and
/// `unshare` (the dedicated user whose subordinate ids a sandbox maps to, and the
/// user namespace holding them), `ps` (`openshell-runtime ps`).
pub const PREREQS: &[Prereq] = &[
    program("a C compiler (gcc)", "gcc", "gcc"),
    file("libc headers", "/usr/include/stdio.h", "libc6-dev"),
    program("pkg-config", "pkg-config", "pkg-config"),
    file("libseccomp headers", "/usr/include/seccomp.h", "libseccomp-dev"),
    file("the CA bundle", "/etc/ssl/certs/ca-certificates.crt", "ca-certificates"),
    program("gpgv", "gpgv", "gpgv"),
    file("Debian's archive keyring", "/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring"),
    program("mkfs.ext4", "mkfs.ext4", "e2fsprogs"),
    program("mount", "mount", "mount"),
    program("useradd", "useradd", "passwd"),
    program("unshare", "unshare", "util-linux"),
    program("ps", "ps", "procps"),
];

/// Searched after `PATH` for programs.
const SBIN: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

impl Prereq {
    /// Whether this machine has it (`path` is the `PATH` to search).
    pub fn present(&self, path: Option<&OsStr>) -> bool {
        match self.probe {
            Probe::File(p) => std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0),
            Probe::Program(name) => {
                let dirs = path.map(|p| std::env::split_paths(p).collect::<Vec<PathBuf>>()).unwrap_or_default();
                dirs.iter().map(PathBuf::as_path).chain(SBIN.iter().map(Path::new)).any(|d| executable(&d.join(name)))
            }
        }
    }
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The prerequisites this machine lacks.
pub fn missing(path: Option<&OsStr>) -> Vec<&'static Prereq> {
    PREREQS.iter().filter(|p| !p.present(path)).collect()
}

/// The packages that provide `missing`, sorted, each once.
pub fn packages(missing: &[&Prereq]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = missing.iter().map(|p| p.package).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The apt-get arguments that install `packages`.
pub fn install_args<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    args
}

/// Why the machine is not ready.
#[derive(Debug, thiserror::Error)]
pub enum PrereqError {
    #[error("{}", MissingReport(missing))]
    Missing { missing: Vec<&'static Prereq> },
    #[error("`apt-get {}` failed: {status}", args.join(" "))]
    Install { args: Vec<String>, status: std::process::ExitStatus },
    #[error("cannot run apt-get: {0} (install the packages above yourself)")]
    NoAptGet(#[source] std::io::Error),
    #[error("still missing after apt-get: {}", names(missing))]
    StillMissing { missing: Vec<&'static Prereq> },
}

fn names(missing: &[&Prereq]) -> String {
    missing.iter().map(|p| p.what).collect::<Vec<_>>().join(", ")
}

/// The report of what is missing, ending in the lines to run as root.
struct MissingReport<'a>(&'a [&'static Prereq]);

impl fmt::Display for MissingReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "this machine lacks {} of {} prerequisites:", self.0.len(), PREREQS.len())?;
        for p in self.0 {
            let found = match p.probe {
                Probe::Program(name) => format!("program `{name}`"),
                Probe::File(path) => path.to_owned(),
            };
            writeln!(f, "  {} ({found}): package {}", p.what, p.package)?;
        }
        writeln!(f, "as root (or with sudo), run:")?;
        writeln!(f, "  apt-get update")?;
        write!(f, "  apt-get {}", install_args(&packages(self.0)).join(" "))
    }
}

/// What to do about missing prerequisites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// Report them (with the apt-get line) and fail.
    Report,
    /// Install them when running as root; otherwise report and fail.
    InstallAsRoot,
}

/// Checks the machine; installs what is missing when asked to and able to.
pub fn ensure(on_missing: OnMissing) -> Result<(), PrereqError> {
    let path = std::env::var_os("PATH");
    let missing = missing(path.as_deref());
    if missing.is_empty() {
        eprintln!("xtask: prerequisites: all {} present", PREREQS.len());
        return Ok(());
    }
    if on_missing == OnMissing::Report || !is_root() {
        return Err(PrereqError::Missing { missing });
    }
    eprintln!("xtask: {}", MissingReport(&missing));
    apt_get(&["update"])?;
    apt_get(&install_args(&packages(&missing)))?;
    let still = self::missing(path.as_deref());
    if still.is_empty() { Ok(()) } else { Err(PrereqError::StillMissing { missing: still }) }
}

fn apt_get(args: &[&str]) -> Result<(), PrereqError> {
    eprintln!("xtask: $ apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(PrereqError::NoAptGet)?;
    if status.success() {
        Ok(())
    } else {
        Err(PrereqError::Install { args: args.iter().map(|a| (*a).to_owned()).collect(), status })
    }
}

/// Whether this process runs with effective uid 0 (from `/proc/self/status`:
/// xtask has no libc binding, and reading it needs no unsafe code).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid_line = status.lines().find_map(|l| l.strip_prefix("Uid:"));
    uid_line.and_then(|ids| ids.split_whitespace().nth(1)) == Some("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_sorted_once_and_the_line_is_apt_gets() {
        let pick = |names: &[&str]| -> Vec<&'static Prereq> {
            PREREQS.iter().filter(|p| names.contains(&p.package)).collect()
        };
        let m = pick(&["pkg-config", "libseccomp-dev", "gcc"]);
        assert_eq!(packages(&m), ["gcc", "libseccomp-dev", "pkg-config"]);
        assert_eq!(
            install_args(&packages(&m)).join(" "),
            "install -y --no-install-recommends gcc libseccomp-dev pkg-config"
        );
        let report = MissingReport(&m).to_string();
        assert!(
            report.ends_with("\n  apt-get install -y --no-install-recommends gcc libseccomp-dev pkg-config"),
            "{report}"
        );
    }

    #[test]
    fn programs_are_found_on_path_or_in_sbin() {
        let sh = program("sh", "sh", "dash");
        assert!(sh.present(Some(OsStr::new("/usr/bin:/bin"))));
        let nothing = program("none", "openshell-no-such-program", "none");
        assert!(!nothing.present(Some(OsStr::new("/usr/bin:/bin"))));
        let empty = file("empty", "/dev/null", "none");
        assert!(!empty.present(None), "a file must be regular and non-empty");
    }

    /// `.ci/run` installs through this check (quickstart's); where it still
    /// probes for something itself (the linker cargo needs before xtask builds, the
    /// test-only tools), a probe the check also makes names the same package.
    #[test]
    fn ci_agrees_with_the_check() {
        let run = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/run")).expect(".ci/run");
        assert!(run.contains("\ncargo xtask quickstart\n"), ".ci/run installs through quickstart's check");
        let mut probes = 0;
        for line in run.lines().map(str::trim).filter(|l| l.contains("|| need_pkgs+=(")) {
            let (probe, rest) = line.split_once("||").expect("probe || need_pkgs");
            let package = rest.trim().trim_start_matches("need_pkgs+=(").trim_end_matches(')');
            let ours = PREREQS.iter().find(|p| match p.probe {
                Probe::Program(name) => probe.contains(&format!("command -v {name} ")),
                Probe::File(path) => probe.contains(&format!(" {path} ")),
            });
            if let Some(p) = ours {
                assert_eq!(package, p.package, "`{line}` and the check name different packages");
                probes += 1;
            }
        }
        assert!(probes > 0, "the bootstrap (gcc) is probed by both");
    }
}
