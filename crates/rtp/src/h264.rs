//! H.264 keyframe and parameter-set detection in RTP payloads (RFC 6184 §5.2–§5.8).
//!
//! What it does: reads the NAL unit header(s) of one payload, looking inside STAP-A,
//! STAP-B, MTAP16 and MTAP24 aggregation packets and at the first fragment (S bit) of
//! FU-A/FU-B, and reports IDR slices (type 5, and whether it is the picture's first
//! slice: `first_mb_in_slice` = 0, the leading `1` bit of the slice header), SPS (7)
//! and PPS (8). Every size field is checked against the payload; garbage yields an
//! error, never a panic.
//!
//! What it does not: depacketize or reassemble NAL units, parse SPS/PPS contents, or
//! recognise open-GOP keyframes (I slices with a recovery-point SEI) as keyframes.
//! The forbidden bit and NRI are ignored.

use crate::frame_info::{FrameInfo, NalError, Packetization};
use crate::reader::Reader;

/// IDR slice.
pub const NAL_IDR: u8 = 5;
/// Sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// Picture parameter set.
pub const NAL_PPS: u8 = 8;
/// Single-time aggregation packet without DON.
pub const STAP_A: u8 = 24;
/// Single-time aggregation packet with DON.
pub const STAP_B: u8 = 25;
/// Multi-time aggregation packet, 16-bit timestamp offsets.
pub const MTAP16: u8 = 26;
/// Multi-time aggregation packet, 24-bit timestamp offsets.
pub const MTAP24: u8 = 27;
/// Fragmentation unit without DON.
pub const FU_A: u8 = 28;
/// Fragmentation unit with DON (first fragment only).
pub const FU_B: u8 = 29;

/// True if the first slice of an IDR picture starts in `payload`; false for anything
/// else, including truncated or malformed payloads.
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    classify(payload).is_ok_and(|info| info.keyframe_start)
}

fn truncated(r: &Reader<'_>, needed: usize, context: &'static str) -> NalError {
    NalError::Truncated {
        offset: r.pos(),
        needed,
        available: r.remaining(),
        context,
    }
}

/// Records one NAL unit that starts here; `after_header` is what follows its header.
fn note_nal(info: &mut FrameInfo, nal_type: u8, after_header: &[u8]) {
    info.note_nal_start(nal_type);
    match nal_type {
        NAL_IDR => {
            info.keyframe_slice = true;
            // first_mb_in_slice is ue(v); the value 0 is coded as a single `1` bit.
            if after_header.first().is_some_and(|b| b & 0x80 != 0) {
                info.keyframe_start = true;
            }
        }
        NAL_SPS => info.has_sps = true,
        NAL_PPS => info.has_pps = true,
        _ => {}
    }
}

/// Checks that a type found inside an aggregation or FU is a plain NAL unit type.
fn plain_nal_type(nal_type: u8, offset: usize, inside: &'static str) -> Result<(), NalError> {
    match nal_type {
        1..=23 => Ok(()),
        0 | 30 | 31 => Err(NalError::UndefinedType { offset, nal_type }),
        _ => Err(NalError::Malformed {
            offset,
            context: inside,
        }),
    }
}

