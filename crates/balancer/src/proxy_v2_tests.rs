use super::*;
use proptest::prelude::*;

fn v4(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The bytes HAProxy 2.6 writes for `send-proxy-v2` from 172.19.0.1:42578 to
/// 172.19.0.3:80 (as a packet capture shows them).
const HAPROXY_TCP4: [u8; 28] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c,
    0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
];

#[test]
fn encodes_tcp4_as_haproxy_does() {
    let h = Header::proxy(
        Transport::Stream,
        v4("172.19.0.1:42578"),
        v4("172.19.0.3:80"),
    );
    assert_eq!(h.to_bytes().unwrap(), HAPROXY_TCP4);
}

#[test]
fn decodes_haproxy_tcp4_with_payload_after_it() {
    let mut b = HAPROXY_TCP4.to_vec();
    b.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let Decoded::Done { header, consumed } = decode(&b).unwrap() else {
        panic!("incomplete");
    };
    assert_eq!(consumed, 28);
    assert_eq!(header.client(), Some(v4("172.19.0.1:42578")));
    assert_eq!(header.command, Command::Proxy);
}

#[test]
fn encodes_families_and_transports() {
    let cases = [
        (Transport::Stream, "10.0.0.1:1", "10.0.0.2:2", 0x11, 12),
        (Transport::Dgram, "10.0.0.1:1", "10.0.0.2:2", 0x12, 12),
        (
            Transport::Stream,
            "[2001:db8::1]:1",
            "[2001:db8::2]:2",
            0x21,
            36,
        ),
        (
            Transport::Dgram,
            "[2001:db8::1]:1",
            "[2001:db8::2]:2",
            0x22,
            36,
        ),
    ];
    for (t, s, d, fp, len) in cases {
        let b = Header::proxy(t, s.parse().unwrap(), d.parse().unwrap())
            .to_bytes()
            .unwrap();
        assert_eq!(b[12], 0x21);
        assert_eq!(b[13], fp);
        assert_eq!(u16::from_be_bytes([b[14], b[15]]), len);
        assert_eq!(b.len(), 16 + usize::from(len));
    }
    let local = Header::local().to_bytes().unwrap();
    assert_eq!(&local[12..], &[0x20, 0x00, 0x00, 0x00]);
}

#[test]
fn a_mixed_family_pair_is_written_as_ipv6_with_the_ipv4_side_mapped() {
    let h = Header::proxy(
        Transport::Stream,
        v4("192.0.2.7:5000"),
        "[2001:db8::2]:554".parse().unwrap(),
    );
    let b = h.to_bytes().unwrap();
    let Decoded::Done { header, .. } = decode(&b).unwrap() else {
        panic!()
    };
    assert_eq!(
        header.client(),
        Some("[::ffff:192.0.2.7]:5000".parse().unwrap())
    );
}

#[test]
fn every_prefix_of_a_header_asks_for_more() {
    let mut h = Header::proxy(
        Transport::Stream,
        "[2001:db8::1]:1".parse().unwrap(),
        "[2001:db8::2]:2".parse().unwrap(),
    );
    h.tlvs.push(Tlv {
        kind: 0x05,
        value: b"unique".to_vec(),
    });
    let b = h.to_bytes().unwrap();
    for cut in 0..b.len() {
        match decode(&b[..cut]).unwrap() {
            Decoded::NeedMore { need } => assert!(need > cut && need <= b.len(), "cut {cut}"),
            d => panic!("cut {cut}: {d:?}"),
        }
        assert!(decode_datagram(&b[..cut]).is_err());
    }
    assert_eq!(
        decode(&b).unwrap(),
        Decoded::Done {
            header: h,
            consumed: b.len()
        }
    );
}

