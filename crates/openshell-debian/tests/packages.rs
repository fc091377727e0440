//! Packages indexes: records, decompression and verification against a Release file.

use std::cell::RefCell;
use std::io::Write;
use std::process::{Command, Stdio};

use openshell_debian::decompress::{self, Compression};
use openshell_debian::packages::{MultiArch, PackageIndex, PackagesError, decompress_by_name, index_from_release};
use openshell_debian::release::Release;
use openshell_debian::version::Version;
use openshell_store::Digest;

const SHA_A: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn index_text() -> String {
    format!(
        "\
Package: python3.13
Source: python3.13 (3.13.5-2)
Version: 3.13.5-2
Installed-Size: 640
Maintainer: Someone <x@example.invalid>
Architecture: amd64
Multi-Arch: allowed
Provides: python3.13-foo (= 3.13.5-2), python3-any
Depends: python3.13-minimal (= 3.13.5-2), libpython3.13-stdlib (= 3.13.5-2),
 media-types | mime-support, tzdata
Pre-Depends: libc6 (>= 2.36)
Conflicts: python3.13-old (<< 3)
Breaks: python3-foo (<< 1.0)
Replaces: python3-foo (<< 1.0)
Recommends: something-we-ignore
Description: interpreter
Priority: optional
Section: python
Filename: pool/main/p/python3.13/python3.13_3.13.5-2_amd64.deb
Size: 123456
MD5sum: 00000000000000000000000000000000
SHA256: {SHA_A}

Package: base-files
Version: 13.8
Architecture: amd64
Essential: yes
Priority: required
Filename: pool/main/b/base-files/base-files_13.8_amd64.deb
Size: 70000
SHA256: {}
",
        SHA_A.to_uppercase().replace('1', "2")
    )
}

#[test]
fn parses_typed_records() {
    let idx = PackageIndex::parse("main/Packages", index_text().as_bytes()).expect("parses");
    assert_eq!(idx.packages.len(), 2);
    let p = &idx.packages[0];
    assert_eq!(p.name, "python3.13");
    assert_eq!(p.version, Version::parse("3.13.5-2").expect("v"));
    assert_eq!(p.architecture, "amd64");
    assert_eq!(p.multi_arch, MultiArch::Allowed);
    assert!(!p.essential);
    assert_eq!(p.priority.as_deref(), Some("optional"));
    assert_eq!(p.section.as_deref(), Some("python"));
    assert_eq!(p.source, None, "same name as the package");
    assert_eq!(p.installed_size, Some(640));
    assert_eq!(p.depends.len(), 4);
    assert_eq!(p.depends[2].len(), 2);
    assert_eq!(p.pre_depends[0][0].name, "libc6");
    assert_eq!(p.provides.len(), 2);
    assert_eq!(p.conflicts[0][0].name, "python3.13-old");
    assert_eq!(p.breaks[0][0].name, "python3-foo");
    assert_eq!(p.replaces.len(), 1);
    assert_eq!(p.filename, "pool/main/p/python3.13/python3.13_3.13.5-2_amd64.deb");
    assert_eq!(p.size, 123456);
    assert_eq!(p.sha256.to_string(), format!("sha256:{SHA_A}"));
    assert_eq!(p.line, 1);
    assert_eq!(p.id(), "python3.13 3.13.5-2 amd64");
    let b = &idx.packages[1];
    assert!(b.essential);
    assert_eq!(b.multi_arch, MultiArch::No);
    assert_eq!(b.line, 24);
    assert!(b.sha256.to_string().starts_with("sha256:000"), "upper-case hex is accepted");
}

