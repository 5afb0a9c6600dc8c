//! The application's handle: `call`, `events`, `state`, `close`.
//!
//! A [`Client`] feeds the core directly, under the client's lock (see the
//! driver module): [`Client::call_with`] submits the op and carries out
//! what the core says at once; the returned [`Call`] polls the op's `run`
//! in the caller's own task whenever the core dispatches the op (at once,
//! or later: a buffered op flushed on reconnect, a retry), reports the
//! answer to the core itself and takes its own outcome. Nothing of an op's
//! round trip goes through the driver task.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::mpsc;
use futures::future::FusedFuture;

use crate::connector::Connector;
use crate::core::{
    Config, ConfigError, ConnId, ErrorKind, Event, Machine, OpId, OpOptions, OpResult, State, Stats,
};
use crate::driver::{
    Core, Driver, EVENT_QUEUE, Entry, Instr, OpCell, RunFuture, RunOutcome, Shared, gone_error,
    reading, run_future,
};
use crate::observer::Observer;
use crate::runtime::{Runtime, default_runtime};

/// Per-call options: the core's [`OpOptions`] (retryable, deadline,
/// attempt limit), e.g. `CallOptions::new().retryable(true)`.
pub type CallOptions = OpOptions;

/// Why a call failed: the core's verdict plus the connector's error of the
/// last attempt, when there is one.
pub struct Error<E> {
    kind: ErrorKind,
    maybe_executed: bool,
    attempts: u32,
    runs: u32,
    message: String,
    server: Option<E>,
    detail: Option<String>,
}

impl<E> Error<E> {
    pub(crate) fn new(
        kind: ErrorKind,
        maybe_executed: bool,
        attempts: u32,
        message: String,
        server: Option<E>,
    ) -> Self {
        Error {
            kind,
            maybe_executed,
            attempts,
            runs: u32::from(maybe_executed),
            message,
            server,
            detail: None,
        }
    }

    /// The core's count of dispatches that may have run (see
    /// [`OpError::runs`](crate::core::OpError::runs)).
    pub(crate) fn with_runs(mut self, runs: u32) -> Self {
        self.runs = runs;
        self
    }

    pub(crate) fn with_detail(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }

    /// What the connector said that the core's message does not: for
    /// `reconnect_failed` / `topology_destroyed`, the last connect error
    /// (`last connect error: Connection refused (os error 111)`); when the
    /// connector panicked, the panic message. Part of `Display`.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The core's stable error kind (`no_connection`, `connection_lost`, …).
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// `false` only when the op certainly did not run on the server.
    pub fn maybe_executed(&self) -> bool {
        self.maybe_executed
    }

    /// How many times the op was dispatched.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Of those, the dispatches the server did not refuse: each may have
    /// run. Two or more: the op was sent again after a loss in flight (a
    /// retryable op, or the config's `retry_lost`) and **may have run
    /// twice**.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    /// The core's message (`failed to reconnect after 2 attempts with interval 100 ms`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The server's (or driver's) error from the last attempt, if any.
    pub fn server_error(&self) -> Option<&E> {
        self.server.as_ref()
    }

    /// Hands the server error back.
    pub fn into_server_error(self) -> Option<E> {
        self.server
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("maybe_executed", &self.maybe_executed)
            .field("runs", &self.runs)
            .field("attempts", &self.attempts)
            .field("message", &self.message)
            .field("server", &self.server)
            .field("detail", &self.detail)
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        if let Some(s) = &self.server {
            write!(f, " ({s})")?;
        }
        Ok(())
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.server.as_ref().map(|e| e as _)
    }
}

/// The result of a call.
pub type CallResult<C> = Result<<C as Connector>::Output, Error<<C as Connector>::Error>>;

/// What keeps the driver task alive: held by every [`Client`] clone and
/// every [`Call`]. When the last one goes, the driver closes the core and
/// stops.
struct Handle<C: Connector> {
    shared: Arc<Shared<C>>,
}

impl<C: Connector> Drop for Handle<C> {
    fn drop(&mut self) {
        self.shared.orphaned.store(true, Ordering::Release);
        self.shared.wake_driver();
    }
}

