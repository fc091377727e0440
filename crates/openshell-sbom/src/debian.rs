//! What a `.deb` declares: `Maintainer`, `Depends`/`Pre-Depends`, `Provides` from
//! its control file, and the licences of `usr/share/doc/NAME/copyright` when that
//! file is machine-readable (DEP-5).

use std::io::{BufReader, Read};

use openshell_debian::relations::{Alternatives, Provide, parse_provides, parse_relations};
use openshell_debian::{DebReader, EntryKind};
use openshell_store::{Digest, Store};

use crate::license::{self, License};
use crate::model::{Party, SbomError};

/// A Debian package's declarations.
pub struct DebDeclaration {
    pub supplier: Option<Party>,
    pub license: License,
    /// Pre-Depends, then Depends.
    pub depends: Vec<Alternatives>,
    pub provides: Vec<Provide>,
}

/// Reads the declarations of the `.deb` `digest` (`name` is the package; the blob is
/// hashed whole first, since the data tar may end before the blob does), or `None`
/// when the store does not hold it.
pub fn read(store: &Store, digest: &Digest, name: &str, label: &str) -> Result<Option<DebDeclaration>, SbomError> {
    if !store.contains(digest) {
        tracing::warn!("{label} ({digest}) is not in the store: its declarations are NOASSERTION");
        return Ok(None);
    }
    let deb_err = |source| SbomError::Deb { label: label.to_owned(), source: Box::new(source) };
    let reader = DebReader::new(label.to_owned(), BufReader::new(store.open_ranges(digest)?)).map_err(deb_err)?;
    let control = &reader.control().control;
    let supplier = control.get("Maintainer").and_then(Party::parse);
    let relations = |field: &'static str| -> Result<Vec<Alternatives>, SbomError> {
        control.get(field).map_or(Ok(Vec::new()), |text| {
            parse_relations(field, text).map_err(|source| SbomError::DebRelations {
                label: label.to_owned(),
                field,
                source,
            })
        })
    };
    let mut depends = relations("Pre-Depends")?;
    depends.extend(relations("Depends")?);
    let provides = match control.get("Provides") {
        Some(text) => parse_provides("Provides", text).map_err(|source| SbomError::DebRelations {
            label: label.to_owned(),
            field: "Provides",
            source,
        })?,
        None => Vec::new(),
    };
    let copyright_path = format!("usr/share/doc/{name}/copyright");
    let mut copyright: Option<String> = None;
    reader
        .for_each_entry(|entry, contents: &mut dyn Read| {
            if entry.path == copyright_path && entry.kind == EntryKind::File {
                let mut text = String::new();
                // A copyright file that is not UTF-8 is not machine-readable either.
                if contents.read_to_string(&mut text).is_ok() {
                    copyright = Some(text);
                }
            }
            Ok::<(), std::io::Error>(())
        })
        .map_err(deb_err)?;
    let license = copyright.as_deref().and_then(license::dep5).unwrap_or_default();
    Ok(Some(DebDeclaration { supplier, license, depends, provides }))
}
