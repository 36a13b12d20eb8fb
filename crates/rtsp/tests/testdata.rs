//! Every RTSP byte stream captured from real programs under `testdata/rtsp/` decodes
//! completely (no error, nothing left over), every item round-trips through the
//! serializer, and the typed headers and auth headers in them parse.

use std::path::{Path, PathBuf};

use mediagate_rtsp::auth::{parse_challenges, parse_credentials};
use mediagate_rtsp::headers::{
    CSeq, ContentBase, ContentLength, Range, RtpInfo, Session, Transport,
};
use mediagate_rtsp::parse::{parse_head, Decoder, Limits, Parsed};
use mediagate_rtsp::tunnel::PostBodyDecoder;
use mediagate_rtsp::{Headers, Item, TypedHeader};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rtsp")
}

fn captures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(testdata()).expect("testdata/rtsp exists") {
        let dir = dir.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if matches!(f.extension().and_then(|e| e.to_str()), Some("c2s" | "s2c")) {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

#[derive(Default, Debug)]
struct Counts {
    requests: usize,
    responses: usize,
    frames: usize,
}

/// Decodes a whole stream; panics with the file name and offset on any error.
fn decode_all(name: &str, bytes: &[u8]) -> (Vec<Item>, Counts) {
    let mut dec = Decoder::new(Limits::default());
    dec.extend_from_slice(bytes);
    let mut items = Vec::new();
    let mut counts = Counts::default();
    loop {
        match dec.next_item() {
            Ok(Some(item)) => {
                match &item {
                    Item::Request(_) => counts.requests += 1,
                    Item::Response(_) => counts.responses += 1,
                    Item::Frame(_) => counts.frames += 1,
                }
                items.push(item);
            }
            Ok(None) => break,
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert_eq!(
        dec.buffered_len(),
        0,
        "{name}: bytes left after the last item"
    );
    (items, counts)
}

fn check_round_trip(name: &str, item: &Item) {
    let bytes = item.to_bytes();
    let mut dec = Decoder::new(Limits::default());
    dec.extend_from_slice(&bytes);
    let back = dec
        .next_item()
        .unwrap_or_else(|e| panic!("{name}: reparse failed: {e}"));
    assert_eq!(
        back.as_ref(),
        Some(item),
        "{name}: round trip changed an item"
    );
}

fn check_typed<H: TypedHeader>(name: &str, h: &Headers) {
    if let Some(r) = h.typed::<H>() {
        let v = r.unwrap_or_else(|e| panic!("{name}: {} header: {e}", H::NAME));
        assert_eq!(
            H::parse_value(&v.to_value()).ok().map(|x| x.to_value()),
            Some(v.to_value())
        );
    }
}

fn check_headers(name: &str, h: &Headers) {
    check_typed::<CSeq>(name, h);
    check_typed::<Session>(name, h);
    check_typed::<Transport>(name, h);
    check_typed::<RtpInfo>(name, h);
    check_typed::<Range>(name, h);
    check_typed::<ContentBase>(name, h);
    check_typed::<ContentLength>(name, h);
    let challenges: Vec<&str> = h.get_all("WWW-Authenticate").collect();
    if !challenges.is_empty() {
        parse_challenges(&challenges).unwrap_or_else(|e| panic!("{name}: WWW-Authenticate: {e}"));
    }
    if let Some(v) = h.get("Authorization") {
        parse_credentials(v).unwrap_or_else(|e| panic!("{name}: Authorization: {e}"));
    }
}

/// A tunnel POST: an HTTP head, then base64 of RTSP requests.
fn decode_post(name: &str, bytes: &[u8]) -> (Vec<Item>, Counts) {
    let Ok(Parsed::Complete { consumed, .. }) = parse_head(bytes, &Limits::default()) else {
        panic!("{name}: no HTTP POST head");
    };
    let mut decoded = Vec::new();
    PostBodyDecoder::new()
        .decode(&bytes[consumed..], &mut decoded)
        .unwrap_or_else(|e| panic!("{name}: base64 body: {e}"));
    decode_all(name, &decoded)
}

#[test]
fn every_capture_decodes_round_trips_and_has_valid_headers() {
    let files = captures();
    assert!(
        files.len() >= 30,
        "expected the captured corpus, found {} files",
        files.len()
    );
    let mut totals = Counts::default();
    for f in &files {
        let name = f.strip_prefix(testdata()).unwrap().display().to_string();
        let bytes = std::fs::read(f).unwrap();
        let (items, counts) = if name.ends_with(".post.c2s") {
            decode_post(&name, &bytes)
        } else {
            decode_all(&name, &bytes)
        };
        for item in &items {
            check_round_trip(&name, item);
            match item {
                Item::Request(r) => check_headers(&name, &r.headers),
                Item::Response(r) => check_headers(&name, &r.headers),
                Item::Frame(_) => {}
            }
        }
        // Every client stream says something; every server stream but the tunnel
        // POST's (the server never answers on it) and a refused connection answers.
        if name.ends_with(".c2s") {
            assert!(counts.requests > 0, "{name}: no request");
        } else if !name.ends_with(".post.s2c") && !name.contains("rejected") {
            assert!(counts.responses > 0, "{name}: no response");
        }
        totals.requests += counts.requests;
        totals.responses += counts.responses;
        totals.frames += counts.frames;
    }
    assert!(
        totals.frames > 100,
        "captures should carry interleaved media: {totals:?}"
    );
}

#[test]
fn captures_show_the_interop_details_we_rely_on() {
    let read = |p: &str| std::fs::read(testdata().join(p)).unwrap();
    // Digest: the 401 carries a challenge the client side can answer.
    let (items, _) = decode_all(
        "digest",
        &read("ffmpeg5.1-to-gst-rtsp-server1.22/digest-401-retry.s2c"),
    );
    let challenge = items
        .iter()
        .find_map(|i| match i {
            Item::Response(r) if r.status.as_u16() == 401 => {
                r.headers.get("WWW-Authenticate").map(str::to_owned)
            }
            _ => None,
        })
        .expect("a 401 with a challenge");
    let mut client = mediagate_rtsp::auth::ClientAuth::new("user", "secret");
    client
        .handle_challenge(&[&challenge])
        .expect("gst-rtsp-server's challenge is answerable");
    // The client's retry carries Digest credentials.
    let (reqs, _) = decode_all(
        "digest",
        &read("ffmpeg5.1-to-gst-rtsp-server1.22/digest-401-retry.c2s"),
    );
    assert!(reqs.iter().any(|i| matches!(i, Item::Request(r) if r.headers.get("Authorization").is_some_and(|v| v.starts_with("Digest ")))));
    // UDP setups negotiate client and server ports.
    let (udp, _) = decode_all("udp", &read("ffmpeg5.1-to-gst-rtsp-server1.22/udp.s2c"));
    let t = udp
        .iter()
        .find_map(|i| match i {
            Item::Response(r) => r.headers.typed::<Transport>().and_then(Result::ok),
            _ => None,
        })
        .expect("a SETUP reply");
    assert!(t.0[0].client_ports().is_some() && t.0[0].server_ports().is_some());
}
