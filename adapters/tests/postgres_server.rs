//! PostgreSQL restarted (`pg_ctl restart -m fast` / `-m immediate`) during a
//! stream of transactions, each inserting a unique id (tokio).
//!
//! `cargo test -p redial --features postgres --test postgres_server -- --nocapture --test-threads 1`

#![cfg(feature = "postgres")]

#[path = "support/pg_ops.rs"]
mod pg_ops;
mod support;

#[path = "support/rt.rs"]
mod rt;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pg_ops::insert;
use redial::core::Config;
use redial::postgres::PostgresConnector;
use redial::{CallOptions, Client};
use support::PgServer;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reported {
    Committed,
    MaybeRun,
    NotRun,
}

fn scenario(mode: &'static str) {
    let Some(server) = PgServer::start() else {
        return;
    };
    let server = Arc::new(server);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            tokio::time::timeout(Duration::from_secs(90), run(server, mode))
                .await
                .expect("test exceeded its time bound");
        });
}

async fn run(server: Arc<PgServer>, mode: &'static str) {
    let (admin, conn) = tokio_postgres::connect(&server.conn_str(), tokio_postgres::NoTls)
        .await
        .expect("admin connect");
    tokio::spawn(conn);
    // No unique constraint: a duplicate would show.
    admin
        .batch_execute("CREATE TABLE t (id bigint NOT NULL)")
        .await
        .expect("create table");
    drop(admin);

    let config = support::buffering(
        Duration::from_secs(2),
        (Duration::from_millis(200), Duration::from_secs(1)),
    )
    .build()
    .expect("config");
    let client = rt::recorded(
        Client::builder(PostgresConnector::new([server.conn_str()]).expect("conn str"))
            .config(config)
            .seed(4),
    )
    .build()
    .expect("client");

    let next = Arc::new(AtomicI64::new(1));
    let stop = Instant::now() + Duration::from_millis(3000);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (c, next) = (client.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < stop {
                let id = next.fetch_add(1, Ordering::SeqCst);
                let r = c.call_with(insert(id), CallOptions::default()).await;
                let rep = match r {
                    Ok(()) => Reported::Committed,
                    Err(e) if e.maybe_executed() => Reported::MaybeRun,
                    Err(_) => Reported::NotRun,
                };
                out.push((id, rep));
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s2 = server.clone();
    let t = Instant::now();
    tokio::task::spawn_blocking(move || s2.restart(mode))
        .await
        .expect("restart");
    let restart_took = t.elapsed();
    let mut reported = BTreeMap::new();
    for w in workers {
        for (id, rep) in w.await.expect("worker") {
            reported.insert(id, rep);
        }
    }

    let (check, conn) = tokio_postgres::connect(&server.conn_str(), tokio_postgres::NoTls)
        .await
        .expect("check connect");
    tokio::spawn(conn);
    let rows = check
        .query("SELECT id, count(*) FROM t GROUP BY id", &[])
        .await
        .expect("select");
    let mut in_table = BTreeMap::new();
    for r in rows {
        in_table.insert(r.get::<_, i64>(0), r.get::<_, i64>(1));
    }
    let count = |k| reported.values().filter(|r| **r == k).count();
    let maybe_landed = reported
        .iter()
        .filter(|(id, r)| **r == Reported::MaybeRun && in_table.contains_key(id))
        .count();
    eprintln!(
        "postgres restart -m {mode} (took {restart_took:?}): {} transactions, {} committed, {} may have run ({} of them in the table), {} certainly not run; {} rows",
        reported.len(),
        count(Reported::Committed),
        count(Reported::MaybeRun),
        maybe_landed,
        count(Reported::NotRun),
        in_table.values().sum::<i64>()
    );
    for (id, n) in &in_table {
        assert_eq!(*n, 1, "id {id} inserted {n} times");
    }
    for (id, rep) in &reported {
        match rep {
            Reported::Committed => assert!(in_table.contains_key(id), "committed id {id} missing"),
            Reported::NotRun => assert!(!in_table.contains_key(id), "not-run id {id} present"),
            Reported::MaybeRun => {}
        }
    }
    for id in in_table.keys() {
        assert!(reported.contains_key(id), "unknown id {id}");
    }
    assert!(count(Reported::Committed) > 0);
    client.close().await;
}

#[test]
fn restart_fast_during_transactions() {
    scenario("fast");
    rt::check_traces("postgres_restart_fast");
}

#[test]
fn restart_immediate_during_transactions() {
    scenario("immediate");
    rt::check_traces("postgres_restart_immediate");
}

/// A standby and its primary in ONE connection string
/// (`host=127.0.0.1,127.0.0.1 port=<standby>,<primary>`), standby first,
/// under `Config::recommended()` (`require_primary` on): the connector
/// splits it into two endpoints, asks each connection
/// `pg_is_in_recovery()`, and the client refuses the standby and settles
/// on the primary: writes go through. Without the split tokio-postgres
/// would try the hosts in order inside one attempt and land on the
/// standby every time.
#[test]
fn standby_first_in_a_multi_host_string() {
    let Some(primary) = PgServer::start() else {
        return;
    };
    let standby = primary.standby();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            tokio::time::timeout(Duration::from_secs(60), async {
                let (admin, conn) =
                    tokio_postgres::connect(&primary.conn_str(), tokio_postgres::NoTls)
                        .await
                        .expect("admin connect");
                tokio::spawn(conn);
                admin
                    .batch_execute("CREATE TABLE t (id bigint NOT NULL)")
                    .await
                    .expect("create table");
                let seeds = format!(
                    "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres",
                    standby.port, primary.port
                );
                let connector = PostgresConnector::new([seeds]).expect("conn str");
                assert_eq!(redial::Connector::endpoints(&connector), 2);
                let (client, mut ev) = rt::recorded(
                    Client::builder(connector)
                        .config(Config::recommended())
                        .seed(4),
                )
                .build_with_events()
                .expect("client");
                let mut ids = Vec::new();
                for id in 1..=5 {
                    client.call(insert(id)).await.expect("insert on the primary");
                    ids.push(id);
                }
                let mut events = Vec::new();
                while let Ok(Some(e)) =
                    tokio::time::timeout(Duration::from_millis(100), ev.next()).await
                {
                    events.push(e.to_string());
                }
                let rows: i64 = admin
                    .query_one("SELECT count(*) FROM t", &[])
                    .await
                    .expect("count")
                    .get(0);
                eprintln!(
                    "postgres standby first: {} inserts ok, {rows} rows on the primary; events {events:?}",
                    ids.len()
                );
                assert_eq!(rows, 5);
                assert!(
                    events
                        .iter()
                        .any(|e| e.contains("last attempt not_primary")),
                    "the standby was refused on connect: {events:?}"
                );
                assert!(
                    events.iter().any(|e| e.contains("to endpoint 1")),
                    "{events:?}"
                );
                client.close().await;
            })
            .await
            .expect("test exceeded its time bound");
        });
    rt::check_traces("postgres_standby_first");
}
