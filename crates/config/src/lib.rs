//! The mediagate configuration: one TOML file, one [`Config`] tree.
//!
//! What it does: defines every setting of the roles this binary runs (`[log]`, `[edge]`,
//! `[relay]`, `[balancer]`), the shared `[accounting]` store and the `[admin]` API, their built-in defaults (the
//! edge alone on an unprivileged port, state under `./var`), validating value types
//! (durations, port ranges, CIDRs, socket addresses, RTSP and PostgreSQL URLs), and
//! loading with errors that carry a line and column.
//!
//! What it does not: start anything, touch the network, or reload on SIGHUP; the binary's
//! `run` module wires roles from a finished `Config`. `[dispatcher]` is the
//! dispatcher role's (issue 15).
//!
//! Every table is `deny_unknown_fields`, so a typo is an error with a position rather than
//! a setting silently ignored. The example file `config/mediagate.example.toml` at the
//! repository root documents every key with its default; tests keep the two in step.

#![warn(unreachable_pub)]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Implements `Serialize` through `Display` and `Deserialize` through `FromStr` for a
/// value type that is written as one TOML string. Errors raised here get the value's
/// span from the toml deserializer, which is how they earn a line and column.
macro_rules! string_value_serde {
    ($ty:ty, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ValueVisitor;
                impl serde::de::Visitor<'_> for ValueVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse::<$ty>().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(ValueVisitor)
            }
        }
    };
}

mod accounting;
mod admin;
mod balancer;
mod bounded;
mod bounded_duration;
mod byte_size;
mod cidr;
mod destination;
mod dispatcher;
mod duration;
mod edge;
mod edge_auth;
mod load;
mod located;
mod net;
mod passport;
mod port_range;
mod relay;
mod scheduling;
mod url;
mod validate;
mod value_error;

#[cfg(test)]
mod example_tests;
#[cfg(test)]
mod test_rng;

pub use accounting::{AccountingConfig, PostgresHost, PostgresUrl};
pub use admin::{AdminConfig, AdminToken, ADMIN_DEFAULT_LISTEN, ADMIN_TOKEN_MIN_LEN};
pub use balancer::{
    BackendSpec, BackendWeight, BalancerConfig, BalancerMaxConnections, BalancerMaxSessions,
    HeaderTimeout, HealthCheckKind, HealthConfig, MediaMode, PerSessionCap, SchedulerName,
    ServiceConfig, ServiceKind,
};
pub use bounded::Bounded;
pub use bounded_duration::BoundedDuration;
pub use byte_size::ByteSize;
pub use cidr::Cidr;
pub use destination::{DestinationRule, HostPattern};
pub use dispatcher::{
    ChainRule, DialogEnd, DispatcherConfig, DispatcherRadius, LocalRelay, RelayGroup, RelayTimeout,
    SipProxyKind,
};
pub use duration::HumanDuration;
pub use edge::{
    loopback_networks, AccountingMode, AuthScheme, CacheConfig, CacheTtl, ClientAcl,
    ConnectionTimeout, Credentials, EdgeConfig, ForwardProxy, MaxConnections, MaxViewers, OnBusy,
    PublishRule, ReconnectConfig, Route, UpstreamTransport, ViewerBacklog, CACHE_DEFAULT_MEMORY,
    CACHE_DEFAULT_SIZE,
};
pub use edge_auth::{Access, EdgeAuth, LdapConfig};
pub use load::{
    load_file, parse_config, render_errors, ConfigError, LoadError, Position, MAX_CONFIG_BYTES,
};
pub use located::Located;
pub use net::{BindAddr, HostIp};
pub use passport::{Passport, SubjectField};
pub use port_range::{PortPairRange, PortRange};
pub use relay::{
    DispatcherAddr, EndpointLearning, ForwardCoalesce, ForwardIo, ForwardThreads, LatchConfig,
    LearnPackets, LearnWindow, MaxMediaPerCall, MaxSessions, MediaAddress, OfferTimeout,
    PortQuarantine, RelatchMaxSeqGap, RelatchQuiet, RelayConfig, SighupAction,
    DISPATCHER_LINK_PORT,
};
pub use scheduling::ThreadScheduling;
pub use url::{AdvertisedPrefix, Host, HttpUrl, RtspUrl, UrlCredentials};
pub use validate::validate;
pub use value_error::InvalidValue;

/// The whole configuration of one mediagate process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for state that outlives a process: cache objects, the SQLite accounting
    /// store, runtime files. Relative paths are relative to the working directory.
    /// Default: `"./var"`.
    pub state_dir: Located<PathBuf>,
    /// Logging: level and format of the process log.
    pub log: LogConfig,
    /// The RTSP edge role (caching and splitting proxy); enabled by default.
    pub edge: EdgeConfig,
    /// The RTP/RTCP media relay role driven over the rtpengine `ng` protocol; disabled by
    /// default.
    pub relay: RelayConfig,
    /// The streaming-aware load balancer role; disabled by default.
    pub balancer: BalancerConfig,
    /// The control point in front of a cluster of relays; disabled by default.
    pub dispatcher: DispatcherConfig,
    /// Where finished-call and session records go: SQLite under `state_dir` unless a
    /// PostgreSQL URL is set.
    pub accounting: AccountingConfig,
    /// The management HTTP API: on by default on loopback.
    pub admin: AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: Located::new(PathBuf::from("./var")),
            log: LogConfig::default(),
            edge: EdgeConfig::default(),
            relay: RelayConfig::default(),
            balancer: BalancerConfig::default(),
            dispatcher: DispatcherConfig::default(),
            accounting: AccountingConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// `[log]`: how mediagate reports what it does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The access log: one line per finished viewer session, appended to this file
    /// (created if missing, reopened on SIGHUP for rotation). Default: none (off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<Located<PathBuf>>,
    /// Access log line format: `text` (space separated, Squid-like, documented in
    /// `docs/operations.md`) or `json` (one object a line, the same fields).
    /// Default: `"text"`.
    pub access_log_format: AccessLogFormat,
    /// Least severe level written: `error`, `warn`, `info`, `debug` or `trace`.
    /// Default: `"info"`.
    pub level: LogLevel,
    /// Line format on stderr: `text` for people, `json` (one object a line) for log
    /// shippers. Default: `"text"`.
    pub format: LogFormat,
}

/// Severity threshold of the process log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only failures.
    Error,
    /// Failures and things that look wrong.
    Warn,
    /// Plus one line per notable event (sessions, reconnects). The default.
    #[default]
    Info,
    /// Plus protocol decisions, for troubleshooting.
    Debug,
    /// Everything, including per-message detail; slow.
    Trace,
}

/// Line format of the access log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One space-separated line, strings quoted. The default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Line format of the process log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines. The default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
