//! A hostile user's tests of the real driver (`redial::Client`) on the
//! virtual runtime: each test tries to break one promise of the docs.
//! Deterministic, bounded in virtual time, no real sleep. Tests that found
//! a defect were `#[ignore]`d with the defect named, and have since been fixed.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use redial::core::{
    Backoff, BufferPolicy, Config, ConnectFailure, ErrorKind, Event, Heartbeat, Jitter, LossKind,
    Output, State,
};
use redial::{Call, CallOptions, CallResult, Client, Connector, Failure, Observer};
use redial_sim::vrt::VirtualRuntime;
use support::{Live, drive, ms};

// ----- memory -------------------------------------------------------------------
//
// The workspace forbids unsafe code, so no counting allocator: the
// process's resident set (VmRSS) is read instead, and each memory test is
// sized so that a leak of ~100 B per item shows as ~50 MB or more, far
// above what the other tests running in parallel allocate.

/// The process's resident set, in bytes.
fn rss() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kb: i64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kb * 1024
}

const MB: i64 = 1024 * 1024;

/// The tests run one at a time: the memory tests read the whole process's
/// RSS, which tests running beside them would move.
static MEMORY: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    MEMORY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ----- the executor loop ------------------------------------------------------

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A future that yields once (wakes itself and returns `Pending`).
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

// ----- a connector with every knob a hostile user wants ------------------------

#[derive(Debug, Clone)]
struct HError(Failure, String);

impl std::fmt::Display for HError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.1 == "display panics" {
            panic!("HError::fmt panicked");
        }
        f.write_str(&self.1)
    }
}

