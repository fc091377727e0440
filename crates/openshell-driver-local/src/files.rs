//! The files a local sandbox is made of, read from its image or written beside it.

use std::path::PathBuf;

use openshell_driver::{CA_BUNDLE, DriverError};
use openshell_oci::spec::ImageConfiguration;
use openshell_sandbox::sandbox::{PlacedFile, SandboxDir};

/// The image's environment, command (`Entrypoint` then `Cmd`) and working directory.
pub fn image_config(config: &ImageConfiguration) -> (Vec<String>, Vec<String>, String) {
    let Some(c) = config.config() else { return (Vec::new(), Vec::new(), "/".to_owned()) };
    let mut args = c.entrypoint().clone().unwrap_or_default();
    args.extend(c.cmd().iter().flatten().cloned());
    let workdir = c.working_dir().as_deref().filter(|w| !w.is_empty()).unwrap_or("/").to_owned();
    (c.env().clone().unwrap_or_default(), args, workdir)
}

/// A file of the image (`rel` relative to its root), from the topmost layer
/// that has it. Symlinks resolve inside that layer, never onto the host.
pub(crate) fn image_file(layers: &[PathBuf], rel: &str) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    layers.iter().rev().find_map(|layer| {
        let root = rustix::fs::open(layer, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        let fd = rustix::fs::openat2(&root, rel, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), how).ok()?;
        std::io::read_to_string(std::fs::File::from(fd)).ok()
    })
}

/// The sandbox's resolver configuration (host side), placed at
/// `/etc/resolv.conf` inside: its DNS responder, on the proxy's address.
pub const RESOLV_CONF_FILE: &str = "resolv.conf";

/// Writes the sandbox's `resolv.conf` (the responder on `fence`'s host end) beside
/// it; the supervisor puts it at `/etc/resolv.conf` at every start.
pub(crate) fn resolv_conf(
    dir: &SandboxDir,
    fence: &openshell_sandbox::fence::Fence,
) -> Result<PlacedFile, DriverError> {
    let source = dir.0.join(RESOLV_CONF_FILE);
    let text = format!(
        "# openshell: the sandbox's DNS responder; it answers names its network policy allows\nnameserver {}\n",
        fence.host_addr
    );
    std::fs::write(&source, text).map_err(|e| DriverError::failed(format!("{}: {e}", source.display())))?;
    Ok(PlacedFile { path: "/etc/resolv.conf".to_owned(), source, mode: 0o644 })
}

/// The sandbox CA's certificate and key, in the sandbox directory (host side).
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Makes the sandbox's CA (key owner-only, on the host side) and its trust
/// bundle, which the supervisor puts into the sandbox's root at every start.
pub(crate) fn install_ca(dir: &SandboxDir, id: &str, layers: &[PathBuf]) -> Result<PlacedFile, DriverError> {
    let source = make_ca(dir, id, image_file(layers, openshell_proxy::tls::SYSTEM_BUNDLE).as_deref())?;
    Ok(PlacedFile { path: CA_BUNDLE.to_owned(), source, mode: 0o644 })
}

/// Makes the sandbox's CA in `dir` (key owner-only) and its trust bundle: the
/// image's system `roots` plus that CA. Returns the bundle's host path.
pub fn make_ca(dir: &SandboxDir, id: &str, roots: Option<&str>) -> Result<PathBuf, DriverError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let ca = openshell_proxy::SandboxCa::generate(id).map_err(DriverError::failed)?;
    let write = |path: PathBuf, text: &str, mode: u32| -> Result<(), DriverError> {
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| DriverError::failed(format!("{}: {e}", path.display())))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .and_then(|()| file.write_all(text.as_bytes()))
            .map_err(|e| DriverError::failed(format!("{}: {e}", path.display())))
    };
    write(dir.0.join(CA_KEY_FILE), ca.key_pem(), 0o600)?;
    write(dir.0.join(CA_CERT_FILE), ca.cert_pem(), 0o644)?;
    if roots.is_none() {
        tracing::warn!(sandbox = id, "the image has no system roots; its trust bundle holds only the sandbox CA");
    }
    let bundle = openshell_proxy::tls::trust_bundle(roots, &ca);
    let source = dir.0.join(CA_BUNDLE_FILE);
    write(source.clone(), &bundle, 0o644)?;
    Ok(source)
}

/// The trust bundle on the host side (the supervisor copies it into the root).
pub const CA_BUNDLE_FILE: &str = "ca-bundle.pem";
