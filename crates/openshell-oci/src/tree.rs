//! The in-memory filesystem tree an image is assembled from.
//!
//! Entries are keyed by a normalized relative path (no leading `/` or `./`, no `.` or
//! `..` components, no empty components) and kept in a `BTreeMap`, so iteration is in
//! path-byte order whatever the insertion order. Parent directories are created
//! explicitly (mode 0755, root-owned) when missing; such *implicit* directories carry no
//! layer of their own and appear only where a layer needs them as parents.
//!
//! File content is referenced, not held: a [`ContentRef`] is either a small inline
//! buffer or a byte range of a blob in the content-addressed store (a whole blob, or a
//! member of an uncompressed tar stored there), so a 1 GB tree costs only its metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use openshell_store::{Digest, Store};

/// Longest path accepted (Linux `PATH_MAX` minus the terminating NUL).
pub const MAX_PATH_LEN: usize = 4095;
/// Longest path component accepted (Linux `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// Mode of parent directories created implicitly.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Which part of the image an entry belongs to ("debian", "node", "claude",
/// "generated", ...). Layers are partitioned by origin. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin(Arc<str>);

impl Origin {
    /// An origin label.
    pub fn new(name: &str) -> Origin {
        Origin(Arc::from(name))
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({})", self.0)
    }
}

impl From<&str> for Origin {
    fn from(s: &str) -> Origin {
        Origin::new(s)
    }
}

/// Where a regular file's bytes come from.
#[derive(Clone, PartialEq, Eq)]
pub enum ContentRef {
    /// Bytes held in memory (generated files, small configs).
    Bytes(Arc<[u8]>),
    /// `len` bytes at `offset` of a blob in the store: a whole blob (`offset` 0,
    /// `len` its size) or a member of an uncompressed tar kept in the store.
    Blob {
        /// The blob.
        digest: Digest,
        /// Start of the content within the blob.
        offset: u64,
        /// Length of the content.
        len: u64,
    },
}

impl ContentRef {
    /// Inline content.
    pub fn bytes(data: impl Into<Arc<[u8]>>) -> ContentRef {
        ContentRef::Bytes(data.into())
    }

    /// A whole stored blob of `len` bytes.
    pub fn blob(digest: Digest, len: u64) -> ContentRef {
        ContentRef::Blob { digest, offset: 0, len }
    }

    /// Content length in bytes (the file's size).
    pub fn len(&self) -> u64 {
        match self {
            ContentRef::Bytes(b) => b.len() as u64,
            ContentRef::Blob { len, .. } => *len,
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for ContentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentRef::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            ContentRef::Blob { digest, offset, len } => write!(f, "Blob({digest} @{offset}+{len})"),
        }
    }
}

/// What an entry is. Modes are permission bits including setuid, setgid and sticky
/// (`0o7777` at most); symlinks are always `0o777` and hardlinks share their target's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file; its size is `content.len()`.
    File {
        /// Permission bits.
        mode: u32,
        /// Where the bytes come from.
        content: ContentRef,
    },
    /// A symbolic link; the target is kept verbatim (relative or absolute).
    Symlink {
        /// The link target.
        target: String,
    },
    /// A hard link to another path of the tree (normalized), which must resolve to a
    /// regular file. In a layer, the first path of the group in sorted order carries
    /// the content and the others are link entries to it.
    Hardlink {
        /// The linked path.
        to: String,
    },
}

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Numeric owner (default 0).
    pub uid: u32,
    /// Numeric group (default 0).
    pub gid: u32,
    /// Which layer it belongs to.
    pub origin: Origin,
}

impl Entry {
    /// A directory owned by root.
    pub fn dir(mode: u32, origin: &Origin) -> Entry {
        Entry { kind: EntryKind::Dir { mode }, uid: 0, gid: 0, origin: origin.clone() }
    }

    /// A regular file owned by root.
    pub fn file(mode: u32, content: ContentRef, origin: &Origin) -> Entry {
        Entry { kind: EntryKind::File { mode, content }, uid: 0, gid: 0, origin: origin.clone() }
    }

    /// A symlink owned by root.
    pub fn symlink(target: impl Into<String>, origin: &Origin) -> Entry {
        Entry { kind: EntryKind::Symlink { target: target.into() }, uid: 0, gid: 0, origin: origin.clone() }
    }

