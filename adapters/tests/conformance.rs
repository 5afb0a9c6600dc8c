//! The conformance suite: the same scenarios on every runtime, against an
//! in-test counter server behind a loopback fault proxy (no external server).
//!
//! `cargo test -p redial --all-features --test conformance -- --nocapture`

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::{Either, join_all, select};
use redial::core::{
    Backoff, BufferPolicy, ConfigBuilder, ErrorKind, Event, Heartbeat, Jitter, Tries,
};
use redial::{CallOptions, Client, Runtime};
use support::line::{LineConnector, LineServer};
use support::proxy::{Mode, Proxy};

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded(f: impl Future<Output = ()>) {
    match select(pin!(f), pin!(async_io::Timer::after(LIMIT))).await {
        Either::Left(_) => {}
        Either::Right(_) => panic!("test exceeded its {LIMIT:?} bound"),
    }
}

async fn sleep(d: Duration) {
    async_io::Timer::after(d).await;
}

fn base() -> ConfigBuilder {
    redial::core::Config::builder()
        .backoff(Backoff::Constant(Duration::from_millis(50)))
        .jitter(Jitter::None)
        .reconnect_tries(Tries::Unlimited)
        .buffer(BufferPolicy::Unbounded)
        .buffer_timeout(None)
        .heartbeat(None)
        .connect_timeout(Some(Duration::from_secs(1)))
        .retry_budget(None)
}

fn builder(
    rt: &Arc<dyn Runtime>,
    b: ConfigBuilder,
    ports: Vec<u16>,
) -> redial::Builder<LineConnector> {
    let n = ports.len();
    Client::builder(LineConnector { ports })
        .config(b.endpoints(n).build().expect("valid config"))
        .seed(4)
        .runtime(rt.clone())
}

fn client(rt: &Arc<dyn Runtime>, b: ConfigBuilder, ports: Vec<u16>) -> Client<LineConnector> {
    builder(rt, b, ports).build().expect("client")
}

/// A client and an event stream that sees every event from the start.
fn client_ev(
    rt: &Arc<dyn Runtime>,
    b: ConfigBuilder,
    ports: Vec<u16>,
) -> (Client<LineConnector>, redial::Events) {
    builder(rt, b, ports).build_with_events().expect("client")
}

async fn wait_event(ev: &mut redial::Events, name: &str) -> Event {
    loop {
        let e = ev.next().await.expect("event stream ended");
        if e.name() == name {
            return e;
        }
    }
}

async fn basic(rt: Arc<dyn Runtime>) {
    let s = LineServer::start();
    let (c, mut ev) = client_ev(&rt, base(), vec![s.port]);
    assert_eq!(c.call("INCR").await.expect("incr"), 1);
    assert_eq!(wait_event(&mut ev, "connected").await.name(), "connected");
    let e = c.call("BOGUS").await.expect_err("server error");
    assert_eq!(e.kind(), ErrorKind::ServerError);
    assert!(e.server_error().is_some(), "the server error is carried");
    assert_eq!(c.clone().call("GET").await.expect("get"), 1);
    c.close().await;
    let e = c.call("INCR").await.expect_err("closed");
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert_eq!(c.outstanding(), 0);
}

async fn cut_buffers_and_replays(rt: Arc<dyn Runtime>) {
    let s = LineServer::start();
    let p = Proxy::start(s.port);
    let (c, mut ev) = client_ev(&rt, base(), vec![p.port]);
    assert_eq!(c.call("INCR").await.expect("warm up"), 1);
    p.set(Mode::Refuse);
    p.cut();
    // Submitted now (not on first poll): they are sent, lost with the cut,
    // and buffered until the path is back.
    let calls: Vec<_> = (0..5)
        .map(|_| {
            c.call_with("INCR", CallOptions::new().retryable(true))
                .submitted()
        })
        .collect();
    wait_event(&mut ev, "disconnected").await;
    sleep(Duration::from_millis(200)).await;
    let back = Instant::now();
    p.set(Mode::Pass);
    let results = join_all(calls).await;
    eprintln!(
        "cut: 5 buffered calls completed {:?} after the path came back",
        back.elapsed()
    );
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(
        s.counter.load(Ordering::SeqCst),
        6,
        "nothing lost, nothing doubled"
    );
    assert_eq!(c.outstanding(), 0);
}

