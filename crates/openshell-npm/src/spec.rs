//! Dependency specs (the right-hand side of `"dependencies": { "name": "<spec>" }`) and
//! choosing a version for one, as npm-package-arg and npm-pick-manifest do.

use std::cmp::Ordering;
use std::fmt;

use crate::packument::{Manifest, Packument};
use crate::semver::{self, Range, RangeOptions, Version};

/// What kind of registry spec this is.
#[derive(Debug, Clone)]
pub enum SpecKind {
    /// An exact version (`1.2.3`, `=v1.2.3`), normalized.
    Version(String),
    /// A range (`^1.2.3`, `1.x || >=2`, `*`, ``).
    Range(Range),
    /// A dist-tag (`latest`, `next`).
    Tag(String),
}

/// A parsed registry dependency spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The package to fetch (differs from the dependency name for `npm:` aliases).
    pub package: String,
    /// The spec text after alias resolution (`^4.2.0` for `npm:string-width@^4.2.0`).
    pub fetch_spec: String,
    /// Its kind.
    pub kind: SpecKind,
}

/// A spec npm accepts but this resolver does not (git, tarball URLs, local paths), or one
/// npm rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported dependency spec {spec:?} for {name}: {reason}")]
pub struct SpecError {
    /// Dependency name.
    pub name: String,
    /// The spec text.
    pub spec: String,
    /// Why it is not usable.
    pub reason: String,
}

/// Characters `encodeURIComponent` leaves alone: a tag made of anything else is invalid.
fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c)
}

impl Spec {
    /// Parse `raw` as the spec of dependency `name` (npm-package-arg's `resolve(name, raw)`),
    /// accepting registry specs (version, range, tag) and `npm:` aliases of them.
    pub fn parse(name: &str, raw: &str) -> Result<Spec, SpecError> {
        let err =
            |reason: &str| SpecError { name: name.to_string(), spec: raw.to_string(), reason: reason.to_string() };
        let trimmed = raw.trim();
        if trimmed.len() >= 4 && trimmed[..4].eq_ignore_ascii_case("npm:") {
            let inner = &trimmed[4..];
            // `npa(inner)`: the name ends at the first `@` after position 0.
            let (pkg, sub) = match inner.get(1..).and_then(|s| s.find('@')) {
                Some(i) => (&inner[..i + 1], &inner[i + 2..]),
                None => (inner, ""),
            };
            if pkg.is_empty() {
                return Err(err("aliases must have a name"));
            }
            let sub = if sub.is_empty() { "*" } else { sub };
            if sub.trim().len() >= 4 && sub.trim()[..4].eq_ignore_ascii_case("npm:") {
                return Err(err("nested aliases are not supported"));
            }
            let mut s = Spec::parse(pkg, sub).map_err(|e| err(&e.reason))?;
            s.package = pkg.to_string();
            return Ok(s);
        }
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("file:")
            || trimmed.starts_with('.')
            || trimmed.starts_with('/')
            || trimmed.starts_with("~/")
        {
            return Err(err("local paths are not supported"));
        }
        if is_url_like(trimmed) {
            return Err(err("git and URL dependencies are not supported"));
        }
        if trimmed.contains('/') || lower.ends_with(".tgz") || lower.ends_with(".tar.gz") || lower.ends_with(".tar") {
            return Err(err("git, tarball and path dependencies are not supported"));
        }
        let kind = if let Some(v) = semver::valid_loose(trimmed) {
            SpecKind::Version(v)
        } else if let Ok(r) = Range::parse(trimmed) {
            SpecKind::Range(r)
        } else if trimmed.chars().all(is_tag_char) {
            SpecKind::Tag(trimmed.to_string())
        } else {
            return Err(err("not a version, range or valid tag name"));
        };
        Ok(Spec { package: name.to_string(), fetch_spec: trimmed.to_string(), kind })
    }

    /// Whether a package `package@version` satisfies this spec, as arborist's `depValid` decides
    /// for an already-placed registry node: `*` (or empty) matches any version, including
    /// prereleases; a tag matches any registry version of the package; versions and ranges
    /// use `semver.satisfies(version, spec, loose)`.
    pub fn satisfied_by(&self, package: &str, version: &str) -> bool {
        if package != self.package {
            return false;
        }
        match &self.kind {
            SpecKind::Tag(_) => true,
            SpecKind::Range(_) if self.fetch_spec == "*" => true,
            SpecKind::Range(r) => Version::parse_loose(version).is_ok_and(|v| r.satisfies(&v)),
            SpecKind::Version(_) => semver::satisfies_loose(version, &self.fetch_spec),
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.package, self.fetch_spec)
    }
}

