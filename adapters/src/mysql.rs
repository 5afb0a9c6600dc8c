//! A ready [`Connector`] for `mysql_async` (MySQL and MariaDB).
//!
//! **Runtimes: tokio only.** `mysql_async` is built on tokio's IO types
//! (its sockets are `tokio::net` streams, and a dropped connection spawns
//! its goodbye on the current tokio runtime), so a client using this
//! connector must run on the `tokio` runtime of this crate (the feature
//! turns it on); smol and async-std cannot drive these sockets.
//!
//! A connection serves one op at a time here: the `mysql_async::Conn` sits
//! behind an async mutex, and an op gets `&mut Conn`, so it can run a
//! whole transaction (seed 004: retry the transaction, not the statement).
//! The mutex is tokio's, which hands the connection to waiting ops in the
//! order they asked: with `futures::lock::Mutex` (not fair: a task that
//! releases it can take it again at once) one of four callers streaming
//! transactions on one connection was measured waiting 2–3 s behind the
//! others; with tokio's the slowest op waits about one outage.
//!
//! Errors are read by their server error code (see [`classify`] and
//! [`classify_code`]):
//!
//! | code | meaning | read as |
//! |---|---|---|
//! | 1290 (`--read-only`) | the server is read-only: a replica | [`Failure::WrongServer`] |
//! | 2013, 2006, 2055, 1927, 1053, 3169, 4031, and IO / closed-connection driver errors | lost, gone away, killed, shutting down | [`Failure::ConnectionLost`] |
//! | 1040, 1203 | too many connections | [`Failure::Pushback`] (no hint) |
//! | anything else | | [`Failure::ServerError`] |
//!
//! 1290 is the server's "running with the --X option" refusal; only a
//! message naming read-only (`--read-only`, `--super-read-only`) is read
//! as the wrong server, any other option (`--secure-file-priv`) as a
//! server error. Note that MariaDB lets users with `SUPER` or
//! `READ_ONLY ADMIN` write on a read-only server: connect as an ordinary
//! user for read-only to refuse writes.
//!
//! Connecting ([`classify_connect`], [`classify_connect_code`]): access
//! denied, unknown database, locked or blocked accounts (1045, 1044, 1049,
//! 1698, …) → [`ConnectFailure::Rejected`] (not retried); 1040/1203 (too
//! many connections) → [`ConnectFailure::Unavailable`]; anything else
//! (refused, reset, IO) → [`ConnectFailure::Refused`].
//!
//! **Time limits reach the server (MariaDB).** An op dispatched with a time
//! left ([`Connector::run_within`]) runs with the session's
//! `max_statement_time` set to what is left when it starts plus
//! [`STATEMENT_GRACE`] (`SET SESSION max_statement_time = <seconds>`, one
//! extra round trip), so the server aborts a statement still running when
//! the client stops waiting (error 1969) instead of running on; the next op
//! without a limit sets it back to 0 (no limit). The connector remembers
//! the session's value, so an op without a limit on a session never
//! limited costs nothing extra, and a `SET` cut short leaves it unknown
//! (set again by the next op). On **MySQL** (a `VERSION()` without
//! "MariaDB") the same is done with `max_execution_time` (milliseconds),
//! which MySQL applies to read-only `SELECT` statements only: there the
//! limit of any other statement is the client's alone. If the op sets the
//! variable itself, its value holds until the next op with a limit.
//!
//! **Seed list and role.** Each URL (or [`Opts`]) is one endpoint; the
//! client rotates through them itself. Right after each connect the
//! connector asks `SELECT @@global.read_only`: 0 → [`Role::Primary`], 1 →
//! [`Role::Secondary`], no answer → [`Role::Unknown`]; with
//! [`Config::require_primary`](crate::core::Config::require_primary) (on
//! in `Config::recommended()`) the client refuses a read-only server and
//! tries the next endpoint.
//!
//! **A connection cut mid-op.** `mysql_async` marks a connection whose
//! command was interrupted (its future dropped, or an IO error) as
//! disconnected. After an IO error an op or ping on it answers at once
//! with `DriverError::ConnectionClosed` (a lost connection) instead of
//! talking on a stream whose state is unknown. When it was this
//! connector's own op that was cut short (its deadline passed, or its
//! caller dropped the call), nothing is wrong with the server: the next
//! op opens the session again (same endpoint, no role check; the
//! statement limit starts at none; within [`REOPEN_TIMEOUT`]) instead of failing as a lost
//! connection although it was never sent. An op that failed or was cut
//! short between statements may have left a transaction open (`BEGIN`
//! sent by hand; `mysql_async`'s `Transaction` rolls itself back): the
//! next op on the connection starts with a `ROLLBACK`, so its writes are
//! never held in someone else's transaction.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Error, Opts};
use tokio::sync::Mutex;

