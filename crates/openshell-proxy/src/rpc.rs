//! JSON-RPC bodies on `mcp` and `json-rpc` endpoints. An allowed `POST`'s
//! body is read whole (at most the endpoint's `max_body_bytes`, else 413),
//! parsed with `serde_json` as one JSON-RPC message or a batch (malformed:
//! 400), and each call — its method, and for MCP's `tools/call` the tool
//! (`params.name`) — decided by the engine. Responses the client sends (an
//! object with `result` or `error` and no `method`) are allowed. One denied
//! call denies the whole request: 403 with a JSON-RPC error body naming the
//! call and why. Every message is one audit event. The body then goes upstream
//! with a Content-Length; the response streams back (`exchange`). The bodies a
//! proxy holds at once are bounded ([`crate::Limits::rpc_bodies`]): past it, 503.

use std::sync::Arc;

use openshell_policy::model::{Dialect, Rpc, TOOLS_CALL};
use openshell_policy::{HttpRequest, Message, Request, RpcCall, Verdict};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::OwnedSemaphorePermit;

use crate::aio::{self, CopyError, Payload};
use crate::http1::{self, Body, RequestHead};
use crate::proxy::{Conn, Generation, event, record, record_refusal};

/// JSON-RPC 2.0's "invalid request" code, which a refused call gets.
const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC 2.0's "parse error".
const PARSE_ERROR: i64 = -32700;

/// One message of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A request or notification: its method, the tool of an MCP
    /// `tools/call`, and its id (none for a notification).
    Call { method: String, tool: Option<String>, id: Value },
    /// A response the client sends the server (to a server's request).
    Response,
}

/// Why a body is not JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("the body names a key twice in one object ({0}): servers differ on which one counts")]
    DuplicateKey(String),
    #[error(
        "message {0} spells `{1}` unlike the JSON-RPC member it folds to (servers that match keys regardless of case would read it as that member)"
    )]
    Misspelled(usize, String),
    #[error("message {0} is a tools/call whose `params.name` is not a string")]
    ToolName(usize),
    #[error("an empty batch")]
    EmptyBatch,
    #[error("message {0} is not a JSON object")]
    NotObject(usize),
    #[error("message {0} has a `method` that is not a string")]
    Method(usize),
    #[error("message {0} has neither a `method` nor a `result` or `error`")]
    Neither(usize),
}

/// The messages of a body; `mcp`: `tools/call` names its tool.
pub(crate) fn parse(body: &[u8], mcp: bool) -> Result<Vec<Item>, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if let Err(e) = serde_json::from_slice::<NoDuplicateKeys>(body) {
        return Err(ParseError::DuplicateKey(e.to_string()));
    }
    let messages = match value {
        Value::Array(items) if items.is_empty() => return Err(ParseError::EmptyBatch),
        Value::Array(items) => items,
        one => vec![one],
    };
    messages.into_iter().enumerate().map(|(i, m)| item(i, m, mcp)).collect()
}

/// A JSON document in which no object names a key twice, keys compared as
/// folded by [`fold`]. serde_json keeps the last of duplicate keys, other
/// parsers the first or refuse, and some (Go's) match keys regardless of case:
/// a body with one could be decided as one call and read by the server as
/// another (`"method"` and `"METHOD"`), so it is refused. (A check of serde's,
/// as serde_json has no option for it.)
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<NoDuplicateKeys>()?;
            if !seen.insert(fold(&key)) {
                return Err(serde::de::Error::custom("a duplicate key"));
            }
        }
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
}

/// A key as servers that match keys regardless of case see it: lower case, and
/// the two non-ASCII letters Unicode's simple case folding maps onto ASCII ones
/// (`ſ` is `s`, the Kelvin sign `k`).
fn fold(key: &str) -> String {
    key.chars().flat_map(char::to_lowercase).map(|c| if c == 'ſ' { 's' } else { c }).collect()
}

/// A key of `fields` that folds to one of `members` without being spelled so.
fn misspelled(fields: &serde_json::Map<String, Value>, members: &[&str]) -> Option<String> {
    fields.keys().find(|k| !members.contains(&k.as_str()) && members.contains(&fold(k).as_str())).cloned()
}

