//! One sandbox on the host: its directory, what is fixed at creation, and the two
//! short programs the gateway runs for it.
//!
//! Layout of a sandbox directory (all owned by the gateway's user):
//! - `sandbox.json`: [`SandboxConfig`], written once at creation;
//! - `policy.yaml`: the policy's text as given at creation (static sections are
//!   compiled from it on every start, so they cannot drift);
//! - `bundle/config.json`: the OCI runtime spec, written once at creation;
//! - `disk.img`: the filesystem that holds the overlay's writable layer (`upper/`,
//!   `work/`; persists across stop/start, so `/sandbox` and every other read-write
//!   path keep their contents), of the policy's size (see [`crate::disk`]);
//! - `output.log` (and `output.log.1`): what the sandbox's main process wrote,
//!   rotated at the policy's size (see [`crate::logs`]);
//! - `exit.json`: how the last run ended (written by the supervisor).
//!
//! While it runs, its mounts (the disk, the overlay, idmapped layers, read-write
//! paths) live under [`RUN_DIR`] in its supervisor's own mount namespace.
//!
//! [`supervise`] is the per-sandbox supervisor: in a mount namespace of its own,
//! mounts the overlay and the read-write paths (see [`crate::inroot`]), creates and
//! starts the container (our init as process 1), copies its output into the log
//! (and to an attached client), waits, records the exit, cleans up. It is a
//! process of its own so that sandboxes outlive the gateway. [`exec`] runs one
//! more process inside a running sandbox under the same restrictions.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitStatus, waitpid};
use openshell_policy::KernelProfile;
use serde::{Deserialize, Serialize};

use crate::rootfs::{LayerOwners, Overlay, OverlayIds};
use crate::run::{InitMode, LandlockExecutor};

/// What is fixed when a sandbox is created (besides its spec and policy files).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxConfig {
    pub id: String,
    /// Where libcontainer keeps container state (shared by all sandboxes of a gateway).
    pub state_root: PathBuf,
    /// Unpacked layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// The directory the policy's workdir entry means (e.g. `/sandbox`).
    pub workdir: String,
    /// Owner of read-write directories the image does not have.
    pub uid: u32,
    pub gid: u32,
    /// Read-write paths bound from the overlay (created when missing): the `n`th
    /// is resolved inside the overlay at each start and mounted at
    /// [`SandboxDir::bind_source`]`(n)`, which the spec binds from.
    pub bind_paths: Vec<String>,
    /// The sandbox's fenced link to its egress proxy; without it, loopback only.
    #[serde(default)]
    pub network: Option<crate::fence::Fence>,
    /// The host range its uids and gids map to (a user namespace of its own).
    /// `uid` and `gid` above are ids inside it. `None`: made before sandboxes
    /// had user namespaces; it runs without one.
    #[serde(default)]
    pub ids: Option<crate::idmap::IdMap>,
    /// Whether `layers` keep the image's owners and are mounted idmapped; else
    /// they were unpacked with owners shifted into `ids`.
    #[serde(default)]
    pub idmapped_layers: bool,
    /// The filesystem that holds its writable layer (the policy's
    /// `resources.disk`); `None`: the layer is a directory of the sandbox's
    /// (made before disks had a size).
    #[serde(default)]
    pub disk: Option<crate::disk::Disk>,
    /// Files put into its root at every start (e.g. the trust bundle).
    #[serde(default)]
    pub files: Vec<PlacedFile>,
}

/// A file of the host's that a sandbox finds in its root, owned by its root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlacedFile {
    /// Where inside the sandbox.
    pub path: String,
    /// Its content, on the host (in the sandbox's directory).
    pub source: PathBuf,
    pub mode: u32,
}

