//! The redis connector under `Config::recommended()` against private
//! redis-servers, each scenario on tokio and on smol (`tokio_rt::…`,
//! `smol_rt::…`): a restart from a data set that takes seconds to
//! load (`LOADING` read as pushback), and a failover with both servers in
//! the seed list (the role asked on connect, `READONLY` drained).
//!
//! `cargo test -p redial --features redis,smol --test redis_recommended -- --nocapture --test-threads 1`

#![cfg(feature = "redis")]

mod support;

#[path = "support/rt.rs"]
mod rt;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redial::core::{Config, ConnectFailure, ErrorKind, Event, State};
use redial::redis::RedisConnector;
use redial::redis::redis::{self, Value, cmd};
use redial::{Client, Events};
use rt::{Rt, Task, on_each_runtime};
use support::{RedisServer, resp_command_within};

const LIMIT: Duration = Duration::from_secs(120);

on_each_runtime!(
    restart_from_a_slow_loading_dump,
    restart_from_a_three_second_load,
    failover_under_recommended_loses_and_doubles_nothing,
);

/// A client on `rt` under `Config::recommended()` as is, with an event
/// stream that sees every event from the start.
fn recommended(rt: Rt, urls: &[String]) -> (Client<RedisConnector>, Events) {
    let conn = RedisConnector::new(urls.iter().map(String::as_str)).expect("urls");
    Client::builder(conn)
        .config(Config::recommended())
        .seed(4)
        .runtime(rt.runtime())
        .build_with_events()
        .expect("client")
}

/// Every event seen so far, with its time.
type Log = Arc<Mutex<Vec<(Instant, Event)>>>;

/// Collects every event into a log until the stream ends.
fn record(rt: Rt, mut ev: Events) -> (Log, Task<()>) {
    let log = Log::default();
    let l = log.clone();
    let task = rt.spawn(async move {
        while let Some(e) = ev.next().await {
            if std::env::var_os("REDIAL_TRACE").is_some() {
                eprintln!("event: {e}");
            }
            support::lock(&l).push((Instant::now(), e));
        }
    });
    (log, task)
}

/// Waits until the log holds `n` events named `name`.
async fn wait_event(rt: Rt, log: &Log, name: &str, n: usize) {
    while support::lock(log)
        .iter()
        .filter(|(_, e)| e.name() == name)
        .count()
        < n
    {
        rt.sleep(Duration::from_millis(2)).await;
    }
}

fn names(log: &Log) -> Vec<String> {
    support::lock(log)
        .iter()
        .map(|(_, e)| e.to_string())
        .collect()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::BulkString(b) => String::from_utf8_lossy(b).parse().expect("number"),
        other => panic!("not an int: {other:?}"),
    }
}

/// The integer in a raw `GET` reply (`$1\r\n7`).
fn raw_int(reply: &str) -> i64 {
    reply
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a number: {reply:?}"))
}

fn incr() -> redis::Cmd {
    cmd("INCR").arg("counter").clone()
}

/// One call's life: when it was issued, when it resolved, and how.
#[derive(Debug, Clone)]
struct Outcome {
    issued: Instant,
    done: Instant,
    result: Result<i64, (ErrorKind, bool)>,
}