/// The members of a JSON-RPC message, and of MCP's `tools/call` params.
const MESSAGE_MEMBERS: &[&str] = &["jsonrpc", "method", "params", "id", "result", "error"];
const CALL_MEMBERS: &[&str] = &["name", "arguments"];

fn item(i: usize, message: Value, mcp: bool) -> Result<Item, ParseError> {
    let Value::Object(mut fields) = message else { return Err(ParseError::NotObject(i)) };
    let params = fields.get("params").and_then(Value::as_object);
    let odd = misspelled(&fields, MESSAGE_MEMBERS).or_else(|| params.and_then(|p| misspelled(p, CALL_MEMBERS)));
    if let Some(key) = odd {
        return Err(ParseError::Misspelled(i, key));
    }
    match fields.remove("method") {
        Some(Value::String(method)) => {
            let tool = match fields.get("params").and_then(|p| p.get("name")) {
                _ if !(mcp && method == TOOLS_CALL) => None,
                Some(Value::String(name)) => Some(name.clone()),
                _ => return Err(ParseError::ToolName(i)),
            };
            Ok(Item::Call { method, tool, id: fields.remove("id").unwrap_or(Value::Null) })
        }
        Some(_) => Err(ParseError::Method(i)),
        None if fields.contains_key("result") || fields.contains_key("error") => Ok(Item::Response),
        None => Err(ParseError::Neither(i)),
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("the request body is over {0} bytes (max_body_bytes)")]
    TooLarge(u64),
    #[error(transparent)]
    Copy(#[from] CopyError),
}

/// Reads a body whole, refusing one over `max` bytes as soon as that is known.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    body: Body,
    max: u64,
    idle: std::time::Duration,
) -> Result<Vec<u8>, ReadError> {
    if let Body::Length(n) = body
        && n > max
    {
        return Err(ReadError::TooLarge(max));
    }
    let mut payload = Payload::new(body);
    let mut out = Vec::new();
    while let Some(piece) = payload.next(r, idle).await? {
        if (out.len() + piece.len()) as u64 > max {
            return Err(ReadError::TooLarge(max));
        }
        out.extend_from_slice(piece);
    }
    Ok(out)
}

/// An allowed body, holding its room until it has been forwarded.
pub(crate) struct Held {
    pub(crate) body: Vec<u8>,
    _room: OwnedSemaphorePermit,
}

/// What became of a body.
pub(crate) enum Checked {
    /// Every call allowed: the body to forward.
    Forward(Held),
    /// Refused and answered; `keep`: the connection may carry another request.
    Answered { keep: bool },
}

/// The `POST` being checked: the decided request and its head.
pub(crate) struct Post<'a> {
    pub(crate) request: &'a Request<'a>,
    pub(crate) head: &'a RequestHead,
    pub(crate) framing: Body,
}

/// Reads and decides an allowed `POST`'s calls (answering 100-continue first).
pub(crate) async fn check<C>(conn: &Conn, client: &mut BufReader<C>, rpc: &Rpc, post: &Post<'_>) -> Checked
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let shared = &conn.shared;
    let idle = shared.limits.idle_timeout;
    if http1::has_token(&post.head.headers, "expect", "100-continue")
        && aio::send(client.get_mut(), b"HTTP/1.1 100 Continue\r\n\r\n", idle).await.is_err()
    {
        return Checked::Answered { keep: false };
    }
    if let Some(declared) = other_encoding(post.head) {
        let reason = format!("a JSON-RPC body is decided as UTF-8 JSON, and this one declares {declared}");
        return refuse(conn, client, post, 415, &reason, None).await;
    }
    // Room for the body first: a sandbox that opens many connections with large
    // bodies must not make its proxy hold more than the bound.
    let share = match post.framing {
        Body::Length(n) => n.min(rpc.max_body_bytes()),
        _ => rpc.max_body_bytes(),
    };
    let room = u32::try_from(share).ok().and_then(|n| Arc::clone(&shared.rpc_bodies).try_acquire_many_owned(n).ok());
    let Some(room) = room else {
        let reason = format!(
            "the proxy holds at most {} bytes of JSON-RPC bodies at once, and other requests hold them now (retry)",
            shared.limits.rpc_bodies
        );
        return refuse(conn, client, post, 503, &reason, None).await;
    };
    let body = match read_body(client, post.framing, rpc.max_body_bytes(), idle).await {
        Ok(b) => b,
        Err(ReadError::Copy(e)) => {
            tracing::debug!(error = %e, "reading a JSON-RPC body");
            return Checked::Answered { keep: false };
        }
        Err(e @ ReadError::TooLarge(_)) => return refuse(conn, client, post, 413, &e.to_string(), None).await,
    };
    let items = match parse(&body, matches!(rpc.dialect, Dialect::Mcp(_))) {
        Ok(items) => items,
        Err(e) => {
            let error = rpc_error(Value::Null, PARSE_ERROR, &format!("not JSON-RPC: {e}"), Value::Null);
            return refuse(conn, client, post, 400, &e.to_string(), Some(error)).await;
        }
    };
    let generation = shared.generation();
    match first_denied(conn, &generation, post.request, &items) {
        None => Checked::Forward(Held { body, _room: room }),
        Some(error) => {
            let keep = crate::exchange::answer(client, 403, &error, Body::Empty, true, idle).await;
            Checked::Answered { keep }
        }
    }
}

