//! npm support for openshell: everything needed to turn "install these npm packages
//! globally" into a locked, verifiable list of tarballs and the tree they unpack into,
//! without running npm and without touching the network.
//!
//! - [`packument`]: the registry's package documents ([`Packument`], [`Manifest`]), bin
//!   normalization, platform checks, registry-relative tarball paths ([`TarballLocation`]).
//! - [`semver`]: node-semver ranges and versions, ported from node-semver so that every range
//!   means what it means to npm.
//! - [`spec`]: dependency specs (versions, ranges, dist-tags, `npm:` aliases) and
//!   npm-pick-manifest's choice of version.
//! - [`resolve`](mod@resolve): the global-install tree ([`resolve()`](resolve::resolve)) over a caller-supplied
//!   [`PackumentSource`].
//! - [`bins`]: the `bin/` and `node_modules/.bin` links and man-page links a global install makes.
//! - [`tarball`]: SRI/shasum verification and unpacking a package tarball the way pacote does.

#![warn(missing_docs)]

pub mod bins;
pub mod packument;
pub mod resolve;
pub mod semver;
pub mod spec;
pub mod tarball;

pub use bins::{BinLink, BinLinkKind, bin_links};
pub use packument::{Manifest, Packument, PackumentError, TarballLocation};
pub use resolve::{PackumentSource, Platform, Resolution, ResolveError, ResolvedPackage, SkippedPackage, resolve};
pub use spec::{PickError, Spec, SpecError, pick_manifest};
pub use tarball::{
    Entry, EntryKind, IntegrityError, UnpackError, UnpackSummary, check_tar_links, fix_bin_shebang, sha512_integrity,
    unpack_entries, verify_integrity, verify_shasum,
};
