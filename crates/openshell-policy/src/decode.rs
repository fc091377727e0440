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
}

const TOP: Spec = Spec {
    fields: &["version", "filesystem_policy", "landlock", "process", "resources", "network_policies"],
    unsupported: &["network_middlewares"],
};
const FILESYSTEM: Spec = Spec { fields: &["include_workdir", "read_only", "read_write"], unsupported: &[] };
const LANDLOCK: Spec = Spec { fields: &["compatibility"], unsupported: &[] };
const PROCESS: Spec = Spec { fields: &["run_as_user", "run_as_group"], unsupported: &[] };
const RESOURCES: Spec = Spec { fields: &["memory", "pids", "cpu", "open_files", "disk", "logs"], unsupported: &[] };
const NETWORK_POLICY: Spec = Spec { fields: &["name", "endpoints", "binaries"], unsupported: &[] };
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
    ],
    unsupported: &[
        "path",
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
        "mcp",
        "json_rpc",
    ],
};
const BINARY: Spec = Spec { fields: &["path"], unsupported: &[] };
const ALLOW_RULE: Spec = Spec { fields: &["allow"], unsupported: &[] };
const MATCHER: Spec = Spec {
    fields: &["method", "path", "query"],
    unsupported: &["operation_type", "operation_name", "fields", "tool", "params"],
};
const ANY: Spec = Spec { fields: &["any"], unsupported: &[] };

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

        let protocol = match f.get("protocol") {
            None => Some(None),
            Some(n) => {
                let pkey = join(key, "protocol");
                match self.string(n, &pkey) {
                    Some("rest") => Some(Some(Protocol::Rest)),
                    Some("tcp") => Some(Some(Protocol::Tcp)),
                    Some(p @ ("websocket" | "graphql" | "mcp" | "json-rpc" | "sql")) => {
                        self.err(n.pos, &pkey, format!("protocol `{p}` is not supported yet; supported: `rest`, `tcp` (or omit `protocol` for L4 passthrough)"));
                        None
                    }
                    Some(p) => {
                        self.err(
                            n.pos,
                            &pkey,
                            format!(
                                "unknown protocol `{p}`; supported: `rest`, `tcp` (or omit `protocol` for L4 passthrough)"
                            ),
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        ok &= protocol.is_some();
        let invalid_protocol = protocol.is_none();
        let protocol = protocol.flatten();
        // An invalid `protocol` is reported once; checks that depend on it are then skipped
        // (`is_rest` suppresses "needs `protocol: rest`", `valid_rest` gates the rest-only checks).
        let valid_rest = protocol == Some(Protocol::Rest);
        let is_rest = valid_rest || invalid_protocol;

        let options = [("enforce", Enforcement::Enforce), ("audit", Enforcement::Audit)];
        let enforcement = match self.choice(&f, "enforcement", key, "value", &options) {
            Some(Some(Enforcement::Audit)) if !is_rest => {
                let ekey = join(key, "enforcement");
                self.err(f.key_pos_value("enforcement"), &ekey, "`enforcement: audit` can never take effect without `protocol: rest` (an L4 endpoint is either allowed or not)");
                None
            }
            chosen => chosen.map(Option::unwrap_or_default),
        };
        ok &= enforcement.is_some();

        let options = [("read-only", Access::ReadOnly), ("read-write", Access::ReadWrite), ("full", Access::Full)];
        let access = self.choice(&f, "access", key, "access preset", &options);
        ok &= access.is_some();
        let access = access.flatten();

        let rules = match f.get("rules") {
            None => Some(Vec::new()),
            Some(n) => self.allow_rules(n, &join(key, "rules")),
        };
        ok &= rules.is_some();
        let rules = rules.unwrap_or_default();

        let deny_rules = match f.get("deny_rules") {
            None => Some(Vec::new()),
            Some(n) => self.deny_rules(n, &join(key, "deny_rules")),
        };
        ok &= deny_rules.is_some();
        let deny_rules = deny_rules.unwrap_or_default();

        let allowed_ips = match f.get("allowed_ips") {
            None => Some(Vec::new()),
            Some(n) => self.allowed_ips(n, &join(key, "allowed_ips")),
        };
        ok &= allowed_ips.is_some();

        let tls = match self.choice(&f, "tls", key, "value", &[("skip", Tls::Skip)]) {
            Some(Some(Tls::Skip)) if valid_rest => {
                let tkey = join(key, "tls");
                self.err(
                    f.key_pos_value("tls"),
                    &tkey,
                    "`tls: skip` cannot be combined with `protocol: rest`: L7 rules need the TLS to be terminated",
                );
                None
            }
            Some(Some(Tls::Skip)) if protocol == Some(Protocol::Tcp) => {
                let tkey = join(key, "tls");
                self.err(
                    f.key_pos_value("tls"),
                    &tkey,
                    "`tls: skip` can never take effect with `protocol: tcp`: raw TCP is never inspected",
                );
                None
            }
            chosen => chosen,
        };
        ok &= tls.is_some();

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

        // Rules that could never take effect.
        if !is_rest {
            for field in ["access", "rules", "deny_rules"] {
                if f.get(field).is_some() {
                    ok = false;
                    self.err(
                        f.key_pos(field),
                        &join(key, field),
                        format!(
                            "`{field}` can never take effect without `protocol: rest` (L4 traffic is not inspected)"
                        ),
                    );
                }
            }
        } else {
            if f.get("access").is_some() && f.get("rules").is_some() {
                ok = false;
                self.err(
                    f.key_pos("rules"),
                    &join(key, "rules"),
                    "`access` and `rules` cannot be combined; use one of them",
                );
            }
            if valid_rest && f.get("access").is_none() && f.get("rules").is_none() {
                ok = false;
                let (pos, field) = if f.get("deny_rules").is_some() {
                    (f.key_pos("deny_rules"), "deny_rules")
                } else {
                    (f.key_pos("protocol"), "protocol")
                };
                let msg = if field == "deny_rules" {
                    "`deny_rules` without an allow base (`rules` or `access`) can never take effect: nothing is allowed to be denied"
                } else {
                    "`protocol: rest` needs `access` or `rules`; without them no request is allowed"
                };
                self.err(pos, &join(key, field), msg);
            }
        }

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
        })
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

    fn allow_rules(&mut self, node: &Node, key: &str) -> Option<Vec<AllowRule>> {
        let items = self.list(node, key)?;
        if items.is_empty() {
            self.err(node.pos, key, "`rules` is empty; list at least one rule, or use `access`");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ikey = index(key, i);
            let Some(f) = self.fields(item, &ikey, &ALLOW_RULE) else {
                ok = false;
                continue;
            };
            let Some(allow) = f.get("allow") else {
                ok = false;
                self.err(
                    f.pos,
                    &join(&ikey, "allow"),
                    "missing required field `allow` (each rule is `- allow: {method, path}`)",
                );
                continue;
            };
            match self.matcher(allow, &join(&ikey, "allow")) {
                Some(m) => out.push(AllowRule { allow: m }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn deny_rules(&mut self, node: &Node, key: &str) -> Option<Vec<HttpMatcher>> {
        let items = self.list(node, key)?;
        if items.is_empty() {
            self.err(node.pos, key, "`deny_rules` is empty; remove it or list at least one rule");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.matcher(item, &index(key, i)) {
                Some(m) => out.push(m),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn matcher(&mut self, node: &Node, key: &str) -> Option<HttpMatcher> {
        let f = self.fields(node, key, &MATCHER)?;
        let mut ok = true;
        let method = match f.get("method") {
            None => {
                self.err(f.pos, &join(key, "method"), "missing required field `method` (an HTTP method, or `*`)");
                None
            }
            Some(n) => {
                let mkey = join(key, "method");
                self.string(n, &mkey).and_then(|m| {
                    if m == "*" {
                        Some(Method::Any)
                    } else if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
                        Some(Method::Exact(m.to_owned()))
                    } else if m.bytes().all(|b| b.is_ascii_alphabetic()) && !m.is_empty() {
                        self.err(
                            n.pos,
                            &mkey,
                            format!(
                                "method `{m}` would never match: HTTP methods are case-sensitive; write `{}`",
                                m.to_ascii_uppercase()
                            ),
                        );
                        None
                    } else {
                        self.err(
                            n.pos,
                            &mkey,
                            format!("`{m}` is not an HTTP method; write one such as `GET`, or `*` for any"),
                        );
                        None
                    }
                })
            }
        };
        ok &= method.is_some();
        let path = match f.get("path") {
            None => {
                self.err(f.pos, &join(key, "path"), "missing required field `path` (a path glob such as `/repos/**`)");
                None
            }
            Some(n) => {
                let pkey = join(key, "path");
                self.string(n, &pkey).and_then(|p| {
                    if !p.starts_with('/') {
                        self.err(n.pos, &pkey, format!("path `{p}` must start with `/`"));
                        return None;
                    }
                    match Glob::new(p, '/', false) {
                        Ok(g) => Some(g),
                        Err(e) => {
                            self.err(n.pos, &pkey, e.to_string());
                            None
                        }
                    }
                })
            }
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

    fn query(&mut self, node: &Node, key: &str) -> Option<BTreeMap<String, QueryMatcher>> {
        let f = self.entries(node, key)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, _, v) in &f.entries {
            let qkey = join(key, name);
            let m = match &v.kind {
                Kind::Str(s) => self.query_glob(s, v.pos, &qkey).map(QueryMatcher::One),
                Kind::Map(_) => self.fields(v, &qkey, &ANY).and_then(|af| {
                    let akey = join(&qkey, "any");
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
                            globs.extend(self.query_glob(s, item.pos, &ikey));
                        }
                    }
                    (globs.len() == items.len()).then_some(QueryMatcher::Any { any: globs })
                }),
                _ => {
                    self.type_err(v, &qkey, "a glob string or `{any: [globs]}`");
                    None
                }
            };
            match m {
                Some(m) => {
                    out.insert((*name).to_owned(), m);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn query_glob(&mut self, s: &str, pos: Pos, key: &str) -> Option<Glob> {
        match Glob::new(s, '.', false) {
            Ok(g) => Some(g),
            Err(e) => {
                self.err(pos, key, e.to_string());
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
