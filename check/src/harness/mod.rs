//! The one generator and harness of random machine runs.
//!
//! Any bytes decode ([`arbitrary`]) into a [`RunInput`]: a configuration
//! (any, valid or not — or, half of the time, one inside the
//! [reference model](crate::reference::Model)'s reach) and up to
//! [`input::MAX_STEPS`] inputs (connects that succeed or fail for current,
//! stale and future ids, losses of every kind, submits with random options,
//! answers of every kind on any connection, heartbeats, cancels, time
//! jumps forward, backward, to the next timer and far ahead, close).
//! [`run`] feeds them to a [`Checked`] machine — both oracles on every
//! step — then closes it: every op must have exactly one outcome, and a
//! second run with the same seed must give the same outputs (invariant 8).
//! Inside the model's reach, the [`Model`](crate::reference::Model) is fed
//! the same steps and every observable outcome must agree.
//!
//! The same function serves cargo-fuzz (`fuzz/fuzz_targets/machine.rs`),
//! plain `cargo test` (proptest choosing the bytes: this crate's
//! `tests/random_runs.rs`) and your own targets. The byte format belongs
//! to this module (the few core enums the inputs need are mirrored in
//! [`input`]), so a committed corpus does not shift when a core enum grows.
//!
//! ```
//! // Any bytes are an input; a breach panics with the steps that led to it.
//! redial_check::harness::run_bytes(b"any bytes at all, e.g. from a fuzzer");
//! ```

use arbitrary::{Arbitrary, Unstructured};
use redial_core::{ConnId, ConnectFailure, Duration, Instant, OpId, Output};

use crate::Checked;
use input::{ConnRef, Jump, OpRef, Step, ms};

pub mod input;
mod model;
mod transitions;

pub use model::{ModelFuzzConfig, ModelInput};
pub use transitions::TransitionsInput;

/// One random machine run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RunInput {
    /// Any configuration (invalid ones end the run at `build()`, which
    /// must not panic); both oracles on every step; determinism.
    Any(TransitionsInput),
    /// A configuration inside the reference model's reach: both oracles
    /// on every step, and the model must agree on every outcome.
    Modelled(ModelInput),
}

impl<'a> Arbitrary<'a> for RunInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // One byte (its low bit) chooses; kept that simple so a corpus of
        // either kind converts by prefixing one byte.
        Ok(if bool::arbitrary(u)? {
            RunInput::Modelled(ModelInput::arbitrary(u)?)
        } else {
            RunInput::Any(TransitionsInput::arbitrary(u)?)
        })
    }
}

/// Runs one input.
///
/// # Panics
///
/// On any violation, disagreement with the model, lost or doubled outcome
/// or nondeterminism — with the decoded steps and the step's outputs.
pub fn run(input: &RunInput) {
    match input {
        RunInput::Any(i) => transitions::run(i),
        RunInput::Modelled(i) => model::run(i),
    }
}

/// Random inputs against *your* configuration: `data` decodes into up to
/// [`input::MAX_STEPS`] steps (the configuration is yours, not drawn),
/// run twice through a [`Checked`] machine built from `config` and `seed`
/// — both oracles on every step, one outcome per op after close, the same
/// outputs both times. The body of a fuzz target for your configuration,
/// or of a proptest over byte vectors:
///
/// ```
/// use redial_core::Config;
/// // In a fuzz target: `redial_check::harness::run_config(&mine, 7, data)`.
/// let mine = Config::recommended().to_builder().buffer_max_entries(100).build().unwrap();
/// redial_check::harness::run_config(&mine, 7, b"any bytes: a sequence of inputs");
/// ```
///
/// # Panics
///
/// On any violation, lost or doubled outcome or nondeterminism.
pub fn run_config(config: &redial_core::Config, seed: u64, data: &[u8]) {
    if let Ok(steps) = input::steps(&mut Unstructured::new(data)) {
        transitions::run_steps(config, seed, &steps);
    }
}

/// Decodes `data` into a [`RunInput`] and [`run`]s it (bytes that do not
/// decode are skipped). The body of a fuzz target.
///
/// # Panics
///
/// As [`run`].
pub fn run_bytes(data: &[u8]) {
    if let Ok(input) = RunInput::arbitrary(&mut Unstructured::new(data)) {
        run(&input);
    }
}

/// The machine plus what its outputs said so far. Op payloads are the
/// submission index, so a completion can be matched to its submission.
#[derive(Debug)]
pub struct Harness {
    /// The machine under test, with both oracles attached.
    pub m: Checked<u32>,
    /// The caller's clock (may run backwards; the machine must cope).
    pub now: Instant,
    /// Every connect attempt the machine asked for, in order.
    pub conns: Vec<ConnId>,
    /// Ops dispatched and not completed, with the connection they went to.
    pub dispatched: Vec<(OpId, ConnId)>,
    /// Submitted op ids, by submission index.
    pub ops: Vec<OpId>,
    /// Outcomes seen, by submission index.
    pub outcomes: Vec<u32>,
    /// Every output in order (for the determinism check).
    pub log: Vec<Output<u32>>,
}

