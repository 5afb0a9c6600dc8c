//! [`Checked`]: a [`Machine`] with both oracles threaded through every
//! input, and [`Watcher`], the two oracles for a machine you do not own.

use core::ops::Deref;
use std::collections::VecDeque;

use redial_core::{
    Config, ConnId, ConnectFailure, Instant, LossKind, Machine, OpId, OpOptions, OpResult, Output,
    Role, State,
};

use crate::invariants::Checker;
use crate::reference::Contract;
use crate::violation::Violation;

/// The [`Checker`] (invariants) and the [`Contract`] (policy) together,
/// with one set of hooks. Use it where the machine is driven by code you
/// do not control (an adapter's driver, reporting through
/// `redial::Observer`); where you drive the machine yourself, use
/// [`Checked`], which calls these hooks for you.
#[derive(Clone, Debug)]
pub struct Watcher {
    checker: Checker,
    contract: Contract,
}

impl Watcher {
    /// Both oracles for a machine built with `config`.
    pub fn new(config: &Config) -> Self {
        Watcher {
            checker: Checker::new(config),
            contract: Contract::new(config),
        }
    }

    /// A submission: right after [`Machine::submit`], with the id it
    /// returned, the options and the state before the call.
    pub fn on_submit(&mut self, now: Instant, id: OpId, opts: &OpOptions, state_before: State) {
        self.checker.on_submit(now, id, opts, state_before);
        self.contract.on_submit(now, id, opts, state_before);
    }

    /// Right before [`Machine::handle_timeout`], with the same `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        self.checker.on_timeout(now);
    }

    /// Right before [`Machine::handle_connected_as`] (or
    /// `handle_connected`, with [`Role::Unknown`]).
    pub fn on_connected(&mut self, now: Instant, conn: ConnId, role: Role) {
        self.contract.on_connected_as(now, conn, role);
    }

    /// Right before [`Machine::handle_op_result`]: the answer, so that
    /// refusals (wrong server, pushback) are known to have not run.
    pub fn on_op_result(&mut self, now: Instant, op: OpId, conn: ConnId, result: &OpResult) {
        let here = self.checker.takes_answer(op, conn);
        let draining = self.checker.is_draining(conn);
        self.contract
            .on_op_result(now, op, conn, result, here, draining);
        self.checker.on_op_result(now, op, conn, result);
    }

    /// Right before [`Machine::revive`], with the state before it.
    pub fn on_revive(&mut self, now: Instant, state_before: State) {
        self.checker.on_revive(now, state_before);
    }

    /// One drained output, in order, at the machine time `now`.
    pub fn on_output<P>(&mut self, now: Instant, out: &Output<P>) {
        // The contract reads the checker's books as they were before this
        // output.
        self.contract.on_output(now, out, &self.checker);
        self.checker.on_output(now, out);
    }

    /// Once the machine is drained after an input.
    pub fn after_step<P>(&mut self, m: &Machine<P>) {
        self.checker.after_step(m);
        self.contract.after_step(m);
    }

    /// At the very end, after [`Machine::close`] and a last drain.
    pub fn finish(&mut self) {
        self.checker.finish();
        self.contract.finish();
    }

    /// Right before [`Machine::handle_heartbeat`].
    pub fn on_heartbeat(&mut self, now: Instant, conn: ConnId, result: &OpResult) {
        let _ = conn;
        self.contract.on_heartbeat(now, result);
    }

    /// Every breach so far: the invariants' first, then the contract's.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.checker
            .violations()
            .iter()
            .chain(self.contract.violations())
    }

    /// `true` while nothing was breached.
    pub fn is_ok(&self) -> bool {
        self.checker.is_ok() && self.contract.is_ok()
    }

    /// Panics with every violation (one per line) if there is any.
    pub fn assert_ok(&self) {
        if !self.is_ok() {
            let all: Vec<Violation> = self.violations().cloned().collect();
            crate::violation::assert_none(&all);
        }
    }

    /// The invariant checker.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// The policy contract.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }
}

