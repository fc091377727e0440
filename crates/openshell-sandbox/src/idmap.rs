//! User namespaces: a sandbox's uids and gids are an unprivileged range of the
//! host's, so uid 1000 inside is not the host's uid 1000, and root inside (if a
//! policy ever allowed it) is not root outside.
//!
//! The range comes from `/etc/subuid` and `/etc/subgid` for the dedicated user
//! `openshell` (created with a free range of 65536 when missing, through
//! shadow's `useradd` and `usermod`, which lock those files), or is configured
//! (`OPENSHELL_ID_RANGE=HOST_BASE[:SIZE]`, uids and gids alike). Container id
//! `n` is host id `base + n`.
//!
//! Image layers are stored with the image's own ids; a sandbox sees them through
//! idmapped mounts made with a user namespace of the sandbox's mapping
//! ([`UserNamespace`]), so files owned by root in the image are owned by root
//! inside and by `base` nowhere but in what the sandbox writes. Where the kernel
//! cannot idmap a layer, the layer is unpacked again with its ids shifted (see
//! `rootfs`).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The dedicated user whose subordinate ranges sandboxes use.
pub const DEDICATED_USER: &str = "openshell";
/// Ids per sandbox range: every id an image may use (0 to 65535).
pub const RANGE_SIZE: u32 = 65536;
/// The environment variable that configures the range instead.
pub const RANGE_ENV: &str = "OPENSHELL_ID_RANGE";

/// Container ids `0..size` are host ids `host..host + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub host: u32,
    pub size: u32,
}

/// A sandbox's uid and gid ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub uids: IdRange,
    pub gids: IdRange,
}

/// Why no range could be had.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("{RANGE_ENV}=`{value}`: {why} (expected HOST_BASE or HOST_BASE:SIZE, e.g. 1000000:65536)")]
    Config { value: String, why: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: `{text}` is not NAME:START:COUNT")]
    Malformed { path: String, line: usize, text: String },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("no free range of {RANGE_SIZE} ids above 100000 in {path}")]
    Full { path: String },
    #[error("user namespace for the id mapping: {0}")]
    Namespace(String),
}

impl IdRange {
    /// The host id of container id `id` (`None`: outside the range).
    pub fn to_host(self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.host + id)
    }

    fn check(self, value: &str) -> Result<IdRange, IdMapError> {
        let bad = |why| Err(IdMapError::Config { value: value.to_owned(), why });
        if self.host == 0 {
            return bad("the range must not start at host id 0 (root)");
        }
        if self.size < RANGE_SIZE {
            return bad("a range needs at least 65536 ids (every id an image may use)");
        }
        if self.host.checked_add(self.size).is_none() {
            return bad("the range runs past the largest id");
        }
        Ok(self)
    }
}

impl IdMap {
    /// `HOST_BASE[:SIZE]` for uids and gids alike.
    pub fn parse(value: &str) -> Result<IdMap, IdMapError> {
        let bad = |why| IdMapError::Config { value: value.to_owned(), why };
        let (host, size) = match value.split_once(':') {
            Some((h, s)) => (h, s.parse().map_err(|_| bad("SIZE is not a number"))?),
            None => (value, RANGE_SIZE),
        };
        let host = host.trim().parse().map_err(|_| bad("HOST_BASE is not a number"))?;
        let range = IdRange { host, size }.check(value)?;
        Ok(IdMap { uids: range, gids: range })
    }

    /// The range configured in the environment, else the dedicated user's
    /// (created when missing).
    pub fn for_host() -> Result<IdMap, IdMapError> {
        match std::env::var(RANGE_ENV) {
            Ok(v) if !v.trim().is_empty() => IdMap::parse(&v),
            _ => dedicated(Path::new("/etc/subuid"), Path::new("/etc/subgid")),
        }
    }

    /// The host uid and gid of container ids `(uid, gid)`; an id beyond the range
    /// becomes the range's last (never a host id outside it).
    pub fn to_host(&self, (uid, gid): (u32, u32)) -> (u32, u32) {
        let last = |r: IdRange| r.host + (r.size - 1);
        (self.uids.to_host(uid).unwrap_or(last(self.uids)), self.gids.to_host(gid).unwrap_or(last(self.gids)))
    }
}

