//! The one tar header format openshell writes: POSIX.1-2001 (PAX).
//!
//! Every entry is a ustar header (`ustar\0` magic, version `00`). A field that does
//! not fit ustar goes into a PAX extended header (`x`) written just before the entry,
//! with records in key order; the ustar field then holds a truncated or zero value.
//! The rules, fixed here once:
//! - `path`: when the name (directories with a trailing `/`) is longer than 100 bytes
//!   or not ASCII. The ustar `prefix` field is never used.
//! - `linkpath`: when a symlink or hard link target is longer than 100 bytes or not ASCII.
//! - `size`, `uid`, `gid`, `mtime`: when the value does not fit the octal field.
//! - The extended header is named `././@PaxHeader`, mode 0644, owner 0:0, with the
//!   entry's mtime. No global headers, no GNU extensions, no xattrs, no atime/ctime.
//! - uname/gname are empty; devmajor/devminor are `0000000`; the checksum is six
//!   octal digits, NUL, space. The archive ends with two zero blocks, no record padding.
//!
//! Written by hand rather than through the `tar` crate so that no dependency update
//! can change a byte.

use std::io::{self, Write};

/// Human-readable description of the header format, recorded in image annotations.
pub const TAR_FORMAT: &str = "tar: POSIX.1-2001 pax (ustar headers, `x` records only for fields that do not fit), \
    sorted by path bytes, numeric owners, empty uname/gname, no xattrs";

const BLOCK: usize = 512;
const PAX_NAME: &[u8] = b"././@PaxHeader";

/// Entry type flags written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Hardlink,
    Symlink,
    Dir,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Dir => b'5',
        }
    }
}

/// Metadata of one entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

/// A streaming tar writer in the format above. It writes headers and padding; the
/// caller writes exactly `size` content bytes after [`TarWriter::header`] for files
/// and then calls [`TarWriter::pad`].
pub(crate) struct TarWriter<W: Write> {
    out: W,
    pax: Vec<u8>,
    name: Vec<u8>,
}

/// Writes `value` as zero-padded octal in `field` (all but the last byte), NUL-terminated.
/// Returns false when it does not fit.
fn octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    if digits < 22 && value >> (3 * digits) != 0 {
        return false;
    }
    let mut v = value;
    for i in (0..digits).rev() {
        field[i] = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    field[digits] = 0;
    true
}

