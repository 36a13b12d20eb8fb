//! mediagate's operations layer: what every role reports into.
//!
//! * `log`: the process log (`tracing`), `[log] level` and `format`, reopened on SIGHUP;
//! * `store`: the records store (SQLite or PostgreSQL), one writer per process, generic
//!   over the record type (relay calls, edge viewer sessions, later the dispatcher's);
//! * `metrics`: the counters and gauges the roles publish (exposed over HTTP by the
//!   operations issue);
//! * `signals`: SIGHUP, SIGTERM and SIGINT as one stream of operator requests.

pub mod metrics;
pub mod store;
