//! Tests of compound parsing against real captures, A.2 validation, split points and
//! build/parse round trips.

use super::build::*;
use super::*;
use crate::build_error::BuildError;
use crate::test_vectors::{hex, FFMPEG_RTCP_SR, GST_RTCP_RR_SDES, GST_RTCP_SR_SDES};
use proptest::prelude::*;

fn parts(bytes: &[u8]) -> Vec<RtcpPacket<'_>> {
    Compound::parse(bytes).unwrap().packets().collect()
}

#[test]
fn ffmpeg_lone_sender_report() {
    let b = hex(FFMPEG_RTCP_SR);
    let p = parts(&b);
    assert_eq!(p.len(), 1);
    let RtcpPacket::SenderReport(sr) = p[0] else {
        panic!("not an SR: {:?}", p[0]);
    };
    assert_eq!(
        sr.sender_info(),
        SenderInfo {
            ssrc: 0x462d_20a3,
            ntp_timestamp: 0xeeac_55cb_3020_c49b,
            rtp_timestamp: 0x5ad4_535d,
            packet_count: 0,
            octet_count: 0,
        }
    );
    assert_eq!(sr.report_blocks().len(), 0);
    assert_eq!(sr.profile_extension(), &[] as &[u8]);
}

#[test]
fn gstreamer_sender_report_and_sdes() {
    let b = hex(GST_RTCP_SR_SDES);
    let p = parts(&b);
    assert_eq!(p.len(), 2);
    let RtcpPacket::SenderReport(sr) = p[0] else {
        panic!("not an SR: {:?}", p[0]);
    };
    assert_eq!(
        sr.sender_info(),
        SenderInfo {
            ssrc: 0x0712_2864,
            ntp_timestamp: 0xeeac_556d_19bb_384f,
            rtp_timestamp: 0xaf65_6c82,
            packet_count: 10,
            octet_count: 10240,
        }
    );
    let RtcpPacket::SourceDescription(sdes) = p[1] else {
        panic!("not SDES: {:?}", p[1]);
    };
    assert_eq!(sdes.raw().offset, 28);
    let chunks: Vec<_> = sdes.chunks().collect();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].ssrc, 0x0712_2864);
    assert_eq!(chunks[0].cname(), Some(&b"user164858379@host-677ebc01"[..]));
    let items: Vec<_> = chunks[0].items().collect();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1],
        SdesItem {
            kind: SdesType::TOOL,
            value: b"GStreamer"
        }
    );
}

#[test]
fn gstreamer_receiver_report_with_negative_cumulative_loss() {
    let b = hex(GST_RTCP_RR_SDES);
    let p = parts(&b);
    let RtcpPacket::ReceiverReport(rr) = p[0] else {
        panic!("not an RR: {:?}", p[0]);
    };
    assert_eq!(rr.ssrc(), 0x777b_d0f8);
    let blocks: Vec<_> = rr.report_blocks().collect();
    assert_eq!(
        blocks,
        vec![ReportBlock {
            ssrc: 0x2011_c2b1,
            fraction_lost: 0,
            cumulative_lost: -1,
            extended_highest_seq: 0x0833,
            jitter: 0,
            last_sr: 0x55bf_ea1f,
            delay_since_last_sr: 0x49ec,
        }]
    );
    let RtcpPacket::SourceDescription(sdes) = p[1] else {
        panic!("not SDES: {:?}", p[1]);
    };
    let chunk = sdes.chunks().next().unwrap();
    assert_eq!(chunk.cname(), Some(&b"user2908875827@host-ecce07dd"[..]));
}

#[test]
fn rebuilding_the_gstreamer_compound_is_bit_exact() {
    let original = hex(GST_RTCP_RR_SDES);
    let items = [
        SdesItem {
            kind: SdesType::CNAME,
            value: b"user2908875827@host-ecce07dd",
        },
        SdesItem {
            kind: SdesType::TOOL,
            value: b"GStreamer",
        },
    ];
    let block = ReportBlock {
        ssrc: 0x2011_c2b1,
        fraction_lost: 0,
        cumulative_lost: -1,
        extended_highest_seq: 0x0833,
        jitter: 0,
        last_sr: 0x55bf_ea1f,
        delay_since_last_sr: 0x49ec,
    };
    let mut buf = [0u8; 200];
    let mut w = CompoundWriter::new(&mut buf);
    w.receiver_report(0x777b_d0f8, &[block])
        .unwrap()
        .sdes(&[SdesChunkSpec {
            ssrc: 0x777b_d0f8,
            items: &items,
        }])
        .unwrap();
    let n = w.finish().unwrap();
    assert_eq!(&buf[..n], &original[..]);
}