impl std::error::Error for HError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Answers `Ok(n)` after this long.
    Ok(Duration),
    /// Fails with an error after this long (read by `classify`).
    Err(Duration),
    /// Never answers.
    Hang,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ConnectMode {
    /// Succeeds after 1 ms.
    Ok,
    /// Never resolves.
    Hang,
    /// Fails with an error whose text is given by `connect_error`.
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClosedMode {
    /// Never resolves (the trait's default).
    Never,
    /// Resolves at once.
    Immediately,
    /// Panics after this long.
    PanicAfter(Duration),
}

#[derive(Clone)]
struct Counters {
    connects: Arc<AtomicUsize>,
    live_runs: Arc<AtomicUsize>,
    live_conns: Arc<AtomicUsize>,
    live_connects: Arc<AtomicUsize>,
}

struct Hostile {
    rt: VirtualRuntime,
    connect: ConnectMode,
    connect_error: String,
    closed: ClosedMode,
    classify_panics: bool,
    classify_connect_panics: bool,
    ping_panics: bool,
    n: Counters,
}

impl Hostile {
    fn new(rt: &VirtualRuntime) -> Hostile {
        Hostile {
            rt: rt.clone(),
            connect: ConnectMode::Ok,
            connect_error: "refused".into(),
            closed: ClosedMode::Never,
            classify_panics: false,
            classify_connect_panics: false,
            ping_panics: false,
            n: Counters {
                connects: Arc::default(),
                live_runs: Arc::default(),
                live_conns: Arc::default(),
                live_connects: Arc::default(),
            },
        }
    }

    async fn after(&self, d: Duration) {
        let at = self.rt.elapsed() + d;
        self.rt.sleep_until(at).await;
    }
}

struct HConn {
    _live: Live,
}

impl Connector for Hostile {
    type Conn = HConn;
    type Op = Op;
    type Output = u32;
    type Error = HError;

    fn endpoints(&self) -> usize {
        1
    }

    async fn connect(&self, _endpoint: usize) -> Result<HConn, HError> {
        let _live = Live::new(&self.n.live_connects);
        self.n.connects.fetch_add(1, Ordering::SeqCst);
        match self.connect {
            ConnectMode::Ok => {
                self.after(ms(1)).await;
                Ok(HConn {
                    _live: Live::new(&self.n.live_conns),
                })
            }
            ConnectMode::Hang => std::future::pending().await,
            ConnectMode::Fail => {
                self.after(ms(1)).await;
                Err(HError(Failure::ConnectionLost, self.connect_error.clone()))
            }
        }
    }

    fn classify_connect(&self, _error: &HError) -> ConnectFailure {
        assert!(!self.classify_connect_panics, "classify_connect bug");
        ConnectFailure::Refused
    }

    async fn run(&self, _conn: &HConn, op: &Op) -> Result<u32, HError> {
        let _live = Live::new(&self.n.live_runs);
        match *op {
            Op::Ok(d) => {
                self.after(d).await;
                Ok(7)
            }
            Op::Err(d) => {
                self.after(d).await;
                Err(HError(Failure::ConnectionLost, "broken pipe".into()))
            }
            Op::Hang => std::future::pending().await,
        }
    }

    fn classify(&self, error: &HError) -> Failure {
        assert!(!self.classify_panics, "classify bug");
        error.0
    }

    async fn ping(&self, _conn: &HConn) -> Result<(), HError> {
        assert!(!self.ping_panics, "ping bug");
        self.after(ms(1)).await;
        Ok(())
    }

    async fn closed(&self, _conn: &HConn) -> LossKind {
        match self.closed {
            ClosedMode::Never => std::future::pending().await,
            ClosedMode::Immediately => LossKind::Reset,
            ClosedMode::PanicAfter(d) => {
                self.after(d).await;
                panic!("closed bug");
            }
        }
    }
}

type Slot = Arc<Mutex<Vec<CallResult<Hostile>>>>;

/// Submits `op` now from a task; its result lands in the returned slot
/// (a Vec, so a second outcome would show).
fn call(rt: &VirtualRuntime, client: &Client<Hostile>, op: Op, options: CallOptions) -> Slot {
    let slot: Slot = Arc::default();
    let (s, c) = (slot.clone(), client.call_with(op, options).submitted());
    rt.spawn(async move {
        let r = c.await;
        s.lock().unwrap().push(r);
    });
    slot
}

/// The one outcome in `slot`, if there is one (fails on two).
fn outcome(slot: &Slot) -> Option<CallResult<Hostile>> {
    let mut v = slot.lock().unwrap();
    assert!(v.len() <= 1, "an op got {} outcomes", v.len());
    v.pop()
}

/// Counts the events the core emits (the truth the streams are measured against).
#[derive(Clone, Default)]
struct EventCount(Arc<AtomicUsize>);

impl<P> Observer<P> for EventCount {
    fn on_output(&mut self, _now: redial::core::Instant, output: &Output<P>) {
        if matches!(output, Output::Event(_)) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn build(rt: &VirtualRuntime, c: Hostile, config: Config) -> Client<Hostile> {
    Client::builder(c)
        .config(config)
        .seed(1)
        .runtime(Arc::new(rt.clone()))
        .build()
        .expect("client")
}

/// `mongodb_legacy` with no timers of its own that could end a test early
/// (no heartbeat, no response timeout).
fn quiet() -> Config {
    Config::mongodb_legacy()
        .to_builder()
        .reconnect_interval(ms(10))
        .build()
        .unwrap()
}

// ----- one outcome per op -------------------------------------------------------

/// The caller drops its `Call` at the very instant the answer arrives (the
/// run's timer fired, the driver has not been polled yet): the op gets one
/// outcome (cancelled), its run is dropped, the connection is kept.
#[test]
fn cancel_in_the_same_instant_the_answer_arrives() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let call = client.call(Op::Ok(ms(5))).submitted();
    rt.run_until_stalled();
    assert_eq!(client.outstanding(), 1);
    // The answer is due at 15 ms: move the clock (wakes the run) and drop
    // the call before anything is polled.
    rt.advance_to(ms(15));
    drop(call);
    drive(&rt, ms(20));
    assert_eq!(client.outstanding(), 0);
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
    // Same again, but the op gets its outcome while its caller is not
    // polling (a call's run goes on only while the call is polled: here the
    // core's deadline ends it), and the caller drops a resolved-but-never-
    // polled call.
    let call = client
        .call_with(Op::Ok(ms(5)), CallOptions::new().deadline(ms(2)))
        .submitted();
    drive(&rt, ms(25));
    assert_eq!(client.outstanding(), 0);
    drop(call);
    drive(&rt, ms(30));
    // The client is unharmed.
    let next = call_now(&rt, &client, Op::Ok(ms(1)));
    drive(&rt, ms(40));
    assert_eq!(outcome(&next).expect("answered").expect("ok"), 7);
    assert_eq!(n.connects.load(Ordering::SeqCst), 1, "connection kept");
    assert_eq!(client.state(), State::Connected);
}

fn call_now(rt: &VirtualRuntime, client: &Client<Hostile>, op: Op) -> Slot {
    call(rt, client, op, CallOptions::new())
}

/// Dropping a `Call` after it resolved (and was polled) sends nothing and
/// changes nothing; polling a resolved call again gives no second answer
/// of substance.
#[test]
fn drop_a_call_after_it_resolved() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let mut call = client.call(Op::Ok(ms(1)));
    // The first poll starts the run (a call runs while it is polled).
    assert!((&mut call).now_or_never().is_none());
    drive(&rt, ms(20));
    let r = (&mut call).now_or_never().expect("resolved");
    assert_eq!(r.expect("ok"), 7);
    // A hostile caller polls it again: like an `async fn`'s future, a
    // resolved Call panics (with a clear message) rather than invent a
    // second outcome or hang; `is_terminated` tells a careful caller, and
    // the client is not corrupted.
    assert!(futures::future::FusedFuture::is_terminated(&call));
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = (&mut call).now_or_never();
    }));
    let msg = again.expect_err("a second poll panics");
    assert_eq!(
        msg.downcast_ref::<&str>().copied(),
        Some("redial::Call polled after it resolved")
    );
    drop(call);
    drive(&rt, ms(30));
    assert_eq!(client.outstanding(), 0);
    let next = call_now(&rt, &client, Op::Ok(ms(1)));
    drive(&rt, ms(40));
    assert_eq!(outcome(&next).expect("answered").expect("ok"), 7);
}

