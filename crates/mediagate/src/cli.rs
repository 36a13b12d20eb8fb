//! The `mediagate` command line (clap): subcommands, their arguments, and the
//! conversion of the quick-start subcommands into the same [`Config`] a file would give.
//!
//! What it does: `run [--config FILE]`, `check-config FILE`, `edge --listen ADDR --map
//! ADVERTISED=ORIGIN` (issue 3 item 9) and `relay --ng ADDR:PORT --address IP --ports
//! LOW-HIGH` (issue 4 item 8), `balancer --listen ADDR --backend URL` and `balancer
//! status` (issue 14), `status [--admin URL] [--token-file FILE]` (issue 11),
//! `cache list|pin|unpin|purge [URL]` (issue 13), `user add|del|list --file FILE [USER]` and
//! `report [--config FILE] [--since DATE] [--by url|user|day]` (issue 12),
//! with `--help` and `--version`. Values are parsed by the
//! config value types, so a bad value reads the same on the command line as in a file.
//!
//! What it does not: load files, validate cross-field rules or start roles; `main`
//! does that with the `Config` built here.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

use mediagate_config::{
    AdvertisedPrefix, BackendSpec, BindAddr, ByteSize, Config, DispatcherAddr, HostIp,
    InvalidValue, LocalRelay, Located, MediaAddress, MediaMode, Passport, PortPairRange, Route,
    RtspUrl, SchedulerName, ServiceConfig, SighupAction, ThreadScheduling, UpstreamTransport,
};

/// Streaming-media edge: RTSP caching and splitting proxy and RTP media relay.
#[derive(Debug, Parser)]
#[command(
    name = "mediagate",
    version,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = "Examples:\n  \
        mediagate run --config /etc/mediagate/mediagate.toml\n  \
        mediagate check-config /etc/mediagate/mediagate.toml\n  \
        mediagate edge --map /cam1=rtsp://admin:secret@192.0.2.10/Streaming/Channels/101\n  \
        mediagate relay --ng 127.0.0.1:2223 --address 192.0.2.20 --ports 30000-39999\n  \
        mediagate balancer --listen 0.0.0.0:554 --backend rtsp://10.0.0.1:8554 --backend rtsp://10.0.0.2:8554"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the roles a config file enables
    ///
    /// Without --config: the built-in defaults, the edge alone on 0.0.0.0:8554 with
    /// state under ./var.
    Run(RunArgs),
    /// Check a config file without running anything
    ///
    /// Prints "FILE: ok" and exits with status 0, or prints every problem as
    /// "FILE:LINE:COL: message" on stderr and exits with status 2.
    #[command(name = "check-config")]
    CheckConfig(CheckConfigArgs),
    /// Quick start: proxy RTSP cameras or servers without a config file
    ///
    /// Each --map publishes an origin under a local name. Everything not given takes
    /// the built-in defaults (see config/mediagate.example.toml).
    #[command(after_help = "Examples:\n  \
        mediagate edge --map /cam1=rtsp://192.0.2.10:554/live\n  \
        mediagate edge --listen [::]:8554 --map /lobby=rtsp://viewer:secret@cam-lobby.example.net/h264 \\\n      \
        --map rtsp://edge.example.com/yard=rtsp://192.0.2.11/stream1\n\n\
        Viewers then open rtsp://THIS-HOST:8554/cam1 (or /lobby, ...).")]
    Edge(EdgeArgs),
    /// Quick start: an RTP/RTCP relay for Kamailio or OpenSIPS without a config file
    ///
    /// The SIP proxy drives it over the rtpengine ng protocol. Everything not given
    /// takes the built-in defaults (see config/mediagate.example.toml).
    #[command(
        after_help = "Example (Kamailio: modparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:2223\")):\n  \
        mediagate relay --ng 127.0.0.1:2223 --address 192.0.2.20 --ports 30000-39999\n  \
        mediagate relay --ng 127.0.0.1:2223 --address '10.0.0.5!203.0.113.7' --address 2001:db8::5\n\n\
        Behind a dispatcher (certificates from `mediagate cert`, docs/dispatcher-link.md):\n  \
        mediagate relay --dispatcher dispatcher.example.net:25060 --tls-dir relay1 --address 192.0.2.20"
    )]
    Relay(RelayArgs),
    /// Quick start: a dispatcher in front of relays, for Kamailio or OpenSIPS
    ///
    /// The SIP proxy talks to it over rtpengine's ng protocol (--ng) or MediaProxy's
    /// (--mediaproxy-socket); it picks a relay for each call. Relays connect over
    /// mutual TLS (--relays, --tls-dir; `mediagate relay --dispatcher`) or run in
    /// this process (--local-relay), or both. See docs/dispatcher.md.
    /// `mediagate dispatcher summary|sessions` reads a running dispatcher's relays
    /// and calls.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Example (Kamailio: modparam(\"mediaproxy\", \"mediaproxy_socket\", \"/run/mediagate/dispatcher.sock\")):\n  \
        mediagate cert ca --dir pki\n  \
        mediagate cert issue --ca pki --dir dispatcher dispatcher\n  \
        mediagate dispatcher --ng 127.0.0.1:2223 --mediaproxy-socket /run/mediagate/dispatcher.sock \\\n      \
        --relays 0.0.0.0:25060 --tls-dir dispatcher\n\n\
        Relays in this process instead (no certificates):\n  \
        mediagate dispatcher --ng 127.0.0.1:2223 --mediaproxy-socket /run/mediagate/dispatcher.sock \\\n      \
        --local-relay 192.0.2.20@30000-34999 --local-relay 192.0.2.21@35000-39999\n  \
        mediagate dispatcher summary\n  \
        mediagate dispatcher sessions --admin http://192.0.2.5:9554 --token-file /etc/mediagate/admin.token"
    )]
    Dispatcher(DispatcherArgs),
    /// Quick start: an RTSP load balancer in front of media servers or edges
    ///
    /// One RTSP service: sessions routed by the balancer's own session IDs, media
    /// relayed through it (relay mode), round robin. Everything not given takes the
    /// built-in defaults (see config/mediagate.example.toml, [balancer]).
    /// `mediagate balancer status` shows a running balancer's services and back ends.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Examples:\n  \
        mediagate balancer --listen 0.0.0.0:554 --backend rtsp://10.0.0.1:8554 --backend rtsp://10.0.0.2:8554\n  \
        mediagate balancer --listen 0.0.0.0:554 --mode direct --scheduler least_sessions \\\n      \
        --backend rtsp://10.0.0.1:8554 --backend 'rtsp://10.0.0.2:8554 weight=2'\n  \
        mediagate balancer status"
    )]
    Balancer(BalancerArgs),
    /// Show what a running mediagate serves: roles, streams, viewers, calls
    ///
    /// Asks the instance's admin API and prints a one-screen summary; exits with
    /// status 1 when nothing answers or the API refuses.
    #[command(after_help = "Examples:\n  \
        mediagate status\n  \
        mediagate status --admin http://192.0.2.5:9554 --token-file /etc/mediagate/admin.token\n  \
        mediagate status --admin https://192.0.2.5:9554 --cacert ca.pem --cert me.pem --key me.key")]
    Status(StatusArgs),
    /// List, pin, unpin, purge or prefetch what a running edge keeps in its on-demand cache
    ///
    /// Asks the instance's admin API, as `status` does. URL is the origin URL of the
    /// content as `mediagate cache list` shows it, or the URL a viewer asks the edge
    /// for (resolved through its routes); without --tracks an action applies
    /// to every variant (track selection) of the URL. Exits with status 1 when the
    /// API refuses or nothing matches.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        mediagate cache list\n  \
        mediagate cache pin rtsp://192.0.2.10/vod/trailer.mp4\n  \
        mediagate cache purge rtsp://192.0.2.10/vod/trailer.mp4 --tracks 0,1\n  \
        mediagate cache prefetch rtsp://edge.example.net/vod/trailer.mp4\n  \
        mediagate cache prefetch --cancel rtsp://edge.example.net/vod/trailer.mp4\n  \
        mediagate cache unpin --admin http://192.0.2.5:9554 --token-file /etc/mediagate/admin.token rtsp://192.0.2.10/vod/a.mp4"
    )]
    Cache(CacheCommand),
    /// Manage an edge users file ([edge.auth] users_file)
    ///
    /// Passwords are read from the terminal (without echo) or, with --password-stdin,
    /// from the first line of standard input; never from the command line. The running
    /// edge reads the file again on SIGHUP.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        mediagate user add --file /etc/mediagate/users --group staff alice\n  \
        printf '%s\\n' \"$PW\" | mediagate user add --file users --password-stdin --digest-realm mediagate bob\n  \
        mediagate user list --file /etc/mediagate/users\n  \
        mediagate user del --file /etc/mediagate/users bob"
    )]
    User(UserCommand),
    /// Totals of the edge's viewer sessions from the records store
    ///
    /// Per URL, per user or per day: viewers, hours watched, bytes, hit ratio and
    /// bandwidth saved (docs/operations.md says how each is computed). Reads the store
    /// the config names: PostgreSQL when [accounting] postgres_url is set, else the
    /// SQLite file under state_dir.
    #[command(after_help = "Examples:\n  \
        mediagate report --config /etc/mediagate/mediagate.toml\n  \
        mediagate report --config /etc/mediagate/mediagate.toml --by day --since 2026-12-01")]
    Report(ReportArgs),
    /// Make the certificates of a dispatcher cluster: a CA, node certificates, revocations
    ///
    /// Relays and dispatchers link over mutual TLS; each node's --tls-dir holds the CA
    /// certificate (ca.pem), its own certificate and key (cert.pem, key.pem) and,
    /// once a certificate has been revoked, crl.pem. Certificates made with openssl in
    /// the same layout work the same.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        mediagate cert ca --dir pki\n  \
        mediagate cert issue --ca pki --dir dispatcher dispatcher\n  \
        mediagate cert issue --ca pki --dir relay1 relay1\n  \
        mediagate cert revoke --ca pki relay1/cert.pem"
    )]
    Cert(CertCommand),
}

