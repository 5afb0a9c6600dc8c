//! MariaDB killed, stopped, failed over and refusing, under a stream of
//! transactions each inserting a unique id into a table with no unique
//! constraint (so a duplicate would show); and the connector's reading of
//! every error class against a real private server (tokio).
//!
//! `cargo test -p redial --features mysql --test mysql_server -- --nocapture`

#![cfg(feature = "mysql")]

#[path = "support/rt.rs"]
mod rt;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::TxOpts;
use mysql_async::prelude::Queryable;
use redial::core::{Config, ConnectFailure, ErrorKind, Role};
use redial::mysql::{self, MySqlConnector, MySqlOp};
use redial::{CallOptions, Client, Connector, Failure};
use support::mariadb::{MariaDbPair, MariaDbServer};
use support::run_bounded;
use tokio::sync::Mutex;

type MyClient = Client<MySqlConnector<u32>>;

const TABLE: &str = "CREATE TABLE redial.t (id BIGINT NOT NULL) ENGINE=InnoDB";

/// One transaction inserting `id`; answers the `@@server_id` it ran on.
fn insert(id: i64) -> MySqlOp<u32> {
    MySqlOp::new(move |c| {
        Box::pin(async move {
            let mut tx = c.start_transaction(TxOpts::default()).await?;
            tx.exec_drop("INSERT INTO t (id) VALUES (?)", (id,)).await?;
            let server: Option<u32> = tx.query_first("SELECT @@server_id").await?;
            tx.commit().await?;
            Ok(server.unwrap_or(0))
        })
    })
}

/// An op running one query whose first column is read as text.
fn query(sql: &'static str) -> MySqlOp<u32> {
    MySqlOp::new(move |c| {
        Box::pin(async move {
            let v: Option<String> = c.query_first(sql).await?;
            Ok(v.and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |v| (v * 1000.0) as u32))
        })
    })
}

/// What the client said about one op.
#[derive(Debug, Clone)]
struct Rec {
    id: i64,
    /// `Ok(server id)` or the error's kind and `maybe_executed`.
    outcome: Result<u32, (ErrorKind, bool)>,
    took: Duration,
    done: Instant,
}

/// The buffering configuration of postgres_server.rs.
fn buffering() -> Config {
    support::buffering(
        Duration::from_secs(2),
        (Duration::from_millis(200), Duration::from_secs(1)),
    )
    .build()
    .expect("config")
}

/// A client, recorded: the test's end replays its trace
/// ([`rt::check_traces`]).
fn client(config: Config, urls: &[String]) -> MyClient {
    rt::recorded(
        Client::builder(MySqlConnector::new(urls).expect("urls"))
            .config(config)
            .seed(4),
    )
    .build()
    .expect("client")
}

