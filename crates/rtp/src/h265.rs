//! H.265 keyframe and parameter-set detection in RTP payloads (RFC 7798 §4.4).
//!
//! What it does: reads the 2-byte payload header, looks inside aggregation packets
//! (AP, type 48), at the first fragment (S bit) of fragmentation units (FU, 49) and
//! through PACI packets (50), and reports IRAP slices (BLA 16..=18, IDR 19..=20,
//! CRA 21; a picture's first slice has `first_slice_segment_in_pic_flag`, the top
//! bit after the NAL header), VPS (32), SPS (33) and PPS (34). DONL/DOND fields are
//! present only when the SDP has `sprop-max-don-diff` > 0: use
//! [`classify_with_don`] then. Every size is checked; garbage is an error, never a
//! panic.
//!
//! What it does not: depacketize, parse parameter sets, treat reserved IRAP types 22
//! and 23 as keyframes, or look at `nuh_layer_id` (layered HEVC is out of scope).

use crate::frame_info::{FrameInfo, NalError, Packetization};
use crate::reader::Reader;

/// First IRAP type (BLA_W_LP).
pub const NAL_BLA_W_LP: u8 = 16;
/// IDR_W_RADL.
pub const NAL_IDR_W_RADL: u8 = 19;
/// IDR_N_LP.
pub const NAL_IDR_N_LP: u8 = 20;
/// Last defined IRAP type (CRA_NUT).
pub const NAL_CRA: u8 = 21;
/// Video parameter set.
pub const NAL_VPS: u8 = 32;
/// Sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// Picture parameter set.
pub const NAL_PPS: u8 = 34;
/// Aggregation packet.
pub const AP: u8 = 48;
/// Fragmentation unit.
pub const FU: u8 = 49;
/// Payload content information packet.
pub const PACI: u8 = 50;

/// True if the first slice of an IRAP picture starts in `payload` (no DON fields);
/// false for anything else, including malformed payloads.
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    classify(payload).is_ok_and(|info| info.keyframe_start)
}

/// Classifies one H.265 RTP payload of a stream without DON fields (the default,
/// `sprop-max-don-diff` absent or 0).
pub fn classify(payload: &[u8]) -> Result<FrameInfo, NalError> {
    classify_with_don(payload, false)
}

/// Classifies one H.265 RTP payload; `don_present` says whether APs and FUs carry
/// DONL/DOND fields (`sprop-max-don-diff` > 0 in the SDP).
pub fn classify_with_don(payload: &[u8], don_present: bool) -> Result<FrameInfo, NalError> {
    let mut r = Reader::new(payload);
    if payload.is_empty() {
        return Err(NalError::Empty);
    }
    let header = r
        .array::<2>()
        .ok_or_else(|| truncated(&r, 2, "payload header"))?;
    let mut info = FrameInfo::default();
    classify_body(&mut info, type_of(header[0]), &mut r, don_present, false)?;
    Ok(info)
}

fn type_of(first_header_byte: u8) -> u8 {
    (first_header_byte >> 1) & 0x3f
}

fn truncated(r: &Reader<'_>, needed: usize, context: &'static str) -> NalError {
    NalError::Truncated {
        offset: r.pos(),
        needed,
        available: r.remaining(),
        context,
    }
}

/// Records one NAL unit that starts here; `after_header` follows its 2-byte header.
fn note_nal(info: &mut FrameInfo, nal_type: u8, after_header: &[u8]) {
    info.note_nal_start(nal_type);
    match nal_type {
        NAL_BLA_W_LP..=NAL_CRA => {
            info.keyframe_slice = true;
            if after_header.first().is_some_and(|b| b & 0x80 != 0) {
                info.keyframe_start = true;
            }
        }
        NAL_VPS => info.has_vps = true,
        NAL_SPS => info.has_sps = true,
        NAL_PPS => info.has_pps = true,
        _ => {}
    }
}

