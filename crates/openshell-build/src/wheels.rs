//! PyPI wheels in `openshell build`: each wheel of the lockfile installed as pip
//! would install it into Debian's `/usr/local` scheme (packages in the image's
//! site-packages, console-script launchers in `/usr/local/bin` for
//! `/usr/bin/python3`), checked against its RECORD, without compiling `.pyc` files.
//! Everything lands in the `pypi` layer; directories are created 0755 root-owned.

use std::collections::BTreeMap;

use openshell_oci::{ContentRef, Entry, Origin, Tree};
use openshell_pypi::{InstallOptions, install_wheel};
use openshell_store::{Digest, Store};

use crate::build::{BuildError, BuildProgress};
use crate::lockfile::Lockfile;

/// Where wheels go when the lockfile does not say.
pub const DEFAULT_SITE_PACKAGES: &str = "/usr/local/lib/python3.13/dist-packages";

/// The interpreter in launcher shebangs: Debian's `python3` (a symlink to `python3.13`).
pub const INTERPRETER: &str = "/usr/bin/python3";

/// The layout pip uses on Debian for `/usr/local` (sysconfig's `posix_local` scheme),
/// as paths relative to the image root.
pub fn install_options(site_packages: &str) -> InstallOptions {
    InstallOptions {
        site_packages: site_packages.trim_matches('/').to_owned(),
        scripts: "usr/local/bin".into(),
        headers: "usr/local/include/python3.13".into(),
        data: "usr/local".into(),
        interpreter: INTERPRETER.into(),
        installer: Some("openshell".into()),
    }
}

/// Installs every wheel of `lock` (read from `store`) into `tree`, origin `pypi`.
pub fn install_wheels(
    tree: &mut Tree,
    lock: &Lockfile,
    store: &Store,
    progress: &dyn BuildProgress,
) -> Result<(), BuildError> {
    if lock.pypi.is_empty() {
        return Ok(());
    }
    let origin = Origin::new("pypi");
    let options = install_options(lock.image.site_packages.as_deref().unwrap_or(DEFAULT_SITE_PACKAGES));
    let mut wheels = lock.pypi.clone();
    wheels.sort();
    // Which wheel installed each path, to name both when two wheels disagree about a file.
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for w in &wheels {
        let label = format!("pypi {}=={}", w.name, w.version);
        progress.step(&format!("installing {label}"));
        let digest: Digest =
            w.sha256.parse().map_err(|_| BuildError::Unpack { label: label.clone(), message: "bad sha256".into() })?;
        let bytes = store.read_verified(&digest)?;
        let installed = install_wheel(&bytes, &options).map_err(|source| BuildError::Wheel {
            label: label.clone(),
            filename: w.filename.clone(),
            source: Box::new(source),
        })?;
        for f in installed.files {
            let entry = Entry::file(f.mode, ContentRef::bytes(f.contents), &origin);
            if let Some(other) = owners.get(&f.path)
                && tree.get(&f.path) != Some(&entry)
            {
                return Err(BuildError::Unpack {
                    label,
                    message: format!("installs /{}, which {other} installs with other content or mode", f.path),
                });
            }
            tree.insert(&f.path, entry)?;
            owners.insert(f.path, label.clone());
        }
    }
    Ok(())
}