async fn reset_fails_in_flight(rt: Arc<dyn Runtime>) {
    let s = LineServer::start();
    let p = Proxy::start(s.port);
    let c = client(&rt, base(), vec![p.port]);
    assert_eq!(c.call("INCR").await.expect("warm up"), 1);
    p.set(Mode::Delay(Duration::from_millis(500)));
    let call = c.call("INCR");
    let reset = async {
        sleep(Duration::from_millis(100)).await;
        p.reset();
    };
    let (r, ()) = futures::join!(call, reset);
    let e = r.expect_err("lost in flight");
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert!(e.maybe_executed());
    p.set(Mode::Pass);
    assert!(c.call("GET").await.is_ok(), "recovers after a reset");
}

async fn blackhole_detected(rt: Arc<dyn Runtime>) {
    let s = LineServer::start();
    let p = Proxy::start(s.port);
    let hb = Heartbeat {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
    };
    let (c, mut ev) = client_ev(&rt, base().heartbeat(Some(hb)), vec![p.port]);
    assert_eq!(c.call("INCR").await.expect("warm up"), 1);
    let t = Instant::now();
    p.set(Mode::Blackhole);
    wait_event(&mut ev, "unresponsive").await;
    eprintln!(
        "blackhole: declared unresponsive after {:?} (heartbeat interval 100 ms + timeout 100 ms)",
        t.elapsed()
    );
    p.set(Mode::Pass);
    assert_eq!(c.call("INCR").await.expect("recovers"), 2);
}

async fn fail_fast(rt: Arc<dyn Runtime>) {
    let s = LineServer::start();
    let p = Proxy::start(s.port);
    let hb = Heartbeat {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(50),
    };
    let b = base().buffer(BufferPolicy::Disabled).heartbeat(Some(hb));
    let (c, mut ev) = client_ev(&rt, b, vec![p.port]);
    wait_event(&mut ev, "connected").await;
    assert_eq!(c.call("INCR").await.expect("warm up"), 1);
    p.set(Mode::Refuse);
    p.cut();
    wait_event(&mut ev, "disconnected").await;
    let t = Instant::now();
    let e = c.call("INCR").await.expect_err("fails fast");
    eprintln!("fail-fast: no_connection after {:?}", t.elapsed());
    assert_eq!(e.kind(), ErrorKind::NoConnection);
    assert!(!e.maybe_executed());
    p.set(Mode::Pass);
    wait_event(&mut ev, "reconnected").await;
    assert_eq!(c.call("INCR").await.expect("back"), 2);
}

async fn cancel_is_clean(rt: Arc<dyn Runtime>) {
    let s = LineServer::start();
    let p = Proxy::start(s.port);
    p.set(Mode::Refuse);
    let c = client(&rt, base(), vec![p.port]);
    // Buffered, then dropped: never runs.
    drop(c.call("INCR"));
    let b = c.call("INCR");
    p.set(Mode::Pass);
    assert_eq!(b.await.expect("b"), 1, "the dropped call never ran");
    // In flight, then dropped: no delivery, no leak, the next call is fine.
    p.set(Mode::Delay(Duration::from_millis(200)));
    {
        let inflight = c.call("INCR");
        let _ = select(pin!(inflight), pin!(sleep(Duration::from_millis(50)))).await;
    }
    p.set(Mode::Pass);
    let n = c.call("GET").await.expect("after cancel");
    assert!(n == 1 || n == 2, "{n}");
    assert_eq!(c.outstanding(), 0, "no leak");
}

