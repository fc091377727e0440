//! A sandbox's writable layer on a filesystem of its own size, so that what a
//! sandbox writes (its overlay's upper directory: `/sandbox` and every other
//! read-write path that persists) stops at the policy's `resources.disk` with
//! ENOSPC, and the host's disk is never spent beyond it.
//!
//! Each sandbox has a sparse ext4 image in its directory, made at creation by
//! copying a template (made once per size with `mkfs.ext4`, e2fsprogs: an image
//! of 10 GiB is about 4 MiB of metadata, copied hole by hole and synced in about
//! 4 ms). ext4 rather than a quota on the host's filesystem: project quotas need
//! the host's filesystem made and mounted for them, a loop-mounted image needs
//! nothing of the host.
//!
//! At every start its supervisor mounts it `nodev,nosuid`, in its own mount
//! namespace: the loop device goes when the mount does, with the namespace.
//! - A create takes the [`Spares`]' image of its size when there is one
//!   (renamed into place), else copies the template. The gateway makes each
//!   spare ahead of need and attaches it to a loop device it holds open, set to
//!   clear itself at its last close: the device lives as long as its holder or
//!   a mount of it, so nothing is left attached when the gateway dies.
//! - The sandbox's first start gets the taken spare's device from the gateway,
//!   as a descriptor with its job, and mounts it through that descriptor
//!   (`mount(2)` in-process, about 1 ms): never a device looked up by its
//!   backing file's path, which another user who can attach loop devices can
//!   make print as the disk's (from a mount namespace of theirs). Without one,
//!   it mounts the image with `mount -o loop` (util-linux, about 5 ms:
//!   attaching is most of it; libmount reuses a device only of the same inode).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
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
    Running::start(program, package, args)?.finish().map(drop)
}

/// Runs a command of this module; returns what it printed.
fn output(program: &'static str, package: &'static str, args: &[&str]) -> Result<String, DiskError> {
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
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DiskError::Missing { command: program, package },
                _ => DiskError::Command { command: command.clone(), message: e.to_string() },
            })?;
        Ok(Running { child, command })
    }

    /// Waits for the command; returns its output, or its error output as the
    /// error's message.
    pub fn finish(self) -> Result<String, DiskError> {
        let Running { child, command } = self;
        let out = child
            .wait_with_output()
            .map_err(|e| DiskError::Command { command: command.clone(), message: e.to_string() })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(DiskError::Command { command, message: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

impl Disk {
    /// Starts mounting the image at `at` (`nodev,nosuid`), in the caller's mount
    /// namespace: from `device`, the loop device the gateway attached it to,
    /// when given (else with `mount -o loop`); the mount is there once
    /// [`Mounting::finish`] returns.
    pub fn start_mount(&self, at: &Path, device: Option<OwnedFd>) -> Result<Mounting, DiskError> {
        std::fs::create_dir_all(at).map_err(io(at))?;
        let Some(device) = device else {
            return self.loop_mount(at).map(Mounting::Command);
        };
        let (disk, at) = (self.clone(), at.to_owned());
        Ok(Mounting::Thread(std::thread::spawn(move || disk.mount_device(device, &at))))
    }

    /// Mounts `device` through the descriptor, which holds it bound to the
    /// image until the mount does (no path names it, so nothing can swap it);
    /// the image itself when that fails.
    fn mount_device(&self, device: OwnedFd, at: &Path) -> Result<(), DiskError> {
        use rustix::mount::MountFlags;
        let flags = MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOATIME;
        let is_loop = rustix::fs::fstat(&device).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode).is_block_device()
                && rustix::fs::major(st.st_rdev) == LOOP_MAJOR
        });
        let source = format!("/proc/self/fd/{}", device.as_raw_fd());
        match is_loop.then(|| rustix::mount::mount(&source, at, "ext4", flags, None)) {
            Some(Ok(())) => Ok(()),
            failed => {
                tracing::warn!(?failed, "mounting the disk's loop device made ahead; mounting the image");
                self.loop_mount(at)?.finish().map(drop)
            }
        }
    }

    fn loop_mount(&self, at: &Path) -> Result<Running, DiskError> {
        let (image, target) = (self.image.display().to_string(), at.display().to_string());
        Running::start("mount", "mount", &["-t", "ext4", "-o", "loop,nodev,nosuid,noatime", &image, &target])
    }
}

