//! Parsing PEP 691 JSON and PEP 503 HTML project pages.

use openshell_pypi::index::{IndexError, JSON_CONTENT_TYPE};
use openshell_pypi::{CoreMetadataRef, parse_html_index, parse_index, parse_json_index};
use url::Url;

const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn page() -> Url {
    Url::parse("https://pypi.example.com/simple/demo-pkg/").expect("url")
}

#[test]
fn json_pages() {
    let json = format!(
        r#"{{"meta": {{"api-version": "1.1"}}, "name": "demo-pkg", "versions": ["1.0", "2.0"], "files": [
        {{"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "../../packages/aa/demo_pkg-1.0-py3-none-any.whl",
          "hashes": {{"sha256": "{H1}", "md5": "x"}}, "requires-python": ">=3.8", "yanked": false,
          "core-metadata": {{"sha256": "{H2}"}}, "size": 1234}},
        {{"filename": "demo_pkg-2.0-py3-none-any.whl", "url": "https://files.example.test/demo_pkg-2.0-py3-none-any.whl",
          "hashes": {{}}, "yanked": "broken build", "dist-info-metadata": true}},
        {{"filename": "demo-pkg-2.0.tar.gz", "url": "/packages/demo-pkg-2.0.tar.gz", "hashes": {{"sha256": "{}"}},
          "yanked": true, "core-metadata": false, "dist-info-metadata": true}}
    ]}}"#,
        H1.to_uppercase()
    );
    let p = parse_json_index(json.as_bytes(), &page()).expect("parses");
    assert_eq!(p.name, "demo-pkg");
    assert_eq!(p.files.len(), 3);
    let f = &p.files[0];
    assert_eq!(f.url.as_str(), "https://pypi.example.com/packages/aa/demo_pkg-1.0-py3-none-any.whl");
    assert_eq!(f.sha256.as_deref(), Some(H1));
    assert_eq!(f.requires_python.as_deref(), Some(">=3.8"));
    assert_eq!(f.yanked, None);
    assert_eq!(f.core_metadata, Some(CoreMetadataRef { sha256: Some(H2.into()) }));
    assert_eq!(f.size, Some(1234));
    assert_eq!(
        f.metadata_url().as_str(),
        "https://pypi.example.com/packages/aa/demo_pkg-1.0-py3-none-any.whl.metadata"
    );
    assert_eq!(
        f.index_relative_path(&Url::parse("https://pypi.example.com/").expect("url")).as_deref(),
        Some("packages/aa/demo_pkg-1.0-py3-none-any.whl")
    );
    assert_eq!(f.index_relative_path(&Url::parse("https://other.example.com/").expect("url")), None);
    let g = &p.files[1];
    assert_eq!(g.sha256, None);
    assert_eq!(g.yanked.as_deref(), Some("broken build"));
    assert_eq!(g.core_metadata, Some(CoreMetadataRef { sha256: None }));
    let s = &p.files[2];
    assert_eq!(s.url.as_str(), "https://pypi.example.com/packages/demo-pkg-2.0.tar.gz");
    assert_eq!(s.sha256.as_deref(), Some(H1), "hashes are lower-cased");
    assert_eq!(s.yanked.as_deref(), Some(""));
    assert_eq!(s.core_metadata, None, "core-metadata wins over dist-info-metadata");
}

