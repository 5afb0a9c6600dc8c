//! One scenario body, driven once under each runtime (a module of its
//! own, not of `support`, which the bench crate shares: a test file
//! declares `#[path = "support/rt.rs"] mod rt;` beside `mod support;`): the few runtime
//! calls a scenario makes (spawn, sleep, timeout, a blocking call) go
//! through [`Rt`], and [`on_each_runtime!`] turns each scenario
//! `fn name(rt: Rt)` into a `#[test]` per enabled runtime
//! (`tokio_rt::name`, `smol_rt::name`).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, select};

/// The runtime a scenario runs on: its tasks, timers and the client's
/// [`redial::Runtime`] (given to the builder explicitly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
    /// A fresh two-worker tokio runtime; clients on `TokioRuntime`.
    #[cfg(feature = "tokio")]
    Tokio,
    /// `smol::block_on` on the test thread, tasks on smol's global
    /// executor; clients on `SmolRuntime`. No tokio runtime anywhere near.
    #[cfg(feature = "smol")]
    Smol,
}

impl Rt {
    /// The client's runtime for this one.
    pub fn runtime(self) -> Arc<dyn redial::Runtime> {
        match self {
            #[cfg(feature = "tokio")]
            Rt::Tokio => Arc::new(redial::runtime::TokioRuntime),
            #[cfg(feature = "smol")]
            Rt::Smol => Arc::new(redial::runtime::SmolRuntime),
        }
    }

    /// Runs `f` to completion on this runtime, failing the test if it
    /// takes longer than `limit`.
    pub fn run<F: Future<Output = ()>>(self, limit: Duration, f: F) {
        match self {
            #[cfg(feature = "tokio")]
            Rt::Tokio => crate::support::run_bounded(limit, f),
            #[cfg(feature = "smol")]
            Rt::Smol => smol::block_on(async {
                // No tokio context: with both of the redis crate's runtime
                // supports compiled in, a connection opened on tokio here
                // would fail (it needs tokio's reactor).
                assert!(tokio::runtime::Handle::try_current().is_err());
                self.timeout(limit, f)
                    .await
                    .expect("test exceeded its time bound")
            }),
        }
    }

    /// Spawns `f`; the handle gives its output (dropping it detaches).
    pub fn spawn<T: Send + 'static>(self, f: impl Future<Output = T> + Send + 'static) -> Task<T> {
        match self {
            #[cfg(feature = "tokio")]
            Rt::Tokio => Task::Tokio(tokio::spawn(f)),
            #[cfg(feature = "smol")]
            Rt::Smol => Task::Smol(Some(smol::spawn(f))),
        }
    }

    /// Runs the blocking `f` on the runtime's blocking pool.
    pub fn blocking<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> Task<T> {
        match self {
            #[cfg(feature = "tokio")]
            Rt::Tokio => Task::Tokio(tokio::task::spawn_blocking(f)),
            #[cfg(feature = "smol")]
            Rt::Smol => Task::Smol(Some(smol::spawn(smol::unblock(f)))),
        }
    }

    /// Sleeps `d` on the runtime's timer.
    pub async fn sleep(self, d: Duration) {
        match self {
            #[cfg(feature = "tokio")]
            Rt::Tokio => tokio::time::sleep(d).await,
            #[cfg(feature = "smol")]
            Rt::Smol => {
                async_io::Timer::after(d).await;
            }
        }
    }

    /// `f`'s output, or `None` when it takes longer than `d`.
    pub async fn timeout<T>(self, d: Duration, f: impl Future<Output = T>) -> Option<T> {
        let f = std::pin::pin!(f);
        let sleep = std::pin::pin!(self.sleep(d));
        match select(f, sleep).await {
            Either::Left((out, _)) => Some(out),
            Either::Right(((), _)) => None,
        }
    }
}

/// A spawned task's handle (see [`Rt::spawn`]).
pub enum Task<T> {
    #[cfg(feature = "tokio")]
    Tokio(tokio::task::JoinHandle<T>),
    #[cfg(feature = "smol")]
    Smol(Option<smol::Task<T>>),
}

