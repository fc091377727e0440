//! Compares the node-semver port against answers recorded from node-semver itself.
//!
//! `tests/fixtures/node-semver-oracle.json` was produced by running node-semver 7.x (the copy
//! bundled with npm 11) over every range × version below: `valid` is `semver.validRange(r,
//! true)`, `bits[i]` is `semver.satisfies(versions[i], r, { loose: true })`, `pre_bits[i]` the
//! same with `includePrerelease`, and `compare[i][j]` is `semver.compare(vi, vj, { loose: true })`.

use openshell_npm::semver::{Range, RangeOptions, Version};
use serde_json::Value;

fn oracle() -> Value {
    serde_json::from_str(include_str!("fixtures/node-semver-oracle.json")).expect("fixture parses")
}

#[test]
fn ranges_match_node_semver() {
    let o = oracle();
    let versions: Vec<Version> = o["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| Version::parse_loose(v.as_str().expect("string")).expect("oracle versions are valid"))
        .collect();
    let mut failures = Vec::new();
    let rows = o["ranges"].as_array().expect("ranges");
    for row in rows {
        let text = row[0].as_str().expect("range text");
        let valid = row[1].as_str();
        let bits = row[2].as_str().expect("bits").as_bytes();
        let pre_bits = row[3].as_str().expect("pre bits").as_bytes();
        let parsed = Range::parse(text);
        match (&parsed, valid) {
            (Ok(r), Some(norm)) => {
                if r.normalized() != norm {
                    failures.push(format!("{text:?}: normalized {:?}, node {norm:?}", r.normalized()));
                }
            }
            (Err(e), Some(_)) => failures.push(format!("{text:?}: rejected ({e}) but node accepts")),
            (Ok(_), None) => failures.push(format!("{text:?}: accepted but node rejects")),
            (Err(_), None) => {}
        }
        let inc = Range::parse_with(text, RangeOptions { loose: true, include_prerelease: true });
        for (i, v) in versions.iter().enumerate() {
            let got = parsed.as_ref().is_ok_and(|r| r.satisfies(v));
            if got != (bits[i] == b'1') {
                failures.push(format!("{text:?} vs {v}: got {got}, node {}", bits[i] == b'1'));
            }
            let got = inc.as_ref().is_ok_and(|r| r.satisfies(v));
            if got != (pre_bits[i] == b'1') {
                failures.push(format!("{text:?} vs {v} (includePrerelease): got {got}, node {}", pre_bits[i] == b'1'));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert!(rows.len() > 100);
}

#[test]
fn versions_compare_like_node_semver() {
    let o = oracle();
    let texts: Vec<&str> = o["versions"].as_array().expect("versions").iter().map(|v| v.as_str().expect("s")).collect();
    let valid: Vec<&str> =
        o["valid_versions"].as_array().expect("valid").iter().map(|v| v.as_str().expect("s")).collect();
    let cmp: Vec<&str> = o["compare"].as_array().expect("compare").iter().map(|v| v.as_str().expect("s")).collect();
    let versions: Vec<Version> = texts.iter().map(|t| Version::parse_loose(t).expect("valid")).collect();
    for (i, a) in versions.iter().enumerate() {
        assert_eq!(a.to_string(), valid[i], "normalized form of {}", texts[i]);
        for (j, b) in versions.iter().enumerate() {
            let want = match cmp[i].as_bytes()[j] {
                b'<' => std::cmp::Ordering::Less,
                b'>' => std::cmp::Ordering::Greater,
                _ => std::cmp::Ordering::Equal,
            };
            assert_eq!(a.cmp(b), want, "compare({}, {})", texts[i], texts[j]);
        }
    }
}
