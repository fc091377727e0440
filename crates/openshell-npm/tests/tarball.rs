//! Unpacking and verifying synthetic package tarballs.

use std::io::{Read, Write};

use openshell_npm::{EntryKind, IntegrityError, UnpackError, sha512_integrity, unpack_entries, verify_integrity};

enum E<'a> {
    File(&'a str, u32, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
}

fn raw_name(h: &mut tar::Header, name: &str) {
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name.as_bytes());
}

fn tgz(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        let (name, data): (&str, &[u8]) = match e {
            E::File(p, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                (p, data)
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                (p, b"")
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_link_name(t).expect("link name");
                h.set_mode(0o777);
                h.set_size(0);
                (p, b"")
            }
            E::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                h.set_size(0);
                (p, b"")
            }
        };
        raw_name(&mut h, name);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    let tar = b.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// (path, kind, mode, contents)
type Unpacked = Vec<(String, &'static str, u32, Vec<u8>)>;

fn unpack(bytes: &[u8]) -> Result<(Unpacked, openshell_npm::UnpackSummary), UnpackError> {
    let mut out = Vec::new();
    let summary = unpack_entries(bytes, |e| {
        let mut data = Vec::new();
        e.contents.read_to_end(&mut data)?;
        assert_eq!(data.len() as u64, e.size);
        let kind = match e.kind {
            EntryKind::File => "file",
            EntryKind::Directory => "dir",
        };
        out.push((e.path.to_string(), kind, e.mode, data));
        Ok(())
    })?;
    Ok((out, summary))
}

#[test]
fn unpacks_like_pacote() {
    let bytes = tgz(&[
        E::Dir("package/"),
        E::File("package/package.json", 0o644, b"{}"),
        E::File("package/bin/cli.js", 0o755, b"#!/usr/bin/env node\n"),
        E::File("package/lib/x.js", 0o700, b"first"),
        E::File("package/lib/y.js", 0o600, b"y"),
        E::File("package/lib/s.js", 0o4751, b"s"),
        E::Symlink("package/link", "lib/x.js"),
        E::Hardlink("package/hard", "package/lib/x.js"),
        E::Fifo("package/fifo"),
        E::File("package/.npmignore", 0o644, b"npm"),
        E::File("package/.gitignore", 0o644, b"git"),
        E::File("package/sub/.gitignore", 0o644, b"sub-git"),
        E::File("package/../evil", 0o644, b"evil"),
        E::File("package/lib/x.js", 0o644, b"second"),
        E::File("package/./a//b.js", 0o644, b"b"),
    ]);
    let (entries, summary) = unpack(&bytes).expect("unpacks");
    let got: Unpacked = entries;
    let want: Unpacked = vec![
        ("package.json".into(), "file", 0o644, b"{}".to_vec()),
        ("bin".into(), "dir", 0o755, vec![]),
        ("bin/cli.js".into(), "file", 0o755, b"#!/usr/bin/env node\n".to_vec()),
        ("lib".into(), "dir", 0o755, vec![]),
        ("lib/y.js".into(), "file", 0o644, b"y".to_vec()),
        ("lib/s.js".into(), "file", 0o4755, b"s".to_vec()),
        (".npmignore".into(), "file", 0o644, b"npm".to_vec()),
        ("sub".into(), "dir", 0o755, vec![]),
        ("sub/.npmignore".into(), "file", 0o644, b"sub-git".to_vec()),
        ("lib/x.js".into(), "file", 0o744, b"second".to_vec()),
        ("a".into(), "dir", 0o755, vec![]),
        ("a/b.js".into(), "file", 0o644, b"b".to_vec()),
    ];
    assert_eq!(got, want);
    assert_eq!(summary.files, 8);
    assert_eq!(summary.directories, 4);
    let reasons: Vec<(&str, &str)> = summary.skipped.iter().map(|s| (s.path.as_str(), s.reason)).collect();
    assert_eq!(
        reasons,
        [
            ("package/link", "symbolic link (npm ignores links)"),
            ("package/hard", "hard link (npm ignores links)"),
            ("package/fifo", "not a regular file"),
            ("package/.gitignore", ".gitignore next to a .npmignore"),
            ("package/../evil", "unsafe or empty path"),
            ("lib/x.js", "replaced by a later entry with the same path"),
        ]
    );
}

#[test]
fn execute_bits_are_kept_per_class() {
    let bytes =
        tgz(&[E::File("package/a", 0o700, b""), E::File("package/b", 0o710, b""), E::File("package/c", 0o666, b"")]);
    let (entries, _) = unpack(&bytes).expect("unpacks");
    let modes: Vec<u32> = entries.iter().map(|e| e.2).collect();
    assert_eq!(modes, [0o744, 0o754, 0o644]);
}

#[test]
fn any_top_directory_is_stripped_and_plain_tar_works() {
    let bytes = tgz(&[E::File("node-v22.1.0-linux-x64/bin/node", 0o755, b"ELF")]);
    let (entries, _) = unpack(&bytes).expect("unpacks");
    assert_eq!(entries.last().map(|e| e.0.as_str()), Some("bin/node"));
    let mut gz = flate2::read::GzDecoder::new(&bytes[..]);
    let mut plain = Vec::new();
    gz.read_to_end(&mut plain).expect("gunzip");
    let (entries, _) = unpack(&plain).expect("plain tar");
    assert_eq!(entries.last().map(|e| e.0.as_str()), Some("bin/node"));
}

#[test]
fn damaged_or_contradictory_tarballs_fail() {
    let mut bytes = tgz(&[E::File("package/a", 0o644, &[7u8; 4096])]);
    let n = bytes.len();
    bytes.truncate(n - 20);
    assert!(matches!(unpack(&bytes), Err(UnpackError::Corrupt(_))));
    let bytes = tgz(&[E::File("package/a", 0o644, b"file"), E::File("package/a/b", 0o644, b"under a file")]);
    let e = unpack(&bytes).expect_err("conflict");
    assert!(matches!(&e, UnpackError::FileDirectoryConflict { path } if path == "a"), "{e}");
    let bytes = tgz(&[E::File("package/a", 0o644, b"x")]);
    let e = unpack_entries(&bytes, |_| Err(std::io::Error::other("disk full"))).expect_err("callback");
    assert_eq!(e.to_string(), "handling \"a\" from the package tarball: disk full");
}

#[test]
fn integrity_of_a_tarball() {
    let bytes = tgz(&[E::File("package/package.json", 0o644, b"{}")]);
    let sri = sha512_integrity(&bytes);
    verify_integrity(&bytes, &sri).expect("matches");
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    match verify_integrity(&tampered, &sri) {
        Err(IntegrityError::Mismatch { expected, actual }) => {
            assert_eq!(expected, sri);
            assert_ne!(actual, sri);
            assert!(actual.starts_with("sha512-"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(matches!(verify_integrity(&bytes, "sha512-"), Err(IntegrityError::Mismatch { .. })));
    assert!(matches!(verify_integrity(&bytes, ""), Err(IntegrityError::NoUsableHash { .. })));
}

/// Links that leave the package are refused, naming the entry, from `unpack_entries`
/// (which drops links, as pacote does) and from `check_tar_links` (for callers that
/// keep them, as `openshell build` does); a link inside the package passes.
#[test]
fn links_leaving_the_package_are_refused() {
    let refused = |entries: &[E<'_>], entry: &str| {
        let bytes = tgz(entries);
        let e = unpack(&bytes).map(|_| ()).expect_err("unpack_entries refuses");
        assert!(matches!(e, UnpackError::Link(_)), "{e}");
        assert!(e.to_string().contains(&format!("`{entry}`")), "names the entry: {e}");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain).expect("gunzip");
        let e2 = openshell_npm::check_tar_links(std::io::Cursor::new(&plain[..])).expect_err("check_tar_links refuses");
        assert_eq!(e.to_string(), e2.to_string());
        e.to_string()
    };
    let file = E::File("package/index.js", 0o644, b"x");
    let e = refused(&[E::Symlink("package/evil", "/etc/passwd"), E::File("package/a", 0o644, b"")], "evil");
    assert_eq!(
        e,
        "package tarball: symbolic link `evil` → `/etc/passwd` leaves the package: its target is an absolute path"
    );
    let e = refused(&[E::File("package/lib/a.js", 0o644, b""), E::Symlink("package/lib/up", "../../x")], "lib/up");
    assert!(e.contains("`..` climbs above the package root"), "{e}");
    let e = refused(&[E::Symlink("package/a", "b"), E::Symlink("package/b", "/etc")], "a");
    assert!(e.contains("through symbolic link `b`"), "a link to a link: {e}");
    // `d/up` → `..` is the root (inside); `d/evil` → `up/../x` leaves only through it.
    let e = refused(
        &[E::Dir("package/d/"), E::Symlink("package/d/up", ".."), E::Symlink("package/d/evil", "up/../x")],
        "d/evil",
    );
    assert!(e.contains("`..` climbs above the package root"), "{e}");
    let e = refused(&[E::Hardlink("package/h", "package/../../etc/shadow")], "h");
    assert!(e.starts_with("package tarball: hard link `h`"), "{e}");
    // A member written through a link (even one that stays inside).
    let e = refused(
        &[E::Dir("package/real/"), E::Symlink("package/lib", "real"), E::File("package/lib/x.so", 0o644, b"")],
        "lib/x.so",
    );
    assert!(e.contains("may not write through a link"), "{e}");

    // Positive control: links inside the package (npm drops them; nothing is refused).
    let bytes = tgz(&[
        file,
        E::Symlink("package/alias.js", "index.js"),
        E::Symlink("package/bin/tool", "../index.js"),
        E::Hardlink("package/hard.js", "package/index.js"),
    ]);
    let (entries, summary) = unpack(&bytes).expect("links inside pass");
    assert_eq!(entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["index.js"]);
    assert_eq!(summary.skipped.len(), 3, "{:?}", summary.skipped);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut plain).expect("gunzip");
    openshell_npm::check_tar_links(std::io::Cursor::new(&plain[..])).expect("links inside pass");
}
