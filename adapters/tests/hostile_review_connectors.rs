//! A hostile review of the MySQL and PostgreSQL connectors against private
//! servers: what an op that is cut short (its deadline, or its caller
//! dropping the call) or fails mid-transaction leaves on the connection
//! for the next op. Each test failed before the fix it guards:
//!
//! - MySQL: an op cut mid-statement left `mysql_async`'s connection
//!   unusable, so the next op (never sent) failed `connection_lost`
//!   "may have run";
//! - MySQL and PostgreSQL: a transaction begun by hand (`BEGIN`) and
//!   abandoned held the next op's autocommit write uncommitted though it
//!   was reported ok; on PostgreSQL an aborted one refused every later op
//!   (25P02) for the life of the connection;
//! - PostgreSQL: a statement whose caller gave up kept running, and the
//!   next op waited behind it until the response timeout (15 s) failed it
//!   `connection_lost` "may have run".
//!
//! `cargo test -p redial --all-features --test hostile_review_connectors -- --nocapture`

#![cfg(all(feature = "mysql", feature = "postgres"))]

mod support;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use redial::core::{Config, ErrorKind};
use redial::mysql::{MySqlConnector, MySqlOp};
use redial::postgres::{PgOp, PostgresConnector};
use redial::{CallOptions, Client};
use support::PgServer;
use support::mariadb::MariaDbServer;

// ---------------------------------------------------------------- MySQL

fn my_client(url: &str) -> Client<MySqlConnector<i64>> {
    Client::new(
        Config::recommended(),
        MySqlConnector::new([url]).expect("url"),
    )
    .expect("client")
}

/// `SELECT <sql>` read as an integer.
fn my_scalar(sql: &'static str) -> MySqlOp<i64> {
    MySqlOp::new(move |c| {
        Box::pin(async move {
            let v: Option<i64> = c.query_first(sql).await?;
            Ok(v.unwrap_or(-1))
        })
    })
}

fn my_exec(sql: &'static str) -> MySqlOp<i64> {
    MySqlOp::new(move |c| {
        Box::pin(async move {
            c.query_drop(sql).await?;
            Ok(0)
        })
    })
}

/// An op past its deadline (the statement cut short on the client) must
/// not cost the next op, which never ran on the server, a
/// `connection_lost` "may have run".
#[test]
fn mysql_an_op_after_a_deadline_exceeded_op_runs() {
    let Some(server) = MariaDbServer::start() else {
        return;
    };
    support::run_bounded(Duration::from_secs(60), async move {
        let client = my_client(&server.url());
        assert_eq!(client.call(my_scalar("SELECT 1")).await.expect("warm"), 1);
        let e = client
            .call_with(
                my_scalar("SELECT SLEEP(2)"),
                CallOptions::new().deadline(Duration::from_millis(200)),
            )
            .await
            .expect_err("a 2 s sleep misses a 200 ms deadline");
        assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
        let next = client.call(my_scalar("SELECT 2")).await;
        assert_eq!(
            next.as_ref().ok(),
            Some(&2),
            "the op after a deadline_exceeded op failed: {next:?}"
        );
        client.close().await;
    });
}

/// The same with the call dropped by its caller mid-statement.
#[test]
fn mysql_an_op_after_a_cancelled_op_runs() {
    let Some(server) = MariaDbServer::start() else {
        return;
    };
    support::run_bounded(Duration::from_secs(60), async move {
        let client = my_client(&server.url());
        assert_eq!(client.call(my_scalar("SELECT 1")).await.expect("warm"), 1);
        let cut = tokio::time::timeout(
            Duration::from_millis(200),
            client.call(my_scalar("SELECT SLEEP(1)")),
        )
        .await;
        assert!(cut.is_err(), "cut short");
        let next = client.call(my_scalar("SELECT 2")).await;
        assert_eq!(
            next.as_ref().ok(),
            Some(&2),
            "the op after a cancelled op failed: {next:?}"
        );
        client.close().await;
    });
}

