//! `openshell lock`: resolve an image definition against its sources into a
//! lockfile. Every index is verified before it is trusted: the Debian index
//! through its signed InRelease file, npm and PyPI artifacts by the integrity
//! their registries publish.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use openshell_debian as debian;
use openshell_store::{Digest, Store};

use crate::closure::SourceFlags;
use crate::def::ImageDef;
use crate::fetch::{FetchError, Fetcher};
use crate::lockfile::{DebArtifact, DefinitionPin, FileArtifact, ImageConfig, Lockfile, NpmArtifact, WheelArtifact};
use crate::sources::{self, Source, SourceError};

/// How to lock.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    pub sources: SourceFlags,
    /// Keyrings to verify Debian InRelease files with; default: the machine's
    /// Debian archive keyrings.
    pub keyrings: Option<Vec<PathBuf>>,
    /// Root of the filesystem whose apt configuration is read (`/`).
    pub apt_root: Option<PathBuf>,
}

/// Reports what `lock` is doing.
pub trait LockProgress {
    fn step(&self, message: &str);
}

/// Why locking failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("Debian suite `{suite}`: {source}")]
    Release {
        suite: String,
        #[source]
        source: debian::ReleaseError,
    },
    #[error("Debian suite `{suite}`, component `{component}`: {source}")]
    Index {
        suite: String,
        component: String,
        #[source]
        source: Box<debian::PackagesError>,
    },
    #[error("Debian package request `{request}`: {source}")]
    Request {
        request: String,
        #[source]
        source: debian::RelationError,
    },
    #[error("Debian packages: {0}")]
    Resolve(#[from] debian::ResolveError),
    #[error(
        "no Debian archive keyring found (looked for /usr/share/keyrings/debian-archive-*.gpg); install debian-archive-keyring or pass --keyring"
    )]
    NoKeyring,
    #[error("file `{path}`: cannot read {}: {source}", source_path.display())]
    FileSource {
        path: String,
        source_path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] openshell_store::StoreError),
    #[error("npm: {0}")]
    Npm(String),
    #[error("PyPI packages: {0}")]
    Pypi(Box<openshell_pypi::ResolveError<PypiSourceError>>),
    #[error(
        "PyPI project `{project}` {version}: the index publishes {problem} for `{filename}`; a wheel is locked only by the sha256 its index publishes"
    )]
    PypiHash { project: String, version: String, filename: String, problem: String },
}

/// The `Accept` header for simple-index project pages: PEP 691 JSON preferred, PEP 503
/// HTML accepted.
pub const PYPI_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, text/html;q=0.1";

/// Why the npm registry could not answer for a packument.
#[derive(Debug, thiserror::Error)]
pub enum NpmSourceError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Why the PyPI index could not answer for a project page, a metadata file or a wheel.
#[derive(Debug, thiserror::Error)]
pub enum PypiSourceError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Page(#[from] openshell_pypi::IndexError),
    #[error("`{filename}` has no PEP 658 metadata and the index publishes no sha256 for it, so it cannot be verified")]
    NoSha256 { filename: String },
    #[error("`{filename}` ({url}) does not match the index: its sha256 is {actual}, the index publishes {expected}")]
    WheelHash { filename: String, url: String, expected: String, actual: String },
    #[error("`{filename}`: {source}")]
    Wheel {
        filename: String,
        #[source]
        source: openshell_pypi::InstallError,
    },
}

/// Resolves `def` (read from `def_path`, whose bytes are `def_bytes`) into a lockfile.
/// Plain files of the definition are put into `store` (the store is their archive).
pub fn lock(
    def: &ImageDef,
    def_path: &Path,
    def_bytes: &[u8],
    store: &Store,
    opts: &LockOptions,
    progress: &dyn LockProgress,
) -> Result<Lockfile, LockError> {
    let fetcher = Fetcher::new();
    let mut lock = Lockfile {
        version: 1,
        definition: DefinitionPin {
            file: def_path.display().to_string(),
            sha256: Digest::sha256(def_bytes).to_string(),
        },
        image: ImageConfig {
            name: def.name.clone(),
            tag: def.tag.clone(),
            user: def.user.name.clone(),
            uid: def.user.uid,
            gid: def.user.gid,
            home: def.user.home.clone(),
            shell: def.user.shell.clone(),
            workdir: def.workdir.clone(),
            env: def.env.clone(),
            entrypoint: def.entrypoint.clone(),
            cmd: def.cmd.clone(),
            labels: def.labels.clone(),
            npm_prefix: def.npm.as_ref().map(|n| n.prefix.clone()),
            site_packages: def.pypi.as_ref().map(|p| p.site_packages.clone()),
            exclude: def.exclude.clone(),
            keep: def.keep.clone(),
        },
        debian: Vec::new(),
        npm: Vec::new(),
        pypi: Vec::new(),
        file: Vec::new(),
    };
    if let Some(d) = &def.debian {
        lock.debian = lock_debian(d, &fetcher, opts, progress)?;
    }
    if let Some(n) = def.npm.as_ref().filter(|n| !n.packages.is_empty()) {
        lock.npm = lock_npm(n, &fetcher, opts, progress)?;
    }
    if let Some(p) = def.pypi.as_ref().filter(|p| !p.packages.is_empty()) {
        lock.pypi = lock_pypi(p, &fetcher, opts, progress)?;
    }
    let base = def_path.parent().unwrap_or(Path::new("."));
    for f in &def.files {
        let bytes = match (&f.content, &f.source) {
            (Some(c), _) => c.as_bytes().to_vec(),
            (None, Some(src)) => {
                let p = base.join(src);
                std::fs::read(&p).map_err(|source| LockError::FileSource {
                    path: f.path.clone(),
                    source_path: p,
                    source,
                })?
            }
            (None, None) => Vec::new(),
        };
        let digest = store.insert_bytes(&bytes)?;
        lock.file.push(FileArtifact {
            path: f.path.clone(),
            mode: f.mode.clone(),
            size: bytes.len() as u64,
            sha256: digest.to_string(),
        });
    }
    Ok(lock)
}

