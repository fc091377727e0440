//! A lockfile's closure: every artifact it pins, where to download it from, and
//! the store's record of which lockfiles keep which blobs alive (gc roots).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use openshell_store::{Digest, Store};
use url::Url;

use crate::fetch::{FetchError, Fetcher, digest_from_sri};
use crate::lockfile::{Lockfile, LockfileError};
use crate::sources::{self, Source, SourceError};

/// Where an artifact comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Debian {
        suite: String,
    },
    Npm,
    Pypi {
        project: String,
    },
    /// Stored by `openshell lock` itself (a file of the definition).
    Local,
}

/// One pinned artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub digest: Digest,
    /// `debian bash 5.2.37-1`, for messages.
    pub label: String,
    pub origin: Origin,
    /// Relative to the source (archive root, registry, or the project's index page).
    pub path: String,
    pub size: Option<u64>,
}

/// Errors of working with a closure.
#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{label}: `{value}` is not a valid integrity or digest")]
    BadDigest { label: String, value: String },
    #[error(
        "{label} is not in the store {}: it was stored by `openshell lock`; copy the store (openshell store export/import) or lock again",
        root.display()
    )]
    LocalMissing { label: String, root: PathBuf },
    #[error("{project}: no file `{filename}` on the index page {url}")]
    WheelNotListed { project: String, filename: String, url: String },
    #[error("{project}: {source}")]
    WheelPage {
        project: String,
        #[source]
        source: openshell_pypi::IndexError,
    },
    #[error("store: {0}")]
    Store(#[from] openshell_store::StoreError),
    #[error("{} artifact(s) failed to download:\n{}", .0.len(), .0.join("\n"))]
    Failed(Vec<String>),
}

impl Lockfile {
    /// Every artifact, in lockfile order.
    pub fn artifacts(&self) -> Result<Vec<Artifact>, ClosureError> {
        let parse = |label: &str, v: &str| {
            v.parse::<Digest>().map_err(|_| ClosureError::BadDigest { label: label.to_owned(), value: v.to_owned() })
        };
        let mut out = Vec::new();
        for d in &self.debian {
            let label = format!("debian {} {}", d.name, d.version);
            out.push(Artifact {
                digest: parse(&label, &d.sha256)?,
                origin: Origin::Debian { suite: d.suite.clone() },
                path: d.path.clone(),
                size: Some(d.size),
                label,
            });
        }
        for n in &self.npm {
            let label = format!("npm {}@{}", n.name, n.version);
            let digest = digest_from_sri(&n.integrity)
                .map_err(|_| ClosureError::BadDigest { label: label.clone(), value: n.integrity.clone() })?;
            out.push(Artifact { digest, origin: Origin::Npm, path: n.path.clone(), size: n.size, label });
        }
        for w in &self.pypi {
            let label = format!("pypi {}=={}", w.name, w.version);
            out.push(Artifact {
                digest: parse(&label, &w.sha256)?,
                origin: Origin::Pypi { project: w.project.clone() },
                path: w.filename.clone(),
                size: w.size,
                label,
            });
        }
        for f in &self.file {
            let label = format!("file {}", f.path);
            out.push(Artifact {
                digest: parse(&label, &f.sha256)?,
                origin: Origin::Local,
                path: f.path.clone(),
                size: Some(f.size),
                label,
            });
        }
        Ok(out)
    }

    /// The set of digests the lockfile needs.
    pub fn digests(&self) -> Result<BTreeSet<Digest>, ClosureError> {
        Ok(self.artifacts()?.into_iter().map(|a| a.digest).collect())
    }
}

/// Source addresses chosen by the user (flags); anything unset comes from the
/// machine's configuration.
#[derive(Debug, Clone, Default)]
pub struct SourceFlags {
    pub debian_mirror: Option<String>,
    pub npm_registry: Option<String>,
    pub pypi_index: Option<String>,
}

/// Reports download progress (the CLI draws bars; tests count).
pub trait Progress: Sync {
    /// A download starts (`size` when known).
    fn start(&self, label: &str, size: Option<u64>);
    /// Bytes arrived for `label`: `done` of `total`.
    fn advance(&self, label: &str, done: u64, total: Option<u64>);
    /// The artifact is in the store (`downloaded` bytes this time; 0 = it was already there).
    fn finish(&self, label: &str, downloaded: u64);
}

/// What `fetch` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FetchReport {
    pub artifacts: usize,
    pub already_present: usize,
    pub downloaded: usize,
    pub bytes: u64,
}

