//! Fetching a lockfile's closure from loopback sources; gc roots.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use openshell_build::closure::{self, Progress, SourceFlags};
use openshell_build::fetch::sri_from_digest;
use openshell_build::lockfile::*;
use openshell_store::{Algorithm, Digest, Store};
use support::server::Server;

#[derive(Default)]
struct Count(Mutex<Vec<(String, u64)>>);

impl Progress for Count {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64, _: Option<u64>) {}
    fn finish(&self, label: &str, n: u64) {
        self.0.lock().expect("lock").push((label.to_owned(), n));
    }
}

fn image() -> ImageConfig {
    ImageConfig {
        name: "t".into(),
        tag: "1".into(),
        user: "sandbox".into(),
        uid: 1000,
        gid: 1000,
        home: "/sandbox".into(),
        shell: "/bin/sh".into(),
        workdir: "/sandbox".into(),
        env: BTreeMap::new(),
        entrypoint: vec![],
        cmd: vec![],
        labels: BTreeMap::new(),
        npm_prefix: None,
        site_packages: None,
        exclude: Vec::new(),
        keep: Vec::new(),
    }
}

fn sha512(data: &[u8]) -> Digest {
    let mut h = Algorithm::Sha512.hasher();
    h.update(data);
    h.finish()
}

#[test]
fn fetches_every_kind_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("store")).expect("store");
    let srv = Server::start();
    let deb = b"!<arch>\nfake deb".to_vec();
    let tgz = b"fake tarball".to_vec();
    let whl = b"fake wheel".to_vec();
    srv.add("debian/pool/main/h/hello/hello_1_amd64.deb", deb.clone(), "application/octet-stream");
    srv.add("npm/left-pad/-/left-pad-1.3.0.tgz", tgz.clone(), "application/octet-stream");
    srv.add("files/ab/left_pad-1.0-py3-none-any.whl", whl.clone(), "application/octet-stream");
    srv.add(
        "simple/left-pad/",
        format!(
            "<html><body><a href=\"{}#sha256={}\">left_pad-1.0-py3-none-any.whl</a></body></html>",
            srv.url("files/ab/left_pad-1.0-py3-none-any.whl"),
            Digest::sha256(&whl).hex()
        ),
        "text/html",
    );
    let lock = Lockfile {
        version: 1,
        definition: DefinitionPin { file: "t.yaml".into(), sha256: Digest::sha256(b"def").to_string() },
        image: image(),
        debian: vec![DebArtifact {
            name: "hello".into(),
            version: "1".into(),
            architecture: "amd64".into(),
            suite: "trixie".into(),
            path: "pool/main/h/hello/hello_1_amd64.deb".into(),
            size: deb.len() as u64,
            sha256: Digest::sha256(&deb).to_string(),
        }],
        npm: vec![NpmArtifact {
            install: "lib/node_modules/left-pad".into(),
            name: "left-pad".into(),
            version: "1.3.0".into(),
            path: "left-pad/-/left-pad-1.3.0.tgz".into(),
            integrity: sri_from_digest(&sha512(&tgz)),
            size: None,
        }],
        pypi: vec![WheelArtifact {
            name: "left-pad".into(),
            version: "1.0".into(),
            project: "left-pad".into(),
            filename: "left_pad-1.0-py3-none-any.whl".into(),
            size: None,
            sha256: Digest::sha256(&whl).to_string(),
        }],
        file: vec![],
    };
    let flags = SourceFlags {
        debian_mirror: Some(srv.url("debian")),
        npm_registry: Some(srv.url("npm")),
        pypi_index: Some(srv.url("simple")),
    };
    let progress = Count::default();
    let r = closure::fetch(&lock, &store, &flags, 2, &progress).expect("fetch");
    assert_eq!((r.artifacts, r.downloaded, r.already_present), (3, 3, 0));
    for d in lock.digests().expect("digests") {
        store.verify(&d).expect("verified");
    }
    let r = closure::fetch(&lock, &store, &flags, 2, &progress).expect("again");
    assert_eq!((r.downloaded, r.already_present), (0, 3), "second fetch does nothing");

    // A tampered source is refused and named.
    let dir2 = tempfile::tempdir().expect("tmp");
    let store2 = Store::open(dir2.path()).expect("store");
    srv.add("npm/left-pad/-/left-pad-1.3.0.tgz", b"evil".to_vec(), "application/octet-stream");
    let e = closure::fetch(&lock, &store2, &flags, 1, &progress).expect_err("tampered");
    let msg = e.to_string();
    assert!(msg.contains("npm left-pad@1.3.0") && msg.contains("does not match its digest"), "{msg}");
}

#[test]
fn local_files_must_already_be_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("store");
    let lock = Lockfile {
        version: 1,
        definition: DefinitionPin { file: "t.yaml".into(), sha256: Digest::sha256(b"def").to_string() },
        image: image(),
        debian: vec![],
        npm: vec![],
        pypi: vec![],
        file: vec![FileArtifact {
            path: "/etc/motd".into(),
            mode: "0644".into(),
            size: 2,
            sha256: Digest::sha256(b"hi").to_string(),
        }],
    };
    let e = closure::fetch(&lock, &store, &SourceFlags::default(), 1, &Count::default()).expect_err("local");
    assert!(e.to_string().contains("file /etc/motd is not in the store"), "{e}");
    store.insert_bytes(b"hi").expect("insert");
    closure::fetch(&lock, &store, &SourceFlags::default(), 1, &Count::default()).expect("present");
}

#[test]
fn gc_roots_follow_lockfiles() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("store")).expect("store");
    let keep = store.insert_bytes(b"kept").expect("insert");
    let junk = store.insert_bytes(b"junk").expect("insert");
    let lock = Lockfile {
        version: 1,
        definition: DefinitionPin { file: "t.yaml".into(), sha256: Digest::sha256(b"def").to_string() },
        image: image(),
        debian: vec![],
        npm: vec![],
        pypi: vec![],
        file: vec![FileArtifact { path: "/k".into(), mode: "0644".into(), size: 4, sha256: keep.to_string() }],
    };
    let lock_path = dir.path().join("t.lock");
    std::fs::write(&lock_path, lock.to_text().expect("text")).expect("write");
    closure::register_root(&store, &lock_path).expect("root");
    let (live, locks) = closure::live_set(&store, &[]).expect("live");
    assert_eq!(locks.len(), 1);
    let report = store.gc(&live).expect("gc");
    assert_eq!(report.removed, vec![junk]);
    assert!(store.contains(&keep));
    // Once the lockfile is gone its root is stale and nothing keeps the blob.
    std::fs::remove_file(&lock_path).expect("rm");
    let (live, locks) = closure::live_set(&store, &[]).expect("live");
    assert!(live.is_empty() && locks.is_empty());
}
