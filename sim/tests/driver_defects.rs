//! The defects a new user found in the first driver, each replayed on the
//! real driver (`redial::Client`) under the virtual runtime, with a
//! connector built to provoke it. Each test is named for the behaviour it
//! requires; each failed on the driver before the fix (see the notes).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::lock::Mutex as AsyncMutex;
use redial::core::{
    Backoff, Config, ConnectFailure, ErrorKind, Heartbeat, InitialConnect, Jitter, State, Tries,
};
use redial::{BuildError, CallOptions, CallResult, Client, Connector, Failure};
use redial_sim::vrt::VirtualRuntime;
use support::{Live, drive, ms};

#[derive(Debug, Clone)]
struct TestError(Failure, String);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for TestError {}

/// What a test op does on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Answers after this long.
    Ok(Duration),
    /// Fails "connection lost" after this long.
    LostAfter(Duration),
    /// Never answers.
    Hang,
    /// The connector panics.
    Panic,
}

/// A connector on the virtual clock. Endpoint `i` accepts unless listed in
/// `refuse`; with `serial`, one op (or ping) at a time per connection, as
/// the postgres connector.
struct TestConnector {
    rt: VirtualRuntime,
    endpoints: usize,
    refuse: Vec<usize>,
    /// Endpoints whose connect never answers.
    silent: Vec<usize>,
    reject: Option<String>,
    panic_on_connect: bool,
    serial: bool,
    connects: Arc<Mutex<Vec<usize>>>,
    live_runs: Arc<AtomicUsize>,
    pings: Arc<AtomicUsize>,
}

impl TestConnector {
    fn new(rt: &VirtualRuntime) -> TestConnector {
        TestConnector {
            rt: rt.clone(),
            endpoints: 1,
            refuse: Vec::new(),
            silent: Vec::new(),
            reject: None,
            panic_on_connect: false,
            serial: false,
            connects: Arc::default(),
            live_runs: Arc::default(),
            pings: Arc::default(),
        }
    }

    async fn after(&self, d: Duration) {
        let at = self.rt.elapsed() + d;
        self.rt.sleep_until(at).await;
    }
}

struct TestConn {
    endpoint: usize,
    lock: AsyncMutex<()>,
}

impl Connector for TestConnector {
    type Conn = TestConn;
    type Op = Op;
    type Output = usize;
    type Error = TestError;

    fn endpoints(&self) -> usize {
        self.endpoints
    }

    async fn connect(&self, endpoint: usize) -> Result<TestConn, TestError> {
        self.connects.lock().unwrap().push(endpoint);
        assert!(!self.panic_on_connect, "connector bug in connect");
        self.after(Duration::from_millis(1)).await;
        if let Some(why) = &self.reject {
            return Err(TestError(Failure::ServerError, why.clone()));
        }
        if self.silent.contains(&endpoint) {
            std::future::pending::<()>().await;
        }
        if self.refuse.contains(&endpoint) {
            return Err(TestError(Failure::ConnectionLost, "refused".into()));
        }
        Ok(TestConn {
            endpoint,
            lock: AsyncMutex::new(()),
        })
    }

    fn classify_connect(&self, error: &TestError) -> ConnectFailure {
        if error.1.contains("password") {
            ConnectFailure::Rejected
        } else {
            ConnectFailure::Refused
        }
    }

    async fn run(&self, conn: &TestConn, op: &Op) -> Result<usize, TestError> {
        let _live = Live::new(&self.live_runs);
        let _serial = if self.serial {
            Some(conn.lock.lock().await)
        } else {
            None
        };
        match *op {
            Op::Ok(d) => {
                self.after(d).await;
                Ok(conn.endpoint)
            }
            Op::LostAfter(d) => {
                self.after(d).await;
                Err(TestError(Failure::ConnectionLost, "reset by peer".into()))
            }
            Op::Hang => std::future::pending().await,
            Op::Panic => panic!("connector bug in run"),
        }
    }

    fn classify(&self, error: &TestError) -> Failure {
        error.0
    }

    async fn ping(&self, conn: &TestConn) -> Result<(), TestError> {
        let _serial = if self.serial {
            Some(conn.lock.lock().await)
        } else {
            None
        };
        self.pings.fetch_add(1, Ordering::SeqCst);
        self.after(Duration::from_millis(1)).await;
        Ok(())
    }
}

type Slot = Arc<Mutex<Option<CallResult<TestConnector>>>>;

