//! Splitting a tree into layer plans: one layer per origin, in a given order.
//!
//! Rules:
//! - An explicit entry goes to the layer of its origin; an origin not in the order is
//!   an error, as is an origin listed twice. Origins without entries give no layer.
//! - Every ancestor directory of an entry appears in that entry's layer, with the
//!   tree's metadata for it, so a directory shared by layers is identical in each.
//!   Implicit directories (created only as parents) appear only where needed.
//! - Hard links are resolved to the regular file they end at. The whole group (file
//!   and links) goes to the layer of the file's origin; in it, the first path of the
//!   group in path-byte order is written as the file and the others as links to it.

use std::collections::{BTreeMap, BTreeSet};

use crate::tree::{ContentRef, Entry, EntryKind, Origin, Tree, parent_of};

/// One entry of a layer plan, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'t> {
    /// Normalized path.
    pub path: &'t str,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// What to write.
    pub kind: ItemKind<'t>,
}

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind<'t> {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// Its bytes.
        content: &'t ContentRef,
    },
    /// A symlink with its verbatim target.
    Symlink {
        /// The target.
        target: &'t str,
    },
    /// A hard link to an earlier file entry of the same layer.
    Hardlink {
        /// Permission bits (the file's).
        mode: u32,
        /// The file's path.
        to: &'t str,
    },
}

/// The entries of one layer, sorted by path bytes, parents before children.
#[derive(Debug, Clone)]
pub struct LayerPlan<'t> {
    /// The origin the layer was made for (`None` for a whole-tree layer).
    pub origin: Option<Origin>,
    /// The entries.
    pub items: Vec<Item<'t>>,
}

/// Errors partitioning a tree.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// An entry's origin is not in the layer order.
    #[error("{path}: origin `{origin}` is not in the layer order [{order}]")]
    UnknownOrigin {
        /// The entry.
        path: String,
        /// Its origin.
        origin: Origin,
        /// The order given.
        order: String,
    },
    /// The same origin twice in the order.
    #[error("origin `{0}` appears twice in the layer order")]
    DuplicateOrigin(Origin),
    /// A hard link to a path that is not in the tree.
    #[error("{path} (from `{origin}`): hard link to `{to}`, which is not in the tree")]
    DanglingHardlink {
        /// The link.
        path: String,
        /// Its origin.
        origin: Origin,
        /// Its target.
        to: String,
    },
    /// A hard link that does not end at a regular file.
    #[error("{path} (from `{origin}`): hard link to `{to}`, a {target_type}: hard links must end at a regular file")]
    HardlinkNotFile {
        /// The link.
        path: String,
        /// Its origin.
        origin: Origin,
        /// Where it ends.
        to: String,
        /// What is there.
        target_type: &'static str,
    },
    /// Hard links that form a cycle.
    #[error("{path}: hard links form a cycle")]
    HardlinkCycle {
        /// A link of the cycle.
        path: String,
    },
}

/// A resolved hard-link group: the file at its end and the path written as the file.
struct Group<'t> {
    file: &'t Entry,
    mode: u32,
    content: &'t ContentRef,
    primary: &'t str,
}

struct Resolved<'t> {
    /// Member path → index into `groups`, for files with links and for links.
    member: BTreeMap<&'t str, usize>,
    groups: Vec<Group<'t>>,
}

/// Follows each hard link to its file and groups the paths.
fn resolve_hardlinks(tree: &Tree) -> Result<Resolved<'_>, PartitionError> {
    let mut by_file: BTreeMap<&str, usize> = BTreeMap::new();
    let mut member = BTreeMap::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (path, entry, _) in tree.iter() {
        let EntryKind::Hardlink { to } = &entry.kind else { continue };
        let mut cur: &str = to;
        let mut steps = 0;
        let (file_path, file, mode, content) = loop {
            let Some((key, target)) = tree.entry_at(cur) else {
                return Err(PartitionError::DanglingHardlink {
                    path: path.to_owned(),
                    origin: entry.origin.clone(),
                    to: cur.to_owned(),
                });
            };
            match &target.kind {
                EntryKind::File { mode, content } => break (key, target, *mode, content),
                EntryKind::Hardlink { to: next } => {
                    steps += 1;
                    if steps > tree.len() {
                        return Err(PartitionError::HardlinkCycle { path: path.to_owned() });
                    }
                    cur = next;
                }
                _ => {
                    return Err(PartitionError::HardlinkNotFile {
                        path: path.to_owned(),
                        origin: entry.origin.clone(),
                        to: cur.to_owned(),
                        target_type: target.type_name(),
                    });
                }
            }
        };
        let g = *by_file.entry(file_path).or_insert_with(|| {
            groups.push(Group { file, mode, content, primary: file_path });
            member.insert(file_path, groups.len() - 1);
            groups.len() - 1
        });
        member.insert(path, g);
        if path < groups[g].primary {
            groups[g].primary = path;
        }
    }
    Ok(Resolved { member, groups })
}