#[test]
fn json_errors() {
    let e = parse_json_index(br#"{"meta": {"api-version": "2.0"}, "files": []}"#, &page()).expect_err("version");
    assert!(matches!(e, IndexError::ApiVersion { .. }), "{e}");
    let e = parse_json_index(br#"{"files": [{"url": "x"}]}"#, &page()).expect_err("filename");
    assert_eq!(e.to_string(), "project page https://pypi.example.com/simple/demo-pkg/: file entry 0: missing filename");
    let e = parse_json_index(br#"{"files": [{"filename": "a", "url": "x", "hashes": {"sha256": "zz"}}]}"#, &page())
        .expect_err("hash");
    assert!(matches!(e, IndexError::Hash { .. }), "{e}");
    let e = parse_json_index(b"{", &page()).expect_err("json");
    assert!(matches!(e, IndexError::Json { .. }));
    let e = parse_json_index(br#"{"files": [{"filename": "a", "url": "http://[::1"}]}"#, &page()).expect_err("url");
    assert!(matches!(e, IndexError::Url { .. }), "{e}");
}

#[test]
fn html_pages() {
    let html = format!(
        r#"<!DOCTYPE html>
<html><head><meta name="pypi:repository-version" content="1.0"><title>Links for demo-pkg</title></head>
<body><h1>Links for demo-pkg</h1>
<A HREF="../../packages/demo_pkg-1.0-py3-none-any.whl#sha256={H1}" data-requires-python="&gt;=3.8,&lt;4">demo_pkg-1.0-py3-none-any.whl</A><br/>
<a href='demo_pkg-2.0-py3-none-any.whl#md5=abc' data-yanked="bad &amp; broken" data-dist-info-metadata="sha256={H2}">demo_pkg-2.0-py3-none-any.whl</a>
<a href="https://files.example.test/demo-pkg-2.0.tar.gz#sha256={H2}" data-yanked data-core-metadata="true"> demo-pkg-2.0.tar.gz </a>
<a href="/x/demo_pkg-3.0-py3-none-any.whl"></a>
<a name="no-href">ignored</a>
</body></html>"#
    );
    let p = parse_html_index(html.as_bytes(), &page(), "demo-pkg").expect("parses");
    assert_eq!(p.name, "demo-pkg");
    let names: Vec<&str> = p.files.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(
        names,
        [
            "demo_pkg-1.0-py3-none-any.whl",
            "demo_pkg-2.0-py3-none-any.whl",
            "demo-pkg-2.0.tar.gz",
            "demo_pkg-3.0-py3-none-any.whl"
        ]
    );
    let f = &p.files[0];
    assert_eq!(f.url.as_str(), "https://pypi.example.com/packages/demo_pkg-1.0-py3-none-any.whl");
    assert_eq!(f.sha256.as_deref(), Some(H1));
    assert_eq!(f.requires_python.as_deref(), Some(">=3.8,<4"));
    assert_eq!(f.yanked, None);
    let g = &p.files[1];
    assert_eq!(g.url.as_str(), "https://pypi.example.com/simple/demo-pkg/demo_pkg-2.0-py3-none-any.whl");
    assert_eq!(g.sha256, None, "only sha256 fragments are kept");
    assert_eq!(g.yanked.as_deref(), Some("bad & broken"));
    assert_eq!(g.core_metadata, Some(CoreMetadataRef { sha256: Some(H2.into()) }));
    let s = &p.files[2];
    assert_eq!(s.yanked.as_deref(), Some(""));
    assert_eq!(s.core_metadata, Some(CoreMetadataRef { sha256: None }));
    assert_eq!(p.files[3].url.as_str(), "https://pypi.example.com/x/demo_pkg-3.0-py3-none-any.whl");

    let based = r#"<base href="https://mirror.example.com/root/"><a href="p/x-1.0-py3-none-any.whl">x-1.0-py3-none-any.whl</a>"#;
    let p = parse_html_index(based.as_bytes(), &page(), "x").expect("parses");
    assert_eq!(p.files[0].url.as_str(), "https://mirror.example.com/root/p/x-1.0-py3-none-any.whl");

    let bad = r#"<a href="x.whl#sha256=123">x.whl</a>"#;
    assert!(matches!(parse_html_index(bad.as_bytes(), &page(), "x"), Err(IndexError::Hash { .. })));
}

#[test]
fn content_type_dispatch() {
    let json = br#"{"meta": {"api-version": "1.0"}, "name": "x", "files": []}"#;
    assert_eq!(
        parse_index(json, &format!("{JSON_CONTENT_TYPE}; charset=utf-8"), &page(), "x").expect("json").name,
        "x"
    );
    let html = b"<a href='x-1.0-py3-none-any.whl'>x-1.0-py3-none-any.whl</a>";
    assert_eq!(parse_index(html, "text/html", &page(), "x").expect("html").files.len(), 1);
    assert!(matches!(parse_index(html, "image/png", &page(), "x"), Err(IndexError::ContentType { .. })));
}
