//! The health-check task of one back end: probes it every interval (and its agent
//! port, when one is configured), feeds results and passive reports into its
//! [`BackendHealth`], and publishes the state through a `tokio::sync::watch` channel
//! on every change.
//!
//! This is the thin I/O shell around `state.rs`: the rules live there, tested with no
//! clock; here are only the timer, the probes and the channels. The task ends when
//! its [`HealthChecker`] is dropped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::probe::{probe, query_agent, CheckKind};
use super::state::{BackendHealth, CheckOutcome, HealthStatus};

/// One back end's checks.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Where the checks connect (the back end's RTSP or L4 address).
    pub addr: SocketAddr,
    pub kind: CheckKind,
    /// Time between the starts of two checks.
    pub interval: Duration,
    /// Bound on one check (connect, request, answer); a check that takes longer fails.
    pub timeout: Duration,
    /// Consecutive passes that bring a down back end up.
    pub rise: u32,
    /// Consecutive failures (active or passive) that take an up back end down.
    pub fall: u32,
    /// The agent port, asked at every interval alongside the check.
    pub agent: Option<SocketAddr>,
    /// State before the first check: up serves at once (the quick start's back ends),
    /// down waits for `rise` passes.
    pub initially_up: bool,
}

impl CheckConfig {
    /// HAProxy's defaults: every 2 s, rise 2, fall 3; a check bounded by 1 s.
    pub fn new(addr: SocketAddr, kind: CheckKind) -> Self {
        Self {
            addr,
            kind,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            agent: None,
            initially_up: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Passive {
    Failure,
    Success,
}

/// Where traffic reports what it saw of a back end: cloneable, never blocks (reports
/// beyond a small queue are dropped; the queue already holds enough failures).
#[derive(Debug, Clone)]
pub struct PassiveReporter {
    tx: mpsc::Sender<Passive>,
}

impl PassiveReporter {
    /// A connect to the back end failed or timed out.
    pub fn failure(&self) {
        let _ = self.tx.try_send(Passive::Failure);
    }

    /// Traffic reached the back end.
    pub fn success(&self) {
        let _ = self.tx.try_send(Passive::Success);
    }
}

/// A running health-check task. Dropping it stops the task.
#[derive(Debug)]
pub struct HealthChecker {
    status: watch::Receiver<HealthStatus>,
    passive: PassiveReporter,
    task: JoinHandle<()>,
}

impl HealthChecker {
    /// Starts checking on the current tokio runtime; the first check runs at once.
    pub fn spawn(config: CheckConfig) -> HealthChecker {
        let health = BackendHealth::new(config.rise, config.fall, config.initially_up);
        Self::spawn_with(config, health)
    }

    /// Replaces this checker by one running `config` (a reload changed the checks),
    /// keeping the back end's state: a healthy back end is not taken down, or a down
    /// one raised, by the reload itself. Receivers from [`HealthChecker::subscribe`]
    /// see the old task end; subscribe again.
    pub fn respawn(self, config: CheckConfig) -> HealthChecker {
        let health = BackendHealth::resume(config.rise, config.fall, self.status());
        drop(self);
        Self::spawn_with(config, health)
    }

    fn spawn_with(config: CheckConfig, health: BackendHealth) -> HealthChecker {
        let (status_tx, status) = watch::channel(health.status());
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(run(config, health, status_tx, rx));
        HealthChecker {
            status,
            passive: PassiveReporter { tx },
            task,
        }
    }

    /// The state now.
    pub fn status(&self) -> HealthStatus {
        *self.status.borrow()
    }

    /// A receiver that wakes on every change (`changed().await`).
    pub fn subscribe(&self) -> watch::Receiver<HealthStatus> {
        self.status.clone()
    }

    /// A handle for traffic to report passive results.
    pub fn passive(&self) -> PassiveReporter {
        self.passive.clone()
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    config: CheckConfig,
    mut health: BackendHealth,
    status: watch::Sender<HealthStatus>,
    mut passive: mpsc::Receiver<Passive>,
) {
    let mut ticker = tokio::time::interval(config.interval);
    // A slow check delays the next one rather than firing a burst to catch up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let was_up = health.status().up();
        tokio::select! {
            _ = ticker.tick() => {
                let agent = async {
                    match config.agent {
                        Some(a) => Some(query_agent(a, config.timeout).await),
                        None => None,
                    }
                };
                let (check, agent) =
                    tokio::join!(probe(config.addr, &config.kind, config.timeout), agent);
                match check {
                    Ok(()) => health.on_check(CheckOutcome::Pass),
                    Err(e) => {
                        tracing::debug!(backend = %config.addr, error = %e, "health check failed");
                        health.on_check(CheckOutcome::Fail)
                    }
                };
                match agent {
                    Some(Ok(reply)) => {
                        health.on_agent(&reply);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(backend = %config.addr, error = %e, "agent check failed; state unchanged");
                    }
                    None => {}
                }
            }
            report = passive.recv() => match report {
                Some(Passive::Failure) => {
                    health.on_passive_failure();
                }
                Some(Passive::Success) => health.on_passive_success(),
                // Unreachable while the HealthChecker holds a sender; stop anyway.
                None => return,
            },
        }
        let now = health.status();
        // Logged once per net change, even when a check and the agent both moved it.
        match (was_up, now.up()) {
            (false, true) => tracing::info!(backend = %config.addr, "back end up"),
            (true, false) => tracing::warn!(backend = %config.addr, "back end down"),
            _ => {}
        }
        status.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }
}
