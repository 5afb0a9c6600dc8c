//! The one generic driver task: it feeds the core and carries out its
//! outputs. It decides nothing.
//!
//! Everything the driver starts for a connection (the connect attempt, the
//! peer-closed watch, each op's `run`, each heartbeat) is a future in that
//! connection's slot, polled by the driver task itself: no task is spawned
//! per op, a finished op leaves nothing behind, and dropping the slot (on
//! the core's `Close`, or once the core has heard of the loss) cancels all
//! of it at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::future::{Either, select};
use futures::stream::FuturesUnordered;

use crate::client::{CallResult, Error};
use crate::connector::{Connector, Failure};
use crate::core::{
    Completion, ConnId, ErrorKind, Event, Instant, LossKind, Machine, OpId, OpOptions, OpResult,
    Output, State,
};
use crate::runtime::{AsyncTimer, Runtime, sleep_until};

pub(crate) type Reply<C> = CallResult<C>;

type RunResult<C> = Result<<C as Connector>::Output, <C as Connector>::Error>;

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
    Subscribe {
        tx: mpsc::UnboundedSender<Event>,
    },
}

/// What a slot's future reports when it finishes.
enum Report<C: Connector> {
    Connected(ConnId, Option<C::Conn>),
    OpDone(OpId, ConnId, RunResult<C>),
    Heartbeat(ConnId, Result<(), C::Error>),
    PeerClosed(ConnId),
}

type Work<C> = Pin<Box<dyn Future<Output = Report<C>> + Send>>;

/// A connect attempt or a connection, with the work under way on it.
struct Slot<C: Connector> {
    conn: Option<Arc<C::Conn>>,
    work: FuturesUnordered<Work<C>>,
}

impl<C: Connector> Slot<C> {
    fn new() -> Self {
        Slot {
            conn: None,
            work: FuturesUnordered::new(),
        }
    }
}

pub(crate) struct Driver<C: Connector> {
    machine: Machine<Arc<C::Op>>,
    runtime: Arc<dyn Runtime>,
    connector: Arc<C>,
    origin: std::time::Instant,
    commands: mpsc::UnboundedReceiver<Command<C>>,
    timer: Pin<Box<dyn AsyncTimer>>,
    /// The instant the timer is armed for: re-arming is skipped when the
    /// core's deadline has not moved (a reset costs a timer-wheel update on
    /// tokio and a reactor wake-up on async-io).
    armed: Option<std::time::Instant>,
    slots: BTreeMap<ConnId, Slot<C>>,
    pending: BTreeMap<OpId, (u64, oneshot::Sender<Reply<C>>)>,
    keys: BTreeMap<u64, OpId>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    state: Arc<Mutex<(State, usize)>>,
    /// The result of the op just reported, so its completion can carry the
    /// output or the connector's error.
    last: Option<(OpId, RunResult<C>)>,
}

