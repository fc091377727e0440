//! Dependency closure over Packages indexes.
//!
//! Given indexes (for example a suite's `main` plus its `-updates` and `-security`), one
//! architecture and the requested packages, [`resolve`] selects one version of each
//! package needed, following `Pre-Depends` and `Depends` only (never `Recommends` or
//! `Suggests`). Packages of the architecture and of `all` are considered.
//!
//! Rules, applied in order and deterministic for a given input:
//! 1. Every request is selected first (in the order given), so a dependency on something
//!    the image asks for anyway is satisfied by it.
//! 2. Selected packages are expanded breadth-first in selection order; `Pre-Depends`
//!    before `Depends`, groups in field order.
//! 3. A group of alternatives is satisfied by an already-selected package if one matches
//!    any alternative (by name and version, or through `Provides`).
//! 4. Otherwise the alternatives are tried in order; the first that has a usable candidate
//!    wins. For one alternative, real packages of that name come first, highest version
//!    first (preferring versions that also satisfy the hard constraints that selected
//!    packages already place on that name); then virtual providers, ordered by `Priority`
//!    (required, important, standard, optional, extra), then name, then highest version.
//!    A candidate is unusable when another version of its name is already selected, or
//!    (for dependencies, not for requests) when it conflicts with (or breaks) a selected
//!    package or the other way round.
//! 5. `Essential: yes` packages are not added automatically.
//! 6. At the end, `Conflicts` and `Breaks` among the selected packages are checked; any hit
//!    is an error listing all of them.
//!
//! Multi-Arch: `pkg:any` is satisfied only by a package (or provider) that is
//! `Multi-Arch: allowed`; `pkg:<arch>` and `pkg:native` by the resolution architecture
//! (`all` counts as native). In conflicts, `:any` matches every package.
//!
//! There is no backtracking: a choice that later proves wrong is reported as an error
//! naming the relation and the chain of packages that needed it; pin the wanted
//! alternative by requesting it explicitly.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use crate::packages::{MultiArch, Package, PackageIndex};
use crate::relations::{
    self, ArchQualifier, Relation, RelationError, VersionConstraint, VersionOp, display_alternatives,
};
use crate::version::Version;

/// A requested package: a name with an optional version constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The relation to satisfy (one alternative, no architecture list).
    pub relation: Relation,
}

impl Request {
    /// A request for any version of `name`.
    pub fn new(name: impl Into<String>) -> Request {
        Request { relation: Relation::named(name) }
    }

    /// Parses `name`, `name (op version)`, `name:arch` or apt's `name=version`.
    pub fn parse(s: &str) -> Result<Request, RelationError> {
        let text = s.trim();
        let rel_text = match text.split_once('=') {
            Some((name, version)) if !text.contains('(') => format!("{} (= {})", name.trim(), version.trim()),
            _ => text.to_owned(),
        };
        let err =
            |message: &str| RelationError { field: "request".into(), text: text.to_owned(), message: message.into() };
        let mut groups = relations::parse_relations("request", &rel_text)?;
        if groups.len() != 1 || groups[0].len() != 1 {
            return Err(err("a request names exactly one package (no `,` or `|`)"));
        }
        let relation = groups.remove(0).remove(0);
        if !relation.arches.is_empty() {
            return Err(err("architecture lists are not allowed in a request"));
        }
        Ok(Request { relation })
    }
}

impl FromStr for Request {
    type Err = RelationError;

    fn from_str(s: &str) -> Result<Request, RelationError> {
        Request::parse(s)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.relation.fmt(f)
    }
}

/// Why a package is in the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// It was requested (the request as written).
    Requested(String),
    /// It satisfies a relation of another selected package.
    Dependency {
        /// The package that needed it (name).
        of: String,
        /// The relation group, as `Depends: a | b (>= 1)`.
        relation: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Requested(r) => write!(f, "requested `{r}`"),
            Reason::Dependency { of, relation } => write!(f, "{of} {relation}"),
        }
    }
}

/// One selected package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The package record.
    pub package: Package,
    /// Position of its index in the `indexes` given to [`resolve`].
    pub index: usize,
    /// Why it was selected (the first reason found).
    pub reason: Reason,
}

/// The closure, sorted by package name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// Selected packages, sorted by name.
    pub packages: Vec<Selected>,
}

impl Resolution {
    /// The selected package of that name.
    pub fn get(&self, name: &str) -> Option<&Selected> {
        self.packages.binary_search_by(|s| s.package.name.as_str().cmp(name)).ok().map(|i| &self.packages[i])
    }

