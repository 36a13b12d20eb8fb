//! JSON as the second `ng` encoding: rtpengine accepts a dictionary that starts with
//! `{` instead of bencode's `d` and answers in JSON.
//!
//! What it does: maps a JSON document onto the same [`Value`] tree bencode gives
//! (strings to byte strings, integers to integers, `true`/`false` to 1/0, arrays to
//! lists, objects to dictionaries), and a reply [`Value`] back to JSON. For TCP-ng,
//! where messages have no length prefix, [`ObjectScanner`] finds where a JSON object
//! ends (RFC 8259 sections 2, 4, 5 and 7: structure, objects, arrays, strings and their
//! escapes) without decoding it, incrementally and within the same [`Limits`].
//!
//! What it does not: carry floats or `null` (no `ng` key uses them; they are refused so
//! a request cannot be half-understood). Depth and value count use the bencode
//! [`Limits`]. The scanner checks structure only (brackets, strings, escapes, which
//! bytes may stand outside strings); numbers and literals are checked by [`decode`]
//! once the frame is complete.

use super::bencode::{DecodeError, Limits, Value};

/// Parses a JSON document into a [`Value`].
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Value, DecodeError> {
    if buf.len() > limits.max_len {
        return Err(DecodeError::Invalid {
            offset: limits.max_len,
            reason: "message is larger than the size limit",
        });
    }
    // serde_json stops at 128 levels by itself, so hostile nesting cannot exhaust the
    // stack before our own (lower) depth check runs on the result.
    let doc: serde_json::Value = serde_json::from_slice(buf).map_err(|e| DecodeError::Invalid {
        offset: json_offset(buf, e.line(), e.column()),
        reason: "Failed to parse JSON document",
    })?;
    let mut values = 0usize;
    convert(&doc, 1, limits, &mut values)
}

/// serde_json reports line and column (1-based); turn them into a byte offset.
fn json_offset(buf: &[u8], line: usize, column: usize) -> usize {
    let line_start = buf
        .split_inclusive(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(<[u8]>::len)
        .sum::<usize>();
    line_start.saturating_add(column.saturating_sub(1))
}

fn convert(
    v: &serde_json::Value,
    depth: usize,
    limits: &Limits,
    values: &mut usize,
) -> Result<Value, DecodeError> {
    use serde_json::Value as J;
    *values += 1;
    let invalid = |reason| Err(DecodeError::Invalid { offset: 0, reason });
    if *values > limits.max_values {
        return invalid("too many values");
    }
    match v {
        J::String(s) => Ok(Value::Bytes(s.as_bytes().to_vec())),
        J::Bool(b) => Ok(Value::Int(i64::from(*b))),
        J::Number(n) => match n.as_i64() {
            Some(i) => Ok(Value::Int(i)),
            None => invalid("numbers must be 64-bit integers"),
        },
        J::Null => invalid("null is not an ng value"),
        J::Array(items) => {
            if depth > limits.max_depth {
                return invalid("nesting is deeper than the limit");
            }
            items
                .iter()
                .map(|i| convert(i, depth + 1, limits, values))
                .collect::<Result<_, _>>()
                .map(Value::List)
        }
        J::Object(map) => {
            if depth > limits.max_depth {
                return invalid("nesting is deeper than the limit");
            }
            map.iter()
                .map(|(k, i)| {
                    Ok((
                        k.as_bytes().to_vec(),
                        convert(i, depth + 1, limits, values)?,
                    ))
                })
                .collect::<Result<_, _>>()
                .map(Value::Dict)
        }
    }
}

/// Encodes a reply [`Value`] as JSON. Byte strings that are not UTF-8 are written with
/// replacement characters: replies carry SDP and names, which are text.
pub fn encode(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&to_json(v)).unwrap_or_else(|_| b"{}".to_vec())
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => J::Number((*i).into()),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Dict(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), to_json(v)))
                .collect(),
        ),
    }
}

/// What [`ObjectScanner::scan`] found at the start of a buffer: the same answers as
/// the bencode scanner's (offsets count from the object's `{`).
pub use super::bencode::Scan;

