//! Installing a wheel into a prefix, as data: which files go where, with what mode and
//! contents. Nothing is written to disk here.
//!
//! The layout follows the wheel spec (PEP 427/491) and pip/installer:
//! - everything at the top of the wheel (packages and the `.dist-info` directory) goes to the
//!   site-packages directory (`lib/python3.13/site-packages`);
//! - `<name>-<version>.data/purelib|platlib/…` → site-packages, `scripts/…` → `bin/` (a
//!   first line `#!python…` becomes `#!<interpreter>`), `headers/…` →
//!   `include/python3.13/<name>/`, `data/…` → the prefix root;
//! - every file is checked against the wheel's `RECORD` (sha256, size); a file missing from
//!   `RECORD`, a `RECORD` entry missing from the wheel, or a mismatch is an error;
//! - `console_scripts` and `gui_scripts` entry points become launcher scripts in `bin/`: plain
//!   Python, shebang `#!<interpreter>`, no shell (the same body as pip's);
//! - the `.dist-info` gets `INSTALLER` and a rewritten `RECORD` (paths relative to
//!   site-packages, generated files included, lines sorted), so `pip` can later list or
//!   uninstall the package.
//!
//! Modes: `0o755` for scripts and for files whose zip entry is a regular file with an
//! execute bit (pip's rule, whatever system made the zip), `0o644` otherwise. No `.pyc`
//! files are produced.
//!
//! A zip entry whose mode says symbolic link is installed as pip installs it: a file
//! holding the target's path. A wheel with such a link leaving the wheel (an absolute
//! target, `..` above its root, or through another link) is refused, naming the entry
//! ([`openshell_archive::PackageLinks`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::metadata::parse_headers;
use crate::wheel::{Target, normalize_name};

/// Where things go, relative to the install prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// `lib/python3.13/site-packages`.
    pub site_packages: String,
    /// `bin`.
    pub scripts: String,
    /// `include/python3.13` (the project name is appended).
    pub headers: String,
    /// Where `.data/data` goes: the prefix root (`""`).
    pub data: String,
    /// The interpreter for shebangs: `/usr/bin/python3.13`.
    pub interpreter: String,
    /// Content of `.dist-info/INSTALLER` (without newline); `None` writes no such file.
    pub installer: Option<String>,
}

impl InstallOptions {
    /// The layout of a Debian-style `/usr/local`-like prefix for `target`, with
    /// `/usr/bin/python3.X` as interpreter.
    pub fn for_target(target: &Target) -> InstallOptions {
        let py = format!("python{}.{}", target.python_major, target.python_minor);
        InstallOptions {
            site_packages: format!("lib/{py}/site-packages"),
            scripts: "bin".into(),
            headers: format!("include/{py}"),
            data: String::new(),
            interpreter: format!("/usr/bin/{py}"),
            installer: Some("openshell".into()),
        }
    }
}

/// One file to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledFile {
    /// Path relative to the prefix.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Contents.
    #[serde(skip)]
    pub contents: Vec<u8>,
}

/// The result of [`install_wheel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelInstall {
    /// Project name as the `.dist-info` directory spells it.
    pub name: String,
    /// Version as the `.dist-info` directory spells it.
    pub version: String,
    /// Path of the `.dist-info` directory relative to the prefix.
    pub dist_info: String,
    /// Files, sorted by path.
    pub files: Vec<InstalledFile>,
}

