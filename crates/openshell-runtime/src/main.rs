//! `openshell-runtime`: runc's command line over libcontainer, applying an
//! openshell policy named by the bundle's `run.openshell.policy` annotation (see the
//! library docs). Parses arguments, calls `openshell_runtime`, renders results and
//! errors; errors go to `--log` (as runc's JSON or text lines) and to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use openshell_runtime::logging::{self, LogFormat};
use openshell_runtime::{CreateOptions, ExecOptions, Runtime, StateReport};

/// An OCI runtime with runc's command line that applies openshell policies.
#[derive(Debug, Parser)]
#[command(name = "openshell-runtime", version, arg_required_else_help = true)]
struct Cli {
    /// Where container state is kept.
    #[arg(long, global = true, default_value = "/run/openshell-runtime")]
    root: PathBuf,
    /// Write logs (and errors) to this file instead of stderr; errors also go to stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log everything down to debug.
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups through systemd (cgroupsPath `slice:prefix:name`).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Policy for bundles without the `run.openshell.policy` annotation.
    #[arg(long, global = true, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Where the openshell gateway's Docker driver prepares its containers
    /// (policy and network by container id).
    #[arg(long, global = true, value_name = "DIR")]
    sandbox_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// The bundle: `config.json` and the root filesystem it names.
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Write the container process's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// AF_UNIX socket that receives the terminal's master fd (process.terminal = true).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Do not pivot_root into the root filesystem (for a rootfs on a ramdisk).
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility; libcontainer never makes a session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many extra file descriptors (from 3) to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    id: String,
}

