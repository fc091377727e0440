//! Images as the gateway has them: by manifest digest in its own store. A
//! client whose image is missing there uploads it (every blob checked against
//! its digest, the documents against each other) before it is recorded.

use openshell_build::images::{self, ImageRecord};
use openshell_gateway_api::proto::{ImageRef, ImageUpload, Response};
use openshell_gateway_api::{ApiError, ErrorCode};
use openshell_store::Digest;

use super::{Gateway, Reply};

fn digest(text: &str) -> Result<Digest, ApiError> {
    text.parse().map_err(|e| ApiError::invalid(format!("digest `{text}`: {e}")))
}

impl Gateway {
    /// Refuses an image whose manifest, config or a layer the store lacks, with
    /// `image_not_found` (the client then uploads it).
    pub(super) fn image_present(&self, image: &ImageRef) -> Result<(), ApiError> {
        let missing = || {
            ApiError::new(
                ErrorCode::ImageNotFound,
                format!("the gateway's store has no image {} ({})", image.digest, image.reference),
            )
        };
        if !self.store.contains(&digest(&image.digest)?) {
            return Err(missing());
        }
        let (manifest, _) = images::documents_by_digest(&self.store, &image.digest)
            .map_err(|e| ApiError::invalid(format!("image {}: {e}", image.reference)))?;
        for layer in manifest.layers() {
            if !self.store.contains(&digest(layer.digest().as_ref())?) {
                return Err(missing());
            }
        }
        Ok(())
    }

    /// Receives an image's blobs (in the order [`ImageUpload::blobs`] names
    /// them), checks them and records the image.
    pub(super) fn upload(&self, upload: ImageUpload, conn: Reply<'_>) -> Result<Option<Response>, ApiError> {
        for expected in upload.blobs() {
            let expected = digest(expected)?;
            let (sent, content) = conn.blob()?;
            if sent != expected.to_string() {
                return Err(ApiError::invalid(format!("image upload: blob {sent} came where {expected} was expected")));
            }
            if !self.store.contains(&expected) {
                self.store
                    .insert_reader(expected.algorithm(), Some(&expected), content)
                    .map_err(|e| ApiError::invalid(format!("image upload: blob {expected}: {e}")))?;
            }
        }
        let record = ImageRecord {
            name: upload.name.clone(),
            tag: upload.tag.clone(),
            manifest: upload.manifest.clone(),
            config: upload.config.clone(),
            layers: upload.layers.clone(),
            size: upload.size,
            uncompressed_size: upload.uncompressed_size,
            lockfile: None,
        };
        let reference = record.reference();
        let invalid = |e: &dyn std::fmt::Display| ApiError::invalid(format!("image upload {reference}: {e}"));
        let image = images::image(&self.store, &record).map_err(|e| invalid(&e))?;
        let (manifest, _) = images::documents_by_digest(&self.store, &record.manifest).map_err(|e| invalid(&e))?;
        let listed: Vec<&str> = manifest.layers().iter().map(|l| l.digest().as_ref()).collect();
        if manifest.config().digest().as_ref() != record.config || listed != record.layers {
            return Err(invalid(&"its record does not name the manifest's config and layers"));
        }
        drop(image);
        // The upload's name never takes over a name the store has for another
        // image: the store may be the gateway host's own, whose commands pick
        // images by name (a remote user must not swap what `name:tag` runs there).
        let taken = images::find(&self.store, &reference).ok().filter(|r| r.manifest != record.manifest);
        if let Some(existing) = taken {
            tracing::warn!(image = %reference, uploaded = %record.manifest, kept = %existing.manifest, "an upload's name is another image's: its blobs are kept, the name is not");
            return Ok(Some(Response::Done {
                message: format!(
                    "image {} uploaded (the name {reference} stays with {})",
                    record.manifest, existing.manifest
                ),
            }));
        }
        images::record(&self.store, &record).map_err(|e| invalid(&e))?;
        tracing::info!(image = %reference, digest = %record.manifest, "image uploaded");
        Ok(Some(Response::Done { message: format!("image {reference} uploaded") }))
    }
}
