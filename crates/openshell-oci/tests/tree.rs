//! The tree model: normalization, parents, conflicts, tar import.

mod common;

use openshell_oci::partition::whole;
use openshell_oci::tree::normalize_path;
use openshell_oci::{
    ContentRef, Entry, EntryKind, LayerOptions, OnConflict, Origin, TarImport, Tree, TreeError, write_tar,
};
use openshell_store::Store;

fn bytes(b: &'static [u8]) -> ContentRef {
    ContentRef::bytes(b)
}

#[test]
fn paths_are_normalized_and_bad_ones_refused() {
    assert_eq!(normalize_path("/usr/bin/").expect("ok"), "usr/bin");
    assert_eq!(normalize_path("./usr//./bin").expect("ok"), "usr/bin");
    for bad in ["", "/", "./", "a/../b", "..", "a\0b", &"x".repeat(256)] {
        assert!(matches!(normalize_path(bad), Err(TreeError::InvalidPath { .. })), "{bad:?}");
    }
    let long = vec!["abc"; 1100].join("/");
    assert!(normalize_path(&long).is_err(), "over PATH_MAX");
}

#[test]
fn parents_are_created_explicitly_and_replaced_by_explicit_dirs() {
    let o = Origin::new("debian");
    let mut t = Tree::new(OnConflict::Error);
    t.insert("/usr/share/doc/x/copyright", Entry::file(0o644, bytes(b"c"), &o)).expect("insert");
    let paths: Vec<&str> = t.iter().map(|(p, _, _)| p).collect();
    assert_eq!(paths, ["usr", "usr/share", "usr/share/doc", "usr/share/doc/x", "usr/share/doc/x/copyright"]);
    assert!(t.is_implicit("usr/share"));
    assert_eq!(t.get("usr/share").expect("dir").kind, EntryKind::Dir { mode: 0o755 });
    // An explicit directory over an implicit one is not a conflict.
    t.insert("usr/share", Entry::dir(0o775, &o).with_owner(0, 50)).expect("explicit dir");
    assert!(!t.is_implicit("usr/share"));
    assert_eq!(t.get("usr/share").expect("dir").gid, 50);
    assert!(t.conflicts().is_empty());
}

