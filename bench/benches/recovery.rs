//! Recovery against peers: one private redis-server, SIGKILLed and
//! restarted on a fixed schedule, with four clients connected to it at once
//! (so every client sees the very same outages):
//!
//! - redial, `Config::recommended()` (bounded buffer, exponential backoff
//!   100 ms × 2 ≤ 5 s with full jitter), over RESP3 (the connector then
//!   sees a close at once) and over RESP2 (the default protocol);
//! - redial, `Config::mongodb_legacy()` (unbounded buffer, constant 1 s
//!   reconnect interval, 30 tries), RESP3;
//! - the `redis` crate's `ConnectionManager`, RESP3, with its default
//!   config and with one tuned to the others (factor 2, ≤ 5 s, 30 retries);
//! - `fred` with `ReconnectPolicy::new_exponential(0, 100, 5000, 2)`
//!   (unlimited attempts, 100 ms × 2 ≤ 5 s, fred's default 50 ms jitter).
//!
//! Each client issues `INCR` every 10 ms, each op in its own task and
//! without waiting for the previous one, whatever the server's state. For
//! every outage we measure the time from "the server accepts connections
//! again" (a 1 ms TCP poll) to the client's first successful op, and how
//! the ops issued during the outage ended: ok after the restart, failed,
//! or hung (no outcome 15 s after issue).
//!
//! `cargo bench --bench recovery` (in `bench/`); it prints the table in
//! BENCHMARKS.md. Needs `redis-server` on PATH (SKIPPED otherwise; with
//! `REDIAL_REQUIRE_SERVERS=1` it fails instead).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, KeysInterface, ReconnectPolicy};
use futures::StreamExt;
use redial::core::{Config, Event};
use redial::redis::RedisConnector;
use redial::{Client, runtime::TokioRuntime};
use redial_bench::{Redis, median, millis};

/// Time between two ops of one client.
const TICK: Duration = Duration::from_millis(10);
/// An op with no outcome this long after issue counts as hung.
const HUNG: Duration = Duration::from_secs(15);
/// Healthy traffic before each kill.
const WARM: Duration = Duration::from_secs(1);
/// Traffic after the server is back.
const AFTER: Duration = Duration::from_secs(3);
/// How long the server stays down, round by round.
const OUTAGES_MS: [u64; 12] = [
    300, 1000, 2000, 700, 1500, 1000, 300, 1000, 2000, 700, 1500, 1000,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Hung,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    issued: Instant,
    done: Instant,
    outcome: Outcome,
}

type OpFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
type OpFn = Arc<dyn Fn() -> OpFuture + Send + Sync>;
type EventLog = Arc<Mutex<Vec<(Instant, Event)>>>;

struct Contender {
    name: &'static str,
    op: OpFn,
    log: Arc<Mutex<Vec<Record>>>,
    /// redial only: its events, stamped on receipt.
    events: Option<EventLog>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn incr(key: &str) -> redis::Cmd {
    let mut c = redis::cmd("INCR");
    c.arg(key);
    c
}

async fn redial_contender(name: &'static str, url: &str, config: Config) -> Contender {
    let connector = RedisConnector::new([url]).expect("redis url");
    let client = Client::builder(connector)
        .config(config)
        .seed(7)
        .runtime(Arc::new(TokioRuntime))
        .build()
        .expect("client");
    let events: EventLog = Arc::default();
    let mut stream = client.events();
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = stream.next().await {
            lock(&sink).push((Instant::now(), e));
        }
    });
    client.call(incr(name)).await.expect("redial first op");
    let op: OpFn = Arc::new(move || {
        let c = client.clone();
        Box::pin(async move { c.call(incr(name)).await.is_ok() })
    });
    Contender {
        name,
        op,
        log: Arc::default(),
        events: Some(events),
    }
}

async fn manager_contender(
    name: &'static str,
    url: &str,
    config: redis::aio::ConnectionManagerConfig,
) -> Contender {
    let client = redis::Client::open(url).expect("redis url");
    let manager = client
        .get_connection_manager_with_config(config)
        .await
        .expect("connection manager");
    let op: OpFn = Arc::new(move || {
        let mut m = manager.clone();
        Box::pin(async move { incr(name).query_async::<i64>(&mut m).await.is_ok() })
    });
    Contender {
        name,
        op,
        log: Arc::default(),
        events: None,
    }
}

async fn fred_contender(url: &str) -> Contender {
    let name = "fred (exponential 100 ms x2 <= 5 s)";
    let config = fred::prelude::Config::from_url(url).expect("fred url");
    let client = fred::prelude::Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5000, 2))
        .build()
        .expect("fred client");
    client.init().await.expect("fred connect");
    let op: OpFn = Arc::new(move || {
        let c = client.clone();
        Box::pin(async move { c.incr::<i64, _>("fred").await.is_ok() })
    });
    Contender {
        name,
        op,
        log: Arc::default(),
        events: None,
    }
}

