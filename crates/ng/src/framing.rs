//! `ng` message framing: `<cookie> SP <dictionary>` in one UDP datagram, or back to
//! back on a TCP stream (rtpengine's TCP-ng), and the reply with the same cookie.
//!
//! What it does: splits the cookie off, picks the encoding from the dictionary's first
//! byte (`d` bencode, `{` JSON), decodes, and frames replies in the request's encoding.
//! On TCP, where messages have no length prefix, a bencode message ends where its
//! dictionary ends, exactly as rtpengine finds boundaries ([`super::bencode::DictScanner`]),
//! and a JSON message where its top-level object ends (string- and escape-aware
//! bracket counting, [`super::json::ObjectScanner`]); [`StreamFramer`] says `Incomplete`
//! until the whole dictionary has arrived, resuming its scan on each read and decoding
//! once at the end, so a peer trickling bytes cannot make it redo work.
//!
//! What it does not: interpret the dictionary ([`super::request`]) or cache replies
//! ([`super::cookie_cache`]). rtpengine's TCP-ng reads bencode only; JSON on TCP is
//! ours, so that both encodings work on both transports.
//!
//! Errors follow rtpengine (`daemon/control_ng.c`): a datagram without a cookie is
//! dropped without reply (there is nothing to address the reply with); an unknown
//! first byte gets `Invalid NG data format`; undecodable bencode gets `Could not decode
//! bencode dictionary`, undecodable JSON `Failed to parse JSON document`. On TCP a
//! bencode error, and a JSON error that hides where the object ends, break the stream
//! (error reply, then close); a JSON object whose end is clear but whose content is
//! refused (a float, `null`, too many values) gets the error reply and the connection
//! goes on.

use super::bencode::{self, DecodeError, DictScanner, Limits, Value};
use super::json::{self, ObjectScanner};

/// Longest cookie accepted. Kamailio's and OpenSIPS's are about 30 bytes.
pub const MAX_COOKIE_LEN: usize = 256;

/// The encoding of a message; the reply uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Bencode (`d...e`).
    Bencode,
    /// JSON (`{...}`).
    Json,
}

impl Encoding {
    /// Encodes a dictionary (a reply, or a client's request).
    pub fn encode(self, v: &Value) -> Vec<u8> {
        match self {
            Self::Bencode => v.encode(),
            Self::Json => json::encode(v),
        }
    }
}

/// A message split off its frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// The cookie, echoed in the reply.
    pub cookie: &'a [u8],
    /// The encoding the reply must use.
    pub encoding: Encoding,
    /// The decoded dictionary, or why it could not be decoded (the reply still goes
    /// out, as an error).
    pub body: Result<Value, FrameError>,
}

/// Why a message body is unusable; [`FrameError::reason`] is the `error-reason` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first byte is neither `d` nor `{`.
    UnknownFormat,
    /// The bencode is malformed.
    Bencode(DecodeError),
    /// The JSON is malformed.
    Json(DecodeError),
    /// The message decoded to something other than a dictionary.
    NotADictionary,
}

impl FrameError {
    /// The `error-reason` rtpengine sends for this problem.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownFormat => "Invalid NG data format",
            Self::Bencode(_) | Self::NotADictionary => "Could not decode bencode dictionary",
            Self::Json(_) => "Failed to parse JSON document",
        }
    }
}

/// Splits a UDP datagram. `None` means "drop silently": no space, an empty cookie
/// (leading space) or an over-long cookie.
pub fn parse_datagram<'a>(datagram: &'a [u8], limits: &Limits) -> Option<Message<'a>> {
    let space = datagram
        .iter()
        .take(MAX_COOKIE_LEN + 1)
        .position(|b| *b == b' ')?;
    if space == 0 {
        return None;
    }
    let (cookie, rest) = (datagram.get(..space)?, datagram.get(space + 1..)?);
    let (encoding, body) = match rest.first() {
        Some(b'd') => (
            Encoding::Bencode,
            bencode::decode_exact(rest, limits).map_err(FrameError::Bencode),
        ),
        Some(b'{') => (
            Encoding::Json,
            json::decode(rest, limits).map_err(FrameError::Json),
        ),
        _ => (Encoding::Bencode, Err(FrameError::UnknownFormat)),
    };
    let body = body.and_then(|v| match v {
        Value::Dict(_) => Ok(v),
        _ => Err(FrameError::NotADictionary),
    });
    Some(Message {
        cookie,
        encoding,
        body,
    })
}

