//! `bundle create`: plan every member (the closure of each lockfile, each image as
//! an OCI layout with its SBOM referrer, the SBOMs, the binaries), hash what is not
//! already named by its sha256, write the signed index, then stream the members
//! into a temporary file renamed into place. A member whose content changed
//! between planning and writing fails the bundle.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use openshell_build::build::BuildProgress;
use openshell_build::images::{self, ImageRecord};
use openshell_build::lockfile::Lockfile;
use openshell_oci::compress::Compression;
use openshell_oci::image::OCI_LAYOUT;
use openshell_oci::referrer;
use openshell_oci::{Image, Reference};
use openshell_store::{Algorithm, Digest, Store};
use sha2::{Digest as _, Sha256};

use crate::error::{BundleError, io};
use crate::frame::{self, FrameWriter};
use crate::index::{BundledImage, FORMAT, INDEX_NAME, Index, Kind, Member, SIGNATURE_NAME, store_blob_path};
use crate::key::SecretKey;

/// What to bundle.
pub struct CreateOptions<'a> {
    /// The store the closures and images come from.
    pub store: &'a Store,
    /// Lockfiles: each one's closure goes in, and the image it builds.
    pub lockfiles: Vec<PathBuf>,
    /// Further images of the store, by reference (`name:tag` or digest).
    pub images: Vec<String>,
    /// Binaries by name (`openshell`, `openshell-runtime`) and path.
    pub binaries: Vec<(String, PathBuf)>,
    /// The signing key.
    pub key: &'a SecretKey,
    /// The version recorded as `created_by`.
    pub created_by: String,
    /// Build progress of the lockfiles' images.
    pub progress: &'a dyn BuildProgress,
}

/// A written bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The file's sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Members after the index and signature.
    pub members: usize,
    /// The images, by reference and manifest digest.
    pub images: Vec<(String, String)>,
}

/// Where a member's content comes from.
enum Source {
    /// A store blob, read verified.
    Store(Digest),
    /// A file on disk, hashed again as it is written.
    File(PathBuf),
    /// Bytes made here.
    Bytes(Vec<u8>),
}

struct Planned {
    member: Member,
    source: Source,
}

/// Members by path (sorted), each group in the order it is written.
#[derive(Default)]
struct Plan {
    blobs: BTreeMap<String, Planned>,
    lockfiles: Vec<Planned>,
    layouts: Vec<Planned>,
    sboms: Vec<Planned>,
    binaries: Vec<Planned>,
    images: Vec<BundledImage>,
    names: BTreeMap<String, String>,
}

fn planned(path: String, kind: Kind, source: Source, store: &Store) -> Result<Planned, BundleError> {
    let (size, sha256) = match &source {
        Source::Store(d) if d.algorithm() == Algorithm::Sha256 => (store.size(d)?, d.hex()),
        Source::Store(d) => {
            let mut r = store.open_verified(d)?;
            let hashed = hash(&mut r, &store.blob_path(d))?;
            r.finish()?;
            hashed
        }
        Source::File(p) => hash(&mut File::open(p).map_err(io(p))?, p)?,
        Source::Bytes(b) => (b.len() as u64, frame::hex(&Sha256::digest(b).into())),
    };
    let mode = if kind == Kind::Binary { 0o755 } else { 0o644 };
    Ok(Planned { member: Member { path, kind, size, sha256, mode }, source })
}

fn hash(r: &mut dyn Read, path: &Path) -> Result<(u64, String), BundleError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(path)(e)),
        }
    }
    Ok((size, frame::hex(&hasher.finalize().into())))
}

/// The name a bundle member may carry for an image or lockfile: the characters of
/// `raw` that are safe in a path component, others replaced by `-`.
fn member_name(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect()
}

fn input(what: impl std::fmt::Display, message: impl Into<String>) -> BundleError {
    BundleError::Input { what: what.to_string(), message: message.into() }
}

impl Plan {
    /// Claims `name` for `what`; two inputs may not share one.
    fn claim(&mut self, name: &str, what: &str) -> Result<(), BundleError> {
        match self.names.insert(name.to_owned(), what.to_owned()) {
            Some(other) => Err(input(what, format!("its bundle name `{name}` is taken by {other}; rename one"))),
            None => Ok(()),
        }
    }

