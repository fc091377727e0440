//! Relation field parsing.

use openshell_debian::relations::{
    ArchQualifier, ArchRestriction, Relation, VersionOp, display_alternatives, parse_provides, parse_relations,
};
use openshell_debian::version::Version;

fn one(text: &str) -> Relation {
    let mut g = parse_relations("Depends", text).expect("parses");
    assert_eq!(g.len(), 1, "{text}");
    assert_eq!(g[0].len(), 1, "{text}");
    g.remove(0).remove(0)
}

#[test]
fn plain_names_and_groups() {
    let g = parse_relations("Depends", "libc6 (>= 2.36), zlib1g, libssl3 | libssl1.1").expect("parses");
    assert_eq!(g.len(), 3);
    assert_eq!(g[0][0].name, "libc6");
    assert_eq!(g[1][0], Relation::named("zlib1g"));
    assert_eq!(g[2].iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["libssl3", "libssl1.1"]);
    assert_eq!(display_alternatives(&g[2]), "libssl3 | libssl1.1");
}

#[test]
fn all_operators() {
    for (text, op) in [
        ("a (<< 1)", VersionOp::Lt),
        ("a (<= 1)", VersionOp::Le),
        ("a (= 1)", VersionOp::Eq),
        ("a (>= 1)", VersionOp::Ge),
        ("a (>> 1)", VersionOp::Gt),
        ("a (< 1)", VersionOp::Le),
        ("a (> 1)", VersionOp::Ge),
        ("a(>=1)", VersionOp::Ge),
        ("a ( >=  1 )", VersionOp::Ge),
    ] {
        let r = one(text);
        let c = r.constraint.expect("constraint");
        assert_eq!(c.op, op, "{text}");
        assert_eq!(c.version, Version::parse("1").expect("v"));
    }
}

#[test]
fn constraint_matching() {
    let v = |s: &str| Version::parse(s).expect("v");
    let r = one("libc6 (>= 2.36-9+deb12u4)");
    assert!(r.version_matches(&v("2.36-9+deb12u10")));
    assert!(!r.version_matches(&v("2.36-9")));
    let r = one("foo (<< 2.0~)");
    assert!(r.version_matches(&v("1.9")));
    assert!(!r.version_matches(&v("2.0~rc1")));
    assert!(one("foo").version_matches(&v("0")));
}

#[test]
fn multiarch_qualifiers() {
    assert_eq!(one("python3:any").arch_qualifier, Some(ArchQualifier::Any));
    assert_eq!(one("libc6:amd64").arch_qualifier, Some(ArchQualifier::Arch("amd64".into())));
    assert_eq!(one("perl:native").arch_qualifier, Some(ArchQualifier::Native));
    let r = one("python3:any (>= 3.11~)");
    assert_eq!(r.arch_qualifier, Some(ArchQualifier::Any));
    assert_eq!(r.constraint.expect("c").op, VersionOp::Ge);
    assert_eq!(one("python3:any (>= 3.11~)").to_string(), "python3:any (>= 3.11~)");
}

#[test]
fn arch_restrictions() {
    let r = one("libseccomp-dev [amd64 arm64]");
    assert_eq!(
        r.arches,
        [
            ArchRestriction { negated: false, arch: "amd64".into() },
            ArchRestriction { negated: false, arch: "arm64".into() }
        ]
    );
    assert!(r.applies_to("amd64"));
    assert!(!r.applies_to("i386"));
    let r = one("foo (>= 1) [!i386 !hurd-any]");
    assert!(r.applies_to("amd64"));
    assert!(!r.applies_to("i386"));
    assert!(!r.applies_to("hurd-i386"));
    assert!(one("x [linux-any]").applies_to("amd64"));
    assert!(one("x [any-amd64]").applies_to("amd64"));
    assert!(!one("x [any-arm64]").applies_to("amd64"));
    assert_eq!(one("x [amd64 arm64]").to_string(), "x [amd64 arm64]");
}

#[test]
fn build_profiles_are_ignored() {
    let r = one("python3-pytest <!nocheck>");
    assert_eq!(r, Relation::named("python3-pytest"));
    let r = one("foo (>= 1) [amd64] <!nocheck> <stage1 cross>");
    assert_eq!(r.name, "foo");
    assert_eq!(r.arches.len(), 1);
}

#[test]
fn multiline_and_trailing_commas() {
    let g = parse_relations("Depends", "a,\n b (>= 1),\n c | d,\n").expect("parses");
    assert_eq!(g.len(), 3);
    assert!(parse_relations("Depends", "").expect("empty").is_empty());
}

#[test]
fn errors_name_field_and_text() {
    let cases = [
        ("a | | b", "empty alternative"),
        ("a (>= 1", "missing `)`"),
        ("a (~ 1)", "expected a version operator"),
        ("a (>= )", "version"),
        ("a (>= 1.0_x)", "invalid character"),
        ("a [amd64", "missing `]`"),
        ("a []", "empty architecture"),
        ("a [amd64 !i386]", "mixes"),
        ("a <!nocheck", "missing `>`"),
        ("a b", "unexpected `b`"),
        ("(>= 1)", "expected a package name"),
        ("-a", "must start with"),
        ("a:", "empty architecture qualifier"),
    ];
    for (text, want) in cases {
        let err = parse_relations("Pre-Depends", text).expect_err(text);
        let msg = err.to_string();
        assert!(msg.starts_with("Pre-Depends `"), "{text}: {msg}");
        assert!(msg.contains(want), "{text}: {msg}");
    }
}

#[test]
fn provides() {
    let p = parse_provides("Provides", "awk, python3-foo (= 1.2-1), libfoo-abi-2").expect("parses");
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].name, "awk");
    assert_eq!(p[0].version, None);
    assert_eq!(p[1].version, Some(Version::parse("1.2-1").expect("v")));
    assert_eq!(p[1].to_string(), "python3-foo (= 1.2-1)");
    assert!(parse_provides("Provides", "a | b").expect_err("alt").to_string().contains("alternatives"));
    assert!(parse_provides("Provides", "a (>= 1)").expect_err("op").to_string().contains("only `=`"));
    assert!(parse_provides("Provides", "a [amd64]").is_err());
}
