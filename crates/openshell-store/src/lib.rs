//! openshell's content-addressed store: every artifact (Debian package, npm
//! tarball, wheel, file, layer) is a blob named by its digest.
//!
//! Layout under the store root:
//! - `blobs/<algo>/<hex>`: immutable, read-only blobs.
//! - `tmp/`: files being written; a blob appears in `blobs/` only complete and verified
//!   (write, fsync, hard-link into place: atomic and never clobbering).
//! - `partial/<algo>-<hex>`: resumable downloads, each guarded by a file lock so two
//!   processes fetching the same blob take turns instead of corrupting it.
//!
//! Writers racing on the same digest are safe: both write their own temporary file
//! and the first link wins; the content is identical by construction.
//!
//! Reads are verified: a blob changed on disk after it was stored is refused by name
//! ([`StoreError::Altered`]). [`Store::open_verified`] hashes a blob as it is read
//! whole and fails at its end; [`Store::open_ranges`] hashes the whole blob before
//! ranges of it are read (once per [`Store`] handle: callers that read many ranges
//! of one blob pay for one pass). There is no unverified read.

pub mod digest;
mod read;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use read::{BlobReader, store_error};

/// Errors of the store. Each names the blob or path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("{digest} is not in the store {}", root.display())]
    Missing { digest: Digest, root: PathBuf },
    #[error("stored blob {digest} is corrupt (its content hashes to {actual}); it was removed, fetch it again")]
    Corrupt { digest: Digest, actual: Digest },
    #[error(
        "stored blob {digest} changed on disk after it was stored: its content hashes to {actual}; refusing to use it (`openshell store verify` removes it, then fetch it again)"
    )]
    Altered { digest: Digest, actual: Digest },
    #[error("closure archive: {0}")]
    Archive(String),
    #[error("no store directory: set OPENSHELL_STORE or --store, or HOME")]
    NoDefault,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// A content-addressed store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Blobs this handle (or a clone) hashed whole: by [`Store::open_ranges`], or
    /// while inserting them.
    verified: Arc<Mutex<BTreeSet<Digest>>>,
}

/// What garbage collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<Digest>,
    pub freed_bytes: u64,
    pub kept: usize,
}

