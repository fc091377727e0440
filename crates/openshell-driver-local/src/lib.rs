//! The local driver (the embedded default): sandboxes on this host through
//! libcontainer, with one supervisor process per running sandbox, so sandboxes
//! outlive the gateway.
//!
//! - `process`: the helper processes from the gateway's side (spare, runs,
//!   execs, standby, adopted runs);
//! - `helper`: the helper process's own side (`openshell gateway helper`):
//!   supervisor, exec, the sandbox's egress proxy;
//! - `files`: what a sandbox is made of beside its image (CA, trust bundle);
//! - `logs`: its log files as a stream.

mod files;
pub mod helper;
mod logs;
mod process;

pub use files::{image_config, make_ca};
pub use logs::FileLog;
pub use process::{hand_over, signal_pidfd};

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::signal::Signal;
use openshell_driver::{
    Applied, Created, Driver, DriverError, Exec, ExecSpec, Exit, Found, Job, LogKind, LogStream, Pending, RouteUpdate,
    Run, SandboxSpec, Stdio,
};
use openshell_gateway_api::wire;
use openshell_policy::KernelProfile;
use openshell_sandbox::disk::{Device, Disk, Spares};
use openshell_sandbox::idmap::{IdMap, IdMapError, UserNamespace};
use openshell_sandbox::rootfs::LayerCache;
use openshell_sandbox::sandbox::{SandboxConfig, SandboxDir, write_json};
use openshell_sandbox::{ProcessConfig, SpecInput, Writable, resolve_group, resolve_user, runtime_spec};
use openshell_store::{Digest, Store};

use crate::files::{image_file, install_ca, resolv_conf};
use crate::helper::{HelperJob, HelperMessage};
use crate::process::{Adopted, Pidfds, Spare, Waiter, spawn_helper, started};

/// The port of every sandbox's proxy, on the host end of its link.
pub const PROXY_PORT: u16 = 3128;

/// Runs sandboxes on this host (libcontainer).
pub struct LocalDriver {
    /// `sandboxes/`, `layers/`, `containers/` and the helpers' log.
    root: PathBuf,
    /// The `openshell` executable, for helper processes.
    exe: PathBuf,
    /// Where images are read from, by digest.
    store: Store,
    /// A helper process started ahead of need (`openshell gateway helper`).
    spare: std::sync::Arc<std::sync::Mutex<Option<Spare>>>,
    /// The host range sandboxes' ids map to, and whether layers can be mounted
    /// idmapped here: found at the first create.
    user_namespaces: std::sync::OnceLock<Result<HostIds, std::sync::Arc<IdMapError>>>,
    /// Pidfds of each running sandbox's supervisor and process 1, by sandbox id.
    running: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Pidfds>>>,
    /// The seccomp programs compiled so far, by filter.
    seccomp: openshell_sandbox::seccomp_bpf::Compiled,
    /// Spare disk images (under `disk-templates/`), attached ahead of need.
    spares: std::sync::Arc<Spares>,
    /// The loop devices of spares taken by creates, by sandbox id: held until
    /// the sandbox's first start hands its descriptor to the supervisor.
    taken_devices: std::sync::Mutex<std::collections::HashMap<String, Device>>,
}

/// What the first create finds of the host's user namespaces.
#[derive(Clone)]
struct HostIds {
    /// The range sandboxes' ids map to.
    map: IdMap,
    /// Whether layers can be idmapped here.
    idmapped: bool,
    /// When they can: a user namespace with `map`, handed to every supervisor
    /// for its idmapped layers (made once, not at each start).
    layers_userns: Option<std::sync::Arc<UserNamespace>>,
}

