//! The one generic driver task: it feeds the core and carries out its
//! outputs. It decides nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::future::{AbortHandle, Either, abortable, select};

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

/// From the tasks the driver spawned.
enum Report<C: Connector> {
    Connected(ConnId, Option<C::Conn>),
    OpDone(OpId, ConnId, RunResult<C>),
    Heartbeat(ConnId, Result<(), C::Error>),
    PeerClosed(ConnId),
}

/// A connect attempt or a connection, with the tasks working on it.
struct Slot<C: Connector> {
    conn: Option<Arc<C::Conn>>,
    tasks: Vec<AbortHandle>,
}

impl<C: Connector> Drop for Slot<C> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) struct Driver<C: Connector> {
    machine: Machine<Arc<C::Op>>,
    runtime: Arc<dyn Runtime>,
    connector: Arc<C>,
    origin: std::time::Instant,
    commands: mpsc::UnboundedReceiver<Command<C>>,
    reports: mpsc::UnboundedReceiver<Report<C>>,
    report_tx: mpsc::UnboundedSender<Report<C>>,
    timer: Pin<Box<dyn AsyncTimer>>,
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
        let (report_tx, reports) = mpsc::unbounded();
        let timer = runtime.new_timer(origin);
        Driver {
            machine,
            runtime,
            connector,
            origin,
            commands,
            reports,
            report_tx,
            timer,
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

    fn spawn_tracked(&mut self, conn: ConnId, fut: impl Future<Output = ()> + Send + 'static) {
        let (fut, handle) = abortable(fut);
        self.runtime.spawn(Box::pin(async move {
            let _ = fut.await;
        }));
        match self.slots.get_mut(&conn) {
            Some(slot) => slot.tasks.push(handle),
            None => handle.abort(),
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
                let (connector, tx) = (self.connector.clone(), self.report_tx.clone());
                self.spawn_tracked(id, async move {
                    connector.closed(&conn).await;
                    let _ = tx.unbounded_send(Report::PeerClosed(id));
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
                    self.slots.insert(
                        conn,
                        Slot {
                            conn: None,
                            tasks: Vec::new(),
                        },
                    );
                    let deadline = timeout.and_then(|t| self.runtime.now().checked_add(t));
                    let (connector, runtime, tx) = (
                        self.connector.clone(),
                        self.runtime.clone(),
                        self.report_tx.clone(),
                    );
                    self.spawn_tracked(conn, async move {
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
                        let _ = tx.unbounded_send(Report::Connected(conn, result));
                    });
                }
                Output::Close { conn } => {
                    // Dropping the slot aborts its tasks and drops the connection.
                    self.slots.remove(&conn);
                }
                Output::Dispatch { op, conn, .. } => {
                    let payload = self.machine.payload(op).cloned();
                    let c = self.slots.get(&conn).and_then(|s| s.conn.clone());
                    if let (Some(payload), Some(c)) = (payload, c) {
                        let (connector, tx) = (self.connector.clone(), self.report_tx.clone());
                        self.spawn_tracked(conn, async move {
                            let r = connector.run(&c, &payload).await;
                            let _ = tx.unbounded_send(Report::OpDone(op, conn, r));
                        });
                    }
                }
                Output::Heartbeat { conn } => {
                    if let Some(c) = self.slots.get(&conn).and_then(|s| s.conn.clone()) {
                        let (connector, tx) = (self.connector.clone(), self.report_tx.clone());
                        self.spawn_tracked(conn, async move {
                            let r = connector.ping(&c).await;
                            let _ = tx.unbounded_send(Report::Heartbeat(conn, r));
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
            if let Poll::Ready(Some(report)) = this.reports.poll_next_unpin(cx) {
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
            this.timer.as_mut().reset(at);
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // Yield to the runtime after a long burst of work.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