/// Classifies one H.264 RTP payload.
pub fn classify(payload: &[u8]) -> Result<FrameInfo, NalError> {
    let mut r = Reader::new(payload);
    let header = r.u8().ok_or(NalError::Empty)?;
    let nal_type = header & 0x1f;
    let mut info = FrameInfo::default();
    match nal_type {
        1..=23 => note_nal(&mut info, nal_type, r.rest()),
        STAP_A | STAP_B | MTAP16 | MTAP24 => {
            info.packetization = Packetization::Aggregation;
            if nal_type != STAP_A {
                r.u16()
                    .ok_or_else(|| truncated(&r, 2, "decoding order number"))?;
            }
            // MTAP units carry DOND (1 byte) and a 16- or 24-bit timestamp offset
            // between the size and the NAL unit; the size counts the NAL unit only.
            let unit_extra = match nal_type {
                MTAP16 => 3,
                MTAP24 => 4,
                _ => 0,
            };
            if r.remaining() == 0 {
                return Err(NalError::Malformed {
                    offset: r.pos(),
                    context: "aggregation packet without any aggregation unit",
                });
            }
            while r.remaining() > 0 {
                let size = r
                    .u16()
                    .ok_or_else(|| truncated(&r, 2, "aggregation unit size"))?;
                r.take(unit_extra)
                    .ok_or_else(|| truncated(&r, unit_extra, "MTAP DOND and timestamp offset"))?;
                let at = r.pos();
                let nal = r
                    .take(usize::from(size))
                    .ok_or_else(|| truncated(&r, usize::from(size), "aggregated NAL unit"))?;
                let (&h, rest) = nal.split_first().ok_or(NalError::Malformed {
                    offset: at,
                    context: "aggregation unit of size 0",
                })?;
                let t = h & 0x1f;
                plain_nal_type(
                    t,
                    at,
                    "aggregation or fragment nested in an aggregation packet",
                )?;
                note_nal(&mut info, t, rest);
            }
        }
        FU_A | FU_B => {
            let fu = r.u8().ok_or_else(|| truncated(&r, 1, "FU header"))?;
            let (start, end, t) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x1f);
            info.packetization = match (start, end) {
                (true, true) => {
                    return Err(NalError::Malformed {
                        offset: 1,
                        context: "FU header has both the start and the end bit set",
                    })
                }
                (true, false) => Packetization::FragmentStart,
                (false, true) => Packetization::FragmentEnd,
                (false, false) => Packetization::FragmentMiddle,
            };
            if nal_type == FU_B && !start {
                return Err(NalError::Malformed {
                    offset: 1,
                    context: "FU-B is only allowed for the first fragment (S bit)",
                });
            }
            plain_nal_type(t, 1, "FU fragments an aggregation packet or another FU")?;
            if start {
                if nal_type == FU_B {
                    r.u16()
                        .ok_or_else(|| truncated(&r, 2, "decoding order number"))?;
                }
                note_nal(&mut info, t, r.rest());
            }
        }
        _ => {
            return Err(NalError::UndefinedType {
                offset: 0,
                nal_type,
            })
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_packet::RtpPacket;
    use crate::test_vectors::*;
    use proptest::prelude::*;

    fn payload_of(vector: &str) -> Vec<u8> {
        let b = hex(vector);
        RtpPacket::parse(&b).unwrap().payload().to_vec()
    }

    fn info(vector: &str) -> FrameInfo {
        classify(&payload_of(vector)).unwrap()
    }

    #[test]
    fn ffmpeg_single_nal_units() {
        assert_eq!(
            info(FFMPEG_H264_SPS),
            FrameInfo {
                has_sps: true,
                nal_units: 1,
                first_nal_type: Some(7),
                ..FrameInfo::default()
            }
        );
        assert_eq!(
            info(FFMPEG_H264_PPS),
            FrameInfo {
                has_pps: true,
                nal_units: 1,
                first_nal_type: Some(8),
                ..FrameInfo::default()
            }
        );
        assert_eq!(
            info(FFMPEG_H264_IDR_SINGLE),
            FrameInfo {
                keyframe_start: true,
                keyframe_slice: true,
                nal_units: 1,
                first_nal_type: Some(5),
                ..FrameInfo::default()
            }
        );
        assert_eq!(info(FFMPEG_H264_P_SLICE).first_nal_type, Some(1));
        assert!(!is_keyframe_start(&payload_of(FFMPEG_H264_P_SLICE)));
    }

    #[test]
    fn ffmpeg_stap_a_with_sps_pps_idr() {
        assert_eq!(
            info(FFMPEG_H264_STAP_A_SPS_PPS_IDR),
            FrameInfo {
                keyframe_start: true,
                keyframe_slice: true,
                has_vps: false,
                has_sps: true,
                has_pps: true,
                packetization: Packetization::Aggregation,
                nal_units: 3,
                first_nal_type: Some(7),
            }
        );
        let i = info(FFMPEG_H264_STAP_A_SPS_PPS);
        assert!(i.has_sps && i.has_pps && !i.keyframe_start);
        assert_eq!(i.nal_units, 2);
    }

    #[test]
    fn ffmpeg_fu_a_only_the_start_counts() {
        let start = info(FFMPEG_H264_FU_A_IDR_START);
        assert_eq!(start.packetization, Packetization::FragmentStart);
        assert!(start.keyframe_start);
        assert_eq!(start.first_nal_type, Some(5));
        let middle = info(FFMPEG_H264_FU_A_IDR_MIDDLE);
        assert_eq!(
            middle,
            FrameInfo {
                packetization: Packetization::FragmentMiddle,
                ..FrameInfo::default()
            }
        );
        let end = info(FFMPEG_H264_FU_A_IDR_END);
        assert_eq!(end.packetization, Packetization::FragmentEnd);
        assert!(!end.keyframe_start);
        let p = info(FFMPEG_H264_FU_A_P_START);
        assert_eq!(p.first_nal_type, Some(1));
        assert!(!p.keyframe_start && !p.keyframe_slice);
    }

    #[test]
    fn later_idr_slices_are_not_a_keyframe_start() {
        // first_mb_in_slice = 1 is ue(v) "010": top bit clear.
        let i = classify(&[0x65, 0x40, 0x00]).unwrap();
        assert!(i.keyframe_slice && !i.keyframe_start);
        // Same inside an FU-A start.
        let i = classify(&[0x7c, 0x85, 0x40]).unwrap();
        assert!(i.keyframe_slice && !i.keyframe_start);
        // An IDR header with no slice header byte at all.
        assert!(!is_keyframe_start(&[0x65]));
    }

    #[test]
    fn stap_b_mtap_and_fu_b_skip_their_extra_fields() {
        // STAP-B: DON 0x0001, then SPS (size 2) and IDR (size 2).
        let i = classify(&[0x19, 0, 1, 0, 2, 0x67, 0, 0, 2, 0x65, 0x80]).unwrap();
        assert!(i.has_sps && i.keyframe_start);
        assert_eq!(i.nal_units, 2);
        // MTAP16: DONB, then size 2, DOND, TS offset (2), IDR.
        let i = classify(&[0x1a, 0, 1, 0, 2, 9, 0, 0, 0x65, 0x80]).unwrap();
        assert!(i.keyframe_start);
        // MTAP24: TS offset is 3 bytes.
        let i = classify(&[0x1b, 0, 1, 0, 2, 9, 0, 0, 0, 0x68, 0xff]).unwrap();
        assert!(i.has_pps && !i.keyframe_start);
        // FU-B start: DON between FU header and slice data.
        let i = classify(&[0x1d, 0x85, 0x00, 0x07, 0x80]).unwrap();
        assert!(i.keyframe_start);
        assert_eq!(i.packetization, Packetization::FragmentStart);
    }

    #[test]
    fn malformed_and_undefined_payloads_are_errors() {
        assert_eq!(classify(&[]), Err(NalError::Empty));
        assert_eq!(
            classify(&[0x00]),
            Err(NalError::UndefinedType {
                offset: 0,
                nal_type: 0
            })
        );
        assert_eq!(
            classify(&[0x1e]),
            Err(NalError::UndefinedType {
                offset: 0,
                nal_type: 30
            })
        );
        assert_eq!(
            classify(&[0x7c, 0xc5, 0x88]),
            Err(NalError::Malformed {
                offset: 1,
                context: "FU header has both the start and the end bit set"
            })
        );
        // A STAP-A inside a STAP-A.
        assert!(matches!(
            classify(&[0x18, 0, 2, 0x18, 0]),
            Err(NalError::Malformed { offset: 3, .. })
        ));
        // Size runs past the end.
        assert_eq!(
            classify(&[0x18, 0, 9, 0x67, 0]),
            Err(NalError::Truncated {
                offset: 3,
                needed: 9,
                available: 2,
                context: "aggregated NAL unit"
            })
        );
        assert!(matches!(
            classify(&[0x18, 0, 0]),
            Err(NalError::Malformed { offset: 3, .. })
        ));
        assert!(matches!(classify(&[0x1c]), Err(NalError::Truncated { .. })));
        assert!(matches!(
            classify(&[0x1d, 0x05]),
            Err(NalError::Malformed { offset: 1, .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_stap_a_is_ok_at_unit_boundaries_else_an_error() {
        let payload = payload_of(FFMPEG_H264_STAP_A_SPS_PPS_IDR);
        // Units: SPS (2 + 24 bytes), PPS (2 + 4), IDR (2 + 43) after the 1-byte header.
        let boundaries = [27, 33, 78];
        assert_eq!(payload.len(), 78);
        for n in 1..=payload.len() {
            let result = classify(&payload[..n]);
            if boundaries.contains(&n) {
                let i = result.unwrap();
                assert_eq!(
                    usize::from(i.nal_units),
                    1 + boundaries.iter().position(|&b| b == n).unwrap()
                );
            } else if n == 1 {
                assert!(matches!(result, Err(NalError::Malformed { offset: 1, .. })));
            } else {
                assert!(
                    matches!(result, Err(NalError::Truncated { .. })),
                    "prefix {n}: {result:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(payload in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(i) = classify(&payload) {
                prop_assert!(!i.keyframe_start || i.keyframe_slice);
                prop_assert!(!i.has_vps);
                prop_assert!(usize::from(i.nal_units) <= payload.len());
            }
            let _ = is_keyframe_start(&payload);
        }

        #[test]
        fn arbitrary_aggregates_never_panic(t in prop::sample::select(vec![24u8, 25, 26, 27, 28, 29]), rest in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut payload = vec![t];
            payload.extend_from_slice(&rest);
            let _ = classify(&payload);
        }
    }
}
