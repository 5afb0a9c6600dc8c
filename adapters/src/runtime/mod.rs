//! The runtime seam: a timer you can reset, a spawn, and a clock.
//!
//! Modelled on quinn's `Runtime`: each implementation is a few dozen lines
//! and holds no logic; the single generic driver in this crate runs the
//! [`Machine`](crate::core::Machine) on top of it.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

#[cfg(any(feature = "smol", feature = "async-std"))]
mod async_io;
#[cfg(feature = "tokio")]
mod tokio;

#[cfg(feature = "async-std")]
pub use self::async_io::AsyncStdRuntime;
#[cfg(feature = "smol")]
pub use self::async_io::SmolRuntime;
#[cfg(feature = "tokio")]
pub use self::tokio::TokioRuntime;

/// What the driver needs from an async runtime.
///
/// Three methods: a timer, a spawn and (optionally) a clock. Any executor
/// will do; here, one thread per task (the driver is the only task a client
/// spawns) with async-io's timer:
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::sync::Arc;
/// use std::task::{Context, Poll};
/// use std::time::Instant;
///
/// use redial::{AsyncTimer, Runtime};
///
/// #[derive(Debug)]
/// struct ThreadPerTask;
///
/// #[derive(Debug)]
/// struct Timer(async_io::Timer);
///
/// impl AsyncTimer for Timer {
///     fn reset(mut self: Pin<&mut Self>, at: Instant) {
///         self.0.set_at(at);
///     }
///     fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
///         Pin::new(&mut self.0).poll(cx).map(|_| ())
///     }
/// }
///
/// impl Runtime for ThreadPerTask {
///     fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
///         Box::pin(Timer(async_io::Timer::at(at)))
///     }
///     fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
///         std::thread::spawn(move || async_io::block_on(future));
///     }
/// }
///
/// // `Client::builder(connector).runtime(rt).build()` runs on it.
/// let rt: Arc<dyn Runtime> = Arc::new(ThreadPerTask);
/// let (tx, rx) = std::sync::mpsc::channel();
/// rt.spawn(Box::pin(async move {
///     let mut t = rt_timer(Instant::now());
///     std::future::poll_fn(|cx| t.as_mut().poll(cx)).await;
///     tx.send(()).unwrap();
/// }));
/// rx.recv().unwrap();
/// # fn rt_timer(at: Instant) -> Pin<Box<dyn AsyncTimer>> { ThreadPerTask.new_timer(at) }
/// ```
///
/// A deterministic one on a virtual clock, used to test the driver under
/// the simulator: `redial_sim::vrt::VirtualRuntime`.
pub trait Runtime: Send + Sync + Debug + 'static {
    /// A timer that fires at `at`.
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>>;
    /// Runs `future` in the background.
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>);
    /// The current time (the runtime's clock, so paused/mocked clocks work).
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A timer that can be moved to a new instant.
pub trait AsyncTimer: Send + Debug + 'static {
    /// Re-arms the timer to fire at `at`.
    fn reset(self: Pin<&mut Self>, at: Instant);
    /// Ready once the timer's instant has passed (possibly spuriously early
    /// or late: the driver compares the clock with the deadline itself).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// The runtime of the current context: tokio when called inside a tokio
/// runtime (feature `tokio`), else smol, else async-std, when enabled.
pub fn default_runtime() -> Option<Arc<dyn Runtime>> {
    #[cfg(feature = "tokio")]
    {
        if ::tokio::runtime::Handle::try_current().is_ok() {
            return Some(Arc::new(TokioRuntime));
        }
    }
    #[cfg(feature = "smol")]
    {
        return Some(Arc::new(SmolRuntime));
    }
    #[cfg(all(feature = "async-std", not(feature = "smol")))]
    {
        return Some(Arc::new(AsyncStdRuntime));
    }
    #[allow(unreachable_code)]
    None
}
