//! The policy loader (YAML text → every diagnostic, or a `Policy`) on mutations of
//! the shipped policies and the test fixtures, and on random text: diagnostics or
//! a policy, never a panic, a hang, or memory beyond the fuzz child's ceiling (see
//! tests/support/fuzz.rs). A policy that loads also compiles to a kernel profile,
//! diffs against itself, and decides requests.

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;

use std::path::Path;

use openshell_policy::{Engine, HttpRequest, KernelProfile, PolicyDiff, Request, load_str};
use proptest::prelude::*;
use proptest::sample::select;

/// Every policy of the repository: shipped, examples, valid and invalid fixtures.
fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["policies", "policies/examples", "tests/fixtures/valid", "tests/fixtures/invalid"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir)).expect("policy directory").flatten().collect();
        files.sort_by_key(std::fs::DirEntry::path);
        for f in files.iter().filter(|f| f.path().extension().is_some_and(|e| e == "yaml")) {
            out.push(std::fs::read_to_string(f.path()).expect("policy"));
        }
    }
    assert!(out.len() >= 20, "found the repository's policies");
    out
}

/// A line-level edit: YAML's structure is lines and indentation.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Indent(usize, i8),
    /// Replace line `.0` with line `.1` of another seed.
    Graft(usize, usize),
}

fn line_edits() -> impl Strategy<Value = Vec<LineEdit>> {
    let e = prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (any::<usize>(), -4i8..=4).prop_map(|(a, d)| LineEdit::Indent(a, d)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Graft(a, b)),
    ];
    prop::collection::vec(e, 1..5)
}

fn edit_lines(text: &str, donor: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let donor: Vec<&str> = donor.lines().collect();
    for e in edits {
        let n = lines.len().max(1);
        match *e {
            LineEdit::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            LineEdit::Duplicate(i) if !lines.is_empty() => lines.insert(i % n, lines[i % n].clone()),
            LineEdit::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            LineEdit::Indent(i, d) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                *l = if d >= 0 { format!("{}{l}", " ".repeat(d as usize)) } else { l.trim_start().to_owned() };
            }
            LineEdit::Graft(i, j) if !lines.is_empty() && !donor.is_empty() => {
                lines[i % n] = donor[j % donor.len()].to_owned();
            }
            _ => {}
        }
    }
    lines.join("\n")
}

fn exercise(text: &str) {
    let Ok(policy) = load_str("fuzz.yaml", text) else { return };
    let _ = KernelProfile::compile(&policy, "/sandbox");
    let diff = PolicyDiff::between(&policy, &policy);
    assert!(diff.static_changes.is_empty() && diff.network_changes.is_empty(), "a policy differs from itself");
    let engine = Engine::new(&policy);
    let query = [("q", "1")];
    for host in ["api.example.com", "example.com", "10.0.0.1", "127.0.0.1", ""] {
        let mut r = Request::l4(host, 443, "/usr/bin/curl");
        let _ = engine.decide(&r);
        r.http = Some(HttpRequest::plain("POST", "/v1/../admin//x", &query));
        let _ = engine.decide(&r);
    }
}

#[test]
fn policy_loader_never_panics() {
    fuzz::bounded("policy_loader_never_panics", || {
        let seeds = seeds();
        let inputs = prop_oneof![
            4 => (select(seeds.clone()), select(seeds.clone()), line_edits())
                .prop_map(|(seed, donor, e)| edit_lines(&seed, &donor, &e)),
            4 => (select(seeds), fuzz::edits(4))
                .prop_map(|(seed, e)| String::from_utf8_lossy(&fuzz::mutate(seed.as_bytes(), &e)).into_owned()),
            1 => "[a-z_:\\-\\[\\]{}, \n\"'*&!|>#0-9./?%@`]{0,300}",
            1 => any::<String>(),
        ];
        fuzz::check(file!(), inputs, |text| exercise(&text));
    });
}
