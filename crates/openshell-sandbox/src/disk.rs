//! A sandbox's writable layer on a filesystem of its own size, so that what a
//! sandbox writes (its overlay's upper directory: `/sandbox` and every other
//! read-write path that persists) stops at the policy's `resources.disk` with
//! ENOSPC, and the host's disk is never spent beyond it.
//!
//! Each sandbox has a sparse ext4 image in its directory, made at creation by
//! copying a template (made once per size with `mkfs.ext4`, e2fsprogs: an image
//! of 10 GiB is about 4 MiB of metadata, copied hole by hole and synced in about
//! 4 ms). A spare copy of each size is made ahead, after a create
//! ([`Disk::make_spare`]), so that the next create of that size only renames it
//! into place. At every start its supervisor mounts it (`mount -o loop`,
//! util-linux: the loop device is released when the mount goes, with the
//! supervisor's mount namespace) with `nodev,nosuid`. ext4 rather than a quota on
//! the host's filesystem: project quotas need the host's filesystem made and
//! mounted for them, a loop-mounted image needs nothing of the host.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// A sandbox's disk: its image and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub image: PathBuf,
    pub size: u64,
}

/// Why a disk could not be made or mounted.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` is not installed (Debian package {package})")]
    Missing { command: &'static str, package: &'static str },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io { path: path.to_owned(), source }
}

fn run(program: &'static str, package: &'static str, args: &[&str]) -> Result<(), DiskError> {
    Running::start(program, package, args)?.finish()
}

/// A command of this module, running; [`Running::finish`] waits for it.
#[derive(Debug)]
pub struct Running {
    child: std::process::Child,
    command: String,
}

