//! Recovery against the physical limit and against peers, in one run.
//!
//! ```sh
//! cd bench
//! cargo bench --bench recovery                           # about 3 minutes; prints the tables of BENCHMARKS.md
//! REDIAL_BENCH_ROUNDS=1 cargo bench --bench recovery     # one round per scenario (a smoke run, ~1 minute)
//! cargo clippy --all-targets -- -D warnings && cargo test   # what CI runs here
//! ```
//!
//! Needs `redis-server` on PATH (SKIPPED otherwise; with
//! `REDIAL_REQUIRE_SERVERS=1` it fails instead). Linux: the SIGTERM rounds
//! read `/proc` to see the server exit.
//!
//! One private redis-server (a free loopback port, killed only by its own
//! pid), with every contender connected to it at once, so all of them see
//! the very same faults:
//!
//! - **raw floor**: the `redis` crate's plain multiplexed connection
//!   (RESP3), re-created by the harness itself the moment it is reported
//!   closed (the crate's disconnect push, or an op failing on it), in a
//!   loop with 1 ms between attempts, ops waiting for it meanwhile: the
//!   physical limit of "the server accepts again → an op succeeds";
//! - redial `Config::recommended()` over the default URL (RESP2: the loss
//!   is seen by the next op or heartbeat) and over `?protocol=resp3` (the
//!   connector sees the close at once);
//! - redial `Config::mongodb_legacy()` (unbounded buffer, constant 1 s
//!   reconnect interval, 30 tries), RESP3;
//! - the `redis` crate's `ConnectionManager` (1.8), RESP3 (so it reconnects
//!   on the disconnect push), with its defaults and tuned; in 1.x the
//!   manager's backoff is backon's exponential: first wait `min_delay`
//!   (default 100 ms), growing by `exponent_base` (default 2) up to
//!   `max_delay` (default: backon's 60 s), each wait plus a random
//!   0–100 %, 6 retries by default; its connect and response timeouts
//!   default to 1 s and 500 ms. Tuned: 100 ms × 2, `max_delay` 2.5 s (so
//!   with the jitter no wait exceeds 5 s, the others' cap), 30 retries.
//!   (The figures in BENCHMARKS.md were measured on 0.32.7, whose first
//!   wait was 1 s and default factor 100.);
//! - `fred` 10 with `ReconnectPolicy::default()` (constant 1 s + 0–99 ms: `DEFAULT_JITTER_MS` is 100 although the docs say 50,
//!   unlimited; without a policy fred does not reconnect at all) and tuned
//!   `ReconnectPolicy::new_exponential(0, 100, 5000, 2)` (100 ms × 2 ≤ 5 s,
//!   unlimited), RESP2.
//!
//! redial is driven through its public API only (`Client::builder`,
//! `Client::call`, `Client::events`, `Config`). Its three contenders share
//! the jitter seed 7, so they draw the same delays: differences between
//! them come from the protocol and the preset, not from the dice.
//!
//! **Faults**, interleaved round by round (so drift hits every scenario
//! alike): SIGKILL with the server down 0.3 s, 2 s and 10 s; SIGTERM
//! (graceful shutdown) down 0.3 s; and `CLIENT KILL TYPE normal` through a
//! separate raw connection (every client's connection closed, the server
//! stays up).
//!
//! **Traffic.** Each contender issues `INCR` every 10 ms, each op in its own
//! task, without waiting for the previous one, whatever the server's state:
//! these ops are tallied (ok / failed / hung, i.e. no outcome 15 s after
//! issue). From the fault until it has recovered, each contender also has
//! a *prober*: one op at a time, the next 1 ms after the previous one ends,
//! so that a client which fails ops fast while disconnected is sampled
//! every ~1 ms rather than every 10 ms (a client that buffers is not
//! helped: the prober's op just waits). Prober ops only serve the recovery
//! time.
//!
//! **Recovery** of a round: from the instant the server accepts TCP again
//! (a 1 ms poll from another thread; for `CLIENT KILL`, the instant its
//! reply arrived) to the end of the client's first successful op issued
//! after the old connections were certainly gone (server reaped; kill
//! acknowledged), traffic or prober. A round ends once every contender
//! has recovered (plus 0.5 s), or 11 s after the server's return; a
//! contender that has not recovered by then is counted as such, its ops
//! still pending are cut off and counted as hung, and it is replaced by a
//! fresh client (as a health check before each round does for any client
//! that cannot run an op), so every round starts with every client
//! healthy. For redial, from its events (`Client::events`), the table also
//! gives the time from the start of the reconnect attempt that brought the
//! link back (its `reconnecting` event's receipt + its delay, or the
//! server's return if later) to the first successful op: what of the
//! recovery is not the backoff's wait (connect, role check, the buffer's
//! dispatch, the first reply).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, KeysInterface, ReconnectPolicy};
use futures::StreamExt;
use redial::core::{Config, Event};
use redial::redis::RedisConnector;
use redial::{Client, runtime::TokioRuntime};
use redial_bench::{Redis, median, millis};
use tokio::task::JoinHandle;

