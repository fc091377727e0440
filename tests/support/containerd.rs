//! A containerd of the test's own: its root, state, sockets and opt directory under
//! a temporary directory; never the one dockerd runs. Either with the CRI plugin off
//! (`start`, driven through `ctr`), or with it on (`start_cri`, driven as the
//! kubelet does), in a network namespace of its own where the pods' CNI bridge lives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Containerd {
    child: Child,
    pub address: PathBuf,
    dir: PathBuf,
}

/// The CRI plugin's settings a test chooses.
pub struct CriSetup<'a> {
    /// The pod sandbox ("pause") image, imported before the first pod.
    pub sandbox_image: &'a str,
    /// The runtime entries added beside runc's (`[…containerd.runtimes.NAME]` tables).
    pub runtimes: &'a str,
    /// The pods' bridge and subnet (`10.X.Y.0/24`).
    pub bridge: &'a str,
    pub subnet: &'a str,
    /// containerd's environment beside the test's (its shims and runtimes get it).
    pub env: &'a [(&'a str, &'a str)],
}

/// The pods' network: a bridge with host-local addresses, the bridge the pods'
/// gateway (so containerd's namespace, where a pod's egress proxy dials from,
/// reaches them), no masquerade.
fn cni_conflist(dir: &Path, bridge: &str, subnet: &str) -> String {
    let ipam = dir.join("ipam");
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "openshell-test",
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": ipam},
        }],
    })
    .to_string()
}

impl Containerd {
    /// The config's top: `top` holds keys that must come before the first table.
    fn base_config(d: &Path, top: &str) -> String {
        let d = d.display();
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n{top}\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.ttrpc\"\n[debug]\n  address = \"{d}/c.debug\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        )
    }

    /// containerd with the CRI plugin off, for `ctr`.
    pub fn start(dir: &Path) -> Containerd {
        let config = Self::base_config(dir, "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n");
        Self::spawn(dir, &config, &[], &[])
    }

    /// containerd with its CRI plugin on, as a kubelet's node runs it, inside a new
    /// network namespace (`unshare --net`): the pods' bridge and veths stay there.
    /// runc is the default runtime; `setup.runtimes` adds entries.
    pub fn start_cri(dir: &Path, setup: &CriSetup) -> Containerd {
        super::registry::require_file("/usr/lib/cni/bridge", "containernetworking-plugins");
        super::registry::require_file("/usr/bin/unshare", "util-linux");
        std::fs::create_dir_all(dir).expect("mkdir");
        let cni = dir.join("cni");
        std::fs::create_dir_all(&cni).expect("mkdir cni");
        std::fs::write(cni.join("10-openshell-test.conflist"), cni_conflist(dir, setup.bridge, setup.subnet))
            .expect("write the CNI config");
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        // restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and the pod
        // sandbox's oom_score_adj (-998) would fail both runtimes.
        let config = format!(
            "{base}[{cri}]\n  sandbox_image = \"{image}\"\n  restrict_oom_score_adj = true\n  \
             stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n  disable_apparmor = true\n\
             [{cri}.cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{cni}\"\n\
             [{cri}.containerd]\n  default_runtime_name = \"runc\"\n\
             [{cri}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n{runtimes}",
            base = Self::base_config(dir, ""),
            image = setup.sandbox_image,
            cni = cni.display(),
            runtimes = setup.runtimes,
        );
        let containerd = Self::spawn(dir, &config, &["/usr/bin/unshare", "--net", "--"], setup.env);
        // As on a node, loopback is up: connections to the node's own addresses
        // (the bridge's, say) go through it.
        let netns = format!("--net=/proc/{}/ns/net", containerd.child.id());
        let up = Command::new("/usr/bin/nsenter")
            .args([netns.as_str(), "ip", "link", "set", "lo", "up"])
            .status()
            .expect("nsenter (util-linux) and ip (iproute2)");
        assert!(up.success(), "bringing loopback up in containerd's network namespace");
        containerd
    }

    fn spawn(dir: &Path, config: &str, wrapper: &[&str], env: &[(&str, &str)]) -> Containerd {
        super::registry::require_file("/usr/bin/containerd", "containerd");
        super::registry::require_file("/usr/bin/ctr", "containerd");
        std::fs::create_dir_all(dir).expect("mkdir");
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.push("/usr/bin/containerd");
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .arg("--config")
            .arg(&config_path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd { child, address: dir.join("c.sock"), dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr("default", &["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not start: {}", c.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// containerd's process (in the network namespace of the pods' bridge, for
    /// `start_cri`).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ctr --address SOCK --namespace NS ARGS`.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/ctr")
            .arg("--address")
            .arg(&self.address)
            .args(["--namespace", namespace])
            .args(args)
            .output()
            .expect("run ctr")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
