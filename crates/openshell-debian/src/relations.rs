//! Relationship fields: `Depends`, `Pre-Depends`, `Conflicts`, `Breaks`, `Provides`, ...
//!
//! Syntax (Debian policy §7.1, dpkg's `parsedeps`): a comma-separated list of groups,
//! each group a `|`-separated list of alternatives, each alternative
//! `name[:archqual] [(op version)] [[arch ...]] [<profile ...> ...]`.
//! - `op` is one of `<<`, `<=`, `=`, `>=`, `>>`; the obsolete `<` and `>` are read as
//!   `<=` and `>=`, as dpkg does.
//! - `:archqual` is the Multi-Arch qualifier (`any`, `native` or an architecture).
//! - `[amd64 !i386]` restricts the relation to architectures (source packages);
//!   see [`Relation::applies_to`].
//! - build profiles `<!nocheck>` are parsed and ignored (they only matter for builds).
//!
//! Empty groups (for instance from a trailing comma) are skipped; an empty alternative
//! (`a | | b`) is an error.

use std::fmt;

use crate::version::{Version, VersionError};

/// A relation syntax error: the field, its text and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} `{text}`: {message}")]
pub struct RelationError {
    /// The field name (`Depends`, ...) as given by the caller.
    pub field: String,
    /// The offending text (the alternative being parsed).
    pub text: String,
    /// What is wrong.
    pub message: String,
}

/// A version comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionOp {
    /// `<<`: strictly earlier.
    Lt,
    /// `<=`: earlier or equal.
    Le,
    /// `=`: exactly equal.
    Eq,
    /// `>=`: later or equal.
    Ge,
    /// `>>`: strictly later.
    Gt,
}

impl VersionOp {
    /// The operator as written in control files.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionOp::Lt => "<<",
            VersionOp::Le => "<=",
            VersionOp::Eq => "=",
            VersionOp::Ge => ">=",
            VersionOp::Gt => ">>",
        }
    }
}

impl fmt::Display for VersionOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version constraint such as `(>= 1.2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConstraint {
    /// The operator.
    pub op: VersionOp,
    /// The version on the right-hand side.
    pub version: Version,
}

impl VersionConstraint {
    /// Whether `v` satisfies the constraint.
    pub fn matches(&self, v: &Version) -> bool {
        let ord = v.cmp(&self.version);
        match self.op {
            VersionOp::Lt => ord.is_lt(),
            VersionOp::Le => ord.is_le(),
            VersionOp::Eq => ord.is_eq(),
            VersionOp::Ge => ord.is_ge(),
            VersionOp::Gt => ord.is_gt(),
        }
    }
}

impl fmt::Display for VersionConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.version)
    }
}

/// A Multi-Arch qualifier after the package name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ArchQualifier {
    /// `:any`: any architecture, satisfied only by `Multi-Arch: allowed` packages
    /// (for dependencies; conflicts match any architecture).
    Any,
    /// `:native`: the native architecture.
    Native,
    /// `:<arch>`: that architecture.
    Arch(String),
}

impl fmt::Display for ArchQualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchQualifier::Any => f.write_str("any"),
            ArchQualifier::Native => f.write_str("native"),
            ArchQualifier::Arch(a) => f.write_str(a),
        }
    }
}

/// One entry of an architecture restriction list `[amd64 !i386]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArchRestriction {
    /// `!arch`.
    pub negated: bool,
    /// The architecture name or wildcard (`linux-any`, `any-amd64`, ...).
    pub arch: String,
}

/// One alternative of a relation: a package name with optional qualifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The package (or virtual package) name.
    pub name: String,
    /// The Multi-Arch qualifier, if any.
    pub arch_qualifier: Option<ArchQualifier>,
    /// The version constraint, if any.
    pub constraint: Option<VersionConstraint>,
    /// The architecture restriction list (empty: all architectures).
    pub arches: Vec<ArchRestriction>,
}

