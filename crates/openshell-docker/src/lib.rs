//! openshell and the local Docker daemon: `openshell docker install` registers
//! `openshell-runtime` as a runtime in dockerd's `daemon.json`, has dockerd
//! read it again (SIGHUP: `runtimes` is one of the settings it reloads live),
//! and checks through the Docker API (bollard) that dockerd now has it.
//!
//! The file is edited safely: it must parse as a JSON object (else nothing is
//! written and the error names the file, line and column); every other setting
//! and runtime is kept; the previous file is kept beside it as
//! `daemon.json.bak`; the new one replaces it by a rename (never half-written)
//! with the old one's permissions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Where Debian's dockerd reads its settings and records its pid.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const DOCKER_PID: &str = "/var/run/docker.pid";
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Where the gateway's Docker driver prepares its containers for the runtime
/// (`openshell-runtime --sandbox-dir`), unless `docker install --sandbox-dir` says.
pub const SANDBOX_DIR: &str = "/var/lib/openshell/docker";
/// The runtime's flag naming that directory.
pub const SANDBOX_DIR_FLAG: &str = "--sandbox-dir";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON (line {line}, column {column}): {message}; nothing was changed")]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {what} is not a JSON object; nothing was changed")]
    NotObject { path: PathBuf, what: &'static str },
    #[error("{path}: no dockerd pid in it ({why})")]
    Pid { path: PathBuf, why: String },
    #[error("telling dockerd (pid {pid}) to read its settings again: {source}")]
    Signal {
        pid: i32,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("the Docker API at {socket}: {message}")]
    Api { socket: String, message: String },
    #[error(
        "dockerd at {socket} does not list runtime `{name}` with path {path} after reading its settings again (it lists: {listed}); daemon.json keeps the entry"
    )]
    NotLoaded { socket: String, name: String, path: String, listed: String },
}

/// What `install` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// The entry was written (the previous file kept as `.bak`, if there was one).
    Written,
    /// The file had the entry already: nothing was written.
    AlreadyThere,
}

/// Where and what to register.
pub struct Install<'a> {
    pub daemon_json: &'a Path,
    /// The runtime's name (`docker run --runtime NAME`).
    pub name: &'a str,
    /// The `openshell-runtime` binary (absolute).
    pub runtime: &'a Path,
    /// Where the gateway's Docker driver prepares containers (absolute).
    pub sandbox_dir: &'a Path,
}

impl Install<'_> {
    /// The runtime's entry in `runtimes`.
    pub fn entry(&self) -> Value {
        serde_json::json!({
            "path": self.runtime.display().to_string(),
            "runtimeArgs": [SANDBOX_DIR_FLAG, self.sandbox_dir.display().to_string()],
        })
    }
}

/// The directory a registered runtime prepares containers from: the value of
/// its `--sandbox-dir` argument, if it has one.
pub fn sandbox_dir_of(args: &[String]) -> Option<PathBuf> {
    let at = args.iter().position(|a| a == SANDBOX_DIR_FLAG)?;
    args.get(at + 1).map(PathBuf::from)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DockerError + '_ {
    move |source| DockerError::Io { path: path.to_owned(), source }
}

/// `daemon.json` with `runtimes.NAME = wanted`, every other setting kept.
pub fn edited(path: &Path, text: &str, name: &str, wanted: &Value) -> Result<(Value, bool), DockerError> {
    let mut config: Value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str(text).map_err(|e| DockerError::Json {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?
    };
    let not_object = |what| DockerError::NotObject { path: path.to_owned(), what };
    let top = config.as_object_mut().ok_or_else(|| not_object("the file"))?;
    let runtimes = top.entry("runtimes").or_insert_with(|| Value::Object(Map::new()));
    let runtimes = runtimes.as_object_mut().ok_or_else(|| not_object("`runtimes`"))?;
    let changed = runtimes.get(name) != Some(wanted);
    runtimes.insert(name.to_owned(), wanted.clone());
    Ok((config, changed))
}

/// Registers the runtime in `daemon.json` (see the module's comment).
pub fn install(spec: &Install<'_>) -> Result<Installed, DockerError> {
    let path = spec.daemon_json;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(path)(e)),
    };
    let (config, changed) = edited(path, text.as_deref().unwrap_or(""), spec.name, &spec.entry())?;
    if !changed {
        return Ok(Installed::AlreadyThere);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mode = std::fs::metadata(path).map(|m| m.permissions()).ok();
    if let Some(old) = &text {
        let backup = path.with_extension("json.bak");
        std::fs::write(&backup, old).map_err(io(&backup))?;
    }
    let new = path.with_extension("json.openshell-new");
    let mut bytes = serde_json::to_vec_pretty(&config).map_err(|e| io(path)(e.into()))?;
    bytes.push(b'\n');
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&new).map_err(io(&new))?;
        file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io(&new))?;
    }
    if let Some(mode) = mode {
        std::fs::set_permissions(&new, mode).map_err(io(&new))?;
    }
    std::fs::rename(&new, path).map_err(io(path))?;
    Ok(Installed::Written)
}

