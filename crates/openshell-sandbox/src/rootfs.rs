//! Root filesystems: each image layer unpacked once per diff_id into a shared,
//! read-only cache, and a per-sandbox overlay on top of the layers.
//!
//! Layers keep the image's own owners. A sandbox with a user namespace sees
//! them through idmapped mounts of the layers (its root owns what the image's
//! root owns, and no host id other than its range shows), made per start; where
//! the kernel cannot idmap a layer ([`idmapped_overlay_works`] says), the layer
//! is unpacked once more with its owners shifted into the range
//! ([`LayerCache::ensure_shifted`]) and mounted as it is.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use openshell_oci::compress::{Compression, LayerDecoder};
use openshell_store::{Algorithm, BlobReader, Digest, Hasher, Store, StoreError};

use crate::idmap::{IdMap, UserNamespace};

/// Errors of preparing a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("layer cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("layer {blob}: its uncompressed content hashes to {actual}, not to its diff_id {expected}")]
    DiffId { blob: Digest, expected: Digest, actual: Digest },
    #[error("layer {blob}: entry `{path}` is an overlay whiteout; images with whiteouts are not supported yet")]
    Whiteout { blob: Digest, path: String },
    #[error("layer {blob}: {message}")]
    Unpack { blob: Digest, message: String },
    #[error("mounting the overlay at {}: {source} (needs root)", target.display())]
    Mount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting layer {} idmapped at {}: {source}", layer.display(), at.display())]
    Idmap {
        layer: PathBuf,
        at: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Namespace(#[from] crate::idmap::IdMapError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io { path: path.to_owned(), source }
}

/// Reads through, hashing everything read.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

static TMP: AtomicU64 = AtomicU64::new(0);

/// Unpacked layers, one directory per diff_id.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    pub fn open(root: impl Into<PathBuf>) -> Result<LayerCache, RootfsError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(LayerCache { root })
    }

    /// The directory of an unpacked layer (whether or not it exists).
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join(diff_id.hex())
    }

    /// Unpacks the gzip layer `blob` from the store unless already cached, checking
    /// that its uncompressed content is `diff_id`. Concurrent callers are safe: each
    /// unpacks into its own temporary directory and the first rename wins.
    pub fn ensure(&self, store: &Store, blob: &Digest, diff_id: &Digest) -> Result<PathBuf, RootfsError> {
        self.ensure_owned(store, blob, diff_id, None)
    }

    /// [`LayerCache::ensure`] with every owner shifted into `ids` (uid `u` becomes
    /// host uid `base + u`): the layers of a sandbox with a user namespace where
    /// the kernel cannot idmap them. Cached apart, per range.
    pub fn ensure_shifted(
        &self,
        store: &Store,
        blob: &Digest,
        diff_id: &Digest,
        ids: &IdMap,
    ) -> Result<PathBuf, RootfsError> {
        self.ensure_owned(store, blob, diff_id, Some(ids))
    }

    fn ensure_owned(
        &self,
        store: &Store,
        blob: &Digest,
        diff_id: &Digest,
        shift: Option<&IdMap>,
    ) -> Result<PathBuf, RootfsError> {
        let dest = match shift {
            None => self.path(diff_id),
            Some(ids) => self.root.join(format!("{}@{}.{}", diff_id.hex(), ids.uids.host, ids.gids.host)),
        };
        if dest.is_dir() {
            return Ok(dest);
        }
        let n = TMP.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join(format!(".tmp-{}-{}-{n}", diff_id.hex(), std::process::id()));
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        let result = self.unpack(store, blob, diff_id, &tmp, shift);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(dest)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(RootfsError::Io { path: dest, source: e })
            }
        }
    }

    fn unpack(
        &self,
        store: &Store,
        blob: &Digest,
        diff_id: &Digest,
        into: &Path,
        shift: Option<&IdMap>,
    ) -> Result<(), RootfsError> {
        let decoder = layer_decoder(store, blob)?;
        let mut hashing = HashingReader { inner: decoder, hasher: Algorithm::Sha256.hasher() };
        {
            let mut archive = tar::Archive::new(&mut hashing);
            archive.set_preserve_permissions(true);
            archive.set_preserve_ownerships(true);
            archive.set_unpack_xattrs(false);
            archive.set_preserve_mtime(true);
            let unpack_err = |e: std::io::Error| RootfsError::Unpack { blob: blob.clone(), message: e.to_string() };
            for entry in archive.entries().map_err(unpack_err)? {
                let mut entry = entry.map_err(unpack_err)?;
                let path = entry.path().map_err(unpack_err)?.to_string_lossy().into_owned();
                if path.rsplit('/').next().is_some_and(|n| n.starts_with(".wh.")) {
                    return Err(RootfsError::Whiteout { blob: blob.clone(), path });
                }
                let unpacked = entry.unpack_in(into).map_err(unpack_err)?;
                if let (Some(ids), true) = (shift, unpacked) {
                    shift_owner(&entry, into, ids).map_err(unpack_err)?;
                }
            }
        }
        // Read what tar left (end-of-archive padding) so the hash covers the whole stream.
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| RootfsError::Unpack { blob: blob.clone(), message: e.to_string() })?;
        // The blob itself, past the compressed stream too: one changed on disk is refused by name.
        hashing.inner.into_inner().into_inner().finish()?;
        let actual = hashing.hasher.finish();
        if actual != *diff_id {
            return Err(RootfsError::DiffId { blob: blob.clone(), expected: diff_id.clone(), actual });
        }
        Ok(())
    }
}

