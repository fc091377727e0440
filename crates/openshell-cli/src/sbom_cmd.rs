//! `openshell sbom LOCK|IMAGE`: the SBOM of a lockfile, or of a built image (made
//! from the lockfile its build recorded, so both give the same bytes).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use openshell_build::images;
use openshell_build::lockfile::Lockfile;
use openshell_sbom::Format;

use crate::Outcome;
use crate::image_cmd::{ImageCmdError, StoreArgs, write_atomically};
use crate::output::Output;
use crate::policy_cmd::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.5 JSON.
    Cyclonedx,
}

impl From<SbomFormat> for Format {
    fn from(f: SbomFormat) -> Format {
        match f {
            SbomFormat::Spdx => Format::Spdx,
            SbomFormat::Cyclonedx => Format::CycloneDx,
        }
    }
}

#[derive(Debug, Args)]
pub struct SbomArgs {
    /// A lockfile (lockfiles/NAME.lock), or an image built into the store
    /// (`name:tag`, `name`, or a manifest digest prefix).
    pub target: String,
    /// The document's format.
    #[arg(long, value_enum, default_value_t = SbomFormat::Spdx)]
    pub format: SbomFormat,
    /// Write the document to FILE instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The lockfile named by `target`: a file if one exists there, else an image's.
fn lockfile(target: &str, store: &openshell_store::Store) -> Result<Lockfile, CliError> {
    let path = Path::new(target);
    if path.is_file() {
        return Ok(Lockfile::load(path).map_err(ImageCmdError::from)?);
    }
    let rec = images::find(store, target).map_err(ImageCmdError::from)?;
    Ok(images::lockfile(store, &rec).map_err(ImageCmdError::from)?)
}

pub fn sbom(_out: &Output, args: &SbomArgs) -> Result<Outcome, CliError> {
    let store = args.store.open()?;
    let lock = lockfile(&args.target, &store)?;
    let sbom = openshell_sbom::collect(&lock, &store).map_err(ImageCmdError::from)?;
    let bytes = openshell_sbom::render(&sbom, args.format.into()).map_err(ImageCmdError::from)?;
    match &args.out {
        Some(path) => write_atomically(path, &bytes)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .map_err(|source| ImageCmdError::Io { path: PathBuf::from("<stdout>"), source })?;
        }
    }
    Ok(Outcome::Ok)
}
