//! End-to-end: `openshell verify REF --lock LOCK` against an OCI layout, an archive
//! and a loopback `docker-registry`. The mismatches are made as an attacker would:
//! one field of one file of the built image changed, every digest after it
//! (layer, diff_id, config, manifest, index) recomputed so the image is consistent.
//! Each is checked beside the same rewrite with nothing changed, which must verify.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};
use support::built::{Built, json, ok, openshell, run, text, with_stdin_line};
use support::registry::{PASSWORD, Registry, USER, make_htpasswd, make_tls};

/// An image of the test archive's two packages, with no plain files, so that an
/// empty store can fetch all of it from the archive.
const IMAGE: &str = "name: openshell/vtest\ndebian:\n  suites: [testing]\n  packages: [hello-openshell]\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\ncmd: [/usr/bin/hello-openshell]\n";

/// The file the mismatch tests change (in base-files, so in the Debian layer, 0).
const VICTIM: &str = "etc/debian_version";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// `openshell verify TARGET --lock t.lock --store STORE [extra...]`.
fn verify_command(b: &Built, target: &str, extra: &[&str]) -> Command {
    let mut c = openshell(b.path());
    c.args(["verify", target, "--lock", "t.lock", "--store", &b.store()]).args(extra);
    c
}

fn verify(b: &Built, target: &str, extra: &[&str]) -> Output {
    run(&mut verify_command(b, target, extra))
}

/// One field of the victim's tar header or content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The rewrite alone (must give back the same bytes).
    Nothing,
    /// The first byte of the content (`13\n` becomes `93\n`).
    Content,
    /// Mode 0644 becomes 0600.
    Mode,
    /// Mtime 0 becomes 1700000000.
    Mtime,
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("json")
}

fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).expect("write blob");
    hex
}

fn copy_layout(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("blobs/sha256")).expect("mkdir");
    for name in ["oci-layout", "index.json"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy");
    }
    for e in std::fs::read_dir(from.join("blobs/sha256")).expect("blobs") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join("blobs/sha256").join(e.file_name())).expect("copy blob");
    }
}

/// Parses an octal tar header field.
fn octal(field: &[u8]) -> u64 {
    let s: String = field.iter().take_while(|&&b| b != 0 && b != b' ').map(|&b| b as char).collect();
    u64::from_str_radix(s.trim(), 8).unwrap_or(0)
}

/// Rewrites the header checksum of the 512-byte header `h`.
fn fix_checksum(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Applies `change` to the entry `path` of the uncompressed tar; whether it is there.
fn change_entry(tar: &mut [u8], path: &str, change: Change) -> bool {
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
        let size = octal(&tar[at + 124..at + 136]) as usize;
        let name: Vec<u8> = tar[at..at + 100].iter().copied().take_while(|&b| b != 0).collect();
        let data = at + 512;
        if name == path.as_bytes() {
            match change {
                Change::Nothing => {}
                Change::Content => tar[data] = b'9',
                Change::Mode => {
                    tar[at + 100..at + 108].copy_from_slice(format!("{:07o}\0", 0o600).as_bytes());
                    fix_checksum(&mut tar[at..at + 512]);
                }
                Change::Mtime => {
                    tar[at + 136..at + 148].copy_from_slice(format!("{:011o}\0", 1_700_000_000u64).as_bytes());
                    fix_checksum(&mut tar[at..at + 512]);
                }
            }
            return true;
        }
        at = data + size.div_ceil(512) * 512;
    }
    false
}

/// What [`tamper`] made.
struct Tampered {
    /// The new manifest digest.
    manifest: String,
    /// The changed layer's index and its new diff_id.
    layer: usize,
    diff_id: String,
}

