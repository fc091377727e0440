//! Developer tasks, run as `cargo xtask <task>`:
//!
//! - `quickstart`: check the machine's prerequisites (installing missing Debian
//!   packages as root, see `prereqs.rs`), build the release binary, validate and
//!   explain the default policy, then fetch and build the default agent image (the
//!   main job as it stands).
//! - `prereqs [--install]`: only the check (`--install`: install as quickstart does).
//! - `ci`: format check, clippy with `-D warnings`, and every test.
//! - `bench [NAME]`: the criterion benchmarks (`decide`: the policy decision function;
//!   `build`: an image build from a warm store against tar+gzip of the same bytes, and
//!   the no-op rebuild, on the default image; `sandbox`: `openshell sandbox create` to
//!   exit against `runc run`, `bwrap` and `docker run` of the same rootfs, `sandbox exec`
//!   latency and the memory per idle sandbox, see `bench_sandbox.rs`; `proxy`: the egress
//!   proxy's tunnel and L7 path against direct connections and haproxy on the same
//!   downloads; `router`: the privacy
//!   router's time to first byte against the same requests direct; `push`: `openshell
//!   push` and `pull` against `skopeo copy` of the same image, see `bench_push.rs`;
//!   `kubernetes [--rounds N] [--warmup N]`: a pod through containerd's CRI plugin to
//!   its container's exit with handler `openshell` against `runc`, the bench
//!   `crates/openshell-cli/benches/kubernetes.rs`).

