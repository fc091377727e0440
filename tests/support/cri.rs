//! A CRI client speaking to containerd's CRI plugin exactly as the kubelet does
//! (`runtime.v1` over the Unix socket, the `k8s-cri` crate's generated client),
//! wrapped in blocking calls for tests and benches; and a node to drive: a
//! containerd with its CRI plugin, runc and openshell-runtime as handlers, and the
//! probe images imported. Each call panics with the request and
//! containerd's answer on error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use cri::ContainerState;

use super::containerd::{Containerd, CriSetup};
use super::runtime_image::{ProbeImage, build_isolation_image, build_probe_image, runtime_binary, text};

pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// A pod: the sandbox's id and the config its containers are created with.
#[derive(Debug)]
pub struct Pod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
}

/// What a container runs.
pub struct Spec<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub command: &'a [&'a str],
    pub annotations: &'a [(&'a str, &'a str)],
    /// Relative to the pod's log directory.
    pub log: &'a str,
    /// Read-only volumes: (path in the container, host directory).
    pub mounts: &'a [(&'a str, &'a Path)],
}

/// The kubelet's default: the pod's network and IPC namespaces, a pid namespace per container.
fn kubelet_namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn map(v: &[(&str, &str)]) -> HashMap<String, String> {
    v.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Cri {
    pub fn connect(socket: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let socket = socket.to_owned();
        let channel = rt
            .block_on(Endpoint::from_static("http://[::]").connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
            })))
            .expect("connect to containerd's CRI socket");
        Cri { rt, runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) }
    }

    /// The CRI's version answer (runtime name and version).
    pub fn version(&mut self) -> cri::VersionResponse {
        let r = self.rt.block_on(self.runtime.version(cri::VersionRequest { version: "v1".into() }));
        r.expect("CRI Version").into_inner()
    }

    /// ImageStatus: the image's id (config digest) and repo digests, if present.
    pub fn image(&mut self, reference: &str) -> Option<cri::Image> {
        let spec = cri::ImageSpec { image: reference.into(), ..Default::default() };
        let r =
            self.rt.block_on(self.images.image_status(cri::ImageStatusRequest { image: Some(spec), verbose: false }));
        r.expect("CRI ImageStatus").into_inner().image
    }

    /// RunPodSandbox as the kubelet sends it: the pod's network namespace shared by
    /// its containers, a pid namespace per container, a cgroup parent of the test's.
    pub fn run_pod(
        &mut self,
        name: &str,
        handler: &str,
        annotations: &[(&str, &str)],
        logs: &Path,
        cgroup_parent: &str,
    ) -> Result<Pod, tonic::Status> {
        let uid = format!("{name}-uid");
        let namespaces = kubelet_namespaces();
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: logs.display().to_string(),
            annotations: map(annotations),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("{cgroup_parent}/pod{uid}"),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.into() };
        let id = self.rt.block_on(self.runtime.run_pod_sandbox(request))?.into_inner().pod_sandbox_id;
        Ok(Pod { id, config })
    }

    /// CreateContainer in `pod`; the error is containerd's (the kubelet's event).
    pub fn create(&mut self, pod: &Pod, spec: &Spec) -> Result<String, tonic::Status> {
        let namespaces = kubelet_namespaces();
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: spec.name.into(), attempt: 0 }),
            image: Some(cri::ImageSpec { image: spec.image.into(), ..Default::default() }),
            command: strings(spec.command),
            annotations: map(spec.annotations),
            log_path: spec.log.into(),
            mounts: spec
                .mounts
                .iter()
                .map(|(inside, host)| cri::Mount {
                    container_path: (*inside).into(),
                    host_path: host.display().to_string(),
                    readonly: true,
                    ..Default::default()
                })
                .collect(),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        Ok(self.rt.block_on(self.runtime.create_container(request))?.into_inner().container_id)
    }

    pub fn start(&mut self, id: &str) -> Result<(), tonic::Status> {
        let request = cri::StartContainerRequest { container_id: id.into() };
        self.rt.block_on(self.runtime.start_container(request)).map(|_| ())
    }

    /// CreateContainer + StartContainer, panicking on either's error.
    pub fn run(&mut self, pod: &Pod, spec: &Spec) -> String {
        let id = self.create(pod, spec).unwrap_or_else(|e| panic!("CreateContainer {}: {e}", spec.name));
        self.start(&id).unwrap_or_else(|e| panic!("StartContainer {}: {e}", spec.name));
        id
    }

    /// ExecSync: (exit code, stdout, stderr).
    pub fn exec_sync(&mut self, id: &str, cmd: &[&str]) -> (i32, String, String) {
        let request = cri::ExecSyncRequest { container_id: id.into(), cmd: strings(cmd), timeout: 20 };
        let r = self.rt.block_on(self.runtime.exec_sync(request));
        let r = r.unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}")).into_inner();
        (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned(), String::from_utf8_lossy(&r.stderr).into_owned())
    }

    pub fn status(&mut self, id: &str) -> cri::ContainerStatus {
        let request = cri::ContainerStatusRequest { container_id: id.into(), verbose: false };
        let r = self.rt.block_on(self.runtime.container_status(request));
        r.unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}")).into_inner().status.expect("a status")
    }

    /// Waits (20 s at most) until the container has exited; returns its status.
    pub fn wait_exited(&mut self, id: &str) -> cri::ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status(id);
            if status.state == ContainerState::ContainerExited as i32 {
                return status;
            }
            assert!(Instant::now() < deadline, "container {id} did not exit: {status:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pod's IP address on the CNI network.
    pub fn pod_ip(&mut self, pod: &Pod) -> String {
        let request = cri::PodSandboxStatusRequest { pod_sandbox_id: pod.id.clone(), verbose: false };
        let r = self.rt.block_on(self.runtime.pod_sandbox_status(request));
        let status = r.unwrap_or_else(|e| panic!("PodSandboxStatus: {e}")).into_inner().status.expect("a status");
        status.network.map(|n| n.ip).filter(|ip| !ip.is_empty()).expect("the pod has an IP")
    }

    pub fn stop_pod(&mut self, pod: &Pod) {
        let request = cri::StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() };
        self.rt.block_on(self.runtime.stop_pod_sandbox(request)).unwrap_or_else(|e| panic!("StopPodSandbox: {e}"));
    }

    pub fn remove_pod(&mut self, pod: &Pod) {
        let request = cri::RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() };
        self.rt.block_on(self.runtime.remove_pod_sandbox(request)).unwrap_or_else(|e| panic!("RemovePodSandbox: {e}"));
    }

    /// Stops and removes every pod containerd lists, ignoring errors (for cleanup).
    pub fn remove_every_pod(&mut self) {
        let listed = self.rt.block_on(self.runtime.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }));
        let Ok(listed) = listed else { return };
        for pod in listed.into_inner().items {
            let id = pod.id;
            let _ = self
                .rt
                .block_on(self.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }));
            let _ =
                self.rt.block_on(self.runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }));
        }
    }

    /// The ids of the pods and of the containers containerd still lists.
    pub fn listed(&mut self) -> (Vec<String>, Vec<String>) {
        let pods = self.rt.block_on(self.runtime.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }));
        let pods = pods.expect("ListPodSandbox").into_inner().items.into_iter().map(|p| p.id).collect();
        let containers = self.rt.block_on(self.runtime.list_containers(cri::ListContainersRequest { filter: None }));
        let containers =
            containers.expect("ListContainers").into_inner().containers.into_iter().map(|c| c.id).collect();
        (pods, containers)
    }
}