/// Submits `op` now; its result lands in the returned slot.
fn call(rt: &VirtualRuntime, client: &Client<TestConnector>, op: Op, options: CallOptions) -> Slot {
    let slot: Slot = Arc::default();
    let (s, c) = (slot.clone(), client.call_with(op, options).submitted());
    rt.spawn(async move {
        let r = c.await;
        *s.lock().unwrap() = Some(r);
    });
    slot
}

fn taken(slot: &Slot) -> Option<CallResult<TestConnector>> {
    slot.lock().unwrap().take()
}

fn client(rt: &VirtualRuntime, c: TestConnector, config: Config) -> Client<TestConnector> {
    Client::builder(c)
        .config(config)
        .seed(1)
        .runtime(Arc::new(rt.clone()))
        .build()
        .expect("client")
}

/// Before: the first Connect waited for an input; the connect timer fired
/// first, and under the legacy preset the client went `failed` with zero
/// connect() calls (first op: `topology_destroyed`).
#[test]
fn an_idle_client_connects_on_its_own() {
    let rt = VirtualRuntime::new();
    let c = TestConnector::new(&rt);
    let connects = c.connects.clone();
    let config = Config::mongodb_legacy()
        .to_builder()
        .connect_timeout(Some(ms(300)))
        .build()
        .unwrap();
    let client = client(&rt, c, config);
    drive(&rt, Duration::from_secs(5));
    assert_eq!(
        connects.lock().unwrap().len(),
        1,
        "connected without being asked"
    );
    assert_eq!(client.state(), State::Connected);
    let r = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, Duration::from_secs(6));
    assert_eq!(taken(&r).expect("answered").expect("ok"), 0);
}

/// Before: a `connection_lost` from an op the core had already finished
/// (past its deadline here) made the driver drop the live connection while
/// the core believed it connected: later ops hung for ever under the legacy
/// preset, and `state()` said `connected`.
#[test]
fn a_late_error_from_a_finished_op_does_not_break_the_connection() {
    let rt = VirtualRuntime::new();
    let c = TestConnector::new(&rt);
    let connects = c.connects.clone();
    let client = client(&rt, c, Config::mongodb_legacy());
    drive(&rt, ms(10));
    let late = call(
        &rt,
        &client,
        Op::LostAfter(ms(1000)),
        CallOptions::new().deadline(ms(100)),
    );
    drive(&rt, ms(500));
    let e = taken(&late)
        .expect("answered")
        .expect_err("past its deadline");
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
    // The op's late error would arrive at 1010 ms.
    drive(&rt, ms(2000));
    let next = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, ms(3000));
    assert_eq!(
        taken(&next).expect("the next op is answered").expect("ok"),
        0
    );
    assert_eq!(client.state(), State::Connected);
    assert_eq!(connects.lock().unwrap().len(), 1, "the connection was kept");
}

/// Before: the driver kept the `run` of a cancelled or timed-out op alive
/// until it finished by itself (about 320 B each; +96 MB after 200k
/// timed-out ops while `outstanding()` was 0).
#[test]
fn no_run_outlives_its_op() {
    let rt = VirtualRuntime::new();
    let c = TestConnector::new(&rt);
    let live = c.live_runs.clone();
    let config = Config::mongodb_legacy();
    let client = client(&rt, c, config);
    drive(&rt, ms(10));
    let mut slots = Vec::new();
    for _ in 0..1000 {
        slots.push(call(
            &rt,
            &client,
            Op::Hang,
            CallOptions::new().deadline(ms(50)),
        ));
    }
    // Half are dropped by their callers (cancelled) before the deadline.
    for _ in 0..500 {
        drop(client.call(Op::Hang));
    }
    drive(&rt, ms(20));
    assert_eq!(client.outstanding(), 1000);
    drive(&rt, ms(200));
    assert_eq!(client.outstanding(), 0);
    for s in &slots {
        let e = taken(s).expect("answered").expect_err("deadline");
        assert_eq!(e.kind(), ErrorKind::DeadlineExceeded);
    }
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "every run was dropped with its op"
    );
}

/// Before: the heartbeat's ping waited behind a long op on a connection
/// that serves one op at a time (the postgres connector), timed out, and
/// the healthy op failed `connection_lost` (and ran again if retryable).
#[test]
fn a_healthy_long_op_survives_the_heartbeat_on_a_serial_connection() {
    let rt = VirtualRuntime::new();
    let mut c = TestConnector::new(&rt);
    c.serial = true;
    let (connects, pings) = (c.connects.clone(), c.pings.clone());
    let client = client(&rt, c, Config::recommended());
    drive(&rt, ms(10));
    let long = call(
        &rt,
        &client,
        Op::Ok(Duration::from_secs(10)),
        CallOptions::new().retryable(true),
    );
    drive(&rt, Duration::from_secs(12));
    let r = taken(&long).expect("answered");
    assert_eq!(r.expect("a healthy 10 s op succeeds"), 0);
    assert_eq!(connects.lock().unwrap().len(), 1, "no reconnect");
    // Idle again: the heartbeat resumes.
    drive(&rt, Duration::from_secs(20));
    assert!(pings.load(Ordering::SeqCst) >= 1);
    assert_eq!(client.state(), State::Connected);
}