/// Loop devices' major number (`LOOP_MAJOR`, linux/major.h).
const LOOP_MAJOR: u32 = 7;

/// A disk's mount under way.
#[derive(Debug)]
pub enum Mounting {
    /// `mount -o loop` of the image.
    Command(Running),
    /// `mount(2)` of the device attached to the image, on a thread.
    Thread(std::thread::JoinHandle<Result<(), DiskError>>),
}

impl Mounting {
    /// Waits for the mount.
    pub fn finish(self) -> Result<(), DiskError> {
        match self {
            Mounting::Command(running) => running.finish().map(drop),
            Mounting::Thread(thread) => thread.join().unwrap_or_else(|_| {
                Err(DiskError::Command { command: "mount(2)".into(), message: "the mounting thread panicked".into() })
            }),
        }
    }
}

/// The loop device attached to `image`, if one is: found by its backing file
/// (the path the file has now). The gateway's check of what it attached, never
/// how a supervisor finds its device: a path in sysfs is printed from the
/// reader's root, so a file in another mount namespace can print as this one.
fn attached(image: &Path) -> Option<PathBuf> {
    let image = std::fs::canonicalize(image).ok()?;
    let image = image.to_str()?;
    loop_devices().find_map(|(device, backing)| (backing == image).then_some(device))
}

/// The bound loop devices (`/dev/loopN`) and their backing files as sysfs gives
/// them (`/sys/block/loopN/loop/backing_file`: the path the file has now, with
/// ` (deleted)` after it once it is removed).
fn loop_devices() -> impl Iterator<Item = (PathBuf, String)> {
    let devices = std::fs::read_dir("/sys/block").into_iter().flatten().flatten();
    devices.filter_map(|entry| {
        let name = entry.file_name();
        let name = name.to_str().filter(|n| n.starts_with("loop"))?;
        Some((Path::new("/dev").join(name), backing_file(&entry.path())?))
    })
}

/// `losetup --detach`: detaches the device, or, while another holds it open or
/// mounted, marks it to clear at its last close.
fn detach(device: &Path) -> Result<(), DiskError> {
    run("losetup", "mount", &["--detach", &device.display().to_string()])
}

/// The backing file of the loop device whose sysfs directory is `sys`, if bound.
fn backing_file(sys: &Path) -> Option<String> {
    let backing = std::fs::read_to_string(sys.join("loop/backing_file")).ok()?;
    Some(backing.strip_suffix('\n').unwrap_or(&backing).to_owned())
}

/// A loop device attached to a disk image and held open by this process, set
/// to clear itself at its last close: it goes when this is dropped (or its
/// holder dies), unless a mount of it holds it by then.
#[derive(Debug)]
pub struct Device {
    path: PathBuf,
    held: std::fs::File,
}

impl Device {
    /// Attaches `image` to a free loop device (`losetup --find --show`), opens it
    /// and marks it to clear at its last close (`losetup --detach` of a device
    /// open elsewhere only marks it).
    fn attach(image: &Path) -> Result<Device, DiskError> {
        let image = image.display().to_string();
        let path = PathBuf::from(output("losetup", "mount", &["--find", "--show", &image])?.trim());
        let held = std::fs::File::open(&path).map_err(io(&path));
        held.and_then(|held| Device::mark(path.clone(), &image, held)).inspect_err(|_| {
            // Let go of and detached (only marked, if another holds it): never
            // left bound with no holder.
            let _ = detach(&path);
        })
    }