mod bench_bundle;
mod bench_docker;
mod bench_push;
mod bench_sandbox;
mod command;
mod prereqs;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use command::{run, run_with};

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
enum TaskError {
    #[error(transparent)]
    Command(#[from] command::CommandError),
    #[error(transparent)]
    Prereqs(#[from] prereqs::PrereqError),
    #[error(transparent)]
    Sandbox(#[from] bench_sandbox::SandboxBenchError),
    #[error(transparent)]
    Docker(#[from] bench_docker::DockerBenchError),
    #[error(transparent)]
    Push(#[from] bench_push::BenchError),
    #[error("{0}; try `cargo xtask help`")]
    Usage(String),
    #[error("{what} is not UTF-8: {}", path.display())]
    NotUtf8 { what: &'static str, path: PathBuf },
    #[error("HOME is not set (the default image store is under it)")]
    NoHome,
}

/// `path` as a command argument.
fn utf8<'p>(what: &'static str, path: &'p Path) -> Result<&'p str, TaskError> {
    path.to_str().ok_or_else(|| TaskError::NotUtf8 { what, path: path.to_owned() })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("quickstart") => quickstart(),
        Some("prereqs") => match args.get(1).map(String::as_str) {
            None => prereqs::ensure(prereqs::OnMissing::Report).map_err(TaskError::from),
            Some("--install") => prereqs::ensure(prereqs::OnMissing::InstallAsRoot).map_err(TaskError::from),
            Some(other) => Err(TaskError::Usage(format!("prereqs: unknown flag `{other}` (only --install)"))),
        },
        Some("bench") => bench(args.get(1).map(String::as_str), args.get(2..).unwrap_or_default()),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!(
                "usage: cargo xtask <quickstart | prereqs [--install] | ci | bench [decide|build|sandbox [--iterations N]|proxy|router|push [--mb N] [--rounds N]|bundle [--rounds N]|kubernetes [--rounds N] [--warmup N]]>"
            );
            Ok(())
        }
        Some(other) => Err(TaskError::Usage(format!("unknown task `{other}`"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace this xtask runs for: `cargo run` (the `cargo xtask` alias) names
/// the package's directory in `CARGO_MANIFEST_DIR` at run time. The path compiled
/// in is only the fallback: cargo keeps a binary built in another clone fresh in a
/// shared build directory (CI's default is the same `/var/tmp/openshell-target`
/// for every clone) when this clone's sources are older, and that path names the
/// other clone, which may be gone.
fn root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Where cargo puts builds: `$CARGO_TARGET_DIR`, else `target/` of the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root().join(d) })
        .unwrap_or_else(|| root().join("target"))
}

fn has_nextest() -> bool {
    Command::new(cargo()).args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success())
}

fn ci() -> Result<(), TaskError> {
    let cargo = cargo();
    run(&cargo, &["fmt", "--all", "--check"])?;
    run(&cargo, &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    // Benchmarks must at least compile and run once (criterion's --test mode). The
    // build benchmark needs a fetched store of the default image (see `bench build`):
    // clippy --all-targets compiles it; it runs under `cargo xtask bench build`.
    run(&cargo, &["test", "--locked", "-p", "openshell-policy", "-p", "openshell-proxy", "--benches"])?;
    run(&cargo, &["test", "--workspace", "--locked", "--doc"])?;
    // The real-client tests run in a sandbox of the default image: its closure is
    // fetched here (from the package registries, verified) and the image built, so
    // the tests themselves run offline. A warm store makes both no-ops.
    let store = default_image_store()?;
    let store = utf8("the store path", &store)?;
    run(&cargo, &["build", "--locked", "-p", "openshell-cli"])?;
    let bin = target_dir().join("debug").join("openshell");
    let bin = utf8("the target directory", &bin)?;
    // The default image, the SDK test image (the openai and anthropic Python SDKs
    // for the privacy router, `websockets` and the MCP Python SDK for the L7
    // protocols) and the network tests' client image (getent, Python, Node, dig,
    // ssh, psql); they share the store's Debian packages.
    for lock in ["lockfiles/default.lock", "lockfiles/sdk-test.lock", "lockfiles/net-test.lock"] {
        run(bin, &["--quiet", "fetch", lock, "--store", store])?;
        run(bin, &["--quiet", "build", lock, "--store", store])?;
    }
    let env = [("OPENSHELL_TEST_DEFAULT_STORE", store)];
    if has_nextest() {
        Ok(run_with(&cargo, &["nextest", "run", "--workspace", "--locked", "--no-fail-fast"], &env)?)
    } else {
        eprintln!(
            "xtask: cargo-nextest not found (install it with `cargo install cargo-nextest --locked`); using cargo test"
        );
        Ok(run_with(
            &cargo,
            &["test", "--workspace", "--locked", "--lib", "--bins", "--tests", "--no-fail-fast"],
            &env,
        )?)
    }
}

/// Where the tests find the default image: `$OPENSHELL_TEST_DEFAULT_STORE`, else
/// the user's store (`$OPENSHELL_STORE`, `$XDG_DATA_HOME/openshell/store`,
/// `~/.local/share/openshell/store`), where `quickstart` puts it too.
fn default_image_store() -> Result<PathBuf, TaskError> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(store) = var("OPENSHELL_TEST_DEFAULT_STORE").or_else(|| var("OPENSHELL_STORE")) {
        return Ok(store);
    }
    if let Some(data) = var("XDG_DATA_HOME") {
        return Ok(data.join("openshell/store"));
    }
    var("HOME").map(|h| h.join(".local/share/openshell/store")).ok_or(TaskError::NoHome)
}

fn quickstart() -> Result<(), TaskError> {
    prereqs::ensure(prereqs::OnMissing::InstallAsRoot)?;
    let cargo = cargo();
    run(&cargo, &["build", "--release", "--locked", "-p", "openshell-cli"])?;
    let target = target_dir();
    let bin = target.join("release").join("openshell");
    let bin = utf8("the target directory", &bin)?;
    run(bin, &["policy", "validate", "policies/default.yaml"])?;
    run(bin, &["policy", "explain", "policies/default.yaml"])?;
    run(
        bin,
        &[
            "policy",
            "check",
            "policies/default.yaml",
            "--host",
            "api.anthropic.com",
            "--port",
            "443",
            "--binary",
            "/usr/local/bin/claude",
        ],
    )?;
    // The default agent image: fetch its closure (verified) and build it, offline.
    run(bin, &["fetch", "lockfiles/default.lock"])?;
    let archive = target.join("openshell-default.tar");
    let archive = utf8("the target directory", &archive)?;
    run(bin, &["build", "lockfiles/default.lock", "--archive", archive])?;
    eprintln!("xtask: the openshell binary is {bin}; the default image is {archive} (docker load -i {archive})");
    Ok(())
}

fn bench(name: Option<&str>, rest: &[String]) -> Result<(), TaskError> {
    let cargo = cargo();
    match name {
        None | Some("decide") | Some("policy") => {
            Ok(run(&cargo, &["bench", "-p", "openshell-policy", "--bench", "decide"])?)
        }
        Some("build") => {
            // Set-up: the default image's closure in a store (downloads it once).
            let store = std::env::var("OPENSHELL_BENCH_STORE")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| root().join("target/bench-store").display().to_string());
            run(
                &cargo,
                &[
                    "run",
                    "--release",
                    "--locked",
                    "-p",
                    "openshell-cli",
                    "--",
                    "fetch",
                    "lockfiles/default.lock",
                    "--store",
                    &store,
                ],
            )?;
            let bench = ["bench", "--locked", "-p", "openshell-build", "--bench", "build"];
            Ok(run_with(&cargo, &bench, &[("OPENSHELL_BENCH_STORE", &store)])?)
        }
        Some("sandbox") => Ok(bench_sandbox::bench_sandbox(rest)?),
        Some("docker-driver") => Ok(bench_docker::bench_docker(rest)?),
        Some("push") => Ok(bench_push::bench_push(rest)?),
        Some("bundle") => Ok(bench_bundle::bench_bundle(rest)?),
        Some("proxy") => Ok(run(&cargo, &["bench", "--locked", "-p", "openshell-proxy", "--bench", "proxy"])?),
        Some("router") => Ok(run(&cargo, &["bench", "--locked", "-p", "openshell-proxy", "--bench", "router"])?),
        Some("kubernetes") => {
            // The bench finds openshell-runtime beside openshell in the release directory.
            run(&cargo, &["build", "--release", "--locked", "-p", "openshell-runtime"])?;
            let mut args = vec!["bench", "--locked", "-p", "openshell-cli", "--bench", "kubernetes", "--"];
            args.extend(rest.iter().map(String::as_str));
            Ok(run(&cargo, &args)?)
        }
        Some(other) => Err(TaskError::Usage(format!(
            "unknown benchmark `{other}`; available: decide, build, sandbox, docker-driver, proxy, router, push, bundle, kubernetes"
        ))),
    }
}
