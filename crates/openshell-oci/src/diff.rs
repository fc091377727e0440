//! Explaining why two builds of the same inputs differ (`openshell build --check`).
//!
//! Layers are examined first, bottom up, because a differing layer also changes the
//! config (its diff_id) and the manifest: the first layer whose blob differs is
//! decompressed on both sides and the two tars are walked in step to name the first
//! differing entry and how it differs. Only when every layer is identical are the
//! config and then the manifest compared, naming the first differing JSON field.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use openshell_store::{Algorithm, Digest};

use serde::Serialize;
use serde_json::Value;

use crate::layout::{self, Descriptor, Layout, LayoutError, LayoutImage};

/// How one tar entry differs between the two sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryDiff {
    /// The path is only in the first layer (the second has `next` there, if anything).
    OnlyInA {
        /// The entry at the same position in the second layer.
        next: Option<String>,
    },
    /// The path is only in the second layer.
    OnlyInB {
        /// The entry at the same position in the first layer.
        next: Option<String>,
    },
    /// Different entry types (tar type flags).
    Type {
        /// First side's type.
        a: String,
        /// Second side's type.
        b: String,
    },
    /// Different permission bits.
    Mode {
        /// First side's mode.
        a: u32,
        /// Second side's mode.
        b: u32,
    },
    /// Different numeric owner.
    Owner {
        /// First side's uid:gid.
        a: (u64, u64),
        /// Second side's uid:gid.
        b: (u64, u64),
    },
    /// Different owner names.
    OwnerNames {
        /// First side's uname:gname.
        a: String,
        /// Second side's uname:gname.
        b: String,
    },
    /// Different modification times.
    Mtime {
        /// First side's mtime.
        a: u64,
        /// Second side's mtime.
        b: u64,
    },
    /// Different link targets.
    LinkTarget {
        /// First side's target.
        a: String,
        /// Second side's target.
        b: String,
    },
    /// Different sizes.
    Size {
        /// First side's size.
        a: u64,
        /// Second side's size.
        b: u64,
    },
    /// Same size, different bytes from `offset` on.
    Content {
        /// First differing byte.
        offset: u64,
    },
    /// Different PAX extended records (xattrs and the like).
    PaxRecords {
        /// First side's records, `key=value` each.
        a: Vec<String>,
        /// Second side's records.
        b: Vec<String>,
    },
    /// Every field above is equal but the raw header bytes differ (a format change).
    HeaderBytes {
        /// First differing byte offset within the 512-byte header.
        offset: usize,
    },
}

impl fmt::Display for EntryDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryDiff::OnlyInA { next } => match next {
                Some(n) => write!(f, "present only in the first build (the second has `{n}` there)"),
                None => write!(f, "present only in the first build (the second layer ends before it)"),
            },
            EntryDiff::OnlyInB { next } => match next {
                Some(n) => write!(f, "present only in the second build (the first has `{n}` there)"),
                None => write!(f, "present only in the second build (the first layer ends before it)"),
            },
            EntryDiff::Type { a, b } => write!(f, "type {a} vs {b}"),
            EntryDiff::Mode { a, b } => write!(f, "mode {a:04o} vs {b:04o}"),
            EntryDiff::Owner { a, b } => write!(f, "owner {}:{} vs {}:{}", a.0, a.1, b.0, b.1),
            EntryDiff::OwnerNames { a, b } => write!(f, "owner names `{a}` vs `{b}`"),
            EntryDiff::Mtime { a, b } => write!(f, "mtime {a} vs {b}"),
            EntryDiff::LinkTarget { a, b } => write!(f, "link target `{a}` vs `{b}`"),
            EntryDiff::Size { a, b } => write!(f, "size {a} vs {b} bytes"),
            EntryDiff::Content { offset } => write!(f, "content differs from byte {offset}"),
            EntryDiff::PaxRecords { a, b } => write!(f, "pax records [{}] vs [{}]", a.join(", "), b.join(", ")),
            EntryDiff::HeaderBytes { offset } => write!(f, "header bytes differ at offset {offset}"),
        }
    }
}

