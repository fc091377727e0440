//! The decision function: given a request (host, port, calling binary and its
//! ancestors, and for L7 the method, path and query), allow, deny or audit.
//!
//! [`Engine::new`] indexes the endpoints by host so that a decision looks at a
//! handful of candidates, not at every endpoint of the policy.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::glob::bytes_eq;
pub use crate::model::RpcCall;
use crate::model::{Endpoint, Enforcement, NetworkPolicies, NetworkPolicy, Policy, Protocol, Rpc, WEBSOCKET_TEXT};
use crate::net::{AddrClass, classify};

/// An HTTP request seen by the L7 path.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    /// What is being decided: the request itself, or a message it carries.
    pub message: Message<'a>,
}

impl<'a> HttpRequest<'a> {
    /// A request decided by its head alone.
    pub fn plain(method: &'a str, path: &'a str, query: &'a [(&'a str, &'a str)]) -> Self {
        HttpRequest { method, path, query, message: Message::Plain }
    }

    /// The method rules see: `WEBSOCKET_TEXT` for a WebSocket text message.
    pub fn rule_method(&self) -> &'a str {
        match self.message {
            Message::WebSocketText => WEBSOCKET_TEXT,
            _ => self.method,
        }
    }
}

/// What an L7 decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// An HTTP request, by its head.
    Plain,
    /// An RFC 6455 upgrade request (`GET` with `Upgrade: websocket`): the
    /// only request a `websocket` endpoint takes.
    WebSocketUpgrade,
    /// A client-to-server text message on the WebSocket upgraded at the
    /// request's path (rules see the method `WEBSOCKET_TEXT`).
    WebSocketText,
    /// One JSON-RPC call in the body of a `POST` to an `mcp`/`json-rpc` endpoint.
    Rpc(RpcCall<'a>),
}

/// A connection (and, for L7, one request on it) to decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub host: &'a str,
    pub port: u16,
    /// The kernel-resolved executable of the calling process; `None` when unknown.
    pub binary: Option<&'a str>,
    /// Executables of the caller's ancestors, nearest first.
    pub ancestors: &'a [&'a str],
    /// The address the host resolved to, when known (always checked against the SSRF rules).
    pub resolved_ip: Option<IpAddr>,
    pub http: Option<HttpRequest<'a>>,
}

impl<'a> Request<'a> {
    /// An L4 request with a known binary.
    pub fn l4(host: &'a str, port: u16, binary: &'a str) -> Self {
        Request { host, port, binary: Some(binary), ancestors: &[], resolved_ip: None, http: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
    /// Allowed, but logged because enforcement would deny it.
    Audit,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Audit => "audit",
        })
    }
}

/// Why a request is (or, under audit, would be) denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NoMatchingPolicy,
    BinaryNotAllowed,
    PortNotAllowed,
    MethodPathNotPermitted,
    BlockedByDenyRule,
    SsrfBlocked,
    /// A JSON-RPC call (method, tool) no rule of an `mcp`/`json-rpc` endpoint allows.
    CallNotPermitted,
    /// A `tools/call` whose tool name fails `strict_tool_names`.
    InvalidToolName,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoMatchingPolicy => "no matching policy",
            Reason::BinaryNotAllowed => "binary not allowed",
            Reason::PortNotAllowed => "port not allowed",
            Reason::MethodPathNotPermitted => "method/path not permitted",
            Reason::BlockedByDenyRule => "blocked by deny rule",
            Reason::SsrfBlocked => "SSRF-blocked address",
            Reason::CallNotPermitted => "call not permitted",
            Reason::InvalidToolName => "invalid tool name",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's answer. Borrowed from the engine: deciding allocates nothing
/// (except lower-casing a host that is not already lower case).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision<'e> {
    pub verdict: Verdict,
    /// The policy key that matched (for deny: the closest one, when there is one).
    pub policy: Option<&'e str>,
    pub endpoint: Option<&'e Endpoint>,
    pub reason: Option<Reason>,
    /// For deny-rule decisions, the index of the rule in `deny_rules`.
    pub rule: Option<usize>,
    /// Detail for SSRF decisions: the range the address fell in.
    pub range: Option<&'static str>,
    /// The connection must be TLS-terminated and each request decided (L7).
    pub inspect: bool,
    /// The connection goes to the privacy router (`routing: inference`).
    pub route: bool,
    /// An allowed `POST` to an `mcp`/`json-rpc` endpoint: its body must be
    /// read as JSON-RPC and each call decided (`Message::Rpc`) before it is sent.
    pub rpc: Option<&'e Rpc>,
    /// An allowed request that must carry no body: an MCP `GET` (the event
    /// stream) or `DELETE` (the session's end), whose body would reach the
    /// server undecided.
    pub bodiless: bool,
}

