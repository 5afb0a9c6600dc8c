//! The [`Checker`]: DESIGN.md's invariants, watched from the outside.
//!
//! The checker sees only what a driver sees: what was submitted (and in
//! which state), every [`Output`] drained, and the machine's public getters
//! after each step. From that it reports every breach of the numbered
//! invariants of `DESIGN.md` as a [`Violation`] — it never panics on its own
//! (use [`Checker::assert_ok`] for that) and never changes the machine. It
//! checks the invariants and nothing else: what the configured policy
//! decides beyond them (fail fast, overflow accounting, which events a
//! configuration can produce…) is the [`reference`](crate::reference)
//! model's question.
//!
//! Its cost per step does not depend on the number of ops open: every
//! lookup is a B-tree access (ops by id, ops in flight by connection, ops by
//! deadline), and memory is proportional to the ops open at once.
//!
//! Most users want [`Checked`](crate::Checked), which threads the checker
//! (and the reference contract) through every input of a machine. For a
//! machine you do not own — the adapter's driver, say — feed the hooks
//! yourself. A *step* is one input (a `handle_*` call, `submit`, `cancel`
//! or `close`) followed by draining every output. For each step:
//!
//! 1. if the input is a submit, call [`Checker::on_submit`] right after
//!    [`Machine::submit`] with the state the machine was in *before* it;
//!    if it is an op's answer, call [`Checker::on_op_result`] right before
//!    [`Machine::handle_op_result`]; if it is a revive,
//!    [`Checker::on_revive`] right before [`Machine::revive`];
//! 2. call [`Checker::on_output`] for every drained output, in order;
//! 3. call [`Checker::after_step`] once the machine is drained;
//! 4. optionally, call [`Checker::on_timeout`] right before
//!    [`Machine::handle_timeout`], so the checker also knows that nothing
//!    due may be left behind after that step;
//!
//! and at the very end, after [`Machine::close`] and a last drain, call
//! [`Checker::finish`]. Then [`Checker::violations`] is empty if and only if
//! nothing was breached.
//!
//! ## What it checks
//!
//! Each [`ViolationKind`] names the invariant it breaches:
//!
//! 1. exactly one outcome per op, and `maybe_executed` consistent with the
//!    dispatches seen;
//! 2. dispatch only while connected, on the current connection, and never
//!    on one that answered "wrong server"; the connection the events
//!    announce is the machine's;
//! 3. the buffer bound, and no buffered op left while connected;
//! 4. at most one dispatch for a non-retryable op, at most its attempt
//!    limit for a retryable one (refusals — wrong server, pushback — which
//!    certainly did not run, are not counted);
//! 5. per connection, ops are dispatched in submission order;
//! 6. terminal states: no connect, no output, every new op fails at once
//!    with the terminal kind; no reconnect after a loss with auto-reconnect
//!    off;
//! 7. connect attempts and their spacing: delays within
//!    [`Config::reconnect_delay_bounds`] (the bounds the configuration
//!    states; the exact delay is the reference model's business) or, under
//!    [`QuickReconnect`], 0 after the loss of a connection up at least
//!    [`QuickReconnect::MIN_UPTIME`], `[probe / 2, probe]` after a refusal
//!    within `probe_for` of the loss, the backoff's bounds (counted over
//!    these attempts only) otherwise; connects
//!    not before their announced time, attempts numbered and within
//!    `reconnect_tries`, a give-up only when the policy allows one, and a
//!    timer armed for every due reconnect (with [`Checker::on_timeout`]:
//!    none left late);
//! 8. determinism is a property of whole runs: tests compare two runs'
//!    output logs; the checker does not see it;
//! 9. an op refused on every dispatch (wrong server, pushback; seen with
//!    [`Checker::on_op_result`]) never claims it may have run, and a wrong
//!    server is left only once nothing is in flight on it;
//! 10. with [`Checker::on_timeout`], no op is left open past its deadline
//!     after a timer step; and waiting to reconnect, no op stays buffered
//!     whose deadline comes before the next attempt (it fails at once with
//!     `deadline_unreachable`), unless `fail_unreachable_deadlines` is off.

use std::collections::{BTreeMap, BTreeSet};

use core::time::Duration;
use redial_core::{
    Config, ConnId, ConnectFailure, DisconnectReason, Done, ErrorKind, Event, GiveUp,
    InitialConnect, Instant, Machine, OpError, OpId, OpOptions, OpResult, Output, QuickReconnect,
    State, Tries,
};

use crate::table::OpTable;
use crate::violation::{Found, Violation, ViolationKind, ViolationKind as K};

/// What the checker knows about one open op.
#[derive(Clone, Debug)]
struct Track {
    /// Submission order.
    seq: u64,
    retryable: bool,
    max_attempts: u32,
    deadline: Option<Instant>,
    dispatches: u32,
    /// Dispatches the server refused (wrong server, pushback): certainly
    /// not run.
    refused: u32,
    in_flight: Option<ConnId>,
    /// When it last entered the buffer (submitted, or back from the wire).
    since: Instant,
    /// While buffered with a buffer timeout: when its wait ends.
    buffer_due: Option<Instant>,
    /// Its command timeout (per op, or the config's).
    command_timeout: Option<Duration>,
    /// When it was last dispatched.
    sent: Option<Instant>,
}

/// The ops dispatched on one connection: how many are still in flight on
/// it, and their ids — with stale entries (ops completed or moved since),
/// dropped lazily, so a dispatch and a completion cost no allocation.
#[derive(Clone, Debug, Default)]
struct Lane {
    live: usize,
    ids: Vec<OpId>,
}

/// An op that was in flight on a connection that ended during this step.
#[derive(Clone, Copy, Debug)]
struct Lost {
    op: OpId,
    conn: ConnId,
    reason: DisconnectReason,
}

/// Watches a machine from the outside and records breaches of DESIGN.md's
/// invariants. See the [module docs](self) for the calling contract.
#[derive(Clone, Debug)]
pub struct Checker {
    cfg: Config,
    found: Found,
    now: Instant,

    // ops
    next_seq: u64,
    /// Open ops, indexed like the machine's slab (O(1) per lookup; memory
    /// proportional to the most ops outstanding at once), with the ids
    /// that already finished.
    open: OpTable<Track>,
    /// Open ops in flight, by connection (kept with `Track::in_flight`), so
    /// a loss finds its ops without a scan of every open op.
    in_flight_on: BTreeMap<ConnId, Lane>,
    /// Open ops with a deadline, by deadline.
    by_deadline: BTreeSet<(Instant, OpId)>,
    /// Buffered ops by the end of their buffer wait (with a
    /// `buffer_timeout` configured), kept with `Track::buffer_due`.
    by_buffer_wait: BTreeSet<(Instant, OpId)>,
    submitted: u64,

    // connection life
    current: Option<(ConnId, usize)>,
    attempt: Option<(ConnId, usize)>,
    last_conn_id: Option<ConnId>,
    connects: u64,
    ever_connected: bool,
    /// A loss happened with auto-reconnect off: no connect may follow.
    down: bool,
    /// `Failed` or `Closed`, once seen.
    terminal: Option<State>,
    /// The announced reconnect: (due, endpoint).
    pending_reconnect: Option<(Instant, usize)>,
    /// Reconnect attempts announced since the last connection or loss.
    attempt_no: u32,
    /// `attempt_no` when the current connection came up: a wrong-server
    /// loss resumes counting from it (that connection was a failed attempt).
    attempt_before_connect: u32,
    /// Submission sequence of the last op dispatched on the current connection.
    last_seq: Option<u64>,

    // per step
    /// The current connection, closed by an `Output::Close` this step and
    /// waiting for its `Disconnected`/`Closed` event.
    just_closed: Option<(ConnId, usize)>,
    step_lost: Vec<Lost>,
    /// Ops submitted in a terminal state: they must fail this step, with
    /// this kind (invariant 6).
    must_complete: Vec<(OpId, ErrorKind)>,
    /// This step is a `handle_timeout` (see [`Checker::on_timeout`]).
    timeout_step: bool,
    /// The current connection answered "wrong server": nothing more may be
    /// dispatched on it.
    draining: Option<ConnId>,
    /// A give-up with a cool-down happened: the `reconnecting` that
    /// announces the pause may come (attempt 1, the pause as its delay).
    cooling: Option<core::time::Duration>,
    /// Ops may fail with `reconnect_failed` in this step (the give-up).
    gave_up_step: bool,
    /// [`Checker::on_revive`] was called: the next connect needs no
    /// `reconnecting` before it.
    revived: bool,
    /// An op succeeded on the current connection (a wrong-server loss of
    /// it then starts a fresh reconnect count).
    served: bool,
    /// Before the first connection, every failed attempt found a secondary.
    only_not_primary: bool,

