//! The one error type shared by the RTP and RTCP builders.
//!
//! Builders write into a caller buffer and never allocate; they fail only when the
//! buffer is too small or the values cannot be encoded in the RFC 3550 wire fields.

/// Why a packet could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The output buffer cannot hold the packet.
    #[error("output buffer too small: the packet needs {needed} bytes but only {available} are available")]
    BufferTooSmall {
        /// Bytes the packet needs (for a compound: the total so far).
        needed: usize,
        /// Bytes the caller's buffer has.
        available: usize,
    },
    /// A field value does not fit its wire encoding.
    #[error("{field} value {value} is out of range (maximum {max})")]
    OutOfRange {
        /// Which field, e.g. "payload type" or "CSRC count".
        field: &'static str,
        /// The value that was given.
        value: usize,
        /// The largest value the field can carry.
        max: usize,
    },
    /// Data that must be a multiple of 4 bytes is not.
    #[error("{field} is {len} bytes long; it must be a multiple of 4 bytes")]
    NotWordAligned {
        /// Which field, e.g. "header extension data".
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// RFC 3550 §6.1: a compound RTCP packet must start with an SR or RR.
    #[error("a compound RTCP packet must start with a sender or receiver report; write one first")]
    CompoundMustStartWithReport,
    /// `finish` was called on a compound builder with nothing in it.
    #[error("the compound RTCP packet is empty")]
    EmptyCompound,
}

#[cfg(test)]
mod tests {
    use super::BuildError;

    #[test]
    fn messages_say_what_was_wrong() {
        let e = BuildError::BufferTooSmall {
            needed: 40,
            available: 12,
        };
        assert_eq!(
            e.to_string(),
            "output buffer too small: the packet needs 40 bytes but only 12 are available"
        );
        let e = BuildError::OutOfRange {
            field: "payload type",
            value: 128,
            max: 127,
        };
        assert_eq!(
            e.to_string(),
            "payload type value 128 is out of range (maximum 127)"
        );
    }
}
