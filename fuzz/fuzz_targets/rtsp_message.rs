//! RTSP byte stream (requests, responses, interleaved frames mixed): decode in two
//! chunks, then every decoded item must serialize and decode back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_rtsp::parse::{Decoder, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(rest.len());
    let mut dec = Decoder::new(Limits::default());
    let mut items = Vec::new();
    for chunk in [&rest[..cut], &rest[cut..]] {
        dec.extend_from_slice(chunk);
        loop {
            match dec.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) | Err(_) => break,
            }
        }
    }
    for item in items {
        let bytes = item.to_bytes();
        let mut again = Decoder::new(Limits::default());
        again.extend_from_slice(&bytes);
        let back = again.next_item().expect("serialized item must parse");
        assert_eq!(back.as_ref(), Some(&item), "round trip changed the item");
    }
});
