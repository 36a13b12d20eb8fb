//! The dispatcher link's wire format (version 1), sans-IO: messages to and from
//! bytes, with an incremental, bounded frame reader. The contract is written down in
//! `docs/dispatcher-link.md`; this module is its only implementation.
//!
//! A frame is a 4-byte big-endian length `N` (1 to [`MAX_FRAME`]) followed by `N`
//! bytes holding exactly one bencode dictionary whose `type` names the message. A
//! length header above the cap is refused as soon as its 4 bytes are in, before
//! anything is buffered for it. Unknown keys in a known message are ignored (a newer
//! minor version may add some); an unknown `type` is an error: a minor version that
//! adds a message (1.1: `stats-request` and `stats`) is only sent to a peer whose
//! hello announced that minor version, so a peer never sees one it does not know.
//!
//! What it does not: TLS, timers or version negotiation policy (the link modules of
//! the dispatcher and the relay do those with [`Hello`] and [`VERSION`]).

use std::fmt;

use mediagate_ng::bencode::{self, Limits, Value};

/// The link protocol version this code speaks: (major, minor). Peers with another
/// major version are refused; a minor version adds optional keys, or messages a side
/// sends only to a peer of that minor version or later (see [`Hello::minor_at_least`]).
pub const VERSION: (u64, u64) = (1, 1);

/// The first minor version with `stats-request` and `stats` (live call statistics).
pub const MINOR_STATS: u64 = 1;

/// Largest frame body, bytes: an `ng` request or reply with a large SDP, or a
/// `sessions` list of about 40,000 Call-IDs, fits.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;

/// Most values one frame may hold (a `sessions` list of Call-IDs is the longest).
const MAX_VALUES: usize = 200_000;

/// Which end of the link sent a [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A relay (the TLS client).
    Relay,
    /// A dispatcher (the TLS server).
    Dispatcher,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Dispatcher => "dispatcher",
        }
    }
}

/// The first message each side sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version, (major, minor).
    pub version: (u64, u64),
    /// Who is speaking.
    pub side: Side,
    /// The sender's name (a relay's configured name; informational, the certificate
    /// is the identity).
    pub name: String,
    /// Software and version, for logs.
    pub software: String,
}

impl Hello {
    /// Our own hello.
    pub fn ours(side: Side, name: &str) -> Self {
        Self {
            version: VERSION,
            side,
            name: name.to_owned(),
            software: concat!("mediagate ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// Whether the sender of `self` speaks at least minor version `minor` of our major
    /// version, so it knows the messages that minor version added.
    pub fn minor_at_least(&self, minor: u64) -> bool {
        self.version.0 == VERSION.0 && self.version.1 >= minor
    }

    /// Whether we can talk with the sender of `self`: `Err` says why not, in words a
    /// log line can carry as they are.
    pub fn check_compatible(&self) -> Result<(), String> {
        if self.version.0 == VERSION.0 {
            Ok(())
        } else {
            Err(format!(
                "peer speaks link protocol {}.{} ({}); this side speaks {}.{}: upgrade the older side",
                self.version.0, self.version.1, self.software, VERSION.0, VERSION.1
            ))
        }
    }
}

/// A relay's state as it reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Media addresses advertised to endpoints, as text (`192.0.2.1`, `2001:db8::1`).
    pub addresses: Vec<String>,
    /// Whether it refuses new calls (shutting down).
    pub draining: bool,
    /// Calls it holds.
    pub sessions: u64,
    /// Bits per second it relays now.
    pub bps: u64,
}

/// A relay's answer to `stats-request` (link 1.1), in one `stats` message or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// The request's `seq`.
    pub seq: u64,
    /// The relay's software version (bare, as `0.1.0`).
    pub version: String,
    /// Seconds since the relay started.
    pub uptime: u64,
    /// Bits per second it relayed over its last status interval.
    pub bps: u64,
    /// Its running calls, each as its record would read if it ended now (the
    /// `relay_sessions` record as JSON text, reason empty).
    pub calls: Vec<String>,
    /// More `stats` messages with the same `seq` follow.
    pub more: bool,
}

/// One link message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `hello`: version negotiation, first from both sides.
    Hello(Hello),
    /// `refuse`: the sender closes the link, and says why.
    Refuse {
        /// Why, for the other side's log.
        reason: String,
    },
    /// `status`: relay to dispatcher, after hello and then periodically.
    Status(Status),
    /// `ping`: relay to dispatcher.
    Ping {
        /// Echoed in the pong.
        seq: u64,
    },
    /// `pong`: the answer to a ping.
    Pong {
        /// The ping's `seq`.
        seq: u64,
    },
    /// `request`: dispatcher to relay, an `ng` command dictionary.
    Request {
        /// Per-link sequence number, echoed in the reply.
        seq: u64,
        /// The `ng` command.
        body: Value,
    },
    /// `reply`: relay to dispatcher, the `ng` reply dictionary.
    Reply {
        /// The request's `seq`.
        seq: u64,
        /// The `ng` reply.
        body: Value,
    },
    /// `list-sessions`: dispatcher asks for a `sessions` message.
    ListSessions,
    /// `sessions`: relay to dispatcher, the Call-IDs it holds (sent on every connect
    /// and when asked), in as many messages as they need: every one but the last says
    /// `more`.
    Sessions {
        /// Call-IDs.
        calls: Vec<String>,
        /// More `sessions` messages follow for the same list.
        more: bool,
    },
    /// `ended`: relay to dispatcher, a call that ended without a `delete`.
    Ended {
        /// The call's Call-ID.
        call_id: String,
        /// The relay record's end reason (`timeout`, `admin`, `shutdown`, ...).
        reason: String,
        /// The call's record as JSON text.
        record: String,
    },
    /// `stats-request` (1.1): dispatcher asks a relay for its live statistics.
    StatsRequest {
        /// Echoed in the answer.
        seq: u64,
    },
    /// `stats` (1.1): relay to dispatcher, the answer to `stats-request`.
    Stats(Stats),
}