/// Time between two traffic ops of one client.
const TICK: Duration = Duration::from_millis(10);
/// Time between two prober ops (and between two of the raw floor's
/// reconnect attempts).
const PROBE_GAP: Duration = Duration::from_millis(1);
/// An op with no outcome this long after issue counts as hung.
const HUNG: Duration = Duration::from_secs(15);
/// Healthy traffic before each fault.
const WARM: Duration = Duration::from_secs(1);
/// Traffic kept up once every contender has recovered.
const SETTLE: Duration = Duration::from_millis(500);
/// A round ends at the latest this long after the server's return.
const AFTER_MAX: Duration = Duration::from_secs(11);
/// How long a client that has not recovered keeps its pending ops after
/// the round's traffic stops.
const CUT_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGKILL, down for the outage, restart.
    Kill,
    /// SIGTERM (graceful), down for the outage, restart.
    Term,
    /// `CLIENT KILL TYPE normal`; the server stays up.
    ClientKill,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    fault: Fault,
    /// How long the server stays down (unused for `ClientKill`).
    outage: Duration,
    rounds: usize,
}

impl Scenario {
    fn label(&self) -> String {
        let down = self.outage.as_secs_f64();
        match self.fault {
            Fault::Kill => format!("SIGKILL, down {down} s"),
            Fault::Term => format!("SIGTERM, down {down} s"),
            Fault::ClientKill => "CLIENT KILL, server stays up".into(),
        }
    }
}

const fn scenario(fault: Fault, outage_ms: u64, rounds: usize) -> Scenario {
    Scenario {
        fault,
        outage: Duration::from_millis(outage_ms),
        rounds,
    }
}

