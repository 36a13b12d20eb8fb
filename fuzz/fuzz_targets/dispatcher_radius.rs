//! The RADIUS accounting client's response check: any datagram is accepted or refused
//! with an error whose offset lies inside it, never a panic; a datagram accepted for a
//! request is refused for the same request under another secret.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_dispatcher::radius::{check_response, encode_request, Attribute, ResponseError};

fuzz_target!(|data: &[u8]| {
    let request = encode_request(
        data.get(1).copied().unwrap_or(0),
        &[Attribute {
            code: 44,
            value: b"call".to_vec(),
        }],
        b"secret",
    )
    .expect("a small request encodes");
    match check_response(data, &request, b"secret") {
        Ok(()) => assert!(check_response(data, &request, b"other").is_err()),
        Err(ResponseError::Truncated { offset } | ResponseError::BadAttribute { offset }) => {
            assert!(offset <= data.len());
        }
        Err(_) => {}
    }
});
