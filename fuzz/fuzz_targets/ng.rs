//! rtpengine `ng` control messages: bencode that decodes must encode and decode back to
//! the same value and the same bytes' meaning; JSON likewise; and every ng parser
//! (datagram framing, TCP framing, request reading) runs on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_relay::ng::{bencode, json};

fuzz_target!(|data: &[u8]| {
    mediagate_relay::exercise_ng(data);
    let limits = bencode::Limits::default();
    if let Ok((value, used)) = bencode::decode(data, &limits) {
        assert!(used <= data.len());
        let bytes = value.encode();
        let back = bencode::decode_exact(&bytes, &limits).expect("our encoding must decode");
        assert_eq!(back, value, "bencode round trip changed the value");
        assert_eq!(back.encode(), bytes, "bencode encoding is not canonical");
    }
    if let Ok(value) = json::decode(data, &limits) {
        let bytes = json::encode(&value);
        let back = json::decode(&bytes, &limits).expect("our JSON must decode");
        assert_eq!(back, value, "JSON round trip changed the value");
    }
});
