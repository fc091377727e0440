//! `openshell verify REF --lock LOCK`: is the image at REF the one LOCK builds?
//!
//! REF is looked at on disk first (an OCI layout directory, or an archive `build`
//! wrote, whose blobs are re-hashed), else parsed as a registry reference naming its
//! host. The lockfile's image is built from the store as `build` does (its missing
//! artifacts fetched first, unless `--offline`); nothing is recorded in the store
//! (no image, no gc root) beyond fetched blobs and the build cache. The comparison
//! is `openshell_build::verify`; a registry image is fetched only when its manifest
//! digest differs from the rebuilt one.

use std::path::{Path, PathBuf};

use clap::Args;
use openshell_build::build::{BuildError, Built, check_closure};
use openshell_build::closure;
use openshell_build::lockfile::Lockfile;
use openshell_build::verify::{self, Verdict, VerifyError};
use openshell_oci::diff::{Difference, EntryDiff, EntryInfo, LayerDiff};
use openshell_oci::{LayoutDir, LayoutError};
use openshell_registry::{Fetch, RegistryError, RemoteImage};
use openshell_store::{Digest, Store};
use serde_json::{Value, json};

use crate::Outcome;
use crate::image_cmd::{Bars, ImageCmdError, SourceArgs, Steps, StoreArgs};
use crate::output::Output;
use crate::policy_cmd::CliError;
use crate::registry_cmd::RegistryArgs;