impl<'e> Decision<'e> {
    fn new(verdict: Verdict, reason: Option<Reason>) -> Self {
        Decision {
            verdict,
            policy: None,
            endpoint: None,
            reason,
            rule: None,
            range: None,
            inspect: false,
            route: false,
            rpc: None,
            bodiless: false,
        }
    }

    pub fn is_allowed(&self) -> bool {
        self.verdict != Verdict::Deny
    }

    /// A sentence for people: what was decided and why.
    pub fn explain(&self, engine: &Engine, req: &Request<'_>) -> String {
        let ep = self.endpoint.map(Endpoint::describe);
        match (self.verdict, self.reason) {
            (Verdict::Allow, _) => {
                let mut s = format!("allowed by policy '{}'", self.policy.unwrap_or("?"));
                if let Some(ep) = ep {
                    s.push_str(&format!(", endpoint {ep}"));
                }
                if let (None, Some(p)) = (req.http, self.endpoint.and_then(|e| e.protocol)) {
                    s.push_str(&format!(" (protocol {}: {})", p.as_str(), inspected(p)));
                }
                if self.rpc.is_some() {
                    s.push_str(" (its body is read as JSON-RPC and each call decided)");
                }
                s
            }
            (v, Some(reason)) => {
                let prefix = if v == Verdict::Audit { "would be denied under enforce: " } else { "" };
                let detail = match reason {
                    Reason::NoMatchingPolicy => format!("no policy has an endpoint for host {}", req.host),
                    Reason::PortNotAllowed => {
                        let ports = engine.ports_for_host(req.host);
                        format!("host {} is allowed only on port(s) {}", req.host, join_u16(&ports))
                    }
                    Reason::BinaryNotAllowed => {
                        let bins = engine.binaries_for(req.host, req.port);
                        let who = req.binary.unwrap_or("an unidentified caller");
                        format!("{who} may not reach {}:{}; allowed: {}", req.host, req.port, bins.join(", "))
                    }
                    Reason::MethodPathNotPermitted | Reason::CallNotPermitted | Reason::InvalidToolName => {
                        self.not_permitted(req)
                    }
                    Reason::BlockedByDenyRule => match self.deny_rule(req) {
                        Some(r) => format!("deny rule `{r}` of policy '{}'", self.policy.unwrap_or("?")),
                        None => "a deny rule matched".into(),
                    },
                    Reason::SsrfBlocked => {
                        format!("destination address is in {}", self.range.unwrap_or("a blocked range"))
                    }
                };
                format!("{prefix}{reason}: {detail}")
            }
            (_, None) => self.verdict.to_string(),
        }
    }
}

impl Decision<'_> {
    /// What an L7 denial's request was, and why no rule took it.
    fn not_permitted(&self, req: &Request<'_>) -> String {
        let policy = self.policy.unwrap_or("?");
        let Some(h) = req.http else { return "request not permitted".into() };
        let websocket = self.endpoint.and_then(|e| e.protocol) == Some(Protocol::Websocket);
        match h.message {
            Message::Rpc(call) => match (self.reason, call.tool) {
                (Some(Reason::InvalidToolName), Some(tool)) => {
                    format!(
                        "tool name `{tool}` is not 1 to 128 of A-Z, a-z, 0-9, `_`, `.`, `-` (strict_tool_names of policy '{policy}')"
                    )
                }
                (_, Some(tool)) => {
                    format!("{} of tool `{tool}` is not permitted by the rules of policy '{policy}'", call.method)
                }
                (_, None) => format!("{} is not permitted by the rules of policy '{policy}'", call.method),
            },
            Message::Plain if websocket => {
                format!(
                    "{} {} is not a WebSocket upgrade, the only request a `websocket` endpoint takes (policy '{policy}')",
                    h.method, h.path
                )
            }
            _ => format!("{} {} is not permitted by the rules of policy '{policy}'", h.rule_method(), h.path),
        }
    }

    /// The deny rule that matched, as written.
    fn deny_rule(&self, req: &Request<'_>) -> Option<String> {
        let (e, i) = self.endpoint.zip(self.rule)?;
        match (req.http.map(|h| h.message), &e.rpc) {
            (Some(Message::Rpc(_)), Some(rpc)) => rpc.deny_rules.get(i).map(ToString::to_string),
            _ => e.deny_rules.get(i).map(ToString::to_string),
        }
    }
}

