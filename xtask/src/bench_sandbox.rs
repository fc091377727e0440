//! `cargo xtask bench sandbox [--iterations N] [--warmup N] [--idle N]`: the cost of a
//! sandbox, against its peers on the same rootfs, in one run.
//!
//! Set-up (hermetic, offline): a busybox-only image built from `files:` entries (its
//! lockfile, an OCI layout and a `docker load` archive), an OCI bundle of the same
//! layers (`umoci unpack` + `runc spec` running `/bin/true`), and one gateway for the
//! whole run (its own `OPENSHELL_GATEWAY_DIR`, stopped at the end).
//!
//! Timed, interleaved round by round (so load on the machine hits every subject alike),
//! each the whole command's wall time from spawn to exit, each started after a pause of
//! [`SETTLE`] (so that what a subject leaves running, the standby pool's refill or the
//! cold gateway's spare disk and helper, is done before the next subject's clock
//! starts; creates under that load are the back-to-back bursts below):
//! - `openshell sandbox create --rm --image REF --store S -- /bin/true` (default policy,
//!   cached image);
//! - `runc run --bundle B ID`, `bwrap --unshare-all --ro-bind ROOTFS / ... /bin/true` and
//!   `docker run --rm --network none IMAGE /bin/true` (not measured, with the reason,
//!   when `docker info` or a run fails; the others failing fails the bench);
//!
//! then `openshell sandbox exec NAME -- /bin/true` into an idle sandbox, through the
//! gateway's local socket and, in the same rounds, as a remote client over gRPC with
//! mutual TLS (the gateway also listens on a loopback port with the TLS files
//! `gateway init` made; each exec is a new client process, so its TLS handshake is
//! counted), and the resident memory per idle sandbox: its supervisor's VmRSS plus
//! the gateway's divided by the number of sandboxes (also as PSS, which splits the
//! pages the supervisors share); then the first create again `--iterations` times
//! back to back (each as soon as the previous one exited, which the standby pool
//! has to keep up with), twice: the first burst is the pool's first sight of that
//! rate (it grows on misses), the second comes after a pause of [`REFILL_PAUSE`],
//! with the pool sized by the first. Medians and p90s go to a table and to `bench-sandbox.json` in the target directory.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::command::{CommandError, capture};
use crate::{cargo, root, run, target_dir};

/// Why the sandbox bench could not run or measure.
#[derive(Debug, thiserror::Error)]
pub enum SandboxBenchError {
    #[error("bench sandbox: {0} (try --help)")]
    Usage(String),
    #[error("bench sandbox needs {needs}; install with `apt-get install {packages}`")]
    Missing { needs: String, packages: String },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("runc spec {}: {source}", path.display())]
    Spec {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("{what} is not in {place}")]
    NotFound { what: &'static str, place: String },
    #[error("sandbox {name} is not running: {info}")]
    NotRunning { name: String, info: String },
    #[error("gateway run --listen {listen} did not listen: {log}")]
    NotListening { listen: String, log: String },
    #[error("not measured: {0}")]
    NotMeasured(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxBenchError + '_ {
    move |source| SandboxBenchError::Io { path: path.to_owned(), source }
}

/// A command of the bench's, timed (at most [`RUN_TIMEOUT`]).
pub(crate) fn time_once(cmd: Command, errors: &Path) -> Result<Duration, CommandError> {
    crate::command::time_once(cmd, errors, RUN_TIMEOUT)
}

/// The image's name (its tag is whatever `openshell build` gives it).
const IMAGE: &str = "openshell/bench";
/// Debian's busybox-static installs it here.
const BUSYBOX: &str = "/bin/busybox";
/// Longest a single timed command may take before the bench gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

struct Options {
    iterations: usize,
    warmup: usize,
    idle: usize,
}

const USAGE: &str = "usage: cargo xtask bench sandbox [--iterations N (30)] [--warmup N (2)] [--idle N (5)]";

/// The options, or `None` for --help.
fn parse_options(args: &[String]) -> Result<Option<Options>, SandboxBenchError> {
    let usage = SandboxBenchError::Usage;
    let mut options = Options { iterations: 30, warmup: 2, idle: 5 };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let slot = match flag {
            "-n" | "--iterations" => &mut options.iterations,
            "--warmup" => &mut options.warmup,
            "--idle" => &mut options.idle,
            "-h" | "--help" => return Ok(None),
            other => return Err(usage(format!("unknown option `{other}`"))),
        };
        let value = inline.or_else(|| args.next().cloned()).ok_or_else(|| usage(format!("{flag} needs a number")))?;
        *slot = value.parse().map_err(|_| usage(format!("{flag} `{value}`: not a number")))?;
    }
    if options.iterations == 0 || options.idle == 0 {
        return Err(usage("--iterations and --idle must be at least 1".into()));
    }
    Ok(Some(options))
}