/// A silent loss with an op in flight is still detected (the response
/// timeout, 15 s under `recommended()`), on the same serial connection.
#[test]
fn a_silent_loss_with_an_op_in_flight_is_still_detected() {
    let rt = VirtualRuntime::new();
    let mut c = TestConnector::new(&rt);
    c.serial = true;
    let connects = c.connects.clone();
    let client = client(&rt, c, Config::recommended());
    drive(&rt, ms(10));
    let stuck = call(&rt, &client, Op::Hang, CallOptions::new());
    drive(&rt, Duration::from_secs(14));
    assert!(taken(&stuck).is_none(), "not yet");
    drive(&rt, Duration::from_secs(16));
    let e = taken(&stuck).expect("answered").expect_err("lost");
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert!(e.maybe_executed());
    assert!(connects.lock().unwrap().len() >= 2, "it reconnected");
}

/// Before: `Client::new` did not take the endpoint count from the
/// connector: a three-host seed list was cut to its first host, silently.
#[test]
fn the_connectors_whole_seed_list_is_used() {
    let rt = VirtualRuntime::new();
    let mut c = TestConnector::new(&rt);
    c.endpoints = 3;
    c.refuse = vec![0];
    let connects = c.connects.clone();
    let config = Config::recommended()
        .to_builder()
        .jitter(Jitter::None)
        .backoff(Backoff::Constant(ms(10)))
        .build()
        .unwrap();
    let client = client(&rt, c, config);
    drive(&rt, ms(100));
    assert_eq!(*connects.lock().unwrap(), [0, 1]);
    assert_eq!(client.state(), State::Connected);
    let r = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, ms(200));
    assert_eq!(
        taken(&r).expect("answered").expect("ok"),
        1,
        "served by endpoint 1"
    );
}

/// A config that names another endpoint count than the connector's is
/// refused with a clear error, not cut or padded.
#[test]
fn an_endpoint_count_mismatch_is_refused() {
    let rt = VirtualRuntime::new();
    let mut c = TestConnector::new(&rt);
    c.endpoints = 3;
    let config = Config::recommended()
        .to_builder()
        .endpoints(2)
        .build()
        .unwrap();
    let e = Client::builder(c)
        .config(config)
        .runtime(Arc::new(rt.clone()))
        .build()
        .expect_err("mismatch");
    assert!(matches!(
        e,
        BuildError::EndpointMismatch {
            config: 2,
            connector: 3
        }
    ));
    assert!(e.to_string().contains("`endpoints` is 2"), "{e}");
    let mut none = TestConnector::new(&rt);
    none.endpoints = 0;
    let e = Client::builder(none)
        .runtime(Arc::new(rt.clone()))
        .build()
        .expect_err("no endpoint");
    assert!(matches!(e, BuildError::NoEndpoints));
}

/// Before: connect errors were thrown away (`.ok()`): a wrong password was
/// retried for ever under `recommended()` and nobody saw why.
#[test]
fn a_wrong_password_is_not_retried_and_the_caller_sees_why() {
    let rt = VirtualRuntime::new();
    let mut c = TestConnector::new(&rt);
    c.reject = Some("password authentication failed for user \"app\"".into());
    let connects = c.connects.clone();
    let client = client(&rt, c, Config::recommended());
    let r = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, Duration::from_secs(60));
    assert_eq!(connects.lock().unwrap().len(), 1, "not retried");
    assert_eq!(client.state(), State::Failed);
    let e = taken(&r).expect("answered").expect_err("rejected");
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert!(!e.maybe_executed());
    assert!(
        e.detail()
            .is_some_and(|d| d.contains("password authentication failed")),
        "the caller sees why: {e}"
    );
    // Later ops say so too.
    let later = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, Duration::from_secs(61));
    let e = taken(&later).expect("answered").expect_err("destroyed");
    assert_eq!(e.kind(), ErrorKind::TopologyDestroyed);
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
}