/// A handle on one logical connection kept alive by the core. Cheap to
/// clone; every clone feeds the same core and driver task.
pub struct Client<C: Connector> {
    handle: Arc<Handle<C>>,
}

impl<C: Connector> Clone for Client<C> {
    fn clone(&self) -> Self {
        Client {
            handle: self.handle.clone(),
        }
    }
}

impl<C: Connector> fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .finish()
    }
}

/// Why a [`Client`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// No runtime was given and none is available (no runtime feature
    /// enabled, or feature `tokio` only and not inside a tokio runtime).
    NoRuntime,
    /// The connector reports no endpoint to connect to.
    NoEndpoints,
    /// The config names a number of endpoints (`endpoints`) other than the
    /// connector's seed list. Leave the config's at 1 (the default) and the
    /// client takes the connector's.
    EndpointMismatch {
        /// `Config::endpoints()`.
        config: usize,
        /// `Connector::endpoints()`.
        connector: usize,
    },
    /// The config, completed with the connector's endpoint count, is invalid.
    Config(ConfigError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoRuntime => f.write_str(
                "redial: no async runtime (enable feature tokio, smol or async-std, \
                 run inside it, or call Builder::runtime)",
            ),
            BuildError::NoEndpoints => {
                f.write_str("redial: the connector has no endpoint (an empty seed list)")
            }
            BuildError::EndpointMismatch { config, connector } => write!(
                f,
                "redial: config field `endpoints` is {config} but the connector has \
                 {connector} endpoints (leave `endpoints` unset to take the connector's)"
            ),
            BuildError::Config(e) => write!(f, "redial: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// Builds a [`Client`].
pub struct Builder<C: Connector> {
    connector: C,
    config: Config,
    seed: Option<u64>,
    runtime: Option<Arc<dyn Runtime>>,
    observer: Option<Box<dyn Observer<Arc<C::Op>>>>,
}

impl<C: Connector> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("seed", &self.seed)
            .field("runtime", &self.runtime)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl<C: Connector> Builder<C> {
    /// The core configuration (default: [`Config::recommended`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The seed of the core's jitter PRNG. Default: derived from the wall
    /// clock, so a fleet of clients does not reconnect in lock-step; set it
    /// to reproduce a run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The runtime (default: [`default_runtime`]).
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Watches every step of the core this client runs (see
    /// [`Observer`]): the simulator attaches the invariant checker here.
    pub fn observer(mut self, observer: impl Observer<Arc<C::Op>>) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Records every input of the core this client runs, and its outputs,
    /// to `recorder` (a [`FlightRecorder`](crate::FlightRecorder): a
    /// stream of JSON lines, or the last records in memory), alongside the
    /// [`observer`](Self::observer) if there is one.
    #[cfg(feature = "recorder")]
    pub fn record(mut self, recorder: &crate::FlightRecorder) -> Self {
        let rec: Box<dyn Observer<Arc<C::Op>>> = Box::new(recorder.observer());
        self.observer = Some(match self.observer.take() {
            Some(o) => Box::new(crate::observer::Both(o, rec)),
            None => rec,
        });
        self
    }

    /// Starts the driver task and returns the handle. The driver starts
    /// connecting at once, whether or not the client is used.
    ///
    /// The endpoints are the connector's ([`Connector::endpoints`]): a
    /// config that leaves `endpoints` at 1 takes the connector's count.
    ///
    /// # Errors
    ///
    /// [`BuildError`]: no runtime, no endpoint, or a config whose
    /// `endpoints` disagrees with the connector's seed list.
    pub fn build(self) -> Result<Client<C>, BuildError> {
        self.build_inner(false).map(|(c, _)| c)
    }

    /// As [`build`](Self::build), plus an event stream subscribed before
    /// the client starts: it sees every event from the very first
    /// (`connected`), which [`Client::events`] called right after `build`
    /// may miss on a multi-threaded runtime (the driver can connect before
    /// the subscription is made).
    pub fn build_with_events(self) -> Result<(Client<C>, Events), BuildError> {
        self.build_inner(true)
            .map(|(c, e)| (c, e.expect("subscribed before the start")))
    }

    fn build_inner(self, subscribe: bool) -> Result<(Client<C>, Option<Events>), BuildError> {
        let runtime = self
            .runtime
            .or_else(default_runtime)
            .ok_or(BuildError::NoRuntime)?;
        let endpoints = self.connector.endpoints();
        if endpoints == 0 {
            return Err(BuildError::NoEndpoints);
        }
        let config = match self.config.endpoints() {
            n if n == endpoints => self.config,
            1 => self
                .config
                .to_builder()
                .endpoints(endpoints)
                .build()
                .map_err(BuildError::Config)?,
            n => {
                return Err(BuildError::EndpointMismatch {
                    config: n,
                    connector: endpoints,
                });
            }
        };
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ u64::from(std::process::id()).rotate_left(32)
        });
        let origin = runtime.now();
        let machine = Machine::new(config, seed, crate::core::Instant::ZERO);
        let mut observer = self.observer;
        if let Some(o) = observer.as_mut() {
            o.on_start(seed, &machine);
        }
        let shared = Arc::new(Shared::new(
            machine,
            runtime.clone(),
            Arc::new(self.connector),
            origin,
            observer,
        ));
        let client = Client {
            handle: Arc::new(Handle {
                shared: shared.clone(),
            }),
        };
        // Subscribed before the core's first outputs are carried out: this
        // stream misses no event.
        let events = subscribe.then(|| client.events());
        shared.start();
        runtime.spawn(Box::pin(Driver::new(shared)));
        Ok((client, events))
    }
}

impl<C: Connector> Client<C> {
    /// A builder with [`Config::recommended`], a clock-derived seed and the
    /// default runtime.
    pub fn builder(connector: C) -> Builder<C> {
        Builder {
            connector,
            config: Config::recommended(),
            seed: None,
            runtime: None,
            observer: None,
        }
    }

    /// A client with `config` on the default runtime (see [`Builder::build`]).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(config: Config, connector: C) -> Result<Self, BuildError> {
        Self::builder(connector).config(config).build()
    }

    /// Runs `op` (not retryable, the config's deadline).
    pub fn call(&self, op: C::Op) -> Call<C> {
        self.call_with(op, CallOptions::default())
    }

    /// Runs `op` with per-call options.
    ///
    /// The op is submitted to the core here, at once; its `run` is polled
    /// inside the returned future, in the caller's task, so the op goes on
    /// the wire when (and while) the future is polled — await it, or poll
    /// it alongside others (`join`, `FuturesUnordered`, a spawned task) to
    /// run calls concurrently. Dropping the returned future cancels the op.
    ///
    /// Like every Rust future, the call does nothing until it is first
    /// polled: that is when the op is submitted to the core (and counted
    /// in [`outstanding`](Self::outstanding)), and its deadline starts. A
    /// call built and dropped unpolled never reaches the core. (For the
    /// core an op is in flight from its dispatch, and its timeouts — and
    /// the connection's `response_timeout` — run from then: submitting on
    /// first poll keeps a call held unpolled from being timed as if it had
    /// been sent.) To submit at once, in the order of the calls, use
    /// [`Call::submitted`].
    pub fn call_with(&self, op: C::Op, options: CallOptions) -> Call<C> {
        Call {
            handle: self.handle.clone(),
            id: None,
            op: Arc::new(op),
            cell: Arc::new(OpCell::default()),
            seen: 0,
            started: 0,
            run: Exclusive::new(None),
            early: Exclusive::new(None),
            pending: Some(options),
            done: true,
            resolved: false,
        }
    }

    /// A stream of the core's events from now on. Each stream holds up to
    /// 1024 events not yet read; newer events are dropped while it is full
    /// and counted in [`Events::missed`] (a subscriber that stops reading
    /// costs bounded memory and never slows the client).
    ///
    /// Events that happened before this call are not seen; to see every
    /// event from the start (the first `connected`), build with
    /// [`Builder::build_with_events`].
    pub fn events(&self) -> Events {
        // A futures channel holds its buffer plus one slot per sender.
        let (tx, rx) = mpsc::channel(EVENT_QUEUE - 1);
        let missed = Arc::new(AtomicU64::new(0));
        self.handle.shared.subscribe(tx, missed.clone());
        Events { rx, missed }
    }

    /// The core's state.
    pub fn state(&self) -> State {
        self.handle.shared.lock().machine.state()
    }

    /// Ops submitted and not yet given their outcome (buffered or in
    /// flight).
    pub fn outstanding(&self) -> usize {
        self.handle.shared.lock().machine.outstanding()
    }

    /// A snapshot of the core's counters and gauges, taken under the
    /// client's lock (one consistent step of the core): state, ops buffered
    /// and in flight, connect attempts, connects and reconnects, op retries
    /// and re-queues, retry budget tokens, time spent without a connection
    /// up to now (the runtime clock, read under the lock), and why the last
    /// connect attempt failed. The counters are the core's
    /// ([`Machine::stats`]): the adapter counts nothing itself. See
    /// [`Stats`] for each field's definition.
    pub fn stats(&self) -> Stats {
        let core = self.handle.shared.lock();
        let now = self.handle.shared.now(&core);
        core.machine.stats(now)
    }

    /// Starts reconnecting now with a fresh reconnect budget — after the
    /// client gave up (`reconnect_failed` under
    /// [`GiveUp::Terminal`](crate::core::GiveUp::Terminal): later calls
    /// failed with `topology was destroyed`), after a loss with
    /// auto-reconnect off, or during a backoff or cool-down wait. Event
    /// subscribers keep their streams. Ignored while connected or
    /// connecting, and after [`close`](Self::close).
    pub fn revive(&self) {
        self.handle.shared.revive();
    }

    /// Closes the client: every op still pending fails with `closed`, and
    /// every [`Events`] stream ends (after the events of the close itself).
    /// Resolves once every op has its outcome.
    pub async fn close(&self) {
        self.handle.shared.close();
    }
}

