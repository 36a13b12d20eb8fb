//! SDP: whatever parses must serialize byte-exact and parse back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_sdp::SessionDescription;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = SessionDescription::parse(data) {
        let out = sdp.to_vec();
        assert_eq!(out, data, "unmodified SDP must serialize byte-exact");
        let again = SessionDescription::parse(&out).expect("serialized SDP must parse");
        assert_eq!(again.to_vec(), out);
        for m in sdp.media() {
            let _ = (m.port(), m.rtpmaps().count(), m.control(), m.direction());
        }
    }
});
