//! The reconnect machine.
//!
//! [`Machine`] itself — its inputs, state transitions and policy decisions —
//! lives here; its parts live in submodules: the op slab and its lists
//! (`ops`), reconnect delays (`backoff`), the retry budget (`budget`) and
//! the public vocabulary (`types`).

use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::time::Duration;

use crate::config::{BufferPolicy, Config, GiveUp, InitialConnect, OverflowPolicy, Tries};
use crate::event::{ConnectFailure, DisconnectReason, Event, LossKind, Role};
use crate::op::{Completion, Done, ErrorKind, OpError, OpId, OpOptions, OpResult};
use crate::time::Instant;

mod backoff;
mod budget;
mod ops;
mod types;

use backoff::Delays;
use budget::TokenBucket;
use ops::{Op, Ops, Place, Queue};
pub use types::{ConnId, GaveUp, Output, State, Stats, TimerKind};

/// The shortest wait after a pushback, whatever the hint or the backoff
/// says: a server that refuses at once is never probed in a tight loop.
const MIN_PUSHBACK_WAIT: Duration = Duration::from_millis(1);

/// The longest wait a server's pushback hint can impose: a hint of a year
/// must not hold a healthy connection for a year.
pub const MAX_PUSHBACK_HINT: Duration = Duration::from_secs(60);

/// The counters behind [`Stats`]: O(1) to keep, no allocation.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    connect_attempts: u64,
    connects: u64,
    reconnects: u64,
    retries: u64,
    requeues: u64,
    /// Time without a connection up to the machine's `now`.
    disconnected: Duration,
}

/// Whether the machine has no connection in `state` (the time spent in it
/// counts in [`Stats::disconnected`]).
fn without_connection(state: State) -> bool {
    matches!(
        state,
        State::Connecting | State::Backoff | State::Down | State::Failed
    )
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
    /// Server pushback: dispatches are held until then (state `Paused`).
    hold_until: Option<Instant>,
    /// Consecutive pushbacks (the wait grows with the backoff).
    pushbacks: u32,
    /// The one op sent to see whether the server takes work again.
    probe: Option<OpId>,
    /// An op succeeded on it: it was a working primary, so leaving it as a
    /// wrong server later starts a fresh reconnect count.
    served: bool,
    /// When it came up (quick reconnects retry a lost connection at once
    /// only if it lived long enough).
    up_since: Instant,
}

/// What the delay before the next reconnect attempt is paced by, under
/// [`QuickReconnect`](crate::QuickReconnect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// The loss of an established connection; `young` if it was up less
    /// than [`QuickReconnect::MIN_UPTIME`](crate::QuickReconnect::MIN_UPTIME).
    Loss { young: bool },
    /// A failed attempt, and why.
    Failed(ConnectFailure),
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
///   [`connection`](Self::connection), [`now`](Self::now),
///   [`attempts`](Self::attempts), [`stats`](Self::stats);
/// - **inputs** (`handle_*`): what the world did;
/// - **application mutators**: [`submit`](Self::submit),
///   [`cancel`](Self::cancel), [`close`](Self::close);
/// - **outputs**: [`poll_output`](Self::poll_output) and
///   [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct Machine<P> {
    cfg: Config,
    now: Instant,
    state: State,
    /// The outstanding ops, buffered and in flight.
    ops: Ops<P>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// When each buffered op's buffer wait ends (`buffer_timeout` after it
    /// entered the buffer), with lazy deletion like `deadlines`: ops put
    /// back ahead of older ones (refused, lost) make the buffer's head no
    /// longer the first to expire.
    buffer_waits: BinaryHeap<Reverse<(Instant, u64)>>,
    /// When each op in flight with a command timeout gives up on its
    /// dispatch (`since + command_timeout`), with lazy deletion like
    /// `deadlines`.
    command_waits: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The `earliest_send` limit the buffer was last swept for.
    swept_limit: Option<Instant>,
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
    /// Under quick reconnects: the attempts since the loss whose delay the
    /// backoff paced (the backoff's attempt number); `paced_before_connect`
    /// is kept like `tries_before_connect`.
    paced: u32,
    paced_before_connect: u32,
    ever_connected: bool,
    /// Why the last connect attempt failed (cleared by a success).
    last_connect_error: Option<ConnectFailure>,
    /// Reconnect delays (the jitter PRNG lives here).
    delays: Delays,
    /// Retry budget tokens.
    budget: TokenBucket,
    /// Submission counter (ops re-queued go back in submission order).
    next_seq: u64,
    /// The op last put back into the buffer in order (where the next
    /// ordered insert starts looking).
    requeue_hint: Option<OpId>,
    /// When the connection was lost (or the machine started): the clock of
    /// [`GaveUp::since_loss`].
    lost_at: Instant,
    /// Why the machine gave up, until it connects or is revived.
    gave_up: Option<GaveUp>,
    /// Every connect attempt so far found a secondary (no other failure):
    /// a fail-fast first connect is still walking the seed list.
    only_secondaries: bool,
    /// What [`Machine::stats`] reports.
    counts: Counts,
}