    /// `reconnected` for this connection was seen and the configuration
    /// echoes it with `connected` (mongoose), which must follow at once.
    echo_due: Option<ConnId>,

    // quick reconnects (see `expected_delay`)
    /// When the last connection was lost (or the machine started, or was
    /// revived).
    lost_at: Option<Instant>,
    /// When the current connection came up.
    up_since: Option<Instant>,
    /// A loss was announced and its `reconnecting` has not come yet:
    /// whether the lost connection was young (or a failed attempt).
    loss_pending: Option<bool>,
    /// Reconnects since the loss whose delay the backoff paced, and its
    /// value when the current connection came up.
    paced: u32,
    paced_before_connect: u32,
}

impl Checker {
    /// A checker for a machine built with `config` (a clone is kept).
    pub fn new(config: &Config) -> Self {
        Checker {
            cfg: config.clone(),
            found: Found::default(),
            now: Instant::ZERO,
            next_seq: 0,
            open: OpTable::new(),
            in_flight_on: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            by_buffer_wait: BTreeSet::new(),
            submitted: 0,
            current: None,
            attempt: None,
            last_conn_id: None,
            connects: 0,
            ever_connected: false,
            down: false,
            terminal: None,
            pending_reconnect: None,
            attempt_no: 0,
            attempt_before_connect: 0,
            last_seq: None,
            just_closed: None,
            step_lost: Vec::new(),
            must_complete: Vec::new(),
            draining: None,
            cooling: None,
            gave_up_step: false,
            revived: false,
            served: false,
            only_not_primary: true,
            timeout_step: false,
            echo_due: None,
            lost_at: None,
            up_since: None,
            loss_pending: None,
            paced: 0,
            paced_before_connect: 0,
        }
    }

    /// Every breach seen so far, in the order observed.
    pub fn violations(&self) -> &[Violation] {
        &self.found.list
    }

    /// `true` while nothing was breached.
    pub fn is_ok(&self) -> bool {
        self.found.list.is_empty()
    }

    /// Panics with every violation (one per line) if there is any.
    pub fn assert_ok(&self) {
        crate::violation::assert_none(&self.found.list);
    }

    /// Ops submitted so far.
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Ops submitted that have no outcome yet.
    pub fn open_ops(&self) -> usize {
        self.open.len()
    }

    // ----- what the contract asks ---------------------------------------------

    /// The deadline of open op `id` (`None`: not open; `Some(None)`: no deadline).
    pub(crate) fn deadline_of(&self, id: OpId) -> Option<Option<Instant>> {
        self.open.get(id).map(|t| t.deadline)
    }

    /// When open op `id` last entered the buffer (`None`: not open).
    pub(crate) fn buffered_since(&self, id: OpId) -> Option<Instant> {
        self.open.get(id).map(|t| t.since)
    }

    /// When open op `id`'s command timeout ends on its current dispatch
    /// (`None`: not open, not in flight, or no command timeout).
    pub(crate) fn command_due(&self, id: OpId) -> Option<Instant> {
        self.open.get(id).and_then(|t| {
            t.in_flight?;
            Some(t.sent?.saturating_add(t.command_timeout?))
        })
    }

    /// Open op `id`'s deadline and command timeout (`None`: not open).
    pub(crate) fn limits_of(&self, id: OpId) -> Option<(Option<Instant>, Option<Duration>)> {
        self.open.get(id).map(|t| (t.deadline, t.command_timeout))
    }

    /// The current connection, if any.
    pub(crate) fn current_conn(&self) -> Option<ConnId> {
        self.current.map(|(c, _)| c)
    }

    /// When the announced reconnect attempt is due, while one is pending.
    pub(crate) fn next_reconnect(&self) -> Option<Instant> {
        self.pending_reconnect.map(|(due, _)| due)
    }

    /// Whether open op `id` was dispatched (`None`: not open).
    pub(crate) fn was_dispatched(&self, id: OpId) -> Option<bool> {
        self.open.get(id).map(|t| t.dispatches > 0)
    }

    /// Whether `op` is in flight on `conn`, the current connection (an
    /// answer about it is one the machine takes).
    pub(crate) fn takes_answer(&self, op: OpId, conn: ConnId) -> bool {
        self.current.is_some_and(|(c, _)| c == conn) && self.is_on(op, conn)
    }

    /// Whether `conn` answered "wrong server".
    pub(crate) fn is_draining(&self, conn: ConnId) -> bool {
        self.draining == Some(conn)
    }

    /// Whether a `connected` event was seen.
    pub(crate) fn ever_connected(&self) -> bool {
        self.ever_connected
    }

    /// Ops in flight on `conn`.
    pub(crate) fn in_flight_on(&self, conn: ConnId) -> usize {
        self.in_flight_on.get(&conn).map_or(0, |l| l.live)
    }

    // ----- conveniences for the unit tests ------------------------------------

    #[cfg(test)]
    fn submit<P>(
        &mut self,
        m: &mut Machine<P>,
        now: Instant,
        payload: P,
        options: OpOptions,
    ) -> OpId {
        let before = m.state();
        let id = m.submit(now, payload, options);
        self.on_submit(m.now(), id, &options, before);
        id
    }

    #[cfg(test)]
    fn drain<P>(&mut self, m: &mut Machine<P>) -> Vec<Output<P>> {
        let now = m.now();
        let mut outs = Vec::new();
        while let Some(out) = m.poll_output() {
            self.on_output(now, &out);
            outs.push(out);
        }
        self.after_step(m);
        outs
    }

    // ----- hooks --------------------------------------------------------------

    /// Records a submission. Call right after [`Machine::submit`] with
    /// [`Machine::now`] as it is after the call (not the time you passed:
    /// the machine never goes back in time, and deadlines count from its
    /// clock), the id it returned, the options given and the state before
    /// the call.
    pub fn on_submit(&mut self, now: Instant, id: OpId, opts: &OpOptions, state_before: State) {
        self.tick(now);
        self.submitted += 1;
        if self.open.contains(id) || self.open.is_finished(id) {
            self.flag(K::DuplicateId, format!("{id} was handed out twice"));
            return;
        }
        let retryable = opts.is_retryable(&self.cfg);
        let max_attempts = if retryable {
            opts.max_attempts
                .unwrap_or(self.cfg.max_op_attempts())
                .max(1)
        } else {
            1
        };
        let deadline = opts.deadline.or(self.cfg.op_deadline()).map(|d| now + d);
        if let Some(d) = deadline {
            self.by_deadline.insert((d, id));
        }
        let fresh = self.open.insert(
            id,
            Track {
                seq: self.next_seq,
                retryable,
                max_attempts,
                deadline,
                dispatches: 0,
                refused: 0,
                in_flight: None,
                since: now,
                buffer_due: None,
                command_timeout: opts.command_timeout.or(self.cfg.command_timeout()),
                sent: None,
            },
        );
        if !fresh {
            self.flag(
                K::DuplicateId,
                format!("{id} was handed out while its slab slot still holds an open op"),
            );
            return;
        }
        self.next_seq += 1;
        match state_before {
            State::Failed => self.must_complete.push((id, ErrorKind::TopologyDestroyed)),
            State::Closed => self.must_complete.push((id, ErrorKind::Closed)),
            State::Connected => {}
            _ => self.buffered(id, now),
        }
    }

    /// Records an op's answer, right before it is fed with
    /// [`Machine::handle_op_result`]: a refusal (wrong server, pushback)
    /// means that dispatch certainly did not run (invariant 9) and takes
    /// the op off the wire; after a wrong-server answer nothing more may be
    /// dispatched on that connection (invariant 2). Answers the machine
    /// ignores (stale ids, other connections) are ignored here too.
    pub fn on_op_result(&mut self, now: Instant, op: OpId, conn: ConnId, result: &OpResult) {
        self.tick(now);
        let current = self.current.is_some_and(|(c, _)| c == conn);
        let here = self.open.get(op).is_some_and(|t| t.in_flight == Some(conn));
        if !current || !here {
            return;
        }
        match result {
            OpResult::WrongServer => {
                self.refuse(op, conn);
                self.draining = Some(conn);
            }
            OpResult::Pushback { .. } => self.refuse(op, conn),
            _ => {}
        }
    }

