//! The store: atomic inserts, verification, concurrency, resume, gc, export/import.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use openshell_store::{Algorithm, Digest, Store, StoreError};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path().join("store")).expect("open");
    (dir, s)
}

#[test]
fn insert_and_read_back() {
    let (_d, s) = store();
    let d = s.insert_bytes(b"hello").expect("insert");
    assert_eq!(d, Digest::sha256(b"hello"));
    assert!(s.contains(&d));
    assert_eq!(std::fs::read(s.blob_path(&d)).expect("read"), b"hello");
    assert_eq!(s.size(&d).expect("size"), 5);
    // read-only on disk
    assert!(std::fs::metadata(s.blob_path(&d)).expect("meta").permissions().readonly());
    // inserting again is a no-op
    assert_eq!(s.insert_bytes(b"hello").expect("again"), d);
    assert!(std::fs::read_dir(s.root().join("tmp")).expect("tmp").next().is_none(), "no temp files left");
}

#[test]
fn expected_digest_is_enforced() {
    let (_d, s) = store();
    let want = Digest::sha256(b"good");
    let err = s.insert_reader(Algorithm::Sha256, Some(&want), &b"evil"[..]).expect_err("mismatch");
    match err {
        StoreError::Mismatch { expected, actual } => {
            assert_eq!(expected, want);
            assert_eq!(actual, Digest::sha256(b"evil"));
        }
        e => panic!("unexpected {e}"),
    }
    assert!(!s.contains(&want) && !s.contains(&Digest::sha256(b"evil")), "nothing stored");
    let sha512 = {
        let mut h = Algorithm::Sha512.hasher();
        h.update(b"x");
        h.finish()
    };
    assert_eq!(s.insert_reader(Algorithm::Sha256, Some(&sha512), &b"x"[..]).expect("sha512"), sha512);
    assert!(s.blob_path(&sha512).to_string_lossy().contains("blobs/sha512/"));
}

#[test]
fn missing_blob_is_named() {
    let (_d, s) = store();
    let d = Digest::sha256(b"absent");
    let e = s.open_verified(&d).expect_err("missing");
    assert!(e.to_string().contains(&d.to_string()), "{e}");
}

#[test]
fn tampered_blob_is_detected_and_removed() {
    let (_d, s) = store();
    let d = s.insert_bytes(b"original").expect("insert");
    let p = s.blob_path(&d);
    let mut perms = std::fs::metadata(&p).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&p, perms).expect("chmod");
    std::fs::write(&p, b"tampered").expect("tamper");
    let e = s.verify(&d).expect_err("corrupt");
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(!s.contains(&d), "corrupt blob removed");
}

/// Replaces a stored blob's content in place, as something with write access to
/// the store could.
fn alter(s: &Store, d: &Digest, content: &[u8]) {
    let p = s.blob_path(d);
    let mut perms = std::fs::metadata(&p).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&p, perms).expect("chmod");
    std::fs::write(&p, content).expect("alter");
}

fn assert_altered(e: &StoreError, d: &Digest) {
    assert!(matches!(e, StoreError::Altered { digest, .. } if digest == d), "{e}");
    assert!(e.to_string().contains(&d.to_string()) && e.to_string().contains("changed on disk"), "{e}");
}

/// Every read path refuses a blob whose content changed after it was stored, naming
/// it, and leaves it in place (`store verify` is what removes blobs).
#[test]
fn reads_refuse_a_blob_altered_on_disk() {
    use std::io::Read;
    let (dir, s) = store();
    let good = s.insert_bytes(b"the original content").expect("insert");
    let d = s.insert_bytes(b"content to be altered").expect("insert");
    // Positive control: every path reads an intact blob.
    assert_eq!(s.read_verified(&good).expect("read"), b"the original content");
    let mut r = s.open_verified(&good).expect("open");
    let mut head = [0u8; 3];
    r.read_exact(&mut head).expect("read");
    r.finish().expect("intact");
    s.open_ranges(&good).expect("ranges");
    let mut out = Vec::new();
    s.export(&BTreeSet::from([good.clone()]), &mut out).expect("export");

    // Same length and a different length.
    for content in [&b"CONTENT to be altered"[..], b"short"] {
        alter(&s, &d, content);
        let s = Store::open(dir.path().join("store")).expect("a new handle");
        assert_altered(&s.read_verified(&d).expect_err("read whole"), &d);
        let mut r = s.open_verified(&d).expect("open");
        let e = r.read_to_end(&mut Vec::new()).expect_err("the read reaching the end fails");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_altered(&openshell_store::store_error(e, &s.blob_path(&d)), &d);
        let mut r = s.open_verified(&d).expect("open");
        r.read_exact(&mut head).expect("the first bytes read");
        assert_altered(&r.finish().expect_err("finish reads the rest"), &d);
        assert_altered(&s.open_ranges(&d).expect_err("ranges"), &d);
        let e = s.export(&BTreeSet::from([d.clone()]), std::io::sink()).expect_err("export");
        assert!(e.to_string().contains(&d.to_string()), "{e}");
        assert!(s.blob_path(&d).exists(), "a read does not delete");
    }
}

