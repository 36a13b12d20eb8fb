//! Thread scheduling for latency-sensitive threads: `"normal"`, `"normal:-5"`,
//! `"batch"`, `"idle"`, `"fifo:10"`, `"rr:10"`.
//!
//! What it does: parses and prints a Linux scheduling policy (sched(7)) with its
//! priority, refusing priorities the policy does not have: a nice value (-20 to 19)
//! for `normal` and `batch`, a real-time priority (1 to 99) for `fifo` and `rr`, none
//! for `idle`. A policy written without a priority gets nice 0, or real-time priority
//! 1 (the lowest, still above every normal thread). The choices of rtpengine's
//! `--scheduling` and `--priority`, whose `default` and `none` mean `normal` here.
//! What it does not: apply it (the relay engine does, through the `udp` crate) or check
//! that the process may (real-time policies and negative nice values need
//! `CAP_SYS_NICE` or an `RLIMIT_RTPRIO`/`RLIMIT_NICE`; the engine reports a refusal).

use std::fmt;
use std::str::FromStr;

use super::value_error::{check_len, quoted, InvalidValue};

/// A scheduling policy and its priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadScheduling {
    /// `SCHED_OTHER` (the kernel's default) with a nice value; `nice: 0` leaves the
    /// threads exactly as the kernel starts them.
    Normal { nice: i8 },
    /// `SCHED_BATCH`: never preempts on wake-up; for throughput over latency.
    Batch { nice: i8 },
    /// `SCHED_IDLE`: runs only when nothing else wants the CPU.
    Idle,
    /// `SCHED_FIFO` at a real-time priority: runs before every normal thread on its CPU
    /// until it blocks.
    Fifo { priority: u8 },
    /// `SCHED_RR`: like `fifo`, but threads of equal priority take turns.
    RoundRobin { priority: u8 },
}

impl Default for ThreadScheduling {
    fn default() -> Self {
        ThreadScheduling::NORMAL
    }
}

impl ThreadScheduling {
    /// The kernel's default: nothing to change.
    pub const NORMAL: ThreadScheduling = ThreadScheduling::Normal { nice: 0 };

    /// True for `fifo` and `rr`, which can keep every normal thread off a CPU.
    pub fn is_realtime(self) -> bool {
        matches!(
            self,
            ThreadScheduling::Fifo { .. } | ThreadScheduling::RoundRobin { .. }
        )
    }
}

const FORM: &str = "write normal, batch or idle (normal and batch take a nice value from -20 to 19, as \"normal:-5\"), or fifo or rr with a real-time priority from 1 to 99, as \"fifo:10\"";

impl FromStr for ThreadScheduling {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a scheduling policy")?;
        let (name, priority) = match s.split_once(':') {
            Some((name, priority)) => (name, Some(priority)),
            None => (s, None),
        };
        let number =
            |range: std::ops::RangeInclusive<i64>, what: &str| -> Result<i64, InvalidValue> {
                let Some(text) = priority else {
                    return Ok(if range.contains(&0) {
                        0
                    } else {
                        *range.start()
                    });
                };
                let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(InvalidValue::new(format!(
                        "invalid scheduling {}: {} is not a number; {FORM}",
                        quoted(s),
                        quoted(text)
                    )));
                }
                // All digits, so a failure means too many of them: out of range.
                let value = text.parse::<i64>().unwrap_or(if text.starts_with('-') {
                    i64::MIN
                } else {
                    i64::MAX
                });
                if !range.contains(&value) {
                    return Err(InvalidValue::new(format!(
                        "invalid scheduling {}: {what} {value} is outside {}..={}; {FORM}",
                        quoted(s),
                        range.start(),
                        range.end()
                    )));
                }
                Ok(value)
            };
        let nice = |what| number(-20..=19, what).map(|n| n as i8);
        let realtime = |what| number(1..=99, what).map(|n| n as u8);
        match name.to_ascii_lowercase().as_str() {
            // rtpengine's "default" and "none" leave the threads alone, as normal does.
            "default" | "none" if priority.is_none() => Ok(ThreadScheduling::NORMAL),
            "normal" | "other" => Ok(ThreadScheduling::Normal {
                nice: nice("the nice value")?,
            }),
            "batch" => Ok(ThreadScheduling::Batch {
                nice: nice("the nice value")?,
            }),
            "idle" if priority.is_none() => Ok(ThreadScheduling::Idle),
            "idle" => Err(InvalidValue::new(format!(
                "invalid scheduling {}: idle takes no priority; {FORM}",
                quoted(s)
            ))),
            "fifo" => Ok(ThreadScheduling::Fifo {
                priority: realtime("the real-time priority")?,
            }),
            "rr" => Ok(ThreadScheduling::RoundRobin {
                priority: realtime("the real-time priority")?,
            }),
            _ => Err(InvalidValue::new(format!(
                "invalid scheduling {}: unknown policy {}; {FORM}",
                quoted(s),
                quoted(name)
            ))),
        }
    }
}