/// `mediagate cert` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create a CA: DIR/ca.pem and DIR/ca-key.pem (mode 0600; keep it off the nodes)
    Ca {
        /// Directory to create the CA in (created if missing; nothing is overwritten).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's common name [default: "mediagate cluster CA" and 8 random hex
        /// digits, so no two clusters' CAs share a name].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Issue a node certificate: DIR/ca.pem, DIR/cert.pem, DIR/key.pem (0600)
    ///
    /// The certificate's CN and subject alternative name are NAME, and it serves as
    /// TLS client and server. DIR is the node's --tls-dir.
    Issue {
        /// The CA's directory (from `mediagate cert ca`).
        #[arg(long, value_name = "CA_DIR")]
        ca: PathBuf,
        /// The node's directory (created if missing; nothing is overwritten).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node's name: a host name such as relay1, or an IP address.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Revoke a node certificate: adds it to CA_DIR/crl.pem
    ///
    /// Copy crl.pem into every node's --tls-dir (a node uses it when present) and
    /// restart the nodes, or at least the dispatchers.
    Revoke {
        /// The CA's directory.
        #[arg(long, value_name = "CA_DIR")]
        ca: PathBuf,
        /// The certificate to revoke (PEM), such as relay1/cert.pem.
        #[arg(value_name = "CERT")]
        cert: PathBuf,
    },
}

/// `mediagate cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached objects: URL, tracks, complete or the ranges held, size, pinned
    List(CacheListArgs),
    /// Pin a URL's objects: never evicted, whatever the size limit
    Pin(CacheTargetArgs),
    /// Unpin a URL's objects: evicted again when the cache is full
    Unpin(CacheTargetArgs),
    /// Remove a URL's objects from the cache now
    Purge(CacheTargetArgs),
    /// Fill a URL's object with no viewer, showing progress until it is complete
    ///
    /// The edge fetches the clip itself, faster than real time when the origin
    /// accepts `Speed`. A progress bar on a terminal, a line per 10% otherwise.
    /// Interrupting this command does not stop the prefetch; --cancel does, and
    /// keeps what arrived as a partial object.
    Prefetch(CachePrefetchArgs),
}