/// `NAME:START:COUNT` lines of a subordinate id file.
fn read_subids(path: &Path) -> Result<Vec<(String, u32, u32)>, IdMapError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(IdMapError::Io { path: path.display().to_string(), source }),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed =
            || IdMapError::Malformed { path: path.display().to_string(), line: i + 1, text: line.to_owned() };
        let mut parts = line.split(':');
        let (Some(name), Some(start), Some(count), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let start = start.parse().map_err(|_| malformed())?;
        let count = count.parse().map_err(|_| malformed())?;
        out.push((name.to_owned(), start, count));
    }
    Ok(out)
}

/// The dedicated user's range in a subordinate id file, if it has one big enough.
fn range_of(entries: &[(String, u32, u32)]) -> Option<IdRange> {
    entries
        .iter()
        .filter(|(name, start, count)| name == DEDICATED_USER && *count >= RANGE_SIZE && *start > 0)
        .map(|&(_, host, size)| IdRange { host, size })
        .next()
}

/// The first free, aligned range of [`RANGE_SIZE`] ids from 100000 up in both files.
fn free_range(taken: &[(String, u32, u32)]) -> Option<u32> {
    let mut start = 100_000u64.next_multiple_of(u64::from(RANGE_SIZE));
    loop {
        let end = start + u64::from(RANGE_SIZE);
        if end > u64::from(u32::MAX) {
            return None;
        }
        let clash = taken.iter().find(|(_, s, c)| u64::from(*s) < end && start < u64::from(*s) + u64::from(*c));
        match clash {
            None => return u32::try_from(start).ok(),
            Some((_, s, c)) => start = (u64::from(*s) + u64::from(*c)).next_multiple_of(u64::from(RANGE_SIZE)),
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), IdMapError> {
    let command = format!("{program} {}", args.join(" "));
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| IdMapError::Command { command: command.clone(), message: e.to_string() })?;
    if out.status.success() {
        return Ok(());
    }
    Err(IdMapError::Command { command, message: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
}

/// The dedicated user's ranges; the user and a free range are made when missing.
fn dedicated(subuid: &Path, subgid: &Path) -> Result<IdMap, IdMapError> {
    if let (Some(uids), Some(gids)) = (range_of(&read_subids(subuid)?), range_of(&read_subids(subgid)?)) {
        return Ok(IdMap { uids, gids });
    }
    let known = std::fs::read_to_string("/etc/passwd")
        .map_err(|source| IdMapError::Io { path: "/etc/passwd".into(), source })?
        .lines()
        .any(|l| l.split(':').next() == Some(DEDICATED_USER));
    if !known {
        run(
            "useradd",
            &[
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "openshell sandboxes (subordinate ids)",
                DEDICATED_USER,
            ],
        )?;
    }
    let mut taken = read_subids(subuid)?;
    taken.extend(read_subids(subgid)?);
    let start = free_range(&taken).ok_or_else(|| IdMapError::Full { path: subuid.display().to_string() })?;
    let range = format!("{start}-{}", start + RANGE_SIZE - 1);
    run("usermod", &["--add-subuids", &range, "--add-subgids", &range, DEDICATED_USER])?;
    let uids = range_of(&read_subids(subuid)?);
    let gids = range_of(&read_subids(subgid)?);
    match (uids, gids) {
        (Some(uids), Some(gids)) => Ok(IdMap { uids, gids }),
        _ => Err(IdMapError::Command {
            command: format!("usermod --add-subuids {range} --add-subgids {range} {DEDICATED_USER}"),
            message: format!("{} or {} still has no range for {DEDICATED_USER}", subuid.display(), subgid.display()),
        }),
    }
}

/// A user namespace with a sandbox's mapping, for idmapped mounts. Made by a
/// short-lived process that enters a new user namespace (util-linux `unshare`;
/// a process is needed because a multi-threaded process cannot change its own),
/// whose maps are written from here; the descriptor keeps the namespace. A
/// gateway makes one for all its sandboxes (they share its map) and hands it to
/// each supervisor, which then makes none of its own.
#[derive(Debug)]
pub struct UserNamespace {
    fd: OwnedFd,
    map: IdMap,
}

impl UserNamespace {
    /// A namespace received from its maker, who says it has `map`.
    pub fn from_fd(fd: OwnedFd, map: IdMap) -> UserNamespace {
        UserNamespace { fd, map }
    }

    /// Its descriptor (to pass on, or to idmap a mount with).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// The mapping it has.
    pub fn map(&self) -> &IdMap {
        &self.map
    }

    pub fn new(map: &IdMap) -> Result<UserNamespace, IdMapError> {
        let ns_err = |what: String| IdMapError::Namespace(what);
        let mut child = std::process::Command::new("unshare")
            .args(["--user", "sleep", "60"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| ns_err(format!("starting `unshare --user` (util-linux): {e}")))?;
        let made = (|| {
            let pid = child.id();
            let ours = std::fs::read_link("/proc/self/ns/user").map_err(|e| ns_err(e.to_string()))?;
            let link = format!("/proc/{pid}/ns/user");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                match std::fs::read_link(&link) {
                    Ok(theirs) if theirs != ours => break,
                    _ if std::time::Instant::now() > deadline => {
                        return Err(ns_err("`unshare --user` did not enter a new user namespace".into()));
                    }
                    _ => std::thread::sleep(std::time::Duration::from_micros(100)),
                }
            }
            let write = |file: &str, range: IdRange| {
                let path = format!("/proc/{pid}/{file}");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(format!("0 {} {}\n", range.host, range.size).as_bytes()))
                    .map_err(|e| ns_err(format!("{path}: {e}")))
            };
            write("uid_map", map.uids)?;
            write("gid_map", map.gids)?;
            std::fs::File::open(&link)
                .map(|f| UserNamespace { fd: f.into(), map: *map })
                .map_err(|e| ns_err(format!("{link}: {e}")))
        })();
        let _ = child.kill();
        let _ = child.wait();
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_ranges_are_checked() {
        let map = IdMap::parse("1000000").expect("base alone");
        assert_eq!(map.uids, IdRange { host: 1_000_000, size: RANGE_SIZE });
        assert_eq!(map.to_host((1000, 1000)), (1_001_000, 1_001_000));
        assert_eq!(map.to_host((70000, 0)), (1_065_535, 1_000_000), "beyond the range: its last id");
        assert!(IdMap::parse("0:65536").is_err(), "host root is never in a range");
        assert!(IdMap::parse("100000:1000").is_err(), "too small");
        assert!(IdMap::parse("4294967000:65536").is_err(), "past the end");
        assert!(IdMap::parse("x").is_err());
    }

    #[test]
    fn the_first_free_aligned_range_is_found() {
        assert_eq!(free_range(&[]), Some(131072));
        let taken = vec![("alice".to_owned(), 100000, 65536), ("bob".to_owned(), 165536, 65536)];
        assert_eq!(free_range(&taken), Some(262144));
        let entries = vec![("openshell".to_owned(), 262144, 65536)];
        assert_eq!(range_of(&entries), Some(IdRange { host: 262144, size: 65536 }));
        assert_eq!(range_of(&[("openshell".to_owned(), 262144, 10)]), None, "too small a range is not used");
    }

    #[test]
    fn subordinate_id_files_are_parsed_strictly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("subuid");
        std::fs::write(&path, "# comment\nalice:100000:65536\n\n").expect("write");
        assert_eq!(read_subids(&path).expect("parse"), vec![("alice".to_owned(), 100000, 65536)]);
        std::fs::write(&path, "alice:100000\n").expect("write");
        assert!(matches!(read_subids(&path), Err(IdMapError::Malformed { line: 1, .. })));
        assert!(read_subids(&dir.path().join("missing")).expect("missing is empty").is_empty());
    }
}
