//! The layer writer and the tar reader of `Tree::import_tar`, fuzzed: random trees
//! written as a layer (tar, and gzip through the hand-written framing), read back
//! and written again give the same bytes; mutated layers and random bytes imported
//! give a tree or an error. Never a panic, a hang, or memory beyond the fuzz
//! child's ceiling (see tests/support/fuzz.rs).

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;

use std::io::Read;

use openshell_oci::compress::GzipWriter;
use openshell_oci::partition::whole;
use openshell_oci::{ContentRef, Entry, LayerOptions, OnConflict, Origin, TarImport, Tree, write_tar};
use openshell_store::Store;
use proptest::prelude::*;
use proptest::sample::select;

/// A store on tmpfs when there is one: every case stores a blob (written, synced,
/// linked), and a disk's fsync would dominate the run.
fn scratch_store() -> (tempfile::TempDir, Store) {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    (dir, store)
}

#[derive(Debug, Clone)]
enum Kind {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(String),
    /// A hard link to the n-th file inserted before it.
    Hardlink(usize),
}

/// A string of `len` characters drawn from `seed`: any character but NUL (and `/`
/// unless `slash`), ASCII — control characters included — twice as often. Cheaper than a regex strategy (which makes every
/// character a shrinkable value), and random strings need no fine shrinking.
fn chars(seed: u64, len: usize, slash: bool) -> String {
    let mut x = seed | 1;
    let mut out = String::with_capacity(len);
    while out.chars().count() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let c = if x.is_multiple_of(3) {
            char::from_u32((x >> 8) as u32 % 0x11_0000)
        } else {
            char::from_u32((x >> 8) as u32 % 0x80)
        };
        if let Some(c) = c.filter(|&c| c != '\0' && (slash || c != '/')) {
            out.push(c);
        }
    }
    out
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(vec!["a", "b", "bin", "lib", ".hidden", "é", "spa ce", "x.js"]).prop_map(str::to_owned),
        1 => (90usize..140).prop_map(|n| "n".repeat(n)),
        1 => (any::<u64>(), 1usize..12).prop_map(|(seed, n)| chars(seed, n, false)),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    let mode = prop_oneof![Just(0o644u32), Just(0o755), Just(0o4755), Just(0o1777), 0u32..0o10000];
    prop_oneof![
        2 => mode.clone().prop_map(Kind::Dir),
        4 => (mode, content()).prop_map(|(m, c)| Kind::File(m, c)),
        1 => (any::<u64>(), 1usize..200).prop_map(|(seed, n)| Kind::Symlink(chars(seed, n, true))),
        1 => any::<usize>().prop_map(Kind::Hardlink),
    ]
}

/// File contents: mostly a few bytes, sometimes past a tar block or two.
fn content() -> impl Strategy<Value = Vec<u8>> {
    let bytes = |seed: u64, n: usize| chars(seed, n, true).into_bytes();
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..32),
        1 => (any::<u64>(), 500usize..1100).prop_map(move |(seed, n)| bytes(seed, n)),
    ]
}

fn owner() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![4 => Just((0, 0)), 2 => Just((1000, 1000)), 1 => (any::<u32>(), any::<u32>())]
}

/// A tree from random entries (entries the tree refuses are left out).
fn tree() -> impl Strategy<Value = Tree> {
    let entry = (prop::collection::vec(component(), 1..5), kind(), owner());
    prop::collection::vec(entry, 1..12).prop_map(|entries| {
        let origin = Origin::new("fuzz");
        let mut tree = Tree::new(OnConflict::Error);
        let mut files: Vec<String> = Vec::new();
        for (parts, kind, (uid, gid)) in entries {
            let path = parts.join("/");
            let entry = match kind {
                Kind::Dir(m) => Entry::dir(m, &origin),
                Kind::File(m, c) => Entry::file(m, ContentRef::bytes(c), &origin),
                Kind::Symlink(t) => Entry::symlink(t, &origin),
                Kind::Hardlink(_) if files.is_empty() => continue,
                Kind::Hardlink(n) => Entry::hardlink(files[n % files.len()].clone(), &origin),
            };
            let is_file = matches!(entry.kind, openshell_oci::EntryKind::File { .. });
            if tree.insert(&path, entry.with_owner(uid, gid)).is_ok() && is_file {
                files.push(path);
            }
        }
        tree
    })
}

