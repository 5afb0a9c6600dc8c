//! The client's shared state and the one generic driver task: together
//! they feed the core and carry out its outputs. They decide nothing.
//!
//! The [`Machine`] lives in [`Shared`], behind a `std` mutex held only for
//! short critical sections: never across an `.await`, never across a call
//! into the connector (its methods, its errors' `Display`, the drop of a
//! connection). Whoever has an input for the core takes the lock, stamps
//! the input with the clock read *inside* the lock (so the machine's time
//! never runs backwards, whichever thread feeds it), feeds it, and drains
//! every output right there ([`Core::drain`]):
//!
//! - a caller ([`Call`](crate::Call)) submits its op, reports its op's
//!   answer, cancels (drops the call), closes, revives or subscribes;
//! - the driver task reports what the work it runs for each connection
//!   said (a connect attempt, the peer-closed watch, a heartbeat) and the
//!   timer steps.
//!
//! The outputs are carried out by whoever can:
//!
//! - `Dispatch`: recorded as the op's run instruction (its connection and
//!   an execution number) and the op's caller is woken; the caller's
//!   [`Call`](crate::Call) polls the op's `run` in the caller's own task.
//!   A run whose instruction changed (the op got its outcome, was
//!   dispatched anew, or its connection was closed) is dropped the next
//!   time its caller is polled, which the change wakes it for;
//! - `Complete`: the outcome (with the connector's error of the last
//!   attempt, or what the last connect attempt said) is stored for the op's
//!   caller, who takes it when polled; the caller whose own report finished
//!   the op takes it at once;
//! - `Event`: sent to every subscriber's stream at once;
//! - `Connect`, `Close`, `Heartbeat`: queued for the driver task, which is
//!   woken for them. It is woken too when the core's next deadline is
//!   earlier than the instant its timer is armed for — and for nothing
//!   else: an op that goes out and comes back wakes no one but its caller.
//!
//! Everything the driver starts for a connection (the connect attempt, the
//! peer-closed watch, each heartbeat) is a future in that connection's
//! slot, polled by the driver task itself. A slot with all its work and its
//! connection is dropped when, and only when, the core emits `Close` for
//! it (the runs of callers on that connection drop their handle on it as
//! they see their instruction withdrawn).
//!
//! The timer is armed lazily: re-armed only when the core's next deadline
//! is earlier than the armed instant (or nothing is armed); when it fires
//! before the core's deadline, it is re-armed for the current one. Per-op
//! deadlines and a heartbeat that traffic pushes back cost no timer reset
//! per op.
//!
//! The rule that keeps decisions out of this file: every `match` or `if`
//! here is about *carrying out* an output or *reporting* a fact (an answer,
//! an error's reading by the connector, a panic, a closed socket); none
//! chooses an op's or a connection's fate. What a fact means is the core's.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::channel::mpsc;
use futures::stream::FuturesUnordered;
use futures::task::AtomicWaker;
use futures::{FutureExt, StreamExt};

use crate::client::{CallResult, Error};
use crate::connector::{Connector, Failure};
use crate::core::{
    Completion, ConnId, ConnectFailure, ErrorKind, Event, Instant, LossKind, Machine, OpId,
    OpResult, Output, Role,
};
use crate::observer::Observer;
use crate::runtime::{AsyncTimer, Runtime};

/// Events kept for a subscriber that does not read, before newer ones are
/// dropped (and counted in [`Events::missed`](crate::Events::missed)).
pub(crate) const EVENT_QUEUE: usize = 1024;

