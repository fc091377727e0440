//! The neutral SBOM of a lockfile: its entries in lockfile order, their
//! declarations read from the store where the lockfile does not hold them, and the
//! dependencies between them.

use std::collections::BTreeMap;

use openshell_build::build::IMAGE_CREATED;
use openshell_build::fetch::digest_from_sri;
use openshell_build::lockfile::{DebArtifact, Lockfile, NpmArtifact, WheelArtifact};
use openshell_debian::Version;
use openshell_debian::relations::Relation;
use openshell_store::{Digest, Store};
use sha1::Digest as _;

use crate::debian::DebDeclaration;
use crate::ids::UniqueIds;
use crate::model::{Checksum, Ecosystem, FileItem, HashAlgorithm, Package, Sbom, SbomError};
use crate::{debian, npm, purl, pypi};

/// The SBOM of `lock` (an image's SBOM is its lockfile's: the same bytes).
pub fn collect(lock: &Lockfile, store: &Store) -> Result<Sbom, SbomError> {
    let text = lock.to_text()?;
    let mut ids = UniqueIds::default();
    let mut packages = debian_packages(lock, store, &mut ids)?;
    packages.extend(npm_packages(lock, store, &mut ids)?);
    packages.extend(wheel_packages(lock, store, &mut ids)?);
    let files = files(lock, store, &mut ids)?;
    Ok(Sbom {
        image_name: lock.image.name.clone(),
        image_tag: lock.image.tag.clone(),
        lockfile: Digest::sha256(text.as_bytes()),
        created: openshell_oci::image::rfc3339(IMAGE_CREATED),
        packages,
        files,
    })
}

fn parse_digest(label: &str, value: &str) -> Result<Digest, SbomError> {
    value.parse().map_err(|_| SbomError::BadDigest { label: label.to_owned(), value: value.to_owned() })
}

fn checksum(d: &Digest) -> Checksum {
    let algorithm = match d.algorithm() {
        openshell_store::Algorithm::Sha256 => HashAlgorithm::Sha256,
        openshell_store::Algorithm::Sha512 => HashAlgorithm::Sha512,
    };
    Checksum { algorithm, hex: d.hex() }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn debian_packages(lock: &Lockfile, store: &Store, ids: &mut UniqueIds) -> Result<Vec<Package>, SbomError> {
    let debs = sorted(&lock.debian);
    let mut decls: Vec<Option<DebDeclaration>> = Vec::new();
    let mut packages = Vec::new();
    for d in &debs {
        let label = format!("debian {} {}", d.name, d.version);
        let digest = parse_digest(&label, &d.sha256)?;
        let decl = debian::read(store, &digest, &d.name, &label)?;
        packages.push(Package {
            id: ids.make("SPDXRef-deb-", &format!("{}-{}", d.name, d.architecture)),
            ecosystem: Ecosystem::Debian,
            name: d.name.clone(),
            version: d.version.clone(),
            purl: purl::deb(&d.name, &d.version, &d.architecture)?,
            checksums: vec![checksum(&digest)],
            supplier: decl.as_ref().and_then(|x| x.supplier.clone()),
            license: decl.as_ref().map(|x| x.license.clone()).unwrap_or_default(),
            depends_on: Vec::new(),
        });
        decls.push(decl);
    }
    let index = DebIndex::new(&debs, &decls);
    for (i, decl) in decls.iter().enumerate() {
        let Some(decl) = decl else { continue };
        let mut deps: Vec<String> = Vec::new();
        for group in &decl.depends {
            if let Some(j) = group.iter().find_map(|r| index.satisfier(r, &debs[i].architecture))
                && j != i
                && !deps.contains(&packages[j].id)
            {
                deps.push(packages[j].id.clone());
            }
        }
        packages[i].depends_on = deps;
    }
    Ok(packages)
}

/// Which lockfile package satisfies a Debian relation: one of that name whose version
/// matches, else one providing the name (with a matching version, if the relation
/// has a constraint).
struct DebIndex<'a> {
    debs: &'a [DebArtifact],
    by_name: BTreeMap<&'a str, Vec<usize>>,
    providers: BTreeMap<&'a str, Vec<(usize, Option<&'a Version>)>>,
}

impl<'a> DebIndex<'a> {
    fn new(debs: &'a [DebArtifact], decls: &'a [Option<DebDeclaration>]) -> DebIndex<'a> {
        let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut providers: BTreeMap<&str, Vec<(usize, Option<&Version>)>> = BTreeMap::new();
        for (i, d) in debs.iter().enumerate() {
            by_name.entry(d.name.as_str()).or_default().push(i);
            for p in decls[i].iter().flat_map(|x| x.provides.iter()) {
                providers.entry(p.name.as_str()).or_default().push((i, p.version.as_ref()));
            }
        }
        DebIndex { debs, by_name, providers }
    }

    fn satisfier(&self, r: &Relation, arch: &str) -> Option<usize> {
        if !r.applies_to(arch) {
            return None;
        }
        let real = self
            .by_name
            .get(r.name.as_str())
            .into_iter()
            .flatten()
            .copied()
            .find(|&j| Version::parse(&self.debs[j].version).is_ok_and(|v| r.version_matches(&v)));
        real.or_else(|| {
            self.providers.get(r.name.as_str()).into_iter().flatten().find_map(|&(j, v)| match (&r.constraint, v) {
                (None, _) => Some(j),
                (Some(c), Some(v)) if c.matches(v) => Some(j),
                _ => None,
            })
        })
    }
}

