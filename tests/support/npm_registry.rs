//! A tiny npm registry on loopback: packuments and tarballs made by the test.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;

use super::server::Server;

/// One package version: files under `package/`. A file named `x.symlink` is a
/// symbolic link `x` to its content instead.
pub struct NpmPkg {
    pub name: &'static str,
    pub version: &'static str,
    /// Extra package.json fields (JSON object members, without braces).
    pub manifest: &'static str,
    pub files: Vec<(&'static str, &'static str)>,
}

fn sri(data: &[u8]) -> String {
    let mut h = openshell_store::Algorithm::Sha512.hasher();
    h.update(data);
    format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(h.finish().bytes()))
}

/// Packs and serves `pkgs` under `<server>/npm/`; returns the registry URL.
pub fn serve(server: &Server, work: &Path, pkgs: &[NpmPkg]) -> String {
    let mut docs: std::collections::BTreeMap<&str, Vec<serde_json::Value>> = Default::default();
    for p in pkgs {
        let dir = work.join(format!("npm-{}-{}", p.name.replace('/', "_"), p.version));
        let pkg = dir.join("package");
        std::fs::create_dir_all(&pkg).expect("mkdir");
        let manifest = format!(
            "{{\"name\":\"{}\",\"version\":\"{}\"{}{}}}",
            p.name,
            p.version,
            if p.manifest.is_empty() { "" } else { "," },
            p.manifest
        );
        std::fs::write(pkg.join("package.json"), &manifest).expect("write");
        for (path, content) in &p.files {
            let f = pkg.join(path);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            if let Some(link) = path.strip_suffix(".symlink") {
                std::os::unix::fs::symlink(content, pkg.join(link)).expect("symlink");
                continue;
            }
            std::fs::write(&f, content).expect("write");
            // A name like `x.mode0666` sets that mode in the tarball (odd modes occur on npm).
            if let Some(mode) = path.rsplit_once(".mode").and_then(|(_, m)| u32::from_str_radix(m, 8).ok()) {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
            }
        }
        let tgz = dir.join("pkg.tgz");
        let out = Command::new("tar").arg("-czf").arg(&tgz).arg("-C").arg(&dir).arg("package").output().expect("tar");
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&tgz).expect("read tgz");
        let base = p.name.rsplit('/').next().expect("name");
        let rel = format!("npm/{}/-/{base}-{}.tgz", p.name, p.version);
        server.add(&rel, bytes.clone(), "application/octet-stream");
        let mut m: serde_json::Value = serde_json::from_str(&manifest).expect("manifest json");
        m["dist"] = serde_json::json!({"tarball": server.url(&rel), "integrity": sri(&bytes)});
        docs.entry(p.name).or_default().push(m);
    }
    for (name, versions) in docs {
        let latest = versions.last().and_then(|v| v["version"].as_str()).unwrap_or("0.0.0").to_owned();
        let mut vmap = serde_json::Map::new();
        for v in versions {
            vmap.insert(v["version"].as_str().unwrap_or_default().to_owned(), v);
        }
        let doc = serde_json::json!({"name": name, "dist-tags": {"latest": latest}, "versions": vmap});
        server.add(&format!("npm/{}", name.replacen('/', "%2f", 1)), doc.to_string().into_bytes(), "application/json");
    }
    server.url("npm/")
}
