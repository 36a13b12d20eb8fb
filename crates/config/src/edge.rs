//! `[edge]`: settings of the RTSP caching and splitting proxy.
//!
//! What it does: declares the edge's listeners, viewer limits, upstream reconnect policy,
//! reverse-proxy routes (`[[edge.route]]`), forward-proxy destination ACL, client ACL,
//! transparent mode and parent, with their defaults, plus the small pure predicates
//! the engine needs on them (client admission, destination permission). The behaviour
//! they configure is issue 3 (RFC 2326 proxying: §1.4 proxies, §12.43 `Via`).
//!
//! What it does not: route requests or open connections; the edge engine does.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bounded::Bounded;
use super::bounded_duration::BoundedDuration;
use super::byte_size::ByteSize;
use super::cidr::Cidr;
use super::destination::DestinationRule;
use super::duration::HumanDuration;
use super::edge_auth::{Access, EdgeAuth};
use super::located::Located;
use super::net::BindAddr;
use super::port_range::PortPairRange;
use super::url::{AdvertisedPrefix, RtspUrl};

/// Viewer limit: 1 to 1,000,000.
pub type MaxViewers = Bounded<1, 1_000_000>;

/// Per-viewer backlog in packets: 16 to 1,048,576.
pub type ViewerBacklog = Bounded<16, 1_048_576>;

/// Connection caps (in total, per client address): 1 to 1,000,000.
pub type MaxConnections = Bounded<1, 1_000_000>;

/// Limits on connections that are not (yet) viewers: 100 ms to 1 h.
pub type ConnectionTimeout = BoundedDuration<100_000, 3_600_000_000>;

/// How long cached content without freshness information stays fresh: 0 (always
/// revalidate) to 30 days.
pub type CacheTtl = BoundedDuration<0, 2_592_000_000_000>;

