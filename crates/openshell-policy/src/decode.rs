//! Strict decoding of the position-carrying YAML tree into a [`Policy`]:
//! unknown fields, duplicate keys, wrong types and every validation of the
//! schema, all reported with line and column, all of them, not only the first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use crate::error::{Diagnostic, LoadError};
use crate::glob::Glob;
use crate::host::HostPattern;
use crate::model::*;
use crate::net::{AddrClass, blocked_overlap, classify, embedded_v4};
use crate::yaml::{self, Kind, Node, Pos};

/// Largest accepted policy file.
pub const MAX_POLICY_BYTES: usize = 4 << 20;
/// Most filesystem paths (read-only and read-write together).
pub const MAX_PATHS: usize = 256;
/// Longest filesystem path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Reads and decodes a policy file.
pub fn load_file(path: &Path) -> Result<Policy, LoadError> {
    let read_err = |source| LoadError::Read { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let name = path.display().to_string();
    if meta.len() > MAX_POLICY_BYTES as u64 {
        return Err(too_large(name, meta.len()));
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    load_bytes(&name, &bytes)
}

/// Decodes a policy from bytes; `file` names it in errors.
pub fn load_bytes(file: &str, bytes: &[u8]) -> Result<Policy, LoadError> {
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(too_large(file.to_owned(), bytes.len() as u64));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        // Everything before the bad byte is valid UTF-8; count characters, as the YAML parser does.
        let before = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
        let pos = Pos { line: u32::try_from(line).unwrap_or(u32::MAX), column: u32::try_from(col).unwrap_or(u32::MAX) };
        invalid(file, vec![Diagnostic::new(pos, "", "file is not valid UTF-8 text")])
    })?;
    load_str(file, text)
}

/// Decodes a policy from text; `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<Policy, LoadError> {
    parse(text).map_err(|d| invalid(file, d))
}

/// Decodes a policy, returning every problem found.
pub fn parse(text: &str) -> Result<Policy, Vec<Diagnostic>> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(vec![Diagnostic::new(
            Pos::START,
            "",
            format!("policy is {} bytes; the limit is {MAX_POLICY_BYTES} bytes (4 MiB)", text.len()),
        )]);
    }
    let root =
        yaml::parse(text).map_err(|e| vec![Diagnostic::new(e.pos, "", format!("invalid YAML: {}", e.message))])?;
    let mut d = Decoder::default();
    let policy = d.policy(&root);
    match policy {
        Some(p) if d.diags.is_empty() => Ok(p),
        _ => {
            let mut diags = d.diags;
            diags.sort_by_key(Diagnostic::pos);
            Err(diags)
        }
    }
}

fn too_large(file: String, len: u64) -> LoadError {
    LoadError::Invalid {
        file,
        diagnostics: vec![Diagnostic::new(
            Pos::START,
            "",
            format!("policy file is {len} bytes; the limit is {MAX_POLICY_BYTES} bytes (4 MiB)"),
        )],
    }
}

fn invalid(file: &str, diagnostics: Vec<Diagnostic>) -> LoadError {
    LoadError::Invalid { file: file.to_owned(), diagnostics }
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() { child.to_owned() } else { format!("{parent}.{child}") }
}

fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// What a mapping may contain.
struct Spec {
    fields: &'static [&'static str],
    /// OpenShell fields we recognise but do not implement yet.
    unsupported: &'static [&'static str],
    /// Fields that belong to another kind of mapping: the field and where it belongs.
    elsewhere: &'static [(&'static str, &'static str)],
}

const TOP: Spec = Spec {
    fields: &["version", "filesystem_policy", "landlock", "process", "resources", "network_policies"],
    unsupported: &["network_middlewares"],
    elsewhere: &[],
};
const FILESYSTEM: Spec =
    Spec { fields: &["include_workdir", "read_only", "read_write"], unsupported: &[], elsewhere: &[] };
const LANDLOCK: Spec = Spec { fields: &["compatibility"], unsupported: &[], elsewhere: &[] };
const PROCESS: Spec = Spec { fields: &["run_as_user", "run_as_group"], unsupported: &[], elsewhere: &[] };
const RESOURCES: Spec =
    Spec { fields: &["memory", "pids", "cpu", "open_files", "disk", "logs"], unsupported: &[], elsewhere: &[] };
const NETWORK_POLICY: Spec = Spec { fields: &["name", "endpoints", "binaries"], unsupported: &[], elsewhere: &[] };
const ENDPOINT: Spec = Spec {
    fields: &[
        "host",
        "port",
        "ports",
        "protocol",
        "enforcement",
        "access",
        "rules",
        "deny_rules",
        "allowed_ips",
        "tls",
        "routing",
        "path",
        "mcp",
        "json_rpc",
    ],
    unsupported: &[
        "allow_encoded_slash",
        "credential_binding",
        "request_body_credential_rewrite",
        "websocket_credential_rewrite",
        "allow_uninspected_credentials",
        "credential_signing",
        "signing_service",
        "signing_region",
        "persisted_queries",
        "graphql_persisted_queries",
        "graphql_max_body_bytes",
    ],
    elsewhere: &[],
};
const BINARY: Spec = Spec { fields: &["path"], unsupported: &[], elsewhere: &[] };
const ALLOW_RULE: Spec = Spec { fields: &["allow"], unsupported: &[], elsewhere: &[] };
const MATCHER: Spec = Spec {
    fields: &["method", "path", "query"],
    unsupported: &["operation_type", "operation_name", "fields", "params"],
    elsewhere: &[("tool", "in the rules of a `protocol: mcp` endpoint")],
};
const RPC_MATCHER: Spec = Spec {
    fields: &["method", "tool"],
    unsupported: &["params"],
    elsewhere: &[
        (
            "path",
            "in a `protocol: rest` or `websocket` rule (an `mcp`/`json-rpc` endpoint's `path` is the endpoint's field)",
        ),
        ("query", "in a `protocol: rest` or `websocket` rule"),
    ],
};
const MCP: Spec = Spec {
    fields: &["max_body_bytes", "strict_tool_names", "allow_all_known_mcp_methods"],
    unsupported: &[],
    elsewhere: &[],
};
const JSON_RPC: Spec = Spec { fields: &["max_body_bytes"], unsupported: &[], elsewhere: &[] };
const ANY: Spec = Spec { fields: &["any"], unsupported: &[], elsewhere: &[] };

