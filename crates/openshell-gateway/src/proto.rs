//! The gateway's API: what clients ask and what it answers, one JSON message each
//! (see [`crate::wire`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A request of a client. Requests that attach the client's terminal or stdio
/// carry its stdin, stdout and stderr as descriptors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Create(CreateRequest),
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
        credential: openshell_proxy::router::Secret,
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

/// `sandbox create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    pub name: Option<String>,
    /// The store holding the image.
    pub store: PathBuf,
    /// An image reference (`name:tag`, `name`, or a manifest digest).
    pub image: String,
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
    /// `running`, `stopped`, `created` or `dead` (lost while nothing watched it).
    pub status: String,
    pub exit_code: Option<i32>,
    /// Host pid of the sandbox's process 1 while running.
    pub pid: Option<i32>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub started: Option<u64>,
    pub finished: Option<u64>,
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
    pub started: u64,
    pub sandboxes: usize,
    pub running: usize,
    pub driver: String,
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
        message: String,
    },
}

/// Messages between the gateway and its helper processes (supervisor, exec).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HelperMessage {
    /// To a helper: its job, with descriptors attached (stdin, stdout, stderr) or none.
    Attach {
        job: Job,
        dir: PathBuf,
        args: Vec<String>,
        env: Vec<String>,
        tty: bool,
    },
    /// To a standby supervisor: its job is set; the client's stdio attached.
    Assign,
    /// From the supervisor: process 1 runs, with this host pid.
    Started {
        pid: i32,
    },
    /// From the exec helper: the terminal's master end is attached.
    Console,
    Exited {
        code: i32,
    },
    Failed {
        message: String,
    },
}

/// What a helper process does for the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Supervise one run of the sandbox in `dir`.
    Supervise,
    /// Start the sandbox in `dir` ahead of need; supervise it once assigned.
    Standby,
    /// One process joining the sandbox in `dir`.
    Exec,
}
