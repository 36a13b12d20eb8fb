//! `[dispatcher]`: the control point in front of a cluster of relays (issue 15).
//!
//! What it does: declares the two front doors the SIP proxy talks to (rtpengine's `ng`
//! over UDP/TCP, MediaProxy's protocol on a UNIX stream socket), how long one relay may
//! take to answer before the next is tried, the relays' TLS link (`relay_listen`,
//! `tls_dir`, `passport`) and relays run inside the dispatcher's own process
//! (`[[dispatcher.local_relay]]`), which need no link: one process is then a whole
//! cluster, for tests and small sites. Both kinds of relay may be configured together.
//!
//! What happens to a finished call: RADIUS accounting (`[dispatcher.radius]`) and
//! ending its dialog on the SIP proxy (`[dispatcher.dialog_end]`); monitoring reads the
//! cluster over MediaProxy's management protocol (`management_listen`).
//!
//! Chained relays (`[[dispatcher.relay_group]]`, `[[dispatcher.chain]]`): relays are
//! put in named groups by name (a linked relay's certificate name, a local relay's
//! `name`), and a chain rule sends the calls it matches through one relay of each of
//! two groups; see docs/dispatcher.md, "Chained relays".
//!
//! What it does not: start anything; the dispatcher crate's role does.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::bounded_duration::BoundedDuration;
use super::cidr::Cidr;
use super::duration::HumanDuration;
use super::located::Located;
use super::net::{BindAddr, HostIp};
use super::passport::Passport;
use super::port_range::PortPairRange;

/// The dispatcher role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherConfig {
    /// Run the dispatcher role. Needs a front door (`ng_listen_udp`, `ng_listen_tcp` or
    /// `mediaproxy_socket`) and a relay (`local_relay`, or `relay_listen` for relays
    /// that connect over TLS). Default: `false`.
    pub enabled: Located<bool>,
    /// UDP addresses for `ng` commands from Kamailio's or OpenSIPS' `rtpengine` module.
    /// Default: `[]`.
    pub ng_listen_udp: Vec<BindAddr>,
    /// TCP addresses for `ng` commands. Default: `[]`.
    pub ng_listen_tcp: Vec<BindAddr>,
    /// UNIX stream socket for the `mediaproxy` module (`update`/`remove`), created
    /// with mode 0660 and its parent directory if missing. Default: none (off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mediaproxy_socket: Option<Located<PathBuf>>,
    /// How long one relay may take to answer a command before the next relay is tried
    /// (a new call) or the proxy gets an error (a running call). Keep it below the
    /// proxy's own timeout (`mediaproxy_timeout`, 500 ms by default in Kamailio) so a
    /// second relay can still answer in time. 10ms to 10s. Default: `"200ms"`.
    pub relay_timeout: RelayTimeout,
    /// TCP address relays connect to over mutual TLS (port 25060 by convention).
    /// Needs `tls_dir`. Default: none (no remote relays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_listen: Option<Located<BindAddr>>,
    /// Directory with `ca.pem`, `cert.pem`, `key.pem` and an optional `crl.pem` of this
    /// node (`mediagate cert issue` writes one): the relay link's TLS (with
    /// `relay_listen`) and the management interface's. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_dir: Option<Located<PathBuf>>,
    /// Subject fields a relay's certificate must have, such as `"O=Example, CN=relay*"`;
    /// without one, any certificate of the CA is admitted. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passport: Option<Passport>,
    /// TCP address of MediaProxy's management interface (`summary`, `sessions`,
    /// `version`, `quit`). Served over mutual TLS with `tls_dir`'s CA, certificate
    /// and key when `tls_dir` is set (clients need a certificate from that CA), else
    /// plain TCP, which is allowed on a loopback address only. MediaProxy's port is
    /// 25061. Default: none (off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub management_listen: Option<Located<BindAddr>>,
    /// Subject fields a management client's certificate must match (MediaProxy's
    /// `management_passport`, such as `"O=Example, CN=monitor*"`); needs
    /// `management_listen` and `tls_dir`. Default: none (any certificate of the CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub management_passport: Option<Located<Passport>>,
    /// RADIUS accounting of every finished call. Default: none (off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius: Option<Located<DispatcherRadius>>,
    /// Ending the dialog on the SIP proxy when the relays ended a call's media.
    /// Default: none (off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialog_end: Option<Located<DialogEnd>>,
    /// Relays run inside the dispatcher's process, with the `[relay]` section's
    /// timeouts, limits and latching. Default: `[]`.
    #[serde(skip_serializing_if = "no_local_relay")]
    pub local_relay: Located<Vec<LocalRelay>>,
    /// Named groups of relays, for chain rules. Default: `[]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relay_group: Vec<RelayGroup>,
    /// Which new calls go through two relays, first match wins; a call no rule matches
    /// goes to one relay as without rules. Default: `[]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainRule>,
}

