//! `openshell key generate` and `openshell bundle create|verify|install` (the
//! work is in `openshell-bundle`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};
use openshell_bundle::{CreateOptions, Discard, InstallOptions, LoadTarget, SecretKey, TrustedKey};
use serde_json::json;

use crate::Outcome;
use crate::image_cmd::{ImageCmdError, StoreArgs};
use crate::output::Output;
use crate::policy_cmd::CliError;

/// The environment variable naming the signing key when `--key` is not given.
pub const KEY_ENV: &str = "OPENSHELL_BUNDLE_KEY";

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new Ed25519 key pair for signing bundles: NAME (private, PKCS#8
    /// PEM, mode 0600) and NAME.pub (public, SPKI PEM). Never overwrites.
    Generate {
        /// The private key's file; the public key goes to NAME.pub.
        #[arg(short = 'o', long = "key", value_name = "NAME")]
        name: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write one signed file for an offline site: each lockfile's store closure and
    /// image (an OCI layout with its SBOM), the SBOMs, and the openshell and
    /// openshell-runtime binaries.
    Create(CreateArgs),
    /// Check a bundle offline in one pass: the index's signature with the trusted
    /// key, then every member. Exit 0 when good, 1 naming the first bad member.
    Verify(VerifyArgs),
    /// Verify a bundle and, only if all of it is good, install it: the closures and
    /// images into the store, the lockfiles and SBOMs, the binaries, and the images
    /// into docker or containerd when asked.
    Install(InstallArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Lockfiles whose closures and images go in.
    #[arg(value_name = "LOCK")]
    pub lockfiles: Vec<PathBuf>,
    /// Another image of the store to include (`name:tag` as `image ls` shows it, or a
    /// manifest digest prefix); repeatable.
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,
    /// The bundle to write.
    #[arg(short = 'o', long = "bundle", value_name = "FILE")]
    pub bundle_out: PathBuf,
    /// The private key to sign with (default: $OPENSHELL_BUNDLE_KEY).
    #[arg(long, value_name = "NAME")]
    pub key: Option<PathBuf>,
    /// The openshell-runtime binary to include (default: the one beside this
    /// openshell).
    #[arg(long, value_name = "PATH")]
    pub runtime_binary: Option<PathBuf>,
    /// Leave the binaries out.
    #[arg(long, conflicts_with = "runtime_binary")]
    pub no_binaries: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// The public key the bundle must be signed with.
    #[arg(long, value_name = "KEY.pub")]
    pub trust: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Load {
    /// `docker load` into the docker daemon.
    Docker,
    /// `ctr images import` into containerd (see --containerd-address/-namespace).
    Containerd,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The bundle.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// The public key the bundle must be signed with.
    #[arg(long, value_name = "KEY.pub")]
    pub trust: PathBuf,
    /// Where the binaries go (default: /usr/local/bin as root, else ~/.local/bin).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Do not install the binaries.
    #[arg(long, conflicts_with = "bin_dir")]
    pub no_binaries: bool,
    /// Where the lockfiles and SBOMs go (default: `lockfiles/` beside the store).
    #[arg(long, value_name = "DIR")]
    pub lockfile_dir: Option<PathBuf>,
    /// Also load the images into docker or containerd (repeatable).
    #[arg(long, value_enum)]
    pub load: Vec<Load>,
    /// containerd's socket, for `--load containerd`.
    #[arg(long, value_name = "SOCKET", default_value = "/run/containerd/containerd.sock")]
    pub containerd_address: PathBuf,
    /// containerd's namespace, for `--load containerd` (the CRI plugin's and K3s's).
    #[arg(long, value_name = "NS", default_value = "k8s.io")]
    pub containerd_namespace: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

struct Steps<'a>(&'a Output);

impl openshell_build::build::BuildProgress for Steps<'_> {
    fn step(&self, message: &str) {
        if !self.0.quiet && !self.0.json() {
            eprintln!("{message}");
        }
    }
}

pub fn key(out: &Output, cmd: &KeyCommand) -> Result<Outcome, CliError> {
    let KeyCommand::Generate { name } = cmd;
    let public = openshell_bundle::key::generate(name).map_err(bundle_err)?;
    report(out, json!({"private": name, "public": public}), || {
        format!("wrote {} (private, mode 0600) and {}", name.display(), public.display())
    });
    Ok(Outcome::Ok)
}

pub fn bundle(out: &Output, cmd: &BundleCommand) -> Result<Outcome, CliError> {
    match cmd {
        BundleCommand::Create(args) => create(out, args),
        BundleCommand::Verify(args) => verify(out, args),
        BundleCommand::Install(args) => install(out, args),
    }
}

fn bundle_err(e: impl Into<openshell_bundle::BundleError>) -> CliError {
    ImageCmdError::from(e.into()).into()
}

fn report(out: &Output, value: serde_json::Value, text: impl FnOnce() -> String) {
    if out.json() { out.print_json(&value) } else { out.info(&text()) }
}

fn binaries(args: &CreateArgs) -> Result<Vec<(String, PathBuf)>, CliError> {
    if args.no_binaries {
        return Ok(Vec::new());
    }
    let exe = std::env::current_exe().map_err(|source| ImageCmdError::Io { path: "openshell".into(), source })?;
    let runtime = match &args.runtime_binary {
        Some(p) => p.clone(),
        None => exe.with_file_name("openshell-runtime"),
    };
    if !runtime.is_file() {
        return Err(bundle_err(openshell_bundle::BundleError::Input {
            what: runtime.display().to_string(),
            message: "no openshell-runtime binary here: give --runtime-binary PATH, or --no-binaries".into(),
        }));
    }
    Ok(vec![("openshell".into(), exe), ("openshell-runtime".into(), runtime)])
}

fn signing_key(args: &CreateArgs) -> Result<SecretKey, CliError> {
    let path = match (&args.key, std::env::var_os(KEY_ENV)) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
        _ => {
            return Err(bundle_err(openshell_bundle::BundleError::Input {
                what: "bundle create".into(),
                message: format!(
                    "no signing key: give --key NAME or set {KEY_ENV} (make one with `openshell key generate -o NAME`)"
                ),
            }));
        }
    };
    SecretKey::load(&path).map_err(bundle_err)
}

fn create(out: &Output, args: &CreateArgs) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let key = signing_key(args)?;
    let store = args.store.open()?;
    let opts = CreateOptions {
        store: &store,
        lockfiles: args.lockfiles.clone(),
        images: args.images.clone(),
        binaries: binaries(args)?,
        key: &key,
        created_by: format!("openshell {}", env!("CARGO_PKG_VERSION")),
        progress: &Steps(out),
    };
    let c = openshell_bundle::create(&opts, &args.bundle_out).map_err(bundle_err)?;
    let images: Vec<_> = c.images.iter().map(|(r, m)| json!({"reference": r, "manifest": m})).collect();
    report(
        out,
        json!({"bundle": args.bundle_out, "sha256": c.sha256, "size": c.size, "members": c.members, "images": images,
               "seconds": started.elapsed().as_secs_f64()}),
        || {
            let list: Vec<String> = c.images.iter().map(|(r, m)| format!("{r} ({m})")).collect();
            format!(
                "wrote {} ({} bytes, sha256 {}): {} members, signed with {}; images: {}",
                args.bundle_out.display(),
                c.size,
                c.sha256,
                c.members,
                key.path().display(),
                list.join(", ")
            )
        },
    );
    Ok(Outcome::Ok)
}

