//! The simulation: a virtual clock, simulated servers and network, and the
//! real machine.

use core::time::Duration;
use std::collections::BTreeMap;

use redial_check::Checked;
use redial_core::{
    ConnId, ConnectFailure, DisconnectReason, Done, Event, Instant, LossKind, OpError, OpId,
    OpOptions, OpResult, Output, State,
};

use crate::output::{Field, Format, Line, OpLine, Summary, write_line};
use crate::timeline::{ClientAction, StepAction, Submit, Timeline};
use crate::world::{Net, Stepped, Undo};

/// How to run a timeline.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Overrides the timeline's `seed`.
    pub seed: Option<u64>,
    /// Stop here when the timeline has no `until` (default one hour).
    pub max_time: Duration,
    /// Check the invariants on the fly (default `true`). The checker
    /// remembers every finished op id, so its memory grows with the number
    /// of ops; turn it off to measure the simulator alone.
    pub check: bool,
    /// Stop after this many simulated events, whatever the timeline says
    /// (for fuzzers that must bound the work per input). `None`: no bound.
    pub max_events: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seed: None,
            max_time: Duration::from_secs(3600),
            check: true,
            max_events: None,
        }
    }
}

struct OpInfo {
    seq: u64,
    id: OpId,
    label: String,
    submitted: Instant,
    first_dispatch: Option<Instant>,
    server_error: bool,
    then: Option<String>,
}

enum Ev {
    Step(usize),
    Tick(usize, u64),
    Then(String),
    /// The caller gives up op `seq` (drops its call: a cancel).
    Cancel(u64),
    Undo(Undo),
    ConnectDone {
        conn: ConnId,
        ok: bool,
    },
    Lost {
        conn: ConnId,
        kind: LossKind,
    },
    Answer {
        op: OpId,
        conn: ConnId,
        result: OpResult,
    },
    HeartbeatOk {
        conn: ConnId,
    },
}

impl Ev {
    fn scripted(&self) -> bool {
        matches!(self, Ev::Step(_) | Ev::Tick(..) | Ev::Then(_) | Ev::Undo(_))
    }
}

/// What [`run_observed`] reports beside the transcript: the machine's
/// state over time and the ops still open at the end (for pictures,
/// `crate::svg`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The machine's state after every input that changed it, as (µs,
    /// state), in time order; the first entry is at 0.
    pub states: Vec<(u64, State)>,
    /// The ops with no outcome when the run stopped, in submission order.
    pub pending: Vec<PendingOp>,
    /// The virtual time the run stopped at, µs (the timeline's `until`
    /// when it has one).
    pub end_us: u64,
}

/// An op with no outcome when the run stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOp {
    /// 1-based submission number.
    pub id: u64,
    /// The op's label.
    pub label: String,
    /// Submission time, µs.
    pub submitted_us: u64,
    /// First dispatch time, µs (`None`: never sent).
    pub first_dispatch_us: Option<u64>,
}

struct World<'a, F: FnMut(&Line)> {
    tl: &'a Timeline,
    obs: Option<&'a mut Observed>,
    m: Checked<u64>,
    now: Instant,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    scripted: usize,
    net: Net,
    ops: BTreeMap<u64, OpInfo>,
    by_id: BTreeMap<OpId, u64>,
    next_op: u64,
    summary: Summary,
    sink: F,
}

/// Runs a timeline, handing every line to `sink` as it happens, and
/// returns the summary. Memory stays proportional to what is outstanding
/// (ops, connections, scheduled messages), not to the timeline's length.
pub fn run(tl: &Timeline, opts: &RunOptions, sink: impl FnMut(&Line)) -> Summary {
    run_inner(tl, opts, sink, None)
}