/// The schedule: round `r` of every scenario runs before round `r + 1` of any.
const SCENARIOS: [Scenario; 5] = [
    scenario(Fault::Kill, 300, 4),
    scenario(Fault::ClientKill, 0, 4),
    scenario(Fault::Kill, 2000, 4),
    scenario(Fault::Term, 300, 4),
    scenario(Fault::Kill, 10_000, 3),
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
type Log = Arc<Mutex<Vec<Record>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn incr(key: &str) -> redis::Cmd {
    let mut c = redis::cmd("INCR");
    c.arg(key);
    c
}

/// How to (re)build a contender.
#[derive(Clone)]
enum Spec {
    Floor,
    Redial { resp3: bool, config: Box<Config> },
    Manager(redis::aio::ConnectionManagerConfig),
    Fred(ReconnectPolicy),
}

struct Contender {
    name: &'static str,
    key: &'static str,
    spec: Spec,
    op: OpFn,
    /// redial only: its events, stamped on receipt.
    events: Option<EventLog>,
    /// How many times it was replaced by a fresh client.
    rebuilt: usize,
}

impl Contender {
    async fn new(name: &'static str, key: &'static str, spec: Spec, url: &str) -> Contender {
        let (op, events) = build(&spec, key, url, 7).await;
        Contender {
            name,
            key,
            spec,
            op,
            events,
            rebuilt: 0,
        }
    }

    async fn rebuild(&mut self, url: &str) {
        self.rebuilt += 1;
        let (op, events) = build(&self.spec, self.key, url, 7 + self.rebuilt as u64).await;
        self.op = op;
        self.events = events;
    }
}

async fn build(spec: &Spec, key: &'static str, url: &str, seed: u64) -> (OpFn, Option<EventLog>) {
    match spec {
        Spec::Floor => (floor(&format!("{url}?protocol=resp3"), key).await, None),
        Spec::Redial { resp3, config } => {
            let url = if *resp3 {
                format!("{url}?protocol=resp3")
            } else {
                url.to_string()
            };
            let (op, events) = redial(&url, (**config).clone(), key, seed).await;
            (op, Some(events))
        }
        Spec::Manager(config) => {
            let url = format!("{url}?protocol=resp3");
            (manager(&url, config.clone(), key).await, None)
        }
        Spec::Fred(policy) => (fred(url, policy.clone(), key).await, None),
    }
}

/// The raw floor's connection slot: `None` while the harness reconnects.
struct Slot {
    generation: u64,
    conn: Option<redis::aio::MultiplexedConnection>,
}

type SlotSender = tokio::sync::watch::Sender<Slot>;

/// Empties the slot if it still holds connection `generation`.
fn mark_dead(tx: &SlotSender, generation: u64) {
    tx.send_if_modified(|s| {
        let mine = s.generation == generation && s.conn.is_some();
        if mine {
            s.conn = None;
        }
        mine
    });
}

/// The raw floor over `url` (RESP3, so that a closed connection is
/// reported at once by the crate's disconnect push).
async fn floor(url: &str, key: &'static str) -> OpFn {
    let client = redis::Client::open(url).expect("redis url");
    let (tx, _) = tokio::sync::watch::channel(Slot {
        generation: 0,
        conn: None,
    });
    let tx = Arc::new(tx);
    // The reconnect loop: waits for the slot to be emptied (by the
    // disconnect push or by an op that failed on the connection), then
    // connects every PROBE_GAP until it succeeds. Ends with the sender.
    let weak: Weak<SlotSender> = Arc::downgrade(&tx);
    let mut rx = tx.subscribe();
    tokio::spawn(async move {
        let mut generation = 0;
        while rx.wait_for(|s| s.conn.is_none()).await.is_ok() {
            generation += 1;
            let w = weak.clone();
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_push_sender(move |info: redis::PushInfo| {
                    if info.kind == redis::PushKind::Disconnection {
                        if let Some(tx) = w.upgrade() {
                            mark_dead(&tx, generation);
                        }
                    }
                    Ok::<(), std::convert::Infallible>(())
                });
            loop {
                if weak.strong_count() == 0 {
                    return;
                }
                match client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(conn) => {
                        if let Some(tx) = weak.upgrade() {
                            tx.send_modify(|s| {
                                s.generation = generation;
                                s.conn = Some(conn);
                            });
                        }
                        break;
                    }
                    Err(_) => tokio::time::sleep(PROBE_GAP).await,
                }
            }
        }
    });
    let _ = tx.subscribe().wait_for(|s| s.conn.is_some()).await;
    Arc::new(move || {
        let tx = tx.clone();
        Box::pin(async move {
            let (generation, mut conn) = {
                let mut rx = tx.subscribe();
                let Ok(slot) = rx.wait_for(|s| s.conn.is_some()).await else {
                    return false;
                };
                (slot.generation, slot.conn.clone().expect("checked"))
            };
            match incr(key).query_async::<i64>(&mut conn).await {
                Ok(_) => true,
                Err(e) => {
                    if e.code().is_none() || e.is_io_error() {
                        mark_dead(&tx, generation);
                    }
                    false
                }
            }
        })
    })
}

async fn redial(url: &str, config: Config, key: &'static str, seed: u64) -> (OpFn, EventLog) {
    let connector = RedisConnector::new([url]).expect("redis url");
    let client = Client::builder(connector)
        .config(config)
        .seed(seed)
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
    client.call(incr(key)).await.expect("redial first op");
    let op: OpFn = Arc::new(move || {
        let c = client.clone();
        Box::pin(async move { c.call(incr(key)).await.is_ok() })
    });
    (op, events)
}

async fn manager(
    url: &str,
    config: redis::aio::ConnectionManagerConfig,
    key: &'static str,
) -> OpFn {
    let client = redis::Client::open(url).expect("redis url");
    let manager = client
        .get_connection_manager_with_config(config)
        .await
        .expect("connection manager");
    Arc::new(move || {
        let mut m = manager.clone();
        Box::pin(async move { incr(key).query_async::<i64>(&mut m).await.is_ok() })
    })
}

