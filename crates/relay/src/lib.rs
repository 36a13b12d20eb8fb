//! mediagate relay: an RTP/RTCP media relay for SIP NAT traversal, driven by Kamailio or
//! OpenSIPS over rtpengine's `ng` protocol (issue 4).
//!
//! The control protocol itself (bencode, JSON, framing, requests, replies, cookie cache)
//! is the `mediagate-ng` crate, shared with the dispatcher, the load generator and the
//! fuzz target.
//!
//! Sans-IO cores (no sockets, no clock; time is a parameter):
//! * [`sdp_rewrite`]: what the relay reads from and rewrites in SDP;
//! * [`latch`]: secure symmetric latching against RTP bleed/inject;
//! * [`media`]: one relayed stream and the per-packet forwarding decision;
//! * [`calls`]: the calls and the `ng` commands that drive them, timeouts;
//! * [`record`]: the record a finished call leaves.
//!
//! I/O shell: [`engine`] (tokio: listeners, media sockets, timers, shutdown). Finished
//! calls go to the process's records store (`mediagate_ops::store`), metrics to its
//! registry (`mediagate_ops::metrics`).
//!
//! What it does not (yet): SRTP/DTLS, ICE, transcoding, recording, the MediaProxy
//! dispatcher protocol (issue "dispatcher").

pub mod calls;
pub mod engine;
pub mod latch;
pub mod media;
pub mod record;
pub mod role;
pub mod sdp_rewrite;
