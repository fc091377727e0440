//! The typed policy, as the decoder produces it. Every value here has passed validation.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use serde::Serialize;

use crate::glob::Glob;
use crate::host::HostPattern;

/// A whole policy file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub version: u32,
    pub filesystem_policy: FilesystemPolicy,
    pub landlock: Landlock,
    pub process: Process,
    /// **Ours**: resource limits (memory, pids, cpu, open files).
    pub resources: Resources,
    /// Keyed by the policy key; serialized sorted by key.
    pub network_policies: NetworkPolicies,
}

/// Static: fixed at sandbox creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilesystemPolicy {
    pub include_workdir: bool,
    pub read_only: Vec<String>,
    pub read_write: Vec<String>,
    /// Whether the file wrote these paths or left the section out. Not part of the
    /// policy's value: a written section equal to the baseline is the same policy.
    #[serde(skip)]
    pub origin: FilesystemOrigin,
}

/// Where a [`FilesystemPolicy`]'s paths came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilesystemOrigin {
    /// `filesystem_policy` is in the file; its paths are exactly these.
    #[default]
    Written,
    /// The file has no `filesystem_policy`: OpenShell's baseline for a sandbox
    /// whose egress goes through its proxy ([`FilesystemPolicy::baseline`]).
    Baseline,
}

