//! A hostile user's tests on real tokio (multi-threaded), with an
//! in-memory connector. Each test is bounded by a real-time guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redial::core::{Config, ErrorKind, State};
use redial::{CallOptions, Client, Connector, Failure};

#[derive(Debug)]
struct MemError;

impl std::fmt::Display for MemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mem error")
    }
}

impl std::error::Error for MemError {}

#[derive(Clone, Copy, Debug)]
enum Op {
    Ok,
    Hang,
}

struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(n: &Arc<AtomicUsize>) -> Live {
        n.fetch_add(1, Ordering::SeqCst);
        Live(n.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Mem {
    hang_connect: bool,
    live_connects: Arc<AtomicUsize>,
    live_runs: Arc<AtomicUsize>,
}

impl Connector for Mem {
    type Conn = ();
    type Op = Op;
    type Output = u32;
    type Error = MemError;

    fn endpoints(&self) -> usize {
        1
    }

    async fn connect(&self, _endpoint: usize) -> Result<(), MemError> {
        let _live = Live::new(&self.live_connects);
        if self.hang_connect {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn run(&self, _conn: &(), op: &Op) -> Result<u32, MemError> {
        let _live = Live::new(&self.live_runs);
        match op {
            Op::Ok => {
                tokio::task::yield_now().await;
                Ok(1)
            }
            Op::Hang => std::future::pending().await,
        }
    }

    fn classify(&self, _error: &MemError) -> Failure {
        Failure::ConnectionLost
    }
}

fn mem(hang_connect: bool) -> (Mem, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (c, r) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    (
        Mem {
            hang_connect,
            live_connects: c.clone(),
            live_runs: r.clone(),
        },
        c,
        r,
    )
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

/// Many tasks on many threads submit while two others close: every call
/// resolves exactly once, both closes resolve, nothing is outstanding and
/// no run is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_concurrently_with_submits_on_many_threads() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (c, _, runs) = mem(false);
        let client = Client::builder(c)
            .config(Config::mongodb_legacy())
            .build()
            .expect("client");
        let mut tasks = Vec::new();
        for t in 0..8 {
            let cl = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut outcomes = 0;
                for i in 0..500 {
                    let op = if (i + t) % 3 == 0 { Op::Hang } else { Op::Ok };
                    let r = cl
                        .call_with(op, CallOptions::new().deadline(Duration::from_secs(5)))
                        .await;
                    if let Err(e) = &r {
                        assert!(
                            matches!(e.kind(), ErrorKind::Closed | ErrorKind::DeadlineExceeded),
                            "{e}"
                        );
                    }
                    outcomes += 1;
                    if i == 10 {
                        tokio::task::yield_now().await;
                    }
                }
                outcomes
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (a, b) = (client.clone(), client.clone());
        let closes = tokio::join!(
            tokio::spawn(async move { a.close().await }),
            tokio::spawn(async move { b.close().await })
        );
        closes.0.unwrap();
        closes.1.unwrap();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 8 * 500);
        assert_eq!(client.state(), State::Closed);
        assert_eq!(client.outstanding(), 0);
        eventually("no run left", || runs.load(Ordering::SeqCst) == 0).await;
    })
    .await
    .expect("bounded");
}

/// A connect that never resolves, no connect timeout, every handle dropped
/// while a call is pending: the call fails at its deadline, then the
/// driver ends and drops the hanging connect future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_every_handle_with_a_hanging_connect() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let (c, connects, _) = mem(true);
        let config = Config::recommended()
            .to_builder()
            .connect_timeout(None)
            .build()
            .unwrap();
        let client = Client::builder(c).config(config).build().expect("client");
        let call = client
            .call_with(
                Op::Ok,
                CallOptions::new().deadline(Duration::from_millis(200)),
            )
            .submitted();
        drop(client);
        let e = call.await.expect_err("no connection");
        assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
        eventually("the connect future dropped with the driver", || {
            connects.load(Ordering::SeqCst) == 0
        })
        .await;
    })
    .await
    .expect("bounded");
}

/// `Duration::MAX` deadlines on tokio's timer: no panic, answers come,
/// close fails the hanging op at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_deadlines_on_tokio() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let (c, _, runs) = mem(false);
        let config = Config::mongodb_legacy()
            .to_builder()
            .connect_timeout(Some(Duration::MAX))
            .op_deadline(Some(Duration::MAX))
            .build()
            .unwrap();
        let client = Client::builder(c).config(config).build().expect("client");
        let ok = client
            .call_with(Op::Ok, CallOptions::new().deadline(Duration::MAX))
            .await;
        assert_eq!(ok.expect("ok"), 1);
        let hang =
            tokio::spawn(client.call_with(Op::Hang, CallOptions::new().deadline(Duration::MAX)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(client.outstanding(), 1);
        client.close().await;
        let e = hang.await.unwrap().expect_err("closed");
        assert_eq!(e.kind(), ErrorKind::Closed);
        eventually("no run left", || runs.load(Ordering::SeqCst) == 0).await;
    })
    .await
    .expect("bounded");
}
