//! The application's handle: `call`, `events`, `state`, `close`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::{mpsc, oneshot};
use futures::future::FusedFuture;
use pin_project::{pin_project, pinned_drop};

use crate::connector::Connector;
use crate::core::{Config, ConfigError, ErrorKind, Event, Machine, OpOptions, State};
use crate::driver::{Command, Driver, EVENT_QUEUE, Reply};
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
            message,
            server,
            detail: None,
        }
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

struct Shared<C: Connector> {
    /// Unbounded on purpose: every entry is a call a caller is awaiting (or
    /// its cancel, or a close/subscribe), so its length is bounded by the
    /// application's own concurrency, and the driver takes entries as fast
    /// as it can; the core's buffer policy bounds what is kept after that.
    /// A bounded queue here would make `call` block or fail on a busy
    /// driver, a decision that belongs to the core's buffer policy.
    tx: mpsc::UnboundedSender<Command<C>>,
    next_key: AtomicU64,
    state: Arc<Mutex<(State, usize)>>,
}

/// A handle on one logical connection kept alive by the core. Cheap to
/// clone; every clone talks to the same driver task.
pub struct Client<C: Connector> {
    shared: Arc<Shared<C>>,
}

impl<C: Connector> Clone for Client<C> {
    fn clone(&self) -> Self {
        Client {
            shared: self.shared.clone(),
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

    /// Watches every step of the core this client's driver runs (see
    /// [`Observer`]): the simulator attaches the invariant checker here.
    pub fn observer(mut self, observer: impl Observer<Arc<C::Op>>) -> Self {
        self.observer = Some(Box::new(observer));
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
    /// the subscription reaches it).
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
        let state = Arc::new(Mutex::new((machine.state(), 0)));
        let (tx, rx) = mpsc::unbounded();
        let driver = Driver::new(
            machine,
            runtime.clone(),
            Arc::new(self.connector),
            origin,
            rx,
            state.clone(),
            self.observer,
        );
        let client = Client {
            shared: Arc::new(Shared {
                tx,
                next_key: AtomicU64::new(0),
                state,
            }),
        };
        // Queued before the driver runs: its first poll takes commands
        // before any report, so this stream misses no event.
        let events = subscribe.then(|| client.events());
        runtime.spawn(Box::pin(driver));
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

    /// Runs `op` with per-call options. Dropping the returned future
    /// cancels the op.
    pub fn call_with(&self, op: C::Op, options: CallOptions) -> Call<C> {
        let key = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let sent = self
            .shared
            .tx
            .unbounded_send(Command::Submit {
                key,
                op: Arc::new(op),
                options,
                reply,
            })
            .is_ok();
        Call {
            key,
            rx,
            shared: self.shared.clone(),
            done: !sent,
            resolved: false,
        }
    }

    /// A stream of the core's events from now on. Each stream holds up to
    /// 1024 events not yet read; newer events are dropped while it is full
    /// and counted in [`Events::missed`] (a subscriber that stops reading
    /// costs bounded memory and never slows the client).
    ///
    /// Events that happen before the subscription reaches the driver are
    /// not seen; to see every event from the start (the first
    /// `connected`), build with [`Builder::build_with_events`].
    pub fn events(&self) -> Events {
        // A futures channel holds its buffer plus one slot per sender.
        let (tx, rx) = mpsc::channel(EVENT_QUEUE - 1);
        let missed = Arc::new(AtomicU64::new(0));
        let _ = self.shared.tx.unbounded_send(Command::Subscribe {
            tx,
            missed: missed.clone(),
        });
        Events { rx, missed }
    }

    /// The core's state, as of the driver's last step.
    pub fn state(&self) -> State {
        self.snapshot().0
    }

    /// Ops submitted and not yet given their outcome (buffered or in
    /// flight), as of the driver's last step.
    pub fn outstanding(&self) -> usize {
        self.snapshot().1
    }

    fn snapshot(&self) -> (State, usize) {
        *self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts reconnecting now with a fresh reconnect budget — after the
    /// client gave up (`reconnect_failed` under
    /// [`GiveUp::Terminal`](crate::core::GiveUp::Terminal): later calls
    /// failed with `topology was destroyed`), after a loss with
    /// auto-reconnect off, or during a backoff or cool-down wait. Event
    /// subscribers keep their streams. Ignored while connected or
    /// connecting, and after [`close`](Self::close).
    pub fn revive(&self) {
        let _ = self.shared.tx.unbounded_send(Command::Revive);
    }

    /// Closes the client: every op still pending fails with `closed`. Resolves
    /// once every op has its outcome.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .shared
            .tx
            .unbounded_send(Command::Close { reply })
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// The future of one call. Dropping it before it resolves cancels the op.
#[pin_project(PinnedDrop)]
pub struct Call<C: Connector> {
    key: u64,
    #[pin]
    rx: oneshot::Receiver<Reply<C>>,
    // An Arc clone per call is cheaper than a channel-sender clone.
    shared: Arc<Shared<C>>,
    /// No cancel to send on drop (resolved, or never submitted).
    done: bool,
    /// Resolved: polling again is a misuse.
    resolved: bool,
}

impl<C: Connector> fmt::Debug for Call<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("key", &self.key)
            .field("done", &self.done)
            .finish()
    }
}

impl<C: Connector> Future for Call<C> {
    type Output = CallResult<C>;

    /// # Panics
    ///
    /// When polled again after it resolved (as an `async fn`'s future
    /// does); [`FusedFuture::is_terminated`] says when not to.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        assert!(!*this.resolved, "redial::Call polled after it resolved");
        match this.rx.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                *this.done = true;
                *this.resolved = true;
                Poll::Ready(r.unwrap_or_else(|_| {
                    // The driver task is gone (its runtime shut down).
                    Err(Error::new(
                        ErrorKind::Closed,
                        true,
                        0,
                        "client closed: the driver task is gone".into(),
                        None,
                    ))
                }))
            }
        }
    }
}

impl<C: Connector> FusedFuture for Call<C> {
    fn is_terminated(&self) -> bool {
        self.resolved
    }
}

#[pinned_drop]
impl<C: Connector> PinnedDrop for Call<C> {
    fn drop(self: Pin<&mut Self>) {
        if !self.done {
            let _ = self
                .shared
                .tx
                .unbounded_send(Command::Cancel { key: self.key });
        }
    }
}

/// The core's events, as a stream. Ends when the driver stops.
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