/// How a run of a sandbox ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub code: i32,
    /// Seconds since the Unix epoch.
    pub finished: u64,
}

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("seccomp filter {path}: {message}")]
    Seccomp { path: PathBuf, message: String },
    #[error("policy of sandbox {id}: {message}")]
    Policy { id: String, message: String },
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error("sandbox {id}: {source}")]
    InRoot {
        id: String,
        #[source]
        source: crate::inroot::InRootError,
    },
    #[error("sandbox {id}: its disk: {source}")]
    Disk {
        id: String,
        #[source]
        source: crate::disk::DiskError,
    },
    #[error("sandbox {id}: making the supervisor's mounts private: {source}")]
    MountNamespace {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox {id}: {message}")]
    Container { id: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io { path: path.to_path_buf(), source }
}

/// The files of one sandbox directory.
#[derive(Debug, Clone)]
pub struct SandboxDir(pub PathBuf);

impl SandboxDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("sandbox.json")
    }
    pub fn policy(&self) -> PathBuf {
        self.0.join("policy.yaml")
    }
    pub fn bundle(&self) -> PathBuf {
        self.0.join("bundle")
    }
    /// Where the overlay is mounted while the sandbox runs: in the supervisor's
    /// own mount namespace ([`RUN_DIR`]), never on the host.
    pub fn rootfs(&self) -> PathBuf {
        Path::new(RUN_DIR).join("rootfs")
    }
    /// Where the `n`th read-write bind path is mounted for the container to bind
    /// from (a directory of ours, never one the sandbox can write: the spec's
    /// bind sources are these, see [`SandboxConfig::bind_paths`]).
    pub fn bind_source(&self, n: usize) -> PathBuf {
        Path::new(RUN_DIR).join("binds").join(n.to_string())
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("output.log")
    }
    pub fn exit(&self) -> PathBuf {
        self.0.join("exit.json")
    }
    /// What process 1 runs ([`crate::init::Job`]), written by the gateway.
    pub fn job(&self) -> PathBuf {
        self.0.join("job.json")
    }
    /// The sandbox's overlay (idmapped layers, when it has them, at `lower/N`).
    pub fn overlay(&self, config: &SandboxConfig) -> Overlay {
        let ids = config.ids.map(|map| OverlayIds {
            map,
            layers: if config.idmapped_layers {
                LayerOwners::Idmapped { staging: Path::new(RUN_DIR).join("lower") }
            } else {
                LayerOwners::Shifted
            },
        });
        let writable = if config.disk.is_some() { Path::new(RUN_DIR).join("disk") } else { self.0.clone() };
        Overlay {
            layers: config.layers.clone(),
            upper: writable.join("upper"),
            work: writable.join("work"),
            target: self.rootfs(),
            ids,
        }
    }

    pub fn read_config(&self) -> Result<SandboxConfig, SandboxError> {
        let path = self.config();
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| SandboxError::Format { path, message: e.to_string() })
    }

    /// The seccomp filter compiled at creation (`seccomp.bpf`), when there is one.
    pub fn bpf(&self) -> PathBuf {
        self.0.join("seccomp.bpf")
    }

    /// The compiled filter, which every sandbox has: a missing or malformed one
    /// stops the start (fail closed), it never runs unfiltered.
    fn read_bpf(&self) -> Result<std::sync::Arc<Vec<u8>>, SandboxError> {
        let path = self.bpf();
        let bytes = std::fs::read(&path).map_err(|source| SandboxError::Seccomp {
            path: path.clone(),
            message: format!("{source}; refusing to run the sandbox without its seccomp filter"),
        })?;
        crate::seccomp_bpf::check(&bytes)
            .map_err(|e| SandboxError::Seccomp { path: path.clone(), message: e.to_string() })?;
        Ok(std::sync::Arc::new(bytes))
    }

    /// How the last run ended, if it has.
    pub fn read_exit(&self) -> Option<ExitRecord> {
        serde_json::from_slice(&std::fs::read(self.exit()).ok()?).ok()
    }

    fn profile(&self, config: &SandboxConfig) -> Result<KernelProfile, SandboxError> {
        let path = self.policy();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let policy = openshell_policy::load_str(&path.display().to_string(), &text)
            .map_err(|e| SandboxError::Policy { id: config.id.clone(), message: e.to_string() })?;
        Ok(KernelProfile::compile(&policy, &config.workdir))
    }
}

/// Removes what is left of a container's cgroups (`path` like `/openshell/<id>`)
/// in every hierarchy; a cgroup still holding processes stays.
pub fn remove_cgroups(path: &str) {
    let rel = path.trim_start_matches('/');
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(rel));
    }
}

