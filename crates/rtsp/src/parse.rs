//! Incremental parser for an RTSP connection's byte stream, where requests, responses
//! and `$`-framed binary packets are mixed (RFC 2326 §4, §6, §7, §10.12; RFC 7826 §5,
//! §7, §8, §14).
//!
//! Two entry points:
//! * [`parse_item`] / [`parse_head`]: stateless, over a borrowed slice; a partial buffer
//!   gives [`Parsed::Incomplete`]. Bodies and payloads are copied out.
//! * [`Decoder`]: owns a `BytesMut`, remembers how far it has scanned (so a slow peer
//!   dribbling bytes costs linear, not quadratic, time), hands out bodies and payloads
//!   zero-copy and reports errors with the absolute stream offset.
//!
//! Framing: `Content-Length` alone decides a message's body; absent means empty (RFC 2326
//! §12.14, RFC 7826 §18.17). There is no chunked coding in RTSP, so `Transfer-Encoding`
//! is ignored. The tunnel POST body is not `Content-Length`-delimited in practice: read
//! its head with [`parse_head`] or [`Decoder::next_head`] (see [`crate::tunnel`]).
//!
//! Tolerated, because real peers send it: bare LF line endings, CR/LF between
//! messages, obs-fold continuation lines (folded into one space), runs of spaces
//! between start-line fields, whitespace before a header colon, a status line without a
//! reason phrase, header names in any case, non-UTF-8 header values and reason phrases
//! (decoded lossily).
//!
//! Rejected, with the byte offset: control bytes in the start line or a header name,
//! a header line without a colon, unknown protocol versions, a status code that is not
//! three digits in 100..=599, a `Content-Length` that is not decimal, overflows, or
//! disagrees with another one, and anything over [`Limits`]. Bytes that cannot begin a
//! message (binary data where a method or version must be) are rejected as soon as the
//! first wrong byte arrives, not when a limit is hit, so a desynchronised interleaved
//! stream is reported at the byte where it went wrong.

use bytes::{Bytes, BytesMut};

use crate::header_map::Headers;
use crate::message::{parse_decimal, InterleavedFrame, Item, Method, Request, Response, Version};
use crate::status::StatusCode;

/// Caps on what one message may make the parser buffer or allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest start or header line, without its line ending.
    pub max_line: usize,
    /// Longest message head: start line, headers and the blank line.
    pub max_head: usize,
    /// Most header fields (continuation lines not counted).
    pub max_headers: usize,
    /// Largest `Content-Length`.
    pub max_body: usize,
}

impl Default for Limits {
    /// 8 KiB lines, 64 KiB heads, 128 headers, 1 MiB bodies: far above what cameras and
    /// players send (SDP bodies are a few KiB) while bounding a hostile peer.
    fn default() -> Limits {
        Limits {
            max_line: 8 * 1024,
            max_head: 64 * 1024,
            max_headers: 128,
            max_body: 1024 * 1024,
        }
    }
}

/// Outcome of a parse over a buffer that may hold a partial item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// `item` was parsed from the first `consumed` bytes (stray line endings before it
    /// included).
    Complete { item: T, consumed: usize },
    /// More bytes are needed; nothing is wrong so far.
    Incomplete,
}

/// Why a byte stream is not valid RTSP. Offsets count from the start of the buffer
/// given to [`parse_item`]/[`parse_head`], or of the whole stream for a [`Decoder`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Malformed input.
    #[error("invalid {context} at byte {offset}: {reason}")]
    Invalid {
        offset: u64,
        /// Which part was being parsed, e.g. `"status line"`.
        context: &'static str,
        reason: &'static str,
    },
    /// A size or count cap from [`Limits`] was exceeded.
    #[error("{what} exceeds the limit of {limit} at byte {offset}")]
    TooLarge {
        what: &'static str,
        limit: usize,
        offset: u64,
    },
}

impl ParseError {
    /// The byte offset the error points at.
    pub fn offset(&self) -> u64 {
        match self {
            ParseError::Invalid { offset, .. } | ParseError::TooLarge { offset, .. } => *offset,
        }
    }

    fn shifted(self, base: u64) -> ParseError {
        match self {
            ParseError::Invalid {
                offset,
                context,
                reason,
            } => ParseError::Invalid {
                offset: offset.saturating_add(base),
                context,
                reason,
            },
            ParseError::TooLarge {
                what,
                limit,
                offset,
            } => ParseError::TooLarge {
                what,
                limit,
                offset: offset.saturating_add(base),
            },
        }
    }
}

/// A message head without its body: what [`parse_head`] and [`Decoder::next_head`]
/// return. The body of the contained message is empty; its `Content-Length` header is
/// left as received and not validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    Request(Request),
    Response(Response),
}

impl Head {
    /// The headers of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            Head::Request(r) => &r.headers,
            Head::Response(r) => &r.headers,
        }
    }

    fn with_body(self, body: Bytes) -> Item {
        match self {
            Head::Request(mut r) => {
                r.body = body;
                Item::Request(r)
            }
            Head::Response(mut r) => {
                r.body = body;
                Item::Response(r)
            }
        }
    }
}

/// Parses one item from the start of `buf`.
///
/// Stray CR/LF before the item are skipped and counted in `consumed`; more than
/// `limits.max_head` of them with nothing else is an error, so a caller that only
/// appends to its buffer cannot grow it without bound.
pub fn parse_item(buf: &[u8], limits: &Limits) -> Result<Parsed<Item>, ParseError> {
    let skip = stray_line_endings(buf, limits)?;
    let rest = buf.get(skip..).unwrap_or_default();
    let Some(&first) = rest.first() else {
        return Ok(Parsed::Incomplete);
    };
    if first == b'$' {
        let Some(len) = frame_payload_len(rest) else {
            return Ok(Parsed::Incomplete);
        };
        let Some(payload) = rest.get(4..4 + len) else {
            return Ok(Parsed::Incomplete);
        };
        let channel = rest.get(1).copied().unwrap_or_default();
        let frame = make_frame(channel, Bytes::copy_from_slice(payload))?;
        return Ok(Parsed::Complete {
            item: Item::Frame(frame),
            consumed: skip + 4 + len,
        });
    }
    let mut parser = HeadParser::default();
    let done = match parser.advance(rest, limits) {
        Ok(Some(done)) => done,
        Ok(None) => return Ok(Parsed::Incomplete),
        Err(e) => return Err(e.shifted(to_u64(skip))),
    };
    let body_len = done.body_len(limits).map_err(|e| e.shifted(to_u64(skip)))?;
    let body_start = done.len;
    let body_end = body_start.saturating_add(body_len);
    let Some(body) = rest.get(body_start..body_end) else {
        return Ok(Parsed::Incomplete);
    };
    Ok(Parsed::Complete {
        item: done.head.with_body(Bytes::copy_from_slice(body)),
        // Cannot overflow: `skip + body_end` bytes were just sliced out of `buf`.
        consumed: skip + body_end,
    })
}

/// Parses only a message head (request or response) from the start of `buf`, without
/// reading a body: for the tunnel POST, whose `Content-Length` is a placeholder.
/// `consumed` covers stray line endings and the head up to its blank line.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed<Head>, ParseError> {
    let skip = stray_line_endings(buf, limits)?;
    let rest = buf.get(skip..).unwrap_or_default();
    if rest.first() == Some(&b'$') {
        return Err(invalid(skip, "start line", EXPECTED_HEAD_GOT_FRAME));
    }
    let mut parser = HeadParser::default();
    match parser.advance(rest, limits) {
        Ok(Some(done)) => Ok(Parsed::Complete {
            item: done.head,
            consumed: skip + done.len,
        }),
        Ok(None) => Ok(Parsed::Incomplete),
        Err(e) => Err(e.shifted(to_u64(skip))),
    }
}

