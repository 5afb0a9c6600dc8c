//! What the user supplies: how to connect, run an op, and read an error.

use std::future::Future;

/// How a failed op (or ping) is to be read. The adapter passes this to the
/// core unchanged; the core decides what happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
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
/// itself behind an async mutex inside `Conn` (see the postgres connector).
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

    /// Opens a connection to endpoint `endpoint` (an index into the seed
    /// list the connector was built with). The adapter applies the connect
    /// timeout the core asked for.
    fn connect(
        &self,
        endpoint: usize,
    ) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;

    /// Runs one op on `conn`.
    fn run(
        &self,
        conn: &Self::Conn,
        op: &Self::Op,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// Says what an error from [`run`](Connector::run) or
    /// [`ping`](Connector::ping) means.
    fn classify(&self, error: &Self::Error) -> Failure;

    /// A heartbeat round trip (used when the config enables heartbeats).
    /// The default answers at once without touching the network.
    fn ping(&self, conn: &Self::Conn) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(()))
    }

    /// Resolves when the other side closed `conn` (the default never does:
    /// the loss is then seen by the next op or heartbeat).
    fn closed(&self, conn: &Self::Conn) -> impl Future<Output = ()> + Send {
        let _ = conn;
        std::future::pending()
    }
}
