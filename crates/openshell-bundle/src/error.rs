//! The errors of bundle creation, verification and installation.

use std::path::PathBuf;

use crate::key::KeyError;

/// What is wrong with one member of a bundle (or the bundle's frame around it).
#[derive(Debug, thiserror::Error)]
pub enum MemberProblem {
    /// Its content does not hash to the sha256 the signed index gives.
    #[error("content is altered: sha256 {actual}, the signed index says {expected}")]
    Digest {
        /// From the index.
        expected: String,
        /// Of the bytes read.
        actual: String,
    },
    /// Its tar header is not the one its index entry gives (name, size, mode,
    /// owner and time are all fixed by the index).
    #[error("its tar header differs from the one the signed index gives (size, mode or metadata changed)")]
    Header,
    /// A member the index does not list stands where the index expects this one.
    #[error("`{found}` stands in its place: a member the signed index does not list (added?)")]
    Unexpected {
        /// The name in the header found instead.
        found: String,
    },
    /// A member the index lists later stands here: this one was removed, or the
    /// order changed.
    #[error("`{found}` stands in its place: the member was removed or moved")]
    Reordered {
        /// The name in the header found instead.
        found: String,
    },
    /// A member after the last one the index lists.
    #[error("not listed in the signed index (added?)")]
    NotListed,
    /// The bundle ends before this member.
    #[error("missing: the bundle ends before it (removed or truncated?)")]
    Missing,
    /// The bundle ends inside this member.
    #[error("truncated: the bundle ends inside it")]
    Truncated,
    /// The padding after it is not zeros.
    #[error("the padding after it is not zeros")]
    Padding,
}

/// Errors of `bundle create`, `verify` and `install`.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key could not be read, written or used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The bundle's signed index is missing, malformed or not this format.
    #[error("{}: index: {message}", bundle.display())]
    Index {
        /// The bundle.
        bundle: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The index is not signed (no signature member where it must be).
    #[error("{}: unsigned: no `{expected}` member follows the index", bundle.display())]
    Unsigned {
        /// The bundle.
        bundle: PathBuf,
        /// The signature member's name.
        expected: &'static str,
    },
    /// The signature does not verify with the trusted key.
    #[error("{}: the index's signature does not verify with the trusted key {}", bundle.display(), key.display())]
    BadSignature {
        /// The bundle.
        bundle: PathBuf,
        /// The trusted key's file.
        key: PathBuf,
    },
    /// One member is bad: the first one found.
    #[error("{}: member `{member}`: {problem}", bundle.display())]
    Member {
        /// The bundle.
        bundle: PathBuf,
        /// The member's path in the bundle.
        member: String,
        /// What is wrong.
        problem: MemberProblem,
    },
    /// Bytes follow the end of the archive.
    #[error("{}: {extra} byte(s) follow the end of the archive (appended data?)", bundle.display())]
    Trailing {
        /// The bundle.
        bundle: PathBuf,
        /// How many at least.
        extra: usize,
    },
    /// The end of the archive is not the two zero blocks.
    #[error("{}: the end of the archive is not zeros", bundle.display())]
    End {
        /// The bundle.
        bundle: PathBuf,
    },
    /// Something to bundle is missing or unusable.
    #[error("{what}: {message}")]
    Input {
        /// The input (a lockfile, an image reference, a binary).
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] openshell_store::StoreError),
    /// Building a lockfile's image failed.
    #[error("building {lockfile}: {source}")]
    Build {
        /// The lockfile.
        lockfile: String,
        /// Why.
        #[source]
        source: Box<openshell_build::build::BuildError>,
    },
    /// The store's image index failed.
    #[error(transparent)]
    Images(#[from] openshell_build::images::ImagesError),
    /// An OCI document could not be made.
    #[error(transparent)]
    Image(#[from] openshell_oci::ImageError),
    /// The SBOM could not be made.
    #[error(transparent)]
    Sbom(#[from] openshell_sbom::SbomError),
    /// The SBOM referrer could not be made.
    #[error(transparent)]
    Referrer(#[from] openshell_oci::referrer::ReferrerError),
    /// Loading an installed image into docker or containerd failed.
    #[error("loading {image} into {target}: {message}")]
    Load {
        /// The image.
        image: String,
        /// `docker` or `containerd`.
        target: &'static str,
        /// Why.
        message: String,
    },
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io { path: path.to_owned(), source }
}