/// Arguments of `mediagate cache prefetch`.
#[derive(Debug, Args)]
pub struct CachePrefetchArgs {
    /// The URL a viewer asks the edge for, or an origin URL the forward rules allow.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Only these SDP media indexes (e.g. 0,1) [default: every track].
    #[arg(long, value_name = "INDEXES", value_delimiter = ',')]
    pub tracks: Option<Vec<usize>>,
    /// The `Speed` asked of the origin (1 = real time) [default: 8].
    #[arg(long, value_name = "X")]
    pub speed: Option<f64>,
    /// Cancel the running prefetch of URL instead of starting one.
    #[arg(long, conflicts_with = "speed")]
    pub cancel: bool,
    /// Start it and return at once (poll with `GET /api/v1/cache/prefetch`).
    #[arg(long, conflicts_with = "cancel")]
    pub detach: bool,
    /// How to reach the instance.
    #[command(flatten)]
    pub api: StatusArgs,
}

/// Arguments of `mediagate cache list`.
#[derive(Debug, Args)]
pub struct CacheListArgs {
    /// How to reach the instance.
    #[command(flatten)]
    pub api: StatusArgs,
}

/// Arguments of `mediagate cache pin|unpin|purge`.
#[derive(Debug, Args)]
pub struct CacheTargetArgs {
    /// The origin URL of the content, as `mediagate cache list` shows it.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Only the variant with these SDP media indexes (e.g. 0,1) [default: every
    /// variant of URL].
    #[arg(long, value_name = "INDEXES", value_delimiter = ',')]
    pub tracks: Option<Vec<usize>>,
    /// How to reach the instance.
    #[command(flatten)]
    pub api: StatusArgs,
}

/// `mediagate user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user, or set a user's password and groups
    Add(UserAddArgs),
    /// Remove a user
    Del(UserDelArgs),
    /// List users with their groups and whether they can use Digest
    List(UserListArgs),
}

/// Arguments of `mediagate user add`.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// The users file (created, mode 0600, if missing).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// A group of the user (repeat for several).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Also store the Digest HA1 (MD5 and SHA-256) for this realm, so players can log
    /// in with Digest; a password equivalent for that realm (see docs/edge-auth.md).
    #[arg(long = "digest-realm", value_name = "REALM")]
    pub digest_realm: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// The user name.
    #[arg(value_name = "USER")]
    pub user: String,
}

/// Arguments of `mediagate user del`.
#[derive(Debug, Args)]
pub struct UserDelArgs {
    /// The users file.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// The user name.
    #[arg(value_name = "USER")]
    pub user: String,
}

/// Arguments of `mediagate user list`.
#[derive(Debug, Args)]
pub struct UserListArgs {
    /// The users file.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Only this user.
    #[arg(value_name = "USER")]
    pub user: Option<String>,
}

/// Arguments of `mediagate report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// TOML config file whose store to read [default: the built-in defaults, ./var].
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only sessions that started on or after this UTC day, YYYY-MM-DD.
    #[arg(long = "since", value_name = "DATE")]
    pub since: Option<String>,
    /// How to group the totals.
    #[arg(long = "by", value_enum, default_value = "url")]
    pub by: ReportBy,
}

/// `--by` of `mediagate report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportBy {
    Url,
    User,
    Day,
}

/// Arguments of `mediagate balancer`.
#[derive(Debug, Args)]
pub struct BalancerArgs {
    /// `status`: show a running balancer instead of starting one.
    #[command(subcommand)]
    pub command: Option<BalancerCommand>,
    /// TCP address for RTSP clients, IP:PORT; repeat for several.
    #[arg(long = "listen", value_name = "IP:PORT", required = true)]
    pub listen: Vec<BindAddr>,
    /// A back end, rtsp://HOST:PORT[/path] or HOST:PORT, optionally followed by
    /// " weight=N" (quote it); repeat for each.
    #[arg(long = "backend", value_name = "URL", required = true)]
    pub backend: Vec<BackendSpec>,
    /// Where media flows [default: relay].
    #[arg(long = "mode", value_enum)]
    pub mode: Option<BalancerMode>,
    /// How a new session picks a back end [default: round_robin].
    #[arg(long = "scheduler", value_enum)]
    pub scheduler: Option<BalancerScheduler>,
}

/// `mediagate balancer` subcommands.
#[derive(Debug, Subcommand)]
pub enum BalancerCommand {
    /// Show a running balancer's services and back ends with their counters
    ///
    /// Asks the instance's admin API, as `mediagate status` does.
    Status(StatusArgs),
}

/// `--mode` of `mediagate balancer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BalancerMode {
    /// Media through the balancer (works through any NAT).
    Relay,
    /// Media from the back end straight to the client.
    Direct,
    /// RTSP 302 to the chosen back end's URL.
    Redirect,
}

/// `--scheduler` of `mediagate balancer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum BalancerScheduler {
    RoundRobin,
    WeightedRoundRobin,
    LeastSessions,
    WeightedLeastSessions,
    LeastBandwidth,
    SourceHash,
    UrlHash,
}

impl BalancerArgs {
    /// The config `mediagate balancer` runs: the defaults, the balancer enabled with
    /// one RTSP service named "rtsp", the edge off.
    pub fn to_config(&self) -> Config {
        let mut config = Config::default();
        config.edge.enabled = Located::new(false);
        config.balancer.enabled = Located::new(true);
        let mut service = ServiceConfig::new("rtsp", self.listen.clone(), self.backend.clone());
        if let Some(mode) = self.mode {
            service.media_mode = Located::new(match mode {
                BalancerMode::Relay => MediaMode::Relay,
                BalancerMode::Direct => MediaMode::Direct,
                BalancerMode::Redirect => MediaMode::Redirect,
            });
        }
        if let Some(s) = self.scheduler {
            service.scheduler = Located::new(match s {
                BalancerScheduler::RoundRobin => SchedulerName::RoundRobin,
                BalancerScheduler::WeightedRoundRobin => SchedulerName::WeightedRoundRobin,
                BalancerScheduler::LeastSessions => SchedulerName::LeastSessions,
                BalancerScheduler::WeightedLeastSessions => SchedulerName::WeightedLeastSessions,
                BalancerScheduler::LeastBandwidth => SchedulerName::LeastBandwidth,
                BalancerScheduler::SourceHash => SchedulerName::SourceHash,
                BalancerScheduler::UrlHash => SchedulerName::UrlHash,
            });
        }
        config.balancer.service = vec![service];
        config
    }
}