/// Two clones close at once while other tasks keep submitting: every call
/// gets exactly one outcome, both closes resolve, ops after close fail
/// `closed`, nothing is outstanding and nothing is running.
#[test]
fn close_twice_and_concurrently_with_submits() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let mut slots = Vec::new();
    for i in 0..50 {
        slots.push(call_now(
            &rt,
            &client,
            if i % 2 == 0 { Op::Hang } else { Op::Ok(ms(1)) },
        ));
    }
    let closes = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (cl, k) = (client.clone(), closes.clone());
        rt.spawn(async move {
            cl.close().await;
            k.fetch_add(1, Ordering::SeqCst);
        });
    }
    for _ in 0..50 {
        slots.push(call_now(&rt, &client, Op::Ok(ms(1))));
    }
    drive(&rt, ms(100));
    assert_eq!(closes.load(Ordering::SeqCst), 2, "both closes resolved");
    for (i, s) in slots.iter().enumerate() {
        let r = outcome(s).unwrap_or_else(|| panic!("call {i} has no outcome"));
        if i >= 50 {
            assert_eq!(r.expect_err("after close").kind(), ErrorKind::Closed);
        }
    }
    // A third close, after everything.
    let third = Arc::new(AtomicBool::new(false));
    let (cl, t) = (client.clone(), third.clone());
    rt.spawn(async move {
        cl.close().await;
        t.store(true, Ordering::SeqCst);
    });
    let late = call_now(&rt, &client, Op::Ok(ms(1)));
    drive(&rt, ms(200));
    assert!(third.load(Ordering::SeqCst));
    assert_eq!(
        outcome(&late)
            .expect("answered")
            .expect_err("closed")
            .kind(),
        ErrorKind::Closed
    );
    assert_eq!(client.outstanding(), 0);
    assert_eq!(client.state(), State::Closed);
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
    assert_eq!(n.live_conns.load(Ordering::SeqCst), 0, "connection freed");
}

/// `close()` resolves once every op has its outcome: checked from the very
/// task that awaited `close()`, with in-flight and buffered ops.
#[test]
fn close_resolves_only_after_every_op_has_its_outcome() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.connect = ConnectMode::Hang; // buffered ops
    let client = build(
        &rt,
        c,
        Config::mongodb_legacy()
            .to_builder()
            .connect_timeout(None)
            .build()
            .unwrap(),
    );
    drive(&rt, ms(10));
    let ok = Arc::new(AtomicBool::new(false));
    let (cl, flag) = (client.clone(), ok.clone());
    rt.spawn(async move {
        let mut calls: Vec<Call<Hostile>> = (0..20).map(|_| cl.call(Op::Ok(ms(1)))).collect();
        YieldNow(false).await;
        cl.close().await;
        for c in &mut calls {
            let r = c.now_or_never().expect("an outcome when close() resolved");
            assert_eq!(r.expect_err("closed").kind(), ErrorKind::Closed);
        }
        flag.store(true, Ordering::SeqCst);
    });
    drive(&rt, ms(50));
    assert!(ok.load(Ordering::SeqCst));
    assert_eq!(client.state(), State::Closed);
}

