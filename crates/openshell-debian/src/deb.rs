//! Reading `.deb` files without dpkg: the `ar` container, the control archive and a
//! streaming walk over the data archive.
//!
//! A `.deb` is an `ar` archive with `debian-binary` (`2.0\n`), `control.tar[.gz|.xz|.zst]`
//! and `data.tar[.gz|.xz|.zst]`, in that order (members starting with `_` are skipped, as
//! dpkg does). [`DebReader::new`] reads up to the data member and parses the control
//! archive; [`DebReader::for_each_entry`] then streams the data archive entry by entry.
//!
//! Maintainer scripts are never run: [`DebControl::maintainer_scripts`] only names those
//! present so the caller can report them.
//!
//! Data paths are normalized: no leading `./` or `/`, no trailing `/`, no empty or `.`
//! components; a `..` component is an error. The root directory entry (`./`) is skipped.
//! Hard link targets are normalized the same way; symlink targets are kept verbatim.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::control::{self, ControlError, Paragraph};
use crate::decompress::{self, Compression};

/// Limit on the compressed control member and on its unpacked files (each).
const CONTROL_LIMIT: u64 = 64 << 20;

/// A boxed error returned by the caller's entry callback.
pub type CallbackError = Box<dyn std::error::Error + Send + Sync>;

/// Errors from reading a `.deb`. Each names the input (and member or entry).
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// Reading the input failed.
    #[error("{origin}: read error: {source}")]
    Io {
        /// The input's name.
        origin: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The container is not a valid `.deb`.
    #[error("{origin}: not a valid .deb: {message}")]
    Format {
        /// The input's name.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A tar member could not be read (including decompression errors).
    #[error("{origin}: {member}: {source}")]
    Tar {
        /// The input's name.
        origin: String,
        /// The `ar` member (`control.tar.xz`, `data.tar.zst`, ...).
        member: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A tar entry is unacceptable (bad path, unsupported type, ...).
    #[error("{origin}: {member}: entry `{path}`: {message}")]
    Entry {
        /// The input's name.
        origin: String,
        /// The `ar` member.
        member: String,
        /// The entry's path as stored.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The control file does not parse.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The caller's entry callback failed.
    #[error("{origin}: entry `{path}`: {source}")]
    Callback {
        /// The input's name.
        origin: String,
        /// The normalized entry path.
        path: String,
        /// The callback's error.
        #[source]
        source: CallbackError,
    },
}

/// A line of the `md5sums` control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Md5Sum {
    /// The file's path as listed (relative, no leading `/`).
    pub path: String,
    /// Lower-case hex MD5.
    pub md5: String,
}

/// A line of the `conffiles` control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conffile {
    /// Absolute path of the configuration file.
    pub path: String,
    /// Flags before the path (such as `remove-on-upgrade`).
    pub flags: Vec<String>,
}

/// Names of the maintainer scripts dpkg would run.
pub const MAINTAINER_SCRIPTS: [&str; 5] = ["preinst", "postinst", "prerm", "postrm", "config"];

/// The control archive of a `.deb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebControl {
    /// The `control` file.
    pub control: Paragraph,
    /// `md5sums`, in file order (empty when absent).
    pub md5sums: Vec<Md5Sum>,
    /// `conffiles`, in file order (empty when absent).
    pub conffiles: Vec<Conffile>,
    /// Maintainer scripts present (from [`MAINTAINER_SCRIPTS`], in that order). Never run.
    pub maintainer_scripts: Vec<String>,
    /// Every regular file of the control archive by name (`control`, `md5sums`,
    /// `postinst`, `triggers`, `shlibs`, ...).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Name of the control member (`control.tar.xz`, ...).
    pub control_member: String,
    /// Name of the data member (`data.tar.xz`, ...).
    pub data_member: String,
}

/// The type of a data archive entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to an earlier entry.
    Hardlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
}

/// Metadata of one data archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataEntry {
    /// Normalized path (`usr/bin/env`).
    pub path: String,
    /// The entry type.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Owner name, if recorded.
    pub uname: Option<String>,
    /// Group name, if recorded.
    pub gname: Option<String>,
    /// Content size (0 for everything but regular files).
    pub size: u64,
    /// Modification time (seconds since the epoch) as recorded.
    pub mtime: u64,
    /// Symlink target (verbatim) or hard link target (normalized).
    pub link_target: Option<String>,
    /// Device numbers for character and block devices.
    pub device: Option<(u32, u32)>,
}

/// An `ar` member header.
struct Member {
    name: String,
    size: u64,
}

/// A `.deb` being read: control parsed, positioned at the start of the data member.
pub struct DebReader<R: Read> {
    origin: String,
    reader: R,
    control: DebControl,
    data_size: u64,
}

