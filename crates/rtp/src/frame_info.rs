//! What keyframe detection reports about one video RTP payload, shared by
//! [`crate::h264`] and [`crate::h265`].
//!
//! What it does: defines [`FrameInfo`] (keyframe start, parameter sets seen, how the
//! payload is packetized) and [`NalError`]. What it does not: depacketize or reassemble
//! NAL units; an edge only needs to know where a new viewer may start.

/// How the NAL units are packed in one RTP payload (RFC 6184 §5.2, RFC 7798 §4.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Packetization {
    /// One whole NAL unit.
    #[default]
    SingleNal,
    /// Several whole NAL units (STAP-A/B, MTAP16/24, H.265 AP).
    Aggregation,
    /// First fragment of a NAL unit (FU with the S bit).
    FragmentStart,
    /// A fragment that neither starts nor ends its NAL unit.
    FragmentMiddle,
    /// Last fragment of a NAL unit (FU with the E bit).
    FragmentEnd,
}

/// Facts about one video RTP payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// The first slice of a random-access picture starts in this payload: H.264 IDR
    /// (type 5) with `first_mb_in_slice` = 0, or H.265 IRAP (types 16..=21) with
    /// `first_slice_segment_in_pic_flag` set. A new viewer can start decoding here
    /// once it has the parameter sets. Later slices of the same picture do not count,
    /// so a multi-slice keyframe yields one start, not one per slice.
    pub keyframe_start: bool,
    /// Some IDR/IRAP slice (first or not) starts in this payload.
    pub keyframe_slice: bool,
    /// An H.265 VPS (type 32) starts in this payload.
    pub has_vps: bool,
    /// An SPS (H.264 type 7, H.265 type 33) starts in this payload.
    pub has_sps: bool,
    /// A PPS (H.264 type 8, H.265 type 34) starts in this payload.
    pub has_pps: bool,
    /// How the payload is packetized.
    pub packetization: Packetization,
    /// NAL units that start in this payload (0 for a continuing fragment).
    pub nal_units: u16,
    /// Type of the first NAL unit that starts here (the original type for an FU).
    pub first_nal_type: Option<u8>,
}

impl FrameInfo {
    pub(crate) fn note_nal_start(&mut self, nal_type: u8) {
        self.nal_units = self.nal_units.saturating_add(1);
        self.first_nal_type.get_or_insert(nal_type);
    }
}

/// Why a payload could not be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NalError {
    /// The payload has no NAL unit header.
    #[error("empty video RTP payload: no NAL unit header")]
    Empty,
    /// A header or size field points past the end of the payload.
    #[error("video payload truncated: the {context} at byte {offset} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// Offset in the payload.
        offset: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes left from `offset`.
        available: usize,
        /// What was being read.
        context: &'static str,
    },
    /// A NAL unit type the RTP payload format leaves undefined.
    #[error("NAL unit type {nal_type} at byte {offset} is not defined for RTP payloads")]
    UndefinedType {
        /// Offset of the NAL unit header.
        offset: usize,
        /// The type found.
        nal_type: u8,
    },
    /// Fields contradict the payload format.
    #[error("malformed video payload at byte {offset}: {context}")]
    Malformed {
        /// Offset of the offending field.
        offset: usize,
        /// What is wrong.
        context: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::NalError;

    #[test]
    fn error_messages_point_into_the_payload() {
        let e = NalError::Truncated {
            offset: 3,
            needed: 9,
            available: 2,
            context: "aggregated NAL unit",
        };
        assert_eq!(
            e.to_string(),
            "video payload truncated: the aggregated NAL unit at byte 3 needs 9 bytes, only 2 remain"
        );
        let e = NalError::UndefinedType {
            offset: 0,
            nal_type: 30,
        };
        assert_eq!(
            e.to_string(),
            "NAL unit type 30 at byte 0 is not defined for RTP payloads"
        );
    }
}
