//! Partitioning a tree into per-origin layers.

mod common;

use openshell_oci::partition::{ItemKind, whole};
use openshell_oci::{ContentRef, Entry, OnConflict, Origin, PartitionError, Tree, partition};
use openshell_store::Store;

fn o(s: &str) -> Origin {
    Origin::new(s)
}

#[test]
fn layers_follow_origin_order_with_parents_in_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let tree = common::sample_tree(&store, false);
    let layers = partition(&tree, &common::origins()).expect("partition");
    let names: Vec<&str> = layers.iter().map(|l| l.origin.as_ref().expect("origin").as_str()).collect();
    assert_eq!(names, ["debian", "node", "claude", "generated"]);
    let paths = |i: usize| layers[i].items.iter().map(|it| it.path).collect::<Vec<_>>();
    assert_eq!(paths(1), ["usr", "usr/lib", "usr/lib/node", "usr/lib/node/bin", "usr/lib/node/bin/node"]);
    // `etc` is debian's explicit dir; generated needs it as a parent, with the same metadata.
    let gen_ = paths(3);
    assert!(gen_.contains(&"etc") && gen_.contains(&"etc/openshell") && gen_.contains(&"home/sandbox"));
    assert!(!gen_.contains(&"etc/passwd"));
    let etc_in = |i: usize| layers[i].items.iter().find(|it| it.path == "etc").cloned().expect("etc");
    assert_eq!(etc_in(0), etc_in(3));
    // Every path appears in exactly one layer unless it is a directory.
    for (path, entry, _) in tree.iter() {
        let n = layers.iter().filter(|l| l.items.iter().any(|it| it.path == path)).count();
        if entry.is_dir() {
            assert!(n >= 1, "{path}");
        } else {
            assert_eq!(n, 1, "{path}");
        }
    }
}

#[test]
fn hardlinks_follow_the_target_origin() {
    let mut t = Tree::new(OnConflict::Error);
    t.insert("opt/claude/bin/claude", Entry::file(0o755, ContentRef::bytes(&b"bin"[..]), &o("claude"))).expect("file");
    // A link declared by another origin still goes with its target.
    t.insert("usr/bin/claude", Entry::hardlink("opt/claude/bin/claude", &o("generated"))).expect("link");
    // A chain: link to a link.
    t.insert("usr/bin/c2", Entry::hardlink("usr/bin/claude", &o("generated"))).expect("link2");
    let layers = partition(&t, &[o("claude"), o("generated")]).expect("partition");
    assert_eq!(layers.len(), 1, "the generated layer is empty and omitted");
    let items = &layers[0].items;
    let file = items.iter().find(|it| it.path == "opt/claude/bin/claude").expect("file");
    assert!(matches!(file.kind, ItemKind::File { mode: 0o755, .. }));
    for p in ["usr/bin/c2", "usr/bin/claude"] {
        let l = items.iter().find(|it| it.path == p).expect("link");
        assert_eq!(l.kind, ItemKind::Hardlink { mode: 0o755, to: "opt/claude/bin/claude" });
    }
}

#[test]
fn hardlink_errors() {
    let mut t = Tree::new(OnConflict::Error);
    t.insert("a", Entry::hardlink("missing", &o("x"))).expect("insert");
    assert!(matches!(whole(&t), Err(PartitionError::DanglingHardlink { .. })));
    let mut t = Tree::new(OnConflict::Error);
    t.insert("d", Entry::dir(0o755, &o("x"))).expect("dir");
    t.insert("a", Entry::hardlink("d", &o("x"))).expect("insert");
    let err = whole(&t).expect_err("to dir");
    assert!(matches!(err, PartitionError::HardlinkNotFile { target_type: "directory", .. }), "{err}");
    let mut t = Tree::new(OnConflict::Error);
    t.insert("a", Entry::hardlink("b", &o("x"))).expect("a");
    t.insert("b", Entry::hardlink("a", &o("x"))).expect("b");
    assert!(matches!(whole(&t), Err(PartitionError::HardlinkCycle { .. })));
}

#[test]
fn unknown_and_duplicate_origins_are_errors() {
    let mut t = Tree::new(OnConflict::Error);
    t.insert("a", Entry::file(0o644, ContentRef::bytes(&b""[..]), &o("codex"))).expect("a");
    let err = partition(&t, &[o("debian")]).expect_err("unknown");
    assert!(matches!(err, PartitionError::UnknownOrigin { ref path, .. } if path == "a"), "{err}");
    assert!(err.to_string().contains("codex"));
    assert!(matches!(partition(&t, &[o("codex"), o("codex")]), Err(PartitionError::DuplicateOrigin(_))));
}

#[test]
fn implicit_parents_do_not_depend_on_insertion_order() {
    let build = |first: &str| {
        let mut t = Tree::new(OnConflict::Error);
        let entries = [("usr/lib/node/x", "node"), ("usr/lib/deb/y", "debian")];
        let ordered: Vec<_> = if first == "node" { entries.to_vec() } else { entries.iter().rev().copied().collect() };
        for (p, origin) in ordered {
            t.insert(p, Entry::file(0o644, ContentRef::bytes(&b"z"[..]), &o(origin))).expect("insert");
        }
        let layers = partition(&t, &[o("debian"), o("node")]).expect("partition");
        layers.iter().map(|l| l.items.iter().map(|i| i.path.to_owned()).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    assert_eq!(build("node"), build("debian"));
}
