//! Pull: an image from a registry into the store, recorded for `image ls`,
//! `image inspect` and `sandbox create --image` like a built one.
//!
//! The tag is resolved to a digest once (HEAD of the manifest); everything after
//! that is fetched by digest. The manifest bytes are hashed against that digest
//! (and a platform manifest chosen from an index against the index's entry); each
//! blob is streamed into the store's `tmp/` and checked against its digest and size,
//! and each layer's uncompressed content against the config's diff_id. Only when
//! every one of them passed are they linked into `blobs/`, the manifest stored and
//! the image recorded: a registry serving one wrong byte leaves nothing behind.

use std::io::{self, Read, Write};
use std::path::Path;

use futures_util::StreamExt;
use oci_client::client::linux_amd64_resolver;
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::{OciDescriptor, OciImageIndex, OciImageManifest};
use oci_client::{Reference, RegistryOperation};
use openshell_build::images::ImageRecord;
use openshell_oci::compress::{Compression, LayerDecoder};
use openshell_store::{Digest, Staged, Store};
use serde::Serialize;

use crate::connect::{ConnectOptions, Session, parse_reference};
use crate::{RegistryError, block_on};

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullReport {
    /// The reference as pulled.
    pub reference: String,
    /// The digest the reference resolved to (an index's, for a multi-platform image).
    pub resolved: String,
    /// The image manifest's digest (the one recorded).
    pub manifest: String,
    /// The name and tag it is recorded under (`image ls`).
    pub name: String,
    /// The tag (`sha256-<hex>` when pulled by digest).
    pub tag: String,
    /// Blobs downloaded.
    pub downloaded: usize,
    /// Blobs the store had already.
    pub already_present: usize,
    /// Bytes downloaded.
    pub bytes: u64,
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const INDEX_TYPES: &[&str] =
    &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const CONFIG_TYPES: &[&str] =
    &["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];
/// Largest manifest or config accepted.
const MAX_DOCUMENT: usize = 4 * 1024 * 1024;

/// Pulls `reference` (`host[:port]/repository[:tag|@digest]`) into `store`.
pub fn pull(store: &Store, reference: &str, opts: &ConnectOptions) -> Result<PullReport, RegistryError> {
    let r = parse_reference(reference)?;
    block_on(pull_image(store, &r, opts))
}

/// What [`fetch_layout`] did with the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// Its manifest digest was the one expected: nothing but the manifest was read.
    Skipped,
    /// Config and layers were downloaded, checked and written as an OCI layout.
    Written {
        /// Blob bytes downloaded.
        bytes: u64,
    },
}

/// The image a reference names, as [`fetch_layout`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteImage {
    /// The reference as given.
    pub reference: String,
    /// The digest the reference resolved to (an index's, for a multi-platform image).
    pub resolved: String,
    /// The image manifest's digest (the linux/amd64 one of an index).
    pub manifest: Digest,
    /// Whether its blobs were fetched.
    pub fetch: Fetch,
}

/// Resolves `reference` once and, unless its image's manifest digest is `unless`,
/// fetches the image into `dir` (which becomes an OCI layout holding it alone):
/// the manifest checked against its digest, every blob against its digest and size,
/// each layer's content against its diff_id, as [`pull`] does. The store is not
/// touched.
pub fn fetch_layout(
    reference: &str,
    opts: &ConnectOptions,
    dir: &Path,
    unless: Option<&Digest>,
) -> Result<RemoteImage, RegistryError> {
    let r = parse_reference(reference)?;
    block_on(fetch_layout_async(&r, opts, dir, unless))
}

async fn fetch_layout_async(
    r: &Reference,
    opts: &ConnectOptions,
    dir: &Path,
    unless: Option<&Digest>,
) -> Result<RemoteImage, RegistryError> {
    let session = Session::open(r, opts, RegistryOperation::Pull).await?;
    let (resolved, digest, bytes) = resolve_manifest(&session, r).await?;
    let manifest_digest = parse_digest(&session, &digest, "manifest")?;
    let mut image = RemoteImage { reference: r.whole(), resolved, manifest: manifest_digest, fetch: Fetch::Skipped };
    if unless == Some(&image.manifest) {
        return Ok(image);
    }
    let manifest = parse_manifest(&session, &bytes, &digest)?;
    // A layout's `blobs/sha256/` is laid out as a store's, so the directory is opened
    // as one: each blob is checked in its `tmp/` before it is linked into place.
    let staging = Store::open(dir)?;
    let fetched = fetch_image(&session, r, &staging, &manifest).await?;
    let downloaded = fetched.bytes;
    for s in fetched.staged {
        s.publish()?;
    }
    staging.insert_reader(image.manifest.algorithm(), Some(&image.manifest), bytes.as_slice())?;
    openshell_oci::write_layout_index(dir, &image.manifest, bytes.len() as u64).map_err(RegistryError::Layout)?;
    image.fetch = Fetch::Written { bytes: downloaded };
    Ok(image)
}

