//! Checks against real OCI tools (Debian packages `skopeo`, `umoci`,
//! `oci-image-tool`; `.ci/run` installs them). A missing tool fails the test with
//! the package to install: these checks never skip silently.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use openshell_oci::{Image, ImageConfig, LayerOptions, Reference, partition, write_archive, write_layer, write_layout};
use openshell_store::Store;

/// Panics naming the Debian package when `tool` is not installed.
fn require(tool: &str) {
    let ok = Command::new(tool).arg("--help").output().is_ok_and(|o| o.status.success() || !o.stdout.is_empty());
    assert!(
        ok,
        "`{tool}` is not installed: install the Debian package `{tool}` (apt-get install {tool}); .ci/run does"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

struct Built {
    _dir: tempfile::TempDir,
    layout: std::path::PathBuf,
    archive: std::path::PathBuf,
    image: Image,
}

fn built() -> Built {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let tree = common::sample_tree(&store, false);
    let layers = partition(&tree, &common::origins())
        .expect("partition")
        .iter()
        .map(|p| write_layer(&store, p, &LayerOptions::default()).expect("layer"))
        .collect();
    let config = ImageConfig { cmd: Some(vec!["/bin/sh".into()]), ..ImageConfig::default() };
    let image = Image::new(&config, layers, &BTreeMap::new()).expect("image");
    let reference = Reference::parse("openshell/test:1").expect("ref");
    let layout = dir.path().join("layout");
    write_layout(&store, &layout, &image, &reference).expect("layout");
    let archive = dir.path().join("image.tar");
    write_archive(&store, &archive, &image, &reference).expect("archive");
    Built { _dir: dir, layout, archive, image }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn oci_image_tool_validates_the_layout() {
    require("oci-image-tool");
    let b = built();
    run(Command::new("oci-image-tool").args(["validate", "--type", "image", "--ref", "name=1", path(&b.layout)]));
}

#[test]
fn skopeo_reads_layout_and_archive() {
    require("skopeo");
    let b = built();
    for src in [format!("oci:{}:1", path(&b.layout)), format!("oci-archive:{}:1", path(&b.archive))] {
        let raw = run(Command::new("skopeo").args(["inspect", "--raw", &src]));
        assert_eq!(raw.trim_end().as_bytes(), b.image.manifest_bytes(), "{src}: manifest bytes");
        let config = run(Command::new("skopeo").args(["inspect", "--config", "--raw", &src]));
        assert_eq!(config.trim_end().as_bytes(), b.image.config_bytes(), "{src}: config bytes");
    }
    // docker-archive reading of the same file uses manifest.json.
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--raw",
        &format!("docker-archive:{}", path(&b.archive)),
    ]));
    assert_eq!(out.trim_end().as_bytes(), b.image.config_bytes(), "docker-archive: config bytes");
}

#[test]
fn umoci_unpacks_the_layout() {
    require("umoci");
    let b = built();
    let bundle = b.layout.parent().expect("parent").join("bundle");
    run(Command::new("umoci").args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:1", path(&b.layout)),
        path(&bundle),
    ]));
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read(rootfs.join("etc/passwd")).expect("passwd"), b"root:x:0:0::/root:/bin/sh\n");
    assert_eq!(
        std::fs::read_link(rootfs.join("usr/lib/claude/long-link")).expect("link").to_string_lossy(),
        common::long_target()
    );
    assert_eq!(std::fs::read(rootfs.join(common::long_path())).expect("long"), b"long");
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(rootfs.join("usr/lib/claude/a-claude")).expect("a");
    let z = std::fs::metadata(rootfs.join("usr/lib/claude/zz-claude")).expect("z");
    assert_eq!(a.ino(), z.ino(), "hard links unpack as one inode");
    assert_eq!(a.len(), 100_000);
}
