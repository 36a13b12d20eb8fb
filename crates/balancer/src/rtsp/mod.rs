//! RTSP session routing (issue 14 items 1 to 3): the balancer terminates RTSP on a
//! service's listen addresses and routes each request to a back end.
//!
//! * [`sessions`] (sans-IO): the session table with the balancer's own session IDs.
//! * [`transport`] (sans-IO): what a SETUP's `Transport` header may carry through.
//! * [`proxy`] (tokio): the connections, client side and back-end side.
//!
//! Routing rules: a request without `Session` goes to the back end this connection
//! already uses, else to the scheduler's pick; a request with `Session` goes to that
//! session's back end whatever connection it arrives on, or gets 454 when the table
//! has no such session. Interleaved `$` frames pass through between messages both
//! ways; requests a back end sends (RFC 2326 §1.1: both sides may) reach the client,
//! and the client's answer goes back to the back end that asked. An HTTP tunnel's GET
//! and POST (linked by `x-sessioncookie`) reach the back end the first of them went
//! to, in either order, and are then relayed byte for byte.
//!
//! What it does not (yet): relay UDP media (in `relay` mode only interleaved
//! transports are offered, so clients fall back to TCP), health-driven removal,
//! persistence by client IP.

pub(crate) mod proxy;
pub(crate) mod sessions;
pub(crate) mod transport;