async fn fred(url: &str, policy: ReconnectPolicy, key: &'static str) -> OpFn {
    let config = fred::prelude::Config::from_url(url).expect("fred url");
    let client = fred::prelude::Builder::from_config(config)
        .set_policy(policy)
        .build()
        .expect("fred client");
    client.init().await.expect("fred connect");
    Arc::new(move || {
        let c = client.clone();
        Box::pin(async move { c.incr::<i64, _>(key).await.is_ok() })
    })
}

async fn timed(op: &OpFn) -> Record {
    let issued = Instant::now();
    let outcome = match tokio::time::timeout(HUNG, op()).await {
        Ok(true) => Outcome::Ok,
        Ok(false) => Outcome::Failed,
        Err(_) => Outcome::Hung,
    };
    Record {
        issued,
        done: Instant::now(),
        outcome,
    }
}

/// Issues an op every TICK until `stop`, each in its own task; returns
/// every task with its issue time.
async fn drive(op: OpFn, log: Log, stop: Arc<AtomicBool>) -> Vec<(Instant, JoinHandle<()>)> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::new();
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let (op, log) = (op.clone(), log.clone());
        let issued = Instant::now();
        tasks.push((
            issued,
            tokio::spawn(async move {
                let r = timed(&op).await;
                lock(&log).push(r);
            }),
        ));
    }
    tasks
}

/// When the old connections are certainly gone, and when the server is back.
type Marks = Arc<Mutex<Option<(Instant, Instant)>>>;

/// One op at a time, PROBE_GAP apart, until an op issued after the old
/// connections were gone has succeeded (or `stop`).
async fn probe(op: OpFn, log: Log, marks: Marks, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        let r = timed(&op).await;
        lock(&log).push(r);
        let marks = *lock(&marks);
        if r.outcome == Outcome::Ok && marks.is_some_and(|(dead, _)| r.issued >= dead) {
            return;
        }
        tokio::time::sleep(PROBE_GAP).await;
    }
}

/// The end of the first successful op issued at or after `dead`.
fn first_ok(records: &[Record], dead: Instant) -> Option<Instant> {
    records
        .iter()
        .filter(|r| r.outcome == Outcome::Ok && r.issued >= dead)
        .map(|r| r.done)
        .min()
}

/// Waits for `tasks` (until `cut`, if given; then aborts the rest and
/// records them as hung).
async fn drain(tasks: Vec<(Instant, JoinHandle<()>)>, log: Log, cut: Option<tokio::time::Instant>) {
    for (issued, mut task) in tasks {
        let finished = match cut {
            Some(cut) => tokio::time::timeout_at(cut, &mut task).await.is_ok(),
            None => {
                let _ = (&mut task).await;
                true
            }
        };
        if !finished {
            task.abort();
            lock(&log).push(Record {
                issued,
                done: Instant::now(),
                outcome: Outcome::Hung,
            });
        }
    }
}

/// One contender's figures for one scenario, summed over its rounds.
#[derive(Default, Debug, Clone)]
struct Tally {
    recovery_ms: Vec<f64>,
    /// redial: ms from the start of the reconnect attempt that brought the
    /// link back (or from the server's return, if later) to the first ok.
    after_backoff_ms: Vec<f64>,
    down_ok: usize,
    down_failed: usize,
    down_hung: usize,
    inflight_failed: usize,
    after_failed: usize,
    not_recovered: usize,
}

/// What the harness saw of one round.
struct Round {
    kill: Instant,
    dead: Instant,
    back: Instant,
}