impl<R: Read> DebReader<R> {
    /// Reads the `ar` header, `debian-binary` and the control archive; stops at the data
    /// member. `origin` names the input in errors.
    pub fn new(origin: impl Into<String>, mut reader: R) -> Result<DebReader<R>, DebError> {
        let origin = origin.into();
        let fmt_err = |message: String| DebError::Format { origin: origin.clone(), message };
        let mut magic = [0u8; 8];
        read_exact_or(&origin, &mut reader, &mut magic, "ar magic")?;
        if &magic != b"!<arch>\n" {
            return Err(fmt_err("not an ar archive (bad magic)".into()));
        }
        let first = next_member(&origin, &mut reader)?.ok_or_else(|| fmt_err("empty ar archive".into()))?;
        if first.name != "debian-binary" {
            return Err(fmt_err(format!("first member is `{}`, expected `debian-binary`", first.name)));
        }
        let version = read_member(&origin, &mut reader, &first, 1024)?;
        let major = version.split(|&b| b == b'.').next().unwrap_or_default();
        if major != b"2" {
            return Err(fmt_err(format!(
                "unsupported format version `{}` (expected 2.x)",
                String::from_utf8_lossy(&version).trim()
            )));
        }
        let control_m = skip_underscore(&origin, &mut reader)?
            .ok_or_else(|| fmt_err("no control member after debian-binary".into()))?;
        let control_comp = tar_member_compression(&control_m.name, "control.tar")
            .ok_or_else(|| fmt_err(format!("expected control.tar[.gz|.xz|.zst], found `{}`", control_m.name)))?;
        let control_data = read_member(&origin, &mut reader, &control_m, CONTROL_LIMIT)?;
        let data_m = skip_underscore(&origin, &mut reader)?
            .ok_or_else(|| fmt_err(format!("no data member after {}", control_m.name)))?;
        if tar_member_compression(&data_m.name, "data.tar").is_none() {
            return Err(fmt_err(format!("expected data.tar[.gz|.xz|.zst], found `{}`", data_m.name)));
        }
        let control = parse_control_tar(&origin, &control_m.name, control_comp, &control_data, data_m.name.clone())?;
        Ok(DebReader { origin, reader, control, data_size: data_m.size })
    }

    /// The control archive.
    pub fn control(&self) -> &DebControl {
        &self.control
    }

    /// Streams the data archive: calls `f` with each entry's metadata and a reader of its
    /// contents (empty for non-files), in archive order, skipping the root directory.
    /// Returns the control archive. Unread contents are skipped.
    pub fn for_each_entry<F, E>(self, mut f: F) -> Result<DebControl, DebError>
    where
        F: FnMut(&DataEntry, &mut dyn Read) -> Result<(), E>,
        E: Into<CallbackError>,
    {
        let DebReader { origin, reader, control, data_size } = self;
        let member = control.data_member.clone();
        let comp = tar_member_compression(&member, "data.tar").unwrap_or(Compression::None);
        let tar_err = |source: io::Error| DebError::Tar { origin: origin.clone(), member: member.clone(), source };
        let limited = reader.take(data_size);
        let decoded = decompress::reader(comp, limited).map_err(tar_err)?;
        let mut archive = tar::Archive::new(decoded);
        for entry in archive.entries().map_err(tar_err)? {
            let mut entry = entry.map_err(tar_err)?;
            let Some(meta) = entry_meta(&origin, &member, &entry)? else { continue };
            f(&meta, &mut entry).map_err(|e| DebError::Callback {
                origin: origin.clone(),
                path: meta.path.clone(),
                source: e.into(),
            })?;
        }
        Ok(control)
    }

    /// The control archive and the data archive as an uncompressed tar stream (for
    /// callers that keep the tar itself, e.g. to reference file contents by offset).
    pub fn into_data_tar(self) -> Result<(DebControl, Box<dyn Read>), DebError>
    where
        R: 'static,
    {
        let DebReader { origin, reader, control, data_size } = self;
        let member = control.data_member.clone();
        let comp = tar_member_compression(&member, "data.tar").unwrap_or(Compression::None);
        let decoded = decompress::reader(comp, reader.take(data_size)).map_err(|source| DebError::Tar {
            origin: origin.clone(),
            member: member.clone(),
            source,
        })?;
        Ok((control, Box::new(decoded)))
    }

    /// Reads every data entry's metadata (contents skipped).
    pub fn entries(self) -> Result<(DebControl, Vec<DataEntry>), DebError> {
        let mut out = Vec::new();
        let control = self.for_each_entry(|e, _| {
            out.push(e.clone());
            Ok::<(), CallbackError>(())
        })?;
        Ok((control, out))
    }
}

