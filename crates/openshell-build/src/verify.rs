//! `openshell verify`: is the image of an OCI layout the one a lockfile builds?
//!
//! The caller builds the lockfile's image ([`crate::build::build`], from the store)
//! and hands over a layout holding the image to check (a directory, an archive
//! unpacked, or what was fetched from a registry). Their manifest digests are
//! compared first: equal digests are the whole answer, since the manifest pins the
//! config and every layer by digest. Only when they differ is the rebuilt image
//! written as a layout (in the store's `tmp/`, hard-linked from the store, removed
//! afterwards) and the two compared by [`openshell_oci::diff_layouts`], which names
//! the first differing layer and file. An SBOM attached beside the image (an OCI
//! referrer in `index.json`) is not an image of the layout and is not compared.

use std::path::{Path, PathBuf};

use openshell_oci::diff::DiffError;
use openshell_oci::{LayoutDiff, LayoutError};
use openshell_store::{Digest, Store, StoreError};

use crate::build::{BuildError, Built, write_outputs};

/// The answer.
#[derive(Debug)]
pub enum Verdict {
    /// The layout's image is the rebuilt one.
    Match {
        /// The manifest digest both have.
        manifest: Digest,
    },
    /// It is not.
    Mismatch {
        /// The rebuilt image's manifest digest.
        rebuilt: Digest,
        /// The layout's image's manifest digest.
        found: Digest,
        /// The first difference; the rebuilt image is the first side, the layout's
        /// the second.
        difference: Box<LayoutDiff>,
    },
}

/// Why the question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The layout could not be read.
    #[error("{}: {source}", path.display())]
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<LayoutError>,
    },
    /// The layout holds no image, or several (the SBOM beside an image is not counted).
    #[error("{}: holds {count} images; verify compares exactly one", path.display())]
    ImageCount {
        /// The layout directory.
        path: PathBuf,
        /// How many images its `index.json` names.
        count: usize,
    },
    /// Writing the rebuilt image's layout failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The two layouts could not be compared.
    #[error("comparing the rebuilt image with {}: {source}", path.display())]
    Diff {
        /// The layout directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<DiffError>,
    },
}

/// The manifest digest of the one image in the layout at `dir`.
pub fn layout_manifest(dir: &Path) -> Result<Digest, VerifyError> {
    let layout = openshell_oci::read_layout(dir)
        .map_err(|e| VerifyError::Layout { path: dir.to_owned(), source: Box::new(e) })?;
    match layout.images.as_slice() {
        [image] => Ok(image.manifest.digest.clone()),
        images => Err(VerifyError::ImageCount { path: dir.to_owned(), count: images.len() }),
    }
}

/// Compares `built` (whose blobs are in `store`) with the one image of the layout
/// at `dir`; see the module docs.
pub fn compare(store: &Store, built: &Built, dir: &Path) -> Result<Verdict, VerifyError> {
    let found = layout_manifest(dir)?;
    let rebuilt = built.image.manifest_digest().clone();
    if found == rebuilt {
        return Ok(Verdict::Match { manifest: rebuilt });
    }
    let tmp = store.root().join("tmp");
    let work = tempfile::Builder::new()
        .prefix("openshell-verify-")
        .tempdir_in(&tmp)
        .map_err(|source| BuildError::Store(StoreError::Io { path: tmp.clone(), source }))?;
    let mine = work.path().join("rebuilt");
    write_outputs(store, built, Some(&mine), None, &[])?;
    let difference = openshell_oci::diff_layouts(&mine, dir)
        .map_err(|e| VerifyError::Diff { path: dir.to_owned(), source: Box::new(e) })?;
    Ok(Verdict::Mismatch { rebuilt, found, difference: Box::new(difference) })
}
