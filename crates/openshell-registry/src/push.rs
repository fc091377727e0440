//! Push: an image of the store, an OCI layout directory, or an archive `build` wrote,
//! to a registry under a tag.
//!
//! Each blob is looked up first (HEAD) and only sent when the registry lacks it, so
//! a push that was interrupted resumes where it stopped: the blobs it completed are
//! not sent again. A blob is streamed from disk: a thread reads it in chunks into a
//! queue of one chunk, and `oci-client`'s `push_blob_stream` sends each chunk as one
//! PATCH of the upload session, then the closing PUT names the digest. Memory stays
//! at a few chunks whatever the layer's size. The reading side hashes what it reads
//! (a store blob through the store's verified reader) and fails the stream before its
//! end when the content is not the blob's digest, so the closing PUT is never sent
//! for altered content.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};
use openshell_oci::LayoutDir;
use openshell_oci::layout::{blob_path, read_layout};
use openshell_store::{Digest, Hasher, Store};
use serde::Serialize;

use crate::connect::{ConnectOptions, Session, parse_reference};
use crate::{RegistryError, block_on};

/// What to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushSource {
    /// An image recorded in the store (`name[:tag]` or a manifest digest prefix).
    Image(String),
    /// An OCI layout directory, or a tar `build --archive` wrote (OCI layout and
    /// `docker load` archive in one).
    Path(PathBuf),
}

impl PushSource {
    /// A path when one exists there, else an image reference.
    pub fn from_arg(arg: &str) -> PushSource {
        let path = Path::new(arg);
        if path.exists() { PushSource::Path(path.to_owned()) } else { PushSource::Image(arg.to_owned()) }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// The reference pushed to.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
    /// Blobs sent.
    pub uploaded: usize,
    /// Blobs the registry had already.
    pub skipped: usize,
    /// Bytes sent (blobs, not the manifest).
    pub bytes: u64,
}

/// Bytes per PATCH (and per queued chunk).
const CHUNK: usize = 4 * 1024 * 1024;

enum BlobFile {
    /// In the store, read through its verified reader.
    Store,
    /// A file of a layout, hashed as it is read.
    Path(PathBuf),
}

struct LocalBlob {
    digest: Digest,
    size: u64,
    role: String,
    file: BlobFile,
}

struct LocalImage {
    manifest: Vec<u8>,
    manifest_digest: Digest,
    media_type: String,
    blobs: Vec<LocalBlob>,
    /// The layout pushed from (an archive's unpacked copy is removed when the push ends).
    _layout: Option<LayoutDir>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.to_owned(), source }
}

fn media_type_of(manifest: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| openshell_oci::image::MANIFEST_MEDIA_TYPE.to_owned())
}

fn from_store(store: &Store, name: &str) -> Result<LocalImage, RegistryError> {
    let rec = openshell_build::images::find(store, name)?;
    let parse = |d: &str| {
        d.parse::<Digest>().map_err(|e| RegistryError::Source {
            path: store.root().join("images"),
            message: format!("image {}: bad digest `{d}`: {e}", rec.reference()),
        })
    };
    let manifest_digest = parse(&rec.manifest)?;
    let manifest = store.read_verified(&manifest_digest)?;
    let mut blobs = Vec::new();
    for (i, layer) in rec.layers.iter().enumerate() {
        let digest = parse(layer)?;
        blobs.push(LocalBlob { size: store.size(&digest)?, digest, role: format!("layer {i}"), file: BlobFile::Store });
    }
    let config = parse(&rec.config)?;
    blobs.push(LocalBlob { size: store.size(&config)?, digest: config, role: "config".into(), file: BlobFile::Store });
    Ok(LocalImage { media_type: media_type_of(&manifest), manifest, manifest_digest, blobs, _layout: None })
}