fn read_exact_or(origin: &str, r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), DebError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            DebError::Format { origin: origin.to_owned(), message: format!("truncated ({what})") }
        } else {
            DebError::Io { origin: origin.to_owned(), source: e }
        }
    })
}

/// Reads the next member header; `None` at a clean end of archive.
fn next_member(origin: &str, r: &mut impl Read) -> Result<Option<Member>, DebError> {
    let mut hdr = [0u8; 60];
    let mut got = 0;
    while got < hdr.len() {
        match r.read(&mut hdr[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DebError::Io { origin: origin.to_owned(), source: e }),
        }
    }
    let fmt_err = |message: String| DebError::Format { origin: origin.to_owned(), message };
    if got == 0 {
        return Ok(None);
    }
    if got < hdr.len() {
        return Err(fmt_err("truncated ar member header".into()));
    }
    if &hdr[58..60] != b"`\n" {
        return Err(fmt_err("bad ar member header (missing terminator)".into()));
    }
    let name = String::from_utf8_lossy(&hdr[..16]).trim_end().trim_end_matches('/').to_owned();
    let size_s = String::from_utf8_lossy(&hdr[48..58]).trim().to_owned();
    let size = size_s.parse::<u64>().map_err(|_| fmt_err(format!("member `{name}`: bad size `{size_s}`")))?;
    if name.is_empty() || name.starts_with('#') {
        return Err(fmt_err(format!("unsupported ar member name `{name}`")));
    }
    Ok(Some(Member { name, size }))
}

/// Reads a whole member (and its padding byte), refusing members over `limit`.
fn read_member(origin: &str, r: &mut impl Read, m: &Member, limit: u64) -> Result<Vec<u8>, DebError> {
    if m.size > limit {
        return Err(DebError::Format {
            origin: origin.to_owned(),
            message: format!("member `{}` is {} bytes, over the {limit}-byte limit", m.name, m.size),
        });
    }
    let mut buf = vec![0u8; usize::try_from(m.size).unwrap_or(usize::MAX)];
    read_exact_or(origin, r, &mut buf, &m.name)?;
    skip_padding(origin, r, m)?;
    Ok(buf)
}

fn skip_padding(origin: &str, r: &mut impl Read, m: &Member) -> Result<(), DebError> {
    if m.size % 2 == 1 {
        let mut pad = [0u8; 1];
        read_exact_or(origin, r, &mut pad, &m.name)?;
    }
    Ok(())
}

/// The next member whose name does not start with `_` (those are skipped).
fn skip_underscore(origin: &str, r: &mut impl Read) -> Result<Option<Member>, DebError> {
    loop {
        let Some(m) = next_member(origin, r)? else { return Ok(None) };
        if !m.name.starts_with('_') {
            return Ok(Some(m));
        }
        let skipped = io::copy(&mut r.take(m.size), &mut io::sink())
            .map_err(|e| DebError::Io { origin: origin.to_owned(), source: e })?;
        if skipped != m.size {
            return Err(DebError::Format {
                origin: origin.to_owned(),
                message: format!("truncated member `{}`", m.name),
            });
        }
        skip_padding(origin, r, &m)?;
    }
}

fn tar_member_compression(name: &str, base: &str) -> Option<Compression> {
    match name.strip_prefix(base)? {
        "" => Some(Compression::None),
        ".gz" => Some(Compression::Gzip),
        ".xz" => Some(Compression::Xz),
        ".zst" => Some(Compression::Zstd),
        _ => None,
    }
}

/// A tar path with a `..` component (refused: it could leave the root).
#[derive(Debug, thiserror::Error)]
#[error("path contains `..`")]
struct ParentComponent;