#[test]
fn every_split_point_is_truncated_or_a_shorter_valid_compound() {
    let b = hex(GST_RTCP_SR_SDES);
    for n in 1..b.len() {
        match Compound::parse(&b[..n]) {
            Ok(c) => {
                // Only the boundary after the SR is a complete compound.
                assert_eq!(n, 28);
                assert_eq!(c.len(), 1);
            }
            Err(RtcpError::Truncated { offset, .. }) => {
                let expected = if n < 28 { 0 } else { 28 };
                assert_eq!(offset, expected, "prefix {n}");
            }
            Err(e) => panic!("prefix {n}: {e}"),
        }
    }
    assert_eq!(Compound::parse(&[]), Err(RtcpError::Empty));
}

#[test]
fn a2_first_packet_must_be_a_report() {
    let b = hex(GST_RTCP_SR_SDES);
    let sdes_only = &b[28..];
    assert_eq!(
        Compound::parse(sdes_only),
        Err(RtcpError::FirstNotReport {
            packet_type: 202,
            padded: false
        })
    );
    assert_eq!(Compound::parse_reduced_size(sdes_only).unwrap().len(), 1);
}

#[test]
fn a2_version_and_length_must_be_exact() {
    let mut b = hex(GST_RTCP_SR_SDES);
    b[28] = 0x41; // second packet version 1
    assert_eq!(
        Compound::parse(&b),
        Err(RtcpError::BadVersion {
            offset: 28,
            version: 1
        })
    );
    let mut b = hex(GST_RTCP_SR_SDES);
    b.extend_from_slice(&[0x80, 0xcb]); // two stray bytes after the last packet
    assert_eq!(
        Compound::parse(&b),
        Err(RtcpError::Truncated {
            offset: 80,
            needed: 4,
            available: 2,
            context: "RTCP header"
        })
    );
    let mut b = hex(GST_RTCP_SR_SDES);
    b[31] = 13; // SDES claims one word more than the datagram holds
    assert_eq!(
        Compound::parse(&b),
        Err(RtcpError::Truncated {
            offset: 28,
            needed: 56,
            available: 52,
            context: "RTCP packet (length field)"
        })
    );
}

#[test]
fn a2_padding_only_on_the_last_packet() {
    let mut b = hex(GST_RTCP_RR_SDES);
    b[0] |= 0x20; // padding bit on the first (RR) packet
    assert_eq!(
        Compound::parse(&b),
        Err(RtcpError::FirstNotReport {
            packet_type: 201,
            padded: true
        })
    );
    // RR, then a padded BYE, then an RR: padding not on the last.
    let mut buf = [0u8; 64];
    let n1 = write_receiver_report(&mut buf, 1, &[]).unwrap();
    let bye_padded = [0xa1, 0xcb, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4];
    buf[n1..n1 + 12].copy_from_slice(&bye_padded);
    let n2 = write_receiver_report(&mut buf[n1 + 12..], 1, &[]).unwrap();
    assert_eq!(
        Compound::parse(&buf[..n1 + 12 + n2]),
        Err(RtcpError::PaddingNotLast { offset: 8 })
    );
    // The same BYE last is fine, and its padding is not part of the body.
    let c = Compound::parse(&buf[..n1 + 12]).unwrap();
    let RtcpPacket::Goodbye(bye) = c.packets().nth(1).unwrap() else {
        panic!("not a BYE");
    };
    assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![1]);
    assert_eq!(bye.reason(), None);
    assert_eq!(bye.raw().body.len(), 4);
}

#[test]
fn bad_padding_count_is_rejected() {
    let bye = [0xa1, 0xcb, 0, 1, 0, 0, 0, 9];
    assert_eq!(
        Compound::parse_reduced_size(&bye),
        Err(RtcpError::BadPadding {
            offset: 7,
            count: 9,
            max: 4
        })
    );
}

#[test]
fn report_count_beyond_length_is_malformed() {
    let mut b = hex(FFMPEG_RTCP_SR);
    b[0] = 0x81; // RC=1 but no block
    assert_eq!(
        Compound::parse(&b),
        Err(RtcpError::Malformed {
            offset: 28,
            context: "the report count needs more report blocks than the packet length holds"
        })
    );
}