/// What went wrong in a connector call: its error, a panic, or both (an
/// error whose reading panicked).
pub(crate) struct Fault<E> {
    error: Option<E>,
    pub(crate) panic: Option<String>,
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
pub(crate) type RunOutcome<C> = Outcome<<C as Connector>::Output, <C as Connector>::Error>;

/// An op's `run`, owned by its caller's [`Call`](crate::Call).
pub(crate) type RunFuture<C> = Pin<Box<dyn Future<Output = RunOutcome<C>> + Send>>;

/// What a slot's future reports when it finishes.
enum Report<C: Connector> {
    Connected(ConnId, Outcome<C::Conn, C::Error>, Role),
    Heartbeat(ConnId, Outcome<(), C::Error>),
    PeerClosed(ConnId, Outcome<LossKind, C::Error>),
}

type Work<C> = Pin<Box<dyn Future<Output = Report<C>> + Send>>;

/// A connect attempt or a connection, with the driver's work under way on
/// it.
struct Slot<C: Connector> {
    conn: Option<Arc<C::Conn>>,
    work: FuturesUnordered<Work<C>>,
}

/// An output the driver task carries out.
enum Job<C: Connector> {
    Connect {
        conn: ConnId,
        endpoint: usize,
    },
    /// With the core's handle on the connection, dropped by the driver
    /// (outside the lock: a connection's drop is connector code).
    Close {
        conn: ConnId,
        _handle: Option<Arc<C::Conn>>,
    },
    Heartbeat {
        conn: ConnId,
    },
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

/// Calls connector code that must not take the client down: a panic comes
/// back as its message.
fn shielded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// The future of an op's run on `conn` (the connector's `run_within`,
/// given the time the core leaves it), its panics caught.
pub(crate) fn run_future<C: Connector>(
    connector: Arc<C>,
    conn: Arc<C::Conn>,
    op: Arc<C::Op>,
    time_left: Option<std::time::Duration>,
) -> RunFuture<C> {
    Box::pin(async move {
        guarded("run", async {
            connector.run_within(&conn, &op, time_left).await
        })
        .await
    })
}

/// The connector's reading of an op's or a ping's error (called outside
/// the lock). A panic in `classify`, or in the call itself, reads as a lost
/// connection; its message is kept in the fault.
pub(crate) fn reading<C: Connector>(connector: &C, fault: &mut Fault<C::Error>) -> OpResult {
    let failure = match (&fault.error, &fault.panic) {
        (Some(e), None) => match shielded(|| connector.classify(e)) {
            Ok(f) => f,
            Err(p) => {
                fault.panic = Some(format!("in classify: {p}"));
                Failure::ConnectionLost
            }
        },
        _ => Failure::ConnectionLost,
    };
    match failure {
        Failure::ConnectionLost => OpResult::ConnectionLost,
        Failure::WrongServer => OpResult::WrongServer,
        Failure::ServerError => OpResult::ServerError,
        Failure::Pushback { retry_after } => OpResult::Pushback { retry_after },
    }
}

/// A subscriber to the core's events.
struct Subscriber {
    tx: mpsc::Sender<Event>,
    missed: Arc<AtomicU64>,
}

/// The part of an op's state its caller reads without the lock: a number
/// that changes whenever the op's instruction does, and the caller's
/// waker.
#[derive(Default)]
pub(crate) struct OpCell {
    pub(crate) generation: AtomicU64,
    pub(crate) waker: AtomicWaker,
}

/// What an op's caller is to do.
pub(crate) enum Instr<C: Connector> {
    /// Nothing yet (buffered, or its connection was closed).
    Wait,
    /// Run the op on `conn` (execution `exec`: each dispatch has its own).
    Run {
        conn: ConnId,
        exec: u64,
        handle: Arc<C::Conn>,
        /// What the core leaves the op on the server (deadline, command
        /// timeout), passed to the connector.
        time_left: Option<std::time::Duration>,
    },
    /// The op's outcome, for the caller to take.
    Done(CallResult<C>),
}

/// An op whose caller still waits.
pub(crate) struct Entry<C: Connector> {
    pub(crate) cell: Arc<OpCell>,
    pub(crate) instr: Instr<C>,
}

/// What a drain asks of whoever ran it, once the lock is released.
#[must_use]
pub(crate) struct Wakes {
    /// Callers to wake, in the order the core spoke to them.
    callers: Vec<Waker>,
    /// The driver has work (a job, an earlier deadline).
    driver: bool,
    /// The caller that drained got its own outcome after other callers
    /// were woken: it lets them go first (as a driver that wakes every
    /// caller in the core's order would), by waking itself.
    pub(crate) own_after_others: bool,
}

impl Wakes {
    /// Wakes the callers, then the driver (when it has work).
    pub(crate) fn wake<C: Connector>(self, shared: &Shared<C>) -> bool {
        for w in self.callers {
            w.wake();
        }
        if self.driver {
            shared.driver.wake();
        }
        self.own_after_others
    }