fn item<'t>(path: &'t str, entry: &'t Entry, resolved: &Resolved<'t>) -> Item<'t> {
    if let Some(&g) = resolved.member.get(path) {
        let group = &resolved.groups[g];
        let kind = if path == group.primary {
            ItemKind::File { mode: group.mode, content: group.content }
        } else {
            ItemKind::Hardlink { mode: group.mode, to: group.primary }
        };
        return Item { path, uid: group.file.uid, gid: group.file.gid, kind };
    }
    let kind = match &entry.kind {
        EntryKind::Dir { mode } => ItemKind::Dir { mode: *mode },
        EntryKind::File { mode, content } => ItemKind::File { mode: *mode, content },
        EntryKind::Symlink { target } => ItemKind::Symlink { target },
        // `resolve_hardlinks` makes every hard link a group member.
        EntryKind::Hardlink { .. } => unreachable!("hard link {path} was not resolved"),
    };
    Item { path, uid: entry.uid, gid: entry.gid, kind }
}

fn add_with_parents<'t>(set: &mut BTreeSet<&'t str>, path: &'t str) {
    if !set.insert(path) {
        return;
    }
    let mut cur = parent_of(path);
    while let Some(p) = cur {
        if !set.insert(p) {
            break;
        }
        cur = parent_of(p);
    }
}

fn plan_of<'t>(
    tree: &'t Tree,
    origin: Option<Origin>,
    paths: &BTreeSet<&'t str>,
    resolved: &Resolved<'t>,
) -> LayerPlan<'t> {
    let items = paths.iter().filter_map(|&p| tree.entry_at(p).map(|(key, entry)| item(key, entry, resolved))).collect();
    LayerPlan { origin, items }
}

/// The whole tree as one layer (origins ignored).
pub fn whole(tree: &Tree) -> Result<LayerPlan<'_>, PartitionError> {
    let resolved = resolve_hardlinks(tree)?;
    let items = tree.iter().map(|(path, entry, _)| item(path, entry, &resolved)).collect();
    Ok(LayerPlan { origin: None, items })
}

/// Splits the tree into one layer per origin of `order` that has entries.
pub fn partition<'t>(tree: &'t Tree, order: &[Origin]) -> Result<Vec<LayerPlan<'t>>, PartitionError> {
    let mut index: BTreeMap<&Origin, usize> = BTreeMap::new();
    for (i, o) in order.iter().enumerate() {
        if index.insert(o, i).is_some() {
            return Err(PartitionError::DuplicateOrigin(o.clone()));
        }
    }
    let layer_of = |path: &str, origin: &Origin| {
        index.get(origin).copied().ok_or_else(|| PartitionError::UnknownOrigin {
            path: path.to_owned(),
            origin: origin.clone(),
            order: order.iter().map(Origin::as_str).collect::<Vec<_>>().join(", "),
        })
    };
    let resolved = resolve_hardlinks(tree)?;
    let mut sets: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); order.len()];
    for (path, entry, implicit) in tree.iter() {
        if implicit {
            continue;
        }
        let layer = match resolved.member.get(path) {
            Some(&g) => {
                let file = resolved.groups[g].file;
                layer_of(path, &file.origin)?
            }
            None => layer_of(path, &entry.origin)?,
        };
        add_with_parents(&mut sets[layer], path);
    }
    Ok(order
        .iter()
        .zip(&sets)
        .filter(|(_, set)| !set.is_empty())
        .map(|(origin, set)| plan_of(tree, Some(origin.clone()), set, &resolved))
        .collect())
}
