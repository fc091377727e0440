//! What a package archive may hold besides files and directories: links that stay
//! inside the package. npm tarballs and wheels are unpacked under a directory of
//! their own (`node_modules/NAME`, site-packages); a symbolic link there that points
//! outside it (an absolute target, a `..` above the package root, or a path that
//! leaves only through another link), a hard link to a path outside it, or a member
//! written through a link would let one package read or replace another's files or
//! the system's. [`PackageLinks`] collects a package's members and checks every link
//! the way the kernel would resolve it: components one by one, each symbolic link
//! met on the way replaced by its target, `..` taken from where the walk is (the
//! physical parent), at most [`MAX_LINK_HOPS`] links deep.

use std::collections::BTreeMap;
use std::fmt;

/// How many symbolic links one resolution may follow (Linux's `MAXSYMLINKS`).
pub const MAX_LINK_HOPS: u32 = 40;

/// A link's kind, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Symbolic,
    Hard,
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkKind::Symbolic => "symbolic link",
            LinkKind::Hard => "hard link",
        })
    }
}

/// How a link leaves its package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escape {
    /// Its target is an absolute path.
    Absolute,
    /// A `..` climbs above the package root.
    AboveRoot,
    /// Its target runs into another symbolic link, `link`, that leaves.
    Through { link: String },
}

impl fmt::Display for Escape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Escape::Absolute => f.write_str("its target is an absolute path"),
            Escape::AboveRoot => f.write_str("`..` climbs above the package root"),
            Escape::Through { link } => write!(f, "it resolves through symbolic link `{link}`, which leaves"),
        }
    }
}

/// A link a package may not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("{kind} `{entry}` → `{target}` leaves the package: {escape}")]
    Escapes { entry: String, kind: LinkKind, target: String, escape: Escape },
    #[error("symbolic link `{entry}` → `{target}`: more than {MAX_LINK_HOPS} links deep (a loop)")]
    Loop { entry: String, target: String },
    #[error("`{entry}` lies under symbolic link `{link}`: a package may not write through a link")]
    ThroughLink { entry: String, link: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    Plain,
    Symlink(String),
    Hardlink(String),
}

/// Why a walk stopped; the caller turns it into a [`LinkError`].
enum Stop {
    Escape(Escape),
    Loop,
}

/// One package's members, by path relative to the package root (`/`-separated,
/// no leading `/`, no `.` or `..` components: callers refuse or skip other paths).
#[derive(Debug, Clone, Default)]
pub struct PackageLinks {
    members: BTreeMap<String, Member>,
}

impl PackageLinks {
    pub fn new() -> PackageLinks {
        PackageLinks::default()
    }

    /// A file or directory.
    pub fn plain(&mut self, path: &str) {
        self.members.insert(path.to_owned(), Member::Plain);
    }

    /// A symbolic link at `path` to `target` (as stored: relative to the link's
    /// directory, or absolute).
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.members.insert(path.to_owned(), Member::Symlink(target.to_owned()));
    }

    /// A hard link at `path` to `target`, a path relative to the package root.
    pub fn hardlink(&mut self, path: &str, target: &str) {
        self.members.insert(path.to_owned(), Member::Hardlink(target.to_owned()));
    }

    /// Every link stays inside the package and no member lies under a symbolic
    /// link; the first offender in path order is reported.
    pub fn check(&self) -> Result<(), LinkError> {
        for (path, member) in &self.members {
            self.not_through_link(path)?;
            let (kind, target, base, follow_last) = match member {
                Member::Plain => continue,
                Member::Symlink(t) => (LinkKind::Symbolic, t, parent(path), true),
                Member::Hardlink(t) => (LinkKind::Hard, t, Vec::new(), false),
            };
            let error = |stop| match stop {
                Stop::Escape(escape) => {
                    LinkError::Escapes { entry: path.clone(), kind, target: target.clone(), escape }
                }
                Stop::Loop => LinkError::Loop { entry: path.clone(), target: target.clone() },
            };
            self.walk(base, target, follow_last, 0).map_err(error)?;
        }
        Ok(())
    }

    fn not_through_link(&self, path: &str) -> Result<(), LinkError> {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let ancestor = &path[..at + i];
            if matches!(self.members.get(ancestor), Some(Member::Symlink(_))) {
                return Err(LinkError::ThroughLink { entry: path.to_owned(), link: ancestor.to_owned() });
            }
            at += i + 1;
        }
        Ok(())
    }

    /// Resolves `target` from directory `at`; the resolved path, or why not.
    fn walk(&self, mut at: Vec<String>, target: &str, follow_last: bool, hops: u32) -> Result<Vec<String>, Stop> {
        if target.starts_with('/') {
            return Err(Stop::Escape(Escape::Absolute));
        }
        let parts: Vec<&str> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        for (i, part) in parts.iter().enumerate() {
            if *part == ".." {
                at.pop().ok_or(Stop::Escape(Escape::AboveRoot))?;
                continue;
            }
            at.push((*part).to_owned());
            if i + 1 == parts.len() && !follow_last {
                break;
            }
            let here = at.join("/");
            if let Some(Member::Symlink(next)) = self.members.get(&here) {
                if hops >= MAX_LINK_HOPS {
                    return Err(Stop::Loop);
                }
                at.pop();
                at = self.walk(at, next, true, hops + 1).map_err(|stop| match stop {
                    Stop::Escape(Escape::Absolute | Escape::AboveRoot) => Stop::Escape(Escape::Through { link: here }),
                    other => other,
                })?;
            }
        }
        Ok(at)
    }
}

fn parent(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
    parts.pop();
    parts
}
