//! The decision function on a large generated policy: 100 network policies,
//! 500 endpoints (exact and wildcard hosts, REST endpoints with allow and deny
//! rules and query matchers), several binaries per policy including globs.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use openshell_policy::{Engine, HttpRequest, Reason, Request, Verdict, load_str};

const POLICIES: usize = 100;
const ENDPOINTS_PER_POLICY: usize = 5;

/// The policy as YAML text, the way a user would write it.
fn policy_yaml() -> String {
    let mut y = String::from("version: 1\nnetwork_policies:\n");
    for i in 0..POLICIES {
        let _ = write!(y, "  service-{i:03}:\n    name: Service {i}\n    endpoints:\n");
        for j in 0..ENDPOINTS_PER_POLICY {
            match (i + j) % 5 {
                0 => {
                    let _ = write!(y, "      - host: svc{j}.corp{i}.example.com\n        port: 443\n");
                }
                1 => {
                    let _ = write!(y, "      - host: \"*.tenant{i}-{j}.example.net\"\n        ports: [443, 8443]\n");
                }
                2 => {
                    let _ = write!(y, "      - host: \"**.cdn{i}-{j}.example.org\"\n        port: 443\n");
                }
                3 => {
                    let _ = write!(y, "      - host: \"*-api.zone{i}-{j}.example.io\"\n        port: 443\n");
                }
                _ => {
                    let _ = write!(
                        y,
                        r#"      - host: rest{j}.svc{i}.example.com
        port: 443
        protocol: rest
        rules:
          - allow: {{method: GET, path: "/api/v1/repos/*"}}
          - allow: {{method: GET, path: "/api/v1/repos/*/issues/**"}}
          - allow: {{method: POST, path: "/api/v1/repos/*/issues"}}
          - allow:
              method: GET
              path: /api/v1/search
              query:
                q: "*"
                sort: {{any: [asc, desc, updated]}}
          - allow: {{method: "*", path: "/api/v1/scratch/**"}}
          - allow: {{method: GET, path: "/api/v1/orgs/*/members"}}
        deny_rules:
          - method: "*"
            path: "/api/v1/admin/**"
          - method: GET
            path: /api/v1/search
            query:
              q: "secret*"
          - method: DELETE
            path: "/api/v1/scratch/**"
            query:
              force: {{any: ["true", "1", "yes"]}}
"#
                    );
                }
            }
        }
        let _ = write!(
            y,
            "    binaries:\n      - path: /usr/bin/tool{i}\n      - path: /opt/app{i}/bin/*\n      - path: \"/nix/store/**/bin/agent{i}\"\n      - path: /usr/lib/app{i}/**\n"
        );
    }
    y
}

