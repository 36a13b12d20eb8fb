//! The client's side of `ng`: what a SIP proxy's `rtpengine` module does, for the load
//! generator and for the dispatcher when it asks a relay.
//!
//! What it does: [`RequestBuilder`] builds a request dictionary with keys in the order
//! they are added (`command` first, as Kamailio and OpenSIPS send it);
//! [`frame_request`] puts a cookie in front; [`reply_to`] picks the reply to one
//! request out of what arrives on the socket (a reply carries the request's cookie,
//! rtpengine's `docs/ng_control_protocol.md`); [`check`] reads its `result` and turns
//! anything but `ok` and `pong` into a [`Refusal`] that says whether a SIP proxy would
//! try another relay (the failover rules of Kamailio's `rtpengine` module, see
//! [`crate::reply`]).
//!
//! What it does not: sockets, timeouts or retransmission (a client resends the same
//! bytes, same cookie, and the server's [`crate::cookie_cache`] answers it again; when
//! and how often is the caller's I/O loop), make cookies unique (the caller's; one
//! prefix per process and a counter is what Kamailio does), or read a reply's keys
//! beyond `result` and its reason (use [`Value::get`]).

use std::fmt;

use crate::bencode::{Limits, Value};
use crate::framing::{self, Encoding, FrameError};
use crate::reply;
use crate::request::Command;

/// A request dictionary under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBuilder {
    entries: Vec<(Vec<u8>, Value)>,
}

impl RequestBuilder {
    /// A request for `command`, which becomes its first key.
    pub fn new(command: Command) -> Self {
        Self {
            entries: vec![(b"command".to_vec(), Value::str(command.name()))],
        }
    }

    /// Sets `key` to `value`. A key set twice keeps its first place and its last
    /// value, so the dictionary never carries a duplicate (which servers refuse).
    pub fn value(mut self, key: &str, value: Value) -> Self {
        match self.entries.iter_mut().find(|(k, _)| k == key.as_bytes()) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key.as_bytes().to_vec(), value)),
        }
        self
    }

    /// Sets `key` to a string (`call-id`, `sdp`, `ICE`).
    pub fn str(self, key: &str, value: &str) -> Self {
        self.value(key, Value::str(value))
    }

    /// Sets `key` to an integer (`delete delay`).
    pub fn int(self, key: &str, value: i64) -> Self {
        self.value(key, Value::Int(value))
    }

    /// Sets `key` to a list of strings (`flags`, `replace`, `received-from`).
    pub fn strs(self, key: &str, items: &[&str]) -> Self {
        self.value(
            key,
            Value::List(items.iter().map(|s| Value::str(s)).collect()),
        )
    }

    /// The dictionary.
    pub fn build(self) -> Value {
        Value::Dict(self.entries)
    }
}

/// Frames a request: `cookie`, a space, the dictionary in `encoding`. The server
/// answers in the same encoding with the same cookie.
pub fn frame_request(cookie: &[u8], encoding: Encoding, request: &Value) -> Vec<u8> {
    framing::frame(cookie, encoding, request)
}

/// The reply in `datagram` to the request sent with `cookie`, bencode or JSON.
///
/// `None` when the datagram is not an answer to that request: another cookie (a late
/// reply to an earlier request whose retransmission was already answered) or no
/// cookie at all. `Some(Err(_))` when it is the answer but its dictionary cannot be
/// read.
pub fn reply_to(
    cookie: &[u8],
    datagram: &[u8],
    limits: &Limits,
) -> Option<Result<Value, FrameError>> {
    let message = framing::parse_datagram(datagram, limits)?;
    (message.cookie == cookie).then_some(message.body)
}

/// `Ok(reply)` when its `result` is `ok` or `pong`, else why the server refused.
pub fn check(reply: &Value) -> Result<&Value, Refusal> {
    let text = |key| reply.get(key).and_then(Value::as_str);
    // Servers put the reason in `error-reason`, and in `message` for `load limit`.
    let reason = || {
        text("error-reason")
            .or_else(|| text("message"))
            .unwrap_or_default()
            .to_owned()
    };
    match reply::result_of(reply) {
        Some("ok" | "pong") => Ok(reply),
        Some("error") => Err(Refusal::Error { reason: reason() }),
        Some("load limit") => Err(Refusal::LoadLimit { message: reason() }),
        Some(other) => Err(Refusal::Other {
            result: other.to_owned(),
            reason: reason(),
        }),
        None => Err(Refusal::NoResult),
    }
}

