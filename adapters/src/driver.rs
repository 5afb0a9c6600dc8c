//! The one generic driver task: it feeds the core and carries out its
//! outputs. It decides nothing.
//!
//! Everything the driver starts for a connection (the connect attempt, the
//! peer-closed watch, each op's `run`, each heartbeat) is a future in that
//! connection's slot, polled by the driver task itself: no task is spawned
//! per op. An op's `run` is dropped as soon as the core gives the op its
//! outcome (cancelled, past its deadline, closed), and a slot with all its
//! work and its connection is dropped when, and only when, the core emits
//! `Close` for it.
//!
//! The rule that keeps decisions out of this file: every `match` or `if`
//! here is about *carrying out* an output or *reporting* a fact (an answer,
//! an error's reading by the connector, a panic, a closed socket); none
//! chooses an op's or a connection's fate. What a fact means is the core's.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::channel::{mpsc, oneshot};
use futures::future::{AbortHandle, Abortable};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use crate::client::{CallResult, Error};
use crate::connector::{Connector, Failure};
use crate::core::{
    Completion, ConnId, ConnectFailure, ErrorKind, Event, Instant, LossKind, Machine, OpId,
    OpOptions, OpResult, Output, Role, State,
};
use crate::observer::Observer;
use crate::runtime::{AsyncTimer, Runtime};

pub(crate) type Reply<C> = CallResult<C>;

/// Events kept for a subscriber that does not read, before newer ones are
/// dropped (and counted in [`Events::missed`](crate::Events::missed)).
pub(crate) const EVENT_QUEUE: usize = 1024;

/// Commands taken in a row before the driver looks at answers and timers.
const COMMAND_BURST: usize = 32;

/// From the client handles.
pub(crate) enum Command<C: Connector> {
    Submit {
        key: u64,
        op: Arc<C::Op>,
        options: OpOptions,
        reply: oneshot::Sender<Reply<C>>,
    },
    Cancel {
        key: u64,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
    Revive,
    Subscribe {
        tx: mpsc::Sender<Event>,
        missed: Arc<AtomicU64>,
    },
}

/// What went wrong in a connector call: its error, a panic, or both (an
/// error whose reading panicked).
struct Fault<E> {
    error: Option<E>,
    panic: Option<String>,
}

impl<E> Fault<E> {
    fn panicked(p: String) -> Self {
        Fault {
            error: None,
            panic: Some(p),
        }
    }
}

type Outcome<T, E> = Result<T, Fault<E>>;

/// What an op's `run` gave: the output, or the fault.
type RunOutcome<C> = Outcome<<C as Connector>::Output, <C as Connector>::Error>;

/// What a slot's future reports when it finishes.
enum Report<C: Connector> {
    Connected(ConnId, Outcome<C::Conn, C::Error>, Role),
    OpDone(OpId, ConnId, RunOutcome<C>),
    Heartbeat(ConnId, Outcome<(), C::Error>),
    PeerClosed(ConnId, Outcome<LossKind, C::Error>),
    /// An op's `run`, dropped because the op has its outcome.
    Dropped,
}

type Work<C> = Pin<Box<dyn Future<Output = Report<C>> + Send>>;

/// A connect attempt or a connection, with the work under way on it.
struct Slot<C: Connector> {
    conn: Option<Arc<C::Conn>>,
    work: FuturesUnordered<Work<C>>,
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into())
}

/// Runs a connector future (`what`: which method), turning an error or a
/// panic into a [`Fault`].
async fn guarded<T, E>(what: &str, fut: impl Future<Output = Result<T, E>>) -> Outcome<T, E> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Fault {
            error: Some(e),
            panic: None,
        }),
        Err(p) => Err(Fault::panicked(format!(
            "in {what}: {}",
            panic_message(&*p)
        ))),
    }
}

/// Calls connector code that must not take the driver down: a panic comes
/// back as its message.
fn shielded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// A subscriber to the core's events.
struct Subscriber {
    tx: mpsc::Sender<Event>,
    missed: Arc<AtomicU64>,
}

