//! The agent-check reply, as HAProxy's `agent-check` defines it: a back end runs a tiny
//! agent on a TCP port that answers one ASCII line about itself, and the balancer
//! follows it.
//!
//! Accepted words (case-insensitive), separated by spaces, tabs or commas, the line
//! ending at `\n` (a `\r` before it is a separator):
//! * operational state: `up`, `down`, `stopped`, `fail` (the last three take the back end
//!   out as a failed check would, at once);
//! * administrative state: `ready`, `drain` (no new sessions, running ones go on),
//!   `maint` (no new sessions, as down);
//! * weight: `N%` or `weight:N%`, a percentage of the configured weight (0 to 100000);
//! * `maxconn:N`, kept for the caller;
//! * `#` starts a free-text description that runs to the end of the line.
//!
//! Rejected, with the byte offset: a line longer than [`MAX_AGENT_LINE`], bytes that are
//! not printable ASCII before the description, unknown words, malformed or out-of-range
//! numbers. A later word overrides an earlier one of the same kind.
//!
//! What it does not: I/O (the probe in `probe.rs` reads the line) or deciding what the
//! reply does to a back end (`state.rs`).

/// Longest reply line accepted, without its line ending. HAProxy's agent replies are
/// a few words; a longer line is a misconfigured port, not an agent.
pub const MAX_AGENT_LINE: usize = 512;

/// Largest weight percentage accepted.
pub const MAX_WEIGHT_PERCENT: u32 = 100_000;

/// What the agent says of the back end's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    Up,
    Down,
    Stopped,
    Fail,
}

/// What the agent says of the back end's administration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAdmin {
    Ready,
    Drain,
    Maint,
}

/// One parsed reply; each field is None when the agent did not mention it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentReply {
    pub state: Option<AgentState>,
    pub admin: Option<AgentAdmin>,
    pub weight_percent: Option<u32>,
    pub maxconn: Option<u32>,
    /// The text after `#`, trimmed.
    pub description: Option<String>,
}

impl std::fmt::Display for AgentReply {
    /// The reply as an agent would write it (without the line end); it parses back to
    /// the same reply and is never longer than the line it was parsed from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut words: Vec<String> = Vec::new();
        words.extend(self.state.map(|s| {
            match s {
                AgentState::Up => "up",
                AgentState::Down => "down",
                AgentState::Stopped => "stopped",
                AgentState::Fail => "fail",
            }
            .to_owned()
        }));
        words.extend(self.admin.map(|a| {
            match a {
                AgentAdmin::Ready => "ready",
                AgentAdmin::Drain => "drain",
                AgentAdmin::Maint => "maint",
            }
            .to_owned()
        }));
        words.extend(self.weight_percent.map(|p| format!("{p}%")));
        words.extend(self.maxconn.map(|m| format!("maxconn:{m}")));
        f.write_str(&words.join(" "))?;
        // No space before `#`: the written line is never longer than the one parsed.
        match &self.description {
            Some(d) => write!(f, "#{d}"),
            None => Ok(()),
        }
    }
}

/// Why a reply was refused; `offset` is the byte offset in the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentReplyError {
    #[error("agent reply longer than {limit} bytes without a line end")]
    TooLong { limit: usize },
    #[error("agent reply has a control or non-ASCII byte at offset {offset}")]
    InvalidByte { offset: usize },
    #[error("agent reply has an unknown word at offset {offset} (expected up, down, stopped, fail, ready, drain, maint, N%, maxconn:N)")]
    UnknownWord { offset: usize },
    #[error("agent reply has a bad number at offset {offset}")]
    BadNumber { offset: usize },
}

