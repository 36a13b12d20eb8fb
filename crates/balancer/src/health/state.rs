//! One back end's health, sans-IO: rise/fall counting over check results, passive
//! failures, and what the agent last said, folded into the two things a scheduler
//! reads (up, effective weight) and reported as transitions.
//!
//! The rules, as HAProxy's: `rise` consecutive passing checks bring a down back end
//! up, `fall` consecutive failures take an up one down; a passive failure (a failed
//! connect or a timeout seen by traffic) counts as a failed check, traffic that works
//! only resets the failure run (only active checks raise a back end). An agent saying
//! `down`/`stopped`/`fail` or `maint` takes the back end out at once, `up`/`ready`
//! lifts that; `drain` keeps it up with weight 0; `N%` scales the configured weight.
//! An agent that cannot be reached changes nothing (HAProxy does the same): the agent
//! steers a healthy back end, it does not replace the checks.
//!
//! What it does not: timing (the checker task decides when to check) or I/O.

use super::agent::{AgentAdmin, AgentReply, AgentState};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Pass,
    Fail,
}

/// What changed for the schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Takes new sessions again.
    WentUp,
    /// Takes no new sessions: its flows and persistence entries must go now.
    WentDown,
}

/// The state the schedulers see, published on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthStatus {
    /// The checks' verdict (rise/fall over active and passive results).
    pub checks_up: bool,
    /// The agent's last operational word, if it ever sent one.
    pub agent_state: Option<AgentState>,
    /// The agent's last administrative word.
    pub agent_admin: Option<AgentAdmin>,
    /// The agent's last weight percentage.
    pub weight_percent: Option<u32>,
    /// Transitions (up↔down) so far.
    pub transitions: u64,
}

impl HealthStatus {
    /// Takes new sessions (before weight): checks pass and the agent does not object.
    pub fn up(&self) -> bool {
        self.checks_up
            && !matches!(
                self.agent_state,
                Some(AgentState::Down | AgentState::Stopped | AgentState::Fail)
            )
            && self.agent_admin != Some(AgentAdmin::Maint)
    }

    /// The weight to schedule with, from the configured one: 0 while draining, else
    /// scaled by the agent's percentage (rounded down, but never to 0 from a positive
    /// percentage: `1%` of weight 1 still takes sessions).
    pub fn effective_weight(&self, configured: u32) -> u32 {
        if self.agent_admin == Some(AgentAdmin::Drain) {
            return 0;
        }
        match self.weight_percent {
            None => configured,
            Some(0) => 0,
            Some(p) => {
                let w = u64::from(configured) * u64::from(p) / 100;
                u32::try_from(w)
                    .unwrap_or(u32::MAX)
                    .max(u32::from(configured > 0))
            }
        }
    }
}

/// One back end's rise/fall counters and agent view.
#[derive(Debug, Clone)]
pub struct BackendHealth {
    rise: u32,
    fall: u32,
    status: HealthStatus,
    pass_run: u32,
    fail_run: u32,
}

