//! JSON as it streams past, a byte at a time, in bounded memory: the privacy
//! router rewrites a request body's top-level `"model"` while forwarding it
//! ([`ModelRewriter`]), and finds token counts in responses and server-sent
//! events ([`UsageFinder`], [`SseUsage`]) without holding the body.
//!
//! Hand-written (serde_json reads whole documents): [`Scanner`] follows RFC
//! 8259 as serde_json reads it — the same grammar, UTF-8 checked inside
//! strings, escapes decoded for keys (so `"mo\u0064el"` is the model key, as
//! the backend will read it), lone surrogates refused, nesting up to 127 —
//! and the property tests hold it to serde_json on generated and mutated
//! documents.

/// The deepest nesting accepted (serde_json's recursion limit).
pub const MAX_DEPTH: usize = 127;
/// Keys longer than this are never one the router looks for.
const KEY_CAP: usize = 16;

/// Why a body is not the JSON the router can forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the request body is not JSON: {what} at byte {at}")]
    Syntax { what: &'static str, at: u64 },
    #[error("the request body is not a JSON object")]
    NotObject,
    #[error("the request body is JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value is expected (`array`: `]` may close an empty array instead).
    Value {
        array_start: bool,
    },
    /// In an object, a key is expected (`first`: `}` may close it instead).
    Key {
        first: bool,
    },
    Colon,
    /// After a value: `,`, a closing bracket, or (at the top) the end.
    After,
    Str {
        key: bool,
    },
    Escape {
        key: bool,
    },
    /// `\uXXXX`: `n` digits read, their value so far; `high`: a leading
    /// surrogate came just before, so this must be its trailing one.
    Unicode {
        key: bool,
        n: u8,
        value: u32,
        high: Option<u32>,
    },
    /// After a leading surrogate's escape: `\` of the trailing one must follow.
    LowBackslash {
        key: bool,
        high: u32,
    },
    LowU {
        key: bool,
        high: u32,
    },
    /// Inside a multi-byte UTF-8 sequence: continuation bytes left, and the
    /// range the next one must fall in.
    Utf8 {
        key: bool,
        left: u8,
        lo: u8,
        hi: u8,
    },
    Number(Num),
    Literal {
        word: &'static [u8],
        at: u8,
    },
}

/// What one byte did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// A number at this depth ended just before the byte.
    pub ended_before: Option<usize>,
    /// A value at this depth starts with the byte.
    pub starts: Option<usize>,
    /// A value at this depth ends with the byte.
    pub ends: Option<usize>,
    /// The byte closed a key at this depth ([`Scanner::key`] holds it).
    pub key: Option<usize>,
}

