//! A window on every step of the machine a client's driver runs.

use crate::core::{ConnId, Instant, Machine, OpId, OpOptions, OpResult, Output, Role, State};

/// Watches the core as the client drives it: what was submitted, every
/// timer step, every output, and the machine after each step. The
/// simulator attaches the oracles of the `redial-check` crate (its
/// `Watcher`: the invariant checker and the policy contract) through it,
/// so the driver users run is checked against the same invariants as the
/// core — and so can yours.
///
/// The calls follow the checker's step protocol: a step is one input (a
/// submit, cancel, close, a connector's report or a timer) followed by
/// draining every output; [`on_submit`](Observer::on_submit) comes right
/// after a submit, [`on_timeout`](Observer::on_timeout) right before a
/// timer step, [`on_output`](Observer::on_output) for each output in order,
/// and [`after_step`](Observer::after_step) once the step is drained.
///
/// Runs under the client's lock, in whichever task fed the input (a
/// caller's, or the driver's): keep it cheap, never block in it, and never
/// call the client from it. `P` is the machine's payload: `Arc<C::Op>` for
/// a connector `C`.
pub trait Observer<P>: Send + 'static {
    /// An op was submitted as `op`, while the machine was in `before`.
    fn on_submit(&mut self, now: Instant, op: OpId, options: &OpOptions, before: State) {
        let _ = (now, op, options, before);
    }
    /// An op's answer (as the core will read it) is about to be fed.
    fn on_op_result(&mut self, now: Instant, op: OpId, conn: ConnId, result: &OpResult) {
        let _ = (now, op, conn, result);
    }
    /// A heartbeat's answer (as the core will read it) is about to be fed.
    fn on_heartbeat(&mut self, now: Instant, conn: ConnId, result: &OpResult) {
        let _ = (now, conn, result);
    }
    /// A successful connect, with the role the connector found, is about
    /// to be fed.
    fn on_connected(&mut self, now: Instant, conn: ConnId, role: Role) {
        let _ = (now, conn, role);
    }
    /// The application's revive is about to be fed, in state `before`.
    fn on_revive(&mut self, now: Instant, before: State) {
        let _ = (now, before);
    }
    /// A timer step at `now` is about to run.
    fn on_timeout(&mut self, now: Instant) {
        let _ = now;
    }
    /// The machine produced `output` (the driver carries it out next).
    fn on_output(&mut self, now: Instant, output: &Output<P>) {
        let _ = (now, output);
    }
    /// The step is drained.
    fn after_step(&mut self, machine: &Machine<P>) {
        let _ = machine;
    }
}