use crate::connector::{Connector, Failure};
use crate::core::{ConnectFailure, Role};

/// Connects to a seed list of MySQL or MariaDB servers; ops return `T`.
pub struct MySqlConnector<T> {
    opts: Vec<Opts>,
    _out: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for MySqlConnector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlConnector")
            .field("opts", &self.opts)
            .finish()
    }
}

impl<T> MySqlConnector<T> {
    /// One endpoint per URL (`mysql://app:pw@127.0.0.1:3306/shop`).
    pub fn new<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let opts = urls
            .into_iter()
            .map(|s| Opts::from_url(s.as_ref()).map_err(Error::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_opts(opts))
    }

    /// One endpoint per `Opts`.
    pub fn from_opts(opts: impl IntoIterator<Item = Opts>) -> Self {
        MySqlConnector {
            opts: opts.into_iter().collect(),
            _out: PhantomData,
        }
    }

    /// The endpoints' options, in seed-list order.
    pub fn opts(&self) -> &[Opts] {
        &self.opts
    }
}

type OpFn<T> = dyn for<'a> Fn(&'a mut Conn) -> BoxFuture<'a, Result<T, Error>> + Send + Sync;

/// One op: a function run on the connection (again, if retried), e.g. a
/// whole transaction.
pub struct MySqlOp<T>(Box<OpFn<T>>);

impl<T> MySqlOp<T> {
    /// Wraps `f`, e.g. `MySqlOp::new(|c| Box::pin(async move { … }))`.
    pub fn new<F>(f: F) -> Self
    where
        F: for<'a> Fn(&'a mut Conn) -> BoxFuture<'a, Result<T, Error>> + Send + Sync + 'static,
    {
        MySqlOp(Box::new(f))
    }
}

impl<T> fmt::Debug for MySqlOp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MySqlOp")
    }
}

/// How much longer than the op's time left the server's statement limit
/// runs: the client fails the op at its deadline (`deadline_exceeded`, may
/// have run), and the server aborts the statement this much later at most.
pub const STATEMENT_GRACE: Duration = Duration::from_millis(100);

/// How long an op waits for a session to be opened again after the op
/// before it was cut short mid-statement (see the module docs); then it
/// fails as a lost connection (a server that stopped answering).
pub const REOPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `max_statement_time` MariaDB accepts: one year, in ms.
const MARIADB_MAX_MS: u64 = 31_536_000_000;

/// The longest `max_execution_time` MySQL accepts, in ms.
const MYSQL_MAX_MS: u64 = u32::MAX as u64;

/// The session's statement limit is unknown (a `SET` was cut short).
const UNKNOWN: u64 = u64::MAX;

/// Which server a connection reached: the statement-limit variable differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavor {
    /// MariaDB: `max_statement_time`, seconds, every statement.
    MariaDb,
    /// MySQL (or a server that did not say): `max_execution_time`,
    /// milliseconds, read-only `SELECT` only.
    MySql,
}

impl Flavor {
    /// The flavor a `SELECT VERSION()` answer names: one containing
    /// "MariaDB" (any case) is MariaDB, anything else MySQL.
    pub fn from_version(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }

