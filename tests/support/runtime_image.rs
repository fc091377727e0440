//! The image and binary the runtime's engine tests share (dockerd, containerd):
//! a static probe (`tests/fixtures/runtime-probe.c`) in an image built by
//! `openshell lock` + `openshell build`, and `openshell-runtime` built beside
//! `openshell`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

pub const PROBE: &str = include_str!("../fixtures/runtime-probe.c");
pub const IMAGE: &str = "openshell/runtime-e2e:1";

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn require(tool: &str, package: &str) {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`{tool}` is not installed: install the Debian package `{package}` (.ci/run does)");
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// The runtime binary: built by Cargo into the same directory as `openshell`
/// (another package's binary, so Cargo gives no `CARGO_BIN_EXE_` for it).
pub fn runtime_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_openshell")).with_file_name("openshell-runtime");
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!(
            "{} is missing: build it with `cargo build -p openshell-runtime` (`cargo nextest run --workspace` does)",
            path.display()
        )
    });
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["openshell-runtime/src", "openshell-sandbox/src", "openshell-policy/src"] {
        assert!(
            newest_mtime(&sources.join(krate)) <= built,
            "{} is older than crates/{krate}: rebuild it with `cargo build -p openshell-runtime`",
            path.display()
        );
    }
    path
}

/// Builds the probe image with `openshell lock` + `openshell build`; returns the archive.
pub fn build_image(dir: &Path) -> PathBuf {
    build_probe_image(dir, "runtime-e2e", "[/probe, hello]").archive
}

/// An image built by `openshell build`: its `docker load` archive and manifest digest.
pub struct ProbeImage {
    pub archive: PathBuf,
    pub manifest: String,
}

/// Compiles `source` (C) into the static binary `out`.
fn gcc_static(source: &str, out: &Path) {
    gcc_static_with(source, out, &[], "libc6-dev");
}

/// Compiles `source` (C) into the static binary `out`, linked with `libs`
/// (`-l...`), whose static libraries the Debian package `package` installs.
fn gcc_static_with(source: &str, out: &Path, libs: &[&str], package: &str) {
    let src = out.with_extension("c");
    std::fs::write(&src, source).expect("write the C source");
    let o = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(out)
        .arg(&src)
        .args(libs)
        .output()
        .expect("gcc is not installed: install gcc and libc6-dev");
    assert!(o.status.success(), "gcc -static failed (install {package}): {}", String::from_utf8_lossy(&o.stderr));
}

/// Builds `openshell/NAME:1`: the probe, and the static HTTPS client
/// (`tests/fixtures/tls-probe.c`, OpenSSL) as `/tls-probe`; no system roots.
#[allow(dead_code)]
pub fn build_tls_image(dir: &Path, name: &str) -> ProbeImage {
    let work = dir.join(name);
    std::fs::create_dir_all(&work).expect("mkdir");
    let libs = ["-lssl", "-lcrypto", "-pthread"];
    gcc_static_with(include_str!("../fixtures/tls-probe.c"), &work.join("tls-probe"), &libs, "libssl-dev");
    let files = "  - { path: /tls-probe, source: tls-probe, mode: \"0755\" }\n";
    build_with(dir, name, "cmd: [/probe, serve]\n", files)
}

/// Builds `openshell/NAME:1` holding the static probe (and `/data/secret`), whose
/// command is `cmd` (a YAML flow sequence), under `dir/NAME`.
pub fn build_probe_image(dir: &Path, name: &str, cmd: &str) -> ProbeImage {
    build_with(dir, name, &format!("cmd: {cmd}\n"), "")
}

/// Builds `openshell/NAME:1` for the isolation suite in a container: the runtime
/// probe also as `/usr/bin/runtime-probe` (its command: `runtime-probe serve`, under
/// /usr, which the default policy lets execute), and the isolation suite's probe
/// (`tests/fixtures/isolation/probe.c`) as `/usr/bin/probe` and setuid-root as
/// `/usr/bin/probe-suid`, beside a root-only `/root/secret`, as the suite expects.
pub fn build_isolation_image(dir: &Path, name: &str) -> ProbeImage {
    let work = dir.join(name);
    std::fs::create_dir_all(&work).expect("mkdir");
    gcc_static(include_str!("../fixtures/isolation/probe.c"), &work.join("iprobe"));
    let files = "  - { path: /usr/bin/runtime-probe, source: probe, mode: \"0755\" }\n  - { path: /usr/bin/probe, source: iprobe, mode: \"0755\" }\n  - { path: /usr/bin/probe-suid, source: iprobe, mode: \"4755\" }\n  - { path: /root/secret, content: \"image secret\\n\", mode: \"0644\" }\n";
    build_with(dir, name, "cmd: [/usr/bin/runtime-probe, serve]\nworkdir: /sandbox\nenv:\n  PATH: /usr/bin\n", files)
}

fn build_with(dir: &Path, name: &str, config: &str, files: &str) -> ProbeImage {
    let work = dir.join(name);
    std::fs::create_dir_all(&work).expect("mkdir");
    gcc_static(PROBE, &work.join("probe"));
    std::fs::write(
        work.join("image.yaml"),
        format!("name: openshell/{name}\ntag: \"1\"\nfiles:\n  - path: /probe\n    source: probe\n    mode: \"0755\"\n  - path: /data/secret\n    content: \"s3cret\\n\"\n{files}user: {{ name: sandbox, uid: 1000, gid: 1000, home: /sandbox }}\n{config}"),
    )
    .expect("image.yaml");
    let store = work.join("store").display().to_string();
    let mut manifest = String::new();
    for args in [
        vec!["lock", "image.yaml", "-o", "e2e.lock", "--store", &store],
        vec!["build", "e2e.lock", "--archive", "image.tar", "--store", &store],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_openshell"))
            .args(&args)
            .current_dir(&work)
            .env_remove("OPENSHELL_STORE")
            .env("HOME", &work)
            .output()
            .expect("run openshell");
        assert!(o.status.success(), "openshell {args:?}: {}", text(&o));
        manifest = stdout(&o).trim().to_owned();
    }
    ProbeImage { archive: work.join("image.tar"), manifest }
}
