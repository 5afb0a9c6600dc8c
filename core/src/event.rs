//! Events the machine emits for the application (the mongoose connection events).

use core::fmt;
use core::time::Duration;

use crate::machine::ConnId;

/// How the caller saw a connection end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum LossKind {
    /// A clean close by the server (e.g. PostgreSQL's terminate message, a FIN).
    Closed,
    /// A socket-level reset.
    Reset,
    /// A socket send/receive timeout seen by the caller.
    TimedOut,
}

/// Why the current connection ended, as reported in [`Event::Disconnected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The caller reported a loss of this kind.
    Lost(LossKind),
    /// The machine closed an idle connection (`socket_timeout`).
    Idle,
    /// The machine declared the connection dead: no heartbeat answer, or an
    /// op in flight longer than `response_timeout`.
    Unresponsive,
    /// The server answered "wrong server" (not primary / READONLY).
    WrongServer,
}

impl DisconnectReason {
    /// Stable snake_case name (`closed`, `reset`, `timed_out`, `idle`,
    /// `unresponsive`, `wrong_server`).
    pub fn name(self) -> &'static str {
        match self {
            DisconnectReason::Lost(LossKind::Closed) => "closed",
            DisconnectReason::Lost(LossKind::Reset) => "reset",
            DisconnectReason::Lost(LossKind::TimedOut) => "timed_out",
            DisconnectReason::Idle => "idle",
            DisconnectReason::Unresponsive => "unresponsive",
            DisconnectReason::WrongServer => "wrong_server",
        }
    }
}

/// Something the application may want to know about (logs, metrics, alerts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The first connection is up.
    Connected {
        /// The connection.
        conn: ConnId,
        /// Endpoint index.
        endpoint: usize,
    },
    /// The current connection ended.
    Disconnected {
        /// The connection that ended.
        conn: ConnId,
        /// Its endpoint.
        endpoint: usize,
        /// Why.
        reason: DisconnectReason,
    },
    /// A reconnect attempt is scheduled after `delay`.
    Reconnecting {
        /// 1-based attempt number since the loss.
        attempt: u32,
        /// Delay before the attempt starts (jitter applied).
        delay: Duration,
        /// Endpoint the attempt will go to.
        endpoint: usize,
    },
    /// A connection is up again after a loss.
    Reconnected {
        /// The new connection.
        conn: ConnId,
        /// Endpoint index.
        endpoint: usize,
    },
    /// The reconnect budget is spent: terminal; emitted once.
    ReconnectFailed {
        /// Attempts made.
        attempts: u32,
    },
    /// The client was closed by the application: terminal; emitted once.
    Closed,
    /// The buffer overflowed; `failed` ops were errored out.
    BufferOverflow {
        /// How many ops failed with `buffer_overflow` because of this overflow.
        failed: usize,
    },
    /// The connection did not answer in time (heartbeat or response timeout)
    /// and is being dropped.
    Unresponsive {
        /// The silent connection.
        conn: ConnId,
    },
}

impl Event {
    /// Stable snake_case name (`connected`, `disconnected`, `reconnecting`,
    /// `reconnected`, `reconnect_failed`, `closed`, `buffer_overflow`, `unresponsive`).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Connected { .. } => "connected",
            Event::Disconnected { .. } => "disconnected",
            Event::Reconnecting { .. } => "reconnecting",
            Event::Reconnected { .. } => "reconnected",
            Event::ReconnectFailed { .. } => "reconnect_failed",
            Event::Closed => "closed",
            Event::BufferOverflow { .. } => "buffer_overflow",
            Event::Unresponsive { .. } => "unresponsive",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Connected { conn, endpoint } => {
                write!(f, "connected ({conn} to endpoint {endpoint})")
            }
            Event::Disconnected {
                conn,
                endpoint,
                reason,
            } => write!(
                f,
                "disconnected ({conn} to endpoint {endpoint}: {})",
                reason.name()
            ),
            Event::Reconnecting {
                attempt,
                delay,
                endpoint,
            } => write!(
                f,
                "reconnecting (attempt {attempt} to endpoint {endpoint} in {} ms)",
                delay.as_millis()
            ),
            Event::Reconnected { conn, endpoint } => {
                write!(f, "reconnected ({conn} to endpoint {endpoint})")
            }
            Event::ReconnectFailed { attempts } => {
                write!(f, "reconnect failed after {attempts} attempts")
            }
            Event::Closed => f.write_str("closed"),
            Event::BufferOverflow { failed } => {
                write!(f, "buffer overflow ({failed} ops failed)")
            }
            Event::Unresponsive { conn } => write!(f, "unresponsive ({conn})"),
        }
    }
}
