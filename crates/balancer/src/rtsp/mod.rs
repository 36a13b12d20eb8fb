//! RTSP session routing (issue 14 items 1 to 3): the balancer terminates RTSP on a
//! service's listen addresses and routes each request to a back end.
//!
//! * [`sessions`] (sans-IO): the session table with the balancer's own session IDs.
//! * [`transport`] (sans-IO): what a SETUP's `Transport` header may carry through.
//! * [`proxy`] (tokio): the connections, client side and back-end side.
//! * [`threads`]: the threads those connections run on, one runtime per CPU.
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
//! Media modes: `relay` gives each UDP SETUP two port pairs from the service's range
//! (the relay role's forwarding and latching, `mediagate_relay::engine::PairRelay`):
//! the back end is asked to send to one, the client is told `server_port=` the other
//! with `source=` the address it connected to, and media is latched to the client's
//! real NAT mapping from its first datagram, accepted only from the control
//! connection's IP; the pairs close with the session (TEARDOWN, timeout), or after
//! `media_timeout` without RTP ([`crate::service::Service::expire_media`]). `direct`
//! leaves UDP ports alone and adds `source=` naming the back end; `redirect` answers
//! with 302.
//!
//! Persistence: by RTSP session always; by client IP when `persistence_timeout` is
//! set (the scheduler slice's `ClientIpTable`).

mod outbox;
pub(crate) mod proxy;
#[cfg(test)]
mod proxy_tests;
pub(crate) mod sessions;
mod threads;
pub(crate) mod transport;