/// The decompressor of a stored layer blob, gzip or zstd by its magic number: the
/// cache is handed blobs and diff_ids, and the diff_id check after unpacking proves
/// the content whatever the descriptor said (pull and the layout reader check media
/// types before a layer is stored).
fn layer_decoder(store: &Store, blob: &Digest) -> Result<LayerDecoder<BufReader<BlobReader>>, RootfsError> {
    let mut raw = BufReader::new(store.open_verified(blob)?);
    let unpack_err = |e: std::io::Error| RootfsError::Unpack { blob: blob.clone(), message: e.to_string() };
    let head = raw.fill_buf().map_err(unpack_err)?;
    let compression = Compression::sniff(head).ok_or_else(|| RootfsError::Unpack {
        blob: blob.clone(),
        message: "neither gzip nor zstd (no magic number at its start)".to_owned(),
    })?;
    LayerDecoder::first(compression, raw).map_err(unpack_err)
}

/// Gives the entry just unpacked under `into` the owners of its header shifted
/// into `ids`, keeping its mode (a change of owner clears set-id bits).
fn shift_owner<R: Read>(entry: &tar::Entry<'_, R>, into: &Path, ids: &IdMap) -> std::io::Result<()> {
    let header = entry.header();
    let (uid, gid) = (header.uid()?, header.gid()?);
    let (uid, gid) = ids.to_host((u32::try_from(uid).unwrap_or(u32::MAX), u32::try_from(gid).unwrap_or(u32::MAX)));
    let path = into
        .join(entry.path()?.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect::<PathBuf>());
    std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
    if header.entry_type().is_file() || header.entry_type().is_dir() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(header.mode()? & 0o7777))?;
    }
    Ok(())
}

/// How a sandbox with a user namespace sees the owners of its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerOwners {
    /// Layers with the image's own owners, mounted idmapped (one directory per
    /// layer under `staging`, made at each mount).
    Idmapped { staging: PathBuf },
    /// Layers unpacked with shifted owners ([`LayerCache::ensure_shifted`]).
    Shifted,
}

/// A sandbox's user namespace, as its overlay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayIds {
    pub map: IdMap,
    pub layers: LayerOwners,
}

/// An overlay: read-only layers (bottom first, as an image lists them) under a
/// per-sandbox writable upper directory.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub layers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// The sandbox's user namespace, if it has one: its root owns the upper
    /// directory, and the layers are seen through its mapping.
    pub ids: Option<OverlayIds>,
}

impl Overlay {
    /// Mounts the overlay at `target` (creating upper, work and target), `nodev`:
    /// device nodes that come with an image are never devices in a sandbox (the
    /// runtime's own /dev is a separate mount). The container's root is a recursive
    /// bind of this mount, so it keeps the flag.
    pub fn mount(&self) -> Result<(), RootfsError> {
        let lower = self.lower(None)?;
        self.mount_over(&lower)
    }

