//! The npm tarball reader (gzip, then tar; pacote's rules; the link check) on
//! mutated package tarballs and random bytes: a value or an error, never a panic,
//! a hang, or memory beyond the fuzz child's ceiling (see tests/support/fuzz.rs).

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;
#[path = "../../../tests/support/fuzz_tar.rs"]
mod fuzz_tar;

use openshell_npm::{check_tar_links, unpack_entries};
use proptest::prelude::*;
use proptest::sample::select;

/// A package tar with files, directories, links, a `.gitignore`, a duplicate and a
/// long name (GNU long-name entries).
fn package_tar() -> Vec<u8> {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let long = format!("package/{}/{}", "d".repeat(100), "f".repeat(100));
    fuzz_tar::tar(&[
        ("package/", Directory, 0o755, None, b""),
        ("package/package.json", Regular, 0o644, None, b"{\"name\":\"x\",\"bin\":\"cli.js\"}"),
        ("package/cli.js", Regular, 0o755, None, b"#!/usr/bin/env node\r\n"),
        ("package/.gitignore", Regular, 0o644, None, b"node_modules\n"),
        ("package/lib/alias.js", Symlink, 0o777, Some("../cli.js"), b""),
        ("package/lib/hard.js", Link, 0o644, Some("package/cli.js"), b""),
        ("package/cli.js", Regular, 0o700, None, b"again"),
        (&long, Regular, 0o644, None, b"long"),
    ])
}

fn exercise(bytes: &[u8]) {
    let _ = unpack_entries(bytes, |e| std::io::copy(e.contents, &mut std::io::sink()).map(drop));
    let _ = check_tar_links(std::io::Cursor::new(bytes));
}

#[test]
fn npm_tarball_reader_never_panics() {
    fuzz::bounded("npm_tarball_reader_never_panics", || {
        let tar = package_tar();
        let tgz = fuzz_tar::gzip(&tar);
        unpack_entries(&tgz, |_| Ok(())).expect("the seed unpacks");
        let inputs = prop_oneof![
            // The tarball, mutated anywhere (mostly gzip framing and deflate data).
            2 => (select(vec![tgz.clone()]), fuzz::edits(6)).prop_map(|(seed, e)| fuzz::mutate(&seed, &e)),
            // A mutated tar, gzip-compressed or plain: reaches the tar reader and pacote's rules.
            5 => (fuzz::edits(6), any::<bool>()).prop_map(move |(e, gz)| {
                let t = fuzz::mutate(&tar, &e);
                if gz { fuzz_tar::gzip(&t) } else { t }
            }),
            1 => prop::collection::vec(any::<u8>(), 0..1024),
            1 => prop::collection::vec(any::<u8>(), 0..1024).prop_map(|b| fuzz_tar::gzip(&b)),
        ];
        fuzz::check(file!(), inputs, |bytes| exercise(&bytes));
    });
}
