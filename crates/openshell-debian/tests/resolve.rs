//! Dependency closure over synthetic indexes.

use openshell_debian::packages::PackageIndex;
use openshell_debian::resolve::{Reason, Request, Resolution, ResolveError, resolve};

/// One Packages paragraph; `extra` holds more fields (`Architecture:` overrides amd64).
fn p(name: &str, version: &str, extra: &str) -> String {
    let mut s = format!("Package: {name}\nVersion: {version}\n");
    if !extra.contains("Architecture:") {
        s.push_str("Architecture: amd64\n");
    }
    for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
        s.push_str(line);
        s.push('\n');
    }
    let sha = openshell_store::Digest::sha256(s.as_bytes()).hex();
    s.push_str(&format!("Filename: pool/{name}_{version}.deb\nSize: 1\nSHA256: {sha}\n\n"));
    s
}

fn index(origin: &str, paras: &[String]) -> PackageIndex {
    PackageIndex::parse(origin, paras.concat().as_bytes()).expect("index parses")
}

fn reqs(list: &[&str]) -> Vec<Request> {
    list.iter().map(|s| s.parse().expect("request parses")).collect()
}

fn run(indexes: &[PackageIndex], list: &[&str]) -> Resolution {
    resolve(indexes, "amd64", &reqs(list)).unwrap_or_else(|e| panic!("resolves: {e}"))
}

fn ids(r: &Resolution) -> Vec<String> {
    r.packages.iter().map(|s| format!("{}={}", s.package.name, s.package.version)).collect()
}

fn fail(indexes: &[PackageIndex], list: &[&str]) -> ResolveError {
    resolve(indexes, "amd64", &reqs(list)).expect_err("should fail")
}

#[test]
fn single_package_without_dependencies() {
    let i = index("main", &[p("a", "1", ""), p("b", "1", "")]);
    let r = run(&[i], &["a"]);
    assert_eq!(ids(&r), ["a=1"]);
    assert_eq!(r.packages[0].reason, Reason::Requested("a".into()));
    assert_eq!(r.packages[0].index, 0);
}

#[test]
fn chain_is_followed_and_sorted_by_name() {
    let i = index("main", &[p("z", "1", "Depends: m"), p("m", "1", "Depends: a"), p("a", "1", "")]);
    let r = run(&[i], &["z"]);
    assert_eq!(ids(&r), ["a=1", "m=1", "z=1"]);
    assert_eq!(r.get("a").expect("a").reason, Reason::Dependency { of: "m".into(), relation: "Depends: a".into() });
    assert_eq!(r.names(), ["a", "m", "z"]);
}

#[test]
fn highest_version_satisfying_the_constraint() {
    let i = index("main", &[p("a", "1", "Depends: b (<< 2)"), p("b", "1.0", ""), p("b", "1.5", ""), p("b", "2.0", "")]);
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1", "b=1.5"]);
}

#[test]
fn updates_index_wins_with_a_higher_version() {
    let main = index("main", &[p("a", "1", "Depends: libc (>= 2)"), p("libc", "2.36-9", "")]);
    let updates = index("updates", &[p("libc", "2.36-9+deb12u4", "")]);
    let r = run(&[main, updates], &["a"]);
    assert_eq!(ids(&r), ["a=1", "libc=2.36-9+deb12u4"]);
    assert_eq!(r.get("libc").expect("libc").index, 1);
    assert_eq!(r.get("a").expect("a").index, 0);
}

#[test]
fn same_version_in_two_indexes_comes_from_the_first() {
    let a = index("first", &[p("a", "1", "")]);
    let b = index("second", &[p("a", "1", "")]);
    assert_eq!(run(&[a.clone(), b.clone()], &["a"]).packages[0].index, 0);
    assert_eq!(run(&[b, a], &["a"]).packages[0].index, 0);
}

