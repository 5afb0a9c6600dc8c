//! A client left idle after it is built connects on its own: the driver
//! carries out the core's first `Connect` as soon as it starts, not when the
//! first input (a call, `events()`, `close()`, a timer) happens to arrive.
//!
//! Before the fix the first connect waited for an input, so with a connect
//! timeout the timer came first and counted as a failed first attempt that
//! never ran: the legacy preset (initial connect fails fast) went `Failed`
//! with zero connect() calls, and a retrying config connected one backoff
//! late.
//!
//! Against a private redis-server, on every runtime: tokio and smol (the
//! `redis` crate's connector, on that crate's support for each) and
//! async-std (a connector of the examples' own, `common/inline.rs`: redis
//! 1.x has no async-std support).
//!
//! `cargo test -p redial --all-features --test idle_client -- --nocapture`

#![cfg(any(feature = "redis", feature = "smol", feature = "async-std"))]

mod support;

#[cfg(all(feature = "redis", any(feature = "tokio", feature = "smol")))]
#[path = "support/rt.rs"]
mod rt;

#[cfg(feature = "async-std")]
#[allow(dead_code)]
#[path = "../examples/common/inline.rs"]
mod inline;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{Either, select};
use redial::core::{
    Backoff, BufferPolicy, Config, ErrorKind, InitialConnect, Jitter, State, Tries,
};
use redial::{Client, Connector, Runtime};
use support::RedisServer;

/// Every test finishes well within this.
const LIMIT: Duration = Duration::from_secs(10);
/// The connect timeout of the configs under test.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long the client is left alone: well past the connect timeout.
const IDLE: Duration = Duration::from_secs(1);

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    match select(pin!(f), pin!(async_io::Timer::after(LIMIT))).await {
        Either::Left((v, _)) => v,
        Either::Right(_) => panic!("test exceeded its {LIMIT:?} bound"),
    }
}

/// What was seen around the idle period.
#[derive(Debug)]
struct Observed {
    /// `state()` at the end of the idle period (reading it sends no input).
    idle_state: State,
    /// `connected_clients` on the server at the end of the idle period,
    /// counting the admin connection that asks.
    idle_clients: u64,
    /// The first call after the idle period.
    first: Result<(), (ErrorKind, String)>,
    /// How long that call took.
    took: Duration,
    /// `state()` after it.
    after_state: State,
}

/// Builds a client, leaves it alone for [`IDLE`] (no call, no `events()`,
/// no `close()`), then makes one call.
async fn idle_then_call<C>(
    rt: Arc<dyn Runtime>,
    connector: C,
    config: Config,
    port: u16,
    op: C::Op,
) -> Observed
where
    C: Connector,
    C::Error: std::fmt::Display,
{
    let c = Client::builder(connector)
        .config(config)
        .seed(4)
        .runtime(rt)
        .build()
        .expect("client");
    async_io::Timer::after(IDLE).await;
    let idle_state = c.state();
    let idle_clients = support::connected_clients(port);
    let t = Instant::now();
    let first = c
        .call(op)
        .await
        .map(drop)
        .map_err(|e| (e.kind(), e.to_string()));
    let took = t.elapsed();
    let observed = Observed {
        idle_state,
        idle_clients,
        first,
        took,
        after_state: c.state(),
    };
    eprintln!("{observed:?}");
    c.close().await;
    observed
}

/// Runs [`idle_then_call`] on one runtime with its connector, against the
/// redis-server on `port`.
type Run = fn(Config, u16) -> Observed;

/// The redis crate's connector, on `rt` (the crate's own support for it).
#[cfg(all(feature = "redis", any(feature = "tokio", feature = "smol")))]
fn on_redis(rt: rt::Rt, config: Config, port: u16) -> Observed {
    let connector = redial::redis::RedisConnector::new([format!("redis://127.0.0.1:{port}/")])
        .expect("redis url");
    let ping = redial::redis::redis::cmd("PING");
    let mut observed = None;
    rt.run(LIMIT, async {
        observed = Some(idle_then_call(rt.runtime(), connector, config, port, ping).await);
    });
    observed.expect("ran to the end")
}

