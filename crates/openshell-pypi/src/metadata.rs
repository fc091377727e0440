//! Core metadata (`METADATA` / PEP 658 `.metadata` files), PEP 508 requirements and
//! environment markers.
//!
//! Hand-written, not `pep508_rs` (0.9.2, the latest on crates.io): it is built on
//! `pep440_rs`, whose specifiers answer otherwise than packaging on `>V` with V a
//! prerelease (see the top of `version.rs`, checked by `tests/pep440_rs.rs`), and a
//! requirement's version specifier and a marker's version comparison would both go
//! through them; ours use [`SpecifierSet`] and [`Version`], which answer as packaging.

use std::collections::BTreeSet;
use std::fmt;

use crate::version::{InvalidSpecifier, InvalidVersion, SpecifierSet, Version};
use crate::wheel::{Target, is_valid_name, normalize_name};

/// A metadata file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A required field is missing.
    #[error("core metadata has no {0} field")]
    Missing(&'static str),
    /// The version does not parse.
    #[error("core metadata: {0}")]
    Version(#[from] InvalidVersion),
    /// A Requires-Dist line does not parse.
    #[error("core metadata: {0}")]
    Requirement(#[from] RequirementError),
    /// Requires-Python does not parse.
    #[error("core metadata: Requires-Python {0:?} is not a specifier set")]
    RequiresPython(String),
}

/// The parts of core metadata the resolver uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMetadata {
    /// `Name`.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Requires-Dist`, in file order.
    pub requires_dist: Vec<Requirement>,
    /// `Requires-Python`.
    pub requires_python: Option<SpecifierSet>,
    /// `Provides-Extra`, normalized.
    pub provides_extra: Vec<String>,
}

/// The header fields of an RFC 822-style metadata file (`Key: value` lines, continuation
/// lines starting with whitespace, headers end at the first blank line).
pub fn parse_headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

impl CoreMetadata {
    /// Parse a `METADATA` file (invalid UTF-8 is replaced).
    pub fn parse(bytes: &[u8]) -> Result<CoreMetadata, MetadataError> {
        let text = String::from_utf8_lossy(bytes);
        let headers = parse_headers(&text);
        let get = |k: &str| headers.iter().find(|(h, _)| h.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        let name = get("Name").ok_or(MetadataError::Missing("Name"))?;
        let version = Version::parse(&get("Version").ok_or(MetadataError::Missing("Version"))?)?;
        let mut requires_dist = Vec::new();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("Requires-Dist") {
                requires_dist.push(Requirement::parse(v)?);
            }
        }
        let requires_python = match get("Requires-Python") {
            None => None,
            Some(s) if s.trim().is_empty() => None,
            Some(s) => Some(SpecifierSet::parse(&s).map_err(|_| MetadataError::RequiresPython(s.clone()))?),
        };
        let provides_extra = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Provides-Extra"))
            .map(|(_, v)| normalize_name(v))
            .collect();
        Ok(CoreMetadata { name, version, requires_dist, requires_python, provides_extra })
    }
}

/// A requirement string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid requirement {input:?}: {reason}")]
pub struct RequirementError {
    /// The text.
    pub input: String,
    /// What is wrong (boxed: resolver errors carry this one inside theirs).
    pub reason: Box<RequirementProblem>,
}

/// What is wrong with a requirement string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementProblem {
    /// The project name is not a valid name.
    #[error("invalid project name")]
    Name,
    /// `[` without `]`.
    #[error("unclosed extras")]
    UnclosedExtras,
    /// An extra that is not a valid name.
    #[error("invalid extra name")]
    Extra,
    /// `@` with nothing after it.
    #[error("empty URL")]
    EmptyUrl,
    /// `(` without `)` around the specifiers.
    #[error("unclosed parenthesis")]
    UnclosedParenthesis,
    /// The version specifiers do not parse.
    #[error(transparent)]
    Specifiers(#[from] InvalidSpecifier),
    /// The environment marker does not parse.
    #[error(transparent)]
    Marker(#[from] MarkerError),
}

/// An environment marker that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// A quote that is not closed.
    #[error("unterminated string")]
    UnterminatedString,
    /// Comparison characters that are no operator.
    #[error("unknown operator {0:?}")]
    Operator(String),
    /// A character no token starts with.
    #[error("unexpected character {0:?}")]
    Character(char),
    /// Not a marker variable or a string where one is needed.
    #[error("expected a marker variable or string, found {0}")]
    NotAValue(Found),
    /// `(` without `)`.
    #[error("missing )")]
    MissingParenthesis,
    /// Not an operator between two values.
    #[error("expected a comparison operator, found {0}")]
    NotAnOperator(Found),
    /// Tokens after a whole marker.
    #[error("unexpected {0} in marker")]
    Trailing(Found),
}

/// The token a marker's parser found instead of what it expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found(Option<String>);

impl Found {
    fn at(toks: &[Tok], i: usize) -> Found {
        Found(toks.get(i).map(Tok::text))
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(text) => write!(f, "`{text}`"),
            None => f.write_str("the end"),
        }
    }
}