    /// Wakes the callers only (the driver's own drains: it goes on anyway).
    fn wake_callers(self) {
        for w in self.callers {
            w.wake();
        }
    }
}

/// Everything behind the lock: the machine and what is kept per op and per
/// connection to carry out its outputs.
pub(crate) struct Core<C: Connector> {
    pub(crate) machine: Machine<Arc<C::Op>>,
    /// Ops whose caller waits, by id.
    pub(crate) ops: BTreeMap<OpId, Entry<C>>,
    /// Open connections, for the runs of callers.
    conns: BTreeMap<ConnId, Arc<C::Conn>>,
    /// Outputs for the driver task.
    jobs: VecDeque<Job<C>>,
    subscribers: Vec<Subscriber>,
    /// Subscribers when dropped streams were last swept out.
    swept_at: usize,
    /// The result of the op just reported, so its completion can carry the
    /// output or the connector's error.
    pub(crate) last: Option<(OpId, RunOutcome<C>)>,
    /// What the last connect failure said (the connector's error or panic),
    /// for the message of ops the core fails because of it.
    last_connect: Option<String>,
    /// A panic behind the input being handled (a connection lost to a
    /// panicking connector), for the ops the core fails in this step.
    pub(crate) step_panic: Option<String>,
    observer: Option<Box<dyn Observer<Arc<C::Op>>>>,
    /// The instant the driver's timer is armed for, if it is.
    armed: Option<Instant>,
    /// Execution numbers of dispatches.
    next_exec: u64,
    /// Dispatches so far (the driver lets their callers start their runs
    /// before a timer step, as it did when it polled every run itself).
    dispatches: u64,
    /// The driver task is gone (its runtime dropped it).
    pub(crate) gone: bool,
    /// The client's `redial.client` span: every event is logged in it.
    #[cfg(feature = "tracing")]
    pub(crate) span: tracing::Span,
    /// The role the connector found for the connection last reported (for
    /// the `connected` event's log).
    #[cfg(feature = "tracing")]
    role: Role,
}

/// One client's state, shared by its handles, its calls and its driver.
pub(crate) struct Shared<C: Connector> {
    core: Mutex<Core<C>>,
    /// The driver task's waker.
    driver: AtomicWaker,
    /// Every client handle and call is gone: the driver closes and stops.
    pub(crate) orphaned: AtomicBool,
    pub(crate) connector: Arc<C>,
    runtime: Arc<dyn Runtime>,
    origin: std::time::Instant,
}

/// The error of calls whose driver task is gone (its runtime shut down).
pub(crate) fn gone_error<E>() -> Error<E> {
    Error::new(
        ErrorKind::Closed,
        true,
        0,
        "client closed: the driver task is gone".into(),
        None,
    )
}

impl<C: Connector> Shared<C> {
    pub(crate) fn new(
        machine: Machine<Arc<C::Op>>,
        runtime: Arc<dyn Runtime>,
        connector: Arc<C>,
        origin: std::time::Instant,
        observer: Option<Box<dyn Observer<Arc<C::Op>>>>,
    ) -> Self {
        Shared {
            core: Mutex::new(Core {
                machine,
                ops: BTreeMap::new(),
                conns: BTreeMap::new(),
                jobs: VecDeque::new(),
                subscribers: Vec::new(),
                swept_at: 0,
                last: None,
                last_connect: None,
                step_panic: None,
                observer,
                armed: None,
                next_exec: 0,
                dispatches: 0,
                gone: false,
                #[cfg(feature = "tracing")]
                span: crate::tracing_log::client_span(),
                #[cfg(feature = "tracing")]
                role: Role::Unknown,
            }),
            driver: AtomicWaker::new(),
            orphaned: AtomicBool::new(false),
            connector,
            runtime,
            origin,
        }
    }