    /// The layers as the overlay stacks them: idmapped under the staging
    /// directory (mounted now) when the sandbox's layers need it, else as they
    /// are. Touches neither the upper nor the work directory. `made`: a user
    /// namespace made ahead, used when it has the overlay's map (else one is
    /// made now).
    pub fn lower(&self, made: Option<&UserNamespace>) -> Result<Vec<PathBuf>, RootfsError> {
        match &self.ids {
            Some(OverlayIds { map, layers: LayerOwners::Idmapped { staging } }) => {
                match made.filter(|ns| ns.map() == map) {
                    Some(ns) => idmap_layers(&self.layers, staging, ns),
                    None => idmap_layers(&self.layers, staging, &UserNamespace::new(map)?),
                }
            }
            _ => Ok(self.layers.clone()),
        }
    }

    /// Mounts the overlay of `layers` (from [`Overlay::lower`]) as [`Overlay::mount`] does.
    pub fn mount_over(&self, layers: &[PathBuf]) -> Result<(), RootfsError> {
        for d in [&self.upper, &self.work, &self.target] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        if let Some(ids) = &self.ids {
            // The writable layer's root is the sandbox's root's, as the image's is.
            let (uid, gid) = ids.map.to_host((0, 0));
            for d in [&self.upper, &self.work] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).map_err(io(d))?;
            }
        }
        let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
        let data =
            format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), self.upper.display(), self.work.display());
        let data = std::ffi::CString::new(data)
            .map_err(|e| RootfsError::Mount { target: self.target.clone(), source: std::io::Error::other(e) })?;
        rustix::mount::mount("overlay", &self.target, "overlay", rustix::mount::MountFlags::NODEV, data.as_c_str())
            .map_err(|e| RootfsError::Mount { target: self.target.clone(), source: e.into() })
    }

    /// Unmounts the overlay (and its idmapped layers).
    pub fn unmount(&self) -> Result<(), RootfsError> {
        let unmounted = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::empty())
            .map_err(|e| RootfsError::Mount { target: self.target.clone(), source: e.into() });
        if let Some(OverlayIds { layers: LayerOwners::Idmapped { staging }, .. }) = &self.ids {
            for n in 0..self.layers.len() {
                let _ = rustix::mount::unmount(staging.join(n.to_string()), rustix::mount::UnmountFlags::DETACH);
            }
        }
        unmounted
    }
}

/// Mounts each layer idmapped with `ns`'s map at `staging/N`; returns those directories.
fn idmap_layers(layers: &[PathBuf], staging: &Path, ns: &UserNamespace) -> Result<Vec<PathBuf>, RootfsError> {
    let mut out = Vec::with_capacity(layers.len());
    for (n, layer) in layers.iter().enumerate() {
        let at = staging.join(n.to_string());
        std::fs::create_dir_all(&at).map_err(io(&at))?;
        mount_idmapped(layer, &at, ns).map_err(|source| RootfsError::Idmap {
            layer: layer.clone(),
            at: at.clone(),
            source,
        })?;
        out.push(at);
    }
    Ok(out)
}