/// The entries of a checked mapping.
struct Fields<'n> {
    pos: Pos,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == name).map(|(_, _, v)| *v)
    }
    /// Position of a field's value (of the mapping when absent).
    fn key_pos_value(&self, name: &str) -> Pos {
        self.get(name).map_or(self.pos, |n| n.pos)
    }
    fn key_pos(&self, name: &str) -> Pos {
        self.entries.iter().find(|(k, _, _)| *k == name).map_or(self.pos, |(_, k, _)| k.pos)
    }
}

/// What an `mcp` or `json-rpc` endpoint's rules are checked against.
struct RpcContext {
    mcp: bool,
    strict: bool,
    allow_all: bool,
}

#[derive(Default)]
struct Decoder {
    diags: Vec<Diagnostic>,
}

impl Decoder {
    fn err(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(pos, key, message));
    }

    fn type_err(&mut self, node: &Node, key: &str, expected: &str) {
        self.err(node.pos, key, format!("expected {expected}, found {}", node.kind.type_name()));
    }

    /// Entries of a mapping with string keys; reports duplicates once per repeat.
    fn entries<'n>(&mut self, node: &'n Node, key: &str) -> Option<Fields<'n>> {
        let Kind::Map(map) = &node.kind else {
            self.type_err(node, key, "a mapping");
            return None;
        };
        let mut entries: Vec<(&'n str, &'n Node, &'n Node)> = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Kind::Str(name) = &k.kind else {
                self.err(k.pos, key, format!("keys must be strings, found {}", k.kind.type_name()));
                continue;
            };
            if let Some((_, first, _)) = entries.iter().find(|(n, _, _)| n == name) {
                let first = first.pos;
                self.err(k.pos, &join(key, name), format!("duplicate key `{name}` (first defined at {first})"));
                continue;
            }
            entries.push((name.as_str(), k, v));
        }
        Some(Fields { pos: node.pos, entries })
    }

    /// Like [`Decoder::entries`], also rejecting keys the spec does not list.
    fn fields<'n>(&mut self, node: &'n Node, key: &str, spec: &Spec) -> Option<Fields<'n>> {
        let fields = self.entries(node, key)?;
        for (name, k, _) in &fields.entries {
            if spec.fields.contains(name) {
                continue;
            }
            let msg = if spec.unsupported.contains(name) {
                format!("`{name}` is an OpenShell field that openshell does not support yet")
            } else if let Some((_, place)) = spec.elsewhere.iter().find(|(field, _)| field == name) {
                format!("`{name}` has no effect here: it belongs {place}")
            } else {
                format!("unknown field `{name}`, expected one of: {}", spec.fields.join(", "))
            };
            self.err(k.pos, &join(key, name), msg);
        }
        Some(fields)
    }

    /// An optional mapping section: absent or null is `None` without error.
    fn section<'n>(&mut self, parent: &Fields<'n>, name: &str, path: &str, spec: &Spec) -> Option<Fields<'n>> {
        let node = parent.get(name)?;
        if node.kind == Kind::Null {
            return Some(Fields { pos: node.pos, entries: Vec::new() });
        }
        self.fields(node, &join(path, name), spec)
    }

    fn string<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n str> {
        match &node.kind {
            Kind::Str(s) => Some(s),
            _ => {
                self.type_err(node, key, "a string");
                None
            }
        }
    }

    /// A string field that must be one of `options`: `Some(None)` when absent,
    /// `None` (with an error) when wrong.
    fn choice<T: Copy>(
        &mut self,
        f: &Fields<'_>,
        field: &str,
        key: &str,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<Option<T>> {
        let Some(node) = f.get(field) else { return Some(None) };
        let fkey = join(key, field);
        let value = self.string(node, &fkey)?;
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == value) {
            return Some(Some(*v));
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("`{n}`")).collect();
        let expected = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.err(node.pos, &fkey, format!("unknown {what} `{value}`, expected {expected}"));
        None
    }

    fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.type_err(node, key, "a boolean (true or false)");
                None
            }
        }
    }

    fn integer(&mut self, node: &Node, key: &str, min: i128, max: i128) -> Option<i128> {
        match node.kind {
            Kind::Int(i) if (min..=max).contains(&i) => Some(i),
            Kind::Int(i) => {
                self.err(node.pos, key, format!("{i} is out of range; expected {min} to {max}"));
                None
            }
            // An integer too large for 64 bits reaches us as a float; it is still out of range.
            Kind::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() >= 9.2e18 => {
                self.err(node.pos, key, format!("number is out of range; expected {min} to {max}"));
                None
            }
            _ => {
                self.type_err(node, key, "an integer");
                None
            }
        }
    }

    /// A list; null counts as empty.
    fn list<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            Kind::Null => Some(&[]),
            _ => {
                self.type_err(node, key, "a list");
                None
            }
        }
    }

    fn policy(&mut self, root: &Node) -> Option<Policy> {
        if root.kind == Kind::Null {
            // A comment-only file's null node sits at the end of the text; point at its start.
            self.err(Pos::START, "", "policy is empty; it needs at least `version: 1`");
            return None;
        }
        let top = self.fields(root, "", &TOP)?;
        let version = match top.get("version") {
            None => {
                self.err(top.pos, "version", "missing required field `version` (must be 1)");
                None
            }
            Some(v) => match v.kind {
                Kind::Int(1) => Some(1),
                Kind::Int(n) => {
                    self.err(v.pos, "version", format!("unsupported policy version {n}; the only version is 1"));
                    None
                }
                _ => {
                    self.type_err(v, "version", "the integer 1");
                    None
                }
            },
        };
        let filesystem_policy = self.filesystem(&top);
        let landlock = self.landlock(&top);
        let process = self.process(&top);
        let resources = self.resources(&top);
        let network_policies = self.network_policies(&top);
        Some(Policy {
            version: version?,
            filesystem_policy: filesystem_policy?,
            landlock: landlock?,
            process: process?,
            resources: resources?,
            network_policies: network_policies?,
        })
    }

    fn filesystem(&mut self, top: &Fields<'_>) -> Option<FilesystemPolicy> {
        // Absent or null (OpenShell reads both as none): the baseline paths.
        if top.get("filesystem_policy").is_none_or(|node| node.kind == Kind::Null) {
            return Some(FilesystemPolicy::baseline());
        }
        let fs = self.section(top, "filesystem_policy", "", &FILESYSTEM)?;
        let mut ok = true;
        let include_workdir = match fs.get("include_workdir") {
            None => true,
            Some(n) => self.boolean(n, "filesystem_policy.include_workdir").unwrap_or_else(|| {
                ok = false;
                true
            }),
        };
        let mut lists: [Vec<(String, Pos, String)>; 2] = [Vec::new(), Vec::new()];
        for (slot, name) in ["read_only", "read_write"].iter().enumerate() {
            let key = join("filesystem_policy", name);
            let Some(node) = fs.get(name) else { continue };
            let Some(items) = self.list(node, &key) else {
                ok = false;
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                let ikey = index(&key, i);
                let Some(raw) = self.string(item, &ikey) else {
                    ok = false;
                    continue;
                };
                match normalize_fs_path(raw) {
                    Ok(p) if slot == 1 && p == "/" => {
                        ok = false;
                        self.err(item.pos, &ikey, "read-write `/` is overly broad: it would make the whole filesystem writable; list the directories that need writing");
                    }
                    Ok(p) => lists[slot].push((p, item.pos, ikey)),
                    Err(msg) => {
                        ok = false;
                        self.err(item.pos, &ikey, format!("path `{raw}` {msg}"));
                    }
                }
            }
        }
        let total = lists[0].len() + lists[1].len();
        if total > MAX_PATHS {
            ok = false;
            let pos = top.key_pos("filesystem_policy");
            self.err(pos, "filesystem_policy", format!("{total} paths listed; at most {MAX_PATHS} are allowed"));
        }
        for (p, pos, ikey) in &lists[1] {
            if let Some((_, ro_pos, _)) = lists[0].iter().find(|(q, _, _)| q == p) {
                ok = false;
                let ro_pos = *ro_pos;
                self.err(
                    *pos,
                    ikey,
                    format!("`{p}` is listed as both read-only (at {ro_pos}) and read-write; keep one"),
                );
            }
        }
        let [ro, rw] = lists;
        ok.then(|| FilesystemPolicy {
            include_workdir,
            read_only: dedup(ro.into_iter().map(|(p, _, _)| p)),
            read_write: dedup(rw.into_iter().map(|(p, _, _)| p)),
            origin: FilesystemOrigin::Written,
        })
    }

    fn landlock(&mut self, top: &Fields<'_>) -> Option<Landlock> {
        let present = top.get("landlock").is_some();
        let Some(ll) = self.section(top, "landlock", "", &LANDLOCK) else {
            return (!present).then(Landlock::default);
        };
        let options =
            [("best_effort", Compatibility::BestEffort), ("hard_requirement", Compatibility::HardRequirement)];
        let compatibility = self.choice(&ll, "compatibility", "landlock", "value", &options)?.unwrap_or_default();
        Some(Landlock { compatibility })
    }

    fn process(&mut self, top: &Fields<'_>) -> Option<Process> {
        let present = top.get("process").is_some();
        let Some(p) = self.section(top, "process", "", &PROCESS) else {
            return (!present).then(Process::default);
        };
        let user = self.identity(&p, "run_as_user");
        let group = self.identity(&p, "run_as_group");
        Some(Process { run_as_user: user?, run_as_group: group? })
    }

    fn identity(&mut self, p: &Fields<'_>, name: &str) -> Option<Identity> {
        let key = join("process", name);
        let Some(node) = p.get(name) else { return Some(Identity::Sandbox) };
        let id: i128 = match &node.kind {
            Kind::Str(s) if s == "sandbox" => return Some(Identity::Sandbox),
            Kind::Str(s) if s == "root" => {
                self.err(
                    node.pos,
                    &key,
                    "running as root is not allowed; use `sandbox` or a numeric id from 1 to 4294967294",
                );
                return None;
            }
            Kind::Str(s) => match s.parse::<i128>() {
                Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    self.err(node.pos, &key, format!("`{s}` is not `sandbox` or a numeric id"));
                    return None;
                }
            },
            Kind::Int(n) => *n,
            _ => {
                self.type_err(node, &key, "`sandbox` or a numeric id");
                return None;
            }
        };
        match id {
            0 => {
                self.err(node.pos, &key, "id 0 (root) is not allowed; use an id from 1 to 4294967294");
                None
            }
            1..=4_294_967_294 => u32::try_from(id).ok().map(Identity::Id),
            _ => {
                self.err(node.pos, &key, format!("id {id} is out of range; expected 1 to 4294967294"));
                None
            }
        }
    }

    fn resources(&mut self, top: &Fields<'_>) -> Option<Resources> {
        let present = top.get("resources").is_some();
        let Some(r) = self.section(top, "resources", "", &RESOURCES) else {
            return (!present).then(Resources::default);
        };
        let mut ok = true;
        let memory = r.get("memory").and_then(|n| {
            let v = self.bytes(n, "resources.memory");
            ok &= v.is_some();
            v
        });
        let pids = r.get("pids").and_then(|n| {
            let v = self.integer(n, "resources.pids", 8, 4_194_304).and_then(|v| u64::try_from(v).ok());
            ok &= v.is_some();
            v
        });
        let cpu_millis = r.get("cpu").and_then(|n| {
            let v = self.cpu(n, "resources.cpu");
            ok &= v.is_some();
            v
        });
        let open_files = r.get("open_files").and_then(|n| {
            let v = self.integer(n, "resources.open_files", 64, 1_048_576).and_then(|v| u64::try_from(v).ok());
            ok &= v.is_some();
            v
        });
        let disk = r.get("disk").and_then(|n| {
            let v = self.bytes(n, "resources.disk");
            ok &= v.is_some();
            v
        });
        let logs = r.get("logs").and_then(|n| {
            let v = self.bytes_from(n, "resources.logs", 64 << 10);
            ok &= v.is_some();
            v
        });
        ok.then_some(Resources { memory, pids, cpu_millis, open_files, disk, logs })
    }

    /// A size of at least 16 MiB.
    fn bytes(&mut self, node: &Node, key: &str) -> Option<u64> {
        self.bytes_from(node, key, 16 << 20)
    }

    fn bytes_from(&mut self, node: &Node, key: &str, min: u64) -> Option<u64> {
        let value = match &node.kind {
            Kind::Int(i) => u64::try_from(*i).ok(),
            Kind::Str(s) => parse_size(s),
            _ => {
                self.type_err(node, key, "a size such as `512MiB`, `4GiB` or a number of bytes");
                return None;
            }
        };
        match value {
            Some(v) if v >= min => Some(v),
            Some(v) => {
                self.err(node.pos, key, format!("{v} bytes is below the minimum of {}", human_size(min)));
                None
            }
            None => {
                self.err(node.pos, key, "not a size; write a number with a unit such as `512MiB`, `4GiB` (or KiB/MiB/GiB/TiB, K/M/G/T, KB/MB/GB/TB)");
                None
            }
        }
    }

    fn cpu(&mut self, node: &Node, key: &str) -> Option<u64> {
        let cores = match node.kind {
            Kind::Int(i) => i as f64,
            Kind::Float(f) => f,
            _ => {
                self.type_err(node, key, "a number of cores such as 2 or 0.5");
                return None;
            }
        };
        if !(0.01..=1024.0).contains(&cores) {
            self.err(node.pos, key, format!("{cores} cores is out of range; expected 0.01 to 1024"));
            return None;
        }
        Some((cores * 1000.0).round() as u64)
    }

    fn network_policies(&mut self, top: &Fields<'_>) -> Option<NetworkPolicies> {
        let Some(node) = top.get("network_policies") else { return Some(NetworkPolicies::default()) };
        if node.kind == Kind::Null {
            return Some(NetworkPolicies::default());
        }
        let fields = self.entries(node, "network_policies")?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, k, v) in &fields.entries {
            let key = join("network_policies", name);
            if name.is_empty() {
                ok = false;
                self.err(k.pos, "network_policies", "policy key is empty");
                continue;
            }
            match self.network_policy(name, k.pos, v, &key) {
                Some(p) => {
                    out.insert((*name).to_owned(), p);
                }
                None => ok = false,
            }
        }
        ok.then_some(NetworkPolicies(out))
    }

    fn network_policy(&mut self, name: &str, key_pos: Pos, node: &Node, key: &str) -> Option<NetworkPolicy> {
        let f = self.fields(node, key, &NETWORK_POLICY)?;
        let mut ok = true;
        let display = match f.get("name") {
            None => name.to_owned(),
            Some(n) => match self.string(n, &join(key, "name")) {
                Some(s) => s.to_owned(),
                None => {
                    ok = false;
                    String::new()
                }
            },
        };
        let mut endpoints = Vec::new();
        let mut endpoints_given = false;
        if let Some(n) = f.get("endpoints") {
            let ekey = join(key, "endpoints");
            match self.list(n, &ekey) {
                Some(items) => {
                    endpoints_given = !items.is_empty();
                    for (i, item) in items.iter().enumerate() {
                        match self.endpoint(item, &index(&ekey, i)) {
                            Some(e) => endpoints.push(e),
                            None => ok = false,
                        }
                    }
                }
                None => {
                    // The wrong type is already reported; do not also say "no endpoints".
                    ok = false;
                    endpoints_given = true;
                }
            }
        }
        let mut binaries = Vec::new();
        let mut binaries_given = false;
        if let Some(n) = f.get("binaries") {
            let bkey = join(key, "binaries");
            match self.list(n, &bkey) {
                Some(items) => {
                    binaries_given = !items.is_empty();
                    for (i, item) in items.iter().enumerate() {
                        match self.binary(item, &index(&bkey, i)) {
                            Some(b) => binaries.push(b),
                            None => ok = false,
                        }
                    }
                }
                None => {
                    // The wrong type is already reported; do not also say "no binaries".
                    ok = false;
                    binaries_given = true;
                }
            }
        }
        if !endpoints_given {
            ok = false;
            let pos = if f.get("endpoints").is_some() { f.key_pos("endpoints") } else { key_pos };
            self.err(
                pos,
                &join(key, "endpoints"),
                "no endpoints: this policy can never take effect; list at least one endpoint",
            );
        }
        if !binaries_given {
            ok = false;
            let pos = if f.get("binaries").is_some() { f.key_pos("binaries") } else { key_pos };
            self.err(
                pos,
                &join(key, "binaries"),
                "no binaries: this policy can never take effect (an empty list matches no binary); list the executables that may connect, or `/**` for any",
            );
        }
        ok.then_some(NetworkPolicy { name: display, endpoints, binaries })
    }

    fn binary(&mut self, node: &Node, key: &str) -> Option<Binary> {
        let f = self.fields(node, key, &BINARY)?;
        let pkey = join(key, "path");
        let Some(n) = f.get("path") else {
            self.err(f.pos, &pkey, "missing required field `path`");
            return None;
        };
        let raw = self.string(n, &pkey)?;
        if !raw.starts_with('/') {
            self.err(n.pos, &pkey, format!("binary path `{raw}` must be absolute (start with `/`)"));
            return None;
        }
        if raw.split('/').any(|c| c == "..") {
            self.err(n.pos, &pkey, format!("binary path `{raw}` must not contain `..`"));
            return None;
        }
        match Glob::new(raw, '/', false) {
            Ok(path) => Some(Binary { path }),
            Err(e) => {
                self.err(n.pos, &pkey, e.to_string());
                None
            }
        }
    }

    fn endpoint(&mut self, node: &Node, key: &str) -> Option<Endpoint> {
        let f = self.fields(node, key, &ENDPOINT)?;
        let mut ok = true;

        let host = match f.get("host") {
            None => {
                self.err(f.pos, &join(key, "host"), "missing required field `host`");
                None
            }
            Some(n) => self.string(n, &join(key, "host")).and_then(|s| match HostPattern::parse(s) {
                Ok(h) => Some(h),
                Err(e) => {
                    self.err(n.pos, &join(key, "host"), format!("invalid host `{s}`: {e}"));
                    None
                }
            }),
        };
        ok &= host.is_some();

        let ports = self.ports(&f, key);
        ok &= ports.is_some();

        let protocol = self.protocol(&f, key);
        ok &= protocol.is_some();
        let invalid_protocol = protocol.is_none();
        let protocol = protocol.flatten();
        // An invalid `protocol` is reported once; checks that depend on it are then skipped
        // (`is_l7` suppresses "needs a protocol", `protocol` gates the protocol's own checks).
        let is_l7 = protocol.is_some_and(Protocol::is_inspected) || invalid_protocol;

        let options = [("enforce", Enforcement::Enforce), ("audit", Enforcement::Audit)];
        let enforcement = match self.choice(&f, "enforcement", key, "value", &options) {
            Some(Some(Enforcement::Audit)) if !is_l7 => {
                let ekey = join(key, "enforcement");
                self.err(f.key_pos_value("enforcement"), &ekey, "`enforcement: audit` can never take effect without an L7 `protocol` (an L4 endpoint is either allowed or not)");
                None
            }
            chosen => chosen.map(Option::unwrap_or_default),
        };
        ok &= enforcement.is_some();

        let options = [("read-only", Access::ReadOnly), ("read-write", Access::ReadWrite), ("full", Access::Full)];
        let access = self.choice(&f, "access", key, "access preset", &options);
        ok &= access.is_some();
        let access = access.flatten();

        let rpc_protocol = protocol.filter(|p| p.is_rpc());
        let (rules, deny_rules, rpc) = match rpc_protocol {
            Some(p) => {
                let rpc = self.rpc(&f, key, p);
                ok &= rpc.is_some();
                (Vec::new(), Vec::new(), rpc)
            }
            None => {
                let rules = f.get("rules").map(|n| self.allow_rules(n, &join(key, "rules"), protocol));
                let deny = f.get("deny_rules").map(|n| self.deny_rules(n, &join(key, "deny_rules"), protocol));
                ok &= rules.as_ref().is_none_or(Option::is_some) && deny.as_ref().is_none_or(Option::is_some);
                (rules.flatten().unwrap_or_default(), deny.flatten().unwrap_or_default(), None)
            }
        };

        let allowed_ips = match f.get("allowed_ips") {
            None => Some(Vec::new()),
            Some(n) => self.allowed_ips(n, &join(key, "allowed_ips")),
        };
        ok &= allowed_ips.is_some();

        let tls = match (self.choice(&f, "tls", key, "value", &[("skip", Tls::Skip)]), protocol) {
            (Some(Some(Tls::Skip)), Some(Protocol::Tcp)) => {
                let tkey = join(key, "tls");
                let message = "`tls: skip` can never take effect with `protocol: tcp`: raw TCP is never inspected";
                self.err(f.key_pos_value("tls"), &tkey, message);
                None
            }
            (Some(Some(Tls::Skip)), Some(p)) => {
                let tkey = join(key, "tls");
                self.err(
                    f.key_pos_value("tls"),
                    &tkey,
                    format!(
                        "`tls: skip` cannot be combined with `protocol: {}`: L7 rules need the TLS to be terminated",
                        p.as_str()
                    ),
                );
                None
            }
            (chosen, _) => chosen,
        };
        ok &= tls.is_some();

        // The fence sends every query to port 53 to the sandbox's DNS responder.
        if protocol == Some(Protocol::Tcp) && ports.as_ref().is_some_and(|p| p.contains(&53)) {
            let field = if f.get("ports").is_some() { "ports" } else { "port" };
            let message = "`protocol: tcp` to port 53 can never take effect: every DNS query, UDP or TCP, goes to the sandbox's DNS responder (which answers the names the policy allows)";
            self.err(f.key_pos_value(field), &join(key, field), message);
            ok = false;
        }

        let routing = self.choice(&f, "routing", key, "value", &[("inference", Routing::Inference)]);
        ok &= routing.is_some();
        let routing = routing.flatten();
        if routing.is_some() {
            for field in ["protocol", "access", "rules", "deny_rules", "tls", "enforcement"] {
                if f.get(field).is_some() {
                    ok = false;
                    self.err(
                        f.key_pos(field),
                        &join(key, field),
                        format!("`{field}` cannot be combined with `routing: inference`: the privacy router decides what such an endpoint accepts"),
                    );
                }
            }
        }

        ok &= self.rules_take_effect(&f, key, protocol, is_l7);

        // An IP-literal host the SSRF rules refuse can never take effect.
        if let (Some(h), Some(ips)) = (&host, &allowed_ips)
            && let Some(ip) = h.ip()
        {
            let hkey = join(key, "host");
            let pos = f.get("host").map_or(f.pos, |n| n.pos);
            match classify(ip) {
                AddrClass::Blocked(range) => {
                    ok = false;
                    self.err(
                        pos,
                        &hkey,
                        format!(
                            "`{ip}` is in {range}, which a sandbox may never reach; this endpoint can never take effect"
                        ),
                    );
                }
                AddrClass::Private(range) if !ips.iter().any(|n| n.contains(&embedded_v4(ip)) || n.contains(&ip)) => {
                    ok = false;
                    self.err(pos, &hkey, format!("`{ip}` is {range}: private addresses are reachable only through `allowed_ips`; add `allowed_ips: [\"{ip}\"]`"));
                }
                _ => {}
            }
        }

        if !ok {
            return None;
        }
        Some(Endpoint {
            host: host?,
            ports: ports?,
            protocol,
            enforcement: enforcement?,
            access,
            rules,
            deny_rules,
            allowed_ips: allowed_ips?,
            tls: tls?,
            routing,
            rpc,
        })
    }

    /// `protocol`: `Some(None)` when absent, `None` (reported) when invalid.
    fn protocol(&mut self, f: &Fields<'_>, key: &str) -> Option<Option<Protocol>> {
        const SUPPORTED: &str =
            "supported: `rest`, `websocket`, `mcp`, `json-rpc`, `tcp` (or omit `protocol` for L4 passthrough)";
        let Some(n) = f.get("protocol") else { return Some(None) };
        let pkey = join(key, "protocol");
        let p = self.string(n, &pkey)?;
        let known = [Protocol::Rest, Protocol::Websocket, Protocol::Mcp, Protocol::JsonRpc, Protocol::Tcp];
        if let Some(protocol) = known.into_iter().find(|k| k.as_str() == p) {
            return Some(Some(protocol));
        }
        let message = if matches!(p, "graphql" | "sql") {
            format!("protocol `{p}` is not supported yet; {SUPPORTED}")
        } else {
            format!("unknown protocol `{p}`; {SUPPORTED}")
        };
        self.err(n.pos, &pkey, message);
        None
    }

    /// Reports the fields of an endpoint that could never take effect under its
    /// protocol; `false` when there was one.
    fn rules_take_effect(&mut self, f: &Fields<'_>, key: &str, protocol: Option<Protocol>, is_l7: bool) -> bool {
        let mut ok = true;
        let mut refuse = |d: &mut Self, field: &str, message: String| {
            ok = false;
            d.err(f.key_pos(field), &join(key, field), message);
        };
        if !is_l7 {
            for field in ["access", "rules", "deny_rules"] {
                if f.get(field).is_some() {
                    refuse(
                        self,
                        field,
                        format!(
                            "`{field}` can never take effect without an L7 `protocol` (L4 traffic is not inspected)"
                        ),
                    );
                }
            }
        }
        let rpc = protocol.is_some_and(Protocol::is_rpc);
        for (field, owner) in [("path", None), ("mcp", Some(Protocol::Mcp)), ("json_rpc", Some(Protocol::JsonRpc))] {
            let fits = owner.map_or(rpc, |o| protocol == Some(o));
            if f.get(field).is_some() && !fits && (protocol.is_some() || !is_l7) {
                let message = match owner {
                    Some(o) => format!("`{field}` can never take effect without `protocol: {}`", o.as_str()),
                    None => "`path` on an endpoint is supported with `protocol: mcp` or `protocol: json-rpc`; elsewhere it is an OpenShell field that openshell does not support yet".to_owned(),
                };
                refuse(self, field, message);
            }
        }
        let Some(p) = protocol.filter(|p| p.is_inspected()) else { return ok };
        if p.is_rpc() {
            if f.get("access").is_some() {
                refuse(
                    self,
                    "access",
                    format!(
                        "`access` presets are HTTP methods and do not apply to `protocol: {}`; list `rules` of JSON-RPC methods",
                        p.as_str()
                    ),
                );
            }
            return ok;
        }
        if f.get("access").is_some() && f.get("rules").is_some() {
            refuse(self, "rules", "`access` and `rules` cannot be combined; use one of them".to_owned());
        } else if f.get("access").is_none() && f.get("rules").is_none() {
            let (field, message) = if f.get("deny_rules").is_some() {
                ("deny_rules", "`deny_rules` without an allow base (`rules` or `access`) can never take effect: nothing is allowed to be denied".to_owned())
            } else {
                (
                    "protocol",
                    format!("`protocol: {}` needs `access` or `rules`; without them no request is allowed", p.as_str()),
                )
            };
            refuse(self, field, message);
        }
        ok
    }

    fn ports(&mut self, f: &Fields<'_>, key: &str) -> Option<Vec<u16>> {
        let single = f.get("port").map(|n| self.port(n, &join(key, "port")));
        let many = f.get("ports").map(|n| {
            let pkey = join(key, "ports");
            let items = self.list(n, &pkey)?;
            if items.is_empty() {
                self.err(n.pos, &pkey, "`ports` is empty; list at least one port");
                return None;
            }
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match self.port(item, &index(&pkey, i)) {
                    Some(p) if !out.contains(&p) => out.push(p),
                    Some(_) => {}
                    None => ok = false,
                }
            }
            ok.then_some(out)
        });
        match (single, many) {
            (None, None) => {
                self.err(f.pos, &join(key, "port"), "missing `port` or `ports`");
                None
            }
            // `ports` wins when both are written (OpenShell's rule); both must still be valid.
            (Some(s), Some(m)) => s.and(m),
            (Some(s), None) => s.map(|p| vec![p]),
            (None, Some(m)) => m,
        }
    }

    fn port(&mut self, node: &Node, key: &str) -> Option<u16> {
        self.integer(node, key, 1, 65535).and_then(|p| u16::try_from(p).ok())
    }

    /// A non-empty list of rules, each decoded by `item`.
    fn rule_list<T>(
        &mut self,
        node: &Node,
        key: &str,
        empty: &str,
        mut item: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.list(node, key)?;
        if items.is_empty() {
            self.err(node.pos, key, empty);
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, node) in items.iter().enumerate() {
            match item(self, node, &index(key, i)) {
                Some(m) => out.push(m),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// One `- allow: {...}` rule, its matcher decoded by `matcher`.
    fn allow_item<T>(
        &mut self,
        item: &Node,
        ikey: &str,
        matcher: impl FnOnce(&mut Self, &Node, &str) -> Option<T>,
    ) -> Option<T> {
        let f = self.fields(item, ikey, &ALLOW_RULE)?;
        let Some(allow) = f.get("allow") else {
            self.err(
                f.pos,
                &join(ikey, "allow"),
                "missing required field `allow` (each rule is `- allow: {method, ...}`)",
            );
            return None;
        };
        matcher(self, allow, &join(ikey, "allow"))
    }

    fn allow_rules(&mut self, node: &Node, key: &str, protocol: Option<Protocol>) -> Option<Vec<AllowRule>> {
        let empty = "`rules` is empty; list at least one rule, or use `access`";
        self.rule_list(node, key, empty, |d, item, ikey| {
            d.allow_item(item, ikey, |d, n, k| d.matcher(n, k, protocol)).map(|allow| AllowRule { allow })
        })
    }

    fn deny_rules(&mut self, node: &Node, key: &str, protocol: Option<Protocol>) -> Option<Vec<HttpMatcher>> {
        let empty = "`deny_rules` is empty; remove it or list at least one rule";
        self.rule_list(node, key, empty, |d, item, ikey| d.matcher(item, ikey, protocol))
    }

    fn matcher(&mut self, node: &Node, key: &str, protocol: Option<Protocol>) -> Option<HttpMatcher> {
        let f = self.fields(node, key, &MATCHER)?;
        let mut ok = true;
        let method = match f.get("method") {
            None => {
                self.err(f.pos, &join(key, "method"), "missing required field `method` (an HTTP method, or `*`)");
                None
            }
            Some(n) => self.http_method(n, &join(key, "method"), protocol),
        };
        ok &= method.is_some();
        let path = match f.get("path") {
            None => {
                self.err(f.pos, &join(key, "path"), "missing required field `path` (a path glob such as `/repos/**`)");
                None
            }
            Some(n) => self.path_glob(n, &join(key, "path")),
        };
        ok &= path.is_some();
        let query = match f.get("query") {
            None => Some(BTreeMap::new()),
            Some(n) => self.query(n, &join(key, "query")),
        };
        ok &= query.is_some();
        if !ok {
            return None;
        }
        Some(HttpMatcher { method: method?, path: path?, query: query? })
    }

    /// An HTTP rule's method: exact upper-case, or `*`; on `websocket`
    /// endpoints only `GET`, `WEBSOCKET_TEXT` or `*`, and only there `WEBSOCKET_TEXT`.
    fn http_method(&mut self, n: &Node, mkey: &str, protocol: Option<Protocol>) -> Option<Method> {
        let m = self.string(n, mkey)?;
        if m == "*" {
            return Some(Method::Any);
        }
        let websocket = protocol == Some(Protocol::Websocket);
        let message = if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
            if m.bytes().all(|b| b.is_ascii_alphabetic()) && !m.is_empty() {
                format!(
                    "method `{m}` would never match: HTTP methods are case-sensitive; write `{}`",
                    m.to_ascii_uppercase()
                )
            } else {
                format!("`{m}` is not an HTTP method; write one such as `GET`, or `*` for any")
            }
        } else if websocket && m != "GET" && m != WEBSOCKET_TEXT {
            format!(
                "method `{m}` can never match on a `websocket` endpoint: it sees only the upgrade request (`GET`) and client text messages (`{WEBSOCKET_TEXT}`)"
            )
        } else if !websocket && m == WEBSOCKET_TEXT {
            format!("`{WEBSOCKET_TEXT}` matches WebSocket messages, only on `protocol: websocket` endpoints")
        } else {
            return Some(Method::Exact(m.to_owned()));
        };
        self.err(n.pos, mkey, message);
        None
    }

    /// `path`, `mcp`/`json_rpc`, `rules` and `deny_rules` of an `mcp` or `json-rpc` endpoint.
    fn rpc(&mut self, f: &Fields<'_>, key: &str, protocol: Protocol) -> Option<Rpc> {
        let path = match f.get("path") {
            None => Some(None),
            Some(n) => self.path_glob(n, &join(key, "path")).map(Some),
        };
        let dialect = match protocol {
            Protocol::Mcp => self.mcp_options(f, key).map(Dialect::Mcp),
            _ => self.json_rpc_options(f, key).map(Dialect::JsonRpc),
        };
        let ctx = match &dialect {
            Some(Dialect::Mcp(o)) => {
                RpcContext { mcp: true, strict: o.strict_tool_names, allow_all: o.allow_all_known_mcp_methods }
            }
            Some(Dialect::JsonRpc(_)) => RpcContext { mcp: false, strict: false, allow_all: false },
            // Invalid options are reported; the rules are checked leniently so
            // that no error follows from them.
            None => RpcContext { mcp: protocol == Protocol::Mcp, strict: true, allow_all: true },
        };
        let rules = f.get("rules").map(|n| {
            let empty = "`rules` is empty; list at least one rule";
            self.rule_list(n, &join(key, "rules"), empty, |d, item, ikey| {
                d.allow_item(item, ikey, |d, n, k| d.rpc_matcher(n, k, &ctx)).map(|allow| RpcAllowRule { allow })
            })
        });
        let deny_rules = f.get("deny_rules").map(|n| {
            let empty = "`deny_rules` is empty; remove it or list at least one rule";
            self.rule_list(n, &join(key, "deny_rules"), empty, |d, item, ikey| d.rpc_matcher(item, ikey, &ctx))
        });
        if rules.is_none() && !ctx.allow_all && dialect.is_some() {
            let (field, message) = if deny_rules.is_some() {
                ("deny_rules", "`deny_rules` without an allow base (`rules`) can never take effect: nothing is allowed to be denied".to_owned())
            } else {
                let hint = if ctx.mcp { " (or `mcp: { allow_all_known_mcp_methods: true }`)" } else { "" };
                (
                    "protocol",
                    format!("`protocol: {}` needs `rules`{hint}; without them no call is allowed", protocol.as_str()),
                )
            };
            self.err(f.key_pos(field), &join(key, field), message);
            return None;
        }
        Some(Rpc {
            path: path?,
            dialect: dialect?,
            rules: rules.map_or(Some(Vec::new()), |r| r)?,
            deny_rules: deny_rules.map_or(Some(Vec::new()), |r| r)?,
        })
    }

    fn mcp_options(&mut self, f: &Fields<'_>, key: &str) -> Option<McpOptions> {
        let defaults = McpOptions {
            max_body_bytes: DEFAULT_RPC_BODY,
            strict_tool_names: true,
            allow_all_known_mcp_methods: false,
        };
        let Some(o) = self.section(f, "mcp", key, &MCP) else {
            return f.get("mcp").is_none().then_some(defaults);
        };
        let okey = join(key, "mcp");
        let max_body_bytes = self.max_body(&o, &okey);
        let flag = |d: &mut Self, name: &str, default: bool| match o.get(name) {
            None => Some(default),
            Some(n) => d.boolean(n, &join(&okey, name)),
        };
        let strict = flag(self, "strict_tool_names", true);
        let allow_all = flag(self, "allow_all_known_mcp_methods", false);
        Some(McpOptions {
            max_body_bytes: max_body_bytes?,
            strict_tool_names: strict?,
            allow_all_known_mcp_methods: allow_all?,
        })
    }

    fn json_rpc_options(&mut self, f: &Fields<'_>, key: &str) -> Option<JsonRpcOptions> {
        let Some(o) = self.section(f, "json_rpc", key, &JSON_RPC) else {
            return f.get("json_rpc").is_none().then_some(JsonRpcOptions { max_body_bytes: DEFAULT_RPC_BODY });
        };
        Some(JsonRpcOptions { max_body_bytes: self.max_body(&o, &join(key, "json_rpc"))? })
    }

    fn max_body(&mut self, o: &Fields<'_>, okey: &str) -> Option<u64> {
        let Some(n) = o.get("max_body_bytes") else { return Some(DEFAULT_RPC_BODY) };
        let max = i128::from(MAX_RPC_BODY);
        self.integer(n, &join(okey, "max_body_bytes"), 1, max).and_then(|v| u64::try_from(v).ok())
    }

    /// `{method, tool}` of an `mcp` or `json-rpc` rule.
    fn rpc_matcher(&mut self, node: &Node, key: &str, ctx: &RpcContext) -> Option<RpcMatcher> {
        let f = self.fields(node, key, &RPC_MATCHER)?;
        let method = f.get("method").map(|n| self.rpc_method(n, &join(key, "method"), ctx));
        let tool = f.get("tool").map(|n| self.tool(n, &join(key, "tool"), ctx));
        let (method, tool) = (method.map_or(Some(None), |m| m.map(Some))?, tool.map_or(Some(None), |t| t.map(Some))?);
        let message = match (&method, &tool) {
            (None, None) if ctx.allow_all => Some("a rule needs `method` or `tool`".to_owned()),
            (None, _) if !ctx.allow_all => {
                Some("missing required field `method` (a JSON-RPC method, or `*`; it may be left out only under `allow_all_known_mcp_methods: true`)".to_owned())
            }
            (Some(m), Some(_)) if !m.matches(TOOLS_CALL) => {
                Some(format!("`tool` matches only `{TOOLS_CALL}`, and method `{m}` never is it; write `method: {TOOLS_CALL}`"))
            }
            _ => None,
        };
        if let Some(message) = message {
            self.err(f.pos, key, message);
            return None;
        }
        Some(RpcMatcher { method, tool })
    }

    fn rpc_method(&mut self, n: &Node, mkey: &str, ctx: &RpcContext) -> Option<RpcMethod> {
        let m = self.string(n, mkey)?;
        let pattern = m.contains(['*', '?', '[']);
        let message = if m.is_empty() {
            "a method is not empty".to_owned()
        } else if !pattern {
            return Some(RpcMethod::Exact(m.to_owned()));
        } else if !ctx.mcp {
            if m == "*" {
                return Some(RpcMethod::Any);
            }
            format!("json-rpc methods are exact names or `*`; `{m}` is neither")
        } else if m == "*" {
            "`*` is not an MCP method matcher: write `allow_all_known_mcp_methods: true` under `mcp`, or a glob within `tools/` such as `tools/*`".to_owned()
        } else if !m.starts_with("tools/") {
            format!("MCP method globs stay within `tools/` (such as `tools/*`); `{m}` does not")
        } else {
            return self.glob(m, '/', n.pos, mkey).map(RpcMethod::Glob);
        };
        self.err(n.pos, mkey, message);
        None
    }

    /// A `tool` matcher: a glob or `{any: [globs]}`, each checked against `strict_tool_names`.
    fn tool(&mut self, n: &Node, tkey: &str, ctx: &RpcContext) -> Option<QueryMatcher> {
        if !ctx.mcp {
            self.err(n.pos, tkey, "`tool` applies only to `protocol: mcp` (json-rpc calls have no tool)");
            return None;
        }
        self.glob_or_any(n, tkey, &mut |d, s, pos, key| {
            let g = d.glob(s, '/', pos, key)?;
            let message = if !g.is_literal() && !ctx.strict {
                format!("a wildcard tool matcher (`{s}`) needs `strict_tool_names: true`: without it a tool name may hold characters the glob does not expect")
            } else if g.is_literal() && ctx.strict && !strict_tool_name(s) {
                format!("tool `{s}` can never match: under `strict_tool_names` a tool name is 1 to 128 of A-Z, a-z, 0-9, `_`, `.`, `-`")
            } else {
                return Some(g);
            };
            d.err(pos, key, message);
            None
        })
    }

    fn glob(&mut self, s: &str, sep: char, pos: Pos, key: &str) -> Option<Glob> {
        match Glob::new(s, sep, false) {
            Ok(g) => Some(g),
            Err(e) => {
                self.err(pos, key, e.to_string());
                None
            }
        }
    }

    /// A path glob (starting with `/`).
    fn path_glob(&mut self, n: &Node, pkey: &str) -> Option<Glob> {
        let p = self.string(n, pkey)?;
        if !p.starts_with('/') {
            self.err(n.pos, pkey, format!("path `{p}` must start with `/`"));
            return None;
        }
        self.glob(p, '/', n.pos, pkey)
    }

    fn query(&mut self, node: &Node, key: &str) -> Option<BTreeMap<String, QueryMatcher>> {
        let f = self.entries(node, key)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, _, v) in &f.entries {
            match self.glob_or_any(v, &join(key, name), &mut |d, s, pos, k| d.glob(s, '.', pos, k)) {
                Some(m) => {
                    out.insert((*name).to_owned(), m);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A glob string or `{any: [globs]}`, each glob made by `glob`.
    fn glob_or_any(
        &mut self,
        v: &Node,
        key: &str,
        glob: &mut dyn FnMut(&mut Self, &str, Pos, &str) -> Option<Glob>,
    ) -> Option<QueryMatcher> {
        match &v.kind {
            Kind::Str(s) => glob(self, s, v.pos, key).map(QueryMatcher::One),
            Kind::Map(_) => {
                let af = self.fields(v, key, &ANY)?;
                let akey = join(key, "any");
                let Some(list) = af.get("any") else {
                    self.err(af.pos, &akey, "missing required field `any` (a list of globs)");
                    return None;
                };
                let items = self.list(list, &akey)?;
                if items.is_empty() {
                    self.err(list.pos, &akey, "`any` is empty; list at least one glob");
                    return None;
                }
                let mut globs = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let ikey = index(&akey, i);
                    if let Some(s) = self.string(item, &ikey) {
                        globs.extend(glob(self, s, item.pos, &ikey));
                    }
                }
                (globs.len() == items.len()).then_some(QueryMatcher::Any { any: globs })
            }
            _ => {
                self.type_err(v, key, "a glob string or `{any: [globs]}`");
                None
            }
        }
    }

    fn allowed_ips(&mut self, node: &Node, key: &str) -> Option<Vec<IpNet>> {
        let items = self.list(node, key)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ikey = index(key, i);
            let Some(s) = self.string(item, &ikey) else {
                ok = false;
                continue;
            };
            let net = s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
            match net {
                None => {
                    ok = false;
                    self.err(item.pos, &ikey, format!("`{s}` is not an IP address or CIDR range"));
                }
                Some(net) => match blocked_overlap(&net) {
                    Some(range) => {
                        ok = false;
                        self.err(
                            item.pos,
                            &ikey,
                            format!("`{s}` overlaps {range}, which is never reachable from a sandbox"),
                        );
                    }
                    None => out.push(net.trunc()),
                },
            }
        }
        ok.then_some(out)
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Checks a filesystem path and normalizes `//`, `/./` and a trailing `/`.
fn normalize_fs_path(raw: &str) -> Result<String, &'static str> {
    if !raw.starts_with('/') {
        return Err("must be absolute (start with `/`)");
    }
    if raw.len() > MAX_PATH_LEN {
        return Err("is longer than 4096 bytes");
    }
    if raw.contains('\0') {
        return Err("contains a NUL byte");
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("must not contain `..`"),
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// `512MiB`, `4GiB`, `1G`, `100MB`, `1048576`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `16 MiB`, `64 KiB`: a minimum as errors name it.
fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}
