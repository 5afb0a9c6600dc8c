//! Operations: ids, per-op options, what the caller reports about them, and
//! the single outcome each one gets.

use core::fmt;
use core::time::Duration;

use crate::config::Backoff;
use crate::event::ConnectFailure;
use crate::machine::ConnId;

/// Identifies a submitted operation. Unique for the life of a machine (a slab
/// index and a generation packed together): never reused, but not ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub(crate) u64);

impl OpId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
    /// Builds an id from its number (for tests and fuzzing; the machine
    /// ignores ids it did not issue or that are finished).
    pub fn from_raw(n: u64) -> Self {
        OpId(n)
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// Per-operation options given at submission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpOptions {
    /// May this op be sent again after it was lost in flight? Only say yes
    /// for idempotent ops (or whole transactions, seed 004): a lost op may
    /// have run, and sending it again may make it run twice. `None`: the
    /// config's [`retry_lost`](crate::ConfigBuilder::retry_lost) decides
    /// (off in redial's own presets; on in the presets of peers that
    /// resend blindly).
    pub retryable: Option<bool>,
    /// Give up on the op this long after submission, wherever it is
    /// (`None`: the config's `op_deadline`).
    pub deadline: Option<Duration>,
    /// Attempts for this op if retryable (`None`: the config's `max_op_attempts`).
    pub max_attempts: Option<u32>,
    /// Give up on each dispatch of the op this long after it was sent,
    /// keeping the connection (`None`: the config's `command_timeout`). The
    /// op fails with [`ErrorKind::CommandTimeout`], may have run, and is not
    /// retried.
    pub command_timeout: Option<Duration>,
}

impl OpOptions {
    /// An op with the config's defaults (deadline, attempts, command
    /// timeout, and whether it is resent after a loss in flight).
    pub fn new() -> Self {
        Self::default()
    }
    /// Marks the op retryable (or not), whatever the config's
    /// [`retry_lost`](crate::ConfigBuilder::retry_lost) says.
    pub fn retryable(mut self, yes: bool) -> Self {
        self.retryable = Some(yes);
        self
    }
    /// Whether this op is sent again after a loss in flight under `config`:
    /// its own choice, or else the config's
    /// [`retry_lost`](crate::ConfigBuilder::retry_lost).
    pub fn is_retryable(&self, config: &crate::Config) -> bool {
        self.retryable.unwrap_or(config.retry_lost())
    }
    /// Sets a deadline relative to submission.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }
    /// Sets the attempt limit for this (retryable) op.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    /// Sets the command timeout of each dispatch (see
    /// [`OpOptions::command_timeout`]).
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.command_timeout = Some(d);
        self
    }
}

/// What the caller observed when a dispatched op finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum OpResult {
    /// The server answered with success.
    Ok,
    /// The server answered with an error of its own (final; not retried).
    ServerError,
    /// The connection broke while the op was in flight: the op may have run.
    /// The machine treats the whole connection as lost.
    ConnectionLost,
    /// The server refused the op because it is not the primary (READONLY,
    /// "not primary"): the op certainly did not run. The machine re-queues
    /// it, dispatches nothing more on that connection, lets the ops already
    /// in flight there finish (refused ones are re-queued in order too),
    /// then closes it and tries the next endpoint.
    WrongServer,
    /// The server refused the op *for now* and did not run it: it is
    /// loading its data set, busy, or out of connections (Redis `LOADING`,
    /// `BUSY`, `TRYAGAIN`, `MASTERDOWN`; PostgreSQL 57P03, 53300). The
    /// machine re-queues the op at the front (safe for every op: it did
    /// not run), holds dispatches on that connection for `retry_after` (or
    /// the configured backoff), then sends one probe at a time until the
    /// server answers; probes are charged to the retry budget.
    Pushback {
        /// The server's hint of how long to wait, when it gave one.
        retry_after: Option<Duration>,
    },
}

