//! TLS inspection in a pod, as on the host: the pod's egress proxy terminates TLS
//! for endpoints with L7 rules with a certificate of the pod's own CA, made when
//! the pod's sandbox container is created ([`make_ca`]; its key stays in that
//! container's state directory, root-only), and every container of the pod trusts
//! it: [`install`] writes the container's trust bundle (its image's system roots,
//! read inside its root filesystem, plus the pod's CA) into its bundle directory
//! and bind-mounts it read-only at [`POD_BUNDLE`], where the variables of
//! `TRUST_VARIABLES` point. Not at the host sandboxes' `/etc/openshell/...`:
//! pods mount their policy's ConfigMap there, read-only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libcontainer::oci_spec::runtime::{MountBuilder, Spec};
use openshell_proxy::tls::SYSTEM_BUNDLE;
use openshell_proxy::{Interceptor, SandboxCa};

/// The pod CA's certificate and key, in the sandbox container's state directory.
const CA_CERT_FILE: &str = "openshell-pod-ca.pem";
const CA_KEY_FILE: &str = "openshell-pod-ca-key.pem";
/// A container's trust bundle, in its bundle directory (containerd removes it
/// with the container).
const BUNDLE_FILE: &str = "openshell-ca-bundle.pem";
/// Where a pod container finds its trust bundle.
pub const POD_BUNDLE: &str = "/run/openshell/ca-bundle.pem";
/// Its directory (what Landlock lets pod containers read).
pub const POD_BUNDLE_DIR: &str = "/run/openshell";

/// Why the pod's CA or a container's trust bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the pod's CA: {0}")]
    Ca(#[from] openshell_proxy::TlsError),
    #[error("the trust bundle's mount: {0}")]
    Mount(String),
    #[error(
        "the container mounts {0} over {POD_BUNDLE_DIR}, where openshell-runtime puts the pod's trust bundle: mount it elsewhere"
    )]
    Covered(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    move |source| TrustError::Io { path: path.to_owned(), source }
}

/// Makes the pod's CA for the sandbox container `id`, in its state directory
/// `dir` (the key readable by root only).
pub fn make_ca(dir: &Path, id: &str) -> Result<(), TrustError> {
    let ca = SandboxCa::generate(id)?;
    write_new(&dir.join(CA_KEY_FILE), ca.key_pem(), 0o600)?;
    write_new(&dir.join(CA_CERT_FILE), ca.cert_pem(), 0o644)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), TrustError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))
}

/// The pod's CA, from the sandbox container's state directory.
fn read_ca(dir: &Path, id: &str) -> Result<SandboxCa, TrustError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(io(&path))
    };
    Ok(SandboxCa::from_pem(id, &read(CA_CERT_FILE)?, &read(CA_KEY_FILE)?)?)
}

/// The proxy's TLS inspection with the pod's CA (upstream roots: the node's
/// system ones and `OPENSHELL_UPSTREAM_CA`).
pub fn interceptor(dir: &Path, id: &str) -> Result<Arc<Interceptor>, TrustError> {
    Ok(Arc::new(Interceptor::with_env_roots(read_ca(dir, id)?)?))
}

/// Gives a pod container (`bundle`, `spec`) the trust bundle of the pod whose
/// sandbox container's state directory is `sandbox_dir` (id `sandbox`).
pub fn install(bundle: &Path, spec: &mut Spec, sandbox_dir: &Path, sandbox: &str) -> Result<(), TrustError> {
    let covering =
        spec.mounts().iter().flatten().map(|m| m.destination()).find(|d| Path::new(POD_BUNDLE).starts_with(d));
    if let Some(dest) = covering {
        return Err(TrustError::Covered(dest.clone()));
    }
    let ca = read_ca(sandbox_dir, sandbox)?;
    let root = spec.root().as_ref().map(|r| bundle.join(r.path())).unwrap_or_else(|| bundle.join("rootfs"));
    let roots = file_in_root(&root, SYSTEM_BUNDLE);
    let path = bundle.join(BUNDLE_FILE);
    write_new(&path, &openshell_proxy::tls::trust_bundle(roots.as_deref(), &ca), 0o644)?;
    let mount = MountBuilder::default()
        .destination(POD_BUNDLE)
        .typ("bind")
        .source(&path)
        .options(["rbind", "ro", "nosuid", "nodev", "noexec"].map(String::from).to_vec())
        .build()
        .map_err(|e| TrustError::Mount(e.to_string()))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// A file of the container's root filesystem (`rel` relative to it), resolved
/// inside it: a link in the image never leads onto the node.
fn file_in_root(root: &Path, rel: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
    let fd = rustix::fs::openat2(&dir, rel, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), how).ok()?;
    std::io::read_to_string(std::fs::File::from(fd)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_bundle_is_its_images_roots_and_the_pods_ca_mounted_read_only() {
        let sandbox = tempfile::tempdir().expect("tempdir");
        make_ca(sandbox.path(), "pod").expect("CA");
        use std::os::unix::fs::PermissionsExt;
        let key = std::fs::metadata(sandbox.path().join(CA_KEY_FILE)).expect("key");
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        let bundle = tempfile::tempdir().expect("tempdir");
        let certs = bundle.path().join("rootfs/etc/ssl/certs");
        std::fs::create_dir_all(&certs).expect("mkdir");
        std::fs::write(certs.join("ca-certificates.crt"), "IMAGE ROOTS\n").expect("roots");
        let mut spec = Spec::default();
        install(bundle.path(), &mut spec, sandbox.path(), "pod").expect("install");
        let text = std::fs::read_to_string(bundle.path().join(BUNDLE_FILE)).expect("bundle");
        assert!(text.starts_with("IMAGE ROOTS\n"), "{text}");
        let ca = std::fs::read_to_string(sandbox.path().join(CA_CERT_FILE)).expect("ca");
        assert!(text.ends_with(&ca), "{text}");
        let mounts = spec.mounts().clone().expect("mounts");
        let mount = mounts.iter().find(|m| m.destination() == Path::new(POD_BUNDLE)).expect("the mount");
        assert!(mount.options().as_ref().expect("options").contains(&"ro".to_owned()));
        // A container that mounts something over /run is told so.
        let run = MountBuilder::default().destination("/run").typ("tmpfs").source("tmpfs").build().expect("mount");
        spec.set_mounts(Some(vec![run]));
        let err = install(bundle.path(), &mut spec, sandbox.path(), "pod").expect_err("covered");
        assert!(err.to_string().contains("mounts /run over /run/openshell"), "{err}");
    }

    #[test]
    fn an_images_link_out_of_its_root_is_not_followed() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("node-secret"), "NODE\n").expect("write");
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("etc/ssl/certs")).expect("mkdir");
        std::os::unix::fs::symlink(
            outside.path().join("node-secret"),
            root.path().join("etc/ssl/certs/ca-certificates.crt"),
        )
        .expect("symlink");
        assert_eq!(file_in_root(root.path(), SYSTEM_BUNDLE), None);
        // Positive control: a file inside is read.
        std::fs::remove_file(root.path().join("etc/ssl/certs/ca-certificates.crt")).expect("rm");
        std::fs::write(root.path().join("etc/ssl/certs/ca-certificates.crt"), "IN\n").expect("write");
        assert_eq!(file_in_root(root.path(), SYSTEM_BUNDLE).as_deref(), Some("IN\n"));
    }
}