#[test]
fn first_satisfiable_alternative_is_chosen() {
    let i = index("main", &[p("a", "1", "Depends: missing | y (>= 2) | z"), p("y", "1", ""), p("z", "1", "")]);
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1", "z=1"]);
}

#[test]
fn already_selected_alternative_is_preferred() {
    let i = index("main", &[p("a", "1", "Depends: x | y"), p("x", "1", ""), p("y", "1", "")]);
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["a"])), ["a=1", "x=1"]);
    // y is requested, so `x | y` is satisfied by it and x is not added.
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["a", "y"])), ["a=1", "y=1"]);
    // Even when the request comes after the package that needs it.
    assert_eq!(ids(&run(&[i], &["y", "a"])), ["a=1", "y=1"]);
}

#[test]
fn virtual_package_picks_provider_by_priority_then_name() {
    let i = index(
        "main",
        &[
            p("base", "1", "Pre-Depends: awk"),
            p("gawk", "5", "Provides: awk\nPriority: optional"),
            p("original-awk", "1", "Provides: awk\nPriority: optional"),
            p("mawk", "1.3", "Provides: awk\nPriority: required"),
        ],
    );
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["base"])), ["base=1", "mawk=1.3"]);
    // An explicitly requested provider satisfies the virtual package.
    assert_eq!(ids(&run(&[i], &["base", "gawk"])), ["base=1", "gawk=5"]);
}

#[test]
fn real_package_is_preferred_over_providers() {
    let i = index("main", &[p("a", "1", "Depends: foo"), p("bar", "9", "Provides: foo"), p("foo", "1", "")]);
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1", "foo=1"]);
}

#[test]
fn versioned_provides() {
    let i = index(
        "main",
        &[p("a", "1", "Depends: foo (>= 2)"), p("old", "1", "Provides: foo"), p("new", "1", "Provides: foo (= 2.1)")],
    );
    // The unversioned provider cannot satisfy a versioned relation.
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["a"])), ["a=1", "new=1"]);
    let i = index("main", &[p("a", "1", "Depends: foo (>= 3)"), p("new", "1", "Provides: foo (= 2.1)")]);
    let err = fail(&[i], &["a"]);
    assert!(err.to_string().contains("its providers do not match: new (= 2.1)"), "{err}");
}

#[test]
fn recommends_and_suggests_are_not_followed() {
    let i = index("main", &[p("a", "1", "Recommends: r\nSuggests: s\nEnhances: e"), p("r", "1", ""), p("s", "1", "")]);
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1"]);
}

#[test]
fn essential_packages_are_not_added() {
    let i = index("main", &[p("a", "1", ""), p("base-files", "13", "Essential: yes\nPriority: required")]);
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1"]);
}

#[test]
fn pre_depends_are_followed() {
    let i = index("main", &[p("a", "1", "Pre-Depends: b"), p("b", "1", "")]);
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1", "b=1"]);
}

#[test]
fn other_architectures_are_ignored_and_all_is_included() {
    let i = index(
        "main",
        &[
            p("a", "1", "Depends: data, lib"),
            p("data", "1", "Architecture: all"),
            p("lib", "5", "Architecture: i386"),
            p("lib", "4", ""),
        ],
    );
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1", "data=1", "lib=4"]);
}

#[test]
fn any_qualifier_needs_multi_arch_allowed() {
    let ok =
        index("main", &[p("a", "1", "Depends: python3:any (>= 3.11)"), p("python3", "3.13", "Multi-Arch: allowed")]);
    assert_eq!(ids(&run(&[ok], &["a"])), ["a=1", "python3=3.13"]);
    let bad = index("main", &[p("a", "1", "Depends: python3:any"), p("python3", "3.13", "")]);
    let err = fail(&[bad], &["a"]);
    assert!(err.to_string().contains("Multi-Arch: allowed"), "{err}");
    // Providers must be Multi-Arch: allowed too.
    let prov = index(
        "main",
        &[p("a", "1", "Depends: perl-api:any"), p("perl-base", "5", "Provides: perl-api\nMulti-Arch: allowed")],
    );
    assert_eq!(ids(&run(&[prov], &["a"])), ["a=1", "perl-base=5"]);
}

