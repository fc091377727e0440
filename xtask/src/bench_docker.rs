//! `cargo xtask bench docker-driver [--iterations N] [--warmup N]`: a sandbox
//! through the gateway's Docker driver against `docker run` on the same dockerd,
//! in one run.
//!
//! Set-up (hermetic): the busybox image of `bench sandbox`, a dockerd of the
//! bench's own (its own data root and socket, no bridge, no iptables) with
//! `openshell-runtime` registered as `openshell docker install` does, the image
//! loaded into it, and a gateway with `--driver docker` on it.
//!
//! Timed, interleaved round by round, each the whole command's wall time:
//! - `openshell sandbox create --rm -- /bin/true` through that gateway, under the
//!   default policy (its network helper, fence and proxy made for each run) and
//!   under a policy without network policies (loopback only);
//! - `docker run --rm --network none --runtime runc IMAGE /bin/true` (the peer) and
//!   the same with `--runtime openshell` (the runtime alone, no policy).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench_sandbox::{Openshell, SandboxBenchError, median, p90, prepare_image, time_once};
use crate::command::{CommandError, capture};
use crate::{cargo, run, target_dir};

/// Why the bench could not measure.
#[derive(Debug, thiserror::Error)]
pub enum DockerBenchError {
    #[error("bench docker-driver: {0}")]
    Usage(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not start: {log}")]
    NotStarted { what: &'static str, log: String },
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A set-up step shared with `bench sandbox`.
    #[error(transparent)]
    Setup(#[from] SandboxBenchError),
    #[error("{subject}: {source}")]
    Timed {
        subject: &'static str,
        #[source]
        source: CommandError,
    },
    #[error("policies/default.yaml has no `network_policies:` to cut")]
    NoNetworkPolicies,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DockerBenchError + '_ {
    move |source| DockerBenchError::Io { path: path.to_owned(), source }
}

const USAGE: &str = "usage: cargo xtask bench docker-driver [--iterations N (20)] [--warmup N (2)]";

/// A dockerd of the bench's own, stopped (with its containers) on drop.
struct Dockerd {
    dir: PathBuf,
    child: std::process::Child,
}

impl Dockerd {
    fn start(dir: &Path, runtime: &Path) -> Result<Dockerd, DockerBenchError> {
        let config = dir.join("daemon.json");
        let sandboxes = dir.join("sandboxes");
        let json = format!(
            r#"{{"runtimes": {{"openshell": {{"path": "{}", "runtimeArgs": ["--sandbox-dir", "{}"]}}}}}}"#,
            runtime.display(),
            sandboxes.display()
        );
        std::fs::write(&config, json).map_err(io(&config))?;
        let log_path = dir.join("dockerd.log");
        let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
        let log2 = log.try_clone().map_err(io(&log_path))?;
        let path = |p: &str| dir.join(p).display().to_string();
        let child = Command::new("dockerd")
            .args(["--config-file", &path("daemon.json"), "--data-root", &path("data"), "--exec-root", &path("x")])
            .args(["--pidfile", &path("docker.pid"), "-H", &format!("unix://{}", path("docker.sock"))])
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io(Path::new("dockerd (Debian package docker.io)")))?;
        let d = Dockerd { dir: dir.to_owned(), child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.docker(&["info"]).status().map(|s| !s.success()).unwrap_or(true) {
            if Instant::now() > deadline {
                let said = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
                return Err(DockerBenchError::NotStarted { what: "the bench's dockerd", log: said });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(d)
    }

    fn socket(&self) -> String {
        self.dir.join("docker.sock").display().to_string()
    }

    fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", format!("unix://{}", self.socket()))
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Our own child, by its pid.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}

fn parse(args: &[String]) -> Result<Option<(usize, usize)>, DockerBenchError> {
    let usage = DockerBenchError::Usage;
    let (mut iterations, mut warmup) = (20, 2);
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "-n" | "--iterations" => &mut iterations,
            "--warmup" => &mut warmup,
            "-h" | "--help" => return Ok(None),
            other => return Err(usage(format!("unknown option `{other}` (try --help)"))),
        };
        let value = args.next().ok_or_else(|| usage(format!("{flag} needs a number")))?;
        *slot = value.parse().map_err(|_| usage(format!("{flag} `{value}`: not a number")))?;
    }
    if iterations == 0 {
        return Err(usage("--iterations must be at least 1".into()));
    }
    Ok(Some((iterations, warmup)))
}

pub fn bench_docker(args: &[String]) -> Result<(), DockerBenchError> {
    let Some((iterations, warmup)) = parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    run(&cargo(), &["build", "--release", "--locked", "-p", "openshell-cli", "-p", "openshell-runtime"])?;
    let release = target_dir().join("release");
    // Short: dockerd's and containerd's sockets live under it.
    let dir = PathBuf::from(format!("/tmp/osbench-docker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let os = Openshell {
        bin: release.join("openshell"),
        gateway: dir.join("gateway"),
        config: dir.join("config"),
        standby: false,
    };
    let image = prepare_image(&os, &dir)?;
    let dockerd = Dockerd::start(&dir, &release.join("openshell-runtime"))?;
    capture(Command::new("docker").env("DOCKER_HOST", format!("unix://{}", dockerd.socket())).args([
        "load",
        "-i",
        &image.archive.display().to_string(),
    ]))?;
    let log_path = dir.join("gateway.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let store = dir.join("store").display().to_string();
    let mut gateway = os
        .cmd(&["gateway", "run", "--store", &store, "--driver", "docker", "--docker-socket", &dockerd.socket()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(io(&os.bin))?;
    let outcome = measure(&os, &dockerd, &dir, &image.reference, iterations, warmup);
    let _ = os.output(&["gateway", "stop"]);
    let _ = gateway.wait();
    drop(dockerd);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", outcome?);
    Ok(())
}

/// Makes one timed command.
type MakeCommand<'a> = Box<dyn Fn() -> Command + 'a>;

fn measure(
    os: &Openshell,
    dockerd: &Dockerd,
    dir: &Path,
    reference: &str,
    iterations: usize,
    warmup: usize,
) -> Result<String, DockerBenchError> {
    let store = dir.join("store").display().to_string();
    let no_network = dir.join("no-network.yaml");
    let default = std::fs::read_to_string(crate::root().join("policies/default.yaml"))
        .map_err(io(Path::new("policies/default.yaml")))?;
    let cut = default.find("\nnetwork_policies:").ok_or(DockerBenchError::NoNetworkPolicies)?;
    std::fs::write(&no_network, &default[..cut]).map_err(io(&no_network))?;
    let no_network = no_network.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while os.output(&["gateway", "status"]).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
            return Err(DockerBenchError::NotStarted { what: "the gateway with --driver docker", log });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let subjects: [(&str, MakeCommand<'_>); 4] = [
        (
            "openshell create→exit (docker driver)",
            Box::new(|| {
                os.cmd(&["sandbox", "create", "--rm", "--image", reference, "--store", &store, "--", "/bin/true"])
            }),
        ),
        (
            "  without network policies",
            Box::new(|| {
                os.cmd(&[
                    "sandbox",
                    "create",
                    "--rm",
                    "--image",
                    reference,
                    "--store",
                    &store,
                    "--policy",
                    &no_network,
                    "--",
                    "/bin/true",
                ])
            }),
        ),
        (
            "docker run --runtime runc",
            Box::new(|| {
                dockerd.docker(&["run", "--rm", "--network", "none", "--runtime", "runc", reference, "/bin/true"])
            }),
        ),
        (
            "docker run --runtime openshell",
            Box::new(|| {
                dockerd.docker(&["run", "--rm", "--network", "none", "--runtime", "openshell", reference, "/bin/true"])
            }),
        ),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); subjects.len()];
    let errors = dir.join("stderr.log");
    for round in 0..warmup + iterations {
        for (i, (label, command)) in subjects.iter().enumerate() {
            let t =
                time_once(command(), &errors).map_err(|source| DockerBenchError::Timed { subject: label, source })?;
            if round >= warmup {
                samples[i].push(t);
            }
        }
    }
    // At least one iteration (`parse` refuses 0): the runc peer has samples.
    let peer = median(&samples[2]).unwrap_or(f64::NAN);
    let mut table = format!(
        "\ndocker-driver bench: {iterations} iterations (+{warmup} warm-up, interleaved), image {reference}\n{:<40} {:>10} {:>10} {:>12}\n",
        "", "median", "p90", "/ runc peer"
    );
    for ((label, _), s) in subjects.iter().zip(&samples) {
        let (m, p) = (median(s).unwrap_or(0.0), p90(s).unwrap_or(0.0));
        table.push_str(&format!("{label:<40} {m:>7.2} ms {p:>7.2} ms {:>11.2}×\n", m / peer));
    }
    Ok(table)
}
