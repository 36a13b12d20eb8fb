//! `mediagate-loadgen rtp`: K calls through an RTP relay driven over `ng`, RTP pumped
//! both ways for T seconds, then delivery, loss, reordering, one-way latency
//! percentiles, the relay's CPU time and peak memory (issue 4 item 9), and the whole
//! machine's busy CPU time per forwarded packet (issue 16).
//!
//! It speaks `ng` like Kamailio (offer, answer, delete with `received-from` and
//! `replace` flags), so the same run works against mediagate and against rtpengine:
//! give several `--target LABEL,NG_ADDR[,PID]` and they are measured one after the
//! other with the same load, and compared in one table.
//!
//! Per call: two UDP sockets on `--local-ip` play caller and callee; each sends
//! `--size`-byte RTP packets at `--pps` to the relay port the other side's SDP named,
//! from the port its own SDP named (symmetric RTP, so secure latching accepts it).
//! One sender thread paces all streams evenly over each packet interval; one receiver
//! thread drains every socket with epoll + `recvmmsg` ([`crate::udp_rx`]). Each
//! payload carries its send time and stream number, so latency and loss are exact.
//! Latency is the kernel's receive timestamp minus the send time (wall clock), so the
//! receiver thread's own scheduling delay is not in it; where the kernel gave no
//! timestamp the receiver's wake-up time stands in, and the output says so (a note
//! under the table, `kernel_rx_timestamps` and `wakeup_stamped` in the JSON).
//!
//! CPU is counted two ways. The relay process's own user + system time (with a PID)
//! misses work the kernel does for it outside its system calls, in softirq context:
//! the loopback or veth delivery of its sends, and all of a kernel fast path (eBPF)
//! that forwards without waking it. So every run also measures the machine's busy
//! time over the media window: wall time times the CPUs, less the idle and steal time
//! `/proc/stat` clocks ([`crate::procfs::HostCpu::busy_wall_since`]; its tick-sampled
//! busy columns moved by several microseconds per packet between identical runs), per
//! packet received; that figure includes the load generator and the host's other
//! work, so with `--direct` the same figure of the run with no relay is subtracted
//! (`net_us`): what putting the relay in the path cost the machine per packet. Its
//! softirq part is shown alone (`sirq_us`). On a shared host other programs' work
//! lands in the busy time too: `idle%` says how much room was left (near zero, a
//! warning under the table says the machine-wide figures measure the host), `steal%`
//! how much the hypervisor took.
//!
//! `--find-max-rate` ([`max_rate`]) steps the packet rate per stream up for the same
//! calls and reports the highest rate each target carried with zero loss.
//!
//! What it does not: start the relays (the benchmark command in the issue note does,
//! and `scripts/bench-relay.sh`), or judge them beyond the exit status: 0 when every
//! packet arrived (with `--find-max-rate`: when every target carried some rate without
//! loss), 2 when some were lost, 1 when the run could not be made.

mod max_rate;
mod ng_udp;
mod pump;
pub(crate) mod setup;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use crate::procfs::{HostCpu, Process};
use crate::stats::nearest_rank;
use mediagate_ng::bencode::Value;
use mediagate_ng::client::{check, RequestBuilder};
use mediagate_ng::request::Command;
use ng_udp::NgClient;

/// Idle share under which a window's machine-wide figures are flagged: the CPUs were
/// (nearly) never free, so busy time is the window's length, whatever the relay did.
const SATURATED_IDLE_PERCENT: f64 = 5.0;

/// One relay to measure: `LABEL,NG_ADDR[,PID]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub label: String,
    pub ng: SocketAddr,
    pub pid: Option<u32>,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let form = "write LABEL,NG_ADDR[,PID], for example mediagate,127.0.0.1:2223,4242";
        let mut parts = s.split(',');
        let label = parts.next().filter(|l| !l.is_empty()).ok_or(form)?;
        let ng = parts
            .next()
            .ok_or(form)?
            .parse()
            .map_err(|_| format!("invalid ng address in {s:?}; {form}"))?;
        let pid = match parts.next() {
            Some(p) => Some(
                p.parse()
                    .map_err(|_| format!("invalid pid in {s:?}; {form}"))?,
            ),
            None => None,
        };
        if parts.next().is_some() {
            return Err(form.to_owned());
        }
        Ok(Self {
            label: label.to_owned(),
            ng,
            pid,
        })
    }
}

