//! Image definitions (`images/NAME.yaml`): what goes into an image, by name and
//! version range. `openshell lock` turns one into a lockfile that pins every byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A whole image definition.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDef {
    /// Image name, used as the reference name (`NAME:TAG`).
    pub name: String,
    #[serde(default = "default_tag")]
    pub tag: String,
    #[serde(default)]
    pub debian: Option<DebianDef>,
    #[serde(default)]
    pub npm: Option<NpmDef>,
    #[serde(default)]
    pub pypi: Option<PypiDef>,
    /// Plain files to add.
    #[serde(default)]
    pub files: Vec<FileDef>,
    /// Environment of the image config, in order.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub user: UserDef,
    #[serde(default = "default_workdir")]
    pub workdir: String,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Paths left out of the image: absolute globs (see [`crate::exclude`]).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Exceptions to `exclude` (e.g. each package's copyright file).
    #[serde(default)]
    pub keep: Vec<String>,
}

fn default_tag() -> String {
    "latest".into()
}

fn default_workdir() -> String {
    "/sandbox".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DebianDef {
    /// Suites to resolve from, first preferred (e.g. `[trixie, trixie-updates]`).
    pub suites: Vec<String>,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    #[serde(default = "default_arch")]
    pub architecture: String,
    /// Packages, optionally with a constraint: `python3.13`, `bash (>= 5.2)`.
    pub packages: Vec<String>,
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}

fn default_arch() -> String {
    "amd64".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NpmDef {
    /// Installed globally under `prefix` (`/usr/local`): `name: range-or-tag`.
    pub packages: BTreeMap<String, String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "/usr/local".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PypiDef {
    /// Requirements (`name==1.2.3`, `name>=1`), resolved for CPython 3.13 on manylinux x86_64.
    pub packages: Vec<String>,
    /// Where wheels are installed (`/usr/local/lib/python3.13/dist-packages`).
    #[serde(default = "default_site")]
    pub site_packages: String,
}

fn default_site() -> String {
    "/usr/local/lib/python3.13/dist-packages".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    /// Absolute path in the image.
    pub path: String,
    /// Inline content…
    #[serde(default)]
    pub content: Option<String>,
    /// …or a file relative to the definition.
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// Octal permission bits as a string, e.g. `"0644"`.
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "0644".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserDef {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    #[serde(default = "default_shell")]
    pub shell: String,
}

fn default_shell() -> String {
    "/bin/bash".into()
}

/// Why a definition could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DefError {
    #[error("{}: cannot read image definition: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid { file: String, line: u64, column: u64, message: String },
    /// Parsed, but breaks a rule of definitions (no position: it is in the whole).
    #[error("{file}:1:1: {problem}")]
    Rule { file: String, problem: DefProblem },
}

/// A rule of definitions a parsed one breaks.
#[derive(Debug, thiserror::Error)]
pub enum DefProblem {
    #[error("name `{0}`: use lower-case letters, digits, `.`, `_`, `-` and `/`")]
    Name(String),
    #[error("user: uid and gid must not be 0 (the image user is unprivileged)")]
    RootUser,
    #[error("{what} `{path}` must be an absolute path")]
    Relative { what: &'static str, path: String },
    #[error("files: `{0}` must be an absolute path without `..`")]
    FilePath(String),
    #[error("files: `{0}` needs exactly one of `content` or `source`")]
    FileSource(String),
    #[error("files: `{path}` mode `{mode}` is not an octal permission such as \"0644\"")]
    FileMode { path: String, mode: String },
    #[error(transparent)]
    Exclude(#[from] crate::exclude::ExcludeError),
    #[error("debian: list at least one suite and one package")]
    Debian,
}

impl ImageDef {
    /// Reads and validates a definition file.
    pub fn load(path: &Path) -> Result<(ImageDef, Vec<u8>), DefError> {
        let bytes = std::fs::read(path).map_err(|source| DefError::Read { path: path.to_owned(), source })?;
        let def = ImageDef::parse(&path.display().to_string(), &bytes)?;
        Ok((def, bytes))
    }

    /// Parses and validates a definition; `file` names it in errors.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<ImageDef, DefError> {
        let invalid =
            |line, column, message: String| DefError::Invalid { file: file.to_owned(), line, column, message };
        let text = std::str::from_utf8(bytes).map_err(|_| invalid(1, 1, "not UTF-8 text".into()))?;
        let def: ImageDef = serde_saphyr::from_str(text).map_err(|e| {
            use serde_saphyr::MessageFormatter;
            let (line, col) = e.location().map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
            invalid(line, col, serde_saphyr::UserMessageFormatter.format_message(&e).into_owned())
        })?;
        def.validate().map_err(|problem| DefError::Rule { file: file.to_owned(), problem })?;
        Ok(def)
    }

    fn validate(&self) -> Result<(), DefProblem> {
        if self.name.is_empty()
            || !self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        {
            return Err(DefProblem::Name(self.name.clone()));
        }
        if self.user.uid == 0 || self.user.gid == 0 {
            return Err(DefProblem::RootUser);
        }
        for (what, p) in [("workdir", &self.workdir), ("user.home", &self.user.home)] {
            if !p.starts_with('/') {
                return Err(DefProblem::Relative { what, path: p.clone() });
            }
        }
        for f in &self.files {
            if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
                return Err(DefProblem::FilePath(f.path.clone()));
            }
            if f.content.is_some() == f.source.is_some() {
                return Err(DefProblem::FileSource(f.path.clone()));
            }
            if u32::from_str_radix(&f.mode, 8).map_or(true, |m| m > 0o7777) {
                return Err(DefProblem::FileMode { path: f.path.clone(), mode: f.mode.clone() });
            }
        }
        crate::exclude::validate(&self.exclude, &self.keep)?;
        if let Some(d) = &self.debian
            && (d.suites.is_empty() || d.packages.is_empty())
        {
            return Err(DefProblem::Debian);
        }
        Ok(())
    }
}
