//! Canonical JSON bytes for image configs, manifests and indexes, so their digests are stable.
//!
//! The documents themselves are oci-spec values (see [`crate::image`]); serde turns
//! them into a `serde_json::Value` and this module writes that value canonically:
//! RFC 8785 (JCS) for the values used here. Object keys sorted by their UTF-16 code
//! units, no whitespace, strings as UTF-8 with only `"`, `\` and control characters
//! escaped (`\b \t \n \f \r` short forms, others `\u00xx` in lower case), integers
//! only (no floats, so no number formatting question).
//!
//! Why the writer is still hand-written: serde_json's own writer emits keys in the
//! map's order, and that order is not ours to rely on. oci-spec holds labels and
//! annotations in `HashMap`s; serde_json's `Map` is a `BTreeMap` only while its
//! `preserve_order` feature is off, and any crate in the build can turn it on; and
//! even a `BTreeMap` sorts by UTF-8 bytes where JCS sorts by UTF-16 code units (they
//! differ for keys mixing U+E000..U+FFFF with supplementary characters). The string
//! escapes above are serde_json's too; writing them here keeps every byte in one place.

use serde::Serialize;
use serde_json::Value;

/// Errors writing canonical JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The value did not serialize to JSON.
    #[error("cannot serialize: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A number that is not an integer (only integers are used in image metadata).
    #[error("number {0} is not an integer (only integers are used in image metadata)")]
    NotInteger(String),
}

/// Canonical bytes of any serializable value (an oci-spec document).
pub fn to_canonical<T: Serialize>(value: &T) -> Result<Vec<u8>, JsonError> {
    value_to_canonical(&serde_json::to_value(value)?)
}

/// Canonical bytes of a JSON value.
pub fn value_to_canonical(value: &Value) -> Result<Vec<u8>, JsonError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

/// Whether `bytes` are exactly the canonical form of the JSON they hold.
pub fn is_canonical(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| value_to_canonical(&v).ok())
        .is_some_and(|canonical| canonical == bytes)
}

fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<(), JsonError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) if n.is_i64() || n.is_u64() => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Number(n) => return Err(JsonError::NotInteger(n.to_string())),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}