pub(crate) struct Driver<C: Connector> {
    machine: Machine<Arc<C::Op>>,
    runtime: Arc<dyn Runtime>,
    connector: Arc<C>,
    origin: std::time::Instant,
    commands: mpsc::UnboundedReceiver<Command<C>>,
    timer: Pin<Box<dyn AsyncTimer>>,
    /// The instant the timer is armed for: re-arming is skipped when the
    /// core's deadline has not moved.
    armed: Option<std::time::Instant>,
    slots: BTreeMap<ConnId, Slot<C>>,
    pending: BTreeMap<OpId, (u64, oneshot::Sender<Reply<C>>)>,
    keys: BTreeMap<u64, OpId>,
    /// The `run` of each op in flight, to drop it once the op has its outcome.
    runs: BTreeMap<OpId, AbortHandle>,
    subscribers: Vec<Subscriber>,
    state: Arc<Mutex<(State, usize)>>,
    /// The result of the op just reported, so its completion can carry the
    /// output or the connector's error.
    last: Option<(OpId, RunOutcome<C>)>,
    /// What the last connect failure said (the connector's error or panic),
    /// for the message of ops the core fails because of it.
    last_connect: Option<String>,
    /// A panic behind the input being handled (a connection lost to a
    /// panicking connector), for the ops the core fails in this step.
    step_panic: Option<String>,
    /// Subscribers when dropped streams were last swept out.
    swept_at: usize,
    observer: Option<Box<dyn Observer<Arc<C::Op>>>>,
    /// Whether the outputs the core queued at birth (its first `Connect`)
    /// have been carried out.
    started: bool,
    /// A report already taken from a slot, to be handled next.
    ready: Option<Report<C>>,
}

impl<C: Connector> Driver<C> {
    pub(crate) fn new(
        machine: Machine<Arc<C::Op>>,
        runtime: Arc<dyn Runtime>,
        connector: Arc<C>,
        origin: std::time::Instant,
        commands: mpsc::UnboundedReceiver<Command<C>>,
        state: Arc<Mutex<(State, usize)>>,
        observer: Option<Box<dyn Observer<Arc<C::Op>>>>,
    ) -> Self {
        let timer = runtime.new_timer(origin);
        Driver {
            machine,
            runtime,
            connector,
            origin,
            commands,
            timer,
            armed: None,
            slots: BTreeMap::new(),
            pending: BTreeMap::new(),
            keys: BTreeMap::new(),
            runs: BTreeMap::new(),
            subscribers: Vec::new(),
            state,
            last: None,
            last_connect: None,
            step_panic: None,
            swept_at: 0,
            observer,
            started: false,
            ready: None,
        }
    }

    /// The clock, as the core's `Instant` (microseconds since `origin`).
    fn now(&self) -> Instant {
        let d = self.runtime.now().saturating_duration_since(self.origin);
        Instant::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Adds `fut` to `conn`'s slot (dropped at once when the slot is gone).
    fn start(&mut self, conn: ConnId, fut: impl Future<Output = Report<C>> + Send + 'static) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.work.push(Box::pin(fut));
        }
    }

    /// The next report from any slot's work, if one is ready.
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Option<Report<C>> {
        self.slots
            .values_mut()
            .find_map(|slot| match slot.work.poll_next_unpin(cx) {
                Poll::Ready(Some(report)) => Some(report),
                _ => None,
            })
    }

    /// The connector's reading of an op's or a ping's error. A panic in
    /// `classify`, or in the call itself, reads as a lost connection; its
    /// message is kept in the fault (and for this step's other outcomes).
    fn reading(&mut self, fault: &mut Fault<C::Error>) -> OpResult {
        let failure = match (&fault.error, &fault.panic) {
            (Some(e), None) => {
                let connector = &self.connector;
                match shielded(|| connector.classify(e)) {
                    Ok(f) => f,
                    Err(p) => {
                        fault.panic = Some(format!("in classify: {p}"));
                        Failure::ConnectionLost
                    }
                }
            }
            _ => Failure::ConnectionLost,
        };
        if let Some(p) = &fault.panic {
            self.step_panic = Some(p.clone());
        }
        match failure {
            Failure::ConnectionLost => OpResult::ConnectionLost,
            Failure::WrongServer => OpResult::WrongServer,
            Failure::ServerError => OpResult::ServerError,
            Failure::Pushback { retry_after } => OpResult::Pushback { retry_after },
        }
    }