/// An op that opens a transaction with `BEGIN` (as many do) and is cut
/// short between two statements (its caller gave up while it awaited
/// something else): the next op, an autocommit `INSERT` reported ok, must
/// be committed, not left inside the abandoned transaction.
#[test]
fn mysql_a_transaction_abandoned_by_a_cancelled_op_does_not_swallow_the_next_op() {
    let Some(server) = MariaDbServer::start() else {
        return;
    };
    server.sql("CREATE TABLE redial.t (id BIGINT NOT NULL) ENGINE=InnoDB");
    support::run_bounded(Duration::from_secs(60), async move {
        let client = my_client(&server.url());
        let slow_tx = MySqlOp::new(|c| {
            Box::pin(async move {
                c.query_drop("BEGIN").await?;
                c.query_drop("INSERT INTO t (id) VALUES (1)").await?;
                // Something else the transaction waits for.
                tokio::time::sleep(Duration::from_secs(5)).await;
                c.query_drop("COMMIT").await?;
                Ok(0)
            })
        });
        let cut = tokio::time::timeout(Duration::from_millis(300), client.call(slow_tx)).await;
        assert!(cut.is_err(), "cut short");
        client
            .call(my_exec("INSERT INTO t (id) VALUES (2)"))
            .await
            .expect("the next op: reported ok");
        // Reported ok: it must be visible to everyone.
        let rows = server.sql("SELECT id FROM redial.t ORDER BY id");
        assert!(
            rows.lines().any(|l| l == "2"),
            "an insert reported ok is not committed (rows: {rows:?})"
        );
        client.close().await;
    });
}

// ----------------------------------------------------------- PostgreSQL

fn pg_client(server: &PgServer) -> Client<PostgresConnector<i64>> {
    Client::new(
        Config::recommended(),
        PostgresConnector::new([server.conn_str()]).expect("conn str"),
    )
    .expect("client")
}

fn pg_exec(sql: &'static str) -> PgOp<i64> {
    PgOp::new(move |c| {
        Box::pin(async move {
            c.batch_execute(sql).await?;
            Ok(0)
        })
    })
}

/// As the MySQL case: `BEGIN` issued by hand, the op cut short between
/// statements; the next op's autocommit insert, reported ok, must be
/// committed.
#[test]
fn postgres_a_transaction_abandoned_by_a_cancelled_op_does_not_swallow_the_next_op() {
    let Some(server) = PgServer::start() else {
        return;
    };
    server.psql("CREATE TABLE t (id BIGINT NOT NULL)");
    let server = std::sync::Arc::new(server);
    let s = server.clone();
    support::run_bounded(Duration::from_secs(60), async move {
        let client = pg_client(&s);
        let slow_tx = PgOp::new(|c| {
            Box::pin(async move {
                c.batch_execute("BEGIN").await?;
                c.batch_execute("INSERT INTO t (id) VALUES (1)").await?;
                tokio::time::sleep(Duration::from_secs(5)).await;
                c.batch_execute("COMMIT").await?;
                Ok(0)
            })
        });
        let cut = tokio::time::timeout(Duration::from_millis(300), client.call(slow_tx)).await;
        assert!(cut.is_err(), "cut short");
        client
            .call(pg_exec("INSERT INTO t (id) VALUES (2)"))
            .await
            .expect("the next op: reported ok");
        let rows = s.psql("SELECT id FROM t ORDER BY id");
        assert!(
            rows.lines().any(|l| l == "2"),
            "an insert reported ok is not committed (rows: {rows:?})"
        );
        client.close().await;
    });
}

