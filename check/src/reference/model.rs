//! A deliberately simple reference model of redial's semantics, written
//! from DESIGN.md and the seeds, not from `machine.rs`: vectors instead of
//! intrusive lists, indices instead of ids, one timer.
//!
//! It covers a subset of the configuration space: the six rows of the
//! autoReconnect × bufferMaxEntries matrix (plus the two modern overflow
//! policies), a reconnect budget with a constant interval and no jitter,
//! fail-fast or retried initial connect, wrong-server draining (refused ops
//! back in line in submission order, the server left once nothing is in
//! flight), and the retry of retryable ops up to their attempt limit. Not
//! covered (model runs keep them off): connect/socket/response/buffer
//! timeouts, heartbeats, deadlines, jitter, non-constant backoff, the retry
//! budget, server pushback, roles and revive.

use std::collections::VecDeque;

use redial_core::{ErrorKind, OpResult, OverflowPolicy};

/// The buffer policy, as the matrix spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    /// `bufferMaxEntries = -1`.
    Unbounded,
    /// `bufferMaxEntries = 0`.
    Disabled,
    /// `bufferMaxEntries = N > 0` (legacy: `FailAll`).
    Bounded(usize, OverflowPolicy),
}

/// What the model knows about a configuration.
#[derive(Clone, Copy, Debug)]
pub struct ModelConfig {
    /// `autoReconnect`.
    pub auto_reconnect: bool,
    /// Buffering while disconnected.
    pub buffer: Buffer,
    /// `reconnectTries` (`None`: unlimited).
    pub tries: Option<u32>,
    /// `reconnectInterval` in microseconds.
    pub interval_us: u64,
    /// A failed first connect is terminal (`true`) or retried like a reconnect.
    pub fail_fast_initial: bool,
    /// Default attempt limit of retryable ops.
    pub max_op_attempts: u32,
    /// Ops not marked either way are resent after a loss in flight (the
    /// caller of [`Model::submit`] resolves this).
    pub retry_lost: bool,
    /// ioredis's `maxRetriesPerRequest`: the buffer fails when the count of
    /// reconnects scheduled since the loss is a multiple of `k + 1`.
    pub fail_buffered_after: Option<u32>,
}

/// The one outcome of an op, as far as the model can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Ok,
    /// Failure of this kind; `true` if the op may have run.
    Err(ErrorKind, bool),
}

/// Something observable.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seen {
    /// An event, by name.
    Event(&'static str),
    /// A connect attempt was started.
    Connect,
    /// The op with this submission index was sent.
    Dispatch(usize),
    /// The op with this submission index got its outcome.
    Complete(usize, Outcome),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Connected,
    /// Answered "wrong server": nothing more is sent; left once nothing
    /// is in flight.
    Draining,
    Backoff,
    Down,
    Failed,
    Closed,
}

#[derive(Clone, Copy, Debug)]
struct Op {
    retryable: bool,
    max_attempts: u32,
    /// Sends that may have run (a wrong-server answer takes one back).
    runs: u32,
    done: bool,
}

/// The model.
#[derive(Debug)]
pub struct Model {
    cfg: ModelConfig,
    phase: Phase,
    now: u64,
    /// Index of the pending connect attempt.
    attempt: Option<usize>,
    /// Index of the attempt that became the current connection.
    conn: Option<usize>,
    attempts_started: usize,
    reconnect_at: Option<u64>,
    /// Reconnect attempts since the last loss (or since the start).
    tries: u32,
    /// `tries` when the current connection came up: if it turns out to be
    /// the wrong server, it was a failed attempt and counting resumes here
    /// (so a lone non-primary host cannot bounce ops for ever).
    tries_at_connect: u32,
    ever_connected: bool,
    /// An op succeeded on the current connection.
    served: bool,
    ops: Vec<Op>,
    buffer: VecDeque<usize>,
    in_flight: Vec<usize>,
    /// What happened since the last [`Model::take_seen`].
    seen: Vec<Seen>,
}

impl Model {
    /// The configuration the model runs.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// A model that starts its first connect attempt at time zero.
    pub fn new(cfg: ModelConfig) -> Self {
        let mut m = Model {
            cfg,
            phase: Phase::Connecting,
            now: 0,
            attempt: None,
            conn: None,
            attempts_started: 0,
            reconnect_at: None,
            tries: 0,
            tries_at_connect: 0,
            ever_connected: false,
            served: false,
            ops: Vec::new(),
            buffer: VecDeque::new(),
            in_flight: Vec::new(),
            seen: Vec::new(),
        };
        m.start_attempt();
        m
    }