    /// Takes the lock (a poisoned lock is taken as it is: every critical
    /// section leaves the state whole between outputs).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core<C>> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The clock, as the core's `Instant` (microseconds since `origin`).
    /// Read with the lock held, so the inputs of every thread are stamped
    /// in the order they reach the machine.
    pub(crate) fn now(&self, _held: &MutexGuard<'_, Core<C>>) -> Instant {
        let d = self.runtime.now().saturating_duration_since(self.origin);
        Instant::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Wakes the driver task.
    pub(crate) fn wake_driver(&self) {
        self.driver.wake();
    }

    /// Adds an event subscriber.
    pub(crate) fn subscribe(&self, tx: mpsc::Sender<Event>, missed: Arc<AtomicU64>) {
        let mut core = self.lock();
        if core.gone || core.machine.state() == crate::core::State::Closed {
            return; // the stream ends at once
        }
        // Streams dropped while no event came are swept out here, whenever
        // the list has doubled since the last sweep, so subscribing and
        // dropping costs amortised O(1) and bounded memory.
        if core.subscribers.len() >= 2 * core.swept_at.max(8) {
            core.subscribers.retain(|s| !s.tx.is_closed());
            core.swept_at = core.subscribers.len();
        }
        core.subscribers.push(Subscriber { tx, missed });
    }

    /// The core's outputs at birth (its first `Connect`), carried out when
    /// the client is built: an idle client connects too.
    pub(crate) fn start(&self) {
        let wakes = self.lock().drain(None);
        wakes.wake(self);
    }

    /// `close`: every op gets its outcome now.
    pub(crate) fn close(&self) {
        let wakes = {
            let mut core = self.lock();
            if core.gone {
                return;
            }
            let now = self.now(&core);
            core.observe(|o| o.on_close(now));
            core.machine.close(now);
            let wakes = core.drain(None);
            // Nothing happens after a close: the event streams end once
            // they have delivered the close's own events.
            core.subscribers.clear();
            wakes
        };
        wakes.wake(self);
    }

    /// `revive`.
    pub(crate) fn revive(&self) {
        let wakes = {
            let mut core = self.lock();
            if core.gone {
                return;
            }
            let now = self.now(&core);
            let before = core.machine.state();
            if let Some(o) = core.observer.as_mut() {
                o.on_revive(now, before);
            }
            core.machine.revive(now);
            core.drain(None)
        };
        wakes.wake(self);
    }
}

impl<C: Connector> Core<C> {
    /// Carries out every output until the core has nothing more to say.
    /// `me`: the op of the caller draining, if any (it is not woken: it
    /// looks at its op's instruction itself).
    pub(crate) fn drain(&mut self, me: Option<OpId>) -> Wakes {
        let mut wakes = Wakes {
            callers: Vec::new(),
            driver: false,
            own_after_others: false,
        };
        // Callers whose run lost its connection, woken after those the
        // core spoke to (so those keep the core's order).
        let mut withdrawn: Vec<OpId> = Vec::new();
        let mut woken: Vec<OpId> = Vec::new();
        #[cfg(feature = "tracing")]
        let span = self.span.clone();
        #[cfg(feature = "tracing")]
        let _entered = span.enter();
        while let Some(out) = self.machine.poll_output() {
            if let Some(o) = self.observer.as_mut() {
                o.on_output(self.machine.now(), &out);
            }
            #[cfg(feature = "tracing")]
            crate::tracing_log::output(
                &self.machine,
                &out,
                matches!(out, Output::Close { conn } if self.conns.contains_key(&conn)),
                self.last_connect.as_deref(),
                self.role,
            );
            match out {
                Output::Connect { conn, endpoint, .. } => {
                    // The core times the attempt (its connect timeout) and
                    // answers a late success with `Close`. What the last
                    // attempt said is forgotten: this one will say its own.
                    self.last_connect = None;
                    self.jobs.push_back(Job::Connect { conn, endpoint });
                }
                Output::Close { conn } => {
                    let handle = self.conns.remove(&conn);
                    self.jobs.push_back(Job::Close {
                        conn,
                        _handle: handle,
                    });
                    for (id, e) in &mut self.ops {
                        if matches!(e.instr, Instr::Run { conn: c, .. } if c == conn) {
                            e.instr = Instr::Wait;
                            e.cell.generation.fetch_add(1, Ordering::Release);
                            withdrawn.push(*id);
                            // Still the core's once the step is done: back
                            // in the buffer.
                            #[cfg(feature = "tracing")]
                            if crate::tracing_log::op_enabled()
                                && self.machine.payload(*id).is_some()
                            {
                                crate::tracing_log::requeued(*id, conn, None);
                            }
                        }
                    }
                }
                Output::Dispatch {
                    op,
                    conn,
                    time_left,
                    ..
                } => {
                    self.dispatches += 1;
                    let handle = self.conns.get(&conn).cloned();
                    if let (Some(e), Some(handle)) = (self.ops.get_mut(&op), handle) {
                        self.next_exec += 1;
                        e.instr = Instr::Run {
                            conn,
                            exec: self.next_exec,
                            handle,
                            time_left,
                        };
                        e.cell.generation.fetch_add(1, Ordering::Release);
                        if me != Some(op) {
                            wakes.callers.extend(e.cell.waker.take());
                            woken.push(op);
                        }
                    }
                }
                Output::Heartbeat { conn } => self.jobs.push_back(Job::Heartbeat { conn }),
                Output::Complete(done) => {
                    let id = done.id;
                    if self.ops.contains_key(&id) {
                        let result = self.outcome(done);
                        if let Some(e) = self.ops.get_mut(&id) {
                            e.instr = Instr::Done(result);
                            e.cell.generation.fetch_add(1, Ordering::Release);
                            if me == Some(id) {
                                wakes.own_after_others = !woken.is_empty();
                            } else {
                                wakes.callers.extend(e.cell.waker.take());
                                woken.push(id);
                            }
                        }
                    }
                }
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
        for id in withdrawn {
            if me != Some(id) && !woken.contains(&id) {
                if let Some(e) = self.ops.get(&id) {
                    wakes.callers.extend(e.cell.waker.take());
                }
            }
        }
        wakes.driver = !self.jobs.is_empty()
            || self
                .machine
                .poll_timeout()
                .is_some_and(|(at, _)| self.armed.is_none_or(|armed| at < armed));
        wakes
    }

    /// The caller's view of an op's completion: the output, or an error
    /// with the connector's error of the last attempt (or what the last
    /// connect attempt or a panic said).
    fn outcome(&mut self, done: Completion<Arc<C::Op>>) -> CallResult<C> {
        let last = match self.last.take() {
            Some((op, r)) if op == done.id => Some(r),
            other => {
                self.last = other;
                None
            }
        };
        match (done.result, last) {
            (Ok(_), Some(Ok(output))) => Ok(output),
            (Ok(d), _) => Err(Error::new(
                ErrorKind::ServerError,
                true,
                d.attempts,
                "redial: success reported without an output (adapter bug)".into(),
                None,
            )
            .with_runs(d.runs)),
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
                .with_runs(e.runs())
                .with_detail(detail))
            }
        }
    }