/// Writes `value` as JSON to `path` atomically (temporary file + rename).
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), SandboxError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| SandboxError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// What the supervisor reports while it runs a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The container exists (process 1 waits to be started) and its network is
    /// set up: what must listen for it (its proxy) starts now.
    Created(i32),
    /// Process 1 runs, with this host pid.
    Started(i32),
    /// Process 1 exited with this code and all output has been delivered; the
    /// container and the overlay are being cleaned up.
    Exited(i32),
}

/// Receives the supervisor's [`Event`]s; an error at `Created` stops the sandbox
/// before it starts (what it needs could not be provided).
pub type OnEvent<'a> = &'a mut dyn FnMut(Event) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A client's stdio to attach; a missing stdin is /dev/null, missing outputs are
/// only logged.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Gives the supervisor the client's stdio once the sandbox has its job
/// (`job.json`, written before); `None`: the sandbox is discarded unused.
pub type Assign<'a> = &'a mut dyn FnMut() -> Option<Stdio>;

/// Runs the sandbox in `dir` until its process 1 exits; returns its exit code
/// (`None` when it was discarded before it got a job). Process 1 starts first and
/// waits for its job: `assign` may block (a sandbox started ahead of need). The
/// main process's stdout and stderr go to the log and, while they accept it, to
/// the attached ones; the attached stdin is copied to the main process.
///
/// `ahead`: what the gateway made for the run ahead of need.
///
/// Call it from a single-threaded process: it moves the process into a mount
/// namespace of its own (everything it mounts for the run is seen by nobody else
/// and goes away with it), and libcontainer clones it.
pub fn supervise(
    dir: &SandboxDir,
    ahead: MadeAhead,
    on_event: OnEvent<'_>,
    assign: Assign<'_>,
) -> Result<Option<i32>, SandboxError> {
    let config = dir.read_config()?;
    let profile = dir.profile(&config)?;
    private_mounts().map_err(|source| SandboxError::MountNamespace { id: config.id.clone(), source })?;
    let disk_err = |source| SandboxError::Disk { id: config.id.clone(), source };
    // The disk is mounted (by mount(8), or from its device on a thread) while
    // the layers are mounted idmapped: the upper directory is on the disk, the
    // layers are not.
    let at = Path::new(RUN_DIR).join("disk");
    let mounting = config.disk.as_ref().map(|disk| disk.start_mount(&at, ahead.disk_device));
    let mounting = mounting.transpose().map_err(disk_err)?;
    let overlay = dir.overlay(&config);
    let lower = overlay.lower(ahead.userns.as_ref());
    if let Some(mounting) = mounting {
        mounting.finish().map_err(disk_err)?;
    }
    overlay.mount_over(&lower?)?;
    let outcome =
        place_paths(dir, &config, &profile).and_then(|()| run_mounted(dir, &config, &profile, on_event, assign));
    for n in 0..config.bind_paths.len() {
        let _ = rustix::mount::unmount(dir.bind_source(n), rustix::mount::UnmountFlags::DETACH);
    }
    let unmounted = overlay.unmount();
    let Some(code) = outcome? else {
        unmounted?;
        return Ok(None);
    };
    let finished = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    write_json(&dir.exit(), &ExitRecord { code, finished })?;
    unmounted?;
    Ok(Some(code))
}

/// What the gateway made for a run ahead of need, handed to its supervisor with
/// the job (each is made at the start when absent).
#[derive(Debug, Default)]
pub struct MadeAhead {
    /// A user namespace with the gateway's map, for the idmapped layers (used
    /// only when the map is the sandbox's).
    pub userns: Option<crate::idmap::UserNamespace>,
    /// The loop device the sandbox's disk image is attached to (its first start
    /// after a create that took a spare image).
    pub disk_device: Option<OwnedFd>,
}