/// The CRI plugin's namespace in containerd.
pub const K8S: &str = "k8s.io";
pub const IMAGE: &str = "docker.io/openshell/cri-probe:1";
/// The isolation suite's probe beside the runtime probe (`build_isolation_image`).
pub const ISOLATION_IMAGE: &str = "docker.io/openshell/cri-isolation:1";
pub const PAUSE: &str = "docker.io/openshell/cri-pause:1";
/// Where the test's pods' cgroups go (cgroupfs driver: PID 1 here is not systemd).
pub const CGROUP_PARENT: &str = "/openshell-cri-test";

pub fn require_root() {
    let euid = std::process::Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(String::from_utf8_lossy(&euid.stdout).trim(), "0", "this test starts containerd: run it as root");
    super::registry::require_file("/usr/sbin/runc", "runc");
}

/// The `openshell` runtime entry, as a node's containerd config carries it.
fn openshell_runtime_entry(binary: &Path) -> String {
    use openshell_kubernetes::containerd::{BinaryPath, ConfigVersion, runtime_entry};
    runtime_entry(&BinaryPath::new(binary).expect("a plain absolute path"), ConfigVersion::V2)
}

/// A containerd with the CRI plugin, the probe and pause images imported into its
/// `k8s.io` namespace.
pub struct Node {
    // Dropped first: containerd stops before its directory goes.
    pub containerd: Containerd,
    pub cri: Cri,
    pub dir: tempfile::TempDir,
    pub image: ProbeImage,
}

impl Node {
    pub fn start() -> Node {
        Node::start_with(&[])
    }

    /// With `env` in containerd's environment (so in its runtimes' and the pod
    /// proxies').
    pub fn start_with(env: &[(&str, &str)]) -> Node {
        require_root();
        let runtime = runtime_binary();
        // Short: containerd's sockets live under it.
        let dir = tempfile::Builder::new().prefix("oscri").tempdir_in("/tmp").expect("tempdir");
        let image = build_probe_image(dir.path(), "cri-probe", "[/probe, hello]");
        let pause = build_probe_image(dir.path(), "cri-pause", "[/probe, serve]");
        let isolation = build_isolation_image(dir.path(), "cri-isolation");
        let setup = CriSetup {
            sandbox_image: PAUSE,
            runtimes: &openshell_runtime_entry(&runtime),
            bridge: "oscri0",
            subnet: "10.203.7.0/24",
            env,
        };
        let containerd = Containerd::start_cri(&dir.path().join("containerd"), &setup);
        for archive in [&image.archive, &pause.archive, &isolation.archive] {
            let o = containerd.ctr(K8S, &["images", "import", &archive.display().to_string()]);
            assert!(o.status.success(), "ctr images import: {}", text(&o));
        }
        let cri = Cri::connect(&containerd.address);
        Node { containerd, cri, dir, image }
    }

    pub fn logs(&self, handler: &str) -> PathBuf {
        let logs = self.dir.path().join("logs").join(handler);
        std::fs::create_dir_all(&logs).expect("mkdir logs");
        logs
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A test that failed half-way leaves pods: their shims and processes would
        // outlive containerd.
        self.cri.remove_every_pod();
        // The pods' cgroup parents are the kubelet's to make and remove.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let parent = hierarchy.path().join(CGROUP_PARENT.trim_start_matches('/'));
            for pod in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(pod.path());
            }
            let _ = std::fs::remove_dir(parent);
        }
    }
}