/// The stable kinds of failure. [`ErrorKind::name`] gives the snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not connected and buffering is off (seed 002: "no connection available for operation").
    NoConnection,
    /// The bounded buffer overflowed.
    BufferOverflow,
    /// The op waited in the buffer longer than `buffer_timeout`.
    BufferTimeout,
    /// The reconnect budget ran out while the op was buffered (seed 002).
    ReconnectFailed,
    /// Submitted after the reconnect budget ran out (seed 002: "Topology was destroyed").
    TopologyDestroyed,
    /// The connection broke while the op was in flight, and it was not retried.
    ConnectionLost,
    /// The op's deadline passed.
    DeadlineExceeded,
    /// A retry was refused by the retry budget.
    RetryBudgetExhausted,
    /// The client was closed.
    Closed,
    /// The server answered with an error.
    ServerError,
    /// The caller cancelled the op.
    Cancelled,
    /// The server kept pushing back ([`OpResult::Pushback`]) and the retry
    /// budget allowed no further probe: the op did not run there.
    ServerBusy,
    /// The op's deadline comes before the client can send it: the next
    /// reconnect attempt (or the end of a pushback wait) is at or after
    /// it. Failed at once instead of waiting for the deadline; the op did
    /// not run.
    DeadlineUnreachable,
    /// The op was in flight longer than its command timeout
    /// ([`OpOptions::command_timeout`], `command_timeout` in the config):
    /// it failed, may have run, and the connection stays.
    CommandTimeout,
    /// The op was buffered while `fail_buffered_after` reconnect attempts
    /// failed (ioredis's `MaxRetriesPerRequestError`); see
    /// [`ConfigBuilder::fail_buffered_after`](crate::ConfigBuilder::fail_buffered_after).
    ReconnectAttemptsExceeded,
}

impl ErrorKind {
    /// Every kind, in a stable order.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::NoConnection,
        ErrorKind::BufferOverflow,
        ErrorKind::BufferTimeout,
        ErrorKind::ReconnectFailed,
        ErrorKind::TopologyDestroyed,
        ErrorKind::ConnectionLost,
        ErrorKind::DeadlineExceeded,
        ErrorKind::RetryBudgetExhausted,
        ErrorKind::Closed,
        ErrorKind::ServerError,
        ErrorKind::Cancelled,
        ErrorKind::ServerBusy,
        ErrorKind::DeadlineUnreachable,
        ErrorKind::CommandTimeout,
        ErrorKind::ReconnectAttemptsExceeded,
    ];

    /// The stable snake_case name (`no_connection`, `buffer_overflow`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NoConnection => "no_connection",
            ErrorKind::BufferOverflow => "buffer_overflow",
            ErrorKind::BufferTimeout => "buffer_timeout",
            ErrorKind::ReconnectFailed => "reconnect_failed",
            ErrorKind::TopologyDestroyed => "topology_destroyed",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::RetryBudgetExhausted => "retry_budget_exhausted",
            ErrorKind::Closed => "closed",
            ErrorKind::ServerError => "server_error",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::ServerBusy => "server_busy",
            ErrorKind::DeadlineUnreachable => "deadline_unreachable",
            ErrorKind::CommandTimeout => "command_timeout",
            ErrorKind::ReconnectAttemptsExceeded => "reconnect_attempts_exceeded",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an op failed, and whether it may have run on the server.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpError {
    pub(crate) kind: ErrorKind,
    pub(crate) maybe_executed: bool,
    pub(crate) attempts: u32,
    pub(crate) runs: u32,
    /// For `reconnect_failed`: attempts made, the backoff, whether the
    /// client had never connected (initial connect failed), and why the
    /// last attempt failed.
    pub(crate) reconnect: Option<(u32, Backoff, bool, Option<ConnectFailure>)>,
}

impl OpError {
    /// An error built by hand — for test doubles and oracles that feed
    /// made-up outcomes; the machine builds its own. Its
    /// [`runs`](Self::runs) is 1 if it may have run, else 0.
    pub fn new(kind: ErrorKind, maybe_executed: bool, attempts: u32) -> Self {
        OpError {
            kind,
            maybe_executed,
            attempts,
            runs: u32::from(maybe_executed),
            reconnect: None,
        }
    }

    /// The dispatches the server did not refuse: each may have run. Two or
    /// more: the op was sent again after a loss in flight (a retryable op,
    /// or [`retry_lost`](crate::ConfigBuilder::retry_lost)) and **may have
    /// run twice**.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// `false` only when it is certain the op did not run on the server
    /// (never dispatched, or answered "wrong server"). `true` when it was
    /// dispatched and its fate is unknown (lost, timed out, cancelled in
    /// flight) or the server answered with an error.
    pub fn maybe_executed(&self) -> bool {
        self.maybe_executed
    }

