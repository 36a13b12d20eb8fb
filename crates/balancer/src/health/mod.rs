//! Health of back ends: whether each takes new sessions and with what weight.
//!
//! * `state` (sans-IO): rise/fall counting over active checks and passive failures,
//!   the agent's words folded in, transitions reported ([`BackendHealth`]).
//! * `agent`: the agent-check reply parser (HAProxy's `agent-check` words), bounded
//!   and total ([`parse_agent_reply`]).
//! * `probe`: the one-shot checks on tokio (TCP connect, RTSP `OPTIONS`/`DESCRIBE`
//!   with expected status, agent port).
//! * `checker`: the per-back-end task that runs them every interval and publishes
//!   [`HealthStatus`] through a `watch` channel ([`HealthChecker`]).
//!
//! What it does not: act on a transition. The service that owns the back ends maps
//! [`HealthStatus::up`] and [`HealthStatus::effective_weight`] into its
//! `BackendView`s, drops the flows and persistence entries of a back end that went
//! down, and reports passive failures through [`PassiveReporter`].

mod agent;
mod checker;
mod probe;
mod state;

pub use agent::{
    parse_agent_reply, AgentAdmin, AgentReply, AgentReplyError, AgentState, MAX_AGENT_LINE,
    MAX_WEIGHT_PERCENT,
};
pub use checker::{CheckConfig, HealthChecker, PassiveReporter};
pub use probe::{probe, query_agent, CheckKind, ExpectStatus, ProbeError, CHECK_USER_AGENT};
pub use state::{BackendHealth, CheckOutcome, HealthStatus, Transition};
