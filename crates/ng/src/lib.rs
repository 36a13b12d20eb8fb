//! rtpengine's `ng` control protocol, sans-IO: the bencode and JSON encodings, message
//! framing over UDP and TCP, request interpretation, reply shapes, the per-cookie reply
//! cache of a server and the request building and reply reading of a client.
//!
//! The specification is rtpengine's own documentation, `docs/ng_control_protocol.md`
//! in `sipwise/rtpengine`, with `daemon/control_ng.c` and `daemon/cookie_cache.c` where
//! the text is silent, and the `rtpengine` modules of Kamailio and OpenSIPS as the
//! clients that must keep working. Each module's doc names the parts of those it
//! follows. There is no RFC (bencode itself is BitTorrent's BEP 3).
//!
//! Both sides of the protocol live here:
//! * a server (the relay, and the dispatcher towards Kamailio): [`framing`] splits a
//!   datagram or a TCP stream into messages, [`request`] reads what a request asks,
//!   [`reply`] builds the answers with rtpengine's exact strings, [`cookie_cache`]
//!   answers retransmissions;
//! * a client (the load generator, and the dispatcher towards relays): [`client`]
//!   builds request dictionaries, frames them with a cookie and reads replies back.
//!
//! [`bencode`] and [`json`] are the two encodings of one [`bencode::Value`] tree; every
//! decoder is bounded by [`bencode::Limits`], incremental where TCP needs it, and total
//! (an error with a byte offset, never a panic).
//!
//! What it does not: sockets, timers or retransmission (the engines own I/O and the
//! clock; [`cookie_cache`] takes `now` as an argument), acting on a request (calls,
//! ports and media are the relay's), the HTTP and WebSocket transports of `ng`, or the
//! legacy rtpproxy and MediaProxy protocols.
//!
//! Every module is public on purpose: this crate is the one `ng` implementation for
//! the relay, the load generator, the fuzz target and the dispatcher. Helpers that only
//! serve the crate's own modules are `pub(crate)`.

#![warn(unreachable_pub)]

pub mod bencode;
pub mod client;
pub mod cookie_cache;
pub mod framing;
pub mod json;
pub mod reply;
pub mod request;

/// Runs every `ng` parser over `data` (as a datagram, a TCP stream, a JSON document,
/// an `rtpp-flags` string and a reply to a client), for fuzz targets and "never
/// panics" properties. Returns how many accepted it, so the work cannot be optimised
/// away.
#[doc(hidden)]
pub fn exercise_parsers(data: &[u8]) -> usize {
    let limits = bencode::Limits::default();
    let mut accepted = 0;
    if let Some(msg) = framing::parse_datagram(data, &limits) {
        if let Ok(body) = msg.body {
            accepted += 1 + usize::from(client::check(&body).is_ok());
            if let Ok(req) = request::Request::from_value(&body) {
                accepted += 1 + req.options.ignored.len();
            }
        }
    }
    if let framing::StreamItem::Message { len, .. } = framing::next_stream_message(data, &limits) {
        accepted += usize::from(len <= data.len());
    }
    accepted += usize::from(json::decode(data, &limits).is_ok());
    accepted + request::parse_rtpp_flags(&String::from_utf8_lossy(data)).len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn exercise_accepts_a_real_offer() {
        assert!(super::exercise_parsers(b"1_2_3 d7:command5:offer7:call-id1:xe") >= 2);
    }

    proptest! {
        #[test]
        fn ng_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
            super::exercise_parsers(&data);
        }

        #[test]
        fn ng_parsers_never_panic_on_ng_shaped_input(
            cookie in "[0-9_]{1,8}",
            body in prop::collection::vec(prop::sample::select(b"dlie0123456789:-{}[]\" ,abc".to_vec()), 0..200),
        ) {
            let mut data = cookie.into_bytes();
            data.push(b' ');
            data.extend_from_slice(&body);
            super::exercise_parsers(&data);
        }
    }
}
