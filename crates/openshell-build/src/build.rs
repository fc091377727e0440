//! `openshell build`: a lockfile and a store in, an OCI image out, with no
//! network. Debian packages are unpacked without running maintainer scripts;
//! what their scripts would have produced that matters (dpkg status, users and
//! groups, the CA bundle) is generated. The tree is partitioned into layers by
//! origin and written by `openshell-oci`, whose output depends only on its input.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use openshell_debian::DebReader;
use openshell_oci::compress::Compression;
use openshell_oci::referrer::{self, Referrer};
use openshell_oci::{
    ContentRef, Entry, EntryKind, Image, ImageConfig, LayerInfo, LayerOptions, OnConflict, Origin, Reference,
    TarImport, Tree,
};
use openshell_store::{Algorithm, Digest, Store, StoreError};

use crate::closure::ClosureError;
use crate::lockfile::Lockfile;

/// Bumped whenever the builder's output for the same lockfile changes; part of the
/// build cache key.
pub const BUILDER_VERSION: &str = "openshell-build/5";

/// The image's fixed creation time (seconds since the epoch): the config's
/// `created`, and the time of anything else made from the lockfile (its SBOM).
pub const IMAGE_CREATED: u64 = 0;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{} artifact(s) of {lock} are not in the store {}: {}; run `openshell fetch {lock}` (or import a closure)",
        missing.len(),
        store.display(),
        missing.join(", ")
    )]
    Missing { lock: String, store: PathBuf, missing: Vec<String> },
    #[error(transparent)]
    Closure(#[from] ClosureError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{label}: {source}")]
    Deb {
        label: String,
        #[source]
        source: Box<openshell_debian::DebError>,
    },
    #[error("{label}: {message}")]
    Unpack { label: String, message: String },
    #[error("{label} ({archive}): {source}")]
    Npm {
        label: String,
        archive: Digest,
        #[source]
        source: Box<openshell_npm::UnpackError>,
    },
    #[error("image tree: {0}")]
    Tree(#[from] openshell_oci::TreeError),
    #[error("layers: {0}")]
    Partition(#[from] openshell_oci::PartitionError),
    #[error("image exclusions: {0}")]
    Exclude(#[from] crate::exclude::ExcludeError),
    #[error("layer: {0}")]
    Layer(#[from] openshell_oci::LayerError),
    #[error("image: {0}")]
    Image(#[from] openshell_oci::ImageError),
    /// A document beside the image (the SBOM referrer) could not be written.
    #[error(transparent)]
    Referrer(#[from] openshell_oci::referrer::ReferrerError),
    #[error("file `{path}`: mode `{mode}` is not octal")]
    Mode { path: String, mode: String },
    #[error("{label} ({filename}): {source}")]
    Wheel {
        label: String,
        filename: String,
        #[source]
        source: Box<openshell_pypi::InstallError>,
    },
}

/// A built image (its blobs are in the store).
#[derive(Debug, Clone)]
pub struct Built {
    pub image: Image,
    /// The lockfile's text, stored (so that the image's SBOM is made from it).
    pub lockfile: Digest,
    pub reference: Reference,
    pub layers: Vec<LayerInfo>,
    /// Served from the build cache: no work was done.
    pub cached: bool,
}

/// Reports build steps.
pub trait BuildProgress {
    fn step(&self, message: &str);
}

/// The fixed layer order: base system first, generated files last.
fn origin_order(tree_origins: &[Origin]) -> Vec<Origin> {
    let rank = |o: &Origin| match o.as_str() {
        "debian" => 0,
        s if s.starts_with("npm/") => 1,
        "pypi" => 2,
        "files" => 3,
        _ => 4,
    };
    let mut v = tree_origins.to_vec();
    v.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.as_str().cmp(b.as_str())));
    v.dedup();
    v
}

/// Checks that every artifact is in the store.
pub fn check_closure(lock: &Lockfile, lock_name: &str, store: &Store) -> Result<(), BuildError> {
    let missing: Vec<String> =
        lock.artifacts()?.into_iter().filter(|a| !store.contains(&a.digest)).map(|a| a.label).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Missing { lock: lock_name.to_owned(), store: store.root().to_owned(), missing })
    }
}

/// The build-cache key: the lockfile's content, the builder version and the layer
/// compression. A gzip build keeps the key it had before zstd existed (the builder
/// version alone), so the caches of existing stores stay valid.
pub fn cache_key(lock: &Lockfile, compression: Compression) -> Result<Digest, BuildError> {
    let text = lock.to_text().map_err(|e| BuildError::Unpack { label: "lockfile".into(), message: e.to_string() })?;
    let builder = match compression {
        Compression::Gzip => BUILDER_VERSION.to_owned(),
        other => format!("{BUILDER_VERSION} {other}"),
    };
    Ok(Digest::sha256(format!("{builder}\n{text}").as_bytes()))
}

fn cache_path(store: &Store, key: &Digest) -> PathBuf {
    store.root().join("builds").join(key.hex())
}

/// Builds (or finds in the cache) the image of `lock`, its layers compressed with
/// `compression` (the tars, and so the diff_ids, do not depend on it).
pub fn build(
    lock: &Lockfile,
    lock_name: &str,
    store: &Store,
    compression: Compression,
    progress: &dyn BuildProgress,
) -> Result<Built, BuildError> {
    check_closure(lock, lock_name, store)?;
    let reference = Reference::parse(&format!("{}:{}", lock.image.name, lock.image.tag))?;
    let config = image_config(lock);
    let annotations = BTreeMap::from([
        ("org.opencontainers.image.ref.name".to_owned(), lock.image.tag.clone()),
        ("dev.openshell.lockfile.definition".to_owned(), lock.definition.sha256.clone()),
    ]);
    let key = cache_key(lock, compression)?;
    let lockfile = store_lockfile(store, lock)?;
    if let Some(layers) = read_cache(store, &key, compression) {
        progress.step("no-op: the image of this lockfile is in the build cache");
        let image = Image::new(&config, layers.clone(), &annotations)?;
        return Ok(Built { image, reference, lockfile, layers, cached: true });
    }
    progress.step("assembling the image tree");
    let tree = assemble(lock, store, progress)?;
    let origins: Vec<Origin> = {
        let mut o: Vec<Origin> = tree.iter().map(|(_, e, _)| e.origin.clone()).collect();
        o.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        o.dedup();
        origin_order(&o)
    };
    let plans = openshell_oci::partition(&tree, &origins)?;
    let mut layers = Vec::new();
    for plan in &plans {
        progress.step(&format!("writing layer {}", plan.origin.as_ref().map_or("(all)", |o| o.as_str())));
        layers.push(openshell_oci::write_layer(store, plan, &LayerOptions { mtime: 0, compression })?);
    }
    write_cache(store, &key, &layers)?;
    let image = Image::new(&config, layers.clone(), &annotations)?;
    Ok(Built { image, reference, lockfile, layers, cached: false })
}

/// Puts the lockfile's text in the store; the image record names it.
fn store_lockfile(store: &Store, lock: &Lockfile) -> Result<Digest, BuildError> {
    let text = lock.to_text().map_err(|e| BuildError::Unpack { label: "lockfile".into(), message: e.to_string() })?;
    Ok(store.insert_bytes(text.as_bytes())?)
}

fn image_config(lock: &Lockfile) -> ImageConfig {
    let mut env: Vec<String> = lock.image.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !lock.image.env.contains_key("PATH") {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        user: Some(format!("{}:{}", lock.image.uid, lock.image.gid)),
        env,
        entrypoint: (!lock.image.entrypoint.is_empty()).then(|| lock.image.entrypoint.clone()),
        cmd: (!lock.image.cmd.is_empty()).then(|| lock.image.cmd.clone()),
        working_dir: Some(lock.image.workdir.clone()),
        labels: lock.image.labels.clone(),
        created: IMAGE_CREATED,
    }
}

/// Layer records of a cached build, if every blob is still in the store.
fn read_cache(store: &Store, key: &Digest, compression: Compression) -> Option<Vec<LayerInfo>> {
    let text = std::fs::read_to_string(cache_path(store, key)).ok()?;
    let mut layers = Vec::new();
    for line in text.lines() {
        let mut f = line.split('\t');
        let origin = f.next()?;
        let diff_id: Digest = f.next()?.parse().ok()?;
        let digest: Digest = f.next()?.parse().ok()?;
        let size: u64 = f.next()?.parse().ok()?;
        let uncompressed_size: u64 = f.next()?.parse().ok()?;
        let media_type = f.next()?;
        if media_type != compression.media_type() {
            return None;
        }
        if !store.contains(&digest) {
            return None;
        }
        layers.push(LayerInfo {
            origin: (!origin.is_empty()).then(|| origin.to_owned()),
            diff_id,
            digest,
            size,
            uncompressed_size,
            media_type: compression.media_type(),
        });
    }
    Some(layers)
}

fn write_cache(store: &Store, key: &Digest, layers: &[LayerInfo]) -> Result<(), BuildError> {
    let dir = store.root().join("builds");
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
    let mut text = String::new();
    for l in layers {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            l.origin.as_deref().unwrap_or(""),
            l.diff_id,
            l.digest,
            l.size,
            l.uncompressed_size,
            l.media_type
        ));
    }
    let p = cache_path(store, key);
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|source| StoreError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, &p).map_err(|source| StoreError::Io { path: p, source })?;
    Ok(())
}

