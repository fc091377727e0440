//! Endpoint host patterns: exact names, IP literals and the wildcard forms
//! OpenShell's schema allows.

use std::fmt;
use std::net::IpAddr;

use crate::glob::Glob;

/// A validated host pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct HostPattern {
    source: String,
    kind: HostKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostKind {
    /// Lower-cased name without a trailing dot.
    Exact(String),
    Ip(IpAddr),
    Wildcard(Glob),
}

/// Why a host pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host is empty")]
    Empty,
    #[error("host is longer than 253 characters")]
    TooLong,
    #[error("a bare `{0}` would match every host; name a domain such as `*.example.com`")]
    Bare(String),
    #[error("`**` is only allowed as the whole first label (as in `**.example.com`)")]
    DoubleStarPlacement,
    #[error("a wildcard is only allowed inside the first label or as a whole later label")]
    PartialWildcard,
    #[error(
        "wildcards may not cover the last two labels (`{0}` would match a whole top-level domain); name the domain, as in `*.example.com`"
    )]
    TopLevelWildcard(String),
    #[error("empty label in host (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label `{0}` is longer than 63 characters")]
    LabelTooLong(String),
    #[error(
        "invalid character {0:?} in host; hosts are DNS names (letters, digits, `-`, `_`), IP addresses, or wildcard patterns using `*` and `**`"
    )]
    BadChar(char),
    #[error("host must not include a port or scheme; use the `port`/`ports` field")]
    HasPortOrScheme,
    #[error("IP addresses cannot contain wildcards; name the address, or use `allowed_ips` with a CIDR range")]
    NumericWildcard,
}

impl HostPattern {
    /// Parses and validates a host pattern.
    pub fn parse(source: &str) -> Result<HostPattern, HostError> {
        let trimmed = source.strip_suffix('.').unwrap_or(source);
        if trimmed.is_empty() {
            return Err(HostError::Empty);
        }
        let unbracketed = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostPattern { source: source.to_owned(), kind: HostKind::Ip(ip) });
        }
        if trimmed.contains("://") || trimmed.contains(':') || trimmed.contains('/') {
            return Err(HostError::HasPortOrScheme);
        }
        if trimmed.len() > 253 {
            return Err(HostError::TooLong);
        }
        if trimmed == "*" || trimmed == "**" {
            return Err(HostError::Bare(trimmed.to_owned()));
        }
        let lower = trimmed.to_ascii_lowercase();
        let labels: Vec<&str> = lower.split('.').collect();
        if lower.contains('*') && labels.iter().all(|l| l.contains('*') || l.bytes().all(|b| b.is_ascii_digit())) {
            return Err(HostError::NumericWildcard);
        }
        let mut wildcard = false;
        for (i, label) in labels.iter().enumerate() {
            if label.is_empty() {
                return Err(HostError::EmptyLabel);
            }
            if label.len() > 63 {
                return Err(HostError::LabelTooLong((*label).to_owned()));
            }
            if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*'))) {
                return Err(HostError::BadChar(c));
            }
            if label.contains("**") && (i != 0 || *label != "**") {
                return Err(HostError::DoubleStarPlacement);
            }
            if label.contains('*') {
                wildcard = true;
                if i != 0 && *label != "*" {
                    return Err(HostError::PartialWildcard);
                }
                if i + 2 >= labels.len() {
                    return Err(HostError::TopLevelWildcard(source.to_owned()));
                }
            }
        }
        let kind = if wildcard {
            // Characters were checked above: only `*` can be special, so compiling cannot fail.
            match Glob::new(&lower, '.', true) {
                Ok(g) => HostKind::Wildcard(g),
                Err(_) => return Err(HostError::BadChar('[')),
            }
        } else {
            HostKind::Exact(lower)
        };
        Ok(HostPattern { source: source.to_owned(), kind })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.kind {
            HostKind::Ip(ip) => Some(ip),
            _ => None,
        }
    }

    /// Whether this is a wildcard pattern.
    pub fn is_wildcard(&self) -> bool {
        matches!(self.kind, HostKind::Wildcard(_))
    }

    /// The key under which the decision index files this pattern: the exact
    /// name, the IP's text, or for wildcards the literal suffix (at least two labels).
    pub fn index_key(&self) -> String {
        match &self.kind {
            HostKind::Exact(name) => name.clone(),
            HostKind::Ip(ip) => ip.to_string(),
            HostKind::Wildcard(g) => g.literal_suffix(),
        }
    }

    /// Whether `host` (already normalized by [`normalize_host`]) matches.
    pub fn matches_normalized(&self, host: &str) -> bool {
        match &self.kind {
            HostKind::Exact(name) => name == host,
            HostKind::Ip(ip) => normalize_ip_text(host).is_some_and(|h| h == *ip),
            HostKind::Wildcard(g) => g.matches_normalized(host),
        }
    }

    /// Whether `host` in any case, with or without a trailing dot, matches.
    pub fn matches(&self, host: &str) -> bool {
        self.matches_normalized(&normalize_host(host))
    }
}

/// Lower-cases a host, strips one trailing dot and IPv6 brackets.
pub fn normalize_host(host: &str) -> String {
    let h = host.strip_suffix('.').unwrap_or(host);
    let h = h.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(h);
    h.to_ascii_lowercase()
}

fn normalize_ip_text(host: &str) -> Option<IpAddr> {
    host.parse::<IpAddr>().ok()
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostPattern({:?})", self.source)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl serde::Serialize for HostPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}
