//! Resolving requirements to one wheel per project for a [`Target`].
//!
//! Every project gets exactly one version (Python's `site-packages` is flat). The version of
//! a project is a function of the requirements on it: the highest version that satisfies
//! all of them (PEP 440, final releases preferred unless a specifier names a prerelease or
//! only prereleases match), has a non-yanked wheel compatible with the target, and whose
//! `Requires-Python` admits the target. Requirements come from the roots and from the
//! `Requires-Dist` of the chosen versions (markers evaluated for the target, extras
//! followed); the choice is repeated until nothing changes. There is no backtracking: when
//! the requirements on a project cannot all be met, resolution fails and says who asked
//! for what. Pinned roots (`name==1.2.3`) are just requirements with an exact specifier.
//!
//! Among the wheels of the chosen version, the one whose best tag ranks highest in
//! [`Target::compatible_tags`] wins (then the higher build number, then the file name).
//! Source distributions are never used.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::index::{DistFile, ProjectPage};
use crate::metadata::{CoreMetadata, MarkerEnv, MetadataError, Requirement, RequirementError};
use crate::version::{SpecifierSet, Version};
use crate::wheel::{Tag, Target, WheelFilename, normalize_name};

/// Where project pages and metadata come from.
pub trait IndexSource {
    /// The source's error.
    type Error: std::error::Error + 'static;

    /// The project page of `name` (PEP 503-normalized).
    fn project(&mut self, name: &str) -> Result<ProjectPage, Self::Error>;

    /// The core metadata of `file`: its PEP 658 `.metadata` file when
    /// [`DistFile::core_metadata`] is set, otherwise the `*.dist-info/METADATA` of the wheel
    /// (see [`crate::install::wheel_metadata`]).
    fn metadata(&mut self, file: &DistFile) -> Result<Vec<u8>, Self::Error>;
}

/// One chosen wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedDist {
    /// Normalized project name.
    pub name: String,
    /// Normalized version.
    pub version: String,
    /// Wheel file name.
    pub filename: String,
    /// Download URL.
    pub url: String,
    /// Lower-case hex sha256 from the index, if it gave one.
    pub sha256: Option<String>,
    /// Size in bytes, if the index gave it.
    pub size: Option<u64>,
    /// The compatibility tag the wheel was chosen by.
    pub tag: String,
    /// Extras requested of this project.
    pub extras: Vec<String>,
    /// Normalized names of the projects it requires (for the target and its extras).
    pub dependencies: Vec<String>,
}

impl ResolvedDist {
    /// The wheel's path relative to `index` when its URL is under it.
    pub fn index_relative_path(&self, index: &url::Url) -> Option<String> {
        let file = DistFile {
            filename: self.filename.clone(),
            url: url::Url::parse(&self.url).ok()?,
            sha256: None,
            requires_python: None,
            yanked: None,
            core_metadata: None,
            size: None,
        };
        file.index_relative_path(index)
    }
}

/// Resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError<E: std::error::Error + 'static> {
    /// The source failed.
    #[error("{chain}: fetching {what}: {source}")]
    Source {
        /// Who needed it.
        chain: String,
        /// What was being fetched.
        what: String,
        /// The source's error.
        #[source]
        source: E,
    },
    /// A root requirement does not parse.
    #[error(transparent)]
    Requirement(#[from] RequirementError),
    /// A direct URL requirement.
    #[error("{chain}: direct URL requirements are not supported ({requirement})")]
    DirectUrl {
        /// Who asked.
        chain: String,
        /// The requirement.
        requirement: String,
    },
    /// No version meets the requirements.
    #[error("{project}: no version satisfies {requirements}{detail}")]
    NoVersion {
        /// The project.
        project: String,
        /// The requirements, each with the chain that asked for it.
        requirements: String,
        /// What exists and why it does not qualify.
        detail: String,
    },
    /// A metadata file is unusable.
    #[error("{project} {version} ({filename}): {source}")]
    Metadata {
        /// Project.
        project: String,
        /// Version.
        version: String,
        /// File whose metadata it is.
        filename: String,
        /// What is wrong.
        #[source]
        source: MetadataError,
    },
    /// Metadata for a different project or version.
    #[error("{filename}: metadata is for {found}")]
    MetadataMismatch {
        /// File.
        filename: String,
        /// Name and version the metadata states.
        found: String,
    },
    /// The metadata file does not match the index's hash.
    #[error("{filename}: metadata sha256 {actual} does not match the index's {expected}")]
    MetadataHash {
        /// File.
        filename: String,
        /// From the index.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The requirements keep changing.
    #[error("resolution did not settle after {0} rounds")]
    NoFixpoint(usize),
    /// The target's Python version does not parse.
    #[error("target python version {0:?} is not a PEP 440 version")]
    InvalidTarget(String),
}

const MAX_ROUNDS: usize = 100;

#[derive(Debug, Clone)]
struct Candidate {
    version: Version,
    file: DistFile,
    tag: Tag,
}

#[derive(Debug, Clone)]
struct Need {
    req: Requirement,
    /// Normalized name of the requiring project, `None` for a root.
    from: Option<String>,
}

struct Resolver<'s, S: IndexSource> {
    source: &'s mut S,
    python: Version,
    env: MarkerEnv,
    priorities: HashMap<Tag, usize>,
    pages: HashMap<String, Rc<ProjectPage>>,
    metadata: HashMap<String, Rc<CoreMetadata>>,
}