fn pax_record(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "<len> <key>=<value>\n", where <len> counts itself.
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    loop {
        let total = body + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    buf.extend_from_slice(len.to_string().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(key.as_bytes());
    buf.push(b'=');
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

fn fits_ustar_text(s: &[u8], max: usize) -> bool {
    s.len() <= max && s.is_ascii()
}

/// Longest prefix of `s` of at most `max` bytes ending on a char boundary.
fn truncated(s: &str, max: usize) -> &[u8] {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

fn ustar_header(block: &mut [u8; BLOCK], name: &[u8], meta: &Meta, size: u64, flag: u8, link: &[u8]) -> [bool; 4] {
    block.fill(0);
    block[..name.len()].copy_from_slice(name);
    octal(&mut block[100..108], u64::from(meta.mode & 0o7777));
    let uid_ok = octal(&mut block[108..116], meta.uid);
    if !uid_ok {
        octal(&mut block[108..116], 0);
    }
    let gid_ok = octal(&mut block[116..124], meta.gid);
    if !gid_ok {
        octal(&mut block[116..124], 0);
    }
    let size_ok = octal(&mut block[124..136], size);
    if !size_ok {
        octal(&mut block[124..136], 0);
    }
    let mtime_ok = octal(&mut block[136..148], meta.mtime);
    if !mtime_ok {
        octal(&mut block[136..148], 0);
    }
    block[156] = flag;
    block[157..157 + link.len()].copy_from_slice(link);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    octal(&mut block[329..337], 0);
    octal(&mut block[337..345], 0);
    // Checksum: sum of all bytes with the checksum field as spaces.
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    octal(&mut block[148..155], sum);
    block[155] = b' ';
    [uid_ok, gid_ok, size_ok, mtime_ok]
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> TarWriter<W> {
        TarWriter { out, pax: Vec::new(), name: Vec::with_capacity(256) }
    }

    /// Writes the header(s) of one entry. `path` is normalized (no trailing slash);
    /// directories get one here. `link` is the target of links, empty otherwise.
    pub(crate) fn header(&mut self, path: &str, kind: Kind, meta: &Meta, size: u64, link: &str) -> io::Result<()> {
        self.name.clear();
        self.name.extend_from_slice(path.as_bytes());
        if kind == Kind::Dir {
            self.name.push(b'/');
        }
        let name_fits = fits_ustar_text(&self.name, 100);
        let link_fits = fits_ustar_text(link.as_bytes(), 100);
        let mut block = [0u8; BLOCK];
        let ustar_name: &[u8] = if name_fits {
            &self.name
        } else {
            // Truncated placeholder; readers take the name from the `path` record.
            let s = std::str::from_utf8(&self.name).map_err(io::Error::other)?;
            truncated(s, 100)
        };
        let ustar_link = if link_fits { link.as_bytes() } else { truncated(link, 100) };
        let [uid_ok, gid_ok, size_ok, mtime_ok] =
            ustar_header(&mut block, ustar_name, meta, size, kind.flag(), ustar_link);
        if name_fits && link_fits && uid_ok && gid_ok && size_ok && mtime_ok {
            return self.out.write_all(&block);
        }
        // Records in key order.
        self.pax.clear();
        if !gid_ok {
            pax_record(&mut self.pax, "gid", meta.gid.to_string().as_bytes());
        }
        if !link_fits {
            pax_record(&mut self.pax, "linkpath", link.as_bytes());
        }
        if !mtime_ok {
            pax_record(&mut self.pax, "mtime", meta.mtime.to_string().as_bytes());
        }
        if !name_fits {
            pax_record(&mut self.pax, "path", &self.name);
        }
        if !size_ok {
            pax_record(&mut self.pax, "size", size.to_string().as_bytes());
        }
        if !uid_ok {
            pax_record(&mut self.pax, "uid", meta.uid.to_string().as_bytes());
        }
        let pax_meta = Meta { mode: 0o644, uid: 0, gid: 0, mtime: if mtime_ok { meta.mtime } else { 0 } };
        let mut xblock = [0u8; BLOCK];
        ustar_header(&mut xblock, PAX_NAME, &pax_meta, self.pax.len() as u64, b'x', b"");
        self.out.write_all(&xblock)?;
        self.out.write_all(&self.pax)?;
        write_padding(&mut self.out, self.pax.len() as u64)?;
        self.out.write_all(&block)
    }

    /// Writes content bytes of the current file.
    pub(crate) fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    /// Pads the current file's `size` content bytes to a block boundary.
    pub(crate) fn pad(&mut self, size: u64) -> io::Result<()> {
        write_padding(&mut self.out, size)
    }

    /// Writes the end-of-archive marker and returns the output.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_padding(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut b = Vec::new();
        pax_record(&mut b, "path", b"abc");
        assert_eq!(b, b"12 path=abc\n");
        // Crossing a digit boundary: a body of 98 bytes needs a 3-digit length.
        b.clear();
        pax_record(&mut b, "path", &[b'a'; 90]);
        assert_eq!(b.len(), 99);
        assert!(b.starts_with(b"99 path="));
        b.clear();
        pax_record(&mut b, "path", &[b'a'; 91]);
        assert_eq!(b.len(), 101);
        assert!(b.starts_with(b"101 path="));
    }

    #[test]
    fn octal_fits() {
        let mut f = [0u8; 8];
        assert!(octal(&mut f, 0o7777777));
        assert_eq!(&f, b"7777777\0");
        assert!(!octal(&mut f, 0o10000000));
    }
}
