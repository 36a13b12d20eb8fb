//! Counts the tasks a drain must wait for (viewer connections, their writers, on-demand
//! origin sessions tearing down): each holds a [`TaskGuard`]; [`Tracker::wait_idle`]
//! resolves when the last guard is dropped or the deadline passes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    count: AtomicUsize,
    idle: Notify,
}

/// One running task; dropping it counts the task as finished.
#[derive(Debug)]
pub(crate) struct TaskGuard {
    inner: Arc<Inner>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.inner.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Tracker {
    pub fn guard(&self) -> TaskGuard {
        self.inner.count.fetch_add(1, Ordering::AcqRel);
        TaskGuard {
            inner: self.inner.clone(),
        }
    }

    pub fn running(&self) -> usize {
        self.inner.count.load(Ordering::Acquire)
    }

    /// True once no task runs; false if some still run at `deadline`.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            // Registered before the check, so a last guard dropped in between is seen.
            idle.as_mut().enable();
            if self.running() == 0 {
                return true;
            }
            tokio::select! {
                _ = idle => {}
                _ = tokio::time::sleep_until(deadline) => return self.running() == 0,
            }
        }
    }
}

/// Resolves once the flag is true (or its sender is gone, which means the same). The
/// borrowed value is not held across the caller's awaits.
pub(crate) async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_the_last_guard_or_the_deadline() {
        let t = Tracker::default();
        assert!(t.wait_idle(Instant::now()).await, "nothing runs");
        let a = t.guard();
        let b = t.guard();
        assert!(
            !t.wait_idle(Instant::now() + Duration::from_millis(20))
                .await
        );
        drop(a);
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.wait_idle(Instant::now() + Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one guard is still held");
        drop(b);
        assert!(waiter.await.unwrap());
        assert_eq!(t.running(), 0);
    }
}