/// Downloads every artifact of `lock` missing from `store`, verifying each, with
/// up to `jobs` downloads at once. Failures are collected and reported together.
pub fn fetch(
    lock: &Lockfile,
    store: &Store,
    flags: &SourceFlags,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<FetchReport, ClosureError> {
    let artifacts = lock.artifacts()?;
    let mut report = FetchReport { artifacts: artifacts.len(), ..FetchReport::default() };
    let missing: Vec<&Artifact> = artifacts.iter().filter(|a| !store.contains(&a.digest)).collect();
    report.already_present = artifacts.len() - missing.len();
    if let Some(local) = missing.iter().find(|a| a.origin == Origin::Local) {
        return Err(ClosureError::LocalMissing { label: local.label.clone(), root: store.root().to_owned() });
    }
    if missing.is_empty() {
        return Ok(report);
    }
    let apt = sources::machine_apt_entries(Path::new("/"));
    let mut mirrors: std::collections::BTreeMap<String, Source> = Default::default();
    for a in &missing {
        if let Origin::Debian { suite } = &a.origin
            && !mirrors.contains_key(suite)
        {
            mirrors.insert(suite.clone(), sources::debian_mirror(flags.debian_mirror.as_deref(), suite, &apt)?);
        }
    }
    let npm = if missing.iter().any(|a| a.origin == Origin::Npm) {
        Some(sources::npm_registry(flags.npm_registry.as_deref())?)
    } else {
        None
    };
    let pypi = if missing.iter().any(|a| matches!(a.origin, Origin::Pypi { .. })) {
        Some(sources::pypi_index(flags.pypi_index.as_deref())?)
    } else {
        None
    };
    let fetcher = Fetcher::new();
    let queue = std::sync::Mutex::new(missing.into_iter());
    let failures = std::sync::Mutex::new(Vec::new());
    let totals = std::sync::Mutex::new((0usize, 0u64));
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some(a) = next else { break };
                    let result = (|| -> Result<u64, ClosureError> {
                        let url = match &a.origin {
                            Origin::Debian { suite } => mirrors[suite].join(&a.path)?,
                            Origin::Npm => npm.as_ref().ok_or(SourceError::NoNpmRegistry)?.join(&a.path)?,
                            Origin::Pypi { project } => {
                                let index = pypi.as_ref().ok_or(SourceError::NoPypiIndex)?;
                                wheel_url(&fetcher, index, project, &a.path)?
                            }
                            Origin::Local => {
                                return Err(ClosureError::LocalMissing {
                                    label: a.label.clone(),
                                    root: store.root().to_owned(),
                                });
                            }
                        };
                        progress.start(&a.label, a.size);
                        let n = fetcher.fetch_into(store, url.as_str(), &a.digest, |done, total| {
                            progress.advance(&a.label, done, total)
                        })?;
                        progress.finish(&a.label, n);
                        Ok(n)
                    })();
                    match result {
                        Ok(n) => {
                            if let Ok(mut t) = totals.lock() {
                                t.0 += 1;
                                t.1 += n;
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failures.lock() {
                                f.push(format!("  {}: {e}", a.label));
                            }
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    if !failures.is_empty() {
        return Err(ClosureError::Failed(failures));
    }
    let (n, bytes) = totals.into_inner().unwrap_or_default();
    report.downloaded = n;
    report.bytes = bytes;
    Ok(report)
}

/// Finds a wheel's URL on its project's simple-index page (PEP 503 HTML or PEP 691 JSON).
fn wheel_url(fetcher: &Fetcher, index: &Source, project: &str, filename: &str) -> Result<Url, ClosureError> {
    let page = index.pypi_project(project)?;
    let not_listed = || ClosureError::WheelNotListed {
        project: project.to_owned(),
        filename: filename.to_owned(),
        url: page.to_string(),
    };
    let (body, content_type) = fetcher.get_typed(page.as_str(), &[("Accept", crate::lock::PYPI_ACCEPT)])?;
    let parsed = openshell_pypi::parse_index(&body, &content_type, &page, project)
        .map_err(|source| ClosureError::WheelPage { project: project.to_owned(), source })?;
    parsed.files.into_iter().find(|f| f.filename == filename).map(|f| f.url).ok_or_else(not_listed)
}

/// gc roots: the store remembers each lockfile it fetched for, by path.
pub fn register_root(store: &Store, lock_path: &Path) -> Result<(), ClosureError> {
    let abs = std::fs::canonicalize(lock_path).unwrap_or_else(|_| lock_path.to_owned());
    let dir = store.root().join("roots");
    std::fs::create_dir_all(&dir).map_err(|source| openshell_store::StoreError::Io { path: dir.clone(), source })?;
    let name = Digest::sha256(abs.to_string_lossy().as_bytes()).hex();
    let p = dir.join(name);
    std::fs::write(&p, abs.to_string_lossy().as_bytes())
        .map_err(|source| openshell_store::StoreError::Io { path: p, source })?;
    Ok(())
}

/// The live set: digests of every registered lockfile that still exists and
/// parses (stale roots are removed), of every recorded image, plus `extra` lockfiles.
pub fn live_set(store: &Store, extra: &[Lockfile]) -> Result<(BTreeSet<Digest>, Vec<PathBuf>), ClosureError> {
    let mut live = BTreeSet::new();
    let mut locks = Vec::new();
    for l in extra {
        live.extend(l.digests()?);
    }
    let dir = store.root().join("roots");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for entry in rd.flatten() {
            let Ok(target) = std::fs::read_to_string(entry.path()) else { continue };
            let target = PathBuf::from(target);
            match Lockfile::load(&target).ok().and_then(|l| l.digests().ok()) {
                Some(d) => {
                    live.extend(d);
                    locks.push(target);
                }
                None => {
                    tracing::info!(lock = %target.display(), "dropping stale gc root");
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    locks.sort();
    // Built images keep their manifest, config and layers.
    if let Ok(images) = crate::images::list(store) {
        for image in images {
            live.extend(image.blobs());
        }
    }
    Ok((live, locks))
}