/// A content coding or a charset other than UTF-8 that `head` declares: a server
/// that decodes by it (the MCP TypeScript SDK decodes by the charset) would read
/// other keys and values than the proxy decided (UTF-7 spells `n` as `+AG4-`).
fn other_encoding(head: &RequestHead) -> Option<String> {
    let text =
        |name| http1::header(&head.headers, name).map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase());
    if let Some(coding) = text("content-encoding").filter(|c| !c.is_empty() && c != "identity") {
        return Some(format!("Content-Encoding: {coding}"));
    }
    let content_type = text("content-type")?;
    let charset = content_type.split(';').skip(1).find_map(|p| p.trim().strip_prefix("charset=").map(str::to_owned))?;
    let charset = charset.trim_matches('"');
    (!matches!(charset, "utf-8" | "utf8")).then(|| format!("charset={charset}"))
}

/// Decides every message (each one audited); the JSON-RPC error of the first
/// denied call, if any.
fn first_denied(conn: &Conn, generation: &Generation, request: &Request<'_>, items: &[Item]) -> Option<Value> {
    let Some(http) = request.http else {
        // Not reached (an allowed POST is an HTTP request); fail closed all the same.
        return Some(rpc_error(Value::Null, INVALID_REQUEST, "no HTTP request to decide", Value::Null));
    };
    let mut error = None;
    for item in items {
        let (method, tool, id) = match item {
            Item::Call { method, tool, id } => (method.as_str(), tool.as_deref(), id),
            Item::Response => {
                let note = Some("a JSON-RPC response".to_owned());
                conn.shared.audit.record(&event(&conn.shared, generation, request, "allowed", None, note));
                continue;
            }
        };
        let call = RpcCall { method, tool };
        let req = Request { http: Some(HttpRequest { message: Message::Rpc(call), ..http }), ..*request };
        let decision = generation.engine.decide(&req);
        record(&conn.shared, generation, &req, &decision, None);
        if decision.verdict == Verdict::Deny && error.is_none() {
            let detail = decision.explain(&generation.engine, &req);
            let data = json!({
                "reason": decision.reason.map(|r| r.as_str()),
                "method": method,
                "tool": tool,
                "revision": generation.revision,
            });
            let message = format!("blocked by the sandbox's network policy: {detail}");
            error = Some(rpc_error(id.clone(), INVALID_REQUEST, &message, data));
        }
    }
    error
}