fn bench(c: &mut Criterion) {
    let yaml = policy_yaml();
    let policy = match load_str("bench.yaml", &yaml) {
        Ok(p) => p,
        Err(e) => panic!("generated policy does not load:\n{e}"),
    };
    let engine = Engine::new(&policy);
    assert_eq!(engine.size(), (POLICIES, POLICIES * ENDPOINTS_PER_POLICY));

    // L4. The caller is a shell whose ancestor is the policy's binary (matched by a glob).
    let ancestors = ["/bin/bash", "/usr/lib/app99/libexec/runner", "/sbin/init"];
    let near_end = Request { ancestors: &ancestors, ..Request::l4("svc1.corp99.example.com", 443, "/bin/sh") };
    let wildcard = Request::l4("a.b.cdn57-0.example.org", 443, "/nix/store/abc123-agent/bin/agent57");
    let no_policy = Request::l4("unknown.nowhere.example.com", 443, "/usr/bin/tool1");

    // L7 on a REST endpoint of policy 60.
    let query = [("q", "openshell"), ("sort", "desc"), ("page", "2")];
    let deny_query = [("q", "secret-token"), ("sort", "asc")];
    let l7 = |method, path, query| Request {
        http: Some(HttpRequest::plain(method, path, query)),
        ..Request::l4("rest4.svc60.example.com", 443, "/usr/bin/tool60")
    };
    let allowed = l7("GET", "/api/v1/search", &query[..]);
    let denied = l7("GET", "/api/v1/search", &deny_query[..]);
    let not_permitted = l7("PUT", "/api/v1/repos/openshell/settings", &[][..]);

    // Make sure each benchmark measures the path it is named after.
    let check = |r: &Request<'_>, verdict: Verdict, reason: Option<Reason>| {
        let d = engine.decide(r);
        assert_eq!((d.verdict, d.reason), (verdict, reason), "{:?}: {}", r.host, d.explain(&engine, r));
    };
    check(&near_end, Verdict::Allow, None);
    check(&wildcard, Verdict::Allow, None);
    check(&no_policy, Verdict::Deny, Some(Reason::NoMatchingPolicy));
    check(&allowed, Verdict::Allow, None);
    check(&denied, Verdict::Deny, Some(Reason::BlockedByDenyRule));
    check(&not_permitted, Verdict::Deny, Some(Reason::MethodPathNotPermitted));

    let mut g = c.benchmark_group("l4");
    g.bench_function("hit_near_end", |b| b.iter(|| engine.decide(black_box(&near_end)).verdict));
    g.bench_function("wildcard_hit", |b| b.iter(|| engine.decide(black_box(&wildcard)).verdict));
    g.bench_function("deny_no_policy", |b| b.iter(|| engine.decide(black_box(&no_policy)).verdict));
    g.finish();

    let mut g = c.benchmark_group("l7");
    g.bench_function("allowed", |b| b.iter(|| engine.decide(black_box(&allowed)).verdict));
    g.bench_function("deny_rule", |b| b.iter(|| engine.decide(black_box(&denied)).verdict));
    g.bench_function("not_permitted", |b| b.iter(|| engine.decide(black_box(&not_permitted)).verdict));
    g.finish();
}

/// The peer: the straightforward decision without an index, scanning every
/// endpoint of every policy in order (what a first implementation would do).
fn linear_scan(policy: &openshell_policy::Policy, r: &Request<'_>) -> bool {
    let callers: Vec<&str> = r.binary.into_iter().chain(r.ancestors.iter().copied()).collect();
    for (_, p) in policy.network_policies.iter() {
        let binary_ok = || p.binaries.iter().any(|b| callers.iter().any(|c| b.path.matches(c)));
        for ep in &p.endpoints {
            if !ep.host.matches(r.host) || !ep.ports.contains(&r.port) || !binary_ok() {
                continue;
            }
            let Some(h) = r.http else { return true };
            if ep.deny_rules.iter().any(|d| d.matches_deny(h.method, h.path, h.query)) {
                return false;
            }
            if ep.access.is_some_and(|a| a.allows_method(h.method))
                || ep.rules.iter().any(|rule| rule.allow.matches_allow(h.method, h.path, h.query))
            {
                return true;
            }
        }
    }
    false
}

fn peer(c: &mut Criterion) {
    let yaml = policy_yaml();
    let policy = match load_str("bench.yaml", &yaml) {
        Ok(p) => p,
        Err(e) => panic!("generated policy does not load:\n{e}"),
    };
    let ancestors = ["/bin/bash", "/usr/lib/app99/libexec/runner", "/sbin/init"];
    let near_end = Request { ancestors: &ancestors, ..Request::l4("svc1.corp99.example.com", 443, "/bin/sh") };
    let query = [("q", "openshell"), ("sort", "desc"), ("page", "2")];
    let allowed = Request {
        http: Some(HttpRequest::plain("GET", "/api/v1/search", &query[..])),
        ..Request::l4("rest4.svc60.example.com", 443, "/usr/bin/tool60")
    };
    assert!(linear_scan(&policy, &near_end) && linear_scan(&policy, &allowed));
    let mut g = c.benchmark_group("peer_linear_scan");
    g.bench_function("l4_hit_near_end", |b| b.iter(|| linear_scan(&policy, black_box(&near_end))));
    g.bench_function("l7_allowed", |b| b.iter(|| linear_scan(&policy, black_box(&allowed))));
    g.finish();
}

criterion_group!(benches, bench, peer);
criterion_main!(benches);