    fn refuse(&mut self, op: OpId, conn: ConnId) {
        if let Some(t) = self.open.get_mut(op) {
            t.refused = t.refused.saturating_add(1);
        }
        self.set_in_flight(op, None);
        // The refused op is back in the buffer, ahead of later ones: the
        // order of dispatches on this connection starts again from it.
        if self.current.is_some_and(|(c, _)| c == conn) {
            self.last_seq = None;
        }
    }

    /// Records [`Machine::revive`], right before it is fed: a terminal
    /// `Failed` state (or `Down`, or a wait) ends, and a connect may follow
    /// at once without a `reconnecting` before it.
    pub fn on_revive(&mut self, now: Instant, state_before: State) {
        self.tick(now);
        if matches!(state_before, State::Failed | State::Down | State::Backoff) {
            self.terminal = None;
            self.down = false;
            self.pending_reconnect = None;
            self.attempt_no = 0;
            self.cooling = None;
            self.revived = true;
            // The machine's clock, which never goes back.
            self.lost_at = Some(self.now);
            self.loss_pending = None;
            self.paced = 0;
        }
    }

    /// Optional: call right before [`Machine::handle_timeout`] (with the same
    /// `now`). The step is then known to be a timer step, and
    /// [`after_step`](Self::after_step) also checks that every timer due by
    /// the machine's time fired in it: no announced reconnect
    /// (`reconnect_late`, invariant 7) and no op deadline (`deadline_late`)
    /// is left overdue.
    pub fn on_timeout(&mut self, now: Instant) {
        self.tick(now);
        self.timeout_step = true;
    }

    /// Records one drained output, at the machine time `now`.
    pub fn on_output<P>(&mut self, now: Instant, out: &Output<P>) {
        self.tick(now);
        match out {
            Output::Connect { conn, endpoint, .. } => self.on_connect(*conn, *endpoint),
            Output::Close { conn } => {
                if self.current.is_some_and(|(c, _)| c == *conn) {
                    self.just_closed = self.current.take();
                }
                if self.attempt.is_some_and(|(c, _)| c == *conn) {
                    self.attempt = None;
                }
            }
            Output::Dispatch {
                op, conn, endpoint, ..
            } => self.on_dispatch(*op, *conn, *endpoint),
            Output::Heartbeat { conn } => {
                if self.terminal.is_some() {
                    self.flag(K::OutputAfterTerminal, format!("heartbeat on {conn}"));
                }
                if self.current.is_none_or(|(c, _)| c != *conn) {
                    self.flag(
                        K::HeartbeatNotCurrent,
                        format!("heartbeat on {conn}, current {:?}", self.current),
                    );
                }
            }
            Output::Complete(c) => {
                let result = c.result.as_ref().map(|d| *d).map_err(|e| *e);
                self.on_complete(c.id, result);
            }
            Output::Event(e) => self.on_event(*e),
        }
    }

    /// Checks the machine after a step (one input, everything drained):
    /// buffer bound, outstanding counts, ops that had to complete or be
    /// dispatched within the step, lost ops that must not be re-sent, and
    /// that a timer is armed for every due reconnect and op deadline.
    pub fn after_step<P>(&mut self, m: &Machine<P>) {
        self.tick(m.now());
        let now = self.now;

        if let Some((c, _)) = self.just_closed.take() {
            self.flag(
                K::CloseWithoutEvent,
                format!("{c} was closed but neither disconnected nor closed was emitted"),
            );
        }

        // 3. buffer bound and flush.
        if let Some(max) = self.cfg.buffer().bound() {
            if m.buffered() > max {
                self.flag(
                    K::BufferBound,
                    format!("{} ops buffered, bound {max}", m.buffered()),
                );
            }
        }
        if m.state() == State::Connected && m.buffered() > 0 {
            self.flag(
                K::BufferNotFlushed,
                format!("{} ops still buffered while connected", m.buffered()),
            );
        }

        // 1. counts agree.
        if m.outstanding() != self.open.len() || m.buffered() + m.in_flight() != m.outstanding() {
            self.flag(
                K::OutstandingMismatch,
                format!(
                    "machine: {} outstanding ({} buffered + {} in flight); checker: {} open",
                    m.outstanding(),
                    m.buffered(),
                    m.in_flight(),
                    self.open.len()
                ),
            );
        }
        let cur = self.current.map(|(c, _)| c);
        let in_flight_here = cur
            .and_then(|c| self.in_flight_on.get(&c))
            .map_or(0, |l| l.live);
        let stranded = self
            .in_flight_on
            .iter()
            .any(|(c, l)| Some(*c) != cur && l.live > 0);
        if in_flight_here != m.in_flight() || stranded {
            let dead: Vec<ConnId> = self
                .in_flight_on
                .keys()
                .copied()
                .filter(|c| Some(*c) != cur)
                .collect();
            let stranded: Vec<OpId> = dead.into_iter().flat_map(|c| self.on_lane(c)).collect();
            self.flag(K::InFlightMismatch,
                format!(
                    "machine: {} in flight; checker: {in_flight_here} on the current connection, {stranded:?} on a dead one",
                    m.in_flight()
                ),
            );
        }
        if m.connection().map(|(c, _)| c) != cur {
            self.flag(
                K::ConnectionMismatch,
                format!(
                    "machine connection {:?}, events say {:?}",
                    m.connection(),
                    self.current
                ),
            );
        }

        // 6. terminal states.
        if m.state().is_terminal() != self.terminal.is_some()
            || (self.terminal.is_some() && Some(m.state()) != self.terminal)
        {
            self.flag(
                K::StateMismatch,
                format!(
                    "machine state {}, terminal events say {:?}",
                    m.state().name(),
                    self.terminal
                ),
            );
        }
        if m.state().is_terminal() && (m.outstanding() > 0 || !self.open.is_empty()) {
            self.flag(
                K::TerminalWithOutstanding,
                format!(
                    "state {} with {} ops outstanding",
                    m.state().name(),
                    self.open.len().max(m.outstanding())
                ),
            );
        }
        // 6. ops submitted in a terminal state failed within the step.
        // (The list is taken and put back emptied: its capacity is reused
        // from step to step.)
        let mut must_complete = core::mem::take(&mut self.must_complete);
        for (id, _) in must_complete.drain(..) {
            if self.open.contains(id) {
                self.flag(
                    K::TerminalOutcome,
                    format!("{id} was kept instead of failing at once"),
                );
            }
        }
        self.must_complete = must_complete;
        self.gave_up_step = false;

        // 4. ops lost in flight that survived the step (re-queued).
        let lost = core::mem::take(&mut self.step_lost);
        for l in &lost {
            let Some(t) = self.open.get(l.op) else {
                continue;
            };
            let (retryable, dispatches, refused, max) =
                (t.retryable, t.dispatches, t.refused, t.max_attempts);
            if !retryable {
                self.flag(
                    K::ResentAfterLoss,
                    format!(
                        "non-retryable {} lost in flight on {} ({}) was kept instead of failing",
                        l.op,
                        l.conn,
                        l.reason.name()
                    ),
                );
            } else if dispatches.saturating_sub(refused) >= max {
                self.flag(K::TooManyDispatches,
                    format!(
                        "retryable {} used {dispatches} dispatches ({refused} refused) of {max} and was kept for another",
                        l.op
                    ),
                );
            }
        }
        let mut lost = lost;
        lost.clear();
        self.step_lost = lost;

        // 7. after a timer step nothing due is left behind. (A time that
        // saturated at the end of the clock is "never": the machine
        // documents that it does not fire.)
        let never = |at: Instant| at == Instant::MAX;
        if core::mem::take(&mut self.timeout_step) {
            let t = m.now();
            if let Some((due, _)) = self
                .pending_reconnect
                .filter(|(due, _)| *due <= t && !never(*due))
            {
                self.flag(
                    K::ReconnectLate,
                    format!("reconnect due at {due} has not started by {t}"),
                );
            }
            for (set, kind, what) in [
                (&self.by_deadline, K::DeadlineLate, "past their deadlines"),
                (
                    &self.by_buffer_wait,
                    K::BufferTimeoutLate,
                    "past their buffer wait",
                ),
            ] {
                let late: Vec<OpId> = set
                    .iter()
                    .take_while(|(d, _)| *d <= t && !never(*d))
                    .map(|(_, id)| *id)
                    .collect();
                if !late.is_empty() {
                    self.found.flag(
                        kind,
                        self.now,
                        format!("{late:?} still open at {t}, {what}"),
                    );
                }
            }
        }

        if let Some(conn) = self.echo_due.take() {
            self.flag(
                K::UnexpectedEvent,
                format!(
                    "reconnected ({conn}) without the `connected` the configuration echoes it with"
                ),
            );
        }

        // 10. waiting to reconnect, no buffered op may sleep towards a
        // deadline that comes before the next attempt (unless the config
        // lets them wait for it, as the peer presets do).
        if m.state() == State::Backoff && self.cfg.fail_unreachable_deadlines() {
            if let Some((due, _)) = self.pending_reconnect {
                let from = (self.now, OpId::from_raw(u64::MAX));
                let to = (due, OpId::from_raw(u64::MAX));
                let stuck = self
                    .by_deadline
                    .range((
                        core::ops::Bound::Excluded(from),
                        core::ops::Bound::Included(to),
                    ))
                    .find(|(_, id)| self.open.get(*id).is_some_and(|t| t.in_flight.is_none()))
                    .copied();
                if let Some((d, id)) = stuck {
                    self.flag(
                        K::DeadlineNotShortCircuited,
                        format!(
                            "{id} (deadline {d}) is buffered while the next attempt is due at {due}"
                        ),
                    );
                }
            }
        }

        // 7. timers armed for what is due.
        let next = m.poll_timeout().map(|(at, _)| at);
        if let Some((due, _)) = self.pending_reconnect.filter(|(d, _)| !never(*d)) {
            if next.is_none_or(|at| at > due) {
                self.flag(
                    K::TimerMissing,
                    format!("reconnect due at {due} but next timer is {next:?}"),
                );
            }
        }
        if let Some(&(d, id)) = self.by_deadline.first().filter(|(d, _)| !never(*d)) {
            if next.is_none_or(|at| at > d) {
                self.flag(
                    K::TimerMissing,
                    format!("{id}'s deadline is {d} but next timer is {next:?}"),
                );
            }
        }
        if m.state() == State::Paused && m.in_flight() == 0 && next.is_none() {
            self.flag(
                K::TimerMissing,
                "paused by a pushback with no probe out and no timer: it would never take work again".into(),
            );
        }
        let _ = now;
    }

