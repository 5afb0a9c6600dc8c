//! Runs inside the reference model's reach: the same steps fed to the core
//! (with both oracles attached) and to the [`Model`]; after every step the
//! observable outcomes must agree: connect attempts and event names in
//! order, dispatches in order, and completions in order with their kind and
//! `maybe_executed`.

use arbitrary::{Arbitrary, Unstructured};
use redial_core::{
    BufferPolicy, Config, ConfigBuilder, Duration, InitialConnect, Instant, Jitter, Output, Preset,
    Tries,
};

use crate::Checked;
use crate::harness::input::{FuzzOpts, Jump, MAX_STEPS, Step, ms};
use crate::harness::{Applied, Harness};
use crate::reference::{Buffer, Model, ModelConfig, Outcome, Seen};

/// The buffer rows of the matrix (and the modern overflow policies).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum ModelBuffer {
    /// `-1`.
    Unbounded,
    /// `0`.
    Disabled,
    /// `1 + n % 8` entries.
    Bounded(u8, crate::harness::input::OverflowPolicy),
}

/// A configuration inside the model's reach.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct ModelFuzzConfig {
    /// `autoReconnect`.
    pub auto_reconnect: bool,
    /// Buffer row.
    pub buffer: ModelBuffer,
    /// `reconnectTries = n % 8`, or unlimited.
    pub tries: Option<u8>,
    /// `reconnectInterval` in milliseconds (at least 1).
    pub interval: u16,
    /// Fail-fast initial connect?
    pub fail_fast_initial: bool,
    /// `1 + n % 4`.
    pub max_op_attempts: u8,
    /// `1 + n % 3` endpoints.
    pub endpoints: u8,
    /// Blind resend of unmarked ops lost in flight.
    pub retry_lost: bool,
    /// Fail the buffer after `n % 4` failed reconnect attempts.
    pub fail_buffered_after: Option<u8>,
}

impl ModelFuzzConfig {
    fn buffer(&self) -> Buffer {
        match self.buffer {
            ModelBuffer::Unbounded => Buffer::Unbounded,
            ModelBuffer::Disabled => Buffer::Disabled,
            ModelBuffer::Bounded(n, p) => Buffer::Bounded(1 + usize::from(n % 8), p.into()),
        }
    }

    /// The model's view.
    pub fn model(&self) -> ModelConfig {
        ModelConfig {
            auto_reconnect: self.auto_reconnect,
            buffer: self.buffer(),
            tries: self.tries.map(|n| u32::from(n % 8)),
            interval_us: ms(self.interval.max(1)).as_micros() as u64,
            fail_fast_initial: self.fail_fast_initial,
            max_op_attempts: 1 + u32::from(self.max_op_attempts % 4),
            retry_lost: self.retry_lost,
            fail_buffered_after: self.fail_buffered_after.map(|n| u32::from(n % 4)),
        }
    }

    /// The same configuration for the core: everything the model does not
    /// cover is switched off.
    pub fn core(&self) -> Config {
        let m = self.model();
        let buffer = match m.buffer {
            Buffer::Unbounded => BufferPolicy::Unbounded,
            Buffer::Disabled => BufferPolicy::Disabled,
            Buffer::Bounded(max, overflow) => BufferPolicy::Bounded { max, overflow },
        };
        let b: ConfigBuilder = Preset::MongodbLegacy
            .builder()
            .auto_reconnect(m.auto_reconnect)
            .buffer(buffer)
            .reconnect_tries(m.tries.map_or(Tries::Unlimited, Tries::Limited))
            .reconnect_interval(Duration::from_micros(m.interval_us))
            .jitter(Jitter::None)
            .initial_connect(if m.fail_fast_initial {
                InitialConnect::FailFast
            } else {
                InitialConnect::Retry
            })
            .connect_timeout(None)
            .socket_timeout(None)
            .heartbeat(None)
            .response_timeout(None)
            .buffer_timeout(None)
            .op_deadline(None)
            .max_op_attempts(m.max_op_attempts)
            .retry_lost(m.retry_lost)
            .fail_buffered_after(m.fail_buffered_after)
            .retry_budget(None)
            .endpoints(1 + usize::from(self.endpoints % 3));
        b.build().expect("the model's configurations are valid")
    }
}

/// A configuration, a seed and the steps.
#[derive(Clone, Debug)]
pub struct ModelInput {
    /// The configuration.
    pub config: ModelFuzzConfig,
    /// Jitter seed (jitter is off: must not matter).
    pub seed: u64,
    /// What happens.
    pub steps: Vec<Step>,
}

impl<'a> Arbitrary<'a> for ModelInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(ModelInput {
            config: ModelFuzzConfig::arbitrary(u)?,
            seed: u64::arbitrary(u)?,
            steps: crate::harness::input::steps(u)?,
        })
    }
}

