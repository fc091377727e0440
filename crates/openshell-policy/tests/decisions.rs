//! Table-driven tests of the decision function: a few policies written in YAML,
//! and for each a table of requests with the expected verdict, policy key and reason.

use std::net::IpAddr;

use openshell_policy::{Decision, Engine, HttpRequest, Policy, Reason, Request, Verdict, load_str};

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

/// Host matching, ports, binaries and SSRF rules (all L4).
const NET: &str = r#"
version: 1
network_policies:
  exact:
    endpoints:
      - host: Api.Example.COM
        port: 443
      - host: trailing.example.com.
        port: 443
    binaries:
      - path: /usr/bin/curl
  star:
    endpoints:
      - host: "*.star.test.com"
        port: 443
    binaries:
      - path: /usr/bin/curl
  many:
    endpoints:
      - host: "**.many.test.com"
        port: 443
    binaries:
      - path: /usr/bin/curl
  dash:
    endpoints:
      - host: "*-api.dash.test.com"
        port: 443
    binaries:
      - path: /usr/bin/curl
  middle:
    endpoints:
      - host: "api.*.middle.test.com"
        port: 443
    binaries:
      - path: /usr/bin/curl
  ports:
    endpoints:
      - host: ports.test.com
        ports: [80, 443, 8443]
      - host: both.test.com
        port: 80
        ports: [8080, 9090]
      - host: split.test.com
        port: 22
    binaries:
      - path: /usr/bin/curl
  split-other:
    endpoints:
      - host: split.test.com
        port: 443
    binaries:
      - path: /usr/bin/git
  bins:
    endpoints:
      - host: bins.test.com
        port: 443
    binaries:
      - path: /usr/bin/python3
      - path: /opt/tools/*
      - path: /nix/store/**/bin/node
      - path: /usr/lib/jvm/**
      - path: /usr/local/bin/py*
  anybin:
    endpoints:
      - host: anybin.test.com
        port: 443
    binaries:
      - path: /**
  ips:
    endpoints:
      - host: 93.184.216.34
        port: 443
      - host: "2606:4700::1111"
        port: 443
      - host: "[2001:DB8:0:0::7]"
        port: 443
      - host: 10.9.9.9
        port: 443
        allowed_ips: [10.9.0.0/16]
      - host: internal.corp.test
        port: 443
        allowed_ips: [192.168.10.0/24, "fd00:1::/32"]
      - host: nointernal.corp.test
        port: 443
      - host: localhost
        port: 8080
    binaries:
      - path: /usr/bin/curl
"#;

/// L7 rules, presets, deny rules, audit.
const HTTP: &str = r#"
version: 1
network_policies:
  ro:
    endpoints:
      - host: ro.test.com
        port: 443
        protocol: rest
        access: read-only
    binaries:
      - path: /usr/bin/curl
  rw:
    endpoints:
      - host: rw.test.com
        port: 443
        protocol: rest
        access: read-write
    binaries:
      - path: /usr/bin/curl
  full:
    endpoints:
      - host: full.test.com
        port: 443
        protocol: rest
        access: full
        deny_rules:
          - method: DELETE
            path: /protected/**
    binaries:
      - path: /usr/bin/curl
  api:
    endpoints:
      - host: api.test.com
        port: 443
        protocol: rest
        rules:
          - allow: {method: GET, path: "/repos/*"}
          - allow: {method: GET, path: "/repos/*/issues/**"}
          - allow: {method: "*", path: "/anything/**"}
          - allow: {method: POST, path: "/v?/upload"}
          - allow: {method: GET, path: "/files/*.txt"}
          - allow:
              method: GET
              path: /search
              query:
                q: "*"
                sort: {any: [asc, desc]}
          - allow:
              method: GET
              path: /tags
              query:
                v: "v*"
          - allow:
              method: GET
              path: /deep
              query:
                ref: "**"
        deny_rules:
          - method: "*"
            path: /repos/secret
          - method: GET
            path: /search
            query:
              q: "password*"
          - method: GET
            path: "/anything/admin/**"
          - method: POST
            path: "/anything/**"
            query:
              force: {any: ["true", "1"]}
    binaries:
      - path: /usr/bin/curl
  audited:
    endpoints:
      - host: audit.test.com
        port: 443
        protocol: rest
        enforcement: audit
        rules:
          - allow: {method: GET, path: "/ok/**"}
        deny_rules:
          - method: GET
            path: /ok/blocked
    binaries:
      - path: /usr/bin/curl
  enforced:
    endpoints:
      - host: enforce.test.com
        port: 443
        protocol: rest
        enforcement: enforce
        rules:
          - allow: {method: GET, path: "/ok/**"}
        deny_rules:
          - method: GET
            path: /ok/blocked
    binaries:
      - path: /usr/bin/curl
  shared-a:
    endpoints:
      - host: shared.test.com
        port: 443
        protocol: rest
        access: full
    binaries:
      - path: /usr/bin/curl
  shared-b:
    endpoints:
      - host: shared.test.com
        port: 443
        protocol: rest
        rules:
          - allow: {method: GET, path: "/**"}
        deny_rules:
          - method: DELETE
            path: "/**"
          - method: GET
            path: "/admin/**"
    binaries:
      - path: /usr/bin/curl
  a-audit-deny:
    endpoints:
      - host: mixaudit.test.com
        port: 443
        protocol: rest
        enforcement: audit
        access: full
        deny_rules:
          - method: DELETE
            path: "/**"
    binaries:
      - path: /usr/bin/curl
  b-enforce-allow:
    endpoints:
      - host: mixaudit.test.com
        port: 443
        protocol: rest
        access: read-only
    binaries:
      - path: /usr/bin/curl
  mixed-l4:
    endpoints:
      - host: mixed.test.com
        port: 443
    binaries:
      - path: /usr/bin/git
  mixed-rest:
    endpoints:
      - host: mixed.test.com
        port: 443
        protocol: rest
        access: read-only
    binaries:
      - path: /usr/bin/curl
  wildrest:
    endpoints:
      - host: "*.wild.test.com"
        port: 443
        protocol: rest
        rules:
          - allow: {method: GET, path: "/**"}
        deny_rules:
          - method: GET
            path: "/private/**"
    binaries:
      - path: /usr/bin/*
"#;

fn load(name: &str, yaml: &str) -> Policy {
    match load_str(name, yaml) {
        Ok(p) => p,
        Err(e) => panic!("policy {name} does not load:\n{e}"),
    }
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want<'a> {
    Allow(&'a str),
    Deny(Reason, Option<&'a str>),
    Audit(Reason, &'a str),
}

#[derive(Debug, Clone)]
struct Case {
    host: &'static str,
    port: u16,
    bin: Option<&'static str>,
    anc: &'static [&'static str],
    ip: Option<&'static str>,
    /// `METHOD /path?k=v&k=v`
    http: Option<&'static str>,
    want: Want<'static>,
    inspect: Option<bool>,
    rule: Option<usize>,
    /// A raw TCP connection the fence redirected (`Engine::decide_transparent`).
    raw: bool,
}

fn req(host: &'static str, port: u16, bin: &'static str) -> Case {
    Case {
        host,
        port,
        bin: Some(bin),
        anc: &[],
        ip: None,
        http: None,
        want: Want::Deny(Reason::NoMatchingPolicy, None),
        inspect: None,
        rule: None,
        raw: false,
    }
}

/// A request with `curl` as the caller.
fn curl(host: &'static str, port: u16) -> Case {
    req(host, port, "/usr/bin/curl")
}

/// An L7 request from `curl` on port 443.
fn http(host: &'static str, line: &'static str) -> Case {
    curl(host, 443).http(line)
}

impl Case {
    fn no_bin(mut self) -> Self {
        self.bin = None;
        self
    }
    fn anc(mut self, anc: &'static [&'static str]) -> Self {
        self.anc = anc;
        self
    }
    fn ip(mut self, ip: &'static str) -> Self {
        self.ip = Some(ip);
        self
    }
    fn http(mut self, line: &'static str) -> Self {
        self.http = Some(line);
        self
    }
    fn allow(mut self, policy: &'static str) -> Self {
        self.want = Want::Allow(policy);
        self
    }
    fn deny(mut self, reason: Reason, policy: Option<&'static str>) -> Self {
        self.want = Want::Deny(reason, policy);
        self
    }
    fn no_policy(self) -> Self {
        self.deny(Reason::NoMatchingPolicy, None)
    }
    fn ssrf(self) -> Self {
        self.deny(Reason::SsrfBlocked, None)
    }
    fn audit(mut self, reason: Reason, policy: &'static str) -> Self {
        self.want = Want::Audit(reason, policy);
        self
    }
    fn inspect(mut self, inspect: bool) -> Self {
        self.inspect = Some(inspect);
        self
    }
    fn rule(mut self, i: usize) -> Self {
        self.rule = Some(i);
        self
    }
    fn raw(mut self) -> Self {
        self.raw = true;
        self
    }
}

/// Splits `GET /p?a=1&b` into method, path and query pairs.
fn parse_http(line: &str) -> (&str, &str, Vec<(&str, &str)>) {
    let (method, target) = line.split_once(' ').expect("`METHOD /path` in the table");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = query.split('&').filter(|s| !s.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, ""))).collect();
    (method, path, pairs)
}

/// Runs a table, reporting every mismatch (not only the first).
fn run(name: &str, policy: &Policy, cases: &[Case]) {
    let engine = Engine::new(policy);
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let parsed = c.http.map(parse_http);
        let http = parsed.as_ref().map(|(m, p, q)| HttpRequest::plain(m, p, q.as_slice()));
        let resolved_ip = c.ip.map(|s| s.parse::<IpAddr>().expect("IP in the table"));
        let r = Request { host: c.host, port: c.port, binary: c.bin, ancestors: c.anc, resolved_ip, http };
        let d = if c.raw { engine.decide_transparent(&r) } else { engine.decide(&r) };
        let got = match d.verdict {
            Verdict::Allow => d.reason.is_none().then(|| Want::Allow(d.policy.unwrap_or("<none>"))),
            Verdict::Deny => d.reason.map(|reason| Want::Deny(reason, d.policy)),
            Verdict::Audit => d.reason.map(|reason| Want::Audit(reason, d.policy.unwrap_or("<none>"))),
        };
        let mut problems = Vec::new();
        if got != Some(c.want) {
            problems.push(format!("want {:?}, got {:?}", c.want, d_summary(&d)));
        }
        if let Some(inspect) = c.inspect
            && d.inspect != inspect
        {
            problems.push(format!("want inspect={inspect}, got {}", d.inspect));
        }
        if c.rule.is_some() && d.rule != c.rule {
            problems.push(format!("want deny rule {:?}, got {:?}", c.rule, d.rule));
        }
        if d.verdict == Verdict::Deny && d.reason.is_none() {
            problems.push("deny without a reason".into());
        }
        // Every decision must be explainable without panicking.
        let text = d.explain(&engine, &r);
        if text.is_empty() {
            problems.push("empty explanation".into());
        }
        if !problems.is_empty() {
            failures.push(format!("  [{name} #{i}] {c:?}\n      {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn d_summary(d: &Decision<'_>) -> String {
    format!(
        "{} policy={:?} reason={:?} rule={:?} range={:?} inspect={}",
        d.verdict, d.policy, d.reason, d.rule, d.range, d.inspect
    )
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

fn host_cases() -> Vec<Case> {
    vec![
        // Exact names: case-insensitive, one trailing dot ignored (on either side).
        curl("api.example.com", 443).allow("exact"),
        curl("API.EXAMPLE.COM", 443).allow("exact"),
        curl("Api.Example.Com", 443).allow("exact"),
        curl("api.example.com.", 443).allow("exact"),
        curl("API.example.com.", 443).allow("exact"),
        curl("trailing.example.com", 443).allow("exact"),
        curl("trailing.example.com.", 443).allow("exact"),
        curl("TRAILING.EXAMPLE.COM.", 443).allow("exact"),
        curl("api.example.com..", 443).no_policy(),
        curl("API.EXAMPLE.COM..", 443).no_policy(),
        curl("example.com", 443).no_policy(),
        curl("x.api.example.com", 443).no_policy(),
        curl("api.example.co", 443).no_policy(),
        curl("api-example.com", 443).no_policy(),
        curl("apiXexample.com", 443).no_policy(),
        curl(".api.example.com", 443).no_policy(),
        curl("", 443).no_policy(),
        // `*` is exactly one label.
        curl("a.star.test.com", 443).allow("star"),
        curl("A.STAR.TEST.COM", 443).allow("star"),
        curl("a.star.test.com.", 443).allow("star"),
        curl("with-dash.star.test.com", 443).allow("star"),
        curl("x123.star.test.com", 443).allow("star"),
        curl("star.test.com", 443).no_policy(),
        curl("a.b.star.test.com", 443).no_policy(),
        curl("a.star.test.org", 443).no_policy(),
        curl("astar.test.com", 443).no_policy(),
        curl("a.xstar.test.com", 443).no_policy(),
        // `**` is one or more labels.
        curl("a.many.test.com", 443).allow("many"),
        curl("a.b.many.test.com", 443).allow("many"),
        curl("a.b.c.d.many.test.com", 443).allow("many"),
        curl("A.B.Many.Test.Com.", 443).allow("many"),
        curl("many.test.com", 443).no_policy(),
        curl("a.many.test.org", 443).no_policy(),
        curl("a.bmany.test.com", 443).no_policy(),
        // `*` inside the first label.
        curl("foo-api.dash.test.com", 443).allow("dash"),
        curl("-api.dash.test.com", 443).allow("dash"),
        curl("FOO-API.dash.test.com", 443).allow("dash"),
        curl("foo-apix.dash.test.com", 443).no_policy(),
        curl("foo-api.x.dash.test.com", 443).no_policy(),
        curl("x.foo-api.dash.test.com", 443).no_policy(),
        curl("api.dash.test.com", 443).no_policy(),
        curl("dash.test.com", 443).no_policy(),
        // A middle `*` label.
        curl("api.eu.middle.test.com", 443).allow("middle"),
        curl("API.US-1.middle.test.com", 443).allow("middle"),
        curl("api.middle.test.com", 443).no_policy(),
        curl("api.a.b.middle.test.com", 443).no_policy(),
        curl("web.eu.middle.test.com", 443).no_policy(),
        curl("x.api.eu.middle.test.com", 443).no_policy(),
    ]
}

fn port_cases() -> Vec<Case> {
    vec![
        curl("ports.test.com", 80).allow("ports"),
        curl("ports.test.com", 443).allow("ports"),
        curl("ports.test.com", 8443).allow("ports"),
        curl("ports.test.com", 8080).deny(Reason::PortNotAllowed, Some("ports")),
        curl("ports.test.com", 1).deny(Reason::PortNotAllowed, Some("ports")),
        curl("ports.test.com", 65535).deny(Reason::PortNotAllowed, Some("ports")),
        // `ports` wins over `port`.
        curl("both.test.com", 8080).allow("ports"),
        curl("both.test.com", 9090).allow("ports"),
        curl("both.test.com", 80).deny(Reason::PortNotAllowed, Some("ports")),
        // Single `port`.
        curl("api.example.com", 80).deny(Reason::PortNotAllowed, Some("exact")),
        curl("API.EXAMPLE.COM.", 8443).deny(Reason::PortNotAllowed, Some("exact")),
        curl("a.star.test.com", 80).deny(Reason::PortNotAllowed, Some("star")),
        curl("a.b.many.test.com", 22).deny(Reason::PortNotAllowed, Some("many")),
        // One host in two policies: each port with its own binaries.
        curl("split.test.com", 22).allow("ports"),
        req("split.test.com", 443, "/usr/bin/git").allow("split-other"),
        req("split.test.com", 22, "/usr/bin/git").deny(Reason::BinaryNotAllowed, Some("ports")),
        curl("split.test.com", 443).deny(Reason::BinaryNotAllowed, Some("split-other")),
        curl("split.test.com", 80).deny(Reason::PortNotAllowed, Some("ports")),
        // No policy at all beats a port check.
        curl("nothing.test.com", 443).no_policy(),
        curl("nothing.test.com", 80).no_policy(),
    ]
}

fn binary_cases() -> Vec<Case> {
    const B: &str = "bins.test.com";
    let bin_denied = |c: Case| c.deny(Reason::BinaryNotAllowed, Some("bins"));
    vec![
        // Exact path.
        req(B, 443, "/usr/bin/python3").allow("bins"),
        bin_denied(req(B, 443, "/usr/bin/python3.11")),
        bin_denied(req(B, 443, "/usr/bin/python")),
        bin_denied(req(B, 443, "/USR/BIN/PYTHON3")),
        bin_denied(req(B, 443, "usr/bin/python3")),
        bin_denied(req(B, 443, "/usr/bin/python3/")),
        // `*` stays within one segment.
        req(B, 443, "/opt/tools/fetch").allow("bins"),
        req(B, 443, "/opt/tools/x").allow("bins"),
        bin_denied(req(B, 443, "/opt/tools/sub/fetch")),
        bin_denied(req(B, 443, "/opt/tools")),
        bin_denied(req(B, 443, "/opt/toolsx/fetch")),
        // `**` is one or more segments.
        req(B, 443, "/nix/store/abc-node-20/bin/node").allow("bins"),
        req(B, 443, "/nix/store/a/b/c/bin/node").allow("bins"),
        bin_denied(req(B, 443, "/nix/store/bin/node")),
        bin_denied(req(B, 443, "/nix/store/abc/bin/nodejs")),
        bin_denied(req(B, 443, "/nix/store/abc/sbin/node")),
        req(B, 443, "/usr/lib/jvm/java-17/bin/java").allow("bins"),
        req(B, 443, "/usr/lib/jvm/x").allow("bins"),
        bin_denied(req(B, 443, "/usr/lib/jvm")),
        bin_denied(req(B, 443, "/usr/lib/jvmx/java")),
        // `*` as part of a segment.
        req(B, 443, "/usr/local/bin/python3.12").allow("bins"),
        req(B, 443, "/usr/local/bin/py").allow("bins"),
        bin_denied(req(B, 443, "/usr/local/bin/ruby")),
        bin_denied(req(B, 443, "/usr/local/bin/py/x")),
        // Ancestors: any of them may match.
        req(B, 443, "/bin/sh").anc(&["/usr/bin/python3"]).allow("bins"),
        req(B, 443, "/bin/sh").anc(&["/bin/bash", "/sbin/init"]).deny(Reason::BinaryNotAllowed, Some("bins")),
        req(B, 443, "/bin/sh").anc(&["/bin/bash", "/opt/tools/runner", "/sbin/init"]).allow("bins"),
        req(B, 443, "/usr/bin/env").anc(&["/nix/store/x/bin/node"]).allow("bins"),
        req(B, 443, "/usr/bin/python3").anc(&["/bin/bash"]).allow("bins"),
        // Unknown caller: fail closed, whatever the ancestors.
        curl(B, 443).no_bin().deny(Reason::BinaryNotAllowed, Some("bins")),
        curl(B, 443).no_bin().anc(&["/usr/bin/python3"]).deny(Reason::BinaryNotAllowed, Some("bins")),
        curl("anybin.test.com", 443).no_bin().deny(Reason::BinaryNotAllowed, Some("anybin")),
        curl("api.example.com", 443).no_bin().deny(Reason::BinaryNotAllowed, Some("exact")),
        curl("a.star.test.com", 443).no_bin().deny(Reason::BinaryNotAllowed, Some("star")),
        // `/**` matches any absolute path.
        req("anybin.test.com", 443, "/usr/bin/anything").allow("anybin"),
        req("anybin.test.com", 443, "/x").allow("anybin"),
        req("anybin.test.com", 443, "/a/b/c/d/e/f").allow("anybin"),
        // Binary checks are per policy.
        req("api.example.com", 443, "/usr/bin/wget").deny(Reason::BinaryNotAllowed, Some("exact")),
        req("api.example.com", 443, "/usr/bin/wget").anc(&["/usr/bin/curl"]).allow("exact"),
        req("a.many.test.com", 443, "/usr/bin/python3").deny(Reason::BinaryNotAllowed, Some("many")),
        // Port is checked before binary.
        req("api.example.com", 80, "/usr/bin/wget").deny(Reason::PortNotAllowed, Some("exact")),
    ]
}

fn ssrf_cases() -> Vec<Case> {
    vec![
        // Literal always-blocked addresses, even when a policy names them.
        curl("127.0.0.1", 8080).ssrf(),
        curl("127.0.0.2", 8080).ssrf(),
        curl("169.254.169.254", 80).ssrf(),
        curl("169.254.1.1", 80).ssrf(),
        curl("0.0.0.0", 80).ssrf(),
        curl("::1", 8080).ssrf(),
        curl("[::1]", 8080).ssrf(),
        curl("::", 80).ssrf(),
        curl("[::]", 80).ssrf(),
        curl("fe80::1", 80).ssrf(),
        curl("::ffff:127.0.0.1", 8080).ssrf(),
        curl("[::ffff:127.0.0.1]", 8080).ssrf(),
        curl("::ffff:7f00:1", 8080).ssrf(),
        curl("::ffff:169.254.169.254", 80).ssrf(),
        curl("::FFFF:A9FE:A9FE", 80).ssrf(),
        curl("::ffff:0.0.0.0", 80).ssrf(),
        curl("224.0.0.1", 80).ssrf(),
        curl("255.255.255.255", 80).ssrf(),
        // Unknown binary or unlisted host: still SSRF first.
        curl("127.0.0.1", 8080).no_bin().ssrf(),
        curl("127.0.0.1", 9999).ssrf(),
        // Resolved addresses (DNS rebinding) are checked too.
        curl("localhost", 8080).ip("127.0.0.1").ssrf(),
        curl("api.example.com", 443).ip("127.0.0.1").ssrf(),
        curl("api.example.com", 443).ip("169.254.169.254").ssrf(),
        curl("api.example.com", 443).ip("::ffff:169.254.169.254").ssrf(),
        curl("api.example.com", 443).ip("0.0.0.0").ssrf(),
        curl("api.example.com", 443).ip("::").ssrf(),
        curl("api.example.com", 443).ip("fe80::abcd").ssrf(),
        curl("a.star.test.com", 443).ip("127.0.0.53").ssrf(),
        curl("unknown.test.com", 443).ip("127.0.0.1").ssrf(),
        // Public addresses: allowed as named.
        curl("93.184.216.34", 443).allow("ips"),
        curl("[93.184.216.34]", 443).allow("ips"),
        curl("93.184.216.34.", 443).allow("ips"),
        curl("93.184.216.35", 443).no_policy(),
        curl("2606:4700::1111", 443).allow("ips"),
        curl("[2606:4700::1111]", 443).allow("ips"),
        curl("2606:4700:0:0:0:0:0:1111", 443).allow("ips"),
        curl("2606:4700::1112", 443).no_policy(),
        curl("2001:db8::7", 443).allow("ips"),
        curl("2001:DB8::7", 443).allow("ips"),
        curl("93.184.216.34", 80).deny(Reason::PortNotAllowed, Some("ips")),
        curl("api.example.com", 443).ip("93.184.216.34").allow("exact"),
        curl("api.example.com", 443).ip("2606:4700::1").allow("exact"),
        // Private ranges: only through `allowed_ips`.
        // An IP-literal private host without `allowed_ips` is rejected at load (see
        // validation tests); a name resolving to a private address is refused here.
        curl("api.example.com", 443).ip("10.1.2.3").deny(Reason::SsrfBlocked, Some("exact")),
        curl("10.1.2.3", 443).no_policy(),
        curl("10.9.9.9", 443).allow("ips"),
        curl("internal.corp.test", 443).ip("192.168.10.5").allow("ips"),
        curl("internal.corp.test", 443).ip("::ffff:192.168.10.5").allow("ips"),
        curl("internal.corp.test", 443).ip("fd00:1::5").allow("ips"),
        curl("internal.corp.test", 443).ip("192.168.11.5").deny(Reason::SsrfBlocked, Some("ips")),
        curl("internal.corp.test", 443).ip("10.0.0.1").deny(Reason::SsrfBlocked, Some("ips")),
        curl("internal.corp.test", 443).ip("fd01::5").deny(Reason::SsrfBlocked, Some("ips")),
        curl("internal.corp.test", 443).ip("8.8.8.8").allow("ips"),
        curl("nointernal.corp.test", 443).ip("10.0.0.1").deny(Reason::SsrfBlocked, Some("ips")),
        curl("nointernal.corp.test", 443).ip("172.16.0.1").deny(Reason::SsrfBlocked, Some("ips")),
        curl("nointernal.corp.test", 443).ip("100.64.0.1").deny(Reason::SsrfBlocked, Some("ips")),
        curl("nointernal.corp.test", 443).ip("fd12::1").deny(Reason::SsrfBlocked, Some("ips")),
        curl("api.example.com", 443).ip("192.168.1.1").deny(Reason::SsrfBlocked, Some("exact")),
        // No policy for a private address: no matching policy.
        curl("unknown.test.com", 443).ip("10.0.0.1").no_policy(),
        curl("10.1.2.4", 443).no_policy(),
    ]
}

fn http_cases() -> Vec<Case> {
    use Reason::*;
    const API: &str = "api.test.com";
    let not_permitted = |c: Case| c.deny(MethodPathNotPermitted, Some("api"));
    let blocked = |c: Case| c.deny(BlockedByDenyRule, Some("api"));
    vec![
        // Presets.
        http("ro.test.com", "GET /").allow("ro"),
        http("ro.test.com", "HEAD /x").allow("ro"),
        http("ro.test.com", "OPTIONS /x/y/z").allow("ro"),
        http("ro.test.com", "POST /x").deny(MethodPathNotPermitted, Some("ro")),
        http("ro.test.com", "PUT /x").deny(MethodPathNotPermitted, Some("ro")),
        http("ro.test.com", "PATCH /x").deny(MethodPathNotPermitted, Some("ro")),
        http("ro.test.com", "DELETE /x").deny(MethodPathNotPermitted, Some("ro")),
        http("ro.test.com", "get /x").deny(MethodPathNotPermitted, Some("ro")),
        http("rw.test.com", "GET /x").allow("rw"),
        http("rw.test.com", "HEAD /x").allow("rw"),
        http("rw.test.com", "OPTIONS /x").allow("rw"),
        http("rw.test.com", "POST /x").allow("rw"),
        http("rw.test.com", "PUT /x").allow("rw"),
        http("rw.test.com", "PATCH /x").allow("rw"),
        http("rw.test.com", "DELETE /x").deny(MethodPathNotPermitted, Some("rw")),
        http("rw.test.com", "CONNECT /x").deny(MethodPathNotPermitted, Some("rw")),
        http("full.test.com", "GET /x").allow("full"),
        http("full.test.com", "DELETE /x").allow("full"),
        http("full.test.com", "PROPFIND /x").allow("full"),
        http("full.test.com", "DELETE /protected/a").deny(BlockedByDenyRule, Some("full")).rule(0),
        http("full.test.com", "DELETE /protected").allow("full"),
        http("full.test.com", "GET /protected/a").allow("full"),
        // Allow rules: `*` within a segment.
        http(API, "GET /repos/x").allow("api").inspect(true),
        http(API, "GET /repos/").allow("api"),
        not_permitted(http(API, "GET /repos")),
        not_permitted(http(API, "GET /repos/x/y")),
        not_permitted(http(API, "POST /repos/x")),
        not_permitted(http(API, "GET /Repos/x")),
        // `**` across `/` (one or more segments).
        http(API, "GET /repos/x/issues/1").allow("api"),
        http(API, "GET /repos/x/issues/1/comments/2").allow("api"),
        not_permitted(http(API, "GET /repos/x/issues")),
        not_permitted(http(API, "GET /repos/x/y/issues/1")),
        // Method `*`.
        http(API, "GET /anything/a").allow("api"),
        http(API, "DELETE /anything/a/b").allow("api"),
        http(API, "POST /anything/a").allow("api"),
        http(API, "BREW /anything/pot").allow("api"),
        not_permitted(http(API, "GET /anything")),
        // `?` and partial-segment `*`.
        http(API, "POST /v1/upload").allow("api"),
        http(API, "POST /v2/upload").allow("api"),
        not_permitted(http(API, "POST /v10/upload")),
        not_permitted(http(API, "POST /v/upload")),
        not_permitted(http(API, "GET /v1/upload")),
        http(API, "GET /files/a.txt").allow("api"),
        http(API, "GET /files/.txt").allow("api"),
        http(API, "GET /files/a.b.txt").allow("api"),
        not_permitted(http(API, "GET /files/a.txt.gz")),
        not_permitted(http(API, "GET /files/d/a.txt")),
        // Query: every configured parameter present, every value matching.
        http(API, "GET /search?q=rust&sort=asc").allow("api"),
        http(API, "GET /search?sort=desc&q=rust").allow("api"),
        http(API, "GET /search?q=&sort=asc").allow("api"),
        http(API, "GET /search?q=rust&sort=asc&page=2").allow("api"),
        http(API, "GET /search?q=rust&sort=asc&sort=desc").allow("api"),
        not_permitted(http(API, "GET /search?q=rust&sort=asc&sort=up")),
        not_permitted(http(API, "GET /search?q=rust&sort=up")),
        not_permitted(http(API, "GET /search?q=rust")),
        not_permitted(http(API, "GET /search?sort=asc")),
        not_permitted(http(API, "GET /search")),
        not_permitted(http(API, "GET /search?Q=rust&sort=asc")),
        not_permitted(http(API, "GET /search?q=rust&sort=ASC")),
        // Query globs use `.` as separator: `*` stays within a dot-separated part.
        not_permitted(http(API, "GET /search?q=file.txt&sort=asc")),
        http(API, "GET /tags?v=v1").allow("api"),
        http(API, "GET /tags?v=v").allow("api"),
        not_permitted(http(API, "GET /tags?v=v1.2")),
        not_permitted(http(API, "GET /tags?v=1")),
        not_permitted(http(API, "GET /tags?v=v1&v=x")),
        http(API, "GET /tags?v=v1&v=v2").allow("api"),
        http(API, "GET /deep?ref=main").allow("api"),
        http(API, "GET /deep?ref=release.1.2").allow("api"),
        http(API, "GET /deep?ref=").allow("api"),
        not_permitted(http(API, "GET /deep")),
        // Deny rules beat allow rules.
        blocked(http(API, "GET /repos/secret")).rule(0).inspect(true),
        blocked(http(API, "DELETE /repos/secret")).rule(0),
        http(API, "GET /repos/secrets").allow("api"),
        blocked(http(API, "GET /search?q=password123&sort=asc")).rule(1),
        blocked(http(API, "GET /search?q=password&sort=asc")).rule(1),
        // In deny rules one matching value of a repeated parameter is enough.
        blocked(http(API, "GET /search?q=rust&q=password1&sort=asc")).rule(1),
        blocked(http(API, "GET /search?q=password1&q=rust&sort=asc")).rule(1),
        // A deny rule blocks even requests no allow rule permits.
        blocked(http(API, "GET /search?q=password")).rule(1),
        http(API, "GET /search?q=mypassword&sort=asc").allow("api"),
        blocked(http(API, "GET /anything/admin/users")).rule(2),
        http(API, "POST /anything/admin/users").allow("api"),
        http(API, "GET /anything/admin").allow("api"),
        blocked(http(API, "POST /anything/x?force=true")).rule(3),
        blocked(http(API, "POST /anything/x?force=1")).rule(3),
        blocked(http(API, "POST /anything/x?force=0&force=1")).rule(3),
        http(API, "POST /anything/x?force=0").allow("api"),
        http(API, "POST /anything/x").allow("api"),
        http(API, "GET /anything/x?force=true").allow("api"),
        // L4 on a REST endpoint: allowed, to be inspected.
        curl(API, 443).allow("api").inspect(true),
        curl("ro.test.com", 443).allow("ro").inspect(true),
        curl(API, 80).deny(PortNotAllowed, Some("api")),
        req(API, 443, "/usr/bin/wget").deny(BinaryNotAllowed, Some("api")),
        req(API, 443, "/usr/bin/wget").http("GET /repos/x").deny(BinaryNotAllowed, Some("api")),
        curl("unknown.test.com", 443).http("GET /").no_policy(),
        curl(API, 443).no_bin().http("GET /repos/x").deny(BinaryNotAllowed, Some("api")),
        curl(API, 443).ip("127.0.0.1").http("GET /repos/x").ssrf(),
        curl(API, 443).ip("10.0.0.1").http("GET /repos/x").deny(SsrfBlocked, Some("api")),
        // Enforcement: default and explicit enforce deny; audit allows but logs.
        http("audit.test.com", "GET /ok/x").allow("audited"),
        http("audit.test.com", "GET /ok/blocked").audit(BlockedByDenyRule, "audited").rule(0),
        http("audit.test.com", "GET /nope").audit(MethodPathNotPermitted, "audited"),
        http("audit.test.com", "POST /ok/x").audit(MethodPathNotPermitted, "audited"),
        http("enforce.test.com", "GET /ok/x").allow("enforced"),
        http("enforce.test.com", "GET /ok/blocked").deny(BlockedByDenyRule, Some("enforced")).rule(0),
        http("enforce.test.com", "GET /nope").deny(MethodPathNotPermitted, Some("enforced")),
        curl("audit.test.com", 443).allow("audited").inspect(true),
        // Deny beats allow across two policies for the same host.
        http("shared.test.com", "GET /x").allow("shared-a"),
        http("shared.test.com", "POST /x").allow("shared-a"),
        http("shared.test.com", "DELETE /x").deny(BlockedByDenyRule, Some("shared-b")).rule(0),
        http("shared.test.com", "GET /admin/users").deny(BlockedByDenyRule, Some("shared-b")).rule(1),
        http("SHARED.test.com.", "GET /admin/users").deny(BlockedByDenyRule, Some("shared-b")),
        // An audit deny in one policy, an enforced allow in another: audit.
        http("mixaudit.test.com", "GET /x").allow("a-audit-deny"),
        http("mixaudit.test.com", "DELETE /x").audit(BlockedByDenyRule, "a-audit-deny"),
        http("mixaudit.test.com", "POST /x").allow("a-audit-deny"),
        // L4 and REST endpoints for the same host, for different binaries.
        req("mixed.test.com", 443, "/usr/bin/git").allow("mixed-l4").inspect(false),
        curl("mixed.test.com", 443).allow("mixed-rest").inspect(true),
        http("mixed.test.com", "GET /x").allow("mixed-rest"),
        http("mixed.test.com", "POST /x").deny(MethodPathNotPermitted, Some("mixed-rest")),
        req("mixed.test.com", 443, "/usr/bin/wget").deny(BinaryNotAllowed, Some("mixed-l4")),
        // Wildcard host with REST rules and a binary glob.
        http("a.wild.test.com", "GET /x").allow("wildrest"),
        http("A.WILD.TEST.COM.", "GET /x/y").allow("wildrest"),
        http("a.wild.test.com", "GET /private/key").deny(BlockedByDenyRule, Some("wildrest")),
        http("a.wild.test.com", "POST /x").deny(MethodPathNotPermitted, Some("wildrest")),
        req("a.wild.test.com", 443, "/usr/bin/wget").http("GET /x").allow("wildrest"),
        req("a.wild.test.com", 443, "/usr/local/bin/wget").http("GET /x").deny(BinaryNotAllowed, Some("wildrest")),
        http("wild.test.com", "GET /x").no_policy(),
        http("a.b.wild.test.com", "GET /x").no_policy(),
    ]
}

#[test]
fn hosts() {
    run("hosts", &load("net", NET), &host_cases());
}

#[test]
fn ports() {
    run("ports", &load("net", NET), &port_cases());
}

#[test]
fn binaries() {
    run("binaries", &load("net", NET), &binary_cases());
}

#[test]
fn ssrf() {
    run("ssrf", &load("net", NET), &ssrf_cases());
}

/// Raw TCP (`protocol: tcp`): a connection the fence redirected is decided
/// against `protocol: tcp` endpoints only, by host, port, binary and address;
/// through the proxy a tcp endpoint is an L4 one, never inspected.
const TCP: &str = r#"
version: 1
network_policies:
  git:
    endpoints:
      - { host: git.example.test, port: 22, protocol: tcp, allowed_ips: [10.214.0.0/16] }
      - { host: "10.214.1.3", port: 5432, protocol: tcp, allowed_ips: [10.214.1.3/32] }
      - { host: "*.db.example.test", port: 5432, protocol: tcp, allowed_ips: [10.214.0.0/16] }
    binaries: [{ path: /usr/bin/ssh }]
  web:
    endpoints:
      - { host: api.example.test, port: 443, allowed_ips: [10.214.0.0/16] }
      - { host: git.example.test, port: 443, protocol: rest, access: read-only, allowed_ips: [10.214.0.0/16] }
    binaries: [{ path: /usr/bin/ssh }, { path: /usr/bin/curl }]
"#;

fn tcp_cases() -> Vec<Case> {
    use Reason::*;
    let ssh = |host, port| req(host, port, "/usr/bin/ssh").ip("10.214.1.2");
    vec![
        ssh("git.example.test", 22).raw().allow("git").inspect(false),
        ssh("GIT.example.test.", 22).raw().allow("git"),
        ssh("git.example.test", 22).allow("git").inspect(false),
        curl("git.example.test", 22).ip("10.214.1.2").raw().deny(BinaryNotAllowed, Some("git")),
        ssh("git.example.test", 2222).raw().deny(PortNotAllowed, Some("git")),
        ssh("a.db.example.test", 5432).raw().allow("git"),
        ssh("a.b.db.example.test", 5432).raw().no_policy(),
        req("10.214.1.3", 5432, "/usr/bin/ssh").raw().allow("git"),
        req("10.214.1.4", 5432, "/usr/bin/ssh").raw().no_policy(),
        // Endpoints for the proxy are never reached around it: an L4 one, and a
        // REST one (its rules would be skipped). Through the proxy both allow.
        ssh("api.example.test", 443).raw().no_policy(),
        ssh("api.example.test", 443).allow("web").inspect(false),
        curl("git.example.test", 443).ip("10.214.1.2").raw().deny(PortNotAllowed, Some("git")),
        curl("git.example.test", 443).ip("10.214.1.2").allow("web").inspect(true),
        // The address rules hold for raw TCP too.
        req("git.example.test", 22, "/usr/bin/ssh").ip("169.254.169.254").raw().ssrf(),
        req("git.example.test", 22, "/usr/bin/ssh").ip("192.168.1.9").raw().deny(SsrfBlocked, Some("git")),
        req("git.example.test", 22, "/usr/bin/ssh").no_bin().raw().deny(BinaryNotAllowed, Some("git")),
    ]
}

#[test]
fn raw_tcp() {
    run("tcp", &load("tcp", TCP), &tcp_cases());
}

#[test]
fn http_rules() {
    run("http", &load("http", HTTP), &http_cases());
}

#[test]
fn case_count() {
    let n = host_cases().len() + port_cases().len() + binary_cases().len() + ssrf_cases().len() + http_cases().len();
    assert!(n >= 200, "only {n} decision cases");
}

#[test]
fn empty_policy_denies_everything() {
    let policy = load("empty", "version: 1\n");
    let cases = vec![
        curl("api.example.com", 443).no_policy(),
        curl("93.184.216.34", 443).no_policy(),
        http("api.test.com", "GET /").no_policy(),
        curl("127.0.0.1", 80).ssrf(),
    ];
    run("empty", &policy, &cases);
}

#[test]
fn ssrf_decisions_name_the_range() {
    let engine = Engine::new(&load("net", NET));
    let d = engine.decide(&Request::l4("169.254.169.254", 80, "/usr/bin/curl"));
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.range.is_some_and(|r| r.contains("169.254")), "{d:?}");
    let req = Request { resolved_ip: "10.1.2.3".parse().ok(), ..Request::l4("api.example.com", 443, "/usr/bin/curl") };
    let d = engine.decide(&req);
    assert!(d.range.is_some_and(|r| r.contains("10.0.0.0/8")), "{d:?}");
}

// ---------------------------------------------------------------------------
// Explanations
// ---------------------------------------------------------------------------

fn explain<'e>(engine: &'e Engine, r: &Request<'_>) -> (Decision<'e>, String) {
    let d = engine.decide(r);
    let text = d.explain(engine, r);
    (d, text)
}

fn assert_contains(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "explanation {text:?} should contain {p:?}");
    }
}

#[test]
fn explanations() {
    let net = Engine::new(&load("net", NET));
    let web = Engine::new(&load("http", HTTP));

    let (d, t) = explain(&net, &Request::l4("API.example.com", 443, "/usr/bin/curl"));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_contains(&t, &["allowed by policy 'exact'", "Api.Example.COM:443"]);

    let (_, t) = explain(&net, &Request::l4("nothing.test.com", 443, "/usr/bin/curl"));
    assert_contains(&t, &["no matching policy", "nothing.test.com"]);

    let (_, t) = explain(&net, &Request::l4("ports.test.com", 22, "/usr/bin/curl"));
    assert_contains(&t, &["port not allowed", "ports.test.com", "80, 443, 8443"]);

    let (_, t) = explain(&net, &Request::l4("split.test.com", 80, "/usr/bin/curl"));
    assert_contains(&t, &["port not allowed", "22, 443"]);

    let (_, t) = explain(&net, &Request::l4("bins.test.com", 443, "/usr/bin/wget"));
    assert_contains(
        &t,
        &["binary not allowed", "/usr/bin/wget", "bins.test.com:443", "/usr/bin/python3", "/opt/tools/*"],
    );

    let unknown = Request { binary: None, ..Request::l4("bins.test.com", 443, "") };
    let (_, t) = explain(&net, &unknown);
    assert_contains(&t, &["binary not allowed", "unidentified caller"]);

    let (_, t) = explain(&net, &Request::l4("169.254.169.254", 80, "/usr/bin/curl"));
    assert_contains(&t, &["SSRF-blocked address", "169.254.0.0/16"]);

    let req = Request { resolved_ip: "10.1.2.3".parse().ok(), ..Request::l4("api.example.com", 443, "/usr/bin/curl") };
    let (_, t) = explain(&net, &req);
    assert_contains(&t, &["SSRF-blocked address", "private (10.0.0.0/8)"]);

    let resolved = Request { resolved_ip: "127.0.0.1".parse().ok(), ..Request::l4("localhost", 8080, "/usr/bin/curl") };
    let (_, t) = explain(&net, &resolved);
    assert_contains(&t, &["SSRF-blocked address", "loopback"]);

    // L4 on a REST endpoint.
    let (d, t) = explain(&web, &Request::l4("api.test.com", 443, "/usr/bin/curl"));
    assert!(d.inspect);
    assert_contains(&t, &["allowed by policy 'api'", "L7 rules"]);

    let l7 = |host: &'static str,
              method: &'static str,
              path: &'static str,
              query: &'static [(&'static str, &'static str)]| {
        Request { http: Some(HttpRequest::plain(method, path, query)), ..Request::l4(host, 443, "/usr/bin/curl") }
    };
    let (_, t) = explain(&web, &l7("api.test.com", "GET", "/repos/x", &[]));
    assert_contains(&t, &["allowed by policy 'api'"]);
    assert!(!t.contains("L7 rules"), "{t}");

    let (_, t) = explain(&web, &l7("api.test.com", "DELETE", "/repos/x", &[]));
    assert_contains(&t, &["method/path not permitted", "DELETE /repos/x", "'api'"]);

    let (_, t) = explain(&web, &l7("api.test.com", "GET", "/search", &[("q", "password1"), ("sort", "asc")]));
    assert_contains(&t, &["blocked by deny rule", "GET /search?q=password*", "'api'"]);

    let (_, t) = explain(&web, &l7("api.test.com", "POST", "/anything/x", &[("force", "1")]));
    assert_contains(&t, &["blocked by deny rule", "force={true|1}"]);

    let (d, t) = explain(&web, &l7("audit.test.com", "GET", "/ok/blocked", &[]));
    assert_eq!(d.verdict, Verdict::Audit);
    assert_contains(&t, &["would be denied under enforce", "blocked by deny rule", "'audited'"]);

    let (d, t) = explain(&web, &l7("audit.test.com", "POST", "/x", &[]));
    assert_eq!(d.verdict, Verdict::Audit);
    assert_contains(&t, &["would be denied under enforce", "method/path not permitted", "POST /x"]);

    // Reason strings are stable.
    let all = [
        (Reason::NoMatchingPolicy, "no matching policy"),
        (Reason::BinaryNotAllowed, "binary not allowed"),
        (Reason::PortNotAllowed, "port not allowed"),
        (Reason::MethodPathNotPermitted, "method/path not permitted"),
        (Reason::BlockedByDenyRule, "blocked by deny rule"),
        (Reason::SsrfBlocked, "SSRF-blocked address"),
    ];
    for (r, s) in all {
        assert_eq!(r.to_string(), s);
        assert_eq!(r.as_str(), s);
    }
}

#[test]
fn explanations_of_ip_hosts_use_canonical_form() {
    let net = Engine::new(&load("net", NET));
    // Written in a non-canonical form, the host still finds its endpoint's ports.
    let (d, t) = explain(&net, &Request::l4("2606:4700:0:0:0:0:0:1111", 80, "/usr/bin/curl"));
    assert_eq!(d.reason, Some(Reason::PortNotAllowed));
    assert_contains(&t, &["port not allowed", "443"]);
    let (d, t) = explain(&net, &Request::l4("[2606:4700::1111]", 443, "/usr/bin/wget"));
    assert_eq!(d.reason, Some(Reason::BinaryNotAllowed));
    assert_contains(&t, &["/usr/bin/curl"]);
}

#[test]
fn ip_literals_never_match_wildcard_patterns() {
    // Numeric wildcard patterns are rejected at load, so an IP literal can only
    // ever match an endpoint naming that exact address.
    let yaml = r#"
version: 1
network_policies:
  numeric:
    endpoints:
      - host: "93.*.216.34"
        port: 443
      - host: "**.216.34"
        port: 443
    binaries:
      - path: /usr/bin/curl
"#;
    let err = load_str("numeric", yaml).expect_err("numeric wildcards are rejected");
    assert_eq!(err.diagnostics().len(), 2, "{err}");
    assert!(err.to_string().contains("IP addresses cannot contain wildcards"), "{err}");
}

#[test]
fn canonical_paths() {
    use openshell_policy::engine::canonical_path;
    let cases = [
        ("/a/b", "/a/b"),
        ("/a//b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/x/../b", "/a/b"),
        ("/../../a", "/a"),
        ("/a/b/", "/a/b/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/", "/"),
        ("//", "/"),
        ("", "/"),
        ("a/b", "/a/b"),
        ("/%73ecret", "/secret"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb", "/a%2Fb"),
        ("/a/%2e%2e/b", "/b"),
        ("/a%2e%2e/b", "/a../b"),
        ("/%7e", "/~"),
        ("/%25", "/%25"),
        ("/%zz", "/%25zz"),
        ("/%c3%a9", "/%C3%A9"),
        ("/caf\u{e9}/../x", "/x"),
        ("/a%", "/a%25"),
        ("/%a%30", "/%25a0"),
    ];
    for (input, want) in cases {
        assert_eq!(canonical_path(input), want, "{input:?}");
    }
}

#[test]
fn deny_rules_cannot_be_dodged_by_spelling() {
    let yaml = r#"
version: 1
network_policies:
  api:
    endpoints:
      - host: api.example.com
        port: 443
        protocol: rest
        rules:
          - allow: { method: "*", path: /repos/** }
        deny_rules:
          - { method: "*", path: /repos/secret }
          - { method: DELETE, path: /repos/** }
    binaries:
      - path: /usr/bin/curl
"#;
    let engine = Engine::new(&load("api", yaml));
    let decide = |method: &str, path: &str| {
        let req = Request {
            http: Some(HttpRequest::plain(method, path, &[])),
            ..Request::l4("api.example.com", 443, "/usr/bin/curl")
        };
        let d = engine.decide(&req);
        (d.verdict, d.reason)
    };
    let blocked = (Verdict::Deny, Some(Reason::BlockedByDenyRule));
    for path in [
        "/repos/secret",
        "/repos/x/../secret",
        "/repos//secret",
        "/repos/secret/",
        "/repos/%73ecret",
        "/repos/./secret",
        "/x/../repos/secret",
    ] {
        assert_eq!(decide("GET", path), blocked, "{path}");
    }
    assert_eq!(decide("delete", "/repos/a"), blocked, "lower-case method");
    assert_eq!(decide("GET", "/repos/public"), (Verdict::Allow, None));
    assert_eq!(decide("GET", "/repos/a%2Fsecret"), (Verdict::Allow, None), "an encoded slash stays inside its segment");
    assert_eq!(decide("GET", "/repos/../etc/passwd").0, Verdict::Deny, "climbing out of the allowed tree");
}
