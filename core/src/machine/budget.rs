//! The retry budget: a token bucket shared by all ops.
//!
//! Every op lost in flight costs a token (retried or not); every success
//! refunds a fraction of one. A retry is allowed only while the bucket is
//! more than half full. Counted in 1/1000 token so the bucket never drifts.

/// The retry budget's state.
#[derive(Clone, Copy, Debug)]
pub(super) struct TokenBucket {
    /// Capacity and refund per success, in 1/1000 token (`None`: no budget).
    milli: Option<(u64, u64)>,
    /// Retry budget tokens, in 1/1000 token.
    tokens: u64,
}

impl TokenBucket {
    /// A full bucket for the configured budget (`Config::budget_milli`).
    pub(super) fn new(milli: Option<(u64, u64)>) -> Self {
        TokenBucket {
            milli,
            tokens: milli.map_or(0, |(cap, _)| cap),
        }
    }

    /// Whole tokens left, if a budget is configured.
    pub(super) fn whole_tokens(&self) -> Option<u64> {
        self.milli.map(|_| self.tokens / 1000)
    }

    /// An op succeeded: refund part of a token, up to the capacity.
    pub(super) fn refund(&mut self) {
        if let Some((cap, refund)) = self.milli {
            self.tokens = (self.tokens + refund).min(cap);
        }
    }

    /// An op was lost in flight: it costs a whole token.
    pub(super) fn charge(&mut self) {
        if self.milli.is_some() {
            self.tokens = self.tokens.saturating_sub(1000);
        }
    }

    /// Whether a lost op may be retried: always without a budget, else
    /// while more than half the capacity is left.
    pub(super) fn allows_retry(&self) -> bool {
        match self.milli {
            None => true,
            Some((cap, _)) => self.tokens * 2 > cap,
        }
    }
}
