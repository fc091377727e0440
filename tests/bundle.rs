//! End-to-end: `openshell key generate` and `openshell bundle create|verify|install`.
//! A small image is locked and fetched from a signed test archive served on
//! loopback; its bundle is checked against GNU tar, openssl and skopeo, installed
//! and rebuilt inside a network namespace with no network at all, and attacked:
//! every tampering is refused by name and installs nothing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::Digest as _;
use support::built::{self, Built, json, ok, text};

fn require_tool(tool: &str, args: &[&str], package: &str) {
    let ok = Command::new(tool).args(args).output().is_ok_and(|o| o.status.success());
    assert!(ok, "`{tool}` is not usable: install the Debian package `{package}` (.ci/run does)");
}

/// `openshell` in `dir`, with no signing key from the environment.
fn openshell(dir: &Path) -> Command {
    let mut c = built::openshell(dir);
    c.env_remove("OPENSHELL_BUNDLE_KEY");
    c
}

/// `openshell` inside a new network namespace: no interface but a downed `lo`.
fn offline(dir: &Path) -> Command {
    require_tool("unshare", &["--version"], "util-linux");
    let mut c = Command::new("unshare");
    c.current_dir(dir).arg("--net").arg(env!("CARGO_BIN_EXE_openshell"));
    c.env_remove("OPENSHELL_BUNDLE_KEY").env_remove("OPENSHELL_STORE").stdin(Stdio::null());
    c
}

fn sha256(path: &Path) -> String {
    hex(&sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The image the bundles carry.
const SITE_IMAGE: &str = "name: openshell/site\ntag: \"7\"\ndebian:\n  suites: [testing]\n  packages: [hello-openshell]\nfiles:\n  - path: /etc/motd\n    content: \"air-gapped\\n\"\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\ncmd: [/usr/bin/hello-openshell]\n";

/// A store with one built lockfile (`t.lock`) of a two-package image, and a
/// signing key pair (`key`, `key.pub`).
struct Site {
    built: Built,
    store: String,
}

impl Site {
    fn new() -> Site {
        let built = Built::from_definition(SITE_IMAGE);
        let o = ok(openshell(built.path()).args(["--output", "json", "key", "generate", "-o", "key"]));
        assert_eq!(json(&o)["public"], "key.pub");
        Site { store: built.store(), built }
    }

    fn path(&self) -> &Path {
        self.built.path()
    }

    /// Creates `name` without binaries: returns its JSON report.
    fn small_bundle(&self, name: &str) -> serde_json::Value {
        let o = ok(openshell(self.path())
            .args(["--output", "json", "bundle", "create", "t.lock", "-o", name, "--key", "key", "--no-binaries"])
            .args(["--store", &self.store]));
        json(&o)
    }
}

/// One member of a bundle as the test reads the tar: where its header and data
/// are.
#[derive(Debug, Clone)]
struct Chunk {
    name: String,
    header: usize,
    data: usize,
    size: usize,
}

impl Chunk {
    /// Header, data and padding.
    fn end(&self) -> usize {
        self.data + self.size.div_ceil(512) * 512
    }
}

/// The members of a tar, read here independently of openshell.
fn chunks(bytes: &[u8]) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() && bytes[at..at + 512].iter().any(|&b| b != 0) {
        let h = tar::Header::from_byte_slice(&bytes[at..at + 512]);
        let name = h.path().expect("path").to_string_lossy().into_owned();
        let size = h.size().expect("size") as usize;
        let c = Chunk { name, header: at, data: at + 512, size };
        at = c.end();
        out.push(c);
    }
    out
}

fn find<'c>(chunks: &'c [Chunk], prefix: &str) -> &'c Chunk {
    chunks.iter().find(|c| c.name.starts_with(prefix)).unwrap_or_else(|| panic!("no member {prefix}*"))
}

