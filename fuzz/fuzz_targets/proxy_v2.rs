//! PROXY v2 headers: arbitrary bytes (behind the signature half the time, so the
//! decoder gets past its first check) must decode without panicking, with a consumed
//! length inside the buffer and an error offset inside it; a header that decodes must
//! encode back to the same bytes when it carries addresses (the spec lets a receiver
//! skip an unspecified block, so those are not compared), and feeding its bytes cut
//! at any point must ask for more.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_balancer::proxy_v2::{self, Addresses, DecodeErrorReason, Decoded};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut buf = Vec::with_capacity(rest.len() + 12);
    if mode & 1 == 1 {
        buf.extend_from_slice(&proxy_v2::SIGNATURE);
    }
    buf.extend_from_slice(rest);
    match proxy_v2::decode(&buf) {
        Ok(Decoded::Done { header, consumed }) => {
            assert!(consumed <= buf.len());
            if !matches!(header.addresses, Addresses::Unspec) {
                let again = header.to_bytes().expect("a decoded header encodes");
                let Decoded::Done {
                    header: h2,
                    consumed: c2,
                } = proxy_v2::decode(&again).expect("re-decode")
                else {
                    panic!("re-encoded header incomplete");
                };
                assert_eq!(h2, header);
                assert_eq!(c2, again.len());
                for cut in [0, again.len() / 2, again.len() - 1] {
                    assert!(matches!(
                        proxy_v2::decode(&again[..cut]),
                        Ok(Decoded::NeedMore { .. })
                    ));
                }
            }
        }
        Ok(Decoded::NeedMore { need }) => {
            assert!(need > buf.len());
            assert!(need <= proxy_v2::FIXED_LEN + proxy_v2::MAX_PAYLOAD);
            let e = proxy_v2::decode_datagram(&buf).unwrap_err();
            assert_eq!(e.reason, DecodeErrorReason::TruncatedDatagram);
        }
        Err(e) => assert!(e.offset <= buf.len()),
    }
});
