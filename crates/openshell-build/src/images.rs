//! The store's image index: what `openshell build` produced or `openshell pull`
//! fetched, by `name:tag`, for
//! `openshell image ls|inspect|rm|verify`. Each record keeps its manifest, config
//! and layers alive across `store gc`.

use std::path::{Path, PathBuf};

use openshell_oci::LayoutError;
use openshell_oci::spec::{ImageConfiguration, ImageManifest};
use openshell_store::{Digest, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::build::Built;

/// One built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    pub tag: String,
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
    /// Compressed size of the layers, in bytes.
    pub size: u64,
    /// Uncompressed size of the layers, in bytes.
    pub uncompressed_size: u64,
    /// The stored text of the lockfile the image was built from (absent in records
    /// written before openshell kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockfile: Option<String>,
}

impl ImageRecord {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// Every blob of the image (manifest, config, layers) and its lockfile's text.
    pub fn blobs(&self) -> Vec<Digest> {
        std::iter::once(&self.manifest)
            .chain(std::iter::once(&self.config))
            .chain(self.layers.iter())
            .chain(self.lockfile.iter())
            .filter_map(|d| d.parse().ok())
            .collect()
    }
}

/// Errors of the image index.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("no image `{0}` in the store (see `openshell image ls`)")]
    NotFound(String),
    #[error("`{reference}` is ambiguous: it matches {}", matches.join(", "))]
    Ambiguous { reference: String, matches: Vec<String> },
    #[error("image record {}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{0}")]
    Verify(String),
    /// A stored manifest or config that does not read as its OCI document.
    #[error(transparent)]
    Document(#[from] LayoutError),
    /// Stored documents that do not make an image (see [`image`]).
    #[error(transparent)]
    Image(#[from] openshell_oci::ImageError),
    #[error(
        "image `{0}` has no recorded lockfile (it was pulled, or built before openshell kept lockfiles): use `openshell sbom LOCK`, or build it again"
    )]
    NoLockfile(String),
    #[error("image `{reference}`: its stored lockfile: {source}")]
    Lockfile {
        reference: String,
        #[source]
        source: crate::lockfile::LockfileError,
    },
}

fn dir(store: &Store) -> PathBuf {
    store.root().join("images")
}

fn record_path(store: &Store, name: &str, tag: &str) -> PathBuf {
    dir(store).join(format!("{}.json", Digest::sha256(format!("{name}:{tag}").as_bytes()).hex()))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImagesError + '_ {
    move |source| ImagesError::Store(StoreError::Io { path: path.to_owned(), source })
}

/// Records a built image (its manifest and config go into the store too).
pub fn register(store: &Store, built: &Built) -> Result<ImageRecord, ImagesError> {
    let manifest = store.insert_bytes(built.image.manifest_bytes())?;
    let config = store.insert_bytes(built.image.config_bytes())?;
    let record = ImageRecord {
        name: built.reference.repository().to_owned(),
        tag: built.reference.tag().to_owned(),
        manifest: manifest.to_string(),
        config: config.to_string(),
        layers: built.layers.iter().map(|l| l.digest.to_string()).collect(),
        size: built.layers.iter().map(|l| l.size).sum(),
        uncompressed_size: built.layers.iter().map(|l| l.uncompressed_size).sum(),
        lockfile: Some(built.lockfile.to_string()),
    };
    self::record(store, &record)?;
    Ok(record)
}

/// Records an image whose manifest, config and layers are in the store already
/// (a built one through [`register`], a pulled one directly), replacing any record
/// of the same `name:tag`.
pub fn record(store: &Store, record: &ImageRecord) -> Result<(), ImagesError> {
    let d = dir(store);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let path = record_path(store, &record.name, &record.tag);
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(record)
        .map_err(|e| ImagesError::Corrupt { path: path.clone(), message: e.to_string() })?;
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Every recorded image, sorted by reference.
pub fn list(store: &Store) -> Result<Vec<ImageRecord>, ImagesError> {
    let d = dir(store);
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&d) else { return Ok(out) };
    for entry in rd.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let rec: ImageRecord = serde_json::from_slice(&bytes)
            .map_err(|e| ImagesError::Corrupt { path: path.clone(), message: e.to_string() })?;
        out.push(rec);
    }
    out.sort_by_key(ImageRecord::reference);
    Ok(out)
}