/// Arguments of `mediagate-loadgen rtp`.
#[derive(Debug, Args)]
pub(crate) struct RtpArgs {
    /// A relay to measure, LABEL,NG_ADDR[,PID] (PID for CPU and memory figures);
    /// repeat to compare several with the same load.
    #[arg(long = "target", required = true, value_name = "LABEL,NG_ADDR[,PID]")]
    pub targets: Vec<Target>,
    /// Concurrent calls (two streams each).
    #[arg(long, default_value_t = 100)]
    pub calls: usize,
    /// Seconds of media after all calls are set up.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Packets per second per stream (50 = 20 ms ptime).
    #[arg(long, default_value_t = 50)]
    pub pps: u32,
    /// RTP packet size in bytes (172 = G.711 at 20 ms).
    #[arg(long, default_value_t = 172)]
    pub size: usize,
    /// Address the simulated phones bind and put in SDP.
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: IpAddr,
    /// Print one JSON object per target instead of the table.
    #[arg(long)]
    pub json: bool,
    /// First measure the same load with no relay (each phone sends straight to the
    /// other), reported as target `direct`: the latency and machine CPU this host and
    /// the generator spend by themselves, so a relay's added latency is its figure
    /// minus this one, and its `net us/pkt` is its machine-wide figure minus this one's.
    #[arg(long)]
    pub direct: bool,
    /// Instead of one run at `--pps`, find each target's highest rate with zero loss:
    /// the same calls pumped for `--seconds` per step, `--pps` doubled after every
    /// loss-free step, then halving the gap between the best loss-free and the first
    /// lossy rate. At most `--max-steps` steps per target.
    #[arg(long)]
    pub find_max_rate: bool,
    /// Steps per target with `--find-max-rate` (bounds its time: steps × (seconds + 1)).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_steps: u32,
    /// Highest packets per second per stream `--find-max-rate` tries.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_pps: u32,
}

/// One simulated call.
pub(crate) struct Call {
    pub call_id: String,
    /// `[caller, callee]`.
    pub sockets: [UdpSocket; 2],
    /// Where each side sends: `[caller → relay, callee → relay]`.
    pub relay_ports: [SocketAddr; 2],
}

/// What one target's run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub label: String,
    pub calls: usize,
    pub setup_pairs_per_sec: f64,
    pub setup_rtt_p50_us: u64,
    pub setup_rtt_p99_us: u64,
    pub pump: pump::PumpReport,
    pub relay_cpu_s: Option<f64>,
    pub relay_peak_rss_mib: Option<f64>,
    /// Share of the machine's CPU time the hypervisor gave to other guests while the
    /// media flowed (`/proc/stat` steal): a run with much of it measured the host, not
    /// the relay, in its latency tail.
    pub host_steal_percent: Option<f64>,
    /// Busy time of all the machine's CPUs while the media flowed: the window's wall
    /// time times the CPUs, less the idle and steal time `/proc/stat` measured
    /// ([`crate::procfs::HostCpu::busy_wall_since`]).
    pub host_busy_s: Option<f64>,
    /// The same from `/proc/stat`'s tick-sampled busy columns, kept in the JSON to show
    /// how far sampling moved it ([`crate::procfs::HostCpu`] says why it can).
    pub host_busy_sampled_s: Option<f64>,
    /// `/proc/stat`'s softirq column over the window (tick-sampled, like
    /// `host_busy_sampled_s`).
    pub host_softirq_s: Option<f64>,
    /// Share of the window the CPUs were idle: near zero, other work filled the
    /// machine and the busy figures measure the window, not the relay.
    pub host_idle_percent: Option<f64>,
    /// Packets per second per stream of this run.
    pub pps_per_stream: u32,
    /// [`Outcome::machine_us_per_packet`] minus the `direct` run's at the same rate:
    /// what the relay in the path cost the whole machine per packet.
    pub machine_net_us_per_packet: Option<f64>,
}

impl Outcome {
    /// Relay CPU per forwarded packet, microseconds.
    pub(crate) fn cpu_us_per_packet(&self) -> Option<f64> {
        let cpu = self.relay_cpu_s?;
        (self.pump.received > 0).then(|| cpu * 1e6 / self.pump.received as f64)
    }

    /// Busy CPU time of the whole machine per packet received, microseconds.
    pub(crate) fn machine_us_per_packet(&self) -> Option<f64> {
        self.per_packet_us(self.host_busy_s)
    }

