//! Typed RTSP header values and authentication headers: parse, and anything that
//! parses must serialize and parse back to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_rtsp::auth::{parse_challenges, parse_credentials};
use mediagate_rtsp::headers::*;
use mediagate_rtsp::TypedHeader;

fn round_trip<H: TypedHeader + PartialEq + std::fmt::Debug>(v: &str) {
    if let Ok(h) = H::parse_value(v) {
        let text = h.to_value();
        let back = H::parse_value(&text).unwrap_or_else(|e| panic!("{} {text:?}: {e}", H::NAME));
        assert_eq!(back, h, "{} round trip via {text:?}", H::NAME);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<CSeq>(v);
    round_trip::<Session>(v);
    round_trip::<Transport>(v);
    round_trip::<Range>(v);
    round_trip::<RtpInfo>(v);
    round_trip::<CacheControl>(v);
    round_trip::<Expires>(v);
    round_trip::<LastModified>(v);
    round_trip::<IfModifiedSince>(v);
    round_trip::<ETag>(v);
    round_trip::<MTag>(v);
    round_trip::<IfMatch>(v);
    round_trip::<IfNoneMatch>(v);
    round_trip::<Via>(v);
    round_trip::<Require>(v);
    round_trip::<ProxyRequire>(v);
    round_trip::<Unsupported>(v);
    round_trip::<Supported>(v);
    round_trip::<Public>(v);
    round_trip::<ContentBase>(v);
    round_trip::<ContentLength>(v);
    round_trip::<ContentType>(v);
    round_trip::<Scale>(v);
    round_trip::<Speed>(v);
    round_trip::<AcceptRanges>(v);
    round_trip::<MediaProperties>(v);
    round_trip::<Blocksize>(v);
    if let Ok(ch) = parse_challenges(&[v]) {
        let text: Vec<String> = ch.iter().map(|c| c.to_string()).collect();
        let refs: Vec<&str> = text.iter().map(String::as_str).collect();
        assert_eq!(
            parse_challenges(&refs).expect("printed challenges parse"),
            ch
        );
    }
    if let Ok(c) = parse_credentials(v) {
        assert_eq!(
            parse_credentials(&c.to_string()).expect("printed credentials parse"),
            c
        );
    }
});
