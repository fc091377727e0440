//! Segment globs: the one matcher behind REST paths, binary paths, query values
//! and (with restrictions checked in [`crate::host`]) endpoint hosts.
//!
//! A value is split at a separator (`/` for paths, `.` for hosts and query values).
//! - `*` matches any run of characters inside one segment (possibly empty).
//! - `?` matches one character inside a segment; `[a-z0-9]` and `[!x]` match one
//!   character from (or not from) a set.
//! - `**` as a whole segment matches one or more whole segments; next to other
//!   characters (`**secret**`) it behaves like `*`.
//! - Everything else matches itself (ASCII case-insensitively for hosts).

use std::fmt;

/// A compiled glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    sep: char,
    fold_case: bool,
    segments: Vec<Segment>,
    /// No wildcard at all: matching is string equality.
    literal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: one or more whole segments.
    Many,
    Literal(String),
    Pattern(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Char(char),
    Star,
    Question,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

/// Why a glob could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("unclosed `[` in pattern `{0}`")]
    UnclosedClass(String),
}

impl Glob {
    /// Compiles `source` with `sep` as the segment separator.
    pub fn new(source: &str, sep: char, fold_case: bool) -> Result<Glob, GlobError> {
        let normalized = if fold_case { source.to_ascii_lowercase() } else { source.to_owned() };
        let mut segments = Vec::new();
        let mut literal = true;
        for seg in normalized.split(sep) {
            if seg == "**" {
                literal = false;
                segments.push(Segment::Many);
                continue;
            }
            let toks = tokenize(seg, source)?;
            if toks.iter().all(|t| matches!(t, Tok::Char(_))) {
                segments.push(Segment::Literal(seg.to_owned()));
            } else {
                literal = false;
                segments.push(Segment::Pattern(toks));
            }
        }
        Ok(Glob { source: source.to_owned(), sep, fold_case, segments, literal })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern contains no wildcard.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Whether the pattern has a whole-segment `**`.
    pub fn has_many(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Many))
    }

    /// Number of segments in the pattern.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segments after the last one containing a wildcard, joined by the
    /// separator: the literal suffix every match ends with.
    pub fn literal_suffix(&self) -> String {
        let start = self.segments.iter().rposition(|s| !matches!(s, Segment::Literal(_))).map_or(0, |i| i + 1);
        let parts: Vec<&str> = self.segments[start..]
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                _ => None,
            })
            .collect();
        parts.join(&self.sep.to_string())
    }

    /// Whether `value` matches. For case-folding globs the caller may pass the
    /// value in any case.
    pub fn matches(&self, value: &str) -> bool {
        if self.fold_case && value.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.matches_normalized(&value.to_ascii_lowercase());
        }
        self.matches_normalized(value)
    }

    /// Like [`Glob::matches`], for a value already lower-cased when the glob folds case.
    pub fn matches_normalized(&self, value: &str) -> bool {
        if self.literal {
            return self.source_normalized_eq(value);
        }
        match_segments(&self.segments, value, self.sep)
    }

    fn source_normalized_eq(&self, value: &str) -> bool {
        if self.fold_case {
            self.source.eq_ignore_ascii_case(value)
        } else {
            bytes_eq(self.source.as_bytes(), value.as_bytes())
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl serde::Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

fn tokenize(seg: &str, source: &str) -> Result<Vec<Tok>, GlobError> {
    let mut toks = Vec::new();
    let mut chars = seg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            '?' => toks.push(Tok::Question),
            '[' => {
                let mut negated = false;
                if matches!(chars.peek(), Some('!') | Some('^')) {
                    negated = true;
                    chars.next();
                }
                let mut ranges = Vec::new();
                let mut closed = false;
                let mut first = true;
                while let Some(c) = chars.next() {
                    if c == ']' && !first {
                        closed = true;
                        break;
                    }
                    first = false;
                    if chars.peek() == Some(&'-') {
                        let mut look = chars.clone();
                        look.next();
                        match look.peek() {
                            Some(&hi) if hi != ']' => {
                                chars.next();
                                chars.next();
                                ranges.push((c, hi));
                                continue;
                            }
                            _ => {}
                        }
                    }
                    ranges.push((c, c));
                }
                if !closed {
                    return Err(GlobError::UnclosedClass(source.to_owned()));
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => toks.push(Tok::Char(c)),
        }
    }
    Ok(toks)
}

/// Matches the parts of `value` against the pattern segments, without allocating.
///
/// `**` is "one part, then any number of parts": the classic wildcard algorithm
/// with a single backtrack point (the last `**` seen) applies at the segment
/// level, since every other segment matches exactly one part.
fn match_segments(pat: &[Segment], value: &str, sep: char) -> bool {
    let mut parts = value.split(sep);
    let mut t = 0usize;
    // The pattern index after the last `**`, and the parts it has not absorbed.
    let mut star: Option<(usize, std::str::Split<'_, char>)> = None;
    while let Some(part) = parts.next() {
        match pat.get(t) {
            Some(Segment::Many) => {
                // `**` takes this part; later mismatches give it more.
                t += 1;
                star = Some((t, parts.clone()));
                continue;
            }
            Some(Segment::Literal(l)) if bytes_eq(l.as_bytes(), part.as_bytes()) => {
                t += 1;
                continue;
            }
            Some(Segment::Pattern(toks)) if match_tokens(toks, part) => {
                t += 1;
                continue;
            }
            _ => {}
        }
        // Mismatch: the last `**` absorbs one more part, and matching resumes after it.
        let Some((after, rest)) = &mut star else { return false };
        if rest.next().is_none() {
            return false;
        }
        t = *after;
        parts = rest.clone();
    }
    t == pat.len()
}

/// Wildcard match of one segment: `*`, `?`, classes; linear with one backtrack
/// point, over byte offsets (no allocation).
fn match_tokens(toks: &[Tok], s: &str) -> bool {
    let (mut t, mut c) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while let Some(ch) = char_at(s, c) {
        match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, c));
                t += 1;
                continue;
            }
            Some(tok) if tok_matches(tok, ch) => {
                t += 1;
                c += ch.len_utf8();
                continue;
            }
            _ => {}
        }
        match star {
            Some((st, sc)) => {
                // The star absorbs one more character.
                let next = sc + char_at(s, sc).map_or(1, char::len_utf8);
                t = st + 1;
                c = next;
                star = Some((st, next));
            }
            None => return false,
        }
    }
    toks[t.min(toks.len())..].iter().all(|t| *t == Tok::Star)
}

