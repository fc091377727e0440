//! Resolver tests over in-memory packuments. The expected layouts of the first tests were
//! checked against `npm install -g` (npm 11) run on the same packuments served locally.

use std::collections::BTreeMap;

use openshell_npm::{
    BinLink, Packument, PackumentSource, Platform, ResolveError, ResolvedPackage, TarballLocation, bin_links, resolve,
};
use serde_json::{Value, json};

const REG: &str = "https://registry.example.com";

#[derive(Debug)]
struct NotFound(String);
impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no such package {}", self.0)
    }
}
impl std::error::Error for NotFound {}

/// Packuments built from `{name: {"latest": v, "versions": {v: manifest}}}`; every version
/// gets a `dist` unless it has one.
#[derive(Default)]
struct Mem {
    docs: BTreeMap<String, Packument>,
    fetched: Vec<String>,
}

impl Mem {
    fn new(spec: Value) -> Mem {
        let mut docs = BTreeMap::new();
        for (name, pk) in spec.as_object().expect("object") {
            let mut versions = serde_json::Map::new();
            for (v, m) in pk["versions"].as_object().expect("versions") {
                let mut m = m.clone();
                let base = name.rsplit('/').next().expect("name");
                m["name"] = json!(name);
                m["version"] = json!(v);
                if m.get("dist").is_none() {
                    m["dist"] = json!({
                        "tarball": format!("{REG}/{name}/-/{base}-{v}.tgz"),
                        "integrity": format!("sha512-{}", "A".repeat(86) + "=="),
                        "shasum": "0".repeat(40),
                    });
                }
                versions.insert(v.clone(), m);
            }
            let mut tags = pk.get("tags").cloned().unwrap_or(json!({}));
            if let Some(l) = pk.get("latest") {
                tags["latest"] = l.clone();
            }
            let doc = json!({"name": name, "dist-tags": tags, "versions": versions});
            let p = Packument::from_json(doc.to_string().as_bytes(), Some(name)).expect("packument");
            docs.insert(name.clone(), p);
        }
        Mem { docs, fetched: Vec::new() }
    }
}

impl PackumentSource for Mem {
    type Error = NotFound;
    fn packument(&mut self, name: &str) -> Result<Packument, NotFound> {
        self.fetched.push(name.to_string());
        self.docs.get(name).cloned().ok_or_else(|| NotFound(name.to_string()))
    }
}

fn layout(pkgs: &[ResolvedPackage]) -> Vec<String> {
    pkgs.iter().map(|p| format!("{} {}", p.path, p.version)).collect()
}

fn linux() -> Platform {
    Platform::linux_x64_glibc()
}

fn links(l: &[BinLink]) -> Vec<String> {
    l.iter().map(|l| format!("{} -> {}", l.link, l.target)).collect()
}

