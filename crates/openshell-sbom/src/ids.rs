//! Unique identifiers made from names: SPDX element ids (`SPDXRef-...`), which are
//! also the CycloneDX bom-refs, and `LicenseRef-`s. Both allow only letters, digits,
//! `.` and `-`; two names that clean up alike get `-2`, `-3`, ... in the order met.

use std::collections::BTreeSet;

#[derive(Default)]
pub(crate) struct UniqueIds(BTreeSet<String>);

impl UniqueIds {
    /// `prefix` + `name` with every other character replaced by `-`, made unique.
    pub(crate) fn make(&mut self, prefix: &str, name: &str) -> String {
        let clean: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect();
        let clean = match clean.trim_matches('-') {
            "" => "unnamed",
            c => c,
        };
        let base = format!("{prefix}{clean}");
        let mut id = base.clone();
        let mut n = 2;
        while !self.0.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_clean_and_unique() {
        let mut ids = super::UniqueIds::default();
        assert_eq!(ids.make("SPDXRef-npm-", "@scope/tool"), "SPDXRef-npm-scope-tool");
        assert_eq!(ids.make("SPDXRef-npm-", "@scope+tool"), "SPDXRef-npm-scope-tool-2");
        assert_eq!(ids.make("LicenseRef-", "GPL-2+"), "LicenseRef-GPL-2");
        assert_eq!(ids.make("LicenseRef-", "???"), "LicenseRef-unnamed");
    }
}
