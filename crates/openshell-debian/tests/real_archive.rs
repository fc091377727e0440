//! Checks against the real Debian data apt left on this machine (`/var/lib/apt/lists`).
//! Ignored by default: they depend on machine state, not on this crate's inputs. Run with
//! `cargo test -p openshell-debian --test real_archive -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use openshell_debian::packages::PackageIndex;
use openshell_debian::release::{Release, find_keyrings};
use openshell_debian::resolve::{Request, resolve};
use openshell_store::Digest;

const LISTS: &str = "/var/lib/apt/lists";

fn inreleases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(LISTS)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.to_string_lossy();
                    name.contains("deb.debian.org_") && name.ends_with("_InRelease")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
#[ignore = "uses the machine's apt lists"]
fn verify_and_parse_real_inrelease_files() {
    let keyrings = find_keyrings();
    for path in inreleases() {
        let data = std::fs::read(&path).expect("read");
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let r = Release::from_inrelease(&name, &data, &keyrings).expect("verifies and parses");
        println!("{name}: {:?} {:?}, {} files", r.suite, r.codename, r.sha256.len());
        assert!(r.file("main/binary-amd64/Packages").is_some() || r.file("main/binary-amd64/Packages.xz").is_some());
    }
}

/// Decompresses apt's `.lz4` copy of an index with the `lz4` tool and checks it against the
/// Release file's uncompressed entry.
fn index(inrelease: &Path) -> Option<PackageIndex> {
    let prefix = inrelease.to_string_lossy().trim_end_matches("InRelease").to_owned();
    let lz4 = PathBuf::from(format!("{prefix}main_binary-amd64_Packages.lz4"));
    if !lz4.exists() {
        return None;
    }
    let r =
        Release::from_inrelease("InRelease", &std::fs::read(inrelease).expect("read"), &find_keyrings()).expect("ok");
    let out = Command::new("lz4").arg("-dc").arg(&lz4).output().expect("lz4 is installed");
    assert!(out.status.success());
    let entry = r.file("main/binary-amd64/Packages").expect("listed");
    assert_eq!(out.stdout.len() as u64, entry.size);
    assert_eq!(Digest::sha256(&out.stdout), entry.sha256);
    let t = Instant::now();
    let idx = PackageIndex::parse(&lz4.to_string_lossy(), &out.stdout).expect("parses");
    println!("{}: {} packages in {:?}", lz4.display(), idx.packages.len(), t.elapsed());
    Some(idx)
}

#[test]
#[ignore = "uses the machine's apt lists"]
fn resolve_against_real_indexes() {
    let indexes: Vec<PackageIndex> = inreleases().iter().filter_map(|p| index(p)).collect();
    assert!(!indexes.is_empty());
    let requests: Vec<Request> = ["python3", "ca-certificates", "bash", "coreutils", "curl", "git"]
        .iter()
        .map(|s| s.parse().expect("request"))
        .collect();
    let t = Instant::now();
    let res = resolve(&indexes, "amd64", &requests).expect("resolves");
    println!("{} packages in {:?}", res.packages.len(), t.elapsed());
    for s in &res.packages {
        println!("  {} [{}] ({})", s.package.id(), s.index, s.reason);
    }
}

/// Parses `ls -l`-style permissions (`-rwsr-xr-x`) into mode bits.
fn mode_bits(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut m = 0;
    for (i, bit) in [(1, 0o400), (2, 0o200), (4, 0o40), (5, 0o20), (7, 0o4), (8, 0o2)] {
        if b[i] != b'-' {
            m |= bit;
        }
    }
    for (i, x, special) in [(3, 0o100, 0o4000), (6, 0o10, 0o2000), (9, 0o1, 0o1000)] {
        match b[i] {
            b'x' => m |= x,
            b's' | b't' => m |= x | special,
            b'S' | b'T' => m |= special,
            _ => {}
        }
    }
    m
}

/// Compares our data walk of every `.deb` in `$OPENSHELL_TEST_DEBS` with `dpkg-deb -c`.
#[test]
#[ignore = "needs real .deb files in $OPENSHELL_TEST_DEBS"]
fn data_walk_matches_dpkg_deb() {
    use openshell_debian::deb::{DebReader, EntryKind};
    let dir = std::env::var("OPENSHELL_TEST_DEBS").expect("set OPENSHELL_TEST_DEBS to a directory of .deb files");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    assert!(!debs.is_empty());
    for deb in debs {
        let listing = Command::new("dpkg-deb").arg("-c").arg(&deb).output().expect("dpkg-deb");
        let mut want = Vec::new();
        for line in String::from_utf8_lossy(&listing.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let rest = line.split_once(&format!(" {} {} ", f[3], f[4])).expect("date and time").1;
            let path = rest.split(" -> ").next().expect("p").split(" link to ").next().expect("p");
            let path = path.trim_start_matches("./").trim_end_matches('/').to_owned();
            if path.is_empty() {
                continue;
            }
            let size: u64 = f[2].parse().expect("size");
            want.push((path, mode_bits(f[0]), if f[0].starts_with('-') { size } else { 0 }));
        }
        let t = Instant::now();
        let file = std::fs::File::open(&deb).expect("open");
        let (control, entries) = DebReader::new(deb.display().to_string(), std::io::BufReader::new(file))
            .expect("deb")
            .entries()
            .expect("walk");
        let got: Vec<(String, u32, u64)> = entries
            .iter()
            .map(|e| (e.path.clone(), e.mode, if e.kind == EntryKind::File { e.size } else { 0 }))
            .collect();
        assert_eq!(got, want, "{}", deb.display());
        println!(
            "{}: {} entries in {:?}, scripts {:?}, data {}",
            deb.display(),
            got.len(),
            t.elapsed(),
            control.maintainer_scripts,
            control.data_member
        );
    }
}
