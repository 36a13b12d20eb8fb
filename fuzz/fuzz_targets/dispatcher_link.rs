//! The dispatcher link's frames (`mediagate_link::wire`): arbitrary bytes never
//! panic; whatever decodes encodes back to the same frame's meaning; the stream reader
//! gives the same messages and the same verdict whether bytes arrive whole or in two
//! pieces; and link 1.1's `stats` answers cut from arbitrary call texts encode into
//! frames that decode and join back to the texts (less those too large for a frame).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_link::wire::{decode_frame, stats_messages, FrameReader, Message};

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
    stats_round_trip(data);
});

/// The bytes as call texts (split at zero bytes), through `stats_messages` and back.
fn stats_round_trip(data: &[u8]) {
    let calls: Vec<String> = data
        .split(|&b| b == 0)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let (messages, left_out) = stats_messages(7, "0.1.0", 1, 2, calls.clone());
    assert_eq!(left_out, 0, "fuzz inputs are far below a frame");
    let mut stream = Vec::new();
    for m in &messages {
        m.encode_into(&mut stream).expect("a stats message fits a frame");
    }
    let (back, broken) = drain(&[&stream]);
    assert!(!broken);
    let mut joined = Vec::new();
    for (i, m) in back.iter().enumerate() {
        let Message::Stats(s) = m else {
            panic!("not stats: {m:?}")
        };
        assert_eq!(s.more, i + 1 < back.len());
        joined.extend(s.calls.iter().cloned());
    }
    assert_eq!(joined, calls);
}

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
