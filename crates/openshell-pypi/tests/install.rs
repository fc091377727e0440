//! Wheel installation layouts from wheels built in the test.

use std::io::{Cursor, Write};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openshell_pypi::install::{InstallError, install_wheel, parse_entry_points, wheel_metadata};
use openshell_pypi::{InstallOptions, Target};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

fn record_hash(data: &[u8]) -> String {
    format!("sha256={}", URL_SAFE_NO_PAD.encode(Sha256::digest(data)))
}

/// A wheel with `files` (path, contents, unix mode) plus a RECORD listing them; `tamper`
/// edits the RECORD text before it is written. A mode with the symbolic-link type
/// (`0o120000`) makes a symbolic link to `contents`.
fn wheel(files: &[(&str, &[u8], u32)], tamper: impl Fn(String) -> String) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut record = String::new();
    let mut di = String::new();
    for (path, data, mode) in files {
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).unix_permissions(*mode);
        if mode & 0o170000 == 0o120000 {
            z.add_symlink(*path, String::from_utf8_lossy(data), opts).expect("symlink");
        } else {
            z.start_file(*path, opts).expect("start");
            z.write_all(data).expect("write");
        }
        record.push_str(&format!("{path},{},{}\n", record_hash(data), data.len()));
        if let Some((top, _)) = path.split_once('/')
            && top.ends_with(".dist-info")
        {
            di = top.to_string();
        }
    }
    record.push_str(&format!("{di}/RECORD,,\n"));
    let record = tamper(record);
    z.start_file(format!("{di}/RECORD"), SimpleFileOptions::default()).expect("start");
    z.write_all(record.as_bytes()).expect("write");
    z.finish().expect("finish").into_inner()
}

const WHEEL: &[u8] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
const METADATA: &[u8] = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.2.0\n";
const ENTRY_POINTS: &[u8] =
    b"[console_scripts]\ndemo = demo_pkg.cli:main\ndemo-admin = demo_pkg.admin:App.run [extra]\n\n[gui_scripts]\ndemo-gui = demo_pkg:gui\n\n[other]\nx = y:z\n";

fn demo_files() -> Vec<(&'static str, &'static [u8], u32)> {
    vec![
        ("demo_pkg/__init__.py", b"def gui(): pass\n", 0o644),
        ("demo_pkg/cli.py", b"def main(): return 0\n", 0o644),
        ("demo_pkg/_native.so", b"\x7fELF", 0o755),
        ("demo_pkg-1.2.0.data/scripts/demo-tool", b"#!python\nprint('hi')\n", 0o644),
        ("demo_pkg-1.2.0.data/scripts/plain.sh", b"#!/bin/sh\necho hi\n", 0o644),
        ("demo_pkg-1.2.0.data/data/share/demo/readme.txt", b"data", 0o644),
        ("demo_pkg-1.2.0.data/purelib/demo_extra.py", b"x = 1\n", 0o644),
        ("demo_pkg-1.2.0.data/headers/demo.h", b"int x;\n", 0o644),
        ("demo_pkg-1.2.0.dist-info/METADATA", METADATA, 0o644),
        ("demo_pkg-1.2.0.dist-info/WHEEL", WHEEL, 0o644),
        ("demo_pkg-1.2.0.dist-info/entry_points.txt", ENTRY_POINTS, 0o644),
    ]
}

fn opts() -> InstallOptions {
    InstallOptions::for_target(&Target::cpython313_manylinux_x86_64())
}

