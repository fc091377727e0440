//! Debian version comparison, checked against a table and (when present) dpkg itself.

use std::cmp::Ordering::{self, Equal, Greater, Less};
use std::process::Command;

use openshell_debian::version::{Version, compare_fragment};

const PAIRS: &[(&str, &str, Ordering)] = &[
    ("1.0~rc1", "1.0", Less),
    ("1:0.1", "2.0", Greater),
    ("1.0-1", "1.0", Greater),
    ("2.30-1+deb12u1", "2.30-1", Greater),
    ("2.30-1+deb12u1", "2.30-2", Less),
    ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
    ("1.0", "1.00", Equal),
    ("1.0", "0:1.0", Equal),
    ("1.0", "1.0-0", Equal),
    ("1.0~", "1.0", Less),
    ("1.0~~", "1.0~", Less),
    ("1.0~~a", "1.0~", Less),
    ("1.0~a", "1.0~b", Less),
    ("1.0a", "1.0", Greater),
    ("1.0a", "1.0+", Less),
    ("1.0+", "1.0.", Less),
    ("1.0.", "1.0", Greater),
    ("1.0a", "1.0.1", Less),
    ("1.2.3", "1.10", Less),
    ("1.10", "1.9", Greater),
    ("9", "10", Less),
    ("2:1", "1:99", Greater),
    ("0:9", "1:0", Less),
    ("1.0-1", "1.0-1.1", Less),
    ("1.0-1.1", "1.0-2", Less),
    ("1.0-1~bpo1", "1.0-1", Less),
    ("1.0-1ubuntu1", "1.0-1", Greater),
    ("1.0-1+b1", "1.0-1", Greater),
    ("1.0-1+b1", "1.0-1.1", Less),
    ("3.13.5-2", "3.13.5-1", Greater),
    ("3.13.5-2", "3.13.5-2+deb13u1", Less),
    ("1.2.3-4", "1.2.3-4", Equal),
    ("1.2.3-04", "1.2.3-4", Equal),
    ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", Less),
    ("20230311", "2.0", Greater),
    ("1:1.2.13.dfsg-1", "1.2.13", Greater),
    ("2.0~beta1", "2.0~beta2", Less),
    ("2.0~beta2", "2.0~rc1", Less),
    ("2.0~rc1", "2.0", Less),
    ("2.0", "2.0.0", Less),
    ("2.0.0", "2.0.1", Less),
    ("1.0a1", "1.0b", Less),
    ("1.0-a", "1.0-b", Less),
    ("1.0-1a", "1.0-1", Greater),
    ("1.0~rc1-1", "1.0-1", Less),
    ("1.0-0~", "1.0", Less),
    ("1.0+dfsg-1", "1.0-1", Greater),
    ("1.0+dfsg-1", "1.0.1-1", Less),
    ("1:2.0", "01:2.0", Equal),
    ("10.0", "9.9", Greater),
    ("1.000001", "1.1", Equal),
    ("0.0", "0", Greater),
    ("1.0~rc1+dfsg", "1.0~rc1", Greater),
    ("1.0~rc1", "1.0~beta", Greater),
    ("4.19.0-1~exp1", "4.19.0-1", Less),
    ("1:4.19.0-1~exp1", "4.20", Greater),
    ("2.38.1-5+deb12u3", "2.38.1-5+deb12u2", Greater),
    ("1.2.13.dfsg-1", "1.2.13.dfsg-1+b1", Less),
    ("1.0.0-1", "1.0.0a-1", Less),
    ("5.2.15-2+b2", "5.2.21-2", Less),
    ("252.30-1~deb12u2", "252.31-1~deb12u1", Less),
    ("1.0-1~", "1.0-1", Less),
    ("1.0-1~~", "1.0-1~", Less),
    ("3.0.11-1~deb12u2", "3.0.11-1", Less),
    ("2:9.0.1378-2", "2:9.0.1378-1", Greater),
    ("1.0A", "1.0z", Less),
    ("1.0-a1", "1.0-1", Greater),
    ("1.2-3-4", "1.2-3-5", Less),
    ("1.2-3-4", "1.2-4-1", Less),
    ("2.2.40-1.1+deb12u2", "2.2.40-1.1", Greater),
    ("1.21.22", "1.21.9", Greater),
    ("6.1.0-37", "6.12.38-1", Less),
    ("1.0~~~", "1.0~~", Less),
    ("1.0-1+deb12u1~bpo11+1", "1.0-1+deb12u1", Less),
];