/// Issues a non-retryable INCR every `every` until `stop` is raised,
/// each call in its own task; returns every call's outcome.
async fn workload(
    rt: Rt,
    c: Client<RedisConnector>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let mut tasks = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let c = c.clone();
        tasks.push(rt.spawn(async move {
            let issued = Instant::now();
            let r = c.call(incr()).await;
            Outcome {
                issued,
                done: Instant::now(),
                result: r
                    .map(|v| int(&v))
                    .map_err(|e| (e.kind(), e.maybe_executed())),
            }
        }));
        rt.sleep(every).await;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// The accounting of a workload: ok, failed by kind, may-have-run.
struct Books {
    oks: Vec<i64>,
    failed: BTreeMap<&'static str, usize>,
    maybe_ran: usize,
}

fn books(results: &[Outcome]) -> Books {
    let mut b = Books {
        oks: Vec::new(),
        failed: BTreeMap::new(),
        maybe_ran: 0,
    };
    for o in results {
        match o.result {
            Ok(v) => b.oks.push(v),
            Err((kind, maybe)) => {
                *b.failed.entry(kind.name()).or_default() += 1;
                b.maybe_ran += usize::from(maybe);
            }
        }
    }
    b
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
}

/// When the server on `port` was seen loading: the first and last
/// `INFO persistence` answers with `loading:1`, and the first `loading:0`
/// after them (polled from a raw connection every 5 ms).
#[derive(Debug, Clone, Copy)]
struct Loading {
    first_seen: Instant,
    last_seen: Instant,
    over_seen: Instant,
}

fn watch_loading(port: u16, within: Duration) -> Option<Loading> {
    let start = Instant::now();
    let (mut first, mut last) = (None, None);
    while start.elapsed() < within {
        let info = resp_command_within(port, &["INFO", "persistence"], Duration::from_secs(5));
        match info_field(&info, "loading:").as_deref() {
            Some("1") => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
            }
            Some("0") => {
                return Some(Loading {
                    first_seen: first?,
                    last_seen: last?,
                    over_seen: Instant::now(),
                });
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// `DB loaded from disk: 1.234 seconds` in the server's log, if there.
fn logged_load(server: &RedisServer) -> Option<String> {
    let log = std::fs::read_to_string(server.dir().join("redis.log")).ok()?;
    log.lines().rev().find_map(|l| {
        l.split_once("DB loaded from disk: ")
            .map(|(_, r)| r.to_string())
    })
}

/// Fills `server` with `keys` more keys, saves, and returns the dump size.
fn populate_and_save(server: &RedisServer, keys: u64, from: u64) -> u64 {
    let long = Duration::from_secs(60);
    let prefix = format!("k{from}");
    let reply = resp_command_within(
        server.port,
        &["DEBUG", "POPULATE", &keys.to_string(), &prefix, "64"],
        long,
    );
    assert!(reply.starts_with("+OK"), "DEBUG POPULATE: {reply:?}");
    let reply = resp_command_within(server.port, &["SAVE"], long);
    assert!(reply.starts_with("+OK"), "SAVE: {reply:?}");
    std::fs::metadata(server.dir().join("dump.rdb"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Redis killed and restarted from a data set that takes over a second to
/// load, under `Config::recommended()` as is. While it loads the server
/// accepts connections, answers `ROLE` (master) and refuses every command
/// with `LOADING`: read as pushback, the ops are held and probed, never
/// failed. Checks: no op fails, ops issued during the load complete after
/// it, and every op is accounted for (the counter, saved in the dump
/// before the kill, ends at its saved value plus the number of oks).
/// One test at a time: a load's length is measured against the retry
/// budget, and three private servers loading hundreds of MB at once on a
/// small machine stretch each other's loads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn restart_from_a_slow_loading_dump(rt: Rt) {
    let _one = serial();
    slow_loading(rt, Duration::from_millis(1150), Load::Short);
}

/// The same with a load of over 3.5 s: longer than the retry budget
/// lasts. Re-sending a refused op is a retry, charged to the budget (10
/// tokens under `Config::recommended()`, retries allowed above half), so
/// ops refused again and again fail with `server_busy` — never "may have
/// run" — once it is spent; an op never sent still goes out as the probe,
/// uncharged, so the client takes work again as soon as the load ends.
/// (This once held a paused connection for ever: nothing was sent, so no
/// success could refund the budget.)
fn restart_from_a_three_second_load(rt: Rt) {
    let _one = serial();
    slow_loading(rt, Duration::from_millis(3500), Load::Long);
}

/// How long the load lasts against the retry budget.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Within the budget: no op may fail.
    Short,
    /// Beyond it: ops refused over and over may fail, only with
    /// `server_busy`; the client recovers after the load.
    Long,
}

/// The key count a calibration settled on, per target load (ms): the
/// same load on the other runtime starts from it (one round instead of
/// several).
static CALIBRATED: Mutex<BTreeMap<u128, u64>> = Mutex::new(BTreeMap::new());

fn slow_loading(rt: Rt, target: Duration, kind: Load) {
    let Some(mut server) =
        RedisServer::start_with(&["--enable-debug-command", "yes", "--logfile", "redis.log"])
    else {
        return;
    };
    // Calibrate: size the data set so that a restart loads for between
    // `target` and 1.3 × `target` (measured by polling `INFO persistence`,
    // as in the run below): measure, then scale the key count by the rate.
    let mut keys = 0u64;
    let calibrated = support::lock(&CALIBRATED).get(&target.as_millis()).copied();
    let mut want = calibrated.unwrap_or(500_000);
    let mut dump = 0;
    for round in 0.. {
        if want < keys {
            let reply = resp_command_within(server.port, &["FLUSHALL"], Duration::from_secs(60));
            assert!(reply.starts_with("+OK"), "FLUSHALL: {reply:?}");
            keys = 0;
        }
        dump = populate_and_save(&server, want - keys, keys);
        keys = want;
        server.restart();
        let t = Instant::now();
        let l = watch_loading(server.port, Duration::from_secs(60)).expect("loading seen");
        let took = l.over_seen.saturating_duration_since(t);
        eprintln!(
            "redis loading calibration {round}: {keys} keys, dump {} MB, loading seen for {:?} \
             (server log: {})",
            dump >> 20,
            took,
            logged_load(&server).unwrap_or_default()
        );
        if (took >= target && took <= target.mul_f64(1.3)) || round == 5 {
            support::lock(&CALIBRATED).insert(target.as_millis(), keys);
            break;
        }
        let aim = target.as_secs_f64() * 1.12;
        want = (keys as f64 * aim / took.as_secs_f64().max(0.05)) as u64;
    }

    rt.run(LIMIT, async move {
        let url = format!("{}?protocol=resp3", server.url());
        let (c, ev) = recommended(rt, &[url]);
        let (log, recorder) = record(rt, ev);
        wait_event(rt, &log, "connected", 1).await;
        // Saved in the dump: the counter's value the restart must bring back.
        let mut warm = 0;
        for _ in 0..3 {
            warm = int(&c.call(incr()).await.expect("warm-up"));
        }
        let reply = resp_command_within(server.port, &["SAVE"], Duration::from_secs(60));
        assert!(reply.starts_with("+OK"), "SAVE: {reply:?}");
        assert_eq!(c.outstanding(), 0, "nothing in flight at the kill");
        server.kill();
        // RESP3: the crash is seen at once; from here every op is buffered.
        wait_event(rt, &log, "disconnected", 1).await;
        let stop = Arc::new(AtomicBool::new(false));
        let load = rt.spawn(workload(rt, c.clone(), Duration::from_millis(10), stop.clone()));
        rt.sleep(Duration::from_millis(200)).await;
        let restarted = Instant::now();
        server.restart();
        let port = server.port;
        let watcher =
            rt.blocking(move || watch_loading(port, Duration::from_secs(60)));
        // The client's state while the server loads (paused: held by pushback).
        let mut states = BTreeMap::new();
        while !watcher.is_finished() {
            *states.entry(c.state().name()).or_insert(0u32) += 1;
            rt.sleep(Duration::from_millis(20)).await;
        }
        let loading = watcher.await.expect("loading seen");
        rt.sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let mut results = load.await;
        // One more, a second after the load is over.
        rt.sleep(Duration::from_secs(1)).await;
        let state_after = c.state();
        let issued = Instant::now();
        let late = c.call(incr()).await;
        results.push(Outcome {
            issued,
            done: Instant::now(),
            result: late
                .map(|v| int(&v))
                .map_err(|e| (e.kind(), e.maybe_executed())),
        });
        let late = results.last().map(|o| o.result).expect("pushed");
        let b = books(&results);
        let counter = raw_int(&server.admin(&["GET", "counter"]));
        let dbsize = raw_int(&server.admin(&["DBSIZE"]).replace(':', ""));
        let during: Vec<&Outcome> = results
            .iter()
            .filter(|o| o.issued >= loading.first_seen && o.issued <= loading.last_seen)
            .collect();
        let during_ok_after = during
            .iter()
            .filter(|o| o.result.is_ok() && o.done > loading.last_seen)
            .count();
        let down: Vec<&Outcome> = results.iter().filter(|o| o.issued < restarted).collect();
        let first_ok = results
            .iter()
            .filter(|o| o.result.is_ok())
            .map(|o| o.done)
            .min();
        let waits: Vec<Duration> = results
            .iter()
            .filter(|o| o.result.is_ok())
            .map(|o| o.done.saturating_duration_since(o.issued))
            .collect();
        let slowest = waits.iter().max().copied().unwrap_or_default();
        c.close().await;
        wait_event(rt, &log, "closed", 1).await;
        recorder.abort();
        let names = names(&log);
        eprintln!(
            "redis LOADING: {keys} keys ({dbsize} after load), dump {} MB; loading seen for {:?} \
             (first loading:1 {:?} after the restart, last {:?}, loading:0 {:?}; server log: {})",
            dump >> 20,
            loading.over_seen.saturating_duration_since(restarted),
            loading.first_seen.saturating_duration_since(restarted),
            loading.last_seen.saturating_duration_since(restarted),
            loading.over_seen.saturating_duration_since(restarted),
            logged_load(&server).unwrap_or_default()
        );
        eprintln!(
            "redis LOADING: {} calls ({} issued while down, {} while loading, {} of those ok after \
             the load); {} ok, failed by kind {:?}, {} may-have-run; counter {} = {} saved + {} oks; \
             first ok {:?} after loading:0 was seen; slowest ok call {:?}; client states sampled \
             while loading {:?}",
            results.len(),
            down.len(),
            during.len(),
            during_ok_after,
            b.oks.len(),
            b.failed,
            b.maybe_ran,
            counter,
            warm,
            b.oks.len(),
            first_ok.map(|t| t.saturating_duration_since(loading.over_seen)),
            slowest,
            states
        );
        eprintln!(
            "redis LOADING: a second after the load the client was {}; a call then: {late:?}",
            state_after.name()
        );
        eprintln!("redis LOADING: events {names:?}");

        // The premise: a load long enough for ops to meet `LOADING`. The
        // calibration aims at `target`..1.3 × `target`, but one restart's
        // load time moves by a third with the machine's load (seen in CI:
        // calibrated 1.32 s, then 0.95 s), so the premise asks for 60 %.
        let lasted = loading.last_seen.saturating_duration_since(restarted);
        assert!(
            lasted >= target.mul_f64(0.6),
            "the data set loads for at least 60% of {target:?} (loading:1 last seen {lasted:?} after the restart)"
        );
        assert_eq!(b.maybe_ran, 0, "nothing refused is reported may-have-run");
        assert!(!during.is_empty(), "ops were issued during the load");
        match kind {
            Load::Short => {
                assert!(b.failed.is_empty(), "no op fails: {:?}", b.failed);
                assert_eq!(
                    during_ok_after,
                    during.len(),
                    "every op issued during the load completes after it"
                );
            }
            Load::Long => {
                assert!(
                    b.failed.keys().all(|k| *k == "server_busy"),
                    "only server_busy failures: {:?}",
                    b.failed
                );
                assert!(
                    during_ok_after > 0,
                    "ops issued during the load complete after it"
                );
            }
        }
        assert!(
            late.is_ok() && state_after == redial::core::State::Connected,
            "a second after the load the client takes work: {} / {late:?}",
            state_after.name()
        );
        assert!(
            dbsize as u64 > keys,
            "the restart loaded the dump ({dbsize} keys)"
        );
        let mut distinct = b.oks.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), b.oks.len(), "no value handed out twice");
        assert_eq!(
            counter,
            warm + b.oks.len() as i64,
            "every ok ran once, nothing else ran"
        );
        assert_eq!(
            distinct.first().copied(),
            Some(warm + 1),
            "the counter came back from the dump"
        );
    });
}

/// Failover with both servers in the seed list, replica first, under
/// `Config::recommended()` (`require_primary` on): the client refuses the
/// replica on connect and settles on the primary A; a stream of
/// non-retryable INCRs runs while A is demoted (writes held on A by
/// `CLIENT PAUSE WRITE` while B catches up and is promoted, then A made
/// B's replica): the held writes come back `READONLY`, are re-queued
/// (they did not run), and run on B. Non-retryable on purpose: a write
/// that may have run is never sent again, so "executed twice" can only
/// come from the connector or core mistaking an executed write for a
/// refusal — the final counter on B, compared with the number of oks,
/// would show it.
fn failover_under_recommended_loses_and_doubles_nothing(rt: Rt) {
    let _one = serial();
    let Some(a) = RedisServer::start() else {
        return;
    };
    let Some(b) = RedisServer::start() else {
        return;
    };
    rt.run(LIMIT, async move {
        let bp = b.port.to_string();
        b.replicate_from(&a);
        // Replica first: the role check must send the client on to A.
        let (c, ev) = recommended(rt, &[b.url(), a.url()]);
        let (log, recorder) = record(rt, ev);
        let warm = c.call(incr()).await.expect("first write");
        assert_eq!(int(&warm), 1, "the first write ran on the primary");

        let stop = Arc::new(AtomicBool::new(false));
        let load = rt.spawn(workload(rt, c.clone(), Duration::from_millis(5), stop.clone()));
        rt.sleep(Duration::from_millis(400)).await;
        // Manual failover: hold writes on A, let B catch up, swap roles.
        let paused = Instant::now();
        assert!(
            a.admin(&["CLIENT", "PAUSE", "5000", "WRITE"])
                .starts_with("+OK")
        );
        let offset = |s: &RedisServer| -> u64 {
            info_field(&s.admin(&["INFO", "replication"]), "master_repl_offset:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let target = offset(&a);
        while offset(&b) < target {
            rt.sleep(Duration::from_millis(5)).await;
        }
        // Writes pile up on A meanwhile: in flight when A is demoted.
        rt.sleep(Duration::from_millis(100)).await;
        assert!(b.admin(&["REPLICAOF", "NO", "ONE"]).starts_with("+OK"));
        assert!(a.admin(&["REPLICAOF", "127.0.0.1", &bp]).starts_with("+OK"));
        assert!(a.admin(&["CLIENT", "UNPAUSE"]).starts_with("+OK"));
        let swapped = Instant::now();
        rt.sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        let results = load.await;
        let after = c.call(incr()).await.expect("a write after the failover");
        let bk = books(&results);
        let counter = raw_int(&b.admin(&["GET", "counter"]));
        let held = results
            .iter()
            .filter(|o| o.issued >= paused && o.issued < swapped)
            .count();
        let a_role = info_field(&a.admin(&["INFO", "replication"]), "role:").unwrap_or_default();
        c.close().await;
        wait_event(rt, &log, "closed", 1).await;
        recorder.abort();
        let events = support::lock(&log).clone();
        let not_primary = events
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e,
                    Event::Reconnecting {
                        error: Some(ConnectFailure::NotPrimary),
                        ..
                    }
                )
            })
            .count();
        let names = names(&log);
        let mut distinct = bk.oks.clone();
        distinct.sort_unstable();
        distinct.dedup();
        eprintln!(
            "redis failover (recommended, seed list [replica B, primary A]): roles swapped in {:?}; \
             {} calls ({} issued while A held writes), {} ok, failed by kind {:?}, {} may-have-run; \
             counter on the new primary {} = 1 first write + {} oks + 1 after; connects refused as \
             not primary: {}; A now {}",
            swapped.saturating_duration_since(paused),
            results.len(),
            held,
            bk.oks.len(),
            bk.failed,
            bk.maybe_ran,
            counter,
            bk.oks.len(),
            not_primary,
            a_role
        );
        eprintln!("redis failover: events {names:?}");
        assert!(bk.failed.is_empty(), "no write failed: {:?}", bk.failed);
        assert!(held > 0, "writes were in flight when A was demoted");
        assert_eq!(distinct.len(), bk.oks.len(), "no value handed out twice");
        assert_eq!(
            counter,
            1 + bk.oks.len() as i64 + 1,
            "none lost, none executed twice"
        );
        assert_eq!(int(&after), counter, "the last write ran on B");
        assert!(
            not_primary >= 1,
            "the replica first in the seed list was refused on connect"
        );
        assert!(
            events.iter().any(|(_, e)| matches!(
                e,
                Event::Disconnected {
                    reason: redial::core::DisconnectReason::WrongServer,
                    ..
                }
            )),
            "A was left as the wrong server"
        );
        assert_eq!(c.state(), State::Closed);
    });
}
