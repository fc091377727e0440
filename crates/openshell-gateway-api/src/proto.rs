//! The gateway's API: what clients ask and what it answers, one JSON message each
//! (see [`crate::wire`]). A request travels in an [`Envelope`] naming the API
//! version it speaks; a gateway answers another version with `unsupported`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The version of this API. A change that an older peer would misread is a new
/// version; fields added with defaults are not.
pub const API_VERSION: u32 = 1;

/// A request as sent: the version it speaks, then the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub api: u32,
    pub request: Request,
}

/// A request of a client. Requests that attach the client's terminal or stdio
/// carry its stdin, stdout and stderr as descriptors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Create(CreateRequest),
    /// An image the gateway's store lacks, sent by the client: this message, then
    /// one [`BlobFollows`] per blob (manifest, config, layers) with the blob's
    /// content attached as a descriptor. The gateway checks every byte against
    /// its digest and the image's documents before it records the image.
    ImageUpload(ImageUpload),
    Start {
        name: String,
        attach: bool,
    },
    Stop {
        name: String,
        timeout_secs: u64,
    },
    /// A signal (by number) to the sandbox's process 1, which passes it on.
    Kill {
        name: String,
        signal: i32,
    },
    Delete {
        name: String,
    },
    List,
    Get {
        name: String,
    },
    Logs {
        /// The audit log (one OCSF JSON line per network decision) instead of the output.
        #[serde(default)]
        audit: bool,
        name: String,
        follow: bool,
    },
    Exec {
        name: String,
        args: Vec<String>,
        env: Vec<String>,
        tty: bool,
    },
    /// A TCP connection to `port` on the running sandbox's own loopback.
    Forward {
        name: String,
        port: u16,
    },
    PolicySet {
        name: String,
        policy_name: String,
        policy: String,
        /// Answer once the proxy has applied it (else once it has been handed over).
        #[serde(default)]
        wait: bool,
    },
    /// The sandbox's policy revisions, oldest first (with `all`), or the current one.
    PolicyGet {
        name: String,
        all: bool,
    },
    Status,
    Shutdown,
    /// A provider: its credential travels once, here, and is never sent back.
    ProviderCreate {
        name: String,
        kind: String,
        base_url: Option<String>,
        credential_name: String,
        /// Never printed (`Debug` shows `<redacted>`).
        credential: Credential,
    },
    ProviderList,
    ProviderGet {
        name: String,
    },
    ProviderDelete {
        name: String,
    },
    /// The inference route; running sandboxes switch to it.
    InferenceSet {
        provider: String,
        model: String,
        timeout_secs: u64,
    },
    InferenceGet,
    InferenceDelete,
}

impl Request {
    /// The operation's name, as the audit log records it.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Create(_) => "sandbox.create",
            Request::ImageUpload(_) => "image.upload",
            Request::Start { .. } => "sandbox.start",
            Request::Stop { .. } => "sandbox.stop",
            Request::Kill { .. } => "sandbox.kill",
            Request::Delete { .. } => "sandbox.delete",
            Request::List => "sandbox.list",
            Request::Get { .. } => "sandbox.get",
            Request::Logs { .. } => "sandbox.logs",
            Request::Exec { .. } => "sandbox.exec",
            Request::Forward { .. } => "sandbox.forward",
            Request::PolicySet { .. } => "policy.set",
            Request::PolicyGet { .. } => "policy.get",
            Request::Status => "gateway.status",
            Request::Shutdown => "gateway.stop",
            Request::ProviderCreate { .. } => "provider.create",
            Request::ProviderList => "provider.list",
            Request::ProviderGet { .. } => "provider.get",
            Request::ProviderDelete { .. } => "provider.delete",
            Request::InferenceSet { .. } => "inference.set",
            Request::InferenceGet => "inference.get",
            Request::InferenceDelete => "inference.delete",
        }
    }

    /// The existing sandbox the request acts on, by name (or id).
    pub fn sandbox(&self) -> Option<&str> {
        match self {
            Request::Start { name, .. }
            | Request::Stop { name, .. }
            | Request::Kill { name, .. }
            | Request::Delete { name }
            | Request::Get { name }
            | Request::Logs { name, .. }
            | Request::Exec { name, .. }
            | Request::Forward { name, .. }
            | Request::PolicySet { name, .. }
            | Request::PolicyGet { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether it changes anything (what the audit log records).
    pub fn mutates(&self) -> bool {
        !matches!(
            self,
            Request::List
                | Request::Get { .. }
                | Request::Logs { .. }
                | Request::PolicyGet { .. }
                | Request::Status
                | Request::ProviderList
                | Request::ProviderGet { .. }
                | Request::InferenceGet
        )
    }

    /// Whether only an admin may make it (providers, the inference route, the
    /// gateway itself).
    pub fn admin_only(&self) -> bool {
        matches!(
            self,
            Request::Shutdown
                | Request::ProviderCreate { .. }
                | Request::ProviderDelete { .. }
                | Request::InferenceSet { .. }
                | Request::InferenceDelete
        )
    }
}

/// A provider's credential on its one way in: `Debug` never shows it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Credential(pub String);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A provider as shown: never its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub name: String,
    /// `openai`, `anthropic` or `openai-compatible`.
    pub kind: String,
    pub base_url: String,
    /// The name the credential was given by (e.g. `OPENAI_API_KEY`).
    pub credential_name: String,
    pub created: u64,
}

/// The inference route as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    pub provider: String,
    pub kind: String,
    pub base_url: String,
    pub model: String,
    pub timeout_secs: u64,
}

