//! Property tests: host and path matching against independent regex references,
//! matching invariants, and a parser that never panics.

use std::fmt::Write as _;

use openshell_policy::glob::Glob;
use openshell_policy::host::HostPattern;
use openshell_policy::{Engine, HttpRequest, Request, load_bytes, load_str};
use proptest::prelude::*;
use proptest::sample::select;
use regex::Regex;
use serde_json::{Map, Value, json};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------

/// A DNS label from a small alphabet, so that patterns and hosts often agree.
/// Labels start with a letter or `_`: all-numeric wildcard patterns look like IP
/// addresses and are rejected at load (covered by the validation tests).
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec!["a", "b", "ab", "api", "x-1", "b2", "A", "Api", "a-api", "x-api", "AB"]).prop_map(str::to_owned),
        1 => "[a-zA-Z_][a-zA-Z0-9_-]{0,6}",
    ]
}

fn labels(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(label(), min..=max)
}

/// One label of a host pattern, in position `first` or later.
#[derive(Debug, Clone)]
enum PLabel {
    Lit(String),
    /// `*`
    Star,
    /// `**` (first label only)
    Many,
    /// `pre*post` (first label only)
    Partial(String, String),
}

impl PLabel {
    fn text(&self) -> String {
        match self {
            PLabel::Lit(s) => s.clone(),
            PLabel::Star => "*".into(),
            PLabel::Many => "**".into(),
            PLabel::Partial(a, b) => format!("{a}*{b}"),
        }
    }
}

fn affix() -> impl Strategy<Value = String> {
    select(vec!["", "", "a", "x-", "-api", "api", "B"]).prop_map(str::to_owned)
}

/// A valid host pattern: a first label (literal or wildcard), middle labels
/// (literal or `*`), and two literal labels at the end.
fn host_pattern() -> impl Strategy<Value = Vec<PLabel>> {
    let first = prop_oneof![
        2 => label().prop_map(PLabel::Lit),
        2 => Just(PLabel::Star),
        2 => Just(PLabel::Many),
        2 => (affix(), affix()).prop_map(|(a, b)| PLabel::Partial(a, b)),
    ];
    let middle = prop::collection::vec(prop_oneof![2 => label().prop_map(PLabel::Lit), 1 => Just(PLabel::Star)], 0..=2);
    (first, middle, label(), label()).prop_map(|(f, m, a, b)| {
        let mut v = vec![f];
        v.extend(m);
        v.push(PLabel::Lit(a));
        v.push(PLabel::Lit(b));
        v
    })
}

fn pattern_text(p: &[PLabel]) -> String {
    p.iter().map(PLabel::text).collect::<Vec<_>>().join(".")
}

/// The reference: the pattern translated to a regex, label by label.
fn host_regex(p: &[PLabel]) -> Regex {
    let mut re = String::from("(?i)^");
    for (i, l) in p.iter().enumerate() {
        if i > 0 {
            re.push_str(r"\.");
        }
        match l {
            PLabel::Lit(s) => re.push_str(&regex::escape(s)),
            PLabel::Star => re.push_str("[^.]*"),
            PLabel::Many => re.push_str(r"[^.]*(?:\.[^.]*)*"),
            PLabel::Partial(a, b) => {
                let _ = write!(re, "{}[^.]*{}", regex::escape(a), regex::escape(b));
            }
        }
    }
    re.push('$');
    Regex::new(&re).expect("reference regex compiles")
}

/// A host that the pattern is likely to match: every wildcard filled in.
fn instance(p: Vec<PLabel>) -> impl Strategy<Value = String> {
    let parts: Vec<BoxedStrategy<String>> = p
        .into_iter()
        .map(|l| match l {
            PLabel::Lit(s) => prop_oneof![9 => Just(s), 1 => label()].boxed(),
            PLabel::Star => label().boxed(),
            PLabel::Many => labels(1, 3).prop_map(|v| v.join(".")).boxed(),
            PLabel::Partial(a, b) => {
                (label(), select(vec!["", "x", "a-"])).prop_map(move |(m, n)| format!("{a}{n}{m}{b}")).boxed()
            }
        })
        .collect();
    parts.prop_map(|v| v.join("."))
}

