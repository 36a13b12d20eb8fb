//! Bencode, the encoding of rtpengine's `ng` control protocol: a bounded, incremental,
//! total decoder and an encoder.
//!
//! What it does: decodes byte strings (`<len>:<bytes>`), integers (`i<n>e`), lists
//! (`l...e`) and dictionaries (`d...e`) into a [`Value`], and encodes a [`Value`] back.
//! Dictionaries keep their keys in wire order: rtpengine does not sort them and neither
//! do its clients (Kamailio, OpenSIPS), so sorting is not required on input; the encoder
//! writes keys in the order the value holds them.
//!
//! What it does not: interpret the dictionary (see [`super::request`]) or frame messages
//! (see [`super::framing`]).
//!
//! Bounds: nesting depth, total number of values and message size are capped by
//! [`Limits`]; a string length is checked against the bytes actually present before
//! anything is allocated, so a huge length field costs nothing. Integers must be
//! canonical (`i0e`, no leading zeros, no `-0`) and fit an `i64`. Duplicate dictionary
//! keys are refused, because two readers could otherwise disagree about which one
//! counts. A buffer that ends inside a value is [`DecodeError::Incomplete`], which a
//! stream (TCP-ng) reader answers by reading more; anything else wrong is
//! [`DecodeError::Invalid`] with the byte offset.

use std::fmt;

/// Hard caps for [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries (the top-level dictionary is depth 1).
    pub max_depth: usize,
    /// Most values in one message, strings and integers included.
    pub max_values: usize,
    /// Largest message, in bytes.
    pub max_len: usize,
}

impl Default for Limits {
    /// 32 levels, 16,384 values, 1 MiB: real `ng` messages nest 4 levels deep and
    /// carry a few dozen values; an SDP body is one string.
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_values: 16_384,
            max_len: 1024 * 1024,
        }
    }
}

/// A bencode value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A byte string (not necessarily UTF-8: SDP bodies may carry other charsets).
    Bytes(Vec<u8>),
    /// An integer.
    Int(i64),
    /// A list.
    List(Vec<Value>),
    /// A dictionary, keys in wire order, no duplicates.
    Dict(Vec<(Vec<u8>, Value)>),
}

