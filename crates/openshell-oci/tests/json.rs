//! Canonical JSON.

use std::collections::BTreeMap;

use openshell_oci::json::{self, Value};

#[test]
fn keys_are_sorted_and_there_is_no_whitespace() {
    let v = Value::object()
        .with("zeta", 1i64)
        .with("alpha", Value::object().with("b", true).with("a", Value::Null))
        .with("Mid", vec!["x", "y"])
        .with("size", 18_446_744_073_709_551_615u64);
    assert_eq!(
        String::from_utf8(v.to_canonical()).expect("utf8"),
        r#"{"Mid":["x","y"],"alpha":{"a":null,"b":true},"size":9223372036854775807,"zeta":1}"#
    );
}

#[test]
fn strings_are_escaped_like_jcs() {
    let v = Value::from("q\" b\\ \u{8}\t\n\u{c}\r \u{1} \u{1f} / é € 😀 \u{7f}");
    assert_eq!(
        String::from_utf8(v.to_canonical()).expect("utf8"),
        "\"q\\\" b\\\\ \\b\\t\\n\\f\\r \\u0001 \\u001f / é € 😀 \u{7f}\""
    );
}

#[test]
fn keys_sort_by_utf16_code_units() {
    // U+FB01 (one UTF-16 unit 0xFB01) sorts after U+1F600 (surrogates 0xD83D...) in
    // UTF-16, but before it in UTF-8 bytes.
    let v = Value::object().with("\u{fb01}", 1i64).with("\u{1f600}", 2i64).with("a", 0i64);
    assert_eq!(String::from_utf8(v.to_canonical()).expect("utf8"), "{\"a\":0,\"\u{1f600}\":2,\"\u{fb01}\":1}");
}

#[test]
fn parse_round_trips_and_refuses_floats() {
    let text = br#" { "b" : [1, -2, "x"], "a": {"k": false} } "#;
    let v = json::parse(text).expect("parse");
    assert_eq!(v.to_canonical(), br#"{"a":{"k":false},"b":[1,-2,"x"]}"#);
    assert!(json::is_canonical(br#"{"a":{"k":false},"b":[1,-2,"x"]}"#));
    assert!(!json::is_canonical(text));
    assert!(json::parse(b"{\"a\":1.5}").is_err());
    assert!(json::parse(b"{").is_err());
}

#[test]
fn maps_convert_in_order() {
    let mut m = BTreeMap::new();
    m.insert("org.b".to_owned(), "2".to_owned());
    m.insert("org.a".to_owned(), "1".to_owned());
    assert_eq!(Value::from(&m).to_canonical(), br#"{"org.a":"1","org.b":"2"}"#);
}
