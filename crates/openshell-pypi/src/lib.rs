//! PyPI support for openshell: choose one wheel per project for a fixed target interpreter
//! and platform (CPython 3.13, manylinux x86_64 by default), from a simple-repository index,
//! and lay wheels out under a prefix without running pip and without touching the network.
//!
//! - [`index`]: PEP 691 JSON and PEP 503 HTML project pages ([`ProjectPage`], [`DistFile`]).
//! - [`version`]: PEP 440 versions and specifiers.
//! - [`wheel`]: wheel file names, PEP 503 name normalization, the target's compatible tags
//!   ([`Target`]).
//! - [`metadata`]: core metadata, PEP 508 requirements and environment markers.
//! - [`resolve`](mod@resolve): the resolver ([`resolve()`](resolve::resolve)) over a caller-supplied
//!   [`IndexSource`].
//! - [`install`]: the files a wheel installs (RECORD-verified), with console-script launchers.

#![warn(missing_docs)]

pub mod index;
pub mod install;
pub mod metadata;
pub mod resolve;
pub mod version;
pub mod wheel;

pub use index::{CoreMetadataRef, DistFile, IndexError, ProjectPage, parse_html_index, parse_index, parse_json_index};
pub use install::{InstallError, InstallOptions, InstalledFile, WheelInstall, install_wheel, wheel_metadata};
pub use metadata::{CoreMetadata, Marker, MarkerEnv, Requirement};
pub use resolve::{IndexSource, ResolveError, ResolvedDist, resolve};
pub use version::{Specifier, SpecifierSet, Version};
pub use wheel::{Tag, Target, WheelFilename, normalize_name};
