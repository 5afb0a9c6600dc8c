//! Reconnect delays: the configured [`Backoff`] with its [`Jitter`],
//! drawn from the machine's seeded PRNG.

use core::time::Duration;

#[cfg(doc)]
use crate::config::Config;
use crate::config::{Backoff, Jitter};
use crate::rng::Rng;

/// Draws reconnect delays. Holds the PRNG (seeded by the caller, so the
/// same seed gives the same delays) and the previous delay (for
/// decorrelated jitter).
#[derive(Clone, Debug)]
pub(super) struct Delays {
    rng: Rng,
    prev_delay: Duration,
}

impl Delays {
    /// A fresh generator, as if the last delay had been `backoff`'s base.
    pub(super) fn new(seed: u64, backoff: Backoff) -> Self {
        Delays {
            rng: Rng::new(seed),
            prev_delay: backoff.base(),
        }
    }

    /// A connection came up: decorrelated jitter starts over from the base.
    pub(super) fn reset(&mut self, backoff: Backoff) {
        self.prev_delay = backoff.base();
    }

    /// The delay before reconnect attempt `n` (from 1).
    pub(super) fn jittered_delay(&mut self, backoff: Backoff, jitter: Jitter, n: u32) -> Duration {
        let d = backoff.nominal(n);
        let delay = match jitter {
            Jitter::None => d,
            Jitter::Full => self.draw(Duration::ZERO, d),
            Jitter::Equal => self.draw(d / 2, d),
            Jitter::Decorrelated => {
                let base = backoff.base();
                let hi = self
                    .prev_delay
                    .saturating_mul(3)
                    .min(backoff.cap())
                    .max(base);
                self.draw(base, hi)
            }
        };
        self.prev_delay = delay;
        delay
    }

    /// [`jittered_delay`](Self::jittered_delay) plus a uniform draw from
    /// `[0, extra)` when an extra jitter is configured.
    pub(super) fn with_extra(&mut self, delay: Duration, extra: Option<Duration>) -> Duration {
        match extra {
            Some(j) => delay.saturating_add(
                self.draw(Duration::ZERO, j.saturating_sub(Duration::from_micros(1))),
            ),
            None => delay,
        }
    }

    /// A delay drawn uniformly from `[lo, hi]` (whole microseconds, as
    /// [`draw`](Self::draw)); the previous delay of decorrelated jitter is
    /// left alone (only the backoff's own delays feed it).
    pub(super) fn uniform(&mut self, lo: Duration, hi: Duration) -> Duration {
        self.draw(lo, hi)
    }

    /// A delay drawn uniformly in whole microseconds from `[lo, hi]`
    /// (`lo <= hi`), so it always lies within
    /// [`Config::reconnect_delay_bounds`]. Fix: the bounds used to be
    /// truncated to microseconds first, so equal jitter on an odd number of
    /// microseconds (nominal 3 µs: bounds [1.5 µs, 3 µs]) could draw 1 µs,
    /// below its lower bound; the lower end is now rounded up. When no whole
    /// microsecond lies in the range (sub-microsecond spans), `lo` itself.
    fn draw(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_us = u64::try_from(lo.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX);
        let hi_us = crate::time::duration_micros(hi);
        if lo_us > hi_us {
            return lo;
        }
        Duration::from_micros(self.rng.between(lo_us, hi_us))
    }
}
