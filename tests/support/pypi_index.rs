//! A tiny PyPI simple index on loopback: wheels built by the test (zip crate, with
//! METADATA, WHEEL, RECORD and entry points), project pages in PEP 691 JSON (with PEP
//! 658 metadata files) or PEP 503 HTML (hashes in `#sha256=` fragments, no metadata).
//! Wheels are served outside the index (under `files/`), as real indexes do.

use std::io::{Cursor, Write};

use base64::Engine as _;
use openshell_store::Digest;
use zip::write::SimpleFileOptions;

use super::server::Server;

/// One wheel: `{dist}-{version}-py3-none-any.whl`.
pub struct Wheel {
    /// Distribution name as the wheel spells it (`greet_py`).
    pub dist: &'static str,
    /// Project name as METADATA states it (`greet-py`).
    pub name: &'static str,
    pub version: &'static str,
    /// `Requires-Dist` values.
    pub requires: Vec<&'static str>,
    /// `entry_points.txt` (empty: none).
    pub entry_points: &'static str,
    /// Package files: path in the wheel, content, unix mode.
    pub files: Vec<(&'static str, &'static str, u32)>,
}

/// How a project page is served.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// PEP 691 JSON, with PEP 658 `.metadata` files and sizes.
    Json,
    /// PEP 503 HTML, relative links, no metadata files (the wheel is the metadata).
    Html,
}

/// A served wheel.
pub struct Served {
    pub filename: String,
    /// Server path (no leading `/`).
    pub path: String,
    pub bytes: Vec<u8>,
}

impl Wheel {
    pub fn filename(&self) -> String {
        format!("{}-{}-py3-none-any.whl", self.dist, self.version)
    }

    pub fn metadata(&self) -> String {
        let mut m =
            format!("Metadata-Version: 2.1\nName: {}\nVersion: {}\nRequires-Python: >=3.9\n", self.name, self.version);
        for r in &self.requires {
            m.push_str(&format!("Requires-Dist: {r}\n"));
        }
        m
    }

    /// The wheel's bytes: a zip with a RECORD of sha256 entries.
    pub fn build(&self) -> Vec<u8> {
        let di = format!("{}-{}.dist-info", self.dist, self.version);
        let mut files: Vec<(String, Vec<u8>, u32)> =
            self.files.iter().map(|(p, c, m)| ((*p).to_owned(), c.as_bytes().to_vec(), *m)).collect();
        files.push((format!("{di}/METADATA"), self.metadata().into_bytes(), 0o644));
        files.push((
            format!("{di}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: openshell-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
            0o644,
        ));
        if !self.entry_points.is_empty() {
            files.push((format!("{di}/entry_points.txt"), self.entry_points.as_bytes().to_vec(), 0o644));
        }
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let mut record = String::new();
        for (path, data, mode) in &files {
            let opts = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode)
                .last_modified_time(zip::DateTime::default());
            z.start_file(path.as_str(), opts).expect("zip entry");
            z.write_all(data).expect("zip write");
            let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Digest::sha256(data).bytes());
            record.push_str(&format!("{path},sha256={hash},{}\n", data.len()));
        }
        record.push_str(&format!("{di}/RECORD,,\n"));
        z.start_file(format!("{di}/RECORD"), SimpleFileOptions::default()).expect("zip entry");
        z.write_all(record.as_bytes()).expect("zip write");
        z.finish().expect("zip finish").into_inner()
    }
}

/// Serves `projects` (normalized name, page format, wheels) under `<server>/simple/`;
/// returns the index URL and the wheels served.
pub fn serve(server: &Server, projects: &[(&str, Page, Vec<Wheel>)]) -> (String, Vec<Served>) {
    let mut served = Vec::new();
    for (project, page, wheels) in projects {
        let mut json_files = Vec::new();
        let mut links = String::new();
        for w in wheels {
            let bytes = w.build();
            let filename = w.filename();
            let sha = Digest::sha256(&bytes).hex();
            let path = format!("files/{}/{}/{filename}", &sha[..2], &sha[2..4]);
            server.add(&path, bytes.clone(), "application/octet-stream");
            match page {
                Page::Json => {
                    let meta = w.metadata().into_bytes();
                    let meta_sha = Digest::sha256(&meta).hex();
                    server.add(&format!("{path}.metadata"), meta, "application/octet-stream");
                    json_files.push(serde_json::json!({
                        "filename": filename,
                        "url": server.url(&path),
                        "hashes": {"sha256": sha},
                        "requires-python": ">=3.9",
                        "core-metadata": {"sha256": meta_sha},
                        "size": bytes.len(),
                        "yanked": false,
                    }));
                }
                Page::Html => {
                    links.push_str(&format!(
                        "    <a href=\"../../{path}#sha256={sha}\" data-requires-python=\"&gt;=3.9\">{filename}</a><br/>\n"
                    ));
                }
            }
            served.push(Served { filename, path, bytes });
        }
        match page {
            Page::Json => {
                let doc = serde_json::json!({
                    "meta": {"api-version": "1.1"},
                    "name": project,
                    "files": json_files,
                    "versions": wheels.iter().map(|w| w.version).collect::<Vec<_>>(),
                });
                server.add(
                    &format!("simple/{project}/"),
                    doc.to_string().into_bytes(),
                    "application/vnd.pypi.simple.v1+json",
                );
            }
            Page::Html => {
                let html = format!(
                    "<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Links for {project}</title></head>\n  <body>\n    <h1>Links for {project}</h1>\n{links}  </body>\n</html>\n"
                );
                server.add(&format!("simple/{project}/"), html.into_bytes(), "text/html");
            }
        }
    }
    (server.url("simple/"), served)
}
