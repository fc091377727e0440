//! `openshell policy advise`: the smallest change to a policy that allows what
//! a sandbox was denied, and nothing it did not ask for.
//!
//! Each denial is decided again under the current policy (so the reason is the
//! engine's, not a logged string) and, when it can be allowed without touching
//! anything written, becomes one endpoint in a new network policy for exactly
//! its binary: its exact host and port, the exact address as `allowed_ips` when
//! it is private (or, when the proxy refused before resolving, the `allowed_ips`
//! the policy already gives that same host elsewhere, so a private name it knows
//! stays reachable), and for an L7 denial an allow rule for exactly its method and
//! path. No wildcard is ever written. Explicit deny rules, blocked address
//! ranges (metadata, loopback, ...), unidentified callers and names that
//! themselves look like patterns are never proposed, nor anything for a denial
//! near a `websocket`, `mcp` or `json-rpc` endpoint. The result is checked
//! before it is offered: it loads, and every proposed request is allowed by it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::engine::{Engine, HttpRequest, Reason, Request};
use crate::error::LoadError;
use crate::model::{Policy, Protocol};
use crate::net::{AddrClass, classify};

/// One denied request, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Denial {
    pub host: String,
    pub port: u16,
    /// The calling executable; `None`: the caller was not identified.
    pub binary: Option<String>,
    /// The address the proxy resolved (and refused), when it got that far.
    pub ip: Option<IpAddr>,
    /// For an inspected (L7) request: its method and path (no query string).
    pub http: Option<(String, String)>,
    /// A raw TCP connection the fence redirected: only a `protocol: tcp`
    /// endpoint allows one.
    pub raw_tcp: bool,
}

/// What became of one denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed by the proposed change.
    Proposed,
    /// The current policy allows it already (it changed since).
    AllowedNow,
    /// Not proposed, with why.
    NotProposed(&'static str),
}

/// The proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    /// The policy text with the proposed network policies added (the same text
    /// when nothing is proposed).
    pub text: String,
    /// Each distinct denial and what became of it.
    pub denials: Vec<(Denial, Outcome)>,
}

impl Advice {
    /// Whether anything is proposed.
    pub fn changes(&self) -> bool {
        self.denials.iter().any(|(_, o)| *o == Outcome::Proposed)
    }
}

/// Why no advice could be given.
#[derive(Debug, thiserror::Error)]
pub enum AdviseError {
    #[error(transparent)]
    Current(LoadError),
    #[error(
        "{file}: `network_policies` is written in flow style ({{...}}); advise adds entries to a block-style mapping: rewrite it as one"
    )]
    FlowStyle { file: String },
    #[error("the proposed policy does not load (a bug in advise): {0}")]
    Proposed(LoadError),
    #[error("the proposed policy would still deny {0} (a bug in advise)")]
    StillDenied(String),
}

impl Denial {
    fn request<'a>(&'a self, binary: &'a str) -> Request<'a> {
        Request {
            host: &self.host,
            port: self.port,
            binary: Some(binary),
            ancestors: &[],
            resolved_ip: self.ip,
            http: self.http.as_ref().map(|(method, path)| HttpRequest::plain(method, path, &[])),
        }
    }

    /// The engine's decision about it.
    fn decide<'e>(&self, engine: &'e Engine, binary: &str) -> crate::engine::Decision<'e> {
        let req = self.request(binary);
        if self.raw_tcp { engine.decide_transparent(&req) } else { engine.decide(&req) }
    }

    /// How it reads in the listing: `/usr/bin/curl → GET api.test:443/v1/x`.
    pub fn describe(&self) -> String {
        let who = self.binary.as_deref().unwrap_or("(unidentified caller)");
        match &self.http {
            Some((method, path)) => format!("{who} → {method} {}:{}{path}", self.host, self.port),
            None if self.raw_tcp => format!("{who} → {}:{} (raw TCP)", self.host, self.port),
            None => format!("{who} → {}:{}", self.host, self.port),
        }
    }
}

