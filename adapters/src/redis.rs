//! A ready [`Connector`] for the `redis` crate's multiplexed async
//! connection, on tokio or smol.
//!
//! **Which `redis`.** The connector builds on `redis` 1.8 (the crate's 1.x
//! line), re-exported as [`redial::redis::redis`](self::redis): its
//! [`Op`](Connector::Op) is that crate's `Cmd` and its output that crate's
//! `Value`. If your own `redis` dependency is another version (its `Cmd`
//! is then another type), build commands with the re-export:
//! `redial::redis::redis::cmd("INCR")`.
//!
//! **Runtimes.** tokio (feature `tokio`) and smol (feature `smol`) through
//! the crate's own runtime support (`tokio-comp`, `smol-comp`, switched on
//! by those features); at least one of them is needed. The crate picks the
//! runtime when a connection is opened (`redis::aio::Runtime::locate`, in
//! redis-rs `src/aio/runtime.rs`): with one of the two compiled in, that
//! one; with both, the one chosen by `redis::aio::prefer_tokio` /
//! `prefer_smol` if the application called either, else tokio when the
//! connecting task runs inside a tokio runtime and smol otherwise. The
//! connector opens every connection in the client's driver task, which runs
//! on the client's [`Runtime`](crate::Runtime), so the connection (its
//! socket and its read/write task) lives on the runtime the client runs
//! on: [`TokioRuntime`](crate::runtime::TokioRuntime) → tokio,
//! [`SmolRuntime`](crate::runtime::SmolRuntime) → smol (do not call
//! `prefer_tokio` / `prefer_smol` in a program that runs clients on both).
//! Commands need no runtime of their own: the crate's response timeout is
//! off (the core times every op), so an op runs in any caller's task.
//! async-std is not supported: redis 1.0 removed its `async-std-comp`
//! (async-std is discontinued upstream).
//!
//! Errors are read as (see [`classify`]): `READONLY` →
//! [`Failure::WrongServer`]; `LOADING`, `BUSY`, `TRYAGAIN`, `MASTERDOWN`,
//! `CLUSTERDOWN` (the server refused for now and did not run the command) →
//! [`Failure::Pushback`] with no hint; IO errors, dropped or refused
//! connections, timeouts and a reply stream that cannot be parsed →
//! [`Failure::ConnectionLost`]; anything else → [`Failure::ServerError`].
//!
//! **Role.** Right after each connect the connector asks the server its
//! role with `ROLE` (falling back to `INFO replication` where `ROLE` is
//! refused, e.g. by an ACL): `master` → [`Role::Primary`], `slave` →
//! [`Role::Secondary`], anything else or no answer → [`Role::Unknown`].
//! With [`Config::require_primary`](crate::core::Config::require_primary)
//! (on in `Config::recommended()`) the client then refuses a replica and
//! tries the next address of the seed list.
//!
//! **Time limits.** Redis has no per-command time limit, so an op's
//! deadline or command timeout is client-side only (the client stops
//! waiting; the server finishes the command), except for the blocking
//! commands, whose own timeout argument is lowered to half the time left
//! ([`Connector::run_within`]; see [`bounded`]), so that the server gives
//! up before the client does (a pop the server answers after the client
//! stopped waiting would lose its element), unless the one-way latency is
//! more than half the time left: `BLPOP`, `BRPOP`,
//! `BRPOPLPUSH`, `BLMOVE`, `BZPOPMIN`, `BZPOPMAX` (last argument, seconds),
//! `BLMPOP`, `BZMPOP` (first argument, seconds). A blocking command with a
//! shorter timeout of its own keeps it. The crate's own connect and
//! response timeouts (1 s and 500 ms by default in redis 1.x) are switched
//! off: the core's connect timeout, deadlines and command timeout decide.
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

use event_listener::Event;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisError, RedisResult, Value,
};

use crate::connector::{Connector, Failure};
use crate::core::{ConnectFailure, LossKind, Role};

