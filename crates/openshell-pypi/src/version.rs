//! PEP 440 versions and version specifiers.
//!
//! Hand-written, not `pep440_rs`, because that crate does not answer as `packaging`
//! (and so pip) does. Checked against the 624 answers recorded from packaging 26.4
//! (`tests/oracle`), pep440_rs 0.7.3 (the latest on crates.io; its development went
//! on inside uv as `uv-pep440`) differs on two: `>1.0a1` with `1.0.post1` and with
//! `1.0.post2`. PEP 440 says `>V` must not match a post release of V; packaging reads
//! that as V's own post releases (`1.0a1.post1`), so `1.0.post1`, a post release of the
//! final `1.0`, is greater than `1.0a1` and matches (packaging: true); pep440_rs refuses
//! every post release of V's release segment when V is not a post release (false).
//! Bridging that with a wrapper would mean re-implementing `>` for prerelease bounds on
//! top of pep440_rs, so the part where the two differ would still be ours.
//! `tests/pep440_rs.rs` runs the whole oracle through pep440_rs and asserts that these
//! are exactly its disagreements and that ours answers as packaging on them: it fails
//! when pep440_rs changes, which is when to look again. (pep440_rs's `contains` matches
//! a lone prerelease, as packaging 26's does, which is our `contains_any`; pip's policy
//! of preferring final releases is [`SpecifierSet::filter`] here either way.)

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A string that is not a PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PEP 440 version {0:?}")]
pub struct InvalidVersion(pub String);

/// A string that is not a PEP 440 specifier (set).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version specifier {input:?}: {reason}")]
pub struct InvalidSpecifier {
    /// The text.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

/// Prerelease phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PreKind {
    /// `a`, `alpha`
    Alpha,
    /// `b`, `beta`
    Beta,
    /// `rc`, `c`, `pre`, `preview`
    Rc,
}

/// One segment of a local version label (`+ubuntu.1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LocalSegment {
    /// Numeric segment.
    Number(u64),
    /// Alphanumeric segment, lower-cased.
    Text(String),
}

/// A parsed, normalized PEP 440 version. Equality and hashing are PEP 440's (`1.0 == 1.0.0`).
#[derive(Debug, Clone)]
pub struct Version {
    /// Epoch (`N!`).
    pub epoch: u64,
    /// Release segments.
    pub release: Vec<u64>,
    /// Prerelease (`a1`, `b2`, `rc3`).
    pub pre: Option<(PreKind, u64)>,
    /// Post release number.
    pub post: Option<u64>,
    /// Development release number.
    pub dev: Option<u64>,
    /// Local version label.
    pub local: Vec<LocalSegment>,
}

fn num(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A small cursor over the lower-cased version text.
struct Cur<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }
    fn sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn digits(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }
    fn mark(&self) -> usize {
        self.i
    }
    fn reset(&mut self, m: usize) {
        self.i = m;
    }
}