/// What an import added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub added: Vec<Digest>,
    pub already_present: usize,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// The default store: `$OPENSHELL_STORE`, else `$XDG_DATA_HOME/openshell/store`,
    /// else `$HOME/.local/share/openshell/store`.
    pub fn default_root() -> Result<PathBuf, StoreError> {
        if let Some(p) = std::env::var_os("OPENSHELL_STORE").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p).join("openshell/store"));
        }
        match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            Some(home) => Ok(PathBuf::from(home).join(".local/share/openshell/store")),
            None => Err(StoreError::NoDefault),
        }
    }

    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        for sub in ["blobs/sha256", "blobs/sha512", "tmp", "partial"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(Store { root, verified: Arc::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().name()).join(d.hex())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    fn open_file(&self, d: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Missing { digest: d.clone(), root: self.root.clone() },
            _ => StoreError::Io { path: p.clone(), source: e },
        })
    }

    /// Opens a stored blob to read it whole: the reader hashes what it reads and
    /// fails at the end of the blob ([`StoreError::Altered`], inside the
    /// `io::Error`) when the content no longer matches `d`. A caller that stops
    /// before the end calls [`BlobReader::finish`].
    pub fn open_verified(&self, d: &Digest) -> Result<BlobReader, StoreError> {
        Ok(BlobReader::new(d.clone(), self.blob_path(d), self.open_file(d)?))
    }

    /// A stored blob's bytes, verified.
    pub fn read_verified(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut reader = self.open_verified(d)?;
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| store_error(e, &self.blob_path(d)))?;
        Ok(bytes)
    }

    /// Opens a stored blob to read ranges of it, after hashing it whole (the first
    /// time this handle opens it; a blob this handle inserted counts as hashed).
    pub fn open_ranges(&self, d: &Digest) -> Result<File, StoreError> {
        let mut file = self.open_file(d)?;
        if self.is_verified(d) {
            return Ok(file);
        }
        let path = self.blob_path(d);
        let actual = hash_reader(d.algorithm(), &mut file).map_err(io_err(&path))?;
        if actual != *d {
            return Err(StoreError::Altered { digest: d.clone(), actual });
        }
        file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
        self.mark_verified(d);
        Ok(file)
    }

    fn is_verified(&self, d: &Digest) -> bool {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner).contains(d)
    }

    fn mark_verified(&self, d: &Digest) {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner).insert(d.clone());
    }

    /// Size in bytes of a stored blob.
    pub fn size(&self, d: &Digest) -> Result<u64, StoreError> {
        let p = self.blob_path(d);
        fs::metadata(&p).map(|m| m.len()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Missing { digest: d.clone(), root: self.root.clone() },
            _ => StoreError::Io { path: p.clone(), source: e },
        })
    }

    fn tmp_file(&self) -> Result<(PathBuf, File), StoreError> {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = self.root.join("tmp").join(format!("{}-{nanos}-{n}", std::process::id()));
        let f = OpenOptions::new().write(true).create_new(true).open(&p).map_err(io_err(&p))?;
        Ok((p, f))
    }

    /// Stores bytes under their sha256.
    pub fn insert_bytes(&self, data: &[u8]) -> Result<Digest, StoreError> {
        self.insert_reader(Algorithm::Sha256, None, data)
    }

    /// Streams `reader` into the store, hashing with `algorithm`; when `expected`
    /// is given, content that does not match is refused and nothing is stored.
    pub fn insert_reader(
        &self,
        algorithm: Algorithm,
        expected: Option<&Digest>,
        mut reader: impl Read,
    ) -> Result<Digest, StoreError> {
        let mut staging = self.stage(expected.map_or(algorithm, Digest::algorithm))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::Io { path: staging.path.clone(), source: e }),
            };
            staging.write_all(&buf[..n]).map_err(io_err(&staging.path))?;
        }
        staging.finish(expected)?.publish()
    }

    /// Starts a blob in `tmp/`, hashed with `algorithm` as it is written. Nothing is
    /// in `blobs/` until [`Staging::finish`] has checked it and [`Staged::publish`]
    /// links it there: a caller that fetches several blobs can check all of them
    /// before storing any. Dropping either removes the temporary file.
    pub fn stage(&self, algorithm: Algorithm) -> Result<Staging<'_>, StoreError> {
        let (path, file) = self.tmp_file()?;
        Ok(Staging { store: self, path, file, hasher: algorithm.hasher(), len: 0 })
    }

    /// Copies a file into the store.
    pub fn insert_file(
        &self,
        algorithm: Algorithm,
        expected: Option<&Digest>,
        path: &Path,
    ) -> Result<Digest, StoreError> {
        let f = File::open(path).map_err(io_err(path))?;
        self.insert_reader(algorithm, expected, f)
    }

    /// Links a complete, verified temporary file into `blobs/` without clobbering.
    fn publish(&self, tmp: &Path, digest: &Digest) -> Result<(), StoreError> {
        let mut perms = fs::metadata(tmp).map_err(io_err(tmp))?.permissions();
        perms.set_readonly(true);
        fs::set_permissions(tmp, perms).map_err(io_err(tmp))?;
        let dest = self.blob_path(digest);
        match fs::hard_link(tmp, &dest) {
            Ok(()) => {
                tracing::debug!(%digest, "stored");
                if let Some(dir) = dest.parent()
                    && let Ok(d) = File::open(dir)
                {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            // Someone else stored the same content first.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(StoreError::Io { path: dest, source: e }),
        }
    }

    /// Re-hashes a stored blob; a corrupt blob is removed and reported.
    pub fn verify(&self, d: &Digest) -> Result<(), StoreError> {
        let mut f = self.open_file(d)?;
        let actual = hash_reader(d.algorithm(), &mut f).map_err(io_err(&self.blob_path(d)))?;
        if actual == *d {
            return Ok(());
        }
        let p = self.blob_path(d);
        let _ = fs::remove_file(&p);
        tracing::warn!(digest = %d, %actual, "removed corrupt blob");
        Err(StoreError::Corrupt { digest: d.clone(), actual })
    }

    /// Opens the resumable download of `d`, waiting for any other process
    /// downloading the same blob. The lock is held until the `Partial` is dropped.
    /// Check [`Store::contains`] after it returns: the other process may have
    /// finished the blob while this one waited.
    pub fn partial(&self, d: &Digest) -> Result<Partial<'_>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let p = self.root.join("partial").join(format!("{}-{}", d.algorithm().name(), d.hex()));
        loop {
            let file =
                OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&p).map_err(io_err(&p))?;
            file.lock().map_err(io_err(&p))?;
            // The previous holder may have finished and unlinked the file while we
            // waited: only a lock on the file still at `p` counts.
            let ours = file.metadata().map_err(io_err(&p))?;
            match fs::metadata(&p) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                    return Ok(Partial { store: self, digest: d.clone(), path: p, file });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Io { path: p, source: e }),
            }
        }
    }

    /// Every digest in the store.
    pub fn list(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let mut out = BTreeSet::new();
        for algo in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(algo.name());
            for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                let name = entry.file_name();
                if let Some(d) = name.to_str().and_then(|n| format!("{}:{n}", algo.name()).parse::<Digest>().ok()) {
                    out.insert(d);
                }
            }
        }
        Ok(out)
    }

    /// Removes every blob not in `live`, and temporary files older than a day.
    pub fn gc(&self, live: &BTreeSet<Digest>) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        for d in self.list()? {
            if live.contains(&d) {
                report.kept += 1;
                continue;
            }
            let p = self.blob_path(&d);
            let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&p).map_err(io_err(&p))?;
            report.freed_bytes += size;
            report.removed.push(d);
        }
        let tmp = self.root.join("tmp");
        let day = Duration::from_secs(24 * 3600);
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(report)
    }

    /// Writes the given blobs as a tar stream (`blobs/<algo>/<hex>`, sorted, with
    /// fixed metadata, so the same closure always gives the same bytes). A blob
    /// altered on disk fails the export.
    pub fn export(&self, digests: &BTreeSet<Digest>, out: impl Write) -> Result<(), StoreError> {
        let mut builder = tar::Builder::new(out);
        for d in digests {
            let mut f = self.open_verified(d)?;
            let size = f.len().map_err(io_err(&self.blob_path(d)))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o444);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            let name = format!("blobs/{}/{}", d.algorithm().name(), d.hex());
            builder
                .append_data(&mut header, &name, &mut f)
                .map_err(|e| StoreError::Archive(format!("writing {name}: {e}")))?;
            f.finish()?;
        }
        builder.into_inner().and_then(|mut w| w.flush()).map_err(|e| StoreError::Archive(e.to_string()))
    }

    /// Reads a closure archive made by [`Store::export`], verifying every blob
    /// against the digest it is named by. Anything else in the archive is an error.
    pub fn import(&self, input: impl Read) -> Result<ImportReport, StoreError> {
        let mut archive = tar::Archive::new(input);
        let mut report = ImportReport::default();
        let entries = archive.entries().map_err(|e| StoreError::Archive(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::Archive(e.to_string()))?;
            let name = entry.path().map_err(|e| StoreError::Archive(e.to_string()))?.to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            let digest = name
                .strip_prefix("blobs/")
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(algo, hex)| format!("{algo}:{hex}").parse::<Digest>().ok())
                .filter(|_| kind.is_file())
                .ok_or_else(|| {
                    StoreError::Archive(format!(
                        "unexpected entry `{name}`: a closure holds only blobs/<algo>/<hex> files"
                    ))
                })?;
            if self.contains(&digest) {
                report.already_present += 1;
                continue;
            }
            match self.insert_reader(digest.algorithm(), Some(&digest), entry) {
                Ok(_) => report.added.push(digest),
                Err(StoreError::Mismatch { expected, actual }) => {
                    return Err(StoreError::Archive(format!(
                        "entry `{name}` is corrupt: expected {expected}, got {actual}"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

/// A blob being written into `tmp/` (see [`Store::stage`]).
pub struct Staging<'s> {
    store: &'s Store,
    path: PathBuf,
    file: File,
    hasher: Hasher,
    len: u64,
}

impl Write for Staging<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl<'s> Staging<'s> {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks the content against `expected` (when given) and syncs it: a mismatch
    /// is [`StoreError::Mismatch`] and the file is removed.
    pub fn finish(mut self, expected: Option<&Digest>) -> Result<Staged<'s>, StoreError> {
        let hasher = std::mem::replace(&mut self.hasher, Algorithm::Sha256.hasher());
        let actual = hasher.finish();
        if let Some(exp) = expected
            && *exp != actual
        {
            return Err(StoreError::Mismatch { expected: exp.clone(), actual });
        }
        self.file.sync_all().map_err(io_err(&self.path))?;
        let path = std::mem::take(&mut self.path);
        Ok(Staged { store: self.store, path, digest: actual })
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A complete, checked blob in `tmp/`, not yet in `blobs/`.
pub struct Staged<'s> {
    store: &'s Store,
    path: PathBuf,
    digest: Digest,
}

impl Staged<'_> {
    /// Its digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The temporary file (to read the blob again before publishing it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Links the blob into `blobs/` (atomic, never clobbering).
    pub fn publish(self) -> Result<Digest, StoreError> {
        self.store.publish(&self.path, &self.digest)?;
        self.store.mark_verified(&self.digest);
        Ok(self.digest.clone())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A resumable download: append bytes, then [`Partial::finish`] verifies and stores.
pub struct Partial<'s> {
    store: &'s Store,
    digest: Digest,
    path: PathBuf,
    file: File,
}

impl Partial<'_> {
    /// Bytes already downloaded (resume from here).
    pub fn offset(&self) -> Result<u64, StoreError> {
        self.file.metadata().map(|m| m.len()).map_err(io_err(&self.path))
    }

    /// Throws away what was downloaded (e.g. the server ignored a range request).
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(io_err(&self.path))?;
        Ok(())
    }

    /// Appends downloaded bytes.
    pub fn append(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.file.seek(SeekFrom::End(0)).map_err(io_err(&self.path))?;
        self.file.write_all(data).map_err(io_err(&self.path))
    }

    /// Verifies the whole download and moves it into the store. On a mismatch the
    /// partial file is deleted, so the next attempt starts clean.
    pub fn finish(mut self) -> Result<Digest, StoreError> {
        self.file.sync_all().map_err(io_err(&self.path))?;
        self.file.seek(SeekFrom::Start(0)).map_err(io_err(&self.path))?;
        let actual = hash_reader(self.digest.algorithm(), &mut self.file).map_err(io_err(&self.path))?;
        if actual != self.digest {
            let _ = fs::remove_file(&self.path);
            return Err(StoreError::Mismatch { expected: self.digest.clone(), actual });
        }
        self.store.publish(&self.path, &self.digest)?;
        self.store.mark_verified(&self.digest);
        let _ = fs::remove_file(&self.path);
        Ok(actual)
    }
}

/// Hashes everything `r` yields.
pub fn hash_reader(algorithm: Algorithm, r: &mut impl Read) -> io::Result<Digest> {
    let mut h = algorithm.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