/// A wheel cannot be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not a readable zip.
    #[error("not a readable wheel: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Reading an entry failed.
    #[error("reading {path} from the wheel: {source}")]
    Read {
        /// Entry.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not exactly one `.dist-info` directory at the top.
    #[error("wheel must contain exactly one top-level .dist-info directory, found {0:?}")]
    DistInfo(Vec<String>),
    /// `WHEEL` is missing or says something unsupported.
    #[error("{0}")]
    WheelFile(String),
    /// A symbolic link that leaves the wheel (installed, like pip, as a file holding
    /// its target, but refused all the same).
    #[error("wheel member {0}")]
    Link(#[from] openshell_archive::LinkError),
    /// An entry path that could escape the target or is malformed.
    #[error("unsafe path {0:?} in wheel")]
    UnsafePath(String),
    /// The same path twice.
    #[error("{0:?} occurs twice in the wheel")]
    Duplicate(String),
    /// A `RECORD` line is malformed.
    #[error("RECORD line {line}: {reason}")]
    Record {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: RecordProblem,
    },
    /// A file is not listed in `RECORD`.
    #[error("{0} is in the wheel but not in RECORD")]
    NotRecorded(String),
    /// A `RECORD` entry is not in the wheel.
    #[error("{0} is listed in RECORD but missing from the wheel")]
    MissingFile(String),
    /// A file does not match `RECORD`.
    #[error("{path}: {what} mismatch: RECORD says {expected}, file has {actual}")]
    Mismatch {
        /// Entry.
        path: String,
        /// `hash` or `size`.
        what: &'static str,
        /// From RECORD.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// `entry_points.txt` is malformed.
    #[error("entry_points.txt line {line}: {reason}")]
    EntryPoint {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Two files want the same installed path.
    #[error("two files install to {0}")]
    Conflict(String),
    /// The interpreter path cannot be a shebang.
    #[error("interpreter {0:?} must be an absolute path without whitespace, at most 127 bytes")]
    Interpreter(String),
}

fn read_zip(wheel: &[u8]) -> Result<BTreeMap<String, (Vec<u8>, u32)>, InstallError> {
    let mut z = zip::ZipArchive::new(Cursor::new(wheel))?;
    let mut out = BTreeMap::new();
    let mut links = openshell_archive::PackageLinks::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i)?;
        let name = f.name()?.into_owned();
        if f.is_dir() {
            continue;
        }
        if name.starts_with('/')
            || name.contains('\\')
            || name.split('/').any(|s| s.is_empty() || s == "." || s == "..")
            || name.contains('\0')
        {
            return Err(InstallError::UnsafePath(name));
        }
        let mut data = Vec::with_capacity(usize::try_from(f.size()).unwrap_or(0).min(1 << 30));
        f.read_to_end(&mut data).map_err(|source| InstallError::Read { path: name.clone(), source })?;
        // pip's `zip_item_is_executable`: the high 16 bits of the external attributes are
        // a regular file's st_mode with an execute bit, whatever system made the zip.
        let st_mode = f.external_attributes() >> 16;
        let mode = if st_mode & 0o170000 == 0o100000 && st_mode & 0o111 != 0 { 0o755 } else { 0o644 };
        if st_mode & 0o170000 == 0o120000 {
            links.symlink(&name, &String::from_utf8_lossy(&data));
        } else {
            links.plain(&name);
        }
        if out.insert(name.clone(), (data, mode)).is_some() {
            return Err(InstallError::Duplicate(name));
        }
    }
    links.check()?;
    Ok(out)
}

/// The `.dist-info` directory name of a wheel's entries.
fn find_dist_info(entries: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<String, InstallError> {
    let tops: BTreeSet<&str> = entries
        .keys()
        .filter_map(|k| k.split_once('/').map(|(top, _)| top))
        .filter(|t| t.ends_with(".dist-info"))
        .collect();
    if tops.len() != 1 {
        return Err(InstallError::DistInfo(tops.into_iter().map(str::to_string).collect()));
    }
    Ok(tops.into_iter().next().map(str::to_string).unwrap_or_default())
}

/// The `METADATA` file of a wheel (for [`crate::resolve::IndexSource::metadata`] when the
/// index has no PEP 658 metadata).
pub fn wheel_metadata(wheel: &[u8]) -> Result<Vec<u8>, InstallError> {
    let entries = read_zip(wheel)?;
    let di = find_dist_info(&entries)?;
    let path = format!("{di}/METADATA");
    entries.get(&path).map(|(d, _)| d.clone()).ok_or(InstallError::MissingFile(path))
}

/// What is wrong with a `RECORD` line (line 0: the whole file).
#[derive(Debug, thiserror::Error)]
pub enum RecordProblem {
    /// The file is not UTF-8.
    #[error("RECORD is not UTF-8")]
    NotUtf8,
    /// A quoted field that is not closed.
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// Not three fields.
    #[error("expected path,hash,size")]
    Fields,
    /// A hash without `=`.
    #[error("hash is not algorithm=digest")]
    Hash,
    /// A hash algorithm other than sha256, sha384 or sha512.
    #[error("unsupported hash algorithm {0:?}")]
    Algorithm(String),
    /// A size that is not a number.
    #[error("size is not a number")]
    Size,
    /// A path on two lines.
    #[error("path listed twice")]
    Twice,
}

/// Minimal CSV (RFC 4180 quoting) for one RECORD line.
fn csv_fields(line: &str) -> Result<Vec<String>, RecordProblem> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err(RecordProblem::UnterminatedQuote);
    }
    out.push(cur);
    Ok(out)
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

struct RecordEntry {
    hash: Option<(String, String)>,
    size: Option<u64>,
}

fn parse_record(data: &[u8]) -> Result<BTreeMap<String, RecordEntry>, InstallError> {
    let text = String::from_utf8(data.to_vec())
        .map_err(|_| InstallError::Record { line: 0, reason: RecordProblem::NotUtf8 })?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: RecordProblem| InstallError::Record { line: line_no, reason };
        let f = csv_fields(line).map_err(err)?;
        if f.len() != 3 {
            return Err(err(RecordProblem::Fields));
        }
        let hash = if f[1].is_empty() {
            None
        } else {
            let (algo, digest) = f[1].split_once('=').ok_or_else(|| err(RecordProblem::Hash))?;
            if !matches!(algo, "sha256" | "sha384" | "sha512") {
                return Err(err(RecordProblem::Algorithm(algo.to_owned())));
            }
            Some((algo.to_string(), digest.to_string()))
        };
        let size = if f[2].is_empty() { None } else { Some(f[2].parse().map_err(|_| err(RecordProblem::Size))?) };
        if out.insert(f[0].clone(), RecordEntry { hash, size }).is_some() {
            return Err(err(RecordProblem::Twice));
        }
    }
    Ok(out)
}