/// A streaming JSON syntax checker that reports where values start and end.
/// The depth of a value is the number of containers around it (the top-level
/// value is at depth 0, an object's members at 1).
#[derive(Debug)]
pub struct Scanner {
    state: State,
    stack: Vec<Container>,
    at: u64,
    /// The key being read, decoded (only up to [`KEY_CAP`] bytes).
    key: Vec<u8>,
    long_key: bool,
    /// The last keys at depths 1 and 2.
    keys: [Option<Vec<u8>>; 2],
    done: bool,
}

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner {
            state: State::Value { array_start: false },
            stack: Vec::new(),
            at: 0,
            key: Vec::new(),
            long_key: false,
            keys: [None, None],
            done: false,
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Scanner {
    /// The current key at `depth` (1 or 2), when it was short enough to keep.
    pub fn key(&self, depth: usize) -> Option<&[u8]> {
        self.keys.get(depth.wrapping_sub(1)).and_then(|k| k.as_deref())
    }

    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Whether the top-level value is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bytes held: open containers and the keys kept.
    pub fn held(&self) -> usize {
        self.stack.capacity() + self.key.capacity() + self.keys.iter().flatten().map(Vec::capacity).sum::<usize>()
    }

    fn err(&self, what: &'static str) -> JsonError {
        JsonError::Syntax { what, at: self.at }
    }

    /// Takes one byte.
    pub fn push(&mut self, b: u8) -> Result<Step, JsonError> {
        let mut step = Step::default();
        if let State::Number(n) = self.state
            && !matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
        {
            if !matches!(n, Num::Zero | Num::Int | Num::Frac | Num::Exp) {
                return Err(self.err("an unfinished number"));
            }
            step.ended_before = Some(self.depth());
            self.after_value();
        }
        self.byte(b, &mut step)?;
        self.at += 1;
        Ok(step)
    }

    /// The input ended: fine only after one complete value.
    pub fn finish(&mut self) -> Result<Step, JsonError> {
        let mut step = Step::default();
        if let State::Number(n) = self.state
            && matches!(n, Num::Zero | Num::Int | Num::Frac | Num::Exp)
            && self.stack.is_empty()
        {
            step.ended_before = Some(0);
            self.after_value();
        }
        if self.done { Ok(step) } else { Err(self.err("the end of the input")) }
    }

    fn after_value(&mut self) {
        self.state = State::After;
        if self.stack.is_empty() {
            self.done = true;
        }
    }

    fn byte(&mut self, b: u8, step: &mut Step) -> Result<(), JsonError> {
        match self.state {
            State::Value { array_start } => self.value(b, array_start, step),
            State::Key { first } => match b {
                b'"' => {
                    self.key.clear();
                    self.long_key = false;
                    self.state = State::Str { key: true };
                    Ok(())
                }
                b'}' if first => self.close(Container::Object, step),
                b if is_ws(b) => Ok(()),
                _ => Err(self.err("a key was expected")),
            },
            State::Colon => match b {
                b':' => {
                    self.state = State::Value { array_start: false };
                    Ok(())
                }
                b if is_ws(b) => Ok(()),
                _ => Err(self.err("`:` was expected")),
            },
            State::After => self.after(b, step),
            State::Str { key } => self.string(b, key, step),
            State::Escape { key } => self.escape(b, key),
            State::Unicode { key, n, value, high } => self.unicode(b, key, n, value, high),
            State::LowBackslash { key, high } if b == b'\\' => {
                self.state = State::LowU { key, high };
                Ok(())
            }
            State::LowU { key, high } if b == b'u' => {
                self.state = State::Unicode { key, n: 0, value: 0, high: Some(high) };
                Ok(())
            }
            State::LowBackslash { .. } | State::LowU { .. } => Err(self.err("a lone leading surrogate")),
            State::Utf8 { key, left, lo, hi } => {
                if !(lo..=hi).contains(&b) {
                    return Err(self.err("invalid UTF-8"));
                }
                self.key_byte(key, b);
                self.state = if left == 1 {
                    State::Str { key }
                } else {
                    State::Utf8 { key, left: left - 1, lo: 0x80, hi: 0xbf }
                };
                Ok(())
            }
            State::Number(n) => self.number(n, b),
            State::Literal { word, at } => {
                if word.get(usize::from(at)) != Some(&b) {
                    return Err(self.err("an invalid literal"));
                }
                if usize::from(at) + 1 == word.len() {
                    step.ends = Some(self.depth());
                    self.after_value();
                } else {
                    self.state = State::Literal { word, at: at + 1 };
                }
                Ok(())
            }
        }
    }

    fn value(&mut self, b: u8, array_start: bool, step: &mut Step) -> Result<(), JsonError> {
        if is_ws(b) {
            return Ok(());
        }
        if b == b']' && array_start {
            return self.close(Container::Array, step);
        }
        if self.done {
            return Err(self.err("more than one value"));
        }
        step.starts = Some(self.depth());
        match b {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                if b == b'{' {
                    self.stack.push(Container::Object);
                    self.state = State::Key { first: true };
                } else {
                    self.stack.push(Container::Array);
                    self.state = State::Value { array_start: true };
                }
            }
            b'"' => self.state = State::Str { key: false },
            b'-' => self.state = State::Number(Num::Minus),
            b'0' => self.state = State::Number(Num::Zero),
            b'1'..=b'9' => self.state = State::Number(Num::Int),
            b't' => self.state = State::Literal { word: b"true", at: 1 },
            b'f' => self.state = State::Literal { word: b"false", at: 1 },
            b'n' => self.state = State::Literal { word: b"null", at: 1 },
            _ => return Err(self.err("a value was expected")),
        }
        Ok(())
    }

    fn close(&mut self, container: Container, step: &mut Step) -> Result<(), JsonError> {
        if self.stack.pop() != Some(container) {
            return Err(self.err("a mismatched closing bracket"));
        }
        if let Some(slot) = self.keys.get_mut(self.stack.len()) {
            *slot = None;
        }
        step.ends = Some(self.depth());
        self.after_value();
        Ok(())
    }

    fn after(&mut self, b: u8, step: &mut Step) -> Result<(), JsonError> {
        match (b, self.stack.last()) {
            (b, _) if is_ws(b) => Ok(()),
            (b',', Some(Container::Object)) => {
                self.state = State::Key { first: false };
                Ok(())
            }
            (b',', Some(Container::Array)) => {
                self.state = State::Value { array_start: false };
                Ok(())
            }
            (b'}', Some(Container::Object)) => self.close(Container::Object, step),
            (b']', Some(Container::Array)) => self.close(Container::Array, step),
            _ => Err(self.err("`,` or a closing bracket was expected")),
        }
    }

    fn string(&mut self, b: u8, key: bool, step: &mut Step) -> Result<(), JsonError> {
        match b {
            b'"' if key => {
                let depth = self.depth();
                if let Some(slot) = self.keys.get_mut(depth - 1) {
                    *slot = (!self.long_key).then(|| self.key.clone());
                }
                step.key = Some(depth);
                self.state = State::Colon;
            }
            b'"' => {
                step.ends = Some(self.depth());
                self.after_value();
            }
            b'\\' => self.state = State::Escape { key },
            0..=0x1f => return Err(self.err("a control character in a string")),
            0x20..=0x7f => self.key_byte(key, b),
            0xc2..=0xdf => self.utf8(key, b, 1, 0x80, 0xbf),
            0xe0 => self.utf8(key, b, 2, 0xa0, 0xbf),
            0xe1..=0xec | 0xee | 0xef => self.utf8(key, b, 2, 0x80, 0xbf),
            0xed => self.utf8(key, b, 2, 0x80, 0x9f),
            0xf0 => self.utf8(key, b, 3, 0x90, 0xbf),
            0xf1..=0xf3 => self.utf8(key, b, 3, 0x80, 0xbf),
            0xf4 => self.utf8(key, b, 3, 0x80, 0x8f),
            _ => return Err(self.err("invalid UTF-8")),
        }
        Ok(())
    }

    fn utf8(&mut self, key: bool, b: u8, left: u8, lo: u8, hi: u8) {
        self.key_byte(key, b);
        self.state = State::Utf8 { key, left, lo, hi };
    }

    fn key_byte(&mut self, key: bool, b: u8) {
        if !key {
            return;
        }
        if self.key.len() < KEY_CAP {
            self.key.push(b);
        } else {
            self.long_key = true;
        }
    }

    fn escape(&mut self, b: u8, key: bool) -> Result<(), JsonError> {
        let decoded = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                self.state = State::Unicode { key, n: 0, value: 0, high: None };
                return Ok(());
            }
            _ => return Err(self.err("an invalid escape")),
        };
        self.key_byte(key, decoded);
        self.state = State::Str { key };
        Ok(())
    }

    fn unicode(&mut self, b: u8, key: bool, n: u8, value: u32, high: Option<u32>) -> Result<(), JsonError> {
        let digit = (b as char).to_digit(16).ok_or_else(|| self.err("an invalid \\u escape"))?;
        let value = value << 4 | digit;
        if n < 3 {
            self.state = State::Unicode { key, n: n + 1, value, high };
            return Ok(());
        }
        let c = match (high, value) {
            (None, 0xd800..=0xdbff) => {
                self.state = State::LowBackslash { key, high: value };
                return Ok(());
            }
            (None, 0xdc00..=0xdfff) => return Err(self.err("a lone trailing surrogate")),
            (None, v) => char::from_u32(v),
            (Some(h), 0xdc00..=0xdfff) => char::from_u32(0x10000 + ((h - 0xd800) << 10) + (value - 0xdc00)),
            (Some(_), _) => return Err(self.err("a lone leading surrogate")),
        };
        let c = c.ok_or_else(|| self.err("an invalid \\u escape"))?;
        let mut utf8 = [0u8; 4];
        for &byte in c.encode_utf8(&mut utf8).as_bytes() {
            self.key_byte(key, byte);
        }
        self.state = State::Str { key };
        Ok(())
    }

    fn number(&mut self, n: Num, b: u8) -> Result<(), JsonError> {
        let next = match (n, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, b'1'..=b'9') => Num::Int,
            (Num::Int, b'0'..=b'9') => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::E,
            (Num::E, b'+' | b'-') => Num::ESign,
            (Num::E | Num::ESign | Num::Exp, b'0'..=b'9') => Num::Exp,
            _ => return Err(self.err("an invalid number")),
        };
        self.state = State::Number(next);
        Ok(())
    }
}