/// Everything a store, lockfile dir and bin dir hold (files, recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn a_bundle_installs_and_rebuilds_offline_with_the_same_digest() {
    require_tool("openssl", &["version"], "openssl");
    require_tool("skopeo", &["--version"], "skopeo");
    let site = Site::new();
    let p = site.path();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p.join("key")).expect("key").permissions()) & 0o777,
        0o600
    );
    let o = ok(openshell(p).env("OPENSHELL_BUNDLE_KEY", p.join("key")).args([
        "--output",
        "json",
        "bundle",
        "create",
        "t.lock",
        "-o",
        "site.bundle",
        "--store",
        &site.store,
    ]));
    let created = json(&o);
    let manifest = created["images"][0]["manifest"].as_str().expect("manifest").to_owned();
    assert_eq!(created["images"][0]["reference"], "openshell/site:7");
    assert_eq!(created["sha256"].as_str(), Some(sha256(&p.join("site.bundle")).as_str()));

    // GNU tar reads it; the extracted index lists every file with its sha256, and
    // openssl verifies the signature with the public key.
    let x = p.join("x");
    std::fs::create_dir_all(&x).expect("mkdir");
    ok(Command::new("tar").arg("-xf").arg(p.join("site.bundle")).arg("-C").arg(&x));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("openshell-bundle.json")).expect("index")).expect("json");
    let members = index["members"].as_array().expect("members");
    for m in members {
        let path = x.join(m["path"].as_str().expect("path"));
        assert_eq!(Some(sha256(&path).as_str()), m["sha256"].as_str(), "{}", path.display());
    }
    let kinds: Vec<&str> = members.iter().filter_map(|m| m["kind"].as_str()).collect();
    for kind in ["store-blob", "lockfile", "image", "sbom", "binary"] {
        assert!(kinds.contains(&kind), "no {kind} member: {kinds:?}");
    }
    ok(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(p.join("key.pub"))
        .arg("-rawin")
        .arg("-in")
        .arg(x.join("openshell-bundle.json"))
        .arg("-sigfile")
        .arg(x.join("openshell-bundle.json.sig")));
    // The bundled layout is one skopeo reads, and it names the built image.
    let o = ok(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:7", x.join("images/t").display())));
    assert!(text(&o).contains("\"Architecture\": \"amd64\""), "{}", text(&o));
    assert_eq!(sha256(&x.join("bin/openshell")), sha256(Path::new(env!("CARGO_BIN_EXE_openshell"))));

    let o = ok(openshell(p).args(["bundle", "verify", "site.bundle", "--trust", "key.pub"]));
    assert!(text(&o).contains("good"), "{}", text(&o));

    // Offline: install into an empty store, then rebuild from the installed
    // lockfile; the digest is the bundled one.
    let offline_store = p.join("offline/store").display().to_string();
    let o = ok(offline(p).args(["--output", "json", "bundle", "install", "site.bundle", "--trust", "key.pub"]).args([
        "--store",
        &offline_store,
        "--bin-dir",
        "offline/bin",
        "--lockfile-dir",
        "offline/locks",
    ]));
    let installed = json(&o);
    assert_eq!(installed["images"][0], "openshell/site:7", "{installed}");
    assert_eq!(sha256(&p.join("offline/bin/openshell-runtime")), sha256(&x.join("bin/openshell-runtime")));
    let o = ok(offline(p).args(["--output", "json", "image", "ls", "--store", &offline_store]));
    assert!(text(&o).contains(&manifest), "{}", text(&o));
    let o = ok(offline(p).args(["--output", "json", "build", "offline/locks/t.lock", "--store", &offline_store]));
    assert_eq!(json(&o)["manifest"].as_str(), Some(manifest.as_str()), "the offline rebuild differs");
    assert_eq!(json(&o)["cached"], false, "the rebuild must build, not reuse a record");
    assert!(p.join("offline/locks/t.spdx.json").is_file());
}