    /// A hard link to `to` (normalized on insertion).
    pub fn hardlink(to: impl Into<String>, origin: &Origin) -> Entry {
        Entry { kind: EntryKind::Hardlink { to: to.into() }, uid: 0, gid: 0, origin: origin.clone() }
    }

    /// The same entry with another owner.
    pub fn with_owner(mut self, uid: u32, gid: u32) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Dir { .. })
    }

    /// A short name of the entry's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            EntryKind::Dir { .. } => "directory",
            EntryKind::File { .. } => "file",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::Hardlink { .. } => "hardlink",
        }
    }

    /// Same content and metadata, ignoring the origin.
    fn same_as(&self, other: &Entry) -> bool {
        self.kind == other.kind && self.uid == other.uid && self.gid == other.gid
    }
}

/// What [`Tree::insert`] does when a path is already present with different content
/// or metadata. Identical entries (and an explicit directory over an implicit one)
/// are never conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Refuse the insertion with [`TreeError::Conflict`].
    #[default]
    Error,
    /// The later entry replaces the earlier one; the conflict is recorded in
    /// [`Tree::conflicts`].
    Replace,
}

/// A path inserted twice with different content, resolved by replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The path.
    pub path: String,
    /// Origin of the replaced entry.
    pub existing: Origin,
    /// Type of the replaced entry.
    pub existing_type: &'static str,
    /// Origin of the entry that replaced it.
    pub replacement: Origin,
    /// Type of the entry that replaced it.
    pub replacement_type: &'static str,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} from `{}` replaced by {} from `{}`",
            self.path, self.existing_type, self.existing, self.replacement_type, self.replacement
        )
    }
}

/// Errors building a tree. Each names the path and, where two entries meet, both origins.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The path cannot be stored.
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Mode bits outside `0o7777`.
    #[error("{path}: mode {mode:#o} has bits outside 0o7777 (only permission, setuid, setgid and sticky bits)")]
    InvalidMode {
        /// The path.
        path: String,
        /// The mode given.
        mode: u32,
    },
    /// A symlink target that is empty, too long, or holds a NUL byte or a newline.
    #[error("{path}: invalid symlink target `{target}`: {reason}")]
    InvalidSymlink {
        /// The path.
        path: String,
        /// The target given.
        target: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The path is already present with different content (under [`OnConflict::Error`]).
    #[error(
        "{path}: {existing_type} from `{existing}` conflicts with {new_type} from `{new}` (same path, different content or metadata)"
    )]
    Conflict {
        /// The path.
        path: String,
        /// Origin of the entry already present.
        existing: Origin,
        /// Its type.
        existing_type: &'static str,
        /// Origin of the entry being inserted.
        new: Origin,
        /// Its type.
        new_type: &'static str,
    },
    /// A parent of the path exists and is not a directory.
    #[error("{path} (from `{origin}`): parent `{parent}` is a {parent_type} from `{parent_origin}`, not a directory")]
    ParentNotDir {
        /// The path being inserted.
        path: String,
        /// Its origin.
        origin: Origin,
        /// The offending parent.
        parent: String,
        /// The parent's type.
        parent_type: &'static str,
        /// The parent's origin.
        parent_origin: Origin,
    },
    /// Replacing a directory that has children with a non-directory.
    #[error("{path}: cannot replace directory from `{existing}` that has entries with a {new_type} from `{new}`")]
    DirNotEmpty {
        /// The path.
        path: String,
        /// Origin of the directory.
        existing: Origin,
        /// Origin of the replacement.
        new: Origin,
        /// Type of the replacement.
        new_type: &'static str,
    },
    /// A tar member of a type an image layer must not carry.
    #[error("{archive}: member `{path}` is a {kind}, which an image must not contain")]
    UnsupportedMember {
        /// The archive (store digest).
        archive: String,
        /// The member's path.
        path: String,
        /// Its type ("character device", "fifo", ...).
        kind: &'static str,
    },
    /// A malformed tar archive or member.
    #[error("{archive}: {message}")]
    Archive {
        /// The archive (store digest).
        archive: String,
        /// What is wrong.
        message: String,
    },
    /// Reading an archive from the store failed.
    #[error("{archive}: {source}")]
    Store {
        /// The archive (store digest).
        archive: String,
        /// The store's error.
        #[source]
        source: openshell_store::StoreError,
    },
}