/// Rewrites a JSON object's top-level `"model"` (every occurrence) to the
/// route's model, or adds it when absent, as the body streams through; with
/// no route model, passes the body unchanged and notes the caller's model.
#[derive(Debug)]
pub struct ModelRewriter {
    scanner: Scanner,
    /// The replacement, as a JSON string (quoted, escaped).
    model: Option<Vec<u8>>,
    skipping: bool,
    members: usize,
    seen: bool,
    /// The caller's model value, raw (bounded), when no route model is set.
    caller: Vec<u8>,
    capturing: bool,
}

const MODEL_CAP: usize = 1024;

impl ModelRewriter {
    pub fn new(model: Option<&str>) -> ModelRewriter {
        ModelRewriter {
            scanner: Scanner::default(),
            model: model.map(|m| serde_json::Value::String(m.to_owned()).to_string().into_bytes()),
            skipping: false,
            members: 0,
            seen: false,
            caller: Vec::new(),
            capturing: false,
        }
    }

    /// Rewrites `input`, appending to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), JsonError> {
        for &b in input {
            let step = self.scanner.push(b)?;
            if step.starts == Some(0) && b != b'{' {
                return Err(JsonError::NotObject);
            }
            if step.ended_before == Some(1) {
                self.skipping = false;
                self.capturing = false;
            }
            if step.key == Some(1) {
                self.members += 1;
            }
            if step.starts == Some(1) && self.scanner.key(1) == Some(b"model") {
                self.seen = true;
                match &self.model {
                    Some(m) => {
                        out.extend_from_slice(m);
                        self.skipping = true;
                    }
                    None => {
                        self.caller.clear();
                        self.capturing = true;
                    }
                }
            }
            if step.ends == Some(0)
                && !self.seen
                && let Some(m) = &self.model
            {
                // The closing brace of the top-level object: the model goes in first.
                if self.members > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"model\":");
                out.extend_from_slice(m);
            }
            if self.capturing && self.caller.len() < MODEL_CAP {
                self.caller.push(b);
            }
            if !self.skipping {
                out.push(b);
            }
            if step.ends == Some(1) {
                self.skipping = false;
                self.capturing = false;
            }
        }
        Ok(())
    }

    /// The body ended: it must have been one JSON object.
    pub fn finish(&mut self) -> Result<(), JsonError> {
        self.scanner.finish().map(drop)
    }

    /// The model the backend is asked for: the route's, or the caller's (a
    /// string value of the top-level `"model"`).
    pub fn model(&self, route: Option<&str>) -> Option<String> {
        route.map(str::to_owned).or_else(|| serde_json::from_slice::<String>(&self.caller).ok())
    }
}