/// The uncompressed data tar of a .deb, kept in the store (derived once per .deb).
/// The .deb is hashed whole first: its control member is read on every build.
fn deb_data_tar(
    store: &Store,
    deb: &Digest,
    label: &str,
) -> Result<(Digest, openshell_debian::DebControl), BuildError> {
    let deb_err = |source| BuildError::Deb { label: label.to_owned(), source: Box::new(source) };
    let file = store.open_ranges(deb)?;
    let reader = DebReader::new(label.to_owned(), std::io::BufReader::new(file)).map_err(deb_err)?;
    let record = store.root().join("derived").join(format!("deb-data-{}", deb.hex()));
    if let Some(d) = std::fs::read_to_string(&record).ok().and_then(|t| t.trim().parse::<Digest>().ok())
        && store.contains(&d)
    {
        return Ok((d, reader.control().clone()));
    }
    let (control, data) = reader.into_data_tar().map_err(deb_err)?;
    let digest = store.insert_reader(Algorithm::Sha256, None, data)?;
    if let Some(dir) = record.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_owned(), source })?;
    }
    std::fs::write(&record, digest.to_string()).map_err(|source| StoreError::Io { path: record.clone(), source })?;
    Ok((digest, control))
}

/// The uncompressed tar inside an npm .tgz, kept in the store.
fn npm_tar(store: &Store, tgz: &Digest) -> Result<Digest, BuildError> {
    let record = store.root().join("derived").join(format!("npm-tar-{}", tgz.hex()));
    if let Some(d) = std::fs::read_to_string(&record).ok().and_then(|t| t.trim().parse::<Digest>().ok())
        && store.contains(&d)
    {
        return Ok(d);
    }
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(store.open_verified(tgz)?));
    let digest = store.insert_reader(Algorithm::Sha256, None, &mut gz)?;
    // gzip's end is not the blob's: what follows it is hashed too.
    gz.into_inner().into_inner().finish()?;
    if let Some(dir) = record.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_owned(), source })?;
    }
    std::fs::write(&record, digest.to_string()).map_err(|source| StoreError::Io { path: record.clone(), source })?;
    Ok(digest)
}

