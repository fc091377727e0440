//! node-semver, as npm uses it.
//!
//! npm resolves dependency specs with the `semver` package in *loose* mode
//! (`semver.satisfies(version, range, { loose: true })`, `semver.validRange(spec, true)`).
//! Its range grammar is defined by a pipeline of regular-expression rewrites (hyphen ranges,
//! `~`/`^`, x-ranges, `*`, `>=0.0.0`), and its edge cases (which garbage loose mode drops,
//! how `<1.x` or `^0.0.x` desugar, when a prerelease may match) follow from that pipeline rather
//! than from a grammar. This module is a line-by-line port of that pipeline (node-semver 7.x,
//! `classes/range.js`, `classes/comparator.js`, `classes/semver.js`, `internal/re.js`) so the
//! answers are the same, including for odd input.
//!
//! The `nodejs-semver` crate was evaluated and not used: it represents a comparator set as a
//! single interval and treats an empty intersection (`>=1.2.3 <1.2.3`) as matching every
//! version, where node-semver matches none.
//!
//! Only loose mode without `includePrerelease` is needed by npm's resolver, plus
//! `includePrerelease` for `engines` checks; both are supported.

use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// node-semver's `MAX_LENGTH`: longer version strings are invalid.
const MAX_LENGTH: usize = 256;
/// `Number.MAX_SAFE_INTEGER`: larger numeric components are invalid.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A version string node-semver would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid semver version {input:?}")]
pub struct InvalidVersion {
    /// The rejected text.
    pub input: String,
}

/// A range string node-semver would reject (`semver.validRange` returns `null`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid semver range {input:?}: {reason}")]
pub struct InvalidRange {
    /// The rejected text.
    pub input: String,
    /// Why it was rejected.
    pub reason: RangeProblem,
}

/// Why node-semver would reject a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeProblem {
    /// A comparator its pattern does not match.
    #[error("invalid comparator {0:?}")]
    Comparator(String),
    /// An operator node-semver does not know.
    #[error("invalid operator {0:?}")]
    Operator(String),
    /// A comparator's version is invalid.
    #[error(transparent)]
    Version(#[from] InvalidVersion),
    /// Every comparator was dropped.
    #[error("no valid comparators")]
    NoComparators,
}

/// One dot-separated prerelease identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    /// All digits and below `MAX_SAFE_INTEGER`.
    Numeric(u64),
    /// Anything else.
    AlphaNumeric(String),
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Numeric(n) => write!(f, "{n}"),
            Identifier::AlphaNumeric(s) => f.write_str(s),
        }
    }
}

/// node-semver's `compareIdentifiers`.
fn compare_identifiers(a: &Identifier, b: &Identifier) -> Ordering {
    match (a, b) {
        (Identifier::Numeric(x), Identifier::Numeric(y)) => x.cmp(y),
        (Identifier::Numeric(_), Identifier::AlphaNumeric(_)) => {
            // A string of digits too large to be a number still compares numerically in JS
            // (`+a`); such identifiers are AlphaNumeric here, handled below.
            if let Identifier::AlphaNumeric(s) = b
                && is_all_digits(s)
            {
                return compare_digit_strings(&a.to_string(), s);
            }
            Ordering::Less
        }
        (Identifier::AlphaNumeric(_), Identifier::Numeric(_)) => compare_identifiers(b, a).reverse(),
        (Identifier::AlphaNumeric(x), Identifier::AlphaNumeric(y)) => {
            match (is_all_digits(x), is_all_digits(y)) {
                (true, true) => compare_digit_strings(x, y),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                // JS compares strings by UTF-16 code units; for the ASCII identifiers the
                // grammar allows that is byte order.
                (false, false) => x.as_bytes().cmp(y.as_bytes()),
            }
        }
    }
}