/// The edge role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Run the edge role. Default: `true`.
    pub enabled: Located<bool>,
    /// TCP addresses for RTSP (`IP:PORT`). Default: `["0.0.0.0:8554"]` (554 needs
    /// privileges).
    pub listen: Located<Vec<BindAddr>>,
    /// TCP addresses for RTSP tunnelled in HTTP (QuickTime GET/POST tunnel), for viewers
    /// behind HTTP-only firewalls. Default: `[]` (off).
    pub http_tunnel_listen: Vec<BindAddr>,
    /// Local UDP ports for viewers' RTP/RTCP pairs (`"LOW-HIGH"`, even low end). Default:
    /// `"16384-24575"` (4,096 pairs, below Linux's ephemeral range 32768-60999).
    pub udp_ports: Located<PortPairRange>,
    /// RTSP session timeout advertised in `Session: id;timeout=N` and enforced: a viewer
    /// that sends no request or RTCP for this long is dropped. Default: `"60s"`.
    pub session_timeout: Located<HumanDuration>,
    /// A viewer whose RTSP connection closes keeps its UDP sessions (media goes on)
    /// until `session_timeout` passes without a request or RTCP from the viewer; a
    /// request on a new connection naming the session resumes it (RFC 2326: sessions are not tied to
    /// connections; a balancer failover or a NAT dropping the TCP mapping then costs
    /// the viewer nothing). A request that names the session while its old connection
    /// is still closing waits up to a second for the handoff instead of getting 454.
    /// Off: a closed connection ends its sessions at once. Default: `false`.
    pub udp_sessions_outlive_connection: bool,
    /// How long a live upstream session stays open after its last viewer leaves, so a
    /// quick re-join starts instantly. Default: `"10s"`.
    pub linger: HumanDuration,
    /// On SIGTERM the edge stops accepting and ends every viewer session at once (a
    /// live viewer never leaves on its own); this bounds how long it then waits for
    /// what is queued for viewers to be written and for origin sessions to be torn
    /// down before it stops anyway. Default: `"10s"`.
    pub drain_time: HumanDuration,
    /// Upstream reconnect policy when the origin connection drops.
    pub reconnect: ReconnectConfig,
    /// Most viewers served at once; requests above it get `503 Service Unavailable`.
    /// Default: `10000`.
    pub max_viewers: MaxViewers,
    /// Packets queued per viewer before it counts as slow and skips to the next keyframe
    /// (losses are counted). Bounds memory per viewer. Default: `1024`.
    pub viewer_backlog_packets: ViewerBacklog,
    /// Time for a request to arrive complete, from its first byte (slowloris
    /// defence); a connection that exceeds it is closed. Connections with a session
    /// are exempt (the session timeout governs them). Default: `"5s"`.
    pub request_timeout: ConnectionTimeout,
    /// How long a connection with no session may go without a complete request
    /// before it is closed. Default: `"10s"`.
    pub idle_timeout: ConnectionTimeout,
    /// Most client connections open at once (a tunnel counts two); more are closed
    /// as they arrive. Default: `20000`.
    pub max_connections: MaxConnections,
    /// Most connections open at once from one client address. Default: `100`.
    pub max_connections_per_client: MaxConnections,
    /// Client networks exempt from `max_connections_per_client` (still counted in
    /// `max_connections` and the stats): child edges, whose accounting connections
    /// all come from one address. Default: none.
    pub trusted_clients: Vec<Cidr>,
    /// Serve connections redirected here by iptables `REDIRECT`, using the original
    /// destination (`SO_ORIGINAL_DST`); destinations must pass `[edge.forward].allow`.
    /// Default: `false`.
    pub transparent: Located<bool>,
    /// A parent mediagate (`rtsp://host[:port]`) to fetch every stream through, so viewers
    /// on many edges cost the origin one stream. Default: none (fetch from origins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<RtspUrl>,
    /// Which viewers may connect at all, in every mode.
    pub client_acl: ClientAcl,
    /// Forward proxying to hosts named in request URIs.
    pub forward: ForwardProxy,
    /// How viewers log in, for rules whose `access` asks for it.
    pub auth: EdgeAuth,
    /// The cut-through cache of on-demand content.
    pub cache: CacheConfig,
    /// Reverse-proxy routes, `[[edge.route]]`; the longest matching advertised prefix
    /// wins. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<Route>,
    /// Who may publish a stream to this edge (RTSP `ANNOUNCE` + `RECORD`) under which
    /// path, `[[edge.publish]]`; the longest matching path wins. A path no rule
    /// names may be published from loopback only. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishRule>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            enabled: Located::new(true),
            listen: Located::new(vec![BindAddr(([0, 0, 0, 0], 8554).into())]),
            http_tunnel_listen: Vec::new(),
            udp_ports: Located::new(default_edge_udp_ports()),
            session_timeout: Located::new(HumanDuration::from_secs(60)),
            udp_sessions_outlive_connection: false,
            linger: HumanDuration::from_secs(10),
            drain_time: HumanDuration::from_secs(10),
            reconnect: ReconnectConfig::default(),
            max_viewers: fixed_bound(10_000),
            viewer_backlog_packets: fixed_bound(1024),
            request_timeout: ConnectionTimeout::from_millis_const(5_000),
            idle_timeout: ConnectionTimeout::from_millis_const(10_000),
            max_connections: fixed_bound(20_000),
            max_connections_per_client: fixed_bound(100),
            trusted_clients: Vec::new(),
            transparent: Located::new(false),
            parent: None,
            client_acl: ClientAcl::default(),
            forward: ForwardProxy::default(),
            auth: EdgeAuth::default(),
            cache: CacheConfig::default(),
            route: Vec::new(),
            publish: Vec::new(),
        }
    }
}

fn default_edge_udp_ports() -> PortPairRange {
    "16384-24575"
        .parse()
        .unwrap_or_else(|_| unreachable!("constant range is valid"))
}

/// A compile-time-known in-range default.
fn fixed_bound<const MIN: u32, const MAX: u32>(value: u32) -> Bounded<MIN, MAX> {
    Bounded::new(u64::from(value)).unwrap_or_else(|_| unreachable!("default {value} is in range"))
}

