//! The reconnect machine.

use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;
use core::time::Duration;

use crate::config::{BufferPolicy, Config, InitialConnect, Jitter, OverflowPolicy, Tries};
use crate::event::{ConnectFailure, DisconnectReason, Event, LossKind};
use crate::op::{Completion, Done, ErrorKind, OpError, OpId, OpOptions, OpResult};
use crate::rng::Rng;
use crate::time::Instant;

/// Identifies a connect attempt and, once it succeeds, the connection it
/// became. Ids grow from 1 and are never reused; inputs naming an id that is
/// not the current attempt or connection are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
    /// Builds an id from its number (for tests and replays).
    pub fn from_raw(n: u64) -> Self {
        ConnId(n)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Where the machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum State {
    /// A connect attempt is under way.
    Connecting,
    /// A connection is up; ops are dispatched on it.
    Connected,
    /// Waiting before the next reconnect attempt.
    Backoff,
    /// Lost with auto-reconnect off: no connect will ever be started again
    /// (ops buffer or fail according to the buffer policy).
    Down,
    /// Terminal: the reconnect budget is spent ("topology was destroyed").
    Failed,
    /// Terminal: closed by the application.
    Closed,
}

impl State {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Backoff => "backoff",
            State::Down => "down",
            State::Failed => "failed",
            State::Closed => "closed",
        }
    }

    /// `Failed` or `Closed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Failed | State::Closed)
    }
}

/// Which timer [`Machine::poll_timeout`] is reporting (so "why did we wake
/// up?" has an answer). Timers due at the same instant fire in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// A connect attempt's timeout.
    ConnectTimeout,
    /// The end of a backoff delay: the next reconnect attempt starts.
    Reconnect,
    /// Time to send a heartbeat.
    HeartbeatSend,
    /// A heartbeat went unanswered.
    HeartbeatTimeout,
    /// The connection has been idle for `socket_timeout`.
    Idle,
    /// The oldest op in flight has waited `response_timeout`.
    Response,
    /// The oldest buffered op has waited `buffer_timeout`.
    BufferWait,
    /// An op's deadline.
    Deadline,
}

/// What the machine asks its driver to do, or tells the application.
///
/// Deliberately *not* `#[non_exhaustive]`: a driver must carry out every
/// output, so a new one is a breaking change that should fail to compile
/// in every driver, not be skipped by a wildcard arm.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<P> {
    /// Open a connection to endpoint `endpoint`; report the result with
    /// [`Machine::handle_connected`] or [`Machine::handle_connect_failed`].
    /// The machine also times the attempt out itself after `timeout`.
    Connect {
        /// Id of the attempt (and of the connection if it succeeds).
        conn: ConnId,
        /// Index into the seed list.
        endpoint: usize,
        /// The connect timeout, if any.
        timeout: Option<Duration>,
    },
    /// Close this connection or abandon this attempt; nothing more is
    /// expected about it. Emitted for every attempt and connection the
    /// machine forgets, whatever the reason (also after the driver reported
    /// it failed or lost): a driver frees a connection's resources when, and
    /// only when, a `Close` names it.
    Close {
        /// The connection or attempt.
        conn: ConnId,
    },
    /// Send op `op` (its payload: [`Machine::payload`]) on `conn`; report
    /// the answer with [`Machine::handle_op_result`].
    Dispatch {
        /// The op.
        op: OpId,
        /// The current connection.
        conn: ConnId,
        /// Its endpoint.
        endpoint: usize,
    },
    /// Send a heartbeat on `conn`; report the answer (or the error, read
    /// like an op's) with [`Machine::handle_heartbeat`]. Heartbeats are sent
    /// only while no op is in flight on the connection: on the ordered
    /// protocols redial drives (Redis, PostgreSQL, MySQL) a ping queued
    /// behind an op would time the op, not the link.
    Heartbeat {
        /// The current connection.
        conn: ConnId,
    },
    /// The op's one and only outcome, with its payload handed back.
    Complete(Completion<P>),
    /// Something happened.
    Event(Event),
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Buffered,
    InFlight(ConnId),
}

#[derive(Debug)]
struct Op<P> {
    id: OpId,
    payload: P,
    retryable: bool,
    max_attempts: u32,
    deadline: Option<Instant>,
    /// Dispatches, wrong-server answers included.
    attempts: u32,
    /// Dispatches that may have run (wrong-server answers excluded).
    executions: u32,
    /// Answered "wrong server" on the current dispatch: certainly not run.
    redirected: bool,
    place: Place,
    /// When it entered its current list (buffer wait / response timeouts).
    since: Instant,
    prev: u32,
    next: u32,
}