#[test]
fn unknown_types_are_kept_raw() {
    // RR followed by a PSFB PLI (FMT 1) from ssrc 1 about media ssrc 2.
    let mut buf = [0u8; 32];
    let n = write_receiver_report(&mut buf, 1, &[]).unwrap();
    buf[n..n + 12].copy_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    let c = Compound::parse(&buf[..n + 12]).unwrap();
    let last = c.packets().last().unwrap();
    assert_eq!(last.packet_type(), PT_PSFB);
    let RtcpPacket::Unknown(raw) = last else {
        panic!("PLI interpreted");
    };
    assert_eq!(raw.count, 1);
    assert_eq!(raw.body, &[0, 0, 0, 1, 0, 0, 0, 2]);
}

#[test]
fn app_and_bye_with_reason_round_trip() {
    let mut buf = [0u8; 128];
    let mut w = CompoundWriter::new(&mut buf);
    w.receiver_report(7, &[])
        .unwrap()
        .bye(&[7, 8], Some(b"shutting down"))
        .unwrap()
        .app(3, 7, *b"MGTE", &[1, 2, 3, 4])
        .unwrap();
    let n = w.finish().unwrap();
    // RR 8 + BYE (4 + 8 + round4(1 + 13) = 16) 28 + APP 16.
    assert_eq!(n, 52);
    let p = parts(&buf[..n]);
    let RtcpPacket::Goodbye(bye) = p[1] else {
        panic!("not a BYE");
    };
    assert_eq!(bye.ssrcs().collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(bye.reason(), Some(&b"shutting down"[..]));
    let RtcpPacket::App(app) = p[2] else {
        panic!("not APP");
    };
    assert_eq!(
        (app.subtype(), app.ssrc(), app.name(), app.data()),
        (3, 7, *b"MGTE", &[1u8, 2, 3, 4][..])
    );
}

#[test]
fn builder_errors() {
    let mut small = [0u8; 20];
    assert_eq!(
        write_sender_report(&mut small, &SenderInfo::default(), &[]),
        Err(BuildError::BufferTooSmall {
            needed: 28,
            available: 20
        })
    );
    let blocks = [ReportBlock::default(); 32];
    let mut big = [0u8; 2048];
    assert_eq!(
        write_receiver_report(&mut big, 1, &blocks),
        Err(BuildError::OutOfRange {
            field: "report block count",
            value: 32,
            max: 31
        })
    );
    assert!(matches!(
        write_sdes_cname(&mut big, 1, &[b'x'; 256]),
        Err(BuildError::OutOfRange { value: 256, .. })
    ));
    assert!(matches!(
        write_app(&mut big, 0, 1, *b"abcd", &[1, 2]),
        Err(BuildError::NotWordAligned { len: 2, .. })
    ));
    let mut w = CompoundWriter::new(&mut big);
    w.sdes_cname(1, b"x").unwrap();
    assert_eq!(w.finish(), Err(BuildError::CompoundMustStartWithReport));
    assert_eq!(
        CompoundWriter::new(&mut big).finish(),
        Err(BuildError::EmptyCompound)
    );
    // The compound's buffer error counts what was already written.
    let mut buf = [0u8; 30];
    let mut w = CompoundWriter::new(&mut buf);
    w.receiver_report(1, &[]).unwrap();
    assert_eq!(
        w.sender_report(&SenderInfo::default(), &[]).unwrap_err(),
        BuildError::BufferTooSmall {
            needed: 36,
            available: 30
        }
    );
    assert_eq!(w.len(), 8);
}

fn block_strategy() -> impl Strategy<Value = ReportBlock> {
    (
        any::<u32>(),
        any::<u8>(),
        -0x80_0000i32..=0x7f_ffff,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(ssrc, fraction_lost, cumulative_lost, h, j, l, d)| ReportBlock {
                ssrc,
                fraction_lost,
                cumulative_lost,
                extended_highest_seq: h,
                jitter: j,
                last_sr: l,
                delay_since_last_sr: d,
            },
        )
}

proptest! {
    #[test]
    fn sr_round_trip(
        ssrc: u32, ntp: u64, rtp: u32, pc: u32, oc: u32,
        blocks in prop::collection::vec(block_strategy(), 0..=31),
    ) {
        let info = SenderInfo { ssrc, ntp_timestamp: ntp, rtp_timestamp: rtp, packet_count: pc, octet_count: oc };
        let mut buf = vec![0u8; 1024];
        let n = write_sender_report(&mut buf, &info, &blocks).unwrap();
        prop_assert_eq!(n, 28 + 24 * blocks.len());
        let p = parts(&buf[..n]);
        let RtcpPacket::SenderReport(sr) = p[0] else { panic!("not an SR") };
        prop_assert_eq!(sr.sender_info(), info);
        prop_assert_eq!(sr.report_blocks().collect::<Vec<_>>(), blocks);
    }

    #[test]
    fn rr_sdes_bye_compound_round_trip(
        ssrc: u32,
        blocks in prop::collection::vec(block_strategy(), 0..=31),
        chunks in prop::collection::vec(
            (any::<u32>(), prop::collection::vec((1u8..=255, prop::collection::vec(any::<u8>(), 0..40)), 0..4)),
            0..=5,
        ),
        bye_ssrcs in prop::collection::vec(any::<u32>(), 0..=31),
        reason in prop::option::of(prop::collection::vec(any::<u8>(), 0..=255)),
    ) {
        let item_vecs: Vec<Vec<SdesItem<'_>>> = chunks
            .iter()
            .map(|(_, items)| items.iter().map(|(k, v)| SdesItem { kind: SdesType(*k), value: v }).collect())
            .collect();
        let specs: Vec<SdesChunkSpec<'_>> = chunks
            .iter()
            .zip(&item_vecs)
            .map(|((ssrc, _), items)| SdesChunkSpec { ssrc: *ssrc, items })
            .collect();
        let mut buf = vec![0u8; 4096];
        let mut w = CompoundWriter::new(&mut buf);
        w.receiver_report(ssrc, &blocks).unwrap()
            .sdes(&specs).unwrap()
            .bye(&bye_ssrcs, reason.as_deref()).unwrap();
        let n = w.finish().unwrap();
        prop_assert_eq!(n % 4, 0);
        let p = parts(&buf[..n]);
        prop_assert_eq!(p.len(), 3);
        let RtcpPacket::ReceiverReport(rr) = p[0] else { panic!("not an RR") };
        prop_assert_eq!(rr.ssrc(), ssrc);
        prop_assert_eq!(rr.report_blocks().collect::<Vec<_>>(), blocks);
        let RtcpPacket::SourceDescription(sdes) = p[1] else { panic!("not SDES") };
        let got: Vec<(u32, Vec<SdesItem<'_>>)> = sdes.chunks().map(|c| (c.ssrc, c.items().collect())).collect();
        let want: Vec<(u32, Vec<SdesItem<'_>>)> = specs.iter().map(|s| (s.ssrc, s.items.to_vec())).collect();
        prop_assert_eq!(got, want);
        let RtcpPacket::Goodbye(bye) = p[2] else { panic!("not a BYE") };
        prop_assert_eq!(bye.ssrcs().collect::<Vec<_>>(), bye_ssrcs);
        prop_assert_eq!(bye.reason(), reason.as_deref());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let strict = Compound::parse(&data);
        let lenient = Compound::parse_reduced_size(&data);
        if let Ok(c) = strict {
            prop_assert!(lenient.is_ok());
            prop_assert_eq!(c.packets().count(), c.len());
        }
        for p in RtcpPackets::new(&data).flatten() {
            if let RtcpPacket::SourceDescription(s) = p {
                for c in s.chunks() {
                    let _ = c.items().count();
                }
            }
        }
    }

    #[test]
    fn mutated_valid_compounds_never_panic(idx in 0usize..80, byte: u8) {
        let mut b = hex(GST_RTCP_SR_SDES);
        let i = idx % b.len();
        b[i] = byte;
        if let Ok(c) = Compound::parse(&b) {
            prop_assert_eq!(c.packets().count(), c.len());
        }
    }
}

#[test]
fn error_messages_say_what_was_wrong() {
    assert_eq!(
        RtcpError::FirstNotReport {
            packet_type: 202,
            padded: false
        }
        .to_string(),
        "compound RTCP must start with an SR (200) or RR (201) without padding, found packet type 202"
    );
    assert_eq!(
        RtcpError::FirstNotReport {
            packet_type: 201,
            padded: true
        }
        .to_string(),
        "compound RTCP must start with an SR (200) or RR (201) without padding, found packet type 201 with padding"
    );
    let b = hex(GST_RTCP_SR_SDES);
    assert_eq!(
        Compound::parse(&b[..40]).unwrap_err().to_string(),
        "RTCP truncated: the RTCP packet (length field) at byte 28 needs 52 bytes, only 12 remain"
    );
}