/// Resolve `roots` (PEP 508 requirement strings: `name==1.2.3`, `name`, `name[extra]>=2`) for
/// `target` into one wheel per project, sorted by name.
pub fn resolve<S: IndexSource>(
    source: &mut S,
    roots: &[&str],
    target: &Target,
) -> Result<Vec<ResolvedDist>, ResolveError<S::Error>> {
    let roots: Vec<Requirement> = roots.iter().map(|r| Requirement::parse(r)).collect::<Result<_, _>>()?;
    let python = Version::parse(&target.python_full_version)
        .map_err(|_| ResolveError::InvalidTarget(target.python_full_version.clone()))?;
    let mut r = Resolver {
        source,
        env: MarkerEnv::for_target(target),
        python,
        priorities: target.tag_priorities(),
        pages: HashMap::new(),
        metadata: HashMap::new(),
    };
    let mut chosen: BTreeMap<String, Candidate> = BTreeMap::new();
    for _ in 0..MAX_ROUNDS {
        let (needs, extras) = r.gather(&roots, &chosen)?;
        let mut next: BTreeMap<String, Candidate> = BTreeMap::new();
        for (name, list) in &needs {
            let c = r.choose(name, list, &needs, &chosen)?;
            next.insert(name.clone(), c);
        }
        let same = next.len() == chosen.len()
            && next.iter().all(|(k, v)| chosen.get(k).is_some_and(|c| c.file.filename == v.file.filename));
        chosen = next;
        if same {
            return r.output(&chosen, &needs, &extras);
        }
    }
    Err(ResolveError::NoFixpoint(MAX_ROUNDS))
}

