//! SDPs captured from real programs (`testdata/sdp/`) parse and serialize byte-exact.

use std::path::Path;

use mediagate_sdp::SessionDescription;

#[test]
fn captured_sdps_parse_and_round_trip_byte_exact() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sdp");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).expect("testdata/sdp exists") {
        let f = f.unwrap().path();
        let bytes = std::fs::read(&f).unwrap();
        let sdp =
            SessionDescription::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(sdp.to_vec(), bytes, "{}: not byte-exact", f.display());
        assert!(sdp.media().iter().all(|m| m.is_rtp()), "{}", f.display());
        assert!(
            sdp.media().len() >= 2,
            "{}: expected audio and video",
            f.display()
        );
        n += 1;
    }
    assert!(n >= 5, "expected the captured SDPs, found {n}");
}

#[test]
fn live_and_on_demand_ranges_are_told_apart() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sdp");
    let parse =
        |name: &str| SessionDescription::parse(&std::fs::read(dir.join(name)).unwrap()).unwrap();
    let live = parse("gst-rtsp-server1.22-live-h264-aac.sdp");
    assert!(live.range().is_some_and(|r| r.is_live()));
    let vod = parse("gst-rtsp-server1.22-vod-mp4-h264-aac.sdp");
    assert!(vod.range().is_some_and(|r| r.is_finite()));
}