    fn blob(&mut self, store: &Store, d: &Digest) -> Result<(), BundleError> {
        let path = store_blob_path(d);
        if let std::collections::btree_map::Entry::Vacant(slot) = self.blobs.entry(path.clone()) {
            slot.insert(planned(path, Kind::StoreBlob, Source::Store(d.clone()), store)?);
        }
        Ok(())
    }

    fn lockfile(&mut self, store: &Store, path: &Path, progress: &dyn BuildProgress) -> Result<(), BundleError> {
        let shown = path.display().to_string();
        let lock = Lockfile::load(path).map_err(|e| input(&shown, e.to_string()))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = member_name(stem.strip_suffix(".lock").unwrap_or(&stem));
        self.claim(&name, &shown)?;
        let digests = lock.digests().map_err(|e| input(&shown, e.to_string()))?;
        let missing = digests.iter().filter(|d| !store.contains(d)).count();
        if missing > 0 {
            let msg =
                format!("{missing} of its {} blobs are not in the store; run `openshell fetch {shown}`", digests.len());
            return Err(input(&shown, msg));
        }
        for d in &digests {
            self.blob(store, d)?;
        }
        let text = std::fs::read(path).map_err(io(path))?;
        let lock_member = format!("lockfiles/{name}.lock");
        self.lockfiles.push(planned(lock_member, Kind::Lockfile, Source::Bytes(text), store)?);
        let built = openshell_build::build::build(&lock, &shown, store, Compression::Gzip, progress)
            .map_err(|e| BundleError::Build { lockfile: shown.clone(), source: Box::new(e) })?;
        let record = images::register(store, &built)?;
        self.image(store, &name, record, built.image, Some(&lock))
    }

    fn stored_image(&mut self, store: &Store, reference: &str) -> Result<(), BundleError> {
        let record = images::find(store, reference)?;
        let name = member_name(&format!("{}-{}", record.name.rsplit('/').next().unwrap_or(&record.name), record.tag));
        self.claim(&name, &format!("image {}", record.reference()))?;
        let image = images::image(store, &record)?;
        let lock = match record.lockfile {
            Some(_) => Some(images::lockfile(store, &record)?),
            None => None,
        };
        self.image(store, &name, record, image, lock.as_ref())
    }

    /// The image's OCI layout under `images/NAME/` (the layout `build -o` writes,
    /// SBOM referrer included), its SBOM, and its recorded lockfile text.
    fn image(
        &mut self,
        store: &Store,
        name: &str,
        record: ImageRecord,
        image: Image,
        lock: Option<&Lockfile>,
    ) -> Result<(), BundleError> {
        let layout = format!("images/{name}");
        let reference = Reference::parse(&record.reference())?;
        let mut index = image.index_bytes(&reference)?;
        let mut blobs: BTreeMap<Digest, Source> = BTreeMap::new();
        blobs.insert(image.manifest_digest().clone(), Source::Bytes(image.manifest_bytes().to_vec()));
        blobs.insert(image.config_digest().clone(), Source::Bytes(image.config_bytes().to_vec()));
        for l in image.layers() {
            blobs.insert(l.digest.clone(), Source::Store(l.digest.clone()));
        }
        let mut sbom = None;
        if let Some(lock) = lock {
            let r = openshell_sbom::referrer(lock, store, &image)?;
            let document = r.document().to_vec();
            index = referrer::index_with(&index, &r, Path::new(&format!("{layout}/index.json")))?;
            for (d, bytes) in r.blobs() {
                blobs.insert(d, Source::Bytes(bytes.to_vec()));
            }
            let path = format!("sbom/{name}.spdx.json");
            self.sboms.push(planned(path.clone(), Kind::Sbom, Source::Bytes(document), store)?);
            sbom = Some(path);
        }
        for d in record.lockfile.iter().filter_map(|d| d.parse::<Digest>().ok()) {
            self.blob(store, &d)?;
        }
        let files = [("oci-layout", Source::Bytes(OCI_LAYOUT.to_vec())), ("index.json", Source::Bytes(index))];
        for (file, source) in files {
            self.layouts.push(planned(format!("{layout}/{file}"), Kind::Image, source, store)?);
        }
        for (d, source) in blobs {
            self.layouts.push(planned(format!("{layout}/blobs/sha256/{}", d.hex()), Kind::Image, source, store)?);
        }
        self.images.push(BundledImage { layout, record, sbom });
        Ok(())
    }

