//! InRelease verification with throwaway gpg keys, and Release parsing.

use std::path::{Path, PathBuf};

use openshell_debian::release::{self, Release, ReleaseError, verify_clearsigned, verify_inrelease};

#[path = "../../../tests/support/gpg.rs"]
mod gpg;

use gpg::Key;

const RELEASE: &str = "\
Origin: Debian
Label: Debian
Suite: testing-fake
Codename: trixie
Date: Sat, 10 May 2025 09:00:00 UTC
Valid-Until: Sat, 17 May 2025 09:00:00 UTC
Acquire-By-Hash: yes
Architectures: amd64 arm64
Components: main contrib
Description: a made-up release
 second line
SHA256:
 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae 3 main/binary-amd64/Packages
 fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9 3 main/binary-amd64/Packages.xz
";

#[test]
fn good_signature_returns_the_signed_text() {
    let key = Key::new("Archive <archive@example.invalid>");
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = key.keyring(tmp.path(), "archive.gpg");
    let signed = key.clearsign(RELEASE.as_bytes());
    assert!(signed.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"));
    let text = verify_inrelease(&signed, std::slice::from_ref(&ring)).expect("verifies");
    assert_eq!(String::from_utf8(text).expect("utf8").trim_end(), RELEASE.trim_end());

    let v = verify_clearsigned("trixie/InRelease", &signed, std::slice::from_ref(&ring), Path::new("gpgv"))
        .expect("verifies");
    assert_eq!(v.signers, std::slice::from_ref(&key.fpr));
    assert!(v.unknown_keys.is_empty());
    let r = Release::parse("trixie/InRelease", &v.text).expect("parses");
    assert_eq!(r.codename.as_deref(), Some("trixie"));

    // Dash-escaped lines come back unescaped.
    let dashed = b"- one\n-----BEGIN PGP SIGNATURE-----\nplain\n";
    let signed = key.clearsign(dashed);
    assert!(String::from_utf8_lossy(&signed).contains("- - one"));
    let text = verify_inrelease(&signed, std::slice::from_ref(&ring)).expect("verifies");
    assert_eq!(text, dashed);
}

#[test]
fn expired_valid_until_is_not_enforced() {
    // Valid-Until is in 2025: offline rebuilds must still verify and parse.
    let key = Key::new("Archive <archive@example.invalid>");
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = key.keyring(tmp.path(), "archive.gpg");
    let r = Release::from_inrelease("InRelease", &key.clearsign(RELEASE.as_bytes()), &[ring]).expect("ok");
    assert_eq!(r.valid_until.as_deref(), Some("Sat, 17 May 2025 09:00:00 UTC"));
}

#[test]
fn tampered_text_is_an_error() {
    let key = Key::new("Archive <archive@example.invalid>");
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = key.keyring(tmp.path(), "archive.gpg");
    let signed = String::from_utf8(key.clearsign(RELEASE.as_bytes())).expect("utf8");
    let tampered = signed.replace("Codename: trixie", "Codename: evil!");
    let err =
        verify_clearsigned("trixie/InRelease", tampered.as_bytes(), &[ring], Path::new("gpgv")).expect_err("tampered");
    let msg = err.to_string();
    assert!(matches!(err, ReleaseError::BadSignature { .. }), "{msg}");
    assert!(msg.starts_with("trixie/InRelease: signature verification failed"), "{msg}");
    assert!(msg.contains("BAD signature"), "{msg}");
}

#[test]
fn signature_by_another_key_is_an_error() {
    let signer = Key::new("Mallory <mallory@example.invalid>");
    let trusted = Key::new("Archive <archive@example.invalid>");
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = trusted.keyring(tmp.path(), "archive.gpg");
    let err = verify_inrelease(&signer.clearsign(RELEASE.as_bytes()), &[ring]).expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("unknown key"), "{msg}");
    assert!(msg.contains("No public key"), "gpgv's message is included: {msg}");
}

