//! `openshell policy validate | check | explain | diff`.

use std::path::{Path, PathBuf};

use openshell_policy::diff::{Applicability, ChangeKind, FieldChange};
use openshell_policy::model::{FilesystemOrigin, FilesystemPolicy};
use openshell_policy::{
    Diagnostic, Engine, HttpRequest, KernelProfile, LoadError, Message, Policy, PolicyDiff, Request, RpcCall,
};
use serde::Serialize;
use serde_json::json;

use crate::output::Output;
use crate::{CheckArgs, Outcome, WebSocketPart};

/// Errors of the policy commands, rendered by `main`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("--{flag} `{value}`: {problem}")]
    BadArgument { flag: &'static str, value: String, problem: &'static str },
    #[error(transparent)]
    Image(#[from] crate::image_cmd::ImageCmdError),
    #[error(transparent)]
    Verify(#[from] crate::verify_cmd::VerifyCmdError),
    #[error(transparent)]
    Docker(#[from] openshell_docker::DockerError),
    #[error(transparent)]
    Kubernetes(#[from] openshell_kubernetes::ManifestError),
    #[error("{0}")]
    Missing(String),
    /// A command whose exit 1 is a negative answer (`verify`) could not answer.
    #[error(transparent)]
    Unanswered(Box<CliError>),
}

impl CliError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            CliError::Load(e) => e.diagnostics(),
            CliError::Unanswered(e) => e.diagnostics(),
            CliError::BadArgument { .. }
            | CliError::Image(_)
            | CliError::Verify(_)
            | CliError::Docker(_)
            | CliError::Kubernetes(_)
            | CliError::Missing(_) => &[],
        }
    }

    /// 2: could not answer (bad input); 1: the operation failed (a download, a
    /// verification).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Image(e) => e.exit_code(),
            CliError::Docker(_) => 1,
            // Writing or reading the output directory failed; anything else is bad input.
            CliError::Kubernetes(openshell_kubernetes::ManifestError::Io { .. }) => 1,
            _ => 2,
        }
    }
}

fn load(path: &Path) -> Result<Policy, CliError> {
    tracing::debug!(path = %path.display(), "loading policy");
    Ok(openshell_policy::load_file(path)?)
}

#[derive(Serialize)]
struct FileReport {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_policies: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoints: Option<usize>,
    errors: Vec<ErrorReport>,
}

#[derive(Serialize)]
struct ErrorReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u32>,
    key: String,
    message: String,
}

pub fn validate(out: &Output, files: &[PathBuf]) -> Result<Outcome, CliError> {
    let mut reports = Vec::new();
    let mut unreadable = None;
    for file in files {
        let name = file.display().to_string();
        match openshell_policy::load_file(file) {
            Ok(p) => {
                if !out.json() {
                    out.info(&format!(
                        "{name}: valid ({} network policies, {} endpoints)",
                        p.network_policies.len(),
                        p.network_policies.endpoint_count()
                    ));
                }
                reports.push(FileReport {
                    file: name,
                    valid: true,
                    network_policies: Some(p.network_policies.len()),
                    endpoints: Some(p.network_policies.endpoint_count()),
                    errors: Vec::new(),
                });
            }
            Err(e) => {
                let errors = match &e {
                    LoadError::Invalid { diagnostics, .. } => diagnostics
                        .iter()
                        .map(|d| ErrorReport {
                            line: Some(d.line),
                            column: Some(d.column),
                            key: d.key.clone(),
                            message: d.message.clone(),
                        })
                        .collect(),
                    LoadError::Read { source, .. } => {
                        unreadable = Some(());
                        vec![ErrorReport { line: None, column: None, key: String::new(), message: source.to_string() }]
                    }
                };
                if !out.json() {
                    eprintln!("{e}");
                    if matches!(e, LoadError::Invalid { .. }) {
                        let n = errors.len();
                        eprintln!("{name}: invalid ({n} error{})", if n == 1 { "" } else { "s" });
                    }
                }
                reports.push(FileReport { file: name, valid: false, network_policies: None, endpoints: None, errors });
            }
        }
    }
    if out.json() {
        out.print_json(&json!({ "valid": reports.iter().all(|r| r.valid), "files": reports }));
    }
    Ok(if unreadable.is_some() {
        Outcome::Unanswered
    } else if reports.iter().all(|r| r.valid) {
        Outcome::Ok
    } else {
        Outcome::No
    })
}

fn absolute(flag: &'static str, value: &str) -> Result<(), CliError> {
    if value.starts_with('/') {
        Ok(())
    } else {
        Err(CliError::BadArgument { flag, value: value.to_owned(), problem: "must be an absolute path" })
    }
}