    fn on_command(&mut self, cmd: Command<C>) {
        let now = self.now();
        match cmd {
            Command::Submit {
                key,
                op,
                options,
                reply,
            } => {
                let before = self.machine.state();
                let id = self.machine.submit(now, op, options);
                if let Some(o) = self.observer.as_mut() {
                    o.on_submit(self.machine.now(), id, &options, before);
                }
                self.pending.insert(id, (key, reply));
                self.keys.insert(key, id);
            }
            Command::Cancel { key } => {
                if let Some(id) = self.keys.remove(&key) {
                    self.machine.cancel(now, id);
                }
            }
            Command::Close { reply } => {
                self.machine.close(now);
                self.drain();
                let _ = reply.send(());
            }
            Command::Revive => {
                if let Some(o) = self.observer.as_mut() {
                    o.on_revive(now, self.machine.state());
                }
                self.machine.revive(now);
            }
            Command::Subscribe { tx, missed } => {
                // Streams dropped while no event came are swept out here,
                // whenever the list has doubled since the last sweep, so
                // subscribing and dropping costs amortised O(1) and bounded
                // memory.
                if self.subscribers.len() >= 2 * self.swept_at.max(8) {
                    self.subscribers.retain(|s| !s.tx.is_closed());
                    self.swept_at = self.subscribers.len();
                }
                self.subscribers.push(Subscriber { tx, missed });
            }
        }
        self.drain();
    }