impl Version {
    /// Parse and normalize (PEP 440 "Normalization": case, `v` prefix, alternate spellings
    /// and separators of pre/post/dev, implicit numbers, whitespace).
    pub fn parse(text: &str) -> Result<Version, InvalidVersion> {
        let err = || InvalidVersion(text.to_string());
        let lower = text.trim().to_ascii_lowercase();
        let mut c = Cur { s: lower.as_bytes(), i: 0 };
        c.eat("v");
        let mut epoch = 0;
        let m = c.mark();
        if let Some(n) = c.digits() {
            if c.eat("!") {
                epoch = n;
            } else {
                c.reset(m);
            }
        }
        let mut release = vec![c.digits().ok_or_else(err)?];
        loop {
            let m = c.mark();
            if c.eat(".")
                && let Some(n) = c.digits()
            {
                release.push(n);
                continue;
            }
            c.reset(m);
            break;
        }
        // pre
        let mut pre = None;
        let m = c.mark();
        c.sep();
        let kinds: [(&str, PreKind); 8] = [
            ("alpha", PreKind::Alpha),
            ("a", PreKind::Alpha),
            ("beta", PreKind::Beta),
            ("b", PreKind::Beta),
            ("preview", PreKind::Rc),
            ("pre", PreKind::Rc),
            ("rc", PreKind::Rc),
            ("c", PreKind::Rc),
        ];
        if let Some((_, k)) = kinds.iter().find(|(lit, _)| c.eat(lit)) {
            let m2 = c.mark();
            c.sep();
            let n = match c.digits() {
                Some(n) => n,
                None => {
                    c.reset(m2);
                    0
                }
            };
            pre = Some((*k, n));
        } else {
            c.reset(m);
        }
        // post
        let mut post = None;
        let m = c.mark();
        if c.eat("-")
            && let Some(n) = c.digits()
        {
            post = Some(n);
        } else {
            c.reset(m);
            c.sep();
            if c.eat("post") || c.eat("rev") || c.eat("r") {
                let m2 = c.mark();
                c.sep();
                post = Some(match c.digits() {
                    Some(n) => n,
                    None => {
                        c.reset(m2);
                        0
                    }
                });
            } else {
                c.reset(m);
            }
        }
        // dev
        let mut dev = None;
        let m = c.mark();
        c.sep();
        if c.eat("dev") {
            let m2 = c.mark();
            c.sep();
            dev = Some(match c.digits() {
                Some(n) => n,
                None => {
                    c.reset(m2);
                    0
                }
            });
        } else {
            c.reset(m);
        }
        // local
        let mut local = Vec::new();
        if c.eat("+") {
            let rest = std::str::from_utf8(&c.s[c.i..]).map_err(|_| err())?;
            for seg in rest.split(['.', '-', '_']) {
                if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(err());
                }
                local.push(match num(seg) {
                    Some(n) => LocalSegment::Number(n),
                    None => LocalSegment::Text(seg.to_string()),
                });
            }
            c.i = c.s.len();
        }
        if c.i != c.s.len() {
            return Err(err());
        }
        Ok(Version { epoch, release, pre, post, dev, local })
    }

    /// A prerelease or development release.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// Has a post release number.
    pub fn is_postrelease(&self) -> bool {
        self.post.is_some()
    }

    /// The version without its local label.
    pub fn public(&self) -> Version {
        Version { local: Vec::new(), ..self.clone() }
    }

    /// Epoch and release only (`1!2.0` of `1!2.0rc1.post2`).
    pub fn base(&self) -> Version {
        Version {
            epoch: self.epoch,
            release: self.release.clone(),
            pre: None,
            post: None,
            dev: None,
            local: Vec::new(),
        }
    }

    fn release_trimmed(&self) -> &[u64] {
        let mut r = &self.release[..];
        while r.len() > 1 && r.last() == Some(&0) {
            r = &r[..r.len() - 1];
        }
        r
    }

    fn cmp_key(&self, other: &Version) -> Ordering {
        // packaging's _cmpkey: release without trailing zeros; a dev-only release sorts before
        // any prerelease of the same release; a missing post sorts first; a missing dev last;
        // a missing local first, numeric local segments after alphanumeric ones.
        fn pre_key(v: &Version) -> (i8, Option<(PreKind, u64)>) {
            match (v.pre, v.post, v.dev) {
                (None, None, Some(_)) => (-1, None),
                (None, _, _) => (1, None),
                (Some(p), _, _) => (0, Some(p)),
            }
        }
        fn post_key(v: &Version) -> (i8, u64) {
            v.post.map_or((-1, 0), |p| (0, p))
        }
        fn dev_key(v: &Version) -> (i8, u64) {
            v.dev.map_or((1, 0), |d| (0, d))
        }
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| self.release_trimmed().cmp(other.release_trimmed()))
            .then_with(|| pre_key(self).cmp(&pre_key(other)))
            .then_with(|| post_key(self).cmp(&post_key(other)))
            .then_with(|| dev_key(self).cmp(&dev_key(other)))
            .then_with(|| cmp_local(&self.local, &other.local))
    }
}