const EXPECTED_HEAD_GOT_FRAME: &str =
    "expected a request or response head, found a '$' interleaved frame";

/// Stateful decoder for one direction of an RTSP connection.
///
/// Append received bytes with [`Decoder::extend_from_slice`] (or read straight into
/// [`Decoder::buffer_mut`]), then call [`Decoder::next_item`] until it returns
/// `Ok(None)`. After an error the stream cannot be resynchronised: every later call
/// returns the same error.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    limits: Limits,
    /// Stream offset of `buf[0]`.
    offset: u64,
    head: HeadParser,
    /// A parsed head waiting for `usize` body bytes.
    pending: Option<(Head, usize)>,
    error: Option<ParseError>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new(Limits::default())
    }
}

impl Decoder {
    /// An empty decoder at stream offset 0.
    pub fn new(limits: Limits) -> Decoder {
        Decoder::starting_at(limits, 0)
    }

    /// An empty decoder whose first byte is at `stream_offset`, e.g. RTSP bytes that
    /// follow an HTTP head on the same connection.
    pub fn starting_at(limits: Limits, stream_offset: u64) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            limits,
            offset: stream_offset,
            head: HeadParser::default(),
            pending: None,
            error: None,
        }
    }

    /// Appends received bytes.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The receive buffer, for reading into it directly (e.g. `read_buf`). Only append:
    /// changing bytes already buffered makes the decoder misparse (it never panics).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet returned as items.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the next byte not yet consumed.
    pub fn stream_offset(&self) -> u64 {
        self.offset
    }

    /// The next complete item, `Ok(None)` when more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<Item>, ParseError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let r = self.next_item_inner();
        if let Err(e) = &r {
            self.error = Some(e.clone());
        }
        r
    }

    /// The next message head without its body (see [`parse_head`]); the bytes after it
    /// stay buffered, e.g. for [`Decoder::take_buffered`].
    pub fn next_head(&mut self) -> Result<Option<Head>, ParseError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let r = self.next_head_inner();
        if let Err(e) = &r {
            self.error = Some(e.clone());
        }
        r
    }

    /// Takes every buffered byte not yet consumed (e.g. the start of a tunnel POST body
    /// that arrived with its head), advancing the stream offset past them. Any item
    /// parsed only in part is dropped.
    pub fn take_buffered(&mut self) -> BytesMut {
        self.head = HeadParser::default();
        self.pending = None;
        self.offset = self.offset.saturating_add(to_u64(self.buf.len()));
        self.buf.split()
    }

    fn next_item_inner(&mut self) -> Result<Option<Item>, ParseError> {
        if self.pending.is_none() {
            match self.start_item()? {
                Start::Frame(frame) => return Ok(Some(Item::Frame(frame))),
                Start::NeedMore => return Ok(None),
                Start::Head(done) => {
                    let body_len = done
                        .body_len(&self.limits)
                        .map_err(|e| e.shifted(self.offset))?;
                    self.consume(done.len);
                    self.pending = Some((done.head, body_len));
                }
            }
        }
        let Some((_, body_len)) = &self.pending else {
            return Ok(None);
        };
        let body_len = *body_len;
        if self.buf.len() < body_len {
            // Room for the whole body now, so the reads that follow do not reallocate.
            self.buf.reserve(body_len - self.buf.len());
            return Ok(None);
        }
        let body = self.buf.split_to(body_len).freeze();
        self.offset = self.offset.saturating_add(to_u64(body_len));
        Ok(self.pending.take().map(|(head, _)| head.with_body(body)))
    }

    fn next_head_inner(&mut self) -> Result<Option<Head>, ParseError> {
        if self.pending.is_some() {
            return Err(
                invalid(0, "decoder use", "next_head called while a body is pending")
                    .shifted(self.offset),
            );
        }
        self.skip_stray();
        if self.head.is_fresh() && self.buf.first() == Some(&b'$') {
            return Err(invalid(0, "start line", EXPECTED_HEAD_GOT_FRAME).shifted(self.offset));
        }
        match self.head.advance(&self.buf, &self.limits) {
            Ok(Some(done)) => {
                self.consume(done.len);
                Ok(Some(done.head))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.shifted(self.offset)),
        }
    }

    fn start_item(&mut self) -> Result<Start, ParseError> {
        if self.head.pos > self.buf.len() {
            // Someone removed buffered bytes through buffer_mut; start over.
            self.head = HeadParser::default();
        }
        if self.head.is_fresh() {
            self.skip_stray();
            if self.buf.first() == Some(&b'$') {
                let Some(len) = frame_payload_len(&self.buf) else {
                    return Ok(Start::NeedMore);
                };
                if self.buf.len() < 4 + len {
                    self.buf.reserve(4 + len - self.buf.len());
                    return Ok(Start::NeedMore);
                }
                let header = self.buf.split_to(4);
                let payload = self.buf.split_to(len).freeze();
                let frame = make_frame(header.get(1).copied().unwrap_or_default(), payload)
                    .map_err(|e| e.shifted(self.offset))?;
                self.offset = self.offset.saturating_add(to_u64(4 + len));
                return Ok(Start::Frame(frame));
            }
        }
        match self.head.advance(&self.buf, &self.limits) {
            Ok(Some(done)) => Ok(Start::Head(done)),
            Ok(None) => Ok(Start::NeedMore),
            Err(e) => Err(e.shifted(self.offset)),
        }
    }

    fn skip_stray(&mut self) {
        if !self.head.is_fresh() {
            return;
        }
        let n = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.consume(n);
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        let _ = self.buf.split_to(n);
        self.offset = self.offset.saturating_add(to_u64(n));
    }
}