/// Issues an op every TICK until `stop`, each in its own task; resolves
/// when every op has an outcome (or was declared hung).
async fn drive(op: OpFn, log: Arc<Mutex<Vec<Record>>>, stop: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::new();
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let (op, log) = (op.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let issued = Instant::now();
            let outcome = match tokio::time::timeout(HUNG, op()).await {
                Ok(true) => Outcome::Ok,
                Ok(false) => Outcome::Failed,
                Err(_) => Outcome::Hung,
            };
            lock(&log).push(Record {
                issued,
                done: Instant::now(),
                outcome,
            });
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[derive(Default, Debug)]
struct Tally {
    recovery_ms: Vec<f64>,
    /// redial: whether recovery was within the reconnect delay in effect + 5 ms.
    within_delay: Vec<bool>,
    outage_ok: usize,
    outage_failed: usize,
    outage_hung: usize,
    inflight_failed: usize,
    after_failed: usize,
    never_recovered: usize,
}

/// Adds one round to `tally`; returns that round's recovery in ms.
fn analyse(c: &Contender, kill: Instant, back: Instant, tally: &mut Tally) -> Option<f64> {
    let log = lock(&c.log);
    for r in log.iter() {
        if r.issued >= kill && r.issued < back {
            match r.outcome {
                Outcome::Ok => tally.outage_ok += 1,
                Outcome::Failed => tally.outage_failed += 1,
                Outcome::Hung => tally.outage_hung += 1,
            }
        } else if r.issued < kill && r.done >= kill && r.outcome != Outcome::Ok {
            tally.inflight_failed += 1;
        } else if r.issued >= back && r.outcome != Outcome::Ok {
            tally.after_failed += 1;
        }
    }
    let first_ok = log
        .iter()
        .filter(|r| r.outcome == Outcome::Ok && r.done >= back)
        .map(|r| r.done)
        .min();
    let Some(first_ok) = first_ok else {
        tally.never_recovered += 1;
        return None;
    };
    let recovery = first_ok.saturating_duration_since(back);
    tally.recovery_ms.push(millis(recovery));
    if let Some(events) = &c.events {
        // The delay of the reconnect attempt that brought the link back:
        // the last `reconnecting` event before the first success.
        let delay = lock(events)
            .iter()
            .filter(|(t, e)| {
                *t >= kill && *t <= first_ok && matches!(e, Event::Reconnecting { .. })
            })
            .filter_map(|(_, e)| match e {
                Event::Reconnecting { delay, .. } => Some(*delay),
                _ => None,
            })
            .next_back();
        if let Some(delay) = delay {
            tally
                .within_delay
                .push(recovery <= delay + Duration::from_millis(5));
        }
    }
    Some(millis(recovery))
}

fn main() {
    // Criterion-style filters are accepted and ignored: this bench has one table.
    let Some(mut server) = Redis::start() else {
        return;
    };
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let resp3 = format!("{url}?protocol=resp3");
    let tuned = redis::aio::ConnectionManagerConfig::new()
        .set_factor(2)
        .set_max_delay(5000)
        .set_number_of_retries(30);
    let contenders = rt.block_on(async {
        vec![
            redial_contender("redial recommended", &resp3, Config::recommended()).await,
            redial_contender("redial recommended, RESP2", &url, Config::recommended()).await,
            redial_contender("redial mongodb-legacy", &resp3, Config::mongodb_legacy()).await,
            manager_contender(
                "redis ConnectionManager, defaults",
                &resp3,
                redis::aio::ConnectionManagerConfig::new(),
            )
            .await,
            manager_contender("redis ConnectionManager, tuned", &resp3, tuned).await,
            fred_contender(&url).await,
        ]
    });
    let mut tallies: Vec<Tally> = contenders.iter().map(|_| Tally::default()).collect();

    for (round, outage) in OUTAGES_MS
        .iter()
        .map(|&ms| Duration::from_millis(ms))
        .enumerate()
    {
        for c in &contenders {
            lock(&c.log).clear();
            if let Some(e) = &c.events {
                lock(e).clear();
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let drivers: Vec<_> = contenders
            .iter()
            .map(|c| rt.spawn(drive(c.op.clone(), c.log.clone(), stop.clone())))
            .collect();
        std::thread::sleep(WARM);
        let kill = Instant::now();
        server.kill();
        std::thread::sleep(outage);
        let back = server.restart();
        std::thread::sleep(AFTER);
        stop.store(true, Ordering::Release);
        rt.block_on(async {
            for d in drivers {
                let _ = d.await;
            }
        });
        let this_round: Vec<String> = contenders
            .iter()
            .zip(tallies.iter_mut())
            .map(|(c, t)| {
                let r = analyse(c, kill, back, t);
                format!(
                    "{} {}",
                    c.name,
                    r.map_or("never".into(), |v| format!("{v:.1}"))
                )
            })
            .collect();
        eprintln!(
            "round {}: outage {} ms; server back -> first ok (ms): {}",
            round + 1,
            outage.as_millis(),
            this_round.join(", ")
        );
    }

    println!(
        "\n## Recovery against peers ({} kill/restart rounds, outages {:?} ms, one op every {} ms per client)\n",
        OUTAGES_MS.len(),
        OUTAGES_MS,
        TICK.as_millis()
    );
    println!(
        "| client | server back → first ok: median | max | within reconnect delay + 5 ms | ops issued during outages: ok after restart / failed / hung | failed, issued before the kill | failed after the server was back | rounds never recovered |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (c, t) in contenders.iter().zip(tallies.iter_mut()) {
        let max = t.recovery_ms.iter().copied().fold(0.0, f64::max);
        let within = if c.events.is_some() {
            format!(
                "{}/{}",
                t.within_delay.iter().filter(|w| **w).count(),
                t.within_delay.len()
            )
        } else {
            "—".into()
        };
        println!(
            "| {} | {:.1} ms | {:.1} ms | {} | {} / {} / {} | {} | {} | {} |",
            c.name,
            median(&mut t.recovery_ms.clone()),
            max,
            within,
            t.outage_ok,
            t.outage_failed,
            t.outage_hung,
            t.inflight_failed,
            t.after_failed,
            t.never_recovered
        );
    }
    drop(contenders);
    rt.shutdown_timeout(Duration::from_secs(1));
}
