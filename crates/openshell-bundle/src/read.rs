//! Reading a bundle in one streaming pass: the index and its signature first
//! (checked against the trusted key before anything else is believed), then every
//! member in the index's order, each header compared with the one its entry gives,
//! its content hashed as it streams to a [`Sink`], its padding and the archive's
//! end checked. The first bad member is named; a sink gets a member's `end` only
//! after its content matched.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{BundleError, MemberProblem};
use crate::frame::{self, ContentError, FrameReader, Next};
use crate::index::{INDEX_NAME, Index, MAX_INDEX, Member, SIGNATURE_NAME};
use crate::key::{SIGNATURE_LEN, TrustedKey};

/// Where the members of a bundle being read go.
pub trait Sink {
    /// A member begins.
    fn begin(&mut self, member: &Member) -> Result<(), BundleError>;
    /// Some of its content (not yet checked).
    fn data(&mut self, bytes: &[u8]) -> Result<(), BundleError>;
    /// It ended and its content is the index's.
    fn end(&mut self, member: &Member) -> Result<(), BundleError>;
}

/// A sink that keeps nothing (`bundle verify`).
pub struct Discard;

impl Sink for Discard {
    fn begin(&mut self, _: &Member) -> Result<(), BundleError> {
        Ok(())
    }
    fn data(&mut self, _: &[u8]) -> Result<(), BundleError> {
        Ok(())
    }
    fn end(&mut self, _: &Member) -> Result<(), BundleError> {
        Ok(())
    }
}

/// A bundle that read whole and good.
#[derive(Debug)]
pub struct Verified {
    /// Its index.
    pub index: Index,
    /// Its size in bytes.
    pub size: u64,
}

struct Reader<'k, R: Read> {
    frame: FrameReader<R>,
    bundle: PathBuf,
    key: &'k TrustedKey,
}

/// Reads the bundle `input` (`bundle` names it in errors), trusting only `key`.
pub fn read(bundle: &Path, input: impl Read, key: &TrustedKey, sink: &mut dyn Sink) -> Result<Verified, BundleError> {
    let mut r = Reader { frame: FrameReader::new(input), bundle: bundle.to_owned(), key };
    let index = r.signed_index()?;
    for (i, member) in index.members.iter().enumerate() {
        r.member(member, &index.members[i + 1..], sink)?;
    }
    r.end()?;
    Ok(Verified { index, size: r.frame.position() })
}

impl<R: Read> Reader<'_, R> {
    fn io(&self) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
        crate::error::io(&self.bundle)
    }

    fn index_error(&self, message: impl Into<String>) -> BundleError {
        BundleError::Index { bundle: self.bundle.clone(), message: message.into() }
    }

    /// A small member that must come now, by name: its bytes.
    fn small(&mut self, name: &str, max: u64) -> Result<Option<Vec<u8>>, BundleError> {
        let Next::Header(block) = self.frame.next_block().map_err(self.io())? else { return Ok(None) };
        let size = tar::Header::from_byte_slice(&block[..]).size().unwrap_or(u64::MAX);
        if size > max || *block != frame::header(name, size, 0o644).map_err(self.io())? {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(size as usize);
        let got = self.frame.content(size, &mut |b| {
            bytes.extend_from_slice(b);
            Ok(())
        });
        match got {
            Ok(Some(_)) if self.frame.padding_ok(size).map_err(self.io())? => Ok(Some(bytes)),
            Ok(_) => Err(self.index_error(format!("`{name}` is truncated or its padding is not zeros"))),
            Err(ContentError::Io(e)) => Err(self.io()(e)),
            Err(ContentError::Sink(e)) => Err(e),
        }
    }

    fn signed_index(&mut self) -> Result<Index, BundleError> {
        let bytes = self
            .small(INDEX_NAME, MAX_INDEX)?
            .ok_or_else(|| self.index_error(format!("the first member is not `{INDEX_NAME}`: not a bundle")))?;
        let signature = self
            .small(SIGNATURE_NAME, SIGNATURE_LEN as u64)?
            .and_then(|s| <[u8; SIGNATURE_LEN]>::try_from(s.as_slice()).ok())
            .ok_or_else(|| BundleError::Unsigned { bundle: self.bundle.clone(), expected: SIGNATURE_NAME })?;
        if !self.key.verifies(&bytes, &signature) {
            return Err(BundleError::BadSignature { bundle: self.bundle.clone(), key: self.key.path().to_owned() });
        }
        Index::parse(&bytes).map_err(|e| self.index_error(e.to_string()))
    }

    fn bad(&self, member: &str, problem: MemberProblem) -> BundleError {
        BundleError::Member { bundle: self.bundle.clone(), member: member.to_owned(), problem }
    }

    fn member(&mut self, m: &Member, later: &[Member], sink: &mut dyn Sink) -> Result<(), BundleError> {
        let block = match self.frame.next_block().map_err(self.io())? {
            Next::Header(block) => block,
            Next::End | Next::Eof => return Err(self.bad(&m.path, MemberProblem::Missing)),
        };
        if *block != frame::header(&m.path, m.size, m.mode).map_err(self.io())? {
            let found = frame::name_in(&block);
            let problem = if found == m.path {
                MemberProblem::Header
            } else if later.iter().any(|l| l.path == found) {
                MemberProblem::Reordered { found }
            } else {
                MemberProblem::Unexpected { found }
            };
            return Err(self.bad(&m.path, problem));
        }
        sink.begin(m)?;
        let digest = match self.frame.content(m.size, &mut |b| sink.data(b)) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(self.bad(&m.path, MemberProblem::Truncated)),
            Err(ContentError::Io(e)) => return Err(self.io()(e)),
            Err(ContentError::Sink(e)) => return Err(e),
        };
        let actual = frame::hex(&digest);
        if actual != m.sha256 {
            return Err(self.bad(&m.path, MemberProblem::Digest { expected: m.sha256.clone(), actual }));
        }
        if !self.frame.padding_ok(m.size).map_err(self.io())? {
            return Err(self.bad(&m.path, MemberProblem::Padding));
        }
        sink.end(m)
    }

    fn end(&mut self) -> Result<(), BundleError> {
        match self.frame.next_block().map_err(self.io())? {
            Next::End => {}
            Next::Header(block) => {
                let found = frame::name_in(&block);
                return Err(self.bad(&found, MemberProblem::NotListed));
            }
            Next::Eof => return Err(BundleError::End { bundle: self.bundle.clone() }),
        }
        match self.frame.end().map_err(self.io())? {
            (true, 0) => Ok(()),
            (true, extra) => Err(BundleError::Trailing { bundle: self.bundle.clone(), extra }),
            (false, _) => Err(BundleError::End { bundle: self.bundle.clone() }),
        }
    }
}