fn cmp_local(a: &[LocalSegment], b: &[LocalSegment]) -> Ordering {
    if a.is_empty() || b.is_empty() {
        return (!a.is_empty()).cmp(&!b.is_empty());
    }
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (LocalSegment::Number(x), LocalSegment::Number(y)) => x.cmp(y),
            (LocalSegment::Number(_), LocalSegment::Text(_)) => Ordering::Greater,
            (LocalSegment::Text(_), LocalSegment::Number(_)) => Ordering::Less,
            (LocalSegment::Text(x), LocalSegment::Text(y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        self.release_trimmed().hash(state);
        self.pre.hash(state);
        self.post.hash(state);
        self.dev.hash(state);
        self.local.hash(state);
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
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_key(other)
    }
}

impl FromStr for Version {
    type Err = InvalidVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    /// The normalized form (`1.0rc1`, `1!2.0.post1.dev3+local.7`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}!", self.epoch)?;
        }
        let rel: Vec<String> = self.release.iter().map(u64::to_string).collect();
        f.write_str(&rel.join("."))?;
        if let Some((k, n)) = self.pre {
            let k = match k {
                PreKind::Alpha => "a",
                PreKind::Beta => "b",
                PreKind::Rc => "rc",
            };
            write!(f, "{k}{n}")?;
        }
        if let Some(p) = self.post {
            write!(f, ".post{p}")?;
        }
        if let Some(d) = self.dev {
            write!(f, ".dev{d}")?;
        }
        if !self.local.is_empty() {
            let l: Vec<String> = self
                .local
                .iter()
                .map(|s| match s {
                    LocalSegment::Number(n) => n.to_string(),
                    LocalSegment::Text(t) => t.clone(),
                })
                .collect();
            write!(f, "+{}", l.join("."))?;
        }
        Ok(())
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `~=`
    Compatible,
    /// `==`
    Equal,
    /// `==` with a trailing `.*`
    EqualPrefix,
    /// `!=`
    NotEqual,
    /// `!=` with a trailing `.*`
    NotEqualPrefix,
    /// `<=`
    LessEqual,
    /// `>=`
    GreaterEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
    /// `===`
    Arbitrary,
}

/// One specifier (`>=1.2`, `==1.4.*`, `~=2.2`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Specifier {
    /// Operator.
    pub op: Operator,
    /// Version text as written (without `.*`).
    pub version_text: String,
    version: Option<Version>,
}

impl Specifier {
    /// Parse one specifier.
    pub fn parse(text: &str) -> Result<Specifier, InvalidSpecifier> {
        let t = text.trim();
        let err = |reason: &str| InvalidSpecifier { input: text.to_string(), reason: reason.to_string() };
        let ops = [
            ("===", Operator::Arbitrary),
            ("~=", Operator::Compatible),
            ("==", Operator::Equal),
            ("!=", Operator::NotEqual),
            ("<=", Operator::LessEqual),
            (">=", Operator::GreaterEqual),
            ("<", Operator::Less),
            (">", Operator::Greater),
        ];
        let Some((lit, mut op)) = ops.iter().find(|(lit, _)| t.starts_with(lit)).copied() else {
            return Err(err("missing operator"));
        };
        let mut v = t[lit.len()..].trim().to_string();
        if v.is_empty() {
            return Err(err("missing version"));
        }
        if op == Operator::Arbitrary {
            if v.contains(char::is_whitespace) {
                return Err(err("whitespace in an arbitrary version"));
            }
            let version = Version::parse(&v).ok();
            return Ok(Specifier { op, version_text: v, version });
        }
        if let Some(prefix) = v.strip_suffix(".*") {
            op = match op {
                Operator::Equal => Operator::EqualPrefix,
                Operator::NotEqual => Operator::NotEqualPrefix,
                _ => return Err(err("`.*` is only allowed with == and !=")),
            };
            v = prefix.to_string();
        }
        let version = Version::parse(&v).map_err(|_| err("not a PEP 440 version"))?;
        let has_local = !version.local.is_empty();
        match op {
            Operator::EqualPrefix | Operator::NotEqualPrefix if has_local => {
                return Err(err("a prefix match cannot have a local version"));
            }
            Operator::Compatible if version.release.len() < 2 => {
                return Err(err("~= needs at least two release segments"));
            }
            Operator::Compatible if has_local => return Err(err("~= cannot have a local version")),
            Operator::LessEqual | Operator::GreaterEqual | Operator::Less | Operator::Greater if has_local => {
                return Err(err("ordered comparisons cannot have a local version"));
            }
            _ => {}
        }
        Ok(Specifier { op, version_text: v, version: Some(version) })
    }