/// Deepest nesting the scanner tracks, whatever [`Limits::max_depth`] says: one bit per
/// level. serde_json refuses 128 levels by itself, so a deeper limit could never be used.
const SCAN_MAX_DEPTH: usize = 128;

/// Where the scanner stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexer {
    /// Outside strings: brackets, separators, numbers and literals.
    Structure,
    /// Inside a string.
    InString,
    /// Right after a backslash in a string.
    Escape,
    /// Inside `\uXXXX`, this many hex digits still to come.
    Unicode(u8),
}

/// Finds the end of the JSON object at the start of a buffer: brace and bracket
/// counting that knows strings and escapes, with the nesting depth and size capped by
/// [`Limits`]. It agrees with [`decode`]: a buffer holding one object (and perhaps
/// more bytes after it) that [`decode`] accepts scans as [`Scan::Complete`] with the
/// object's length; each of its proper prefixes scans as [`Scan::Incomplete`]; and a
/// [`Scan::Error`] means no continuation of the bytes decodes.
///
/// Incremental: the scanner keeps its place, so a stream reader calls
/// [`scan`](Self::scan) again with the same bytes plus what arrived since and pays only
/// for the new bytes. Once it has said `Complete` or `Error` it says so again; start a
/// new scanner for the next message.
#[derive(Debug, Clone)]
pub struct ObjectScanner {
    /// Bytes scanned so far.
    pos: usize,
    /// Open brackets.
    depth: usize,
    /// Bit `i` set: the bracket open at depth `i + 1` is `[` (else `{`).
    arrays: u128,
    lexer: Lexer,
    max_depth: usize,
    max_len: usize,
    done: Option<Scan>,
}

impl ObjectScanner {
    /// A scanner for one object under `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            pos: 0,
            depth: 0,
            arrays: 0,
            lexer: Lexer::Structure,
            max_depth: limits.max_depth.min(SCAN_MAX_DEPTH),
            max_len: limits.max_len,
            done: None,
        }
    }

    /// Scans `buf`, which must start with the bytes given to earlier calls (a stream
    /// buffer that only grew). A shorter `buf` than already scanned is `Incomplete`.
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        if let Some(done) = self.done {
            return done;
        }
        let new = buf.get(self.pos..).unwrap_or_default();
        for &b in new {
            if let Some(done) = self.step(b) {
                self.done = Some(done);
                return done;
            }
        }
        Scan::Incomplete
    }

    /// Takes byte `b` at `self.pos`; `Some` when the object ends or cannot go on.
    fn step(&mut self, b: u8) -> Option<Scan> {
        let at = self.pos;
        if at >= self.max_len {
            return Some(Self::error(
                self.max_len,
                "message is larger than the size limit",
            ));
        }
        self.pos = at.saturating_add(1);
        match self.lexer {
            Lexer::Structure => self.structure(at, b),
            Lexer::InString => {
                match b {
                    b'"' => self.lexer = Lexer::Structure,
                    b'\\' => self.lexer = Lexer::Escape,
                    0..=0x1f => return Some(Self::error(at, "control character inside a string")),
                    _ => {}
                }
                None
            }
            Lexer::Escape => {
                self.lexer = match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Lexer::InString,
                    b'u' => Lexer::Unicode(4),
                    _ => return Some(Self::error(at, "invalid escape in a string")),
                };
                None
            }
            Lexer::Unicode(left) => {
                if !b.is_ascii_hexdigit() {
                    return Some(Self::error(at, "\\u escape needs four hex digits"));
                }
                self.lexer = match left {
                    0 | 1 => Lexer::InString,
                    n => Lexer::Unicode(n - 1),
                };
                None
            }
        }
    }

    fn structure(&mut self, at: usize, b: u8) -> Option<Scan> {
        if self.depth == 0 && b != b'{' {
            // Only reachable at offset 0: the scan stops when the object closes.
            return Some(Self::error(at, "an ng JSON message must be an object"));
        }
        match b {
            b'{' | b'[' => {
                if self.depth >= self.max_depth {
                    return Some(Self::error(at, "nesting is deeper than the limit"));
                }
                let bit = 1u128 << self.depth;
                if b == b'[' {
                    self.arrays |= bit;
                } else {
                    self.arrays &= !bit;
                }
                self.depth += 1;
                None
            }
            b'}' | b']' => {
                let top = self.depth.saturating_sub(1);
                let open_is_array = self.arrays & (1u128 << top) != 0;
                if open_is_array != (b == b']') {
                    return Some(Self::error(at, "closing bracket does not match"));
                }
                self.depth = top;
                (top == 0).then_some(Scan::Complete(self.pos))
            }
            b'"' => {
                self.lexer = Lexer::InString;
                None
            }
            // Separators, JSON whitespace, and the bytes of numbers and literals
            // (`true`, `false`, `null`, `-1.5e+3`), which `decode` checks.
            b':' | b',' | b' ' | b'\t' | b'\n' | b'\r' | b'+' | b'-' | b'.' => None,
            _ if b.is_ascii_alphanumeric() => None,
            _ => Some(Self::error(at, "unexpected byte outside a string")),
        }
    }

    fn error(offset: usize, reason: &'static str) -> Scan {
        Scan::Error { offset, reason }
    }
}