    /// Softirq time of the whole machine per packet received, microseconds.
    pub(crate) fn softirq_us_per_packet(&self) -> Option<f64> {
        self.per_packet_us(self.host_softirq_s)
    }

    fn per_packet_us(&self, seconds: Option<f64>) -> Option<f64> {
        let seconds = seconds?;
        (self.pump.received > 0).then(|| seconds * 1e6 / self.pump.received as f64)
    }

    /// Whether the machine was saturated during the window (idle under
    /// [`SATURATED_IDLE_PERCENT`]), so that its busy figures say little.
    pub(crate) fn host_saturated(&self) -> bool {
        self.host_idle_percent
            .is_some_and(|idle| idle < SATURATED_IDLE_PERCENT)
    }

    /// Fills [`Outcome::machine_net_us_per_packet`] from the `direct` run of the same
    /// load; nothing when either figure is missing.
    pub(crate) fn subtract_direct(&mut self, direct: &Outcome) {
        self.machine_net_us_per_packet = self
            .machine_us_per_packet()
            .zip(direct.machine_us_per_packet())
            .map(|(relay, none)| relay - none);
    }

    fn json(&self) -> serde_json::Value {
        let p = &self.pump;
        serde_json::json!({
            "label": self.label,
            "calls": self.calls,
            "streams": self.calls * 2,
            "setup_pairs_per_sec": self.setup_pairs_per_sec,
            "setup_rtt_p50_us": self.setup_rtt_p50_us,
            "setup_rtt_p99_us": self.setup_rtt_p99_us,
            "seconds": p.seconds,
            "sent": p.sent,
            "received": p.received,
            "lost": p.sent.saturating_sub(p.received),
            "reordered": p.reordered,
            "misrouted": p.misrouted,
            "send_errors": p.send_errors,
            "offered_pps": p.sent as f64 / p.seconds.max(1e-9),
            "pps_per_stream": self.pps_per_stream,
            "latency_us": {"p50": p.latency_us(50.0), "p90": p.latency_us(90.0), "p99": p.latency_us(99.0), "p999": p.latency_us(99.9), "max": p.latency_max_us},
            "kernel_rx_timestamps": p.kernel_timestamps,
            "wakeup_stamped": p.wakeup_stamped,
            "relay_cpu_s": self.relay_cpu_s,
            "relay_cpu_us_per_packet": self.cpu_us_per_packet(),
            "relay_peak_rss_mib": self.relay_peak_rss_mib,
            "host_steal_percent": self.host_steal_percent,
            "machine_busy_s": self.host_busy_s,
            "machine_busy_sampled_s": self.host_busy_sampled_s,
            "machine_us_per_packet": self.machine_us_per_packet(),
            "machine_net_us_per_packet": self.machine_net_us_per_packet,
            "machine_softirq_s": self.host_softirq_s,
            "machine_softirq_us_per_packet": self.softirq_us_per_packet(),
            "machine_idle_percent": self.host_idle_percent,
            "machine_saturated": self.host_saturated(),
        })
    }
}

fn sdp(ip: IpAddr, port: u16) -> String {
    let family = if ip.is_ipv4() { 4 } else { 6 };
    format!(
        "v=0\r\no=- 1 1 IN IP{family} {ip}\r\ns=loadgen\r\nc=IN IP{family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
    )
}