/// Where a running sandbox's mounts live: a fresh tmpfs here in its
/// supervisor's own mount namespace holds the overlay (`rootfs`), its idmapped
/// layers (`lower/N`) and its read-write bind paths (`binds/N`). On the host it
/// is an empty directory. A fixed, world-traversable path: the container's init
/// runs as the sandbox's root, a host id of its range, which cannot traverse the
/// gateway's owner-only directories.
pub const RUN_DIR: &str = "/run/openshell/sandbox";

/// Moves the calling process into a mount namespace of its own, which receives
/// the host's mounts but sends none back, with a fresh tmpfs at [`RUN_DIR`].
fn private_mounts() -> std::io::Result<()> {
    // On the host, `rootfs` is an empty directory: libcontainer's exec (which joins
    // the container's namespaces from the host's) canonicalizes the spec's root.
    std::fs::create_dir_all(Path::new(RUN_DIR).join("rootfs"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(std::io::Error::from)?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::DOWNSTREAM | rustix::mount::MountPropagationFlags::REC,
    )?;
    let flags =
        rustix::mount::MountFlags::NODEV | rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NOEXEC;
    rustix::mount::mount("tmpfs", RUN_DIR, "tmpfs", flags, c"mode=0755,size=1m")?;
    Ok(())
}

/// Refuses a start through links the sandbox planted in its writable layer on
/// any path of its policy (a read-only path redirected by one would widen its
/// Landlock rules), puts its files in place, then resolves each read-write bind
/// path inside the mounted overlay (never leaving the root) and mounts the
/// directory found, through its handle, where the spec binds it from.
fn place_paths(dir: &SandboxDir, config: &SandboxConfig, profile: &KernelProfile) -> Result<(), SandboxError> {
    let inroot = |source| SandboxError::InRoot { id: config.id.clone(), source };
    let overlay = dir.overlay(config);
    for path in profile.mounts.read_only.iter().chain(&profile.mounts.read_write) {
        crate::inroot::check_writable_layer(&overlay.upper, path).map_err(inroot)?;
    }
    let host = |ids: (u32, u32)| config.ids.map_or(ids, |map| map.to_host(ids));
    for file in &config.files {
        let content = std::fs::read(&file.source).map_err(io(&file.source))?;
        crate::inroot::write_file(&overlay.target, &file.path, &content, host((0, 0)), file.mode).map_err(inroot)?;
    }
    let owner = host((config.uid, config.gid));
    for (n, path) in config.bind_paths.iter().enumerate() {
        let handle = crate::inroot::ensure_dir(&overlay.target, path, owner).map_err(inroot)?;
        let at = dir.bind_source(n);
        std::fs::create_dir_all(&at).map_err(io(&at))?;
        crate::inroot::bind_handle(&handle, path, &at).map_err(inroot)?;
    }
    Ok(())
}

fn run_mounted(
    dir: &SandboxDir,
    config: &SandboxConfig,
    profile: &KernelProfile,
    on_event: OnEvent<'_>,
    assign: Assign<'_>,
) -> Result<Option<i32>, SandboxError> {
    let log_path = dir.log();
    let log = crate::logs::RotatingLog::open(&log_path, profile.storage.log_rotate).map_err(io(&log_path))?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(log));
    let pipe_err = |e: rustix::io::Errno| SandboxError::Io { path: log_path.clone(), source: e.into() };
    let (in_r, in_w) = rustix::pipe::pipe().map_err(pipe_err)?;
    let (out_r, out_w) = rustix::pipe::pipe().map_err(pipe_err)?;
    let (err_r, err_w) = rustix::pipe::pipe().map_err(pipe_err)?;
    let (job_r, job_w) = rustix::pipe::pipe().map_err(pipe_err)?;
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(pipe_err)?;
    let cerr = |e: &dyn std::fmt::Display| SandboxError::Container { id: config.id.clone(), message: e.to_string() };
    let container = ContainerBuilder::new(config.id.clone(), SyscallType::default())
        .with_root_path(&config.state_root)
        .map_err(|e| cerr(&e))?
        .with_executor(LandlockExecutor {
            profile: profile.landlock.clone(),
            seccomp: None,
            bpf: Some(dir.read_bpf()?),
            job: Some(std::sync::Arc::new(job_r)),
            ready: Some(std::sync::Arc::new(ready_w)),
            mode: InitMode::Job,
        })
        .with_stdin(in_r)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_init(dir.bundle())
        .with_systemd(false)
        .with_detach(true)
        .build();
    let mut container = match container {
        Ok(c) => c,
        Err(e) => {
            // A container half made by a failed build is removed with its state.
            if let Ok(mut c) = Container::load(config.state_root.join(&config.id)) {
                let _ = c.delete(true);
            }
            return Err(cerr(&e));
        }
    };
    let mut assigned = false;
    let mut copies = Vec::new();
    let waited = (|| {
        let pid = container.pid().ok_or_else(|| cerr(&"no process id after create"))?;
        match &config.network {
            // The fence: a link to the proxy and nothing else (lo comes up too).
            Some(fence) => {
                crate::fence::install(fence, &format!("/proc/{}/ns/net", pid.as_raw())).map_err(|e| cerr(&e))?
            }
            // No network policy: loopback alone.
            None => crate::loopback::bring_up(pid.as_raw()).map_err(|e| cerr(&e))?,
        }
        on_event(Event::Created(pid.as_raw())).map_err(|e| cerr(&e))?;
        container.start().map_err(|e| cerr(&e))?;
        // Landlock and seccomp are in place before it counts as started (fail closed).
        crate::run::wait_ready(ready_r).map_err(|e| cerr(&e))?;
        let _ = on_event(Event::Started(pid.as_raw()));
        if let Some(stdio) = assign() {
            let job_path = dir.job();
            let job = std::fs::read_to_string(&job_path).map_err(io(&job_path))?;
            let job: crate::init::Job = serde_json::from_str(&job)
                .map_err(|e| SandboxError::Format { path: job_path.clone(), message: e.to_string() })?;
            let mut line = serde_json::to_vec(&job)
                .map_err(|e| SandboxError::Format { path: job_path.clone(), message: e.to_string() })?;
            line.push(b'\n');
            let mut job_w = std::fs::File::from(job_w);
            job_w.write_all(&line).map_err(io(&job_path))?;
            assigned = true;
            copies.push(tee(out_r, stdio.stdout.map(std::fs::File::from), std::sync::Arc::clone(&log)));
            copies.push(tee(err_r, stdio.stderr.map(std::fs::File::from), std::sync::Arc::clone(&log)));
            // The attached stdin goes to the main process; none is end of file at once.
            if let Some(stdin) = stdio.stdin {
                copy_stdin(stdin, in_w);
            }
        } else {
            // Discarded: SIGKILL to process 1 ends the whole pid namespace.
            // (libcontainer's kill refused this state and left it running.)
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        wait_exit(pid.as_raw()).map_err(|e| cerr(&format!("waiting for process 1: {e}")))
    })();
    if waited.is_err()
        && let Some(pid) = container.pid()
    {
        // Nothing of the container may keep the output pipes open.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = wait_exit(pid.as_raw());
    }
    // Process 1's end kills the rest of its pid namespace, closing the pipes.
    for copy in copies {
        let _ = copy.join();
    }
    if assigned && let Ok(code) = waited {
        let _ = on_event(Event::Exited(code));
    }
    let deleted = container.delete(true).map_err(|e| cerr(&e));
    if deleted.is_err() {
        remove_cgroups(&format!("/openshell/{}", config.id));
    }
    if let Some(fence) = &config.network {
        // Usually gone with the namespace already; a leftover host end goes here.
        let _ = crate::fence::remove(&fence.host_if);
    }
    let code = waited?;
    deleted?;
    Ok(assigned.then_some(code))
}

/// Copies the client's stdin to the main process until either side closes.
fn copy_stdin(from: OwnedFd, to: OwnedFd) {
    std::thread::spawn(move || {
        let (mut from, mut to) = (std::fs::File::from(from), std::fs::File::from(to));
        let _ = std::io::copy(&mut from, &mut to);
    });
}

/// Copies a pipe into the log and to `out` until the pipe closes; `out` is given
/// up on its first error (a client that went away), the log never.
fn tee(
    from: OwnedFd,
    mut out: Option<std::fs::File>,
    log: std::sync::Arc<std::sync::Mutex<crate::logs::RotatingLog>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = std::fs::File::from(from);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if let Ok(mut log) = log.lock() {
                let _ = log.write_all(&buf[..n]);
            }
            if let Some(o) = &mut out
                && o.write_all(&buf[..n]).is_err()
            {
                out = None;
            }
        }
    })
}

