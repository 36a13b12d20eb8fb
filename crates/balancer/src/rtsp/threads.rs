//! The threads the balancer's RTSP connections run on: one single-threaded tokio
//! runtime per CPU (at most 16), and each accepted client connection, with its back-end
//! connections and writer tasks, stays on one of them.
//!
//! Why: on the process's shared multi-threaded runtime a request read on one worker
//! often woke a task that another worker then ran (a futex wake and a parked thread
//! to schedule for each of the four round trips of a session): `perf` during 5,000
//! setups a second put 15% of the balancer's time in context switches, most of them
//! `park_condvar`. On one thread per connection a request and its answer are
//! handled where the socket readiness arrived. What it does not do: balance load
//! between the threads beyond handing connections out in turn (a session's requests
//! are small; interleaved media of one connection stays on its thread), or serve
//! anything but RTSP connections (L4 services, health checks and the session sync
//! stay on the process's runtime).
//!
//! The threads start with the first client connection, under that connection's
//! service's `[balancer] rtsp_scheduling` (one value for the whole role, kept until
//! restart); it holds until the process ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use mediagate_config::ThreadScheduling;
use tokio::runtime::Handle;

/// At most this many connection threads, whatever the CPU count.
const MAX_THREADS: usize = 16;

pub(crate) struct ProxyThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

static THREADS: OnceLock<ProxyThreads> = OnceLock::new();

impl ProxyThreads {
    /// The threads, started with `scheduling` unless they already run (one per CPU).
    /// A thread that cannot start is left out; with none, connections run on the
    /// caller's runtime.
    pub(crate) fn start(scheduling: ThreadScheduling) -> &'static ProxyThreads {
        THREADS.get_or_init(|| {
            let n = std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(MAX_THREADS);
            let handles = (0..n)
                .filter_map(|i| {
                    start(i, scheduling)
                        .map_err(|e| {
                            tracing::warn!(
                                "balancer: RTSP connection thread {i} did not start: {e}"
                            )
                        })
                        .ok()
                })
                .collect();
            ProxyThreads {
                handles,
                next: AtomicUsize::new(0),
            }
        })
    }

    /// The runtime the next connection goes to, in turn; `None` when no thread
    /// started.
    pub(crate) fn next(&self) -> Option<&Handle> {
        if self.handles.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles.get(i)
    }
}

/// Starts connection thread `i` under `scheduling`: a current-thread runtime driven
/// for the life of the process (it is never dropped, so never from inside another
/// runtime). Scheduling that is refused is logged; the thread runs on without it.
fn start(i: usize, scheduling: ThreadScheduling) -> std::io::Result<Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("mg-rtsp-{i}"))
        .spawn(move || {
            if let Err(why) = mediagate_relay::engine::apply_scheduling(scheduling) {
                tracing::warn!(
                    "balancer: RTSP connection thread {i} keeps the process's scheduling, not rtsp_scheduling = \"{scheduling}\": {why}"
                );
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            rt.block_on(std::future::pending::<()>());
        })?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the connection thread ended at start"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread started with a scheduling runs its connections under it (a nice
    /// value: raising it needs no privilege).
    #[test]
    fn a_connection_thread_runs_under_the_scheduling_asked() {
        let handle = start(0, ThreadScheduling::Normal { nice: 7 }).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        drop(handle.spawn(async move {
            let _ = tx.send(mediagate_udp::thread_nice());
        }));
        let nice = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the thread ran the task");
        assert_eq!(nice.ok(), Some(7));
    }
}