impl EntryDiff {
    /// The name of the field that differs (`content`, `mode`, `mtime`, ...).
    pub fn field(&self) -> &'static str {
        match self {
            EntryDiff::OnlyInA { .. } | EntryDiff::OnlyInB { .. } => "presence",
            EntryDiff::Type { .. } => "type",
            EntryDiff::Mode { .. } => "mode",
            EntryDiff::Owner { .. } => "owner",
            EntryDiff::OwnerNames { .. } => "owner names",
            EntryDiff::Mtime { .. } => "mtime",
            EntryDiff::LinkTarget { .. } => "link target",
            EntryDiff::Size { .. } => "size",
            EntryDiff::Content { .. } => "content",
            EntryDiff::PaxRecords { .. } => "pax records",
            EntryDiff::HeaderBytes { .. } => "header bytes",
        }
    }
}

/// One side's tar entry: its header's fields and its content's sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The entry type (`file`, `directory`, `symlink`, ...).
    pub kind: String,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Content size in bytes.
    pub size: u64,
    /// A link's target.
    pub link: Option<String>,
    /// sha256 of the content (of no bytes for entries without content).
    pub sha256: Digest,
}

impl fmt::Display for EntryInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mode {:04o} owner {}:{} mtime {} size {} {}",
            self.kind, self.mode, self.uid, self.gid, self.mtime, self.size, self.sha256
        )?;
        match &self.link {
            Some(target) => write!(f, " -> {target}"),
            None => Ok(()),
        }
    }
}

/// What differs inside a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerDiff {
    /// The first differing entry.
    Entry {
        /// Its path.
        path: String,
        /// How it differs.
        diff: EntryDiff,
        /// The entry in the first layer (none when only the second has it).
        a: Option<Box<EntryInfo>>,
        /// The entry in the second layer.
        b: Option<Box<EntryInfo>>,
    },
    /// Same uncompressed content, different compressed bytes: the compressor differs.
    CompressionOnly,
    /// Same entries, but the bytes after them (end-of-archive padding) differ.
    Trailer,
    /// Different media types.
    MediaType {
        /// First side's.
        a: String,
        /// Second side's.
        b: String,
    },
}

/// The first difference found between two layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The layouts name different numbers of images.
    ImageCount {
        /// First side's count.
        a: usize,
        /// Second side's count.
        b: usize,
    },
    /// Different numbers of layers.
    LayerCount {
        /// First side's count.
        a: usize,
        /// Second side's count.
        b: usize,
    },
    /// A layer blob differs.
    Layer {
        /// Position, bottom first.
        index: usize,
        /// First side's blob.
        a: Digest,
        /// Second side's blob.
        b: Digest,
        /// First side's diff_id (the uncompressed tar's digest, from its config).
        a_diff_id: Digest,
        /// Second side's diff_id.
        b_diff_id: Digest,
        /// What differs inside.
        detail: LayerDiff,
    },
    /// The configs differ (while every layer is identical).
    Config {
        /// First side's blob.
        a: Digest,
        /// Second side's blob.
        b: Digest,
        /// JSON pointer of the first differing field.
        pointer: String,
        /// First side's value there (canonical JSON, shortened), or absent.
        a_value: Option<String>,
        /// Second side's value there.
        b_value: Option<String>,
    },
    /// The manifests differ (while config and layers are identical).
    Manifest {
        /// JSON pointer of the first differing field.
        pointer: String,
        /// First side's value there.
        a_value: Option<String>,
        /// Second side's value there.
        b_value: Option<String>,
    },
    /// Same manifest, different `index.json` entry (annotations: the image name).
    Index {
        /// What differs.
        message: String,
    },
}

/// The outcome of comparing two layouts.
// One value per comparison: the size of the variants does not matter, and boxing the
// difference would keep callers from matching on it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutDiff {
    /// Same manifest digests (so the same image).
    Identical {
        /// The manifest digests, in index order.
        manifests: Vec<Digest>,
    },
    /// The first difference.
    Differs {
        /// The image's position in `index.json`.
        image: usize,
        /// First side's manifest digest (if it has the image).
        manifest_a: Option<Digest>,
        /// Second side's.
        manifest_b: Option<Digest>,
        /// What differs.
        difference: Difference,
    },
}

impl LayoutDiff {
    /// Whether the layouts hold the same images.
    pub fn is_identical(&self) -> bool {
        matches!(self, LayoutDiff::Identical { .. })
    }
}

fn show(v: Option<&String>) -> &str {
    v.map_or("(absent)", String::as_str)
}

