//! `--compression zstd`: the same tars as gzip in zstd frames with fixed flags,
//! reproducible, recorded in the manifest, read back by the layout reader, and the
//! `zstd` command-line tool (Debian `zstd`, the reference decoder) as the oracle.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::process::Command;

use openshell_oci::compress::{COMPRESSOR, Compression, ZSTD_COMPRESSOR, ZSTD_MAGIC, ZSTD_MEDIA_TYPE};
use openshell_oci::image::ANNOTATION_COMPRESSOR;
use openshell_oci::layout::blob_path;
use openshell_oci::{
    Image, ImageConfig, ImageError, LayerInfo, LayerOptions, LayoutError, Reference, partition, read_layout,
    verify_layout, write_layer, write_layout,
};
use openshell_store::{Digest, Store};
use serde_json::Value;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    (dir, store)
}

fn layers(store: &Store, compression: Compression) -> Vec<LayerInfo> {
    let tree = common::sample_tree(store, false);
    let opts = LayerOptions { compression, ..LayerOptions::default() };
    partition(&tree, &common::origins())
        .expect("partition")
        .iter()
        .map(|plan| write_layer(store, plan, &opts).expect("layer"))
        .collect()
}

fn image(layers: Vec<LayerInfo>) -> Image {
    Image::new(&ImageConfig::default(), layers, &BTreeMap::new()).expect("image")
}

fn reference() -> Reference {
    Reference::parse("openshell/zstd:1").expect("reference")
}

#[test]
fn zstd_layers_hold_the_gzip_layers_tars() {
    let (_d, s) = store();
    let gz = layers(&s, Compression::Gzip);
    let zst = layers(&s, Compression::Zstd);
    assert_eq!(gz.len(), zst.len());
    for (g, z) in gz.iter().zip(&zst) {
        assert_eq!(g.diff_id, z.diff_id, "same tar");
        assert_eq!(g.uncompressed_size, z.uncompressed_size);
        assert_ne!(g.digest, z.digest, "another blob");
        assert_eq!(z.media_type, ZSTD_MEDIA_TYPE);
        let blob = fs::read(s.blob_path(&z.digest)).expect("blob");
        assert_eq!(blob.len() as u64, z.size);
        assert_eq!(blob[..4], ZSTD_MAGIC);
        // Frame header descriptor: no content size, not single-segment, checksum, no
        // dictionary id (RFC 8878, 3.1.1.1.1).
        assert_eq!(blob[4], 0b0000_0100, "frame header descriptor");
        assert_eq!(Digest::sha256(&common::layer_tar(&s, z)), z.diff_id);
    }
    // The manifest records the zstd compressor, not gzip's.
    let (gi, zi) = (image(gz), image(zst.clone()));
    assert_ne!(gi.manifest_digest(), zi.manifest_digest());
    assert_eq!(gi.config_bytes(), zi.config_bytes(), "same diff_ids, same config");
    let manifest: Value = serde_json::from_slice(zi.manifest_bytes()).expect("manifest");
    assert_eq!(manifest["annotations"][ANNOTATION_COMPRESSOR].as_str(), Some(ZSTD_COMPRESSOR));
    let manifest: Value = serde_json::from_slice(gi.manifest_bytes()).expect("manifest");
    assert_eq!(manifest["annotations"][ANNOTATION_COMPRESSOR].as_str(), Some(COMPRESSOR));
    // Another store, another run: the same bytes.
    let (_d2, s2) = store();
    let again = image(layers(&s2, Compression::Zstd));
    assert_eq!(again.manifest_digest(), zi.manifest_digest());
    assert_eq!(again.layers(), zi.layers());
}

#[test]
fn the_zstd_tool_decompresses_each_layer_to_its_diff_id() {
    let ok = Command::new("zstd").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`zstd` is not installed: install the Debian package `zstd` (.ci/run does)");
    let (_d, s) = store();
    for layer in layers(&s, Compression::Zstd) {
        let out = Command::new("zstd").args(["-d", "-c", "-q"]).arg(s.blob_path(&layer.digest)).output().expect("zstd");
        assert!(out.status.success(), "zstd -d: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(Digest::sha256(&out.stdout), layer.diff_id, "layer {:?}", layer.origin);
        let test = Command::new("zstd").args(["-t", "-q"]).arg(s.blob_path(&layer.digest)).output().expect("zstd -t");
        assert!(test.status.success(), "zstd -t (checksum): {}", String::from_utf8_lossy(&test.stderr));
    }
}

#[test]
fn a_zstd_layout_verifies_and_a_corrupt_frame_is_named() {
    let (d, s) = store();
    let zst = layers(&s, Compression::Zstd);
    let good = image(zst.clone());
    let out = d.path().join("good");
    write_layout(&s, &out, &good, &reference()).expect("layout");
    let layout = read_layout(&out).expect("read");
    assert_eq!(
        layout.images[0].layers.iter().map(|l| l.media_type.to_string()).collect::<Vec<_>>(),
        vec![ZSTD_MEDIA_TYPE.to_owned(); zst.len()]
    );
    let report = verify_layout(&out).expect("verify");
    assert_eq!(report.uncompressed_bytes, zst.iter().map(|l| l.uncompressed_size).sum::<u64>());

    // Layer 1 with a byte flipped inside its frame, stored under its own digest: the
    // descriptor is right, the frame is not.
    let mut blob = Vec::new();
    s.open_verified(&zst[1].digest).expect("blob").read_to_end(&mut blob).expect("read");
    let mid = blob.len() / 2;
    blob[mid] ^= 0x20;
    let mut bad = zst.clone();
    bad[1].digest = s.insert_bytes(&blob).expect("insert");
    let out = d.path().join("bad");
    write_layout(&s, &out, &image(bad.clone()), &reference()).expect("layout");
    let err = verify_layout(&out).expect_err("a corrupt zstd frame");
    match &err {
        LayoutError::Decompress { index, path, .. } => {
            assert_eq!(*index, 1);
            assert_eq!(path, &blob_path(&out, &bad[1].digest));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("layer 1") && err.to_string().contains(&bad[1].digest.hex()), "{err}");
}

#[test]
fn one_image_has_one_compression() {
    let (_d, s) = store();
    let mut mixed = layers(&s, Compression::Gzip);
    mixed[2] = layers(&s, Compression::Zstd).swap_remove(2);
    let err = Image::new(&ImageConfig::default(), mixed.clone(), &BTreeMap::new()).expect_err("mixed");
    assert!(matches!(&err, ImageError::LayerCompression { layer, .. } if *layer == mixed[2].digest), "{err}");
}
