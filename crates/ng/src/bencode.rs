//! Bencode, the encoding of rtpengine's `ng` control protocol: a bounded, incremental,
//! total decoder, an encoder, and a resumable scanner that finds where a dictionary
//! ends.
//!
//! What it does: decodes byte strings (`<len>:<bytes>`), integers (`i<n>e`), lists
//! (`l...e`) and dictionaries (`d...e`) into a [`Value`], and encodes a [`Value`] back.
//! For TCP-ng, where messages have no length prefix, [`DictScanner`] finds where the
//! top-level dictionary ends without decoding it, keeping its place between reads so
//! a message trickling in is examined once (string bytes are skipped, not read) rather
//! than decoded again on every read. The format is BitTorrent's bencoding (BEP 3);
//! there is no RFC.
//!
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
//! counts ([`DictScanner`] checks everything else but leaves duplicates to [`decode`]).
//! A buffer that ends inside a value is [`DecodeError::Incomplete`], which a
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
    let v = d.value(1);
    #[cfg(test)]
    work::add(d.pos);
    Ok((v?, d.pos))
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

/// What [`DictScanner::scan`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The message has not ended yet: read more.
    Incomplete,
    /// The message ends after this many bytes (its closing `e` or `}` included).
    Complete(usize),
    /// The bytes cannot start a message that fits the limits; no later byte can
    /// repair that, so a stream reader must give up on the connection.
    Error {
        /// Byte offset of the problem, from the start of the message.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

/// A list or dictionary the scanner is inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    List,
    Dict,
}

/// Where the scanner stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexer {
    /// Between values: the next byte starts a value or key, or closes a container.
    Token,
    /// After `i`, whose first digit (or sign) is at `start`.
    IntStart { start: usize },
    /// After `i-`: a non-zero digit must follow.
    IntNegative { start: usize },
    /// Inside an integer's digits; `zero` if the first digit was `0` (then only the
    /// terminator may follow), `value` so far to catch 64-bit overflow.
    IntDigits {
        start: usize,
        zero: bool,
        negative: bool,
        value: i64,
    },
    /// Inside a string's length, which starts at `len_at`.
    Length {
        len_at: usize,
        zero: bool,
        len: usize,
    },
    /// Inside a string's bytes, this many still to come (never read, only counted).
    Skip(usize),
}

/// Finds the end of the bencode dictionary at the start of a buffer without decoding
/// it: integers, string lengths (the string bytes themselves are skipped, not read),
/// lists and dictionaries, with nesting depth, value count and size capped by the
/// same [`Limits`] as [`decode`].
///
/// It agrees with [`decode`]: a buffer holding a dictionary (and perhaps more bytes
/// after it) that [`decode`] accepts scans as [`Scan::Complete`] with the length
/// [`decode`] used; each of its proper prefixes scans as [`Scan::Incomplete`]; and it
/// never says `Complete` where [`decode`] says [`DecodeError::Incomplete`]. It checks
/// the grammar and the integer rules, but not duplicate keys, which [`decode`] refuses
/// once the frame is complete. Framing errors (a non-digit in a length, a length past
/// the size limit, nesting past the depth limit) are reported at the first byte that
/// shows them, even where [`decode`] would still ask for more bytes.
///
/// Incremental: the scanner keeps its place, so a stream reader calls
/// [`scan`](Self::scan) again with the same bytes plus what arrived since and pays only
/// for the new bytes (nothing at all for the inside of a long string). Once it has said
/// `Complete` or `Error` it says so again; start a new scanner for the next message.
#[derive(Debug, Clone)]
pub struct DictScanner {
    /// Bytes scanned (or skipped) so far.
    pos: usize,
    /// Open containers, innermost last; at most `limits.max_depth` long.
    open: Vec<Container>,
    /// The innermost dictionary has read a key and wants its value.
    value_due: bool,
    /// Values begun so far, as [`decode`] counts them (keys are not values).
    values: usize,
    lexer: Lexer,
    limits: Limits,
    done: Option<Scan>,
}