/// A clone of the mount at `layer`, with `ns`'s mapping applied, moved to `at`.
fn mount_idmapped(layer: &Path, at: &Path, ns: &UserNamespace) -> std::io::Result<()> {
    use rustix::mount::{MoveMountFlags, OpenTreeFlags};
    use std::os::fd::{AsFd, AsRawFd};
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        layer,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    // mount_setattr(2) is not in rustix; libcontainer's wrapper is (safe, typed).
    let attr = libcontainer::syscall::linux::MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(ns.fd().as_raw_fd()).unwrap_or_default(),
    };
    libcontainer::syscall::syscall::create_syscall()
        .mount_setattr(
            tree.as_fd(),
            Path::new(""),
            libcontainer::syscall::linux::AT_EMPTY_PATH,
            &attr,
            std::mem::size_of::<libcontainer::syscall::linux::MountAttr>(),
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    rustix::mount::move_mount(tree.as_fd(), "", rustix::fs::CWD, at, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    Ok(())
}

/// `MOUNT_ATTR_IDMAP` (linux/mount.h).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Whether an overlay of an idmapped layer works on this kernel and the layer
/// cache's filesystem: tried for real (a file owned by 0 shows as the range's
/// root), in a scratch directory under `scratch`, from a thread with a mount
/// namespace of its own, so nothing of it is seen elsewhere or left behind.
pub fn idmapped_overlay_works(scratch: &Path, map: &IdMap) -> bool {
    let (scratch, map) = (scratch.to_path_buf(), *map);
    let tried = std::thread::spawn(move || -> Result<bool, RootfsError> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| RootfsError::Mount { target: scratch.clone(), source: e.into() })?;
        let private = rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC;
        rustix::mount::mount_change("/", private)
            .map_err(|e| RootfsError::Mount { target: scratch.clone(), source: e.into() })?;
        let dir = tempfile_dir(&scratch)?;
        let layer = dir.join("layer");
        std::fs::create_dir_all(&layer).map_err(io(&layer))?;
        std::fs::write(layer.join("probe"), "").map_err(io(&layer))?;
        std::os::unix::fs::chown(layer.join("probe"), Some(0), Some(0)).map_err(io(&layer))?;
        let overlay = Overlay {
            layers: vec![layer],
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("target"),
            ids: Some(OverlayIds { map, layers: LayerOwners::Idmapped { staging: dir.join("lower") } }),
        };
        let mounted = overlay.mount();
        let owner = std::fs::metadata(overlay.target.join("probe")).map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        });
        let _ = overlay.unmount();
        let _ = std::fs::remove_dir_all(&dir);
        Ok(mounted.is_ok() && owner.is_ok_and(|uid| Some(uid) == map.uids.to_host(0)))
    });
    match tried.join() {
        Ok(Ok(works)) => works,
        Ok(Err(e)) => {
            tracing::warn!(%e, "trying an idmapped overlay");
            false
        }
        Err(_) => false,
    }
}

/// A fresh directory under `parent`.
fn tempfile_dir(parent: &Path) -> Result<PathBuf, RootfsError> {
    let n = TMP.fetch_add(1, Ordering::Relaxed);
    let dir = parent.join(format!(".idmap-probe-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A user namespace made ahead idmaps a sandbox's layers only when it has
    /// the sandbox's map: one of another range (a gateway restarted with
    /// another `OPENSHELL_ID_RANGE` than an older sandbox's) would give the
    /// image's root files to that range's root. Positive control: one of the
    /// sandbox's map gives them to its root. Needs root.
    #[test]
    fn layers_are_idmapped_with_a_namespace_made_ahead_only_when_it_has_their_map() {
        let ours = IdMap::parse("3000000:65536").expect("map");
        let other = IdMap::parse("3200000:65536").expect("map");
        let owners = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare (needs root)");
            let private = rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC;
            rustix::mount::mount_change("/", private).expect("private");
            let dir = tempfile::tempdir().expect("tempdir");
            let layer = dir.path().join("layer");
            std::fs::create_dir_all(&layer).expect("layer");
            std::fs::write(layer.join("probe"), "").expect("probe");
            std::os::unix::fs::chown(layer.join("probe"), Some(0), Some(0)).expect("chown");
            let staging = dir.path().join("lower");
            let overlay = Overlay {
                layers: vec![layer],
                upper: dir.path().join("upper"),
                work: dir.path().join("work"),
                target: dir.path().join("target"),
                ids: Some(OverlayIds { map: ours, layers: LayerOwners::Idmapped { staging: staging.clone() } }),
            };
            let mut owners = Vec::new();
            for made in [UserNamespace::new(&other), UserNamespace::new(&ours)] {
                let lower = overlay.lower(Some(&made.expect("user namespace"))).expect("lower");
                owners.push(std::fs::metadata(lower[0].join("probe")).expect("probe").uid());
                rustix::mount::unmount(staging.join("0"), rustix::mount::UnmountFlags::DETACH).expect("unmount");
            }
            owners
        });
        let root = ours.uids.to_host(0).expect("root");
        assert_eq!(owners.join().expect("thread"), vec![root, root], "the image's root files belong to {root}");
    }
}
