//! What the user supplies: how to connect, run an op, and read an error.

use std::future::Future;

use std::time::Duration;

use crate::core::{ConnectFailure, LossKind, Role};

/// How a failed op (or ping) is to be read. The adapter passes this to the
/// core unchanged; the core decides what happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The server refused the op *for now* and did not run it (loading,
    /// busy, too many connections): the core re-queues it and holds the
    /// connection for `retry_after` (or its backoff), then probes.
    Pushback {
        /// The server's hint of how long to wait, when it gave one.
        retry_after: Option<Duration>,
    },
    /// The connection broke (IO error, closed, reset): the op may have run.
    ConnectionLost,
    /// The server refused because it is not the primary (READONLY, not
    /// primary, read-only transaction): the op did not run.
    WrongServer,
    /// The server answered with an error of its own.
    ServerError,
}

/// Opens connections and runs operations on them.
///
/// Shared (multiplexed) connections are used as they are: several ops run
/// on `&Conn` concurrently. A connection that serves one op at a time puts
/// itself behind a **fair** async mutex inside `Conn` (see the postgres
/// connector): with an unfair one, a caller submitting op after op can
/// keep the connection while the other callers' ops wait for ever.
/// The core sends heartbeats only while no op is in flight, so a ping
/// never waits behind an op on either kind.
///
/// ## Panics
///
/// A panic in any method or future of a connector is caught by the driver
/// and reported to the core as a fact, never decided on by the driver: in
/// [`connect`](Connector::connect) or
/// [`classify_connect`](Connector::classify_connect) as a
/// [`ConnectFailure::Panicked`] attempt (which the core does not retry: a
/// bug that retrying would only repeat; the client gives up and says so);
/// in [`run`](Connector::run),
/// [`ping`](Connector::ping), [`closed`](Connector::closed) or
/// [`classify`](Connector::classify) as a lost connection. The panic
/// message reaches the caller in the error's message.
pub trait Connector: Send + Sync + 'static {
    /// An open connection.
    type Conn: Send + Sync + 'static;
    /// One operation (kept by the client until its outcome: a retried op is
    /// run again from the same value).
    type Op: Send + Sync + 'static;
    /// What a successful op returns.
    type Output: Send + 'static;
    /// The driver's or server's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// How many endpoints (the seed list) this connector can reach; the
    /// client rotates through `0..endpoints()` when it reconnects.
    fn endpoints(&self) -> usize;

    /// Opens a connection to endpoint `endpoint` (an index into the seed
    /// list). The core times the attempt (its connect timeout): a connector
    /// needs no timer of its own.
    fn connect(
        &self,
        endpoint: usize,
    ) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;

    /// Says why a [`connect`](Connector::connect) failed. The core decides
    /// what follows: [`ConnectFailure::Rejected`] (wrong password, unknown
    /// database) is not retried, the others are. The default reads every
    /// error as [`ConnectFailure::Refused`] (retried).
    fn classify_connect(&self, error: &Self::Error) -> ConnectFailure {
        let _ = error;
        ConnectFailure::Refused
    }

    /// Runs one op on `conn`.
    fn run(
        &self,
        conn: &Self::Conn,
        op: &Self::Op,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// Runs one op on `conn` under a time limit: `time_left` is how long
    /// the op may still take, before its deadline or its command timeout
    /// (the core's [`Output::Dispatch`](crate::core::Output::Dispatch)
    /// `time_left`; `None`: no limit). The driver calls this, not
    /// [`run`](Connector::run), for every dispatch.
    ///
    /// The client stops waiting at that time whatever the connector does
    /// (the core fails the op and the driver drops this future); passing
    /// the limit on lets the **server** stop the op too, instead of going
    /// on with work nobody waits for (seed 003: `maxTimeMS`). The default
    /// ignores it and calls [`run`](Connector::run): the limit is then
    /// client-side only. [`PostgresConnector`](crate::postgres::PostgresConnector)
    /// sets `statement_timeout` for the op; the Redis connector documents
    /// its limit as client-side only.
    fn run_within(
        &self,
        conn: &Self::Conn,
        op: &Self::Op,
        time_left: Option<std::time::Duration>,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send {
        let _ = time_left;
        self.run(conn, op)
    }

    /// Says what an error from [`run`](Connector::run) or
    /// [`ping`](Connector::ping) means.
    fn classify(&self, error: &Self::Error) -> Failure;

    /// A heartbeat round trip (used when the config enables heartbeats).
    /// The default answers at once without touching the network.
    fn ping(&self, conn: &Self::Conn) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(()))
    }

    /// The role of the server `conn` reached (primary or secondary), asked
    /// once right after each successful [`connect`](Connector::connect),
    /// before the core hears of the connection; with
    /// [`Config::require_primary`](crate::core::Config::require_primary)
    /// the core refuses a secondary. The default says
    /// [`Role::Unknown`] without touching the network (a panic here reads
    /// as unknown too). The core's connect timeout covers this call.
    fn role(&self, conn: &Self::Conn) -> impl Future<Output = Role> + Send {
        let _ = conn;
        std::future::ready(Role::Unknown)
    }

    /// Resolves when the other side closed `conn`, saying how (the default
    /// never does: the loss is then seen by the next op or heartbeat).
    fn closed(&self, conn: &Self::Conn) -> impl Future<Output = LossKind> + Send {
        let _ = conn;
        std::future::pending()
    }
}
