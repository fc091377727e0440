//! OCI image config, manifest and index, and the two on-disk forms: an OCI image
//! layout directory and one tar that is both an OCI layout and a `docker load` archive.
//!
//! Config, manifest and index are built as `oci_spec::image` values
//! ([`ImageConfiguration`], [`ImageManifest`], [`ImageIndex`], [`Descriptor`]) and
//! serialized once, canonically (see [`crate::json`]). Config and manifest bytes are
//! kept in [`Image`]: whatever is written or pushed later uses those bytes, never a
//! re-serialization.
//!
//! Where oci-spec's serialization and the bytes this builder has always written could
//! part, the choice is made here, explicitly: the run config (`config`) is always
//! present (an empty object when nothing is set), `Env` and `Labels` are omitted when
//! empty, `Entrypoint` and `Cmd` are kept when given empty, `history` is always
//! present (one entry per layer), and architecture and OS names are kept exactly as
//! given (see [`arch`]). `tests/pins.rs` holds the bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::OciSpecError;
use oci_spec::image::{
    Arch, Config, Descriptor, History, ImageConfiguration, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType,
    Os, Platform, RootFs, SCHEMA_VERSION,
};
use openshell_store::{Algorithm, Digest, Store, StoreError};
use serde::Serialize;

use crate::compress::Compression;
use crate::json::{self, JsonError};
use crate::layer::LayerInfo;
use crate::tarfmt::{Kind, Meta, TAR_FORMAT, TarWriter};

/// Media type of an image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Manifest annotation recording the layer compressor ([`Compression::compressor`]).
pub const ANNOTATION_COMPRESSOR: &str = "dev.openshell.layer.compressor";
/// Manifest annotation recording the layer tar format ([`TAR_FORMAT`]).
pub const ANNOTATION_TAR_FORMAT: &str = "dev.openshell.layer.format";
/// Index annotation naming the image for OCI tools (holds the tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Index annotation naming the image for containerd/K3s (holds the full name).
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Content of the `oci-layout` file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// What the image runs and how; everything in the config that is not layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// `amd64` by default.
    pub architecture: String,
    /// `linux` by default.
    pub os: String,
    /// `User` (e.g. `1000:1000`).
    pub user: Option<String>,
    /// `Env`, in the order given.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `Labels`, sorted.
    pub labels: BTreeMap<String, String>,
    /// The fixed creation time (seconds since the epoch): 0 or a recorded
    /// `SOURCE_DATE_EPOCH`. Written as `created` of the config and of each history entry.
    pub created: u64,
}

impl Default for ImageConfig {
    fn default() -> ImageConfig {
        ImageConfig {
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            user: None,
            env: Vec::new(),
            entrypoint: None,
            cmd: None,
            working_dir: None,
            labels: BTreeMap::new(),
            created: 0,
        }
    }
}

/// An image: the exact config and manifest bytes, and the layers they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    config: Vec<u8>,
    config_digest: Digest,
    manifest: Vec<u8>,
    manifest_digest: Digest,
    layers: Vec<LayerInfo>,
    platform: (String, String),
}

/// An image name with its tag, e.g. `openshell/claude:1.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    repository: String,
    tag: String,
}

