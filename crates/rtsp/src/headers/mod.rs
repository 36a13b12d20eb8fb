//! Typed RTSP headers: one Rust type per header a proxy or cache has to understand, each
//! implementing [`TypedHeader`](crate::header_map::TypedHeader) (`parse_value` /
//! `to_value`, with `parse_value(to_value(x)) == x`).
//!
//! Grammar sources: RFC 2326 §12 (RTSP 1.0) and RFC 7826 §18 and §20 (RTSP 2.0); each
//! module cites its sections. Parsing is tolerant where real peers are sloppy (LWS around
//! `;`, `=` and `,`; case-insensitive tokens; unquoted values the RFCs want quoted) and
//! strict where it matters: numbers are overflow-checked, lists and values are bounded
//! (see `MAX_*` below and in the modules), and control characters are refused so a
//! re-serialised value can never inject a header line. Every error is a
//! [`HeaderError`](crate::header_map::HeaderError) carrying the byte offset within the
//! value. No parser panics on any input.
//!
//! What it does not: read or write header *lines* (see [`crate::Headers`]), or make
//! protocol decisions (caching, transport choice, renumbering); the engines do that with
//! these values. Unknown parameters are kept verbatim so a proxy forwards what it did not
//! understand.
//!
//! | header | type | module |
//! |---|---|---|
//! | CSeq | [`CSeq`] | `cseq` |
//! | Session | [`Session`] | `session` |
//! | Transport | [`Transport`] | `transport` |
//! | Range | [`Range`] | `range` |
//! | RTP-Info | [`RtpInfo`] | `rtp_info` |
//! | Cache-Control | [`CacheControl`] | `cache_control` |
//! | Date, Expires, Last-Modified, If-Modified-Since | [`Date`], [`Expires`], [`LastModified`], [`IfModifiedSince`] | `date` |
//! | ETag, MTag, If-Match, If-None-Match | [`ETag`], [`MTag`], [`IfMatch`], [`IfNoneMatch`] | `entity_tag` |
//! | Via | [`Via`] | `via` |
//! | Require, Proxy-Require, Unsupported, Supported, Proxy-Supported | [`Require`], [`ProxyRequire`], [`Unsupported`], [`Supported`], [`ProxySupported`] | `feature_tags` |
//! | Public, Allow | [`Public`], [`Allow`] | `methods` |
//! | Content-Base, Content-Location, Location, Content-Length, Content-Type | [`ContentBase`], [`ContentLocation`], [`Location`], [`ContentLength`], [`ContentType`] | `content` |
//! | Scale, Speed, Blocksize | [`Scale`], [`Speed`], [`Blocksize`] | `playback` |
//! | Accept-Ranges | [`AcceptRanges`] | `accept_ranges` |
//! | Media-Properties | [`MediaProperties`] | `media_properties` |

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

mod accept_ranges;
mod cache_control;
mod content;
mod cseq;
mod date;
mod decimal;
mod entity_tag;
mod feature_tags;
mod media_properties;
mod methods;
mod param;
mod playback;
mod range;
mod rtp_info;
mod session;
mod syntax;
mod transport;
mod via;