impl LocalDriver {
    /// A driver keeping its sandboxes under `root` (made when missing) and
    /// reading images from `store`; `exe` is the `openshell` executable.
    pub fn new(root: PathBuf, exe: PathBuf, store: Store) -> Result<LocalDriver, DriverError> {
        let driver = LocalDriver {
            root: root.clone(),
            exe,
            store,
            spare: Default::default(),
            user_namespaces: Default::default(),
            running: Default::default(),
            seccomp: Default::default(),
            spares: std::sync::Arc::new(Spares::new(root.join("disk-templates"))),
            taken_devices: Default::default(),
        };
        for sub in [driver.sandboxes(), driver.layers(), driver.containers()] {
            std::fs::create_dir_all(&sub).map_err(DriverError::io(&sub))?;
        }
        driver.refill();
        Ok(driver)
    }

    fn sandboxes(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    fn helpers_log(&self) -> PathBuf {
        self.root.join("helpers.log")
    }

    /// The image's layers, unpacked (once per diff_id) for this host's range.
    fn unpack_layers(
        &self,
        manifest: &openshell_oci::spec::ImageManifest,
        config: &openshell_oci::spec::ImageConfiguration,
        ids: &IdMap,
        idmapped: bool,
    ) -> Result<Vec<PathBuf>, DriverError> {
        let blobs: Vec<&str> = manifest.layers().iter().map(|l| l.digest().as_ref()).collect();
        let diff_ids: Vec<&str> = config.rootfs().diff_ids().iter().map(String::as_str).collect();
        if blobs.len() != diff_ids.len() {
            return Err(DriverError::image(format!("{} layers but {} diff_ids", blobs.len(), diff_ids.len())));
        }
        let cache = LayerCache::open(self.layers()).map_err(DriverError::failed)?;
        let mut layers = Vec::new();
        for (blob, diff_id) in blobs.iter().zip(&diff_ids) {
            let parse = |d: &str| d.parse::<Digest>().map_err(|e| DriverError::image(format!("image layer {d}: {e}")));
            let (blob, diff_id) = (parse(blob)?, parse(diff_id)?);
            let layer = if idmapped {
                cache.ensure(&self.store, &blob, &diff_id)
            } else {
                cache.ensure_shifted(&self.store, &blob, &diff_id, ids)
            };
            layers.push(layer.map_err(DriverError::failed)?);
        }
        Ok(layers)
    }

    fn sandbox(&self, id: &str) -> SandboxDir {
        SandboxDir(self.sandboxes().join(id))
    }

    /// The pidfds of a sandbox's current run (or of its last one: signals
    /// through them reach nothing once it ended): kept since its start, else
    /// found from its supervisor's record (a run another gateway sharing this
    /// directory started).
    fn pidfds(&self, id: &str) -> Option<std::sync::Arc<Pidfds>> {
        let kept = self.running.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        kept.or_else(|| self.adopt(id).map(|(pidfds, _)| pidfds))
    }

    /// Keeps a started run's pidfds.
    fn record(&self, id: &str, pidfds: Pidfds) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), pidfds.into());
    }

    /// The range sandboxes' ids map to (`OPENSHELL_ID_RANGE`, else the dedicated
    /// user's, made when missing) and whether layers can be idmapped here (else
    /// they are unpacked with shifted owners).
    fn user_namespaces(&self) -> Result<HostIds, DriverError> {
        self.user_namespaces
            .get_or_init(|| {
                let map = IdMap::for_host()?;
                let idmapped = openshell_sandbox::rootfs::idmapped_overlay_works(&self.layers(), &map);
                if !idmapped {
                    tracing::warn!("this kernel cannot idmap image layers; they are unpacked with shifted owners");
                }
                let layers_userns = idmapped.then(|| UserNamespace::new(&map)).transpose();
                // Without it each supervisor makes its own.
                let layers_userns = layers_userns.map_err(|e| tracing::warn!(%e, "the layers' user namespace")).ok();
                Ok(HostIds { map, idmapped, layers_userns: layers_userns.flatten().map(std::sync::Arc::new) })
            })
            .clone()
            .map_err(|e| DriverError::failed(format!("the sandboxes' user namespace: {e}")))
    }

    /// Held while a sandbox's network is numbered: creates run concurrently, in
    /// this process and in other gateways sharing this directory.
    fn numbering_lock(&self) -> Result<std::fs::File, DriverError> {
        lock_file(&self.root.join("numbering.lock"))
    }

    /// The lowest network number no sandbox directory holds.
    fn number_network(&self, id: &str) -> Result<openshell_sandbox::fence::Fence, DriverError> {
        let mut used = std::collections::HashSet::new();
        for entry in std::fs::read_dir(self.sandboxes()).into_iter().flatten().flatten() {
            if let Ok(config) = SandboxDir(entry.path()).read_config()
                && let Some(fence) = config.network
            {
                used.insert(fence.host_addr);
            }
        }
        // Other gateways on this machine number their sandboxes too: start at a place
        // of this id's own.
        let start = u32::from_str_radix(&id[..id.len().min(4)], 16).unwrap_or(0);
        free_fence(&used, format!("osh{}", &id[..id.len().min(12)]), start)
    }

    /// Starts the next spare helper in the background.
    fn refill(&self) {
        let (exe, log, spare) = (self.exe.clone(), self.helpers_log(), std::sync::Arc::clone(&self.spare));
        std::thread::spawn(move || match spawn_helper(&exe, &log) {
            Ok(new) => {
                let mut slot = spare.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(new);
                    return;
                }
                drop(slot);
                // One is ready already: closing its control socket ends this one.
                let Spare { mut child, control } = new;
                drop(control);
                let _ = child.wait();
            }
            Err(e) => tracing::warn!(%e, "starting a spare helper"),
        });
    }

    /// Gives a helper a supervising job for sandbox `id`: attached first the
    /// gateway's user namespace for idmapped layers (when it has one), then the
    /// loop device of the spare disk its create took (its first start), then
    /// `stdio`. The supervisor's copy of the device holds it until its mount does.
    fn supervisor(&self, job: HelperJob, id: &str, stdio: &[OwnedFd]) -> Result<Waiter, DriverError> {
        let userns = self.user_namespaces().ok().and_then(|ids| ids.layers_userns);
        let device = self.taken_devices.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let attach =
            HelperMessage::supervise(job, &self.sandbox(id).0, userns.as_ref().map(|ns| *ns.map()), device.is_some());
        let ahead = userns.iter().map(|ns| ns.fd()).chain(device.iter().map(Device::fd));
        let fds: Vec<_> = ahead.chain(stdio.iter().map(|f| f.as_fd())).collect();
        self.helper(attach, &fds)
    }

    /// Gives a helper its job: the spare one when it is ready, else a new one.
    fn helper(&self, attach: HelperMessage, fds: &[BorrowedFd<'_>]) -> Result<Waiter, DriverError> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut helper = match spare {
            Some(mut s) => match s.child.try_wait() {
                Ok(None) => s,
                _ => spawn_helper(&self.exe, &self.helpers_log())?,
            },
            None => spawn_helper(&self.exe, &self.helpers_log())?,
        };
        let sent = wire::send(&helper.control, &attach, fds);
        // The next spare is started once this one has its job (not before: the
        // two would share the CPU while the job starts).
        self.refill();
        if let Err(e) = sent {
            let _ = helper.child.kill();
            let _ = helper.child.wait();
            return Err(DriverError::failed(format!("gateway helper: {e}")));
        }
        Ok(Waiter { child: helper.child, control: helper.control })
    }

    /// Deletes the sandbox's container (its state knows its cgroups:
    /// libcontainer removes both) and whatever is left of its cgroups.
    fn delete_container(&self, id: &str) {
        let state = self.containers().join(id);
        if state.exists() {
            match libcontainer::container::Container::load(state.clone()) {
                Ok(mut container) => {
                    if let Err(e) = container.delete(true) {
                        tracing::warn!(%e, sandbox = id, "deleting the container");
                    }
                }
                Err(e) => tracing::warn!(%e, sandbox = id, "loading the container's state"),
            }
        }
        let _ = std::fs::remove_dir_all(&state);
        openshell_sandbox::sandbox::remove_cgroups(&format!("/openshell/{id}"));
    }

    /// Takes over a sandbox a previous gateway started, when its supervisor
    /// (the one its record names, by pid and start time) still runs: pidfds of
    /// the supervisor and process 1, each checked to be the recorded process
    /// after it was opened (process 1 as the supervisor's child).
    fn adopt(&self, id: &str) -> Option<(std::sync::Arc<Pidfds>, i32)> {
        let record = helper::Supervisor::read(&self.sandbox(id).0)?;
        let init_pid = record.init?;
        let supervisor = helper::pidfd(record.pid).ok()?;
        let init = helper::pidfd(init_pid).ok()?;
        // Checked after opening: the pidfds hold the processes, so what the
        // checks see is what the pidfds name.
        if !record.alive() || helper::parent(init_pid) != Some(record.pid) {
            return None;
        }
        let pidfds = std::sync::Arc::new(Pidfds { supervisor, init });
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), std::sync::Arc::clone(&pidfds));
        Some((pidfds, init_pid))
    }
}

