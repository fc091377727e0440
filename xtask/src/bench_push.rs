//! `cargo xtask bench push [--mb N] [--rounds N]`: `openshell push` and `openshell
//! pull` against `skopeo copy` of the same OCI layout, in the same run, each
//! measurement against a fresh Debian `docker-registry` on loopback (so nothing is
//! already there, and skopeo cannot mount blobs from an earlier copy).
//!
//! The image: four gzip-compressed tar layers of random data (N MiB in all, default
//! 512) made with tar, gzip -1 and sha256sum. Reported: the median wall time of each
//! tool, throughput, the ratio openshell/skopeo, and each one's peak RSS (VmHWM,
//! sampled). `openshell pull` also decompresses every layer to check its diff_id,
//! which `skopeo copy` to an OCI layout does not.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::command::{CommandError, capture, show};
use crate::{cargo, root};

/// What can stop the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench: {0}")]
    Usage(String),
    #[error("`{tool}` is missing: apt-get install {package}")]
    Missing { tool: &'static str, package: &'static str },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("`{command}` printed no digest")]
    NoDigest { command: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("docker-registry did not start listening in {}", dir.display())]
    Registry { dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io { path: path.to_owned(), source }
}

/// `cmd` could not be run or waited for.
fn spawn_err(cmd: &Command) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| CommandError::Spawn { command: show(cmd), source }.into()
}

struct Options {
    mb: usize,
    rounds: usize,
}

fn parse_options(args: &[String]) -> Result<Options, BenchError> {
    let mut opts = Options { mb: 512, rounds: 3 };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = |it: &mut std::slice::Iter<'_, String>| -> Result<usize, BenchError> {
            it.next().and_then(|v| v.parse().ok()).filter(|v| *v > 0).ok_or_else(|| {
                BenchError::Usage(format!("push: {a} needs a positive number (options: --mb N, --rounds N)"))
            })
        };
        match a.as_str() {
            "--mb" => opts.mb = value(&mut it)?,
            "--rounds" => opts.rounds = value(&mut it)?,
            other => {
                return Err(BenchError::Usage(format!("push: unknown option `{other}` (options: --mb N, --rounds N)")));
            }
        }
    }
    Ok(opts)
}

pub(crate) fn require(path: &'static str, package: &'static str) -> Result<(), BenchError> {
    let found = if path.starts_with('/') {
        Path::new(path).exists()
    } else {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(path).is_file()))
    };
    if found { Ok(()) } else { Err(BenchError::Missing { tool: path, package }) }
}

fn sha256_file(path: &Path) -> Result<String, BenchError> {
    let mut cmd = Command::new("sha256sum");
    let out = capture(cmd.arg(path))?;
    out.split_whitespace()
        .next()
        .map(|h| format!("sha256:{h}"))
        .ok_or_else(|| BenchError::NoDigest { command: show(&cmd) })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    std::fs::write(path, bytes).map_err(io_err(path))
}

fn rename(from: &Path, to: &Path) -> Result<(), BenchError> {
    std::fs::rename(from, to).map_err(io_err(to))
}

/// The OCI layout to push: `layers` gzip'd tars of random data.
fn make_layout(dir: &Path, mb: usize, layers: usize) -> Result<(), BenchError> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let work = dir.join("work");
    let (mut descs, mut diff_ids) = (Vec::new(), Vec::new());
    for i in 0..layers {
        let src = work.join(format!("l{i}"));
        std::fs::create_dir_all(&src).map_err(io_err(&src))?;
        let data = src.join("data");
        let file = std::fs::File::create(&data).map_err(io_err(&data))?;
        capture(Command::new("head").args(["-c", &format!("{}M", mb / layers), "/dev/urandom"]).stdout(file))?;
        let tar = work.join(format!("l{i}.tar"));
        capture(Command::new("tar").arg("-C").arg(&src).arg("-cf").arg(&tar).arg("data"))?;
        diff_ids.push(sha256_file(&tar)?);
        capture(Command::new("gzip").args(["-1", "-n"]).arg(&tar))?;
        let gz = work.join(format!("l{i}.tar.gz"));
        let digest = sha256_file(&gz)?;
        let size = std::fs::metadata(&gz).map_err(io_err(&gz))?.len();
        rename(&gz, &blobs.join(&digest[7..]))?;
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{digest}","size":{size}}}"#
        ));
    }
    let _ = std::fs::remove_dir_all(&work);
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    );
    let put = |bytes: &[u8]| -> Result<(String, usize), BenchError> {
        let tmp = dir.join("doc.tmp");
        write(&tmp, bytes)?;
        let d = sha256_file(&tmp)?;
        rename(&tmp, &blobs.join(&d[7..]))?;
        Ok((d, bytes.len()))
    };
    let (config_digest, config_size) = put(config.as_bytes())?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{}]}}"#,
        descs.join(",")
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes())?;
    write(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write(
        &dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"bench"}}}}]}}"#
        )
        .as_bytes(),
    )
}