/// What one step did, resolved to concrete ids (for the reference model).
#[derive(Clone, Copy, Debug)]
pub enum Applied {
    /// Nothing was fed (e.g. a reference to an op when none exists).
    Nothing,
    /// A connection input about the attempt with this index into
    /// [`Harness::conns`] (or beyond it: an id not issued yet).
    Conn(usize),
    /// A submission with this index.
    Submit(usize),
    /// An input about the op with this submission index on the attempt
    /// with this index.
    OpOnConn(usize, usize),
    /// An input about the op with this submission index.
    Op(usize),
    /// Close, or time passing: no ids involved.
    Plain,
}

impl Harness {
    /// A fresh machine at time zero.
    pub fn new(m: Checked<u32>) -> Self {
        let mut h = Harness {
            m,
            now: Instant::ZERO,
            conns: Vec::new(),
            dispatched: Vec::new(),
            ops: Vec::new(),
            outcomes: Vec::new(),
            log: Vec::new(),
        };
        h.drain(|_| {});
        h
    }

    /// Drains every output, updating the bookkeeping, and hands each to `f`.
    pub fn drain(&mut self, mut f: impl FnMut(&Output<u32>)) {
        while let Some(out) = self.m.poll_output() {
            match &out {
                Output::Connect { conn, .. } => self.conns.push(*conn),
                Output::Dispatch { op, conn, .. } => {
                    self.dispatched.retain(|(o, _)| o != op);
                    self.dispatched.push((*op, *conn));
                }
                Output::Complete(c) => {
                    let i = c.payload as usize;
                    assert!(
                        self.ops.get(i) == Some(&c.id),
                        "completion of {} hands back payload {i}, which belongs to {:?}",
                        c.id,
                        self.ops.get(i)
                    );
                    self.outcomes[i] += 1;
                    assert!(
                        self.outcomes[i] == 1,
                        "{} got a second outcome: {:?}",
                        c.id,
                        c.result
                    );
                    self.dispatched.retain(|(o, _)| *o != c.id);
                }
                _ => {}
            }
            f(&out);
            self.log.push(out);
        }
    }

    /// Index into [`Harness::conns`] a reference points at (an index at or
    /// beyond the end is an id not issued yet), or the raw id.
    fn conn_index(&self, r: ConnRef) -> Result<usize, ConnId> {
        let len = self.conns.len();
        match r {
            ConnRef::Latest => Ok(len.saturating_sub(1)),
            ConnRef::Older(n) => Ok(len.saturating_sub(2 + usize::from(n))),
            ConnRef::Future(n) => Ok(len + usize::from(n)),
            ConnRef::Raw(x) => Err(ConnId::from_raw(x)),
        }
    }

    /// The id of the attempt with index `i` (beyond the end: ids not issued yet).
    pub fn conn_id(&self, i: usize) -> ConnId {
        match self.conns.get(i) {
            Some(c) => *c,
            None => {
                let last = self.conns.last().map_or(0, |c| c.get());
                ConnId::from_raw(last + 1 + (i - self.conns.len()) as u64)
            }
        }
    }

    fn conn(&self, r: ConnRef) -> (ConnId, Option<usize>) {
        match self.conn_index(r) {
            Ok(i) => (self.conn_id(i), Some(i)),
            // A raw id may name an issued attempt, or one not issued yet.
            Err(raw) => {
                let last = self.conns.last().map_or(0, |c| c.get());
                let i = match self.index_of_conn(raw) {
                    Some(i) => Some(i),
                    None if raw.get() > last => usize::try_from(raw.get() - last - 1)
                        .ok()
                        .and_then(|k| self.conns.len().checked_add(k)),
                    None => None,
                };
                (raw, i)
            }
        }
    }

    fn op(&self, r: OpRef) -> Option<(OpId, Option<ConnId>)> {
        match r {
            OpRef::InFlight(n) if !self.dispatched.is_empty() => {
                let (op, conn) = self.dispatched[usize::from(n) % self.dispatched.len()];
                Some((op, Some(conn)))
            }
            OpRef::InFlight(_) => None,
            OpRef::Submitted(n) if !self.ops.is_empty() => {
                let len = self.ops.len();
                Some((self.ops[len - 1 - usize::from(n) % len], None))
            }
            OpRef::Submitted(_) => None,
            OpRef::Raw(x) => Some((OpId::from_raw(x), None)),
        }
    }

    fn index_of(&self, op: OpId) -> Option<usize> {
        self.ops.iter().position(|o| *o == op)
    }

    fn index_of_conn(&self, conn: ConnId) -> Option<usize> {
        self.conns.iter().position(|c| *c == conn)
    }