/// The names of the entries of `dir` (a driver's sandbox directories: their ids);
/// none when it cannot be read.
pub fn entry_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Holds the lock file at `path` (made when missing) until the file is dropped.
pub fn lock_file(path: &std::path::Path) -> Result<std::fs::File, DriverError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(DriverError::io(path))?;
    file.lock().map_err(DriverError::io(path))?;
    Ok(file)
}

/// The first sandbox network of 10.213.0.0/16, counting from `start`, whose
/// host address `used` lacks and the host has not already (a bind to an
/// address succeeds only when it is local).
pub fn free_fence(
    used: &std::collections::HashSet<std::net::Ipv4Addr>,
    host_if: String,
    start: u32,
) -> Result<openshell_sandbox::fence::Fence, DriverError> {
    (0..1u32 << 14)
        .filter_map(|i| openshell_sandbox::fence::Fence::numbered((start + i) % (1 << 14), host_if.clone(), PROXY_PORT))
        .find(|f| !used.contains(&f.host_addr) && std::net::TcpListener::bind((f.host_addr, 0)).is_err())
        .ok_or_else(|| DriverError::failed("no free sandbox network in 10.213.0.0/16"))
}

/// A TCP connection to `port` on the loopback of the network namespace of
/// process `init` (a pidfd): what `sandbox forward` relays. A thread of its own
/// joins the namespace (setns moves only the calling thread), connects, and
/// ends; the socket stays in that namespace.
pub fn connect_in(init: std::os::fd::BorrowedFd<'_>, id: &str, port: u16) -> Result<OwnedFd, DriverError> {
    let unreachable = |source| DriverError::Unreachable { id: id.to_owned(), port, source };
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
            move_into_link_name_space(init, Some(LinkNameSpaceType::Network))?;
            let to = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
            let stream = std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5))?;
            Ok::<_, std::io::Error>(OwnedFd::from(stream))
        })
        .join()
    });
    made.map_err(|_| DriverError::failed("the thread connecting into the sandbox failed"))?.map_err(unreachable)
}

