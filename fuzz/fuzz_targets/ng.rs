//! rtpengine `ng` control messages: bencode that decodes must encode and decode back to
//! the same value and the same bytes' meaning; JSON likewise; every ng parser (datagram
//! framing, TCP framing, request reading) runs on arbitrary bytes; the JSON object
//! scanner and the bencode dictionary scanner agree with their decoders (under default
//! and under small limits) and give the same answer whole, resumed or byte by byte;
//! and TCP-ng framing of both encodings gives the same messages whether the stream
//! arrives whole or in chunks (the scanners resume).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_ng::bencode::{self, DecodeError, DictScanner, Limits, Value};
use mediagate_ng::framing;
use mediagate_ng::json::{self, ObjectScanner, Scan};

/// The JSON object scanner against the decoder, and resumed against one-shot.
fn check_scanner(data: &[u8], limits: &Limits) {
    let whole = json::scan_object(data, limits);
    let cut = data.len() / 2 + usize::from(data.last().copied().unwrap_or(0)) % 7;
    let mut resumed = ObjectScanner::new(limits);
    let first = resumed.scan(&data[..cut.min(data.len())]);
    assert!(
        first == Scan::Incomplete || first == whole,
        "{first:?} then {whole:?}"
    );
    assert_eq!(
        resumed.scan(data),
        whole,
        "resumed scan differs at cut {cut}"
    );
    match whole {
        Scan::Complete(n) => {
            assert_eq!(data.get(n - 1), Some(&b'}'));
            assert_eq!(json::scan_object(&data[..n - 1], limits), Scan::Incomplete);
        }
        Scan::Error { offset, .. } => assert!(offset < data.len()),
        Scan::Incomplete => {}
    }
    // Framing hands the scanner only what starts with `{` (the decoder would also
    // take leading whitespace).
    if data.first() == Some(&b'{') {
        let decoded = json::decode(data, limits);
        if let Scan::Error { .. } = whole {
            assert!(
                decoded.is_err(),
                "the scanner refused what the decoder took"
            );
        }
        if let Ok(value @ Value::Dict(_)) = decoded {
            let Scan::Complete(n) = whole else {
                panic!("decoded, but the scanner said {whole:?}");
            };
            assert!(data[n..].iter().all(u8::is_ascii_whitespace));
            assert_eq!(json::decode(&data[..n], limits), Ok(value));
        }
    }
}

/// The bencode dictionary scanner against the decoder, and resumed or trickled
/// against one-shot.
fn check_dict_scanner(data: &[u8], limits: &Limits) {
    let whole = bencode::scan_dict(data, limits);
    let cut = data.len() / 3 + usize::from(data.last().copied().unwrap_or(0)) % 11;
    let mut resumed = DictScanner::new(limits);
    let first = resumed.scan(&data[..cut.min(data.len())]);
    assert!(
        first == bencode::Scan::Incomplete || first == whole,
        "{first:?} then {whole:?}"
    );
    assert_eq!(
        resumed.scan(data),
        whole,
        "resumed scan differs at cut {cut}"
    );
    let mut trickled = DictScanner::new(limits);
    let answer = (0..=data.len())
        .map(|end| trickled.scan(&data[..end]))
        .find(|a| *a != bencode::Scan::Incomplete)
        .unwrap_or(bencode::Scan::Incomplete);
    assert_eq!(answer, whole, "byte-by-byte scan differs");
    let decoded = bencode::decode(data, limits);
    match whole {
        bencode::Scan::Complete(n) => {
            assert_eq!(data.get(n - 1), Some(&b'e'));
            assert_eq!(
                bencode::scan_dict(&data[..n - 1], limits),
                bencode::Scan::Incomplete
            );
            // The scan checked everything but duplicate keys.
            match bencode::decode(&data[..n], limits) {
                Ok((_, used)) => assert_eq!(used, n),
                Err(DecodeError::Invalid { reason, .. }) => {
                    assert_eq!(
                        reason, "duplicate dictionary key",
                        "scanned whole, then {reason}"
                    );
                }
                Err(DecodeError::Incomplete) => panic!("scanned whole, decoded incomplete"),
            }
        }
        bencode::Scan::Error { offset, .. } => {
            assert!(offset <= data.len(), "error past the bytes given");
            if data.first() == Some(&b'd') {
                assert!(
                    decoded.is_err(),
                    "the scanner refused what the decoder took"
                );
            }
        }
        bencode::Scan::Incomplete => assert!(decoded.is_err(), "decoded, but incomplete scan"),
    }
    if let (Some(b'd'), Ok((_, used))) = (data.first(), &decoded) {
        assert_eq!(
            whole,
            bencode::Scan::Complete(*used),
            "decoded {used} bytes"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    mediagate_ng::exercise_parsers(data);
    let limits = Limits::default();
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
    check_scanner(data, &limits);
    // Bencode scanning, also on the bytes as a dictionary's inside and under limits
    // small enough for the input to reach them.
    let seed = usize::from(data.last().copied().unwrap_or(0));
    let small = Limits {
        max_depth: 1 + seed % 6,
        max_values: 1 + seed / 6 % 40,
        max_len: 1 + data.len() / 2,
    };
    let mut dict = Vec::with_capacity(data.len() + 1);
    dict.push(b'd');
    dict.extend_from_slice(data);
    for (bytes, limits) in [(data, &limits), (&dict[..], &limits), (&dict[..], &small)] {
        check_dict_scanner(bytes, limits);
    }
    // TCP-ng: chunked (1 to 256 bytes per read, from the first byte) and whole agree.
    let chunk = usize::from(data.first().copied().unwrap_or(0)) + 1;
    assert_eq!(
        framing::frame_stream(data, chunk, &limits),
        framing::frame_stream(data, data.len(), &limits),
        "framing depends on how the stream was cut ({chunk}-byte reads)"
    );
});
