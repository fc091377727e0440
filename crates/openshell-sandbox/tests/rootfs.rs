//! Layer cache and overlay: layers unpacked once per diff_id (modes, owners,
//! setuid, links kept), diff_ids verified, an overlay whose writes land in the
//! sandbox's upper directory only. Needs root (CI runs as root).

use openshell_oci::compress::Compression;
use openshell_oci::{
    ContentRef, Entry, EntryKind, LayerInfo, LayerOptions, OnConflict, Origin, Tree, partition, write_layer,
};
use openshell_sandbox::idmap::IdMap;
use openshell_sandbox::rootfs::{LayerCache, LayerOwners, Overlay, OverlayIds, RootfsError};
use openshell_store::{Digest, Store, StoreError};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test mounts overlays and sets owners: run it as root (CI does)"
    );
}

fn file(mode: u32, data: &[u8], uid: u32, origin: &Origin) -> Entry {
    Entry {
        kind: EntryKind::File { mode, content: ContentRef::bytes(data.to_vec()) },
        uid,
        gid: uid,
        origin: origin.clone(),
    }
}

fn image(store: &Store) -> Vec<LayerInfo> {
    image_with(store, Compression::Gzip)
}

fn image_with(store: &Store, compression: Compression) -> Vec<LayerInfo> {
    let (base, top) = (Origin::new("base"), Origin::new("top"));
    let mut tree = Tree::new(OnConflict::Error);
    tree.insert("etc/base", file(0o644, b"base\n", 0, &base)).expect("insert");
    tree.insert("usr/bin/tool", file(0o4755, b"#!/bin/false\n", 0, &base)).expect("insert");
    tree.insert(
        "usr/bin/tool-link",
        Entry { kind: EntryKind::Symlink { target: "tool".into() }, uid: 0, gid: 0, origin: base.clone() },
    )
    .expect("insert");
    tree.insert("sandbox", Entry { kind: EntryKind::Dir { mode: 0o755 }, uid: 1000, gid: 1000, origin: top.clone() })
        .expect("insert");
    tree.insert("etc/top", file(0o600, b"top\n", 1000, &top)).expect("insert");
    partition(&tree, &[base, top])
        .expect("partition")
        .iter()
        .map(|p| write_layer(store, p, &LayerOptions { compression, ..LayerOptions::default() }).expect("layer"))
        .collect()
}

#[test]
fn layers_unpack_once_and_overlay_isolates_writes() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let layers = image(&store);
    let cache = LayerCache::open(dir.path().join("layers")).expect("cache");
    let paths: Vec<_> = layers.iter().map(|l| cache.ensure(&store, &l.digest, &l.diff_id).expect("unpack")).collect();
    // A second call reuses the directory (same inode: not unpacked again).
    let again = cache.ensure(&store, &layers[0].digest, &layers[0].diff_id).expect("again");
    assert_eq!(std::fs::metadata(&again).expect("meta").ino(), std::fs::metadata(&paths[0]).expect("meta").ino());
    let tool = std::fs::metadata(paths[0].join("usr/bin/tool")).expect("tool");
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(std::fs::read_link(paths[0].join("usr/bin/tool-link")).expect("link").to_str(), Some("tool"));
    assert_eq!(std::fs::metadata(paths[1].join("sandbox")).expect("home").uid(), 1000);

    let sandbox = dir.path().join("sandbox-1");
    let overlay = Overlay {
        layers: paths.clone(),
        upper: sandbox.join("upper"),
        work: sandbox.join("work"),
        target: sandbox.join("rootfs"),
        ids: None,
    };
    overlay.mount().expect("mount");
    let root = &overlay.target;
    let result = std::panic::catch_unwind(|| {
        let flags = rustix::fs::statvfs(root).expect("statvfs").f_flag;
        assert!(flags.contains(rustix::fs::StatVfsMountFlags::NODEV), "image device nodes are not devices: {flags:?}");
        assert_eq!(std::fs::read(root.join("etc/base")).expect("base"), b"base\n");
        assert_eq!(std::fs::read(root.join("etc/top")).expect("top"), b"top\n");
        std::fs::write(root.join("sandbox/work.txt"), b"mine").expect("write");
        std::fs::write(root.join("etc/base"), b"changed").expect("copy-up");
    });
    overlay.unmount().expect("unmount");
    result.expect("checks inside the overlay");
    assert_eq!(std::fs::read(sandbox.join("upper/sandbox/work.txt")).expect("upper"), b"mine");
    assert_eq!(std::fs::read(paths[0].join("etc/base")).expect("cache"), b"base\n", "the shared cache is untouched");
    assert!(!paths[1].join("sandbox/work.txt").exists());
}