pub use accept_ranges::{AcceptRanges, RangeUnit};
pub use cache_control::{CacheControl, CacheDirective};
pub use content::{
    ContentBase, ContentLength, ContentLocation, ContentType, Location, MAX_URL_LEN,
};
pub use cseq::CSeq;
pub use date::{Civil, Date, Expires, HttpDate, IfModifiedSince, LastModified, UtcTime};
pub use decimal::Decimal;
pub use entity_tag::{ETag, EntityTag, EntityTagList, IfMatch, IfNoneMatch, MTag};
pub use feature_tags::{ProxyRequire, ProxySupported, Require, Supported, Unsupported};
pub use media_properties::{MediaProperties, MediaProperty, ScaleEntry};
pub use methods::{Allow, Public};
pub use param::ExtensionParam;
pub use playback::{Blocksize, Scale, Speed};
pub use range::{NptTime, Range, RangeSpec, SmpteKind, SmpteTime, TimeRange};
pub use rtp_info::{RtpInfo, RtpInfoEntry};
pub use session::{Session, DEFAULT_SESSION_TIMEOUT_SECS, MAX_SESSION_ID_LEN};
pub use syntax::MAX_VALUE_LEN;
pub use transport::{
    ChannelRange, ConnectionReuse, Delivery, Destination, LowerTransport, PortRange, RtpProfile,
    SetupRole, Transport, TransportMode, TransportProtocol, TransportSpec, MAX_TRANSPORT_SPECS,
};
pub use via::{Via, ViaEntry};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header_map::{Headers, TypedHeader};
    use proptest::prelude::*;

    /// Parses `v` as `T`; if it parses, the value must survive a round trip and the
    /// error offsets of failures must lie within the value.
    fn check<T: TypedHeader + PartialEq + std::fmt::Debug>(v: &str) {
        match T::parse_value(v) {
            Ok(x) => {
                let again = T::parse_value(&x.to_value());
                assert_eq!(
                    again.as_ref(),
                    Ok(&x),
                    "{}: {v:?} -> {:?}",
                    T::NAME,
                    x.to_value()
                );
            }
            Err(e) => {
                assert_eq!(e.header, T::NAME);
                assert!(
                    e.offset <= v.len(),
                    "{}: offset {} past {v:?}",
                    T::NAME,
                    e.offset
                );
            }
        }
    }

    fn check_all(v: &str) {
        check::<CSeq>(v);
        check::<Session>(v);
        check::<Transport>(v);
        check::<Range>(v);
        check::<RtpInfo>(v);
        check::<CacheControl>(v);
        check::<Date>(v);
        check::<Expires>(v);
        check::<LastModified>(v);
        check::<IfModifiedSince>(v);
        check::<ETag>(v);
        check::<MTag>(v);
        check::<IfMatch>(v);
        check::<IfNoneMatch>(v);
        check::<Via>(v);
        check::<Require>(v);
        check::<ProxyRequire>(v);
        check::<Unsupported>(v);
        check::<Supported>(v);
        check::<ProxySupported>(v);
        check::<Public>(v);
        check::<Allow>(v);
        check::<ContentBase>(v);
        check::<ContentLocation>(v);
        check::<Location>(v);
        check::<ContentLength>(v);
        check::<ContentType>(v);
        check::<Scale>(v);
        check::<Speed>(v);
        check::<Blocksize>(v);
        check::<AcceptRanges>(v);
        check::<MediaProperties>(v);
    }

    /// Real values from ffmpeg, GStreamer, live555 and the RFCs, one per header family.
    const SAMPLES: &[&str] = &[
        "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=7F3A1B2C;mode=\"PLAY\"",
        "RTP/AVP;multicast;ttl=127;mode=\"PLAY\", RTP/AVP;unicast;client_port=3456-3457",
        "npt=0.000-596.480;time=19970123T143720Z",
        "smpte-25=10:07:00-10:07:33:05.01",
        "clock=19961108T142300Z-",
        "url=rtsp://h/p/stream=0;seq=1;rtptime=2,url=rtsp://h/p/stream=1;seq=3",
        "url=\"rtsp://e/a\" ssrc=0A13C760:seq=45102;rtptime=12345678",
        "no-cache, max-age=60, x-a=\"b,c\"",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "W/\"abc\", \"d\\\"e\"",
        "RTSP/2.0/TCP p.example:8554;received=1.2.3.4 (c (d))",
        "3C8DE1A5;timeout=65",
        "application/sdp; charset=\"utf-8\"",
        "Random-Access=2.5, Unlimited, Immutable, Scales=\"-20, 0.5:1.5, 4\"",
        "-2.50",
        "1.0-2.5",
    ];

    #[test]
    fn every_prefix_of_real_values_is_handled_by_every_type() {
        for s in SAMPLES {
            for end in (0..=s.len()).filter(|&i| s.is_char_boundary(i)) {
                check_all(&s[..end]);
                check_all(&s[end..]);
            }
        }
    }

    #[test]
    fn headers_typed_joins_repeated_lines() {
        let mut h = Headers::new();
        h.append("Via", "RTSP/1.0 a");
        h.append("via", "RTSP/1.0 b:554");
        let via = h.typed::<Via>().unwrap().unwrap();
        assert_eq!(via.0.len(), 2);
        h.append("Content-Length", "5");
        h.append("Content-Length", "5");
        assert_eq!(h.typed::<ContentLength>().unwrap().unwrap_err().offset, 1);
        h.set_typed(&CSeq(3));
        assert_eq!(h.get("CSeq"), Some("3"));
    }

    #[test]
    fn oversized_values_are_refused() {
        let big = "a".repeat(MAX_VALUE_LEN + 1);
        let e = Require::parse_value(&big).unwrap_err();
        assert_eq!(e.offset, MAX_VALUE_LEN);
        assert_eq!(Expires::parse_value(&big), Ok(Expires::AlreadyExpired));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_strings_never_panic(v in "\\PC{0,80}") {
            check_all(&v);
        }

        #[test]
        fn header_like_strings_never_panic(v in "[a-zA-Z0-9 \"=;,:/.\\-()\\[\\]\\\\@*]{0,60}") {
            check_all(&v);
        }

        #[test]
        fn mutated_samples_never_panic(
            i in 0..SAMPLES.len(),
            pos in any::<prop::sample::Index>(),
            c in any::<char>(),
        ) {
            let s = SAMPLES[i];
            let mut chars: Vec<char> = s.chars().collect();
            let p = pos.index(chars.len() + 1);
            chars.insert(p, c);
            let v: String = chars.into_iter().collect();
            check_all(&v);
        }
    }
}
