//! Wheel filenames, project-name normalization and the compatible-tag list of a target.

use std::collections::HashMap;
use std::fmt;

use crate::version::Version;

/// PEP 503 normalization: lower case, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Whether `name` is a valid project name (PEP 508: letters, digits, `-_.`, starting and
/// ending with a letter or digit).
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// One compatibility tag: `cp313-cp313-manylinux_2_17_x86_64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// Python tag (`cp313`, `py3`).
    pub python: String,
    /// ABI tag (`cp313`, `abi3`, `none`).
    pub abi: String,
    /// Platform tag (`manylinux_2_17_x86_64`, `any`).
    pub platform: String,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.python, self.abi, self.platform)
    }
}

/// A file name that is not a valid wheel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid wheel filename {filename:?}: {reason}")]
pub struct InvalidWheelName {
    /// The file name.
    pub filename: String,
    /// What is wrong.
    pub reason: String,
}

/// A parsed wheel file name: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFilename {
    /// The distribution name as written (escaped with `_`).
    pub name: String,
    /// The version.
    pub version: Version,
    /// Optional build tag: leading number and the rest.
    pub build: Option<(u64, String)>,
    /// Python tags (compressed sets are split on `.`).
    pub python_tags: Vec<String>,
    /// ABI tags.
    pub abi_tags: Vec<String>,
    /// Platform tags.
    pub platform_tags: Vec<String>,
}

impl WheelFilename {
    /// Parse a wheel file name.
    pub fn parse(filename: &str) -> Result<WheelFilename, InvalidWheelName> {
        let err = |reason: &str| InvalidWheelName { filename: filename.to_string(), reason: reason.to_string() };
        let stem = filename.strip_suffix(".whl").ok_or_else(|| err("does not end in .whl"))?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, py, abi, plat) = match parts.as_slice() {
            [n, v, p, a, pl] => (*n, *v, None, *p, *a, *pl),
            [n, v, b, p, a, pl] => (*n, *v, Some(*b), *p, *a, *pl),
            _ => return Err(err("expected 5 or 6 dash-separated parts")),
        };
        if !is_valid_name(name) {
            return Err(err("invalid distribution name"));
        }
        let version = Version::parse(version).map_err(|_| err("invalid version"))?;
        let build = match build {
            None => None,
            Some(b) => {
                let digits: String = b.chars().take_while(char::is_ascii_digit).collect();
                if digits.is_empty() {
                    return Err(err("build tag must start with a digit"));
                }
                let n = digits.parse().map_err(|_| err("build number too large"))?;
                Some((n, b[digits.len()..].to_string()))
            }
        };
        let split = |s: &str| -> Result<Vec<String>, InvalidWheelName> {
            let v: Vec<String> = s.split('.').map(str::to_string).collect();
            if v.iter().any(|t| t.is_empty()) { Err(err("empty tag")) } else { Ok(v) }
        };
        Ok(WheelFilename {
            name: name.to_string(),
            version,
            build,
            python_tags: split(py)?,
            abi_tags: split(abi)?,
            platform_tags: split(plat)?,
        })
    }

    /// Every tag the file supports (the product of the three tag sets).
    pub fn tags(&self) -> Vec<Tag> {
        let mut out = Vec::new();
        for p in &self.python_tags {
            for a in &self.abi_tags {
                for pl in &self.platform_tags {
                    out.push(Tag { python: p.clone(), abi: a.clone(), platform: pl.clone() });
                }
            }
        }
        out
    }
}

/// The interpreter and platform wheels are chosen for, and its marker environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Python major version.
    pub python_major: u32,
    /// Python minor version.
    pub python_minor: u32,
    /// Full version for `python_full_version` and `Requires-Python` (`3.13.5`).
    pub python_full_version: String,
    /// Machine (`x86_64`), used in platform tags and `platform_machine`.
    pub arch: String,
    /// Highest glibc the target has (`(2, 36)`); manylinux tags up to it are compatible.
    pub glibc: (u32, u32),
}

impl Target {
    /// CPython 3.13.5 on manylinux x86_64 with glibc 2.36 (what Debian trixie's `python3.13`
    /// needs; trixie ships glibc 2.41, so 2.36 is a conservative floor).
    pub fn cpython313_manylinux_x86_64() -> Target {
        Target {
            python_major: 3,
            python_minor: 13,
            python_full_version: "3.13.5".into(),
            arch: "x86_64".into(),
            glibc: (2, 36),
        }
    }

    /// The platform tags in priority order: `manylinux_2_X_<arch>` from the target's glibc
    /// down to 2.5 (2.17 for non-x86 machines), each legacy alias (`manylinux2014`, `2010`,
    /// `1`) right after its equivalent, then `linux_<arch>` (packaging's `_linux_platforms`).
    pub fn platforms(&self) -> Vec<String> {
        let arch = &self.arch;
        let (major, max_minor) = self.glibc;
        let min_minor = if matches!(arch.as_str(), "x86_64" | "i686") { 5 } else { 17 };
        let mut out = Vec::new();
        if major == 2 {
            let mut minor = max_minor;
            while minor >= min_minor {
                out.push(format!("manylinux_2_{minor}_{arch}"));
                let legacy = match minor {
                    17 => Some("manylinux2014"),
                    12 => Some("manylinux2010"),
                    5 => Some("manylinux1"),
                    _ => None,
                };
                if let Some(l) = legacy
                    && (minor != 12 && minor != 5 || matches!(arch.as_str(), "x86_64" | "i686"))
                {
                    out.push(format!("{l}_{arch}"));
                }
                minor -= 1;
            }
        }
        out.push(format!("linux_{arch}"));
        out
    }

