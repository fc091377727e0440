//! Software bills of materials of a lockfile: every Debian package, npm package,
//! PyPI wheel and plain file it pins, with name, version, purl, hashes, and the
//! supplier, licence and dependencies each package declares, as SPDX 2.3 JSON or
//! CycloneDX 1.5 JSON.
//!
//! [`collect`] reads the lockfile and, where the lockfile does not hold a
//! declaration, the package's own metadata from the store (a `.deb`'s control file
//! and machine-readable `debian/copyright`, an npm tarball's `package.json`, a
//! wheel's `METADATA`). An artifact missing from the store leaves its declarations
//! unknown (NOASSERTION); it is not an error. [`spdx`] and [`cyclonedx`] turn the
//! neutral [`model::Sbom`] into each format through serde structs.
//!
//! The output depends only on the lockfile and the store: no clock (the time is the
//! image's fixed creation time), no map iteration order, identifiers derived from the
//! lockfile's hash.

pub mod collect;
pub mod cyclonedx;
mod debian;
mod ids;
pub mod license;
pub mod model;
mod npm;
pub mod purl;
mod pypi;
pub mod spdx;

pub use collect::collect;
pub use model::{Sbom, SbomError};

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.5 JSON.
    CycloneDx,
}

impl Format {
    /// The document's media type (the `artifactType` of an OCI referrer).
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Spdx => "application/spdx+json",
            Format::CycloneDx => "application/vnd.cyclonedx+json",
        }
    }
}

/// The SPDX SBOM of `lock` as an OCI referrer of `image` (for `build -o` and
/// `--archive`, which write it beside the image: the image's bytes and digest do
/// not change).
pub fn referrer(
    lock: &openshell_build::lockfile::Lockfile,
    store: &openshell_store::Store,
    image: &openshell_oci::Image,
) -> Result<openshell_oci::referrer::Referrer, SbomError> {
    let document = render(&collect(lock, store)?, Format::Spdx)?;
    Ok(openshell_oci::referrer::Referrer::new(image, Format::Spdx.media_type(), document)?)
}

/// The document's bytes (pretty JSON ending in a newline).
pub fn render(sbom: &Sbom, format: Format) -> Result<Vec<u8>, SbomError> {
    let mut bytes = match format {
        Format::Spdx => serde_json::to_vec_pretty(&spdx::document(sbom)),
        Format::CycloneDx => serde_json::to_vec_pretty(&cyclonedx::document(sbom)),
    }
    .map_err(SbomError::Serialize)?;
    bytes.push(b'\n');
    Ok(bytes)
}