/// One more process in a running sandbox.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A console socket path: the process gets a new terminal whose master end
    /// libcontainer sends there. Without it, the process has the caller's stdio.
    pub console_socket: Option<PathBuf>,
}

/// Starts `req` in the sandbox of `dir` (which must be running) under the same
/// user, seccomp filter and Landlock rules as its main process, with `stdio`
/// (ignored with a console socket); returns its host pid, a child of the caller.
/// Call it from a single-threaded process (see [`crate::run::run`]).
pub fn exec(dir: &SandboxDir, req: &ExecRequest, stdio: Stdio) -> Result<i32, SandboxError> {
    let config = dir.read_config()?;
    let profile = dir.profile(&config)?;
    let cerr = |e: &dyn std::fmt::Display| SandboxError::Container { id: config.id.clone(), message: e.to_string() };
    // libcontainer does not put an exec'd process under the spec's seccomp filter:
    // the executor installs it (the spec's, or the one compiled at creation).
    let spec_path = dir.bundle().join("config.json");
    let spec = libcontainer::oci_spec::runtime::Spec::load(&spec_path)
        .map_err(|e| SandboxError::Format { path: spec_path.clone(), message: e.to_string() })?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SandboxError::Io { path: dir.0.clone(), source: e.into() })?;
    let executor = LandlockExecutor {
        profile: profile.landlock.clone(),
        seccomp,
        bpf: Some(dir.read_bpf()?),
        job: None,
        ready: Some(std::sync::Arc::new(ready_w)),
        mode: InitMode::Exec,
    };
    // The exec'd process is the main process's (user, cwd, capabilities, rlimits,
    // no_new_privs) with its own arguments, extra environment and terminal.
    let mut process = spec.process().clone().ok_or_else(|| cerr(&"the spec has no process"))?;
    process.set_args(Some(req.args.clone()));
    // The main process's environment (its job's, when the sandbox has one).
    let job_env = std::fs::read_to_string(dir.job())
        .ok()
        .and_then(|text| serde_json::from_str::<crate::init::Job>(&text).ok())
        .map(|job| job.env);
    let mut env = job_env.or_else(|| process.env().clone()).unwrap_or_default();
    for (key, value) in &req.env {
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key.as_str()));
        env.push(format!("{key}={value}"));
    }
    process.set_env(Some(env));
    process.set_terminal(Some(req.console_socket.is_some()));
    let process_path = dir.0.join(format!("exec-{}.json", std::process::id()));
    write_json(&process_path, &process)?;
    let mut builder = ContainerBuilder::new(config.id.clone(), SyscallType::default())
        .with_root_path(&config.state_root)
        .map_err(|e| cerr(&e))?
        .with_console_socket(req.console_socket.as_ref())
        .with_executor(executor);
    if req.console_socket.is_none() {
        if let Some(fd) = stdio.stdin {
            builder = builder.with_stdin(fd);
        }
        if let Some(fd) = stdio.stdout {
            builder = builder.with_stdout(fd);
        }
        if let Some(fd) = stdio.stderr {
            builder = builder.with_stderr(fd);
        }
    }
    let pid = builder.as_tenant().with_process(Some(&process_path)).with_detach(true).build();
    let _ = std::fs::remove_file(&process_path);
    let pid = pid.map_err(|e| cerr(&e))?;
    // The builder (and with it our write end) is gone: the answer, or the end.
    if let Err(why) = crate::run::wait_ready(ready_r) {
        let _ = wait_exit(pid.as_raw());
        return Err(cerr(&why));
    }
    Ok(pid.as_raw())
}

/// Waits for a child process; its exit code, 128 + signal when it was killed.
pub fn wait_exit(pid: i32) -> Result<i32, nix::Error> {
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}