pub fn bench_sandbox(args: &[String]) -> Result<(), SandboxBenchError> {
    let Some(options) = parse_options(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    prerequisites()?;
    run(&cargo(), &["build", "--release", "--locked", "-p", "openshell-cli", "-p", "openshell-runtime"])?;
    let target = target_dir();
    let bin = target.join("release").join("openshell");
    let dir = target.join("bench-sandbox");
    let config = dir.join("config");
    let os = Openshell { bin: bin.clone(), gateway: dir.join("gateway"), config: config.clone(), standby: true };
    let cold = Openshell { bin, gateway: dir.join("gateway-cold"), config, standby: false };
    clean_previous(&[&os, &cold], &dir)?;
    let image = prepare_image(&os, &dir)?;
    let rootfs = prepare_bundle(&dir, &image)?;
    let report = measure(&os, &cold, &dir, &image, &rootfs, &options)?;
    println!("{}", report.table());
    let json_path = target.join("bench-sandbox.json");
    std::fs::write(&json_path, report.json()).map_err(io(&json_path))?;
    eprintln!("xtask: wrote {}", json_path.display());
    let mut failed: Vec<&str> = report
        .subjects
        .iter()
        .chain([&report.first_burst, &report.back_to_back, &report.exec, &report.exec_remote])
        .filter(|s| s.required && s.skipped.is_some())
        .map(|s| s.label)
        .collect();
    if report.memory.is_err() {
        failed.push("RSS per sandbox");
    }
    if failed.is_empty() { Ok(()) } else { Err(SandboxBenchError::NotMeasured(failed.join(", "))) }
}

// ---- prerequisites -------------------------------------------------------------------

fn in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Whether a 64-bit ELF executable names a program interpreter (is dynamically
/// linked); `None` for what is not one (read with `object`).
fn elf_has_interpreter(bytes: &[u8]) -> Option<bool> {
    use object::read::elf::{ElfFile64, ProgramHeader as _};
    let elf = ElfFile64::<object::Endianness>::parse(bytes).ok()?;
    let endian = elf.endian();
    Some(elf.elf_program_headers().iter().any(|ph| ph.p_type(endian) == object::elf::PT_INTERP))
}

fn prerequisites() -> Result<(), SandboxBenchError> {
    // (what is missing, the Debian package that has it)
    let mut missing: Vec<(String, &str)> = Vec::new();
    match std::fs::read(BUSYBOX) {
        Err(e) => missing.push((format!("{BUSYBOX} ({e})"), "busybox-static")),
        Ok(bytes) => match elf_has_interpreter(&bytes) {
            Some(false) => {}
            Some(true) => {
                missing.push((format!("a static {BUSYBOX} (this one is dynamically linked)"), "busybox-static"))
            }
            None => missing.push((format!("{BUSYBOX} as a 64-bit ELF executable"), "busybox-static")),
        },
    }
    for (tool, package) in [("runc", "runc"), ("bwrap", "bubblewrap"), ("umoci", "umoci")] {
        if in_path(tool).is_none() {
            missing.push((format!("`{tool}` on PATH"), package));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = missing.iter().map(|(what, package)| format!("{what}: Debian package {package}")).collect();
    let packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    Err(SandboxBenchError::Missing { needs: what.join("; "), packages: packages.join(" ") })
}

// ---- commands ------------------------------------------------------------------------

/// The release `openshell` with the bench's gateway directory.
#[derive(Clone)]
pub(crate) struct Openshell {
    pub bin: PathBuf,
    pub gateway: PathBuf,
    /// The client's gateways file lives here (`XDG_CONFIG_HOME`), not the user's.
    pub config: PathBuf,
    /// Whether the gateway (started by the first command) keeps a standby sandbox.
    pub standby: bool,
}

impl Openshell {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("OPENSHELL_GATEWAY_DIR", &self.gateway)
            .env("XDG_CONFIG_HOME", &self.config)
            .env_remove("OPENSHELL_GATEWAY")
            .current_dir(root());
        if !self.standby {
            c.env("OPENSHELL_STANDBY", "0");
        }
        c
    }

    pub fn output(&self, args: &[&str]) -> Result<String, CommandError> {
        capture(&mut self.cmd(args))
    }
}

// ---- set-up --------------------------------------------------------------------------

/// Names of the sandboxes a gateway knows (from `sandbox list`).
fn sandbox_names(os: &Openshell) -> Result<Vec<String>, CommandError> {
    let list = os.output(&["sandbox", "list"])?;
    Ok(list.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
}

/// Removes what an interrupted earlier run left: its sandboxes (their overlays are
/// mounted under the gateway directory), its gateway, then the directory.
fn clean_previous(gateways: &[&Openshell], dir: &Path) -> Result<(), SandboxBenchError> {
    for os in gateways {
        if os.gateway.join("state.db").exists() {
            for name in sandbox_names(os).unwrap_or_default() {
                let _ = os.output(&["sandbox", "delete", &name]);
            }
            let _ = os.output(&["gateway", "stop"]);
            wait_for_standby_cleanup(os);
        }
    }
    if dir.exists() {
        // The previous run's.
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))
}

/// A stopped gateway's standby sandbox is removed by its supervisor: wait for it
/// (its overlay is mounted until then).
fn wait_for_standby_cleanup(os: &Openshell) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(os.gateway.join("sandboxes")).map(|d| d.count() > 0).unwrap_or(false)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

const DEFINITION: &str = "\
# cargo xtask bench sandbox: busybox-static alone (it dispatches on argv[0]).
name: openshell/bench
files:
  - path: /bin/busybox
    source: /bin/busybox
    mode: \"0755\"
  - path: /bin/true
    source: /bin/busybox
    mode: \"0755\"
  - path: /bin/sh
    source: /bin/busybox
    mode: \"0755\"
user: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }
workdir: /sandbox
env:
  PATH: /bin
cmd: [/bin/sh]
";

/// The built image.
pub(crate) struct Image {
    /// Its reference in the store (`name:tag`).
    pub reference: String,
    /// Its tag (also in the OCI layout).
    tag: String,
    oci_dir: PathBuf,
    pub archive: PathBuf,
}

pub(crate) fn prepare_image(os: &Openshell, dir: &Path) -> Result<Image, SandboxBenchError> {
    let def_dir = dir.join("image");
    std::fs::create_dir_all(&def_dir).map_err(io(&def_dir))?;
    let def = def_dir.join("image.yaml");
    std::fs::write(&def, DEFINITION).map_err(io(&def))?;
    let store = dir.join("store");
    let lock = def_dir.join("lockfiles/image.lock");
    let oci_dir = dir.join("oci");
    let archive = dir.join("image.tar");
    let s = |p: &Path| p.display().to_string();
    os.output(&["lock", &s(&def), "--store", &s(&store), "--lockfile", &s(&lock)])?;
    os.output(&["build", &s(&lock), "--store", &s(&store), "-o", &s(&oci_dir), "--archive", &s(&archive)])?;
    // The tag `openshell build` gave it: umoci lists the layout's tags.
    let tags = capture(Command::new("umoci").args(["ls", "--layout", &s(&oci_dir)]))?;
    let tag = tags.lines().map(str::trim).find(|t| !t.is_empty());
    let tag = tag.ok_or(SandboxBenchError::NotFound { what: "a tag", place: "the OCI layout (umoci ls)".into() })?;
    Ok(Image { reference: format!("{IMAGE}:{tag}"), tag: tag.to_owned(), oci_dir, archive })
}

/// An OCI bundle of the image's layers with `runc spec`'s defaults running
/// `/bin/true` without a terminal; returns its rootfs.
fn prepare_bundle(dir: &Path, image: &Image) -> Result<PathBuf, SandboxBenchError> {
    let (oci, tag) = (image.oci_dir.display().to_string(), &image.tag);
    let bundle = dir.join("bundle");
    let b = bundle.display().to_string();
    capture(Command::new("umoci").args(["unpack", "--image", &format!("{oci}:{tag}"), &b]))?;
    // runc's defaults, not umoci's config from the image.
    let config = bundle.join("config.json");
    std::fs::remove_file(&config).map_err(io(&config))?;
    capture(Command::new("runc").args(["spec", "--bundle", &b]))?;
    run_true(&config)?;
    let rootfs = bundle.join("rootfs");
    if !rootfs.join("bin/true").is_file() {
        return Err(SandboxBenchError::NotFound {
            what: "bin/true",
            place: format!("{} (umoci unpack)", rootfs.display()),
        });
    }
    Ok(rootfs)
}

/// Makes the `runc spec` config at `path` run `/bin/true` without a terminal.
fn run_true(path: &Path) -> Result<(), SandboxBenchError> {
    let spec_error = |source| SandboxBenchError::Spec { path: path.to_owned(), source };
    let mut spec = oci_spec::runtime::Spec::load(path).map_err(spec_error)?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_terminal(Some(false)).set_args(Some(vec!["/bin/true".to_owned()]));
    spec.set_process(Some(process));
    spec.save(path).map_err(spec_error)
}

// ---- measuring -----------------------------------------------------------------------

/// One timed subject.
struct Subject {
    key: &'static str,
    label: &'static str,
    /// Whether the bench fails when it cannot be measured.
    required: bool,
    samples: Vec<Duration>,
    /// Why it was not measured.
    skipped: Option<String>,
}

impl Subject {
    fn new(key: &'static str, label: &'static str, required: bool) -> Subject {
        Subject { key, label, required, samples: Vec::new(), skipped: None }
    }
}

/// Resident memory of the sandboxes kept idle.
struct Memory {
    sandboxes: usize,
    /// Standby sandboxes the gateway held (their supervisors count as the gateway's).
    standbys: usize,
    /// Each supervisor's VmRSS, KiB.
    supervisors_kib: Vec<u64>,
    gateway_kib: u64,
    /// The same as PSS (shared pages divided among their sharers), KiB, when readable.
    supervisors_pss_kib: Vec<u64>,
    gateway_pss_kib: Option<u64>,
    /// Each sandbox's process 1 (inside the sandbox, not counted), KiB.
    inits_kib: Vec<u64>,
}

impl Memory {
    fn supervisor_mean_kib(&self) -> f64 {
        self.supervisors_kib.iter().sum::<u64>() as f64 / self.supervisors_kib.len().max(1) as f64
    }
    /// The idle sandboxes and the standby ones: the gateway's memory is shared by all.
    fn all_sandboxes(&self) -> usize {
        (self.sandboxes + self.standbys).max(1)
    }
    fn gateway_share_kib(&self) -> f64 {
        self.gateway_kib as f64 / self.all_sandboxes() as f64
    }
    fn per_sandbox_kib(&self) -> f64 {
        self.supervisor_mean_kib() + self.gateway_share_kib()
    }
    /// The same sum in PSS, when every process's was readable.
    fn per_sandbox_pss_kib(&self) -> Option<f64> {
        if self.supervisors_pss_kib.len() != self.supervisors_kib.len() || self.supervisors_pss_kib.is_empty() {
            return None;
        }
        let mean = self.supervisors_pss_kib.iter().sum::<u64>() as f64 / self.supervisors_pss_kib.len() as f64;
        Some(mean + self.gateway_pss_kib? as f64 / self.all_sandboxes() as f64)
    }
}

struct Report {
    iterations: usize,
    warmup: usize,
    image: String,
    subjects: Vec<Subject>,
    /// `iterations` creates with standby in a row, none interleaved.
    /// The same, the pool's first burst at that rate.
    first_burst: Subject,
    back_to_back: Subject,
    exec: Subject,
    /// The same exec as a remote client (gRPC, mutual TLS, loopback).
    exec_remote: Subject,
    memory: Result<Memory, SandboxBenchError>,
}

/// Stops the gateway, deleting the sandboxes it was given, when dropped.
struct Gateway {
    os: Openshell,
    sandboxes: Vec<String>,
    docker_image: Option<String>,
    /// `gateway run --listen`, when the bench started it.
    process: Option<std::process::Child>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for name in self.sandboxes.drain(..) {
            if let Err(e) = self.os.output(&["sandbox", "delete", &name]) {
                eprintln!("xtask: {e}");
            }
        }
        if let Err(e) = self.os.output(&["gateway", "stop"]) {
            eprintln!("xtask: {e}");
        }
        if let Some(mut process) = self.process.take() {
            let _ = process.wait();
        }
        wait_for_standby_cleanup(&self.os);
        if let Some(image) = self.docker_image.take() {
            let _ = capture(Command::new("docker").args(["rmi", &image]));
        }
    }
}

/// `docker info` then `docker load`; the loaded image's reference, or why not.
fn docker_image(image: &Image) -> Result<String, SandboxBenchError> {
    if in_path("docker").is_none() {
        let (needs, packages) = ("`docker` on PATH".to_owned(), "docker.io".to_owned());
        return Err(SandboxBenchError::Missing { needs, packages });
    }
    capture(Command::new("docker").arg("info"))?;
    let loaded = capture(Command::new("docker").args(["load", "-i", &image.archive.display().to_string()]))?;
    loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image ID: ")))
        .map(|r| r.trim().to_owned())
        .ok_or_else(|| SandboxBenchError::NotFound {
            what: "`Loaded image`",
            place: format!("docker load's output: {}", loaded.trim()),
        })
}

fn measure(
    os: &Openshell,
    cold: &Openshell,
    dir: &Path,
    image: &Image,
    rootfs: &Path,
    options: &Options,
) -> Result<Report, SandboxBenchError> {
    let store = dir.join("store").display().to_string();
    let rootfs = rootfs.display().to_string();
    let bundle = dir.join("bundle").display().to_string();
    let errors = dir.join("stderr.log");
    // The gateway, started once before any timing.
    let mut gateway = Gateway { os: os.clone(), sandboxes: Vec::new(), docker_image: None, process: None };
    gateway.process = Some(start_listening(os, dir)?);
    os.output(&["gateway", "status"])?;
    let _cold_gateway = Gateway { os: cold.clone(), sandboxes: Vec::new(), docker_image: None, process: None };
    cold.output(&["gateway", "status"])?;
    let docker = docker_image(image);
    if let Ok(reference) = &docker {
        gateway.docker_image = Some(reference.clone());
    }
    eprintln!("xtask: OCI layout {}, bundle {bundle}", image.oci_dir.display());

    let mut subjects = vec![
        Subject::new("openshell_create", "openshell create→exit", true),
        Subject::new("openshell_create_cold", "  without standby", true),
        Subject::new("runc_run", "runc run", true),
        Subject::new("bwrap", "bwrap", true),
        Subject::new("docker_run", "docker run", false),
    ];
    if let Err(reason) = &docker {
        subjects[4].skipped = Some(reason.to_string());
    }
    let reference = image.reference.as_str();
    let command = |key: &str, round: usize| -> Command {
        match key {
            "openshell_create" => {
                os.cmd(&["sandbox", "create", "--rm", "--image", reference, "--store", &store, "--", "/bin/true"])
            }
            "openshell_create_cold" => {
                cold.cmd(&["sandbox", "create", "--rm", "--image", reference, "--store", &store, "--", "/bin/true"])
            }
            "runc_run" => {
                let mut c = Command::new("runc");
                c.args(["run", "--bundle", &bundle, &format!("openshell-bench-{}-{round}", std::process::id())]);
                c
            }
            "bwrap" => {
                let mut c = Command::new("bwrap");
                c.args(["--unshare-all", "--ro-bind", &rootfs, "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]);
                c
            }
            _ => {
                let mut c = Command::new("docker");
                let docker_ref = docker.as_deref().unwrap_or(reference);
                c.args(["run", "--rm", "--network", "none", docker_ref, "/bin/true"]);
                c
            }
        }
    };
    let rounds = options.warmup + options.iterations;
    eprintln!(
        "xtask: timing {} rounds ({} warm-up) of: {}",
        rounds,
        options.warmup,
        subjects.iter().filter(|s| s.skipped.is_none()).map(|s| s.label).collect::<Vec<_>>().join(", ")
    );
    for round in 0..rounds {
        for subject in subjects.iter_mut().filter(|s| s.skipped.is_none()) {
            std::thread::sleep(SETTLE);
            match time_once(command(subject.key, round), &errors) {
                Ok(t) if round >= options.warmup => subject.samples.push(t),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("xtask: {}: {e}", subject.label);
                    subject.skipped = Some(e.to_string());
                }
            }
        }
    }

    // exec into one idle sandbox, then the memory of `idle` idle sandboxes.
    let mut exec = Subject::new("openshell_exec", "openshell exec", true);
    let mut exec_remote = Subject::new("openshell_exec_remote", "  remote (gRPC, mTLS)", true);
    let create_idle =
        |name: &str| os.output(&["sandbox", "create", "-d", "--name", name, "--image", reference, "--store", &store]);
    // Named for deletion first: a failed create may still leave a sandbox behind.
    gateway.sandboxes.push("bench-exec".into());
    create_idle("bench-exec")?;
    for round in 0..rounds {
        for (subject, remote) in [(&mut exec, false), (&mut exec_remote, true)] {
            if subject.skipped.is_some() {
                continue;
            }
            let mut cmd = os.cmd(&["sandbox", "exec", "bench-exec", "--", "/bin/true"]);
            if remote {
                cmd.env("OPENSHELL_GATEWAY", REMOTE);
            }
            match time_once(cmd, &errors) {
                Ok(t) if round >= options.warmup => subject.samples.push(t),
                Ok(_) => {}
                Err(e) => subject.skipped = Some(e.to_string()),
            }
        }
    }
    let mut names = vec!["bench-exec".to_owned()];
    for i in 1..options.idle {
        let name = format!("bench-idle-{i}");
        gateway.sandboxes.push(name.clone());
        create_idle(&name)?;
        names.push(name);
    }
    // Let them settle before reading their memory.
    std::thread::sleep(Duration::from_millis(500));
    let memory = memory(os, &names);
    // Then creates issued back to back, each as soon as the previous one exited: the
    // standby pool has to keep up with that rate. It learns it from the first
    // burst and has refilled by the second.
    let burst = |key, label| {
        let mut subject = Subject::new(key, label, true);
        for _ in 0..options.iterations {
            match time_once(command("openshell_create", 0), &errors) {
                Ok(t) => subject.samples.push(t),
                Err(e) => {
                    subject.skipped = Some(e.to_string());
                    break;
                }
            }
        }
        subject
    };
    let first_burst = burst("openshell_create_first_burst", "  back to back, 1st burst");
    std::thread::sleep(REFILL_PAUSE);
    let back_to_back = burst("openshell_create_back_to_back", "  back to back, 2nd burst");

    drop(gateway);
    Ok(Report {
        iterations: options.iterations,
        warmup: options.warmup,
        image: image.reference.clone(),
        subjects,
        first_burst,
        back_to_back,
        exec,
        exec_remote,
        memory,
    })
}

/// Before each timed command of the interleaved rounds: the standby pool's refill
/// after a create takes about 50 ms of wall time, the cold gateway's spare disk
/// image and helper about 20 ms. Without the pause either ran into the next
/// subject's time: in one run a cold create (right after a standby one) took
/// 37.8 ms against runc's 25.1 (right after the cold create), with it 27.4 ms
/// against 28.3 (every subject is a little slower after a pause).
const SETTLE: Duration = Duration::from_millis(250);

/// Between the two bursts of back-to-back creates: time for the pool to make the
/// standbys the first burst asked for (about 50 ms of wall time each, one at a time).
const REFILL_PAUSE: Duration = Duration::from_secs(3);

/// The name the bench's client gives its own gateway reached over TCP.
const REMOTE: &str = "bench-remote";

/// Makes the gateway's TLS files, starts it listening on a free loopback port
/// as well as on its socket, and adds it to the bench's client as [`REMOTE`].
fn start_listening(os: &Openshell, dir: &Path) -> Result<std::process::Child, SandboxBenchError> {
    os.output(&["gateway", "init"])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io(Path::new("a free loopback port (127.0.0.1:0)")))?
        .port();
    let log = dir.join("gateway-run.log");
    let stderr = File::create(&log).map_err(io(&log))?;
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = os.cmd(&["gateway", "run", "--listen", &listen]);
    let command = crate::command::show(&cmd);
    let spawned = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn();
    let mut child = spawned.map_err(|source| CommandError::Spawn { command, source })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(SandboxBenchError::NotListening { listen, log: said });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let tls = os.gateway.join("tls");
    let path = |p: PathBuf| p.display().to_string();
    let (ca, cert, key) =
        (path(tls.join("ca.pem")), path(tls.join("clients/admin.pem")), path(tls.join("clients/admin-key.pem")));
    let url = format!("https://localhost:{port}");
    os.output(&["gateway", "add", REMOTE, &url, "--ca", &ca, "--cert", &cert, "--key", &key])?;
    Ok(child)
}

/// VmRSS of a process, KiB.
fn rss_kib(pid: u32) -> Result<u64, SandboxBenchError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(&path).map_err(io(&path))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| SandboxBenchError::NotFound { what: "VmRSS", place: path.display().to_string() })
}

