//! Why `src/version.rs` is not `pep440_rs` (see the top of that file), checked: over the
//! whole packaging oracle, pep440_rs answers otherwise on exactly the cases below, and
//! ours answers as packaging (26.4) does on each of them.

mod oracle;

use std::str::FromStr;

use openshell_pypi::{SpecifierSet, Version};
use oracle::SPECIFIER_CASES;

/// Where pep440_rs 0.7.3 parts from packaging: `>V` with V a prerelease. PEP 440 says
/// `>V` must not match a post release *of V*; packaging (and pip) read that as V's own
/// post releases (`1.0a1.post1`), so `1.0.post1`, a post release of the final `1.0`,
/// is greater than `1.0a1` and matches; pep440_rs refuses every post release of V's
/// release segment.
const DISAGREEING: &[(&str, &str)] = &[(">1.0a1", "1.0.post1"), (">1.0a1", "1.0.post2")];

fn pep440_rs_answer(spec: &str, version: &str) -> bool {
    let set = pep440_rs::VersionSpecifiers::from_str(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    set.contains(&pep440_rs::Version::from_str(version).unwrap_or_else(|e| panic!("{version}: {e}")))
}

#[test]
fn pep440_rs_disagrees_with_packaging_exactly_where_ours_agrees() {
    let disagreeing: Vec<(&str, &str)> = SPECIFIER_CASES
        .iter()
        .filter(|(spec, version, want)| pep440_rs_answer(spec, version) != *want)
        .map(|(spec, version, _)| (*spec, *version))
        .collect();
    assert_eq!(
        disagreeing, DISAGREEING,
        "pep440_rs's disagreements with packaging changed: if none are left, switch src/version.rs to it"
    );
    for (spec, version) in DISAGREEING {
        let (_, _, packaging) =
            SPECIFIER_CASES.iter().find(|(s, v, _)| s == spec && v == version).expect("an oracle case");
        let ours = SpecifierSet::parse(spec).expect(spec).contains_any(&Version::parse(version).expect(version));
        assert_eq!(ours, *packaging, "{spec} contains {version}: ours answers as packaging");
        assert_ne!(pep440_rs_answer(spec, version), *packaging, "{spec} contains {version}");
    }
}