/// npm-package-arg's `isURL` (`^(?:git[+])?[a-z]+:`) and its scp-like git form.
fn is_url_like(s: &str) -> bool {
    let rest = s.strip_prefix("git+").unwrap_or(s);
    let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
    if letters > 0 && rest.as_bytes().get(letters) == Some(&b':') {
        return true;
    }
    // `user@host.tld:path`
    if let Some((user, rest)) = s.split_once('@')
        && !user.is_empty()
        && let Some((host, path)) = rest.split_once(':')
        && host.contains('.')
        && !path.is_empty()
    {
        return true;
    }
    false
}

/// Why no version could be picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// The dist-tag does not exist or points at a missing version.
    #[error("{package} has no dist-tag {tag:?} (tags: {})", tags.join(", "))]
    NoSuchTag {
        /// Package.
        package: String,
        /// The requested tag.
        tag: String,
        /// The tags that exist.
        tags: Vec<String>,
    },
    /// No version satisfies the spec.
    #[error("no version of {package} matches {spec:?} (versions: {})", summarize(versions))]
    NoMatchingVersion {
        /// Package.
        package: String,
        /// The spec text.
        spec: String,
        /// The versions that exist.
        versions: Vec<String>,
    },
}

fn summarize(versions: &[String]) -> String {
    const SHOW: usize = 12;
    if versions.is_empty() {
        return "none".to_string();
    }
    if versions.len() <= SHOW {
        return versions.join(", ");
    }
    format!("{}, … {} more", versions[versions.len() - SHOW..].join(", "), versions.len() - SHOW)
}

/// npm-install-checks' `checkEngine` for `engines.node` (with `includePrerelease`): true
/// when no node version is given or the manifest does not constrain it.
pub fn engine_ok(manifest: &Manifest, node_version: Option<&Version>) -> bool {
    let (Some(node), Some(wanted)) = (node_version, manifest.engines_node.as_deref()) else {
        return true;
    };
    Range::parse_with(wanted, RangeOptions { loose: false, include_prerelease: true }).is_ok_and(|r| r.satisfies(node))
}

/// npm-pick-manifest: choose the manifest for `spec` from `packument`.
///
/// - a tag picks exactly the tagged version;
/// - an exact version picks exactly that version;
/// - a range (or `*`) picks the `latest`-tagged version if it satisfies the range and is
///   neither deprecated nor excluded by `engines.node`; otherwise the satisfying versions are
///   ordered by (not deprecated and engine ok, engine ok, not deprecated, highest version) and
///   the first wins. Prereleases only satisfy ranges that ask for them, except that `*`
///   accepts a prerelease `latest`.
pub fn pick_manifest<'a>(
    packument: &'a Packument,
    spec: &Spec,
    node_version: Option<&Version>,
) -> Result<&'a Manifest, PickError> {
    let no_match = || PickError::NoMatchingVersion {
        package: packument.name.clone(),
        spec: spec.fetch_spec.clone(),
        versions: sorted_versions(packument),
    };
    match &spec.kind {
        SpecKind::Tag(tag) => {
            let m = packument.dist_tags.get(tag).and_then(|v| packument.versions.get(v));
            m.ok_or_else(|| PickError::NoSuchTag {
                package: packument.name.clone(),
                tag: tag.clone(),
                tags: packument.dist_tags.keys().cloned().collect(),
            })
        }
        SpecKind::Version(v) => packument.versions.get(v).ok_or_else(no_match),
        SpecKind::Range(range) => {
            let is_star = spec.fetch_spec == "*" || spec.fetch_spec.is_empty();
            if let Some(latest) = packument.dist_tags.get("latest")
                && let Some(m) = packument.versions.get(latest)
                && (is_star || semver::satisfies_loose(latest, &spec.fetch_spec))
                && m.deprecated.is_none()
                && engine_ok(m, node_version)
            {
                return Ok(m);
            }
            let mut candidates: Vec<(Version, &Manifest)> = packument
                .versions
                .iter()
                .filter_map(|(k, m)| Version::parse_loose(k).ok().map(|v| (v, m)))
                .filter(|(v, _)| range.satisfies(v))
                .collect();
            candidates.sort_by(|(va, ma), (vb, mb)| {
                let key = |m: &Manifest| {
                    let nd = m.deprecated.is_none();
                    let eng = engine_ok(m, node_version);
                    (nd && eng, eng, nd)
                };
                key(mb).cmp(&key(ma)).then_with(|| vb.cmp(va))
            });
            candidates.first().map(|(_, m)| *m).ok_or_else(no_match)
        }
    }
}

