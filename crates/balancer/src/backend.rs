//! The back ends of a service as the schedulers, health checks and L4 services see
//! them: an id that stays stable across reloads, an address, a weight, and the live
//! figures schedulers read. No I/O.

use std::net::SocketAddr;

/// A back end's id within its service: stable while the back end stays configured
/// (reloads keep it), so sessions and persistence entries can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u32);

/// One back end at the moment a scheduler picks.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendView {
    pub id: BackendId,
    /// Where connections go (for RTSP: the host and port of its URL).
    pub addr: SocketAddr,
    /// Relative weight; 0 drains (no new sessions, running ones continue).
    pub weight: u32,
    /// Health says it takes new sessions.
    pub up: bool,
    /// Sessions (RTSP) or connections/flows (L4) running on it now.
    pub sessions: u64,
    /// Media rate through the balancer to and from it, or as its reports say, in bit/s.
    pub bandwidth_bps: u64,
}

impl BackendView {
    /// Takes new sessions: healthy and not drained.
    pub fn eligible(&self) -> bool {
        self.up && self.weight > 0
    }
}
