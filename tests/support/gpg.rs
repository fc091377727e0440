//! A throwaway gpg home with one signing key, for signed test archives. Shared by
//! the end-to-end tests and the Debian crate's tests (included by path).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A throwaway gpg home with one signing key; kills its agent on drop.
pub struct Key {
    dir: tempfile::TempDir,
    /// The key's fingerprint.
    pub fpr: String,
}

impl Key {
    pub fn new(uid: &str) -> Key {
        Key::new_at(uid, None, "never")
    }

    /// A key created at `faked_time` (gpg's `--faked-system-time`) expiring after `expire`.
    pub fn new_at(uid: &str, faked_time: Option<&str>, expire: &str) -> Key {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut key = Key { dir, fpr: String::new() };
        let mut args = vec!["--quick-gen-key", uid, "ed25519", "sign", expire];
        if let Some(t) = faked_time {
            args.splice(0..0, ["--faked-system-time", t]);
        }
        key.gpg(&args, None);
        let out = key.gpg(&["--list-keys", "--with-colons"], None);
        key.fpr = String::from_utf8_lossy(&out)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|r| r.trim_matches(':').to_owned()))
            .expect("fingerprint");
        key
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// Runs gpg in this home (batch mode, no passphrase); panics on failure.
    pub fn gpg(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .args(["--batch", "--quiet", "--homedir"])
            .arg(self.home())
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
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