#[test]
fn conflicts_are_nested_and_the_rest_hoisted_under_the_root() {
    let mut src = Mem::new(json!({
        "app": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"a": "^1", "b": "^1", "c": "^2"}, "bin": "cli.js"}}},
        "a": {"latest": "1.1.0", "versions": {"1.0.0": {}, "1.1.0": {"dependencies": {"c": "^1"}, "bin": {"a-tool": "./bin/a.js"}}}},
        "b": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"d": "^1"}}}},
        "c": {"latest": "2.0.1", "versions": {"1.0.0": {}, "1.5.0": {}, "2.0.0": {}, "2.0.1": {"bin": {"cc": "c.js"}}}},
        "d": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"c": "^2.0.0", "e": "*"}}}},
        "e": {"latest": "3.0.0", "versions": {"3.0.0": {}, "3.1.0-beta.1": {}}}
    }));
    let r = resolve(&mut src, &[("app", "latest")], &linux()).expect("resolves");
    assert_eq!(
        layout(&r.packages),
        [
            "lib/node_modules/app 1.0.0",
            "lib/node_modules/app/node_modules/a 1.1.0",
            "lib/node_modules/app/node_modules/a/node_modules/c 1.5.0",
            "lib/node_modules/app/node_modules/b 1.0.0",
            "lib/node_modules/app/node_modules/c 2.0.1",
            "lib/node_modules/app/node_modules/d 1.0.0",
            "lib/node_modules/app/node_modules/e 3.0.0",
        ]
    );
    assert_eq!(
        links(&bin_links(&r.packages).expect("links")),
        [
            "bin/app -> ../lib/node_modules/app/cli.js",
            "lib/node_modules/app/node_modules/.bin/a-tool -> ../a/bin/a.js",
            "lib/node_modules/app/node_modules/.bin/cc -> ../c/c.js",
        ]
    );
    let app = &r.packages[0];
    assert!(app.is_root());
    assert_eq!(app.dependencies["c"], "lib/node_modules/app/node_modules/c");
    let a = &r.packages[1];
    assert_eq!(a.dependencies["c"], "lib/node_modules/app/node_modules/a/node_modules/c");
    assert_eq!(
        a.tarball_location(&url::Url::parse(REG).expect("url")),
        TarballLocation::RegistryRelative("a/-/a-1.1.0.tgz".into())
    );
    assert!(r.skipped.is_empty() && r.warnings.is_empty());
}

#[test]
fn roots_stay_separate_but_resolve_through_the_global_root() {
    // `x` needs `y@^1`: the root `y@1.2.0` satisfies it, so nothing is nested. `z` needs
    // `y@^2`, which conflicts with nothing inside `z`, so it goes under `z`.
    let mut src = Mem::new(json!({
        "x": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"y": "^1", "w": "1"}}}},
        "y": {"latest": "1.2.0", "versions": {"1.2.0": {}, "2.0.0": {}}},
        "z": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"y": "^2", "w": "1"}}}},
        "w": {"latest": "1.0.0", "versions": {"1.0.0": {}}}
    }));
    let r = resolve(&mut src, &[("z", "*"), ("x", "*"), ("y", "^1")], &linux()).expect("resolves");
    assert_eq!(
        layout(&r.packages),
        [
            "lib/node_modules/x 1.0.0",
            "lib/node_modules/x/node_modules/w 1.0.0",
            "lib/node_modules/y 1.2.0",
            "lib/node_modules/z 1.0.0",
            "lib/node_modules/z/node_modules/w 1.0.0",
            "lib/node_modules/z/node_modules/y 2.0.0",
        ]
    );
    assert_eq!(r.packages[0].dependencies["y"], "lib/node_modules/y");
}

