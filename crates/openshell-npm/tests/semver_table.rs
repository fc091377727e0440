//! node-semver range semantics, table form: `(range, version, satisfies)` as
//! `semver.satisfies(version, range, { loose: true })` answers (recorded from node-semver).

use openshell_npm::semver::{Range, Version, satisfies_loose};

#[rustfmt::skip]
const CASES: &[(&str, &str, bool)] = &[
        ("^1.2.3", "1.2.3", true),
        ("^1.2.3", "1.9.9", true),
        ("^1.2.3", "2.0.0", false),
        ("^1.2.3", "1.2.2", false),
        ("^0.2.3", "0.2.9", true),
        ("^0.2.3", "0.3.0", false),
        ("^0.0.3", "0.0.3", true),
        ("^0.0.3", "0.0.4", false),
        ("^1.2.3-beta.2", "1.2.3-beta.4", true),
        ("^1.2.3-beta.2", "1.2.4-beta.1", false),
        ("^1.2.3-beta.2", "1.2.3", true),
        ("^1.2.3-beta.2", "1.2.3-beta.1", false),
        ("^1.x", "1.9.0", true),
        ("^0.x", "0.9.0", true),
        ("^0.x", "1.0.0", false),
        ("^0.0.x", "0.0.9", true),
        ("^0.0.x", "0.1.0", false),
        ("^0", "0.5.0", true),
        ("~1.2.3", "1.2.9", true),
        ("~1.2.3", "1.3.0", false),
        ("~1.2", "1.2.0", true),
        ("~1.2", "1.3.0", false),
        ("~1", "1.9.9", true),
        ("~1", "2.0.0", false),
        ("~0.2.3", "0.2.5", true),
        ("~1.2.3-beta.2", "1.2.3-beta.3", true),
        ("~1.2.3-beta.2", "1.2.4-beta.1", false),
        ("~>1.2.3", "1.2.5", true),
        ("~ 1.0", "1.0.2", true),
        ("1.x", "1.0.0", true),
        ("1.x", "2.0.0", false),
        ("1.2.x", "1.2.7", true),
        ("1.2.x", "1.3.0", false),
        ("*", "1.2.3", true),
        ("*", "1.2.3-beta", false),
        ("", "0.0.1", true),
        ("x", "9.9.9", true),
        ("1.2.*", "1.2.9", true),
        (">=1.2.3", "1.2.3", true),
        (">=1.2.3", "1.2.3-beta", false),
        (">1.2.3", "1.2.4", true),
        (">1.2.3", "1.2.3", false),
        ("<1.2.3", "1.2.2", true),
        ("<1.2.3", "1.2.3-beta", false),
        ("<=1.2.3", "1.2.3", true),
        ("=1.2.3", "1.2.3", true),
        ("1.2.3", "1.2.3+build", true),
        ("v1.2.3", "1.2.3", true),
        (">=1.2.3 <2.0.0", "1.5.0", true),
        (">=1.2.3 <2.0.0", "2.0.0", false),
        (">= 1.2.3 < 2", "1.9.9", true),
        ("1.2.3 - 2.3.4", "2.3.4", true),
        ("1.2.3 - 2.3.4", "2.3.5", false),
        ("1.2 - 2.3.4", "1.2.0", true),
        ("1.2.3 - 2.3", "2.3.9", true),
        ("1.2.3 - 2", "2.9.9", true),
        ("1.2.3 - 2", "3.0.0", false),
        ("* - 2", "0.0.1", true),
        (">1.x", "2.0.0", true),
        (">1.x", "1.9.9", false),
        ("<1.x", "0.9.9", true),
        ("<1.x", "1.0.0", false),
        ("<=1.x", "1.9.9", true),
        ("<=1.x", "2.0.0", false),
        (">1.2", "1.3.0", true),
        (">1.2", "1.2.9", false),
        ("1.2.3 || 2.x", "2.5.0", true),
        ("1.2.3 || 2.x", "1.2.4", false),
        ("1.x || >=2.5.0 || 5.0.0 - 7.2.3", "5.5.0", true),
        ("1.x || >=2.5.0 || 5.0.0 - 7.2.3", "2.4.0", false),
        (">=1.0.0-alpha <1.0.0", "1.0.0-beta", true),
        (">1.2.3-alpha.3", "1.2.3-alpha.7", true),
        (">1.2.3-alpha.3", "3.4.5-alpha.9", false),
        (">1.2.3-alpha.3", "3.4.5", true),
        ("<1.2.3-beta", "1.2.3-alpha", true),
        ("1.2.3-beta", "1.2.3-beta", true),
        (">=0.0.0", "0.0.0-0", false),
        (">=0.0.0-0", "0.0.0-0", true),
        ("~1.2.1 >=1.2.3", "1.2.3", true),
        ("~1.2.1 >=1.2.3", "1.2.2", false),
        ("^2 <2.2 || > 2.3", "2.1.0", true),
        ("^2 <2.2 || > 2.3", "2.2.5", false),
        ("^2 <2.2 || > 2.3", "2.3.1", false),
        (">=1.2.3 <1.2.3", "1.2.3", false),
        ("<0.0.0-0", "0.0.0", false),
        (">01.02.03", "1.2.4", true),
        ("~1.2.3beta", "1.2.3-beta.1", true),
        ("=0.7", "0.7.9", true),
        ("1.2.3 garbage", "1.2.3", true),
        ("^1.2.3+build", "1.3.0", true),
        ("1.2.3beta", "1.2.3-beta", true),
        ("2.0.0-0 || ^1", "2.0.0-alpha", false),
];