#[test]
fn wrong_diff_id_is_refused_and_nothing_is_cached() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let layers = image(&store);
    let cache = LayerCache::open(dir.path().join("layers")).expect("cache");
    let wrong = Digest::sha256(b"not this layer");
    let e = cache.ensure(&store, &layers[0].digest, &wrong).expect_err("mismatch");
    assert!(matches!(e, RootfsError::DiffId { .. }), "{e}");
    assert!(!cache.path(&wrong).exists());
    assert_eq!(std::fs::read_dir(dir.path().join("layers")).expect("dir").count(), 0, "temporary directories removed");
}

#[test]
fn concurrent_unpacks_of_one_layer() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let layers = image(&store);
    let cache = LayerCache::open(dir.path().join("layers")).expect("cache");
    let l = layers[0].clone();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (cache, store, l) = (cache.clone(), store.clone(), l.clone());
            std::thread::spawn(move || cache.ensure(&store, &l.digest, &l.diff_id).expect("ensure"))
        })
        .collect();
    let paths: Vec<_> = handles.into_iter().map(|h| h.join().expect("join")).collect();
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(std::fs::read_dir(dir.path().join("layers")).expect("dir").count(), 1, "one directory, no leftovers");
}

/// Issue 12 point 3: a sandbox with a user namespace sees its layers' owners
/// through its range, both ways the runtime can give it them: idmapped mounts of
/// the shared layers (the cache keeps the image's owners), and layers unpacked
/// with shifted owners (the fallback). What the sandbox writes lands in the upper
/// directory under host ids of the range. Owners are compared as the host sees
/// them (base + the image's id).
#[test]
fn layers_are_seen_through_the_sandbox_range_idmapped_or_shifted() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let layers = image(&store);
    let cache = LayerCache::open(dir.path().join("layers")).expect("cache");
    let map = IdMap::parse("1879048192").expect("range");
    let base = map.uids.host;
    assert!(
        openshell_sandbox::rootfs::idmapped_overlay_works(&dir.path().join("layers"), &map),
        "this kernel (>= 5.19 with overlayfs idmapped layers) and filesystem idmap layers"
    );
    let plain: Vec<_> = layers.iter().map(|l| cache.ensure(&store, &l.digest, &l.diff_id).expect("unpack")).collect();
    let shifted: Vec<_> =
        layers.iter().map(|l| cache.ensure_shifted(&store, &l.digest, &l.diff_id, &map).expect("unpack")).collect();
    assert_eq!(std::fs::metadata(plain[0].join("etc/base")).expect("meta").uid(), 0, "the shared cache is the image's");
    let tool = std::fs::metadata(shifted[0].join("usr/bin/tool")).expect("meta");
    assert_eq!((tool.uid(), tool.mode() & 0o7777), (base, 0o4755), "shifted, setuid kept");
    assert_eq!(std::fs::symlink_metadata(shifted[0].join("usr/bin/tool-link")).expect("link").uid(), base);
    for (name, paths, owners) in [
        ("idmapped", plain, LayerOwners::Idmapped { staging: dir.path().join("lower") }),
        ("shifted", shifted, LayerOwners::Shifted),
    ] {
        let sandbox = dir.path().join(name);
        let overlay = Overlay {
            layers: paths,
            upper: sandbox.join("upper"),
            work: sandbox.join("work"),
            target: sandbox.join("rootfs"),
            ids: Some(OverlayIds { map, layers: owners }),
        };
        overlay.mount().unwrap_or_else(|e| panic!("{name}: {e}"));
        let root = overlay.target.clone();
        let seen = std::panic::catch_unwind(|| {
            let uid = |p: &str| std::fs::symlink_metadata(root.join(p)).expect(p).uid();
            (uid("etc/base"), uid("usr/bin/tool"), uid("sandbox"), uid("etc/top"), uid(""))
        });
        overlay.unmount().expect("unmount");
        assert_eq!(seen.expect("stat"), (base, base, base + 1000, base + 1000, base), "{name}");
        assert_eq!(
            std::fs::metadata(&overlay.upper).expect("upper").uid(),
            base,
            "{name}: the upper root is its root's"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path().join("lower/0")).expect("lower").count(), 0, "idmapped mounts are gone");
}