    /// Whether this specifier by itself admits prereleases (its version is one, except for
    /// `!=` and prefix matches).
    pub fn allows_prereleases(&self) -> bool {
        match self.op {
            Operator::NotEqual | Operator::NotEqualPrefix | Operator::EqualPrefix => false,
            _ => self.version.as_ref().is_some_and(Version::is_prerelease),
        }
    }

    /// Whether `v` matches (prerelease policy is the caller's; see [`SpecifierSet`]).
    pub fn contains(&self, v: &Version) -> bool {
        let Some(spec) = &self.version else {
            // `===` with a non-PEP 440 string: only an identical string matches.
            return v.to_string().eq_ignore_ascii_case(&self.version_text);
        };
        match self.op {
            Operator::Arbitrary => v.to_string().eq_ignore_ascii_case(&self.version_text),
            Operator::Equal => {
                if spec.local.is_empty() {
                    v.public() == *spec
                } else {
                    v == spec
                }
            }
            Operator::NotEqual => !Specifier { op: Operator::Equal, ..self.clone() }.contains(v),
            Operator::EqualPrefix => prefix_match(v, spec),
            Operator::NotEqualPrefix => !prefix_match(v, spec),
            Operator::LessEqual => v.public() <= *spec,
            Operator::GreaterEqual => v.public() >= *spec,
            Operator::Less => v < spec && !(!spec.is_prerelease() && v.is_prerelease() && v.base() == spec.base()),
            Operator::Greater => {
                // `>V` excludes V's own post releases and local versions: the later versions
                // that share V's release and pre segment (packaging 26's reading of PEP 440;
                // `>1.0a1` admits `1.0.post1`).
                let same_family = v.epoch == spec.epoch && v.release_trimmed() == spec.release_trimmed();
                v > spec && !(same_family && spec.dev.is_none() && spec.post.is_none() && v.pre == spec.pre)
            }
            Operator::Compatible => {
                let mut prefix = spec.base();
                prefix.release.pop();
                v.public() >= *spec && prefix_match(v, &prefix)
            }
        }
    }
}

/// `==prefix.*`: the version's segments (epoch, release padded with zeros, then pre/post/dev)
/// start with the prefix's.
fn prefix_match(v: &Version, prefix: &Version) -> bool {
    if v.epoch != prefix.epoch {
        return false;
    }
    let n = prefix.release.len();
    let mut rel = v.release.clone();
    while rel.len() < n {
        rel.push(0);
    }
    if rel[..n] != prefix.release[..] {
        return false;
    }
    // A prefix with a pre/post/dev part must match those too (packaging compares the split
    // string segments).
    if prefix.pre.is_some() && (rel.len() != n || v.pre != prefix.pre) {
        return false;
    }
    if prefix.post.is_some() && (v.post != prefix.post || v.pre != prefix.pre) {
        return false;
    }
    if prefix.dev.is_some() && (v.dev != prefix.dev || v.post != prefix.post || v.pre != prefix.pre) {
        return false;
    }
    true
}

impl fmt::Display for Specifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, star) = match self.op {
            Operator::Compatible => ("~=", ""),
            Operator::Equal => ("==", ""),
            Operator::EqualPrefix => ("==", ".*"),
            Operator::NotEqual => ("!=", ""),
            Operator::NotEqualPrefix => ("!=", ".*"),
            Operator::LessEqual => ("<=", ""),
            Operator::GreaterEqual => (">=", ""),
            Operator::Less => ("<", ""),
            Operator::Greater => (">", ""),
            Operator::Arbitrary => ("===", ""),
        };
        write!(f, "{op}{}{star}", self.version_text)
    }
}

/// A comma-separated set of specifiers; all must match. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SpecifierSet {
    /// The specifiers.
    pub specifiers: Vec<Specifier>,
}