/// Errors building or writing images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A malformed image reference.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference {
        /// The reference given.
        reference: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A layer blob is missing from the store or unreadable.
    #[error("layer {digest}: {source}")]
    Store {
        /// The blob.
        digest: Digest,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// A layer whose media type is not one compressor's, or whose compression differs
    /// from the layers before it (the manifest records one compressor).
    #[error(
        "layer {layer}: media type `{media_type}` is not gzip or zstd, or differs from the other layers' compression"
    )]
    LayerCompression {
        /// The layer's blob.
        layer: Digest,
        /// Its media type.
        media_type: &'static str,
    },
    /// A stored layer blob's size differs from the layer's record.
    #[error("layer {digest}: the store holds {actual} bytes, the image records {expected}")]
    BlobSize {
        /// The blob.
        digest: Digest,
        /// Size recorded in the image.
        expected: u64,
        /// Size in the store.
        actual: u64,
    },
    /// An oci-spec document could not be built (a digest it does not accept, a
    /// missing required field).
    #[error("image {document}: {source}")]
    Document {
        /// `config`, `manifest` or `index`.
        document: &'static str,
        /// oci-spec's error.
        #[source]
        source: OciSpecError,
    },
    /// A document could not be written as canonical JSON.
    #[error("image {document}: {source}")]
    Json {
        /// `config`, `manifest`, `index` or `manifest.json`.
        document: &'static str,
        /// Why.
        #[source]
        source: JsonError,
    },
    /// A manifest or config read back that is not what an image's documents must be.
    #[error("image {document}: {message}")]
    Inconsistent {
        /// `config` or `manifest`.
        document: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The output directory holds something that is not an OCI layout.
    #[error("{}: exists, is not empty and has no `oci-layout` file; refusing to write an image layout into it", dir.display())]
    NotALayout {
        /// The directory.
        dir: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io { path: path.to_owned(), source }
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_domain(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

impl Reference {
    /// Parses `[domain[:port]/]path[:tag]`; the tag defaults to `latest`. Digest
    /// references (`@sha256:...`) are refused: an image is written under a name.
    pub fn parse(reference: &str) -> Result<Reference, ImageError> {
        let bad = |reason| ImageError::InvalidReference { reference: reference.to_owned(), reason };
        if reference.contains('@') {
            return Err(bad("digest references cannot name a written image; use name:tag"));
        }
        let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match reference[last_slash..].rfind(':') {
            Some(i) => (&reference[..last_slash + i], &reference[last_slash + i + 1..]),
            None => (reference, "latest"),
        };
        if !valid_tag(tag) {
            return Err(bad("the tag must be 1-128 of [A-Za-z0-9_.-], not starting with `.` or `-`"));
        }
        if repository.is_empty() {
            return Err(bad("empty name"));
        }
        let mut comps: Vec<&str> = repository.split('/').collect();
        if comps.len() > 1 && is_domain(comps[0]) {
            let domain = comps.remove(0);
            let ok = domain.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'));
            if !ok {
                return Err(bad("invalid registry host"));
            }
        }
        for c in comps {
            let b = c.as_bytes();
            let ok = !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-'));
            if !ok {
                return Err(bad(
                    "each path component must be lower-case letters, digits and `._-`, starting and ending with a letter or digit",
                ));
            }
        }
        Ok(Reference { repository: repository.to_owned(), tag: tag.to_owned() })
    }

    /// The repository as given (`openshell/claude`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `repository:tag` as given, for docker's `RepoTags`.
    pub fn repo_tag(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The fully qualified name containerd stores images under
    /// (`docker.io/library/foo:tag` for `foo:tag`).
    pub fn full_name(&self) -> String {
        let first = self.repository.split('/').next().unwrap_or_default();
        if self.repository.contains('/') && is_domain(first) {
            self.repo_tag()
        } else if self.repository.contains('/') {
            format!("docker.io/{}:{}", self.repository, self.tag)
        } else {
            format!("docker.io/library/{}:{}", self.repository, self.tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// RFC 3339 UTC time of `secs` since the epoch (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// oci-spec's digest of a store digest (the same text; oci-spec checks it again).
fn oci_digest(digest: &Digest, document: &'static str) -> Result<oci_spec::image::Digest, ImageError> {
    digest.to_string().parse().map_err(|source| ImageError::Document { document, source })
}

fn descriptor(
    media_type: MediaType,
    digest: &Digest,
    size: u64,
    document: &'static str,
) -> Result<Descriptor, ImageError> {
    Ok(Descriptor::new(media_type, size, oci_digest(digest, document)?))
}

/// oci-spec's architecture for `name`, spelled exactly as given: `Arch` parses some
/// names into a variant that prints differently (`armbe` reads as `arm64be`), so a
/// name that does not print back unchanged is kept as `Arch::Other`.
fn arch(name: &str) -> Arch {
    match Arch::from(name) {
        a if a.to_string() == name => a,
        _ => Arch::Other(name.to_owned()),
    }
}

/// oci-spec's OS for `name`, spelled exactly as given (as [`arch`]).
fn os(name: &str) -> Os {
    match Os::from(name) {
        o if o.to_string() == name => o,
        _ => Os::Other(name.to_owned()),
    }
}

/// The run config. Always present in the image config, even empty (`{}`); `Env` and
/// `Labels` are left out when empty, `Entrypoint` and `Cmd` kept whenever given.
fn run_config(config: &ImageConfig) -> Config {
    let mut run = Config::default();
    run.set_user(config.user.clone())
        .set_env((!config.env.is_empty()).then(|| config.env.clone()))
        .set_entrypoint(config.entrypoint.clone())
        .set_cmd(config.cmd.clone())
        .set_working_dir(config.working_dir.clone())
        .set_labels((!config.labels.is_empty()).then(|| config.labels.clone().into_iter().collect()));
    run
}

/// The image config: no host fields, one history entry per layer (the list is there,
/// empty, for an image without layers).
fn image_configuration(config: &ImageConfig, layers: &[LayerInfo]) -> ImageConfiguration {
    let created = rfc3339(config.created);
    let history = layers
        .iter()
        .map(|l| {
            let by = match &l.origin {
                Some(o) => format!("openshell build: layer `{o}`"),
                None => "openshell build: layer".to_owned(),
            };
            let mut h = History::default();
            h.set_created(Some(created.clone())).set_created_by(Some(by));
            h
        })
        .collect();
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(layers.iter().map(|l| l.diff_id.to_string()).collect());
    let mut doc = ImageConfiguration::default();
    doc.set_created(Some(created))
        .set_architecture(arch(&config.architecture))
        .set_os(os(&config.os))
        .set_config(Some(run_config(config)))
        .set_rootfs(rootfs)
        .set_history(Some(history));
    doc
}

fn image_manifest(
    config: Descriptor,
    layers: &[LayerInfo],
    annotations: &BTreeMap<String, String>,
) -> Result<ImageManifest, ImageError> {
    let compression = layers_compression(layers)?;
    let layers = layers
        .iter()
        .map(|l| descriptor(MediaType::from(l.media_type), &l.digest, l.size, "manifest"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ann: HashMap<String, String> = annotations.clone().into_iter().collect();
    ann.insert(ANNOTATION_COMPRESSOR.to_owned(), compression.compressor().to_owned());
    ann.insert(ANNOTATION_TAR_FORMAT.to_owned(), TAR_FORMAT.to_owned());
    ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .annotations(ann)
        .build()
        .map_err(|source| ImageError::Document { document: "manifest", source })
}

/// The one compression of `layers` (gzip for an image without layers).
fn layers_compression(layers: &[LayerInfo]) -> Result<Compression, ImageError> {
    let mut found: Option<Compression> = None;
    for l in layers {
        let c = Compression::of_media_type(l.media_type)
            .ok_or_else(|| ImageError::LayerCompression { layer: l.digest.clone(), media_type: l.media_type })?;
        if found.is_some_and(|f| f != c) {
            return Err(ImageError::LayerCompression { layer: l.digest.clone(), media_type: l.media_type });
        }
        found = Some(c);
    }
    Ok(found.unwrap_or_default())
}

fn canonical<T: Serialize>(value: &T, document: &'static str) -> Result<Vec<u8>, ImageError> {
    json::to_canonical(value).map_err(|source| ImageError::Json { document, source })
}

/// One entry of docker's `manifest.json` (`docker load`'s format, which oci-spec
/// does not model).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerLoadEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

impl Image {
    /// Builds config and manifest for `layers` (bottom first). `annotations` go into the
    /// manifest, with [`ANNOTATION_COMPRESSOR`] and [`ANNOTATION_TAR_FORMAT`] set here.
    pub fn new(
        config: &ImageConfig,
        layers: Vec<LayerInfo>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Image, ImageError> {
        let config_bytes = canonical(&image_configuration(config, &layers), "config")?;
        let config_digest = Digest::sha256(&config_bytes);
        let config_desc = descriptor(MediaType::ImageConfig, &config_digest, config_bytes.len() as u64, "manifest")?;
        let manifest_bytes = canonical(&image_manifest(config_desc, &layers, annotations)?, "manifest")?;
        let manifest_digest = Digest::sha256(&manifest_bytes);
        Ok(Image {
            config: config_bytes,
            config_digest,
            manifest: manifest_bytes,
            manifest_digest,
            layers,
            platform: (config.architecture.clone(), config.os.clone()),
        })
    }

    /// The config's exact bytes.
    pub fn config_bytes(&self) -> &[u8] {
        &self.config
    }

    /// The config's digest (what `docker load` keeps as the image id).
    pub fn config_digest(&self) -> &Digest {
        &self.config_digest
    }

    /// The manifest's exact bytes (push these, never a re-serialization).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest
    }

    /// The manifest's digest: the image's identity.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// `index.json` naming this image.
    pub fn index_bytes(&self, reference: &Reference) -> Result<Vec<u8>, ImageError> {
        let mut platform = Platform::default();
        platform.set_architecture(arch(&self.platform.0)).set_os(os(&self.platform.1));
        let mut desc =
            descriptor(MediaType::ImageManifest, &self.manifest_digest, self.manifest.len() as u64, "index")?;
        desc.set_annotations(Some(HashMap::from([
            (ANNOTATION_REF_NAME.to_owned(), reference.tag().to_owned()),
            (ANNOTATION_CONTAINERD_NAME.to_owned(), reference.full_name()),
        ])))
        .set_platform(Some(platform));
        let mut index = ImageIndex::default();
        index.set_schema_version(SCHEMA_VERSION).set_media_type(Some(MediaType::ImageIndex)).set_manifests(vec![desc]);
        canonical(&index, "index")
    }

    /// docker's `manifest.json` for `docker load`.
    pub fn docker_manifest_bytes(&self, reference: &Reference) -> Result<Vec<u8>, ImageError> {
        let entry = DockerLoadEntry {
            config: format!("blobs/sha256/{}", self.config_digest.hex()),
            repo_tags: vec![reference.repo_tag()],
            layers: self.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect(),
        };
        canonical(&[entry], "manifest.json")
    }

    /// Every blob of the image, by digest (layers deduplicated), with its source.
    /// The image whose manifest and config are these bytes (read back from the store
    /// or a layout; kept as they are). The documents do not record a layer's origin
    /// or uncompressed size: each layer's `origin` is `None` and its
    /// `uncompressed_size` 0.
    pub fn from_documents(manifest: Vec<u8>, config: Vec<u8>) -> Result<Image, ImageError> {
        let bad = |document, message: String| ImageError::Inconsistent { document, message };
        let m: ImageManifest =
            serde_json::from_slice(&manifest).map_err(|e| bad("manifest", format!("not an image manifest: {e}")))?;
        let c: ImageConfiguration =
            serde_json::from_slice(&config).map_err(|e| bad("config", format!("not an image config: {e}")))?;
        let config_digest = Digest::sha256(&config);
        if m.config().digest().to_string() != config_digest.to_string() {
            return Err(bad("manifest", format!("names config {}, not {config_digest}", m.config().digest())));
        }
        let diff_ids = c.rootfs().diff_ids();
        if diff_ids.len() != m.layers().len() {
            let message = format!("{} diff_ids for {} layers", diff_ids.len(), m.layers().len());
            return Err(bad("config", message));
        }
        let layers = m
            .layers()
            .iter()
            .zip(diff_ids)
            .enumerate()
            .map(|(i, (d, diff_id))| {
                let digest = |text: &str, what: &str| {
                    text.parse::<Digest>().map_err(|e| bad("manifest", format!("layers[{i}] {what} `{text}`: {e}")))
                };
                let media_type = crate::compress::Compression::ALL
                    .iter()
                    .map(|c| c.media_type())
                    .find(|t| *t == d.media_type().to_string())
                    .ok_or_else(|| {
                        bad("manifest", format!("layers[{i}]: unsupported media type {}", d.media_type()))
                    })?;
                Ok(LayerInfo {
                    origin: None,
                    diff_id: digest(diff_id, "diff_id")?,
                    digest: digest(d.digest().as_ref(), "digest")?,
                    size: d.size(),
                    uncompressed_size: 0,
                    media_type,
                })
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        Ok(Image {
            config_digest,
            config,
            manifest_digest: Digest::sha256(&manifest),
            manifest,
            layers,
            platform: (c.architecture().to_string(), c.os().to_string()),
        })
    }

    fn blobs(&self) -> BTreeMap<Digest, BlobSource<'_>> {
        let mut out = BTreeMap::new();
        out.insert(self.config_digest.clone(), BlobSource::Bytes(&self.config));
        out.insert(self.manifest_digest.clone(), BlobSource::Bytes(&self.manifest));
        for l in &self.layers {
            out.insert(l.digest.clone(), BlobSource::Store(l.size));
        }
        out
    }
}

enum BlobSource<'a> {
    Bytes(&'a [u8]),
    Store(u64),
}

fn check_store_blob(store: &Store, digest: &Digest, expected: u64) -> Result<PathBuf, ImageError> {
    let actual = store.size(digest).map_err(|source| ImageError::Store { digest: digest.clone(), source })?;
    if actual != expected {
        return Err(ImageError::BlobSize { digest: digest.clone(), expected, actual });
    }
    Ok(store.blob_path(digest))
}

/// Writes `bytes` to `dest` through a temporary file and a rename.
fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = tmp_name(dest);
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, dest).map_err(io_err(dest))
}

fn tmp_name(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Places a store blob at `dest`: a hard link when the file systems allow, else a copy.
fn place_blob(src: &Path, dest: &Path) -> Result<(), ImageError> {
    let src_meta = fs::metadata(src).map_err(io_err(src))?;
    if let Ok(m) = fs::metadata(dest)
        && m.dev() == src_meta.dev()
        && m.ino() == src_meta.ino()
    {
        return Ok(());
    }
    let tmp = tmp_name(dest);
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(src, &tmp).is_err() {
        fs::copy(src, &tmp).map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, dest).map_err(io_err(dest))
}

/// Writes an OCI image layout at `dir`: `oci-layout`, `index.json` naming the image
/// (tag in `org.opencontainers.image.ref.name`, full name in `io.containerd.image.name`)
/// and `blobs/sha256/`. Layer blobs are hard-linked from the store when possible.
///
/// `dir` may be missing, empty, or a layout written before: then `index.json` is
/// replaced and blobs the new image does not use are removed, so the directory's
/// content depends only on the image.
pub fn write_layout(store: &Store, dir: &Path, image: &Image, reference: &Reference) -> Result<Digest, ImageError> {
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(io_err(dir))?;
        if entries.next().is_some() && !dir.join("oci-layout").is_file() {
            return Err(ImageError::NotALayout { dir: dir.to_owned() });
        }
    }
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).map_err(io_err(&blob_dir))?;
    let blobs = image.blobs();
    for (digest, source) in &blobs {
        let dest = blob_dir.join(digest.hex());
        match source {
            BlobSource::Bytes(b) => write_atomic(&dest, b)?,
            BlobSource::Store(size) => place_blob(&check_store_blob(store, digest, *size)?, &dest)?,
        }
    }
    write_atomic(&dir.join("oci-layout"), OCI_LAYOUT)?;
    write_atomic(&dir.join("index.json"), &image.index_bytes(reference)?)?;
    let keep: BTreeSet<String> = blobs.keys().map(Digest::hex).collect();
    for entry in fs::read_dir(&blob_dir).map_err(io_err(&blob_dir))? {
        let entry = entry.map_err(io_err(&blob_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            let p = entry.path();
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    Ok(image.manifest_digest.clone())
}

/// Makes `dir`, whose `blobs/sha256/` already hold one image (a manifest fetched
/// from a registry, its config and layers), an OCI layout naming that manifest:
/// writes `oci-layout` and an `index.json` with the one descriptor.
pub fn write_layout_index(dir: &Path, manifest: &Digest, size: u64) -> Result<(), ImageError> {
    let desc = descriptor(MediaType::ImageManifest, manifest, size, "index")?;
    let mut index = ImageIndex::default();
    index.set_schema_version(SCHEMA_VERSION).set_media_type(Some(MediaType::ImageIndex)).set_manifests(vec![desc]);
    write_atomic(&dir.join("oci-layout"), OCI_LAYOUT)?;
    write_atomic(&dir.join("index.json"), &canonical(&index, "index")?)
}

/// The archive written by [`write_archive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// sha256 of the archive file.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The image's manifest digest.
    pub manifest_digest: Digest,
}

/// Documents an archive carries beside its image (an OCI referrer's blobs, see
/// `referrer::beside`) and the `index.json` that lists them after the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beside {
    /// Their blobs, by digest.
    pub blobs: BTreeMap<Digest, Vec<u8>>,
    /// The index to write instead of the image's own (`None`: the image's).
    pub index: Option<Vec<u8>>,
}

/// Writes one tar at `path` that is both an OCI image layout and a `docker load`
/// archive (`manifest.json`). Entries are sorted, with mode 0644/0755, owner 0:0 and
/// mtime 0, so the archive's bytes depend only on the image and the name. Written to a
/// temporary file and renamed into place.
pub fn write_archive(
    store: &Store,
    path: &Path,
    image: &Image,
    reference: &Reference,
) -> Result<ArchiveInfo, ImageError> {
    write_archive_beside(store, path, image, reference, &Beside::default())
}

/// [`write_archive`], with documents beside the image.
pub fn write_archive_beside(
    store: &Store,
    path: &Path,
    image: &Image,
    reference: &Reference,
    beside: &Beside,
) -> Result<ArchiveInfo, ImageError> {
    let tmp = tmp_name(path);
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let result = (|| {
        let mut out = crate::layer::HashingWriter {
            inner: BufWriter::with_capacity(1024 * 1024, file),
            hasher: Algorithm::Sha256.hasher(),
            count: 0,
        };
        write_archive_to_beside(store, &mut out, image, reference, &tmp, beside)?;
        let file = out.inner.into_inner().map_err(|e| ImageError::Io { path: tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(&tmp))?;
        Ok((out.hasher.finish(), out.count))
    })();
    let (digest, size) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(ArchiveInfo { digest, size, manifest_digest: image.manifest_digest.clone() })
}

/// Writes the archive of [`write_archive`] to any writer (`label` names it in errors).
pub fn write_archive_to(
    store: &Store,
    out: impl Write,
    image: &Image,
    reference: &Reference,
    label: &Path,
) -> Result<(), ImageError> {
    write_archive_to_beside(store, out, image, reference, label, &Beside::default())
}

fn write_archive_to_beside(
    store: &Store,
    out: impl Write,
    image: &Image,
    reference: &Reference,
    label: &Path,
    beside: &Beside,
) -> Result<(), ImageError> {
    let werr = |source| ImageError::Io { path: label.to_owned(), source };
    let dir = Meta { mode: 0o755, uid: 0, gid: 0, mtime: 0 };
    let file = Meta { mode: 0o644, uid: 0, gid: 0, mtime: 0 };
    let mut tar = TarWriter::new(out);
    tar.header("blobs", Kind::Dir, &dir, 0, "").map_err(werr)?;
    tar.header("blobs/sha256", Kind::Dir, &dir, 0, "").map_err(werr)?;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut blobs = image.blobs();
    for (digest, bytes) in &beside.blobs {
        blobs.entry(digest.clone()).or_insert(BlobSource::Bytes(bytes));
    }
    for (digest, source) in blobs {
        let name = format!("blobs/sha256/{}", digest.hex());
        match source {
            BlobSource::Bytes(b) => {
                tar.header(&name, Kind::File, &file, b.len() as u64, "").map_err(werr)?;
                tar.data(b).map_err(werr)?;
                tar.pad(b.len() as u64).map_err(werr)?;
            }
            BlobSource::Store(size) => {
                let src = check_store_blob(store, &digest, size)?;
                let store_err = |source| ImageError::Store { digest: digest.clone(), source };
                let mut f = store.open_verified(&digest).map_err(store_err)?;
                tar.header(&name, Kind::File, &file, size, "").map_err(werr)?;
                let mut left = size;
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = match f.read(&mut buf[..want]) {
                        Ok(0) => return Err(ImageError::BlobSize { digest, expected: size, actual: size - left }),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(store_err(openshell_store::store_error(e, &src))),
                    };
                    tar.data(&buf[..n]).map_err(werr)?;
                    left -= n as u64;
                }
                f.finish().map_err(store_err)?;
                tar.pad(size).map_err(werr)?;
            }
        }
    }
    for (name, bytes) in [
        ("index.json", beside.index.clone().map_or_else(|| image.index_bytes(reference), Ok)?),
        ("manifest.json", image.docker_manifest_bytes(reference)?),
        ("oci-layout", OCI_LAYOUT.to_vec()),
    ] {
        tar.header(name, Kind::File, &file, bytes.len() as u64, "").map_err(werr)?;
        tar.data(&bytes).map_err(werr)?;
        tar.pad(bytes.len() as u64).map_err(werr)?;
    }
    tar.finish().map_err(werr)?;
    Ok(())
}
