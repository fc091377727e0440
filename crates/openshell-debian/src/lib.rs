//! Debian archive support for openshell's reproducible image builds. A pure library:
//! no network and no CLI; fetching is the caller's (through closures), verification and
//! parsing are here.
//!
//! - [`version`]: Debian versions, compared exactly like dpkg.
//! - [`control`]: deb822 paragraphs with ordered fields and line-numbered errors.
//! - [`relations`]: `Depends`-style relation fields and `Provides`.
//! - [`release`]: `InRelease` verification with `gpgv` (never a warning: any failure is an
//!   error) and Release parsing (the `SHA256` file list). `Valid-Until` is not enforced.
//! - [`packages`]: `Packages` indexes, decompression, and [`packages::index_from_release`]
//!   which checks an index's size and sha256 against the Release file.
//! - [`mod@resolve`]: the dependency closure of requested packages (Pre-Depends and Depends).
//! - [`deb`]: `.deb` unpacking (control data, maintainer script names, streamed data
//!   entries). Maintainer scripts are never run.
//! - [`decompress`]: pure-Rust gzip, xz and zstd decoders.
//!
//! Typical flow: `verify_inrelease` → `Release::parse` → `index_from_release` for each
//! component → `resolve` → fetch each `Package::filename`, check `Package::sha256` (the
//! store does) → `DebReader` to lay out the files.

pub mod control;
pub mod deb;
pub mod decompress;
pub mod packages;
pub mod relations;
pub mod release;
pub mod resolve;
pub mod version;

pub use control::{ControlError, Field, Paragraph};
pub use deb::{DataEntry, DebControl, DebError, DebReader, EntryKind};
pub use packages::{MultiArch, Package, PackageIndex, PackagesError, index_from_release};
pub use relations::{Provide, Relation, RelationError, VersionConstraint, VersionOp};
pub use release::{Release, ReleaseError, ReleaseFile, find_keyrings, verify_inrelease};
pub use resolve::{Request, Resolution, ResolveError, Selected, resolve};
pub use version::{Version, VersionError};
