//! mediagate's dispatcher link (issue 15): what relays and the dispatcher share.
//!
//! * [`wire`]: the link protocol's messages and frames, sans-IO (version 1,
//!   `docs/dispatcher-link.md`).
//! * [`tls`]: mutual TLS from a node directory (`ca.pem`, `cert.pem`, `key.pem`,
//!   optional `crl.pem`) with the passport check, for both ends.
//! * [`conn`]: messages over an async stream and the hello exchange.
//! * [`liveness`]: pings, silence and back-off as pure state (time passed in).
//! * [`pki`]: the cluster's certificates (`mediagate cert`): a CA, node certificates,
//!   the revocation list.
//!
//! What it does not: connections, timers or the relay pool; the dispatcher's `link`
//! module and the relay's `link_client` own those.

#![warn(unreachable_pub)]

pub mod conn;
pub mod liveness;
pub mod pki;
pub mod tls;
pub mod wire;