impl fmt::Display for LayoutDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (image, ma, mb, difference) = match self {
            LayoutDiff::Identical { manifests } => {
                let list: Vec<String> = manifests.iter().map(Digest::to_string).collect();
                return write!(f, "identical: {}", list.join(", "));
            }
            LayoutDiff::Differs { image, manifest_a, manifest_b, difference } => {
                (image, manifest_a, manifest_b, difference)
            }
        };
        let d = |m: &Option<Digest>| m.as_ref().map_or_else(|| "(none)".to_owned(), Digest::to_string);
        writeln!(f, "image {image} differs: manifest {} vs {}", d(ma), d(mb))?;
        match difference {
            Difference::ImageCount { a, b } => write!(f, "index.json names {a} vs {b} images"),
            Difference::LayerCount { a, b } => write!(f, "{a} vs {b} layers"),
            Difference::Layer { index, a, b, detail, .. } => {
                write!(f, "layer {index} ({a} vs {b}): ")?;
                match detail {
                    LayerDiff::Entry { path, diff, .. } => write!(f, "{path}: {diff}"),
                    LayerDiff::CompressionOnly => {
                        write!(f, "same uncompressed content, different compressed bytes (compressor differs)")
                    }
                    LayerDiff::Trailer => write!(f, "same entries, different end-of-archive bytes"),
                    LayerDiff::MediaType { a, b } => write!(f, "media type {a} vs {b}"),
                }
            }
            Difference::Config { a, b, pointer, a_value, b_value } => {
                write!(f, "config ({a} vs {b}) at {pointer}: {} vs {}", show(a_value.as_ref()), show(b_value.as_ref()))
            }
            Difference::Manifest { pointer, a_value, b_value } => {
                write!(f, "manifest at {pointer}: {} vs {}", show(a_value.as_ref()), show(b_value.as_ref()))
            }
            Difference::Index { message } => write!(f, "index.json: {message}"),
        }
    }
}