/// Frames a reply: the cookie, a space, the encoded dictionary.
pub fn frame_reply(cookie: &[u8], encoding: Encoding, reply: &Value) -> Vec<u8> {
    frame(cookie, encoding, reply)
}

/// Frames a message either way: requests and replies share the frame (a client's
/// side is [`crate::client::frame_request`]).
pub(crate) fn frame(cookie: &[u8], encoding: Encoding, dict: &Value) -> Vec<u8> {
    let body = encoding.encode(dict);
    let mut out = Vec::with_capacity(cookie.len() + 1 + body.len());
    out.extend_from_slice(cookie);
    out.push(b' ');
    out.extend_from_slice(&body);
    out
}

/// What [`next_stream_message`] found at the start of a TCP buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// More bytes are needed.
    Incomplete,
    /// A whole message of `len` bytes: the cookie and its decoded dictionary.
    Message {
        /// Bytes to remove from the buffer.
        len: usize,
        /// The cookie.
        cookie: Vec<u8>,
        /// The encoding the reply must use.
        encoding: Encoding,
        /// The dictionary, or why it could not be decoded. Only JSON gets here with an
        /// error: its frame ended cleanly, so the reply is an error and the connection
        /// goes on with the next message.
        body: Result<Value, FrameError>,
    },
    /// The stream cannot be resynchronised: reply with `reason` (if a cookie was
    /// read) and close the connection.
    Broken {
        /// The cookie, if one was read.
        cookie: Option<Vec<u8>>,
        /// The encoding of the error reply.
        encoding: Encoding,
        /// The `error-reason` to send.
        reason: &'static str,
        /// Where in the buffer it went wrong.
        offset: usize,
    },
}

/// Finds the first TCP-ng message in `buf`; see [`StreamFramer::next`]. Stateless, so
/// the message is rescanned from its start on every call: a connection should keep a
/// [`StreamFramer`] instead.
pub fn next_stream_message(buf: &[u8], limits: &Limits) -> StreamItem {
    StreamFramer::new(limits).next(buf)
}

/// Cuts one TCP-ng connection's byte stream into messages, `cookie SP dictionary`
/// back to back, bencode or JSON.
///
/// A bencode message ends where its dictionary ends ([`DictScanner`]), as rtpengine
/// finds boundaries; a JSON message where its top-level object ends
/// ([`ObjectScanner`]). The scan resumes where it stopped when more bytes arrive, and
/// the message is decoded once, when its end has been found, so a message trickling in
/// one byte per read costs its length, not its length squared. Whitespace between
/// messages is likewise skipped once.
#[derive(Debug, Clone)]
pub struct StreamFramer {
    limits: Limits,
    /// Leading whitespace already skipped at the front of the buffer.
    skipped: usize,
    /// The scan of the message at the front of the buffer: where its dictionary
    /// starts in the buffer, and how far the scanner got.
    pending: Option<(usize, Pending)>,
}

/// A scan in progress, by encoding.
#[derive(Debug, Clone)]
enum Pending {
    Bencode(DictScanner),
    Json(ObjectScanner),
}

impl StreamFramer {
    /// A framer for a new connection.
    pub fn new(limits: &Limits) -> Self {
        Self {
            limits: *limits,
            skipped: 0,
            pending: None,
        }
    }