fn read_content(store: &Store, c: &ContentRef) -> Result<Vec<u8>, BuildError> {
    match c {
        ContentRef::Bytes(b) => Ok(b.to_vec()),
        ContentRef::Blob { digest, offset, len } => {
            use std::io::{Seek, SeekFrom};
            let mut f = store.open_ranges(digest)?;
            let path = store.blob_path(digest);
            f.seek(SeekFrom::Start(*offset)).map_err(|source| StoreError::Io { path: path.clone(), source })?;
            let mut buf = Vec::with_capacity(*len as usize);
            f.take(*len).read_to_end(&mut buf).map_err(|source| StoreError::Io { path, source })?;
            Ok(buf)
        }
    }
}

fn file_content(tree: &Tree, store: &Store, path: &str) -> Result<Option<Vec<u8>>, BuildError> {
    match tree.get(path).map(|e| &e.kind) {
        Some(EntryKind::File { content, .. }) => read_content(store, content).map(Some),
        _ => Ok(None),
    }
}

fn generated(tree: &mut Tree, path: &str, content: Vec<u8>, mode: u32, owner: (u32, u32)) -> Result<(), BuildError> {
    let origin = Origin::new("generated");
    tree.set(
        path,
        Entry {
            kind: EntryKind::File { mode, content: ContentRef::bytes(content) },
            uid: owner.0,
            gid: owner.1,
            origin,
        },
    )?;
    Ok(())
}