/// A reply whose `result` is not a success. Its [`Display`](fmt::Display) is
/// `result: reason`, the way an operator would quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `error`, with its `error-reason`.
    Error {
        /// The `error-reason` text (rtpengine's strings are in [`crate::reply`]).
        reason: String,
    },
    /// `load limit`: the server is full for now.
    LoadLimit {
        /// The `message` text.
        message: String,
    },
    /// A `result` this crate does not know.
    Other {
        /// The `result` text.
        result: String,
        /// The `error-reason` or `message` text, if any.
        reason: String,
    },
    /// The reply has no `result` string.
    NoResult,
}

impl Refusal {
    /// Whether a SIP proxy would ask the next relay instead: on `load limit`, and on
    /// the errors that mean "full" ([`reply::RAN_OUT_OF_PORTS`],
    /// [`reply::SESSION_LIMIT`]), as Kamailio's `rtpengine` module does. Anything else
    /// is about the request, and another relay would refuse it too.
    pub fn try_another_relay(&self) -> bool {
        match self {
            Self::LoadLimit { .. } => true,
            Self::Error { reason } => {
                reason == reply::RAN_OUT_OF_PORTS || reason == reply::SESSION_LIMIT
            }
            Self::Other { .. } | Self::NoResult => false,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error { reason } => write!(f, "error: {reason}"),
            Self::LoadLimit { message } => write!(f, "load limit: {message}"),
            Self::Other { result, reason } => write!(f, "{result}: {reason}"),
            Self::NoResult => f.write_str("reply without result"),
        }
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{decode_exact, dict};
    use crate::request::Request;
    use proptest::prelude::*;

    fn l() -> Limits {
        Limits::default()
    }

    #[test]
    fn encodes_like_kamailio_and_decodes_replies() {
        let b = RequestBuilder::new(Command::Offer)
            .strs("flags", &["trust-address"])
            .int("delete delay", 0)
            .build()
            .encode();
        assert_eq!(
            b,
            b"d7:command5:offer5:flagsl13:trust-addresse12:delete delayi0ee"
        );
        let r = decode_exact(b"d6:result2:ok3:sdp3:v=04:listli1e2:abee", &l()).unwrap();
        assert_eq!(
            check(&r).unwrap().get("sdp").and_then(Value::as_str),
            Some("v=0")
        );
        let e = decode_exact(b"d6:result5:error12:error-reason16:Ran out of portse", &l());
        assert_eq!(
            check(&e.unwrap()).unwrap_err().to_string(),
            "error: Ran out of ports"
        );
        assert!(decode_exact(b"d3:abc", &l()).is_err());
        assert!(decode_exact(&[b'l'; 100], &l()).is_err());
    }

    #[test]
    fn a_built_offer_reads_back_as_the_server_reads_it() {
        let offer = RequestBuilder::new(Command::Offer)
            .str("call-id", "c1")
            .str("from-tag", "caller")
            .str("sdp", "v=0\r\n")
            .strs("received-from", &["IP4", "192.0.2.7"])
            .strs("replace", &["origin", "session-connection"])
            .str("ICE", "remove")
            .strs("supports", &["load limit"])
            .build();
        for encoding in [Encoding::Bencode, Encoding::Json] {
            let datagram = frame_request(b"7_1_1", encoding, &offer);
            let m = framing::parse_datagram(&datagram, &l()).unwrap();
            assert_eq!((m.cookie, m.encoding), (&b"7_1_1"[..], encoding));
            let req = Request::from_value(&m.body.unwrap()).unwrap();
            assert_eq!(req.command, Command::Offer);
            assert_eq!(req.call_id.as_deref(), Some("c1"));
            assert_eq!(req.from_tag.as_deref(), Some("caller"));
            assert_eq!(req.sdp.as_deref(), Some(&b"v=0\r\n"[..]));
            assert_eq!(
                req.options.received_from,
                Some("192.0.2.7".parse().unwrap())
            );
            assert!(req.options.replace_origin && req.options.replace_session_connection);
            assert_eq!(req.options.ice, Some(crate::request::IceOption::Remove));
            assert!(req.supports_load_limit);
        }
    }

    #[test]
    fn a_key_set_twice_keeps_its_place_and_last_value() {
        let r = RequestBuilder::new(Command::Delete)
            .str("call-id", "a")
            .int("delete delay", 0)
            .str("call-id", "b")
            .build();
        assert_eq!(
            r,
            dict([
                ("command", Value::str("delete")),
                ("call-id", Value::str("b")),
                ("delete delay", Value::Int(0)),
            ])
        );
        assert_eq!(decode_exact(&r.encode(), &l()), Ok(r));
    }

    #[test]
    fn only_the_reply_with_our_cookie_is_ours() {
        let pong = reply::pong();
        let ours = framing::frame_reply(b"9_1_2", Encoding::Bencode, &pong);
        assert_eq!(reply_to(b"9_1_2", &ours, &l()), Some(Ok(pong.clone())));
        // A late answer to the previous request, and one whose cookie only starts
        // like ours.
        let late = framing::frame_reply(b"9_1_1", Encoding::Bencode, &pong);
        assert_eq!(reply_to(b"9_1_2", &late, &l()), None);
        let longer = framing::frame_reply(b"9_1_23", Encoding::Json, &pong);
        assert_eq!(reply_to(b"9_1_2", &longer, &l()), None);
        assert_eq!(reply_to(b"9_1_2", b"d6:result4:ponge", &l()), None);
        let broken = reply_to(b"9_1_2", b"9_1_2 d6:result4:pong", &l()).unwrap();
        assert!(matches!(broken, Err(FrameError::Bencode(_))), "{broken:?}");
        let json = framing::frame_reply(b"9_1_2", Encoding::Json, &pong);
        assert_eq!(reply_to(b"9_1_2", &json, &l()), Some(Ok(pong)));
    }

    #[test]
    fn refusals_say_whether_another_relay_may_take_the_call() {
        assert!(check(&reply::ok(vec![])).is_ok());
        assert!(check(&reply::ok_with_warning(reply::CALL_NOT_FOUND)).is_ok());
        assert!(check(&reply::pong()).is_ok());
        let refused = |v: Value| check(&v).unwrap_err();
        let full = refused(reply::error(reply::RAN_OUT_OF_PORTS));
        assert_eq!(full.to_string(), "error: Ran out of ports");
        assert!(full.try_another_relay());
        let limit = refused(reply::overload(false, "ignored"));
        assert_eq!(limit.to_string(), "error: Parallel session limit reached");
        assert!(limit.try_another_relay());
        let load = refused(reply::overload(true, "Parallel session limit reached"));
        assert_eq!(
            load,
            Refusal::LoadLimit {
                message: "Parallel session limit reached".to_owned()
            }
        );
        assert!(load.try_another_relay());
        let bad = refused(reply::error(reply::UNKNOWN_CALL_ID));
        assert_eq!(bad.to_string(), "error: Unknown call-id");
        assert!(!bad.try_another_relay());
        let odd = refused(dict([
            ("result", Value::str("halting")),
            ("message", Value::str("draining")),
        ]));
        assert_eq!(odd.to_string(), "halting: draining");
        assert!(!odd.try_another_relay());
        let none = refused(dict([("sdp", Value::str("v=0"))]));
        assert_eq!(none, Refusal::NoResult);
        assert_eq!(none.to_string(), "reply without result");
        assert_eq!(refused(Value::Int(1)), Refusal::NoResult);
    }

    proptest! {
        #[test]
        fn built_requests_frame_and_decode_back(
            cookie in "[0-9_]{1,20}",
            entries in prop::collection::vec(("[ -~]{1,12}", "[ -~\r\n]{0,40}", any::<i64>(), any::<u8>()), 0..12),
        ) {
            let mut b = RequestBuilder::new(Command::Query);
            for (key, text, int, kind) in &entries {
                b = match kind % 3 {
                    0 => b.str(key, text),
                    1 => b.int(key, *int),
                    _ => b.strs(key, &[text, key]),
                };
            }
            let built = b.build();
            let keys = built.as_dict().unwrap().iter().map(|(k, _)| k).collect::<Vec<_>>();
            prop_assert_eq!(keys.len(), keys.iter().collect::<std::collections::HashSet<_>>().len());
            let datagram = frame_request(cookie.as_bytes(), Encoding::Bencode, &built);
            prop_assert_eq!(reply_to(cookie.as_bytes(), &datagram, &l()), Some(Ok(built)));
        }
    }
}