/// Errors comparing layouts.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A layout could not be read.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A document could not be turned into JSON to compare it.
    #[error("cannot compare documents: {0}")]
    Json(#[source] serde_json::Error),
    /// A layer could not be read as a tar.
    #[error("layer {index} ({}): {source}", path.display())]
    Tar {
        /// The layer's position.
        index: usize,
        /// The blob file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Compares two layouts built from the same inputs; see the module docs for the order.
pub fn diff_layouts(a: &Path, b: &Path) -> Result<LayoutDiff, DiffError> {
    let la = layout::read_layout(a)?;
    let lb = layout::read_layout(b)?;
    let digests = |l: &Layout| l.images.iter().map(|i| i.manifest.digest.clone()).collect::<Vec<_>>();
    let (da, db) = (digests(&la), digests(&lb));
    if da.len() != db.len() {
        return Ok(LayoutDiff::Differs {
            image: da.len().min(db.len()),
            manifest_a: da.get(db.len()).cloned(),
            manifest_b: db.get(da.len()).cloned(),
            difference: Difference::ImageCount { a: da.len(), b: db.len() },
        });
    }
    for (i, (ia, ib)) in la.images.iter().zip(&lb.images).enumerate() {
        let differs = |difference| LayoutDiff::Differs {
            image: i,
            manifest_a: Some(ia.manifest.digest.clone()),
            manifest_b: Some(ib.manifest.digest.clone()),
            difference,
        };
        if ia.manifest.digest == ib.manifest.digest {
            if ia.manifest.annotations != ib.manifest.annotations {
                let message = format!(
                    "annotations {:?} vs {:?}",
                    ia.manifest.annotations.iter().collect::<Vec<_>>(),
                    ib.manifest.annotations.iter().collect::<Vec<_>>()
                );
                return Ok(differs(Difference::Index { message }));
            }
            continue;
        }
        return Ok(differs(diff_images(a, ia, b, ib)?));
    }
    Ok(LayoutDiff::Identical { manifests: da })
}

fn diff_images(adir: &Path, a: &LayoutImage, bdir: &Path, b: &LayoutImage) -> Result<Difference, DiffError> {
    // `read_layout` checked that each config has one diff_id per layer.
    let sides = a.layers.iter().zip(&a.diff_ids).zip(b.layers.iter().zip(&b.diff_ids));
    for (index, ((la, da), (lb, db))) in sides.enumerate() {
        if la.digest == lb.digest {
            continue;
        }
        // Different content is walked whatever the compression: the file says more
        // than the media type.
        let detail = if da != db {
            diff_layer(index, adir, la, bdir, lb)?
        } else if la.media_type != lb.media_type {
            LayerDiff::MediaType { a: la.media_type.to_string(), b: lb.media_type.to_string() }
        } else {
            LayerDiff::CompressionOnly
        };
        return Ok(Difference::Layer {
            index,
            a: la.digest.clone(),
            b: lb.digest.clone(),
            a_diff_id: da.clone(),
            b_diff_id: db.clone(),
            detail,
        });
    }
    if a.layers.len() != b.layers.len() {
        return Ok(Difference::LayerCount { a: a.layers.len(), b: b.layers.len() });
    }
    if a.config.digest != b.config.digest {
        let (pointer, a_value, b_value) = first_json_diff(&as_json(&a.config_doc)?, &as_json(&b.config_doc)?);
        return Ok(Difference::Config {
            a: a.config.digest.clone(),
            b: b.config.digest.clone(),
            pointer,
            a_value,
            b_value,
        });
    }
    let (pointer, a_value, b_value) = first_json_diff(&as_json(&a.manifest_doc)?, &as_json(&b.manifest_doc)?);
    Ok(Difference::Manifest { pointer, a_value, b_value })
}

/// A document as a JSON tree, for [`first_json_diff`] (which walks any JSON, so it
/// works on the generic tree rather than on each oci-spec type).
fn as_json<T: Serialize>(doc: &T) -> Result<Value, DiffError> {
    serde_json::to_value(doc).map_err(DiffError::Json)
}

fn shorten(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// JSON pointer of the first difference, with both values there.
pub fn first_json_diff(a: &Value, b: &Value) -> (String, Option<String>, Option<String>) {
    fn walk(a: &Value, b: &Value, ptr: &mut String) -> Option<(Option<String>, Option<String>)> {
        match (a, b) {
            (Value::Object(ma), Value::Object(mb)) => {
                let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let len = ptr.len();
                    ptr.push('/');
                    ptr.push_str(&escape_pointer(k));
                    match (ma.get(k), mb.get(k)) {
                        (Some(x), Some(y)) => {
                            if let Some(r) = walk(x, y, ptr) {
                                return Some(r);
                            }
                        }
                        (x, y) => return Some((x.map(shorten), y.map(shorten))),
                    }
                    ptr.truncate(len);
                }
                None
            }
            (Value::Array(xa), Value::Array(xb)) => {
                for i in 0..xa.len().max(xb.len()) {
                    let len = ptr.len();
                    ptr.push('/');
                    ptr.push_str(&i.to_string());
                    match (xa.get(i), xb.get(i)) {
                        (Some(x), Some(y)) => {
                            if let Some(r) = walk(x, y, ptr) {
                                return Some(r);
                            }
                        }
                        (x, y) => return Some((x.map(shorten), y.map(shorten))),
                    }
                    ptr.truncate(len);
                }
                None
            }
            (x, y) if x == y => None,
            (x, y) => Some((Some(shorten(x)), Some(shorten(y)))),
        }
    }
    let mut ptr = String::new();
    match walk(a, b, &mut ptr) {
        Some((x, y)) => (if ptr.is_empty() { "/".to_owned() } else { ptr }, x, y),
        None => ("/".to_owned(), None, None),
    }
}

/// One side of a layer walk.
struct Side {
    path: PathBuf,
    archive: tar::Archive<Box<dyn Read>>,
}

fn open_layer(dir: &Path, desc: &Descriptor) -> Result<Side, DiffError> {
    let path = layout::blob_path(dir, &desc.digest);
    let file = File::open(&path).map_err(|source| LayoutError::Io { path: path.clone(), source })?;
    let content = layout::decompressor(&desc.media_type, BufReader::with_capacity(256 * 1024, file), &path)?;
    Ok(Side { path, archive: tar::Archive::new(content) })
}

fn type_name(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Regular => "file".to_owned(),
        tar::EntryType::Link => "hardlink".to_owned(),
        tar::EntryType::Symlink => "symlink".to_owned(),
        tar::EntryType::Directory => "directory".to_owned(),
        tar::EntryType::Char => "character device".to_owned(),
        tar::EntryType::Block => "block device".to_owned(),
        tar::EntryType::Fifo => "fifo".to_owned(),
        other => format!("type `{}`", other.as_byte() as char),
    }
}

fn pax_records<R: Read>(e: &mut tar::Entry<'_, R>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = e.pax_extensions() {
        for ext in exts.flatten() {
            let key = ext.key().unwrap_or("?");
            // path and linkpath are compared through the entry itself.
            if key != "path" && key != "linkpath" {
                out.push(format!("{key}={}", String::from_utf8_lossy(ext.value_bytes())));
            }
        }
    }
    out
}

