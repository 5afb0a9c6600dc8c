//! The real driver under the simulator: a timeline replayed through
//! [`redial::Client`] — the code applications run — on a virtual clock
//! ([`VirtualRuntime`]), against the same world model as the fast loop
//! ([`crate::run`]).
//!
//! The world answers the driver through a simulated [`Connector`]
//! ([`SimConnector`]): `connect`, `run`, `ping` and `closed` wait for the
//! world's messages, which arrive at the instants the world model gives.
//! The application is simulated too: each submit is a task awaiting a
//! [`Call`](redial::Call) (dropped early for `cancel_after`, which cancels
//! the op), `close` steps call [`Client::close`], and events are read from
//! [`Client::events`]. The oracles (`redial_check::Watcher`: invariants and
//! policy contract) watch the driver's machine through [`redial::Observer`].
//!
//! One world message is delivered at a time and the executor runs until
//! every task is idle before the next, so each input reaches the driver
//! alone, as on a real runtime; timers due at an instant run after the
//! input delivered at that instant, as in the fast loop.

use core::time::Duration;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::channel::oneshot;
use futures::future::{Either, select};
use futures::{FutureExt, StreamExt};
use redial::{Call, CallResult, Client, Connector, Failure, Observer};
use redial_check::Watcher;
use redial_core::{
    ConnId, ErrorKind, Event, Instant, LossKind, Machine, OpId, OpOptions, OpResult, Output, Role,
    State as CoreState,
};

use crate::output::{Format, Line, OpLine, Summary, write_line};
use crate::run::{RunOptions, event_line};
use crate::timeline::{ClientAction, StepAction, Submit, Timeline};
use crate::vrt::VirtualRuntime;
use crate::world::{Net, Stepped, Undo};

/// One op of the simulated application: its transcript number and whether
/// the server answers it with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimOp {
    /// Its number in the transcript (`#n`).
    pub seq: u64,
    /// The server answers it with an error of its own.
    pub server_error: bool,
}

/// What the simulated world answered instead of a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimError(pub Failure);

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Failure::ConnectionLost => f.write_str("connection lost"),
            Failure::WrongServer => f.write_str("READONLY not primary"),
            Failure::Pushback {
                retry_after: Some(d),
            } => write!(f, "BUSY try again in {} ms", d.as_millis()),
            Failure::Pushback { retry_after: None } => {
                f.write_str("LOADING the server is loading its data set")
            }
            Failure::ServerError => f.write_str("server error"),
            _ => f.write_str("failure"),
        }
    }
}

impl std::error::Error for SimError {}

/// A world message on its way.
enum Delivery {
    Step(usize),
    Tick(usize, u64),
    Then(String),
    /// The caller of op `seq` gives up: drops its call (a cancel).
    Cancel(u64),
    Undo(Undo),
    Connect {
        id: u64,
        ok: bool,
        tx: oneshot::Sender<bool>,
    },
    Answer {
        id: u64,
        result: OpResult,
        tx: oneshot::Sender<OpResult>,
    },
    Ping {
        id: u64,
        tx: oneshot::Sender<()>,
    },
    Lost {
        id: u64,
        kind: LossKind,
    },
}

impl Delivery {
    fn scripted(&self) -> bool {
        matches!(
            self,
            Delivery::Step(_) | Delivery::Tick(..) | Delivery::Then(_) | Delivery::Undo(_)
        )
    }
}

struct OpInfo {
    label: String,
    submitted: Instant,
    first_dispatch: Option<Instant>,
    /// Times the driver ran it (the world's count: a success's `attempts`).
    dispatches: u32,
    /// Of those, refused ("wrong server" or pushback: certainly not run).
    refused: u32,
    then: Option<String>,
}

/// Everything the tasks and the simulated connector share.
struct World {
    tl: Arc<Timeline>,
    now: Instant,
    net: Net,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    scripted: usize,
    next_conn: u64,
    /// Per open connection, the driver's `closed()` watch.
    watchers: BTreeMap<u64, oneshot::Sender<LossKind>>,
    ops: BTreeMap<u64, OpInfo>,
    /// Calls whose caller will give up (`cancel_after`), by op number.
    calls: BTreeMap<u64, Held>,
    next_op: u64,
    lines: Vec<Line>,
    summary: Summary,
    /// Whether the application has subscribed to `Client::events` (at its
    /// first action: subscribing is an input, and an idle application
    /// sends none).
    subscribed: bool,
    /// Events the machine emitted since then, not yet read from the stream.
    unread: std::collections::VecDeque<Event>,
    /// What the stream got wrong, if anything.
    stream_errors: Vec<String>,
}