/// Why bytes are not a link message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad link frame at byte {offset}: {reason}")]
pub struct WireError {
    /// Byte offset from the start of the frame's length header.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

fn invalid(offset: usize, reason: impl Into<String>) -> WireError {
    WireError {
        offset,
        reason: reason.into(),
    }
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn text(s: &str) -> Value {
    Value::str(s)
}

impl Message {
    /// The message's `type` key.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::Refuse { .. } => "refuse",
            Self::Status(_) => "status",
            Self::Ping { .. } => "ping",
            Self::Pong { .. } => "pong",
            Self::Request { .. } => "request",
            Self::Reply { .. } => "reply",
            Self::ListSessions => "list-sessions",
            Self::Sessions { .. } => "sessions",
            Self::Ended { .. } => "ended",
            Self::StatsRequest { .. } => "stats-request",
            Self::Stats(_) => "stats",
        }
    }

    fn to_value(&self) -> Value {
        let mut d: Vec<(&str, Value)> = vec![("type", text(self.kind()))];
        match self {
            Self::Hello(h) => {
                d.push(("major", int(h.version.0)));
                d.push(("minor", int(h.version.1)));
                d.push(("side", text(h.side.as_str())));
                d.push(("name", text(&h.name)));
                d.push(("software", text(&h.software)));
            }
            Self::Refuse { reason } => d.push(("reason", text(reason))),
            Self::Status(s) => {
                d.push((
                    "addresses",
                    Value::List(s.addresses.iter().map(|a| text(a)).collect()),
                ));
                d.push(("draining", int(u64::from(s.draining))));
                d.push(("sessions", int(s.sessions)));
                d.push(("bps", int(s.bps)));
            }
            Self::Ping { seq } | Self::Pong { seq } | Self::StatsRequest { seq } => {
                d.push(("seq", int(*seq)));
            }
            Self::Stats(s) => {
                d.push(("seq", int(s.seq)));
                d.push(("version", text(&s.version)));
                d.push(("uptime", int(s.uptime)));
                d.push(("bps", int(s.bps)));
                d.push((
                    "calls",
                    Value::List(s.calls.iter().map(|c| text(c)).collect()),
                ));
                if s.more {
                    d.push(("more", int(1)));
                }
            }
            Self::Request { seq, body } | Self::Reply { seq, body } => {
                d.push(("seq", int(*seq)));
                d.push(("body", body.clone()));
            }
            Self::ListSessions => {}
            Self::Sessions { calls, more } => {
                d.push((
                    "calls",
                    Value::List(calls.iter().map(|c| text(c)).collect()),
                ));
                if *more {
                    d.push(("more", int(1)));
                }
            }
            Self::Ended {
                call_id,
                reason,
                record,
            } => {
                d.push(("call-id", text(call_id)));
                d.push(("reason", text(reason)));
                d.push(("record", text(record)));
            }
        }
        Value::Dict(
            d.into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The message as one frame (length header included), appended to `out`.
    /// A message larger than [`MAX_FRAME`] is an error (and `out` is left as it
    /// was): the peer would refuse it.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let start = out.len();
        // The length is known only once the body is written: a placeholder, patched.
        out.extend_from_slice(&[0; 4]);
        match self {
            // Every command and reply takes this path: the `ng` body (an SDP and its
            // flags) is written straight into the frame rather than cloned into a
            // dictionary first. Same bytes as `to_value`, keys in its order.
            Self::Request { seq, body } | Self::Reply { seq, body } => {
                out.extend_from_slice(b"d4:type");
                text(self.kind()).encode_into(out);
                out.extend_from_slice(b"3:seq");
                int(*seq).encode_into(out);
                out.extend_from_slice(b"4:body");
                body.encode_into(out);
                out.push(b'e');
            }
            _ => self.to_value().encode_into(out),
        }
        let len = out.len() - start - 4;
        if len > MAX_FRAME {
            out.truncate(start);
            return Err(invalid(
                0,
                format!(
                    "a {} message of {len} bytes exceeds the {MAX_FRAME}-byte frame cap",
                    self.kind(),
                ),
            ));
        }
        // MAX_FRAME fits in u32, checked above.
        out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }

    /// The message as one frame.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }
}

/// Bytes of Call-IDs one `sessions` message carries at most: well under
/// [`MAX_FRAME`] with the bencode around them.
const SESSIONS_CHUNK_BYTES: usize = 1024 * 1024;

/// The `sessions` messages for `calls`: one, or several with `more` on all but the
/// last, each within the frame cap.
pub fn sessions_messages(calls: Vec<String>) -> Vec<Message> {
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for call in calls {
        // Each item costs its length plus its bencode length prefix.
        let cost = call.len() + 12;
        if !chunk.is_empty() && bytes + cost > SESSIONS_CHUNK_BYTES {
            out.push(Message::Sessions {
                calls: std::mem::take(&mut chunk),
                more: true,
            });
            bytes = 0;
        }
        bytes += cost;
        chunk.push(call);
    }
    out.push(Message::Sessions {
        calls: chunk,
        more: false,
    });
    out
}

/// The `stats` messages answering request `seq`: `calls` (JSON texts) cut into
/// messages of about 1 MiB, `more` on all but the last; each carries the same
/// `version`, `uptime` and `bps`. A single call record over 1 MiB is left out (no
/// frame would carry it); the count left out is returned with the messages.
pub fn stats_messages(
    seq: u64,
    version: &str,
    uptime: u64,
    bps: u64,
    calls: Vec<String>,
) -> (Vec<Message>, usize) {
    let stats = |calls, more| {
        Message::Stats(Stats {
            seq,
            version: version.to_owned(),
            uptime,
            bps,
            calls,
            more,
        })
    };
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = 0;
    let mut left_out = 0;
    for call in calls {
        let cost = call.len() + 12;
        if cost > SESSIONS_CHUNK_BYTES {
            left_out += 1;
            continue;
        }
        if !chunk.is_empty() && bytes + cost > SESSIONS_CHUNK_BYTES {
            out.push(stats(std::mem::take(&mut chunk), true));
            bytes = 0;
        }
        bytes += cost;
        chunk.push(call);
    }
    out.push(stats(chunk, false));
    (out, left_out)
}

/// Reads frames from the front of a buffer.
///
/// `Ok(None)`: more bytes are needed (nothing is consumed). `Ok(Some((message,
/// used)))`: one message and the bytes it took. `Err`: the stream is broken at the
/// offset given; the link must close.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 {
        return Err(invalid(0, "empty frame"));
    }
    if len > MAX_FRAME {
        return Err(invalid(
            0,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte cap"),
        ));
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let limits = Limits {
        max_depth: 32,
        max_values: MAX_VALUES,
        max_len: MAX_FRAME,
    };
    let value = bencode::decode_exact(body, &limits).map_err(|e| match e {
        bencode::DecodeError::Incomplete => invalid(4, "bencode ends before the frame does"),
        bencode::DecodeError::Invalid { offset, reason } => invalid(4 + offset, reason),
    })?;
    let message = from_value(&value).map_err(|reason| invalid(4, reason))?;
    Ok(Some((message, 4 + len)))
}

