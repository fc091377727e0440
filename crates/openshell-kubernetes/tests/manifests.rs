//! The node manifests decode strictly into k8s-openapi's types and say what the
//! installer needs; the containerd entry, as a drop-in and as K3s's rendered
//! template, loads in the real containerd; `deploy/` is what the generator makes.

#[path = "support/containerd.rs"]
mod containerd;
#[path = "support/strict.rs"]
mod strict;

use std::path::Path;

use openshell_kubernetes::containerd::{self as entry, BinaryPath, ConfigVersion};
use openshell_kubernetes::deploy::{self, Difference};
use openshell_kubernetes::installer::{self, Flavor};
use openshell_kubernetes::{Config, node};
use serde_json::Value;
use strict::NotStrict;

fn node_documents(config: &Config, flavor: Flavor) -> Vec<Value> {
    strict::documents(&node::yaml(config, flavor).expect("yaml"))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn every_node_manifest_decodes_strictly() {
    for flavor in Flavor::ALL {
        let kinds: Vec<String> = node_documents(&Config::default(), flavor)
            .iter()
            .map(|doc| strict::decode(doc).unwrap_or_else(|e| panic!("{flavor:?}: {e:?}")))
            .collect();
        assert_eq!(
            kinds,
            [
                "v1/Namespace",
                "v1/ServiceAccount",
                "rbac.authorization.k8s.io/v1/ClusterRole",
                "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
                "v1/ConfigMap",
                "apps/v1/DaemonSet",
                "node.k8s.io/v1/RuntimeClass",
            ]
        );
    }
}

#[test]
fn a_misspelled_or_unknown_field_is_not_strict() {
    let docs = node_documents(&Config::default(), Flavor::K3s);
    let mut daemon_set = find(&docs, "DaemonSet").clone();
    let spec = daemon_set["spec"]["template"]["spec"].as_object_mut().expect("pod spec");
    let host_pid = spec.remove("hostPID").expect("hostPID");
    spec.insert("hostPid".into(), host_pid);
    match strict::decode(&daemon_set) {
        Err(NotStrict::Differs { path, .. }) => assert_eq!(path, "spec.template.spec.hostPid"),
        other => panic!("a misspelled hostPID passed: {other:?}"),
    }
    let mut runtime_class = find(&docs, "RuntimeClass").clone();
    runtime_class["scheduling"]["nodeSelectors"] = runtime_class["scheduling"]["nodeSelector"].clone();
    assert!(matches!(strict::decode(&runtime_class), Err(NotStrict::Differs { .. })));
    let mut wrong_type = daemon_set.clone();
    wrong_type["spec"]["template"]["spec"]["hostPID"] = "yes".into();
    assert!(matches!(strict::decode(&wrong_type), Err(NotStrict::Decode { .. })));
    let mut unknown = find(&docs, "ConfigMap").clone();
    unknown["kind"] = "ConfigMapp".into();
    assert!(matches!(strict::decode(&unknown), Err(NotStrict::UnknownKind(_))));
}

#[test]
fn the_runtime_class_schedules_onto_nodes_the_installer_labels() {
    let docs = node_documents(&Config::default(), Flavor::Containerd);
    let runtime_class = find(&docs, "RuntimeClass");
    assert_eq!(runtime_class["metadata"]["name"], "openshell");
    assert_eq!(runtime_class["handler"], entry::HANDLER);
    let (key, value) = installer::NODE_LABEL;
    assert_eq!(runtime_class["scheduling"]["nodeSelector"], serde_json::json!({ key: value }));
    let install = &find(&docs, "DaemonSet")["spec"]["template"]["spec"]["initContainers"][0];
    let label = install["env"].as_array().expect("env").iter().find(|e| e["name"] == "OPENSHELL_NODE_LABEL");
    assert_eq!(label.expect("OPENSHELL_NODE_LABEL")["value"], format!("{key}={value}"));
}

#[test]
fn the_installer_may_patch_nodes_and_nothing_else() {
    let docs = node_documents(&Config::default(), Flavor::K3s);
    let rules = &find(&docs, "ClusterRole")["rules"];
    assert_eq!(rules, &serde_json::json!([{ "apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"] }]));
    let binding = find(&docs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], node::NAME);
    assert_eq!(binding["subjects"][0]["namespace"], "openshell");
}

