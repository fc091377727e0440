//! End-to-end: `openshell lock`, `fetch` and `store` against a signed Debian
//! archive served on loopback (built by the test with dpkg-deb and gpg).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::debian_archive::{self, Archive, Pkg};
use support::server::Server;

fn openshell(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_openshell"))
        .args(args)
        .current_dir(dir)
        .env_remove("OPENSHELL_STORE")
        .env_remove("OPENSHELL_DEBIAN_MIRROR")
        .env("HOME", dir)
        .output()
        .expect("run openshell")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn packages() -> Vec<Pkg> {
    vec![
        Pkg {
            name: "hello-openshell",
            version: "1.0-1",
            arch: "amd64",
            fields: "Depends: libgreet (>= 1.0) | libgreet-compat, base-files",
            files: vec![("/usr/bin/hello-openshell", b"#!/bin/sh\necho hello from openshell\n".to_vec(), 0o755)],
        },
        Pkg {
            name: "libgreet",
            version: "0.9-1",
            arch: "amd64",
            fields: "",
            files: vec![("/usr/lib/libgreet.so.0", b"old".to_vec(), 0o644)],
        },
        Pkg {
            name: "libgreet",
            version: "1.2-1",
            arch: "amd64",
            fields: "",
            files: vec![("/usr/lib/libgreet.so.1", b"new".to_vec(), 0o644)],
        },
        debian_archive::base_files(),
        Pkg {
            name: "unrelated",
            version: "1",
            arch: "all",
            fields: "",
            files: vec![("/usr/share/unrelated", b"x".to_vec(), 0o644)],
        },
    ]
}

struct Env {
    dir: tempfile::TempDir,
    server: Server,
    archive: Archive,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start();
        let work = dir.path().join("archive-build");
        std::fs::create_dir_all(&work).expect("mkdir");
        let archive = debian_archive::serve(&server, &work, "testing", &packages());
        std::fs::write(
            dir.path().join("image.yaml"),
            "name: openshell/test\ndebian:\n  suites: [testing]\n  packages: [hello-openshell]\nfiles:\n  - path: /etc/motd\n    content: \"welcome\\n\"\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\ncmd: [/usr/bin/hello-openshell]\n",
        )
        .expect("write definition");
        Env { dir, server, archive }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store(&self, name: &str) -> String {
        self.path().join(name).display().to_string()
    }

    fn lock(&self, extra: &[&str]) -> Output {
        let keyring = self.archive.keyring.display().to_string();
        let store = self.store("store");
        let mut args =
            vec!["lock", "image.yaml", "--debian-mirror", &self.archive.base, "--keyring", &keyring, "--store", &store];
        args.extend_from_slice(extra);
        openshell(self.path(), &args)
    }
}

/// A test environment whose loopback server is also an npm registry of `pkgs`
/// (packed under `npm-build/` of the environment); the registry's URL.
fn with_npm_registry(pkgs: &[support::npm_registry::NpmPkg]) -> (Env, String) {
    let env = Env::new();
    let work = env.path().join("npm-build");
    std::fs::create_dir_all(&work).expect("mkdir");
    let registry = support::npm_registry::serve(&env.server, &work, pkgs);
    (env, registry)
}

#[test]
fn lock_fetch_export_import_offline() {
    let env = Env::new();
    let o = env.lock(&["-o", "test.lock"]);
    assert!(o.status.success(), "{}", text(&o));
    let lock = std::fs::read_to_string(env.path().join("test.lock")).expect("lockfile");
    assert!(lock.contains("name = \"hello-openshell\""), "{lock}");
    assert!(lock.contains("name = \"libgreet\"\nversion = \"1.2-1\""), "highest satisfying version:\n{lock}");
    assert!(lock.contains("name = \"base-files\""), "dependency followed");
    assert!(!lock.contains("unrelated"), "only the closure");
    assert!(!lock.contains("127.0.0.1"), "no source address in the lockfile");
    assert!(lock.contains("path = \"pool/main/h/hello-openshell/hello-openshell_1.0-1_amd64.deb\""));

    // lock again: the same bytes
    let o = env.lock(&["-o", "again.lock"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(env.path().join("again.lock")).expect("again"), lock.as_bytes());

    let store = env.store("store");
    let o = openshell(
        env.path(),
        &["--output", "json", "fetch", "test.lock", "--debian-mirror", &env.archive.base, "--store", &store],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["artifacts"], 4, "3 packages + 1 file");
    assert_eq!(v["downloaded"], 3);
    let o = openshell(
        env.path(),
        &["--output", "json", "fetch", "test.lock", "--debian-mirror", &env.archive.base, "--store", &store],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["downloaded"], 0, "second fetch does nothing");

    // Air gap: export the closure, import it elsewhere, fetch with no reachable source.
    let o = openshell(env.path(), &["store", "export", "test.lock", "-o", "closure.tar", "--store", &store]);
    assert!(o.status.success(), "{}", text(&o));
    let offline = env.store("offline-store");
    let o = openshell(env.path(), &["store", "import", "closure.tar", "--store", &offline]);
    assert!(o.status.success(), "{}", text(&o));
    let o = openshell(
        env.path(),
        &["fetch", "test.lock", "--debian-mirror", "http://127.0.0.1:9/none/", "--store", &offline],
    );
    assert!(o.status.success(), "offline fetch needs nothing: {}", text(&o));
    let o = openshell(env.path(), &["store", "verify", "test.lock", "--store", &offline]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn tampering_is_refused_everywhere() {
    let env = Env::new();
    let store = env.store("store");
    assert!(env.lock(&["-o", "test.lock"]).status.success());

    // A tampered lockfile.
    let lock = std::fs::read_to_string(env.path().join("test.lock")).expect("lockfile");
    std::fs::write(env.path().join("edited.lock"), lock.replace("version = \"1.2-1\"", "version = \"1.3-1\""))
        .expect("write");
    let o = openshell(env.path(), &["fetch", "edited.lock", "--debian-mirror", &env.archive.base, "--store", &store]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("edited.lock: the lockfile was modified after `openshell lock`"), "{}", text(&o));

    // A tampered package on the mirror.
    let (pool, _) = env.archive.debs.iter().find(|(p, _)| p.contains("hello-openshell")).expect("deb");
    env.server.add(&format!("debian/{pool}"), b"!<arch>\nnot the real package".to_vec(), "application/octet-stream");
    let o = openshell(env.path(), &["fetch", "test.lock", "--debian-mirror", &env.archive.base, "--store", &store]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("debian hello-openshell 1.0-1") && t.contains("does not match its digest"), "{t}");

    // Tampered store content.
    let blobs: Vec<PathBuf> =
        std::fs::read_dir(env.path().join("store/blobs/sha256")).expect("blobs").flatten().map(|e| e.path()).collect();
    let victim =
        blobs.iter().find(|p| std::fs::metadata(p).map(|m| m.len() > 100).unwrap_or(false)).expect("a deb blob");
    std::fs::write(victim, b"flipped").expect("tamper");
    let o = openshell(env.path(), &["store", "verify", "test.lock", "--store", &store]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is corrupt"), "{}", text(&o));
}

#[test]
fn untrusted_indexes_are_refused() {
    let env = Env::new();
    // Signed by a key the keyring does not hold.
    let other = support::gpg::Key::new("someone else <other@example.com>");
    env.server.add("debian/dists/testing/InRelease", other.clearsign(env.archive.release.as_bytes()), "text/plain");
    let o = env.lock(&["-o", "x.lock"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("testing") && t.to_lowercase().contains("signature"), "{t}");
    assert!(!env.path().join("x.lock").exists());

    // Properly signed Release, but the Packages index does not match it.
    env.server.add(
        "debian/dists/testing/InRelease",
        env.archive.key.clearsign(env.archive.release.as_bytes()),
        "text/plain",
    );
    env.server.add(
        "debian/dists/testing/main/binary-amd64/Packages",
        env.archive.packages.replace("Version: 1.2-1", "Version: 9.9-1").into_bytes(),
        "text/plain",
    );
    let o = env.lock(&["-o", "x.lock"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("Packages"), "{}", text(&o));
}

#[test]
fn unsatisfiable_requests_name_the_chain() {
    let env = Env::new();
    std::fs::write(
        env.path().join("image.yaml"),
        "name: openshell/test\ndebian:\n  suites: [testing]\n  packages: [\"libgreet (>= 2.0)\"]\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\n",
    )
    .expect("write");
    let o = env.lock(&["-o", "x.lock"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("libgreet (>= 2.0)"), "{}", text(&o));
}

/// `openshell image ls|inspect|verify|rm`, and gc keeping built images alive.
#[test]
fn image_commands() {
    let env = Env::new();
    let store = env.store("store");
    let p = env.path();
    assert!(env.lock(&["-o", "t.lock"]).status.success());
    let ok = |args: &[&str]| {
        let o = openshell(p, args);
        assert!(o.status.success(), "openshell {args:?}: {}", text(&o));
        o
    };
    ok(&["fetch", "t.lock", "--debian-mirror", &env.archive.base, "--store", &store]);
    let digest =
        String::from_utf8_lossy(&ok(&["build", "t.lock", "-o", "oci", "--archive", "t.tar", "--store", &store]).stdout)
            .trim()
            .to_owned();

    let ls = ok(&["--output", "json", "image", "ls", "--store", &store]);
    let v: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("json");
    assert_eq!(v[0]["name"], "openshell/test");
    assert_eq!(v[0]["manifest"], digest.as_str());
    let inspect = ok(&["image", "inspect", "openshell/test", "--store", &store]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
    assert_eq!(v["config"]["config"]["Cmd"][0], "/usr/bin/hello-openshell");
    assert_eq!(v["manifest_digest"], digest.as_str());
    let short = &digest["sha256:".len().."sha256:".len() + 12];
    ok(&["image", "inspect", short, "--store", &store]);
    assert!(text(&ok(&["image", "verify", "openshell/test:latest", "--store", &store])).contains("blobs verified"));
    assert!(text(&ok(&["image", "verify", "oci", "--store", &store])).contains("verified"));
    assert!(text(&ok(&["image", "verify", "t.tar", "--store", &store])).contains("verified"));

    // gc keeps the image's blobs while it is recorded, frees them after `image rm`.
    std::fs::remove_file(p.join("t.lock")).expect("rm lock");
    let gc = ok(&["--output", "json", "store", "gc", "--dry-run", "--store", &store]);
    let before: serde_json::Value = serde_json::from_slice(&gc.stdout).expect("json");
    ok(&["image", "rm", "openshell/test", "--store", &store]);
    let o = openshell(p, &["image", "inspect", "openshell/test", "--store", &store]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no image `openshell/test`"), "{}", text(&o));
    let gc = ok(&["--output", "json", "store", "gc", "--dry-run", "--store", &store]);
    let after: serde_json::Value = serde_json::from_slice(&gc.stdout).expect("json");
    assert!(after["would_remove"].as_u64() > before["would_remove"].as_u64(), "{before} {after}");

    // A tampered layout on disk is caught.
    let blobs = p.join("oci/blobs/sha256");
    let victim = std::fs::read_dir(&blobs)
        .expect("blobs")
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a blob");
    let mut bytes = std::fs::read(&victim).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::remove_file(&victim).expect("unlink (it is a hard link into the store)");
    std::fs::write(&victim, bytes).expect("write");
    let o = openshell(p, &["image", "verify", "oci", "--store", &store]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// `build --compression zstd`: the same tars (diff_ids) as the gzip build in zstd
/// frames that Debian's `zstd -d` decompresses to them; reproducible (no-op rebuild,
/// `--check`); its own cache entry; its layout verifies and `image inspect` shows it.
#[test]
fn zstd_builds_hold_the_gzip_builds_tars() {
    let env = Env::new();
    let store = env.store("store");
    let p = env.path();
    assert!(env.lock(&["-o", "t.lock"]).status.success());
    let ok = |args: &[&str]| {
        let o = openshell(p, args);
        assert!(o.status.success(), "openshell {args:?}: {}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap_or(serde_json::Value::Null)
    };
    ok(&["fetch", "t.lock", "--debian-mirror", &env.archive.base, "--store", &store]);
    let gzip = ok(&["--output", "json", "build", "t.lock", "--store", &store]);
    let zstd = ok(&["--output", "json", "build", "t.lock", "--compression", "zstd", "-o", "oci", "--store", &store]);
    assert_eq!((gzip["compression"].as_str(), zstd["compression"].as_str()), (Some("gzip"), Some("zstd")));
    assert_eq!(zstd["cached"], false, "the gzip build's cache entry is not the zstd build's");
    assert_ne!(gzip["manifest"], zstd["manifest"]);
    let layers = |v: &serde_json::Value, field: &str| -> Vec<String> {
        v["layers"].as_array().expect("layers").iter().map(|l| l[field].as_str().expect(field).to_owned()).collect()
    };
    assert_eq!(layers(&gzip, "diff_id"), layers(&zstd, "diff_id"));
    assert!(layers(&gzip, "digest").iter().zip(layers(&zstd, "digest")).all(|(g, z)| *g != z));
    assert!(layers(&zstd, "media_type").iter().all(|m| m == "application/vnd.oci.image.layer.v1.tar+zstd"));

    // The oracle: Debian's zstd decompresses each layer to its diff_id.
    require("zstd", "zstd");
    for (digest, diff_id) in layers(&zstd, "digest").iter().zip(layers(&zstd, "diff_id")) {
        let blob = p.join("oci/blobs/sha256").join(digest.trim_start_matches("sha256:"));
        let o = Command::new("zstd").args(["-d", "-c", "-q"]).arg(&blob).output().expect("zstd");
        assert!(o.status.success(), "zstd -d {digest}: {}", text(&o));
        assert_eq!(openshell_store::Digest::sha256(&o.stdout).to_string(), diff_id, "layer {digest}");
    }

    // Reproducible: a no-op rebuild, and two builds in fresh stores.
    let again = ok(&["--output", "json", "build", "t.lock", "--compression", "zstd", "--store", &store]);
    assert_eq!((again["cached"].as_bool(), &again["manifest"]), (Some(true), &zstd["manifest"]));
    let check = ok(&["--output", "json", "build", "t.lock", "--compression", "zstd", "--check", "--store", &store]);
    assert_eq!((check["reproducible"].as_bool(), &check["manifest"]), (Some(true), &zstd["manifest"]));

    // Read back: the layout verifies, the recorded image inspects with zstd layers.
    let o = openshell(p, &["image", "verify", "oci", "--store", &store]);
    assert!(o.status.success(), "{}", text(&o));
    let inspect = ok(&["image", "inspect", "openshell/test", "--store", &store]);
    assert_eq!(inspect["manifest_digest"], zstd["manifest"]);
    let types: Vec<&str> = inspect["manifest"]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().expect("mediaType"))
        .collect();
    assert!(!types.is_empty() && types.iter().all(|t| t.ends_with("tar+zstd")), "{types:?}");
    let compressor = inspect["manifest"]["annotations"]["dev.openshell.layer.compressor"].as_str().expect("annotation");
    assert!(compressor.starts_with("zstd ") && compressor.contains("level 12"), "{compressor}");

    // An unknown compression is named.
    let o = openshell(p, &["build", "t.lock", "--compression", "xz", "--store", &store]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("unknown layer compression `xz`"), "{}", text(&o));
}

/// A static "hello" binary compiled by the test (gcc with static libc), so the test
/// image runs under docker with nothing else in it.
fn static_hello(dir: &Path) -> Vec<u8> {
    let src = dir.join("hello.c");
    std::fs::write(&src, "#include <stdio.h>\nint main(void){puts(\"hello from openshell\");return 0;}\n")
        .expect("write");
    let bin = dir.join("hello");
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc is not installed: install gcc and libc6-dev");
    assert!(out.status.success(), "gcc -static failed (install libc6-dev): {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&bin).expect("read binary")
}

fn require(tool: &str, package: &str) {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`{tool}` is not installed: install the Debian package `{package}` (.ci/run does)");
}

/// Lock, fetch and build an image from the test archive; check it with real OCI
/// tools and docker; check it is reproducible and that a no-op rebuild does nothing.
#[test]
fn build_checks_with_oci_tools_and_docker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start();
    let work = dir.path().join("archive-build");
    std::fs::create_dir_all(&work).expect("mkdir");
    let hello = static_hello(&work);
    let pkgs = vec![
        Pkg {
            name: "hello-static",
            version: "1.0-1",
            arch: "amd64",
            fields: "Depends: greeting-data",
            files: vec![("/usr/bin/hello", hello, 0o755), ("/usr/bin/su-demo", b"#!/bin/false\n".to_vec(), 0o4755)],
        },
        Pkg {
            name: "greeting-data",
            version: "2",
            arch: "all",
            fields: "",
            files: vec![("/usr/share/greeting/text", b"hello\n".to_vec(), 0o644)],
        },
    ];
    let archive = debian_archive::serve(&server, &work, "testing", &pkgs);
    std::fs::write(
        dir.path().join("image.yaml"),
        "name: openshell/e2e\ntag: \"1\"\ndebian:\n  suites: [testing]\n  packages: [hello-static]\nfiles:\n  - path: /etc/motd\n    content: \"built by openshell\\n\"\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\nentrypoint: [/usr/bin/hello]\nlabels:\n  org.opencontainers.image.title: e2e\n",
    )
    .expect("definition");
    let p = dir.path();
    let store = dir.path().join("store").display().to_string();
    let keyring = archive.keyring.display().to_string();
    let run = |args: &[&str]| {
        let o = openshell(p, args);
        assert!(o.status.success(), "openshell {args:?}: {}", text(&o));
        o
    };
    run(&[
        "lock",
        "image.yaml",
        "-o",
        "e2e.lock",
        "--debian-mirror",
        &archive.base,
        "--keyring",
        &keyring,
        "--store",
        &store,
    ]);
    run(&["fetch", "e2e.lock", "--debian-mirror", &archive.base, "--store", &store]);
    let o = run(&["--output", "json", "build", "e2e.lock", "-o", "oci", "--archive", "image.tar", "--store", &store]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let manifest = v["manifest"].as_str().expect("manifest").to_owned();
    assert_eq!(v["cached"], false);
    let origins: Vec<&str> =
        v["layers"].as_array().expect("layers").iter().filter_map(|l| l["origin"].as_str()).collect();
    assert_eq!(origins, ["debian", "files", "generated"]);

    // No-op rebuild: served from the cache, same digest.
    let o = run(&["--output", "json", "build", "e2e.lock", "--store", &store]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["cached"], true);
    assert_eq!(v["manifest"], manifest.as_str());

    // Two builds in separate stores and directories give the same bytes.
    let o = run(&["build", "e2e.lock", "--check", "--store", &store]);
    assert!(text(&o).contains(&format!("reproducible: both builds gave {manifest}")), "{}", text(&o));

    // A fresh store built from an imported closure gives the same digest, offline.
    run(&["store", "export", "e2e.lock", "-o", "closure.tar", "--store", &store]);
    let other = dir.path().join("other-store").display().to_string();
    run(&["store", "import", "closure.tar", "--store", &other]);
    let o = run(&["build", "e2e.lock", "--store", &other]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), manifest, "same digest from another store");

    // Missing artifacts are named, with the fix.
    let empty = dir.path().join("empty-store").display().to_string();
    let o = openshell(p, &["build", "e2e.lock", "--store", &empty]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("debian hello-static 1.0-1") && text(&o).contains("run `openshell fetch e2e.lock`"),
        "{}",
        text(&o)
    );

    // Real OCI tools.
    require("skopeo", "skopeo");
    require("umoci", "umoci");
    let oci = dir.path().join("oci");
    let o = Command::new("oci-image-tool").args(["validate", "--type", "image", "--ref", "name=1"]).arg(&oci).output();
    let o = o.expect("oci-image-tool is not installed: install the Debian package `oci-image-tool`");
    assert!(o.status.success(), "oci-image-tool validate: {}", text(&o));
    let o = Command::new("skopeo").arg("inspect").arg(format!("oci:{}:1", oci.display())).output().expect("skopeo");
    assert!(o.status.success(), "skopeo inspect: {}", text(&o));
    let inspected: serde_json::Value = serde_json::from_slice(&o.stdout).expect("skopeo json");
    assert_eq!(inspected["Digest"], manifest.as_str());
    sbom_referrer(p, &oci, &manifest, &store);
    // The archive carries the same referrer, and skopeo reads the image from it.
    let unpacked = dir.path().join("archive-unpacked");
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    let o = Command::new("tar").arg("-xf").arg(dir.path().join("image.tar")).arg("-C").arg(&unpacked).output();
    assert!(o.expect("tar").status.success(), "tar -xf image.tar");
    sbom_referrer(p, &unpacked, &manifest, &store);
    let archive = format!("oci-archive:{}:1", dir.path().join("image.tar").display());
    let o = Command::new("skopeo").arg("inspect").arg(archive).output().expect("skopeo");
    assert!(o.status.success(), "skopeo inspect oci-archive: {}", text(&o));
    let bundle = dir.path().join("bundle");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", oci.display()))
        .arg(&bundle)
        .output()
        .expect("umoci");
    assert!(o.status.success(), "umoci unpack: {}", text(&o));
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read(rootfs.join("etc/motd")).expect("motd"), b"built by openshell\n");
    assert!(
        std::fs::read_to_string(rootfs.join("etc/passwd"))
            .expect("passwd")
            .contains("sandbox:x:1000:1000::/sandbox:/bin/bash")
    );
    assert!(
        std::fs::read_to_string(rootfs.join("var/lib/dpkg/status"))
            .expect("status")
            .contains("Package: hello-static\nStatus: install ok installed")
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        std::fs::metadata(rootfs.join("usr/bin/su-demo")).expect("meta").permissions().mode() & 0o7777,
        0o4755,
        "setuid kept"
    );
    assert_eq!(std::fs::metadata(rootfs.join("sandbox")).expect("home").uid(), 1000);

    // docker load + docker run prints the expected output.
    require("docker", "docker.io");
    let o = Command::new("docker").args(["load", "-i"]).arg(dir.path().join("image.tar")).output().expect("docker");
    assert!(o.status.success(), "docker load (is dockerd running? .ci/run starts it): {}", text(&o));
    let o = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "openshell/e2e:1"])
        .output()
        .expect("docker run");
    assert!(o.status.success(), "docker run: {}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from openshell\n");
    let _ = Command::new("docker").args(["rmi", "openshell/e2e:1"]).output();
}

/// `build -o` (and `--archive`) put the lockfile's SPDX SBOM beside the image as an OCI referrer: listed
/// in index.json after the image, `subject` the image's manifest, the document (the
/// same bytes `openshell sbom` writes) its layer; the layout still verifies (and
/// skopeo, umoci and oci-image-tool, above and below, read the image by its tag).
fn sbom_referrer(dir: &Path, oci: &Path, manifest: &str, store: &str) {
    let blob = |digest: &str| {
        std::fs::read(oci.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).expect("referrer blob")
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).expect("index")).expect("index json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2, "{index}");
    assert_eq!(manifests[0]["digest"], manifest, "the image comes first, unchanged");
    let desc = &manifests[1];
    assert_eq!(desc["artifactType"], "application/spdx+json", "{desc}");
    assert_eq!(desc["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert!(desc.get("annotations").is_none(), "no ref.name: tools picking the image by tag ignore it");
    let referrer: serde_json::Value =
        serde_json::from_slice(&blob(desc["digest"].as_str().expect("digest"))).expect("json");
    assert_eq!(referrer["subject"]["digest"], manifest);
    assert_eq!(referrer["artifactType"], "application/spdx+json");
    assert_eq!(referrer["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
    assert_eq!(blob(referrer["config"]["digest"].as_str().expect("config")), b"{}");
    assert_eq!(referrer["layers"][0]["mediaType"], "application/spdx+json");
    let document = blob(referrer["layers"][0]["digest"].as_str().expect("layer"));
    let o = openshell(dir, &["sbom", "e2e.lock", "--store", store]);
    assert!(o.status.success(), "openshell sbom: {}", text(&o));
    assert_eq!(document, o.stdout, "the attached SBOM is the lockfile's");
    let o = openshell(dir, &["image", "verify", oci.to_str().expect("utf-8")]);
    assert!(o.status.success() && text(&o).contains("1 image(s)"), "image verify: {}", text(&o));
}

/// npm packages from a loopback registry: locked with their integrity, laid out as a
/// global install (dependencies nested under the package), bin links made.
#[test]
fn npm_packages_lock_fetch_and_build() {
    use support::npm_registry::NpmPkg;
    let (env, registry) = with_npm_registry(&[
        NpmPkg {
            name: "greeter",
            version: "1.0.0",
            manifest: r#""bin":{"greet":"cli.js"},"dependencies":{"@test/words":"^2.0.0"}"#,
            files: vec![
                ("cli.js", "#!/usr/bin/env node\nconsole.log(require('@test/words'))\n"),
                ("data.mode0666", "world-writable in the tarball\n"),
                ("tool.mode0700", "#!/bin/sh\n"),
            ],
        },
        NpmPkg {
            name: "@test/words",
            version: "1.0.0",
            manifest: "",
            files: vec![("index.js", "module.exports='old'\n")],
        },
        NpmPkg {
            name: "@test/words",
            version: "2.1.0",
            manifest: "",
            files: vec![("index.js", "module.exports='hi'\n")],
        },
    ]);
    std::fs::write(
        env.path().join("image.yaml"),
        "name: openshell/npm-test\ndebian:\n  suites: [testing]\n  packages: [base-files]\nnpm:\n  packages:\n    greeter: latest\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\n",
    )
    .expect("definition");
    let o = env.lock(&["-o", "npm.lock", "--npm-registry", &registry]);
    assert!(o.status.success(), "{}", text(&o));
    let lock = std::fs::read_to_string(env.path().join("npm.lock")).expect("lock");
    assert!(lock.contains("install = \"lib/node_modules/greeter/node_modules/@test/words\""), "{lock}");
    assert!(lock.contains("version = \"2.1.0\""), "{lock}");
    assert!(lock.contains("path = \"greeter/-/greeter-1.0.0.tgz\""), "registry-relative: {lock}");
    assert!(lock.contains("integrity = \"sha512-"), "{lock}");
    assert!(!lock.contains("127.0.0.1"), "{lock}");

    let store = env.store("store");
    let o = openshell(
        env.path(),
        &["fetch", "npm.lock", "--debian-mirror", &env.archive.base, "--npm-registry", &registry, "--store", &store],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = openshell(env.path(), &["--output", "json", "build", "npm.lock", "-o", "oci", "--store", &store]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let origins: Vec<&str> =
        v["layers"].as_array().expect("layers").iter().filter_map(|l| l["origin"].as_str()).collect();
    assert_eq!(origins, ["debian", "npm/greeter", "generated"]);

    let bundle = env.path().join("bundle");
    let oci = env.path().join("oci");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", oci.display()))
        .arg(&bundle)
        .output();
    let o = o.expect("umoci is not installed: install the Debian package `umoci`");
    assert!(o.status.success(), "umoci: {}", text(&o));
    let root = bundle.join("rootfs/usr/local");
    assert_eq!(
        std::fs::read_link(root.join("bin/greet")).expect("bin link"),
        Path::new("../lib/node_modules/greeter/cli.js")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("lib/node_modules/greeter/cli.js")).expect("cli").permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "bin targets are executable");
    let mode_of = |p: &str| std::fs::metadata(root.join(p)).expect("file").permissions().mode() & 0o7777;
    assert_eq!(mode_of("lib/node_modules/greeter/data.mode0666"), 0o644, "npm's umask: not group/world-writable");
    assert_eq!(mode_of("lib/node_modules/greeter/tool.mode0700"), 0o744, "execute bits kept, reads added");
    assert_eq!(
        std::fs::read_to_string(root.join("lib/node_modules/greeter/node_modules/@test/words/index.js")).expect("dep"),
        "module.exports='hi'\n"
    );
}

/// PyPI wheels from a loopback simple index (one project page in PEP 691 JSON with PEP
/// 658 metadata, one in PEP 503 HTML without): locked by the index's sha256 with no
/// host in the lockfile, the dependency pulled through Requires-Dist, installed into
/// site-packages with a console-script launcher, and a tampered wheel refused by fetch.
#[test]
fn pypi_packages_lock_fetch_and_build() {
    use support::pypi_index::{self, Page, Wheel};
    let env = Env::new();
    let words = |version: &'static str, text: &'static str| Wheel {
        dist: "py_words",
        name: "py-words",
        version,
        requires: vec!["colorama>=0.4; sys_platform == \"win32\""],
        entry_points: "",
        files: vec![("py_words/__init__.py", text, 0o644)],
    };
    let (index, served) = pypi_index::serve(
        &env.server,
        &[
            (
                "greet-py",
                Page::Json,
                vec![Wheel {
                    dist: "greet_py",
                    name: "greet-py",
                    version: "1.0.0",
                    requires: vec!["py-words>=2", "pytest; extra == \"test\""],
                    entry_points: "[console_scripts]\ngreet-py = greet_py.cli:main\n",
                    files: vec![
                        ("greet_py/__init__.py", "", 0o644),
                        ("greet_py/cli.py", "import py_words\n\ndef main():\n    print(py_words.WORD)\n", 0o644),
                        ("greet_py/run.sh", "#!/bin/sh\nexec greet-py\n", 0o755),
                    ],
                }],
            ),
            ("py-words", Page::Html, vec![words("1.0", "WORD = 'old'\n"), words("2.1.0", "WORD = 'hi'\n")]),
        ],
    );
    std::fs::write(
        env.path().join("image.yaml"),
        "name: openshell/pypi-test\ndebian:\n  suites: [testing]\n  packages: [base-files]\npypi:\n  packages: [greet-py]\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\n",
    )
    .expect("definition");
    let o = env.lock(&["-o", "py.lock", "--pypi-index", &index]);
    assert!(o.status.success(), "{}", text(&o));
    let lock = std::fs::read_to_string(env.path().join("py.lock")).expect("lock");
    assert!(lock.contains("project = \"greet-py\""), "{lock}");
    assert!(lock.contains("filename = \"greet_py-1.0.0-py3-none-any.whl\""), "{lock}");
    assert!(lock.contains("project = \"py-words\""), "dependency pulled through Requires-Dist: {lock}");
    assert!(lock.contains("filename = \"py_words-2.1.0-py3-none-any.whl\""), "highest matching version: {lock}");
    assert!(!lock.contains("py_words-1.0-"), "{lock}");
    assert!(!lock.contains("colorama") && !lock.contains("pytest"), "markers evaluated for the target: {lock}");
    for s in &served {
        if lock.contains(&s.filename) {
            let sha = openshell_store::Digest::sha256(&s.bytes);
            assert!(lock.contains(&format!("sha256 = \"{sha}\"")), "the index's sha256 for {}: {lock}", s.filename);
            assert!(lock.contains(&format!("size = {}", s.bytes.len())), "{lock}");
        }
    }
    let paths = served.iter().map(|s| s.path.as_str());
    for host in ["127.0.0.1", "http", "simple/"].into_iter().chain(paths) {
        assert!(!lock.contains(host), "no source address in the lockfile ({host}):\n{lock}");
    }

    let store = env.store("store");
    let fetch = |lockfile: &str, store: &str| {
        openshell(
            env.path(),
            &["fetch", lockfile, "--debian-mirror", &env.archive.base, "--pypi-index", &index, "--store", store],
        )
    };
    let o = fetch("py.lock", &store);
    assert!(o.status.success(), "{}", text(&o));
    let o = openshell(env.path(), &["--output", "json", "build", "py.lock", "-o", "oci", "--store", &store]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let origins: Vec<&str> =
        v["layers"].as_array().expect("layers").iter().filter_map(|l| l["origin"].as_str()).collect();
    assert_eq!(origins, ["debian", "pypi", "generated"]);
    let o = openshell(env.path(), &["build", "py.lock", "--check", "--store", &store]);
    assert!(o.status.success() && text(&o).contains("reproducible"), "{}", text(&o));

    let bundle = env.path().join("bundle");
    let oci = env.path().join("oci");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", oci.display()))
        .arg(&bundle)
        .output();
    let o = o.expect("umoci is not installed: install the Debian package `umoci`");
    assert!(o.status.success(), "umoci: {}", text(&o));
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let rootfs = bundle.join("rootfs");
    let site = rootfs.join("usr/local/lib/python3.13/dist-packages");
    let mode = |p: &Path| std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode();
    assert_eq!(
        std::fs::read_to_string(site.join("greet_py/cli.py")).expect("cli.py"),
        "import py_words\n\ndef main():\n    print(py_words.WORD)\n"
    );
    assert_eq!(std::fs::read_to_string(site.join("py_words/__init__.py")).expect("dependency"), "WORD = 'hi'\n");
    for di in ["greet_py-1.0.0.dist-info", "py_words-2.1.0.dist-info"] {
        for f in ["METADATA", "WHEEL", "RECORD", "INSTALLER"] {
            assert!(site.join(di).join(f).is_file(), "{di}/{f}");
        }
    }
    assert!(
        std::fs::read_to_string(site.join("greet_py-1.0.0.dist-info/RECORD"))
            .expect("RECORD")
            .contains("../../../bin/greet-py,sha256="),
        "the launcher is recorded for pip"
    );
    assert_eq!(mode(&site.join("greet_py/cli.py")) & 0o7777, 0o644);
    assert_eq!(mode(&site.join("greet_py/run.sh")) & 0o7777, 0o755, "the zip's executable bit is kept");
    assert_eq!(mode(&site.join("greet_py")) & 0o7777, 0o755);
    assert_eq!(std::fs::metadata(site.join("greet_py")).expect("dir").uid(), 0);
    let launcher = rootfs.join("usr/local/bin/greet-py");
    let script = std::fs::read_to_string(&launcher).expect("console script launcher");
    assert!(script.starts_with("#!/usr/bin/python3\n"), "{script}");
    assert!(script.contains("from greet_py.cli import main\n"), "{script}");
    assert_eq!(mode(&launcher) & 0o7777, 0o755);
    let mut stack = vec![site.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir").flatten() {
            let p = e.path();
            assert!(
                p.extension().is_none_or(|x| x != "pyc") && !p.ends_with("__pycache__"),
                "no bytecode: {}",
                p.display()
            );
            if p.is_dir() {
                stack.push(p);
            }
        }
    }

    // A tampered wheel on the index is refused by fetch.
    let dep = served.iter().find(|s| s.filename == "py_words-2.1.0-py3-none-any.whl").expect("served");
    let mut evil = dep.bytes.clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    env.server.add(&dep.path, evil, "application/octet-stream");
    let o = fetch("py.lock", &env.store("fresh-store"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("py_words==2.1.0") && t.contains("does not match its digest"), "{t}");
}

/// Copies the blobs of store `from` into a new store `to` (own files, no derived
/// data and no build cache).
fn copy_store(from: &Path, to: &Path) {
    for algo in ["sha256", "sha512"] {
        let dir = to.join("blobs").join(algo);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for e in std::fs::read_dir(from.join("blobs").join(algo)).expect("blobs").flatten() {
            std::fs::copy(e.path(), dir.join(e.file_name())).expect("copy blob");
        }
    }
}

/// Replaces a blob's content in place, as anyone with write access to the store could.
fn alter_blob(store: &Path, digest: &str, content: &[u8]) -> PathBuf {
    let (algo, hex) = digest.split_once(':').expect("algo:hex");
    let path = store.join("blobs").join(algo).join(hex);
    assert!(path.is_file(), "{} is stored", path.display());
    std::fs::remove_file(&path).expect("unlink");
    std::fs::write(&path, content).expect("write");
    path
}

/// Store blobs are re-hashed when a build reads them: a .deb, an npm tarball, a
/// wheel or a file whose stored bytes were replaced after `fetch` (by another valid
/// artifact, which the unpackers would happily use) fails the build, naming the
/// blob; so does a derived blob (a .deb's data tar) altered between builds. The
/// untouched store builds (the positive control).
#[test]
fn builds_refuse_blobs_altered_in_the_store() {
    use support::npm_registry::NpmPkg;
    use support::pypi_index::{self, Page, Wheel};
    let words = |version: &'static str, text: &'static str| NpmPkg {
        name: "@test/words",
        version,
        manifest: "",
        files: vec![("index.js", text)],
    };
    let (env, registry) =
        with_npm_registry(&[words("1.0.0", "module.exports='old'\n"), words("2.1.0", "module.exports='hi'\n")]);
    let work = env.path().join("npm-build");
    let wheel = |version: &'static str, text: &'static str| Wheel {
        dist: "py_words",
        name: "py-words",
        version,
        requires: vec![],
        entry_points: "",
        files: vec![("py_words/__init__.py", text, 0o644)],
    };
    let (index, served) = pypi_index::serve(
        &env.server,
        &[("py-words", Page::Json, vec![wheel("1.0", "W = 1\n"), wheel("2.1.0", "W = 2\n")])],
    );
    std::fs::write(
        env.path().join("image.yaml"),
        "name: openshell/altered\ndebian:\n  suites: [testing]\n  packages: [hello-openshell]\nnpm:\n  packages:\n    \"@test/words\": \"2.1.0\"\npypi:\n  packages: [\"py-words==2.1.0\"]\nfiles:\n  - path: /etc/motd\n    content: \"welcome\\n\"\nuser: { name: sandbox, uid: 1000, gid: 1000, home: /sandbox }\n",
    )
    .expect("definition");
    let o = env.lock(&["-o", "a.lock", "--npm-registry", &registry, "--pypi-index", &index]);
    assert!(o.status.success(), "{}", text(&o));
    let store = env.store("store");
    let o = openshell(
        env.path(),
        &[
            "fetch",
            "a.lock",
            "--debian-mirror",
            &env.archive.base,
            "--npm-registry",
            &registry,
            "--pypi-index",
            &index,
            "--store",
            &store,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let lock = openshell_build::lockfile::Lockfile::load(&env.path().join("a.lock")).expect("lockfile");
    let artifacts = lock.artifacts().expect("artifacts");
    let recorded = |label: &str| -> String {
        let a = artifacts.iter().find(|a| a.label == label);
        let labels: Vec<&str> = artifacts.iter().map(|a| a.label.as_str()).collect();
        a.unwrap_or_else(|| panic!("{label} in the lockfile: {labels:?}")).digest.to_string()
    };
    let other_deb = env.archive.debs.iter().find(|(p, _)| p.contains("libgreet_0.9")).expect("libgreet 0.9").1.clone();
    let other_tgz = std::fs::read(work.join("npm-@test_words-1.0.0/pkg.tgz")).expect("words 1.0.0");
    let other_wheel = served.iter().find(|s| s.filename.starts_with("py_words-1.0-")).expect("wheel 1.0").bytes.clone();
    let victims = [
        ("deb", recorded("debian libgreet 1.2-1"), other_deb),
        ("npm", recorded("npm @test/words@2.1.0"), other_tgz),
        ("wheel", recorded("pypi py_words==2.1.0"), other_wheel),
        ("file", recorded("file /etc/motd"), b"altered\n".to_vec()),
    ];

    let mut wrong = Vec::new();
    let control = env.path().join("control-store");
    copy_store(Path::new(&store), &control);
    let o = openshell(env.path(), &["build", "a.lock", "--store", &control.display().to_string()]);
    assert!(o.status.success(), "the untouched store builds: {}", text(&o));

    for (kind, digest, replacement) in victims {
        let copy = env.path().join(format!("store-{kind}"));
        copy_store(Path::new(&store), &copy);
        alter_blob(&copy, &digest, &replacement);
        let o = openshell(env.path(), &["build", "a.lock", "--store", &copy.display().to_string()]);
        wrong.extend(not_refused(&format!("build with the {kind} blob altered"), &o, &digest));
    }

    // A derived blob (the uncompressed data tar kept for each .deb) altered after a build.
    // hello-openshell's data tar: flip a byte of its script (a valid tar still).
    let derived = std::fs::read_dir(control.join("derived")).expect("derived").flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let digest = std::fs::read_to_string(e.path()).expect("record").trim().to_owned();
        let bytes = std::fs::read(control.join("blobs/sha256").join(digest.split_once(':')?.1)).ok()?;
        let at = bytes.windows(10).position(|w| w == b"hello from")?;
        name.starts_with("deb-data-").then_some((digest, bytes, at))
    });
    let (derived, mut bytes, at) = derived.expect("hello-openshell's derived data tar");
    bytes[at] = b'j';
    alter_blob(&control, &derived, &bytes);
    std::fs::remove_dir_all(control.join("builds")).expect("forget the cached build");
    let o = openshell(env.path(), &["build", "a.lock", "--store", &control.display().to_string()]);
    wrong.extend(not_refused("build with a derived data tar altered", &o, &derived));

    // The image's manifest and config, as the gateway reads them to prepare a
    // sandbox's rootfs (and `image inspect` to show them), altered after the build.
    let control = control.display().to_string();
    let inspect = || openshell(env.path(), &["image", "inspect", "openshell/altered", "--store", &control]);
    let o = inspect();
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let manifest = v["manifest_digest"].as_str().expect("manifest").to_owned();
    let config = v["manifest"]["config"]["digest"].as_str().expect("config").to_owned();
    for digest in [config, manifest] {
        let (_, hex) = digest.split_once(':').expect("digest");
        let original = std::fs::read(Path::new(&control).join("blobs/sha256").join(hex)).expect("document");
        let altered = String::from_utf8(original.clone()).expect("json").replacen("amd64", "arm64", 1);
        let altered = if altered.as_bytes() == original { altered.replacen("sha256:", "sha256:0", 1) } else { altered };
        alter_blob(Path::new(&control), &digest, altered.as_bytes());
        wrong.extend(not_refused("image inspect with a document altered", &inspect(), &digest));
        alter_blob(Path::new(&control), &digest, &original);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// `None` when `o` failed (exit 1) naming `digest` as changed on disk, else what it did.
fn not_refused(what: &str, o: &Output, digest: &str) -> Option<String> {
    let t = text(o);
    let refused = o.status.code() == Some(1) && t.contains(digest) && t.contains("changed on disk");
    (!refused).then(|| format!("{what}: expected exit 1 naming {digest} as changed on disk, got {}: {t}", o.status))
}

/// npm tarballs keep their links in an image, so a link leaving its package is
/// refused by `openshell build`, naming the package, its archive and the entry; a
/// link inside the package lands in the image (the positive control).
#[test]
fn npm_links_leaving_the_package_are_refused() {
    use support::npm_registry::NpmPkg;
    let (env, registry) = with_npm_registry(&[
        NpmPkg {
            name: "linky",
            version: "1.0.0",
            manifest: "",
            files: vec![("index.js", "module.exports=1\n"), ("alias.js.symlink", "index.js")],
        },
        NpmPkg {
            name: "escapee",
            version: "1.0.0",
            manifest: "",
            files: vec![("index.js", "\n"), ("lib/up.symlink", ".."), ("lib/passwd.symlink", "up/../../../etc/passwd")],
        },
    ]);
    let store = env.store("store");
    let build = |package: &str| {
        std::fs::write(
            env.path().join("image.yaml"),
            format!("name: openshell/{package}\ndebian:\n  suites: [testing]\n  packages: [base-files]\nnpm:\n  packages:\n    {package}: \"1.0.0\"\nuser: {{ name: sandbox, uid: 1000, gid: 1000, home: /sandbox }}\n"),
        )
        .expect("definition");
        let lock = format!("{package}.lock");
        let o = env.lock(&["-o", &lock, "--npm-registry", &registry]);
        assert!(o.status.success(), "{}", text(&o));
        let o = openshell(
            env.path(),
            &["fetch", &lock, "--debian-mirror", &env.archive.base, "--npm-registry", &registry, "--store", &store],
        );
        assert!(o.status.success(), "{}", text(&o));
        openshell(env.path(), &["--output", "json", "build", &lock, "--store", &store])
    };

    let o = build("linky");
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let layer = v["layers"].as_array().expect("layers").iter().find(|l| l["origin"] == "npm/linky").expect("npm layer");
    let hex = layer["digest"].as_str().and_then(|d| d.strip_prefix("sha256:")).expect("digest");
    let listing = Command::new("tar").arg("-tvzf").arg(Path::new(&store).join("blobs/sha256").join(hex)).output();
    let listing = String::from_utf8_lossy(&listing.expect("tar").stdout).into_owned();
    assert!(listing.contains("usr/local/lib/node_modules/linky/alias.js -> index.js"), "{listing}");

    let o = build("escapee");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("npm escapee@1.0.0 (sha512:"), "names the package and its archive: {t}");
    assert!(t.contains("symbolic link `lib/passwd` → `up/../../../etc/passwd` leaves the package"), "{t}");
}

/// The default image's manifest digest. Moving config, manifest and index onto
/// oci-spec types kept the one before (sha256:33a4d987…, pinned here then); the new
/// tools and exclusions in `images/default.yaml` gave this one. Any change to how
/// images are serialized, or to the layers, moves it.
const DEFAULT_IMAGE_MANIFEST: &str = "sha256:2345a02c850a760edad9aa203ec7b33f006032d7133a8176a129ed6bcce80aa0";

/// `lockfiles/default.lock` built from the store at `OPENSHELL_TEST_DEFAULT_STORE`
/// gives the pinned digest. A build served from the build cache still serializes the
/// config and the manifest anew, so the pin holds the serializer either way.
#[test]
fn default_image_digest_is_pinned() {
    let store = std::env::var("OPENSHELL_TEST_DEFAULT_STORE").unwrap_or_default();
    assert!(
        !store.is_empty() && Path::new(&store).is_dir(),
        "OPENSHELL_TEST_DEFAULT_STORE must name a store holding the default image's closure: \
         `openshell fetch lockfiles/default.lock --store DIR` (cargo xtask ci does this), then \
         OPENSHELL_TEST_DEFAULT_STORE=DIR"
    );
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lockfiles/default.lock");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = openshell(dir.path(), &["--output", "json", "build", &lock.display().to_string(), "--store", &store]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["manifest"].as_str(), Some(DEFAULT_IMAGE_MANIFEST), "{v}");
}
