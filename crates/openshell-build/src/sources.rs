//! Where packages come from: the machine's own configuration (apt sources, npm
//! and pip configuration) or explicit flags and environment variables. No
//! registry host is written in openshell's code.

use std::path::{Path, PathBuf};
use std::process::Command;

use url::Url;

/// A package source and where its address came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Base URL: http(s), its path always ending in `/`.
    pub url: Url,
    pub origin: String,
}

impl Source {
    /// `path`, relative to this source as a lockfile records it (a Debian pool path,
    /// an npm tarball path, `dists/SUITE/InRelease`), under the base: see [`under`].
    pub fn join(&self, path: &str) -> Result<Url, SourceError> {
        under(&self.url, path)
    }

    /// The packument of npm package `name`. A scoped name's `/` is escaped as npm
    /// escapes it (`@scope/name` → `@scope%2fname`, npm-package-arg's `escapedName`),
    /// so the packument is one path segment.
    pub fn npm_packument(&self, name: &str) -> Result<Url, SourceError> {
        let escaped = name.replacen('/', "%2f", 1);
        if escaped.is_empty() || escaped.contains('/') {
            return Err(SourceError::Path {
                base: self.url.to_string(),
                path: name.to_owned(),
                reason: "an npm package name is one segment, or `@scope/` and one",
            });
        }
        under(&self.url, &escaped)
    }

    /// The simple-index page of PyPI project `project` (PEP 503: `INDEX/PROJECT/`).
    pub fn pypi_project(&self, project: &str) -> Result<Url, SourceError> {
        if project.contains('/') {
            return Err(SourceError::Path {
                base: self.url.to_string(),
                path: project.to_owned(),
                reason: "a project name is one path segment",
            });
        }
        under(&self.url, &format!("{project}/"))
    }
}

/// `path` (relative, `/`-separated) appended to `base`'s path, the base's path ending
/// in `/` first (`Url::join` would drop the last segment of a base without one), the
/// base's query kept. `Url::join` is not used for the rest either: it would resolve
/// `..` out of the source and read `?` and `#` as a query and a fragment. Here a `.`
/// or `..` segment (`%2e` spelled too), an empty segment other than a final one (`//`),
/// a leading `/` and a `\` (a separator in http URLs) are refused, naming base and path;
/// characters a path may not hold are percent-encoded by `Url::set_path`, and what
/// may stay stays (`+`, `~`, `:`, `@`, existing `%XX` escapes): the URL is exactly
/// the string concatenation of before for every path that gave a valid one.
pub fn under(base: &Url, path: &str) -> Result<Url, SourceError> {
    let bad = |reason| SourceError::Path { base: base.to_string(), path: path.to_owned(), reason };
    if path.is_empty() || path.starts_with('/') {
        return Err(bad("a path relative to the source is expected"));
    }
    if path.contains('\\') {
        return Err(bad("a `\\` is a path separator in http URLs"));
    }
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let dots = segment.to_ascii_lowercase().replace("%2e", ".");
        if dots == "." || dots == ".." {
            return Err(bad("`.` and `..` segments would leave or rename the source's path"));
        }
        if segment.is_empty() && i + 1 != segments.len() {
            return Err(bad("an empty segment (`//`)"));
        }
    }
    let mut url = base.clone();
    let mut full = base.path().to_owned();
    if !full.ends_with('/') {
        full.push('/');
    }
    full.push_str(path);
    url.set_path(&full);
    Ok(url)
}

/// Why no source could be found.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "no Debian mirror serves suite `{suite}`: none configured in {searched}; pass --debian-mirror URL or set OPENSHELL_DEBIAN_MIRROR"
    )]
    NoDebianMirror { suite: String, searched: String },
    #[error(
        "no npm registry configured: pass --npm-registry URL, set npm_config_registry, or configure npm (`npm config get registry`)"
    )]
    NoNpmRegistry,
    #[error(
        "no PyPI index configured: pass --pypi-index URL, set PIP_INDEX_URL, or configure pip (`pip config get global.index-url`)"
    )]
    NoPypiIndex,
    #[error("{what} `{url}` is not an http(s) URL: {reason}")]
    BadUrl { what: &'static str, url: String, reason: String },
    #[error("source `{base}`: cannot address `{path}` under it: {reason}")]
    Path { base: String, path: String, reason: &'static str },
}

/// A source's base URL, parsed by `url::Url` (so a malformed one, `http:/host` or a
/// bad port, is refused here rather than at the first download), http(s) only, with
/// a trailing `/` so that relative paths join under it.
fn normalize(what: &'static str, url: &str) -> Result<Url, SourceError> {
    let url = url.trim();
    let bad = |reason: String| SourceError::BadUrl { what, url: url.to_owned(), reason };
    let mut parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!("the scheme is `{}`", parsed.scheme())));
    }
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    Ok(parsed)
}