/// A [`Machine`] whose every input and output goes past the [`Checker`]
/// and the [`Contract`]: drive it exactly like the machine (same inputs,
/// same drain rule: [`poll_output`](Self::poll_output) until `None`), and
/// read the machine's getters through it ([`Deref`]). Nothing can reach
/// the machine around the oracles.
///
/// ```
/// use redial_check::Checked;
/// use redial_core::{Config, Instant, OpOptions, OpResult, Output};
///
/// let mut m: Checked<&str> = Checked::new(Config::mongoose(), 1, Instant::ZERO);
/// let now = Instant::ZERO;
/// let Some(Output::Connect { conn, .. }) = m.poll_output() else { panic!() };
/// while m.poll_output().is_some() {}
/// m.handle_connected(now, conn);
/// while m.poll_output().is_some() {}
/// let op = m.submit(now, "GET k", OpOptions::new());
/// while let Some(out) = m.poll_output() {
///     if let Output::Dispatch { .. } = out { /* send it */ }
/// }
/// m.handle_op_result(now, op, conn, OpResult::Ok);
/// while m.poll_output().is_some() {}
/// m.close(now);
/// while m.poll_output().is_some() {}
/// m.finish();
/// m.assert_ok();
/// ```
#[derive(Debug)]
pub struct Checked<P> {
    machine: Machine<P>,
    watcher: Option<Watcher>,
    /// An input was fed and its drain has not ended yet.
    stepping: bool,
    /// Outputs of a step whose drain the caller cut short (another input
    /// came first): taken from the machine and shown to the oracles when
    /// the step had to end, handed out by `poll_output` before anything
    /// newer.
    held: VecDeque<Output<P>>,
}

impl<P> Checked<P> {
    /// A new machine ([`Machine::new`]) with both oracles attached.
    #[inline]
    pub fn new(config: Config, seed: u64, now: Instant) -> Self {
        let watcher = Watcher::new(&config);
        Checked {
            machine: Machine::new(config, seed, now),
            watcher: Some(watcher),
            stepping: true,
            held: VecDeque::new(),
        }
    }

    /// A new machine with no oracle attached: the same driving code, at
    /// the machine's own cost (for measuring what checking costs).
    #[inline]
    pub fn unchecked(config: Config, seed: u64, now: Instant) -> Self {
        Checked {
            machine: Machine::new(config, seed, now),
            watcher: None,
            stepping: true,
            held: VecDeque::new(),
        }
    }

    /// Whether the oracles are attached.
    #[inline]
    pub fn is_checked(&self) -> bool {
        self.watcher.is_some()
    }

    /// The oracles, when attached.
    #[inline]
    pub fn watcher(&self) -> Option<&Watcher> {
        self.watcher.as_ref()
    }