    fn on_report(&mut self, report: Report<C>) {
        let now = self.now();
        match report {
            Report::Connected(id, result, role) => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    return; // the core closed this attempt already: drop it
                };
                match result {
                    Ok(conn) => {
                        let conn = Arc::new(conn);
                        slot.conn = Some(conn.clone());
                        let connector = self.connector.clone();
                        self.start(id, async move {
                            let kind = guarded("closed", async {
                                Ok::<_, C::Error>(connector.closed(&conn).await)
                            })
                            .await;
                            Report::PeerClosed(id, kind)
                        });
                        if let Some(o) = self.observer.as_mut() {
                            o.on_connected(now, id, role);
                        }
                        self.machine.handle_connected_as(now, id, role);
                    }
                    Err(fault) => {
                        let connector = &self.connector;
                        let (why, words) = match (&fault.error, fault.panic) {
                            (Some(e), None) => {
                                let words = shielded(|| e.to_string()).unwrap_or_else(|p| {
                                    format!("the connector's error panicked in Display: {p}")
                                });
                                match shielded(|| connector.classify_connect(e)) {
                                    Ok(why) => (why, words),
                                    Err(p) => (
                                        ConnectFailure::Panicked,
                                        format!(
                                            "the connector panicked in classify_connect: {p} \
                                             (reading: {words})"
                                        ),
                                    ),
                                }
                            }
                            (_, p) => (
                                ConnectFailure::Panicked,
                                format!("the connector panicked {}", p.unwrap_or_default()),
                            ),
                        };
                        self.last_connect = Some(words);
                        self.machine.handle_connect_failed(now, id, why);
                    }
                }
            }
            Report::OpDone(op, conn, mut result) => {
                self.runs.remove(&op);
                let observed = match &mut result {
                    Ok(_) => OpResult::Ok,
                    Err(fault) => self.reading(fault),
                };
                self.last = Some((op, result));
                if let Some(o) = self.observer.as_mut() {
                    o.on_op_result(now, op, conn, &observed);
                }
                self.machine.handle_op_result(now, op, conn, observed);
            }
            Report::Heartbeat(conn, mut result) => {
                let observed = match &mut result {
                    Ok(()) => OpResult::Ok,
                    Err(fault) => self.reading(fault),
                };
                if let Some(o) = self.observer.as_mut() {
                    o.on_heartbeat(now, conn, &observed);
                }
                self.machine.handle_heartbeat(now, conn, observed);
            }
            Report::PeerClosed(conn, kind) => {
                let kind = match kind {
                    Ok(kind) => kind,
                    Err(fault) => {
                        self.step_panic = fault.panic;
                        LossKind::Reset
                    }
                };
                self.machine.handle_connection_lost(now, conn, kind);
            }
            Report::Dropped => return,
        }
        self.drain();
        self.last = None;
        self.step_panic = None;
    }

    /// Carries out every output until the core has nothing more to say.
    fn drain(&mut self) {
        // Publish the state first: callers woken below must see it.
        self.publish();
        while let Some(out) = self.machine.poll_output() {
            if let Some(o) = self.observer.as_mut() {
                o.on_output(self.machine.now(), &out);
            }
            match out {
                Output::Connect { conn, endpoint, .. } => {
                    // The core times the attempt (its connect timeout) and
                    // answers a late success with `Close`. What the last
                    // attempt said is forgotten: this one will say its own.
                    self.last_connect = None;
                    self.slots.insert(
                        conn,
                        Slot {
                            conn: None,
                            work: FuturesUnordered::new(),
                        },
                    );
                    let connector = self.connector.clone();
                    self.start(conn, async move {
                        let result =
                            guarded("connect", async { connector.connect(endpoint).await }).await;
                        let role = match &result {
                            Ok(c) => guarded("role", async {
                                Ok::<_, C::Error>(connector.role(c).await)
                            })
                            .await
                            .unwrap_or(Role::Unknown),
                            Err(_) => Role::Unknown,
                        };
                        Report::Connected(conn, result, role)
                    });
                }
                Output::Close { conn } => {
                    // Dropping the slot cancels its work and drops the connection.
                    self.slots.remove(&conn);
                }
                Output::Dispatch { op, conn, .. } => {
                    let payload = self.machine.payload(op).cloned();
                    let c = self.slots.get(&conn).and_then(|s| s.conn.clone());
                    if let (Some(payload), Some(c)) = (payload, c) {
                        let connector = self.connector.clone();
                        let (handle, registration) = AbortHandle::new_pair();
                        if let Some(old) = self.runs.insert(op, handle) {
                            old.abort();
                        }
                        let run = Abortable::new(
                            async move {
                                let r = guarded("run", async { connector.run(&c, &payload).await })
                                    .await;
                                Report::OpDone(op, conn, r)
                            },
                            registration,
                        );
                        self.start(conn, run.map(|r| r.unwrap_or(Report::Dropped)));
                    }
                }
                Output::Heartbeat { conn } => {
                    if let Some(c) = self.slots.get(&conn).and_then(|s| s.conn.clone()) {
                        let connector = self.connector.clone();
                        self.start(conn, async move {
                            let r = guarded("ping", async { connector.ping(&c).await }).await;
                            Report::Heartbeat(conn, r)
                        });
                    }
                }
                Output::Complete(done) => self.complete(done),
                Output::Event(e) => self.subscribers.retain_mut(|s| match s.tx.try_send(e) {
                    Ok(()) => true,
                    Err(err) if err.is_full() => {
                        s.missed.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(_) => false, // the stream was dropped
                }),
            }
        }
        if let Some(o) = self.observer.as_mut() {
            o.after_step(&self.machine);
        }
        self.publish();
    }

    fn publish(&self) {
        *self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            (self.machine.state(), self.machine.outstanding());
    }

    fn complete(&mut self, done: Completion<Arc<C::Op>>) {
        // No work of an op survives its outcome.
        if let Some(run) = self.runs.remove(&done.id) {
            run.abort();
        }
        let Some((key, reply)) = self.pending.remove(&done.id) else {
            return;
        };
        self.keys.remove(&key);
        let last = match self.last.take() {
            Some((op, r)) if op == done.id => Some(r),
            other => {
                self.last = other;
                None
            }
        };
        let result = match (done.result, last) {
            (Ok(_), Some(Ok(output))) => Ok(output),
            (Ok(d), _) => Err(Error::new(
                ErrorKind::ServerError,
                true,
                d.attempts,
                "redial: success reported without an output (adapter bug)".into(),
                None,
            )),
            (Err(e), last) => {
                let panicked = |p: &str| format!("the connector panicked {p}");
                let (server, detail) = match last {
                    Some(Err(Fault { error, panic })) => (error, panic.as_deref().map(panicked)),
                    _ if self.step_panic.is_some()
                        && matches!(
                            e.kind(),
                            ErrorKind::ConnectionLost | ErrorKind::RetryBudgetExhausted
                        ) =>
                    {
                        (None, self.step_panic.as_deref().map(panicked))
                    }
                    _ => (
                        None,
                        match (e.connect_error(), &self.last_connect) {
                            (Some(_), Some(why)) => Some(format!("last connect error: {why}")),
                            (Some(ConnectFailure::TimedOut), None) => {
                                Some("the last connect attempt timed out".into())
                            }
                            _ => None,
                        },
                    ),
                };
                Err(Error::new(
                    e.kind(),
                    e.maybe_executed(),
                    e.attempts(),
                    e.to_string(),
                    server,
                )
                .with_detail(detail))
            }
        };
        let _ = reply.send(result);
    }

    fn shut_down(&mut self) {
        let now = self.now();
        self.machine.close(now);
        self.drain();
        self.slots.clear();
        self.runs.clear();
    }
}