impl FilesystemPolicy {
    /// Read-only paths OpenShell gives every proxy-mode sandbox whose policy has no
    /// `filesystem_policy`.
    pub const BASELINE_READ_ONLY: &'static [&'static str] =
        &["/usr", "/lib", "/etc", "/app", "/var/log", "/proc", "/dev/urandom"];
    /// Read-write paths of the same baseline (the workdir is added by `include_workdir`).
    pub const BASELINE_READ_WRITE: &'static [&'static str] = &["/tmp"];

    /// The paths of a policy without `filesystem_policy`, as OpenShell gives them, so
    /// that a policy with only a network section runs programs from the image.
    pub fn baseline() -> FilesystemPolicy {
        let owned = |paths: &[&str]| paths.iter().map(|p| (*p).to_owned()).collect();
        FilesystemPolicy {
            include_workdir: true,
            read_only: owned(Self::BASELINE_READ_ONLY),
            read_write: owned(Self::BASELINE_READ_WRITE),
            origin: FilesystemOrigin::Baseline,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Landlock {
    pub compatibility: Compatibility,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compatibility {
    /// Warn and continue without Landlock where the kernel lacks it; skip missing paths.
    BestEffort,
    /// Fail sandbox creation instead.
    HardRequirement,
    /// **Ours**, when `compatibility` is omitted (OpenShell's omitted default is
    /// `best_effort`): `hard_requirement` on a kernel that has Landlock,
    /// `best_effort` (with a warning) only on a kernel without it. Fail closed
    /// wherever the kernel can enforce the rules.
    #[default]
    HardWhereSupported,
}

impl Compatibility {
    /// How `policy explain` and errors name it.
    pub fn describe(self) -> &'static str {
        match self {
            Compatibility::BestEffort => "best_effort",
            Compatibility::HardRequirement => "hard_requirement",
            Compatibility::HardWhereSupported => {
                "hard_requirement (the default when omitted; best_effort only on a kernel without Landlock)"
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Process {
    pub run_as_user: Identity,
    pub run_as_group: Identity,
}

/// A user or group: the image's `sandbox` account, or a numeric id (never 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Identity {
    #[default]
    Sandbox,
    Id(u32),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Sandbox => f.write_str("sandbox"),
            Identity::Id(id) => write!(f, "{id}"),
        }
    }
}

impl Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// **Ours**: resource limits. `None` means the documented default applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// cgroup memory limit in bytes (swap is not granted on top).
    pub memory: Option<u64>,
    /// cgroup pids limit (processes and threads).
    pub pids: Option<u64>,
    /// CPU limit in thousandths of a core (1000 = one core).
    pub cpu_millis: Option<u64>,
    /// RLIMIT_NOFILE, soft and hard.
    pub open_files: Option<u64>,
    /// Size of the sandbox's writable layer (every read-write path that persists,
    /// `/sandbox` among them), in bytes: writes beyond it fail with ENOSPC.
    pub disk: Option<u64>,
    /// Size at which each of the sandbox's logs (output, audit) is rotated, in
    /// bytes; one previous file is kept, so each takes at most twice this.
    pub logs: Option<u64>,
}

impl Resources {
    pub const DEFAULT_MEMORY: u64 = 4 << 30;
    pub const DEFAULT_PIDS: u64 = 4096;
    pub const DEFAULT_OPEN_FILES: u64 = 8192;
    pub const DEFAULT_DISK: u64 = 10 << 30;
    pub const DEFAULT_LOGS: u64 = 16 << 20;
}

/// The dynamic part: hot-reloadable on a running sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NetworkPolicies(pub BTreeMap<String, NetworkPolicy>);

impl NetworkPolicies {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &NetworkPolicy)> {
        self.0.iter()
    }
    pub fn endpoint_count(&self) -> usize {
        self.0.values().map(|p| p.endpoints.len()).sum()
    }
}

/// One named rule: every listed binary may reach every listed endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkPolicy {
    /// Display name; defaults to the key.
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub binaries: Vec<Binary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binary {
    pub path: Glob,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub host: HostPattern,
    pub ports: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    pub enforcement: Enforcement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AllowRule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny_rules: Vec<HttpMatcher>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<IpNet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// **Ours**: requests to this endpoint go to the privacy router.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    /// For `protocol: mcp` and `protocol: json-rpc` (and only for them): the
    /// endpoint's path, options and call rules (serialized as the file writes
    /// them: `path`, `mcp`/`json_rpc`, `rules`, `deny_rules`).
    #[serde(flatten)]
    pub rpc: Option<Rpc>,
}

impl Endpoint {
    /// `host:port` or `host:[p1,p2]`, for messages.
    pub fn describe(&self) -> String {
        match self.ports.as_slice() {
            [p] => format!("{}:{p}", self.host),
            ports => {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                format!("{}:[{}]", self.host, list.join(","))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// HTTP inspected with L7 rules; TLS terminated.
    Rest,
    /// Raw TCP: the sandbox may connect to host:port directly (a transparent
    /// redirect to the proxy), as well as through CONNECT; never inspected.
    Tcp,
    /// RFC 6455: the upgrade request decided as `GET` on its path, then each
    /// client text message as `WEBSOCKET_TEXT` on that path.
    Websocket,
    /// MCP over Streamable HTTP: each JSON-RPC call (and `tools/call`'s tool) decided.
    Mcp,
    /// JSON-RPC 2.0 over HTTP POST: each call's method decided.
    JsonRpc,
}

impl Protocol {
    /// How the file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::Tcp => "tcp",
            Protocol::Websocket => "websocket",
            Protocol::Mcp => "mcp",
            Protocol::JsonRpc => "json-rpc",
        }
    }

    /// Whether its traffic is inspected (L7, TLS terminated): all but `tcp`.
    pub fn is_inspected(self) -> bool {
        self != Protocol::Tcp
    }

    /// Whether requests are matched by their JSON-RPC calls (`mcp`, `json-rpc`).
    pub fn is_rpc(self) -> bool {
        matches!(self, Protocol::Mcp | Protocol::JsonRpc)
    }
}

/// The pseudo-method of a client-to-server WebSocket text message in rules.
pub const WEBSOCKET_TEXT: &str = "WEBSOCKET_TEXT";

/// The MCP methods a client sends a server (MCP specification, 2025-06-18):
/// what `allow_all_known_mcp_methods: true` allows.
pub const KNOWN_MCP_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];

/// The MCP method whose `params.name` `tool` matchers see.
pub const TOOLS_CALL: &str = "tools/call";

/// Largest `max_body_bytes` (**ours**: 16 MiB).
pub const MAX_RPC_BODY: u64 = 16 << 20;
/// `max_body_bytes` when omitted (OpenShell's).
pub const DEFAULT_RPC_BODY: u64 = 64 << 10;

/// Whether `name` is a tool name under `strict_tool_names` (`^[A-Za-z0-9_.-]{1,128}$`).
pub fn strict_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The JSON-RPC side of an `mcp` or `json-rpc` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rpc {
    /// Requests to other paths are not this endpoint's; `None`: every path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Glob>,
    #[serde(flatten)]
    pub dialect: Dialect,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RpcAllowRule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny_rules: Vec<RpcMatcher>,
}

impl Rpc {
    pub fn max_body_bytes(&self) -> u64 {
        match &self.dialect {
            Dialect::Mcp(o) => o.max_body_bytes,
            Dialect::JsonRpc(o) => o.max_body_bytes,
        }
    }

    /// Whether a request to `path` (canonical) is this endpoint's.
    pub fn takes_path(&self, path: &str) -> bool {
        self.path.as_ref().is_none_or(|g| g.matches(path))
    }

    fn mcp(&self) -> Option<&McpOptions> {
        match &self.dialect {
            Dialect::Mcp(o) => Some(o),
            Dialect::JsonRpc(_) => None,
        }
    }

    /// Whether a tool name fails `strict_tool_names`.
    pub fn refuses_tool_name(&self, call: &RpcCall<'_>) -> bool {
        self.mcp().is_some_and(|o| o.strict_tool_names) && call.tool.is_some_and(|t| !strict_tool_name(t))
    }

    /// Whether the allow side admits `call` (deny rules are the engine's).
    pub fn allows(&self, call: &RpcCall<'_>) -> bool {
        if self.refuses_tool_name(call) {
            return false;
        }
        if self.rules.iter().any(|r| r.allow.matches(call)) {
            return true;
        }
        if !self.mcp().is_some_and(|o| o.allow_all_known_mcp_methods) {
            return false;
        }
        // Tool rules narrow `tools/call`; every other known method is allowed.
        KNOWN_MCP_METHODS.contains(&call.method)
            && (call.method != TOOLS_CALL || !self.rules.iter().any(|r| r.allow.tool.is_some()))
    }
}

/// `mcp:` or `json_rpc:` options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Dialect {
    #[serde(rename = "mcp")]
    Mcp(McpOptions),
    #[serde(rename = "json_rpc")]
    JsonRpc(JsonRpcOptions),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpOptions {
    /// A request body larger than this is refused (413).
    pub max_body_bytes: u64,
    /// Tool names must match `^[A-Za-z0-9_.-]{1,128}$`.
    pub strict_tool_names: bool,
    /// Every method of [`KNOWN_MCP_METHODS`] is allowed; `tool` rules narrow `tools/call`.
    pub allow_all_known_mcp_methods: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonRpcOptions {
    pub max_body_bytes: u64,
}

/// One JSON-RPC call as the proxy read it from a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcCall<'a> {
    pub method: &'a str,
    /// `params.name` of an MCP `tools/call` (when it is a string).
    pub tool: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcAllowRule {
    pub allow: RpcMatcher,
}

/// A call's method and, for `tools/call`, its tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcMatcher {
    /// `None` only under `allow_all_known_mcp_methods` with a `tool`: `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<RpcMethod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<QueryMatcher>,
}

impl RpcMatcher {
    pub fn matches(&self, call: &RpcCall<'_>) -> bool {
        let method = match &self.method {
            Some(m) => m.matches(call.method),
            None => call.method == TOOLS_CALL,
        };
        method && self.tool.as_ref().is_none_or(|t| call.tool.is_some_and(|name| t.matches(name)))
    }
}

impl fmt::Display for RpcMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(m) => write!(f, "{m}")?,
            None => f.write_str(TOOLS_CALL)?,
        }
        match &self.tool {
            Some(QueryMatcher::One(g)) => write!(f, " tool={g}"),
            Some(QueryMatcher::Any { any }) => {
                let alts: Vec<&str> = any.iter().map(Glob::as_str).collect();
                write!(f, " tool={{{}}}", alts.join("|"))
            }
            None => Ok(()),
        }
    }
}