fn npm_packages(lock: &Lockfile, store: &Store, ids: &mut UniqueIds) -> Result<Vec<Package>, SbomError> {
    let all: Vec<NpmArtifact> = sorted(&lock.npm);
    let by_install: BTreeMap<&str, usize> = all.iter().enumerate().map(|(i, n)| (n.install.as_str(), i)).collect();
    let mut packages = Vec::new();
    let mut wanted: Vec<Vec<String>> = Vec::new();
    for n in &all {
        let label = format!("npm {}@{}", n.name, n.version);
        let digest = digest_from_sri(&n.integrity)
            .map_err(|_| SbomError::BadDigest { label: label.clone(), value: n.integrity.clone() })?;
        let decl = npm::read(store, &digest, &label)?;
        let mut checksums = vec![checksum(&digest)];
        if let Some(d) = &decl {
            checksums.insert(0, checksum(&d.sha256));
        }
        packages.push(Package {
            id: ids.make("SPDXRef-npm-", n.install.strip_prefix("lib/node_modules/").unwrap_or(&n.install)),
            ecosystem: Ecosystem::Npm,
            name: n.name.clone(),
            version: n.version.clone(),
            purl: purl::npm(&n.name, &n.version)?,
            checksums,
            supplier: decl.as_ref().and_then(|x| x.supplier.clone()),
            license: decl.as_ref().map(|x| x.license.clone()).unwrap_or_default(),
            depends_on: Vec::new(),
        });
        wanted.push(decl.map(|x| x.depends).unwrap_or_default());
    }
    for (i, names) in wanted.iter().enumerate() {
        let deps: Vec<String> = names
            .iter()
            .filter_map(|name| node_resolve(&all[i].install, name, &by_install))
            .filter(|&j| j != i)
            .map(|j| packages[j].id.clone())
            .collect();
        packages[i].depends_on = deps;
    }
    Ok(packages)
}

/// Node's module resolution over install paths: `name` required from the package at
/// `from` is `from/node_modules/name`, else the same in each enclosing package, up to
/// the prefix's `lib/node_modules/name`.
fn node_resolve(from: &str, name: &str, by_install: &BTreeMap<&str, usize>) -> Option<usize> {
    let mut dir = from.to_owned();
    loop {
        if let Some(&j) = by_install.get(format!("{dir}/node_modules/{name}").as_str()) {
            return Some(j);
        }
        let (parent, _) = dir.rsplit_once("/node_modules/")?;
        if parent == "lib" {
            return by_install.get(format!("lib/node_modules/{name}").as_str()).copied();
        }
        dir = parent.to_owned();
    }
}

fn wheel_packages(lock: &Lockfile, store: &Store, ids: &mut UniqueIds) -> Result<Vec<Package>, SbomError> {
    let wheels: Vec<WheelArtifact> = sorted(&lock.pypi);
    let by_name: BTreeMap<String, usize> =
        wheels.iter().enumerate().map(|(i, w)| (openshell_pypi::normalize_name(&w.name), i)).collect();
    let mut packages = Vec::new();
    let mut wanted = Vec::new();
    for w in &wheels {
        let label = format!("pypi {}=={}", w.name, w.version);
        let digest = parse_digest(&label, &w.sha256)?;
        let decl = pypi::read(store, &digest, &label, &w.filename)?;
        packages.push(Package {
            id: ids.make("SPDXRef-pypi-", &openshell_pypi::normalize_name(&w.name)),
            ecosystem: Ecosystem::Pypi,
            name: w.name.clone(),
            version: w.version.clone(),
            purl: purl::pypi(&w.name, &w.version)?,
            checksums: vec![checksum(&digest)],
            supplier: decl.as_ref().and_then(|x| x.supplier.clone()),
            license: decl.as_ref().map(|x| x.license.clone()).unwrap_or_default(),
            depends_on: Vec::new(),
        });
        wanted.push(decl.map(|x| x.depends).unwrap_or_default());
    }
    for (i, names) in wanted.iter().enumerate() {
        let mut deps: Vec<String> = Vec::new();
        for j in names.iter().filter_map(|n| by_name.get(n).copied()).filter(|&j| j != i) {
            if !deps.contains(&packages[j].id) {
                deps.push(packages[j].id.clone());
            }
        }
        packages[i].depends_on = deps;
    }
    Ok(packages)
}

/// The lockfile's plain files; their sha1 (which SPDX requires of a file) is computed
/// from the store's copy when it holds one.
fn files(lock: &Lockfile, store: &Store, ids: &mut UniqueIds) -> Result<Vec<FileItem>, SbomError> {
    let mut out = Vec::new();
    for f in sorted(&lock.file) {
        let path = format!("/{}", f.path.trim_start_matches('/'));
        let digest = parse_digest(&format!("file {path}"), &f.sha256)?;
        let mut checksums = Vec::new();
        if store.contains(&digest) {
            let bytes = store.read_verified(&digest)?;
            checksums.push(Checksum { algorithm: HashAlgorithm::Sha1, hex: hex(&sha1::Sha1::digest(&bytes)) });
        }
        checksums.push(checksum(&digest));
        out.push(FileItem { id: ids.make("SPDXRef-file-", path.trim_start_matches('/')), path, checksums });
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