    /// The statement that sets the session's statement limit to `ms`
    /// milliseconds (0: no limit), clamped to what the server accepts.
    pub fn limit_sql(self, ms: u64) -> String {
        match self {
            Flavor::MariaDb => {
                let ms = ms.min(MARIADB_MAX_MS);
                format!(
                    "SET SESSION max_statement_time = {}.{:03}",
                    ms / 1000,
                    ms % 1000
                )
            }
            Flavor::MySql => format!("SET SESSION max_execution_time = {}", ms.min(MYSQL_MAX_MS)),
        }
    }
}

/// An open connection: the driver's connection, the server's flavor and
/// what this connector knows of the session.
pub struct MySqlConn {
    session: Mutex<Session>,
    flavor: Flavor,
    /// The endpoint's options: a session broken by an op cut short is
    /// opened again with them.
    opts: Opts,
}

/// The connection and what this connector knows of its session; read and
/// written only under the connection's lock.
struct Session {
    conn: Conn,
    /// The statement limit as this connector last set it, in
    /// milliseconds (0: no limit; [`UNKNOWN`]: a `SET` was cut short).
    limit_ms: u64,
    /// An op (or its `SET`) is under way, or was cut short (its future
    /// dropped) before it ended: set before it starts, cleared when it
    /// ends. Found set by the next op, it means the session was abandoned
    /// mid-op.
    cut: bool,
    /// The last op did not end `Ok` (it failed or was cut short): it may
    /// have left a transaction open (`BEGIN` by hand), so the next op
    /// starts with a `ROLLBACK`.
    dirty: bool,
}

impl MySqlConn {
    /// The server's flavor, from its `VERSION()` at connect.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }
}

impl fmt::Debug for MySqlConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlConn")
            .field("flavor", &self.flavor)
            .finish()
    }
}

/// What an op's server error `code` means (see the module docs' table):
/// 1290 (read-only) → wrong server; 2013, 2006, 2055 (lost, gone away),
/// 1927 (connection killed), 1053 (server shutdown), 3169 (session
/// killed), 4031 (disconnected for inactivity) → connection lost; 1040,
/// 1203 (too many connections) → pushback, no hint; anything else → a
/// server error.
pub fn classify_code(code: u16) -> Failure {
    match code {
        1290 => Failure::WrongServer,
        2013 | 2006 | 2055 | 1927 | 1053 | 3169 | 4031 => Failure::ConnectionLost,
        1040 | 1203 => Failure::Pushback { retry_after: None },
        _ => Failure::ServerError,
    }
}

/// Reads a `mysql_async` error the way the core needs it: a server error
/// by its code ([`classify_code`]; a 1290 whose message does not name
/// read-only is a server error); an IO error, or a driver error of a
/// closed or garbled connection (closed, packet out of order, unexpected
/// packet, bad compressed header, packet too large) → connection lost;
/// anything else (parameters, conversions, URL, errors the op made up) →
/// a server error.
pub fn classify(e: &Error) -> Failure {
    match e {
        Error::Server(s) => {
            let failure = classify_code(s.code);
            if failure == Failure::WrongServer && !names_read_only(&s.message) {
                Failure::ServerError
            } else {
                failure
            }
        }
        Error::Io(_) => Failure::ConnectionLost,
        Error::Driver(
            DriverError::ConnectionClosed
            | DriverError::PacketOutOfOrder
            | DriverError::UnexpectedPacket { .. }
            | DriverError::BadCompressedPacketHeader
            | DriverError::PacketTooLarge,
        ) => Failure::ConnectionLost,
        _ => Failure::ServerError,
    }
}

fn names_read_only(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("read-only") || m.contains("read_only")
}

