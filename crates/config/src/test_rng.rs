//! A tiny deterministic generator for property-style tests (the crate has no proptest
//! dev-dependency): same seed, same cases, so a failure reproduces.

/// xorshift64* generator.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// A string of up to `max_len` bytes drawn from `alphabet` (ASCII).
    pub(crate) fn string_from(&mut self, alphabet: &[u8], max_len: u64) -> String {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| {
                let i = usize::try_from(self.below(alphabet.len() as u64)).unwrap_or(0);
                char::from(alphabet.get(i).copied().unwrap_or(b'a'))
            })
            .collect()
    }
}