impl<T> Task<T> {
    /// Cancels the task.
    pub fn abort(mut self) {
        match &mut self {
            #[cfg(feature = "tokio")]
            Task::Tokio(h) => h.abort(),
            #[cfg(feature = "smol")]
            Task::Smol(t) => drop(t.take()),
        }
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        match self {
            #[cfg(feature = "tokio")]
            Task::Tokio(h) => h.is_finished(),
            #[cfg(feature = "smol")]
            Task::Smol(t) => t.as_ref().is_none_or(smol::Task::is_finished),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            #[cfg(feature = "tokio")]
            Task::Tokio(h) => Pin::new(h).poll(cx).map(|r| r.expect("task")),
            #[cfg(feature = "smol")]
            Task::Smol(t) => Pin::new(t.as_mut().expect("task polled after abort")).poll(cx),
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // Dropped unawaited: detached, as a tokio handle is.
        #[cfg(feature = "smol")]
        if let Task::Smol(t) = self {
            if let Some(t) = t.take() {
                t.detach();
            }
        }
    }
}

/// For each scenario `fn name(rt: Rt)` listed, a `#[test] fn name()` in
/// module `tokio_rt` (feature `tokio`) and in module `smol_rt` (feature
/// `smol`), each driving the same body on its runtime.
#[allow(unused_macros)]
macro_rules! on_each_runtime {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "tokio")]
        mod tokio_rt {
            $( #[test] fn $name() {
                super::$name(crate::rt::Rt::Tokio);
                crate::rt::check_traces(concat!("tokio_", stringify!($name)));
            } )*
        }
        #[cfg(feature = "smol")]
        mod smol_rt {
            $( #[test] fn $name() {
                super::$name(crate::rt::Rt::Smol);
                crate::rt::check_traces(concat!("smol_", stringify!($name)));
            } )*
        }
    };
}

#[allow(unused_imports)]
pub(crate) use on_each_runtime;

/// The flight recorders of the clients the current test built (with
/// [`recorded`]), and what they wrote.
#[cfg(feature = "recorder")]
type Traces = Vec<(redial::FlightRecorder, Buf)>;

#[cfg(feature = "recorder")]
std::thread_local! {
    static TRACES: std::cell::RefCell<Traces> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A writer into shared memory.
#[derive(Clone, Default)]
pub struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The builder, with a flight recorder whose trace
/// [`check_traces`] replays at the end of the test (with feature
/// `recorder`; without it, the builder as it is).
#[cfg(feature = "recorder")]
pub fn recorded<C: redial::Connector>(b: redial::Builder<C>) -> redial::Builder<C> {
    let buf = Buf::default();
    let rec = redial::FlightRecorder::to_writer(buf.clone());
    let b = b.record(&rec);
    TRACES.with(|t| t.borrow_mut().push((rec, buf)));
    b
}

/// Without feature `recorder`: the builder as it is.
#[cfg(not(feature = "recorder"))]
pub fn recorded<C: redial::Connector>(b: redial::Builder<C>) -> redial::Builder<C> {
    b
}

/// Every trace the test recorded replays exactly (a fresh machine fed
/// the recorded inputs produces the recorded outputs, byte for byte).
/// With `REDIAL_TRACE_DIR` set, the traces are written there too.
#[cfg(feature = "recorder")]
pub fn check_traces(test: &str) {
    let traces = TRACES.with(|t| std::mem::take(&mut *t.borrow_mut()));
    for (i, (rec, buf)) in traces.into_iter().enumerate() {
        let _ = rec.flush();
        assert_eq!(rec.error(), None, "{test}: the recorder failed");
        let text = String::from_utf8(buf.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .expect("a trace is UTF-8");
        let r = redial::trace::replay(&text)
            .unwrap_or_else(|m| panic!("{test}: trace {i} does not replay: {m}"));
        eprintln!(
            "{test}: trace {i}: {} records replayed exactly",
            r.records.len()
        );
        // What-if fidelity: the timeline derived from the trace, replayed
        // under the recorded config, against what the ops really did.
        // Reported, not asserted: it is a prediction from what the client
        // saw (README: "Record in production"); only a derivation that
        // fails, or a replay that breaks an invariant, fails the test.
        let f = redial_sim::derive::fidelity(&text)
            .unwrap_or_else(|e| panic!("{test}: trace {i}: no timeline derives: {e}"));
        println!("fidelity {test} trace {i}: {f}");
        for d in &f.disagreements {
            println!("  {d}");
        }
        assert!(
            f.violations.is_empty(),
            "{test}: trace {i}: the derived timeline breaks an invariant: {:?}",
            f.violations
        );
        if let Some(dir) = std::env::var_os("REDIAL_TRACE_DIR") {
            let path = std::path::Path::new(&dir).join(format!("{test}-{i}.jsonl"));
            std::fs::write(&path, &text).expect("write the trace");
        }
    }
}

/// Without feature `recorder`: nothing to check.
#[cfg(not(feature = "recorder"))]
pub fn check_traces(_test: &str) {}
