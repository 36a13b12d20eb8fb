//! What the operator asks of a running process through signals: SIGHUP (re-read what
//! can be re-read, reopen log files), SIGTERM and SIGINT (drain, then stop; a second one
//! stops at once).
//!
//! Every signal is registered once, when [`Signals::new`] runs, so from then on none of
//! them takes its default action: a logrotate `kill -HUP` must never end the process,
//! and a second SIGTERM during a drain must never be lost.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// One operator request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorSignal {
    /// SIGHUP: reload and reopen log files.
    Reload,
    /// SIGTERM or SIGINT: drain and stop.
    Stop,
}

/// SIGHUP, SIGTERM and SIGINT as one stream.
#[derive(Debug)]
pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Registers the handlers; call inside a tokio runtime, before any role starts.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal; waits forever if none comes.
    pub async fn next(&mut self) -> OperatorSignal {
        tokio::select! {
            _ = self.hup.recv() => OperatorSignal::Reload,
            _ = self.term.recv() => OperatorSignal::Stop,
            _ = self.int.recv() => OperatorSignal::Stop,
        }
    }

    /// The next SIGTERM or SIGINT, with every SIGHUP before it answered by `on_reload`.
    pub async fn next_stop(&mut self, mut on_reload: impl FnMut()) {
        while self.next().await == OperatorSignal::Reload {
            on_reload();
        }
    }
}