struct Fetched<'s> {
    staged: Vec<Staged<'s>>,
    downloaded: usize,
    already_present: usize,
    bytes: u64,
    uncompressed: u64,
}

async fn pull_image(store: &Store, r: &Reference, opts: &ConnectOptions) -> Result<PullReport, RegistryError> {
    let session = Session::open(r, opts, RegistryOperation::Pull).await?;
    let (resolved, digest, bytes) = resolve_manifest(&session, r).await?;
    let manifest = parse_manifest(&session, &bytes, &digest)?;
    let fetched = fetch_image(&session, r, store, &manifest).await?;
    // Everything checked: now store it.
    let Fetched { staged, downloaded, already_present, bytes: downloaded_bytes, uncompressed } = fetched;
    for s in staged {
        s.publish()?;
    }
    let manifest_digest = parse_digest(&session, &digest, "manifest")?;
    store.insert_reader(manifest_digest.algorithm(), Some(&manifest_digest), bytes.as_slice())?;
    let (name, tag) = record_name(r);
    let record = ImageRecord {
        name: name.clone(),
        tag: tag.clone(),
        manifest: digest.clone(),
        config: manifest.config.digest.clone(),
        layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        size: manifest.layers.iter().map(|l| u64::try_from(l.size).unwrap_or(0)).sum(),
        uncompressed_size: uncompressed,
        // A pulled image comes with no lockfile (its SBOM comes from the lockfile).
        lockfile: None,
    };
    openshell_build::images::record(store, &record)?;
    Ok(PullReport {
        reference: r.whole(),
        resolved,
        manifest: digest,
        name,
        tag,
        downloaded,
        already_present,
        bytes: downloaded_bytes,
    })
}

/// Resolves the tag once (HEAD), then fetches the manifest by digest, narrowing an
/// index to its linux/amd64 image: (resolved digest, image manifest digest, its bytes).
async fn resolve_manifest(session: &Session, r: &Reference) -> Result<(String, String, Vec<u8>), RegistryError> {
    let resolved = match r.digest() {
        Some(d) => d.to_owned(),
        None => session
            .client
            .fetch_manifest_digest(r, &session.auth)
            .await
            .map_err(|e| session.error(&format!("resolving {}", r.whole()), e))?,
    };
    tracing::info!(reference = %r.whole(), %resolved, "resolved");
    let bytes = fetch_manifest(session, r, &resolved).await?;
    match platform_manifest(session, &bytes, &resolved)? {
        Some(child) => {
            let bytes = fetch_manifest(session, r, &child).await?;
            Ok((resolved, child, bytes))
        }
        None => Ok((resolved.clone(), resolved, bytes)),
    }
}

/// Stages the config and every layer (each checked), without storing any.
async fn fetch_image<'s>(
    session: &Session,
    r: &Reference,
    store: &'s Store,
    manifest: &OciImageManifest,
) -> Result<Fetched<'s>, RegistryError> {
    let mut fetched = Fetched { staged: Vec::new(), downloaded: 0, already_present: 0, bytes: 0, uncompressed: 0 };
    let config = fetch_blob(session, r, store, &manifest.config, "config", &mut fetched).await?;
    let diff_ids = diff_ids(session, store, &config, &fetched, manifest)?;
    for (i, (layer, diff_id)) in manifest.layers.iter().zip(&diff_ids).enumerate() {
        let role = format!("layer {i}");
        let compression = layer_compression(session, i, layer)?;
        let digest = fetch_blob(session, r, store, layer, &role, &mut fetched).await?;
        let layer = FetchedLayer { blob: &digest, diff_id, compression, role: &role };
        fetched.uncompressed += check_diff_id(session, store, &fetched, &layer)?;
    }
    Ok(fetched)
}

/// `registry/repository` and the tag (`sha256-<hex>` for a digest-only reference).
fn record_name(r: &Reference) -> (String, String) {
    let name = format!("{}/{}", r.registry(), r.repository());
    let tag = match (r.tag(), r.digest()) {
        (Some(t), _) => t.to_owned(),
        (None, Some(d)) => d.replacen(':', "-", 1),
        (None, None) => "latest".to_owned(),
    };
    (name, tag)
}