/// A package shaped like the agents: a small JS entry point plus one native package per
/// platform as optional dependencies (scoped packages, `npm:` aliases to platform builds
/// of the same package, libc variants).
fn agents() -> Mem {
    let plat = |os: &str, cpu: &str| json!({"os": [os], "cpu": [cpu]});
    let mut linux_musl = plat("linux", "x64");
    linux_musl["libc"] = json!(["musl"]);
    let mut linux_glibc = plat("linux", "x64");
    linux_glibc["libc"] = json!(["glibc"]);
    linux_glibc["bin"] = json!({"opencode": "bin/opencode"});
    Mem::new(json!({
        "@vendor/agent": {"latest": "2.0.5", "versions": {"2.0.5": {
            "bin": {"agent": "cli.js"},
            "optionalDependencies": {
                "@vendor/agent-linux-x64": "2.0.5", "@vendor/agent-linux-arm64": "2.0.5",
                "@vendor/agent-darwin-arm64": "2.0.5", "@vendor/agent-win32-x64": "2.0.5"
            },
            "scripts": {"postinstall": "node install.cjs"}
        }}},
        "@vendor/agent-linux-x64": {"latest": "2.0.5", "versions": {"2.0.5": plat("linux", "x64")}},
        "@vendor/agent-linux-arm64": {"latest": "2.0.5", "versions": {"2.0.5": plat("linux", "arm64")}},
        "@vendor/agent-darwin-arm64": {"latest": "2.0.5", "versions": {"2.0.5": plat("darwin", "arm64")}},
        "@vendor/agent-win32-x64": {"latest": "2.0.5", "versions": {"2.0.5": plat("win32", "x64")}},
        "codexish": {"latest": "0.9.0", "tags": {"linux-x64": "0.9.0-linux-x64"}, "versions": {
            "0.9.0": {"bin": {"codexish": "bin/codex.js"}, "optionalDependencies": {
                "codexish-linux-x64": "npm:codexish@0.9.0-linux-x64",
                "codexish-darwin-arm64": "npm:codexish@0.9.0-darwin-arm64"
            }},
            "0.9.0-linux-x64": plat("linux", "x64"),
            "0.9.0-darwin-arm64": plat("darwin", "arm64")
        }},
        "opencodeish": {"latest": "1.0.0", "versions": {"1.0.0": {
            "bin": {"opencode": "bin/opencode"},
            "optionalDependencies": {
                "opencodeish-linux-x64": "1.0.0", "opencodeish-linux-x64-musl": "1.0.0",
                "opencodeish-not-arm": "1.0.0"
            }
        }}},
        "opencodeish-linux-x64": {"latest": "1.0.0", "versions": {"1.0.0": linux_glibc}},
        "opencodeish-linux-x64-musl": {"latest": "1.0.0", "versions": {"1.0.0": linux_musl}},
        "opencodeish-not-arm": {"latest": "1.0.0", "versions": {"1.0.0": {"cpu": ["!arm64"], "libc": ["!musl"]}}}
    }))
}

#[test]
fn optional_platform_packages_follow_the_platform() {
    let roots = [("@vendor/agent", "latest"), ("codexish", "^0.9.0"), ("opencodeish", "1")];
    let r = resolve(&mut agents(), &roots, &linux()).expect("resolves");
    assert_eq!(
        layout(&r.packages),
        [
            "lib/node_modules/@vendor/agent 2.0.5",
            "lib/node_modules/@vendor/agent/node_modules/@vendor/agent-linux-x64 2.0.5",
            "lib/node_modules/codexish 0.9.0",
            "lib/node_modules/codexish/node_modules/codexish-linux-x64 0.9.0-linux-x64",
            "lib/node_modules/opencodeish 1.0.0",
            "lib/node_modules/opencodeish/node_modules/opencodeish-linux-x64 1.0.0",
            "lib/node_modules/opencodeish/node_modules/opencodeish-not-arm 1.0.0",
        ]
    );
    let alias = &r.packages[3];
    assert_eq!((alias.name.as_str(), alias.package.as_str()), ("codexish-linux-x64", "codexish"));
    assert!(alias.optional && !r.packages[2].optional);
    let agent = &r.packages[0];
    assert!(agent.has_install_script);
    assert_eq!(agent.install_scripts["postinstall"], "node install.cjs");
    let skipped: Vec<String> = r.skipped.iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        skipped,
        [
            "@vendor/agent-darwin-arm64",
            "@vendor/agent-linux-arm64",
            "@vendor/agent-win32-x64",
            "codexish-darwin-arm64",
            "opencodeish-linux-x64-musl",
        ]
    );
    assert!(r.skipped.iter().all(|s| s.reason.contains("unsupported platform")));
    assert_eq!(
        links(&bin_links(&r.packages).expect("links")),
        [
            "bin/agent -> ../lib/node_modules/@vendor/agent/cli.js",
            "bin/codexish -> ../lib/node_modules/codexish/bin/codex.js",
            "bin/opencode -> ../lib/node_modules/opencodeish/bin/opencode",
            "lib/node_modules/opencodeish/node_modules/.bin/opencode -> ../opencodeish-linux-x64/bin/opencode",
        ]
    );

    let arm_musl = Platform { os: "linux".into(), cpu: "arm64".into(), libc: "musl".into(), node_version: None };
    let r = resolve(&mut agents(), &roots, &arm_musl).expect("resolves");
    let names: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["@vendor/agent", "@vendor/agent-linux-arm64", "codexish", "opencodeish"]);

    let mac = Platform { os: "darwin".into(), cpu: "arm64".into(), libc: String::new(), node_version: None };
    let r = resolve(&mut agents(), &roots, &mac).expect("resolves");
    let names: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["@vendor/agent", "@vendor/agent-darwin-arm64", "codexish", "codexish-darwin-arm64", "opencodeish"]
    );
}