impl fmt::Display for ThreadScheduling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ThreadScheduling::Normal { nice: 0 } => f.write_str("normal"),
            ThreadScheduling::Normal { nice } => write!(f, "normal:{nice}"),
            ThreadScheduling::Batch { nice: 0 } => f.write_str("batch"),
            ThreadScheduling::Batch { nice } => write!(f, "batch:{nice}"),
            ThreadScheduling::Idle => f.write_str("idle"),
            ThreadScheduling::Fifo { priority } => write!(f, "fifo:{priority}"),
            ThreadScheduling::RoundRobin { priority } => write!(f, "rr:{priority}"),
        }
    }
}

string_value_serde!(
    ThreadScheduling,
    "a scheduling policy such as \"normal\" or \"fifo:10\""
);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ThreadScheduling, String> {
        s.parse::<ThreadScheduling>()
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn every_policy_parses_and_prints_back() {
        for (text, value) in [
            ("normal", ThreadScheduling::NORMAL),
            ("normal:-5", ThreadScheduling::Normal { nice: -5 }),
            ("normal:19", ThreadScheduling::Normal { nice: 19 }),
            ("batch", ThreadScheduling::Batch { nice: 0 }),
            ("batch:10", ThreadScheduling::Batch { nice: 10 }),
            ("idle", ThreadScheduling::Idle),
            ("fifo:10", ThreadScheduling::Fifo { priority: 10 }),
            ("fifo:99", ThreadScheduling::Fifo { priority: 99 }),
            ("rr:1", ThreadScheduling::RoundRobin { priority: 1 }),
        ] {
            assert_eq!(parse(text), Ok(value), "{text}");
            assert_eq!(value.to_string(), text);
        }
        // rtpengine's spelling and a bare real-time policy (its lowest priority).
        assert_eq!(parse("other"), Ok(ThreadScheduling::NORMAL));
        assert_eq!(parse("FIFO"), Ok(ThreadScheduling::Fifo { priority: 1 }));
        assert_eq!(parse("normal:0"), Ok(ThreadScheduling::NORMAL));
        assert_eq!(parse("default"), Ok(ThreadScheduling::NORMAL));
        assert_eq!(parse("none"), Ok(ThreadScheduling::NORMAL));
        assert_eq!(parse("fifo:+5"), Ok(ThreadScheduling::Fifo { priority: 5 }));
        assert_eq!(ThreadScheduling::default(), ThreadScheduling::NORMAL);
        assert!(ThreadScheduling::Fifo { priority: 1 }.is_realtime());
        assert!(ThreadScheduling::RoundRobin { priority: 1 }.is_realtime());
        assert!(!ThreadScheduling::Batch { nice: -20 }.is_realtime());
    }

    #[test]
    fn priorities_a_policy_does_not_have_are_refused() {
        for (text, says) in [
            ("fifo:0", "the real-time priority 0 is outside 1..=99"),
            ("rr:100", "the real-time priority 100 is outside 1..=99"),
            ("normal:-21", "the nice value -21 is outside -20..=19"),
            ("batch:20", "the nice value 20 is outside -20..=19"),
            ("idle:3", "idle takes no priority"),
            ("fifo:ten", "\"ten\" is not a number"),
            ("fifo:", "\"\" is not a number"),
            ("fifo:-", "\"-\" is not a number"),
            ("fifo:1.5", "\"1.5\" is not a number"),
            (
                "fifo:99999999999999999999",
                "priority 9223372036854775807 is outside 1..=99",
            ),
            ("default:5", "unknown policy \"default\""),
            ("realtime", "unknown policy \"realtime\""),
            ("", "unknown policy \"\""),
        ] {
            let message = parse(text).expect_err(text);
            assert!(message.contains(says), "{text}: {message}");
            assert!(message.contains("\"fifo:10\""), "{message}");
        }
        assert!(parse(&"f".repeat(5000)).is_err());
    }
}