fn lock_debian(
    d: &crate::def::DebianDef,
    fetcher: &Fetcher,
    opts: &LockOptions,
    progress: &dyn LockProgress,
) -> Result<Vec<DebArtifact>, LockError> {
    let keyrings = match &opts.keyrings {
        Some(k) => k.clone(),
        None => debian::find_keyrings(),
    };
    if keyrings.is_empty() {
        return Err(LockError::NoKeyring);
    }
    let apt = sources::machine_apt_entries(opts.apt_root.as_deref().unwrap_or(Path::new("/")));
    let mut indexes = Vec::new();
    let mut index_suite = Vec::new();
    for suite in &d.suites {
        let mirror = sources::debian_mirror(opts.sources.debian_mirror.as_deref(), suite, &apt)?;
        let dists = mirror.join(&format!("dists/{suite}/"))?;
        let url = sources::under(&dists, "InRelease")?;
        progress.step(&format!("verifying {url} (mirror from {})", mirror.origin));
        let inrelease = fetcher.get(url.as_str())?;
        let release = debian::Release::from_inrelease(url.as_str(), &inrelease, &keyrings)
            .map_err(|source| LockError::Release { suite: suite.clone(), source })?;
        for component in &d.components {
            progress.step(&format!("reading {suite}/{component}/binary-{} index", d.architecture));
            let index = debian::index_from_release(
                &release,
                component,
                &d.architecture,
                |p| -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
                    let url = sources::under(&dists, p)?;
                    Ok(fetcher.get(url.as_str())?)
                },
            )
            .map_err(|source| LockError::Index {
                suite: suite.clone(),
                component: component.clone(),
                source: Box::new(source),
            })?;
            indexes.push(index);
            index_suite.push(suite.clone());
        }
    }
    let requests = d
        .packages
        .iter()
        .map(|r| debian::Request::parse(r).map_err(|source| LockError::Request { request: r.clone(), source }))
        .collect::<Result<Vec<_>, _>>()?;
    progress.step(&format!("resolving {} Debian package(s)", requests.len()));
    let resolution = debian::resolve(&indexes, &d.architecture, &requests)?;
    Ok(resolution
        .packages
        .iter()
        .map(|s| DebArtifact {
            name: s.package.name.clone(),
            version: s.package.version.to_string(),
            architecture: s.package.architecture.clone(),
            suite: index_suite.get(s.index).cloned().unwrap_or_default(),
            path: s.package.filename.clone(),
            size: s.package.size,
            sha256: s.package.sha256.to_string(),
        })
        .collect())
}

/// Packuments fetched from the registry (full documents: install scripts are needed
/// to reproduce their effect at build time).
struct RegistrySource<'a> {
    registry: Source,
    fetcher: &'a Fetcher,
    progress: &'a dyn LockProgress,
}

impl openshell_npm::PackumentSource for RegistrySource<'_> {
    type Error = NpmSourceError;

    fn packument(&mut self, name: &str) -> Result<openshell_npm::Packument, NpmSourceError> {
        let url = self.registry.npm_packument(name)?;
        self.progress.step(&format!("packument {name}"));
        let bytes = self.fetcher.get_with(url.as_str(), &[("Accept", "application/json")])?;
        openshell_npm::Packument::from_json(&bytes, Some(name))
            .map_err(|e| FetchError::Http { url: url.to_string(), message: format!("not a packument: {e}") }.into())
    }

    fn is_not_found(error: &NpmSourceError) -> bool {
        matches!(error, NpmSourceError::Fetch(FetchError::Status { status: 404, .. }))
    }
}