#[test]
fn a_required_package_for_another_platform_is_an_error_naming_the_chain() {
    let mut src = Mem::new(json!({
        "tool": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"mid": "^1"}}}},
        "mid": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"native": "^1"}}}},
        "native": {"latest": "1.0.0", "versions": {"1.0.0": {"os": ["darwin"]}}}
    }));
    let e = resolve(&mut src, &[("tool", "1.0.0")], &linux()).expect_err("fails");
    let msg = e.to_string();
    assert!(matches!(e, ResolveError::UnsupportedPlatform { .. }), "{msg}");
    assert!(
        msg.starts_with("tool@1.0.0 > mid@1.0.0 > native@1.0.0: native@1.0.0 does not support linux/x64/glibc"),
        "{msg}"
    );
}

#[test]
fn an_optional_dependency_drops_everything_only_it_needed() {
    // `fancy` (optional) needs `native` (darwin only): both go, `shared` stays because the
    // root needs it too, `only-fancy` goes.
    let mut src = Mem::new(json!({
        "tool": {"latest": "1.0.0", "versions": {"1.0.0": {
            "dependencies": {"shared": "1"}, "optionalDependencies": {"fancy": "1", "ghost": "^9"}}}},
        "fancy": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"native": "1", "shared": "1", "only-fancy": "1"}}}},
        "native": {"latest": "1.0.0", "versions": {"1.0.0": {"os": ["darwin"]}}},
        "shared": {"latest": "1.0.0", "versions": {"1.0.0": {}}},
        "only-fancy": {"latest": "1.0.0", "versions": {"1.0.0": {}}},
        "ghost": {"latest": "1.0.0", "versions": {"1.0.0": {}}}
    }));
    let r = resolve(&mut src, &[("tool", "1")], &linux()).expect("resolves");
    assert_eq!(layout(&r.packages), ["lib/node_modules/tool 1.0.0", "lib/node_modules/tool/node_modules/shared 1.0.0"]);
    let skipped: Vec<(&str, &str)> = r.skipped.iter().map(|s| (s.name.as_str(), s.reason.as_str())).collect();
    assert!(skipped.contains(&("ghost", "no version of ghost matches \"^9\" (versions: 1.0.0)")), "{skipped:?}");
    assert!(skipped.iter().any(|(n, r)| *n == "native" && r.contains("unsupported platform")), "{skipped:?}");
    assert!(skipped.iter().any(|(n, r)| *n == "fancy" && r.contains("only needed by native")), "{skipped:?}");
    assert!(skipped.iter().any(|(n, _)| *n == "only-fancy"), "{skipped:?}");
}

