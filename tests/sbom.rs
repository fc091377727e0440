//! `openshell sbom`: the SBOM of a lockfile made by the test (a .deb built with
//! dpkg-deb, npm tarballs, wheels, a plain file, and one artifact missing from the
//! store) and of the image built from it, checked against the lockfile and by the
//! real validators (`pyspdxtools` of PyPI's spdx-tools, and cyclonedx-python-lib's
//! strict JSON validator); and the default image's SBOM, validated the same way.

mod support;

use std::collections::BTreeSet;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use openshell_build::lockfile::{
    DebArtifact, DefinitionPin, FileArtifact, ImageConfig, Lockfile, NpmArtifact, WheelArtifact,
};
use openshell_store::{Algorithm, Digest, Store};
use serde_json::Value;
use support::debian_archive::{Pkg, build_deb};

/// Where `.ci/run` installs the validators.
const CI_VENV: &str = "/opt/openshell-ci-venv";
const INSTALL_HINT: &str = "install them with `python3 -m venv /opt/openshell-ci-venv && \
    /opt/openshell-ci-venv/bin/pip install spdx-tools 'cyclonedx-python-lib[json-validation]'` \
    (needs the Debian package python3-venv; .ci/run does this)";

fn openshell(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openshell"))
        .args(args)
        .current_dir(dir)
        .env_remove("OPENSHELL_STORE")
        .env("HOME", dir)
        .output()
        .expect("run openshell")
}

