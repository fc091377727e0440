//! The recorded compressor matches what Cargo.lock pins.

use openshell_oci::COMPRESSOR;
use openshell_oci::compress::{Compression, LEVEL, ZSTD_COMPRESSOR, ZSTD_LEVEL, check_compressor};

fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            return lines.next()?.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned);
        }
    }
    None
}

#[test]
fn compressor_string_names_the_locked_versions() {
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    let lock = std::fs::read_to_string(lock_path).expect("Cargo.lock");
    for name in ["zlib-rs", "flate2"] {
        let v = locked_version(&lock, name).unwrap_or_else(|| panic!("{name} not in Cargo.lock"));
        assert!(
            COMPRESSOR.contains(&format!("{name} {v}")),
            "Cargo.lock has {name} {v} but COMPRESSOR says `{COMPRESSOR}`: a compressor update changes every \
             layer digest; update COMPRESSOR and the fingerprint deliberately"
        );
    }
    assert!(COMPRESSOR.contains(&format!("level {LEVEL}")));
    check_compressor(Compression::Gzip).expect("fingerprint");
}

#[test]
fn zstd_compressor_string_names_the_locked_versions() {
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    let lock = std::fs::read_to_string(lock_path).expect("Cargo.lock");
    for name in ["zstd", "zstd-safe", "zstd-sys"] {
        let v = locked_version(&lock, name).unwrap_or_else(|| panic!("{name} not in Cargo.lock"));
        assert!(
            ZSTD_COMPRESSOR.contains(&format!("{name} {v}")),
            "Cargo.lock has {name} {v} but ZSTD_COMPRESSOR says `{ZSTD_COMPRESSOR}`: a compressor update changes \
             every zstd layer digest; update ZSTD_COMPRESSOR and its fingerprint deliberately"
        );
    }
    // zstd-sys's version names the libzstd it bundles (`2.1.3+zstd.1.5.7`).
    let sys = locked_version(&lock, "zstd-sys").expect("zstd-sys");
    let libzstd = sys.split_once("+zstd.").map(|(_, v)| v).expect("zstd-sys version names its libzstd");
    assert!(ZSTD_COMPRESSOR.contains(&format!("libzstd {libzstd} ")), "{ZSTD_COMPRESSOR}");
    assert!(ZSTD_COMPRESSOR.contains(&format!("level {ZSTD_LEVEL}")));
    check_compressor(Compression::Zstd).expect("zstd fingerprint");
}
