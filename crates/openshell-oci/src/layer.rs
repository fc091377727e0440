//! Deterministic layer writing: a [`LayerPlan`] to a tar (see [`crate::tarfmt`] for the
//! header format) and its gzip or zstd, streamed into the store.
//!
//! Three stages run on their own threads, joined by bounded pipes: the tar writer
//! (which also hashes the diff_id), the compressor, and the store insertion
//! (which hashes and fsyncs the blob). Nothing holds a whole layer in memory.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::FileExt;
use std::thread;

use openshell_store::{Algorithm, Digest, Hasher, Store, StoreError};

use crate::compress::{Compression, CompressorChanged, LayerEncoder, check_compressor};
use crate::partition::{ItemKind, LayerPlan};
use crate::pipeline;
use crate::tarfmt::{Kind, Meta, TarWriter};
use crate::tree::ContentRef;

/// Media type of the layers written by default (gzip).
pub const LAYER_MEDIA_TYPE: &str = crate::compress::GZIP_MEDIA_TYPE;

/// Layer writing settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerOptions {
    /// The one mtime of every entry: 0, or a `SOURCE_DATE_EPOCH` recorded in the lockfile.
    pub mtime: u64,
    /// gzip (the default) or zstd. The tar, and so the diff_id, is the same for both.
    pub compression: Compression,
}

/// A layer written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The origin the layer holds (`None` for a whole-tree layer).
    pub origin: Option<String>,
    /// sha256 of the uncompressed tar: the layer's identity.
    pub diff_id: Digest,
    /// sha256 of the compressed blob, as stored.
    pub digest: Digest,
    /// Compressed size in bytes.
    pub size: u64,
    /// Uncompressed (tar) size in bytes.
    pub uncompressed_size: u64,
    /// Media type of the blob.
    pub media_type: &'static str,
}