#[test]
fn field_errors_name_origin_line_package_and_field() {
    let text = index_text();
    let cases: Vec<(String, &str)> = vec![
        (text.replace("Size: 70000\n", ""), "main/Packages:24: package base-files: field Size: missing"),
        (
            text.replace("Size: 70000", "Size: lots"),
            "main/Packages:30: package base-files: field Size: `lots` is not a size",
        ),
        (
            text.replace("Version: 13.8", "Version: 13_8"),
            "main/Packages:25: package base-files: field Version: invalid version",
        ),
        (
            text.replace("Multi-Arch: allowed", "Multi-Arch: sometimes"),
            "main/Packages:7: package python3.13: field Multi-Arch: unknown value",
        ),
        (text.replace("Essential: yes", "Essential: maybe"), "main/Packages:27: package base-files: field Essential"),
        (
            text.replace("Pre-Depends: libc6 (>= 2.36)", "Pre-Depends: libc6 (>= "),
            "main/Packages:11: package python3.13: field Pre-Depends",
        ),
        (text.replace("Provides: python3.13-foo (= 3.13.5-2)", "Provides: x (>= 1)"), "field Provides"),
        (
            text.replace(&format!("SHA256: {SHA_A}"), "SHA256: abc"),
            "main/Packages:22: package python3.13: field SHA256: `abc` is not a sha256",
        ),
        (text.replace("Package: base-files\n", ""), "main/Packages:24: package ?: field Package: missing"),
        (
            text.replace("Filename: pool/main/b/base-files/base-files_13.8_amd64.deb", "Filename:"),
            "field Filename: empty",
        ),
        (text.replace("Installed-Size: 640", "Installed-Size: big"), "field Installed-Size"),
        (text.replace("Section: python", "# Section: python"), "main/Packages:18: comment lines are not allowed"),
    ];
    for (input, want) in cases {
        let err = PackageIndex::parse("main/Packages", input.as_bytes()).expect_err(want);
        assert!(err.to_string().contains(want), "want {want:?}, got {err}");
    }
}

fn compress(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} is installed: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).expect("write"));
    let out = child.wait_with_output().expect("runs");
    writer.join().expect("writer");
    assert!(out.status.success());
    out.stdout
}

fn gz(data: &[u8]) -> Vec<u8> {
    compress("gzip", &["-9n"], data)
}
fn xz(data: &[u8]) -> Vec<u8> {
    compress("xz", &["-c"], data)
}
fn zst(data: &[u8]) -> Vec<u8> {
    compress("zstd", &["-q", "-c", "--check"], data)
}

#[test]
fn decompresses_every_format_including_concatenated_streams() {
    let data = index_text().into_bytes();
    for (name, packed) in [
        ("Packages", data.clone()),
        ("Packages.gz", gz(&data)),
        ("Packages.xz", xz(&data)),
        ("Packages.zst", zst(&data)),
    ] {
        assert_eq!(decompress_by_name(name, &packed).expect(name), data, "{name}");
        assert_eq!(PackageIndex::parse_file(name, &packed).expect(name).packages.len(), 2);
    }
    let (a, b) = data.split_at(100);
    for (name, packed) in
        [("x.gz", [gz(a), gz(b)].concat()), ("x.xz", [xz(a), xz(b)].concat()), ("x.zst", [zst(a), zst(b)].concat())]
    {
        assert_eq!(decompress_by_name(name, &packed).expect(name), data, "{name}: all streams");
    }
    // A skippable zstd frame between two frames.
    let skippable = [&0x184D2A50u32.to_le_bytes()[..], &4u32.to_le_bytes()[..], b"junk"].concat();
    let packed = [zst(a), skippable, zst(b)].concat();
    assert_eq!(decompress_by_name("x.zst", &packed).expect("skippable"), data);
}

#[test]
fn corrupt_compressed_data_is_an_error() {
    let data = index_text().into_bytes();
    for (name, mut packed) in [("P.gz", gz(&data)), ("P.xz", xz(&data)), ("P.zst", zst(&data))] {
        let mid = packed.len() / 2;
        packed[mid] ^= 0x55;
        let err = decompress_by_name(name, &packed).expect_err(name);
        assert!(matches!(err, PackagesError::Decompress { .. }), "{name}: {err}");
        assert!(err.to_string().starts_with(&format!("{name}: cannot decompress")), "{err}");
    }
    for (name, packed) in [("P.gz", gz(&data)), ("P.xz", xz(&data)), ("P.zst", zst(&data))] {
        let truncated = &packed[..packed.len() - 6];
        assert!(decompress_by_name(name, truncated).is_err(), "{name} truncated");
    }
    assert!(decompress_by_name("P.zst", b"").is_err());
    let mut r = decompress::reader(Compression::Xz, &b"not xz"[..]).expect("reader");
    assert!(std::io::Read::read_to_end(&mut r, &mut Vec::new()).is_err());
}

