//! deb822 parsing.

use openshell_debian::control::{self, ParseOptions};

#[test]
fn paragraphs_fields_and_order() {
    let text = "Package: a\nVersion: 1\nDepends: b,\n c (>= 2),\n\td\n\n\n  \nPackage: b\nVersion: 2\n";
    let paras = control::parse("Packages", text).expect("parses");
    assert_eq!(paras.len(), 2);
    let a = &paras[0];
    assert_eq!(a.line(), 1);
    let names: Vec<&str> = a.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["Package", "Version", "Depends"]);
    assert_eq!(a.get("depends"), Some("b,\n c (>= 2),\n\td"), "case-insensitive lookup, lines kept");
    assert_eq!(a.field("Depends").expect("field").line, 3);
    assert_eq!(paras[1].line(), 9);
    assert_eq!(paras[1].get("Package"), Some("b"));
    assert_eq!(paras[1].get("Missing"), None);
}

#[test]
fn values_are_trimmed_and_empty_first_line_kept() {
    let text = "A:   spaced   \nSHA256:\n abc 1 x\n def 2 y   \nB:\n";
    let p = &control::parse("Release", text).expect("parses")[0];
    assert_eq!(p.get("A"), Some("spaced"));
    assert_eq!(p.get("SHA256"), Some("\n abc 1 x\n def 2 y"));
    assert_eq!(p.get("B"), Some(""));
}

#[test]
fn crlf_line_endings_are_accepted() {
    let p = control::parse("x", "A: 1\r\nB: 2\r\n\r\nC: 3\r\n").expect("parses");
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].get("B"), Some("2"));
}

#[test]
fn comments_are_rejected_by_default_with_the_line() {
    let err = control::parse("main/Packages", "Package: a\n# note\nVersion: 1\n").expect_err("comment");
    assert_eq!(err.line, 2);
    assert_eq!(err.origin, "main/Packages");
    assert_eq!(err.to_string(), "main/Packages:2: comment lines are not allowed here");
}

#[test]
fn comments_can_be_allowed() {
    let p = control::parse_with(
        "debian/control",
        "# c\nSource: x\n# inner\nSection: y\n",
        ParseOptions { allow_comments: true },
    )
    .expect("parses");
    assert_eq!(p[0].fields().len(), 2);
}

#[test]
fn line_without_colon_is_an_error() {
    let err = control::parse("f", "A: 1\nnot a field\n").expect_err("no colon");
    assert_eq!(err.line, 2);
    assert!(err.message.contains("expected `Field: value`"), "{err}");
}

#[test]
fn continuation_without_field_is_an_error() {
    let err = control::parse("f", "A: 1\n\n continued\n").expect_err("orphan continuation");
    assert_eq!(err.line, 3);
    assert!(err.message.contains("continuation"), "{err}");
}

#[test]
fn duplicate_field_names_both_lines() {
    let err = control::parse("f", "A: 1\nB: 2\na: 3\n").expect_err("duplicate");
    assert_eq!(err.line, 3);
    assert!(err.message.contains("first on line 1"), "{err}");
}

#[test]
fn bad_field_names() {
    assert_eq!(control::parse("f", ": x\n").expect_err("empty name").line, 1);
    assert!(control::parse("f", "A B: x\n").expect_err("space").message.contains("contains"));
    assert!(control::parse("f", "-A: x\n").expect_err("dash").message.contains("starts with `-`"));
}

#[test]
fn invalid_utf8_names_the_line() {
    let err = control::parse_bytes("f", b"A: 1\nB: \xff\n").expect_err("not utf-8");
    assert_eq!(err.line, 2);
    assert!(err.message.contains("UTF-8"));
}

#[test]
fn single_paragraph() {
    assert!(control::parse_single("control", "Package: a\n").is_ok());
    assert_eq!(control::parse_single("control", "Package: a\n\nPackage: b\n").expect_err("two").line, 3);
    assert!(control::parse_single("control", "\n\n").is_err());
}

#[test]
fn empty_input_has_no_paragraphs() {
    assert!(control::parse("f", "").expect("ok").is_empty());
    assert!(control::parse("f", "\n \n\t\n").expect("ok").is_empty());
}

#[test]
fn display_round_trips() {
    let text = "Package: a\nDescription: short\n long line\n .\n more\nSHA256:\n abc 1 x\n";
    let p = control::parse_single("x", text).expect("parses");
    assert_eq!(p.to_string(), text);
    assert_eq!(control::parse_single("x", &p.to_string()).expect("reparses"), p);
}
