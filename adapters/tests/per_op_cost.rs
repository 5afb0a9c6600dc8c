//! What an op costs the client beyond its own run: callers feed the core
//! themselves, so the driver task is not polled per op, and its timer is
//! armed lazily, so per-op deadlines and a heartbeat that traffic pushes
//! back reset no runtime timer per op. Counted through a runtime that
//! wraps tokio's.

#![cfg(feature = "tokio")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use redial::core::Config;
use redial::runtime::TokioRuntime;
use redial::{AsyncTimer, CallOptions, Client, Connector, Failure, Runtime};

#[derive(Debug)]
struct MemError;

impl std::fmt::Display for MemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mem error")
    }
}

impl std::error::Error for MemError {}

/// Answers every op after a yield (a round trip to the runtime).
struct Mem;

impl Connector for Mem {
    type Conn = ();
    type Op = u32;
    type Output = u32;
    type Error = MemError;

    fn endpoints(&self) -> usize {
        1
    }

    async fn connect(&self, _endpoint: usize) -> Result<(), MemError> {
        Ok(())
    }

    async fn run(&self, _conn: &(), op: &u32) -> Result<u32, MemError> {
        tokio::task::yield_now().await;
        Ok(*op)
    }

    fn classify(&self, _error: &MemError) -> Failure {
        Failure::ConnectionLost
    }
}

#[derive(Debug, Default)]
struct Counts {
    resets: AtomicUsize,
    driver_polls: AtomicUsize,
}

/// tokio, counting timer resets and polls of the spawned (driver) task.
#[derive(Debug, Default)]
struct Counting(Arc<Counts>);

#[derive(Debug)]
struct CountingTimer(Pin<Box<dyn AsyncTimer>>, Arc<Counts>);

impl AsyncTimer for CountingTimer {
    fn reset(mut self: Pin<&mut Self>, at: Instant) {
        self.1.resets.fetch_add(1, Ordering::Relaxed);
        self.0.as_mut().reset(at);
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Runtime for Counting {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(CountingTimer(TokioRuntime.new_timer(at), self.0.clone()))
    }

    fn spawn(&self, mut future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let counts = self.0.clone();
        TokioRuntime.spawn(Box::pin(std::future::poll_fn(move |cx| {
            counts.driver_polls.fetch_add(1, Ordering::Relaxed);
            future.as_mut().poll(cx)
        })));
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }
}

const OPS: u32 = 2000;

async fn per_op(config: Config, options: CallOptions) -> (usize, usize) {
    let counts = Arc::new(Counts::default());
    let client = Client::builder(Mem)
        .config(config)
        .seed(1)
        .runtime(Arc::new(Counting(counts.clone())))
        .build()
        .expect("client");
    // Connected, and the driver idle again.
    assert_eq!(client.call(0).await.expect("first"), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (resets, polls) = (
        counts.resets.load(Ordering::Relaxed),
        counts.driver_polls.load(Ordering::Relaxed),
    );
    for i in 1..=OPS {
        assert_eq!(client.call_with(i, options).await.expect("ok"), i);
    }
    let resets = counts.resets.load(Ordering::Relaxed) - resets;
    let polls = counts.driver_polls.load(Ordering::Relaxed) - polls;
    client.close().await;
    eprintln!("{OPS} ops: {resets} timer resets, {polls} driver polls");
    (resets, polls)
}

/// Per-op deadlines under `recommended()` (heartbeat on, response
/// timeout): 2,000 ops, a handful of timer resets and driver polls (the
/// old driver reset its timer and was polled twice per op).
#[tokio::test(flavor = "current_thread")]
async fn per_op_deadlines_cost_no_timer_reset_and_no_driver_poll_per_op() {
    let (resets, polls) = per_op(
        Config::recommended(),
        CallOptions::new().deadline(Duration::from_secs(5)),
    )
    .await;
    assert!(resets < 20, "{resets} timer resets for {OPS} ops");
    assert!(polls < 20, "{polls} driver polls for {OPS} ops");
}

/// Ops without options, a heartbeat that every answer pushes back.
#[tokio::test(flavor = "current_thread")]
async fn a_traffic_reset_heartbeat_costs_no_timer_reset_per_op() {
    let (resets, polls) = per_op(Config::recommended(), CallOptions::new()).await;
    assert!(resets < 20, "{resets} timer resets for {OPS} ops");
    assert!(polls < 20, "{polls} driver polls for {OPS} ops");
}

/// Callers on several threads feed the one core: every call gets its
/// answer, nothing is left outstanding.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_on_many_threads_share_the_core() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let client = Client::builder(Mem)
            .config(Config::recommended())
            .build()
            .expect("client");
        let tasks: Vec<_> = (0..8u32)
            .map(|t| {
                let c = client.clone();
                tokio::spawn(async move {
                    for i in 0..500u32 {
                        let op = t * 1000 + i;
                        let options = CallOptions::new().deadline(Duration::from_secs(5));
                        assert_eq!(c.call_with(op, options).await.expect("ok"), op);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("caller task");
        }
        assert_eq!(client.outstanding(), 0);
        client.close().await;
    })
    .await
    .expect("bounded");
}

/// A call and a client can be shared between threads, as before.
#[test]
fn calls_and_clients_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client<Mem>>();
    send_sync::<redial::Call<Mem>>();
    send_sync::<redial::Events>();
}
