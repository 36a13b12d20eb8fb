//! mediagate relay: an RTP/RTCP media relay for SIP NAT traversal, driven by Kamailio or
//! OpenSIPS over rtpengine's `ng` protocol (issue 4).
//!
//! The control protocol itself (bencode, JSON, framing, requests, replies, cookie cache)
//! is the `mediagate-ng` crate, shared with the dispatcher, the load generator and the
//! fuzz target.
//!
//! Sans-IO cores (no sockets, no clock; time is a parameter), internal to the crate:
//! * `sdp_rewrite`: what the relay reads from and rewrites in SDP;
//! * `latch`: secure symmetric latching against RTP bleed/inject;
//! * `media`: one relayed stream and the per-packet forwarding decision;
//! * `calls`: the calls and the `ng` commands that drive them, timeouts;
//! * [`record`]: the record a finished call leaves.
//!
//! I/O shell: [`engine`] (tokio: listeners, media sockets, timers, shutdown) and
//! [`link_client`] (the relay's end of the dispatcher link, over mutual TLS). Finished
//! calls go to the process's records store (`mediagate_ops::store`), metrics to its
//! registry (`mediagate_ops::metrics`).
//!
//! The public surface is what the binary and the tests drive: [`engine`] (its
//! [`engine::EngineConfig`] with the core options it carries, and the running
//! [`engine::Relay`]) and [`record`] (the rows readers of the records store decode).
//!
//! What it does not (yet): SRTP/DTLS, ICE, transcoding, recording.

#![warn(unreachable_pub)]

pub(crate) mod calls;
pub mod engine;
pub(crate) mod latch;
pub mod link_client;
pub(crate) mod media;
pub mod ng_listener;
pub mod record;
pub mod role;
pub(crate) mod sdp_rewrite;