/// A PEP 508 dependency specification: `name[extra,…] (specifiers) ; marker` or
/// `name @ url ; marker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Name as written.
    pub name: String,
    /// Requested extras, normalized.
    pub extras: BTreeSet<String>,
    /// Version specifiers.
    pub specifiers: SpecifierSet,
    /// Direct URL reference (`@ url`), not supported by the resolver.
    pub url: Option<String>,
    /// Environment marker.
    pub marker: Option<Marker>,
    /// The original text.
    pub text: String,
}

impl Requirement {
    /// Parse a PEP 508 requirement.
    pub fn parse(text: &str) -> Result<Requirement, RequirementError> {
        let err = |reason: RequirementProblem| RequirementError { input: text.to_string(), reason: Box::new(reason) };
        let (body, marker) = split_marker(text);
        let marker = match marker {
            Some(m) => Some(Marker::parse(m).map_err(|e| err(e.into()))?),
            None => None,
        };
        let body = body.trim();
        let name_end =
            body.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))).unwrap_or(body.len());
        let name = &body[..name_end];
        if !is_valid_name(name) {
            return Err(err(RequirementProblem::Name));
        }
        let mut rest = body[name_end..].trim_start();
        let mut extras = BTreeSet::new();
        if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or_else(|| err(RequirementProblem::UnclosedExtras))?;
            for e in r[..close].split(',') {
                let e = e.trim();
                if e.is_empty() {
                    continue;
                }
                if !is_valid_name(e) {
                    return Err(err(RequirementProblem::Extra));
                }
                extras.insert(normalize_name(e));
            }
            rest = r[close + 1..].trim_start();
        }
        let mut url = None;
        let mut spec_text = rest;
        if let Some(u) = rest.strip_prefix('@') {
            let u = u.trim();
            if u.is_empty() {
                return Err(err(RequirementProblem::EmptyUrl));
            }
            url = Some(u.to_string());
            spec_text = "";
        } else if let Some(inner) = rest.strip_prefix('(') {
            spec_text = inner.strip_suffix(')').ok_or_else(|| err(RequirementProblem::UnclosedParenthesis))?;
        }
        let specifiers = SpecifierSet::parse(spec_text).map_err(|e| err(e.into()))?;
        Ok(Requirement { name: name.to_string(), extras, specifiers, url, marker, text: text.trim().to_string() })
    }

    /// The normalized project name.
    pub fn normalized_name(&self) -> String {
        normalize_name(&self.name)
    }

    /// Whether the requirement applies in `env` (no marker: always).
    pub fn applies(&self, env: &MarkerEnv) -> bool {
        self.marker.as_ref().is_none_or(|m| m.evaluate(env))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Split `body ; marker`, ignoring a `;` inside a URL (PEP 508 requires whitespace before
/// the `;` after a URL).
fn split_marker(text: &str) -> (&str, Option<&str>) {
    let has_url = text.split(';').next().is_some_and(|b| b.contains('@'));
    if has_url {
        if let Some(i) = text.find(" ;").or_else(|| text.find("\t;")) {
            return (&text[..i], Some(&text[i + 2..]));
        }
        return (text, None);
    }
    match text.split_once(';') {
        Some((b, m)) => (b, Some(m)),
        None => (text, None),
    }
}

/// The values markers are evaluated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerEnv {
    /// `python_version` (`3.13`).
    pub python_version: String,
    /// `python_full_version` (`3.13.5`).
    pub python_full_version: String,
    /// `os_name` (`posix`).
    pub os_name: String,
    /// `sys_platform` (`linux`).
    pub sys_platform: String,
    /// `platform_machine` (`x86_64`).
    pub platform_machine: String,
    /// `platform_python_implementation` (`CPython`).
    pub platform_python_implementation: String,
    /// `platform_release` (unknown ahead of time: empty).
    pub platform_release: String,
    /// `platform_system` (`Linux`).
    pub platform_system: String,
    /// `platform_version` (unknown ahead of time: empty).
    pub platform_version: String,
    /// `implementation_name` (`cpython`).
    pub implementation_name: String,
    /// `implementation_version` (`3.13.5`).
    pub implementation_version: String,
    /// `extra`: the extra being evaluated, empty for none.
    pub extra: String,
}

impl MarkerEnv {
    /// The environment of `target` (CPython on Linux), with no extra.
    pub fn for_target(target: &Target) -> MarkerEnv {
        MarkerEnv {
            python_version: format!("{}.{}", target.python_major, target.python_minor),
            python_full_version: target.python_full_version.clone(),
            os_name: "posix".into(),
            sys_platform: "linux".into(),
            platform_machine: target.arch.clone(),
            platform_python_implementation: "CPython".into(),
            platform_release: String::new(),
            platform_system: "Linux".into(),
            platform_version: String::new(),
            implementation_name: "cpython".into(),
            implementation_version: target.python_full_version.clone(),
            extra: String::new(),
        }
    }

    /// The same environment with `extra` set.
    pub fn with_extra(&self, extra: &str) -> MarkerEnv {
        MarkerEnv { extra: extra.to_string(), ..self.clone() }
    }

    fn get(&self, var: &str) -> Option<&str> {
        Some(match var {
            "python_version" => &self.python_version,
            "python_full_version" => &self.python_full_version,
            "os_name" | "os.name" => &self.os_name,
            "sys_platform" | "sys.platform" => &self.sys_platform,
            "platform_machine" | "platform.machine" => &self.platform_machine,
            "platform_python_implementation" | "platform.python_implementation" | "python_implementation" => {
                &self.platform_python_implementation
            }
            "platform_release" | "platform.release" => &self.platform_release,
            "platform_system" => &self.platform_system,
            "platform_version" | "platform.version" => &self.platform_version,
            "implementation_name" => &self.implementation_name,
            "implementation_version" => &self.implementation_version,
            "extra" => &self.extra,
            _ => return None,
        })
    }
}

/// A marker operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An environment variable (`python_version`).
    Var(String),
    /// A quoted string.
    Str(String),
}