fn lock_npm(
    n: &crate::def::NpmDef,
    fetcher: &Fetcher,
    opts: &LockOptions,
    progress: &dyn LockProgress,
) -> Result<Vec<NpmArtifact>, LockError> {
    let registry = sources::npm_registry(opts.sources.npm_registry.as_deref())?;
    progress.step(&format!("npm registry {} (from {})", registry.url, registry.origin));
    let base = registry.url.clone();
    let roots: Vec<(&str, &str)> = n.packages.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut source = RegistrySource { registry: registry.clone(), fetcher, progress };
    let resolution = openshell_npm::resolve(&mut source, &roots, &openshell_npm::Platform::linux_x64_glibc())
        .map_err(|e| LockError::Npm(e.to_string()))?;
    let mut out = Vec::new();
    for p in &resolution.packages {
        let label = format!("{}@{}", p.package, p.version);
        let path = match p.tarball_location(&base) {
            openshell_npm::TarballLocation::RegistryRelative(path) => path,
            openshell_npm::TarballLocation::Absolute(url) => {
                return Err(LockError::Npm(format!(
                    "{label}: tarball {url} is not under the registry {}; a lockfile records paths relative to its source",
                    registry.url
                )));
            }
        };
        let integrity = p.integrity.clone().ok_or_else(|| {
            LockError::Npm(format!("{label}: the registry publishes no sha512 integrity for its tarball"))
        })?;
        let size = fetcher.size(&p.tarball)?;
        out.push(NpmArtifact {
            install: p.path.clone(),
            name: p.package.clone(),
            version: p.version.clone(),
            path,
            integrity,
            size,
        });
    }
    Ok(out)
}

/// Project pages, metadata and (when the index has no PEP 658 metadata) wheels from a
/// simple index.
struct PypiSource<'a> {
    /// The index.
    index: Source,
    fetcher: &'a Fetcher,
    progress: &'a dyn LockProgress,
    /// Sizes of the wheels downloaded to read their metadata, by file name.
    sizes: HashMap<String, u64>,
}

impl openshell_pypi::IndexSource for PypiSource<'_> {
    type Error = PypiSourceError;

    fn project(&mut self, name: &str) -> Result<openshell_pypi::ProjectPage, PypiSourceError> {
        let page = self.index.pypi_project(name)?;
        self.progress.step(&format!("project page {name}"));
        let (body, content_type) = self.fetcher.get_typed(page.as_str(), &[("Accept", PYPI_ACCEPT)])?;
        Ok(openshell_pypi::parse_index(&body, &content_type, &page, name)?)
    }

    fn metadata(&mut self, file: &openshell_pypi::DistFile) -> Result<Vec<u8>, PypiSourceError> {
        if file.core_metadata.is_some() {
            self.progress.step(&format!("metadata of {}", file.filename));
            return Ok(self.fetcher.get(file.metadata_url().as_str())?);
        }
        let expected =
            file.sha256.clone().ok_or_else(|| PypiSourceError::NoSha256 { filename: file.filename.clone() })?;
        self.progress.step(&format!("{} (no PEP 658 metadata: reading the wheel)", file.filename));
        let wheel = self.fetcher.get(file.url.as_str())?;
        let actual = Digest::sha256(&wheel).hex();
        if actual != expected {
            return Err(PypiSourceError::WheelHash {
                filename: file.filename.clone(),
                url: file.url.to_string(),
                expected,
                actual,
            });
        }
        self.sizes.insert(file.filename.clone(), wheel.len() as u64);
        openshell_pypi::wheel_metadata(&wheel)
            .map_err(|source| PypiSourceError::Wheel { filename: file.filename.clone(), source })
    }
}

fn lock_pypi(
    p: &crate::def::PypiDef,
    fetcher: &Fetcher,
    opts: &LockOptions,
    progress: &dyn LockProgress,
) -> Result<Vec<WheelArtifact>, LockError> {
    let index = sources::pypi_index(opts.sources.pypi_index.as_deref())?;
    progress.step(&format!("PyPI index {} (from {})", index.url, index.origin));
    let mut source = PypiSource { index: index.clone(), fetcher, progress, sizes: HashMap::new() };
    let roots: Vec<&str> = p.packages.iter().map(String::as_str).collect();
    progress.step(&format!("resolving {} PyPI requirement(s)", roots.len()));
    let target = openshell_pypi::Target::cpython313_manylinux_x86_64();
    let resolved = openshell_pypi::resolve(&mut source, &roots, &target).map_err(|e| LockError::Pypi(Box::new(e)))?;
    let mut out = Vec::new();
    for d in &resolved {
        let hash_error = |problem: &str| LockError::PypiHash {
            project: d.name.clone(),
            version: d.version.clone(),
            filename: d.filename.clone(),
            problem: problem.to_owned(),
        };
        let hex = d.sha256.as_deref().ok_or_else(|| hash_error("no sha256"))?;
        let sha256: Digest =
            format!("sha256:{hex}").parse().map_err(|_| hash_error(&format!("an invalid sha256 `{hex}`")))?;
        let size = match d.size.or_else(|| source.sizes.get(&d.filename).copied()) {
            Some(n) => Some(n),
            None => fetcher.size(&d.url)?,
        };
        // The distribution name as the wheel (and its .dist-info) spells it.
        let name = openshell_pypi::WheelFilename::parse(&d.filename).map_or_else(|_| d.name.clone(), |w| w.name);
        out.push(WheelArtifact {
            name,
            version: d.version.clone(),
            project: d.name.clone(),
            filename: d.filename.clone(),
            size,
            sha256: sha256.to_string(),
        });
    }
    Ok(out)
}