    /// What happened since the last call.
    pub fn take_seen(&mut self) -> Vec<Seen> {
        std::mem::take(&mut self.seen)
    }

    /// Time passes; time going backwards changes nothing.
    pub fn time(&mut self, now_us: u64) {
        self.now = self.now.max(now_us);
        if self.reconnect_at.is_some_and(|at| at <= self.now) {
            self.reconnect_at = None;
            self.start_attempt();
        }
    }

    /// Attempt `k` succeeded.
    pub fn connected(&mut self, k: usize) {
        if self.attempt != Some(k) {
            return;
        }
        self.attempt = None;
        self.conn = Some(k);
        self.served = false;
        self.phase = Phase::Connected;
        self.tries_at_connect = self.tries;
        self.tries = 0;
        let name = if self.ever_connected {
            "reconnected"
        } else {
            "connected"
        };
        self.ever_connected = true;
        self.seen.push(Seen::Event(name));
        while let Some(i) = self.buffer.pop_front() {
            self.send(i);
        }
    }

    /// Attempt `k` failed.
    pub fn connect_failed(&mut self, k: usize) {
        if self.attempt == Some(k) {
            self.attempt = None;
            self.attempt_failed();
        }
    }

    /// Connection (or attempt) `k` was lost.
    pub fn lost(&mut self, k: usize) {
        if self.conn == Some(k) {
            self.lose(false);
        } else {
            self.connect_failed(k);
        }
    }

    /// Op `i` is submitted.
    pub fn submit(&mut self, i: usize, retryable: bool, max_attempts: Option<u32>) {
        assert_eq!(i, self.ops.len(), "submissions are numbered in order");
        self.ops.push(Op {
            retryable,
            max_attempts: if retryable {
                max_attempts.unwrap_or(self.cfg.max_op_attempts).max(1)
            } else {
                1
            },
            runs: 0,
            done: false,
        });
        match self.phase {
            Phase::Closed => self.finish(i, Outcome::Err(ErrorKind::Closed, false)),
            Phase::Failed => self.finish(i, Outcome::Err(ErrorKind::TopologyDestroyed, false)),
            Phase::Connected => self.send(i),
            Phase::Connecting | Phase::Backoff | Phase::Down | Phase::Draining => {
                self.buffer_new(i)
            }
        }
    }

    /// The answer to op `i` sent on connection `k`.
    pub fn op_result(&mut self, i: usize, k: usize, result: OpResult) {
        if self.conn != Some(k) || !self.in_flight.contains(&i) {
            return;
        }
        match result {
            OpResult::Ok => {
                self.in_flight.retain(|o| *o != i);
                self.served = true;
                self.finish(i, Outcome::Ok);
            }
            OpResult::ServerError => {
                self.in_flight.retain(|o| *o != i);
                self.finish(i, Outcome::Err(ErrorKind::ServerError, true));
            }
            OpResult::WrongServer => {
                // It certainly did not run: take the send back, and put it
                // back in line. Nothing more goes to this server.
                self.ops[i].runs -= 1;
                self.in_flight.retain(|o| *o != i);
                self.requeue(i, ErrorKind::NoConnection);
                if self.phase == Phase::Connected {
                    self.phase = Phase::Draining;
                }
            }
            // ConnectionLost (and any reading the model does not know yet).
            _ => self.lose(false),
        }
        self.drained();
    }

    /// A draining wrong server with nothing left in flight is left.
    fn drained(&mut self) {
        if self.phase == Phase::Draining && self.in_flight.is_empty() {
            self.lose(true);
        }
    }

    /// The application cancels op `i`.
    pub fn cancel(&mut self, i: usize) {
        let before = self.buffer.len() + self.in_flight.len();
        self.buffer.retain(|o| *o != i);
        self.in_flight.retain(|o| *o != i);
        if self.buffer.len() + self.in_flight.len() < before {
            let ran = self.ops[i].runs > 0;
            self.finish(i, Outcome::Err(ErrorKind::Cancelled, ran));
        }
        self.drained();
    }

    /// The application closes the client.
    pub fn close(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        self.attempt = None;
        self.conn = None;
        self.reconnect_at = None;
        for i in std::mem::take(&mut self.in_flight) {
            self.fail(i, ErrorKind::Closed);
        }
        for i in std::mem::take(&mut self.buffer) {
            self.fail(i, ErrorKind::Closed);
        }
        self.phase = Phase::Closed;
        self.seen.push(Seen::Event("closed"));
    }

    fn start_attempt(&mut self) {
        self.attempt = Some(self.attempts_started);
        self.attempts_started += 1;
        self.phase = Phase::Connecting;
        self.seen.push(Seen::Connect);
    }