/// What a call does next, as read from its op's instruction.
enum Next<C: Connector> {
    /// The op has its outcome.
    Resolved(CallResult<C>),
    /// Start (or keep) the run of this execution on this connection.
    Run(
        u64,
        ConnId,
        Option<(Arc<C::Conn>, Option<std::time::Duration>)>,
    ),
    /// No run: the op waits (buffered, or its connection was closed).
    Wait,
}

/// An op's `run` under way in its caller's task.
struct Running<C: Connector> {
    exec: u64,
    conn: ConnId,
    fut: RunFuture<C>,
}

/// A value reached only through `&mut`, so it can sit in a `Sync` type
/// whatever it is (a run future is `Send` only): a mutex never locked,
/// whose `get_mut` costs nothing.
struct Exclusive<T>(std::sync::Mutex<T>);

impl<T> Exclusive<T> {
    fn new(value: T) -> Self {
        Exclusive(std::sync::Mutex::new(value))
    }

    fn get(&mut self) -> &mut T {
        self.0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The future of one call. Dropping it before it resolves cancels the op.
pub struct Call<C: Connector> {
    handle: Arc<Handle<C>>,
    /// `None`: never submitted (the driver task was gone).
    id: Option<OpId>,
    op: Arc<C::Op>,
    cell: Arc<OpCell>,
    /// The op's instruction generation last read.
    seen: u64,
    /// The execution last started (0: none yet).
    started: u64,
    run: Exclusive<Option<Running<C>>>,
    /// An outcome known when the call was made.
    early: Exclusive<Option<CallResult<C>>>,
    /// Not submitted yet: its options (submitted on first poll, or by
    /// [`Call::submitted`]).
    pending: Option<CallOptions>,
    /// No cancel to send on drop (resolved, or never submitted).
    done: bool,
    /// Resolved: polling again is a misuse.
    resolved: bool,
}

impl<C: Connector> fmt::Debug for Call<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("op", &self.id)
            .field("running", &self.run.0.try_lock().map(|r| r.is_some()).ok())
            .field("done", &self.done)
            .finish()
    }
}

