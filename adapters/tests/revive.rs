//! A terminal give-up, then `Client::revive()`, on every runtime: tokio
//! and smol (the `redis` crate's connector, on that crate's support for
//! each) and async-std (a connector of the examples' own,
//! `common/inline.rs`: redis 1.x has no async-std support), against a
//! private redis-server.
//!
//! The server stays down until a small reconnect budget is spent
//! (`reconnect_failed`, `GiveUp::Terminal`: later calls fail with
//! `topology was destroyed` and nothing reconnects on its own); it comes
//! back; `revive()` reconnects with a fresh budget; the event stream
//! subscribed at the start keeps receiving events, and ops succeed again.
//!
//! `cargo test -p redial --all-features --test revive -- --nocapture`

#![cfg(any(feature = "redis", feature = "smol", feature = "async-std"))]

mod support;

#[cfg(all(feature = "redis", any(feature = "tokio", feature = "smol")))]
#[path = "support/rt.rs"]
mod rt;

#[cfg(feature = "async-std")]
#[allow(dead_code)]
#[path = "../examples/common/inline.rs"]
mod inline;

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::{Either, select};
use redial::core::{BufferPolicy, Config, ErrorKind, GiveUp, Heartbeat, Jitter, State, Tries};
use redial::{Client, Connector, Events, Runtime};
use support::RedisServer;

/// Every run finishes well within this.
const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    match select(pin!(f), pin!(async_io::Timer::after(LIMIT))).await {
        Either::Left((v, _)) => v,
        Either::Right(_) => panic!("test exceeded its {LIMIT:?} bound"),
    }
}

async fn sleep(d: Duration) {
    async_io::Timer::after(d).await;
}

/// `Config::recommended()` with a small reconnect budget, a terminal
/// give-up and a quick heartbeat (the RESP connector sees a loss only
/// through traffic).
fn config() -> Config {
    Config::recommended()
        .to_builder()
        .reconnect_tries(Tries::Limited(3))
        .backoff(redial::core::Backoff::Constant(Duration::from_millis(100)))
        .jitter(Jitter::None)
        .connect_timeout(Some(Duration::from_millis(300)))
        .heartbeat(Some(Heartbeat {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
        }))
        .buffer(BufferPolicy::Unbounded)
        .buffer_timeout(None)
        .give_up(GiveUp::Terminal)
        .build()
        .expect("config")
}

/// Reads `ev` until an event named `name`, appending every name read.
async fn until(ev: &mut Events, name: &str, seen: &mut Vec<String>) {
    while let Some(e) = ev.next().await {
        seen.push(e.to_string());
        if e.name() == name {
            return;
        }
    }
    panic!("event stream ended before {name}: {seen:?}");
}

/// What one runtime's run saw.
#[derive(Debug)]
struct Observed {
    before: Vec<String>,
    gave_up_after: Duration,
    destroyed: (ErrorKind, String),
    idle_state: State,
    idle_clients: u64,
    after_revive: Vec<String>,
    revived_in: Duration,
    ops_after: Vec<String>,
    missed: u64,
}

