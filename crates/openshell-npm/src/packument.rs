//! The registry's package document ("packument") and the per-version manifests in it.
//!
//! Registries serve two shapes: the full document and the abbreviated one
//! (`application/vnd.npm.install-v1+json`). Both carry everything the resolver needs
//! (`dist-tags`, and per version `dependencies`, `optionalDependencies`,
//! `peerDependencies(Meta)`, `bin`, `os`/`cpu`/`libc`, `engines`, `dist`,
//! `hasInstallScript`, `deprecated`, `bundleDependencies`).
//!
//! Real packuments are loosely typed (ancient versions have `os: "linux"`, `engines` as an
//! array, non-string scripts, `deprecated: false`), so a manifest is read leniently: a field
//! of an unexpected type is treated as absent rather than failing the whole document. Only
//! the top-level shape (an object with `name`, `versions`, `dist-tags`) is strict.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// A packument could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid packument{}: {source}", name.as_deref().map(|n| format!(" for {n}")).unwrap_or_default())]
pub struct PackumentError {
    /// The package the caller expected, if known.
    pub name: Option<String>,
    /// What serde_json said.
    #[source]
    pub source: serde_json::Error,
}

/// The package document: all versions of one package and its dist-tags.
#[derive(Debug, Clone, Deserialize)]
pub struct Packument {
    /// Package name (`@scope/name` for scoped packages).
    pub name: String,
    /// Tag → version (`latest`, `next`, …).
    #[serde(rename = "dist-tags", default)]
    pub dist_tags: BTreeMap<String, String>,
    /// Version string → manifest.
    #[serde(default)]
    pub versions: BTreeMap<String, Manifest>,
}

impl Packument {
    /// Parse a packument from JSON bytes. `expected_name`, when given, is used in the error and
    /// checked against the document's `name`.
    pub fn from_json(bytes: &[u8], expected_name: Option<&str>) -> Result<Packument, PackumentError> {
        let mut p: Packument = serde_json::from_slice(bytes)
            .map_err(|source| PackumentError { name: expected_name.map(str::to_string), source })?;
        if let Some(expected) = expected_name
            && p.name != expected
        {
            return Err(PackumentError {
                name: Some(expected.to_string()),
                source: serde::de::Error::custom(format!("document is for package {:?}", p.name)),
            });
        }
        // A string `bin` is named after the package; fill manifests' names from the document.
        for m in p.versions.values_mut() {
            if m.name.is_empty() {
                m.name = p.name.clone();
            }
            if let Some(raw) = m.bin_raw.take() {
                m.bin = normalize_bin(&m.name, &raw);
            }
        }
        Ok(p)
    }
}

/// How a peer dependency is declared in `peerDependenciesMeta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerMeta {
    /// An optional peer is only used when something else installs it.
    pub optional: bool,
}

/// The `dist` object of a version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dist {
    /// Absolute URL of the `.tgz`.
    pub tarball: Option<String>,
    /// Subresource-integrity string (`sha512-<base64>`, possibly several, space separated).
    pub integrity: Option<String>,
    /// Hex SHA-1 of the tarball (legacy).
    pub shasum: Option<String>,
}

/// One version's manifest, as stored in the packument.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Manifest {
    /// Package name.
    pub name: String,
    /// Version string.
    pub version: String,
    /// `dependencies`.
    pub dependencies: BTreeMap<String, String>,
    /// `optionalDependencies` (npm also lists these in `dependencies`; this list wins).
    pub optional_dependencies: BTreeMap<String, String>,
    /// `peerDependencies`.
    pub peer_dependencies: BTreeMap<String, String>,
    /// `peerDependenciesMeta`.
    pub peer_dependencies_meta: BTreeMap<String, PeerMeta>,
    /// Names listed in `bundleDependencies` (`true` means every dependency).
    pub bundle_dependencies: Vec<String>,
    /// Normalized bins: command name → path inside the package (npm-normalize-package-bin).
    pub bin: BTreeMap<String, String>,
    /// `man` pages (paths inside the package).
    pub man: Vec<String>,
    /// `os` list (`!` negates).
    pub os: Vec<String>,
    /// `cpu` list (`!` negates).
    pub cpu: Vec<String>,
    /// `libc` list (`!` negates).
    pub libc: Vec<String>,
    /// `engines.node`.
    pub engines_node: Option<String>,
    /// `dist`.
    pub dist: Dist,
    /// `hasInstallScript` as the registry computed it.
    pub has_install_script_flag: bool,
    /// `scripts` with string values.
    pub scripts: BTreeMap<String, String>,
    /// `deprecated` message (a deprecated version is avoided when picking).
    pub deprecated: Option<String>,
    #[serde(skip)]
    bin_raw: Option<Value>,
}

