//! Signed updates of a running pod's egress proxy: its network policies and its
//! inference route.
//!
//! A pod's policy is fixed when its containers are created, except its network
//! policies, which change live as on the host (the proxy's hot reload); so does
//! the inference route (with its credential). On the host the gateway hands them
//! to the sandbox's proxy directly; a pod's proxy runs on a node the gateway
//! cannot reach except through the Kubernetes API, so the gateway's Kubernetes
//! driver sends them through pods/portforward to the proxy's control port
//! ([`CONTROL_PORT`], on the pod's loopback; below 1024, so that nothing in the
//! pod, which holds no capability, can listen there in the proxy's place and
//! receive a credential). Anything in the
//! pod can reach that port too, so an update is taken only when it carries a
//! signature by the key the pod was created with (its public half in the pod's
//! annotation [`SIGNER_ANNOTATION`], which the runtime reads when the pod's sandbox
//! container is created), names this pod (namespace, name and uid), and has a
//! revision above the last one applied of its [`Kind`] (no replay; the one in
//! force sent again changes nothing and is taken).
//!
//! The wire: one JSON line each way, an [`Update`] in, an [`Answer`] out.
//!
//! - [`Signer`]: the gateway's key (Ed25519, PKCS#8 in a file of the driver's).
//! - [`Verifier`]: the pod proxy's check, made from the annotation and the pod's
//!   identity.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// The pod annotation that names the key updates must be signed with:
/// `ed25519:BASE64` of the public key.
pub const SIGNER_ANNOTATION: &str = "run.openshell.policy.signer";
/// The pod egress proxy's own port on the pod's loopback (its containers'
/// `HTTP_PROXY`).
pub const PROXY_PORT: u16 = 15128;
/// The pod proxy's control port on the pod's loopback: a privileged port.
pub const CONTROL_PORT: u16 = 1015;
/// The longest line either side reads (a policy is a few KiB).
pub const MAX_LINE: u64 = 1 << 20;
/// What a signature covers besides the update's fields, so that no signature made
/// for another purpose with the same key passes.
const CONTEXT: &str = "openshell pod network policy update v1";
const KEY_PREFIX: &str = "ed25519:";

/// The pod an update is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What an update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `body` is the pod's whole policy text (only its network policies are
    /// applied live).
    Policy,
    /// `body` is the inference route as JSON (`null`: none), its credential
    /// included.
    Route,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Policy => "policy",
            Kind::Route => "route",
        }
    }
}

/// A signed update.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    pub pod: PodIdentity,
    pub kind: Kind,
    /// The gateway's revision (of the sandbox's policy, or of the route); each
    /// applied update's is above the last one's of its kind.
    pub revision: u64,
    pub body: String,
    /// Base64 of the Ed25519 signature of [`signed_bytes`].
    pub signature: String,
}

/// The proxy's answer to one update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Applied: new connections are decided by it (the digest of the policy text).
    Applied { revision: u64, digest: String },
    /// Not applied; the proxy's policy is unchanged.
    Refused { reason: String },
}

/// Why an update, a key or an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not an Ed25519 key in PKCS#8: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("making an Ed25519 key failed")]
    KeyGeneration,
    #[error("the annotation {SIGNER_ANNOTATION} is `{0}`, not `ed25519:` and the base64 of a 32-byte public key")]
    BadSigner(String),
    #[error("the update is not one JSON object of an update: {0}")]
    Malformed(String),
    #[error("the update is for pod {got}, this is pod {this}")]
    OtherPod { got: String, this: String },
    #[error("the update's signature does not verify with the pod's signer key")]
    BadSignature,
    #[error("the update's revision {got} is not above the last applied, {last}")]
    Stale { got: u64, last: u64 },
    #[error("the pod's proxy: {0}")]
    Exchange(String),
}

impl std::fmt::Display for PodIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} (uid {})", self.namespace, self.name, self.uid)
    }
}

/// The bytes a signature covers: the context, the pod, the kind, the revision
/// and the body's digest, one per line (none of them can hold a newline:
/// Kubernetes names and uids cannot, the digest is hex).
pub fn signed_bytes(pod: &PodIdentity, kind: Kind, revision: u64, body: &str) -> Vec<u8> {
    let digest = openshell_store::Digest::sha256(body.as_bytes());
    let (namespace, name, uid, kind) = (&pod.namespace, &pod.name, &pod.uid, kind.name());
    format!("{CONTEXT}\n{namespace}\n{name}\n{uid}\n{kind}\n{revision}\n{digest}\n").into_bytes()
}