/// What a connect refused with server error `code` means: access denied,
/// unknown database, an account locked, expired or not allowed from this
/// host (1044, 1045, 1049, 1129, 1130, 1251, 1698, 1862, 3118, 4151) →
/// `rejected`; too many connections (1040, 1203) → `unavailable`; anything
/// else → `refused`.
pub fn classify_connect_code(code: u16) -> ConnectFailure {
    match code {
        1044 | 1045 | 1049 | 1129 | 1130 | 1251 | 1698 | 1862 | 3118 | 4151 => {
            ConnectFailure::Rejected
        }
        1040 | 1203 => ConnectFailure::Unavailable,
        _ => ConnectFailure::Refused,
    }
}

/// Reads a failed connect the way the core needs it: a server error by its
/// code ([`classify_connect_code`]); a bad URL or a client that cannot
/// speak to this server (unknown or disabled auth plugin, TLS asked of a
/// server without it) → `rejected`; anything else (refused, unreachable,
/// reset, IO) → `refused`.
pub fn classify_connect(e: &Error) -> ConnectFailure {
    match e {
        Error::Server(s) => classify_connect_code(s.code),
        Error::Url(_)
        | Error::Driver(
            DriverError::UnknownAuthPlugin { .. }
            | DriverError::MysqlOldPasswordDisabled
            | DriverError::CleartextPluginDisabled
            | DriverError::NoClientSslFlagFromServer,
        ) => ConnectFailure::Rejected,
        _ => ConnectFailure::Refused,
    }
}

/// The role in the answer to `SELECT @@global.read_only`: 0 →
/// [`Role::Primary`], 1 → [`Role::Secondary`], anything else →
/// [`Role::Unknown`].
pub fn role_from_read_only(read_only: Option<i64>) -> Role {
    match read_only {
        Some(0) => Role::Primary,
        Some(1) => Role::Secondary,
        _ => Role::Unknown,
    }
}

/// The limit to set for an op with `time_left`, `elapsed` of it already
/// spent waiting for the connection: what is left plus [`STATEMENT_GRACE`],
/// in whole milliseconds, at least 1 (0 means "no limit" to the server);
/// no time left given → 0. Capped at the larger of the two servers'
/// maximums (each flavor clamps to its own when it writes the `SET`).
fn limit_ms(time_left: Option<Duration>, elapsed: Duration) -> u64 {
    time_left.map_or(0, |t| {
        let left = t.saturating_sub(elapsed).saturating_add(STATEMENT_GRACE);
        u64::try_from(left.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MARIADB_MAX_MS.max(MYSQL_MAX_MS))
    })
}

fn closed() -> Error {
    Error::Driver(DriverError::ConnectionClosed)
}