/// `[edge.cache]`: where and how much on-demand content the edge keeps (issue 13).
/// Objects are plain files under `dir`; the least recently used are evicted to stay
/// under `size`, pinned ones never.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Record on-demand content while it streams and serve later viewers from disk.
    /// Default: `true`.
    pub enabled: Located<bool>,
    /// Directory of the cache objects (created if missing). Default: `cache` under
    /// `state_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<Located<PathBuf>>,
    /// Most bytes the objects may take on disk. Default: `"1GiB"` (fits a small disk).
    pub size: Located<ByteSize>,
    /// How long an object stays fresh when the origin said nothing about it (no
    /// `Cache-Control` max-age, `Expires` or `Last-Modified`); after that a viewer's
    /// PLAY revalidates it with a conditional DESCRIBE. Default: `"1h"`.
    pub default_ttl: CacheTtl,
    /// Most bytes of cached media kept in memory, shared by the viewers of each object
    /// where their playback overlaps. Default: `"64MiB"`.
    pub memory: Located<ByteSize>,
}

/// The default cache size.
pub const CACHE_DEFAULT_SIZE: ByteSize = ByteSize::from_gib(1);
/// The default memory for shared reads of cached media.
pub const CACHE_DEFAULT_MEMORY: ByteSize = ByteSize::from_mib(64);

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: Located::new(true),
            dir: None,
            size: Located::new(CACHE_DEFAULT_SIZE),
            default_ttl: CacheTtl::from_millis_const(3_600_000),
            memory: Located::new(CACHE_DEFAULT_MEMORY),
        }
    }
}

impl CacheConfig {
    /// The directory objects go in: `dir`, else `cache` under `state_dir`.
    pub fn dir_under(&self, state_dir: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) => dir.get().clone(),
            None => state_dir.join("cache"),
        }
    }
}

/// `[edge.reconnect]`: what the edge does when an origin connection drops. Viewers stay
/// attached meanwhile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// First wait before reconnecting; doubled after each failure. Must not be zero.
    /// Default: `"250ms"`.
    pub backoff_min: Located<HumanDuration>,
    /// Longest wait between attempts; at least `backoff_min`. Default: `"5s"`.
    pub backoff_max: Located<HumanDuration>,
    /// How long viewers wait for the origin to come back before they are told (TEARDOWN
    /// or connection close). Default: `"30s"`.
    pub give_up_after: HumanDuration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            backoff_min: Located::new(HumanDuration::from_millis(250)),
            backoff_max: Located::new(HumanDuration::from_secs(5)),
            give_up_after: HumanDuration::from_secs(30),
        }
    }
}

/// `[edge.client_acl]`: a viewer is admitted when its address is in some `allow`
/// network and in no `deny` network (deny wins).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAcl {
    /// Networks whose viewers may connect. Default: `["0.0.0.0/0", "::/0"]` (everyone).
    pub allow: Vec<Cidr>,
    /// Networks refused even when allowed above. Default: `[]`.
    pub deny: Vec<Cidr>,
}

impl Default for ClientAcl {
    fn default() -> Self {
        Self {
            allow: vec![Cidr::any_ipv4(), Cidr::any_ipv6()],
            deny: Vec::new(),
        }
    }
}

impl ClientAcl {
    /// True when a viewer from `addr` may connect.
    pub fn admits(&self, addr: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(addr))
            && !self.deny.iter().any(|net| net.contains(addr))
    }
}

/// `[edge.forward]`: forward proxying (a viewer asks for `rtsp://some-host/...` that no
/// route names). Deny by default: mediagate must never be an open proxy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardProxy {
    /// Proxy requests for hosts that no route names. Default: `false`.
    pub enabled: Located<bool>,
    /// Destinations that may be reached, forward or transparent: `HOST[:PORTS]` with HOST a
    /// name, `*.domain`, an address or a CIDR (`[v6/len]:ports` with ports). Everything
    /// else is refused with `403`. Default: `[]`.
    pub allow: Vec<DestinationRule>,
    /// Who may use forward proxying (logins answer `407 Proxy Authentication
    /// Required`). Default: everyone `client_acl` admits.
    #[serde(skip_serializing_if = "is_default_access")]
    pub access: Access,
}

fn is_default_access(a: &Access) -> bool {
    *a == Access::default()
}

impl ForwardProxy {
    /// True when some allow rule covers `host` (a name or address) and `port`. Does not
    /// look at `enabled`: transparent mode uses the same list.
    pub fn permits(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|rule| rule.matches(host, port))
    }
}