/// Copies the layout `from` to `to` with `change` applied to `path`, the layer
/// gzipped again with openshell's own compressor and every digest after it
/// recomputed: a consistent image. With [`Change::Nothing`] it is the same image.
fn tamper(from: &Path, to: &Path, path: &str, change: Change) -> Tampered {
    use std::io::{Read, Write};
    copy_layout(from, to);
    let mut index = read_json(&to.join("index.json"));
    let blob =
        |d: &serde_json::Value| to.join("blobs/sha256").join(d.as_str().expect("digest").trim_start_matches("sha256:"));
    let mut manifest = read_json(&blob(&index["manifests"][0]["digest"]));
    let mut config = read_json(&blob(&manifest["config"]["digest"]));
    let layers = manifest["layers"].as_array().expect("layers").len();
    for i in 0..layers {
        let gz = std::fs::read(blob(&manifest["layers"][i]["digest"])).expect("layer");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut tar).expect("gunzip");
        if !change_entry(&mut tar, path, change) {
            continue;
        }
        let mut w = openshell_oci::compress::GzipWriter::new(Vec::new()).expect("gzip");
        w.write_all(&tar).expect("gzip");
        let gz = w.finish().expect("gzip");
        let hex = write_blob(to, &gz);
        manifest["layers"][i]["digest"] = format!("sha256:{hex}").into();
        manifest["layers"][i]["size"] = gz.len().into();
        let diff_id = format!("sha256:{}", sha256_hex(&tar));
        config["rootfs"]["diff_ids"][i] = diff_id.clone().into();
        let config_bytes = openshell_oci::json::value_to_canonical(&config).expect("canonical");
        manifest["config"]["digest"] = format!("sha256:{}", write_blob(to, &config_bytes)).into();
        manifest["config"]["size"] = config_bytes.len().into();
        let manifest_bytes = openshell_oci::json::value_to_canonical(&manifest).expect("canonical");
        let digest = format!("sha256:{}", write_blob(to, &manifest_bytes));
        index["manifests"][0]["digest"] = digest.clone().into();
        index["manifests"][0]["size"] = manifest_bytes.len().into();
        std::fs::write(to.join("index.json"), openshell_oci::json::value_to_canonical(&index).expect("canonical"))
            .expect("write index");
        return Tampered { manifest: digest, layer: i, diff_id };
    }
    panic!("no layer of {} holds {path}", from.display());
}

/// The layer 0 diff_id of the built image (from its config).
fn built_diff_id(b: &Built, layer: usize) -> String {
    let m = b.manifest_json();
    let cfg = b
        .path()
        .join("oci/blobs/sha256")
        .join(m["config"]["digest"].as_str().expect("config").trim_start_matches("sha256:"));
    read_json(&cfg)["rootfs"]["diff_ids"][layer].as_str().expect("diff_id").to_owned()
}

/// The positive control: the rewrite with nothing changed is the same image and
/// verifies; then `change` makes a mismatch naming the layer (index and both
/// diff_ids), the file and the field, with each side's mode, owner, mtime and sha256.
fn mismatch_is_named(change: Change, field: &str, rebuilt_side: &str, found_side: &str) {
    let b = Built::from_definition(IMAGE);
    let same = tamper(&b.path().join("oci"), &b.path().join("same"), VICTIM, Change::Nothing);
    assert_eq!(same.manifest, b.manifest, "the rewrite alone gives back the built image byte for byte");
    let o = verify(&b, "same", &[]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), b.manifest);

    let t = tamper(&b.path().join("oci"), &b.path().join("changed"), VICTIM, change);
    assert_ne!(t.manifest, b.manifest);
    let o = verify(&b, "changed", &[]);
    let out = text(&o);
    assert_eq!(code(&o), 1, "{out}");
    let rebuilt_id = built_diff_id(&b, t.layer);
    for needle in [
        "mismatch: changed is not the image t.lock builds".to_owned(),
        format!("rebuilt from t.lock: {}", b.manifest),
        format!("changed: {}", t.manifest),
        format!("layer {} (diff_id {rebuilt_id} rebuilt, {} in changed)", t.layer, t.diff_id),
        format!("file /{VICTIM}: {field} differs"),
        format!("rebuilt: {rebuilt_side}"),
        format!("changed: {found_side}"),
    ] {
        assert!(out.contains(&needle), "`{needle}` missing from:\n{out}");
    }

    // The same, for programs.
    let v = json(&run(openshell(b.path()).args([
        "--output",
        "json",
        "verify",
        "changed",
        "--lock",
        "t.lock",
        "--store",
        &b.store(),
    ])));
    assert_eq!(v["match"], false);
    assert_eq!((v["rebuilt"].as_str(), v["found"].as_str()), (Some(b.manifest.as_str()), Some(t.manifest.as_str())));
    let d = &v["difference"];
    assert_eq!(
        (d["layer"].as_u64(), d["path"].as_str(), d["field"].as_str()),
        (Some(t.layer as u64), Some("/etc/debian_version"), Some(field)),
        "{v}"
    );
    assert_eq!(d["diff_id"]["found"], t.diff_id.as_str());
    assert_eq!(d["rebuilt"]["owner"], "0:0");
}

const ORIGINAL: &str = "file mode 0644 owner 0:0 mtime 0 size 3";