/// What a protocol means for a connection, for messages.
fn inspected(p: Protocol) -> &'static str {
    match p {
        Protocol::Rest => "each request is checked against the L7 rules",
        Protocol::Websocket => "the upgrade request and each client text message are checked against the L7 rules",
        Protocol::Mcp => "each JSON-RPC call and tool is checked against the rules",
        Protocol::JsonRpc => "each JSON-RPC call is checked against the rules",
        Protocol::Tcp => "relayed uninspected, also when the sandbox connects directly (raw TCP)",
    }
}

fn join_u16(ports: &[u16]) -> String {
    let v: Vec<String> = ports.iter().map(u16::to_string).collect();
    v.join(", ")
}

#[derive(Debug, Clone, Copy)]
struct EpRef {
    policy: u32,
    endpoint: u32,
}

/// How a connection reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Asked for it: CONNECT or an absolute-form HTTP request.
    Proxy,
    /// A raw TCP connection redirected by the fence.
    Transparent,
}

/// A compiled network policy, ready to decide requests.
#[derive(Debug, Clone)]
pub struct Engine {
    policies: Vec<(String, NetworkPolicy)>,
    /// Exact names and IP literals.
    exact: HashMap<String, Vec<EpRef>>,
    /// Wildcard patterns by their literal suffix (at least two labels).
    wildcard: HashMap<String, Vec<EpRef>>,
    /// Per policy: literal binary paths (fast path) and glob ones.
    binaries: Vec<BinarySet>,
}

#[derive(Debug, Clone, Default)]
struct BinarySet {
    literal: Vec<String>,
    globs: Vec<crate::glob::Glob>,
}

impl BinarySet {
    fn matches(&self, path: &str) -> bool {
        self.literal.iter().any(|l| bytes_eq(l.as_bytes(), path.as_bytes()))
            || self.globs.iter().any(|g| g.matches(path))
    }
}

impl Engine {
    /// Compiles the network section of a policy.
    pub fn new(policy: &Policy) -> Engine {
        Engine::from_network(&policy.network_policies)
    }

    pub fn from_network(network: &NetworkPolicies) -> Engine {
        let mut exact: HashMap<String, Vec<EpRef>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<EpRef>> = HashMap::new();
        let mut policies = Vec::new();
        let mut binaries = Vec::new();
        for (pi, (key, p)) in network.iter().enumerate() {
            for (ei, ep) in p.endpoints.iter().enumerate() {
                let r = EpRef { policy: pi as u32, endpoint: ei as u32 };
                let map = if ep.host.is_wildcard() { &mut wildcard } else { &mut exact };
                map.entry(ep.host.index_key()).or_default().push(r);
            }
            let mut set = BinarySet::default();
            for b in &p.binaries {
                if b.path.is_literal() {
                    set.literal.push(b.path.as_str().to_owned());
                } else {
                    set.globs.push(b.path.clone());
                }
            }
            binaries.push(set);
            policies.push((key.clone(), p.clone()));
        }
        Engine { policies, exact, wildcard, binaries }
    }

    /// Number of network policies and endpoints.
    pub fn size(&self) -> (usize, usize) {
        (self.policies.len(), self.policies.iter().map(|(_, p)| p.endpoints.len()).sum())
    }

    /// Calls `f` for every endpoint whose host pattern matches `host` (normalized).
    /// An IP literal matches only endpoints naming that address: wildcard
    /// patterns are DNS-name patterns, even when their labels look numeric.
    fn for_host(&self, host: &str, is_ip: bool, mut f: impl FnMut(EpRef)) {
        if let Some(v) = self.exact.get(host) {
            v.iter().copied().for_each(&mut f);
        }
        if is_ip || self.wildcard.is_empty() {
            return;
        }
        // Every proper suffix of two or more labels may index wildcard patterns.
        let mut idx = 0;
        while let Some(dot) = host[idx..].find('.') {
            let suffix = &host[idx + dot + 1..];
            if !suffix.contains('.') {
                break;
            }
            if let Some(v) = self.wildcard.get(suffix) {
                for r in v {
                    if self.endpoint(*r).host.matches_normalized(host) {
                        f(*r);
                    }
                }
            }
            idx += dot + 1;
        }
    }

