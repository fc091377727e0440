//! Ed25519 keys for signing bundles: the private key as PKCS#8 PEM
//! (`-----BEGIN PRIVATE KEY-----`, mode 0600), the public one as SPKI PEM
//! (`-----BEGIN PUBLIC KEY-----`), the forms `openssl` reads and writes, so a
//! signature can be checked without openshell (`openssl pkeyutl -verify -rawin`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Length of a signature in bytes.
pub const SIGNATURE_LEN: usize = ed25519_dalek::SIGNATURE_LENGTH;

/// Errors reading, writing or using keys; each names the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file exists: a key is never overwritten.
    #[error("{}: exists; refusing to overwrite a key (remove it first, or choose another name)", path.display())]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The file is not a key of the expected kind.
    #[error("{}: not an Ed25519 {kind} key in PEM ({message})", path.display())]
    Format {
        /// The key file.
        path: PathBuf,
        /// `private` or `public`.
        kind: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// A private key that others can read.
    #[error("{}: mode {mode:o} lets others read this private key; `chmod 600` it", path.display())]
    Exposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The system's random source failed.
    #[error("generating a key: no randomness from the system: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_owned(), source }
}

/// `NAME.pub` beside `NAME`.
pub fn public_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes a new key pair: `private` (mode 0600, created, never replaced) and
/// `private.pub`. Returns the public key's path.
pub fn generate(private: &Path) -> Result<PathBuf, KeyError> {
    let public = public_path(private);
    for p in [private, public.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(KeyError::Exists { path: p.to_owned() });
        }
    }
    let mut secret = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&secret);
    let format =
        |kind, e: &dyn std::fmt::Display| KeyError::Format { path: private.to_owned(), kind, message: e.to_string() };
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| format("private", &e))?;
    let pub_pem = key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| format("public", &e))?;
    write_new(private, pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public, pub_pem.as_bytes(), 0o644) {
        let _ = fs::remove_file(private);
        return Err(e);
    }
    Ok(public)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: path.to_owned() }
        } else {
            io(path)(e)
        }
    })?;
    // The umask may have cleared bits of `mode`; set exactly it.
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(io(path))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io(path))
}

/// A private key, read from its file.
pub struct SecretKey {
    key: SigningKey,
    path: PathBuf,
}

impl SecretKey {
    /// Reads `path`: a PKCS#8 PEM Ed25519 key that only its owner can read.
    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        let meta = fs::metadata(path).map_err(io(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed { path: path.to_owned(), mode });
        }
        let text = fs::read_to_string(path).map_err(io(path))?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Format {
            path: path.to_owned(),
            kind: "private",
            message: e.to_string(),
        })?;
        Ok(SecretKey { key, path: path.to_owned() })
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A public key trusted to sign bundles.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: VerifyingKey,
    path: PathBuf,
}

impl TrustedKey {
    /// Reads `path`: an SPKI PEM Ed25519 public key.
    pub fn load(path: &Path) -> Result<TrustedKey, KeyError> {
        let text = fs::read_to_string(path).map_err(io(path))?;
        let key = VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::Format {
            path: path.to_owned(),
            kind: "public",
            message: e.to_string(),
        })?;
        Ok(TrustedKey { key, path: path.to_owned() })
    }

    /// Whether `signature` is this key's signature of `message` (strict: no
    /// malleable or small-order forms).
    pub fn verifies(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        self.key.verify_strict(message, &Signature::from_bytes(signature)).is_ok()
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_signs_and_verifies_and_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("site");
        let public = generate(&private).expect("generate");
        assert_eq!(public, dir.path().join("site.pub"));
        assert_eq!(fs::metadata(&private).expect("meta").permissions().mode() & 0o777, 0o600);
        let secret = SecretKey::load(&private).expect("load private");
        let trusted = TrustedKey::load(&public).expect("load public");
        let sig = secret.sign(b"index");
        assert!(trusted.verifies(b"index", &sig));
        assert!(!trusted.verifies(b"indey", &sig), "another message must not verify");
        assert!(matches!(generate(&private), Err(KeyError::Exists { .. })));
        // Another pair's public key does not verify this one's signatures.
        let other = generate(&dir.path().join("other")).expect("generate other");
        assert!(!TrustedKey::load(&other).expect("other").verifies(b"index", &sig));
    }

    #[test]
    fn a_readable_private_key_and_a_wrong_file_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("k");
        let public = generate(&private).expect("generate");
        fs::set_permissions(&private, fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = SecretKey::load(&private).err().expect("exposed key refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let e = TrustedKey::load(&private).expect_err("a private key is no public key");
        assert!(e.to_string().contains("not an Ed25519 public key"), "{e}");
        fs::set_permissions(&public, fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = SecretKey::load(&public).err().expect("a public key is no private key");
        assert!(e.to_string().contains(&public.display().to_string()), "{e}");
    }
}
