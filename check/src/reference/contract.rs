//! The [`Contract`]: what the configured policy promises around the
//! invariants, for *any* configuration.

use core::time::Duration;

use redial_core::{
    BufferPolicy, Config, ConnId, DisconnectReason, ErrorKind, Event, Instant, Machine, OpId,
    OpOptions, OpResult, Output, Role, State,
};

use crate::Checker;
use crate::violation::{Found, Violation, ViolationKind as K};

/// Watches a machine from the outside and reports where it leaves the
/// policy its [`Config`] states — for every configuration. It keeps no
/// book of its own about ops: it reads the [`Checker`]'s (which op is open,
/// dispatched, with which deadline, what is in flight where), so it runs
/// beside one, inside a [`Watcher`](crate::Watcher) or
/// [`Checked`](crate::Checked). What it checks:
///
/// - an op submitted while connected is dispatched in the same step
///   (`not_dispatched`);
/// - with buffering disabled, an op submitted while not connected fails at
///   once with `no_connection` (`not_failed_fast`);
/// - `buffer_overflow` events announce exactly the ops that fail with
///   `buffer_overflow`, and only a bounded buffer overflows
///   (`overflow_count`, `unexpected_outcome`);
/// - `deadline_exceeded` never comes before the deadline (`early_deadline`);
/// - outcomes and events only a configured feature can produce
///   (`buffer_timeout`, `idle`/`unresponsive` disconnects, heartbeats,
///   `closed` without a close; `connected` first, then `reconnected`) and
///   outcomes that need a dispatch (`server_error`, `connection_lost`,
///   `retry_budget_exhausted`) have one (`unexpected_outcome`,
///   `unexpected_event`);
/// - connects go to a listed endpoint with the configured timeout
///   (`connect_target`);
/// - with [`Config::require_primary`], a connection reported as a
///   secondary is never announced (`connected`/`reconnected`)
///   (`unexpected_event`);
/// - after a pushback, the connection gets no dispatch before the wait
///   (the server's hint, or at least 1 ms) and then one probe at a time
///   until a probe is answered (`pushback_ignored`).
///
/// The exact outcome of every op, for the configurations it covers, is the
/// [`Model`](super::Model)'s business.
#[derive(Clone, Debug)]
pub struct Contract {
    cfg: Config,
    found: Found,
    now: Instant,
    closed: bool,
    /// An attempt reported as a secondary while the primary is required.
    secondary: Option<ConnId>,
    /// A connection paused by a pushback: no dispatch before the instant;
    /// the probe in flight, if any.
    paused: Option<(ConnId, Instant, Option<OpId>)>,
    /// Connect attempts not yet closed (each gets an `Output::Close`).
    unclosed: std::collections::BTreeSet<ConnId>,
    /// This step is a heartbeat answer that is not a loss: it must not
    /// end the connection.
    heartbeat_alive: bool,
    // per step
    must_dispatch: Vec<OpId>,
    must_fail_fast: Vec<OpId>,
    overflow_announced: usize,
    overflow_failed: usize,
    closed_outcomes: bool,
    /// A `reconnecting` event of this step hit `fail_buffered_after`'s
    /// count: the buffer must be failed, with that kind.
    buffer_flush: bool,
}