/// Records a network policy revision in the sandbox directory `dir` and hands
/// it to the proxy's process (`supervisor`, when running).
pub fn hand_network(
    dir: &std::path::Path,
    supervisor: Option<&OwnedFd>,
    revision: i64,
    name: &str,
    text: &str,
    wait: bool,
) -> Result<Applied, DriverError> {
    let record =
        crate::helper::NetworkRevision { revision: revision as u64, name: name.to_owned(), text: text.to_owned() };
    write_json(&dir.join(crate::helper::NETWORK_FILE), &record).map_err(DriverError::failed)?;
    let signal = nix::sys::signal::Signal::SIGHUP;
    hand_over(&dir.join(crate::helper::APPLIED_FILE), supervisor, signal, revision as u64, wait)
}

/// Records the inference route (0600: it holds the backend's credential) in
/// the sandbox directory `dir` and hands it to the proxy's process.
pub fn hand_route(
    dir: &std::path::Path,
    supervisor: Option<&OwnedFd>,
    route: &RouteUpdate,
    wait: bool,
) -> Result<Applied, DriverError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(crate::helper::ROUTE_FILE);
    let tmp = dir.join(format!("{}.tmp", crate::helper::ROUTE_FILE));
    let bytes = serde_json::to_vec(route).map_err(DriverError::failed)?;
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| DriverError::failed(format!("{}: {e}", path.display())))?;
    let signal = nix::sys::signal::Signal::SIGUSR1;
    hand_over(&dir.join(crate::helper::ROUTE_APPLIED_FILE), supervisor, signal, route.generation, wait)
}