/// A `docker-registry serve` on a free loopback port, in `dir`; killed on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Result<Registry, BenchError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(io_err(dir))?.port();
        let config = dir.join("config.yml");
        write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: bench\n",
                dir.join("data").display()
            )
            .as_bytes(),
        )?;
        let mut cmd = Command::new("/usr/bin/docker-registry");
        cmd.arg("serve").arg(&config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().map_err(spawn_err(&cmd))?;
        let mut reg = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if reg.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                return Err(BenchError::Registry { dir: dir.to_owned() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(reg)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wall time and peak RSS (KiB) of one command.
pub(crate) fn measure(cmd: &mut Command) -> Result<(Duration, u64), BenchError> {
    let start = Instant::now();
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(spawn_err(cmd))?;
    let status_path = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak = 0u64;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(spawn_err(cmd))? {
            break s;
        }
        let hwm = std::fs::read_to_string(&status_path).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
        peak = peak.max(hwm.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(CommandError::Failed { command: show(cmd), status, stderr: err.trim().to_owned() }.into());
    }
    Ok((elapsed, peak))
}

#[derive(Default)]
pub(crate) struct Samples {
    times: Vec<f64>,
    pub(crate) peak_kib: u64,
}

impl Samples {
    pub(crate) fn add(&mut self, (d, kib): (Duration, u64)) {
        self.times.push(d.as_secs_f64());
        self.peak_kib = self.peak_kib.max(kib);
    }

    pub(crate) fn median(&self) -> f64 {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        t.get(t.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

pub fn bench_push(args: &[String]) -> Result<(), BenchError> {
    let opts = parse_options(args)?;
    for (tool, package) in [
        ("/usr/bin/docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("tar", "tar"),
        ("gzip", "gzip"),
        ("sha256sum", "coreutils"),
    ] {
        require(tool, package)?;
    }
    crate::run(&cargo(), &["build", "--release", "--locked", "-p", "openshell-cli"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let bin = target.join("release/openshell");
    let dir = target.join("bench-push");
    let _ = std::fs::remove_dir_all(&dir);
    let layout = dir.join("layout");
    eprintln!("xtask: making a {} MiB image (4 layers of random data)", opts.mb);
    make_layout(&layout, opts.mb, 4)?;
    let blobs = layout.join("blobs/sha256");
    let bytes: u64 = std::fs::read_dir(&blobs)
        .map_err(io_err(&blobs))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let (mut push_os, mut push_sk, mut pull_os, mut pull_sk) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    for round in 0..opts.rounds {
        let reg = Registry::start(&dir.join(format!("reg-openshell-{round}")))?;
        let to = format!("127.0.0.1:{}/bench/image:1", reg.port);
        push_os.add(measure(Command::new(&bin).arg("push").arg(&layout).args([&to, "--insecure"]))?);
        drop(reg);
        let _ = std::fs::remove_dir_all(dir.join(format!("reg-openshell-{round}")));
        let reg = Registry::start(&dir.join(format!("reg-skopeo-{round}")))?;
        let to = format!("docker://127.0.0.1:{}/bench/image:1", reg.port);
        push_sk.add(measure(
            Command::new("skopeo")
                .args(["copy", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:bench", layout.display()))
                .arg(&to),
        )?);
        let store = dir.join(format!("store-{round}"));
        let from = format!("127.0.0.1:{}/bench/image:1", reg.port);
        pull_os.add(measure(Command::new(&bin).args(["pull", &from, "--insecure", "--store"]).arg(&store))?);
        let copy = dir.join(format!("skopeo-{round}"));
        pull_sk.add(measure(
            Command::new("skopeo")
                .args(["copy", "--src-tls-verify=false", &to])
                .arg(format!("oci:{}:bench", copy.display())),
        )?);
        drop(reg);
        for d in [format!("reg-skopeo-{round}"), format!("store-{round}"), format!("skopeo-{round}")] {
            let _ = std::fs::remove_dir_all(dir.join(d));
        }
    }
    let mb = bytes as f64 / 1e6;
    println!("image: {mb:.0} MB in 4 layers; {} rounds, median wall time; each against a fresh registry", opts.rounds);
    println!("| | openshell | skopeo copy | openshell / skopeo |");
    println!("|---|---|---|---|");
    for (what, os, sk) in [("push", &push_os, &push_sk), ("pull", &pull_os, &pull_sk)] {
        let (a, b) = (os.median(), sk.median());
        println!(
            "| {what} | {a:.2} s ({:.0} MB/s), peak RSS {} MiB | {b:.2} s ({:.0} MB/s), peak RSS {} MiB | {:.2}× the time |",
            mb / a,
            os.peak_kib / 1024,
            mb / b,
            sk.peak_kib / 1024,
            a / b
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