#[derive(Debug)]
struct Slot<P> {
    generation: u32,
    op: Option<Op<P>>,
}

/// An intrusive FIFO threaded through the slab.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

#[derive(Clone, Copy, Debug)]
struct Attempt {
    conn: ConnId,
    endpoint: usize,
    deadline: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    id: ConnId,
    endpoint: usize,
    idle_since: Instant,
    heartbeat_next: Option<Instant>,
    heartbeat_deadline: Option<Instant>,
}

/// The sans-IO reconnect machine. See the [crate docs](crate) for the
/// driving contract.
///
/// `P` is the op payload: whatever the driver needs to run the op (a command,
/// a closure, a unit). The machine stores it while the op is outstanding,
/// lends it out on dispatch ([`Machine::payload`]) and hands it back in the
/// op's [`Completion`].
///
/// Methods come in four groups, as in quinn-proto:
/// - **getters**: [`state`](Self::state), [`config`](Self::config),
///   [`buffered`](Self::buffered), [`in_flight`](Self::in_flight),
///   [`outstanding`](Self::outstanding), [`payload`](Self::payload),
///   [`connection`](Self::connection), [`now`](Self::now);
/// - **inputs** (`handle_*`): what the world did;
/// - **application mutators**: [`submit`](Self::submit),
///   [`cancel`](Self::cancel), [`close`](Self::close);
/// - **outputs**: [`poll_output`](Self::poll_output) and
///   [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct Machine<P> {
    cfg: Config,
    rng: Rng,
    now: Instant,
    state: State,
    slots: Vec<Slot<P>>,
    free: Vec<u32>,
    live: usize,
    buffer: List,
    inflight: List,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    with_deadline: usize,
    outputs: VecDeque<Output<P>>,
    next_conn: u64,
    attempt: Option<Attempt>,
    conn: Option<Conn>,
    reconnect_at: Option<Instant>,
    /// Endpoint of the next attempt.
    endpoint: usize,
    /// Reconnect attempts since the last loss (or since start).
    tries: u32,
    /// `tries` when the current connection came up: a connection that
    /// turns out to be the wrong server was a failed attempt, and counting
    /// resumes from here (otherwise a lone non-primary host would be
    /// redirected to for ever).
    tries_before_connect: u32,
    ever_connected: bool,
    /// Why the last connect attempt failed (cleared by a success).
    last_connect_error: Option<ConnectFailure>,
    prev_delay: Duration,
    /// Retry budget tokens, in 1/1000 token.
    tokens: u64,
}

impl<P> Machine<P> {
    /// A machine that starts connecting at `now` (the first output is a
    /// [`Output::Connect`] to endpoint 0). `seed` feeds the jitter PRNG: the
    /// same seed and inputs give the same outputs.
    pub fn new(config: Config, seed: u64, now: Instant) -> Self {
        let tokens = config.budget_milli.map_or(0, |(cap, _)| cap);
        let prev_delay = config.backoff().base();
        let mut m = Machine {
            cfg: config,
            rng: Rng::new(seed),
            now,
            state: State::Connecting,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            buffer: List::EMPTY,
            inflight: List::EMPTY,
            deadlines: BinaryHeap::new(),
            with_deadline: 0,
            outputs: VecDeque::new(),
            next_conn: 1,
            attempt: None,
            conn: None,
            reconnect_at: None,
            endpoint: 0,
            tries: 0,
            tries_before_connect: 0,
            ever_connected: false,
            last_connect_error: None,
            prev_delay,
            tokens,
        };
        m.start_attempt();
        m
    }

    // ----- getters -------------------------------------------------------

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Ops waiting in the buffer.
    pub fn buffered(&self) -> usize {
        self.buffer.len
    }