/// Advice for `denials` against the policy `text` (read from `file`).
pub fn advise(file: &str, text: &str, denials: &[Denial]) -> Result<Advice, AdviseError> {
    let policy = crate::load_str(file, text).map_err(AdviseError::Current)?;
    let engine = Engine::new(&policy);
    let unique: BTreeSet<&Denial> = denials.iter().collect();
    let mut judged = Vec::new();
    // Endpoint lines (as written) per binary.
    let mut wanted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for denial in unique {
        let outcome = match proposal(&engine, &policy, denial) {
            Ok(Some(line)) => {
                let binary = denial.binary.as_deref().unwrap_or_default();
                wanted.entry(binary).or_default().insert(line);
                Outcome::Proposed
            }
            Ok(None) => Outcome::AllowedNow,
            Err(why) => Outcome::NotProposed(why),
        };
        judged.push((denial.clone(), outcome));
    }
    if wanted.is_empty() {
        return Ok(Advice { text: text.to_owned(), denials: judged });
    }
    let taken: BTreeSet<&str> = policy.network_policies.iter().map(|(k, _)| k.as_str()).collect();
    let mut entries = String::new();
    let mut n = 0;
    for (binary, lines) in &wanted {
        let key = loop {
            n += 1;
            let key = format!("advised_{n}");
            if !taken.contains(key.as_str()) {
                break key;
            }
        };
        entries
            .push_str(&format!("  {key}:\n    name: {}\n    endpoints:\n", quoted(&format!("advised for {binary}"))));
        for line in lines {
            entries.push_str(&format!("      - {line}\n"));
        }
        entries.push_str(&format!("    binaries:\n      - {{ path: {} }}\n", quoted(binary)));
    }
    let proposed = insert(file, text, &entries)?;
    check(file, &proposed, &judged)?;
    Ok(Advice { text: proposed, denials: judged })
}

/// The endpoint (one YAML flow mapping) that allows `denial` and nothing more;
/// `Ok(None)` when the policy allows it already; `Err` with why not.
fn proposal(engine: &Engine, policy: &Policy, denial: &Denial) -> Result<Option<String>, &'static str> {
    let Some(binary) = denial.binary.as_deref() else {
        return Err("the caller was not identified (nothing to name in binaries)");
    };
    if !literal(&denial.host) || !literal(binary) {
        return Err("a host or binary with a pattern character (*, ?, [) is never written as one");
    }
    let decision = denial.decide(engine, binary);
    // Their rules match messages and calls the log does not carry whole: a
    // proposal for them would be a guess, or an HTTP rule that never applies.
    if decision.endpoint.and_then(|e| e.protocol).is_some_and(|p| !matches!(p, Protocol::Rest | Protocol::Tcp)) {
        return Err(
            "its endpoint is a websocket, mcp or json-rpc one, whose rules are not proposed (edit them by hand)",
        );
    }
    let reason = match decision.reason {
        _ if decision.is_allowed() => return Ok(None),
        Some(reason) => reason,
        None => return Err("denied for no reason the engine gives"),
    };
    let private = match denial.ip.map(classify) {
        Some(AddrClass::Blocked(_)) => return Err("its address is in a range never allowed (loopback, metadata, ...)"),
        Some(AddrClass::Private(_)) => denial.ip,
        _ => None,
    };
    let mut line = format!("{{ host: {}, port: {}", quoted(&denial.host), denial.port);
    let ranges: Vec<String> = match (private, denial.ip) {
        (Some(ip), _) => vec![format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })],
        (None, None) => known_ranges(policy, &denial.host),
        (None, Some(_)) => Vec::new(),
    };
    if !ranges.is_empty() {
        let ranges: Vec<String> = ranges.iter().map(|r| quoted(r)).collect();
        line.push_str(&format!(", allowed_ips: [{}]", ranges.join(", ")));
    }
    match (reason, &denial.http) {
        (Reason::BlockedByDenyRule, _) => return Err("an explicit deny rule refuses it"),
        (Reason::SsrfBlocked, _) if private.is_none() => return Err("its address is in a range never allowed"),
        (_, Some((method, path))) => {
            if !literal(path) {
                return Err("its path has a pattern character (*, ?, [) and would be a wildcard");
            }
            line.push_str(&format!(
                ", protocol: rest, rules: [{{ allow: {{ method: {}, path: {} }} }}]",
                quoted(method),
                quoted(path)
            ));
        }
        (_, None) if denial.raw_tcp => line.push_str(", protocol: tcp"),
        (_, None) => {}
    }
    line.push_str(" }");
    Ok(Some(line))
}

/// The `allowed_ips` the policy gives endpoints written for exactly `host`.
fn known_ranges(policy: &Policy, host: &str) -> Vec<String> {
    let mut ranges = BTreeSet::new();
    for (_, network) in policy.network_policies.iter() {
        for endpoint in &network.endpoints {
            if !endpoint.host.is_wildcard() && endpoint.host.as_str().eq_ignore_ascii_case(host) {
                ranges.extend(endpoint.allowed_ips.iter().map(ToString::to_string));
            }
        }
    }
    ranges.into_iter().collect()
}

/// Whether `s` has no character a host, binary or path pattern treats specially.
fn literal(s: &str) -> bool {
    !s.contains(['*', '?', '[', ']', '{', '}'])
}

