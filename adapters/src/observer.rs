//! A window on every step of the machine a client's driver runs.

use crate::core::{
    ConnId, ConnectFailure, Instant, LossKind, Machine, OpId, OpOptions, OpResult, Output, Role,
    State,
};

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
/// call the client from it.
///
/// Every input the driver feeds the machine has its call, made under the
/// same lock and in the order the machine sees the inputs, so an observer
/// sees all the machine sees (the flight recorder relies on it):
/// [`on_submit`](Observer::on_submit) (right after the submit: its op id),
/// and, right before they are fed, [`on_cancel`](Observer::on_cancel),
/// [`on_close`](Observer::on_close), [`on_revive`](Observer::on_revive),
/// [`on_connected`](Observer::on_connected),
/// [`on_connect_failed`](Observer::on_connect_failed),
/// [`on_connection_lost`](Observer::on_connection_lost),
/// [`on_op_result`](Observer::on_op_result),
/// [`on_heartbeat`](Observer::on_heartbeat) and
/// [`on_timeout`](Observer::on_timeout). [`on_start`](Observer::on_start)
/// comes first of all, with the machine as built. `P` is the machine's payload: `Arc<C::Op>` for
/// a connector `C`.
pub trait Observer<P>: Send + 'static {
    /// The client was built: `machine` is the core as it starts (its
    /// config, its clock), `seed` its jitter seed. Before any output.
    fn on_start(&mut self, seed: u64, machine: &Machine<P>) {
        let _ = (seed, machine);
    }
    /// The application's cancel of `op` (its call dropped before the
    /// outcome) is about to be fed.
    fn on_cancel(&mut self, now: Instant, op: OpId) {
        let _ = (now, op);
    }
    /// A close (the application's, or the driver's when every handle is
    /// gone) is about to be fed.
    fn on_close(&mut self, now: Instant) {
        let _ = now;
    }
    /// A failed connect attempt, as the connector read its error, is about
    /// to be fed.
    fn on_connect_failed(&mut self, now: Instant, conn: ConnId, why: ConnectFailure) {
        let _ = (now, conn, why);
    }
    /// The loss of a connection (its peer closed it, reset it, or it timed
    /// out) is about to be fed.
    fn on_connection_lost(&mut self, now: Instant, conn: ConnId, kind: LossKind) {
        let _ = (now, conn, kind);
    }
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

/// Two observers, called in turn (the first, then the second) at every
/// step.
#[cfg(feature = "recorder")]
pub(crate) struct Both<P>(
    pub(crate) Box<dyn Observer<P>>,
    pub(crate) Box<dyn Observer<P>>,
);

#[cfg(feature = "recorder")]
impl<P: 'static> Observer<P> for Both<P> {
    fn on_start(&mut self, seed: u64, machine: &Machine<P>) {
        self.0.on_start(seed, machine);
        self.1.on_start(seed, machine);
    }
    fn on_submit(&mut self, now: Instant, op: OpId, options: &OpOptions, before: State) {
        self.0.on_submit(now, op, options, before);
        self.1.on_submit(now, op, options, before);
    }
    fn on_cancel(&mut self, now: Instant, op: OpId) {
        self.0.on_cancel(now, op);
        self.1.on_cancel(now, op);
    }
    fn on_close(&mut self, now: Instant) {
        self.0.on_close(now);
        self.1.on_close(now);
    }
    fn on_connect_failed(&mut self, now: Instant, conn: ConnId, why: ConnectFailure) {
        self.0.on_connect_failed(now, conn, why);
        self.1.on_connect_failed(now, conn, why);
    }
    fn on_connection_lost(&mut self, now: Instant, conn: ConnId, kind: LossKind) {
        self.0.on_connection_lost(now, conn, kind);
        self.1.on_connection_lost(now, conn, kind);
    }
    fn on_op_result(&mut self, now: Instant, op: OpId, conn: ConnId, result: &OpResult) {
        self.0.on_op_result(now, op, conn, result);
        self.1.on_op_result(now, op, conn, result);
    }
    fn on_heartbeat(&mut self, now: Instant, conn: ConnId, result: &OpResult) {
        self.0.on_heartbeat(now, conn, result);
        self.1.on_heartbeat(now, conn, result);
    }
    fn on_connected(&mut self, now: Instant, conn: ConnId, role: Role) {
        self.0.on_connected(now, conn, role);
        self.1.on_connected(now, conn, role);
    }
    fn on_revive(&mut self, now: Instant, before: State) {
        self.0.on_revive(now, before);
        self.1.on_revive(now, before);
    }
    fn on_timeout(&mut self, now: Instant) {
        self.0.on_timeout(now);
        self.1.on_timeout(now);
    }
    fn on_output(&mut self, now: Instant, output: &Output<P>) {
        self.0.on_output(now, output);
        self.1.on_output(now, output);
    }
    fn after_step(&mut self, machine: &Machine<P>) {
        self.0.after_step(machine);
        self.1.after_step(machine);
    }
}