/// One `[[edge.route]]`: requests under `advertised` are served from `origin`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// What viewers ask for: a path prefix (`"/cam1"`, any host reaching this edge) or a
    /// full URL prefix (`"rtsp://edge.example.com/cam1"`). Required; matched on whole path
    /// segments, so `/cam1` does not match `/cam10`.
    pub advertised: Located<AdvertisedPrefix>,
    /// Where the stream really is: an `rtsp://[user:password@]host[:port]/path` prefix that
    /// replaces the advertised prefix. Required.
    pub origin: RtspUrl,
    /// Credentials for the origin, instead of putting them in the `origin` URL.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Located<Credentials>>,
    /// How media comes from the origin: `tcp` (interleaved on the RTSP connection,
    /// firewall-proof) or `udp`. Default: `"tcp"`.
    #[serde(default)]
    pub upstream_transport: UpstreamTransport,
    /// Who may watch this route (logins answer `401 Unauthorized`). Default: everyone
    /// `client_acl` admits.
    #[serde(default, skip_serializing_if = "is_default_access")]
    pub access: Access,
    /// Whether the origin sees each viewer: `off`, `authorize` (a DESCRIBE per viewer
    /// with its credentials, held open with keep-alives for its whole session) or
    /// `session` (that, plus a full origin session per viewer). Default: `"off"`.
    #[serde(default)]
    pub accounting: Located<AccountingMode>,
    /// Keep on-demand content of this route in the cache (when `[edge.cache]` is
    /// enabled). Default: `true`.
    #[serde(default = "yes")]
    pub cache: Located<bool>,
    /// Largest object of this route the cache keeps; a larger clip is still served,
    /// only not kept. Default: no limit but `[edge.cache] size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_object: Option<Located<ByteSize>>,
    /// Also cache content the origin wanted credentials for; without it such content
    /// is cached only when the origin marks it `public` (RFC 2326 §12.8). Every viewer
    /// is still authorized by the origin before it gets a cached copy. Default:
    /// `false`.
    #[serde(default)]
    pub cache_authenticated: Located<bool>,
    /// Keep this route's stream open with no viewer (reconnecting with back-off when
    /// the origin goes away), so that even the first viewer starts at once from the
    /// stored keyframe. It applies to the route's own origin URL (a viewer asking for
    /// exactly the advertised path); it costs the origin one session all the time.
    /// Default: `false`.
    #[serde(default)]
    pub always_on: Located<bool>,
}

fn yes() -> Located<bool> {
    Located::new(true)
}

impl Route {
    /// The credentials to present to the origin: the `credentials` table, else the user
    /// information of the `origin` URL (with scheme `auto`), else none.
    pub fn origin_credentials(&self) -> Option<Credentials> {
        if let Some(c) = &self.credentials {
            return Some(c.get().clone());
        }
        self.origin.credentials().map(|c| Credentials {
            username: c.username.clone(),
            password: c.password.clone(),
            scheme: AuthScheme::Auto,
        })
    }
}

/// One `[[edge.publish]]`: who may publish streams under a path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRule {
    /// A path prefix such as `"/live"`, matched on whole path segments (`"/"` is
    /// every path). Required.
    pub path: Located<AdvertisedPrefix>,
    /// Client networks that may publish here. Default: loopback only
    /// (`["127.0.0.0/8", "::1/128"]`); `[]` closes the path to publishers.
    #[serde(default = "loopback_networks")]
    pub clients: Vec<Cidr>,
    /// What a second publisher to a path that has one gets: `"refuse"`
    /// (`409 Conflict`, the first keeps publishing) or `"replace"` (the first is
    /// disconnected, viewers continue with the second). Default: `"refuse"`.
    #[serde(default)]
    pub on_busy: OnBusy,
    /// Users who may publish here after logging in with the edge's login source
    /// (`[edge.auth]`: users file or LDAP), checked after `clients`; `["*"]` is any
    /// user who logs in. Default: `[]` (no login asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
}

/// The networks that may publish where no rule says otherwise.
pub fn loopback_networks() -> Vec<Cidr> {
    vec![
        "127.0.0.0/8".parse().expect("a valid network"),
        "::1/128".parse().expect("a valid network"),
    ]
}

impl PublishRule {
    /// True when a publisher from `addr` may publish under this rule.
    pub fn admits(&self, addr: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows as `::ffff:a.b.c.d`.
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.clients.iter().any(|c| c.contains(addr))
    }