impl DictScanner {
    /// A scanner for one dictionary under `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            pos: 0,
            open: Vec::new(),
            value_due: false,
            values: 0,
            lexer: Lexer::Token,
            limits: *limits,
            done: None,
        }
    }

    /// Scans `buf`, which must start with the bytes given to earlier calls (a stream
    /// buffer that only grew). A shorter `buf` than already scanned is `Incomplete`.
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        if let Some(done) = self.done {
            return done;
        }
        let outcome = self.run(buf);
        if outcome != Scan::Incomplete {
            self.done = Some(outcome);
        }
        outcome
    }

    fn run(&mut self, buf: &[u8]) -> Scan {
        loop {
            // As `decode` does: needing a byte past the size limit is an error whether
            // or not it has arrived, so an oversized message is refused at the limit.
            if self.pos >= self.limits.max_len {
                return error(self.limits.max_len, "message is larger than the size limit");
            }
            if let Lexer::Skip(left) = self.lexer {
                let available = buf.len().saturating_sub(self.pos);
                if available == 0 {
                    return Scan::Incomplete;
                }
                let take = left.min(available);
                // Cannot overflow: the string's end was checked against `max_len`.
                self.pos = self.pos.saturating_add(take);
                self.lexer = match left - take {
                    0 => Lexer::Token,
                    rest => Lexer::Skip(rest),
                };
                continue;
            }
            let Some(&b) = buf.get(self.pos) else {
                return Scan::Incomplete;
            };
            #[cfg(test)]
            work::add(1);
            let at = self.pos;
            self.pos = at.saturating_add(1);
            if let Some(outcome) = self.step(at, b) {
                return outcome;
            }
        }
    }

    /// Takes byte `b` at offset `at`; `Some` when the dictionary ends or cannot go on.
    fn step(&mut self, at: usize, b: u8) -> Option<Scan> {
        match self.lexer {
            Lexer::Token => self.token(at, b),
            Lexer::IntStart { start } => {
                self.lexer = match b {
                    b'-' => Lexer::IntNegative { start },
                    b'0'..=b'9' => Lexer::IntDigits {
                        start,
                        zero: b == b'0',
                        negative: false,
                        value: i64::from(b - b'0'),
                    },
                    b'e' => return Some(error(at, "number has no digits")),
                    _ => return Some(error(at, "expected a decimal digit")),
                };
                None
            }
            Lexer::IntNegative { start } => {
                self.lexer = match b {
                    // `i-0e` and `i-01e` alike: nothing after `-0` can be valid.
                    b'0' => return Some(error(start, "negative zero")),
                    b'1'..=b'9' => Lexer::IntDigits {
                        start,
                        zero: false,
                        negative: true,
                        value: -i64::from(b - b'0'),
                    },
                    b'e' => return Some(error(at, "number has no digits")),
                    _ => return Some(error(at, "expected a decimal digit")),
                };
                None
            }
            Lexer::IntDigits {
                start,
                zero,
                negative,
                value,
            } => {
                match b {
                    b'e' => self.lexer = Lexer::Token,
                    b'0'..=b'9' if zero => {
                        return Some(error(start, "number has a leading zero"));
                    }
                    b'0'..=b'9' => {
                        let digit = i64::from(b - b'0');
                        let value = value.checked_mul(10).and_then(|v| {
                            if negative {
                                v.checked_sub(digit)
                            } else {
                                v.checked_add(digit)
                            }
                        });
                        let Some(value) = value else {
                            return Some(error(start, "integer does not fit in 64 bits"));
                        };
                        self.lexer = Lexer::IntDigits {
                            start,
                            zero,
                            negative,
                            value,
                        };
                    }
                    _ => return Some(error(at, "expected a decimal digit")),
                }
                None
            }
            Lexer::Length { len_at, zero, len } => match b {
                b':' => {
                    // `fits` checked the end before the colon arrived.
                    self.lexer = if len == 0 {
                        Lexer::Token
                    } else {
                        Lexer::Skip(len)
                    };
                    None
                }
                b'0'..=b'9' if zero => Some(error(len_at, "number has a leading zero")),
                b'0'..=b'9' => {
                    let len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(b - b'0')));
                    self.length(len_at, zero, len)
                }
                _ => Some(error(at, "expected a decimal digit")),
            },
            // `run` skips string bytes without stepping through them.
            Lexer::Skip(_) => None,
        }
    }

    /// A byte where a value, a key or a closing `e` may stand.
    fn token(&mut self, at: usize, b: u8) -> Option<Scan> {
        match self.open.last() {
            None => {
                self.values = self.values.saturating_add(1);
                if self.values > self.limits.max_values {
                    return Some(error(at, "too many values"));
                }
                if b != b'd' {
                    return Some(error(at, "an ng bencode message must be a dictionary"));
                }
                self.enter(at, Container::Dict)
            }
            Some(Container::Dict) if !self.value_due => match b {
                b'e' => self.close(),
                b'0'..=b'9' => {
                    self.value_due = true;
                    self.string(at, b)
                }
                _ => Some(error(at, "dictionary key is not a string")),
            },
            Some(Container::List) if b == b'e' => self.close(),
            Some(_) => {
                // Counted before the byte is judged, as `decode` does, so a dictionary
                // that closes where a value is due is refused as `decode` refuses it.
                self.values = self.values.saturating_add(1);
                if self.values > self.limits.max_values {
                    return Some(error(at, "too many values"));
                }
                self.value_due = false;
                match b {
                    b'i' => {
                        self.lexer = Lexer::IntStart {
                            start: at.saturating_add(1),
                        };
                        None
                    }
                    b'0'..=b'9' => self.string(at, b),
                    b'l' => self.enter(at, Container::List),
                    b'd' => self.enter(at, Container::Dict),
                    _ => Some(error(at, "expected a string, integer, list or dictionary")),
                }
            }
        }
    }

    fn enter(&mut self, at: usize, container: Container) -> Option<Scan> {
        if self.open.len() >= self.limits.max_depth {
            return Some(error(at, "nesting is deeper than the limit"));
        }
        self.open.push(container);
        self.value_due = false;
        None
    }

    fn close(&mut self) -> Option<Scan> {
        self.open.pop();
        // The container was its parent's value: a parent dictionary wants a key next.
        self.value_due = false;
        self.open.is_empty().then_some(Scan::Complete(self.pos))
    }

    /// The first digit of a string's length.
    fn string(&mut self, len_at: usize, b: u8) -> Option<Scan> {
        self.length(len_at, b == b'0', Some(usize::from(b - b'0')))
    }

    /// Records the length read so far, refusing it as soon as the string could no
    /// longer end within the size limit: its bytes start after a colon that is at
    /// `self.pos` at the earliest, and more digits only make it longer.
    fn length(&mut self, len_at: usize, zero: bool, len: Option<usize>) -> Option<Scan> {
        let fits = len.filter(|&l| {
            self.pos
                .checked_add(1)
                .and_then(|start| start.checked_add(l))
                .is_some_and(|end| end <= self.limits.max_len)
        });
        let Some(len) = fits else {
            return Some(error(len_at, "string is longer than the size limit"));
        };
        self.lexer = Lexer::Length { len_at, zero, len };
        None
    }
}