/// Normalizes a tar path: `None` for the root.
fn normalize(raw: &str) -> Result<Option<String>, ParentComponent> {
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(ParentComponent),
            c => parts.push(c),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

fn entry_meta<R: Read>(origin: &str, member: &str, entry: &tar::Entry<'_, R>) -> Result<Option<DataEntry>, DebError> {
    let raw_path = entry.path_bytes();
    let shown = String::from_utf8_lossy(&raw_path).into_owned();
    let bad = |message: String| DebError::Entry {
        origin: origin.to_owned(),
        member: member.to_owned(),
        path: shown.clone(),
        message,
    };
    let raw = std::str::from_utf8(&raw_path).map_err(|_| bad("path is not UTF-8".into()))?;
    let header = entry.header();
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => EntryKind::Hardlink,
        tar::EntryType::Char => EntryKind::CharDevice,
        tar::EntryType::Block => EntryKind::BlockDevice,
        tar::EntryType::Fifo => EntryKind::Fifo,
        tar::EntryType::XGlobalHeader => return Ok(None),
        other => return Err(bad(format!("unsupported tar entry type {other:?}"))),
    };
    let Some(path) = normalize(raw).map_err(|e| bad(e.to_string()))? else {
        if kind == EntryKind::Dir {
            return Ok(None);
        }
        return Err(bad("empty path".into()));
    };
    let num = |r: io::Result<u64>, what: &str| r.map_err(|e| bad(format!("bad {what}: {e}")));
    let link_target = match kind {
        EntryKind::Symlink | EntryKind::Hardlink => {
            let l = entry.link_name_bytes().ok_or_else(|| bad("link without a target".into()))?;
            let l = std::str::from_utf8(&l).map_err(|_| bad("link target is not UTF-8".into()))?.to_owned();
            if kind == EntryKind::Hardlink {
                Some(
                    normalize(&l)
                        .map_err(|m| bad(format!("hard link target: {m}")))?
                        .ok_or_else(|| bad("hard link to the root".into()))?,
                )
            } else {
                Some(l)
            }
        }
        _ => None,
    };
    let device = match kind {
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let major = header.device_major().map_err(|e| bad(format!("bad device major: {e}")))?.unwrap_or(0);
            let minor = header.device_minor().map_err(|e| bad(format!("bad device minor: {e}")))?.unwrap_or(0);
            Some((major, minor))
        }
        _ => None,
    };
    let name = |b: Option<&[u8]>| b.filter(|b| !b.is_empty()).map(|b| String::from_utf8_lossy(b).into_owned());
    Ok(Some(DataEntry {
        path,
        kind,
        mode: num(header.mode().map(u64::from), "mode")? as u32 & 0o7777,
        uid: num(header.uid(), "uid")?,
        gid: num(header.gid(), "gid")?,
        uname: name(header.username_bytes()),
        gname: name(header.groupname_bytes()),
        size: if kind == EntryKind::File { entry.size() } else { 0 },
        mtime: num(header.mtime(), "mtime")?,
        link_target,
        device,
    }))
}

fn parse_control_tar(
    origin: &str,
    member: &str,
    comp: Compression,
    data: &[u8],
    data_member: String,
) -> Result<DebControl, DebError> {
    let tar_err = |source: io::Error| DebError::Tar { origin: origin.to_owned(), member: member.to_owned(), source };
    let decoded = decompress::reader(comp, data).map_err(tar_err)?;
    let mut archive = tar::Archive::new(decoded);
    let mut files = BTreeMap::new();
    for entry in archive.entries().map_err(tar_err)? {
        let entry = entry.map_err(tar_err)?;
        let Some(meta) = entry_meta(origin, member, &entry)? else { continue };
        if meta.kind != EntryKind::File {
            continue;
        }
        if meta.size > CONTROL_LIMIT {
            return Err(DebError::Entry {
                origin: origin.to_owned(),
                member: member.to_owned(),
                path: meta.path,
                message: format!("{} bytes, over the {CONTROL_LIMIT}-byte limit", meta.size),
            });
        }
        let mut buf = Vec::new();
        entry.take(CONTROL_LIMIT).read_to_end(&mut buf).map_err(tar_err)?;
        files.insert(meta.path, buf);
    }
    let ctl_origin = format!("{origin}: {member}: control");
    let Some(ctl) = files.get("control") else {
        return Err(DebError::Format { origin: origin.to_owned(), message: format!("{member} has no `control` file") });
    };
    let control = control::parse_single(&ctl_origin, control::utf8(&ctl_origin, ctl)?)?;
    let text_of = |name: &str| -> Result<Option<&str>, ControlError> {
        let o = format!("{origin}: {member}: {name}");
        files.get(name).map(|b| control::utf8(&o, b)).transpose()
    };
    let mut md5sums = Vec::new();
    if let Some(text) = text_of("md5sums")? {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = || ControlError {
                origin: format!("{origin}: {member}: md5sums"),
                line: i + 1,
                message: format!("expected `<md5>  <path>`, found `{line}`"),
            };
            let (md5, path) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let path = path.trim_start();
            if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) || path.is_empty() {
                return Err(bad().into());
            }
            md5sums.push(Md5Sum { path: path.to_owned(), md5: md5.to_ascii_lowercase() });
        }
    }
    let mut conffiles = Vec::new();
    if let Some(text) = text_of("conffiles")? {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (flags, path) = match line.find('/') {
                Some(i) => (&line[..i], &line[i..]),
                None => ("", line),
            };
            conffiles
                .push(Conffile { path: path.to_owned(), flags: flags.split_whitespace().map(str::to_owned).collect() });
        }
    }
    let maintainer_scripts =
        MAINTAINER_SCRIPTS.iter().filter(|s| files.contains_key(**s)).map(|s| (*s).to_owned()).collect();
    Ok(DebControl {
        control,
        md5sums,
        conffiles,
        maintainer_scripts,
        files,
        control_member: member.to_owned(),
        data_member,
    })
}