#[test]
fn changed_content_is_named_with_both_sha256() {
    let rebuilt = format!("{ORIGINAL} sha256:{}", sha256_hex(b"13\n"));
    let found = format!("{ORIGINAL} sha256:{}", sha256_hex(b"93\n"));
    mismatch_is_named(Change::Content, "content", &rebuilt, &found);
}

#[test]
fn changed_mode_is_named() {
    let rebuilt = format!("{ORIGINAL} sha256:{}", sha256_hex(b"13\n"));
    let found = format!("file mode 0600 owner 0:0 mtime 0 size 3 sha256:{}", sha256_hex(b"13\n"));
    mismatch_is_named(Change::Mode, "mode", &rebuilt, &found);
}

#[test]
fn changed_mtime_is_named() {
    let rebuilt = format!("{ORIGINAL} sha256:{}", sha256_hex(b"13\n"));
    let found = format!("file mode 0644 owner 0:0 mtime 1700000000 size 3 sha256:{}", sha256_hex(b"13\n"));
    mismatch_is_named(Change::Mtime, "mtime", &rebuilt, &found);
}

/// The layout `build -o` wrote (with its SBOM referrer beside the image) and the
/// archive verify; an empty store fetches the closure first (the same source flags
/// as `fetch`), and the rebuild records no image there; `--offline` names what is
/// missing instead.
#[test]
fn oci_dir_and_archive_verify_and_a_missing_closure_is_fetched() {
    let b = Built::from_definition(IMAGE);
    let index = read_json(&b.path().join("oci/index.json"));
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2), "the SBOM referrer is beside the image: {index}");
    for target in ["oci", "t.tar"] {
        let o = verify(&b, target, &[]);
        assert_eq!(code(&o), 0, "{target}: {}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), b.manifest, "{target}");
        assert!(text(&o).contains(&format!("match: {target} is the image t.lock builds")), "{}", text(&o));
    }

    let empty = b.path().join("empty-store").display().to_string();
    let offline = run(openshell(b.path()).args(["verify", "oci", "--lock", "t.lock", "--offline", "--store", &empty]));
    assert_eq!(code(&offline), 2, "{}", text(&offline));
    for needle in ["--offline", "debian hello-openshell 1.0-1", "debian base-files 13"] {
        assert!(text(&offline).contains(needle), "`{needle}` missing: {}", text(&offline));
    }
    let o = run(openshell(b.path()).args([
        "verify",
        "t.tar",
        "--lock",
        "t.lock",
        "--debian-mirror",
        &b.mirror,
        "--store",
        &empty,
    ]));
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), b.manifest);
    let ls = json(&ok(openshell(b.path()).args(["--output", "json", "image", "ls", "--store", &empty])));
    assert_eq!(ls, serde_json::json!([]), "verify records no image in the store");
}

/// A registry REF: the pushed image verifies (the tag resolved once, reported; by
/// digest too); a different image pushed under the same tag does not, and is named.
#[test]
fn registry_ref_verifies_and_a_different_image_under_the_tag_is_named() {
    let b = Built::from_definition(IMAGE);
    let reg = Registry::start(&b.path().join("registry"), None, None);
    let tag = format!("{}/openshell/vtest:v1", reg.host());
    ok(openshell(b.path()).args(["push", "oci", &tag, "--insecure"]));
    let o = verify(&b, &tag, &["--insecure"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), b.manifest);
    assert!(text(&o).contains(&format!("{tag} resolved to {}", b.manifest)), "{}", text(&o));
    let by_digest = format!("{}/openshell/vtest@{}", reg.host(), b.manifest);

    let t = tamper(&b.path().join("oci"), &b.path().join("changed"), VICTIM, Change::Mtime);
    ok(openshell(b.path()).args(["push", "changed", &tag, "--insecure"]));
    let o = verify(&b, &tag, &["--insecure"]);
    let out = text(&o);
    assert_eq!(code(&o), 1, "{out}");
    for needle in [
        format!("{tag} resolved to {}", t.manifest),
        format!("rebuilt from t.lock: {}", b.manifest),
        format!("{tag}: {}", t.manifest),
        format!("layer {} (diff_id", t.layer),
        format!("file /{VICTIM}: mtime differs"),
    ] {
        assert!(out.contains(&needle), "`{needle}` missing from:\n{out}");
    }
    // The original is still there by digest.
    let o = verify(&b, &by_digest, &["--insecure"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

/// A registry that refuses: exit 2 naming the registry and the credentials (none,
/// then wrong ones); the right ones (`--password-stdin`, over TLS with `--ca-file`)
/// verify.
#[test]
fn registry_authentication_failure_exits_2() {
    let b = Built::from_definition(IMAGE);
    let tls = make_tls(&b.path().join("tls"));
    let htpasswd = make_htpasswd(b.path());
    let reg = Registry::start(&b.path().join("registry"), Some(&tls), Some(&htpasswd));
    let tag = format!("{}/openshell/vtest:tls", reg.host());
    let ca = tls.ca.display().to_string();
    let login = ["--ca-file", ca.as_str(), "--username", USER, "--password-stdin"];
    let o = with_stdin_line(openshell(b.path()).args(["push", "oci", &tag]).args(login), PASSWORD);
    assert!(o.status.success(), "{}", text(&o));

    let o = verify(&b, &tag, &["--ca-file", &ca]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains(&format!("{}: authentication failed with no credentials", reg.host())), "{}", text(&o));
    let o = with_stdin_line(&mut verify_command(&b, &tag, &login), "wrong");
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains(&format!("authentication failed with the credentials of --username {USER}")),
        "{}",
        text(&o)
    );
    let o = with_stdin_line(&mut verify_command(&b, &tag, &login), PASSWORD);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), b.manifest);
}