/// Adds one round of one contender to `tally`; returns its recovery in ms.
fn analyse(
    round: &Round,
    traffic: &[Record],
    probes: &[Record],
    events: Option<&EventLog>,
    tally: &mut Tally,
) -> Option<f64> {
    let Round { kill, dead, back } = *round;
    for r in traffic {
        if r.issued >= kill && r.issued < back {
            match r.outcome {
                Outcome::Ok => tally.down_ok += 1,
                Outcome::Failed => tally.down_failed += 1,
                Outcome::Hung => tally.down_hung += 1,
            }
        } else if r.issued < kill && r.done >= kill && r.outcome != Outcome::Ok {
            tally.inflight_failed += 1;
        } else if r.issued >= back && r.outcome != Outcome::Ok {
            tally.after_failed += 1;
        }
    }
    let first = [first_ok(traffic, dead), first_ok(probes, dead)]
        .into_iter()
        .flatten()
        .min();
    let Some(first) = first else {
        tally.not_recovered += 1;
        return None;
    };
    let recovery = first.saturating_duration_since(back);
    tally.recovery_ms.push(millis(recovery));
    if let Some(events) = events {
        // The reconnect attempt that brought the link back was scheduled by
        // the last `reconnecting` event before the first success; it
        // started at the event's receipt + its delay. (An attempt that
        // started while the server was still down did not bring the link
        // back: a later event is then the last one.)
        let attempt = lock(events)
            .iter()
            .filter(|(t, _)| *t >= kill && *t <= first)
            .filter_map(|(t, e)| match e {
                Event::Reconnecting { delay, .. } => Some(*t + *delay),
                _ => None,
            })
            .next_back();
        if let Some(start) = attempt {
            tally
                .after_backoff_ms
                .push(millis(first.saturating_duration_since(start.max(back))));
        }
    }
    Some(millis(recovery))
}

