//! The Docker driver (`gateway run --driver docker`): each sandbox is a
//! container on the local dockerd, named `openshell-NAME` and labelled with the
//! sandbox's name and id, run by the runtime `openshell docker install`
//! registered (`openshell-runtime`), everything through the Docker API
//! (bollard): image load, create, attach, start, exec, logs, kill, wait, remove.
//!
//! What dockerd cannot carry (before 24 it sets no annotations) the driver
//! prepares in the runtime's `--sandbox-dir` (this driver's directory):
//! `sandboxes/ID/` holds the sandbox's policy, CA and logs, and
//! `containers/CONTAINER` links to it, so the runtime finds the container's
//! policy (Landlock and seccomp, as with the local driver) and the network
//! namespace to join. A sandbox with network policies gets, for each run, a
//! network helper process (`network`): the local driver's fence and egress
//! proxy, on the host side of a namespace it made before the container starts.
//!
//! The policy's other sections become Docker's own settings (`container`):
//! user, no capabilities, no_new_privs, memory, pids, CPU and rlimits; no
//! network but the fenced link (or loopback). Process 1 is openshell's init
//! (the runtime's, as with the local driver): it passes signals on, reaps, and
//! idles a sandbox without a command. Not carried: the disk limit
//! (Docker's overlay2 takes a size only on xfs with project quotas) and the
//! user namespace (dockerd's own `userns-remap` decides that). There are no
//! standby sandboxes.
//!
//! Modules: `api` (bollard on the driver's runtime), `image`, `container`,
//! `record`, `network` (the helper), `relay` (stdio, terminals, ends), `logs`.

mod api;
mod container;
mod image;
mod logs;
pub mod network;
mod record;
mod relay;

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures_util::StreamExt;
use nix::sys::signal::Signal;
use openshell_driver::{
    Applied, Created, Driver, DriverError, Exec, ExecSpec, Exit, Found, Job, LogKind, LogStream, Pending, RouteUpdate,
    Run, SandboxSpec, Stdio,
};
use openshell_driver_local::helper::Supervisor;
use openshell_gateway_api::wire;
use openshell_policy::KernelProfile;
use openshell_sandbox::sandbox::{SandboxDir, write_json};
use openshell_store::Store;

pub use openshell_runtime::prepared::SANDBOX_ENV;

use crate::api::{Api, not_found};
use crate::network::NetworkMessage;
use crate::record::Record;

/// What the driver needs to find dockerd and the runtime.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// dockerd's API socket.
    pub socket: String,
    /// The runtime's name in dockerd (`docker install --name`).
    pub runtime: String,
}

/// Runs sandboxes as containers on the local dockerd.
pub struct DockerDriver {
    api: Arc<Api>,
    /// The runtime's `--sandbox-dir`: `sandboxes/` and `containers/`.
    root: PathBuf,
    /// The `openshell` executable, for network helpers.
    exe: PathBuf,
    store: Store,
    runtime: String,
}

impl DockerDriver {
    /// Connects to dockerd and finds the runtime's directory (from the
    /// arguments dockerd runs it with); `exe` is the `openshell` executable.
    pub fn new(options: &DockerOptions, exe: PathBuf, store: Store) -> Result<DockerDriver, DriverError> {
        let api = Api::connect(&options.socket)?;
        let info = api.call("info", api.docker.info())?;
        let runtimes = info.runtimes.unwrap_or_default();
        let name = &options.runtime;
        let runtime = runtimes.get(name).ok_or_else(|| {
            DriverError::failed(format!(
                "dockerd at {} has no runtime `{name}`: register it with `openshell docker install`",
                options.socket
            ))
        })?;
        let args = runtime.runtime_args.clone().unwrap_or_default();
        let root = openshell_docker::sandbox_dir_of(&args).ok_or_else(|| {
            DriverError::failed(format!(
                "dockerd's runtime `{name}` has no {} argument: register it again with `openshell docker install`",
                openshell_docker::SANDBOX_DIR_FLAG
            ))
        })?;
        let driver = DockerDriver { api: Arc::new(api), root, exe, store, runtime: name.clone() };
        for sub in [driver.root.join("sandboxes"), driver.root.join("containers")] {
            std::fs::create_dir_all(&sub).map_err(DriverError::io(&sub))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&driver.root, std::fs::Permissions::from_mode(0o700))
            .map_err(DriverError::io(&driver.root))?;
        Ok(driver)
    }

