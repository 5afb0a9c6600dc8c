//! Scenarios against private redis-servers, each run on tokio and on smol
//! (`tokio_rt::…`, `smol_rt::…`: the same body, the client on that
//! runtime, the connector on the redis crate's support for it).
//!
//! `cargo test -p redial --features redis,smol --test redis_server -- --nocapture --test-threads 1`

#![cfg(feature = "redis")]

mod support;

#[path = "support/rt.rs"]
mod rt;

use std::time::{Duration, Instant};

use futures::StreamExt;
use redial::core::{BufferPolicy, ConfigBuilder, ErrorKind, Heartbeat, State, Tries};
use redial::redis::RedisConnector;
use redial::redis::redis::{self, Value, cmd};
use redial::{CallOptions, Client, Events};
use rt::{Rt, on_each_runtime};
use support::RedisServer;

const LIMIT: Duration = Duration::from_secs(60);

on_each_runtime!(
    kill_and_restart_under_buffering,
    fail_fast_during_outage,
    reconnect_budget_exhausted,
    silent_loss_sigstop,
    failover_with_replicaof,
    resp3_reports_a_crash_without_traffic,
);

fn base() -> ConfigBuilder {
    support::buffering(
        Duration::from_millis(500),
        (Duration::from_millis(100), Duration::from_millis(200)),
    )
}

fn builder(rt: Rt, b: ConfigBuilder, urls: &[String]) -> redial::Builder<RedisConnector> {
    let conn = RedisConnector::new(urls.iter().map(String::as_str)).expect("urls");
    rt::recorded(
        Client::builder(conn)
            .config(b.endpoints(urls.len()).build().expect("config"))
            .seed(4)
            .runtime(rt.runtime()),
    )
}

fn client(rt: Rt, b: ConfigBuilder, urls: &[String]) -> Client<RedisConnector> {
    builder(rt, b, urls).build().expect("client")
}

/// A client and an event stream that sees every event from the start.
fn client_ev(
    rt: Rt,
    b: ConfigBuilder,
    urls: &[String],
) -> (Client<RedisConnector>, redial::Events) {
    builder(rt, b, urls).build_with_events().expect("client")
}

async fn wait_event(ev: &mut Events, name: &str) {
    while let Some(e) = ev.next().await {
        if e.name() == name {
            return;
        }
    }
    panic!("event stream ended before {name}");
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::BulkString(b) => String::from_utf8_lossy(b).parse().expect("number"),
        other => panic!("not an int: {other:?}"),
    }
}

fn incr() -> redis::Cmd {
    cmd("INCR").arg("counter").clone()
}

#[derive(Debug)]
struct Outcome {
    done: Instant,
    result: Result<i64, (ErrorKind, bool)>,
}

/// Issues INCR every `every` until `stop`, each call in its own task.
async fn workload(
    rt: Rt,
    c: Client<RedisConnector>,
    every: Duration,
    stop: Instant,
) -> Vec<(Instant, Outcome)> {
    let mut tasks = Vec::new();
    while Instant::now() < stop {
        let c = c.clone();
        let issued = Instant::now();
        tasks.push(rt.spawn(async move {
            let r = c.call(incr()).await;
            (
                issued,
                Outcome {
                    done: Instant::now(),
                    result: r
                        .map(|v| int(&v))
                        .map_err(|e| (e.kind(), e.maybe_executed())),
                },
            )
        }));
        rt.sleep(every).await;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await);
    }
    out
}

