//! The neutral SBOM: what both formats are made from.

use openshell_store::{Digest, StoreError};

use crate::license::License;

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ecosystem {
    Debian,
    Npm,
    Pypi,
}

/// A hash algorithm of a checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HashAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// One checksum, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: HashAlgorithm,
    pub hex: String,
}

/// A supplier as a package declares it (`Name <email>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub name: String,
    pub email: Option<String>,
}

impl Party {
    /// Parses `Name <email> (url)`, npm's and Debian's form; `None` when no name is left.
    pub fn parse(text: &str) -> Option<Party> {
        let (name, email) = match text.split_once('<') {
            Some((n, rest)) => (n, rest.split_once('>').map(|(e, _)| e.trim().to_owned())),
            None => (text.split('(').next().unwrap_or(text), None),
        };
        let name = name.trim().trim_matches(',').trim();
        if name.is_empty() {
            return None;
        }
        Some(Party { name: name.to_owned(), email: email.filter(|e| e.contains('@') && !e.contains(' ')) })
    }
}

/// One package of the lockfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Unique in the document (an SPDX id and a CycloneDX bom-ref).
    pub id: String,
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    pub purl: String,
    pub checksums: Vec<Checksum>,
    /// `None`: not declared, or the artifact is not in the store.
    pub supplier: Option<Party>,
    pub license: License,
    /// Ids of the packages of this document it depends on.
    pub depends_on: Vec<String>,
}

/// One plain file of the lockfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileItem {
    pub id: String,
    /// Absolute path in the image.
    pub path: String,
    pub checksums: Vec<Checksum>,
}

/// A whole SBOM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sbom {
    /// The image's name and tag (from the lockfile).
    pub image_name: String,
    pub image_tag: String,
    /// sha256 of the lockfile's text.
    pub lockfile: Digest,
    /// RFC 3339 creation time: the image's fixed creation time.
    pub created: String,
    /// Debian, then npm, then PyPI, each in lockfile order.
    pub packages: Vec<Package>,
    pub files: Vec<FileItem>,
}

/// Why an SBOM could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{label}: `{value}` is not a valid digest or integrity")]
    BadDigest { label: String, value: String },
    #[error("{label}: {source}")]
    Deb {
        label: String,
        #[source]
        source: Box<openshell_debian::DebError>,
    },
    #[error("{label}: {field}: {source}")]
    DebRelations {
        label: String,
        field: &'static str,
        #[source]
        source: openshell_debian::RelationError,
    },
    #[error("{label} ({archive}): reading the tarball: {source}")]
    NpmTar {
        label: String,
        archive: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("{label} ({archive}): package.json: {source}")]
    NpmManifest {
        label: String,
        archive: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("{label} ({filename}): {source}")]
    Wheel {
        label: String,
        filename: String,
        #[source]
        source: Box<openshell_pypi::InstallError>,
    },
    #[error("{label} ({filename}): METADATA: {source}")]
    WheelMetadata {
        label: String,
        filename: String,
        #[source]
        source: openshell_pypi::metadata::MetadataError,
    },
    #[error(transparent)]
    Purl(#[from] crate::purl::PurlError),
    #[error("attaching the SBOM: {0}")]
    Referrer(#[from] openshell_oci::referrer::ReferrerError),
    #[error("lockfile: {0}")]
    Lockfile(#[from] openshell_build::lockfile::LockfileError),
    #[error("cannot write the document: {0}")]
    Serialize(#[source] serde_json::Error),
}
