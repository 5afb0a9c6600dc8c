//! A small test harness: a manual clock, a `Machine<u32>` with
//! `redial-check`'s oracles attached to every step (`Checked`), and a log
//! of every output with its time.
//!
//! Every input goes through a method here that feeds the machine, drains it
//! through the checker and panics at once on any invariant violation, so a
//! test only has to state the behaviour it is about.

#![allow(dead_code, unreachable_pub)]

use redial_check::Checked;
use redial_core::{
    Config, ConnId, ConnectFailure, Done, Duration, ErrorKind, Event, Instant, LossKind, OpError,
    OpId, OpOptions, OpResult, Output, State,
};

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The harness.
pub struct H {
    pub m: Checked<u32>,
    pub now: Instant,
    /// Every output so far, with the machine time it came out at.
    pub log: Vec<(Instant, Output<u32>)>,
    /// The outputs of the last step.
    pub last: Vec<Output<u32>>,
    /// The connect attempt the machine asked for and nobody answered yet.
    pub pending: Option<(ConnId, usize)>,
    /// Answer heartbeats at once (turn off to simulate a silent server).
    pub answer_heartbeats: bool,
    next_payload: u32,
}

impl H {
    /// A machine with seed 1, started at time zero.
    pub fn new(config: Config) -> Self {
        Self::with_seed(config, 1)
    }

    pub fn with_seed(config: Config, seed: u64) -> Self {
        let m = Checked::new(config, seed, Instant::ZERO);
        let mut h = H {
            m,
            now: Instant::ZERO,
            log: Vec::new(),
            last: Vec::new(),
            pending: None,
            answer_heartbeats: true,
            next_payload: 0,
        };
        h.drain();
        h
    }

    /// A machine that is connected (first attempt succeeded).
    pub fn connected(config: Config) -> (Self, ConnId) {
        let mut h = Self::new(config);
        let c = h.connect_ok();
        (h, c)
    }

    /// Drains the machine through the checker; panics on a violation.
    pub fn drain(&mut self) -> Vec<Output<u32>> {
        let mut all = Vec::new();
        loop {
            let outs: Vec<Output<u32>> = std::iter::from_fn(|| self.m.poll_output()).collect();
            self.m.assert_ok();
            let mut heartbeats = Vec::new();
            for o in &outs {
                self.log.push((self.m.now(), o.clone()));
                match *o {
                    Output::Connect { conn, endpoint, .. } => self.pending = Some((conn, endpoint)),
                    Output::Close { conn } if self.pending.is_some_and(|(c, _)| c == conn) => {
                        self.pending = None
                    }
                    Output::Heartbeat { conn } if self.answer_heartbeats => heartbeats.push(conn),
                    _ => {}
                }
            }
            all.extend(outs);
            if heartbeats.is_empty() {
                break;
            }
            for conn in heartbeats {
                self.m.handle_heartbeat_ok(self.now, conn);
            }
        }
        self.last = all.clone();
        all
    }

    // ----- inputs ---------------------------------------------------------------

    /// The pending connect attempt succeeds.
    pub fn connect_ok(&mut self) -> ConnId {
        let (conn, _) = self.pending.take().expect("a connect attempt is pending");
        self.m.handle_connected(self.now, conn);
        self.drain();
        conn
    }

    /// The pending connect attempt is refused.
    pub fn connect_fail(&mut self) {
        self.connect_fail_with(ConnectFailure::Refused);
    }

    /// The pending connect attempt fails for the reason `why`.
    pub fn connect_fail_with(&mut self, why: ConnectFailure) {
        let (conn, _) = self.pending.take().expect("a connect attempt is pending");
        self.m.handle_connect_failed(self.now, conn, why);
        self.drain();
    }

    /// A (possibly stale) connected report for `conn`.
    pub fn connected_report(&mut self, conn: ConnId) -> Vec<Output<u32>> {
        self.m.handle_connected(self.now, conn);
        self.drain()
    }

    /// The current connection is lost.
    pub fn lose(&mut self, kind: LossKind) {
        let (conn, _) = self.m.connection().expect("connected");
        self.m.handle_connection_lost(self.now, conn, kind);
        self.drain();
    }