fn verify(out: &Output, args: &VerifyArgs) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let key = TrustedKey::load(&args.trust).map_err(bundle_err)?;
    let file =
        std::fs::File::open(&args.bundle).map_err(|source| ImageCmdError::Io { path: args.bundle.clone(), source })?;
    let input = std::io::BufReader::with_capacity(1 << 20, file);
    let v = openshell_bundle::read(&args.bundle, input, &key, &mut Discard).map_err(bundle_err)?;
    let seconds = started.elapsed().as_secs_f64();
    report(
        out,
        json!({"bundle": args.bundle, "good": true, "members": v.index.members.len(), "size": v.size,
               "images": v.index.images.iter().map(|i| i.record.reference()).collect::<Vec<_>>(), "seconds": seconds}),
        || {
            format!(
                "{}: good: signed by {}, {} members, {} bytes checked in {seconds:.2}s",
                args.bundle.display(),
                key.path().display(),
                v.index.members.len(),
                v.size
            )
        },
    );
    Ok(Outcome::Ok)
}

fn default_bin_dir() -> Result<PathBuf, CliError> {
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/usr/local/bin"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(&home).join(".local/bin")),
        None => Err(bundle_err(openshell_bundle::BundleError::Input {
            what: "bundle install".into(),
            message: "HOME is not set: give --bin-dir DIR or --no-binaries".into(),
        })),
    }
}

fn install(out: &Output, args: &InstallArgs) -> Result<Outcome, CliError> {
    let key = TrustedKey::load(&args.trust).map_err(bundle_err)?;
    let store = args.store.open()?;
    let bin_dir = match (&args.bin_dir, args.no_binaries) {
        (_, true) => None,
        (Some(d), false) => Some(d.clone()),
        (None, false) => Some(default_bin_dir()?),
    };
    let lockfile_dir = match &args.lockfile_dir {
        Some(d) => d.clone(),
        None => store.root().parent().unwrap_or(store.root()).join("lockfiles"),
    };
    let load = args
        .load
        .iter()
        .map(|l| match l {
            Load::Docker => LoadTarget::Docker,
            Load::Containerd => LoadTarget::Containerd {
                address: args.containerd_address.clone(),
                namespace: args.containerd_namespace.clone(),
            },
        })
        .collect();
    let opts = InstallOptions { store: &store, lockfile_dir, bin_dir, load };
    let i = openshell_bundle::install(&args.bundle, &key, &opts).map_err(bundle_err)?;
    report(
        out,
        json!({"bundle": args.bundle, "added": i.added, "present": i.present, "images": i.images,
               "lockfiles": i.lockfiles, "binaries": i.binaries,
               "loaded": i.loaded.iter().map(|(img, t)| json!({"image": img, "into": t})).collect::<Vec<_>>()}),
        || {
            let paths = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            format!(
                "installed {}: {} blobs added, {} already in the store; images: {}; lockfiles: {}; binaries: {}{}",
                args.bundle.display(),
                i.added,
                i.present,
                i.images.join(", "),
                paths(&i.lockfiles),
                if i.binaries.is_empty() { "none".into() } else { paths(&i.binaries) },
                i.loaded.iter().map(|(img, t)| format!("; {img} loaded into {t}")).collect::<String>()
            )
        },
    );
    Ok(Outcome::Ok)
}