/// Arguments of `mediagate status` (and how `mediagate cache` reaches the instance).
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The admin API's address, http://HOST:PORT or https://HOST:PORT.
    #[arg(
        long = "admin",
        value_name = "URL",
        default_value = "http://127.0.0.1:9554"
    )]
    pub admin: String,
    /// The bearer token (visible to other users in the process list: prefer
    /// --token-file).
    #[arg(long = "token", value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the bearer token, as [admin] token_file.
    #[arg(long = "token-file", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// For an https:// API: CA certificates (PEM) its certificate must chain to.
    #[arg(long = "cacert", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// For mutual TLS: this client's certificate (PEM); needs --key.
    #[arg(long = "cert", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// For mutual TLS: the private key of --cert (PEM).
    #[arg(long = "key", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// Arguments of `mediagate run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config file; see config/mediagate.example.toml for every key.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `mediagate check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// TOML config file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Arguments of `mediagate edge`.
#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// TCP address for RTSP, IP:PORT; repeat for several [default: 0.0.0.0:8554].
    #[arg(long = "listen", value_name = "IP:PORT")]
    pub listen: Vec<BindAddr>,
    /// A route: ADVERTISED is a path prefix (/cam1) or an rtsp://host[:port]/prefix URL
    /// viewers use; ORIGIN is the rtsp://[user:password@]host[:port]/path prefix it
    /// stands for. Repeat for several.
    #[arg(long = "map", value_name = "ADVERTISED=ORIGIN", required = true)]
    pub map: Vec<RouteMap>,
    /// Most connections from one client address (a load generator on one host needs
    /// more) [default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_client: Option<u32>,
    /// Directory of the on-demand cache's objects [default: ./var/cache].
    #[arg(long = "cache-dir", value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the cache may take on disk, e.g. 2GiB or 500MiB [default: 1GiB].
    #[arg(long = "cache-size", value_name = "SIZE", conflicts_with = "no_cache")]
    pub cache_size: Option<ByteSize>,
    /// Do not cache on-demand content: every viewer gets its own origin session.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
}

/// Arguments of `mediagate relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// UDP address for ng commands, IP:PORT; repeat for several (not needed with
    /// --dispatcher).
    #[arg(
        long = "ng",
        value_name = "IP:PORT",
        required_unless_present = "dispatcher"
    )]
    pub ng: Vec<BindAddr>,
    /// TCP address for ng commands, IP:PORT; repeat for several [default: none].
    #[arg(long = "ng-tcp", value_name = "IP:PORT")]
    pub ng_tcp: Vec<BindAddr>,
    /// Local IPv4 or IPv6 address media is relayed on; LOCAL!ADVERTISED advertises
    /// another address in SDP (1:1 NAT), as rtpengine's --interface does. Repeat for
    /// several (quote the '!' in shells).
    #[arg(long = "address", value_name = "IP[!ADVERTISED]", required = true)]
    pub address: Vec<RelayAddress>,
    /// UDP port range for RTP/RTCP pairs, LOW-HIGH with an even LOW [default: 24576-32767].
    #[arg(long, value_name = "LOW-HIGH")]
    pub ports: Option<PortPairRange>,
    /// Scheduling of the forwarding threads, as rtpengine's --scheduling and
    /// --priority: normal, normal:NICE, batch, idle, fifo:PRIO or rr:PRIO (PRIO 1-99;
    /// real-time needs CAP_SYS_NICE) [default: normal].
    #[arg(long, value_name = "POLICY[:PRIORITY]")]
    pub scheduling: Option<ThreadScheduling>,
    /// A dispatcher to take calls from over mutual TLS, HOST:PORT (port 25060 by
    /// default on the dispatcher); repeat for several. Needs --tls-dir.
    #[arg(long = "dispatcher", value_name = "HOST:PORT", requires = "tls_dir")]
    pub dispatcher: Vec<DispatcherAddr>,
    /// Directory with ca.pem, cert.pem, key.pem and optional crl.pem for the
    /// dispatcher link (`mediagate cert issue` makes one).
    #[arg(long = "tls-dir", value_name = "DIR", requires = "dispatcher")]
    pub tls_dir: Option<PathBuf>,
    /// Subject fields the dispatcher's certificate must have, such as
    /// "O=Example, CN=dispatcher*" [default: any certificate of the CA].
    #[arg(long, value_name = "FIELD=VALUE,...", requires = "dispatcher")]
    pub passport: Option<Passport>,
    /// What SIGHUP does: reload (the config, log files) or halt (stop gracefully as
    /// SIGTERM: new calls refused, running calls kept until they end, as MediaProxy's
    /// relay) [default: reload].
    #[arg(long, value_name = "ACTION", value_parser = parse_sighup)]
    pub sighup: Option<SighupAction>,
}

fn parse_sighup(s: &str) -> Result<SighupAction, String> {
    match s {
        "reload" => Ok(SighupAction::Reload),
        "halt" => Ok(SighupAction::Halt),
        _ => Err("write reload or halt".to_owned()),
    }
}