/// Why paths and link targets may not hold a newline: a long or non-ASCII one goes
/// into a pax record, and the `tar` crate (which unpacks layers at run time) splits
/// pax records at newlines instead of by their length, so the records after it —
/// uid, gid, even size — are lost (a file owned by uid 2^21 came back root's; found
/// by tests/fuzz.rs).
const NEWLINE: &str = "contains a newline (tar readers disagree about pax records that hold one)";

/// Normalizes a path: strips leading `/` and `./`, drops empty and `.` components.
/// Rejects `..`, NUL bytes, newlines, the root itself, and over-long paths or names.
pub fn normalize_path(path: &str) -> Result<String, TreeError> {
    let bad = |reason| TreeError::InvalidPath { path: path.to_owned(), reason };
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if path.contains('\n') {
        return Err(bad(NEWLINE));
    }
    let mut out = String::with_capacity(path.len());
    for comp in path.split('/') {
        match comp {
            "" | "." => continue,
            ".." => return Err(bad("contains a `..` component")),
            c if c.len() > MAX_NAME_LEN => return Err(bad("a component is longer than 255 bytes")),
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        return Err(bad("names the root directory, which is not an entry"));
    }
    if out.len() > MAX_PATH_LEN {
        return Err(bad("longer than 4095 bytes"));
    }
    Ok(out)
}

/// The parent of a normalized path, `None` at top level.
pub(crate) fn parent_of(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

#[derive(Debug, Clone)]
struct Node {
    entry: Entry,
    implicit: bool,
}

/// A filesystem tree: normalized path → entry, iterated in path-byte order.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    on_conflict: OnConflict,
    conflicts: Vec<Conflict>,
}

/// How [`Tree::import_tar`] maps an archive's members into the tree.
#[derive(Debug, Clone, Default)]
pub struct TarImport {
    /// Leading path components to drop (npm tarballs: 1, for `package/`). Members with
    /// nothing left are skipped.
    pub strip_components: usize,
    /// Directory to place members under (e.g. `usr/lib/node_modules/foo`); empty for
    /// the root.
    pub prefix: String,
    /// Owner for every member instead of the archive's numeric uid/gid.
    pub owner: Option<(u32, u32)>,
}

impl Tree {
    /// An empty tree with the given conflict policy.
    pub fn new(on_conflict: OnConflict) -> Tree {
        Tree { nodes: BTreeMap::new(), on_conflict, conflicts: Vec::new() }
    }

    /// Number of entries, implicit parents included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The entry at `path` (normalized or not).
    pub fn get(&self, path: &str) -> Option<&Entry> {
        match normalize_path(path) {
            Ok(p) => self.nodes.get(&p).map(|n| &n.entry),
            Err(_) => None,
        }
    }

    /// The stored key and entry at an already normalized path.
    pub(crate) fn entry_at(&self, path: &str) -> Option<(&str, &Entry)> {
        self.nodes.get_key_value(path).map(|(k, n)| (k.as_str(), &n.entry))
    }

    /// Whether `path` is a directory created only as a parent of other entries.
    pub fn is_implicit(&self, path: &str) -> bool {
        normalize_path(path).ok().and_then(|p| self.nodes.get(&p)).is_some_and(|n| n.implicit)
    }

    /// Every entry in path-byte order, with whether it is an implicit parent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry, bool)> {
        self.nodes.iter().map(|(p, n)| (p.as_str(), &n.entry, n.implicit))
    }

    /// Conflicts resolved by replacement, in insertion order.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// Whether anything lies under the normalized `path`.
    pub fn has_children(&self, path: &str) -> bool {
        let mut prefix = String::with_capacity(path.len() + 1);
        prefix.push_str(path);
        prefix.push('/');
        self.nodes.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Inserts an entry at `path` (normalized here), creating missing parents.
    pub fn insert(&mut self, path: &str, mut entry: Entry) -> Result<(), TreeError> {
        let path = normalize_path(path)?;
        match &mut entry.kind {
            EntryKind::Dir { mode } | EntryKind::File { mode, .. } => {
                if *mode & !0o7777 != 0 {
                    return Err(TreeError::InvalidMode { path, mode: *mode });
                }
            }
            EntryKind::Symlink { target } => {
                let reason = if target.is_empty() {
                    Some("empty")
                } else if target.contains('\0') {
                    Some("contains a NUL byte")
                } else if target.contains('\n') {
                    Some(NEWLINE)
                } else if target.len() > MAX_PATH_LEN {
                    Some("longer than 4095 bytes")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(TreeError::InvalidSymlink { path, target: target.clone(), reason });
                }
            }
            EntryKind::Hardlink { to } => {
                *to = normalize_path(to)?;
                if *to == path {
                    return Err(TreeError::InvalidPath { path, reason: "is a hard link to itself" });
                }
            }
        }
        self.ensure_parents(&path, &entry.origin)?;
        let Some(existing) = self.nodes.get(&path) else {
            self.nodes.insert(path, Node { entry, implicit: false });
            return Ok(());
        };
        if existing.implicit && entry.is_dir() {
            self.nodes.insert(path, Node { entry, implicit: false });
            return Ok(());
        }
        if !existing.implicit && existing.entry.same_as(&entry) {
            return Ok(());
        }
        let (existing_origin, existing_type, existing_is_dir) =
            (existing.entry.origin.clone(), existing.entry.type_name(), existing.entry.is_dir());
        if existing_is_dir && !entry.is_dir() && self.has_children(&path) {
            return Err(TreeError::DirNotEmpty {
                path,
                existing: existing_origin,
                new_type: entry.type_name(),
                new: entry.origin,
            });
        }
        match self.on_conflict {
            OnConflict::Error => Err(TreeError::Conflict {
                path,
                existing: existing_origin,
                existing_type,
                new_type: entry.type_name(),
                new: entry.origin,
            }),
            OnConflict::Replace => {
                self.conflicts.push(Conflict {
                    path: path.clone(),
                    existing: existing_origin,
                    existing_type,
                    replacement: entry.origin.clone(),
                    replacement_type: entry.type_name(),
                });
                self.nodes.insert(path, Node { entry, implicit: false });
                Ok(())
            }
        }
    }

    fn ensure_parents(&mut self, path: &str, origin: &Origin) -> Result<(), TreeError> {
        // Find the deepest existing ancestor first; most insertions find their parent
        // at once, so this allocates only for directories actually created.
        let mut missing = Vec::new();
        let mut cur = parent_of(path);
        while let Some(parent) = cur {
            match self.nodes.get(parent) {
                Some(node) if node.entry.is_dir() => break,
                Some(node) => {
                    return Err(TreeError::ParentNotDir {
                        path: path.to_owned(),
                        origin: origin.clone(),
                        parent: parent.to_owned(),
                        parent_type: node.entry.type_name(),
                        parent_origin: node.entry.origin.clone(),
                    });
                }
                None => missing.push(parent),
            }
            cur = parent_of(parent);
        }
        for parent in missing.into_iter().rev() {
            let entry = Entry::dir(IMPLICIT_DIR_MODE, origin);
            self.nodes.insert(parent.to_owned(), Node { entry, implicit: true });
        }
        Ok(())
    }

    /// Sets the entry at `path`, replacing whatever is there: a directory replaced by
    /// a directory keeps its children (only its metadata changes); anything else that
    /// is replaced goes with its subtree.
    pub fn set(&mut self, path: &str, entry: Entry) -> Result<(), TreeError> {
        let norm = normalize_path(path)?;
        let keep_children = entry.is_dir() && self.nodes.get(&norm).is_some_and(|n| n.entry.is_dir());
        if keep_children {
            if let EntryKind::Dir { mode } = entry.kind
                && mode & !0o7777 != 0
            {
                return Err(TreeError::InvalidMode { path: norm, mode });
            }
            self.nodes.insert(norm, Node { entry, implicit: false });
            return Ok(());
        }
        self.remove(&norm);
        self.insert(&norm, entry)
    }

    /// Removes `path` and everything under it; returns how many entries went.
    pub fn remove(&mut self, path: &str) -> usize {
        let Ok(path) = normalize_path(path) else { return 0 };
        let mut removed = usize::from(self.nodes.remove(&path).is_some());
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
            removed += 1;
        }
        removed
    }

    /// Adds every member of an *uncompressed* tar stored in `store` under `digest`
    /// (verified first: see [`Store::open_ranges`]).
    /// Regular files reference their bytes in the blob (no copy). Directories, symlinks
    /// and hard links are kept; device nodes, fifos and sparse files are refused.
    /// Extended attributes and names (uname/gname) are dropped; modes keep their
    /// permission, setuid, setgid and sticky bits.
    pub fn import_tar(
        &mut self,
        store: &Store,
        digest: &Digest,
        origin: &Origin,
        opts: &TarImport,
    ) -> Result<usize, TreeError> {
        let archive_name = digest.to_string();
        let file =
            store.open_ranges(digest).map_err(|source| TreeError::Store { archive: archive_name.clone(), source })?;
        let archive_err = |message: String| TreeError::Archive { archive: archive_name.clone(), message };
        let prefix = if opts.prefix.is_empty() { String::new() } else { normalize_path(&opts.prefix)? };
        let map_path = |raw: &str| -> Result<Option<String>, TreeError> {
            let norm = match normalize_path(raw) {
                Ok(p) => p,
                Err(TreeError::InvalidPath { reason: "names the root directory, which is not an entry", .. }) => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let rest = norm.splitn(opts.strip_components + 1, '/').nth(opts.strip_components);
            Ok(match rest {
                None => None,
                Some(rest) if prefix.is_empty() => Some(rest.to_owned()),
                Some(rest) => Some(format!("{prefix}/{rest}")),
            })
        };
        let mut archive = tar::Archive::new(io::BufReader::with_capacity(256 * 1024, file));
        let mut count = 0;
        let entries = archive.entries_with_seek().map_err(|e| archive_err(e.to_string()))?;
        for member in entries {
            let member = member.map_err(|e| archive_err(e.to_string()))?;
            let raw_path = member.path_bytes();
            let raw_path = std::str::from_utf8(&raw_path)
                .map_err(|_| archive_err(format!("member path {:?} is not UTF-8", String::from_utf8_lossy(&raw_path))))?
                .to_owned();
            let header = member.header();
            let kind = header.entry_type();
            let what = match kind {
                tar::EntryType::Char => Some("character device"),
                tar::EntryType::Block => Some("block device"),
                tar::EntryType::Fifo => Some("fifo"),
                tar::EntryType::GNUSparse => Some("sparse file"),
                _ => None,
            };
            if let Some(kind) = what {
                return Err(TreeError::UnsupportedMember { archive: archive_name, path: raw_path, kind });
            }
            if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
                continue;
            }
            let Some(path) = map_path(&raw_path)? else { continue };
            let mode = header.mode().map_err(|e| archive_err(format!("{raw_path}: {e}")))? & 0o7777;
            let (uid, gid) = match opts.owner {
                Some(owner) => owner,
                None => {
                    let uid = header.uid().map_err(|e| archive_err(format!("{raw_path}: {e}")))?;
                    let gid = header.gid().map_err(|e| archive_err(format!("{raw_path}: {e}")))?;
                    let fit =
                        |v: u64| u32::try_from(v).map_err(|_| archive_err(format!("{raw_path}: id {v} too large")));
                    (fit(uid)?, fit(gid)?)
                }
            };
            let link_name = || -> Result<String, TreeError> {
                let raw =
                    member.link_name_bytes().ok_or_else(|| archive_err(format!("{raw_path}: link without target")))?;
                String::from_utf8(raw.into_owned())
                    .map_err(|_| archive_err(format!("{raw_path}: link target is not UTF-8")))
            };
            let entry_kind = match kind {
                tar::EntryType::Directory => EntryKind::Dir { mode },
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let len = member.size();
                    let offset = member.raw_file_position();
                    EntryKind::File { mode, content: ContentRef::Blob { digest: digest.clone(), offset, len } }
                }
                tar::EntryType::Symlink => EntryKind::Symlink { target: link_name()? },
                tar::EntryType::Link => {
                    let target = link_name()?;
                    match map_path(&target)? {
                        Some(to) => EntryKind::Hardlink { to },
                        None => {
                            return Err(archive_err(format!(
                                "{raw_path}: hard link to `{target}`, outside the import"
                            )));
                        }
                    }
                }
                other => {
                    return Err(archive_err(format!(
                        "{raw_path}: unsupported member type {:?}",
                        other.as_byte() as char
                    )));
                }
            };
            self.insert(&path, Entry { kind: entry_kind, uid, gid, origin: origin.clone() })?;
            count += 1;
        }
        Ok(count)
    }
}