    /// Calls the observer, if any.
    pub(crate) fn observe(&mut self, f: impl FnOnce(&mut dyn Observer<Arc<C::Op>>)) {
        if let Some(o) = self.observer.as_mut() {
            f(&mut **o);
        }
    }
}

/// The driver task: connect attempts, peer-closed watches, heartbeats and
/// the timer.
pub(crate) struct Driver<C: Connector> {
    shared: Arc<Shared<C>>,
    timer: Pin<Box<dyn AsyncTimer>>,
    slots: BTreeMap<ConnId, Slot<C>>,
    /// A report already taken from a slot, to be handled next.
    ready: Option<Report<C>>,
    /// The due deadline the driver last let other tasks go before, the
    /// core's dispatch count then, and how many times it did for that
    /// deadline: inputs that arrive at the instant a deadline falls (an
    /// answer a caller holds, runs just dispatched) reach the core before
    /// the timer step, as they did when the driver polled every run itself.
    /// A few turns at most per deadline, so a busy client never holds a
    /// timer step back.
    yielded: Option<(Instant, u64, u32)>,
    /// The client's span, entered while the driver task runs.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// Turns the driver lets other tasks take before one timer step.
const YIELDS_PER_DEADLINE: u32 = 4;

impl<C: Connector> Driver<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>) -> Self {
        let timer = shared.runtime.new_timer(shared.origin);
        #[cfg(feature = "tracing")]
        let span = shared.lock().span.clone();
        Driver {
            #[cfg(feature = "tracing")]
            span,
            shared,
            timer,
            slots: BTreeMap::new(),
            ready: None,
            yielded: None,
        }
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