/// Token counts, when a response carries them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
}

impl Usage {
    fn take(&mut self, usage: &serde_json::Value) {
        let n = |k: &str| usage.get(k).and_then(serde_json::Value::as_u64);
        if let Some(i) = n("prompt_tokens").or_else(|| n("input_tokens")) {
            self.input = Some(i);
        }
        if let Some(o) = n("completion_tokens").or_else(|| n("output_tokens")) {
            self.output = Some(o);
        }
    }
}

/// Finds `usage` in a JSON document as it streams: at the top level (OpenAI
/// bodies and chunks) or inside `message` or `response` (Anthropic's
/// `message_start`, the Responses API's events). Holds at most
/// [`USAGE_CAP`] bytes of the `usage` value; gives up on anything not JSON.
#[derive(Debug, Default)]
pub struct UsageFinder {
    scanner: Scanner,
    capture: Vec<u8>,
    capturing: Option<usize>,
    failed: bool,
    usage: Usage,
}

/// The most of a `usage` value held.
pub const USAGE_CAP: usize = 16 * 1024;

impl UsageFinder {
    pub fn feed(&mut self, input: &[u8]) {
        for &b in input {
            if self.failed {
                return;
            }
            let Ok(step) = self.scanner.push(b) else {
                self.failed = true;
                return;
            };
            if let (Some(d), Some(c)) = (step.ended_before, self.capturing)
                && d == c
            {
                self.captured();
            }
            if let Some(d) = step.starts
                && self.capturing.is_none()
                && self.wanted(d)
            {
                self.capture.clear();
                self.capturing = Some(d);
            }
            if self.capturing.is_some() && !is_ws(b) {
                if self.capture.len() < USAGE_CAP {
                    self.capture.push(b);
                } else {
                    self.capturing = None;
                }
            }
            if let (Some(d), Some(c)) = (step.ends, self.capturing)
                && d == c
            {
                self.captured();
            }
        }
    }