async fn give_up_then_revive<C>(
    rt: Arc<dyn Runtime>,
    connector: C,
    server: &mut RedisServer,
    op: fn() -> C::Op,
) -> Observed
where
    C: Connector,
    C::Output: Debug,
    C::Error: std::fmt::Display,
{
    let (c, mut ev) = Client::builder(connector)
        .config(config())
        .seed(4)
        .runtime(rt)
        .build_with_events()
        .expect("client");
    let mut before = Vec::new();
    until(&mut ev, "connected", &mut before).await;
    c.call(op())
        .await
        .map_err(|e| e.to_string())
        .expect("first op");

    let killed = Instant::now();
    server.kill();
    until(&mut ev, "reconnect_failed", &mut before).await;
    let gave_up_after = killed.elapsed();
    let e = c.call(op()).await.expect_err("after a terminal give-up");
    let destroyed = (e.kind(), e.message().to_string());

    server.restart();
    sleep(Duration::from_millis(500)).await;
    // Terminal: nothing reconnects on its own.
    let idle_state = c.state();
    let idle_clients = support::connected_clients(server.port);

    let revived = Instant::now();
    c.revive();
    let mut after_revive = Vec::new();
    until(&mut ev, "reconnected", &mut after_revive).await;
    let revived_in = revived.elapsed();
    let mut ops_after = Vec::new();
    for _ in 0..3 {
        let v = c
            .call(op())
            .await
            .map_err(|e| e.to_string())
            .expect("op after revive");
        ops_after.push(format!("{v:?}"));
    }
    c.close().await;
    until(&mut ev, "closed", &mut after_revive).await;
    Observed {
        before,
        gave_up_after,
        destroyed,
        idle_state,
        idle_clients,
        after_revive,
        revived_in,
        ops_after,
        missed: ev.missed(),
    }
}

fn check(runtime: &str, o: &Observed) {
    eprintln!(
        "revive on {runtime}: gave up {:?} after the kill (events {:?}); then a call failed with \
         {} ({}); {} with {} client(s) on the restarted server before revive; revive → \
         reconnected in {:?} (events on the same stream {:?}); ops after: {:?}; events missed {}",
        o.gave_up_after,
        o.before,
        o.destroyed.0,
        o.destroyed.1,
        o.idle_state.name(),
        o.idle_clients,
        o.revived_in,
        o.after_revive,
        o.ops_after,
        o.missed
    );
    assert_eq!(o.destroyed.0, ErrorKind::TopologyDestroyed, "{o:?}");
    assert_eq!(o.idle_state, State::Failed, "{o:?}");
    assert_eq!(
        o.idle_clients, 1,
        "only the admin connection: no reconnect before revive: {o:?}"
    );
    assert!(
        o.after_revive.iter().any(|e| e.starts_with("reconnected")),
        "the stream subscribed at the start sees the reconnect after revive: {o:?}"
    );
    assert!(
        o.after_revive.last().is_some_and(|e| e == "closed"),
        "{o:?}"
    );
    assert_eq!(o.ops_after.len(), 3);
    assert_eq!(o.missed, 0);
}

/// The redis crate's connector, on `rt` (the crate's own support for it).
#[cfg(all(feature = "redis", any(feature = "tokio", feature = "smol")))]
fn redis_give_up_then_revive(rt: rt::Rt) {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let connector = redial::redis::RedisConnector::new([server.url()]).expect("redis url");
    let incr = || redial::redis::redis::cmd("INCR").arg("counter").clone();
    rt.run(LIMIT, async {
        let o = give_up_then_revive(rt.runtime(), connector, &mut server, incr).await;
        check(&format!("{rt:?}"), &o);
        assert_eq!(
            o.ops_after,
            ["int(1)", "int(2)", "int(3)"],
            "a fresh server"
        );
    });
}

#[cfg(all(feature = "redis", feature = "tokio"))]
#[test]
fn tokio_give_up_then_revive() {
    redis_give_up_then_revive(rt::Rt::Tokio);
}

#[cfg(all(feature = "redis", feature = "smol"))]
#[test]
fn smol_give_up_then_revive() {
    redis_give_up_then_revive(rt::Rt::Smol);
}

#[cfg(feature = "async-std")]
#[test]
fn async_std_give_up_then_revive() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let connector = inline::Inline {
        addrs: vec![format!("127.0.0.1:{}", server.port)],
    };
    let o = async_std::task::block_on(bounded(give_up_then_revive(
        Arc::new(redial::runtime::AsyncStdRuntime),
        connector,
        &mut server,
        || "INCR counter".to_string(),
    )));
    check("async-std", &o);
    assert_eq!(o.ops_after, ["\"1\"", "\"2\"", "\"3\""], "a fresh server");
}
