//! The SIP proxy's JSON-RPC replies to the dispatcher's dialog end: any datagram is a
//! result or an error whose offset lies inside it, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_dispatcher::dialog_end::{check_reply, RpcError, MAX_REPLY};

fuzz_target!(|data: &[u8]| {
    match check_reply(data, 7) {
        Err(RpcError::Invalid { offset, .. }) => assert!(offset <= data.len()),
        Err(RpcError::TooLong(n)) => assert!(n > MAX_REPLY),
        Ok(_) | Err(_) => {}
    }
});
