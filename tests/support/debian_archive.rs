//! A tiny signed Debian archive built by the test: .debs made with dpkg-deb, a
//! Packages index, and an InRelease file clearsigned with a throwaway key.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::gpg::Key;
use super::server::Server;

/// One package to build.
pub struct Pkg {
    pub name: &'static str,
    pub version: &'static str,
    pub arch: &'static str,
    /// Extra control fields (`Depends: x`), one per line.
    pub fields: &'static str,
    /// Files: (path in the package, content, mode).
    pub files: Vec<(&'static str, Vec<u8>, u32)>,
}

/// Debian's `base-files`, reduced to `/etc/debian_version`: what a test image's
/// packages depend on.
pub fn base_files() -> Pkg {
    Pkg {
        name: "base-files",
        version: "13",
        arch: "amd64",
        fields: "Essential: yes",
        files: vec![("/etc/debian_version", b"13\n".to_vec(), 0o644)],
    }
}

fn sha256_hex(data: &[u8]) -> String {
    openshell_store::Digest::sha256(data).hex()
}

/// Builds a .deb with dpkg-deb and returns its bytes.
pub fn build_deb(work: &Path, p: &Pkg) -> Vec<u8> {
    let root = work.join(format!("{}_{}", p.name, p.version));
    std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <test@example.com>\nDescription: test package {}\n",
        p.name, p.version, p.arch, p.name
    );
    for line in p.fields.lines().filter(|l| !l.trim().is_empty()) {
        control.push_str(line.trim());
        control.push('\n');
    }
    std::fs::write(root.join("DEBIAN/control"), control).expect("control");
    for (path, content, mode) in &p.files {
        let dest = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::write(&dest, content).expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    let out = work.join(format!("{}_{}_{}.deb", p.name, p.version, p.arch));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&out)
        .output()
        .expect("dpkg-deb is not installed: install the dpkg package");
    assert!(status.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&status.stderr));
    std::fs::read(&out).expect("read deb")
}

/// A served archive: `base` is the mirror URL, `keyring` verifies it.
pub struct Archive {
    pub base: String,
    pub keyring: PathBuf,
    pub key: Key,
    pub release: String,
    pub packages: String,
    pub debs: Vec<(String, Vec<u8>)>,
}

/// Builds and serves `pkgs` as suite `suite`, component `main`, at `<server>/debian/`.
pub fn serve(server: &Server, work: &Path, suite: &str, pkgs: &[Pkg]) -> Archive {
    let key = Key::new("openshell test archive <archive@example.com>");
    let keyring = key.keyring(work, "archive-keyring.gpg");
    let mut packages = String::new();
    let mut debs = Vec::new();
    for p in pkgs {
        let deb = build_deb(work, p);
        let pool = format!("pool/main/{}/{}/{}_{}_{}.deb", &p.name[..1], p.name, p.name, p.version, p.arch);
        packages.push_str(&format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <test@example.com>\n",
            p.name, p.version, p.arch
        ));
        for line in p.fields.lines().filter(|l| !l.trim().is_empty()) {
            packages.push_str(line.trim());
            packages.push('\n');
        }
        packages.push_str(&format!(
            "Filename: {pool}\nSize: {}\nSHA256: {}\nDescription: test package {}\n\n",
            deb.len(),
            sha256_hex(&deb),
            p.name
        ));
        server.add(&format!("debian/{pool}"), deb.clone(), "application/vnd.debian.binary-package");
        debs.push((pool, deb));
    }
    let release = format!(
        "Origin: openshell-test\nLabel: openshell-test\nSuite: {suite}\nCodename: {suite}\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages\n",
        sha256_hex(packages.as_bytes()),
        packages.len()
    );
    server.add(
        &format!("debian/dists/{suite}/main/binary-amd64/Packages"),
        packages.clone().into_bytes(),
        "text/plain",
    );
    server.add(&format!("debian/dists/{suite}/InRelease"), key.clearsign(release.as_bytes()), "text/plain");
    Archive { base: server.url("debian/"), keyring, key, release, packages, debs }
}
