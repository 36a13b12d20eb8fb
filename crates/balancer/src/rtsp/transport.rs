//! What the balancer changes in a SETUP's `Transport` header (sans-IO).
//!
//! What it does, on the request (client to back end): drops multicast specs (the
//! balancer serves unicast), strips `destination=` (RFC 2326 §12.39) and `dest_addr`
//! (RFC 7826 §18.54) unless they name the client's own control-connection address,
//! so a client can never make a back end send media to a third party (the security
//! note of §12.39; `nf_nat_rtsp` does the same), and in `relay` mode keeps the
//! interleaved specs and the first UDP one (the balancer relays one UDP stream per
//! SETUP, so it offers the back end only the alternative it has ports for). On the
//! response (back end to client) in `direct` mode it adds `source=` with the back
//! end's address where the back end named none and its address differs from the one
//! the client connected to (RFC 2326 §12.39 `source`), so the client accepts media
//! from it; in `relay` mode [`relay_response`] puts the client's own ports back and
//! names the balancer's client-facing pair as `server_port` and `source`.
//!
//! What it does not: allocate ports or touch sockets.

use std::net::{IpAddr, SocketAddr};

use mediagate_config::MediaMode;
use mediagate_rtsp::headers::{Destination, PortRange, Transport, TransportSpec};

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
    let mut udp_kept = false;
    let specs: Vec<TransportSpec> =
        t.0.into_iter()
            .filter(|s| !s.is_multicast())
            .filter(|s| {
                if mode != MediaMode::Relay || s.is_interleaved() {
                    return true;
                }
                // Relay mode: one UDP alternative, with the client's ports to relay to.
                let keep = !udp_kept && !s.is_tcp() && s.client_ports().is_some();
                udp_kept |= keep;
                keep
            })
            .map(|mut s| {
                strip_third_parties(&mut s, client);
                s
            })
            .collect();
    (!specs.is_empty()).then_some(Transport(specs))
}

/// The UDP alternative of a request (relay mode keeps at most one), if any.
pub(crate) fn udp_spec(t: &mut Transport) -> Option<&mut TransportSpec> {
    t.0.iter_mut()
        .find(|s| !s.is_interleaved() && !s.is_tcp() && s.client_ports().is_some())
}

/// What the back end chose, for the relay: its RTP port and the address it named
/// as `source`, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendMedia {
    pub(crate) server_port: u16,
    pub(crate) source: Option<String>,
}

/// Relay mode, a SETUP answer whose chosen transport is UDP: gives the client its
/// own `client_ports` back, names the balancer's client-facing pair (`facing_port`
/// on `facing_ip`) as `server_port` and `source`, and drops `destination`. Returns
/// what the back end chose; `None` when the answer is not UDP or names no server
/// port (the pair then has nothing to relay).
pub(crate) fn relay_response(
    t: &mut Transport,
    client_ports: PortRange,
    facing_ip: IpAddr,
    facing_port: u16,
) -> Option<BackendMedia> {
    let spec = t.0.first_mut()?;
    if spec.is_interleaved() || spec.is_tcp() {
        return None;
    }
    let server_port = spec.server_ports()?.start;
    let source = spec.source.take();
    spec.client_port = Some(client_ports);
    spec.server_port = PortRange::pair(facing_port);
    spec.source = Some(facing_ip.to_string());
    spec.destination = None;
    spec.dest_addr.clear();
    Some(BackendMedia {
        server_port,
        source,
    })
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
    fn relay_mode_keeps_interleaved_and_the_first_udp_alternative() {
        let t = transport(
            "RTP/AVP;unicast;client_port=5000-5001,RTP/AVP;unicast;client_port=5002-5003,RTP/AVP/TCP;interleaved=0-1",
        );
        let mut out = rewrite_request(t, CLIENT, MediaMode::Relay).unwrap();
        assert_eq!(
            text(&out),
            "RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;interleaved=0-1"
        );
        assert_eq!(
            udp_spec(&mut out).unwrap().client_ports(),
            PortRange::pair(5000)
        );
        let no_ports = transport("RTP/AVP;unicast");
        assert_eq!(rewrite_request(no_ports, CLIENT, MediaMode::Relay), None);
    }

    #[test]
    fn a_relayed_answer_names_the_balancer_and_gives_the_client_its_ports_back() {
        let mut t = transport(
            "RTP/AVP;unicast;source=10.0.0.1;client_port=40000-40001;server_port=6000-6001;ssrc=1234ABCD",
        );
        let vip: IpAddr = "192.0.2.1".parse().unwrap();
        let chosen = relay_response(&mut t, PortRange::pair(5000).unwrap(), vip, 41000).unwrap();
        assert_eq!(
            chosen,
            BackendMedia {
                server_port: 6000,
                source: Some("10.0.0.1".into())
            }
        );
        assert_eq!(
            text(&t),
            "RTP/AVP;unicast;source=192.0.2.1;client_port=5000-5001;server_port=41000-41001;ssrc=1234ABCD"
        );
        let mut tcp = transport("RTP/AVP/TCP;unicast;interleaved=0-1");
        assert_eq!(
            relay_response(&mut tcp, PortRange::pair(5000).unwrap(), vip, 41000),
            None
        );
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