/// An event consumer submits a call from inside its loop, on every event.
#[test]
fn submit_from_inside_an_event_stream_consumer() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.closed = ClosedMode::Never;
    let client = build(&rt, c, quiet());
    let mut events = client.events();
    let got = Arc::new(Mutex::new(Vec::new()));
    let (cl, g) = (client.clone(), got.clone());
    rt.spawn(async move {
        while let Some(e) = events.next().await {
            let r = cl.call(Op::Ok(ms(1))).await;
            g.lock().unwrap().push((e.name(), r.map_err(|e| e.kind())));
            if matches!(e, Event::Closed) {
                break;
            }
        }
    });
    drive(&rt, ms(50));
    let (cl, _) = (client.clone(), ());
    rt.spawn(async move { cl.close().await });
    drive(&rt, ms(100));
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], ("connected", Ok(7)));
    assert_eq!(got[1], ("closed", Err(ErrorKind::Closed)));
}

// ----- the driver's life ----------------------------------------------------------

/// Dropping every handle ends the driver: the task finishes, the
/// connection is freed and event streams end.
#[test]
fn dropping_every_client_handle_ends_the_driver() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    let mut events = client.events();
    let other = client.clone();
    drive(&rt, ms(10));
    assert_eq!(n.live_conns.load(Ordering::SeqCst), 1);
    drop(client);
    drive(&rt, ms(20));
    assert_eq!(rt.tasks(), 1, "one handle is still alive");
    drop(other);
    drive(&rt, ms(30));
    assert_eq!(rt.tasks(), 0, "the driver ended");
    assert_eq!(n.live_conns.load(Ordering::SeqCst), 0, "connection freed");
    let mut names = Vec::new();
    while let Some(Some(e)) = events.next().now_or_never() {
        names.push(e.name());
    }
    assert!(
        events.next().now_or_never() == Some(None),
        "stream ended: {names:?}"
    );
}

/// Every handle dropped while calls are pending (a hanging op, a buffered
/// op behind it is impossible here: one in flight with a deadline): the
/// calls still get their outcome, then the driver ends.
#[test]
fn drop_all_clients_while_calls_are_pending() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let hung = call(&rt, &client, Op::Hang, CallOptions::new().deadline(secs(1)));
    let ok = call(&rt, &client, Op::Ok(ms(100)), CallOptions::new());
    drop(client);
    drive(&rt, ms(500));
    assert_eq!(outcome(&ok).expect("answered").expect("ok"), 7);
    assert!(outcome(&hung).is_none());
    drive(&rt, secs(2));
    assert_eq!(
        outcome(&hung)
            .expect("answered")
            .expect_err("deadline")
            .kind(),
        ErrorKind::DeadlineExceeded
    );
    drive(&rt, secs(3));
    assert_eq!(rt.tasks(), 0, "the driver ended with its last call");
    assert_eq!(n.live_conns.load(Ordering::SeqCst), 0);
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
}

/// `connect` never resolves and the config has no connect timeout: ops with
/// a deadline still fail at it, `close()` resolves, and dropping the client
/// ends the driver and drops the hanging connect future.
#[test]
fn a_connect_that_never_resolves_with_no_connect_timeout() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.connect = ConnectMode::Hang;
    let n = c.n.clone();
    let config = Config::recommended()
        .to_builder()
        .connect_timeout(None)
        .build()
        .unwrap();
    let client = build(&rt, c, config);
    let a = call(
        &rt,
        &client,
        Op::Ok(ms(1)),
        CallOptions::new().deadline(secs(2)),
    );
    drive(&rt, secs(60));
    assert_eq!(client.state(), State::Connecting);
    assert_eq!(n.connects.load(Ordering::SeqCst), 1);
    assert_eq!(n.live_connects.load(Ordering::SeqCst), 1);
    let e = outcome(&a).expect("answered").expect_err("no connection");
    // The buffer timeout (10 s) or the deadline (2 s), whichever first.
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
    // close() resolves and frees the attempt.
    let closed = Arc::new(AtomicBool::new(false));
    let (cl, f) = (client.clone(), closed.clone());
    rt.spawn(async move {
        cl.close().await;
        f.store(true, Ordering::SeqCst);
    });
    drive(&rt, secs(61));
    assert!(closed.load(Ordering::SeqCst));
    assert_eq!(
        n.live_connects.load(Ordering::SeqCst),
        0,
        "attempt dropped on close"
    );
    drop(client);
    drive(&rt, secs(62));
    assert_eq!(rt.tasks(), 0);
}

