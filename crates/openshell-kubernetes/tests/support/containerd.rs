//! The real containerd's config loader: `containerd --config FILE config dump`
//! (Debian's containerd 1.6, config version 2), read back as TOML.

use std::path::Path;
use std::process::Command;

/// The config containerd makes of `file` (imports merged, defaults filled in).
pub fn dump(file: &Path) -> toml::Table {
    let output = Command::new("containerd")
        .arg("--config")
        .arg(file)
        .args(["config", "dump"])
        .output()
        .unwrap_or_else(|e| panic!("containerd: {e}: install Debian's containerd (.ci/run does)"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "containerd does not load {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("containerd's dump is not TOML ({e}):\n{text}"))
}

/// The table at `path` (keys from the root).
pub fn at<'a>(table: &'a toml::Table, path: &[&str]) -> &'a toml::Value {
    let (first, rest) = path.split_first().expect("a path");
    let mut value = table.get(*first).unwrap_or_else(|| panic!("no {first} in {table:#?}"));
    for key in rest {
        value = value.get(key).unwrap_or_else(|| panic!("no {key} under {path:?}"));
    }
    value
}

/// The runtime handler `openshell` of a config, with every field the entry sets.
pub fn assert_registered(config: &toml::Table, cri_plugin: &str, binary: &str) {
    let runtime = at(config, &["plugins", cri_plugin, "containerd", "runtimes", "openshell"]);
    assert_eq!(runtime["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(runtime["pod_annotations"], toml::Value::Array(vec!["run.openshell.*".into()]));
    assert_eq!(runtime["options"]["BinaryName"].as_str(), Some(binary));
}
