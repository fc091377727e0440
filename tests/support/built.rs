//! A small image built by `openshell` from a signed test Debian archive served on
//! loopback (lock, fetch, build to an OCI layout and an archive), and the helpers
//! that run `openshell` against it. Shared by the registry and verify tests.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::debian_archive::{self, Pkg};
use super::server::Server;

/// stdout and stderr, for messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `openshell` with a home of its own (no Docker config unless the test writes one).
pub fn openshell(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_openshell"));
    c.current_dir(home)
        .env("HOME", home)
        .env_remove("DOCKER_CONFIG")
        .env_remove("OPENSHELL_STORE")
        .env_remove("OPENSHELL_LOG")
        .stdin(Stdio::null());
    c
}

pub fn run(c: &mut Command) -> Output {
    c.output().expect("run openshell")
}

/// Runs `c`, which must succeed.
pub fn ok(c: &mut Command) -> Output {
    let o = run(c);
    assert!(o.status.success(), "{c:?}: {}", text(&o));
    o
}

/// Runs `c` with `line` and a newline on its stdin (`--password-stdin`).
pub fn with_stdin_line(c: &mut Command, line: &str) -> Output {
    use std::io::Write;
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(format!("{line}\n").as_bytes()).expect("write");
    child.wait_with_output().expect("wait")
}

/// stdout as JSON.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The definition the registry tests push: a package and a plain file.
pub const REGISTRY_IMAGE: &str = "name: openshell/regtest\ndebian:\n  suites: [testing]\n  packages: [hello-openshell]\nfiles:\n  - path: /etc/motd\n    content: \"pushed\\n\"\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\ncmd: [/usr/bin/hello-openshell]\n";

/// A store holding one image built from a signed test archive (the lockfile
/// `t.lock`), its OCI layout at `oci/` and its archive at `t.tar`.
pub struct Built {
    dir: tempfile::TempDir,
    _server: Server,
    /// The Debian archive's URL (`--debian-mirror`).
    pub mirror: String,
    /// The image's manifest digest, as `build` printed it.
    pub manifest: String,
}

impl Built {
    /// The registry tests' image ([`REGISTRY_IMAGE`]).
    pub fn new() -> Built {
        Built::from_definition(REGISTRY_IMAGE)
    }

    /// Locks, fetches and builds `definition` (an image of the test archive's
    /// `hello-openshell` and `base-files`).
    pub fn from_definition(definition: &str) -> Built {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start();
        let work = dir.path().join("archive-build");
        std::fs::create_dir_all(&work).expect("mkdir");
        let pkgs = vec![
            Pkg {
                name: "hello-openshell",
                version: "1.0-1",
                arch: "amd64",
                fields: "Depends: base-files",
                files: vec![("/usr/bin/hello-openshell", b"#!/bin/sh\necho hello from a registry\n".to_vec(), 0o755)],
            },
            debian_archive::base_files(),
        ];
        let archive = debian_archive::serve(&server, &work, "testing", &pkgs);
        let p = dir.path();
        std::fs::write(p.join("image.yaml"), definition).expect("write definition");
        let store = p.join("store").display().to_string();
        let keyring = archive.keyring.display().to_string();
        ok(openshell(p).args(["lock", "image.yaml", "-o", "t.lock", "--debian-mirror", &archive.base]).args([
            "--keyring",
            &keyring,
            "--store",
            &store,
        ]));
        ok(openshell(p).args(["fetch", "t.lock", "--debian-mirror", &archive.base, "--store", &store]));
        let o = ok(openshell(p).args(["build", "t.lock", "-o", "oci", "--archive", "t.tar", "--store", &store]));
        let manifest = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        assert!(manifest.starts_with("sha256:"), "build prints the manifest digest: {}", text(&o));
        Built { dir, _server: server, mirror: archive.base.clone(), manifest }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> String {
        self.path().join("store").display().to_string()
    }

    /// The image's manifest, from its layout.
    pub fn manifest_json(&self) -> serde_json::Value {
        let path = self.path().join("oci/blobs/sha256").join(self.manifest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).expect("manifest")).expect("json")
    }

    /// Blobs of the image: config and layers (the layout also holds the manifest and
    /// the SBOM attached beside the image, which are not the image's blobs).
    pub fn blob_count(&self) -> usize {
        1 + self.manifest_json()["layers"].as_array().expect("layers").len()
    }

    pub fn largest_layer(&self) -> String {
        let m = self.manifest_json();
        let layers = m["layers"].as_array().expect("layers");
        let l = layers.iter().max_by_key(|l| l["size"].as_u64()).expect("a layer");
        l["digest"].as_str().expect("digest").to_owned()
    }
}