fn parse_digest(session: &Session, digest: &str, role: &str) -> Result<Digest, RegistryError> {
    digest.parse::<Digest>().map_err(|e| RegistryError::Unsupported {
        registry: session.registry.clone(),
        role: role.to_owned(),
        digest: digest.to_owned(),
        message: e.to_string(),
    })
}

fn refused(session: &Session, role: &str, digest: &str, message: String) -> RegistryError {
    RegistryError::Refused {
        registry: session.registry.clone(),
        role: role.to_owned(),
        digest: digest.to_owned(),
        message,
    }
}

fn unsupported(session: &Session, role: &str, digest: &str, message: String) -> RegistryError {
    RegistryError::Unsupported {
        registry: session.registry.clone(),
        role: role.to_owned(),
        digest: digest.to_owned(),
        message,
    }
}

/// The manifest bytes of `digest`, checked against it.
async fn fetch_manifest(session: &Session, r: &Reference, digest: &str) -> Result<Vec<u8>, RegistryError> {
    let expected = parse_digest(session, digest, "manifest")?;
    let pinned = r.clone_with_digest(digest.to_owned());
    let (body, _) =
        session.client.pull_manifest_raw(&pinned, &session.auth, MANIFEST_TYPES).await.map_err(|e| match e {
            OciDistributionError::DigestError(d) => refused(session, "manifest", digest, d.to_string()),
            e => session.error(&format!("fetching the manifest {digest}"), e),
        })?;
    if body.len() > MAX_DOCUMENT {
        return Err(refused(session, "manifest", digest, format!("larger than {MAX_DOCUMENT} bytes")));
    }
    let mut h = expected.algorithm().hasher();
    h.update(&body);
    let actual = h.finish();
    if actual != expected {
        return Err(refused(session, "manifest", digest, format!("its content hashes to {actual}")));
    }
    Ok(body.to_vec())
}

/// For an index, the digest of its linux/amd64 manifest.
fn platform_manifest(session: &Session, bytes: &[u8], digest: &str) -> Result<Option<String>, RegistryError> {
    let v = serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| unsupported(session, "manifest", digest, format!("not JSON: {e}")))?;
    // An OCI index may leave out its mediaType; then its `manifests` tell.
    let is_index = match v.get("mediaType").and_then(|m| m.as_str()) {
        Some(m) => INDEX_TYPES.contains(&m),
        None => v.get("manifests").is_some(),
    };
    if !is_index {
        return Ok(None);
    }
    let index: OciImageIndex = serde_json::from_slice(bytes)
        .map_err(|e| unsupported(session, "index", digest, format!("not an image index: {e}")))?;
    linux_amd64_resolver(&index.manifests)
        .map(Some)
        .ok_or_else(|| unsupported(session, "index", digest, "has no linux/amd64 image".into()))
}

/// The compression of a layer the runtime unpacks (gzip- or zstd-compressed tar).
fn layer_compression(session: &Session, index: usize, layer: &OciDescriptor) -> Result<Compression, RegistryError> {
    Compression::of_media_type(&layer.media_type).ok_or_else(|| {
        unsupported(
            session,
            &format!("layer {index}"),
            &layer.digest,
            format!("media type {} (openshell runs gzip- or zstd-compressed tar layers)", layer.media_type),
        )
    })
}

fn parse_manifest(session: &Session, bytes: &[u8], digest: &str) -> Result<OciImageManifest, RegistryError> {
    let m: OciImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| unsupported(session, "manifest", digest, format!("not an image manifest: {e}")))?;
    if !CONFIG_TYPES.contains(&m.config.media_type.as_str()) {
        return Err(unsupported(session, "manifest", digest, format!("config media type {}", m.config.media_type)));
    }
    for (i, l) in m.layers.iter().enumerate() {
        layer_compression(session, i, l)?;
    }
    Ok(m)
}

