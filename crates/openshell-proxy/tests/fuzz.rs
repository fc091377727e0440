//! Property tests (proptest, stable toolchain) for what the proxy parses from
//! the sandbox and from upstreams: message heads, chunked bodies, server-sent
//! events (the router's token counts) and request JSON (the router's model
//! rewrite, held to serde_json). Inputs are generated valid messages, the same
//! mutated (bytes inserted, deleted, replaced, repeated, cut), and random
//! bytes, fed whole and in random pieces. Properties: no panic; no hang (every
//! step consumes input or ends); memory bounded (what a parser holds never
//! exceeds its limits); valid input read back exactly; split input read the
//! same as whole input.
//!
//! `OPENSHELL_FUZZ_CASES` sets the number of cases per property (default
//! 100,000; about a minute for all of them in a dev build, which optimizes the
//! proxy and proptest for this). Failing cases proptest finds are kept in
//! `tests/fuzz.regressions` (commit it) and replayed first; `CORPUS` below
//! holds inputs that once got through an older parser.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use openshell_proxy::http1::{
    self, Body, BodyDecoder, HeadError, HeadScanner, Kind, MAX_HEAD, MAX_HEADERS, MAX_LINE, Piece,
};
use openshell_proxy::json::{ModelRewriter, SseUsage, USAGE_CAP, Usage, UsageFinder};

fn config() -> Config {
    let cases = std::env::var("OPENSHELL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

/// Inputs an older parser let through (or that broke a version of these).
const CORPUS: &[&[u8]] = &[
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b" 5\r\nhello\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"10000000000000000\r\n",
    b"data: {\"usage\":{\"input_tokens\":1}}\r\r",
    b"{\"mo\\u0064el\":1}",
    b"{\"model\":\"\\ud800\"}",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Replace(usize, u8),
    Repeat(usize, usize),
    Cut(usize),
}

fn interesting() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            &b"\r"[..],
            b"\n",
            b"\r\n",
            b"\r\n\r\n",
            b" ",
            b"\t",
            b":",
            b";",
            b"\0",
            b"\xff",
            b"\xc3",
            b"+",
            b"-",
            b"0",
            b"\"",
            b"\\",
            b"\\u",
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b"data:",
            b"Host: x\r\n",
            b"Content-Length: 5\r\n",
            b"Transfer-Encoding: chunked\r\n",
        ])
        .prop_map(<[u8]>::to_vec),
        vec(any::<u8>(), 1..8),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), interesting()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<usize>(), 1..16usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Mutation::Repeat(at, n)),
        any::<usize>().prop_map(Mutation::Cut),
    ]
}

fn apply(mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = input.len().max(1);
        match m {
            Mutation::Insert(at, bytes) => {
                let at = at % (input.len() + 1);
                input.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(at, n) if !input.is_empty() => {
                let at = at % len;
                let end = (at + n).min(input.len());
                input.drain(at..end);
            }
            Mutation::Replace(at, b) if !input.is_empty() => input[at % len] = *b,
            Mutation::Repeat(at, n) if !input.is_empty() => {
                let at = at % len;
                let end = (at + n).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(end..end, copy);
            }
            Mutation::Cut(at) => input.truncate(at % (input.len() + 1)),
            _ => {}
        }
    }
    input
}

/// Cuts `input` into pieces at the given points.
fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for p in points {
        out.push(&input[from..p]);
        from = p;
    }
    out.push(&input[from..]);
    out
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// A valid request head: (bytes, method, target, headers).
fn request() -> impl Strategy<Value = (Vec<u8>, String, String, Vec<(String, String)>)> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "CONNECT", "HEAD"]);
    let target = "(/[a-z0-9._~%-]{0,8}){1,4}(\\?[a-z0-9=&%]{0,12})?";
    let headers = vec((token(), "[ -~]{0,24}"), 0..8);
    (method, target, headers, any::<bool>()).prop_map(|(method, target, headers, crlf)| {
        let eol = if crlf { "\r\n" } else { "\n" };
        let headers: Vec<(String, String)> =
            headers.into_iter().map(|(n, v)| (n, v.trim_matches([' ', '\t']).to_owned())).collect();
        let mut text = format!("{method} {target} HTTP/1.1{eol}");
        for (n, v) in &headers {
            text.push_str(&format!("{n}: {v}{eol}"));
        }
        text.push_str(eol);
        (text.into_bytes(), method.to_owned(), target, headers)
    })
}

