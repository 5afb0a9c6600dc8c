//! Seed 003's `maxTimeMS`, on PostgreSQL: an op's deadline reaches the
//! server. A `pg_sleep(5)` with a 200 ms deadline fails `deadline_exceeded`
//! (may have run) on the client, and the server cancels the statement
//! itself (`statement_timeout`): `pg_stat_activity` no longer shows it
//! running, and the connection serves the next op with the default
//! timeout again.
//!
//! `cargo test -p redial --features postgres --test postgres_deadline -- --nocapture`

#![cfg(feature = "postgres")]

mod support;

use std::time::{Duration, Instant};

use redial::core::{Config, ErrorKind};
use redial::postgres::{PgOp, PostgresConnector};
use redial::{CallOptions, Client};
use support::PgServer;

fn sleep_op(secs: f64) -> PgOp<String> {
    PgOp::new(move |c| {
        Box::pin(async move {
            c.execute("SELECT pg_sleep($1)", &[&secs]).await?;
            Ok(String::new())
        })
    })
}

fn setting() -> PgOp<String> {
    PgOp::new(|c| {
        Box::pin(async move {
            let row = c.query_one("SHOW statement_timeout", &[]).await?;
            Ok(row.get::<_, String>(0))
        })
    })
}

/// Statements running `pg_sleep` right now, other than the watcher's own.
async fn sleeping(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

#[test]
fn a_deadline_cancels_the_statement_on_the_server() {
    let Some(server) = PgServer::start() else {
        return;
    };
    support::run_bounded(Duration::from_secs(60), async move {
        let (admin, conn) = tokio_postgres::connect(&server.conn_str(), tokio_postgres::NoTls)
            .await
            .expect("admin connect");
        tokio::spawn(conn);
        let client = Client::new(
            Config::recommended(),
            PostgresConnector::new([server.conn_str()]).expect("conn str"),
        )
        .expect("client");

        // Without a deadline: the server's default (no limit).
        assert_eq!(client.call(setting()).await.expect("show"), "0");

        let started = Instant::now();
        let e = client
            .call_with(
                sleep_op(5.0),
                CallOptions::new().deadline(Duration::from_millis(200)),
            )
            .await
            .expect_err("a 5 s sleep cannot meet a 200 ms deadline");
        let took = started.elapsed();
        assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
        assert!(e.maybe_executed(), "it was sent");
        assert!(took < Duration::from_secs(1), "failed after {took:?}");

        // On the server: the statement is gone soon after (its
        // statement_timeout was what was left of the 200 ms), not
        // sleeping for the rest of its 5 s.
        let mut still = sleeping(&admin).await;
        let until = Instant::now() + Duration::from_secs(2);
        while still > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
            still = sleeping(&admin).await;
        }
        assert_eq!(still, 0, "the server still runs the abandoned pg_sleep");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "cancelled by the server, not finished: {:?}",
            started.elapsed()
        );
        println!(
            "deadline_exceeded after {took:?}; no pg_sleep on the server {:?} after the call",
            started.elapsed()
        );

        // The same connection serves the next op with the default
        // timeout restored.
        assert_eq!(client.call(setting()).await.expect("show"), "0");
        // An op with a generous deadline completes, and ran under a
        // limit of what was left of it.
        let limited = client
            .call_with(
                setting(),
                CallOptions::new().deadline(Duration::from_secs(30)),
            )
            .await
            .expect("show under a deadline");
        let ms: u64 = limited
            .trim_end_matches("ms")
            .trim_end_matches('s')
            .parse()
            .unwrap_or(0);
        assert!(
            limited != "0" && ms > 0,
            "a statement_timeout was set: {limited}"
        );
        client.close().await;
    });
}
