//! `openshell docker install`: registers `openshell-runtime` with the local
//! dockerd (`openshell-docker` edits daemon.json, reloads dockerd and checks
//! through the Docker API).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use openshell_docker::{DAEMON_JSON, DOCKER_PID, DOCKER_SOCKET, Install, Installed, SANDBOX_DIR};
use serde_json::json;

use crate::Outcome;
use crate::output::Output;
use crate::policy_cmd::CliError;

#[derive(Debug, Subcommand)]
pub enum DockerCommand {
    /// Register openshell-runtime as a runtime of the local dockerd (in its
    /// daemon.json, every other setting kept, the previous file kept as .bak),
    /// have dockerd read it again, and check that dockerd lists it:
    /// `docker run --runtime openshell IMAGE` then runs through it.
    Install {
        /// The runtime's name for `docker run --runtime`.
        #[arg(long, default_value = "openshell")]
        name: String,
        /// The openshell-runtime binary (default: the one beside this openshell).
        #[arg(long, value_name = "PATH")]
        runtime: Option<PathBuf>,
        /// dockerd's settings file.
        #[arg(long, value_name = "FILE", default_value = DAEMON_JSON)]
        config: PathBuf,
        /// Where dockerd records its pid (it is sent SIGHUP to read its settings again).
        #[arg(long, value_name = "FILE", default_value = DOCKER_PID)]
        pid_file: PathBuf,
        /// dockerd's API socket, for the check.
        #[arg(long, value_name = "PATH", default_value = DOCKER_SOCKET)]
        socket: String,
        /// Where `gateway run --driver docker` prepares each sandbox container's
        /// policy and network for the runtime (given to it as --sandbox-dir).
        #[arg(long, value_name = "DIR", default_value = SANDBOX_DIR)]
        sandbox_dir: PathBuf,
    },
}

/// The runtime binary: given, else `openshell-runtime` beside this executable.
fn runtime_binary(given: Option<&Path>) -> Result<PathBuf, CliError> {
    let path = match given {
        Some(p) => std::path::absolute(p).map_err(|e| CliError::Missing(format!("{}: {e}", p.display())))?,
        None => std::env::current_exe()
            .map_err(|e| CliError::Missing(format!("finding this executable: {e}")))?
            .with_file_name("openshell-runtime"),
    };
    if !path.is_file() {
        return Err(CliError::Missing(format!(
            "{} is missing: build it (`cargo build --release -p openshell-runtime`) or give --runtime PATH",
            path.display()
        )));
    }
    Ok(path)
}

pub fn docker(out: &Output, cmd: &DockerCommand) -> Result<Outcome, CliError> {
    let DockerCommand::Install { name, runtime, config, pid_file, socket, sandbox_dir } = cmd;
    let runtime = runtime_binary(runtime.as_deref())?;
    let sandbox_dir =
        std::path::absolute(sandbox_dir).map_err(|e| CliError::Missing(format!("{}: {e}", sandbox_dir.display())))?;
    let install = Install { daemon_json: config, name, runtime: &runtime, sandbox_dir: &sandbox_dir };
    let installed = openshell_docker::install(&install)?;
    let reloaded = openshell_docker::reload(pid_file)?;
    if reloaded {
        openshell_docker::check(socket, name, &runtime)?;
    }
    if out.json() {
        out.print_json(&json!({
            "name": name,
            "runtime": runtime,
            "config": config,
            "sandbox_dir": sandbox_dir,
            "written": installed == Installed::Written,
            "dockerd_reloaded": reloaded,
        }));
        return Ok(Outcome::Ok);
    }
    let (config_text, runtime_text) =
        (config.display(), format!("{} --sandbox-dir {}", runtime.display(), sandbox_dir.display()));
    match installed {
        Installed::Written => out.info(&format!("{config_text}: runtime `{name}` is {runtime_text}")),
        Installed::AlreadyThere => out.info(&format!("{config_text}: runtime `{name}` was {runtime_text} already")),
    }
    if reloaded {
        out.info(&format!("dockerd lists it: docker run --runtime {name} IMAGE"));
    } else {
        out.info(&format!("dockerd is not running: it reads {config_text} when it starts"));
    }
    Ok(Outcome::Ok)
}
