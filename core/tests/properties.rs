//! Property tests.
//!
//! - `random_runs_keep_every_invariant`: random configs (every buffer and
//!   overflow policy, tries, backoffs, jitters, timeouts, budgets, 1–3
//!   endpoints) and random input sequences (connect ok/fail for the current
//!   and stale ids, losses of each kind, submits with random options, op
//!   results of each kind, heartbeats, cancels, punctual and late time
//!   jumps, close). The checker runs after every step; at the end the client
//!   is closed and drained and every op must have exactly one outcome; and
//!   the same seed and inputs give the same output log.
//! - `buffer_matches_a_vecdeque_model`: the autoReconnect × bufferMaxEntries
//!   rows (and the modern overflow policies) against a plain `VecDeque`.
//! - `reconnect_budget_matches_a_counter_model`: reconnect attempts,
//!   `reconnect_failed` and the terminal state against a plain counter.
//!
//! Case counts are modest so `cargo test --workspace` stays fast; raise them
//! with `PROPTEST_CASES=10000 cargo test -p redial-core --test properties`.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use redial_core::check::Checker;
use redial_core::{
    Backoff, BufferPolicy, Config, ConnId, ConnectFailure, Duration, ErrorKind, Event, Heartbeat,
    InitialConnect, Instant, Jitter, LossKind, Machine, OpId, OpOptions, OpResult, Output,
    OverflowPolicy, RetryBudget, State, Tries,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    }
}

// ----- random configs ---------------------------------------------------------------

/// Off two times in three (so that connections live long enough to matter).
fn opt_ms(max: u64) -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![2 => Just(None), 1 => (1..=max).prop_map(|n| Some(ms(n)))]
}

fn buffer_policy() -> impl Strategy<Value = BufferPolicy> {
    prop_oneof![
        Just(BufferPolicy::Unbounded),
        Just(BufferPolicy::Disabled),
        (
            1usize..=5,
            prop_oneof![
                Just(OverflowPolicy::FailAll),
                Just(OverflowPolicy::RejectNew),
                Just(OverflowPolicy::DropOldest)
            ]
        )
            .prop_map(|(max, overflow)| BufferPolicy::Bounded { max, overflow }),
    ]
}

fn backoff() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        (0u64..=500).prop_map(|n| Backoff::Constant(ms(n))),
        (0u64..=200, 0u64..=100, 0u64..=500).prop_map(|(i, s, extra)| Backoff::Linear {
            initial: ms(i),
            step: ms(s),
            max: ms(i + extra),
        }),
        (1u64..=200, 1.0f64..3.0, 0u64..=2000).prop_map(|(i, mult, extra)| {
            Backoff::Exponential {
                initial: Duration::from_micros(i * 1000 + i % 7),
                multiplier: mult,
                max: ms(i + extra),
            }
        }),
    ]
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated)
    ]
}

prop_compose! {
    fn config()(
        auto_reconnect in any::<bool>(),
        buffer in buffer_policy(),
        tries in prop_oneof![(0u32..=8).prop_map(Tries::Limited), Just(Tries::Unlimited)],
        backoff in backoff(),
        jitter in jitter(),
        initial in prop_oneof![5 => Just(InitialConnect::Retry), 1 => Just(InitialConnect::FailFast)],
        connect_timeout in opt_ms(500),
        socket_timeout in opt_ms(1000),
        heartbeat in prop_oneof![
            2 => Just(None),
            1 =>
            (1u64..=1000, 1u64..=500).prop_map(|(i, t)| Some(Heartbeat { interval: ms(i), timeout: ms(t) }))
        ],
        response_timeout in opt_ms(1000),
        buffer_timeout in opt_ms(2000),
        op_deadline in opt_ms(2000),
        max_op_attempts in 1u32..=5,
        budget in prop_oneof![
            Just(None),
            (1u32..=10, 1u32..=10).prop_map(|(t, r)| Some(RetryBudget {
                max_tokens: t,
                token_ratio: f64::from(r.min(t)) / 10.0,
            }))
        ],
        endpoints in 1usize..=3,
    ) -> Config {
        let b = Config::builder()
            .auto_reconnect(auto_reconnect)
            .buffer(buffer)
            .reconnect_tries(tries)
            .backoff(backoff)
            .jitter(jitter)
            .initial_connect(initial)
            .connect_timeout(connect_timeout)
            .socket_timeout(socket_timeout)
            .heartbeat(heartbeat)
            .response_timeout(response_timeout)
            .buffer_timeout(buffer_timeout)
            .op_deadline(op_deadline)
            .max_op_attempts(max_op_attempts)
            .retry_budget(budget)
            .endpoints(endpoints);
        match b.clone().build() {
            Ok(c) => c,
            // Only a zero delay with unlimited tries is refused here: bump it.
            Err(_) => b.reconnect_interval(ms(1)).build().expect("valid after fix-up"),
        }
    }
}

