//! `openshell lock`, `openshell fetch` and `openshell store ...`.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use openshell_build::build::{BuildError, BuildProgress, CheckOutcome};
use openshell_build::closure::{self, ClosureError, Progress, SourceFlags};
use openshell_build::def::{DefError, ImageDef};
use openshell_build::lock::{LockError, LockOptions, LockProgress};
use openshell_build::lockfile::{Lockfile, LockfileError};
use openshell_oci::compress::Compression;
use openshell_registry::RegistryError;
use openshell_store::{Store, StoreError};
use serde_json::json;

use crate::Outcome;
use crate::output::Output;
use crate::policy_cmd::CliError;

/// Errors of the image commands.
#[derive(Debug, thiserror::Error)]
pub enum ImageCmdError {
    #[error(transparent)]
    Def(#[from] DefError),
    #[error(transparent)]
    Lockfile(#[from] LockfileError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Closure(#[from] ClosureError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("not reproducible: the two builds differ ({first} vs {second}):\n{description}")]
    NotReproducible { first: String, second: String, description: String },
    #[error(transparent)]
    Images(#[from] openshell_build::images::ImagesError),
    #[error(transparent)]
    Sbom(#[from] openshell_sbom::SbomError),
    #[error("{}: {message}", path.display())]
    Layout { path: PathBuf, message: String },
    #[error(transparent)]
    Registry(#[from] openshell_registry::RegistryError),
    #[error(transparent)]
    Bundle(Box<openshell_bundle::BundleError>),
    #[error("--password-stdin: {0}")]
    Password(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ImageCmdError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ImageCmdError::Def(_)
            | ImageCmdError::Lockfile(_)
            | ImageCmdError::Password(_)
            | ImageCmdError::Registry(
                RegistryError::Reference { .. }
                | RegistryError::InsecureNotLoopback { .. }
                | RegistryError::CaFile { .. },
            ) => 2,
            ImageCmdError::Bundle(e) => match **e {
                openshell_bundle::BundleError::Input { .. } | openshell_bundle::BundleError::Key(_) => 2,
                _ => 1,
            },
            _ => 1,
        }
    }
}

impl From<openshell_bundle::BundleError> for ImageCmdError {
    fn from(e: openshell_bundle::BundleError) -> ImageCmdError {
        ImageCmdError::Bundle(Box::new(e))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| ImageCmdError::Io { path: path.to_owned(), source }.into()
}

/// Where the store is and which sources to use.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store directory (default: $OPENSHELL_STORE, else ~/.local/share/openshell/store).
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
}

impl StoreArgs {
    pub fn open(&self) -> Result<Store, CliError> {
        let root = match &self.store {
            Some(p) => p.clone(),
            None => Store::default_root().map_err(ImageCmdError::from)?,
        };
        Ok(Store::open(root).map_err(ImageCmdError::from)?)
    }
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Debian archive base URL (default: this machine's apt sources).
    #[arg(long)]
    pub debian_mirror: Option<String>,
    /// npm registry URL (default: npm's configuration).
    #[arg(long)]
    pub npm_registry: Option<String>,
    /// PyPI simple index URL (default: pip's configuration).
    #[arg(long)]
    pub pypi_index: Option<String>,
}

impl SourceArgs {
    pub(crate) fn flags(&self) -> SourceFlags {
        SourceFlags {
            debian_mirror: self.debian_mirror.clone(),
            npm_registry: self.npm_registry.clone(),
            pypi_index: self.pypi_index.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Image definition (images/NAME.yaml).
    pub definition: PathBuf,
    /// Where to write the lockfile (default: lockfiles/NAME.lock).
    #[arg(short = 'o', long = "lockfile", value_name = "LOCK")]
    pub lockfile_out: Option<PathBuf>,
    /// Keyring to verify Debian InRelease files with (repeatable; default: the
    /// machine's Debian archive keyrings).
    #[arg(long = "keyring")]
    pub keyrings: Vec<PathBuf>,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Lockfile (lockfiles/NAME.lock).
    pub lockfile: PathBuf,
    /// Downloads at once.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Lockfile (lockfiles/NAME.lock).
    pub lockfile: PathBuf,
    /// Write an OCI image layout to this directory, with the image's SPDX SBOM
    /// beside it as an OCI referrer (the image's digest does not change).
    #[arg(short = 'o', long = "oci-dir", value_name = "OCI_DIR")]
    pub oci_dir: Option<PathBuf>,
    /// Write one tar that is both an OCI layout and a `docker load` archive.
    #[arg(long, value_name = "FILE.tar")]
    pub archive: Option<PathBuf>,
    /// Build twice in separate temporary stores and directories and compare the bytes.
    #[arg(long)]
    pub check: bool,
    /// Layer compression: `gzip` (every registry and runtime), or `zstd` (smaller,
    /// for registries and runtimes that take `tar+zstd` layers). The layers' tars, and
    /// so the diff_ids, are the same; the image digest differs.
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    pub compression: Compression,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images built or pulled into the store.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show an image's manifest, config and layers.
    Inspect {
        /// `name:tag`, `name` (tag latest) or a manifest digest (prefix).
        reference: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Forget an image; its blobs go at the next `openshell store gc`.
    Rm {
        reference: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-hash every blob of an image in the store, or of an OCI layout directory or
    /// archive on disk.
    Verify {
        /// An image reference, or a path to an OCI layout directory or archive.
        target: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write every blob a lockfile needs into one tar (carry it to an offline machine).
    Export {
        lockfile: PathBuf,
        /// The closure archive to write.
        #[arg(short = 'o', long = "archive", value_name = "FILE")]
        archive_out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add the blobs of a closure archive to the store, verifying each.
    Import {
        archive: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove blobs no fetched lockfile references (and lockfiles given here).
    Gc {
        /// Also keep what these lockfiles reference.
        #[arg(long = "keep")]
        keep: Vec<PathBuf>,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-hash blobs (those of a lockfile, or all); corrupt blobs are removed.
    Verify {
        lockfile: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the store directory.
    Path {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) struct Steps<'a>(pub(crate) &'a Output);

impl BuildProgress for Steps<'_> {
    fn step(&self, message: &str) {
        LockProgress::step(self, message);
    }
}

impl LockProgress for Steps<'_> {
    fn step(&self, message: &str) {
        tracing::info!("{message}");
        if !self.0.quiet && !self.0.json() {
            eprintln!("  {message}");
        }
    }
}

pub fn lock(out: &Output, args: &LockArgs) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let (def, bytes) = ImageDef::load(&args.definition).map_err(ImageCmdError::from)?;
    let store = args.store.open()?;
    let opts = LockOptions {
        sources: args.sources.flags(),
        keyrings: (!args.keyrings.is_empty()).then(|| args.keyrings.clone()),
        apt_root: None,
    };
    let lockfile = openshell_build::lock::lock(&def, &args.definition, &bytes, &store, &opts, &Steps(out))
        .map_err(ImageCmdError::from)?;
    let path = match &args.lockfile_out {
        Some(p) => p.clone(),
        None => {
            let stem = args.definition.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
            PathBuf::from("lockfiles").join(format!("{stem}.lock"))
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let text = lockfile.to_text().map_err(ImageCmdError::from)?;
    write_atomically(&path, text.as_bytes())?;
    closure::register_root(&store, &path).map_err(ImageCmdError::from)?;
    let summary = json!({
        "lockfile": path.display().to_string(),
        "debian": lockfile.debian.len(),
        "npm": lockfile.npm.len(),
        "pypi": lockfile.pypi.len(),
        "files": lockfile.file.len(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    if out.json() {
        out.print_json(&summary);
    } else {
        out.info(&format!(
            "wrote {} ({} Debian packages, {} npm packages, {} wheels, {} files) in {:.1}s",
            path.display(),
            lockfile.debian.len(),
            lockfile.npm.len(),
            lockfile.pypi.len(),
            lockfile.file.len(),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(Outcome::Ok)
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension("lock.tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Progress bars per download, hidden with --quiet or --output json.
pub(crate) struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    pub(crate) total: ProgressBar,
}

impl Bars {
    pub(crate) fn new(out: &Output, artifacts: u64) -> Bars {
        let target = if out.quiet || out.json() { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::new(artifacts));
        total.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} artifacts {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        total.set_prefix("fetch");
        Bars { multi, bars: Mutex::new(HashMap::new()), total }
    }
}

impl Progress for Bars {
    fn start(&self, label: &str, size: Option<u64>) {
        let bar = self.multi.add(ProgressBar::new(size.unwrap_or(0)));
        bar.set_style(
            ProgressStyle::with_template("  {msg:40!} {bytes:>10}/{total_bytes:<10} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_owned());
        if let Ok(mut b) = self.bars.lock() {
            b.insert(label.to_owned(), bar);
        }
    }
    fn advance(&self, label: &str, done: u64, total: Option<u64>) {
        if let Ok(b) = self.bars.lock()
            && let Some(bar) = b.get(label)
        {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(done);
        }
    }
    fn finish(&self, label: &str, _downloaded: u64) {
        if let Ok(mut b) = self.bars.lock()
            && let Some(bar) = b.remove(label)
        {
            bar.finish_and_clear();
        }
        self.total.inc(1);
    }
}

pub fn fetch(out: &Output, args: &FetchArgs) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let lock = Lockfile::load(&args.lockfile).map_err(ImageCmdError::from)?;
    let store = args.store.open()?;
    let n = lock.artifacts().map_err(ImageCmdError::from)?.len() as u64;
    let bars = Bars::new(out, n);
    let result = closure::fetch(&lock, &store, &args.sources.flags(), args.jobs, &bars);
    bars.total.finish_and_clear();
    let report = result.map_err(ImageCmdError::from)?;
    closure::register_root(&store, &args.lockfile).map_err(ImageCmdError::from)?;
    let secs = started.elapsed().as_secs_f64();
    if out.json() {
        out.print_json(&json!({
            "artifacts": report.artifacts,
            "already_present": report.already_present,
            "downloaded": report.downloaded,
            "bytes": report.bytes,
            "seconds": secs,
            "store": store.root().display().to_string(),
        }));
    } else {
        out.info(&format!(
            "{} artifacts: {} downloaded ({} bytes), {} already in {} ({secs:.1}s)",
            report.artifacts,
            report.downloaded,
            report.bytes,
            report.already_present,
            store.root().display()
        ));
    }
    Ok(Outcome::Ok)
}

pub fn store(out: &Output, cmd: &StoreCommand) -> Result<Outcome, CliError> {
    match cmd {
        StoreCommand::Export { lockfile, archive_out: output, store } => {
            let store = store.open()?;
            let lock = Lockfile::load(lockfile).map_err(ImageCmdError::from)?;
            let digests = lock.digests().map_err(ImageCmdError::from)?;
            let missing: Vec<String> = digests.iter().filter(|d| !store.contains(d)).map(ToString::to_string).collect();
            if !missing.is_empty() {
                return Err(ImageCmdError::Store(StoreError::Archive(format!(
                    "{} blob(s) of {} are not in the store (run `openshell fetch {}` first): {}",
                    missing.len(),
                    lockfile.display(),
                    lockfile.display(),
                    missing.join(", ")
                )))
                .into());
            }
            let tmp = output.with_extension("tmp");
            let f = File::create(&tmp).map_err(io(&tmp))?;
            let mut w = BufWriter::new(f);
            store.export(&digests, &mut w).map_err(ImageCmdError::from)?;
            w.flush().map_err(io(&tmp))?;
            std::fs::rename(&tmp, output).map_err(io(output))?;
            report(out, json!({"exported": digests.len(), "archive": output.display().to_string()}), || {
                format!("exported {} blobs to {}", digests.len(), output.display())
            });
        }
        StoreCommand::Import { archive, store } => {
            let store = store.open()?;
            let f = File::open(archive).map_err(io(archive))?;
            let r = store.import(BufReader::new(f)).map_err(ImageCmdError::from)?;
            report(out, json!({"added": r.added.len(), "already_present": r.already_present}), || {
                format!("imported {} blobs ({} already present)", r.added.len(), r.already_present)
            });
        }
        StoreCommand::Gc { keep, dry_run, store } => {
            let store = store.open()?;
            let extra =
                keep.iter().map(|p| Lockfile::load(p)).collect::<Result<Vec<_>, _>>().map_err(ImageCmdError::from)?;
            let (live, roots) = closure::live_set(&store, &extra).map_err(ImageCmdError::from)?;
            if *dry_run {
                let all = store.list().map_err(ImageCmdError::from)?;
                let dead: BTreeSet<_> = all.difference(&live).collect();
                report(out, json!({"would_remove": dead.len(), "roots": roots}), || {
                    format!("would remove {} blobs; {} lockfile roots", dead.len(), roots.len())
                });
            } else {
                let r = store.gc(&live).map_err(ImageCmdError::from)?;
                report(
                    out,
                    json!({"removed": r.removed.len(), "freed_bytes": r.freed_bytes, "kept": r.kept, "roots": roots}),
                    || {
                        format!(
                            "removed {} blobs ({} bytes), kept {}; {} lockfile roots",
                            r.removed.len(),
                            r.freed_bytes,
                            r.kept,
                            roots.len()
                        )
                    },
                );
            }
        }
        StoreCommand::Verify { lockfile, store } => {
            let store = store.open()?;
            let digests = match lockfile {
                Some(l) => Lockfile::load(l).map_err(ImageCmdError::from)?.digests().map_err(ImageCmdError::from)?,
                None => store.list().map_err(ImageCmdError::from)?,
            };
            let mut bad = Vec::new();
            for d in &digests {
                if let Err(e) = store.verify(d) {
                    bad.push(e.to_string());
                }
            }
            if !bad.is_empty() {
                return Err(ImageCmdError::Store(StoreError::Archive(format!(
                    "{} blob(s) failed:\n{}",
                    bad.len(),
                    bad.join("\n")
                )))
                .into());
            }
            report(out, json!({"verified": digests.len()}), || format!("{} blobs verified", digests.len()));
        }
        StoreCommand::Path { store } => {
            let store = store.open()?;
            report(out, json!({"store": store.root().display().to_string()}), || store.root().display().to_string());
        }
    }
    Ok(Outcome::Ok)
}

fn report(out: &Output, json: serde_json::Value, text: impl FnOnce() -> String) {
    if out.json() {
        out.print_json(&json);
    } else {
        out.info(&text());
    }
}

pub fn build(out: &Output, args: &BuildArgs) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let lock = Lockfile::load(&args.lockfile).map_err(ImageCmdError::from)?;
    let store = args.store.open()?;
    let name = args.lockfile.display().to_string();
    if args.check {
        let outcome = openshell_build::build::check(&lock, &name, &store, args.compression, &Steps(out))
            .map_err(ImageCmdError::from)?;
        return match outcome {
            CheckOutcome::Identical { manifest } => {
                report(out, json!({"reproducible": true, "manifest": manifest.to_string()}), || {
                    format!("reproducible: both builds gave {manifest}")
                });
                Ok(Outcome::Ok)
            }
            CheckOutcome::Differs { first, second, description } => Err(ImageCmdError::NotReproducible {
                first: first.to_string(),
                second: second.to_string(),
                description,
            }
            .into()),
        };
    }
    let built = openshell_build::build::build(&lock, &name, &store, args.compression, &Steps(out))
        .map_err(ImageCmdError::from)?;
    let sbom = match args.oci_dir.is_some() || args.archive.is_some() {
        true => Some(openshell_sbom::referrer(&lock, &store, &built.image).map_err(ImageCmdError::from)?),
        false => None,
    };
    let referrers: Vec<_> = sbom.iter().cloned().collect();
    openshell_build::build::write_outputs(&store, &built, args.oci_dir.as_deref(), args.archive.as_deref(), &referrers)
        .map_err(ImageCmdError::from)?;
    let sbom = sbom.map(|r| r.manifest_digest().clone());
    openshell_build::images::register(&store, &built).map_err(ImageCmdError::from)?;
    closure::register_root(&store, &args.lockfile).map_err(ImageCmdError::from)?;
    let manifest = built.image.manifest_digest().to_string();
    if out.json() {
        out.print_json(&json!({
            "manifest": manifest,
            "reference": built.reference.repo_tag(),
            "cached": built.cached,
            "layers": built.layers.iter().map(|l| json!({
                "origin": l.origin,
                "digest": l.digest.to_string(),
                "diff_id": l.diff_id.to_string(),
                "size": l.size,
                "uncompressed_size": l.uncompressed_size,
                "media_type": l.media_type,
            })).collect::<Vec<_>>(),
            "compression": args.compression.name(),
            "oci_dir": args.oci_dir.as_ref().map(|p| p.display().to_string()),
            "sbom": sbom.as_ref().map(ToString::to_string),
            "archive": args.archive.as_ref().map(|p| p.display().to_string()),
            "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        if !out.quiet {
            let size: u64 = built.layers.iter().map(|l| l.size).sum();
            let raw: u64 = built.layers.iter().map(|l| l.uncompressed_size).sum();
            eprintln!(
                "{} {}: {} layers, {size} bytes compressed ({raw} uncompressed){} in {:.2}s",
                if built.cached { "cached" } else { "built" },
                built.reference.repo_tag(),
                built.layers.len(),
                if built.cached { ", no work done" } else { "" },
                started.elapsed().as_secs_f64()
            );
        }
        out.line(&manifest);
    }
    Ok(Outcome::Ok)
}

pub fn image(out: &Output, cmd: &ImageCommand) -> Result<Outcome, CliError> {
    use openshell_build::images;
    match cmd {
        ImageCommand::Ls { store } => {
            let store = store.open()?;
            let all = images::list(&store).map_err(ImageCmdError::from)?;
            if out.json() {
                out.print_json(&all);
            } else {
                out.line(&format!(
                    "{:<40} {:<12} {:<20} {:>12} {:>14}",
                    "NAME", "TAG", "MANIFEST", "SIZE", "UNCOMPRESSED"
                ));
                for r in &all {
                    let short = r.manifest.trim_start_matches("sha256:").get(..12).unwrap_or("");
                    out.line(&format!(
                        "{:<40} {:<12} sha256:{:<13} {:>12} {:>14}",
                        r.name, r.tag, short, r.size, r.uncompressed_size
                    ));
                }
            }
        }
        ImageCommand::Inspect { reference, store } => {
            let store = store.open()?;
            let rec = images::find(&store, reference).map_err(ImageCmdError::from)?;
            let (manifest, config) = images::documents(&store, &rec).map_err(ImageCmdError::from)?;
            let doc = json!({"name": rec.name, "tag": rec.tag, "manifest_digest": rec.manifest, "size": rec.size,
                "uncompressed_size": rec.uncompressed_size, "manifest": manifest, "config": config});
            match serde_json::to_string_pretty(&doc) {
                Ok(text) => out.line(&text),
                Err(e) => tracing::error!("cannot render: {e}"),
            }
        }
        ImageCommand::Rm { reference, store } => {
            let store = store.open()?;
            let rec = images::remove(&store, reference).map_err(ImageCmdError::from)?;
            report(out, json!({"removed": rec.reference(), "manifest": rec.manifest}), || {
                format!("removed {} ({}); run `openshell store gc` to free its blobs", rec.reference(), rec.manifest)
            });
        }
        ImageCommand::Verify { target, store } => {
            let path = Path::new(target);
            if path.exists() {
                // A layout directory, or an archive unpacked into a temporary one.
                let layout_err = |e: openshell_oci::LayoutError| ImageCmdError::Layout {
                    path: path.to_owned(),
                    message: e.to_string(),
                };
                let layout = openshell_oci::LayoutDir::open(path).map_err(layout_err)?;
                let r = openshell_oci::verify_layout(layout.path()).map_err(layout_err)?;
                report(out, json!({"verified": r.blobs, "images": r.images, "bytes": r.bytes}), || {
                    format!(
                        "{}: {} blobs of {} image(s) verified ({} bytes)",
                        path.display(),
                        r.blobs,
                        r.images,
                        r.bytes
                    )
                });
            } else {
                let store = store.open()?;
                let rec = images::find(&store, target).map_err(ImageCmdError::from)?;
                let n = images::verify(&store, &rec).map_err(ImageCmdError::from)?;
                report(out, json!({"verified": n, "image": rec.reference(), "manifest": rec.manifest}), || {
                    format!("{}: {n} blobs verified", rec.reference())
                });
            }
        }
    }
    Ok(Outcome::Ok)
}

/// Builds the image of a lockfile (a no-op when cached) into the store and
/// registers it; returns its `name:tag` reference.
pub fn build_for_sandbox(store: &StoreArgs, lockfile: &Path) -> Result<(PathBuf, String), CliError> {
    let lock = Lockfile::load(lockfile).map_err(ImageCmdError::from)?;
    let store = store.open()?;
    let name = lockfile.display().to_string();
    let built =
        openshell_build::build::build(&lock, &name, &store, Compression::Gzip, &Quiet).map_err(ImageCmdError::from)?;
    openshell_build::build::write_outputs(&store, &built, None, None, &[]).map_err(ImageCmdError::from)?;
    let rec = openshell_build::images::register(&store, &built).map_err(ImageCmdError::from)?;
    closure::register_root(&store, lockfile).map_err(ImageCmdError::from)?;
    Ok((store.root().to_owned(), rec.reference()))
}

/// The store's root directory.
pub fn store_root(store: &StoreArgs) -> Result<PathBuf, CliError> {
    Ok(store.open()?.root().to_owned())
}

struct Quiet;

impl openshell_build::build::BuildProgress for Quiet {
    fn step(&self, _message: &str) {}
}