#[test]
fn identical_entries_are_not_conflicts_but_different_ones_are() {
    let deb = Origin::new("debian");
    let node = Origin::new("node");
    let mut t = Tree::new(OnConflict::Error);
    t.insert("usr/share/doc", Entry::dir(0o755, &deb)).expect("dir");
    t.insert("usr/share/doc", Entry::dir(0o755, &node)).expect("same dir from another origin");
    t.insert("etc/x", Entry::file(0o644, bytes(b"1"), &deb)).expect("file");
    t.insert("etc/x", Entry::file(0o644, bytes(b"1"), &node)).expect("identical file");
    assert_eq!(t.get("etc/x").expect("x").origin, deb, "the first origin is kept");
    let err = t.insert("etc/x", Entry::file(0o644, bytes(b"2"), &node)).expect_err("conflict");
    match &err {
        TreeError::Conflict { path, existing, new, .. } => {
            assert_eq!((path.as_str(), existing.as_str(), new.as_str()), ("etc/x", "debian", "node"));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("debian") && err.to_string().contains("node"));
}

#[test]
fn replace_policy_records_conflicts_with_both_origins() {
    let deb = Origin::new("debian");
    let gen_ = Origin::new("generated");
    let mut t = Tree::new(OnConflict::Replace);
    t.insert("etc/hosts", Entry::file(0o644, bytes(b"a"), &deb)).expect("a");
    t.insert("etc/hosts", Entry::symlink("/run/hosts", &gen_)).expect("b");
    assert_eq!(t.get("etc/hosts").expect("hosts").kind, EntryKind::Symlink { target: "/run/hosts".into() });
    let c = &t.conflicts()[0];
    assert_eq!((c.existing.as_str(), c.replacement.as_str()), ("debian", "generated"));
    assert_eq!((c.existing_type, c.replacement_type), ("file", "symlink"));
    assert!(c.to_string().contains("etc/hosts"));
    // A directory with entries cannot be replaced by a file even under Replace.
    let err = t.insert("etc", Entry::file(0o644, bytes(b"x"), &gen_)).expect_err("dir not empty");
    assert!(matches!(err, TreeError::DirNotEmpty { .. }), "{err}");
}

#[test]
fn parent_that_is_not_a_directory_is_refused() {
    let deb = Origin::new("debian");
    let node = Origin::new("node");
    let mut t = Tree::new(OnConflict::Error);
    t.insert("bin", Entry::symlink("usr/bin", &deb)).expect("usrmerge link");
    let err = t.insert("bin/node", Entry::file(0o755, bytes(b"x"), &node)).expect_err("through a symlink");
    match err {
        TreeError::ParentNotDir { parent, parent_type, parent_origin, origin, .. } => {
            assert_eq!((parent.as_str(), parent_type), ("bin", "symlink"));
            assert_eq!((parent_origin.as_str(), origin.as_str()), ("debian", "node"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn modes_and_symlinks_are_validated() {
    let o = Origin::new("x");
    let mut t = Tree::new(OnConflict::Error);
    assert!(matches!(
        t.insert("a", Entry::file(0o100644, bytes(b""), &o)),
        Err(TreeError::InvalidMode { mode: 0o100644, .. })
    ));
    assert!(matches!(t.insert("b", Entry::symlink("", &o)), Err(TreeError::InvalidSymlink { .. })));
    assert!(matches!(t.insert("c", Entry::hardlink("/c", &o)), Err(TreeError::InvalidPath { .. })));
}

#[test]
fn remove_drops_a_subtree() {
    let o = Origin::new("x");
    let mut t = Tree::new(OnConflict::Error);
    t.insert("var/lib/apt/lists/a", Entry::file(0o644, bytes(b"a"), &o)).expect("a");
    t.insert("var/lib/apt/lists/b", Entry::file(0o644, bytes(b"b"), &o)).expect("b");
    t.insert("var/lib/aptitude", Entry::file(0o644, bytes(b"c"), &o)).expect("c");
    assert_eq!(t.remove("/var/lib/apt/lists"), 3);
    assert!(t.get("var/lib/aptitude").is_some());
    assert!(t.get("var/lib/apt").is_some());
}

fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().expect("tar")
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(1001);
    h.set_gid(1002);
    h.set_mtime(123_456);
    h.set_cksum();
    h
}

#[test]
fn import_tar_references_members_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let data = tar_with(|b| {
        let long = format!("package/{}", "l".repeat(150));
        b.append_data(&mut header(tar::EntryType::Directory, 0, 0o755), "package/", &[][..]).expect("dir");
        b.append_data(&mut header(tar::EntryType::Regular, 5, 0o4755), "package/bin/x", &b"hello"[..]).expect("x");
        b.append_data(&mut header(tar::EntryType::Regular, 3, 0o644), &long, &b"abc"[..]).expect("long");
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut h, "package/bin/y", "x").expect("symlink");
        let mut h = header(tar::EntryType::Link, 0, 0o755);
        b.append_link(&mut h, "package/bin/z", "package/bin/x").expect("hardlink");
    });
    let digest = store.insert_bytes(&data).expect("store");
    let origin = Origin::new("claude");
    let mut t = Tree::new(OnConflict::Error);
    let opts = TarImport { strip_components: 1, prefix: "usr/lib/node_modules/pkg".into(), owner: Some((0, 0)) };
    assert_eq!(t.import_tar(&store, &digest, &origin, &opts).expect("import"), 4);
    let x = t.get("usr/lib/node_modules/pkg/bin/x").expect("x");
    match &x.kind {
        EntryKind::File { mode, content: ContentRef::Blob { digest: d, offset, len } } => {
            assert_eq!((*mode, d, *len), (0o4755, &digest, 5));
            assert_eq!(&data[*offset as usize..*offset as usize + 5], b"hello");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((x.uid, x.gid), (0, 0));
    assert_eq!(
        t.get("usr/lib/node_modules/pkg/bin/z").expect("z").kind,
        EntryKind::Hardlink { to: "usr/lib/node_modules/pkg/bin/x".into() }
    );
    assert_eq!(t.get("usr/lib/node_modules/pkg/bin/y").expect("y").kind, EntryKind::Symlink { target: "x".into() });
    // The layer carries the member's bytes.
    let mut out = Vec::new();
    write_tar(&store, &whole(&t).expect("plan"), &LayerOptions::default(), &mut out).expect("tar");
    let entries = common::raw_entries(&out);
    let x = entries.iter().find(|e| e.path == "usr/lib/node_modules/pkg/bin/x").expect("x");
    assert_eq!(x.data, b"hello");
    let long = entries.iter().find(|e| e.path.ends_with(&"l".repeat(150))).expect("long");
    assert_eq!(long.data, b"abc");

    // Without an owner override, the archive's numeric ids are kept.
    let mut t = Tree::new(OnConflict::Error);
    t.import_tar(&store, &digest, &origin, &TarImport::default()).expect("import");
    let x = t.get("package/bin/x").expect("x");
    assert_eq!((x.uid, x.gid), (1001, 1002));
}

#[test]
fn import_tar_refuses_device_nodes_and_fifos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    for (kind, name) in [
        (tar::EntryType::Char, "character device"),
        (tar::EntryType::Block, "block device"),
        (tar::EntryType::Fifo, "fifo"),
    ] {
        let data = tar_with(|b| {
            b.append_data(&mut header(kind, 0, 0o600), "dev/null", &[][..]).expect("dev");
        });
        let digest = store.insert_bytes(&data).expect("store");
        let mut t = Tree::new(OnConflict::Error);
        let err =
            t.import_tar(&store, &digest, &Origin::new("debian"), &TarImport::default()).expect_err("device refused");
        match &err {
            TreeError::UnsupportedMember { path, kind, archive } => {
                assert_eq!((path.as_str(), *kind), ("dev/null", name));
                assert_eq!(archive, &digest.to_string());
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn set_keeps_children_of_a_directory_and_replaces_the_rest() {
    use openshell_oci::{ContentRef, Entry, EntryKind, OnConflict, Origin, Tree};
    let o = Origin::new("o");
    let mut tree = Tree::new(OnConflict::Error);
    tree.insert("home/user/file", Entry::file(0o644, ContentRef::bytes(b"x".to_vec()), &o)).expect("insert");
    tree.set("home/user", Entry::dir(0o700, &o).with_owner(1000, 1000)).expect("set dir");
    assert!(tree.get("home/user/file").is_some(), "children kept");
    assert_eq!(tree.get("home/user").map(|e| (e.kind.clone(), e.uid)), Some((EntryKind::Dir { mode: 0o700 }, 1000)));
    tree.set("home/user", Entry::symlink("/elsewhere", &o)).expect("set link");
    assert!(tree.get("home/user/file").is_none(), "a replaced directory goes with its subtree");
    assert!(tree.set("x", Entry::dir(0o17777, &o)).is_err());
}