    /// Every compatible tag, best first, as packaging's `sys_tags()` orders them for CPython:
    /// `cp3X-cp3X-<plat>`, `cp3X-abi3-<plat>`, `cp3X-none-<plat>`, `cp3Y-abi3-<plat>` for older
    /// minors, then `py3X-none-<plat>`, `py3-none-<plat>`, `py3Y-none-<plat>`, then
    /// `cp3X-none-any`, `py3X-none-any`, `py3-none-any`, `py3Y-none-any`.
    pub fn compatible_tags(&self) -> Vec<Tag> {
        let (maj, min) = (self.python_major, self.python_minor);
        let cp = format!("cp{maj}{min}");
        let plats = self.platforms();
        let t = |p: &str, a: &str, pl: &str| Tag { python: p.into(), abi: a.into(), platform: pl.into() };
        let mut out = Vec::new();
        for pl in &plats {
            out.push(t(&cp, &cp, pl));
        }
        for pl in &plats {
            out.push(t(&cp, "abi3", pl));
        }
        for pl in &plats {
            out.push(t(&cp, "none", pl));
        }
        for m in (2..min).rev() {
            for pl in &plats {
                out.push(t(&format!("cp{maj}{m}"), "abi3", pl));
            }
        }
        let mut py = vec![format!("py{maj}{min}"), format!("py{maj}")];
        py.extend((0..min).rev().map(|m| format!("py{maj}{m}")));
        for p in &py {
            for pl in &plats {
                out.push(t(p, "none", pl));
            }
        }
        out.push(t(&cp, "none", "any"));
        for p in &py {
            out.push(t(p, "none", "any"));
        }
        out
    }

    /// A priority map (lower is better) over [`Target::compatible_tags`].
    pub fn tag_priorities(&self) -> HashMap<Tag, usize> {
        self.compatible_tags().into_iter().enumerate().map(|(i, t)| (t, i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize() {
        assert_eq!(normalize_name("Foo.Bar__baz-_-Qux"), "foo-bar-baz-qux");
        assert_eq!(normalize_name("typing_extensions"), "typing-extensions");
        assert!(is_valid_name("a.b-c_d1"));
        assert!(!is_valid_name("-a"));
        assert!(!is_valid_name("a b"));
    }

    #[test]
    fn wheel_names() {
        let w = WheelFilename::parse("six-1.16.0-py2.py3-none-any.whl").expect("valid");
        assert_eq!(w.python_tags, ["py2", "py3"]);
        assert_eq!(w.tags().len(), 2);
        let w = WheelFilename::parse("pkg-1.0-2b-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
            .expect("valid");
        assert_eq!(w.build, Some((2, "b".into())));
        assert_eq!(w.platform_tags.len(), 2);
        for bad in ["pkg-1.0.tar.gz", "pkg-1.0-py3-none.whl", "pkg-x.y-py3-none-any.whl", "pkg-1.0-b-py3-none-any.whl"]
        {
            assert!(WheelFilename::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_order_for_cpython_313() {
        let t = Target::cpython313_manylinux_x86_64();
        let plats = t.platforms();
        assert_eq!(plats[0], "manylinux_2_36_x86_64");
        let i2014 = plats.iter().position(|p| p == "manylinux2014_x86_64").expect("2014");
        assert_eq!(plats[i2014 - 1], "manylinux_2_17_x86_64");
        assert!(plats.contains(&"manylinux2010_x86_64".to_string()));
        assert_eq!(&plats[plats.len() - 3..], ["manylinux_2_5_x86_64", "manylinux1_x86_64", "linux_x86_64"]);
        let tags: Vec<String> = t.compatible_tags().iter().map(ToString::to_string).collect();
        assert_eq!(tags[0], "cp313-cp313-manylinux_2_36_x86_64");
        let pos = |s: &str| tags.iter().position(|t| t == s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(pos("cp313-cp313-linux_x86_64") < pos("cp313-abi3-manylinux_2_36_x86_64"));
        assert!(pos("cp313-abi3-linux_x86_64") < pos("cp313-none-manylinux_2_36_x86_64"));
        assert!(pos("cp313-none-linux_x86_64") < pos("cp312-abi3-manylinux_2_36_x86_64"));
        assert!(pos("cp32-abi3-linux_x86_64") < pos("py313-none-manylinux_2_36_x86_64"));
        assert!(pos("py313-none-linux_x86_64") < pos("py3-none-manylinux_2_36_x86_64"));
        assert!(pos("py30-none-linux_x86_64") < pos("cp313-none-any"));
        assert!(pos("cp313-none-any") < pos("py313-none-any"));
        assert!(pos("py313-none-any") < pos("py3-none-any"));
        assert!(pos("py3-none-any") < pos("py312-none-any"));
        assert_eq!(tags.last().map(String::as_str), Some("py30-none-any"));
        assert!(!tags.iter().any(|t| t.contains("manylinux_2_37") || t.contains("cp314") || t.contains("musllinux")));
    }
}