type Shared = Arc<Mutex<World>>;

fn lock(w: &Shared) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl World {
    fn schedule_at(&mut self, at: Instant, d: Delivery) {
        if d.scripted() {
            self.scripted += 1;
        }
        self.seq += 1;
        self.queue.insert((at, self.seq), d);
    }

    fn world_line(&mut self, text: String) {
        let t_us = self.now.as_micros();
        self.lines.push(Line::World { t_us, text });
    }
}

/// The simulated connector: the world's servers, seen through the
/// [`Connector`] trait.
pub struct SimConnector {
    world: Shared,
    endpoints: usize,
}

impl fmt::Debug for SimConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConnector")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// A simulated connection; dropping it closes it in the world.
pub struct SimConn {
    id: u64,
    /// Timeline endpoint index.
    endpoint: usize,
    closed: Mutex<Option<oneshot::Receiver<LossKind>>>,
    world: Shared,
}

impl fmt::Debug for SimConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimConn({})", self.id)
    }
}

impl Drop for SimConn {
    fn drop(&mut self) {
        let mut w = lock(&self.world);
        w.net.close(self.id);
        w.watchers.remove(&self.id);
    }
}

/// A connect attempt under way: dropped before it is answered (the core
/// abandoned it), it is closed in the world.
struct Attempt {
    id: u64,
    world: Shared,
    settled: bool,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            let mut w = lock(&self.world);
            w.net.close(self.id);
            w.watchers.remove(&self.id);
        }
    }
}

