//! Schedulers and persistence, sans-IO: which back end a new session goes to.
//!
//! What it does: the seven [`Algorithm`]s of issue 14 behind one [`Scheduler::pick`],
//! each reading the back ends' live figures ([`BackendView`]) the caller passes in;
//! and [`ClientIpTable`], persistence by client IP with a timeout (the LVS recipe's
//! 600 s), bounded and LRU, that never answers with a back end that cannot take the
//! session. Definitions follow IPVS and HAProxy where they have one: `wrr` interleaves as nginx's smooth
//! weighted round robin, `wlc` minimises (S+1)/W as IPVS `sed`, source hashing is
//! weighted rendezvous hashing (a down back end's clients move, nobody else's), URL
//! affinity is a Maglev table with HAProxy's `hash-balance-factor` bound.
//!
//! Every pick is over the eligible back ends only (up and weight > 0): a drained or
//! down back end is never chosen. Hashes are fixed by this crate ([`hash`]) so several
//! balancers with the same back-end set agree without shared state.
//!
//! What it does not: sockets, clocks, health (the caller sets `up`), RTSP sessions
//! (the RTSP router keeps them; a request carrying `Session` never reaches a pick).

mod hash;
mod maglev;
mod persist;

use std::collections::HashMap;
use std::net::IpAddr;

use crate::backend::{BackendId, BackendView};
use maglev::{MaglevTable, Member};

pub use maglev::{is_prime, DEFAULT_TABLE_SIZE};
pub use persist::{ClientIpTable, DEFAULT_PERSISTENCE_CAPACITY, DEFAULT_PERSISTENCE_TIMEOUT};

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
    /// Round robin's position, and where ties start for the least-* algorithms, so
    /// equal back ends share new sessions instead of the first taking them all.
    next: usize,
    /// Smooth weighted round robin's running weights.
    current: HashMap<BackendId, i64>,
    maglev: Option<MaglevTable>,
    table_size: u32,
    table_builds: u64,
}

impl Scheduler {
    pub fn new(algorithm: Algorithm) -> Self {
        Self {
            algorithm,
            next: 0,
            current: HashMap::new(),
            maglev: None,
            table_size: DEFAULT_TABLE_SIZE,
            table_builds: 0,
        }
    }

    /// Uses a Maglev table of `size` slots instead of 65,537 (small tables build fast in
    /// tests; production keeps the default).
    ///
    /// # Panics
    /// When `size` is not prime: validate configured sizes with [`is_prime`].
    pub fn with_table_size(mut self, size: u32) -> Self {
        assert!(is_prime(size), "Maglev table size {size} must be prime");
        self.table_size = size;
        self.maglev = None;
        self
    }

    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// How many times the Maglev table was built: once, then once per change of the
    /// back-end set or weights (health changes never rebuild it).
    pub fn table_builds(&self) -> u64 {
        self.table_builds
    }

    /// Picks among the eligible back ends; None when none is. `backends` is the whole
    /// current set in a stable order (ids ascending).
    pub fn pick(&mut self, req: &PickRequest<'_>, backends: &[BackendView]) -> Option<BackendId> {
        let eligible: Vec<&BackendView> = backends.iter().filter(|b| b.eligible()).collect();
        if eligible.is_empty() {
            return None;
        }
        let picked = match self.algorithm {
            Algorithm::RoundRobin => {
                let b = eligible[self.next % eligible.len()];
                self.next = self.next.wrapping_add(1);
                b.id
            }
            Algorithm::WeightedRoundRobin => self.smooth_weighted(&eligible),
            Algorithm::LeastSessions => {
                self.least_by(&eligible, |a, b| a.sessions.cmp(&b.sessions))
            }
            Algorithm::WeightedLeastSessions => self.least_by(&eligible, cmp_expected_delay),
            Algorithm::LeastBandwidth => self.least_by(&eligible, |a, b| {
                cmp_ratio(a.bandwidth_bps, a.weight, b.bandwidth_bps, b.weight)
                    .then_with(|| cmp_expected_delay(a, b))
            }),
            Algorithm::SourceHash => source_hash(req.client_ip, &eligible),
            Algorithm::UrlHash { load_factor } => {
                self.url_hash(req, backends, &eligible, load_factor)
            }
        };
        Some(picked)
    }

    /// nginx's smooth weighted round robin: every pick, each back end's running weight
    /// grows by its weight, the largest wins and gives back the total. Weights 5,1,1
    /// give a a b a c a a, never five a's in a row.
    fn smooth_weighted(&mut self, eligible: &[&BackendView]) -> BackendId {
        // Back ends that left (or went ineligible) forget their running weight, so one
        // returning does not arrive with a stale head start.
        self.current
            .retain(|id, _| eligible.iter().any(|b| b.id == *id));
        let total: i64 = eligible.iter().map(|b| i64::from(b.weight)).sum();
        let mut best: Option<(BackendId, i64)> = None;
        for b in eligible {
            let c = self.current.entry(b.id).or_insert(0);
            *c += i64::from(b.weight);
            if best.is_none_or(|(_, w)| *c > w) {
                best = Some((b.id, *c));
            }
        }
        let (id, _) = best.expect("eligible is not empty");
        if let Some(c) = self.current.get_mut(&id) {
            *c -= total;
        }
        id
    }