/// Arguments of `mediagate dispatcher`.
#[derive(Debug, Args)]
pub struct DispatcherArgs {
    /// `summary` or `sessions`: read a running dispatcher instead of starting one.
    #[command(subcommand)]
    pub command: Option<DispatcherCommand>,
    /// UDP address for ng commands, IP:PORT; repeat for several [default: none].
    #[arg(long = "ng", value_name = "IP:PORT")]
    pub ng: Vec<BindAddr>,
    /// TCP address for ng commands, IP:PORT; repeat for several [default: none].
    #[arg(long = "ng-tcp", value_name = "IP:PORT")]
    pub ng_tcp: Vec<BindAddr>,
    /// UNIX stream socket for the mediaproxy module (created mode 0660) [default: none].
    #[arg(long = "mediaproxy-socket", value_name = "PATH")]
    pub mediaproxy_socket: Option<PathBuf>,
    /// A relay run inside this process: its media address (LOCAL!ADVERTISED for 1:1
    /// NAT) and port range; named local1, local2, ... in order. Repeat for several.
    #[arg(long = "local-relay", value_name = "IP[!ADVERTISED]@LOW-HIGH")]
    pub local_relay: Vec<LocalRelayArg>,
    /// Address relays connect to over mutual TLS, IP:PORT (25060 by convention).
    /// Needs --tls-dir.
    #[arg(long = "relays", value_name = "IP:PORT", requires = "tls_dir")]
    pub relays: Option<BindAddr>,
    /// Directory with ca.pem, cert.pem, key.pem and optional crl.pem for the relay
    /// link (`mediagate cert issue` makes one).
    #[arg(long = "tls-dir", value_name = "DIR", requires = "relays")]
    pub tls_dir: Option<PathBuf>,
    /// Subject fields a relay's certificate must have, such as
    /// "O=Example, CN=relay*" [default: any certificate of the CA].
    #[arg(long, value_name = "FIELD=VALUE,...", requires = "relays")]
    pub passport: Option<Passport>,
}

/// `mediagate dispatcher` subcommands: MediaProxy's management answers, read through
/// the admin API.
#[derive(Debug, Subcommand)]
pub enum DispatcherCommand {
    /// Print the relays as one line holding a JSON array (MediaProxy's `summary`)
    ///
    /// Asks the instance's admin API (`GET /api/v1/dispatcher/summary`), as
    /// `mediagate status` does.
    Summary(StatusArgs),
    /// Print every call of the cluster as one line holding a JSON array
    /// (MediaProxy's `sessions`)
    ///
    /// Asks the instance's admin API (`GET /api/v1/dispatcher/sessions`).
    Sessions(StatusArgs),
}

/// One `--local-relay IP[!ADVERTISED]@LOW-HIGH`.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalRelayArg {
    /// Media address.
    pub address: RelayAddress,
    /// Port range.
    pub ports: PortPairRange,
}

impl FromStr for LocalRelayArg {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let Some((address, ports)) = s.rsplit_once('@') else {
            return Err(InvalidValue::new(
                "write IP[!ADVERTISED]@LOW-HIGH, for example 192.0.2.20@30000-39999".to_owned(),
            ));
        };
        Ok(Self {
            address: address.parse()?,
            ports: ports.parse()?,
        })
    }
}

impl DispatcherArgs {
    /// The config `mediagate dispatcher` runs: the defaults, the edge off, the
    /// dispatcher on with the given front doors and relays.
    pub fn to_config(&self) -> Config {
        let mut config = Config::default();
        config.edge.enabled = Located::new(false);
        let d = &mut config.dispatcher;
        d.enabled = Located::new(true);
        d.ng_listen_udp = self.ng.clone();
        d.ng_listen_tcp = self.ng_tcp.clone();
        d.mediaproxy_socket = self.mediaproxy_socket.clone().map(Located::new);
        d.relay_listen = self.relays.map(Located::new);
        d.tls_dir = self.tls_dir.clone().map(Located::new);
        d.passport = self.passport.clone();
        d.local_relay = Located::new(
            self.local_relay
                .iter()
                .enumerate()
                .map(|(i, r)| LocalRelay {
                    name: format!("local{}", i + 1),
                    address: Located::new(r.address.local),
                    advertised: r.address.advertised,
                    ports: Located::new(r.ports),
                })
                .collect(),
        );
        config
    }
}

/// One `--map ADVERTISED=ORIGIN`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteMap {
    /// The name viewers use.
    pub advertised: AdvertisedPrefix,
    /// The origin URL prefix.
    pub origin: RtspUrl,
}

impl FromStr for RouteMap {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        const FORM: &str = "write ADVERTISED=ORIGIN, for example /cam1=rtsp://192.0.2.10/stream";
        // ORIGIN always starts with rtsp://, and that is what tells the separating '='
        // from an '=' inside a path such as /trackID=1.
        let split = s.to_ascii_lowercase().find("=rtsp://");
        let Some(at) = split else {
            let why = if s.contains('=') {
                "ORIGIN must be an rtsp:// URL"
            } else {
                "the '=' between ADVERTISED and ORIGIN is missing"
            };
            return Err(InvalidValue::new(format!("{why}; {FORM}")));
        };
        let (advertised, origin) = (s.get(..at).unwrap_or(""), s.get(at + 1..).unwrap_or(""));
        Ok(Self {
            advertised: advertised.parse()?,
            origin: origin.parse()?,
        })
    }
}

/// One `--address LOCAL[!ADVERTISED]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RelayAddress {
    /// Address media sockets bind to.
    pub local: HostIp,
    /// Address written into SDP instead, if any.
    pub advertised: Option<HostIp>,
}

impl FromStr for RelayAddress {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let (local, advertised) = match s.split_once('!') {
            Some((local, advertised)) => (local, Some(advertised.parse()?)),
            None => (s, None),
        };
        Ok(Self {
            local: local.parse()?,
            advertised,
        })
    }
}