#[test]
fn a_client_without_proxy_is_refused_at_its_first_byte() {
    let e = decode(b"OPTIONS rtsp://x/ RTSP/1.0\r\n").unwrap_err();
    assert_eq!(e.offset, 0);
    assert_eq!(e.reason, DecodeErrorReason::Signature);
    assert_eq!(
        e.to_string(),
        "invalid PROXY v2 header at byte 0: not the PROXY v2 signature"
    );
    // PROXY v1 shares no byte with the v2 signature.
    assert_eq!(decode(b"PROXY TCP4 ").unwrap_err().offset, 0);
    let mut b = SIGNATURE.to_vec();
    b[7] = b'X';
    assert_eq!(decode(&b[..9]).unwrap_err().offset, 7);
}

#[test]
fn bad_fixed_fields_are_reported_where_they_are() {
    let good = HAPROXY_TCP4;
    let with = |i: usize, v: u8| {
        let mut b = good.to_vec();
        b[i] = v;
        b
    };
    let cases: [(Vec<u8>, usize, DecodeErrorReason); 6] = [
        (with(12, 0x11), 12, DecodeErrorReason::Version(1)),
        (with(12, 0x22), 12, DecodeErrorReason::Command(2)),
        (with(13, 0x41), 13, DecodeErrorReason::Family(4)),
        (with(13, 0x13), 13, DecodeErrorReason::Transport(3)),
        (
            with(15, 0x04),
            14,
            DecodeErrorReason::ShortAddresses { len: 4, need: 12 },
        ),
        (
            {
                let mut b = with(14, 0x04);
                b[15] = 0x01;
                b
            },
            14,
            DecodeErrorReason::TooLong {
                len: 0x401,
                max: MAX_PAYLOAD,
            },
        ),
    ];
    for (b, offset, reason) in cases {
        let e = decode(&b).unwrap_err();
        assert_eq!((e.offset, e.reason), (offset, reason));
        // The bad field is reported as soon as it has arrived.
        if offset < 14 {
            assert_eq!(decode(&b[..offset + 1]).unwrap_err().offset, offset);
        }
    }
}

#[test]
fn a_truncated_tlv_is_an_error_at_its_start() {
    let mut b = HAPROXY_TCP4.to_vec();
    b.extend_from_slice(&[0x05, 0x00, 0x09, b'a', b'b']);
    b[15] = 12 + 5;
    let e = decode(&b).unwrap_err();
    assert_eq!((e.offset, e.reason), (28, DecodeErrorReason::TruncatedTlv));
}

#[test]
fn unspecified_family_skips_the_block_and_local_is_accepted() {
    let mut b = SIGNATURE.to_vec();
    b.extend_from_slice(&[0x20, 0x00, 0x00, 0x03, 1, 2, 3, b'x']);
    assert_eq!(
        decode(&b).unwrap(),
        Decoded::Done {
            header: Header::local(),
            consumed: 19
        }
    );
    assert_eq!(Header::local().client(), None);
}

#[test]
fn unix_paths_round_trip_and_too_long_ones_are_refused() {
    let h = Header {
        command: Command::Proxy,
        addresses: Addresses::Unix {
            transport: Transport::Stream,
            source: b"/run/a.sock".to_vec(),
            destination: b"/run/b.sock".to_vec(),
        },
        tlvs: vec![],
    };
    let b = h.to_bytes().unwrap();
    assert_eq!(b.len(), 16 + 216);
    assert_eq!(decode_datagram(&b).unwrap(), (h, 16 + 216));
    let long = Header {
        command: Command::Proxy,
        addresses: Addresses::Unix {
            transport: Transport::Stream,
            source: vec![b'a'; 109],
            destination: vec![],
        },
        tlvs: vec![],
    };
    assert_eq!(
        long.to_bytes(),
        Err(EncodeError::UnixPathTooLong { len: 109 })
    );
}

#[test]
fn a_datagram_header_leaves_the_payload_offset() {
    let mut d = Header::proxy(
        Transport::Dgram,
        v4("198.51.100.9:40000"),
        v4("10.0.0.1:5004"),
    )
    .to_bytes()
    .unwrap();
    d.extend_from_slice(b"\x80\x60rtp");
    let (h, at) = decode_datagram(&d).unwrap();
    assert_eq!(&d[at..], b"\x80\x60rtp");
    assert_eq!(h.client(), Some(v4("198.51.100.9:40000")));
}

