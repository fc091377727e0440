//! `openshell push` and `openshell pull`: images between the store (or an OCI layout)
//! and an OCI registry, over `oci-client`.
//!
//! - [`connect`]: the registry session: which scheme (`--insecure` = plain HTTP, for
//!   loopback registries only), which roots (the system's plus `--ca-file`), which
//!   credentials (`--username`/`--password-stdin`, else the Docker config's `auths`,
//!   `credHelpers` or `credsStore`), and the error mapping (an authentication failure
//!   names the registry and where the credentials came from).
//! - [`push`]: every blob the registry lacks (HEAD first) is streamed from disk in
//!   chunks (PATCH by PATCH, a bounded queue between the reading thread and the
//!   uploads), each hashed as it is read so an altered file never gets its final PUT;
//!   then the manifest, under the tag.
//! - [`pull`]: the tag is resolved to a digest once; the manifest bytes and every blob
//!   are checked against their digests (and each layer's content against the config's
//!   diff_id) in the store's `tmp/` before any of them is published into `blobs/` and
//!   the image is recorded for `image ls` and `sandbox create --image`.
//!   [`fetch_layout`] (for `openshell verify`) resolves the same way, stops there when
//!   the manifest digest is the one expected, and otherwise checks every blob the
//!   same way into a directory that becomes an OCI layout, leaving the store alone.

pub mod connect;
pub mod pull;
pub mod push;

use std::path::PathBuf;

use openshell_store::{Digest, StoreError};

pub use connect::{ConnectOptions, CredentialSource, Login, parse_registry_reference};
pub use pull::{Fetch, PullReport, RemoteImage, fetch_layout, pull};
pub use push::{PushReport, PushSource, push};

/// Errors of push and pull. Each names the registry, reference, file or blob involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A reference that does not parse.
    #[error("invalid registry reference `{reference}`: {reason}")]
    Reference {
        /// The reference given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// `--insecure` for a registry that is not on loopback.
    #[error(
        "--insecure (plain HTTP) is only allowed for a loopback registry (localhost, 127.0.0.0/8, ::1); `{registry}` is not one"
    )]
    InsecureNotLoopback {
        /// The registry host.
        registry: String,
    },
    /// The `--ca-file` cannot be read or holds no certificate.
    #[error("--ca-file {}: {message}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The Docker config (or a credential helper it names) failed.
    #[error("credentials for {registry} from {source_name}: {message}")]
    Credentials {
        /// The registry host.
        registry: String,
        /// Where they were looked up.
        source_name: String,
        /// What failed.
        message: String,
    },
    /// The registry refused the credentials (or asked for some and none were found).
    #[error("{registry}: authentication failed with {credentials}: {}", connect::chain(.source))]
    Auth {
        /// The registry host.
        registry: String,
        /// Where the credentials came from.
        credentials: CredentialSource,
        /// The registry's answer.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// A request to the registry failed.
    #[error("{registry}: {what}: {}", connect::chain(.source))]
    Request {
        /// The registry host.
        registry: String,
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// A blob read from disk for a push did not match its digest or size.
    #[error("{}: {role} {digest}: {message}; nothing was committed for it", path.display())]
    LocalBlob {
        /// The file read.
        path: PathBuf,
        /// What the blob is ("layer 0", "config").
        role: String,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        message: String,
    },
    /// A pulled blob (or manifest) whose content is not what its digest says.
    #[error("{registry}: {role} {digest} was refused: {message}; nothing was stored")]
    Refused {
        /// The registry host.
        registry: String,
        /// What the blob is ("manifest", "config", "layer 2").
        role: String,
        /// The digest it should have.
        digest: String,
        /// What is wrong.
        message: String,
    },
    /// A manifest, index or config that openshell cannot use.
    #[error("{registry}: {role} {digest}: {message}")]
    Unsupported {
        /// The registry host.
        registry: String,
        /// What it is.
        role: String,
        /// Its digest.
        digest: String,
        /// What is not supported.
        message: String,
    },
    /// The OCI layout or archive to push is not usable.
    #[error("{}: {message}", path.display())]
    Source {
        /// The directory or archive.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's image index failed.
    #[error(transparent)]
    Images(#[from] openshell_build::images::ImagesError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The fetched image could not be written as an OCI layout.
    #[error("writing the fetched image as an OCI layout: {0}")]
    Layout(#[source] openshell_oci::ImageError),
    /// The async runtime could not start.
    #[error("starting the network runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs `fut` on a current-thread runtime (the CLI is synchronous; the transfers
/// are sequential, so one thread is enough).
pub(crate) fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RegistryError::Runtime)?;
    rt.block_on(fut)
}