/// Assembles the whole image tree from the lockfile's artifacts.
pub fn assemble(lock: &Lockfile, store: &Store, progress: &dyn BuildProgress) -> Result<Tree, BuildError> {
    let mut tree = Tree::new(OnConflict::Error);
    let debian = Origin::new("debian");
    let mut status = String::new();
    let mut alternatives = Vec::new();
    let mut debs = lock.debian.clone();
    debs.sort();
    for d in &debs {
        let label = format!("debian {} {}", d.name, d.version);
        progress.step(&format!("unpacking {label}"));
        let digest: Digest =
            d.sha256.parse().map_err(|_| BuildError::Unpack { label: label.clone(), message: "bad sha256".into() })?;
        let (data, control) = deb_data_tar(store, &digest, &label)?;
        tree.import_tar(store, &data, &debian, &TarImport { strip_components: 0, prefix: String::new(), owner: None })?;
        // dpkg's status entry: the control paragraph with Status after Package.
        let mut para = String::new();
        for (i, line) in control.control.to_string().lines().enumerate() {
            para.push_str(line);
            para.push('\n');
            if i == 0 {
                para.push_str("Status: install ok installed\n");
            }
        }
        status.push_str(&para);
        status.push('\n');
        if let Some(md5) = control.files.get("md5sums") {
            generated(&mut tree, &format!("var/lib/dpkg/info/{}.md5sums", d.name), md5.clone(), 0o644, (0, 0))?;
        }
        if let Some(script) = control.files.get("postinst") {
            alternatives.extend(crate::maintainer::parse_alternatives(&d.name, &String::from_utf8_lossy(script)));
        }
        if let Some(c) = control.files.get("conffiles") {
            generated(&mut tree, &format!("var/lib/dpkg/info/{}.conffiles", d.name), c.clone(), 0o644, (0, 0))?;
        }
    }
    if !debs.is_empty() {
        generated(&mut tree, "var/lib/dpkg/status", status.into_bytes(), 0o644, (0, 0))?;
        ca_bundle(&mut tree, store)?;
        crate::maintainer::apply_alternatives(&mut tree, &alternatives)?;
        crate::maintainer::shells(&mut tree, &|t: &Tree, p: &str| file_content(t, store, p).ok().flatten())?;
    }

    let prefix = lock.image.npm_prefix.clone().unwrap_or_else(|| "/usr/local".into());
    let mut npm = lock.npm.clone();
    npm.sort();
    for n in &npm {
        let label = format!("npm {}@{}", n.name, n.version);
        progress.step(&format!("unpacking {label}"));
        let digest = crate::fetch::digest_from_sri(&n.integrity)
            .map_err(|e| BuildError::Unpack { label: label.clone(), message: e.to_string() })?;
        let tar = npm_tar(store, &digest)?;
        // Links are kept in the image: each must stay inside its package.
        openshell_npm::check_tar_links(std::io::BufReader::new(store.open_ranges(&tar)?)).map_err(|source| {
            BuildError::Npm { label: label.clone(), archive: digest.clone(), source: Box::new(source) }
        })?;
        let top = top_level_package(&n.install);
        let origin = Origin::new(&format!("npm/{top}"));
        let dest = format!("{}/{}", prefix.trim_matches('/'), n.install);
        tree.import_tar(
            store,
            &tar,
            &origin,
            &TarImport { strip_components: 1, prefix: dest.clone(), owner: Some((0, 0)) },
        )?;
        npm_modes(&mut tree, &dest)?;
        let is_root = n.install.strip_prefix("lib/node_modules/").is_some_and(|rest| !rest.contains("/node_modules/"));
        if is_root {
            link_bins(&mut tree, store, &prefix, &dest, &origin)?;
        }
    }

    for (package, link, target) in NPM_POSTINSTALL_LINKS {
        let dir = format!("{}/lib/node_modules/{package}", prefix.trim_matches('/'));
        postinstall_link(&mut tree, &format!("{dir}/{link}"), &format!("{dir}/{target}"))?;
    }

    crate::wheels::install_wheels(&mut tree, lock, store, progress)?;

    let files = Origin::new("files");
    for f in &lock.file {
        let digest: Digest =
            f.sha256.parse().map_err(|_| BuildError::Unpack { label: f.path.clone(), message: "bad sha256".into() })?;
        let mode = u32::from_str_radix(&f.mode, 8)
            .map_err(|_| BuildError::Mode { path: f.path.clone(), mode: f.mode.clone() })?;
        tree.set(
            &f.path,
            Entry {
                kind: EntryKind::File { mode, content: ContentRef::blob(digest, f.size) },
                uid: 0,
                gid: 0,
                origin: files.clone(),
            },
        )?;
    }

    users(&mut tree, store, lock)?;
    let exclusions = crate::exclude::Exclusions::new(&lock.image.exclude, &lock.image.keep)?;
    let removed = exclusions.apply(&mut tree)?;
    if removed > 0 {
        progress.step(&format!("left out {removed} excluded paths"));
    }
    Ok(tree)
}