/// Byte equality for the short strings of segments and binary paths: a plain
/// loop, measurably faster here than a call to `memcmp` (which is what `==` on
/// strings becomes) for strings of a few bytes.
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The character starting at byte offset `i` (always a char boundary here).
fn char_at(s: &str, i: usize) -> Option<char> {
    match s.as_bytes().get(i) {
        Some(&b) if b.is_ascii() => Some(b as char),
        Some(_) => s.get(i..).and_then(|r| r.chars().next()),
        None => None,
    }
}

fn tok_matches(tok: &Tok, ch: char) -> bool {
    match tok {
        Tok::Char(x) => *x == ch,
        Tok::Question => true,
        Tok::Class { negated, ranges } => {
            let inside = ranges.iter().any(|&(lo, hi)| lo <= ch && ch <= hi);
            inside != *negated
        }
        Tok::Star => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Glob {
        Glob::new(p, '/', false).expect("valid glob")
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/repos/*", "/repos/a", true),
            ("/repos/*", "/repos/a/b", false),
            ("/repos/*", "/repos/", true),
            ("/repos/**", "/repos/a/b/c", true),
            ("/repos/**", "/repos", false),
            ("/repos/**", "/repos/a", true),
            ("/**/info/refs*", "/org/repo.git/info/refs", true),
            ("/**/info/refs*", "/info/refs", false),
            ("/a/**/b", "/a/x/y/b", true),
            ("/a/**/b", "/a/b", false),
            ("/a/**secret**", "/a/mysecretfile", true),
            ("/a/**secret**", "/a/x/secret", false),
            ("/v?/x", "/v1/x", true),
            ("/v?/x", "/v10/x", false),
            ("/v[0-9]/x", "/v7/x", true),
            ("/v[!0-9]/x", "/v7/x", false),
            ("/v[!0-9]/x", "/va/x", true),
            ("/exact", "/exact", true),
            ("/exact", "/Exact", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("/a/**/b/**/c", "/a/x/b/y/b/z/c", true),
            ("/a/**/b/**/c", "/a/b/c", false),
            ("/**/b", "/b", false),
            ("/**/b", "/x/b/b", true),
            ("/**", "/", true),
            ("/**", "", false),
            ("/?/*é", "/é/xé", true),
            ("/[à-ä]", "/â", true),
            ("/[à-ä]", "/a", false),
        ];
        for (p, v, want) in cases {
            assert_eq!(path(p).matches(v), *want, "pattern {p} value {v}");
        }
    }

    #[test]
    fn fold_case_for_hosts() {
        let g = Glob::new("*.Example.com", '.', true).expect("valid");
        assert!(g.matches("API.example.COM"));
        assert!(!g.matches("example.com"));
    }

    #[test]
    fn literal_suffix() {
        assert_eq!(Glob::new("*.example.com", '.', true).expect("v").literal_suffix(), "example.com");
        assert_eq!(Glob::new("api.*.example.com", '.', true).expect("v").literal_suffix(), "example.com");
        assert_eq!(Glob::new("a.b", '.', true).expect("v").literal_suffix(), "a.b");
    }

    #[test]
    fn class_errors() {
        assert!(matches!(Glob::new("/a[bc", '/', false), Err(GlobError::UnclosedClass(_))));
        assert!(Glob::new("/a[]]", '/', false).is_ok());
    }
}
