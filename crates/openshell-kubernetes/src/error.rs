//! Why manifests could not be made, written or compared.

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
}