/// The init container alone is privileged; the one that keeps the pod Ready is not.
#[test]
fn only_the_install_step_is_privileged() {
    let docs = node_documents(&Config::default(), Flavor::K3s);
    let pod = &find(&docs, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["initContainers"][0]["securityContext"], serde_json::json!({ "privileged": true }));
    let hold = &pod["containers"][0]["securityContext"];
    assert_eq!(hold["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(hold["allowPrivilegeEscalation"], false);
    assert_eq!(hold["runAsNonRoot"], true);
    assert_eq!(pod["containers"].as_array().map(Vec::len), Some(1));
}

/// Exactly the host directories the flavor writes to are mounted.
#[test]
fn the_installer_mounts_only_what_it_writes() {
    let binary = Path::new("/opt/openshell/bin/openshell-runtime");
    let config = Config::new("openshell-system", "installer:1", binary).expect("config");
    for (flavor, host_dir) in [(Flavor::K3s, installer::K3S_DIR), (Flavor::Containerd, "/etc/containerd")] {
        let docs = node_documents(&config, flavor);
        let pod = &find(&docs, "DaemonSet")["spec"]["template"]["spec"];
        let host_paths: Vec<&str> =
            pod["volumes"].as_array().expect("volumes").iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
        assert_eq!(host_paths, ["/opt/openshell/bin", host_dir]);
        let mounts: Vec<&str> = pod["initContainers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        assert_eq!(
            mounts,
            [installer::FILES_MOUNT.to_owned(), "/host/opt/openshell/bin".to_owned(), format!("/host{host_dir}")]
        );
        let data = &find(&docs, "ConfigMap")["data"];
        for (name, text) in data.as_object().expect("data").iter().filter(|(name, _)| *name != installer::SCRIPT_NAME) {
            let text = text.as_str().expect("text");
            assert!(text.contains("BinaryName = \"/opt/openshell/bin/openshell-runtime\""), "{name}: {text}");
        }
        assert_eq!(find(&docs, "Namespace")["metadata"]["name"], "openshell-system");
    }
}

/// containerd's default config of each version, less everything: enough for K3s's
/// `base` template in a test.
const BASE: [&str; 2] = [
    "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\"\n",
    "version = 3\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"pause:3.9\"\n",
];

fn render_k3s(version: ConfigVersion, base: &str) -> String {
    let mut template = gtmpl::Template::default();
    template.add_template("base", base).expect("base");
    template.parse(entry::k3s_template(&BinaryPath::default(), version)).expect("parse the K3s template");
    template.render(&gtmpl::Context::empty()).expect("render")
}

#[test]
fn k3s_renders_a_config_containerd_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = render_k3s(ConfigVersion::V2, BASE[0]);
    assert!(rendered.starts_with(BASE[0]));
    let file = dir.path().join("config.toml");
    std::fs::write(&file, &rendered).expect("write");
    let config = containerd::dump(&file);
    containerd::assert_registered(&config, "io.containerd.grpc.v1.cri", entry::DEFAULT_BINARY);
    let cri = containerd::at(&config, &["plugins", "io.containerd.grpc.v1.cri"]);
    assert_eq!(cri["sandbox_image"].as_str(), Some("pause:3.9"), "K3s's base settings are kept");
}

/// containerd 2 (config version 3) is not installable here: the rendered
/// template is checked as TOML, with the entry where containerd 2 reads it.
#[test]
fn k3s_renders_a_version_3_config_with_the_entry() {
    let rendered = render_k3s(ConfigVersion::V3, BASE[1]);
    let config: toml::Table = toml::from_str(&rendered).expect("TOML");
    assert_eq!(config["version"].as_integer(), Some(3));
    containerd::assert_registered(&config, "io.containerd.cri.v1.runtime", entry::DEFAULT_BINARY);
    assert!(config["plugins"].get("io.containerd.grpc.v1.cri").is_none());
}

#[test]
fn the_drop_in_loads_through_the_main_configs_imports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).expect("conf.d");
    let binary = BinaryPath::new(Path::new("/opt/bin/openshell-runtime")).expect("path");
    std::fs::write(conf_d.join("openshell.toml"), entry::drop_in(&binary, ConfigVersion::V2)).expect("drop-in");
    let main = dir.path().join("config.toml");
    std::fs::write(&main, format!("version = 2\nimports = [\"{}/*.toml\"]\n", conf_d.display())).expect("main");
    let loaded = containerd::dump(&main);
    containerd::assert_registered(&loaded, "io.containerd.grpc.v1.cri", binary.as_str());
    // Alone, it makes containerd 1.6 forget its default runtime (which the
    // installer therefore brings along).
    let runtimes = containerd::at(&loaded, &["plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"]);
    assert!(runtimes.get("runc").is_none());
    let v3: toml::Table = toml::from_str(&entry::drop_in(&binary, ConfigVersion::V3)).expect("TOML");
    containerd::assert_registered(&v3, "io.containerd.cri.v1.runtime", binary.as_str());
}

/// The repository's deploy/ is exactly what `openshell kubernetes manifests --out`
/// writes with the default settings.
#[test]
fn deploy_is_what_the_generator_makes() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let files = deploy::files(&Config::default()).expect("files");
    let differences = deploy::differences(&deploy, &files).expect("compare");
    assert!(
        differences.is_empty(),
        "deploy/ differs from the generator: {differences:?}\nregenerate it: cargo run -p openshell-cli -- kubernetes manifests --out deploy"
    );
}

#[test]
fn differences_are_found_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = deploy::files(&Config::default()).expect("files");
    deploy::write(dir.path(), &files).expect("write");
    assert_eq!(deploy::differences(dir.path(), &files).expect("compare"), []);
    std::fs::write(dir.path().join("node/k3s.yaml"), "edited").expect("edit");
    std::fs::remove_file(dir.path().join("node/k3s/config-v3.toml.tmpl")).expect("remove");
    std::fs::write(dir.path().join("helm/openshell-gateway/templates/extra.yaml"), "").expect("add");
    assert_eq!(
        deploy::differences(dir.path(), &files).expect("compare"),
        [
            Difference::Changed("node/k3s.yaml".into()),
            Difference::Missing("node/k3s/config-v3.toml.tmpl".into()),
            Difference::Extra("helm/openshell-gateway/templates/extra.yaml".into()),
        ]
    );
}