// The driver is never pinned structurally: its timer is boxed.
impl<C: Connector> Unpin for Driver<C> {}

impl<C: Connector> Future for Driver<C> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if !this.started {
            // The core queues its first `Connect` when it is built: carry it
            // out now, not when the first input arrives (an idle client
            // would otherwise see its connect timer fire first and fail an
            // attempt that never ran).
            this.started = true;
            this.drain();
        }
        for _ in 0..256 {
            // Fairness: a few commands, one report, then the timers, so a
            // flood of calls never starves answers or deadlines.
            let mut progressed = false;
            for _ in 0..COMMAND_BURST {
                match this.commands.poll_next_unpin(cx) {
                    Poll::Ready(Some(cmd)) => {
                        this.on_command(cmd);
                        progressed = true;
                    }
                    Poll::Ready(None) => {
                        // Every handle and call is gone.
                        this.shut_down();
                        return Poll::Ready(());
                    }
                    Poll::Pending => break,
                }
            }
            if let Some(report) = this.ready.take().or_else(|| this.poll_work(cx)) {
                this.on_report(report);
                progressed = true;
            }
            if progressed && this.ready.is_none() {
                // Work just started gets its first poll before a timer can
                // end it (a dispatched op goes on the wire, as the core was
                // told); a report this turns up waits for the next turn.
                this.ready = this.poll_work(cx);
            }
            let Some((deadline, _why)) = this.machine.poll_timeout() else {
                if progressed {
                    continue;
                }
                return Poll::Pending;
            };
            // Expired is decided by the clock, not by the timer having fired.
            let now = this.now();
            if deadline <= now {
                if let Some(o) = this.observer.as_mut() {
                    o.on_timeout(now);
                }
                this.machine.handle_timeout(now);
                this.drain();
                continue;
            }
            if progressed {
                continue;
            }
            let Some(at) = this.origin.checked_add(deadline.since_origin()) else {
                return Poll::Pending; // "never"
            };
            if this.armed != Some(at) {
                this.timer.as_mut().reset(at);
                this.armed = Some(at);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Fired (perhaps early): re-arm on the next turn, never spin on
            // a timer that stays ready.
            this.armed = None;
        }
        // Yield to the runtime after a long burst of work.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
