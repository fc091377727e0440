//! deb822 control data: paragraphs of `Name: value` fields separated by blank lines.
//!
//! Used for `Packages` indexes, `Release` files and a `.deb`'s `control` file. Fields keep
//! their order. A value is the text after the colon with surrounding whitespace trimmed;
//! each continuation line (one starting with a space or tab) is appended after a `\n`
//! with its trailing whitespace trimmed and its leading whitespace kept, so a multi-line
//! field such as `Description` or Release's `SHA256` round-trips its lines.
//!
//! Strict by default, as dpkg is for binary control data: `#` comment lines are an error
//! (use [`ParseOptions::allow_comments`] for source-package style files), a line without
//! a colon is an error, and a field may appear only once per paragraph. Every error names
//! the input and the 1-based line.

use std::fmt;

/// A deb822 syntax error: the input's name, the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct ControlError {
    /// Name of the input (file name or URL) as given by the caller.
    pub origin: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One field of a paragraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field name as written (matching is case-insensitive).
    pub name: String,
    /// The value: see the module documentation for how lines are joined.
    pub value: String,
    /// 1-based line of the field name.
    pub line: usize,
}

/// One paragraph: fields in input order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paragraph {
    fields: Vec<Field>,
    line: usize,
}

impl Paragraph {
    /// An empty paragraph starting at `line` (for building paragraphs by hand).
    pub fn new(line: usize) -> Paragraph {
        Paragraph { fields: Vec::new(), line }
    }

    /// The value of a field, matched case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(|f| f.value.as_str())
    }

    /// A field, matched case-insensitively.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// All fields in input order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// 1-based line of the paragraph's first field.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Appends a field; fails if the paragraph already has one of that name.
    pub fn push(&mut self, field: Field) -> Result<(), Field> {
        if self.field(&field.name).is_some() {
            return Err(field);
        }
        self.fields.push(field);
        Ok(())
    }
}

impl fmt::Display for Paragraph {
    /// Writes the paragraph back in deb822 form (no trailing blank line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for field in &self.fields {
            let mut lines = field.value.split('\n');
            let first = lines.next().unwrap_or_default();
            if first.is_empty() {
                writeln!(f, "{}:", field.name)?;
            } else {
                writeln!(f, "{}: {first}", field.name)?;
            }
            for l in lines {
                if l.starts_with([' ', '\t']) {
                    writeln!(f, "{l}")?;
                } else {
                    writeln!(f, " {l}")?;
                }
            }
        }
        Ok(())
    }
}

/// Parser options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept lines starting with `#` as comments (debian/control style). Off for
    /// Packages, Release and binary control files.
    pub allow_comments: bool,
}

/// Parses deb822 text strictly (no comments). `origin` names the input in errors.
pub fn parse(origin: &str, text: &str) -> Result<Vec<Paragraph>, ControlError> {
    parse_with(origin, text, ParseOptions::default())
}

/// Parses deb822 bytes, which must be UTF-8; the error names the first bad line.
pub fn parse_bytes(origin: &str, data: &[u8]) -> Result<Vec<Paragraph>, ControlError> {
    parse(origin, utf8(origin, data)?)
}

/// Checks that `data` is UTF-8, naming the line of the first invalid byte otherwise.
pub(crate) fn utf8<'a>(origin: &str, data: &'a [u8]) -> Result<&'a str, ControlError> {
    std::str::from_utf8(data).map_err(|e| {
        let line = 1 + data[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        ControlError { origin: origin.to_owned(), line, message: "not valid UTF-8".to_owned() }
    })
}

/// Parses exactly one paragraph (a `.deb` control file); more than one is an error.
pub fn parse_single(origin: &str, text: &str) -> Result<Paragraph, ControlError> {
    let mut paras = parse(origin, text)?;
    match paras.len() {
        0 => Err(ControlError {
            origin: origin.to_owned(),
            line: 1,
            message: "no paragraph (empty control data)".into(),
        }),
        1 => Ok(paras.remove(0)),
        _ => Err(ControlError {
            origin: origin.to_owned(),
            line: paras[1].line(),
            message: "expected one paragraph, found a second one".into(),
        }),
    }
}

/// Parses deb822 text with the given options.
pub fn parse_with(origin: &str, text: &str, options: ParseOptions) -> Result<Vec<Paragraph>, ControlError> {
    let mut out = Vec::new();
    let mut current: Option<Paragraph> = None;
    let err = |line: usize, message: String| ControlError { origin: origin.to_owned(), line, message };
    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if let Some(p) = current.take() {
                out.push(p);
            }
            continue;
        }
        if line.starts_with('#') {
            if options.allow_comments {
                continue;
            }
            return Err(err(line_no, "comment lines are not allowed here".into()));
        }
        if line.starts_with([' ', '\t']) {
            let Some(field) = current.as_mut().and_then(|p| p.fields.last_mut()) else {
                return Err(err(line_no, "continuation line without a field before it".into()));
            };
            field.value.push('\n');
            field.value.push_str(line.trim_end());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(err(line_no, format!("expected `Field: value`, found `{}`", shorten(line))));
        };
        if name.is_empty() {
            return Err(err(line_no, "empty field name".into()));
        }
        if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(line_no, format!("field name `{}` contains {c:?}", shorten(name))));
        }
        if name.starts_with('-') {
            return Err(err(line_no, format!("field name `{}` starts with `-`", shorten(name))));
        }
        let para = current.get_or_insert_with(|| Paragraph::new(line_no));
        let field = Field { name: name.to_owned(), value: value.trim().to_owned(), line: line_no };
        if let Err(f) = para.push(field) {
            let first = para.field(&f.name).map_or(0, |x| x.line);
            return Err(err(line_no, format!("duplicate field `{}` (first on line {first})", f.name)));
        }
    }
    if let Some(p) = current.take() {
        out.push(p);
    }
    Ok(out)
}

fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX { s.to_owned() } else { format!("{}…", s.chars().take(MAX).collect::<String>()) }
}