fn response() -> impl Strategy<Value = Vec<u8>> {
    (100u16..600, vec((token(), "[ -~]{0,24}"), 0..8)).prop_map(|(status, headers)| {
        let mut text = format!("HTTP/1.1 {status} Reason\r\n");
        for (n, v) in headers {
            text.push_str(&format!("{n}: {}\r\n", v.trim()));
        }
        text.push_str("\r\n");
        text.into_bytes()
    })
}

/// What parsing a head came to, compared whole and in pieces.
fn scan_pieces(kind: Kind, parts: &[&[u8]]) -> Result<Option<Vec<u8>>, String> {
    let mut scanner = HeadScanner::new(kind);
    let mut head = Vec::new();
    for part in parts {
        match scanner.take(&mut head, part) {
            Ok((used, Some(done))) => {
                assert!(used <= part.len());
                return Ok(Some(done));
            }
            Ok((used, None)) => assert_eq!(used, part.len()),
            Err(e) => return Err(e.to_string()),
        }
        assert!(head.len() <= MAX_HEAD + part.len(), "the scanner held {} bytes", head.len());
    }
    Ok(None)
}

fn check_head(bytes: &[u8], cuts: &[usize]) {
    for kind in [Kind::Request, Kind::Response] {
        let whole = scan_pieces(kind, &[bytes]);
        let split = scan_pieces(kind, &pieces(bytes, cuts));
        assert_eq!(whole, split, "{kind:?}: split input read differently");
    }
    if let Ok(req) = http1::parse_request(bytes) {
        assert!(bytes.len() <= MAX_HEAD && req.headers.len() <= MAX_HEADERS);
        for (name, value) in &req.headers {
            assert!(!name.is_empty() && !value.contains(&b'\r') && !value.contains(&b'\n'), "{req:?}");
            assert!(std::str::from_utf8(value).is_ok(), "{req:?}");
        }
        let _ = http1::request_framing(&req);
        let _ = http1::host_header(&req.headers);
    }
    if let Ok(resp) = http1::parse_response(bytes) {
        assert!(resp.headers.len() <= MAX_HEADERS);
        let _ = http1::response_body("GET", &resp);
    }
    let mut reader = std::io::BufReader::with_capacity(7, bytes);
    if let Ok(Some(h)) = http1::read_head_bytes(&mut reader) {
        assert!(h.len() <= MAX_HEAD);
    }
}

/// Decodes a body in pieces: (payload, re-encoded wire, finished), or the error.
fn decode(body: Body, parts: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, bool), String> {
    let mut decoder = BodyDecoder::new(body);
    let (mut payload, mut wire) = (Vec::new(), Vec::new());
    for part in parts {
        let mut rest: &[u8] = part;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps <= 3 * part.len() + 8, "no progress");
            if decoder.is_done() {
                return Ok((payload, wire, true));
            }
            let (used, piece) = decoder.decode(rest).map_err(|e| e.to_string())?;
            assert!(used <= rest.len());
            assert!(decoder.held() <= MAX_LINE + 2, "the decoder held {} bytes", decoder.held());
            rest = &rest[used..];
            match piece {
                Some(Piece::Data(d)) => {
                    assert!(!d.is_empty());
                    payload.extend_from_slice(d);
                    wire.extend_from_slice(d);
                }
                Some(Piece::Framing(f)) => wire.extend_from_slice(&f),
                Some(Piece::Done) => return Ok((payload, wire, true)),
                None => {
                    assert!(rest.is_empty(), "more was asked for with input left");
                    break;
                }
            }
            if rest.is_empty() && !decoder.is_done() {
                break;
            }
        }
    }
    let finished = decoder.finish().is_ok();
    Ok((payload, wire, finished))
}