    /// Where the clock goes for a jump.
    pub fn jump_target(&self, j: Jump) -> Instant {
        match j {
            Jump::Zero => self.now,
            Jump::Forward(d) => self.now + ms(d),
            Jump::Back(d) => Instant::from_micros(
                self.now
                    .as_micros()
                    .saturating_sub(ms(d).as_micros() as u64),
            ),
            Jump::NextTimer => self
                .m
                .poll_timeout()
                .map_or(self.now, |(at, _)| at.max(self.now)),
            Jump::Far(min) => self.now + Duration::from_secs(60 * u64::from(min)),
        }
    }

    /// Feeds one step to the machine (without draining) and says what it
    /// was about.
    pub fn apply(&mut self, step: Step) -> Applied {
        let now = self.now;
        match step {
            Step::Connected(r) => {
                let (c, i) = self.conn(r);
                self.m.handle_connected(now, c);
                i.map_or(Applied::Nothing, Applied::Conn)
            }
            Step::ConnectFailed(r) => {
                let (c, i) = self.conn(r);
                // `Step::ConnectFailedWith` gives the other reasons.
                self.m
                    .handle_connect_failed(now, c, ConnectFailure::Refused);
                i.map_or(Applied::Nothing, Applied::Conn)
            }
            Step::Lost(r, kind) => {
                let (c, i) = self.conn(r);
                self.m.handle_connection_lost(now, c, kind.into());
                i.map_or(Applied::Nothing, Applied::Conn)
            }
            Step::Submit(o) => {
                let i = self.ops.len();
                // Recorded before the call: the outcome may come at once.
                self.ops.push(OpId::from_raw(u64::MAX));
                self.outcomes.push(0);
                let id = self.m.submit(now, i as u32, o.options());
                assert!(
                    !self.ops.contains(&id),
                    "op id {id} issued twice (submissions {:?} and {i})",
                    self.index_of(id)
                );
                self.ops[i] = id;
                Applied::Submit(i)
            }
            Step::Answer(r, result) => match self.op(r) {
                Some((op, conn)) => {
                    let c =
                        conn.unwrap_or_else(|| self.conn_id(self.conns.len().saturating_sub(1)));
                    self.m.handle_op_result(now, op, c, result.into());
                    match (self.index_of(op), self.index_of_conn(c)) {
                        (Some(i), Some(k)) => Applied::OpOnConn(i, k),
                        _ => Applied::Nothing,
                    }
                }
                None => Applied::Nothing,
            },
            Step::AnswerOn(r, cr, result) => match self.op(r) {
                Some((op, _)) => {
                    let (c, k) = self.conn(cr);
                    self.m.handle_op_result(now, op, c, result.into());
                    match (self.index_of(op), k) {
                        (Some(i), Some(k)) => Applied::OpOnConn(i, k),
                        _ => Applied::Nothing,
                    }
                }
                None => Applied::Nothing,
            },
            Step::ConnectFailedWith(r, why) => {
                let (c, i) = self.conn(r);
                self.m.handle_connect_failed(now, c, why.into());
                i.map_or(Applied::Nothing, Applied::Conn)
            }
            Step::Heartbeat(r, result) => {
                let (c, i) = self.conn(r);
                self.m.handle_heartbeat(now, c, result.into());
                i.map_or(Applied::Nothing, Applied::Conn)
            }
            Step::Pushback(r, hint) => match self.op(r) {
                Some((op, conn)) => {
                    let c =
                        conn.unwrap_or_else(|| self.conn_id(self.conns.len().saturating_sub(1)));
                    let result = redial_core::OpResult::Pushback {
                        retry_after: hint.map(ms),
                    };
                    self.m.handle_op_result(now, op, c, result);
                    match (self.index_of(op), self.index_of_conn(c)) {
                        (Some(i), Some(k)) => Applied::OpOnConn(i, k),
                        _ => Applied::Nothing,
                    }
                }
                None => Applied::Nothing,
            },
            Step::ConnectedAs(r, role) => {
                let (c, i) = self.conn(r);
                self.m.handle_connected_as(now, c, role.into());
                i.map_or(Applied::Nothing, Applied::Conn)
            }
            Step::Revive => {
                self.m.revive(now);
                Applied::Plain
            }
            Step::HeartbeatOk(r) => {
                let (c, i) = self.conn(r);
                self.m.handle_heartbeat_ok(now, c);
                i.map_or(Applied::Nothing, Applied::Conn)
            }
            Step::Cancel(r) => match self.op(r) {
                Some((op, _)) => {
                    self.m.cancel(now, op);
                    self.index_of(op).map_or(Applied::Nothing, Applied::Op)
                }
                None => Applied::Nothing,
            },
            Step::Close => {
                self.m.close(now);
                Applied::Plain
            }
            Step::Wait(j) => {
                self.now = self.jump_target(j);
                self.m.handle_timeout(self.now);
                Applied::Plain
            }
        }
    }
}