/// Finds an image by `name:tag`, `name` (tag `latest`), or manifest digest (full, or
/// an unambiguous hex prefix of at least 8 digits).
pub fn find(store: &Store, reference: &str) -> Result<ImageRecord, ImagesError> {
    let all = list(store)?;
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let is_digest = hex.len() >= 8 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let matches: Vec<&ImageRecord> = all
        .iter()
        .filter(|r| {
            let (name, tag) =
                reference.rsplit_once(':').filter(|(_, t)| !t.contains('/')).unwrap_or((reference, "latest"));
            (r.name == name && r.tag == tag) || (is_digest && r.manifest.trim_start_matches("sha256:").starts_with(hex))
        })
        .collect();
    match matches.as_slice() {
        [] => Err(ImagesError::NotFound(reference.to_owned())),
        [one] => Ok((*one).clone()),
        many => Err(ImagesError::Ambiguous {
            reference: reference.to_owned(),
            matches: many.iter().map(|r| r.reference()).collect(),
        }),
    }
}

/// The most recently built (registered) image named `name`, any tag.
pub fn newest(store: &Store, name: &str) -> Result<ImageRecord, ImagesError> {
    let mut best: Option<(std::time::SystemTime, ImageRecord)> = None;
    for rec in list(store)?.into_iter().filter(|r| r.name == name) {
        let path = record_path(store, &rec.name, &rec.tag);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(io(&path))?;
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, rec));
        }
    }
    best.map(|(_, rec)| rec).ok_or_else(|| ImagesError::NotFound(name.to_owned()))
}

/// Forgets an image (its blobs go at the next `store gc`).
pub fn remove(store: &Store, reference: &str) -> Result<ImageRecord, ImagesError> {
    let rec = find(store, reference)?;
    let path = record_path(store, &rec.name, &rec.tag);
    std::fs::remove_file(&path).map_err(io(&path))?;
    Ok(rec)
}

/// The stored manifest and config documents of an image (verified: a document
/// changed on disk after the build is refused by its digest), read as oci-spec types.
pub fn documents(store: &Store, rec: &ImageRecord) -> Result<(ImageManifest, ImageConfiguration), ImagesError> {
    Ok((document(store, &rec.manifest)?, document(store, &rec.config)?))
}

/// The documents of the image whose manifest has `manifest_digest` (its config
/// named by the manifest), both verified: how a gateway finds an image by digest
/// whatever name its store records it under.
pub fn documents_by_digest(
    store: &Store,
    manifest_digest: &str,
) -> Result<(ImageManifest, ImageConfiguration), ImagesError> {
    let manifest: ImageManifest = document(store, manifest_digest)?;
    let config = document(store, manifest.config().digest().as_ref())?;
    Ok((manifest, config))
}

fn document<T: serde::de::DeserializeOwned>(store: &Store, digest: &str) -> Result<T, ImagesError> {
    let d = record_digest(digest)?;
    let bytes = store.read_verified(&d)?;
    Ok(openshell_oci::parse_document(&store.blob_path(&d), &bytes)?)
}

fn record_digest(digest: &str) -> Result<Digest, ImagesError> {
    digest.parse().map_err(|_| ImagesError::Verify(format!("bad digest `{digest}` in the record")))
}

/// The image of a record, from its stored manifest and config bytes (verified), as
/// `openshell_oci::Image::from_documents` reads them back.
pub fn image(store: &Store, rec: &ImageRecord) -> Result<openshell_oci::Image, ImagesError> {
    let manifest = store.read_verified(&record_digest(&rec.manifest)?)?;
    let config = store.read_verified(&record_digest(&rec.config)?)?;
    Ok(openshell_oci::Image::from_documents(manifest, config)?)
}

/// The lockfile an image was built from (its stored text, verified and parsed).
pub fn lockfile(store: &Store, rec: &ImageRecord) -> Result<crate::lockfile::Lockfile, ImagesError> {
    let digest: Digest = rec
        .lockfile
        .as_deref()
        .ok_or_else(|| ImagesError::NoLockfile(rec.reference()))?
        .parse()
        .map_err(|_| ImagesError::Verify(format!("{}: bad lockfile digest in the record", rec.reference())))?;
    let bytes = store.read_verified(&digest)?;
    let text = String::from_utf8_lossy(&bytes);
    crate::lockfile::Lockfile::parse(&format!("lockfile of {}", rec.reference()), &text)
        .map_err(|source| ImagesError::Lockfile { reference: rec.reference(), source })
}

/// Re-hashes every blob of a recorded image.
pub fn verify(store: &Store, rec: &ImageRecord) -> Result<usize, ImagesError> {
    let blobs = rec.blobs();
    let mut failures = Vec::new();
    for d in &blobs {
        if let Err(e) = store.verify(d) {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        Ok(blobs.len())
    } else {
        Err(ImagesError::Verify(format!(
            "{}: {} blob(s) failed:\n{}",
            rec.reference(),
            failures.len(),
            failures.join("\n")
        )))
    }
}