    fn attempt_failed(&mut self) {
        let first = !self.ever_connected && self.tries == 0;
        if first && self.cfg.fail_fast_initial {
            self.give_up();
        } else {
            self.reconnect_or_give_up();
        }
    }

    fn reconnect_or_give_up(&mut self) {
        if self.cfg.tries.is_some_and(|n| self.tries >= n) {
            self.give_up();
        } else {
            self.tries += 1;
            self.reconnect_at = Some(self.now.saturating_add(self.cfg.interval_us));
            self.phase = Phase::Backoff;
            self.seen.push(Seen::Event("reconnecting"));
            if let Some(k) = self.cfg.fail_buffered_after {
                if self.tries % k.saturating_add(1) == 0 {
                    for i in std::mem::take(&mut self.buffer) {
                        self.fail(i, ErrorKind::ReconnectAttemptsExceeded);
                    }
                }
            }
        }
    }

    /// Seed 002: reconnect_failed, buffered ops fail, the topology is destroyed.
    fn give_up(&mut self) {
        self.phase = Phase::Failed;
        self.reconnect_at = None;
        self.seen.push(Seen::Event("reconnect_failed"));
        for i in std::mem::take(&mut self.buffer) {
            self.fail(i, ErrorKind::ReconnectFailed);
        }
    }

    /// The current connection is gone (`wrong_server`: it answered "not
    /// primary").
    fn lose(&mut self, wrong_server: bool) {
        self.conn = None;
        self.seen.push(Seen::Event("disconnected"));
        for i in std::mem::take(&mut self.in_flight) {
            let op = self.ops[i];
            if op.retryable && op.runs < op.max_attempts {
                self.requeue(i, ErrorKind::ConnectionLost);
            } else {
                self.fail(i, ErrorKind::ConnectionLost);
            }
        }
        if self.cfg.auto_reconnect {
            // A wrong server that never served was a failed attempt; one
            // that served was a primary until its failover.
            self.tries = if wrong_server && !self.served {
                self.tries_at_connect
            } else {
                0
            };
            self.reconnect_or_give_up();
        } else {
            self.phase = Phase::Down;
        }
    }

    fn room(&self) -> bool {
        match self.cfg.buffer {
            Buffer::Unbounded => true,
            Buffer::Disabled => false,
            Buffer::Bounded(max, _) => self.buffer.len() < max,
        }
    }

    /// An op that came back from the wire waits for the next connection,
    /// in submission order, if the buffer has room; otherwise it fails with
    /// `otherwise`.
    fn requeue(&mut self, i: usize, otherwise: ErrorKind) {
        if self.room() {
            let at = self.buffer.partition_point(|o| *o < i);
            self.buffer.insert(at, i);
        } else {
            self.fail(i, otherwise);
        }
    }

    /// A new op while disconnected: the matrix.
    fn buffer_new(&mut self, i: usize) {
        if self.room() {
            self.buffer.push_back(i);
            return;
        }
        match self.cfg.buffer {
            Buffer::Unbounded => unreachable!("always room"),
            Buffer::Disabled => self.fail(i, ErrorKind::NoConnection),
            Buffer::Bounded(_, OverflowPolicy::FailAll) => {
                self.seen.push(Seen::Event("buffer_overflow"));
                for o in std::mem::take(&mut self.buffer) {
                    self.fail(o, ErrorKind::BufferOverflow);
                }
                self.fail(i, ErrorKind::BufferOverflow);
            }
            Buffer::Bounded(_, OverflowPolicy::RejectNew) => {
                self.seen.push(Seen::Event("buffer_overflow"));
                self.fail(i, ErrorKind::BufferOverflow);
            }
            Buffer::Bounded(_, OverflowPolicy::DropOldest) => {
                self.seen.push(Seen::Event("buffer_overflow"));
                let oldest = self.buffer.pop_front().expect("full, so not empty");
                self.fail(oldest, ErrorKind::BufferOverflow);
                self.buffer.push_back(i);
            }
        }
    }

    fn send(&mut self, i: usize) {
        self.ops[i].runs += 1;
        self.in_flight.push(i);
        self.seen.push(Seen::Dispatch(i));
    }

    fn fail(&mut self, i: usize, kind: ErrorKind) {
        let ran = self.ops[i].runs > 0;
        self.finish(i, Outcome::Err(kind, ran));
    }

    fn finish(&mut self, i: usize, outcome: Outcome) {
        assert!(!self.ops[i].done, "model bug: op {i} finished twice");
        self.ops[i].done = true;
        self.seen.push(Seen::Complete(i, outcome));
    }
}