impl CreateArgs {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM; a name or a number) to a container.
    Kill {
        /// Signal every process of the container, not just its first.
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container's state and cgroup.
    Delete {
        /// Kill the container first if it is running.
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Run another process in a running container (under its policy, if it has one).
    Exec {
        /// The process as OCI JSON (instead of the flags and command below).
        #[arg(long, short = 'p', conflicts_with_all = ["tty", "cwd", "env", "user", "command"])]
        process: Option<PathBuf>,
        /// Do not wait for the process.
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Give the process a terminal (needs --console-socket).
        #[arg(long, short = 't')]
        tty: bool,
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// NAME=VALUE, added to (or replacing in) the container's environment.
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// uid or uid:gid.
        #[arg(long, short = 'u')]
        user: Option<String>,
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print a container's cgroup statistics as runc does (one JSON line): once
    /// with --stats, else every --interval until it stops. OOM events are not
    /// reported.
    Events {
        /// Print the statistics once and exit.
        #[arg(long)]
        stats: bool,
        /// How often, without --stats (`5s`, `500ms`).
        #[arg(long, default_value = "5s", value_parser = parse_interval)]
        interval: std::time::Duration,
        id: String,
    },
    /// Apply new resource limits (OCI `linux.resources` JSON) to a container's
    /// cgroup, as `runc update --resources` does.
    Update {
        /// The resources as JSON: a file, or `-` for stdin.
        #[arg(long, short = 'r', value_name = "FILE")]
        resources: PathBuf,
        id: String,
    },
    /// Create and start a container; in the foreground, wait and exit with its code.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container is started.
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Write a default config.json (runc's defaults, no terminal) into the bundle.
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
    /// Print what this runtime supports, as JSON.
    Features,
    /// List the processes of a container (`--format json`: their pids).
    Ps {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
        /// Options for ps(1) in table format (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List the containers under --root.
    List {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only the ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// A Kubernetes pod's egress proxy, started by `create` of the pod's sandbox
    /// container (its state directory) and stopped by its `delete`.
    #[command(hide = true)]
    PodProxy { dir: PathBuf },
}

/// A failure of the command, for people.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Runtime(#[from] openshell_runtime::RuntimeError),
    #[error(transparent)]
    Spec(#[from] openshell_runtime::spec::SpecError),
    #[error(transparent)]
    Egress(#[from] openshell_runtime::pod_egress::EgressError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: not OCI linux.resources JSON (line {line}, column {column}): {message}")]
    Resources { what: String, line: usize, column: usize, message: String },
}

/// An `--interval` that is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("`{0}`: give a duration such as 5s or 500ms")]
struct IntervalError(String);

/// `5s`, `500ms` or a number of seconds.
fn parse_interval(text: &str) -> Result<std::time::Duration, IntervalError> {
    let bad = || IntervalError(text.to_owned());
    let (number, unit) = match text.strip_suffix("ms") {
        Some(n) => (n, 1),
        None => (text.strip_suffix('s').unwrap_or(text), 1000),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_millis(n * unit))
}

/// The resources `update` is given: a file, or stdin for `-`.
fn read_resources(from: &Path) -> Result<libcontainer::oci_spec::runtime::LinuxResources, CliError> {
    use std::io::Read;
    let what = if from == Path::new("-") { "stdin".to_owned() } else { from.display().to_string() };
    let mut text = String::new();
    let read = if from == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(from).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|source| CliError::Io { what: what.clone(), source })?;
    serde_json::from_str(&text).map_err(|e| CliError::Resources {
        what,
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands whose processes enter a container's namespaces run from a sealed
    // copy of this binary (CVE-2019-5736): a container can never reach the file.
    let sealed = if matches!(cli.command, Command::Create(_) | Command::Run { .. } | Command::Exec { .. }) {
        openshell_sandbox::sealed::reexec_sealed()
    } else {
        Ok(())
    };
    if let Err(e) = logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("openshell-runtime: cannot open the log file: {e}");
        return ExitCode::from(1);
    }
    // Reported once the log is open: containerd's shim reads the error there.
    if let Err(e) = sealed {
        tracing::error!("running from a sealed copy of openshell-runtime: {e}");
        eprintln!("openshell-runtime: {e}");
        return ExitCode::from(1);
    }
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let message = openshell_runtime::ops::chain(&e);
            tracing::error!("{message}");
            // With --log, the error went to the file; people (and go-runc's error text) read stderr.
            if cli.log.is_some() {
                eprintln!("openshell-runtime: {message}");
            }
            ExitCode::from(1)
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(|e| CliError::Io { what: "writing to stdout".into(), source: e.into() })?;
    writeln!(out).map_err(|source| CliError::Io { what: "writing to stdout".into(), source })
}

fn dispatch(cli: &Cli) -> Result<ExitCode, CliError> {
    let rt = Runtime {
        root: cli.root.clone(),
        systemd_cgroup: cli.systemd_cgroup,
        default_policy: cli.policy.clone(),
        sandbox_dir: cli.sandbox_dir.clone(),
    };
    match &cli.command {
        Command::Create(args) => {
            rt.create(&args.id, &args.options())?;
        }
        Command::Start { id } => rt.start(id)?,
        Command::State { id } => print_json(&rt.state(id)?)?,
        Command::Kill { all, id, signal } => rt.kill(id, signal, *all)?,
        Command::Delete { force, id } => rt.delete(id, *force)?,
        Command::Exec { process, detach, pid_file, console_socket, tty, cwd, env, user, preserve_fds, id, command } => {
            let opts = ExecOptions {
                process: process.clone(),
                detach: *detach,
                pid_file: pid_file.clone(),
                console_socket: console_socket.clone(),
                tty: *tty,
                cwd: cwd.clone(),
                env: env.clone(),
                user: user.clone(),
                preserve_fds: *preserve_fds,
                args: command.clone(),
            };
            if let Some(code) = rt.exec(id, &opts)? {
                return Ok(exit_code(code));
            }
        }
        Command::Run { create, detach } => {
            if let Some(code) = rt.run(&create.id, &create.options(), *detach)? {
                return Ok(exit_code(code));
            }
        }
        Command::Spec { bundle } => {
            openshell_runtime::spec::write_default(bundle)?;
        }
        Command::Features => print_json(&openshell_runtime::spec::features())?,
        Command::Ps { format, id, ps_args } => {
            let pids = rt.pids(id)?;
            match format {
                ListFormat::Json => print_json(&pids)?,
                ListFormat::Table => ps_table(&pids, ps_args)?,
            }
        }
        Command::List { format, quiet } => {
            let states = rt.list()?;
            match (quiet, format) {
                (true, _) => states.iter().for_each(|s| println!("{}", s.id)),
                (false, ListFormat::Json) => print_json(&states)?,
                (false, ListFormat::Table) => list_table(&states),
            }
        }
        Command::Pause { id } => rt.pause(id)?,
        Command::Update { resources, id } => rt.update(id, &read_resources(resources)?)?,
        Command::Events { stats, interval, id } => loop {
            let event = rt.stats(id)?;
            let line = serde_json::to_string(&event)
                .map_err(|e| CliError::Io { what: "writing to stdout".into(), source: e.into() })?;
            writeln!(std::io::stdout(), "{line}")
                .map_err(|source| CliError::Io { what: "writing to stdout".into(), source })?;
            if *stats {
                break;
            }
            std::thread::sleep(*interval);
            if rt.stopped(id) {
                break;
            }
        },
        Command::Resume { id } => rt.resume(id)?,
        Command::PodProxy { dir } => openshell_runtime::pod_egress::serve(dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn list_table(states: &[StateReport]) {
    println!("{:<24} {:<8} {:<10} {:<40} {:<32} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
    for s in states {
        println!(
            "{:<24} {:<8} {:<10} {:<40} {:<32} {}",
            s.id,
            s.pid,
            s.status,
            s.bundle.display(),
            s.created,
            if s.owner.is_empty() { "root" } else { &s.owner }
        );
    }
}

/// runc's table: ps(1)'s output (default `-ef`) limited to the container's pids.
fn ps_table(pids: &[i32], ps_args: &[String]) -> Result<(), CliError> {
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|source| CliError::Io { what: "running ps(1) (Debian package procps)".into(), source })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split_whitespace().position(|h| h == "PID") else {
        return Err(CliError::Io {
            what: format!("ps {}", args.join(" ")),
            source: std::io::Error::other("its output has no PID column"),
        });
    };
    println!("{header}");
    for line in lines {
        let pid = line.split_whitespace().nth(column).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn go_runc_argument_shapes_parse() {
        // As containerd's runc shim calls it.
        let cli = Cli::try_parse_from([
            "openshell-runtime",
            "--root",
            "/run/x",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "c1",
        ])
        .expect("create");
        assert!(matches!(&cli.command, Command::Create(a) if a.id == "c1" && a.bundle == Path::new("/b")));
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["openshell-runtime", "kill", "--all", "c1", "9"]).expect("kill");
        assert!(matches!(&cli.command, Command::Kill { all: true, signal, .. } if signal == "9"));
        let cli = Cli::try_parse_from([
            "openshell-runtime",
            "exec",
            "--process",
            "/tmp/p.json",
            "--detach",
            "--pid-file",
            "/b/e.pid",
            "c1",
        ])
        .expect("exec");
        assert!(matches!(&cli.command, Command::Exec { detach: true, process: Some(_), .. }));
        let cli = Cli::try_parse_from(["openshell-runtime", "exec", "c1", "ls", "-l"]).expect("exec cmd");
        assert!(matches!(&cli.command, Command::Exec { command, .. } if command == &["ls", "-l"]));
        let cli = Cli::try_parse_from(["openshell-runtime", "ps", "--format", "json", "c1"]).expect("ps");
        assert!(matches!(&cli.command, Command::Ps { format: ListFormat::Json, .. }));
        let cli = Cli::try_parse_from(["openshell-runtime", "--policy", "/p.yaml", "delete", "--force", "c1"])
            .expect("runtimeArgs before the command");
        assert_eq!(cli.policy.as_deref(), Some(Path::new("/p.yaml")));
        assert!(Cli::try_parse_from(["openshell-runtime", "exec", "-p", "/p.json", "c1", "ls"]).is_err());
    }
}