enum Start {
    Frame(InterleavedFrame),
    Head(DoneHead),
    NeedMore,
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn invalid(offset: usize, context: &'static str, reason: &'static str) -> ParseError {
    ParseError::Invalid {
        offset: to_u64(offset),
        context,
        reason,
    }
}

fn too_large(what: &'static str, limit: usize, offset: usize) -> ParseError {
    ParseError::TooLarge {
        what,
        limit,
        offset: to_u64(offset),
    }
}

fn stray_line_endings(buf: &[u8], limits: &Limits) -> Result<usize, ParseError> {
    let n = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if n == buf.len() && n > limits.max_head {
        return Err(too_large(
            "run of blank lines before a message",
            limits.max_head,
            limits.max_head,
        ));
    }
    Ok(n)
}

/// Payload length of a `$` frame whose 4-byte header is complete.
fn frame_payload_len(buf: &[u8]) -> Option<usize> {
    match buf.get(..4)? {
        [_, _, hi, lo] => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

fn make_frame(channel: u8, payload: Bytes) -> Result<InterleavedFrame, ParseError> {
    // Cannot fail: the payload length came from a u16.
    InterleavedFrame::new(channel, payload)
        .map_err(|_| invalid(0, "interleaved frame", "payload longer than 65535 bytes"))
}

/// Longest method token we accept; far above any registered or seen method, and short
/// enough that binary garbage is recognised quickly.
const MAX_METHOD_LEN: usize = 32;

/// RFC 7230 `tchar` (RFC 2326 §15.1 `token` is the same set).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_spaces(line: &[u8], from: usize) -> usize {
    from + line
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| b == b' ')
        .count()
}

fn skip_ws(line: &[u8], from: usize) -> usize {
    from + line
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| is_ws(b))
        .count()
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let end = s.len() - s.iter().rev().take_while(|&&b| is_ws(b)).count();
    s.get(..end).unwrap_or_default()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A parsed head plus where its fields were, for `Content-Length` checks.
#[derive(Debug)]
struct DoneHead {
    head: Head,
    /// Head length in bytes, blank line included.
    len: usize,
    /// Values and value offsets of every `Content-Length`, in order.
    content_lengths: Vec<(String, usize)>,
}

impl DoneHead {
    /// The body length `Content-Length` demands (0 when absent).
    fn body_len(&self, limits: &Limits) -> Result<usize, ParseError> {
        const CTX: &str = "Content-Length header";
        let mut agreed: Option<u64> = None;
        for (value, offset) in &self.content_lengths {
            let v = value.as_bytes();
            let n = match parse_decimal(v) {
                Some(n) => n,
                None if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => {
                    return Err(too_large("body (Content-Length)", limits.max_body, *offset));
                }
                None => return Err(invalid(*offset, CTX, "value must be a decimal byte count")),
            };
            match agreed {
                Some(prev) if prev != n => {
                    return Err(invalid(
                        *offset,
                        CTX,
                        "repeated Content-Length disagrees with the first one",
                    ));
                }
                _ => agreed = Some(n),
            }
        }
        let n = agreed.unwrap_or(0);
        match usize::try_from(n) {
            Ok(n) if n <= limits.max_body => Ok(n),
            _ => {
                let offset = self.content_lengths.first().map_or(0, |(_, o)| *o);
                Err(too_large("body (Content-Length)", limits.max_body, offset))
            }
        }
    }
}

/// First line of a message, owned.
#[derive(Debug)]
enum StartLine {
    Request {
        method: Method,
        uri: String,
        version: Version,
    },
    Response {
        version: Version,
        status: StatusCode,
        reason: String,
    },
}

/// Resumable line-by-line head parser: each call examines only bytes it has not seen,
/// validates every line as soon as it is complete, and checks the start line's first
/// token byte by byte so garbage is rejected early.
#[derive(Debug, Default)]
struct HeadParser {
    /// Next byte to examine, relative to the message start.
    pos: usize,
    line_start: usize,
    /// Start line: a space has been seen (the first token is complete).
    first_sp: bool,
    /// Start line: the first token has a '/' (so it is a version).
    slash: bool,
    start: Option<StartLine>,
    fields: Vec<(String, String, usize)>,
}

impl HeadParser {
    fn is_fresh(&self) -> bool {
        self.pos == 0
    }