/// `workers` tasks inserting fresh ids, one transaction at a time, for
/// `length`.
async fn stream(client: &MyClient, workers: usize, length: Duration) -> Vec<Rec> {
    let next = Arc::new(AtomicI64::new(1));
    let stop = Instant::now() + length;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (c, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < stop {
                let id = next.fetch_add(1, Ordering::SeqCst);
                let t = Instant::now();
                let r = c.call_with(insert(id), CallOptions::default()).await;
                out.push(Rec {
                    id,
                    outcome: r.map_err(|e| (e.kind(), e.maybe_executed())),
                    took: t.elapsed(),
                    done: Instant::now(),
                });
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all
}

/// Checks every op against the table (`id → rows`), prints one summary
/// line and returns it; fails the test on a lost, doubled, unknown or
/// not-run-but-present id, or when nothing committed.
fn account(name: &str, recs: &[Rec], table: &[(i64, i64)], extra: &str) -> String {
    let rows: BTreeMap<i64, i64> = table.iter().copied().collect();
    let (mut ok, mut maybe, mut maybe_landed) = (0, 0, 0);
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    let (mut lost, mut not_run_present) = (Vec::new(), Vec::new());
    for r in recs {
        match r.outcome {
            Ok(_) => {
                ok += 1;
                if !rows.contains_key(&r.id) {
                    lost.push(r.id);
                }
            }
            Err((kind, maybe_run)) => {
                *failed.entry(kind.to_string()).or_default() += 1;
                if maybe_run {
                    maybe += 1;
                    maybe_landed += usize::from(rows.contains_key(&r.id));
                } else if rows.contains_key(&r.id) {
                    not_run_present.push(r.id);
                }
            }
        }
    }
    let doubled: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    let unknown: Vec<_> = rows
        .keys()
        .filter(|id| !recs.iter().any(|r| r.id == **id))
        .collect();
    let max_took = recs.iter().map(|r| r.took).max().unwrap_or_default();
    let line = format!(
        "{name}: {} ops, ok {ok}, failed {failed:?}, may-have-run {maybe} ({maybe_landed} landed), \
         lost {}, doubled {}, not-run-but-present {}; slowest op {max_took:?}; {extra}",
        recs.len(),
        lost.len(),
        doubled.len(),
        not_run_present.len()
    );
    println!("{line}");
    assert!(lost.is_empty(), "{name}: committed ids missing: {lost:?}");
    assert!(doubled.is_empty(), "{name}: ids doubled: {doubled:?}");
    assert!(
        not_run_present.is_empty(),
        "{name}: ids reported not run are present: {not_run_present:?}"
    );
    assert!(unknown.is_empty(), "{name}: ids nobody sent: {unknown:?}");
    assert!(ok > 0, "{name}: nothing committed");
    line
}

/// A stream of transactions across a kill (SIGKILL) or a clean stop, and
/// a restart.
fn outage(kill: bool) {
    let Some(server) = MariaDbServer::start() else {
        return;
    };
    server.sql(TABLE);
    let server = Arc::new(Mutex::new(server));
    let name = if kill {
        "mariadb SIGKILL + restart"
    } else {
        "mariadb clean stop + restart"
    };
    run_bounded(Duration::from_secs(60), async move {
        let url = server.lock().await.url();
        let client = client(buffering(), &[url]);
        let started = Instant::now();
        let writes = tokio::spawn({
            let client = client.clone();
            async move { stream(&client, 4, Duration::from_millis(3000)).await }
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        let mut s = server.clone().lock_owned().await;
        let t = Instant::now();
        let s = tokio::task::spawn_blocking(move || {
            if kill {
                s.kill();
            }
            s.restart();
            s
        })
        .await
        .expect("restart");
        let down_for = t.elapsed();
        let recs = writes.await.expect("writes");
        let table = s.id_counts("t");
        let back = recs
            .iter()
            .filter(|r| r.outcome.is_ok() && r.done > t + down_for)
            .map(|r| r.done - (t + down_for))
            .min();
        let slowest = recs.iter().map(|r| r.took).max().unwrap_or_default();
        account(
            name,
            &recs,
            &table,
            &format!(
                "down+restart took {down_for:?}, first commit {back:?} after it listened; wall {:?}",
                started.elapsed()
            ),
        );
        // Callers are served in turn: none waits much longer than the
        // outage (an unfair lock on the connection starved one for seconds).
        assert!(
            slowest < down_for + Duration::from_millis(1500),
            "{slowest:?}"
        );
        client.close().await;
    });
}

#[test]
fn killed_and_restarted_during_transactions() {
    outage(true);
    rt::check_traces("mariadb_killed");
}

#[test]
fn stopped_cleanly_and_restarted_during_transactions() {
    outage(false);
    rt::check_traces("mariadb_stopped");
}

/// The primary set read-only while writes flow, the replica caught up
/// and made writable; the client (seed list [primary, replica],
/// `require_primary`) moves its writes to the new primary, losing and
/// doubling nothing.
#[test]
fn failover_to_the_replica() {
    let Some(pair) = MariaDbPair::start() else {
        return;
    };
    pair.primary.sql(TABLE);
    pair.wait_caught_up(Duration::from_secs(20));
    let pair = Arc::new(pair);
    run_bounded(Duration::from_secs(60), async move {
        let urls = [pair.primary.url(), pair.replica.url()];
        let config = buffering()
            .to_builder()
            .require_primary(true)
            .build()
            .expect("config");
        let client = client(config, &urls);
        let started = Instant::now();
        let writes = tokio::spawn({
            let client = client.clone();
            async move { stream(&client, 4, Duration::from_millis(3000)).await }
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        let p = pair.clone();
        let sw = tokio::task::spawn_blocking(move || p.switchover())
            .await
            .expect("switchover");
        let recs = writes.await.expect("writes");
        let on_new: Vec<_> = recs
            .iter()
            .filter(|r| r.outcome == Ok(2))
            .map(|r| r.done)
            .collect();
        let first = on_new
            .iter()
            .min()
            .map(|t| t.saturating_duration_since(sw.writable_at));
        // Everything the old primary has, the new one has too (it caught
        // up before it became writable): count on the new primary.
        let old: BTreeMap<i64, i64> = pair.primary.id_counts("t").into_iter().collect();
        let table = pair.replica.id_counts("t");
        let new: BTreeMap<i64, i64> = table.iter().copied().collect();
        assert!(
            old.iter().all(|(id, n)| new.get(id) == Some(n)),
            "the new primary lacks rows of the old one"
        );
        account(
            "mariadb failover",
            &recs,
            &table,
            &format!(
                "{} committed on the new primary; catch-up {:?}; replica writable -> first commit on it {first:?}; wall {:?}",
                on_new.len(),
                sw.caught_up_at - sw.read_only_at,
                started.elapsed()
            ),
        );
        assert!(!on_new.is_empty(), "no write reached the new primary");
        let slowest = recs.iter().map(|r| r.took).max().unwrap_or_default();
        assert!(slowest < Duration::from_millis(1500), "{slowest:?}");
        client.close().await;
    });
    rt::check_traces("mariadb_failover");
}

/// `Config::fail_fast()`: while the server is down, every op fails at once
/// with `no_connection` (certainly not run), then the client is back.
#[test]
fn fail_fast_during_an_outage() {
    let Some(mut server) = MariaDbServer::start() else {
        return;
    };
    server.sql(TABLE);
    let url = server.url();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // The server is killed and, once told, restarted on this thread; each
    // step is acknowledged when done.
    let controller = std::thread::spawn(move || {
        rx.recv().expect("kill");
        server.kill();
        done_tx.send(()).expect("killed");
        rx.recv().expect("restart");
        server.restart();
        done_tx.send(()).expect("back");
        rx.recv().ok();
        server
    });
    let done = Arc::new(std::sync::Mutex::new(done_rx));
    let step = move |tx: &std::sync::mpsc::Sender<()>| {
        tx.send(()).expect("controller");
        let done = done.clone();
        tokio::task::spawn_blocking(move || support::lock(&done).recv())
    };
    run_bounded(Duration::from_secs(60), async move {
        let client = client(Config::fail_fast(), &[url]);
        let mut recs = Vec::new();
        // Connected first (fail-fast: ops before that fail too, and a
        // failed initial connect is final), then a few ops.
        let up = Instant::now();
        while one(&client, &mut recs).await.outcome.is_err() {
            assert!(up.elapsed() < Duration::from_secs(10), "never connected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..20 {
            one(&client, &mut recs).await;
        }
        step(&tx).await.expect("join").expect("killed");
        // Ops for 1 s of outage.
        let outage = Instant::now();
        let mut during = Vec::new();
        while outage.elapsed() < Duration::from_secs(1) {
            during.push(one(&client, &mut recs).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        step(&tx).await.expect("join").expect("back");
        let back = Instant::now();
        let mut recovered = None;
        while back.elapsed() < Duration::from_secs(15) {
            if one(&client, &mut recs).await.outcome.is_ok() {
                recovered = Some(back.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fast: Vec<_> = during
            .iter()
            .filter(|r| matches!(r.outcome, Err((ErrorKind::NoConnection, false))))
            .collect();
        let max = fast.iter().map(|r| r.took).max().unwrap_or_default();
        let others: Vec<_> = during
            .iter()
            .filter(|r| !matches!(r.outcome, Err((ErrorKind::NoConnection, false))))
            .map(|r| r.outcome)
            .collect();
        tx.send(()).ok();
        let server = tokio::task::spawn_blocking(move || controller.join())
            .await
            .expect("join")
            .expect("controller");
        account(
            "mariadb fail-fast",
            &recs,
            &server.id_counts("t"),
            &format!(
                "{} ops during 1 s of outage, {} no_connection (slowest {max:?}), others {others:?}; \
                 back {recovered:?} after the restart",
                during.len(),
                fast.len()
            ),
        );
        assert!(fast.len() >= 10, "few fast failures: {}", fast.len());
        assert!(
            max < Duration::from_millis(200),
            "slowest no_connection {max:?}"
        );
        // Only the op in flight at the kill may fail otherwise.
        assert!(
            others
                .iter()
                .all(|o| matches!(o, Err((ErrorKind::ConnectionLost, true)))),
            "{others:?}"
        );
        assert!(others.len() <= 1, "{others:?}");
        assert!(recovered.is_some(), "the client did not come back");
        client.close().await;
    });
    rt::check_traces("mariadb_fail_fast");
}

/// One insert of the next id, recorded.
async fn one(client: &MyClient, recs: &mut Vec<Rec>) -> Rec {
    let id = recs.len() as i64 + 1;
    let t = Instant::now();
    let r = client.call(insert(id)).await;
    let rec = Rec {
        id,
        outcome: r.map_err(|e| (e.kind(), e.maybe_executed())),
        took: t.elapsed(),
        done: Instant::now(),
    };
    recs.push(rec.clone());
    rec
}

/// The connector's first connection to `server`, as `url`.
async fn connect(url: &str) -> (MySqlConnector<u32>, redial::mysql::MySqlConn) {
    let connector = MySqlConnector::new([url]).expect("url");
    let conn = connector.connect(0).await.expect("connect");
    (connector, conn)
}

fn shape(e: &mysql_async::Error) -> String {
    format!("{e:?}")
}

/// 1290 on a read-only server → wrong server (and the role says
/// secondary); a connection killed while idle and while running a query
/// → connection lost; access denied / unknown database → rejected.
#[test]
fn classification_on_a_live_server() {
    let Some(server) = MariaDbServer::start() else {
        return;
    };
    server.sql(TABLE);
    run_bounded(Duration::from_secs(30), async {
        let (connector, conn) = connect(&server.url()).await;
        assert_eq!(connector.role(&conn).await, Role::Primary);
        connector.run(&conn, &insert(1)).await.expect("insert");

        // Read-only: the app user (no SUPER) is refused with 1290.
        server.set_read_only(true);
        assert_eq!(connector.role(&conn).await, Role::Secondary);
        let e = connector
            .run(&conn, &insert(2))
            .await
            .expect_err("read-only");
        println!("mariadb 1290 (read-only): {}", shape(&e));
        assert!(matches!(&e, mysql_async::Error::Server(s) if s.code == 1290));
        assert_eq!(connector.classify(&e), Failure::WrongServer);
        server.set_read_only(false);

        // KILL CONNECTION while idle.
        let id = connector
            .run(&conn, &query("SELECT CONNECTION_ID()"))
            .await
            .expect("id")
            / 1000;
        server.sql(&format!("KILL CONNECTION {id}"));
        let e = connector.run(&conn, &insert(3)).await.expect_err("killed");
        println!("mariadb KILL CONNECTION (idle): {}", shape(&e));
        assert_eq!(connector.classify(&e), Failure::ConnectionLost);
        // The connection is unusable from then on: the same reading.
        let e = connector.ping(&conn).await.expect_err("dead");
        println!("mariadb ping after the kill: {}", shape(&e));
        assert_eq!(connector.classify(&e), Failure::ConnectionLost);

        // KILL CONNECTION while a query runs.
        let (_, conn) = connect(&server.url()).await;
        let id = connector
            .run(&conn, &query("SELECT CONNECTION_ID()"))
            .await
            .expect("id")
            / 1000;
        let kill = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.sql(&format!("KILL CONNECTION {id}"));
        };
        let sleep = query("SELECT SLEEP(20)");
        let (r, ()) = tokio::join!(connector.run(&conn, &sleep), kill);
        let e = r.expect_err("killed mid-query");
        println!("mariadb KILL CONNECTION (mid-query): {}", shape(&e));
        assert_eq!(connector.classify(&e), Failure::ConnectionLost);

        // Rejections at connect.
        for (url, code) in [
            (server.url().replace("app:app", "app:wrong"), 1045),
            (server.url().replace("/redial", "/nosuch"), 1044),
            (
                format!("mysql://root@127.0.0.1:{}/nosuch", server.port),
                1049,
            ),
        ] {
            let e = MySqlConnector::<u32>::new([url])
                .expect("url")
                .connect(0)
                .await
                .expect_err("rejected");
            println!("mariadb {code} at connect: {}", shape(&e));
            assert!(matches!(&e, mysql_async::Error::Server(s) if s.code == code));
            assert_eq!(connector.classify_connect(&e), ConnectFailure::Rejected);
        }
        // Nothing listening: refused.
        let e = MySqlConnector::<u32>::new([format!(
            "mysql://app:app@127.0.0.1:{}/redial",
            support::free_port()
        )])
        .expect("url")
        .connect(0)
        .await
        .expect_err("refused");
        println!("mariadb nothing listening: {}", shape(&e));
        assert_eq!(connector.classify_connect(&e), ConnectFailure::Refused);
    });
}

/// A clean shutdown during a long `SELECT SLEEP`: read as lost. MariaDB
/// 10.11 closes the connection without sending 1053 (ER_SERVER_SHUTDOWN):
/// the driver sees the end of the stream (the C client reports 2013);
/// 1053 itself is covered by the connector's unit tests.
#[test]
fn shutdown_during_a_query_is_connection_lost() {
    let Some(server) = MariaDbServer::start() else {
        return;
    };
    let server = Arc::new(Mutex::new(server));
    run_bounded(Duration::from_secs(40), async {
        let url = server.lock().await.url();
        let (connector, conn) = connect(&url).await;
        let stop = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut s = server.clone().lock_owned().await;
            tokio::task::spawn_blocking(move || s.stop())
                .await
                .expect("stop");
        };
        let sleep = query("SELECT SLEEP(20)");
        let (r, ()) = tokio::join!(connector.run(&conn, &sleep), stop);
        let e = r.expect_err("shut down mid-query");
        println!("mariadb shutdown mid-query: {}", shape(&e));
        assert_eq!(connector.classify(&e), Failure::ConnectionLost);
    });
}

/// `--max-connections=10` (MariaDB's minimum): the eleventh connection of
/// an ordinary user is refused with 1040: unavailable at connect,
/// pushback on an op.
#[test]
fn too_many_connections_is_pushback() {
    let Some(server) = MariaDbServer::start_with(&["--max-connections=10"]) else {
        return;
    };
    run_bounded(Duration::from_secs(30), async {
        let connector = MySqlConnector::<u32>::new([server.url()]).expect("url");
        let mut open = Vec::new();
        let e = loop {
            match connector.connect(0).await {
                Ok(c) => open.push(c),
                Err(e) => break e,
            }
            assert!(open.len() <= 10, "max_connections=10 not enforced");
        };
        println!(
            "mariadb 1040 after {} connections: {}",
            open.len(),
            shape(&e)
        );
        assert!(matches!(&e, mysql_async::Error::Server(s) if s.code == 1040));
        assert_eq!(open.len(), 10);
        assert_eq!(connector.classify_connect(&e), ConnectFailure::Unavailable);
        assert_eq!(
            connector.classify(&e),
            Failure::Pushback { retry_after: None }
        );
    });
}

/// `run_within` sets `max_statement_time` to the time left plus the
/// grace: the server aborts a statement running past it (1969), the
/// session shows the limit, and an op without one puts it back to 0.
#[test]
fn time_limit_reaches_the_server() {
    let Some(server) = MariaDbServer::start() else {
        return;
    };
    run_bounded(Duration::from_secs(30), async {
        let (connector, conn) = connect(&server.url()).await;
        assert_eq!(conn.flavor(), mysql::Flavor::MariaDb);
        let t = Instant::now();
        let e = connector
            .run_within(
                &conn,
                &query("SELECT SLEEP(10)"),
                Some(Duration::from_millis(300)),
            )
            .await
            .expect_err("aborted by the server");
        let took = t.elapsed();
        println!("mariadb max_statement_time after {took:?}: {}", shape(&e));
        assert!(matches!(&e, mysql_async::Error::Server(s) if s.code == 1969));
        assert_eq!(connector.classify(&e), Failure::ServerError);
        assert!(took < Duration::from_secs(3), "{took:?}");
        let limit = query("SELECT @@session.max_statement_time");
        let ms = connector
            .run_within(&conn, &limit, Some(Duration::from_secs(2)))
            .await
            .expect("limit");
        assert!((1900..=2100).contains(&ms), "{ms} ms");
        let ms = connector.run(&conn, &limit).await.expect("no limit");
        assert_eq!(ms, 0);
    });
}