impl<C: Connector> Call<C> {
    /// Submits the op to the core now, before the future is first polled:
    /// calls submitted this way reach the core in the order of these
    /// calls, whatever order they are polled in. From then on the op is
    /// the core's — buffered, or dispatched and *in flight*, its deadline,
    /// command timeout and the connection's `response_timeout` running —
    /// but its `run` only goes on the wire while this future is polled:
    /// await it soon (a call submitted and left unpolled longer than the
    /// response timeout makes the core declare the connection
    /// unresponsive). Dropping it cancels the op.
    pub fn submitted(mut self) -> Self {
        self.submit();
        self
    }

    /// Submits the op if it is not yet (the lock taken here).
    fn submit(&mut self) {
        let Some(options) = self.pending.take() else {
            return;
        };
        let shared = self.handle.shared.clone();
        let next = {
            let mut core = shared.lock();
            if core.gone {
                drop(core);
                *self.early.get() = Some(Err(gone_error()));
                return;
            }
            let now = shared.now(&core);
            let before = core.machine.state();
            let id = core.machine.submit(now, self.op.clone(), options);
            let at = core.machine.now();
            #[cfg(feature = "tracing")]
            {
                let retryable = options.is_retryable(core.machine.config());
                core.span
                    .in_scope(|| crate::tracing_log::submitted(id, &options, retryable, before));
            }
            core.observe(|o| o.on_submit(at, id, &options, before));
            core.ops.insert(
                id,
                Entry {
                    cell: self.cell.clone(),
                    instr: Instr::Wait,
                },
            );
            self.id = Some(id);
            self.done = false;
            let wakes = core.drain(Some(id));
            #[cfg(feature = "tracing")]
            if crate::tracing_log::op_enabled()
                && core
                    .ops
                    .get(&id)
                    .is_some_and(|e| matches!(e.instr, Instr::Wait))
            {
                let (buffered, state) = (core.machine.buffered(), core.machine.state());
                core.span
                    .in_scope(|| crate::tracing_log::buffered(id, buffered, state));
            }
            let next = self.next(&mut core);
            drop(core);
            // Nothing to let go first: the caller goes on at once.
            let _ = wakes.wake(&shared);
            next
        };
        if let Next::Resolved(r) = next {
            *self.early.get() = Some(r);
            self.done = true;
        } else {
            self.follow(next);
        }
    }