/// The `redis` crate (version 1.8) this connector builds on: its `Cmd` is
/// the connector's op and its `Value` the connector's output. Build
/// commands with `redial::redis::redis::cmd` if your own `redis`
/// dependency is another version.
pub use ::redis;

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

/// What a server error code (the first word of a redis error reply) says
/// about the command it answered, when it says the command did not run:
/// `READONLY` → [`Failure::WrongServer`]; `LOADING` (loading its data
/// set), `BUSY` (a script or function is running), `TRYAGAIN`,
/// `MASTERDOWN` (a replica that lost its primary), `CLUSTERDOWN` →
/// [`Failure::Pushback`] with no hint (redis gives none). Any other code
/// (`BUSYKEY`, `BUSYGROUP`, `NOTBUSY`, `ERR`, …) → `None`: an answer of
/// the server's own.
pub fn refusal(code: &str) -> Option<Failure> {
    match code {
        "READONLY" => Some(Failure::WrongServer),
        "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" => {
            Some(Failure::Pushback { retry_after: None })
        }
        _ => None,
    }
}

/// The code of a redis error, when the error is a server's reply (not an
/// IO or client error).
fn server_code(e: &RedisError) -> Option<&str> {
    if e.is_io_error() { None } else { e.code() }
}

/// Reads a failed connect the way the core needs it: a wrong password or
/// missing permission, or a bad client config → `rejected` (not retried);
/// a server that refused for now (loading its data set, busy, asking to
/// try again, primary or cluster down: see [`refusal`]) → `unavailable`;
/// a timeout → `timed_out`; anything else (refused, unreachable, reset) →
/// `refused`.
pub fn classify_connect(e: &RedisError) -> ConnectFailure {
    let code = server_code(e).unwrap_or("");
    if matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
    ) || matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
    {
        ConnectFailure::Rejected
    } else if matches!(refusal(code), Some(Failure::Pushback { .. })) {
        ConnectFailure::Unavailable
    } else if e.is_timeout() {
        ConnectFailure::TimedOut
    } else {
        ConnectFailure::Refused
    }
}