impl Relation {
    /// An unqualified, unversioned relation on `name`.
    pub fn named(name: impl Into<String>) -> Relation {
        Relation { name: name.into(), arch_qualifier: None, constraint: None, arches: Vec::new() }
    }

    /// Whether the architecture restriction list admits `arch` (a plain Debian
    /// architecture such as `amd64`). Wildcards `any`, `linux-any`, `any-<cpu>` and
    /// `<os>-any` are understood for Linux architectures.
    pub fn applies_to(&self, arch: &str) -> bool {
        if self.arches.is_empty() {
            return true;
        }
        let positive = self.arches.iter().any(|r| !r.negated);
        if positive {
            self.arches.iter().any(|r| !r.negated && arch_matches(&r.arch, arch))
        } else {
            !self.arches.iter().any(|r| r.negated && arch_matches(&r.arch, arch))
        }
    }

    /// Whether `version` satisfies the version constraint (true when there is none).
    pub fn version_matches(&self, version: &Version) -> bool {
        self.constraint.as_ref().is_none_or(|c| c.matches(version))
    }
}

/// Matches an architecture wildcard against a Linux architecture name.
fn arch_matches(pattern: &str, arch: &str) -> bool {
    if pattern == arch || pattern == "any" {
        return true;
    }
    // Linux architectures are named by their CPU alone (`amd64` = `linux-amd64`).
    let (os, cpu) = arch.split_once('-').unwrap_or(("linux", arch));
    match pattern.split_once('-') {
        Some(("any", c)) => c == cpu,
        Some((o, "any")) => o == os,
        Some((o, c)) => o == os && c == cpu,
        None => false,
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some(c) = &self.constraint {
            write!(f, " ({c})")?;
        }
        if !self.arches.is_empty() {
            let list: Vec<String> =
                self.arches.iter().map(|a| format!("{}{}", if a.negated { "!" } else { "" }, a.arch)).collect();
            write!(f, " [{}]", list.join(" "))?;
        }
        Ok(())
    }
}

/// A group of alternatives: satisfied when any one of them is.
pub type Alternatives = Vec<Relation>;

/// Formats a group of alternatives as `a | b (>= 1)`.
pub fn display_alternatives(group: &[Relation]) -> String {
    group.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | ")
}

/// One `Provides` entry: a virtual package name, optionally with an exact version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provide {
    /// The provided (virtual) package name.
    pub name: String,
    /// The version from `(= version)`; unversioned provides satisfy only unversioned
    /// relations.
    pub version: Option<Version>,
}

impl fmt::Display for Provide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} (= {v})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Parses a relationship field (`Depends`, `Pre-Depends`, `Conflicts`, `Breaks`, ...).
/// `field` names the field in errors.
pub fn parse_relations(field: &str, text: &str) -> Result<Vec<Alternatives>, RelationError> {
    let mut out = Vec::new();
    for group in text.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            alts.push(parse_relation(field, alt)?);
        }
        out.push(alts);
    }
    Ok(out)
}

/// Parses a `Provides` field: names with optional `(= version)`, no alternatives and no
/// other operators.
pub fn parse_provides(field: &str, text: &str) -> Result<Vec<Provide>, RelationError> {
    let mut out = Vec::new();
    for entry in text.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let err = |message: &str| RelationError {
            field: field.to_owned(),
            text: entry.trim().to_owned(),
            message: message.to_owned(),
        };
        if entry.contains('|') {
            return Err(err("alternatives are not allowed in Provides"));
        }
        let r = parse_relation(field, entry)?;
        if !r.arches.is_empty() {
            return Err(err("architecture restrictions are not allowed in Provides"));
        }
        let version = match r.constraint {
            None => None,
            Some(VersionConstraint { op: VersionOp::Eq, version }) => Some(version),
            Some(_) => return Err(err("only `=` is allowed in Provides")),
        };
        out.push(Provide { name: r.name, version });
    }
    Ok(out)
}

