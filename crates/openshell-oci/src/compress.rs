//! Layer compression: one gzip member, deflate by zlib-rs at a fixed level.
//!
//! The gzip framing (RFC 1952) is written here, byte by byte: `1f 8b 08`, flags 0 (no
//! file name, no comment, no extra field), mtime 0, XFL 0, OS 255 ("unknown", what Go's
//! `compress/gzip` writes), then one raw deflate stream from a single encoder on one
//! thread, then CRC-32 and ISIZE. Only the deflate bytes come from a library, and
//! those depend on its exact version and level, which are recorded in [`COMPRESSOR`].

use std::io::{self, Write};
use std::sync::OnceLock;

use flate2::Compression;
use flate2::write::DeflateEncoder;
use openshell_store::Digest;

/// The deflate level. Changing it changes every layer digest.
pub const LEVEL: u32 = 6;

/// Exact compressor, recorded in image annotations. A test checks the versions against
/// Cargo.lock, and [`check_compressor`] checks the output against a fingerprint, so a
/// dependency update or a Cargo feature that swaps flate2's backend (for example to
/// the host's libz) is caught instead of silently changing digests.
pub const COMPRESSOR: &str = "gzip (rfc1952: mtime 0, no name, xfl 0, os 255, one member); \
    deflate: zlib-rs 0.6.8 via flate2 1.1.11, level 6, single stream, single thread";

/// The 10-byte gzip header written on every layer.
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff];

/// sha256 of the gzip of [`fingerprint_sample`] with this compressor.
const FINGERPRINT: &str = "sha256:fa4e966fad70a08639bf80bd0fa94a090081020c82ad685e244433cea951d4bd";

/// A gzip writer with fixed framing around a zlib-rs deflate stream.
pub struct GzipWriter<W: Write> {
    encoder: DeflateEncoder<W>,
    crc: flate2::Crc,
    size: u64,
}

impl<W: Write> GzipWriter<W> {
    /// Starts a gzip member on `out`, writing the header at once.
    pub fn new(mut out: W) -> io::Result<GzipWriter<W>> {
        out.write_all(&GZIP_HEADER)?;
        Ok(GzipWriter { encoder: DeflateEncoder::new(out, Compression::new(LEVEL)), crc: flate2::Crc::new(), size: 0 })
    }

    /// Ends the deflate stream, writes CRC-32 and ISIZE, and returns the output.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.encoder.finish()?;
        out.write_all(&self.crc.sum().to_le_bytes())?;
        // ISIZE is the input size modulo 2^32 (RFC 1952).
        out.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(out)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A deflate flush would add a sync block and change the bytes: only the
        // underlying writer is flushed, by `finish`.
        Ok(())
    }
}

/// A fixed 256 KiB sample with text-like and binary-like stretches, so matchers and
/// block splitting of different deflate implementations give different outputs.
pub fn fingerprint_sample() -> Vec<u8> {
    let words: [&[u8]; 8] =
        [b"usr/lib/", b"node_modules", b" = ", b"function ", b"\n", b"return x;", b"\x7fELF\x02\x01", b"0123"];
    let mut out = Vec::with_capacity(256 * 1024);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < 256 * 1024 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let r = (state >> 33) as usize;
        if r.is_multiple_of(5) {
            out.extend((0..(r % 61)).map(|i| ((state >> (i % 56)) & 0xff) as u8));
        } else {
            out.extend_from_slice(words[r % words.len()]);
        }
    }
    out.truncate(256 * 1024);
    out
}

/// The gzip of [`fingerprint_sample`] with this build's compressor.
pub fn fingerprint() -> Digest {
    let mut gz = match GzipWriter::new(Vec::new()) {
        Ok(gz) => gz,
        Err(_) => return Digest::sha256(b""),
    };
    let out = gz.write_all(&fingerprint_sample()).and_then(|()| gz.finish());
    Digest::sha256(&out.unwrap_or_default())
}

/// Why layers cannot be compressed reproducibly.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the gzip compressor's output changed (fingerprint {actual}, expected {expected}): a dependency update or a Cargo \
     feature (flate2 `zlib`/`zlib-ng`) replaced `{COMPRESSOR}`; layer digests would differ from other builds"
)]
pub struct CompressorChanged {
    /// The recorded fingerprint.
    pub expected: String,
    /// This build's.
    pub actual: String,
}

/// Checks once per process that the compressor produces the recorded output.
pub fn check_compressor() -> Result<(), CompressorChanged> {
    static RESULT: OnceLock<Result<(), CompressorChanged>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let actual = fingerprint().to_string();
            if actual == FINGERPRINT {
                Ok(())
            } else {
                Err(CompressorChanged { expected: FINGERPRINT.to_owned(), actual })
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_recorded() {
        assert_eq!(fingerprint().to_string(), FINGERPRINT, "compressor output changed");
        assert!(check_compressor().is_ok());
    }
}