/// Reads a redis error the way the core needs it: a refusal (see
/// [`refusal`]: `READONLY` → wrong server; `LOADING`, `BUSY`, `TRYAGAIN`,
/// `MASTERDOWN`, `CLUSTERDOWN` → pushback); a broken connection (an IO
/// error, or one the crate says needs a new connection: a reply stream it
/// cannot parse) → connection lost; anything else → the server's own
/// error.
pub fn classify(e: &RedisError) -> Failure {
    if let Some(f) = server_code(e).and_then(refusal) {
        f
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

/// The role in a `ROLE` reply: its first element, `master` →
/// [`Role::Primary`], `slave` (or `replica`) → [`Role::Secondary`],
/// anything else (`sentinel`, not an array) → [`Role::Unknown`].
pub fn role_from_reply(reply: &Value) -> Role {
    let first = match reply {
        Value::Array(items) => items.first(),
        _ => None,
    };
    let word = match first {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
        Some(Value::SimpleString(s)) => Some(s.as_str()),
        _ => None,
    };
    role_word(word.unwrap_or(""))
}

/// The role in an `INFO replication` reply (its `role:` line).
pub fn role_from_info(info: &str) -> Role {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("role:"))
        .map_or(Role::Unknown, |w| role_word(w.trim()))
}

fn role_word(word: &str) -> Role {
    match word {
        "master" => Role::Primary,
        "slave" | "replica" => Role::Secondary,
        _ => Role::Unknown,
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
    event: Event,
}

/// A blocking command (see the [module docs](self)) with its timeout
/// argument lowered to half of `left` (whole milliseconds, at least 1 ms),
/// when its own is longer or 0 (block for ever); `None` for any other
/// command, or one whose timeout is already shorter or unreadable.
pub fn bounded(cmd: &Cmd, left: std::time::Duration) -> Option<Cmd> {
    let mut args: Vec<Vec<u8>> = Vec::new();
    for a in cmd.args_iter() {
        match a {
            redis::Arg::Simple(b) => args.push(b.to_vec()),
            // A cursor, or an argument kind of a later crate version.
            _ => return None,
        }
    }
    let name = args.first()?.to_ascii_uppercase();
    let at = match name.as_slice() {
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BZPOPMIN" | b"BZPOPMAX" => {
            args.len().checked_sub(1).filter(|&i| i >= 2)?
        }
        b"BLMPOP" | b"BZMPOP" => 1,
        _ => return None,
    };
    let own: f64 = std::str::from_utf8(args.get(at)?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let limit = (left.as_secs_f64() * 500.0).floor().max(1.0) / 1000.0;
    if !own.is_finite() || own < 0.0 || (own > 0.0 && own <= limit) {
        return None;
    }
    args[at] = format!("{limit:.3}").into_bytes();
    let mut out = redis::cmd(std::str::from_utf8(&args[0]).ok()?);
    for a in &args[1..] {
        out.arg(a.as_slice());
    }
    Some(out)
}

/// A build with tokio support only (no feature `smol`) cannot connect
/// outside a tokio runtime: the crate would panic spawning the connection's
/// task. Said as an error instead (the client does not retry it).
fn runtime_available() -> Result<(), RedisError> {
    #[cfg(all(feature = "tokio", not(feature = "smol")))]
    if ::tokio::runtime::Handle::try_current().is_err() {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "the redis connector runs on tokio or smol: this client is not on a tokio \
             runtime and redial's feature `smol` is off",
        )));
    }
    Ok(())
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
            RedisError::from((ErrorKind::InvalidClientConfig, "no such endpoint"))
        })?;
        runtime_available()?;
        // No timeouts of the crate's own: the core times connects and
        // responses (and an op then needs no runtime of its own).
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        if client.get_connection_info().redis_settings().protocol() != ProtocolVersion::RESP3 {
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            return Ok(RedisConn { conn, closed: None });
        }
        let closed = Arc::new(Closed::default());
        let signal = closed.clone();
        let config = config.set_push_sender(move |info: PushInfo| {
            if info.kind == PushKind::Disconnection {
                signal.seen.store(true, Ordering::Release);
                signal.event.notify(usize::MAX);
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

    async fn run_within(
        &self,
        conn: &RedisConn,
        op: &Cmd,
        time_left: Option<std::time::Duration>,
    ) -> Result<Value, RedisError> {
        let mut conn = conn.conn.clone();
        match time_left.and_then(|t| bounded(op, t)) {
            Some(cmd) => cmd.query_async(&mut conn).await,
            None => op.query_async(&mut conn).await,
        }
    }

    fn classify(&self, error: &RedisError) -> Failure {
        classify(error)
    }

    async fn ping(&self, conn: &RedisConn) -> Result<(), RedisError> {
        let mut conn = conn.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    async fn role(&self, conn: &RedisConn) -> Role {
        let mut c = conn.conn.clone();
        match redis::cmd("ROLE").query_async::<Value>(&mut c).await {
            Ok(reply) => role_from_reply(&reply),
            Err(e) if e.is_io_error() || e.is_timeout() => Role::Unknown,
            // ROLE refused (renamed, or an ACL): INFO says it too.
            Err(_) => redis::cmd("INFO")
                .arg("replication")
                .query_async::<String>(&mut c)
                .await
                .map_or(Role::Unknown, |info| role_from_info(&info)),
        }
    }

    async fn closed(&self, conn: &RedisConn) -> LossKind {
        let Some(closed) = &conn.closed else {
            return std::future::pending().await;
        };
        while !closed.seen.load(Ordering::Acquire) {
            // Registered before the check, so a close in between is not missed.
            let listener = closed.event.listen();
            if closed.seen.load(Ordering::Acquire) {
                break;
            }
            listener.await;
        }
        LossKind::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ErrorKind as K;
    use redis::ServerErrorKind as SK;

    const PUSHBACK: Failure = Failure::Pushback { retry_after: None };

    fn words(c: &Cmd) -> Vec<String> {
        c.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<cursor>".into(),
            })
            .collect()
    }

    #[test]
    fn blocking_commands_get_the_time_left_as_their_timeout() {
        let ms = std::time::Duration::from_millis;
        // Block for ever (0) or longer than the time left: lowered.
        let c = redis::cmd("BLPOP").arg("q1").arg("q2").arg(0).clone();
        assert_eq!(
            words(&bounded(&c, ms(500)).unwrap()),
            ["BLPOP", "q1", "q2", "0.250"]
        );
        let c = redis::cmd("blmove")
            .arg("a")
            .arg("b")
            .arg("LEFT")
            .arg("RIGHT")
            .arg(30)
            .clone();
        assert_eq!(
            words(&bounded(&c, ms(3000)).unwrap()),
            ["blmove", "a", "b", "LEFT", "RIGHT", "1.500"]
        );
        let c = redis::cmd("BZMPOP")
            .arg(10)
            .arg(1)
            .arg("z")
            .arg("MIN")
            .clone();
        assert_eq!(words(&bounded(&c, ms(4)).unwrap())[1], "0.002");
        // Never below a millisecond (0 would block for ever).
        let c = redis::cmd("BRPOP").arg("q").arg(5).clone();
        assert_eq!(words(&bounded(&c, ms(0)).unwrap())[2], "0.001");
        // A shorter timeout of its own is kept; other commands untouched.
        let c = redis::cmd("BRPOP").arg("q").arg("0.1").clone();
        assert!(bounded(&c, ms(1000)).is_none());
        assert!(bounded(&redis::cmd("GET").arg("k").clone(), ms(5)).is_none());
        assert!(bounded(&redis::cmd("BLPOP").arg("k").clone(), ms(5)).is_none());
        let c = redis::cmd("BLPOP").arg("q").arg("soon").clone();
        assert!(
            bounded(&c, ms(5)).is_none(),
            "unreadable timeout left alone"
        );
    }

    /// The error a server's reply `-<line>` turns into, parsed by the crate
    /// exactly as from the wire (`LOADING …` is a kind the crate knows,
    /// `BUSY …` an extension code).
    fn reply(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Ok(Value::ServerError(e)) => e.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::from(kind))
    }

    #[test]
    fn replies_parse_into_the_kinds_the_crate_knows() {
        let kinds = [
            ("LOADING Redis is loading", Some(SK::BusyLoading)),
            ("TRYAGAIN Multiple keys", Some(SK::TryAgain)),
            ("MASTERDOWN Link is down", Some(SK::MasterDown)),
            ("CLUSTERDOWN Hash slot not served", Some(SK::ClusterDown)),
            ("READONLY You can't write", Some(SK::ReadOnly)),
            ("BUSY Redis is busy", None),
        ];
        for (line, kind) in kinds {
            let e = reply(line);
            let want = kind.map_or(K::Extension, K::Server);
            assert_eq!(e.kind(), want, "{line}");
            assert_eq!(Some(line.split(' ').next().unwrap()), e.code(), "{line}");
        }
    }

    #[test]
    fn refusal_codes() {
        assert_eq!(refusal("READONLY"), Some(Failure::WrongServer));
        for code in ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"] {
            assert_eq!(refusal(code), Some(PUSHBACK), "{code}");
        }
        for code in [
            "ERR",
            "BUSYKEY",
            "BUSYGROUP",
            "NOTBUSY",
            "NOSCRIPT",
            "EXECABORT",
            "MOVED",
            "WRONGTYPE",
            "OOM",
            "",
            "loading",
        ] {
            assert_eq!(refusal(code), None, "{code}");
        }
    }

    /// Refusals for now, as servers word them (`BUSY` has no kind of its
    /// own in the crate: an extension error).
    const REFUSED_FOR_NOW: [&str; 5] = [
        "LOADING Redis is loading the dataset in memory",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "MASTERDOWN Link with MASTER is down",
        "CLUSTERDOWN The cluster is down",
        "BUSY Redis is busy running a script",
    ];

    #[test]
    fn ops_read_as_pushback() {
        for line in REFUSED_FOR_NOW {
            assert_eq!(classify(&reply(line)), PUSHBACK, "{line}");
        }
    }

    #[test]
    fn ops_read_as_wrong_server_lost_or_server_error() {
        assert_eq!(
            classify(&reply(
                "READONLY You can't write against a read only replica."
            )),
            Failure::WrongServer
        );
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::TimedOut,
        ] {
            assert_eq!(classify(&io(kind)), Failure::ConnectionLost, "{kind:?}");
        }
        // A reply stream the crate cannot parse: the connection is unusable.
        let garbled = redis::parse_redis_value(b"?what\r\n").expect_err("bad reply");
        assert_eq!(garbled.kind(), K::Parse);
        assert_eq!(classify(&garbled), Failure::ConnectionLost);
        for e in [
            reply("ERR unknown command 'FOO'"),
            reply("NOSCRIPT No matching script"),
            reply("EXECABORT Transaction discarded"),
            reply("NOTBUSY No scripts in execution right now."),
            reply("BUSYKEY Target key name already exists."),
            reply("BUSYGROUP Consumer Group name already exists"),
            reply("WRONGTYPE Operation against a key holding the wrong kind of value"),
            redis::make_extension_error("OOM".into(), Some("command not allowed".into())),
            RedisError::from((K::UnexpectedReturnType, "Response was of incompatible type")),
        ] {
            assert_eq!(classify(&e), Failure::ServerError, "{e:?}");
        }
    }

    #[test]
    fn connects_read_as_unavailable_rejected_or_refused() {
        for line in REFUSED_FOR_NOW {
            assert_eq!(
                classify_connect(&reply(line)),
                ConnectFailure::Unavailable,
                "{line}"
            );
        }
        for e in [
            RedisError::from((K::AuthenticationFailed, "Password authentication failed")),
            RedisError::from((K::InvalidClientConfig, "bad url")),
            reply("WRONGPASS invalid username-password pair or user is disabled."),
            reply("NOAUTH Authentication required."),
            reply("NOPERM User has no permissions to run the 'ping' command"),
        ] {
            assert_eq!(classify_connect(&e), ConnectFailure::Rejected, "{e:?}");
        }
        assert_eq!(
            classify_connect(&io(std::io::ErrorKind::TimedOut)),
            ConnectFailure::TimedOut
        );
        assert_eq!(
            classify_connect(&io(std::io::ErrorKind::ConnectionRefused)),
            ConnectFailure::Refused
        );
    }

    #[test]
    fn roles_from_role_replies() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let master = Value::Array(vec![bulk("master"), Value::Int(3129), Value::Array(vec![])]);
        assert_eq!(role_from_reply(&master), Role::Primary);
        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(9538),
            bulk("connected"),
            Value::Int(3167),
        ]);
        assert_eq!(role_from_reply(&replica), Role::Secondary);
        let simple = Value::Array(vec![Value::SimpleString("master".into())]);
        assert_eq!(role_from_reply(&simple), Role::Primary);
        let sentinel = Value::Array(vec![bulk("sentinel"), Value::Array(vec![])]);
        assert_eq!(role_from_reply(&sentinel), Role::Unknown);
        assert_eq!(role_from_reply(&Value::Nil), Role::Unknown);
        assert_eq!(role_from_reply(&Value::Array(vec![])), Role::Unknown);
    }

    #[test]
    fn roles_from_info_replication() {
        let primary = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n";
        assert_eq!(role_from_info(primary), Role::Primary);
        let replica = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n";
        assert_eq!(role_from_info(replica), Role::Secondary);
        assert_eq!(role_from_info("# Replication\r\n"), Role::Unknown);
        assert_eq!(role_from_info("role:sentinel"), Role::Unknown);
    }
}