/// The lifecycle scripts npm runs on install.
pub const INSTALL_SCRIPTS: [&str; 3] = ["preinstall", "install", "postinstall"];

impl Manifest {
    /// Whether installing runs a lifecycle script: the registry's `hasInstallScript`, or a
    /// `preinstall`/`install`/`postinstall` script.
    pub fn has_install_script(&self) -> bool {
        self.has_install_script_flag || INSTALL_SCRIPTS.iter().any(|s| self.scripts.contains_key(*s))
    }

    /// The install lifecycle scripts present (`preinstall`, `install`, `postinstall`).
    pub fn install_scripts(&self) -> BTreeMap<String, String> {
        self.scripts
            .iter()
            .filter(|(k, _)| INSTALL_SCRIPTS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// npm-install-checks' `checkPlatform`: whether this version may be installed on `platform`.
    pub fn supports_platform(&self, os: &str, cpu: &str, libc: &str) -> bool {
        check_list(os, &self.os) && check_list(cpu, &self.cpu) && (self.libc.is_empty() || check_list(libc, &self.libc))
    }

    /// Parse one manifest leniently from a JSON value.
    fn from_value(v: &Value) -> Manifest {
        let obj = v.as_object();
        let get = |k: &str| obj.and_then(|o| o.get(k));
        let string = |k: &str| get(k).and_then(Value::as_str).map(str::to_string);
        let mut m = Manifest {
            name: string("name").unwrap_or_default(),
            version: string("version").unwrap_or_default(),
            dependencies: string_map(get("dependencies")),
            optional_dependencies: string_map(get("optionalDependencies")),
            peer_dependencies: string_map(get("peerDependencies")),
            ..Manifest::default()
        };
        if let Some(Value::Object(meta)) = get("peerDependenciesMeta") {
            for (name, v) in meta {
                let optional = v.get("optional").and_then(Value::as_bool).unwrap_or(false);
                m.peer_dependencies_meta.insert(name.clone(), PeerMeta { optional });
            }
        }
        let bundle = get("bundleDependencies").or_else(|| get("bundledDependencies"));
        m.bundle_dependencies = match bundle {
            Some(Value::Bool(true)) => m.dependencies.keys().cloned().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        m.bin_raw = get("bin").cloned();
        if !m.name.is_empty()
            && let Some(raw) = &m.bin_raw
        {
            m.bin = normalize_bin(&m.name, raw);
        }
        m.man = string_list(get("man"));
        m.os = string_list(get("os"));
        m.cpu = string_list(get("cpu"));
        m.libc = string_list(get("libc"));
        m.engines_node = get("engines").and_then(|e| e.get("node")).and_then(Value::as_str).map(str::to_string);
        if let Some(Value::Object(dist)) = get("dist") {
            let s = |k: &str| dist.get(k).and_then(Value::as_str).map(str::to_string);
            m.dist = Dist { tarball: s("tarball"), integrity: s("integrity"), shasum: s("shasum") };
        }
        m.has_install_script_flag = get("hasInstallScript").and_then(Value::as_bool).unwrap_or(false);
        m.scripts = string_map(get("scripts"));
        m.deprecated = match get("deprecated") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Bool(true)) => Some(String::new()),
            _ => None,
        };
        m
    }
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Manifest::from_value(&v))
    }
}

/// An object of string values (others are dropped); anything else is empty.
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(o)) => {
            o.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect()
        }
        _ => BTreeMap::new(),
    }
}

