//! PostgreSQL failover to a promoted streaming standby, under a stream of
//! transactions that each insert a unique id (tokio).
//!
//! The seed list is `[primary, standby]` and the client runs
//! `Config::recommended()` (role check on, bounded buffer). The standby
//! replicates synchronously (`synchronous_standby_names = '*'` on the
//! primary), so a commit the primary acknowledged is on the standby: the
//! client's reports can be checked against the new primary's table alone.
//! Then the primary goes away (`pg_ctl stop -m immediate`, a crash, or
//! `-m fast`, a planned switchover), and after a pause, during which the
//! application keeps issuing transactions, the standby is promoted.
//!
//! Accounting, afterwards, on the new primary: every id reported
//! committed is there exactly once; no id reported certainly-not-run is
//! there; "may have run" ids are counted (and how many landed); no id is
//! there twice or unasked for; every transaction issued while the primary
//! was gone and the standby not yet promoted waited and then committed.
//! The run prints the counts and the time from the promotion to the first
//! transaction committed on the new primary.
//!
//! `cargo test -p redial --features postgres --test postgres_failover -- --nocapture`

#![cfg(feature = "postgres")]

#[path = "support/pg_ops.rs"]
mod pg_ops;
#[path = "support/rt.rs"]
mod rt;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pg_ops::insert;
use redial::core::{Config, ErrorKind};
use redial::postgres::PostgresConnector;
use redial::{Client, Error};
use support::PgServer;

/// What the client reported for one transaction, and when.
struct Report {
    result: Result<(), (ErrorKind, bool)>,
    submitted: Instant,
    done: Instant,
}

impl Report {
    fn committed(&self) -> bool {
        self.result.is_ok()
    }
    fn maybe_run(&self) -> bool {
        matches!(self.result, Err((_, true)))
    }
    fn not_run(&self) -> bool {
        matches!(self.result, Err((_, false)))
    }
}

/// Runs `insert(id)` and says what the client reported.
async fn transaction(client: &Client<PostgresConnector<()>>, id: i64) -> (i64, Report) {
    let submitted = Instant::now();
    let result = client
        .call(insert(id))
        .await
        .map_err(|e: Error<tokio_postgres::Error>| (e.kind(), e.maybe_executed()));
    let done = Instant::now();
    (
        id,
        Report {
            result,
            submitted,
            done,
        },
    )
}