fn is_all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn compare_digit_strings(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A parsed version (node-semver's `SemVer`). Build metadata is kept but ignored when comparing.
#[derive(Debug, Clone)]
pub struct Version {
    /// Major component.
    pub major: u64,
    /// Minor component.
    pub minor: u64,
    /// Patch component.
    pub patch: u64,
    /// Prerelease identifiers (empty for a release).
    pub prerelease: Vec<Identifier>,
    /// Build metadata identifiers.
    pub build: Vec<String>,
}

impl Version {
    /// Parse like `new SemVer(text, { loose: true })`.
    pub fn parse_loose(text: &str) -> Result<Version, InvalidVersion> {
        Self::parse_with(text, true)
    }

    /// Parse like `new SemVer(text)` (strict).
    pub fn parse_strict(text: &str) -> Result<Version, InvalidVersion> {
        Self::parse_with(text, false)
    }

    fn parse_with(text: &str, loose: bool) -> Result<Version, InvalidVersion> {
        let err = || InvalidVersion { input: text.to_string() };
        if text.len() > MAX_LENGTH {
            return Err(err());
        }
        let re = if loose { &RE.loose } else { &RE.full };
        let caps = re.captures(text.trim()).ok_or_else(err)?;
        let num = |i: usize| -> Result<u64, InvalidVersion> {
            let s = caps.get(i).map(|m| m.as_str()).ok_or_else(err)?;
            parse_safe_integer(s).ok_or_else(err)
        };
        let major = num(1)?;
        let minor = num(2)?;
        let patch = num(3)?;
        let prerelease = match caps.get(4) {
            None => Vec::new(),
            Some(m) => m
                .as_str()
                .split('.')
                .map(|id| match parse_safe_integer(id) {
                    Some(n) if is_all_digits(id) && n < MAX_SAFE_INTEGER => Identifier::Numeric(n),
                    _ => Identifier::AlphaNumeric(id.to_string()),
                })
                .collect(),
        };
        let build = caps.get(5).map(|m| m.as_str().split('.').map(str::to_string).collect()).unwrap_or_default();
        Ok(Version { major, minor, patch, prerelease, build })
    }

    /// Whether this is a prerelease (`1.2.3-beta`).
    pub fn is_prerelease(&self) -> bool {
        !self.prerelease.is_empty()
    }

    fn compare_main(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch))
    }

    fn compare_pre(&self, other: &Version) -> Ordering {
        match (self.prerelease.is_empty(), other.prerelease.is_empty()) {
            (false, true) => return Ordering::Less,
            (true, false) => return Ordering::Greater,
            (true, true) => return Ordering::Equal,
            (false, false) => {}
        }
        for i in 0.. {
            match (self.prerelease.get(i), other.prerelease.get(i)) {
                (None, None) => return Ordering::Equal,
                (Some(_), None) => return Ordering::Greater,
                (None, Some(_)) => return Ordering::Less,
                (Some(a), Some(b)) => match compare_identifiers(a, b) {
                    Ordering::Equal => continue,
                    other => return other,
                },
            }
        }
        Ordering::Equal
    }
}

/// Digits only, no sign, at most `MAX_SAFE_INTEGER` (what `+m[1]` followed by the range check
/// in node-semver accepts).
fn parse_safe_integer(s: &str) -> Option<u64> {
    if !is_all_digits(s) {
        return None;
    }
    let trimmed = s.trim_start_matches('0');
    if trimmed.len() > 16 {
        return None;
    }
    let n: u64 = if trimmed.is_empty() { 0 } else { trimmed.parse().ok()? };
    (n <= MAX_SAFE_INTEGER).then_some(n)
}

impl fmt::Display for Version {
    /// node-semver's `version` property: `major.minor.patch[-prerelease]`, no build metadata.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.prerelease.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    /// node-semver's `compare`: main components, then prerelease precedence; build ignored.
    fn cmp(&self, other: &Self) -> Ordering {
        self.compare_main(other).then_with(|| self.compare_pre(other))
    }
}

/// `semver.valid(text, true)`: the normalized version string, if `text` is a version.
pub fn valid_loose(text: &str) -> Option<String> {
    Version::parse_loose(text).ok().map(|v| v.to_string())
}

