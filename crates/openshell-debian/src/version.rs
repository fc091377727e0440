//! Debian version numbers, parsed and compared exactly as dpkg does.
//!
//! A version is `[epoch:]upstream[-revision]`:
//! - the epoch is everything before the first `:` (decimal, default 0);
//! - the revision is everything after the last `-` (default empty);
//! - comparison is by epoch numerically, then upstream, then revision, each with
//!   dpkg's `verrevcmp`: alternating runs of non-digits (compared character by character
//!   with `~` before the end of the string, the end before letters, letters before
//!   everything else) and digits (compared numerically, leading zeros ignored).
//!
//! Equality is dpkg's: `1.0` == `1.00` == `0:1.0` == `1.0-0`. [`Version`] keeps the
//! string it was parsed from for display.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version `{version}`: {reason}")]
pub struct VersionError {
    /// The rejected string.
    pub version: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A parsed Debian version. Ordered and compared like `dpkg --compare-versions`.
#[derive(Clone)]
pub struct Version {
    text: String,
    epoch: u32,
    /// Byte range of the upstream part in `text`.
    upstream: (usize, usize),
    /// Byte range of the revision in `text` (empty when absent).
    revision: (usize, usize),
}

impl Version {
    /// Parses a version the way dpkg's `parseversion` does (leading and trailing
    /// whitespace is ignored).
    ///
    /// Errors where dpkg errors (empty string, embedded whitespace, a bad or too large
    /// epoch, an empty upstream part or an empty revision after `-`) and where dpkg only
    /// warns about characters that are not allowed (outside `[A-Za-z0-9.+~-:]` in the
    /// upstream part, `[A-Za-z0-9.+~]` in the revision): such strings cannot come from a
    /// conforming archive. An upstream part that does not start with a digit is accepted
    /// (dpkg warns, and a few historical packages have one).
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let err = |reason| VersionError { version: s.to_owned(), reason };
        let text = s.trim();
        if text.is_empty() {
            return Err(err("version string is empty"));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(err("version string has embedded spaces"));
        }
        let (epoch, up_start) = match text.find(':') {
            Some(colon) => {
                let e = &text[..colon];
                if e.is_empty() {
                    return Err(err("epoch in version is empty"));
                }
                if !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch in version is not number"));
                }
                // dpkg limits the epoch to INT_MAX.
                let epoch = e
                    .parse::<u32>()
                    .ok()
                    .filter(|&v| v <= i32::MAX as u32)
                    .ok_or_else(|| err("epoch in version is too big"))?;
                if colon + 1 == text.len() {
                    return Err(err("nothing after colon in version number"));
                }
                (epoch, colon + 1)
            }
            None => (0, 0),
        };
        let rest = &text[up_start..];
        let (upstream, revision) = match rest.rfind('-') {
            Some(dash) => {
                if dash + 1 == rest.len() {
                    return Err(err("revision number is empty"));
                }
                ((up_start, up_start + dash), (up_start + dash + 1, text.len()))
            }
            None => ((up_start, text.len()), (text.len(), text.len())),
        };
        let up = &text[upstream.0..upstream.1];
        if up.is_empty() {
            return Err(err("version number is empty"));
        }
        if !up.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+~:".contains(&b)) {
            return Err(err("invalid character in version number"));
        }
        if !text[revision.0..revision.1].bytes().all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b)) {
            return Err(err("invalid character in revision number"));
        }
        Ok(Version { text: text.to_owned(), epoch, upstream, revision })
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version (between the epoch and the revision).
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    /// The Debian revision, empty when the version has none.
    pub fn revision(&self) -> &str {
        &self.text[self.revision.0..self.revision.1]
    }

    /// The version as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// dpkg's character weight for the non-digit part of `verrevcmp`; 0 is the end of string.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: compares an upstream version or a revision.
pub fn compare_fragment(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run: skip leading zeros, then the longer run is larger, else the first
        // differing digit decides.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_fragment(self.upstream(), other.upstream()))
            .then_with(|| compare_fragment(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.text)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Version, VersionError> {
        Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let v = Version::parse(" 1:2.30-1+deb12u1 ").expect("valid");
        assert_eq!((v.epoch(), v.upstream(), v.revision()), (1, "2.30", "1+deb12u1"));
        assert_eq!(v.as_str(), "1:2.30-1+deb12u1");
        let v = Version::parse("1.2-3-4").expect("valid");
        assert_eq!((v.upstream(), v.revision()), ("1.2-3", "4"));
        let v = Version::parse("0:1:2").expect("colon in upstream is allowed with an epoch");
        assert_eq!(v.upstream(), "1:2");
    }
}
