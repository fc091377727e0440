//! The node installer: `install.sh`, the files it installs, and the environment
//! that is its whole configuration. The DaemonSet sets [`Settings::in_pod`]'s
//! environment; tests run the same script with [`Settings::environment`] pointed
//! at a temporary directory.

use crate::containerd::{self, BinaryPath, ConfigVersion};

/// The script (POSIX sh), as the ConfigMap carries it.
pub const SCRIPT: &str = include_str!("install.sh");
/// Its name in the ConfigMap (and in the directory it is mounted on).
pub const SCRIPT_NAME: &str = "install.sh";
/// The label the installer sets on its node once the runtime is registered; the
/// RuntimeClass schedules pods onto nodes that carry it.
pub const NODE_LABEL: (&str, &str) = ("openshell.run/runtime", "installed");

/// Where the installer container mounts the host's directories.
pub const HOST_MOUNT: &str = "/host";
/// How it runs the host's own `containerd` and `systemctl`: in the mount
/// namespace of the host's process 1 (the pod shares the host's pids).
pub const HOST_EXEC: &str = "nsenter --target 1 --mount --";
/// Where the ConfigMap is mounted.
pub const FILES_MOUNT: &str = "/opt/openshell";
/// Where the installer image holds the runtime.
pub const IMAGE_BINARY: &str = "/usr/local/bin/openshell-runtime";
/// containerd's main config on a node.
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// K3s's agent containerd directory, where its templates go.
pub const K3S_DIR: &str = "/var/lib/rancher/k3s/agent/etc/containerd";

/// How a node runs containerd, which decides how the entry is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// K3s (and its agents): templates K3s renders containerd's config from.
    K3s,
    /// containerd run on its own: a drop-in under `conf.d`, imported by the
    /// main config.
    Containerd,
}

impl Flavor {
    pub const ALL: [Flavor; 2] = [Flavor::K3s, Flavor::Containerd];

    pub fn name(self) -> &'static str {
        match self {
            Flavor::K3s => "k3s",
            Flavor::Containerd => "containerd",
        }
    }
}

/// The name, in the ConfigMap, of the drop-in for config `version`.
pub fn drop_in_name(version: ConfigVersion) -> String {
    format!("drop-in-v{}.toml", version.number())
}

/// The name, in the ConfigMap, of the entry for the end of a main config.
pub fn main_config_entry_name(version: ConfigVersion) -> String {
    format!("entry-v{}.toml", version.number())
}

/// The ConfigMap's files for `flavor`: the script, and per config version the
/// drop-in and the main config's entry, or the K3s templates (both: K3s picks
/// the one its containerd reads).
pub fn files(flavor: Flavor, binary: &BinaryPath) -> Vec<(String, String)> {
    let mut files = vec![(SCRIPT_NAME.to_owned(), SCRIPT.to_owned())];
    for version in ConfigVersion::ALL {
        match flavor {
            Flavor::Containerd => {
                files.push((drop_in_name(version), containerd::drop_in(binary, version)));
                files.push((main_config_entry_name(version), containerd::main_config_entry(binary, version)));
            }
            Flavor::K3s => {
                files.push((version.k3s_template_name().to_owned(), containerd::k3s_template(binary, version)));
            }
        }
    }
    files
}

/// Everything the script reads, but the node's name.
#[derive(Debug, Clone)]
pub struct Settings {
    pub flavor: Flavor,
    /// Where the host's directories are mounted ("" = this root).
    pub host: String,
    /// The prefix that runs a command on the host ("" = here).
    pub host_exec: String,
    pub files: String,
    pub source: String,
    pub binary: BinaryPath,
    pub containerd_config: String,
    pub k3s_dir: String,
}

impl Settings {
    /// As the DaemonSet's installer container has them.
    pub fn in_pod(flavor: Flavor, binary: &BinaryPath) -> Settings {
        Settings {
            flavor,
            host: HOST_MOUNT.to_owned(),
            host_exec: HOST_EXEC.to_owned(),
            files: FILES_MOUNT.to_owned(),
            source: IMAGE_BINARY.to_owned(),
            binary: binary.clone(),
            containerd_config: CONTAINERD_CONFIG.to_owned(),
            k3s_dir: K3S_DIR.to_owned(),
        }
    }

    /// The script's environment (its names and values, in a stable order).
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let (key, value) = NODE_LABEL;
        let mut env = vec![
            ("OPENSHELL_FLAVOR", self.flavor.name().to_owned()),
            ("OPENSHELL_HOST", self.host.clone()),
            ("OPENSHELL_HOST_EXEC", self.host_exec.clone()),
            ("OPENSHELL_FILES", self.files.clone()),
            ("OPENSHELL_SOURCE", self.source.clone()),
            ("OPENSHELL_BINARY", self.binary.as_str().to_owned()),
            ("OPENSHELL_NODE_LABEL", format!("{key}={value}")),
        ];
        env.push(match self.flavor {
            Flavor::Containerd => ("OPENSHELL_CONFIG", self.containerd_config.clone()),
            Flavor::K3s => ("OPENSHELL_K3S_DIR", self.k3s_dir.clone()),
        });
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_knows_the_markers_and_every_file() {
        assert!(SCRIPT.contains(&format!("MARKER='{}'", containerd::MARKER)));
        assert!(SCRIPT.contains(&format!("END='{}'", containerd::END_MARKER)));
        for flavor in Flavor::ALL {
            for (name, _) in files(flavor, &BinaryPath::default()).iter().skip(1) {
                let as_named = name.replace(&['2', '3'][..], "$version");
                assert!(
                    SCRIPT.contains(name.as_str()) || SCRIPT.contains(&as_named),
                    "install.sh does not name {name}"
                );
            }
        }
    }

    #[test]
    fn the_script_reads_every_setting() {
        for flavor in Flavor::ALL {
            for (name, _) in Settings::in_pod(flavor, &BinaryPath::default()).environment() {
                assert!(SCRIPT.contains(&format!("${{{name}")), "install.sh does not read {name}");
            }
        }
    }
}
