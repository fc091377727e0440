//! `Packages` indexes: typed records, decompression, and fetching one through a verified
//! Release file.

use std::io::Read;

use openshell_store::Digest;

use crate::control::{self, ControlError, Paragraph};
use crate::decompress::{self, Compression};
use crate::relations::{self, Alternatives, Provide, RelationError};
use crate::release::Release;
use crate::version::Version;

/// A boxed error from a caller's fetch function.
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Errors from reading a Packages index. Each names the input.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    /// deb822 syntax error.
    #[error(transparent)]
    Syntax(#[from] ControlError),
    /// A required field is missing or a field is malformed.
    #[error("{origin}:{line}: package {package}: field {field}: {message}")]
    Field {
        /// The input's name.
        origin: String,
        /// 1-based line of the field (or of the paragraph when missing).
        line: usize,
        /// The package name (or `?` when it is the name that is missing).
        package: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The Release file lists no Packages index for this component and architecture.
    #[error("{release}: no Packages index for {component}/binary-{arch} (looked for {tried})")]
    NotInRelease {
        /// The Release file's name.
        release: String,
        /// The component.
        component: String,
        /// The architecture.
        arch: String,
        /// The paths looked for.
        tried: String,
    },
    /// The caller's fetch function failed.
    #[error("fetching {path}: {source}")]
    Fetch {
        /// The path that was fetched.
        path: String,
        /// The caller's error.
        #[source]
        source: FetchError,
    },
    /// Size or digest differs from the Release entry.
    #[error("{path}: {what} mismatch: the Release file says {expected}, got {actual}")]
    Mismatch {
        /// The path.
        path: String,
        /// `size` or `sha256`.
        what: &'static str,
        /// The value from the Release file.
        expected: String,
        /// The value of the fetched data.
        actual: String,
    },
    /// Decompression failed.
    #[error("{path}: cannot decompress ({compression}): {source}")]
    Decompress {
        /// The path.
        path: String,
        /// The compression format.
        compression: Compression,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
}

/// `Multi-Arch` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum MultiArch {
    /// Absent or `no`.
    #[default]
    No,
    /// `same`: co-installable with itself for other architectures.
    Same,
    /// `foreign`: satisfies dependencies of packages of any architecture.
    Foreign,
    /// `allowed`: dependents may use `pkg:any`.
    Allowed,
}

/// One package record of a Packages index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Architecture` (`amd64`, `all`, ...).
    pub architecture: String,
    /// `Multi-Arch`.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority`.
    pub priority: Option<String>,
    /// `Section`.
    pub section: Option<String>,
    /// `Source` (the name, without a `(version)` suffix), when it differs from the
    /// package name.
    pub source: Option<String>,
    /// `Installed-Size` in KiB.
    pub installed_size: Option<u64>,
    /// `Depends`.
    pub depends: Vec<Alternatives>,
    /// `Pre-Depends`.
    pub pre_depends: Vec<Alternatives>,
    /// `Provides`.
    pub provides: Vec<Provide>,
    /// `Conflicts`.
    pub conflicts: Vec<Alternatives>,
    /// `Breaks`.
    pub breaks: Vec<Alternatives>,
    /// `Replaces`.
    pub replaces: Vec<Alternatives>,
    /// `Filename`: path of the `.deb` relative to the archive root.
    pub filename: String,
    /// `Size` of the `.deb` in bytes.
    pub size: u64,
    /// `SHA256` of the `.deb`.
    pub sha256: Digest,
    /// 1-based line of the record in its index.
    pub line: usize,
}

impl Package {
    /// `name version arch`, for messages.
    pub fn id(&self) -> String {
        format!("{} {} {}", self.name, self.version, self.architecture)
    }

