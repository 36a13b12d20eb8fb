//! `ng` message framing: `<cookie> SP <dictionary>` in one UDP datagram, or back to
//! back on a TCP stream (rtpengine's TCP-ng), and the reply with the same cookie.
//!
//! What it does: splits the cookie off, picks the encoding from the dictionary's first
//! byte (`d` bencode, `{` JSON), decodes, and frames replies. On TCP, where messages
//! have no length prefix, a message ends where its bencode dictionary ends, exactly as
//! rtpengine finds boundaries; [`next_stream_message`] says `Incomplete` until the
//! whole dictionary has arrived.
//!
//! What it does not: interpret the dictionary ([`super::request`]) or cache replies
//! ([`super::cookie_cache`]). JSON on TCP is not framed (rtpengine does not do it
//! either); a TCP message starting with `{` is refused.
//!
//! Errors follow rtpengine (`daemon/control_ng.c`): a datagram without a cookie is
//! dropped without reply (there is nothing to address the reply with); an unknown
//! first byte gets `Invalid NG data format`; undecodable bencode gets `Could not decode
//! bencode dictionary`, undecodable JSON `Failed to parse JSON document`.

use super::bencode::{self, DecodeError, Limits, Value};
use super::json;

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
    /// Encodes a reply dictionary.
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
    let body = encoding.encode(reply);
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
        /// The dictionary.
        body: Value,
    },
    /// The stream cannot be resynchronised: reply with `reason` (if a cookie was
    /// read) and close the connection.
    Broken {
        /// The cookie, if one was read.
        cookie: Option<Vec<u8>>,
        /// The `error-reason` to send.
        reason: &'static str,
        /// Where in the buffer it went wrong.
        offset: usize,
    },
}

/// Finds the first TCP-ng message in `buf`. Leading whitespace between messages is
/// skipped (and counted in `len`), as some clients end messages with a newline.
pub fn next_stream_message(buf: &[u8], limits: &Limits) -> StreamItem {
    let skip = buf
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(buf.len());
    let rest = buf.get(skip..).unwrap_or_default();
    let Some(space) = rest
        .iter()
        .take(MAX_COOKIE_LEN + 1)
        .position(|b| *b == b' ')
    else {
        return if rest.len() > MAX_COOKIE_LEN {
            StreamItem::Broken {
                cookie: None,
                reason: "Invalid NG data (no cookie)",
                offset: skip,
            }
        } else {
            StreamItem::Incomplete
        };
    };
    let cookie = rest.get(..space).unwrap_or_default().to_vec();
    let dict_at = space + 1;
    let body = rest.get(dict_at..).unwrap_or_default();
    match body.first() {
        None => return StreamItem::Incomplete,
        Some(b'd') => {}
        Some(_) => {
            return StreamItem::Broken {
                cookie: Some(cookie),
                reason: "Invalid NG data format",
                offset: skip + dict_at,
            }
        }
    }
    match bencode::decode(body, limits) {
        Ok((value, used)) => StreamItem::Message {
            len: skip + dict_at + used,
            cookie,
            body: value,
        },
        Err(DecodeError::Incomplete) => StreamItem::Incomplete,
        Err(DecodeError::Invalid { offset, .. }) => StreamItem::Broken {
            cookie: Some(cookie),
            reason: "Could not decode bencode dictionary",
            offset: skip + dict_at + offset,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ng::bencode::dict;

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

    #[test]
    fn stream_messages_back_to_back_at_every_split() {
        let stream = b"1_1 d7:command4:pinge\n2_2 d7:command6:deletee";
        let mut messages = Vec::new();
        let mut buf: &[u8] = stream;
        while !buf.is_empty() {
            match next_stream_message(buf, &l()) {
                StreamItem::Message { len, cookie, body } => {
                    messages.push((cookie, body));
                    buf = &buf[len..];
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].0, b"2_2");
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

    #[test]
    fn broken_streams() {
        assert_eq!(
            next_stream_message(b"c1 d1:xi01ee", &l()),
            StreamItem::Broken {
                cookie: Some(b"c1".to_vec()),
                reason: "Could not decode bencode dictionary",
                offset: 8
            }
        );
        assert_eq!(
            next_stream_message(b"c1 {\"a\":1}", &l()),
            StreamItem::Broken {
                cookie: Some(b"c1".to_vec()),
                reason: "Invalid NG data format",
                offset: 3
            }
        );
        assert_eq!(
            next_stream_message(&[b'x'; 300], &l()),
            StreamItem::Broken {
                cookie: None,
                reason: "Invalid NG data (no cookie)",
                offset: 0
            }
        );
    }
}
