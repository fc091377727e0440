//! Pins of the exact bytes and digests `openshell build` writes for a config, a
//! manifest, an index and docker's `manifest.json`, taken from the builder before it
//! moved to oci-spec types: whatever serializes these documents must keep every byte.
//!
//! `full` exercises every config field, escapes (quote, tab, a control character,
//! non-ASCII) and label keys whose UTF-16 order differs from their UTF-8 order;
//! `bare` the empty cases (no layers, no history, an empty `Entrypoint` kept, the
//! `config` object present with nothing else) and an architecture (`armbe`) that
//! oci-spec's `Arch` does not round-trip.

mod common;

use std::collections::BTreeMap;
use std::fs;

use openshell_oci::layer::LAYER_MEDIA_TYPE;
use openshell_oci::{
    Image, ImageConfig, LayerInfo, LayerOptions, Reference, partition, read_layout, write_archive, write_layer,
    write_layout,
};
use openshell_store::{Digest, Store};

const FULL_CONFIG: &str = r##"{"architecture":"amd64","config":{"Cmd":["echo hi"],"Entrypoint":["/bin/sh","-c"],"Env":["PATH=/usr/bin:/bin","GREETING=a \"quoted\"\ttab\u0001 é"],"Labels":{"a":"1","org.opencontainers.image.title":"sandbox","😀":"smile","ﬁ":"ligature"},"User":"1000:1000","WorkingDir":"/home/sandbox"},"created":"2023-11-14T22:13:20Z","history":[{"created":"2023-11-14T22:13:20Z","created_by":"openshell build: layer `debian`"},{"created":"2023-11-14T22:13:20Z","created_by":"openshell build: layer"}],"os":"linux","rootfs":{"diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111","sha256:2222222222222222222222222222222222222222222222222222222222222222"],"type":"layers"}}"##;
const FULL_CONFIG_DIGEST: &str = "sha256:51ffe0bdbbfacdee76482d6f5d0a4e9c76a60ef57d76210b7616603f3ae1ee0d";
const FULL_MANIFEST: &str = r##"{"annotations":{"dev.openshell.layer.compressor":"gzip (rfc1952: mtime 0, no name, xfl 0, os 255, one member); deflate: zlib-rs 0.6.8 via flate2 1.1.11, level 6, single stream, single thread","dev.openshell.layer.format":"tar: POSIX.1-2001 pax (ustar headers, `x` records only for fields that do not fit), sorted by path bytes, numeric owners, empty uname/gname, no xattrs","dev.openshell.lockfile.definition":"cafe","org.opencontainers.image.ref.name":"1.0"},"config":{"digest":"sha256:51ffe0bdbbfacdee76482d6f5d0a4e9c76a60ef57d76210b7616603f3ae1ee0d","mediaType":"application/vnd.oci.image.config.v1+json","size":693},"layers":[{"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":1234},{"digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":56}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"##;
const FULL_MANIFEST_DIGEST: &str = "sha256:2891d640cb509800284317c92291510634b505fe138338a7138d1e0d9a54fa4c";
const FULL_INDEX: &str = r##"{"manifests":[{"annotations":{"io.containerd.image.name":"docker.io/openshell/claude:1.0","org.opencontainers.image.ref.name":"1.0"},"digest":"sha256:2891d640cb509800284317c92291510634b505fe138338a7138d1e0d9a54fa4c","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"amd64","os":"linux"},"size":1014}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"##;
const FULL_INDEX_DIGEST: &str = "sha256:1a643bda04854fa191ba7e7dffa111b10f9c1ff4eea9bd79872598cad19c0c68";
const FULL_DOCKER: &str = r##"[{"Config":"blobs/sha256/51ffe0bdbbfacdee76482d6f5d0a4e9c76a60ef57d76210b7616603f3ae1ee0d","Layers":["blobs/sha256/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","blobs/sha256/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"],"RepoTags":["openshell/claude:1.0"]}]"##;
const FULL_DOCKER_DIGEST: &str = "sha256:27201c52aee4945018a69a1b4f67a3bad387c8a3f84b08053ce88efe2371e4af";
const BARE_CONFIG: &str = r##"{"architecture":"armbe","config":{"Entrypoint":[]},"created":"1970-01-01T00:00:00Z","history":[],"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"##;
const BARE_CONFIG_DIGEST: &str = "sha256:1cd94d2db1145401be0e0534dbe79ae963f71ecd7912236977fa2010da70be62";
const BARE_MANIFEST: &str = r##"{"annotations":{"dev.openshell.layer.compressor":"gzip (rfc1952: mtime 0, no name, xfl 0, os 255, one member); deflate: zlib-rs 0.6.8 via flate2 1.1.11, level 6, single stream, single thread","dev.openshell.layer.format":"tar: POSIX.1-2001 pax (ustar headers, `x` records only for fields that do not fit), sorted by path bytes, numeric owners, empty uname/gname, no xattrs"},"config":{"digest":"sha256:1cd94d2db1145401be0e0534dbe79ae963f71ecd7912236977fa2010da70be62","mediaType":"application/vnd.oci.image.config.v1+json","size":151},"layers":[],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"##;
const BARE_MANIFEST_DIGEST: &str = "sha256:77092cf274c653958266476500639617fffba859921a35d96273cb6f5b143df8";
const BARE_INDEX: &str = r##"{"manifests":[{"annotations":{"io.containerd.image.name":"localhost:5000/bare:latest","org.opencontainers.image.ref.name":"latest"},"digest":"sha256:77092cf274c653958266476500639617fffba859921a35d96273cb6f5b143df8","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{"architecture":"armbe","os":"linux"},"size":622}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"##;
const BARE_INDEX_DIGEST: &str = "sha256:dc5b259a2f1b12e4441c9ed3d0fe3df52e6aebf2427fc24d197caffaaebfbb1b";
const BARE_DOCKER: &str = r##"[{"Config":"blobs/sha256/1cd94d2db1145401be0e0534dbe79ae963f71ecd7912236977fa2010da70be62","Layers":[],"RepoTags":["localhost:5000/bare:latest"]}]"##;
const BARE_ARCHIVE_DIGEST: &str = "sha256:dd439aa1a31be24b304bb4e2d84573a9cd9d6256dc7246ee5b7b5ff186fc110b";
const BARE_ARCHIVE_SIZE: u64 = 7680;
const SAMPLE_MANIFEST_DIGEST: &str = "sha256:c812c571360a76c3c1a9582dd762866bbe8f2eb0a08ec80873f3ca62727d0f94";
const BARE_DOCKER_DIGEST: &str = "sha256:f7cedfe041bd0781a99ad7aee281958e3908d019ca83e89e0e0ef67e66ce6a7b";

