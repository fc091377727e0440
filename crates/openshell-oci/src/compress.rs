//! Layer compression: gzip (the default) or zstd, each with one fixed compressor.
//!
//! gzip is one member, deflate by zlib-rs at a fixed level. The gzip framing (RFC 1952) is written here, byte by byte: `1f 8b 08`, flags 0 (no
//! file name, no comment, no extra field), mtime 0, XFL 0, OS 255 ("unknown", what Go's
//! `compress/gzip` writes), then one raw deflate stream from a single encoder on one
//! thread, then CRC-32 and ISIZE. Only the deflate bytes come from a library, and
//! those depend on its exact version and level, which are recorded in [`COMPRESSOR`].
//!
//! zstd (`--compression zstd`) is one frame from libzstd through the `zstd` crate (the
//! reference implementation: a pure-Rust zstd encoder with a stable output does not
//! exist), single-threaded (the crate's `zstdmt` feature is off), at level
//! [`ZSTD_LEVEL`], with the frame flags fixed: checksum on, content size off (layers
//! are streamed, their size is not known when the header is written), no dictionary id.
//! Its exact versions and settings are recorded in [`ZSTD_COMPRESSOR`] and checked
//! against a fingerprint like gzip's.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::str::FromStr;
use std::sync::OnceLock;

use flate2::write::DeflateEncoder;
use openshell_store::Digest;

/// Media type of gzip layers.
pub const GZIP_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of zstd layers.
pub const ZSTD_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker's gzip layer media type (read, never written).
const DOCKER_GZIP_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The non-distributable variants (read, never written).
const GZIP_NONDIST_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const ZSTD_NONDIST_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// The magic number that starts a zstd frame (RFC 8878, 3.1.1).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How layers are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// gzip by [`GzipWriter`]: what every registry and runtime takes.
    #[default]
    Gzip,
    /// zstd by libzstd at [`ZSTD_LEVEL`]: smaller, faster to unpack; for registries and
    /// runtimes that take `tar+zstd` layers (containerd ≥ 1.5, Docker ≥ 23, podman).
    Zstd,
}

impl Compression {
    /// Both, in the order the CLI lists them.
    pub const ALL: [Compression; 2] = [Compression::Gzip, Compression::Zstd];

    /// `gzip` or `zstd`: the CLI's name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The media type of the layers written.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => GZIP_MEDIA_TYPE,
            Compression::Zstd => ZSTD_MEDIA_TYPE,
        }
    }

    /// The exact compressor, recorded in the manifest's annotations.
    pub fn compressor(self) -> &'static str {
        match self {
            Compression::Gzip => COMPRESSOR,
            Compression::Zstd => ZSTD_COMPRESSOR,
        }
    }

    /// The compression whose magic number starts `head` (gzip `1f 8b`, zstd
    /// `28 b5 2f fd`), for a reader that has the blob and not its descriptor.
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&ZSTD_MAGIC) {
            Some(Compression::Zstd)
        } else {
            None
        }
    }

    /// The compression of a layer media type (OCI's, and Docker's gzip); `None` for an
    /// uncompressed or unknown one.
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            GZIP_MEDIA_TYPE | GZIP_NONDIST_MEDIA_TYPE | DOCKER_GZIP_MEDIA_TYPE => Some(Compression::Gzip),
            ZSTD_MEDIA_TYPE | ZSTD_NONDIST_MEDIA_TYPE => Some(Compression::Zstd),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A compression name that is neither `gzip` nor `zstd`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown layer compression `{0}`: expected `gzip` or `zstd`")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Compression, UnknownCompression> {
        Compression::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| UnknownCompression(s.to_owned()))
    }
}

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
        Ok(GzipWriter {
            encoder: DeflateEncoder::new(out, flate2::Compression::new(LEVEL)),
            crc: flate2::Crc::new(),
            size: 0,
        })
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

/// The compression of [`fingerprint_sample`] with this build's compressor for `c`.
pub fn fingerprint(c: Compression) -> Digest {
    let out = LayerEncoder::new(c, Vec::new()).and_then(|mut enc| {
        enc.write_all(&fingerprint_sample())?;
        enc.finish()
    });
    Digest::sha256(&out.unwrap_or_default())
}

/// Why layers cannot be compressed reproducibly.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the {compression} compressor's output changed (fingerprint {actual}, expected {expected}): a dependency update \
     or a Cargo feature or setting (flate2 `zlib`/`zlib-ng`; zstd `pkg-config`, `rust-backend`, `zstdmt`, \
     ZSTD_SYS_USE_PKG_CONFIG) replaced `{compressor}`; layer \
     digests would differ from other builds"
)]
pub struct CompressorChanged {
    /// Which compression.
    pub compression: Compression,
    /// Its recorded compressor.
    pub compressor: &'static str,
    /// The recorded fingerprint.
    pub expected: String,
    /// This build's.
    pub actual: String,
}

/// Checks once per process and compression that the compressor produces the recorded output.
pub fn check_compressor(c: Compression) -> Result<(), CompressorChanged> {
    static RESULTS: [OnceLock<Result<(), CompressorChanged>>; 2] = [OnceLock::new(), OnceLock::new()];
    let (slot, expected) = match c {
        Compression::Gzip => (&RESULTS[0], FINGERPRINT),
        Compression::Zstd => (&RESULTS[1], ZSTD_FINGERPRINT),
    };
    slot.get_or_init(|| {
        let actual = fingerprint(c).to_string();
        if actual == expected {
            Ok(())
        } else {
            Err(CompressorChanged { compression: c, compressor: c.compressor(), expected: expected.to_owned(), actual })
        }
    })
    .clone()
}

