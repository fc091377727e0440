//! SPDX 2.3 JSON: serde structs of the parts written, and the conversion.
//!
//! The document describes the image, which CONTAINS every package of the lockfile,
//! and the lockfile's plain files; packages DEPENDS_ON each other as they declare. Packages
//! are not file-analyzed (`filesAnalyzed: false`). A declared licence that is not an
//! SPDX expression becomes a `LicenseRef-` in `hasExtractedLicensingInfos`, whose
//! text is the declaration's own words (a DEP-5 synopsis, npm's `license` string):
//! that is what the package declares, not a licence text we could vouch for.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ids::UniqueIds;
use crate::license::{License, LicenseTerm};
use crate::model::{Checksum, HashAlgorithm, Party, Sbom};

const NOASSERTION: &str = "NOASSERTION";
const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
const IMAGE_ID: &str = "SPDXRef-image";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub spdx_version: &'static str,
    pub data_license: &'static str,
    #[serde(rename = "SPDXID")]
    pub spdx_id: &'static str,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    pub packages: Vec<SpdxPackage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SpdxFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub has_extracted_licensing_infos: Vec<ExtractedLicense>,
    pub relationships: Vec<Relationship>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpdxPackage {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    pub version_info: String,
    pub supplier: String,
    pub download_location: &'static str,
    pub files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<SpdxChecksum>,
    pub license_concluded: &'static str,
    pub license_declared: String,
    pub copyright_text: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    pub primary_package_purpose: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpdxFile {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub file_name: String,
    pub checksums: Vec<SpdxChecksum>,
    pub license_concluded: &'static str,
    pub copyright_text: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpdxChecksum {
    pub algorithm: &'static str,
    pub checksum_value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    pub reference_category: &'static str,
    pub reference_type: &'static str,
    pub reference_locator: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractedLicense {
    pub license_id: String,
    pub name: String,
    pub extracted_text: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: RelationshipType,
    pub related_spdx_element: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RelationshipType {
    Describes,
    Contains,
    DependsOn,
}

/// The document's namespace: unique per lockfile, derived from its hash.
pub fn namespace(sbom: &Sbom) -> String {
    format!("urn:openshell:sbom:{}", sbom.lockfile)
}

fn checksums(list: &[Checksum]) -> Vec<SpdxChecksum> {
    list.iter()
        .map(|c| SpdxChecksum {
            algorithm: match c.algorithm {
                HashAlgorithm::Sha1 => "SHA1",
                HashAlgorithm::Sha256 => "SHA256",
                HashAlgorithm::Sha512 => "SHA512",
            },
            checksum_value: c.hex.clone(),
        })
        .collect()
}

/// `Person: Name (email)`; parentheses in a name would end it early, so they go.
fn supplier(p: Option<&Party>) -> String {
    match p {
        None => NOASSERTION.to_owned(),
        Some(p) => {
            let name: String = p.name.chars().filter(|c| !matches!(c, '(' | ')')).collect();
            match &p.email {
                Some(e) => format!("Person: {} ({e})", name.trim()),
                None => format!("Person: {}", name.trim()),
            }
        }
    }
}

/// `LicenseRef-` ids of every non-SPDX term of the document, unique and stable
/// (made in sorted order of the terms).
fn license_refs(sbom: &Sbom) -> BTreeMap<String, String> {
    let others: BTreeSet<&str> = sbom
        .packages
        .iter()
        .flat_map(|p| p.license.terms.iter())
        .filter_map(|t| match t {
            LicenseTerm::Other(s) => Some(s.as_str()),
            LicenseTerm::Spdx(_) => None,
        })
        .collect();
    let mut ids = UniqueIds::default();
    others
        .into_iter()
        .map(|text| (text.to_owned(), ids.make("LicenseRef-", &text.chars().take(48).collect::<String>())))
        .collect()
}

fn declared(license: &License, refs: &BTreeMap<String, String>) -> String {
    license
        .expression(|t| match t {
            LicenseTerm::Spdx(s) => s.clone(),
            LicenseTerm::Other(s) => refs.get(s).cloned().unwrap_or_else(|| NOASSERTION.to_owned()),
        })
        .unwrap_or_else(|| NOASSERTION.to_owned())
}

fn relationship(from: &str, ty: RelationshipType, to: &str) -> Relationship {
    Relationship { spdx_element_id: from.to_owned(), relationship_type: ty, related_spdx_element: to.to_owned() }
}

/// The SPDX document of `sbom`.
pub fn document(sbom: &Sbom) -> Document {
    let refs = license_refs(sbom);
    let image = SpdxPackage {
        spdx_id: IMAGE_ID.to_owned(),
        name: sbom.image_name.clone(),
        version_info: sbom.image_tag.clone(),
        supplier: NOASSERTION.to_owned(),
        download_location: NOASSERTION,
        files_analyzed: false,
        checksums: Vec::new(),
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.to_owned(),
        copyright_text: NOASSERTION,
        external_refs: Vec::new(),
        primary_package_purpose: "CONTAINER",
    };
    let mut packages = vec![image];
    let mut relationships = vec![relationship(DOCUMENT_ID, RelationshipType::Describes, IMAGE_ID)];
    for p in &sbom.packages {
        relationships.push(relationship(IMAGE_ID, RelationshipType::Contains, &p.id));
        packages.push(SpdxPackage {
            spdx_id: p.id.clone(),
            name: p.name.clone(),
            version_info: p.version.clone(),
            supplier: supplier(p.supplier.as_ref()),
            download_location: NOASSERTION,
            files_analyzed: false,
            checksums: checksums(&p.checksums),
            license_concluded: NOASSERTION,
            license_declared: declared(&p.license, &refs),
            copyright_text: NOASSERTION,
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: p.purl.clone(),
            }],
            primary_package_purpose: "LIBRARY",
        });
    }
    let files: Vec<SpdxFile> = sbom
        .files
        .iter()
        .map(|f| {
            // Not CONTAINS: the image package is not file-analyzed (it holds far
            // more files than these), and SPDX allows such a package no files.
            relationships.push(relationship(DOCUMENT_ID, RelationshipType::Describes, &f.id));
            SpdxFile {
                spdx_id: f.id.clone(),
                file_name: format!(".{}", f.path),
                checksums: checksums(&f.checksums),
                license_concluded: NOASSERTION,
                copyright_text: NOASSERTION,
            }
        })
        .collect();
    for p in &sbom.packages {
        for d in &p.depends_on {
            relationships.push(relationship(&p.id, RelationshipType::DependsOn, d));
        }
    }
    let has_extracted_licensing_infos = refs
        .into_iter()
        .map(|(text, id)| ExtractedLicense {
            license_id: id,
            name: text.lines().next().unwrap_or(&text).to_owned(),
            extracted_text: text,
        })
        .collect();
    Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: DOCUMENT_ID,
        name: format!("{}:{}", sbom.image_name, sbom.image_tag),
        document_namespace: namespace(sbom),
        creation_info: CreationInfo {
            created: sbom.created.clone(),
            creators: vec![format!("Tool: openshell-{}", env!("CARGO_PKG_VERSION"))],
        },
        packages,
        files,
        has_extracted_licensing_infos,
        relationships,
    }
}
