//! Resolver tests over an in-memory index.

use std::collections::HashMap;

use openshell_pypi::{
    CoreMetadataRef, DistFile, IndexSource, ProjectPage, ResolveError, ResolvedDist, Target, resolve,
};
use sha2::{Digest, Sha256};
use url::Url;

#[derive(Debug)]
struct Missing(String);
impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not found: {}", self.0)
    }
}
impl std::error::Error for Missing {}

#[derive(Default)]
struct Mem {
    pages: HashMap<String, ProjectPage>,
    metadata: HashMap<String, Vec<u8>>,
    fetched_metadata: Vec<String>,
}

fn hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

impl Mem {
    /// Add `files` of `name` `version`, all sharing one METADATA with `requires`.
    fn add(&mut self, name: &str, version: &str, files: &[&str], requires: &[&str]) -> &mut DistFile {
        self.add_with(name, version, files, requires, None)
    }

    fn add_with(
        &mut self,
        name: &str,
        version: &str,
        files: &[&str],
        requires: &[&str],
        requires_python: Option<&str>,
    ) -> &mut DistFile {
        let mut meta = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        if let Some(rp) = requires_python {
            meta.push_str(&format!("Requires-Python: {rp}\n"));
        }
        for r in requires {
            meta.push_str(&format!("Requires-Dist: {r}\n"));
        }
        let page =
            self.pages.entry(name.to_string()).or_insert_with(|| ProjectPage { name: name.into(), files: vec![] });
        for f in files {
            page.files.push(DistFile {
                filename: f.to_string(),
                url: Url::parse(&format!("https://files.example.test/packages/{f}")).expect("url"),
                sha256: Some(hex(f.as_bytes())),
                requires_python: None,
                yanked: None,
                core_metadata: Some(CoreMetadataRef { sha256: Some(hex(meta.as_bytes())) }),
                size: Some(f.len() as u64),
            });
            self.metadata.insert(f.to_string(), meta.clone().into_bytes());
        }
        page.files.last_mut().expect("a file")
    }
}

impl IndexSource for Mem {
    type Error = Missing;
    fn project(&mut self, name: &str) -> Result<ProjectPage, Missing> {
        self.pages.get(name).cloned().ok_or_else(|| Missing(name.into()))
    }
    fn metadata(&mut self, file: &DistFile) -> Result<Vec<u8>, Missing> {
        self.fetched_metadata.push(file.filename.clone());
        self.metadata.get(&file.filename).cloned().ok_or_else(|| Missing(file.filename.clone()))
    }
}

fn target() -> Target {
    Target::cpython313_manylinux_x86_64()
}

fn summary(r: &[ResolvedDist]) -> Vec<String> {
    r.iter().map(|d| format!("{} {} {}", d.name, d.version, d.filename)).collect()
}

fn world() -> Mem {
    let mut m = Mem::default();
    m.add(
        "app",
        "1.0",
        &["app-1.0-py3-none-any.whl"],
        &[
            "requests>=2.0",
            "tomli>=1.1; python_version < '3.11'",
            "colorama; sys_platform == 'win32'",
            "Rich[Jupyter] (>=13)",
        ],
    );
    m.add("requests", "2.30.0", &["requests-2.30.0-py3-none-any.whl"], &["idna<4,>=2.5"]);
    m.add(
        "requests",
        "2.31.0",
        &["requests-2.31.0-py3-none-any.whl", "requests-2.31.0.tar.gz"],
        &["idna<4,>=2.5", "charset_normalizer<4,>=2", "PySocks!=1.5.7,>=1.5.6; extra == 'socks'"],
    );
    m.add("requests", "3.0.0b1", &["requests-3.0.0b1-py3-none-any.whl"], &[]);
    m.add(
        "rich",
        "13.7.0",
        &["rich-13.7.0-py3-none-any.whl"],
        &["ipywidgets>=7.5.1; extra == 'jupyter'", "markdown-it-py>=2.2.0"],
    );
    m.add("idna", "3.6", &["idna-3.6-py3-none-any.whl"], &[]);
    m.add("idna", "3.7", &["idna-3.7.tar.gz"], &[]);
    m.add(
        "charset-normalizer",
        "3.3.2",
        &[
            "charset_normalizer-3.3.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "charset_normalizer-3.3.2-cp313-cp313-musllinux_1_1_x86_64.whl",
            "charset_normalizer-3.3.2-py3-none-any.whl",
            "charset_normalizer-3.3.2-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "charset_normalizer-3.3.2-cp313-cp313-manylinux_2_39_x86_64.whl",
            "charset_normalizer-3.3.2-cp313-cp313-win_amd64.whl",
        ],
        &[],
    );
    m.add("ipywidgets", "8.0.0", &["ipywidgets-8.0.0-py3-none-any.whl"], &[]);
    m.add("ipywidgets", "8.1.0", &["ipywidgets-8.1.0-py3-none-any.whl"], &[]).requires_python = Some(">=3.14".into());
    m.add("markdown-it-py", "2.2.0", &["markdown_it_py-2.2.0-py3-none-any.whl"], &[]);
    m.add("markdown-it-py", "3.0.0", &["markdown_it_py-3.0.0-py3-none-any.whl"], &[]).yanked = Some("bad".into());
    m
}

