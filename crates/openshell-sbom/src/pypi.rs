//! What a wheel declares in its `METADATA`: `License-Expression` (else `License`),
//! `Author`/`Author-email` (else the maintainer's), and `Requires-Dist` as it applies
//! to the image's Python (the target `openshell lock` resolves for, no extras).

use openshell_pypi::metadata::{CoreMetadata, parse_headers};
use openshell_pypi::{MarkerEnv, Target, wheel_metadata};
use openshell_store::{Digest, Store};

use crate::license::License;
use crate::model::{Party, SbomError};

/// A wheel's declarations.
pub struct WheelDeclaration {
    pub supplier: Option<Party>,
    pub license: License,
    /// Normalized names of the requirements that apply.
    pub depends: Vec<String>,
}

/// Reads the declarations of the wheel `digest`, or `None` when the store does not
/// hold it.
pub fn read(
    store: &Store,
    digest: &Digest,
    label: &str,
    filename: &str,
) -> Result<Option<WheelDeclaration>, SbomError> {
    if !store.contains(digest) {
        tracing::warn!("{label} ({digest}) is not in the store: its declarations are NOASSERTION");
        return Ok(None);
    }
    let bytes = store.read_verified(digest)?;
    let metadata = wheel_metadata(&bytes).map_err(|source| SbomError::Wheel {
        label: label.to_owned(),
        filename: filename.to_owned(),
        source: Box::new(source),
    })?;
    let text = String::from_utf8_lossy(&metadata);
    let headers = parse_headers(&text);
    let get = |key: &str| {
        headers.iter().find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.trim().is_empty()).map(|(_, v)| v.as_str())
    };
    let license = match get("License-Expression").or_else(|| get("License")) {
        Some(l) => License::declared(l),
        None => License::unknown(),
    };
    let supplier = get("Author")
        .or_else(|| get("Author-email"))
        .or_else(|| get("Maintainer"))
        .or_else(|| get("Maintainer-email"))
        .and_then(|a| Party::parse(a.split(',').next().unwrap_or(a).replace('"', "").as_str()));
    let core = CoreMetadata::parse(&metadata).map_err(|source| SbomError::WheelMetadata {
        label: label.to_owned(),
        filename: filename.to_owned(),
        source,
    })?;
    let env = MarkerEnv::for_target(&Target::cpython313_manylinux_x86_64());
    let depends = core.requires_dist.iter().filter(|r| r.applies(&env)).map(|r| r.normalized_name()).collect();
    Ok(Some(WheelDeclaration { supplier, license, depends }))
}
