//! A throwaway PostgreSQL for one test: a cluster made by `initdb` in its own
//! directory, served on 127.0.0.1 by Debian's `postgresql` binaries, run as
//! `nobody` (PostgreSQL refuses to run as root). Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::registry::{Tls, free_port};

pub struct Postgres {
    child: Child,
    /// Where it listens: 127.0.0.1, or an address in a test's network namespace.
    pub host: String,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Where a cluster listens, and who may connect.
struct Listen {
    host: String,
    port: u16,
    /// Served inside this network namespace (`ip netns exec`).
    netns: Option<String>,
    /// Clients from this network are trusted too (initdb trusts loopback only).
    clients: Option<String>,
}

/// The newest `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/*/bin/initdb: install the Debian package `postgresql` (.ci/run does)")
}

fn as_nobody(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(program);
    c
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// With `tls`: TLS offered (`ssl = on`) with its certificate and key.
    pub fn start_with(tls: Option<&Tls>) -> Postgres {
        let listen = Listen { host: "127.0.0.1".into(), port: free_port(), netns: None, clients: None };
        Postgres::launch(listen, tls)
    }

    /// Served on `host`:5432 inside the network namespace `netns`, trusting
    /// clients from `clients` (a CIDR).
    pub fn start_in_netns(netns: &str, host: &str, clients: &str) -> Postgres {
        let listen = Listen { host: host.into(), port: 5432, netns: Some(netns.into()), clients: Some(clients.into()) };
        Postgres::launch(listen, None)
    }

    fn launch(listen: Listen, tls: Option<&Tls>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("ospg").tempdir_in("/tmp").expect("tempdir");
        let out = Command::new("chown").args(["nobody:nogroup"]).arg(dir.path()).output().expect("chown");
        assert!(out.status.success(), "chown: {}", String::from_utf8_lossy(&out.stderr));
        let data = dir.path().join("data");
        let out = as_nobody(&bin.join("initdb"))
            .args(["--auth=trust", "--username=openshell", "--encoding=UTF8", "--no-sync", "-D"])
            .arg(&data)
            .current_dir(dir.path())
            .output()
            .expect("initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        if let Some(clients) = &listen.clients {
            let hba = data.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            text.push_str(&format!("host all all {clients} trust\n"));
            std::fs::write(&hba, text).expect("pg_hba.conf");
        }
        let mut settings = vec!["fsync=off".to_owned()];
        if let Some(tls) = tls {
            for (from, name) in [(&tls.cert, "server.crt"), (&tls.key, "server.key")] {
                let to = dir.path().join(name);
                std::fs::copy(from, &to).expect("copy");
                let out = Command::new("chown").args(["nobody:nogroup"]).arg(&to).output().expect("chown");
                assert!(out.status.success(), "chown: {}", String::from_utf8_lossy(&out.stderr));
                std::fs::set_permissions(
                    &to,
                    <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
                )
                .expect("chmod");
            }
            settings.push("ssl=on".into());
            settings.push(format!("ssl_cert_file={}", dir.path().join("server.crt").display()));
            settings.push(format!("ssl_key_file={}", dir.path().join("server.key").display()));
        }
        let (host, port) = (listen.host, listen.port);
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log");
        let mut postgres = as_nobody(&bin.join("postgres"));
        if let Some(netns) = &listen.netns {
            let inner = postgres;
            postgres = Command::new("ip");
            postgres.args(["netns", "exec", netns]).arg(inner.get_program()).args(inner.get_args());
        }
        let child = postgres
            .arg("-D")
            .arg(&data)
            .args(["-h", &host, "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let pg = Postgres { child, host, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", &pg.host, "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "postgres did not start: {}", pg.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = Command::new(bin.join("createdb"))
            .args(["-h", &pg.host, "-p", &port.to_string(), "-U", "openshell", "openshell"])
            .output()
            .expect("createdb");
        assert!(out.status.success(), "createdb: {}", String::from_utf8_lossy(&out.stderr));
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://openshell@{}:{}/openshell", self.host, self.port)
    }

    /// One query's answer through `psql` (as PostgreSQL's own client sees it).
    pub fn query(&self, sql: &str) -> String {
        let url = format!("{}?sslmode=disable", self.url());
        let out = Command::new(bin_dir().join("psql")).args([&url, "-Atc", sql]).output().expect("psql");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: a "fast" shutdown, which ends its clients' sessions too.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
    }
}
