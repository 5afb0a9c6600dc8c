//! The `transitions` target: any configuration, any input sequence; every
//! invariant of DESIGN.md checked after every step.

use arbitrary::{Arbitrary, Unstructured};
use redial_core::{Machine, Output};

use crate::harness::{Applied, Harness};
use crate::input::{FuzzConfig, MAX_STEPS, Step};
use crate::invariants::Invariants;

/// A configuration and the steps to feed.
#[derive(Clone, Debug)]
pub struct TransitionsInput {
    /// The knobs (maybe invalid).
    pub config: FuzzConfig,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

impl<'a> Arbitrary<'a> for TransitionsInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(TransitionsInput {
            config: FuzzConfig::arbitrary(u)?,
            steps: crate::input::steps(u)?,
        })
    }
}

/// Runs one input; panics on any invariant violation.
pub fn run(input: &TransitionsInput) {
    // `build()` must never panic, whatever the values; refused configs end the run.
    let Ok(config) = input.config.builder().build() else {
        return;
    };
    let steps = &input.steps[..input.steps.len().min(MAX_STEPS)];
    let first = run_once(&config, input.config.seed, steps);
    // Invariant 8: same seed + same inputs => same outputs.
    let second = run_once(&config, input.config.seed, steps);
    assert!(
        first == second,
        "same seed and inputs gave different outputs:\n{first:?}\n{second:?}"
    );
}

fn run_once(config: &redial_core::Config, seed: u64, steps: &[Step]) -> Vec<Output<u32>> {
    let mut h = Harness::new(Machine::new(
        config.clone(),
        seed,
        redial_core::Instant::ZERO,
    ));
    let mut inv = Invariants::new(config, &h);
    for (n, step) in steps.iter().enumerate() {
        let before = h.m.state();
        if let Step::Wait(j) = step {
            inv.on_timeout(h.jump_target(*j));
        }
        let applied = h.apply(*step);
        if let (Step::Submit(o), Applied::Submit(i)) = (step, applied) {
            inv.on_submit(&h, i, &o.options(), before);
        }
        let now = h.m.now();
        h.drain(|out| inv.on_output(now, out));
        inv.after_step(&h, n, Some(step));
    }
    // Close and drain: every op gets exactly one outcome.
    h.m.close(h.now);
    let now = h.m.now();
    h.drain(|out| inv.on_output(now, out));
    inv.after_step(&h, steps.len(), Some(&Step::Close));
    inv.finish(&h);
    for (i, n) in h.outcomes.iter().enumerate() {
        assert!(
            *n == 1,
            "op {i} ({}) got {n} outcomes after close",
            h.ops[i]
        );
    }
    assert_eq!(h.m.outstanding(), 0, "ops outstanding after close");
    h.log
}