impl EdgeArgs {
    /// The config `mediagate edge` runs: the defaults, the edge enabled on the given
    /// listeners (or the default one), one route per `--map` over TCP, relay off.
    pub fn to_config(&self) -> Config {
        let mut config = Config::default();
        config.edge.enabled = Located::new(true);
        if !self.listen.is_empty() {
            config.edge.listen = Located::new(self.listen.clone());
        }
        config.edge.route = self
            .map
            .iter()
            .map(|m| Route {
                advertised: Located::new(m.advertised.clone()),
                origin: m.origin.clone(),
                credentials: None,
                upstream_transport: UpstreamTransport::Tcp,
                access: Default::default(),
                accounting: Default::default(),
                cache: Located::new(true),
                cache_max_object: None,
                cache_authenticated: Default::default(),
                always_on: Default::default(),
            })
            .collect();
        if self.no_cache {
            config.edge.cache.enabled = Located::new(false);
        }
        if let Some(dir) = &self.cache_dir {
            config.edge.cache.dir = Some(Located::new(dir.clone()));
        }
        if let Some(size) = self.cache_size {
            config.edge.cache.size = Located::new(size);
        }
        if let Some(n) = self
            .max_connections_per_client
            .and_then(|n| mediagate_config::MaxConnections::new(n.into()).ok())
        {
            config.edge.max_connections_per_client = n;
        }
        config.relay.enabled = Located::new(false);
        config
    }
}