    /// `held`, the device at `path`, once it is found bound to `image` and is
    /// marked to clear at its last close.
    fn mark(path: PathBuf, image: &str, held: std::fs::File) -> Result<Device, DiskError> {
        // Held now: bound until closed. Another root process could have rebound
        // it between losetup's attach and the open; then it is not ours.
        let ours = std::fs::canonicalize(image).ok().and_then(|i| i.to_str().map(str::to_owned));
        let backing = path.file_name().and_then(|n| backing_file(&Path::new("/sys/block").join(n)));
        if ours.is_none() || backing != ours {
            return Err(DiskError::Command {
                command: format!("losetup --find --show {image}"),
                message: format!("{} is bound to {backing:?}, not to the image", path.display()),
            });
        }
        detach(&path)?;
        Ok(Device { path, held })
    }

    /// The device's path (`/dev/loopN`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor that holds it, to hand to the supervisor that mounts it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.held.as_fd()
    }
}

/// A gateway's spare disk images, one of each size made so far, each attached
/// to a loop device it holds (see the module's documentation).
#[derive(Debug)]
pub struct Spares {
    templates: PathBuf,
    /// The device of each size's spare, taken with it; `None`: attaching it
    /// failed (not tried again for that spare).
    devices: std::sync::Mutex<std::collections::HashMap<u64, Option<Device>>>,
    /// Makes under way.
    making: std::sync::atomic::AtomicUsize,
}

impl Spares {
    /// The spares (and templates) under `templates`. A gateway killed between
    /// attaching a spare and marking its device left it attached with no
    /// holder: every device whose file is under `templates` is detached now (a
    /// device someone holds open is only marked, as [`Device::attach`] does).
    pub fn new(templates: PathBuf) -> Spares {
        detach_all_under(&templates);
        Spares { templates, devices: Default::default(), making: Default::default() }
    }

    /// Before the process exits: waits (at most `wait`) for the makes under
    /// way, which the exit would cut short between attaching a device and
    /// marking it, then detaches every device under `templates` no one holds
    /// (a killed gateway's `losetup` may have bound one after the next gateway
    /// started). This one's own are only marked again, and go at its exit.
    pub fn close(&self, wait: std::time::Duration) {
        let deadline = std::time::Instant::now() + wait;
        while self.making.load(std::sync::atomic::Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        detach_all_under(&self.templates);
    }

    /// Makes `disk`'s image: the spare of its size when there is one (renamed:
    /// one create takes it, with its device), else a copy of the template of its
    /// size (made first when missing; concurrent callers each make their own and
    /// the first rename wins).
    pub fn take(&self, disk: &Disk) -> Result<Option<Device>, DiskError> {
        {
            let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
            // Any failure (none made yet, another create took it, another
            // filesystem) leaves the copy to be made now.
            if std::fs::rename(spare(&self.templates, disk.size), &disk.image).is_ok() {
                return Ok(devices.remove(&disk.size).flatten());
            }
        }
        let template = template(&self.templates, disk.size)?;
        let tmp = disk.image.with_extension("img.tmp");
        copy_sparse(&template, &tmp, disk.size)?;
        std::fs::rename(&tmp, &disk.image).map_err(io(&disk.image))?;
        Ok(None)
    }

    /// Makes the spare image of `size`, attached, unless there is one: for the
    /// next [`Spares::take`] of that size. A spare an earlier gateway made is
    /// attached now. Attaching needs root: without it the spare is made alone.
    pub fn make(&self, size: u64) -> Result<(), DiskError> {
        self.making.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let made = self.make_counted(size);
        self.making.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        made
    }

    fn make_counted(&self, size: u64) -> Result<(), DiskError> {
        let spare = spare(&self.templates, size);
        if spare.exists() {
            if !self.devices.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&size) {
                self.attach_existing(&spare, size);
            }
            return Ok(());
        }
        let template = template(&self.templates, size)?;
        let tmp = temporary(&self.templates, &format!("spare-{size}"));
        if let Err(e) = copy_sparse(&template, &tmp, size) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let device = Device::attach(&tmp).map_err(|e| tracing::warn!(%e, "attaching a spare disk image")).ok();
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = std::fs::rename(&tmp, &spare) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&spare)(e));
        }
        devices.insert(size, device);
        Ok(())
    }

    /// Attaches the spare an earlier gateway left; kept only if it is still the
    /// spare once attached (else a create took it meanwhile and mounts it alone).
    fn attach_existing(&self, spare: &Path, size: u64) {
        let device = Device::attach(spare).map_err(|e| tracing::warn!(%e, "attaching a spare disk image")).ok();
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let still_the_spare = device.as_ref().is_none_or(|d| attached(spare).as_deref() == Some(d.path()));
        if still_the_spare && spare.exists() {
            devices.entry(size).or_insert(device);
        }
    }
}

