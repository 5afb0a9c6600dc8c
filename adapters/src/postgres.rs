//! A ready [`Connector`] for `tokio-postgres`.
//!
//! A postgres connection serves one op at a time here: the client sits
//! behind a fair (first come, first served) async mutex, so a caller that
//! submits op after op cannot starve the others, and an op gets `&mut Client`, so it can run a
//! whole transaction (seed 004: retry the transaction, not the statement).
//!
//! Errors are read as (see [`classify`]): SQLSTATE 25006 (read-only
//! transaction: a standby) → [`Failure::WrongServer`]; 57P03 (cannot
//! connect now: starting up, shutting down, in recovery) and 53300 (too
//! many connections) → [`Failure::Pushback`] with no hint; a closed
//! connection, an IO error, or the server shutting down (57P01/57P02) →
//! [`Failure::ConnectionLost`]; anything else → [`Failure::ServerError`].
//! 57P03 and 53300 mostly come while connecting: there
//! [`classify_connect`] reads them as [`ConnectFailure::Unavailable`]
//! (retried).
//!
//! **Time limits reach the server.** An op dispatched with a time left
//! (its deadline or command timeout: [`Connector::run_within`]) runs with
//! the session's `statement_timeout` set to what is left when it starts
//! plus [`STATEMENT_GRACE`] (`SET statement_timeout`, one extra round
//! trip), so the server cancels
//! its statements when the client stops waiting (SQLSTATE 57014) instead
//! of running on; the next op without a limit restores the default
//! (`RESET statement_timeout`). An op run without a limit on a session
//! whose timeout was never touched costs nothing extra. If the op sets
//! `statement_timeout` itself, its value holds until the next op with a
//! limit.
//!
//! **An op cut short or failed mid-transaction.** An op that begins a
//! transaction by hand (`BEGIN`) and fails, or is cut short between
//! statements (its deadline passed, or its caller dropped the call), would
//! leave the session inside that transaction: the next op's writes held
//! uncommitted in it, or, once it is aborted, every later op refused with
//! 25P02 for the life of the connection. So after an op that did not end
//! `Ok`, the next op on the connection starts with a `ROLLBACK` (one
//! extra round trip; tokio-postgres's own `Transaction` already rolls
//! back when dropped). An op cut short mid-statement leaves that
//! statement running on the server (tokio-postgres does not stop it).
//! Under a time limit the server stops it itself (`statement_timeout`,
//! above); without one, the next op waits behind it (bounded by its own
//! deadline, or the response timeout). A cancel request is not sent for
//! it: tokio-postgres's `cancel_query` does not wait for the backend to
//! act on it, so when the statement had already ended, a late cancel hit
//! the next op's statement instead (seen in CI, twice).
//!
//! **Seed list and role.** Each connection string (or config) is one
//! endpoint, and one naming several hosts (`host=a,b port=5432,5433`) is
//! split into one endpoint per host: the client rotates through them
//! itself instead of tokio-postgres trying them in order inside one
//! attempt. Right after each connect the connector asks
//! `SELECT pg_is_in_recovery()`: `f` → [`Role::Primary`], `t` (a standby)
//! → [`Role::Secondary`], no answer → [`Role::Unknown`]; with
//! [`Config::require_primary`](crate::core::Config::require_primary) (on
//! in `Config::recommended()`) the client refuses a standby and tries the
//! next endpoint.

use std::fmt;
use std::marker::PhantomData;

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Shared};
use tokio::sync::Mutex;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, Error, NoTls, SimpleQueryMessage};

use crate::connector::{Connector, Failure};
use crate::core::{ConnectFailure, LossKind, Role};

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
    /// (`host=127.0.0.1 port=5433 user=postgres`), and per host of a
    /// string that names several (`host=10.0.0.1,10.0.0.2 port=5432`).
    pub fn new<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let configs = endpoints
            .into_iter()
            .map(|s| s.as_ref().parse::<Config>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_configs(configs))
    }

    /// One endpoint per config, and per host of a config that names
    /// several.
    pub fn from_configs(configs: impl IntoIterator<Item = Config>) -> Self {
        PostgresConnector {
            configs: configs.into_iter().flat_map(|c| split_hosts(&c)).collect(),
            _out: PhantomData,
        }
    }

    /// The endpoints' configs, in seed-list order (one host each, unless
    /// a config named none).
    pub fn configs(&self) -> &[Config] {
        &self.configs
    }
}