/// [`run`], also filling `obs` (cleared first) with the machine's states
/// and the ops left open at the end. The transcript and summary are
/// [`run`]'s, byte for byte.
pub fn run_observed(
    tl: &Timeline,
    opts: &RunOptions,
    sink: impl FnMut(&Line),
    obs: &mut Observed,
) -> Summary {
    *obs = Observed::default();
    run_inner(tl, opts, sink, Some(obs))
}

fn run_inner<'a>(
    tl: &'a Timeline,
    opts: &RunOptions,
    sink: impl FnMut(&Line),
    obs: Option<&'a mut Observed>,
) -> Summary {
    let seed = opts.seed.unwrap_or(tl.seed);
    let m = if opts.check {
        Checked::new(tl.config.clone(), seed, Instant::ZERO)
    } else {
        Checked::unchecked(tl.config.clone(), seed, Instant::ZERO)
    };
    let w = World {
        tl,
        obs,
        m,
        now: Instant::ZERO,
        queue: BTreeMap::new(),
        seq: 0,
        scripted: 0,
        net: Net::new(tl, seed),
        ops: BTreeMap::new(),
        by_id: BTreeMap::new(),
        next_op: 1,
        summary: Summary::default(),
        sink,
    };
    w.main(opts)
}

/// Runs a timeline and renders the whole transcript (summary line last).
pub fn run_to_string(tl: &Timeline, opts: &RunOptions) -> (String, Summary) {
    run_formatted(tl, opts, Format::Text)
}

/// Runs a timeline and renders it in `format` (summary line last).
pub fn run_formatted(tl: &Timeline, opts: &RunOptions, format: Format) -> (String, Summary) {
    let mut out = String::new();
    let summary = run(tl, opts, |l| write_line(&mut out, format, l));
    summary.write(&mut out, format);
    (out, summary)
}