/// A JSON-RPC method in a rule: `*`, an exact name, or (MCP, within `tools/`) a glob.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcMethod {
    Any,
    Exact(String),
    Glob(Glob),
}

impl RpcMethod {
    pub fn matches(&self, method: &str) -> bool {
        match self {
            RpcMethod::Any => true,
            RpcMethod::Exact(m) => m == method,
            RpcMethod::Glob(g) => g.matches(method),
        }
    }
}

impl fmt::Display for RpcMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcMethod::Any => f.write_str("*"),
            RpcMethod::Exact(m) => f.write_str(m),
            RpcMethod::Glob(g) => f.write_str(g.as_str()),
        }
    }
}

impl Serialize for RpcMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// **Ours**: the default.
    #[default]
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// GET, HEAD, OPTIONS.
    ReadOnly,
    /// read-only + POST, PUT, PATCH.
    ReadWrite,
    /// Every method.
    Full,
}

impl Access {
    pub fn allows_method(self, method: &str) -> bool {
        match self {
            Access::Full => true,
            Access::ReadOnly => matches!(method, "GET" | "HEAD" | "OPTIONS"),
            Access::ReadWrite => matches!(method, "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT" | "PATCH"),
        }
    }

    /// On a `websocket` endpoint: read-only is the upgrade `GET`, read-write
    /// adds `WEBSOCKET_TEXT`, full is everything.
    pub fn allows_websocket(self, method: &str) -> bool {
        match self {
            Access::Full => true,
            Access::ReadOnly => method == "GET",
            Access::ReadWrite => method == "GET" || method == WEBSOCKET_TEXT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tls {
    /// Relay without terminating TLS.
    Skip,
}

/// **Ours**: where an endpoint's requests are routed instead of to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// The gateway's inference route: TLS terminated, the caller's credentials
    /// stripped, the backend's injected.
    Inference,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowRule {
    pub allow: HttpMatcher,
}

/// Method, path and query of an HTTP request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpMatcher {
    pub method: Method,
    pub path: Glob,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, QueryMatcher>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Any,
    Exact(String),
}

impl Method {
    pub fn matches(&self, method: &str) -> bool {
        match self {
            Method::Any => true,
            Method::Exact(m) => m == method,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Any => f.write_str("*"),
            Method::Exact(m) => f.write_str(m),
        }
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A query parameter's values must match one glob, or any of several.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum QueryMatcher {
    One(Glob),
    Any { any: Vec<Glob> },
}

impl QueryMatcher {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            QueryMatcher::One(g) => g.matches(value),
            QueryMatcher::Any { any } => any.iter().any(|g| g.matches(value)),
        }
    }
}

impl HttpMatcher {
    /// Allow-rule semantics: every configured parameter present, and every value
    /// of a repeated parameter matching.
    pub fn matches_allow(&self, method: &str, path: &str, query: &[(&str, &str)]) -> bool {
        self.method.matches(method)
            && self.path.matches(path)
            && self.query.iter().all(|(k, m)| {
                let mut seen = false;
                query.iter().filter(|(qk, _)| qk == k).all(|(_, v)| {
                    seen = true;
                    m.matches(v)
                }) && seen
            })
    }

    /// Deny-rule semantics: every configured parameter present, one matching
    /// value per parameter is enough.
    pub fn matches_deny(&self, method: &str, path: &str, query: &[(&str, &str)]) -> bool {
        self.method.matches(method)
            && self.path.matches(path)
            && self.query.iter().all(|(k, m)| query.iter().any(|(qk, v)| qk == k && m.matches(v)))
    }
}

impl fmt::Display for HttpMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        for (i, (k, m)) in self.query.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            match m {
                QueryMatcher::One(g) => write!(f, "{sep}{k}={g}")?,
                QueryMatcher::Any { any } => {
                    let alts: Vec<&str> = any.iter().map(Glob::as_str).collect();
                    write!(f, "{sep}{k}={{{}}}", alts.join("|"))?
                }
            }
        }
        Ok(())
    }
}