/// The gateway's signing key.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl Signer {
    /// The key in `path` (PKCS#8), made there (mode 0600) when the file is absent.
    pub fn load_or_create(path: &Path) -> Result<Signer, UpdateError> {
        let io = |source| UpdateError::Io { path: path.to_owned(), source };
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let made = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                    .map_err(|_| UpdateError::KeyGeneration)?;
                write_private(path, made.as_ref()).map_err(io)?;
                made.as_ref().to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| UpdateError::BadKey { path: path.to_owned(), reason: e.to_string() })?;
        Ok(Signer { pair })
    }

    /// The value of the pod annotation [`SIGNER_ANNOTATION`].
    pub fn annotation(&self) -> String {
        format!("{KEY_PREFIX}{}", BASE64.encode(self.pair.public_key().as_ref()))
    }

    /// `body` as revision `revision` of `pod`'s `kind`, signed.
    pub fn sign(&self, pod: &PodIdentity, kind: Kind, revision: u64, body: &str) -> Update {
        let signature = self.pair.sign(&signed_bytes(pod, kind, revision, body));
        Update { pod: pod.clone(), kind, revision, body: body.to_owned(), signature: BASE64.encode(signature.as_ref()) }
    }
}

/// Writes a new file readable by its owner only, never following a link.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A pod proxy's check of updates: the pod's signer key and identity, and the
/// last revision applied of each kind.
#[derive(Debug)]
pub struct Verifier {
    key: Vec<u8>,
    pod: PodIdentity,
    /// Per kind: the last revision applied and its body's digest.
    last: std::collections::HashMap<Kind, (u64, String)>,
}

impl Verifier {
    /// From the pod's annotation [`SIGNER_ANNOTATION`] and its identity.
    pub fn new(annotation: &str, pod: PodIdentity) -> Result<Verifier, UpdateError> {
        let bad = || UpdateError::BadSigner(annotation.to_owned());
        let encoded = annotation.strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let key = BASE64.decode(encoded).map_err(|_| bad())?;
        if key.len() != 32 {
            return Err(bad());
        }
        Ok(Verifier { key, pod, last: std::collections::HashMap::new() })
    }

    /// Parses one line and checks it; the caller applies the policy and then
    /// calls [`Verifier::applied`].
    pub fn check(&self, line: &str) -> Result<Update, UpdateError> {
        let update: Update = serde_json::from_str(line).map_err(|e| UpdateError::Malformed(e.to_string()))?;
        if update.pod != self.pod {
            return Err(UpdateError::OtherPod { got: update.pod.to_string(), this: self.pod.to_string() });
        }
        let signature = BASE64.decode(&update.signature).map_err(|_| UpdateError::BadSignature)?;
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(&signed_bytes(&update.pod, update.kind, update.revision, &update.body), &signature)
            .map_err(|_| UpdateError::BadSignature)?;
        // What is in force, sent again (a push at a pod's start crossing a
        // change's), changes nothing: taken. Anything older, or the same revision
        // with another body, is not.
        let digest = openshell_store::Digest::sha256(update.body.as_bytes()).to_string();
        match self.last.get(&update.kind) {
            Some((last, applied)) if update.revision == *last && digest == *applied => Ok(update),
            Some((last, _)) if update.revision <= *last => {
                Err(UpdateError::Stale { got: update.revision, last: *last })
            }
            _ => Ok(update),
        }
    }

    /// Records that `update` was applied: no revision of its kind up to it is
    /// taken again.
    pub fn applied(&mut self, update: &Update) {
        if update.revision >= self.last(update.kind) {
            let digest = openshell_store::Digest::sha256(update.body.as_bytes()).to_string();
            self.last.insert(update.kind, (update.revision, digest));
        }
    }

