//! RTSP-over-HTTP tunnel POST body: base64 chunks decoded incrementally must give the
//! same bytes however the input is split, and re-encoding the decoded bytes must decode
//! back to them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_rtsp::tunnel::{encode_post_chunk, PostBodyDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut whole = Vec::new();
    let whole_ok = PostBodyDecoder::new().decode(rest, &mut whole).is_ok();
    let cut = usize::from(split).min(rest.len());
    let mut parts = Vec::new();
    let mut dec = PostBodyDecoder::new();
    let parts_ok = dec.decode(&rest[..cut], &mut parts).is_ok()
        && dec.decode(&rest[cut..], &mut parts).is_ok();
    assert_eq!(whole_ok, parts_ok, "split changed success");
    if whole_ok {
        assert_eq!(whole, parts, "split changed output");
        let mut encoded = Vec::new();
        encode_post_chunk(&whole, &mut encoded);
        let mut back = Vec::new();
        PostBodyDecoder::new()
            .decode(&encoded, &mut back)
            .expect("our encoding must decode");
        assert_eq!(back, whole);
    }
});