    /// Reads the op's instruction (the lock held). An outcome is taken out.
    fn next(&mut self, core: &mut Core<C>) -> Next<C> {
        self.seen = self.cell.generation.load(Ordering::Acquire);
        let Some(id) = self.id else {
            return Next::Resolved(Err(gone_error()));
        };
        let Some(entry) = core.ops.get(&id) else {
            return Next::Resolved(Err(gone_error()));
        };
        match &entry.instr {
            Instr::Done(_) => match core.ops.remove(&id).map(|e| e.instr) {
                Some(Instr::Done(r)) => Next::Resolved(r),
                _ => Next::Resolved(Err(gone_error())),
            },
            // Each execution is started once: one that finished is not
            // run again, whatever the core did with its answer.
            Instr::Run {
                exec,
                conn,
                handle,
                time_left,
            } => Next::Run(
                *exec,
                *conn,
                (*exec != self.started).then(|| (handle.clone(), *time_left)),
            ),
            Instr::Wait => Next::Wait,
        }
    }

    /// Starts, keeps or drops the run as `next` says (the lock released:
    /// building and dropping a run is connector code).
    fn follow(&mut self, next: Next<C>) {
        match next {
            Next::Run(exec, conn, Some((handle, time_left))) => {
                let fut = run_future(
                    self.handle.shared.connector.clone(),
                    handle,
                    self.op.clone(),
                    time_left,
                );
                self.started = exec;
                *self.run.get() = Some(Running { exec, conn, fut });
            }
            Next::Run(_, _, None) => {}
            Next::Wait | Next::Resolved(_) => *self.run.get() = None,
        }
    }

