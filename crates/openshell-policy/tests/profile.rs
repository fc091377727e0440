//! The kernel profile compiled from a policy, and the diff's live/recreate verdicts.

use openshell_policy::diff::Applicability;
use openshell_policy::model::{Compatibility, Identity};
use openshell_policy::profile::PathAccess;
use openshell_policy::{KernelProfile, PolicyDiff, load_str};

fn policy(yaml: &str) -> openshell_policy::Policy {
    load_str("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn default_policy() -> openshell_policy::Policy {
    let text = include_str!("../../../policies/default.yaml");
    policy(text)
}

#[test]
fn seccomp_is_valid_oci_linux_seccomp() {
    let p = KernelProfile::compile(&default_policy(), "/sandbox");
    let json = serde_json::to_string(&p.seccomp).expect("serialize");
    let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(&json).expect("OCI LinuxSeccomp");
    assert_eq!(parsed.default_action(), oci_spec::runtime::LinuxSeccompAction::ScmpActErrno);
    assert_eq!(parsed.default_errno_ret(), Some(1));
    let syscalls = parsed.syscalls().clone().unwrap_or_default();
    assert!(syscalls.iter().any(|s| s.names().iter().any(|n| n == "clone3")));
    // socket is only allowed with argument conditions
    for s in &syscalls {
        if s.names().iter().any(|n| n == "socket") {
            assert!(s.args().as_ref().is_some_and(|a| !a.is_empty()), "unconditional socket rule");
        }
    }
}

#[test]
fn default_policy_profile() {
    let p = KernelProfile::compile(&default_policy(), "/sandbox");
    assert!(p.mounts.rootfs_read_only);
    assert!(p.mounts.read_write.contains(&"/sandbox".to_owned()));
    assert!(p.mounts.read_write.contains(&"/tmp".to_owned()));
    assert!(p.mounts.read_only.contains(&"/usr".to_owned()));
    assert!(p.mounts.masked.contains(&"/proc/kcore"));
    assert!(p.mounts.kernel_read_only.contains(&"/proc/sys"));
    assert_eq!(p.landlock.compatibility, Compatibility::HardRequirement);
    assert_eq!(p.user.user, Identity::Sandbox);
    assert!(p.capabilities.bounding.is_empty() && p.capabilities.permitted.is_empty());
    assert!(p.no_new_privileges);
    assert_eq!(p.cgroup.pids_max, 4096);
    assert_eq!(p.cgroup.memory_max, 4 << 30);
    assert_eq!(p.cgroup.cpu_max, None);
    assert!(p.rlimits.iter().any(|r| r.kind == "RLIMIT_CORE" && r.hard == 0));
    let tmp = p.landlock.rules.iter().find(|r| r.path == "/tmp").expect("/tmp rule");
    assert_eq!(tmp.access, PathAccess::ReadWrite);
    assert!(tmp.directory_rights.contains(&"make_reg"));
    let usr = p.landlock.rules.iter().find(|r| r.path == "/usr").expect("/usr rule");
    assert!(!usr.directory_rights.contains(&"write_file"));
    assert!(p.landlock.rules.iter().all(|r| !r.directory_rights.contains(&"make_char")));
}

#[test]
fn workdir_and_resources() {
    let p = policy(
        "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/work, /usr]\nprocess:\n  run_as_user: 1500\n  run_as_group: \"1600\"\nresources:\n  memory: 512MiB\n  pids: 64\n  cpu: 1.5\n  open_files: 1024\n",
    );
    let k = KernelProfile::compile(&p, "/work");
    // the workdir is read-write, and no longer read-only
    assert!(k.mounts.read_write.contains(&"/work".to_owned()));
    assert!(!k.mounts.read_only.contains(&"/work".to_owned()));
    assert_eq!(k.cgroup.memory_max, 512 << 20);
    assert_eq!(k.cgroup.pids_max, 64);
    assert_eq!(k.cgroup.cpu_max, Some((150_000, 100_000)));
    assert!(k.rlimits.iter().any(|r| r.kind == "RLIMIT_NOFILE" && r.soft == 1024 && r.hard == 1024));
    assert_eq!(k.user.user, Identity::Id(1500));
    assert_eq!(k.user.group, Identity::Id(1600));

    let no_workdir = policy("version: 1\nfilesystem_policy:\n  include_workdir: false\n  read_write: [/tmp]\n");
    let k = KernelProfile::compile(&no_workdir, "/sandbox");
    assert_eq!(k.mounts.read_write, vec!["/tmp".to_owned()]);
}

#[test]
fn diff_verdicts() {
    let base = "version: 1\nfilesystem_policy:\n  read_write: [/tmp]\nnetwork_policies:\n  a:\n    endpoints: [{host: a.example.com, port: 443}]\n    binaries: [{path: /usr/bin/curl}]\n";
    let cases: &[(&str, Applicability, &[&str])] = &[
        (base, Applicability::Unchanged, &[]),
        // formatting and comments do not matter
        (
            "# c\nversion: 1\nfilesystem_policy: {read_write: [/tmp/]}\nnetwork_policies:\n  a:\n    endpoints: [{host: a.example.com, ports: [443]}]\n    binaries: [{path: /usr/bin/curl}]\n",
            Applicability::Unchanged,
            &[],
        ),
        (&base.replace("443", "8443"), Applicability::Live, &["network_policies.a.endpoints[0].ports"]),
        (
            &base.replace("/usr/bin/curl", "/usr/bin/wget"),
            Applicability::Live,
            &["network_policies.a.binaries[0].path"],
        ),
        (&base.replace("[/tmp]", "[/tmp, /data]"), Applicability::Recreate, &["filesystem_policy.read_write"]),
        (
            &format!("{base}landlock:\n  compatibility: hard_requirement\n"),
            Applicability::Recreate,
            &["landlock.compatibility"],
        ),
        (&format!("{base}process:\n  run_as_user: 1000\n"), Applicability::Recreate, &["process.run_as_user"]),
        (&format!("{base}resources:\n  pids: 100\n"), Applicability::Recreate, &["resources.pids"]),
        (
            &base.replace("read_write: [/tmp]", "include_workdir: false\n  read_write: [/tmp]"),
            Applicability::Recreate,
            &["filesystem_policy.include_workdir"],
        ),
        (
            &format!(
                "{base}  b:\n    endpoints: [{{host: b.example.com, port: 443}}]\n    binaries: [{{path: /usr/bin/curl}}]\n"
            ),
            Applicability::Live,
            &["network_policies.b"],
        ),
    ];
    let old = policy(base);
    for (new, want, fields) in cases {
        let d = PolicyDiff::between(&old, &policy(new));
        assert_eq!(d.applicability, *want, "{new}");
        let changed: Vec<&str> = d.static_changes.iter().chain(&d.network_changes).map(|c| c.field.as_str()).collect();
        assert_eq!(changed, *fields, "{new}");
        assert_eq!(d.ensure_live().is_ok(), *want != Applicability::Recreate);
    }
    let err = PolicyDiff::between(&old, &policy(&base.replace("[/tmp]", "[/var]"))).ensure_live().expect_err("static");
    assert!(err.to_string().starts_with("filesystem policy cannot be changed on a live sandbox (fixed at creation)"));
}
