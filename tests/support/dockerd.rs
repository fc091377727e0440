//! A dockerd of the test's own (its own data root, exec root, socket, and the
//! containerd it starts), with no bridge and no iptables: the machine's dockerd
//! is not touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A dockerd of the test's own, stopped (with its containers) and unmounted on drop.
pub struct Dockerd {
    pub dir: PathBuf,
    child: Child,
}

impl Dockerd {
    pub fn start(dir: &Path, config: &serde_json::Value) -> Dockerd {
        let config_path = dir.join("daemon.json");
        std::fs::write(&config_path, config.to_string()).expect("daemon.json");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(&config_path)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("x"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd is not installed: install the Debian package `docker.io`");
        let mut d = Dockerd { dir: dir.to_owned(), child };
        let start = Instant::now();
        loop {
            if d.docker(&["info"]).status.success() {
                return d;
            }
            let exited = d.child.try_wait().expect("try_wait");
            if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
                panic!("the test's dockerd did not come up ({exited:?}); its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", self.dir.join("docker.sock").display()))
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker is not installed: install the Debian package `docker.io`")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever dockerd left mounted under its directories (overlays, netns), deepest first.
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

impl Dockerd {
    /// Its API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }
}
