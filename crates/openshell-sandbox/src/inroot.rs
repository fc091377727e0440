//! Paths inside a sandbox's root, resolved without leaving it.
//!
//! A sandbox writes into its own writable layer, so any path the supervisor
//! resolves in that layer (or in the overlay on top of it) may have been
//! replaced by a symbolic link since the last start: `/sandbox/a -> /tmp` made
//! `/sandbox/a/x` resolve to the host's `/tmp/x` when it was looked up as a
//! string on the host. Here nothing is resolved as a host string:
//!
//! - [`check_writable_layer`] refuses a path one of whose components is a
//!   symbolic link in the writable layer (a link the sandbox planted). Links that
//!   come with the image (lower layers) are followed, inside the root;
//! - [`ensure_dir`] resolves (and creates) the directory inside the root with
//!   `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (through `pathrs`), so
//!   even a link that slipped past the check cannot point out of the root;
//! - [`bind_handle`] mounts the directory through the handle that resolution
//!   opened (`open_tree` on the descriptor, `move_mount`), never through a
//!   string resolved again.

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

/// Why a path inside a sandbox's root could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    #[error(
        "policy path {path}: {link} is a symbolic link the sandbox made in its writable layer; refusing to start through it (delete and recreate the sandbox)"
    )]
    PlantedLink { path: String, link: String },
    #[error("policy path {path}: {component} exists and is not a directory")]
    NotDirectory { path: String, component: String },
    #[error("policy path `{path}` is not an absolute path without `.` or `..`")]
    NotCanonical { path: String },
    #[error("policy path {path}: resolving {component} inside {}: {source}", root.display())]
    Resolve {
        path: String,
        component: String,
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read-write path {path}: mounting it at {}: {source}", at.display())]
    Bind {
        path: String,
        at: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The components of an absolute, canonical path (`/a/b` → `a`, `b`).
fn components(path: &str) -> Result<Vec<&str>, InRootError> {
    let not_canonical = || InRootError::NotCanonical { path: path.to_owned() };
    let rest = path.strip_prefix('/').ok_or_else(not_canonical)?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = rest.split('/').collect();
    if names.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return Err(not_canonical());
    }
    Ok(names)
}

/// Refuses `path` when one of its components is a symbolic link in the
/// writable layer `upper` (made by the sandbox, not by the image). Walks the
/// layer one component at a time without following anything: a component
/// missing from the layer (or a whiteout) ends the walk, since nothing below it
/// can be in the layer either.
pub fn check_writable_layer(upper: &Path, path: &str) -> Result<(), InRootError> {
    let names = components(path)?;
    let resolve = |component: &str, source: std::io::Error| InRootError::Resolve {
        path: path.to_owned(),
        component: component.to_owned(),
        root: upper.to_path_buf(),
        source,
    };
    let mut dir = rustix::fs::open(upper, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| resolve("/", e.into()))?;
    let mut walked = String::new();
    for name in names {
        walked.push('/');
        walked.push_str(name);
        let stat = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(resolve(&walked, e.into())),
        };
        let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        match kind {
            rustix::fs::FileType::Symlink => {
                return Err(InRootError::PlantedLink { path: path.to_owned(), link: walked });
            }
            rustix::fs::FileType::Directory => {
                dir = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| resolve(&walked, e.into()))?;
            }
            // A whiteout (character device 0:0) hides the lower layers' entry: the
            // path does not exist in the sandbox's view.
            rustix::fs::FileType::CharacterDevice if stat.st_rdev == 0 => return Ok(()),
            _ => return Err(InRootError::NotDirectory { path: path.to_owned(), component: walked }),
        }
    }
    Ok(())
}

/// The directory `path` inside `root`, created (each missing component, owned
/// by `owner`) when missing. Every lookup stays inside the root: links are
/// followed as if `root` were `/`, magic links are refused.
pub fn ensure_dir(root: &Path, path: &str, owner: (u32, u32)) -> Result<pathrs::Handle, InRootError> {
    let names = components(path)?;
    let err = |component: &str, source: std::io::Error| InRootError::Resolve {
        path: path.to_owned(),
        component: component.to_owned(),
        root: root.to_path_buf(),
        source,
    };
    let pathrs_err = |component: &str, e: pathrs::error::Error| err(component, std::io::Error::other(e));
    let inroot = pathrs::Root::open(root).map_err(|e| pathrs_err("/", e))?;
    let mut handle = inroot.resolve("/").map_err(|e| pathrs_err("/", e))?;
    let mut walked = String::new();
    for name in names {
        walked.push('/');
        walked.push_str(name);
        handle = match inroot.resolve(&walked) {
            Ok(h) => h,
            Err(e) if e.kind() == pathrs::error::ErrorKind::OsError(Some(rustix::io::Errno::NOENT.raw_os_error())) => {
                let made = inroot
                    .mkdir_all(&walked, &std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| pathrs_err(&walked, e))?;
                rustix::fs::chownat(
                    made.as_fd(),
                    "",
                    Some(rustix::fs::Uid::from_raw(owner.0)),
                    Some(rustix::fs::Gid::from_raw(owner.1)),
                    AtFlags::EMPTY_PATH,
                )
                .map_err(|e| err(&walked, e.into()))?;
                made
            }
            Err(e) => return Err(pathrs_err(&walked, e)),
        };
        let stat = rustix::fs::fstat(&handle).map_err(|e| err(&walked, e.into()))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Directory {
            return Err(InRootError::NotDirectory { path: path.to_owned(), component: walked });
        }
    }
    Ok(handle)
}