fn arb_transport() -> impl Strategy<Value = Transport> {
    prop_oneof![Just(Transport::Stream), Just(Transport::Dgram)]
}

fn arb_addresses() -> impl Strategy<Value = Addresses> {
    let v4 = (
        arb_transport(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(transport, s, d, sp, dp)| Addresses::Inet {
            transport,
            source: SocketAddr::new(Ipv4Addr::from(s).into(), sp),
            destination: SocketAddr::new(Ipv4Addr::from(d).into(), dp),
        });
    let v6 = (
        arb_transport(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(transport, s, d, sp, dp)| Addresses::Inet {
            transport,
            source: SocketAddr::new(Ipv6Addr::from(s).into(), sp),
            destination: SocketAddr::new(Ipv6Addr::from(d).into(), dp),
        });
    // Paths end in a non-NUL byte: trailing NULs are padding on the wire.
    let path = proptest::collection::vec(any::<u8>(), 0..=108).prop_map(|mut p| {
        if let Some(last) = p.last_mut() {
            *last |= 1;
        }
        p
    });
    let unix =
        (arb_transport(), path.clone(), path).prop_map(|(transport, source, destination)| {
            Addresses::Unix {
                transport,
                source,
                destination,
            }
        });
    prop_oneof![v4, v6, unix]
}

fn arb_header() -> impl Strategy<Value = Header> {
    let tlv = (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))
        .prop_map(|(kind, value)| Tlv { kind, value });
    let addressed = (
        prop_oneof![Just(Command::Local), Just(Command::Proxy)],
        arb_addresses(),
        proptest::collection::vec(tlv, 0..5),
    )
        .prop_map(|(command, addresses, tlvs)| Header {
            command,
            addresses,
            tlvs,
        });
    // An unspecified block is skipped whole by a receiver, TLVs included.
    prop_oneof![Just(Header::local()), addressed]
}

proptest! {
    #[test]
    fn round_trip_at_every_split(h in arb_header(), payload in proptest::collection::vec(any::<u8>(), 0..20)) {
        let mut b = h.to_bytes().unwrap();
        let len = b.len();
        b.extend_from_slice(&payload);
        prop_assert_eq!(
            decode(&b).unwrap(),
            Decoded::Done { header: h.clone(), consumed: len }
        );
        for cut in 0..len {
            let is_more = matches!(decode(&b[..cut]), Ok(Decoded::NeedMore { .. }));
            prop_assert!(is_more, "cut {}", cut);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_point_inside(b in proptest::collection::vec(any::<u8>(), 0..300), sig in any::<bool>()) {
        let mut buf = if sig { SIGNATURE.to_vec() } else { Vec::new() };
        buf.extend_from_slice(&b);
        match decode(&buf) {
            Ok(Decoded::Done { consumed, .. }) => prop_assert!(consumed <= buf.len()),
            Ok(Decoded::NeedMore { need }) => prop_assert!(need > buf.len() && need <= FIXED_LEN + MAX_PAYLOAD),
            Err(e) => prop_assert!(e.offset < buf.len().max(1)),
        }
    }
}

#[test]
fn a_mapped_client_is_written_as_ipv4() {
    let peer: SocketAddr = "[::ffff:192.0.2.7]:5000".parse().unwrap();
    let local: SocketAddr = "[::ffff:192.0.2.1]:554".parse().unwrap();
    let h = Header::proxy(Transport::Stream, peer, local);
    let Addresses::Inet {
        source,
        destination,
        ..
    } = h.addresses
    else {
        panic!("{h:?}");
    };
    assert_eq!(source.to_string(), "192.0.2.7:5000");
    assert_eq!(destination.to_string(), "192.0.2.1:554");
}
