//! Downloads into the store against a loopback server: verification, resume,
//! servers that ignore ranges, and tampered content.

mod support;

use openshell_build::fetch::{Fetcher, digest_from_sri, sri_from_digest};
use openshell_store::{Digest, Store};
use support::server::Server;

fn setup() -> (tempfile::TempDir, Store, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    (dir, store, Server::start())
}

fn payload() -> Vec<u8> {
    (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect()
}

#[test]
fn downloads_and_verifies() {
    let (_d, store, srv) = setup();
    let data = payload();
    let digest = Digest::sha256(&data);
    srv.add("pool/a.deb", data.clone(), "application/octet-stream");
    let f = Fetcher::new();
    let mut last = (0, None);
    let n = f.fetch_into(&store, &srv.url("pool/a.deb"), &digest, |done, total| last = (done, total)).expect("fetch");
    assert_eq!(n, data.len() as u64);
    assert_eq!(last, (data.len() as u64, Some(data.len() as u64)));
    assert!(store.contains(&digest));
    // a second fetch does no work
    assert_eq!(f.fetch_into(&store, &srv.url("pool/a.deb"), &digest, |_, _| {}).expect("again"), 0);
    assert_eq!(srv.log().iter().filter(|l| l.starts_with("GET")).count(), 1);
}

#[test]
fn resumes_after_interruption() {
    let (_d, store, srv) = setup();
    let data = payload();
    let digest = Digest::sha256(&data);
    srv.add("big", data.clone(), "application/octet-stream");
    srv.cut_once("big", 500_000);
    let f = Fetcher::new();
    let err = f.fetch_into(&store, &srv.url("big"), &digest, |_, _| {}).expect_err("cut");
    assert!(err.to_string().contains("big"), "{err}");
    assert!(!store.contains(&digest));
    let n = f.fetch_into(&store, &srv.url("big"), &digest, |_, _| {}).expect("resume");
    assert!(n < data.len() as u64, "only the rest was downloaded ({n} bytes)");
    assert!(store.contains(&digest));
    assert!(srv.log().iter().any(|l| l.contains("bytes=")), "{:?}", srv.log());
}

#[test]
fn server_ignoring_ranges_restarts_cleanly() {
    let (_d, store, srv) = setup();
    let data = payload();
    let digest = Digest::sha256(&data);
    srv.add("big", data.clone(), "application/octet-stream");
    srv.cut_once("big", 100_000);
    srv.ignore_range(true);
    let f = Fetcher::new();
    assert!(f.fetch_into(&store, &srv.url("big"), &digest, |_, _| {}).is_err());
    assert_eq!(f.fetch_into(&store, &srv.url("big"), &digest, |_, _| {}).expect("restart"), data.len() as u64);
    store.verify(&digest).expect("intact");
}

#[test]
fn tampered_content_is_refused() {
    let (_d, store, srv) = setup();
    let want = Digest::sha256(b"the real package");
    srv.add("pkg", b"a substituted package".to_vec(), "application/octet-stream");
    let e = Fetcher::new().fetch_into(&store, &srv.url("pkg"), &want, |_, _| {}).expect_err("mismatch");
    assert!(e.to_string().contains("does not match its digest"), "{e}");
    assert!(!store.contains(&want));
}

#[test]
fn missing_and_documents() {
    let (_d, _store, srv) = setup();
    srv.add("index", b"hello".to_vec(), "text/plain");
    let f = Fetcher::new();
    assert_eq!(f.get(&srv.url("index")).expect("get"), b"hello");
    assert_eq!(f.size(&srv.url("index")).expect("head"), Some(5));
    let e = f.get(&srv.url("nope")).expect_err("404");
    assert!(e.to_string().contains("404") && e.to_string().contains("/nope"), "{e}");
}

#[test]
fn sri_round_trip() {
    let mut h = openshell_store::Algorithm::Sha512.hasher();
    h.update(b"npm");
    let d = h.finish();
    let sri = sri_from_digest(&d);
    assert!(sri.starts_with("sha512-"));
    assert_eq!(digest_from_sri(&sri).expect("sri"), d);
    assert_eq!(digest_from_sri(&format!("sha1-AAAA {sri}")).expect("multi"), d);
    assert!(digest_from_sri("sha512-!!!").is_err());
    assert!(digest_from_sri("md5-AAAA").is_err());
}