/// Writes `content` to the file `path` inside `root` (its directory made as by
/// [`ensure_dir`]; the file itself never followed if it is a link), owned by
/// `owner` with `mode`.
pub fn write_file(root: &Path, path: &str, content: &[u8], owner: (u32, u32), mode: u32) -> Result<(), InRootError> {
    let names = components(path)?;
    let Some((name, parents)) = names.split_last() else {
        return Err(InRootError::NotCanonical { path: path.to_owned() });
    };
    let parent = format!("/{}", parents.join("/"));
    let dir = ensure_dir(root, &parent, owner)?;
    let err = |source: std::io::Error| InRootError::Resolve {
        path: path.to_owned(),
        component: path.to_owned(),
        root: root.to_path_buf(),
        source,
    };
    let _ = rustix::fs::unlinkat(&dir, *name, AtFlags::empty());
    let fd = rustix::fs::openat(
        &dir,
        *name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| err(e.into()))?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, content).map_err(err)?;
    rustix::fs::fchown(&file, Some(rustix::fs::Uid::from_raw(owner.0)), Some(rustix::fs::Gid::from_raw(owner.1)))
        .map_err(|e| err(e.into()))?;
    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(|e| err(e.into()))
}

/// Mounts the directory `handle` refers to at `at` (an existing directory): a
/// clone of the mount tree at that handle, moved into place.
pub fn bind_handle(handle: &pathrs::Handle, path: &str, at: &Path) -> Result<(), InRootError> {
    use rustix::mount::{MoveMountFlags, OpenTreeFlags};
    let bind = |source: std::io::Error| InRootError::Bind { path: path.to_owned(), at: at.to_path_buf(), source };
    let tree = rustix::mount::open_tree(
        handle.as_fd(),
        "",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| bind(e.into()))?;
    rustix::mount::move_mount(tree.as_fd(), "", rustix::fs::CWD, at, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(|e| bind(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_canonical() {
        assert_eq!(components("/sandbox/a").expect("ok"), ["sandbox", "a"]);
        for bad in ["sandbox", "/a/../b", "/a/./b", ""] {
            assert!(matches!(components(bad), Err(InRootError::NotCanonical { .. })), "{bad}");
        }
    }

    #[test]
    fn links_in_the_writable_layer_are_refused_and_missing_components_are_fine() {
        let upper = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(upper.path().join("sandbox/ok")).expect("mkdir");
        std::os::unix::fs::symlink("/tmp", upper.path().join("sandbox/a")).expect("symlink");
        std::fs::write(upper.path().join("sandbox/file"), "x").expect("file");
        check_writable_layer(upper.path(), "/sandbox/ok/x").expect("no link");
        check_writable_layer(upper.path(), "/sandbox/missing/x").expect("missing");
        let planted = check_writable_layer(upper.path(), "/sandbox/a/x").expect_err("planted");
        assert!(matches!(&planted, InRootError::PlantedLink { link, .. } if link == "/sandbox/a"), "{planted}");
        let file = check_writable_layer(upper.path(), "/sandbox/file/x").expect_err("file");
        assert!(matches!(file, InRootError::NotDirectory { .. }), "{file}");
    }

    #[test]
    fn directories_are_made_inside_the_root_whatever_the_links_say() {
        let base = tempfile::tempdir().expect("tempdir");
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(root.join("sandbox")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        // The links' targets exist inside the root too (as links of an image point).
        std::fs::create_dir_all(root.join(outside.strip_prefix("/").expect("absolute"))).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("sandbox/abs")).expect("symlink");
        let up = "../".repeat(16);
        std::os::unix::fs::symlink(format!("{up}{}", outside.display()), root.join("sandbox/rel")).expect("symlink");
        std::os::unix::fs::symlink("/nowhere", root.join("sandbox/dangling")).expect("symlink");
        for path in ["/sandbox/abs/x", "/sandbox/rel/y", "/sandbox/plain/x"] {
            ensure_dir(&root, path, (0, 0)).expect(path);
        }
        let err = ensure_dir(&root, "/sandbox/dangling/x", (0, 0)).expect_err("a dangling link is refused");
        assert!(err.to_string().contains("/sandbox/dangling"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).expect("readdir").count(), 0, "nothing is made outside the root");
        let inside = root.join(outside.strip_prefix("/").expect("absolute"));
        assert!(inside.join("x").is_dir() && inside.join("y").is_dir(), "both links followed inside the root");
        assert!(root.join("sandbox/plain/x").is_dir());
        std::fs::write(root.join("sandbox/file"), "x").expect("file");
        assert!(matches!(ensure_dir(&root, "/sandbox/file", (0, 0)), Err(InRootError::NotDirectory { .. })));
    }
}