fn from_path(path: &Path) -> Result<LocalImage, RegistryError> {
    let source_err =
        |e: openshell_oci::LayoutError| RegistryError::Source { path: path.to_owned(), message: e.to_string() };
    let opened = LayoutDir::open(path).map_err(source_err)?;
    let dir = opened.path();
    let layout = read_layout(dir).map_err(source_err)?;
    let [image] = layout.images.as_slice() else {
        return Err(RegistryError::Source {
            path: path.to_owned(),
            message: format!("holds {} images; push needs exactly one", layout.images.len()),
        });
    };
    let mpath = blob_path(dir, &image.manifest.digest);
    let manifest = std::fs::read(&mpath).map_err(io_err(&mpath))?;
    let blob = |d: &openshell_oci::layout::Descriptor, role: String| LocalBlob {
        digest: d.digest.clone(),
        size: d.size,
        role,
        file: BlobFile::Path(blob_path(dir, &d.digest)),
    };
    let mut blobs: Vec<LocalBlob> =
        image.layers.iter().enumerate().map(|(i, l)| blob(l, format!("layer {i}"))).collect();
    blobs.push(blob(&image.config, "config".into()));
    Ok(LocalImage {
        media_type: image.manifest.media_type.to_string(),
        manifest_digest: image.manifest.digest.clone(),
        manifest,
        blobs,
        _layout: Some(opened),
    })
}

/// Pushes `source` to `reference` (`host[:port]/repository[:tag]`).
pub fn push(
    store: &Store,
    source: &PushSource,
    reference: &str,
    opts: &ConnectOptions,
) -> Result<PushReport, RegistryError> {
    let r = parse_reference(reference)?;
    if r.digest().is_some() {
        return Err(RegistryError::Reference {
            reference: reference.to_owned(),
            reason: "a push names a tag, not a digest".into(),
        });
    }
    let image = match source {
        PushSource::Image(name) => from_store(store, name)?,
        PushSource::Path(path) => from_path(path)?,
    };
    block_on(push_image(store, &image, &r, opts))
}

async fn push_image(
    store: &Store,
    image: &LocalImage,
    r: &Reference,
    opts: &ConnectOptions,
) -> Result<PushReport, RegistryError> {
    let session = Session::open(r, opts, RegistryOperation::Push).await?;
    let mut report = PushReport {
        reference: r.whole(),
        manifest: image.manifest_digest.to_string(),
        uploaded: 0,
        skipped: 0,
        bytes: 0,
    };
    for blob in &image.blobs {
        let digest = blob.digest.to_string();
        let there = session
            .client
            .blob_exists(r, &digest)
            .await
            .map_err(|e| session.error(&format!("checking {} {digest}", blob.role), e))?;
        if there {
            tracing::info!(%digest, role = %blob.role, "already in the registry");
            report.skipped += 1;
            continue;
        }
        tracing::info!(%digest, role = %blob.role, size = blob.size, "uploading");
        upload(&session, r, store, blob).await?;
        report.uploaded += 1;
        report.bytes += blob.size;
    }
    let media_type = image.media_type.parse().map_err(|_| RegistryError::Unsupported {
        registry: session.registry.clone(),
        role: "manifest".into(),
        digest: report.manifest.clone(),
        message: format!("media type `{}` is not a valid header value", image.media_type),
    })?;
    session
        .client
        .push_manifest_raw(r, image.manifest.clone(), media_type)
        .await
        .map_err(|e| session.error(&format!("pushing the manifest {}", report.manifest), e))?;
    Ok(report)
}

/// What the reading thread found wrong, for the error the upload returns.
type Failure = Arc<Mutex<Option<RegistryError>>>;