    /// Selected package names in order.
    pub fn names(&self) -> Vec<&str> {
        self.packages.iter().map(|s| s.package.name.as_str()).collect()
    }
}

/// A conflict between two selected packages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The package declaring the relation (`name version arch`).
    pub package: String,
    /// `Conflicts` or `Breaks`.
    pub field: &'static str,
    /// The relation as written.
    pub relation: String,
    /// The selected package it hits (`name version arch`).
    pub with: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {} (hits {})", self.package, self.field, self.relation, self.with)
    }
}

/// Resolution failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No alternative of a relation can be satisfied.
    #[error("cannot satisfy `{relation}`, needed by {}: {}", chain.join(" → "), reasons.join("; "))]
    Unsatisfiable {
        /// The relation group (with its field), or the request.
        relation: String,
        /// Who needed it: from the request down to the package declaring the relation.
        chain: Vec<String>,
        /// Why each alternative failed.
        reasons: Vec<String>,
    },
    /// Selected packages conflict.
    #[error("conflicts among the selected packages: {}", conflicts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Conflicts {
        /// All conflicts found, sorted.
        conflicts: Vec<Conflict>,
    },
}

/// A candidate: a package and the index it came from.
#[derive(Clone, Copy)]
struct Cand<'a> {
    pkg: &'a Package,
    index: usize,
}

struct Universe<'a> {
    arch: &'a str,
    /// Real packages by name, highest version first.
    by_name: BTreeMap<&'a str, Vec<Cand<'a>>>,
    /// Providers by virtual name: (candidate, provided version).
    providers: BTreeMap<&'a str, Vec<(Cand<'a>, Option<&'a Version>)>>,
}

fn priority_rank(p: Option<&str>) -> u8 {
    match p {
        Some("required") => 0,
        Some("important") => 1,
        Some("standard") => 2,
        Some("optional") => 3,
        _ => 4,
    }
}

impl<'a> Universe<'a> {
    fn new(indexes: &'a [PackageIndex], arch: &'a str) -> Universe<'a> {
        let mut by_name: BTreeMap<&str, Vec<Cand>> = BTreeMap::new();
        for (index, idx) in indexes.iter().enumerate() {
            for pkg in &idx.packages {
                if pkg.architecture != arch && pkg.architecture != "all" {
                    continue;
                }
                let list = by_name.entry(pkg.name.as_str()).or_default();
                if let Some(dup) =
                    list.iter().find(|c| c.pkg.version == pkg.version && c.pkg.architecture == pkg.architecture)
                {
                    if dup.pkg.sha256 != pkg.sha256 {
                        tracing::warn!(
                            package = %pkg.id(),
                            first = %indexes[dup.index].origin,
                            second = %idx.origin,
                            "same package version with different contents in two indexes; using the first"
                        );
                    }
                    continue;
                }
                list.push(Cand { pkg, index });
            }
        }
        for list in by_name.values_mut() {
            // Highest version first; stable, so earlier indexes win ties.
            list.sort_by(|a, b| b.pkg.version.cmp(&a.pkg.version));
        }
        let mut providers: BTreeMap<&str, Vec<(Cand, Option<&Version>)>> = BTreeMap::new();
        for list in by_name.values() {
            for c in list {
                for p in &c.pkg.provides {
                    providers.entry(p.name.as_str()).or_default().push((*c, p.version.as_ref()));
                }
            }
        }
        for list in providers.values_mut() {
            list.sort_by(|(a, _), (b, _)| {
                priority_rank(a.pkg.priority.as_deref())
                    .cmp(&priority_rank(b.pkg.priority.as_deref()))
                    .then_with(|| a.pkg.name.cmp(&b.pkg.name))
                    .then_with(|| b.pkg.version.cmp(&a.pkg.version))
            });
        }
        Universe { arch, by_name, providers }
    }

    /// Whether a package's architecture satisfies the relation's Multi-Arch qualifier.
    fn arch_ok(&self, r: &Relation, pkg: &Package, for_conflict: bool) -> bool {
        match &r.arch_qualifier {
            None | Some(ArchQualifier::Native) => true,
            Some(ArchQualifier::Any) => for_conflict || pkg.multi_arch == MultiArch::Allowed,
            Some(ArchQualifier::Arch(a)) => a == self.arch,
        }
    }

    /// Whether `pkg` satisfies `r` itself (by name) or through Provides.
    fn satisfies(&self, r: &Relation, pkg: &Package, for_conflict: bool) -> bool {
        if !self.arch_ok(r, pkg, for_conflict) {
            return false;
        }
        if pkg.name == r.name && r.version_matches(&pkg.version) {
            return true;
        }
        pkg.provides.iter().any(|p| {
            p.name == r.name
                && match (&r.constraint, &p.version) {
                    (None, _) => true,
                    (Some(c), Some(v)) => c.matches(v),
                    // An unversioned Provides never satisfies a versioned relation.
                    (Some(_), None) => false,
                }
        })
    }
}

