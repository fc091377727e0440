//! What dockerd is asked to make of a sandbox: a container run by the
//! openshell runtime, with the policy's limits in Docker's own terms, and what
//! the runtime cannot set (its policy, its network) prepared beside it.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};
use openshell_policy::KernelProfile;
use openshell_policy::model::Identity;

/// Labels every sandbox container carries.
pub(crate) const LABEL_SANDBOX: &str = "run.openshell.sandbox";
pub(crate) const LABEL_ID: &str = "run.openshell.id";
/// The driver directory that owns it (gateways with other directories leave it be).
pub(crate) const LABEL_DIR: &str = "run.openshell.dir";

/// The container's name for sandbox `name`.
pub(crate) fn container_name(name: &str) -> String {
    format!("openshell-{name}")
}

/// What the container is made with, but its command, environment and stdin
/// (the job's, set at its first start).
pub(crate) struct Template<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub dir: &'a str,
    pub runtime: &'a str,
    pub image: &'a str,
    pub profile: &'a KernelProfile,
    /// The trust bundle (host path) when the sandbox has a proxy.
    pub bundle: Option<&'a str>,
}

fn identity(id: Identity) -> String {
    match id {
        Identity::Sandbox => "sandbox".to_owned(),
        Identity::Id(n) => n.to_string(),
    }
}

/// `RLIMIT_NOFILE` → `nofile`, as Docker names limits.
fn ulimit_name(kind: &str) -> String {
    kind.trim_start_matches("RLIMIT_").to_ascii_lowercase()
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Template<'_> {
    pub fn body(&self) -> ContainerCreateBody {
        let p = self.profile;
        let labels = HashMap::from([
            (LABEL_SANDBOX.to_owned(), self.name.to_owned()),
            (LABEL_ID.to_owned(), self.id.to_owned()),
            (LABEL_DIR.to_owned(), self.dir.to_owned()),
        ]);
        let ulimits = p
            .rlimits
            .iter()
            .map(|r| ResourcesUlimits {
                name: Some(ulimit_name(r.kind)),
                soft: Some(clamp(r.soft)),
                hard: Some(clamp(r.hard)),
            })
            .collect();
        let nano_cpus =
            p.cgroup.cpu_max.map(|(quota, period)| clamp(quota.saturating_mul(1_000_000_000) / period.max(1)));
        let host_config = HostConfig {
            runtime: Some(self.runtime.to_owned()),
            // Loopback only, unless the runtime joins the sandbox's fenced
            // namespace (prepared for it by the network helper).
            network_mode: Some("none".to_owned()),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            // No `--init`: Landlock lets the workload execute only what the
            // policy lists, and Docker's init is bound in from the host.
            pids_limit: Some(clamp(p.cgroup.pids_max)),
            memory: Some(clamp(p.cgroup.memory_max)),
            memory_swap: Some(clamp(p.cgroup.memory_max.saturating_add(p.cgroup.memory_swap_max))),
            nano_cpus,
            ulimits: Some(ulimits),
            binds: self.bundle.map(|b| vec![format!("{b}:{}:ro", openshell_driver::CA_BUNDLE)]),
            // As the local driver: a read-write /tmp is a tmpfs of its own.
            tmpfs: p
                .mounts
                .read_write
                .iter()
                .any(|m| m == "/tmp")
                .then(|| HashMap::from([("/tmp".to_owned(), "mode=1777".to_owned())])),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(self.image.to_owned()),
            user: Some(format!("{}:{}", identity(p.user.user), identity(p.user.group))),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

/// The template with the job: its command, environment (marked as this
/// sandbox's, so the runtime refuses it without its prepared directory) and,
/// when a client is attached, stdin.
pub(crate) fn with_job(
    mut body: ContainerCreateBody,
    id: &str,
    job: &openshell_driver::Job,
    stdin: bool,
) -> ContainerCreateBody {
    let mut env = job.env.clone();
    env.push(format!("{}={id}", crate::SANDBOX_ENV));
    // Without a command the runtime idles the sandbox (its job.json says so);
    // dockerd still wants one to record.
    body.cmd = Some(if job.args.is_empty() { vec!["openshell-idle".to_owned()] } else { job.args.clone() });
    body.env = Some(env);
    body.attach_stdin = Some(stdin);
    body.attach_stdout = Some(true);
    body.attach_stderr = Some(true);
    body.open_stdin = Some(stdin);
    body.stdin_once = Some(stdin);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_limits_become_dockers() {
        let policy =
            openshell_policy::load_str("p.yaml", "version: 1\nresources:\n  memory: 256MiB\n  pids: 64\n  cpu: 0.5\n")
                .expect("policy");
        let profile = KernelProfile::compile(&policy, "/sandbox");
        let t = Template {
            id: "abc",
            name: "web",
            dir: "/d",
            runtime: "openshell",
            image: "sha256:00",
            profile: &profile,
            bundle: Some("/d/sandboxes/abc/ca-bundle.pem"),
        };
        let body = t.body();
        let host = body.host_config.expect("host config");
        assert_eq!(host.memory, Some(256 << 20));
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.runtime.as_deref(), Some("openshell"));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.binds, Some(vec!["/d/sandboxes/abc/ca-bundle.pem:/etc/openshell/ca-bundle.pem:ro".to_owned()]));
        assert_eq!(body.user.as_deref(), Some("sandbox:sandbox"));
        assert_eq!(body.labels.expect("labels")[LABEL_SANDBOX], "web");
        assert_eq!(ulimit_name("RLIMIT_NOFILE"), "nofile");
    }
}