    /// Reports the run's answer to the core and drains its outputs; then
    /// reads the op's instruction. `None`: let the callers the core woke
    /// first go before taking this op's outcome.
    fn report(&mut self, run: Running<C>, mut outcome: RunOutcome<C>) -> Option<Next<C>> {
        let shared = self.handle.shared.clone();
        let id = self.id?;
        // The connector's reading, outside the lock.
        let observed = match &mut outcome {
            Ok(_) => OpResult::Ok,
            Err(fault) => reading(&*shared.connector, fault),
        };
        let mut core = shared.lock();
        let current = core
            .ops
            .get(&id)
            .is_some_and(|e| matches!(e.instr, Instr::Run { exec, .. } if exec == run.exec));
        if !current {
            // A stale run: its op got its outcome or was dispatched anew
            // meanwhile; the core has nothing to hear from it.
            let next = self.next(&mut core);
            drop(core);
            drop(outcome);
            return Some(next);
        }
        let now = shared.now(&core);
        core.step_panic = outcome.as_ref().err().and_then(|f| f.panic.clone());
        core.last = Some((id, outcome));
        core.observe(|o| o.on_op_result(now, id, run.conn, &observed));
        core.machine.handle_op_result(now, id, run.conn, observed);
        let wakes = core.drain(Some(id));
        // Refused (wrong server, pushback) and still the core's: back in
        // the buffer. (A lost connection's re-queue is logged with its
        // close.)
        #[cfg(feature = "tracing")]
        if matches!(observed, OpResult::WrongServer | OpResult::Pushback { .. })
            && crate::tracing_log::op_enabled()
            && core.machine.payload(id).is_some()
        {
            core.span
                .in_scope(|| crate::tracing_log::requeued(id, run.conn, Some(&observed)));
        }
        let unused = core.last.take();
        core.step_panic = None;
        let own_after_others = wakes.own_after_others;
        let next = (!own_after_others).then(|| self.next(&mut core));
        drop(core);
        drop(unused);
        let _ = wakes.wake(&shared);
        next
    }
}

// A call is never pinned structurally: its run is boxed.
impl<C: Connector> Unpin for Call<C> {}

impl<C: Connector> Future for Call<C> {
    type Output = CallResult<C>;

    /// # Panics
    ///
    /// When polled again after it resolved (as an `async fn`'s future
    /// does); [`FusedFuture::is_terminated`] says when not to.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.resolved, "redial::Call polled after it resolved");
        this.submit();
        if let Some(r) = this.early.get().take() {
            this.resolved = true;
            return Poll::Ready(r);
        }
        loop {
            this.cell.waker.register(cx.waker());
            if this.cell.generation.load(Ordering::Acquire) != this.seen {
                // The op's instruction changed: look under the lock.
                let next = {
                    let shared = this.handle.shared.clone();
                    let mut core = shared.lock();
                    this.next(&mut core)
                };
                if let Next::Resolved(r) = next {
                    *this.run.get() = None;
                    this.done = true;
                    this.resolved = true;
                    return Poll::Ready(r);
                }
                this.follow(next);
            }
            let Some(run) = this.run.get().as_mut() else {
                return Poll::Pending;
            };
            let Poll::Ready(outcome) = run.fut.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            let Some(run) = this.run.get().take() else {
                return Poll::Pending;
            };
            match this.report(run, outcome) {
                Some(Next::Resolved(r)) => {
                    this.done = true;
                    this.resolved = true;
                    return Poll::Ready(r);
                }
                Some(next) => this.follow(next),
                None => {
                    // Others first: this op's outcome waits in its entry.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<C: Connector> FusedFuture for Call<C> {
    fn is_terminated(&self) -> bool {
        self.resolved
    }
}

impl<C: Connector> Drop for Call<C> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(id) = self.id else {
            return;
        };
        let shared = self.handle.shared.clone();
        let (entry, wakes) = {
            let mut core = shared.lock();
            let entry = core.ops.remove(&id);
            let wakes = match &entry {
                Some(e) if !core.gone && !matches!(e.instr, Instr::Done(_)) => {
                    let now = shared.now(&core);
                    core.observe(|o| o.on_cancel(now, id));
                    core.machine.cancel(now, id);
                    Some(core.drain(None))
                }
                // It has its outcome already (not taken): nothing to cancel.
                _ => None,
            };
            (entry, wakes)
        };
        // The outcome and the run go with the lock released.
        drop(entry);
        *self.run.get() = None;
        if let Some(w) = wakes {
            let _ = w.wake(&shared);
        }
    }
}

/// The core's events, as a stream. Ends when the client is
/// [closed](Client::close) (after the close's own events) or its driver
/// stops.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
    missed: Arc<AtomicU64>,
}

impl Events {
    /// Events dropped because this stream was full (1024 unread).
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}