/// Reads frames from a byte stream as it arrives; bounded to one frame plus one read.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes consumed before `buf[0]`, for error offsets in the whole stream.
    consumed: u64,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed. Errors carry the
    /// offset in the whole stream.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        match decode_frame(&self.buf) {
            Ok(Some((message, used))) => {
                self.buf.drain(..used);
                self.consumed += used as u64;
                Ok(Some(message))
            }
            Ok(None) => Ok(None),
            Err(mut e) => {
                e.offset = e.offset.saturating_add(self.consumed as usize);
                Err(e)
            }
        }
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("missing `{key}`"))
}

fn get_u64(v: &Value, key: &str) -> Result<u64, String> {
    field(v, key)?
        .as_int()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| format!("`{key}` is not a non-negative integer"))
}

fn get_text(v: &Value, key: &str) -> Result<String, String> {
    field(v, key)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("`{key}` is not UTF-8 text"))
}

fn get_texts(v: &Value, key: &str) -> Result<Vec<String>, String> {
    field(v, key)?
        .as_list()
        .ok_or_else(|| format!("`{key}` is not a list"))?
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("an item of `{key}` is not UTF-8 text"))
        })
        .collect()
}

fn from_value(v: &Value) -> Result<Message, String> {
    if v.as_dict().is_none() {
        return Err("a frame must hold a dictionary".to_owned());
    }
    let kind = get_text(v, "type")?;
    Ok(match kind.as_str() {
        "hello" => Message::Hello(Hello {
            version: (get_u64(v, "major")?, get_u64(v, "minor")?),
            side: match get_text(v, "side")?.as_str() {
                "relay" => Side::Relay,
                "dispatcher" => Side::Dispatcher,
                other => return Err(format!("unknown side `{other}`")),
            },
            name: get_text(v, "name")?,
            software: get_text(v, "software")?,
        }),
        "refuse" => Message::Refuse {
            reason: get_text(v, "reason")?,
        },
        "status" => Message::Status(Status {
            addresses: get_texts(v, "addresses")?,
            draining: get_u64(v, "draining")? != 0,
            sessions: get_u64(v, "sessions")?,
            bps: get_u64(v, "bps")?,
        }),
        "ping" => Message::Ping {
            seq: get_u64(v, "seq")?,
        },
        "pong" => Message::Pong {
            seq: get_u64(v, "seq")?,
        },
        "request" | "reply" => {
            let seq = get_u64(v, "seq")?;
            let body = field(v, "body")?.clone();
            if body.as_dict().is_none() {
                return Err("`body` is not a dictionary".to_owned());
            }
            if kind == "request" {
                Message::Request { seq, body }
            } else {
                Message::Reply { seq, body }
            }
        }
        "list-sessions" => Message::ListSessions,
        "sessions" => Message::Sessions {
            calls: get_texts(v, "calls")?,
            more: v.get("more").is_some() && get_u64(v, "more")? != 0,
        },
        "ended" => Message::Ended {
            call_id: get_text(v, "call-id")?,
            reason: get_text(v, "reason")?,
            record: get_text(v, "record")?,
        },
        "stats-request" => Message::StatsRequest {
            seq: get_u64(v, "seq")?,
        },
        "stats" => Message::Stats(Stats {
            seq: get_u64(v, "seq")?,
            version: get_text(v, "version")?,
            uptime: get_u64(v, "uptime")?,
            bps: get_u64(v, "bps")?,
            calls: get_texts(v, "calls")?,
            more: v.get("more").is_some() && get_u64(v, "more")? != 0,
        }),
        other => return Err(format!("unknown message type `{other}`")),
    })
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