    /// The last revision of `kind` applied (0: what the pod was created with).
    pub fn last(&self, kind: Kind) -> u64 {
        self.last.get(&kind).map_or(0, |(revision, _)| *revision)
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes.
pub fn read_line(reader: impl std::io::Read) -> std::io::Result<String> {
    let mut line = String::new();
    std::io::BufReader::new(reader.take(MAX_LINE)).read_line(&mut line)?;
    if !line.ends_with('\n') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no whole line (too long, or cut short)"));
    }
    Ok(line)
}

/// The sending side: writes `update` as one line on `stream`, reads the answer.
pub fn send(mut stream: impl std::io::Read + std::io::Write, update: &Update) -> Result<Answer, UpdateError> {
    let exchange = |e: std::io::Error| UpdateError::Exchange(e.to_string());
    let mut line = serde_json::to_vec(update).map_err(|e| UpdateError::Exchange(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(exchange)?;
    stream.flush().map_err(exchange)?;
    let answer = read_line(&mut stream).map_err(exchange)?;
    serde_json::from_str(&answer).map_err(|e| UpdateError::Exchange(format!("its answer `{}`: {e}", answer.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> PodIdentity {
        PodIdentity { namespace: "openshell".into(), name: name.into(), uid: format!("uid-{name}") }
    }

    fn line(update: &Update) -> String {
        serde_json::to_string(update).expect("test setup")
    }

    #[test]
    fn a_key_is_made_once_private_and_then_reused() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("key.pk8");
        let first = Signer::load_or_create(&path).expect("test setup");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).expect("test setup").permissions().mode() & 0o777, 0o600);
        assert_eq!(Signer::load_or_create(&path).expect("test setup").annotation(), first.annotation());
        std::fs::write(&path, b"not a key").expect("test setup");
        let err = Signer::load_or_create(&path).err().expect("a bad key file is refused");
        assert!(err.to_string().contains("not an Ed25519 key"), "{err}");
    }

    #[test]
    fn only_a_signed_fresh_update_for_this_pod_passes() {
        let dir = tempfile::tempdir().expect("test setup");
        let signer = Signer::load_or_create(&dir.path().join("a")).expect("test setup");
        let other = Signer::load_or_create(&dir.path().join("b")).expect("test setup");
        let mut verifier = Verifier::new(&signer.annotation(), pod("p")).expect("test setup");
        // Positive control: signed, for this pod, newer.
        let good = signer.sign(&pod("p"), Kind::Policy, 3, "version: 1\n");
        let checked = verifier.check(&line(&good)).expect("a good update passes");
        verifier.applied(&checked);
        assert_eq!(verifier.last(Kind::Policy), 3);
        // Another kind has its own revisions.
        assert_eq!(verifier.last(Kind::Route), 0);
        let route = signer.sign(&pod("p"), Kind::Route, 1, "null");
        assert!(verifier.check(&line(&route)).is_ok());
        // The kind is signed: a policy signature does not pass as a route.
        let mut relabelled = signer.sign(&pod("p"), Kind::Policy, 9, "null");
        relabelled.kind = Kind::Route;
        assert!(matches!(verifier.check(&line(&relabelled)), Err(UpdateError::BadSignature)));
        // The one in force again: taken (it changes nothing); the same revision
        // with another body, or an older one: refused.
        assert!(verifier.check(&line(&good)).is_ok());
        let other_body = signer.sign(&pod("p"), Kind::Policy, 3, "version: 1\nnetwork_policies: {}\n");
        assert!(matches!(verifier.check(&line(&other_body)), Err(UpdateError::Stale { got: 3, last: 3 })));
        assert!(matches!(
            verifier.check(&line(&signer.sign(&pod("p"), Kind::Policy, 2, "x"))),
            Err(UpdateError::Stale { .. })
        ));
        // Another key; another pod; a policy changed after signing; no signature.
        let forged = other.sign(&pod("p"), Kind::Policy, 4, "version: 1\n");
        assert!(matches!(verifier.check(&line(&forged)), Err(UpdateError::BadSignature)));
        assert!(matches!(
            verifier.check(&line(&signer.sign(&pod("q"), Kind::Policy, 4, "x"))),
            Err(UpdateError::OtherPod { .. })
        ));
        let mut tampered = signer.sign(&pod("p"), Kind::Policy, 4, "version: 1\n");
        tampered.body.push_str("network_policies: {}\n");
        assert!(matches!(verifier.check(&line(&tampered)), Err(UpdateError::BadSignature)));
        let mut tampered = signer.sign(&pod("p"), Kind::Policy, 4, "version: 1\n");
        tampered.revision = 40;
        assert!(matches!(verifier.check(&line(&tampered)), Err(UpdateError::BadSignature)));
        tampered.signature = String::new();
        assert!(matches!(verifier.check(&line(&tampered)), Err(UpdateError::BadSignature)));
        assert!(matches!(verifier.check("{\"pod\": 1}"), Err(UpdateError::Malformed(_))));
    }

    #[test]
    fn a_bad_signer_annotation_is_named() {
        for bad in ["", "ed25519:", "ed25519:!!", "rsa:AAAA", "ed25519:AAAA"] {
            let err = Verifier::new(bad, pod("p")).expect_err(bad);
            assert!(err.to_string().contains(&format!("is `{bad}`")), "{err}");
        }
    }

    #[test]
    fn send_writes_one_line_and_reads_the_answer() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().expect("test setup");
        let dir = tempfile::tempdir().expect("test setup");
        let signer = Signer::load_or_create(&dir.path().join("k")).expect("test setup");
        let update = signer.sign(&pod("p"), Kind::Policy, 1, "version: 1\n");
        let peer = std::thread::spawn(move || {
            let got = read_line(&b).expect("test setup");
            let answer = Answer::Applied { revision: 1, digest: "sha256:x".into() };
            let mut b = b;
            writeln!(b, "{}", serde_json::to_string(&answer).expect("test setup")).expect("test setup");
            got
        });
        let answer = send(&mut a, &update).expect("test setup");
        assert_eq!(answer, Answer::Applied { revision: 1, digest: "sha256:x".into() });
        let got: Update = serde_json::from_str(&peer.join().expect("test setup")).expect("test setup");
        assert_eq!(got.signature, update.signature);
    }
}
