//! Canonical JSON.

use std::collections::{BTreeMap, HashMap};

use openshell_oci::json::{self, JsonError};
use serde_json::json;

fn canonical(v: &serde_json::Value) -> String {
    String::from_utf8(json::value_to_canonical(v).expect("canonical")).expect("utf8")
}

#[test]
fn keys_are_sorted_and_there_is_no_whitespace() {
    let v =
        json!({"zeta": 1, "alpha": {"b": true, "a": null}, "Mid": ["x", "y"], "size": 18_446_744_073_709_551_615u64});
    assert_eq!(canonical(&v), r#"{"Mid":["x","y"],"alpha":{"a":null,"b":true},"size":18446744073709551615,"zeta":1}"#);
}

#[test]
fn strings_are_escaped_like_jcs() {
    let v = json!("q\" b\\ \u{8}\t\n\u{c}\r \u{1} \u{1f} / é € 😀 \u{7f}");
    assert_eq!(canonical(&v), "\"q\\\" b\\\\ \\b\\t\\n\\f\\r \\u0001 \\u001f / é € 😀 \u{7f}\"");
}

#[test]
fn keys_sort_by_utf16_code_units() {
    // U+FB01 (one UTF-16 unit 0xFB01) sorts after U+1F600 (surrogates 0xD83D...) in
    // UTF-16, but before it in UTF-8 bytes.
    let v = json!({"\u{fb01}": 1, "\u{1f600}": 2, "a": 0});
    assert_eq!(canonical(&v), "{\"a\":0,\"\u{1f600}\":2,\"\u{fb01}\":1}");
}

#[test]
fn is_canonical_and_floats_are_refused() {
    let text = br#" { "b" : [1, -2, "x"], "a": {"k": false} } "#;
    assert!(json::is_canonical(br#"{"a":{"k":false},"b":[1,-2,"x"]}"#));
    assert!(!json::is_canonical(text));
    assert!(!json::is_canonical(b"{"));
    assert!(matches!(json::value_to_canonical(&json!({"a": 1.5})), Err(JsonError::NotInteger(n)) if n == "1.5"));
}

#[test]
fn maps_are_ordered_whatever_their_type() {
    // A HashMap (what oci-spec holds annotations in) and a BTreeMap give the same bytes.
    let pairs = (0..50).map(|i| (format!("org.k{i}"), i.to_string()));
    let hashed: HashMap<String, String> = pairs.clone().collect();
    let sorted: BTreeMap<String, String> = pairs.collect();
    let a = json::to_canonical(&hashed).expect("hashed");
    assert_eq!(a, json::to_canonical(&sorted).expect("sorted"));
    assert!(a.starts_with(br#"{"org.k0":"0","org.k1":"1","org.k10":"10","#), "{}", String::from_utf8_lossy(&a));
}
