//! The dispatcher's MediaProxy request parser: any bytes give a request, "need more" or
//! an error whose offset is inside the input, never a panic; a request never claims
//! more bytes than it was given, always has a Call-ID, keeps to the stream limit, and
//! translates into an `ng` command.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_dispatcher::mediaproxy::{parse_request, to_ng, Limits, Parsed};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_line: 256,
        max_headers: 8,
        max_media: 4,
    };
    match parse_request(data, &limits) {
        Ok(Parsed::Incomplete) => {}
        Ok(Parsed::Request(request, used)) => {
            assert!(used <= data.len(), "used {used} of {}", data.len());
            assert!(!request.call_id.is_empty());
            assert!(request.media.len() <= limits.max_media);
            let _ = to_ng(&request);
        }
        Err(e) => assert!(e.offset < data.len(), "offset {} of {}", e.offset, data.len()),
    }
});