/// One config per host of `config` (its host, hostaddr and port; every
/// other setting copied). A config with at most one host is returned as
/// it is. Ports follow libpq's rule: one port serves every host, or there
/// is one per host.
pub fn split_hosts(config: &Config) -> Vec<Config> {
    let (hosts, addrs, ports) = (
        config.get_hosts(),
        config.get_hostaddrs(),
        config.get_ports(),
    );
    let n = hosts.len().max(addrs.len());
    if n <= 1 {
        return vec![config.clone()];
    }
    (0..n)
        .map(|i| {
            let mut c = Config::new();
            if let Some(user) = config.get_user() {
                c.user(user);
            }
            if let Some(password) = config.get_password() {
                c.password(password);
            }
            if let Some(dbname) = config.get_dbname() {
                c.dbname(dbname);
            }
            if let Some(options) = config.get_options() {
                c.options(options);
            }
            if let Some(name) = config.get_application_name() {
                c.application_name(name);
            }
            if let Some(t) = config.get_connect_timeout() {
                c.connect_timeout(*t);
            }
            if let Some(t) = config.get_tcp_user_timeout() {
                c.tcp_user_timeout(*t);
            }
            if let Some(t) = config.get_keepalives_interval() {
                c.keepalives_interval(t);
            }
            if let Some(n) = config.get_keepalives_retries() {
                c.keepalives_retries(n);
            }
            c.ssl_mode(config.get_ssl_mode())
                .ssl_negotiation(config.get_ssl_negotiation())
                .keepalives(config.get_keepalives())
                .keepalives_idle(config.get_keepalives_idle())
                .target_session_attrs(config.get_target_session_attrs())
                .channel_binding(config.get_channel_binding())
                .load_balance_hosts(config.get_load_balance_hosts());
            match hosts.get(i) {
                Some(Host::Tcp(h)) => {
                    c.host(h);
                }
                #[cfg(unix)]
                Some(Host::Unix(p)) => {
                    c.host_path(p);
                }
                _ => {}
            }
            if let Some(a) = addrs.get(i) {
                c.hostaddr(*a);
            }
            match ports {
                [p] => {
                    c.port(*p);
                }
                _ => {
                    if let Some(p) = ports.get(i) {
                        c.port(*p);
                    }
                }
            }
            c
        })
        .collect()
}

/// Reads a failed connect the way the core needs it: a wrong password, an
/// unknown role or database (SQLSTATE class 28, 3D000) → `rejected` (not
/// retried); a server starting up or full (57P03, 53300) → `unavailable`;
/// anything else (refused, unreachable, reset, IO) → `refused`. See
/// [`classify_connect_sqlstate`].
pub fn classify_connect(e: &Error) -> ConnectFailure {
    e.code()
        .map_or(ConnectFailure::Refused, classify_connect_sqlstate)
}

/// What a connect refused with SQLSTATE `code` means (see
/// [`classify_connect`]).
pub fn classify_connect_sqlstate(code: &SqlState) -> ConnectFailure {
    if code.code().starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME {
        ConnectFailure::Rejected
    } else if *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::TOO_MANY_CONNECTIONS {
        ConnectFailure::Unavailable
    } else {
        ConnectFailure::Refused
    }
}

/// The role in the answer to `SELECT pg_is_in_recovery()` (as text):
/// `f` → [`Role::Primary`], `t` → [`Role::Secondary`], anything else →
/// [`Role::Unknown`].
pub fn role_from_recovery(in_recovery: Option<&str>) -> Role {
    match in_recovery {
        Some("f" | "false") => Role::Primary,
        Some("t" | "true") => Role::Secondary,
        _ => Role::Unknown,
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

/// How much longer than the op's time left the server's `statement_timeout`
/// runs: the client fails the op at its deadline (`deadline_exceeded`, may
/// have run), and the server cancels the statement this much later at most.
pub const STATEMENT_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// The longest `statement_timeout` PostgreSQL accepts, in milliseconds.
const MAX_STATEMENT_TIMEOUT_MS: u64 = i32::MAX as u64;

/// An open connection: the client and a signal that the connection task ended.
///
/// The client sits behind tokio's mutex, which is fair: ops take the
/// connection in the order they asked for it. (An unfair lock let one
/// caller issuing transactions back to back hold it for ever while the
/// others' ops waited: found by `tests/postgres_failover.rs`.)
pub struct PgConn {
    client: Mutex<Client>,
    ended: Shared<oneshot::Receiver<()>>,
    /// The session's `statement_timeout` as this connector last set it, in
    /// milliseconds (0: the server's default; `u64::MAX`: unknown, a `SET`
    /// was cut short). Read and written only under the client's lock.
    statement_timeout_ms: std::sync::atomic::AtomicU64,
    /// The last op did not end `Ok` (it failed, or was cut short: its
    /// future dropped): it may have left a transaction open or aborted
    /// (`BEGIN` sent by hand), so the next op starts with a `ROLLBACK`.
    /// Read and written only under the client's lock.
    dirty: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgConn")
    }
}

/// Reads a tokio-postgres error the way the core needs it: an error the
/// server sent by its SQLSTATE (see [`classify_sqlstate`]); otherwise a
/// closed connection or an IO error → connection lost, anything else → a
/// server error.
pub fn classify(e: &Error) -> Failure {
    if let Some(code) = e.code() {
        return classify_sqlstate(code);
    }
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        Failure::ConnectionLost
    } else {
        Failure::ServerError
    }
}

