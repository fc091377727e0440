//! npm package tarballs: integrity checks and unpacking the way pacote does.
//!
//! A package tarball is a gzip-compressed tar whose entries live under one top directory
//! (`package/` almost always, sometimes the package name). pacote extracts it with node-tar
//! using `strip: 1` and a filter that:
//! - keeps only regular files: symbolic links and hard links are **dropped** (npm ignores
//!   them, and so do we), directory entries are not extracted as such (directories are
//!   created as needed for the files below them), devices and FIFOs are dropped;
//!   a tarball whose links leave the package is refused all the same
//!   ([`openshell_archive::PackageLinks`]), since `openshell build` keeps links;
//! - renames `.gitignore` to `.npmignore` unless a `.npmignore` was seen earlier in the same
//!   directory (npm pack's old behaviour);
//! - skips paths containing `..` and strips a leading `/`.
//!
//! File modes: pacote computes `mode | 0o666 | 0o600` and lets the process umask (npm's
//! default 022) apply, so a file ends up `(mode | 0o666) & !0o022`: each execute bit the
//! tarball set is kept (`0o755` → `0o755`, `0o700` → `0o744`, `0o710` → `0o754`, `0o600` →
//! `0o644`), and so are setuid/setgid/sticky bits (`0o4751` → `0o4755`), as npm run as root
//! would create them. Directories are `0o755`. Package bins additionally become `0o755` when
//! npm links them (see [`crate::bins`]). These were checked against pacote's own extraction.
//!
//! When a path occurs more than once, node-tar rewrites the existing file: the *last*
//! entry's contents with the *first* entry's mode. Only that final file is reported, so the
//! caller sees each path once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openshell_archive::{LinkError, PackageLinks};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// An integrity check failed or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    /// The SRI string names no algorithm this crate computes.
    #[error("integrity {sri:?} has no usable hash (supported: sha512, sha384, sha256, sha1)")]
    NoUsableHash {
        /// The SRI string.
        sri: String,
    },
    /// The data hashes to something else.
    #[error("integrity mismatch: expected {expected}, got {actual}")]
    Mismatch {
        /// What the SRI string (or shasum) demanded (all hashes of the chosen algorithm).
        expected: String,
        /// What the data hashes to, in the same notation.
        actual: String,
    },
    /// A shasum that is not 40 hex digits.
    #[error("invalid shasum {0:?}: expected 40 hex digits")]
    BadShasum(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Algorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha1 => Sha1::digest(data).to_vec(),
            Algorithm::Sha256 => Sha256::digest(data).to_vec(),
            Algorithm::Sha384 => Sha384::digest(data).to_vec(),
            Algorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The `(algorithm, base64 digest)` pairs of an SRI string (options after `?` dropped,
/// unknown algorithms ignored).
fn parse_sri(sri: &str) -> Vec<(Algorithm, String)> {
    sri.split_whitespace()
        .filter_map(|tok| {
            let (algo, rest) = tok.split_once('-')?;
            let digest = rest.split('?').next().unwrap_or("");
            Some((Algorithm::parse(algo)?, digest.to_string()))
        })
        .collect()
}

/// The `sha512-<base64>` entry of an SRI string, if it has one.
pub fn sha512_entry(sri: &str) -> Option<String> {
    parse_sri(sri).into_iter().find(|(a, _)| *a == Algorithm::Sha512).map(|(_, d)| format!("sha512-{d}"))
}

/// The SRI string (`sha512-<base64>`) of `data`.
pub fn sha512_integrity(data: &[u8]) -> String {
    format!("sha512-{}", STANDARD.encode(Sha512::digest(data)))
}

/// Check `data` against an SRI string the way ssri does: use the strongest algorithm the
/// string names, and accept if any of its hashes for that algorithm matches.
pub fn verify_integrity(data: &[u8], sri: &str) -> Result<(), IntegrityError> {
    let hashes = parse_sri(sri);
    let Some(algo) = hashes.iter().map(|(a, _)| *a).max() else {
        return Err(IntegrityError::NoUsableHash { sri: sri.to_string() });
    };
    let actual = algo.digest(data);
    let wanted: Vec<&String> = hashes.iter().filter(|(a, _)| *a == algo).map(|(_, d)| d).collect();
    if wanted.iter().any(|d| STANDARD.decode(d.as_bytes()).is_ok_and(|bytes| bytes == actual)) {
        return Ok(());
    }
    Err(IntegrityError::Mismatch {
        expected: wanted.iter().map(|d| format!("{}-{d}", algo.name())).collect::<Vec<_>>().join(" "),
        actual: format!("{}-{}", algo.name(), STANDARD.encode(&actual)),
    })
}

/// Check `data` against a hex SHA-1 `shasum` (the registry's legacy `dist.shasum`).
pub fn verify_shasum(data: &[u8], shasum: &str) -> Result<(), IntegrityError> {
    let want = shasum.trim().to_ascii_lowercase();
    if want.len() != 40 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IntegrityError::BadShasum(shasum.to_string()));
    }
    let actual: String = Sha1::digest(data).iter().map(|b| format!("{b:02x}")).collect();
    if actual == want { Ok(()) } else { Err(IntegrityError::Mismatch { expected: want, actual }) }
}

