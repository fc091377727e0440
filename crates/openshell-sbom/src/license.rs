//! Declared licences: SPDX expressions where the declaration is one, the
//! declaration's own words otherwise (SPDX writes those as `LicenseRef-`s, CycloneDX
//! as licence names), nothing where the package declares none.
//!
//! Whether a text is an SPDX expression is decided by the `spdx` crate's parser
//! against the SPDX licence list; Debian's DEP-5 short names (`GPL-2+`, `Expat`)
//! are not SPDX identifiers and are kept as written, not translated by guesswork.

/// One conjunct of a declared licence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LicenseTerm {
    /// A valid SPDX licence expression, as written.
    Spdx(String),
    /// Anything else the package declares (a DEP-5 short name, `SEE LICENSE IN ...`).
    Other(String),
}

/// A declared licence: the conjunction of its terms; no terms means unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct License {
    pub terms: Vec<LicenseTerm>,
}

impl License {
    /// Nothing declared (NOASSERTION).
    pub fn unknown() -> License {
        License::default()
    }

    /// One declaration, classified; blank text is unknown.
    pub fn declared(text: &str) -> License {
        License::all([text])
    }

    /// The conjunction of several declarations (duplicates and blanks dropped).
    pub fn all<'a>(texts: impl IntoIterator<Item = &'a str>) -> License {
        let mut terms: Vec<LicenseTerm> = Vec::new();
        for t in texts {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            let term = classify(t);
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        License { terms }
    }

    pub fn is_unknown(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether every term is an SPDX expression.
    pub fn is_spdx(&self) -> bool {
        !self.terms.is_empty() && self.terms.iter().all(|t| matches!(t, LicenseTerm::Spdx(_)))
    }

    /// The terms joined with `AND`, each written by `write` (compound terms in
    /// parentheses).
    pub fn expression(&self, write: impl Fn(&LicenseTerm) -> String) -> Option<String> {
        if self.terms.is_empty() {
            return None;
        }
        let parts: Vec<String> = self.terms.iter().map(&write).collect();
        if parts.len() == 1 {
            return parts.into_iter().next();
        }
        Some(
            parts
                .iter()
                .map(|p| if p.contains(' ') { format!("({p})") } else { p.clone() })
                .collect::<Vec<_>>()
                .join(" AND "),
        )
    }
}

/// An SPDX expression of listed identifiers only: a package's own `LicenseRef-`
/// names a text this document does not have, so it is kept as written too.
fn classify(text: &str) -> LicenseTerm {
    let refs = text.contains("LicenseRef-") || text.contains("DocumentRef-");
    match spdx::Expression::parse(text) {
        Ok(_) if !refs => LicenseTerm::Spdx(text.to_owned()),
        _ => LicenseTerm::Other(text.to_owned()),
    }
}

/// The licences of a `debian/copyright` file, if it is machine-readable (DEP-5: a
/// `Format:` naming copyright-format 1.0 in its first paragraph): the synopsis (first
/// line) of every `License:` of the header and `Files:` paragraphs, in file order.
/// `None` for a free-form file, which declares nothing we can read.
pub fn dep5(text: &str) -> Option<License> {
    let options = openshell_debian::control::ParseOptions { allow_comments: true };
    let paragraphs = openshell_debian::control::parse_with("debian/copyright", text, options).ok()?;
    let header = paragraphs.first()?;
    if !header.get("Format").is_some_and(|f| f.contains("copyright-format/1.0")) {
        return None;
    }
    let synopses = paragraphs
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.get("Files").is_some())
        .filter_map(|(_, p)| p.get("License"))
        .map(|l| l.lines().next().unwrap_or(""));
    let license = License::all(synopses);
    Some(license)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spdx_and_other_terms() {
        assert_eq!(License::declared("MIT OR Apache-2.0").terms, vec![LicenseTerm::Spdx("MIT OR Apache-2.0".into())]);
        assert_eq!(License::declared("GPL-2+").terms, vec![LicenseTerm::Other("GPL-2+".into())]);
        assert_eq!(
            License::declared("SEE LICENSE IN README.md").terms[0],
            LicenseTerm::Other("SEE LICENSE IN README.md".into())
        );
        assert!(License::declared("  ").is_unknown());
    }

    #[test]
    fn dep5_reads_files_paragraphs_only_when_machine_readable() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\nFiles: *\nCopyright: 2020 A\nLicense: GPL-2+\n\nFiles: lib/*\nCopyright: 2021 B\nLicense: MIT\n\nLicense: GPL-2+\n This program is free software...\n";
        let l = dep5(text).expect("machine-readable");
        assert_eq!(l.terms, vec![LicenseTerm::Other("GPL-2+".into()), LicenseTerm::Spdx("MIT".into())]);
        assert_eq!(dep5("This is bash, by Chet Ramey.\n\nCopyright (C) 1987 FSF\n"), None);
        let expr = l.expression(|t| match t {
            LicenseTerm::Spdx(s) | LicenseTerm::Other(s) => s.clone(),
        });
        assert_eq!(expr.as_deref(), Some("GPL-2+ AND MIT"));
    }
}