/// `field:   value` of `openshell sandbox get` / `gateway status` output.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// PSS of a process (its resident pages, shared ones divided among their sharers), KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The gateway's own helper processes (`gateway helper` children of the gateway)
/// other than `supervisors`: the spare one waiting for a job, and the supervisor
/// of its standby sandbox.
fn gateway_helpers(gateway: u32, supervisors: &[u32]) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(gateway) && cmdline.ends_with(b"gateway\0helper\0") && !supervisors.contains(pid)
        })
        .collect()
}

/// The supervisor of the sandbox whose directory is `dir`, as it records itself in
/// `supervisor.pid` (pid and start time).
fn supervisor_pid(dir: &Path) -> Option<u32> {
    let record = std::fs::read_to_string(dir.join("supervisor.pid")).ok()?;
    record.split_whitespace().next()?.parse().ok()
}

fn memory(os: &Openshell, names: &[String]) -> Result<Memory, SandboxBenchError> {
    let status = os.output(&["gateway", "status"])?;
    let gateway_pid: u32 = field(&status, "gateway")
        .and_then(|v| v.split("pid ").nth(1))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| SandboxBenchError::NotFound {
            what: "the gateway's pid",
            place: format!("gateway status: {status:?}"),
        })?;
    let mut memory = Memory {
        sandboxes: names.len(),
        standbys: 0,
        supervisors_kib: Vec::new(),
        gateway_kib: rss_kib(gateway_pid)?,
        supervisors_pss_kib: Vec::new(),
        gateway_pss_kib: pss_kib(gateway_pid),
        inits_kib: Vec::new(),
    };
    let mut supervisors = Vec::new();
    for name in names {
        let info = os.output(&["sandbox", "get", name])?;
        let id = field(&info, "id").ok_or_else(|| SandboxBenchError::NotFound {
            what: "an id",
            place: format!("sandbox get {name}: {info}"),
        })?;
        if field(&info, "status") != Some("running") {
            return Err(SandboxBenchError::NotRunning { name: name.clone(), info });
        }
        let dir = os.gateway.join("sandboxes").join(id);
        let place = || format!("{}/supervisor.pid", dir.display());
        let pid =
            supervisor_pid(&dir).ok_or_else(|| SandboxBenchError::NotFound { what: "a supervisor", place: place() })?;
        supervisors.push(pid);
        memory.supervisors_kib.push(rss_kib(pid)?);
        memory.supervisors_pss_kib.extend(pss_kib(pid));
        if let Some(init) = field(&info, "pid").and_then(|p| p.parse().ok()) {
            memory.inits_kib.push(rss_kib(init)?);
        }
    }
    // The gateway keeps a spare helper and standby sandboxes' supervisors: they
    // count as the gateway's, and the standbys as sandboxes sharing it.
    let helpers = gateway_helpers(gateway_pid, &supervisors);
    let sandboxes = os.gateway.join("sandboxes");
    let dirs = std::fs::read_dir(&sandboxes).map_err(io(&sandboxes))?;
    memory.standbys = dirs.flatten().filter_map(|d| supervisor_pid(&d.path())).filter(|p| helpers.contains(p)).count();
    for pid in helpers {
        memory.gateway_kib += rss_kib(pid)?;
        memory.gateway_pss_kib = memory.gateway_pss_kib.zip(pss_kib(pid)).map(|(a, b)| a + b);
    }
    Ok(memory)
}