/// Exit 2, naming the input: a REF that is neither a path nor a registry
/// reference, an unreadable or corrupt one, a missing lockfile. A good REF and
/// lockfile beside them verify.
#[test]
fn bad_ref_and_missing_lockfile_exit_2_naming_them() {
    let b = Built::from_definition(IMAGE);
    assert_eq!(code(&verify(&b, "oci", &[])), 0);
    for bad in ["no-such-image.tar", "/nonexistent/dir/image.tar"] {
        let o = verify(&b, bad, &[]);
        assert_eq!(code(&o), 2, "{bad}: {}", text(&o));
        assert!(text(&o).contains(&format!("REF `{bad}` is not an existing file or directory")), "{}", text(&o));
    }
    std::fs::write(b.path().join("garbage.tar"), b"not a tar at all").expect("write");
    let o = verify(&b, "garbage.tar", &[]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("REF garbage.tar"), "{}", text(&o));

    // A layer blob changed without fixing its digest: REF is corrupt, named by blob.
    let layer =
        b.manifest_json()["layers"][0]["digest"].as_str().expect("digest").trim_start_matches("sha256:").to_owned();
    copy_layout(&b.path().join("oci"), &b.path().join("corrupt"));
    let blob = b.path().join("corrupt/blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&blob).expect("read");
    let last = bytes.len() - 9;
    bytes[last] ^= 1;
    std::fs::write(&blob, bytes).expect("write");
    let o = verify(&b, "corrupt", &[]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains(&layer) && text(&o).contains("corrupt"), "{}", text(&o));

    let o = run(openshell(b.path()).args(["verify", "oci", "--lock", "missing.lock", "--store", &b.store()]));
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("missing.lock"), "{}", text(&o));
}

/// `--help` documents the exit codes, and the sample CI workflow in `docs/` runs
/// `openshell verify` with flags that exist.
#[test]
fn help_documents_exit_codes_and_the_sample_workflow_uses_real_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let help = text(&ok(openshell(dir.path()).args(["verify", "--help"])));
    for needle in ["Exit status:", "0  the image at REF is the one LOCK builds", "1  it is not", "2  no answer"] {
        assert!(help.contains(needle), "`{needle}` missing from:\n{help}");
    }
    let workflow = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ci/verify-image.yml"))
        .expect("docs/ci/verify-image.yml");
    assert!(workflow.contains("openshell fetch \"$LOCKFILE\""), "the workflow fetches the closure");
    assert!(workflow.contains("set -- verify \"$IMAGE_REF\" --lock \"$LOCKFILE\""), "the workflow runs verify");
    for flag in ["--lock", "--offline", "--username", "--password-stdin"] {
        assert!(workflow.contains(flag) && help.contains(flag), "{flag}: in the workflow and in --help");
    }
}

/// A zstd image verifies against a zstd rebuild (`--compression zstd`); against the
/// default gzip rebuild it is another image (exit 1).
#[test]
fn a_zstd_image_verifies_with_its_compression() {
    let b = Built::from_definition(IMAGE);
    let store = b.store();
    ok(openshell(b.path()).args(["build", "t.lock", "--compression", "zstd", "-o", "zoci", "--store", &store]));
    let o = verify(&b, "zoci", &["--compression", "zstd"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = verify(&b, "zoci", &[]);
    assert_eq!(code(&o), 1, "a gzip rebuild is another image: {}", text(&o));
}
