//! Reading and verifying OCI image layouts.
//!
//! `oci-layout`, `index.json`, manifests and configs are read as oci-spec documents
//! ([`OciLayout`], [`ImageIndex`], [`ImageManifest`], [`ImageConfiguration`]) through
//! [`parse_document`], whose errors name the file and the field. The descriptors the
//! verifier works from ([`Descriptor`]) are those documents' descriptors with the digest
//! parsed into the store's [`Digest`], which the hashing needs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType, OciLayout};
use openshell_store::{Algorithm, Digest, Hasher};
use serde::de::DeserializeOwned;

use crate::compress::{Compression, LayerDecoder};

/// Largest JSON blob (index, manifest, config) read.
pub const MAX_JSON_SIZE: u64 = 4 * 1024 * 1024;

/// An OCI content descriptor, its digest in the store's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `mediaType`.
    pub media_type: MediaType,
    /// `digest`.
    pub digest: Digest,
    /// `size`.
    pub size: u64,
    /// `annotations`, sorted.
    pub annotations: BTreeMap<String, String>,
}

/// One image of a layout, as named by `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutImage {
    /// The manifest's descriptor in `index.json`.
    pub manifest: Descriptor,
    /// The config's descriptor.
    pub config: Descriptor,
    /// The layers' descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// `rootfs.diff_ids` of the config.
    pub diff_ids: Vec<Digest>,
    /// The manifest.
    pub manifest_doc: ImageManifest,
    /// The config.
    pub config_doc: ImageConfiguration,
}

/// An OCI image layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The directory.
    pub dir: PathBuf,
    /// The images `index.json` names, in its order.
    pub images: Vec<LayoutImage>,
}

/// What [`verify_layout`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Images checked.
    pub images: usize,
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Compressed bytes read.
    pub bytes: u64,
    /// Uncompressed layer bytes hashed.
    pub uncompressed_bytes: u64,
}

/// Errors reading or verifying a layout; each names the file or blob.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A JSON file or blob that does not read as its OCI document: not JSON, a
    /// missing field, a field of the wrong type or an invalid value.
    #[error("{}: {}: {message}", path.display(), if field.is_empty() { "the document" } else { field.as_str() })]
    Field {
        /// The file.
        path: PathBuf,
        /// Where in the document (`manifests[0].digest`), empty for the document itself.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A JSON file or blob whose fields disagree with each other or with the layout.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Something this reader does not handle (nested indexes, zstd layers, ...).
    #[error("{}: {message}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What.
        message: String,
    },
    /// A blob's content does not hash to its name.
    #[error("blob {} ({role}) is corrupt: its content hashes to {actual}", path.display())]
    Digest {
        /// The blob file.
        path: PathBuf,
        /// What the blob is ("manifest", "config", "layer 2").
        role: String,
        /// Its name.
        expected: Digest,
        /// What it hashes to.
        actual: Digest,
    },
    /// A blob's size differs from its descriptor.
    #[error("blob {} ({role}): size {actual}, its descriptor says {expected}", path.display())]
    Size {
        /// The blob file.
        path: PathBuf,
        /// What the blob is.
        role: String,
        /// Size in the descriptor.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A layer's uncompressed content does not match the config's diff_id.
    #[error("layer {index} ({}): uncompressed content hashes to {actual}, the config's diff_id is {expected}", path.display())]
    DiffId {
        /// The layer's position, bottom first.
        index: usize,
        /// The blob file.
        path: PathBuf,
        /// `rootfs.diff_ids[index]`.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// A layer that does not decompress.
    #[error("layer {index} ({}): cannot decompress: {source}", path.display())]
    Decompress {
        /// The layer's position.
        index: usize,
        /// The blob file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn invalid(path: &Path, message: impl Into<String>) -> LayoutError {
    LayoutError::Invalid { path: path.to_owned(), message: message.into() }
}

/// A layout on disk to read: a directory, or a tar of one (such as the archive
/// [`crate::write_archive`] writes) unpacked into a temporary directory that lives
/// as long as this value.
#[derive(Debug)]
pub struct LayoutDir {
    path: PathBuf,
    _unpacked: Option<tempfile::TempDir>,
}

impl LayoutDir {
    /// Opens `path`: a directory as it is, a file as a tar unpacked into a temporary
    /// directory (under `$TMPDIR`).
    pub fn open(path: &Path) -> Result<LayoutDir, LayoutError> {
        if path.is_dir() {
            return Ok(LayoutDir { path: path.to_owned(), _unpacked: None });
        }
        let io = |source| LayoutError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        let dir = tempfile::tempdir().map_err(|source| LayoutError::Io { path: std::env::temp_dir(), source })?;
        tar::Archive::new(BufReader::new(file))
            .unpack(dir.path())
            .map_err(|e| invalid(path, format!("neither an OCI layout directory nor a tar archive of one: {e}")))?;
        Ok(LayoutDir { path: dir.path().to_owned(), _unpacked: Some(dir) })
    }

    /// The directory holding the layout.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Path of a blob in a layout.
pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join(digest.algorithm().name()).join(digest.hex())
}

fn read_limited(path: &Path) -> Result<Vec<u8>, LayoutError> {
    let file = File::open(path).map_err(|source| LayoutError::Io { path: path.to_owned(), source })?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| LayoutError::Io { path: path.to_owned(), source })?;
    if bytes.len() as u64 > MAX_JSON_SIZE {
        return Err(invalid(path, format!("larger than {MAX_JSON_SIZE} bytes")));
    }
    Ok(bytes)
}

/// Parses `bytes` (the content of `path`) as the oci-spec document `T`. An error names
/// the field it is in (a path like `manifests[0].size`) and what is wrong there.
pub fn parse_document<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, LayoutError> {
    let field_err = |field: String, message: String| LayoutError::Field { path: path.to_owned(), field, message };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let doc: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = if e.path().iter().next().is_none() { String::new() } else { e.path().to_string() };
        field_err(field, e.into_inner().to_string())
    })?;
    de.end().map_err(|e| field_err(String::new(), e.to_string()))?;
    Ok(doc)
}