fn digest(byte: &str) -> Digest {
    format!("sha256:{}", byte.repeat(32)).parse().expect("digest")
}

fn layer(origin: Option<&str>, diff_id: &str, blob: &str, size: u64) -> LayerInfo {
    LayerInfo {
        origin: origin.map(str::to_owned),
        diff_id: digest(diff_id),
        digest: digest(blob),
        size,
        uncompressed_size: size * 4,
        media_type: LAYER_MEDIA_TYPE,
    }
}

fn full_config() -> ImageConfig {
    let labels = BTreeMap::from(
        [("org.opencontainers.image.title", "sandbox"), ("\u{fb01}", "ligature"), ("\u{1f600}", "smile"), ("a", "1")]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        user: Some("1000:1000".into()),
        env: vec!["PATH=/usr/bin:/bin".into(), "GREETING=a \"quoted\"\ttab\u{1} é".into()],
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["echo hi".into()]),
        working_dir: Some("/home/sandbox".into()),
        labels,
        created: 1_700_000_000,
    }
}

fn full() -> (Image, Reference) {
    let config = full_config();
    let annotations = BTreeMap::from(
        [("org.opencontainers.image.ref.name", "1.0"), ("dev.openshell.lockfile.definition", "cafe")]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let layers = vec![layer(Some("debian"), "11", "aa", 1234), layer(None, "22", "bb", 56)];
    (
        Image::new(&config, layers, &annotations).expect("image"),
        Reference::parse("openshell/claude:1.0").expect("reference"),
    )
}

fn bare() -> (Image, Reference) {
    let config = ImageConfig { architecture: "armbe".into(), entrypoint: Some(Vec::new()), ..ImageConfig::default() };
    (
        Image::new(&config, Vec::new(), &BTreeMap::new()).expect("image"),
        Reference::parse("localhost:5000/bare").expect("reference"),
    )
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8")
}

/// Each document's bytes, then its digest (a changed byte shows as a text diff first).
fn check(image: &Image, reference: &Reference, pins: [(&str, &str); 4]) {
    let [(config, config_digest), (manifest, manifest_digest), (index, index_digest), (docker, docker_digest)] = pins;
    assert_eq!(text(image.config_bytes()), config);
    assert_eq!(image.config_digest().to_string(), config_digest);
    assert_eq!(Digest::sha256(image.config_bytes()).to_string(), config_digest);
    assert_eq!(text(image.manifest_bytes()), manifest);
    assert_eq!(image.manifest_digest().to_string(), manifest_digest);
    assert_eq!(Digest::sha256(image.manifest_bytes()).to_string(), manifest_digest);
    let index_bytes = image.index_bytes(reference).expect("index");
    assert_eq!(text(&index_bytes), index);
    assert_eq!(Digest::sha256(&index_bytes).to_string(), index_digest);
    let docker_bytes = image.docker_manifest_bytes(reference).expect("manifest.json");
    assert_eq!(text(&docker_bytes), docker);
    assert_eq!(Digest::sha256(&docker_bytes).to_string(), docker_digest);
}

#[test]
fn full_image_documents_are_pinned() {
    let (image, reference) = full();
    check(
        &image,
        &reference,
        [
            (FULL_CONFIG, FULL_CONFIG_DIGEST),
            (FULL_MANIFEST, FULL_MANIFEST_DIGEST),
            (FULL_INDEX, FULL_INDEX_DIGEST),
            (FULL_DOCKER, FULL_DOCKER_DIGEST),
        ],
    );
}

#[test]
fn bare_image_documents_are_pinned() {
    let (image, reference) = bare();
    check(
        &image,
        &reference,
        [
            (BARE_CONFIG, BARE_CONFIG_DIGEST),
            (BARE_MANIFEST, BARE_MANIFEST_DIGEST),
            (BARE_INDEX, BARE_INDEX_DIGEST),
            (BARE_DOCKER, BARE_DOCKER_DIGEST),
        ],
    );
}

/// The bare image (no layer blobs, so an empty store) written as a layout and as an
/// archive: the files are the pinned documents, the archive's bytes are pinned, and
/// the layout reads back to the same digests.
#[test]
fn bare_image_layout_and_archive_are_pinned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let (image, reference) = bare();
    let out = dir.path().join("layout");
    let manifest = write_layout(&store, &out, &image, &reference).expect("layout");
    assert_eq!(manifest.to_string(), BARE_MANIFEST_DIGEST);
    assert_eq!(text(&fs::read(out.join("index.json")).expect("index.json")), BARE_INDEX);
    assert_eq!(text(&fs::read(out.join("oci-layout")).expect("oci-layout")), r#"{"imageLayoutVersion":"1.0.0"}"#);
    let blob = |d: &str| fs::read(out.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).expect("blob");
    assert_eq!(text(&blob(BARE_CONFIG_DIGEST)), BARE_CONFIG);
    assert_eq!(text(&blob(BARE_MANIFEST_DIGEST)), BARE_MANIFEST);
    let layout = read_layout(&out).expect("read back");
    assert_eq!(layout.images.len(), 1);
    assert_eq!(layout.images[0].manifest.digest.to_string(), BARE_MANIFEST_DIGEST);
    assert_eq!(layout.images[0].config.digest.to_string(), BARE_CONFIG_DIGEST);
    let archive = write_archive(&store, &dir.path().join("bare.tar"), &image, &reference).expect("archive");
    assert_eq!((archive.digest.to_string().as_str(), archive.size), (BARE_ARCHIVE_DIGEST, BARE_ARCHIVE_SIZE));
}

/// The sample tree's image (real layers through the fixed tar writer and compressor):
/// its manifest digest.
#[test]
fn sample_tree_image_digest_is_pinned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let layers = partition(&common::sample_tree(&store, false), &common::origins())
        .expect("partition")
        .iter()
        .map(|plan| write_layer(&store, plan, &LayerOptions::default()).expect("layer"))
        .collect();
    let image = Image::new(&full_config(), layers, &BTreeMap::new()).expect("image");
    assert_eq!(image.manifest_digest().to_string(), SAMPLE_MANIFEST_DIGEST);
}