    /// Bytes held: the `usage` value being captured, the scanner's state.
    pub fn held(&self) -> usize {
        self.capture.capacity() + self.scanner.held()
    }

    fn wanted(&self, depth: usize) -> bool {
        let key = |d| self.scanner.key(d);
        match depth {
            1 => key(1) == Some(b"usage"),
            2 => key(2) == Some(b"usage") && matches!(key(1), Some(b"message" | b"response")),
            _ => false,
        }
    }

    fn captured(&mut self) {
        self.capturing = None;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.capture) {
            self.usage.take(&v);
        }
    }

    pub fn finish(self) -> Usage {
        self.usage
    }
}

/// Server-sent events as they stream (any line ending: CR, LF, CRLF): each
/// event's `data` lines go through a [`UsageFinder`]; the counts of the last
/// events that had them win. Memory stays bounded whatever the stream.
#[derive(Debug, Default)]
pub struct SseUsage {
    /// The current line's field name (bounded), or `None` once past the colon.
    field: Option<Vec<u8>>,
    /// Whether the current line is a `data` line whose value is being fed.
    data: bool,
    /// The byte after `data:` (one leading space is dropped).
    first: bool,
    /// The last byte was a CR (a following LF ends the same line).
    cr: bool,
    /// The current line is empty so far.
    empty: bool,
    /// `data` lines in this event so far.
    lines: usize,
    event: Option<UsageFinder>,
    usage: Usage,
}

impl SseUsage {
    pub fn new() -> SseUsage {
        SseUsage { field: Some(Vec::new()), empty: true, ..SseUsage::default() }
    }