fn digest(algo: &str, data: &[u8]) -> String {
    let d = match algo {
        "sha384" => Sha384::digest(data).to_vec(),
        "sha512" => Sha512::digest(data).to_vec(),
        _ => Sha256::digest(data).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(d)
}

/// `path.relative(from_dir, to)` for `/`-separated prefix-relative paths.
fn relative(from_dir: &str, to: &str) -> String {
    let a: Vec<&str> = from_dir.split('/').filter(|s| !s.is_empty()).collect();
    let b: Vec<&str> = to.split('/').filter(|s| !s.is_empty()).collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&str> = vec![".."; a.len() - common];
    parts.extend(&b[common..]);
    parts.join("/")
}

fn join(dir: &str, rest: &str) -> String {
    if dir.is_empty() { rest.to_string() } else { format!("{}/{rest}", dir.trim_end_matches('/')) }
}

/// One `console_scripts` / `gui_scripts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    /// Script name.
    pub name: String,
    /// Module to import.
    pub module: String,
    /// Attribute path (`main` or `cli.main`).
    pub attr: String,
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_alphabetic() || f == '_') && c.all(|x| x.is_alphanumeric() || x == '_')
}

fn is_dotted(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_identifier)
}

/// The `console_scripts` and `gui_scripts` of an `entry_points.txt`, sorted by name.
pub fn parse_entry_points(text: &str) -> Result<Vec<EntryPoint>, InstallError> {
    let mut section = String::new();
    let mut out: BTreeMap<String, EntryPoint> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |reason: &str| InstallError::EntryPoint { line: i + 1, reason: reason.to_string() };
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            section = s.strip_suffix(']').ok_or_else(|| err("unclosed section"))?.trim().to_string();
            continue;
        }
        if section != "console_scripts" && section != "gui_scripts" {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or_else(|| err("expected name = module:attr"))?;
        let name = name.trim();
        // Drop `[extras]`.
        let value = value.split('[').next().unwrap_or("").trim();
        let (module, attr) = match value.split_once(':') {
            Some((m, a)) => (m.trim(), a.trim()),
            None => (value, ""),
        };
        if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." || name.starts_with('.') {
            return Err(err(&format!("invalid script name {name:?}")));
        }
        if !is_dotted(module) || (!attr.is_empty() && !is_dotted(attr)) {
            return Err(err(&format!("invalid object reference {value:?}")));
        }
        if attr.is_empty() {
            return Err(err("entry point needs module:attr"));
        }
        if out
            .insert(name.to_string(), EntryPoint { name: name.into(), module: module.into(), attr: attr.into() })
            .is_some()
        {
            return Err(err(&format!("script {name:?} defined twice")));
        }
    }
    Ok(out.into_values().collect())
}

