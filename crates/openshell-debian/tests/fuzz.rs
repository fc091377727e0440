//! The `.deb` reader (ar, then a gzip/xz/zstd or plain tar) on mutated packages and
//! random bytes: it returns a value or an error, never panics, hangs or allocates
//! beyond the fuzz child's memory ceiling (see tests/support/fuzz.rs).

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;
#[path = "../../../tests/support/fuzz_tar.rs"]
mod fuzz_tar;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use openshell_debian::deb::DebReader;
use proptest::prelude::*;
use proptest::sample::select;

/// A small package built by dpkg-deb with `compression` (gzip, xz, zstd, none).
fn dpkg_deb(dir: &Path, compression: &str) -> Vec<u8> {
    let root = dir.join(format!("pkg-{compression}"));
    std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: fuzz\nVersion: 1.0-1\nArchitecture: all\nMaintainer: T <t@example.invalid>\nDescription: x\n y\n",
    )
    .expect("control");
    std::fs::write(root.join("DEBIAN/md5sums"), "d41d8cd98f00b204e9800998ecf8427e  usr/bin/tool\n").expect("md5sums");
    std::fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").expect("file");
    std::os::unix::fs::symlink("tool", root.join("usr/bin/alias")).expect("symlink");
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).expect("hard link");
    let out = dir.join(format!("fuzz-{compression}.deb"));
    let o = Command::new("dpkg-deb")
        .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
        .arg(&root)
        .arg(&out)
        .output()
        .expect("dpkg-deb is missing: install the Debian package dpkg");
    assert!(o.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(&out).expect("read deb")
}

/// An `ar` archive of `members`.
fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        out.extend_from_slice(format!("{name:<16}0           0     0     100644  {:<10}`\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A data tar with every entry kind the reader handles, and long names.
fn data_tar() -> Vec<u8> {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let long = format!("./usr/share/{}/{}", "d".repeat(90), "f".repeat(120));
    fuzz_tar::tar(&[
        ("./", Directory, 0o755, None, b""),
        ("./usr/bin/", Directory, 0o755, None, b""),
        ("./usr/bin/tool", Regular, 0o755, None, b"#!/bin/sh\n"),
        ("./usr/bin/alias", Symlink, 0o777, Some("tool"), b""),
        ("./usr/bin/hard", Link, 0o755, Some("./usr/bin/tool"), b""),
        (&long, Regular, 0o644, None, b"long"),
    ])
}

/// Everything a build does with a `.deb`: the control, every data entry's bytes,
/// and the data member as one tar stream (bounded: a decompression bomb must be
/// cut off by the reader's own limits or the caller's, never exhaust memory).
fn exercise(bytes: &[u8]) {
    if let Ok(reader) = DebReader::new("fuzz", bytes) {
        let _ = reader.control().control.to_string();
        let _ = reader.for_each_entry(|_, contents| std::io::copy(contents, &mut std::io::sink()).map(drop));
    }
    if let Ok(reader) = DebReader::new("fuzz", std::io::Cursor::new(bytes.to_vec()))
        && let Ok((_, mut data)) = reader.into_data_tar()
    {
        let _ = std::io::copy(&mut (&mut data).take(64 << 20), &mut std::io::sink());
    }
}

#[test]
fn deb_reader_never_panics() {
    fuzz::bounded("deb_reader_never_panics", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let debs: Vec<Vec<u8>> = ["gzip", "xz", "zstd", "none"].iter().map(|c| dpkg_deb(dir.path(), c)).collect();
        for d in &debs {
            let (_, entries) = DebReader::new("seed", &d[..]).expect("seed").entries().expect("seed entries");
            assert!(entries.len() >= 4, "the seeds reach the data tar");
        }
        let control_tar = extract_member(&debs[0], "control.tar");
        let tar = data_tar();
        let inputs = prop_oneof![
            // A dpkg-deb package, mutated anywhere.
            4 => (select(debs), fuzz::edits(6)).prop_map(|(seed, e)| fuzz::mutate(&seed, &e)),
            // A valid container around a mutated data tar, plain or gzip: reaches the tar reader.
            4 => (fuzz::edits(6), any::<bool>()).prop_map(move |(e, gz)| {
                let data = fuzz::mutate(&tar, &e);
                let (name, data) = if gz { ("data.tar.gz", fuzz_tar::gzip(&data)) } else { ("data.tar", data) };
                ar(&[("debian-binary", b"2.0\n"), (&control_tar.0, &control_tar.1), (name, &data)])
            }),
            // Random bytes, with and without the ar magic.
            1 => prop::collection::vec(any::<u8>(), 0..512),
            1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(|b| [b"!<arch>\n".to_vec(), b].concat()),
        ];
        fuzz::check(file!(), inputs, |bytes| exercise(&bytes));
    });
}

/// The first member of `deb` whose name starts with `prefix` (name, bytes).
fn extract_member(deb: &[u8], prefix: &str) -> (String, Vec<u8>) {
    let mut at = 8;
    while at + 60 <= deb.len() {
        let name = String::from_utf8_lossy(&deb[at..at + 16]).trim_end().trim_end_matches('/').to_owned();
        let size: usize = String::from_utf8_lossy(&deb[at + 48..at + 58]).trim().parse().expect("size");
        let data = deb[at + 60..at + 60 + size].to_vec();
        if name.starts_with(prefix) {
            return (name, data);
        }
        at += 60 + size + size % 2;
    }
    panic!("no member {prefix}");
}
