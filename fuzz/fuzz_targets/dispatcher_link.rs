//! The dispatcher link's frames (`mediagate_link::wire`): arbitrary bytes never
//! panic; whatever decodes encodes back to the same frame's meaning; the stream reader
//! gives the same messages and the same verdict whether bytes arrive whole or in two
//! pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_link::wire::{decode_frame, FrameReader};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((message, used))) = decode_frame(data) {
        assert!(used <= data.len());
        let again = message.encode().expect("a decoded message fits a frame");
        let (back, n) = decode_frame(&again)
            .expect("re-encoded frame decodes")
            .expect("re-encoded frame is whole");
        assert_eq!(back, message);
        assert_eq!(n, again.len());
    }
    let whole = drain(&[data]);
    let cut = data.len() / 2 + usize::from(data.last().copied().unwrap_or(0)) % 7;
    let cut = cut.min(data.len());
    assert_eq!(drain(&[&data[..cut], &data[cut..]]), whole, "cut at {cut}");
});

/// Every message the reader gives for `pieces` pushed one after another, and whether
/// it ended in an error.
fn drain(pieces: &[&[u8]]) -> (Vec<mediagate_link::wire::Message>, bool) {
    let mut reader = FrameReader::new();
    let mut out = Vec::new();
    for piece in pieces {
        reader.push(piece);
        loop {
            match reader.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}
