//! RTP and RTCP: every parser and keyframe detector on arbitrary bytes; an RTP packet
//! that parses must rebuild (view → builder → view) to the same fields and payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_rtp::{RtpHeader, RtpPacket};

fuzz_target!(|data: &[u8]| {
    mediagate_rtp::exercise_all_parsers(data);
    let Ok(p) = RtpPacket::parse(data) else {
        return;
    };
    let csrcs: Vec<u32> = p.csrcs().collect();
    let header = RtpHeader {
        marker: p.marker(),
        payload_type: p.payload_type(),
        sequence_number: p.sequence_number(),
        timestamp: p.timestamp(),
        ssrc: p.ssrc(),
        csrcs: &csrcs,
        extension: p.extension(),
        padding: p.padding_len(),
    };
    let mut buf = vec![0u8; data.len() + 16];
    let n = header
        .write(p.payload(), &mut buf)
        .expect("a parsed packet must rebuild");
    let q = RtpPacket::parse(&buf[..n]).expect("a rebuilt packet must parse");
    assert_eq!(
        (
            q.marker(),
            q.payload_type(),
            q.sequence_number(),
            q.timestamp(),
            q.ssrc()
        ),
        (
            p.marker(),
            p.payload_type(),
            p.sequence_number(),
            p.timestamp(),
            p.ssrc()
        )
    );
    assert!(q.csrcs().eq(p.csrcs()));
    assert_eq!(q.extension(), p.extension());
    assert_eq!(q.payload(), p.payload());
    assert_eq!(q.padding_len(), p.padding_len());
});