/// What an op's error with SQLSTATE `code` means: 25006 (read-only
/// transaction) → wrong server; 57P03 (cannot connect now) and 53300 (too
/// many connections) → pushback, no hint (the server did not run the op);
/// 57P01/57P02 (admin or crash shutdown) → connection lost; anything else
/// → a server error.
pub fn classify_sqlstate(code: &SqlState) -> Failure {
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        Failure::WrongServer
    } else if *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::TOO_MANY_CONNECTIONS {
        Failure::Pushback { retry_after: None }
    } else if *code == SqlState::ADMIN_SHUTDOWN || *code == SqlState::CRASH_SHUTDOWN {
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
            statement_timeout_ms: std::sync::atomic::AtomicU64::new(0),
            dirty: std::sync::atomic::AtomicBool::new(false),
        })
    }

    async fn run(&self, conn: &PgConn, op: &PgOp<T>) -> Result<T, Error> {
        self.run_within(conn, op, None).await
    }

    async fn run_within(
        &self,
        conn: &PgConn,
        op: &PgOp<T>,
        time_left: Option<std::time::Duration>,
    ) -> Result<T, Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        let mut client = conn.client.lock().await;
        // What is left once the lock is ours, plus STATEMENT_GRACE so that
        // the client's own deadline (not the server's cancellation, a
        // server error) decides the op's outcome; in whole milliseconds, at
        // least 1 (0 would mean "no limit" to the server).
        // PostgreSQL takes at most i32::MAX ms (24.8 days): a longer limit
        // is that one.
        let want = time_left.map_or(0, |t| {
            let left = t.saturating_sub(started.elapsed()) + STATEMENT_GRACE;
            u64::try_from(left.as_millis())
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_STATEMENT_TIMEOUT_MS)
        });
        let result = async {
            // Dirty until this op ends `Ok`: if it is cut short (this
            // future dropped) or fails, the next op rolls back what it
            // left open.
            if conn.dirty.swap(true, Relaxed) {
                // A transaction the last op began by hand and never ended
                // (it failed, or was cut short between statements) would
                // hold this op's writes uncommitted, or refuse them all
                // (25P02, "current transaction is aborted") for ever.
                // Outside a transaction this is a warning only.
                client.batch_execute("ROLLBACK").await?;
            }
            if want != conn.statement_timeout_ms.load(Relaxed) {
                let sql = if want == 0 {
                    "RESET statement_timeout".to_string()
                } else {
                    format!("SET statement_timeout = {want}")
                };
                // Unknown until the server confirms (this future may be
                // dropped half-way): the next op then sets it again.
                conn.statement_timeout_ms.store(u64::MAX, Relaxed);
                client.batch_execute(&sql).await?;
                conn.statement_timeout_ms.store(want, Relaxed);
            }
            (op.0)(&mut client).await
        }
        .await;
        conn.dirty.store(result.is_err(), Relaxed);
        result
    }

    fn classify(&self, error: &Error) -> Failure {
        classify(error)
    }

    async fn ping(&self, conn: &PgConn) -> Result<(), Error> {
        conn.client.lock().await.simple_query("").await.map(drop)
    }

    async fn role(&self, conn: &PgConn) -> Role {
        let client = conn.client.lock().await;
        let Ok(rows) = client.simple_query("SELECT pg_is_in_recovery()").await else {
            return Role::Unknown;
        };
        let answer = rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0)),
            _ => None,
        });
        role_from_recovery(answer.flatten())
    }

    async fn closed(&self, conn: &PgConn) -> LossKind {
        let _ = conn.ended.clone().await;
        LossKind::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_sqlstates() {
        assert_eq!(
            classify_sqlstate(&SqlState::READ_ONLY_SQL_TRANSACTION),
            Failure::WrongServer
        );
        for code in [SqlState::CANNOT_CONNECT_NOW, SqlState::TOO_MANY_CONNECTIONS] {
            assert_eq!(
                classify_sqlstate(&code),
                Failure::Pushback { retry_after: None },
                "{}",
                code.code()
            );
        }
        for code in [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN] {
            assert_eq!(
                classify_sqlstate(&code),
                Failure::ConnectionLost,
                "{}",
                code.code()
            );
        }
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::SYNTAX_ERROR,
            SqlState::QUERY_CANCELED,
            SqlState::CONFIGURATION_LIMIT_EXCEEDED,
            SqlState::from_code("XX999"),
        ] {
            assert_eq!(
                classify_sqlstate(&code),
                Failure::ServerError,
                "{}",
                code.code()
            );
        }
        // By code string too: what a server sends.
        assert_eq!(
            classify_sqlstate(&SqlState::from_code("57P03")),
            Failure::Pushback { retry_after: None }
        );
        assert_eq!(
            classify_sqlstate(&SqlState::from_code("53300")),
            Failure::Pushback { retry_after: None }
        );
        assert_eq!(
            classify_sqlstate(&SqlState::from_code("25006")),
            Failure::WrongServer
        );
    }

    #[test]
    fn connect_sqlstates() {
        for code in ["57P03", "53300"] {
            assert_eq!(
                classify_connect_sqlstate(&SqlState::from_code(code)),
                ConnectFailure::Unavailable,
                "{code}"
            );
        }
        for code in ["28P01", "28000", "3D000"] {
            assert_eq!(
                classify_connect_sqlstate(&SqlState::from_code(code)),
                ConnectFailure::Rejected,
                "{code}"
            );
        }
        for code in ["57P01", "XX000", "08006"] {
            assert_eq!(
                classify_connect_sqlstate(&SqlState::from_code(code)),
                ConnectFailure::Refused,
                "{code}"
            );
        }
    }

    #[test]
    fn roles_from_recovery() {
        assert_eq!(role_from_recovery(Some("f")), Role::Primary);
        assert_eq!(role_from_recovery(Some("t")), Role::Secondary);
        assert_eq!(role_from_recovery(None), Role::Unknown);
        assert_eq!(role_from_recovery(Some("")), Role::Unknown);
    }

    fn endpoints(s: &str) -> Vec<Config> {
        PostgresConnector::<()>::new([s]).expect("valid").configs
    }

    fn one(s: &str) -> Config {
        s.parse().expect("valid")
    }

    #[test]
    fn a_multi_host_string_is_one_endpoint_per_host() {
        let split = endpoints(
            "host=10.0.0.1,10.0.0.2,db3 port=5432,5433,5434 user=app dbname=shop \
             password=pw application_name=svc connect_timeout=3 target_session_attrs=read-write",
        );
        let rest = "user=app dbname=shop password=pw application_name=svc connect_timeout=3 \
                    target_session_attrs=read-write";
        assert_eq!(
            split,
            vec![
                one(&format!("host=10.0.0.1 port=5432 {rest}")),
                one(&format!("host=10.0.0.2 port=5433 {rest}")),
                one(&format!("host=db3 port=5434 {rest}")),
            ]
        );
        let c = PostgresConnector::<()>::new(["host=a,b port=6000 user=u"]).expect("valid");
        assert_eq!(c.endpoints(), 2);
        assert_eq!(
            c.configs(),
            &[
                one("host=a port=6000 user=u"),
                one("host=b port=6000 user=u")
            ]
        );
        let hostaddrs = endpoints("host=a,b hostaddr=127.0.0.1,127.0.0.2 user=u");
        assert_eq!(
            hostaddrs,
            vec![
                one("host=a hostaddr=127.0.0.1 user=u"),
                one("host=b hostaddr=127.0.0.2 user=u"),
            ]
        );
    }

    #[test]
    fn single_host_strings_stay_as_they_are() {
        let s = "host=127.0.0.1 port=5433 user=postgres";
        assert_eq!(endpoints(s), vec![one(s)]);
        let c = PostgresConnector::<()>::new([s, "host=127.0.0.2 port=5434", "host=x,y"])
            .expect("valid");
        assert_eq!(c.endpoints(), 4);
        assert_eq!(endpoints("user=postgres"), vec![one("user=postgres")]);
    }
}
