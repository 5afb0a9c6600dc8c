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
            $( #[test] fn $name() { super::$name(crate::rt::Rt::Tokio) } )*
        }
        #[cfg(feature = "smol")]
        mod smol_rt {
            $( #[test] fn $name() { super::$name(crate::rt::Rt::Smol) } )*
        }
    };
}

#[allow(unused_imports)]
pub(crate) use on_each_runtime;