// ---- statistics and output -----------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median (the mean of the middle two of an even count).
pub(crate) fn median(samples: &[Duration]) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().map(ms).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The 90th percentile, nearest rank.
pub(crate) fn p90(samples: &[Duration]) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().map(ms).collect();
    v.sort_by(f64::total_cmp);
    let rank = (v.len() * 9).div_ceil(10);
    v.get(rank.checked_sub(1)?).copied()
}

/// A figure for the JSON report: three decimals, `null` when not finite.
fn json_num(x: Option<f64>) -> Value {
    x.filter(|x| x.is_finite()).map_or(Value::Null, |x| json!((x * 1e3).round() / 1e3))
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

impl Report {
    fn openshell_median(&self) -> Option<f64> {
        self.subjects.first().and_then(|s| median(&s.samples))
    }

    /// openshell's median over this subject's (for the peers).
    fn ratio(&self, subject: &Subject) -> Option<f64> {
        if subject.key == "openshell_exec_remote" {
            // Its peer: the same exec through the local socket.
            return Some(median(&subject.samples)? / median(&self.exec.samples)?);
        }
        if matches!(subject.key, "openshell_create_back_to_back" | "openshell_create_first_burst") {
            // Its peer: runc run, as for the interleaved creates.
            let runc = self.subjects.iter().find(|s| s.key == "runc_run")?;
            return Some(median(&subject.samples)? / median(&runc.samples)?);
        }
        if !matches!(subject.key, "runc_run" | "bwrap" | "docker_run") {
            return None;
        }
        Some(self.openshell_median()? / median(&subject.samples)?)
    }

    /// The same without standby sandboxes (every create a cold start).
    fn cold_ratio(&self, subject: &Subject) -> Option<f64> {
        if !matches!(subject.key, "runc_run" | "bwrap" | "docker_run") {
            return None;
        }
        let cold = self.subjects.iter().find(|s| s.key == "openshell_create_cold")?;
        Some(median(&cold.samples)? / median(&subject.samples)?)
    }

    fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nsandbox bench: {} iterations (+{} warm-up, interleaved; then {} creates back to back, twice), image {}, default policy",
            self.iterations, self.warmup, self.iterations, self.image
        );
        let _ = writeln!(
            t,
            "{:<24} {:>10} {:>10} {:>15} {:>22}",
            "", "median", "p90", "openshell/peer", "without standby/peer"
        );
        for s in self.subjects.iter().chain([&self.first_burst, &self.back_to_back, &self.exec, &self.exec_remote]) {
            match (&s.skipped, median(&s.samples), p90(&s.samples)) {
                (None, Some(m), Some(p)) => {
                    let ratio = self.ratio(s).map(|r| format!("{r:.2}×")).unwrap_or_default();
                    let cold = self.cold_ratio(s).map(|r| format!("{r:.2}×")).unwrap_or_default();
                    let _ = writeln!(t, "{:<24} {:>7.2} ms {:>7.2} ms {:>15} {:>22}", s.label, m, p, ratio, cold);
                }
                (Some(reason), _, _) => {
                    let reason = reason.lines().next().unwrap_or_default();
                    let _ = writeln!(t, "{:<24} not measured: {reason}", s.label);
                }
                _ => {
                    let _ = writeln!(t, "{:<24} no samples", s.label);
                }
            }
        }
        let _ = writeln!(
            t,
            "{:<24} (remote exec: openshell/peer is its time over the same exec's through the local socket)",
            ""
        );
        match &self.memory {
            Ok(m) => {
                let _ = writeln!(
                    t,
                    "{:<24} {:>10}    = supervisor {} + (gateway, its spare helper and {} standby supervisors) {} / ({} idle + {} standby sandboxes) (VmRSS)",
                    "RSS per sandbox",
                    mib(m.per_sandbox_kib()),
                    mib(m.supervisor_mean_kib()),
                    m.standbys,
                    mib(m.gateway_kib as f64),
                    m.sandboxes,
                    m.standbys,
                );
                let pss = m.per_sandbox_pss_kib().map(mib).unwrap_or_else(|| "unreadable".into());
                let init = m.inits_kib.iter().sum::<u64>() as f64 / m.inits_kib.len().max(1) as f64;
                let _ = writeln!(
                    t,
                    "{:<24} {:>10}    (the same in PSS; not counted: each sandbox's own process 1, {} VmRSS)",
                    "",
                    pss,
                    mib(init),
                );
            }
            Err(e) => {
                let _ = writeln!(t, "{:<24} not measured: {e}", "RSS per idle sandbox");
            }
        }
        t
    }

    /// One subject's figures, or why it was not measured.
    fn subject_json(&self, s: &Subject) -> Value {
        match &s.skipped {
            Some(reason) => json!({"label": s.label, "measured": false, "reason": reason}),
            None => json!({
                "label": s.label,
                "measured": true,
                "median_ms": json_num(median(&s.samples)),
                "p90_ms": json_num(p90(&s.samples)),
                "openshell_over_peer": json_num(self.ratio(s)),
                "openshell_without_standby_over_peer": json_num(self.cold_ratio(s)),
                "samples_ms": s.samples.iter().map(|d| json_num(Some(ms(*d)))).collect::<Vec<_>>(),
            }),
        }
    }

    fn json(&self) -> String {
        let all = self.subjects.iter().chain([&self.first_burst, &self.back_to_back, &self.exec, &self.exec_remote]);
        let results: serde_json::Map<String, Value> = all.map(|s| (s.key.to_owned(), self.subject_json(s))).collect();
        let rss = match &self.memory {
            Ok(m) => json!({
                "measured": true,
                "sandboxes": m.sandboxes,
                "standbys": m.standbys,
                "per_sandbox_kib": json_num(Some(m.per_sandbox_kib())),
                "supervisor_mean_kib": json_num(Some(m.supervisor_mean_kib())),
                "gateway_kib": m.gateway_kib,
                "gateway_share_kib": json_num(Some(m.gateway_share_kib())),
                "supervisors_kib": m.supervisors_kib,
                "per_sandbox_pss_kib": json_num(m.per_sandbox_pss_kib()),
                "supervisors_pss_kib": m.supervisors_pss_kib,
                "gateway_pss_kib": m.gateway_pss_kib,
                "sandbox_init_kib": m.inits_kib,
            }),
            Err(e) => json!({"measured": false, "reason": e.to_string()}),
        };
        let report = json!({
            "iterations": self.iterations,
            "warmup": self.warmup,
            "image": self.image,
            "results": results,
            "rss": rss,
        });
        format!("{report:#}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(ms: &[u64]) -> Vec<Duration> {
        ms.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn median_and_p90() {
        assert_eq!(median(&ds(&[3, 1, 2])), Some(2.0));
        assert_eq!(median(&ds(&[4, 1, 3, 2])), Some(2.5));
        assert_eq!(median(&[]), None);
        let ten = ds(&[10, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(p90(&ten), Some(9.0));
        assert_eq!(p90(&ds(&[5])), Some(5.0));
        assert_eq!(p90(&[]), None);
    }

    #[test]
    fn runc_spec_runs_true_without_terminal() {
        let path = std::env::temp_dir().join(format!("xtask-runc-spec-{}.json", std::process::id()));
        // As `runc spec` writes it: `sh` with a terminal.
        let mut spec = oci_spec::runtime::Spec::default();
        let mut process = spec.process().clone().expect("process");
        process.set_terminal(Some(true));
        spec.set_process(Some(process));
        spec.save(&path).expect("save");
        run_true(&path).expect("edit");
        let process = oci_spec::runtime::Spec::load(&path).expect("load").process().clone().expect("process");
        let _ = std::fs::remove_file(&path);
        assert_eq!(process.terminal(), Some(false));
        assert_eq!(process.args(), &Some(vec!["/bin/true".to_owned()]));
        assert_eq!(process.cwd(), &PathBuf::from("/"), "the rest is kept");
    }

    #[test]
    fn options() {
        let args: Vec<String> = ["-n", "7", "--idle=3"].iter().map(|s| s.to_string()).collect();
        let o = parse_options(&args).expect("options").expect("not --help");
        assert_eq!((o.iterations, o.warmup, o.idle), (7, 2, 3));
        assert!(parse_options(&["--iterations".to_string(), "x".to_string()]).is_err());
    }

    #[test]
    fn static_elf() {
        // An ELF64 header with one PT_LOAD program header, then with PT_INTERP.
        let mut elf = vec![0u8; 64 + 56];
        elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[52..54].copy_from_slice(&64u16.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(elf_has_interpreter(&elf), Some(false));
        elf[64..68].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(elf_has_interpreter(&elf), Some(true));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh"), None);
        // This test binary is linked against libc dynamically.
        let own = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        assert_eq!(elf_has_interpreter(&own), Some(true));
    }

    #[test]
    fn the_json_report_has_each_subjects_figures_or_why_not() {
        let timed = |key, ms: &[u64]| Subject { samples: ds(ms), ..Subject::new(key, key, true) };
        let mut docker = Subject::new("docker_run", "docker run", false);
        docker.skipped = Some("`docker info` failed".into());
        let report = Report {
            iterations: 3,
            warmup: 1,
            image: "openshell/bench:x".into(),
            subjects: vec![
                timed("openshell_create", &[8, 8, 8]),
                timed("openshell_create_cold", &[30, 28, 29]),
                timed("runc_run", &[30, 30, 30]),
                docker,
            ],
            first_burst: timed("openshell_create_first_burst", &[9]),
            back_to_back: timed("openshell_create_back_to_back", &[10]),
            exec: timed("openshell_exec", &[10]),
            exec_remote: timed("openshell_exec_remote", &[13]),
            memory: Err(SandboxBenchError::NotMeasured("RSS".into())),
        };
        let json: Value = serde_json::from_str(&report.json()).expect("JSON");
        let runc = &json["results"]["runc_run"];
        assert_eq!((runc["median_ms"].as_f64(), runc["samples_ms"].as_array().map(Vec::len)), (Some(30.0), Some(3)));
        assert_eq!(runc["openshell_over_peer"].as_f64(), Some(8.0 / 30.0 * 1e3).map(|x: f64| x.round() / 1e3));
        assert_eq!(runc["openshell_without_standby_over_peer"].as_f64(), Some(0.967));
        assert_eq!(json["results"]["docker_run"]["reason"], "`docker info` failed");
        assert_eq!(json["rss"]["measured"], false);
        assert_eq!(json["image"], "openshell/bench:x");
    }

    #[test]
    fn figures_have_three_decimals_and_no_nan() {
        assert_eq!(json_num(Some(1.23456)), json!(1.235));
        assert_eq!(json_num(Some(f64::NAN)), Value::Null);
        assert_eq!(json_num(None), Value::Null);
    }
}
