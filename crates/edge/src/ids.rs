//! Unguessable identifiers: RTSP session ids (RFC 7826 §18.49 asks for enough
//! randomness that a session cannot be hijacked by guessing) and Digest cnonces, from
//! the operating system's generator (getrandom(2)). What it does not: fall back to a
//! weaker source; without OS randomness no id is handed out.

/// `bytes` random bytes from the kernel, as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // getrandom(2) cannot fail on Linux ≥ 3.17 once the pool is seeded; if it somehow
    // does, refuse to hand out predictable ids.
    getrandom::fill(&mut buf).unwrap_or_else(|e| panic!("getrandom failed: {e}"));
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_of_the_right_length_and_differ() {
        let a = super::random_hex(8);
        let b = super::random_hex(8);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