impl BackendHealth {
    /// `rise` and `fall` of at least 1; starts `initially_up` (a new back end that
    /// starts up serves at once and goes down after `fall` failures; one that starts
    /// down waits for `rise` passes).
    pub fn new(rise: u32, fall: u32, initially_up: bool) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            status: HealthStatus {
                checks_up: initially_up,
                agent_state: None,
                agent_admin: None,
                weight_percent: None,
                transitions: 0,
            },
            pass_run: 0,
            fail_run: 0,
        }
    }

    /// Goes on from `status` with new `rise`/`fall` (a reload that changed the
    /// checks): the back end keeps its state and agent view, the runs start over.
    pub fn resume(rise: u32, fall: u32, status: HealthStatus) -> Self {
        Self {
            status,
            ..Self::new(rise, fall, status.checks_up)
        }
    }

    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// An active check's result.
    pub fn on_check(&mut self, outcome: CheckOutcome) -> Option<Transition> {
        let was = self.status.up();
        match outcome {
            CheckOutcome::Pass => {
                self.fail_run = 0;
                self.pass_run = self.pass_run.saturating_add(1);
                if !self.status.checks_up && self.pass_run >= self.rise {
                    self.status.checks_up = true;
                }
            }
            CheckOutcome::Fail => self.count_failure(),
        }
        self.transition_from(was)
    }

    /// Traffic failed to reach the back end (connect refused, timed out).
    pub fn on_passive_failure(&mut self) -> Option<Transition> {
        let was = self.status.up();
        self.count_failure();
        self.transition_from(was)
    }

    /// Traffic reached the back end: a failure run is broken, nothing rises.
    pub fn on_passive_success(&mut self) {
        self.fail_run = 0;
    }

    /// The agent's reply; each word it sent replaces the one kept.
    pub fn on_agent(&mut self, reply: &AgentReply) -> Option<Transition> {
        let was = self.status.up();
        if let Some(s) = reply.state {
            self.status.agent_state = Some(s);
        }
        if let Some(a) = reply.admin {
            self.status.agent_admin = Some(a);
        }
        if let Some(p) = reply.weight_percent {
            self.status.weight_percent = Some(p);
        }
        self.transition_from(was)
    }

    fn count_failure(&mut self) {
        self.pass_run = 0;
        self.fail_run = self.fail_run.saturating_add(1);
        if self.status.checks_up && self.fail_run >= self.fall {
            self.status.checks_up = false;
        }
    }

    fn transition_from(&mut self, was_up: bool) -> Option<Transition> {
        let now_up = self.status.up();
        if was_up == now_up {
            return None;
        }
        self.status.transitions += 1;
        Some(if now_up {
            Transition::WentUp
        } else {
            Transition::WentDown
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::agent::parse_agent_reply;
    use proptest::prelude::*;

    #[test]
    fn fall_failures_take_it_down_and_rise_passes_bring_it_back() {
        let mut h = BackendHealth::new(2, 3, true);
        assert_eq!(h.on_check(CheckOutcome::Fail), None);
        assert_eq!(h.on_check(CheckOutcome::Fail), None);
        assert_eq!(h.on_check(CheckOutcome::Fail), Some(Transition::WentDown));
        assert_eq!(h.on_check(CheckOutcome::Fail), None);
        assert_eq!(h.on_check(CheckOutcome::Pass), None);
        assert_eq!(h.on_check(CheckOutcome::Pass), Some(Transition::WentUp));
        assert_eq!(h.status().transitions, 2);
        // A pass between failures restarts the count.
        h.on_check(CheckOutcome::Fail);
        h.on_check(CheckOutcome::Fail);
        h.on_check(CheckOutcome::Pass);
        assert_eq!(h.on_check(CheckOutcome::Fail), None);
        assert!(h.status().up());
    }

    #[test]
    fn passive_failures_count_but_passive_success_does_not_raise() {
        let mut h = BackendHealth::new(1, 2, true);
        assert_eq!(h.on_passive_failure(), None);
        h.on_passive_success();
        assert_eq!(h.on_passive_failure(), None);
        assert_eq!(h.on_passive_failure(), Some(Transition::WentDown));
        h.on_passive_success();
        assert!(!h.status().up());
        assert_eq!(h.on_check(CheckOutcome::Pass), Some(Transition::WentUp));
    }

    #[test]
    fn agent_steers_up_state_and_weight() {
        let mut h = BackendHealth::new(1, 1, true);
        let agent = |h: &mut BackendHealth, line: &str| {
            h.on_agent(&parse_agent_reply(line.as_bytes()).unwrap())
        };
        assert_eq!(agent(&mut h, "drain"), None, "drain keeps it up");
        assert_eq!(h.status().effective_weight(10), 0);
        assert_eq!(agent(&mut h, "ready 50%"), None);
        assert_eq!(h.status().effective_weight(10), 5);
        assert_eq!(
            h.status().effective_weight(1),
            1,
            "a positive share never rounds to 0"
        );
        assert_eq!(agent(&mut h, "maint"), Some(Transition::WentDown));
        assert_eq!(agent(&mut h, "ready"), Some(Transition::WentUp));
        assert_eq!(agent(&mut h, "down"), Some(Transition::WentDown));
        // Checks passing do not override the agent's down.
        assert_eq!(h.on_check(CheckOutcome::Pass), None);
        assert_eq!(agent(&mut h, "up"), Some(Transition::WentUp));
        // The agent cannot raise what the checks hold down.
        h.on_check(CheckOutcome::Fail);
        assert!(!h.status().up());
        assert_eq!(agent(&mut h, "up ready 100%"), None);
        assert!(!h.status().up());
    }

    #[test]
    fn resume_keeps_state_and_restarts_runs() {
        let mut h = BackendHealth::new(1, 3, true);
        h.on_agent(&parse_agent_reply(b"drain").unwrap());
        h.on_check(CheckOutcome::Fail);
        h.on_check(CheckOutcome::Fail);
        let mut r = BackendHealth::resume(2, 2, h.status());
        assert_eq!(r.status(), h.status());
        // The two failures before the reload do not count towards the new fall.
        assert_eq!(r.on_check(CheckOutcome::Fail), None);
        assert_eq!(r.on_check(CheckOutcome::Fail), Some(Transition::WentDown));
        assert_eq!(r.status().agent_admin, Some(AgentAdmin::Drain));
    }

    proptest! {
        /// Whatever the sequence, a transition is reported exactly when `up()` flips,
        /// and the count matches.
        #[test]
        fn transitions_match_flips(events in prop::collection::vec(0u8..6, 0..200), rise in 1u32..4, fall in 1u32..4) {
            let mut h = BackendHealth::new(rise, fall, false);
            let mut flips = 0;
            for e in events {
                let before = h.status().up();
                let t = match e {
                    0 => h.on_check(CheckOutcome::Pass),
                    1 => h.on_check(CheckOutcome::Fail),
                    2 => h.on_passive_failure(),
                    3 => { h.on_passive_success(); None }
                    4 => h.on_agent(&parse_agent_reply(b"down").unwrap()),
                    _ => h.on_agent(&parse_agent_reply(b"up").unwrap()),
                };
                let after = h.status().up();
                prop_assert_eq!(t.is_some(), before != after);
                if before != after { flips += 1; }
                prop_assert_eq!(t == Some(Transition::WentUp), !before && after);
            }
            prop_assert_eq!(h.status().transitions, flips);
        }
    }
}