/// What an unpacked entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory implied by a file below it (reported once, before its first file).
    Directory,
    /// A regular file; read its contents from [`Entry::contents`].
    File,
}

/// One entry of an unpacked package.
pub struct Entry<'a> {
    /// Path inside the package, `/`-separated, top directory stripped, normalized.
    pub path: &'a str,
    /// File or directory.
    pub kind: EntryKind,
    /// Permission bits npm would give it (see the module docs).
    pub mode: u32,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// The file's bytes (empty for directories).
    pub contents: &'a mut dyn Read,
}

/// Why an entry of the tarball was not extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Path as stored in the tarball.
    pub path: String,
    /// Why it was dropped.
    pub reason: &'static str,
}

/// What unpacking saw besides the entries it reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Files reported.
    pub files: usize,
    /// Directories reported.
    pub directories: usize,
    /// Entries dropped (links, devices, unsafe paths) and earlier duplicates.
    pub skipped: Vec<Skipped>,
}

/// Unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The gzip or tar stream is damaged.
    #[error("corrupt package tarball: {0}")]
    Corrupt(#[source] io::Error),
    /// A link leaves the package, or a member lies under a link.
    #[error("package tarball: {0}")]
    Link(#[from] LinkError),
    /// A path is used both as a file and as a directory.
    #[error("package tarball uses {path:?} both as a file and as a directory")]
    FileDirectoryConflict {
        /// The path in question.
        path: String,
    },
    /// The callback failed.
    #[error("handling {path:?} from the package tarball: {source}")]
    Callback {
        /// The entry being handled.
        path: String,
        /// The callback's error.
        #[source]
        source: io::Error,
    },
}

fn archive(bytes: &[u8]) -> tar::Archive<Box<dyn Read + '_>> {
    let reader: Box<dyn Read> =
        if bytes.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::GzDecoder::new(bytes)) } else { Box::new(bytes) };
    tar::Archive::new(reader)
}

/// What pass one decided for each tar entry, by index.
enum Plan {
    Skip,
    File(String),
}

/// Strip the first component and normalize; `None` when node-tar would refuse the path.
fn stripped_path(raw: &str) -> Option<String> {
    let mut parts = raw.split('/');
    parts.next();
    let rest: Vec<&str> = parts.collect();
    if rest.contains(&"..") {
        return None;
    }
    let clean: Vec<&str> = rest.into_iter().filter(|p| !p.is_empty() && *p != ".").collect();
    if clean.is_empty() { None } else { Some(clean.join("/")) }
}

/// Records a member for the link check: its stripped path, and a link's target
/// (a hard link's as a path from the package root). Pax headers are not members.
fn record_link<R: Read>(links: &mut PackageLinks, entry: &tar::Entry<'_, R>) {
    let et = entry.header().entry_type();
    if et.is_pax_global_extensions() || et.is_pax_local_extensions() {
        return;
    }
    let Some(path) = std::str::from_utf8(&entry.path_bytes()).ok().and_then(stripped_path) else { return };
    let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
    if et.is_symlink() {
        links.symlink(&path, &target);
    } else if et.is_hard_link() {
        links.hardlink(&path, target.split_once('/').map_or("", |(_, rest)| rest));
    } else {
        links.plain(&path);
    }
}

