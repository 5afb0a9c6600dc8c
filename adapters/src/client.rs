//! The application's handle: `call`, `events`, `state`, `close`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::{mpsc, oneshot};
use pin_project::{pin_project, pinned_drop};

use crate::connector::Connector;
use crate::core::{Config, ErrorKind, Event, Machine, OpOptions, State};
use crate::driver::{Command, Driver, Reply};
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
        }
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
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
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

/// Builds a [`Client`].
pub struct Builder<C: Connector> {
    connector: C,
    config: Config,
    seed: Option<u64>,
    runtime: Option<Arc<dyn Runtime>>,
}

impl<C: Connector> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("seed", &self.seed)
            .field("runtime", &self.runtime)
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

    /// Starts the driver task and returns the handle.
    ///
    /// # Panics
    ///
    /// When no runtime was given and none is available (no runtime feature
    /// enabled, or feature `tokio` only and not inside a tokio runtime).
    pub fn build(self) -> Client<C> {
        let runtime = self.runtime.or_else(default_runtime).expect(
            "redial: no async runtime (enable feature tokio, smol or async-std, \
             run inside it, or call Builder::runtime)",
        );
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ u64::from(std::process::id()).rotate_left(32)
        });
        let origin = runtime.now();
        let machine = Machine::new(self.config, seed, crate::core::Instant::ZERO);
        let state = Arc::new(Mutex::new((machine.state(), 0)));
        let (tx, rx) = mpsc::unbounded();
        let driver = Driver::new(
            machine,
            runtime.clone(),
            Arc::new(self.connector),
            origin,
            rx,
            state.clone(),
        );
        runtime.spawn(Box::pin(driver));
        Client {
            shared: Arc::new(Shared {
                tx,
                next_key: AtomicU64::new(0),
                state,
            }),
        }
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
        }
    }

    /// A client with `config` on the default runtime.
    pub fn new(config: Config, connector: C) -> Self {
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
        }
    }

    /// A stream of the core's events from now on.
    pub fn events(&self) -> Events {
        let (tx, rx) = mpsc::unbounded();
        let _ = self.shared.tx.unbounded_send(Command::Subscribe { tx });
        Events { rx }
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
    done: bool,
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.rx.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                *this.done = true;
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
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}