/// The zstd level. 12 is the highest level of zstd's `lazy2` match finder: from 13 on
/// the binary-tree finders (`btlazy2`, `btopt`, `btultra`) compress several times more
/// slowly for a few percent, and a full image build would be dominated by them; below
/// it the ratio drops towards gzip's. Changing it changes every zstd layer digest.
pub const ZSTD_LEVEL: i32 = 12;

/// Exact zstd compressor, recorded in image annotations (checked against Cargo.lock by
/// a test, and against [`ZSTD_FINGERPRINT`] before any layer is written).
pub const ZSTD_COMPRESSOR: &str = "zstd (rfc8878: one frame, checksum on, content size off, no dictionary id); \
    libzstd 1.5.7 (bundled C) via zstd-sys 2.1.3+zstd.1.5.7, zstd-safe 8.3.0 and zstd 0.14.4, level 12, single thread";

/// sha256 of the zstd of [`fingerprint_sample`] with this compressor.
const ZSTD_FINGERPRINT: &str = "sha256:8dd829a6270dfb2930bdfb5fd9a000634fd16275f324df5e3532a1379b3180d2";

/// A zstd encoder with the frame flags and level fixed.
fn zstd_encoder<W: Write>(out: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
    enc.include_checksum(true)?;
    enc.include_contentsize(false)?;
    enc.include_dictid(false)?;
    enc.long_distance_matching(false)?;
    Ok(enc)
}

/// The compressor of one layer.
pub enum LayerEncoder<W: Write> {
    /// gzip.
    Gzip(GzipWriter<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> LayerEncoder<W> {
    /// Starts a compressed stream on `out`.
    pub fn new(c: Compression, out: W) -> io::Result<LayerEncoder<W>> {
        Ok(match c {
            Compression::Gzip => LayerEncoder::Gzip(GzipWriter::new(out)?),
            Compression::Zstd => LayerEncoder::Zstd(zstd_encoder(out)?),
        })
    }

    /// Ends the stream and returns the output.
    pub fn finish(self) -> io::Result<W> {
        match self {
            LayerEncoder::Gzip(gz) => gz.finish(),
            LayerEncoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for LayerEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayerEncoder::Gzip(gz) => gz.write(buf),
            LayerEncoder::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // A flush would end a block early and change the bytes (deflate's sync block,
        // zstd's ZSTD_e_flush): nothing is flushed before `finish`.
        Ok(())
    }
}

/// The decompressor of one layer.
pub enum LayerDecoder<R: BufRead> {
    /// Every gzip member of the blob.
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    /// The first gzip member only.
    GzipMember(flate2::bufread::GzDecoder<R>),
    /// Every zstd frame of the blob, or the first only.
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> LayerDecoder<R> {
    /// Decompresses all of `raw` as `c` (every gzip member, every zstd frame).
    pub fn new(c: Compression, raw: R) -> io::Result<LayerDecoder<R>> {
        Ok(match c {
            Compression::Gzip => LayerDecoder::Gzip(flate2::bufread::MultiGzDecoder::new(raw)),
            Compression::Zstd => LayerDecoder::Zstd(zstd::stream::read::Decoder::with_buffer(raw)?),
        })
    }

    /// Decompresses the first gzip member or zstd frame of `raw` and stops there, for
    /// a reader that checks what follows itself (the runtime: the store's reader
    /// refuses a blob with bytes after the stream as altered).
    pub fn first(c: Compression, raw: R) -> io::Result<LayerDecoder<R>> {
        Ok(match c {
            Compression::Gzip => LayerDecoder::GzipMember(flate2::bufread::GzDecoder::new(raw)),
            Compression::Zstd => LayerDecoder::Zstd(zstd::stream::read::Decoder::with_buffer(raw)?.single_frame()),
        })
    }

    /// The compressed reader, to read what the decoder left.
    pub fn get_mut(&mut self) -> &mut R {
        match self {
            LayerDecoder::Gzip(gz) => gz.get_mut(),
            LayerDecoder::GzipMember(gz) => gz.get_mut(),
            LayerDecoder::Zstd(z) => z.get_mut(),
        }
    }

    /// The compressed reader.
    pub fn into_inner(self) -> R {
        match self {
            LayerDecoder::Gzip(gz) => gz.into_inner(),
            LayerDecoder::GzipMember(gz) => gz.into_inner(),
            LayerDecoder::Zstd(z) => z.finish(),
        }
    }
}

impl<R: BufRead> Read for LayerDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LayerDecoder::Gzip(gz) => gz.read(buf),
            LayerDecoder::GzipMember(gz) => gz.read(buf),
            LayerDecoder::Zstd(z) => z.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_recorded() {
        assert_eq!(fingerprint(Compression::Gzip).to_string(), FINGERPRINT, "compressor output changed");
        assert_eq!(fingerprint(Compression::Zstd).to_string(), ZSTD_FINGERPRINT, "zstd compressor output changed");
        for c in Compression::ALL {
            assert!(check_compressor(c).is_ok());
        }
    }

    #[test]
    fn names_and_media_types_round_trip() {
        for c in Compression::ALL {
            assert_eq!(c.name().parse::<Compression>(), Ok(c));
            assert_eq!(Compression::of_media_type(c.media_type()), Some(c));
        }
        assert_eq!("xz".parse::<Compression>(), Err(UnknownCompression("xz".to_owned())));
        assert_eq!(Compression::of_media_type("application/vnd.oci.image.layer.v1.tar"), None);
    }
}
