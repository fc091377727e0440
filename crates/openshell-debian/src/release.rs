//! `InRelease` / `Release` files: signature verification with `gpgv` and parsing.
//!
//! Verification is all or nothing: [`verify_inrelease`] returns the signed text only when
//! `gpgv` reports a good signature (`GOODSIG` and `VALIDSIG`) from a key in the given
//! keyrings and no bad one. A bad signature, a signature only by unknown or expired keys,
//! an unsigned or malformed file, a missing keyring or a missing `gpgv` is an error — never
//! a warning. Only gpgv's output (the text that was actually signed) is returned, so text
//! outside the signed block can never reach the parser.
//!
//! `Valid-Until` is parsed but deliberately **not enforced**: a lockfile pins every
//! artifact by sha256, and rebuilding from it offline must keep working after the Release
//! file has expired (trixie-security's expires after 7 days). Freshness checks belong to
//! whoever refreshes a lockfile, using [`Release::valid_until`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use openshell_store::Digest;

use crate::control::{self, ControlError, Paragraph};

/// Errors from verifying or parsing a Release file. Each names the input.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The file is not a clearsigned message (or has text outside it).
    #[error("{origin}: not a valid clearsigned file: {reason}")]
    NotClearsigned {
        /// The input's name.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// `gpgv` rejected the signature, or found no good one.
    #[error("{origin}: signature verification failed: {message}")]
    BadSignature {
        /// The input's name.
        origin: String,
        /// gpgv's verdict and messages.
        message: String,
    },
    /// `gpgv` could not be run.
    #[error("{origin}: cannot run `{}` to verify the signature: {source}", program.display())]
    Gpgv {
        /// The input's name.
        origin: String,
        /// The program that was run.
        program: PathBuf,
        /// Why it could not be run.
        #[source]
        source: std::io::Error,
    },
    /// No keyring was given.
    #[error("{origin}: no keyring to verify the signature against")]
    NoKeyrings {
        /// The input's name.
        origin: String,
    },
    /// A keyring file does not exist or cannot be read.
    #[error("{origin}: keyring {}: {source}", path.display())]
    Keyring {
        /// The input's name.
        origin: String,
        /// The keyring.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },
    /// deb822 syntax error.
    #[error(transparent)]
    Syntax(#[from] ControlError),
    /// A field is missing or malformed.
    #[error("{origin}:{line}: field {field}: {message}")]
    Field {
        /// The input's name.
        origin: String,
        /// 1-based line of the field (or of the paragraph when missing).
        line: usize,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// One entry of a Release file's `SHA256` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    /// Path relative to the suite directory (`main/binary-amd64/Packages.xz`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The sha256 digest.
    pub sha256: Digest,
}

/// A parsed Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The input's name (for errors further down).
    pub origin: String,
    /// `Suite` (`stable`, `trixie-updates`, ...).
    pub suite: Option<String>,
    /// `Codename` (`trixie`, ...).
    pub codename: Option<String>,
    /// `Date`, as written (RFC 2822).
    pub date: Option<String>,
    /// `Valid-Until`, as written. Not enforced; see the module documentation.
    pub valid_until: Option<String>,
    /// `Architectures`.
    pub architectures: Vec<String>,
    /// `Components`.
    pub components: Vec<String>,
    /// `Acquire-By-Hash: yes`.
    pub acquire_by_hash: bool,
    /// The `SHA256` file list in file order.
    pub sha256: Vec<ReleaseFile>,
    /// All fields, for anything not modelled above.
    pub fields: Paragraph,
}

impl Release {
    /// Parses the text of a Release file (the signed text of an `InRelease`, as returned
    /// by [`verify_inrelease`]). A clearsigned file is rejected: verify it first.
    pub fn parse(origin: &str, text: &[u8]) -> Result<Release, ReleaseError> {
        if text.trim_ascii_start().starts_with(b"-----BEGIN PGP") {
            return Err(ReleaseError::NotClearsigned {
                origin: origin.to_owned(),
                reason: "the text is still PGP-armored; verify it with verify_inrelease and parse the signed text"
                    .into(),
            });
        }
        let mut paras = control::parse_bytes(origin, text)?;
        if paras.len() != 1 {
            return Err(ReleaseError::Field {
                origin: origin.to_owned(),
                line: paras.get(1).map_or(1, Paragraph::line),
                field: "-".into(),
                message: format!("expected exactly one paragraph, found {}", paras.len()),
            });
        }
        let fields = paras.remove(0);
        let words = |name: &str| -> Vec<String> {
            fields.get(name).map(|v| v.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
        };
        let field_err = |field: &str, line: usize, message: String| ReleaseError::Field {
            origin: origin.to_owned(),
            line,
            field: field.to_owned(),
            message,
        };
        let Some(sha) = fields.field("SHA256") else {
            return Err(field_err("SHA256", fields.line(), "missing (no sha256 file list)".into()));
        };
        let mut sha256: Vec<ReleaseFile> = Vec::new();
        for (i, line) in sha.value.split('\n').enumerate() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.is_empty() {
                continue;
            }
            let lineno = sha.line + i;
            let [hash, size, path] = parts[..] else {
                return Err(field_err(
                    "SHA256",
                    lineno,
                    format!("expected `<sha256> <size> <path>`, found `{}`", line.trim()),
                ));
            };
            let digest = format!("sha256:{}", hash.to_ascii_lowercase())
                .parse::<Digest>()
                .map_err(|_| field_err("SHA256", lineno, format!("`{hash}` is not a sha256 hex digest")))?;
            let size =
                size.parse::<u64>().map_err(|_| field_err("SHA256", lineno, format!("`{size}` is not a size")))?;
            if sha256.iter().any(|f| f.path == path) {
                return Err(field_err("SHA256", lineno, format!("`{path}` is listed twice")));
            }
            sha256.push(ReleaseFile { path: path.to_owned(), size, sha256: digest });
        }
        Ok(Release {
            origin: origin.to_owned(),
            suite: fields.get("Suite").map(str::to_owned),
            codename: fields.get("Codename").map(str::to_owned),
            date: fields.get("Date").map(str::to_owned),
            valid_until: fields.get("Valid-Until").map(str::to_owned),
            architectures: words("Architectures"),
            components: words("Components"),
            acquire_by_hash: fields.get("Acquire-By-Hash").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
            fields,
        })
    }

    /// Verifies an `InRelease` file against `keyrings` and parses its signed text.
    pub fn from_inrelease(origin: &str, inrelease: &[u8], keyrings: &[PathBuf]) -> Result<Release, ReleaseError> {
        let verified = verify_clearsigned(origin, inrelease, keyrings, Path::new(GPGV))?;
        Release::parse(origin, &verified.text)
    }

    /// The `SHA256` entry for `path` (relative to the suite directory).
    pub fn file(&self, path: &str) -> Option<&ReleaseFile> {
        self.sha256.iter().find(|f| f.path == path)
    }
}

/// The default `gpgv` program, looked up on `PATH`.
pub const GPGV: &str = "gpgv";

/// What a successful verification yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed text, exactly as gpgv output it (dash-escaping removed).
    pub text: Vec<u8>,
    /// Fingerprints of the keys that made good signatures (from `VALIDSIG`).
    pub signers: Vec<String>,
    /// Key ids of further signatures whose keys are not in the keyrings (ignored, as apt
    /// does, when another signature is good).
    pub unknown_keys: Vec<String>,
}

/// Verifies a clearsigned `InRelease` file with `gpgv` against `keyrings` and returns the
/// signed text. Any failure is an error; see the module documentation.
pub fn verify_inrelease(inrelease: &[u8], keyrings: &[PathBuf]) -> Result<Vec<u8>, ReleaseError> {
    verify_clearsigned("InRelease", inrelease, keyrings, Path::new(GPGV)).map(|v| v.text)
}

/// Verifies a clearsigned file, naming it `origin` in errors, with the given `gpgv`
/// program.
///
/// Runs `gpgv --homedir <empty temp dir> --status-fd 1 --keyring K... --output <temp file> -`
/// with the file on stdin: status lines come on stdout (nothing else is written there, so
/// no message text can pose as a status line), human messages on stderr, and the signed
/// text in a file in the same private temporary directory, read only after a good verdict
/// (gpgv writes it even when the signature is bad). The empty home keeps the user's
/// `~/.gnupg` out of it.
pub fn verify_clearsigned(
    origin: &str,
    data: &[u8],
    keyrings: &[PathBuf],
    gpgv: &Path,
) -> Result<Verified, ReleaseError> {
    check_clearsigned(origin, data)?;
    if keyrings.is_empty() {
        return Err(ReleaseError::NoKeyrings { origin: origin.to_owned() });
    }
    let mut keyring_args = Vec::new();
    for k in keyrings {
        // gpgv reads keyring paths without a slash relative to its home directory.
        let abs = std::path::absolute(k)
            .and_then(|p| std::fs::File::open(&p).map(|_| p))
            .map_err(|source| ReleaseError::Keyring { origin: origin.to_owned(), path: k.clone(), source })?;
        keyring_args.push("--keyring".into());
        keyring_args.push(abs.into_os_string());
    }
    let io_err = |source| ReleaseError::Gpgv { origin: origin.to_owned(), program: gpgv.to_owned(), source };
    let tmp = tempfile::tempdir().map_err(io_err)?;
    let home = tmp.path().join("home");
    let signed = tmp.path().join("signed");
    let mut child = Command::new(gpgv)
        .arg("--homedir")
        .arg(&home)
        .args(["--status-fd", "1"])
        .args(&keyring_args)
        .arg("--output")
        .arg(&signed)
        .arg("-")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err)?;
    let (mut stdin, mut stdout, mut stderr) = match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
        (Some(i), Some(o), Some(e)) => (i, o, e),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io_err(std::io::Error::other("child pipes missing")));
        }
    };
    // Feed stdin and drain both outputs concurrently: gpgv streams its output, so writing
    // everything first could fill the pipes and deadlock.
    let (write_res, out_res, err_res) = std::thread::scope(|s| {
        let w = s.spawn(move || {
            let r = stdin.write_all(data);
            drop(stdin);
            r
        });
        let e = s.spawn(move || {
            let mut buf = Vec::new();
            stderr.read_to_end(&mut buf).map(|_| buf)
        });
        let mut out = Vec::new();
        let o = stdout.read_to_end(&mut out).map(|_| out);
        let w = w.join().unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked")));
        let e = e.join().unwrap_or_else(|_| Err(std::io::Error::other("stderr reader panicked")));
        (w, o, e)
    });
    let status = child.wait().map_err(io_err)?;
    let status_lines = String::from_utf8_lossy(&out_res.map_err(io_err)?).into_owned();
    let diag = String::from_utf8_lossy(&err_res.map_err(io_err)?).into_owned();
    // A broken pipe on stdin means gpgv stopped reading early; its verdict says why.
    if let Err(e) = write_res
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(io_err(e));
    }

    let mut good = Vec::new();
    let mut valid = Vec::new();
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    let mut messages = Vec::new();
    for line in diag.lines() {
        let line = line.strip_prefix("gpgv: ").unwrap_or(line).split_whitespace().collect::<Vec<_>>().join(" ");
        if !line.is_empty() {
            messages.push(line);
        }
    }
    for line in status_lines.lines() {
        let Some(st) = line.strip_prefix("[GNUPG:] ") else { continue };
        let mut words = st.split_whitespace();
        let kw = words.next().unwrap_or_default();
        let arg = words.next().unwrap_or_default().to_owned();
        let rest = st.split_whitespace().skip(2).collect::<Vec<_>>().join(" ");
        match kw {
            "GOODSIG" => good.push(arg),
            "VALIDSIG" => valid.push(arg),
            "BADSIG" => problems.push(format!("BAD signature by key {arg} {rest}")),
            "EXPKEYSIG" => problems.push(format!("signature by expired key {arg} {rest}")),
            "REVKEYSIG" => problems.push(format!("signature by revoked key {arg} {rest}")),
            "EXPSIG" => problems.push(format!("expired signature by key {arg}")),
            "NO_PUBKEY" => unknown.push(arg),
            "NODATA" => problems.push("no signature found".to_owned()),
            _ => {}
        }
    }
    let bad = problems.iter().any(|p| p.starts_with("BAD"));
    if !bad && !good.is_empty() && !valid.is_empty() {
        if !status.success() {
            tracing::debug!(origin, ?unknown, %status, "gpgv: good signature; other signatures could not be checked");
        }
        valid.sort();
        valid.dedup();
        let text = std::fs::read(&signed).map_err(io_err)?;
        return Ok(Verified { text, signers: valid, unknown_keys: unknown });
    }
    let mut verdict = problems;
    if good.is_empty() && !unknown.is_empty() {
        verdict.push(format!("signed only by unknown key(s) {} (not in the given keyrings)", unknown.join(", ")));
    }
    if verdict.is_empty() {
        verdict.push(format!("no good signature (gpgv {status})"));
    }
    let mut message = verdict.join("; ");
    if !messages.is_empty() {
        message.push_str(" — gpgv: ");
        message.push_str(&messages.join(" / "));
    }
    Err(ReleaseError::BadSignature { origin: origin.to_owned(), message })
}

