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
//!   proxy's tunnel and L7 path against direct connections; `router`: the privacy
//!   router's time to first byte against the same requests direct; `push`: `openshell
//!   push` and `pull` against `skopeo copy` of the same image, see `bench_push.rs`;
//!   `kubernetes [--rounds N] [--warmup N]`: a pod through containerd's CRI plugin to
//!   its container's exit with handler `openshell` against `runc`, the bench
//!   `crates/openshell-cli/benches/kubernetes.rs`).

mod bench_bundle;
mod bench_docker;
mod bench_push;
mod bench_sandbox;
mod prereqs;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("quickstart") => quickstart(),
        Some("prereqs") => match args.get(1).map(String::as_str) {
            None => prereqs::ensure(prereqs::OnMissing::Report).map_err(|e| e.to_string()),
            Some("--install") => prereqs::ensure(prereqs::OnMissing::InstallAsRoot).map_err(|e| e.to_string()),
            Some(other) => Err(format!("prereqs: unknown flag `{other}` (only --install)")),
        },
        Some("bench") => bench(args.get(1).map(String::as_str), args.get(2..).unwrap_or_default()),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!(
                "usage: cargo xtask <quickstart | prereqs [--install] | ci | bench [decide|build|sandbox [--iterations N]|proxy|router|push [--mb N] [--rounds N]|bundle [--rounds N]|kubernetes [--rounds N] [--warmup N]]>"
            );
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    run_with(program, args, &[])
}

fn run_with(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{program} {}` failed ({status})", args.join(" "))) }
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

fn ci() -> Result<(), String> {
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
    let store = store.to_str().ok_or("the store path is not UTF-8")?;
    run(&cargo, &["build", "--locked", "-p", "openshell-cli"])?;
    let bin = target_dir().join("debug").join("openshell");
    let bin = bin.to_str().ok_or("target directory path is not UTF-8")?;
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
        run_with(&cargo, &["nextest", "run", "--workspace", "--locked", "--no-fail-fast"], &env)
    } else {
        eprintln!(
            "xtask: cargo-nextest not found (install it with `cargo install cargo-nextest --locked`); using cargo test"
        );
        run_with(&cargo, &["test", "--workspace", "--locked", "--lib", "--bins", "--tests", "--no-fail-fast"], &env)
    }
}

/// Where the tests find the default image: `$OPENSHELL_TEST_DEFAULT_STORE`, else
/// the user's store (`$OPENSHELL_STORE`, `$XDG_DATA_HOME/openshell/store`,
/// `~/.local/share/openshell/store`), where `quickstart` puts it too.
fn default_image_store() -> Result<PathBuf, String> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(store) = var("OPENSHELL_TEST_DEFAULT_STORE").or_else(|| var("OPENSHELL_STORE")) {
        return Ok(store);
    }
    if let Some(data) = var("XDG_DATA_HOME") {
        return Ok(data.join("openshell/store"));
    }
    var("HOME").map(|h| h.join(".local/share/openshell/store")).ok_or_else(|| "HOME is not set".to_owned())
}

fn quickstart() -> Result<(), String> {
    prereqs::ensure(prereqs::OnMissing::InstallAsRoot).map_err(|e| e.to_string())?;
    let cargo = cargo();
    run(&cargo, &["build", "--release", "--locked", "-p", "openshell-cli"])?;
    let target = target_dir();
    let bin = target.join("release").join("openshell");
    let bin = bin.to_str().ok_or("target directory path is not UTF-8")?;
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
    let archive = archive.to_str().ok_or("target directory path is not UTF-8")?;
    run(bin, &["build", "lockfiles/default.lock", "--archive", archive])?;
    eprintln!("xtask: the openshell binary is {bin}; the default image is {archive} (docker load -i {archive})");
    Ok(())
}

fn bench(name: Option<&str>, rest: &[String]) -> Result<(), String> {
    let cargo = cargo();
    match name {
        None | Some("decide") | Some("policy") => {
            run(&cargo, &["bench", "-p", "openshell-policy", "--bench", "decide"])
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
            let status = Command::new(&cargo)
                .args(["bench", "--locked", "-p", "openshell-build", "--bench", "build"])
                .env("OPENSHELL_BENCH_STORE", &store)
                .current_dir(root())
                .status()
                .map_err(|e| format!("cannot run cargo bench: {e}"))?;
            if status.success() { Ok(()) } else { Err(format!("cargo bench failed ({status})")) }
        }
        Some("sandbox") => bench_sandbox::bench_sandbox(rest),
        Some("docker-driver") => bench_docker::bench_docker(rest).map_err(|e| e.to_string()),
        Some("push") => bench_push::bench_push(rest).map_err(|e| e.to_string()),
        Some("bundle") => bench_bundle::bench_bundle(rest).map_err(|e| e.to_string()),
        Some("proxy") => run(&cargo, &["bench", "--locked", "-p", "openshell-proxy", "--bench", "proxy"]),
        Some("router") => run(&cargo, &["bench", "--locked", "-p", "openshell-proxy", "--bench", "router"]),
        Some("kubernetes") => {
            // The bench finds openshell-runtime beside openshell in the release directory.
            run(&cargo, &["build", "--release", "--locked", "-p", "openshell-runtime"])?;
            let mut args = vec!["bench", "--locked", "-p", "openshell-cli", "--bench", "kubernetes", "--"];
            args.extend(rest.iter().map(String::as_str));
            run(&cargo, &args)
        }
        Some(other) => Err(format!(
            "unknown benchmark `{other}`; available: decide, build, sandbox, docker-driver, proxy, router, push, bundle, kubernetes"
        )),
    }
}
