//! The gateway's Helm chart, rendered as Helm would with Go's text/template
//! (gtmpl; the chart uses no sprig function) from its values.yaml and variations
//! of it; every object decodes strictly into k8s-openapi's types.

#[path = "support/strict.rs"]
mod strict;

use std::collections::HashMap;

use openshell_kubernetes::chart;
use serde_json::{Value, json};

const RELEASE: &str = "openshell-gateway";
const NAMESPACE: &str = "openshell";

fn chart_file(path: &str) -> &'static str {
    chart::FILES.iter().find(|(p, _)| *p == path).map(|(_, text)| *text).unwrap_or_else(|| panic!("no {path}"))
}

fn values() -> Value {
    serde_saphyr::from_str(chart_file("values.yaml")).expect("values.yaml")
}

fn to_gtmpl(value: &Value) -> gtmpl::Value {
    match value {
        Value::Null => gtmpl::Value::Nil,
        Value::Bool(b) => gtmpl::Value::from(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => gtmpl::Value::from(u),
            (None, Some(i)) => gtmpl::Value::from(i),
            (None, None) => gtmpl::Value::from(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => gtmpl::Value::from(s.as_str()),
        Value::Array(items) => gtmpl::Value::Array(items.iter().map(to_gtmpl).collect()),
        Value::Object(map) => {
            gtmpl::Value::Object(map.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect::<HashMap<_, _>>())
        }
    }
}

/// Helm's top-level objects, as far as the chart uses them.
fn context(values: &Value) -> gtmpl::Context {
    let top = json!({
        "Values": values,
        "Release": { "Name": RELEASE, "Namespace": NAMESPACE, "Service": "Helm" },
        "Chart": { "Name": "openshell-gateway", "Version": env!("CARGO_PKG_VERSION") },
    });
    gtmpl::Context::from(to_gtmpl(&top))
}

/// Every object the chart's templates make with `values`, decoded strictly.
fn render(values: &Value) -> Vec<Value> {
    let mut objects = Vec::new();
    for (path, text) in chart::FILES.iter().filter(|(path, _)| path.starts_with("templates/")) {
        let mut template = gtmpl::Template::default();
        template.parse(*text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let rendered = template.render(&context(values)).unwrap_or_else(|e| panic!("{path}: {e}"));
        for doc in strict::documents(&rendered) {
            strict::decode(&doc).unwrap_or_else(|e| panic!("{path}: {e:?}\n{rendered}"));
            objects.push(doc);
        }
    }
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

fn gateway_container(objects: &[Value]) -> &Value {
    &find(objects, "Deployment").expect("Deployment")["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_default_values_render_strict_objects() {
    let objects = render(&values());
    let mut kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["Deployment", "PersistentVolumeClaim", "Role", "RoleBinding", "Service", "ServiceAccount"]);
    for object in &objects {
        assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{}", object["kind"]);
    }
    let pvc = find(&objects, "PersistentVolumeClaim").expect("PVC");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert!(pvc["spec"].get("storageClassName").is_none(), "the default StorageClass");
    let pod = &find(&objects, "Deployment").expect("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], pvc["metadata"]["name"]);
    let args = &gateway_container(&objects)["args"];
    assert_eq!(
        args,
        &json!([
            "gateway",
            "run",
            "--listen",
            "0.0.0.0:8443",
            "--tls-dir",
            "/etc/openshell/tls",
            "--store",
            "/var/lib/openshell/store",
            "--driver",
            "kubernetes",
            "--namespace",
            "openshell",
            "--image-registry",
            "registry.example.com/openshell/sandboxes",
            "--runtime-class",
            "openshell"
        ])
    );
    // Sandboxes run as pods: the gateway's own container holds no capability.
    assert_eq!(
        gateway_container(&objects)["securityContext"],
        json!({ "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } })
    );
}

#[test]
fn an_external_database_and_no_volume() {
    let mut values = values();
    values["persistence"]["enabled"] = false.into();
    values["database"]["secretName"] = "gateway-postgres".into();
    let objects = render(&values);
    assert!(find(&objects, "PersistentVolumeClaim").is_none());
    let container = gateway_container(&objects);
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert_eq!(args[args.len() - 2..], ["--database", "$(OPENSHELL_DATABASE)"]);
    let database = container["env"].as_array().expect("env").iter().find(|e| e["name"] == "OPENSHELL_DATABASE");
    assert_eq!(
        database.expect("OPENSHELL_DATABASE")["valueFrom"],
        json!({ "secretKeyRef": { "name": "gateway-postgres", "key": "url" } })
    );
    let pod = &find(&objects, "Deployment").expect("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0], json!({ "name": "state", "emptyDir": {} }));
}

#[test]
fn a_storage_class_is_passed_on() {
    let mut values = values();
    values["persistence"]["storageClassName"] = "fast".into();
    let objects = render(&values);
    assert_eq!(find(&objects, "PersistentVolumeClaim").expect("PVC")["spec"]["storageClassName"], "fast");
}

/// Pods in its namespace, exec, portforward (`sandbox forward`, live policy
/// updates), logs, the inference route's Secret, and Agent Sandbox's Sandbox:
/// nothing else.
#[test]
fn the_gateway_role_is_least_privilege() {
    let objects = render(&values());
    let rules = &find(&objects, "Role").expect("Role")["rules"];
    assert_eq!(
        rules,
        &json!([
            { "apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"] },
            { "apiGroups": [""], "resources": ["pods/exec", "pods/portforward"], "verbs": ["create"] },
            { "apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"] },
            { "apiGroups": [""], "resources": ["secrets"], "verbs": ["create"] },
            { "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["openshell-inference-route"], "verbs": ["get", "update", "delete"] },
            { "apiGroups": ["agents.x-k8s.io"], "resources": ["sandboxes"], "verbs": ["create", "get", "delete"] },
        ])
    );
    let binding = find(&objects, "RoleBinding").expect("RoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["name"], RELEASE);
    let pod = &find(&objects, "Deployment").expect("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert!(find(&objects, "ClusterRole").is_none());
}

#[test]
fn the_chart_is_this_version() {
    let chart: Value = serde_saphyr::from_str(chart_file("Chart.yaml")).expect("Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], chart::DIR.rsplit('/').next().expect("name"));
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(values()["image"]["tag"], env!("CARGO_PKG_VERSION"));
}