impl<P> Machine<P> {
    /// A machine that starts connecting at `now` (the first output is a
    /// [`Output::Connect`] to endpoint 0). `seed` feeds the jitter PRNG: the
    /// same seed and inputs give the same outputs.
    pub fn new(config: Config, seed: u64, now: Instant) -> Self {
        let budget = TokenBucket::new(config.budget_milli);
        let delays = Delays::new(seed, config.backoff());
        let mut m = Machine {
            cfg: config,
            now,
            state: State::Connecting,
            ops: Ops::new(),
            deadlines: BinaryHeap::new(),
            buffer_waits: BinaryHeap::new(),
            command_waits: BinaryHeap::new(),
            swept_limit: None,
            outputs: VecDeque::new(),
            next_conn: 1,
            attempt: None,
            conn: None,
            reconnect_at: None,
            endpoint: 0,
            tries: 0,
            tries_before_connect: 0,
            paced: 0,
            paced_before_connect: 0,
            ever_connected: false,
            last_connect_error: None,
            delays,
            budget,
            next_seq: 0,
            requeue_hint: None,
            lost_at: now,
            gave_up: None,
            only_secondaries: true,
            counts: Counts::default(),
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
        self.ops.len(Queue::Buffer)
    }

    /// Ops dispatched and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.ops.len(Queue::InFlight)
    }

    /// Ops submitted that have no outcome yet (buffered + in flight).
    pub fn outstanding(&self) -> usize {
        self.ops.live()
    }