impl Contract {
    /// A contract for a machine built with `config` (a clone is kept).
    pub fn new(config: &Config) -> Self {
        Contract {
            cfg: config.clone(),
            found: Found::default(),
            now: Instant::ZERO,
            closed: false,
            secondary: None,
            paused: None,
            unclosed: std::collections::BTreeSet::new(),
            heartbeat_alive: false,
            must_dispatch: Vec::new(),
            must_fail_fast: Vec::new(),
            overflow_announced: 0,
            overflow_failed: 0,
            closed_outcomes: false,
            buffer_flush: false,
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

    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn flag(&mut self, kind: K, message: String) {
        self.found.flag(kind, self.now, message);
    }

    /// A submission (see [`Checker::on_submit`]).
    pub(crate) fn on_submit(&mut self, now: Instant, id: OpId, _: &OpOptions, state_before: State) {
        self.tick(now);
        match state_before {
            State::Connected => self.must_dispatch.push(id),
            State::Connecting | State::Backoff | State::Down
                if self.cfg.buffer() == BufferPolicy::Disabled =>
            {
                self.must_fail_fast.push(id)
            }
            _ => {}
        }
    }

    /// A successful connect reported with the role found (before it is fed).
    pub(crate) fn on_connected_as(&mut self, now: Instant, conn: ConnId, role: Role) {
        self.tick(now);
        // Only for this step: the connection it announces, if any, must
        // not be this one.
        self.secondary = (role == Role::Secondary && self.cfg.require_primary()).then_some(conn);
    }

    /// A heartbeat's answer (before it is fed): any answer but a loss
    /// proves the connection alive.
    pub(crate) fn on_heartbeat(&mut self, now: Instant, result: &OpResult) {
        self.tick(now);
        self.heartbeat_alive = *result != OpResult::ConnectionLost;
    }

    /// The end of the run (after close and a last drain): every connect
    /// attempt got its `Output::Close`.
    pub(crate) fn finish(&mut self) {
        let left: Vec<ConnId> = std::mem::take(&mut self.unclosed).into_iter().collect();
        if !left.is_empty() {
            self.flag(
                K::CloseMissing,
                format!(
                    "{left:?} were never closed (every connect attempt gets one Output::Close)"
                ),
            );
        }
    }

    /// An op's answer (before it is fed), with the checker's books as they
    /// were: is `op` in flight on `conn`, the current connection?
    pub(crate) fn on_op_result(
        &mut self,
        now: Instant,
        op: OpId,
        conn: ConnId,
        result: &OpResult,
        in_flight_here: bool,
        draining: bool,
    ) {
        self.tick(now);
        if !in_flight_here {
            return;
        }
        match *result {
            OpResult::Pushback { retry_after } if !draining => {
                let probe_refused = self
                    .paused
                    .is_some_and(|(c, _, p)| c == conn && p == Some(op));
                if self.paused.is_none() || probe_refused {
                    // The hint, at most MAX_PUSHBACK_HINT (a zero hint is
                    // no hint); at least 1 ms either way.
                    let floor = Duration::from_millis(1);
                    let wait = retry_after
                        .filter(|d| !d.is_zero())
                        .unwrap_or(floor)
                        .clamp(floor, redial_core::MAX_PUSHBACK_HINT);
                    self.paused = Some((conn, self.now.saturating_add(wait), None));
                }
            }
            OpResult::Ok | OpResult::ServerError
                if self
                    .paused
                    .is_some_and(|(c, _, p)| c == conn && p == Some(op)) =>
            {
                self.paused = None;
            }
            _ => {}
        }
    }

    /// One drained output, at the machine time `now` — before the
    /// `checker` has seen it.
    pub(crate) fn on_output<P>(&mut self, now: Instant, out: &Output<P>, checker: &Checker) {
        self.tick(now);
        match out {
            Output::Connect {
                conn,
                endpoint,
                timeout,
            } => {
                self.unclosed.insert(*conn);
                if *endpoint >= self.cfg.endpoints() || *timeout != self.cfg.connect_timeout() {
                    self.flag(
                        K::ConnectTarget,
                        format!(
                            "connect {conn} to endpoint {endpoint} with timeout {timeout:?}; configured: {} endpoints, timeout {:?}",
                            self.cfg.endpoints(),
                            self.cfg.connect_timeout()
                        ),
                    );
                }
            }
            Output::Close { conn } => {
                self.unclosed.remove(conn);
            }
            Output::Dispatch {
                op,
                conn,
                time_left,
                ..
            } => {
                if let Some(i) = self.must_dispatch.iter().position(|o| o == op) {
                    self.must_dispatch.swap_remove(i);
                }
                // The time the server is given: what is left before the
                // deadline or the command timeout, whichever is sooner.
                if let Some((deadline, command)) = checker.limits_of(*op) {
                    let left = deadline.map(|d| d.saturating_duration_since(self.now));
                    let expected = match (left, command) {
                        (Some(l), Some(c)) => Some(l.min(c)),
                        (l, c) => l.or(c),
                    };
                    if *time_left != expected {
                        self.flag(
                            K::UnexpectedOutcome,
                            format!(
                                "{op} dispatched with time_left {time_left:?}, expected {expected:?}"
                            ),
                        );
                    }
                }
                if let Some((c, not_before, probe)) = self.paused {
                    if c == *conn {
                        if self.now < not_before {
                            self.flag(
                                K::PushbackIgnored,
                                format!("{op} dispatched on {conn} at {}, during the pushback wait (until {not_before})", self.now),
                            );
                        } else if let Some(p) = probe {
                            self.flag(
                                K::PushbackIgnored,
                                format!("{op} dispatched on {conn} while probe {p} is still out"),
                            );
                        }
                        self.paused = Some((c, not_before, Some(*op)));
                    }
                }
            }
            Output::Heartbeat { conn } => {
                if self.cfg.heartbeat().is_none() {
                    self.flag(
                        K::UnexpectedEvent,
                        format!("heartbeat on {conn} but none configured"),
                    );
                }
            }
            Output::Complete(c) => {
                let id = c.id;
                if let Some((pc, nb, Some(p))) = self.paused {
                    if p == id {
                        self.paused = Some((pc, nb, None));
                    }
                }
                let (Some(dispatched), Some(deadline), Some(since)) = (
                    checker.was_dispatched(id),
                    checker.deadline_of(id),
                    checker.buffered_since(id),
                ) else {
                    return; // unknown or twice: the checker's question
                };
                if let Some(i) = self.must_dispatch.iter().position(|o| *o == id) {
                    self.must_dispatch.swap_remove(i);
                }
                let fail_fast = match self.must_fail_fast.iter().position(|o| *o == id) {
                    Some(i) => {
                        self.must_fail_fast.swap_remove(i);
                        true
                    }
                    None => false,
                };
                let Err(e) = &c.result else {
                    if fail_fast {
                        self.flag(
                            K::NotFailedFast,
                            format!("{id} succeeded instead of failing with no_connection"),
                        );
                    }
                    return;
                };
                let kind = e.kind();
                let needs_dispatch = matches!(
                    kind,
                    ErrorKind::ServerError
                        | ErrorKind::ConnectionLost
                        | ErrorKind::RetryBudgetExhausted
                );
                if needs_dispatch && !dispatched {
                    self.flag(
                        K::UnexpectedOutcome,
                        format!("{id} failed with {kind} but was never dispatched"),
                    );
                }
                let now = self.now;
                match kind {
                    ErrorKind::BufferOverflow => {
                        self.overflow_failed += 1;
                        if !matches!(self.cfg.buffer(), BufferPolicy::Bounded { .. }) {
                            self.flag(
                                K::UnexpectedOutcome,
                                format!(
                                    "{id} failed with buffer_overflow but the buffer is not bounded"
                                ),
                            );
                        }
                    }
                    ErrorKind::DeadlineExceeded if deadline.is_none_or(|d| now < d) => {
                        self.flag(
                            K::EarlyDeadline,
                            format!(
                                "{id} failed with deadline_exceeded at {now}, deadline {deadline:?}"
                            ),
                        );
                    }
                    ErrorKind::BufferTimeout => match self.cfg.buffer_timeout() {
                        None => self.flag(
                            K::UnexpectedOutcome,
                            format!("{id} failed with buffer_timeout but none is configured"),
                        ),
                        Some(wait) if now < since.saturating_add(wait) => self.flag(
                            K::UnexpectedOutcome,
                            format!(
                                "{id} failed with buffer_timeout at {now}, buffered since {since} (wait {wait:?})"
                            ),
                        ),
                        Some(_) => {}
                    },
                    ErrorKind::Closed => self.closed_outcomes = true,
                    ErrorKind::ReconnectAttemptsExceeded if !self.buffer_flush => self.flag(
                        K::UnexpectedOutcome,
                        format!(
                            "{id} failed with reconnect_attempts_exceeded, but no reconnect attempt reached `fail_buffered_after` ({:?}) in this step",
                            self.cfg.fail_buffered_after()
                        ),
                    ),
                    ErrorKind::DeadlineUnreachable if !self.cfg.fail_unreachable_deadlines() => {
                        self.flag(
                            K::UnexpectedOutcome,
                            format!("{id} failed with deadline_unreachable, but `fail_unreachable_deadlines` is off"),
                        );
                    }
                    ErrorKind::DeadlineUnreachable => {
                        // Only before the deadline, and only while the next
                        // send is known to come at or after it: the next
                        // reconnect, or a pushback wait (whose exact end the
                        // contract does not know).
                        let next = checker.next_reconnect();
                        let ok = deadline.is_some_and(|d| {
                            now < d && (next.is_some_and(|at| d <= at) || self.paused.is_some())
                        });
                        if !ok {
                            self.flag(
                                K::UnexpectedOutcome,
                                format!(
                                    "{id} failed with deadline_unreachable at {now}, deadline {deadline:?}, next reconnect {next:?}"
                                ),
                            );
                        }
                    }
                    ErrorKind::CommandTimeout => {
                        let due = checker.command_due(id);
                        if !e.maybe_executed() || due.is_none_or(|d| now < d) {
                            self.flag(
                                K::UnexpectedOutcome,
                                format!(
                                    "{id} failed with command_timeout at {now}, in flight until {due:?}"
                                ),
                            );
                        }
                    }
                    _ => {}
                }
                if kind != ErrorKind::NoConnection && fail_fast {
                    self.flag(
                        K::NotFailedFast,
                        format!("{id} failed with {kind} instead of no_connection"),
                    );
                }
            }
            Output::Event(e) => self.on_event(*e, checker),
        }
    }

    fn on_event(&mut self, e: Event, checker: &Checker) {
        match e {
            Event::Connected { conn, .. } | Event::Reconnected { conn, .. } => {
                if self.secondary == Some(conn) {
                    self.flag(
                        K::UnexpectedEvent,
                        format!("{e}, but the connector reported a secondary and the primary is required"),
                    );
                }
                let re = matches!(e, Event::Reconnected { .. });
                // The checker's books, before this event.
                let ever = checker.ever_connected();
                let echo = !re
                    && self.cfg.connected_on_reconnect()
                    && checker.current_conn() == Some(conn);
                if re != ever && !echo {
                    self.flag(
                        K::UnexpectedEvent,
                        format!("{e} (ever connected before: {ever})"),
                    );
                }
            }
            Event::Disconnected { conn, reason, .. } => {
                self.paused = None;
                if self.heartbeat_alive {
                    self.flag(
                        K::UnexpectedEvent,
                        format!("{e} on a heartbeat answer that proves the connection alive"),
                    );
                }
                let in_flight = checker.in_flight_on(conn);
                match reason {
                    DisconnectReason::Idle if self.cfg.socket_timeout().is_none() => self.flag(
                        K::UnexpectedEvent,
                        format!("{e} but no socket timeout is configured"),
                    ),
                    DisconnectReason::Idle if in_flight > 0 => self.flag(
                        K::UnexpectedEvent,
                        format!("{e} with {in_flight} ops in flight"),
                    ),
                    DisconnectReason::Unresponsive
                        if self.cfg.heartbeat().is_none()
                            && self.cfg.response_timeout().is_none() =>
                    {
                        self.flag(
                            K::UnexpectedEvent,
                            format!("{e} but neither heartbeat nor response timeout is configured"),
                        )
                    }
                    _ => {}
                }
            }
            Event::Reconnecting {
                endpoint, attempt, ..
            } => {
                if endpoint >= self.cfg.endpoints() {
                    self.flag(K::ConnectTarget, format!("{e}: no such endpoint"));
                }
                if let Some(k) = self.cfg.fail_buffered_after() {
                    // ioredis counts closes since the last connect; the
                    // loss and every failed attempt announce one.
                    if attempt % k.saturating_add(1) == 0 {
                        self.buffer_flush = true;
                    }
                }
            }
            Event::Closed => {
                self.closed = true;
                self.paused = None;
            }
            Event::BufferOverflow { failed } => {
                if !matches!(self.cfg.buffer(), BufferPolicy::Bounded { .. }) {
                    self.flag(
                        K::UnexpectedEvent,
                        format!("{e} but the buffer is not bounded"),
                    );
                }
                self.overflow_announced += failed;
            }
            _ => {}
        }
    }

    /// What had to happen within the step (after the drain).
    pub(crate) fn after_step<P>(&mut self, m: &Machine<P>) {
        self.tick(m.now());
        if m.state() != State::Paused {
            self.paused = None;
        }
        self.secondary = None;
        self.heartbeat_alive = false;
        if core::mem::take(&mut self.buffer_flush) && m.buffered() > 0 {
            self.flag(
                K::UnexpectedOutcome,
                format!(
                    "a reconnect attempt reached `fail_buffered_after` ({:?}) but {} ops stay buffered",
                    self.cfg.fail_buffered_after(),
                    m.buffered()
                ),
            );
        }
        if self.closed_outcomes && !self.closed {
            self.flag(
                K::UnexpectedOutcome,
                "an op failed with `closed` but the client was not closed".into(),
            );
        }
        self.closed_outcomes = false;
        // What is left was neither dispatched nor completed in the step.
        let mut list = core::mem::take(&mut self.must_dispatch);
        for id in list.drain(..) {
            self.flag(
                K::NotDispatched,
                format!("{id} was submitted while connected but not dispatched"),
            );
        }
        self.must_dispatch = list;
        let mut list = core::mem::take(&mut self.must_fail_fast);
        for id in list.drain(..) {
            self.flag(
                K::NotFailedFast,
                format!("{id} was kept instead of failing at once (buffering disabled)"),
            );
        }
        self.must_fail_fast = list;
        if self.overflow_announced != self.overflow_failed {
            self.flag(
                K::OverflowCount,
                format!(
                    "buffer_overflow events announced {} failed ops, {} failed with buffer_overflow",
                    self.overflow_announced, self.overflow_failed
                ),
            );
        }
        self.overflow_announced = 0;
        self.overflow_failed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Watcher;
    use redial_core::{Completion, Duration, OpError, Tries};

    fn cfg() -> Config {
        Config::mongodb_legacy()
            .to_builder()
            .reconnect_interval(Duration::from_millis(100))
            .reconnect_tries(Tries::Limited(3))
            .build()
            .unwrap()
    }

    fn kinds(c: &Watcher) -> Vec<&'static str> {
        c.contract()
            .violations()
            .iter()
            .map(|v| v.kind.name())
            .collect()
    }

    fn failed(id: OpId, kind: ErrorKind) -> Output<()> {
        Output::Complete(Completion {
            id,
            payload: (),
            result: Err(OpError::new(kind, false, 0)),
        })
    }

    #[test]
    fn flags_fail_fast_breaches_and_overflow_miscounts() {
        let config = cfg().to_builder().buffer_max_entries(0).build().unwrap();
        let mut c = Watcher::new(&config);
        let m: Machine<()> = Machine::new(config, 1, Instant::ZERO);
        c.on_submit(
            Instant::ZERO,
            OpId::from_raw(5),
            &OpOptions::new(),
            State::Connecting,
        );
        c.after_step(&m);
        assert_eq!(kinds(&c), ["not_failed_fast"]);

        let config = cfg().to_builder().buffer_max_entries(1).build().unwrap();
        let mut c = Watcher::new(&config);
        c.on_output::<()>(
            Instant::ZERO,
            &Output::Event(Event::BufferOverflow { failed: 2 }),
        );
        let m: Machine<()> = Machine::new(config, 1, Instant::ZERO);
        c.after_step(&m);
        assert_eq!(kinds(&c), ["overflow_count"]);
    }

    #[test]
    fn flags_ops_not_dispatched_while_connected_and_early_deadlines() {
        let m: Machine<()> = Machine::new(cfg(), 1, Instant::ZERO);
        let mut c = Watcher::new(&cfg());
        let now = Instant::ZERO;
        c.on_submit(
            now,
            OpId::from_raw(500),
            &OpOptions::new(),
            State::Connected,
        );
        c.after_step(&m);
        assert_eq!(kinds(&c), ["not_dispatched"]);

        let mut c = Watcher::new(&cfg());
        let b = OpId::from_raw(501);
        let opts = OpOptions::new().deadline(Duration::from_millis(100));
        c.on_submit(now, b, &opts, State::Backoff);
        c.on_output(
            Instant::from_millis(50),
            &failed(b, ErrorKind::DeadlineExceeded),
        );
        assert_eq!(kinds(&c), ["early_deadline"]);
    }

    #[test]
    fn flags_outcomes_and_events_the_config_cannot_produce() {
        let m: Machine<()> = Machine::new(cfg(), 1, Instant::ZERO);
        let mut c = Watcher::new(&cfg()); // no buffer timeout, no heartbeat
        let a = OpId::from_raw(7);
        c.on_submit(Instant::ZERO, a, &OpOptions::new(), State::Backoff);
        c.on_output(Instant::ZERO, &failed(a, ErrorKind::BufferTimeout));
        c.on_output::<()>(
            Instant::ZERO,
            &Output::Heartbeat {
                conn: redial_core::ConnId::from_raw(1),
            },
        );
        let b = OpId::from_raw(8);
        c.on_submit(Instant::ZERO, b, &OpOptions::new(), State::Backoff);
        c.on_output(Instant::ZERO, &failed(b, ErrorKind::ConnectionLost));
        c.after_step(&m);
        assert_eq!(
            kinds(&c),
            [
                "unexpected_outcome",
                "unexpected_event",
                "unexpected_outcome"
            ]
        );
        assert!(c.contract().violations().iter().all(|v| v.invariant() == 0));
    }
}
