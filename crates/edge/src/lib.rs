//! mediagate edge engine: the live-splitting RTSP proxy.
//!
//! Pure session logic lives in modules without I/O ([`hub`]; URLs and their prefix
//! rules are `mediagate_config`'s, the RTSP client session is `mediagate_rtsp`'s);
//! the tokio shells around them own sockets and timers.

pub mod conn_out;
pub mod hub;
pub mod hub_task;
pub mod ids;
pub mod ports;
pub mod routing;
pub mod rtsp_client;
pub mod server;
pub mod sink;
pub mod upstream;
pub mod viewer;
pub mod vod;
