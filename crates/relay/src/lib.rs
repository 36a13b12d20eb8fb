//! mediagate relay: an RTP/RTCP media relay for SIP NAT traversal, driven by Kamailio or
//! OpenSIPS over rtpengine's `ng` protocol (issue 4).
//!
//! Sans-IO cores (no sockets, no clock; time is a parameter):
//! * [`ng`]: the control protocol (bencode, JSON, framing, requests, replies, cookie
//!   cache);
//! * [`sdp_rewrite`]: what the relay reads from and rewrites in SDP;
//! * [`ports`]: port pairs, randomised, quarantined;
//! * [`latch`]: secure symmetric latching against RTP bleed/inject;
//! * [`media`]: one relayed stream and the per-packet forwarding decision;
//! * [`calls`]: the calls and the `ng` commands that drive them, timeouts;
//! * [`record`]: the record a finished call leaves.
//!
//! I/O shell: [`engine`] (tokio: listeners, media sockets, timers, shutdown). Finished
//! calls go to the process's records store (`mediagate_ops::store`), metrics to its
//! registry (`mediagate_ops::metrics`).
//!
//! What it does not (yet): SRTP/DTLS, ICE, transcoding, recording, the MediaProxy
//! dispatcher protocol (issue "dispatcher").

pub mod calls;
pub mod engine;
pub mod latch;
pub mod media;
pub mod ng;
pub mod ports;
pub mod record;
pub mod sdp_rewrite;

/// Runs every `ng` parser over `data` (as a datagram, a TCP stream, a JSON document
/// and an `rtpp-flags` string), for fuzz targets and "never panics" properties.
/// Returns how many accepted it, so the work cannot be optimised away.
#[doc(hidden)]
pub fn exercise_ng(data: &[u8]) -> usize {
    use ng::bencode::Limits;
    let limits = Limits::default();
    let mut accepted = 0;
    if let Some(msg) = ng::framing::parse_datagram(data, &limits) {
        if let Ok(body) = msg.body {
            accepted += 1;
            if let Ok(req) = ng::request::Request::from_value(&body) {
                accepted += 1 + req.options.ignored.len();
            }
        }
    }
    if let ng::framing::StreamItem::Message { len, .. } =
        ng::framing::next_stream_message(data, &limits)
    {
        accepted += usize::from(len <= data.len());
    }
    accepted += usize::from(ng::json::decode(data, &limits).is_ok());
    accepted + ng::request::parse_rtpp_flags(&String::from_utf8_lossy(data)).len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn exercise_accepts_a_real_offer() {
        assert!(super::exercise_ng(b"1_2_3 d7:command5:offer7:call-id1:xe") >= 2);
    }

    proptest! {
        #[test]
        fn ng_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
            super::exercise_ng(&data);
        }

        #[test]
        fn ng_parsers_never_panic_on_ng_shaped_input(
            cookie in "[0-9_]{1,8}",
            body in prop::collection::vec(prop::sample::select(b"dlie0123456789:-{}[]\" ,abc".to_vec()), 0..200),
        ) {
            let mut data = cookie.into_bytes();
            data.push(b' ');
            data.extend_from_slice(&body);
            super::exercise_ng(&data);
        }
    }
}