    /// The least back end by `cmp`; among equals, the first at or after the rotating
    /// start.
    fn least_by(
        &mut self,
        eligible: &[&BackendView],
        cmp: impl Fn(&BackendView, &BackendView) -> std::cmp::Ordering,
    ) -> BackendId {
        let n = eligible.len();
        let start = self.next % n;
        self.next = self.next.wrapping_add(1);
        let mut best = eligible[start];
        for k in 1..n {
            let b = eligible[(start + k) % n];
            if cmp(b, best).is_lt() {
                best = b;
            }
        }
        best.id
    }

    fn url_hash(
        &mut self,
        req: &PickRequest<'_>,
        backends: &[BackendView],
        eligible: &[&BackendView],
        load_factor: f64,
    ) -> BackendId {
        let members: Vec<Member> = backends
            .iter()
            .map(|b| Member {
                id: b.id,
                addr: b.addr,
                weight: b.weight,
            })
            .collect();
        if !self
            .maglev
            .as_ref()
            .is_some_and(|t| t.is_built_from(&members, self.table_size))
        {
            self.maglev = Some(MaglevTable::build(&members, self.table_size));
            self.table_builds += 1;
        }
        let table = self.maglev.as_ref().expect("built above");
        let ip_key;
        let key: &[u8] = match req.url {
            Some(url) => url.as_bytes(),
            None => {
                ip_key = ip_bytes(req.client_ip);
                &ip_key
            }
        };
        let bound = LoadBound::new(eligible, load_factor);
        for id in table.preference(key) {
            if let Some(b) = eligible.iter().find(|b| b.id == id) {
                if bound.admits(b) {
                    return id;
                }
            }
        }
        // Unreachable while load_factor ≥ 1 (the caps sum to more than the sessions);
        // kept total: the least loaded relative to its weight.
        eligible
            .iter()
            .min_by(|a, b| cmp_expected_delay(a, b))
            .expect("eligible is not empty")
            .id
    }
}

/// HAProxy's `hash-balance-factor`: after this pick no back end may hold more than
/// `ceil(factor × (sessions + 1) × w / Σw)` sessions, computed over the eligible ones.
struct LoadBound {
    factor: f64,
    total_after: f64,
    weight_sum: f64,
}

impl LoadBound {
    fn new(eligible: &[&BackendView], factor: f64) -> LoadBound {
        let total: u64 = eligible.iter().map(|b| b.sessions).sum();
        LoadBound {
            // Below 1 no assignment could satisfy every cap.
            factor: if factor.is_finite() {
                factor.max(1.0)
            } else {
                1.0
            },
            total_after: total as f64 + 1.0,
            weight_sum: eligible.iter().map(|b| f64::from(b.weight)).sum(),
        }
    }

    fn cap(&self, b: &BackendView) -> u64 {
        (self.factor * self.total_after * f64::from(b.weight) / self.weight_sum).ceil() as u64
    }

    /// Room for one more: `sessions + 1 <= cap`.
    fn admits(&self, b: &BackendView) -> bool {
        b.sessions < self.cap(b)
    }
}

/// The bounded-load cap a back end has for the next pick (status and tests).
pub fn load_cap(backend: &BackendView, eligible: &[&BackendView], load_factor: f64) -> u64 {
    LoadBound::new(eligible, load_factor).cap(backend)
}

/// IPVS `sed`: (S+1)/W, compared exactly.
fn cmp_expected_delay(a: &BackendView, b: &BackendView) -> std::cmp::Ordering {
    cmp_ratio(a.sessions + 1, a.weight, b.sessions + 1, b.weight)
}

/// x/wx against y/wy without division (weights are positive for eligible back ends).
fn cmp_ratio(x: u64, wx: u32, y: u64, wy: u32) -> std::cmp::Ordering {
    (u128::from(x) * u128::from(wy)).cmp(&(u128::from(y) * u128::from(wx)))
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        // An IPv4-mapped client is the same client as its IPv4 form.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

/// Weighted rendezvous hashing: each back end scores `w / -ln(u)` with u drawn from
/// hash(client, back-end address); the highest wins. A back end leaving moves only its
/// own clients, and back ends win in proportion to their weights.
fn source_hash(ip: IpAddr, eligible: &[&BackendView]) -> BackendId {
    const SEED: u64 = 0x7372_6368_6173_6821; // "srchash!"
    let client = hash::hash64(SEED, &ip_bytes(ip));
    let mut best: Option<(f64, BackendId)> = None;
    for b in eligible {
        let (key, len) = hash::addr_key(b.addr);
        let u = hash::unit_interval(hash::hash64(client, &key[..len]));
        let score = f64::from(b.weight) / -u.ln();
        // Ties (practically never) go to the lower id, so every balancer agrees.
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, b.id));
        }
    }
    best.expect("eligible is not empty").1
}

#[cfg(test)]
mod tests;
