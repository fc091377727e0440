//! The node installer (`install.sh`), run as the DaemonSet runs it (the same
//! environment, from `Settings`) against a host that is a temporary directory:
//! the real containerd validates and loads what it writes, a stub stands in for
//! `systemctl restart` (and for K3s rendering its template), and a loopback HTTP
//! server for the API server the node's label is patched on.

#[path = "support/containerd.rs"]
mod containerd;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use openshell_kubernetes::containerd::{self as entry, BinaryPath, ConfigVersion};
use openshell_kubernetes::installer::{self, Flavor, Settings};

const RUNTIME: &str = "#!/bin/sh\necho openshell-runtime 0.1.0\n";
const TOKEN: &str = "test-token";
/// What K3s renders before the template (its `base`), in a test.
const K3S_BASE: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\"\n";

/// Every request the fake API server was sent, as text.
struct Api {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Api {
    fn serve() -> Api {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let request = read_request(&mut reader);
                seen.lock().expect("lock").push(request);
                let mut stream = reader.into_inner();
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
            }
        });
        Api { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

fn read_request(reader: &mut impl BufRead) -> String {
    let (mut head, mut line) = (String::new(), String::new());
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        head.push_str(&line);
        line.clear();
    }
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|n| n.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    format!("{head}\n{}", String::from_utf8_lossy(&body))
}

/// A node: the host's files under `host/`, the installer's under `files/`.
struct Node {
    dir: tempfile::TempDir,
    settings: Settings,
    api: Api,
}

