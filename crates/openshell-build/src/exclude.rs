//! Paths an image leaves out (`exclude:` in a definition, with `keep:` exceptions):
//! documentation, manual pages, locales, headers and other files no agent uses.
//!
//! Patterns are absolute globs (`globset` syntax: `*` within one component, `**`
//! across components, `{a,b}` alternatives) matched against image paths. A file,
//! link or other non-directory entry is removed when it matches an `exclude` pattern
//! and no `keep` pattern; a directory that matches an `exclude` pattern is removed
//! once nothing under it is left. So `/usr/share/doc/**` with the keep pattern
//! `/usr/share/doc/*/copyright` leaves each package's directory holding only its
//! copyright file. Removal is decided on the assembled tree alone, so a lockfile gives
//! the same image everywhere.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use openshell_oci::{EntryKind, Tree};

/// Why exclusion patterns were refused or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ExcludeError {
    #[error("{list}: `{pattern}` must be an absolute path pattern (starting with `/`)")]
    NotAbsolute { list: &'static str, pattern: String },
    #[error("{list}: `{pattern}` is not a valid glob: {source}")]
    Glob {
        list: &'static str,
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("exclude removes `{target}`, but `{link}` (kept) is a hard link to it; keep `{target}` too")]
    HardLinkTarget { link: String, target: String },
}

/// Compiled `exclude` and `keep` patterns.
#[derive(Debug)]
pub struct Exclusions {
    exclude: GlobSet,
    keep: GlobSet,
}

impl Exclusions {
    /// Compiles both lists; each pattern must be absolute and a valid glob.
    pub fn new(exclude: &[String], keep: &[String]) -> Result<Exclusions, ExcludeError> {
        Ok(Exclusions { exclude: compile("exclude", exclude)?, keep: compile("keep", keep)? })
    }

    fn drops(&self, path: &str) -> bool {
        self.exclude.is_match(path) && !self.keep.is_match(path)
    }

    /// Removes the excluded entries from `tree`; returns how many went.
    pub fn apply(&self, tree: &mut Tree) -> Result<usize, ExcludeError> {
        if self.exclude.is_empty() {
            return Ok(0);
        }
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for (path, entry, _) in tree.iter() {
            let matched = matches!(entry.kind, EntryKind::Dir { .. }) && self.exclude.is_match(path);
            if matched {
                dirs.push(path.to_owned());
            } else if !matches!(entry.kind, EntryKind::Dir { .. }) && self.drops(path) {
                files.push(path.to_owned());
            }
        }
        self.check_hard_links(tree, &files)?;
        let mut removed = 0;
        for f in &files {
            removed += tree.remove(f);
        }
        // Deepest first, so a parent sees its emptied children gone.
        dirs.sort_by(|a, b| b.cmp(a));
        for d in &dirs {
            if !tree.has_children(d) {
                removed += tree.remove(d);
            }
        }
        Ok(removed)
    }

    /// A kept hard link must not lose the file it links to.
    fn check_hard_links(&self, tree: &Tree, doomed: &[String]) -> Result<(), ExcludeError> {
        for (path, entry, _) in tree.iter() {
            if let EntryKind::Hardlink { to: target } = &entry.kind
                && !self.drops(path)
                && doomed.binary_search(target).is_ok()
            {
                return Err(ExcludeError::HardLinkTarget { link: path.to_owned(), target: target.clone() });
            }
        }
        Ok(())
    }
}

fn compile(list: &'static str, patterns: &[String]) -> Result<GlobSet, ExcludeError> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        // Tree paths are relative to the root: `/usr/share/doc` is `usr/share/doc`.
        let Some(relative) = pattern.strip_prefix('/') else {
            return Err(ExcludeError::NotAbsolute { list, pattern: pattern.clone() });
        };
        let glob = GlobBuilder::new(relative).literal_separator(true).build().map_err(|source| ExcludeError::Glob {
            list,
            pattern: pattern.clone(),
            source,
        })?;
        set.add(glob);
    }
    set.build().map_err(|source| ExcludeError::Glob { list, pattern: patterns.join(", "), source })
}

/// Checks both lists as [`Exclusions::new`] would (for definitions and lockfiles).
pub fn validate(exclude: &[String], keep: &[String]) -> Result<(), ExcludeError> {
    Exclusions::new(exclude, keep).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openshell_oci::{ContentRef, Entry, OnConflict, Origin};

    fn file(tree: &mut Tree, path: &str) {
        let o = Origin::new("test");
        let content = ContentRef::bytes(path.as_bytes().to_vec());
        tree.insert(path, Entry { kind: EntryKind::File { mode: 0o644, content }, uid: 0, gid: 0, origin: o })
            .expect("insert");
    }

    fn paths(tree: &Tree) -> Vec<String> {
        tree.iter().map(|(p, _, _)| p.to_owned()).collect()
    }

    #[test]
    fn excluded_files_go_and_kept_ones_stay_with_their_directories() {
        let mut tree = Tree::new(OnConflict::Error);
        for p in ["usr/share/doc/bash/copyright", "usr/share/doc/bash/README", "usr/share/doc/git/NEWS", "usr/bin/bash"]
        {
            file(&mut tree, p);
        }
        let ex = Exclusions::new(&["/usr/share/doc/**".into()], &["/usr/share/doc/*/copyright".into()]).expect("ok");
        assert_eq!(ex.apply(&mut tree).expect("apply"), 3);
        assert_eq!(
            paths(&tree),
            [
                "usr",
                "usr/bin",
                "usr/bin/bash",
                "usr/share",
                "usr/share/doc",
                "usr/share/doc/bash",
                "usr/share/doc/bash/copyright"
            ]
        );
    }

    #[test]
    fn one_star_stays_within_a_component() {
        let mut tree = Tree::new(OnConflict::Error);
        file(&mut tree, "opt/a/b/c");
        file(&mut tree, "opt/a/d");
        Exclusions::new(&["/opt/*/d".into(), "/opt/*/c".into()], &[]).expect("ok").apply(&mut tree).expect("apply");
        assert_eq!(paths(&tree), ["opt", "opt/a", "opt/a/b", "opt/a/b/c"]);
    }

    #[test]
    fn bad_patterns_are_named() {
        let e = Exclusions::new(&["usr/share/doc".into()], &[]).expect_err("relative");
        assert_eq!(e.to_string(), "exclude: `usr/share/doc` must be an absolute path pattern (starting with `/`)");
        let e = Exclusions::new(&[], &["/usr/{a".into()]).expect_err("glob");
        assert!(e.to_string().starts_with("keep: `/usr/{a` is not a valid glob"), "{e}");
    }

    #[test]
    fn a_kept_hard_link_keeps_its_target() {
        let mut tree = Tree::new(OnConflict::Error);
        file(&mut tree, "opt/pkg/bin/tool");
        let o = Origin::new("test");
        tree.insert(
            "usr/bin/tool",
            Entry { kind: EntryKind::Hardlink { to: "opt/pkg/bin/tool".into() }, uid: 0, gid: 0, origin: o },
        )
        .expect("link");
        let e = Exclusions::new(&["/opt/**".into()], &[]).expect("ok").apply(&mut tree).expect_err("refused");
        assert!(matches!(e, ExcludeError::HardLinkTarget { .. }), "{e}");
        assert!(tree.get("opt/pkg/bin/tool").is_some(), "nothing removed");
    }
}