/// Classifies what follows a payload header of type `nal_type`. `in_paci` stops a
/// PACI from nesting another PACI, which also bounds the recursion to one level.
fn classify_body(
    info: &mut FrameInfo,
    nal_type: u8,
    r: &mut Reader<'_>,
    don: bool,
    in_paci: bool,
) -> Result<(), NalError> {
    match nal_type {
        0..=47 => note_nal(info, nal_type, r.rest()),
        AP => {
            info.packetization = Packetization::Aggregation;
            if r.remaining() == 0 {
                return Err(NalError::Malformed {
                    offset: r.pos(),
                    context: "aggregation packet without any aggregation unit",
                });
            }
            let mut first = true;
            while r.remaining() > 0 {
                if don {
                    // DONL (2 bytes) before the first unit, DOND (1 byte) before others.
                    let n = if first { 2 } else { 1 };
                    r.take(n)
                        .ok_or_else(|| truncated(r, n, "AP decoding order number"))?;
                }
                first = false;
                let size = r
                    .u16()
                    .ok_or_else(|| truncated(r, 2, "aggregation unit size"))?;
                let at = r.pos();
                let nal = r
                    .take(usize::from(size))
                    .ok_or_else(|| truncated(r, usize::from(size), "aggregated NAL unit"))?;
                let Some((h, rest)) = nal.split_first_chunk::<2>() else {
                    return Err(NalError::Malformed {
                        offset: at,
                        context: "aggregation unit shorter than a NAL unit header",
                    });
                };
                let t = type_of(h[0]);
                if t >= AP {
                    return Err(if t > PACI {
                        NalError::UndefinedType {
                            offset: at,
                            nal_type: t,
                        }
                    } else {
                        NalError::Malformed {
                            offset: at,
                            context: "AP, FU or PACI nested in an aggregation packet",
                        }
                    });
                }
                note_nal(info, t, rest);
            }
        }
        FU => {
            let at = r.pos();
            let fu = r.u8().ok_or_else(|| truncated(r, 1, "FU header"))?;
            let (start, end, t) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x3f);
            info.packetization = match (start, end) {
                (true, true) => {
                    return Err(NalError::Malformed {
                        offset: at,
                        context: "FU header has both the start and the end bit set",
                    })
                }
                (true, false) => Packetization::FragmentStart,
                (false, true) => Packetization::FragmentEnd,
                (false, false) => Packetization::FragmentMiddle,
            };
            if t >= AP {
                return Err(NalError::Malformed {
                    offset: at,
                    context: "FU fragments an AP, FU or PACI",
                });
            }
            if start {
                if don {
                    r.take(2)
                        .ok_or_else(|| truncated(r, 2, "FU decoding order number"))?;
                }
                note_nal(info, t, r.rest());
            }
        }
        PACI if !in_paci => {
            let at = r.pos();
            let fields = r
                .array::<2>()
                .ok_or_else(|| truncated(r, 2, "PACI header fields"))?;
            // A | cType (6) | PHSsize (5) | F0 F1 F2 | Y
            let ctype = type_of(fields[0]);
            let phs_size = usize::from((fields[0] & 1) << 4 | fields[1] >> 4);
            r.take(phs_size)
                .ok_or_else(|| truncated(r, phs_size, "PACI header extension"))?;
            if ctype == PACI {
                return Err(NalError::Malformed {
                    offset: at,
                    context: "PACI carries another PACI",
                });
            }
            // The PACI payload is a single NAL unit, AP or FU whose header type is cType.
            classify_body(info, ctype, r, don, true)?;
        }
        PACI => {
            return Err(NalError::Malformed {
                offset: r.pos(),
                context: "PACI carries another PACI",
            })
        }
        _ => {
            return Err(NalError::UndefinedType {
                offset: 0,
                nal_type,
            })
        }
    }
    Ok(())
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

    /// 2-byte NAL header for `t`, layer 0, TID 1.
    fn hdr(t: u8) -> [u8; 2] {
        [t << 1, 1]
    }

    #[test]
    fn ffmpeg_ap_with_vps_sps_pps() {
        assert_eq!(
            classify(&payload_of(FFMPEG_H265_AP_VPS_SPS_PPS)).unwrap(),
            FrameInfo {
                keyframe_start: false,
                keyframe_slice: false,
                has_vps: true,
                has_sps: true,
                has_pps: true,
                packetization: Packetization::Aggregation,
                nal_units: 3,
                first_nal_type: Some(32),
            }
        );
    }

    #[test]
    fn ffmpeg_fu_idr_start_and_middle() {
        let p = payload_of(FFMPEG_H265_FU_IDR_START);
        assert_eq!(&p[..3], &[0x62, 0x01, 0x94]);
        assert_eq!(
            classify(&p).unwrap(),
            FrameInfo {
                keyframe_start: true,
                keyframe_slice: true,
                packetization: Packetization::FragmentStart,
                nal_units: 1,
                first_nal_type: Some(20),
                ..FrameInfo::default()
            }
        );
        assert!(is_keyframe_start(&p));
        let m = classify(&payload_of(FFMPEG_H265_FU_IDR_MIDDLE)).unwrap();
        assert_eq!(m.packetization, Packetization::FragmentMiddle);
        assert!(!m.keyframe_start && m.nal_units == 0);
    }

    #[test]
    fn every_irap_type_and_only_those() {
        for t in 0..=47u8 {
            let mut p = hdr(t).to_vec();
            p.push(0x80);
            let i = classify(&p).unwrap();
            assert_eq!(i.keyframe_start, (16..=21).contains(&t), "type {t}");
        }
        // CRA, not the first slice segment of the picture.
        let i = classify(&[hdr(21)[0], 1, 0x00]).unwrap();
        assert!(i.keyframe_slice && !i.keyframe_start);
    }

    #[test]
    fn don_fields_are_skipped_when_signalled() {
        // AP with DONL, VPS unit, DOND, IDR unit.
        let mut ap = hdr(AP).to_vec();
        ap.extend_from_slice(&[0, 5, 0, 3]);
        ap.extend_from_slice(&hdr(32));
        ap.push(0);
        ap.extend_from_slice(&[1, 0, 3]);
        ap.extend_from_slice(&hdr(19));
        ap.push(0x80);
        let i = classify_with_don(&ap, true).unwrap();
        assert!(i.has_vps && i.keyframe_start);
        assert_eq!(i.nal_units, 2);
        // Read without DON, the same bytes do not parse as two units.
        assert!(classify(&ap).is_err());
        // FU start with DONL.
        let fu = [hdr(FU)[0], 1, 0x80 | 19, 0, 7, 0x80];
        assert!(classify_with_don(&fu, true).unwrap().keyframe_start);
    }

    #[test]
    fn paci_wrapping_an_fu() {
        // PACI: cType = FU, PHSsize = 1, then one PHES byte, FU header (S, IDR_W_RADL).
        let p = [hdr(PACI)[0], 1, FU << 1, 0x10, 0xaa, 0x80 | 19, 0x80];
        let i = classify(&p).unwrap();
        assert!(i.keyframe_start);
        assert_eq!(i.packetization, Packetization::FragmentStart);
        let nested = [hdr(PACI)[0], 1, PACI << 1, 0x00];
        assert!(matches!(
            classify(&nested),
            Err(NalError::Malformed { offset: 2, .. })
        ));
    }

    #[test]
    fn errors() {
        assert_eq!(classify(&[]), Err(NalError::Empty));
        assert!(matches!(
            classify(&[0x40]),
            Err(NalError::Truncated {
                offset: 0,
                needed: 2,
                ..
            })
        ));
        assert_eq!(
            classify(&[51 << 1, 1]),
            Err(NalError::UndefinedType {
                offset: 0,
                nal_type: 51
            })
        );
        assert!(matches!(
            classify(&[hdr(FU)[0], 1, 0xc0 | 19]),
            Err(NalError::Malformed { offset: 2, .. })
        ));
        // AP unit of size 1: shorter than a NAL header.
        assert!(matches!(
            classify(&[hdr(AP)[0], 1, 0, 1, 0x40]),
            Err(NalError::Malformed { offset: 4, .. })
        ));
        // AP nested in AP.
        assert!(matches!(
            classify(&[hdr(AP)[0], 1, 0, 2, hdr(AP)[0], 1]),
            Err(NalError::Malformed { offset: 4, .. })
        ));
    }

    #[test]
    fn every_prefix_of_the_ap_is_ok_at_unit_boundaries_else_an_error() {
        let payload = payload_of(FFMPEG_H265_AP_VPS_SPS_PPS);
        // 2-byte header, then VPS (2 + 23), SPS (2 + 44), PPS (2 + 8).
        let boundaries = [27, 73, 83];
        assert_eq!(payload.len(), 83);
        for n in 0..=payload.len() {
            match classify(&payload[..n]) {
                Ok(i) => {
                    let k = boundaries
                        .iter()
                        .position(|&b| b == n)
                        .expect("ok only at a boundary");
                    assert_eq!(usize::from(i.nal_units), k + 1);
                }
                Err(NalError::Truncated { .. }) => assert!(n > 0 && n != 2),
                Err(NalError::Malformed { offset: 2, .. }) => assert_eq!(n, 2),
                Err(NalError::Empty) => assert_eq!(n, 0),
                Err(e) => panic!("prefix {n}: {e}"),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(payload in prop::collection::vec(any::<u8>(), 0..64), don: bool) {
            if let Ok(i) = classify_with_don(&payload, don) {
                prop_assert!(!i.keyframe_start || i.keyframe_slice);
                prop_assert!(usize::from(i.nal_units) <= payload.len());
            }
        }

        #[test]
        fn arbitrary_bodies_behind_special_headers_never_panic(t in 48u8..=50, rest in prop::collection::vec(any::<u8>(), 0..64), don: bool) {
            let mut payload = hdr(t).to_vec();
            payload.extend_from_slice(&rest);
            let _ = classify_with_don(&payload, don);
        }
    }
}