/// The packument's versions in ascending semver order (unparseable ones last, by text).
pub fn sorted_versions(packument: &Packument) -> Vec<String> {
    let mut v: Vec<(Option<Version>, &String)> =
        packument.versions.keys().map(|k| (Version::parse_loose(k).ok(), k)).collect();
    v.sort_by(|(a, ka), (b, kb)| match (a, b) {
        (Some(a), Some(b)) => a.cmp(b).then_with(|| ka.cmp(kb)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => ka.cmp(kb),
    });
    v.into_iter().map(|(_, k)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str, raw: &str) -> String {
        match Spec::parse(name, raw) {
            Ok(s) => match s.kind {
                SpecKind::Version(v) => format!("{}:version:{v}", s.package),
                SpecKind::Range(r) => format!("{}:range:{}", s.package, r.normalized()),
                SpecKind::Tag(t) => format!("{}:tag:{t}", s.package),
            },
            Err(e) => format!("error:{}", e.reason),
        }
    }

    #[test]
    fn classifies_specs_like_npm_package_arg() {
        assert_eq!(kind("a", "1.2.3"), "a:version:1.2.3");
        assert_eq!(kind("a", "=v1.2.3"), "a:version:1.2.3");
        assert_eq!(kind("a", "^1.2.3"), "a:range:>=1.2.3 <2.0.0-0");
        assert_eq!(kind("a", ""), "a:range:*");
        assert_eq!(kind("a", "*"), "a:range:*");
        assert_eq!(kind("a", "latest"), "a:tag:latest");
        assert_eq!(kind("a", "next-11"), "a:tag:next-11");
        assert_eq!(kind("a", "npm:string-width@^4.2.0"), "string-width:range:>=4.2.0 <5.0.0-0");
        assert_eq!(kind("a", "npm:@scope/pkg@1.0.0"), "@scope/pkg:version:1.0.0");
        assert_eq!(kind("a", "npm:@scope/pkg"), "@scope/pkg:range:*");
        assert_eq!(kind("a", "npm:b@npm:c@1"), "error:nested aliases are not supported");
        assert!(kind("a", "github:user/repo").starts_with("error:git and URL"));
        assert!(kind("a", "git+https://example.test/r.git").starts_with("error:git and URL"));
        assert!(kind("a", "https://example.test/a.tgz").starts_with("error:git and URL"));
        assert!(kind("a", "git@example.test:user/repo").starts_with("error:git and URL"));
        assert!(kind("a", "user/repo").starts_with("error:git, tarball"));
        assert!(kind("a", "file:../a").starts_with("error:local paths"));
        assert!(kind("a", "./a").starts_with("error:local paths"));
        assert!(kind("a", "workspace:*").starts_with("error:git and URL"));
        assert_eq!(kind("a", "not valid"), "error:not a version, range or valid tag name");
    }

    #[test]
    fn satisfied_by_follows_dep_valid() {
        let s = Spec::parse("a", "*").expect("spec");
        assert!(s.satisfied_by("a", "2.0.0-beta.1"));
        let s = Spec::parse("a", "^1").expect("spec");
        assert!(s.satisfied_by("a", "1.5.0"));
        assert!(!s.satisfied_by("a", "2.0.0"));
        assert!(!s.satisfied_by("b", "1.5.0"));
        let s = Spec::parse("a", "next").expect("spec");
        assert!(s.satisfied_by("a", "0.0.1"));
        let s = Spec::parse("alias", "npm:real@1.0.0").expect("spec");
        assert!(s.satisfied_by("real", "1.0.0"));
        assert!(!s.satisfied_by("alias", "1.0.0"));
    }
}