/// What the agents' npm postinstall scripts do, reproduced without running them:
/// each hardlinks the platform binary (linux x64, glibc) over a placeholder in `bin/`.
/// opencode's script picks the AVX2 build on machines that have AVX2 (the `-baseline`
/// build otherwise); a build must not depend on the build machine, so the AVX2 build
/// is linked.
pub const NPM_POSTINSTALL_LINKS: &[(&str, &str, &str)] = &[
    ("@anthropic-ai/claude-code", "bin/claude.exe", "node_modules/@anthropic-ai/claude-code-linux-x64/claude"),
    ("opencode-ai", "bin/opencode.exe", "node_modules/opencode-linux-x64/bin/opencode"),
];

/// Replaces `link` by a hard link to the regular file `target` (made executable),
/// when both are in the tree.
fn postinstall_link(tree: &mut Tree, link: &str, target: &str) -> Result<(), BuildError> {
    let (Some(Entry { kind: EntryKind::File { mode, content }, uid, gid, origin }), Some(old)) =
        (tree.get(target).cloned(), tree.get(link).cloned())
    else {
        return Ok(());
    };
    tree.set(target, Entry { kind: EntryKind::File { mode: mode | 0o755, content }, uid, gid, origin })?;
    tree.set(
        link,
        Entry { kind: EntryKind::Hardlink { to: target.to_owned() }, uid: old.uid, gid: old.gid, origin: old.origin },
    )?;
    Ok(())
}

/// The modes pacote (npm's extractor) gives, with npm's default umask 022: every
/// file and directory readable by all, directories traversable, nothing group- or
/// world-writable; execute and setuid/setgid bits as the tarball says.
fn npm_modes(tree: &mut Tree, dest: &str) -> Result<(), BuildError> {
    let prefix = format!("{dest}/");
    let fix: Vec<(String, Entry)> = tree
        .iter()
        .filter(|(p, _, implicit)| !implicit && (p.starts_with(&prefix) || *p == dest))
        .filter_map(|(p, e, _)| {
            let kind = match &e.kind {
                EntryKind::File { mode, content } => {
                    let m = (mode | 0o644) & !0o022;
                    (m != *mode).then(|| EntryKind::File { mode: m, content: content.clone() })?
                }
                EntryKind::Dir { mode } => {
                    let m = (mode | 0o755) & !0o022;
                    (m != *mode).then_some(EntryKind::Dir { mode: m })?
                }
                _ => return None,
            };
            Some((p.to_owned(), Entry { kind, ..e.clone() }))
        })
        .collect();
    for (path, entry) in fix {
        tree.set(&path, entry)?;
    }
    Ok(())
}

