//! Images reach dockerd by digest: the gateway's store has the image (its
//! manifest digest), dockerd knows it by its config digest (its image id). An
//! image dockerd lacks is streamed to it as a `docker load` archive written
//! from the store, and then must be there under that id.

use std::io::Write;

use bytes::Bytes;
use futures_util::StreamExt;
use openshell_driver::DriverError;
use openshell_oci::spec::ImageConfiguration;
use openshell_store::{Digest, Store};

use crate::api::{Api, not_found};

/// An image dockerd has: its id there and its configuration.
pub(crate) struct Loaded {
    pub id: String,
    pub config: ImageConfiguration,
}

fn image_err(digest: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::image(format!("image {digest}: {e}"))
}

/// Writes into a channel the load request's body streams from.
struct ChannelWriter(tokio::sync::mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "dockerd stopped reading the image"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes sure dockerd has the image of `manifest_digest` (from `store`).
pub(crate) fn ensure(api: &Api, store: &Store, manifest_digest: &str) -> Result<Loaded, DriverError> {
    let parse = |d: &str| d.parse::<Digest>().map_err(|e| image_err(manifest_digest, e));
    let manifest = store.read_verified(&parse(manifest_digest)?).map_err(|e| image_err(manifest_digest, e))?;
    let (_, config) = openshell_build::images::documents_by_digest(store, manifest_digest)
        .map_err(|e| image_err(manifest_digest, e))?;
    let config_digest = parse(
        serde_json::from_slice::<openshell_oci::spec::ImageManifest>(&manifest)
            .map_err(|e| image_err(manifest_digest, e))?
            .config()
            .digest()
            .as_ref(),
    )?;
    let id = config_digest.to_string();
    match api.runtime.block_on(api.docker.inspect_image(&id)) {
        Ok(_) => return Ok(Loaded { id, config }),
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(api.error("image inspect", &e)),
    }
    let config_bytes = store.read_verified(&config_digest).map_err(|e| image_err(manifest_digest, e))?;
    let image =
        openshell_oci::Image::from_documents(manifest, config_bytes).map_err(|e| image_err(manifest_digest, e))?;
    let hex = manifest_digest.rsplit(':').next().unwrap_or(manifest_digest);
    let reference = openshell_oci::Reference::parse(&format!("openshell-sandbox:{}", &hex[..hex.len().min(32)]))
        .map_err(|e| image_err(manifest_digest, e))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let writer_store = store.clone();
    let writer = std::thread::spawn(move || {
        let label = std::path::Path::new("docker load");
        openshell_oci::write_archive_to(&writer_store, ChannelWriter(tx), &image, &reference, label)
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let options = bollard::query_parameters::ImportImageOptions { quiet: true, platform: None };
    let loaded = api.runtime.block_on(async {
        let mut progress = api.docker.import_image_stream(options, body, None);
        while let Some(step) = progress.next().await {
            step?;
        }
        Ok::<(), bollard::errors::Error>(())
    });
    let written = writer.join().map_err(|_| image_err(manifest_digest, "writing the archive panicked"))?;
    written.map_err(|e| image_err(manifest_digest, e))?;
    loaded.map_err(|e| api.error("load", &e))?;
    match api.runtime.block_on(api.docker.inspect_image(&id)) {
        Ok(_) => Ok(Loaded { id, config }),
        Err(e) if not_found(&e) => Err(image_err(manifest_digest, format!("dockerd loaded it but has no image {id}"))),
        Err(e) => Err(api.error("image inspect", &e)),
    }
}
