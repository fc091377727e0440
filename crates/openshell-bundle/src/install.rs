//! `bundle install`: one pass over the bundle that verifies everything and stages
//! it (blobs into the store's `tmp/`, binaries into temporary files beside their
//! destination, lockfiles and SBOMs in memory); only once the whole bundle has read
//! good is anything published: blobs linked into the store, image records written,
//! lockfiles written and registered as gc roots, binaries renamed into place, and
//! then the images loaded into docker or containerd when asked. A bad bundle
//! leaves nothing behind.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use openshell_build::images::{self, ImageRecord};
use openshell_oci::Reference;
use openshell_store::{Digest, Staged, Staging, Store};

use crate::error::{BundleError, io};
use crate::index::{BundledImage, Index, Kind, Member, store_blob_digest};
use crate::key::TrustedKey;
use crate::read::{self, Sink};

/// Where an installed image is also loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadTarget {
    /// The docker daemon `docker` talks to (`docker load`).
    Docker,
    /// A containerd, through `ctr images import`.
    Containerd {
        /// Its socket.
        address: PathBuf,
        /// The namespace (`k8s.io` is the one the CRI plugin and K3s use).
        namespace: String,
    },
}

impl LoadTarget {
    fn name(&self) -> &'static str {
        match self {
            LoadTarget::Docker => "docker",
            LoadTarget::Containerd { .. } => "containerd",
        }
    }
}

/// Where things go.
pub struct InstallOptions<'a> {
    /// The store that receives the closures and images.
    pub store: &'a Store,
    /// Where lockfiles and SBOMs are written.
    pub lockfile_dir: PathBuf,
    /// Where the binaries go (`None`: not installed).
    pub bin_dir: Option<PathBuf>,
    /// Where images are loaded besides the store.
    pub load: Vec<LoadTarget>,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Installed {
    /// Blobs added to the store.
    pub added: usize,
    /// Blobs it had already (verified in the bundle all the same).
    pub present: usize,
    /// Images recorded, by reference.
    pub images: Vec<String>,
    /// Lockfiles written.
    pub lockfiles: Vec<PathBuf>,
    /// Binaries installed.
    pub binaries: Vec<PathBuf>,
    /// `(image, target)` loads done.
    pub loaded: Vec<(String, String)>,
}

/// A temporary binary beside its destination, removed unless renamed.
struct TempBinary {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

impl Drop for TempBinary {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

enum Target<'s> {
    Blob(Box<Staging<'s>>, Digest),
    Bytes(Vec<u8>),
    Binary(TempBinary),
    Nothing,
}

struct Stager<'a, 's> {
    opts: &'a InstallOptions<'s>,
    current: Target<'s>,
    staged: Vec<Staged<'s>>,
    /// Digests staged so far (two layouts may share a layer: staged once).
    staging: std::collections::BTreeSet<Digest>,
    present: usize,
    files: BTreeMap<String, Vec<u8>>,
    binaries: Vec<TempBinary>,
}

/// The store digest a member holds when it is a store blob or a layout's blob.
fn blob_digest(m: &Member) -> Option<Digest> {
    match m.kind {
        Kind::StoreBlob => store_blob_digest(&m.path),
        Kind::Image => {
            let (_, hex) = m.path.split_once("/blobs/sha256/")?;
            format!("sha256:{hex}").parse().ok()
        }
        _ => None,
    }
}

impl<'s> Stager<'_, 's> {
    fn binary(&self, m: &Member) -> Result<Target<'s>, BundleError> {
        let Some(dir) = &self.opts.bin_dir else { return Ok(Target::Nothing) };
        let name = m.path.strip_prefix("bin/").unwrap_or(&m.path);
        fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join(format!(".{name}.openshell-install-{}", std::process::id()));
        let file = OpenOptions::new().write(true).create_new(true).mode(0o755).open(&tmp).map_err(io(&tmp))?;
        Ok(Target::Binary(TempBinary { tmp, dest: dir.join(name), file: Some(file) }))
    }
}

impl Sink for Stager<'_, '_> {
    fn begin(&mut self, m: &Member) -> Result<(), BundleError> {
        self.current = match (m.kind, blob_digest(m)) {
            (_, Some(d)) if self.opts.store.contains(&d) || self.staging.contains(&d) => {
                self.present += usize::from(!self.staging.contains(&d));
                Target::Nothing
            }
            (_, Some(d)) => Target::Blob(Box::new(self.opts.store.stage(d.algorithm())?), d),
            (Kind::Lockfile | Kind::Sbom, None) => Target::Bytes(Vec::with_capacity(m.size as usize)),
            (Kind::Binary, None) => self.binary(m)?,
            _ => Target::Nothing,
        };
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), BundleError> {
        match &mut self.current {
            Target::Blob(s, _) => s.write_all(bytes).map_err(|e| io(self.opts.store.root())(e)),
            Target::Bytes(b) => {
                b.extend_from_slice(bytes);
                Ok(())
            }
            Target::Binary(t) => match &mut t.file {
                Some(f) => f.write_all(bytes).map_err(io(&t.tmp)),
                None => Ok(()),
            },
            Target::Nothing => Ok(()),
        }
    }

