//! The bundle's tar frame, block by block: ustar headers made by the `tar` crate
//! from an index entry alone (name, size, mode; owner 0:0, mtime 0), content,
//! zero padding to 512 bytes, two zero blocks at the end.
//!
//! Hand-written on top of `tar::Header` rather than through `tar::Archive`: that
//! reader skips padding without looking at it, accepts other header forms (GNU,
//! PAX) for the same member and stops at the end blocks without looking further,
//! so bytes could change or be appended unseen. Here each header is compared with
//! the one its signed index entry gives, byte for byte, padding and end blocks
//! must be zeros and nothing may follow: every byte of a bundle is checked. GNU tar
//! reading what this writes is the oracle (`tests/bundle.rs`).

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

/// A tar block.
pub const BLOCK: usize = 512;

/// The header of a member: ustar, regular file, owner 0:0, mtime 0, no user or
/// group names; a path over 100 bytes is split into ustar's prefix and name.
pub fn header(path: &str, size: u64, mode: u32) -> io::Result<[u8; BLOCK]> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = [0u8; BLOCK];
    out.copy_from_slice(h.as_bytes());
    Ok(out)
}

/// The member name a header block gives, for messages (`?` when it has none).
pub fn name_in(block: &[u8; BLOCK]) -> String {
    tar::Header::from_byte_slice(block)
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Zero bytes after `size` bytes of content.
pub fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

const ZEROS: [u8; BLOCK] = [0; BLOCK];

/// Writes members and hashes everything written.
pub struct FrameWriter<W: Write> {
    out: W,
    whole: Sha256,
    written: u64,
}

impl<W: Write> FrameWriter<W> {
    /// A writer at the start of a bundle.
    pub fn new(out: W) -> FrameWriter<W> {
        FrameWriter { out, whole: Sha256::new(), written: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.whole.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes one member: exactly `size` bytes from `content` (fewer or more is an
    /// error). Returns the sha256 of the content.
    pub fn member(&mut self, path: &str, mode: u32, size: u64, content: &mut dyn Read) -> io::Result<[u8; 32]> {
        self.put(&header(path, size, mode)?)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = content.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{path}: shorter than {size} bytes")));
            }
            hasher.update(&buf[..n]);
            self.put(&buf[..n])?;
            left -= n as u64;
        }
        if content.read(&mut [0u8; 1])? != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{path}: longer than {size} bytes")));
        }
        self.put(&ZEROS[..padding(size)])?;
        Ok(hasher.finalize().into())
    }

    /// Writes the end blocks; returns the writer, the bundle's sha256 and size.
    pub fn finish(mut self) -> io::Result<(W, [u8; 32], u64)> {
        self.put(&ZEROS)?;
        self.put(&ZEROS)?;
        self.out.flush()?;
        Ok((self.out, self.whole.finalize().into(), self.written))
    }
}

/// Reads a bundle block by block.
pub struct FrameReader<R: Read> {
    input: R,
    read: u64,
}

/// What stands where a header is expected.
pub enum Next {
    /// A header block.
    Header(Box<[u8; BLOCK]>),
    /// A zero block: the end of the archive begins.
    End,
    /// The input ended.
    Eof,
}

impl<R: Read> FrameReader<R> {
    /// A reader at the start of a bundle.
    pub fn new(input: R) -> FrameReader<R> {
        FrameReader { input, read: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.read
    }

    /// Reads as much of `buf` as the input has; returns how much.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.read += got as u64;
        Ok(got)
    }

    /// The next block where a header or the end is expected. A partial block is
    /// [`Next::Eof`] too: the input ended where a whole block had to be.
    pub fn next_block(&mut self) -> io::Result<Next> {
        let mut block = Box::new([0u8; BLOCK]);
        if self.fill(&mut block[..])? < BLOCK {
            return Ok(Next::Eof);
        }
        Ok(if *block == ZEROS { Next::End } else { Next::Header(block) })
    }

    /// Streams `size` bytes of content to `sink`; returns their sha256, or `None`
    /// when the input ends first.
    pub fn content(
        &mut self,
        size: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), crate::BundleError>,
    ) -> Result<Option<[u8; 32]>, ContentError> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.fill(&mut buf[..want]).map_err(ContentError::Io)?;
            hasher.update(&buf[..n]);
            sink(&buf[..n]).map_err(ContentError::Sink)?;
            if n < want {
                return Ok(None);
            }
            left -= n as u64;
        }
        Ok(Some(hasher.finalize().into()))
    }

    /// Reads the padding after `size` bytes of content: whether it is all there and
    /// all zeros.
    pub fn padding_ok(&mut self, size: u64) -> io::Result<bool> {
        let want = padding(size);
        let mut pad = [0u8; BLOCK];
        let got = self.fill(&mut pad[..want])?;
        Ok(got == want && pad[..want].iter().all(|&b| b == 0))
    }

    /// After the first zero block: whether the second one follows, and how many
    /// bytes follow it (0 for a well-formed end; at most one block is looked at).
    pub fn end(&mut self) -> io::Result<(bool, usize)> {
        let mut block = [0u8; BLOCK];
        let got = self.fill(&mut block)?;
        let second = got == BLOCK && block == ZEROS;
        let extra = self.fill(&mut block)?;
        Ok((second, extra))
    }
}

/// Why reading a member's content stopped.
pub enum ContentError {
    /// Reading the bundle failed.
    Io(io::Error),
    /// The sink refused the data.
    Sink(crate::BundleError),
}

/// Lowercase hex of a sha256.
pub fn hex(bytes: &[u8; 32]) -> String {
    openshell_store::digest::to_hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_ustar_with_fixed_metadata_and_long_paths_split() {
        let h = header("bin/openshell", 5, 0o755).expect("header");
        let parsed = tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.path().expect("path").to_str(), Some("bin/openshell"));
        assert_eq!(parsed.mtime().expect("mtime"), 0);
        assert_eq!(&h[257..263], b"ustar\0");
        let long = format!("store/blobs/sha512/{}/{}", "ab".repeat(32), "cd".repeat(32));
        let h = header(&long, 1, 0o644).expect("a 148-byte path fits ustar's prefix and name");
        assert_eq!(name_in(&h), long);
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
    }
}
