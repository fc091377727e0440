//! Canonical JSON for image configs, manifests and indexes, so their digests are stable.
//!
//! Output follows RFC 8785 (JCS) for the values used here: object keys sorted by their
//! UTF-16 code units, no whitespace, strings as UTF-8 with only `"`, `\` and control
//! characters escaped (`\b \t \n \f \r` short forms, others `\u00xx` in lower case),
//! integers only (no floats, so no number formatting question). Objects are `BTreeMap`s:
//! no hash map ever decides an order.
//!
//! [`parse`] reads JSON (through serde_json) into the same [`Value`], for the readers.

use std::collections::BTreeMap;

/// A JSON value with integer numbers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object; written with keys in canonical order.
    Object(BTreeMap<String, Value>),
}

/// Errors parsing JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// A number that is not an integer in the i64 range.
    #[error("number {0} is not an integer (only integers are used in image metadata)")]
    NotInteger(String),
}

impl Value {
    /// An empty object.
    pub fn object() -> Value {
        Value::Object(BTreeMap::new())
    }

    /// Adds a member (for building objects); no-op on non-objects.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Value {
        if let Value::Object(m) = &mut self {
            m.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Member of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.get(key),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The members, if this is an object.
    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Canonical bytes.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        write_value(self, &mut out);
        out
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::String(s.clone())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<u64> for Value {
    /// Sizes and counts; values past `i64::MAX` (never a real size) saturate.
    fn from(i: u64) -> Value {
        Value::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value> + Clone> From<&[T]> for Value {
    fn from(v: &[T]) -> Value {
        Value::Array(v.iter().cloned().map(Into::into).collect())
    }
}

impl<V: Into<Value> + Clone> From<&BTreeMap<String, V>> for Value {
    fn from(m: &BTreeMap<String, V>) -> Value {
        Value::Object(m.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect())
    }
}

/// Canonical bytes of a value.
pub fn to_vec(value: &Value) -> Vec<u8> {
    value.to_canonical()
}

fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // BTreeMap order is UTF-8 byte order; JCS wants UTF-16 code units. They
            // differ only for keys mixing U+E000..U+FFFF with supplementary characters.
            if map.keys().any(|k| k.chars().any(|c| c >= '\u{e000}')) {
                members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            }
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
    }
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

/// Parses JSON into a [`Value`]. Non-integer numbers are refused.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| JsonError::Syntax(e.to_string()))?;
    convert(v)
}

fn convert(v: serde_json::Value) -> Result<Value, JsonError> {
    Ok(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Int(n.as_i64().ok_or_else(|| JsonError::NotInteger(n.to_string()))?),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(a) => Value::Array(a.into_iter().map(convert).collect::<Result<_, _>>()?),
        serde_json::Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| Ok((k, convert(v)?))).collect::<Result<_, JsonError>>()?)
        }
    })
}

/// Whether `bytes` are exactly the canonical form of the JSON they hold.
pub fn is_canonical(bytes: &[u8]) -> bool {
    parse(bytes).is_ok_and(|v| v.to_canonical() == bytes)
}