    /// Builds a record from one paragraph; `origin` names the input in errors.
    pub fn from_paragraph(origin: &str, p: &Paragraph) -> Result<Package, PackagesError> {
        let name = p.get("Package").unwrap_or("?").to_owned();
        let err = |field: &str, line: usize, message: String| PackagesError::Field {
            origin: origin.to_owned(),
            line,
            package: name.clone(),
            field: field.to_owned(),
            message,
        };
        let required = |field: &str| -> Result<(&str, usize), PackagesError> {
            match p.field(field) {
                Some(f) if !f.value.is_empty() => Ok((f.value.as_str(), f.line)),
                Some(f) => Err(err(field, f.line, "empty".into())),
                None => Err(err(field, p.line(), "missing".into())),
            }
        };
        let (pkg, pkg_line) = required("Package")?;
        if pkg.contains(char::is_whitespace) {
            return Err(err("Package", pkg_line, format!("`{pkg}` is not a package name")));
        }
        let (version, vline) = required("Version")?;
        let version = Version::parse(version).map_err(|e| err("Version", vline, e.to_string()))?;
        let (architecture, _) = required("Architecture")?;
        let (filename, _) = required("Filename")?;
        let (size, size_line) = required("Size")?;
        let size = size.parse::<u64>().map_err(|_| err("Size", size_line, format!("`{size}` is not a size")))?;
        let (sha, sha_line) = required("SHA256")?;
        let sha256 = format!("sha256:{}", sha.to_ascii_lowercase())
            .parse::<Digest>()
            .map_err(|_| err("SHA256", sha_line, format!("`{sha}` is not a sha256 hex digest")))?;
        let multi_arch = match p.field("Multi-Arch") {
            None => MultiArch::No,
            Some(f) => match f.value.as_str() {
                "no" => MultiArch::No,
                "same" => MultiArch::Same,
                "foreign" => MultiArch::Foreign,
                "allowed" => MultiArch::Allowed,
                other => return Err(err("Multi-Arch", f.line, format!("unknown value `{other}`"))),
            },
        };
        let essential = match p.field("Essential") {
            None => false,
            Some(f) => match f.value.as_str() {
                "yes" => true,
                "no" => false,
                other => return Err(err("Essential", f.line, format!("expected yes or no, found `{other}`"))),
            },
        };
        let installed_size = match p.field("Installed-Size") {
            None => None,
            Some(f) => Some(
                f.value
                    .parse::<u64>()
                    .map_err(|_| err("Installed-Size", f.line, format!("`{}` is not a size", f.value)))?,
            ),
        };
        let rel = |field: &str| -> Result<Vec<Alternatives>, PackagesError> {
            match p.field(field) {
                None => Ok(Vec::new()),
                Some(f) => relations::parse_relations(field, &f.value)
                    .map_err(|e: RelationError| err(field, f.line, e.to_string())),
            }
        };
        let provides = match p.field("Provides") {
            None => Vec::new(),
            Some(f) => {
                relations::parse_provides("Provides", &f.value).map_err(|e| err("Provides", f.line, e.to_string()))?
            }
        };
        let source = p.get("Source").and_then(|s| s.split_whitespace().next()).filter(|s| *s != pkg).map(str::to_owned);
        Ok(Package {
            name: pkg.to_owned(),
            version,
            architecture: architecture.to_owned(),
            multi_arch,
            essential,
            priority: p.get("Priority").map(str::to_owned),
            section: p.get("Section").map(str::to_owned),
            source,
            installed_size,
            depends: rel("Depends")?,
            pre_depends: rel("Pre-Depends")?,
            provides,
            conflicts: rel("Conflicts")?,
            breaks: rel("Breaks")?,
            replaces: rel("Replaces")?,
            filename: filename.to_owned(),
            size,
            sha256,
            line: p.line(),
        })
    }
}

/// A parsed Packages index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageIndex {
    /// The input's name (for example `trixie/main/binary-amd64/Packages.xz`).
    pub origin: String,
    /// The records in file order.
    pub packages: Vec<Package>,
}

impl PackageIndex {
    /// Parses an uncompressed Packages index.
    pub fn parse(origin: &str, data: &[u8]) -> Result<PackageIndex, PackagesError> {
        let paras = control::parse_bytes(origin, data)?;
        let packages = paras.iter().map(|p| Package::from_paragraph(origin, p)).collect::<Result<Vec<_>, _>>()?;
        tracing::debug!(origin, count = packages.len(), "parsed Packages index");
        Ok(PackageIndex { origin: origin.to_owned(), packages })
    }

