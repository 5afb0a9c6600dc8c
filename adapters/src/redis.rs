//! A ready [`Connector`] for the `redis` crate's multiplexed async
//! connection (tokio).
//!
//! Errors are read as: `READONLY` → [`Failure::WrongServer`]; IO errors,
//! dropped or refused connections and timeouts → [`Failure::ConnectionLost`];
//! anything else → [`Failure::ServerError`].

use redis::aio::MultiplexedConnection;
use redis::{Cmd, IntoConnectionInfo, RedisError, RedisResult, Value};

use crate::connector::{Connector, Failure};

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

    /// How many endpoints (give this to `ConfigBuilder::endpoints`).
    pub fn endpoints(&self) -> usize {
        self.clients.len()
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

impl Connector for RedisConnector {
    type Conn = MultiplexedConnection;
    type Op = Cmd;
    type Output = Value;
    type Error = RedisError;

    async fn connect(&self, endpoint: usize) -> Result<MultiplexedConnection, RedisError> {
        let client = self.clients.get(endpoint).ok_or_else(|| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "no such endpoint"))
        })?;
        // No response timeout of the crate's own: the core times responses.
        client.get_multiplexed_async_connection().await
    }

    async fn run(&self, conn: &MultiplexedConnection, op: &Cmd) -> Result<Value, RedisError> {
        let mut conn = conn.clone();
        op.query_async(&mut conn).await
    }

    fn classify(&self, error: &RedisError) -> Failure {
        classify(error)
    }

    async fn ping(&self, conn: &MultiplexedConnection) -> Result<(), RedisError> {
        let mut conn = conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }
}
