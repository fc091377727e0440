//! Config, manifest, layout, archive, verification and diff.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use openshell_oci::diff::first_json_diff;
use openshell_oci::image::{ANNOTATION_COMPRESSOR, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, rfc3339};
use openshell_oci::json;
use openshell_oci::layout::blob_path;
use openshell_oci::{
    COMPRESSOR, ContentRef, Difference, Entry, EntryDiff, Image, ImageConfig, ImageError, LayerDiff, LayerOptions,
    LayoutDiff, LayoutError, Origin, Reference, Tree, diff_layouts, partition, read_layout, verify_layout,
    write_archive, write_layer, write_layout,
};
use openshell_store::{Digest, Store};
use serde_json::{Value, json};

fn config() -> ImageConfig {
    let mut labels = BTreeMap::new();
    labels.insert("org.opencontainers.image.title".to_owned(), "sandbox".to_owned());
    labels.insert("dev.openshell.agent".to_owned(), "claude".to_owned());
    ImageConfig {
        user: Some("1000:1000".into()),
        env: vec!["PATH=/usr/bin:/bin".into(), "HOME=/home/sandbox".into()],
        entrypoint: Some(vec!["/usr/bin/claude".into()]),
        cmd: None,
        working_dir: Some("/home/sandbox".into()),
        labels,
        ..ImageConfig::default()
    }
}

fn build(store: &Store, tree: &Tree) -> Image {
    let layers = partition(tree, &common::origins())
        .expect("partition")
        .iter()
        .map(|plan| write_layer(store, plan, &LayerOptions::default()).expect("layer"))
        .collect();
    Image::new(&config(), layers, &BTreeMap::new()).expect("image")
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let store = Store::open(root.join("store")).expect("store");
    Fixture { _dir: dir, root, store }
}

fn reference() -> Reference {
    Reference::parse("openshell/claude:1.0").expect("reference")
}

/// Every file under `dir`, relative path → bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).expect("read"));
            }
        }
    }
    out
}