#[test]
fn unsatisfiable_specs_name_the_chain_and_the_spec() {
    let mut src = Mem::new(json!({
        "tool": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"lib": "^1"}}}},
        "lib": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"leaf": ">=3 <4"}}}},
        "leaf": {"latest": "2.0.0", "versions": {"1.0.0": {}, "2.0.0": {}, "4.0.0-rc.1": {}}}
    }));
    let e = resolve(&mut src, &[("tool", "1")], &linux()).expect_err("fails");
    assert_eq!(
        e.to_string(),
        "tool@1.0.0 > lib@1.0.0 > leaf@>=3 <4: no version of leaf matches \">=3 <4\" (versions: 1.0.0, 2.0.0, 4.0.0-rc.1)"
    );
    let e = resolve(&mut src, &[("tool", "^2")], &linux()).expect_err("fails");
    assert_eq!(e.to_string(), "tool@^2: no version of tool matches \"^2\" (versions: 1.0.0)");
    let e = resolve(&mut src, &[("tool", "beta")], &linux()).expect_err("fails");
    assert_eq!(e.to_string(), "tool@beta: tool has no dist-tag \"beta\" (tags: latest)");
    let e = resolve(&mut src, &[("nope", "1")], &linux()).expect_err("fails");
    assert!(matches!(&e, ResolveError::Source { package, .. } if package == "nope"), "{e}");
    let mut git = Mem::new(json!({
        "tool": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"g": "github:user/repo"}}}}
    }));
    let e = resolve(&mut git, &[("tool", "1")], &linux()).expect_err("fails");
    assert!(e.to_string().starts_with("tool@1.0.0 > g@github:user/repo: unsupported dependency spec"), "{e}");
}

#[test]
fn dist_tags_prereleases_and_deprecation_pick_like_npm() {
    let mut src = Mem::new(json!({
        "p": {"latest": "1.2.0", "tags": {"next": "2.0.0-rc.2"}, "versions": {
            "1.0.0": {}, "1.2.0": {}, "1.3.0": {}, "1.4.0": {"deprecated": "broken"},
            "2.0.0-rc.1": {}, "2.0.0-rc.2": {}
        }},
        "q": {"latest": "3.0.0-beta.1", "versions": {"2.0.0": {}, "3.0.0-beta.1": {}}}
    }));
    let pick = |src: &mut Mem, spec: &str| -> String {
        let r = resolve(src, &[("p", spec)], &linux()).expect("resolves");
        r.packages[0].version.clone()
    };
    assert_eq!(pick(&mut src, "latest"), "1.2.0");
    assert_eq!(pick(&mut src, "*"), "1.2.0", "`latest` wins when it satisfies");
    assert_eq!(pick(&mut src, "^1.2.0"), "1.2.0");
    assert_eq!(pick(&mut src, ">1.2.0"), "1.3.0", "highest non-deprecated");
    assert_eq!(pick(&mut src, "1.4.0"), "1.4.0", "exact versions are taken as is");
    assert_eq!(pick(&mut src, ">=1.4.0"), "1.4.0", "deprecated beats nothing");
    assert_eq!(pick(&mut src, "next"), "2.0.0-rc.2");
    assert_eq!(pick(&mut src, "^2.0.0-rc.1"), "2.0.0-rc.2");
    assert_eq!(pick(&mut src, "2.0.0-rc.1"), "2.0.0-rc.1");
    assert!(resolve(&mut src, &[("p", "^2")], &linux()).is_err(), "prereleases need a prerelease comparator");
    let q = |src: &mut Mem, spec: &str| {
        resolve(src, &[("q", spec)], &linux()).expect("resolves").packages[0].version.clone()
    };
    assert_eq!(q(&mut src, "*"), "3.0.0-beta.1", "`*` accepts a prerelease latest");
    assert_eq!(q(&mut src, ">=2"), "2.0.0");
}

#[test]
fn engines_steer_the_choice_when_a_node_version_is_given() {
    let mut src = Mem::new(json!({
        "e": {"latest": "3.0.0", "versions": {
            "1.0.0": {"engines": {"node": ">=14"}}, "2.0.0": {"engines": {"node": ">=18"}},
            "3.0.0": {"engines": {"node": ">=24"}}}},
        "host": {"latest": "1.0.0", "versions": {"1.0.0": {"optionalDependencies": {"new-only": "1"}}}},
        "new-only": {"latest": "1.0.0", "versions": {"1.0.0": {"engines": {"node": ">=24"}}}}
    }));
    let mut p = linux();
    p.node_version = Some("22.11.0".into());
    let r = resolve(&mut src, &[("e", "*"), ("host", "1")], &p).expect("resolves");
    assert_eq!(layout(&r.packages), ["lib/node_modules/e 2.0.0", "lib/node_modules/host 1.0.0"]);
    assert!(r.skipped[0].reason.contains("engines.node"), "{:?}", r.skipped);
    let r = resolve(&mut src, &[("e", "*")], &linux()).expect("resolves");
    assert_eq!(r.packages[0].version, "3.0.0");
    p.node_version = Some("not a version".into());
    assert!(matches!(resolve(&mut src, &[("e", "*")], &p), Err(ResolveError::InvalidNodeVersion(_))));
}