    /// Finds the first message in `buf`. Leading whitespace between messages is
    /// skipped (and counted in `len`), as some clients end messages with a newline.
    ///
    /// Between calls, `buf` may only grow at its end, until a message is returned and
    /// the caller removes its `len` bytes from the front.
    pub fn next(&mut self, buf: &[u8]) -> StreamItem {
        let item = self.find(buf);
        if !matches!(item, StreamItem::Incomplete) {
            // The next call starts on the next message (or on a closed stream).
            self.skipped = 0;
            self.pending = None;
        }
        item
    }

    fn find(&mut self, buf: &[u8]) -> StreamItem {
        if buf.len() < self.skipped {
            // The caller broke the contract (the buffer shrank): start over.
            self.skipped = 0;
            self.pending = None;
        }
        let unseen = buf.get(self.skipped..).unwrap_or_default();
        let blanks = unseen
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(unseen.len());
        #[cfg(test)]
        bencode::work::add(blanks);
        let skip = self.skipped + blanks;
        self.skipped = skip;
        let rest = buf.get(skip..).unwrap_or_default();
        let Some(space) = rest
            .iter()
            .take(MAX_COOKIE_LEN + 1)
            .position(|b| *b == b' ')
        else {
            return if rest.len() > MAX_COOKIE_LEN {
                StreamItem::Broken {
                    cookie: None,
                    encoding: Encoding::Bencode,
                    reason: "Invalid NG data (no cookie)",
                    offset: skip,
                }
            } else {
                StreamItem::Incomplete
            };
        };
        let cookie = rest.get(..space).unwrap_or_default();
        let dict_at = skip + space + 1;
        let body = buf.get(dict_at..).unwrap_or_default();
        let encoding = match body.first() {
            None => return StreamItem::Incomplete,
            Some(b'd') => Encoding::Bencode,
            Some(b'{') => Encoding::Json,
            Some(_) => {
                return StreamItem::Broken {
                    cookie: Some(cookie.to_vec()),
                    encoding: Encoding::Bencode,
                    reason: "Invalid NG data format",
                    offset: dict_at,
                }
            }
        };
        let limits = self.limits;
        let pending = match &mut self.pending {
            Some((at, pending)) if *at == dict_at => pending,
            slot => {
                let fresh = match encoding {
                    Encoding::Bencode => Pending::Bencode(DictScanner::new(&limits)),
                    Encoding::Json => Pending::Json(ObjectScanner::new(&limits)),
                };
                &mut slot.insert((dict_at, fresh)).1
            }
        };
        match pending {
            Pending::Bencode(scanner) => {
                bencode_item(scanner.scan(body), cookie, dict_at, body, &limits)
            }
            Pending::Json(scanner) => json_item(scanner.scan(body), cookie, dict_at, body, &limits),
        }
    }
}

/// The item for a bencode message, decoded once its end is found. A dictionary the
/// decoder still refuses (a duplicate key) breaks the stream as any bencode error does.
fn bencode_item(
    scan: bencode::Scan,
    cookie: &[u8],
    dict_at: usize,
    body: &[u8],
    limits: &Limits,
) -> StreamItem {
    let broken = |offset: usize| StreamItem::Broken {
        cookie: Some(cookie.to_vec()),
        encoding: Encoding::Bencode,
        reason: "Could not decode bencode dictionary",
        offset: dict_at + offset,
    };
    match scan {
        bencode::Scan::Incomplete => StreamItem::Incomplete,
        bencode::Scan::Error { offset, .. } => broken(offset),
        bencode::Scan::Complete(used) => {
            let dictionary = body.get(..used).unwrap_or_default();
            match bencode::decode_exact(dictionary, limits) {
                Ok(value) => StreamItem::Message {
                    len: dict_at + used,
                    cookie: cookie.to_vec(),
                    encoding: Encoding::Bencode,
                    body: Ok(value),
                },
                Err(DecodeError::Invalid { offset, .. }) => broken(offset),
                // Cannot happen (the scanner never completes what the decoder finds
                // incomplete); refusing keeps the stream from stalling if it did.
                Err(DecodeError::Incomplete) => broken(used),
            }
        }
    }
}