fn seen(h: &Harness, out: &Output<u32>) -> Option<Seen> {
    match out {
        Output::Connect { .. } => Some(Seen::Connect),
        Output::Dispatch { op, .. } => Some(Seen::Dispatch(
            h.ops
                .iter()
                .position(|o| o == op)
                .expect("dispatched ops were submitted"),
        )),
        Output::Complete(c) => Some(Seen::Complete(
            c.payload as usize,
            match &c.result {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Err(e.kind(), e.maybe_executed()),
            },
        )),
        Output::Event(e) => Some(Seen::Event(e.name())),
        Output::Close { .. } | Output::Heartbeat { .. } => None,
    }
}

/// Splits observations into (connects and events, dispatches, completions).
fn split(v: &[Seen]) -> [Vec<Seen>; 3] {
    let mut r: [Vec<Seen>; 3] = Default::default();
    for s in v {
        let k = match s {
            Seen::Event(_) | Seen::Connect => 0,
            Seen::Dispatch(_) => 1,
            Seen::Complete(..) => 2,
        };
        r[k].push(s.clone());
    }
    r
}

/// Runs one input; panics when the core and the model disagree.
pub(crate) fn run(input: &ModelInput) {
    let cfg = input.config;
    let mut h = Harness::new(Checked::new(cfg.core(), input.seed, Instant::ZERO));
    let mut model = Model::new(cfg.model());
    let first: Vec<Seen> = h.log.iter().filter_map(|o| seen(&h, o)).collect();
    compare(&cfg, usize::MAX, None, &first, &model.take_seen());
    let steps = input.steps.iter().take(MAX_STEPS).map(|s| match *s {
        // Deadlines and command timeouts are outside the model.
        Step::Submit(o) => Step::Submit(FuzzOpts {
            deadline: None,
            command_timeout: None,
            ..o
        }),
        // The model retries every failed connect, and has no heartbeats,
        // pushback, roles (its configurations do not require the primary)
        // or revive.
        Step::ConnectFailedWith(r, _) => Step::ConnectFailed(r),
        Step::Heartbeat(r, _) => Step::HeartbeatOk(r),
        Step::ConnectedAs(r, _) => Step::Connected(r),
        Step::Pushback(..) | Step::Revive => Step::Wait(Jump::Zero),
        s => s,
    });
    let mut history = Vec::new();
    for (n, step) in steps.enumerate() {
        history.push(step);
        let applied = h.apply(step);
        let mut core_seen = Vec::new();
        let mut outs = Vec::new();
        h.drain(|o| outs.push(o.clone()));
        core_seen.extend(outs.iter().filter_map(|o| seen(&h, o)));
        match (step, applied) {
            (Step::Connected(_), Applied::Conn(k)) => model.connected(k),
            (Step::ConnectFailed(_), Applied::Conn(k)) => model.connect_failed(k),
            (Step::Lost(..), Applied::Conn(k)) => model.lost(k),
            (Step::Submit(o), Applied::Submit(i)) => {
                let retryable = o.retryable.unwrap_or(model.config().retry_lost);
                model.submit(i, retryable, o.max_attempts.map(u32::from))
            }
            (Step::Answer(_, r) | Step::AnswerOn(_, _, r), Applied::OpOnConn(i, k)) => {
                model.op_result(i, k, r.into())
            }
            (Step::Cancel(_), Applied::Op(i)) => model.cancel(i),
            (Step::Close, _) => model.close(),
            (Step::Wait(_), _) => model.time(h.now.as_micros()),
            _ => {}
        }
        compare(&cfg, n, Some(&history), &core_seen, &model.take_seen());
        oracles_clean(&h, n, &history);
    }
    // Close and drain: the same final outcomes.
    h.m.close(h.now);
    let mut outs = Vec::new();
    h.drain(|o| outs.push(o.clone()));
    let core_seen: Vec<Seen> = outs.iter().filter_map(|o| seen(&h, o)).collect();
    model.close();
    history.push(Step::Close);
    h.m.finish();
    oracles_clean(&h, history.len(), &history);
    compare(
        &cfg,
        history.len(),
        Some(&history),
        &core_seen,
        &model.take_seen(),
    );
}

fn compare(
    cfg: &ModelFuzzConfig,
    n: usize,
    history: Option<&[Step]>,
    core: &[Seen],
    model: &[Seen],
) {
    let (c, m) = (split(core), split(model));
    for (what, (c, m)) in ["connects/events", "dispatches", "completions"]
        .iter()
        .zip(c.iter().zip(m.iter()))
    {
        assert!(
            c == m,
            "core and reference model disagree on {what} at step {n}\n  \
             core:  {c:?}\n  model: {m:?}\n  config: {cfg:?} -> {:?}\n  steps: {history:#?}",
            cfg.model()
        );
    }
}

fn oracles_clean(h: &Harness, n: usize, history: &[Step]) {
    if !h.m.is_ok() {
        let list: Vec<String> = h.m.violations().map(|v| v.to_string()).collect();
        panic!(
            "violation(s) at step {n}:\n  {}\n  steps: {history:#?}",
            list.join("\n  ")
        );
    }
}
