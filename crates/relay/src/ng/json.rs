//! JSON as the second `ng` encoding: rtpengine accepts a dictionary that starts with
//! `{` instead of bencode's `d` and answers in JSON.
//!
//! What it does: maps a JSON document onto the same [`Value`] tree bencode gives
//! (strings to byte strings, integers to integers, `true`/`false` to 1/0, arrays to
//! lists, objects to dictionaries), and a reply [`Value`] back to JSON. What it does
//! not: carry floats or `null` (no `ng` key uses them; they are refused so a request
//! cannot be half-understood). Depth and value count use the bencode [`Limits`].

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ng::bencode::dict;

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
}