fn failover(mode: &'static str) {
    let Some(primary) = PgServer::start() else {
        return;
    };
    // The table exists before the base backup, so on both servers.
    primary.psql("CREATE TABLE t (id bigint NOT NULL)");
    let standby = primary.streaming_standby();
    primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
    primary.psql("SELECT pg_reload_conf()");
    let synced = Instant::now() + Duration::from_secs(20);
    while primary.psql("SELECT sync_state FROM pg_stat_replication") != "sync" {
        assert!(
            Instant::now() < synced,
            "the standby never became synchronous"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (primary, standby) = (Arc::new(primary), Arc::new(standby));
    support::run_bounded(Duration::from_secs(120), run(primary, standby, mode));
    rt::check_traces(&format!("postgres_failover_{mode}"));
}

async fn run(primary: Arc<PgServer>, standby: Arc<PgServer>, mode: &'static str) {
    let connector =
        PostgresConnector::new([primary.conn_str(), standby.conn_str()]).expect("conn strs");
    let (client, mut events) = rt::recorded(
        Client::builder(connector)
            .config(Config::recommended())
            .seed(7),
    )
    .build_with_events()
    .expect("client");
    let ev_log = tokio::spawn(async move {
        let mut log = Vec::new();
        while let Some(e) = events.next().await {
            log.push(e.to_string());
        }
        log
    });

    let next = Arc::new(AtomicI64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    // Four callers issuing transactions back to back, and one issuing a
    // transaction every 50 ms without waiting for the previous one (so
    // that transactions keep being issued while the others wait).
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (c, next, stop) = (client.clone(), next.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                out.push(transaction(&c, next.fetch_add(1, Ordering::SeqCst)).await);
            }
            out
        }));
    }
    let (c, n, st) = (client.clone(), next.clone(), stop.clone());
    workers.push(tokio::spawn(async move {
        let mut each = Vec::new();
        while !st.load(Ordering::SeqCst) {
            let (c, id) = (c.clone(), n.fetch_add(1, Ordering::SeqCst));
            each.push(tokio::spawn(async move { transaction(&c, id).await }));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut out = Vec::new();
        for t in each {
            out.push(t.await.expect("ticker transaction"));
        }
        out
    }));

    tokio::time::sleep(Duration::from_millis(800)).await;
    let p = primary.clone();
    tokio::task::spawn_blocking(move || p.stop(mode))
        .await
        .expect("stop the primary");
    let primary_gone = Instant::now();
    // The application keeps issuing transactions while no server takes
    // writes: the old primary is gone, the standby refuses (role check).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = standby.clone();
    let promote_started = Instant::now();
    tokio::task::spawn_blocking(move || s.promote())
        .await
        .expect("promote the standby");
    let promoted = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);

    let mut reported = BTreeMap::new();
    for w in workers {
        for (id, r) in w.await.expect("worker") {
            reported.insert(id, r);
        }
    }
    client.close().await;
    let events = ev_log.await.expect("event log");

    let mut in_table = BTreeMap::new();
    for line in standby
        .psql("SELECT id, count(*) FROM t GROUP BY id")
        .lines()
    {
        let (id, n) = line.split_once('|').expect("id|count");
        in_table.insert(
            id.parse::<i64>().expect("id"),
            n.parse::<i64>().expect("count"),
        );
    }

    let count = |f: fn(&Report) -> bool| reported.values().filter(|r| f(r)).count();
    let mut failed_by_kind = BTreeMap::new();
    for r in reported.values() {
        if let Err((kind, maybe)) = r.result {
            *failed_by_kind
                .entry(format!("{}{}", kind.name(), if maybe { "?" } else { "" }))
                .or_insert(0) += 1;
        }
    }
    let maybe_landed = reported
        .iter()
        .filter(|(id, r)| r.maybe_run() && in_table.contains_key(id))
        .count();
    let lost = reported
        .iter()
        .filter(|(id, r)| r.committed() && !in_table.contains_key(id))
        .count();
    let doubled = in_table.values().filter(|n| **n > 1).count();
    // Issued while no server took writes (a margin after the primary went,
    // so that an op already on its way to the dying server is not counted).
    let window = primary_gone + Duration::from_millis(100)..promote_started;
    let during: Vec<_> = reported
        .values()
        .filter(|r| window.contains(&r.submitted))
        .collect();
    let first_commit = reported
        .values()
        .filter(|r| r.committed() && r.done > promoted)
        .map(|r| r.done - promoted)
        .min();
    let not_primary = events.iter().filter(|e| e.contains("not_primary")).count();
    println!(
        "postgres failover, primary stopped -m {mode}: {} transactions: {} committed, failed {failed_by_kind:?} \
         ({} may have run, {maybe_landed} of them landed; {} certainly not run); lost {lost}, doubled {doubled}; \
         {} issued during the promotion, {} of them committed; promotion took {:?}; \
         first commit on the new primary {:?} after the promotion; {not_primary} events naming not_primary",
        reported.len(),
        count(Report::committed),
        count(Report::maybe_run),
        count(Report::not_run),
        during.len(),
        during.iter().filter(|r| r.committed()).count(),
        promoted - promote_started,
        first_commit,
    );

    for (id, n) in &in_table {
        assert_eq!(*n, 1, "id {id} inserted {n} times");
        assert!(reported.contains_key(id), "unknown id {id}");
    }
    for (id, r) in &reported {
        if r.committed() {
            assert!(in_table.contains_key(id), "committed id {id} missing");
        }
        if r.not_run() {
            assert!(!in_table.contains_key(id), "not-run id {id} present");
        }
    }
    assert!(
        !during.is_empty(),
        "no transaction was issued during the promotion"
    );
    for r in &during {
        assert!(
            r.committed(),
            "a transaction issued during the promotion did not wait and commit: {:?}",
            r.result
        );
    }
    assert!(
        first_commit.is_some(),
        "nothing committed on the new primary"
    );
}

#[test]
fn primary_crashes_standby_promoted() {
    failover("immediate");
}

#[test]
fn planned_switchover_standby_promoted() {
    failover("fast");
}
