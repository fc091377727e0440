//! A node's containerd: the runtime entry that makes `openshell` a runtime handler
//! of containerd's CRI plugin, with `openshell-runtime` as the runc v2 shim's
//! binary. [`runtime_entry`] is the one place that text is written; the drop-in
//! for plain containerd, the same entry at the end of a main config, and the K3s
//! templates wrap it.
//!
//! containerd 1.6 and 1.7 read config version 2, where the CRI plugin is
//! `io.containerd.grpc.v1.cri`; containerd 2.x reads version 3, where runtimes
//! belong to `io.containerd.cri.v1.runtime`. Both keep `pod_annotations` with the
//! runtime: only the annotations matching `run.openshell.*` (the policy's
//! `.digest`, `.yaml` and `.file`) reach the runtime from a pod.

use std::path::Path;

use crate::error::ManifestError;

/// The runtime handler's name: a RuntimeClass's `handler`, a runtime table's key.
pub const HANDLER: &str = "openshell";
/// The pod annotations containerd hands the runtime (a shell glob).
pub const POD_ANNOTATIONS: &str = "run.openshell.*";
/// Where the installer puts the runtime on a node, unless told otherwise.
pub const DEFAULT_BINARY: &str = "/usr/local/bin/openshell-runtime";
/// The first comment of every file openshell writes into containerd's or K3s's
/// configuration, and of the entry it adds to a main config: the installer
/// replaces only what carries it.
pub const MARKER: &str = "# Written by `openshell kubernetes manifests`";
/// The line after the entry added to a main config.
pub const END_MARKER: &str = "# End of what `openshell kubernetes manifests` wrote";

/// The containerd config version a file is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    /// containerd 1.6 and 1.7.
    V2,
    /// containerd 2.x.
    V3,
}

impl ConfigVersion {
    pub const ALL: [ConfigVersion; 2] = [ConfigVersion::V2, ConfigVersion::V3];

    /// The number in the file's `version = N`.
    pub fn number(self) -> u8 {
        match self {
            ConfigVersion::V2 => 2,
            ConfigVersion::V3 => 3,
        }
    }

    /// The CRI plugin whose `containerd.runtimes` table holds runtime handlers.
    pub fn cri_plugin(self) -> &'static str {
        match self {
            ConfigVersion::V2 => "io.containerd.grpc.v1.cri",
            ConfigVersion::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    /// The template K3s renders containerd's config from, in its agent's
    /// containerd directory.
    pub fn k3s_template_name(self) -> &'static str {
        match self {
            ConfigVersion::V2 => "config.toml.tmpl",
            ConfigVersion::V3 => "config-v3.toml.tmpl",
        }
    }
}

/// The absolute path of the runtime binary on a node. Only letters, digits and
/// `/ . _ - +`: it is written unquoted-safe into TOML strings, YAML and the
/// installer's shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryPath(String);

impl BinaryPath {
    pub fn new(path: &Path) -> Result<BinaryPath, ManifestError> {
        let invalid = |why| ManifestError::Invalid { what: "runtime path", value: path.display().to_string(), why };
        let text = path.to_str().ok_or_else(|| invalid("not UTF-8"))?;
        if !path.is_absolute() || text.ends_with('/') {
            return Err(invalid("must be the absolute path of a file"));
        }
        if !text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
            return Err(invalid("only letters, digits and / . _ - + are allowed"));
        }
        Ok(BinaryPath(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The directory holding it (the installer mounts it from the host).
    pub fn dir(&self) -> &str {
        match self.0.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((dir, _)) => dir,
        }
    }
}

impl Default for BinaryPath {
    fn default() -> Self {
        BinaryPath(DEFAULT_BINARY.to_owned())
    }
}

/// The runtime handler `openshell` in a containerd config of `version`: the runc
/// v2 shim running `binary`, with the policy annotations passed through.
pub fn runtime_entry(binary: &BinaryPath, version: ConfigVersion) -> String {
    let table = format!("plugins.\"{}\".containerd.runtimes.{HANDLER}", version.cri_plugin());
    format!(
        "[{table}]\n  runtime_type = \"io.containerd.runc.v2\"\n  pod_annotations = [\"{POD_ANNOTATIONS}\"]\n  \
         [{table}.options]\n    BinaryName = \"{}\"\n",
        binary.as_str()
    )
}

/// A file for containerd's `conf.d/` (imported by the main config), holding the
/// entry. containerd 1.x lets an imported file replace the main config's whole
/// section of a plugin, and forgets its default runtimes once a config names
/// one: the installer uses it only where the main config does not configure the
/// CRI plugin, with runc's tables after the entry when they came from defaults.
pub fn drop_in(binary: &BinaryPath, version: ConfigVersion) -> String {
    format!(
        "{MARKER}: the runtime handler `{HANDLER}`.\n# containerd reads it when its main config imports it \
         (imports = [\"/etc/containerd/conf.d/*.toml\"]).\nversion = {}\n\n{}",
        version.number(),
        runtime_entry(binary, version)
    )
}

/// The entry for the end of a main config: where it goes when the main config
/// configures the CRI plugin itself, since containerd 1.x replaces a plugin's
/// whole section with an imported file's. The installer closes it with
/// [`END_MARKER`], after the tables of any runtime containerd would otherwise
/// forget (its default `runc`).
pub fn main_config_entry(binary: &BinaryPath, version: ConfigVersion) -> String {
    format!("\n{MARKER}: the runtime handler `{HANDLER}`.\n{}", runtime_entry(binary, version))
}

/// K3s's template for containerd's config: K3s's own (`base`), then the entry.
pub fn k3s_template(binary: &BinaryPath, version: ConfigVersion) -> String {
    format!(
        "{{{{ template \"base\" . }}}}\n\n{MARKER}: the runtime handler `{HANDLER}`, after K3s's own settings.\n{}",
        runtime_entry(binary, version)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_is_the_one_the_cri_tests_use() {
        let entry = runtime_entry(&BinaryPath::default(), ConfigVersion::V2);
        assert_eq!(
            entry,
            r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.openshell]
  runtime_type = "io.containerd.runc.v2"
  pod_annotations = ["run.openshell.*"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.openshell.options]
    BinaryName = "/usr/local/bin/openshell-runtime"
"#
        );
    }

    #[test]
    fn version_3_puts_it_under_the_runtime_plugin() {
        let entry = runtime_entry(&BinaryPath::default(), ConfigVersion::V3);
        assert!(entry.starts_with("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.openshell]\n"));
        assert!(k3s_template(&BinaryPath::default(), ConfigVersion::V3).starts_with("{{ template \"base\" . }}\n"));
    }

    #[test]
    fn a_binary_path_is_absolute_and_plain() {
        for bad in ["relative/openshell-runtime", "/usr/local/bin/", "/opt/my runtime", "/opt/a\"b", "/opt/$(x)"] {
            assert!(BinaryPath::new(Path::new(bad)).is_err(), "{bad} accepted");
        }
        let path = BinaryPath::new(Path::new("/opt/openshell-1.0+x/bin/openshell-runtime")).expect("valid");
        assert_eq!(path.dir(), "/opt/openshell-1.0+x/bin");
        assert_eq!(BinaryPath::new(Path::new("/openshell-runtime")).expect("valid").dir(), "/");
    }
}