    pub fn feed(&mut self, input: &[u8]) {
        for &b in input {
            if b == b'\n' && self.cr {
                self.cr = false;
                continue;
            }
            self.cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                self.end_line();
                continue;
            }
            self.empty = false;
            match &mut self.field {
                Some(name) if b == b':' => {
                    self.data = name == b"data";
                    self.field = None;
                    self.first = true;
                    if self.data {
                        let finder = self.event.get_or_insert_with(UsageFinder::default);
                        if self.lines > 0 {
                            finder.feed(b"\n");
                        }
                        self.lines += 1;
                    }
                }
                // Longer names than this are none this reader wants.
                Some(name) if name.len() <= 8 => name.push(b),
                Some(_) => {}
                None if self.data => {
                    let first = std::mem::take(&mut self.first);
                    if !(first && b == b' ')
                        && let Some(finder) = self.event.as_mut()
                    {
                        finder.feed(&[b]);
                    }
                }
                None => {}
            }
        }
    }

    /// Bytes held: the field name, and the current event's finder.
    pub fn held(&self) -> usize {
        self.field.as_ref().map_or(0, Vec::capacity) + self.event.as_ref().map_or(0, UsageFinder::held)
    }

    fn end_line(&mut self) {
        if self.empty {
            // A blank line dispatches the event.
            if let Some(finder) = self.event.take() {
                let usage = finder.finish();
                self.usage.input = usage.input.or(self.usage.input);
                self.usage.output = usage.output.or(self.usage.output);
            }
            self.lines = 0;
        }
        self.field = Some(Vec::new());
        self.data = false;
        self.empty = true;
    }

    pub fn finish(mut self) -> Usage {
        if !self.empty {
            self.end_line();
        }
        self.end_line();
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rewrite(body: &[u8], model: Option<&str>) -> Result<(Vec<u8>, Option<String>), JsonError> {
        let mut r = ModelRewriter::new(model);
        let mut out = Vec::new();
        r.feed(body, &mut out)?;
        r.finish()?;
        Ok((out, r.model(model)))
    }

    #[test]
    fn models_are_rewritten_only_when_the_route_says() {
        let (body, model) = rewrite(br#"{"model":"gpt-x","messages":[]}"#, Some("local-7b")).expect("json");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!((v["model"].as_str(), model.as_deref()), (Some("local-7b"), Some("local-7b")));
        let (body, model) = rewrite(br#"{"model":"gpt-x"}"#, None).expect("json");
        assert_eq!((body.as_slice(), model.as_deref()), (&br#"{"model":"gpt-x"}"#[..], Some("gpt-x")));
        assert!(rewrite(b"not json", None).is_err());
        assert_eq!(rewrite(b"[1]", Some("m")), Err(JsonError::NotObject));
    }

    #[test]
    fn every_spelling_of_the_model_key_is_rewritten_and_a_missing_one_added() {
        for body in [
            &br#"{"mo\u0064el":"expensive","x":1}"#[..],
            br#"{"model":"a","model":{"nested":["model"]}}"#,
            br#"{"model":12.5e3 , "x":"model"}"#,
            br#"{}"#,
            br#" { "x" : [ {"model":"inner"} ] } "#,
        ] {
            let (out, _) = rewrite(body, Some("m\"1")).expect("rewritten");
            let v: Value =
                serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
            let mut want: Value = serde_json::from_slice(body).expect("json");
            want["model"] = Value::String("m\"1".into());
            assert_eq!(v, want, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn nesting_is_bounded_as_serde_json_bounds_it() {
        for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
            let body = format!("{{\"a\":{}1{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1));
            let ours = rewrite(body.as_bytes(), Some("m")).is_ok();
            let theirs = serde_json::from_str::<Value>(&body).is_ok();
            assert_eq!(ours, theirs, "depth {depth}");
        }
    }

    #[test]
    fn usage_is_found_in_json_and_in_events() {
        let mut f = UsageFinder::default();
        f.feed(br#"{"id":"x","usage":{"prompt_tokens":12,"completion_tokens":3}}"#);
        assert_eq!(f.finish(), Usage { input: Some(12), output: Some(3) });
        let mut s = SseUsage::new();
        s.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n");
        s.feed(b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\r\n\r\n");
        s.feed(b"data: [DONE]\n\n");
        assert_eq!(s.finish(), Usage { input: Some(9), output: Some(7) });
        let mut s = SseUsage::new();
        s.feed(b"event: response.completed\rdata: {\"response\":{\"usage\":{\"input_tokens\":4,\r");
        s.feed(b"data: \"output_tokens\":2}}}\r\r");
        assert_eq!(s.finish(), Usage { input: Some(4), output: Some(2) });
    }
}