/// Scans `buf` in one go; see [`ObjectScanner`].
pub fn scan_object(buf: &[u8], limits: &Limits) -> Scan {
    ObjectScanner::new(limits).scan(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::dict;
    use proptest::prelude::*;

    #[test]
    fn json_maps_onto_bencode_values() {
        let v = decode(
            br#"{"command":"offer","flags":["trust address"],"delete delay":5,"x":true}"#,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(v.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(
            v.get("flags"),
            Some(&Value::List(vec![Value::str("trust address")]))
        );
        assert_eq!(v.get("delete delay"), Some(&Value::Int(5)));
        assert_eq!(v.get("x"), Some(&Value::Int(1)));
    }

    #[test]
    fn refusals() {
        let l = Limits::default();
        assert_eq!(
            decode(b"{\"a\":\n 1.5}", &l),
            Err(DecodeError::Invalid {
                offset: 0,
                reason: "numbers must be 64-bit integers"
            })
        );
        assert_eq!(
            decode(b"{\"a\":\n nul}", &l),
            Err(DecodeError::Invalid {
                offset: 10,
                reason: "Failed to parse JSON document"
            })
        );
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            decode(deep.as_bytes(), &l),
            Err(DecodeError::Invalid {
                offset: 0,
                reason: "nesting is deeper than the limit"
            })
        );
        let very_deep = "[".repeat(100_000);
        assert!(decode(very_deep.as_bytes(), &l).is_err());
    }

    #[test]
    fn encodes_replies() {
        let reply = dict([("result", Value::str("pong")), ("n", Value::Int(3))]);
        // serde_json without `preserve_order` sorts keys; order carries no meaning in JSON.
        assert_eq!(encode(&reply), br#"{"n":3,"result":"pong"}"#);
    }

    fn err(offset: usize, reason: &'static str) -> Scan {
        Scan::Error { offset, reason }
    }

    /// A JSON offer shaped like Kamailio's, with brackets, quotes and backslashes
    /// inside strings to tempt a naive counter.
    const OFFER: &[u8] = br#"{"command": "offer", "call-id": "a}b]c{d[", "from-tag": "t\"}\\",
 "flags": ["trust-address", "SIP-source-address"], "replace": ["origin"],
 "sdp": "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns={\"x\"}\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
 "received-from": ["IP4", "192.0.2.1"], "delete delay": 5, "x": {"y": [true, false, -12]}, "u": "\u00e9\u007D"}"#;

    #[test]
    fn scanner_finds_the_end_of_an_object() {
        let l = Limits::default();
        assert_eq!(scan_object(OFFER, &l), Scan::Complete(OFFER.len()));
        assert!(decode(OFFER, &l).is_ok());
        assert_eq!(scan_object(br#"{}"#, &l), Scan::Complete(2));
        assert_eq!(
            scan_object(br#"{"a":"}"}x2 {"b":1}"#, &l),
            Scan::Complete(9),
            "bytes after the object belong to the next message"
        );
        assert_eq!(scan_object(br#"{"a":"\\"}"#, &l), Scan::Complete(10));
        assert_eq!(scan_object(br#"{"a":"\\\"}"#, &l), Scan::Incomplete);
        assert_eq!(scan_object(b"", &l), Scan::Incomplete);
        assert_eq!(scan_object(b"{\n\t\r ", &l), Scan::Incomplete);
    }

    #[test]
    fn scanner_errors_carry_offsets() {
        let l = Limits::default();
        let scan = |b: &[u8]| scan_object(b, &l);
        assert_eq!(scan(b"[]"), err(0, "an ng JSON message must be an object"));
        assert_eq!(scan(b" {}"), err(0, "an ng JSON message must be an object"));
        assert_eq!(
            scan(br#"{"a":[}"#),
            err(6, "closing bracket does not match")
        );
        assert_eq!(
            scan(br#"{"a":{]}"#),
            err(6, "closing bracket does not match")
        );
        assert_eq!(
            scan(b"{\"a\":\"x\ny\"}"),
            err(7, "control character inside a string")
        );
        assert_eq!(scan(br#"{"a":"\q"}"#), err(7, "invalid escape in a string"));
        assert_eq!(
            scan(br#"{"a":"\u12g4"}"#),
            err(10, "\\u escape needs four hex digits")
        );
        assert_eq!(
            scan(br#"{"a":#}"#),
            err(5, "unexpected byte outside a string")
        );
        assert_eq!(
            scan(b"{\"a\":\xc3\xa9}"),
            err(5, "unexpected byte outside a string")
        );
        // Each of these the decoder refuses too.
        for bad in [
            &b"{\"a\":\"x\ny\"}"[..],
            br#"{"a":"\q"}"#,
            br#"{"a":#}"#,
            br#"{"a":[}"#,
        ] {
            assert!(decode(bad, &l).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn scanner_depth_and_size_limits_match_the_decoder() {
        let l = Limits::default();
        let nested = |levels: usize| {
            // The object is level 1; `levels - 1` arrays inside it.
            format!(
                "{{\"a\":{}{}}}",
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        let ok = nested(32);
        assert_eq!(scan_object(ok.as_bytes(), &l), Scan::Complete(ok.len()));
        assert!(decode(ok.as_bytes(), &l).is_ok());
        let deep = nested(33);
        assert_eq!(
            scan_object(deep.as_bytes(), &l),
            err(36, "nesting is deeper than the limit")
        );
        assert!(decode(deep.as_bytes(), &l).is_err());
        let hostile = "{".repeat(1_000_000);
        assert_eq!(
            scan_object(hostile.as_bytes(), &l),
            err(32, "nesting is deeper than the limit")
        );
        let wide = Limits {
            max_depth: 1000,
            ..Limits::default()
        };
        let very_deep = format!("{{\"a\":{}", "[".repeat(200));
        assert_eq!(
            scan_object(very_deep.as_bytes(), &wide),
            err(5 + 127, "nesting is deeper than the limit"),
            "the bit stack caps depth at 128 levels"
        );
        let small = Limits {
            max_len: 8,
            ..Limits::default()
        };
        assert_eq!(scan_object(br#"{"a":12}"#, &small), Scan::Complete(8));
        assert!(decode(br#"{"a":12}"#, &small).is_ok());
        assert_eq!(
            scan_object(br#"{"a":123}"#, &small),
            err(8, "message is larger than the size limit")
        );
        assert_eq!(
            decode(br#"{"a":123}"#, &small),
            Err(DecodeError::Invalid {
                offset: 8,
                reason: "message is larger than the size limit"
            })
        );
        assert_eq!(scan_object(br#"{"a":12"#, &small), Scan::Incomplete);
    }

    /// Scans `bytes[..cut]` and then all of `bytes` with one scanner.
    fn scan_split(bytes: &[u8], cut: usize, l: &Limits) -> (Scan, Scan) {
        let mut s = ObjectScanner::new(l);
        let first = s.scan(&bytes[..cut]);
        (first, s.scan(bytes))
    }

    #[test]
    fn every_split_of_an_offer_gives_the_same_end() {
        let l = Limits::default();
        let mut stream = OFFER.to_vec();
        stream.extend_from_slice(b"\nnext {\"command\":\"ping\"}");
        for cut in 0..=stream.len() {
            let (first, whole) = scan_split(&stream, cut, &l);
            let want_first = if cut < OFFER.len() {
                Scan::Incomplete
            } else {
                Scan::Complete(OFFER.len())
            };
            assert_eq!(first, want_first, "first part of {cut} bytes");
            assert_eq!(whole, Scan::Complete(OFFER.len()), "split at {cut}");
        }
        // Errors are found at the same offset wherever the bytes were split.
        let bad = br#"{"a":["}",{"b":"\x"}]}"#;
        for cut in 0..=bad.len() {
            assert_eq!(
                scan_split(bad, cut, &l).1,
                err(17, "invalid escape in a string"),
                "split at {cut}"
            );
        }
    }

    /// Dictionaries as JSON can carry them: UTF-8 keys in sorted order (serde_json's
    /// map sorts), strings full of JSON's special characters.
    fn dict_strategy() -> impl Strategy<Value = Value> {
        let text = "[a-z{}\\[\\]\"\\\\:, \t\r\n\u{1}\u{1f}é€😀]{0,10}";
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            text.prop_map(|s: String| Value::Bytes(s.into_bytes())),
        ];
        let tree = leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                prop::collection::btree_map(text, inner, 0..6).prop_map(|m| Value::Dict(
                    m.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect()
                )),
            ]
        });
        prop::collection::btree_map(text, tree, 0..6)
            .prop_map(|m| Value::Dict(m.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect()))
    }

    proptest! {
        #[test]
        fn scanner_agrees_with_the_decoder_on_generated_dictionaries(
            v in dict_strategy(),
            pretty in any::<bool>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let l = Limits::default();
            let doc = if pretty {
                serde_json::to_vec_pretty(&to_json(&v)).unwrap()
            } else {
                encode(&v)
            };
            let mut stream = doc.clone();
            stream.extend_from_slice(b" 2 {\"command\":\"ping\"}");
            prop_assert_eq!(scan_object(&stream, &l), Scan::Complete(doc.len()));
            prop_assert_eq!(decode(&stream[..doc.len()], &l), Ok(v));
            let cut = cut.index(doc.len());
            prop_assert_eq!(scan_object(&doc[..cut], &l), Scan::Incomplete);
            prop_assert_eq!(
                scan_split(&stream, cut, &l),
                (Scan::Incomplete, Scan::Complete(doc.len()))
            );
        }

        #[test]
        fn scanner_agrees_with_the_decoder_on_json_shaped_bytes(
            body in prop::collection::vec(
                prop::sample::select(b"{}[]\":,\\ \nau01-.e\x01".to_vec()), 0..60),
            cut in any::<prop::sample::Index>(),
        ) {
            let l = Limits::default();
            let mut buf = vec![b'{'];
            buf.extend_from_slice(&body);
            let whole = scan_object(&buf, &l);
            let cut = cut.index(buf.len() + 1);
            prop_assert_eq!(scan_split(&buf, cut, &l).1, whole);
            if let Ok(Value::Dict(_)) = decode(&buf, &l) {
                let Scan::Complete(n) = whole else {
                    return Err(TestCaseError::fail(format!("decoded but scanned {whole:?}")));
                };
                prop_assert!(buf[n..].iter().all(|b| b.is_ascii_whitespace()));
                prop_assert_eq!(decode(&buf[..n], &l), decode(&buf, &l));
            }
            match whole {
                Scan::Error { offset, .. } => {
                    prop_assert!(offset < buf.len());
                    prop_assert!(decode(&buf, &l).is_err());
                }
                Scan::Complete(n) => {
                    prop_assert_eq!(buf[n - 1], b'}');
                    for shorter in 0..n {
                        prop_assert_eq!(scan_object(&buf[..shorter], &l), Scan::Incomplete);
                    }
                }
                Scan::Incomplete => prop_assert!(decode(&buf, &l).is_err()),
            }
        }
    }
}
