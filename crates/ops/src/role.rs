//! What the binary knows of a role: it starts it, asks for its figures, asks it to
//! reload, and drains it. The binary holds a list of roles behind [`Role`] and never
//! branches on which role it is; each role crate implements the trait for its engine.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

/// A future a role hands back to the binary.
pub type RoleFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A running role.
pub trait Role: Send {
    /// The role's name as in the config's section (`edge`, `relay`, …).
    fn name(&self) -> &'static str;

    /// A one-line picture of what it is serving now, for logs and `status`.
    fn stats(&self) -> RoleStats;

    /// Applies a re-read config to new sessions. Until the operations issue builds
    /// reload, roles answer [`Reload::NotSupported`] and keep their settings.
    fn reload(&self, _config: &mediagate_config::Config) -> Reload {
        Reload::NotSupported
    }

    /// Stops taking new work, lets running work finish for at most the role's own drain
    /// time, ends what is left when `cut` turns true (a second SIGTERM) or the time is
    /// up, and releases everything. What it ended is in the report.
    fn drain(self: Box<Self>, cut: DrainCut) -> RoleFuture<'static, DrainReport>;
}

/// What a role is serving now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleStats {
    /// Sessions running now: viewers for the edge, calls for the relay.
    pub sessions: u64,
    /// What a session is for this role, for messages ("viewers", "calls").
    pub unit: &'static str,
}

/// The outcome of [`Role::reload`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// The role took the new settings for new sessions.
    Applied,
    /// The role cannot reload yet; it keeps running with its current settings.
    NotSupported,
}

/// What a drain ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Sessions that finished on their own during the drain.
    pub finished: u64,
    /// Sessions the role ended because the drain time ran out or it was told to cut.
    pub cut: u64,
}

/// The binary's "stop now" during a drain (a second SIGTERM or SIGINT).
#[derive(Clone, Debug)]
pub struct DrainCut(watch::Receiver<bool>);

impl DrainCut {
    /// A cut that the returned sender pulls.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves when the cut is pulled (or its sender is gone, which means the same).
    pub async fn pulled(mut self) {
        let _ = self.0.wait_for(|cut| *cut).await;
    }

    /// Whichever comes first: the cut, or `max_wait`.
    pub async fn pulled_or_after(self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.pulled()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_cut_ends_the_wait_before_its_time() {
        let (tx, cut) = DrainCut::new();
        let waiting = tokio::spawn(cut.pulled_or_after(Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        tx.send(true).unwrap();
        let start = tokio::time::Instant::now();
        waiting.await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_cut_the_wait_ends_at_its_time() {
        let (_tx, cut) = DrainCut::new();
        let start = tokio::time::Instant::now();
        cut.pulled_or_after(Duration::from_secs(30)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_dropped_sender_counts_as_a_cut() {
        let (tx, cut) = DrainCut::new();
        drop(tx);
        cut.pulled().await;
    }
}