    /// True when a publisher must log in under this rule.
    pub fn requires_login(&self) -> bool {
        !self.users.is_empty()
    }

    /// True when the logged-in `user` may publish under this rule.
    pub fn admits_user(&self, user: &str) -> bool {
        self.users.iter().any(|u| u == "*" || u == user)
    }
}

/// What a second publisher to a busy path gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBusy {
    /// `409 Conflict`; the first publisher keeps the path. The default.
    #[default]
    Refuse,
    /// The first publisher is disconnected; viewers continue with the second.
    Replace,
}

/// Origin credentials of a route.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User name. Required.
    pub username: String,
    /// Password. Required (may be empty).
    pub password: String,
    /// Which authentication to answer with: `auto` (whatever the origin's
    /// `WWW-Authenticate` offers, Digest preferred), `basic` or `digest`. Default: `"auto"`.
    #[serde(default)]
    pub scheme: AuthScheme,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keep passwords out of debug logs.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("scheme", &self.scheme)
            .finish()
    }
}

/// HTTP-style authentication scheme for origins (RFC 7617 Basic, RFC 7616 Digest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// Use what the origin offers, preferring Digest. The default.
    #[default]
    Auto,
    /// Basic only (sends the password in clear; use only on trusted networks).
    Basic,
    /// Digest only.
    Digest,
}

/// How a route lets the origin see each viewer (issue 12 item 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountingMode {
    /// The origin sees the edge's one session per stream only. The default.
    #[default]
    Off,
    /// Per viewer, an accounting connection: a DESCRIBE with the viewer's credentials
    /// (a refusal is the viewer's answer), then held open with keep-alives until the
    /// viewer's session ends. Media still comes from the one shared stream.
    Authorize,
    /// `authorize` plus a full origin session per viewer (SETUP and PLAY over TCP
    /// interleaved on the accounting connection, the media discarded), for origins
    /// that count sessions rather than connections.
    Session,
}

impl AccountingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountingMode::Off => "off",
            AccountingMode::Authorize => "authorize",
            AccountingMode::Session => "session",
        }
    }
}