/// A layer blob changed on disk after the build is refused by name when a rootfs is
/// prepared from it, even when its uncompressed content (its diff_id) is unchanged:
/// a different gzip header byte, or bytes after the gzip stream. An intact layer of
/// the same image unpacks (the positive control).
#[test]
fn layer_blobs_altered_on_disk_are_refused() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let layers = image(&store);
    let blob = store.blob_path(&layers[0].digest);
    let original = std::fs::read(&blob).expect("blob");
    let mut other_os = original.clone();
    other_os[9] ^= 0x01;
    let mut trailing = original.clone();
    trailing.extend_from_slice(b"appended");
    for altered in [other_os, trailing] {
        std::fs::remove_file(&blob).expect("unlink");
        std::fs::write(&blob, &altered).expect("alter");
        let store = Store::open(dir.path().join("store")).expect("a new handle");
        let cache = LayerCache::open(dir.path().join("layers")).expect("cache");
        cache.ensure(&store, &layers[1].digest, &layers[1].diff_id).expect("the intact layer unpacks");
        let e = cache.ensure(&store, &layers[0].digest, &layers[0].diff_id).expect_err("altered layer");
        assert!(
            matches!(&e, RootfsError::Store(StoreError::Altered { digest, .. }) if *digest == layers[0].digest),
            "{e}"
        );
        assert!(e.to_string().contains(&layers[0].digest.to_string()), "{e}");
        assert!(!cache.path(&layers[0].diff_id).exists(), "nothing cached");
    }
}

/// zstd layers unpack to the same files as gzip ones (same diff_ids); one whose frame
/// is corrupt (stored under its own digest, so only the frame is wrong) is refused,
/// naming the blob, and nothing is cached.
#[test]
fn zstd_layers_unpack_and_a_corrupt_frame_is_refused() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let gzip = image(&store);
    let zstd = image_with(&store, Compression::Zstd);
    let cache = LayerCache::open(dir.path().join("layers")).expect("cache");
    for (g, z) in gzip.iter().zip(&zstd) {
        assert_eq!(g.diff_id, z.diff_id);
        let path = cache.ensure(&store, &z.digest, &z.diff_id).expect("zstd layer unpacks");
        assert_eq!(path, cache.path(&g.diff_id));
    }
    let paths: Vec<_> = zstd.iter().map(|l| cache.path(&l.diff_id)).collect();
    assert_eq!(std::fs::read(paths[0].join("etc/base")).expect("base"), b"base\n");
    assert_eq!(std::fs::metadata(paths[0].join("usr/bin/tool")).expect("tool").permissions().mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::metadata(paths[1].join("etc/top")).expect("top").uid(), 1000);

    let mut blob = std::fs::read(store.blob_path(&zstd[0].digest)).expect("blob");
    let mid = blob.len() / 2;
    blob[mid] ^= 0x20;
    let corrupt = store.insert_bytes(&blob).expect("insert");
    let fresh = LayerCache::open(dir.path().join("fresh")).expect("cache");
    let e = fresh.ensure(&store, &corrupt, &zstd[0].diff_id).expect_err("corrupt frame");
    assert!(matches!(&e, RootfsError::Unpack { blob, .. } if *blob == corrupt), "{e}");
    assert!(e.to_string().contains(&corrupt.to_string()), "{e}");
    assert!(!fresh.path(&zstd[0].diff_id).exists(), "nothing cached");
}