/// One `[[dispatcher.relay_group]]`: relays that play one part in a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayGroup {
    /// The group's name, used by `[[dispatcher.chain]]`; unique. Required.
    pub name: Located<String>,
    /// Relay names: the certificate name (CN) of relays linked over TLS and the
    /// `name` of `[[dispatcher.local_relay]]`s. A relay is in one group at most.
    /// Required, not empty.
    pub relays: Vec<String>,
}

/// One `[[dispatcher.chain]]`: calls it matches are relayed by a relay of `first`
/// (the caller's side) and then one of `second` (the callee's side). Exactly one of
/// `caller`, `flag` and `always` says which calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainRule {
    /// The group whose relay faces the caller: it gets the caller's offer first, and
    /// its streams are the call's record. Required.
    pub first: Located<String>,
    /// The group whose relay faces the callee. Required, not `first`.
    pub second: Located<String>,
    /// Calls whose offer's SDP connection address (session level, else the first
    /// media's) is in one of these networks. Default: `[]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caller: Vec<Cidr>,
    /// Calls whose `ng` offer has this item in `flags` or this key (Kamailio:
    /// `rtpengine_offer("FLAG")`). MediaProxy requests carry no flags, so needs an `ng`
    /// front door. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Every call. Default: `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always: bool,
}

/// `[dispatcher.radius]`: one RFC 2866 accounting request per finished call, as
/// MediaProxy's `radius` accounting sends it; unanswered records wait in
/// `STATE_DIR/radius-spool.jsonl`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherRadius {
    /// The accounting server, `IP:PORT` (1813 by convention). Required.
    pub server: BindAddr,
    /// The shared secret. Required, not empty.
    pub secret: Located<String>,
    /// `User-Name` of every record. Default: `"mediaproxy@default"`.
    #[serde(default = "default_radius_user")]
    pub user_name: String,
    /// The first try's wait for an answer; each retry waits twice as long.
    /// Default: `"1s"`.
    #[serde(default = "default_radius_timeout")]
    pub timeout: HumanDuration,
    /// Tries after the first before a record goes to the spool. Default: `2`.
    #[serde(default = "default_radius_retries")]
    pub retries: u32,
}

fn default_radius_user() -> String {
    "mediaproxy@default".into()
}

fn default_radius_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}

fn default_radius_retries() -> u32 {
    2
}

impl std::fmt::Debug for DispatcherRadius {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherRadius")
            .field("server", &self.server)
            .field("secret", &"<hidden>")
            .field("user_name", &self.user_name)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// Which SIP proxy `[dispatcher.dialog_end]` talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipProxyKind {
    /// Kamailio's `jsonrpcs` datagram transport (`dlg.end_dlg`).
    Kamailio,
    /// OpenSIPS' `mi_datagram` (`dlg_end_dlg`).
    Opensips,
}

/// `[dispatcher.dialog_end]`: where the SIP proxy's datagram RPC listens, so a call
/// whose media timed out on a relay is ended with a BYE to both phones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialogEnd {
    /// `kamailio` or `opensips`. Required.
    pub proxy: SipProxyKind,
    /// `"udp:IP:PORT"` or the path of a UNIX datagram socket. Required.
    pub target: Located<String>,
    /// Each try's wait for the answer. Default: `"500ms"`.
    #[serde(default = "default_dialog_end_timeout")]
    pub timeout: HumanDuration,
    /// Tries in all. Default: `3`.
    #[serde(default = "default_dialog_end_tries")]
    pub tries: u32,
}

fn default_dialog_end_timeout() -> HumanDuration {
    HumanDuration::from_millis(500)
}

fn default_dialog_end_tries() -> u32 {
    3
}

/// A relay's command deadline: 10 ms to 10 s.
pub type RelayTimeout = BoundedDuration<10_000, 10_000_000>;

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            enabled: Located::new(false),
            ng_listen_udp: Vec::new(),
            ng_listen_tcp: Vec::new(),
            mediaproxy_socket: None,
            relay_timeout: const { RelayTimeout::from_millis_const(200) },
            relay_listen: None,
            tls_dir: None,
            passport: None,
            management_listen: None,
            management_passport: None,
            radius: None,
            dialog_end: None,
            local_relay: Located::new(Vec::new()),
            relay_group: Vec::new(),
            chain: Vec::new(),
        }
    }
}

fn no_local_relay(list: &Located<Vec<LocalRelay>>) -> bool {
    list.is_empty()
}

/// One `[[dispatcher.local_relay]]`: a relay engine in the dispatcher's process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRelay {
    /// The relay's name in logs and the session map; must be unique. Required.
    pub name: String,
    /// Local address its media sockets bind to; MediaProxy's `media_relay` preference
    /// matches this or `advertised`. Required.
    pub address: Located<HostIp>,
    /// Address written into SDP instead (1:1 NAT). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised: Option<HostIp>,
    /// Its RTP/RTCP port range (`"LOW-HIGH"`, even low end); local relays must not
    /// overlap each other or `relay.ports`. Required.
    pub ports: Located<PortPairRange>,
}