impl<S: IndexSource> Resolver<'_, S> {
    fn page(&mut self, name: &str, chain: impl FnOnce() -> String) -> Result<Rc<ProjectPage>, ResolveError<S::Error>> {
        if let Some(p) = self.pages.get(name) {
            return Ok(p.clone());
        }
        let p = self.source.project(name).map_err(|source| ResolveError::Source {
            chain: chain(),
            what: format!("the project page of {name}"),
            source,
        })?;
        let p = Rc::new(p);
        self.pages.insert(name.to_string(), p.clone());
        Ok(p)
    }

    fn core_metadata(&mut self, name: &str, c: &Candidate) -> Result<Rc<CoreMetadata>, ResolveError<S::Error>> {
        if let Some(m) = self.metadata.get(&c.file.filename) {
            return Ok(m.clone());
        }
        let bytes = self.source.metadata(&c.file).map_err(|source| ResolveError::Source {
            chain: format!("{name}=={}", c.version),
            what: format!("the metadata of {}", c.file.filename),
            source,
        })?;
        if let Some(expected) = c.file.core_metadata.as_ref().and_then(|m| m.sha256.clone()) {
            let actual: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            if actual != expected {
                return Err(ResolveError::MetadataHash { filename: c.file.filename.clone(), expected, actual });
            }
        }
        let m = CoreMetadata::parse(&bytes).map_err(|source| ResolveError::Metadata {
            project: name.to_string(),
            version: c.version.to_string(),
            filename: c.file.filename.clone(),
            source,
        })?;
        if normalize_name(&m.name) != name || m.version != c.version {
            return Err(ResolveError::MetadataMismatch {
                filename: c.file.filename.clone(),
                found: format!("{} {}", m.name, m.version),
            });
        }
        let m = Rc::new(m);
        self.metadata.insert(c.file.filename.clone(), m.clone());
        Ok(m)
    }

    /// The requirements in force given the current choices, with the extras asked of each
    /// project.
    #[allow(clippy::type_complexity)]
    fn gather(
        &mut self,
        roots: &[Requirement],
        chosen: &BTreeMap<String, Candidate>,
    ) -> Result<(BTreeMap<String, Vec<Need>>, BTreeMap<String, BTreeSet<String>>), ResolveError<S::Error>> {
        let mut needs: BTreeMap<String, Vec<Need>> = BTreeMap::new();
        let mut extras: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut queue: Vec<Need> = Vec::new();
        for req in roots {
            if req.applies(&self.env) {
                queue.push(Need { req: req.clone(), from: None });
            }
        }
        // Expand until no new requirement or extra appears.
        let mut expanded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        loop {
            while let Some(need) = queue.pop() {
                let name = need.req.normalized_name();
                if need.req.url.is_some() {
                    return Err(ResolveError::DirectUrl {
                        chain: self.chain(&need, &needs, chosen),
                        requirement: need.req.text.clone(),
                    });
                }
                extras.entry(name.clone()).or_default().extend(need.req.extras.iter().cloned());
                let list = needs.entry(name).or_default();
                if !list.iter().any(|n| n.req == need.req && n.from == need.from) {
                    list.push(need);
                }
            }
            let mut grew = false;
            for (name, c) in chosen {
                if !needs.contains_key(name) {
                    continue;
                }
                let want = extras.get(name).cloned().unwrap_or_default();
                if expanded.get(name) == Some(&want) {
                    continue;
                }
                expanded.insert(name.clone(), want.clone());
                grew = true;
                let meta = self.core_metadata(name, c)?;
                for req in &meta.requires_dist {
                    let applies = req.applies(&self.env) || want.iter().any(|e| req.applies(&self.env.with_extra(e)));
                    if applies {
                        queue.push(Need { req: req.clone(), from: Some(name.clone()) });
                    }
                }
            }
            if !grew && queue.is_empty() {
                break;
            }
        }
        Ok((needs, extras))
    }

    fn chain(&self, need: &Need, needs: &BTreeMap<String, Vec<Need>>, chosen: &BTreeMap<String, Candidate>) -> String {
        let mut parts = vec![need.req.text.clone()];
        let mut seen = BTreeSet::new();
        let mut from = need.from.clone();
        while let Some(f) = from {
            if !seen.insert(f.clone()) {
                break;
            }
            let v = chosen.get(&f).map(|c| c.version.to_string()).unwrap_or_else(|| "?".into());
            parts.push(format!("{f}=={v}"));
            from = needs.get(&f).and_then(|l| l.iter().map(|n| n.from.clone()).min()).flatten();
        }
        parts.reverse();
        parts.join(" > ")
    }

    /// A file's `requires-python` admits the target (an unparseable one does not).
    fn python_ok(&self, spec: &str) -> bool {
        SpecifierSet::parse(spec).is_ok_and(|s| s.contains_any(&self.python))
    }

    /// The best wheel of each version, and notes on files that do not qualify.
    fn candidates(
        &self,
        name: &str,
        page: &ProjectPage,
    ) -> (BTreeMap<Version, Candidate>, BTreeMap<String, Vec<String>>) {
        let mut best: BTreeMap<Version, (usize, i128, Candidate)> = BTreeMap::new();
        let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in &page.files {
            let Ok(w) = WheelFilename::parse(&f.filename) else {
                let version = sdist_version(name, &f.filename).unwrap_or_else(|| "?".into());
                notes.entry(version).or_default().push(format!("{} (not a wheel)", f.filename));
                continue;
            };
            let note = |why: &str| format!("{} ({why})", f.filename);
            let key = w.version.to_string();
            if normalize_name(&w.name) != name {
                continue;
            }
            if let Some(reason) = &f.yanked {
                let why = if reason.is_empty() { "yanked".to_string() } else { format!("yanked: {reason}") };
                notes.entry(key).or_default().push(note(&why));
                continue;
            }
            if let Some(rp) = &f.requires_python
                && !self.python_ok(rp)
            {
                notes.entry(key).or_default().push(note(&format!("requires-python {rp}")));
                continue;
            }
            let Some((prio, tag)) =
                w.tags().into_iter().filter_map(|t| self.priorities.get(&t).map(|p| (*p, t))).min_by_key(|(p, _)| *p)
            else {
                notes.entry(key).or_default().push(note("incompatible tags"));
                continue;
            };
            let build = w.build.as_ref().map_or(-1, |(n, _)| i128::from(*n));
            let cand = Candidate { version: w.version.clone(), file: f.clone(), tag };
            let better = match best.get(&w.version) {
                None => true,
                Some((p, b, c)) => (prio, -build, &f.filename) < (*p, -*b, &c.file.filename),
            };
            if better {
                best.insert(w.version.clone(), (prio, build, cand));
            }
        }
        (best.into_iter().map(|(v, (_, _, c))| (v, c)).collect(), notes)
    }

    fn choose(
        &mut self,
        name: &str,
        list: &[Need],
        needs: &BTreeMap<String, Vec<Need>>,
        chosen: &BTreeMap<String, Candidate>,
    ) -> Result<Candidate, ResolveError<S::Error>> {
        let chain0 = list.first().map(|n| self.chain(n, needs, chosen)).unwrap_or_default();
        let page = self.page(name, || chain0)?;
        let (cands, notes) = self.candidates(name, &page);
        let sets: Vec<&SpecifierSet> = list.iter().map(|n| &n.req.specifiers).collect();
        let versions: Vec<Version> = cands.keys().cloned().collect();
        let allow_pre = sets.iter().any(|s| s.allows_prereleases());
        let matching: Vec<&Version> = versions.iter().filter(|v| sets.iter().all(|s| s.contains_any(v))).collect();
        let finals: Vec<&Version> = matching.iter().copied().filter(|v| !v.is_prerelease()).collect();
        let pool = if allow_pre || finals.is_empty() { matching } else { finals };
        let mut rejected: Vec<String> = Vec::new();
        for v in pool.into_iter().rev() {
            let Some(c) = cands.get(v).cloned() else { continue };
            let meta = self.core_metadata(name, &c)?;
            if let Some(rp) = &meta.requires_python
                && !rp.contains_any(&self.python)
            {
                rejected.push(format!("{v}: Requires-Python {rp}"));
                continue;
            }
            return Ok(c);
        }
        let requirements = list.iter().map(|n| self.chain(n, needs, chosen)).collect::<Vec<_>>().join("; ");
        let mut detail = String::new();
        let wheel_versions: Vec<String> = versions.iter().map(ToString::to_string).collect();
        detail.push_str(&format!(
            "; compatible wheels exist for: {}",
            if wheel_versions.is_empty() { "no version".to_string() } else { summarize(&wheel_versions) }
        ));
        for r in &rejected {
            detail.push_str(&format!("; {r}"));
        }
        // Files of versions that match the specifiers but have no usable wheel.
        let mut shown = 0;
        for (ver, why) in notes.iter().rev() {
            let ok = Version::parse(ver).is_ok_and(|v| sets.iter().all(|s| s.contains_any(&v)));
            if ok && shown < 3 {
                detail.push_str(&format!("; {ver} has no compatible wheel: {}", why.join(", ")));
                shown += 1;
            }
        }
        Err(ResolveError::NoVersion { project: name.to_string(), requirements, detail })
    }

    fn output(
        &mut self,
        chosen: &BTreeMap<String, Candidate>,
        needs: &BTreeMap<String, Vec<Need>>,
        extras: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Vec<ResolvedDist>, ResolveError<S::Error>> {
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, list) in needs {
            for n in list {
                if let Some(f) = &n.from {
                    deps.entry(f.clone()).or_default().insert(name.clone());
                }
            }
        }
        Ok(chosen
            .iter()
            .map(|(name, c)| ResolvedDist {
                name: name.clone(),
                version: c.version.to_string(),
                filename: c.file.filename.clone(),
                url: c.file.url.to_string(),
                sha256: c.file.sha256.clone(),
                size: c.file.size,
                tag: c.tag.to_string(),
                extras: extras.get(name).map(|e| e.iter().cloned().collect()).unwrap_or_default(),
                dependencies: deps.get(name).map(|d| d.iter().cloned().collect()).unwrap_or_default(),
            })
            .collect())
    }
}

fn summarize(v: &[String]) -> String {
    const SHOW: usize = 10;
    if v.len() <= SHOW {
        v.join(", ")
    } else {
        format!("{} … and {} more", v[v.len() - SHOW..].join(", "), v.len() - SHOW)
    }
}

/// The version of a source distribution named `{name}-{version}.tar.gz` / `.zip`.
fn sdist_version(name: &str, filename: &str) -> Option<String> {
    let stem = filename.strip_suffix(".tar.gz").or_else(|| filename.strip_suffix(".zip"))?;
    let (n, v) = stem.rsplit_once('-')?;
    (normalize_name(n) == name).then(|| Version::parse(v).map(|v| v.to_string()).unwrap_or_else(|_| v.to_string()))
}
