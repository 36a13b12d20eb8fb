//! The PROXY protocol v2 header (HAProxy's spec) that tells a back end the real client
//! address. SKELETON: the L4 slice fills it in.