#[test]
fn peers_are_installed_next_to_their_dependent_and_optional_peers_skipped() {
    let mut src = Mem::new(json!({
        "app": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"plugin": "1", "host": "2"}}}},
        "plugin": {"latest": "1.0.0", "versions": {"1.0.0": {
            "peerDependencies": {"host": ">=2", "typescript": "*", "react": "^18"},
            "peerDependenciesMeta": {"typescript": {"optional": true}}}}},
        "host": {"latest": "3.0.0", "versions": {"2.0.0": {}, "3.0.0": {}}},
        "react": {"latest": "18.3.1", "versions": {"18.3.1": {}, "19.0.0": {}}},
        "typescript": {"latest": "5.0.0", "versions": {"5.0.0": {}}}
    }));
    let r = resolve(&mut src, &[("app", "1")], &linux()).expect("resolves");
    assert_eq!(
        layout(&r.packages),
        [
            "lib/node_modules/app 1.0.0",
            "lib/node_modules/app/node_modules/host 2.0.0",
            "lib/node_modules/app/node_modules/plugin 1.0.0",
            "lib/node_modules/app/node_modules/react 18.3.1",
        ]
    );
    assert!(!src.fetched.contains(&"typescript".to_string()));
}

#[test]
fn bundled_dependencies_are_not_resolved() {
    let mut src = Mem::new(json!({
        "b": {"latest": "1.0.0", "versions": {"1.0.0": {
            "dependencies": {"inside": "1", "outside": "1"}, "bundleDependencies": ["inside"]}}},
        "outside": {"latest": "1.0.0", "versions": {"1.0.0": {}}}
    }));
    let r = resolve(&mut src, &[("b", "1")], &linux()).expect("resolves");
    assert_eq!(layout(&r.packages), ["lib/node_modules/b 1.0.0", "lib/node_modules/b/node_modules/outside 1.0.0"]);
    assert_eq!(r.packages[0].bundled, ["inside"]);
}

#[test]
fn output_and_bins_cover_strings_maps_scopes_and_man_pages() {
    let mut src = Mem::new(json!({
        "@scope/cli": {"latest": "1.0.0", "versions": {"1.0.0": {
            "bin": "./dist/main.js", "man": ["./man/cli.1", "man/cli-config.5.gz"],
            "dependencies": {"@scope/helper": "1"}}}},
        "@scope/helper": {"latest": "1.0.0", "versions": {"1.0.0": {"bin": {"help-me": "h.js", "../../x": "../../x.js"}}}}
    }));
    let r = resolve(&mut src, &[("@scope/cli", "1")], &linux()).expect("resolves");
    assert_eq!(r.packages[0].bin, BTreeMap::from([("cli".to_string(), "dist/main.js".to_string())]));
    let l = bin_links(&r.packages).expect("links");
    assert_eq!(
        links(&l),
        [
            "bin/cli -> ../lib/node_modules/@scope/cli/dist/main.js",
            "lib/node_modules/@scope/cli/node_modules/.bin/help-me -> ../@scope/helper/h.js",
            "lib/node_modules/@scope/cli/node_modules/.bin/x -> ../@scope/helper/x.js",
            "share/man/man1/cli.1 -> ../../../lib/node_modules/@scope/cli/man/cli.1",
            "share/man/man5/cli-config.5.gz -> ../../../lib/node_modules/@scope/cli/man/cli-config.5.gz",
        ]
    );
    assert_eq!(l[0].file, "lib/node_modules/@scope/cli/dist/main.js");
    let json = serde_json::to_value(&r).expect("serializes");
    assert_eq!(json["packages"][0]["path"], "lib/node_modules/@scope/cli");
}