    fn endpoint(&self, r: EpRef) -> &Endpoint {
        &self.policies[r.policy as usize].1.endpoints[r.endpoint as usize]
    }

    /// Whether the caller or one of its ancestors is one of the policy's binaries.
    /// An unidentified caller (`binary: None`) never is: fail closed.
    fn binary_ok(&self, policy: u32, req: &Request<'_>) -> bool {
        let set = &self.binaries[policy as usize];
        let Some(binary) = req.binary else { return false };
        set.matches(binary) || req.ancestors.iter().any(|b| set.matches(b))
    }

    /// Decides a request that came to the proxy (CONNECT or plain HTTP).
    pub fn decide<'e>(&'e self, req: &Request<'_>) -> Decision<'e> {
        self.decide_via(req, Via::Proxy)
    }

    /// Decides a raw TCP connection the sandbox's fence redirected to the
    /// proxy (`req.host` is a name the address was resolved from, or the
    /// address itself): only `protocol: tcp` endpoints allow one, so an
    /// endpoint meant for the proxy (and its L7 rules) is never reached around it.
    pub fn decide_transparent<'e>(&'e self, req: &Request<'_>) -> Decision<'e> {
        self.decide_via(req, Via::Transparent)
    }

    fn decide_via<'e>(&'e self, req: &Request<'_>, via: Via) -> Decision<'e> {
        let lowered;
        let mut ip_text = IpText::default();
        let (host, literal_ip) = match split_host(req.host) {
            (h, Some(ip)) => (ip_text.format(ip).unwrap_or(h), Some(ip)),
            (h, None) if h.bytes().any(|b| b.is_ascii_uppercase()) => {
                lowered = h.to_ascii_lowercase();
                (lowered.as_str(), None)
            }
            (h, None) => (h, None),
        };
        let address = literal_ip.or(req.resolved_ip);
        let class = address.map(classify);
        if let Some(AddrClass::Blocked(range)) = class {
            let mut d = Decision::new(Verdict::Deny, Some(Reason::SsrfBlocked));
            d.range = Some(range);
            return d;
        }

        // Find candidates: host, then port, then binary.
        let mut host_hit: Option<EpRef> = None;
        let mut port_hit: Option<EpRef> = None;
        let mut matched: [Option<EpRef>; 8] = [None; 8];
        let mut n_matched = 0usize;
        let mut overflow: Vec<EpRef> = Vec::new();
        self.for_host(host, literal_ip.is_some(), |r| {
            let ep = self.endpoint(r);
            if via == Via::Transparent && ep.protocol != Some(Protocol::Tcp) {
                return;
            }
            host_hit.get_or_insert(r);
            if !ep.ports.contains(&req.port) {
                return;
            }
            port_hit.get_or_insert(r);
            if !self.binary_ok(r.policy, req) {
                return;
            }
            if n_matched < matched.len() {
                matched[n_matched] = Some(r);
            } else {
                overflow.push(r);
            }
            n_matched += 1;
        });
        let candidates = matched.iter().flatten().copied().chain(overflow.iter().copied());

        if n_matched == 0 {
            let (reason, near) = match (port_hit, host_hit) {
                (Some(r), _) => (Reason::BinaryNotAllowed, Some(r)),
                (None, Some(r)) => (Reason::PortNotAllowed, Some(r)),
                (None, None) => (Reason::NoMatchingPolicy, None),
            };
            let mut d = Decision::new(Verdict::Deny, Some(reason));
            if let Some(r) = near {
                d.policy = Some(self.policies[r.policy as usize].0.as_str());
                d.endpoint = Some(self.endpoint(r));
            }
            return d;
        }

        // Private destinations need an `allowed_ips` entry on a matching endpoint.
        let private_ok = |r: &EpRef| match (class, address) {
            (Some(AddrClass::Private(_)), Some(ip)) => {
                self.endpoint(*r).allowed_ips.iter().any(|n| net_contains(n, ip))
            }
            _ => true,
        };
        let mut private_range = None;
        if let Some(AddrClass::Private(range)) = class {
            private_range = Some(range);
        }

        let decided = match req.http {
            None => {
                // L4: allowed by the first candidate; inspect when any candidate is REST.
                let mut first = None;
                let (mut inspect, mut route) = (false, false);
                for r in candidates.clone().filter(|r| private_ok(r)) {
                    first.get_or_insert(r);
                    inspect |= self.endpoint(r).protocol.is_some_and(Protocol::is_inspected);
                    route |= self.endpoint(r).routing.is_some();
                }
                first.map(|r| {
                    let mut d = self.decision_for(Verdict::Allow, None, r);
                    d.inspect = inspect;
                    d.route = route;
                    d
                })
            }
            Some(http) => self.decide_http(candidates.clone().filter(|r| private_ok(r)), &http),
        };
        match decided {
            Some(d) => d,
            None => {
                let mut d = Decision::new(Verdict::Deny, Some(Reason::SsrfBlocked));
                d.range = private_range;
                if let Some(r) = candidates.clone().next() {
                    d.policy = Some(self.policies[r.policy as usize].0.as_str());
                    d.endpoint = Some(self.endpoint(r));
                }
                d
            }
        }
    }