/// A byte cursor over one alternative.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.s[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Takes characters while `f` holds.
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    /// Takes text up to (not including) `end`; `None` if `end` never comes.
    fn until(&mut self, end: char) -> Option<&str> {
        let rest = &self.s[self.pos..];
        let i = rest.find(end)?;
        self.pos += i + end.len_utf8();
        Some(&rest[..i])
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_')
}

/// Parses one alternative.
fn parse_relation(field: &str, text: &str) -> Result<Relation, RelationError> {
    let trimmed = text.trim();
    let err = |message: String| RelationError { field: field.to_owned(), text: trimmed.to_owned(), message };
    if trimmed.is_empty() {
        return Err(err("empty alternative".into()));
    }
    let mut c = Cursor { s: trimmed, pos: 0 };
    let name = c.take_while(is_name_char).to_owned();
    if name.is_empty() {
        return Err(err("expected a package name".into()));
    }
    if !name.starts_with(|ch: char| ch.is_ascii_alphanumeric()) {
        return Err(err(format!("package name `{name}` must start with a letter or digit")));
    }
    let mut rel = Relation::named(name);
    if c.eat(':') {
        let q = c.take_while(is_name_char);
        rel.arch_qualifier = Some(match q {
            "" => return Err(err("empty architecture qualifier after `:`".into())),
            "any" => ArchQualifier::Any,
            "native" => ArchQualifier::Native,
            a => ArchQualifier::Arch(a.to_owned()),
        });
    }
    c.skip_ws();
    if c.eat('(') {
        let inner = c.until(')').ok_or_else(|| err("missing `)` after version".into()))?;
        let inner = inner.trim();
        let (op, rest) = if let Some(r) = inner.strip_prefix("<<") {
            (VersionOp::Lt, r)
        } else if let Some(r) = inner.strip_prefix("<=") {
            (VersionOp::Le, r)
        } else if let Some(r) = inner.strip_prefix(">>") {
            (VersionOp::Gt, r)
        } else if let Some(r) = inner.strip_prefix(">=") {
            (VersionOp::Ge, r)
        } else if let Some(r) = inner.strip_prefix('=') {
            (VersionOp::Eq, r)
        } else if let Some(r) = inner.strip_prefix('<') {
            // Obsolete, means `<=` (dpkg warns).
            (VersionOp::Le, r)
        } else if let Some(r) = inner.strip_prefix('>') {
            (VersionOp::Ge, r)
        } else {
            return Err(err(format!("expected a version operator (<<, <=, =, >=, >>) in `({inner})`")));
        };
        let version = Version::parse(rest).map_err(|e: VersionError| err(e.to_string()))?;
        rel.constraint = Some(VersionConstraint { op, version });
        c.skip_ws();
    }
    if c.eat('[') {
        let inner = c.until(']').ok_or_else(|| err("missing `]` after architecture list".into()))?;
        for a in inner.split_whitespace() {
            let (negated, arch) = match a.strip_prefix('!') {
                Some(x) => (true, x),
                None => (false, a),
            };
            if arch.is_empty() || !arch.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
                return Err(err(format!("invalid architecture `{a}` in restriction list")));
            }
            rel.arches.push(ArchRestriction { negated, arch: arch.to_owned() });
        }
        if rel.arches.is_empty() {
            return Err(err("empty architecture restriction list".into()));
        }
        if rel.arches.iter().any(|a| a.negated) && rel.arches.iter().any(|a| !a.negated) {
            return Err(err("architecture list mixes negated and plain entries".into()));
        }
        c.skip_ws();
    }
    // Build profile restriction formulas: parsed for syntax, otherwise ignored.
    while c.eat('<') {
        let inner = c.until('>').ok_or_else(|| err("missing `>` after build profile list".into()))?;
        if inner.trim().is_empty() {
            return Err(err("empty build profile list".into()));
        }
        c.skip_ws();
    }
    if let Some(rest) = c.s.get(c.pos..).filter(|r| !r.is_empty()) {
        return Err(err(format!("unexpected `{rest}`")));
    }
    Ok(rel)
}