#[test]
fn table_has_enough_cases() {
    assert!(PAIRS.len() >= 60, "{} pairs", PAIRS.len());
}

#[test]
fn comparison_table() {
    for &(a, b, want) in PAIRS {
        let va = Version::parse(a).unwrap_or_else(|e| panic!("{a}: {e}"));
        let vb = Version::parse(b).unwrap_or_else(|e| panic!("{b}: {e}"));
        assert_eq!(va.cmp(&vb), want, "{a} vs {b}");
        assert_eq!(vb.cmp(&va), want.reverse(), "{b} vs {a} (antisymmetry)");
        assert_eq!(va == vb, want == Equal, "{a} == {b}");
    }
}

/// The same table answered by `dpkg --compare-versions`, so the expectations above are
/// dpkg's and not ours.
#[test]
fn table_agrees_with_dpkg() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        panic!("dpkg is required for this test (Debian machines have it)");
    }
    for &(a, b, want) in PAIRS {
        let op = match want {
            Less => "lt",
            Equal => "eq",
            Greater => "gt",
        };
        let status = Command::new("dpkg").args(["--compare-versions", a, op, b]).status().expect("run dpkg");
        assert!(status.success(), "dpkg disagrees: {a} {op} {b}");
    }
}

#[test]
fn sorting_a_list() {
    let mut vs: Vec<Version> = ["1.0", "1.0~rc1", "1:0.1", "1.0-1", "0.9", "1.0+b1", "1.0~rc1~1"]
        .iter()
        .map(|s| s.parse().expect("valid"))
        .collect();
    vs.sort();
    let got: Vec<&str> = vs.iter().map(Version::as_str).collect();
    assert_eq!(got, ["0.9", "1.0~rc1~1", "1.0~rc1", "1.0", "1.0-1", "1.0+b1", "1:0.1"]);
}

#[test]
fn fragment_comparison() {
    assert_eq!(compare_fragment("", ""), Equal);
    assert_eq!(compare_fragment("~", ""), Less);
    assert_eq!(compare_fragment("a", ""), Greater);
    assert_eq!(compare_fragment("000", ""), Equal);
    assert_eq!(compare_fragment("99999999999999999999999", "99999999999999999999998"), Greater);
}

#[test]
fn display_keeps_the_text() {
    let v = Version::parse("  1:2.30-1+deb12u1\n").expect("valid");
    assert_eq!(v.to_string(), "1:2.30-1+deb12u1");
    assert_eq!(format!("{v:?}"), "Version(1:2.30-1+deb12u1)");
    let v = Version::parse("2.0").expect("valid");
    assert_eq!((v.epoch(), v.upstream(), v.revision()), (0, "2.0", ""));
}

#[test]
fn parse_errors_name_the_version_and_problem() {
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("1 0", "embedded spaces"),
        (":1", "epoch in version is empty"),
        ("a:1", "epoch in version is not number"),
        ("-1:1", "epoch in version is not number"),
        ("99999999999:1", "epoch in version is too big"),
        ("1:", "nothing after colon"),
        ("1.0-", "revision number is empty"),
        ("-1", "version number is empty"),
        ("1:-1", "version number is empty"),
        ("1.0_1", "invalid character in version number"),
        ("1.0-1_2", "invalid character in revision number"),
        ("1:1.0-1:2", "invalid character in revision number"),
    ];
    for (input, want) in cases {
        let err = Version::parse(input).expect_err(input);
        let msg = err.to_string();
        assert!(msg.contains(want), "{input:?}: {msg}");
        assert!(msg.contains(&format!("`{input}`")), "{input:?}: {msg}");
    }
}