    /// Continues over `buf` (the bytes of this message so far, from its first byte).
    /// Returns the finished head and resets, or `None` when more bytes are needed.
    fn advance(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<DoneHead>, ParseError> {
        let mut i = self.pos;
        while let Some(&b) = buf.get(i) {
            if i >= limits.max_head {
                return Err(too_large("message head", limits.max_head, limits.max_head));
            }
            if b == b'\n' {
                let raw = buf.get(self.line_start..i).unwrap_or_default();
                let line = raw.strip_suffix(b"\r").unwrap_or(raw);
                if line.len() > limits.max_line {
                    return Err(too_large("line", limits.max_line, self.line_start));
                }
                let line_start = self.line_start;
                self.line_start = i + 1;
                if self.start.is_none() {
                    let start =
                        parse_start_line(line).map_err(|e| e.shifted(to_u64(line_start)))?;
                    self.start = Some(start);
                } else if line.is_empty() {
                    let done = self.finish(i + 1);
                    return Ok(done);
                } else {
                    self.header_line(line, line_start, limits)?;
                }
                i += 1;
            } else if self.start.is_some() {
                // A header line is validated once whole; until its LF its bytes only
                // count towards the size limits, so jump to the LF (or the end of what
                // has arrived). The first byte past either limit fails as the
                // byte-by-byte walk of the start line would: the head limit first.
                let end = buf
                    .get(i..)
                    .and_then(|rest| memchr::memchr(b'\n', rest))
                    .map_or(buf.len(), |p| i + p);
                // Allow one extra byte for a CR that the line ending will strip.
                let first_over = limits
                    .max_head
                    .min(self.line_start.saturating_add(limits.max_line + 1));
                if first_over < end {
                    return Err(if first_over >= limits.max_head {
                        too_large("message head", limits.max_head, limits.max_head)
                    } else {
                        too_large("line", limits.max_line, self.line_start)
                    });
                }
                i = end;
            } else {
                // Allow one extra byte for a CR that the line ending will strip.
                if i - self.line_start > limits.max_line {
                    return Err(too_large("line", limits.max_line, self.line_start));
                }
                self.check_start_byte(buf, i, b)?;
                i += 1;
            }
        }
        self.pos = buf.len();
        Ok(None)
    }

    /// Early rejection on the start line, before its end arrives.
    fn check_start_byte(&mut self, buf: &[u8], i: usize, b: u8) -> Result<(), ParseError> {
        const CTX: &str = "start line";
        if self.first_sp {
            if is_ctl(b) && b != b'\t' && b != b'\r' {
                return Err(invalid(i, CTX, "control character in the start line"));
            }
            return Ok(());
        }
        let token_len = i - self.line_start;
        if b == b' ' {
            if token_len == 0 {
                return Err(invalid(i, CTX, "line starts with a space"));
            }
            self.first_sp = true;
        } else if token_len >= MAX_METHOD_LEN {
            return Err(invalid(
                i,
                CTX,
                "first word is longer than any method or protocol version",
            ));
        } else if b == b'\r' {
            // The line may end here; the whole-line check judges it.
        } else if b == b'/' {
            let token = buf.get(self.line_start..i).unwrap_or_default();
            if self.slash || (token != b"RTSP" && token != b"HTTP") {
                return Err(invalid(
                    i,
                    CTX,
                    "'/' may only follow RTSP or HTTP in a protocol version",
                ));
            }
            self.slash = true;
        } else if self.slash {
            if !(b.is_ascii_digit() || b == b'.') {
                return Err(invalid(i, CTX, "protocol version must be digits and a dot"));
            }
        } else if !is_tchar(b) {
            return Err(invalid(
                i,
                CTX,
                "expected a method name, a protocol version or a '$' frame",
            ));
        }
        Ok(())
    }

    fn header_line(
        &mut self,
        line: &[u8],
        line_start: usize,
        limits: &Limits,
    ) -> Result<(), ParseError> {
        match parse_header_line(line).map_err(|e| e.shifted(to_u64(line_start)))? {
            HeaderLine::Continuation(value) => {
                let Some((_, prev, _)) = self.fields.last_mut() else {
                    return Err(invalid(
                        line_start,
                        "header line",
                        "continuation line (starting with a space) with no header to continue",
                    ));
                };
                // obs-fold: the line break and leading whitespace become one space.
                if !value.is_empty() {
                    if !prev.is_empty() {
                        prev.push(' ');
                    }
                    prev.push_str(&String::from_utf8_lossy(value));
                }
            }
            HeaderLine::Field {
                name,
                value,
                value_start,
            } => {
                if self.fields.len() >= limits.max_headers {
                    return Err(too_large("header count", limits.max_headers, line_start));
                }
                self.fields
                    .push((lossy(name), lossy(value), line_start + value_start));
            }
        }
        Ok(())
    }

    fn finish(&mut self, len: usize) -> Option<DoneHead> {
        let parser = std::mem::take(self);
        let start = parser.start?;
        let mut headers = Headers::new();
        let mut content_lengths = Vec::new();
        for (name, value, offset) in parser.fields {
            if name.eq_ignore_ascii_case("Content-Length") {
                content_lengths.push((value.clone(), offset));
            }
            headers.append(name, value);
        }
        let head = match start {
            StartLine::Request {
                method,
                uri,
                version,
            } => Head::Request(Request {
                method,
                uri,
                version,
                headers,
                body: Bytes::new(),
            }),
            StartLine::Response {
                version,
                status,
                reason,
            } => Head::Response(Response {
                version,
                status,
                reason,
                headers,
                body: Bytes::new(),
            }),
        };
        Some(DoneHead {
            head,
            len,
            content_lengths,
        })
    }
}

const BAD_VERSION: &str =
    "unsupported protocol version (expected RTSP/1.0, RTSP/2.0, HTTP/1.0 or HTTP/1.1)";

/// Parses a complete start line (without its line ending). Offsets are line-relative.
fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    if let Some(i) = line.iter().position(|&b| is_ctl(b) && b != b'\t') {
        return Err(invalid(
            i,
            "start line",
            "control character in the start line",
        ));
    }
    if line.starts_with(b"RTSP/") || line.starts_with(b"HTTP/") {
        parse_status_line(line)
    } else {
        parse_request_line(line)
    }
}

fn parse_status_line(line: &[u8]) -> Result<StartLine, ParseError> {
    const CTX: &str = "status line";
    let sp = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let version = line
        .get(..sp)
        .and_then(Version::from_bytes)
        .ok_or_else(|| invalid(0, CTX, BAD_VERSION))?;
    let code_start = skip_spaces(line, sp);
    let rest = line.get(code_start..).unwrap_or_default();
    let ndigits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let code = match rest.get(..ndigits) {
        Some(&[a, b, c]) if ndigits == 3 => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => {
            return Err(invalid(
                code_start,
                CTX,
                "status code must be exactly three digits",
            ));
        }
    };
    let status = StatusCode::from_u16(code)
        .ok_or_else(|| invalid(code_start, CTX, "status code must be between 100 and 599"))?;
    let after = code_start + 3;
    let reason = match line.get(after) {
        None => &[][..],
        Some(b' ') => trim_end_ws(line.get(skip_spaces(line, after)..).unwrap_or_default()),
        Some(_) => {
            return Err(invalid(
                after,
                CTX,
                "expected a space after the status code",
            ));
        }
    };
    Ok(StartLine::Response {
        version,
        status,
        reason: lossy(reason),
    })
}

fn parse_request_line(line: &[u8]) -> Result<StartLine, ParseError> {
    const CTX: &str = "request line";
    let m_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let method = line.get(..m_end).unwrap_or_default();
    if method.is_empty() {
        return Err(invalid(0, CTX, "empty method"));
    }
    if let Some(i) = method.iter().position(|&b| !is_tchar(b)) {
        return Err(invalid(
            i,
            CTX,
            "method must be a token (letters, digits, _ -)",
        ));
    }
    if method.len() > MAX_METHOD_LEN {
        return Err(invalid(MAX_METHOD_LEN, CTX, "method name is too long"));
    }
    if m_end == line.len() {
        return Err(invalid(m_end, CTX, "request line has no URI and version"));
    }
    let u_start = skip_spaces(line, m_end);
    let tail = line.get(u_start..).unwrap_or_default();
    let u_len = tail.iter().position(|&b| b == b' ').unwrap_or(tail.len());
    let uri = tail.get(..u_len).unwrap_or_default();
    if uri.is_empty() {
        return Err(invalid(u_start, CTX, "missing request URI"));
    }
    if let Some(i) = uri.iter().position(|&b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            u_start + i,
            CTX,
            "request URI contains a control character",
        ));
    }
    let uri = std::str::from_utf8(uri)
        .map_err(|e| invalid(u_start + e.valid_up_to(), CTX, "request URI is not UTF-8"))?;
    let v_start = skip_spaces(line, u_start + u_len);
    let version = trim_end_ws(line.get(v_start..).unwrap_or_default());
    if version.is_empty() {
        return Err(invalid(
            v_start,
            CTX,
            "request line has no protocol version",
        ));
    }
    let version = Version::from_bytes(version).ok_or_else(|| invalid(v_start, CTX, BAD_VERSION))?;
    let method = std::str::from_utf8(method)
        .map_err(|_| invalid(0, CTX, "method must be a token (letters, digits, _ -)"))?;
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri: uri.to_owned(),
        version,
    })
}

enum HeaderLine<'a> {
    Field {
        name: &'a [u8],
        value: &'a [u8],
        /// Line-relative offset of the value.
        value_start: usize,
    },
    /// obs-fold line (RFC 7230 §3.2.4): value to append, trimmed.
    Continuation(&'a [u8]),
}