#[test]
fn explicit_architecture_qualifiers() {
    let i = index(
        "main",
        &[p("a", "1", "Depends: libx:amd64, liby:native"), p("libx", "1", ""), p("liby", "1", "Architecture: all")],
    );
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1", "libx=1", "liby=1"]);
    let i = index("main", &[p("a", "1", "Depends: libx:i386"), p("libx", "1", "")]);
    let err = fail(&[i], &["a"]);
    assert!(err.to_string().contains("not i386"), "{err}");
}

#[test]
fn architecture_restricted_relations_are_skipped_elsewhere() {
    let i = index("main", &[p("a", "1", "Depends: only-i386 [i386], b [amd64]"), p("b", "1", "")]);
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1", "b=1"]);
}

#[test]
fn unsatisfiable_dependency_names_relation_and_chain() {
    let i = index(
        "main",
        &[p("app", "1", "Depends: mid"), p("mid", "2", "Depends: libz (>= 2) | libw"), p("libz", "1", "")],
    );
    let err = fail(&[i], &["app"]);
    let ResolveError::Unsatisfiable { relation, chain, reasons } = &err else { panic!("{err}") };
    assert_eq!(relation, "Depends: libz (>= 2) | libw");
    assert_eq!(chain, &["requested `app`", "app 1 amd64", "mid 2 amd64"]);
    assert_eq!(reasons.len(), 2);
    assert!(reasons[0].contains("libz has version 1"), "{reasons:?}");
    assert!(reasons[1].contains("no package libw"), "{reasons:?}");
    assert_eq!(
        err.to_string(),
        "cannot satisfy `Depends: libz (>= 2) | libw`, needed by requested `app` → app 1 amd64 → mid 2 amd64: \
         libz (>= 2): libz has version 1; libw: no package libw for amd64 or all, and nothing provides it"
    );
}

#[test]
fn missing_request_is_an_error() {
    let i = index("main", &[p("a", "1", "")]);
    let err = fail(&[i], &["nope"]);
    assert!(err.to_string().starts_with("cannot satisfy `nope`, needed by requested `nope`"), "{err}");
}

#[test]
fn request_versions() {
    let i = index("main", &[p("a", "1.0", ""), p("a", "2.0", "")]);
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["a"])), ["a=2.0"]);
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["a (= 1.0)"])), ["a=1.0"]);
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["a=1.0"])), ["a=1.0"]);
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["a (<< 2)"])), ["a=1.0"]);
    let err = fail(std::slice::from_ref(&i), &["a (>= 3)"]);
    assert!(err.to_string().contains("a has versions 2.0, 1.0"), "{err}");
    // Two requests on one name must agree.
    let err = fail(&[i], &["a (= 1.0)", "a (= 2.0)"]);
    assert!(err.to_string().contains("a 1.0 amd64 is already selected"), "{err}");
}

#[test]
fn request_syntax() {
    assert!("a | b".parse::<Request>().is_err());
    assert!("a, b".parse::<Request>().is_err());
    assert!("a [amd64]".parse::<Request>().is_err());
    assert_eq!("python3.13 (>= 3.13)".parse::<Request>().expect("ok").to_string(), "python3.13 (>= 3.13)");
    assert_eq!("python3.13=3.13.5-2".parse::<Request>().expect("ok").to_string(), "python3.13 (= 3.13.5-2)");
    assert_eq!(Request::new("x").to_string(), "x");
}

#[test]
fn conflicts_among_selected_packages_are_errors() {
    let i = index("main", &[p("a", "1", "Conflicts: b"), p("b", "1", "")]);
    let err = fail(&[i], &["a", "b"]);
    let ResolveError::Conflicts { conflicts } = &err else { panic!("{err}") };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(err.to_string(), "conflicts among the selected packages: a 1 amd64 Conflicts: b (hits b 1 amd64)");
}