impl Node {
    fn new(flavor: Flavor) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let path = |p: &str| format!("{}/{p}", root.display());
        let binary = BinaryPath::new(Path::new(&path("host/usr/local/bin/openshell-runtime"))).expect("binary");
        let settings = Settings {
            flavor,
            host: String::new(),
            host_exec: String::new(),
            files: path("files"),
            source: path("image/openshell-runtime"),
            binary,
            containerd_config: path("host/etc/containerd/config.toml"),
            k3s_dir: path("host/var/lib/rancher/k3s/agent/etc/containerd"),
        };
        for (name, text) in installer::files(flavor, &settings.binary) {
            write(&root.join("files").join(name), &text);
        }
        write(&root.join("sa/token"), TOKEN);
        write(&root.join("sa/ca.crt"), "");
        let node = Node { dir, settings, api: Api::serve() };
        node.image_runtime(RUNTIME);
        node
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn image_runtime(&self, script: &str) {
        let source = Path::new(&self.settings.source);
        write(source, script);
        std::fs::set_permissions(source, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn config(&self) -> PathBuf {
        PathBuf::from(&self.settings.containerd_config)
    }

    fn drop_in(&self) -> PathBuf {
        self.config().with_file_name("conf.d/openshell.toml")
    }

    fn k3s(&self, name: &str) -> PathBuf {
        Path::new(&self.settings.k3s_dir).join(name)
    }

    /// Runs the installer; `restart` is the shell the stub runs after logging.
    fn install(&self, restart: &str) -> Output {
        let stub = self.root().join("restart.sh");
        write(&stub, &format!("echo restart >>{}/restarts\n{restart}\n", self.root().display()));
        Command::new("sh")
            .arg(self.root().join("files").join(installer::SCRIPT_NAME))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.settings.environment())
            .env("NODE_NAME", "node-1")
            .env("OPENSHELL_RESTART", format!("sh {}", stub.display()))
            .env("OPENSHELL_KUBE_API", &self.api.url)
            .env("OPENSHELL_KUBE_CREDENTIALS", self.root().join("sa"))
            .output()
            .expect("run install.sh")
    }

    fn restarts(&self) -> usize {
        std::fs::read_to_string(self.root().join("restarts")).map(|log| log.lines().count()).unwrap_or(0)
    }

    /// The installer's own files left on the host (markers, candidates), but the
    /// backup it keeps.
    fn leftovers(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(&self.root().join("host"), &mut found);
        found.retain(|p| {
            p.to_string_lossy().contains(".openshell-") && !p.to_string_lossy().ends_with(".openshell-backup")
        });
        found
    }
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            walk(&entry.path(), found);
        } else {
            found.push(entry.path());
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[track_caller]
fn assert_exit(output: &Output, code: i32, says: &str) {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(code), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(says) || stderr.contains(says), "{says:?} not said:\n{stdout}\n{stderr}");
}

fn assert_labeled(request: &str) {
    assert!(request.starts_with("PATCH /api/v1/nodes/node-1 HTTP/1.1\r\n"), "{request}");
    assert!(request.contains(&format!("Authorization: Bearer {TOKEN}\r\n")), "{request}");
    assert!(request.contains("Content-Type: application/merge-patch+json\r\n"), "{request}");
    assert!(request.ends_with("\n{\"metadata\":{\"labels\":{\"openshell.run/runtime\":\"installed\"}}}"), "{request}");
}

/// A containerd config with settings of its own, which must survive.
fn own_config(node: &Node) -> String {
    format!(
        "version = 2\nroot = \"{}/containerd-root\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n",
        node.root().display()
    )
}

#[test]
fn containerd_gets_the_runtime_validated_restarted_and_the_node_labeled() {
    let node = Node::new(Flavor::Containerd);
    let original = own_config(&node);
    write(&node.config(), &original);
    assert_exit(&node.install(""), 0, "containerd restarted with runtime handler openshell");

    let binary = Path::new(node.settings.binary.as_str());
    assert_eq!(read(binary), RUNTIME);
    assert_eq!(std::fs::metadata(binary).expect("binary").permissions().mode() & 0o777, 0o755);
    // The config sets up the CRI plugin itself: the entry goes at its end, not in a
    // drop-in (which containerd 1.6 would let replace the whole plugin section).
    assert_eq!(read(&node.config()), format!("{original}{}", block(&node, "")));
    assert!(!node.drop_in().exists());
    assert_eq!(read(&node.config().with_extension("toml.openshell-backup")), original);
    assert_keeps_own_settings(&node);
    assert_eq!(node.restarts(), 1);
    assert_eq!(node.leftovers(), Vec::<PathBuf>::new());
    let requests = node.api.requests();
    assert_eq!(requests.len(), 1);
    assert_labeled(&requests[0]);

    // Again (the pod restarted): nothing to change, no restart, the label again.
    assert_exit(&node.install(""), 0, "containerd has runtime handler openshell already");
    assert_eq!(read(&node.config()), format!("{original}{}", block(&node, "")));
    assert_eq!(node.restarts(), 1);
    assert_eq!(node.api.requests().len(), 2);
}

/// The entry at the end of a main config, with `runtimes` (tables) before its end.
fn block(node: &Node, runtimes: &str) -> String {
    format!("{}{runtimes}{}\n", entry::main_config_entry(&node.settings.binary, ConfigVersion::V2), entry::END_MARKER)
}

/// containerd's default runtime, as its dump writes it (every field explicit).
fn default_runc(node: &Node) -> String {
    let file = node.root().join("default.toml");
    write(&file, "version = 2\n");
    let output =
        Command::new("containerd").arg("--config").arg(&file).args(["config", "dump"]).output().expect("containerd");
    let dump = String::from_utf8_lossy(&output.stdout);
    let start = dump.find("        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]").expect("runc");
    let end = dump[start..].find("\n\n      [").expect("the table after runc's");
    format!("{}\n\n", &dump[start..start + end])
}

/// containerd loads the config with the entry and runc as its default was.
fn assert_keeps_runc(node: &Node) -> toml::Table {
    let loaded = containerd::dump(&node.config());
    containerd::assert_registered(&loaded, "io.containerd.grpc.v1.cri", node.settings.binary.as_str());
    let runc = containerd::at(&loaded, &["plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "runc"]);
    assert_eq!(runc["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    loaded
}

/// containerd loads the config with the entry and the settings of `own_config`.
fn assert_keeps_own_settings(node: &Node) {
    let loaded = containerd::dump(&node.config());
    containerd::assert_registered(&loaded, "io.containerd.grpc.v1.cri", node.settings.binary.as_str());
    let runc = containerd::at(&loaded, &["plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "runc"]);
    assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert_eq!(loaded["root"].as_str(), Some(format!("{}/containerd-root", node.root().display()).as_str()));
}

/// Without a CRI section of its own, the config imports the drop-in, which
/// carries runc as containerd's defaults had it (naming one runtime, a config
/// loses the default ones in containerd 1.x).
#[test]
fn a_config_without_cri_settings_imports_the_drop_in() {
    let node = Node::new(Flavor::Containerd);
    let original = format!("version = 2\nroot = \"{}/containerd-root\"\n", node.root().display());
    write(&node.config(), &original);
    assert_exit(&node.install(""), 0, "containerd restarted with runtime handler openshell");
    let drop_in = entry::drop_in(&node.settings.binary, ConfigVersion::V2);
    assert_eq!(read(&node.drop_in()), format!("{drop_in}{}", default_runc(&node)));
    let glob = node.drop_in().with_file_name("*.toml");
    assert_eq!(read(&node.config()), format!("imports = [\"{}\"]\n{original}", glob.display()));
    let loaded = assert_keeps_runc(&node);
    assert_eq!(loaded["root"].as_str(), Some(format!("{}/containerd-root", node.root().display()).as_str()));
    assert_eq!((node.restarts(), node.leftovers()), (1, vec![]));

    // The admin configures the CRI plugin in the main config later (to what it
    // is already): the drop-in would replace that, so the entry moves to the
    // main config's end, runc with it.
    let edited =
        format!("{}[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/opt/cni/bin\"\n", read(&node.config()));
    write(&node.config(), &edited);
    assert_exit(&node.install(""), 0, "containerd restarted with runtime handler openshell");
    assert!(!node.drop_in().exists());
    assert_eq!(read(&node.config()), format!("{edited}{}", block(&node, &default_runc(&node))));
    assert_keeps_runc(&node);
    assert_eq!((node.restarts(), node.leftovers()), (2, vec![]));
}

/// Debian's config: a CRI section, no runtime named. The entry goes at its end,
/// with runc as the defaults had it.
#[test]
fn a_config_naming_no_runtime_keeps_runc() {
    let node = Node::new(Flavor::Containerd);
    let original = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n";
    write(&node.config(), original);
    assert_exit(&node.install(""), 0, "containerd restarted with runtime handler openshell");
    assert_eq!(read(&node.config()), format!("{original}{}", block(&node, &default_runc(&node))));
    let loaded = assert_keeps_runc(&node);
    let cni = containerd::at(&loaded, &["plugins", "io.containerd.grpc.v1.cri", "cni"]);
    assert_eq!(cni["bin_dir"].as_str(), Some("/usr/lib/cni"));
    assert_exit(&node.install(""), 0, "containerd has runtime handler openshell already");
    assert_eq!((node.restarts(), node.leftovers()), (1, vec![]));
}

#[test]
fn existing_imports_are_extended_once() {
    let node = Node::new(Flavor::Containerd);
    write(&node.config(), "version = 2\nimports = []\n");
    assert_exit(&node.install(""), 0, "restarted");
    let glob = node.drop_in().with_file_name("*.toml");
    assert_eq!(read(&node.config()), format!("version = 2\nimports = [\"{}\", ]\n", glob.display()));
    containerd::assert_registered(
        &containerd::dump(&node.config()),
        "io.containerd.grpc.v1.cri",
        node.settings.binary.as_str(),
    );
    // A config that imports conf.d already is left as it is.
    let config = read(&node.config());
    std::fs::remove_file(node.drop_in()).expect("remove the drop-in");
    assert_exit(&node.install(""), 0, "restarted");
    assert_eq!(read(&node.config()), config);
    assert_eq!(node.restarts(), 2);
}

#[test]
fn a_node_without_a_config_gets_one_of_its_containerds_version() {
    let node = Node::new(Flavor::Containerd);
    assert_exit(&node.install(""), 0, "restarted");
    let glob = node.drop_in().with_file_name("*.toml");
    assert_eq!(read(&node.config()), format!("imports = [\"{}\"]\nversion = 2\n", glob.display()));
    assert!(!node.config().with_extension("toml.openshell-backup").exists());
    containerd::assert_registered(
        &containerd::dump(&node.config()),
        "io.containerd.grpc.v1.cri",
        node.settings.binary.as_str(),
    );
}

#[test]
fn a_failed_restart_puts_everything_back_and_restarts_again() {
    let node = Node::new(Flavor::Containerd);
    let original = own_config(&node);
    write(&node.config(), &original);
    // containerd "does not start" with openshell's runtime in its config.
    let output = node.install(&format!("! grep -q runtimes.openshell {}", node.config().display()));
    assert_exit(&output, 1, "the previous files are back");
    assert_eq!(read(&node.config()), original);
    assert_eq!(node.restarts(), 2, "once with the new files, once with the old");
    assert_eq!(node.leftovers(), Vec::<PathBuf>::new());
    assert_eq!(node.api.requests(), Vec::<String>::new(), "not labeled");
}

#[test]
fn a_config_containerd_does_not_load_is_left_alone() {
    let node = Node::new(Flavor::Containerd);
    let broken = "version = 2\n[plugins\n";
    write(&node.config(), broken);
    assert_exit(&node.install(""), 1, "containerd does not load /");
    assert_eq!(read(&node.config()), broken);
    assert!(!node.drop_in().exists());
    assert_eq!((node.restarts(), node.leftovers()), (0, vec![]));

    let version_1 = "[plugins.cri]\n  sandbox_image = \"pause:3.9\"\n";
    write(&node.config(), version_1);
    assert_exit(&node.install(""), 1, "a version 1 config");
    assert_eq!(read(&node.config()), version_1);
    assert!(!node.drop_in().exists());
}

#[test]
fn a_runtime_that_does_not_run_on_the_node_registers_nothing() {
    let node = Node::new(Flavor::Containerd);
    write(&node.config(), &own_config(&node));
    node.image_runtime("#!/bin/sh\nexit 127\n");
    assert_exit(&node.install(""), 1, "does not run on this node");
    assert!(!node.drop_in().exists());
    assert_eq!(read(&node.config()), own_config(&node));
    assert_eq!(node.restarts(), 0);
}

#[test]
fn a_run_interrupted_before_its_restart_is_finished_by_the_next() {
    let node = Node::new(Flavor::Containerd);
    assert_exit(&node.install(""), 0, "restarted");
    // As if the pod had died after writing the drop-in, before the restart.
    write(&node.drop_in().with_extension("toml.openshell-absent"), "");
    assert_exit(&node.install(""), 0, "containerd restarted");
    assert_eq!(node.restarts(), 2);
    assert_eq!(node.leftovers(), Vec::<PathBuf>::new());
}

/// What K3s does at start: render config.toml from the v2 template, `base` first.
fn k3s_renders(node: &Node) -> String {
    format!(
        "{{ printf '%s' '{K3S_BASE}'; sed 1d {tmpl}; }} >{out}",
        tmpl = node.k3s("config.toml.tmpl").display(),
        out = node.k3s("config.toml").display()
    )
}

#[test]
fn k3s_gets_its_templates_and_renders_the_entry() {
    let node = Node::new(Flavor::K3s);
    write(&node.k3s("config.toml"), K3S_BASE);
    assert_exit(&node.install(&k3s_renders(&node)), 0, "K3s restarted with runtime handler openshell");
    for version in ConfigVersion::ALL {
        let template = read(&node.k3s(version.k3s_template_name()));
        assert_eq!(template, entry::k3s_template(&node.settings.binary, version));
    }
    let rendered = containerd::dump(&node.k3s("config.toml"));
    containerd::assert_registered(&rendered, "io.containerd.grpc.v1.cri", node.settings.binary.as_str());
    assert_eq!((node.restarts(), node.leftovers()), (1, vec![]));
    assert_labeled(&node.api.requests()[0]);

    assert_exit(&node.install(&k3s_renders(&node)), 0, "K3s has runtime handler openshell already");
    assert_eq!(node.restarts(), 1);
}

#[test]
fn k3s_that_does_not_render_the_entry_gets_its_templates_back() {
    let node = Node::new(Flavor::K3s);
    write(&node.k3s("config.toml"), K3S_BASE);
    assert_exit(&node.install("true"), 1, "the previous files are back");
    for version in ConfigVersion::ALL {
        assert!(!node.k3s(version.k3s_template_name()).exists());
    }
    assert_eq!((node.restarts(), node.leftovers()), (2, vec![]));
    assert_eq!(node.api.requests(), Vec::<String>::new());
}

#[test]
fn a_k3s_template_of_someone_else_is_left_alone() {
    let node = Node::new(Flavor::K3s);
    let theirs = "{{ template \"base\" . }}\n# mine\n";
    write(&node.k3s("config.toml.tmpl"), theirs);
    assert_exit(&node.install(&k3s_renders(&node)), 1, "is not openshell's");
    assert_eq!(read(&node.k3s("config.toml.tmpl")), theirs);
    assert!(!node.k3s("config-v3.toml.tmpl").exists());
    assert_eq!(node.restarts(), 0);
}

#[test]
fn a_node_without_k3s_is_refused() {
    let node = Node::new(Flavor::K3s);
    assert_exit(&node.install(""), 1, "not a K3s node?");
    assert_eq!(node.restarts(), 0);
}

#[test]
fn the_installer_passes_shellcheck() {
    let output = Command::new("shellcheck")
        .args(["--shell=sh", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("stdin").write_all(installer::SCRIPT.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("shellcheck: {e}: install Debian's shellcheck (.ci/run does)"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}