    /// Decompresses (by the file name's extension: `.xz`, `.gz`, `.zst` or none) and
    /// parses a Packages index.
    pub fn parse_file(name: &str, data: &[u8]) -> Result<PackageIndex, PackagesError> {
        let compression = Compression::from_name(name);
        let plain = decompress_all(name, compression, data, None)?;
        PackageIndex::parse(name, &plain)
    }
}

/// Decompresses a whole buffer, reading at most `limit` bytes of output (when given).
fn decompress_all(
    path: &str,
    compression: Compression,
    data: &[u8],
    limit: Option<u64>,
) -> Result<Vec<u8>, PackagesError> {
    let derr = |source| PackagesError::Decompress { path: path.to_owned(), compression, source };
    let reader = decompress::reader(compression, data).map_err(derr)?;
    let mut out = Vec::new();
    let limit = limit.unwrap_or(u64::MAX);
    reader.take(limit.saturating_add(1)).read_to_end(&mut out).map_err(derr)?;
    if out.len() as u64 > limit {
        return Err(derr(std::io::Error::other(format!("decompressed data is larger than {limit} bytes"))));
    }
    Ok(out)
}

/// Decompresses `data` according to the extension of `name` (`.xz`, `.gz`, `.zst`, or
/// anything else for uncompressed).
pub fn decompress_by_name(name: &str, data: &[u8]) -> Result<Vec<u8>, PackagesError> {
    decompress_all(name, Compression::from_name(name), data, None)
}

fn check(path: &str, data: &[u8], size: u64, sha256: &Digest) -> Result<(), PackagesError> {
    if data.len() as u64 != size {
        return Err(PackagesError::Mismatch {
            path: path.to_owned(),
            what: "size",
            expected: size.to_string(),
            actual: data.len().to_string(),
        });
    }
    let actual = Digest::sha256(data);
    if &actual != sha256 {
        return Err(PackagesError::Mismatch {
            path: path.to_owned(),
            what: "sha256",
            expected: sha256.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Fetches, verifies and parses the Packages index of `component` and `arch` listed in a
/// (verified) Release file.
///
/// Picks `<component>/binary-<arch>/Packages.xz`, else `.gz`, else the plain file —
/// whichever the Release file's `SHA256` list has first in that order — and calls
/// `fetch` with that path (relative to the suite directory, as in the Release file). The
/// fetched bytes must match the listed size and sha256; when the Release file also lists
/// the uncompressed `Packages`, the decompressed bytes are checked against it too. The
/// index's origin is `<suite or codename>/<path>`.
pub fn index_from_release<E>(
    release: &Release,
    component: &str,
    arch: &str,
    mut fetch: impl FnMut(&str) -> Result<Vec<u8>, E>,
) -> Result<PackageIndex, PackagesError>
where
    E: Into<FetchError>,
{
    let base = format!("{component}/binary-{arch}/Packages");
    let candidates = [format!("{base}.xz"), format!("{base}.gz"), base.clone()];
    let Some(entry) = candidates.iter().find_map(|c| release.file(c)) else {
        return Err(PackagesError::NotInRelease {
            release: release.origin.clone(),
            component: component.to_owned(),
            arch: arch.to_owned(),
            tried: candidates.join(", "),
        });
    };
    let data = fetch(&entry.path).map_err(|e| PackagesError::Fetch { path: entry.path.clone(), source: e.into() })?;
    check(&entry.path, &data, entry.size, &entry.sha256)?;
    let compression = Compression::from_name(&entry.path);
    let plain_entry = if entry.path == base { None } else { release.file(&base) };
    let plain = if compression == Compression::None {
        data
    } else {
        // Without an uncompressed entry to bound it, cap the output at 4 GiB.
        let limit = plain_entry.map_or(4 << 30, |p| p.size);
        let plain = decompress_all(&entry.path, compression, &data, Some(limit))?;
        if let Some(p) = plain_entry {
            check(&base, &plain, p.size, &p.sha256)?;
        }
        plain
    };
    let suite = release.codename.as_deref().or(release.suite.as_deref()).unwrap_or("?");
    PackageIndex::parse(&format!("{suite}/{}", entry.path), &plain)
}
