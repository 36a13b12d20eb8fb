//! Crate-level tests: descriptions as the programs named in `testdata/` emit them,
//! whole-output rewrite checks, prefix (split-point) checks and property tests.
//!
//! The files in `testdata/` are written after the output of ffmpeg, gst-rtsp-server,
//! the LIVE555 Media Server, an Axis camera and SIP phones (Linphone, Polycom), with
//! their quirks (ffmpeg's `; ` in fmtp, absolute Axis control URLs, bare LF and no
//! final newline from the Polycom-style phone).

mod properties;
mod real_sdps;
mod rewrites;

pub(crate) const FFMPEG: &[u8] = include_bytes!("../testdata/ffmpeg_h264_aac.sdp");
pub(crate) const GST: &[u8] = include_bytes!("../testdata/gst_rtsp_server_h264_aac.sdp");
pub(crate) const LIVE555: &[u8] = include_bytes!("../testdata/live555_h264.sdp");
pub(crate) const AXIS: &[u8] = include_bytes!("../testdata/axis_camera_h264_metadata.sdp");
pub(crate) const LINPHONE: &[u8] = include_bytes!("../testdata/linphone_audio_video_t38_offer.sdp");
pub(crate) const POLYCOM_LF: &[u8] = include_bytes!("../testdata/polycom_audio_lf.sdp");

pub(crate) const ALL: [(&str, &[u8]); 6] = [
    ("ffmpeg", FFMPEG),
    ("gst-rtsp-server", GST),
    ("live555", LIVE555),
    ("axis", AXIS),
    ("linphone", LINPHONE),
    ("polycom", POLYCOM_LF),
];