impl<C: Connector> Driver<C> {
    pub(crate) fn new(
        machine: Machine<Arc<C::Op>>,
        runtime: Arc<dyn Runtime>,
        connector: Arc<C>,
        origin: std::time::Instant,
        commands: mpsc::UnboundedReceiver<Command<C>>,
        state: Arc<Mutex<(State, usize)>>,
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
            subscribers: Vec::new(),
            state,
            last: None,
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

    fn on_command(&mut self, cmd: Command<C>) {
        let now = self.now();
        match cmd {
            Command::Submit {
                key,
                op,
                options,
                reply,
            } => {
                let id = self.machine.submit(now, op, options);
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
            Command::Subscribe { tx } => self.subscribers.push(tx),
        }
        self.drain();
    }

    fn on_report(&mut self, report: Report<C>) {
        let now = self.now();
        // A connection or attempt the connector saw die: once the core has
        // heard of it, nothing more is expected about it, so its resources
        // go (the core only sends `Close` for what it drops itself).
        let mut dead = None;
        match report {
            Report::Connected(id, Some(conn)) => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    return; // the core abandoned this attempt already
                };
                let conn = Arc::new(conn);
                slot.conn = Some(conn.clone());
                let connector = self.connector.clone();
                self.start(id, async move {
                    connector.closed(&conn).await;
                    Report::PeerClosed(id)
                });
                self.machine.handle_connected(now, id);
            }
            Report::Connected(id, None) => {
                if self.slots.contains_key(&id) {
                    self.machine.handle_connect_failed(now, id);
                    dead = Some(id);
                }
            }
            Report::OpDone(op, conn, result) => {
                let observed = match &result {
                    Ok(_) => OpResult::Ok,
                    Err(e) => match self.connector.classify(e) {
                        Failure::ConnectionLost => OpResult::ConnectionLost,
                        Failure::WrongServer => OpResult::WrongServer,
                        Failure::ServerError => OpResult::ServerError,
                    },
                };
                self.last = Some((op, result));
                self.machine.handle_op_result(now, op, conn, observed);
                if observed == OpResult::ConnectionLost {
                    dead = Some(conn);
                }
            }
            Report::Heartbeat(conn, Ok(())) => self.machine.handle_heartbeat_ok(now, conn),
            Report::Heartbeat(conn, Err(e)) => match self.connector.classify(&e) {
                Failure::ConnectionLost => {
                    self.machine
                        .handle_connection_lost(now, conn, LossKind::Reset);
                    dead = Some(conn);
                }
                // The server answered: the connection is alive.
                Failure::WrongServer | Failure::ServerError => {
                    self.machine.handle_heartbeat_ok(now, conn)
                }
            },
            Report::PeerClosed(conn) => {
                self.machine
                    .handle_connection_lost(now, conn, LossKind::Closed);
                dead = Some(conn);
            }
        }
        self.drain();
        self.last = None;
        if let Some(id) = dead {
            self.slots.remove(&id);
        }
    }

    /// Carries out every output until the core has nothing more to say.
    fn drain(&mut self) {
        // Publish the state first: callers woken below must see it.
        self.publish();
        while let Some(out) = self.machine.poll_output() {
            match out {
                Output::Connect {
                    conn,
                    endpoint,
                    timeout,
                } => {
                    self.slots.insert(conn, Slot::new());
                    let deadline = timeout.and_then(|t| self.runtime.now().checked_add(t));
                    let (connector, runtime) = (self.connector.clone(), self.runtime.clone());
                    self.start(conn, async move {
                        let attempt = pin!(connector.connect(endpoint));
                        let result = match deadline {
                            None => attempt.await.ok(),
                            Some(at) => {
                                match select(attempt, pin!(sleep_until(&*runtime, at))).await {
                                    Either::Left((r, _)) => r.ok(),
                                    Either::Right(_) => None,
                                }
                            }
                        };
                        Report::Connected(conn, result)
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
                        self.start(conn, async move {
                            let r = connector.run(&c, &payload).await;
                            Report::OpDone(op, conn, r)
                        });
                    }
                }
                Output::Heartbeat { conn } => {
                    if let Some(c) = self.slots.get(&conn).and_then(|s| s.conn.clone()) {
                        let connector = self.connector.clone();
                        self.start(conn, async move {
                            let r = connector.ping(&c).await;
                            Report::Heartbeat(conn, r)
                        });
                    }
                }
                Output::Complete(done) => self.complete(done),
                Output::Event(e) => self.subscribers.retain(|s| s.unbounded_send(e).is_ok()),
            }
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
            (Err(e), last) => Err(Error::new(
                e.kind(),
                e.maybe_executed(),
                e.attempts(),
                e.to_string(),
                last.and_then(Result::err),
            )),
        };
        let _ = reply.send(result);
    }

    fn shut_down(&mut self) {
        let now = self.now();
        self.machine.close(now);
        self.drain();
        self.slots.clear();
    }
}

// The driver is never pinned structurally: its timer is boxed.
impl<C: Connector> Unpin for Driver<C> {}

impl<C: Connector> Future for Driver<C> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        for _ in 0..256 {
            match this.commands.poll_next_unpin(cx) {
                Poll::Ready(Some(cmd)) => {
                    this.on_command(cmd);
                    continue;
                }
                Poll::Ready(None) => {
                    // Every handle and call is gone.
                    this.shut_down();
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
            if let Some(report) = this.poll_work(cx) {
                this.on_report(report);
                continue;
            }
            let Some((deadline, _why)) = this.machine.poll_timeout() else {
                return Poll::Pending;
            };
            // Expired is decided by the clock, not by the timer having fired.
            let now = this.now();
            if deadline <= now {
                this.machine.handle_timeout(now);
                this.drain();
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