#[cfg(all(feature = "redis", feature = "tokio"))]
fn on_tokio(config: Config, port: u16) -> Observed {
    on_redis(rt::Rt::Tokio, config, port)
}

#[cfg(all(feature = "redis", feature = "smol"))]
fn on_smol(config: Config, port: u16) -> Observed {
    on_redis(rt::Rt::Smol, config, port)
}

#[cfg(feature = "async-std")]
fn on_async_std(config: Config, port: u16) -> Observed {
    let connector = inline::Inline {
        addrs: vec![format!("127.0.0.1:{port}")],
    };
    async_std::task::block_on(bounded(idle_then_call(
        Arc::new(redial::runtime::AsyncStdRuntime),
        connector,
        config,
        port,
        "PING".to_string(),
    )))
}

fn assert_connected_while_idle(o: &Observed) {
    // Reported, not asserted: timings are for benchmarks.
    eprintln!(
        "idle client: first call after the idle period took {:?}",
        o.took
    );
    assert!(
        o.idle_clients >= 2,
        "the server saw no client connect during the idle period \
         (connected_clients {} counts only the admin connection): {o:?}",
        o.idle_clients
    );
    assert_eq!(
        o.idle_state,
        State::Connected,
        "not connected after {IDLE:?} idle: {o:?}"
    );
}

/// Retrying initial connect with a long backoff: before the fix the connect
/// timeout fired first, counted as a failed attempt, and the real first
/// connect came one backoff (2 s) later.
fn idle_client_connects_without_being_asked(run: Run) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = Config::builder()
        .connect_timeout(Some(CONNECT_TIMEOUT))
        .initial_connect(InitialConnect::Retry)
        .backoff(Backoff::Constant(Duration::from_secs(2)))
        .jitter(Jitter::None)
        .reconnect_tries(Tries::Unlimited)
        .buffer(BufferPolicy::Unbounded)
        .buffer_timeout(None)
        .heartbeat(None)
        .retry_budget(None)
        .build()
        .expect("config");
    let o = run(config, server.port);
    assert_connected_while_idle(&o);
    assert!(o.first.is_ok(), "first call failed: {o:?}");
    assert_eq!(o.after_state, State::Connected);
}

/// The legacy preset (initial connect fails fast) with a short connect
/// timeout: before the fix the timer failed the first attempt that never
/// ran, the client went `Failed`, and the first op got `topology_destroyed`.
fn idle_legacy_client_is_not_destroyed(run: Run) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = Config::mongodb_legacy()
        .to_builder()
        .connect_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .expect("config");
    assert_eq!(config.initial_connect(), InitialConnect::FailFast);
    let o = run(config, server.port);
    assert!(
        !matches!(o.first, Err((ErrorKind::TopologyDestroyed, _))),
        "first op after {IDLE:?} idle was topology_destroyed: {o:?}"
    );
    assert!(o.first.is_ok(), "first call failed: {o:?}");
    assert_connected_while_idle(&o);
    assert_eq!(o.after_state, State::Connected);
}

/// `Config::recommended()` as is (5 s connect timeout): the client is
/// connected before anyone asks, not when the first call arrives.
fn idle_recommended_client_is_connected_before_first_call(run: Run) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let o = run(Config::recommended(), server.port);
    assert_connected_while_idle(&o);
    assert!(o.first.is_ok(), "first call failed: {o:?}");
    assert_eq!(o.after_state, State::Connected);
}

macro_rules! suite {
    ($runner:ident, $modname:ident) => {
        mod $modname {
            #[test]
            fn idle_client_connects_without_being_asked() {
                super::idle_client_connects_without_being_asked(super::$runner)
            }
            #[test]
            fn idle_legacy_client_is_not_destroyed() {
                super::idle_legacy_client_is_not_destroyed(super::$runner)
            }
            #[test]
            fn idle_recommended_client_is_connected_before_first_call() {
                super::idle_recommended_client_is_connected_before_first_call(super::$runner)
            }
        }
    };
}

#[cfg(all(feature = "redis", feature = "tokio"))]
suite!(on_tokio, tokio_rt);
#[cfg(all(feature = "redis", feature = "smol"))]
suite!(on_smol, smol_rt);
#[cfg(feature = "async-std")]
suite!(on_async_std, async_std_rt);
