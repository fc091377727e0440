//! The signed index: the first member of a bundle, listing every other member in
//! order with its size, sha256 and mode, and what the bundle holds (lockfiles,
//! images with their store records and SBOMs). Parsing checks everything a reader
//! relies on, so the rest of the crate can trust an `Index` it was given.

use std::collections::BTreeSet;

use openshell_build::images::ImageRecord;
use openshell_store::Digest;
use serde::{Deserialize, Serialize};

/// The format this crate writes and reads.
pub const FORMAT: &str = "openshell-bundle/1";
/// The index's member name (the bundle's first member).
pub const INDEX_NAME: &str = "openshell-bundle.json";
/// The signature's member name (the second member): the 64-byte Ed25519
/// signature of the index's bytes.
pub const SIGNATURE_NAME: &str = "openshell-bundle.json.sig";
/// The binaries a bundle may carry, under `bin/`.
pub const BINARIES: &[&str] = &["openshell", "openshell-runtime"];
/// Largest index accepted (a bundle of a big closure lists a few thousand members).
pub const MAX_INDEX: u64 = 64 * 1024 * 1024;

/// What a member is, which says where `install` puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `store/blobs/<algo>/<hex>`: a blob of a lockfile's closure (or an image's
    /// recorded lockfile text).
    StoreBlob,
    /// `lockfiles/NAME.lock`.
    Lockfile,
    /// `images/NAME/...`: a file of an image's OCI layout.
    Image,
    /// `sbom/NAME.spdx.json`: an image's SPDX document.
    Sbom,
    /// `bin/openshell` or `bin/openshell-runtime`.
    Binary,
}

/// One member of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its path in the bundle.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Its size in bytes.
    pub size: u64,
    /// sha256 of its content, lowercase hex.
    pub sha256: String,
    /// Its permission bits (0644, or 0755 for binaries).
    pub mode: u32,
}

/// An image in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledImage {
    /// Its OCI layout's directory in the bundle (`images/NAME`).
    pub layout: String,
    /// The store's record of it, as `install` writes it.
    pub record: ImageRecord,
    /// Its SBOM member, when it has a lockfile to make one from.
    pub sbom: Option<String>,
}

/// The index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// [`FORMAT`].
    pub format: String,
    /// The openshell version that wrote it.
    pub created_by: String,
    /// The lockfile members.
    pub lockfiles: Vec<String>,
    /// The images.
    pub images: Vec<BundledImage>,
    /// Every member after the index and its signature, in bundle order.
    pub members: Vec<Member>,
}

/// Why an index is refused.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Not JSON of this shape.
    #[error("not a bundle index: {0}")]
    Json(#[from] serde_json::Error),
    /// Another format.
    #[error("format `{0}` is not {FORMAT}")]
    Format(String),
    /// A member entry that cannot be right.
    #[error("member `{path}`: {message}")]
    Member {
        /// The entry's path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A reference to a member the index does not list.
    #[error("{what} names `{path}`, which is not a member of the right kind")]
    Dangling {
        /// What refers.
        what: String,
        /// The path.
        path: String,
    },
}

impl Index {
    /// The index's bytes as written (pretty JSON, fields in declaration order).
    pub fn to_bytes(&self) -> Result<Vec<u8>, IndexError> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Parses and checks an index.
    pub fn parse(bytes: &[u8]) -> Result<Index, IndexError> {
        let index: Index = serde_json::from_slice(bytes)?;
        if index.format != FORMAT {
            return Err(IndexError::Format(index.format));
        }
        let mut seen = BTreeSet::new();
        for m in &index.members {
            check_member(m)?;
            if !seen.insert(m.path.as_str()) {
                return Err(member_error(m, "listed twice"));
            }
        }
        index.check_references(&seen)?;
        Ok(index)
    }

    fn check_references(&self, members: &BTreeSet<&str>) -> Result<(), IndexError> {
        let has = |path: &str, kind: Kind| self.members.iter().any(|m| m.path == path && m.kind == kind);
        let dangling = |what: String, path: &str| IndexError::Dangling { what, path: path.to_owned() };
        for l in &self.lockfiles {
            if !has(l, Kind::Lockfile) {
                return Err(dangling("the lockfile list".into(), l));
            }
        }
        for image in &self.images {
            let what = format!("image {}", image.record.reference());
            let manifest = image.record.manifest.split_once(':').map(|(_, hex)| hex).unwrap_or_default();
            let path = format!("{}/blobs/sha256/{manifest}", image.layout);
            if !members.contains(path.as_str()) {
                return Err(dangling(what, &path));
            }
            if let Some(sbom) = &image.sbom
                && !has(sbom, Kind::Sbom)
            {
                return Err(dangling(what, sbom));
            }
        }
        Ok(())
    }

    /// The sha256 of every member of `kind` that is a store blob named by it.
    pub fn members_of(&self, kind: Kind) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.kind == kind)
    }
}

fn member_error(m: &Member, message: &str) -> IndexError {
    IndexError::Member { path: m.path.clone(), message: message.to_owned() }
}

