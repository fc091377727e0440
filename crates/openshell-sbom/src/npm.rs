//! What an npm tarball declares in its `package.json`: `license` (or the old
//! `licenses` list), `author`, and its dependencies. The tarball's sha256 is
//! computed while it is read (the lockfile pins its sha512).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};

use openshell_store::{Algorithm, Digest, Hasher, Store};
use serde::Deserialize;

use crate::license::License;
use crate::model::{Party, SbomError};

/// An npm package's declarations.
pub struct NpmDeclaration {
    pub supplier: Option<Party>,
    pub license: License,
    /// Names of `dependencies`, `optionalDependencies` and `peerDependencies`.
    pub depends: Vec<String>,
    pub sha256: Digest,
}

/// The `package.json` fields read here; the rest is ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    license: Option<LicenseField>,
    #[serde(default)]
    licenses: Option<Vec<LicenseField>>,
    #[serde(default)]
    author: Option<Person>,
    #[serde(default)]
    dependencies: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    optional_dependencies: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    peer_dependencies: BTreeMap<String, serde_json::Value>,
}

/// `"MIT"` or the old `{ "type": "MIT", "url": ... }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LicenseField {
    Text(String),
    Object {
        #[serde(rename = "type")]
        ty: Option<String>,
    },
    /// Any other shape: declares nothing readable.
    Other(#[allow(dead_code)] serde::de::IgnoredAny),
}

impl LicenseField {
    fn text(&self) -> Option<&str> {
        match self {
            LicenseField::Text(s) => Some(s),
            LicenseField::Object { ty } => ty.as_deref(),
            LicenseField::Other(_) => None,
        }
    }
}

/// `"Name <email> (url)"` or `{ "name": ..., "email": ... }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Person {
    Text(String),
    Object {
        name: Option<String>,
        email: Option<String>,
    },
    /// Any other shape: declares nothing readable.
    Other(#[allow(dead_code)] serde::de::IgnoredAny),
}

impl Person {
    fn party(&self) -> Option<Party> {
        match self {
            Person::Text(s) => Party::parse(s),
            Person::Object { name: Some(name), email } if !name.trim().is_empty() => Some(Party {
                name: name.trim().to_owned(),
                email: email.clone().filter(|e| e.contains('@') && !e.contains(' ')),
            }),
            _ => None,
        }
    }
}

/// Hashes with sha256 everything read through it.
struct Sha256Tee<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Sha256Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads the declarations of the npm tarball `digest` (its sri digest), or `None`
/// when the store does not hold it.
pub fn read(store: &Store, digest: &Digest, label: &str) -> Result<Option<NpmDeclaration>, SbomError> {
    if !store.contains(digest) {
        tracing::warn!("{label} ({digest}) is not in the store: its declarations are NOASSERTION");
        return Ok(None);
    }
    let tar_err = |source| SbomError::NpmTar { label: label.to_owned(), archive: digest.clone(), source };
    let blob = store.open_verified(digest)?;
    let tee = Sha256Tee { inner: blob, hasher: Algorithm::Sha256.hasher() };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(tee)));
    let mut manifest: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let path = entry.path().map_err(tar_err)?.into_owned();
        // npm tarballs hold one top directory (usually `package/`), whatever its name.
        let mut parts = path.components();
        parts.next();
        if parts.as_path().as_os_str() == "package.json" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(tar_err)?;
            manifest = Some(bytes);
            break;
        }
    }
    // The rest of the blob is read (through the tee, so the sha256 covers it all),
    // then the store checks its sha512.
    let mut tee = archive.into_inner().into_inner().into_inner();
    io::copy(&mut tee, &mut io::sink()).map_err(tar_err)?;
    let Sha256Tee { inner, hasher } = tee;
    inner.finish()?;
    let sha256 = hasher.finish();
    let Some(bytes) = manifest else {
        return Ok(Some(NpmDeclaration { supplier: None, license: License::unknown(), depends: Vec::new(), sha256 }));
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|source| SbomError::NpmManifest {
        label: label.to_owned(),
        archive: digest.clone(),
        source,
    })?;
    let license = match (&m.license, &m.licenses) {
        (Some(l), _) => License::all(l.text()),
        // The old list named alternatives (a dual licence).
        (None, Some(list)) => {
            License::declared(&list.iter().filter_map(LicenseField::text).collect::<Vec<_>>().join(" OR "))
        }
        (None, None) => License::unknown(),
    };
    let depends = m
        .dependencies
        .keys()
        .chain(m.optional_dependencies.keys())
        .chain(m.peer_dependencies.keys())
        .cloned()
        .collect();
    Ok(Some(NpmDeclaration { supplier: m.author.as_ref().and_then(Person::party), license, depends, sha256 }))
}