    /// Ops dispatched and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.inflight.len
    }

    /// Ops submitted that have no outcome yet (buffered + in flight).
    pub fn outstanding(&self) -> usize {
        self.live
    }

    /// The payload of an outstanding op.
    pub fn payload(&self, op: OpId) -> Option<&P> {
        self.op(op).map(|o| &o.payload)
    }

    /// The current connection and its endpoint, when connected.
    pub fn connection(&self) -> Option<(ConnId, usize)> {
        self.conn.map(|c| (c.id, c.endpoint))
    }

    /// The latest time the machine has seen.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Why the last connect attempt failed, until one succeeds. In the
    /// terminal `Failed` state: why the machine gave up (`None` when the
    /// budget ran out on lost connections alone).
    pub fn last_connect_error(&self) -> Option<ConnectFailure> {
        self.last_connect_error
    }

    /// Retry budget tokens left (whole tokens), if a budget is configured.
    pub fn retry_tokens(&self) -> Option<u64> {
        self.cfg.budget_milli.map(|_| self.tokens / 1000)
    }

    // ----- outputs -------------------------------------------------------

    /// The next output, if any. Drain this completely after every input or
    /// mutation.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout)
    /// has work to do, and why. A pure query. [`Instant::MAX`] is the end
    /// of the clock (about 584,000 years): a deadline that saturates there
    /// never fires.
    pub fn poll_timeout(&self) -> Option<(Instant, TimerKind)> {
        let mut best: Option<(Instant, TimerKind)> = None;
        let mut offer = |at: Option<Instant>, kind: TimerKind| {
            // A deadline that saturated at the end of the clock is "never":
            // firing it would schedule the next one at the same instant,
            // and `handle_timeout` would never return.
            if let Some(at) = at.filter(|at| *at != Instant::MAX) {
                if best.is_none_or(|b| (at, kind) < b) {
                    best = Some((at, kind));
                }
            }
        };
        offer(
            self.attempt.and_then(|a| a.deadline),
            TimerKind::ConnectTimeout,
        );
        offer(self.reconnect_at, TimerKind::Reconnect);
        if let Some(c) = self.conn {
            offer(c.heartbeat_deadline, TimerKind::HeartbeatTimeout);
            if self.inflight.len == 0 {
                // A ping waits for nothing: sent only while no op is in
                // flight (a ping queued behind a long op would time the op).
                offer(c.heartbeat_next, TimerKind::HeartbeatSend);
                offer(
                    self.cfg.socket_timeout().map(|t| c.idle_since + t),
                    TimerKind::Idle,
                );
            }
        }
        if let (Some(t), Some(head)) = (self.in_flight_limit(), self.head(self.inflight)) {
            offer(Some(head.since + t), TimerKind::Response);
        }
        if let (Some(t), Some(head)) = (self.cfg.buffer_timeout(), self.head(self.buffer)) {
            offer(Some(head.since + t), TimerKind::BufferWait);
        }
        offer(
            self.deadlines.peek().map(|Reverse((at, _))| *at),
            TimerKind::Deadline,
        );
        best
    }

    /// How long the oldest op in flight may wait for its answer before the
    /// connection is declared unresponsive: `response_timeout`, or, when
    /// only a heartbeat is configured, its `interval + timeout` (the time a
    /// ping would have had, had it not been held back by the op in flight).
    /// A connection that serves one op at a time and one that multiplexes
    /// are treated alike: on both, an answer queued behind an op cannot
    /// come before it, so a busy connection and a silent one look the same
    /// until this bound.
    fn in_flight_limit(&self) -> Option<Duration> {
        self.cfg.response_timeout().or_else(|| {
            self.cfg
                .heartbeat()
                .map(|h| h.interval.saturating_add(h.timeout))
        })
    }

    // ----- inputs --------------------------------------------------------

    /// The connect attempt `conn` succeeded. A late success for an attempt
    /// the machine already gave up on yields [`Output::Close`] for it.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        match self.attempt {
            Some(a) if a.conn == conn => {
                self.attempt = None;
                self.conn = Some(Conn {
                    id: conn,
                    endpoint: a.endpoint,
                    idle_since: self.now,
                    heartbeat_next: self.cfg.heartbeat().map(|h| self.now + h.interval),
                    heartbeat_deadline: None,
                });
                self.state = State::Connected;
                self.tries_before_connect = self.tries;
                self.tries = 0;
                self.last_connect_error = None;
                self.prev_delay = self.cfg.backoff().base();
                let event = if self.ever_connected {
                    Event::Reconnected {
                        conn,
                        endpoint: a.endpoint,
                    }
                } else {
                    Event::Connected {
                        conn,
                        endpoint: a.endpoint,
                    }
                };
                self.ever_connected = true;
                self.emit(event);
                self.flush_buffer();
            }
            _ => {
                let current = self.conn.is_some_and(|c| c.id == conn);
                if !current && conn.0 != 0 && conn.0 < self.next_conn {
                    // A stale attempt came through: it must not revive
                    // anything, and its socket must not leak.
                    self.outputs.push_back(Output::Close { conn });
                }
            }
        }
        self.finish();
    }

    /// The connect attempt `conn` failed, for the reason `why` (the
    /// driver's reading of the connector's error). The machine decides
    /// whether to try again ([`ConnectFailure::is_retried`]) and emits
    /// [`Output::Close`] for the attempt.
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, why: ConnectFailure) {
        self.advance(now);
        if self.attempt.is_some_and(|a| a.conn == conn) {
            self.attempt = None;
            self.outputs.push_back(Output::Close { conn });
            self.attempt_failed(why);
        }
        self.finish();
    }

    /// The connection `conn` ended (seen by the driver). A loss reported for
    /// the pending attempt counts as a failed attempt (`refused`, or
    /// `timed_out` for a [`LossKind::TimedOut`]). [`Output::Close`] follows
    /// for it.
    pub fn handle_connection_lost(&mut self, now: Instant, conn: ConnId, kind: LossKind) {
        self.advance(now);
        if self.conn.is_some_and(|c| c.id == conn) {
            self.lose(DisconnectReason::Lost(kind));
        } else if self.attempt.is_some_and(|a| a.conn == conn) {
            self.attempt = None;
            self.outputs.push_back(Output::Close { conn });
            self.attempt_failed(if kind == LossKind::TimedOut {
                ConnectFailure::TimedOut
            } else {
                ConnectFailure::Refused
            });
        }
        self.finish();
    }

    /// The answer to dispatch of `op` on `conn`. Ignored unless `op` is in
    /// flight on `conn` and `conn` is current (a late answer for an op that
    /// was cancelled, timed out or re-queued is stale).
    pub fn handle_op_result(&mut self, now: Instant, op: OpId, conn: ConnId, result: OpResult) {
        self.advance(now);
        let current = self.conn.is_some_and(|c| c.id == conn);
        let in_flight_here = self
            .op(op)
            .is_some_and(|o| o.place == Place::InFlight(conn));
        if current && in_flight_here {
            match result {
                OpResult::Ok => {
                    let idx = self.index(op).expect("checked in flight above");
                    self.unlink(idx);
                    let o = self.release(idx);
                    let c = self.conn.expect("checked current above");
                    if let Some((cap, refund)) = self.cfg.budget_milli {
                        self.tokens = (self.tokens + refund).min(cap);
                    }
                    self.outputs.push_back(Output::Complete(Completion {
                        id: o.id,
                        payload: o.payload,
                        result: Ok(Done {
                            conn,
                            endpoint: c.endpoint,
                            attempts: o.attempts,
                        }),
                    }));
                    self.touch_idle();
                }
                OpResult::ServerError => {
                    let idx = self.index(op).expect("checked in flight above");
                    self.unlink(idx);
                    self.fail(idx, ErrorKind::ServerError);
                    self.touch_idle();
                }
                OpResult::ConnectionLost => {
                    self.lose(DisconnectReason::Lost(LossKind::Reset));
                }
                OpResult::WrongServer => {
                    let idx = self.index(op).expect("checked in flight above");
                    let o = self.slots[idx as usize].op.as_mut().expect("live");
                    o.redirected = true;
                    o.executions = o.executions.saturating_sub(1);
                    // Try the next endpoint: this one is not the primary.
                    self.endpoint = (self.endpoint + 1) % self.cfg.endpoints();
                    self.lose(DisconnectReason::WrongServer);
                }
            }
        }
        self.finish();
    }

    /// The heartbeat on `conn` was answered: shorthand for
    /// [`handle_heartbeat`](Self::handle_heartbeat) with [`OpResult::Ok`].
    pub fn handle_heartbeat_ok(&mut self, now: Instant, conn: ConnId) {
        self.handle_heartbeat(now, conn, OpResult::Ok);
    }

    /// The heartbeat on `conn` finished with `result`, read like an op's:
    /// an answer of any kind (`Ok`, `ServerError`, `WrongServer`) proves the
    /// connection alive; `ConnectionLost` loses it. Ignored unless `conn`
    /// is current.
    pub fn handle_heartbeat(&mut self, now: Instant, conn: ConnId, result: OpResult) {
        self.advance(now);
        if self.conn.is_some_and(|c| c.id == conn) {
            if result == OpResult::ConnectionLost {
                self.lose(DisconnectReason::Lost(LossKind::Reset));
            } else if let (Some(c), Some(h)) = (self.conn.as_mut(), self.cfg.heartbeat()) {
                if c.heartbeat_deadline.is_some() {
                    c.heartbeat_deadline = None;
                    c.heartbeat_next = Some(self.now + h.interval);
                }
            }
        }
        self.finish();
    }

    /// Time has passed: fire every timer due at or before `now`. Safe to
    /// call spuriously (early, late, or twice).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        while let Some((at, kind)) = self.poll_timeout() {
            if at > self.now {
                break;
            }
            self.fire(kind);
            self.prune_deadlines();
        }
        self.finish();
    }

    // ----- application mutators -------------------------------------------

    /// Submits an op. Its outcome arrives later as an [`Output::Complete`]
    /// (possibly right away, e.g. with buffering off while disconnected).
    pub fn submit(&mut self, now: Instant, payload: P, options: OpOptions) -> OpId {
        self.advance(now);
        let deadline = options
            .deadline
            .or(self.cfg.op_deadline())
            .map(|d| self.now + d);
        let idx = self.alloc(Op {
            id: OpId(0),
            payload,
            retryable: options.retryable,
            max_attempts: if options.retryable {
                options
                    .max_attempts
                    .unwrap_or(self.cfg.max_op_attempts())
                    .max(1)
            } else {
                1
            },
            deadline,
            attempts: 0,
            executions: 0,
            redirected: false,
            place: Place::Buffered,
            since: self.now,
            prev: NIL,
            next: NIL,
        });
        let id = self.slots[idx as usize]
            .op
            .as_ref()
            .expect("just allocated")
            .id;
        if let Some(at) = deadline {
            self.deadlines.push(Reverse((at, id.0)));
            self.with_deadline += 1;
        }
        match self.state {
            State::Closed => self.fail(idx, ErrorKind::Closed),
            State::Failed => self.fail(idx, ErrorKind::TopologyDestroyed),
            State::Connected => self.dispatch(idx),
            State::Connecting | State::Backoff | State::Down => self.enqueue(idx),
        }
        self.finish();
        id
    }

    /// Cancels an outstanding op: it completes with `cancelled` (and
    /// `maybe_executed` if it was dispatched). Unknown or finished ops are ignored.
    pub fn cancel(&mut self, now: Instant, op: OpId) {
        self.advance(now);
        if let Some(idx) = self.index(op) {
            let was_in_flight = matches!(
                self.slots[idx as usize].op.as_ref().map(|o| o.place),
                Some(Place::InFlight(_))
            );
            self.unlink(idx);
            self.fail(idx, ErrorKind::Cancelled);
            if was_in_flight {
                self.touch_idle();
            }
        }
        self.finish();
    }

    /// Closes the client: the connection (or attempt) is closed, every
    /// outstanding op completes with `closed`, later ops fail with `closed`,
    /// and [`Event::Closed`] is emitted once. Idempotent.
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        if self.state != State::Closed {
            if let Some(a) = self.attempt.take() {
                self.outputs.push_back(Output::Close { conn: a.conn });
            }
            if let Some(c) = self.conn.take() {
                self.outputs.push_back(Output::Close { conn: c.id });
            }
            self.reconnect_at = None;
            self.fail_list(true, ErrorKind::Closed);
            self.fail_list(false, ErrorKind::Closed);
            self.state = State::Closed;
            self.emit(Event::Closed);
        }
        self.finish();
    }

    // ----- internals: connection life ------------------------------------

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside the machine.
        if now > self.now {
            self.now = now;
        }
    }

    fn finish(&mut self) {
        self.prune_deadlines();
    }

    fn emit(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    fn start_attempt(&mut self) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let timeout = self.cfg.connect_timeout();
        self.attempt = Some(Attempt {
            conn,
            endpoint: self.endpoint,
            deadline: timeout.map(|t| self.now + t),
        });
        self.state = State::Connecting;
        self.outputs.push_back(Output::Connect {
            conn,
            endpoint: self.endpoint,
            timeout,
        });
    }

    fn attempt_failed(&mut self, why: ConnectFailure) {
        self.endpoint = (self.endpoint + 1) % self.cfg.endpoints();
        self.last_connect_error = Some(why);
        if !why.is_retried() {
            self.give_up();
            return;
        }
        if !self.ever_connected
            && self.tries == 0
            && self.cfg.initial_connect() == InitialConnect::FailFast
        {
            self.give_up();
            return;
        }
        self.retry_or_give_up();
    }

    fn retry_or_give_up(&mut self) {
        match self.cfg.reconnect_tries() {
            Tries::Limited(n) if self.tries >= n => self.give_up(),
            _ => self.schedule_reconnect(),
        }
    }

    fn schedule_reconnect(&mut self) {
        self.tries = self.tries.saturating_add(1);
        let delay = self.jittered_delay(self.tries);
        self.reconnect_at = Some(self.now + delay);
        self.state = State::Backoff;
        self.emit(Event::Reconnecting {
            attempt: self.tries,
            delay,
            endpoint: self.endpoint,
            error: self.last_connect_error,
        });
    }

    fn jittered_delay(&mut self, n: u32) -> Duration {
        let backoff = self.cfg.backoff();
        let d = backoff.nominal(n);
        let delay = match self.cfg.jitter() {
            Jitter::None => d,
            Jitter::Full => self.draw(Duration::ZERO, d),
            Jitter::Equal => self.draw(d / 2, d),
            Jitter::Decorrelated => {
                let base = backoff.base();
                let hi = self
                    .prev_delay
                    .saturating_mul(3)
                    .min(backoff.cap())
                    .max(base);
                self.draw(base, hi)
            }
        };
        self.prev_delay = delay;
        delay
    }

    /// A delay drawn uniformly in whole microseconds from `[lo, hi]`
    /// (`lo <= hi`), so it always lies within
    /// [`Config::reconnect_delay_bounds`]. Fix: the bounds used to be
    /// truncated to microseconds first, so equal jitter on an odd number of
    /// microseconds (nominal 3 µs: bounds [1.5 µs, 3 µs]) could draw 1 µs,
    /// below its lower bound; the lower end is now rounded up. When no whole
    /// microsecond lies in the range (sub-microsecond spans), `lo` itself.
    fn draw(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_us = u64::try_from(lo.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX);
        let hi_us = crate::time::duration_micros(hi);
        if lo_us > hi_us {
            return lo;
        }
        Duration::from_micros(self.rng.between(lo_us, hi_us))
    }

    fn give_up(&mut self) {
        self.state = State::Failed;
        self.reconnect_at = None;
        self.emit(Event::ReconnectFailed {
            attempts: self.tries,
            error: self.last_connect_error,
        });
        self.fail_list(false, ErrorKind::ReconnectFailed);
    }

    /// The current connection is gone (the driver saw it end, or the
    /// machine drops it): the driver is told to close it.
    fn lose(&mut self, reason: DisconnectReason) {
        let c = self
            .conn
            .take()
            .expect("lose() is only called with a connection");
        self.outputs.push_back(Output::Close { conn: c.id });
        self.emit(Event::Disconnected {
            conn: c.id,
            endpoint: c.endpoint,
            reason,
        });
        // Ops in flight: re-queue (in dispatch order, ahead of nothing: the
        // buffer is empty while connected) or fail.
        while self.inflight.head != NIL {
            let idx = self.inflight.head;
            self.unlink(idx);
            let o = self.slots[idx as usize]
                .op
                .as_mut()
                .expect("listed ops are live");
            if o.redirected {
                o.redirected = false;
                self.requeue(idx, ErrorKind::NoConnection);
                continue;
            }
            let wants_retry = o.retryable && o.executions < o.max_attempts;
            if self.cfg.budget_milli.is_some() {
                self.tokens = self.tokens.saturating_sub(1000);
            }
            if !wants_retry {
                self.fail(idx, ErrorKind::ConnectionLost);
            } else if !self.budget_allows_retry() {
                self.fail(idx, ErrorKind::RetryBudgetExhausted);
            } else {
                self.requeue(idx, ErrorKind::ConnectionLost);
            }
        }
        if self.cfg.auto_reconnect() {
            self.tries = if reason == DisconnectReason::WrongServer {
                self.tries_before_connect
            } else {
                0
            };
            self.retry_or_give_up();
        } else {
            self.state = State::Down;
        }
    }

    fn budget_allows_retry(&self) -> bool {
        match self.cfg.budget_milli {
            None => true,
            Some((cap, _)) => self.tokens * 2 > cap,
        }
    }

    // ----- internals: timers ----------------------------------------------

    fn fire(&mut self, kind: TimerKind) {
        match kind {
            TimerKind::ConnectTimeout => {
                if let Some(a) = self.attempt.take() {
                    self.outputs.push_back(Output::Close { conn: a.conn });
                    self.attempt_failed(ConnectFailure::TimedOut);
                }
            }
            TimerKind::Reconnect => {
                self.reconnect_at = None;
                self.start_attempt();
            }
            TimerKind::HeartbeatSend => {
                let timeout = self.cfg.heartbeat().map(|h| h.timeout);
                if let (Some(c), Some(t)) = (self.conn.as_mut(), timeout) {
                    c.heartbeat_next = None;
                    c.heartbeat_deadline = Some(self.now + t);
                    let conn = c.id;
                    self.outputs.push_back(Output::Heartbeat { conn });
                }
            }
            TimerKind::HeartbeatTimeout | TimerKind::Response => {
                if let Some(c) = self.conn {
                    self.emit(Event::Unresponsive { conn: c.id });
                    self.lose(DisconnectReason::Unresponsive);
                }
            }
            TimerKind::Idle => {
                if self.conn.is_some() {
                    self.lose(DisconnectReason::Idle);
                }
            }
            TimerKind::BufferWait => {
                let idx = self.buffer.head;
                if idx != NIL {
                    self.unlink(idx);
                    self.fail(idx, ErrorKind::BufferTimeout);
                }
            }
            TimerKind::Deadline => {
                if let Some(Reverse((_, raw))) = self.deadlines.pop() {
                    if let Some(idx) = self.index(OpId(raw)) {
                        let was_in_flight = matches!(
                            self.slots[idx as usize].op.as_ref().map(|o| o.place),
                            Some(Place::InFlight(_))
                        );
                        self.unlink(idx);
                        self.fail(idx, ErrorKind::DeadlineExceeded);
                        if was_in_flight {
                            self.touch_idle();
                        }
                    }
                }
            }
        }
    }

    /// Drops stale entries from the top of the deadline heap, and compacts
    /// it when stale entries dominate, so that `poll_timeout` is exact and
    /// memory stays proportional to outstanding ops.
    fn prune_deadlines(&mut self) {
        while let Some(Reverse((at, raw))) = self.deadlines.peek().copied() {
            if self.op(OpId(raw)).is_some_and(|o| o.deadline == Some(at)) {
                break;
            }
            self.deadlines.pop();
        }
        if self.deadlines.len() > 2 * self.with_deadline + 64 {
            let slots = &self.slots;
            self.deadlines.retain(|Reverse((at, raw))| {
                lookup(slots, OpId(*raw)).is_some_and(|o| o.deadline == Some(*at))
            });
        }
    }

    /// An op in flight finished: if none is left, the idle clock starts.
    fn touch_idle(&mut self) {
        let now = self.now;
        if self.inflight.len == 0 {
            if let Some(c) = self.conn.as_mut() {
                c.idle_since = now;
            }
        }
    }

    // ----- internals: ops --------------------------------------------------

    fn dispatch(&mut self, idx: u32) {
        let c = self.conn.expect("dispatch only while connected");
        let now = self.now;
        let o = self.slots[idx as usize].op.as_mut().expect("live");
        o.attempts = o.attempts.saturating_add(1);
        o.executions = o.executions.saturating_add(1);
        o.place = Place::InFlight(c.id);
        o.since = now;
        let op = o.id;
        self.link_back(idx, false);
        self.outputs.push_back(Output::Dispatch {
            op,
            conn: c.id,
            endpoint: c.endpoint,
        });
    }

    fn flush_buffer(&mut self) {
        while self.buffer.head != NIL {
            let idx = self.buffer.head;
            self.unlink(idx);
            self.dispatch(idx);
        }
    }

    /// A new op arrives while disconnected.
    fn enqueue(&mut self, idx: u32) {
        match self.cfg.buffer() {
            BufferPolicy::Disabled => self.fail(idx, ErrorKind::NoConnection),
            BufferPolicy::Unbounded => self.link_back(idx, true),
            BufferPolicy::Bounded { max, overflow } => {
                if self.buffer.len < max {
                    self.link_back(idx, true);
                    return;
                }
                match overflow {
                    OverflowPolicy::FailAll => {
                        self.emit(Event::BufferOverflow {
                            failed: self.buffer.len + 1,
                        });
                        self.fail_list(false, ErrorKind::BufferOverflow);
                        self.fail(idx, ErrorKind::BufferOverflow);
                    }
                    OverflowPolicy::RejectNew => {
                        self.emit(Event::BufferOverflow { failed: 1 });
                        self.fail(idx, ErrorKind::BufferOverflow);
                    }
                    OverflowPolicy::DropOldest => {
                        self.emit(Event::BufferOverflow { failed: 1 });
                        let oldest = self.buffer.head;
                        self.unlink(oldest);
                        self.fail(oldest, ErrorKind::BufferOverflow);
                        self.link_back(idx, true);
                    }
                }
            }
        }
    }

    /// Puts an op that came back from the wire into the buffer, if the
    /// buffer policy leaves room; otherwise it fails with `otherwise`.
    fn requeue(&mut self, idx: u32, otherwise: ErrorKind) {
        let room = self
            .cfg
            .buffer()
            .bound()
            .is_none_or(|max| self.buffer.len < max);
        if room {
            self.link_back(idx, true);
        } else {
            self.fail(idx, otherwise);
        }
    }

    /// Fails every op of a list (buffer or in flight) in order.
    fn fail_list(&mut self, in_flight: bool, kind: ErrorKind) {
        loop {
            let idx = if in_flight {
                self.inflight.head
            } else {
                self.buffer.head
            };
            if idx == NIL {
                break;
            }
            self.unlink(idx);
            self.fail(idx, kind);
        }
    }

    /// Completes an unlinked op with an error.
    fn fail(&mut self, idx: u32, kind: ErrorKind) {
        let o = self.release(idx);
        let reconnect = matches!(
            kind,
            ErrorKind::ReconnectFailed | ErrorKind::TopologyDestroyed
        )
        .then_some((
            self.tries,
            self.cfg.backoff(),
            !self.ever_connected,
            self.last_connect_error,
        ));
        self.outputs.push_back(Output::Complete(Completion {
            id: o.id,
            payload: o.payload,
            result: Err(OpError {
                kind,
                maybe_executed: o.executions > 0,
                attempts: o.attempts,
                reconnect,
            }),
        }));
    }

    // ----- internals: slab and lists ----------------------------------------

    fn alloc(&mut self, mut op: Op<P>) -> u32 {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    op: None,
                });
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 outstanding ops")
            }
        };
        let slot = &mut self.slots[idx as usize];
        // Never wraps: a slot at the last generation is retired (release).
        slot.generation += 1;
        op.id = OpId(u64::from(slot.generation) << 32 | u64::from(idx));
        slot.op = Some(op);
        self.live += 1;
        idx
    }

    fn release(&mut self, idx: u32) -> Op<P> {
        let o = self.slots[idx as usize]
            .op
            .take()
            .expect("release of a live op");
        // Ids are never reused: a slot whose generation would wrap (2^32
        // ops through it) is retired, costing one slot per 2^32 ops.
        if self.slots[idx as usize].generation < u32::MAX {
            self.free.push(idx);
        }
        self.live -= 1;
        if o.deadline.is_some() {
            self.with_deadline -= 1;
        }
        o
    }

    fn index(&self, id: OpId) -> Option<u32> {
        lookup(&self.slots, id).map(|_| (id.0 & 0xFFFF_FFFF) as u32)
    }

    fn op(&self, id: OpId) -> Option<&Op<P>> {
        lookup(&self.slots, id)
    }

    fn head(&self, list: List) -> Option<&Op<P>> {
        (list.head != NIL).then(|| self.slots[list.head as usize].op.as_ref().expect("live"))
    }

    fn list_mut(&mut self, buffered: bool) -> &mut List {
        if buffered {
            &mut self.buffer
        } else {
            &mut self.inflight
        }
    }

    /// Appends an unlinked op to the buffer (`buffered`) or the in-flight list.
    fn link_back(&mut self, idx: u32, buffered: bool) {
        let now = self.now;
        let tail = self.list_mut(buffered).tail;
        {
            let o = self.slots[idx as usize].op.as_mut().expect("live");
            o.prev = tail;
            o.next = NIL;
            if buffered {
                o.place = Place::Buffered;
                o.since = now;
            }
        }
        if tail != NIL {
            self.slots[tail as usize].op.as_mut().expect("live").next = idx;
        }
        let list = self.list_mut(buffered);
        if list.head == NIL {
            list.head = idx;
        }
        list.tail = idx;
        list.len += 1;
    }

    /// Removes an op from whichever list holds it.
    fn unlink(&mut self, idx: u32) {
        let (prev, next, buffered) = {
            let o = self.slots[idx as usize].op.as_mut().expect("live");
            let r = (o.prev, o.next, o.place == Place::Buffered);
            o.prev = NIL;
            o.next = NIL;
            r
        };
        if prev != NIL {
            self.slots[prev as usize].op.as_mut().expect("live").next = next;
        }
        if next != NIL {
            self.slots[next as usize].op.as_mut().expect("live").prev = prev;
        }
        let list = self.list_mut(buffered);
        if list.head == idx {
            list.head = next;
        }
        if list.tail == idx {
            list.tail = prev;
        }
        list.len -= 1;
    }
}

