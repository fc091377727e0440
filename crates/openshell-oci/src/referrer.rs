//! OCI referrers (image-spec 1.1 artifacts): a document attached to an image
//! without changing the image. The referrer is an image manifest whose `subject` is
//! the image's manifest, with an `artifactType`, the empty config
//! (`application/vnd.oci.empty.v1+json`, `{}`), and the document as its one layer.
//! In an OCI layout it is listed in `index.json` beside the image, with its
//! `artifactType` in the descriptor, which is where `oras discover --oci-layout`
//! finds referrers; tools that pick an image by its `org.opencontainers.image.ref.name`
//! (skopeo, umoci) are not affected, since the referrer has none.
//!
//! The manifest is an `oci_spec::image::ImageManifest` serialized by serde_json:
//! its fields serialize in declaration order, and it carries no annotations (whose
//! map would serialize in hash order), so its bytes are stable.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use openshell_store::Digest;

use crate::image::{Beside, Image, ImageError, Reference};
use crate::layout::{self, LayoutError};

/// The empty JSON config every artifact manifest without a config of its own uses.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// Errors making or attaching a referrer.
#[derive(Debug, thiserror::Error)]
pub enum ReferrerError {
    /// oci-spec refused the manifest or a digest.
    #[error("referrer manifest: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// The manifest could not be serialized, or `index.json` is not JSON.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file (or `<manifest>`).
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// `index.json` has no `manifests` array.
    #[error("{}: no `manifests` array", path.display())]
    NoManifests {
        /// The index.
        path: PathBuf,
    },
    /// The image's own index could not be made.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A document attached to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    manifest: Vec<u8>,
    manifest_digest: Digest,
    artifact_type: String,
    document: Vec<u8>,
    document_digest: Digest,
}

fn spec_digest(d: &Digest) -> Result<oci_spec::image::Digest, ReferrerError> {
    Ok(d.to_string().parse()?)
}

impl Referrer {
    /// A referrer of `subject` holding `document` of media type `artifact_type`.
    pub fn new(subject: &Image, artifact_type: &str, document: Vec<u8>) -> Result<Referrer, ReferrerError> {
        let document_digest = Digest::sha256(&document);
        let media_type = MediaType::from(artifact_type);
        let config = Descriptor::new(
            MediaType::EmptyJSON,
            EMPTY_CONFIG.len() as u64,
            spec_digest(&Digest::sha256(EMPTY_CONFIG))?,
        );
        let layer = Descriptor::new(media_type.clone(), document.len() as u64, spec_digest(&document_digest)?);
        let subject = Descriptor::new(
            MediaType::ImageManifest,
            subject.manifest_bytes().len() as u64,
            spec_digest(subject.manifest_digest())?,
        );
        let manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .artifact_type(media_type)
            .config(config)
            .layers(vec![layer])
            .subject(subject)
            .build()?;
        let manifest = serde_json::to_vec(&manifest)
            .map_err(|source| ReferrerError::Json { path: PathBuf::from("<referrer manifest>"), source })?;
        Ok(Referrer {
            manifest_digest: Digest::sha256(&manifest),
            manifest,
            artifact_type: artifact_type.to_owned(),
            document,
            document_digest,
        })
    }

    /// The referrer manifest's exact bytes.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest
    }

    /// The document it carries.
    pub fn document(&self) -> &[u8] {
        &self.document
    }

    /// The referrer manifest's digest.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// Its descriptor in an index: the manifest, with its `artifactType`.
    pub fn descriptor(&self) -> Result<Descriptor, ReferrerError> {
        let mut d =
            Descriptor::new(MediaType::ImageManifest, self.manifest.len() as u64, spec_digest(&self.manifest_digest)?);
        d.set_artifact_type(Some(MediaType::from(self.artifact_type.as_str())));
        Ok(d)
    }

    /// Every blob of the referrer, by digest: manifest, empty config, document.
    pub fn blobs(&self) -> Vec<(Digest, &[u8])> {
        vec![
            (self.manifest_digest.clone(), self.manifest.as_slice()),
            (Digest::sha256(EMPTY_CONFIG), EMPTY_CONFIG),
            (self.document_digest.clone(), self.document.as_slice()),
        ]
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReferrerError + '_ {
    move |source| ReferrerError::Io { path: path.to_owned(), source }
}

/// Adds `referrer` to the OCI layout at `dir` (written by
/// [`crate::image::write_layout`]): its blobs, and its descriptor in `index.json`
/// after the manifests already there (replacing an earlier referrer of the same
/// digest). The image's own blobs and descriptor are untouched.
pub fn attach_to_layout(dir: &Path, referrer: &Referrer) -> Result<(), ReferrerError> {
    let blob_dir = dir.join("blobs").join("sha256");
    for (digest, bytes) in referrer.blobs() {
        let path = blob_dir.join(digest.hex());
        let tmp = blob_dir.join(format!(".tmp-{}-{}", std::process::id(), digest.hex()));
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
    }
    let index_path = dir.join("index.json");
    let text = fs::read(&index_path).map_err(io_err(&index_path))?;
    let bytes = index_with(&text, referrer, &index_path)?;
    let tmp = dir.join(format!(".tmp-{}-index.json", std::process::id()));
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &index_path).map_err(io_err(&index_path))
}