pub fn check(out: &Output, args: &CheckArgs) -> Result<Outcome, CliError> {
    if args.host.trim().is_empty() {
        return Err(CliError::BadArgument { flag: "host", value: args.host.clone(), problem: "is empty" });
    }
    if let Some(b) = &args.binary {
        absolute("binary", b)?;
    }
    for a in &args.ancestors {
        absolute("ancestor", a)?;
    }
    if let Some(p) = &args.path
        && !p.starts_with('/')
    {
        return Err(CliError::BadArgument { flag: "path", value: p.clone(), problem: "must start with `/`" });
    }
    let policy = load(&args.file)?;
    let engine = Engine::new(&policy);
    let ancestors: Vec<&str> = args.ancestors.iter().map(String::as_str).collect();
    let query: Vec<(&str, &str)> = args.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let message = match (args.websocket, &args.rpc_method) {
        (Some(WebSocketPart::Upgrade), _) => Message::WebSocketUpgrade,
        (Some(WebSocketPart::Text), _) => Message::WebSocketText,
        (None, Some(method)) => Message::Rpc(RpcCall { method, tool: args.tool.as_deref() }),
        (None, None) => Message::Plain,
    };
    let http = match (&args.method, &args.path) {
        (Some(method), Some(path)) => Some(HttpRequest { method, path, query: &query, message }),
        _ => None,
    };
    let req = Request {
        host: &args.host,
        port: args.port,
        binary: args.binary.as_deref(),
        ancestors: &ancestors,
        resolved_ip: args.resolved_ip,
        http,
    };
    let d = engine.decide(&req);
    let detail = d.explain(&engine, &req);
    if out.json() {
        out.print_json(&json!({
            "decision": d.verdict,
            "policy": d.policy,
            "endpoint": d.endpoint.map(|e| e.describe()),
            "reason": d.reason.map(|r| r.as_str()),
            "reason_code": d.reason,
            "detail": detail,
            "inspect": d.inspect,
            "route": d.route,
        }));
    } else {
        out.line(&format!("{}: {detail}", d.verdict));
    }
    Ok(if d.is_allowed() { Outcome::Ok } else { Outcome::No })
}

pub fn explain(out: &Output, file: &Path, workdir: &str) -> Result<Outcome, CliError> {
    absolute("workdir", workdir)?;
    let policy = load(file)?;
    let profile = KernelProfile::compile(&policy, workdir);
    if out.json() {
        out.print_json(&json!({
            "file": file.display().to_string(),
            "kernel": profile,
            "filesystem_policy": policy.filesystem_policy.origin,
            "network": {
                "default": "deny",
                "policies": policy.network_policies.len(),
                "endpoints": policy.network_policies.endpoint_count(),
            },
        }));
        return Ok(Outcome::Ok);
    }
    let mut s = String::new();
    let push = |s: &mut String, line: String| {
        s.push_str(&line);
        s.push('\n');
    };
    push(&mut s, format!("Kernel profile of {} (fixed at sandbox creation)", file.display()));
    push(&mut s, String::new());
    push(&mut s, format!("Namespaces: {}", profile.namespaces.join(", ")));
    push(&mut s, String::new());
    if policy.filesystem_policy.origin == FilesystemOrigin::Baseline {
        push(
            &mut s,
            format!(
                "No filesystem_policy in the file: OpenShell's baseline for proxy-mode sandboxes applies (read-only \
                 {}; read-write {}; plus the workdir)",
                FilesystemPolicy::BASELINE_READ_ONLY.join(", "),
                FilesystemPolicy::BASELINE_READ_WRITE.join(", ")
            ),
        );
        push(&mut s, String::new());
    }
    push(&mut s, "Mount plan:".into());
    push(&mut s, format!("  rootfs            read-only: {}", profile.mounts.rootfs_read_only));
    for p in &profile.mounts.read_only {
        push(&mut s, format!("  read-only         {p}"));
    }
    for p in &profile.mounts.read_write {
        push(&mut s, format!("  read-write        {p}"));
    }
    for p in &profile.mounts.masked {
        push(&mut s, format!("  masked            {p}"));
    }
    for p in &profile.mounts.kernel_read_only {
        push(&mut s, format!("  read-only kernel  {p}"));
    }
    push(&mut s, String::new());
    let ll = &profile.landlock;
    push(&mut s, format!("Landlock (ABI >= {}, compatibility {}):", ll.abi, ll.compatibility.describe()));
    push(&mut s, format!("  handled rights: {}", ll.handled.join(", ")));
    push(&mut s, "  everything not listed below is inaccessible".into());
    for r in &ll.rules {
        push(&mut s, format!("  {}", r.path));
        push(&mut s, format!("      directory: {}", r.directory_rights.join(", ")));
        push(&mut s, format!("      file:      {}", r.file_rights.join(", ")));
    }
    push(&mut s, String::new());
    push(&mut s, format!("User: {}  Group: {}  Supplementary groups: none", profile.user.user, profile.user.group));
    push(&mut s, "Capabilities: none (bounding, effective, inheritable, permitted and ambient sets are empty)".into());
    push(&mut s, format!("no_new_privileges: {}", profile.no_new_privileges));
    push(&mut s, String::new());
    push(&mut s, "Rlimits:".into());
    for r in &profile.rlimits {
        push(&mut s, format!("  {:<14} soft {} hard {}", r.kind, r.soft, r.hard));
    }
    push(&mut s, "Cgroup limits:".into());
    let c = &profile.cgroup;
    push(&mut s, format!("  memory.max      {} ({})", c.memory_max, human_bytes(c.memory_max)));
    push(&mut s, format!("  memory.swap.max {}", c.memory_swap_max));
    push(&mut s, format!("  pids.max        {}", c.pids_max));
    match c.cpu_max {
        Some((quota, period)) => push(&mut s, format!("  cpu.max         {quota} {period}")),
        None => push(&mut s, "  cpu.max         max (unlimited)".into()),
    }
    let st = &profile.storage;
    push(&mut s, "Storage:".into());
    push(&mut s, format!("  writable layer  {} ({}; writes beyond it fail: no space)", st.disk, human_bytes(st.disk)));
    push(
        &mut s,
        format!("  logs rotate at  {} ({}; one previous file kept)", st.log_rotate, human_bytes(st.log_rotate)),
    );
    push(&mut s, String::new());
    push(
        &mut s,
        format!(
            "Network: default deny; {} policies, {} endpoints (see `openshell policy check`)",
            policy.network_policies.len(),
            policy.network_policies.endpoint_count()
        ),
    );
    push(&mut s, String::new());
    push(&mut s, "Seccomp (OCI LinuxSeccomp):".into());
    s.push_str(&serde_json::to_string_pretty(&profile.seccomp).unwrap_or_default());
    out.line(&s);
    Ok(Outcome::Ok)
}