/// `open_ranges` hashes a blob once per handle (inserted blobs count as hashed); a new
/// handle hashes it again.
#[test]
fn ranges_are_verified_once_per_handle() {
    let (dir, s) = store();
    let d = s.insert_bytes(b"inserted by this handle").expect("insert");
    alter(&s, &d, b"INSERTED by this handle");
    s.open_ranges(&d).expect("this handle hashed it while inserting it");
    let other = Store::open(dir.path().join("store")).expect("a new handle");
    assert_altered(&other.open_ranges(&d).expect_err("a new handle hashes it"), &d);
}

#[test]
fn concurrent_inserts_of_the_same_content() {
    let (_d, s) = store();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let data = Arc::new(data);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (s, data, barrier) = (s.clone(), data.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                s.insert_bytes(&data).expect("insert")
            })
        })
        .collect();
    let digests: BTreeSet<Digest> = handles.into_iter().map(|h| h.join().expect("join")).collect();
    assert_eq!(digests.len(), 1);
    let d = digests.into_iter().next().expect("one");
    s.verify(&d).expect("intact");
}

#[test]
fn partial_download_resumes() {
    let (_d, s) = store();
    let data = b"0123456789abcdefghij";
    let d = Digest::sha256(data);
    {
        let mut p = s.partial(&d).expect("partial");
        assert_eq!(p.offset().expect("offset"), 0);
        p.append(&data[..7]).expect("append");
        // interrupted: dropped without finish
    }
    let mut p = s.partial(&d).expect("partial again");
    let off = p.offset().expect("offset") as usize;
    assert_eq!(off, 7);
    p.append(&data[off..]).expect("append rest");
    assert_eq!(p.finish().expect("finish"), d);
    assert!(s.contains(&d));
    assert!(std::fs::read_dir(s.root().join("partial")).expect("dir").next().is_none());
}

#[test]
fn partial_with_wrong_content_is_discarded() {
    let (_d, s) = store();
    let d = Digest::sha256(b"right");
    let mut p = s.partial(&d).expect("partial");
    p.append(b"wrong").expect("append");
    assert!(matches!(p.finish(), Err(StoreError::Mismatch { .. })));
    assert!(!s.contains(&d));
    assert_eq!(s.partial(&d).expect("fresh").offset().expect("offset"), 0, "next attempt starts clean");
}