/// The ways a bundle can be altered, each with the member or part it must name.
fn tamperings(bundle: &[u8]) -> Vec<(&'static str, Vec<u8>, String)> {
    let cs = chunks(bundle);
    let blob = find(&cs, "store/blobs/").clone();
    let layer_blob = cs.iter().filter(|c| c.name.starts_with("images/")).max_by_key(|c| c.size).expect("layer");
    let lock = find(&cs, "lockfiles/").clone();
    let index = find(&cs, "openshell-bundle.json").clone();
    let last = cs.last().expect("members").clone();
    let flip = |at: usize| {
        let mut b = bundle.to_vec();
        b[at] ^= 0x01;
        b
    };
    let without = |c: &Chunk| [&bundle[..c.header], &bundle[c.end()..]].concat();
    let mut out = vec![
        ("a flipped content byte", flip(blob.data + blob.size / 2), blob.name.clone()),
        ("a flipped layer byte", flip(layer_blob.data + 7), layer_blob.name.clone()),
        ("a flipped index byte", flip(index.data + 10), "signature does not verify".into()),
        ("a changed header (mode)", flip(lock.header + 102), lock.name.clone()),
        ("removed member", without(&blob), blob.name.clone()),
        ("no signature", without(find(&cs, "openshell-bundle.json.sig")), "unsigned".into()),
    ];
    if !lock.size.is_multiple_of(512) {
        out.push(("a padding byte", flip(lock.data + lock.size), lock.name.clone()));
    }
    // An added member after the last listed one (a copy of the lockfile, renamed).
    let mut extra = bundle[lock.header..lock.end()].to_vec();
    let mut h = tar::Header::from_byte_slice(&extra[..512]).clone();
    h.set_path("lockfiles/extra.lock").expect("path");
    h.set_cksum();
    extra[..512].copy_from_slice(h.as_bytes());
    out.push((
        "an added member",
        [&bundle[..last.end()], &extra[..], &bundle[last.end()..]].concat(),
        "extra.lock".into(),
    ));
    // Bytes after the end, and a changed end block.
    out.push(("appended bytes", [bundle, b"#!/bin/sh\n"].concat(), "follow the end".into()));
    out.push(("a changed end block", flip(last.end() + 512 + 100), "end of the archive".into()));
    out
}

#[test]
fn altered_unsigned_or_wrongly_signed_bundles_are_refused_and_install_nothing() {
    let site = Site::new();
    let p = site.path();
    site.small_bundle("good.bundle");
    let good = std::fs::read(p.join("good.bundle")).expect("read");
    // Positive control: the bundle as written verifies and installs.
    ok(openshell(p).args(["bundle", "verify", "good.bundle", "--trust", "key.pub"]));
    let control = p.join("control");
    ok(openshell(p)
        .args(["bundle", "install", "good.bundle", "--trust", "key.pub", "--no-binaries"])
        .arg("--store")
        .arg(control.join("store"))
        .arg("--lockfile-dir")
        .arg(control.join("locks")));
    assert!(!files_under(&control.join("store/blobs")).is_empty(), "the control installed nothing");

    // A flipped byte anywhere: 600 places spread over the whole file, each header
    // block among them, read by the library with the trusted key.
    let trusted = openshell_bundle::TrustedKey::load(&p.join("key.pub")).expect("key");
    let name = Path::new("good.bundle");
    let read = |bytes: &[u8]| openshell_bundle::read(name, bytes, &trusted, &mut openshell_bundle::Discard);
    read(&good).expect("the bundle as written reads");
    let headers = chunks(&good).into_iter().map(|c| c.header + 42);
    for at in (0..good.len()).step_by(good.len().div_ceil(600)).chain(headers) {
        let mut bad = good.clone();
        bad[at] ^= 0x80;
        assert!(read(&bad).is_err(), "a flipped byte at {at} of {} went unnoticed", good.len());
    }

    let mut cases = tamperings(&good);
    // Signed, but by another key.
    ok(openshell(p).args(["key", "generate", "-o", "other"]));
    cases.push(("another signer", good.clone(), "signature does not verify".into()));
    for (what, bytes, named) in cases {
        let bundle = p.join("bad.bundle");
        std::fs::write(&bundle, &bytes).expect("write");
        let trust = if what == "another signer" { "other.pub" } else { "key.pub" };
        let o = openshell(p).args(["bundle", "verify", "bad.bundle", "--trust", trust]).output().expect("verify");
        eprintln!("{what}: {}", text(&o).trim());
        assert_eq!(o.status.code(), Some(1), "{what}: verify must fail: {}", text(&o));
        assert!(text(&o).contains(&named), "{what}: the error must name `{named}`: {}", text(&o));
        let target = p.join("target");
        let o = openshell(p)
            .args(["bundle", "install", "bad.bundle", "--trust", trust])
            .arg("--store")
            .arg(target.join("store"))
            .arg("--bin-dir")
            .arg(target.join("bin"))
            .arg("--lockfile-dir")
            .arg(target.join("locks"))
            .output()
            .expect("install");
        assert_eq!(o.status.code(), Some(1), "{what}: install must fail: {}", text(&o));
        let left: Vec<PathBuf> = ["store/blobs", "store/images", "store/tmp", "bin", "locks"]
            .iter()
            .flat_map(|d| files_under(&target.join(d)))
            .collect();
        assert!(left.is_empty(), "{what}: a refused install left {left:?}");
    }
}