fn kill_and_restart_under_buffering(rt: Rt) {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    rt.run(LIMIT, async move {
        let (c, mut ev) = client_ev(rt, base(), &[server.url()]);
        wait_event(&mut ev, "connected").await;
        let start = Instant::now();
        let load = rt.spawn(workload(
            rt,
            c.clone(),
            Duration::from_millis(5),
            start + Duration::from_millis(1500),
        ));
        rt.sleep(Duration::from_millis(400)).await;
        let killed = Instant::now();
        server.kill();
        // The old server is reaped: an op issued from here on can only run
        // on the new one (which starts from an empty counter).
        let dead = Instant::now();
        rt.sleep(Duration::from_millis(500)).await;
        server.restart();
        // Stamped once the restart is seen, which can be after redial has
        // already reconnected: used for the report only, never to classify.
        let restarted = Instant::now();
        eprintln!("restarted");
        let results = load.await;
        eprintln!("workload done");
        // Every call resolved (we got here); account for each.
        let after: Vec<_> = results.iter().filter(|(_, o)| o.done >= dead).collect();
        // Ok after the old server died: these ran on the new server, plus
        // perhaps a reply of the old one read late (which only loosens the
        // "nothing duplicated" bound below).
        let oks_after: Vec<i64> = after.iter().filter_map(|(_, o)| o.result.ok()).collect();
        // Issued after it died and ok: certainly ran on the new server.
        let surely_new: Vec<i64> = results
            .iter()
            .filter(|(i, _)| *i >= dead)
            .filter_map(|(_, o)| o.result.ok())
            .collect();
        let maybe = results
            .iter()
            .filter(|(_, o)| matches!(o.result, Err((_, true))))
            .count();
        let certainly_not = results
            .iter()
            .filter(|(_, o)| matches!(o.result, Err((_, false))))
            .count();
        let during: Vec<_> = results
            .iter()
            .filter(|(i, _)| *i >= killed && *i < restarted)
            .collect();
        let during_ok = during.iter().filter(|(_, o)| o.result.is_ok()).count();
        let first_ok = after
            .iter()
            .filter(|(_, o)| o.result.is_ok())
            .map(|(_, o)| o.done)
            .min();
        let counter = int(&c
            .call(cmd("GET").arg("counter").clone())
            .await
            .expect("get"));
        eprintln!(
            "redis kill+restart (buffering): {} calls, {} issued during the outage ({} completed ok after the restart), \
             {} ok after the kill, {} may-have-run, {} certainly-not-run; counter after restart {}; \
             first ok {:?} after the restart was seen",
            results.len(),
            during.len(),
            during_ok,
            oks_after.len(),
            maybe,
            certainly_not,
            counter,
            first_ok.map(|t| t.saturating_duration_since(restarted))
        );
        let mut sorted = surely_new.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), surely_new.len(), "no value handed out twice");
        assert!(counter >= surely_new.len() as i64, "nothing lost");
        assert!(
            counter <= (oks_after.len() + maybe) as i64,
            "nothing duplicated"
        );
        assert!(
            during_ok > 0,
            "ops issued during the outage complete after the restart"
        );
        for (i, o) in &during {
            if let Err((k, _)) = o.result {
                // Only ops dispatched before the loss was seen may fail.
                assert_eq!(k, ErrorKind::ConnectionLost, "{i:?} {o:?}");
            }
        }
        assert_eq!(c.outstanding(), 0);
    });
}

fn fail_fast_during_outage(rt: Rt) {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    rt.run(LIMIT, async move {
        let (c, mut ev) = client_ev(rt, base().buffer(BufferPolicy::Disabled), &[server.url()]);
        wait_event(&mut ev, "connected").await;
        assert_eq!(int(&c.call(incr()).await.expect("warm")), 1);
        server.kill();
        wait_event(&mut ev, "disconnected").await;
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let t = Instant::now();
            let e = c.call(incr()).await.expect_err("fails fast");
            worst = worst.max(t.elapsed());
            assert_eq!(e.kind(), ErrorKind::NoConnection);
            assert!(!e.maybe_executed());
        }
        eprintln!(
            "redis fail-fast: 20 calls during the outage failed with no_connection, slowest {worst:?}"
        );
        server.restart();
        let back = Instant::now();
        wait_event(&mut ev, "reconnected").await;
        eprintln!(
            "redis fail-fast: reconnected {:?} after the restart",
            back.elapsed()
        );
        assert_eq!(int(&c.call(incr()).await.expect("ok again")), 1);
    });
}

