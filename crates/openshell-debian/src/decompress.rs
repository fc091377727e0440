//! Streaming decompression for the formats Debian uses: gzip, xz and zstd.
//!
//! All decoders are pure Rust (`flate2` with miniz_oxide, `lzma-rust2`, `ruzstd`), so no
//! host compression library is linked. Each verifies the format's own integrity check
//! (gzip CRC32, xz check, zstd content checksum when present) and reads concatenated
//! streams/frames/members to the end.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use ruzstd::decoding::FrameDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};

/// A compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// xz (`.xz`).
    Xz,
    /// Zstandard (`.zst`).
    Zstd,
}

impl Compression {
    /// The format implied by a file name's extension; anything unknown is `None`.
    pub fn from_name(name: &str) -> Compression {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".xz") {
            Compression::Xz
        } else if name.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        })
    }
}

/// Wraps `input` in a decoder for `compression`.
pub fn reader<'a, R: Read + 'a>(compression: Compression, input: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(input, true)),
        Compression::Zstd => Box::new(ZstdReader::new(input)),
    })
}

/// A zstd decoder over all frames of a stream (skippable frames are skipped), checking
/// each frame's content checksum when it has one.
pub struct ZstdReader<R: Read> {
    source: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
    frames: usize,
}

impl<R: Read> ZstdReader<R> {
    /// A decoder reading compressed data from `source`.
    pub fn new(source: R) -> ZstdReader<R> {
        ZstdReader { source: BufReader::new(source), decoder: FrameDecoder::new(), in_frame: false, frames: 0 }
    }
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                    self.decoder
                        .decode_blocks(&mut self.source, ruzstd::decoding::BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(io::Error::other)?;
                }
                if self.decoder.can_collect() > 0 {
                    return self.decoder.read(buf);
                }
                // Frame complete: check its checksum.
                if let (Some(stored), Some(computed)) =
                    (self.decoder.get_checksum_from_data(), self.decoder.get_calculated_checksum())
                    && stored != computed
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "zstd frame {} checksum mismatch: stored {stored:08x}, computed {computed:08x}",
                            self.frames
                        ),
                    ));
                }
                self.in_frame = false;
                continue;
            }
            if self.source.fill_buf()?.is_empty() {
                if self.frames == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "empty zstd stream"));
                }
                return Ok(0);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => {
                    self.in_frame = true;
                    self.frames += 1;
                }
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated skippable zstd frame"));
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
    }
}