// ----- random inputs ----------------------------------------------------------------

/// Which connection or attempt an input is about.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The pending attempt or the current connection.
    Current,
    /// Some id the machine issued earlier (or a little beyond), picked by the number.
    Stale(u8),
}

#[derive(Clone, Debug)]
enum Input {
    ConnectOk(Target),
    ConnectFail(Target, ConnectFailure),
    Lost(Target, LossKind),
    Submit {
        retryable: bool,
        deadline: Option<u64>,
        max_attempts: Option<u32>,
    },
    /// Answer an op: `pick` indexes the ops in flight (or all open ops when
    /// `anywhere`, which makes most answers stale).
    Answer {
        pick: u8,
        result: OpResult,
        anywhere: bool,
    },
    Heartbeat(Target, OpResult),
    Cancel(u8),
    /// Advance the clock, firing timers at their exact instants.
    Punctual(u16),
    /// Jump the clock and call `handle_timeout` once (a late driver).
    Jump(u16),
    /// A spurious `handle_timeout` at the current time.
    Spurious,
    /// A `handle_timeout` with a time in the past (clocks may disagree):
    /// treated as the latest time already seen.
    Past(u16),
    Close,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![6 => Just(Target::Current), 1 => any::<u8>().prop_map(Target::Stale)]
}

fn loss() -> impl Strategy<Value = LossKind> {
    prop_oneof![
        Just(LossKind::Closed),
        Just(LossKind::Reset),
        Just(LossKind::TimedOut)
    ]
}

fn op_result() -> impl Strategy<Value = OpResult> {
    prop_oneof![
        4 => Just(OpResult::Ok),
        1 => Just(OpResult::ServerError),
        1 => Just(OpResult::ConnectionLost),
        1 => Just(OpResult::WrongServer),
    ]
}

