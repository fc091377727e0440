//! The links a global install creates (npm's bin-links).
//!
//! - For each root (`lib/node_modules/<name>`), every bin becomes `bin/<command>`, a relative
//!   symlink to the file in the package, and every `man` page `share/man/man<N>/<base>`.
//! - For every other package, bins are linked into the `node_modules/.bin` directory that
//!   holds the package (`lib/node_modules/a/node_modules/.bin/<command>` → `../b/cli.js`).
//!   Man pages of nested packages are not linked.
//!
//! npm also makes each bin target executable (`chmod 0o755`) and strips a `\r` from a CRLF
//! shebang line: [`BinLink::file`] names the file, and
//! [`fix_bin_shebang`](crate::tarball::fix_bin_shebang) does the rewrite.
//!
//! When two packages want the same link, the first in (tree depth, path) order wins and the
//! other is left out, as in arborist (which links bins in that order and never re-links a
//! path it already linked in the same run). Two roots providing the same command are
//! therefore resolved in favour of the alphabetically first root; check
//! [`BinLink::package_path`] if that matters.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::packument::join_slash;
use crate::resolve::ResolvedPackage;

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BinLinkKind {
    /// An executable (`bin/…` or `node_modules/.bin/…`).
    Bin,
    /// A man page (`share/man/…`).
    Man,
}

/// One symlink, with paths relative to the install prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BinLink {
    /// Where the link goes: `bin/claude`.
    pub link: String,
    /// The link's content, relative to its directory:
    /// `../lib/node_modules/@anthropic-ai/claude-code/cli.js`.
    pub target: String,
    /// The file it points to, relative to the prefix (make bins `0o755`).
    pub file: String,
    /// Install path of the package providing it.
    pub package_path: String,
    /// Bin or man page.
    pub kind: BinLinkKind,
}

/// The links could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinLinkError {
    /// A `man` entry does not end in `.<section>` or `.<section>.gz`.
    #[error("{package}: invalid man page name {man:?} (must end with a section number, optionally .gz)")]
    BadMan {
        /// The package.
        package: String,
        /// The entry.
        man: String,
    },
}

/// `path.relative(from_dir, to)` for `/`-separated prefix-relative paths.
fn relative(from_dir: &str, to: &str) -> String {
    let a: Vec<&str> = from_dir.split('/').filter(|s| !s.is_empty()).collect();
    let b: Vec<&str> = to.split('/').filter(|s| !s.is_empty()).collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = vec![".."; a.len() - common];
    parts.extend(&b[common..]);
    parts.join("/")
}

/// The `node_modules` directory holding a package at `path` (bin-links' `getNodeModules`).
fn node_modules_of(path: &str, name: &str) -> String {
    path.strip_suffix(name).map(|p| p.trim_end_matches('/').to_string()).unwrap_or_default()
}

/// The section of a man page name (`foo.1`, `foo.1.gz` → `1`).
fn man_section(man: &str) -> Option<&str> {
    let stem = man.strip_suffix(".gz").unwrap_or(man);
    let (_, section) = stem.rsplit_once('.')?;
    (!section.is_empty() && section.bytes().all(|b| b.is_ascii_digit())).then_some(section)
}

/// The links a global install of `packages` creates, sorted by link path.
pub fn bin_links(packages: &[ResolvedPackage]) -> Result<Vec<BinLink>, BinLinkError> {
    let mut order: Vec<&ResolvedPackage> = packages.iter().collect();
    // arborist links bins in (tree depth, path) order and the first link to a path wins.
    let depth = |p: &ResolvedPackage| p.path.matches("/node_modules/").count();
    order.sort_by(|a, b| (depth(a), &a.path).cmp(&(depth(b), &b.path)));
    let mut links: BTreeMap<String, BinLink> = BTreeMap::new();
    for pkg in order {
        let top = pkg.is_root();
        let link_dir = if top { "bin".to_string() } else { format!("{}/.bin", node_modules_of(&pkg.path, &pkg.name)) };
        for (command, target) in &pkg.bin {
            let link = format!("{link_dir}/{command}");
            let file = format!("{}/{}", pkg.path, target);
            if links.contains_key(&link) {
                continue;
            }
            let target = relative(&link_dir, &file);
            links.insert(
                link.clone(),
                BinLink { link, target, file, package_path: pkg.path.clone(), kind: BinLinkKind::Bin },
            );
        }
        if !top {
            continue;
        }
        let mut mans: Vec<&String> = pkg.man.iter().collect();
        mans.sort();
        mans.dedup();
        for man in mans {
            let clean = join_slash(&man.replace(['\\', ':'], "/"));
            let Some(section) = man_section(&clean) else {
                return Err(BinLinkError::BadMan { package: pkg.path.clone(), man: man.clone() });
            };
            let base = clean.rsplit('/').next().unwrap_or(&clean);
            let dir = format!("share/man/man{section}");
            let link = format!("{dir}/{base}");
            let file = format!("{}/{}", pkg.path, clean);
            if links.contains_key(&link) {
                continue;
            }
            let target = relative(&dir, &file);
            links.insert(
                link.clone(),
                BinLink { link, target, file, package_path: pkg.path.clone(), kind: BinLinkKind::Man },
            );
        }
    }
    Ok(links.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative("bin", "lib/node_modules/a/cli.js"), "../lib/node_modules/a/cli.js");
        assert_eq!(
            relative("lib/node_modules/a/node_modules/.bin", "lib/node_modules/a/node_modules/@s/b/x.js"),
            "../@s/b/x.js"
        );
        assert_eq!(relative("share/man/man1", "lib/node_modules/a/man/a.1"), "../../../lib/node_modules/a/man/a.1");
    }

    #[test]
    fn man_sections() {
        assert_eq!(man_section("man/foo.1"), Some("1"));
        assert_eq!(man_section("man/foo.8.gz"), Some("8"));
        assert_eq!(man_section("man/foo.md"), None);
        assert_eq!(man_section("foo"), None);
    }

    #[test]
    fn node_modules_dir() {
        assert_eq!(node_modules_of("lib/node_modules/a/node_modules/@s/b", "@s/b"), "lib/node_modules/a/node_modules");
        assert_eq!(node_modules_of("lib/node_modules/a/node_modules/b", "b"), "lib/node_modules/a/node_modules");
    }
}