/// A relative path of plain components: no empty, `.` or `..` component, only
/// printable ASCII without backslashes, at most 255 bytes.
pub fn safe_path(path: &str) -> bool {
    path.len() <= 255
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A store blob's member path: `store/blobs/<algo>/<hex>`, the hex split in two
/// components of at most 64 digits (a ustar name holds at most 100 bytes a
/// component, and a sha512 has 128 digits).
pub fn store_blob_path(d: &Digest) -> String {
    let hex = d.hex();
    let halves: Vec<&str> =
        [&hex[..hex.len().min(64)], &hex[hex.len().min(64)..]].into_iter().filter(|h| !h.is_empty()).collect();
    format!("store/blobs/{}/{}", d.algorithm().name(), halves.join("/"))
}

/// The digest a [`store_blob_path`] names (`None` for any other path).
pub fn store_blob_digest(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("store/blobs/")?;
    let (algo, hex) = rest.split_once('/')?;
    let d: Digest = format!("{algo}:{}", hex.replace('/', "")).parse().ok()?;
    (store_blob_path(&d) == path).then_some(d)
}

/// The file name a one-component member under `prefix` has, ending in `suffix`.
fn single_name<'p>(path: &'p str, prefix: &str, suffix: &str) -> Option<&'p str> {
    let name = path.strip_prefix(prefix)?;
    (!name.contains('/') && name.len() > suffix.len() && name.ends_with(suffix)).then_some(name)
}

fn check_member(m: &Member) -> Result<(), IndexError> {
    if !safe_path(&m.path) || m.path == INDEX_NAME || m.path == SIGNATURE_NAME {
        return Err(member_error(m, "not a plain relative path of its own"));
    }
    if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(member_error(m, "sha256 is not 64 lowercase hex digits"));
    }
    let (placed, mode) = match m.kind {
        Kind::StoreBlob => (store_blob_digest(&m.path).is_some(), 0o644),
        Kind::Lockfile => (single_name(&m.path, "lockfiles/", ".lock").is_some(), 0o644),
        Kind::Image => (m.path.strip_prefix("images/").is_some_and(|r| r.contains('/')), 0o644),
        Kind::Sbom => (single_name(&m.path, "sbom/", ".spdx.json").is_some(), 0o644),
        Kind::Binary => (m.path.strip_prefix("bin/").is_some_and(|b| BINARIES.contains(&b)), 0o755),
    };
    if !placed {
        return Err(member_error(m, &format!("a {:?} member cannot be at this path", m.kind)));
    }
    if m.mode != mode {
        return Err(member_error(m, &format!("mode {:o}, not {mode:o}", m.mode)));
    }
    // A store blob named by sha256 must hold exactly that content.
    if let Some(d) = store_blob_digest(&m.path).filter(|d| d.algorithm() == openshell_store::Algorithm::Sha256)
        && d.hex() != m.sha256
    {
        return Err(member_error(m, "its sha256 is not the digest it is named by"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(path: &str, kind: Kind, mode: u32) -> Member {
        Member { path: path.into(), kind, size: 1, sha256: "ab".repeat(32), mode }
    }

    fn index(members: Vec<Member>) -> Vec<u8> {
        let i = Index { format: FORMAT.into(), created_by: "test".into(), lockfiles: vec![], images: vec![], members };
        i.to_bytes().expect("bytes")
    }

    #[test]
    fn paths_that_could_leave_their_place_are_refused() {
        for bad in ["../x", "lockfiles/../../etc/passwd.lock", "/bin/openshell", "bin//openshell", "a\\b", "sbom/x y"] {
            assert!(!safe_path(bad), "{bad}");
        }
        assert!(safe_path("images/default/blobs/sha256/00"));
        let e = Index::parse(&index(vec![member("lockfiles/../x.lock", Kind::Lockfile, 0o644)])).expect_err("refused");
        assert!(e.to_string().contains("lockfiles/../x.lock"), "{e}");
        let e = Index::parse(&index(vec![member("bin/sh", Kind::Binary, 0o755)])).expect_err("refused");
        assert!(e.to_string().contains("cannot be at this path"), "{e}");
        let e = Index::parse(&index(vec![member("bin/openshell", Kind::Binary, 0o4755)])).expect_err("refused");
        assert!(e.to_string().contains("mode 4755"), "{e}");
        let twice = vec![member("sbom/a.spdx.json", Kind::Sbom, 0o644), member("sbom/a.spdx.json", Kind::Sbom, 0o644)];
        assert!(Index::parse(&index(twice)).expect_err("refused").to_string().contains("listed twice"));
        // Positive control.
        Index::parse(&index(vec![member("bin/openshell", Kind::Binary, 0o755)])).expect("a good index");
    }

    #[test]
    fn store_blob_paths_round_trip_and_fit_ustar() {
        for d in [Digest::sha256(b"x"), openshell_store::Algorithm::Sha512.hasher().finish()] {
            let path = store_blob_path(&d);
            assert_eq!(store_blob_digest(&path), Some(d.clone()), "{path}");
            assert!(path.rsplit('/').next().is_some_and(|last| last.len() <= 64), "{path}");
        }
        let whole = format!("store/blobs/sha512/{}", "ab".repeat(64));
        assert_eq!(store_blob_digest(&whole), None, "one path per digest");
    }

    #[test]
    fn a_store_blob_must_hold_the_digest_it_is_named_by() {
        let hex = "ab".repeat(32);
        let good = member(&format!("store/blobs/sha256/{hex}"), Kind::StoreBlob, 0o644);
        Index::parse(&index(vec![good])).expect("named by its digest");
        let bad = member(&format!("store/blobs/sha256/{}", "cd".repeat(32)), Kind::StoreBlob, 0o644);
        let e = Index::parse(&index(vec![bad])).expect_err("refused");
        assert!(e.to_string().contains("not the digest it is named by"), "{e}");
    }
}