/// Checks that every link in a plain (uncompressed) package tar stays inside the
/// package, for callers that keep links (`openshell build`). Reads headers only.
pub fn check_tar_links(tar: impl Read + io::Seek) -> Result<(), UnpackError> {
    let mut links = PackageLinks::new();
    for entry in tar::Archive::new(tar).entries_with_seek().map_err(UnpackError::Corrupt)? {
        record_link(&mut links, &entry.map_err(UnpackError::Corrupt)?);
    }
    Ok(links.check()?)
}

fn parent_dir(raw: &str) -> &str {
    raw.rfind('/').map(|i| &raw[..i]).unwrap_or("")
}

/// Unpack an npm package tarball (`.tgz`, or a plain `.tar`), calling `f` for each directory
/// and file npm would create, in tarball order (each directory before its first file). See
/// the module docs for what is dropped and how modes are set. Verify the bytes with
/// [`verify_integrity`] first: this function does not know the expected digest.
pub fn unpack_entries(
    bytes: &[u8],
    mut f: impl FnMut(Entry<'_>) -> io::Result<()>,
) -> Result<UnpackSummary, UnpackError> {
    let mut summary = UnpackSummary::default();
    // Pass 1: decide each entry's fate and find the last occurrence of every path.
    let mut plans: Vec<Plan> = Vec::new();
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    let mut first_mode: BTreeMap<String, u32> = BTreeMap::new();
    let mut saw_npmignore: BTreeSet<String> = BTreeSet::new();
    let mut links = PackageLinks::new();
    {
        let mut ar = archive(bytes);
        for entry in ar.entries().map_err(UnpackError::Corrupt)? {
            let entry = entry.map_err(UnpackError::Corrupt)?;
            record_link(&mut links, &entry);
            let raw_bytes = entry.path_bytes();
            let Ok(raw) = std::str::from_utf8(&raw_bytes).map(str::to_string) else {
                summary.skipped.push(Skipped {
                    path: String::from_utf8_lossy(&raw_bytes).into_owned(),
                    reason: "path is not UTF-8",
                });
                plans.push(Plan::Skip);
                continue;
            };
            let et = entry.header().entry_type();
            let plan = if et.is_file() || et == tar::EntryType::Continuous {
                let mut raw = raw;
                let base = raw.rsplit('/').next().unwrap_or("");
                if base == ".npmignore" {
                    saw_npmignore.insert(raw.clone());
                } else if base == ".gitignore" {
                    let ni = format!("{}.npmignore", &raw[..raw.len() - ".gitignore".len()]);
                    if saw_npmignore.contains(&ni) {
                        summary.skipped.push(Skipped { path: raw.clone(), reason: ".gitignore next to a .npmignore" });
                        plans.push(Plan::Skip);
                        continue;
                    }
                    raw = ni;
                }
                match stripped_path(&raw) {
                    Some(p) => Plan::File(p),
                    None => {
                        summary.skipped.push(Skipped { path: raw, reason: "unsafe or empty path" });
                        Plan::Skip
                    }
                }
            } else if et.is_dir() {
                Plan::Skip
            } else {
                let reason = if et.is_symlink() {
                    "symbolic link (npm ignores links)"
                } else if et.is_hard_link() {
                    "hard link (npm ignores links)"
                } else if et.is_pax_global_extensions() || et.is_pax_local_extensions() {
                    "pax header"
                } else {
                    "not a regular file"
                };
                if reason != "pax header" {
                    summary.skipped.push(Skipped { path: raw, reason });
                }
                Plan::Skip
            };
            if let Plan::File(p) = &plan {
                last.insert(p.clone(), plans.len());
                if !first_mode.contains_key(p) {
                    first_mode.insert(p.clone(), entry.header().mode().map_err(UnpackError::Corrupt)?);
                }
            }
            plans.push(plan);
        }
    }
    links.check()?;
    // A path that is a file must not also be a directory of another file.
    for path in last.keys() {
        let mut dir = parent_dir(path);
        while !dir.is_empty() {
            if last.contains_key(dir) {
                return Err(UnpackError::FileDirectoryConflict { path: dir.to_string() });
            }
            dir = parent_dir(dir);
        }
    }
    // Pass 2: report.
    let mut dirs_done: BTreeSet<String> = BTreeSet::new();
    let mut ar = archive(bytes);
    for (index, entry) in ar.entries().map_err(UnpackError::Corrupt)?.enumerate() {
        let mut entry = entry.map_err(UnpackError::Corrupt)?;
        let Some(Plan::File(path)) = plans.get(index) else { continue };
        if last.get(path) != Some(&index) {
            summary
                .skipped
                .push(Skipped { path: path.clone(), reason: "replaced by a later entry with the same path" });
            continue;
        }
        let mut missing = Vec::new();
        let mut dir = parent_dir(path);
        while !dir.is_empty() && !dirs_done.contains(dir) {
            missing.push(dir.to_string());
            dir = parent_dir(dir);
        }
        for d in missing.into_iter().rev() {
            let mut empty = io::empty();
            f(Entry { path: &d, kind: EntryKind::Directory, mode: 0o755, size: 0, contents: &mut empty })
                .map_err(|source| UnpackError::Callback { path: d.clone(), source })?;
            summary.directories += 1;
            dirs_done.insert(d);
        }
        let mode = match first_mode.get(path) {
            Some(m) => *m,
            None => entry.header().mode().map_err(UnpackError::Corrupt)?,
        };
        let size = entry.size();
        let mode = (mode | 0o666) & !0o022 & 0o7777;
        f(Entry { path, kind: EntryKind::File, mode, size, contents: &mut entry })
            .map_err(|source| UnpackError::Callback { path: path.clone(), source })?;
        summary.files += 1;
    }
    Ok(summary)
}

/// bin-links' `dos2unix` for a bin target: if the first line is a `#!` line ending in
/// `\r\n`, the `\r` is removed. Returns `None` when nothing changes.
pub fn fix_bin_shebang(contents: &[u8]) -> Option<Vec<u8>> {
    if !contents.starts_with(b"#!") {
        return None;
    }
    // bin-links looks at the first 2048 bytes for `^#![^\n]+\r\n`.
    let head = &contents[..contents.len().min(2048)];
    let nl = head.iter().position(|&b| b == b'\n')?;
    if nl < 3 || head[nl - 1] != b'\r' {
        return None;
    }
    let mut out = Vec::with_capacity(contents.len() - 1);
    out.extend_from_slice(&contents[..nl - 1]);
    out.extend_from_slice(&contents[nl..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sri_checks() {
        let data = b"hello";
        let sri = sha512_integrity(data);
        verify_integrity(data, &sri).expect("matches");
        // Strongest algorithm wins: a wrong sha512 next to a right sha1 fails.
        let sha1 = format!("sha1-{}", STANDARD.encode(Sha1::digest(data)));
        verify_integrity(data, &sha1).expect("sha1 alone is fine");
        let bad512 = sha512_integrity(b"other");
        let e = verify_integrity(data, &format!("{sha1} {bad512}")).expect_err("sha512 wins");
        assert!(matches!(e, IntegrityError::Mismatch { .. }));
        // Any of several hashes of the strongest algorithm is enough; options are ignored.
        verify_integrity(data, &format!("{bad512} {sri}?opt")).expect("second matches");
        assert!(matches!(verify_integrity(data, "md5-xyz"), Err(IntegrityError::NoUsableHash { .. })));
        assert_eq!(sha512_entry(&format!("{sha1} {sri}")), Some(sri.clone()));
        assert_eq!(sha512_entry(&sha1), None);
    }

    #[test]
    fn shasum_checks() {
        verify_shasum(b"hello", "AAF4C61DDCC5E8A2DABEDE0F3B482CD9AEA9434D").expect("matches");
        assert!(matches!(verify_shasum(b"hello", "00"), Err(IntegrityError::BadShasum(_))));
        assert!(matches!(
            verify_shasum(b"hellO", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
            Err(IntegrityError::Mismatch { .. })
        ));
    }

    #[test]
    fn shebang_fix() {
        assert_eq!(fix_bin_shebang(b"#!/usr/bin/env node\r\nx\r\n"), Some(b"#!/usr/bin/env node\nx\r\n".to_vec()));
        assert_eq!(fix_bin_shebang(b"#!/usr/bin/env node\nx"), None);
        assert_eq!(fix_bin_shebang(b"console.log(1)\r\n"), None);
    }
}