impl Running {
    fn start(program: &'static str, package: &'static str, args: &[&str]) -> Result<Running, DiskError> {
        let command = format!("{program} {}", args.join(" "));
        let child = Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DiskError::Missing { command: program, package },
                _ => DiskError::Command { command: command.clone(), message: e.to_string() },
            })?;
        Ok(Running { child, command })
    }

    /// Waits for the command; its error output is the error's message.
    pub fn finish(self) -> Result<(), DiskError> {
        let Running { child, command } = self;
        let out = child
            .wait_with_output()
            .map_err(|e| DiskError::Command { command: command.clone(), message: e.to_string() })?;
        if out.status.success() {
            return Ok(());
        }
        Err(DiskError::Command { command, message: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

impl Disk {
    /// Makes the image at `self.image`: the spare of its size under `templates`
    /// when there is one (renamed: one create takes it), else a copy of the
    /// template of its size (made first when missing; concurrent callers each
    /// make their own and the first rename wins).
    pub fn create(&self, templates: &Path) -> Result<(), DiskError> {
        // Any failure (none made yet, another create took it, another
        // filesystem) leaves the copy to be made now.
        if std::fs::rename(spare(templates, self.size), &self.image).is_ok() {
            return Ok(());
        }
        let template = template(templates, self.size)?;
        let tmp = self.image.with_extension("img.tmp");
        copy_sparse(&template, &tmp, self.size)?;
        std::fs::rename(&tmp, &self.image).map_err(io(&self.image))
    }

    /// Makes the spare image of `size` under `templates` unless there is one,
    /// for the next [`Disk::create`] of that size.
    pub fn make_spare(templates: &Path, size: u64) -> Result<(), DiskError> {
        let spare = spare(templates, size);
        if spare.exists() {
            return Ok(());
        }
        let template = template(templates, size)?;
        let tmp = temporary(templates, &format!("spare-{size}"));
        let made = copy_sparse(&template, &tmp, size).and_then(|()| std::fs::rename(&tmp, &spare).map_err(io(&spare)));
        if made.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        made
    }

    /// Starts mounting the image at `at` (`nodev,nosuid`), in the caller's mount
    /// namespace; the mount is there once [`Running::finish`] returns.
    pub fn start_mount(&self, at: &Path) -> Result<Running, DiskError> {
        std::fs::create_dir_all(at).map_err(io(at))?;
        let (image, target) = (self.image.display().to_string(), at.display().to_string());
        Running::start("mount", "mount", &["-t", "ext4", "-o", "loop,nodev,nosuid,noatime", &image, &target])
    }
}

/// Where the spare image of `size` waits.
fn spare(templates: &Path, size: u64) -> PathBuf {
    templates.join(format!("spare-ext4-{size}.img"))
}

/// The template of `size` under `templates`, made when missing.
fn template(templates: &Path, size: u64) -> Result<PathBuf, DiskError> {
    std::fs::create_dir_all(templates).map_err(io(templates))?;
    let template = templates.join(format!("ext4-{size}.img"));
    if !template.exists() {
        let tmp = temporary(templates, &format!("ext4-{size}"));
        make_filesystem(&tmp, size)?;
        std::fs::rename(&tmp, &template).map_err(io(&template))?;
    }
    Ok(template)
}

/// A new temporary name under `templates`, unique to this process and call
/// (threads of one gateway make templates and spares at once).
fn temporary(templates: &Path, what: &str) -> PathBuf {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    templates.join(format!(".{what}-{}-{n}.img", std::process::id()))
}

/// An ext4 filesystem of `size` bytes in a new sparse file at `path`.
fn make_filesystem(path: &Path, size: u64) -> Result<(), DiskError> {
    let file = std::fs::File::create(path).map_err(io(path))?;
    file.set_len(size).map_err(io(path))?;
    drop(file);
    let made = run(
        "mkfs.ext4",
        "e2fsprogs",
        &["-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", &path.display().to_string()],
    );
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Copies `from` to a new file `to` of `size` bytes, data only: holes stay holes.
fn copy_sparse(from: &Path, to: &Path, size: u64) -> Result<(), DiskError> {
    use rustix::fs::SeekFrom;
    let src = std::fs::File::open(from).map_err(io(from))?;
    let dst = std::fs::File::create(to).map_err(io(to))?;
    dst.set_len(size).map_err(io(to))?;
    let mut at = 0u64;
    loop {
        let start = match rustix::fs::seek(src.as_fd(), SeekFrom::Data(at)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(io(from)(e.into())),
        };
        let end = rustix::fs::seek(src.as_fd(), SeekFrom::Hole(start)).map_err(|e| io(from)(e.into()))?;
        let (mut off_in, mut off_out) = (start, start);
        while off_in < end {
            let len = usize::try_from(end - off_in).unwrap_or(usize::MAX);
            let n = rustix::fs::copy_file_range(&src, Some(&mut off_in), &dst, Some(&mut off_out), len)
                .map_err(|e| io(to)(e.into()))?;
            if n == 0 {
                break;
            }
        }
        at = end;
    }
    dst.sync_all().map_err(io(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_made_from_a_sparse_template() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = Disk { image: dir.path().join("disk.img"), size: 64 << 20 };
        disk.create(&dir.path().join("templates")).expect("create");
        let meta = std::fs::metadata(&disk.image).expect("image");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.len(), 64 << 20);
        assert!(meta.blocks() * 512 < 16 << 20, "sparse: {} bytes allocated", meta.blocks() * 512);
        let template = std::fs::read(dir.path().join(format!("templates/ext4-{}.img", 64 << 20))).expect("template");
        assert_eq!(std::fs::read(&disk.image).expect("image"), template, "the same bytes, holes as zeros");
        // The ext4 magic (0xEF53 at offset 1080).
        assert_eq!(&template[1080..1082], &[0x53, 0xef]);
    }

    #[test]
    fn a_spare_is_taken_once_and_the_next_create_copies() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let templates = dir.path().join("templates");
        let size = 64 << 20;
        Disk::make_spare(&templates, size).expect("spare");
        let spare = spare(&templates, size);
        let inode = std::fs::metadata(&spare).expect("the spare exists").ino();
        Disk::make_spare(&templates, size).expect("a second call keeps the one there");
        assert_eq!(std::fs::metadata(&spare).expect("spare").ino(), inode);

        let first = Disk { image: dir.path().join("first.img"), size };
        first.create(&templates).expect("create");
        assert_eq!(std::fs::metadata(&first.image).expect("image").ino(), inode, "the spare was renamed into place");
        assert!(!spare.exists(), "a spare serves one create");

        let second = Disk { image: dir.path().join("second.img"), size };
        second.create(&templates).expect("create");
        let template = std::fs::read(templates.join(format!("ext4-{size}.img"))).expect("template");
        assert_eq!(std::fs::read(&first.image).expect("first"), template, "the spare held the template's bytes");
        assert_eq!(std::fs::read(&second.image).expect("second"), template, "copied when there was no spare");
        let leftovers: Vec<_> = std::fs::read_dir(&templates)
            .expect("templates")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}
