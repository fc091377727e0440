//! The runtime spec derived from the default policy: namespaces, no capabilities,
//! masked paths, limits, seccomp, user, read-only root.

use openshell_policy::model::Identity;
use openshell_policy::{KernelProfile, load_str};
use openshell_sandbox::*;

fn profile() -> KernelProfile {
    let policy =
        load_str("default.yaml", include_str!("../../../policies/default.yaml")).unwrap_or_else(|e| panic!("{e}"));
    KernelProfile::compile(&policy, "/sandbox")
}

fn input(profile: &KernelProfile) -> SpecInput<'_> {
    SpecInput {
        profile,
        process: ProcessConfig {
            args: vec!["/bin/bash".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/sandbox".into(),
            terminal: false,
        },
        uid: 1000,
        gid: 1000,
        rootfs: "/var/lib/openshell/sandboxes/x/rootfs".into(),
        hostname: "sandbox-x".into(),
        writable: vec![
            Writable::Bind { path: "/sandbox".into(), source: "/var/lib/openshell/sandboxes/x/sandbox".into() },
            Writable::Tmpfs { path: "/tmp".into() },
            Writable::Tmpfs { path: "/dev/null".into() },
        ],
        cgroups_path: "/openshell/x".into(),
        ids: None,
    }
}

#[test]
fn default_policy_spec() {
    let p = profile();
    let spec = runtime_spec(&input(&p)).expect("spec");
    let v = serde_json::to_value(&spec).expect("json");
    let process = &v["process"];
    assert_eq!(process["user"]["uid"], 1000);
    assert_eq!(process["noNewPrivileges"], true);
    for set in ["bounding", "effective", "inheritable", "permitted", "ambient"] {
        assert_eq!(process["capabilities"][set], serde_json::json!([]), "{set}");
    }
    assert!(
        process["rlimits"].as_array().expect("rlimits").iter().any(|r| r["type"] == "RLIMIT_CORE" && r["hard"] == 0)
    );
    assert_eq!(v["root"]["readonly"], true);
    let ns: Vec<&str> =
        v["linux"]["namespaces"].as_array().expect("ns").iter().filter_map(|n| n["type"].as_str()).collect();
    for want in ["pid", "network", "ipc", "uts", "mount", "cgroup"] {
        assert!(ns.contains(&want), "namespace {want} in {ns:?}");
    }
    assert!(!ns.contains(&"user"));
    let masked = v["linux"]["maskedPaths"].as_array().expect("masked");
    assert!(masked.iter().any(|m| m == "/proc/kcore"));
    assert!(v["linux"]["readonlyPaths"].as_array().expect("ro").iter().any(|m| m == "/proc/sys"));
    assert_eq!(v["linux"]["resources"]["pids"]["limit"], 4096);
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 4u64 << 30);
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    let mounts = v["mounts"].as_array().expect("mounts");
    let dest = |d: &str| mounts.iter().find(|m| m["destination"] == d).cloned();
    assert_eq!(dest("/sandbox").expect("/sandbox")["type"], "bind");
    assert_eq!(dest("/tmp").expect("/tmp")["type"], "tmpfs");
    assert!(dest("/dev/null").is_none(), "devices come from the runtime's /dev, not mounts");
    assert!(dest("/sys").expect("/sys")["options"].as_array().expect("opts").iter().any(|o| o == "ro"));
}

#[test]
fn refusals() {
    let p = profile();
    let mut i = input(&p);
    i.uid = 0;
    assert!(matches!(runtime_spec(&i), Err(SpecError::Root)));
    let mut i = input(&p);
    i.process.args.clear();
    assert!(runtime_spec(&i).expect_err("no command").to_string().contains("no command"));
    let mut i = input(&p);
    i.writable.push(Writable::Tmpfs { path: "relative".into() });
    assert!(matches!(runtime_spec(&i), Err(SpecError::Relative(_))));
}

#[test]
fn identities_come_from_the_image() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\nsandbox:x:1000:1001::/sandbox:/bin/bash\n";
    let group = "root:x:0:\nsandbox:x:1001:\n";
    assert_eq!(resolve_user(Identity::Sandbox, passwd), Ok(1000));
    assert_eq!(resolve_group(Identity::Sandbox, group), Ok(1001));
    assert_eq!(resolve_user(Identity::Id(4242), ""), Ok(4242));
    let e = resolve_user(Identity::Sandbox, "root:x:0:0::/:/bin/sh\n").expect_err("missing");
    assert!(e.to_string().contains("no `sandbox` user in its /etc/passwd"), "{e}");
    let e = resolve_user(Identity::Sandbox, "sandbox:x:0:0::/:/bin/sh\n").expect_err("root");
    assert!(matches!(e, IdentityError::Root { .. }));
    let e = resolve_group(Identity::Sandbox, "sandbox:x\n").expect_err("malformed");
    assert!(e.to_string().contains("line 1"), "{e}");
}

/// Issue 12 point 3: with a range, the spec has a user namespace (first, so every
/// other namespace belongs to it) mapping container ids 0.. to the range.
#[test]
fn a_user_namespace_maps_the_sandbox_to_its_range() {
    let p = profile();
    let mut input = input(&p);
    input.ids = Some(openshell_sandbox::idmap::IdMap::parse("1879048192").expect("range"));
    let v = serde_json::to_value(runtime_spec(&input).expect("spec")).expect("json");
    assert_eq!(v["linux"]["namespaces"][0]["type"], "user");
    for key in ["uidMappings", "gidMappings"] {
        assert_eq!(v["linux"][key], serde_json::json!([{"containerID": 0, "hostID": 1879048192u32, "size": 65536}]));
    }
    assert_eq!(v["process"]["user"]["uid"], 1000, "the process's ids are inside the namespace");
    let plain = serde_json::to_value(runtime_spec(&self::input(&p)).expect("spec")).expect("json");
    assert!(plain["linux"].get("uidMappings").is_none(), "no range, no user namespace");
}