/// Before: a refused connect was indistinguishable from a timed-out one,
/// and the error was dropped; now the core carries the kind and the
/// connector's words reach ops the give-up fails.
#[test]
fn the_last_connect_error_reaches_ops_failed_by_the_give_up() {
    let rt = VirtualRuntime::new();
    let mut c = TestConnector::new(&rt);
    c.refuse = vec![0];
    let config = Config::mongoose()
        .to_builder()
        .initial_connect(InitialConnect::Retry)
        .reconnect_tries(Tries::Limited(2))
        .build()
        .unwrap();
    let client = client(&rt, c, config);
    let r = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, Duration::from_secs(60));
    let e = taken(&r).expect("answered").expect_err("gave up");
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert_eq!(e.detail(), Some("last connect error: refused"));
}

/// The words of an earlier attempt are not passed off as the last one's: an
/// attempt the core timed out says so.
#[test]
fn a_timed_out_last_attempt_is_not_reported_with_an_older_error() {
    let rt = VirtualRuntime::new();
    let mut c = TestConnector::new(&rt);
    c.endpoints = 2;
    c.refuse = vec![0];
    c.silent = vec![1];
    let config = Config::mongoose()
        .to_builder()
        .initial_connect(InitialConnect::Retry)
        .reconnect_tries(Tries::Limited(1))
        .connect_timeout(Some(ms(100)))
        .build()
        .unwrap();
    let client = client(&rt, c, config);
    let r = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, Duration::from_secs(10));
    let e = taken(&r).expect("answered").expect_err("gave up");
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert_eq!(e.detail(), Some("the last connect attempt timed out"));
}

/// Before: a connector that panicked killed the driver task: `state()`
/// stayed `connected` for ever and calls failed "driver task is gone".
#[test]
fn a_panicking_connector_leaves_a_truthful_state_and_one_outcome_per_op() {
    let rt = VirtualRuntime::new();
    let c = TestConnector::new(&rt);
    let connects = c.connects.clone();
    let config = Config::mongodb_legacy()
        .to_builder()
        .reconnect_interval(ms(10))
        .build()
        .unwrap();
    let client = client(&rt, c, config);
    drive(&rt, ms(10));
    let boom = call(&rt, &client, Op::Panic, CallOptions::new());
    let other = call(&rt, &client, Op::Ok(ms(5)), CallOptions::new());
    drive(&rt, ms(100));
    let e = taken(&boom).expect("answered").expect_err("panicked");
    assert_eq!(e.kind(), ErrorKind::ConnectionLost);
    assert!(e.maybe_executed());
    assert!(
        e.detail()
            .is_some_and(|d| d.contains("connector bug in run")),
        "{e}"
    );
    // The other op in flight on that connection got its one outcome too.
    assert!(taken(&other).is_some());
    // The client reconnected and serves again; its state says so.
    let next = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, ms(200));
    assert_eq!(taken(&next).expect("answered").expect("ok"), 0);
    assert_eq!(client.state(), State::Connected);
    assert_eq!(connects.lock().unwrap().len(), 2);
}

/// A panic in `connect` is a bug retrying cannot fix: the client gives up
/// and says so, with a truthful state.
#[test]
fn a_connector_that_panics_in_connect_gives_a_failed_client_that_says_why() {
    let rt = VirtualRuntime::new();
    let mut c = TestConnector::new(&rt);
    c.panic_on_connect = true;
    let client = client(&rt, c, Config::recommended());
    let r = call(&rt, &client, Op::Ok(ms(1)), CallOptions::new());
    drive(&rt, Duration::from_secs(10));
    assert_eq!(client.state(), State::Failed);
    let e = taken(&r).expect("answered").expect_err("failed");
    assert_eq!(e.kind(), ErrorKind::ReconnectFailed);
    assert!(
        e.detail()
            .is_some_and(|d| d.contains("connector bug in connect")),
        "{e}"
    );
    assert_eq!(
        e.message(),
        "failed to connect: the connector panicked (not retried)",
        "the core gave up on a panicking connector"
    );
}

/// Pings answered on an idle connection keep it: the core reads each
/// answer (it used to be the driver's reading).
#[test]
fn answered_pings_keep_an_idle_connection() {
    let rt = VirtualRuntime::new();
    let c = TestConnector::new(&rt);
    let (connects, pings) = (c.connects.clone(), c.pings.clone());
    let config = Config::recommended()
        .to_builder()
        .heartbeat(Some(Heartbeat {
            interval: ms(100),
            timeout: ms(50),
        }))
        .build()
        .unwrap();
    let client = client(&rt, c, config);
    drive(&rt, ms(1000));
    // One ping per interval (plus its 1 ms round trip) over the second.
    assert!(pings.load(Ordering::SeqCst) >= 9, "pings were sent");
    assert_eq!(connects.lock().unwrap().len(), 1, "answered pings keep it");
    assert_eq!(client.state(), State::Connected);
}