    fn decision_for(&self, verdict: Verdict, reason: Option<Reason>, r: EpRef) -> Decision<'_> {
        let mut d = Decision::new(verdict, reason);
        d.policy = Some(self.policies[r.policy as usize].0.as_str());
        d.endpoint = Some(self.endpoint(r));
        d
    }

    /// L7: deny rules win over allow rules across all candidates; `audit`
    /// endpoints turn their denials into audit-allows.
    fn decide_http(
        &self,
        candidates: impl Iterator<Item = EpRef> + Clone,
        http: &HttpRequest<'_>,
    ) -> Option<Decision<'_>> {
        // Rules see one spelling of each path (see `canonical_path`), and deny rules
        // the method upper-cased, so a deny rule cannot be dodged by
        // `/a/../secret`, `//secret`, `%73ecret` or `delete`.
        // Allow rules match the method as sent; deny rules also match it upper-cased.
        let upper = upper_method(http.rule_method());
        let path = canonical_path(http.path);
        let p = &*path;
        // A trailing slash names the same resource to most servers: deny rules also
        // see the path without it.
        let p_trimmed = if p.len() > 1 { p.trim_end_matches('/') } else { p };
        let p_trimmed = if p_trimmed.is_empty() { "/" } else { p_trimmed };
        let seen = Seen { http, upper: &upper, path: p, trimmed: p_trimmed };
        let mut audit_deny: Option<Decision<'_>> = None;
        let mut allowed_by: Option<EpRef> = None;
        let mut enforce_miss: Option<(EpRef, Reason)> = None;
        let mut audit_miss: Option<(EpRef, Reason)> = None;
        let mut elsewhere: Option<EpRef> = None;
        for r in candidates {
            let ep = self.endpoint(r);
            let fit = fit(ep, &seen);
            if fit == Fit::Elsewhere {
                elsewhere.get_or_insert(r);
                continue;
            }
            if let Some(i) = denied_by(ep, &seen) {
                let mut d = self.decision_for(Verdict::Deny, Some(Reason::BlockedByDenyRule), r);
                d.rule = Some(i);
                d.inspect = true;
                if ep.enforcement == Enforcement::Enforce {
                    return Some(d);
                }
                d.verdict = Verdict::Audit;
                audit_deny.get_or_insert(d);
            }
            match (fit, ep.enforcement) {
                (Fit::Allowed, _) => {
                    allowed_by.get_or_insert(r);
                }
                (Fit::Missed(why), Enforcement::Enforce) => {
                    enforce_miss.get_or_insert((r, why));
                }
                (Fit::Missed(why), Enforcement::Audit) => {
                    audit_miss.get_or_insert((r, why));
                }
                (Fit::Elsewhere, _) => {}
            }
        }
        let miss = |verdict, (r, why)| {
            let mut d = self.decision_for(verdict, Some(why), r);
            d.inspect = true;
            d
        };
        Some(match (allowed_by, audit_deny, enforce_miss, audit_miss) {
            (Some(_), Some(d), _, _) => d,
            (Some(r), None, _, _) => {
                let ep = self.endpoint(r);
                let mut d = self.decision_for(Verdict::Allow, None, r);
                d.inspect = ep.protocol.is_some_and(Protocol::is_inspected);
                d.rpc = ep.rpc.as_ref().filter(|_| http.message == Message::Plain && http.method == "POST");
                d.bodiless = ep.rpc.is_some() && http.message == Message::Plain && http.method != "POST";
                d
            }
            (None, _, Some(m), _) => miss(Verdict::Deny, m),
            (None, Some(d), None, _) => d,
            (None, None, None, Some(m)) => miss(Verdict::Audit, m),
            (None, None, None, None) => miss(Verdict::Deny, (elsewhere?, Reason::MethodPathNotPermitted)),
        })
    }

    /// Ports on which some endpoint accepts `host` (for messages).
    pub fn ports_for_host(&self, host: &str) -> Vec<u16> {
        let (host, is_ip) = normalize_request_host(host);
        let mut ports = Vec::new();
        self.for_host(&host, is_ip, |r| ports.extend(self.endpoint(r).ports.iter().copied()));
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Whether some endpoint naming `host` could be reached at `ip` under the
    /// address rules (never a blocked range; a private one only through that
    /// endpoint's `allowed_ips`): what the DNS responder may answer for `host`.
    pub fn address_allowed_for_host(&self, host: &str, ip: IpAddr) -> bool {
        let (host, is_ip) = normalize_request_host(host);
        let mut allowed = false;
        self.for_host(&host, is_ip, |r| {
            allowed |= match classify(ip) {
                AddrClass::Blocked(_) => false,
                AddrClass::Private(_) => self.endpoint(r).allowed_ips.iter().any(|n| net_contains(n, ip)),
                AddrClass::Public => true,
            }
        });
        allowed
    }

    /// Binary patterns of the policies that accept `host:port` (for messages).
    pub fn binaries_for(&self, host: &str, port: u16) -> Vec<String> {
        let (host, is_ip) = normalize_request_host(host);
        let mut out = Vec::new();
        self.for_host(&host, is_ip, |r| {
            if self.endpoint(r).ports.contains(&port) {
                for b in &self.policies[r.policy as usize].1.binaries {
                    out.push(b.path.as_str().to_owned());
                }
            }
        });
        out.sort();
        out.dedup();
        out
    }
}

