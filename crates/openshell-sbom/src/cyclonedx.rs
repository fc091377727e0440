//! CycloneDX 1.5 JSON: serde structs of the parts written, and the conversion.
//!
//! `metadata.component` is the image (a container); every package is a `library`
//! component and every plain file a `file` component; `dependencies` has one entry
//! per package. The serial number is a UUID version 5 (RFC 9562) of the SPDX
//! namespace, so it too depends only on the lockfile.

use serde::Serialize;
use sha1::Digest as _;

use crate::license::{License, LicenseTerm};
use crate::model::{Checksum, HashAlgorithm, Party, Sbom};

const IMAGE_REF: &str = "image";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    pub bom_format: &'static str,
    pub spec_version: &'static str,
    pub serial_number: String,
    pub version: u32,
    pub metadata: Metadata,
    pub components: Vec<Component>,
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    pub timestamp: String,
    pub tools: Tools,
    pub component: Component,
}

#[derive(Debug, Serialize)]
pub struct Tools {
    pub components: Vec<Component>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    #[serde(rename = "type")]
    pub ty: ComponentType,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplier: Option<Entity>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentType {
    Application,
    Container,
    Library,
    File,
}

#[derive(Debug, Serialize)]
pub struct Entity {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contact: Vec<Contact>,
}

#[derive(Debug, Serialize)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Serialize)]
pub struct Hash {
    pub alg: &'static str,
    pub content: String,
}

/// Either one SPDX expression or named licences (the schema allows no mix).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum LicenseChoice {
    Expression { expression: String },
    License { license: NamedLicense },
}

#[derive(Debug, Serialize)]
pub struct NamedLicense {
    pub name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

fn hashes(list: &[Checksum]) -> Vec<Hash> {
    list.iter()
        .map(|c| Hash {
            alg: match c.algorithm {
                HashAlgorithm::Sha1 => "SHA-1",
                HashAlgorithm::Sha256 => "SHA-256",
                HashAlgorithm::Sha512 => "SHA-512",
            },
            content: c.hex.clone(),
        })
        .collect()
}

fn supplier(p: &Party) -> Entity {
    Entity {
        name: p.name.clone(),
        contact: p.email.iter().map(|e| Contact { name: p.name.clone(), email: e.clone() }).collect(),
    }
}

fn licenses(l: &License) -> Vec<LicenseChoice> {
    if l.is_spdx() {
        let expression = l.expression(|t| match t {
            LicenseTerm::Spdx(s) | LicenseTerm::Other(s) => s.clone(),
        });
        return expression.into_iter().map(|expression| LicenseChoice::Expression { expression }).collect();
    }
    l.terms
        .iter()
        .map(|t| match t {
            LicenseTerm::Spdx(s) | LicenseTerm::Other(s) => {
                LicenseChoice::License { license: NamedLicense { name: s.clone() } }
            }
        })
        .collect()
}

/// RFC 9562 UUID version 5 of `name` in the URL namespace.
fn uuid_v5(name: &str) -> String {
    const URL_NAMESPACE: [u8; 16] =
        [0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8];
    let mut h = sha1::Sha1::new();
    h.update(URL_NAMESPACE);
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The CycloneDX document of `sbom`.
pub fn document(sbom: &Sbom) -> Bom {
    let mut components: Vec<Component> = sbom
        .packages
        .iter()
        .map(|p| Component {
            ty: ComponentType::Library,
            bom_ref: Some(p.id.clone()),
            supplier: p.supplier.as_ref().map(supplier),
            name: p.name.clone(),
            version: Some(p.version.clone()),
            hashes: hashes(&p.checksums),
            licenses: licenses(&p.license),
            purl: Some(p.purl.clone()),
        })
        .collect();
    components.extend(sbom.files.iter().map(|f| Component {
        ty: ComponentType::File,
        bom_ref: Some(f.id.clone()),
        supplier: None,
        name: f.path.clone(),
        version: None,
        hashes: hashes(&f.checksums),
        licenses: Vec::new(),
        purl: None,
    }));
    let dependencies = sbom
        .packages
        .iter()
        .map(|p| Dependency { reference: p.id.clone(), depends_on: p.depends_on.clone() })
        .collect();
    let tool = Component {
        ty: ComponentType::Application,
        bom_ref: None,
        supplier: None,
        name: "openshell".to_owned(),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        hashes: Vec::new(),
        licenses: Vec::new(),
        purl: None,
    };
    let image = Component {
        ty: ComponentType::Container,
        bom_ref: Some(IMAGE_REF.to_owned()),
        supplier: None,
        name: sbom.image_name.clone(),
        version: Some(sbom.image_tag.clone()),
        hashes: Vec::new(),
        licenses: Vec::new(),
        purl: None,
    };
    Bom {
        bom_format: "CycloneDX",
        spec_version: "1.5",
        serial_number: format!("urn:uuid:{}", uuid_v5(&crate::spdx::namespace(sbom))),
        version: 1,
        metadata: Metadata {
            timestamp: sbom.created.clone(),
            tools: Tools { components: vec![tool] },
            component: image,
        },
        components,
        dependencies,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuid_v5_matches_rfc_9562() {
        // Python: uuid.uuid5(uuid.NAMESPACE_URL, "https://www.example.com/")
        assert_eq!(super::uuid_v5("https://www.example.com/"), "3d3ed9d2-aa3d-5fa6-90e8-ed662e90f559");
    }
}
