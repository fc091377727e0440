//! Reading and verifying OCI image layouts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use openshell_store::{Algorithm, Digest, Hasher};

use crate::image::{CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::json::{self, Value};

/// Largest JSON blob (index, manifest, config) read.
pub const MAX_JSON_SIZE: u64 = 4 * 1024 * 1024;

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `mediaType`.
    pub media_type: String,
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
    /// The parsed manifest.
    pub manifest_json: Value,
    /// The parsed config.
    pub config_json: Value,
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
    /// A JSON file or blob is malformed or lacks a field.
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

fn read_json_file(path: &Path) -> Result<Value, LayoutError> {
    let bytes = read_limited(path)?;
    json::parse(&bytes).map_err(|e| invalid(path, e.to_string()))
}

/// Reads a JSON blob, checks it against its descriptor, then parses it.
fn read_json_blob(dir: &Path, desc: &Descriptor, role: &str) -> Result<Value, LayoutError> {
    let path = blob_path(dir, &desc.digest);
    let bytes = read_limited(&path)?;
    let actual = hash_bytes(desc.digest.algorithm(), &bytes);
    if actual != desc.digest {
        return Err(LayoutError::Digest { path, role: role.to_owned(), expected: desc.digest.clone(), actual });
    }
    if bytes.len() as u64 != desc.size {
        return Err(LayoutError::Size { path, role: role.to_owned(), expected: desc.size, actual: bytes.len() as u64 });
    }
    json::parse(&bytes).map_err(|e| invalid(&path, e.to_string()))
}

fn hash_bytes(algorithm: Algorithm, bytes: &[u8]) -> Digest {
    let mut h = algorithm.hasher();
    h.update(bytes);
    h.finish()
}

fn field<'v>(v: &'v Value, key: &str, path: &Path) -> Result<&'v Value, LayoutError> {
    v.get(key).ok_or_else(|| invalid(path, format!("missing `{key}`")))
}

fn parse_descriptor(v: &Value, path: &Path, what: &str) -> Result<Descriptor, LayoutError> {
    let media_type = field(v, "mediaType", path)?
        .as_str()
        .ok_or_else(|| invalid(path, format!("{what}: `mediaType` is not a string")))?
        .to_owned();
    let digest_str =
        field(v, "digest", path)?.as_str().ok_or_else(|| invalid(path, format!("{what}: `digest` is not a string")))?;
    let digest = digest_str.parse::<Digest>().map_err(|e| invalid(path, format!("{what}: {e}")))?;
    let size = field(v, "size", path)?
        .as_i64()
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| invalid(path, format!("{what}: `size` is not a non-negative integer")))?;
    let mut annotations = BTreeMap::new();
    if let Some(a) = v.get("annotations") {
        let obj = a.as_object().ok_or_else(|| invalid(path, format!("{what}: `annotations` is not an object")))?;
        for (k, val) in obj {
            let s = val.as_str().ok_or_else(|| invalid(path, format!("{what}: annotation `{k}` is not a string")))?;
            annotations.insert(k.clone(), s.to_owned());
        }
    }
    Ok(Descriptor { media_type, digest, size, annotations })
}

/// Reads `oci-layout`, `index.json`, and each image's manifest and config (checking
/// their digests and sizes). Layer blobs are not read; see [`verify_layout`].
pub fn read_layout(dir: &Path) -> Result<Layout, LayoutError> {
    let marker = dir.join("oci-layout");
    let layout = read_json_file(&marker)?;
    match layout.get("imageLayoutVersion").and_then(Value::as_str) {
        Some("1.0.0") => {}
        Some(v) => {
            return Err(LayoutError::Unsupported { path: marker, message: format!("imageLayoutVersion {v}") });
        }
        None => return Err(invalid(&marker, "missing `imageLayoutVersion`")),
    }
    let index_path = dir.join("index.json");
    let index = read_json_file(&index_path)?;
    let manifests = field(&index, "manifests", &index_path)?
        .as_array()
        .ok_or_else(|| invalid(&index_path, "`manifests` is not an array"))?;
    let mut images = Vec::with_capacity(manifests.len());
    for (i, m) in manifests.iter().enumerate() {
        let desc = parse_descriptor(m, &index_path, &format!("manifests[{i}]"))?;
        if desc.media_type == INDEX_MEDIA_TYPE {
            return Err(LayoutError::Unsupported {
                path: index_path,
                message: format!("manifests[{i}] is a nested index (multi-platform images are not read)"),
            });
        }
        if desc.media_type != MANIFEST_MEDIA_TYPE {
            return Err(LayoutError::Unsupported {
                path: index_path,
                message: format!("manifests[{i}] has media type {}", desc.media_type),
            });
        }
        let mpath = blob_path(dir, &desc.digest);
        let manifest_json = read_json_blob(dir, &desc, "manifest")?;
        let config = parse_descriptor(field(&manifest_json, "config", &mpath)?, &mpath, "config")?;
        let layers = field(&manifest_json, "layers", &mpath)?
            .as_array()
            .ok_or_else(|| invalid(&mpath, "`layers` is not an array"))?
            .iter()
            .enumerate()
            .map(|(j, l)| parse_descriptor(l, &mpath, &format!("layers[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let cpath = blob_path(dir, &config.digest);
        if config.media_type != CONFIG_MEDIA_TYPE {
            return Err(LayoutError::Unsupported {
                path: mpath,
                message: format!("config media type {}", config.media_type),
            });
        }
        let config_json = read_json_blob(dir, &config, "config")?;
        let diff_ids = field(&config_json, "rootfs", &cpath)
            .and_then(|r| field(r, "diff_ids", &cpath))?
            .as_array()
            .ok_or_else(|| invalid(&cpath, "`rootfs.diff_ids` is not an array"))?
            .iter()
            .map(|d| {
                d.as_str()
                    .ok_or_else(|| invalid(&cpath, "a diff_id is not a string"))?
                    .parse::<Digest>()
                    .map_err(|e| invalid(&cpath, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if diff_ids.len() != layers.len() {
            return Err(invalid(
                &cpath,
                format!("{} diff_ids for {} layers in manifest {}", diff_ids.len(), layers.len(), desc.digest),
            ));
        }
        images.push(LayoutImage { manifest: desc, config, layers, diff_ids, manifest_json, config_json });
    }
    Ok(Layout { dir: dir.to_owned(), images })
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
    media_type: &str,
    raw: R,
    path: &Path,
) -> Result<Box<dyn Read + 'r>, LayoutError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Ok(Box::new(flate2::bufread::MultiGzDecoder::new(raw)))
        }
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Ok(Box::new(raw))
        }
        other => Err(LayoutError::Unsupported { path: path.to_owned(), message: format!("layer media type {other}") }),
    }
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