/// An L7 request as rules see it.
struct Seen<'s, 'a> {
    http: &'s HttpRequest<'a>,
    /// The rule method upper-cased (deny rules).
    upper: &'s str,
    /// The canonical path, and the same without a trailing slash (deny rules).
    path: &'s str,
    trimmed: &'s str,
}

/// How an endpoint takes an L7 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Allowed,
    /// Its rules do not allow it (the reason a denial gives).
    Missed(Reason),
    /// Not this endpoint's request (an `mcp`/`json-rpc` endpoint's `path` does not match).
    Elsewhere,
}

/// Whether `ep`'s allow side takes the request.
fn fit(ep: &Endpoint, seen: &Seen<'_, '_>) -> Fit {
    let http = seen.http;
    let (m, p, q) = (http.rule_method(), seen.path, http.query);
    let allowed = |yes: bool| if yes { Fit::Allowed } else { Fit::Missed(Reason::MethodPathNotPermitted) };
    match (ep.protocol, &ep.rpc, http.message) {
        (None | Some(Protocol::Tcp), _, _) => Fit::Allowed,
        (Some(Protocol::Rest), _, Message::Plain) => allowed(
            ep.access.is_some_and(|a| a.allows_method(m)) || ep.rules.iter().any(|r| r.allow.matches_allow(m, p, q)),
        ),
        (Some(Protocol::Websocket), _, Message::WebSocketUpgrade | Message::WebSocketText) => allowed(
            ep.access.is_some_and(|a| a.allows_websocket(m)) || ep.rules.iter().any(|r| r.allow.matches_allow(m, p, q)),
        ),
        (Some(Protocol::Mcp | Protocol::JsonRpc), Some(rpc), _) if !rpc.takes_path(p) => Fit::Elsewhere,
        (Some(protocol), Some(_), Message::Plain) => {
            allowed(m == "POST" || (protocol == Protocol::Mcp && (m == "GET" || m == "DELETE")))
        }
        (Some(_), Some(rpc), Message::Rpc(call)) if rpc.refuses_tool_name(&call) => {
            Fit::Missed(Reason::InvalidToolName)
        }
        (Some(_), Some(rpc), Message::Rpc(call)) => {
            if rpc.allows(&call) {
                Fit::Allowed
            } else {
                Fit::Missed(Reason::CallNotPermitted)
            }
        }
        _ => Fit::Missed(Reason::MethodPathNotPermitted),
    }
}