#[test]
fn config_and_manifest_are_canonical_and_complete() {
    let f = fixture();
    let image = build(&f.store, &common::sample_tree(&f.store, false));
    let config = serde_json::from_slice::<Value>(image.config_bytes()).expect("config");
    assert!(json::is_canonical(image.config_bytes()));
    assert!(json::is_canonical(image.manifest_bytes()));
    assert_eq!(Digest::sha256(image.config_bytes()), *image.config_digest());
    assert_eq!(Digest::sha256(image.manifest_bytes()), *image.manifest_digest());
    let text = String::from_utf8(image.config_bytes().to_vec()).expect("utf8");
    assert!(text.starts_with(r#"{"architecture":"amd64","config":{"Entrypoint":["/usr/bin/claude"],"Env":["PATH=/usr/bin:/bin","HOME=/home/sandbox"],"Labels":{"dev.openshell.agent":"claude","org.opencontainers.image.title":"sandbox"},"User":"1000:1000","WorkingDir":"/home/sandbox"},"created":"1970-01-01T00:00:00Z","history":[{"created":"1970-01-01T00:00:00Z","created_by":"openshell build: layer `debian`"}"#), "{text}");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(diff_ids.len(), 4);
    for (d, l) in diff_ids.iter().zip(image.layers()) {
        assert_eq!(d.as_str(), Some(l.diff_id.to_string().as_str()));
    }
    // No host fields.
    for key in ["author", "container", "docker_version", "hostname", "container_config"] {
        assert!(config.get(key).is_none(), "{key}");
    }
    let manifest = serde_json::from_slice::<Value>(image.manifest_bytes()).expect("manifest");
    assert_eq!(manifest.get("schemaVersion").and_then(Value::as_i64), Some(2));
    assert_eq!(manifest.get("mediaType").and_then(Value::as_str), Some("application/vnd.oci.image.manifest.v1+json"));
    let layers = manifest.get("layers").and_then(Value::as_array).expect("layers");
    for (d, l) in layers.iter().zip(image.layers()) {
        assert_eq!(d.get("size").and_then(Value::as_u64), Some(l.size));
        assert_eq!(d.get("digest").and_then(Value::as_str), Some(l.digest.to_string().as_str()));
    }
    let ann = manifest.get("annotations").expect("annotations");
    assert_eq!(ann.get(ANNOTATION_COMPRESSOR).and_then(Value::as_str), Some(COMPRESSOR));
    let mtext = String::from_utf8(image.manifest_bytes().to_vec()).expect("utf8");
    assert!(mtext.starts_with(r#"{"annotations":{"dev.openshell.layer.compressor":"#), "{mtext}");
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
}

#[test]
fn references() {
    let r = Reference::parse("openshell/claude:1.0").expect("ok");
    assert_eq!(
        (r.repo_tag().as_str(), r.full_name().as_str()),
        ("openshell/claude:1.0", "docker.io/openshell/claude:1.0")
    );
    assert_eq!(Reference::parse("sandbox").expect("ok").full_name(), "docker.io/library/sandbox:latest");
    let r = Reference::parse("localhost:5000/team/img:v2").expect("ok");
    assert_eq!(
        (r.repository(), r.tag(), r.full_name().as_str()),
        ("localhost:5000/team/img", "v2", "localhost:5000/team/img:v2")
    );
    for bad in ["", "Upper/case:1", "a:b:c", "img@sha256:00", "img:", "img:-x", "a//b"] {
        assert!(matches!(Reference::parse(bad), Err(ImageError::InvalidReference { .. })), "{bad}");
    }
}

#[test]
fn layout_is_deterministic_and_reads_back() {
    let f1 = fixture();
    let f2 = fixture();
    let i1 = build(&f1.store, &common::sample_tree(&f1.store, false));
    let i2 = build(&f2.store, &common::sample_tree(&f2.store, true));
    let (d1, d2) = (f1.root.join("out"), f2.root.join("elsewhere/layout"));
    let m1 = write_layout(&f1.store, &d1, &i1, &reference()).expect("layout 1");
    let m2 = write_layout(&f2.store, &d2, &i2, &reference()).expect("layout 2");
    assert_eq!(m1, m2);
    assert_eq!(snapshot(&d1), snapshot(&d2));
    assert_eq!(fs::read(d1.join("oci-layout")).expect("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = serde_json::from_slice::<Value>(&fs::read(d1.join("index.json")).expect("index")).expect("json");
    let desc = &index.get("manifests").and_then(Value::as_array).expect("manifests")[0];
    let ann = desc.get("annotations").expect("annotations");
    assert_eq!(ann.get(ANNOTATION_REF_NAME).and_then(Value::as_str), Some("1.0"));
    assert_eq!(ann.get(ANNOTATION_CONTAINERD_NAME).and_then(Value::as_str), Some("docker.io/openshell/claude:1.0"));
    assert_eq!(desc.get("digest").and_then(Value::as_str), Some(m1.to_string().as_str()));
    // Layer blobs are hard links into the store.
    use std::os::unix::fs::MetadataExt;
    let l0 = &i1.layers()[0].digest;
    assert_eq!(
        fs::metadata(blob_path(&d1, l0)).expect("blob").ino(),
        fs::metadata(f1.store.blob_path(l0)).expect("store").ino()
    );
    let layout = read_layout(&d1).expect("read");
    assert_eq!(layout.images.len(), 1);
    let img = &layout.images[0];
    assert_eq!(img.manifest.digest, m1);
    assert_eq!(img.config.digest, *i1.config_digest());
    assert_eq!(img.layers.len(), 4);
    assert_eq!(img.diff_ids, i1.layers().iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>());
    let report = verify_layout(&d1).expect("verify");
    assert_eq!((report.images, report.blobs), (1, 6));
    assert_eq!(report.uncompressed_bytes, i1.layers().iter().map(|l| l.uncompressed_size).sum::<u64>());
}

#[test]
fn rewriting_a_layout_removes_stale_blobs_and_refuses_foreign_dirs() {
    let f = fixture();
    let tree = common::sample_tree(&f.store, false);
    let image = build(&f.store, &tree);
    let out = f.root.join("out");
    write_layout(&f.store, &out, &image, &reference()).expect("first");
    let mut tree2 = tree.clone();
    tree2
        .insert("etc/motd", Entry::file(0o644, ContentRef::bytes(&b"hi"[..]), &Origin::new("generated")))
        .expect("insert");
    let image2 = build(&f.store, &tree2);
    write_layout(&f.store, &out, &image2, &reference()).expect("second");
    let fresh = f.root.join("fresh");
    write_layout(&f.store, &fresh, &image2, &reference()).expect("fresh");
    assert_eq!(snapshot(&out), snapshot(&fresh));
    let foreign = f.root.join("foreign");
    fs::create_dir_all(&foreign).expect("mkdir");
    fs::write(foreign.join("notes.txt"), b"mine").expect("write");
    let err = write_layout(&f.store, &foreign, &image2, &reference()).expect_err("foreign");
    assert!(matches!(err, ImageError::NotALayout { .. }), "{err}");
}

#[test]
fn archive_is_layout_and_docker_archive_and_deterministic() {
    let f1 = fixture();
    let f2 = fixture();
    let i1 = build(&f1.store, &common::sample_tree(&f1.store, false));
    let i2 = build(&f2.store, &common::sample_tree(&f2.store, true));
    let a1 = write_archive(&f1.store, &f1.root.join("image.tar"), &i1, &reference()).expect("archive 1");
    let a2 = write_archive(&f2.store, &f2.root.join("other.tar"), &i2, &reference()).expect("archive 2");
    assert_eq!(a1, a2);
    let bytes = fs::read(f1.root.join("image.tar")).expect("read");
    assert_eq!(bytes, fs::read(f2.root.join("other.tar")).expect("read"));
    assert_eq!(Digest::sha256(&bytes), a1.digest);
    assert_eq!(bytes.len() as u64, a1.size);

    let entries = common::raw_entries(&bytes);
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut blob_names: Vec<String> = vec![i1.config_digest().hex(), i1.manifest_digest().hex()];
    blob_names.extend(i1.layers().iter().map(|l| l.digest.hex()));
    blob_names.sort();
    let mut expected = vec!["blobs/".to_owned(), "blobs/sha256/".to_owned()];
    expected.extend(blob_names.iter().map(|h| format!("blobs/sha256/{h}")));
    expected.extend(["index.json", "manifest.json", "oci-layout"].map(String::from));
    assert_eq!(names, expected);
    for e in &entries {
        assert_eq!((e.mtime(), e.uid(), e.gid(), e.uname(), e.gname()), (0, 0, 0, String::new(), String::new()));
        assert_eq!(e.mode(), if e.typeflag == b'5' { 0o755 } else { 0o644 });
    }
    let get = |n: &str| entries.iter().find(|e| e.path == n).expect(n);
    let docker = serde_json::from_slice::<Value>(&get("manifest.json").data).expect("manifest.json");
    let d = &docker.as_array().expect("array")[0];
    assert_eq!(
        d.get("Config").and_then(Value::as_str),
        Some(format!("blobs/sha256/{}", i1.config_digest().hex()).as_str())
    );
    assert_eq!(d.get("RepoTags"), Some(&json!(["openshell/claude:1.0"])));
    let layers: Vec<String> = i1.layers().iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect();
    assert_eq!(d.get("Layers"), Some(&json!(layers)));
    assert_eq!(get("oci-layout").data, br#"{"imageLayoutVersion":"1.0.0"}"#);
    assert_eq!(get("index.json").data, i1.index_bytes(&reference()).expect("index"));
    // Blob entries hold the blobs.
    for l in i1.layers() {
        let e = get(&format!("blobs/sha256/{}", l.digest.hex()));
        assert_eq!(Digest::sha256(&e.data), l.digest);
    }

    // Unpacked, it is a valid layout.
    let unpacked = f1.root.join("unpacked");
    tar::Archive::new(&bytes[..]).unpack(&unpacked).expect("unpack");
    verify_layout(&unpacked).expect("verify unpacked archive");
}

fn flip_byte(path: &Path, at: u64) {
    let mut data = fs::read(path).expect("read");
    let i = (at as usize).min(data.len() - 1);
    data[i] ^= 0x01;
    // Blobs hard-linked from the store are read-only: replace the file instead.
    let _ = fs::remove_file(path);
    fs::write(path, data).expect("write");
}

#[test]
fn verify_names_the_corrupt_blob() {
    let f = fixture();
    let image = build(&f.store, &common::sample_tree(&f.store, false));
    // A flipped byte in the middle of a layer.
    let out = f.root.join("out");
    write_layout(&f.store, &out, &image, &reference()).expect("layout");
    let layer = &image.layers()[1];
    flip_byte(&blob_path(&out, &layer.digest), layer.size / 2);
    let err = verify_layout(&out).expect_err("corrupt layer");
    match &err {
        LayoutError::Digest { path, role, expected, .. } => {
            assert_eq!(expected, &layer.digest);
            assert_eq!(role, "layer 1");
            assert!(path.ends_with(layer.digest.hex()));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&layer.digest.hex()), "{err}");
    // The store copy was not touched.
    f.store.verify(&layer.digest).expect("store intact");

    // A flipped byte in the gzip trailer and in the config.
    for (digest, role) in [(image.layers()[0].digest.clone(), "layer 0"), (image.config_digest().clone(), "config")] {
        let out = f.root.join(format!("out-{role}"));
        write_layout(&f.store, &out, &image, &reference()).expect("layout");
        let size = fs::metadata(blob_path(&out, &digest)).expect("meta").len();
        flip_byte(&blob_path(&out, &digest), size - 2);
        match verify_layout(&out).expect_err("corrupt") {
            LayoutError::Digest { role: r, expected, .. } => assert_eq!((r.as_str(), expected), (role, digest)),
            other => panic!("{role}: {other}"),
        }
    }
}

#[test]
fn verify_detects_a_diff_id_that_does_not_match() {
    let f = fixture();
    let image = build(&f.store, &common::sample_tree(&f.store, false));
    // Same blobs, but the config claims another diff_id: rewrite config and manifest.
    let mut layers = image.layers().to_vec();
    layers[2].diff_id = Digest::sha256(b"something else");
    let forged = Image::new(&config(), layers, &BTreeMap::new()).expect("image");
    let out = f.root.join("out");
    write_layout(&f.store, &out, &forged, &reference()).expect("layout");
    match verify_layout(&out).expect_err("diff_id") {
        LayoutError::DiffId { index, actual, .. } => {
            assert_eq!(index, 2);
            assert_eq!(actual, image.layers()[2].diff_id);
        }
        other => panic!("{other}"),
    }
}

fn layout_of(f: &Fixture, name: &str, tree: &Tree) -> PathBuf {
    let image = build(&f.store, tree);
    let out = f.root.join(name);
    write_layout(&f.store, &out, &image, &reference()).expect("layout");
    out
}

#[test]
fn diff_names_the_first_differing_path() {
    let f = fixture();
    let tree = common::sample_tree(&f.store, false);
    let a = layout_of(&f, "a", &tree);
    let same = layout_of(&f, "same", &common::sample_tree(&f.store, true));
    assert!(diff_layouts(&a, &same).expect("diff").is_identical());

    let claude = Origin::new("claude");
    // Content changed in the claude layer.
    let mut t = tree.clone();
    t.remove(&common::long_path());
    t.insert(&common::long_path(), Entry::file(0o644, ContentRef::bytes(&b"lonG"[..]), &claude)).expect("insert");
    let b = layout_of(&f, "content", &t);
    let d = diff_layouts(&a, &b).expect("diff");
    match &d {
        LayoutDiff::Differs {
            difference:
                Difference::Layer {
                    index: 2,
                    a_diff_id,
                    b_diff_id,
                    detail: LayerDiff::Entry { path, diff, a: Some(ea), b: Some(eb) },
                    ..
                },
            ..
        } => {
            assert_eq!(path, &common::long_path());
            assert_eq!(diff, &EntryDiff::Content { offset: 3 });
            assert_eq!(diff.field(), "content");
            assert_ne!(a_diff_id, b_diff_id);
            // Each side is named whole: its header's fields and its content's sha256.
            assert_eq!(eb.sha256, openshell_store::Digest::sha256(b"lonG"));
            assert_ne!(ea.sha256, eb.sha256);
            assert_eq!((ea.kind.as_str(), ea.mode, ea.mtime, ea.size), ("file", 0o644, 0, 4));
            assert_eq!((eb.kind.as_str(), eb.mode, eb.mtime, eb.size), ("file", 0o644, 0, 4));
        }
        other => panic!("{other}"),
    }
    assert!(d.to_string().contains(&common::long_path()), "{d}");

    // Mode changed.
    let mut t = tree.clone();
    t.remove("usr/bin/sudo");
    t.insert("usr/bin/sudo", Entry::file(0o755, ContentRef::bytes(&b"sudo"[..]), &Origin::new("debian")))
        .expect("insert");
    let d = diff_layouts(&a, &layout_of(&f, "mode", &t)).expect("diff");
    match d {
        LayoutDiff::Differs {
            difference: Difference::Layer { index: 0, detail: LayerDiff::Entry { path, diff, .. }, .. },
            ..
        } => {
            assert_eq!((path.as_str(), diff), ("usr/bin/sudo", EntryDiff::Mode { a: 0o4755, b: 0o755 }));
        }
        other => panic!("{other}"),
    }

    // A file added.
    let mut t = tree.clone();
    t.insert("etc/machine-id", Entry::file(0o444, ContentRef::bytes(&b"0123"[..]), &Origin::new("debian")))
        .expect("insert");
    let d = diff_layouts(&a, &layout_of(&f, "added", &t)).expect("diff");
    match d {
        LayoutDiff::Differs {
            difference: Difference::Layer { detail: LayerDiff::Entry { path, diff, a, b }, .. },
            ..
        } => {
            assert_eq!(path, "etc/machine-id");
            assert_eq!(diff, EntryDiff::OnlyInB { next: Some("etc/passwd".into()) });
            assert!(a.is_none(), "the first build has no such entry");
            let b = b.expect("the second build's entry");
            assert_eq!((b.mode, b.sha256), (0o444, openshell_store::Digest::sha256(b"0123")));
        }
        other => panic!("{other}"),
    }

    // Owner changed.
    let mut t = tree.clone();
    t.remove("home/sandbox/.profile");
    t.insert(
        "home/sandbox/.profile",
        Entry::file(0o600, ContentRef::bytes(&b"export A=1\n"[..]), &Origin::new("generated")).with_owner(1000, 1001),
    )
    .expect("insert");
    let d = diff_layouts(&a, &layout_of(&f, "owner", &t)).expect("diff");
    assert!(
        matches!(
            &d,
            LayoutDiff::Differs {
                difference: Difference::Layer {
                    index: 3,
                    detail: LayerDiff::Entry { diff: EntryDiff::Owner { .. }, .. },
                    ..
                },
                ..
            }
        ),
        "{d}"
    );

    // Symlink target changed.
    let mut t = tree.clone();
    t.remove("usr/bin/sh");
    t.insert("usr/bin/sh", Entry::symlink("bash", &Origin::new("debian"))).expect("insert");
    let d = diff_layouts(&a, &layout_of(&f, "link", &t)).expect("diff");
    assert!(
        matches!(
            &d,
            LayoutDiff::Differs {
                difference: Difference::Layer {
                    detail: LayerDiff::Entry { diff: EntryDiff::LinkTarget { .. }, .. },
                    ..
                },
                ..
            }
        ),
        "{d}"
    );
}

#[test]
fn diff_explains_config_and_manifest_only_changes() {
    let f = fixture();
    let tree = common::sample_tree(&f.store, false);
    let image = build(&f.store, &tree);
    let a = f.root.join("a");
    write_layout(&f.store, &a, &image, &reference()).expect("a");
    // Same layers, another Env.
    let mut cfg = config();
    cfg.env.push("DEBUG=1".into());
    let other = Image::new(&cfg, image.layers().to_vec(), &BTreeMap::new()).expect("image");
    let b = f.root.join("b");
    write_layout(&f.store, &b, &other, &reference()).expect("b");
    match diff_layouts(&a, &b).expect("diff") {
        LayoutDiff::Differs { difference: Difference::Config { pointer, a_value, b_value, .. }, .. } => {
            assert_eq!(pointer, "/config/Env/2");
            assert_eq!((a_value, b_value.as_deref()), (None, Some("\"DEBUG=1\"")));
        }
        other => panic!("{other}"),
    }
    // Same config, another manifest annotation.
    let mut ann = BTreeMap::new();
    ann.insert("org.opencontainers.image.version".to_owned(), "2".to_owned());
    let annotated = Image::new(&config(), image.layers().to_vec(), &ann).expect("image");
    let c = f.root.join("c");
    write_layout(&f.store, &c, &annotated, &reference()).expect("c");
    match diff_layouts(&a, &c).expect("diff") {
        LayoutDiff::Differs { difference: Difference::Manifest { pointer, .. }, .. } => {
            assert_eq!(pointer, "/annotations/org.opencontainers.image.version");
        }
        other => panic!("{other}"),
    }
    // Same image under another name.
    let d = f.root.join("d");
    write_layout(&f.store, &d, &image, &Reference::parse("other:2").expect("ref")).expect("d");
    assert!(matches!(
        diff_layouts(&a, &d).expect("diff"),
        LayoutDiff::Differs { difference: Difference::Index { .. }, .. }
    ));
    let (p, x, y) = first_json_diff(&json!([1]), &json!([1, 2]));
    assert_eq!((p.as_str(), x, y.as_deref()), ("/1", None, Some("2")));
}

#[test]
fn diff_reports_compression_only_changes() {
    // Recompress layer 0 with another gzip header byte: same diff_id, different blob.
    let f = fixture();
    let image = build(&f.store, &common::sample_tree(&f.store, false));
    let mut layers = image.layers().to_vec();
    let mut blob = Vec::new();
    f.store.open_verified(&layers[0].digest).expect("blob").read_to_end(&mut blob).expect("read");
    blob[9] = 3; // OS byte: Unix
    let d = f.store.insert_bytes(&blob).expect("insert");
    layers[0].digest = d;
    let other = Image::new(&config(), layers, &BTreeMap::new()).expect("image");
    let (a, b) = (f.root.join("a"), f.root.join("b"));
    write_layout(&f.store, &a, &image, &reference()).expect("a");
    write_layout(&f.store, &b, &other, &reference()).expect("b");
    verify_layout(&b).expect("still valid");
    assert!(matches!(
        diff_layouts(&a, &b).expect("diff"),
        LayoutDiff::Differs { difference: Difference::Layer { index: 0, detail: LayerDiff::CompressionOnly, .. }, .. }
    ));
}

/// A layout whose index names one manifest, which names `config` (each written as a
/// blob with its true digest and size).
fn hand_made_layout(dir: &Path, config: &str, layers: &str) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir");
    let blob = |bytes: &str| {
        let d = Digest::sha256(bytes.as_bytes());
        fs::write(blobs.join(d.hex()), bytes).expect("blob");
        (d, bytes.len())
    };
    let (cd, cs) = blob(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":{layers}}}"#
    );
    let (md, ms) = blob(&manifest);
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms}}}]}}"#
    );
    fs::write(dir.join("index.json"), index).expect("index");
    blobs.join(cd.hex())
}

