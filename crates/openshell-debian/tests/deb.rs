//! `.deb` unpacking, on packages built by `dpkg-deb` and on hand-made broken ones.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use openshell_debian::deb::{DataEntry, DebError, DebReader, EntryKind};

/// Builds a small package tree and returns its root.
fn package_tree(dir: &Path) -> PathBuf {
    let root = dir.join("hello");
    let mkdir = |p: &str| fs::create_dir_all(root.join(p)).expect("mkdir");
    let write = |p: &str, data: &[u8], mode: u32| {
        let path = root.join(p);
        fs::write(&path, data).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    for d in ["DEBIAN", "usr/bin", "etc", "usr/share/doc/hello", "var/mail"] {
        mkdir(d);
    }
    fs::set_permissions(root.join("DEBIAN"), fs::Permissions::from_mode(0o755)).expect("chmod");
    write(
        "DEBIAN/control",
        b"Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: Test <t@example.invalid>\n\
Depends: libc6 (>= 2.36)\nDescription: greeting\n a test package\n",
        0o644,
    );
    write("DEBIAN/postinst", b"#!/bin/sh\necho never run\n", 0o755);
    write("DEBIAN/prerm", b"#!/bin/sh\nexit 0\n", 0o755);
    write("DEBIAN/conffiles", b"/etc/hello.conf\n", 0o644);
    write("DEBIAN/triggers", b"interest-noawait /usr/share/hello\n", 0o644);
    write("usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755);
    write("usr/bin/hello-suid", b"suid\n", 0o4755);
    write("etc/hello.conf", b"greeting=hi\n", 0o644);
    write("usr/share/doc/hello/README", b"read me\n", 0o644);
    fs::set_permissions(root.join("var/mail"), fs::Permissions::from_mode(0o2775)).expect("chmod");
    symlink("hello", root.join("usr/bin/hi")).expect("symlink");
    fs::hard_link(root.join("usr/bin/hello"), root.join("usr/bin/hello2")).expect("hardlink");
    let long_dir = format!("usr/share/doc/hello/{}", "d".repeat(60));
    mkdir(&long_dir);
    write(&format!("{long_dir}/{}", "f".repeat(80)), b"long\n", 0o644);
    // md5sums as dh_md5sums writes them.
    let out = Command::new("sh")
        .arg("-c")
        .arg("find etc usr -type f | LC_ALL=C sort | xargs md5sum")
        .current_dir(&root)
        .output()
        .expect("md5sum");
    assert!(out.status.success());
    write("DEBIAN/md5sums", &out.stdout, 0o644);
    root
}

fn build(dir: &Path, root: &Path, compression: &str) -> PathBuf {
    let out = dir.join(format!("hello-{compression}.deb"));
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
        .arg(root)
        .arg(&out)
        .output()
        .expect("dpkg-deb is installed");
    assert!(st.status.success(), "dpkg-deb -Z{compression}: {}", String::from_utf8_lossy(&st.stderr));
    out
}

struct Unpacked {
    entries: BTreeMap<String, DataEntry>,
    order: Vec<String>,
    contents: BTreeMap<String, Vec<u8>>,
}

fn unpack(path: &Path) -> (openshell_debian::deb::DebControl, Unpacked) {
    let file = fs::File::open(path).expect("open");
    let reader = DebReader::new(path.display().to_string(), std::io::BufReader::new(file)).expect("valid deb");
    assert_eq!(reader.control().control.get("Package"), Some("hello"));
    let mut u = Unpacked { entries: BTreeMap::new(), order: Vec::new(), contents: BTreeMap::new() };
    let control = reader
        .for_each_entry(|e, r| {
            if e.kind == EntryKind::File {
                let mut buf = Vec::new();
                r.read_to_end(&mut buf)?;
                assert_eq!(buf.len() as u64, e.size);
                u.contents.insert(e.path.clone(), buf);
            }
            u.order.push(e.path.clone());
            u.entries.insert(e.path.clone(), e.clone());
            Ok::<(), std::io::Error>(())
        })
        .expect("data walk");
    (control, u)
}

#[test]
fn unpacks_dpkg_deb_packages_in_every_compression() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = package_tree(tmp.path());
    for comp in ["xz", "gzip", "zstd", "none"] {
        let deb = build(tmp.path(), &root, comp);
        let (control, u) = unpack(&deb);

        // Control archive.
        let suffix = match comp {
            "xz" => ".xz",
            "gzip" => ".gz",
            "zstd" => ".zst",
            _ => "",
        };
        assert_eq!(control.control_member, format!("control.tar{suffix}"), "{comp}");
        assert_eq!(control.data_member, format!("data.tar{suffix}"), "{comp}");
        assert_eq!(control.control.get("Version"), Some("1.0-1"));
        assert_eq!(control.control.get("Depends"), Some("libc6 (>= 2.36)"));
        assert_eq!(control.maintainer_scripts, ["postinst", "prerm"]);
        assert_eq!(control.conffiles.len(), 1);
        assert_eq!(control.conffiles[0].path, "/etc/hello.conf");
        assert!(control.conffiles[0].flags.is_empty());
        assert!(control.files.contains_key("triggers"));
        assert_eq!(control.files["postinst"], b"#!/bin/sh\necho never run\n");
        let md5: BTreeMap<&str, &str> = control.md5sums.iter().map(|m| (m.path.as_str(), m.md5.as_str())).collect();
        assert_eq!(md5.len(), 6, "{md5:?}");
        assert_eq!(md5["etc/hello.conf"], format!("{:x}", Md5(b"greeting=hi\n")));

        // Data archive.
        assert!(!u.entries.contains_key(""), "root entry is skipped");
        assert!(
            u.order.iter().all(|p| !p.starts_with("./") && !p.starts_with('/') && !p.ends_with('/')),
            "{:?}",
            u.order
        );
        let e = |p: &str| u.entries.get(p).unwrap_or_else(|| panic!("{comp}: no entry {p} in {:?}", u.order));
        assert_eq!(e("usr").kind, EntryKind::Dir);
        assert_eq!(e("usr/bin/hello").kind, EntryKind::File);
        assert_eq!(e("usr/bin/hello").mode, 0o755);
        assert_eq!(e("usr/bin/hello-suid").mode, 0o4755, "setuid bit kept");
        assert_eq!(e("var/mail").mode, 0o2775, "setgid bit kept");
        assert_eq!(e("etc/hello.conf").mode, 0o644);
        assert_eq!((e("etc/hello.conf").uid, e("etc/hello.conf").gid), (0, 0));
        assert_eq!(e("etc/hello.conf").uname.as_deref(), Some("root"));
        assert_eq!(e("usr/bin/hi").kind, EntryKind::Symlink);
        assert_eq!(e("usr/bin/hi").link_target.as_deref(), Some("hello"));
        assert_eq!(e("usr/bin/hi").size, 0);
        // One of the two hard-linked names is the file, the later one links to it.
        let (file, link) = if e("usr/bin/hello2").kind == EntryKind::Hardlink {
            ("usr/bin/hello", "usr/bin/hello2")
        } else {
            ("usr/bin/hello2", "usr/bin/hello")
        };
        assert_eq!(e(link).kind, EntryKind::Hardlink);
        assert_eq!(e(link).link_target.as_deref(), Some(file), "hard link target normalized");
        assert_eq!(u.contents[file], b"#!/bin/sh\necho hello\n");
        let long = format!("usr/share/doc/hello/{}/{}", "d".repeat(60), "f".repeat(80));
        assert_eq!(u.contents[&long], b"long\n", "long names");
        assert_eq!(u.contents["usr/share/doc/hello/README"], b"read me\n");
        assert!(!u.entries.keys().any(|p| p.starts_with("DEBIAN")), "control files are not data");
    }
}

#[test]
fn entries_lists_metadata_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let deb = build(tmp.path(), &package_tree(tmp.path()), "xz");
    let data = fs::read(&deb).expect("read");
    let (control, entries) = DebReader::new("hello.deb", data.as_slice()).expect("deb").entries().expect("entries");
    assert_eq!(control.control.get("Package"), Some("hello"));
    assert!(entries.iter().any(|e| e.path == "usr/bin/hello-suid" && e.mode == 0o4755));
    let dirs_before_children = entries.iter().position(|e| e.path == "usr").expect("usr")
        < entries.iter().position(|e| e.path == "usr/bin").expect("usr/bin");
    assert!(dirs_before_children);
}

