//! Hostile review of the adapter rewrite (callers feed the core and run
//! their op in their own task), on the real driver under virtual time.
//! Each test here fails: see its note.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::core::{Config, ErrorKind};
use redial::{CallOptions, CallResult, Client, Connector, Failure};
use redial_sim::vrt::VirtualRuntime;
use support::{drive, ms};

#[derive(Debug, Clone)]
struct TestError(String);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestError {}

/// A healthy multiplexed server on the virtual clock: connects in 1 ms,
/// answers every op and ping in 1 ms; counts connects and runs started.
struct Healthy {
    rt: VirtualRuntime,
    connects: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
}

impl Healthy {
    async fn after(&self, d: Duration) {
        let at = self.rt.elapsed() + d;
        self.rt.sleep_until(at).await;
    }
}

impl Connector for Healthy {
    type Conn = ();
    type Op = u32;
    type Output = u32;
    type Error = TestError;

    fn endpoints(&self) -> usize {
        1
    }

    async fn connect(&self, _endpoint: usize) -> Result<(), TestError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        self.after(ms(1)).await;
        Ok(())
    }

    async fn run(&self, _conn: &(), op: &u32) -> Result<u32, TestError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.after(ms(1)).await;
        Ok(*op)
    }

    fn classify(&self, _error: &TestError) -> Failure {
        Failure::ServerError
    }

    async fn ping(&self, _conn: &()) -> Result<(), TestError> {
        self.after(ms(1)).await;
        Ok(())
    }
}

type Slot = Arc<Mutex<Vec<CallResult<Healthy>>>>;

/// A call made now but first polled `hold` later (a future created
/// eagerly and awaited after other work: ordinary async Rust) must not
/// cost the connection anything: the op has not gone on the wire.
///
/// Found: the op is submitted (and dispatched) when `call` is made, so the
/// core times it from then. Under `Config::recommended()` (response
/// timeout 15 s) a call held unpolled for 20 s makes the core declare the
/// healthy connection unresponsive at 15 s: it is dropped and reconnected,
/// and the ops of every other caller in flight at that moment fail
/// `connection_lost` (may have run). With a command timeout the held op
/// itself fails `command_timeout`, `maybe_executed = true`, though its run
/// was never started.
#[test]
fn a_call_not_yet_polled_does_not_make_a_healthy_connection_unresponsive() {
    let rt = VirtualRuntime::new();
    let connects = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let client = Client::builder(Healthy {
        rt: rt.clone(),
        connects: connects.clone(),
        runs: runs.clone(),
    })
    .config(Config::recommended())
    .seed(1)
    .runtime(Arc::new(rt.clone()))
    .build()
    .expect("client");
    drive(&rt, ms(100));
    assert_eq!(connects.load(Ordering::SeqCst), 1);

    // Caller A makes its call, does 20 s of other work, then awaits it.
    let held: Slot = Arc::default();
    {
        let (slot, call, rt2) = (held.clone(), client.call(7), rt.clone());
        rt.spawn(async move {
            rt2.sleep_until(Duration::from_secs(20)).await;
            let r = call.await;
            slot.lock().unwrap().push(r);
        });
    }
    // Caller B: one op every 10 ms meanwhile (each answered in 1 ms).
    let others: Slot = Arc::default();
    {
        let (slot, c, rt2) = (others.clone(), client.clone(), rt.clone());
        rt.spawn(async move {
            for i in 0..2500u32 {
                rt2.sleep_until(ms(200) + ms(10) * i).await;
                let r = c.call(i).await;
                slot.lock().unwrap().push(r);
            }
        });
    }
    drive(&rt, Duration::from_secs(30));

    let failed: Vec<ErrorKind> = others
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.kind()))
        .collect();
    let held = held.lock().unwrap();
    assert!(
        failed.is_empty() && connects.load(Ordering::SeqCst) == 1,
        "a healthy connection was dropped because one caller had not polled its call yet: \
         {} connects, other callers' failures {:?}, held call {:?}",
        connects.load(Ordering::SeqCst),
        failed,
        held.first().map(|r| r.as_ref().map_err(|e| e.kind()))
    );
}

/// As above, with a per-op command timeout: the op of a call polled late
/// fails `command_timeout` claiming it may have run, but its `run` was
/// never started (the connector saw nothing).
#[test]
fn a_call_polled_late_is_not_timed_out_as_if_it_had_been_sent() {
    let rt = VirtualRuntime::new();
    let connects = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let client = Client::builder(Healthy {
        rt: rt.clone(),
        connects: connects.clone(),
        runs: runs.clone(),
    })
    .config(Config::recommended())
    .seed(1)
    .runtime(Arc::new(rt.clone()))
    .build()
    .expect("client");
    drive(&rt, ms(100));
    let held: Slot = Arc::default();
    {
        let call = client.call_with(7, CallOptions::new().command_timeout(ms(500)));
        let (slot, rt2) = (held.clone(), rt.clone());
        rt.spawn(async move {
            rt2.sleep_until(ms(1000)).await; // polled 900 ms after the call
            let r = call.await;
            slot.lock().unwrap().push(r);
        });
    }
    drive(&rt, Duration::from_secs(3));
    let r = held.lock().unwrap().pop().expect("resolved");
    let started = runs.load(Ordering::SeqCst);
    match r {
        Ok(v) => assert_eq!(v, 7),
        Err(e) => assert!(
            !(e.maybe_executed() && started == 0),
            "{:?} with maybe_executed = true, but the connector's run was started {started} times",
            e.kind()
        ),
    }
}