/// Mostly refused; every kind, `rejected` and `panicked` (never retried) included.
fn connect_failure() -> impl Strategy<Value = ConnectFailure> {
    prop_oneof![
        8 => Just(ConnectFailure::Refused),
        2 => Just(ConnectFailure::TimedOut),
        2 => Just(ConnectFailure::Unavailable),
        1 => Just(ConnectFailure::Rejected),
        1 => Just(ConnectFailure::Panicked),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    // Close is rare: most of a run should happen before the client is closed.
    prop_oneof![
        36 => target().prop_map(Input::ConnectOk),
        15 => (target(), connect_failure()).prop_map(|(t, w)| Input::ConnectFail(t, w)),
        12 => (target(), loss()).prop_map(|(t, k)| Input::Lost(t, k)),
        60 => (any::<bool>(), prop::option::of(0u64..=1500), prop::option::of(0u32..=5)).prop_map(
            |(retryable, deadline, max_attempts)| Input::Submit { retryable, deadline, max_attempts }
        ),
        45 => (any::<u8>(), op_result(), prop::bool::weighted(0.1))
            .prop_map(|(pick, result, anywhere)| Input::Answer { pick, result, anywhere }),
        6 => (target(), op_result()).prop_map(|(t, r)| Input::Heartbeat(t, r)),
        6 => any::<u8>().prop_map(Input::Cancel),
        18 => (0u16..=1000).prop_map(Input::Punctual),
        6 => (0u16..=3000).prop_map(Input::Punctual),
        6 => (0u16..=3000).prop_map(Input::Jump),
        3 => Just(Input::Spurious),
        2 => (0u16..=3000).prop_map(Input::Past),
        1 => Just(Input::Close),
    ]
}

// ----- the driver ---------------------------------------------------------------------

/// Drives a machine with a checker attached; records every output.
struct Run {
    m: Machine<u32>,
    checker: Checker,
    now: Instant,
    /// Every output as a Debug string with its time (compared across runs).
    log: Vec<String>,
    /// Every output, same indices as `log`.
    outs: Vec<Output<u32>>,
    pending: Option<ConnId>,
    max_conn: u64,
    open: Vec<OpId>,
    last_submitted: Option<OpId>,
    in_flight: BTreeMap<OpId, ConnId>,
    next_payload: u32,
    /// Answer heartbeats as soon as they are sent (a healthy server).
    answer_heartbeats: bool,
    /// When the announced reconnect is due (invariant 7: the connect comes
    /// exactly `delay` after `reconnecting` when the driver is punctual).
    reconnect_due: Option<Instant>,
    /// Timers are being fired at their exact instants.
    punctual: bool,
}

impl Run {
    fn new(config: Config, seed: u64) -> Self {
        let checker = Checker::new(&config);
        let m = Machine::new(config, seed, Instant::ZERO);
        let mut r = Run {
            m,
            checker,
            now: Instant::ZERO,
            log: Vec::new(),
            outs: Vec::new(),
            pending: None,
            max_conn: 0,
            open: Vec::new(),
            last_submitted: None,
            in_flight: BTreeMap::new(),
            next_payload: 0,
            answer_heartbeats: false,
            reconnect_due: None,
            punctual: false,
        };
        r.drain();
        r
    }

    fn drain(&mut self) {
        let outs = self.checker.drain(&mut self.m);
        let mut heartbeats = Vec::new();
        for o in outs {
            if let Output::Heartbeat { conn } = o {
                heartbeats.push(conn);
            }
            match &o {
                Output::Connect { conn, .. } => {
                    self.pending = Some(*conn);
                    self.max_conn = self.max_conn.max(conn.get());
                    if let Some(due) = self.reconnect_due.take() {
                        let at = self.m.now();
                        if self.punctual {
                            assert_eq!(at, due, "connect {conn} not exactly at its announced time");
                        } else {
                            assert!(at >= due, "connect {conn} at {at}, before {due}");
                        }
                    }
                }
                Output::Event(Event::Reconnecting { delay, .. }) => {
                    self.reconnect_due = Some(self.m.now() + *delay);
                }
                Output::Event(Event::Closed | Event::ReconnectFailed { .. }) => {
                    self.reconnect_due = None;
                }
                Output::Close { conn } if self.pending == Some(*conn) => self.pending = None,
                Output::Event(Event::Connected { conn, .. } | Event::Reconnected { conn, .. })
                    if self.pending == Some(*conn) =>
                {
                    self.pending = None
                }
                Output::Dispatch { op, conn, .. } => {
                    self.in_flight.insert(*op, *conn);
                }
                Output::Complete(c) => {
                    self.open.retain(|o| *o != c.id);
                    self.in_flight.remove(&c.id);
                }
                _ => {}
            }
            self.log.push(format!("{} {o:?}", self.m.now()));
            self.outs.push(o);
        }
        if self.answer_heartbeats {
            for conn in heartbeats {
                // Each answer is a step of its own, checked like any other.
                self.verify_step();
                self.m.handle_heartbeat_ok(self.m.now(), conn);
                self.drain();
            }
        }
    }

    fn conn_for(&self, t: Target, attempt: bool) -> ConnId {
        match t {
            Target::Current => {
                let current = if attempt {
                    self.pending
                } else {
                    self.m.connection().map(|c| c.0)
                };
                current.unwrap_or(ConnId::from_raw(self.max_conn))
            }
            Target::Stale(n) => ConnId::from_raw(u64::from(n) % (self.max_conn + 2)),
        }
    }

    fn step(&mut self, input: &Input) {
        let now = self.now;
        match *input {
            Input::ConnectOk(t) => {
                let c = self.conn_for(t, true);
                self.m.handle_connected(now, c);
            }
            Input::ConnectFail(t, why) => {
                let c = self.conn_for(t, true);
                self.m.handle_connect_failed(now, c, why);
                if self.pending == Some(c) {
                    self.pending = None;
                }
            }
            Input::Lost(t, kind) => {
                let c = self.conn_for(t, false);
                self.m.handle_connection_lost(now, c, kind);
                if self.pending == Some(c) {
                    self.pending = None;
                }
            }
            Input::Submit {
                retryable,
                deadline,
                max_attempts,
            } => {
                let mut opts = OpOptions::new().retryable(retryable);
                if let Some(d) = deadline {
                    opts = opts.deadline(ms(d));
                }
                if let Some(n) = max_attempts {
                    opts = opts.max_attempts(n);
                }
                self.next_payload += 1;
                let id = self
                    .checker
                    .submit(&mut self.m, now, self.next_payload, opts);
                self.open.push(id);
                self.last_submitted = Some(id);
            }
            Input::Answer {
                pick,
                result,
                anywhere,
            } => {
                let candidates: Vec<(OpId, ConnId)> = if anywhere {
                    let c = self.conn_for(Target::Current, false);
                    self.open.iter().map(|o| (*o, c)).collect()
                } else {
                    self.in_flight.iter().map(|(o, c)| (*o, *c)).collect()
                };
                if candidates.is_empty() {
                    return self.drain();
                }
                let (op, conn) = candidates[usize::from(pick) % candidates.len()];
                self.m.handle_op_result(now, op, conn, result);
            }
            Input::Heartbeat(t, result) => {
                let c = self.conn_for(t, false);
                self.m.handle_heartbeat(now, c, result);
            }
            Input::Cancel(pick) => {
                let id = if self.open.is_empty() || pick == 255 {
                    OpId::from_raw(u64::from(pick))
                } else {
                    self.open[usize::from(pick) % self.open.len()]
                };
                self.m.cancel(now, id);
            }
            Input::Punctual(d) => {
                let target = now + ms(u64::from(d));
                self.punctual = true;
                while let Some((at, _)) = self.m.poll_timeout() {
                    if at > target {
                        break;
                    }
                    self.now = self.now.max(at);
                    self.checker.on_timeout(self.now);
                    self.m.handle_timeout(self.now);
                    self.drain();
                    self.verify_step();
                }
                self.punctual = false;
                self.now = target;
                return;
            }
            Input::Jump(d) => {
                self.now = now + ms(u64::from(d));
                self.checker.on_timeout(self.now);
                self.m.handle_timeout(self.now);
            }
            Input::Spurious => {
                self.checker.on_timeout(now);
                self.m.handle_timeout(now);
            }
            Input::Past(d) => {
                let then =
                    Instant::from_micros(now.as_micros().saturating_sub(u64::from(d) * 1000));
                self.checker.on_timeout(then);
                self.m.handle_timeout(then);
            }
            Input::Close => self.m.close(now),
        }
        self.drain();
    }

    fn verify_step(&self) {
        if let Some(v) = self.checker.violations().first() {
            panic!("{v}\n--- log ---\n{}", self.log.join("\n"));
        }
    }

    fn finish(&mut self) {
        self.m.close(self.now);
        self.drain();
        self.checker.finish();
        self.verify_step();
        assert_eq!(self.m.outstanding(), 0);
        assert_eq!(self.m.state(), State::Closed);
    }
}

fn run(config: &Config, seed: u64, healthy: bool, inputs: &[Input]) -> Vec<String> {
    let mut r = Run::new(config.clone(), seed);
    r.answer_heartbeats = healthy;
    for input in inputs {
        r.step(input);
        r.verify_step();
    }
    let submitted = r.checker.submitted();
    r.finish();
    let outcomes = r.log.iter().filter(|l| l.contains(" Complete(")).count() as u64;
    assert_eq!(outcomes, submitted, "one outcome per submitted op");
    r.log
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn random_runs_keep_every_invariant(
        config in config(),
        seed in any::<u64>(),
        healthy in any::<bool>(),
        inputs in prop::collection::vec(input(), 0..200),
    ) {
        let first = run(&config, seed, healthy, &inputs);
        let second = run(&config, seed, healthy, &inputs);
        prop_assert_eq!(first, second, "same seed and inputs, different outputs");
    }
}

// ----- model: the buffer ----------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum BufStep {
    Submit,
    Lose,
    ConnectOk,
    ConnectFail,
    /// Answer the oldest op in flight.
    AnswerOk,
    Wait(u16),
}