fn chunked(payload: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes.get(i).map_or(rest.len(), |s| (s % rest.len()) + 1);
        i += 1;
        out.extend_from_slice(format!("{n:X}{}\r\n", if ext { ";x=1" } else { "" }).as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\nTrailer-A: 1\r\n\r\n");
    out
}

/// A server-sent-events stream whose last `usage` says (input, output).
fn sse(events: &[String], input: u64, output: u64, eol: &str) -> Vec<u8> {
    let mut out = String::new();
    for e in events {
        out.push_str(&format!(
            "event: delta{eol}data: {{\"choices\":[{{\"delta\":{{\"content\":{e:?}}}}}]}}{eol}{eol}"
        ));
    }
    out.push_str(&format!(": a comment{eol}data: {{\"usage\":{{\"prompt_tokens\":{input},{eol}"));
    out.push_str(&format!("data: \"completion_tokens\":{output}}}}}{eol}{eol}data: [DONE]{eol}{eol}"));
    out.into_bytes()
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[\\PC\"\\\\]{0,12}".prop_map(Value::String),
        Just(Value::String("model".into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            vec((prop_oneof!["[a-z]{1,6}", Just("model".to_owned()), Just("usage".to_owned())], inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// JSON text for `v` with whitespace and escapes a client might use.
fn spelled(v: &serde_json::Value, spaced: bool, escape_keys: bool) -> String {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let sep = if spaced { " , " } else { "," };
            let members: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let key = if escape_keys {
                        format!("\"{}\"", k.chars().map(|c| format!("\\u{:04x}", c as u32)).collect::<String>())
                    } else {
                        serde_json::to_string(k).unwrap_or_default()
                    };
                    format!("{key}{}{}", if spaced { " :\n" } else { ":" }, spelled(v, spaced, escape_keys))
                })
                .collect();
            format!("{{{}}}", members.join(sep))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| spelled(i, spaced, escape_keys)).collect();
            format!("[{}]", items.join(if spaced { ",\t" } else { "," }))
        }
        other => other.to_string(),
    }
}

fn rewrite(parts: &[&[u8]], model: Option<&str>) -> Result<Vec<u8>, String> {
    let mut rewriter = ModelRewriter::new(model);
    let mut out = Vec::new();
    for part in parts {
        rewriter.feed(part, &mut out).map_err(|e| e.to_string())?;
    }
    rewriter.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

fn check_json(bytes: &[u8], cuts: &[usize]) {
    let whole = rewrite(&[bytes], Some("route-model"));
    let split = rewrite(&pieces(bytes, cuts), Some("route-model"));
    assert_eq!(whole, split, "split input read differently");
    let theirs = serde_json::from_slice::<serde_json::Value>(bytes);
    match (&whole, theirs) {
        (Ok(out), Ok(mut want)) => {
            let got: serde_json::Value = serde_json::from_slice(out).expect("the rewrite is JSON");
            want["model"] = serde_json::Value::String("route-model".into());
            assert_eq!(got, want);
        }
        (Err(_), Ok(v)) => assert!(!v.is_object(), "serde_json reads an object the rewriter refused"),
        (Ok(_), Err(e)) => {
            assert!(e.to_string().contains("out of range"), "the rewriter passed what serde_json refuses: {e}")
        }
        (Err(_), Err(_)) => {}
    }
    let mut finder = UsageFinder::default();
    for p in pieces(bytes, cuts) {
        finder.feed(p);
        assert!(finder.held() <= USAGE_CAP + 1024, "the finder held {}", finder.held());
    }
    let _ = finder.finish();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn heads(
        (valid, method, target, headers) in request(),
        mutations in vec(mutation(), 0..4),
        cuts in vec(any::<usize>(), 0..6),
        noise in vec(any::<u8>(), 0..64),
        pick in 0..8u8,
    ) {
        if mutations.is_empty() {
            let req = http1::parse_request(&valid).expect("a generated head parses");
            prop_assert_eq!((&req.method, &req.target), (&method, &target));
            let got: Vec<(String, String)> =
                req.headers.iter().map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned())).collect();
            prop_assert_eq!(got, headers);
        }
        let input = match pick {
            0 => noise,
            1 => CORPUS[cuts.first().copied().unwrap_or(0) % CORPUS.len()].to_vec(),
            _ => apply(valid, &mutations),
        };
        check_head(&input, &cuts);
    }

    #[test]
    fn response_heads(valid in response(), mutations in vec(mutation(), 0..4), cuts in vec(any::<usize>(), 0..6)) {
        prop_assert!(http1::parse_response(&valid).is_ok());
        check_head(&apply(valid, &mutations), &cuts);
    }

    #[test]
    fn chunked_bodies(
        payload in vec(any::<u8>(), 0..300),
        sizes in vec(any::<usize>(), 0..8),
        ext in any::<bool>(),
        mutations in vec(mutation(), 0..4),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let valid = chunked(&payload, &sizes, ext);
        let (got, wire, done) = decode(Body::Chunked, &pieces(&valid, &cuts)).expect("a valid body decodes");
        prop_assert!(done);
        prop_assert_eq!(&got, &payload);
        // The re-encoded wire is canonical: it decodes to the same payload and to itself.
        let (again, rewire, _) = decode(Body::Chunked, &[&wire]).expect("the re-encoding decodes");
        prop_assert_eq!((&again, &rewire), (&payload, &wire));
        let input = apply(valid, &mutations);
        let whole = decode(Body::Chunked, &[&input]);
        let split = decode(Body::Chunked, &pieces(&input, &cuts));
        prop_assert_eq!(&whole, &split);
        if let Ok((p, w, true)) = whole {
            let (again, _, done) = decode(Body::Chunked, &[&w]).expect("the re-encoding decodes");
            prop_assert!(done);
            prop_assert_eq!(again, p);
        }
        let n = input.len() as u64;
        for body in [Body::Length(n / 2 + 1), Body::UntilClose] {
            let _ = decode(body, &pieces(&input, &cuts));
        }
    }

    #[test]
    fn server_sent_events(
        events in vec("[ -~]{0,16}", 0..5),
        input in any::<u32>(),
        output in any::<u32>(),
        eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        mutations in vec(mutation(), 0..4),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let valid = sse(&events, input.into(), output.into(), eol);
        let mut reader = SseUsage::new();
        for p in pieces(&valid, &cuts) {
            reader.feed(p);
        }
        prop_assert_eq!(reader.finish(), Usage { input: Some(input.into()), output: Some(output.into()) });
        let mutated = apply(valid, &mutations);
        let (mut whole, mut split) = (SseUsage::new(), SseUsage::new());
        whole.feed(&mutated);
        for p in pieces(&mutated, &cuts) {
            split.feed(p);
            prop_assert!(split.held() <= USAGE_CAP + 4096, "the reader held {}", split.held());
        }
        prop_assert_eq!(whole.finish(), split.finish());
    }

    #[test]
    fn request_json(
        value in json_value(),
        spaced in any::<bool>(),
        escape_keys in any::<bool>(),
        mutations in vec(mutation(), 0..3),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let object = match value {
            serde_json::Value::Object(_) => value,
            other => serde_json::json!({ "model": "caller", "messages": [other] }),
        };
        let text = spelled(&object, spaced, escape_keys).into_bytes();
        check_json(&text, &cuts);
        check_json(&apply(text, &mutations), &cuts);
    }
}

#[test]
fn the_corpus_is_refused_or_read_safely() {
    for input in CORPUS {
        check_head(input, &[3, 17]);
        let _ = decode(Body::Chunked, &pieces(input, &[1, 5]));
        check_json(input, &[2, 9]);
    }
    assert!(matches!(http1::parse_request(CORPUS[4]), Err(HeadError::ObsFold)));
    assert!(decode(Body::Chunked, &[CORPUS[1]]).is_err());
}