/// A string or an array of strings.
fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// npm-install-checks' `checkList`: `any` matches everything; the value must match none of the
/// `!`-negated entries and at least one plain entry if there are any.
pub fn check_list(value: &str, list: &[String]) -> bool {
    if list.len() == 1 && list[0] == "any" {
        return true;
    }
    let mut negated = 0;
    let mut matched = false;
    for entry in list {
        if let Some(test) = entry.strip_prefix('!') {
            negated += 1;
            if value == test {
                return false;
            }
        } else {
            matched = matched || value == entry;
        }
    }
    matched || negated == list.len()
}

/// Node's `path.posix.join('/', p).slice(1)`: a normalized relative path that cannot escape
/// (`..` at the top is dropped), without a trailing slash.
pub(crate) fn join_slash(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

fn basename(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// npm-normalize-package-bin: a string `bin` is named after the package (scope dropped), an
/// array maps each basename to its path, object keys are reduced to a basename (`\` and `:`
/// count as separators) and targets are normalized so they cannot leave the package.
/// Entries with an empty name or target are dropped.
pub fn normalize_bin(package_name: &str, bin: &Value) -> BTreeMap<String, String> {
    let pairs: Vec<(String, Value)> = match bin {
        Value::String(s) if !package_name.is_empty() => vec![(package_name.to_string(), Value::String(s.clone()))],
        Value::Array(a) => {
            let mut m = Map::new();
            for k in a.iter().filter_map(Value::as_str) {
                m.insert(basename(k).to_string(), Value::String(k.to_string()));
            }
            m.into_iter().collect()
        }
        Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => Vec::new(),
    };
    let mut clean = BTreeMap::new();
    for (key, target) in pairs {
        let key = key.replace(['\\', ':'], "/");
        let base = join_slash(basename(&key));
        let Value::String(target) = target else { continue };
        if base.is_empty() {
            continue;
        }
        let target = join_slash(&target.replace('\\', "/"));
        if target.is_empty() {
            continue;
        }
        clean.insert(base, target);
    }
    clean
}

/// Where a tarball lives, as a lockfile records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum TarballLocation {
    /// A path relative to the registry base URL (`@scope/name/-/name-1.0.0.tgz`).
    RegistryRelative(String),
    /// Not under the registry: the absolute URL.
    Absolute(String),
}

impl TarballLocation {
    /// Classify `tarball_url` against `registry` (scheme, host, port and path prefix must match;
    /// a URL with a query or fragment stays absolute). The relative path is the URL's
    /// (percent-encoded) path below the registry's.
    pub fn new(registry: &Url, tarball_url: &str) -> TarballLocation {
        let Ok(t) = Url::parse(tarball_url) else {
            return TarballLocation::Absolute(tarball_url.to_string());
        };
        let mut base_path = registry.path().to_string();
        if !base_path.ends_with('/') {
            base_path.push('/');
        }
        let same_origin = t.scheme() == registry.scheme()
            && t.host_str() == registry.host_str()
            && t.port_or_known_default() == registry.port_or_known_default()
            && t.username() == registry.username()
            && t.password() == registry.password();
        if same_origin
            && t.query().is_none()
            && t.fragment().is_none()
            && let Some(rest) = t.path().strip_prefix(&base_path)
            && !rest.is_empty()
        {
            return TarballLocation::RegistryRelative(rest.to_string());
        }
        TarballLocation::Absolute(tarball_url.to_string())
    }

    /// The absolute URL, joining a relative path onto `registry`.
    pub fn to_url(&self, registry: &Url) -> Result<Url, url::ParseError> {
        match self {
            TarballLocation::Absolute(u) => Url::parse(u),
            TarballLocation::RegistryRelative(p) => {
                let mut base = registry.clone();
                if !base.path().ends_with('/') {
                    let path = format!("{}/", base.path());
                    base.set_path(&path);
                }
                base.join(p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn check_list_follows_npm() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_list("linux", &l(&[])));
        assert!(check_list("linux", &l(&["any"])));
        assert!(check_list("linux", &l(&["linux", "darwin"])));
        assert!(!check_list("win32", &l(&["linux", "darwin"])));
        assert!(check_list("linux", &l(&["!win32"])));
        assert!(!check_list("win32", &l(&["!win32"])));
        assert!(!check_list("linux", &l(&["!win32", "darwin"])));
        assert!(check_list("darwin", &l(&["!win32", "darwin"])));
    }

    #[test]
    fn bins_normalize_like_npm() {
        let b = normalize_bin("@scope/tool", &json!("./bin/cli.js"));
        assert_eq!(b, BTreeMap::from([("tool".into(), "bin/cli.js".into())]));
        let b = normalize_bin(
            "x",
            &json!({"a": "../../etc/passwd", "b/c": "x.js", "": "y", "d": "", "e": 3, "f:g": "g.js"}),
        );
        assert_eq!(
            b,
            BTreeMap::from([
                ("a".into(), "etc/passwd".into()),
                ("c".into(), "x.js".into()),
                ("g".into(), "g.js".into()),
            ])
        );
        let b = normalize_bin("x", &json!(["bin/one", "./two.js"]));
        assert_eq!(b, BTreeMap::from([("one".into(), "bin/one".into()), ("two.js".into(), "two.js".into())]));
        assert!(normalize_bin("x", &json!(true)).is_empty());
    }

    #[test]
    fn lenient_manifest_fields() {
        let p = Packument::from_json(
            br#"{"name":"old","dist-tags":{"latest":"0.1.0"},"versions":{"0.1.0":{
                "version":"0.1.0","os":"linux","engines":["node >=0.4"],"scripts":{"test":1,"install":"make"},
                "deprecated":false,"bin":"cli.js","dependencies":{"a":"1","b":2},
                "dist":{"tarball":"https://registry.example.com/old/-/old-0.1.0.tgz","shasum":"ab"}}}}"#,
            Some("old"),
        )
        .expect("parses");
        let m = &p.versions["0.1.0"];
        assert_eq!(m.name, "old");
        assert_eq!(m.os, vec!["linux"]);
        assert_eq!(m.engines_node, None);
        assert_eq!(m.deprecated, None);
        assert!(m.has_install_script());
        assert_eq!(m.bin, BTreeMap::from([("old".into(), "cli.js".into())]));
        assert_eq!(m.dependencies, BTreeMap::from([("a".into(), "1".into())]));
        assert_eq!(m.dist.shasum.as_deref(), Some("ab"));
    }

    #[test]
    fn packument_name_is_checked() {
        let e = Packument::from_json(br#"{"name":"a","versions":{}}"#, Some("b")).expect_err("mismatch");
        assert!(e.to_string().contains("for b"), "{e}");
        let e = Packument::from_json(b"[]", Some("b")).expect_err("not an object");
        assert!(e.to_string().contains("invalid packument for b"), "{e}");
    }

    #[test]
    fn tarball_locations() {
        let reg = Url::parse("https://registry.example.com/").expect("url");
        assert_eq!(
            TarballLocation::new(&reg, "https://registry.example.com/@s/n/-/n-1.0.0.tgz"),
            TarballLocation::RegistryRelative("@s/n/-/n-1.0.0.tgz".into())
        );
        let reg2 = Url::parse("https://registry.example.com/npm").expect("url");
        assert_eq!(
            TarballLocation::new(&reg2, "https://registry.example.com/npm/a/-/a-1.tgz"),
            TarballLocation::RegistryRelative("a/-/a-1.tgz".into())
        );
        assert_eq!(
            TarballLocation::new(&reg2, "https://registry.example.com/npmx/a/-/a-1.tgz"),
            TarballLocation::Absolute("https://registry.example.com/npmx/a/-/a-1.tgz".into())
        );
        assert!(matches!(
            TarballLocation::new(&reg, "http://registry.example.com/a/-/a-1.tgz"),
            TarballLocation::Absolute(_)
        ));
        assert!(matches!(TarballLocation::new(&reg, "https://cdn.example.test/a-1.tgz"), TarballLocation::Absolute(_)));
        assert!(matches!(
            TarballLocation::new(&reg, "https://registry.example.com/a/-/a-1.tgz?x=1"),
            TarballLocation::Absolute(_)
        ));
        let rel = TarballLocation::RegistryRelative("a/-/a-1.tgz".into());
        assert_eq!(rel.to_url(&reg2).expect("join").as_str(), "https://registry.example.com/npm/a/-/a-1.tgz");
    }
}