#[test]
fn resolves_a_tree_for_the_target() {
    let mut src = world();
    let r = resolve(&mut src, &["app==1.0"], &target()).expect("resolves");
    assert_eq!(
        summary(&r),
        [
            "app 1.0 app-1.0-py3-none-any.whl",
            "charset-normalizer 3.3.2 charset_normalizer-3.3.2-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "idna 3.6 idna-3.6-py3-none-any.whl",
            "ipywidgets 8.0.0 ipywidgets-8.0.0-py3-none-any.whl",
            "markdown-it-py 2.2.0 markdown_it_py-2.2.0-py3-none-any.whl",
            "requests 2.31.0 requests-2.31.0-py3-none-any.whl",
            "rich 13.7.0 rich-13.7.0-py3-none-any.whl",
        ]
    );
    let app = &r[0];
    assert_eq!(app.dependencies, ["requests", "rich"]);
    assert_eq!(app.url, "https://files.example.test/packages/app-1.0-py3-none-any.whl");
    assert_eq!(app.sha256.as_deref(), Some(hex(b"app-1.0-py3-none-any.whl").as_str()));
    assert_eq!(app.size, Some(24));
    assert_eq!(r[1].tag, "cp313-cp313-manylinux_2_17_x86_64");
    assert_eq!(r[6].extras, ["jupyter"]);
    assert_eq!(
        app.index_relative_path(&Url::parse("https://files.example.test/").expect("url")).as_deref(),
        Some("packages/app-1.0-py3-none-any.whl")
    );
    // Deterministic and independent of root order.
    assert_eq!(resolve(&mut world(), &["rich>=13", "app==1.0"], &target()).expect("again"), r);
}

#[test]
fn conflicting_requirements_name_both_chains() {
    let mut m = Mem::default();
    m.add("a", "1.0", &["a-1.0-py3-none-any.whl"], &["c<2"]);
    m.add("b", "1.0", &["b-1.0-py3-none-any.whl"], &["mid"]);
    m.add("mid", "1.0", &["mid-1.0-py3-none-any.whl"], &["c>=2"]);
    m.add("c", "1.0", &["c-1.0-py3-none-any.whl"], &[]);
    m.add("c", "2.0", &["c-2.0-py3-none-any.whl"], &[]);
    let e = resolve(&mut m, &["a==1.0", "b==1.0"], &target()).expect_err("conflict");
    assert_eq!(
        e.to_string(),
        "c: no version satisfies a==1.0 > c<2; b==1.0 > mid==1.0 > c>=2; compatible wheels exist for: 1.0, 2.0"
    );
}

#[test]
fn sdist_only_pins_are_rejected_with_what_exists() {
    let mut m = Mem::default();
    m.add("legacy", "1.0", &["legacy-1.0.tar.gz", "legacy-1.0-cp27-cp27mu-manylinux1_x86_64.whl"], &[]);
    m.add("legacy", "0.9", &["legacy-0.9-py3-none-any.whl"], &[]);
    let e = resolve(&mut m, &["legacy==1.0"], &target()).expect_err("no wheel");
    let msg = e.to_string();
    assert!(matches!(e, ResolveError::NoVersion { .. }));
    assert_eq!(
        msg,
        "legacy: no version satisfies legacy==1.0; compatible wheels exist for: 0.9; 1.0 has no compatible wheel: \
         legacy-1.0.tar.gz (not a wheel), legacy-1.0-cp27-cp27mu-manylinux1_x86_64.whl (incompatible tags)"
    );
}

#[test]
fn choices_are_revised_until_they_agree() {
    // `x` alone would be 2.0 (needing `y`), but `z==1.0` caps it below 2.
    let mut m = Mem::default();
    m.add("x", "1.5", &["x-1.5-py3-none-any.whl"], &[]);
    m.add("x", "2.0", &["x-2.0-py3-none-any.whl"], &["y>=1"]);
    m.add("y", "1.0", &["y-1.0-py3-none-any.whl"], &[]);
    m.add("z", "1.0", &["z-1.0-py3-none-any.whl"], &["w"]);
    m.add("w", "1.0", &["w-1.0-py3-none-any.whl"], &["x<2"]);
    let r = resolve(&mut m, &["x", "z==1.0"], &target()).expect("resolves");
    assert_eq!(
        summary(&r),
        ["w 1.0 w-1.0-py3-none-any.whl", "x 1.5 x-1.5-py3-none-any.whl", "z 1.0 z-1.0-py3-none-any.whl"]
    );
}