/// The `index.json` bytes `index` (`label` names it in errors) with `referrer`'s
/// descriptor after the manifests already there, replacing an earlier referrer of
/// the same digest: what [`attach_to_layout`] writes.
pub fn index_with(index: &[u8], referrer: &Referrer, label: &Path) -> Result<Vec<u8>, ReferrerError> {
    let json_err = |source| ReferrerError::Json { path: label.to_owned(), source };
    // Read as a generic value, not oci-spec's `ImageIndex`, whose annotation maps
    // would come back in hash order: serde_json's map keeps keys sorted, as the
    // image's canonical index has them.
    let mut index: serde_json::Value = serde_json::from_slice(index).map_err(json_err)?;
    let descriptor = serde_json::to_value(referrer.descriptor()?).map_err(json_err)?;
    let manifests = index
        .get_mut("manifests")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| ReferrerError::NoManifests { path: label.to_owned() })?;
    let digest = referrer.manifest_digest.to_string();
    manifests.retain(|m| m.get("digest").and_then(serde_json::Value::as_str) != Some(digest.as_str()));
    manifests.push(descriptor);
    serde_json::to_vec(&index).map_err(json_err)
}

/// What an archive of `image` carries beside it for `referrers`: their blobs, and
/// the image's index with their descriptors after it (as [`attach_to_layout`]
/// leaves a layout).
pub fn beside(image: &Image, reference: &Reference, referrers: &[Referrer]) -> Result<Beside, ReferrerError> {
    let label = Path::new("index.json");
    let mut index = image.index_bytes(reference)?;
    let mut blobs = std::collections::BTreeMap::new();
    for r in referrers {
        index = index_with(&index, r, label)?;
        blobs.extend(r.blobs().into_iter().map(|(d, b)| (d, b.to_vec())));
    }
    Ok(Beside { blobs, index: Some(index) })
}

/// Checks every blob a referrer manifest names (its config and layers: small
/// documents) against its descriptor's digest and size.
pub(crate) fn verify_blobs(dir: &Path, manifest: &ImageManifest, mpath: &Path) -> Result<(), LayoutError> {
    let named = std::iter::once(("config".to_owned(), manifest.config()))
        .chain(manifest.layers().iter().enumerate().map(|(i, l)| (format!("layers[{i}]"), l)));
    for (role, d) in named {
        let desc = layout::descriptor(d, mpath, &role)?;
        let path = layout::blob_path(dir, &desc.digest);
        let bytes = fs::read(&path).map_err(|source| LayoutError::Io { path: path.clone(), source })?;
        let role = format!("referrer {role}");
        let actual = layout::hash_bytes(desc.digest.algorithm(), &bytes);
        if actual != desc.digest {
            return Err(LayoutError::Digest { path, role, expected: desc.digest, actual });
        }
        if bytes.len() as u64 != desc.size {
            return Err(LayoutError::Size { path, role, expected: desc.size, actual: bytes.len() as u64 });
        }
    }
    Ok(())
}

/// Whether a manifest is a referrer of another: it has a `subject`.
pub fn is_referrer(manifest: &ImageManifest) -> bool {
    manifest.subject().is_some()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::image::{ImageConfig, Reference, write_layout};

    fn image() -> Image {
        Image::new(&ImageConfig::default(), Vec::new(), &BTreeMap::new()).expect("image")
    }

    #[test]
    fn referrer_manifest_names_its_subject_and_is_stable() {
        let image = image();
        let r = Referrer::new(&image, "application/spdx+json", b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec())
            .expect("referrer");
        let again = Referrer::new(&image, "application/spdx+json", b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec())
            .expect("referrer");
        assert_eq!(r.manifest_bytes(), again.manifest_bytes());
        let m: serde_json::Value = serde_json::from_slice(r.manifest_bytes()).expect("json");
        assert_eq!(m["artifactType"], "application/spdx+json");
        assert_eq!(m["subject"]["digest"], image.manifest_digest().to_string());
        assert_eq!(m["subject"]["size"], image.manifest_bytes().len());
        assert_eq!(m["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
        assert_eq!(m["config"]["digest"], Digest::sha256(EMPTY_CONFIG).to_string());
        assert_eq!(m["layers"][0]["mediaType"], "application/spdx+json");
        assert!(m.get("annotations").is_none());
    }

    #[test]
    fn attached_referrer_leaves_the_image_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = openshell_store::Store::open(dir.path().join("store")).expect("store");
        let layout = dir.path().join("layout");
        let image = image();
        let reference = Reference::parse("openshell/t:1").expect("reference");
        write_layout(&store, &layout, &image, &reference).expect("layout");
        let before = std::fs::read(layout.join("index.json")).expect("index");
        let r = Referrer::new(&image, "application/spdx+json", b"{}".to_vec()).expect("referrer");
        attach_to_layout(&layout, &r).expect("attach");
        attach_to_layout(&layout, &r).expect("attach again: replaced, not repeated");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index")).expect("json");
        let old: serde_json::Value = serde_json::from_slice(&before).expect("json");
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
        assert_eq!(index["manifests"][0], old["manifests"][0], "the image's descriptor is unchanged");
        assert_eq!(index["manifests"][1]["artifactType"], "application/spdx+json");
        let read = crate::layout::read_layout(&layout).expect("read layout");
        assert_eq!(read.images.len(), 1);
        assert_eq!(&read.images[0].manifest.digest, image.manifest_digest());
        // The attached document is checked too.
        let doc = layout.join("blobs/sha256").join(Digest::sha256(b"{}").hex());
        std::fs::write(&doc, b"{ }").expect("tamper");
        let err = crate::layout::read_layout(&layout).expect_err("a changed document is refused");
        assert!(err.to_string().contains("referrer config"), "{err}");
    }
}