fn rpc_error(id: Value, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

/// A body refused before its calls were decided: audited, answered, and the
/// connection closed (the body may not have been read to its end).
async fn refuse<C>(
    conn: &Conn,
    client: &mut BufReader<C>,
    post: &Post<'_>,
    status: u16,
    reason: &str,
    body: Option<Value>,
) -> Checked
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    record_refusal(&conn.shared, &conn.shared.generation(), post.request, reason);
    let body = body.unwrap_or_else(|| json!({"error": format!("blocked: {reason}")}));
    crate::exchange::answer(client, status, &body, Body::Empty, false, conn.shared.limits.idle_timeout).await;
    Checked::Answered { keep: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, tool: Option<&str>, id: Value) -> Item {
        Item::Call { method: method.into(), tool: tool.map(Into::into), id }
    }

    #[test]
    fn messages_batches_and_responses() {
        let one = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{}}}"#;
        assert_eq!(parse(one, true), Ok(vec![call("tools/call", Some("search"), json!(1))]));
        // json-rpc endpoints have no tools.
        assert_eq!(parse(one, false), Ok(vec![call("tools/call", None, json!(1))]));
        let batch = br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":"a","result":{}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}]"#;
        assert_eq!(
            parse(batch, true),
            Ok(vec![
                call("notifications/initialized", None, Value::Null),
                Item::Response,
                call("tools/call", Some("x"), json!(2))
            ])
        );
        // A tool that is not a string is no tool the rules can name.
        let numbered = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":7}}"#;
        assert_eq!(parse(numbered, true), Err(ParseError::ToolName(0)));
    }

    #[test]
    fn what_is_not_json_rpc() {
        assert!(matches!(parse(b"{", true), Err(ParseError::Json(_))));
        assert_eq!(parse(b"[]", true), Err(ParseError::EmptyBatch));
        assert_eq!(parse(b"[1]", true), Err(ParseError::NotObject(0)));
        assert_eq!(parse(br#"{"method":3}"#, true), Err(ParseError::Method(0)));
        assert_eq!(parse(br#"[{"method":"a"},{"id":1}]"#, true), Err(ParseError::Neither(1)));
    }

    /// A key given twice could be read as the allowed value here and as the
    /// other by the server: refused, wherever the object is; escapes spelling
    /// the same key count as the same key. The same calls without it parse.
    #[test]
    fn a_key_given_twice_is_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all","name":"read_file"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
            r#"[{"jsonrpc":"2.0","method":"ping"},{"id":2,"method":"ping","meth\u006fd":"tools/call"}]"#,
        ] {
            assert!(matches!(parse(body.as_bytes(), true), Err(ParseError::DuplicateKey(_))), "{body}");
        }
        let once =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"name":"x"}}}"#;
        assert_eq!(parse(once.as_bytes(), true), Ok(vec![call("tools/call", Some("read_file"), json!(1))]));
    }

    /// Servers that match keys regardless of case (Go's encoding/json, with
    /// Unicode's simple folding) read `METHOD`, `Name` or `paramſ` as the member:
    /// given beside it, or alone where the member is, such a key is refused.
    /// A tool's own arguments may be spelled any way, once.
    #[test]
    fn keys_that_fold_to_a_member_are_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","Name":"delete_all"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"},"paramſ":{"name":"x"}}"#,
        ] {
            assert!(matches!(parse(body.as_bytes(), true), Err(ParseError::DuplicateKey(_))), "{body}");
        }
        let alone = r#"{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call"}"#;
        assert_eq!(parse(alone.as_bytes(), true), Err(ParseError::Misspelled(0, "Method".into())));
        let name = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"delete_all","arguments":{}}}"#;
        assert_eq!(parse(name.as_bytes(), true), Err(ParseError::Misspelled(0, "NAME".into())));
        let fine = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"Name":"x"}}}"#;
        assert_eq!(parse(fine.as_bytes(), true), Ok(vec![call("tools/call", Some("a"), json!(1))]));
    }

    #[test]
    fn bodies_declaring_another_encoding_are_refused() {
        let head = |ct: &str, ce: Option<&str>| {
            let mut text = format!("POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Type: {ct}\r\n");
            if let Some(ce) = ce {
                text.push_str(&format!("Content-Encoding: {ce}\r\n"));
            }
            text.push_str("\r\n");
            http1::parse_request(text.as_bytes()).expect("head")
        };
        assert_eq!(other_encoding(&head("application/json; charset=utf-7", None)).as_deref(), Some("charset=utf-7"));
        assert_eq!(other_encoding(&head("application/json", Some("gzip"))).as_deref(), Some("Content-Encoding: gzip"));
        for fine in ["application/json", "application/json; charset=UTF-8", "application/json;charset=\"utf-8\""] {
            assert_eq!(other_encoding(&head(fine, None)), None, "{fine}");
        }
    }
}