#[test]
fn best_tag_then_build_number_wins() {
    let mut m = Mem::default();
    m.add(
        "fast",
        "1.0",
        &[
            "fast-1.0-py3-none-any.whl",
            "fast-1.0-cp38-abi3-manylinux_2_28_x86_64.whl",
            "fast-1.0-cp313-none-manylinux_2_28_x86_64.whl",
            "fast-1.0-1-cp313-abi3-manylinux_2_17_x86_64.whl",
            "fast-1.0-2-cp313-abi3-manylinux_2_17_x86_64.whl",
        ],
        &[],
    );
    let r = resolve(&mut m, &["fast"], &target()).expect("resolves");
    assert_eq!(r[0].filename, "fast-1.0-2-cp313-abi3-manylinux_2_17_x86_64.whl");
    m.pages.get_mut("fast").expect("page").files.retain(|f| !f.filename.contains("cp313-abi3"));
    let r = resolve(&mut m, &["fast"], &target()).expect("resolves");
    assert_eq!(r[0].filename, "fast-1.0-cp313-none-manylinux_2_28_x86_64.whl");
}

#[test]
fn prereleases_requires_python_and_yanks() {
    let mut m = Mem::default();
    m.add("p", "0.9", &["p-0.9-py3-none-any.whl"], &[]);
    m.add("p", "1.0b2", &["p-1.0b2-py3-none-any.whl"], &[]);
    m.add("onlypre", "2.0rc1", &["onlypre-2.0rc1-py3-none-any.whl"], &[]);
    m.add_with("newpy", "2.0", &["newpy-2.0-py3-none-any.whl"], &[], Some(">=3.14"));
    m.add_with("newpy", "1.0", &["newpy-1.0-py3-none-any.whl"], &[], Some(">=3.9"));
    m.add("y", "1.0", &["y-1.0-py3-none-any.whl"], &[]);
    m.add("y", "1.1", &["y-1.1-py3-none-any.whl"], &[]).yanked = Some(String::new());
    let v = |m: &mut Mem, req: &str| resolve(m, &[req], &target()).expect(req)[0].version.clone();
    assert_eq!(v(&mut m, "p"), "0.9");
    assert_eq!(v(&mut m, "p>=1.0b1"), "1.0b2");
    assert_eq!(v(&mut m, "onlypre"), "2.0rc1", "prereleases are used when nothing else matches");
    assert_eq!(v(&mut m, "newpy"), "1.0");
    assert_eq!(v(&mut m, "y"), "1.0");
    let e = resolve(&mut m, &["y==1.1"], &target()).expect_err("yanked");
    assert!(e.to_string().contains("1.1 has no compatible wheel: y-1.1-py3-none-any.whl (yanked)"), "{e}");
    let e = resolve(&mut m, &["newpy==2.0"], &target()).expect_err("python");
    assert!(e.to_string().contains("2.0: Requires-Python >=3.14"), "{e}");
}

#[test]
fn bad_inputs_are_reported() {
    let mut m = Mem::default();
    m.add("a", "1.0", &["a-1.0-py3-none-any.whl"], &["b @ https://example.test/b.whl"]);
    let e = resolve(&mut m, &["a"], &target()).expect_err("url");
    assert_eq!(
        e.to_string(),
        "a==1.0 > b @ https://example.test/b.whl: direct URL requirements are not supported (b @ https://example.test/b.whl)"
    );
    let e = resolve(&mut m, &["a=="], &target()).expect_err("parse");
    assert!(matches!(e, ResolveError::Requirement(_)), "{e}");
    let e = resolve(&mut m, &["nope"], &target()).expect_err("missing");
    assert_eq!(e.to_string(), "nope: fetching the project page of nope: not found: nope");

    let mut m = Mem::default();
    m.add("h", "1.0", &["h-1.0-py3-none-any.whl"], &[]);
    m.metadata
        .insert("h-1.0-py3-none-any.whl".into(), b"Metadata-Version: 2.1\nName: h\nVersion: 1.0\nX: y\n".to_vec());
    let e = resolve(&mut m, &["h"], &target()).expect_err("hash");
    assert!(matches!(e, ResolveError::MetadataHash { .. }), "{e}");
    m.pages.get_mut("h").expect("page").files[0].core_metadata = None;
    m.metadata.insert("h-1.0-py3-none-any.whl".into(), b"Metadata-Version: 2.1\nName: other\nVersion: 1.0\n".to_vec());
    let e = resolve(&mut m, &["h"], &target()).expect_err("mismatch");
    assert_eq!(e.to_string(), "h-1.0-py3-none-any.whl: metadata is for other 1.0");

    let mut t = target();
    t.python_full_version = "three".into();
    assert!(matches!(resolve(&mut m, &["h"], &t), Err(ResolveError::InvalidTarget(_))));
}

#[test]
fn only_needed_metadata_is_fetched() {
    let mut src = world();
    resolve(&mut src, &["requests==2.30.0"], &target()).expect("resolves");
    let mut fetched = src.fetched_metadata.clone();
    fetched.sort();
    fetched.dedup();
    assert_eq!(fetched, ["idna-3.6-py3-none-any.whl", "requests-2.30.0-py3-none-any.whl"]);
}