/// `s` as a double-quoted YAML scalar (JSON's escaping, which YAML reads).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// `text` with `entries` (block-mapping lines at two spaces) added at the end of
/// its `network_policies` mapping (made when absent or empty).
fn insert(file: &str, text: &str, entries: &str) -> Result<String, AdviseError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let top = |l: &str| !l.starts_with([' ', '\t', '#', '\n', '\r']) && !l.trim().is_empty();
    let Some(start) = lines.iter().position(|l| l.starts_with("network_policies:")) else {
        let sep = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
        return Ok(format!("{text}{sep}network_policies:\n{entries}"));
    };
    let value = lines[start]["network_policies:".len()..].split('#').next().unwrap_or("").trim();
    let mut out: String = lines[..start].concat();
    match value {
        "" => {
            let end = lines.iter().skip(start + 1).position(|l| top(l)).map_or(lines.len(), |i| start + 1 + i);
            // Trailing blank and comment lines stay after the added entries.
            let mut last = end;
            while last > start + 1 && !lines[last - 1].starts_with([' ', '\t']) {
                last -= 1;
            }
            out.push_str(&lines[start..last].concat());
            out.push_str(entries);
            out.push_str(&lines[last..].concat());
        }
        "{}" | "null" | "~" => {
            out.push_str("network_policies:\n");
            out.push_str(entries);
            out.push_str(&lines[start + 1..].concat());
        }
        _ => return Err(AdviseError::FlowStyle { file: file.to_owned() }),
    }
    Ok(out)
}

