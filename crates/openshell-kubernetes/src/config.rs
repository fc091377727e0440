//! What a user may choose about the node manifests, each checked once here: the
//! namespace, the installer's image and where the runtime goes on a node.

use std::path::Path;

use crate::containerd::BinaryPath;
use crate::error::ManifestError;

pub const DEFAULT_NAMESPACE: &str = "openshell";
/// The installer image: `/bin/sh`, coreutils, `nsenter` (util-linux), `curl`, and
/// the runtime at [`crate::installer::IMAGE_BINARY`].
pub const DEFAULT_IMAGE: &str = concat!("openshell/runtime-installer:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    namespace: String,
    image: String,
    binary: BinaryPath,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            image: DEFAULT_IMAGE.to_owned(),
            binary: BinaryPath::default(),
        }
    }
}

impl Config {
    pub fn new(namespace: &str, image: &str, binary: &Path) -> Result<Config, ManifestError> {
        Ok(Config {
            namespace: check_namespace(namespace)?,
            image: check_image(image)?,
            binary: BinaryPath::new(binary)?,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    pub fn binary(&self) -> &BinaryPath {
        &self.binary
    }
}

/// A DNS label (RFC 1123), as namespace names are.
fn check_namespace(name: &str) -> Result<String, ManifestError> {
    let invalid = |why| ManifestError::Invalid { what: "namespace", value: name.to_owned(), why };
    if name.is_empty() || name.len() > 63 {
        return Err(invalid("must be 1 to 63 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(invalid("only lowercase letters, digits and - are allowed"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid("must start and end with a letter or digit"));
    }
    Ok(name.to_owned())
}

/// Whatever the container runtime resolves, but nothing that could break out of
/// a YAML scalar or a command line.
fn check_image(image: &str) -> Result<String, ManifestError> {
    if image.is_empty() || !image.chars().all(|c| c.is_ascii_graphic() && !"\"'\\`$".contains(c)) {
        return Err(ManifestError::Invalid {
            what: "image",
            value: image.to_owned(),
            why: "must be an image reference: printable ASCII, no spaces, quotes, backslashes or $",
        });
    }
    Ok(image.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_dns_labels() {
        for bad in ["", "Openshell", "open_shell", "-openshell", "openshell-", &"a".repeat(64)] {
            assert!(check_namespace(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_namespace("openshell-system-2").is_ok());
    }

    #[test]
    fn images_are_plain_references() {
        for bad in ["", "a b", "img:$(x)", "img\"", "img\n"] {
            assert!(check_image(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_image("openshell/runtime-installer@sha256:0123").is_ok());
    }
}
