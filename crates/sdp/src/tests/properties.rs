//! Property and prefix tests: generated descriptions round-trip byte-exact and
//! rewrite exactly as a re-render predicts; arbitrary input never panics.

use proptest::prelude::*;

use super::ALL;
use crate::control::resolve_control_url;
use crate::{Connection, Fmtp, MediaLine, Origin, Range, Rtcp, Rtpmap, SessionDescription};

/// A generated description, kept structured so a rewrite's expected output can be
/// rendered independently of the code under test.
#[derive(Debug, Clone)]
struct Gen {
    origin: Option<(String, u64)>,
    session: Vec<(String, &'static str)>,
    media: Vec<GenMedia>,
    unterminated_last: bool,
    trailer: &'static str,
}

#[derive(Debug, Clone)]
struct GenMedia {
    kind: String,
    port: u16,
    port_count: Option<u16>,
    proto: &'static str,
    formats: Vec<String>,
    m_ending: &'static str,
    lines: Vec<(String, &'static str)>,
}

impl Gen {
    fn render(&self) -> Vec<u8> {
        let mut lines: Vec<(String, &str)> = vec![("v=0".into(), "\r\n")];
        if let Some((user, version)) = &self.origin {
            lines.push((format!("o={user} 42 {version} IN IP4 192.0.2.1"), "\r\n"));
        }
        lines.extend(self.session.iter().cloned());
        for m in &self.media {
            let mut m_line = format!("m={} {}", m.kind, m.port);
            if let Some(count) = m.port_count {
                m_line.push_str(&format!("/{count}"));
            }
            m_line.push(' ');
            m_line.push_str(m.proto);
            for f in &m.formats {
                m_line.push(' ');
                m_line.push_str(f);
            }
            lines.push((m_line, m.m_ending));
            lines.extend(m.lines.iter().cloned());
        }
        let mut out = Vec::new();
        let last = lines.len() - 1;
        for (i, (text, ending)) in lines.iter().enumerate() {
            out.extend_from_slice(text.as_bytes());
            if !(i == last && self.unterminated_last) {
                out.extend_from_slice(ending.as_bytes());
            }
        }
        if !self.unterminated_last {
            out.extend_from_slice(self.trailer.as_bytes());
        }
        out
    }
}

fn ending() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => Just("\r\n"), 1 => Just("\n")]
}

/// Lines that are never interpreted structurally: free text, attributes, unknown types.
fn plain_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,30}".prop_map(|t| format!("s={t}")),
        "[0-9]{1,10} [0-9]{1,10}".prop_map(|t| format!("t={t}")),
        "[A-Z]{2}:[0-9]{1,6}".prop_map(|t| format!("b={t}")),
        "[a-zA-Z0-9-]{1,15}".prop_map(|n| format!("a={n}")),
        ("[a-zA-Z0-9-]{1,15}", "[ -~]{0,40}").prop_map(|(n, v)| format!("a={n}:{v}")),
        ("[abd-lnp-uw-z]", "[ -~]{0,20}").prop_map(|(k, v)| format!("{k}={v}")),
        (0u8..=255, 0u8..=255, proptest::option::of(0u8..=255)).prop_map(|(a, b, ttl)| match ttl {
            Some(t) => format!("c=IN IP4 224.{a}.{b}.1/{t}"),
            None => format!("c=IN IP4 10.{a}.{b}.1"),
        }),
    ]
}

fn lines(max: usize) -> impl Strategy<Value = Vec<(String, &'static str)>> {
    proptest::collection::vec((plain_line(), ending()), 0..max)
}

fn media() -> impl Strategy<Value = GenMedia> {
    (
        "(audio|video|application|image|text|[a-z]{1,8})",
        any::<u16>(),
        proptest::option::of(1u16..8),
        prop_oneof![
            Just("RTP/AVP"),
            Just("RTP/AVPF"),
            Just("RTP/SAVP"),
            Just("udptl"),
            Just("TCP/RTP/AVP"),
        ],
        proptest::collection::vec("[0-9]{1,3}|t38", 0..5),
        ending(),
        lines(6),
    )
        .prop_map(
            |(kind, port, port_count, proto, formats, m_ending, lines)| GenMedia {
                kind,
                port,
                port_count,
                proto,
                formats,
                m_ending,
                lines,
            },
        )
}

fn description() -> impl Strategy<Value = Gen> {
    (
        proptest::option::of(("[a-z-]{1,8}", 0u64..u64::MAX)),
        lines(8),
        proptest::collection::vec(media(), 0..5),
        any::<bool>(),
        prop_oneof![Just(""), Just("\r\n"), Just("\n\r\n")],
    )
        .prop_map(|(origin, session, media, unterminated_last, trailer)| Gen {
            origin,
            session,
            media,
            unterminated_last,
            trailer,
        })
}