fn lookup<P>(slots: &[Slot<P>], id: OpId) -> Option<&Op<P>> {
    let idx = (id.0 & 0xFFFF_FFFF) as usize;
    let generation = (id.0 >> 32) as u32;
    slots
        .get(idx)
        .filter(|s| s.generation == generation)
        .and_then(|s| s.op.as_ref())
        .filter(|o| o.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_are_never_reused_even_after_2_pow_32_ops_through_a_slot() {
        let mut m: Machine<u32> = Machine::new(Config::mongodb_legacy(), 1, Instant::ZERO);
        let first = m.submit(Instant::ZERO, 1, OpOptions::new());
        m.cancel(Instant::ZERO, first);
        // Fast-forward slot 0 to its last generation.
        m.slots[0].generation = u32::MAX - 1;
        let last = m.submit(Instant::ZERO, 2, OpOptions::new());
        assert_eq!(last.get(), u64::from(u32::MAX) << 32);
        m.cancel(Instant::ZERO, last);
        // Slot 0 is retired: the next op gets a fresh slot, not generation 0.
        let next = m.submit(Instant::ZERO, 3, OpOptions::new());
        assert_eq!(next.get(), 1 << 32 | 1);
        assert!(m.payload(last).is_none() && m.payload(next) == Some(&3));
    }
}