/// The proposed text loads and allows every proposed denial.
fn check(file: &str, text: &str, judged: &[(Denial, Outcome)]) -> Result<(), AdviseError> {
    let policy = crate::load_str(file, text).map_err(AdviseError::Proposed)?;
    let engine = Engine::new(&policy);
    for (denial, outcome) in judged {
        if *outcome == Outcome::Proposed {
            let binary = denial.binary.as_deref().unwrap_or_default();
            if !denial.decide(&engine, binary).is_allowed() {
                return Err(AdviseError::StillDenied(denial.describe()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "version: 1
# the agent's endpoints
network_policies:
  api:
    endpoints:
      - { host: api.example.com, port: 443 }
      - host: docs.example.com
        port: 443
        protocol: rest
        access: read-only
        deny_rules:
          - { method: GET, path: /private/** }
    binaries:
      - path: /usr/bin/curl

# a trailing comment
";

    fn denial(host: &str, port: u16, binary: Option<&str>) -> Denial {
        Denial { host: host.into(), port, binary: binary.map(Into::into), ip: None, http: None, raw_tcp: false }
    }

    fn allowed(text: &str, d: &Denial) -> bool {
        let engine = Engine::new(&crate::load_str("p.yaml", text).expect("loads"));
        d.decide(&engine, d.binary.as_deref().unwrap_or("/x")).is_allowed()
    }

    #[test]
    fn each_denial_gets_exactly_its_host_port_and_binary() {
        let host = denial("pypi.org", 443, Some("/usr/bin/pip"));
        let port = denial("api.example.com", 8443, Some("/usr/bin/curl"));
        let binary = denial("api.example.com", 443, Some("/usr/bin/wget"));
        let private =
            Denial { ip: Some("10.1.2.3".parse().expect("ip")), ..denial("db.internal", 5432, Some("/usr/bin/psql")) };
        let l7 = Denial {
            http: Some(("POST".into(), "/v1/issues".into())),
            ..denial("docs.example.com", 443, Some("/usr/bin/curl"))
        };
        // Raw TCP to an endpoint the policy gives the proxy: a tcp endpoint of its own.
        let raw = Denial { raw_tcp: true, ..denial("api.example.com", 443, Some("/usr/bin/curl")) };
        let all = [host.clone(), port.clone(), binary.clone(), private.clone(), l7.clone(), host.clone(), raw.clone()];
        let advice = advise("p.yaml", POLICY, &all).expect("advice");
        assert_eq!(advice.denials.len(), 6, "duplicates folded");
        assert!(advice.denials.iter().all(|(_, o)| *o == Outcome::Proposed), "{:?}", advice.denials);
        assert!(advice.text.contains("port: 443, protocol: tcp }"), "{}", advice.text);
        for d in [&host, &port, &binary, &private, &l7, &raw] {
            assert!(allowed(&advice.text, d), "{} allowed by:\n{}", d.describe(), advice.text);
        }
        // Nothing wider: neighbours of each proposal stay denied.
        let neighbours = [
            denial("pypi.org", 80, Some("/usr/bin/pip")),
            denial("files.pypi.org", 443, Some("/usr/bin/pip")),
            denial("pypi.org", 443, Some("/usr/bin/curl")),
            denial("api.example.com", 8443, Some("/usr/bin/wget")),
            Denial { ip: Some("10.1.2.4".parse().expect("ip")), ..denial("db.internal", 5432, Some("/usr/bin/psql")) },
            Denial { http: Some(("POST".into(), "/v1/issues/1".into())), ..l7.clone() },
            Denial { http: Some(("DELETE".into(), "/v1/issues".into())), ..l7.clone() },
            Denial { raw_tcp: true, ..denial("api.example.com", 443, Some("/usr/bin/wget")) },
            Denial { raw_tcp: true, ..denial("docs.example.com", 443, Some("/usr/bin/curl")) },
        ];
        for d in &neighbours {
            assert!(!allowed(&advice.text, d), "{} must stay denied:\n{}", d.describe(), advice.text);
        }
        // Written policies untouched, comments kept, the new ones at the section's end.
        assert!(advice.text.starts_with(&POLICY[..POLICY.find("\n# a trailing").expect("comment")]), "{}", advice.text);
        assert!(advice.text.ends_with("\n# a trailing comment\n"), "{}", advice.text);
        assert!(!advice.text.contains('*') || advice.text.matches('*').count() == POLICY.matches('*').count());
    }

    #[test]
    fn what_must_not_be_allowed_is_not_proposed() {
        let deny_rule = Denial {
            http: Some(("GET".into(), "/private/keys".into())),
            ..denial("docs.example.com", 443, Some("/usr/bin/curl"))
        };
        let metadata = Denial {
            ip: Some("169.254.169.254".parse().expect("ip")),
            ..denial("meta.test", 80, Some("/usr/bin/curl"))
        };
        let cases = [
            (denial("x.test", 443, None), "not identified"),
            (denial("*.example.com", 443, Some("/usr/bin/curl")), "pattern"),
            (deny_rule, "deny rule"),
            (metadata, "never allowed"),
        ];
        let advice =
            advise("p.yaml", POLICY, &cases.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>()).expect("advice");
        assert!(!advice.changes());
        assert_eq!(advice.text, POLICY);
        for (d, why) in &cases {
            let (_, outcome) = advice.denials.iter().find(|(x, _)| x == d).expect("judged");
            assert!(matches!(outcome, Outcome::NotProposed(w) if w.contains(why)), "{}: {outcome:?}", d.describe());
        }
        // Allowed by now: nothing to add.
        let advice =
            advise("p.yaml", POLICY, &[denial("api.example.com", 443, Some("/usr/bin/curl"))]).expect("advice");
        assert_eq!(advice.denials[0].1, Outcome::AllowedNow);
    }

    #[test]
    fn websocket_mcp_and_json_rpc_denials_are_not_proposed() {
        let text = format!(
            "{POLICY}  tools:\n    endpoints:\n      - {{ host: mcp.test, port: 443, protocol: mcp, rules: [{{ allow: {{ method: initialize }} }}] }}\n      - {{ host: ws.test, port: 443, protocol: websocket, access: read-only }}\n    binaries:\n      - path: /usr/bin/python3\n"
        );
        let python = |host: &str, method: &str, path: &str| Denial {
            http: Some((method.into(), path.into())),
            ..denial(host, 443, Some("/usr/bin/python3"))
        };
        // A blocked tool call is logged as its POST; a blocked message as WEBSOCKET_TEXT.
        let cases = [
            python("mcp.test", "POST", "/"),
            python("ws.test", "WEBSOCKET_TEXT", "/chat"),
            python("ws.test", "GET", "/"),
        ];
        let advice = advise("p.yaml", &text, &cases).expect("advice");
        assert!(!advice.changes(), "{}", advice.text);
        for (d, outcome) in &advice.denials {
            assert!(
                matches!(outcome, Outcome::NotProposed(w) if w.contains("websocket, mcp or json-rpc")),
                "{}: {outcome:?}",
                d.describe()
            );
        }
    }

    #[test]
    fn the_section_is_made_when_absent_or_empty_and_flow_style_is_refused() {
        let d = [denial("pypi.org", 443, Some("/usr/bin/pip"))];
        for text in ["version: 1\n", "version: 1\nnetwork_policies: {}\n", "version: 1\nnetwork_policies:\n"] {
            let advice = advise("p.yaml", text, &d).expect("advice");
            assert!(allowed(&advice.text, &d[0]), "{}", advice.text);
        }
        let flow = "version: 1\nnetwork_policies: { a: { endpoints: [{ host: a.test, port: 1 }], binaries: [{ path: /a }] } }\n";
        assert!(matches!(advise("p.yaml", flow, &d), Err(AdviseError::FlowStyle { .. })));
    }
}