struct State<'a> {
    u: Universe<'a>,
    selected: BTreeMap<&'a str, (Cand<'a>, Reason)>,
    queue: VecDeque<&'a str>,
}

impl<'a> State<'a> {
    /// Conflicts/Breaks between `c` and the selected set, as a message.
    fn conflict_with_selected(&self, c: &Package) -> Option<String> {
        for (s, _) in self.selected.values() {
            if s.pkg.name == c.name {
                continue;
            }
            if let Some((field, r)) = self.hits(c, s.pkg) {
                return Some(format!("{} {field} `{r}` with selected {}", c.id(), s.pkg.id()));
            }
            if let Some((field, r)) = self.hits(s.pkg, c) {
                return Some(format!("selected {} {field} `{r}`", s.pkg.id()));
            }
        }
        None
    }

    /// The first Conflicts/Breaks relation of `a` that `b` matches.
    fn hits(&self, a: &Package, b: &Package) -> Option<(&'static str, String)> {
        for (field, groups) in [("Conflicts", &a.conflicts), ("Breaks", &a.breaks)] {
            for r in groups.iter().flatten() {
                if r.applies_to(self.u.arch) && self.u.satisfies(r, b, true) {
                    return Some((field, r.to_string()));
                }
            }
        }
        None
    }

    /// Single-alternative constraints that selected packages place on `name`.
    fn hard_constraints(&self, name: &str) -> Vec<&'a VersionConstraint> {
        let mut out = Vec::new();
        for (s, _) in self.selected.values() {
            for g in s.pkg.pre_depends.iter().chain(&s.pkg.depends) {
                if let [r] = g.as_slice()
                    && r.name == name
                    && let Some(c) = &r.constraint
                {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Picks a candidate for one alternative, or explains why there is none.
    fn candidate(&self, r: &'a Relation, avoid_conflicts: bool) -> Result<Cand<'a>, String> {
        let mut why: Vec<String> = Vec::new();
        let usable = |c: &Cand<'a>, why: &mut Vec<String>| -> bool {
            if let Some((s, _)) = self.selected.get(c.pkg.name.as_str()) {
                why.push(format!("{} is already selected", s.pkg.id()));
                return false;
            }
            if let Some(m) = self.conflict_with_selected(c.pkg).filter(|_| avoid_conflicts) {
                why.push(m);
                return false;
            }
            true
        };
        let real = self.u.by_name.get(r.name.as_str()).map(Vec::as_slice).unwrap_or_default();
        let matching: Vec<Cand> = real.iter().copied().filter(|c| self.u.satisfies(r, c.pkg, false)).collect();
        if !real.is_empty() && matching.is_empty() {
            let versions: Vec<String> = real.iter().map(|c| c.pkg.version.to_string()).collect();
            let mut m = format!(
                "{} has {} {}",
                r.name,
                if versions.len() == 1 { "version" } else { "versions" },
                versions.join(", ")
            );
            if matches!(r.arch_qualifier, Some(ArchQualifier::Any)) {
                m.push_str(" (`:any` needs Multi-Arch: allowed)");
            } else if let Some(ArchQualifier::Arch(a)) = &r.arch_qualifier {
                m.push_str(&format!(" (only {} and all are resolved, not {a})", self.u.arch));
            }
            why.push(m);
        }
        // Prefer versions that also meet the hard constraints already known on the name.
        let hard = self.hard_constraints(&r.name);
        let (preferred, rest): (Vec<Cand>, Vec<Cand>) =
            matching.into_iter().partition(|c| hard.iter().all(|h| h.matches(&c.pkg.version)));
        for c in preferred.iter().chain(&rest) {
            if usable(c, &mut why) {
                return Ok(*c);
            }
        }
        let providers = self.u.providers.get(r.name.as_str()).map(Vec::as_slice).unwrap_or_default();
        let mut any_provider = false;
        for (c, _) in providers {
            if !self.u.satisfies(r, c.pkg, false) {
                continue;
            }
            any_provider = true;
            if usable(c, &mut why) {
                return Ok(*c);
            }
        }
        if real.is_empty() && !any_provider {
            if providers.is_empty() {
                why.push(format!("no package {} for {} or all, and nothing provides it", r.name, self.u.arch));
            } else {
                let list: Vec<String> = providers
                    .iter()
                    .map(|(c, v)| match v {
                        Some(v) => format!("{} (= {v})", c.pkg.name),
                        None => c.pkg.name.clone(),
                    })
                    .collect();
                why.push(format!("{} is virtual; its providers do not match: {}", r.name, list.join(", ")));
            }
        }
        why.dedup();
        Err(format!("{}: {}", r, why.join(", ")))
    }

    /// The chain from a request down to `name`.
    fn chain(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = Some(name);
        while let Some(n) = cur {
            // Bounded by the number of selected packages (reasons form a tree).
            if out.len() > self.selected.len() {
                break;
            }
            let Some((c, reason)) = self.selected.get(n) else { break };
            out.push(c.pkg.id());
            cur = match reason {
                Reason::Requested(req) => {
                    out.push(format!("requested `{req}`"));
                    None
                }
                Reason::Dependency { of, .. } => Some(of.as_str()),
            };
        }
        out.reverse();
        out
    }

    /// Satisfies one group (already satisfied, or a newly selected package), else returns
    /// the per-alternative reasons.
    fn satisfy(&mut self, group: &'a [Relation], reason: Reason) -> Result<(), Vec<String>> {
        // Explicit requests are taken as asked; a conflict among them is reported at the end.
        let avoid_conflicts = !matches!(reason, Reason::Requested(_));
        let alts: Vec<&'a Relation> = group.iter().filter(|r| r.applies_to(self.u.arch)).collect();
        if alts.is_empty() {
            return Ok(());
        }
        if alts.iter().any(|r| self.selected.values().any(|(s, _)| self.u.satisfies(r, s.pkg, false))) {
            return Ok(());
        }
        let mut reasons = Vec::new();
        for r in alts {
            match self.candidate(r, avoid_conflicts) {
                Ok(c) => {
                    tracing::debug!(package = %c.pkg.id(), %reason, "selected");
                    self.selected.insert(c.pkg.name.as_str(), (c, reason));
                    self.queue.push_back(c.pkg.name.as_str());
                    return Ok(());
                }
                Err(why) => reasons.push(why),
            }
        }
        Err(reasons)
    }
}

/// Computes the dependency closure of `requests` over `indexes` for `arch` (plus `all`).
/// See the module documentation for the rules.
pub fn resolve(indexes: &[PackageIndex], arch: &str, requests: &[Request]) -> Result<Resolution, ResolveError> {
    let mut st = State { u: Universe::new(indexes, arch), selected: BTreeMap::new(), queue: VecDeque::new() };
    for req in requests {
        let text = req.to_string();
        st.satisfy(std::slice::from_ref(&req.relation), Reason::Requested(text.clone())).map_err(|reasons| {
            ResolveError::Unsatisfiable { relation: text.clone(), chain: vec![format!("requested `{text}`")], reasons }
        })?;
    }
    while let Some(name) = st.queue.pop_front() {
        let Some((c, _)) = st.selected.get(name) else { continue };
        let pkg: &Package = c.pkg;
        for (field, groups) in [("Pre-Depends", &pkg.pre_depends), ("Depends", &pkg.depends)] {
            for group in groups {
                let relation = format!("{field}: {}", display_alternatives(group));
                let reason = Reason::Dependency { of: pkg.name.clone(), relation: relation.clone() };
                if let Err(reasons) = st.satisfy(group, reason) {
                    return Err(ResolveError::Unsatisfiable { relation, chain: st.chain(name), reasons });
                }
            }
        }
    }
    let mut conflicts = Vec::new();
    for (a, _) in st.selected.values() {
        for (b, _) in st.selected.values() {
            if a.pkg.name == b.pkg.name {
                continue;
            }
            for (field, groups) in [("Conflicts", &a.pkg.conflicts), ("Breaks", &a.pkg.breaks)] {
                for r in groups.iter().flatten() {
                    if r.applies_to(arch) && st.u.satisfies(r, b.pkg, true) {
                        conflicts.push(Conflict {
                            package: a.pkg.id(),
                            field,
                            relation: r.to_string(),
                            with: b.pkg.id(),
                        });
                    }
                }
            }
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        conflicts.dedup();
        return Err(ResolveError::Conflicts { conflicts });
    }
    let packages = st
        .selected
        .into_values()
        .map(|(c, reason)| Selected { package: c.pkg.clone(), index: c.index, reason })
        .collect();
    Ok(Resolution { packages })
}

/// Whether `version` satisfies `op target` (a convenience over [`VersionConstraint`]).
pub fn version_satisfies(version: &Version, op: VersionOp, target: &Version) -> bool {
    VersionConstraint { op, version: target.clone() }.matches(version)
}