/// Waits for a world message; one that never comes (undeliverable) leaves
/// the future pending for ever, as a silent network would.
async fn arrival<T>(rx: Option<oneshot::Receiver<T>>) -> T {
    match rx {
        Some(rx) => match rx.await {
            Ok(v) => v,
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

impl Connector for SimConnector {
    type Conn = SimConn;
    type Op = SimOp;
    /// The timeline index of the endpoint that answered.
    type Output = usize;
    type Error = SimError;

    fn endpoints(&self) -> usize {
        self.endpoints
    }

    async fn connect(&self, endpoint: usize) -> Result<SimConn, SimError> {
        // The loss watch covers the attempt too: a server that dies while
        // the attempt is pending resets it.
        let (loss_tx, loss_rx) = oneshot::channel();
        let (id, ep, rx) = {
            let mut w = lock(&self.world);
            w.next_conn += 1;
            let id = w.next_conn;
            w.watchers.insert(id, loss_tx);
            w.summary.connect_attempts += 1;
            let ep = w.tl.listed_endpoint(endpoint);
            let now = w.now;
            let rx = w.net.connect(now, id, ep).map(|(at, ok)| {
                let (tx, rx) = oneshot::channel();
                w.schedule_at(at, Delivery::Connect { id, ok, tx });
                rx
            });
            (id, ep, rx)
        };
        let mut attempt = Attempt {
            id,
            world: self.world.clone(),
            settled: false,
        };
        let loss_rx = match select(Box::pin(arrival(rx)), loss_rx).await {
            Either::Left((true, loss_rx)) => loss_rx,
            Either::Left((false, _)) | Either::Right((Ok(_), _)) => {
                let mut w = lock(&self.world);
                w.watchers.remove(&id);
                w.net.close(id);
                attempt.settled = true;
                return Err(SimError(Failure::ConnectionLost));
            }
            Either::Right((Err(_), _)) => std::future::pending().await,
        };
        attempt.settled = true;
        Ok(SimConn {
            id,
            endpoint: ep,
            closed: Mutex::new(Some(loss_rx)),
            world: self.world.clone(),
        })
    }

    async fn run(&self, conn: &SimConn, op: &SimOp) -> Result<usize, SimError> {
        let rx = {
            let mut w = lock(&self.world);
            let now = w.now;
            if let Some(info) = w.ops.get_mut(&op.seq) {
                info.first_dispatch.get_or_insert(now);
                info.dispatches += 1;
            }
            w.net
                .dispatch(now, conn.id, op.seq, op.server_error)
                .map(|(at, result)| {
                    let (tx, rx) = oneshot::channel();
                    let id = conn.id;
                    w.schedule_at(at, Delivery::Answer { id, result, tx });
                    rx
                })
        };
        match arrival(rx).await {
            OpResult::Ok => Ok(conn.endpoint),
            OpResult::WrongServer => {
                if let Some(info) = lock(&self.world).ops.get_mut(&op.seq) {
                    info.refused += 1;
                }
                Err(SimError(Failure::WrongServer))
            }
            OpResult::Pushback { retry_after } => {
                if let Some(info) = lock(&self.world).ops.get_mut(&op.seq) {
                    info.refused += 1;
                }
                Err(SimError(Failure::Pushback { retry_after }))
            }
            OpResult::ServerError => Err(SimError(Failure::ServerError)),
            _ => Err(SimError(Failure::ConnectionLost)),
        }
    }

    fn classify(&self, error: &SimError) -> Failure {
        error.0
    }

    async fn ping(&self, conn: &SimConn) -> Result<(), SimError> {
        let rx = {
            let mut w = lock(&self.world);
            let now = w.now;
            w.net.ping(now, conn.id).map(|at| {
                let (tx, rx) = oneshot::channel();
                let id = conn.id;
                w.schedule_at(at, Delivery::Ping { id, tx });
                rx
            })
        };
        arrival(rx).await;
        Ok(())
    }

    /// The server's role when asked right after the connect (the same
    /// instant: the world answers the check with the handshake), as a
    /// connector configured for failover reads it.
    async fn role(&self, conn: &SimConn) -> Role {
        lock(&self.world).net.role(conn.id)
    }

    async fn closed(&self, conn: &SimConn) -> LossKind {
        let rx = conn.closed.lock().unwrap_or_else(|p| p.into_inner()).take();
        arrival(rx).await
    }
}

/// Attaches the oracles (when on) and tracks the buffer's peak.
struct Watch {
    checker: Option<Arc<Mutex<Watcher>>>,
    max_buffered: Arc<Mutex<u64>>,
    world: Shared,
}

impl Watch {
    fn with(&self, f: impl FnOnce(&mut Watcher)) {
        if let Some(c) = &self.checker {
            f(&mut c.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

impl<P> Observer<P> for Watch {
    fn on_submit(&mut self, now: Instant, op: OpId, options: &OpOptions, before: CoreState) {
        self.with(|c| c.on_submit(now, op, options, before));
    }
    fn on_timeout(&mut self, now: Instant) {
        self.with(|c| c.on_timeout(now));
    }
    fn on_op_result(&mut self, now: Instant, op: OpId, conn: ConnId, result: &OpResult) {
        self.with(|c| c.on_op_result(now, op, conn, result));
    }
    fn on_heartbeat(&mut self, now: Instant, conn: ConnId, result: &OpResult) {
        self.with(|c| c.on_heartbeat(now, conn, result));
    }
    fn on_connected(&mut self, now: Instant, conn: ConnId, role: Role) {
        self.with(|c| c.on_connected(now, conn, role));
    }
    fn on_revive(&mut self, now: Instant, before: CoreState) {
        self.with(|c| c.on_revive(now, before));
    }
    fn on_output(&mut self, now: Instant, output: &Output<P>) {
        self.with(|c| c.on_output(now, output));
        if let Output::Event(e) = output {
            // The transcript's events are the machine's, in its order; the
            // application's stream is checked against them.
            let mut w = lock(&self.world);
            let line = event_line(&w.tl, w.now, e);
            w.lines.push(line);
            if w.subscribed {
                w.unread.push_back(*e);
            }
        }
    }
    fn after_step(&mut self, machine: &Machine<P>) {
        self.with(|c| c.after_step(machine));
        let mut m = self.max_buffered.lock().unwrap_or_else(|p| p.into_inner());
        *m = (*m).max(machine.buffered() as u64);
    }
}

fn at(d: Duration) -> Instant {
    Instant::ZERO + d
}

/// Runs a timeline through the real driver, handing every line to `sink`
/// as it happens, and returns the summary. The same world, seed and
/// timeline as [`crate::run`]; see the module docs for how the two compare.
pub fn run_through_driver(tl: &Timeline, opts: &RunOptions, sink: impl FnMut(&Line)) -> Summary {
    run_recorded(tl, opts, None, sink)
}

/// As [`run_through_driver`], with the driver's core recorded by a
/// [`FlightRecorder`](redial::FlightRecorder) kept in memory (bounded
/// mode with no bound, dumped at the end: the same bytes a stream would
/// hold): returns the summary and the trace (JSON lines).
pub fn record_through_driver(tl: &Timeline, opts: &RunOptions) -> (Summary, String) {
    let rec = redial::FlightRecorder::bounded(usize::MAX, None);
    let summary = run_recorded(tl, opts, Some(&rec), |_| {});
    let mut out = Vec::new();
    rec.dump(&mut out).expect("a Vec takes every write");
    (summary, String::from_utf8_lossy(&out).into_owned())
}

/// As [`run_through_driver`], with the driver's core recorded by `recorder`
/// (any mode: streaming to any writer, or bounded).
pub fn run_through_driver_recorded(
    tl: &Timeline,
    opts: &RunOptions,
    recorder: &redial::FlightRecorder,
) -> Summary {
    run_recorded(tl, opts, Some(recorder), |_| {})
}

fn run_recorded(
    tl: &Timeline,
    opts: &RunOptions,
    recorder: Option<&redial::FlightRecorder>,
    mut sink: impl FnMut(&Line),
) -> Summary {
    let seed = opts.seed.unwrap_or(tl.seed);
    let tl = Arc::new(tl.clone());
    let rt = VirtualRuntime::new();
    let world: Shared = Arc::new(Mutex::new(World {
        tl: tl.clone(),
        now: Instant::ZERO,
        net: Net::new(&tl, seed),
        queue: BTreeMap::new(),
        seq: 0,
        scripted: 0,
        next_conn: 0,
        watchers: BTreeMap::new(),
        ops: BTreeMap::new(),
        calls: BTreeMap::new(),
        next_op: 1,
        lines: Vec::new(),
        summary: Summary::default(),
        subscribed: false,
        unread: std::collections::VecDeque::new(),
        stream_errors: Vec::new(),
    }));
    let checker = opts
        .check
        .then(|| Arc::new(Mutex::new(Watcher::new(&tl.config))));
    let max_buffered = Arc::new(Mutex::new(0));
    let connector = SimConnector {
        world: world.clone(),
        endpoints: tl.config.endpoints(),
    };
    let mut builder = Client::builder(connector)
        .config(tl.config.clone())
        .seed(seed)
        .runtime(Arc::new(rt.clone()))
        .observer(Watch {
            checker: checker.clone(),
            max_buffered: max_buffered.clone(),
            world: world.clone(),
        });
    if let Some(r) = recorder {
        builder = builder.record(r);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            let mut summary = Summary::default();
            summary
                .violations
                .push(format!("the client could not be built: {e}"));
            return summary;
        }
    };
    {
        let mut w = lock(&world);
        for (i, s) in tl.steps.iter().enumerate() {
            w.schedule_at(at(s.at), Delivery::Step(i));
        }
        for (i, wl) in tl.workloads.iter().enumerate() {
            if wl.from < wl.until {
                w.schedule_at(at(wl.from), Delivery::Tick(i, 0));
            }
        }
    }
    let end = at(tl.until.unwrap_or(opts.max_time));
    let app = App {
        tl: tl.clone(),
        world: world.clone(),
        client: client.clone(),
        rt: rt.clone(),
    };
    rt.run_until_stalled();
    let mut now = Instant::ZERO;
    let mut events_done = 0u64;
    loop {
        let (next_ev, scripted) = {
            let mut w = lock(&world);
            for line in w.lines.drain(..) {
                sink(&line);
            }
            (w.queue.first_key_value().map(|(k, _)| k.0), w.scripted)
        };
        if tl.until.is_none() && scripted == 0 && client.outstanding() == 0 {
            break;
        }
        let next_timer = rt.next_timer().map(at);
        let t = match (next_ev, next_timer) {
            (None, None) => break,
            (Some(a), None) | (None, Some(a)) => a,
            (Some(a), Some(b)) => a.min(b),
        };
        if t > end || opts.max_events.is_some_and(|m| events_done >= m) {
            break;
        }
        now = now.max(t);
        events_done += 1;
        let delivery = {
            let mut w = lock(&world);
            w.now = now;
            if next_ev == Some(t) {
                let (_, d) = w.queue.pop_first().expect("peeked above");
                if d.scripted() {
                    w.scripted -= 1;
                }
                Some(d)
            } else {
                None
            }
        };
        rt.advance_to(now.since_origin());
        if let Some(d) = delivery {
            app.deliver(d, now);
        }
        rt.run_until_stalled();
    }
    let mut w = lock(&world);
    for line in w.lines.drain(..) {
        sink(&line);
    }
    let mut summary = std::mem::take(&mut w.summary);
    let mut stream_errors = std::mem::take(&mut w.stream_errors);
    if !w.unread.is_empty() {
        stream_errors.push(format!(
            "events stream: {} events the machine emitted never reached it",
            w.unread.len()
        ));
    }
    drop(w);
    summary.events = events_done;
    summary.pending = client.outstanding() as u64;
    summary.max_buffered = *max_buffered.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = checker {
        let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
        if client.state() == CoreState::Closed {
            c.finish();
        }
        summary.violations = c.violations().map(|v| v.to_string()).collect();
    }
    summary.violations.extend(stream_errors);
    drop(app);
    drop(client);
    // Dropping the tasks (the driver among them) ends the run; nothing
    // outlives it.
    rt.clear();
    summary
}

/// Runs a timeline through the driver and renders it in `format` (summary
/// line last).
pub fn run_through_driver_formatted(
    tl: &Timeline,
    opts: &RunOptions,
    format: Format,
) -> (String, Summary) {
    let mut out = String::new();
    let summary = run_through_driver(tl, opts, |l| write_line(&mut out, format, l));
    summary.write(&mut out, format);
    (out, summary)
}

/// A call held for its caller task, which the application can give up
/// (drop) at an instant of its choosing: the cancel then reaches the driver
/// at that instant, before anything else the driver does.
#[derive(Clone)]
struct Held(Arc<Mutex<HeldState>>);

struct HeldState {
    call: Option<Pin<Box<Call<SimConnector>>>>,
    waker: Option<Waker>,
}

impl Held {
    fn new(call: Call<SimConnector>) -> Held {
        Held(Arc::new(Mutex::new(HeldState {
            call: Some(Box::pin(call)),
            waker: None,
        })))
    }

    /// Drops the call (which cancels the op) and wakes its task.
    fn give_up(&self) {
        let (call, waker) = {
            let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
            (h.call.take(), h.waker.take())
        };
        drop(call);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Future for Held {
    /// `None`: given up.
    type Output = Option<CallResult<SimConnector>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(call) = h.call.as_mut() else {
            return Poll::Ready(None);
        };
        match call.as_mut().poll(cx) {
            Poll::Ready(r) => {
                h.call = None;
                Poll::Ready(Some(r))
            }
            Poll::Pending => {
                h.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The simulated application and the world's scripted side.
struct App {
    tl: Arc<Timeline>,
    world: Shared,
    client: Client<SimConnector>,
    rt: VirtualRuntime,
}

impl App {
    /// The application's first action subscribes to the events stream.
    fn touch(&self) {
        let mut w = lock(&self.world);
        if w.subscribed {
            return;
        }
        w.subscribed = true;
        drop(w);
        let mut events = self.client.events();
        let world = self.world.clone();
        self.rt.spawn(async move {
            while let Some(e) = events.next().await {
                let mut w = lock(&world);
                match w.unread.pop_front() {
                    Some(m) if m == e => {}
                    other => {
                        if w.stream_errors.len() < 10 {
                            w.stream_errors.push(format!(
                                "events stream: got `{e}`, the machine emitted {other:?}"
                            ));
                        }
                    }
                }
            }
        });
    }

    fn deliver(&self, d: Delivery, now: Instant) {
        if matches!(d, Delivery::Tick(..) | Delivery::Then(_))
            || matches!(&d, Delivery::Step(i) if !matches!(self.tl.steps[*i].action, StepAction::Server { .. }))
        {
            self.touch();
        }
        match d {
            Delivery::Step(i) => {
                let step = self.tl.steps[i].clone();
                match step.action {
                    StepAction::Server {
                        action,
                        endpoint,
                        for_,
                    } => {
                        let mut w = lock(&self.world);
                        let stepped = w.net.step(now, endpoint, action, for_);
                        Self::stepped(&mut w, stepped);
                    }
                    StepAction::Submit(s) => self.submit(&s),
                    StepAction::Client(ClientAction::Close) => {
                        lock(&self.world).world_line("client close".into());
                        // The application calls `close()` now: its first
                        // poll sends the close, as awaiting it would.
                        let _ = self.client.close().now_or_never();
                    }
                    StepAction::Client(ClientAction::Revive) => {
                        lock(&self.world).world_line("client revive".into());
                        self.client.revive();
                    }
                }
            }
            Delivery::Tick(i, n) => {
                let wl = &self.tl.workloads[i];
                if let Some(next) = wl.tick_at(n + 1) {
                    lock(&self.world).schedule_at(at(next), Delivery::Tick(i, n + 1));
                }
                self.submit(&wl.submit);
            }
            Delivery::Then(label) => self.submit(&Submit::follow_up(label)),
            Delivery::Undo(u) => {
                let mut w = lock(&self.world);
                if let Some(stepped) = w.net.undo(now, u) {
                    Self::stepped(&mut w, stepped);
                }
            }
            Delivery::Connect { id, ok, tx } => {
                if lock(&self.world).net.connect_arrives(id, ok) {
                    let _ = tx.send(ok);
                }
            }
            Delivery::Answer { id, result, tx } => {
                if lock(&self.world).net.deliverable(id) {
                    let _ = tx.send(result);
                }
            }
            Delivery::Ping { id, tx } => {
                if lock(&self.world).net.deliverable(id) {
                    let _ = tx.send(());
                }
            }
            Delivery::Cancel(seq) => {
                let held = lock(&self.world).calls.remove(&seq);
                if let Some(held) = held {
                    held.give_up();
                }
            }
            Delivery::Lost { id, kind } => {
                let tx = lock(&self.world).watchers.remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(kind);
                }
            }
        }
    }

    /// Carries out a server step (or its undo) in the world.
    fn stepped(w: &mut World, s: Stepped) {
        w.world_line(s.text);
        for (id, at, kind) in s.losses {
            w.schedule_at(at, Delivery::Lost { id, kind });
        }
        if let Some((at, u)) = s.undo {
            w.schedule_at(at, Delivery::Undo(u));
        }
    }

    /// The application submits: each op is a call awaited by its own task
    /// (dropped after `cancel_after`, which cancels it).
    fn submit(&self, s: &Submit) {
        for _ in 0..s.count {
            let seq = {
                let mut w = lock(&self.world);
                let seq = w.next_op;
                w.next_op += 1;
                let submitted = w.now;
                w.ops.insert(
                    seq,
                    OpInfo {
                        label: s.label.clone(),
                        submitted,
                        first_dispatch: None,
                        dispatches: 0,
                        refused: 0,
                        then: s.then.clone(),
                    },
                );
                w.summary.submitted += 1;
                seq
            };
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
            let op = SimOp {
                seq,
                server_error: s.server_error,
            };
            // The call is submitted here, in order; its task only awaits it.
            let held = Held::new(self.client.call_with(op, opts).submitted());
            if let Some(d) = s.cancel_after {
                let mut w = lock(&self.world);
                let due = w.now + d;
                w.calls.insert(seq, held.clone());
                w.schedule_at(due, Delivery::Cancel(seq));
            }
            let world = self.world.clone();
            let tl = self.tl.clone();
            self.rt.spawn(async move {
                let result = held.await;
                let mut w = lock(&world);
                w.calls.remove(&seq);
                let Some(info) = w.ops.remove(&seq) else {
                    return;
                };
                let now = w.now;
                // A success carries no counts to the caller: the world's
                // (its dispatches, less the refusals), which
                // `compare_with_fast_loop` holds against the core's.
                let world_runs = info.dispatches.saturating_sub(info.refused);
                let (outcome, attempts, maybe_executed, runs) = match &result {
                    Some(Ok(ep)) => (
                        Ok(tl.endpoints[*ep].name.clone()),
                        info.dispatches,
                        true,
                        world_runs,
                    ),
                    Some(Err(e)) => (
                        Err((e.kind().name().to_string(), e.message().to_string())),
                        e.attempts(),
                        e.maybe_executed(),
                        e.runs(),
                    ),
                    // The caller sees no outcome: the core's is `cancelled`,
                    // with what the world saw of the op.
                    None => (
                        Err((
                            ErrorKind::Cancelled.name().to_string(),
                            "operation cancelled".to_string(),
                        )),
                        info.dispatches,
                        info.dispatches > info.refused,
                        world_runs,
                    ),
                };
                let line = OpLine {
                    t_us: now.as_micros(),
                    id: seq,
                    label: info.label,
                    submitted_us: info.submitted.as_micros(),
                    first_dispatch_us: info.first_dispatch.map(Instant::as_micros),
                    result: outcome,
                    attempts,
                    maybe_executed,
                    runs,
                };
                w.summary.count(&line);
                w.lines.push(Line::Op(line));
                if let Some(then) = info.then {
                    w.schedule_at(now, Delivery::Then(then));
                }
            });
        }
    }
}

/// How a run through the driver differs from the fast loop's run of the same
/// timeline, seed and options (empty when they agree).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Divergence {
    /// Human-readable differences, first ones first (at most 20 kept).
    pub differences: Vec<String>,
    /// Invariant violations either run reported (`fast: …` / `driver: …`).
    pub violations: Vec<String>,
    /// A run stopped at [`RunOptions::max_events`] before the end: the two
    /// runs are not compared (they may stop at different points), only
    /// their violations are reported.
    pub truncated: bool,
}

impl Divergence {
    /// Both runs agree and neither breached an invariant.
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty() && self.violations.is_empty()
    }
}

/// The parts of a run the two loops must agree on: every op's fate (by
/// number), the event sequence, the world's lines, and the summary.
#[derive(Default)]
struct Record {
    ops: BTreeMap<u64, OpLine>,
    events: Vec<Line>,
    world: Vec<Line>,
}

impl Record {
    fn push(&mut self, l: &Line) {
        match l {
            Line::Op(o) => {
                self.ops.insert(o.id, o.clone());
            }
            Line::Event { .. } => self.events.push(l.clone()),
            Line::World { .. } => self.world.push(l.clone()),
        }
    }
}

fn show(l: &Line) -> String {
    let mut s = String::new();
    write_line(&mut s, Format::Text, l);
    s.trim_end().to_string()
}

/// Replays `tl` through the fast loop and through the real driver and
/// compares them: op fates (outcome, error kind and message, attempts,
/// may-have-run, endpoint, completion and first-dispatch times), the
/// event sequence (with times), the world's lines and the summary counts.
/// Times are compared exactly: the virtual runtime has no timer
/// granularity of its own.
///
/// Memory: both runs' op fates and events are held until compared, so it
/// grows with the run (unlike [`crate::run`], which streams).
pub fn compare_with_fast_loop(tl: &Timeline, opts: &RunOptions) -> Divergence {
    let mut fast = Record::default();
    let fs = crate::run::run(tl, opts, |l| fast.push(l));
    let mut drv = Record::default();
    let ds = run_through_driver(tl, opts, |l| drv.push(l));
    let mut d = Divergence::default();
    d.violations
        .extend(fs.violations.iter().map(|v| format!("fast: {v}")));
    d.violations
        .extend(ds.violations.iter().map(|v| format!("driver: {v}")));
    if opts
        .max_events
        .is_some_and(|m| fs.events >= m || ds.events >= m)
    {
        d.truncated = true;
        return d;
    }
    let mut differ = |what: String| {
        if d.differences.len() < 20 {
            d.differences.push(what);
        }
    };
    let ids: std::collections::BTreeSet<u64> =
        fast.ops.keys().chain(drv.ops.keys()).copied().collect();
    for id in ids {
        match (fast.ops.get(&id), drv.ops.get(&id)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => differ(format!(
                "op #{id}: fast loop {:?}, driver {:?}",
                a.map(|o| format!(
                    "{}, first dispatch {:?} µs",
                    show(&Line::Op(o.clone())),
                    o.first_dispatch_us
                )),
                b.map(|o| format!(
                    "{}, first dispatch {:?} µs",
                    show(&Line::Op(o.clone())),
                    o.first_dispatch_us
                ))
            )),
        }
    }
    for (kind, a, b) in [
        ("event", &fast.events, &drv.events),
        ("world line", &fast.world, &drv.world),
    ] {
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            differ(format!(
                "{kind} {i}: fast loop {:?}, driver {:?}",
                a.get(i).map(show),
                b.get(i).map(show)
            ));
        }
    }
    let counts = |s: &Summary| {
        (
            s.submitted,
            s.ok,
            s.failed,
            s.pending,
            s.errors.clone(),
            s.max_buffered,
            s.connect_attempts,
        )
    };
    if counts(&fs) != counts(&ds) {
        differ(format!(
            "summary: fast loop {:?}, driver {:?}",
            counts(&fs),
            counts(&ds)
        ));
    }
    d
}