fn error(offset: usize, reason: &'static str) -> Scan {
    Scan::Error { offset, reason }
}

/// Scans `buf` in one go; see [`DictScanner`].
pub fn scan_dict(buf: &[u8], limits: &Limits) -> Scan {
    DictScanner::new(limits).scan(buf)
}

/// Bytes examined by the scanner and the decoder on this thread, so tests can show
/// that framing a trickled message costs its length, not its length squared.
#[cfg(test)]
pub(crate) mod work {
    use std::cell::Cell;

    thread_local! {
        static BYTES: Cell<usize> = const { Cell::new(0) };
    }

    /// Counts `n` bytes examined.
    pub(crate) fn add(n: usize) {
        BYTES.with(|b| b.set(b.get().saturating_add(n)));
    }

    /// The count since the last call, resetting it.
    pub(crate) fn take() -> usize {
        BYTES.with(|b| b.replace(0))
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

    fn err(offset: usize, reason: &'static str) -> Scan {
        Scan::Error { offset, reason }
    }

    /// The scanner and the decoder both refuse `buf` at `offset` for `reason`.
    fn refused_alike(buf: &[u8], limits: &Limits, offset: usize, reason: &'static str) {
        let shown = String::from_utf8_lossy(buf);
        assert_eq!(scan_dict(buf, limits), err(offset, reason), "scan {shown}");
        assert_eq!(
            decode(buf, limits),
            Err(DecodeError::Invalid { offset, reason }),
            "decode {shown}"
        );
    }

    /// Bytes inside strings (keys included): the bytes the scanner skips unread.
    fn string_bytes(v: &Value) -> usize {
        match v {
            Value::Bytes(b) => b.len(),
            Value::Int(_) => 0,
            Value::List(items) => items.iter().map(string_bytes).sum(),
            Value::Dict(entries) => entries.iter().map(|(k, v)| k.len() + string_bytes(v)).sum(),
        }
    }

    /// An offer and a delete as Kamailio 5.6 sends them (from
    /// `shared/reference/rtp-relay-anchors.md`, section b.4).
    const KAMAILIO_OFFER: &[u8] = b"d8:supportsl10:load limite3:sdp89:v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n5:flagsl13:trust-addresse7:replacel6:origin18:session-connectione3:ICE6:remove13:received-froml3:IP410:192.0.2.10e7:call-id6:abc1238:from-tag3:ft17:command5:offere";
    const KAMAILIO_DELETE: &[u8] = b"d7:call-id6:abc1238:from-tag3:ft17:command6:deletee";

    /// A fuller Kamailio-style offer: nested `codec` dictionary, integers, and strings
    /// full of the bytes that mean something outside a string (`e`, `d`, `i`, `:`,
    /// digits), to catch a scanner that reads string contents.
    fn rich_offer() -> Vec<u8> {
        let sdp = "v=0\r\no=- 1545997027 1 IN IP4 198.51.100.1\r\ns=ed:1:ei0e\r\n\
                   c=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 16000 RTP/AVP 0 8 101\r\n\
                   a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";
        dict([
            ("sdp", Value::str(sdp)),
            ("call-id", Value::str("e3:dlie0:@192.0.2.5")),
            ("via-branch", Value::str("z9hG4bK.1d2e3")),
            ("from-tag", Value::str("as5e1d")),
            (
                "flags",
                Value::List(vec![
                    Value::str("trust-address"),
                    Value::str("loop-protect"),
                ]),
            ),
            ("replace", Value::List(vec![Value::str("origin")])),
            (
                "codec",
                dict([
                    ("strip", Value::List(vec![Value::str("all")])),
                    (
                        "offer",
                        Value::List(vec![Value::str("PCMA"), Value::str("PCMU")]),
                    ),
                ]),
            ),
            ("delete delay", Value::Int(30)),
            ("TOS", Value::Int(-0x7fff_ffff_ffff_ffff)),
            ("rtpp-flags", Value::str("")),
            ("command", Value::str("offer")),
        ])
        .encode()
    }

    #[test]
    fn scanner_finds_the_end_of_kamailio_messages_at_every_split() {
        let l = Limits::default();
        let tempting = b"d7:command5:offer3:sdp10:v=0\r\ns=-\r\n5:flagsl13:trust-addresse3:TOSi0ee";
        let rich = rich_offer();
        for msg in [KAMAILIO_OFFER, KAMAILIO_DELETE, &tempting[..], &rich] {
            let shown = String::from_utf8_lossy(msg);
            let (value, used) = decode(msg, &l).unwrap();
            assert_eq!(used, msg.len());
            // The next message follows at once on a TCP-ng stream.
            let mut stream = msg.to_vec();
            stream.extend_from_slice(b"d7:command4:pinge");
            work::take();
            assert_eq!(scan_dict(&stream, &l), Scan::Complete(msg.len()), "{shown}");
            assert_eq!(
                work::take(),
                msg.len() - string_bytes(&value),
                "string bytes are skipped unread: {shown}"
            );
            for cut in 0..=stream.len() {
                let mut s = DictScanner::new(&l);
                let first = s.scan(&stream[..cut]);
                if cut < msg.len() {
                    assert_eq!(first, Scan::Incomplete, "{cut} bytes of {shown}");
                } else {
                    assert_eq!(first, Scan::Complete(msg.len()), "{cut} bytes of {shown}");
                }
                assert_eq!(s.scan(&stream), Scan::Complete(msg.len()), "split at {cut}");
            }
            // One byte per read, as a trickling peer sends it.
            let mut s = DictScanner::new(&l);
            for cut in 0..msg.len() {
                assert_eq!(s.scan(&stream[..cut]), Scan::Incomplete, "{shown}");
            }
            assert_eq!(s.scan(msg), Scan::Complete(msg.len()));
            assert_eq!(s.scan(&[]), Scan::Complete(msg.len()), "the answer sticks");
        }
    }

    #[test]
    fn scanner_refuses_what_the_decoder_refuses_at_the_same_byte() {
        let l = Limits::default();
        refused_alike(b"di1ei2ee", &l, 1, "dictionary key is not a string");
        refused_alike(
            b"d1:ae",
            &l,
            4,
            "expected a string, integer, list or dictionary",
        );
        refused_alike(
            b"d1:axe",
            &l,
            4,
            "expected a string, integer, list or dictionary",
        );
        refused_alike(b"d3x:abc1:ai1ee", &l, 2, "expected a decimal digit");
        refused_alike(b"d1:a3x:abce", &l, 5, "expected a decimal digit");
        refused_alike(b"d01:ai1ee", &l, 1, "number has a leading zero");
        refused_alike(b"d1:ai03ee", &l, 5, "number has a leading zero");
        refused_alike(b"d1:aiee", &l, 5, "number has no digits");
        refused_alike(b"d1:ai-ee", &l, 6, "number has no digits");
        refused_alike(b"d1:ai1-ee", &l, 6, "expected a decimal digit");
        refused_alike(b"d1:ai-0ee", &l, 5, "negative zero");
        refused_alike(
            b"d1:ai9223372036854775808ee",
            &l,
            5,
            "integer does not fit in 64 bits",
        );
        let extremes = b"d1:ai-9223372036854775808e1:bi9223372036854775807ee";
        assert_eq!(scan_dict(extremes, &l), Scan::Complete(extremes.len()));
        assert!(decode_exact(extremes, &l).is_ok());
        // Only the decoder sees duplicates; the frame still ends in the same place.
        assert_eq!(scan_dict(b"d1:ai1e1:ai2ee", &l), Scan::Complete(14));
        assert_eq!(
            decode(b"d1:ai1e1:ai2ee", &l),
            Err(DecodeError::Invalid {
                offset: 7,
                reason: "duplicate dictionary key"
            })
        );
        // A TCP-ng message is a dictionary; the decoder would take any value.
        for other in [&b"l1:ae"[..], b"i1e", b"1:a", b"e", b" d"] {
            assert_eq!(
                scan_dict(other, &l),
                err(0, "an ng bencode message must be a dictionary")
            );
        }
        assert_eq!(scan_dict(b"", &l), Scan::Incomplete);
        assert_eq!(scan_dict(b"de", &l), Scan::Complete(2));
        assert_eq!(scan_dict(b"d0:0:e", &l), Scan::Complete(6));
    }

    #[test]
    fn scanner_reports_framing_errors_before_the_decoder_can() {
        let l = Limits::default();
        // A length that cannot end within 1 MiB is refused at its seventh digit; the
        // decoder would wait for the colon.
        assert_eq!(scan_dict(b"d1:a999999", &l), Scan::Incomplete);
        assert_eq!(
            scan_dict(b"d1:a9999999", &l),
            err(4, "string is longer than the size limit")
        );
        assert_eq!(decode(b"d1:a9999999", &l), Err(DecodeError::Incomplete));
        let endless = format!("d1:a{}", "9".repeat(100));
        assert_eq!(
            scan_dict(endless.as_bytes(), &l),
            err(4, "string is longer than the size limit")
        );
        // Same for the key, and against a small limit: 1 + 2 + 1 + 99 > 16.
        let small = Limits {
            max_len: 16,
            ..Limits::default()
        };
        assert_eq!(scan_dict(b"d9", &small), Scan::Incomplete);
        assert_eq!(
            scan_dict(b"d99", &small),
            err(1, "string is longer than the size limit")
        );
        refused_alike(b"d99:", &small, 1, "string is longer than the size limit");
        // Nothing after `-0` can be valid.
        assert_eq!(scan_dict(b"d1:ai-0", &l), err(5, "negative zero"));
        assert_eq!(decode(b"d1:ai-0", &l), Err(DecodeError::Incomplete));
        assert_eq!(
            scan_dict(b"d1:ai00", &l),
            err(5, "number has a leading zero")
        );
    }

    #[test]
    fn scanner_depth_values_and_size_limits_match_the_decoder() {
        let l = Limits::default();
        // The dictionary is level 1; `n` lists inside it.
        let nested = |n: usize| format!("d1:a{}{}e", "l".repeat(n), "e".repeat(n));
        let ok = nested(31);
        assert_eq!(scan_dict(ok.as_bytes(), &l), Scan::Complete(ok.len()));
        assert!(decode_exact(ok.as_bytes(), &l).is_ok());
        refused_alike(
            nested(32).as_bytes(),
            &l,
            4 + 31,
            "nesting is deeper than the limit",
        );
        let dicts = format!("{}{}", "d1:a".repeat(40), "e".repeat(40));
        refused_alike(
            dicts.as_bytes(),
            &l,
            4 * 32,
            "nesting is deeper than the limit",
        );
        // A million-deep prefix fails at the limit, having looked at no more.
        let hostile = format!("d1:a{}", "l".repeat(1_000_000));
        work::take();
        assert_eq!(
            scan_dict(hostile.as_bytes(), &l),
            err(4 + 31, "nesting is deeper than the limit")
        );
        assert_eq!(
            work::take(),
            4 + 32 - 1,
            "bytes examined (the key's `a` skipped)"
        );
        // A deeper limit is honoured, not silently capped.
        let wide = Limits {
            max_depth: 500,
            ..Limits::default()
        };
        let deep = nested(499);
        assert_eq!(
            scan_dict(deep.as_bytes(), &wide),
            Scan::Complete(deep.len())
        );
        assert!(decode_exact(deep.as_bytes(), &wide).is_ok());
        refused_alike(
            nested(500).as_bytes(),
            &wide,
            4 + 499,
            "nesting is deeper than the limit",
        );

        let three = Limits {
            max_values: 3,
            ..Limits::default()
        };
        assert_eq!(scan_dict(b"d1:ai1e1:bi2ee", &three), Scan::Complete(14));
        refused_alike(b"d1:ai1e1:bi2e1:ci3ee", &three, 16, "too many values");
        // Counted where a value is due, before the byte is judged, as the decoder does.
        refused_alike(b"d1:ai1e1:bi2e1:ce", &three, 16, "too many values");
        let many = format!("d1:al{}ee", "i1e".repeat(20_000));
        refused_alike(many.as_bytes(), &l, 5 + 3 * 16_382, "too many values");

        let small = Limits {
            max_len: 8,
            ..Limits::default()
        };
        assert_eq!(scan_dict(b"d1:ai1ee", &small), Scan::Complete(8));
        assert!(decode_exact(b"d1:ai1ee", &small).is_ok());
        refused_alike(
            b"d1:ai12ee",
            &small,
            8,
            "message is larger than the size limit",
        );
        // Eight bytes that need a ninth are refused without waiting for it.
        refused_alike(
            b"d1:ai12e",
            &small,
            8,
            "message is larger than the size limit",
        );
        refused_alike(
            b"d1:a2:ab",
            &small,
            8,
            "message is larger than the size limit",
        );
        refused_alike(
            b"d1:a5:abc",
            &small,
            4,
            "string is longer than the size limit",
        );
        let none = Limits {
            max_len: 0,
            ..Limits::default()
        };
        refused_alike(b"", &none, 0, "message is larger than the size limit");
    }

    /// A message of exactly `limits.max_len` bytes: a 1 MiB offer whose SDP and a
    /// long flag list fill it, so both skipping and token scanning are exercised.
    fn one_mebibyte_offer(limits: &Limits) -> Value {
        let flags: Vec<Value> = (0..8_000)
            .map(|i| Value::Bytes(format!("{i:060}").into_bytes()))
            .collect();
        let with_sdp = |len: usize| {
            dict([
                ("command", Value::str("offer")),
                ("call-id", Value::str("big")),
                ("flags", Value::List(flags.clone())),
                ("sdp", Value::Bytes(vec![b'e'; len])),
            ])
        };
        let base = with_sdp(100_000).encoded_len();
        // The SDP length keeps six digits, so the padding is exact.
        let value = with_sdp(100_000 + limits.max_len - base);
        assert_eq!(value.encoded_len(), limits.max_len);
        value
    }

    #[test]
    fn a_trickled_mebibyte_is_examined_once() {
        let l = Limits::default();
        let value = one_mebibyte_offer(&l);
        let msg = value.encode();
        work::take();
        let mut s = DictScanner::new(&l);
        for cut in 0..msg.len() {
            assert_eq!(s.scan(&msg[..cut]), Scan::Incomplete);
        }
        assert_eq!(s.scan(&msg), Scan::Complete(msg.len()));
        assert_eq!(work::take(), msg.len() - string_bytes(&value));
    }

    /// Dictionaries with keys in any order (wire order is kept), unique as the decoder
    /// requires.
    fn dict_strategy() -> impl Strategy<Value = Value> {
        prop::collection::btree_map(
            prop::collection::vec(any::<u8>(), 0..6),
            value_strategy(),
            0..6,
        )
        .prop_flat_map(|m| {
            let entries: Vec<_> = m.into_iter().collect();
            Just(entries).prop_shuffle()
        })
        .prop_map(Value::Dict)
    }

    /// Scans the prefixes of `buf` ending at each of `cuts` (sorted), then all of it,
    /// with one scanner; returns every answer.
    fn scan_in_pieces(buf: &[u8], cuts: &[usize], l: &Limits) -> Vec<Scan> {
        let mut s = DictScanner::new(l);
        let mut answers: Vec<Scan> = cuts.iter().map(|&c| s.scan(&buf[..c])).collect();
        answers.push(s.scan(buf));
        answers
    }

    proptest! {
        #[test]
        fn scanner_agrees_with_the_decoder_on_generated_dictionaries(
            v in dict_strategy(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let l = Limits::default();
            let msg = v.encode();
            let mut stream = msg.clone();
            stream.extend_from_slice(b"d7:command4:pinge");
            work::take();
            prop_assert_eq!(scan_dict(&stream, &l), Scan::Complete(msg.len()));
            prop_assert_eq!(work::take(), msg.len() - string_bytes(&v));
            prop_assert_eq!(decode(&stream, &l), Ok((v, msg.len())));
            for cut in 0..msg.len() {
                prop_assert_eq!(scan_dict(&msg[..cut], &l), Scan::Incomplete, "cut {}", cut);
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            let want: Vec<Scan> = cuts
                .iter()
                .map(|&c| if c < msg.len() { Scan::Incomplete } else { Scan::Complete(msg.len()) })
                .chain([Scan::Complete(msg.len())])
                .collect();
            prop_assert_eq!(scan_in_pieces(&stream, &cuts, &l), want);
        }

        #[test]
        fn scanner_agrees_with_the_decoder_on_bencode_shaped_bytes(
            body in prop::collection::vec(
                prop::sample::select(vec![
                    &b"d"[..], b"l", b"e", b"e", b"i", b"-", b"0", b"1", b"9", b":", b"x",
                    b"1:a", b"1:b", b"0:", b"2:", b"i0e", b"i-1e", b"i12e", b"ee",
                ]),
                0..24,
            ).prop_map(|tokens| tokens.concat()),
            cut in any::<prop::sample::Index>(),
            max_depth in 1usize..5,
            max_values in 1usize..12,
            max_len in prop_oneof![1usize..40, Just(1024 * 1024)],
        ) {
            let l = Limits { max_depth, max_values, max_len };
            let mut buf = vec![b'd'];
            buf.extend_from_slice(&body);
            let whole = scan_dict(&buf, &l);
            let cut = cut.index(buf.len() + 1);
            let pieces = scan_in_pieces(&buf, &[cut], &l);
            prop_assert!(pieces[0] == Scan::Incomplete || pieces[0] == whole);
            prop_assert_eq!(pieces[1], whole, "resumed at {}", cut);
            let decoded = decode(&buf, &l);
            if let Ok((_, used)) = decoded {
                prop_assert_eq!(whole, Scan::Complete(used));
            }
            match whole {
                Scan::Complete(n) => {
                    prop_assert_eq!(buf[n - 1], b'e');
                    for shorter in 0..n {
                        prop_assert_eq!(scan_dict(&buf[..shorter], &l), Scan::Incomplete);
                    }
                    // Everything but duplicate keys was checked by the scan.
                    match decode(&buf[..n], &l) {
                        Ok((_, used)) => prop_assert_eq!(used, n),
                        Err(DecodeError::Invalid { reason, .. }) => {
                            prop_assert_eq!(reason, "duplicate dictionary key");
                        }
                        Err(DecodeError::Incomplete) => {
                            return Err(TestCaseError::fail("complete scan, incomplete decode"));
                        }
                    }
                }
                Scan::Error { offset, .. } => {
                    prop_assert!(offset <= buf.len().max(l.max_len));
                    prop_assert!(decoded.is_err());
                }
                Scan::Incomplete => prop_assert!(decoded.is_err()),
            }
        }
    }
}
