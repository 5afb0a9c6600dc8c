//! Events the machine emits for the application (the mongoose connection events).

use core::fmt;
use core::time::Duration;

use crate::machine::ConnId;

/// How the caller saw a connection end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum LossKind {
    /// A clean close by the server (e.g. PostgreSQL's terminate message, a FIN).
    Closed,
    /// A socket-level reset.
    Reset,
    /// A socket send/receive timeout seen by the caller.
    TimedOut,
}

/// Why a connect attempt failed: the driver's reading of the connector's
/// error, fed to [`Machine::handle_connect_failed`](crate::Machine::handle_connect_failed).
/// The machine decides what each means (whether to try again) and carries
/// the last one into [`Event::Reconnecting`], [`Event::ReconnectFailed`],
/// [`Machine::last_connect_error`](crate::Machine::last_connect_error) and
/// the error of ops failed by the give-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum ConnectFailure {
    /// Nothing accepted the connection (refused, unreachable, reset during
    /// the handshake). Retried, within the reconnect budget.
    Refused,
    /// The attempt did not finish in time (the machine's own connect
    /// timeout, or one the connector applied). Retried.
    TimedOut,
    /// The server answered that it cannot serve now (starting up, loading,
    /// too many connections). Retried.
    Unavailable,
    /// The server refused this client for a reason that retrying cannot
    /// fix (authentication, unknown database, permissions, a protocol or
    /// TLS mismatch). Not retried: the machine gives up at once
    /// (`reconnect_failed`), whatever the reconnect budget, so the reason
    /// reaches the application instead of being retried for ever.
    Rejected,
    /// The connector itself failed (it panicked while connecting or while
    /// reading its error): a bug that retrying would only repeat. Not
    /// retried, as [`Rejected`](Self::Rejected).
    Panicked,
    /// The connection came up, but the connector found a secondary
    /// (replica, standby) while the configuration requires the primary
    /// ([`Config::require_primary`](crate::Config::require_primary)): the
    /// machine closes it before anything is dispatched or announced, and
    /// tries the next endpoint. Retried.
    NotPrimary,
}

/// The role a connector found on the server it connected to, reported
/// with [`Machine::handle_connected_as`](crate::Machine::handle_connected_as).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The primary (master, read-write).
    Primary,
    /// A secondary (replica, standby, read-only).
    Secondary,
    /// Not checked, or the server would not say.
    Unknown,
}

impl Role {
    /// Stable snake_case name (`primary`, `secondary`, `unknown`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ConnectFailure {
    /// Every kind, in declaration order.
    pub const ALL: &'static [ConnectFailure] = &[
        ConnectFailure::Refused,
        ConnectFailure::TimedOut,
        ConnectFailure::Unavailable,
        ConnectFailure::Rejected,
        ConnectFailure::Panicked,
        ConnectFailure::NotPrimary,
    ];

    /// Stable snake_case name (`refused`, `timed_out`, `unavailable`,
    /// `rejected`, `panicked`, `not_primary`).
    pub fn name(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::TimedOut => "timed_out",
            ConnectFailure::Unavailable => "unavailable",
            ConnectFailure::Rejected => "rejected",
            ConnectFailure::Panicked => "panicked",
            ConnectFailure::NotPrimary => "not_primary",
        }
    }

    /// Whether the machine tries again after this failure (budget allowing).
    pub fn is_retried(self) -> bool {
        !matches!(self, ConnectFailure::Rejected | ConnectFailure::Panicked)
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the current connection ended, as reported in [`Event::Disconnected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
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
        /// Why the previous attempt failed; `None` when this is the first
        /// attempt after a lost connection.
        error: Option<ConnectFailure>,
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
        /// Why the last attempt failed (`Rejected`: the machine gave up at
        /// once, not because the budget was spent).
        error: Option<ConnectFailure>,
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
                error,
            } => {
                write!(
                    f,
                    "reconnecting (attempt {attempt} to endpoint {endpoint} in {} ms",
                    delay.as_millis()
                )?;
                match error {
                    Some(e) => write!(f, ", last attempt {e})"),
                    None => f.write_str(")"),
                }
            }
            Event::Reconnected { conn, endpoint } => {
                write!(f, "reconnected ({conn} to endpoint {endpoint})")
            }
            Event::ReconnectFailed { attempts, error } => {
                write!(f, "reconnect failed after {attempts} attempts")?;
                match error {
                    Some(e) => write!(f, " (last attempt {e})"),
                    None => Ok(()),
                }
            }
            Event::Closed => f.write_str("closed"),
            Event::BufferOverflow { failed } => {
                write!(f, "buffer overflow ({failed} ops failed)")
            }
            Event::Unresponsive { conn } => write!(f, "unresponsive ({conn})"),
        }
    }
}
