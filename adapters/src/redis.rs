//! A ready [`Connector`] for the `redis` crate's multiplexed async
//! connection (tokio).
//!
//! Errors are read as: `READONLY` → [`Failure::WrongServer`]; IO errors,
//! dropped or refused connections and timeouts → [`Failure::ConnectionLost`];
//! anything else → [`Failure::ServerError`].
//!
//! **Seeing a close at once.** With RESP3 (`redis://host:port/?protocol=resp3`,
//! redis ≥ 6) the crate reports a closed connection the moment it reads the
//! end of the stream, and [`Connector::closed`] passes that on: the core
//! learns of the loss without waiting for an op to fail on the dead socket,
//! so an op submitted just after a server crash is buffered instead of
//! being sent and failing "may have run". With RESP2 (the default) the
//! crate has no such signal and the loss is seen by the next op or
//! heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisError, RedisResult, Value,
};
use tokio::sync::Notify;

use crate::connector::{Connector, Failure};
use crate::core::{ConnectFailure, LossKind};

/// Connects to a seed list of redis servers (endpoint `i` is the `i`-th).
#[derive(Debug, Clone)]
pub struct RedisConnector {
    clients: Vec<redis::Client>,
}

impl RedisConnector {
    /// One endpoint per address (`redis://host:port`).
    pub fn new<T: IntoConnectionInfo>(endpoints: impl IntoIterator<Item = T>) -> RedisResult<Self> {
        let clients = endpoints
            .into_iter()
            .map(redis::Client::open)
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(RedisConnector { clients })
    }
}

/// Reads a failed connect the way the core needs it: a wrong password or
/// missing permission, or a bad client config → `rejected` (not retried);
/// a server still loading its data set, or asking to try again →
/// `unavailable`; a timeout → `timed_out`; anything else (refused,
/// unreachable, reset) → `refused`.
pub fn classify_connect(e: &RedisError) -> ConnectFailure {
    let code = e.code().unwrap_or("");
    if matches!(
        e.kind(),
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
    ) || matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
    {
        ConnectFailure::Rejected
    } else if matches!(
        e.kind(),
        redis::ErrorKind::BusyLoadingError
            | redis::ErrorKind::TryAgain
            | redis::ErrorKind::MasterDown
    ) {
        ConnectFailure::Unavailable
    } else if e.is_timeout() {
        ConnectFailure::TimedOut
    } else {
        ConnectFailure::Refused
    }
}

/// Reads a redis error the way the core needs it.
pub fn classify(e: &RedisError) -> Failure {
    if e.kind() == redis::ErrorKind::ReadOnly {
        Failure::WrongServer
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        Failure::ConnectionLost
    } else {
        Failure::ServerError
    }
}

/// An open connection: the crate's multiplexed connection and, on RESP3,
/// the signal the crate raises when it sees the connection close.
#[derive(Clone)]
pub struct RedisConn {
    conn: MultiplexedConnection,
    closed: Option<Arc<Closed>>,
}

impl RedisConn {
    /// The underlying multiplexed connection.
    pub fn connection(&self) -> &MultiplexedConnection {
        &self.conn
    }
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("watches_close", &self.closed.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Closed {
    seen: AtomicBool,
    notify: Notify,
}

impl Connector for RedisConnector {
    type Conn = RedisConn;
    type Op = Cmd;
    type Output = Value;
    type Error = RedisError;

    fn endpoints(&self) -> usize {
        self.clients.len()
    }

    fn classify_connect(&self, error: &RedisError) -> ConnectFailure {
        classify_connect(error)
    }

    async fn connect(&self, endpoint: usize) -> Result<RedisConn, RedisError> {
        let client = self.clients.get(endpoint).ok_or_else(|| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "no such endpoint"))
        })?;
        // No response timeout of the crate's own: the core times responses.
        if client.get_connection_info().redis.protocol != ProtocolVersion::RESP3 {
            let conn = client.get_multiplexed_async_connection().await?;
            return Ok(RedisConn { conn, closed: None });
        }
        let closed = Arc::new(Closed::default());
        let signal = closed.clone();
        let config = AsyncConnectionConfig::new().set_push_sender(move |info: PushInfo| {
            if info.kind == PushKind::Disconnection {
                signal.seen.store(true, Ordering::Release);
                signal.notify.notify_waiters();
            }
            Ok::<(), std::convert::Infallible>(())
        });
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(RedisConn {
            conn,
            closed: Some(closed),
        })
    }

    async fn run(&self, conn: &RedisConn, op: &Cmd) -> Result<Value, RedisError> {
        let mut conn = conn.conn.clone();
        op.query_async(&mut conn).await
    }

    fn classify(&self, error: &RedisError) -> Failure {
        classify(error)
    }

    async fn ping(&self, conn: &RedisConn) -> Result<(), RedisError> {
        let mut conn = conn.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    async fn closed(&self, conn: &RedisConn) -> LossKind {
        let Some(closed) = &conn.closed else {
            return std::future::pending().await;
        };
        let mut notified = std::pin::pin!(closed.notify.notified());
        // Registered before the check, so a close in between is not missed.
        notified.as_mut().enable();
        if !closed.seen.load(Ordering::Acquire) {
            notified.await;
        }
        LossKind::Closed
    }
}