/// Parses the first line of `buf` (all of it when it has no `\n`).
pub fn parse_agent_reply(buf: &[u8]) -> Result<AgentReply, AgentReplyError> {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    if line_end > MAX_AGENT_LINE {
        return Err(AgentReplyError::TooLong {
            limit: MAX_AGENT_LINE,
        });
    }
    let line = &buf[..line_end];
    let (words, description) = match line.iter().position(|&b| b == b'#') {
        Some(hash) => (&line[..hash], Some(&line[hash + 1..])),
        None => (line, None),
    };
    let mut reply = AgentReply::default();
    if let Some(d) = description {
        // The description is for people: printable ASCII kept, anything else shown as
        // `?`, so it can be logged as is and never grows when written back.
        let text: String = d
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '?'
                }
            })
            .collect();
        reply.description = Some(text.trim().to_owned());
    }
    let is_sep = |b: u8| matches!(b, b' ' | b'\t' | b',' | b'\r');
    let mut i = 0;
    while i < words.len() {
        let b = words[i];
        if is_sep(b) {
            i += 1;
            continue;
        }
        if !(0x21..0x7f).contains(&b) {
            return Err(AgentReplyError::InvalidByte { offset: i });
        }
        let start = i;
        while i < words.len() && !is_sep(words[i]) {
            if !(0x21..0x7f).contains(&words[i]) {
                return Err(AgentReplyError::InvalidByte { offset: i });
            }
            i += 1;
        }
        apply_word(&mut reply, &words[start..i], start)?;
    }
    Ok(reply)
}

fn apply_word(reply: &mut AgentReply, word: &[u8], offset: usize) -> Result<(), AgentReplyError> {
    let lower = word.to_ascii_lowercase();
    match lower.as_slice() {
        b"up" => reply.state = Some(AgentState::Up),
        b"down" => reply.state = Some(AgentState::Down),
        b"stopped" => reply.state = Some(AgentState::Stopped),
        b"fail" => reply.state = Some(AgentState::Fail),
        b"ready" => reply.admin = Some(AgentAdmin::Ready),
        b"drain" => reply.admin = Some(AgentAdmin::Drain),
        b"maint" => reply.admin = Some(AgentAdmin::Maint),
        w => {
            if let Some(n) = w.strip_prefix(b"maxconn:") {
                let at = offset + b"maxconn:".len();
                reply.maxconn = Some(number(n, at, u32::MAX, offset)?);
            } else if let Some(pct) = w.strip_suffix(b"%") {
                let (digits, at) = match pct.strip_prefix(b"weight:") {
                    Some(d) => (d, offset + b"weight:".len()),
                    None => (pct, offset),
                };
                reply.weight_percent = Some(number(digits, at, MAX_WEIGHT_PERCENT, offset)?);
            } else {
                return Err(AgentReplyError::UnknownWord { offset });
            }
        }
    }
    Ok(())
}