fn buf_step() -> impl Strategy<Value = BufStep> {
    prop_oneof![
        8 => Just(BufStep::Submit),
        2 => Just(BufStep::Lose),
        2 => Just(BufStep::ConnectOk),
        2 => Just(BufStep::ConnectFail),
        2 => Just(BufStep::AnswerOk),
        2 => (0u16..=5000).prop_map(BufStep::Wait),
    ]
}

/// The reference: a plain queue and a few booleans.
#[derive(Debug, Default)]
struct BufModel {
    buffer: VecDeque<OpId>,
    in_flight: VecDeque<OpId>,
    connected: bool,
    down: bool,
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn buffer_matches_a_vecdeque_model(
        auto_reconnect in any::<bool>(),
        policy in buffer_policy(),
        seed in any::<u64>(),
        steps in prop::collection::vec(buf_step(), 0..200),
    ) {
        let config = Config::mongodb_legacy()
            .to_builder()
            .auto_reconnect(auto_reconnect)
            .buffer(policy)
            .reconnect_tries(Tries::Unlimited)
            .initial_connect(InitialConnect::Retry)
            .connect_timeout(None)
            .build()
            .unwrap();
        let mut r = Run::new(config, seed);
        let first = r.pending.expect("first connect");
        r.m.handle_connected(r.now, first);
        r.drain();
        let mut model = BufModel { connected: true, ..BufModel::default() };

        for step in steps {
            let before = r.log.len();
            match step {
                BufStep::Submit => {
                    r.step(&Input::Submit { retryable: false, deadline: None, max_attempts: None });
                    let id = r.last_submitted.expect("just submitted");
                    let new_outcomes: Vec<&String> =
                        r.log[before..].iter().filter(|l| l.contains("Complete(")).collect();
                    if model.connected {
                        model.in_flight.push_back(id);
                        prop_assert!(new_outcomes.is_empty());
                    } else {
                        let mut failed: Vec<OpId> = Vec::new();
                        match policy {
                            BufferPolicy::Disabled => failed.push(id),
                            BufferPolicy::Unbounded => model.buffer.push_back(id),
                            BufferPolicy::Bounded { max, overflow } => {
                                if model.buffer.len() < max {
                                    model.buffer.push_back(id);
                                } else {
                                    match overflow {
                                        OverflowPolicy::FailAll => {
                                            failed.extend(model.buffer.drain(..));
                                            failed.push(id);
                                        }
                                        OverflowPolicy::RejectNew => failed.push(id),
                                        OverflowPolicy::DropOldest => {
                                            failed.extend(model.buffer.pop_front());
                                            model.buffer.push_back(id);
                                        }
                                    }
                                }
                            }
                        }
                        // The model's failures are exactly the new outcomes, in order.
                        prop_assert_eq!(new_outcomes.len(), failed.len(), "{:?}", &r.log[before..]);
                        for (line, op) in new_outcomes.iter().zip(&failed) {
                            let want = if policy == BufferPolicy::Disabled {
                                ErrorKind::NoConnection
                            } else {
                                ErrorKind::BufferOverflow
                            };
                            prop_assert!(line.contains(&format!("id: {op:?}")), "{line}");
                            prop_assert!(line.contains(&format!("kind: {want:?}")), "{line}");
                        }
                    }
                }
                BufStep::Lose => {
                    if !model.connected {
                        continue;
                    }
                    r.step(&Input::Lost(Target::Current, LossKind::Reset));
                    // Non-retryable ops in flight are lost, never buffered.
                    for op in model.in_flight.drain(..) {
                        prop_assert!(!r.open.contains(&op));
                    }
                    model.connected = false;
                    model.down = !auto_reconnect;
                }
                BufStep::ConnectOk => {
                    if r.pending.is_none() {
                        continue;
                    }
                    prop_assert!(!model.down, "a connect after a loss with auto-reconnect off");
                    r.step(&Input::ConnectOk(Target::Current));
                    let dispatched: Vec<String> = r.log[before..]
                        .iter()
                        .filter(|l| l.contains("Dispatch"))
                        .cloned()
                        .collect();
                    let want: Vec<OpId> = model.buffer.drain(..).collect();
                    prop_assert_eq!(dispatched.len(), want.len());
                    for (line, op) in dispatched.iter().zip(&want) {
                        prop_assert!(line.contains(&format!("op: {op:?}")), "{line}");
                    }
                    model.in_flight.extend(want);
                    model.connected = true;
                }
                BufStep::ConnectFail => {
                    if r.pending.is_none() {
                        continue;
                    }
                    r.step(&Input::ConnectFail(Target::Current, ConnectFailure::Refused));
                }
                BufStep::AnswerOk => {
                    let Some(op) = model.in_flight.pop_front() else { continue };
                    let conn = r.m.connection().expect("model says connected").0;
                    r.m.handle_op_result(r.now, op, conn, OpResult::Ok);
                    r.drain();
                    prop_assert!(!r.open.contains(&op));
                }
                BufStep::Wait(d) => {
                    r.step(&Input::Punctual(d));
                    if model.down {
                        prop_assert!(r.pending.is_none(), "legacy trap: no reconnect, ever");
                    }
                }
            }
            r.verify_step();
            prop_assert_eq!(r.m.buffered(), model.buffer.len());
            prop_assert_eq!(r.m.in_flight(), model.in_flight.len());
            let buffered_open: Vec<OpId> =
                r.open.iter().copied().filter(|o| !model.in_flight.contains(o)).collect();
            prop_assert_eq!(buffered_open, model.buffer.iter().copied().collect::<Vec<_>>());
        }
        r.finish();
    }
}