    fn end(&mut self, m: &Member) -> Result<(), BundleError> {
        match std::mem::replace(&mut self.current, Target::Nothing) {
            Target::Blob(s, d) => {
                self.staged.push(s.finish(Some(&d))?);
                self.staging.insert(d);
            }
            Target::Bytes(b) => {
                self.files.insert(m.path.clone(), b);
            }
            Target::Binary(mut t) => {
                if let Some(f) = t.file.take() {
                    f.sync_all().map_err(io(&t.tmp))?;
                }
                self.binaries.push(t);
            }
            Target::Nothing => {}
        }
        Ok(())
    }
}

/// Verifies the bundle at `bundle` with `key` and installs it.
pub fn install(bundle: &Path, key: &TrustedKey, opts: &InstallOptions<'_>) -> Result<Installed, BundleError> {
    let file = File::open(bundle).map_err(io(bundle))?;
    let input = std::io::BufReader::with_capacity(1 << 20, file);
    let mut stager = Stager {
        opts,
        current: Target::Nothing,
        staged: Vec::new(),
        staging: std::collections::BTreeSet::new(),
        present: 0,
        files: BTreeMap::new(),
        binaries: Vec::new(),
    };
    let verified = read::read(bundle, input, key, &mut stager)?;
    let mut done = Installed { present: stager.present, ..Installed::default() };
    for s in std::mem::take(&mut stager.staged) {
        s.publish()?;
        done.added += 1;
    }
    for image in &verified.index.images {
        record_image(opts.store, image)?;
        done.images.push(image.record.reference());
    }
    done.lockfiles = write_files(&verified.index, &stager.files, &opts.lockfile_dir, opts.store)?;
    for mut t in std::mem::take(&mut stager.binaries) {
        fs::rename(&t.tmp, &t.dest).map_err(io(&t.dest))?;
        t.tmp = PathBuf::new();
        done.binaries.push(t.dest.clone());
    }
    for target in &opts.load {
        for image in &verified.index.images {
            load(opts.store, &image.record, target)?;
            done.loaded.push((image.record.reference(), target.name().to_owned()));
        }
    }
    Ok(done)
}

/// Records an image whose blobs are now in the store, after checking that the
/// record and the manifest agree.
fn record_image(store: &Store, image: &BundledImage) -> Result<(), BundleError> {
    let rec = &image.record;
    let img = images::image(store, rec)?;
    let layers: Vec<String> = img.layers().iter().map(|l| l.digest.to_string()).collect();
    if layers != rec.layers || img.config_digest().to_string() != rec.config {
        return Err(BundleError::Input {
            what: format!("image {}", rec.reference()),
            message: "its record in the index does not match its manifest".into(),
        });
    }
    images::record(store, rec)?;
    Ok(())
}

/// Writes the lockfiles and SBOMs into `dir`; registers each lockfile as a gc root.
fn write_files(
    index: &Index,
    files: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
    store: &Store,
) -> Result<Vec<PathBuf>, BundleError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for (path, bytes) in files {
        let name = path.rsplit('/').next().unwrap_or(path);
        let dest = dir.join(name);
        let tmp = dir.join(format!(".{name}.openshell-install-{}", std::process::id()));
        fs::write(&tmp, bytes).map_err(io(&tmp))?;
        fs::rename(&tmp, &dest).map_err(io(&dest))?;
        if index.lockfiles.contains(path) {
            openshell_build::closure::register_root(store, &dest)
                .map_err(|e| BundleError::Input { what: dest.display().to_string(), message: e.to_string() })?;
            written.push(dest);
        }
    }
    Ok(written)
}

/// Loads an image of the store into `target`, through an archive that is both an
/// OCI layout and a `docker load` archive.
fn load(store: &Store, rec: &ImageRecord, target: &LoadTarget) -> Result<(), BundleError> {
    let fail = |message: String| BundleError::Load { image: rec.reference(), target: target.name(), message };
    let image = images::image(store, rec)?;
    let reference = Reference::parse(&rec.reference())?;
    let archive = tempfile::Builder::new()
        .prefix("openshell-load-")
        .suffix(".tar")
        .tempfile_in(store.root().join("tmp"))
        .map_err(io(store.root()))?;
    openshell_oci::write_archive(store, archive.path(), &image, &reference)?;
    let path = archive.path().display().to_string();
    let mut cmd = match target {
        LoadTarget::Docker => {
            let mut c = Command::new("docker");
            c.args(["load", "--input", &path]);
            c
        }
        LoadTarget::Containerd { address, namespace } => {
            let mut c = Command::new("ctr");
            c.arg("--address").arg(address).args(["--namespace", namespace, "images", "import", &path]);
            c
        }
    };
    let out = cmd.output().map_err(|e| fail(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("{cmd:?} failed ({}): {}", out.status, stderr.trim())));
    }
    Ok(())
}
