//! Runs over any configuration: every invariant and the policy contract
//! checked after every step; determinism across two runs.

use arbitrary::{Arbitrary, Unstructured};
use redial_core::{Instant, Output, State};

use crate::Checked;
use crate::harness::Harness;
use crate::harness::input::{FuzzConfig, MAX_STEPS, Step};

/// A configuration and the steps to feed.
#[derive(Clone, Debug)]
pub struct TransitionsInput {
    /// The knobs (maybe invalid).
    pub config: FuzzConfig,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

impl<'a> Arbitrary<'a> for TransitionsInput {
    /// Seven times in eight the configuration is made valid
    /// ([`FuzzConfig::sanitize`]); otherwise it is raw, so `build()` sees
    /// garbage too.
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let raw = u8::arbitrary(u)? % 8 == 0;
        let mut config = FuzzConfig::arbitrary(u)?;
        if !raw {
            config.sanitize();
        }
        Ok(TransitionsInput {
            config,
            steps: crate::harness::input::steps(u)?,
        })
    }
}

/// Runs one input; panics on any violation.
pub(crate) fn run(input: &TransitionsInput) {
    // `build()` must never panic, whatever the values; refused configs end the run.
    let Ok(config) = input.config.builder().build() else {
        return;
    };
    run_steps(&config, input.config.seed, &input.steps);
}

/// Runs `steps` (at most [`MAX_STEPS`]) twice on `config`: both oracles on
/// every step, one outcome per op after close, the same outputs both times.
pub(crate) fn run_steps(config: &redial_core::Config, seed: u64, steps: &[Step]) {
    let steps = &steps[..steps.len().min(MAX_STEPS)];
    let first = run_once(config, seed, steps);
    // Invariant 8: same seed + same inputs => same outputs.
    let second = run_once(config, seed, steps);
    assert!(
        first == second,
        "same seed and inputs gave different outputs:\n{first:?}\n{second:?}"
    );
}

fn run_once(config: &redial_core::Config, seed: u64, steps: &[Step]) -> Vec<Output<u32>> {
    let mut h = Harness::new(Checked::new(config.clone(), seed, Instant::ZERO));
    let mut step_outputs = Vec::new();
    let check = |h: &Harness, n: usize, step: &Step, outs: &mut Vec<Output<u32>>| {
        if !h.m.is_ok() {
            let list: Vec<String> = h.m.violations().map(|v| v.to_string()).collect();
            panic!(
                "violation(s):\n  {}\nafter step {n} ({step:?}) at {} (machine {}), state {}; outputs of the step:\n{outs:#?}\nconfig: {config:?}\nsteps so far: {:#?}",
                list.join("\n  "),
                h.now,
                h.m.now(),
                h.m.state().name(),
                &steps[..(n + 1).min(steps.len())],
            );
        }
        outs.clear();
    };
    for (n, step) in steps.iter().enumerate() {
        h.apply(*step);
        h.drain(|out| step_outputs.push(out.clone()));
        check(&h, n, step, &mut step_outputs);
    }
    // Close and drain: every op gets exactly one outcome.
    h.m.close(h.now);
    h.drain(|out| step_outputs.push(out.clone()));
    h.m.finish();
    check(&h, steps.len(), &Step::Close, &mut step_outputs);
    assert_eq!(h.m.state(), State::Closed);
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