impl<F: FnMut(&Line)> World<'_, F> {
    fn main(mut self, opts: &RunOptions) -> Summary {
        for (i, s) in self.tl.steps.iter().enumerate() {
            self.schedule_at(Instant::ZERO + s.at, Ev::Step(i));
        }
        for (i, wl) in self.tl.workloads.iter().enumerate() {
            if wl.from < wl.until {
                self.schedule_at(Instant::ZERO + wl.from, Ev::Tick(i, 0));
            }
        }
        let end = Instant::ZERO + self.tl.until.unwrap_or(opts.max_time);
        self.drain();
        loop {
            if self.tl.until.is_none() && self.scripted == 0 && self.m.outstanding() == 0 {
                break;
            }
            let next_ev = self.queue.first_key_value().map(|(k, _)| k.0);
            let next_timer = self.m.poll_timeout().map(|(t, _)| t);
            let t = match (next_ev, next_timer) {
                (None, None) => break,
                (Some(a), None) | (None, Some(a)) => a,
                (Some(a), Some(b)) => a.min(b),
            };
            if t > end || opts.max_events.is_some_and(|m| self.summary.events >= m) {
                break;
            }
            self.now = self.now.max(t);
            self.summary.events += 1;
            if next_ev == Some(t) {
                let (_, ev) = self.queue.pop_first().expect("peeked above");
                if ev.scripted() {
                    self.scripted -= 1;
                }
                self.handle(ev);
            } else {
                self.m.handle_timeout(self.now);
            }
            self.drain();
            // As the driver does: timers due by now run before the next
            // input is taken, even one due at this same instant — after an
            // input, and after a timer step too (one can leave another due
            // at once: a pushback probe that left without an answer is
            // re-armed for `now`).
            while self.m.poll_timeout().is_some_and(|(at, _)| at <= self.now) {
                self.m.handle_timeout(self.now);
                self.drain();
            }
        }
        self.summary.pending = self.m.outstanding() as u64;
        if let Some(obs) = self.obs.as_deref_mut() {
            obs.end_us = self.tl.until.map_or(self.now.as_micros(), |u| {
                u64::try_from(u.as_micros()).unwrap_or(u64::MAX)
            });
            obs.pending = self
                .ops
                .values()
                .map(|i| PendingOp {
                    id: i.seq,
                    label: i.label.clone(),
                    submitted_us: i.submitted.as_micros(),
                    first_dispatch_us: i.first_dispatch.map(Instant::as_micros),
                })
                .collect();
        }
        if self.m.state() == redial_core::State::Closed {
            // Closed: every op must have had its outcome.
            self.m.finish();
        }
        self.summary.violations = self.m.violations().map(|v| v.to_string()).collect();
        self.summary
    }

    fn schedule_at(&mut self, at: Instant, ev: Ev) {
        if ev.scripted() {
            self.scripted += 1;
        }
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn world(&mut self, text: String) {
        let line = Line::World {
            t_us: self.now.as_micros(),
            text,
        };
        (self.sink)(&line);
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Step(i) => {
                let step = self.tl.steps[i].clone();
                match step.action {
                    StepAction::Server {
                        action,
                        endpoint,
                        for_,
                    } => {
                        let stepped = self.net.step(now, endpoint, action, for_);
                        self.stepped(stepped);
                    }
                    StepAction::Submit(s) => self.submit(&s),
                    StepAction::Client(ClientAction::Close) => {
                        self.world("client close".into());
                        self.m.close(now);
                    }
                    StepAction::Client(ClientAction::Revive) => {
                        self.world("client revive".into());
                        self.m.revive(now);
                    }
                }
            }
            Ev::Tick(i, n) => {
                let wl = &self.tl.workloads[i];
                let s = wl.submit.clone();
                if let Some(next) = wl.tick_at(n + 1) {
                    self.schedule_at(Instant::ZERO + next, Ev::Tick(i, n + 1));
                }
                self.submit(&s);
            }
            Ev::Then(label) => {
                let s = Submit::follow_up(label);
                self.submit(&s);
            }
            Ev::Cancel(seq) => {
                if let Some(id) = self.ops.get(&seq).map(|i| i.id) {
                    self.m.cancel(now, id);
                }
            }
            Ev::Undo(u) => {
                if let Some(stepped) = self.net.undo(now, u) {
                    self.stepped(stepped);
                }
            }
            Ev::ConnectDone { conn, ok } => {
                if !self.net.connect_arrives(conn.get(), ok) {
                    return;
                }
                if ok {
                    // The connector checks the role on connect, as one
                    // configured for failover would.
                    let role = self.net.role(conn.get());
                    self.m.handle_connected_as(now, conn, role);
                } else {
                    self.m
                        .handle_connect_failed(now, conn, ConnectFailure::Refused);
                }
            }
            Ev::Lost { conn, kind } => self.m.handle_connection_lost(now, conn, kind),
            Ev::Answer { op, conn, result } => {
                if self.net.deliverable(conn.get()) {
                    self.m.handle_op_result(now, op, conn, result);
                }
            }
            Ev::HeartbeatOk { conn } => {
                if self.net.deliverable(conn.get()) {
                    self.m.handle_heartbeat_ok(now, conn);
                }
            }
        }
    }

    /// Carries out a server step (or its undo) in the world.
    fn stepped(&mut self, s: Stepped) {
        self.world(s.text);
        for (id, at, kind) in s.losses {
            let conn = ConnId::from_raw(id);
            self.schedule_at(at, Ev::Lost { conn, kind });
        }
        if let Some((at, u)) = s.undo {
            self.schedule_at(at, Ev::Undo(u));
        }
    }

    fn submit(&mut self, s: &Submit) {
        for _ in 0..s.count {
            let seq = self.next_op;
            self.next_op += 1;
            let mut opts = OpOptions {
                retryable: s.retryable,
                ..OpOptions::new()
            };
            if let Some(d) = s.deadline {
                opts = opts.deadline(d);
            }
            if let Some(n) = s.max_attempts {
                opts = opts.max_attempts(n);
            }
            self.ops.insert(
                seq,
                OpInfo {
                    seq,
                    id: OpId::from_raw(0),
                    label: s.label.clone(),
                    submitted: self.now,
                    first_dispatch: None,
                    server_error: s.server_error,
                    then: s.then.clone(),
                },
            );
            self.summary.submitted += 1;
            let id = self.m.submit(self.now, seq, opts);
            self.by_id.insert(id, seq);
            if let Some(info) = self.ops.get_mut(&seq) {
                info.id = id;
                if let Some(d) = s.cancel_after {
                    self.schedule_at(self.now + d, Ev::Cancel(seq));
                }
            }
            self.drain();
        }
    }

    fn drain(&mut self) {
        let now = self.now;
        // Dispatches reach the world once the step is drained, as in the
        // driver (which starts an op's run after carrying out the step's
        // outputs): an op that completed in the same step (its deadline,
        // say) or whose connection closed is never sent.
        let mut sends: Vec<(OpId, ConnId)> = Vec::new();
        while let Some(out) = self.m.poll_output() {
            match out {
                Output::Connect { conn, endpoint, .. } => {
                    self.summary.connect_attempts += 1;
                    let ep = self.tl.listed_endpoint(endpoint);
                    if let Some((at, ok)) = self.net.connect(now, conn.get(), ep) {
                        self.schedule_at(at, Ev::ConnectDone { conn, ok });
                    }
                }
                Output::Close { conn } => self.net.close(conn.get()),
                Output::Dispatch { op, conn, .. } => sends.push((op, conn)),
                Output::Heartbeat { conn } => {
                    if let Some(at) = self.net.ping(now, conn.get()) {
                        self.schedule_at(at, Ev::HeartbeatOk { conn });
                    }
                }
                Output::Complete(c) => {
                    let Some(seq) = self.by_id.remove(&c.id) else {
                        continue;
                    };
                    let Some(info) = self.ops.remove(&seq) else {
                        continue;
                    };
                    let line = op_line(
                        self.tl,
                        now,
                        (info.seq, info.label, info.submitted, info.first_dispatch),
                        &c.result,
                    );
                    self.summary.count(&line);
                    let line = Line::Op(line);
                    (self.sink)(&line);
                    if let Some(then) = info.then {
                        self.schedule_at(now, Ev::Then(then));
                    }
                }
                Output::Event(e) => {
                    let line = event_line(self.tl, self.now, &e);
                    (self.sink)(&line);
                }
            }
        }
        for (op, conn) in sends {
            let Some(seq) = self.by_id.get(&op).copied() else {
                continue;
            };
            let Some(info) = self.ops.get_mut(&seq) else {
                continue;
            };
            info.first_dispatch.get_or_insert(now);
            let server_error = info.server_error;
            if let Some((at, result)) = self.net.dispatch(now, conn.get(), seq, server_error) {
                self.schedule_at(at, Ev::Answer { op, conn, result });
            }
        }
        self.summary.max_buffered = self.summary.max_buffered.max(self.m.buffered() as u64);
        if let Some(obs) = self.obs.as_deref_mut() {
            let state = self.m.state();
            if obs.states.last().is_none_or(|&(_, s)| s != state) {
                obs.states.push((now.as_micros(), state));
            }
        }
    }
}

