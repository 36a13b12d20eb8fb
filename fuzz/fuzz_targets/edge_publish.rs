//! A publisher's connection to the edge (ANNOUNCE with its SDP, SETUP with
//! `mode=record`, RECORD, interleaved media) as arbitrary bytes: the edge's publish
//! session never panics, and passes media on only on announced tracks' hub channels,
//! within size bounds, after RECORD (see `mediagate_edge::fuzzing`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mediagate_edge::fuzzing::publish_session(data);
});