    /// Submits an op with a fresh payload.
    pub fn submit(&mut self, opts: OpOptions) -> OpId {
        self.next_payload += 1;
        let id = self.m.submit(self.now, self.next_payload, opts);
        self.drain();
        id
    }

    /// A plain (non-retryable) op.
    pub fn op(&mut self) -> OpId {
        self.submit(OpOptions::new())
    }

    /// The answer to `op` on the current connection.
    pub fn answer(&mut self, op: OpId, r: OpResult) {
        let (conn, _) = self.m.connection().expect("connected");
        self.m.handle_op_result(self.now, op, conn, r);
        self.drain();
    }

    pub fn cancel(&mut self, op: OpId) {
        self.m.cancel(self.now, op);
        self.drain();
    }

    pub fn close(&mut self) {
        self.m.close(self.now);
        self.drain();
    }

    /// Closes, drains and runs the checker's final check.
    pub fn finish(&mut self) {
        self.close();
        self.m.finish();
        self.m.assert_ok();
    }

    /// Moves the clock forward by `d`, firing every timer at its exact
    /// instant on the way (a punctual driver).
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        self.advance_to(target);
    }

    pub fn advance_to(&mut self, target: Instant) {
        while let Some((at, _)) = self.m.poll_timeout() {
            if at > target {
                break;
            }
            if at > self.now {
                self.now = at;
            }
            self.m.handle_timeout(self.now);
            self.drain();
        }
        if target > self.now {
            self.now = target;
        }
    }

    /// Advances until the next Connect output (panics if none comes within a day).
    pub fn until_connect(&mut self) -> (ConnId, usize) {
        let limit = self.now + Duration::from_secs(86_400);
        while self.pending.is_none() {
            let (at, _) = self.m.poll_timeout().expect("a timer is armed");
            assert!(at <= limit, "no connect within a day");
            self.advance_to(at);
        }
        self.pending.expect("set above")
    }

    // ----- queries --------------------------------------------------------------

    /// The outcome of `op`, if it has one (panics if it has several).
    pub fn outcome(&self, op: OpId) -> Option<Result<Done, OpError>> {
        let mut found = self.log.iter().filter_map(|(_, o)| match o {
            Output::Complete(c) if c.id == op => Some(c.result),
            _ => None,
        });
        let first = found.next();
        assert!(found.next().is_none(), "{op} has two outcomes");
        first
    }

    /// The error of `op` (panics unless it failed).
    pub fn error(&self, op: OpId) -> OpError {
        match self.outcome(op) {
            Some(Err(e)) => e,
            other => panic!("{op} did not fail: {other:?}"),
        }
    }

    pub fn kind(&self, op: OpId) -> ErrorKind {
        self.error(op).kind()
    }

    pub fn is_open(&self, op: OpId) -> bool {
        self.outcome(op).is_none()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.log
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Event(e) => Some(*e),
                _ => None,
            })
            .collect()
    }

    /// Every event name so far.
    pub fn event_names(&self) -> Vec<&'static str> {
        self.events().iter().map(|e| e.name()).collect()
    }

    /// Every Connect output so far: (time, conn, endpoint).
    pub fn connects(&self) -> Vec<(Instant, ConnId, usize)> {
        self.log
            .iter()
            .filter_map(|(t, o)| match *o {
                Output::Connect { conn, endpoint, .. } => Some((*t, conn, endpoint)),
                _ => None,
            })
            .collect()
    }

    /// Every dispatch so far: (op, conn, endpoint).
    pub fn dispatches(&self) -> Vec<(OpId, ConnId, usize)> {
        self.log
            .iter()
            .filter_map(|(_, o)| match *o {
                Output::Dispatch {
                    op, conn, endpoint, ..
                } => Some((op, conn, endpoint)),
                _ => None,
            })
            .collect()
    }

    /// Dispatches of one op.
    pub fn dispatches_of(&self, op: OpId) -> usize {
        self.dispatches().iter().filter(|d| d.0 == op).count()
    }

    pub fn state(&self) -> State {
        self.m.state()
    }

    /// The log as one Debug string per line (for determinism comparisons).
    pub fn transcript(&self) -> String {
        self.log
            .iter()
            .map(|(t, o)| format!("{t} {o:?}\n"))
            .collect()
    }
}