fn read_document<T: DeserializeOwned>(path: &Path) -> Result<T, LayoutError> {
    parse_document(path, &read_limited(path)?)
}

/// Reads a JSON blob, checks it against its descriptor, then parses it.
fn read_blob_document<T: DeserializeOwned>(dir: &Path, desc: &Descriptor, role: &str) -> Result<T, LayoutError> {
    let path = blob_path(dir, &desc.digest);
    let bytes = read_limited(&path)?;
    let actual = hash_bytes(desc.digest.algorithm(), &bytes);
    if actual != desc.digest {
        return Err(LayoutError::Digest { path, role: role.to_owned(), expected: desc.digest.clone(), actual });
    }
    if bytes.len() as u64 != desc.size {
        return Err(LayoutError::Size { path, role: role.to_owned(), expected: desc.size, actual: bytes.len() as u64 });
    }
    parse_document(&path, &bytes)
}

pub(crate) fn hash_bytes(algorithm: Algorithm, bytes: &[u8]) -> Digest {
    let mut h = algorithm.hasher();
    h.update(bytes);
    h.finish()
}

/// A store digest from an OCI digest string; the error names `field` of `path`.
fn store_digest(text: &str, path: &Path, field: &str) -> Result<Digest, LayoutError> {
    text.parse::<Digest>().map_err(|e| LayoutError::Field {
        path: path.to_owned(),
        field: field.to_owned(),
        message: e.to_string(),
    })
}

pub(crate) fn descriptor(d: &oci_spec::image::Descriptor, path: &Path, field: &str) -> Result<Descriptor, LayoutError> {
    Ok(Descriptor {
        media_type: d.media_type().clone(),
        digest: store_digest(d.digest().as_ref(), path, &format!("{field}.digest"))?,
        size: d.size(),
        annotations: d.annotations().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}

/// Reads `oci-layout`, `index.json`, and each image's manifest and config (checking
/// their digests and sizes). Layer blobs are not read; see [`verify_layout`].
pub fn read_layout(dir: &Path) -> Result<Layout, LayoutError> {
    let marker = dir.join("oci-layout");
    let layout: OciLayout = read_document(&marker)?;
    if layout.image_layout_version() != "1.0.0" {
        let message = format!("imageLayoutVersion {}", layout.image_layout_version());
        return Err(LayoutError::Unsupported { path: marker, message });
    }
    let index_path = dir.join("index.json");
    let index: ImageIndex = read_document(&index_path)?;
    let images = index
        .manifests()
        .iter()
        .enumerate()
        .map(|(i, m)| read_image(dir, &index_path, &descriptor(m, &index_path, &format!("manifests[{i}]"))?, i))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Layout { dir: dir.to_owned(), images })
}

/// The image of `index.json`'s `manifests[i]`: its manifest, config and layers.
/// The image `desc` names, or `None` for a referrer (an SBOM attached beside an
/// image is no image of the layout; its blobs are checked here).
fn read_image(dir: &Path, index_path: &Path, desc: &Descriptor, i: usize) -> Result<Option<LayoutImage>, LayoutError> {
    let unsupported = |path: &Path, message: String| LayoutError::Unsupported { path: path.to_owned(), message };
    match desc.media_type {
        MediaType::ImageManifest => {}
        MediaType::ImageIndex => {
            let message = format!("manifests[{i}] is a nested index (multi-platform images are not read)");
            return Err(unsupported(index_path, message));
        }
        ref other => return Err(unsupported(index_path, format!("manifests[{i}] has media type {other}"))),
    }
    let mpath = blob_path(dir, &desc.digest);
    let manifest_doc: ImageManifest = read_blob_document(dir, desc, "manifest")?;
    if crate::referrer::is_referrer(&manifest_doc) {
        crate::referrer::verify_blobs(dir, &manifest_doc, &mpath)?;
        return Ok(None);
    }
    let config = descriptor(manifest_doc.config(), &mpath, "config")?;
    let layers = manifest_doc
        .layers()
        .iter()
        .enumerate()
        .map(|(j, l)| descriptor(l, &mpath, &format!("layers[{j}]")))
        .collect::<Result<Vec<_>, _>>()?;
    if config.media_type != MediaType::ImageConfig {
        return Err(unsupported(&mpath, format!("config media type {}", config.media_type)));
    }
    let cpath = blob_path(dir, &config.digest);
    let config_doc: ImageConfiguration = read_blob_document(dir, &config, "config")?;
    let diff_ids = config_doc
        .rootfs()
        .diff_ids()
        .iter()
        .enumerate()
        .map(|(k, d)| store_digest(d, &cpath, &format!("rootfs.diff_ids[{k}]")))
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != layers.len() {
        return Err(invalid(
            &cpath,
            format!("{} diff_ids for {} layers in manifest {}", diff_ids.len(), layers.len(), desc.digest),
        ));
    }
    Ok(Some(LayoutImage { manifest: desc.clone(), config, layers, diff_ids, manifest_doc, config_doc }))
}

/// A reader that hashes and counts what is read through it.
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Hasher,
    pub(crate) count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A reader that yields the uncompressed content of a layer blob, by media type.
pub(crate) fn decompressor<'r, R: io::BufRead + 'r>(
    media_type: &MediaType,
    raw: R,
    path: &Path,
) -> Result<Box<dyn Read + 'r>, LayoutError> {
    if matches!(media_type, MediaType::ImageLayer | MediaType::ImageLayerNonDistributable) {
        return Ok(Box::new(raw));
    }
    let unsupported =
        || LayoutError::Unsupported { path: path.to_owned(), message: format!("layer media type {media_type}") };
    let compression = Compression::of_media_type(media_type.as_ref()).ok_or_else(unsupported)?;
    let decoder =
        LayerDecoder::new(compression, raw).map_err(|source| LayoutError::Io { path: path.to_owned(), source })?;
    Ok(Box::new(decoder))
}