impl Value {
    /// A byte-string value from text.
    pub fn str(s: &str) -> Self {
        Self::Bytes(s.as_bytes().to_vec())
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a string value, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The integer, or a string of decimal digits read as one (clients differ in which
    /// they send for numeric keys such as `delete delay`).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    /// The items of a list value.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Self::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entries of a dictionary value.
    pub fn as_dict(&self) -> Option<&[(Vec<u8>, Value)]> {
        match self {
            Self::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value of `key` in a dictionary value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// The encoded form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Bytes(b) => encode_bytes(b, out),
            Self::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Self::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Self::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The length of the encoded form.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Bytes(b) => bytes_len(b),
            Self::Int(i) => 2 + decimal_len(*i),
            Self::List(items) => items
                .iter()
                .fold(2usize, |n, v| n.saturating_add(v.encoded_len())),
            Self::Dict(entries) => entries.iter().fold(2usize, |n, (k, v)| {
                n.saturating_add(bytes_len(k))
                    .saturating_add(v.encoded_len())
            }),
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fn bytes_len(b: &[u8]) -> usize {
    b.len().to_string().len() + 1 + b.len()
}

fn decimal_len(i: i64) -> usize {
    i.to_string().len()
}

/// Builds a dictionary value from `(key, value)` pairs, in order.
pub fn dict<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// Why bencode could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer ends inside a value; a stream reader should read more.
    Incomplete,
    /// The bytes are not valid bencode (or exceed a limit) at `offset`.
    Invalid {
        /// Byte offset of the problem.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Incomplete => f.write_str("bencode message is incomplete"),
            Self::Invalid { offset, reason } => {
                write!(f, "invalid bencode at byte {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one value from the start of `buf`; returns it and the bytes it used.
/// Bytes after the value are left for the caller (TCP-ng puts messages back to back).
pub fn decode(buf: &[u8], limits: &Limits) -> Result<(Value, usize), DecodeError> {
    let mut d = Decoder {
        buf,
        pos: 0,
        values: 0,
        limits,
    };
    let v = d.value(1)?;
    Ok((v, d.pos))
}

/// Decodes a buffer that must hold exactly one value, nothing after it.
pub fn decode_exact(buf: &[u8], limits: &Limits) -> Result<Value, DecodeError> {
    let (v, used) = decode(buf, limits)?;
    if used != buf.len() {
        return Err(DecodeError::Invalid {
            offset: used,
            reason: "trailing bytes after the value",
        });
    }
    Ok(v)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    values: usize,
    limits: &'a Limits,
}

impl Decoder<'_> {
    fn invalid<T>(&self, offset: usize, reason: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError::Invalid { offset, reason })
    }

    /// The byte at `pos`, or `Incomplete` (or `Invalid` past the size cap).
    fn peek(&self) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(b) if self.pos < self.limits.max_len => Ok(*b),
            Some(_) => self.invalid(self.pos, "message is larger than the size limit"),
            None if self.pos >= self.limits.max_len => {
                self.invalid(self.pos, "message is larger than the size limit")
            }
            None => Err(DecodeError::Incomplete),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return self.invalid(self.pos, "too many values");
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                self.int(b'e').map(Value::Int)
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.enter(depth)?;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.enter(depth)?;
                let mut entries: Vec<(Vec<u8>, Value)> = Vec::new();
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return self.invalid(key_at, "dictionary key is not a string");
                    }
                    let key = self.bytes()?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return self.invalid(key_at, "duplicate dictionary key");
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            _ => self.invalid(self.pos, "expected a string, integer, list or dictionary"),
        }
    }

    fn enter(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > self.limits.max_depth {
            return self.invalid(self.pos, "nesting is deeper than the limit");
        }
        self.pos += 1;
        Ok(())
    }

    /// A canonical decimal integer up to `end`, consuming the terminator.
    fn int(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_at = self.pos;
        let mut value: i64 = 0;
        loop {
            let b = self.peek()?;
            if b == end {
                break;
            }
            if !b.is_ascii_digit() {
                return self.invalid(self.pos, "expected a decimal digit");
            }
            let digit = i64::from(b - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if negative {
                        v.checked_sub(digit)
                    } else {
                        v.checked_add(digit)
                    }
                })
                .ok_or(DecodeError::Invalid {
                    offset: start,
                    reason: "integer does not fit in 64 bits",
                })?;
            self.pos += 1;
        }
        let digits = self.pos - digits_at;
        if digits == 0 {
            return self.invalid(self.pos, "number has no digits");
        }
        if digits > 1 && self.buf.get(digits_at) == Some(&b'0') {
            return self.invalid(digits_at, "number has a leading zero");
        }
        if negative && value == 0 {
            return self.invalid(start, "negative zero");
        }
        self.pos += 1;
        Ok(value)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len_at = self.pos;
        if self.peek()? == b'-' {
            return self.invalid(len_at, "string length is negative");
        }
        let len = self.int(b':')?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let end = self.pos.saturating_add(len);
        if end > self.limits.max_len {
            return self.invalid(len_at, "string is longer than the size limit");
        }
        match self.buf.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s.to_vec())
            }
            None => Err(DecodeError::Incomplete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &[u8]) -> Result<Value, DecodeError> {
        decode_exact(s, &Limits::default())
    }

    fn invalid(offset: usize, reason: &'static str) -> Result<Value, DecodeError> {
        Err(DecodeError::Invalid { offset, reason })
    }

    #[test]
    fn decodes_the_ping_from_the_docs() {
        let v = dec(b"d7:command4:pinge").unwrap();
        assert_eq!(v, dict([("command", Value::str("ping"))]));
        assert_eq!(v.get("command").and_then(Value::as_str), Some("ping"));
        assert_eq!(v.encode(), b"d7:command4:pinge");
    }

    #[test]
    fn keeps_key_order_and_binary_strings() {
        let v = dec(b"d1:zi-5e1:al0:3:\x00\xffxee").unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (b"z".to_vec(), Value::Int(-5)),
                (
                    b"a".to_vec(),
                    Value::List(vec![Value::str(""), Value::Bytes(b"\x00\xffx".to_vec())])
                ),
            ])
        );
        assert_eq!(v.encode(), b"d1:zi-5e1:al0:3:\x00\xffxee");
        assert_eq!(v.encoded_len(), v.encode().len());
    }

    #[test]
    fn integer_rules() {
        assert_eq!(dec(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(dec(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert_eq!(dec(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(
            dec(b"i9223372036854775808e"),
            invalid(1, "integer does not fit in 64 bits")
        );
        assert_eq!(dec(b"i-0e"), invalid(1, "negative zero"));
        assert_eq!(dec(b"i03e"), invalid(1, "number has a leading zero"));
        assert_eq!(dec(b"ie"), invalid(1, "number has no digits"));
        assert_eq!(dec(b"i1x"), invalid(2, "expected a decimal digit"));
        assert_eq!(
            dec(b"-1:a"),
            invalid(0, "expected a string, integer, list or dictionary")
        );
        assert_eq!(dec(b"01:a"), invalid(0, "number has a leading zero"));
    }

    #[test]
    fn structural_errors_carry_offsets() {
        assert_eq!(
            dec(b"di1ei2ee"),
            invalid(1, "dictionary key is not a string")
        );
        assert_eq!(
            dec(b"d1:ai1e1:ai2ee"),
            invalid(7, "duplicate dictionary key")
        );
        assert_eq!(
            dec(b"d1:ai1eex"),
            invalid(8, "trailing bytes after the value")
        );
        assert_eq!(
            dec(b"x"),
            invalid(0, "expected a string, integer, list or dictionary")
        );
        assert_eq!(
            Value::str("ab").as_int(),
            None,
            "non-numeric strings are not integers"
        );
        assert_eq!(Value::str(" 30").as_int(), Some(30));
    }

    #[test]
    fn huge_length_fields_allocate_nothing() {
        assert_eq!(
            dec(b"99999999999:x"),
            invalid(0, "string is longer than the size limit")
        );
        assert_eq!(
            dec(b"99999999999999999999999:x"),
            invalid(0, "integer does not fit in 64 bits")
        );
        assert_eq!(dec(b"100:abc"), Err(DecodeError::Incomplete));
    }

    #[test]
    fn nesting_and_count_limits() {
        let deep = |n: usize| {
            let mut s = "l".repeat(n);
            s.push_str(&"e".repeat(n));
            s
        };
        assert!(dec(deep(32).as_bytes()).is_ok());
        assert_eq!(
            dec(deep(33).as_bytes()),
            invalid(32, "nesting is deeper than the limit")
        );
        // A million-deep prefix must fail fast without recursion trouble.
        assert_eq!(
            dec("l".repeat(1_000_000).as_bytes()),
            invalid(32, "nesting is deeper than the limit")
        );
        let many = format!("l{}e", "i1e".repeat(20_000));
        assert_eq!(
            dec(many.as_bytes()),
            invalid(1 + 3 * 16_383, "too many values")
        );
        let small = Limits {
            max_len: 8,
            ..Limits::default()
        };
        assert_eq!(
            decode_exact(b"l1:a1:b1:ce", &small),
            Err(DecodeError::Invalid {
                offset: 8,
                reason: "message is larger than the size limit"
            })
        );
        assert_eq!(
            decode_exact(b"20:a", &small),
            Err(DecodeError::Invalid {
                offset: 0,
                reason: "string is longer than the size limit"
            })
        );
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let msg = b"d7:command5:offer3:sdp10:v=0\r\ns=-\r\n5:flagsl13:trust-addresse3:TOSi0ee";
        assert!(dec(msg).is_ok());
        for cut in 0..msg.len() {
            assert_eq!(
                decode(&msg[..cut], &Limits::default()),
                Err(DecodeError::Incomplete),
                "prefix of {cut} bytes"
            );
        }
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..6), inner, 0..6)
                    .prop_map(|m| Value::Dict(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in value_strategy()) {
            let bytes = v.encode();
            prop_assert_eq!(bytes.len(), v.encoded_len());
            prop_assert_eq!(dec(&bytes), Ok(v));
        }

        #[test]
        fn prefixes_of_valid_values_are_incomplete(v in value_strategy(), cut in any::<prop::sample::Index>()) {
            let bytes = v.encode();
            let cut = cut.index(bytes.len());
            prop_assert_eq!(decode(&bytes[..cut], &Limits::default()), Err(DecodeError::Incomplete));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok((v, used)) = decode(&data, &Limits::default()) {
                prop_assert!(used <= data.len());
                prop_assert_eq!(v.encode(), data[..used].to_vec());
            }
        }
    }
}