#[test]
fn duplicate_roots_are_rejected_and_output_is_deterministic() {
    let mut src = agents();
    let e = resolve(&mut src, &[("codexish", "1"), ("codexish", "2")], &linux()).expect_err("dup");
    assert!(matches!(e, ResolveError::DuplicateRoot { .. }));
    let a = resolve(&mut agents(), &[("opencodeish", "1"), ("codexish", "*")], &linux()).expect("a");
    let b = resolve(&mut agents(), &[("codexish", "*"), ("opencodeish", "1")], &linux()).expect("b");
    assert_eq!(a, b);
}

#[test]
fn replacing_an_older_copy_when_every_dependent_accepts_the_newer_one() {
    // `a` needs `c@*` and gets `c@1.0.0` (latest); `b` later needs `c@^2`: `c@2` replaces it
    // at the root's level since `a` accepts any version.
    let mut src = Mem::new(json!({
        "r": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"a": "1", "b": "1"}}}},
        "a": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"c": "*"}}}},
        "b": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"c": "^2"}}}},
        "c": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"old-only": "1"}}, "2.0.0": {}}},
        "old-only": {"latest": "1.0.0", "versions": {"1.0.0": {}}}
    }));
    let r = resolve(&mut src, &[("r", "1")], &linux()).expect("resolves");
    assert_eq!(
        layout(&r.packages),
        [
            "lib/node_modules/r 1.0.0",
            "lib/node_modules/r/node_modules/a 1.0.0",
            "lib/node_modules/r/node_modules/b 1.0.0",
            "lib/node_modules/r/node_modules/c 2.0.0",
        ]
    );
}

/// A source that says which errors mean "no such package".
struct Mem404(Mem);

impl PackumentSource for Mem404 {
    type Error = NotFound;
    fn packument(&mut self, name: &str) -> Result<Packument, NotFound> {
        self.0.packument(name)
    }
    fn is_not_found(_: &NotFound) -> bool {
        true
    }
}

#[test]
fn unpublished_optional_packages_are_skipped_missing_required_ones_are_errors() {
    let spec = json!({
        "tool": {"latest": "1.0.0", "versions": {"1.0.0": {"optionalDependencies": {"tool-linux-x64": "1.0.0", "tool-darwin-arm64": "1.0.0"}}}},
        "tool-linux-x64": {"latest": "1.0.0", "versions": {"1.0.0": {"os": ["linux"], "cpu": ["x64"]}}}
    });
    let r = resolve(&mut Mem404(Mem::new(spec.clone())), &[("tool", "latest")], &linux()).expect("resolves");
    assert_eq!(
        layout(&r.packages),
        ["lib/node_modules/tool 1.0.0", "lib/node_modules/tool/node_modules/tool-linux-x64 1.0.0"]
    );
    assert!(
        r.skipped.iter().any(|s| s.name == "tool-darwin-arm64" && s.reason.contains("not in the registry")),
        "{:?}",
        r.skipped
    );
    // Without the classification, the same source error aborts (fail closed).
    assert!(resolve(&mut Mem::new(spec), &[("tool", "latest")], &linux()).is_err());

    let spec = json!({"app": {"latest": "1.0.0", "versions": {"1.0.0": {"dependencies": {"gone": "^1"}}}}});
    let e = resolve(&mut Mem404(Mem::new(spec)), &[("app", "latest")], &linux()).expect_err("required");
    assert!(e.to_string().contains("gone is not in the registry"), "{e}");
}