/// Decimal digits only (no sign, no space), at most `max`. `offset` is where the
/// digits start, `word` where their word does (blamed when there are no digits).
fn number(digits: &[u8], offset: usize, max: u32, word: usize) -> Result<u32, AgentReplyError> {
    if digits.is_empty() {
        return Err(AgentReplyError::BadNumber { offset: word });
    }
    let mut n: u64 = 0;
    for (k, &d) in digits.iter().enumerate() {
        if !d.is_ascii_digit() {
            return Err(AgentReplyError::BadNumber { offset: offset + k });
        }
        n = n * 10 + u64::from(d - b'0');
        if n > u64::from(max) {
            return Err(AgentReplyError::BadNumber { offset });
        }
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn haproxy_style_replies() {
        let r = parse_agent_reply(b"up 75%\n").unwrap();
        assert_eq!(r.state, Some(AgentState::Up));
        assert_eq!(r.weight_percent, Some(75));
        let r = parse_agent_reply(b"drain").unwrap();
        assert_eq!(r.admin, Some(AgentAdmin::Drain));
        assert_eq!(r.state, None);
        let r = parse_agent_reply(b"ready,UP, weight:50% maxconn:30\r\n").unwrap();
        assert_eq!(r.admin, Some(AgentAdmin::Ready));
        assert_eq!(r.state, Some(AgentState::Up));
        assert_eq!(r.weight_percent, Some(50));
        assert_eq!(r.maxconn, Some(30));
        let r = parse_agent_reply(b"down # disk full\nignored next line").unwrap();
        assert_eq!(r.state, Some(AgentState::Down));
        assert_eq!(r.description.as_deref(), Some("disk full"));
        let r = parse_agent_reply(b"maint 0% stopped fail").unwrap();
        assert_eq!(r.admin, Some(AgentAdmin::Maint));
        assert_eq!(r.state, Some(AgentState::Fail), "the later word wins");
        assert_eq!(r.weight_percent, Some(0));
        assert_eq!(parse_agent_reply(b"\n").unwrap(), AgentReply::default());
    }

    #[test]
    fn bad_replies_name_their_offset() {
        assert_eq!(
            parse_agent_reply(b"up sideways"),
            Err(AgentReplyError::UnknownWord { offset: 3 })
        );
        assert_eq!(
            parse_agent_reply(b"up 7x%"),
            Err(AgentReplyError::BadNumber { offset: 4 })
        );
        assert_eq!(
            parse_agent_reply(b"%"),
            Err(AgentReplyError::BadNumber { offset: 0 })
        );
        assert_eq!(
            parse_agent_reply(b"weight:100001%"),
            Err(AgentReplyError::BadNumber { offset: 7 })
        );
        assert_eq!(
            parse_agent_reply(b"up\x00"),
            Err(AgentReplyError::InvalidByte { offset: 2 })
        );
        assert_eq!(
            parse_agent_reply(b"up maxconn:"),
            Err(AgentReplyError::BadNumber { offset: 3 })
        );
        let long = vec![b' '; MAX_AGENT_LINE + 1];
        assert_eq!(
            parse_agent_reply(&long),
            Err(AgentReplyError::TooLong {
                limit: MAX_AGENT_LINE
            })
        );
        // At the limit with its line end is fine.
        let mut ok = vec![b' '; MAX_AGENT_LINE];
        ok.extend_from_slice(b"\nup");
        assert_eq!(parse_agent_reply(&ok), Ok(AgentReply::default()));
    }

    proptest! {
        /// Total: any bytes give a reply or an error, an error's offset is inside the line.
        #[test]
        fn never_panics(buf in prop::collection::vec(any::<u8>(), 0..700)) {
            match parse_agent_reply(&buf) {
                Ok(_) | Err(AgentReplyError::TooLong { .. }) => {}
                Err(AgentReplyError::InvalidByte { offset })
                | Err(AgentReplyError::UnknownWord { offset })
                | Err(AgentReplyError::BadNumber { offset }) => {
                    prop_assert!(offset < buf.len());
                }
            }
        }

        /// Words written by an agent read back as written, whatever the separators.
        #[test]
        fn round_trip(
            state in prop::option::of(prop::sample::select(vec!["up", "down", "stopped", "fail"])),
            admin in prop::option::of(prop::sample::select(vec!["ready", "drain", "maint"])),
            pct in prop::option::of(0u32..=MAX_WEIGHT_PERCENT),
            sep in prop::sample::select(vec![" ", ",", "\t", " , "]),
        ) {
            let mut words: Vec<String> = Vec::new();
            words.extend(state.map(str::to_owned));
            words.extend(admin.map(str::to_owned));
            words.extend(pct.map(|p| format!("{p}%")));
            let line = format!("{}\n", words.join(sep));
            let r = parse_agent_reply(line.as_bytes()).unwrap();
            prop_assert_eq!(r.state.is_some(), state.is_some());
            prop_assert_eq!(r.admin.is_some(), admin.is_some());
            prop_assert_eq!(r.weight_percent, pct);
            let again = parse_agent_reply(r.to_string().as_bytes()).unwrap();
            prop_assert_eq!(again, r);
        }

        /// Whatever parses is written back, no longer, and parses to the same reply.
        #[test]
        fn written_replies_parse_back(buf in prop::collection::vec(
            prop::sample::select(b"updowndrainmaint%0123456789:# ,\r\n\x01".to_vec()), 0..100)) {
            if let Ok(r) = parse_agent_reply(&buf) {
                let line = r.to_string();
                prop_assert!(line.len() <= buf.len());
                prop_assert_eq!(parse_agent_reply(line.as_bytes()), Ok(r), "{:?}", line);
            }
        }
    }
}