impl<T: Send + 'static> Connector for MySqlConnector<T> {
    type Conn = MySqlConn;
    type Op = MySqlOp<T>;
    type Output = T;
    type Error = Error;

    fn endpoints(&self) -> usize {
        self.opts.len()
    }

    fn classify_connect(&self, error: &Error) -> ConnectFailure {
        classify_connect(error)
    }

    async fn connect(&self, endpoint: usize) -> Result<MySqlConn, Error> {
        let opts = self.opts.get(endpoint).cloned().unwrap_or_default();
        let mut conn = Conn::new(opts.clone()).await?;
        let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
        Ok(MySqlConn {
            session: Mutex::new(Session {
                conn,
                limit_ms: 0,
                cut: false,
                dirty: false,
            }),
            flavor: Flavor::from_version(version.as_deref().unwrap_or_default()),
            opts,
        })
    }

    async fn run(&self, conn: &MySqlConn, op: &MySqlOp<T>) -> Result<T, Error> {
        self.run_within(conn, op, None).await
    }

    async fn run_within(
        &self,
        conn: &MySqlConn,
        op: &MySqlOp<T>,
        time_left: Option<Duration>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let mut guard = conn.session.lock().await;
        let s = &mut *guard;
        if s.cut && s.conn.is_disconnected() {
            // The previous op was cut short mid-statement (its deadline,
            // or its caller gave up): `mysql_async` then leaves the
            // connection unusable, though nothing is wrong with the
            // server. Open the session again rather than fail this op,
            // which has not been sent, as a lost connection.
            s.conn = tokio::time::timeout(REOPEN_TIMEOUT, Conn::new(conn.opts.clone()))
                .await
                .map_err(|_| {
                    Error::Io(std::io::Error::from(std::io::ErrorKind::TimedOut).into())
                })??;
            s.limit_ms = 0;
            s.cut = false;
            s.dirty = false;
        } else if s.cut {
            // Cut short between statements: roll back what it left open.
            s.dirty = true;
        }
        if s.conn.is_disconnected() {
            return Err(closed());
        }
        s.cut = true;
        let result = async {
            if s.dirty {
                // A transaction the last op began and never ended (it
                // failed, or was cut short between statements) would hold
                // this op's writes uncommitted.
                s.conn.query_drop("ROLLBACK").await?;
                s.dirty = false;
            }
            let want = limit_ms(time_left, started.elapsed());
            if want != s.limit_ms {
                // Unknown until the server confirms (this future may be
                // dropped half-way): the next op then sets it again.
                s.limit_ms = UNKNOWN;
                s.conn.query_drop(conn.flavor.limit_sql(want)).await?;
                s.limit_ms = want;
            }
            (op.0)(&mut s.conn).await
        }
        .await;
        s.cut = false;
        s.dirty = result.is_err();
        result
    }

    fn classify(&self, error: &Error) -> Failure {
        classify(error)
    }

    async fn ping(&self, conn: &MySqlConn) -> Result<(), Error> {
        let mut s = conn.session.lock().await;
        if s.conn.is_disconnected() {
            return Err(closed());
        }
        s.conn.ping().await
    }

    async fn role(&self, conn: &MySqlConn) -> Role {
        let mut s = conn.session.lock().await;
        let answer: Option<i64> = s
            .conn
            .query_first("SELECT @@global.read_only")
            .await
            .ok()
            .flatten();
        role_from_read_only(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::ServerError;

    fn server(code: u16, message: &str) -> Error {
        Error::Server(ServerError {
            code,
            message: message.to_string(),
            state: "HY000".to_string(),
        })
    }

    #[test]
    fn op_codes() {
        assert_eq!(classify_code(1290), Failure::WrongServer);
        for code in [2013, 2006, 2055, 1927, 1053, 3169, 4031] {
            assert_eq!(classify_code(code), Failure::ConnectionLost, "{code}");
        }
        for code in [1040, 1203] {
            assert_eq!(
                classify_code(code),
                Failure::Pushback { retry_after: None },
                "{code}"
            );
        }
        for code in [0, 1062, 1064, 1146, 1213, 1205, 1317, 1969, 3024, u16::MAX] {
            assert_eq!(classify_code(code), Failure::ServerError, "{code}");
        }
    }

    #[test]
    fn op_errors() {
        let ro = "The MariaDB server is running with the --read-only option so it cannot execute this statement";
        assert_eq!(classify(&server(1290, ro)), Failure::WrongServer);
        let sro = "The MySQL server is running with the --super-read-only option so it cannot execute this statement";
        assert_eq!(classify(&server(1290, sro)), Failure::WrongServer);
        let sfp = "The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement";
        assert_eq!(classify(&server(1290, sfp)), Failure::ServerError);
        assert_eq!(
            classify(&server(1927, "Connection was killed")),
            Failure::ConnectionLost
        );
        assert_eq!(
            classify(&server(1040, "Too many connections")),
            Failure::Pushback { retry_after: None }
        );
        assert_eq!(
            classify(&server(1062, "Duplicate entry")),
            Failure::ServerError
        );
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(classify(&Error::from(eof)), Failure::ConnectionLost);
        assert_eq!(classify(&closed()), Failure::ConnectionLost);
        assert_eq!(
            classify(&Error::Driver(DriverError::PacketOutOfOrder)),
            Failure::ConnectionLost
        );
        assert_eq!(
            classify(&Error::Driver(DriverError::NestedTransaction)),
            Failure::ServerError
        );
        assert_eq!(
            classify(&Error::Other("made up by the op".into())),
            Failure::ServerError
        );
    }

    #[test]
    fn connect_codes() {
        for code in [1044, 1045, 1049, 1129, 1130, 1251, 1698, 1862, 3118, 4151] {
            assert_eq!(
                classify_connect_code(code),
                ConnectFailure::Rejected,
                "{code}"
            );
        }
        for code in [1040, 1203] {
            assert_eq!(
                classify_connect_code(code),
                ConnectFailure::Unavailable,
                "{code}"
            );
        }
        for code in [0, 1053, 2013, 1290, u16::MAX] {
            assert_eq!(
                classify_connect_code(code),
                ConnectFailure::Refused,
                "{code}"
            );
        }
        assert_eq!(
            classify_connect(&server(1045, "Access denied")),
            ConnectFailure::Rejected
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify_connect(&Error::from(refused)),
            ConnectFailure::Refused
        );
        let bad_url = MySqlConnector::<()>::new(["postgres://x"]).expect_err("not mysql");
        assert_eq!(classify_connect(&bad_url), ConnectFailure::Rejected);
        assert_eq!(
            classify_connect(&Error::Driver(DriverError::UnknownAuthPlugin {
                name: "x".into()
            })),
            ConnectFailure::Rejected
        );
    }

    #[test]
    fn roles_from_read_only() {
        assert_eq!(role_from_read_only(Some(0)), Role::Primary);
        assert_eq!(role_from_read_only(Some(1)), Role::Secondary);
        assert_eq!(role_from_read_only(None), Role::Unknown);
        assert_eq!(role_from_read_only(Some(2)), Role::Unknown);
    }

    #[test]
    fn flavors_and_limits() {
        assert_eq!(
            Flavor::from_version("10.11.19-MariaDB-0+deb12u1"),
            Flavor::MariaDb
        );
        assert_eq!(Flavor::from_version("8.4.3"), Flavor::MySql);
        assert_eq!(Flavor::from_version(""), Flavor::MySql);
        for (flavor, ms, sql) in [
            (
                Flavor::MariaDb,
                1234,
                "SET SESSION max_statement_time = 1.234",
            ),
            (Flavor::MariaDb, 5, "SET SESSION max_statement_time = 0.005"),
            (Flavor::MariaDb, 0, "SET SESSION max_statement_time = 0.000"),
            (
                Flavor::MariaDb,
                u64::MAX,
                "SET SESSION max_statement_time = 31536000.000",
            ),
            (Flavor::MySql, 1234, "SET SESSION max_execution_time = 1234"),
            (
                Flavor::MySql,
                u64::MAX,
                "SET SESSION max_execution_time = 4294967295",
            ),
        ] {
            assert_eq!(flavor.limit_sql(ms), sql);
        }
    }

    #[test]
    fn limits_from_time_left() {
        assert_eq!(limit_ms(None, Duration::from_secs(1)), 0);
        assert_eq!(
            limit_ms(Some(Duration::from_millis(500)), Duration::ZERO),
            600
        );
        assert_eq!(
            limit_ms(Some(Duration::from_millis(500)), Duration::from_millis(200)),
            400
        );
        // Spent already: the grace alone.
        assert_eq!(limit_ms(Some(Duration::ZERO), Duration::from_secs(3)), 100);
        assert_eq!(
            limit_ms(Some(Duration::MAX), Duration::ZERO),
            MARIADB_MAX_MS
        );
    }

    #[test]
    fn urls_are_endpoints() {
        let c = MySqlConnector::<()>::new([
            "mysql://app:pw@127.0.0.1:3307/shop",
            "mysql://app:pw@127.0.0.1:3308/shop",
        ])
        .expect("valid");
        assert_eq!(c.endpoints(), 2);
        assert_eq!(c.opts()[1].tcp_port(), 3308);
        assert_eq!(c.opts()[0].db_name(), Some("shop"));
    }
}
