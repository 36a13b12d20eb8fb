//! `mediagate-loadgen`: benchmark clients for mediagate.
//!
//! Subcommands:
//! * `fanout`: N RTSP viewers of one URL (UDP or TCP), reporting delivery, loss,
//!   setup time, time to first keyframe and the edge's CPU and memory (issue 3).
//! * `churn` (issue 12): short viewer sessions (DESCRIBE, SETUP, PLAY, TEARDOWN) at a
//!   target rate on persistent connections, while long viewers' delivery is measured:
//!   the access-record benchmark.
//! * `hits` (issue 13): N RTSP viewers of on-demand clips spread over K URLs (the
//!   edge's cache hits), the `fanout` report plus first-keyframe p99 and per-URL sums.
//! * `cache-fill` (issue 13): how fast the cache crate writes a fill to disk.
//! * `hold` (issue 14): many RTSP sessions set up (SETUP, no PLAY) and kept alive,
//!   reporting the watched processes' RSS: the balancer's 10,000-session benchmark.
//! * `vod-origin` (issue 13): an on-demand RTSP origin that streams a generated clip
//!   unpaced when PLAY asks for `Speed`: the origin of the end-to-end fill benchmark
//!   (`mediagate cache prefetch` through an edge).
//! * `rtsp-stub`: an RTSP server that answers at once and sends no media, the back
//!   end that leaves the cores to the balancer in its session-rate benchmark.
//! * `floor`: the bare `sendmmsg` baseline for `fanout` on loopback, and a check that
//!   the receive side keeps up.
//! * `rtp` (issue 4): K calls through an RTP relay driven over `ng` (mediagate or
//!   rtpengine, several compared in one run), reporting delivery, loss, reordering,
//!   latency percentiles and the relay's CPU and memory.
//! * `ng-setup` (issue 15): call set-ups (offer, answer, delete) over `ng` from a few
//!   closed-loop clients, no media: set-ups per second and offer+answer percentiles,
//!   direct to a relay or through the dispatcher.
//! * `stalls`: one spinning thread pinned to each CPU, reporting the gaps in its
//!   clock reads (time the virtual CPU ran something else): the machine's noise floor
//!   under latency benchmarks.
//!
//! Exit status: 0 when the run met its own delivery checks, 2 when it completed but
//! some viewers failed or packets went missing, 1 when it could not run.

#![warn(unreachable_pub)]

mod cache_fill;
mod fanout;
mod floor;
mod latency_hist;
mod procfs;
mod rtp;
mod stalls;
mod stats;
mod stub;
mod sys;
mod track_stats;
mod udp_rx;
mod viewer_udp;
mod vod_origin;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load generators for mediagate benchmarks.
#[derive(Debug, Parser)]
#[command(name = "mediagate-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N RTSP viewers of one URL for T seconds (edge live-splitting benchmark).
    Fanout(fanout::FanoutArgs),
    /// Short viewer sessions at a target rate while long viewers watch (records benchmark).
    Churn(fanout::churn::ChurnArgs),
    /// N RTSP viewers of on-demand clips spread over K URLs (edge cache-hit benchmark).
    Hits(fanout::hits::HitsArgs),
    /// Writes one synthetic object through the cache crate as fast as it can (fill rate).
    CacheFill(cache_fill::CacheFillArgs),
    /// Many RTSP sessions set up and kept alive, with servers' RSS (balancer benchmark).
    Hold(fanout::hold::HoldArgs),
    /// A minimal RTSP server answering at once with no media (a back end for balancers).
    RtspStub(stub::StubArgs),
    /// An on-demand origin streaming a generated clip unpaced on `Speed` (fill benchmark).
    VodOrigin(vod_origin::VodOriginArgs),
    /// Bare sendmmsg fan-out on loopback: the per-packet floor, and a receive check.
    Floor(floor::FloorArgs),
    /// K calls through RTP relays over ng for T seconds (relay benchmark).
    Rtp(rtp::RtpArgs),
    /// Call set-ups over ng (offer, answer, delete), no media (dispatcher benchmark).
    NgSetup(rtp::setup::SetupArgs),
    /// A spinner pinned to each CPU for T seconds: gaps in its clock (the machine's stalls).
    Stalls(stalls::StallsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fanout(args) => fanout::run(args),
        Command::Churn(args) => fanout::churn::run(args),
        Command::Hits(args) => fanout::hits::run(args),
        Command::CacheFill(args) => cache_fill::run(args),
        Command::Hold(args) => fanout::hold::run(args),
        Command::RtspStub(args) => stub::run(args),
        Command::VodOrigin(args) => vod_origin::run(args),
        Command::Floor(args) => floor::run(args),
        Command::Rtp(args) => rtp::run(args),
        Command::NgSetup(args) => rtp::setup::run(args),
        Command::Stalls(args) => stalls::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mediagate-loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_parses_the_documented_form() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "mediagate-loadgen",
            "fanout",
            "--url",
            "rtsp://127.0.0.1:8554/cam",
            "--viewers",
            "1000",
            "--seconds",
            "60",
            "--transport",
            "tcp",
            "--edge-pid",
            "4242",
            "--ramp-per-sec",
            "200",
            "--json",
        ])
        .unwrap();
        let Command::Fanout(a) = cli.command else {
            panic!("not fanout")
        };
        assert_eq!(a.viewers, 1000);
        assert_eq!(a.seconds, 60.0);
        assert_eq!(a.transport, fanout::TransportArg::Tcp);
        assert_eq!(a.edge_pid, Some(4242));
        assert_eq!(a.ramp_per_sec, Some(200.0));
        assert!(a.json);
        assert!(Cli::try_parse_from([
            "mediagate-loadgen",
            "fanout",
            "--url",
            "x",
            "--transport",
            "sctp"
        ])
        .is_err());
    }
}
