//! A small seeded PRNG for jitter (SplitMix64).
//!
//! The machine never touches OS entropy: the caller passes a seed, and the
//! same seed yields the same sequence on every platform.

/// SplitMix64: tiny, fast, statistically fine for jitter, fully deterministic.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value uniformly drawn from `lo..=hi` (returns `lo` when `hi <= lo`).
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant for jitter.
        let r = ((u128::from(self.next_u64()) * (u128::from(span) + 1)) >> 64) as u64;
        lo + r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.between(10, 20);
            assert_eq!(x, b.between(10, 20));
            assert!((10..=20).contains(&x));
        }
        assert_eq!(Rng::new(1).between(5, 5), 5);
        assert_eq!(Rng::new(1).between(9, 3), 9);
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