/// The launcher script for an entry point (the same body pip and installer write).
pub fn launcher_script(ep: &EntryPoint, interpreter: &str) -> String {
    let import_name = ep.attr.split('.').next().unwrap_or(&ep.attr);
    format!(
        "#!{interpreter}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {import_name}\nif __name__ == \"__main__\":\n    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    sys.exit({attr}())\n",
        module = ep.module,
        attr = ep.attr,
    )
}

/// Compute the files installing `wheel` creates. `options` says where; see the module docs.
pub fn install_wheel(wheel: &[u8], options: &InstallOptions) -> Result<WheelInstall, InstallError> {
    let interp = &options.interpreter;
    if !interp.starts_with('/') || interp.contains(char::is_whitespace) || interp.len() > 127 {
        return Err(InstallError::Interpreter(interp.clone()));
    }
    let entries = read_zip(wheel)?;
    let dist_info = find_dist_info(&entries)?;
    let stem = dist_info.trim_end_matches(".dist-info");
    let (name, version) = stem.split_once('-').ok_or_else(|| InstallError::DistInfo(vec![dist_info.clone()]))?;
    let data_dir = format!("{stem}.data");

    let wheel_file = entries
        .get(&format!("{dist_info}/WHEEL"))
        .ok_or_else(|| InstallError::WheelFile(format!("{dist_info}/WHEEL is missing")))?;
    let headers = parse_headers(&String::from_utf8_lossy(&wheel_file.0));
    let wv = headers.iter().find(|(k, _)| k == "Wheel-Version").map(|(_, v)| v.as_str()).unwrap_or("");
    if wv.split('.').next() != Some("1") {
        return Err(InstallError::WheelFile(format!("unsupported Wheel-Version {wv:?}")));
    }

    let record_path = format!("{dist_info}/RECORD");
    let record =
        parse_record(&entries.get(&record_path).ok_or_else(|| InstallError::MissingFile(record_path.clone()))?.0)?;
    for p in record.keys() {
        if !entries.contains_key(p) && p != &record_path {
            return Err(InstallError::MissingFile(p.clone()));
        }
    }

    let sp = &options.site_packages;
    let mut files: BTreeMap<String, InstalledFile> = BTreeMap::new();
    fn add(files: &mut BTreeMap<String, InstalledFile>, f: InstalledFile) -> Result<(), InstallError> {
        if files.contains_key(&f.path) {
            return Err(InstallError::Conflict(f.path));
        }
        files.insert(f.path.clone(), f);
        Ok(())
    }
    for (path, (data, zmode)) in &entries {
        if *path == record_path
            || *path == format!("{dist_info}/RECORD.jws")
            || *path == format!("{dist_info}/RECORD.p7s")
        {
            continue;
        }
        let rec = record.get(path).ok_or_else(|| InstallError::NotRecorded(path.clone()))?;
        let Some((algo, want)) = &rec.hash else {
            return Err(InstallError::Mismatch {
                path: path.clone(),
                what: "hash",
                expected: "(none)".into(),
                actual: format!("sha256={}", digest("sha256", data)),
            });
        };
        let got = digest(algo, data);
        if &got != want {
            return Err(InstallError::Mismatch {
                path: path.clone(),
                what: "hash",
                expected: format!("{algo}={want}"),
                actual: format!("{algo}={got}"),
            });
        }
        if let Some(size) = rec.size
            && size != data.len() as u64
        {
            return Err(InstallError::Mismatch {
                path: path.clone(),
                what: "size",
                expected: size.to_string(),
                actual: data.len().to_string(),
            });
        }
        let exec = zmode & 0o111 != 0;
        let mode = if exec { 0o755 } else { 0o644 };
        let (dest, mode, contents) = match path.strip_prefix(&format!("{data_dir}/")) {
            None => (join(sp, path), mode, data.clone()),
            Some(rest) => {
                let (scheme, sub) = rest.split_once('/').ok_or_else(|| InstallError::UnsafePath(path.clone()))?;
                match scheme {
                    "purelib" | "platlib" => (join(sp, sub), mode, data.clone()),
                    "scripts" => {
                        let contents = if data.starts_with(b"#!python") {
                            let nl = data.iter().position(|&b| b == b'\n').map_or(data.len(), |i| i + 1);
                            let mut c = format!("#!{interp}\n").into_bytes();
                            c.extend_from_slice(&data[nl..]);
                            c
                        } else {
                            data.clone()
                        };
                        (join(&options.scripts, sub), 0o755, contents)
                    }
                    "headers" => (join(&join(&options.headers, &normalize_name(name)), sub), mode, data.clone()),
                    "data" => (join(&options.data, sub), mode, data.clone()),
                    other => {
                        return Err(InstallError::WheelFile(format!("unknown .data scheme {other:?} in {path}")));
                    }
                }
            }
        };
        add(&mut files, InstalledFile { path: dest, mode, contents })?;
    }
    if let Some((ep, _)) = entries.get(&format!("{dist_info}/entry_points.txt")) {
        for e in parse_entry_points(&String::from_utf8_lossy(ep))? {
            add(
                &mut files,
                InstalledFile {
                    path: join(&options.scripts, &e.name),
                    mode: 0o755,
                    contents: launcher_script(&e, interp).into_bytes(),
                },
            )?;
        }
    }
    let di_path = join(sp, &dist_info);
    if let Some(inst) = &options.installer {
        add(
            &mut files,
            InstalledFile {
                path: join(&di_path, "INSTALLER"),
                mode: 0o644,
                contents: format!("{inst}\n").into_bytes(),
            },
        )?;
    }
    let record_dest = join(&di_path, "RECORD");
    let mut lines: Vec<String> = files
        .values()
        .map(|f| {
            format!(
                "{},sha256={},{}",
                csv_quote(&relative(sp, &f.path)),
                digest("sha256", &f.contents),
                f.contents.len()
            )
        })
        .collect();
    lines.push(format!("{},,", csv_quote(&relative(sp, &record_dest))));
    lines.sort();
    let mut record_text = lines.join("\n");
    record_text.push('\n');
    add(&mut files, InstalledFile { path: record_dest, mode: 0o644, contents: record_text.into_bytes() })?;
    Ok(WheelInstall {
        name: name.to_string(),
        version: version.to_string(),
        dist_info: di_path,
        files: files.into_values().collect(),
    })
}
