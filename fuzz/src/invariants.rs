//! The invariant checks run after every step: the core's own
//! [`Checker`] (DESIGN.md's invariants 1–7 and the policy contract around
//! them, seen from the outside) plus a few cheap cross-checks of the
//! harness's bookkeeping. Invariant 8 (determinism) is checked by running
//! every input twice ([`crate::transitions::run`]).

use redial_core::check::Checker;
use redial_core::{Config, Instant, OpOptions, Output, State};

use crate::harness::Harness;
use crate::input::Step;

/// Everything checked during one run.
pub struct Invariants {
    checker: Checker,
    bound: Option<usize>,
    step_outputs: Vec<Output<u32>>,
}

impl Invariants {
    /// Starts watching a machine that was just created; `first` are the
    /// outputs it produced on creation.
    pub fn new(config: &Config, h: &Harness) -> Self {
        let mut inv = Invariants {
            checker: Checker::new(config),
            bound: config.buffer().bound(),
            step_outputs: Vec::new(),
        };
        for out in &h.log {
            inv.on_output(Instant::ZERO, out);
        }
        inv.after_step(h, usize::MAX, None);
        inv
    }

    /// Submission `i` just happened with `opts`, in state `before`.
    pub fn on_submit(&mut self, h: &Harness, i: usize, opts: &OpOptions, before: State) {
        self.checker.on_submit(h.m.now(), h.ops[i], opts, before);
    }

    /// A `handle_timeout(now)` is about to be fed.
    pub fn on_timeout(&mut self, now: Instant) {
        self.checker.on_timeout(now);
    }

    /// One output, in order.
    pub fn on_output(&mut self, now: Instant, out: &Output<u32>) {
        self.checker.on_output(now, out);
        self.step_outputs.push(out.clone());
    }

    /// After step `n` and its drain.
    pub fn after_step(&mut self, h: &Harness, n: usize, step: Option<&Step>) {
        self.checker.after_step(&h.m);
        let ctx = || {
            format!(
                "after step {n} ({step:?}) at {} (machine {}), state {}; outputs of the step:\n{:#?}",
                h.now,
                h.m.now(),
                h.m.state().name(),
                self.step_outputs
            )
        };
        if !self.checker.is_ok() {
            panic!(
                "invariant violation(s):\n  {}\n{}",
                violations(&self.checker),
                ctx()
            );
        }
        if let Some(max) = self.bound {
            assert!(
                h.m.buffered() <= max,
                "buffer holds {} > {max}; {}",
                h.m.buffered(),
                ctx()
            );
        }
        let open = h.outcomes.iter().filter(|n| **n == 0).count();
        assert_eq!(
            h.m.outstanding(),
            open,
            "outstanding count is off; {}",
            ctx()
        );
        self.step_outputs.clear();
    }

    /// After the final close and drain.
    pub fn finish(&mut self, h: &Harness) {
        self.checker.finish();
        if !self.checker.is_ok() {
            panic!(
                "invariant violation(s) at the end:\n  {}",
                violations(&self.checker)
            );
        }
        assert_eq!(h.m.state(), State::Closed);
    }
}

/// The checker's violations, one per line.
fn violations(checker: &Checker) -> String {
    let list: Vec<String> = checker.violations().iter().map(|v| v.to_string()).collect();
    list.join("\n  ")
}
