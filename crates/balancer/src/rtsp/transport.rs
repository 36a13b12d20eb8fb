//! What the balancer changes in a SETUP's `Transport` header (sans-IO).
//!
//! What it does, on the request (client to back end): drops multicast specs (the
//! balancer serves unicast), strips `destination=` (RFC 2326 §12.39) and `dest_addr`
//! (RFC 7826 §18.54) unless they name the client's own control-connection address,
//! so a client can never make a back end send media to a third party (the security
//! note of §12.39; `nf_nat_rtsp` does the same), and in `relay` mode keeps only the
//! interleaved specs until the balancer's UDP relay path lands, so clients fall back
//! to TCP interleaved rather than get media that bypasses the balancer. On the
//! response (back end to client) in `direct` mode it adds `source=` with the back
//! end's address where the back end named none and its address differs from the one
//! the client connected to (RFC 2326 §12.39 `source`), so the client accepts media
//! from it.
//!
//! What it does not: allocate ports or touch sockets.

use std::net::{IpAddr, SocketAddr};

use mediagate_config::MediaMode;
use mediagate_rtsp::headers::{Destination, Transport, TransportSpec};

/// Whether an address parameter (`destination=`, `dest_addr`) names `client`.
fn names(addr: &str, client: IpAddr) -> bool {
    let trimmed = addr.trim_matches('"');
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return ip == client;
    }
    if let Ok(sa) = trimmed.parse::<SocketAddr>() {
        return sa.ip() == client;
    }
    let host = trimmed
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap_or_default();
    host.parse::<IpAddr>().is_ok_and(|ip| ip == client)
}

fn strip_third_parties(spec: &mut TransportSpec, client: IpAddr) {
    if let Some(Destination::Address(addr)) = &spec.destination {
        if !names(addr, client) {
            spec.destination = None;
        }
    }
    spec.dest_addr.retain(|a| names(a, client));
}

/// The request's transport alternatives the balancer lets through, rewritten; `None`
/// when none is left (the answer is then 461 Unsupported Transport).
pub(crate) fn rewrite_request(t: Transport, client: IpAddr, mode: MediaMode) -> Option<Transport> {
    let specs: Vec<TransportSpec> =
        t.0.into_iter()
            .filter(|s| !s.is_multicast())
            .filter(|s| mode != MediaMode::Relay || s.is_interleaved())
            .map(|mut s| {
                strip_third_parties(&mut s, client);
                s
            })
            .collect();
    (!specs.is_empty()).then_some(Transport(specs))
}

/// Rewrites the back end's answer for the client. `backend` is the back end's
/// address, `facing` the address the client connected to.
pub(crate) fn rewrite_response(
    t: &mut Transport,
    mode: MediaMode,
    backend: IpAddr,
    facing: IpAddr,
) {
    if mode != MediaMode::Direct || backend == facing {
        return;
    }
    for spec in &mut t.0 {
        if !spec.is_interleaved() && spec.source.is_none() {
            spec.source = Some(backend.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use mediagate_rtsp::TypedHeader;

    use super::*;

    fn transport(text: &str) -> Transport {
        Transport::parse_value(text).unwrap()
    }

    fn text(t: &Transport) -> String {
        t.to_value()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn a_third_party_destination_is_stripped_and_the_client_s_own_kept() {
        let t = transport(
            "RTP/AVP;unicast;destination=203.0.113.9;client_port=5000-5001,RTP/AVP;unicast;destination=198.51.100.7;client_port=5002-5003",
        );
        let out = rewrite_request(t, CLIENT, MediaMode::Direct).unwrap();
        assert_eq!(
            text(&out),
            "RTP/AVP;unicast;client_port=5000-5001,RTP/AVP;unicast;destination=198.51.100.7;client_port=5002-5003"
        );
    }

    #[test]
    fn multicast_is_dropped_and_nothing_left_is_none() {
        let t = transport("RTP/AVP;multicast;ttl=16");
        assert_eq!(rewrite_request(t, CLIENT, MediaMode::Direct), None);
    }

    #[test]
    fn relay_mode_keeps_interleaved_only() {
        let t = transport("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;interleaved=0-1");
        let out = rewrite_request(t, CLIENT, MediaMode::Relay).unwrap();
        assert_eq!(text(&out), "RTP/AVP/TCP;interleaved=0-1");
        let udp_only = transport("RTP/AVP;unicast;client_port=5000-5001");
        assert_eq!(rewrite_request(udp_only, CLIENT, MediaMode::Relay), None);
    }

    #[test]
    fn direct_mode_names_the_back_end_as_source_when_it_differs() {
        let backend: IpAddr = "10.0.0.1".parse().unwrap();
        let vip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t = transport("RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001");
        rewrite_response(&mut t, MediaMode::Direct, backend, vip);
        assert_eq!(
            text(&t),
            "RTP/AVP;unicast;source=10.0.0.1;client_port=5000-5001;server_port=6000-6001"
        );
        let mut same = transport("RTP/AVP;unicast;client_port=5000-5001");
        rewrite_response(&mut same, MediaMode::Direct, vip, vip);
        assert_eq!(text(&same), "RTP/AVP;unicast;client_port=5000-5001");
        let mut own = transport("RTP/AVP;unicast;source=10.9.9.9;client_port=5000-5001");
        rewrite_response(&mut own, MediaMode::Direct, backend, vip);
        assert_eq!(
            text(&own),
            "RTP/AVP;unicast;source=10.9.9.9;client_port=5000-5001"
        );
    }
}
