//! The management interface's request lines: any bytes give a request, "need more" or
//! "too long", never a panic; a request never consumes past its own line feed or the
//! line cap, and "need more" only while the buffer is within the cap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_dispatcher::mgmt::{parse_request, Parsed, MAX_LINE};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match parse_request(rest) {
            Parsed::Incomplete => {
                assert!(rest.len() <= MAX_LINE + 1);
                break;
            }
            Parsed::TooLong { offset } => {
                assert!(offset < rest.len());
                break;
            }
            Parsed::Request { consumed, .. } => {
                assert!(consumed >= 1 && consumed <= rest.len().min(MAX_LINE + 2));
                assert_eq!(rest[consumed - 1], b'\n');
                rest = &rest[consumed..];
            }
        }
    }
});
