//! Package URLs (purl spec) of the three ecosystems, written by the `packageurl`
//! crate (which does the spec's percent-encoding).

use packageurl::PackageUrl;

/// Why a purl could not be made (a name the purl spec cannot hold).
#[derive(Debug, thiserror::Error)]
#[error("cannot make a package URL of {ty} `{name}`: {source}")]
pub struct PurlError {
    pub ty: &'static str,
    pub name: String,
    #[source]
    pub source: packageurl::Error,
}

fn err<'a>(ty: &'static str, name: &'a str) -> impl FnOnce(packageurl::Error) -> PurlError + 'a {
    move |source| PurlError { ty, name: name.to_owned(), source }
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH`.
pub fn deb(name: &str, version: &str, arch: &str) -> Result<String, PurlError> {
    let mut p = PackageUrl::new("deb", name).map_err(err("deb", name))?;
    p.with_namespace("debian").map_err(err("deb", name))?;
    p.with_version(version).map_err(err("deb", name))?;
    p.add_qualifier("arch", arch).map_err(err("deb", name))?;
    Ok(p.to_string())
}

/// `pkg:npm/%40scope/name@1.2.3` (or `pkg:npm/name@1.2.3` unscoped).
pub fn npm(name: &str, version: &str) -> Result<String, PurlError> {
    let (scope, base) = match name.split_once('/') {
        Some((s, b)) if s.starts_with('@') => (Some(s), b),
        _ => (None, name),
    };
    let mut p = PackageUrl::new("npm", base).map_err(err("npm", name))?;
    if let Some(s) = scope {
        p.with_namespace(s).map_err(err("npm", name))?;
    }
    p.with_version(version).map_err(err("npm", name))?;
    Ok(p.to_string())
}

/// `pkg:pypi/name@1.0`, the name normalized as PEP 503 says.
pub fn pypi(name: &str, version: &str) -> Result<String, PurlError> {
    let normalized = openshell_pypi::normalize_name(name);
    let mut p = PackageUrl::new("pypi", normalized.as_str()).map_err(err("pypi", name))?;
    p.with_version(version).map_err(err("pypi", name))?;
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_follow_the_spec() {
        assert_eq!(
            deb("base-files", "13.8+deb13u8", "amd64").expect("deb"),
            "pkg:deb/debian/base-files@13.8%2Bdeb13u8?arch=amd64"
        );
        assert_eq!(deb("libc6", "1:2.41-12", "amd64").expect("deb"), "pkg:deb/debian/libc6@1:2.41-12?arch=amd64");
        assert_eq!(npm("@openai/codex", "0.171.0").expect("npm"), "pkg:npm/%40openai/codex@0.171.0");
        assert_eq!(npm("left-pad", "1.3.0").expect("npm"), "pkg:npm/left-pad@1.3.0");
        assert_eq!(pypi("Zope.Interface_x", "7.0").expect("pypi"), "pkg:pypi/zope-interface-x@7.0");
    }
}