#[test]
fn callback_errors_name_the_entry() {
    let tmp = tempfile::tempdir().expect("tmp");
    let deb = build(tmp.path(), &package_tree(tmp.path()), "gzip");
    let data = fs::read(&deb).expect("read");
    let err = DebReader::new("hello.deb", data.as_slice())
        .expect("deb")
        .for_each_entry(|e, _| if e.path == "etc/hello.conf" { Err("disk full") } else { Ok(()) })
        .expect_err("callback fails");
    assert_eq!(err.to_string(), "hello.deb: entry `etc/hello.conf`: disk full");
}

/// Tiny MD5 via `md5sum`, to check the parsed md5sums independently.
struct Md5<'a>(&'a [u8]);

impl std::fmt::LowerHex for Md5<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::io::Write;
        let mut child = Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("md5sum");
        child.stdin.take().expect("stdin").write_all(self.0).expect("write");
        let out = child.wait_with_output().expect("md5sum runs");
        f.write_str(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default())
    }
}

// ---- hand-made archives -------------------------------------------------------------

fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        out.extend_from_slice(
            format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", format!("{name}/"), 0, 0, 0, "100644", data.len())
                .as_bytes(),
        );
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A tar with raw entries: (path bytes, type, mode, contents, link name).
fn raw_tar(entries: &[(&str, tar::EntryType, u32, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        if !link.is_empty() {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

fn control_tar() -> Vec<u8> {
    raw_tar(&[
        ("./", tar::EntryType::Directory, 0o755, b"", ""),
        ("./control", tar::EntryType::Regular, 0o644, b"Package: x\nVersion: 1\nArchitecture: all\n", ""),
    ])
}

fn deb_with_data(data: &[u8]) -> Vec<u8> {
    ar(&[("debian-binary", b"2.0\n"), ("control.tar", &control_tar()), ("data.tar", data)])
}

fn walk(deb: &[u8]) -> Result<Vec<DataEntry>, DebError> {
    DebReader::new("x.deb", deb)?.entries().map(|(_, e)| e)
}

#[test]
fn hand_made_deb_with_underscore_members() {
    let data = raw_tar(&[
        ("./etc/", tar::EntryType::Directory, 0o755, b"", ""),
        ("etc/f", tar::EntryType::Regular, 0o600, b"x", ""),
    ]);
    let deb = ar(&[
        ("debian-binary", b"2.0\n"),
        ("_extra", b"ignored"),
        ("control.tar", &control_tar()),
        ("_sig", b"zz"),
        ("data.tar", &data),
    ]);
    let entries = walk(&deb).expect("valid");
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["etc", "etc/f"]);
    assert_eq!(entries[1].mode, 0o600);
}

#[test]
fn path_traversal_is_rejected() {
    for (path, kind, link) in [
        ("./../etc/passwd", tar::EntryType::Regular, ""),
        ("usr/../../x", tar::EntryType::Regular, ""),
        ("./usr/bin/x", tar::EntryType::Link, "../../etc/shadow"),
    ] {
        let deb = deb_with_data(&raw_tar(&[(path, kind, 0o644, b"", link)]));
        let err = walk(&deb).expect_err(path);
        assert!(matches!(err, DebError::Entry { .. }), "{path}: {err}");
        assert!(err.to_string().contains(".."), "{err}");
    }
    // Absolute paths are made relative; symlink targets are kept verbatim.
    let deb = deb_with_data(&raw_tar(&[
        ("/usr/x", tar::EntryType::Regular, 0o644, b"", ""),
        ("./usr/y", tar::EntryType::Symlink, 0o777, b"", "../../etc/z"),
    ]));
    let e = walk(&deb).expect("valid");
    assert_eq!(e[0].path, "usr/x");
    assert_eq!(e[1].link_target.as_deref(), Some("../../etc/z"));
}

#[test]
fn malformed_containers_are_errors() {
    let good = deb_with_data(&raw_tar(&[("./f", tar::EntryType::Regular, 0o644, b"x", "")]));
    assert!(walk(&good).is_ok());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not ar", b"hello world, not an archive".to_vec(), "bad magic"),
        ("empty ar", b"!<arch>\n".to_vec(), "empty ar archive"),
        ("truncated", good[..good.len() / 2].to_vec(), "x.deb"),
        ("truncated header", good[..30].to_vec(), "truncated"),
        ("wrong first", ar(&[("control.tar", &control_tar())]), "expected `debian-binary`"),
        (
            "version 3",
            ar(&[("debian-binary", b"3.0\n"), ("control.tar", &control_tar())]),
            "unsupported format version `3.0`",
        ),
        ("no control", ar(&[("debian-binary", b"2.0\n")]), "no control member"),
        ("bad control name", ar(&[("debian-binary", b"2.0\n"), ("control.tar.bz2", b"")]), "expected control.tar"),
        ("no data", ar(&[("debian-binary", b"2.0\n"), ("control.tar", &control_tar())]), "no data member"),
        (
            "bad data name",
            ar(&[("debian-binary", b"2.0\n"), ("control.tar", &control_tar()), ("data.tar.lzma", b"")]),
            "expected data.tar",
        ),
        (
            "no control file",
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar", &raw_tar(&[("./md5sums", tar::EntryType::Regular, 0o644, b"", "")])),
                ("data.tar", b""),
            ]),
            "has no `control` file",
        ),
        (
            "bad control syntax",
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar", &raw_tar(&[("./control", tar::EntryType::Regular, 0o644, b"Package x\n", "")])),
                ("data.tar", b""),
            ]),
            "x.deb: control.tar: control:1: expected `Field: value`",
        ),
        (
            "bad md5sums",
            ar(&[
                ("debian-binary", b"2.0\n"),
                (
                    "control.tar",
                    &raw_tar(&[
                        ("./control", tar::EntryType::Regular, 0o644, b"Package: x\n", ""),
                        ("./md5sums", tar::EntryType::Regular, 0o644, b"nothex  usr/x\n", ""),
                    ]),
                ),
                ("data.tar", b""),
            ]),
            "md5sums:1",
        ),
        ("corrupt data", deb_with_data(b"this is not a tar archive at all, and not 512 bytes"), "data.tar"),
    ];
    for (what, deb, want) in cases {
        let err = walk(&deb).expect_err(what);
        assert!(err.to_string().contains(want), "{what}: want {want:?} in {err}");
    }
    let err = walk(b"!<arch>\ndebian-binary   0           0     0     100644  4         X\n").expect_err("bad fmag");
    assert!(err.to_string().contains("terminator"), "{err}");
}

#[test]
fn conffile_flags_are_parsed() {
    let deb = ar(&[
        ("debian-binary", b"2.0\n"),
        (
            "control.tar",
            &raw_tar(&[
                ("./control", tar::EntryType::Regular, 0o644, b"Package: x\n", ""),
                ("./conffiles", tar::EntryType::Regular, 0o644, b"/etc/a\nremove-on-upgrade /etc/b c\n\n", ""),
            ]),
        ),
        ("data.tar", &raw_tar(&[])),
    ]);
    let r = DebReader::new("x.deb", deb.as_slice()).expect("valid");
    let c = &r.control().conffiles;
    assert_eq!(c.len(), 2);
    assert_eq!((c[0].path.as_str(), c[0].flags.len()), ("/etc/a", 0));
    assert_eq!((c[1].path.as_str(), c[1].flags.as_slice()), ("/etc/b c", &["remove-on-upgrade".to_owned()][..]));
    assert!(r.control().maintainer_scripts.is_empty());
}