/// `lib/node_modules/@scope/name/node_modules/x` → `@scope/name`.
fn top_level_package(install: &str) -> String {
    let rest = install.strip_prefix("lib/node_modules/").unwrap_or(install);
    let mut parts = rest.split('/');
    match (parts.next(), parts.next()) {
        (Some(scope), Some(name)) if scope.starts_with('@') => format!("{scope}/{name}"),
        (Some(name), _) => name.to_owned(),
        _ => rest.to_owned(),
    }
}

/// The `bin/` symlinks a global npm install makes for a top-level package.
fn link_bins(tree: &mut Tree, store: &Store, prefix: &str, dest: &str, origin: &Origin) -> Result<(), BuildError> {
    let Some(manifest) = file_content(tree, store, &format!("{dest}/package.json"))? else { return Ok(()) };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&manifest) else { return Ok(()) };
    let name = json.get("name").and_then(|v| v.as_str()).unwrap_or("");
    let bins: Vec<(String, String)> = match json.get("bin") {
        Some(serde_json::Value::String(s)) => vec![(name.rsplit('/').next().unwrap_or(name).to_owned(), s.clone())],
        Some(serde_json::Value::Object(m)) => {
            m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned()))).collect()
        }
        _ => Vec::new(),
    };
    let rel_pkg = dest.strip_prefix(&format!("{}/", prefix.trim_matches('/'))).unwrap_or(dest);
    for (bin, target) in bins {
        if bin.contains('/') || bin.is_empty() {
            continue;
        }
        let target = target.trim_start_matches("./");
        let link = format!("{}/bin/{bin}", prefix.trim_matches('/'));
        tree.set(
            &link,
            Entry {
                kind: EntryKind::Symlink { target: format!("../{rel_pkg}/{target}") },
                uid: 0,
                gid: 0,
                origin: origin.clone(),
            },
        )?;
        // npm makes bin targets executable.
        let path = format!("{dest}/{target}");
        if let Some(Entry { kind: EntryKind::File { mode, content }, uid, gid, origin: o }) = tree.get(&path).cloned() {
            tree.set(&path, Entry { kind: EntryKind::File { mode: mode | 0o111, content }, uid, gid, origin: o })?;
        }
    }
    Ok(())
}

/// What ca-certificates' postinst (update-ca-certificates) produces: the bundle
/// of every certificate under /usr/share/ca-certificates, in path order.
fn ca_bundle(tree: &mut Tree, store: &Store) -> Result<(), BuildError> {
    let certs: Vec<String> = tree
        .iter()
        .filter(|(p, e, _)| {
            p.starts_with("usr/share/ca-certificates/")
                && p.ends_with(".crt")
                && matches!(e.kind, EntryKind::File { .. })
        })
        .map(|(p, _, _)| p.to_owned())
        .collect();
    if certs.is_empty() {
        return Ok(());
    }
    let mut bundle = Vec::new();
    let mut conf = String::from("# Generated by openshell build (as update-ca-certificates would)\n");
    for c in &certs {
        if let Some(bytes) = file_content(tree, store, c)? {
            bundle.extend_from_slice(&bytes);
            if !bytes.ends_with(b"\n") {
                bundle.push(b'\n');
            }
        }
        conf.push_str(c.trim_start_matches("usr/share/ca-certificates/"));
        conf.push('\n');
    }
    generated(tree, "etc/ssl/certs/ca-certificates.crt", bundle, 0o644, (0, 0))?;
    generated(tree, "etc/ca-certificates.conf", conf.into_bytes(), 0o644, (0, 0))?;
    Ok(())
}