/// Runs one round of `s` against every contender; returns each one's
/// recovery (ms) and the server's measured downtime.
fn run_round(
    rt: &tokio::runtime::Runtime,
    server: &mut Redis,
    contenders: &mut [Contender],
    s: &Scenario,
    tallies: &mut [Tally],
) -> (Vec<Option<f64>>, Duration) {
    let url = server.url();
    // Every client healthy before the fault.
    rt.block_on(async {
        for c in contenders.iter_mut() {
            let healthy = matches!(
                tokio::time::timeout(Duration::from_secs(2), (c.op)()).await,
                Ok(true)
            );
            if !healthy {
                eprintln!("  {}: unhealthy before the round; replaced", c.name);
                c.rebuild(&url).await;
            }
        }
    });
    for c in contenders.iter() {
        if let Some(e) = &c.events {
            lock(e).clear();
        }
    }
    let traffic: Vec<Log> = contenders.iter().map(|_| Log::default()).collect();
    let probes: Vec<Log> = contenders.iter().map(|_| Log::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let marks: Marks = Arc::default();
    let drivers: Vec<_> = contenders
        .iter()
        .zip(&traffic)
        .map(|(c, log)| rt.spawn(drive(c.op.clone(), log.clone(), stop.clone())))
        .collect();
    std::thread::sleep(WARM);

    let kill = Instant::now();
    let probers: Vec<_> = contenders
        .iter()
        .zip(&probes)
        .map(|(c, log)| {
            rt.spawn(probe(
                c.op.clone(),
                log.clone(),
                marks.clone(),
                stop.clone(),
            ))
        })
        .collect();
    match s.fault {
        Fault::Kill => server.kill(),
        Fault::Term => server.terminate(),
        Fault::ClientKill => {
            let n = server.kill_clients();
            if n < contenders.len() as u64 {
                eprintln!("  CLIENT KILL closed only {n} connections");
            }
        }
    }
    let dead = Instant::now();
    let back = match s.fault {
        Fault::ClientKill => dead,
        Fault::Kill | Fault::Term => {
            std::thread::sleep(s.outage.saturating_sub(dead - kill));
            server.restart()
        }
    };
    *lock(&marks) = Some((dead, back));

    // Until every contender has recovered (then SETTLE more), or AFTER_MAX.
    let recovered = |i: usize| {
        first_ok(&lock(&traffic[i]), dead)
            .or_else(|| first_ok(&lock(&probes[i]), dead))
            .is_some()
    };
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if (0..contenders.len()).all(recovered) {
            std::thread::sleep(SETTLE);
            break;
        }
        if back.elapsed() >= AFTER_MAX {
            break;
        }
    }
    let ok: Vec<bool> = (0..contenders.len()).map(recovered).collect();
    stop.store(true, Ordering::Release);
    rt.block_on(async {
        let cut = tokio::time::Instant::now() + CUT_GRACE;
        let drains = drivers.into_iter().zip(probers).zip(&traffic).zip(&ok).map(
            |(((driver, prober), log), &ok)| async move {
                let tasks = driver.await.unwrap_or_default();
                let cut = (!ok).then_some(cut);
                drain(tasks, log.clone(), cut).await;
                if ok {
                    let _ = prober.await;
                } else {
                    prober.abort();
                }
            },
        );
        futures::future::join_all(drains).await;
    });

    let round = Round { kill, dead, back };
    let results = contenders
        .iter()
        .enumerate()
        .map(|(i, c)| {
            analyse(
                &round,
                &lock(&traffic[i]),
                &lock(&probes[i]),
                c.events.as_ref(),
                &mut tallies[i],
            )
        })
        .collect();
    rt.block_on(async {
        for (c, ok) in contenders.iter_mut().zip(&ok) {
            if !ok {
                c.rebuild(&url).await;
            }
        }
    });
    (results, back - kill)
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.1} ms")
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    // Criterion-style filters are accepted and ignored: this bench has one report.
    let Some(mut server) = Redis::start() else {
        return;
    };
    let url = server.url();
    let started = Instant::now();
    let load_before = loadavg();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tuned_manager = redis::aio::ConnectionManagerConfig::new()
        .set_min_delay(Duration::from_millis(100))
        .set_exponent_base(2.0)
        .set_max_delay(Duration::from_millis(2500))
        .set_number_of_retries(30);
    let specs: Vec<(&'static str, &'static str, Spec)> = vec![
        (
            "raw floor: multiplexed conn (RESP3), re-created every 1 ms",
            "floor",
            Spec::Floor,
        ),
        (
            "redial recommended (RESP2)",
            "redial-rec",
            Spec::Redial {
                resp3: false,
                config: Box::new(Config::recommended()),
            },
        ),
        (
            "redial recommended, RESP3",
            "redial-rec3",
            Spec::Redial {
                resp3: true,
                config: Box::new(Config::recommended()),
            },
        ),
        (
            "redial mongodb-legacy, RESP3",
            "redial-legacy",
            Spec::Redial {
                resp3: true,
                config: Box::new(Config::mongodb_legacy()),
            },
        ),
        (
            "redis ConnectionManager, defaults (RESP3)",
            "cm-default",
            Spec::Manager(redis::aio::ConnectionManagerConfig::new()),
        ),
        (
            "redis ConnectionManager, tuned (RESP3)",
            "cm-tuned",
            Spec::Manager(tuned_manager),
        ),
        (
            "fred, default policy (constant 1 s)",
            "fred-default",
            Spec::Fred(ReconnectPolicy::default()),
        ),
        (
            "fred, tuned (exponential 100 ms ×2 ≤ 5 s)",
            "fred-tuned",
            Spec::Fred(ReconnectPolicy::new_exponential(0, 100, 5000, 2)),
        ),
    ];
    let mut contenders: Vec<Contender> = rt.block_on(async {
        let mut v = Vec::new();
        for (name, key, spec) in specs {
            v.push(Contender::new(name, key, spec, &url).await);
        }
        v
    });
    let mut tallies: Vec<Vec<Tally>> = SCENARIOS
        .iter()
        .map(|_| vec![Tally::default(); contenders.len()])
        .collect();
    let mut downtimes: Vec<Vec<Duration>> = vec![Vec::new(); SCENARIOS.len()];

    // REDIAL_BENCH_ROUNDS=n: at most n rounds per scenario (a smoke run).
    let cap: usize = std::env::var("REDIAL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let scenarios: Vec<Scenario> = SCENARIOS
        .iter()
        .map(|s| Scenario {
            rounds: s.rounds.min(cap),
            ..*s
        })
        .collect();
    let most = scenarios.iter().map(|s| s.rounds).max().unwrap_or(0);
    for r in 0..most {
        for (k, s) in scenarios.iter().enumerate() {
            if r >= s.rounds {
                continue;
            }
            let (results, down) = run_round(&rt, &mut server, &mut contenders, s, &mut tallies[k]);
            downtimes[k].push(down);
            let line: Vec<String> = contenders
                .iter()
                .zip(results)
                .map(|(c, v)| format!("{} {}", c.key, v.map_or("never".into(), ms)))
                .collect();
            eprintln!(
                "round {} of {} (down {:.3} s; t = {:.0} s): server back -> first ok: {}",
                r + 1,
                s.label(),
                down.as_secs_f64(),
                started.elapsed().as_secs_f64(),
                line.join(", ")
            );
        }
    }

    println!(
        "\n## Recovery: physical limit and peers (one run, {:.0} s; load average {} before, {} after)\n",
        started.elapsed().as_secs_f64(),
        load_before,
        loadavg()
    );
    println!(
        "Server back (accepting TCP; for CLIENT KILL: kill acknowledged) → the client's first successful op, median / max over the rounds; one `INCR` every {} ms per client, plus a 1 ms prober from the fault until recovered.\n",
        TICK.as_millis()
    );
    print!("| client |");
    for s in &scenarios {
        print!(" {} ({}×) |", s.label(), s.rounds);
    }
    println!();
    println!("|---|{}", "---|".repeat(scenarios.len()));
    for (i, c) in contenders.iter().enumerate() {
        print!("| {} |", c.name);
        for t in tallies.iter() {
            let t = &t[i];
            let mut cell = if t.recovery_ms.is_empty() {
                "never".to_string()
            } else {
                let max = t.recovery_ms.iter().copied().fold(0.0, f64::max);
                format!("{} / {}", ms(median(&mut t.recovery_ms.clone())), ms(max))
            };
            if t.not_recovered > 0 {
                cell.push_str(&format!(" ({} never)", t.not_recovered));
            }
            print!(" {cell} |");
        }
        println!();
    }

    for (k, s) in scenarios.iter().enumerate() {
        let d = &downtimes[k];
        let lo = d.iter().min().copied().unwrap_or_default();
        let hi = d.iter().max().copied().unwrap_or_default();
        println!("\n### {} — {} rounds\n", s.label(), s.rounds);
        match s.fault {
            Fault::ClientKill => println!(
                "Kill command round trip {:.1}–{:.1} ms; the server stays up.\n",
                millis(lo),
                millis(hi)
            ),
            _ => println!(
                "Server down {:.3}–{:.3} s (kill → accepting again, measured); ≈ {} ops per client issued while down per round.\n",
                lo.as_secs_f64(),
                hi.as_secs_f64(),
                (hi.as_millis() / TICK.as_millis())
            ),
        }
        println!(
            "| client | back → first ok: median | max | ops issued while down: ok / failed / hung | other ops failed or hung: in flight at the fault / issued after the return | redial: attempt start → first ok, median / max | rounds not recovered within {} s |",
            AFTER_MAX.as_secs()
        );
        println!("|---|---|---|---|---|---|---|");
        for (c, t) in contenders.iter().zip(tallies[k].iter()) {
            let max = t.recovery_ms.iter().copied().fold(0.0, f64::max);
            let within = if t.after_backoff_ms.is_empty() {
                "—".to_string()
            } else {
                let max = t.after_backoff_ms.iter().copied().fold(0.0, f64::max);
                format!(
                    "{} / {}",
                    ms(median(&mut t.after_backoff_ms.clone())),
                    ms(max)
                )
            };
            let (med, max) = if t.recovery_ms.is_empty() {
                ("—".to_string(), "—".to_string())
            } else {
                (ms(median(&mut t.recovery_ms.clone())), ms(max))
            };
            println!(
                "| {} | {} | {} | {} / {} / {} | {} / {} | {} | {} |",
                c.name,
                med,
                max,
                t.down_ok,
                t.down_failed,
                t.down_hung,
                t.inflight_failed,
                t.after_failed,
                within,
                t.not_recovered
            );
        }
    }
    let rebuilt: Vec<String> = contenders
        .iter()
        .filter(|c| c.rebuilt > 0)
        .map(|c| format!("{} ×{}", c.name, c.rebuilt))
        .collect();
    if !rebuilt.is_empty() {
        println!(
            "\nReplaced by a fresh client after a round it did not recover from: {}.",
            rebuilt.join(", ")
        );
    }
    drop(contenders);
    rt.shutdown_timeout(Duration::from_secs(1));
}