/// Detaches every loop device whose file is under `templates` (one held open
/// elsewhere, or mounted, is only marked to clear at its last close).
fn detach_all_under(templates: &Path) {
    let Some(dir) = std::fs::canonicalize(templates).ok().and_then(|d| d.to_str().map(|d| format!("{d}/"))) else {
        return;
    };
    for (device, _) in loop_devices().filter(|(_, backing)| backing.starts_with(&dir)) {
        if let Err(e) = detach(&device) {
            tracing::warn!(%e, "detaching a loop device left with no holder");
        }
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
    use std::os::unix::fs::MetadataExt;

    /// The disk size the tests use.
    const SIZE: u64 = 64 << 20;

    /// Spares under `dir/templates` (and that directory).
    fn spares_in(dir: &Path) -> (PathBuf, Spares) {
        let templates = dir.join("templates");
        (templates.clone(), Spares::new(templates))
    }

    /// Moves the calling thread into a mount namespace of its own, private: what
    /// it mounts is seen nowhere else (threads it starts share it).
    fn own_mount_namespace() {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare (needs root)");
        let private = rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC;
        rustix::mount::mount_change("/", private).expect("private");
    }

    #[test]
    fn images_are_made_from_a_sparse_template() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = Disk { image: dir.path().join("disk.img"), size: SIZE };
        spares_in(dir.path()).1.take(&disk).expect("take");
        let meta = std::fs::metadata(&disk.image).expect("image");
        assert_eq!(meta.len(), SIZE);
        assert!(meta.blocks() * 512 < 16 << 20, "sparse: {} bytes allocated", meta.blocks() * 512);
        let template = std::fs::read(dir.path().join(format!("templates/ext4-{SIZE}.img"))).expect("template");
        assert_eq!(std::fs::read(&disk.image).expect("image"), template, "the same bytes, holes as zeros");
        // The ext4 magic (0xEF53 at offset 1080).
        assert_eq!(&template[1080..1082], &[0x53, 0xef]);
    }

    #[test]
    fn a_spare_is_taken_once_and_the_next_create_copies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (templates, spares) = spares_in(dir.path());
        let size = SIZE;
        spares.make(size).expect("spare");
        let spare = spare(&templates, size);
        let inode = std::fs::metadata(&spare).expect("the spare exists").ino();
        spares.make(size).expect("a second call keeps the one there");
        assert_eq!(std::fs::metadata(&spare).expect("spare").ino(), inode);

        let first = Disk { image: dir.path().join("first.img"), size };
        let device = spares.take(&first).expect("take");
        assert_eq!(std::fs::metadata(&first.image).expect("image").ino(), inode, "the spare was renamed into place");
        assert!(!spare.exists(), "a spare serves one create");
        drop(device);

        let second = Disk { image: dir.path().join("second.img"), size };
        assert!(spares.take(&second).expect("take").is_none(), "a copy has no device");
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

    /// Waits up to 5 s for `image` to have no loop device; its last one if it keeps it.
    fn released(image: &Path) -> Result<(), PathBuf> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match attached(image) {
                None => return Ok(()),
                Some(device) if std::time::Instant::now() > deadline => return Err(device),
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }

    /// A spare's loop device (made ahead, needs root) follows it into place, is
    /// what the disk is mounted from, and outlives neither the mount nor, when
    /// unmounted, its holder: dropped spares (a gateway that dies) leave no
    /// device attached. Positive control: each is attached until then.
    #[test]
    fn a_spares_device_is_mounted_and_outlives_neither_its_mount_nor_its_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (templates, spares) = spares_in(dir.path());
        let size = SIZE;
        spares.make(size).expect("spare");
        let device = attached(&spare(&templates, size)).expect("the spare is attached to a loop device (needs root)");
        let name = device.file_name().expect("name").to_string_lossy().into_owned();
        let autoclear = std::fs::read_to_string(format!("/sys/block/{name}/loop/autoclear")).expect("autoclear");
        assert_eq!(autoclear.trim(), "1", "{name} clears itself at its last close");

        let disk = Disk { image: dir.path().join("disk.img"), size };
        let held = spares.take(&disk).expect("take").expect("the spare's device comes with it");
        assert_eq!((held.path(), attached(&disk.image).as_deref()), (device.as_path(), Some(device.as_path())));
        // In a mount namespace of this thread's (the mounting thread shares it).
        own_mount_namespace();
        let at = dir.path().join("mnt");
        // The image renamed away: `mount -o loop`, the fallback, cannot succeed.
        let away = dir.path().join("away.img");
        std::fs::rename(&disk.image, &away).expect("rename");
        let handed = held.fd().try_clone_to_owned().expect("dup");
        disk.start_mount(&at, Some(handed)).expect("start").finish().expect("mounted from the handed device");
        std::fs::rename(&away, &disk.image).expect("rename back");
        let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
        let line = mounts.lines().find(|l| l.contains(&format!(" {} ", at.display()))).expect("mounted");
        // Field 3 is the mounted device's major:minor.
        let rdev = rustix::fs::stat(&device).expect("stat").st_rdev;
        let number = format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
        assert_eq!(line.split(' ').nth(2), Some(number.as_str()), "mounted from {}: {line}", device.display());
        drop(held);
        assert_eq!(attached(&disk.image), Some(device.clone()), "the mount holds it");
        rustix::mount::unmount(&at, rustix::mount::UnmountFlags::empty()).expect("unmount");
        released(&disk.image).unwrap_or_else(|d| panic!("{} is still attached after its unmount", d.display()));

        spares.make(size).expect("next spare");
        let next = spare(&templates, size);
        assert!(attached(&next).is_some(), "the next spare is attached");
        drop(spares);
        released(&next).unwrap_or_else(|d| panic!("{} is still attached after its holder went", d.display()));

        // The next gateway attaches the spare the last one left.
        let inode = std::fs::metadata(&next).expect("spare").ino();
        let again = Spares::new(templates.clone());
        again.make(size).expect("make");
        assert_eq!(std::fs::metadata(&next).expect("spare").ino(), inode, "the same spare, not a new one");
        assert!(attached(&next).is_some(), "the spare an earlier gateway made is attached again");
        drop(again);
        released(&next).unwrap_or_else(|d| panic!("{} is still attached after its holder went", d.display()));
    }

    /// Detaches a loop device when dropped (the test's own).
    struct Attached(String);

    impl Drop for Attached {
        fn drop(&mut self) {
            let _ = detach(Path::new(&self.0));
        }
    }

    /// A loop device another attached to a file of theirs that sysfs prints
    /// under this disk's path (theirs is in a mount namespace of their own, with
    /// a directory over the sandbox's) is not what a start mounts: a start
    /// mounts a device only when the gateway hands it one, else its own image.
    /// Positive control: sysfs does print that device under the disk's path,
    /// which a lookup by path (as the first version of this did) took. Needs
    /// root, as `losetup` does for the other here.
    #[test]
    fn a_device_that_only_claims_the_disks_path_is_not_mounted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = SIZE;
        let sandbox = dir.path().join("sandbox");
        std::fs::create_dir_all(&sandbox).expect("sandbox dir");
        let disk = Disk { image: sandbox.join("disk.img"), size };
        Spares::new(dir.path().join("templates")).take(&disk).expect("the sandbox's image");
        // Theirs: an ext4 image holding `planted`, at the same path in their namespace.
        let planted = dir.path().join("planted");
        std::fs::create_dir_all(planted.join("root")).expect("dir");
        std::fs::write(planted.join("root/planted"), "theirs").expect("file");
        // A path in a mount their namespace alone has prints from that mount's
        // root: theirs is the disk's path again, below a tmpfs of theirs.
        let over = dir.path().join("theirs");
        std::fs::create_dir_all(&over).expect("dir");
        let path = std::fs::canonicalize(&disk.image).expect("canonical");
        let (image, contents) = (over.join(path.strip_prefix("/").expect("absolute")), planted.join("root"));
        let theirs = std::thread::spawn(move || {
            own_mount_namespace();
            rustix::mount::mount("tmpfs", &over, "tmpfs", rustix::mount::MountFlags::empty(), None).expect("tmpfs");
            std::fs::create_dir_all(image.parent().expect("parent")).expect("their directories");
            std::fs::File::create(&image).and_then(|f| f.set_len(size)).expect("image");
            let (image, contents) = (image.display().to_string(), contents.display().to_string());
            run("mkfs.ext4", "e2fsprogs", &["-q", "-F", "-d", &contents, &image]).expect("mkfs");
            Attached(output("losetup", "mount", &["--find", "--show", &image]).expect("losetup").trim().to_owned())
        })
        .join()
        .expect("their thread");
        let name = Path::new(&theirs.0).file_name().expect("name").to_owned();
        let claimed = backing_file(&Path::new("/sys/block").join(name));
        let ours = path.display().to_string();
        assert_eq!(claimed.as_deref(), Some(ours.as_str()), "{} prints as the sandbox's disk", theirs.0);

        let at = dir.path().join("mnt");
        let seen = std::thread::spawn(move || {
            own_mount_namespace();
            disk.start_mount(&at, None).expect("start").finish().expect("mount");
            let seen = at.join("planted").exists();
            rustix::mount::unmount(&at, rustix::mount::UnmountFlags::empty()).expect("unmount");
            seen
        })
        .join()
        .expect("the start's thread");
        assert!(!seen, "the start mounted {}, not its own image", theirs.0);
    }

    /// A device bound under the templates with no holder after this gateway
    /// started (a killed gateway's `losetup` finishing late) is detached when
    /// this one closes; its own spare's device stays attached until it is
    /// dropped. Positive control: the leftover is attached until the close.
    #[test]
    fn closing_detaches_what_no_one_holds_and_keeps_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (templates, spares) = spares_in(dir.path());
        let size = SIZE;
        spares.make(size).expect("spare");
        let left = templates.join(".spare-1-2-3.img");
        std::fs::File::create(&left).and_then(|f| f.set_len(1 << 20)).expect("file");
        let _guard = Attached(
            output("losetup", "mount", &["--find", "--show", &left.display().to_string()])
                .expect("losetup")
                .trim()
                .to_owned(),
        );
        assert!(attached(&left).is_some(), "the leftover is attached");
        spares.close(std::time::Duration::from_secs(5));
        released(&left).unwrap_or_else(|d| panic!("{} is still attached after the close", d.display()));
        let own = spare(&templates, size);
        assert!(attached(&own).is_some(), "its own spare stays attached while held");
        drop(spares);
        released(&own).unwrap_or_else(|d| panic!("{} is still attached after the drop", d.display()));
    }

    /// A gateway killed between attaching a spare and marking its device leaves
    /// it attached with no holder (done here by `losetup` alone): the next
    /// gateway's spares detach it. Positive control: attached until then.
    #[test]
    fn a_device_a_killed_gateway_left_is_detached_by_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let templates = dir.path().join("templates");
        std::fs::create_dir_all(&templates).expect("templates");
        let left = templates.join(".spare-1-2-3.img");
        std::fs::File::create(&left).and_then(|f| f.set_len(1 << 20)).expect("file");
        output("losetup", "mount", &["--find", "--show", &left.display().to_string()]).expect("attach (needs root)");
        assert!(attached(&left).is_some(), "attached");
        let _spares = Spares::new(templates);
        released(&left).unwrap_or_else(|d| panic!("{} is still attached", d.display()));
    }
}
