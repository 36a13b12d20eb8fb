//! Schedulers and persistence (sans-IO). SKELETON: the scheduler slice fills it in
//! behind this surface.

use std::net::IpAddr;

use crate::backend::{BackendId, BackendView};

/// How a service picks a back end for a new session.
#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastSessions,
    WeightedLeastSessions,
    LeastBandwidth,
    SourceHash,
    /// Maglev consistent hashing of the request URL with bounded load: no back end
    /// above `load_factor` × the average (e.g. 1.25).
    UrlHash {
        load_factor: f64,
    },
}

/// What a pick is about.
#[derive(Debug, Clone, Copy)]
pub struct PickRequest<'a> {
    pub client_ip: IpAddr,
    /// The presentation URL (RTSP) when known.
    pub url: Option<&'a str>,
}

/// One service's scheduler.
#[derive(Debug)]
pub struct Scheduler {
    algorithm: Algorithm,
    next: usize,
}

impl Scheduler {
    pub fn new(algorithm: Algorithm) -> Self {
        Self { algorithm, next: 0 }
    }

    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// Picks among the eligible back ends; None when none is. `backends` is the whole
    /// current set in a stable order (ids ascending).
    pub fn pick(&mut self, _req: &PickRequest<'_>, backends: &[BackendView]) -> Option<BackendId> {
        // Round robin over eligible back ends until the scheduler slice lands.
        let eligible: Vec<&BackendView> = backends.iter().filter(|b| b.eligible()).collect();
        if eligible.is_empty() {
            return None;
        }
        let b = eligible[self.next % eligible.len()];
        self.next = self.next.wrapping_add(1);
        Some(b.id)
    }
}