/// A Release file listing the given (path, bytes).
fn release_for(files: &[(&str, &[u8])]) -> Release {
    let mut text = String::from("Suite: stable\nCodename: trixie\nComponents: main\nArchitectures: amd64\nSHA256:\n");
    for (path, data) in files {
        text.push_str(&format!(" {} {} {path}\n", Digest::sha256(data).hex(), data.len()));
    }
    Release::parse("trixie/InRelease", text.as_bytes()).expect("release parses")
}

#[test]
fn index_from_release_prefers_xz_and_checks_everything() {
    let plain = index_text().into_bytes();
    let (x, g) = (xz(&plain), gz(&plain));
    let release = release_for(&[
        ("main/binary-amd64/Packages", &plain),
        ("main/binary-amd64/Packages.gz", &g),
        ("main/binary-amd64/Packages.xz", &x),
    ]);
    let fetched = RefCell::new(Vec::new());
    let idx = index_from_release(&release, "main", "amd64", |p| {
        fetched.borrow_mut().push(p.to_owned());
        Ok::<_, std::io::Error>(x.clone())
    })
    .expect("index");
    assert_eq!(fetched.into_inner(), ["main/binary-amd64/Packages.xz"]);
    assert_eq!(idx.packages.len(), 2);
    assert_eq!(idx.origin, "trixie/main/binary-amd64/Packages.xz");
}

#[test]
fn index_from_release_falls_back_to_gz_then_plain() {
    let plain = index_text().into_bytes();
    let g = gz(&plain);
    let release = release_for(&[("main/binary-amd64/Packages.gz", &g)]);
    let mut seen = String::new();
    index_from_release(&release, "main", "amd64", |p| {
        seen = p.to_owned();
        Ok::<_, std::io::Error>(g.clone())
    })
    .expect("gz");
    assert_eq!(seen, "main/binary-amd64/Packages.gz");

    let release = release_for(&[("main/binary-amd64/Packages", &plain)]);
    let idx = index_from_release(&release, "main", "amd64", |_| Ok::<_, std::io::Error>(plain.clone())).expect("plain");
    assert_eq!(idx.packages.len(), 2);
}

#[test]
fn index_from_release_rejects_mismatches() {
    let plain = index_text().into_bytes();
    let x = xz(&plain);
    let release = release_for(&[("main/binary-amd64/Packages.xz", &x)]);

    let mut longer = x.clone();
    longer.push(0);
    let err =
        index_from_release(&release, "main", "amd64", |_| Ok::<_, std::io::Error>(longer.clone())).expect_err("size");
    assert!(err.to_string().starts_with("main/binary-amd64/Packages.xz: size mismatch"), "{err}");

    let mut flipped = x.clone();
    flipped[10] ^= 1;
    let err =
        index_from_release(&release, "main", "amd64", |_| Ok::<_, std::io::Error>(flipped.clone())).expect_err("sha");
    assert!(err.to_string().contains("sha256 mismatch"), "{err}");

    // The uncompressed entry is checked too.
    let other_plain = index_text().replace("Size: 70000", "Size: 70001").into_bytes();
    let release = release_for(&[("main/binary-amd64/Packages", &other_plain), ("main/binary-amd64/Packages.xz", &x)]);
    let err =
        index_from_release(&release, "main", "amd64", |_| Ok::<_, std::io::Error>(x.clone())).expect_err("plain sha");
    assert!(err.to_string().starts_with("main/binary-amd64/Packages: sha256 mismatch"), "{err}");
}

#[test]
fn index_from_release_reports_missing_entries_and_fetch_errors() {
    let plain = index_text().into_bytes();
    let release = release_for(&[("main/binary-amd64/Packages", &plain)]);
    let err =
        index_from_release(&release, "contrib", "amd64", |_| Ok::<_, std::io::Error>(Vec::new())).expect_err("missing");
    assert!(matches!(err, PackagesError::NotInRelease { .. }));
    assert!(err.to_string().contains("contrib/binary-amd64"), "{err}");

    let err = index_from_release(&release, "main", "amd64", |_| Err::<Vec<u8>, _>("mirror unreachable"))
        .expect_err("fetch error");
    assert_eq!(err.to_string(), "fetching main/binary-amd64/Packages: mirror unreachable");
}