/// The index of the first of `ep`'s deny rules that matches the request.
fn denied_by(ep: &Endpoint, seen: &Seen<'_, '_>) -> Option<usize> {
    match (&ep.rpc, seen.http.message) {
        (Some(rpc), Message::Rpc(call)) => rpc.deny_rules.iter().position(|d| d.matches(&call)),
        (Some(_), _) => None,
        (None, _) => {
            let q = seen.http.query;
            ep.deny_rules
                .iter()
                .position(|d| d.matches_deny(seen.upper, seen.path, q) || d.matches_deny(seen.upper, seen.trimmed, q))
        }
    }
}

/// Strips one trailing dot and IPv6 brackets; parses IP literals.
fn split_host(host: &str) -> (&str, Option<IpAddr>) {
    let h = host.strip_suffix('.').unwrap_or(host);
    let h = h.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(h);
    (h, h.parse::<IpAddr>().ok())
}

/// The request host as the index files it: IP literals in canonical text,
/// names lower-cased (one trailing dot and IPv6 brackets stripped); and whether
/// it is an IP literal.
fn normalize_request_host(host: &str) -> (String, bool) {
    match split_host(host) {
        (_, Some(ip)) => (ip.to_string(), true),
        (h, None) => (h.to_ascii_lowercase(), false),
    }
}

/// The method upper-cased (HTTP methods are case-sensitive, but a server that
/// accepts `delete` must not let it past a `DELETE` deny rule).
fn upper_method(method: &str) -> Cow<'_, str> {
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(method.to_ascii_uppercase())
    } else {
        Cow::Borrowed(method)
    }
}

/// Characters whose percent-encoding is decoded before matching (RFC 3986
/// unreserved and sub-delims, `:` and `@`). `%2F`, `%25`, `%3F`, `%23` and
/// non-ASCII bytes stay encoded (with upper-case hex); a stray `%` becomes `%25`.
fn decodable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

/// The path as rules see it: safe percent-encodings decoded, `//` collapsed,
/// `.` and `..` segments resolved (never above `/`). Allocates only when the
/// path is not already canonical.
pub fn canonical_path(path: &str) -> Cow<'_, str> {
    let needs_work = path.contains('%') || path.contains("//") || path.contains("/.") || !path.starts_with('/');
    if !needs_work {
        return Cow::Borrowed(path);
    }
    // 1. percent-decoding of safe characters
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let b = (h * 16 + l) as u8;
                if decodable(b) {
                    decoded.push(b as char);
                } else {
                    decoded.push('%');
                    decoded.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    decoded.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
                continue;
            }
        }
        if bytes[i] == b'%' {
            // A stray `%` (no two hex digits follow) is spelled `%25`, so that
            // decoding never forms a new escape and the result is a fixed point.
            decoded.push_str("%25");
            i += 1;
            continue;
        }
        // Copy one UTF-8 character.
        let ch_len = path[i..].chars().next().map_or(1, char::len_utf8);
        decoded.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    // 2. segments: drop empty and `.`, resolve `..`
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut canonical = String::with_capacity(decoded.len());
    for seg in &out {
        canonical.push('/');
        canonical.push_str(seg);
    }
    if canonical.is_empty() || (trailing && !out.is_empty()) {
        canonical.push('/');
    }
    Cow::Owned(canonical)
}

/// Whether `net` contains `ip`, seeing through IPv4-in-IPv6 forms on either side.
fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&ip)
        || match ip {
            IpAddr::V4(v4) => net.contains(&IpAddr::V6(v4.to_ipv6_mapped())),
            IpAddr::V6(_) => net.contains(&crate::net::embedded_v4(ip)),
        }
}

/// The canonical text of an IP address, formatted without allocating.
struct IpText {
    buf: [u8; 64],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText { buf: [0; 64], len: 0 }
    }
}

impl IpText {
    fn format(&mut self, ip: IpAddr) -> Option<&str> {
        self.len = 0;
        write!(self, "{ip}").ok()?;
        std::str::from_utf8(&self.buf[..self.len]).ok()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