/// Errors writing a layer; each names the entry or blob involved.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading a file's content from the store failed.
    #[error("{path}: reading content from {digest}: {source}")]
    Content {
        /// The entry.
        path: String,
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The store does not have a blob a file refers to, or it changed on disk.
    #[error("{path}: {source}")]
    MissingContent {
        /// The entry.
        path: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// A blob range extends past the end of the blob.
    #[error("{path}: content {digest} @{offset}+{len} extends past the end of the blob")]
    ShortContent {
        /// The entry.
        path: String,
        /// The blob.
        digest: Digest,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// A hard link whose target is not an earlier file of the same layer.
    #[error("{path}: hard link to `{to}`, which is not an earlier file of this layer")]
    LinkOutsideLayer {
        /// The link.
        path: String,
        /// Its target.
        to: String,
    },
    /// Plan entries out of order or duplicated.
    #[error("{path}: entries are not sorted by path bytes (after `{previous}`) or are duplicated")]
    Unsorted {
        /// The entry.
        path: String,
        /// The entry before it.
        previous: String,
    },
    /// An entry whose parent directory is not in the layer before it.
    #[error("{path}: parent directory `{parent}` is not in the layer before it")]
    MissingParent {
        /// The entry.
        path: String,
        /// The missing parent.
        parent: String,
    },
    /// Writing the tar or compressed stream failed.
    #[error("writing layer{}: {source}", origin.as_deref().map(|o| format!(" `{o}`")).unwrap_or_default())]
    Write {
        /// The layer's origin.
        origin: Option<String>,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Storing the compressed blob failed.
    #[error("storing layer{}: {source}", origin.as_deref().map(|o| format!(" `{o}`")).unwrap_or_default())]
    Store {
        /// The layer's origin.
        origin: Option<String>,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The compressor does not produce the recorded output.
    #[error(transparent)]
    Compressor(#[from] CompressorChanged),
}

impl LayerError {
    fn is_broken_pipe(&self) -> bool {
        matches!(self, LayerError::Write { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Hashes and counts what passes through.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Hasher,
    pub(crate) count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The last blob opened, kept because consecutive files often come from one archive.
struct BlobCache {
    current: Option<(Digest, File, u64)>,
}

const COPY_BUF: usize = 256 * 1024;

impl BlobCache {
    fn file(&mut self, store: &Store, path: &str, digest: &Digest) -> Result<(&File, u64), LayerError> {
        let current = match self.current.take() {
            Some(c) if c.0 == *digest => c,
            _ => {
                let file = store
                    .open_ranges(digest)
                    .map_err(|source| LayerError::MissingContent { path: path.to_owned(), source })?;
                let size = file
                    .metadata()
                    .map_err(|source| LayerError::Content { path: path.to_owned(), digest: digest.clone(), source })?
                    .len();
                (digest.clone(), file, size)
            }
        };
        let (_, file, size) = self.current.insert(current);
        Ok((file, *size))
    }
}

fn write_content<W: Write>(
    tar: &mut TarWriter<W>,
    store: &Store,
    cache: &mut BlobCache,
    buf: &mut [u8],
    path: &str,
    content: &ContentRef,
    origin: &Option<String>,
) -> Result<(), LayerError> {
    let werr = |source| LayerError::Write { origin: origin.clone(), source };
    match content {
        ContentRef::Bytes(b) => tar.data(b).map_err(werr),
        ContentRef::Blob { digest, offset, len } => {
            let (file, size) = cache.file(store, path, digest)?;
            if offset.checked_add(*len).is_none_or(|end| end > size) {
                return Err(LayerError::ShortContent {
                    path: path.to_owned(),
                    digest: digest.clone(),
                    offset: *offset,
                    len: *len,
                });
            }
            let mut pos = *offset;
            let mut left = *len;
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match file.read_at(&mut buf[..want], pos) {
                    Ok(0) => {
                        return Err(LayerError::ShortContent {
                            path: path.to_owned(),
                            digest: digest.clone(),
                            offset: *offset,
                            len: *len,
                        });
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(LayerError::Content { path: path.to_owned(), digest: digest.clone(), source });
                    }
                };
                tar.data(&buf[..n]).map_err(werr)?;
                pos += n as u64;
                left -= n as u64;
            }
            Ok(())
        }
    }
}

/// Writes the plan as an uncompressed tar to `out`; returns the diff_id and tar size.
/// Checks that entries are sorted and unique, that every parent precedes its children
/// and that hard links point at earlier files of the same layer.
pub fn write_tar(
    store: &Store,
    plan: &LayerPlan<'_>,
    opts: &LayerOptions,
    out: impl Write,
) -> Result<(Digest, u64), LayerError> {
    let origin = plan.origin.as_ref().map(|o| o.as_str().to_owned());
    let werr = |source| LayerError::Write { origin: origin.clone(), source };
    let mut hashing = HashingWriter { inner: out, hasher: Algorithm::Sha256.hasher(), count: 0 };
    let mut tar = TarWriter::new(&mut hashing);
    let mut cache = BlobCache { current: None };
    let mut buf = vec![0u8; COPY_BUF];
    let mut dirs: BTreeSet<&str> = BTreeSet::new();
    let mut files: BTreeSet<&str> = BTreeSet::new();
    let mut previous: Option<&str> = None;
    for item in &plan.items {
        let path = item.path;
        if let Some(prev) = previous
            && prev.as_bytes() >= path.as_bytes()
        {
            return Err(LayerError::Unsorted { path: path.to_owned(), previous: prev.to_owned() });
        }
        previous = Some(path);
        if let Some(parent) = crate::tree::parent_of(path)
            && !dirs.contains(parent)
        {
            return Err(LayerError::MissingParent { path: path.to_owned(), parent: parent.to_owned() });
        }
        let meta = |mode: u32| Meta { mode, uid: u64::from(item.uid), gid: u64::from(item.gid), mtime: opts.mtime };
        match &item.kind {
            ItemKind::Dir { mode } => {
                dirs.insert(path);
                tar.header(path, Kind::Dir, &meta(*mode), 0, "").map_err(werr)?;
            }
            ItemKind::File { mode, content } => {
                files.insert(path);
                let size = content.len();
                tar.header(path, Kind::File, &meta(*mode), size, "").map_err(werr)?;
                write_content(&mut tar, store, &mut cache, &mut buf, path, content, &origin)?;
                tar.pad(size).map_err(werr)?;
            }
            ItemKind::Symlink { target } => {
                tar.header(path, Kind::Symlink, &meta(0o777), 0, target).map_err(werr)?;
            }
            ItemKind::Hardlink { mode, to } => {
                if !files.contains(to) {
                    return Err(LayerError::LinkOutsideLayer { path: path.to_owned(), to: (*to).to_owned() });
                }
                tar.header(path, Kind::Hardlink, &meta(*mode), 0, to).map_err(werr)?;
            }
        }
    }
    tar.finish().map_err(werr)?;
    Ok((hashing.hasher.finish(), hashing.count))
}

/// Writes the plan as a compressed layer (`opts.compression`) into the store.
pub fn write_layer(store: &Store, plan: &LayerPlan<'_>, opts: &LayerOptions) -> Result<LayerInfo, LayerError> {
    check_compressor(opts.compression)?;
    let origin = plan.origin.as_ref().map(|o| o.as_str().to_owned());
    let werr = |source| LayerError::Write { origin: origin.clone(), source };
    let (tar_out, mut tar_in) = pipeline::pipe();
    let (gz_out, mut gz_in) = pipeline::pipe();
    let (tar_result, gz_result, store_result) = thread::scope(|s| {
        let tar_thread = s.spawn(move || {
            let mut tar_out = tar_out;
            let r = write_tar(store, plan, opts, &mut tar_out)?;
            tar_out.finish().map_err(werr)?;
            Ok::<_, LayerError>(r)
        });
        let gz_thread = s.spawn(move || {
            let mut gz = LayerEncoder::new(opts.compression, gz_out)?;
            loop {
                let chunk = tar_in.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                gz.write_all(chunk)?;
                tar_in.consume(n);
            }
            gz.finish()?.finish()
        });
        let stored = store.insert_reader(Algorithm::Sha256, None, &mut gz_in);
        let size = gz_in.total();
        drop(gz_in);
        let tar_result = tar_thread.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let gz_result = gz_thread.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (tar_result, gz_result, stored.map(|d| (d, size)))
    });
    // Report the root cause: a stage that failed on its own, not one that saw its
    // neighbour stop.
    let tar_result = match tar_result {
        Err(e) if !e.is_broken_pipe() => return Err(e),
        r => r,
    };
    let gz_result = match gz_result {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(werr(e)),
        r => r,
    };
    let (digest, size) = store_result.map_err(|source| LayerError::Store { origin: origin.clone(), source })?;
    let (diff_id, uncompressed_size) = tar_result?;
    gz_result.map_err(werr)?;
    Ok(LayerInfo { origin, diff_id, digest, size, uncompressed_size, media_type: opts.compression.media_type() })
}
