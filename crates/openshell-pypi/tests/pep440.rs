//! PEP 440 and tag checks against answers recorded from `packaging` 26.4.

mod oracle;

use openshell_pypi::{SpecifierSet, Target, Version};
use oracle::SPECIFIER_CASES;

#[test]
fn specifiers_match_packaging() {
    let mut failures = Vec::new();
    for (spec, version, want) in SPECIFIER_CASES {
        let set = SpecifierSet::parse(spec).expect(spec);
        let v = Version::parse(version).expect(version);
        if set.contains_any(&v) != *want {
            failures.push(format!("{spec} contains {version}: want {want}"));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn prereleases_need_to_be_asked_for() {
    let v = |s: &str| Version::parse(s).expect("version");
    let set = |s: &str| SpecifierSet::parse(s).expect("set");
    assert!(!set(">=1.0").contains(&v("2.0a1")));
    assert!(set(">=1.0a1").contains(&v("2.0a1")));
    assert!(set("==2.0rc1").contains(&v("2.0rc1")));
    assert!(!set("!=2.0rc1").contains(&v("2.1rc1")));
    assert!(!set("==2.*").contains(&v("2.1rc1")));
    assert!(set(">=1.0").contains(&v("2.0")));
}

#[test]
fn invalid_specifiers() {
    for bad in ["1.0", "=>1.0", "==", "~=1", "<1.0.*", ">=1.0+local", "==1.0+x.*", ">=1.0,", "~=1.0+local", "== 1.0 2"]
    {
        assert!(SpecifierSet::parse(bad).is_err(), "{bad:?} should be rejected");
    }
    assert!(SpecifierSet::parse("").expect("empty").is_empty());
    assert!(SpecifierSet::parse("===foobar").is_ok());
}

#[test]
fn filter_prefers_final_releases() {
    let vs: Vec<Version> = ["1.0", "2.0b1", "1.5"].iter().map(|s| Version::parse(s).expect("v")).collect();
    let any = SpecifierSet::parse(">=1.0").expect("set");
    let got: Vec<String> = any.filter(&vs, |v| v).iter().map(|v| v.to_string()).collect();
    assert_eq!(got, ["1.0", "1.5"]);
    let pre = SpecifierSet::parse(">=2.0b1").expect("set");
    let got: Vec<String> = pre.filter(&vs, |v| v).iter().map(|v| v.to_string()).collect();
    assert_eq!(got, ["2.0b1"]);
    let only_pre = SpecifierSet::parse(">1.9").expect("set");
    let got: Vec<String> = only_pre.filter(&vs, |v| v).iter().map(|v| v.to_string()).collect();
    assert_eq!(got, ["2.0b1"], "prereleases are used when nothing else matches");
}

#[test]
fn compatible_tags_match_packaging() {
    let want: Vec<&str> = include_str!("fixtures/cp313-manylinux_2_36-x86_64-tags.txt").lines().collect();
    let got: Vec<String> =
        Target::cpython313_manylinux_x86_64().compatible_tags().iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "tag #{i}");
    }
}