// ----- model: the reconnect budget ----------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum BudgetStep {
    ConnectOk,
    ConnectFail,
    Lose,
    Wait,
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn reconnect_budget_matches_a_counter_model(
        tries in prop_oneof![(0u32..=6).prop_map(Tries::Limited), Just(Tries::Unlimited)],
        initial in prop_oneof![Just(InitialConnect::Retry), Just(InitialConnect::FailFast)],
        interval in 1u64..=300,
        seed in any::<u64>(),
        steps in prop::collection::vec(
            prop_oneof![
                1 => Just(BudgetStep::ConnectOk),
                4 => Just(BudgetStep::ConnectFail),
                1 => Just(BudgetStep::Lose),
                2 => Just(BudgetStep::Wait),
            ],
            0..200,
        ),
    ) {
        let config = Config::mongodb_legacy()
            .to_builder()
            .reconnect_tries(tries)
            .reconnect_interval(ms(interval))
            .initial_connect(initial)
            .connect_timeout(None)
            .build()
            .unwrap();
        let mut r = Run::new(config, seed);
        // The model: attempts since the last connection or loss, and whether
        // the client gave up.
        let mut count: u32 = 0;
        let mut ever_connected = false;
        let mut connected = false;
        let mut failed = false;
        let mut expected_events: Vec<Event> = Vec::new();
        let mut reconnect_failed_seen = 0;

        let limit = |n: u32| matches!(tries, Tries::Limited(max) if n >= max);
        // A failed attempt or a loss: schedule attempt `count + 1` or give up.
        let next_attempt = |count: &mut u32, failed: &mut bool, events: &mut Vec<Event>, fail_fast: bool, error: Option<ConnectFailure>| {
            if fail_fast || limit(*count) {
                *failed = true;
                events.push(Event::ReconnectFailed { attempts: *count, error });
            } else {
                *count += 1;
                events.push(Event::Reconnecting { attempt: *count, delay: ms(interval), endpoint: 0, error });
            }
        };

        for step in steps {
            let before = r.log.len();
            expected_events.clear();
            match step {
                BudgetStep::ConnectOk => {
                    if r.pending.is_none() { continue; }
                    r.step(&Input::ConnectOk(Target::Current));
                    count = 0;
                    connected = true;
                    let conn = r.m.connection().expect("connected").0;
                    expected_events.push(if ever_connected {
                        Event::Reconnected { conn, endpoint: 0 }
                    } else {
                        Event::Connected { conn, endpoint: 0 }
                    });
                    ever_connected = true;
                }
                BudgetStep::ConnectFail => {
                    if r.pending.is_none() { continue; }
                    r.step(&Input::ConnectFail(Target::Current, ConnectFailure::Refused));
                    let fail_fast = !ever_connected && count == 0 && initial == InitialConnect::FailFast;
                    next_attempt(&mut count, &mut failed, &mut expected_events, fail_fast, Some(ConnectFailure::Refused));
                }
                BudgetStep::Lose => {
                    if !connected { continue; }
                    let conn = r.m.connection().expect("connected").0;
                    r.step(&Input::Lost(Target::Current, LossKind::Closed));
                    connected = false;
                    count = 0;
                    expected_events.push(Event::Disconnected {
                        conn,
                        endpoint: 0,
                        reason: redial_core::DisconnectReason::Lost(LossKind::Closed),
                    });
                    next_attempt(&mut count, &mut failed, &mut expected_events, false, None);
                }
                BudgetStep::Wait => {
                    r.step(&Input::Punctual(u16::try_from(interval).unwrap()));
                    prop_assert_eq!(r.pending.is_some(), !connected && !failed,
                        "an attempt is pending exactly while reconnecting");
                }
            }
            let got = events_in(&r, before);
            reconnect_failed_seen += got.iter().filter(|e| matches!(e, Event::ReconnectFailed { .. })).count();
            prop_assert_eq!(&got, &expected_events);
            prop_assert_eq!(r.m.state() == State::Failed, failed);
            prop_assert!(reconnect_failed_seen <= 1, "reconnect_failed is emitted once");
            r.verify_step();
        }
        r.finish();
    }
}

/// The events output since index `from` of the run's log.
fn events_in(r: &Run, from: usize) -> Vec<Event> {
    r.outs[from..]
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(*e),
            _ => None,
        })
        .collect()
}
