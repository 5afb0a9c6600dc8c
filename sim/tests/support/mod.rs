//! Shared by the driver tests on the virtual runtime.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redial_sim::vrt::VirtualRuntime;

/// Runs the executor until virtual time `until`.
pub fn drive(rt: &VirtualRuntime, until: Duration) {
    rt.run_until(until);
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Counts live things (a guard in each: a `run` future, a connection).
pub struct Live(Arc<AtomicUsize>);

impl Live {
    /// One more alive, until the guard is dropped.
    pub fn new(n: &Arc<AtomicUsize>) -> Live {
        n.fetch_add(1, Ordering::SeqCst);
        Live(n.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
