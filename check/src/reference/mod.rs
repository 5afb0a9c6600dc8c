//! The reference model of redial's policy: the one place, outside the
//! machine, where what a configuration *decides* is written down.
//!
//! - [`Contract`] holds for every configuration: what the configured
//!   policy promises around the invariants (fail fast, dispatch at once
//!   while connected, overflow accounting, no early deadline, only the
//!   events and outcomes a configuration can produce). [`Checked`](crate::Checked)
//!   runs it on every step next to the [`Checker`](crate::Checker).
//! - [`Model`] predicts, for the configurations it covers, every
//!   observable outcome exactly: connect attempts and events in order,
//!   dispatches in order, each op's completion with its kind and
//!   `maybe_executed`. It is written from DESIGN.md and the seeds, not
//!   from the machine (vectors instead of intrusive lists, indices
//!   instead of ids, one timer); the generator's `model` runs
//!   ([`harness::run`](crate::harness::run)) compare the two step by step.

mod contract;
mod model;

pub use contract::Contract;
pub use model::{Buffer, Model, ModelConfig, Outcome, Seen};