/// An image by manifest digest; `reference` (`name:tag`) is how it is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub reference: String,
    /// `sha256:...`
    pub digest: String,
}

/// An image's record, for [`Request::ImageUpload`]: the fields of the store's
/// image record but its lockfile (this crate depends on no other openshell
/// crate, so clients need not link the build crate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUpload {
    pub name: String,
    pub tag: String,
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
    pub size: u64,
    pub uncompressed_size: u64,
}

impl ImageUpload {
    /// Every blob the upload carries, in the order they follow.
    pub fn blobs(&self) -> Vec<&str> {
        [self.manifest.as_str(), self.config.as_str()]
            .into_iter()
            .chain(self.layers.iter().map(String::as_str))
            .collect()
    }
}

/// Precedes a blob's descriptor in an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobFollows {
    pub digest: String,
}

/// `sandbox create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    pub name: Option<String>,
    /// The image, by digest: the gateway runs it from its own store (a gateway
    /// never reads the caller's disk); missing there, the answer is
    /// `image_not_found` and the client uploads it.
    pub image: ImageRef,
    /// Where the policy text came from (named in its errors).
    pub policy_name: String,
    pub policy: String,
    /// Empty: no workload; processes join with `exec` (`sandbox connect`).
    pub command: Vec<String>,
    /// `K=V` entries added to the image's environment.
    pub env: Vec<String>,
    /// Delete the sandbox when its main process exits.
    pub rm: bool,
    /// The client's stdio is attached; the answer ends with the exit code.
    pub attach: bool,
}

/// A sandbox as the gateway reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_digest: String,
    pub policy_name: String,
    pub policy_revision: i64,
    pub command: Vec<String>,
    #[serde(rename = "status")]
    pub phase: Phase,
    /// Who created it (`local` for the local gateway's owner; a remote
    /// client's certificate name).
    #[serde(default = "local_owner")]
    pub owner: String,
    pub exit_code: Option<i32>,
    /// The host pid of the sandbox's process 1 while it runs, where its driver
    /// has one (for people: nothing acts on it).
    pub pid: Option<i32>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub started: Option<u64>,
    pub finished: Option<u64>,
}

fn local_owner() -> String {
    "local".into()
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Made, never started (or its start failed).
    Created,
    Running,
    /// Its process 1 ended with an exit code.
    Stopped,
    /// Lost while nothing watched it: no exit code is known.
    Dead,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Stopped => "stopped",
            Phase::Dead => "dead",
        }
    }

    /// The phase stored as [`Phase::as_str`].
    pub fn parse(text: &str) -> Option<Phase> {
        [Phase::Created, Phase::Running, Phase::Stopped, Phase::Dead].into_iter().find(|p| p.as_str() == text)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One revision of a sandbox's policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyRevision {
    pub revision: i64,
    /// Where the text came from.
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub text: String,
}

/// The gateway itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GatewayStatus {
    pub pid: u32,
    pub version: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// The store the gateway runs images from.
    #[serde(default)]
    pub store: PathBuf,
    pub started: u64,
    pub sandboxes: usize,
    pub running: usize,
    pub driver: String,
    /// Where its state is: `sqlite PATH` or `postgresql USER@HOST:PORT/DB`
    /// (never a password).
    #[serde(default)]
    pub database: String,
    /// Its name in sandboxes' leases.
    #[serde(default)]
    pub replica: String,
}

/// An answer. A request gets one or more; the last is `Done`, `Exited` or `Error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Sandbox {
        sandbox: SandboxInfo,
    },
    Sandboxes {
        sandboxes: Vec<SandboxInfo>,
    },
    /// The next message is `len` raw bytes of output.
    Output {
        len: usize,
    },
    /// Carries the master end of the process's terminal.
    Console,
    /// Carries a connected stream socket (a `Forward`'s); over gRPC, the
    /// call's streams are its two directions.
    Connected,
    Exited {
        code: i32,
    },
    Status {
        status: GatewayStatus,
    },
    Policies {
        revisions: Vec<PolicyRevision>,
    },
    Providers {
        providers: Vec<ProviderInfo>,
    },
    Inference {
        route: Option<RouteInfo>,
    },
    Done {
        message: String,
    },
    Error {
        error: ApiError,
    },
}