    /// The payload of an outstanding op.
    pub fn payload(&self, op: OpId) -> Option<&P> {
        self.ops.get(op).map(|o| &o.payload)
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

    /// Why the machine gave up reconnecting (attempts, time since the loss,
    /// the last connect error): set by the give-up — in the terminal
    /// `Failed` state, or during a [`GiveUp::CoolDown`] — until the next
    /// connection or [`revive`](Self::revive).
    pub fn gave_up(&self) -> Option<GaveUp> {
        self.gave_up
    }

    /// Retry budget tokens left (whole tokens), if a budget is configured.
    pub fn retry_tokens(&self) -> Option<u64> {
        self.budget.whole_tokens()
    }

    /// How many times `op` was dispatched so far (`None`: not outstanding).
    pub fn attempts(&self, op: OpId) -> Option<u32> {
        self.ops.get(op).map(|o| o.attempts)
    }

    /// A snapshot of the counters and gauges (see [`Stats`]). `now` only
    /// extends [`Stats::disconnected`] from the machine's last input to
    /// `now` (a `now` earlier than [`now`](Self::now) counts as it): a pure
    /// query, the machine is not advanced.
    pub fn stats(&self, now: Instant) -> Stats {
        let c = self.counts;
        let mut disconnected = c.disconnected;
        if without_connection(self.state) {
            disconnected = disconnected.saturating_add(now.saturating_duration_since(self.now));
        }
        Stats {
            state: self.state,
            buffered: self.buffered(),
            in_flight: self.in_flight(),
            connect_attempts: c.connect_attempts,
            connects: c.connects,
            reconnects: c.reconnects,
            retries: c.retries,
            requeues: c.requeues,
            retry_tokens: self.retry_tokens(),
            disconnected,
            last_connect_error: self.last_connect_error,
        }
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
            offer(c.hold_until, TimerKind::Probe);
            offer(c.heartbeat_deadline, TimerKind::HeartbeatTimeout);
            if self.ops.len(Queue::InFlight) == 0 {
                // A ping waits for nothing: sent only while no op is in
                // flight (a ping queued behind a long op would time the op).
                offer(c.heartbeat_next, TimerKind::HeartbeatSend);
                offer(
                    self.cfg.socket_timeout().map(|t| c.idle_since + t),
                    TimerKind::Idle,
                );
            }
        }
        if let (Some(t), Some(head)) = (self.in_flight_limit(), self.ops.head(Queue::InFlight)) {
            offer(Some(head.since + t), TimerKind::Response);
        }
        offer(
            self.buffer_waits.peek().map(|Reverse((at, _))| *at),
            TimerKind::BufferWait,
        );
        offer(
            self.deadlines.peek().map(|Reverse((at, _))| *at),
            TimerKind::Deadline,
        );
        offer(
            self.command_waits.peek().map(|Reverse((at, _))| *at),
            TimerKind::Command,
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
    /// Same as [`handle_connected_as`](Self::handle_connected_as) with
    /// [`Role::Unknown`].
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        self.handle_connected_as(now, conn, Role::Unknown);
    }

    /// The connect attempt `conn` succeeded and the connector found the
    /// server in `role`. With [`Config::require_primary`], a
    /// [`Role::Secondary`] is refused before anything is dispatched or
    /// announced: the attempt fails with [`ConnectFailure::NotPrimary`]
    /// ([`Output::Close`] follows) and the next endpoint is tried.
    pub fn handle_connected_as(&mut self, now: Instant, conn: ConnId, role: Role) {
        self.advance(now);
        if self.cfg.require_primary()
            && role == Role::Secondary
            && self.attempt.is_some_and(|a| a.conn == conn)
        {
            self.attempt = None;
            self.outputs.push_back(Output::Close { conn });
            self.attempt_failed(ConnectFailure::NotPrimary);
            self.finish();
            return;
        }
        match self.attempt {
            Some(a) if a.conn == conn => {
                self.attempt = None;
                self.conn = Some(Conn {
                    id: conn,
                    endpoint: a.endpoint,
                    idle_since: self.now,
                    heartbeat_next: self.cfg.heartbeat().map(|h| self.now + h.interval),
                    heartbeat_deadline: None,
                    hold_until: None,
                    pushbacks: 0,
                    probe: None,
                    served: false,
                    up_since: self.now,
                });
                self.state = State::Connected;
                self.counts.connects += 1;
                if self.ever_connected {
                    self.counts.reconnects += 1;
                }
                self.gave_up = None;
                self.requeue_hint = None;
                self.tries_before_connect = self.tries;
                self.tries = 0;
                self.paced_before_connect = self.paced;
                self.paced = 0;
                self.last_connect_error = None;
                self.delays.reset(self.cfg.backoff());
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
                let echo = self.ever_connected && self.cfg.connected_on_reconnect();
                self.ever_connected = true;
                self.emit(event);
                if echo {
                    // mongoose: `connected` comes with every `reconnected`.
                    self.emit(Event::Connected {
                        conn,
                        endpoint: a.endpoint,
                    });
                }
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
            .ops
            .get(op)
            .is_some_and(|o| o.place == Place::InFlight(conn));
        if current && in_flight_here {
            match result {
                OpResult::Ok => {
                    let idx = self.ops.index(op).expect("checked in flight above");
                    self.ops.unlink(idx);
                    let o = self.ops.release(idx);
                    let c = self.conn.expect("checked current above");
                    if let Some(cur) = self.conn.as_mut() {
                        cur.served = true;
                    }
                    self.budget.refund();
                    self.outputs.push_back(Output::Complete(Completion {
                        id: o.id,
                        payload: o.payload,
                        result: Ok(Done {
                            conn,
                            endpoint: c.endpoint,
                            attempts: o.attempts,
                            runs: o.executions,
                        }),
                    }));
                    self.touch_idle();
                    self.answered(op);
                }
                OpResult::ServerError => {
                    let idx = self.ops.index(op).expect("checked in flight above");
                    self.ops.unlink(idx);
                    self.fail(idx, ErrorKind::ServerError);
                    self.touch_idle();
                    self.answered(op);
                }
                OpResult::ConnectionLost => {
                    self.lose(DisconnectReason::Lost(LossKind::Reset));
                }
                OpResult::WrongServer => {
                    let idx = self.take_refused(op);
                    self.requeue(idx, ErrorKind::NoConnection);
                    self.touch_idle();
                    if self.state != State::Draining {
                        // Nothing more goes to this server; the next
                        // endpoint is tried once what is in flight here
                        // has come back (`finish` ends the drain).
                        self.state = State::Draining;
                        self.endpoint = (self.endpoint + 1) % self.cfg.endpoints();
                        if let Some(c) = self.conn.as_mut() {
                            c.hold_until = None;
                            c.probe = None;
                        }
                    }
                }
                OpResult::Pushback { retry_after } => {
                    // Refusing an op sent again is refusing a retry: it is
                    // charged to the retry budget, and when the budget says
                    // no the op fails now, `server_busy` — it did not run.
                    // (Decided on the refusal, not before a probe: a server
                    // that has recovered meets its probe.)
                    let retried = self.ops.get(op).is_some_and(|o| o.attempts > 1);
                    if retried {
                        self.budget.charge();
                    }
                    let idx = self.take_refused(op);
                    if retried && !self.budget.allows_retry() {
                        self.fail(idx, ErrorKind::ServerBusy);
                    } else {
                        self.requeue(idx, ErrorKind::ServerBusy);
                    }
                    self.touch_idle();
                    if self.state == State::Draining {
                        // Leaving anyway: the refusal only puts it back.
                    } else if self.state == State::Connected
                        || self.conn.is_some_and(|c| c.probe == Some(op))
                    {
                        let c = self.conn.as_mut().expect("checked current above");
                        c.pushbacks = c.pushbacks.saturating_add(1);
                        c.probe = None;
                        let n = c.pushbacks;
                        // The server's hint (a zero hint is no hint; at most
                        // MAX_PUSHBACK_HINT), else the backoff; never
                        // shorter than 1 ms.
                        let wait = match retry_after.filter(|d| !d.is_zero()) {
                            Some(hint) => hint.min(MAX_PUSHBACK_HINT),
                            None => self.cfg.backoff().nominal(n),
                        }
                        .max(MIN_PUSHBACK_WAIT);
                        let c = self.conn.as_mut().expect("checked current above");
                        c.hold_until = Some(self.now.saturating_add(wait));
                        self.state = State::Paused;
                    }
                    // Another op refused while already paused: the wait
                    // under way covers it.
                }
            }
        }
        self.finish();
    }

    /// An op in flight was refused by the server (wrong server or
    /// pushback): it did not run. Takes it off the wire and takes back the
    /// execution its dispatch counted; the caller puts it back in line
    /// (submission order, whatever its retry settings) or fails it.
    fn take_refused(&mut self, op: OpId) -> u32 {
        let idx = self.ops.index(op).expect("refused ops are in flight");
        self.ops.unlink(idx);
        let o = self.ops.at_mut(idx);
        o.executions = o.executions.saturating_sub(1);
        idx
    }

    /// `op` was answered (ok or a server error): if it was the probe of a
    /// paused connection, the server takes work again.
    fn answered(&mut self, op: OpId) {
        if self.state != State::Paused {
            return;
        }
        if let Some(c) = self.conn.as_mut() {
            if c.probe == Some(op) {
                c.probe = None;
                c.pushbacks = 0;
                c.hold_until = None;
                self.state = State::Connected;
                self.flush_buffer();
            }
        }
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
            self.settle();
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
        let mut op = Op::new(payload, deadline, self.now);
        op.command_timeout = options.command_timeout.or(self.cfg.command_timeout());
        op.seq = self.next_seq;
        self.next_seq += 1;
        if options.is_retryable(&self.cfg) {
            op.retryable = true;
            op.max_attempts = options
                .max_attempts
                .unwrap_or(self.cfg.max_op_attempts())
                .max(1);
        }
        let idx = self.ops.alloc(op);
        let id = self.ops.at(idx).id;
        if let Some(at) = deadline {
            self.deadlines.push(Reverse((at, id.0)));
        }
        match self.state {
            State::Closed => self.fail(idx, ErrorKind::Closed),
            State::Failed => self.fail(idx, ErrorKind::TopologyDestroyed),
            State::Connected => self.dispatch(idx),
            State::Connecting | State::Backoff | State::Down | State::Draining | State::Paused => {
                self.enqueue(idx)
            }
        }
        self.finish();
        id
    }

    /// Cancels an outstanding op: it completes with `cancelled` (and
    /// `maybe_executed` if it was dispatched). Unknown or finished ops are ignored.
    pub fn cancel(&mut self, now: Instant, op: OpId) {
        self.advance(now);
        if let Some(idx) = self.ops.index(op) {
            let was_in_flight = matches!(self.ops.at(idx).place, Place::InFlight(_));
            self.ops.unlink(idx);
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
            self.fail_list(Queue::InFlight, ErrorKind::Closed);
            self.fail_list(Queue::Buffer, ErrorKind::Closed);
            self.state = State::Closed;
            self.emit(Event::Closed);
        }
        self.finish();
    }

    // ----- internals: connection life ------------------------------------

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside the machine.
        if now > self.now {
            if without_connection(self.state) {
                // The state held since the last input held until now.
                self.counts.disconnected = self
                    .counts
                    .disconnected
                    .saturating_add(now.saturating_duration_since(self.now));
            }
            self.now = now;
        }
    }

    fn finish(&mut self) {
        self.settle();
        self.prune_deadlines();
    }

    /// What follows from the state an input left: run after every input
    /// and after every timer fired (so that `handle_timeout` also fires
    /// what this makes due at once, e.g. a reconnect with no delay).
    fn settle(&mut self) {
        // A drained wrong server is left as soon as nothing is in flight
        // on it, whatever brought the last op back (an answer, a refusal,
        // a cancel, a deadline).
        if self.state == State::Draining && self.ops.len(Queue::InFlight) == 0 {
            self.lose(DisconnectReason::WrongServer);
        }
        // Ops whose deadline comes before the client can send them (the
        // next reconnect, or the end of a pushback wait, is at or after
        // it) fail now rather than sleep until their deadline.
        self.fail_unreachable();
        // A probe that left without an answer (cancelled, past its
        // deadline): the next one goes out now.
        if self.state == State::Paused {
            let gone = self.conn.is_some_and(|c| {
                c.hold_until.is_none() && c.probe.is_some_and(|p| self.ops.get(p).is_none())
            });
            if gone {
                self.probe();
            }
        }
    }

    /// The earliest instant an op buffered now could be sent, when it is
    /// known to be later than now: the next reconnect attempt while
    /// waiting to reconnect, the end of the pushback wait while paused.
    fn earliest_send(&self) -> Option<Instant> {
        match self.state {
            State::Backoff => self.reconnect_at,
            State::Paused => self.conn.and_then(|c| c.hold_until),
            _ => None,
        }
        .filter(|at| *at > self.now)
    }

    /// Fails with [`ErrorKind::DeadlineUnreachable`] every buffered op
    /// whose deadline lies in `(now, earliest_send]`. Walks the deadline
    /// heap from its top, so it costs O(log n) per op failed (plus the ops
    /// in flight with such deadlines, put back). Done once per new limit
    /// (a reconnect scheduled, a pushback wait begun or moved): ops
    /// buffered later are checked as they arrive ([`Self::buffer_back`]),
    /// so a long pause with many ops in flight costs nothing per step.
    fn fail_unreachable(&mut self) {
        if !self.cfg.fail_unreachable_deadlines() {
            return;
        }
        let limit = self.earliest_send();
        if limit == self.swept_limit {
            return;
        }
        self.swept_limit = limit;
        let Some(limit) = limit else {
            return;
        };
        let mut keep = Vec::new();
        while let Some(&Reverse((at, raw))) = self.deadlines.peek() {
            if at > limit {
                break;
            }
            self.deadlines.pop();
            let Some(idx) = self.ops.index(OpId(raw)) else {
                continue; // stale
            };
            let o = self.ops.at(idx);
            if o.deadline != Some(at) {
                continue; // stale
            }
            if at <= self.now || o.place != Place::Buffered {
                // Due now (the deadline timer fails it) or in flight.
                keep.push(Reverse((at, raw)));
                continue;
            }
            self.ops.unlink(idx);
            self.fail(idx, ErrorKind::DeadlineUnreachable);
        }
        for e in keep {
            self.deadlines.push(e);
        }
    }

    fn emit(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    fn start_attempt(&mut self) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.counts.connect_attempts += 1;
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
        // A secondary is a server found, not a failure to reach one: the
        // seed list is walked on even under a fail-fast first connect, and
        // the first real failure after only secondaries still fails fast.
        let only_secondaries = self.only_secondaries;
        if why != ConnectFailure::NotPrimary {
            self.only_secondaries = false;
        }
        if !why.is_retried() {
            self.give_up();
            return;
        }
        if !self.ever_connected
            && (self.tries == 0 || only_secondaries)
            && self.cfg.initial_connect() == InitialConnect::FailFast
            && why != ConnectFailure::NotPrimary
        {
            self.give_up();
            return;
        }
        self.retry_or_give_up(Pace::Failed(why));
    }

    fn retry_or_give_up(&mut self, pace: Pace) {
        match self.cfg.reconnect_tries() {
            Tries::Limited(n) if self.tries >= n => self.give_up(),
            _ => self.schedule_reconnect(pace),
        }
    }

    fn schedule_reconnect(&mut self, pace: Pace) {
        self.tries = self.tries.saturating_add(1);
        let delay = self.reconnect_delay(pace);
        self.reconnect_at = Some(self.now + delay);
        self.state = State::Backoff;
        self.emit(Event::Reconnecting {
            attempt: self.tries,
            delay,
            endpoint: self.endpoint,
            error: self.last_connect_error,
        });
        // ioredis's maxRetriesPerRequest: its count of closes since the
        // last connect (the loss, then each failed attempt) is `tries`
        // here; the queues are flushed when it is a multiple of k + 1.
        if let Some(k) = self.cfg.fail_buffered_after() {
            if self.tries % k.saturating_add(1) == 0 {
                self.fail_list(Queue::Buffer, ErrorKind::ReconnectAttemptsExceeded);
            }
        }
    }

    /// The delay before the attempt being scheduled: the backoff's for
    /// attempt `tries`, or under quick reconnects, paced by why we are
    /// reconnecting (see [`QuickReconnect`](crate::QuickReconnect)).
    fn reconnect_delay(&mut self, pace: Pace) -> Duration {
        let (backoff, jitter) = (self.cfg.backoff(), self.cfg.jitter());
        let Some(quick) = self.cfg.quick_reconnect() else {
            let d = self.delays.jittered_delay(backoff, jitter, self.tries);
            return self.delays.with_extra(d, self.cfg.extra_jitter());
        };
        let since_loss = self.now.saturating_duration_since(self.lost_at);
        match pace {
            Pace::Loss { young: false } => Duration::ZERO,
            Pace::Failed(ConnectFailure::Refused) if since_loss < quick.probe_for => {
                self.delays.uniform(quick.probe / 2, quick.probe)
            }
            _ => {
                self.paced = self.paced.saturating_add(1);
                let d = self.delays.jittered_delay(backoff, jitter, self.paced);
                self.delays.with_extra(d, self.cfg.extra_jitter())
            }
        }
    }

    fn give_up(&mut self) {
        self.gave_up = Some(GaveUp {
            attempts: self.tries,
            since_loss: self.now.saturating_duration_since(self.lost_at),
            error: self.last_connect_error,
        });
        self.state = State::Failed;
        self.reconnect_at = None;
        self.emit(Event::ReconnectFailed {
            attempts: self.tries,
            error: self.last_connect_error,
        });
        self.fail_list(Queue::Buffer, ErrorKind::ReconnectFailed);
        if let GiveUp::CoolDown(pause) = self.cfg.give_up() {
            // A fresh budget after the pause, announced as attempt 1.
            self.tries = 1;
            self.paced = 0;
            self.reconnect_at = Some(self.now.saturating_add(pause));
            self.state = State::Backoff;
            self.emit(Event::Reconnecting {
                attempt: 1,
                delay: pause,
                endpoint: self.endpoint,
                error: self.last_connect_error,
            });
        }
    }

    /// Starts reconnecting now, with a fresh reconnect budget, from the
    /// terminal `Failed` state (after a [`GiveUp::Terminal`] give-up), from
    /// `Down` (a loss with auto-reconnect off) or from a backoff or
    /// cool-down wait (skipping the rest of it). Ignored while connected or
    /// connecting, and after [`close`](Self::close). Ops submitted from now
    /// on are handled as while reconnecting.
    pub fn revive(&mut self, now: Instant) {
        self.advance(now);
        if matches!(self.state, State::Failed | State::Down | State::Backoff) {
            self.gave_up = None;
            self.lost_at = self.now;
            self.reconnect_at = None;
            self.tries = 0;
            self.paced = 0;
            self.delays.reset(self.cfg.backoff());
            self.start_attempt();
        }
        self.finish();
    }

    /// The current connection is gone (the driver saw it end, or the
    /// machine drops it): the driver is told to close it.
    fn lose(&mut self, reason: DisconnectReason) {
        let c = self
            .conn
            .take()
            .expect("lose() is only called with a connection");
        self.outputs.push_back(Output::Close { conn: c.id });
        self.lost_at = self.now;
        self.emit(Event::Disconnected {
            conn: c.id,
            endpoint: c.endpoint,
            reason,
        });
        // Ops in flight: re-queue (in submission order, ahead of later ops
        // buffered while draining or paused) or fail.
        while let Some(idx) = self.ops.first(Queue::InFlight) {
            self.ops.unlink(idx);
            let o = self.ops.at_mut(idx);
            let wants_retry = o.retryable && o.executions < o.max_attempts;
            self.budget.charge();
            if !wants_retry {
                self.fail(idx, ErrorKind::ConnectionLost);
            } else if !self.budget.allows_retry() {
                self.fail(idx, ErrorKind::RetryBudgetExhausted);
            } else {
                self.requeue(idx, ErrorKind::ConnectionLost);
            }
        }
        if self.cfg.auto_reconnect() {
            // A server that never served an op and turned out to be the
            // wrong one was a failed attempt: counting resumes (a lone
            // non-primary host cannot bounce ops for ever). One that served
            // was a primary until its failover: a fresh count.
            let failed_attempt = reason == DisconnectReason::WrongServer && !c.served;
            (self.tries, self.paced) = if failed_attempt {
                (self.tries_before_connect, self.paced_before_connect)
            } else {
                (0, 0)
            };
            let young = failed_attempt
                || self.now.saturating_duration_since(c.up_since)
                    < crate::QuickReconnect::MIN_UPTIME;
            self.retry_or_give_up(Pace::Loss { young });
        } else {
            self.state = State::Down;
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
            TimerKind::Probe => self.probe(),
            TimerKind::Idle => {
                if self.conn.is_some() {
                    self.lose(DisconnectReason::Idle);
                }
            }
            TimerKind::BufferWait => {
                if let (Some(Reverse((at, raw))), Some(t)) =
                    (self.buffer_waits.pop(), self.cfg.buffer_timeout())
                {
                    // Only the wait this entry was made for: an op since
                    // sent (or sent and back) has a newer one.
                    let due = self.ops.index(OpId(raw)).filter(|&idx| {
                        let o = self.ops.at(idx);
                        o.place == Place::Buffered && o.since.saturating_add(t) == at
                    });
                    if let Some(idx) = due {
                        self.ops.unlink(idx);
                        self.fail(idx, ErrorKind::BufferTimeout);
                    }
                }
            }
            TimerKind::Command => {
                if let Some(Reverse((at, raw))) = self.command_waits.pop() {
                    let due = self
                        .ops
                        .index(OpId(raw))
                        .filter(|&idx| self.ops.at(idx).command_due() == Some(at));
                    if let Some(idx) = due {
                        self.ops.unlink(idx);
                        self.fail(idx, ErrorKind::CommandTimeout);
                        self.touch_idle();
                    }
                }
            }
            TimerKind::Deadline => {
                if let Some(Reverse((_, raw))) = self.deadlines.pop() {
                    if let Some(idx) = self.ops.index(OpId(raw)) {
                        let was_in_flight = matches!(self.ops.at(idx).place, Place::InFlight(_));
                        self.ops.unlink(idx);
                        self.fail(idx, ErrorKind::DeadlineExceeded);
                        if was_in_flight {
                            self.touch_idle();
                        }
                    }
                }
            }
        }
    }

    /// Drops stale entries from the top of the deadline and buffer-wait
    /// heaps, and compacts them when stale entries dominate, so that
    /// `poll_timeout` is exact and memory stays proportional to outstanding
    /// ops.
    fn prune_deadlines(&mut self) {
        if let Some(t) = self.cfg.buffer_timeout() {
            let live = |ops: &Ops<P>, at: Instant, raw: u64| {
                ops.get(OpId(raw))
                    .is_some_and(|o| o.place == Place::Buffered && o.since.saturating_add(t) == at)
            };
            while let Some(Reverse((at, raw))) = self.buffer_waits.peek().copied() {
                if live(&self.ops, at, raw) {
                    break;
                }
                self.buffer_waits.pop();
            }
            if self.buffer_waits.len() > 2 * self.ops.len(Queue::Buffer) + 64 {
                let ops = &self.ops;
                self.buffer_waits
                    .retain(|Reverse((at, raw))| live(ops, *at, *raw));
            }
        }
        let in_flight_wait = |ops: &Ops<P>, at: Instant, raw: u64| {
            ops.get(OpId(raw))
                .is_some_and(|o| o.command_due() == Some(at))
        };
        while let Some(Reverse((at, raw))) = self.command_waits.peek().copied() {
            if in_flight_wait(&self.ops, at, raw) {
                break;
            }
            self.command_waits.pop();
        }
        if self.command_waits.len() > 2 * self.ops.len(Queue::InFlight) + 64 {
            let ops = &self.ops;
            self.command_waits
                .retain(|Reverse((at, raw))| in_flight_wait(ops, *at, *raw));
        }
        while let Some(Reverse((at, raw))) = self.deadlines.peek().copied() {
            if self
                .ops
                .get(OpId(raw))
                .is_some_and(|o| o.deadline == Some(at))
            {
                break;
            }
            self.deadlines.pop();
        }
        if self.deadlines.len() > 2 * self.ops.with_deadline() + 64 {
            let ops = &self.ops;
            self.deadlines.retain(|Reverse((at, raw))| {
                ops.get(OpId(*raw)).is_some_and(|o| o.deadline == Some(*at))
            });
        }
    }

    /// An op in flight finished: if none is left, the idle clock starts.
    fn touch_idle(&mut self) {
        let now = self.now;
        if self.ops.len(Queue::InFlight) == 0 {
            if let Some(c) = self.conn.as_mut() {
                c.idle_since = now;
            }
        }
    }

    // ----- internals: ops --------------------------------------------------

    fn dispatch(&mut self, idx: u32) {
        let c = self.conn.expect("dispatch only while connected");
        let now = self.now;
        let o = self.ops.at_mut(idx);
        o.attempts = o.attempts.saturating_add(1);
        o.executions = o.executions.saturating_add(1);
        if o.attempts > 1 {
            self.counts.retries += 1;
        }
        o.place = Place::InFlight(c.id);
        o.since = now;
        let op = o.id;
        let time_left = match (o.deadline, o.command_timeout) {
            (Some(d), Some(t)) => Some(d.saturating_duration_since(now).min(t)),
            (Some(d), None) => Some(d.saturating_duration_since(now)),
            (None, t) => t,
        };
        if let Some(at) = o.command_due() {
            self.command_waits.push(Reverse((at, op.0)));
        }
        self.ops.link_back(idx, Queue::InFlight, now);
        self.outputs.push_back(Output::Dispatch {
            op,
            conn: c.id,
            endpoint: c.endpoint,
            time_left,
        });
    }

    fn flush_buffer(&mut self) {
        while let Some(idx) = self.ops.first(Queue::Buffer) {
            self.ops.unlink(idx);
            self.dispatch(idx);
        }
    }

    /// A new op arrives while disconnected.
    fn enqueue(&mut self, idx: u32) {
        match self.cfg.buffer() {
            BufferPolicy::Disabled => self.fail(idx, ErrorKind::NoConnection),
            BufferPolicy::Unbounded => self.buffer_back(idx),
            BufferPolicy::Bounded { max, overflow } => {
                if self.ops.len(Queue::Buffer) < max {
                    self.buffer_back(idx);
                    return;
                }
                match overflow {
                    OverflowPolicy::FailAll => {
                        self.emit(Event::BufferOverflow {
                            failed: self.ops.len(Queue::Buffer) + 1,
                        });
                        self.fail_list(Queue::Buffer, ErrorKind::BufferOverflow);
                        self.fail(idx, ErrorKind::BufferOverflow);
                    }
                    OverflowPolicy::RejectNew => {
                        self.emit(Event::BufferOverflow { failed: 1 });
                        self.fail(idx, ErrorKind::BufferOverflow);
                    }
                    OverflowPolicy::DropOldest => {
                        self.emit(Event::BufferOverflow { failed: 1 });
                        let oldest = self.ops.first(Queue::Buffer).expect("the buffer is full");
                        self.ops.unlink(oldest);
                        self.fail(oldest, ErrorKind::BufferOverflow);
                        self.buffer_back(idx);
                    }
                }
            }
        }
    }

    /// A new op joins the back of the buffer — unless its deadline comes
    /// before the client can send it (see [`Self::fail_unreachable`]).
    fn buffer_back(&mut self, idx: u32) {
        let deadline = self
            .ops
            .at(idx)
            .deadline
            .filter(|_| self.cfg.fail_unreachable_deadlines());
        if let (Some(d), Some(limit)) = (deadline, self.earliest_send()) {
            if d > self.now && d <= limit {
                self.fail(idx, ErrorKind::DeadlineUnreachable);
                return;
            }
        }
        self.ops.link_back(idx, Queue::Buffer, self.now);
        self.wait_in_buffer(idx);
    }

    /// An op entered the buffer: its buffer wait starts.
    fn wait_in_buffer(&mut self, idx: u32) {
        if let Some(t) = self.cfg.buffer_timeout() {
            let o = self.ops.at(idx);
            self.buffer_waits
                .push(Reverse((o.since.saturating_add(t), o.id.0)));
        }
    }

    /// Puts an op that came back from the wire into the buffer, in
    /// submission order, if the buffer policy leaves room; otherwise it
    /// fails with `otherwise`.
    fn requeue(&mut self, idx: u32, otherwise: ErrorKind) {
        let room = self
            .cfg
            .buffer()
            .bound()
            .is_none_or(|max| self.ops.len(Queue::Buffer) < max);
        if room {
            // Back in the buffer: the next settle sweeps it again.
            self.swept_limit = None;
            self.counts.requeues += 1;
            self.ops.link_in_order(idx, self.requeue_hint, self.now);
            self.requeue_hint = Some(self.ops.at(idx).id);
            self.wait_in_buffer(idx);
        } else {
            self.fail(idx, otherwise);
        }
    }

    /// The pushback wait is over: one probe goes out — the oldest buffered
    /// op (its refusal, if it comes, is what the retry budget is charged
    /// for). Nothing buffered: the connection takes work again.
    fn probe(&mut self) {
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        c.hold_until = None;
        c.probe = None;
        let Some(idx) = self.ops.first(Queue::Buffer) else {
            c.pushbacks = 0;
            self.state = State::Connected;
            return;
        };
        self.ops.unlink(idx);
        let id = self.ops.at(idx).id;
        self.dispatch(idx);
        if let Some(c) = self.conn.as_mut() {
            c.probe = Some(id);
        }
    }

    /// Fails every op of a list (buffer or in flight) in order.
    fn fail_list(&mut self, queue: Queue, kind: ErrorKind) {
        while let Some(idx) = self.ops.first(queue) {
            self.ops.unlink(idx);
            self.fail(idx, kind);
        }
    }

    /// Completes an unlinked op with an error.
    fn fail(&mut self, idx: u32, kind: ErrorKind) {
        let o = self.ops.release(idx);
        let reconnect = matches!(
            kind,
            ErrorKind::ReconnectFailed
                | ErrorKind::TopologyDestroyed
                | ErrorKind::ReconnectAttemptsExceeded
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
                runs: o.executions,
                reconnect,
            }),
        }));
    }
}