#[test]
fn lays_out_a_wheel() {
    let w = wheel(&demo_files(), |r| r);
    let inst = install_wheel(&w, &opts()).expect("installs");
    assert_eq!((inst.name.as_str(), inst.version.as_str()), ("demo_pkg", "1.2.0"));
    assert_eq!(inst.dist_info, "lib/python3.13/site-packages/demo_pkg-1.2.0.dist-info");
    let listing: Vec<(String, u32)> = inst.files.iter().map(|f| (f.path.clone(), f.mode)).collect();
    let sp = "lib/python3.13/site-packages";
    let want: Vec<(String, u32)> = vec![
        ("bin/demo".into(), 0o755),
        ("bin/demo-admin".into(), 0o755),
        ("bin/demo-gui".into(), 0o755),
        ("bin/demo-tool".into(), 0o755),
        ("bin/plain.sh".into(), 0o755),
        ("include/python3.13/demo-pkg/demo.h".into(), 0o644),
        (format!("{sp}/demo_extra.py"), 0o644),
        (format!("{sp}/demo_pkg-1.2.0.dist-info/INSTALLER"), 0o644),
        (format!("{sp}/demo_pkg-1.2.0.dist-info/METADATA"), 0o644),
        (format!("{sp}/demo_pkg-1.2.0.dist-info/RECORD"), 0o644),
        (format!("{sp}/demo_pkg-1.2.0.dist-info/WHEEL"), 0o644),
        (format!("{sp}/demo_pkg-1.2.0.dist-info/entry_points.txt"), 0o644),
        (format!("{sp}/demo_pkg/__init__.py"), 0o644),
        (format!("{sp}/demo_pkg/_native.so"), 0o755),
        (format!("{sp}/demo_pkg/cli.py"), 0o644),
        ("share/demo/readme.txt".into(), 0o644),
    ];
    assert_eq!(listing, want);
    let file =
        |p: &str| String::from_utf8(inst.files.iter().find(|f| f.path == p).expect(p).contents.clone()).expect("utf8");
    assert_eq!(file("bin/demo-tool"), "#!/usr/bin/python3.13\nprint('hi')\n");
    assert_eq!(file("bin/plain.sh"), "#!/bin/sh\necho hi\n");
    assert_eq!(
        file("bin/demo"),
        "#!/usr/bin/python3.13\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom demo_pkg.cli import main\nif __name__ == \"__main__\":\n    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    sys.exit(main())\n"
    );
    assert!(file("bin/demo-admin").contains("from demo_pkg.admin import App\n"));
    assert!(file("bin/demo-admin").contains("sys.exit(App.run())"));
    assert_eq!(file(&format!("{sp}/demo_pkg-1.2.0.dist-info/INSTALLER")), "openshell\n");
    let record = file(&format!("{sp}/demo_pkg-1.2.0.dist-info/RECORD"));
    let lines: Vec<&str> = record.lines().collect();
    assert_eq!(lines.len(), 16);
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "RECORD lines are sorted");
    let demo = &file("bin/demo");
    assert!(lines.contains(&format!("../../../bin/demo,{},{}", record_hash(demo.as_bytes()), demo.len()).as_str()));
    assert!(lines.contains(&"demo_pkg-1.2.0.dist-info/RECORD,,"));
    assert!(lines.iter().any(|l| l.starts_with("../../../share/demo/readme.txt,sha256=")));
    // Deterministic: same input, same output.
    assert_eq!(install_wheel(&w, &opts()).expect("again"), inst);
    assert_eq!(wheel_metadata(&w).expect("metadata"), METADATA);
}

