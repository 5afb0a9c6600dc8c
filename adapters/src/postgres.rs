//! A ready [`Connector`] for `tokio-postgres`.
//!
//! A postgres connection serves one op at a time here: the client sits
//! behind an async mutex, and an op gets `&mut Client`, so it can run a
//! whole transaction (seed 004: retry the transaction, not the statement).
//!
//! Errors are read as: SQLSTATE 25006 (read-only transaction) →
//! [`Failure::WrongServer`]; a closed connection, an IO error, or the
//! server shutting down (57P01/57P02/57P03) → [`Failure::ConnectionLost`];
//! anything else → [`Failure::ServerError`].

use std::fmt;
use std::marker::PhantomData;

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Shared};
use futures::lock::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, Error, NoTls};

use crate::connector::{Connector, Failure};
use crate::core::{ConnectFailure, LossKind};

/// Connects to a seed list of PostgreSQL servers; ops return `T`.
pub struct PostgresConnector<T> {
    configs: Vec<Config>,
    _out: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for PostgresConnector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnector")
            .field("configs", &self.configs)
            .finish()
    }
}

impl<T> PostgresConnector<T> {
    /// One endpoint per connection string
    /// (`host=127.0.0.1 port=5433 user=postgres`).
    pub fn new<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let configs = endpoints
            .into_iter()
            .map(|s| s.as_ref().parse::<Config>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_configs(configs))
    }

    /// One endpoint per config.
    pub fn from_configs(configs: Vec<Config>) -> Self {
        PostgresConnector {
            configs,
            _out: PhantomData,
        }
    }
}

/// Reads a failed connect the way the core needs it: a wrong password, an
/// unknown role or database (SQLSTATE class 28, 3D000) → `rejected` (not
/// retried); a server starting up or full (57P03, 53300) → `unavailable`;
/// anything else (refused, unreachable, reset, IO) → `refused`.
pub fn classify_connect(e: &Error) -> ConnectFailure {
    match e.code() {
        Some(code) if code.code().starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME => {
            ConnectFailure::Rejected
        }
        Some(code)
            if *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::TOO_MANY_CONNECTIONS =>
        {
            ConnectFailure::Unavailable
        }
        _ => ConnectFailure::Refused,
    }
}

type OpFn<T> = dyn for<'a> Fn(&'a mut Client) -> BoxFuture<'a, Result<T, Error>> + Send + Sync;

/// One op: a function run on the connection (again, if retried).
pub struct PgOp<T>(Box<OpFn<T>>);

impl<T> PgOp<T> {
    /// Wraps `f`, e.g. `PgOp::new(|c| Box::pin(async move { … }))`.
    pub fn new<F>(f: F) -> Self
    where
        F: for<'a> Fn(&'a mut Client) -> BoxFuture<'a, Result<T, Error>> + Send + Sync + 'static,
    {
        PgOp(Box::new(f))
    }
}

impl<T> fmt::Debug for PgOp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgOp")
    }
}

/// An open connection: the client and a signal that the connection task ended.
pub struct PgConn {
    client: Mutex<Client>,
    ended: Shared<oneshot::Receiver<()>>,
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgConn")
    }
}

/// Reads a tokio-postgres error the way the core needs it.
pub fn classify(e: &Error) -> Failure {
    if let Some(code) = e.code() {
        if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            return Failure::WrongServer;
        }
        if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            return Failure::ConnectionLost;
        }
        return Failure::ServerError;
    }
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        Failure::ConnectionLost
    } else {
        Failure::ServerError
    }
}

impl<T: Send + 'static> Connector for PostgresConnector<T> {
    type Conn = PgConn;
    type Op = PgOp<T>;
    type Output = T;
    type Error = Error;

    fn endpoints(&self) -> usize {
        self.configs.len()
    }

    fn classify_connect(&self, error: &Error) -> ConnectFailure {
        classify_connect(error)
    }

    async fn connect(&self, endpoint: usize) -> Result<PgConn, Error> {
        let config = self.configs.get(endpoint).cloned().unwrap_or_default();
        let (client, connection) = config.connect(NoTls).await?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = connection.await;
            let _ = tx.send(());
        });
        Ok(PgConn {
            client: Mutex::new(client),
            ended: rx.shared(),
        })
    }

    async fn run(&self, conn: &PgConn, op: &PgOp<T>) -> Result<T, Error> {
        let mut client = conn.client.lock().await;
        (op.0)(&mut client).await
    }

    fn classify(&self, error: &Error) -> Failure {
        classify(error)
    }

    async fn ping(&self, conn: &PgConn) -> Result<(), Error> {
        conn.client.lock().await.simple_query("").await.map(drop)
    }

    async fn closed(&self, conn: &PgConn) -> LossKind {
        let _ = conn.ended.clone().await;
        LossKind::Closed
    }
}
