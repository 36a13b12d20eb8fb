//! `[relay]`: settings of the RTP/RTCP media relay driven by SIP proxies over `ng`.
//!
//! What it does: declares the `ng` control listeners (rtpengine's protocol, UDP and TCP),
//! the media addresses and port range, media timeouts, the delete delay, the graceful
//! shutdown bound and the teardown notification hook, with defaults close to rtpengine's
//! so a Kamailio set up for rtpengine finds familiar behaviour (issue 4).
//!
//! What it does not: the latching policy knobs (learning window, packet budget); they
//! arrive with the relay engine that defines them.

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::located::Located;
use super::net::{BindAddr, HostIp};
use super::port_range::PortPairRange;
use super::url::HttpUrl;

/// The relay role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Run the relay role. Needs at least one `media_address` and one `ng` listener.
    /// Default: `false`.
    pub enabled: Located<bool>,
    /// UDP addresses for `ng` commands. `ng` has no authentication: keep it on loopback
    /// or a signalling network. Default: `["127.0.0.1:2223"]`.
    pub ng_listen_udp: Vec<BindAddr>,
    /// TCP addresses for `ng` commands (rtpengine's TCP-ng framing). Default: `[]` (off).
    pub ng_listen_tcp: Vec<BindAddr>,
    /// Local addresses media is relayed on, IPv4 and/or IPv6 (calls may bridge
    /// families), each with an optional address to advertise in SDP (1:1 NAT). Default:
    /// `[]`.
    #[serde(skip_serializing_if = "no_media_address")]
    pub media_address: Located<Vec<MediaAddress>>,
    /// Local UDP ports for RTP/RTCP pairs (`"LOW-HIGH"`, even low end). Default:
    /// `"24576-32767"` (4,096 pairs, below Linux's ephemeral range 32768-60999).
    pub ports: Located<PortPairRange>,
    /// A call whose streams carry no media for this long is ended and recorded.
    /// Must not be zero. Default: `"60s"`.
    pub media_timeout: Located<HumanDuration>,
    /// The same for streams put on hold (`a=sendonly`/`inactive`/`0.0.0.0`). Must not
    /// be zero. Default: `"1h"`.
    pub on_hold_timeout: Located<HumanDuration>,
    /// How long a session lingers after `delete` (late retransmissions and in-flight
    /// media still find it) unless the command sets its own. Default: `"30s"`.
    pub delete_delay: HumanDuration,
    /// On SIGTERM, how long running calls may continue before the relay exits anyway;
    /// new offers are refused meanwhile. Default: `"5m"`.
    pub shutdown_max_wait: HumanDuration,
    /// HTTP endpoint told when a call is torn down for inactivity, for example Kamailio's
    /// JSON-RPC (`http://127.0.0.1:5060/RPC`, `dlg.terminate_dlg`). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teardown_notify_url: Option<HttpUrl>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: Located::new(false),
            ng_listen_udp: vec![BindAddr(([127, 0, 0, 1], 2223).into())],
            ng_listen_tcp: Vec::new(),
            media_address: Located::new(Vec::new()),
            ports: Located::new(default_relay_ports()),
            media_timeout: Located::new(HumanDuration::from_secs(60)),
            on_hold_timeout: Located::new(HumanDuration::from_secs(3600)),
            delete_delay: HumanDuration::from_secs(30),
            shutdown_max_wait: HumanDuration::from_secs(300),
            teardown_notify_url: None,
        }
    }
}

fn no_media_address(list: &Located<Vec<MediaAddress>>) -> bool {
    list.is_empty()
}

/// The default relay port range.
pub(crate) fn default_relay_ports() -> PortPairRange {
    "24576-32767"
        .parse()
        .unwrap_or_else(|_| unreachable!("constant range is valid"))
}

/// One `[[relay.media_address]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaAddress {
    /// Local address the relay binds media sockets to. Required. A wildcard
    /// (`0.0.0.0`, `::`) needs `advertised`, since SDP must name a real address.
    pub address: Located<HostIp>,
    /// Address written into SDP instead of `address`, for a relay behind 1:1 NAT.
    /// Default: none (advertise `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised: Option<HostIp>,
}

impl MediaAddress {
    /// The address to put in SDP `c=` lines.
    pub fn sdp_address(&self) -> HostIp {
        self.advertised.unwrap_or(*self.address.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_address_prefers_the_advertised_one() {
        let mut m = MediaAddress {
            address: Located::new("10.0.0.5".parse().unwrap()),
            advertised: None,
        };
        assert_eq!(m.sdp_address().to_string(), "10.0.0.5");
        m.advertised = Some("203.0.113.7".parse().unwrap());
        assert_eq!(m.sdp_address().to_string(), "203.0.113.7");
    }

    #[test]
    fn defaults() {
        let r = RelayConfig::default();
        assert!(!*r.enabled);
        assert_eq!(r.ports.to_string(), "24576-32767");
        assert_eq!(r.ports.pairs(), 4096);
        assert_eq!(r.ng_listen_udp[0].to_string(), "127.0.0.1:2223");
    }
}
