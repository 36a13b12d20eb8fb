//! The balancer's agent-check reply parser: any bytes give a reply or an error whose
//! offset is inside the input, never a panic; whatever parses is written back and
//! parses again to the same reply.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_balancer::health::{parse_agent_reply, AgentReplyError, MAX_AGENT_LINE};

fuzz_target!(|data: &[u8]| {
    match parse_agent_reply(data) {
        Ok(reply) => {
            let line = reply.to_string();
            assert!(
                line.len() <= data.len(),
                "written longer than read: {line:?}"
            );
            let again = parse_agent_reply(line.as_bytes());
            assert_eq!(
                again.as_ref(),
                Ok(&reply),
                "agent reply round trip: {line:?}"
            );
        }
        Err(AgentReplyError::TooLong { limit }) => assert!(data.len() > limit),
        Err(
            AgentReplyError::InvalidByte { offset }
            | AgentReplyError::UnknownWord { offset }
            | AgentReplyError::BadNumber { offset },
        ) => assert!(offset < data.len().min(MAX_AGENT_LINE), "offset {offset}"),
    }
});