async fn wrong_server_reroutes(rt: Arc<dyn Runtime>) {
    let ro = LineServer::start();
    ro.readonly.store(true, Ordering::SeqCst);
    let rw = LineServer::start();
    let c = client(&rt, base(), vec![ro.port, rw.port]);
    for i in 1..=3 {
        assert_eq!(c.call("INCR").await.expect("rerouted"), i);
    }
    assert_eq!(ro.counter.load(Ordering::SeqCst), 0);
    assert_eq!(rw.counter.load(Ordering::SeqCst), 3);
}

async fn deadline_exceeded(rt: Arc<dyn Runtime>) {
    let s = LineServer::start();
    let p = Proxy::start(s.port);
    let c = client(&rt, base(), vec![p.port]);
    assert_eq!(c.call("INCR").await.expect("warm up"), 1);
    p.set(Mode::Blackhole);
    let t = Instant::now();
    let e = c
        .call_with(
            "INCR",
            CallOptions::default().deadline(Duration::from_millis(150)),
        )
        .await
        .expect_err("deadline");
    eprintln!("deadline: 150 ms deadline reported after {:?}", t.elapsed());
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
    assert!(e.maybe_executed(), "it was in flight");
    assert_eq!(c.outstanding(), 0);
}

async fn close_resolves_all(rt: Arc<dyn Runtime>) {
    let p = Proxy::start(support::free_port());
    p.set(Mode::Refuse);
    let c = client(&rt, base(), vec![p.port]);
    let calls: Vec<_> = (0..10).map(|_| c.call("INCR")).collect();
    c.close().await;
    assert_eq!(c.outstanding(), 0);
    for r in join_all(calls).await {
        assert_eq!(r.expect_err("closed").kind(), ErrorKind::Closed);
    }
    assert!(c.state().is_terminal());
}

#[cfg(feature = "tokio")]
fn run_tokio<F: Future<Output = ()>>(f: impl FnOnce(Arc<dyn Runtime>) -> F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _g = rt.enter();
    let r: Arc<dyn Runtime> = Arc::new(redial::runtime::TokioRuntime);
    rt.block_on(bounded(f(r)));
}

#[cfg(feature = "smol")]
fn run_smol<F: Future<Output = ()>>(f: impl FnOnce(Arc<dyn Runtime>) -> F) {
    let r: Arc<dyn Runtime> = Arc::new(redial::runtime::SmolRuntime);
    smol::block_on(bounded(f(r)));
}

#[cfg(feature = "async-std")]
fn run_async_std<F: Future<Output = ()>>(f: impl FnOnce(Arc<dyn Runtime>) -> F) {
    let r: Arc<dyn Runtime> = Arc::new(redial::runtime::AsyncStdRuntime);
    async_std::task::block_on(bounded(f(r)));
}

macro_rules! suite {
    ($runner:ident, $modname:ident, $($name:ident),*) => {
        mod $modname {
            $( #[test] fn $name() { super::$runner(super::$name) } )*
        }
    };
}

macro_rules! all {
    ($runner:ident, $modname:ident) => {
        suite!(
            $runner,
            $modname,
            basic,
            cut_buffers_and_replays,
            reset_fails_in_flight,
            blackhole_detected,
            fail_fast,
            cancel_is_clean,
            wrong_server_reroutes,
            deadline_exceeded,
            close_resolves_all
        );
    };
}

#[cfg(feature = "tokio")]
all!(run_tokio, tokio_rt);
#[cfg(feature = "smol")]
all!(run_smol, smol_rt);
#[cfg(feature = "async-std")]
all!(run_async_std, async_std_rt);

#[test]
fn handles_are_send_sync_and_cheap_to_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    fn send<T: Send + 'static>() {}
    check::<Client<LineConnector>>();
    send::<redial::Call<LineConnector>>();
    send::<redial::Events>();
}
