//! mediagate edge engine: the live-splitting RTSP proxy.
//!
//! Pure session logic lives in modules without I/O (`hub`, `hub_life`, `session`,
//! the `Supervisor` of `upstream_supervisor`; URLs and their prefix rules are
//! `mediagate_config`'s, the RTSP client session is `mediagate_rtsp`'s); the tokio shells around them own
//! sockets and timers. The public surface is the [`Edge`] (build, bind, its viewers
//! and streams, disconnect, drain) and the [`EndedSession`] record its listener receives.

mod access;
mod accounting;
mod accounting_conn;
mod auth;
mod cache_admin;
mod cache_fill;
mod cache_lock;
mod cache_play;
mod cache_shared;
pub mod cache_store;
mod conn_out;
mod denied;
mod freshness;
#[doc(hidden)]
pub mod fuzzing;
mod hub;
mod hub_actor;
mod hub_life;
mod hub_registry;
mod ids;
mod ldap;
mod limits;
mod login;
mod metrics;
mod parked;
mod passthrough;
mod ports;
mod prefetch;
mod publish;
mod publish_rules;
mod publish_session;
mod reach;
pub mod record;
pub mod report;
pub mod role;
mod routing;
mod rtsp_client;
mod seam;
pub mod server;
mod session;
mod settings;
mod shared_pairs;
mod sink;
mod source;
mod tracker;
mod upstream;
mod upstream_supervisor;
mod viewer;
mod viewers;
mod vod;

pub use cache_shared::{SharedReadCounts, DEFAULT_MEMORY_BYTES as DEFAULT_CACHE_MEMORY_BYTES};
pub use cache_store::{CacheCounts, CacheStore};
pub use hub_registry::HubStats;
pub use server::{DrainReport, Edge};
pub use session::{CacheResult, EndReason, EndedSession, ViewerTransport};
pub use sink::Counts;
pub use viewer::EndedListener;
pub use viewers::ViewerInfo;