/// Streams one blob into `tmp/` (unless the store has it), checking size and digest.
async fn fetch_blob<'s>(
    session: &Session,
    r: &Reference,
    store: &'s Store,
    desc: &OciDescriptor,
    role: &str,
    fetched: &mut Fetched<'s>,
) -> Result<Digest, RegistryError> {
    let digest = parse_digest(session, &desc.digest, role)?;
    if store.contains(&digest) {
        fetched.already_present += 1;
        return Ok(digest);
    }
    let size =
        u64::try_from(desc.size).map_err(|_| unsupported(session, role, &desc.digest, "negative size".into()))?;
    let what = format!("fetching {role} {}", desc.digest);
    let mut stream = session.client.pull_blob_stream(r, desc).await.map_err(|e| session.error(&what, e))?;
    let mut staging = store.stage(digest.algorithm())?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match e.get_ref().and_then(|i| i.downcast_ref::<DigestError>()) {
            Some(d) => refused(session, role, &desc.digest, d.to_string()),
            None => RegistryError::Request {
                registry: session.registry.clone(),
                what: what.clone(),
                source: OciDistributionError::IoError(e),
            },
        })?;
        if staging.len() + chunk.len() as u64 > size {
            return Err(refused(
                session,
                role,
                &desc.digest,
                format!("more than the {size} bytes its descriptor gives"),
            ));
        }
        staging.write_all(&chunk).map_err(|e| RegistryError::Io { path: store.root().join("tmp"), source: e })?;
    }
    if staging.len() != size {
        let got = staging.len();
        return Err(refused(session, role, &desc.digest, format!("{got} bytes, its descriptor gives {size}")));
    }
    let staged = staging.finish(Some(&digest)).map_err(|e| refused(session, role, &desc.digest, e.to_string()))?;
    fetched.downloaded += 1;
    fetched.bytes += size;
    fetched.staged.push(staged);
    Ok(digest)
}

/// Opens a blob that is either staged by this pull or already in the store.
fn open_blob(store: &Store, fetched: &Fetched<'_>, digest: &Digest) -> Result<Box<dyn Read>, RegistryError> {
    match fetched.staged.iter().find(|s| s.digest() == digest) {
        Some(s) => Ok(Box::new(
            std::fs::File::open(s.path()).map_err(|e| RegistryError::Io { path: s.path().to_owned(), source: e })?,
        )),
        None => Ok(Box::new(store.open_verified(digest)?)),
    }
}

fn diff_ids(
    session: &Session,
    store: &Store,
    config: &Digest,
    fetched: &Fetched<'_>,
    manifest: &OciImageManifest,
) -> Result<Vec<Digest>, RegistryError> {
    let c = config.to_string();
    let mut bytes = Vec::new();
    open_blob(store, fetched, config)?
        .take(MAX_DOCUMENT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Store(openshell_store::store_error(e, &store.blob_path(config))))?;
    if bytes.len() > MAX_DOCUMENT {
        return Err(unsupported(session, "config", &c, format!("larger than {MAX_DOCUMENT} bytes")));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| unsupported(session, "config", &c, format!("not JSON: {e}")))?;
    let ids: Vec<Digest> = v["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| unsupported(session, "config", &c, "no rootfs.diff_ids".into()))?
        .iter()
        .map(|d| d.as_str().unwrap_or("").parse::<Digest>())
        .collect::<Result<_, _>>()
        .map_err(|e| unsupported(session, "config", &c, format!("rootfs.diff_ids: {e}")))?;
    if ids.len() != manifest.layers.len() {
        return Err(unsupported(
            session,
            "config",
            &c,
            format!("{} diff_ids for the manifest's {} layers", ids.len(), manifest.layers.len()),
        ));
    }
    Ok(ids)
}

/// A layer blob fetched, and what its descriptor and the config say of it.
struct FetchedLayer<'a> {
    blob: &'a Digest,
    diff_id: &'a Digest,
    compression: Compression,
    role: &'a str,
}

/// Decompresses a layer and checks its content against its diff_id; its size.
fn check_diff_id(
    session: &Session,
    store: &Store,
    fetched: &Fetched<'_>,
    layer: &FetchedLayer<'_>,
) -> Result<u64, RegistryError> {
    let FetchedLayer { blob, diff_id, compression, role } = *layer;
    let raw = io::BufReader::with_capacity(256 * 1024, open_blob(store, fetched, blob)?);
    let mut gz = LayerDecoder::new(compression, raw)
        .map_err(|e| refused(session, role, &blob.to_string(), format!("does not decompress: {e}")))?;
    let mut hasher = diff_id.algorithm().hasher();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(refused(session, role, &blob.to_string(), format!("does not decompress: {e}"))),
        }
    }
    // Read what the decompressor left, so a stored blob's reader checks it whole.
    io::copy(gz.get_mut(), &mut io::sink())
        .map_err(|e| RegistryError::Store(openshell_store::store_error(e, &store.blob_path(blob))))?;
    let actual = hasher.finish();
    if actual != *diff_id {
        return Err(refused(
            session,
            role,
            &blob.to_string(),
            format!("its content hashes to {actual}, the config's diff_id is {diff_id}"),
        ));
    }
    Ok(total)
}