/// Parses one non-empty header line (without its line ending). Offsets are line-relative.
fn parse_header_line(line: &[u8]) -> Result<HeaderLine<'_>, ParseError> {
    const CTX: &str = "header line";
    let check_value = |value: &[u8], at: usize| -> Result<(), ParseError> {
        match value.iter().position(|&b| is_ctl(b) && b != b'\t') {
            Some(i) => Err(invalid(at + i, CTX, "control character in a header value")),
            None => Ok(()),
        }
    };
    if line.first().copied().is_some_and(is_ws) {
        let start = skip_ws(line, 0);
        let value = trim_end_ws(line.get(start..).unwrap_or_default());
        check_value(value, start)?;
        return Ok(HeaderLine::Continuation(value));
    }
    let name_end = line
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(line.len());
    match line.get(name_end) {
        None => return Err(invalid(name_end, CTX, "header line has no ':'")),
        Some(&b) if b == b':' || is_ws(b) => {}
        Some(&b) if is_ctl(b) => {
            return Err(invalid(name_end, CTX, "control character in a header name"));
        }
        Some(_) => {
            return Err(invalid(
                name_end,
                CTX,
                "header name must be a token (no spaces, quotes or separators)",
            ));
        }
    }
    if name_end == 0 {
        return Err(invalid(0, CTX, "empty header name"));
    }
    let colon = skip_ws(line, name_end);
    if line.get(colon) != Some(&b':') {
        return Err(invalid(colon, CTX, "header line has no ':' after the name"));
    }
    let value_start = skip_ws(line, colon + 1);
    let value = trim_end_ws(line.get(value_start..).unwrap_or_default());
    check_value(value, value_start)?;
    Ok(HeaderLine::Field {
        name: line.get(..name_end).unwrap_or_default(),
        value,
        value_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What ffmpeg (libavformat 61) sends first.
    const FFMPEG_OPTIONS: &[u8] = b"OPTIONS rtsp://127.0.0.1:8554/test RTSP/1.0\r\n\
CSeq: 1\r\n\
User-Agent: Lavf61.7.100\r\n\
\r\n";

    /// ffmpeg's DESCRIBE: Accept first, then CSeq and User-Agent.
    const FFMPEG_DESCRIBE: &[u8] = b"DESCRIBE rtsp://127.0.0.1:8554/test RTSP/1.0\r\n\
Accept: application/sdp\r\n\
CSeq: 2\r\n\
User-Agent: Lavf61.7.100\r\n\
\r\n";

    /// gst-rtsp-server's OPTIONS reply.
    const GST_OPTIONS_REPLY: &[u8] = b"RTSP/1.0 200 OK\r\n\
CSeq: 1\r\n\
Public: OPTIONS, DESCRIBE, ANNOUNCE, GET_PARAMETER, PAUSE, PLAY, RECORD, SETUP, SET_PARAMETER, TEARDOWN\r\n\
Server: GStreamer RTSP server\r\n\
Date: Tue, 02 Jan 2024 10:00:00 GMT\r\n\
\r\n";

    const GST_SDP: &[u8] = b"v=0\r\n\
o=- 1188340656180883 1 IN IP4 127.0.0.1\r\n\
s=Session streamed with GStreamer\r\n\
i=rtsp-server\r\n\
t=0 0\r\n\
a=tool:GStreamer\r\n\
a=type:broadcast\r\n\
a=range:npt=now-\r\n\
a=control:rtsp://127.0.0.1:8554/test\r\n\
m=video 0 RTP/AVP 96\r\n\
c=IN IP4 0.0.0.0\r\n\
b=AS:2097\r\n\
a=rtpmap:96 H264/90000\r\n\
a=framerate:30\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=42c01f;sprop-parameter-sets=Z0LAH9kAUAW7ARAAAAMAEAAAAwPI8YMkgA==,aMuMsg==\r\n\
a=control:rtsp://127.0.0.1:8554/test/stream=0\r\n\
a=ts-refclk:local\r\n\
a=mediaclk:sender\r\n";

    /// gst-rtsp-server's DESCRIBE reply, head then `GST_SDP`.
    const GST_DESCRIBE_REPLY_HEAD: &[u8] = b"RTSP/1.0 200 OK\r\n\
CSeq: 2\r\n\
Content-Type: application/sdp\r\n\
Content-Base: rtsp://127.0.0.1:8554/test/\r\n\
Server: GStreamer RTSP server\r\n\
Date: Tue, 02 Jan 2024 10:00:00 GMT\r\n\
Content-Length: 494\r\n\
\r\n";

    const FFMPEG_SETUP: &[u8] = b"SETUP rtsp://127.0.0.1:8554/test/stream=0 RTSP/1.0\r\n\
Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\
CSeq: 3\r\n\
User-Agent: Lavf61.7.100\r\n\
\r\n";

    const GST_SETUP_REPLY: &[u8] = b"RTSP/1.0 200 OK\r\n\
CSeq: 3\r\n\
Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=5D3F1A2B;mode=\"PLAY\"\r\n\
Server: GStreamer RTSP server\r\n\
Session: OCjTzh7zQ1NhY5aD;timeout=60\r\n\
Date: Tue, 02 Jan 2024 10:00:00 GMT\r\n\
\r\n";

    /// Bare LF line endings (seen from some embedded cameras) and a body.
    const BARE_LF_GET_PARAMETER: &[u8] = b"GET_PARAMETER rtsp://127.0.0.1:8554/test/ RTSP/1.0\n\
CSeq: 5\n\
Content-Type: text/parameters\n\
Content-Length: 9\n\
Session: OCjTzh7zQ1NhY5aD\n\
\n\
position\n";

    /// obs-fold and a lower-case Content-Length.
    const FOLDED_REPLY: &[u8] = b"RTSP/1.0 200 OK\r\n\
CSeq: 5\r\n\
X-Long: part one\r\n\
\tpart two\r\n\
content-length: 4\r\n\
\r\n\
abcd";

    const RTP: &[u8] = &[
        b'$', 0, 0, 12, 0x80, 0x60, 0x12, 0x34, 0, 0, 0x0b, 0xb8, 0x5d, 0x3f, 0x1a, 0x2b,
    ];
    const RTCP: &[u8] = &[b'$', 1, 0, 8, 0x80, 0xc8, 0, 1, 0x5d, 0x3f, 0x1a, 0x2b];
    /// A payload that looks like text must stay a payload.
    const TEXTY_FRAME: &[u8] = b"$\x00\x00\x0cRTSP/1.0\r\n\r\n";

    fn gst_describe_reply() -> Vec<u8> {
        [GST_DESCRIBE_REPLY_HEAD, GST_SDP].concat()
    }

    fn mixed_stream() -> Vec<u8> {
        [
            FFMPEG_OPTIONS,
            GST_OPTIONS_REPLY,
            FFMPEG_DESCRIBE,
            &gst_describe_reply(),
            b"\r\n",
            FFMPEG_SETUP,
            GST_SETUP_REPLY,
            RTP,
            RTCP,
            b"$\x02\x00\x00",
            BARE_LF_GET_PARAMETER,
            TEXTY_FRAME,
            b"\n\r\n",
            FOLDED_REPLY,
            RTP,
        ]
        .concat()
    }

    fn decode_chunks<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
        limits: Limits,
    ) -> Result<Vec<Item>, ParseError> {
        let mut d = Decoder::new(limits);
        let mut items = Vec::new();
        for chunk in chunks {
            d.extend_from_slice(chunk);
            while let Some(item) = d.next_item()? {
                items.push(item);
            }
        }
        assert_eq!(
            d.buffered_len(),
            0,
            "bytes left over after a complete stream"
        );
        Ok(items)
    }

    fn parse_all(mut buf: &[u8], limits: &Limits) -> Result<Vec<Item>, ParseError> {
        let mut items = Vec::new();
        let mut base = 0u64;
        while !buf.is_empty() {
            match parse_item(buf, limits).map_err(|e| e.shifted(base))? {
                Parsed::Complete { item, consumed } => {
                    items.push(item);
                    buf = &buf[consumed..];
                    base += consumed as u64;
                }
                Parsed::Incomplete => panic!("trailing bytes {buf:?}"),
            }
        }
        Ok(items)
    }

    fn one(buf: &[u8]) -> Item {
        match parse_item(buf, &Limits::default()) {
            Ok(Parsed::Complete { item, consumed }) => {
                assert_eq!(consumed, buf.len());
                item
            }
            other => panic!("expected one complete item, got {other:?}"),
        }
    }

    fn err(buf: &[u8]) -> ParseError {
        err_with(buf, &Limits::default())
    }

    fn err_with(buf: &[u8], limits: &Limits) -> ParseError {
        let from_slice = parse_item(buf, limits).expect_err("parse_item must fail");
        // The decoder must agree, fed whole or byte by byte.
        let mut d = Decoder::new(*limits);
        d.extend_from_slice(buf);
        let whole = loop {
            match d.next_item() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("decoder accepted {buf:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(whole, from_slice);
        let mut d = Decoder::new(*limits);
        let mut bytewise = None;
        for &b in buf {
            d.extend_from_slice(&[b]);
            match d.next_item() {
                Ok(_) => {}
                Err(e) => {
                    bytewise = Some(e);
                    break;
                }
            }
        }
        assert_eq!(bytewise.as_ref(), Some(&from_slice));
        from_slice
    }

    fn invalid_at(offset: u64, context: &'static str, reason: &'static str) -> ParseError {
        ParseError::Invalid {
            offset,
            context,
            reason,
        }
    }

    fn request(item: Item) -> Request {
        match item {
            Item::Request(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn response(item: Item) -> Response {
        match item {
            Item::Response(r) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    fn header_list(h: &Headers) -> Vec<(&str, &str)> {
        h.iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect()
    }

    #[test]
    fn ffmpeg_describe() {
        let req = request(one(FFMPEG_DESCRIBE));
        assert_eq!(req.method, Method::Describe);
        assert_eq!(req.uri, "rtsp://127.0.0.1:8554/test");
        assert_eq!(req.version, Version::Rtsp1_0);
        assert_eq!(
            header_list(&req.headers),
            [
                ("Accept", "application/sdp"),
                ("CSeq", "2"),
                ("User-Agent", "Lavf61.7.100")
            ]
        );
        assert_eq!(req.cseq(), Some(2));
        assert!(req.body.is_empty());
        assert_eq!(&req.to_bytes()[..], FFMPEG_DESCRIBE);
    }

    #[test]
    fn gst_describe_reply_with_sdp_body() {
        let raw = gst_describe_reply();
        let resp = response(one(&raw));
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.reason, "OK");
        assert_eq!(resp.cseq(), Some(2));
        assert_eq!(resp.content_type(), Some("application/sdp"));
        assert_eq!(
            resp.headers.get("content-base"),
            Some("rtsp://127.0.0.1:8554/test/")
        );
        assert_eq!(&resp.body[..], GST_SDP);
        assert_eq!(&resp.to_bytes()[..], &raw[..]);
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let limits = Limits::default();
        for msg in [
            FFMPEG_OPTIONS,
            FFMPEG_DESCRIBE,
            GST_OPTIONS_REPLY,
            &gst_describe_reply(),
            GST_SETUP_REPLY,
            RTP,
            BARE_LF_GET_PARAMETER,
            FOLDED_REPLY,
        ] {
            for n in 0..msg.len() {
                assert_eq!(
                    parse_item(&msg[..n], &limits),
                    Ok(Parsed::Incomplete),
                    "prefix of {n} bytes"
                );
            }
        }
    }

    #[test]
    fn interleaved_frames() {
        match one(RTP) {
            Item::Frame(f) => {
                assert_eq!(f.channel(), 0);
                assert_eq!(&f.payload()[..], &RTP[4..]);
            }
            other => panic!("{other:?}"),
        }
        match one(TEXTY_FRAME) {
            Item::Frame(f) => assert_eq!(&f.payload()[..], b"RTSP/1.0\r\n\r\n"),
            other => panic!("{other:?}"),
        }
        match one(b"$\xff\x00\x00") {
            Item::Frame(f) => {
                assert_eq!(f.channel(), 255);
                assert!(f.payload().is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mixed_stream_decodes_to_the_expected_items() {
        let stream = mixed_stream();
        let items = decode_chunks([&stream[..]], Limits::default()).expect("valid stream");
        let kinds: String = items
            .iter()
            .map(|i| match i {
                Item::Request(_) => 'Q',
                Item::Response(_) => 'R',
                Item::Frame(_) => 'F',
            })
            .collect();
        assert_eq!(kinds, "QRQRQRFFFQFRF");
        let get_param = request(items[9].clone());
        assert_eq!(get_param.method, Method::GetParameter);
        assert_eq!(&get_param.body[..], b"position\n");
        assert_eq!(get_param.headers.get("session"), Some("OCjTzh7zQ1NhY5aD"));
        let folded = response(items[11].clone());
        assert_eq!(folded.headers.get("x-long"), Some("part one part two"));
        assert_eq!(&folded.body[..], b"abcd");
        assert_eq!(
            items,
            parse_all(&stream, &Limits::default()).expect("valid")
        );
    }

    #[test]
    fn every_two_way_split_and_byte_by_byte_give_the_same_items() {
        let stream = mixed_stream();
        let limits = Limits::default();
        let whole = decode_chunks([&stream[..]], limits).expect("valid");
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(
                decode_chunks([a, b], limits).expect("valid"),
                whole,
                "split at {split}"
            );
        }
        let bytewise = decode_chunks(stream.chunks(1), limits).expect("valid");
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn decoder_hands_out_payloads_without_copying() {
        let mut d = Decoder::default();
        d.extend_from_slice(&[RTP, &gst_describe_reply()].concat());
        let base = d.buffer_mut().as_ptr() as usize;
        let frame = match d.next_item() {
            Ok(Some(Item::Frame(f))) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(frame.payload().as_ptr() as usize, base + 4);
        let resp = response(d.next_item().expect("valid").expect("complete"));
        let body_at = RTP.len() + GST_DESCRIBE_REPLY_HEAD.len();
        assert_eq!(resp.body.as_ptr() as usize, base + body_at);
        assert_eq!(d.stream_offset(), (body_at + GST_SDP.len()) as u64);
        assert_eq!(d.next_item(), Ok(None));
    }

    #[test]
    fn tolerated_quirks() {
        // Runs of spaces, whitespace before the colon, no reason phrase, empty value.
        let resp = response(one(b"RTSP/1.0  454\r\nCSeq :  7 \r\nX-Empty:\r\n\r\n"));
        assert_eq!(resp.status, StatusCode::SESSION_NOT_FOUND);
        assert_eq!(resp.reason, "");
        assert_eq!(header_list(&resp.headers), [("CSeq", "7"), ("X-Empty", "")]);
        let req = request(one(b"PLAY   rtsp://h/s   RTSP/2.0 \r\n\r\n"));
        assert_eq!((req.method, req.uri.as_str()), (Method::Play, "rtsp://h/s"));
        assert_eq!(req.version, Version::Rtsp2_0);
        // Latin-1 in a header value and reason is decoded lossily instead of failing.
        let resp = response(one(b"RTSP/1.0 200 D\xe9j\xe0\r\nServer: Cam\xe9ra\r\n\r\n"));
        assert_eq!(resp.reason, "D\u{fffd}j\u{fffd}");
        assert_eq!(resp.headers.get("server"), Some("Cam\u{fffd}ra"));
        // A fold onto an empty value does not start with a space.
        let req = request(one(b"OPTIONS * RTSP/1.0\r\nX:\r\n  y\r\n \r\n\r\n"));
        assert_eq!(req.headers.get("x"), Some("y"));
        // Unknown methods are extensions; methods are case-sensitive.
        let req = request(one(b"play rtsp://h/s RTSP/1.0\r\n\r\n"));
        assert_eq!(req.method, Method::Extension("play".to_owned()));
        // Repeated Content-Length that agrees is fine.
        let req = request(one(
            b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 2\r\ncontent-length: 02\r\n\r\nhi",
        ));
        assert_eq!(&req.body[..], b"hi");
    }

    #[test]
    fn stray_line_endings_are_skipped_and_counted() {
        let buf = [&b"\r\n\n"[..], FFMPEG_OPTIONS].concat();
        match parse_item(&buf, &Limits::default()) {
            Ok(Parsed::Complete { consumed, .. }) => assert_eq!(consumed, buf.len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_item(b"\r\n\r\n", &Limits::default()),
            Ok(Parsed::Incomplete)
        );
        let limits = Limits {
            max_head: 8,
            ..Limits::default()
        };
        assert_eq!(
            parse_item(&[b'\n'; 9], &limits),
            Err(ParseError::TooLarge {
                what: "run of blank lines before a message",
                limit: 8,
                offset: 8,
            })
        );
        // The decoder drops them as they come, so they never accumulate.
        let mut d = Decoder::new(limits);
        for _ in 0..100 {
            d.extend_from_slice(b"\r\n");
            assert_eq!(d.next_item(), Ok(None));
        }
        assert_eq!((d.buffered_len(), d.stream_offset()), (0, 200));
    }

    #[test]
    fn garbage_is_rejected_at_the_first_wrong_byte() {
        assert_eq!(
            err(b"\x80\x60\x12\x34"),
            invalid_at(
                0,
                "start line",
                "expected a method name, a protocol version or a '$' frame"
            )
        );
        // An SDP body that a wrong Content-Length left in the stream: caught at '='
        // without waiting for the line end.
        let mut stream = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n".to_vec();
        stream.extend_from_slice(b"v=0\r\no=- 1 1 IN IP4 0.0.0.0");
        let mut d = Decoder::default();
        d.extend_from_slice(&stream[..30]);
        assert!(matches!(d.next_item(), Ok(Some(Item::Response(_)))));
        assert_eq!(
            d.next_item(),
            Err(invalid_at(
                29,
                "start line",
                "expected a method name, a protocol version or a '$' frame"
            ))
        );
        // Sticky: the stream cannot be resynchronised.
        d.extend_from_slice(FFMPEG_OPTIONS);
        assert_eq!(d.next_item().map_err(|e| e.offset()), Err(29));
        assert_eq!(
            err(b"OPTI\x01"),
            invalid_at(
                4,
                "start line",
                "expected a method name, a protocol version or a '$' frame"
            )
        );
        assert_eq!(
            err(b"RTSX/1.0 200 OK"),
            invalid_at(
                4,
                "start line",
                "'/' may only follow RTSP or HTTP in a protocol version"
            )
        );
        assert_eq!(
            err(b"RTSP/1x"),
            invalid_at(6, "start line", "protocol version must be digits and a dot")
        );
        assert_eq!(
            err(&[b'A'; 40]),
            invalid_at(
                32,
                "start line",
                "first word is longer than any method or protocol version"
            )
        );
        assert_eq!(
            err(b" OPTIONS"),
            invalid_at(0, "start line", "line starts with a space")
        );
    }

    #[test]
    fn start_line_errors_with_offsets() {
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\0\r\n\r\n"),
            invalid_at(18, "start line", "control character in the start line")
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/3.0\r\n\r\n"),
            invalid_at(10, "request line", BAD_VERSION)
        );
        assert_eq!(
            err(b"OPTIONS *\r\n\r\n"),
            invalid_at(9, "request line", "request line has no protocol version")
        );
        assert_eq!(
            err(b"OPTIONS\r\n\r\n"),
            invalid_at(7, "request line", "request line has no URI and version")
        );
        assert_eq!(
            err(b"GET /\xff RTSP/1.0\r\n\r\n"),
            invalid_at(5, "request line", "request URI is not UTF-8")
        );
        assert_eq!(
            err(b"GET /a\tb RTSP/1.0\r\n\r\n"),
            invalid_at(
                6,
                "request line",
                "request URI contains a control character"
            )
        );
        assert_eq!(
            err(b"RTSP/1.1 200 OK\r\n\r\n"),
            invalid_at(0, "status line", BAD_VERSION)
        );
        let three = "status code must be exactly three digits";
        assert_eq!(
            err(b"RTSP/1.0 20 OK\r\n\r\n"),
            invalid_at(9, "status line", three)
        );
        assert_eq!(
            err(b"RTSP/1.0 2000 OK\r\n\r\n"),
            invalid_at(9, "status line", three)
        );
        assert_eq!(
            err(b"RTSP/1.0\r\n\r\n"),
            invalid_at(8, "status line", three)
        );
        assert_eq!(
            err(b"RTSP/1.0 099 Low\r\n\r\n"),
            invalid_at(9, "status line", "status code must be between 100 and 599")
        );
        assert_eq!(
            err(b"RTSP/1.0 600 High\r\n\r\n"),
            invalid_at(9, "status line", "status code must be between 100 and 599")
        );
        assert_eq!(
            err(b"RTSP/1.0 200OK\r\n\r\n"),
            invalid_at(12, "status line", "expected a space after the status code")
        );
    }

    #[test]
    fn header_errors_with_offsets() {
        // "OPTIONS * RTSP/1.0\r\n" is 20 bytes.
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\nCS\0eq: 1\r\n\r\n"),
            invalid_at(22, "header line", "control character in a header name")
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n"),
            invalid_at(25, "header line", "header line has no ':' after the name")
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\nNoColonHere\r\n\r\n"),
            invalid_at(31, "header line", "header line has no ':'")
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\n: x\r\n\r\n"),
            invalid_at(20, "header line", "empty header name")
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\nX\"y: 1\r\n\r\n"),
            invalid_at(
                21,
                "header line",
                "header name must be a token (no spaces, quotes or separators)"
            )
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\nX: a\x01b\r\n\r\n"),
            invalid_at(24, "header line", "control character in a header value")
        );
        assert_eq!(
            err(b"OPTIONS * RTSP/1.0\r\n folded\r\n\r\n"),
            invalid_at(
                20,
                "header line",
                "continuation line (starting with a space) with no header to continue"
            )
        );
    }

    #[test]
    fn content_length_errors_with_offsets() {
        // "ANNOUNCE * RTSP/1.0\r\n" is 21 bytes; "Content-Length: " is 16.
        let ctx = "Content-Length header";
        assert_eq!(
            err(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 12a\r\n\r\n"),
            invalid_at(37, ctx, "value must be a decimal byte count")
        );
        assert_eq!(
            err(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: -1\r\n\r\n"),
            invalid_at(37, ctx, "value must be a decimal byte count")
        );
        assert_eq!(
            err(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"),
            invalid_at(
                56,
                ctx,
                "repeated Content-Length disagrees with the first one"
            )
        );
        assert_eq!(
            err(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            ParseError::TooLarge {
                what: "body (Content-Length)",
                limit: 1 << 20,
                offset: 37
            }
        );
        assert_eq!(
            err(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 1048577\r\n\r\n"),
            ParseError::TooLarge {
                what: "body (Content-Length)",
                limit: 1 << 20,
                offset: 37
            }
        );
    }

    #[test]
    fn limits_are_enforced_before_a_message_completes() {
        let limits = Limits {
            max_line: 16,
            max_head: 64,
            max_headers: 2,
            max_body: 8,
        };
        // 17-byte start line, no line end needed to notice.
        assert_eq!(
            err_with(b"OPTIONS * RTSP/1.0 ", &limits),
            ParseError::TooLarge {
                what: "line",
                limit: 16,
                offset: 0
            }
        );
        assert_eq!(
            err_with(b"PLAY * RTSP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &limits),
            ParseError::TooLarge {
                what: "header count",
                limit: 2,
                offset: 29
            }
        );
        // A header line past 16 bytes (the CR allowance taken), before its LF.
        assert_eq!(
            err_with(b"PLAY * RTSP/1.0\r\nX-Long: 0123456789", &limits),
            ParseError::TooLarge {
                what: "line",
                limit: 16,
                offset: 17
            }
        );
        // Its LF arrived: the line counts without its CR.
        assert_eq!(
            err_with(b"PLAY * RTSP/1.0\r\nX-Long: 012345678\r\n", &limits),
            ParseError::TooLarge {
                what: "line",
                limit: 16,
                offset: 17
            }
        );
        // A line within its own limit that crosses the head's: the head's error.
        assert_eq!(
            err_with(
                &[&b"PLAY * RTSP/1.0\r\n"[..], &[b'x'; 50]].concat(),
                &Limits {
                    max_line: 60,
                    ..limits
                }
            ),
            ParseError::TooLarge {
                what: "message head",
                limit: 64,
                offset: 64
            }
        );
        // 17 + 6 + 12 * 4 = 71 bytes, no blank line.
        let long_head = [&b"PLAY * RTSP/1.0\r\nA: 1\r\n"[..], &b" x\r\n".repeat(12)].concat();
        assert_eq!(
            err_with(&long_head, &limits),
            ParseError::TooLarge {
                what: "message head",
                limit: 64,
                offset: 64
            }
        );
        assert_eq!(
            err_with(
                b"PLAY * RTSP/1.0\r\nContent-Length: 9\r\n\r\n",
                &Limits {
                    max_line: 32,
                    ..limits
                }
            ),
            ParseError::TooLarge {
                what: "body (Content-Length)",
                limit: 8,
                offset: 33
            }
        );
    }

    #[test]
    fn parse_head_ignores_the_tunnel_post_content_length() {
        let post = b"POST /stream HTTP/1.0\r\n\
x-sessioncookie: 9a3f5e0c21d4b7a86e1f2c\r\n\
Content-Type: application/x-rtsp-tunnelled\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Content-Length: 32767\r\n\
Expires: Sun, 9 Jan 1972 00:00:00 GMT\r\n\
\r\n";
        let mut stream = post.to_vec();
        stream.extend_from_slice(b"T1BUSU9OUyAqIFJUU1AvMS4wDQpDU2VxOiAxDQoNCg==");
        match parse_head(&stream, &Limits::default()) {
            Ok(Parsed::Complete {
                item: Head::Request(req),
                consumed,
            }) => {
                assert_eq!(consumed, post.len());
                assert_eq!(req.method, Method::Post);
                assert_eq!(req.version, Version::Http1_0);
                assert_eq!(req.headers.get("content-length"), Some("32767"));
                assert!(req.body.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_head(&post[..40], &Limits::default()),
            Ok(Parsed::Incomplete)
        );
        let mut d = Decoder::default();
        d.extend_from_slice(&stream);
        let head = d.next_head().expect("valid").expect("complete");
        assert_eq!(
            head.headers().get("x-sessioncookie"),
            Some("9a3f5e0c21d4b7a86e1f2c")
        );
        assert_eq!(d.stream_offset(), post.len() as u64);
        let rest = d.take_buffered();
        assert_eq!(&rest[..], &stream[post.len()..]);
        assert_eq!(d.stream_offset(), stream.len() as u64);
        assert_eq!(
            parse_head(b"$\x00\x00\x00", &Limits::default()),
            Err(invalid_at(0, "start line", EXPECTED_HEAD_GOT_FRAME))
        );
    }

    #[test]
    fn decoder_offsets_are_absolute() {
        let mut d = Decoder::starting_at(Limits::default(), 1000);
        d.extend_from_slice(RTP);
        d.extend_from_slice(b"OPTIONS * RTSP/9.9\r\n");
        assert!(matches!(d.next_item(), Ok(Some(Item::Frame(_)))));
        assert_eq!(
            d.next_item(),
            Err(invalid_at(1000 + 16 + 10, "request line", BAD_VERSION))
        );
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            invalid_at(9, "status line", "status code must be exactly three digits").to_string(),
            "invalid status line at byte 9: status code must be exactly three digits"
        );
        assert_eq!(
            ParseError::TooLarge {
                what: "line",
                limit: 8192,
                offset: 40
            }
            .to_string(),
            "line exceeds the limit of 8192 at byte 40"
        );
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9_-]{0,15}"
    }

    fn field_value() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[!-~]([ -~]{0,30}[!-~])?"]
    }

    fn headers() -> impl Strategy<Value = Headers> {
        proptest::collection::vec((token(), field_value()), 0..6).prop_map(|fields| {
            let mut h = Headers::new();
            for (n, v) in fields {
                if !n.eq_ignore_ascii_case("content-length") {
                    h.append(n, v);
                }
            }
            h
        })
    }

    fn version() -> impl Strategy<Value = Version> {
        prop_oneof![
            Just(Version::Rtsp1_0),
            Just(Version::Rtsp2_0),
            Just(Version::Http1_0),
            Just(Version::Http1_1)
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }

    fn arb_item() -> impl Strategy<Value = Item> {
        let method = "[A-Z][A-Z_]{0,14}".prop_map(|t| Method::from_token(&t));
        let req = (method, "[!-~]{1,40}", version(), headers(), body()).prop_map(
            |(method, uri, version, headers, body)| {
                let mut r = Request::new(method, uri, version);
                r.headers = headers;
                if !body.is_empty() {
                    r.set_body("application/octet-stream", body);
                }
                Item::Request(r)
            },
        );
        let resp = (
            100u16..=599,
            prop_oneof![Just(String::new()), "[!-~]([ -~]{0,20}[!-~])?"],
            version(),
            headers(),
            body(),
        )
            .prop_map(|(code, reason, version, headers, body)| {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                let mut r = Response::new(version, status);
                r.reason = reason;
                r.headers = headers;
                if !body.is_empty() {
                    r.set_body("text/plain", body);
                }
                Item::Response(r)
            });
        let frame =
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(ch, p)| {
                match InterleavedFrame::new(ch, Bytes::from(p)) {
                    Ok(f) => Item::Frame(f),
                    Err(e) => panic!("{e}"),
                }
            });
        prop_oneof![req, resp, frame]
    }

    proptest! {
        #[test]
        fn valid_items_round_trip(item in arb_item()) {
            let bytes = item.to_bytes();
            prop_assert_eq!(
                parse_item(&bytes, &Limits::default()),
                Ok(Parsed::Complete { item: item.clone(), consumed: bytes.len() })
            );
            let mut d = Decoder::default();
            d.extend_from_slice(&bytes);
            prop_assert_eq!(d.next_item(), Ok(Some(item)));
            prop_assert_eq!(d.buffered_len(), 0);
        }

        #[test]
        fn streams_survive_arbitrary_chunking(
            items in proptest::collection::vec(arb_item(), 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut stream = Vec::new();
            for item in &items {
                item.write_to(&mut stream);
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([stream.len()]) {
                chunks.push(&stream[prev..c]);
                prev = c;
            }
            prop_assert_eq!(&decode_chunks(chunks, Limits::default()).expect("valid"), &items);
            prop_assert_eq!(&parse_all(&stream, &Limits::default()).expect("valid"), &items);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_never_stall(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            textual in any::<bool>(),
        ) {
            let limits = Limits { max_line: 64, max_head: 256, max_headers: 8, max_body: 256 };
            let mut d = Decoder::new(limits);
            let mut all = Vec::new();
            for mut chunk in chunks {
                if textual {
                    // Bias towards bytes that get past the first-byte check.
                    for b in &mut chunk {
                        *b = b"OPTIONS * RTSP/1.0\r\nContent-Length: 9\r\n:$ \t"[usize::from(*b) % 43];
                    }
                }
                all.extend_from_slice(&chunk);
                d.extend_from_slice(&chunk);
                let mut failed = false;
                loop {
                    match d.next_item() {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(_) => { failed = true; break; }
                    }
                }
                if failed {
                    break;
                }
                // Whatever is still buffered must be something a limit allows.
                let bound = limits.max_head.max(limits.max_body).max(4 + usize::from(u16::MAX));
                prop_assert!(d.buffered_len() <= bound);
            }
            let _ = parse_item(&all, &limits);
            let _ = parse_head(&all, &limits);
        }
    }
}