fn field_error(dir: &Path) -> (PathBuf, String, String) {
    match read_layout(dir).expect_err("malformed") {
        LayoutError::Field { path, field, message } => (path, field, message),
        other => panic!("{other}"),
    }
}

/// Malformed documents are refused by the oci-spec types, naming the file and field.
#[test]
fn readers_name_the_file_and_the_field() {
    let f = fixture();
    let config = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let good = f.root.join("good");
    hand_made_layout(&good, config, "[]");
    assert_eq!(read_layout(&good).expect("a well-formed layout reads").images.len(), 1);

    let dir = f.root.join("no-rootfs");
    let cpath = hand_made_layout(&dir, r#"{"architecture":"amd64","os":"linux"}"#, "[]");
    let (path, field, message) = field_error(&dir);
    assert_eq!((path, field.as_str()), (cpath, ""));
    assert!(message.contains("missing field `rootfs`"), "{message}");

    let dir = f.root.join("bad-diff-id");
    let cpath = hand_made_layout(
        &dir,
        r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:00"]}}"#,
        r#"[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}]"#,
    );
    let (path, field, _) = field_error(&dir);
    assert_eq!((path, field.as_str()), (cpath, "rootfs.diff_ids[0]"));

    let dir = f.root.join("bad-layer");
    hand_made_layout(
        &dir,
        config,
        r#"[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:xyz","size":1}]"#,
    );
    let (path, field, message) = field_error(&dir);
    assert_eq!(field, "layers[0].digest", "{message}");
    assert!(path.starts_with(dir.join("blobs")), "{}", path.display());

    let dir = f.root.join("bad-index");
    hand_made_layout(&dir, config, "[]");
    let index = fs::read_to_string(dir.join("index.json")).expect("index");
    fs::write(dir.join("index.json"), index.replacen(r#""size":"#, r#""size":"x","ignored":"#, 1)).expect("write");
    let (path, field, _) = field_error(&dir);
    assert_eq!(field, "manifests[0].size");
    assert_eq!(path, dir.join("index.json"));
    let err = read_layout(&dir).expect_err("malformed").to_string();
    assert!(err.contains("index.json") && err.contains("manifests[0].size"), "{err}");
}