/// Transport of media between origin and edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTransport {
    /// Interleaved on the RTSP TCP connection (RFC 2326 §10.12). The default.
    #[default]
    Tcp,
    /// RTP/RTCP over UDP.
    Udp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_acl_admits_everyone() {
        let acl = ClientAcl::default();
        assert!(acl.admits(ip("203.0.113.5")));
        assert!(acl.admits(ip("2001:db8::5")));
    }

    #[test]
    fn deny_wins_over_allow() {
        let acl = ClientAcl {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec!["10.9.0.0/16".parse().unwrap()],
        };
        assert!(acl.admits(ip("10.1.2.3")));
        assert!(acl.admits(ip("::ffff:10.1.2.3")));
        assert!(!acl.admits(ip("10.9.2.3")));
        assert!(!acl.admits(ip("192.0.2.1")));
    }

    #[test]
    fn connection_limits_read_and_refuse_nonsense() {
        let cfg = crate::parse_config(
            "[edge]\nrequest_timeout = \"2s\"\nidle_timeout = \"250ms\"\nmax_connections = 5\nmax_connections_per_client = 2\n",
        )
        .expect("valid limits");
        assert_eq!(
            cfg.edge.request_timeout.get(),
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            cfg.edge.idle_timeout.get(),
            std::time::Duration::from_millis(250)
        );
        assert_eq!(cfg.edge.max_connections.get(), 5);
        assert_eq!(cfg.edge.max_connections_per_client.get(), 2);
        for bad in [
            "idle_timeout = \"0s\"",
            "request_timeout = \"2h\"",
            "max_connections = 0",
            "max_connections_per_client = 0",
        ] {
            assert!(
                crate::parse_config(&format!("[edge]\n{bad}\n")).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn forward_proxy_denies_by_default() {
        let fwd = ForwardProxy::default();
        assert!(!fwd.permits("camera.example.com", 554));
        let fwd = ForwardProxy {
            enabled: Located::new(true),
            allow: vec!["camera.example.com:554".parse().unwrap()],
            access: Access::default(),
        };
        assert!(fwd.permits("camera.example.com", 554));
        assert!(!fwd.permits("camera.example.com", 25));
    }

    #[test]
    fn origin_credentials_come_from_the_table_or_the_url() {
        let mut route = Route {
            advertised: Located::new("/cam1".parse().unwrap()),
            origin: "rtsp://admin:pw@192.0.2.10/live".parse().unwrap(),
            credentials: None,
            upstream_transport: UpstreamTransport::Tcp,
            access: Access::default(),
            accounting: Located::default(),
            cache: Located::new(true),
            cache_max_object: None,
            cache_authenticated: Located::default(),
            always_on: Located::default(),
        };
        let from_url = route.origin_credentials().unwrap();
        assert_eq!(
            (from_url.username.as_str(), from_url.password.as_str()),
            ("admin", "pw")
        );
        assert_eq!(from_url.scheme, AuthScheme::Auto);
        route.origin = "rtsp://192.0.2.10/live".parse().unwrap();
        assert_eq!(route.origin_credentials(), None);
        route.credentials = Some(Located::new(Credentials {
            username: "u".into(),
            password: "p".into(),
            scheme: AuthScheme::Digest,
        }));
        assert_eq!(
            route.origin_credentials().map(|c| c.scheme),
            Some(AuthScheme::Digest)
        );
        assert!(!format!("{:?}", route.credentials).contains("\"p\""));
    }

    #[test]
    fn the_cache_is_on_by_default_under_the_state_dir() {
        let cfg = crate::parse_config("state_dir = \"/srv/mg\"\n[[edge.route]]\nadvertised = \"/a\"\norigin = \"rtsp://o/a\"\n")
            .expect("valid");
        let cache = &cfg.edge.cache;
        assert!(*cache.enabled);
        assert_eq!(cache.size.bytes(), 1 << 30);
        assert_eq!(cache.memory.bytes(), 64 << 20);
        assert_eq!(
            cache.dir_under(cfg.state_dir.get()),
            std::path::Path::new("/srv/mg/cache")
        );
        let route = &cfg.edge.route[0];
        assert!(*route.cache.get());
        assert_eq!(route.cache_max_object, None);
        assert!(!*route.cache_authenticated.get());
        assert!(!*route.always_on.get(), "always_on is opt-in");
    }

    #[test]
    fn cache_settings_are_read() {
        let cfg = crate::parse_config(
            "[edge.cache]\nenabled = false\ndir = \"/var/cache/mg\"\nsize = \"2GiB\"\nmemory = \"8MiB\"\n[[edge.route]]\nadvertised = \"/a\"\norigin = \"rtsp://o/a\"\ncache = false\ncache_max_object = \"512MiB\"\ncache_authenticated = true\nalways_on = true\n[[edge.route]]\nadvertised = \"/b\"\norigin = \"rtsp://o/b\"\ncache_max_object = 1048576\n",
        )
        .expect("valid");
        let cache = &cfg.edge.cache;
        assert!(!*cache.enabled);
        assert_eq!(
            cache.dir_under(cfg.state_dir.get()),
            std::path::Path::new("/var/cache/mg")
        );
        assert_eq!(cache.size.bytes(), 2 << 30);
        assert_eq!(cache.memory.bytes(), 8 << 20);
        let a = &cfg.edge.route[0];
        assert!(!*a.cache.get());
        assert_eq!(
            a.cache_max_object.as_ref().map(|m| m.bytes()),
            Some(512 << 20)
        );
        assert!(*a.cache_authenticated.get());
        assert!(*a.always_on.get());
        assert!(!*cfg.edge.route[1].always_on.get());
        let b = &cfg.edge.route[1];
        assert_eq!(
            b.cache_max_object.as_ref().map(|m| m.bytes()),
            Some(1 << 20)
        );
    }

    #[test]
    fn publish_rules_read_with_defaults_and_errors_have_positions() {
        let cfg = crate::parse_config(
            "[[edge.publish]]\npath = \"/live\"\n[[edge.publish]]\npath = \"/enc\"\nclients = [\"10.0.0.0/8\"]\non_busy = \"replace\"\n",
        )
        .expect("valid");
        let (a, b) = (&cfg.edge.publish[0], &cfg.edge.publish[1]);
        assert_eq!(a.clients, loopback_networks(), "loopback by default");
        assert_eq!(a.on_busy, OnBusy::Refuse);
        assert!(a.admits("127.0.0.1".parse().unwrap()) && !a.admits("10.1.1.1".parse().unwrap()));
        assert_eq!(b.on_busy, OnBusy::Replace);
        assert!(b.admits("::ffff:10.1.1.1".parse().unwrap()), "IPv4-mapped");
        assert!(crate::parse_config("").unwrap().edge.publish.is_empty());
        let text = "[[edge.publish]]\npath = \"/live\"\non_busy = \"maybe\"\n";
        let errors = crate::parse_config(text).expect_err("invalid");
        let rendered = crate::render_errors("f.toml", text, &errors);
        assert!(rendered.contains("f.toml:3:11: "), "{rendered}");
        let text = "[[edge.publish]]\nclients = []\n";
        assert!(crate::parse_config(text).is_err(), "path is required");
    }

    #[test]
    fn bad_cache_values_are_reported_with_line_and_column() {
        let text = "[edge.cache]\nsize = \"2 gigs\"\ndir = \"\"\n[[edge.route]]\nadvertised = \"/a\"\norigin = \"rtsp://o/a\"\ncache = \"yes\"\n";
        let errors = crate::parse_config(text).expect_err("invalid");
        let rendered = crate::render_errors("f.toml", text, &errors);
        assert!(
            rendered.contains("f.toml:2:8: invalid size \"2 gigs\": unknown unit \"gigs\""),
            "{rendered}"
        );
        assert!(rendered.contains("f.toml:7:9: "), "{rendered}");
        let text = "[[edge.route]]\nadvertised = \"/a\"\norigin = \"rtsp://o/a\"\ncache_max_object = \"1.5GiB\"\n";
        let errors = crate::parse_config(text).expect_err("invalid");
        let rendered = crate::render_errors("f.toml", text, &errors);
        assert!(
            rendered.contains("f.toml:4:20: invalid size \"1.5GiB\""),
            "{rendered}"
        );

        let text = "[edge.cache]\nsize = \"0B\"\ndir = \"\"\n[[edge.route]]\nadvertised = \"/a\"\norigin = \"rtsp://o/a\"\ncache_max_object = \"0B\"\n";
        let errors = crate::parse_config(text).expect_err("invalid");
        let rendered = crate::render_errors("f.toml", text, &errors);
        assert!(
            rendered.contains("f.toml:2:8: edge.cache.size is 0B, so nothing could be cached"),
            "{rendered}"
        );
        assert!(
            rendered.contains("f.toml:3:7: edge.cache.dir is empty"),
            "{rendered}"
        );
        assert!(
            rendered.contains("f.toml:7:20: route \"/a\" has cache_max_object = \"0B\""),
            "{rendered}"
        );
        // Off, a zero size is no mistake.
        assert!(crate::parse_config("[edge.cache]\nenabled = false\nsize = \"0B\"\n").is_ok());
    }

    #[test]
    fn default_ttl_is_read_and_bad_values_are_refused_where_they_are() {
        assert_eq!(
            std::time::Duration::from(crate::Config::default().edge.cache.default_ttl),
            std::time::Duration::from_secs(3600)
        );
        let cfg = crate::parse_config("[edge.cache]\ndefault_ttl = \"0s\"\n").expect("valid");
        assert_eq!(
            std::time::Duration::from(cfg.edge.cache.default_ttl),
            std::time::Duration::ZERO
        );
        let cfg = crate::parse_config("[edge.cache]\ndefault_ttl = \"720h\"\n").expect("valid");
        assert_eq!(
            std::time::Duration::from(cfg.edge.cache.default_ttl),
            std::time::Duration::from_secs(30 * 86_400)
        );
        for bad in ["721h", "soon", "-1s", "1.5s"] {
            let text = format!("[edge.cache]\ndefault_ttl = \"{bad}\"\n");
            let errors = crate::parse_config(&text).expect_err(bad);
            let rendered = crate::render_errors("f.toml", &text, &errors);
            assert!(rendered.contains("f.toml:2:15: "), "{bad}: {rendered}");
        }
    }
}