/// `verify --help`'s account of the exit status.
pub const EXIT_STATUS: &str = "Exit status:
  0  the image at REF is the one LOCK builds (same manifest digest, printed)
  1  it is not: both digests and the first differing layer and file are printed
  2  no answer: REF unreadable, corrupt or not found, registry or authentication
     failure, bad or missing lockfile, artifacts missing with --offline, a failed download";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image to check: an OCI layout directory, an archive `build --archive`
    /// wrote, or a registry reference `host[:port]/repository[:tag|@sha256:HEX]`
    /// (an existing path wins).
    #[arg(value_name = "REF")]
    pub target: String,
    /// The lockfile the image should have been built from.
    #[arg(long = "lock", value_name = "LOCK")]
    pub lockfile: PathBuf,
    /// Do not download missing artifacts: fail, naming them.
    #[arg(long)]
    pub offline: bool,
    /// Downloads at once (for missing artifacts).
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// The layer compression the image was built with (`build --compression`).
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    pub compression: openshell_oci::compress::Compression,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Why verify could not answer (all exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyCmdError {
    #[error("REF `{reference}` is not an existing file or directory, nor a registry reference: {source}")]
    BadRef {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("REF {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: Box<LayoutError>,
    },
    #[error("--offline: {0}")]
    Offline(#[source] Box<BuildError>),
    #[error("REF {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the image to check is.
enum Target {
    /// A layout directory, or an archive unpacked; its blobs re-hashed already.
    Disk(LayoutDir),
    /// A registry reference (checked to name its host).
    Registry(String),
}

/// Every failure is "could not answer" (exit 2): 1 is kept for a mismatch.
pub fn verify(out: &Output, args: &VerifyArgs) -> Result<Outcome, CliError> {
    run(out, args).map_err(|e| CliError::Unanswered(Box::new(e)))
}

fn run(out: &Output, args: &VerifyArgs) -> Result<Outcome, CliError> {
    let lock = Lockfile::load(&args.lockfile).map_err(ImageCmdError::from)?;
    let target = open_target(&args.target)?;
    let store = args.store.open()?;
    match target {
        Target::Disk(layout) => {
            let built = rebuild(out, args, &lock, &store)?;
            let verdict = verify::compare(&store, &built, layout.path()).map_err(VerifyCmdError::from)?;
            Ok(render(out, args, &verdict, None))
        }
        Target::Registry(reference) => {
            // The password is read before the build, which may take a while.
            let opts = args.registry.options()?;
            let built = rebuild(out, args, &lock, &store)?;
            let (verdict, remote) = compare_remote(&store, &built, &reference, &opts)?;
            Ok(render(out, args, &verdict, Some(&remote)))
        }
    }
}

fn open_target(arg: &str) -> Result<Target, VerifyCmdError> {
    let path = Path::new(arg);
    if path.exists() {
        let unreadable = |e| VerifyCmdError::Unreadable { path: path.to_owned(), source: Box::new(e) };
        let layout = LayoutDir::open(path).map_err(unreadable)?;
        openshell_oci::verify_layout(layout.path()).map_err(unreadable)?;
        return Ok(Target::Disk(layout));
    }
    openshell_registry::parse_registry_reference(arg)
        .map_err(|e| VerifyCmdError::BadRef { reference: arg.to_owned(), source: Box::new(e) })?;
    Ok(Target::Registry(arg.to_owned()))
}

/// Builds the lockfile's image from the store, fetching what it lacks first
/// (unless `--offline`). Records nothing: no image, no gc root.
fn rebuild(out: &Output, args: &VerifyArgs, lock: &Lockfile, store: &Store) -> Result<Built, CliError> {
    let name = args.lockfile.display().to_string();
    if let Err(e) = check_closure(lock, &name, store) {
        if args.offline {
            return Err(VerifyCmdError::Offline(Box::new(e)).into());
        }
        let n = lock.artifacts().map_err(ImageCmdError::from)?.len() as u64;
        let bars = Bars::new(out, n);
        let result = closure::fetch(lock, store, &args.sources.flags(), args.jobs, &bars);
        bars.total.finish_and_clear();
        result.map_err(ImageCmdError::from)?;
    }
    Ok(openshell_build::build::build(lock, &name, store, args.compression, &Steps(out)).map_err(ImageCmdError::from)?)
}

/// Resolves the reference; fetches the image into a temporary directory (in the
/// store's `tmp/`) only when its manifest digest is not the rebuilt one.
fn compare_remote(
    store: &Store,
    built: &Built,
    reference: &str,
    opts: &openshell_registry::ConnectOptions,
) -> Result<(Verdict, RemoteImage), VerifyCmdError> {
    let tmp = store.root().join("tmp");
    let work = tempfile::Builder::new()
        .prefix("openshell-verify-ref-")
        .tempdir_in(&tmp)
        .map_err(|source| VerifyCmdError::Io { path: tmp.clone(), source })?;
    let rebuilt = built.image.manifest_digest();
    let remote = openshell_registry::fetch_layout(reference, opts, work.path(), Some(rebuilt))
        .map_err(|e| VerifyCmdError::Registry { reference: reference.to_owned(), source: Box::new(e) })?;
    let verdict = match remote.fetch {
        Fetch::Skipped => Verdict::Match { manifest: rebuilt.clone() },
        Fetch::Written { .. } => verify::compare(store, built, work.path())?,
    };
    Ok((verdict, remote))
}

fn render(out: &Output, args: &VerifyArgs, verdict: &Verdict, remote: Option<&RemoteImage>) -> Outcome {
    if let Some(r) = remote
        && !out.quiet
        && !out.json()
    {
        eprintln!("{} resolved to {}", r.reference, r.resolved);
    }
    let lock = args.lockfile.display().to_string();
    match verdict {
        Verdict::Match { manifest } => {
            if out.json() {
                out.print_json(&json!({
                    "match": true, "reference": args.target, "resolved": remote.map(|r| &r.resolved),
                    "lockfile": lock, "manifest": manifest.to_string(),
                }));
            } else {
                if !out.quiet {
                    eprintln!("match: {} is the image {lock} builds", args.target);
                }
                out.line(&manifest.to_string());
            }
            Outcome::Ok
        }
        Verdict::Mismatch { rebuilt, found, difference } => {
            if out.json() {
                out.print_json(&json!({
                    "match": false, "reference": args.target, "resolved": remote.map(|r| &r.resolved),
                    "lockfile": lock, "rebuilt": rebuilt.to_string(), "found": found.to_string(),
                    "difference": difference_json(difference),
                }));
            } else {
                out.line(&mismatch_text(&args.target, &lock, rebuilt, found, difference));
            }
            Outcome::No
        }
    }
}

/// The first difference, as the two sides (rebuilt, REF) see it.
fn first_layer(d: &openshell_oci::LayoutDiff) -> Option<&Difference> {
    match d {
        openshell_oci::LayoutDiff::Differs { difference, .. } => Some(difference),
        openshell_oci::LayoutDiff::Identical { .. } => None,
    }
}

fn side(info: Option<&EntryInfo>) -> String {
    info.map_or_else(|| "(absent)".to_owned(), ToString::to_string)
}

fn mismatch_text(target: &str, lock: &str, rebuilt: &Digest, found: &Digest, d: &openshell_oci::LayoutDiff) -> String {
    let mut s = format!(
        "mismatch: {target} is not the image {lock} builds\n  rebuilt from {lock}: {rebuilt}\n  {target}: {found}\n"
    );
    match first_layer(d) {
        Some(Difference::Layer { index, a_diff_id, b_diff_id, detail, .. }) => {
            s.push_str(&format!(
                "  first difference: layer {index} (diff_id {a_diff_id} rebuilt, {b_diff_id} in {target})\n"
            ));
            match detail {
                LayerDiff::Entry { path, diff, a, b } => {
                    s.push_str(&format!("  file /{path}: {}\n", entry_difference(diff, target)));
                    s.push_str(&format!("    rebuilt: {}\n", side(a.as_deref())));
                    s.push_str(&format!("    {target}: {}", side(b.as_deref())));
                }
                other => s.push_str(&format!("  {}", layer_detail(other))),
            }
        }
        _ => s.push_str(&format!("  first difference: {d}")),
    }
    s
}

/// How an entry differs, in this command's words (the rebuilt image, then REF).
fn entry_difference(diff: &EntryDiff, target: &str) -> String {
    let there = |next: &Option<String>| next.as_ref().map_or_else(String::new, |n| format!(" (it has /{n} there)"));
    match diff {
        EntryDiff::OnlyInA { next } => format!("only in the rebuilt image, not in {target}{}", there(next)),
        EntryDiff::OnlyInB { next } => format!("only in {target}, not in the rebuilt image{}", there(next)),
        other => format!("{} differs ({other})", other.field()),
    }
}

fn layer_detail(detail: &LayerDiff) -> String {
    match detail {
        LayerDiff::Entry { path, diff, .. } => format!("/{path}: {diff}"),
        LayerDiff::CompressionOnly => "same files, different compressed bytes (the compressor differs)".into(),
        LayerDiff::Trailer => "same files, different end-of-archive bytes".into(),
        LayerDiff::MediaType { a, b } => format!("media type {a} rebuilt, {b} in REF"),
    }
}

fn entry_json(info: Option<&EntryInfo>) -> Value {
    info.map_or(Value::Null, |e| {
        json!({
            "type": e.kind, "mode": format!("{:04o}", e.mode), "owner": format!("{}:{}", e.uid, e.gid),
            "mtime": e.mtime, "size": e.size, "link": e.link, "sha256": e.sha256.to_string(),
        })
    })
}

fn difference_json(d: &openshell_oci::LayoutDiff) -> Value {
    let description = d.to_string();
    match first_layer(d) {
        Some(Difference::Layer { index, a, b, a_diff_id, b_diff_id, detail }) => {
            let mut v = json!({
                "description": description, "layer": index,
                "digest": {"rebuilt": a.to_string(), "found": b.to_string()},
                "diff_id": {"rebuilt": a_diff_id.to_string(), "found": b_diff_id.to_string()},
            });
            if let LayerDiff::Entry { path, diff, a, b } = detail {
                v["path"] = json!(format!("/{path}"));
                v["field"] = json!(diff.field());
                v["detail"] = json!(diff.to_string());
                v["rebuilt"] = entry_json(a.as_deref());
                v["found"] = entry_json(b.as_deref());
            } else {
                v["detail"] = json!(layer_detail(detail));
            }
            v
        }
        _ => json!({ "description": description }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_on_one_side_is_named_by_side() {
        let only_rebuilt = EntryDiff::OnlyInA { next: Some("etc/alternatives/".into()) };
        assert_eq!(
            entry_difference(&only_rebuilt, "oci"),
            "only in the rebuilt image, not in oci (it has /etc/alternatives/ there)"
        );
        let only_ref = EntryDiff::OnlyInB { next: None };
        assert_eq!(entry_difference(&only_ref, "oci"), "only in oci, not in the rebuilt image");
        let mode = EntryDiff::Mode { a: 0o644, b: 0o600 };
        assert_eq!(entry_difference(&mode, "oci"), "mode differs (mode 0644 vs 0600)");
    }
}