/// `semver.clean(text, { loose: true })`.
pub fn clean_loose(text: &str) -> Option<String> {
    let t = text.trim().trim_start_matches(['=', 'v']);
    valid_loose(t)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// One comparator (`>=1.2.3`), or `Any` (the empty comparator).
#[derive(Debug, Clone)]
enum Comparator {
    Any,
    Cmp(Op, Version),
}

impl Comparator {
    /// node-semver's `Comparator` constructor with the given looseness.
    fn parse(comp: &str, loose: bool) -> Result<Comparator, RangeProblem> {
        let comp = comp.split_whitespace().collect::<Vec<_>>().join(" ");
        let re = if loose { &RE.comparator_loose } else { &RE.comparator };
        let caps = re.captures(&comp).ok_or_else(|| RangeProblem::Comparator(comp.clone()))?;
        let Some(ver) = caps.get(2) else {
            return Ok(Comparator::Any);
        };
        let op = match caps.get(1).map(|m| m.as_str()).unwrap_or("") {
            "" | "=" => Op::Eq,
            "<" => Op::Lt,
            "<=" => Op::Lte,
            ">" => Op::Gt,
            ">=" => Op::Gte,
            other => return Err(RangeProblem::Operator(other.to_owned())),
        };
        let v = Version::parse_with(ver.as_str(), loose)?;
        Ok(Comparator::Cmp(op, v))
    }

    /// The comparator's `value` string (used for de-duplication, as node-semver does).
    fn value(&self) -> String {
        match self {
            Comparator::Any => String::new(),
            Comparator::Cmp(op, v) => {
                let op = match op {
                    Op::Eq => "",
                    Op::Lt => "<",
                    Op::Lte => "<=",
                    Op::Gt => ">",
                    Op::Gte => ">=",
                };
                format!("{op}{v}")
            }
        }
    }

    fn is_null_set(&self) -> bool {
        self.value() == "<0.0.0-0"
    }

    fn test(&self, version: &Version) -> bool {
        match self {
            Comparator::Any => true,
            Comparator::Cmp(op, v) => {
                let ord = version.cmp(v);
                match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Lte => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Gte => ord != Ordering::Less,
                }
            }
        }
    }
}

/// A parsed range: a union (`||`) of comparator sets (node-semver's `Range`).
#[derive(Debug, Clone)]
pub struct Range {
    raw: String,
    set: Vec<Vec<Comparator>>,
    include_prerelease: bool,
}

/// Options a range is parsed with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Loose parsing (`v1.2`, `=1.2`, `1.2.3beta`, garbage comparators dropped). npm always uses it.
    pub loose: bool,
    /// Let prereleases match any comparator set they are inside of.
    pub include_prerelease: bool,
}

impl RangeOptions {
    /// What npm's resolver uses: `{ loose: true }`.
    pub const NPM: RangeOptions = RangeOptions { loose: true, include_prerelease: false };
}

impl Range {
    /// Parse a range the way npm does (`{ loose: true }`).
    pub fn parse(text: &str) -> Result<Range, InvalidRange> {
        Self::parse_with(text, RangeOptions::NPM)
    }

    /// Parse with explicit options (`new Range(text, options)`).
    pub fn parse_with(text: &str, options: RangeOptions) -> Result<Range, InvalidRange> {
        let raw = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let invalid = |reason: RangeProblem| InvalidRange { input: text.to_string(), reason };
        let mut set = Vec::new();
        for part in raw.split("||") {
            let comps = parse_comparator_set(part.trim(), options).map_err(invalid)?;
            if !comps.is_empty() {
                set.push(comps);
            }
        }
        if set.is_empty() {
            return Err(invalid(RangeProblem::NoComparators));
        }
        if set.len() > 1 {
            let first = set[0].clone();
            set.retain(|c| !c.first().is_some_and(Comparator::is_null_set));
            if set.is_empty() {
                set = vec![first];
            } else if set.len() > 1
                && let Some(any) = set.iter().find(|c| c.len() == 1 && matches!(c[0], Comparator::Any))
            {
                set = vec![any.clone()];
            }
        }
        Ok(Range { raw: text.to_string(), set, include_prerelease: options.include_prerelease })
    }

    /// The text this range was parsed from.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Whether `version` satisfies the range (node-semver's `Range.test`).
    ///
    /// A prerelease version only matches a comparator set if some comparator in that set has a
    /// prerelease on the same `[major, minor, patch]` (unless `include_prerelease`).
    pub fn satisfies(&self, version: &Version) -> bool {
        self.set.iter().any(|comps| test_set(comps, version, self.include_prerelease))
    }

