//! Verified reads of whole blobs: [`BlobReader`].

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::{Digest, Hasher, StoreError};

/// A stored blob being read from its start: everything read is hashed, and the
/// read that reaches the end of the blob fails with [`StoreError::Altered`]
/// (inside an `io::Error` of kind `InvalidData`) when the content no longer
/// matches the blob's name. Made by [`crate::Store::open_verified`].
#[derive(Debug)]
pub struct BlobReader {
    digest: Digest,
    path: PathBuf,
    file: File,
    /// `None` once the end was reached and checked.
    hasher: Option<Hasher>,
}

impl BlobReader {
    pub(crate) fn new(digest: Digest, path: PathBuf, file: File) -> BlobReader {
        let hasher = Some(digest.algorithm().hasher());
        BlobReader { digest, path, file, hasher }
    }

    /// The blob being read.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size on disk.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads whatever the caller left unread and checks the whole blob: for
    /// readers that stop early (a decompressor at its end-of-stream marker, an
    /// archive reader at its end-of-archive record).
    pub fn finish(mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        io::copy(&mut self, &mut io::sink()).map(drop).map_err(|e| store_error(e, &path))
    }

    fn check(&mut self) -> Result<(), StoreError> {
        let Some(hasher) = self.hasher.take() else { return Ok(()) };
        let actual = hasher.finish();
        if actual == self.digest {
            return Ok(());
        }
        Err(StoreError::Altered { digest: self.digest.clone(), actual })
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        match &mut self.hasher {
            Some(h) if n > 0 => h.update(&buf[..n]),
            Some(_) if !buf.is_empty() => self.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            _ => {}
        }
        Ok(n)
    }
}

/// The store error inside an `io::Error` a [`BlobReader`] returned (also through
/// readers stacked on it, which pass errors on), else an I/O error on `path`.
pub fn store_error(e: io::Error, path: &Path) -> StoreError {
    match e.downcast::<StoreError>() {
        Ok(store) => store,
        Err(e) => StoreError::Io { path: path.to_owned(), source: e },
    }
}
