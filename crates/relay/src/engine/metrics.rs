//! The relay's metrics: what the engine already counts, read when the registry is
//! scraped (`mediagate_relay_...`).
//!
//! What it does: on each scrape, copies the call registry's totals and gauges under
//! the control lock (the `ng` path's lock, held for a copy) and reads the forwarding
//! threads' atomic counters and the two histograms: call setup time (observed by the
//! `ng` path on a call's first answer) and forwarding latency (sampled by the
//! forwarding threads, see `forward`). What it does not: count per packet on the
//! forwarding path, or per-call series (the label set would grow with the calls).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Weak;

use mediagate_ops::metrics::{Collect, Scrape};

use super::State;

/// `ng` command names in the order of `Totals::commands`.
const COMMANDS: [&str; 8] = [
    "ping",
    "offer",
    "answer",
    "delete",
    "query",
    "list",
    "statistics",
    "other",
];

/// Reads a running relay's counters; reports nothing once the relay is gone.
pub(crate) struct RelayMetrics {
    state: Weak<State>,
}

impl RelayMetrics {
    pub(crate) fn new(state: Weak<State>) -> Self {
        Self { state }
    }
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collect for RelayMetrics {
    fn collect(&self, s: &mut Scrape<'_>) -> fmt::Result {
        let Some(state) = self.state.upgrade() else {
            return Ok(());
        };
        // Tasks may hold the state a moment after the relay stopped.
        if *state.shutdown.borrow() {
            return Ok(());
        }
        let (totals, active, streams, draining, in_kernel) = {
            let control = state.lock();
            (
                control.registry.totals(),
                control.registry.active_call_count(),
                control.env.running_streams(),
                control.registry.is_draining(),
                control
                    .env
                    .kernel()
                    .map(|k| k.forwarded.load(Ordering::Relaxed)),
            )
        };
        let fwd = &state.forward_stats;
        s.gauge("calls", "Calls not yet deleted.", as_i64(active))?;
        s.gauge(
            "streams",
            "Streams with running forwarders.",
            as_i64(streams),
        )?;
        s.gauge(
            "draining",
            "1 while the relay refuses new calls before shutting down.",
            i64::from(draining),
        )?;
        s.counter(
            "calls_created",
            "Calls created by an offer.",
            totals.managed,
        )?;
        s.counter(
            "offers_rejected",
            "Offers refused (no ports, limits, draining).",
            totals.rejected,
        )?;
        s.counter_by(
            "calls_ended",
            "Calls ended, by why.",
            "reason",
            &[
                ("deleted", totals.deleted),
                ("media_timeout", totals.timeouts),
                ("other", totals.other_ended),
            ],
        )?;
        s.counter(
            "ended_calls_packets",
            "Packets forwarded by calls that have ended.",
            totals.packets,
        )?;
        s.counter(
            "ended_calls_bytes",
            "Bytes forwarded by calls that have ended.",
            totals.bytes,
        )?;
        s.counter(
            "ended_calls_errors",
            "Malformed or undeliverable packets of calls that have ended.",
            totals.errors,
        )?;
        // Milliseconds to seconds: f64 is exact up to 2^53 ms (285,000 years).
        #[allow(clippy::cast_precision_loss)]
        let seconds = totals.duration_ms as f64 / 1000.0;
        s.counter_f64(
            "ended_calls_duration_seconds",
            "Total duration of calls that have ended.",
            seconds,
        )?;
        let commands: Vec<(&str, u64)> = COMMANDS
            .iter()
            .copied()
            .zip(totals.commands.iter().copied())
            .collect();
        s.counter_by(
            "ng_commands",
            "ng commands received, by command.",
            "command",
            &commands,
        )?;
        s.counter(
            "forwarded_packets",
            "Datagrams forwarded by the relay's threads, relay-wide (the eBPF fast path's are in kernel_forwarded_packets).",
            fwd.forwarded.load(Ordering::Relaxed),
        )?;
        if let Some(in_kernel) = in_kernel {
            s.counter(
                "kernel_forwarded_packets",
                "Datagrams the eBPF fast path forwarded, relay-wide (read from the kernel every tick and when a stream ends; not in forwarded_packets).",
                in_kernel,
            )?;
        }
        s.counter(
            "send_errors",
            "Datagrams the kernel refused to send.",
            fwd.send_errors.load(Ordering::Relaxed),
        )?;
        s.counter(
            "oversized_dropped_packets",
            "Datagrams dropped for being longer than the relay forwards.",
            fwd.oversized.load(Ordering::Relaxed),
        )?;
        s.histogram(
            "call_setup_seconds",
            "Time from a call's first offer to its first answer.",
            &state.call_setup,
        )?;
        s.histogram(
            "forwarding_latency_seconds",
            "Sampled time datagrams spend in a forwarding thread, from the received batch in hand to the send handed to the kernel (receive-queue wait not included).",
            &fwd.latency,
        )
    }
}