#[test]
fn range_table() {
    let mut failures = Vec::new();
    for (range, version, want) in CASES {
        if satisfies_loose(version, range) != *want {
            failures.push(format!("{range:?} vs {version}: want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(CASES.len() >= 80);
}

#[test]
fn invalid_ranges_and_versions() {
    for bad in ["latest", "not a range", "1.2.3.4", "~", "=", ">=", "a.b.c"] {
        assert!(Range::parse(bad).is_err(), "{bad:?} should not be a range");
    }
    let e = Range::parse("latest").expect_err("not a range");
    assert!(e.to_string().contains("\"latest\""), "{e}");
    for bad in ["", "1.2", "1.2.3.4", "99999999999999999999.0.0", &"1".repeat(300)] {
        assert!(Version::parse_loose(bad).is_err(), "{bad:?} should not be a version");
    }
    assert!(Version::parse_strict("v1.2.3").is_ok());
    assert!(Version::parse_strict("=1.2.3").is_err());
    assert!(Version::parse_loose("=1.2.3").is_ok());
}

#[test]
fn normalized_forms() {
    let n = |r: &str| Range::parse(r).expect("valid").normalized();
    assert_eq!(n("^1.2.3"), ">=1.2.3 <2.0.0-0");
    assert_eq!(n("~1.2"), ">=1.2.0 <1.3.0-0");
    assert_eq!(n("1.2.3 - 2.3"), ">=1.2.3 <2.4.0-0");
    assert_eq!(n(">1.x"), ">=2.0.0");
    assert_eq!(n("*"), "*");
    assert_eq!(n("1.x || *"), "*");
    assert_eq!(n("<0.0.0-0 || 1.x"), ">=1.0.0 <2.0.0-0");
}

#[test]
fn ordering_and_display() {
    let v = |s: &str| Version::parse_loose(s).expect("valid");
    let mut vs: Vec<Version> =
        ["1.0.0", "1.0.0-rc.1", "1.0.0-beta.11", "1.0.0-beta.2", "1.0.0-beta", "1.0.0-alpha.1", "1.0.0-alpha", "0.9.9"]
            .iter()
            .map(|s| v(s))
            .collect();
    vs.sort();
    let s: Vec<String> = vs.iter().map(ToString::to_string).collect();
    assert_eq!(
        s,
        ["0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"]
    );
    assert_eq!(v("1.2.3+build.7"), v("1.2.3"));
    assert_eq!(v(" =v01.02.03 ").to_string(), "1.2.3");
}

#[test]
fn range_errors_say_why() {
    use openshell_npm::semver::{RangeOptions, RangeProblem};
    let strict = RangeOptions { loose: false, include_prerelease: false };
    let err = Range::parse("nope").expect_err("loose: every comparator dropped");
    assert_eq!(err.reason, RangeProblem::NoComparators);
    let err = Range::parse_with("blerg 1.2.3", strict).expect_err("strict");
    assert_eq!(err.reason, RangeProblem::Comparator("blerg".into()));
    assert_eq!(err.to_string(), "invalid semver range \"blerg 1.2.3\": invalid comparator \"blerg\"");
}