/// Same, but the client is just dropped, never closed.
#[test]
fn dropping_a_client_whose_connect_hangs_drops_the_connect_future() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.connect = ConnectMode::Hang;
    let n = c.n.clone();
    let config = Config::recommended()
        .to_builder()
        .connect_timeout(None)
        .build()
        .unwrap();
    let client = build(&rt, c, config);
    drive(&rt, secs(1));
    assert_eq!(n.live_connects.load(Ordering::SeqCst), 1);
    drop(client);
    drive(&rt, secs(2));
    assert_eq!(rt.tasks(), 0);
    assert_eq!(n.live_connects.load(Ordering::SeqCst), 0);
}

// ----- panics in the connector ------------------------------------------------------

/// `run` returns an error and `classify` panics on it: a lost connection;
/// the client reconnects and serves. The docs say the panic message
/// reaches the caller in the error's message.
#[test]
fn run_error_whose_classify_panics() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.classify_panics = true;
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let a = call_now(&rt, &client, Op::Err(ms(1)));
    drive(&rt, ms(100));
    let e = outcome(&a).expect("answered").expect_err("failed");
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    let next = call_now(&rt, &client, Op::Ok(ms(1)));
    drive(&rt, ms(200));
    assert_eq!(outcome(&next).expect("answered").expect("ok"), 7);
    assert_eq!(n.connects.load(Ordering::SeqCst), 2);
    assert_eq!(client.state(), State::Connected);
    assert!(
        e.to_string().contains("classify bug"),
        "the panic message reaches the caller: {e}"
    );
}

/// The part of the above that holds: survival and one outcome.
#[test]
fn run_error_whose_classify_panics_is_survived() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.classify_panics = true;
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let a = call_now(&rt, &client, Op::Err(ms(1)));
    drive(&rt, ms(100));
    let e = outcome(&a).expect("answered").expect_err("failed");
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    let next = call_now(&rt, &client, Op::Ok(ms(1)));
    drive(&rt, ms(200));
    assert_eq!(outcome(&next).expect("answered").expect("ok"), 7);
    assert_eq!(n.connects.load(Ordering::SeqCst), 2);
    assert_eq!(client.state(), State::Connected);
}

/// `classify_connect` panics: a `panicked` attempt (not retried), the client fails and
/// says why — with the panic's message, per the docs.
#[test]
fn classify_connect_panics() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.connect = ConnectMode::Fail;
    c.classify_connect_panics = true;
    let client = build(&rt, c, Config::recommended());
    let a = call_now(&rt, &client, Op::Ok(ms(1)));
    drive(&rt, secs(5));
    assert_eq!(client.state(), State::Failed);
    let e = outcome(&a).expect("answered").expect_err("failed");
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert!(e.to_string().contains("classify_connect bug"), "{e}");
}

/// `closed()` panics while an op is in flight: the connection is lost, the
/// op fails `connection_lost` with the panic's message (docs).
#[test]
fn closed_panics_with_an_op_in_flight() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.closed = ClosedMode::PanicAfter(ms(20));
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let a = call_now(&rt, &client, Op::Hang);
    drive(&rt, ms(100));
    let e = outcome(&a).expect("answered").expect_err("lost");
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert!(e.to_string().contains("closed bug"), "{e}");
}

/// The part of the above that holds.
#[test]
fn closed_panics_with_an_op_in_flight_is_survived() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.closed = ClosedMode::PanicAfter(ms(20));
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let a = call_now(&rt, &client, Op::Hang);
    drive(&rt, ms(25));
    drive(&rt, ms(35));
    let e = outcome(&a).expect("answered").expect_err("lost");
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
    assert!(n.connects.load(Ordering::SeqCst) >= 2, "reconnected");
    assert_eq!(
        n.live_conns.load(Ordering::SeqCst),
        1,
        "only the new connection lives"
    );
}

