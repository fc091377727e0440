//! Why manifests could not be made, written or compared.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A setting (namespace, image, runtime path) the manifests cannot carry.
    #[error("{what} `{value}`: {why}")]
    Invalid { what: &'static str, value: String, why: &'static str },
    #[error("serializing the {kind} manifest: {source}")]
    Yaml {
        kind: &'static str,
        #[source]
        source: serde_saphyr::SerializeError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ManifestError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ManifestError {
        let path = path.into();
        move |source| ManifestError::Io { path, source }
    }
}