impl RelayArgs {
    /// The config `mediagate relay` runs: the defaults, the relay enabled with the given
    /// ng listeners, media addresses and port range, the edge off.
    pub fn to_config(&self) -> Config {
        let mut config = Config::default();
        config.edge.enabled = Located::new(false);
        config.relay.enabled = Located::new(true);
        config.relay.ng_listen_udp = self.ng.clone();
        config.relay.ng_listen_tcp = self.ng_tcp.clone();
        config.relay.media_address = Located::new(
            self.address
                .iter()
                .map(|a| MediaAddress {
                    address: Located::new(a.local),
                    advertised: a.advertised,
                })
                .collect(),
        );
        if let Some(ports) = self.ports {
            config.relay.ports = Located::new(ports);
        }
        if let Some(scheduling) = self.scheduling {
            config.relay.forward_scheduling = scheduling;
        }
        config.relay.dispatchers = self.dispatcher.clone();
        config.relay.tls_dir = self.tls_dir.clone();
        config.relay.passport = self.passport.clone();
        if let Some(action) = self.sighup {
            config.relay.sighup = action;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use mediagate_config::{parse_config, validate, Host};

    fn parse(args: &[&str]) -> Result<Command, String> {
        let mut argv = vec!["mediagate"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|c| c.command)
            .map_err(|e| e.to_string())
    }

    fn edge_config(args: &[&str]) -> Config {
        match parse(args).unwrap() {
            Command::Edge(edge) => edge.to_config(),
            other => panic!("not edge: {other:?}"),
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn edge_quick_start_can_raise_the_per_client_cap() {
        let c = edge_config(&["edge", "--map", "/a=rtsp://o/a"]);
        assert_eq!(c.edge.max_connections_per_client.get(), 100);
        let c = edge_config(&[
            "edge",
            "--map",
            "/a=rtsp://o/a",
            "--max-connections-per-client",
            "2000",
        ]);
        assert_eq!(c.edge.max_connections_per_client.get(), 2000);
        assert!(parse(&[
            "edge",
            "--map",
            "/a=rtsp://o/a",
            "--max-connections-per-client",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn edge_quick_start_builds_the_same_config_as_a_file() {
        let from_cli = edge_config(&[
            "edge",
            "--listen",
            "127.0.0.1:9554",
            "--listen",
            "[::1]:9554",
            "--map",
            "/cam1=rtsp://admin:pw@192.0.2.10:554/Streaming/Channels/101",
            "--map",
            "rtsp://edge.example.com/yard=RTSP://cam-yard/stream?channel=1",
        ]);
        let from_file = parse_config(
            r#"
[edge]
listen = ["127.0.0.1:9554", "[::1]:9554"]

[[edge.route]]
advertised = "/cam1"
origin = "rtsp://admin:pw@192.0.2.10:554/Streaming/Channels/101"

[[edge.route]]
advertised = "rtsp://edge.example.com/yard"
origin = "rtsp://cam-yard/stream?channel=1"
"#,
        )
        .unwrap();
        assert_eq!(from_cli, from_file);
        assert_eq!(validate(&from_cli), Vec::new());
        let route = &from_cli.edge.route[0];
        assert_eq!(
            route.origin_credentials().map(|c| c.username),
            Some("admin".to_owned())
        );
        assert_eq!(
            from_cli.edge.route[1].origin.host(),
            &Host::Name("cam-yard".into())
        );
        assert_eq!(from_cli.edge.route[1].origin.path(), "/stream?channel=1");
    }

    #[test]
    fn edge_listen_defaults_and_map_is_required() {
        let config = edge_config(&["edge", "--map", "/a=rtsp://h/x"]);
        assert_eq!(
            config.edge.listen.get(),
            Config::default().edge.listen.get()
        );
        assert!(!*config.relay.enabled);
        let err = parse(&["edge"]).unwrap_err();
        assert!(err.contains("--map <ADVERTISED=ORIGIN>"), "{err}");
    }

    #[test]
    fn edge_map_errors_are_clear() {
        let err = parse(&["edge", "--map", "/cam1"]).unwrap_err();
        assert!(
            err.contains("invalid value '/cam1' for '--map <ADVERTISED=ORIGIN>'"),
            "{err}"
        );
        assert!(
            err.contains("the '=' between ADVERTISED and ORIGIN is missing"),
            "{err}"
        );
        let err = parse(&["edge", "--map", "/cam1=http://h/"]).unwrap_err();
        assert!(err.contains("ORIGIN must be an rtsp:// URL"), "{err}");
        let err = parse(&["edge", "--map", "cam1=rtsp://h/"]).unwrap_err();
        assert!(err.contains("expected a path starting with '/'"), "{err}");
        let err = parse(&["edge", "--map", "/a=rtsp://h:99999/"]).unwrap_err();
        assert!(err.contains("\"99999\" is not a port"), "{err}");
        let err = parse(&[
            "edge",
            "--listen",
            "localhost:8554",
            "--map",
            "/a=rtsp://h/",
        ])
        .unwrap_err();
        assert!(err.contains("host names are not allowed here"), "{err}");
    }

    #[test]
    fn edge_quick_start_cache_flags() {
        let c = edge_config(&["edge", "--map", "/a=rtsp://o/a"]);
        assert_eq!(c.edge.cache, Config::default().edge.cache);
        assert!(*c.edge.cache.enabled);
        let c = edge_config(&[
            "edge",
            "--map",
            "/a=rtsp://o/a",
            "--cache-dir",
            "/srv/cache",
            "--cache-size",
            "2GiB",
        ]);
        let from_file = parse_config(
            "[edge.cache]\ndir = \"/srv/cache\"\nsize = \"2GiB\"\n[[edge.route]]\nadvertised = \"/a\"\norigin = \"rtsp://o/a\"\n",
        )
        .unwrap();
        assert_eq!(c.edge.cache, from_file.edge.cache);
        let c = edge_config(&["edge", "--map", "/a=rtsp://o/a", "--no-cache"]);
        assert!(!*c.edge.cache.enabled);
        let err = parse(&["edge", "--map", "/a=rtsp://o/a", "--cache-size", "2G"]).unwrap_err();
        assert!(
            err.contains("invalid value '2G' for '--cache-size <SIZE>'")
                && err.contains("unknown unit \"G\""),
            "{err}"
        );
        assert!(parse(&[
            "edge",
            "--map",
            "/a=rtsp://o/a",
            "--no-cache",
            "--cache-size",
            "1GiB"
        ])
        .is_err());
    }

    #[test]
    fn map_splits_at_the_origin_scheme() {
        let m: RouteMap = "/cam/trackID=1=rtsp://h/x".parse().unwrap();
        assert_eq!(m.advertised.to_string(), "/cam/trackID=1");
        assert_eq!(m.origin.to_string(), "rtsp://h/x");
    }

    #[test]
    fn relay_quick_start_builds_the_same_config_as_a_file() {
        let Command::Relay(relay) = parse(&[
            "relay",
            "--ng",
            "127.0.0.1:2223",
            "--address",
            "10.0.0.5!203.0.113.7",
            "--address",
            "2001:db8::5",
            "--ports",
            "30000-39999",
            "--scheduling",
            "fifo:10",
        ])
        .unwrap() else {
            panic!("not relay");
        };
        let from_cli = relay.to_config();
        let from_file = parse_config(
            r#"
[edge]
enabled = false

[relay]
enabled = true
ng_listen_udp = ["127.0.0.1:2223"]
ports = "30000-39999"
forward_scheduling = "fifo:10"
media_address = [
  { address = "10.0.0.5", advertised = "203.0.113.7" },
  { address = "2001:db8::5" },
]
"#,
        )
        .unwrap();
        assert_eq!(from_cli, from_file);
        assert_eq!(validate(&from_cli), Vec::new());
    }

    #[test]
    fn dispatcher_summary_and_sessions_read_a_running_instance() {
        let Command::Dispatcher(args) = parse(&["dispatcher", "summary"]).unwrap() else {
            panic!("not dispatcher");
        };
        let Some(DispatcherCommand::Summary(status)) = args.command else {
            panic!("not summary: {:?}", args.command);
        };
        assert_eq!(status.admin, "http://127.0.0.1:9554");
        let Command::Dispatcher(args) =
            parse(&["dispatcher", "sessions", "--admin", "http://192.0.2.5:9554"]).unwrap()
        else {
            panic!("not dispatcher");
        };
        let Some(DispatcherCommand::Sessions(status)) = args.command else {
            panic!("not sessions: {:?}", args.command);
        };
        assert_eq!(status.admin, "http://192.0.2.5:9554");
        assert!(parse(&["dispatcher", "--ng", "127.0.0.1:2223", "summary"]).is_err());
    }

    #[test]
    fn dispatcher_quick_start_builds_the_same_config_as_a_file() {
        let Command::Dispatcher(args) = parse(&[
            "dispatcher",
            "--ng",
            "127.0.0.1:2223",
            "--mediaproxy-socket",
            "/run/mediagate/dispatcher.sock",
            "--local-relay",
            "192.0.2.20@30000-34999",
            "--local-relay",
            "10.0.0.5!203.0.113.7@35000-39999",
        ])
        .unwrap() else {
            panic!("not dispatcher");
        };
        let from_file = mediagate_config::parse_config(
            r#"
[edge]
enabled = false
[dispatcher]
enabled = true
ng_listen_udp = ["127.0.0.1:2223"]
mediaproxy_socket = "/run/mediagate/dispatcher.sock"
[[dispatcher.local_relay]]
name = "local1"
address = "192.0.2.20"
ports = "30000-34999"
[[dispatcher.local_relay]]
name = "local2"
address = "10.0.0.5"
advertised = "203.0.113.7"
ports = "35000-39999"
"#,
        )
        .unwrap();
        let from_cli = args.to_config();
        assert_eq!(from_cli.dispatcher, from_file.dispatcher);
        assert!(mediagate_config::validate(&from_cli).is_empty());
        let err = parse(&["dispatcher", "--local-relay", "192.0.2.20"]).unwrap_err();
        assert!(
            err.to_string().contains("IP[!ADVERTISED]@LOW-HIGH"),
            "{err}"
        );
        // The issue's quick start: remote relays over TLS, the same as the file's keys.
        let Command::Dispatcher(args) = parse(&[
            "dispatcher",
            "--ng",
            "127.0.0.1:2223",
            "--mediaproxy-socket",
            "/run/mediagate/dispatcher.sock",
            "--relays",
            "0.0.0.0:25060",
            "--tls-dir",
            "dispatcher",
            "--passport",
            "O=Example, CN=relay*",
        ])
        .unwrap() else {
            panic!("not dispatcher");
        };
        let from_file = mediagate_config::parse_config(
            r#"
[edge]
enabled = false
[dispatcher]
enabled = true
ng_listen_udp = ["127.0.0.1:2223"]
mediaproxy_socket = "/run/mediagate/dispatcher.sock"
relay_listen = "0.0.0.0:25060"
tls_dir = "dispatcher"
passport = "O=Example, CN=relay*"
"#,
        )
        .unwrap();
        let from_cli = args.to_config();
        assert_eq!(from_cli.dispatcher, from_file.dispatcher);
        assert!(mediagate_config::validate(&from_cli).is_empty());
        // One of the pair alone is a usage error, before any config is built.
        for alone in [["--relays", "0.0.0.0:25060"], ["--tls-dir", "dispatcher"]] {
            let mut argv = vec!["dispatcher", "--ng", "127.0.0.1:2223"];
            argv.extend(alone);
            let err = parse(&argv).unwrap_err();
            assert!(
                err.contains("required arguments were not provided"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_relay_linked_to_dispatchers_needs_no_ng_listener() {
        let Command::Relay(relay) = parse(&[
            "relay",
            "--dispatcher",
            "dispatcher.example.net:25060",
            "--dispatcher",
            "192.0.2.7:25060",
            "--tls-dir",
            "relay1",
            "--passport",
            "CN=dispatcher*",
            "--address",
            "10.0.0.5",
            "--sighup",
            "halt",
        ])
        .unwrap() else {
            panic!("not relay");
        };
        let config = relay.to_config();
        assert_eq!(config.relay.sighup, SighupAction::Halt);
        assert!(config.relay.ng_listen_udp.is_empty());
        assert_eq!(config.relay.dispatchers.len(), 2);
        assert_eq!(config.relay.dispatchers[0].host, "dispatcher.example.net");
        assert_eq!(config.relay.tls_dir, Some(PathBuf::from("relay1")));
        assert_eq!(
            config.relay.passport.as_ref().map(ToString::to_string),
            Some("CN=dispatcher*".to_owned())
        );
        assert!(validate(&config).is_empty(), "{:?}", validate(&config));

        let err =
            parse(&["relay", "--dispatcher", "d:25060", "--address", "10.0.0.5"]).unwrap_err();
        assert!(err.contains("--tls-dir"), "{err}");
        let err = parse(&["relay", "--address", "10.0.0.5"]).unwrap_err();
        assert!(err.contains("--ng"), "{err}");
        let err = parse(&[
            "relay",
            "--ng",
            "127.0.0.1:2223",
            "--address",
            "10.0.0.5",
            "--sighup",
            "stop",
        ])
        .unwrap_err();
        assert!(err.contains("write reload or halt"), "{err}");
    }

    #[test]
    fn relay_errors_are_clear() {
        for (extra, says) in [
            (
                ["--ports", "40000-30000"],
                "the low end 40000 is above the high end 30000",
            ),
            (["--ports", "30001-39999"], "the low end must be even"),
            (
                ["--scheduling", "fifo:0"],
                "the real-time priority 0 is outside 1..=99",
            ),
        ] {
            let mut args = vec!["relay", "--ng", "127.0.0.1:2223", "--address", "10.0.0.5"];
            args.extend(extra);
            let err = parse(&args).unwrap_err();
            assert!(err.contains(says), "{extra:?}: {err}");
        }
        let err =
            parse(&["relay", "--ng", "127.0.0.1:2223", "--address", "10.0.0.5:1"]).unwrap_err();
        assert!(err.contains("invalid IP address \"10.0.0.5:1\""), "{err}");
        let err = parse(&["relay", "--address", "10.0.0.5"]).unwrap_err();
        assert!(err.contains("--ng <IP:PORT>"), "{err}");
    }

    #[test]
    fn relay_wildcard_without_advertised_fails_validation_without_position() {
        let Command::Relay(relay) =
            parse(&["relay", "--ng", "127.0.0.1:2223", "--address", "0.0.0.0"]).unwrap()
        else {
            panic!("not relay");
        };
        let errors = validate(&relay.to_config());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].span(), None);
        assert!(errors[0]
            .message()
            .starts_with("media address 0.0.0.0 is a wildcard"));
    }

    #[test]
    fn cache_subcommands() {
        match parse(&["cache", "list"]).unwrap() {
            Command::Cache(CacheCommand::List(a)) => {
                assert_eq!(a.api.admin, "http://127.0.0.1:9554")
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "cache",
            "pin",
            "rtsp://o/a.mp4",
            "--tracks",
            "0,1",
            "--admin",
            "http://127.0.0.1:1",
        ])
        .unwrap()
        {
            Command::Cache(CacheCommand::Pin(a)) => {
                assert_eq!(a.url, "rtsp://o/a.mp4");
                assert_eq!(a.tracks, Some(vec![0, 1]));
                assert_eq!(a.api.admin, "http://127.0.0.1:1");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["cache", "purge", "rtsp://o/a.mp4"]).unwrap() {
            Command::Cache(CacheCommand::Purge(a)) => assert_eq!(a.tracks, None),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["cache", "unpin"]).unwrap_err().contains("<URL>"));
        assert!(parse(&["cache", "pin", "u", "--tracks", "a"]).is_err());
        match parse(&["cache", "prefetch", "u", "--tracks", "1", "--speed", "2"]).unwrap() {
            Command::Cache(CacheCommand::Prefetch(a)) => {
                assert_eq!(
                    (a.url.as_str(), a.tracks, a.speed),
                    ("u", Some(vec![1]), Some(2.0))
                );
                assert!(!a.cancel && !a.detach);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["cache", "prefetch", "--cancel", "u"]).unwrap() {
            Command::Cache(CacheCommand::Prefetch(a)) => assert!(a.cancel),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["cache", "prefetch", "--cancel", "--detach", "u"]).is_err());
        assert!(parse(&["cache", "prefetch"]).unwrap_err().contains("<URL>"));
    }

    #[test]
    fn run_and_check_config_arguments() {
        match parse(&["run"]).unwrap() {
            Command::Run(args) => assert_eq!(args.config, None),
            other => panic!("{other:?}"),
        }
        match parse(&["run", "-c", "x.toml"]).unwrap() {
            Command::Run(args) => assert_eq!(args.config, Some(PathBuf::from("x.toml"))),
            other => panic!("{other:?}"),
        }
        match parse(&["check-config", "y.toml"]).unwrap() {
            Command::CheckConfig(args) => assert_eq!(args.file, PathBuf::from("y.toml")),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["check-config"]).unwrap_err().contains("<FILE>"));
    }
}
