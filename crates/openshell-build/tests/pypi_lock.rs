//! `lock` of PyPI packages against a loopback simple index: a wheel is locked only by
//! the sha256 its index publishes.

mod support;

use openshell_build::closure::SourceFlags;
use openshell_build::def::ImageDef;
use openshell_build::lock::{LockError, LockOptions, LockProgress, lock};
use openshell_store::Store;
use support::server::Server;

struct Quiet;

impl LockProgress for Quiet {
    fn step(&self, _: &str) {}
}

const DEF: &str =
    "name: t\npypi:\n  packages: [\"demo>=1\"]\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\n";
const WHEEL: &str = "demo-1.0-py3-none-any.whl";

fn try_lock(srv: &Server) -> Result<openshell_build::lockfile::Lockfile, LockError> {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("store")).expect("store");
    let def = ImageDef::parse("t.yaml", DEF.as_bytes()).expect("definition");
    let opts = LockOptions {
        sources: SourceFlags { pypi_index: Some(srv.url("simple")), ..SourceFlags::default() },
        ..LockOptions::default()
    };
    lock(&def, std::path::Path::new("t.yaml"), DEF.as_bytes(), &store, &opts, &Quiet)
}

#[test]
fn wheels_without_a_published_sha256_are_refused() {
    let srv = Server::start();
    // PEP 691 page with PEP 658 metadata, but no hash for the wheel: resolved, then refused.
    let page = format!(
        r#"{{"meta":{{"api-version":"1.1"}},"name":"demo","files":[{{"filename":"{WHEEL}","url":"{}","hashes":{{}},"core-metadata":true}}]}}"#,
        srv.url(&format!("files/{WHEEL}"))
    );
    srv.add("simple/demo/", page.into_bytes(), "application/vnd.pypi.simple.v1+json");
    srv.add(
        &format!("files/{WHEEL}.metadata"),
        b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n".to_vec(),
        "text/plain",
    );
    let e = try_lock(&srv).expect_err("no sha256");
    assert!(matches!(e, LockError::PypiHash { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("`demo` 1.0") && msg.contains(WHEEL) && msg.contains("no sha256"), "{msg}");

    // PEP 503 page without a hash fragment nor metadata: refused before the wheel is read.
    srv.add("simple/demo/", format!("<a href=\"../../files/{WHEEL}\">{WHEEL}</a>").into_bytes(), "text/html");
    let e = try_lock(&srv).expect_err("no sha256");
    let msg = e.to_string();
    assert!(msg.contains(WHEEL) && msg.contains("no sha256"), "{msg}");
    assert!(!srv.log().iter().any(|l| l == &format!("GET /files/{WHEEL}")), "{:?}", srv.log());

    // A wheel whose bytes do not match the page's hash is refused, naming both hashes.
    srv.add(&format!("files/{WHEEL}"), b"not the wheel".to_vec(), "application/octet-stream");
    srv.add(
        "simple/demo/",
        format!("<a href=\"../../files/{WHEEL}#sha256={}\">{WHEEL}</a>", "ab".repeat(32)).into_bytes(),
        "text/html",
    );
    let msg = try_lock(&srv).expect_err("hash mismatch").to_string();
    assert!(msg.contains(WHEEL) && msg.contains(&"ab".repeat(32)) && msg.contains("does not match"), "{msg}");
}