fn reconnect_budget_exhausted(rt: Rt) {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let port = server.port;
    rt.run(LIMIT, async move {
        let (c, mut ev) = client_ev(
            rt,
            base().reconnect_tries(Tries::Limited(2)),
            &[server.url()],
        );
        wait_event(&mut ev, "connected").await;
        server.kill();
        wait_event(&mut ev, "disconnected").await;
        // Submitted now: buffered while the server is down.
        let pending: Vec<_> = (0..3).map(|_| c.call(incr()).submitted()).collect();
        let mut failed_events = 0;
        let mut names = Vec::new();
        let collect = async {
            while let Some(e) = ev.next().await {
                names.push(e.name());
                if e.name() == "reconnect_failed" {
                    failed_events += 1;
                    break;
                }
            }
        };
        collect.await;
        for r in futures::future::join_all(pending).await {
            let e = r.expect_err("budget spent");
            assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
            assert_eq!(
                e.message(),
                "failed to reconnect after 2 attempts with interval 100 ms"
            );
            assert!(
                e.detail()
                    .is_some_and(|d| d.starts_with("last connect error: ")),
                "the connector's reason reaches the caller: {e}"
            );
        }
        let t = Instant::now();
        let e = c.call(incr()).await.expect_err("topology destroyed");
        eprintln!(
            "redis budget: events {names:?}; later op failed in {:?}: {}",
            t.elapsed(),
            e.message()
        );
        assert_eq!(e.kind(), ErrorKind::TopologyDestroyed);
        assert_eq!(e.message(), "topology was destroyed");
        assert_eq!(c.state(), State::Failed);
        server.restart();
        rt.sleep(Duration::from_millis(500)).await;
        let info = server.admin(&["INFO", "clients"]);
        let clients: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("clients");
        assert_eq!(
            clients, 1,
            "only our admin connection: no reconnect after the budget"
        );
        assert_eq!(failed_events, 1);
        let extra = rt.timeout(Duration::from_millis(100), ev.next()).await;
        assert!(
            !matches!(extra, Some(Some(_))),
            "no event after reconnect_failed: {extra:?}"
        );
        let _ = port;
    });
}

fn silent_loss_sigstop(rt: Rt) {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    rt.run(LIMIT, async move {
        let hb = Heartbeat {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(300),
        };
        let (c, mut ev) = client_ev(rt, base().heartbeat(Some(hb)), &[server.url()]);
        wait_event(&mut ev, "connected").await;
        assert_eq!(int(&c.call(incr()).await.expect("warm")), 1);
        server.pause();
        let t = Instant::now();
        wait_event(&mut ev, "unresponsive").await;
        let detected = t.elapsed();
        eprintln!(
            "redis SIGSTOP: declared unresponsive after {detected:?} (interval 200 ms + timeout 300 ms)"
        );
        let buffered = c.call_with(incr(), CallOptions::default()).submitted();
        rt.sleep(Duration::from_millis(300)).await;
        server.resume();
        let t = Instant::now();
        let v = int(&buffered.await.expect("recovers after SIGCONT"));
        eprintln!(
            "redis SIGSTOP: op buffered during the pause completed {:?} after SIGCONT",
            t.elapsed()
        );
        assert_eq!(v, 2);
    });
}

