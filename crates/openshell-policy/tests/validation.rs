//! Table-driven tests of every validation of the policy loader, and the
//! fixture files under `tests/fixtures/{valid,invalid}`.
//!
//! Each invalid case lists every diagnostic the loader must report: exact
//! line, column and dotted key, and a substring of the message. The count must
//! match too, so a case fails if an error is missing, extra, or moved.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use openshell_policy::model::{
    Access, Compatibility, Endpoint, Enforcement, FilesystemOrigin, FilesystemPolicy, Identity, Method, Protocol,
    QueryMatcher, Tls,
};
use openshell_policy::{Diagnostic, MAX_POLICY_BYTES, Policy, load_bytes, load_file, load_str, parse};

// ---------------------------------------------------------------------------
// Table machinery
// ---------------------------------------------------------------------------

/// One expected diagnostic.
struct Exp {
    line: u32,
    column: u32,
    key: String,
    message: &'static str,
}

fn x(line: u32, column: u32, key: impl Into<String>, message: &'static str) -> Exp {
    Exp { line, column, key: key.into(), message }
}

enum Expect {
    Valid(fn(&Policy)),
    Invalid(Vec<Exp>),
}

struct Case {
    name: &'static str,
    yaml: String,
    expect: Expect,
}

fn ok(name: &'static str, yaml: impl Into<String>, check: fn(&Policy)) -> Case {
    Case { name, yaml: yaml.into(), expect: Expect::Valid(check) }
}

fn bad(name: &'static str, yaml: impl Into<String>, exps: Vec<Exp>) -> Case {
    Case { name, yaml: yaml.into(), expect: Expect::Invalid(exps) }
}

fn render(diags: &[Diagnostic]) -> String {
    let mut s = String::new();
    for d in diags {
        let _ = writeln!(s, "    {}:{} [{}] {}", d.line, d.column, d.key, d.message);
    }
    s
}

/// Compares diagnostics with expectations; `None` when they agree.
fn mismatch(diags: &[Diagnostic], exps: &[Exp]) -> Option<String> {
    let agree = diags.len() == exps.len()
        && diags
            .iter()
            .zip(exps)
            .all(|(d, e)| d.line == e.line && d.column == e.column && d.key == e.key && d.message.contains(e.message));
    if agree {
        return None;
    }
    let mut s = String::from("  expected:\n");
    for e in exps {
        let _ = writeln!(s, "    {}:{} [{}] ..{}..", e.line, e.column, e.key, e.message);
    }
    s.push_str("  got:\n");
    s.push_str(&render(diags));
    Some(s)
}

