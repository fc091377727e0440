//! Simple-repository project pages: PEP 691 JSON (`application/vnd.pypi.simple.v1+json`)
//! and PEP 503 HTML, with the PEP 592 (yanked), PEP 658/714 (core metadata) and
//! `requires-python` additions. Relative URLs are resolved against the page URL (or a
//! `<base href>`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

/// The JSON content type of PEP 691.
pub const JSON_CONTENT_TYPE: &str = "application/vnd.pypi.simple.v1+json";

/// A page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The JSON is malformed.
    #[error("project page {page}: invalid JSON: {source}")]
    Json {
        /// Page URL.
        page: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// A PEP 691 major version this parser does not know.
    #[error("project page {page}: unsupported simple API version {version:?}")]
    ApiVersion {
        /// Page URL.
        page: String,
        /// The `meta.api-version` value.
        version: String,
    },
    /// A file entry lacks a field or has a wrong type.
    #[error("project page {page}: file entry {index}: {reason}")]
    Entry {
        /// Page URL.
        page: String,
        /// Position in `files`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A link cannot be resolved to a URL.
    #[error("project page {page}: bad link {href:?}: {source}")]
    Url {
        /// Page URL.
        page: String,
        /// The link.
        href: String,
        /// What the URL parser said.
        #[source]
        source: url::ParseError,
    },
    /// A sha256 that is not 64 hex digits.
    #[error("project page {page}: {filename}: invalid sha256 {value:?}")]
    Hash {
        /// Page URL.
        page: String,
        /// File.
        filename: String,
        /// The value.
        value: String,
    },
    /// Neither JSON nor HTML.
    #[error("project page {page}: unsupported content type {content_type:?}")]
    ContentType {
        /// Page URL.
        page: String,
        /// The content type.
        content_type: String,
    },
}

/// Whether the index serves core metadata for a file (PEP 658), with its hash if given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreMetadataRef {
    /// Lower-case hex sha256 of the `.metadata` file, if the index gave one.
    pub sha256: Option<String>,
}

/// One file of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistFile {
    /// File name (`pkg-1.0-py3-none-any.whl`).
    pub filename: String,
    /// Absolute download URL, without a hash fragment.
    pub url: Url,
    /// Lower-case hex sha256, if the index gave one.
    pub sha256: Option<String>,
    /// `requires-python`, if given.
    pub requires_python: Option<String>,
    /// `Some(reason)` when yanked (the reason may be empty).
    pub yanked: Option<String>,
    /// Core metadata availability (PEP 658/714).
    pub core_metadata: Option<CoreMetadataRef>,
    /// Size in bytes (PEP 700), if given.
    pub size: Option<u64>,
}

impl DistFile {
    /// The URL of the file's PEP 658 metadata (`<url>.metadata`).
    pub fn metadata_url(&self) -> Url {
        let mut u = self.url.clone();
        let path = format!("{}.metadata", u.path());
        u.set_path(&path);
        u
    }

    /// The file's path relative to `index` when its URL is under it (same origin, path below
    /// the index path, no query); `None` otherwise.
    pub fn index_relative_path(&self, index: &Url) -> Option<String> {
        let mut base = index.path().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let same = self.url.scheme() == index.scheme()
            && self.url.host_str() == index.host_str()
            && self.url.port_or_known_default() == index.port_or_known_default();
        if !same || self.url.query().is_some() {
            return None;
        }
        self.url.path().strip_prefix(&base).filter(|r| !r.is_empty()).map(str::to_string)
    }
}

/// One project page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPage {
    /// Project name (as the page states it, or as requested for HTML pages).
    pub name: String,
    /// Files, in page order.
    pub files: Vec<DistFile>,
}

fn check_sha256(page: &Url, filename: &str, v: &str) -> Result<String, IndexError> {
    let l = v.to_ascii_lowercase();
    if l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(l)
    } else {
        Err(IndexError::Hash { page: page.to_string(), filename: filename.to_string(), value: v.to_string() })
    }
}

fn resolve_url(page: &Url, base: &Url, href: &str) -> Result<(Url, Option<String>), IndexError> {
    let mut u = base.join(href.trim()).map_err(|source| IndexError::Url {
        page: page.to_string(),
        href: href.to_string(),
        source,
    })?;
    let frag = u.fragment().map(str::to_string);
    u.set_fragment(None);
    Ok((u, frag))
}

/// Parse a PEP 691 JSON project page fetched from `page_url`.
pub fn parse_json_index(bytes: &[u8], page_url: &Url) -> Result<ProjectPage, IndexError> {
    let page = page_url.to_string();
    let v: Value = serde_json::from_slice(bytes).map_err(|source| IndexError::Json { page: page.clone(), source })?;
    let version = v.pointer("/meta/api-version").and_then(Value::as_str).unwrap_or("1.0");
    if version.split('.').next() != Some("1") {
        return Err(IndexError::ApiVersion { page, version: version.to_string() });
    }
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let entries = v.get("files").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut files = Vec::with_capacity(entries.len());
    for (index, f) in entries.iter().enumerate() {
        let bad = |reason: &str| IndexError::Entry { page: page.clone(), index, reason: reason.to_string() };
        let filename = f.get("filename").and_then(Value::as_str).ok_or_else(|| bad("missing filename"))?.to_string();
        let href = f.get("url").and_then(Value::as_str).ok_or_else(|| bad("missing url"))?;
        let (url, _) = resolve_url(page_url, page_url, href)?;
        let sha256 = match f.pointer("/hashes/sha256") {
            None | Some(Value::Null) => None,
            Some(Value::String(h)) => Some(check_sha256(page_url, &filename, h)?),
            Some(_) => return Err(bad("hashes.sha256 is not a string")),
        };
        let requires_python = f.get("requires-python").and_then(Value::as_str).map(str::to_string);
        let yanked = match f.get("yanked") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(String::new()),
            Some(Value::String(r)) => Some(r.clone()),
            Some(_) => return Err(bad("yanked is neither a boolean nor a string")),
        };
        let meta = match f.get("core-metadata") {
            Some(m) if !m.is_null() => Some(m),
            _ => f.get("dist-info-metadata"),
        };
        let core_metadata = match meta {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(CoreMetadataRef { sha256: None }),
            Some(Value::Object(h)) => {
                let sha256 = match h.get("sha256").and_then(Value::as_str) {
                    Some(x) => Some(check_sha256(page_url, &filename, x)?),
                    None => None,
                };
                Some(CoreMetadataRef { sha256 })
            }
            Some(_) => return Err(bad("core-metadata is neither a boolean nor a hash object")),
        };
        let size = f.get("size").and_then(Value::as_u64);
        files.push(DistFile { filename, url, sha256, requires_python, yanked, core_metadata, size });
    }
    Ok(ProjectPage { name, files })
}

