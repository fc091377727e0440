//! A throwaway gpg home with one signing key (for signed test archives).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Key {
    dir: tempfile::TempDir,
    fpr: String,
}

impl Key {
    pub fn new(uid: &str) -> Key {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut key = Key { dir, fpr: String::new() };
        key.gpg(&["--quick-gen-key", uid, "ed25519", "sign", "never"], None);
        let out = key.gpg(&["--list-keys", "--with-colons"], None);
        key.fpr = String::from_utf8_lossy(&out)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|r| r.trim_matches(':').to_owned()))
            .expect("fingerprint");
        key
    }

    fn gpg(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .args(["--batch", "--quiet", "--homedir"])
            .arg(self.dir.path())
            .args(["--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg is not installed: install the gnupg package");
        if let Some(data) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(data).expect("write");
        }
        let out = child.wait_with_output().expect("gpg runs");
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// The public key as a binary keyring file.
    pub fn keyring(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.gpg(&["--export", &self.fpr], None)).expect("write keyring");
        path
    }

    pub fn clearsign(&self, text: &[u8]) -> Vec<u8> {
        self.gpg(&["--clearsign", "--local-user", &self.fpr], Some(text))
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").arg("--homedir").arg(self.dir.path()).args(["--kill", "all"]).status();
    }
}