/// A transaction begun by hand whose statement the server cancels at the
/// op's deadline (the connector's own `statement_timeout`): the session is
/// left in an aborted transaction. Every later op on that connection must
/// not fail with 25P02 ("current transaction is aborted") for ever.
#[test]
fn postgres_an_aborted_transaction_does_not_poison_the_connection() {
    let Some(server) = PgServer::start() else {
        return;
    };
    support::run_bounded(Duration::from_secs(60), async move {
        let client = pg_client(&server);
        let tx = PgOp::new(|c| {
            Box::pin(async move {
                c.batch_execute("BEGIN").await?;
                c.batch_execute("SELECT pg_sleep(2)").await?;
                c.batch_execute("COMMIT").await?;
                Ok(0)
            })
        });
        let e = client
            .call_with(tx, CallOptions::new().deadline(Duration::from_millis(200)))
            .await
            .expect_err("misses its deadline");
        assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
        // Let the server cancel the statement (deadline + grace).
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..3 {
            let r = client.call(pg_exec("SELECT 1")).await;
            assert!(r.is_ok(), "op {i} after the aborted transaction: {r:?}");
        }
        client.close().await;
    });
}

/// A statement with no deadline whose caller gives up: tokio-postgres
/// keeps the statement running on the server and the connection busy
/// with it, so the next op (never sent) waits behind it.
#[test]
#[ignore = "open: the fix (a cancel request before the next op) raced that op when the statement had already ended (a late cancel failed it with 57014, seen in CI twice), so it was taken out; the next op waits behind the abandoned statement"]
fn postgres_an_op_after_a_cancelled_long_statement_is_not_stuck_behind_it() {
    let Some(server) = PgServer::start() else {
        return;
    };
    support::run_bounded(Duration::from_secs(60), async move {
        let client = pg_client(&server);
        client.call(pg_exec("SELECT 1")).await.expect("warm");
        let cut = tokio::time::timeout(
            Duration::from_millis(200),
            client.call(pg_exec("SELECT pg_sleep(30)")),
        )
        .await;
        assert!(cut.is_err(), "cut short");
        let t = std::time::Instant::now();
        let next = client.call(pg_exec("SELECT 2")).await;
        let took = t.elapsed();
        println!("next op after the cancelled pg_sleep(30): {next:?} after {took:?}");
        assert!(
            next.is_ok() && took < Duration::from_secs(3),
            "the next op: {next:?} after {took:?}"
        );
        client.close().await;
    });
}

/// mariadbd SIGSTOPped mid-session: an op past its deadline, then an op
/// without one: bounded (the reopen of the session the first op broke
/// gives up after `REOPEN_TIMEOUT`), a lost connection; after SIGCONT the
/// client works again.
#[test]
fn mysql_a_stopped_server_after_a_deadline() {
    let Some(mut server) = MariaDbServer::start() else {
        return;
    };
    support::run_bounded(Duration::from_secs(90), async move {
        let client = my_client(&server.url());
        assert_eq!(client.call(my_scalar("SELECT 1")).await.expect("warm"), 1);
        server.pause();
        let e = client
            .call_with(
                my_scalar("SELECT 3"),
                CallOptions::new().deadline(Duration::from_millis(300)),
            )
            .await
            .expect_err("stopped");
        println!("with a deadline: {e}");
        let t = std::time::Instant::now();
        let next = client.call(my_scalar("SELECT 4")).await;
        let took = t.elapsed();
        println!("next op: {next:?} after {took:?}");
        // The session the cut op broke is opened again within
        // REOPEN_TIMEOUT; a stopped server fails it as a lost connection.
        let e = next.expect_err("stopped");
        assert_eq!(e.kind(), ErrorKind::ConnectionLost, "{e}");
        assert!(
            took < redial::mysql::REOPEN_TIMEOUT + Duration::from_secs(1),
            "{took:?}"
        );
        server.resume();
        let t = std::time::Instant::now();
        let after = client.call(my_scalar("SELECT 5")).await;
        println!("after SIGCONT: {after:?} after {:?}", t.elapsed());
        assert_eq!(after.ok(), Some(5));
        client.close().await;
        server.kill();
    });
}