/// Decode the HTML character references that appear in simple pages.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..end];
        let decoded = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Attributes of a start tag (`name` lower-cased, values entity-decoded; a bare attribute
/// has an empty value).
fn parse_attrs(tag: &str) -> Vec<(String, String)> {
    let b = tag.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let name = tag[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                let ve = b[vs..].iter().position(|&c| c == q).map_or(b.len(), |p| vs + p);
                value = decode_entities(&tag[vs..ve]);
                i = (ve + 1).min(b.len());
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = decode_entities(&tag[vs..i]);
            }
        }
        out.push((name, value));
    }
    out
}

/// Parse a PEP 503 HTML project page fetched from `page_url` for project `project`.
pub fn parse_html_index(bytes: &[u8], page_url: &Url, project: &str) -> Result<ProjectPage, IndexError> {
    let html = String::from_utf8_lossy(bytes);
    let lower = html.to_ascii_lowercase();
    let mut base = page_url.clone();
    let mut files = Vec::new();
    let mut pos = 0;
    while let Some(off) = lower[pos..].find('<') {
        let start = pos + off;
        let Some(gt) = lower[start..].find('>') else { break };
        let tag_end = start + gt;
        let tag = &html[start + 1..tag_end];
        let tag_lower = &lower[start + 1..tag_end];
        pos = tag_end + 1;
        let tag_name: String = tag_lower.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let attrs_text = &tag[tag_name.len()..];
        if tag_name == "base" {
            if let Some((_, href)) = parse_attrs(attrs_text).into_iter().find(|(n, _)| n == "href") {
                base = resolve_url(page_url, page_url, &href)?.0;
            }
            continue;
        }
        if tag_name != "a" {
            continue;
        }
        let attrs = parse_attrs(attrs_text);
        let close = lower[pos..].find("</a").map_or(lower.len(), |c| pos + c);
        let text = decode_entities(html[pos..close].trim());
        pos = close;
        let Some((_, href)) = attrs.iter().find(|(n, _)| n == "href") else { continue };
        let (url, fragment) = resolve_url(page_url, &base, href)?;
        let filename = if text.is_empty() {
            url.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default().to_string()
        } else {
            text
        };
        let mut sha256 = None;
        if let Some(frag) = fragment
            && let Some((algo, value)) = frag.split_once('=')
            && algo.eq_ignore_ascii_case("sha256")
        {
            sha256 = Some(check_sha256(page_url, &filename, value)?);
        }
        let attr = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let requires_python = attr("data-requires-python").filter(|s| !s.trim().is_empty());
        let yanked = attr("data-yanked");
        let meta = attr("data-core-metadata").or_else(|| attr("data-dist-info-metadata"));
        let core_metadata = match meta {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("true") => Some(CoreMetadataRef { sha256: None }),
            Some(v) => match v.split_once('=') {
                Some((algo, h)) if algo.eq_ignore_ascii_case("sha256") => {
                    Some(CoreMetadataRef { sha256: Some(check_sha256(page_url, &filename, h)?) })
                }
                Some(_) => Some(CoreMetadataRef { sha256: None }),
                None => None,
            },
        };
        files.push(DistFile { filename, url, sha256, requires_python, yanked, core_metadata, size: None });
    }
    Ok(ProjectPage { name: project.to_string(), files })
}

/// Parse a project page by content type: PEP 691 JSON or (`text/html`) PEP 503 HTML.
pub fn parse_index(bytes: &[u8], content_type: &str, page_url: &Url, project: &str) -> Result<ProjectPage, IndexError> {
    let ct = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match ct.as_str() {
        JSON_CONTENT_TYPE | "application/json" => parse_json_index(bytes, page_url),
        "text/html" | "application/vnd.pypi.simple.v1+html" | "" => parse_html_index(bytes, page_url, project),
        _ => Err(IndexError::ContentType { page: page_url.to_string(), content_type: content_type.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities() {
        assert_eq!(decode_entities("&gt;=3.8,&lt;4&amp;&#33;&#x41;&bogus;&"), ">=3.8,<4&!A&bogus;&");
    }

    #[test]
    fn attributes() {
        let a = parse_attrs(r#" href="a b" data-yanked data-x='1' y=2 "#);
        assert_eq!(
            a,
            [
                ("href".to_string(), "a b".to_string()),
                ("data-yanked".to_string(), String::new()),
                ("data-x".to_string(), "1".to_string()),
                ("y".to_string(), "2".to_string()),
            ]
        );
    }
}
