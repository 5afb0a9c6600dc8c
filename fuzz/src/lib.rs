//! Fuzz targets for redial, as plain library functions so that they build
//! and run under ordinary `cargo test` on the stable toolchain (the corpus
//! replay in `tests/replay_corpus.rs`); the `fuzz_targets/*.rs` binaries are
//! one-liners calling them.
//!
//! - [`transitions`]: any configuration and any input sequence; every
//!   invariant checked after every step; close, drain, one outcome per op.
//! - [`model`]: the same inputs fed to the core and to a small reference
//!   model ([`reference`]) over the configurations it covers; the
//!   observable outcomes must agree.

use arbitrary::{Arbitrary, Unstructured};

pub mod harness;
pub mod input;
pub mod invariants;
pub mod model;
pub mod reference;
pub mod transitions;

/// The `transitions` target: decodes `data` and runs it.
pub fn transitions(data: &[u8]) {
    if let Ok(input) = transitions::TransitionsInput::arbitrary(&mut Unstructured::new(data)) {
        transitions::run(&input);
    }
}

/// The `model` target: decodes `data` and runs it.
pub fn model(data: &[u8]) {
    if let Ok(input) = model::ModelInput::arbitrary(&mut Unstructured::new(data)) {
        model::run(&input);
    }
}