    fn into_members(self) -> (Vec<BundledImage>, Vec<Planned>) {
        let members = self
            .blobs
            .into_values()
            .chain(self.lockfiles)
            .chain(self.layouts)
            .chain(self.sboms)
            .chain(self.binaries)
            .collect();
        (self.images, members)
    }
}

/// Writes the bundle of `opts` to `output`.
pub fn create(opts: &CreateOptions<'_>, output: &Path) -> Result<Created, BundleError> {
    if opts.lockfiles.is_empty() && opts.images.is_empty() {
        return Err(input("bundle create", "nothing to bundle: give lockfiles, or images with --image"));
    }
    let mut plan = Plan::default();
    for lock in &opts.lockfiles {
        plan.lockfile(opts.store, lock, opts.progress)?;
    }
    for reference in &opts.images {
        plan.stored_image(opts.store, reference)?;
    }
    for (name, path) in &opts.binaries {
        let p = planned(format!("bin/{name}"), Kind::Binary, Source::File(path.clone()), opts.store)
            .map_err(|e| input(path.display(), format!("the `{name}` binary to bundle: {e}")))?;
        plan.binaries.push(p);
    }
    let (images, members) = plan.into_members();
    let index = Index {
        format: FORMAT.to_owned(),
        created_by: opts.created_by.clone(),
        lockfiles: members.iter().filter(|p| p.member.kind == Kind::Lockfile).map(|p| p.member.path.clone()).collect(),
        images,
        members: members.iter().map(|p| p.member.clone()).collect(),
    };
    let index_bytes = index.to_bytes().map_err(|e| input(output.display(), e.to_string()))?;
    let created = write(opts, output, &index_bytes, &members)?;
    Ok(Created {
        images: index.images.iter().map(|i| (i.record.reference(), i.record.manifest.clone())).collect(),
        members: members.len(),
        ..created
    })
}

fn write(opts: &CreateOptions<'_>, output: &Path, index: &[u8], members: &[Planned]) -> Result<Created, BundleError> {
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new().prefix(".openshell-bundle-").tempfile_in(dir).map_err(io(dir))?;
    let mut w = FrameWriter::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
    let out_err = io(output);
    let signature = opts.key.sign(index);
    w.member(INDEX_NAME, 0o644, index.len() as u64, &mut &index[..]).map_err(io(output))?;
    w.member(SIGNATURE_NAME, 0o644, signature.len() as u64, &mut &signature[..]).map_err(io(output))?;
    for p in members {
        write_member(opts.store, &mut w, p, output)?;
    }
    let (buf, sha, size) = w.finish().map_err(io(output))?;
    drop(buf);
    tmp.as_file().sync_all().map_err(io(output))?;
    tmp.persist(output).map_err(|e| out_err(e.error))?;
    Ok(Created { sha256: frame::hex(&sha), size, members: 0, images: Vec::new() })
}

fn write_member<W: std::io::Write>(
    store: &Store,
    w: &mut FrameWriter<W>,
    p: &Planned,
    output: &Path,
) -> Result<(), BundleError> {
    let m = &p.member;
    let sha = match &p.source {
        Source::Store(d) => {
            let mut r = store.open_verified(d)?;
            let sha = w.member(&m.path, m.mode, m.size, &mut r).map_err(io(output))?;
            r.finish()?;
            sha
        }
        Source::File(path) => {
            let mut f = File::open(path).map_err(io(path))?;
            w.member(&m.path, m.mode, m.size, &mut f).map_err(io(path))?
        }
        Source::Bytes(b) => w.member(&m.path, m.mode, m.size, &mut &b[..]).map_err(io(output))?,
    };
    if frame::hex(&sha) != m.sha256 {
        return Err(input(&m.path, "its content changed while the bundle was written"));
    }
    Ok(())
}