/// `ping` panics: the connection is lost and replaced.
#[test]
fn ping_panics() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.ping_panics = true;
    let n = c.n.clone();
    let config = quiet()
        .to_builder()
        .heartbeat(Some(Heartbeat {
            interval: ms(100),
            timeout: ms(50),
        }))
        .build()
        .unwrap();
    let client = build(&rt, c, config);
    drive(&rt, ms(1000));
    assert!(
        n.connects.load(Ordering::SeqCst) >= 2,
        "a panicking ping loses the connection"
    );
    assert!(n.live_conns.load(Ordering::SeqCst) <= 1);
    let _ = client.state();
}

/// The connector's error type panics in `Display`, on a connect error.
/// Not in the docs' list (connect, run, ping, closed, classify,
/// classify_connect), but it is the connector's code, run by the driver
/// outside any `catch_unwind`: the driver task dies.
#[test]
fn connect_error_whose_display_panics() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.connect = ConnectMode::Fail;
    c.connect_error = "display panics".into();
    let client = build(&rt, c, Config::recommended());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(&rt, secs(5))));
    assert!(r.is_ok(), "the driver task panicked");
    assert_ne!(client.state(), State::Connecting);
}

// ----- closed() at once, event floods, memory ----------------------------------------

/// `closed()` resolves immediately after every connect: the client flaps
/// for ever, but every op still gets exactly one outcome (by its deadline)
/// and no work outlives its op.
#[test]
fn closed_resolves_immediately_after_connect() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.closed = ClosedMode::Immediately;
    let n = c.n.clone();
    let client = build(&rt, c, Config::recommended());
    let mut slots = Vec::new();
    for i in 0..100 {
        let op = if i % 2 == 0 { Op::Ok(ms(1)) } else { Op::Hang };
        slots.push(call(
            &rt,
            &client,
            op,
            CallOptions::new().retryable(i % 3 == 0).deadline(secs(3)),
        ));
    }
    drive(&rt, secs(4));
    for (i, s) in slots.iter().enumerate() {
        assert!(outcome(s).is_some(), "op {i} has no outcome");
    }
    assert_eq!(client.outstanding(), 0);
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
    assert!(n.connects.load(Ordering::SeqCst) >= 2);
    assert!(n.live_conns.load(Ordering::SeqCst) <= 1);
}

/// A subscriber that never reads while the client emits ~10 000 events:
/// it holds 1024 (docs), `missed()` counts the rest exactly.
#[test]
fn a_subscriber_that_never_reads_10_000_events() {
    let (read, missed, emitted) = flood_a_silent_subscriber();
    assert_eq!(
        read as u64 + missed,
        emitted as u64,
        "every event read or counted"
    );
    assert_eq!(read, 1024, "held (docs: 1024 unread)");
}

/// The part that holds: bounded, and read + missed == emitted.
#[test]
fn a_subscriber_that_never_reads_is_bounded_and_counted() {
    let (read, missed, emitted) = flood_a_silent_subscriber();
    assert!(emitted >= 10_000, "{emitted}");
    assert_eq!(
        read as u64 + missed,
        emitted as u64,
        "every event read or counted"
    );
    assert!(read <= 1025, "{read}");
}

fn flood_a_silent_subscriber() -> (usize, u64, usize) {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.closed = ClosedMode::Immediately;
    let config = Config::recommended()
        .to_builder()
        .backoff(Backoff::Constant(ms(1)))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let emitted = EventCount::default();
    let client = Client::builder(c)
        .config(config)
        .seed(1)
        .runtime(Arc::new(rt.clone()))
        .observer(emitted.clone())
        .build()
        .unwrap();
    let mut events = client.events();
    // Subscribed before the driver's first poll, so before any event. Each
    // flap (connect 1 ms, lost at once, 1 ms backoff) gives 3 events.
    drive(&rt, secs(8));
    let emitted = emitted.0.load(Ordering::SeqCst);
    let mut read = 0;
    while let Some(Some(_)) = events.next().now_or_never() {
        read += 1;
    }
    let missed = events.missed();
    drop(client);
    (read, missed, emitted)
}

