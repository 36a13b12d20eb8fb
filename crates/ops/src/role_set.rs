//! The running roles of one process, shared by the binary (SIGTERM drains them all)
//! and the admin API (which lists them, shows their picture and drains one).
//!
//! What it does: keeps each role behind an `Arc` with its drain state, and starts a
//! role's drain at most once: a drain asked for by the API and then by SIGTERM is one
//! drain, and whoever asks second waits for the same report. Drains run on the runtime
//! the set was made on (the roles' own), whichever thread asked.
//!
//! What it does not: decide when to drain, or stop the process when every role has
//! drained by API (the operator stops it; the binary exits after SIGTERM as before).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::role::{DrainCut, DrainReport, Role};

/// The process's running roles.
pub struct RoleSet {
    entries: Vec<Entry>,
    runtime: Handle,
    cut: DrainCut,
}

struct Entry {
    role: Arc<dyn Role>,
    /// Set when the drain starts; holds the report once it is done.
    drain: Mutex<Option<watch::Receiver<Option<DrainReport>>>>,
}

impl std::fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.role.name()).collect();
        f.debug_struct("RoleSet").field("roles", &names).finish()
    }
}

/// Where a role is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleState {
    /// Serving.
    Running,
    /// Its drain has started and not finished.
    Draining,
    /// Drained; what the drain ended.
    Drained(DrainReport),
}

impl RoleState {
    /// The state's name in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Draining => "draining",
            Self::Drained(_) => "drained",
        }
    }
}

impl RoleSet {
    /// The set of `roles`, whose drains run on the current runtime and are cut short
    /// by `cut` (the binary pulls it on a second SIGTERM). Must be called inside the
    /// roles' runtime.
    pub fn new(roles: Vec<Box<dyn Role>>, cut: DrainCut) -> Self {
        Self {
            entries: roles
                .into_iter()
                .map(|role| Entry {
                    role: Arc::from(role),
                    drain: Mutex::new(None),
                })
                .collect(),
            runtime: Handle::current(),
            cut,
        }
    }

    /// Every role, in start order.
    pub fn roles(&self) -> impl Iterator<Item = &Arc<dyn Role>> {
        self.entries.iter().map(|e| &e.role)
    }

    /// The runtime the roles run on: work for a role that the admin API asks for runs
    /// there, never on the API's own thread.
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// The role named `name` (its config section's name).
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Role>> {
        self.entry(name).map(|e| &e.role)
    }

    /// Where the role named `name` is in its life; `None` when no such role runs.
    pub fn state(&self, name: &str) -> Option<RoleState> {
        let entry = self.entry(name)?;
        let drain = lock(&entry.drain);
        Some(match drain.as_ref() {
            None => RoleState::Running,
            Some(rx) => match *rx.borrow() {
                None => RoleState::Draining,
                Some(report) => RoleState::Drained(report),
            },
        })
    }

    /// Drains the role named `name`, starting its drain unless it has started already;
    /// the future resolves with the drain's report. `None` when no such role runs.
    pub fn drain(&self, name: &str) -> Option<impl Future<Output = DrainReport> + Send + 'static> {
        let entry = self.entry(name)?;
        let mut rx = {
            let mut drain = lock(&entry.drain);
            match drain.as_ref() {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    let run = entry.role.drain(self.cut.clone());
                    self.runtime.spawn(async move {
                        let report = run.await;
                        let _ = tx.send(Some(report));
                    });
                    *drain = Some(rx.clone());
                    rx
                }
            }
        };
        Some(async move {
            // The sender only goes away after sending; a drain task that panicked
            // leaves no report, which counts as an incomplete drain.
            match rx.wait_for(Option::is_some).await {
                Ok(report) => report.unwrap_or_default(),
                Err(_) => DrainReport::default(),
            }
        })
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.role.name() == name)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::{RoleFuture, RoleStats};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Fake {
        drains: Arc<AtomicUsize>,
    }

    impl Role for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn serving(&self) -> String {
            "fake".into()
        }
        fn stats(&self) -> RoleStats {
            RoleStats {
                sessions: 0,
                unit: "things",
            }
        }
        fn max_drain(&self) -> Duration {
            Duration::from_secs(1)
        }
        fn drain(&self, cut: DrainCut) -> RoleFuture<'static, DrainReport> {
            self.drains.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                cut.pulled().await;
                DrainReport {
                    ended: 3,
                    complete: false,
                }
            })
        }
    }

    #[tokio::test]
    async fn a_role_drains_once_and_every_caller_gets_its_report() {
        let drains = Arc::new(AtomicUsize::new(0));
        let (cut_tx, cut) = DrainCut::new();
        let set = RoleSet::new(
            vec![Box::new(Fake {
                drains: drains.clone(),
            })],
            cut,
        );
        assert_eq!(set.state("fake"), Some(RoleState::Running));
        assert!(set.state("other").is_none() && set.drain("other").is_none());
        let first = tokio::spawn(set.drain("fake").unwrap());
        let second = tokio::spawn(set.drain("fake").unwrap());
        assert_eq!(set.state("fake"), Some(RoleState::Draining));
        cut_tx.send(true).unwrap();
        let expected = DrainReport {
            ended: 3,
            complete: false,
        };
        assert_eq!(first.await.unwrap(), expected);
        assert_eq!(second.await.unwrap(), expected);
        assert_eq!(set.state("fake"), Some(RoleState::Drained(expected)));
        assert_eq!(set.drain("fake").unwrap().await, expected);
        assert_eq!(drains.load(Ordering::SeqCst), 1);
    }
}