/// One apt source entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptEntry {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub file: PathBuf,
}

/// Parses one-line (`.list`) and deb822 (`.sources`) apt source files; only
/// enabled `deb` entries are returned.
pub fn parse_apt_sources(file: &Path, text: &str) -> Vec<AptEntry> {
    let is_deb822 = file.extension().is_some_and(|e| e == "sources");
    let mut out = Vec::new();
    if is_deb822 {
        for para in text.split("\n\n") {
            let mut types = Vec::new();
            let mut uris = Vec::new();
            let mut suites = Vec::new();
            let mut comps = Vec::new();
            let mut enabled = true;
            for line in para.lines().filter(|l| !l.trim_start().starts_with('#')) {
                let Some((k, v)) = line.split_once(':') else { continue };
                let words = || v.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
                match k.trim().to_ascii_lowercase().as_str() {
                    "types" => types = words(),
                    "uris" => uris = words(),
                    "suites" => suites = words(),
                    "components" => comps = words(),
                    "enabled" => enabled = !v.trim().eq_ignore_ascii_case("no"),
                    _ => {}
                }
            }
            if enabled && types.iter().any(|t| t == "deb") {
                for uri in uris {
                    out.push(AptEntry {
                        uri,
                        suites: suites.clone(),
                        components: comps.clone(),
                        file: file.to_owned(),
                    });
                }
            }
        }
    } else {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace().peekable();
            if words.next() != Some("deb") {
                continue;
            }
            if words.peek().is_some_and(|w| w.starts_with('[')) {
                for w in words.by_ref() {
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            let (Some(uri), Some(suite)) = (words.next(), words.next()) else { continue };
            out.push(AptEntry {
                uri: uri.to_owned(),
                suites: vec![suite.to_owned()],
                components: words.map(str::to_owned).collect(),
                file: file.to_owned(),
            });
        }
    }
    out
}

/// The apt source entries of this machine (`/etc/apt/sources.list` and `sources.list.d`).
pub fn machine_apt_entries(root: &Path) -> Vec<AptEntry> {
    let mut files = vec![root.join("etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir(root.join("etc/apt/sources.list.d")) {
        let mut more: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files.iter().filter_map(|f| std::fs::read_to_string(f).ok().map(|t| parse_apt_sources(f, &t))).flatten().collect()
}

/// The mirror for `suite`: `flag`, else `OPENSHELL_DEBIAN_MIRROR`, else the apt
/// entry serving that suite, else the entry serving the same kind of suite
/// (`X-security` from a security archive, anything else from the main archive:
/// one Debian archive serves every release).
pub fn debian_mirror(flag: Option<&str>, suite: &str, entries: &[AptEntry]) -> Result<Source, SourceError> {
    if let Some(url) = flag {
        return Ok(Source { url: normalize("--debian-mirror", url)?, origin: "--debian-mirror".into() });
    }
    if let Some(url) = std::env::var("OPENSHELL_DEBIAN_MIRROR").ok().filter(|u| !u.is_empty()) {
        return Ok(Source {
            url: normalize("OPENSHELL_DEBIAN_MIRROR", &url)?,
            origin: "OPENSHELL_DEBIAN_MIRROR".into(),
        });
    }
    let http = |e: &&AptEntry| e.uri.starts_with("http://") || e.uri.starts_with("https://");
    let wants_security = suite.ends_with("-security");
    let pick = entries.iter().filter(http).find(|e| e.suites.iter().any(|s| s == suite)).or_else(|| {
        entries.iter().filter(http).find(|e| {
            e.components.iter().any(|c| c == "main")
                && e.suites.iter().any(|s| s.ends_with("-security") == wants_security && !s.contains('/'))
        })
    });
    match pick {
        Some(e) => Ok(Source { url: normalize("apt source", &e.uri)?, origin: e.file.display().to_string() }),
        None => {
            let mut files: Vec<String> = entries.iter().map(|e| e.file.display().to_string()).collect();
            files.dedup();
            let searched = if files.is_empty() { "/etc/apt/sources.list(.d)".to_owned() } else { files.join(", ") };
            Err(SourceError::NoDebianMirror { suite: suite.to_owned(), searched })
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty() && s != "undefined").then_some(s)
}

/// The npm registry: `flag`, else `npm_config_registry`, else npm's own configuration.
pub fn npm_registry(flag: Option<&str>) -> Result<Source, SourceError> {
    if let Some(url) = flag {
        return Ok(Source { url: normalize("--npm-registry", url)?, origin: "--npm-registry".into() });
    }
    for var in ["npm_config_registry", "NPM_CONFIG_REGISTRY"] {
        if let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) {
            return Ok(Source { url: normalize("npm registry", &url)?, origin: var.into() });
        }
    }
    match command_output("npm", &["config", "get", "registry"]) {
        Some(url) => Ok(Source { url: normalize("npm registry", &url)?, origin: "npm config get registry".into() }),
        None => Err(SourceError::NoNpmRegistry),
    }
}

/// The PyPI simple index: `flag`, else `PIP_INDEX_URL`, else pip's configuration,
/// else pip's own default (asked of the machine's pip).
pub fn pypi_index(flag: Option<&str>) -> Result<Source, SourceError> {
    if let Some(url) = flag {
        return Ok(Source { url: normalize("--pypi-index", url)?, origin: "--pypi-index".into() });
    }
    if let Some(url) = std::env::var("PIP_INDEX_URL").ok().filter(|u| !u.is_empty()) {
        return Ok(Source { url: normalize("PIP_INDEX_URL", &url)?, origin: "PIP_INDEX_URL".into() });
    }
    for python in ["python3", "python"] {
        if let Some(url) = command_output(python, &["-m", "pip", "config", "get", "global.index-url"]) {
            return Ok(Source { url: normalize("pip index-url", &url)?, origin: "pip config global.index-url".into() });
        }
        let default = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)";
        if let Some(url) = command_output(python, &["-c", default]) {
            return Ok(Source { url: normalize("pip default index", &url)?, origin: "pip's default index".into() });
        }
    }
    Err(SourceError::NoPypiIndex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_apt_formats() {
        let deb822 = "Types: deb\nURIs: http://mirror.example.com/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.example.com/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb-src\nURIs: http://src.example.com/x\nSuites: bookworm\nComponents: main\n\nTypes: deb\nEnabled: no\nURIs: http://off.example.com/x\nSuites: bookworm\nComponents: main\n";
        let e = parse_apt_sources(Path::new("/etc/apt/sources.list.d/debian.sources"), deb822);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].suites, ["bookworm", "bookworm-updates"]);
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://list.example.com/debian trixie main contrib\ndeb-src http://x.example.com trixie main\n";
        let l = parse_apt_sources(Path::new("/etc/apt/sources.list"), list);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].uri, "http://list.example.com/debian");
        assert_eq!(l[0].components, ["main", "contrib"]);

        let mirror = debian_mirror(None, "trixie", &e).expect("main archive serves trixie");
        assert_eq!(mirror.url.as_str(), "http://mirror.example.com/debian/");
        let sec = debian_mirror(None, "trixie-security", &e).expect("security archive");
        assert_eq!(sec.url.as_str(), "http://security.example.com/debian-security/");
        assert!(debian_mirror(None, "trixie", &[]).is_err());
        let flag = debian_mirror(Some("http://127.0.0.1:9/debian"), "trixie", &[]).expect("flag");
        assert_eq!(flag.url.as_str(), "http://127.0.0.1:9/debian/");
        assert!(debian_mirror(Some("ftp://x"), "trixie", &[]).is_err());
        // Parsed as URLs: a malformed one is refused, a host alone gets its `/`.
        assert!(debian_mirror(Some("http://[::1/debian"), "trixie", &[]).is_err());
        assert!(debian_mirror(Some("http://host:99999/debian"), "trixie", &[]).is_err());
        assert_eq!(
            debian_mirror(Some(" http://127.0.0.1:9 "), "trixie", &[]).expect("host").url.as_str(),
            "http://127.0.0.1:9/"
        );
    }

    fn flag_mirror(url: &str) -> Source {
        debian_mirror(Some(url), "trixie", &[]).expect("mirror")
    }

    /// The URLs the string concatenation (`format!("{base}{path}")` on the normalized
    /// base) gave before, pinned: Debian pool paths with `+` and `~`, mirrors with and
    /// without a trailing slash and with a path prefix, scoped npm packuments.
    #[test]
    fn urls_are_the_ones_concatenation_gave() {
        let pool = "pool/main/n/nodejs/libnode115_20.19.2+dfsg-1~deb13u1_amd64.deb";
        let gcc = "pool/main/g/gcc-14/libstdc++6_14.2.0-19_amd64.deb";
        for (base, expected) in [
            ("http://127.0.0.1:9", "http://127.0.0.1:9/"),
            ("http://127.0.0.1:9/", "http://127.0.0.1:9/"),
            ("http://mirror.test/debian", "http://mirror.test/debian/"),
            ("http://mirror.test/debian/", "http://mirror.test/debian/"),
            ("https://mirror.test:8443/a/b/debian", "https://mirror.test:8443/a/b/debian/"),
        ] {
            let m = flag_mirror(base);
            assert_eq!(m.join(pool).expect("pool").as_str(), format!("{expected}{pool}"));
            assert_eq!(m.join(gcc).expect("gcc").as_str(), format!("{expected}{gcc}"));
            assert_eq!(
                m.join("dists/trixie/InRelease").expect("InRelease").as_str(),
                format!("{expected}dists/trixie/InRelease")
            );
        }
        assert_eq!(
            flag_mirror("http://mirror.test/debian").join(pool).expect("pool").as_str(),
            "http://mirror.test/debian/pool/main/n/nodejs/libnode115_20.19.2+dfsg-1~deb13u1_amd64.deb"
        );
        // A base whose path lacks its final `/` keeps its last segment (Url::join would drop it).
        let bare = Url::parse("http://mirror.test/debian").expect("url");
        assert_eq!(
            under(&bare, "dists/x/Release").expect("under").as_str(),
            "http://mirror.test/debian/dists/x/Release"
        );

        let npm = npm_registry(Some("http://127.0.0.1:9/npm")).expect("registry");
        assert_eq!(npm.npm_packument("@scope/name").expect("scoped").as_str(), "http://127.0.0.1:9/npm/@scope%2fname");
        assert_eq!(
            npm.npm_packument("@anthropic-ai/claude-code").expect("scoped").as_str(),
            "http://127.0.0.1:9/npm/@anthropic-ai%2fclaude-code"
        );
        assert_eq!(npm.npm_packument("lodash").expect("plain").as_str(), "http://127.0.0.1:9/npm/lodash");
        assert_eq!(
            npm.join("@scope/name/-/name-1.0.0.tgz").expect("tarball").as_str(),
            "http://127.0.0.1:9/npm/@scope/name/-/name-1.0.0.tgz"
        );
        let pypi = pypi_index(Some("http://127.0.0.1:9/simple")).expect("index");
        assert_eq!(pypi.pypi_project("requests").expect("page").as_str(), "http://127.0.0.1:9/simple/requests/");
    }

    #[test]
    fn paths_that_leave_the_source_or_bad_urls_are_named() {
        let m = flag_mirror("http://mirror.test/debian/");
        for path in ["../etc/passwd", "pool/../../x", "pool/%2E%2e/x", "/pool/x", "pool//x", "pool\\x", ""] {
            let e = m.join(path).expect_err(path);
            assert!(matches!(&e, SourceError::Path { path: p, .. } if p == path), "{path}: {e}");
            assert!(e.to_string().contains("http://mirror.test/debian/"), "{e}");
        }
        // `?` and `#` are path characters here, not a query or a fragment.
        assert_eq!(m.join("pool/a?b#c").expect("escaped").as_str(), "http://mirror.test/debian/pool/a%3Fb%23c");
        let npm = npm_registry(Some("http://127.0.0.1:9/")).expect("registry");
        assert!(npm.npm_packument("@a/b/c").is_err());
        let e = debian_mirror(Some("ftp://mirror.test/debian"), "trixie", &[]).expect_err("ftp");
        assert!(e.to_string().contains("--debian-mirror `ftp://mirror.test/debian`"), "{e}");
        let e = npm_registry(Some("http://[::1/npm")).expect_err("malformed");
        assert!(e.to_string().contains("--npm-registry `http://[::1/npm`"), "{e}");
    }
}