/// Sends SIGHUP to the dockerd whose pid is in `pid_file`; `Ok(false)` when
/// no dockerd runs (it reads the file when it starts).
pub fn reload(pid_file: &Path) -> Result<bool, DockerError> {
    let text = match std::fs::read_to_string(pid_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(pid_file)(e)),
    };
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|e| DockerError::Pid { path: pid_file.to_owned(), why: format!("`{}`: {e}", text.trim()) })?;
    let target = nix::unistd::Pid::from_raw(pid);
    match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGHUP) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(source) => Err(DockerError::Signal { pid, source }),
    }
}

/// Waits (10 s at most) until dockerd at `socket` lists runtime `name` with
/// path `runtime`, asking its API.
pub fn check(socket: &str, name: &str, runtime: &Path) -> Result<(), DockerError> {
    let api = |message: String| DockerError::Api { socket: socket.to_owned(), message };
    let docker =
        bollard::Docker::connect_with_unix(socket, 10, bollard::API_DEFAULT_VERSION).map_err(|e| api(e.to_string()))?;
    let runtime_text = runtime.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| api(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = rt.block_on(docker.info()).map_err(|e| api(e.to_string()))?;
        let runtimes = info.runtimes.unwrap_or_default();
        if runtimes.get(name).and_then(|r| r.path.as_deref()) == Some(runtime_text.as_str()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let mut listed: Vec<String> = runtimes.keys().cloned().collect();
            listed.sort();
            return Err(DockerError::NotLoaded {
                socket: socket.to_owned(),
                name: name.to_owned(),
                path: runtime_text,
                listed: listed.join(", "),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_is_added_and_everything_else_kept() {
        let path = Path::new("/etc/docker/daemon.json");
        let runtime = Install {
            daemon_json: path,
            name: "openshell",
            runtime: Path::new("/usr/local/bin/openshell-runtime"),
            sandbox_dir: Path::new("/var/lib/openshell/docker"),
        }
        .entry();
        let runtime = &runtime;
        let before = r#"{"log-level": "warn", "runtimes": {"other": {"path": "/bin/other"}}}"#;
        let (after, changed) = edited(path, before, "openshell", runtime).expect("edited");
        assert!(changed);
        assert_eq!(after["log-level"], "warn");
        assert_eq!(after["runtimes"]["other"]["path"], "/bin/other");
        assert_eq!(after["runtimes"]["openshell"]["path"], "/usr/local/bin/openshell-runtime");
        let args: Vec<String> =
            serde_json::from_value(after["runtimes"]["openshell"]["runtimeArgs"].clone()).expect("args");
        assert_eq!(sandbox_dir_of(&args), Some(PathBuf::from("/var/lib/openshell/docker")));
        let (_, again) = edited(path, &after.to_string(), "openshell", runtime).expect("again");
        assert!(!again, "a second install changes nothing");
        let (empty, _) = edited(path, "", "openshell", runtime).expect("an empty file");
        assert_eq!(empty["runtimes"]["openshell"]["path"], "/usr/local/bin/openshell-runtime");
    }

    #[test]
    fn a_file_that_is_not_a_settings_object_is_refused_with_where() {
        let path = Path::new("/etc/docker/daemon.json");
        let runtime = &serde_json::json!({"path": "/r"});
        let e = edited(path, "{\n  \"log-level\": \"warn\",\n}", "openshell", runtime).expect_err("trailing comma");
        assert!(e.to_string().starts_with("/etc/docker/daemon.json: not valid JSON (line 3, column 1)"), "{e}");
        for (text, what) in [("[]", "the file"), (r#"{"runtimes": []}"#, "`runtimes`")] {
            let e = edited(path, text, "openshell", runtime).expect_err(text).to_string();
            assert!(e.contains(what) && e.contains("nothing was changed"), "{e}");
        }
    }

    #[test]
    fn install_keeps_a_backup_the_mode_and_writes_nothing_on_bad_input() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("daemon.json");
        std::fs::write(&path, r#"{"debug": true}"#).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let spec =
            Install { daemon_json: &path, name: "openshell", runtime: Path::new("/r"), sandbox_dir: Path::new("/d") };
        assert_eq!(install(&spec).expect("install"), Installed::Written);
        assert_eq!(std::fs::read_to_string(path.with_extension("json.bak")).expect("backup"), r#"{"debug": true}"#);
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(install(&spec).expect("again"), Installed::AlreadyThere);
        std::fs::write(&path, "{oops").expect("write");
        assert!(install(&spec).is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "{oops");
    }
}