fn human_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if b >= size && b.is_multiple_of(size) {
            return format!("{} {name}", b / size);
        }
    }
    format!("{b} B")
}

pub fn diff(out: &Output, old: &Path, new: &Path) -> Result<Outcome, CliError> {
    let a = load(old)?;
    let b = load(new)?;
    let d = PolicyDiff::between(&a, &b);
    if out.json() {
        out.print_json(&d);
        return Ok(Outcome::Ok);
    }
    let verdict = match d.applicability {
        Applicability::Unchanged => "unchanged: the policies are equivalent".to_owned(),
        Applicability::Live => "live: only network policies changed; can be applied to a running sandbox".to_owned(),
        Applicability::Recreate => match d.ensure_live() {
            Err(e) => format!("recreate: {e}"),
            Ok(()) => "recreate".to_owned(),
        },
    };
    out.line(&verdict);
    if out.quiet {
        return Ok(Outcome::Ok);
    }
    if !d.static_changes.is_empty() {
        out.line("static changes (need the sandbox recreated):");
        for c in &d.static_changes {
            out.line(&format!("  {}", describe(c)));
        }
    }
    if !d.network_changes.is_empty() {
        out.line("network changes (hot-reloadable):");
        for c in &d.network_changes {
            out.line(&format!("  {}", describe(c)));
        }
    }
    Ok(Outcome::Ok)
}

fn describe(c: &FieldChange) -> String {
    use serde_json::Value;
    let v = |v: &Option<Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    // Lists of scalars (paths, ports): name what was added and removed.
    if let (Some(Value::Array(old)), Some(Value::Array(new))) = (&c.old, &c.new)
        && !old.iter().chain(new).any(|x| x.is_object() || x.is_array())
    {
        let added: Vec<String> = new.iter().filter(|x| !old.contains(x)).map(Value::to_string).collect();
        let removed: Vec<String> = old.iter().filter(|x| !new.contains(x)).map(Value::to_string).collect();
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("added {}", added.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("removed {}", removed.join(", ")));
        }
        if parts.is_empty() {
            parts.push("reordered".to_owned());
        }
        return format!("{}: {}", c.field, parts.join("; "));
    }
    match c.change {
        ChangeKind::Added => format!("{}: added {}", c.field, v(&c.new)),
        ChangeKind::Removed => format!("{}: removed (was {})", c.field, v(&c.old)),
        ChangeKind::Changed => format!("{}: {} -> {}", c.field, v(&c.old), v(&c.new)),
    }
}
