//! Air-gap bundles: one file that carries everything an offline site needs, signed
//! with an Ed25519 key, checked offline in one streaming pass.
//!
//! A bundle is a ustar archive ([`frame`]) whose first member is the index
//! ([`index::Index`]: every other member's path, kind, size, sha256 and mode, in
//! order, and the images with their store records) and whose second is the
//! index's signature ([`key`]). Then come the members: the store closure of each
//! lockfile (`store/blobs/<algo>/<hex>`, a sha512 split in two components), the lockfiles, each image as an OCI
//! layout with its SPDX SBOM as a referrer (`images/NAME/`), the SBOMs
//! (`sbom/NAME.spdx.json`) and the `openshell` and `openshell-runtime` binaries
//! (`bin/`).
//!
//! [`create`] writes one; [`read::read`] reads one through a [`read::Sink`],
//! trusting nothing before the signature verified and naming the first bad member;
//! [`install`] stages while reading and publishes only a bundle that read whole.
//!
//! Invariant: every byte of a bundle is checked by a read: headers are compared
//! with the ones the signed index gives, content with its sha256, padding and the
//! end blocks must be zeros and nothing may follow them.

#![warn(missing_docs)]

pub mod create;
pub mod error;
pub mod frame;
pub mod index;
pub mod install;
pub mod key;
pub mod read;

pub use create::{CreateOptions, Created, create};
pub use error::{BundleError, MemberProblem};
pub use install::{InstallOptions, Installed, LoadTarget, install};
pub use key::{KeyError, SecretKey, TrustedKey};
pub use read::{Discard, Verified, read};