#[test]
fn versioned_breaks() {
    let i = index("main", &[p("a", "1", "Breaks: b (<< 2)"), p("b", "1", ""), p("b", "2", "")]);
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["a", "b"])), ["a=1", "b=2"]);
    let err = fail(&[i], &["a", "b (= 1)"]);
    assert!(err.to_string().contains("a 1 amd64 Breaks: b (<< 2) (hits b 1 amd64)"), "{err}");
}

#[test]
fn alternatives_avoid_conflicts_with_selected_packages() {
    let i = index(
        "main",
        &[
            p("app", "1", "Depends: mta"),
            p("mta", "1", "Depends: exim | postfix"),
            p("exim", "1", "Conflicts: sendmail"),
            p("postfix", "1", ""),
            p("sendmail", "1", ""),
        ],
    );
    assert_eq!(ids(&run(&[i], &["app", "sendmail"])), ["app=1", "mta=1", "postfix=1", "sendmail=1"]);
}

#[test]
fn conflicting_with_a_provided_virtual_is_not_a_self_conflict() {
    let i = index(
        "main",
        &[
            p("exim4", "4", "Provides: mail-transport-agent\nConflicts: mail-transport-agent"),
            p("postfix", "3", "Provides: mail-transport-agent\nConflicts: mail-transport-agent"),
            p("app", "1", "Depends: mail-transport-agent"),
        ],
    );
    assert_eq!(ids(&run(std::slice::from_ref(&i), &["app"])), ["app=1", "exim4=4"]);
    let err = fail(&[i], &["exim4", "postfix"]);
    let ResolveError::Conflicts { conflicts } = &err else { panic!("{err}") };
    assert_eq!(conflicts.len(), 2, "each conflicts with the other: {err}");
}

#[test]
fn dependency_cycles_terminate() {
    let i = index("main", &[p("a", "1", "Depends: b"), p("b", "1", "Depends: a, c"), p("c", "1", "Depends: a")]);
    assert_eq!(ids(&run(&[i], &["a"])), ["a=1", "b=1", "c=1"]);
}

#[test]
fn known_hard_constraints_steer_the_version_choice() {
    // a and b are both requested; a is expanded first and would take c 2, but b needs c 1.
    let i = index(
        "main",
        &[p("a", "1", "Depends: c (>= 1)"), p("b", "1", "Depends: c (= 1)"), p("c", "1", ""), p("c", "2", "")],
    );
    assert_eq!(ids(&run(&[i], &["a", "b"])), ["a=1", "b=1", "c=1"]);
}

#[test]
fn alternative_blocked_by_selected_version_falls_through() {
    let i = index("main", &[p("a", "1", "Depends: b (>= 2) | c"), p("b", "1", ""), p("b", "2", ""), p("c", "1", "")]);
    assert_eq!(ids(&run(&[i], &["b (= 1)", "a"])), ["a=1", "b=1", "c=1"]);
}

#[test]
fn result_is_deterministic() {
    let i = index(
        "main",
        &[
            p("a", "1", "Depends: v, w | x"),
            p("p1", "1", "Provides: v"),
            p("p2", "1", "Provides: v"),
            p("w", "1", "Depends: x"),
            p("x", "1", ""),
        ],
    );
    let first = run(std::slice::from_ref(&i), &["a"]);
    for _ in 0..5 {
        assert_eq!(run(std::slice::from_ref(&i), &["a"]), first);
    }
    assert_eq!(ids(&first), ["a=1", "p1=1", "w=1", "x=1"]);
}

#[test]
fn empty_request_list_is_empty_closure() {
    let i = index("main", &[p("a", "1", "")]);
    assert!(run(&[i], &[]).packages.is_empty());
}