#[test]
fn record_is_enforced() {
    let files = demo_files();
    let bad_hash = wheel(&files, |r| {
        r.lines()
            .map(|l| {
                if l.starts_with("demo_pkg/cli.py,") {
                    "demo_pkg/cli.py,sha256=AAAA,21".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let e = install_wheel(&bad_hash, &opts()).expect_err("hash");
    assert!(matches!(&e, InstallError::Mismatch { path, what: "hash", .. } if path == "demo_pkg/cli.py"), "{e}");
    let bad_size = wheel(&files, |r| {
        r.replace(
            &format!("{},21", record_hash(b"def main(): return 0\n")),
            &format!("{},22", record_hash(b"def main(): return 0\n")),
        )
    });
    let e = install_wheel(&bad_size, &opts()).expect_err("size");
    assert!(matches!(&e, InstallError::Mismatch { what: "size", .. }), "{e}");
    let unlisted =
        wheel(&files, |r| r.lines().filter(|l| !l.starts_with("demo_pkg/cli.py,")).collect::<Vec<_>>().join("\n"));
    let e = install_wheel(&unlisted, &opts()).expect_err("unlisted");
    assert_eq!(e.to_string(), "demo_pkg/cli.py is in the wheel but not in RECORD");
    let ghost = wheel(&files, |r| format!("{r}demo_pkg/ghost.py,sha256=AAAA,1\n"));
    let e = install_wheel(&ghost, &opts()).expect_err("ghost");
    assert_eq!(e.to_string(), "demo_pkg/ghost.py is listed in RECORD but missing from the wheel");
    let md5 = wheel(&files, |r| r.replacen("sha256=", "md5=", 1));
    assert!(matches!(install_wheel(&md5, &opts()), Err(InstallError::Record { line: 1, .. })));
    let no_hash = wheel(&files, |r| {
        r.lines()
            .map(|l| if l.starts_with("demo_pkg/cli.py,") { "demo_pkg/cli.py,,".to_string() } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n")
    });
    assert!(matches!(install_wheel(&no_hash, &opts()), Err(InstallError::Mismatch { .. })));
}

#[test]
fn malformed_wheels_are_rejected() {
    let mut files = demo_files();
    files.push(("../escape.py", b"x", 0o644));
    assert!(
        matches!(install_wheel(&wheel(&files, |r| r), &opts()), Err(InstallError::UnsafePath(p)) if p == "../escape.py")
    );

    let mut files = demo_files();
    files.push(("other-1.0.dist-info/METADATA", b"x", 0o644));
    assert!(matches!(install_wheel(&wheel(&files, |r| r), &opts()), Err(InstallError::DistInfo(_))));

    let files: Vec<_> = demo_files()
        .into_iter()
        .map(|(p, d, m)| if p.ends_with("/WHEEL") { (p, &b"Wheel-Version: 2.0\n"[..], m) } else { (p, d, m) })
        .collect();
    let e = install_wheel(&wheel(&files, |r| r), &opts()).expect_err("wheel version");
    assert!(e.to_string().contains("unsupported Wheel-Version \"2.0\""), "{e}");

    let mut files = demo_files();
    files.push(("demo_pkg-1.2.0.data/scripts/demo", b"#!python\n", 0o644));
    assert!(matches!(install_wheel(&wheel(&files, |r| r), &opts()), Err(InstallError::Conflict(p)) if p == "bin/demo"));

    assert!(matches!(install_wheel(b"not a zip", &opts()), Err(InstallError::Zip(_))));
    let mut o = opts();
    o.interpreter = "/opt/my python/bin/python3".into();
    assert!(matches!(install_wheel(&wheel(&demo_files(), |r| r), &o), Err(InstallError::Interpreter(_))));
}

#[test]
fn entry_points_are_validated() {
    assert!(parse_entry_points("[console_scripts]\nx = os:system('rm -rf /')\n").is_err());
    assert!(parse_entry_points("[console_scripts]\n../x = a:b\n").is_err());
    assert!(parse_entry_points("[console_scripts]\nx = a\n").is_err());
    assert!(parse_entry_points("[console_scripts]\nx = a:b\nx = c:d\n").is_err());
    let eps = parse_entry_points("# c\n[console_scripts]\n; c\nb = m.n:f\na = m:g.h\n").expect("valid");
    let names: Vec<&str> = eps.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

/// Sets the host system (`made_by`) and the external attributes of `name`'s central
/// directory entry.
fn patch_central(zip: &mut [u8], name: &str, made_by: u8, external: u32) {
    let mut i = 0;
    let mut patched = false;
    while i + 46 <= zip.len() {
        if zip[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] {
            let n = u16::from_le_bytes([zip[i + 28], zip[i + 29]]) as usize;
            if zip.get(i + 46..i + 46 + n) == Some(name.as_bytes()) {
                zip[i + 5] = made_by;
                zip[i + 38..i + 42].copy_from_slice(&external.to_le_bytes());
                patched = true;
            }
        }
        i += 1;
    }
    assert!(patched, "{name} not in the central directory");
}

#[test]
fn executable_bits_follow_pip() {
    let files = |mode| {
        vec![
            ("demo_pkg/tool", b"#!/bin/sh\n".as_slice(), mode),
            ("demo_pkg-1.2.0.dist-info/METADATA", METADATA, 0o644),
            ("demo_pkg-1.2.0.dist-info/WHEEL", WHEEL, 0o644),
        ]
    };
    let mode_of = |w: &[u8]| {
        let inst = install_wheel(w, &opts()).expect("installs");
        inst.files.iter().find(|f| f.path.ends_with("demo_pkg/tool")).expect("tool").mode
    };
    assert_eq!(mode_of(&wheel(&files(0o755), |r| r)), 0o755);
    assert_eq!(mode_of(&wheel(&files(0o644), |r| r)), 0o644);
    // pip reads the st_mode in the high bits whatever system made the zip...
    let mut dos = wheel(&files(0o644), |r| r);
    patch_central(&mut dos, "demo_pkg/tool", 0, (0o100755 << 16) | 0x20);
    assert_eq!(mode_of(&dos), 0o755);
    // ...and makes only regular files executable.
    let mut untyped = wheel(&files(0o644), |r| r);
    patch_central(&mut untyped, "demo_pkg/tool", 3, 0o755 << 16);
    assert_eq!(mode_of(&untyped), 0o644);
}

/// A wheel's symbolic links that leave it are refused, naming the entry; one inside
/// installs as pip installs it (a file holding its target).
#[test]
fn links_leaving_the_wheel_are_refused() {
    const LINK: u32 = 0o120777;
    let with = |extra: &[(&'static str, &'static [u8], u32)]| {
        let mut files = demo_files();
        files.extend_from_slice(extra);
        install_wheel(&wheel(&files, |r| r), &opts())
    };
    for (extra, entry, why) in [
        (vec![("demo_pkg/evil", &b"/etc/passwd"[..], LINK)], "demo_pkg/evil", "its target is an absolute path"),
        (vec![("demo_pkg/evil", &b"../../../etc"[..], LINK)], "demo_pkg/evil", "`..` climbs above the package root"),
        (
            vec![("demo_pkg/a", &b"b"[..], LINK), ("demo_pkg/b", &b"../../x"[..], LINK)],
            "demo_pkg/a",
            "through symbolic link `demo_pkg/b`",
        ),
        (
            vec![("demo_pkg/up", &b".."[..], LINK), ("demo_pkg/evil", &b"up/../x"[..], LINK)],
            "demo_pkg/evil",
            "`..` climbs above the package root",
        ),
    ] {
        let e = with(&extra).map(drop).expect_err("refused");
        assert!(matches!(e, InstallError::Link(_)), "{e}");
        let text = e.to_string();
        assert!(text.contains(&format!("symbolic link `{entry}`")) && text.contains(why), "{text}");
    }
    let ok = with(&[("demo_pkg/alias.py", &b"cli.py"[..], LINK), ("demo_pkg/up", &b"../demo_pkg"[..], LINK)])
        .expect("links inside pass");
    let alias = ok.files.iter().find(|f| f.path.ends_with("demo_pkg/alias.py")).expect("installed");
    assert_eq!(alias.contents, b"cli.py", "as pip installs it");
}