    /// Carries out the jobs the core queued; whether there were any.
    fn run_jobs(&mut self) -> bool {
        let jobs = std::mem::take(&mut self.shared.lock().jobs);
        let any = !jobs.is_empty();
        for job in jobs {
            match job {
                Job::Connect { conn, endpoint } => {
                    self.slots.insert(
                        conn,
                        Slot {
                            conn: None,
                            work: FuturesUnordered::new(),
                        },
                    );
                    let connector = self.shared.connector.clone();
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
                Job::Close { conn, _handle } => {
                    // Dropping the slot cancels its work and drops the
                    // driver's handle on the connection (the core's goes
                    // with the job).
                    self.slots.remove(&conn);
                }
                Job::Heartbeat { conn } => {
                    if let Some(c) = self.slots.get(&conn).and_then(|s| s.conn.clone()) {
                        let connector = self.shared.connector.clone();
                        self.start(conn, async move {
                            let r = guarded("ping", async { connector.ping(&c).await }).await;
                            Report::Heartbeat(conn, r)
                        });
                    }
                }
            }
        }
        any
    }

    fn on_report(&mut self, report: Report<C>) {
        let shared = self.shared.clone();
        let wakes = match report {
            Report::Connected(id, result, role) => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    return; // the core closed this attempt already: drop it
                };
                match result {
                    Ok(conn) => {
                        let conn = Arc::new(conn);
                        slot.conn = Some(conn.clone());
                        let (connector, watched) = (shared.connector.clone(), conn.clone());
                        self.start(id, async move {
                            let kind = guarded("closed", async {
                                Ok::<_, C::Error>(connector.closed(&watched).await)
                            })
                            .await;
                            Report::PeerClosed(id, kind)
                        });
                        let mut core = shared.lock();
                        let now = shared.now(&core);
                        core.conns.insert(id, conn);
                        #[cfg(feature = "tracing")]
                        {
                            core.role = role;
                        }
                        core.observe(|o| o.on_connected(now, id, role));
                        core.machine.handle_connected_as(now, id, role);
                        core.drain(None)
                    }
                    Err(fault) => {
                        let connector = &shared.connector;
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
                        let mut core = shared.lock();
                        let now = shared.now(&core);
                        core.last_connect = Some(words);
                        core.observe(|o| o.on_connect_failed(now, id, why));
                        core.machine.handle_connect_failed(now, id, why);
                        core.drain(None)
                    }
                }
            }
            Report::Heartbeat(conn, mut result) => {
                let observed = match &mut result {
                    Ok(()) => OpResult::Ok,
                    Err(fault) => reading(&*shared.connector, fault),
                };
                let panic = result.err().and_then(|f| f.panic);
                let mut core = shared.lock();
                let now = shared.now(&core);
                core.step_panic = panic;
                core.observe(|o| o.on_heartbeat(now, conn, &observed));
                core.machine.handle_heartbeat(now, conn, observed);
                let wakes = core.drain(None);
                core.step_panic = None;
                wakes
            }
            Report::PeerClosed(conn, kind) => {
                let (kind, panic) = match kind {
                    Ok(kind) => (kind, None),
                    Err(fault) => (LossKind::Reset, fault.panic),
                };
                let mut core = shared.lock();
                let now = shared.now(&core);
                core.step_panic = panic;
                core.observe(|o| o.on_connection_lost(now, conn, kind));
                core.machine.handle_connection_lost(now, conn, kind);
                let wakes = core.drain(None);
                core.step_panic = None;
                wakes
            }
        };
        wakes.wake_callers();
    }