async fn upload(session: &Session, r: &Reference, store: &Store, blob: &LocalBlob) -> Result<(), RegistryError> {
    let (path, reader): (PathBuf, Box<dyn Read + Send>) = match &blob.file {
        BlobFile::Store => (store.blob_path(&blob.digest), Box::new(store.open_verified(&blob.digest)?)),
        BlobFile::Path(p) => {
            let file = File::open(p).map_err(io_err(p))?;
            (
                p.clone(),
                Box::new(CheckedFile {
                    file,
                    expected: blob.digest.clone(),
                    hasher: Some(blob.digest.algorithm().hasher()),
                }),
            )
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, OciDistributionError>>(1);
    let failure: Failure = Arc::default();
    let reading = {
        let failure = Arc::clone(&failure);
        let (digest, size, role) = (blob.digest.clone(), blob.size, blob.role.clone());
        std::thread::spawn(move || read_chunks(reader, ChunkTarget { tx, failure, path, digest, size, role }))
    };
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let result = session.client.push_blob_stream(r, chunks, &blob.digest.to_string(), Some(blob.size)).await;
    let _ = reading.join();
    if let Some(e) = failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
        return Err(e);
    }
    result.map(drop).map_err(|e| session.error(&format!("uploading {} {}", blob.role, blob.digest), e))
}

struct ChunkTarget {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, OciDistributionError>>,
    failure: Failure,
    path: PathBuf,
    digest: Digest,
    size: u64,
    role: String,
}

impl ChunkTarget {
    fn fail(&self, message: String) {
        let e = RegistryError::LocalBlob {
            path: self.path.clone(),
            role: self.role.clone(),
            digest: self.digest.clone(),
            message: message.clone(),
        };
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
        let _ = self.tx.blocking_send(Err(OciDistributionError::GenericError(Some(message))));
    }
}

/// Reads `reader` in [`CHUNK`]s into the queue (blocking while it is full); at the
/// end the reader has checked the digest, and the size is checked here. On any
/// failure the stream ends with an error, so the upload is never closed.
fn read_chunks(mut reader: Box<dyn Read + Send>, target: ChunkTarget) {
    let mut sent = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return target.fail(read_failure(e, &target.path)),
            }
        }
        sent += filled as u64;
        if sent > target.size {
            return target.fail(format!("larger than the {} bytes its descriptor gives", target.size));
        }
        if filled == 0 {
            if sent != target.size {
                return target.fail(format!("{sent} bytes, its descriptor gives {}", target.size));
            }
            return;
        }
        buf.truncate(filled);
        if target.tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
            // The upload stopped (its own error is reported).
            return;
        }
    }
}

/// Why a read failed: the store's refusal of an altered blob, else the I/O error.
fn read_failure(e: io::Error, path: &Path) -> String {
    match openshell_store::store_error(e, path) {
        openshell_store::StoreError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// A layout's blob file, hashed as it is read: the read that reaches its end fails
/// when the content is not its digest (as the store's `BlobReader` does).
struct CheckedFile {
    file: File,
    expected: Digest,
    hasher: Option<Hasher>,
}

impl Read for CheckedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n > 0 {
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
        } else if !buf.is_empty()
            && let Some(h) = self.hasher.take()
        {
            let actual = h.finish();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("its content hashes to {actual}; the file was changed"),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streams `content` (a file) as a push would, claiming `digest` and `size`:
    /// (the bytes queued, the number of chunks, the failure reported).
    fn stream(content: &[u8], digest: &Digest, size: u64) -> (Vec<u8>, usize, Option<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, content).expect("write");
        let file = File::open(&path).expect("open");
        let reader =
            Box::new(CheckedFile { file, expected: digest.clone(), hasher: Some(digest.algorithm().hasher()) });
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let failure: Failure = Arc::default();
        let target = ChunkTarget {
            tx,
            failure: Arc::clone(&failure),
            path,
            digest: digest.clone(),
            size,
            role: "layer 0".into(),
        };
        let reading = std::thread::spawn(move || read_chunks(reader, target));
        let (mut got, mut chunks) = (Vec::new(), 0);
        while let Some(item) = rx.blocking_recv() {
            match item {
                Ok(b) => {
                    got.extend_from_slice(&b);
                    chunks += 1;
                }
                Err(_) => break,
            }
        }
        reading.join().expect("reader thread");
        let failure = failure.lock().unwrap_or_else(PoisonError::into_inner).take().map(|e| e.to_string());
        (got, chunks, failure)
    }

    #[test]
    fn a_blob_streams_whole_in_chunks() {
        let content: Vec<u8> = (0..CHUNK * 2 + 100).map(|i| (i % 251) as u8).collect();
        let (got, chunks, failure) = stream(&content, &Digest::sha256(&content), content.len() as u64);
        assert_eq!(failure, None);
        assert_eq!(chunks, 3);
        assert!(got == content);
    }

    #[test]
    fn a_changed_file_fails_before_the_upload_closes() {
        let content = vec![7u8; CHUNK + 1];
        let (_, _, failure) = stream(&content, &Digest::sha256(b"something else"), content.len() as u64);
        let failure = failure.expect("refused");
        assert!(failure.contains("layer 0") && failure.contains("the file was changed"), "{failure}");
        let (_, _, failure) = stream(&content, &Digest::sha256(&content), 10);
        assert!(failure.expect("refused").contains("larger than the 10 bytes"));
        let (_, _, failure) = stream(&content, &Digest::sha256(&content), content.len() as u64 + 1);
        assert!(failure.expect("refused").contains("its descriptor gives"));
    }
}