/// A pattern and hosts to test it against: instances of it and random hosts.
fn pattern_and_hosts() -> impl Strategy<Value = (Vec<PLabel>, Vec<String>)> {
    host_pattern().prop_flat_map(|p| {
        let inst = prop::collection::vec(instance(p.clone()), 1..4);
        let random = prop::collection::vec(labels(1, 6).prop_map(|v| v.join(".")), 1..3);
        (Just(p), inst, random).prop_map(|(p, mut a, b)| {
            a.extend(b);
            (p, a)
        })
    })
}

fn flip_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect()
}

proptest! {
    #![proptest_config(config(1000))]

    /// (a) A compiled host pattern agrees with the regex reference.
    #[test]
    fn host_pattern_agrees_with_regex((p, hosts) in pattern_and_hosts()) {
        let text = pattern_text(&p);
        let compiled = HostPattern::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let reference = host_regex(&p);
        for h in &hosts {
            prop_assert_eq!(compiled.matches(h), reference.is_match(h), "pattern {} host {}", text, h);
        }
    }

    /// (b) Matching ignores ASCII case and one trailing dot, on either side.
    #[test]
    fn host_matching_is_case_and_dot_invariant((p, hosts) in pattern_and_hosts(), m1: u64, m2: u64) {
        let text = pattern_text(&p);
        let plain = HostPattern::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let variant = HostPattern::parse(&format!("{}.", flip_case(&text, m1))).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for h in &hosts {
            let want = plain.matches(h);
            prop_assert_eq!(plain.matches(&flip_case(h, m2)), want, "{} vs case of {}", text, h);
            prop_assert_eq!(plain.matches(&format!("{h}.")), want, "{} vs {}.", text, h);
            prop_assert_eq!(variant.matches(h), want, "{}. vs {}", text, h);
            prop_assert_eq!(variant.matches(&format!("{}.", flip_case(h, m2))), want);
        }
    }

    /// (b) `*.<suffix>` matches exactly one extra label; `**.<suffix>` one or more.
    #[test]
    fn star_is_one_label_double_star_one_or_more(
        suffix in labels(2, 3),
        prefix in labels(0, 4),
        other in labels(2, 3),
    ) {
        let suffix = suffix.join(".");
        let star = HostPattern::parse(&format!("*.{suffix}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let many = HostPattern::parse(&format!("**.{suffix}")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let host = if prefix.is_empty() { suffix.clone() } else { format!("{}.{suffix}", prefix.join(".")) };
        prop_assert_eq!(star.matches(&host), prefix.len() == 1, "*.{} vs {}", suffix, host);
        prop_assert_eq!(many.matches(&host), !prefix.is_empty(), "**.{} vs {}", suffix, host);
        // A host under another suffix never matches (unless it happens to end the same way).
        let other = other.join(".");
        let elsewhere = format!("{}.{other}", prefix.join("."));
        if !elsewhere.to_ascii_lowercase().ends_with(&format!(".{}", suffix.to_ascii_lowercase())) {
            prop_assert!(!star.matches(&elsewhere));
            prop_assert!(!many.matches(&elsewhere));
        }
    }

    /// (b) The engine decides a host the same way whatever its case.
    #[test]
    fn engine_is_case_invariant((p, hosts) in pattern_and_hosts(), m: u64, dots in 0usize..3) {
        let yaml = format!(
            "version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - host: \"{}\"\n        port: 443\n    binaries:\n      - path: /usr/bin/curl\n",
            pattern_text(&p)
        );
        let policy = load_str("gen", &yaml).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let engine = Engine::new(&policy);
        let reference = host_regex(&p);
        for h in &hosts {
            let h = format!("{h}{}", ".".repeat(dots));
            let a = engine.decide(&Request::l4(&h, 443, "/usr/bin/curl"));
            let flipped = flip_case(&h, m);
            let b = engine.decide(&Request::l4(&flipped, 443, "/usr/bin/curl"));
            prop_assert_eq!(a.verdict, b.verdict, "{} vs {}", h, flipped);
            prop_assert_eq!(a.reason, b.reason);
            if dots <= 1 {
                let bare = h.trim_end_matches('.');
                prop_assert_eq!(a.is_allowed(), reference.is_match(bare), "engine vs reference for {}", h);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// One segment of a path glob.
fn path_segment() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => select(vec!["a", "b", "ab", "é", "x.y", "-"]).prop_map(str::to_owned),
        3 => Just("*".to_owned()),
        2 => Just("?".to_owned()),
        1 => Just("[ab]".to_owned()),
        1 => Just("[!a]".to_owned()),
        1 => Just("[a-c]".to_owned()),
    ];
    prop_oneof![
        2 => Just("**".to_owned()),
        6 => prop::collection::vec(piece, 0..4).prop_map(|v| v.concat()),
        1 => Just("**x**".to_owned()),
    ]
}

fn path_glob() -> impl Strategy<Value = String> {
    prop::collection::vec(path_segment(), 1..5).prop_map(|v| format!("/{}", v.join("/")))
}

fn path_value() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        6 => select(vec!["a", "b", "ab", "ba", "é", "x.y", "-", "c", "aab", "xx"]).prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => "[a-cé?*]{0,4}",
    ];
    prop::collection::vec(seg, 0..6).prop_map(|v| format!("/{}", v.join("/")))
}

/// The reference: a path glob translated to a regex, segment by segment.
fn path_regex(glob: &str) -> Regex {
    let mut re = String::from("^");
    for (i, seg) in glob.split('/').enumerate() {
        if i > 0 {
            re.push('/');
        }
        if seg == "**" {
            re.push_str("[^/]*(?:/[^/]*)*");
            continue;
        }
        let mut chars = seg.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '[' => {
                    let mut class = String::new();
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                        class.push(c);
                    }
                    match class.strip_prefix('!') {
                        Some(rest) => {
                            let _ = write!(re, "[^/{rest}]");
                        }
                        None => {
                            let _ = write!(re, "[{class}]");
                        }
                    }
                }
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
    }
    re.push('$');
    Regex::new(&re).expect("reference regex compiles")
}

proptest! {
    #![proptest_config(config(1500))]

    /// (c) Path globs agree with the regex reference.
    #[test]
    fn path_glob_agrees_with_regex(glob in path_glob(), values in prop::collection::vec(path_value(), 1..6)) {
        let compiled = Glob::new(&glob, '/', false).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reference = path_regex(&glob);
        for v in &values {
            prop_assert_eq!(compiled.matches(v), reference.is_match(v), "glob {} value {}", glob, v);
        }
    }

    /// (c) A glob always matches the text of a literal pattern, and literal
    /// patterns match only themselves.
    #[test]
    fn literal_globs_are_equality(a in path_value(), b in path_value()) {
        let g = Glob::new(&a, '/', false).map_err(|e| TestCaseError::fail(e.to_string()));
        if let Ok(g) = g && g.is_literal() {
            prop_assert!(g.matches(&a));
            prop_assert_eq!(g.matches(&b), a == b);
        }
    }
}

// ---------------------------------------------------------------------------
// The parser never panics
// ---------------------------------------------------------------------------

/// After a successful load, building the engine and deciding must not panic either.
fn exercise(text: &str) {
    if let Ok(policy) = load_str("fuzz", text) {
        let engine = Engine::new(&policy);
        let query = [("q", "x"), ("q", "y")];
        for host in ["example.com", "a.example.com", "127.0.0.1", "10.0.0.1", "[::1]", "A.B.C.D.E", ""] {
            for binary in [Some("/usr/bin/curl"), None] {
                let mut r = Request::l4(host, 443, "/usr/bin/curl");
                r.binary = binary;
                let d = engine.decide(&r);
                let _ = d.explain(&engine, &r);
                r.http = Some(HttpRequest::plain("GET", "/a/b", &query));
                let d = engine.decide(&r);
                let _ = d.explain(&engine, &r);
            }
        }
    }
}

/// Scalars a policy might contain, plausible and not.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        select(vec![0i64, 1, 2, -1, 22, 443, 65535, 65536, 4_294_967_294, 4_294_967_295, i64::MAX])
            .prop_map(Value::from),
        select(vec![0.5f64, -0.0, 1e300, 0.001]).prop_map(Value::from),
        select(vec![
            "",
            "*",
            "**",
            "*.example.com",
            "**.example.com",
            "*-api.example.com",
            "a.*.example.com",
            "*.com",
            "example.com",
            "EXAMPLE.com.",
            "127.0.0.1",
            "::1",
            "[::1]",
            "169.254.169.254",
            "10.0.0.0/8",
            "::/0",
            "0.0.0.0/0",
            "fd00::/8",
            "http://x",
            "a..b",
            "/usr/bin/*",
            "/**",
            "/usr/bin/curl",
            "usr/bin",
            "/a/../b",
            "/a[",
            "[!x]",
            "rest",
            "websocket",
            "grpc",
            "audit",
            "enforce",
            "read-only",
            "read-write",
            "full",
            "skip",
            "GET",
            "get",
            "*",
            "/repos/**",
            "sandbox",
            "root",
            "0",
            "1000",
            "4GiB",
            "16MiB",
            "12QB",
            "best_effort",
            "hard_requirement",
            "é",
            "\u{0}",
            "a: b",
            "- x",
            "{",
            "'",
            "\"",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        "[ -~]{0,12}".prop_map(Value::String),
    ]
}

const KEYS: &[&str] = &[
    "version",
    "filesystem_policy",
    "landlock",
    "process",
    "resources",
    "network_policies",
    "network_middlewares",
    "include_workdir",
    "read_only",
    "read_write",
    "compatibility",
    "run_as_user",
    "run_as_group",
    "memory",
    "pids",
    "cpu",
    "open_files",
    "name",
    "endpoints",
    "binaries",
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
    "path",
    "allow",
    "method",
    "query",
    "any",
    "mcp",
    "unknown",
];

/// Random trees of known keys and random values.
fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((select(KEYS.to_vec()), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A policy-shaped document with random values in random places.
fn policy_like() -> impl Strategy<Value = Value> {
    let value = || prop_oneof![3 => scalar(), 1 => tree()];
    let endpoint = prop::collection::vec((select(KEYS[19..].to_vec()), value()), 0..7).prop_map(|kv| {
        let mut m: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        m.entry("host").or_insert_with(|| json!("api.example.com"));
        m.entry("port").or_insert_with(|| json!(443));
        Value::Object(m)
    });
    let policy = (prop::collection::vec(endpoint, 0..3), prop::collection::vec(value(), 0..3), any::<bool>()).prop_map(
        |(endpoints, bins, good_bin)| {
            let mut binaries: Vec<Value> = bins.into_iter().map(|b| json!({ "path": b })).collect();
            if good_bin {
                binaries.push(json!({ "path": "/usr/bin/*" }));
            }
            json!({ "endpoints": endpoints, "binaries": binaries })
        },
    );
    (
        prop::collection::vec((prop_oneof![6 => select(vec!["a", "b", "c d"]), 1 => Just("")], policy), 0..3),
        prop_oneof![3 => Just(json!(1)), 1 => scalar()],
        prop::collection::vec((select(KEYS[..7].to_vec()), value()), 0..3),
    )
        .prop_map(|(policies, version, extra)| {
            let mut top = Map::new();
            top.insert("version".into(), version);
            for (k, v) in extra {
                top.insert(k.into(), v);
            }
            let np: Map<String, Value> = policies.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            top.insert("network_policies".into(), Value::Object(np));
            Value::Object(top)
        })
}

/// Block-style YAML (the JSON form exercises flow style).
fn to_block_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                match v {
                    Value::Object(c) if !c.is_empty() => {
                        let _ = writeln!(out, "{pad}{}:", key(k));
                        to_block_yaml(v, indent + 2, out);
                    }
                    Value::Array(c) if !c.is_empty() => {
                        let _ = writeln!(out, "{pad}{}:", key(k));
                        to_block_yaml(v, indent, out);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{}: {}", key(k), inline(v));
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match item {
                    Value::Object(c) if !c.is_empty() => {
                        let mut inner = String::new();
                        to_block_yaml(item, indent + 2, &mut inner);
                        // `- ` replaces the first two spaces of the first line.
                        let _ = write!(out, "{pad}- {}", &inner[indent + 2..]);
                    }
                    Value::Array(c) if !c.is_empty() => {
                        let _ = writeln!(out, "{pad}-");
                        to_block_yaml(item, indent + 2, out);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}- {}", inline(item));
                    }
                }
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}{}", inline(v));
        }
    }
}