impl SpecifierSet {
    /// Parse `>=1.0, <2` (empty text is the empty set).
    pub fn parse(text: &str) -> Result<SpecifierSet, InvalidSpecifier> {
        let mut specifiers = Vec::new();
        for part in text.split(',') {
            if part.trim().is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(InvalidSpecifier { input: text.to_string(), reason: "empty specifier".into() });
            }
            specifiers.push(Specifier::parse(part).map_err(|e| InvalidSpecifier { input: text.to_string(), ..e })?);
        }
        Ok(SpecifierSet { specifiers })
    }

    /// Whether any specifier explicitly admits prereleases.
    pub fn allows_prereleases(&self) -> bool {
        self.specifiers.iter().any(Specifier::allows_prereleases)
    }

    /// Whether `v` matches every specifier, ignoring the prerelease policy.
    pub fn contains_any(&self, v: &Version) -> bool {
        self.specifiers.iter().all(|s| s.contains(v))
    }

    /// `SpecifierSet.contains` with default prerelease handling: a prerelease only matches when
    /// a specifier asks for prereleases.
    pub fn contains(&self, v: &Version) -> bool {
        (!v.is_prerelease() || self.allows_prereleases()) && self.contains_any(v)
    }

    /// `SpecifierSet.filter` with default prerelease handling: the matching final releases, or,
    /// when there are none (or prereleases are asked for), the matching prereleases too.
    pub fn filter<'a, T>(&self, items: &'a [T], version: impl Fn(&T) -> &Version) -> Vec<&'a T> {
        let matching: Vec<&T> = items.iter().filter(|i| self.contains_any(version(i))).collect();
        if self.allows_prereleases() {
            return matching;
        }
        let finals: Vec<&T> = matching.iter().copied().filter(|i| !version(i).is_prerelease()).collect();
        if finals.is_empty() { matching } else { finals }
    }

    /// Whether the set is empty (matches everything).
    pub fn is_empty(&self) -> bool {
        self.specifiers.is_empty()
    }
}

impl fmt::Display for SpecifierSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<String> = self.specifiers.iter().map(ToString::to_string).collect();
        f.write_str(&s.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        for (input, want) in [
            ("1.0", "1.0"),
            ("v1.0", "1.0"),
            ("1.0-alpha1", "1.0a1"),
            ("1.0.ALPHA.1", "1.0a1"),
            ("1.0c2", "1.0rc2"),
            ("1.0preview", "1.0rc0"),
            ("1.0-1", "1.0.post1"),
            ("1.0.rev.2", "1.0.post2"),
            ("1.0-r", "1.0.post0"),
            ("1.0-dev", "1.0.dev0"),
            ("1!2.0b3.post4.dev5+Ubuntu-1_2", "1!2.0b3.post4.dev5+ubuntu.1.2"),
            (" 2.0 ", "2.0"),
            ("2024.01.09", "2024.1.9"),
            ("1.0rc1-1", "1.0rc1.post1"),
            ("1.0_rc_1.post_2.dev_3", "1.0rc1.post2.dev3"),
            ("1.0+abc.007", "1.0+abc.7"),
            ("01.002", "1.2"),
            ("1.0.0-RC.1", "1.0.0rc1"),
        ] {
            assert_eq!(Version::parse(input).expect(input).to_string(), want, "{input}");
        }
        for bad in
            ["", "1.0+", "1..0", "a1", "1.0-", "1.0+a..b", "1.0 dev", "1.0.x", "1.0a1b2", "1.0.post1.post2", "1e3"]
        {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn orders() {
        let order = [
            "1.0.dev0",
            "1.0a1.dev1",
            "1.0a1",
            "1.0a1.post1",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+abc",
            "1.0+abc.5",
            "1.0+5",
            "1.0.post1.dev1",
            "1.0.post1",
            "1.1",
            "1!0.1",
        ];
        let vs: Vec<Version> = order.iter().map(|s| Version::parse(s).expect(s)).collect();
        for w in vs.windows(2) {
            assert!(w[0] < w[1], "{} < {}", w[0], w[1]);
        }
        assert_eq!(Version::parse("1.0.0").expect("v"), Version::parse("1").expect("v"));
    }
}