impl Driver for LocalDriver {
    fn name(&self) -> &'static str {
        "local"
    }

    fn create(&self, id: &str, sandbox: &SandboxSpec) -> Result<Created, DriverError> {
        // The start that follows moves a process into the sandbox's cgroups: the
        // kernel's wait for that is started now, beside the work below.
        openshell_sandbox::cgroup_lock::warm();
        let policy = openshell_policy::load_str(&sandbox.policy_name, &sandbox.policy).map_err(DriverError::policy)?;
        let (manifest, config) = openshell_build::images::documents_by_digest(&self.store, &sandbox.image_digest)
            .map_err(|e| DriverError::image(format!("image {}: {e}", sandbox.image_digest)))?;
        let HostIds { map: ids, idmapped, .. } = self.user_namespaces()?;
        let layers = self.unpack_layers(&manifest, &config, &ids, idmapped)?;
        let (image_env, image_args, image_cwd) = image_config(&config);
        let workdir =
            if image_cwd == "/" { openshell_policy::profile::DEFAULT_WORKDIR.to_owned() } else { image_cwd.clone() };
        let profile = KernelProfile::compile(&policy, &workdir);
        let passwd = image_file(&layers, "etc/passwd").unwrap_or_default();
        let uid = resolve_user(profile.user.user, &passwd).map_err(DriverError::failed)?;
        let group = image_file(&layers, "etc/group").unwrap_or_default();
        let gid = resolve_group(profile.user.group, &group).map_err(DriverError::failed)?;

        let dir = self.sandbox(id);
        std::fs::create_dir_all(dir.bundle()).map_err(|e| DriverError::failed(format!("{}: {e}", dir.0.display())))?;
        // Process 1 runs its job (job.json); the spec names the image's command.
        let args = if image_args.is_empty() { vec!["/bin/sh".to_owned()] } else { image_args };
        let mut env = image_env;
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let mut writable = Vec::new();
        let mut bind_paths = Vec::new();
        for path in &profile.mounts.read_write {
            if path == "/tmp" {
                writable.push(Writable::Tmpfs { path: path.clone() });
            } else if !path.starts_with("/dev/") && path != "/" {
                // Bound from the directory the supervisor resolves inside the overlay
                // at each start (see `SandboxDir::bind_source`), never from a path
                // string through the sandbox's own files.
                writable.push(Writable::Bind { path: path.clone(), source: dir.bind_source(bind_paths.len()) });
                bind_paths.push(path.clone());
            }
        }
        let spec = runtime_spec(&SpecInput {
            profile: &profile,
            process: ProcessConfig { args, env: env.clone(), cwd: image_cwd, terminal: false },
            uid,
            gid,
            rootfs: dir.rootfs(),
            hostname: format!("sandbox-{id}"),
            writable,
            cgroups_path: format!("/openshell/{id}"),
            ids: Some(ids),
        })
        .map_err(DriverError::failed)?;
        // The seccomp filter is compiled once, here (or was, for an earlier sandbox
        // with the same filter), and installed from BPF at every start and exec
        // (libcontainer would compile it each time).
        let mut spec = spec;
        if let Some(filter) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
            self.seccomp.write(&filter, &dir.bpf()).map_err(DriverError::failed)?;
            write_json(&dir.0.join("seccomp.json"), &filter).map_err(DriverError::failed)?;
            if let Some(linux) = spec.linux_mut() {
                linux.set_seccomp(None);
            }
        }
        let spec_path = dir.bundle().join("config.json");
        write_json(&spec_path, &spec).map_err(DriverError::failed)?;
        std::fs::write(dir.policy(), &sandbox.policy)
            .map_err(|e| DriverError::failed(format!("{}: {e}", dir.policy().display())))?;
        // A sandbox with network policies gets a fenced link to its own proxy;
        // without any, loopback alone (network policies cannot be added later).
        let _numbering = self.numbering_lock()?;
        let network = if policy.network_policies.is_empty() { None } else { Some(self.number_network(id)?) };
        let proxy = network.as_ref().map(|f| f.proxy_url());
        let files = match &network {
            Some(fence) => vec![install_ca(&dir, id, &layers)?, resolv_conf(&dir, fence)?],
            None => Vec::new(),
        };
        // The writable layer on a filesystem of the policy's size.
        let disk = Disk { image: dir.0.join("disk.img"), size: profile.storage.disk };
        if let Some(device) = self.spares.take(&disk).map_err(DriverError::failed)? {
            self.taken_devices.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), device);
        }
        // The next create of this size renames a spare instead of copying the
        // template while it waits (made now, beside this start's own work).
        let (spares, size) = (std::sync::Arc::clone(&self.spares), disk.size);
        std::thread::spawn(move || {
            if let Err(e) = spares.make(size) {
                tracing::warn!(%e, "making a spare disk image");
            }
        });
        let config = SandboxConfig {
            network,
            id: id.to_owned(),
            state_root: self.containers(),
            layers,
            workdir,
            uid,
            gid,
            bind_paths,
            ids: Some(ids),
            idmapped_layers: idmapped,
            disk: Some(disk),
            files,
        };
        write_json(&dir.config(), &config).map_err(DriverError::failed)?;
        Ok(Created { env, proxy })
    }

    fn set_job(&self, id: &str, job: &Job) -> Result<(), DriverError> {
        let job =
            openshell_sandbox::init::Job { args: job.args.clone(), env: job.env.clone(), idle: job.args.is_empty() };
        write_json(&self.sandbox(id).job(), &job).map_err(DriverError::failed)
    }

    fn standby(&self, id: &str) -> Result<Box<dyn Pending>, DriverError> {
        let dir = self.sandbox(id);
        let waiter = self.supervisor(HelperJob::Standby, id, &[])?;
        let (waiter, pid, pidfds) = started(waiter, &dir)?;
        self.record(id, pidfds);
        Ok(Box::new(process::Standby { waiter, pid }))
    }

    fn start(&self, id: &str, stdio: Stdio) -> Result<Run, DriverError> {
        let dir = self.sandbox(id);
        let _ = std::fs::remove_file(dir.exit());
        // A run whose gateway died before it was recorded, and whose supervisor
        // is gone too, left its container behind: cleared, or the start would
        // find it "already exists".
        if !helper::Supervisor::read(&dir.0).is_some_and(|s| s.alive()) {
            self.delete_container(id);
        }
        let waiter = self.supervisor(HelperJob::Supervise, id, &stdio)?;
        drop(stdio);
        let (waiter, pid, pidfds) = started(waiter, &dir)?;
        self.record(id, pidfds);
        Ok(Run { pid: Some(pid), watch: Box::new(waiter) })
    }

    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<Exec, DriverError> {
        let attach = HelperMessage::Attach {
            job: HelperJob::Exec,
            dir: self.sandbox(id).0,
            args: spec.args.clone(),
            env: spec.env.clone(),
            tty: spec.tty,
            userns: None,
            disk_device: false,
        };
        let fds: Vec<_> = stdio.iter().map(|f| f.as_fd()).collect();
        let waiter = self.helper(attach, &fds)?;
        if !spec.tty {
            return Ok(Exec { console: None, watch: Box::new(waiter) });
        }
        match waiter.next() {
            Some((HelperMessage::Console, fds)) if !fds.is_empty() => {
                Ok(Exec { console: fds.into_iter().next(), watch: Box::new(waiter) })
            }
            Some((HelperMessage::Failed { message }, _)) => {
                let _ = (Box::new(waiter) as Box<dyn openshell_driver::Watch>).wait();
                Err(DriverError::failed(message))
            }
            other => {
                let _ = (Box::new(waiter) as Box<dyn openshell_driver::Watch>).wait();
                Err(DriverError::failed(format!("exec ended without a terminal ({other:?})")))
            }
        }
    }

    fn connect(&self, id: &str, port: u16) -> Result<OwnedFd, DriverError> {
        let pidfds = self.pidfds(id).ok_or_else(|| DriverError::NotRunning(id.to_owned()))?;
        connect_in(pidfds.init.as_fd(), id, port)
    }

    fn signal(&self, id: &str, signal: Signal) -> Result<(), DriverError> {
        let pidfds = self.pidfds(id).ok_or_else(|| DriverError::NotRunning(id.to_owned()))?;
        signal_pidfd(&pidfds.init, signal)
    }

    fn find(&self, id: &str) -> Found {
        match self.adopt(id) {
            Some((pidfds, pid)) => {
                Found::Running(Run { pid: Some(pid), watch: Box::new(Adopted { pidfds, dir: self.sandbox(id) }) })
            }
            None => Found::Ended(self.last_exit(id)),
        }
    }

    fn shutdown(&self) {
        self.spares.close(std::time::Duration::from_secs(10));
    }

    fn sweep(&self, known: &dyn Fn() -> Option<std::collections::HashSet<String>>) {
        let held: Vec<_> = std::fs::read_dir(self.sandboxes()).into_iter().flatten().flatten().collect();
        let Some(known) = known() else { return };
        for entry in held {
            let id = entry.file_name().to_string_lossy().into_owned();
            // A standby sandbox's supervisor discards it when alive; what a killed
            // one left is removed here.
            if known.contains(&id) || helper::Supervisor::read(&entry.path()).is_some_and(|s| s.alive()) {
                continue;
            }
            tracing::info!(%id, "removing an unrecorded sandbox directory");
            if let Err(e) = self.remove(&id) {
                tracing::warn!(%e, "removing an unrecorded sandbox directory");
            }
        }
    }

    fn last_exit(&self, id: &str) -> Option<Exit> {
        self.sandbox(id).read_exit().map(|e| Exit { code: e.code, finished: e.finished })
    }

    fn log(&self, id: &str, kind: LogKind) -> Result<Box<dyn LogStream>, DriverError> {
        let path = match kind {
            LogKind::Output => self.sandbox(id).log(),
            LogKind::Audit => self.sandbox(id).0.join(helper::AUDIT_FILE),
        };
        Ok(Box::new(logs::FileLog::open(path)?))
    }

    fn has_network(&self, id: &str) -> bool {
        self.sandbox(id).read_config().is_ok_and(|c| c.network.is_some())
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
        let supervisor = self.pidfds(id).filter(|_| running);
        let supervisor = supervisor.as_ref().map(|p| &p.supervisor);
        hand_network(&self.sandbox(id).0, supervisor, revision, name, text, wait)
    }

    fn set_route(&self, id: &str, route: &RouteUpdate, running: bool, wait: bool) -> Result<Applied, DriverError> {
        let supervisor = self.pidfds(id).filter(|_| running);
        let supervisor = supervisor.as_ref().map(|p| &p.supervisor);
        hand_route(&self.sandbox(id).0, supervisor, route, wait)
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.taken_devices.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let dir = self.sandbox(id);
        // Its mounts lived in its supervisor's own mount namespace: nothing to unmount.
        self.delete_container(id);
        match std::fs::remove_dir_all(&dir.0) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::failed(format!("{}: {e}", dir.0.display()))),
        }
    }
}