    /// The normalized range string (`semver.validRange`), `*` for "any".
    pub fn normalized(&self) -> String {
        let s = self
            .set
            .iter()
            .map(|comps| comps.iter().map(Comparator::value).collect::<Vec<_>>().join(" ").trim().to_string())
            .collect::<Vec<_>>()
            .join("||");
        if s.is_empty() { "*".to_string() } else { s }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn test_set(set: &[Comparator], version: &Version, include_prerelease: bool) -> bool {
    if !set.iter().all(|c| c.test(version)) {
        return false;
    }
    if version.is_prerelease() && !include_prerelease {
        return set.iter().any(|c| match c {
            Comparator::Any => false,
            Comparator::Cmp(_, allowed) => {
                allowed.is_prerelease()
                    && allowed.major == version.major
                    && allowed.minor == version.minor
                    && allowed.patch == version.patch
            }
        });
    }
    true
}

/// `semver.satisfies(version, range, { loose: true })`: false when either does not parse.
pub fn satisfies_loose(version: &str, range: &str) -> bool {
    match (Version::parse_loose(version), Range::parse(range)) {
        (Ok(v), Ok(r)) => r.satisfies(&v),
        _ => false,
    }
}

/// node-semver's `isX`: an absent component, `x`, `X` or `*`.
fn is_x(id: Option<&str>) -> bool {
    match id {
        None => true,
        Some(s) => s.is_empty() || s.eq_ignore_ascii_case("x") || s == "*",
    }
}

/// JS `+s` for a digit string that the regex already validated.
fn js_num(s: Option<&str>) -> u64 {
    s.and_then(|s| {
        let t = s.trim_start_matches('0');
        if t.is_empty() { Some(0) } else { t.parse().ok() }
    })
    .unwrap_or(0)
}

fn cap<'a>(c: &'a Captures<'_>, i: usize) -> Option<&'a str> {
    c.get(i).map(|m| m.as_str())
}

/// JS `String.prototype.replace` with a function and a non-global regex: the first match only.
fn replace_first(s: &str, re: &Regex, f: impl Fn(&Captures<'_>) -> String) -> String {
    match re.captures(s) {
        None => s.to_string(),
        Some(c) => {
            let Some(m) = c.get(0) else { return s.to_string() };
            let mut out = String::with_capacity(s.len());
            out.push_str(&s[..m.start()]);
            out.push_str(&f(&c));
            out.push_str(&s[m.end()..]);
            out
        }
    }
}

/// node-semver's `Range.parseRange` for one `||` alternative.
fn parse_comparator_set(range: &str, options: RangeOptions) -> Result<Vec<Comparator>, RangeProblem> {
    let loose = options.loose;
    let inc_pr = options.include_prerelease;
    let range = RE.build_strip.replace_all(range, "").into_owned();
    let hr = if loose { &RE.hyphen_range_loose } else { &RE.hyphen_range };
    let range = replace_first(&range, hr, |c| hyphen_replace(c, inc_pr));
    let range = RE.comparator_trim.replace_all(&range, "${1}${2}${3}").into_owned();
    let range = RE.tilde_trim.replace_all(&range, "${1}~").into_owned();
    let range = RE.caret_trim.replace_all(&range, "${1}^").into_owned();

    let parsed: Vec<String> = range.split(' ').map(|comp| parse_comparator(comp, options)).collect();
    let joined = parsed.join(" ");
    let mut list: Vec<String> =
        split_js_whitespace(&joined).into_iter().map(|comp| replace_gte0(&comp, inc_pr)).collect();
    if loose {
        list.retain(|comp| RE.comparator_loose.is_match(comp));
    }

    let mut comparators: Vec<Comparator> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for comp in &list {
        let c = Comparator::parse(comp, loose)?;
        if c.is_null_set() {
            return Ok(vec![c]);
        }
        let value = c.value();
        // A JS Map keeps the first insertion position and the last value; values are equal
        // when keys are, so keeping the first is the same.
        if !seen.contains(&value) {
            seen.push(value);
            comparators.push(c);
        }
    }
    if comparators.len() > 1 && seen.iter().any(String::is_empty) {
        comparators.retain(|c| !matches!(c, Comparator::Any));
    }
    Ok(comparators)
}

/// JS `s.split(/\s+/)`: leading/trailing whitespace yields empty strings at the ends.
fn split_js_whitespace(s: &str) -> Vec<String> {
    RE.whitespace.split(s).map(str::to_string).collect()
}

fn parse_comparator(comp: &str, options: RangeOptions) -> String {
    let comp = RE.build.replace(comp, "").into_owned();
    let comp = replace_carets(&comp, options);
    let comp = replace_tildes(&comp, options);
    let comp = replace_x_ranges(&comp, options);
    replace_stars(&comp)
}

fn replace_tildes(comp: &str, options: RangeOptions) -> String {
    split_js_whitespace(comp.trim()).iter().map(|c| replace_tilde(c, options)).collect::<Vec<_>>().join(" ")
}

fn replace_tilde(comp: &str, options: RangeOptions) -> String {
    let re = if options.loose { &RE.tilde_loose } else { &RE.tilde };
    let z = if options.include_prerelease { "-0" } else { "" };
    replace_first(comp, re, |c| {
        let (mj, mn, pt, pr) = (cap(c, 1), cap(c, 2), cap(c, 3), cap(c, 4));
        let (ms, ns, ps) = (mj.unwrap_or(""), mn.unwrap_or(""), pt.unwrap_or(""));
        if is_x(mj) {
            String::new()
        } else if is_x(mn) {
            format!(">={ms}.0.0{z} <{}.0.0-0", js_num(mj) + 1)
        } else if is_x(pt) {
            format!(">={ms}.{ns}.0{z} <{ms}.{}.0-0", js_num(mn) + 1)
        } else if let Some(pr) = pr {
            format!(">={ms}.{ns}.{ps}-{pr} <{ms}.{}.0-0", js_num(mn) + 1)
        } else {
            format!(">={ms}.{ns}.{ps} <{ms}.{}.0-0", js_num(mn) + 1)
        }
    })
}

fn replace_carets(comp: &str, options: RangeOptions) -> String {
    split_js_whitespace(comp.trim()).iter().map(|c| replace_caret(c, options)).collect::<Vec<_>>().join(" ")
}

fn replace_caret(comp: &str, options: RangeOptions) -> String {
    let re = if options.loose { &RE.caret_loose } else { &RE.caret };
    let z = if options.include_prerelease { "-0" } else { "" };
    replace_first(comp, re, |c| {
        let (mj, mn, pt, pr) = (cap(c, 1), cap(c, 2), cap(c, 3), cap(c, 4));
        let (ms, ns, ps) = (mj.unwrap_or(""), mn.unwrap_or(""), pt.unwrap_or(""));
        let m0 = ms == "0";
        let n0 = ns == "0";
        if is_x(mj) {
            String::new()
        } else if is_x(mn) {
            format!(">={ms}.0.0{z} <{}.0.0-0", js_num(mj) + 1)
        } else if is_x(pt) {
            if m0 {
                format!(">={ms}.{ns}.0{z} <{ms}.{}.0-0", js_num(mn) + 1)
            } else {
                format!(">={ms}.{ns}.0{z} <{}.0.0-0", js_num(mj) + 1)
            }
        } else if let Some(pr) = pr {
            if m0 {
                if n0 {
                    format!(">={ms}.{ns}.{ps}-{pr} <{ms}.{ns}.{}-0", js_num(pt) + 1)
                } else {
                    format!(">={ms}.{ns}.{ps}-{pr} <{ms}.{}.0-0", js_num(mn) + 1)
                }
            } else {
                format!(">={ms}.{ns}.{ps}-{pr} <{}.0.0-0", js_num(mj) + 1)
            }
        } else if m0 {
            if n0 {
                format!(">={ms}.{ns}.{ps} <{ms}.{ns}.{}-0", js_num(pt) + 1)
            } else {
                format!(">={ms}.{ns}.{ps} <{ms}.{}.0-0", js_num(mn) + 1)
            }
        } else {
            format!(">={ms}.{ns}.{ps} <{}.0.0-0", js_num(mj) + 1)
        }
    })
}

fn replace_x_ranges(comp: &str, options: RangeOptions) -> String {
    split_js_whitespace(comp).iter().map(|c| replace_x_range(c, options)).collect::<Vec<_>>().join(" ")
}

fn replace_x_range(comp: &str, options: RangeOptions) -> String {
    let comp = comp.trim();
    let re = if options.loose { &RE.x_range_loose } else { &RE.x_range };
    replace_first(comp, re, |c| {
        let whole = cap(c, 0).unwrap_or("").to_string();
        let mut gtlt = cap(c, 1).unwrap_or("").to_string();
        let (mj, mn, pt) = (cap(c, 2), cap(c, 3), cap(c, 4));
        // invalidXRangeOrder
        if (is_x(mj) && !is_x(mn)) || (is_x(mn) && pt.is_some_and(|p| !p.is_empty()) && !is_x(pt)) {
            return comp.to_string();
        }
        let x_major = is_x(mj);
        let x_minor = x_major || is_x(mn);
        let x_patch = x_minor || is_x(pt);
        let any_x = x_patch;
        if gtlt == "=" && any_x {
            gtlt.clear();
        }
        let mut pr = if options.include_prerelease { "-0" } else { "" };
        if x_major {
            if gtlt == ">" || gtlt == "<" { "<0.0.0-0".to_string() } else { "*".to_string() }
        } else if !gtlt.is_empty() && any_x {
            let mut major = js_num(mj);
            let mut minor = if x_minor { 0 } else { js_num(mn) };
            let patch = 0;
            if gtlt == ">" {
                gtlt = ">=".to_string();
                if x_minor {
                    major += 1;
                    minor = 0;
                } else {
                    minor += 1;
                }
            } else if gtlt == "<=" {
                gtlt = "<".to_string();
                if x_minor {
                    major += 1;
                } else {
                    minor += 1;
                }
            }
            if gtlt == "<" {
                pr = "-0";
            }
            format!("{gtlt}{major}.{minor}.{patch}{pr}")
        } else if x_minor {
            format!(">={}.0.0{pr} <{}.0.0-0", mj.unwrap_or(""), js_num(mj) + 1)
        } else if x_patch {
            format!(">={}.{}.0{pr} <{}.{}.0-0", mj.unwrap_or(""), mn.unwrap_or(""), mj.unwrap_or(""), js_num(mn) + 1)
        } else {
            whole
        }
    })
}

fn replace_stars(comp: &str) -> String {
    RE.star.replace(comp.trim(), "").into_owned()
}

fn replace_gte0(comp: &str, include_prerelease: bool) -> String {
    let re = if include_prerelease { &RE.gte0_pre } else { &RE.gte0 };
    re.replace(comp.trim(), "").into_owned()
}

fn hyphen_replace(c: &Captures<'_>, inc_pr: bool) -> String {
    let from = cap(c, 1).unwrap_or("");
    let (fm, fn_, fp, fpr) = (cap(c, 2), cap(c, 3), cap(c, 4), cap(c, 5));
    let to = cap(c, 7).unwrap_or("");
    let (tm, tn, tp, tpr) = (cap(c, 8), cap(c, 9), cap(c, 10), cap(c, 11));
    let z = if inc_pr { "-0" } else { "" };
    let from = if is_x(fm) {
        String::new()
    } else if is_x(fn_) {
        format!(">={}.0.0{z}", fm.unwrap_or(""))
    } else if is_x(fp) {
        format!(">={}.{}.0{z}", fm.unwrap_or(""), fn_.unwrap_or(""))
    } else if fpr.is_some() {
        format!(">={from}")
    } else {
        format!(">={from}{z}")
    };
    let to = if is_x(tm) {
        String::new()
    } else if is_x(tn) {
        format!("<{}.0.0-0", js_num(tm) + 1)
    } else if is_x(tp) {
        format!("<{}.{}.0-0", tm.unwrap_or(""), js_num(tn) + 1)
    } else if let Some(tpr) = tpr {
        format!("<={}.{}.{}-{tpr}", tm.unwrap_or(""), tn.unwrap_or(""), tp.unwrap_or(""))
    } else if inc_pr {
        format!("<{}.{}.{}-0", tm.unwrap_or(""), tn.unwrap_or(""), js_num(tp) + 1)
    } else {
        format!("<={to}")
    };
    format!("{from} {to}").trim().to_string()
}

/// The compiled regular expressions of node-semver's `internal/re.js`.
struct Regexes {
    full: Regex,
    loose: Regex,
    x_range: Regex,
    x_range_loose: Regex,
    tilde_trim: Regex,
    tilde: Regex,
    tilde_loose: Regex,
    caret_trim: Regex,
    caret: Regex,
    caret_loose: Regex,
    comparator: Regex,
    comparator_loose: Regex,
    comparator_trim: Regex,
    hyphen_range: Regex,
    hyphen_range_loose: Regex,
    star: Regex,
    gte0: Regex,
    gte0_pre: Regex,
    build: Regex,
    build_strip: Regex,
    whitespace: Regex,
}

static RE: LazyLock<Regexes> = LazyLock::new(build_regexes);

#[allow(clippy::expect_used)] // the patterns are constants; a failure is a bug caught by every test
fn build_regexes() -> Regexes {
    // `\d` is written [0-9]: Rust's `\d` is Unicode-aware, JavaScript's is ASCII.
    let numeric_identifier = r"0|[1-9][0-9]*";
    let numeric_identifier_loose = r"[0-9]+";
    let non_numeric_identifier = r"[0-9]*[a-zA-Z-][a-zA-Z0-9-]*";
    let main_version = format!(r"({numeric_identifier})\.({numeric_identifier})\.({numeric_identifier})");
    let main_version_loose =
        format!(r"({numeric_identifier_loose})\.({numeric_identifier_loose})\.({numeric_identifier_loose})");
    let prerelease_identifier = format!(r"(?:{non_numeric_identifier}|{numeric_identifier})");
    let prerelease_identifier_loose = format!(r"(?:{non_numeric_identifier}|{numeric_identifier_loose})");
    let prerelease = format!(r"(?:-({prerelease_identifier}(?:\.{prerelease_identifier})*))");
    let prerelease_loose = format!(r"(?:-?({prerelease_identifier_loose}(?:\.{prerelease_identifier_loose})*))");
    let build_identifier = r"[a-zA-Z0-9-]+";
    let build = format!(r"(?:\+({build_identifier}(?:\.{build_identifier})*))");
    let full_plain = format!(r"v?{main_version}{prerelease}?{build}?");
    let loose_plain = format!(r"[v=\s]*{main_version_loose}{prerelease_loose}?{build}?");
    let gtlt = r"((?:<|>)?=?)";
    let x_range_identifier_loose = format!(r"{numeric_identifier_loose}|x|X|\*");
    let x_range_identifier = format!(r"{numeric_identifier}|x|X|\*");
    let x_range_plain = format!(
        r"[v=\s]*({x_range_identifier})(?:\.({x_range_identifier})(?:\.({x_range_identifier})(?:{prerelease})?{build}?)?)?"
    );
    let x_range_plain_loose = format!(
        r"[v=\s]*({x_range_identifier_loose})(?:\.({x_range_identifier_loose})(?:\.({x_range_identifier_loose})(?:{prerelease_loose})?{build}?)?)?"
    );
    let lone_tilde = r"(?:~>?)";
    let lone_caret = r"(?:\^)";
    let re = |p: &str| Regex::new(p).expect("node-semver pattern compiles");
    Regexes {
        full: re(&format!("^{full_plain}$")),
        loose: re(&format!("^{loose_plain}$")),
        x_range: re(&format!(r"^{gtlt}\s*{x_range_plain}$")),
        x_range_loose: re(&format!(r"^{gtlt}\s*{x_range_plain_loose}$")),
        tilde_trim: re(&format!(r"(\s*){lone_tilde}\s+")),
        tilde: re(&format!("^{lone_tilde}{x_range_plain}$")),
        tilde_loose: re(&format!("^{lone_tilde}{x_range_plain_loose}$")),
        caret_trim: re(&format!(r"(\s*){lone_caret}\s+")),
        caret: re(&format!("^{lone_caret}{x_range_plain}$")),
        caret_loose: re(&format!("^{lone_caret}{x_range_plain_loose}$")),
        comparator: re(&format!(r"^{gtlt}\s*({full_plain})$|^$")),
        comparator_loose: re(&format!(r"^{gtlt}\s*({loose_plain})$|^$")),
        comparator_trim: re(&format!(r"(\s*){gtlt}\s*({loose_plain}|{x_range_plain})")),
        hyphen_range: re(&format!(r"^\s*({x_range_plain})\s+-\s+({x_range_plain})\s*$")),
        hyphen_range_loose: re(&format!(r"^\s*({x_range_plain_loose})\s+-\s+({x_range_plain_loose})\s*$")),
        star: re(r"(<|>)?=?\s*\*"),
        gte0: re(r"^\s*>=\s*0\.0\.0\s*$"),
        gte0_pre: re(r"^\s*>=\s*0\.0\.0-0\s*$"),
        build: re(&build),
        build_strip: re(&build),
        whitespace: re(r"\s+"),
    }
}