    /// How many times the op was dispatched (wrong-server answers included).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// For `reconnect_failed` and `topology_destroyed`: why the last connect
    /// attempt failed, when one did.
    pub fn connect_error(&self) -> Option<ConnectFailure> {
        self.reconnect.and_then(|r| r.3)
    }
}

impl fmt::Display for OpError {
    /// The human message (`failed to reconnect after 2 attempts with interval 100 ms`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::NoConnection => f.write_str("no connection available for operation"),
            ErrorKind::BufferOverflow => f.write_str("operation buffer overflowed"),
            ErrorKind::BufferTimeout => {
                f.write_str("operation timed out while buffered waiting for a connection")
            }
            ErrorKind::ReconnectFailed => match self.reconnect {
                Some((_, _, _, Some(ConnectFailure::Rejected))) => {
                    f.write_str("failed to connect: the connection was rejected (not retried)")
                }
                Some((_, _, _, Some(ConnectFailure::NotPrimary))) => {
                    f.write_str(
                        "failed to connect: no primary found (every server reached was a secondary)",
                    )
                }
                Some((_, _, _, Some(ConnectFailure::Panicked))) => {
                    f.write_str("failed to connect: the connector panicked (not retried)")
                }
                Some((_, _, true, _)) => {
                    f.write_str("failed to connect: the initial connection attempt failed")
                }
                Some((n, Backoff::Constant(d), false, _)) => write!(
                    f,
                    "failed to reconnect after {n} attempts with interval {} ms",
                    d.as_millis()
                ),
                Some((n, b, false, _)) => write!(
                    f,
                    "failed to reconnect after {n} attempts with backoff from {} ms up to {} ms",
                    b.base().as_millis(),
                    b.cap().as_millis()
                ),
                None => f.write_str("failed to reconnect"),
            },
            ErrorKind::TopologyDestroyed => f.write_str("topology was destroyed"),
            ErrorKind::ConnectionLost => {
                f.write_str("connection lost while the operation was in flight")
            }
            ErrorKind::DeadlineExceeded => f.write_str("operation deadline exceeded"),
            ErrorKind::RetryBudgetExhausted => {
                f.write_str("connection lost and the retry budget is exhausted")
            }
            ErrorKind::Closed => f.write_str("client closed"),
            ErrorKind::ServerError => f.write_str("server returned an error"),
            ErrorKind::Cancelled => f.write_str("operation cancelled"),
            ErrorKind::ServerBusy => f.write_str(
                "the server refused the operation for now and the retry budget allows no more tries; it did not run",
            ),
            ErrorKind::DeadlineUnreachable => f.write_str(
                "operation deadline cannot be met: the next connection attempt comes after it (failed at once; it did not run)",
            ),
            ErrorKind::CommandTimeout => f.write_str(
                "operation timed out waiting for its answer (command timeout; the connection is kept)",
            ),
            ErrorKind::ReconnectAttemptsExceeded => match self.reconnect {
                Some((tries, ..)) => write!(
                    f,
                    "operation failed while waiting for a connection: reconnect attempt {tries} \
                     reached the per-op limit (reconnecting goes on)"
                ),
                None => f.write_str(
                    "operation failed while waiting for a connection: the per-op limit of \
                     reconnect attempts was reached (reconnecting goes on)",
                ),
            },
        }
    }
}

impl core::error::Error for OpError {}

/// A successful op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    /// The connection that answered.
    pub conn: ConnId,
    /// The endpoint (index into the seed list) that answered.
    pub endpoint: usize,
    /// How many times the op was dispatched (1 unless retried or redirected).
    pub attempts: u32,
    /// Of those, the dispatches the server did not refuse: each may have
    /// run. Two or more: the op was sent again after a loss in flight (a
    /// retryable op, or [`retry_lost`](crate::ConfigBuilder::retry_lost))
    /// and **may have run twice**.
    pub runs: u32,
}

/// The one outcome of an op, handing its payload back to the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion<P> {
    /// Which op.
    pub id: OpId,
    /// The payload given to [`Machine::submit`](crate::Machine::submit), returned.
    pub payload: P,
    /// Success or why not.
    pub result: Result<Done, OpError>,
}