/// The item for a JSON message, decoded once its end is found. A JSON object whose
/// end is clear but whose content is refused gets an error reply; the stream goes on.
fn json_item(
    scan: json::Scan,
    cookie: &[u8],
    dict_at: usize,
    body: &[u8],
    limits: &Limits,
) -> StreamItem {
    match scan {
        json::Scan::Incomplete => StreamItem::Incomplete,
        json::Scan::Complete(used) => {
            let object = body.get(..used).unwrap_or_default();
            StreamItem::Message {
                len: dict_at + used,
                cookie: cookie.to_vec(),
                encoding: Encoding::Json,
                body: json::decode(object, limits).map_err(FrameError::Json),
            }
        }
        json::Scan::Error { offset, .. } => StreamItem::Broken {
            cookie: Some(cookie.to_vec()),
            encoding: Encoding::Json,
            reason: "Failed to parse JSON document",
            offset: dict_at + offset,
        },
    }
}

/// A framed message as tests compare it: cookie, encoding, body.
#[doc(hidden)]
pub type Framed = (Vec<u8>, Encoding, Result<Value, FrameError>);

/// Cuts `stream` into messages the way a TCP-ng connection does, reading `chunk` bytes
/// at a time with one [`StreamFramer`]: the messages, then how the stream ended. Checks
/// as it goes that each message lies inside the buffer and that a decoded body framed
/// again with [`frame_reply`] frames back to the same value. For unit tests and the
/// fuzz target, which must cut streams the same way.
#[doc(hidden)]
pub fn frame_stream(stream: &[u8], chunk: usize, limits: &Limits) -> (Vec<Framed>, StreamItem) {
    let mut framer = StreamFramer::new(limits);
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut out = Vec::new();
    loop {
        match framer.next(&buf) {
            StreamItem::Message {
                len,
                cookie,
                encoding,
                body,
            } => {
                assert!(
                    len > 0 && len <= buf.len(),
                    "message length out of the buffer"
                );
                if let Ok(value) = &body {
                    let again = frame_reply(&cookie, encoding, value);
                    match next_stream_message(&again, limits) {
                        StreamItem::Message { len, body, .. } => {
                            assert_eq!(len, again.len());
                            assert_eq!(body.as_ref(), Ok(value));
                        }
                        other => panic!("our own framing did not frame back: {other:?}"),
                    }
                }
                out.push((cookie, encoding, body));
                buf.drain(..len);
            }
            StreamItem::Incomplete if fed < stream.len() => {
                let end = fed.saturating_add(chunk).min(stream.len());
                buf.extend_from_slice(&stream[fed..end]);
                fed = end;
            }
            end => return (out, end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::dict;
    use proptest::prelude::*;

    fn l() -> Limits {
        Limits::default()
    }

    #[test]
    fn datagram_split() {
        let m = parse_datagram(b"5323_1 d7:command4:pinge", &l()).unwrap();
        assert_eq!(m.cookie, b"5323_1");
        assert_eq!(m.encoding, Encoding::Bencode);
        assert_eq!(m.body, Ok(dict([("command", Value::str("ping"))])));
        let j = parse_datagram(br#"c1 {"command":"ping"}"#, &l()).unwrap();
        assert_eq!(j.encoding, Encoding::Json);
        assert_eq!(j.body, Ok(dict([("command", Value::str("ping"))])));
    }

    #[test]
    fn datagrams_without_cookie_are_dropped() {
        assert_eq!(parse_datagram(b"d7:command4:pinge", &l()), None);
        assert_eq!(parse_datagram(b" d7:command4:pinge", &l()), None);
        assert_eq!(parse_datagram(b"", &l()), None);
        let long = [b'x'; MAX_COOKIE_LEN + 1];
        let mut dg = long.to_vec();
        dg.extend_from_slice(b" d7:command4:pinge");
        assert_eq!(parse_datagram(&dg, &l()), None);
    }

    #[test]
    fn bad_bodies_get_rtpengine_reasons() {
        let reason = |dg: &[u8]| parse_datagram(dg, &l()).unwrap().body.unwrap_err().reason();
        assert_eq!(reason(b"c x"), "Invalid NG data format");
        assert_eq!(reason(b"c "), "Invalid NG data format");
        assert_eq!(
            reason(b"c d7:command4:ping"),
            "Could not decode bencode dictionary"
        );
        assert_eq!(
            reason(b"c d1:ai1eejunk"),
            "Could not decode bencode dictionary"
        );
        assert_eq!(reason(b"c {\"a\":"), "Failed to parse JSON document");
        assert_eq!(reason(b"c [1]"), "Invalid NG data format");
        assert_eq!(reason(b"c {}x"), "Failed to parse JSON document");
    }

    #[test]
    fn reply_framing() {
        let r = dict([("result", Value::str("pong"))]);
        assert_eq!(
            frame_reply(b"5323_1", Encoding::Bencode, &r),
            b"5323_1 d6:result4:ponge"
        );
        assert_eq!(
            frame_reply(b"c", Encoding::Json, &r),
            br#"c {"result":"pong"}"#
        );
    }

    fn frame_all(stream: &[u8], chunk: usize) -> (Vec<Framed>, StreamItem) {
        frame_stream(stream, chunk, &l())
    }

    #[test]
    fn stream_messages_back_to_back_at_every_split() {
        let stream = b"1_1 d7:command4:pinge\n2_2 d7:command6:deletee";
        let (messages, end) = frame_all(stream, stream.len());
        assert_eq!(end, StreamItem::Incomplete);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].0, b"2_2");
        assert_eq!(messages[1].1, Encoding::Bencode);
        for cut in 0..stream.len() {
            let item = next_stream_message(&stream[..cut], &l());
            let first_len = 21;
            if cut < first_len {
                assert_eq!(item, StreamItem::Incomplete, "cut {cut}");
            } else {
                assert!(
                    matches!(item, StreamItem::Message { len: 21, .. }),
                    "cut {cut}"
                );
            }
        }
    }

    const MIXED: &[u8] = b"j1 {\"command\":\"ping\",\"x\":\"} d1:e\"}\r\n\
        b1 d7:command4:pinge\
        j2 {\"command\":\"offer\",\"flags\":[\"trust-address\",{\"a\":[]}],\"n\":1.5}\
        j3 {\"command\":\"list\"}";

    #[test]
    fn json_and_bencode_share_a_stream_at_every_chunk_size() {
        let ping = dict([("command", Value::str("ping")), ("x", Value::str("} d1:e"))]);
        let want = vec![
            (b"j1".to_vec(), Encoding::Json, Ok(ping)),
            (
                b"b1".to_vec(),
                Encoding::Bencode,
                Ok(dict([("command", Value::str("ping"))])),
            ),
            (
                b"j2".to_vec(),
                Encoding::Json,
                Err(FrameError::Json(DecodeError::Invalid {
                    offset: 0,
                    reason: "numbers must be 64-bit integers",
                })),
            ),
            (
                b"j3".to_vec(),
                Encoding::Json,
                Ok(dict([("command", Value::str("list"))])),
            ),
        ];
        for chunk in 1..=MIXED.len() {
            assert_eq!(
                frame_all(MIXED, chunk),
                (want.clone(), StreamItem::Incomplete),
                "chunks of {chunk} bytes"
            );
        }
        // The stateless form, on every prefix: nothing until the first object closes.
        let first_len = MIXED.iter().position(|b| *b == b'\r').unwrap();
        for cut in 0..=MIXED.len() {
            match next_stream_message(&MIXED[..cut], &l()) {
                StreamItem::Incomplete => assert!(cut < first_len, "cut {cut}"),
                StreamItem::Message { len, .. } => {
                    assert!(cut >= first_len, "cut {cut}");
                    assert_eq!(len, first_len);
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn broken_streams() {
        assert_eq!(
            next_stream_message(b"c1 d1:xi01ee", &l()),
            StreamItem::Broken {
                cookie: Some(b"c1".to_vec()),
                encoding: Encoding::Bencode,
                reason: "Could not decode bencode dictionary",
                offset: 8
            }
        );
        assert_eq!(
            next_stream_message(b"c1 [1]", &l()),
            StreamItem::Broken {
                cookie: Some(b"c1".to_vec()),
                encoding: Encoding::Bencode,
                reason: "Invalid NG data format",
                offset: 3
            }
        );
        assert_eq!(
            next_stream_message(&[b'x'; 300], &l()),
            StreamItem::Broken {
                cookie: None,
                encoding: Encoding::Bencode,
                reason: "Invalid NG data (no cookie)",
                offset: 0
            }
        );
        // JSON whose end cannot be found: the reply is JSON, then the stream is over.
        let stream = b"ok {\"command\":\"ping\"}\n bad {\"a\":[}";
        let (messages, end) = frame_all(stream, 3);
        assert_eq!(messages.len(), 1);
        assert_eq!(
            end,
            StreamItem::Broken {
                cookie: Some(b"bad".to_vec()),
                encoding: Encoding::Json,
                reason: "Failed to parse JSON document",
                offset: 6 + 6
            }
        );
        let deep = format!("c {}", "{\"a\":".repeat(40));
        assert!(matches!(
            next_stream_message(deep.as_bytes(), &l()),
            StreamItem::Broken {
                encoding: Encoding::Json,
                offset,
                ..
            } if offset == 2 + 5 * 32
        ));
    }

    #[test]
    fn bencode_errors_break_the_stream_as_early_as_they_show() {
        // A length that cannot fit the size limit: refused before its string arrives.
        assert_eq!(
            next_stream_message(b"c1 d1:a9999999", &l()),
            StreamItem::Broken {
                cookie: Some(b"c1".to_vec()),
                encoding: Encoding::Bencode,
                reason: "Could not decode bencode dictionary",
                offset: 3 + 4
            }
        );
        // A duplicate key is the decoder's to see, once the frame is whole.
        assert_eq!(
            next_stream_message(b"c1 d1:ai1e1:ai2e", &l()),
            StreamItem::Incomplete
        );
        assert_eq!(
            next_stream_message(b"c1 d1:ai1e1:ai2ee c2 d7:command4:pinge", &l()),
            StreamItem::Broken {
                cookie: Some(b"c1".to_vec()),
                encoding: Encoding::Bencode,
                reason: "Could not decode bencode dictionary",
                offset: 3 + 7
            }
        );
        let (messages, end) = frame_all(b"ok d7:command4:pinge\r\nc2 d1:ai-01ee", 1);
        assert_eq!(messages.len(), 1);
        assert_eq!(
            end,
            StreamItem::Broken {
                cookie: Some(b"c2".to_vec()),
                encoding: Encoding::Bencode,
                reason: "Could not decode bencode dictionary",
                offset: 2 + 3 + 5
            }
        );
    }

    /// Feeds `stream` to one framer one byte per read; returns the first item that is
    /// not `Incomplete`, and the bytes examined on the way.
    fn trickle(stream: &[u8]) -> (StreamItem, usize) {
        let mut framer = StreamFramer::new(&l());
        bencode::work::take();
        for cut in 0..stream.len() {
            let item = framer.next(&stream[..cut]);
            if item != StreamItem::Incomplete {
                return (item, bencode::work::take());
            }
        }
        (framer.next(stream), bencode::work::take())
    }

    #[test]
    fn a_mebibyte_trickled_one_byte_per_read_is_scanned_once_and_decoded_once() {
        let limits = l();
        let flags: Vec<Value> = (0..8_000)
            .map(|i| Value::Bytes(format!("{i:060}").into_bytes()))
            .collect();
        let offer = |sdp_len: usize| {
            dict([
                ("command", Value::str("offer")),
                ("call-id", Value::str("trickle")),
                ("flags", Value::List(flags.clone())),
                ("sdp", Value::Bytes(vec![b'd'; sdp_len])),
            ])
        };
        // Pad the SDP (its length keeps six digits) to fill the size limit exactly.
        let sdp_len = 100_000 + limits.max_len - offer(100_000).encoded_len();
        let value = offer(sdp_len);
        let dictionary = value.encode();
        assert_eq!(dictionary.len(), limits.max_len);
        // Keys and values: command offer, call-id trickle, flags [...], sdp.
        let strings = 7 + 5 + 7 + 7 + 5 + 8_000 * 60 + 3 + sdp_len;
        let mut stream = b"\r\n1_2_3 ".to_vec();
        stream.extend_from_slice(&dictionary);
        let started = std::time::Instant::now();
        let (item, work) = trickle(&stream);
        let elapsed = started.elapsed();
        assert_eq!(
            item,
            StreamItem::Message {
                len: stream.len(),
                cookie: b"1_2_3".to_vec(),
                encoding: Encoding::Bencode,
                body: Ok(value),
            }
        );
        // Two blanks, the dictionary's structure scanned once (its strings skipped),
        // the whole dictionary decoded once. Re-decoding on each read would be ~10^12.
        assert_eq!(work, 2 + (dictionary.len() - strings) + dictionary.len());
        // About 0.3 s in a debug build; quadratic work would take hours.
        assert!(
            elapsed < std::time::Duration::from_secs(20),
            "{} one-byte reads took {elapsed:?}",
            stream.len()
        );
    }

    #[test]
    fn whitespace_between_messages_is_skipped_once() {
        let mut stream = vec![b'\n'; 100_000];
        stream.extend_from_slice(b"c d7:command4:pinge");
        let (item, work) = trickle(&stream);
        assert!(matches!(item, StreamItem::Message { len, .. } if len == stream.len()));
        // The blanks, then `d7:command4:pinge`: 6 structure bytes scanned, 17 decoded.
        assert_eq!(work, 100_000 + 6 + 17);
    }

    fn message_strategy() -> impl Strategy<Value = (String, Encoding, Value)> {
        let text = "[a-z{}\\[\\]\"\\\\: \r\nde0-9]{0,8}";
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            text.prop_map(|s: String| Value::Bytes(s.into_bytes())),
        ];
        let value = leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                prop::collection::btree_map(text, inner, 0..4).prop_map(|m| Value::Dict(
                    m.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect()
                )),
            ]
        });
        let dict = prop::collection::btree_map(text, value, 0..5)
            .prop_map(|m| Value::Dict(m.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect()));
        (
            "[0-9_]{1,10}",
            prop_oneof![Just(Encoding::Bencode), Just(Encoding::Json)],
            dict,
        )
    }

    proptest! {
        #[test]
        fn generated_streams_frame_the_same_at_any_chunk_size(
            messages in prop::collection::vec(message_strategy(), 1..5),
            separator in prop::sample::select(vec!["", "\n", "\r\n", " \t"]),
            chunk in 1usize..64,
        ) {
            let mut stream = Vec::new();
            for (cookie, encoding, body) in &messages {
                stream.extend_from_slice(&frame_reply(cookie.as_bytes(), *encoding, body));
                stream.extend_from_slice(separator.as_bytes());
            }
            let want: Vec<_> = messages
                .into_iter()
                .map(|(c, e, v)| (c.into_bytes(), e, Ok(v)))
                .collect();
            prop_assert_eq!(frame_all(&stream, chunk), (want.clone(), StreamItem::Incomplete));
            prop_assert_eq!(frame_all(&stream, stream.len()), (want, StreamItem::Incomplete));
        }
    }
}
