//! A YAML document as a tree of nodes that remember where they came from.
//!
//! serde's derive stops at the first error, and we must report every error of a
//! file with its line and column. So serde-saphyr deserializes the document into
//! this position-carrying tree (through its `Spanned` wrapper), and
//! [`crate::decode`] turns the tree into typed policy values, collecting every
//! problem on the way. Duplicate keys are passed through here and reported by the
//! decoder, so that all of them are found, not only the first.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML node with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

/// The value of a node, after YAML's core-schema scalar resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; duplicates are kept so that the decoder can report them.
    Map(Vec<(Node, Node)>),
}

impl Kind {
    /// A short name of the YAML type, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// A document that is not well-formed YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document into a [`Node`] tree. An empty document is `Null`.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    // YAML 1.2 core schema: only true/false (any case) are booleans. Without this, YAML 1.1
    // spellings (`y`, `n`, `yes`, `no`, `on`, `off`) become booleans, so a policy key named
    // `y` or a query value `on` would be rejected as "not a string".
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Node>(source, options).map_err(|err| {
        let pos = err
            .location()
            .map(|l| Pos { line: clamp(l.line()), column: clamp(l.column()) })
            .filter(|p| p.line > 0)
            .unwrap_or(Pos::START);
        let message = UserMessageFormatter.format_message(&err).into_owned();
        SyntaxError { pos, message }
    })
}

fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned: Spanned<Kind> = Spanned::deserialize(d)?;
        let loc = spanned.referenced;
        Ok(Node { pos: Pos { line: clamp(loc.line()), column: clamp(loc.column()) }, kind: spanned.value })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Kind, E> {
        i128::try_from(v).map(Kind::Int).map_err(|_| E::custom("integer is too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: serde::de::Error>(self, _v: &[u8]) -> Result<Kind, E> {
        Err(E::custom("binary values are not allowed in a policy"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = a.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = a.next_key::<Node>()? {
            let v = a.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(Kind::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("a: 1\nb:\n  - x\n").expect("parses");
        let Kind::Map(entries) = n.kind else { panic!("not a map") };
        assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, column: 4 });
        let Kind::Seq(items) = &entries[1].1.kind else { panic!("not a seq") };
        assert_eq!(items[0].pos, Pos { line: 3, column: 5 });
    }

    #[test]
    fn duplicates_are_kept_for_the_decoder() {
        let n = parse("a: 1\na: 2\n").expect("parses");
        let Kind::Map(entries) = n.kind else { panic!("not a map") };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let n = parse("a: \"443\"\n").expect("parses");
        let Kind::Map(entries) = n.kind else { panic!("not a map") };
        assert_eq!(entries[0].1.kind, Kind::Str("443".into()));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: [1, 2\n").expect_err("fails");
        assert_eq!(e.pos, Pos { line: 1, column: 4 });
        assert!(!e.message.contains('\n'));
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").expect("parses").kind, Kind::Null);
        assert_eq!(parse("# only a comment\n").expect("parses").kind, Kind::Null);
    }
}