    /// The directory the driver keeps its sandboxes in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sandbox(&self, id: &str) -> SandboxDir {
        SandboxDir(self.root.join("sandboxes").join(id))
    }

    /// Where the runtime looks for container `container`'s sandbox.
    fn link(&self, container: &str) -> PathBuf {
        self.root.join("containers").join(container)
    }

    fn record(&self, id: &str) -> Result<Record, DriverError> {
        Record::read(&self.sandbox(id).0)
    }

    /// The sandbox's container, once made.
    fn container(&self, id: &str) -> Result<String, DriverError> {
        self.record(id)?.container.ok_or_else(|| DriverError::NotRunning(id.to_owned()))
    }

    /// The host pid of the running container's process 1.
    fn init_pid(&self, id: &str) -> Result<i32, DriverError> {
        let container = self.container(id)?;
        let inspected = self.api.call(
            "inspect",
            self.api.docker.inspect_container(&container, None::<bollard::query_parameters::InspectContainerOptions>),
        )?;
        let state = inspected.state.unwrap_or_default();
        match (state.running, state.pid) {
            (Some(true), Some(pid)) if pid > 0 => Ok(i32::try_from(pid).unwrap_or(0)),
            _ => Err(DriverError::NotRunning(id.to_owned())),
        }
    }

    /// A file of the image (`path` absolute), read through a container made
    /// for that and removed (`None`: the image has no such regular file).
    fn image_file(&self, image: &str, path: &str) -> Result<Option<String>, DriverError> {
        // Never started: dockerd only wants a command to record.
        let body = bollard::models::ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(vec!["openshell-read".to_owned()]),
            ..Default::default()
        };
        let made = self.api.call(
            "create",
            self.api.docker.create_container(None::<bollard::query_parameters::CreateContainerOptions>, body),
        )?;
        let options = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_owned() };
        let archive = self.api.runtime.block_on(async {
            let mut stream = self.api.docker.download_from_container(&made.id, Some(options));
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            Ok::<_, bollard::errors::Error>(bytes)
        });
        self.remove_container(&made.id)?;
        let archive = match archive {
            Ok(a) => a,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(self.api.error("archive", &e)),
        };
        let mut tar = tar::Archive::new(archive.as_slice());
        let entries = tar.entries().map_err(|e| DriverError::image(format!("{path} of {image}: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| DriverError::image(format!("{path} of {image}: {e}")))?;
            if entry.header().entry_type().is_file() {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text)
                    .map_err(|e| DriverError::image(format!("{path} of {image}: {e}")))?;
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// The image's system roots (for its sandboxes' trust bundles), read once
    /// per image and kept under `roots/` (an image id names its content).
    fn image_roots(&self, image: &str) -> Result<Option<String>, DriverError> {
        let dir = self.root.join("roots");
        let hex = image.rsplit(':').next().unwrap_or(image);
        let (found, absent) = (dir.join(format!("{hex}.pem")), dir.join(format!("{hex}.none")));
        if let Ok(text) = std::fs::read_to_string(&found) {
            return Ok(Some(text));
        }
        if absent.exists() {
            return Ok(None);
        }
        let roots = self.image_file(image, openshell_proxy::tls::SYSTEM_BUNDLE)?;
        std::fs::create_dir_all(&dir).map_err(DriverError::io(&dir))?;
        let (path, text) = match &roots {
            Some(text) => (found, text.as_str()),
            None => (absent, ""),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)).map_err(DriverError::io(&path))?;
        Ok(roots)
    }

    fn remove_container(&self, container: &str) -> Result<(), DriverError> {
        let options = bollard::query_parameters::RemoveContainerOptions { force: true, v: true, link: false };
        match self.api.runtime.block_on(self.api.docker.remove_container(container, Some(options))) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.api.error("rm", &e)),
        }
    }

    /// The lowest sandbox network no sandbox of this driver holds, free on
    /// this host: from the middle of the range (the local driver's ids start
    /// anywhere in it; both skip what the host has).
    fn number_network(&self, id: &str) -> Result<openshell_sandbox::fence::Fence, DriverError> {
        let mut used = std::collections::HashSet::new();
        for entry in std::fs::read_dir(self.root.join("sandboxes")).into_iter().flatten().flatten() {
            if let Ok(Record { network: Some(fence), .. }) = Record::read(&entry.path()) {
                used.insert(fence.host_addr);
            }
        }
        openshell_driver_local::free_fence(&used, format!("osd{}", &id[..id.len().min(12)]), 1 << 13)
    }

    /// Makes the sandbox's container with its job (at its first start).
    fn make_container(&self, id: &str, record: &mut Record, stdin: bool) -> Result<String, DriverError> {
        let dir = self.sandbox(id);
        let bytes = std::fs::read(dir.job()).map_err(DriverError::io(dir.job()))?;
        let job: Job =
            serde_json::from_slice(&bytes).map_err(|e| DriverError::failed(format!("{}: {e}", dir.job().display())))?;
        let body = container::with_job(record.template.clone(), id, &job, stdin);
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(container::container_name(&record.name)),
            platform: String::new(),
        };
        let made = self.api.call("create", self.api.docker.create_container(Some(options), body))?;
        // Found by the runtime before dockerd starts it.
        let link = self.link(&made.id);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("../sandboxes").join(id), &link).map_err(DriverError::io(&link))?;
        record.container = Some(made.id.clone());
        record.write(&dir.0)?;
        Ok(made.id)
    }

    /// Starts the network helper of a run and waits until the sandbox's
    /// network is ready.
    fn start_network(&self, id: &str) -> Result<(std::process::Child, OwnedFd), DriverError> {
        let dir = self.sandbox(id);
        let (ours, theirs) = wire::pair().map_err(DriverError::failed)?;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(&self.exe)
            .args(["gateway", "docker-network"])
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| DriverError::failed(format!("starting {} gateway docker-network: {e}", self.exe.display())))?;
        let answer = wire::send(&ours, &NetworkMessage::Prepare { dir: dir.0.clone() }, &[])
            .map_err(DriverError::failed)
            .and_then(|()| wire::recv::<NetworkMessage>(&ours).map_err(DriverError::failed));
        match answer {
            Ok(Some((NetworkMessage::Ready, _))) => Ok((child, ours)),
            other => {
                drop(ours);
                let _ = child.wait();
                let why = match other {
                    Ok(Some((NetworkMessage::Failed { message }, _))) => message,
                    Ok(other) => format!("it ended without making it ({other:?})"),
                    Err(e) => e.to_string(),
                };
                let log = dir.0.join(network::LOG_FILE);
                Err(DriverError::failed(format!("the sandbox's network: {why}; see {}", log.display())))
            }
        }
    }

    /// The pidfd of the process holding the sandbox's proxy, while it runs.
    fn proxy_process(&self, id: &str) -> Option<OwnedFd> {
        let record = Supervisor::read(&self.sandbox(id).0)?;
        let pidfd = openshell_driver_local::helper::pidfd(record.pid).ok()?;
        record.alive().then_some(pidfd)
    }
}

impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn create(&self, id: &str, spec: &SandboxSpec) -> Result<Created, DriverError> {
        let policy = openshell_policy::load_str(&spec.policy_name, &spec.policy).map_err(DriverError::policy)?;
        let loaded = image::ensure(&self.api, &self.store, &spec.image_digest)?;
        let (mut env, _, cwd) = openshell_driver_local::image_config(&loaded.config);
        let workdir = if cwd == "/" { openshell_policy::profile::DEFAULT_WORKDIR.to_owned() } else { cwd };
        let profile = KernelProfile::compile(&policy, &workdir);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let dir = self.sandbox(id);
        std::fs::create_dir_all(&dir.0).map_err(DriverError::io(&dir.0))?;
        std::fs::write(dir.policy(), &spec.policy).map_err(DriverError::io(dir.policy()))?;
        let network = if policy.network_policies.is_empty() {
            None
        } else {
            let _numbering = openshell_driver_local::lock_file(&self.root.join("numbering.lock"))?;
            let fence = self.number_network(id)?;
            // Held by the record from here on.
            Record {
                id: id.to_owned(),
                name: spec.name.clone(),
                template: Default::default(),
                network: Some(fence.clone()),
                container: None,
            }
            .write(&dir.0)?;
            Some(fence)
        };
        let bundle = match &network {
            Some(_) => {
                let roots = self.image_roots(&loaded.id)?;
                Some(openshell_driver_local::make_ca(&dir, id, roots.as_deref())?.display().to_string())
            }
            None => None,
        };
        let root = self.root.display().to_string();
        let template = container::Template {
            id,
            name: &spec.name,
            dir: &root,
            runtime: &self.runtime,
            image: &loaded.id,
            profile: &profile,
            bundle: bundle.as_deref(),
        }
        .body();
        let proxy = network.as_ref().map(|f| f.proxy_url());
        Record { id: id.to_owned(), name: spec.name.clone(), template, network, container: None }.write(&dir.0)?;
        Ok(Created { env, proxy })
    }

    fn set_job(&self, id: &str, job: &Job) -> Result<(), DriverError> {
        write_json(&self.sandbox(id).job(), job).map_err(DriverError::failed)
    }

    fn start(&self, id: &str, stdio: Stdio) -> Result<Run, DriverError> {
        let mut record = self.record(id)?;
        let container = match record.container.clone() {
            Some(c) => c,
            None => self.make_container(id, &mut record, !stdio.is_empty())?,
        };
        let helper = match record.network {
            Some(_) => Some(self.start_network(id)?),
            None => None,
        };
        let input_done = Arc::new(AtomicBool::new(false));
        let output = if stdio.is_empty() {
            None
        } else {
            let (stdin, stdout, stderr) = relay::split(stdio);
            let options = bollard::query_parameters::AttachContainerOptions {
                detach_keys: None,
                logs: false,
                stream: true,
                stdin: stdin.is_some(),
                stdout: true,
                stderr: true,
            };
            let attached = self.api.call("attach", self.api.docker.attach_container(&container, Some(options)))?;
            if let Some(stdin) = stdin {
                relay::pump_input(self.api.runtime.handle().clone(), attached.input, stdin, Arc::clone(&input_done));
            }
            Some(relay::pump_output(self.api.runtime.handle().clone(), attached.output, stdout, stderr))
        };
        let started = self.api.call(
            "start",
            self.api.docker.start_container(&container, None::<bollard::query_parameters::StartContainerOptions>),
        );
        // Process 1 may have ended already (a short command): its end is the
        // watch's to report.
        let pid = started.map(|()| self.init_pid(id).ok());
        let (helper, control) = match helper {
            Some((child, control)) => (Some(child), Some(control)),
            None => (None, None),
        };
        // The helper takes the network down when process 1 ends (or at once,
        // when it never started).
        let init = pid.as_ref().ok().copied().flatten().and_then(|pid| openshell_driver_local::helper::pidfd(pid).ok());
        if let (Some(control), Some(init)) = (&control, &init) {
            let _ = wire::send(control, &NetworkMessage::Watch, &[init.as_fd()]);
        }
        drop(control);
        let watch = relay::RunWatch { api: Arc::clone(&self.api), container, output, input_done, helper };
        match pid {
            Ok(pid) => Ok(Run { pid, watch: Box::new(watch) }),
            Err(e) => {
                let _ = (Box::new(watch) as Box<dyn openshell_driver::Watch>).reap();
                Err(e)
            }
        }
    }

    fn standby(&self, _id: &str) -> Result<Box<dyn Pending>, DriverError> {
        Err(DriverError::Unsupported { driver: "docker", what: "standby sandboxes" })
    }

    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<Exec, DriverError> {
        let container = self.container(id)?;
        let (stdin, stdout, stderr) = relay::split(stdio);
        let config = bollard::exec::CreateExecOptions {
            cmd: Some(spec.args.clone()),
            env: Some(spec.env.clone()),
            tty: Some(spec.tty),
            attach_stdin: Some(spec.tty || stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let made = self.api.call("exec", self.api.docker.create_exec(&container, config))?;
        let options = bollard::exec::StartExecOptions { detach: false, tty: spec.tty, output_capacity: None };
        let started = self.api.call("exec start", self.api.docker.start_exec(&made.id, Some(options)))?;
        let bollard::exec::StartExecResults::Attached { output, input } = started else {
            return Err(DriverError::failed("docker exec started detached"));
        };
        let done = Arc::new(AtomicBool::new(false));
        let rt = self.api.runtime.handle().clone();
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| DriverError::failed(format!("a terminal: {e}")));
        let (console, output) = if spec.tty {
            let terminal = relay::Terminal::open()?;
            relay::pump_input(rt.clone(), input, dup(&terminal.slave)?, Arc::clone(&done));
            relay::follow_size(Arc::clone(&self.api), made.id.clone(), dup(&terminal.slave)?, Arc::clone(&done));
            let output = relay::pump_output(rt, output, Some(std::fs::File::from(terminal.slave)), None);
            (Some(terminal.master), output)
        } else {
            if let Some(stdin) = stdin {
                relay::pump_input(rt.clone(), input, stdin, Arc::clone(&done));
            }
            (None, relay::pump_output(rt, output, stdout, stderr))
        };
        let watch = relay::ExecWatch { api: Arc::clone(&self.api), exec: made.id, output: Some(output), done };
        Ok(Exec { console, watch: Box::new(watch) })
    }

    fn connect(&self, id: &str, port: u16) -> Result<OwnedFd, DriverError> {
        let pid = self.init_pid(id)?;
        let init = openshell_driver_local::helper::pidfd(pid).map_err(|_| DriverError::NotRunning(id.to_owned()))?;
        openshell_driver_local::connect_in(init.as_fd(), id, port)
    }

    fn signal(&self, id: &str, signal: Signal) -> Result<(), DriverError> {
        let container = self.container(id)?;
        let options = bollard::query_parameters::KillContainerOptions { signal: signal.as_str().to_owned() };
        match self.api.runtime.block_on(self.api.docker.kill_container(&container, Some(options))) {
            Ok(()) => Ok(()),
            // Not running (409) or gone: the end is reported by its watch.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409 | 404, .. }) => Ok(()),
            Err(e) => Err(self.api.error("kill", &e)),
        }
    }

    fn find(&self, id: &str) -> Found {
        match self.init_pid(id) {
            Ok(pid) => match self.container(id) {
                Ok(container) => Found::Running(Run {
                    pid: Some(pid),
                    watch: Box::new(relay::RunWatch {
                        api: Arc::clone(&self.api),
                        container,
                        output: None,
                        input_done: Arc::new(AtomicBool::new(true)),
                        helper: None,
                    }),
                }),
                Err(_) => Found::Ended(None),
            },
            Err(_) => Found::Ended(self.last_exit(id)),
        }
    }

    fn sweep(&self, known: &dyn Fn() -> Option<std::collections::HashSet<String>>) {
        let held = openshell_driver_local::entry_names(&self.root.join("sandboxes"));
        // Containers of this directory's sandboxes, also those whose record was
        // never written (a gateway killed between dockerd's create and it).
        let filters = std::collections::HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={}", container::LABEL_DIR, self.root.display())],
        )]);
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self.api.call("ps", self.api.docker.list_containers(Some(options))).unwrap_or_default();
        let Some(known) = known() else { return };
        for id in held.iter().filter(|id| !known.contains(*id)) {
            tracing::info!(%id, "removing an unrecorded sandbox");
            if let Err(e) = self.remove(id) {
                tracing::warn!(%e, "removing an unrecorded sandbox");
            }
        }
        for c in containers {
            let sandbox = c.labels.as_ref().and_then(|l| l.get(container::LABEL_ID));
            if let (Some(sandbox), Some(container)) = (sandbox, c.id.as_deref())
                && !known.contains(sandbox)
                && !held.contains(sandbox)
            {
                tracing::info!(%sandbox, %container, "removing the container of an unrecorded sandbox");
                if let Err(e) = self.remove_container(container) {
                    tracing::warn!(%e, "removing the container of an unrecorded sandbox");
                }
                let _ = std::fs::remove_file(self.link(container));
            }
        }
    }

    fn last_exit(&self, id: &str) -> Option<Exit> {
        let container = self.container(id).ok()?;
        let inspected = self
            .api
            .runtime
            .block_on(
                self.api
                    .docker
                    .inspect_container(&container, None::<bollard::query_parameters::InspectContainerOptions>),
            )
            .ok()?;
        let state = inspected.state?;
        let finished = state.finished_at.as_deref()?;
        let finished = time::OffsetDateTime::parse(finished, &time::format_description::well_known::Rfc3339).ok()?;
        // Never ran: dockerd's zero time.
        if finished.year() < 1970 || state.running == Some(true) {
            return None;
        }
        let code = i32::try_from(state.exit_code?).ok()?;
        Some(Exit { code, finished: u64::try_from(finished.unix_timestamp()).unwrap_or(0) })
    }

    fn log(&self, id: &str, kind: LogKind) -> Result<Box<dyn LogStream>, DriverError> {
        let dir = self.sandbox(id);
        match (kind, self.record(id)?.container) {
            (LogKind::Output, Some(container)) => Ok(Box::new(logs::DockerLog::open(Arc::clone(&self.api), container))),
            // Never started: nothing logged yet.
            (LogKind::Output, None) => Ok(Box::new(openshell_driver_local::FileLog::open(dir.log())?)),
            (LogKind::Audit, _) => Ok(Box::new(openshell_driver_local::FileLog::open(
                dir.0.join(openshell_driver_local::helper::AUDIT_FILE),
            )?)),
        }
    }

    fn has_network(&self, id: &str) -> bool {
        self.record(id).is_ok_and(|r| r.network.is_some())
    }

    fn reload_network(
        &self,
        id: &str,
        revision: i64,
        name: &str,
        text: &str,
        running: bool,
        wait: bool,
    ) -> Result<Applied, DriverError> {
        let proxy = self.proxy_process(id).filter(|_| running);
        openshell_driver_local::hand_network(&self.sandbox(id).0, proxy.as_ref(), revision, name, text, wait)
    }

    fn set_route(&self, id: &str, route: &RouteUpdate, running: bool, wait: bool) -> Result<Applied, DriverError> {
        let proxy = self.proxy_process(id).filter(|_| running);
        openshell_driver_local::hand_route(&self.sandbox(id).0, proxy.as_ref(), route, wait)
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        let dir = self.sandbox(id);
        if let Ok(Record { container: Some(container), .. }) = self.record(id) {
            self.remove_container(&container)?;
            let _ = std::fs::remove_file(self.link(&container));
        }
        // A helper killed with its gateway left its binding.
        let _ = nix::mount::umount2(&dir.0.join(network::NETNS_FILE), nix::mount::MntFlags::MNT_DETACH);
        match std::fs::remove_dir_all(&dir.0) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::Io { path: dir.0, source: e }),
        }
    }
}