/// The relay address an SDP from the relay names: `c=` and the `m=audio` port.
fn relay_endpoint(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines() {
        if let Some(c) = line.strip_prefix("c=IN ") {
            ip = ip.or_else(|| c.split_whitespace().nth(1)?.parse::<IpAddr>().ok());
        }
        if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split_whitespace().next()?.parse::<u16>().ok();
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

fn sdp_reply(reply: &Value) -> anyhow::Result<SocketAddr> {
    let ok = check(reply)?;
    let text = ok
        .get("sdp")
        .and_then(Value::as_str)
        .context("reply without sdp")?;
    relay_endpoint(text).with_context(|| format!("no c=/m=audio in the relay's SDP:\n{text}"))
}

/// Offer and answer for `count` calls; returns them with the per-pair round trips.
fn set_up(
    client: &mut NgClient,
    count: usize,
    local_ip: IpAddr,
    label: &str,
) -> anyhow::Result<(Vec<Call>, Vec<Duration>, Duration)> {
    let mut calls = Vec::with_capacity(count);
    let mut rtts = Vec::with_capacity(count);
    let ip = local_ip.to_string();
    let started = Instant::now();
    for i in 0..count {
        let bind = SocketAddr::new(local_ip, 0);
        let caller = UdpSocket::bind(bind).context("cannot bind a caller socket")?;
        let callee = UdpSocket::bind(bind).context("cannot bind a callee socket")?;
        let call_id = format!("loadgen-{label}-{}-{i}", std::process::id());
        let received = ["IP4", ip.as_str()];
        let received_v6 = ["IP6", ip.as_str()];
        let received: &[&str] = if local_ip.is_ipv4() {
            &received
        } else {
            &received_v6
        };
        let caller_sdp = sdp(local_ip, caller.local_addr()?.port());
        let offer = RequestBuilder::new(Command::Offer)
            .str("call-id", &call_id)
            .str("from-tag", "caller")
            .str("sdp", &caller_sdp)
            .strs("received-from", received)
            .strs("replace", &["origin", "session-connection"])
            .str("ICE", "remove")
            .strs("supports", &["load limit"])
            .build();
        let (reply, rtt_offer) = client.request(&offer)?;
        let callee_side = sdp_reply(&reply).with_context(|| format!("offer {i} to {label}"))?;
        let callee_sdp = sdp(local_ip, callee.local_addr()?.port());
        let answer = RequestBuilder::new(Command::Answer)
            .str("call-id", &call_id)
            .str("from-tag", "caller")
            .str("to-tag", "callee")
            .str("sdp", &callee_sdp)
            .strs("received-from", received)
            .strs("replace", &["origin", "session-connection"])
            .str("ICE", "remove")
            .strs("supports", &["load limit"])
            .build();
        let (reply, rtt_answer) = client.request(&answer)?;
        let caller_side = sdp_reply(&reply).with_context(|| format!("answer {i} to {label}"))?;
        rtts.push(rtt_offer + rtt_answer);
        calls.push(Call {
            call_id,
            sockets: [caller, callee],
            relay_ports: [caller_side, callee_side],
        });
    }
    Ok((calls, rtts, started.elapsed()))
}

fn tear_down(client: &mut NgClient, calls: &[Call]) {
    for c in calls {
        let body = RequestBuilder::new(Command::Delete)
            .str("call-id", &c.call_id)
            .str("from-tag", "caller")
            .int("delete delay", 0)
            .build();
        let _ = client.request(&body);
    }
}

/// `count` calls whose phones send straight to each other: the baseline.
fn direct_calls(count: usize, local_ip: IpAddr) -> anyhow::Result<Vec<Call>> {
    (0..count)
        .map(|i| {
            let bind = SocketAddr::new(local_ip, 0);
            let caller = UdpSocket::bind(bind).context("cannot bind a caller socket")?;
            let callee = UdpSocket::bind(bind).context("cannot bind a callee socket")?;
            let relay_ports = [callee.local_addr()?, caller.local_addr()?];
            Ok(Call {
                call_id: format!("direct-{i}"),
                sockets: [caller, callee],
                relay_ports,
            })
        })
        .collect()
}

/// One media window over calls already set up: the pump's report with the relay
/// process's and the machine's CPU around it. `label` and the set-up figures are the
/// caller's to fill.
fn media_window(
    calls: &[Call],
    args: &RtpArgs,
    pps: u32,
    process: Option<&Process>,
) -> anyhow::Result<Outcome> {
    let ticks = crate::sys::clock_ticks_per_second().unwrap_or(100);
    let cpu_before = process.map(Process::cpu).transpose()?;
    // `None` where `/proc/stat` cannot be read: the figures are left out, not faked.
    let host_before = HostCpu::now().ok();
    let window_start = Instant::now();
    let report = pump::run(calls, &plan(args, pps))?;
    let host_after = HostCpu::now().ok();
    let wall = window_start.elapsed();
    let relay_cpu_s = match (process, cpu_before) {
        (Some(p), Some(before)) => Some(p.cpu()?.since(&before, ticks).as_secs_f64()),
        _ => None,
    };
    let host = host_before.zip(host_after);
    Ok(Outcome {
        calls: calls.len(),
        pump: report,
        relay_cpu_s,
        host_steal_percent: host.map(|(b, a)| a.steal_percent_since(&b)),
        host_busy_s: host.map(|(b, a)| a.busy_wall_since(&b, wall, ticks).as_secs_f64()),
        host_busy_sampled_s: host.map(|(b, a)| a.busy_since(&b, ticks).as_secs_f64()),
        host_softirq_s: host.map(|(b, a)| a.softirq_since(&b, ticks).as_secs_f64()),
        host_idle_percent: host.map(|(b, a)| a.idle_percent_since(&b)),
        pps_per_stream: pps,
        ..Outcome::default()
    })
}

/// The same load with no relay in the path, at `pps` per stream.
fn measure_direct(calls: &[Call], args: &RtpArgs, pps: u32) -> anyhow::Result<Outcome> {
    Ok(Outcome {
        label: "direct".to_owned(),
        ..media_window(calls, args, pps, None)?
    })
}

fn plan(args: &RtpArgs, pps: u32) -> pump::Plan {
    pump::Plan {
        pps,
        size: args.size,
        duration: Duration::from_secs_f64(args.seconds),
    }
}

/// A target's calls, set up and deleted again on drop.
struct Session {
    client: NgClient,
    calls: Vec<Call>,
    rtts: Vec<Duration>,
    setup_time: Duration,
    process: Option<Process>,
}

impl Session {
    fn open(args: &RtpArgs, target: &Target) -> anyhow::Result<Session> {
        let mut client = NgClient::new(target.ng)?;
        let ping = RequestBuilder::new(Command::Ping).build();
        let (pong, _) = client.request(&ping).with_context(|| {
            format!("{} does not answer ng ping at {}", target.label, target.ng)
        })?;
        check(&pong)?;
        let (calls, mut rtts, setup_time) =
            set_up(&mut client, args.calls, args.local_ip, &target.label)?;
        rtts.sort_unstable();
        Ok(Session {
            client,
            calls,
            rtts,
            setup_time,
            process: target.pid.map(Process::new),
        })
    }

    /// A media window at `pps` per stream, with the set-up figures and peak RSS.
    fn measure(&self, args: &RtpArgs, target: &Target, pps: u32) -> anyhow::Result<Outcome> {
        let window = media_window(&self.calls, args, pps, self.process.as_ref())?;
        let relay_peak_rss_mib = self
            .process
            .as_ref()
            .map(|p| p.memory().map(|m| m.peak_rss_kib as f64 / 1024.0))
            .transpose()?;
        let us =
            |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Ok(Outcome {
            label: target.label.clone(),
            setup_pairs_per_sec: self.calls.len() as f64 / self.setup_time.as_secs_f64().max(1e-9),
            setup_rtt_p50_us: us(nearest_rank(&self.rtts, 50)),
            setup_rtt_p99_us: us(nearest_rank(&self.rtts, 99)),
            relay_peak_rss_mib,
            ..window
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        tear_down(&mut self.client, &self.calls);
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
}

fn print_table(outcomes: &[Outcome]) {
    println!(
        "{:<12} {:>6} {:>9} {:>9} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>8} {:>6} {:>8} {:>8} {:>7}",
        "target",
        "calls",
        "sent",
        "received",
        "lost",
        "reord",
        "p50us",
        "p99us",
        "p999us",
        "maxus",
        "cpu_s",
        "us/pkt",
        "mach_us",
        "net_us",
        "sirq_us",
        "idle%",
        "rss_MiB",
        "setup/s",
        "steal%"
    );
    for o in outcomes {
        let p = &o.pump;
        println!(
            "{:<12} {:>6} {:>9} {:>9} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9} {:>9} {:>9} {:>8} {:>6} {:>8} {:>8} {:>7}",
            o.label,
            o.calls,
            p.sent,
            p.received,
            p.sent.saturating_sub(p.received),
            p.reordered,
            p.latency_us(50.0),
            p.latency_us(99.0),
            p.latency_us(99.9),
            p.latency_max_us,
            opt(o.relay_cpu_s, 2),
            opt(o.cpu_us_per_packet(), 2),
            opt(o.machine_us_per_packet(), 2),
            opt(o.machine_net_us_per_packet, 2),
            opt(o.softirq_us_per_packet(), 2),
            opt(o.host_idle_percent, 1),
            opt(o.relay_peak_rss_mib, 1),
            opt(
                (o.setup_pairs_per_sec > 0.0).then_some(o.setup_pairs_per_sec),
                0
            ),
            opt(o.host_steal_percent, 1),
        );
    }
    for line in latency_notes(outcomes) {
        println!("{line}");
    }
    for line in cpu_notes(outcomes) {
        println!("{line}");
    }
}

/// What the CPU columns are, and a warning per window in which the machine was never
/// idle (its machine-wide figures then measure the host, not the relay).
pub(crate) fn cpu_notes(outcomes: &[Outcome]) -> Vec<String> {
    let mut notes = vec![
        "us/pkt: the relay process's CPU; mach_us: all CPUs' busy time (wall time x CPUs \
         minus the idle and steal time /proc/stat measures); net_us: mach_us minus \
         direct's at the same rate; sirq_us: /proc/stat's softirq column (tick-sampled: \
         a share, not a measurement)"
            .to_owned(),
    ];
    let saturated: Vec<&Outcome> = outcomes.iter().filter(|o| o.host_saturated()).collect();
    if saturated.len() > 1 && saturated.len() == outcomes.len() {
        notes.push(format!(
            "warning: the CPUs were idle under {SATURATED_IDLE_PERCENT}% of every window; \
             other work filled the machine, so mach_us and net_us measure the host, not \
             the relays"
        ));
        return notes;
    }
    for o in saturated {
        notes.push(format!(
            "warning: {} at {} pps/stream: the CPUs were idle {:.1}% of the window; other \
             work filled the machine, so mach_us and net_us measure the host, not the relay",
            o.label,
            o.pps_per_stream,
            o.host_idle_percent.unwrap_or(0.0)
        ));
    }
    notes
}

/// How the table's latency was measured, so a reader knows whether the load
/// generator's own delay is in it: one line when every target used kernel receive
/// timestamps, else one line per target.
fn latency_notes(outcomes: &[Outcome]) -> Vec<String> {
    if outcomes.iter().all(|o| o.pump.kernel_timestamps) {
        return vec![
            "latency: kernel receive timestamps (SO_TIMESTAMPNS) minus send time".to_owned(),
        ];
    }
    outcomes
        .iter()
        .map(|o| {
            let p = &o.pump;
            if p.kernel_timestamps {
                format!(
                    "latency {}: kernel receive timestamps (SO_TIMESTAMPNS)",
                    o.label
                )
            } else {
                format!(
                    "latency {}: receiver wake-up time for {} of {} packets (no kernel \
                     timestamp): includes the load generator's scheduling delay",
                    o.label, p.wakeup_stamped, p.received
                )
            }
        })
        .collect()
}

/// Runs the benchmark against every target in turn.
pub(crate) fn run(args: RtpArgs) -> anyhow::Result<u8> {
    if args.calls == 0 || args.pps == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("--calls, --pps and --seconds must be positive");
    }
    if args.size < pump::MIN_SIZE || args.size > 1400 {
        bail!("--size must be between {} and 1400 bytes", pump::MIN_SIZE);
    }
    let _ = mediagate_udp::raise_nofile_limit();
    if args.find_max_rate {
        return max_rate::run(&args);
    }
    let mut outcomes = Vec::new();
    let mut direct = None;
    if args.direct {
        let calls = direct_calls(args.calls, args.local_ip)?;
        let outcome = measure_direct(&calls, &args, args.pps).context("the direct baseline")?;
        if args.json {
            println!("{}", outcome.json());
        }
        direct = Some(outcome.clone());
        outcomes.push(outcome);
    }
    for target in &args.targets {
        let mut outcome = Session::open(&args, target)
            .and_then(|s| s.measure(&args, target, args.pps))
            .with_context(|| format!("target {}", target.label))?;
        if let Some(direct) = &direct {
            outcome.subtract_direct(direct);
        }
        if args.json {
            println!("{}", outcome.json());
        }
        outcomes.push(outcome);
    }
    if !args.json {
        print_table(&outcomes);
    }
    let all_arrived = outcomes.iter().all(|o| o.pump.received >= o.pump.sent);
    Ok(if all_arrived { 0 } else { 2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_forms() {
        let t: Target = "mediagate,127.0.0.1:2223,42".parse().unwrap();
        assert_eq!(
            t,
            Target {
                label: "mediagate".into(),
                ng: "127.0.0.1:2223".parse().unwrap(),
                pid: Some(42)
            }
        );
        let t: Target = "rtpengine,[::1]:2225".parse().unwrap();
        assert_eq!(t.pid, None);
        assert!("x".parse::<Target>().unwrap_err().contains("LABEL,NG_ADDR"));
        assert!("x,1.2.3.4"
            .parse::<Target>()
            .unwrap_err()
            .contains("invalid ng address"));
        assert!("x,1.2.3.4:1,y"
            .parse::<Target>()
            .unwrap_err()
            .contains("invalid pid"));
    }

    #[test]
    fn latency_notes_say_which_clock_was_used() {
        let outcome = |label: &str, kernel: bool, woke: u64| Outcome {
            label: label.into(),
            pump: pump::PumpReport {
                received: 100,
                kernel_timestamps: kernel,
                wakeup_stamped: woke,
                ..Default::default()
            },
            ..Default::default()
        };
        let both = [outcome("a", true, 0), outcome("b", true, 0)];
        assert_eq!(
            latency_notes(&both),
            ["latency: kernel receive timestamps (SO_TIMESTAMPNS) minus send time"]
        );
        let mixed = [outcome("a", true, 0), outcome("b", false, 7)];
        assert_eq!(
            latency_notes(&mixed),
            [
                "latency a: kernel receive timestamps (SO_TIMESTAMPNS)",
                "latency b: receiver wake-up time for 7 of 100 packets (no kernel timestamp): \
                 includes the load generator's scheduling delay",
            ]
        );
        let json = mixed[1].json();
        assert_eq!(json["kernel_rx_timestamps"], false);
        assert_eq!(json["wakeup_stamped"], 7);
    }

    #[test]
    fn machine_cpu_per_packet_net_of_the_direct_run() {
        let outcome = |label: &str, busy: Option<f64>, received: u64| Outcome {
            label: label.into(),
            host_busy_s: busy,
            pump: pump::PumpReport {
                sent: received,
                received,
                ..Default::default()
            },
            ..Default::default()
        };
        // 100,000 packets: 0.4 s of machine time with no relay, 0.9 s with one.
        let direct = outcome("direct", Some(0.4), 100_000);
        let mut relay = outcome("relay", Some(0.9), 100_000);
        assert!((direct.machine_us_per_packet().unwrap() - 4.0).abs() < 1e-9);
        relay.subtract_direct(&direct);
        assert!((relay.machine_net_us_per_packet.unwrap() - 5.0).abs() < 1e-9);
        let json = relay.json();
        assert!((json["machine_us_per_packet"].as_f64().unwrap() - 9.0).abs() < 1e-9);
        assert!((json["machine_net_us_per_packet"].as_f64().unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(json["machine_busy_s"], 0.9);
        // No figure when /proc/stat was unreadable or nothing arrived: never a fake zero.
        let mut blind = outcome("relay", None, 100_000);
        blind.subtract_direct(&direct);
        assert_eq!(blind.machine_net_us_per_packet, None);
        assert!(blind.json()["machine_us_per_packet"].is_null());
        assert_eq!(blind.json()["machine_saturated"], false);
        let mut silent = outcome("relay", Some(0.9), 0);
        silent.subtract_direct(&direct);
        assert_eq!(silent.machine_us_per_packet(), None);
        assert_eq!(silent.machine_net_us_per_packet, None);
    }

    #[test]
    fn a_saturated_machine_is_flagged() {
        let outcome = |label: &str, idle: Option<f64>| Outcome {
            label: label.into(),
            host_idle_percent: idle,
            host_softirq_s: Some(0.2),
            pps_per_stream: 50,
            pump: pump::PumpReport {
                received: 100_000,
                ..Default::default()
            },
            ..Default::default()
        };
        let rows = [
            outcome("direct", Some(60.0)),
            outcome("mediagate", Some(0.4)),
            outcome("rtpengine", None),
        ];
        let notes = cpu_notes(&rows);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[1].starts_with("warning: mediagate at 50 pps/stream: the CPUs were idle 0.4%"),
            "{notes:?}"
        );
        // Every window saturated: one line, not one per row.
        let all = [outcome("a", Some(1.0)), outcome("b", Some(0.0))];
        let notes = cpu_notes(&all);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[1].contains("idle under 5% of every window"),
            "{notes:?}"
        );
        assert_eq!(rows[1].json()["machine_saturated"], true);
        assert!((rows[1].softirq_us_per_packet().unwrap() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn reads_the_relay_endpoint_from_sdp() {
        let s = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 30000 RTP/AVP 8\r\na=rtcp:30001\r\n";
        assert_eq!(relay_endpoint(s), Some("192.0.2.1:30000".parse().unwrap()));
        assert_eq!(relay_endpoint("v=0\r\nm=audio 1 RTP/AVP 0\r\n"), None);
    }
}