    fn shut_down(&mut self) {
        let wakes = {
            let mut core = self.shared.lock();
            let now = self.shared.now(&core);
            core.observe(|o| o.on_close(now));
            core.machine.close(now);
            let wakes = core.drain(None);
            // The streams end with the driver.
            core.subscribers.clear();
            (wakes, std::mem::take(&mut core.jobs))
        };
        wakes.0.wake_callers();
        // The connections go with the lock released.
        drop(wakes.1);
        self.slots.clear();
    }
}

impl<C: Connector> Drop for Driver<C> {
    fn drop(&mut self) {
        // Dropped by its runtime (or finished): calls still waiting end
        // with `closed`, later ones fail at once.
        let (results, wakers) = {
            let mut core = self.shared.lock();
            core.gone = true;
            core.subscribers.clear();
            let mut results = Vec::new();
            let mut wakers = Vec::new();
            for e in core.ops.values_mut() {
                if !matches!(e.instr, Instr::Done(_)) {
                    let old = std::mem::replace(&mut e.instr, Instr::Done(Err(gone_error())));
                    results.push(old);
                    e.cell.generation.fetch_add(1, Ordering::Release);
                    wakers.extend(e.cell.waker.take());
                }
            }
            let conns = std::mem::take(&mut core.conns);
            let jobs = std::mem::take(&mut core.jobs);
            ((results, conns, jobs), wakers)
        };
        // Outcomes and connections go with the lock released.
        drop(results);
        for w in wakers {
            w.wake();
        }
    }
}

// The driver is never pinned structurally: its timer is boxed.
impl<C: Connector> Unpin for Driver<C> {}

impl<C: Connector> Future for Driver<C> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        #[cfg(feature = "tracing")]
        let span = this.span.clone();
        #[cfg(feature = "tracing")]
        let _entered = span.enter();
        this.shared.driver.register(cx.waker());
        for _ in 0..256 {
            if this.shared.orphaned.load(Ordering::Acquire) {
                // Every handle and call is gone.
                this.shut_down();
                return Poll::Ready(());
            }
            let mut progressed = this.run_jobs();
            // Fairness: one report, then the timers, so a flood of reports
            // never starves deadlines.
            if let Some(report) = this.ready.take().or_else(|| this.poll_work(cx)) {
                this.on_report(report);
                this.run_jobs();
                progressed = true;
            }
            if progressed && this.ready.is_none() {
                // Work just started gets its first poll before a timer can
                // end it (a connect attempt or a ping goes out, as the core
                // was told); a report this turns up waits for the next turn.
                this.ready = this.poll_work(cx);
            }
            let shared = this.shared.clone();
            let mut core = shared.lock();
            let Some((deadline, _why)) = core.machine.poll_timeout() else {
                core.armed = None;
                drop(core);
                if progressed {
                    continue;
                }
                return Poll::Pending;
            };
            // Expired is decided by the clock, not by the timer having fired.
            let now = shared.now(&core);
            if deadline <= now {
                // Let the inputs of this instant that other tasks hold (an
                // answer, a run just dispatched) go first: once per
                // deadline, and again (a few times at most) while the
                // core dispatches meanwhile.
                let turns = match this.yielded {
                    Some((d, n, turns)) if d == deadline => {
                        (n != core.dispatches && turns < YIELDS_PER_DEADLINE).then_some(turns + 1)
                    }
                    _ => Some(1),
                };
                if let Some(turns) = turns {
                    this.yielded = Some((deadline, core.dispatches, turns));
                    drop(core);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                core.observe(|o| o.on_timeout(now));
                core.machine.handle_timeout(now);
                let wakes = core.drain(None);
                drop(core);
                wakes.wake_callers();
                continue;
            }
            if progressed {
                continue;
            }
            let Some(at) = shared.origin.checked_add(deadline.since_origin()) else {
                // "Never": nothing to arm, and no caller need wake the
                // driver for a deadline as late as this one.
                core.armed = Some(deadline);
                return Poll::Pending;
            };
            // Lazily: only an earlier deadline moves the timer; a later
            // one waits for the timer to fire and re-arm.
            if core.armed.is_none_or(|armed| deadline < armed) {
                core.armed = Some(deadline);
                drop(core);
                this.timer.as_mut().reset(at);
            } else {
                drop(core);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Fired (perhaps before the core's deadline): re-arm for the
            // current one on the next turn, never spin on a timer that
            // stays ready.
            shared.lock().armed = None;
        }
        // Yield to the runtime after a long burst of work.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