fn ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let o = openshell(dir, args);
    assert!(o.status.success(), "openshell {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

const DEP5: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: hello\n\nFiles: *\nCopyright: 2024 A\nLicense: GPL-2+\n\nFiles: lib/*\nCopyright: 2024 B\n\
License: MIT\n\nLicense: GPL-2+\n This program is free software.\n";

fn debs(work: &Path) -> Vec<(Pkg, Vec<u8>)> {
    let pkgs = vec![
        Pkg {
            name: "hello-sbom",
            version: "1.0+b1",
            arch: "amd64",
            fields: "Depends: libsbom (>= 1.0) | libalt, virtual-thing, not-in-lockfile",
            files: vec![
                ("/usr/bin/hello-sbom", b"#!/bin/sh\n".to_vec(), 0o755),
                ("/usr/share/doc/hello-sbom/copyright", DEP5.as_bytes().to_vec(), 0o644),
            ],
        },
        Pkg {
            name: "libsbom",
            version: "1:1.2-1",
            arch: "amd64",
            fields: "Provides: virtual-thing",
            files: vec![("/usr/share/doc/libsbom/copyright", b"Free-form: by someone.\n".to_vec(), 0o644)],
        },
    ];
    pkgs.into_iter()
        .map(|p| {
            let bytes = build_deb(work, &p);
            (p, bytes)
        })
        .collect()
}

fn npm_tgz(work: &Path, name: &str, manifest: &str) -> Vec<u8> {
    let dir = work.join(format!("npm-{}", name.replace('/', "_")));
    std::fs::create_dir_all(dir.join("package")).expect("mkdir");
    std::fs::write(dir.join("package/package.json"), manifest).expect("write");
    std::fs::write(dir.join("package/index.js"), "module.exports = 1;\n").expect("write");
    let tgz = dir.join("pkg.tgz");
    let out = Command::new("tar").arg("-czf").arg(&tgz).arg("-C").arg(&dir).arg("package").output().expect("tar");
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&tgz).expect("read tgz")
}

/// A wheel with `metadata` as its METADATA and a RECORD of sha256 entries.
fn wheel(dist: &str, version: &str, metadata: &str) -> Vec<u8> {
    let di = format!("{dist}-{version}.dist-info");
    let files = [
        (format!("{dist}/__init__.py"), b"x = 1\n".to_vec()),
        (format!("{di}/METADATA"), metadata.as_bytes().to_vec()),
        (format!("{di}/WHEEL"), b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec()),
    ];
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut record = String::new();
    for (path, data) in &files {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        z.start_file(path.as_str(), opts).expect("zip entry");
        z.write_all(data).expect("zip write");
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Digest::sha256(data).bytes());
        record.push_str(&format!("{path},sha256={hash},{}\n", data.len()));
    }
    record.push_str(&format!("{di}/RECORD,,\n"));
    z.start_file(format!("{di}/RECORD"), zip::write::SimpleFileOptions::default()).expect("zip entry");
    z.write_all(record.as_bytes()).expect("zip write");
    z.finish().expect("zip finish").into_inner()
}

fn sri(d: &Digest) -> String {
    format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(d.bytes()))
}

/// The fixture: a store holding every artifact, and a lockfile of them (with
/// `ghost`, a .deb the store does not hold, when `with_missing`).
struct Fixture {
    dir: tempfile::TempDir,
    lock: Lockfile,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store")).expect("store");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("mkdir");
        let mut lock = Lockfile {
            version: 1,
            definition: DefinitionPin { file: "images/sbom.yaml".into(), sha256: Digest::sha256(b"def").to_string() },
            image: ImageConfig {
                name: "openshell/sbom-test".into(),
                tag: "1.0".into(),
                user: "sandbox".into(),
                uid: 1000,
                gid: 1000,
                home: "/sandbox".into(),
                shell: "/bin/sh".into(),
                workdir: "/sandbox".into(),
                env: Default::default(),
                entrypoint: Vec::new(),
                cmd: vec!["/usr/bin/hello-sbom".into()],
                labels: Default::default(),
                npm_prefix: Some("/usr/local".into()),
                site_packages: None,
                exclude: Vec::new(),
                keep: Vec::new(),
            },
            debian: Vec::new(),
            npm: Vec::new(),
            pypi: Vec::new(),
            file: Vec::new(),
        };
        for (p, bytes) in debs(&work) {
            let d = store.insert_bytes(&bytes).expect("insert");
            lock.debian.push(DebArtifact {
                name: p.name.into(),
                version: p.version.into(),
                architecture: p.arch.into(),
                suite: "testing".into(),
                path: format!("pool/main/{}.deb", p.name),
                size: bytes.len() as u64,
                sha256: d.to_string(),
            });
        }
        let npm = [
            (
                "lib/node_modules/@scope/tool",
                "@scope/tool",
                "1.0.0",
                r#"{"name":"@scope/tool","version":"1.0.0","license":"MIT","author":"Jane Doe <jane@example.com> (https://example.com)","dependencies":{"dep":"^2"},"optionalDependencies":{"absent-platform":"1"}}"#,
            ),
            (
                "lib/node_modules/@scope/tool/node_modules/dep",
                "dep",
                "2.0.0",
                r#"{"name":"dep","version":"2.0.0","license":"SEE LICENSE IN LICENSE.txt","author":{"name":"Dep Author"}}"#,
            ),
        ];
        for (install, name, version, manifest) in npm {
            let bytes = npm_tgz(&work, name, manifest);
            let d = store.insert_reader(Algorithm::Sha512, None, &mut bytes.as_slice()).expect("insert");
            lock.npm.push(NpmArtifact {
                install: install.into(),
                name: name.into(),
                version: version.into(),
                path: format!("{name}/-/x-{version}.tgz"),
                integrity: sri(&d),
                size: Some(bytes.len() as u64),
            });
        }
        let wheels = [
            (
                "Greet_Py",
                "1.0",
                "Metadata-Version: 2.4\nName: Greet_Py\nVersion: 1.0\nLicense-Expression: Apache-2.0\nAuthor-email: Ann Example <ann@example.com>\nRequires-Dist: words>=1\nRequires-Dist: pytest; extra == 'test'\nRequires-Dist: colorama; sys_platform == 'win32'\n",
            ),
            ("words", "2.0", "Metadata-Version: 2.1\nName: words\nVersion: 2.0\nLicense: BSD-3-Clause\nAuthor: Bo\n"),
        ];
        for (name, version, metadata) in wheels {
            let bytes = wheel(&name.to_lowercase(), version, metadata);
            let d = store.insert_bytes(&bytes).expect("insert");
            lock.pypi.push(WheelArtifact {
                name: name.into(),
                version: version.into(),
                project: openshell_pypi_name(name),
                filename: format!("{}-{version}-py3-none-any.whl", name.to_lowercase()),
                size: Some(bytes.len() as u64),
                sha256: d.to_string(),
            });
        }
        let motd = b"welcome\n";
        let d = store.insert_bytes(motd).expect("insert");
        lock.file.push(FileArtifact { path: "/etc/motd".into(), mode: "644".into(), size: 8, sha256: d.to_string() });
        Fixture { dir, lock }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store(&self) -> String {
        self.path().join("store").display().to_string()
    }

    /// Writes the lockfile (with the missing `ghost` package when asked).
    fn write_lock(&self, name: &str, with_missing: bool) -> PathBuf {
        let mut lock = self.lock.clone();
        if with_missing {
            lock.debian.push(DebArtifact {
                name: "ghost".into(),
                version: "1".into(),
                architecture: "all".into(),
                suite: "testing".into(),
                path: "pool/main/ghost.deb".into(),
                size: 1,
                sha256: Digest::sha256(b"not in the store").to_string(),
            });
        }
        let path = self.path().join(name);
        std::fs::write(&path, lock.to_text().expect("lockfile text")).expect("write lockfile");
        path
    }
}

fn openshell_pypi_name(name: &str) -> String {
    name.to_lowercase().replace('_', "-")
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the SBOM is JSON")
}

fn strs<'a>(v: impl Iterator<Item = &'a Value>) -> BTreeSet<String> {
    v.filter_map(|x| x.as_str().map(str::to_owned)).collect()
}

/// The validators: `.ci/run`'s venv, else the PATH's.
fn python_tool(name: &str) -> PathBuf {
    let venv = Path::new(CI_VENV).join("bin").join(name);
    if venv.is_file() {
        return venv;
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("`{name}` is not installed: {INSTALL_HINT}"))
}

fn validate_spdx(file: &Path) {
    let out = Command::new(python_tool("pyspdxtools")).arg("-i").arg(file).output().expect("run pyspdxtools");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("ERROR"), "pyspdxtools -i {}:\n{text}", file.display());
}

const CYCLONEDX_CHECK: &str = "import sys\n\
from cyclonedx.schema import SchemaVersion\n\
from cyclonedx.validation.json import JsonStrictValidator\n\
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
if errors is not None:\n    print(errors)\n    sys.exit(1)\n\
print('valid')\n";

fn validate_cyclonedx(file: &Path) {
    let python = python_tool("python3");
    let out = Command::new(&python).args(["-c", CYCLONEDX_CHECK]).arg(file).output().expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("valid"),
        "cyclonedx-python-lib's strict 1.5 validator on {} ({}): {text}\n(if the module is missing: {INSTALL_HINT})",
        file.display(),
        python.display()
    );
}

fn package<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["packages"].as_array().expect("packages").iter().find(|p| p["name"] == name).expect("package listed")
}

fn depends_on(doc: &Value, from: &str) -> BTreeSet<String> {
    let id = &package(doc, from)["SPDXID"];
    let names = |id: &Value| package_name(doc, id);
    doc["relationships"]
        .as_array()
        .expect("relationships")
        .iter()
        .filter(|r| r["relationshipType"] == "DEPENDS_ON" && &r["spdxElementId"] == id)
        .map(|r| names(&r["relatedSpdxElement"]))
        .collect()
}

fn package_name(doc: &Value, id: &Value) -> String {
    doc["packages"].as_array().expect("packages").iter().find(|p| &p["SPDXID"] == id).expect("id")["name"]
        .as_str()
        .expect("name")
        .to_owned()
}

#[test]
fn sbom_of_a_lockfile_lists_every_entry_with_declarations_and_validates() {
    let f = Fixture::new();
    let lock = f.write_lock("sbom.lock", true);
    let lock = lock.to_str().expect("utf-8");
    let store = f.store();
    let spdx = ok(f.path(), &["sbom", lock, "--store", &store]);
    assert_eq!(spdx, ok(f.path(), &["sbom", lock, "--store", &store, "--format", "spdx"]), "same bytes twice");
    let doc = json(&spdx);

    // Counts against the lockfile: the image, 3 .debs, 2 npm packages, 2 wheels; 1 file.
    assert_eq!(doc["packages"].as_array().map(Vec::len), Some(1 + 3 + 2 + 2));
    assert_eq!(doc["files"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["files"][0]["fileName"], "./etc/motd");
    let purls =
        strs(doc["packages"].as_array().expect("packages").iter().map(|p| &p["externalRefs"][0]["referenceLocator"]));
    let expected: BTreeSet<String> = [
        "pkg:deb/debian/hello-sbom@1.0%2Bb1?arch=amd64",
        "pkg:deb/debian/libsbom@1:1.2-1?arch=amd64",
        "pkg:deb/debian/ghost@1?arch=all",
        "pkg:npm/%40scope/tool@1.0.0",
        "pkg:npm/dep@2.0.0",
        "pkg:pypi/greet-py@1.0",
        "pkg:pypi/words@2.0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(purls, expected);

    // Declarations: Maintainer and DEP-5 licences (GPL-2+ is no SPDX id: a LicenseRef).
    let hello = package(&doc, "hello-sbom");
    assert_eq!(hello["supplier"], "Person: Test (test@example.com)");
    assert_eq!(hello["licenseDeclared"], "LicenseRef-GPL-2 AND MIT");
    assert_eq!(package(&doc, "libsbom")["licenseDeclared"], "NOASSERTION", "free-form copyright declares nothing");
    assert_eq!(package(&doc, "@scope/tool")["licenseDeclared"], "MIT");
    assert_eq!(package(&doc, "@scope/tool")["supplier"], "Person: Jane Doe (jane@example.com)");
    assert_eq!(package(&doc, "dep")["supplier"], "Person: Dep Author");
    assert_eq!(package(&doc, "Greet_Py")["licenseDeclared"], "Apache-2.0");
    assert_eq!(package(&doc, "Greet_Py")["supplier"], "Person: Ann Example (ann@example.com)");
    assert_eq!(package(&doc, "words")["licenseDeclared"], "BSD-3-Clause");
    // The missing artifact: listed, nothing asserted.
    let ghost = package(&doc, "ghost");
    assert_eq!(
        (&ghost["supplier"], &ghost["licenseDeclared"]),
        (&Value::from("NOASSERTION"), &Value::from("NOASSERTION"))
    );

    // Dependencies as declared, resolved to lockfile entries (alternatives, Provides,
    // node_modules nesting, markers).
    assert_eq!(depends_on(&doc, "hello-sbom"), BTreeSet::from(["libsbom".to_owned()]));
    assert_eq!(depends_on(&doc, "@scope/tool"), BTreeSet::from(["dep".to_owned()]));
    assert_eq!(depends_on(&doc, "Greet_Py"), BTreeSet::from(["words".to_owned()]));
    assert!(depends_on(&doc, "words").is_empty());

    // No clock: the image's fixed time; the namespace from the lockfile's hash.
    assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    let text = std::fs::read_to_string(lock).expect("read lockfile");
    let hash = Digest::sha256(text.as_bytes()).hex();
    assert!(doc["documentNamespace"].as_str().expect("namespace").ends_with(&hash), "{}", doc["documentNamespace"]);

    let cdx = ok(f.path(), &["sbom", lock, "--store", &store, "--format", "cyclonedx"]);
    let bom = json(&cdx);
    let components = bom["components"].as_array().expect("components");
    assert_eq!(components.len(), 3 + 2 + 2 + 1);
    assert_eq!(components.iter().filter(|c| c["type"] == "file").count(), 1);
    assert_eq!(strs(components.iter().map(|c| &c["purl"])), expected);
    assert_eq!(bom["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
    let tool = components.iter().find(|c| c["name"] == "@scope/tool").expect("tool");
    assert_eq!(tool["licenses"], serde_json::json!([{"expression": "MIT"}]));
    assert_eq!(tool["hashes"].as_array().map(Vec::len), Some(2), "sha256 computed, sha512 pinned: {tool}");

    // The files written with -o equal stdout, and pass the real validators.
    let spdx_file = f.path().join("sbom.spdx.json");
    let cdx_file = f.path().join("sbom.cdx.json");
    ok(f.path(), &["sbom", lock, "--store", &store, "-o", spdx_file.to_str().expect("utf-8")]);
    ok(f.path(), &["sbom", lock, "--store", &store, "--format", "cyclonedx", "-o", cdx_file.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read(&spdx_file).expect("read"), spdx);
    assert_eq!(std::fs::read(&cdx_file).expect("read"), cdx);
    validate_spdx(&spdx_file);
    validate_cyclonedx(&cdx_file);
}

#[test]
fn sbom_of_a_built_image_is_its_lockfiles() {
    let f = Fixture::new();
    let lock = f.write_lock("image.lock", false);
    let lock = lock.to_str().expect("utf-8");
    let store = f.store();
    ok(f.path(), &["--quiet", "build", lock, "--store", &store]);
    for format in ["spdx", "cyclonedx"] {
        let of_lock = ok(f.path(), &["sbom", lock, "--store", &store, "--format", format]);
        let of_image = ok(f.path(), &["sbom", "openshell/sbom-test:1.0", "--store", &store, "--format", format]);
        assert_eq!(of_lock, of_image, "{format}: the image's SBOM is made from the lockfile its build recorded");
    }
    let missing = openshell(f.path(), &["sbom", "openshell/none:1", "--store", &store]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("openshell/none:1"), "{missing:?}");
}

/// The default image's lockfiles (`default.lock`, and `sdk-test.lock` for real
/// wheels) against the store `cargo xtask ci` fills: both formats validate, and
/// the counts are the lockfile's.
#[test]
fn sbom_of_the_default_image_validates() {
    let store = std::env::var("OPENSHELL_TEST_DEFAULT_STORE").unwrap_or_default();
    assert!(
        !store.is_empty() && Path::new(&store).is_dir(),
        "OPENSHELL_TEST_DEFAULT_STORE must name a store holding the default image's closure: \
         `openshell fetch lockfiles/default.lock --store DIR` (cargo xtask ci does this)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tempfile::tempdir().expect("tempdir");
    for name in ["default", "sdk-test"] {
        let lock_path = root.join(format!("lockfiles/{name}.lock"));
        let lock = Lockfile::load(&lock_path).expect("lockfile");
        let lock_arg = lock_path.to_str().expect("utf-8");
        let spdx_file = out.path().join(format!("{name}.spdx.json"));
        let cdx_file = out.path().join(format!("{name}.cdx.json"));
        ok(out.path(), &["sbom", lock_arg, "--store", &store, "-o", spdx_file.to_str().expect("utf-8")]);
        ok(
            out.path(),
            &["sbom", lock_arg, "--store", &store, "--format", "cyclonedx", "-o", cdx_file.to_str().expect("utf-8")],
        );
        let doc = json(&std::fs::read(&spdx_file).expect("read"));
        let packages = lock.debian.len() + lock.npm.len() + lock.pypi.len();
        assert_eq!(doc["packages"].as_array().map(Vec::len), Some(1 + packages), "{name}");
        assert_eq!(doc["files"].as_array().map_or(0, Vec::len), lock.file.len(), "{name}");
        // The store holds every artifact: every Debian package names its maintainer.
        let debs =
            doc["packages"].as_array().expect("packages").iter().filter(|p| {
                p["externalRefs"][0]["referenceLocator"].as_str().is_some_and(|l| l.starts_with("pkg:deb/"))
            });
        for p in debs {
            assert_ne!(p["supplier"], "NOASSERTION", "{name}: {p}");
        }
        let bom = json(&std::fs::read(&cdx_file).expect("read"));
        assert_eq!(bom["components"].as_array().map(Vec::len), Some(packages + lock.file.len()), "{name}");
        validate_spdx(&spdx_file);
        validate_cyclonedx(&cdx_file);
    }
}