/// The transcript line of a completed op: `(number, label, submitted,
/// first dispatch)` and the core's outcome (which says how many of its
/// dispatches may have run).
pub(crate) fn op_line(
    tl: &Timeline,
    t: Instant,
    (id, label, submitted, first_dispatch): (u64, String, Instant, Option<Instant>),
    outcome: &Result<Done, OpError>,
) -> OpLine {
    let (result, attempts, maybe_executed, runs) = match outcome {
        Ok(d) => (Ok(endpoint_name(tl, d.endpoint)), d.attempts, true, d.runs),
        Err(e) => (
            Err((e.kind().name().to_string(), e.to_string())),
            e.attempts(),
            e.maybe_executed(),
            e.runs(),
        ),
    };
    OpLine {
        t_us: t.as_micros(),
        id,
        label,
        submitted_us: submitted.as_micros(),
        first_dispatch_us: first_dispatch.map(Instant::as_micros),
        result,
        attempts,
        maybe_executed,
        runs,
    }
}

/// The name of the machine's endpoint `machine_endpoint`.
pub(crate) fn endpoint_name(tl: &Timeline, machine_endpoint: usize) -> String {
    tl.endpoints[tl.listed_endpoint(machine_endpoint)]
        .name
        .clone()
}

/// The transcript line of event `e` at `now`.
pub(crate) fn event_line(tl: &Timeline, now: Instant, e: &Event) -> Line {
    use Field::{Num, Str};
    let (fields, text): (Vec<(&'static str, Field)>, String) = match *e {
        Event::Connected { conn, endpoint } => {
            let n = endpoint_name(tl, endpoint);
            (
                vec![("conn", Num(conn.get())), ("endpoint", Str(n.clone()))],
                format!("connected to {n} ({conn})"),
            )
        }
        Event::Reconnected { conn, endpoint } => {
            let n = endpoint_name(tl, endpoint);
            (
                vec![("conn", Num(conn.get())), ("endpoint", Str(n.clone()))],
                format!("reconnected to {n} ({conn})"),
            )
        }
        Event::Disconnected {
            conn,
            endpoint,
            reason,
        } => {
            let n = endpoint_name(tl, endpoint);
            (
                vec![
                    ("conn", Num(conn.get())),
                    ("endpoint", Str(n.clone())),
                    ("reason", Str(reason.name().into())),
                ],
                format!(
                    "lost connection to {n} ({conn}: {})",
                    match reason {
                        DisconnectReason::Lost(LossKind::Closed) => "closed by the server",
                        DisconnectReason::Lost(LossKind::Reset) => "reset",
                        DisconnectReason::Lost(LossKind::TimedOut) => "timed out",
                        DisconnectReason::Idle => "idle, socket timeout",
                        DisconnectReason::Unresponsive => "unresponsive",
                        DisconnectReason::WrongServer => "not primary",
                        _ => reason.name(),
                    }
                ),
            )
        }
        Event::Reconnecting {
            attempt,
            delay,
            endpoint,
            error,
        } => {
            let n = endpoint_name(tl, endpoint);
            let mut fields = vec![
                ("attempt", Num(u64::from(attempt))),
                (
                    "delay_ms",
                    Num(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                ),
                ("endpoint", Str(n.clone())),
            ];
            let mut text = format!(
                "reconnecting: attempt {attempt} to {n} in {} ms",
                delay.as_millis()
            );
            if let Some(e) = error {
                fields.push(("error", Str(e.name().into())));
                text.push_str(&format!(" (last attempt {e})"));
            }
            (fields, text)
        }
        Event::ReconnectFailed { attempts, error } => {
            let mut fields = vec![("attempts", Num(u64::from(attempts)))];
            let mut text =
                format!("gave up reconnecting after {attempts} attempts (reconnect_failed");
            if let Some(e) = error {
                fields.push(("error", Str(e.name().into())));
                text.push_str(&format!(", last attempt {e}"));
            }
            text.push(')');
            (fields, text)
        }
        Event::Closed => (vec![], "client closed".into()),
        Event::BufferOverflow { failed } => (
            vec![("failed", Num(failed as u64))],
            format!("buffer overflow: {failed} ops errored out"),
        ),
        Event::Unresponsive { conn } => (
            vec![("conn", Num(conn.get()))],
            format!("{conn} unresponsive"),
        ),
        // An event this transcript does not know yet: its name and words.
        _ => (vec![], e.to_string()),
    };
    Line::Event {
        t_us: now.as_micros(),
        event: e.name(),
        fields,
        text,
    }
}