/// The layer of `tree` as an uncompressed tar, if the writer accepts the tree.
fn layer_tar(store: &Store, tree: &Tree) -> Option<Vec<u8>> {
    let plan = whole(tree).ok()?;
    let mut out = Vec::new();
    write_tar(store, &plan, &LayerOptions::default(), &mut out).ok()?;
    Some(out)
}

/// Imports `tar` (stored first) into a new tree; the blob is removed afterwards.
fn import(store: &Store, tar: &[u8]) -> (Option<Tree>, openshell_store::Digest) {
    let digest = store.insert_bytes(tar).expect("store");
    let mut tree = Tree::new(OnConflict::Error);
    let ok = tree.import_tar(store, &digest, &Origin::new("back"), &TarImport::default()).is_ok();
    (ok.then_some(tree), digest)
}

fn forget(store: &Store, digest: &openshell_store::Digest) {
    let _ = std::fs::remove_file(store.blob_path(digest));
}

#[test]
fn layers_round_trip_and_the_reader_never_panics() {
    fuzz::bounded("layers_round_trip_and_the_reader_never_panics", || {
        let (_dir, store) = scratch_store();
        // Written, read back, written again: the same bytes.
        fuzz::check(file!(), tree(), |tree| {
            let Some(first) = layer_tar(&store, &tree) else { return };
            let (back, digest) = import(&store, &first);
            let back = back.unwrap_or_else(|| panic!("the reader refuses the writer's layer of {tree:?}"));
            let second = layer_tar(&store, &back).expect("a tree read from a layer is writable");
            forget(&store, &digest);
            assert!(first == second, "a layer read back and written again differs: {tree:?}");
        });
    });
}

/// The hand-written gzip framing around zlib-rs: what any layer compresses to is a
/// gzip stream flate2 reads back to the same bytes. A tenth of the cases: each sets
/// up a deflate state (most of a case's time), and the framing does not depend on
/// the tree.
#[test]
fn gzip_layers_decompress_to_their_tar() {
    fuzz::bounded("gzip_layers_decompress_to_their_tar", || {
        let (_dir, store) = scratch_store();
        let config = proptest::test_runner::Config { cases: fuzz::cases() / 10, ..fuzz::config() };
        fuzz::check_with(file!(), config, tree(), |tree| {
            let Some(plain) = layer_tar(&store, &tree) else { return };
            let mut gz = GzipWriter::new(Vec::new()).expect("gzip");
            write_tar(&store, &whole(&tree).expect("plan"), &LayerOptions::default(), &mut gz).expect("gzip layer");
            let compressed = gz.finish().expect("gzip end");
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut unzipped).expect("a valid gzip stream");
            assert!(unzipped == plain, "gzip framing changed the bytes");
        });
    });
}

#[test]
fn tar_import_never_panics() {
    fuzz::bounded("tar_import_never_panics", || {
        let (_dir, store) = scratch_store();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let seeds: Vec<Vec<u8>> = (0..16)
            .filter_map(|_| tree().new_tree(&mut runner).ok())
            .filter_map(|t| layer_tar(&store, &proptest::strategy::ValueTree::current(&t)))
            .filter(|t| t.len() > 1024)
            .collect();
        assert!(seeds.len() >= 8, "enough seed layers");
        let inputs = prop_oneof![
            8 => (select(seeds), fuzz::edits(6)).prop_map(|(seed, e)| fuzz::mutate(&seed, &e)),
            1 => prop::collection::vec(any::<u8>(), 0..2048),
            1 => prop::collection::vec(any::<u8>(), 0..4).prop_map(|b| [vec![0u8; 1024], b].concat()),
        ];
        fuzz::check(file!(), inputs, |bytes| {
            let (_, digest) = import(&store, &bytes);
            forget(&store, &digest);
        });
    });
}
