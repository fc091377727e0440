//! Root filesystems: each image layer unpacked once per diff_id into a shared,
//! read-only cache, and a per-sandbox overlay on top of the layers.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use openshell_store::{Algorithm, Digest, Hasher, Store, StoreError};

/// Errors of preparing a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("layer cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("layer {blob}: its uncompressed content hashes to {actual}, not to its diff_id {expected}")]
    DiffId { blob: Digest, expected: Digest, actual: Digest },
    #[error("layer {blob}: entry `{path}` is an overlay whiteout; images with whiteouts are not supported yet")]
    Whiteout { blob: Digest, path: String },
    #[error("layer {blob}: {message}")]
    Unpack { blob: Digest, message: String },
    #[error("mounting the overlay at {}: {source} (needs root)", target.display())]
    Mount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io { path: path.to_owned(), source }
}

/// Reads through, hashing everything read.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

static TMP: AtomicU64 = AtomicU64::new(0);

/// Unpacked layers, one directory per diff_id.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    pub fn open(root: impl Into<PathBuf>) -> Result<LayerCache, RootfsError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(LayerCache { root })
    }

    /// The directory of an unpacked layer (whether or not it exists).
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join(diff_id.hex())
    }

    /// Unpacks the gzip layer `blob` from the store unless already cached, checking
    /// that its uncompressed content is `diff_id`. Concurrent callers are safe: each
    /// unpacks into its own temporary directory and the first rename wins.
    pub fn ensure(&self, store: &Store, blob: &Digest, diff_id: &Digest) -> Result<PathBuf, RootfsError> {
        let dest = self.path(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let n = TMP.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join(format!(".tmp-{}-{}-{n}", diff_id.hex(), std::process::id()));
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        let result = self.unpack(store, blob, diff_id, &tmp);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(dest)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(RootfsError::Io { path: dest, source: e })
            }
        }
    }

    fn unpack(&self, store: &Store, blob: &Digest, diff_id: &Digest, into: &Path) -> Result<(), RootfsError> {
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(store.open_verified(blob)?));
        let mut hashing = HashingReader { inner: gz, hasher: Algorithm::Sha256.hasher() };
        {
            let mut archive = tar::Archive::new(&mut hashing);
            archive.set_preserve_permissions(true);
            archive.set_preserve_ownerships(true);
            archive.set_unpack_xattrs(false);
            archive.set_preserve_mtime(true);
            let unpack_err = |e: std::io::Error| RootfsError::Unpack { blob: blob.clone(), message: e.to_string() };
            for entry in archive.entries().map_err(unpack_err)? {
                let mut entry = entry.map_err(unpack_err)?;
                let path = entry.path().map_err(unpack_err)?.to_string_lossy().into_owned();
                if path.rsplit('/').next().is_some_and(|n| n.starts_with(".wh.")) {
                    return Err(RootfsError::Whiteout { blob: blob.clone(), path });
                }
                entry.unpack_in(into).map_err(unpack_err)?;
            }
        }
        // Read what tar left (end-of-archive padding) so the hash covers the whole stream.
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| RootfsError::Unpack { blob: blob.clone(), message: e.to_string() })?;
        // The blob itself, past the gzip stream too: one changed on disk is refused by name.
        hashing.inner.into_inner().into_inner().finish()?;
        let actual = hashing.hasher.finish();
        if actual != *diff_id {
            return Err(RootfsError::DiffId { blob: blob.clone(), expected: diff_id.clone(), actual });
        }
        Ok(())
    }
}

/// An overlay: read-only layers (bottom first, as an image lists them) under a
/// per-sandbox writable upper directory.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub layers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
}

impl Overlay {
    /// Mounts the overlay at `target` (creating upper, work and target), `nodev`:
    /// device nodes that come with an image are never devices in a sandbox (the
    /// runtime's own /dev is a separate mount). The container's root is a recursive
    /// bind of this mount, so it keeps the flag.
    pub fn mount(&self) -> Result<(), RootfsError> {
        for d in [&self.upper, &self.work, &self.target] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let lower: Vec<String> = self.layers.iter().rev().map(|p| p.display().to_string()).collect();
        let data =
            format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), self.upper.display(), self.work.display());
        let data = std::ffi::CString::new(data)
            .map_err(|e| RootfsError::Mount { target: self.target.clone(), source: std::io::Error::other(e) })?;
        rustix::mount::mount("overlay", &self.target, "overlay", rustix::mount::MountFlags::NODEV, data.as_c_str())
            .map_err(|e| RootfsError::Mount { target: self.target.clone(), source: e.into() })
    }

    /// Unmounts the overlay.
    pub fn unmount(&self) -> Result<(), RootfsError> {
        rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::empty())
            .map_err(|e| RootfsError::Mount { target: self.target.clone(), source: e.into() })
    }
}
