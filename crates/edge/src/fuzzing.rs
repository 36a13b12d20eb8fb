//! Entry points for the fuzz targets (`fuzz/`), not an API: hidden from the docs and
//! free to change. Each drives a sans-IO core of the edge with arbitrary bytes and
//! checks the invariants its module promises.

use bytes::Bytes;
use mediagate_rtsp::{Decoder, Item, Method};

use crate::publish_session::{PubTransport, PublishSession, MAX_MEDIA_BYTES};

/// A publisher's connection as bytes (RTSP requests and interleaved frames, as the
/// edge reads them): never panics; whatever goes on to the hub is on a hub channel
/// of an announced track, within the size bounds, and only while recording.
pub fn publish_session(data: &[u8]) {
    let mut dec = Decoder::default();
    dec.extend_from_slice(data);
    let mut s = PublishSession::new("fuzz".into());
    let mut recording = false;
    while let Ok(Some(item)) = dec.next_item() {
        match item {
            Item::Request(req) => match req.method {
                Method::Announce => {
                    let _ = s.announce(&req);
                }
                Method::Setup => {
                    if let Ok(ask) = s.setup(&req) {
                        let ports = match ask.transport {
                            PubTransport::Udp { .. } => Some((20_000, 20_001)),
                            PubTransport::Interleaved { .. } => None,
                        };
                        let _ = s.setup_done(&ask, ports);
                    }
                }
                Method::Record => recording |= s.record(&req).is_ok(),
                _ => {}
            },
            Item::Frame(f) => {
                let tracks = s.described().map_or(0, |d| d.tracks.len());
                if let Some(out) = s.on_interleaved(f.channel(), f.payload().clone()) {
                    assert!(recording, "media passed on before RECORD");
                    assert!(usize::from(out.channel()) < tracks * 2);
                    assert!(out.payload().len() <= MAX_MEDIA_BYTES);
                }
                // The same bytes as a datagram of every track.
                for t in 0..tracks + 1 {
                    if let Some(out) = s.on_datagram(t, false, Bytes::copy_from_slice(f.payload()))
                    {
                        assert!(recording && usize::from(out.channel()) == t * 2);
                    }
                }
            }
            Item::Response(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ffmpeg-shaped publishing session, then every cut of it: none panics.
    #[test]
    fn a_publishing_session_and_every_prefix_of_it_run_clean() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n";
        let url = "rtsp://127.0.0.1/live/x";
        let mut bytes = format!(
            "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes();
        bytes.extend_from_slice(format!("SETUP {url}/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n").as_bytes());
        bytes.extend_from_slice(
            format!("RECORD {url} RTSP/1.0\r\nCSeq: 3\r\nSession: fuzz\r\n\r\n").as_bytes(),
        );
        let mut rtp = vec![0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        rtp.extend_from_slice(&[0x65; 20]);
        for ch in [0u8, 1, 7] {
            bytes.extend_from_slice(&[b'$', ch, 0, rtp.len() as u8]);
            bytes.extend_from_slice(&rtp);
        }
        for cut in 0..=bytes.len() {
            publish_session(&bytes[..cut]);
        }
        // Flipping each byte in turn: still no panic.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            publish_session(&b);
        }
    }
}