#[test]
fn partial_is_exclusive_between_holders() {
    let (_d, s) = store();
    let data = vec![7u8; 100_000];
    let d = Digest::sha256(&data);
    let first = s.partial(&d).expect("first");
    let (s2, d2, data2) = (s.clone(), d.clone(), data.clone());
    let waiter = std::thread::spawn(move || {
        // blocks until `first` is finished, then sees the blob is stored
        let p = s2.partial(&d2).expect("second");
        if s2.contains(&d2) {
            return true;
        }
        let mut p = p;
        p.append(&data2).expect("append");
        p.finish().expect("finish");
        false
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut first = first;
    first.append(&data).expect("append");
    first.finish().expect("finish");
    assert!(waiter.join().expect("join"), "the second holder waited and found the blob stored");
}

#[test]
fn gc_keeps_only_live_blobs() {
    let (_d, s) = store();
    let keep = s.insert_bytes(b"keep").expect("insert");
    let drop1 = s.insert_bytes(b"drop one").expect("insert");
    let drop2 = s.insert_bytes(b"drop two").expect("insert");
    let report = s.gc(&BTreeSet::from([keep.clone()])).expect("gc");
    assert_eq!(report.kept, 1);
    assert_eq!(report.removed.len(), 2);
    assert_eq!(report.freed_bytes, 16);
    assert!(s.contains(&keep) && !s.contains(&drop1) && !s.contains(&drop2));
}

#[test]
fn export_import_round_trip_is_deterministic() {
    let (_d, a) = store();
    let x = a.insert_bytes(b"x-content").expect("x");
    let y = a.insert_bytes(b"y-content").expect("y");
    let closure = BTreeSet::from([x.clone(), y.clone()]);
    let mut one = Vec::new();
    a.export(&closure, &mut one).expect("export");
    let mut two = Vec::new();
    a.export(&closure, &mut two).expect("export again");
    assert_eq!(Digest::sha256(&one), Digest::sha256(&two), "same closure, same bytes");

    let (_e, b) = store();
    let r = b.import(&one[..]).expect("import");
    assert_eq!(r.added.len(), 2);
    assert!(b.contains(&x) && b.contains(&y));
    let r = b.import(&one[..]).expect("import again");
    assert_eq!((r.added.len(), r.already_present), (0, 2));
}

#[test]
fn import_refuses_tampered_and_foreign_entries() {
    let (_d, a) = store();
    let x = a.insert_bytes(b"genuine").expect("x");
    let mut tar = Vec::new();
    a.export(&BTreeSet::from([x.clone()]), &mut tar).expect("export");
    // flip content bytes (the data block follows the 512-byte header)
    let pos = tar.windows(7).position(|w| w == b"genuine").expect("content in tar");
    tar[pos..pos + 7].copy_from_slice(b"GENUINE");
    let (_e, b) = store();
    let err = b.import(&tar[..]).expect_err("tampered");
    assert!(err.to_string().contains("is corrupt"), "{err}");
    assert!(!b.contains(&x));

    let mut foreign = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    foreign.append_data(&mut h, "etc/passwd", &b"bad"[..]).expect("append");
    let bytes = foreign.into_inner().expect("tar");
    let err = b.import(&bytes[..]).expect_err("foreign");
    assert!(err.to_string().contains("unexpected entry `etc/passwd`"), "{err}");
}

#[test]
fn default_root_follows_environment() {
    // Only reads the environment; does not modify it (tests run in parallel).
    let root = Store::default_root();
    if let Some(v) = std::env::var_os("OPENSHELL_STORE").filter(|v| !v.is_empty()) {
        assert_eq!(root.expect("root"), std::path::PathBuf::from(v));
    } else if std::env::var_os("HOME").is_some() || std::env::var_os("XDG_DATA_HOME").is_some() {
        assert!(root.expect("root").ends_with("openshell/store"));
    }
}

#[test]
fn staged_blobs_reach_blobs_only_when_published() {
    use std::io::Write;
    let (_d, s) = store();
    let tmp_is_empty = |s: &Store| std::fs::read_dir(s.root().join("tmp")).expect("tmp").next().is_none();
    let good = Digest::sha256(b"layer");
    let mut w = s.stage(Algorithm::Sha256).expect("stage");
    w.write_all(b"layer").expect("write");
    let staged = w.finish(Some(&good)).expect("matches");
    assert!(!s.contains(&good), "a staged blob is not in blobs/ yet");
    assert_eq!(std::fs::read(staged.path()).expect("read staged"), b"layer");
    // A mismatch is refused and leaves nothing behind.
    let mut bad = s.stage(Algorithm::Sha256).expect("stage");
    bad.write_all(b"evil").expect("write");
    assert!(matches!(bad.finish(Some(&good)), Err(StoreError::Mismatch { .. })));
    assert_eq!(staged.publish().expect("publish"), good);
    assert!(s.contains(&good));
    assert!(tmp_is_empty(&s), "no temporary files left after publish");
    // Dropped without publishing: nothing stored, nothing left in tmp/.
    let other = Digest::sha256(b"other");
    let mut w = s.stage(Algorithm::Sha256).expect("stage");
    w.write_all(b"other").expect("write");
    drop(w.finish(Some(&other)).expect("matches"));
    assert!(!s.contains(&other));
    assert!(tmp_is_empty(&s));
}