/// Checks the clearsigned structure: one signed message, one signature block, nothing
/// but whitespace around them.
fn check_clearsigned(origin: &str, data: &[u8]) -> Result<(), ReleaseError> {
    let bad = |reason: &str| ReleaseError::NotClearsigned { origin: origin.to_owned(), reason: reason.to_owned() };
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').map(|l| l.trim_ascii_end()).collect();
    let Some(first) = lines.iter().position(|l| !l.is_empty()) else {
        return Err(bad("the file is empty"));
    };
    if lines[first] != b"-----BEGIN PGP SIGNED MESSAGE-----" {
        return Err(bad("unsigned: it does not start with `-----BEGIN PGP SIGNED MESSAGE-----`"));
    }
    let count = |marker: &[u8]| lines.iter().filter(|l| **l == marker).count();
    if count(b"-----BEGIN PGP SIGNED MESSAGE-----") != 1 {
        return Err(bad("more than one signed message"));
    }
    if count(b"-----BEGIN PGP SIGNATURE-----") != 1 || count(b"-----END PGP SIGNATURE-----") != 1 {
        return Err(bad("expected exactly one signature block"));
    }
    let end = lines.iter().position(|l| *l == b"-----END PGP SIGNATURE-----").unwrap_or(lines.len());
    if lines[end.saturating_add(1).min(lines.len())..].iter().any(|l| !l.is_empty()) {
        return Err(bad("text after the signature block"));
    }
    Ok(())
}

/// The directory Debian's archive keyrings are installed in.
pub const KEYRING_DIR: &str = "/usr/share/keyrings";

/// The machine's Debian archive keyrings (installed by `debian-archive-keyring`), sorted:
/// `debian-archive-keyring.gpg` and every `debian-archive-*.gpg` (per-release stable,
/// automatic and security keys), excluding `debian-archive-removed-keys.gpg`.
pub fn find_keyrings() -> Vec<PathBuf> {
    find_keyrings_in(Path::new(KEYRING_DIR))
}

/// Like [`find_keyrings`], in another directory. A missing directory yields no keyrings.
pub fn find_keyrings_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("debian-archive-")
                && name.ends_with(".gpg")
                && !name.contains("removed")
                && e.path().is_file()
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}