/// A parsed environment marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `a and b`
    And(Box<Marker>, Box<Marker>),
    /// `a or b`
    Or(Box<Marker>, Box<Marker>),
    /// `lhs op rhs`
    Compare(Value, String, Value),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Str(String),
    Ident(String),
    Op(String),
}

impl Tok {
    /// The token as written (strings in single quotes).
    fn text(&self) -> String {
        match self {
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Ident(s) | Tok::Op(s) => s.clone(),
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<Tok>, MarkerError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..].iter().position(|&x| x == c).ok_or(MarkerError::UnterminatedString)?;
            out.push(Tok::Str(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if "<>=!~".contains(c) {
            let mut op = String::from(c);
            i += 1;
            while i < chars.len() && "<>=!~".contains(chars[i]) {
                op.push(chars[i]);
                i += 1;
            }
            if !["<", "<=", ">", ">=", "==", "!=", "~=", "==="].contains(&op.as_str()) {
                return Err(MarkerError::Operator(op));
            }
            out.push(Tok::Op(op));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            return Err(MarkerError::Character(c));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

impl Parser {
    fn peek_ident(&self, w: &str) -> bool {
        matches!(self.toks.get(self.i), Some(Tok::Ident(x)) if x == w)
    }
    fn or(&mut self) -> Result<Marker, MarkerError> {
        let mut m = self.and()?;
        while self.peek_ident("or") {
            self.i += 1;
            m = Marker::Or(Box::new(m), Box::new(self.and()?));
        }
        Ok(m)
    }
    fn and(&mut self) -> Result<Marker, MarkerError> {
        let mut m = self.atom()?;
        while self.peek_ident("and") {
            self.i += 1;
            m = Marker::And(Box::new(m), Box::new(self.atom()?));
        }
        Ok(m)
    }
    fn value(&mut self) -> Result<Value, MarkerError> {
        match self.toks.get(self.i).cloned() {
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(Value::Str(s))
            }
            Some(Tok::Ident(v)) if MarkerEnv::for_target(&Target::cpython313_manylinux_x86_64()).get(&v).is_some() => {
                self.i += 1;
                Ok(Value::Var(v))
            }
            _ => Err(MarkerError::NotAValue(Found::at(&self.toks, self.i))),
        }
    }
    fn atom(&mut self) -> Result<Marker, MarkerError> {
        if self.toks.get(self.i) == Some(&Tok::LParen) {
            self.i += 1;
            let m = self.or()?;
            if self.toks.get(self.i) != Some(&Tok::RParen) {
                return Err(MarkerError::MissingParenthesis);
            }
            self.i += 1;
            return Ok(m);
        }
        let lhs = self.value()?;
        let op = match self.toks.get(self.i).cloned() {
            Some(Tok::Op(o)) => {
                self.i += 1;
                o
            }
            Some(Tok::Ident(w)) if w == "in" => {
                self.i += 1;
                "in".to_string()
            }
            Some(Tok::Ident(w))
                if w == "not" && matches!(self.toks.get(self.i + 1), Some(Tok::Ident(x)) if x == "in") =>
            {
                self.i += 2;
                "not in".to_string()
            }
            _ => return Err(MarkerError::NotAnOperator(Found::at(&self.toks, self.i))),
        };
        let rhs = self.value()?;
        Ok(Marker::Compare(lhs, op, rhs))
    }
}

/// Variables compared as PEP 440 versions when both sides parse.
const VERSION_VARS: [&str; 4] = ["python_version", "python_full_version", "implementation_version", "platform_release"];

impl Marker {
    /// Parse a marker expression.
    pub fn parse(text: &str) -> Result<Marker, MarkerError> {
        let toks = tokenize(text)?;
        let mut p = Parser { toks, i: 0 };
        let m = p.or()?;
        if p.i != p.toks.len() {
            return Err(MarkerError::Trailing(Found::at(&p.toks, p.i)));
        }
        Ok(m)
    }

    /// Evaluate against `env` (packaging's rules: a version comparison when the operator and
    /// both sides allow it, string comparison otherwise; `extra` values compare normalized).
    pub fn evaluate(&self, env: &MarkerEnv) -> bool {
        match self {
            Marker::And(a, b) => a.evaluate(env) && b.evaluate(env),
            Marker::Or(a, b) => a.evaluate(env) || b.evaluate(env),
            Marker::Compare(l, op, r) => {
                let is_extra = matches!(l, Value::Var(v) if v == "extra") || matches!(r, Value::Var(v) if v == "extra");
                let resolve = |v: &Value| -> String {
                    let s = match v {
                        Value::Var(name) => env.get(name).unwrap_or("").to_string(),
                        Value::Str(s) => s.clone(),
                    };
                    if is_extra { normalize_name(&s) } else { s }
                };
                let (ls, rs) = (resolve(l), resolve(r));
                let version_like =
                    [l, r].iter().any(|v| matches!(v, Value::Var(n) if VERSION_VARS.contains(&n.as_str())));
                if version_like
                    && op != "in"
                    && op != "not in"
                    && let Ok(set) = SpecifierSet::parse(&format!("{op}{rs}"))
                    && let Ok(lv) = Version::parse(&ls)
                {
                    return set.contains_any(&lv);
                }
                match op.as_str() {
                    "==" | "===" => ls == rs,
                    "!=" => ls != rs,
                    "<" => ls < rs,
                    "<=" => ls <= rs,
                    ">" => ls > rs,
                    ">=" => ls >= rs,
                    "in" => rs.contains(&ls),
                    "not in" => !rs.contains(&ls),
                    // `~=` on non-versions is undefined: false.
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> MarkerEnv {
        MarkerEnv::for_target(&Target::cpython313_manylinux_x86_64())
    }

    #[test]
    fn markers_evaluate_for_the_target() {
        let cases = [
            ("python_version >= '3.8'", true),
            ("python_version < '3.10'", false),
            ("python_version == '3.13'", true),
            ("python_version ~= '3.9'", true),
            ("python_full_version >= '3.13.5'", true),
            ("python_full_version < '3.13.1'", false),
            ("python_version == '3.*'", true),
            ("sys_platform == 'win32'", false),
            ("sys_platform != 'win32' and platform_machine == 'x86_64'", true),
            ("platform_system == 'Darwin' or (os_name == 'posix' and implementation_name == 'cpython')", true),
            ("platform_python_implementation != 'PyPy'", true),
            ("'linux' in sys_platform", true),
            ("'arm' not in platform_machine", true),
            ("extra == 'test'", false),
            ("python_version > '3.13' or extra == \"socks\"", false),
        ];
        for (m, want) in cases {
            assert_eq!(Marker::parse(m).expect(m).evaluate(&env()), want, "{m}");
        }
        let m = Marker::parse("extra == 'Socks_Proxy'").expect("parse");
        assert!(m.evaluate(&env().with_extra("socks-proxy")));
        for bad in
            ["python_version", "python_version >", "foo == 'x'", "(python_version == '3'", "python_version <> '3'"]
        {
            assert!(Marker::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn marker_errors_name_what_was_found() {
        let cases = [
            ("python_version", "expected a comparison operator, found the end"),
            ("foo == 'x'", "expected a marker variable or string, found `foo`"),
            ("python_version >= '3' 'x'", "unexpected `'x'` in marker"),
            ("(python_version == '3'", "missing )"),
            ("python_version <> '3'", "unknown operator \"<>\""),
            ("python_version == '3", "unterminated string"),
        ];
        for (marker, want) in cases {
            assert_eq!(Marker::parse(marker).expect_err(marker).to_string(), want, "{marker}");
        }
        let err = Requirement::parse("requests ; os_name ==").expect_err("no value");
        assert_eq!(
            err.to_string(),
            "invalid requirement \"requests ; os_name ==\": expected a marker variable or string, found the end"
        );
    }

    #[test]
    fn requirements_parse() {
        let r = Requirement::parse("Requests[Socks, security] (>=2.0,<3) ; python_version >= '3.7'").expect("parse");
        assert_eq!(r.name, "Requests");
        assert_eq!(r.extras, BTreeSet::from(["security".to_string(), "socks".to_string()]));
        assert_eq!(r.specifiers.to_string(), ">=2.0,<3");
        assert!(r.applies(&env()));
        let r = Requirement::parse("idna>=2.5").expect("parse");
        assert_eq!(r.normalized_name(), "idna");
        let r = Requirement::parse("pkg @ https://example.test/pkg.whl ; sys_platform == 'linux'").expect("parse");
        assert_eq!(r.url.as_deref(), Some("https://example.test/pkg.whl"));
        assert!(r.marker.is_some());
        for bad in ["", ">=1", "pkg[", "pkg >=", "pkg (>=1", "pkg ; foo"] {
            assert!(Requirement::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_files() {
        let text = b"Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.0.post1\nRequires-Python: >=3.8\nRequires-Dist: idna (>=2.5)\nRequires-Dist: pysocks!=1.5.7 ; extra == 'socks'\nProvides-Extra: Socks\nDescription: long\n  text\n\nBody: not a header\n";
        let m = CoreMetadata::parse(text).expect("parses");
        assert_eq!(m.name, "Demo_Pkg");
        assert_eq!(m.version.to_string(), "1.0.post1");
        assert_eq!(m.requires_dist.len(), 2);
        assert_eq!(m.provides_extra, ["socks"]);
        assert!(m.requires_python.is_some());
        assert_eq!(CoreMetadata::parse(b"Name: x\n"), Err(MetadataError::Missing("Version")));
    }
}
