//! Definitions and lockfiles: parsing, validation, stable text, tamper detection.

use std::collections::BTreeMap;

use openshell_build::def::{DefError, ImageDef};
use openshell_build::lockfile::*;

const DEF: &str = r#"
name: openshell/test
tag: "1"
debian:
  suites: [trixie]
  packages: [hello, "bash (>= 5)"]
npm:
  packages:
    left-pad: "^1.3.0"
files:
  - path: /etc/motd
    content: "hi\n"
env:
  PATH: /usr/local/bin:/usr/bin:/bin
user: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }
cmd: [/bin/bash]
"#;

#[test]
fn definition_parses_with_defaults() {
    let d = ImageDef::parse("t.yaml", DEF.as_bytes()).expect("valid");
    assert_eq!(d.tag, "1");
    assert_eq!(d.workdir, "/sandbox");
    assert_eq!(d.user.shell, "/bin/bash");
    let deb = d.debian.expect("debian");
    assert_eq!(deb.components, ["main"]);
    assert_eq!(deb.architecture, "amd64");
    assert_eq!(d.npm.expect("npm").prefix, "/usr/local");
}

#[test]
fn definition_errors_have_positions() {
    let bad = DEF.replace("cmd:", "cmdd:");
    match ImageDef::parse("t.yaml", bad.as_bytes()) {
        Err(DefError::Invalid { file, line, message, .. }) => {
            assert_eq!(file, "t.yaml");
            assert_eq!(line, 16);
            assert!(message.contains("cmdd"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    for (from, to, want) in [
        ("uid: 1000", "uid: 0", "must not be 0"),
        ("path: /etc/motd", "path: etc/motd", "absolute"),
        ("content: \"hi\\n\"", "mode: \"0644\"", "exactly one of"),
        ("name: openshell/test", "name: Bad Name", "lower-case"),
        (
            "cmd: [/bin/bash]",
            "cmd: [/bin/bash]\nexclude: [usr/share/doc]",
            "exclude: `usr/share/doc` must be an absolute",
        ),
        ("cmd: [/bin/bash]", "cmd: [/bin/bash]\nkeep: [\"/usr/{a\"]", "keep: `/usr/{a` is not a valid glob"),
    ] {
        let text = DEF.replace(from, to);
        let e = ImageDef::parse("t.yaml", text.as_bytes()).expect_err(want);
        assert!(e.to_string().contains(want), "{e}");
        assert!(matches!(e, DefError::Rule { ref file, .. } if file == "t.yaml"), "{e:?}");
        assert!(e.to_string().starts_with("t.yaml:1:1: "), "{e}");
    }
}

fn lock() -> Lockfile {
    Lockfile {
        version: 1,
        definition: DefinitionPin { file: "images/test.yaml".into(), sha256: format!("sha256:{}", "a".repeat(64)) },
        image: ImageConfig {
            name: "openshell/test".into(),
            tag: "1".into(),
            user: "sandbox".into(),
            uid: 1000,
            gid: 1000,
            home: "/sandbox".into(),
            shell: "/bin/bash".into(),
            workdir: "/sandbox".into(),
            env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
            entrypoint: vec![],
            cmd: vec!["/bin/bash".into()],
            labels: BTreeMap::new(),
            npm_prefix: Some("/usr/local".into()),
            site_packages: None,
            exclude: Vec::new(),
            keep: Vec::new(),
        },
        debian: vec![
            DebArtifact {
                name: "zlib1g".into(),
                version: "1:1.3".into(),
                architecture: "amd64".into(),
                suite: "trixie".into(),
                path: "pool/main/z/zlib/zlib1g_1.3_amd64.deb".into(),
                size: 10,
                sha256: format!("sha256:{}", "b".repeat(64)),
            },
            DebArtifact {
                name: "bash".into(),
                version: "5.2".into(),
                architecture: "amd64".into(),
                suite: "trixie".into(),
                path: "pool/main/b/bash/bash_5.2_amd64.deb".into(),
                size: 20,
                sha256: format!("sha256:{}", "c".repeat(64)),
            },
        ],
        npm: vec![NpmArtifact {
            install: "lib/node_modules/left-pad".into(),
            name: "left-pad".into(),
            version: "1.3.0".into(),
            path: "left-pad/-/left-pad-1.3.0.tgz".into(),
            integrity: "sha512-AAAA".into(),
            size: None,
        }],
        pypi: vec![],
        file: vec![],
    }
}

#[test]
fn text_is_stable_sorted_and_round_trips() {
    let l = lock();
    let text = l.to_text().expect("text");
    let mut shuffled = l.clone();
    shuffled.debian.reverse();
    assert_eq!(shuffled.to_text().expect("text"), text, "order of artifacts does not matter");
    assert!(text.find("name = \"bash\"") < text.find("name = \"zlib1g\""), "sorted");
    assert!(!text.contains("http"), "no source addresses in a lockfile");
    let parsed = Lockfile::parse("x.lock", &text).expect("parse");
    let mut want = l;
    want.debian.sort();
    assert_eq!(parsed, want);
}

#[test]
fn tampering_is_refused() {
    let text = lock().to_text().expect("text");
    let tampered = text.replace(&"b".repeat(64), &"d".repeat(64));
    let e = Lockfile::parse("x.lock", &tampered).expect_err("tampered");
    assert!(matches!(e, LockfileError::Tampered { .. }), "{e}");
    assert!(e.to_string().contains("modified after `openshell lock`"), "{e}");
    let e = Lockfile::parse("x.lock", &text.replacen("# openshell", "# other", 1)).expect_err("header");
    assert!(e.to_string().contains("not an openshell lockfile"), "{e}");
}

#[test]
fn bad_digests_are_named() {
    let mut l = lock();
    l.debian[0].sha256 = "sha256:nothex".into();
    let text = l.to_text().expect("text");
    let e = Lockfile::parse("x.lock", &text).expect_err("bad digest");
    assert!(e.to_string().contains("debian `bash` sha256") || e.to_string().contains("debian `zlib1g` sha256"), "{e}");
}