/// /etc/passwd, group, shadow and gshadow: base-passwd's master files (as its
/// postinst installs them) plus the image user, and the user's home directory.
fn users(tree: &mut Tree, store: &Store, lock: &Lockfile) -> Result<(), BuildError> {
    let i = &lock.image;
    let mut passwd = file_content(tree, store, "usr/share/base-passwd/passwd.master")?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| "root:x:0:0:root:/root:/bin/sh\n".into());
    let mut group = file_content(tree, store, "usr/share/base-passwd/group.master")?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| "root:x:0:\n".into());
    if !passwd.lines().any(|l| l.split(':').next() == Some(i.user.as_str())) {
        passwd.push_str(&format!("{}:x:{}:{}::{}:{}\n", i.user, i.uid, i.gid, i.home, i.shell));
    }
    if !group.lines().any(|l| l.split(':').nth(2) == Some(i.gid.to_string().as_str())) {
        group.push_str(&format!("{}:x:{}:\n", i.user, i.gid));
    }
    let names = |t: &str| t.lines().filter_map(|l| l.split(':').next().map(str::to_owned)).collect::<Vec<_>>();
    let shadow: String = names(&passwd).iter().map(|n| format!("{n}:*:0:0:99999:7:::\n")).collect();
    let gshadow: String = names(&group).iter().map(|n| format!("{n}:*::\n")).collect();
    generated(tree, "etc/passwd", passwd.into_bytes(), 0o644, (0, 0))?;
    generated(tree, "etc/group", group.into_bytes(), 0o644, (0, 0))?;
    generated(tree, "etc/shadow", shadow.into_bytes(), 0o640, (0, 42))?;
    generated(tree, "etc/gshadow", gshadow.into_bytes(), 0o640, (0, 42))?;
    for dir in [&i.home, &i.workdir] {
        let d = dir.trim_matches('/');
        if d.is_empty() {
            continue;
        }
        tree.set(
            d,
            Entry { kind: EntryKind::Dir { mode: 0o755 }, uid: i.uid, gid: i.gid, origin: Origin::new("generated") },
        )?;
    }
    Ok(())
}

/// Writes the image as an OCI layout directory and/or a single archive, each with
/// `referrers` (the SBOM) beside the image.
pub fn write_outputs(
    store: &Store,
    built: &Built,
    layout: Option<&Path>,
    archive: Option<&Path>,
    referrers: &[Referrer],
) -> Result<(), BuildError> {
    if let Some(dir) = layout {
        openshell_oci::write_layout(store, dir, &built.image, &built.reference)?;
        for r in referrers {
            referrer::attach_to_layout(dir, r)?;
        }
    }
    if let Some(file) = archive {
        let beside = referrer::beside(&built.image, &built.reference, referrers)?;
        openshell_oci::write_archive_beside(store, file, &built.image, &built.reference, &beside)?;
    }
    Ok(())
}

/// The outcome of `build --check`.
#[derive(Debug)]
pub enum CheckOutcome {
    /// Both builds gave the same bytes.
    Identical { manifest: Digest },
    /// They did not; the description names the first differing layer, path and field.
    Differs { first: Digest, second: Digest, description: String },
}

/// Builds the image twice, each in its own temporary store and directory (the
/// lockfile's artifacts copied in, nothing derived shared), and compares the bytes.
pub fn check(
    lock: &Lockfile,
    lock_name: &str,
    store: &Store,
    compression: Compression,
    progress: &dyn BuildProgress,
) -> Result<CheckOutcome, BuildError> {
    check_closure(lock, lock_name, store)?;
    let digests = lock.digests()?;
    let mut layouts = Vec::new();
    let mut dirs = Vec::new();
    for round in ["first", "second"] {
        let dir = tempfile::Builder::new()
            .prefix(&format!("openshell-check-{round}-"))
            .tempdir()
            .map_err(|source| StoreError::Io { path: std::env::temp_dir(), source })?;
        let tmp_store = Store::open(dir.path().join("store"))?;
        for d in &digests {
            let dest = tmp_store.blob_path(d);
            if std::fs::hard_link(store.blob_path(d), &dest).is_err() {
                tmp_store.insert_file(d.algorithm(), Some(d), &store.blob_path(d))?;
            }
        }
        progress.step(&format!("{round} build in {}", dir.path().display()));
        let built = build(lock, lock_name, &tmp_store, compression, progress)?;
        let layout = dir.path().join("layout");
        write_outputs(&tmp_store, &built, Some(&layout), None, &[])?;
        layouts.push((layout, built.image.manifest_digest().clone()));
        dirs.push(dir);
    }
    let (a, da) = &layouts[0];
    let (b, db) = &layouts[1];
    if da == db {
        return Ok(CheckOutcome::Identical { manifest: da.clone() });
    }
    let diff = openshell_oci::diff_layouts(a, b)
        .map_err(|e| BuildError::Unpack { label: "build --check".into(), message: e.to_string() })?;
    Ok(CheckOutcome::Differs { first: da.clone(), second: db.clone(), description: diff.to_string() })
}
