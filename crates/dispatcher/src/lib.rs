//! mediagate dispatcher: one control point for a cluster of relays (issue 15), the
//! architecture of MediaProxy's dispatcher. The SIP proxy talks to the dispatcher on
//! its own host; relays on other hosts connect to it over mutual TLS; the dispatcher
//! picks a relay for each call, keeps the call on it, survives a relay's death and keeps
//! statistics and accounting for the whole cluster.
//!
//! How the parts fit:
//! * The relays' command language is `ng` itself ([`mediagate_ng`]): the dispatcher
//!   sends a relay the same dictionaries Kamailio's `rtpengine` module sends, and the
//!   relay runs them with [`mediagate_relay::engine::Relay::handle_ng`]. So the `ng`
//!   front door forwards requests as they are, and the MediaProxy front door turns
//!   `update`/`remove` into `offer`/`answer`/`delete` with an SDP built from the
//!   `media:` line. One relay implementation serves both.
//! * [`pool`] is the seam between the front doors and the link: the relays the
//!   dispatcher can use right now, a way to send one of them a command, and the events
//!   the relays report (connected, gone, calls expired).
//! * [`link`] implements it over mutual TLS: relays connect to the dispatcher
//!   (`docs/dispatcher-link.md`; shared wire format and TLS in `mediagate_link`).
//!
//! * [`mediaproxy`] is MediaProxy's request language (sans-IO); [`router::Router`]
//!   makes the decisions both front doors share (which relay, sticky calls, failover,
//!   reconciliation); [`sessions`] is the Call-ID to relay map, kept in SQLite so a
//!   restart remembers it; [`local_pool::LocalPool`] runs relays in this process;
//!   [`role`] starts it all as the binary's `dispatcher` role. `docs/dispatcher.md`
//!   has the policy.
//!
//! * [`accounting::ClusterAccounting`] is the router's [`router::EndedHook`]: each
//!   finished call into the records store, RADIUS, and the dialog ended on the SIP
//!   proxy when its media timed out.
//! * [`multi_pool::MultiPool`] joins local and linked relays when a dispatcher has both.
//! * `chain` says which calls go through two relays (a relay of one group facing the
//!   caller, one of another facing the callee); the router places and runs them.

#![warn(unreachable_pub)]

pub mod accounting;
pub(crate) mod chain;
pub mod cluster_view;
pub mod dialog_end;
pub(crate) mod front_mediaproxy;
pub(crate) mod front_ng;
#[cfg(test)]
mod hostile_tests;
pub mod link;
pub mod local_pool;
pub mod mediaproxy;
pub mod mgmt;
pub mod multi_pool;
pub mod pool;
pub mod radius;
pub mod role;
pub mod router;
pub(crate) mod select;
pub mod session_stats;
pub mod sessions;