#[test]
fn one_good_signature_among_unknown_ones_is_accepted() {
    // Debian signs InRelease with several keys; a keyring with only one of them is fine,
    // as with apt.
    let a = Key::new("Archive A <a@example.invalid>");
    let b = Key::new("Archive B <b@example.invalid>");
    // Import b's secret key into a's home and sign with both.
    let secret = b.gpg(&["--export-secret-keys", &b.fpr], None);
    a.gpg(&["--import"], Some(&secret));
    let signed = a.gpg(&["--clearsign", "--local-user", &a.fpr, "--local-user", &b.fpr], Some(RELEASE.as_bytes()));
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = a.keyring(tmp.path(), "a.gpg");
    let v = verify_clearsigned("InRelease", &signed, &[ring], Path::new("gpgv")).expect("verifies");
    assert_eq!(v.signers, std::slice::from_ref(&a.fpr));
    assert_eq!(v.unknown_keys.len(), 1);
    assert!(b.fpr.ends_with(&v.unknown_keys[0]), "{:?} vs {}", v.unknown_keys, b.fpr);
}

#[test]
fn expired_key_is_an_error() {
    let key = Key::new_at("Old <old@example.invalid>", Some("20200101T000000"), "1d");
    let signed = key.gpg(
        &["--faked-system-time", "20200101T010000", "--clearsign", "--local-user", &key.fpr],
        Some(RELEASE.as_bytes()),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = key.keyring(tmp.path(), "old.gpg");
    let err = verify_inrelease(&signed, &[ring]).expect_err("expired");
    assert!(err.to_string().contains("expired key"), "{err}");
}

#[test]
fn unsigned_text_is_an_error() {
    let key = Key::new("Archive <archive@example.invalid>");
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = key.keyring(tmp.path(), "archive.gpg");
    let err = verify_inrelease(RELEASE.as_bytes(), std::slice::from_ref(&ring)).expect_err("unsigned");
    assert!(matches!(err, ReleaseError::NotClearsigned { .. }), "{err}");
    assert!(err.to_string().contains("unsigned"), "{err}");

    let signed = String::from_utf8(key.clearsign(RELEASE.as_bytes())).expect("utf8");
    for (what, data) in [
        ("text before", format!("Suite: injected\n{signed}")),
        ("text after", format!("{signed}Suite: injected\n")),
        ("two messages", format!("{signed}{signed}")),
        ("no signature", signed.split("-----BEGIN PGP SIGNATURE-----").next().expect("head").to_owned()),
        ("empty", String::new()),
    ] {
        let err = verify_inrelease(data.as_bytes(), std::slice::from_ref(&ring)).expect_err(what);
        assert!(matches!(err, ReleaseError::NotClearsigned { .. }), "{what}: {err}");
    }
}

#[test]
fn missing_gpgv_is_an_error() {
    let key = Key::new("Archive <archive@example.invalid>");
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = key.keyring(tmp.path(), "archive.gpg");
    let signed = key.clearsign(RELEASE.as_bytes());
    let err = verify_clearsigned("InRelease", &signed, &[ring], Path::new("/nonexistent/gpgv")).expect_err("no gpgv");
    assert!(matches!(err, ReleaseError::Gpgv { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/gpgv"), "{err}");
}

#[test]
fn keyring_problems_are_errors() {
    let key = Key::new("Archive <archive@example.invalid>");
    let signed = key.clearsign(RELEASE.as_bytes());
    let err = verify_inrelease(&signed, &[]).expect_err("no keyrings");
    assert!(matches!(err, ReleaseError::NoKeyrings { .. }), "{err}");
    let err = verify_inrelease(&signed, &[PathBuf::from("/nonexistent/ring.gpg")]).expect_err("missing keyring");
    assert!(err.to_string().contains("/nonexistent/ring.gpg"), "{err}");
}

#[test]
fn relative_keyring_paths_work() {
    let key = Key::new("Archive <archive@example.invalid>");
    let tmp = tempfile::tempdir().expect("tmp");
    let ring = key.keyring(tmp.path(), "archive.gpg");
    let cwd = std::env::current_dir().expect("cwd");
    let rel = pathdiff(&ring, &cwd);
    verify_inrelease(&key.clearsign(RELEASE.as_bytes()), &[rel]).expect("verifies with a relative path");
}

/// `target` relative to `base` (both absolute), with `..` steps.
fn pathdiff(target: &Path, base: &Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[test]
fn parse_release_fields_and_file_list() {
    let r = Release::parse("trixie/Release", RELEASE.as_bytes()).expect("parses");
    assert_eq!(r.suite.as_deref(), Some("testing-fake"));
    assert_eq!(r.codename.as_deref(), Some("trixie"));
    assert_eq!(r.date.as_deref(), Some("Sat, 10 May 2025 09:00:00 UTC"));
    assert_eq!(r.architectures, ["amd64", "arm64"]);
    assert_eq!(r.components, ["main", "contrib"]);
    assert!(r.acquire_by_hash);
    assert_eq!(r.sha256.len(), 2);
    let f = r.file("main/binary-amd64/Packages.xz").expect("listed");
    assert_eq!(f.size, 3);
    assert_eq!(f.sha256.to_string(), "sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9");
    assert!(r.file("main/binary-i386/Packages").is_none());
    assert_eq!(r.fields.get("Origin"), Some("Debian"));
}

#[test]
fn parse_release_errors() {
    let bad_line = RELEASE.replace(" 3 main/binary-amd64/Packages.xz", " x main/binary-amd64/Packages.xz");
    let err = Release::parse("R", bad_line.as_bytes()).expect_err("bad size");
    assert_eq!(err.to_string(), "R:14: field SHA256: `x` is not a size");

    let bad_hash = RELEASE.replace("2c26b46b", "zz26b46b");
    assert!(Release::parse("R", bad_hash.as_bytes()).expect_err("bad hash").to_string().contains("not a sha256"));

    let short = RELEASE.replace(" 3 main/binary-amd64/Packages\n", "\n");
    assert!(Release::parse("R", short.as_bytes()).expect_err("two words").to_string().contains("R:13:"));

    let no_sha = "Suite: x\nMD5Sum:\n 0 0 x\n";
    assert!(Release::parse("R", no_sha.as_bytes()).expect_err("no sha").to_string().contains("SHA256: missing"));

    let dup = format!(
        "{RELEASE} 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae 3 main/binary-amd64/Packages\n"
    );
    assert!(Release::parse("R", dup.as_bytes()).expect_err("dup").to_string().contains("listed twice"));

    let armored = format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{RELEASE}");
    assert!(matches!(Release::parse("R", armored.as_bytes()), Err(ReleaseError::NotClearsigned { .. })));

    assert!(Release::parse("R", b"A: 1\n\nB: 2\n").expect_err("two paragraphs").to_string().contains("one paragraph"));
}

#[test]
fn find_keyrings_lists_debian_archive_keyrings() {
    let tmp = tempfile::tempdir().expect("tmp");
    for name in [
        "debian-archive-keyring.gpg",
        "debian-archive-trixie-stable.gpg",
        "debian-archive-bookworm-automatic.gpg",
        "debian-archive-removed-keys.gpg",
        "nodesource.gpg",
        "debian-archive-keyring.asc",
    ] {
        std::fs::write(tmp.path().join(name), b"").expect("write");
    }
    let found = release::find_keyrings_in(tmp.path());
    let names: Vec<String> =
        found.iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        ["debian-archive-bookworm-automatic.gpg", "debian-archive-keyring.gpg", "debian-archive-trixie-stable.gpg"]
    );
    assert!(release::find_keyrings_in(Path::new("/nonexistent")).is_empty());
}

#[test]
fn find_keyrings_on_this_machine() {
    // debian-archive-keyring is installed on Debian machines (and in CI).
    let found = release::find_keyrings();
    assert!(
        found.iter().any(|p| p.ends_with("debian-archive-keyring.gpg")),
        "debian-archive-keyring.gpg not found in {}: {found:?}",
        release::KEYRING_DIR
    );
    assert!(!found.iter().any(|p| p.to_string_lossy().contains("removed")));
}
