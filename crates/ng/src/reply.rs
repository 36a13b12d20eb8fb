//! `ng` reply dictionaries and the exact strings SIP proxies act on.
//!
//! What it does: builds the four reply shapes (`ok` with optional `warning`, `error`
//! with `error-reason` and nothing else, `pong`, `load limit` with `message`) and holds
//! rtpengine's error strings (`daemon/control_ng.c`, `daemon/call_interfaces.c`)
//! byte for byte. Kamailio's `rtpengine` module tries the next relay on `load limit`
//! and on the errors [`RAN_OUT_OF_PORTS`] and [`SESSION_LIMIT`]; OpenSIPS also on the
//! other load-limit messages. Changing one of these strings breaks failover.
//!
//! What it does not: choose which reply a request gets (the command handlers do).

use super::bencode::{dict, Value};

/// Ports exhausted; Kamailio and OpenSIPS fail over on this error.
pub const RAN_OUT_OF_PORTS: &str = "Ran out of ports";
/// Session limit reached (also used while draining); both proxies fail over on it.
pub const SESSION_LIMIT: &str = "Parallel session limit reached";
/// `Unrecognized command`.
pub const UNRECOGNIZED_COMMAND: &str = "Unrecognized command";
/// Offer or answer without `sdp`.
pub const NO_SDP: &str = "No SDP body in message";
/// Command without `call-id`.
pub const NO_CALL_ID: &str = "No call-id in message";
/// Command without `from-tag`.
pub const NO_FROM_TAG: &str = "No from-tag in message";
/// Answer without `to-tag`.
pub const NO_TO_TAG: &str = "No to-tag in message";
/// Answer or query for a call the relay does not have.
pub const UNKNOWN_CALL_ID: &str = "Unknown call-id";
/// SDP that does not parse.
pub const SDP_PARSE_FAILED: &str = "Failed to parse SDP";
/// SDP without the lines a relay needs (a media section without an address).
pub const INCOMPLETE_SDP: &str = "Incomplete SDP specification";
/// Answer whose tags do not belong to the call.
pub const INVALID_DIALOGUE: &str = "Invalid dialogue association";
/// SDP that parsed but could not be rewritten.
pub const REWRITE_FAILED: &str = "Error rewriting SDP";
/// The `warning` (or, with `fatal`, the error) of a `delete` for an unknown call.
pub const CALL_NOT_FOUND: &str = "Call-ID not found or tags didn't match";

/// `{"result": "ok"}` plus `extra` entries.
pub fn ok(extra: Vec<(Vec<u8>, Value)>) -> Value {
    let mut entries = vec![(b"result".to_vec(), Value::str("ok"))];
    entries.extend(extra);
    Value::Dict(entries)
}

/// `{"result": "ok", "warning": ...}`.
pub fn ok_with_warning(warning: &str) -> Value {
    dict([
        ("result", Value::str("ok")),
        ("warning", Value::str(warning)),
    ])
}

/// `{"result": "error", "error-reason": ...}`.
pub fn error(reason: &str) -> Value {
    dict([
        ("result", Value::str("error")),
        ("error-reason", Value::str(reason)),
    ])
}

/// `{"result": "pong"}`.
pub fn pong() -> Value {
    dict([("result", Value::str("pong"))])
}

/// Overload: `load limit` with `message` when the client said it supports it, else the
/// legacy error rtpengine sends to older clients.
pub fn overload(supports_load_limit: bool, message: &str) -> Value {
    if supports_load_limit {
        dict([
            ("result", Value::str("load limit")),
            ("message", Value::str(message)),
        ])
    } else {
        error(SESSION_LIMIT)
    }
}

/// The value of `result` in a reply, for tests and counters.
pub fn result_of(reply: &Value) -> Option<&str> {
    reply.get("result").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_match_what_clients_parse() {
        assert_eq!(
            error(RAN_OUT_OF_PORTS).encode(),
            b"d6:result5:error12:error-reason16:Ran out of portse"
        );
        assert_eq!(pong().encode(), b"d6:result4:ponge");
        assert_eq!(
            overload(true, "Load limit exceeded").encode(),
            b"d6:result10:load limit7:message19:Load limit exceedede"
        );
        assert_eq!(
            overload(false, "Load limit exceeded"),
            error("Parallel session limit reached")
        );
        assert_eq!(
            ok_with_warning(CALL_NOT_FOUND).encode(),
            b"d6:result2:ok7:warning38:Call-ID not found or tags didn't matche"
        );
        assert_eq!(result_of(&ok(vec![])), Some("ok"));
    }
}
