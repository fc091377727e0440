//! Bit-for-bit reproducible OCI images, as a pure library.
//!
//! Data flow: a [`tree::Tree`] (every file of the image, each labelled with its
//! origin) → [`partition::partition`] into one [`partition::LayerPlan`] per origin →
//! [`layer::write_layer`] streams each plan as a deterministic tar through gzip or zstd into the
//! content-addressed store → [`image::Image`] builds the config and manifest as
//! oci-spec documents and keeps their canonical bytes → [`image::write_layout`] / [`image::write_archive`] write an OCI layout or one tar
//! that is both an OCI layout and a `docker load` archive. [`layout::verify_layout`]
//! re-hashes a layout and [`diff::diff_layouts`] explains why two builds differ.
//!
//! Every rule of `shared/design/reproducibility.md` is enforced here: the tar format
//! is written by [`tarfmt`] (PAX, sorted, fixed metadata), the compressor is fixed and
//! recorded ([`compress::COMPRESSOR`]), and JSON is canonical ([`json`]).
//!
//! The OCI documents are `oci_spec::image` types, re-exported as [`spec`] so that
//! callers read them with the same types and version.

#![warn(missing_docs)]

pub mod compress;
pub mod diff;
pub mod image;
pub mod json;
pub mod layer;
pub mod layout;
pub mod partition;
mod pipeline;
pub mod referrer;
pub mod tarfmt;
pub mod tree;

pub use compress::COMPRESSOR;
pub use diff::{Difference, EntryDiff, EntryInfo, LayerDiff, LayoutDiff, diff_layouts};
pub use image::{
    ArchiveInfo, Beside, Image, ImageConfig, ImageError, Reference, write_archive, write_archive_beside,
    write_archive_to, write_layout, write_layout_index,
};
pub use layer::{LayerError, LayerInfo, LayerOptions, write_layer, write_tar};
pub use layout::{Layout, LayoutDir, LayoutError, VerifyReport, parse_document, read_layout, verify_layout};
pub use oci_spec::image as spec;
pub use partition::{LayerPlan, PartitionError, partition};
pub use tarfmt::TAR_FORMAT;
pub use tree::{ContentRef, Entry, EntryKind, OnConflict, Origin, TarImport, Tree, TreeError};