struct LayerCheck {
    bytes: u64,
    uncompressed: u64,
}

fn verify_layer(dir: &Path, index: usize, desc: &Descriptor, diff_id: &Digest) -> Result<LayerCheck, LayoutError> {
    let path = blob_path(dir, &desc.digest);
    let role = format!("layer {index}");
    let file = File::open(&path).map_err(|source| LayoutError::Io { path: path.clone(), source })?;
    let mut raw = HashingReader { inner: file, hasher: desc.digest.algorithm().hasher(), count: 0 };
    let (decompressed, uncompressed) = {
        let buffered = BufReader::with_capacity(256 * 1024, &mut raw);
        let mut content = decompressor(&desc.media_type, buffered, &path)?;
        let mut plain = diff_id.algorithm().hasher();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let r = loop {
            match content.read(&mut buf) {
                Ok(0) => break Ok(plain.finish()),
                Ok(n) => {
                    plain.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        (r, total)
    };
    // Hash whatever the decompressor did not consume (or could not, on an error), so
    // that a corrupt blob is reported as such rather than as a decompression failure.
    io::copy(&mut raw, &mut io::sink()).map_err(|source| LayoutError::Io { path: path.clone(), source })?;
    let actual = raw.hasher.finish();
    if actual != desc.digest {
        return Err(LayoutError::Digest { path, role, expected: desc.digest.clone(), actual });
    }
    if raw.count != desc.size {
        return Err(LayoutError::Size { path, role, expected: desc.size, actual: raw.count });
    }
    let plain = decompressed.map_err(|source| LayoutError::Decompress { index, path: path.clone(), source })?;
    if plain != *diff_id {
        return Err(LayoutError::DiffId { index, path, expected: diff_id.clone(), actual: plain });
    }
    Ok(LayerCheck { bytes: raw.count, uncompressed })
}

/// Re-hashes every blob of every image in the layout: manifests and configs against
/// their descriptors, layers against their digests and sizes, and each layer's
/// uncompressed content against the config's diff_id. Layers are checked in parallel;
/// the error reported is the first in layout order.
pub fn verify_layout(dir: &Path) -> Result<VerifyReport, LayoutError> {
    let layout = read_layout(dir)?;
    let mut report = VerifyReport { images: layout.images.len(), ..VerifyReport::default() };
    let mut jobs: Vec<(usize, &Descriptor, &Digest)> = Vec::new();
    for image in &layout.images {
        report.blobs += 2;
        report.bytes += image.manifest.size + image.config.size;
        for (i, (l, d)) in image.layers.iter().zip(&image.diff_ids).enumerate() {
            jobs.push((i, l, d));
        }
    }
    let workers = thread::available_parallelism().map_or(2, |n| n.get()).min(jobs.len()).max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<LayerCheck, LayoutError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(i, desc, diff_id)) = jobs.get(j) else { break };
                    let r = verify_layer(dir, i, desc, diff_id);
                    let failed = r.is_err();
                    if let Ok(mut res) = results.lock() {
                        res[j] = Some(r);
                    }
                    if failed {
                        // Later jobs cannot be reported before this one; stop taking new ones.
                        next.fetch_max(jobs.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    for r in results.into_iter().flatten() {
        let check = r?;
        report.blobs += 1;
        report.bytes += check.bytes;
        report.uncompressed_bytes += check.uncompressed;
    }
    Ok(report)
}