proptest! {
    #[test]
    fn generated_descriptions_round_trip(g in description()) {
        let body = g.render();
        let sdp = SessionDescription::parse(&body).unwrap();
        prop_assert_eq!(sdp.to_vec(), body.clone());
        prop_assert_eq!(sdp.encoded_len(), body.len());
        prop_assert_eq!(sdp.media().len(), g.media.len());
        for (parsed, generated) in sdp.media().iter().zip(&g.media) {
            prop_assert_eq!(parsed.port(), generated.port);
            prop_assert_eq!(parsed.port_count(), generated.port_count);
            prop_assert_eq!(parsed.proto(), generated.proto);
            prop_assert_eq!(parsed.media_type(), generated.kind.as_str());
            let formats: Vec<&str> = parsed.formats().collect();
            let want: Vec<&str> = generated.formats.iter().map(String::as_str).collect();
            prop_assert_eq!(formats, want);
        }
        prop_assert_eq!(sdp.session_version(), g.origin.as_ref().map(|(_, v)| *v));
    }

    #[test]
    fn set_port_changes_exactly_the_port(g in description(), index in any::<prop::sample::Index>(), port in any::<u16>()) {
        prop_assume!(!g.media.is_empty());
        let i = index.index(g.media.len());
        let mut sdp = SessionDescription::parse(&g.render()).unwrap();
        sdp.media_mut()[i].set_port(port);
        let mut want = g.clone();
        want.media[i].port = port;
        prop_assert_eq!(sdp.to_vec(), want.render());
        prop_assert_eq!(sdp.media()[i].port(), port);
    }

    #[test]
    fn bump_version_changes_exactly_the_version(g in description()) {
        let mut sdp = SessionDescription::parse(&g.render()).unwrap();
        match &g.origin {
            Some((user, version)) => {
                prop_assert_eq!(sdp.bump_version(), Ok(version + 1));
                let mut want = g.clone();
                want.origin = Some((user.clone(), version + 1));
                prop_assert_eq!(sdp.to_vec(), want.render());
            }
            None => prop_assert!(sdp.bump_version().is_err()),
        }
    }

    #[test]
    fn rewrites_with_arbitrary_values_keep_the_description_valid(
        g in description(),
        name in "\\PC{0,12}|[a-z\r\n: ]{0,12}",
        value in proptest::option::of("\\PC{0,20}|[a-z\r\n\0 ]{0,20}"),
        address in "\\PC{0,12}|[0-9./ \r\n]{0,12}",
    ) {
        let body = g.render();
        let mut sdp = SessionDescription::parse(&body).unwrap();
        let before = sdp.to_vec();
        if sdp.set_attribute(&name, value.as_deref()).is_err() {
            prop_assert_eq!(sdp.to_vec(), before.clone());
        }
        if let Some(m) = sdp.media_mut().first_mut() {
            let _ = m.add_attribute(&name, value.as_deref());
            let _ = m.set_connection_address("IP4", &address);
        }
        let _ = sdp.set_origin_address("IP4", &address);
        let _ = sdp.set_connection_address("IP6", &address);
        let after = sdp.to_vec();
        let reparsed = SessionDescription::parse(&after).unwrap();
        prop_assert_eq!(reparsed.to_vec(), after);
        prop_assert_eq!(reparsed.media().len(), g.media.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_round_trip(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(sdp) = SessionDescription::parse(&body) {
            prop_assert_eq!(sdp.to_vec(), body);
        }
    }

    #[test]
    fn mutated_descriptions_never_panic(g in description(), index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut body = g.render();
        let i = index.index(body.len());
        body[i] = byte;
        match SessionDescription::parse(&body) {
            Ok(sdp) => prop_assert_eq!(sdp.to_vec(), body),
            Err(e) => prop_assert!(e.offset <= body.len()),
        }
    }

    #[test]
    fn typed_views_never_panic(text in "\\PC{0,40}|[0-9a-z:/=;. -]{0,40}") {
        let _ = Origin::parse(&text);
        let _ = Connection::parse(&text).map(|c| c.ip());
        let _ = MediaLine::parse(&text);
        let _ = Rtpmap::parse(&text);
        let _ = Fmtp::parse(&text).map(|f| f.param_pairs().count());
        let _ = Rtcp::parse(&text);
        let r = Range::new(&text);
        let _ = (r.npt(), r.is_finite(), r.is_live(), r.unit());
        let _ = resolve_control_url("rtsp://h/", &text);
    }
}

/// Every prefix of a valid body is either a shorter valid description that
/// round-trips, or an error pointing inside the prefix; prefixes that end right after
/// a line terminator are always valid.
#[test]
fn every_prefix_of_every_sample() {
    for (name, body) in ALL {
        for len in 0..=body.len() {
            let prefix = &body[..len];
            match SessionDescription::parse(prefix) {
                Ok(sdp) => assert_eq!(sdp.to_vec(), prefix, "{name} prefix {len}"),
                Err(e) => {
                    assert!(e.offset <= len, "{name} prefix {len}: {e}");
                    assert!(
                        !(len > 0 && prefix.ends_with(b"\n")),
                        "{name} prefix {len} ends a line but failed: {e}"
                    );
                }
            }
        }
    }
}