fn key(k: &str) -> String {
    inline(&Value::String(k.to_owned()))
}

/// Scalars: plain when safe-looking, JSON-quoted otherwise; empty collections in flow style.
fn inline(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-*".contains(c)) => {
            s.clone()
        }
        other => other.to_string(),
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn parser_never_panics_on_strings(s in any::<String>()) {
        exercise(&s);
    }

    #[test]
    fn parser_never_panics_on_yamlish_text(s in "[a-z_:\\-\\[\\]{}, \n\"'*&!|>#0-9./?%@`]{0,200}") {
        exercise(&s);
    }

    #[test]
    fn parser_never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = load_bytes("fuzz", &b);
    }

    #[test]
    fn parser_never_panics_on_random_trees(v in tree()) {
        exercise(&v.to_string());
        let mut block = String::new();
        to_block_yaml(&v, 0, &mut block);
        exercise(&block);
    }

    #[test]
    fn parser_never_panics_on_policy_like_documents(v in policy_like()) {
        exercise(&v.to_string());
        let mut block = String::new();
        to_block_yaml(&v, 0, &mut block);
        exercise(&block);
    }
}

/// The block emitter produces what the loader accepts (so the fuzzing above reaches the decoder).
#[test]
fn block_emitter_produces_valid_policies() {
    let v = json!({
        "version": 1,
        "network_policies": {
            "p": {
                "endpoints": [{"host": "api.example.com", "port": 443, "protocol": "rest", "access": "read-only"}],
                "binaries": [{"path": "/usr/bin/curl"}, {"path": "/usr/bin/*"}],
            }
        }
    });
    let mut block = String::new();
    to_block_yaml(&v, 0, &mut block);
    let policy = load_str("block", &block).unwrap_or_else(|e| panic!("{block}\n{e}"));
    assert_eq!(policy.network_policies.endpoint_count(), 1);
    assert!(load_str("json", &v.to_string()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Canonical paths are absolute, free of empty, `.` and `..` segments, and a fixed point.
    #[test]
    fn canonical_path_is_canonical(path in "[/a-z.%0-9A-F]{0,40}") {
        use openshell_policy::engine::canonical_path;
        let c = canonical_path(&path).into_owned();
        prop_assert!(c.starts_with('/'), "{c}");
        prop_assert!(!c.contains("//"), "{c}");
        prop_assert!(!c.split('/').any(|s| s == "." || s == ".."), "{c}");
        prop_assert_eq!(canonical_path(&c).into_owned(), c.clone());
    }
}
