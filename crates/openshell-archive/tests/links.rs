//! Link containment, from the attacker's side: each way out is refused, naming the
//! link; links that stay inside (the positive controls) pass.

use openshell_archive::{Escape, LinkError, LinkKind, PackageLinks};

fn package(members: &[(&str, Option<&str>)]) -> PackageLinks {
    let mut p = PackageLinks::new();
    for (path, target) in members {
        match target {
            Some(t) => p.symlink(path, t),
            None => p.plain(path),
        }
    }
    p
}

fn escape(members: &[(&str, Option<&str>)]) -> (String, Escape) {
    match package(members).check() {
        Err(LinkError::Escapes { entry, kind: LinkKind::Symbolic, escape, .. }) => (entry, escape),
        other => panic!("{members:?}: expected an escape, got {other:?}"),
    }
}

#[test]
fn links_inside_the_package_pass() {
    let p = package(&[
        ("bin", None),
        ("bin/tool", Some("../lib/tool.js")),
        ("lib", None),
        ("lib/tool.js", None),
        ("lib/alias.js", Some("tool.js")),
        ("lib/chain.js", Some("./alias.js")),
        ("lib/here", Some(".")),
        ("lib/via-dir", Some("../bin/../lib/./tool.js")),
        ("dangling", Some("missing/file")),
        ("up-and-back", Some("lib/../lib/here/tool.js")),
    ]);
    p.check().expect("every link stays inside");
    let mut hard = PackageLinks::new();
    hard.plain("lib/tool.js");
    hard.hardlink("bin/tool", "lib/tool.js");
    hard.check().expect("a hard link inside");
}

#[test]
fn absolute_targets_are_refused() {
    assert_eq!(escape(&[("evil", Some("/etc/passwd"))]), ("evil".into(), Escape::Absolute));
    assert_eq!(escape(&[("lib", None), ("lib/evil", Some("//etc"))]), ("lib/evil".into(), Escape::Absolute));
}

#[test]
fn dot_dot_above_the_root_is_refused() {
    assert_eq!(escape(&[("evil", Some("../other-package/index.js"))]), ("evil".into(), Escape::AboveRoot));
    assert_eq!(escape(&[("a/b/evil", Some("../../../x"))]), ("a/b/evil".into(), Escape::AboveRoot));
    assert_eq!(escape(&[("a/evil", Some("x/../../.."))]), ("a/evil".into(), Escape::AboveRoot));
}

#[test]
fn a_link_to_a_link_that_leaves_is_refused() {
    // `a` looks harmless; it resolves through `b`, which is absolute.
    let (entry, why) = escape(&[("a", Some("b")), ("b", Some("/etc"))]);
    assert_eq!((entry.as_str(), why), ("a", Escape::Through { link: "b".into() }));
    // Three deep: the innermost link is named.
    let (entry, why) = escape(&[("a", Some("b/x")), ("b", Some("c")), ("c", Some("../.."))]);
    assert_eq!((entry.as_str(), why), ("a", Escape::Through { link: "c".into() }));
}

#[test]
fn a_target_that_escapes_only_through_another_link_is_refused() {
    // `dir/up` → `..` is the package root (fine on its own); `dir/evil` → `up/../x`
    // lexically stays in `dir`, but the kernel resolves `up` first: root, then `..`.
    let p = package(&[("dir", None), ("dir/up", Some("..")), ("dir/evil", Some("up/../x"))]);
    match p.check() {
        Err(LinkError::Escapes { entry, escape: Escape::AboveRoot, .. }) => assert_eq!(entry, "dir/evil"),
        other => panic!("{other:?}"),
    }
    // Positive control: without the physical `..` after `up` it stays inside.
    package(&[("dir", None), ("dir/up", Some("..")), ("dir/ok", Some("up/dir/x"))]).check().expect("inside");
}

#[test]
fn hard_links_outside_are_refused() {
    let mut p = PackageLinks::new();
    p.hardlink("evil", "../../etc/shadow");
    let e = p.check().expect_err("above the root");
    assert!(matches!(&e, LinkError::Escapes { kind: LinkKind::Hard, escape: Escape::AboveRoot, .. }), "{e}");
    // Through a symbolic link to a directory outside.
    let mut p = PackageLinks::new();
    p.symlink("sys", "/etc");
    p.hardlink("a-passwd", "sys/passwd");
    let e = p.check().expect_err("through a link");
    assert!(
        matches!(&e, LinkError::Escapes { entry, escape: Escape::Through { link }, .. } if entry == "a-passwd" && link == "sys"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "hard link `a-passwd` → `sys/passwd` leaves the package: it resolves through symbolic link `sys`, which leaves"
    );
}

#[test]
fn members_under_a_link_and_loops_are_refused() {
    let e = package(&[("lib", Some("sub")), ("sub", None), ("lib/x.js", None)]).check().expect_err("under a link");
    assert_eq!(e, LinkError::ThroughLink { entry: "lib/x.js".into(), link: "lib".into() });
    let e = package(&[("a", Some("b")), ("b", Some("a"))]).check().expect_err("loop");
    assert!(matches!(e, LinkError::Loop { .. }), "{e}");
}
