//! The machine's public vocabulary: connection ids, states, timer kinds
//! and the outputs a driver carries out.

use core::fmt;
use core::time::Duration;

#[cfg(doc)]
use super::Machine;
use crate::event::{ConnectFailure, Event};
use crate::op::{Completion, OpId};

/// Identifies a connect attempt and, once it succeeds, the connection it
/// became. Ids grow from 1 and are never reused; inputs naming an id that is
/// not the current attempt or connection are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
    /// Builds an id from its number (for tests and replays).
    pub fn from_raw(n: u64) -> Self {
        ConnId(n)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Where the machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum State {
    /// A connect attempt is under way.
    Connecting,
    /// A connection is up; ops are dispatched on it.
    Connected,
    /// A connection is up but answered "wrong server": nothing more is
    /// dispatched on it; the ops already in flight there finish (refused
    /// ones are re-queued), then it is closed and the next endpoint tried.
    /// New ops wait in the buffer.
    Draining,
    /// A connection is up but the server pushed back ("not now"): dispatches
    /// are held for the wait, then one probe at a time goes out until the
    /// server answers. New ops wait in the buffer.
    Paused,
    /// Waiting before the next reconnect attempt.
    Backoff,
    /// Lost with auto-reconnect off: no connect will ever be started again
    /// (ops buffer or fail according to the buffer policy).
    Down,
    /// Terminal: the reconnect budget is spent ("topology was destroyed").
    Failed,
    /// Terminal: closed by the application.
    Closed,
}

impl State {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Draining => "draining",
            State::Paused => "paused",
            State::Backoff => "backoff",
            State::Down => "down",
            State::Failed => "failed",
            State::Closed => "closed",
        }
    }

    /// `Failed` or `Closed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Failed | State::Closed)
    }
}

/// Why the machine gave up reconnecting ([`Machine::gave_up`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GaveUp {
    /// Reconnect attempts made since the loss (or since the start).
    pub attempts: u32,
    /// Time from the loss (or the start) to the give-up.
    pub since_loss: Duration,
    /// Why the last connect attempt failed, when one did.
    pub error: Option<ConnectFailure>,
}

/// A snapshot of the machine's counters and gauges ([`Machine::stats`]):
/// what it holds now and what it has done since it was built. Every
/// counter only grows; none is reset by a reconnect or a revive.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The current state.
    pub state: State,
    /// Ops waiting in the buffer now ([`Machine::buffered`]).
    pub buffered: usize,
    /// Ops dispatched and not yet answered now ([`Machine::in_flight`]).
    pub in_flight: usize,
    /// Connect attempts started (each [`Output::Connect`]), the first one
    /// included.
    pub connect_attempts: u64,
    /// Connect attempts that became the connection: one per connection
    /// the machine announced ([`Event::Connected`] for the first,
    /// [`Event::Reconnected`] after; a reconnect announced with both under
    /// `connected_on_reconnect` counts once). A secondary refused under
    /// `require_primary` is not one.
    pub connects: u64,
    /// The connects after the first (each [`Event::Reconnected`]).
    pub reconnects: u64,
    /// Dispatches of an op that had been dispatched before: each
    /// [`Output::Dispatch`] after the op's first (after a lost connection,
    /// a wrong server or a pushback put it back in line).
    pub retries: u64,
    /// Ops put back into the buffer after a dispatch that gave no outcome
    /// (lost connection, wrong server, pushback), rather than failed.
    pub requeues: u64,
    /// Retry budget tokens left (whole tokens), if a budget is configured
    /// ([`Machine::retry_tokens`]).
    pub retry_tokens: Option<u64>,
    /// Time spent without a connection: the sum of the intervals spent in
    /// `Connecting`, `Backoff`, `Down` and `Failed` (not `Closed`), up to
    /// the `now` given to [`Machine::stats`].
    pub disconnected: Duration,
    /// Why the last connect attempt failed, until one succeeds
    /// ([`Machine::last_connect_error`]).
    pub last_connect_error: Option<ConnectFailure>,
}

/// Which timer [`Machine::poll_timeout`] is reporting (so "why did we wake
/// up?" has an answer). Timers due at the same instant fire in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// A connect attempt's timeout.
    ConnectTimeout,
    /// The end of a backoff delay: the next reconnect attempt starts.
    Reconnect,
    /// Time to send a heartbeat.
    HeartbeatSend,
    /// A heartbeat went unanswered.
    HeartbeatTimeout,
    /// The connection has been idle for `socket_timeout`.
    Idle,
    /// The oldest op in flight has waited `response_timeout`.
    Response,
    /// The oldest buffered op has waited `buffer_timeout`.
    BufferWait,
    /// An op's deadline.
    Deadline,
    /// The end of a pushback wait: the next probe goes out.
    Probe,
    /// An op in flight has waited its command timeout.
    Command,
}

/// What the machine asks its driver to do, or tells the application.
///
/// Deliberately *not* `#[non_exhaustive]`: a driver must carry out every
/// output, so a new one is a breaking change that should fail to compile
/// in every driver, not be skipped by a wildcard arm.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<P> {
    /// Open a connection to endpoint `endpoint`; report the result with
    /// [`Machine::handle_connected`] or [`Machine::handle_connect_failed`].
    /// The machine also times the attempt out itself after `timeout`.
    Connect {
        /// Id of the attempt (and of the connection if it succeeds).
        conn: ConnId,
        /// Index into the seed list.
        endpoint: usize,
        /// The connect timeout, if any.
        timeout: Option<Duration>,
    },
    /// Close this connection or abandon this attempt; nothing more is
    /// expected about it. Emitted for every attempt and connection the
    /// machine forgets, whatever the reason (also after the driver reported
    /// it failed or lost): a driver frees a connection's resources when, and
    /// only when, a `Close` names it.
    Close {
        /// The connection or attempt.
        conn: ConnId,
    },
    /// Send op `op` (its payload: [`Machine::payload`]) on `conn`; report
    /// the answer with [`Machine::handle_op_result`].
    Dispatch {
        /// The op.
        op: OpId,
        /// The current connection.
        conn: ConnId,
        /// Its endpoint.
        endpoint: usize,
        /// How long the op may still take on the server: the time left
        /// before its deadline or its command timeout, whichever is
        /// sooner (`None`: neither). A driver passes it on so the server
        /// can stop the op when the client stops waiting (PostgreSQL
        /// `statement_timeout`, MySQL `max_statement_time`, MongoDB
        /// `maxTimeMS`); the machine fails the op at that time anyway.
        time_left: Option<Duration>,
    },
    /// Send a heartbeat on `conn`; report the answer (or the error, read
    /// like an op's) with [`Machine::handle_heartbeat`]. Heartbeats are sent
    /// only while no op is in flight on the connection: on the ordered
    /// protocols redial drives (Redis, PostgreSQL, MySQL) a ping queued
    /// behind an op would time the op, not the link.
    Heartbeat {
        /// The current connection.
        conn: ConnId,
    },
    /// The op's one and only outcome, with its payload handed back.
    Complete(Completion<P>),
    /// Something happened.
    Event(Event),
}