#[test]
fn bad_inputs_are_named() {
    let site = Site::new();
    let p = site.path();
    let store = site.store.as_str();
    let fails = |args: &[&str], code: i32, named: &str| {
        let o = openshell(p).args(args).output().expect("run");
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(named), "{args:?} must name `{named}`: {}", text(&o));
    };
    fails(&["bundle", "create", "t.lock", "-o", "b", "--no-binaries", "--store", store], 2, "OPENSHELL_BUNDLE_KEY");
    fails(&["key", "generate", "-o", "key"], 2, "refusing to overwrite");
    std::fs::set_permissions(p.join("key"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    fails(
        &["bundle", "create", "t.lock", "-o", "b", "--key", "key", "--no-binaries", "--store", store],
        2,
        "chmod 600",
    );
    std::fs::set_permissions(p.join("key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    fails(
        &["bundle", "create", "nope.lock", "-o", "b", "--key", "key", "--no-binaries", "--store", store],
        2,
        "nope.lock",
    );
    let empty = p.join("empty-store").display().to_string();
    fails(
        &["bundle", "create", "t.lock", "-o", "b", "--key", "key", "--no-binaries", "--store", &empty],
        2,
        "openshell fetch t.lock",
    );
    fails(
        &[
            "bundle",
            "create",
            "t.lock",
            "-o",
            "b",
            "--key",
            "key",
            "--runtime-binary",
            "/nonexistent",
            "--store",
            store,
        ],
        2,
        "/nonexistent",
    );
    std::fs::write(p.join("garbage.pub"), "not a key\n").expect("write");
    site.small_bundle("good.bundle");
    fails(&["bundle", "verify", "good.bundle", "--trust", "garbage.pub"], 2, "garbage.pub");
    fails(&["bundle", "verify", "t.lock", "--trust", "key.pub"], 1, "not a bundle");
    assert!(!p.join("b").exists(), "a refused create wrote its output");
}

#[test]
fn an_installed_bundle_loads_into_docker() {
    let ready = Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success());
    assert!(ready, "dockerd is not running: install `docker.io` and start dockerd (.ci/run does)");
    let site = Site::new();
    let p = site.path();
    site.small_bundle("site.bundle");
    let target = p.join("t");
    let o = ok(openshell(p)
        .args(["--output", "json", "bundle", "install", "site.bundle", "--trust", "key.pub", "--no-binaries"])
        .args(["--load", "docker"])
        .arg("--store")
        .arg(target.join("store"))
        .arg("--lockfile-dir")
        .arg(target.join("locks")));
    assert_eq!(json(&o)["loaded"][0]["into"], "docker", "{}", text(&o));
    // docker's image id is the config's digest.
    let index = ok(Command::new("tar").arg("-xOf").arg(p.join("site.bundle")).arg("openshell-bundle.json"));
    let index: serde_json::Value = serde_json::from_slice(&index.stdout).expect("index");
    let o = ok(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", "openshell/site:7"]));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        index["images"][0]["record"]["config"].as_str().expect("config")
    );
    let _ = Command::new("docker").args(["rmi", "openshell/site:7"]).output();
}

#[test]
fn an_installed_bundle_loads_into_containerd() {
    let site = Site::new();
    let p = site.path();
    site.small_bundle("site.bundle");
    let containerd = support::containerd::Containerd::start(&p.join("containerd"));
    let target = p.join("t");
    let o = ok(openshell(p)
        .args(["--output", "json", "bundle", "install", "site.bundle", "--trust", "key.pub", "--no-binaries"])
        .args(["--load", "containerd", "--containerd-namespace", "openshell-test"])
        .arg("--containerd-address")
        .arg(&containerd.address)
        .arg("--store")
        .arg(target.join("store"))
        .arg("--lockfile-dir")
        .arg(target.join("locks")));
    assert_eq!(json(&o)["loaded"][0]["into"], "containerd", "{}", text(&o));
    let index = ok(Command::new("tar").arg("-xOf").arg(p.join("site.bundle")).arg("openshell-bundle.json"));
    let index: serde_json::Value = serde_json::from_slice(&index.stdout).expect("index");
    let manifest = index["images"][0]["record"]["manifest"].as_str().expect("manifest").to_owned();
    let o = containerd.ctr("openshell-test", &["images", "ls"]);
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(listed.lines().any(|l| l.contains("openshell/site:7") && l.contains(&manifest)), "ctr images ls: {listed}");
}