/// 100 000 ops, each cancelled (the `Call` dropped) while in flight:
/// nothing outstanding, no live run, and the heap does not grow with the
/// number of finished ops.
#[test]
fn a_hundred_thousand_cancelled_ops_leave_nothing_behind() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let batch = |k: usize| {
        for _ in 0..1000 {
            let call = client.call(Op::Hang);
            // Half dropped before the driver saw the submit, half after.
            if k % 2 == 0 {
                drop(call);
            } else {
                rt.spawn(async move {
                    let mut call = call;
                    let _ = (&mut call).now_or_never();
                    drop(call);
                });
            }
        }
        rt.run_until_stalled();
    };
    for k in 0..20 {
        batch(k);
    }
    let base = rss();
    for k in 20..520 {
        batch(k);
        if k == 100 {
            assert_eq!(client.outstanding(), 0);
            assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
        }
    }
    let grown = rss() - base;
    assert_eq!(client.outstanding(), 0);
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
    assert!(
        grown < 32 * MB,
        "RSS grew by {} MB over 500 000 cancelled ops",
        grown / MB
    );
    assert_eq!(client.state(), State::Connected);
}

/// Same with ops that time out (deadline) and ops answered normally.
#[test]
fn finished_ops_of_every_kind_leave_nothing_behind() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let mut t = ms(10);
    let mut round = |client: &Client<Hostile>| {
        for i in 0..500 {
            let op = if i % 2 == 0 { Op::Hang } else { Op::Ok(ms(1)) };
            let call = client.call_with(op, CallOptions::new().deadline(ms(5)));
            rt.spawn(async move {
                let _ = call.await;
            });
        }
        t += ms(10);
        drive(&rt, t);
    };
    for _ in 0..20 {
        round(&client);
    }
    let base = rss();
    for _ in 0..500 {
        round(&client);
    }
    let grown = rss() - base;
    assert_eq!(client.outstanding(), 0);
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
    assert!(
        grown < 32 * MB,
        "RSS grew by {} MB over 250 000 finished ops",
        grown / MB
    );
}

/// Event streams opened and dropped on a quiet, healthy client: their
/// memory should go with them.
#[test]
fn dropped_event_streams_are_freed() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    for _ in 0..1000 {
        drop(client.events());
    }
    rt.run_until_stalled();
    let base = rss();
    for _ in 0..500 {
        for _ in 0..1000 {
            drop(client.events());
        }
        rt.run_until_stalled();
    }
    let grown = rss() - base;
    assert!(
        grown < 32 * MB,
        "RSS grew by {} MB over 500 000 dropped streams",
        grown / MB
    );
}

// ----- deadlines at the edges -------------------------------------------------------

/// `Duration::MAX` everywhere a duration is taken: no overflow, no panic,
/// answers still come, close still ends it all.
#[test]
fn huge_deadlines() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let n = c.n.clone();
    let config = Config::mongodb_legacy()
        .to_builder()
        .connect_timeout(Some(Duration::MAX))
        .buffer_timeout(Some(Duration::MAX))
        .op_deadline(Some(Duration::MAX))
        .heartbeat(Some(Heartbeat {
            interval: Duration::MAX,
            timeout: Duration::MAX,
        }))
        .build()
        .unwrap();
    let client = build(&rt, c, config);
    let a = call(
        &rt,
        &client,
        Op::Ok(ms(1)),
        CallOptions::new().deadline(Duration::MAX),
    );
    let h = call(
        &rt,
        &client,
        Op::Hang,
        CallOptions::new()
            .deadline(Duration::MAX)
            .retryable(true)
            .max_attempts(u32::MAX),
    );
    drive(&rt, secs(3600));
    assert_eq!(outcome(&a).expect("answered").expect("ok"), 7);
    assert!(outcome(&h).is_none(), "a hanging op with no deadline waits");
    assert_eq!(client.state(), State::Connected);
    let cl = client.clone();
    rt.spawn(async move { cl.close().await });
    drive(&rt, secs(3601));
    assert_eq!(
        outcome(&h).expect("answered").expect_err("closed").kind(),
        ErrorKind::Closed
    );
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
}

/// A huge reconnect delay (constant `Duration::MAX` backoff, full jitter):
/// the client waits, but `close()` and deadlines still work.
#[test]
fn huge_backoff() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.connect = ConnectMode::Fail;
    let config = Config::recommended()
        .to_builder()
        .backoff(Backoff::Constant(Duration::MAX))
        .jitter(Jitter::Full)
        .build()
        .unwrap();
    let client = build(&rt, c, config);
    let a = call(
        &rt,
        &client,
        Op::Ok(ms(1)),
        CallOptions::new().deadline(secs(1)),
    );
    drive(&rt, secs(20));
    let e = outcome(&a).expect("answered").expect_err("no connection");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::DeadlineExceeded | ErrorKind::BufferTimeout | ErrorKind::DeadlineUnreachable
        ),
        "{e}"
    );
    let cl = client.clone();
    rt.spawn(async move { cl.close().await });
    drive(&rt, secs(21));
    assert_eq!(client.state(), State::Closed);
}