fn bytes_name(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The header fields of an entry that [`compare_entries`] compares, in that order.
fn header_diff<R: Read>(ea: &tar::Entry<'_, R>, eb: &tar::Entry<'_, R>) -> Option<EntryDiff> {
    let (ha, hb) = (ea.header(), eb.header());
    if ha.entry_type() != hb.entry_type() {
        return Some(EntryDiff::Type { a: type_name(ha.entry_type()), b: type_name(hb.entry_type()) });
    }
    let (ma, mb) = (ha.mode().unwrap_or(u32::MAX), hb.mode().unwrap_or(u32::MAX));
    if ma != mb {
        return Some(EntryDiff::Mode { a: ma, b: mb });
    }
    let owner = |h: &tar::Header| (h.uid().unwrap_or(u64::MAX), h.gid().unwrap_or(u64::MAX));
    if owner(ha) != owner(hb) {
        return Some(EntryDiff::Owner { a: owner(ha), b: owner(hb) });
    }
    let names = |h: &tar::Header| {
        format!(
            "{}:{}",
            h.username_bytes().map(bytes_name).unwrap_or_default(),
            h.groupname_bytes().map(bytes_name).unwrap_or_default()
        )
    };
    if names(ha) != names(hb) {
        return Some(EntryDiff::OwnerNames { a: names(ha), b: names(hb) });
    }
    let (ta, tb) = (ha.mtime().unwrap_or(u64::MAX), hb.mtime().unwrap_or(u64::MAX));
    if ta != tb {
        return Some(EntryDiff::Mtime { a: ta, b: tb });
    }
    let (la, lb) = (link_target(ea), link_target(eb));
    if la != lb {
        return Some(EntryDiff::LinkTarget { a: la.unwrap_or_default(), b: lb.unwrap_or_default() });
    }
    None
}

fn link_target<R: Read>(e: &tar::Entry<'_, R>) -> Option<String> {
    e.link_name_bytes().map(|b| bytes_name(&b))
}

/// An entry's header fields, with the sha256 of its content (read by the caller).
fn entry_info<R: Read>(e: &tar::Entry<'_, R>, sha256: Digest) -> EntryInfo {
    let h = e.header();
    EntryInfo {
        kind: type_name(h.entry_type()),
        mode: h.mode().unwrap_or(u32::MAX),
        uid: h.uid().unwrap_or(u64::MAX),
        gid: h.gid().unwrap_or(u64::MAX),
        mtime: h.mtime().unwrap_or(u64::MAX),
        size: e.size(),
        link: link_target(e),
        sha256,
    }
}

/// Reads an entry's content whole; its sha256.
fn hash_entry<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<Digest> {
    let mut h = Algorithm::Sha256.hasher();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(e, &mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// An entry only one side has, with what is known of it.
fn only_in(path: String, diff: EntryDiff, info: EntryInfo, in_a: bool) -> LayerDiff {
    let info = Some(Box::new(info));
    if in_a {
        LayerDiff::Entry { path, diff, a: info, b: None }
    } else {
        LayerDiff::Entry { path, diff, a: None, b: info }
    }
}

/// What reading two contents in step found: the first differing offset (if any)
/// and each side's sha256.
struct Contents {
    differs_at: Option<u64>,
    a: Digest,
    b: Digest,
}

/// Reads both contents to their ends, comparing and hashing them.
fn read_contents<R: Read>(ea: &mut tar::Entry<'_, R>, eb: &mut tar::Entry<'_, R>) -> io::Result<Contents> {
    let (mut ha, mut hb) = (Algorithm::Sha256.hasher(), Algorithm::Sha256.hasher());
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    let mut differs_at = None;
    loop {
        let na = read_full(ea, &mut ba)?;
        let nb = read_full(eb, &mut bb)?;
        if na == 0 && nb == 0 {
            return Ok(Contents { differs_at, a: ha.finish(), b: hb.finish() });
        }
        ha.update(&ba[..na]);
        hb.update(&bb[..nb]);
        if differs_at.is_none() {
            let common = na.min(nb);
            differs_at = match ba[..common].iter().zip(&bb[..common]).position(|(x, y)| x != y) {
                Some(i) => Some(offset + i as u64),
                None if na != nb => Some(offset + common as u64),
                None => None,
            };
        }
        offset += na.max(nb) as u64;
    }
}

/// Compares two entries at the same path (reading both contents whole, for their
/// sha256): how they differ and each side, or `None` when they are the same.
fn compare_entries<R: Read>(
    ea: &mut tar::Entry<'_, R>,
    eb: &mut tar::Entry<'_, R>,
) -> io::Result<Option<(EntryDiff, EntryInfo, EntryInfo)>> {
    let header = header_diff(ea, eb);
    let (pa, pb) = (pax_records(ea), pax_records(eb));
    let (sa, sb) = (ea.size(), eb.size());
    let contents = read_contents(ea, eb)?;
    let diff = if let Some(d) = header {
        Some(d)
    } else if pa != pb {
        Some(EntryDiff::PaxRecords { a: pa, b: pb })
    } else if sa != sb {
        Some(EntryDiff::Size { a: sa, b: sb })
    } else if let Some(offset) = contents.differs_at {
        Some(EntryDiff::Content { offset })
    } else {
        let (ha, hb) = (ea.header().as_bytes(), eb.header().as_bytes());
        ha.iter().zip(hb).position(|(x, y)| x != y).map(|offset| EntryDiff::HeaderBytes { offset })
    };
    Ok(diff.map(|d| (d, entry_info(ea, contents.a), entry_info(eb, contents.b))))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Walks two layer tars in step and names the first differing entry.
pub(crate) fn diff_layer(
    index: usize,
    adir: &Path,
    la: &Descriptor,
    bdir: &Path,
    lb: &Descriptor,
) -> Result<LayerDiff, DiffError> {
    let mut sa = open_layer(adir, la)?;
    let mut sb = open_layer(bdir, lb)?;
    let (pa, pb) = (sa.path.clone(), sb.path.clone());
    let terr = |path: &Path| {
        let path = path.to_owned();
        move |source| DiffError::Tar { index, path, source }
    };
    let mut ia = sa.archive.entries().map_err(terr(&pa))?;
    let mut ib = sb.archive.entries().map_err(terr(&pb))?;
    loop {
        let ea = ia.next().transpose().map_err(terr(&pa))?;
        let eb = ib.next().transpose().map_err(terr(&pb))?;
        let (mut ea, mut eb) = match (ea, eb) {
            (None, None) => return Ok(LayerDiff::Trailer),
            (Some(mut ea), None) => {
                let path = bytes_name(&ea.path_bytes());
                let sha256 = hash_entry(&mut ea).map_err(terr(&pa))?;
                let info = entry_info(&ea, sha256);
                return Ok(only_in(path, EntryDiff::OnlyInA { next: None }, info, true));
            }
            (None, Some(mut eb)) => {
                let path = bytes_name(&eb.path_bytes());
                let sha256 = hash_entry(&mut eb).map_err(terr(&pb))?;
                let info = entry_info(&eb, sha256);
                return Ok(only_in(path, EntryDiff::OnlyInB { next: None }, info, false));
            }
            (Some(ea), Some(eb)) => (ea, eb),
        };
        let (na, nb) = (ea.path_bytes().into_owned(), eb.path_bytes().into_owned());
        if na != nb {
            // Layers are sorted: the smaller path is missing from the other side.
            return Ok(if na < nb {
                let sha256 = hash_entry(&mut ea).map_err(terr(&pa))?;
                let info = entry_info(&ea, sha256);
                only_in(bytes_name(&na), EntryDiff::OnlyInA { next: Some(bytes_name(&nb)) }, info, true)
            } else {
                let sha256 = hash_entry(&mut eb).map_err(terr(&pb))?;
                let info = entry_info(&eb, sha256);
                only_in(bytes_name(&nb), EntryDiff::OnlyInB { next: Some(bytes_name(&na)) }, info, false)
            });
        }
        if let Some((diff, a, b)) = compare_entries(&mut ea, &mut eb).map_err(terr(&pa))? {
            return Ok(LayerDiff::Entry { path: bytes_name(&na), diff, a: Some(Box::new(a)), b: Some(Box::new(b)) });
        }
    }
}
