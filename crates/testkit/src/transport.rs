//! The RTSP lower transports a test client can be asked to use.
//!
//! RFC 2326 §10.12 (TCP interleaved) and §12.39 (Transport: RTP/AVP/UDP vs RTP/AVP/TCP);
//! the HTTP tunnel is Apple's "Tunneling QuickTime RTSP and RTP over HTTP" scheme, which
//! ffmpeg, GStreamer and gst-rtsp-server implement. This module only names them and maps
//! them to each client's option; it does not speak any of them.

use std::fmt;

/// How a client carries RTP from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// RTP interleaved on the RTSP TCP connection (`RTP/AVP/TCP;interleaved=`).
    Tcp,
    /// RTP and RTCP on unicast UDP ports (`RTP/AVP;unicast;client_port=`).
    Udp,
    /// RTSP and interleaved RTP inside an HTTP GET/POST tunnel.
    HttpTunnel,
}

impl Transport {
    /// All three, for tests that loop over them.
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::Udp, Transport::HttpTunnel];

    /// The value of ffmpeg's `-rtsp_transport` option.
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::HttpTunnel => "http",
        }
    }

    /// The value of `rtspsrc_client.py --protocols`.
    pub fn rtspsrc_name(self) -> &'static str {
        self.ffmpeg_name()
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "TCP interleaved",
            Transport::Udp => "UDP",
            Transport::HttpTunnel => "HTTP tunnel",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Transport::Tcp.ffmpeg_name(), "tcp");
        assert_eq!(Transport::Udp.ffmpeg_name(), "udp");
        assert_eq!(Transport::HttpTunnel.ffmpeg_name(), "http");
        assert_eq!(Transport::HttpTunnel.to_string(), "HTTP tunnel");
    }
}