    /// Every breach so far (none when unchecked).
    #[inline]
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.watcher.iter().flat_map(Watcher::violations)
    }

    /// `true` while nothing was breached.
    #[inline]
    pub fn is_ok(&self) -> bool {
        self.watcher.as_ref().is_none_or(Watcher::is_ok)
    }

    /// Panics with every violation (one per line) if there is any.
    #[inline]
    pub fn assert_ok(&self) {
        if let Some(w) = &self.watcher {
            w.assert_ok();
        }
    }

    /// The end of the run: after [`close`](Self::close) and a last drain,
    /// every submitted op must have had exactly one outcome.
    #[inline]
    pub fn finish(&mut self) {
        self.end_step();
        if let Some(w) = &mut self.watcher {
            w.finish();
        }
    }

    /// The machine, for what `Deref` does not give (e.g. to move it out).
    /// Outputs held back from a drain that was cut short are dropped.
    #[inline]
    pub fn into_inner(self) -> Machine<P> {
        self.machine
    }

    /// Ends the current step. If its drain was cut short (the caller fed
    /// another input, or finished, before `poll_output` said `None`), the
    /// rest of its outputs are taken now — the oracles see the step whole,
    /// as the machine's drain rule defines it — and held for the caller.
    #[inline]
    fn end_step(&mut self) {
        if core::mem::take(&mut self.stepping) {
            if let Some(w) = &mut self.watcher {
                while let Some(o) = self.machine.poll_output() {
                    w.on_output(self.machine.now(), &o);
                    self.held.push_back(o);
                }
                w.after_step(&self.machine);
            }
        }
    }

    #[inline]
    fn begin_step(&mut self) {
        self.end_step();
        self.stepping = true;
    }

    /// The next output ([`Machine::poll_output`]), seen by the oracles; the
    /// `None` that ends a drain also ends the step for them. A drain may be
    /// cut short (several inputs, then one drain): the outputs come out in
    /// the same order either way.
    #[inline]
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        if let Some(o) = self.held.pop_front() {
            return Some(o);
        }
        let out = self.machine.poll_output();
        match &out {
            Some(o) => {
                if let Some(w) = &mut self.watcher {
                    w.on_output(self.machine.now(), o);
                }
            }
            None => self.end_step(),
        }
        out
    }

    /// [`Machine::handle_connected`].
    #[inline]
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        self.handle_connected_as(now, conn, Role::Unknown);
    }

    /// [`Machine::handle_connected_as`].
    #[inline]
    pub fn handle_connected_as(&mut self, now: Instant, conn: ConnId, role: Role) {
        self.begin_step();
        if let Some(w) = &mut self.watcher {
            w.on_connected(now, conn, role);
        }
        self.machine.handle_connected_as(now, conn, role);
    }

    /// [`Machine::revive`].
    #[inline]
    pub fn revive(&mut self, now: Instant) {
        self.begin_step();
        if let Some(w) = &mut self.watcher {
            w.on_revive(now, self.machine.state());
        }
        self.machine.revive(now);
    }

    /// [`Machine::handle_connect_failed`].
    #[inline]
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, why: ConnectFailure) {
        self.begin_step();
        self.machine.handle_connect_failed(now, conn, why);
    }

    /// [`Machine::handle_connection_lost`].
    #[inline]
    pub fn handle_connection_lost(&mut self, now: Instant, conn: ConnId, kind: LossKind) {
        self.begin_step();
        self.machine.handle_connection_lost(now, conn, kind);
    }

    /// [`Machine::handle_op_result`].
    #[inline]
    pub fn handle_op_result(&mut self, now: Instant, op: OpId, conn: ConnId, result: OpResult) {
        self.begin_step();
        if let Some(w) = &mut self.watcher {
            w.on_op_result(now, op, conn, &result);
        }
        self.machine.handle_op_result(now, op, conn, result);
    }

    /// [`Machine::handle_heartbeat`].
    #[inline]
    pub fn handle_heartbeat(&mut self, now: Instant, conn: ConnId, result: OpResult) {
        self.begin_step();
        if let Some(w) = &mut self.watcher {
            w.on_heartbeat(now, conn, &result);
        }
        self.machine.handle_heartbeat(now, conn, result);
    }

    /// [`Machine::handle_heartbeat_ok`].
    #[inline]
    pub fn handle_heartbeat_ok(&mut self, now: Instant, conn: ConnId) {
        self.handle_heartbeat(now, conn, OpResult::Ok);
    }

    /// [`Machine::handle_timeout`]; the oracles know it is a timer step.
    #[inline]
    pub fn handle_timeout(&mut self, now: Instant) {
        self.begin_step();
        if let Some(w) = &mut self.watcher {
            w.on_timeout(now);
        }
        self.machine.handle_timeout(now);
    }

    /// [`Machine::submit`].
    #[inline]
    pub fn submit(&mut self, now: Instant, payload: P, options: OpOptions) -> OpId {
        self.begin_step();
        let before = self.machine.state();
        let id = self.machine.submit(now, payload, options);
        if let Some(w) = &mut self.watcher {
            w.on_submit(self.machine.now(), id, &options, before);
        }
        id
    }

    /// [`Machine::cancel`].
    #[inline]
    pub fn cancel(&mut self, now: Instant, op: OpId) {
        self.begin_step();
        self.machine.cancel(now, op);
    }

    /// [`Machine::close`].
    #[inline]
    pub fn close(&mut self, now: Instant) {
        self.begin_step();
        self.machine.close(now);
    }
}

impl<P> Deref for Checked<P> {
    type Target = Machine<P>;

    fn deref(&self) -> &Machine<P> {
        &self.machine
    }
}
