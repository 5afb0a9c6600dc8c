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