fn failover_with_replicaof(rt: Rt) {
    let Some(a) = RedisServer::start() else {
        return;
    };
    let Some(b) = RedisServer::start() else {
        return;
    };
    rt.run(LIMIT, async move {
        let bp = b.port.to_string();
        b.replicate_from(&a);
        let (c, mut ev) = client_ev(rt, base(), &[a.url(), b.url()]);
        wait_event(&mut ev, "connected").await;
        let start = Instant::now();
        let load = rt.spawn(workload(
            rt,
            c.clone(),
            Duration::from_millis(5),
            start + Duration::from_millis(1500),
        ));
        rt.sleep(Duration::from_millis(400)).await;
        // Manual failover: hold writes on A, let B catch up, swap roles.
        let t = Instant::now();
        assert!(
            a.admin(&["CLIENT", "PAUSE", "5000", "WRITE"])
                .starts_with("+OK")
        );
        let offset = |s: &RedisServer, key: &str| -> u64 {
            s.admin(&["INFO", "replication"])
                .lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0)
        };
        let target = offset(&a, "master_repl_offset:");
        while offset(&b, "master_repl_offset:") < target {
            rt.sleep(Duration::from_millis(5)).await;
        }
        assert!(b.admin(&["REPLICAOF", "NO", "ONE"]).starts_with("+OK"));
        assert!(a.admin(&["REPLICAOF", "127.0.0.1", &bp]).starts_with("+OK"));
        assert!(a.admin(&["CLIENT", "UNPAUSE"]).starts_with("+OK"));
        let swapped = t.elapsed();
        let results = load.await;
        let oks: Vec<i64> = results.iter().filter_map(|(_, o)| o.result.ok()).collect();
        let errs: Vec<_> = results.iter().filter_map(|(_, o)| o.result.err()).collect();
        let counter = int(&redis::Value::Int(
            b.admin(&["GET", "counter"])
                .lines()
                .last()
                .and_then(|l| l.parse().ok())
                .expect("counter"),
        ));
        let mut sorted = oks.clone();
        sorted.sort_unstable();
        sorted.dedup();
        eprintln!(
            "redis failover: roles swapped in {swapped:?}; {} calls, {} ok, errors {:?}; counter on the new primary {}",
            results.len(),
            oks.len(),
            errs,
            counter
        );
        assert!(
            errs.is_empty(),
            "READONLY writes are re-routed, none fails: {errs:?}"
        );
        assert_eq!(sorted.len(), oks.len(), "no value twice");
        assert_eq!(counter, oks.len() as i64, "none lost, none doubled");
    });
}

/// With RESP3 the connector's `closed` reports a server crash at once: no
/// op, no heartbeat needed. With RESP2 the same crash goes unseen until the
/// next op or heartbeat (none here), which is what the RESP3 path fixes.
fn resp3_reports_a_crash_without_traffic(rt: Rt) {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    rt.run(LIMIT, async move {
        let quiet = || base().heartbeat(None);
        let resp3 = client(rt, quiet(), &[format!("{}?protocol=resp3", server.url())]);
        let resp2 = client(rt, quiet(), &[server.url()]);
        let (mut ev3, mut ev2) = (resp3.events(), resp2.events());
        wait_event(&mut ev3, "connected").await;
        wait_event(&mut ev2, "connected").await;
        resp3.call(incr()).await.expect("resp3 op");
        resp2.call(incr()).await.expect("resp2 op");

        let killed = Instant::now();
        server.kill();
        rt.timeout(Duration::from_secs(2), wait_event(&mut ev3, "disconnected"))
            .await
            .expect("RESP3: the crash is seen without traffic");
        eprintln!("resp3: crash seen after {:?}", killed.elapsed());
        assert_ne!(resp3.state(), State::Connected);
        rt.sleep(Duration::from_millis(300)).await;
        assert_eq!(
            resp2.state(),
            State::Connected,
            "RESP2 has no close signal: without traffic the loss is not seen"
        );

        server.restart();
        let n = resp3.call(incr()).await.expect("resp3 op after restart");
        assert_eq!(int(&n), 1, "a fresh server");
        // RESP2: the first op finds the dead socket (it may have run, so it
        // is not retried); the next one goes through.
        let first = resp2.call(incr()).await;
        let second = resp2.call(incr()).await.expect("resp2 op after restart");
        eprintln!("resp2 after restart: first {first:?}, second {second:?}");
        resp3.close().await;
        resp2.close().await;
    });
}