    /// Call at the very end, after [`Machine::close`] and a last drain:
    /// every submitted op must have had exactly one outcome.
    pub fn finish(&mut self) {
        let open: Vec<OpId> = self.open.ids().collect();
        for id in open {
            self.flag(K::MissingOutcome, format!("{id} never got an outcome"));
        }
    }

    // ----- internals ------------------------------------------------------------

    /// The range the delay of reconnect attempt `attempt` must lie in:
    /// the backoff's ([`Config::reconnect_delay_bounds`]), or under
    /// [`QuickReconnect`], paced by why the machine reconnects
    /// (`after_loss`: the attempt follows a loss, of a young connection
    /// if `true`; `error`: the last attempt's failure). Counts the
    /// backoff-paced attempts as the machine must.
    fn expected_delay(
        &mut self,
        attempt: u32,
        after_loss: Option<bool>,
        error: Option<ConnectFailure>,
    ) -> (Duration, Duration) {
        let Some(q) = self.cfg.quick_reconnect() else {
            return self.cfg.reconnect_delay_bounds(attempt);
        };
        let since_loss = self
            .lost_at
            .map_or(Duration::ZERO, |t| self.now.saturating_duration_since(t));
        match (after_loss, error) {
            (Some(false), _) => (Duration::ZERO, Duration::ZERO),
            (None, Some(ConnectFailure::Refused)) if since_loss < q.probe_for => {
                (q.probe / 2, q.probe)
            }
            _ => {
                self.paced = self.paced.saturating_add(1);
                self.cfg.reconnect_delay_bounds(self.paced)
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn flag(&mut self, kind: ViolationKind, message: String) {
        self.found.flag(kind, self.now, message);
    }

    fn on_connect(&mut self, conn: ConnId, endpoint: usize) {
        let now = self.now;
        if self.connects == 0 {
            // The machine's birth: its first attempt.
            self.lost_at = Some(now);
        }
        if let Some(t) = self.terminal {
            self.flag(
                K::ConnectAfterTerminal,
                format!("connect {conn} after the client became {}", t.name()),
            );
        }
        if self.down {
            self.flag(
                K::ReconnectDisabled,
                format!("connect {conn} after a loss with auto-reconnect off"),
            );
        }
        if let Some((c, _)) = self.current {
            self.flag(
                K::ConnectWhileConnected,
                format!("connect {conn} while {c} is up"),
            );
        }
        if self.last_conn_id.is_some_and(|last| conn <= last) {
            self.flag(
                K::ConnectMismatch,
                format!(
                    "connect id {conn} does not grow (last {:?})",
                    self.last_conn_id
                ),
            );
        }
        match self.pending_reconnect.take() {
            Some((due, ep)) => {
                if now < due {
                    self.flag(
                        K::ReconnectEarly,
                        format!("connect {conn} at {now}, announced for {due}"),
                    );
                }
                if ep != endpoint {
                    self.flag(
                        K::ReconnectEndpoint,
                        format!("connect {conn} to endpoint {endpoint}, announced {ep}"),
                    );
                }
            }
            None if self.connects > 0 && !core::mem::take(&mut self.revived) => self.flag(
                K::ConnectWithoutReconnecting,
                format!("connect {conn} without a reconnecting event before it"),
            ),
            None => {}
        }
        self.connects += 1;
        self.last_conn_id = Some(conn);
        self.attempt = Some((conn, endpoint));
    }

    /// `id` (open) entered the buffer at `now`: with a buffer timeout, its
    /// wait starts (invariant 10: it must not end later than that).
    fn buffered(&mut self, id: OpId, now: Instant) {
        let Some(wait) = self.cfg.buffer_timeout() else {
            return;
        };
        let due = now.saturating_add(wait);
        let Some(t) = self.open.get_mut(id) else {
            return;
        };
        if let Some(old) = t.buffer_due.replace(due) {
            self.by_buffer_wait.remove(&(old, id));
        }
        self.by_buffer_wait.insert((due, id));
    }

    /// `id` left the buffer (sent): its buffer wait is over.
    fn unbuffered(&mut self, id: OpId) {
        if let Some(t) = self.open.get_mut(id) {
            if let Some(old) = t.buffer_due.take() {
                self.by_buffer_wait.remove(&(old, id));
            }
        }
    }

    fn on_dispatch(&mut self, op: OpId, conn: ConnId, endpoint: usize) {
        self.unbuffered(op);
        if self.terminal.is_some() {
            self.flag(K::OutputAfterTerminal, format!("dispatch of {op}"));
        }
        match self.current {
            None => self.flag(
                K::DispatchNotConnected,
                format!("{op} dispatched on {conn} while not connected"),
            ),
            Some((c, e)) if c != conn || e != endpoint => self.flag(
                K::DispatchWrongConn,
                format!("{op} dispatched on {conn}/{endpoint}, current {c}/{e}"),
            ),
            Some(_) => {}
        }
        if self.draining == Some(conn) {
            self.flag(
                K::DispatchWhileDraining,
                format!("{op} dispatched on {conn}, which answered wrong server"),
            );
        }
        let Some(t) = self.open.get(op).cloned() else {
            self.flag(
                K::DispatchUnknownOp,
                format!("{op} dispatched but it is not an open op"),
            );
            return;
        };
        if t.in_flight.is_some() {
            self.flag(
                K::DoubleDispatch,
                format!(
                    "{op} dispatched on {conn} while already in flight on {:?}",
                    t.in_flight
                ),
            );
        }
        if self.last_seq.is_some_and(|s| s >= t.seq) {
            self.flag(
                K::DispatchOrder,
                format!(
                    "{op} (submitted #{}) dispatched on {conn} after #{:?}",
                    t.seq, self.last_seq
                ),
            );
        }
        self.last_seq = Some(t.seq);
        let dispatches = t.dispatches + 1;
        let limit = t.max_attempts.saturating_add(t.refused);
        if dispatches > limit {
            self.flag(K::TooManyDispatches,
                format!(
                    "{op} dispatched {dispatches} times (retryable: {}, max attempts {}, wrong-server redirects {})",
                    t.retryable, t.max_attempts, t.refused
                ),
            );
        }
        let now = self.now;
        if let Some(tr) = self.open.get_mut(op) {
            tr.dispatches = dispatches;
            tr.sent = Some(now);
        }
        self.set_in_flight(op, Some(conn));
    }

    /// Moves open op `id` onto `conn` (or off the wire), keeping the index.
    fn set_in_flight(&mut self, id: OpId, conn: Option<ConnId>) {
        let now = self.now;
        let Some(t) = self.open.get_mut(id) else {
            return;
        };
        let back = conn.is_none() && t.in_flight.is_some();
        if conn.is_none() {
            t.since = now; // back in the buffer (or gone: then unused)
        }
        if let Some(old) = core::mem::replace(&mut t.in_flight, conn) {
            self.unindex(id, old);
        }
        if back {
            // Back in the buffer (lost and kept, or refused): a new wait.
            self.buffered(id, now);
        }
        if let Some(c) = conn {
            let lane = self.in_flight_on.entry(c).or_default();
            lane.live += 1;
            lane.ids.push(id);
            if lane.ids.len() > 2 * lane.live + 32 {
                self.compact(c);
            }
        }
    }

    /// Whether open op `id` is in flight on `conn` (a lane entry is live).
    fn is_on(&self, id: OpId, conn: ConnId) -> bool {
        self.open.get(id).is_some_and(|t| t.in_flight == Some(conn))
    }

    /// Drops the stale entries of `conn`'s lane.
    fn compact(&mut self, conn: ConnId) {
        let Some(mut lane) = self.in_flight_on.remove(&conn) else {
            return;
        };
        lane.ids.retain(|id| self.is_on(*id, conn));
        lane.ids.sort_unstable();
        lane.ids.dedup();
        self.in_flight_on.insert(conn, lane);
    }

    /// The ops in flight on `conn`, in id order.
    fn on_lane(&self, conn: ConnId) -> Vec<OpId> {
        let mut ids: Vec<OpId> = self
            .in_flight_on
            .get(&conn)
            .map(|l| {
                l.ids
                    .iter()
                    .copied()
                    .filter(|id| self.is_on(*id, conn))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Drops `id` from the index of ops in flight on `conn`.
    fn unindex(&mut self, _id: OpId, conn: ConnId) {
        if let Some(lane) = self.in_flight_on.get_mut(&conn) {
            lane.live = lane.live.saturating_sub(1);
            if lane.live == 0 {
                lane.ids.clear(); // every entry is stale; the capacity stays
            }
        }
    }

    fn on_complete(&mut self, id: OpId, result: Result<Done, OpError>) {
        let Some(t) = self.open.remove(id) else {
            if self.open.is_finished(id) {
                self.flag(K::DoubleOutcome, format!("{id} completed twice"));
            } else {
                self.flag(
                    K::UnknownOutcome,
                    format!("{id} completed but was never submitted"),
                );
            }
            return;
        };
        if let Some(c) = t.in_flight {
            self.unindex(id, c);
        }
        if let Some(d) = t.deadline {
            self.by_deadline.remove(&(d, id));
        }
        if let Some(d) = t.buffer_due {
            self.by_buffer_wait.remove(&(d, id));
        }
        match result {
            Ok(done) => {
                if self.current.is_some_and(|(c, _)| c == done.conn) {
                    self.served = true;
                }
                if done.attempts != t.dispatches {
                    self.flag(
                        K::AttemptsMismatch,
                        format!(
                            "{id} reports {} attempts, {} dispatches seen",
                            done.attempts, t.dispatches
                        ),
                    );
                }
                let here = self.current.map(|(c, _)| c);
                if t.in_flight.is_none() || t.in_flight != here || Some(done.conn) != here {
                    self.flag(
                        K::OkNotInFlight,
                        format!(
                            "{id} succeeded on {} but was in flight on {:?}, current {:?}",
                            done.conn, t.in_flight, self.current
                        ),
                    );
                }
                if self.current.is_some_and(|(_, e)| e != done.endpoint) {
                    self.flag(
                        K::OkNotInFlight,
                        format!(
                            "{id} succeeded on endpoint {}, current {:?}",
                            done.endpoint, self.current
                        ),
                    );
                }
            }
            Err(e) => {
                if e.attempts() != t.dispatches {
                    self.flag(
                        K::AttemptsMismatch,
                        format!(
                            "{id} failed ({}) reporting {} attempts, {} dispatches seen",
                            e.kind(),
                            e.attempts(),
                            t.dispatches
                        ),
                    );
                }
                if t.dispatches == 0 && e.maybe_executed() {
                    self.flag(
                        K::MaybeExecuted,
                        format!(
                            "{id} was never dispatched but failed ({}) with maybe_executed",
                            e.kind()
                        ),
                    );
                } else if t.dispatches <= t.refused && e.maybe_executed() {
                    self.flag(
                        K::RefusedMayHaveRun,
                        format!(
                            "{id} was refused by the server on every dispatch ({}) but failed ({}) with maybe_executed",
                            t.dispatches,
                            e.kind()
                        ),
                    );
                }
                if t.dispatches > t.refused && !e.maybe_executed() {
                    self.flag(
                        K::MaybeExecuted,
                        format!(
                            "{id} was dispatched {} times ({} refused) but failed ({}) claiming it did not run",
                            t.dispatches,
                            t.refused,
                            e.kind()
                        ),
                    );
                }
                match e.kind() {
                    ErrorKind::ServerError => {
                        let here = self.current.map(|(c, _)| c);
                        if t.in_flight.is_none() || t.in_flight != here {
                            self.flag(K::OkNotInFlight,
                                format!("{id} got a server error but was not in flight on the current connection"),
                            );
                        }
                    }
                    ErrorKind::ReconnectFailed
                        if self.terminal != Some(State::Failed) && !self.gave_up_step =>
                    {
                        self.flag(K::TerminalOutcome,
                            format!(
                                "{id} failed with reconnect_failed before reconnect_failed was emitted"
                            ),
                        );
                    }
                    ErrorKind::TopologyDestroyed => {
                        let expected = self
                            .must_complete
                            .iter()
                            .any(|(o, k)| *o == id && *k == ErrorKind::TopologyDestroyed);
                        if !expected {
                            self.flag(K::TerminalOutcome,
                                format!("{id} failed with topology_destroyed but was not submitted after reconnect_failed"),
                            );
                        }
                    }
                    _ => {}
                }
                if let Some((_, k)) = self.must_complete.iter().find(|(o, _)| *o == id).copied() {
                    if k != e.kind() {
                        self.flag(
                            K::TerminalOutcome,
                            format!("{id} failed with {} instead of {k}", e.kind()),
                        );
                    }
                }
            }
        }
        if result.is_ok() {
            if let Some((_, k)) = self.must_complete.iter().find(|(o, _)| *o == id).copied() {
                self.flag(
                    K::TerminalOutcome,
                    format!("{id} succeeded instead of failing with {k}"),
                );
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        let now = self.now;
        if self.terminal == Some(State::Closed) {
            self.flag(K::EventAfterClosed, format!("{e} after closed"));
        } else if self.terminal == Some(State::Failed) && e != Event::Closed {
            self.flag(
                K::OutputAfterTerminal,
                format!("{e} after reconnect_failed"),
            );
        }
        match e {
            Event::Connected { conn, .. } if self.echo_due == Some(conn) => {
                // mongoose's `connected` along with `reconnected`.
                self.echo_due = None;
            }
            Event::Connected { conn, endpoint } | Event::Reconnected { conn, endpoint } => {
                if matches!(e, Event::Reconnected { .. }) && self.cfg.connected_on_reconnect() {
                    self.echo_due = Some(conn);
                }
                if self.attempt != Some((conn, endpoint)) {
                    self.flag(
                        K::ConnectMismatch,
                        format!("{e} but the pending attempt is {:?}", self.attempt),
                    );
                }
                if let Some((c, _)) = self.current {
                    self.flag(K::ConnectWhileConnected, format!("{e} while {c} is up"));
                }
                self.attempt = None;
                self.draining = None;
                self.served = false;
                self.current = Some((conn, endpoint));
                self.ever_connected = true;
                self.attempt_before_connect = self.attempt_no;
                self.attempt_no = 0;
                self.last_seq = None;
                self.up_since = Some(self.now);
                self.loss_pending = None;
                self.paced_before_connect = self.paced;
                self.paced = 0;
            }
            Event::Disconnected {
                conn,
                endpoint,
                reason,
            } => {
                let ended = if self.current.is_some_and(|(c, _)| c == conn) {
                    self.current.take()
                } else if self.just_closed.is_some_and(|(c, _)| c == conn) {
                    self.just_closed.take()
                } else {
                    None
                };
                match ended {
                    None => self.flag(
                        K::EventWrongConn,
                        format!("{e} but {conn} is not the current connection"),
                    ),
                    Some((_, ep)) if ep != endpoint => self.flag(
                        K::EventWrongConn,
                        format!("{e} but {conn} is on endpoint {ep}"),
                    ),
                    Some(_) => {}
                }
                let on_conn = self.on_lane(conn);
                if reason == DisconnectReason::WrongServer && !on_conn.is_empty() {
                    self.flag(
                        K::DrainCutShort,
                        format!(
                            "{e} with {} ops still in flight there ({on_conn:?}): a wrong server is left only once they are back",
                            on_conn.len()
                        ),
                    );
                }
                self.draining = None;
                for id in on_conn {
                    self.set_in_flight(id, None);
                    self.step_lost.push(Lost {
                        op: id,
                        conn,
                        reason,
                    });
                }
                if self.in_flight_on.get(&conn).is_some_and(|l| l.live == 0) {
                    self.in_flight_on.remove(&conn);
                }
                let failed_attempt = reason == DisconnectReason::WrongServer && !self.served;
                (self.attempt_no, self.paced) = if failed_attempt {
                    (self.attempt_before_connect, self.paced_before_connect)
                } else {
                    (0, 0)
                };
                let young = failed_attempt
                    || self.up_since.is_none_or(|t| {
                        self.now.saturating_duration_since(t) < QuickReconnect::MIN_UPTIME
                    });
                self.loss_pending = Some(young);
                self.lost_at = Some(self.now);
                self.served = false;
                self.last_seq = None;
                if !self.cfg.auto_reconnect() {
                    self.down = true;
                }
            }
            Event::Reconnecting {
                attempt,
                delay,
                endpoint,
                error,
            } => {
                // The pause of a cool-down give-up: attempt 1 of a fresh
                // budget, announced with the pause as its delay.
                if error != Some(ConnectFailure::NotPrimary) {
                    self.only_not_primary = false;
                }
                let cool_down = self.cooling.take().filter(|d| *d == delay && attempt == 1);
                let after_loss = self.loss_pending.take();
                if cool_down.is_some() {
                    self.attempt_no = 0;
                    self.paced = 0;
                } else if error.is_some_and(|e| !e.is_retried()) {
                    self.flag(
                        K::ReconnectAttempt,
                        format!("{e} after a connect failure that is never retried"),
                    );
                }
                if self.down {
                    self.flag(
                        K::ReconnectDisabled,
                        format!("{e} after a loss with auto-reconnect off"),
                    );
                }
                if attempt != self.attempt_no + 1 {
                    self.flag(
                        K::ReconnectAttempt,
                        format!("{e} but the previous attempt was {}", self.attempt_no),
                    );
                }
                if let (Tries::Limited(n), None) = (self.cfg.reconnect_tries(), cool_down) {
                    if attempt > n {
                        self.flag(
                            K::ReconnectAttempt,
                            format!("{e} beyond reconnect_tries {n}"),
                        );
                    }
                }
                if cool_down.is_none() {
                    let (lo, hi) = self.expected_delay(attempt, after_loss, error);
                    if delay < lo || delay > hi {
                        self.flag(
                            K::ReconnectDelay,
                            format!("{e}: delay {delay:?} outside [{lo:?}, {hi:?}]"),
                        );
                    }
                }
                if self.current.is_some() {
                    self.flag(K::EventWrongConn, format!("{e} while connected"));
                }
                self.attempt_no = attempt;
                self.pending_reconnect = Some((now + delay, endpoint));
            }
            Event::ReconnectFailed { attempts, error } => {
                if self.terminal == Some(State::Failed) {
                    self.flag(
                        K::TerminalEventTwice,
                        "reconnect_failed emitted twice".into(),
                    );
                }
                if attempts != self.attempt_no {
                    self.flag(
                        K::ReconnectAttempt,
                        format!("{e} but {} attempts were announced", self.attempt_no),
                    );
                }
                let initial_fail_fast = (attempts == 0 || self.only_not_primary)
                    && !self.ever_connected
                    && self.cfg.initial_connect() == InitialConnect::FailFast;
                if error != Some(ConnectFailure::NotPrimary) {
                    self.only_not_primary = false;
                }
                let budget_spent = match self.cfg.reconnect_tries() {
                    // `>`: after a cool-down, its own attempt counts too.
                    Tries::Limited(n) => attempts >= n,
                    Tries::Unlimited => false,
                };
                let rejected = error.is_some_and(|e| !e.is_retried());
                if !(initial_fail_fast || budget_spent || rejected) {
                    self.flag(
                        K::ReconnectAttempt,
                        format!(
                            "{e} with reconnect_tries {:?}, initial connect {:?}",
                            self.cfg.reconnect_tries(),
                            self.cfg.initial_connect()
                        ),
                    );
                }
                if self.current.is_some() {
                    self.flag(K::EventWrongConn, format!("{e} while connected"));
                }
                match self.cfg.give_up() {
                    GiveUp::CoolDown(pause) => self.cooling = Some(pause),
                    _ => {
                        if self.terminal.is_none() {
                            self.terminal = Some(State::Failed);
                        }
                    }
                }
                self.gave_up_step = true;
                self.pending_reconnect = None;
                self.attempt = None;
            }
            Event::Closed => {
                if self.terminal == Some(State::Closed) {
                    self.flag(K::TerminalEventTwice, "closed emitted twice".into());
                }
                self.terminal = Some(State::Closed);
                self.current = None;
                self.draining = None;
                self.just_closed = None;
                self.attempt = None;
                self.pending_reconnect = None;
                // Ops in flight on the closed connection fail with `closed`
                // in this same step; anything left is caught by after_step.
                let lanes: Vec<ConnId> = self.in_flight_on.keys().copied().collect();
                for c in lanes {
                    for id in self.on_lane(c) {
                        if let Some(t) = self.open.get_mut(id) {
                            t.in_flight = None;
                        }
                    }
                }
                self.in_flight_on.clear();
            }
            Event::Unresponsive { conn } if self.current.is_none_or(|(c, _)| c != conn) => {
                self.flag(
                    K::EventWrongConn,
                    format!("{e} but {conn} is not the current connection"),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redial_core::{Backoff, Completion, Duration, Jitter, LossKind, OpResult};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn cfg() -> Config {
        Config::mongodb_legacy()
            .to_builder()
            .reconnect_interval(ms(100))
            .reconnect_tries(Tries::Limited(3))
            .build()
            .unwrap()
    }

    fn kinds(c: &Checker) -> Vec<&'static str> {
        c.violations().iter().map(|v| v.kind.name()).collect()
    }

    fn err(kind: ErrorKind, maybe: bool, attempts: u32) -> Result<Done, OpError> {
        Err(OpError::new(kind, maybe, attempts))
    }

    fn complete(id: OpId, result: Result<Done, OpError>) -> Output<()> {
        Output::Complete(Completion {
            id,
            payload: (),
            result,
        })
    }

    /// A real machine, connected, with the checker attached and clean.
    fn connected(config: Config) -> (Checker, Machine<()>, ConnId) {
        let mut c = Checker::new(&config);
        let mut m = Machine::new(config, 3, Instant::ZERO);
        let outs = c.drain(&mut m);
        let Some(Output::Connect { conn, .. }) = outs.first().cloned() else {
            panic!("{outs:?}")
        };
        m.handle_connected(Instant::ZERO, conn);
        c.drain(&mut m);
        assert!(c.is_ok(), "{:?}", c.violations());
        (c, m, conn)
    }

    #[test]
    fn a_real_run_is_clean() {
        let (mut c, mut m, conn) = connected(cfg());
        let a = c.submit(&mut m, Instant::ZERO, (), OpOptions::new());
        c.drain(&mut m);
        m.handle_op_result(Instant::from_millis(1), a, conn, OpResult::Ok);
        c.drain(&mut m);
        m.handle_connection_lost(Instant::from_millis(2), conn, LossKind::Reset);
        c.drain(&mut m);
        let b = c.submit(&mut m, Instant::from_millis(3), (), OpOptions::new());
        c.drain(&mut m);
        m.handle_timeout(Instant::from_millis(102));
        c.drain(&mut m);
        m.close(Instant::from_millis(103));
        c.drain(&mut m);
        c.finish();
        c.assert_ok();
        assert_eq!(c.submitted(), 2);
        assert_eq!(c.open_ops(), 0);
        let _ = b;
    }

    #[test]
    fn flags_double_and_unknown_and_missing_outcomes() {
        let (mut c, mut m, _) = connected(cfg());
        let a = c.submit(&mut m, Instant::ZERO, (), OpOptions::new());
        c.drain(&mut m);
        let now = Instant::ZERO;
        c.on_output(now, &complete(a, err(ErrorKind::Cancelled, true, 1)));
        c.on_output(now, &complete(a, err(ErrorKind::Cancelled, true, 1)));
        c.on_output(
            now,
            &complete(OpId::from_raw(999), err(ErrorKind::Cancelled, false, 0)),
        );
        assert_eq!(kinds(&c), ["double_outcome", "unknown_outcome"]);
        // The machine still holds `a`: counts disagree.
        c.after_step(&m);
        assert!(kinds(&c).contains(&"outstanding_mismatch"));

        let mut c = Checker::new(&cfg());
        c.on_submit(now, OpId::from_raw(1), &OpOptions::new(), State::Connecting);
        c.finish();
        assert_eq!(kinds(&c), ["missing_outcome"]);
        assert_eq!(c.violations()[0].invariant(), 1);
    }

    #[test]
    fn flags_dispatch_when_not_connected_or_on_the_wrong_connection() {
        let mut c = Checker::new(&cfg());
        let now = Instant::ZERO;
        let a = OpId::from_raw(1);
        c.on_submit(now, a, &OpOptions::new(), State::Connecting);
        c.on_output::<()>(
            now,
            &Output::Dispatch {
                op: a,
                conn: ConnId::from_raw(1),
                endpoint: 0,
                time_left: None,
            },
        );
        assert_eq!(kinds(&c), ["dispatch_not_connected"]);

        let (mut c, mut m, conn) = connected(cfg());
        let a = c.submit(&mut m, now, (), OpOptions::new());
        c.on_output::<()>(
            now,
            &Output::Dispatch {
                op: a,
                conn: ConnId::from_raw(conn.get() + 7),
                endpoint: 0,
                time_left: None,
            },
        );
        assert_eq!(kinds(&c), ["dispatch_wrong_conn"]);
        c.on_output::<()>(
            now,
            &Output::Dispatch {
                op: a,
                conn,
                endpoint: 0,
                time_left: None,
            },
        );
        assert!(kinds(&c).contains(&"double_dispatch"));
        c.on_output::<()>(
            now,
            &Output::Dispatch {
                op: OpId::from_raw(4242),
                conn,
                endpoint: 0,
                time_left: None,
            },
        );
        assert!(kinds(&c).contains(&"dispatch_unknown_op"));
    }

    #[test]
    fn flags_a_non_retryable_op_sent_twice() {
        let (mut c, mut m, conn) = connected(cfg());
        let now = Instant::ZERO;
        let a = c.submit(&mut m, now, (), OpOptions::new());
        c.drain(&mut m);
        // A lying machine: the connection drops and the op is re-sent on
        // the next connection.
        let ev = |e| Output::<()>::Event(e);
        c.on_output(
            now,
            &ev(Event::Disconnected {
                conn,
                endpoint: 0,
                reason: DisconnectReason::Lost(LossKind::Reset),
            }),
        );
        c.on_output(
            now,
            &ev(Event::Reconnecting {
                attempt: 1,
                delay: ms(100),
                endpoint: 0,
                error: None,
            }),
        );
        let k = kinds(&c);
        assert!(k.is_empty(), "{k:?}");
        c.step_lost.clear(); // look only at the dispatch rule here
        let c2 = ConnId::from_raw(conn.get() + 1);
        let later = Instant::from_millis(100);
        c.on_output::<()>(
            later,
            &Output::Connect {
                conn: c2,
                endpoint: 0,
                timeout: cfg().connect_timeout(),
            },
        );
        c.on_output(
            later,
            &ev(Event::Reconnected {
                conn: c2,
                endpoint: 0,
            }),
        );
        c.on_output::<()>(
            later,
            &Output::Dispatch {
                op: a,
                conn: c2,
                endpoint: 0,
                time_left: None,
            },
        );
        assert_eq!(kinds(&c), ["too_many_dispatches"]);
        assert_eq!(c.violations()[0].invariant(), 4);
    }

    #[test]
    fn flags_a_lost_non_retryable_op_that_is_kept() {
        let (mut c, mut m, conn) = connected(cfg());
        let now = Instant::ZERO;
        let a = c.submit(&mut m, now, (), OpOptions::new());
        c.drain(&mut m);
        c.on_output::<()>(
            now,
            &Output::Event(Event::Disconnected {
                conn,
                endpoint: 0,
                reason: DisconnectReason::Lost(LossKind::Closed),
            }),
        );
        // Not completed within the step.
        c.after_step(&m);
        assert!(kinds(&c).contains(&"resent_after_loss"), "{:?}", kinds(&c));
        let _ = a;
    }

    #[test]
    fn flags_out_of_order_dispatch() {
        let (mut c, mut m, conn) = connected(cfg());
        let now = Instant::ZERO;
        let a = OpId::from_raw(100);
        let b = OpId::from_raw(101);
        c.on_submit(now, a, &OpOptions::new(), State::Backoff);
        c.on_submit(now, b, &OpOptions::new(), State::Backoff);
        c.on_output::<()>(
            now,
            &Output::Dispatch {
                op: b,
                conn,
                endpoint: 0,
                time_left: None,
            },
        );
        c.on_output::<()>(
            now,
            &Output::Dispatch {
                op: a,
                conn,
                endpoint: 0,
                time_left: None,
            },
        );
        assert_eq!(kinds(&c), ["dispatch_order"]);
        assert_eq!(c.violations()[0].invariant(), 5);
        let _ = m.poll_output();
    }

    #[test]
    fn flags_buffer_beyond_its_bound() {
        let config = cfg().to_builder().buffer_max_entries(2).build().unwrap();
        let mut c = Checker::new(&config);
        let mut m: Machine<()> = Machine::new(config.clone(), 1, Instant::ZERO);
        c.drain(&mut m);
        for _ in 0..2 {
            c.submit(&mut m, Instant::ZERO, (), OpOptions::new());
            c.drain(&mut m);
        }
        assert!(c.is_ok(), "{:?}", c.violations());
        // Check the same machine against a tighter bound: it must be flagged.
        let tight = cfg().to_builder().buffer_max_entries(1).build().unwrap();
        let mut c1 = Checker::new(&tight);
        c1.open = c.open.clone();
        c1.after_step(&m);
        assert!(kinds(&c1).contains(&"buffer_bound"), "{:?}", kinds(&c1));
    }

    #[test]
    fn flags_connect_after_terminal_and_non_terminal_outcomes() {
        let mut c = Checker::new(&cfg());
        let now = Instant::ZERO;
        c.on_output::<()>(
            now,
            &Output::Connect {
                conn: ConnId::from_raw(1),
                endpoint: 0,
                timeout: cfg().connect_timeout(),
            },
        );
        c.on_output::<()>(now, &Output::Event(Event::Closed));
        c.on_output::<()>(
            now,
            &Output::Connect {
                conn: ConnId::from_raw(2),
                endpoint: 0,
                timeout: cfg().connect_timeout(),
            },
        );
        assert!(
            kinds(&c).contains(&"connect_after_terminal"),
            "{:?}",
            kinds(&c)
        );

        // An op submitted after close that fails with the wrong kind, and
        // one that is not failed at all.
        let mut c = Checker::new(&cfg());
        let a = OpId::from_raw(1);
        let b = OpId::from_raw(2);
        c.on_output::<()>(now, &Output::Event(Event::Closed));
        c.on_submit(now, a, &OpOptions::new(), State::Closed);
        c.on_submit(now, b, &OpOptions::new(), State::Closed);
        c.on_output(now, &complete(a, err(ErrorKind::NoConnection, false, 0)));
        let m: Machine<()> = Machine::new(cfg(), 1, Instant::ZERO);
        c.after_step(&m);
        let k = kinds(&c);
        assert!(k.contains(&"terminal_outcome"), "{k:?}");
        assert!(k.contains(&"terminal_with_outstanding") || k.contains(&"state_mismatch"));
    }

    #[test]
    fn flags_reconnect_delay_outside_bounds_and_early_connects() {
        let config = cfg()
            .to_builder()
            .backoff(Backoff::Exponential {
                initial: ms(100),
                multiplier: 2.0,
                max: ms(1000),
            })
            .jitter(Jitter::Equal)
            .build()
            .unwrap();
        let mut c = Checker::new(&config);
        let now = Instant::ZERO;
        c.on_output::<()>(
            now,
            &Output::Connect {
                conn: ConnId::from_raw(1),
                endpoint: 0,
                timeout: config.connect_timeout(),
            },
        );
        // Attempt 1 nominal is 100 ms: equal jitter allows [50, 100].
        c.on_output::<()>(
            now,
            &Output::Event(Event::Reconnecting {
                attempt: 1,
                delay: ms(40),
                endpoint: 0,
                error: None,
            }),
        );
        assert_eq!(kinds(&c), ["reconnect_delay"]);
        c.on_output::<()>(
            Instant::from_millis(10),
            &Output::Connect {
                conn: ConnId::from_raw(2),
                endpoint: 0,
                timeout: config.connect_timeout(),
            },
        );
        assert_eq!(kinds(&c), ["reconnect_delay", "reconnect_early"]);
        c.on_output::<()>(
            Instant::from_millis(10),
            &Output::Event(Event::Reconnecting {
                attempt: 3,
                delay: ms(300),
                endpoint: 0,
                error: None,
            }),
        );
        assert_eq!(kinds(&c)[2], "reconnect_attempt");
        // A connect with no reconnecting event before it.
        let mut c = Checker::new(&config);
        for id in [1, 2] {
            c.on_output::<()>(
                now,
                &Output::Connect {
                    conn: ConnId::from_raw(id),
                    endpoint: 0,
                    timeout: config.connect_timeout(),
                },
            );
        }
        assert_eq!(kinds(&c), ["connect_without_reconnecting"]);
    }

    #[test]
    fn flags_maybe_executed_lies() {
        let (mut c, mut m, conn) = connected(cfg());
        let now = Instant::ZERO;
        let a = OpId::from_raw(77);
        c.on_submit(now, a, &OpOptions::new(), State::Backoff);
        c.on_output(now, &complete(a, err(ErrorKind::BufferTimeout, true, 0)));
        assert!(kinds(&c).contains(&"maybe_executed"));
        let b = c.submit(&mut m, now, (), OpOptions::new());
        c.drain(&mut m);
        let mut c2 = c.clone();
        c2.found.list.clear();
        c2.on_output(now, &complete(b, err(ErrorKind::Cancelled, false, 1)));
        assert_eq!(kinds(&c2), ["maybe_executed"]);
        let mut c3 = c.clone();
        c3.found.list.clear();
        c3.on_output(now, &complete(b, err(ErrorKind::Cancelled, true, 2)));
        assert_eq!(kinds(&c3), ["attempts_mismatch"]);
        let _ = conn;
    }

    #[test]
    fn flags_reconnect_with_auto_reconnect_off_and_missing_timers() {
        let config = cfg().to_builder().auto_reconnect(false).build().unwrap();
        let (mut c, m, conn) = connected(config.clone());
        let now = Instant::ZERO;
        c.on_output::<()>(
            now,
            &Output::Event(Event::Disconnected {
                conn,
                endpoint: 0,
                reason: DisconnectReason::Lost(LossKind::Closed),
            }),
        );
        c.on_output::<()>(
            now,
            &Output::Event(Event::Reconnecting {
                attempt: 1,
                delay: ms(100),
                endpoint: 0,
                error: None,
            }),
        );
        c.on_output::<()>(
            Instant::from_millis(100),
            &Output::Connect {
                conn: ConnId::from_raw(conn.get() + 1),
                endpoint: 0,
                timeout: config.connect_timeout(),
            },
        );
        assert_eq!(kinds(&c), ["reconnect_disabled", "reconnect_disabled"]);

        // A reconnect announced but no timer armed in the machine (a
        // connected legacy machine has none).
        let (mut c, _, _) = connected(cfg());
        c.current = None;
        c.pending_reconnect = Some((Instant::from_millis(100), 0));
        c.after_step(&m);
        assert!(kinds(&c).contains(&"timer_missing"), "{:?}", kinds(&c));
    }

    #[test]
    fn flags_terminal_events_twice_and_state_mismatch() {
        let (mut c, m, _) = connected(cfg());
        let now = Instant::ZERO;
        c.on_output::<()>(now, &Output::Event(Event::Closed));
        c.on_output::<()>(now, &Output::Event(Event::Closed));
        assert!(kinds(&c).contains(&"terminal_event_twice"));
        c.after_step(&m); // the machine is not closed
        assert!(kinds(&c).contains(&"state_mismatch"), "{:?}", kinds(&c));

        // reconnect_failed with budget left.
        let mut c = Checker::new(&cfg());
        c.ever_connected = true;
        c.attempt_no = 1;
        c.on_output::<()>(
            now,
            &Output::Event(Event::ReconnectFailed {
                attempts: 1,
                error: None,
            }),
        );
        assert_eq!(kinds(&c), ["reconnect_attempt"]);
        // After it, a new op must fail with topology_destroyed at once.
        let late = OpId::from_raw(9);
        c.on_submit(now, late, &OpOptions::new(), State::Failed);
        c.on_output(now, &complete(late, err(ErrorKind::NoConnection, false, 0)));
        assert!(kinds(&c).contains(&"terminal_outcome"), "{:?}", kinds(&c));
    }

    #[test]
    fn flags_timer_steps_that_leave_due_work_behind() {
        let (mut c, mut m, _) = connected(cfg());
        let a = c.submit(&mut m, Instant::ZERO, (), OpOptions::new().deadline(ms(10)));
        c.drain(&mut m);
        // A correct timer step: the deadline fires.
        let mut ok = c.clone();
        ok.on_timeout(Instant::from_millis(10));
        m.handle_timeout(Instant::from_millis(10));
        ok.drain(&mut m);
        assert!(ok.is_ok(), "{:?}", ok.violations());
        // The same step, but the machine "forgot" to fire: feed the checker
        // no outputs for it.
        c.on_timeout(Instant::from_millis(10));
        c.after_step(&m);
        assert!(kinds(&c).contains(&"deadline_late"), "{:?}", kinds(&c));
        let _ = a;

        let mut c = Checker::new(&cfg());
        let m: Machine<()> = Machine::new(cfg(), 1, Instant::ZERO);
        c.pending_reconnect = Some((Instant::ZERO, 0));
        c.on_timeout(Instant::ZERO);
        c.after_step(&m);
        assert!(kinds(&c).contains(&"reconnect_late"), "{:?}", kinds(&c));
    }

    #[test]
    fn violations_display_their_invariant_and_kind() {
        let mut c = Checker::new(&cfg());
        c.on_output(
            Instant::from_millis(1),
            &complete(OpId::from_raw(3), err(ErrorKind::Closed, false, 0)),
        );
        let text = format!("{}", c.violations()[0]);
        assert_eq!(
            text,
            "[invariant 1 unknown_outcome at 0.001000s] op#3 completed but was never submitted"
        );
    }
}