/// A zero deadline: the op fails at once (no time passes), its run is
/// dropped, and the client is unharmed.
#[test]
fn zero_deadline() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let n = c.n.clone();
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    let h = call(
        &rt,
        &client,
        Op::Hang,
        CallOptions::new().deadline(Duration::ZERO),
    );
    rt.run_until_stalled();
    let e = outcome(&h)
        .expect("failed without the clock moving")
        .expect_err("deadline");
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(n.live_runs.load(Ordering::SeqCst), 0);
    // Buffered (not connected yet) with a zero deadline.
    let rt2 = VirtualRuntime::new();
    let c2 = Hostile::new(&rt2);
    let client2 = build(&rt2, c2, quiet());
    let b = call(
        &rt2,
        &client2,
        Op::Ok(ms(1)),
        CallOptions::new().deadline(Duration::ZERO),
    );
    rt2.run_until_stalled();
    assert_eq!(
        outcome(&b).expect("answered").expect_err("deadline").kind(),
        ErrorKind::DeadlineExceeded
    );
    assert_eq!(client.outstanding(), 0);
    assert_eq!(client2.outstanding(), 0);
    let ok = call_now(&rt, &client, Op::Ok(ms(1)));
    drive(&rt, ms(20));
    assert_eq!(outcome(&ok).expect("answered").expect("ok"), 7);
}

// ----- truthful state ------------------------------------------------------------------

/// state() / outstanding() checked after every driver step of a flapping
/// client, against the events the stream reports.
#[test]
fn state_and_outstanding_are_truthful_after_each_step() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let mut c = Hostile::new(&rt);
    c.closed = ClosedMode::PanicAfter(ms(30));
    let config = quiet()
        .to_builder()
        .buffer(BufferPolicy::Unbounded)
        .build()
        .unwrap();
    let client = build(&rt, c, config);
    drive(&rt, ms(5));
    assert_eq!(client.state(), State::Connected);
    let slots: Vec<_> = (0..10).map(|_| call_now(&rt, &client, Op::Hang)).collect();
    rt.run_until_stalled();
    assert_eq!(client.outstanding(), 10);
    rt.advance_to(ms(31));
    rt.run_until_stalled();
    // The loss was seen: the ops failed, the client is reconnecting.
    assert_eq!(client.outstanding(), 0);
    assert!(slots.iter().all(|s| outcome(s).is_some()));
    assert_ne!(
        client.state(),
        State::Connected,
        "loss seen, not yet reconnected"
    );
    drive(&rt, ms(60));
    assert_eq!(client.state(), State::Connected);
}

// ----- fairness ---------------------------------------------------------------------------

/// A caller that submits (and drops) more than 256 calls per driver poll.
/// Meanwhile, an op whose answer is already ready: it should be delivered
/// during the flood, not after it. The driver serves commands first, 256
/// at a time, and only looks at answers and timers when the command queue
/// is empty.
#[test]
fn a_command_flood_does_not_starve_answers() {
    let _one_at_a_time = one_at_a_time();
    let rt = VirtualRuntime::new();
    let c = Hostile::new(&rt);
    let client = build(&rt, c, quiet());
    drive(&rt, ms(10));
    // Dispatched now, answered at 11 ms.
    let a = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    rt.run_until_stalled();
    assert_eq!(client.outstanding(), 1);
    let answered_at = Arc::new(Mutex::new(None));
    let (cl, at, a2) = (client.clone(), answered_at.clone(), a.clone());
    // The flood starts in the same instant the answer arrives.
    rt.spawn(async move {
        for round in 0..100 {
            for _ in 0..300 {
                drop(cl.call(Op::Hang));
            }
            if !a2.lock().unwrap().is_empty() {
                *at.lock().unwrap() = Some(round);
                break;
            }
            YieldNow(false).await;
        }
    });
    rt.advance_to(ms(11));
    rt.run_until_stalled();
    let at = *answered_at.lock().unwrap();
    assert!(outcome(&a).is_some(), "answered once the flood ended");
    assert!(
        matches!(at, Some(r) if r < 5),
        "answered during the flood: round {at:?}"
    );
}