/// Runs every case and fails once, listing every case that failed.
fn run(table: &str, cases: Vec<Case>) -> usize {
    let mut failures = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name), "{table}: duplicate case name {:?}", case.name);
        // Loading must never panic, whatever the input.
        let result = std::panic::catch_unwind(|| parse(&case.yaml));
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                failures.push(format!("{}: the loader panicked", case.name));
                continue;
            }
        };
        match (&case.expect, result) {
            (Expect::Valid(check), Ok(policy)) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&policy))).is_err() {
                    failures.push(format!("{}: loaded, but the model check failed", case.name));
                }
            }
            (Expect::Valid(_), Err(diags)) => {
                failures.push(format!("{}: expected a valid policy, got:\n{}", case.name, render(&diags)));
            }
            (Expect::Invalid(_), Ok(_)) => {
                failures.push(format!("{}: expected errors, but the policy loaded", case.name));
            }
            (Expect::Invalid(exps), Err(diags)) => {
                if let Some(m) = mismatch(&diags, exps) {
                    failures.push(format!("{}:\n{m}", case.name));
                }
                // The same diagnostics must come through `load_str`, prefixed by the file name.
                match load_str("case.yaml", &case.yaml) {
                    Err(e) if e.diagnostics() == diags.as_slice() => {
                        let text = e.to_string();
                        if !text.lines().all(|l| l.starts_with("case.yaml:")) || text.lines().count() != diags.len() {
                            failures.push(format!("{}: load_str rendering is wrong:\n{text}", case.name));
                        }
                    }
                    _ => failures.push(format!("{}: load_str disagrees with parse", case.name)),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{table}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    cases.len()
}

// ---------------------------------------------------------------------------
// Builders: documents with a known layout, so that positions are predictable
// ---------------------------------------------------------------------------

/// Indents every line but the first by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .enumerate()
        .map(|(i, l)| if i == 0 { l.to_owned() } else { format!("{pad}{l}") })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Indents every line by `n` spaces.
fn block(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

/// A top-level section `name` whose body starts at line 3, column 3.
fn section(name: &str, body: &str) -> String {
    format!("version: 1\n{name}:\n  {}\n", indent(body, 2))
}

fn fs(body: &str) -> String {
    section("filesystem_policy", body)
}

/// A network policy `p` whose body starts at line 4, column 5.
fn np(body: &str) -> String {
    format!("version: 1\nnetwork_policies:\n  p:\n    {}\n", indent(body, 4))
}

/// One endpoint of policy `p` (binaries given) whose body starts at line 6, column 9.
fn ep(body: &str) -> String {
    format!(
        "version: 1\nnetwork_policies:\n  p:\n    binaries: [{{path: /usr/bin/curl}}]\n    endpoints:\n      - {}\n",
        indent(body, 8)
    )
}

/// An endpoint `host: ...` on port 443; the host value is at line 6, column 15.
fn host(h: &str) -> String {
    ep(&format!("host: '{h}'\nport: 443"))
}

/// A `protocol: rest` endpoint whose further fields start at line 9, column 9.
fn rest(body: &str) -> String {
    ep(&format!("host: api.example.com\nport: 443\nprotocol: rest\n{body}"))
}

/// One allow rule whose matcher body starts at line 11, column 15.
fn rule(body: &str) -> String {
    rest(&format!("rules:\n  - allow:\n{}", block(body, 6)))
}

/// `access: full` and one deny rule whose body starts at line 11, column 13.
fn deny(body: &str) -> String {
    rest(&format!("access: full\ndeny_rules:\n  - {}", indent(body, 4)))
}

/// An endpoint (host, port) with `allowed_ips: ["<ip>"]`; the entry is at line 8, column 23.
fn ips(ip: &str) -> String {
    ep(&format!("host: db.internal.example.com\nport: 5432\nallowed_ips: [\"{ip}\"]"))
}

const EP: &str = "network_policies.p.endpoints[0]";
const RULE: &str = "network_policies.p.endpoints[0].rules[0].allow";
const DENY: &str = "network_policies.p.endpoints[0].deny_rules[0]";

fn k(suffix: &str) -> String {
    format!("{EP}.{suffix}")
}
fn kr(suffix: &str) -> String {
    format!("{RULE}.{suffix}")
}
fn kd(suffix: &str) -> String {
    format!("{DENY}.{suffix}")
}

fn endpoint(p: &Policy) -> &Endpoint {
    &p.network_policies.0["p"].endpoints[0]
}

fn paths(n: usize, prefix: &str) -> String {
    (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------
// Document, version, unknown and unsupported fields, duplicates
// ---------------------------------------------------------------------------

#[test]
fn document_and_version() {
    run(
        "document_and_version",
        vec![
            ok("minimal policy gets every default", "version: 1\n", |p| {
                assert_eq!(p.version, 1);
                assert!(p.filesystem_policy.include_workdir);
                // No filesystem_policy: OpenShell's baseline for proxy-mode sandboxes.
                let fs = &p.filesystem_policy;
                assert_eq!(fs.origin, FilesystemOrigin::Baseline);
                assert_eq!(fs.read_only, ["/usr", "/lib", "/etc", "/app", "/var/log", "/proc", "/dev/urandom"]);
                assert_eq!(fs.read_write, ["/tmp"]);
                // Omitted: hard_requirement wherever the kernel has Landlock (ours).
                assert_eq!(p.landlock.compatibility, Compatibility::HardWhereSupported);
                assert_eq!(p.process.run_as_user, Identity::Sandbox);
                assert_eq!(p.process.run_as_group, Identity::Sandbox);
                assert_eq!(p.resources, Default::default());
                assert!(p.network_policies.is_empty());
            }),
            ok(
                "null sections are defaults",
                "version: 1\nfilesystem_policy:\nlandlock:\nprocess:\nresources:\nnetwork_policies:\n",
                |p| {
                    assert_eq!(p.filesystem_policy, FilesystemPolicy::baseline());
                    assert!(p.network_policies.is_empty());
                },
            ),
            ok("a written filesystem_policy is exactly as written", "version: 1\nfilesystem_policy: {}\n", |p| {
                let fs = &p.filesystem_policy;
                assert_eq!(fs.origin, FilesystemOrigin::Written);
                assert!(fs.include_workdir && fs.read_only.is_empty() && fs.read_write.is_empty(), "{fs:?}");
            }),
            ok(
                "a written filesystem_policy gets no baseline path",
                "version: 1\nfilesystem_policy:\n  read_only: [/opt]\n",
                |p| {
                    assert_eq!(p.filesystem_policy.read_only, ["/opt"]);
                    assert!(p.filesystem_policy.read_write.is_empty());
                },
            ),
            ok("leading comments and document marker", "# policy\n---\nversion: 1 # the only version\n", |p| {
                assert_eq!(p.version, 1)
            }),
            bad("empty text", "", vec![x(1, 1, "", "policy is empty")]),
            bad("only a comment", "# nothing here\n# at all\n", vec![x(1, 1, "", "policy is empty")]),
            bad("only a document marker", "---\n", vec![x(1, 1, "", "policy is empty")]),
            bad("document is a list", "- version: 1\n", vec![x(1, 1, "", "expected a mapping, found a list")]),
            bad("document is a scalar", "version 1\n", vec![x(1, 1, "", "expected a mapping, found a string")]),
            bad(
                "version missing",
                "filesystem_policy:\n  include_workdir: true\n",
                vec![x(1, 1, "version", "missing required field `version`")],
            ),
            bad(
                "version missing after comments",
                "# c\n\nlandlock: {}\n",
                vec![x(3, 1, "version", "missing required field `version`")],
            ),
            bad(
                "version 2",
                "version: 2\n",
                vec![x(1, 10, "version", "unsupported policy version 2; the only version is 1")],
            ),
            bad("version 0", "version: 0\n", vec![x(1, 10, "version", "unsupported policy version 0")]),
            bad("version negative", "version: -1\n", vec![x(1, 10, "version", "unsupported policy version -1")]),
            bad(
                "version quoted",
                "version: \"1\"\n",
                vec![x(1, 10, "version", "expected the integer 1, found a string")],
            ),
            bad("version float", "version: 1.0\n", vec![x(1, 10, "version", "expected the integer 1, found a float")]),
            bad(
                "version boolean",
                "version: true\n",
                vec![x(1, 10, "version", "expected the integer 1, found a boolean")],
            ),
            bad("version list", "version: [1]\n", vec![x(1, 10, "version", "expected the integer 1, found a list")]),
            bad(
                "version null",
                "version:\nlandlock: {}\n",
                vec![x(1, 8, "version", "expected the integer 1, found null")],
            ),
            bad(
                "version missing and another error",
                "process:\n  run_as_user: 0\n",
                vec![x(1, 1, "version", "missing required field"), x(2, 16, "process.run_as_user", "id 0 (root)")],
            ),
            bad(
                "non-string top-level key",
                "version: 1\n1: x\n",
                vec![x(2, 1, "", "keys must be strings, found an integer")],
            ),
        ],
    );
}

#[test]
fn unknown_fields_at_every_level() {
    let matcher = "method: GET\npath: /";
    run(
        "unknown_fields_at_every_level",
        vec![
            bad(
                "top-level typo also misses version",
                "versoin: 1\n",
                vec![
                    x(1, 1, "versoin", "unknown field `versoin`, expected one of: version, filesystem_policy"),
                    x(1, 1, "version", "missing required field `version`"),
                ],
            ),
            bad(
                "top-level",
                "version: 1\nnetwork_policy: {}\n",
                vec![x(2, 1, "network_policy", "unknown field `network_policy`")],
            ),
            bad(
                "filesystem_policy",
                fs("read_olny: [/usr]"),
                vec![x(
                    3,
                    3,
                    "filesystem_policy.read_olny",
                    "unknown field `read_olny`, expected one of: include_workdir, read_only, read_write",
                )],
            ),
            bad(
                "landlock",
                section("landlock", "mode: strict"),
                vec![x(3, 3, "landlock.mode", "unknown field `mode`, expected one of: compatibility")],
            ),
            bad(
                "process",
                section("process", "user: 1000"),
                vec![x(3, 3, "process.user", "unknown field `user`, expected one of: run_as_user, run_as_group")],
            ),
            bad(
                "resources",
                section("resources", "memory_limit: 1GiB"),
                vec![x(
                    3,
                    3,
                    "resources.memory_limit",
                    "unknown field `memory_limit`, expected one of: memory, pids, cpu, open_files",
                )],
            ),
            bad(
                "network policy",
                np("description: GitHub\nendpoints: [{host: github.com, port: 443}]\nbinaries: [{path: /usr/bin/git}]"),
                vec![x(
                    4,
                    5,
                    "network_policies.p.description",
                    "unknown field `description`, expected one of: name, endpoints, binaries",
                )],
            ),
            bad(
                "endpoint",
                ep("host: a.example.com\nport: 443\nhosts: [b.example.com]"),
                vec![x(8, 9, k("hosts"), "unknown field `hosts`, expected one of: host, port, ports")],
            ),
            bad(
                "binary",
                np("endpoints: [{host: github.com, port: 443}]\nbinaries:\n  - path: /usr/bin/git\n    sha256: abc"),
                vec![x(7, 9, "network_policies.p.binaries[0].sha256", "unknown field `sha256`, expected one of: path")],
            ),
            bad(
                "rule",
                rest("rules:\n  - allow: {method: GET, path: /}\n    deny: {method: GET, path: /}"),
                vec![x(11, 13, k("rules[0].deny"), "unknown field `deny`, expected one of: allow")],
            ),
            bad(
                "rule without allow",
                rest("rules:\n  - deny: {method: GET, path: /}"),
                vec![
                    x(10, 13, k("rules[0].deny"), "unknown field `deny`"),
                    x(10, 13, k("rules[0].allow"), "missing required field `allow`"),
                ],
            ),
            bad(
                "allow matcher",
                rule("method: GET\npath: /\nmethods: [GET]"),
                vec![x(13, 15, kr("methods"), "unknown field `methods`, expected one of: method, path, query")],
            ),
            bad(
                "deny matcher",
                deny("method: GET\npath: /\nbody: x"),
                vec![x(13, 13, kd("body"), "unknown field `body`, expected one of: method, path, query")],
            ),
            bad(
                "query any",
                rule(&format!("{matcher}\nquery:\n  q: {{all: [a]}}")),
                vec![
                    x(14, 20, kr("query.q.any"), "missing required field `any`"),
                    x(14, 21, kr("query.q.all"), "unknown field `all`, expected one of: any"),
                ],
            ),
            bad(
                "query any with extra field",
                rule(&format!("{matcher}\nquery:\n  q: {{any: [a], none: [b]}}")),
                vec![x(14, 31, kr("query.q.none"), "unknown field `none`, expected one of: any")],
            ),
            bad(
                "several unknown fields, all reported",
                "version: 1\nextra: 1\nprocess:\n  uid: 5\n  gid: 5\n",
                vec![
                    x(2, 1, "extra", "unknown field"),
                    x(4, 3, "process.uid", "unknown field"),
                    x(5, 3, "process.gid", "unknown field"),
                ],
            ),
        ],
    );
}

#[test]
fn openshell_fields_not_supported_yet() {
    let base = "host: api.example.com\nport: 443";
    let msg = "is an OpenShell field that openshell does not support yet";
    run(
        "openshell_fields_not_supported_yet",
        vec![
            bad(
                "network_middlewares",
                "version: 1\nnetwork_middlewares: []\n",
                vec![x(2, 1, "network_middlewares", msg)],
            ),
            bad(
                "endpoint path without mcp or json-rpc",
                ep(&format!("{base}\npath: /v1")),
                vec![x(
                    8,
                    9,
                    k("path"),
                    "`path` on an endpoint is supported with `protocol: mcp` or `protocol: json-rpc`",
                )],
            ),
            bad(
                "endpoint mcp without protocol mcp",
                ep(&format!("{base}\nmcp: {{}}")),
                vec![x(8, 9, k("mcp"), "`mcp` can never take effect without `protocol: mcp`")],
            ),
            bad(
                "endpoint credential_binding",
                ep(&format!("{base}\ncredential_binding: gh")),
                vec![x(8, 9, k("credential_binding"), msg)],
            ),
            bad(
                "endpoint json_rpc without protocol json-rpc",
                ep(&format!("{base}\njson_rpc: {{}}")),
                vec![x(8, 9, k("json_rpc"), "`json_rpc` can never take effect without `protocol: json-rpc`")],
            ),
            bad(
                "endpoint allow_encoded_slash",
                ep(&format!("{base}\nallow_encoded_slash: true")),
                vec![x(8, 9, k("allow_encoded_slash"), msg)],
            ),
            bad(
                "endpoint signing_service",
                ep(&format!("{base}\nsigning_service: s3")),
                vec![x(8, 9, k("signing_service"), msg)],
            ),
            bad(
                "matcher operation_type",
                rule("method: POST\npath: /graphql\noperation_type: query"),
                vec![x(13, 15, kr("operation_type"), msg)],
            ),
            bad(
                "matcher tool on a rest rule",
                rule("method: POST\npath: /mcp\ntool: search"),
                vec![x(
                    13,
                    15,
                    kr("tool"),
                    "`tool` has no effect here: it belongs in the rules of a `protocol: mcp` endpoint",
                )],
            ),
            bad(
                "unsupported and unknown together",
                ep(&format!("{base}\ncredential_binding: gh\nmcpp: {{}}")),
                vec![x(8, 9, k("credential_binding"), msg), x(9, 9, k("mcpp"), "unknown field `mcpp`")],
            ),
        ],
    );
}

#[test]
fn duplicate_keys_are_all_reported() {
    run(
        "duplicate_keys_are_all_reported",
        vec![
            bad(
                "top-level, three times",
                "version: 1\nversion: 1\nversion: 2\n",
                vec![
                    x(2, 1, "version", "duplicate key `version` (first defined at 1:1)"),
                    x(3, 1, "version", "duplicate key `version` (first defined at 1:1)"),
                ],
            ),
            bad(
                "filesystem_policy",
                fs("read_only: [/a]\nread_only: [/b]"),
                vec![x(4, 3, "filesystem_policy.read_only", "duplicate key `read_only` (first defined at 3:3)")],
            ),
            bad(
                "network policy key",
                "version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.example.com, port: 443}]\n    binaries: [{path: /x}]\n  p:\n    endpoints: [{host: b.example.com, port: 443}]\n    binaries: [{path: /y}]\n",
                vec![x(6, 3, "network_policies.p", "duplicate key `p` (first defined at 3:3)")],
            ),
            bad(
                "endpoint host and port",
                ep("host: a.example.com\nport: 443\nhost: b.example.com\nport: 80"),
                vec![
                    x(8, 9, k("host"), "duplicate key `host` (first defined at 6:9)"),
                    x(9, 9, k("port"), "duplicate key `port` (first defined at 7:9)"),
                ],
            ),
            bad(
                "allow matcher",
                rule("method: GET\npath: /a\nmethod: POST"),
                vec![x(13, 15, kr("method"), "duplicate key `method` (first defined at 11:15)")],
            ),
            bad(
                "query parameter",
                rule("method: GET\npath: /\nquery:\n  a: x\n  a: y"),
                vec![x(15, 17, kr("query.a"), "duplicate key `a` (first defined at 14:17)")],
            ),
            bad(
                "flow mapping",
                "version: 1\nprocess: {run_as_user: 1000, run_as_user: 1001, run_as_user: 1002}\n",
                vec![
                    x(2, 30, "process.run_as_user", "duplicate key `run_as_user` (first defined at 2:11)"),
                    x(2, 49, "process.run_as_user", "duplicate key `run_as_user` (first defined at 2:11)"),
                ],
            ),
            bad(
                "at several levels in one file",
                "version: 1\nversion: 1\nprocess:\n  run_as_user: 1000\n  run_as_user: 1001\nlandlock:\n  compatibility: best_effort\n  compatibility: hard_requirement\n",
                vec![
                    x(2, 1, "version", "duplicate key `version`"),
                    x(5, 3, "process.run_as_user", "duplicate key `run_as_user` (first defined at 4:3)"),
                    x(8, 3, "landlock.compatibility", "duplicate key `compatibility` (first defined at 7:3)"),
                ],
            ),
            bad(
                "duplicate next to an invalid value",
                section("process", "run_as_user: 0\nrun_as_user: 1000"),
                vec![x(3, 16, "process.run_as_user", "id 0 (root)"), x(4, 3, "process.run_as_user", "duplicate key")],
            ),
        ],
    );
}

#[test]
fn wrong_types() {
    run(
        "wrong_types",
        vec![
            bad(
                "include_workdir string",
                fs("include_workdir: \"true\""),
                vec![x(
                    3,
                    20,
                    "filesystem_policy.include_workdir",
                    "expected a boolean (true or false), found a string",
                )],
            ),
            bad(
                "include_workdir yes is not YAML 1.2 boolean",
                fs("include_workdir: yes"),
                vec![x(3, 20, "filesystem_policy.include_workdir", "found a string")],
            ),
            bad(
                "include_workdir integer",
                fs("include_workdir: 1"),
                vec![x(3, 20, "filesystem_policy.include_workdir", "found an integer")],
            ),
            ok("include_workdir True", fs("include_workdir: False"), |p| assert!(!p.filesystem_policy.include_workdir)),
            bad(
                "read_only string",
                fs("read_only: /usr"),
                vec![x(3, 14, "filesystem_policy.read_only", "expected a list, found a string")],
            ),
            bad(
                "read_only item integer",
                fs("read_only: [1]"),
                vec![x(3, 15, "filesystem_policy.read_only[0]", "expected a string, found an integer")],
            ),
            bad(
                "filesystem_policy list",
                "version: 1\nfilesystem_policy: []\n",
                vec![x(2, 20, "filesystem_policy", "expected a mapping, found a list")],
            ),
            bad(
                "landlock string",
                "version: 1\nlandlock: best_effort\n",
                vec![x(2, 11, "landlock", "expected a mapping, found a string")],
            ),
            bad(
                "compatibility integer",
                section("landlock", "compatibility: 1"),
                vec![x(3, 18, "landlock.compatibility", "expected a string, found an integer")],
            ),
            bad(
                "compatibility null",
                section("landlock", "compatibility:"),
                vec![x(3, 16, "landlock.compatibility", "expected a string, found null")],
            ),
            bad(
                "process list",
                "version: 1\nprocess: [sandbox]\n",
                vec![x(2, 10, "process", "expected a mapping, found a list")],
            ),
            bad(
                "run_as_user list",
                section("process", "run_as_user: [1]"),
                vec![x(3, 16, "process.run_as_user", "expected `sandbox` or a numeric id, found a list")],
            ),
            bad(
                "resources list",
                "version: 1\nresources: [1]\n",
                vec![x(2, 12, "resources", "expected a mapping, found a list")],
            ),
            bad(
                "network_policies list",
                "version: 1\nnetwork_policies: []\n",
                vec![x(2, 19, "network_policies", "expected a mapping, found a list")],
            ),
            bad(
                "network policy null",
                "version: 1\nnetwork_policies:\n  p:\n",
                vec![x(3, 4, "network_policies.p", "expected a mapping, found null")],
            ),
            bad(
                "policy name integer",
                np("name: 5\nendpoints: [{host: a.example.com, port: 443}]\nbinaries: [{path: /x}]"),
                vec![x(4, 11, "network_policies.p.name", "expected a string, found an integer")],
            ),
            bad(
                "endpoints string, reported once",
                np("endpoints: api.example.com\nbinaries: [{path: /x}]"),
                vec![x(4, 16, "network_policies.p.endpoints", "expected a list, found a string")],
            ),
            bad(
                "binaries string, reported once",
                np("endpoints: [{host: a.example.com, port: 443}]\nbinaries: /usr/bin/curl"),
                vec![x(5, 15, "network_policies.p.binaries", "expected a list, found a string")],
            ),
            bad(
                "endpoint given as host:port string",
                np("endpoints: [\"api.github.com:443\"]\nbinaries: [{path: /x}]"),
                vec![x(4, 17, "network_policies.p.endpoints[0]", "expected a mapping, found a string")],
            ),
            bad(
                "binary given as a string",
                np("endpoints: [{host: a.example.com, port: 443}]\nbinaries: [/usr/bin/curl]"),
                vec![x(5, 16, "network_policies.p.binaries[0]", "expected a mapping, found a string")],
            ),
            bad(
                "binary path integer",
                np("endpoints: [{host: a.example.com, port: 443}]\nbinaries: [{path: 5}]"),
                vec![x(5, 23, "network_policies.p.binaries[0].path", "expected a string, found an integer")],
            ),
            bad(
                "host list",
                ep("host: [a.example.com]\nport: 443"),
                vec![x(6, 15, k("host"), "expected a string, found a list")],
            ),
            bad(
                "host integer",
                ep("host: 443\nport: 443"),
                vec![x(6, 15, k("host"), "expected a string, found an integer")],
            ),
            bad(
                "port quoted",
                ep("host: a.example.com\nport: \"443\""),
                vec![x(7, 15, k("port"), "expected an integer, found a string")],
            ),
            bad(
                "port float",
                ep("host: a.example.com\nport: 443.0"),
                vec![x(7, 15, k("port"), "expected an integer, found a float")],
            ),
            bad(
                "port name",
                ep("host: a.example.com\nport: https"),
                vec![x(7, 15, k("port"), "expected an integer, found a string")],
            ),
            bad(
                "ports scalar",
                ep("host: a.example.com\nports: 443"),
                vec![x(7, 16, k("ports"), "expected a list, found an integer")],
            ),
            bad(
                "ports item quoted",
                ep("host: a.example.com\nports: [\"443\"]"),
                vec![x(7, 17, k("ports[0]"), "expected an integer, found a string")],
            ),
            bad(
                "protocol integer",
                ep("host: a.example.com\nport: 443\nprotocol: 1"),
                vec![x(8, 19, k("protocol"), "expected a string, found an integer")],
            ),
            bad(
                "enforcement boolean",
                ep("host: a.example.com\nport: 443\nenforcement: true"),
                vec![x(8, 22, k("enforcement"), "expected a string, found a boolean")],
            ),
            bad(
                "tls boolean",
                ep("host: a.example.com\nport: 443\ntls: true"),
                vec![x(8, 14, k("tls"), "expected a string, found a boolean")],
            ),
            bad(
                "access list",
                rest("access: [read-only]"),
                vec![x(9, 17, k("access"), "expected a string, found a list")],
            ),
            bad(
                "rules mapping",
                rest("rules: {allow: {method: GET, path: /}}"),
                vec![x(9, 16, k("rules"), "expected a list, found a mapping")],
            ),
            bad(
                "deny_rules string",
                rest("access: full\ndeny_rules: GET /admin"),
                vec![x(10, 21, k("deny_rules"), "expected a list, found a string")],
            ),
            bad(
                "allowed_ips string",
                ep("host: a.example.com\nport: 443\nallowed_ips: 10.0.0.0/8"),
                vec![x(8, 22, k("allowed_ips"), "expected a list, found a string")],
            ),
            bad(
                "allowed_ips item integer",
                ep("host: a.example.com\nport: 443\nallowed_ips: [10]"),
                vec![x(8, 23, k("allowed_ips[0]"), "expected a string, found an integer")],
            ),
            bad(
                "method integer",
                rule("method: 1\npath: /"),
                vec![x(11, 23, kr("method"), "expected a string, found an integer")],
            ),
            bad(
                "path list",
                rule("method: GET\npath: [/a]"),
                vec![x(12, 21, kr("path"), "expected a string, found a list")],
            ),
            bad(
                "query list",
                rule("method: GET\npath: /\nquery: [a]"),
                vec![x(13, 22, kr("query"), "expected a mapping, found a list")],
            ),
            bad(
                "rule is a string",
                rest("rules: [GET /]"),
                vec![x(9, 17, k("rules[0]"), "expected a mapping, found a string")],
            ),
            bad(
                "allow is a string",
                rest("rules:\n  - allow: GET /"),
                vec![x(10, 20, k("rules[0].allow"), "expected a mapping, found a string")],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// Static sections
// ---------------------------------------------------------------------------

#[test]
fn filesystem_paths() {
    let long_ok = format!("read_only: [\"/{}\"]", "a".repeat(4095));
    let long_bad = format!("read_only: [\"/{}\"]", "a".repeat(4096));
    let max_paths = format!("read_only: [{}]\nread_write: [{}]", paths(200, "/ro"), paths(56, "/rw"));
    let too_many = format!("read_only: [{}]", paths(257, "/p"));
    let too_many_split = format!("read_only: [{}]\nread_write: [{}]", paths(200, "/ro"), paths(57, "/rw"));
    run(
        "filesystem_paths",
        vec![
            ok(
                "normalization of //, /./ and trailing /",
                fs("read_only: [\"//usr//lib/\", /./etc/., /opt/]\nread_write: [/tmp/, /var/./log]"),
                |p| {
                    assert_eq!(p.filesystem_policy.read_only, ["/usr/lib", "/etc", "/opt"]);
                    assert_eq!(p.filesystem_policy.read_write, ["/tmp", "/var/log"]);
                },
            ),
            ok("include_workdir defaults to true", fs("read_only: [/usr]"), |p| {
                assert!(p.filesystem_policy.include_workdir)
            }),
            ok("include_workdir false", fs("include_workdir: false"), |p| {
                assert!(!p.filesystem_policy.include_workdir)
            }),
            ok("same path twice is kept once", fs("read_only: [/a, /a/, //a, /b]"), |p| {
                assert_eq!(p.filesystem_policy.read_only, ["/a", "/b"])
            }),
            ok("read-only / is fine", fs("read_only: [/]"), |p| assert_eq!(p.filesystem_policy.read_only, ["/"])),
            ok("dots inside names are not ..", fs("read_only: [/a/..., /a/..b, /a/b..]"), |p| {
                assert_eq!(p.filesystem_policy.read_only.len(), 3)
            }),
            ok("read_only null", fs("read_only:\nread_write: [/tmp]"), |p| {
                assert!(p.filesystem_policy.read_only.is_empty())
            }),
            ok("path of exactly 4096 bytes", fs(&long_ok), |p| {
                assert_eq!(p.filesystem_policy.read_only[0].len(), 4096)
            }),
            ok("exactly 256 paths", fs(&max_paths), |p| {
                assert_eq!(p.filesystem_policy.read_only.len() + p.filesystem_policy.read_write.len(), 256)
            }),
            bad(
                "relative path",
                fs("read_only: [usr/lib]"),
                vec![x(3, 15, "filesystem_policy.read_only[0]", "path `usr/lib` must be absolute")],
            ),
            bad(
                "home-relative path",
                fs("read_write: [\"~/work\"]"),
                vec![x(3, 16, "filesystem_policy.read_write[0]", "must be absolute")],
            ),
            bad(
                "empty path",
                fs("read_only: [\"\"]"),
                vec![x(3, 15, "filesystem_policy.read_only[0]", "must be absolute")],
            ),
            bad(
                "dot-dot in the middle",
                fs("read_only:\n  - /a/../etc"),
                vec![x(4, 7, "filesystem_policy.read_only[0]", "path `/a/../etc` must not contain `..`")],
            ),
            bad(
                "dot-dot at the end",
                fs("read_write: [/tmp/..]"),
                vec![x(3, 16, "filesystem_policy.read_write[0]", "must not contain `..`")],
            ),
            bad(
                "dot-dot alone",
                fs("read_only: [/..]"),
                vec![x(3, 15, "filesystem_policy.read_only[0]", "must not contain `..`")],
            ),
            bad(
                "NUL byte",
                fs("read_only: [\"/a\\0b\"]"),
                vec![x(3, 15, "filesystem_policy.read_only[0]", "contains a NUL byte")],
            ),
            bad(
                "path longer than 4096 bytes",
                fs(&long_bad),
                vec![x(3, 15, "filesystem_policy.read_only[0]", "is longer than 4096 bytes")],
            ),
            bad(
                "257 read-only paths",
                fs(&too_many),
                vec![x(2, 1, "filesystem_policy", "257 paths listed; at most 256 are allowed")],
            ),
            bad(
                "257 paths across both lists",
                fs(&too_many_split),
                vec![x(2, 1, "filesystem_policy", "257 paths listed")],
            ),
            bad(
                "read-write /",
                fs("read_write: [/]"),
                vec![x(3, 16, "filesystem_policy.read_write[0]", "read-write `/` is overly broad")],
            ),
            bad(
                "read-write // normalizes to /",
                fs("read_write: [/tmp, //]"),
                vec![x(3, 22, "filesystem_policy.read_write[1]", "overly broad")],
            ),
            bad(
                "read-write /./ normalizes to /",
                fs("read_write:\n  - /./"),
                vec![x(4, 7, "filesystem_policy.read_write[0]", "overly broad")],
            ),
            bad(
                "same path read-only and read-write",
                fs("read_only: [/data]\nread_write: [/data/]"),
                vec![x(
                    4,
                    16,
                    "filesystem_policy.read_write[0]",
                    "`/data` is listed as both read-only (at 3:15) and read-write",
                )],
            ),
            bad(
                "every path error of the section",
                fs("read_only: [rel, /a/../b, /ok]\nread_write: [/, /ok, tmp]"),
                vec![
                    x(3, 15, "filesystem_policy.read_only[0]", "must be absolute"),
                    x(3, 20, "filesystem_policy.read_only[1]", "must not contain `..`"),
                    x(4, 16, "filesystem_policy.read_write[0]", "overly broad"),
                    x(4, 19, "filesystem_policy.read_write[1]", "`/ok` is listed as both read-only (at 3:29)"),
                    x(4, 24, "filesystem_policy.read_write[2]", "must be absolute"),
                ],
            ),
        ],
    );
}

#[test]
fn landlock_compatibility() {
    let ll = |v: &str| section("landlock", &format!("compatibility: {v}"));
    run(
        "landlock_compatibility",
        vec![
            ok("best_effort", ll("best_effort"), |p| assert_eq!(p.landlock.compatibility, Compatibility::BestEffort)),
            ok("hard_requirement", ll("hard_requirement"), |p| {
                assert_eq!(p.landlock.compatibility, Compatibility::HardRequirement)
            }),
            ok("empty landlock section", "version: 1\nlandlock: {}\n", |p| {
                assert_eq!(p.landlock.compatibility, Compatibility::HardWhereSupported)
            }),
            bad(
                "strict",
                ll("strict"),
                vec![x(
                    3,
                    18,
                    "landlock.compatibility",
                    "unknown value `strict`, expected `best_effort` or `hard_requirement`",
                )],
            ),
            bad("camel case", ll("BestEffort"), vec![x(3, 18, "landlock.compatibility", "unknown value `BestEffort`")]),
            bad(
                "dash instead of underscore",
                ll("hard-requirement"),
                vec![x(3, 18, "landlock.compatibility", "unknown value `hard-requirement`")],
            ),
        ],
    );
}

#[test]
fn process_identities() {
    let user = |v: &str| section("process", &format!("run_as_user: {v}"));
    let group = |v: &str| section("process", &format!("run_as_group: {v}"));
    const RANGE: &str = "id 4294967295 is out of range; expected 1 to 4294967294";
    run(
        "process_identities",
        vec![
            ok("sandbox", user("sandbox"), |p| assert_eq!(p.process.run_as_user, Identity::Sandbox)),
            ok("quoted numeric id", user("\"1500\""), |p| assert_eq!(p.process.run_as_user, Identity::Id(1500))),
            ok("numeric id", user("1500"), |p| assert_eq!(p.process.run_as_user, Identity::Id(1500))),
            ok("id 1", user("1"), |p| assert_eq!(p.process.run_as_user, Identity::Id(1))),
            ok("largest id", user("4294967294"), |p| assert_eq!(p.process.run_as_user, Identity::Id(4_294_967_294))),
            ok("group id and sandbox user", section("process", "run_as_user: sandbox\nrun_as_group: 1500"), |p| {
                assert_eq!(p.process.run_as_user, Identity::Sandbox);
                assert_eq!(p.process.run_as_group, Identity::Id(1500));
            }),
            bad("user 0", user("0"), vec![x(3, 16, "process.run_as_user", "id 0 (root) is not allowed")]),
            bad("user \"0\"", user("\"0\""), vec![x(3, 16, "process.run_as_user", "id 0 (root) is not allowed")]),
            bad("user root", user("root"), vec![x(3, 16, "process.run_as_user", "running as root is not allowed")]),
            bad("user u32::MAX", user("4294967295"), vec![x(3, 16, "process.run_as_user", RANGE)]),
            bad("user quoted u32::MAX", user("\"4294967295\""), vec![x(3, 16, "process.run_as_user", RANGE)]),
            bad(
                "user beyond u32",
                user("99999999999"),
                vec![x(3, 16, "process.run_as_user", "id 99999999999 is out of range")],
            ),
            bad("user negative", user("-1"), vec![x(3, 16, "process.run_as_user", "id -1 is out of range")]),
            bad(
                "user quoted negative",
                user("\"-1\""),
                vec![x(3, 16, "process.run_as_user", "`-1` is not `sandbox` or a numeric id")],
            ),
            bad(
                "user name",
                user("nobody"),
                vec![x(3, 16, "process.run_as_user", "`nobody` is not `sandbox` or a numeric id")],
            ),
            bad(
                "user Sandbox capitalized",
                user("Sandbox"),
                vec![x(3, 16, "process.run_as_user", "`Sandbox` is not `sandbox`")],
            ),
            bad(
                "user float",
                user("1500.0"),
                vec![x(3, 16, "process.run_as_user", "expected `sandbox` or a numeric id, found a float")],
            ),
            bad("user boolean", user("true"), vec![x(3, 16, "process.run_as_user", "found a boolean")]),
            bad("group 0", group("0"), vec![x(3, 17, "process.run_as_group", "id 0 (root)")]),
            bad("group root", group("root"), vec![x(3, 17, "process.run_as_group", "running as root")]),
            bad("group u32::MAX", group("4294967295"), vec![x(3, 17, "process.run_as_group", RANGE)]),
            bad(
                "group name",
                group("wheel"),
                vec![x(3, 17, "process.run_as_group", "`wheel` is not `sandbox` or a numeric id")],
            ),
            bad(
                "both wrong",
                section("process", "run_as_user: root\nrun_as_group: 0"),
                vec![x(3, 16, "process.run_as_user", "root"), x(4, 17, "process.run_as_group", "id 0")],
            ),
        ],
    );
}

#[test]
fn resource_limits() {
    let res = |body: &str| section("resources", body);
    run(
        "resource_limits",
        vec![
            ok("memory MiB", res("memory: 512MiB"), |p| assert_eq!(p.resources.memory, Some(512 << 20))),
            ok("memory GiB", res("memory: 4GiB"), |p| assert_eq!(p.resources.memory, Some(4 << 30))),
            ok("memory G", res("memory: 1G"), |p| assert_eq!(p.resources.memory, Some(1 << 30))),
            ok("memory MB is decimal", res("memory: 100MB"), |p| assert_eq!(p.resources.memory, Some(100_000_000))),
            ok("memory with a space", res("memory: 512 MiB"), |p| assert_eq!(p.resources.memory, Some(512 << 20))),
            ok("memory TiB", res("memory: 1TiB"), |p| assert_eq!(p.resources.memory, Some(1 << 40))),
            ok("memory minimum in bytes", res("memory: 16777216"), |p| assert_eq!(p.resources.memory, Some(16 << 20))),
            ok("memory minimum with unit", res("memory: 16MiB"), |p| assert_eq!(p.resources.memory, Some(16 << 20))),
            bad(
                "memory below minimum",
                res("memory: 15MiB"),
                vec![x(3, 11, "resources.memory", "15728640 bytes is below the minimum of 16 MiB")],
            ),
            bad(
                "memory tiny number",
                res("memory: 1024"),
                vec![x(3, 11, "resources.memory", "1024 bytes is below the minimum")],
            ),
            bad("memory zero", res("memory: 0"), vec![x(3, 11, "resources.memory", "0 bytes is below the minimum")]),
            bad("memory unknown unit", res("memory: 4 gigs"), vec![x(3, 11, "resources.memory", "not a size")]),
            bad("memory fractional", res("memory: 1.5GiB"), vec![x(3, 11, "resources.memory", "not a size")]),
            bad("memory word", res("memory: lots"), vec![x(3, 11, "resources.memory", "not a size")]),
            bad("memory negative", res("memory: -1"), vec![x(3, 11, "resources.memory", "not a size")]),
            bad(
                "memory float",
                res("memory: 1.5"),
                vec![x(
                    3,
                    11,
                    "resources.memory",
                    "expected a size such as `512MiB`, `4GiB` or a number of bytes, found a float",
                )],
            ),
            ok("pids minimum", res("pids: 8"), |p| assert_eq!(p.resources.pids, Some(8))),
            ok("pids maximum", res("pids: 4194304"), |p| assert_eq!(p.resources.pids, Some(4_194_304))),
            bad(
                "pids too few",
                res("pids: 7"),
                vec![x(3, 9, "resources.pids", "7 is out of range; expected 8 to 4194304")],
            ),
            bad("pids too many", res("pids: 4194305"), vec![x(3, 9, "resources.pids", "4194305 is out of range")]),
            bad(
                "pids quoted",
                res("pids: \"100\""),
                vec![x(3, 9, "resources.pids", "expected an integer, found a string")],
            ),
            ok("cpu whole cores", res("cpu: 2"), |p| assert_eq!(p.resources.cpu_millis, Some(2000))),
            ok("cpu half a core", res("cpu: 0.5"), |p| assert_eq!(p.resources.cpu_millis, Some(500))),
            ok("cpu fraction", res("cpu: 1.25"), |p| assert_eq!(p.resources.cpu_millis, Some(1250))),
            ok("cpu minimum", res("cpu: 0.01"), |p| assert_eq!(p.resources.cpu_millis, Some(10))),
            ok("cpu maximum", res("cpu: 1024"), |p| assert_eq!(p.resources.cpu_millis, Some(1_024_000))),
            bad(
                "cpu zero",
                res("cpu: 0"),
                vec![x(3, 8, "resources.cpu", "0 cores is out of range; expected 0.01 to 1024")],
            ),
            bad("cpu too small", res("cpu: 0.001"), vec![x(3, 8, "resources.cpu", "0.001 cores is out of range")]),
            bad("cpu too large", res("cpu: 1025"), vec![x(3, 8, "resources.cpu", "1025 cores is out of range")]),
            bad("cpu negative", res("cpu: -0.5"), vec![x(3, 8, "resources.cpu", "-0.5 cores is out of range")]),
            bad("cpu NaN", res("cpu: .nan"), vec![x(3, 8, "", "invalid YAML: value `.nan` is not a finite number")]),
            bad(
                "cpu infinite",
                res("cpu: .inf"),
                vec![x(3, 8, "", "invalid YAML: value `.inf` is not a finite number")],
            ),
            bad(
                "cpu quoted",
                res("cpu: \"2\""),
                vec![x(3, 8, "resources.cpu", "expected a number of cores such as 2 or 0.5, found a string")],
            ),
            ok("open_files minimum", res("open_files: 64"), |p| assert_eq!(p.resources.open_files, Some(64))),
            ok("open_files maximum", res("open_files: 1048576"), |p| {
                assert_eq!(p.resources.open_files, Some(1_048_576))
            }),
            bad(
                "open_files too few",
                res("open_files: 63"),
                vec![x(3, 15, "resources.open_files", "63 is out of range; expected 64 to 1048576")],
            ),
            bad(
                "open_files too many",
                res("open_files: 1048577"),
                vec![x(3, 15, "resources.open_files", "1048577 is out of range")],
            ),
            bad(
                "open_files boolean",
                res("open_files: true"),
                vec![x(3, 15, "resources.open_files", "expected an integer, found a boolean")],
            ),
            ok("all four", res("memory: 2GiB\npids: 512\ncpu: 1.5\nopen_files: 4096"), |p| {
                assert_eq!(p.resources.memory, Some(2 << 30));
                assert_eq!(p.resources.pids, Some(512));
                assert_eq!(p.resources.cpu_millis, Some(1500));
                assert_eq!(p.resources.open_files, Some(4096));
            }),
            bad(
                "all four wrong",
                res("memory: 1MiB\npids: 1\ncpu: 0\nopen_files: 1"),
                vec![
                    x(3, 11, "resources.memory", "below the minimum"),
                    x(4, 9, "resources.pids", "out of range"),
                    x(5, 8, "resources.cpu", "out of range"),
                    x(6, 15, "resources.open_files", "out of range"),
                ],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// network_policies
// ---------------------------------------------------------------------------

#[test]
fn hosts() {
    let hk = || k("host");
    run(
        "hosts",
        vec![
            ok("exact", host("api.github.com"), |p| {
                let h = &endpoint(p).host;
                assert!(!h.is_wildcard());
                assert!(h.matches("api.github.com") && h.matches("API.GitHub.com") && h.matches("api.github.com."));
                assert!(!h.matches("github.com") && !h.matches("x.api.github.com"));
            }),
            ok("exact, mixed case", host("API.GitHub.COM"), |p| assert!(endpoint(p).host.matches("api.github.com"))),
            ok("exact, trailing dot", host("example.com."), |p| assert!(endpoint(p).host.matches("example.com"))),
            ok("one-label wildcard", host("*.example.com"), |p| {
                let h = &endpoint(p).host;
                assert!(h.is_wildcard());
                assert!(h.matches("a.example.com") && h.matches("A.Example.com"));
                assert!(!h.matches("example.com") && !h.matches("a.b.example.com"));
            }),
            ok("many-label wildcard", host("**.example.com"), |p| {
                let h = &endpoint(p).host;
                assert!(h.matches("a.example.com") && h.matches("a.b.c.example.com"));
                assert!(!h.matches("example.com") && !h.matches("example.org"));
            }),
            ok("wildcard inside first label", host("*-api.example.com"), |p| {
                let h = &endpoint(p).host;
                assert!(h.matches("eu-api.example.com") && !h.matches("eu.example.com"));
            }),
            ok("middle wildcard label", host("api.*.example.com"), |p| {
                let h = &endpoint(p).host;
                assert!(
                    h.matches("api.eu.example.com")
                        && !h.matches("api.example.com")
                        && !h.matches("api.a.b.example.com")
                );
            }),
            ok("underscore and punycode", host("xn--bcher-kva.under_score.example"), |p| {
                assert!(endpoint(p).host.matches("XN--BCHER-KVA.under_score.example"))
            }),
            ok("single label", host("localhost"), |p| assert!(endpoint(p).host.matches("localhost"))),
            ok("IPv4 literal", host("203.0.113.7"), |p| assert!(endpoint(p).host.matches("203.0.113.7"))),
            ok("IPv6 literal", host("2001:db8::1"), |p| assert!(endpoint(p).host.matches("2001:DB8:0:0:0:0:0:1"))),
            ok("bracketed IPv6 literal", host("[2001:db8::1]"), |p| assert!(endpoint(p).host.matches("[2001:db8::1]"))),
            bad("bare *", host("*"), vec![x(6, 15, hk(), "invalid host `*`: a bare `*` would match every host")]),
            bad("bare **", host("**"), vec![x(6, 15, hk(), "a bare `**` would match every host")]),
            bad("bare * with trailing dot", host("*."), vec![x(6, 15, hk(), "a bare `*`")]),
            bad("TLD wildcard", host("*.com"), vec![x(6, 15, hk(), "wildcards may not cover the last two labels")]),
            bad(
                "TLD many-label wildcard",
                host("**.com"),
                vec![x(6, 15, hk(), "would match a whole top-level domain")],
            ),
            bad("wildcard TLD", host("example.*"), vec![x(6, 15, hk(), "wildcards may not cover the last two labels")]),
            bad(
                "wildcard second-level",
                host("api.*.com"),
                vec![x(6, 15, hk(), "wildcards may not cover the last two labels")],
            ),
            bad(
                "** in the middle",
                host("a.**.example.com"),
                vec![x(6, 15, hk(), "`**` is only allowed as the whole first label")],
            ),
            bad(
                "** glued to text",
                host("**foo.example.com"),
                vec![x(6, 15, hk(), "`**` is only allowed as the whole first label")],
            ),
            bad(
                "partial wildcard in later label",
                host("a.b*.example.com"),
                vec![x(6, 15, hk(), "a wildcard is only allowed inside the first label or as a whole later label")],
            ),
            bad(
                "port in host",
                host("api.example.com:443"),
                vec![x(6, 15, hk(), "host must not include a port or scheme")],
            ),
            bad(
                "scheme in host",
                host("https://api.example.com"),
                vec![x(6, 15, hk(), "must not include a port or scheme")],
            ),
            bad("path in host", host("api.example.com/v1"), vec![x(6, 15, hk(), "must not include a port or scheme")]),
            bad(
                "bracketed IPv6 with port",
                host("[2001:db8::1]:443"),
                vec![x(6, 15, hk(), "must not include a port or scheme")],
            ),
            bad("empty", host(""), vec![x(6, 15, hk(), "host is empty")]),
            bad("only a dot", host("."), vec![x(6, 15, hk(), "host is empty")]),
            bad("two dots", host("a..example.com"), vec![x(6, 15, hk(), "empty label")]),
            bad("leading dot", host(".example.com"), vec![x(6, 15, hk(), "empty label")]),
            bad("space", host("exa mple.com"), vec![x(6, 15, hk(), "invalid character ' ' in host")]),
            bad("bang", host("ex!ample.com"), vec![x(6, 15, hk(), "invalid character '!' in host")]),
            bad("non-ASCII", host("bücher.de"), vec![x(6, 15, hk(), "invalid character 'ü' in host")]),
            bad("glob class", host("api[0-9].example.com"), vec![x(6, 15, hk(), "invalid character '[' in host")]),
            bad(
                "too long",
                host(&format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(62))),
                vec![x(6, 15, hk(), "host is longer than 253 characters")],
            ),
            bad(
                "label too long",
                host(&format!("{}.example.com", "a".repeat(64))),
                vec![x(6, 15, hk(), "is longer than 63 characters")],
            ),
            bad("missing", ep("port: 443"), vec![x(6, 9, hk(), "missing required field `host`")]),
            bad("numeric wildcard", host("10.0.0.*"), vec![x(6, 15, hk(), "IP addresses cannot contain wildcards")]),
            bad(
                "numeric middle wildcard",
                host("93.*.216.34"),
                vec![x(6, 15, hk(), "IP addresses cannot contain wildcards")],
            ),
            bad(
                "numeric many-label wildcard",
                host("**.216.34"),
                vec![x(6, 15, hk(), "IP addresses cannot contain wildcards")],
            ),
            bad(
                "loopback literal",
                host("127.0.0.1"),
                vec![x(6, 15, hk(), "is in loopback (127.0.0.0/8), which a sandbox may never reach")],
            ),
            bad("loopback v6 literal", host("::1"), vec![x(6, 15, hk(), "which a sandbox may never reach")]),
            bad("metadata literal", host("169.254.169.254"), vec![x(6, 15, hk(), "link-local and cloud metadata")]),
            bad("mapped loopback literal", host("::ffff:127.0.0.1"), vec![x(6, 15, hk(), "may never reach")]),
            bad("NAT64 metadata literal", host("64:ff9b::a9fe:a9fe"), vec![x(6, 15, hk(), "may never reach")]),
            bad("unspecified literal", host("0.0.0.0"), vec![x(6, 15, hk(), "may never reach")]),
            bad("multicast literal", host("224.0.0.1"), vec![x(6, 15, hk(), "multicast")]),
            bad(
                "private literal without allowed_ips",
                host("10.1.2.3"),
                vec![x(
                    6,
                    15,
                    hk(),
                    "private addresses are reachable only through `allowed_ips`; add `allowed_ips: [\"10.1.2.3\"]`",
                )],
            ),
            bad(
                "private v6 literal without allowed_ips",
                host("fd00::5"),
                vec![x(6, 15, hk(), "reachable only through `allowed_ips`")],
            ),
            ok(
                "private literal with covering allowed_ips",
                ep("host: 10.1.2.3\nport: 443\nallowed_ips: [10.1.0.0/16]"),
                |p| {
                    assert_eq!(endpoint(p).host.ip(), "10.1.2.3".parse().ok());
                },
            ),
            bad(
                "private literal with other allowed_ips",
                ep("host: 10.1.2.3\nport: 443\nallowed_ips: [10.9.0.0/16]"),
                vec![x(6, 15, hk(), "reachable only through `allowed_ips`")],
            ),
        ],
    );
}

#[test]
fn ports() {
    let h = "host: api.example.com\n";
    run(
        "ports",
        vec![
            ok("port", ep(&format!("{h}port: 443")), |p| assert_eq!(endpoint(p).ports, [443])),
            ok("ports", ep(&format!("{h}ports: [80, 443]")), |p| assert_eq!(endpoint(p).ports, [80, 443])),
            ok("ports block list", ep(&format!("{h}ports:\n  - 8443\n  - 443")), |p| {
                assert_eq!(endpoint(p).ports, [8443, 443])
            }),
            ok("repeated port kept once", ep(&format!("{h}ports: [443, 443, 80]")), |p| {
                assert_eq!(endpoint(p).ports, [443, 80])
            }),
            ok("ports wins over port", ep(&format!("{h}port: 80\nports: [443, 8443]")), |p| {
                assert_eq!(endpoint(p).ports, [443, 8443])
            }),
            ok("lowest and highest", ep(&format!("{h}ports: [1, 65535]")), |p| {
                assert_eq!(endpoint(p).ports, [1, 65535])
            }),
            ok("hexadecimal is an integer", ep(&format!("{h}port: 0x1BB")), |p| assert_eq!(endpoint(p).ports, [443])),
            bad("missing", ep("host: api.example.com"), vec![x(6, 9, k("port"), "missing `port` or `ports`")]),
            bad(
                "zero",
                ep(&format!("{h}port: 0")),
                vec![x(7, 15, k("port"), "0 is out of range; expected 1 to 65535")],
            ),
            bad(
                "65536",
                ep(&format!("{h}port: 65536")),
                vec![x(7, 15, k("port"), "65536 is out of range; expected 1 to 65535")],
            ),
            bad("negative", ep(&format!("{h}port: -443")), vec![x(7, 15, k("port"), "-443 is out of range")]),
            bad(
                "empty ports",
                ep(&format!("{h}ports: []")),
                vec![x(7, 16, k("ports"), "`ports` is empty; list at least one port")],
            ),
            bad(
                "every bad entry of ports",
                ep(&format!("{h}ports: [443, 0, 70000]")),
                vec![x(7, 22, k("ports[1]"), "0 is out of range"), x(7, 25, k("ports[2]"), "70000 is out of range")],
            ),
            bad(
                "invalid port next to ports",
                ep(&format!("{h}port: 0\nports: [443]")),
                vec![x(7, 15, k("port"), "0 is out of range")],
            ),
            bad(
                "port beyond 64 bits",
                ep(&format!("{h}port: 99999999999999999999")),
                vec![x(7, 15, k("port"), "number is out of range; expected 1 to 65535")],
            ),
            bad(
                "port fractional",
                ep(&format!("{h}port: 443.5")),
                vec![x(7, 15, k("port"), "expected an integer, found a float")],
            ),
            bad(
                "ports null",
                ep(&format!("{h}ports:\nprotocol: rest\naccess: full")),
                vec![x(7, 14, k("ports"), "`ports` is empty")],
            ),
        ],
    );
}

#[test]
fn protocol_enforcement_access() {
    let l4 = "host: api.example.com\nport: 443\n";
    let allow = "rules:\n  - allow: {method: GET, path: /}";
    run(
        "protocol_enforcement_access",
        vec![
            ok("L4 passthrough", ep(l4.trim_end()), |p| {
                let e = endpoint(p);
                assert_eq!(e.protocol, None);
                assert_eq!(e.enforcement, Enforcement::Enforce);
                assert_eq!(e.access, None);
                assert!(e.rules.is_empty() && e.deny_rules.is_empty() && e.allowed_ips.is_empty());
                assert_eq!(e.tls, None);
            }),
            ok("rest with access; enforcement defaults to enforce", rest("access: read-only"), |p| {
                let e = endpoint(p);
                assert_eq!(e.protocol, Some(Protocol::Rest));
                assert_eq!(e.enforcement, Enforcement::Enforce);
                assert_eq!(e.access, Some(Access::ReadOnly));
            }),
            ok("rest, audit", rest("access: read-write\nenforcement: audit"), |p| {
                assert_eq!(endpoint(p).enforcement, Enforcement::Audit);
                assert_eq!(endpoint(p).access, Some(Access::ReadWrite));
            }),
            ok("rest, explicit enforce", rest("access: full\nenforcement: enforce"), |p| {
                assert_eq!(endpoint(p).enforcement, Enforcement::Enforce);
                assert_eq!(endpoint(p).access, Some(Access::Full));
            }),
            ok("explicit enforce on L4", ep(&format!("{l4}enforcement: enforce")), |p| {
                assert_eq!(endpoint(p).enforcement, Enforcement::Enforce)
            }),
            ok("rest with rules", rest(allow), |p| assert_eq!(endpoint(p).rules.len(), 1)),
            ok("access with deny_rules", rest("access: full\ndeny_rules:\n  - {method: DELETE, path: /**}"), |p| {
                assert_eq!(endpoint(p).access, Some(Access::Full));
                assert_eq!(endpoint(p).deny_rules.len(), 1);
            }),
            ok(
                "rules with deny_rules",
                rest(&format!("{allow}\ndeny_rules:\n  - {{method: GET, path: /admin}}")),
                |p| assert_eq!(endpoint(p).deny_rules[0].path.as_str(), "/admin"),
            ),
            bad(
                "graphql",
                ep(&format!("{l4}protocol: graphql")),
                vec![x(8, 19, k("protocol"), "protocol `graphql` is not supported yet")],
            ),
            bad(
                "tcp with rules: raw TCP is not inspected",
                ep(&format!("{l4}protocol: tcp\n{allow}")),
                vec![x(9, 9, k("rules"), "`rules` can never take effect without an L7 `protocol`")],
            ),
            ok("tcp", ep(&format!("{l4}protocol: tcp")), |p| {
                let e = endpoint(p);
                assert_eq!(e.protocol, Some(Protocol::Tcp));
                assert!(e.rules.is_empty() && e.access.is_none() && e.tls.is_none());
            }),
            bad(
                "tcp with an access preset",
                ep(&format!("{l4}protocol: tcp\naccess: full")),
                vec![x(9, 9, k("access"), "`access` can never take effect without an L7 `protocol`")],
            ),
            bad(
                "tcp with tls skip",
                ep(&format!("{l4}protocol: tcp\ntls: skip")),
                vec![x(9, 14, k("tls"), "`tls: skip` can never take effect with `protocol: tcp`")],
            ),
            bad(
                "tcp to port 53: the DNS responder's",
                ep("host: dns.example.com\nport: 53\nprotocol: tcp"),
                vec![x(7, 15, k("port"), "`protocol: tcp` to port 53 can never take effect")],
            ),
            bad(
                "tcp to ports with 53 among them",
                ep("host: dns.example.com\nports: [5432, 53]\nprotocol: tcp"),
                vec![x(7, 16, k("ports"), "every DNS query, UDP or TCP, goes to the sandbox's DNS responder")],
            ),
            ok("port 53 without protocol: tcp (a CONNECT to it)", ep("host: dns.example.com\nport: 53"), |p| {
                assert_eq!(endpoint(p).ports, [53])
            }),
            bad(
                "tcp with audit enforcement",
                ep(&format!("{l4}protocol: tcp\nenforcement: audit")),
                vec![x(9, 22, k("enforcement"), "`enforcement: audit` can never take effect without an L7 `protocol`")],
            ),
            bad(
                "sql",
                ep(&format!("{l4}protocol: sql")),
                vec![x(8, 19, k("protocol"), "protocol `sql` is not supported yet")],
            ),
            bad(
                "unsupported protocol with rules: one error, no cascade",
                ep(&format!("{l4}protocol: graphql\n{allow}")),
                vec![x(8, 19, k("protocol"), "not supported yet")],
            ),
            bad(
                "unsupported protocol with tls skip: one error",
                ep(&format!("{l4}protocol: graphql\ntls: skip")),
                vec![x(8, 19, k("protocol"), "not supported yet")],
            ),
            bad(
                "unknown protocol",
                ep(&format!("{l4}protocol: http")),
                vec![x(8, 19, k("protocol"), "unknown protocol `http`; supported: `rest`")],
            ),
            bad(
                "protocol is case-sensitive",
                ep(&format!("{l4}protocol: REST")),
                vec![x(8, 19, k("protocol"), "unknown protocol `REST`")],
            ),
            bad(
                "audit without protocol",
                ep(&format!("{l4}enforcement: audit")),
                vec![x(8, 22, k("enforcement"), "`enforcement: audit` can never take effect without an L7 `protocol`")],
            ),
            bad(
                "unknown enforcement",
                ep(&format!("{l4}enforcement: monitor")),
                vec![x(8, 22, k("enforcement"), "unknown value `monitor`, expected `enforce` or `audit`")],
            ),
            bad(
                "enforcement is case-sensitive",
                rest("access: full\nenforcement: Audit"),
                vec![x(10, 22, k("enforcement"), "unknown value `Audit`")],
            ),
            bad(
                "unknown access preset",
                rest("access: readonly"),
                vec![x(
                    9,
                    17,
                    k("access"),
                    "unknown access preset `readonly`, expected `read-only`, `read-write` or `full`",
                )],
            ),
            bad(
                "access and rules together",
                rest(&format!("access: full\n{allow}")),
                vec![x(10, 9, k("rules"), "`access` and `rules` cannot be combined")],
            ),
            bad(
                "invalid access and rules together",
                rest(&format!("access: all\n{allow}")),
                vec![x(9, 17, k("access"), "unknown access preset `all`"), x(10, 9, k("rules"), "cannot be combined")],
            ),
            bad(
                "rest without access or rules",
                ep(&format!("{l4}protocol: rest")),
                vec![x(8, 9, k("protocol"), "`protocol: rest` needs `access` or `rules`")],
            ),
            bad(
                "access without rest",
                ep(&format!("{l4}access: full")),
                vec![x(8, 9, k("access"), "`access` can never take effect without an L7 `protocol`")],
            ),
            bad(
                "rules without rest",
                ep(&format!("{l4}{allow}")),
                vec![x(8, 9, k("rules"), "`rules` can never take effect without an L7 `protocol`")],
            ),
            bad(
                "deny_rules without rest",
                ep(&format!("{l4}deny_rules:\n  - {{method: GET, path: /}}")),
                vec![x(8, 9, k("deny_rules"), "`deny_rules` can never take effect without an L7 `protocol`")],
            ),
            bad(
                "access, rules and deny_rules without rest: all reported",
                ep(&format!("{l4}access: full\n{allow}\ndeny_rules:\n  - {{method: GET, path: /}}")),
                vec![
                    x(8, 9, k("access"), "`access` can never take effect"),
                    x(9, 9, k("rules"), "`rules` can never take effect"),
                    x(11, 9, k("deny_rules"), "`deny_rules` can never take effect"),
                ],
            ),
            bad(
                "deny_rules without an allow base",
                rest("deny_rules:\n  - {method: DELETE, path: /}"),
                vec![x(
                    9,
                    9,
                    k("deny_rules"),
                    "`deny_rules` without an allow base (`rules` or `access`) can never take effect",
                )],
            ),
            bad(
                "empty rules",
                rest("rules: []"),
                vec![x(9, 16, k("rules"), "`rules` is empty; list at least one rule, or use `access`")],
            ),
            bad("null rules", rest("rules:\nenforcement: enforce"), vec![x(9, 14, k("rules"), "`rules` is empty")]),
            bad(
                "empty deny_rules",
                rest("access: full\ndeny_rules: []"),
                vec![x(10, 21, k("deny_rules"), "`deny_rules` is empty")],
            ),
            bad(
                "rule without allow",
                rest("rules:\n  - {}"),
                vec![x(10, 13, k("rules[0].allow"), "missing required field `allow`")],
            ),
            ok("tls skip on L4", ep(&format!("{l4}tls: skip")), |p| assert_eq!(endpoint(p).tls, Some(Tls::Skip))),
            bad(
                "tls skip with rest",
                rest("access: full\ntls: skip"),
                vec![x(10, 14, k("tls"), "`tls: skip` cannot be combined with `protocol: rest`")],
            ),
            bad(
                "unknown tls value",
                ep(&format!("{l4}tls: terminate")),
                vec![x(8, 14, k("tls"), "unknown value `terminate`, expected `skip`")],
            ),
        ],
    );
}

#[test]
fn methods_paths_queries() {
    let m = "method: GET\npath: /\n";
    run(
        "methods_paths_queries",
        vec![
            ok("exact method", rule("method: GET\npath: /repos/**"), |p| {
                let a = &endpoint(p).rules[0].allow;
                assert_eq!(a.method, Method::Exact("GET".into()));
                assert!(a.path.matches("/repos/a/b") && !a.path.matches("/repos"));
            }),
            ok("any method", rule("method: \"*\"\npath: /"), |p| {
                assert_eq!(endpoint(p).rules[0].allow.method, Method::Any)
            }),
            ok(
                "extension methods",
                rest("rules:\n  - allow: {method: PROPFIND, path: /}\n  - allow: {method: M-SEARCH, path: /}"),
                |p| assert_eq!(endpoint(p).rules[1].allow.method, Method::Exact("M-SEARCH".into())),
            ),
            ok("segment glob", rule("method: GET\npath: /repos/*/issues"), |p| {
                let path = &endpoint(p).rules[0].allow.path;
                assert!(path.matches("/repos/x/issues") && !path.matches("/repos/x/y/issues"));
            }),
            ok("character class", rule("method: GET\npath: /v[0-9]/x"), |p| {
                assert!(endpoint(p).rules[0].allow.path.matches("/v2/x"))
            }),
            bad(
                "lowercase method",
                rule("method: get\npath: /"),
                vec![x(
                    11,
                    23,
                    kr("method"),
                    "method `get` would never match: HTTP methods are case-sensitive; write `GET`",
                )],
            ),
            bad("mixed-case method", rule("method: Post\npath: /"), vec![x(11, 23, kr("method"), "write `POST`")]),
            bad(
                "lowercase deny method",
                deny("method: delete\npath: /"),
                vec![x(11, 21, kd("method"), "write `DELETE`")],
            ),
            bad(
                "method with a space",
                rule("method: G ET\npath: /"),
                vec![x(11, 23, kr("method"), "`G ET` is not an HTTP method; write one such as `GET`, or `*` for any")],
            ),
            bad(
                "method list in a string",
                rule("method: GET,POST\npath: /"),
                vec![x(11, 23, kr("method"), "`GET,POST` is not an HTTP method")],
            ),
            bad("empty method", rule("method: \"\"\npath: /"), vec![x(11, 23, kr("method"), "is not an HTTP method")]),
            bad("method missing", rule("path: /"), vec![x(11, 15, kr("method"), "missing required field `method`")]),
            bad("path missing", rule("method: GET"), vec![x(11, 15, kr("path"), "missing required field `path`")]),
            bad(
                "method and path missing",
                rule("query: {}"),
                vec![
                    x(11, 15, kr("method"), "missing required field `method`"),
                    x(11, 15, kr("path"), "missing required field `path`"),
                ],
            ),
            bad(
                "relative path",
                rule("method: GET\npath: repos/**"),
                vec![x(12, 21, kr("path"), "path `repos/**` must start with `/`")],
            ),
            bad("empty path", rule("method: GET\npath: \"\""), vec![x(12, 21, kr("path"), "must start with `/`")]),
            bad(
                "path is a bare star",
                rule("method: GET\npath: \"*\""),
                vec![x(12, 21, kr("path"), "must start with `/`")],
            ),
            bad(
                "unclosed class in path",
                rule("method: GET\npath: /a["),
                vec![x(12, 21, kr("path"), "unclosed `[` in pattern `/a[`")],
            ),
            bad(
                "unclosed class in deny path",
                deny("method: GET\npath: /admin[x"),
                vec![x(12, 19, kd("path"), "unclosed `[`")],
            ),
            ok("query glob string", rule(&format!("{m}query:\n  per_page: \"1*\"")), |p| {
                let q = &endpoint(p).rules[0].allow.query["per_page"];
                assert!(matches!(q, QueryMatcher::One(_)));
                assert!(q.matches("100") && !q.matches("200"));
            }),
            ok("query any", rule(&format!("{m}query:\n  state: {{any: [open, closed]}}")), |p| {
                let q = &endpoint(p).rules[0].allow.query["state"];
                assert!(matches!(q, QueryMatcher::Any { any } if any.len() == 2));
                assert!(q.matches("closed") && !q.matches("all"));
            }),
            ok("YAML 1.1 boolean words stay strings", rule(&format!("{m}query:\n  enabled: on\n  y: n")), |p| {
                let q = &endpoint(p).rules[0].allow.query;
                assert!(q["enabled"].matches("on") && q["y"].matches("n"));
            }),
            ok("empty query", rule(&format!("{m}query: {{}}")), |p| {
                assert!(endpoint(p).rules[0].allow.query.is_empty())
            }),
            bad(
                "empty any",
                rule(&format!("{m}query:\n  q: {{any: []}}")),
                vec![x(14, 26, kr("query.q.any"), "`any` is empty; list at least one glob")],
            ),
            bad(
                "any is a string",
                rule(&format!("{m}query:\n  q: {{any: x}}")),
                vec![x(14, 26, kr("query.q.any"), "expected a list, found a string")],
            ),
            bad(
                "any entry integer",
                rule(&format!("{m}query:\n  q: {{any: [a, 1]}}")),
                vec![x(14, 30, kr("query.q.any[1]"), "expected a string, found an integer")],
            ),
            bad(
                "any entry unclosed",
                rule(&format!("{m}query:\n  q: {{any: [a, \"[b\"]}}")),
                vec![x(14, 30, kr("query.q.any[1]"), "unclosed `[` in pattern `[b`")],
            ),
            bad(
                "any missing",
                rule(&format!("{m}query:\n  q: {{}}")),
                vec![x(14, 20, kr("query.q.any"), "missing required field `any` (a list of globs)")],
            ),
            bad(
                "unclosed class in query",
                rule(&format!("{m}query:\n  q: \"[x\"")),
                vec![x(14, 20, kr("query.q"), "unclosed `[` in pattern `[x`")],
            ),
            bad(
                "query value integer",
                rule(&format!("{m}query:\n  per_page: 100")),
                vec![x(14, 27, kr("query.per_page"), "expected a glob string or `{any: [globs]}`, found an integer")],
            ),
            bad(
                "every matcher error of a rule",
                rule("method: get\npath: repos\nquery:\n  a: \"[\"\n  b: {any: []}"),
                vec![
                    x(11, 23, kr("method"), "write `GET`"),
                    x(12, 21, kr("path"), "must start with `/`"),
                    x(14, 20, kr("query.a"), "unclosed `[`"),
                    x(15, 26, kr("query.b.any"), "`any` is empty"),
                ],
            ),
        ],
    );
}

#[test]
fn allowed_ips() {
    let ik = || k("allowed_ips[0]");
    let overlap = "which is never reachable from a sandbox";
    run(
        "allowed_ips",
        vec![
            ok("private CIDR", ips("10.0.0.0/8"), |p| {
                assert_eq!(endpoint(p).allowed_ips, ["10.0.0.0/8".parse().expect("net")])
            }),
            ok("bare IP is a /32", ips("192.168.1.5"), |p| {
                assert_eq!(endpoint(p).allowed_ips, ["192.168.1.5/32".parse().expect("net")])
            }),
            ok("host bits are cleared", ips("10.1.2.3/8"), |p| {
                assert_eq!(endpoint(p).allowed_ips, ["10.0.0.0/8".parse().expect("net")])
            }),
            ok("bare IPv6 is a /128", ips("fd00::1"), |p| {
                assert_eq!(endpoint(p).allowed_ips, ["fd00::1/128".parse().expect("net")])
            }),
            ok(
                "several private and public ranges",
                ep(
                    "host: db.example.com\nport: 5432\nallowed_ips:\n  - 172.16.0.0/12\n  - 100.64.0.0/10\n  - \"fd00::/8\"\n  - 203.0.113.0/24",
                ),
                |p| assert_eq!(endpoint(p).allowed_ips.len(), 4),
            ),
            ok("empty list", ep("host: db.example.com\nport: 5432\nallowed_ips: []"), |p| {
                assert!(endpoint(p).allowed_ips.is_empty())
            }),
            bad(
                "loopback address",
                ips("127.0.0.1"),
                vec![x(8, 23, ik(), "`127.0.0.1` overlaps loopback (127.0.0.0/8)")],
            ),
            bad("loopback network", ips("127.0.0.0/8"), vec![x(8, 23, ik(), "overlaps loopback")]),
            bad("range covering loopback", ips("126.0.0.0/7"), vec![x(8, 23, ik(), "overlaps loopback")]),
            bad(
                "metadata address",
                ips("169.254.169.254"),
                vec![x(8, 23, ik(), "overlaps link-local and cloud metadata")],
            ),
            bad("link-local network", ips("169.254.0.0/16"), vec![x(8, 23, ik(), "overlaps link-local")]),
            bad("everything", ips("0.0.0.0/0"), vec![x(8, 23, ik(), overlap)]),
            bad("unspecified address", ips("0.0.0.0"), vec![x(8, 23, ik(), "overlaps the unspecified network")]),
            bad("IPv6 loopback", ips("::1"), vec![x(8, 23, ik(), "overlaps loopback (::1)")]),
            bad("IPv6 everything", ips("::/0"), vec![x(8, 23, ik(), overlap)]),
            bad("IPv6 link-local network", ips("fe80::/10"), vec![x(8, 23, ik(), "overlaps link-local (fe80::/10)")]),
            bad("IPv6 link-local address", ips("fe80::1"), vec![x(8, 23, ik(), "overlaps link-local")]),
            bad("IPv4-mapped loopback", ips("::ffff:127.0.0.1"), vec![x(8, 23, ik(), "IPv4-mapped loopback")]),
            bad("garbage", ips("garbage"), vec![x(8, 23, ik(), "`garbage` is not an IP address or CIDR range")]),
            bad("prefix too long", ips("10.0.0.0/33"), vec![x(8, 23, ik(), "is not an IP address or CIDR range")]),
            bad("hostname", ips("db.internal"), vec![x(8, 23, ik(), "is not an IP address or CIDR range")]),
            bad(
                "every bad entry reported",
                ep("host: db.example.com\nport: 5432\nallowed_ips: [\"10.0.0.0/8\", \"127.0.0.1\", \"nope\"]"),
                vec![
                    x(8, 37, k("allowed_ips[1]"), "overlaps loopback"),
                    x(8, 50, k("allowed_ips[2]"), "not an IP address"),
                ],
            ),
        ],
    );
}

#[test]
fn policies_binaries_endpoints() {
    let one_ep = "endpoints: [{host: api.example.com, port: 443}]";
    run(
        "policies_binaries_endpoints",
        vec![
            ok("name defaults to the key", np(&format!("{one_ep}\nbinaries: [{{path: /usr/bin/curl}}]")), |p| {
                assert_eq!(p.network_policies.0["p"].name, "p")
            }),
            ok("explicit name", np(&format!("name: GitHub API\n{one_ep}\nbinaries: [{{path: /usr/bin/curl}}]")), |p| {
                assert_eq!(p.network_policies.0["p"].name, "GitHub API")
            }),
            ok(
                "binary globs",
                np(&format!("{one_ep}\nbinaries: [{{path: \"/usr/bin/*\"}}, {{path: /opt/**/bin/node}}]")),
                |p| {
                    let b = &p.network_policies.0["p"].binaries;
                    assert!(b[0].path.matches("/usr/bin/curl") && !b[0].path.matches("/usr/bin/x/curl"));
                    assert!(b[1].path.matches("/opt/node/v20/bin/node"));
                },
            ),
            ok("any binary", np(&format!("{one_ep}\nbinaries: [{{path: /**}}]")), |p| {
                assert!(p.network_policies.0["p"].binaries[0].path.matches("/usr/local/bin/tool"))
            }),
            ok(
                "the cross product is kept",
                np(
                    "endpoints:\n  - {host: a.example.com, port: 443}\n  - {host: b.example.com, ports: [80, 443]}\nbinaries:\n  - path: /usr/bin/curl\n  - path: /usr/bin/wget",
                ),
                |p| {
                    let pol = &p.network_policies.0["p"];
                    assert_eq!((pol.endpoints.len(), pol.binaries.len()), (2, 2));
                    assert_eq!(p.network_policies.endpoint_count(), 2);
                },
            ),
            ok(
                "YAML anchors and merge keys",
                np(
                    "endpoints:\n  - &base {host: a.example.com, port: 443}\n  - <<: *base\n    port: 80\n  - *base\nbinaries: [{path: /x}]",
                ),
                |p| {
                    let ports: Vec<Vec<u16>> =
                        p.network_policies.0["p"].endpoints.iter().map(|e| e.ports.clone()).collect();
                    assert_eq!(ports, [vec![443], vec![80], vec![443]]);
                },
            ),
            bad(
                "binaries missing",
                np(one_ep),
                vec![x(3, 3, "network_policies.p.binaries", "no binaries: this policy can never take effect")],
            ),
            bad(
                "binaries empty",
                np(&format!("{one_ep}\nbinaries: []")),
                vec![x(5, 5, "network_policies.p.binaries", "no binaries")],
            ),
            bad(
                "binaries null",
                np(&format!("{one_ep}\nbinaries:")),
                vec![x(5, 5, "network_policies.p.binaries", "no binaries")],
            ),
            bad(
                "endpoints missing",
                np("binaries: [{path: /x}]"),
                vec![x(3, 3, "network_policies.p.endpoints", "no endpoints: this policy can never take effect")],
            ),
            bad(
                "endpoints empty",
                np("endpoints: []\nbinaries: [{path: /x}]"),
                vec![x(4, 5, "network_policies.p.endpoints", "no endpoints")],
            ),
            bad(
                "both missing",
                np("name: nothing"),
                vec![
                    x(3, 3, "network_policies.p.endpoints", "no endpoints"),
                    x(3, 3, "network_policies.p.binaries", "no binaries"),
                ],
            ),
            bad(
                "binary path relative",
                np(&format!("{one_ep}\nbinaries: [{{path: curl}}]")),
                vec![x(5, 23, "network_policies.p.binaries[0].path", "binary path `curl` must be absolute")],
            ),
            bad(
                "binary path with ..",
                np(&format!("{one_ep}\nbinaries: [{{path: /usr/../bin/sh}}]")),
                vec![x(5, 23, "network_policies.p.binaries[0].path", "must not contain `..`")],
            ),
            bad(
                "binary path unclosed class",
                np(&format!("{one_ep}\nbinaries: [{{path: \"/usr/bin/[\"}}]")),
                vec![x(5, 23, "network_policies.p.binaries[0].path", "unclosed `[`")],
            ),
            bad(
                "binary without path",
                np(&format!("{one_ep}\nbinaries: [{{}}]")),
                vec![x(5, 16, "network_policies.p.binaries[0].path", "missing required field `path`")],
            ),
            bad(
                "every binary error",
                np(&format!("{one_ep}\nbinaries:\n  - path: bin/a\n  - {{}}\n  - path: /ok\n  - path: /a/../b")),
                vec![
                    x(6, 15, "network_policies.p.binaries[0].path", "must be absolute"),
                    x(7, 9, "network_policies.p.binaries[1].path", "missing required field `path`"),
                    x(9, 15, "network_policies.p.binaries[3].path", "must not contain `..`"),
                ],
            ),
            bad(
                "empty policy key",
                "version: 1\nnetwork_policies:\n  \"\":\n    endpoints: [{host: a.example.com, port: 443}]\n    binaries: [{path: /x}]\n",
                vec![x(3, 3, "network_policies", "policy key is empty")],
            ),
            bad(
                "non-string policy key",
                "version: 1\nnetwork_policies:\n  42:\n    endpoints: [{host: a.example.com, port: 443}]\n    binaries: [{path: /x}]\n",
                vec![x(3, 3, "network_policies", "keys must be strings, found an integer")],
            ),
            ok(
                "policy keys that YAML 1.1 would read as booleans",
                "version: 1\nnetwork_policies:\n  y:\n    endpoints: [{host: a.example.com, port: 443}]\n    binaries: [{path: /x}]\n  off:\n    endpoints: [{host: b.example.com, port: 443}]\n    binaries: [{path: /x}]\n",
                |p| assert!(p.network_policies.0.contains_key("y") && p.network_policies.0.contains_key("off")),
            ),
            bad(
                "errors in several policies and endpoints, all reported",
                "version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - {host: '*', port: 443}\n      - {host: ok.example.com, port: 0}\n    binaries: [{path: x}]\n  b:\n    endpoints: [{host: b.example.com}]\n",
                vec![
                    x(5, 16, "network_policies.a.endpoints[0].host", "a bare `*`"),
                    x(6, 38, "network_policies.a.endpoints[1].port", "0 is out of range"),
                    x(7, 23, "network_policies.a.binaries[0].path", "must be absolute"),
                    x(8, 3, "network_policies.b.binaries", "no binaries"),
                    x(9, 17, "network_policies.b.endpoints[0].port", "missing `port` or `ports`"),
                ],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// Syntax, size and encoding
// ---------------------------------------------------------------------------

#[test]
fn yaml_syntax_errors_carry_positions() {
    run(
        "yaml_syntax_errors_carry_positions",
        vec![
            bad(
                "unclosed flow list",
                "version: 1\nfilesystem_policy:\n  read_only: [/a, /b\n",
                vec![x(3, 14, "", "invalid YAML: unclosed bracket")],
            ),
            bad(
                "unclosed quote",
                "version: 1\nnetwork_policies:\n  p:\n    name: \"unterminated\n",
                vec![x(4, 11, "", "invalid YAML: unclosed quote")],
            ),
            bad(
                "tab indentation",
                "version: 1\nfilesystem_policy:\n\tread_only: []\n",
                vec![x(3, 2, "", "invalid YAML: tabs disallowed")],
            ),
            bad(
                "bad dedent",
                "version: 1\nprocess:\n  run_as_user: 1\n run_as_group: 2\n",
                vec![x(4, 2, "", "invalid YAML: while parsing a block mapping")],
            ),
            bad(
                "value on a nested line",
                "version: 1\nlandlock:\n  compatibility: best_effort\n    extra: x\n",
                vec![x(4, 10, "", "invalid YAML: mapping values are not allowed")],
            ),
            bad("stray bracket", "version: 1\n}\n", vec![x(2, 1, "", "invalid YAML")]),
            bad("unknown alias", "version: 1\nprocess: *nope\n", vec![x(2, 10, "", "invalid YAML")]),
            bad(
                "unquoted wildcard host is an alias",
                host("x").replace("'x'", "*.example.com"),
                vec![x(6, 15, "", "invalid YAML")],
            ),
            bad(
                "two documents",
                "version: 1\n---\nversion: 1\n",
                vec![x(3, 1, "", "invalid YAML: only single YAML document expected")],
            ),
        ],
    );
}

#[test]
fn policy_size_limit() {
    let header = "version: 1\n# ";
    let fill = |total: usize| format!("{header}{}\n", "x".repeat(total - header.len() - 1));

    let at_limit = fill(MAX_POLICY_BYTES);
    assert_eq!(at_limit.len(), MAX_POLICY_BYTES);
    assert!(parse(&at_limit).is_ok(), "a policy of exactly 4 MiB loads");
    assert!(load_bytes("max.yaml", at_limit.as_bytes()).is_ok());

    let over = fill(MAX_POLICY_BYTES + 1);
    let diags = parse(&over).expect_err("over 4 MiB");
    let exps = [x(1, 1, "", "the limit is 4194304 bytes (4 MiB)")];
    assert_eq!(mismatch(&diags, &exps), None);
    assert!(diags[0].message.contains("4194305 bytes"), "{}", diags[0].message);

    let err = load_bytes("big.yaml", over.as_bytes()).expect_err("over 4 MiB");
    assert_eq!(mismatch(err.diagnostics(), &exps), None);
    assert!(err.to_string().starts_with("big.yaml:1:1: "), "{err}");

    // Invalid bytes beyond the limit do not matter: the size is checked first.
    let mut bytes = over.into_bytes();
    bytes.push(0xff);
    let err = load_bytes("big.yaml", &bytes).expect_err("over 4 MiB");
    assert_eq!(mismatch(err.diagnostics(), &exps), None);
}

#[test]
fn invalid_utf8_has_a_position() {
    let cases: &[(&str, &[u8], u32, u32)] = &[
        ("first byte", b"\xffversion: 1\n", 1, 1),
        ("inside a value", b"version: 1\nnetwork_policies:\n  p:\n    name: caf\xe9\n", 4, 14),
        // Columns count characters, as the YAML parser does: `é` is one column.
        ("after multi-byte characters", b"version: 1\nx: \"\xc3\xa9\xc3\xa9\" \xff\n", 2, 9),
        ("truncated multi-byte sequence", b"version: 1\n# \xe2\x82\n", 2, 3),
    ];
    for (name, bytes, line, column) in cases {
        let err = load_bytes("bad.yaml", bytes).expect_err(name);
        let exps = [x(*line, *column, "", "file is not valid UTF-8 text")];
        assert_eq!(mismatch(err.diagnostics(), &exps), None, "{name}");
        assert!(err.to_string().starts_with(&format!("bad.yaml:{line}:{column}: ")), "{name}: {err}");
    }
    // Valid UTF-8 through load_bytes behaves like parse.
    let p = load_bytes("ok.yaml", "version: 1\nnetwork_policies:\n  café:\n    endpoints: [{host: a.example.com, port: 443}]\n    binaries: [{path: /x}]\n".as_bytes());
    assert!(p.is_ok_and(|p| p.network_policies.0.contains_key("café")));
}

#[test]
fn load_error_rendering() {
    let err = load_str("policy.yaml", "version: 2\nprocess:\n  run_as_user: root\n").expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "policy.yaml:1:10: version: unsupported policy version 2; the only version is 1\n\
         policy.yaml:3:16: process.run_as_user: running as root is not allowed; use `sandbox` or a numeric id from 1 to 4294967294"
    );
    let err = load_str("empty.yaml", "").expect_err("invalid");
    assert_eq!(err.to_string(), "empty.yaml:1:1: policy is empty; it needs at least `version: 1`");
    let err = load_file(Path::new("/nonexistent/openshell/policy.yaml")).expect_err("missing file");
    assert!(err.diagnostics().is_empty());
    assert!(err.to_string().contains("cannot read policy file"), "{err}");
}

/// Diagnostics come sorted by position, whatever order the checks ran in.
#[test]
fn diagnostics_are_sorted_by_position() {
    let text = "version: 3\nnetwork_policies:\n  p:\n    endpoints: [{host: '*', port: 0}]\n    binaries: [{path: x}]\nprocess:\n  run_as_user: 0\nfilesystem_policy:\n  read_write: [/]\n";
    let diags = parse(text).expect_err("invalid");
    assert_eq!(diags.len(), 6, "{}", render(&diags));
    assert!(diags.windows(2).all(|w| w[0].pos() <= w[1].pos()), "{}", render(&diags));
}

// ---------------------------------------------------------------------------
// Fixture files
// ---------------------------------------------------------------------------

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(kind)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Parses `# expect: LINE:COL KEY :: MESSAGE-SUBSTRING` lines (`KEY` is `-` for the document).
fn fixture_expectations(path: &Path, text: &str) -> Vec<(u32, u32, String, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("# expect:") else { continue };
        let bad_line = || panic!("{}:{}: malformed expectation: {line}", path.display(), i + 1);
        let Some((head, message)) = rest.split_once(" :: ") else { bad_line() };
        let mut words = head.split_whitespace();
        let (Some(pos), Some(key), None) = (words.next(), words.next(), words.next()) else { bad_line() };
        let Some((l, c)) = pos.split_once(':') else { bad_line() };
        let (Ok(l), Ok(c)) = (l.parse(), c.parse()) else { bad_line() };
        let key = if key == "-" { String::new() } else { key.to_owned() };
        out.push((l, c, key, message.trim().to_owned()));
    }
    out
}

#[test]
fn invalid_fixtures_report_exactly_their_expectations() {
    let files = yaml_files(&fixture_dir("invalid"));
    assert!(files.len() >= 10, "expected at least 10 invalid fixtures, found {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("fixture is UTF-8");
        let exps = fixture_expectations(path, &text);
        assert!(!exps.is_empty(), "{}: no `# expect:` lines", path.display());
        let diags = match load_file(path) {
            Ok(_) => {
                failures.push(format!("{}: loaded, but it should not", path.display()));
                continue;
            }
            Err(e) => e.diagnostics().to_vec(),
        };
        let agree = diags.len() == exps.len()
            && diags.iter().zip(&exps).all(|(d, (l, c, k, m))| {
                d.line == *l && d.column == *c && d.key == *k && d.message.contains(m.as_str())
            });
        if !agree {
            let mut s = format!("{}:\n  expected:\n", path.display());
            for (l, c, k, m) in &exps {
                let _ = writeln!(s, "    {l}:{c} [{k}] ..{m}..");
            }
            s.push_str("  got:\n");
            s.push_str(&render(&diags));
            failures.push(s);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid fixtures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_fixtures_load() {
    let files = yaml_files(&fixture_dir("valid"));
    assert!(files.len() >= 3, "expected at least 3 valid fixtures, found {}", files.len());
    for path in &files {
        let policy = load_file(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.version, 1);
        assert!(!policy.network_policies.is_empty(), "{}: no network policies", path.display());
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let policies = &policy.network_policies.0;
        match name {
            "openshell_agent.yaml" => {
                assert_eq!(policies.len(), 3);
                assert_eq!(policies["anthropic"].name, "claude-api");
                let gh = &policies["github_read"].endpoints;
                assert_eq!(gh[0].rules.len(), 2);
                assert_eq!(gh[0].deny_rules.len(), 1);
                assert_eq!(gh[1].access, Some(Access::ReadOnly));
                assert!(policies["package_registries"].endpoints[3].host.matches("index.crates.io"));
                assert_eq!(policy.filesystem_policy.read_write, ["/sandbox", "/tmp", "/dev/null"]);
            }
            "audited_rest_api.yaml" => {
                let e = &policies["jira"].endpoints[0];
                assert_eq!(e.enforcement, Enforcement::Audit);
                assert_eq!(e.rules[2].allow.method, Method::Any);
                assert_eq!(policy.landlock.compatibility, Compatibility::HardRequirement);
                assert!(!policy.filesystem_policy.include_workdir);
            }
            "internal_services.yaml" => {
                assert_eq!(policy.process.run_as_user, Identity::Id(1500));
                assert_eq!(policy.process.run_as_group, Identity::Id(1500));
                assert_eq!(policy.resources.cpu_millis, Some(1500));
                let m = &policies["metrics"].endpoints;
                assert_eq!((m[0].ports.as_slice(), m[0].tls), (&[443, 8443][..], Some(Tls::Skip)));
                assert_eq!(policies["postgres"].endpoints[0].allowed_ips.len(), 2);
            }
            "minimal_l4.yaml" => assert_eq!(policies["ntp"].endpoints[0].ports, [123]),
            "routing.yaml" => {
                let e = &policies["inference"].endpoints;
                assert_eq!(
                    (e[0].routing, e[1].routing),
                    (
                        Some(openshell_policy::model::Routing::Inference),
                        Some(openshell_policy::model::Routing::Inference)
                    )
                );
                let engine = openshell_policy::Engine::new(&policy);
                let d = engine.decide(&openshell_policy::Request::l4("api.openai.com", 443, "/usr/bin/python3.13"));
                assert!(d.is_allowed() && d.route && !d.inspect, "{d:?}");
            }
            other => panic!("{other}: add the checks of this new valid fixture"),
        }
    }
}

// ---------------------------------------------------------------------------
// websocket, mcp, json-rpc
// ---------------------------------------------------------------------------

/// An endpoint with `protocol: <p>` whose further fields start at line 9, column 9.
fn proto(p: &str, body: &str) -> String {
    ep(&format!("host: api.example.com\nport: 443\nprotocol: {p}\n{body}"))
}

#[test]
fn websocket_endpoints() {
    run(
        "websocket_endpoints",
        vec![
            ok(
                "upgrade and text rules, deny rule",
                proto(
                    "websocket",
                    "rules:\n  - allow: {method: GET, path: /ws}\n  - allow: {method: WEBSOCKET_TEXT, path: /ws}\ndeny_rules:\n  - {method: WEBSOCKET_TEXT, path: /ws/admin}",
                ),
                |p| {
                    let e = endpoint(p);
                    assert_eq!(e.protocol, Some(Protocol::Websocket));
                    assert_eq!(e.rules[1].allow.method, Method::Exact("WEBSOCKET_TEXT".into()));
                    assert_eq!(e.deny_rules[0].path.as_str(), "/ws/admin");
                    assert!(e.rpc.is_none());
                },
            ),
            ok("access preset", proto("websocket", "access: read-write"), |p| {
                assert_eq!(endpoint(p).access, Some(Access::ReadWrite))
            }),
            ok("any method", proto("websocket", "rules:\n  - allow: {method: '*', path: /**}"), |p| {
                assert_eq!(endpoint(p).rules[0].allow.method, Method::Any)
            }),
            bad(
                "neither access nor rules",
                proto("websocket", "enforcement: enforce"),
                vec![x(8, 9, k("protocol"), "`protocol: websocket` needs `access` or `rules`")],
            ),
            bad(
                "a method a websocket never sees",
                proto("websocket", "rules:\n  - allow: {method: POST, path: /ws}"),
                vec![x(10, 29, kr("method"), "method `POST` can never match on a `websocket` endpoint")],
            ),
            bad(
                "a deny method a websocket never sees",
                proto("websocket", "access: full\ndeny_rules:\n  - {method: DELETE, path: /ws}"),
                vec![x(11, 22, kd("method"), "method `DELETE` can never match on a `websocket` endpoint")],
            ),
            bad(
                "WEBSOCKET_TEXT on a rest endpoint",
                rule("method: WEBSOCKET_TEXT\npath: /ws"),
                vec![x(
                    11,
                    23,
                    kr("method"),
                    "`WEBSOCKET_TEXT` matches WebSocket messages, only on `protocol: websocket`",
                )],
            ),
            bad(
                "tls skip",
                proto("websocket", "access: full\ntls: skip"),
                vec![x(10, 14, k("tls"), "`tls: skip` cannot be combined with `protocol: websocket`")],
            ),
            bad(
                "mcp options on a websocket",
                proto("websocket", "access: full\nmcp: {}"),
                vec![x(10, 9, k("mcp"), "`mcp` can never take effect without `protocol: mcp`")],
            ),
            bad(
                "an endpoint path on a websocket",
                proto("websocket", "access: full\npath: /ws"),
                vec![x(
                    10,
                    9,
                    k("path"),
                    "`path` on an endpoint is supported with `protocol: mcp` or `protocol: json-rpc`",
                )],
            ),
        ],
    );
}

#[test]
fn mcp_and_json_rpc_endpoints() {
    let call = "rules:\n  - allow: {method: tools/call, tool: 'read_*'}";
    run(
        "mcp_and_json_rpc_endpoints",
        vec![
            ok(
                "mcp with defaults, a path, a tool glob and a deny rule",
                proto(
                    "mcp",
                    &format!(
                        "path: /mcp\n{call}\ndeny_rules:\n  - {{method: tools/call, tool: {{any: [read_secrets, 'read_key*']}}}}"
                    ),
                ),
                |p| {
                    use openshell_policy::model::{Dialect, McpOptions, RpcCall};
                    let e = endpoint(p);
                    assert_eq!(e.protocol, Some(Protocol::Mcp));
                    assert!(e.rules.is_empty() && e.deny_rules.is_empty() && e.access.is_none());
                    let rpc = e.rpc.as_ref().expect("rpc");
                    let defaults = McpOptions {
                        max_body_bytes: 65536,
                        strict_tool_names: true,
                        allow_all_known_mcp_methods: false,
                    };
                    assert_eq!(rpc.dialect, Dialect::Mcp(defaults));
                    assert!(rpc.takes_path("/mcp") && !rpc.takes_path("/other"));
                    let read = RpcCall { method: "tools/call", tool: Some("read_file") };
                    assert!(rpc.rules[0].allow.matches(&read));
                    assert!(rpc.deny_rules[0].matches(&RpcCall { tool: Some("read_keys"), ..read }));
                    assert!(!rpc.deny_rules[0].matches(&read));
                    // The JSON form is the file's: `path`, `mcp`, `rules`, `deny_rules`.
                    let json = serde_json::to_value(e).expect("json");
                    assert_eq!(json["path"], "/mcp");
                    assert_eq!(json["mcp"]["max_body_bytes"], 65536);
                    assert_eq!(json["rules"][0]["allow"]["tool"], "read_*");
                    assert_eq!(json["deny_rules"][0]["tool"]["any"][1], "read_key*");
                },
            ),
            ok(
                "mcp options, a method glob within tools/",
                proto(
                    "mcp",
                    "mcp: {max_body_bytes: 1024, strict_tool_names: false}\nrules:\n  - allow: {method: 'tools/*'}",
                ),
                |p| {
                    let rpc = endpoint(p).rpc.as_ref().expect("rpc");
                    assert_eq!(rpc.max_body_bytes(), 1024);
                    assert!(rpc.path.is_none() && rpc.takes_path("/anything"));
                },
            ),
            ok("allow_all without rules", proto("mcp", "mcp: {allow_all_known_mcp_methods: true}"), |p| {
                assert!(endpoint(p).rpc.as_ref().expect("rpc").rules.is_empty())
            }),
            ok(
                "allow_all with a tool rule and no method",
                proto("mcp", "mcp: {allow_all_known_mcp_methods: true}\nrules:\n  - allow: {tool: search}"),
                |p| assert!(endpoint(p).rpc.as_ref().expect("rpc").rules[0].allow.method.is_none()),
            ),
            ok(
                "json-rpc with any method and a body limit",
                proto(
                    "json-rpc",
                    "json_rpc: {max_body_bytes: 4096}\nrules:\n  - allow: {method: '*'}\ndeny_rules:\n  - {method: admin.shutdown}",
                ),
                |p| {
                    let rpc = endpoint(p).rpc.as_ref().expect("rpc");
                    assert_eq!(rpc.max_body_bytes(), 4096);
                    assert_eq!(endpoint(p).protocol, Some(Protocol::JsonRpc));
                },
            ),
            bad(
                "mcp without rules",
                proto("mcp", "path: /mcp"),
                vec![x(
                    8,
                    9,
                    k("protocol"),
                    "`protocol: mcp` needs `rules` (or `mcp: { allow_all_known_mcp_methods: true }`)",
                )],
            ),
            bad(
                "json-rpc without rules",
                proto("json-rpc", "path: /rpc"),
                vec![x(8, 9, k("protocol"), "`protocol: json-rpc` needs `rules`; without them no call is allowed")],
            ),
            bad(
                "deny rules without rules",
                proto("mcp", "deny_rules:\n  - {method: tools/call}"),
                vec![x(9, 9, k("deny_rules"), "`deny_rules` without an allow base (`rules`) can never take effect")],
            ),
            bad(
                "access on mcp",
                proto("mcp", &format!("access: full\n{call}")),
                vec![x(9, 9, k("access"), "`access` presets are HTTP methods and do not apply to `protocol: mcp`")],
            ),
            bad(
                "tool on another method",
                proto("mcp", "rules:\n  - allow: {method: initialize, tool: x}"),
                vec![x(10, 20, RULE, "`tool` matches only `tools/call`, and method `initialize` never is it")],
            ),
            bad(
                "no method without allow_all",
                proto("mcp", "rules:\n  - allow: {tool: x}"),
                vec![x(10, 20, RULE, "missing required field `method`")],
            ),
            bad(
                "neither method nor tool under allow_all",
                proto("mcp", "mcp: {allow_all_known_mcp_methods: true}\nrules:\n  - allow: {}"),
                vec![x(11, 20, RULE, "a rule needs `method` or `tool`")],
            ),
            bad(
                "mcp method *",
                proto("mcp", "rules:\n  - allow: {method: '*'}"),
                vec![x(10, 29, kr("method"), "`*` is not an MCP method matcher")],
            ),
            bad(
                "mcp method glob outside tools/",
                proto("mcp", "rules:\n  - allow: {method: '*/list'}"),
                vec![x(10, 29, kr("method"), "MCP method globs stay within `tools/`")],
            ),
            bad(
                "json-rpc method glob",
                proto("json-rpc", "rules:\n  - allow: {method: 'eth_*'}"),
                vec![x(10, 29, kr("method"), "json-rpc methods are exact names or `*`; `eth_*` is neither")],
            ),
            bad(
                "json-rpc tool",
                proto("json-rpc", "rules:\n  - allow: {method: call, tool: x}"),
                vec![x(10, 41, kr("tool"), "`tool` applies only to `protocol: mcp`")],
            ),
            bad(
                "wildcard tool without strict names",
                proto(
                    "mcp",
                    "mcp: {strict_tool_names: false}\nrules:\n  - allow: {method: tools/call, tool: {any: [ok, 'x*']}}",
                ),
                vec![x(11, 58, kr("tool.any[1]"), "a wildcard tool matcher (`x*`) needs `strict_tool_names: true`")],
            ),
            bad(
                "a literal tool strict names never allow",
                proto("mcp", "rules:\n  - allow: {method: tools/call, tool: 'no spaces'}"),
                vec![x(10, 47, kr("tool"), "tool `no spaces` can never match: under `strict_tool_names`")],
            ),
            bad(
                "max_body_bytes out of range",
                proto("mcp", &format!("mcp: {{max_body_bytes: 0}}\njson_rpc: {{max_body_bytes: 16777217}}\n{call}")),
                vec![
                    x(9, 31, k("mcp.max_body_bytes"), "0 is out of range; expected 1 to 16777216"),
                    x(10, 9, k("json_rpc"), "`json_rpc` can never take effect without `protocol: json-rpc`"),
                ],
            ),
            bad(
                "unknown mcp option and a wrong type",
                proto("mcp", &format!("mcp: {{strict: true, allow_all_known_mcp_methods: yes}}\n{call}")),
                vec![
                    x(9, 15, k("mcp.strict"), "unknown field `strict`, expected one of: max_body_bytes"),
                    x(9, 58, k("mcp.allow_all_known_mcp_methods"), "expected a boolean"),
                ],
            ),
            bad(
                "path and query in an mcp rule",
                proto("mcp", "rules:\n  - allow: {method: tools/list, path: /x, query: {a: b}}"),
                vec![
                    x(
                        10,
                        41,
                        kr("path"),
                        "`path` has no effect here: it belongs in a `protocol: rest` or `websocket` rule",
                    ),
                    x(10, 51, kr("query"), "`query` has no effect here"),
                ],
            ),
            bad(
                "endpoint path must start with /",
                proto("mcp", &format!("path: mcp\n{call}")),
                vec![x(9, 15, k("path"), "path `mcp` must start with `/`")],
            ),
            bad(
                "tls skip",
                proto("mcp", &format!("tls: skip\n{call}")),
                vec![x(9, 14, k("tls"), "`tls: skip` cannot be combined with `protocol: mcp`")],
            ),
        ],
    );
}
