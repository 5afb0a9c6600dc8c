//! Hostile review of the time limits that reach the server (postgres
//! `run_within`, redis `bounded`), against private real servers. Each
//! test fails: see its note. Skipped (passes) when the server binary is
//! missing. The redis one runs on tokio and on smol (`tokio_rt::…`,
//! `smol_rt::…`); the postgres one on tokio (tokio-postgres).
//!
//! `cargo test -p redial --features redis,postgres,smol --test hostile_review_servers -- --nocapture --test-threads 1`

#![cfg(all(feature = "redis", feature = "postgres"))]

mod support;

#[path = "support/rt.rs"]
mod rt;

use std::future::Future;
use std::time::Duration;

use redial::core::Config;
use redial::postgres::{PgOp, PostgresConnector};
use redial::redis::RedisConnector;
use redial::redis::redis::{Value, cmd};
use redial::{CallOptions, Client};
use rt::{Rt, on_each_runtime};
use support::proxy::{Mode, Proxy};
use support::{PgServer, RedisServer};

on_each_runtime!(a_blocking_pop_cut_short_by_the_deadline_loses_no_element);

fn run<F: Future<Output = ()>>(f: F) {
    support::run_bounded(Duration::from_secs(60), f);
}

/// An op with a long deadline (or command timeout) fails on postgres
/// without running: `run_within` sends `SET statement_timeout = <time
/// left + 100 ms>` in milliseconds, and postgres caps the setting at
/// 2147483647 ms (24.8 days). A deadline of 30 days gives
/// `SET statement_timeout = 2592000100`, which the server rejects
/// (22023, invalid value), so the op fails `server_error` and never
/// runs. (A time left past `u64::MAX` ms also collides with the
/// "unknown" sentinel `u64::MAX`: the `SET` is then skipped on the next
/// op.)
#[test]
fn a_long_deadline_does_not_fail_the_op_on_postgres() {
    let Some(server) = PgServer::start() else {
        return;
    };
    run(async move {
        let client = Client::new(
            Config::recommended(),
            PostgresConnector::new([server.conn_str()]).expect("conn str"),
        )
        .expect("client");
        let one = || {
            PgOp::new(|c| {
                Box::pin(async move {
                    let row = c.query_one("SELECT 1::int4", &[]).await?;
                    Ok(row.get::<_, i32>(0))
                })
            })
        };
        assert_eq!(client.call(one()).await.expect("no deadline"), 1);
        let r = client
            .call_with(
                one(),
                CallOptions::new().deadline(Duration::from_secs(30 * 86_400)),
            )
            .await;
        match r {
            Ok(v) => assert_eq!(v, 1),
            Err(e) => panic!(
                "a 30-day deadline failed a 1 ms query: {e} {:?}",
                e.server_error()
                    .and_then(|s| s.as_db_error())
                    .map(|d| d.message())
            ),
        }
        client.close().await;
    });
}

/// Data loss on a blocking pop: `bounded` gives `BLPOP` exactly the op's
/// time left, measured at dispatch, while the client gives up at the same
/// instant measured from its side. Any delay on the way to the server
/// (latency, a busy event loop) makes the server's wait end *after* the
/// client's: an element pushed in between is popped by the server and
/// sent to a client that no longer listens (the op failed
/// `deadline_exceeded`, the connection stays, the late reply is
/// discarded). The element is neither returned nor left in the list.
/// (Postgres gets `time left + 100 ms` so the client decides; a pop needs
/// the opposite margin: the server must give up first.) Here: a proxy
/// delaying each direction 150 ms, a 300 ms deadline, a push 350 ms after
/// the call.
fn a_blocking_pop_cut_short_by_the_deadline_loses_no_element(rt: Rt) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    rt.run(Duration::from_secs(60), async move {
        let proxy = Proxy::start(server.port);
        let url = format!("redis://127.0.0.1:{}/", proxy.port);
        let client = Client::builder(RedisConnector::new([url.as_str()]).expect("url"))
            .config(Config::recommended())
            .runtime(rt.runtime())
            .build()
            .expect("client");
        let ping = client.call(cmd("PING")).await.expect("connected");
        assert_eq!(ping, Value::SimpleString("PONG".into()));
        proxy.set(Mode::Delay(Duration::from_millis(150)));

        let port = server.port;
        let pusher = rt.spawn(async move {
            rt.sleep(Duration::from_millis(350)).await;
            rt.blocking(move || support::resp_command(port, &["RPUSH", "jobs", "job-1"]))
                .await
        });
        let popped = client
            .call_with(
                cmd("BLPOP").arg("jobs").arg(0).clone(),
                CallOptions::new().deadline(Duration::from_millis(300)),
            )
            .await;
        let pushed = pusher.await;
        assert!(pushed.starts_with(':'), "RPUSH: {pushed}");
        // Let the server's late reply (if any) come and go.
        rt.sleep(Duration::from_millis(600)).await;
        let left = support::resp_command(port, &["LLEN", "jobs"]);
        let got = popped.as_ref().ok().cloned();
        assert!(
            got.as_ref().is_some_and(|v| *v != Value::Nil) || left == ":1",
            "job-1 was lost: the call gave {:?}, and the list holds {left}",
            popped.as_ref().map_err(|e| e.kind())
        );
        proxy.set(Mode::Pass);
        client.close().await;
    });
}
