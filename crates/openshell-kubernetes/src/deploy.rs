//! The `deploy/` tree: every file `openshell kubernetes manifests --out DIR`
//! writes, and how a directory differs from it (the check that the repository's
//! `deploy/` is what the generator makes).

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::Config;
use crate::containerd::{self, ConfigVersion};
use crate::error::ManifestError;
use crate::installer::Flavor;
use crate::{chart, node};

/// One file of the tree: its path relative to the output directory (with `/`),
/// and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployFile {
    pub path: String,
    pub text: String,
}

/// How a directory differs from the tree, file by file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing(String),
    Changed(String),
    /// A file the generator does not make.
    Extra(String),
}

/// The tree for `config`: per flavor the node manifests (`node/FLAVOR.yaml`),
/// the K3s templates for a node set up by hand (`node/k3s/`: K3s's own
/// settings and runc come from its `base`), and the gateway's chart under
/// `helm/`. No containerd drop-in stands alone: whether one is safe depends on
/// the node's config, which the installer checks.
pub fn files(config: &Config) -> Result<Vec<DeployFile>, ManifestError> {
    let mut files = Vec::new();
    for flavor in Flavor::ALL {
        files.push(DeployFile { path: format!("node/{}.yaml", flavor.name()), text: node::yaml(config, flavor)? });
    }
    for version in ConfigVersion::ALL {
        files.push(DeployFile {
            path: format!("node/k3s/{}", version.k3s_template_name()),
            text: containerd::k3s_template(config.binary(), version),
        });
    }
    for (path, text) in chart::FILES {
        files.push(DeployFile { path: format!("{}/{path}", chart::DIR), text: (*text).to_owned() });
    }
    Ok(files)
}

/// Writes the files under `dir` (directories made as needed; other files left).
pub fn write(dir: &Path, files: &[DeployFile]) -> Result<(), ManifestError> {
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(ManifestError::io(parent))?;
        }
        std::fs::write(&path, &file.text).map_err(ManifestError::io(&path))?;
    }
    Ok(())
}

/// Every way `dir` differs from `files`, in path order; none when it holds
/// exactly them.
pub fn differences(dir: &Path, files: &[DeployFile]) -> Result<Vec<Difference>, ManifestError> {
    let mut found = BTreeSet::new();
    list(dir, "", &mut found)?;
    let mut differences = Vec::new();
    for file in files {
        if !found.remove(&file.path) {
            differences.push(Difference::Missing(file.path.clone()));
            continue;
        }
        let path = dir.join(&file.path);
        if std::fs::read(&path).map_err(ManifestError::io(&path))? != file.text.as_bytes() {
            differences.push(Difference::Changed(file.path.clone()));
        }
    }
    differences.extend(found.into_iter().map(Difference::Extra));
    Ok(differences)
}

/// The files under `dir`, as paths relative to the walk's start.
fn list(dir: &Path, prefix: &str, found: &mut BTreeSet<String>) -> Result<(), ManifestError> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => return Ok(()),
        other => other.map_err(ManifestError::io(dir))?,
    };
    for entry in entries {
        let entry = entry.map_err(ManifestError::io(dir))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().map_err(ManifestError::io(entry.path()))?.is_dir() {
            list(&entry.path(), &format!("{name}/"), found)?;
        } else {
            found.insert(name);
        }
    }
    Ok(())
}
