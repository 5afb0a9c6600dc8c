//! A deterministic, single-threaded executor on a virtual clock that
//! implements [`redial::Runtime`].
//!
//! It exists to run the **real** `redial` driver (the one a tokio, smol or
//! async-std user gets) under the simulator: time only moves when the caller
//! says so, tasks are polled in a fixed order, and the same program always
//! produces the same sequence of polls. A run of hours of virtual time takes
//! as long as the work done in it, not as long as the hours.
//!
//! Nothing here reads the real clock except once, in
//! [`VirtualRuntime::new`], to pick the [`Instant`] that stands for virtual
//! time zero ([`VirtualRuntime::origin`]); every instant the runtime hands
//! out is `origin + elapsed`.
//!
//! The caller owns the loop: run every woken task until nothing is left to
//! do, then move the clock to the next thing that happens — whichever comes
//! first of the world's next event (a server coming back, an op's reply…)
//! and the earliest timer a task is waiting on:
//!
//! ```text
//! loop {
//!     rt.run_until_stalled();
//!     let next = min(world's next event, rt.next_timer());
//!     rt.advance_to(next);
//!     // deliver the world's events due at `next`, which wakes tasks
//! }
//! ```
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use redial_sim::vrt::VirtualRuntime;
//!
//! let rt = VirtualRuntime::new();
//! let done = Arc::new(Mutex::new(false));
//! let (flag, sleep) = (done.clone(), rt.sleep_until(Duration::from_secs(10)));
//! rt.spawn(async move {
//!     sleep.await;
//!     *flag.lock().unwrap() = true;
//! });
//! rt.run_until_stalled();
//! assert_eq!(rt.next_timer(), Some(Duration::from_secs(10)));
//! rt.advance_to(Duration::from_secs(10));
//! rt.run_until_stalled();
//! assert!(*done.lock().unwrap());
//! assert_eq!(rt.tasks(), 0);
//! ```
//!
//! Tasks are polled on the thread that calls
//! [`run_until_stalled`](VirtualRuntime::run_until_stalled), with the
//! executor's lock released, so a task may spawn tasks, create, poll and
//! drop timers and wake other tasks. Wakers may be used from any thread.
//! A task that holds a handle on the runtime (the redial driver does) keeps
//! the executor alive until it finishes.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use redial::{AsyncTimer, Runtime};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One slab slot's task.
struct Entry {
    /// Unique over the executor's life (slots are reused, ids never are).
    id: u64,
    /// `None` while the task is being polled.
    future: Option<Task>,
    /// In the ready queue already: a second wake before the poll is a no-op.
    queued: bool,
    waker: Waker,
}

struct State {
    elapsed: Duration,
    /// `origin + elapsed`, kept in step with `elapsed`.
    now: Instant,
    tasks: Vec<Option<Entry>>,
    free: Vec<usize>,
    live: usize,
    next_task: u64,
    /// Woken tasks as (slot, id), in wake order.
    ready: VecDeque<(usize, u64)>,
    /// Timers waiting for the clock, keyed by (deadline, creation order).
    /// Every key here is later than `elapsed`.
    timers: BTreeMap<(Duration, u64), Waker>,
    next_timer: u64,
    /// Inside `run_until_stalled` (it must not be re-entered).
    running: bool,
}

struct Inner {
    origin: Instant,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("VirtualRuntime");
        d.field("origin", &self.origin);
        // Never block in Debug: it may be called while the lock is held.
        if let Ok(s) = self.state.try_lock() {
            d.field("elapsed", &s.elapsed)
                .field("tasks", &s.live)
                .field("ready", &s.ready.len())
                .field("timers", &s.timers.len());
        }
        d.finish_non_exhaustive()
    }
}

/// A deterministic executor on a virtual clock (see the [module
/// docs](self)). Clone = another handle on the same executor.
#[derive(Clone, Debug)]
pub struct VirtualRuntime {
    inner: Arc<Inner>,
}

impl Default for VirtualRuntime {
    fn default() -> Self {
        Self::new()
    }
}

/// The waker of one task: it holds the executor weakly, so a task's waker
/// stored in the task's own future makes no reference cycle.
struct TaskWaker {
    inner: Weak<Inner>,
    slot: usize,
    id: u64,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut s = inner.lock();
        let s = &mut *s;
        if let Some(Some(e)) = s.tasks.get_mut(self.slot) {
            // A finished task's slot may hold another task by now.
            if e.id == self.id && !e.queued {
                e.queued = true;
                s.ready.push_back((self.slot, self.id));
            }
        }
    }
}

impl VirtualRuntime {
    /// A new executor, its clock at the origin (elapsed 0), no task, no
    /// timer. The origin is the real `Instant::now()` of this call: the only
    /// read of the real clock.
    pub fn new() -> Self {
        let origin = Instant::now();
        VirtualRuntime {
            inner: Arc::new(Inner {
                origin,
                state: Mutex::new(State {
                    elapsed: Duration::ZERO,
                    now: origin,
                    tasks: Vec::new(),
                    free: Vec::new(),
                    live: 0,
                    next_task: 0,
                    ready: VecDeque::new(),
                    timers: BTreeMap::new(),
                    next_timer: 0,
                    running: false,
                }),
            }),
        }
    }

    /// The [`Instant`] that is virtual time 0.
    pub fn origin(&self) -> Instant {
        self.inner.origin
    }

    /// Virtual time since the origin.
    pub fn elapsed(&self) -> Duration {
        self.inner.lock().elapsed
    }

    /// The virtual clock: `origin() + elapsed()`.
    pub fn now(&self) -> Instant {
        self.inner.lock().now
    }

    /// Adds `fut` as a new task, woken (it is polled by the next
    /// [`run_until_stalled`](Self::run_until_stalled), after the tasks
    /// woken before it).
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.spawn_boxed(Box::pin(fut));
    }

    fn spawn_boxed(&self, future: Task) {
        let mut s = self.inner.lock();
        let s = &mut *s;
        let id = s.next_task;
        s.next_task += 1;
        let slot = s.free.pop().unwrap_or(s.tasks.len());
        let waker = Waker::from(Arc::new(TaskWaker {
            inner: Arc::downgrade(&self.inner),
            slot,
            id,
        }));
        let entry = Entry {
            id,
            future: Some(future),
            queued: true,
            waker,
        };
        if slot == s.tasks.len() {
            s.tasks.push(Some(entry));
        } else {
            s.tasks[slot] = Some(entry);
        }
        s.live += 1;
        s.ready.push_back((slot, id));
    }

    /// Runs every task and fires every timer up to virtual time `until`,
    /// in order, then leaves the clock at `until` with every task idle: the
    /// loop a test writes to let a client live for a while.
    pub fn run_until(&self, until: Duration) {
        loop {
            self.run_until_stalled();
            match self.next_timer() {
                Some(t) if t <= until => self.advance_to(t),
                _ => {
                    self.advance_to(until);
                    self.run_until_stalled();
                    return;
                }
            }
        }
    }

    /// Drops every task (finished or not) and forgets every wake-up: ends
    /// a simulation whose tasks hold handles on this executor (the driver
    /// holds its runtime), which would otherwise keep each other alive.
    /// The tasks are dropped outside the executor's lock, so their
    /// destructors may use it.
    pub fn clear(&self) {
        let tasks: Vec<Option<Entry>> = {
            let mut s = self.inner.lock();
            s.ready.clear();
            s.free.clear();
            s.live = 0;
            std::mem::take(&mut s.tasks)
        };
        drop(tasks);
    }

    /// Polls woken tasks (FIFO in wake order; a newly spawned task counts as
    /// woken) until no task is woken. Returns how many polls were made.
    /// Never advances the clock.
    ///
    /// # Panics
    ///
    /// When called from inside one of this executor's tasks, and when a
    /// task panics (the panic is passed on).
    pub fn run_until_stalled(&self) -> usize {
        {
            let mut s = self.inner.lock();
            assert!(
                !s.running,
                "VirtualRuntime::run_until_stalled called from inside a task"
            );
            s.running = true;
        }
        // Cleared even when a task panics.
        struct Running<'a>(&'a Inner);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.lock().running = false;
            }
        }
        let _running = Running(&self.inner);

        let mut polls = 0;
        loop {
            let (slot, mut future, waker) = {
                let mut s = self.inner.lock();
                let Some((slot, id)) = s.ready.pop_front() else {
                    break;
                };
                match s.tasks.get_mut(slot) {
                    Some(Some(e)) if e.id == id && e.future.is_some() => {
                        e.queued = false;
                        (slot, e.future.take(), e.waker.clone())
                    }
                    _ => continue, // finished since it was woken
                }
            };
            let Some(fut) = future.as_mut() else {
                continue;
            };
            let done = fut
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            polls += 1;
            let mut s = self.inner.lock();
            if done {
                let entry = s.tasks[slot].take();
                s.free.push(slot);
                s.live -= 1;
                drop(s);
                // The future and the waker go with the lock released: their
                // drop may wake other tasks.
                drop((entry, future, waker));
            } else if let Some(Some(e)) = s.tasks.get_mut(slot) {
                e.future = future;
            }
        }
        polls
    }

    /// The earliest instant (as time since the origin) at which a live timer
    /// is armed, if any. A timer is armed once it was polled and found not
    /// due; it stays so until it fires, is reset past the clock, or is
    /// dropped. Always later than [`elapsed`](Self::elapsed).
    pub fn next_timer(&self) -> Option<Duration> {
        self.inner
            .lock()
            .timers
            .first_key_value()
            .map(|(&(at, _), _)| at)
    }

    /// Moves the clock to `t` (never backwards: an earlier `t` is ignored)
    /// and wakes, in (deadline, creation order) order, every live timer whose
    /// deadline is `<=` the clock. A `t` too large for an [`Instant`] is cut
    /// to the latest representable whole second.
    pub fn advance_to(&self, t: Duration) {
        let due = {
            let mut s = self.inner.lock();
            if t > s.elapsed {
                let t = clamp(self.inner.origin, t);
                if t > s.elapsed {
                    s.elapsed = t;
                    s.now = self.inner.origin + t;
                }
            }
            let (elapsed, mut due) = (s.elapsed, Vec::new());
            while let Some(entry) = s.timers.first_entry() {
                if entry.key().0 > elapsed {
                    break;
                }
                due.push(entry.remove());
            }
            due
        };
        for w in due {
            w.wake();
        }
    }

    /// A future that completes once the virtual clock reaches
    /// `origin() + at` (for application tasks run on this executor).
    pub fn sleep_until(&self, at: Duration) -> impl Future<Output = ()> + Send + 'static {
        Sleep(self.timer(at))
    }

    /// Live (not yet finished) tasks.
    pub fn tasks(&self) -> usize {
        self.inner.lock().live
    }

    fn timer(&self, at: Duration) -> VirtualTimer {
        let id = {
            let mut s = self.inner.lock();
            let id = s.next_timer;
            s.next_timer += 1;
            id
        };
        VirtualTimer {
            inner: Arc::downgrade(&self.inner),
            at,
            id,
        }
    }
}

/// The latest offset `<= t` that `origin` can be moved by.
fn clamp(origin: Instant, t: Duration) -> Duration {
    if origin.checked_add(t).is_some() {
        return t;
    }
    // Whole seconds: 0 fits, find the largest that does.
    let (mut lo, mut hi) = (0u64, t.as_secs());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if origin.checked_add(Duration::from_secs(mid)).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Duration::from_secs(lo)
}

impl Runtime for VirtualRuntime {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(self.timer(at.saturating_duration_since(self.inner.origin)))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.spawn_boxed(future);
    }

    fn now(&self) -> Instant {
        VirtualRuntime::now(self)
    }
}

/// A timer of the virtual clock. It holds the executor weakly: once the
/// executor is gone, the clock never moves again and the timer stays
/// pending.
struct VirtualTimer {
    inner: Weak<Inner>,
    /// The deadline, as time since the origin.
    at: Duration,
    /// Creation order: breaks ties between equal deadlines.
    id: u64,
}

impl fmt::Debug for VirtualTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualTimer")
            .field("at", &self.at)
            .field("id", &self.id)
            .finish()
    }
}

impl VirtualTimer {
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(inner) = self.inner.upgrade() else {
            return Poll::Pending;
        };
        let mut s = inner.lock();
        let key = (self.at, self.id);
        if s.elapsed >= self.at {
            let old = s.timers.remove(&key);
            drop(s);
            drop(old);
            return Poll::Ready(());
        }
        let old = match s.timers.get_mut(&key) {
            Some(w) if w.will_wake(cx.waker()) => None,
            Some(w) => Some(std::mem::replace(w, cx.waker().clone())),
            None => s.timers.insert(key, cx.waker().clone()),
        };
        drop(s);
        // A replaced waker is dropped with the lock released.
        drop(old);
        Poll::Pending
    }

    fn reset_to(&mut self, at: Duration) {
        let Some(inner) = self.inner.upgrade() else {
            self.at = at;
            return;
        };
        let mut s = inner.lock();
        let waker = s.timers.remove(&(self.at, self.id));
        self.at = at;
        let Some(waker) = waker else {
            return; // not armed: it arms on its next poll
        };
        if at > s.elapsed {
            s.timers.insert((at, self.id), waker);
        } else {
            // Moved into the past: due now, tell the waiter.
            drop(s);
            waker.wake();
        }
    }
}

impl Drop for VirtualTimer {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            let old = inner.lock().timers.remove(&(self.at, self.id));
            drop(old);
        }
    }
}

impl AsyncTimer for VirtualTimer {
    fn reset(self: Pin<&mut Self>, at: Instant) {
        let this = self.get_mut();
        if let Some(inner) = this.inner.upgrade() {
            let at = at.saturating_duration_since(inner.origin);
            drop(inner);
            this.reset_to(at);
        }
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_timer(cx)
    }
}

/// [`VirtualRuntime::sleep_until`]'s future.
struct Sleep(VirtualTimer);

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().0.poll_timer(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::oneshot;
    use std::future::poll_fn;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    type Log = Arc<Mutex<Vec<String>>>;

    fn push(log: &Log, s: impl Into<String>) {
        log.lock().unwrap().push(s.into());
    }

    fn take(log: &Log) -> Vec<String> {
        std::mem::take(&mut *log.lock().unwrap())
    }

    /// Runs until no task is woken and no timer is armed (or `limit` steps).
    fn drive(rt: &VirtualRuntime, limit: usize) -> usize {
        let mut polls = 0;
        for _ in 0..limit {
            polls += rt.run_until_stalled();
            match rt.next_timer() {
                Some(t) => rt.advance_to(t),
                None => return polls,
            }
        }
        panic!("did not settle in {limit} steps");
    }

    #[test]
    fn timers_fire_in_deadline_order_and_not_before() {
        let rt = VirtualRuntime::new();
        let log: Log = Arc::default();
        // Created in this order; deadlines 3, 1, 2, 1 (the two 1 s timers
        // fire in creation order).
        for (name, at) in [("a", 3), ("b", 1), ("c", 2), ("d", 1)] {
            let (log, t) = (log.clone(), rt.sleep_until(secs(at)));
            rt.spawn(async move {
                t.await;
                push(&log, name);
            });
        }
        assert_eq!(rt.run_until_stalled(), 4);
        assert!(take(&log).is_empty());
        assert_eq!(rt.next_timer(), Some(secs(1)));

        rt.advance_to(Duration::from_millis(999));
        assert_eq!(rt.run_until_stalled(), 0, "nothing due before 1 s");
        rt.advance_to(secs(1));
        assert_eq!(rt.run_until_stalled(), 2);
        assert_eq!(take(&log), ["b", "d"]);
        assert_eq!(rt.next_timer(), Some(secs(2)));

        // One jump past both: still deadline order.
        rt.advance_to(secs(5));
        rt.run_until_stalled();
        assert_eq!(take(&log), ["c", "a"]);
        assert_eq!(rt.next_timer(), None);
        assert_eq!(rt.tasks(), 0);
        assert_eq!(rt.elapsed(), secs(5));
        assert_eq!(rt.now(), rt.origin() + secs(5));

        // Never backwards.
        rt.advance_to(secs(1));
        assert_eq!(rt.elapsed(), secs(5));
    }

    /// A task that owns a runtime timer, resets it on command and logs when
    /// it fires.
    fn timer_task(
        rt: &VirtualRuntime,
        at: Duration,
        resets: futures::channel::mpsc::UnboundedReceiver<Duration>,
        log: Log,
    ) {
        use futures::StreamExt;
        let origin = rt.origin();
        let mut timer = Runtime::new_timer(rt, origin + at);
        let mut resets = resets;
        rt.spawn(async move {
            poll_fn(|cx| {
                while let Poll::Ready(Some(at)) = resets.poll_next_unpin(cx) {
                    timer.as_mut().reset(origin + at);
                }
                timer.as_mut().poll(cx)
            })
            .await;
            push(&log, "fired");
        });
    }

    #[test]
    fn reset_earlier_and_later() {
        let rt = VirtualRuntime::new();
        let log: Log = Arc::default();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        timer_task(&rt, secs(10), rx, log.clone());
        rt.run_until_stalled();
        assert_eq!(rt.next_timer(), Some(secs(10)));

        tx.unbounded_send(secs(4)).unwrap();
        rt.run_until_stalled();
        assert_eq!(rt.next_timer(), Some(secs(4)), "moved earlier");

        tx.unbounded_send(secs(20)).unwrap();
        rt.run_until_stalled();
        assert_eq!(rt.next_timer(), Some(secs(20)), "moved later");

        rt.advance_to(secs(4));
        rt.run_until_stalled();
        assert!(take(&log).is_empty(), "the old deadline does not fire");
        rt.advance_to(secs(20));
        rt.run_until_stalled();
        assert_eq!(take(&log), ["fired"]);
        assert_eq!(rt.next_timer(), None);
    }

    #[test]
    fn reset_into_the_past_wakes_the_waiter() {
        let rt = VirtualRuntime::new();
        let log: Log = Arc::default();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        timer_task(&rt, secs(10), rx, log.clone());
        rt.run_until_stalled();
        rt.advance_to(secs(3));
        tx.unbounded_send(secs(2)).unwrap();
        rt.run_until_stalled();
        assert_eq!(take(&log), ["fired"]);
        assert_eq!(rt.next_timer(), None);
    }

    #[test]
    fn a_dropped_timer_is_not_reported() {
        let rt = VirtualRuntime::new();
        let (tx, rx) = oneshot::channel::<()>();
        let sleep = rt.sleep_until(secs(7));
        let late = rt.sleep_until(secs(9));
        // Waits on whichever comes first: the timer or the message; the
        // timer goes with the task.
        rt.spawn(async move {
            let _ = futures::future::select(Box::pin(sleep), rx).await;
        });
        rt.spawn(late);
        rt.run_until_stalled();
        assert_eq!(rt.next_timer(), Some(secs(7)));
        tx.send(()).unwrap();
        rt.run_until_stalled();
        assert_eq!(rt.next_timer(), Some(secs(9)));
        assert_eq!(rt.tasks(), 1);

        // A timer never polled is never armed; one dropped unpolled leaves
        // nothing behind.
        let t = Runtime::new_timer(&rt, rt.origin() + secs(1));
        assert_eq!(rt.next_timer(), Some(secs(9)));
        drop(t);
        assert_eq!(rt.inner.lock().timers.len(), 1);
    }

    #[test]
    fn a_task_spawns_a_task() {
        let rt = VirtualRuntime::new();
        let log: Log = Arc::default();
        let (rt2, log2) = (rt.clone(), log.clone());
        rt.spawn(async move {
            push(&log2, "parent");
            let log3 = log2.clone();
            rt2.spawn(async move { push(&log3, "child") });
            push(&log2, "parent done");
        });
        assert_eq!(rt.tasks(), 1);
        assert_eq!(rt.run_until_stalled(), 2);
        assert_eq!(take(&log), ["parent", "parent done", "child"]);
        assert_eq!(rt.tasks(), 0);
    }

    #[test]
    fn cross_task_wake_through_a_oneshot() {
        let rt = VirtualRuntime::new();
        let log: Log = Arc::default();
        let (tx, rx) = oneshot::channel::<u32>();
        let l = log.clone();
        rt.spawn(async move {
            let v = rx.await.unwrap();
            push(&l, format!("got {v}"));
        });
        let (l, sleep) = (log.clone(), rt.sleep_until(secs(1)));
        rt.spawn(async move {
            sleep.await;
            push(&l, "send");
            tx.send(42).unwrap();
        });
        assert_eq!(rt.run_until_stalled(), 2);
        rt.advance_to(secs(1));
        // The sender's poll wakes the receiver: two polls.
        assert_eq!(rt.run_until_stalled(), 2);
        assert_eq!(take(&log), ["send", "got 42"]);
        assert_eq!(rt.tasks(), 0);
    }

    #[test]
    fn a_double_wake_queues_once_and_a_stale_wake_is_ignored() {
        let rt = VirtualRuntime::new();
        let stash: Arc<Mutex<Option<Waker>>> = Arc::default();
        let polls = Arc::new(Mutex::new(0));
        let (s, p) = (stash.clone(), polls.clone());
        rt.spawn(poll_fn(move |cx| {
            *p.lock().unwrap() += 1;
            *s.lock().unwrap() = Some(cx.waker().clone());
            if *p.lock().unwrap() == 2 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        assert_eq!(rt.run_until_stalled(), 1);
        let w = stash.lock().unwrap().take().unwrap();
        w.wake_by_ref();
        w.wake_by_ref();
        assert_eq!(rt.run_until_stalled(), 1);
        assert_eq!(rt.tasks(), 0);
        // The slot is reused by a new task; the old waker must not wake it.
        let (tx, rx) = oneshot::channel::<()>();
        rt.spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(rt.run_until_stalled(), 1);
        assert_eq!(rt.inner.lock().tasks.len(), 1, "slot reused");
        w.wake();
        assert_eq!(rt.run_until_stalled(), 0, "stale wake ignored");
        // A wake from another thread.
        std::thread::spawn(move || tx.send(()).unwrap())
            .join()
            .unwrap();
        assert_eq!(rt.run_until_stalled(), 1);
        assert_eq!(rt.tasks(), 0);
    }

    /// A small program with spawns, timers, channels and resets; returns its
    /// log.
    fn program() -> Vec<String> {
        let rt = VirtualRuntime::new();
        let log: Log = Arc::default();
        let (tx, mut rx) = futures::channel::mpsc::unbounded::<u32>();
        for i in 0..5u32 {
            let (rt2, log, tx) = (rt.clone(), log.clone(), tx.clone());
            rt.spawn(async move {
                for round in 0..3u64 {
                    let at = rt2.elapsed() + Duration::from_millis(100 * u64::from(5 - i) + round);
                    rt2.sleep_until(at).await;
                    push(&log, format!("t{i} r{round} @{:?}", rt2.elapsed()));
                    tx.unbounded_send(i).unwrap();
                    if i % 2 == 0 {
                        let (log, rt3) = (log.clone(), rt2.clone());
                        rt2.spawn(async move {
                            push(&log, format!("child of t{i} @{:?}", rt3.elapsed()));
                        });
                    }
                }
            });
        }
        drop(tx);
        let l = log.clone();
        rt.spawn(async move {
            use futures::StreamExt;
            while let Some(i) = rx.next().await {
                push(&l, format!("rx {i}"));
            }
            push(&l, "rx end");
        });
        let polls = drive(&rt, 1000);
        assert_eq!(rt.tasks(), 0);
        let mut out = take(&log);
        out.push(format!("polls {polls}"));
        out
    }

    #[test]
    fn two_runs_give_identical_logs() {
        let a = program();
        let b = program();
        assert!(a.len() > 30, "{a:?}");
        // 6 first polls (5 sleepers, the receiver), then for each of the 15
        // wake-ups: the sleeper, the receiver it sends to, and for the 3
        // even sleepers a child.
        assert_eq!(a.last().map(String::as_str), Some("polls 45"), "{a:?}");
        assert_eq!(a, b);
    }

    #[test]
    fn ten_seconds_of_virtual_time_take_no_real_time() {
        let real = Instant::now();
        let rt = VirtualRuntime::new();
        let done = Arc::new(Mutex::new(false));
        let (d, sleep) = (done.clone(), rt.sleep_until(secs(10)));
        rt.spawn(async move {
            sleep.await;
            *d.lock().unwrap() = true;
        });
        rt.run_until_stalled();
        assert!(!*done.lock().unwrap());
        rt.advance_to(rt.next_timer().unwrap());
        rt.run_until_stalled();
        assert!(*done.lock().unwrap());
        assert_eq!(rt.elapsed(), secs(10));
        assert!(real.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn huge_and_past_instants_saturate() {
        let rt = VirtualRuntime::new();
        let far = Duration::from_secs(u64::MAX / 4);
        let log: Log = Arc::default();
        // Before the origin counts as 0: ready at once.
        let past = rt.origin().checked_sub(secs(1));
        if let Some(past) = past {
            let mut t = Runtime::new_timer(&rt, past);
            let l = log.clone();
            rt.spawn(async move {
                poll_fn(|cx| t.as_mut().poll(cx)).await;
                push(&l, "past");
            });
        }
        let l = log.clone();
        let sleep = rt.sleep_until(far);
        rt.spawn(async move {
            sleep.await;
            push(&l, "far");
        });
        rt.run_until_stalled();
        assert_eq!(take(&log).len(), usize::from(past.is_some()));
        assert_eq!(rt.next_timer(), Some(far));
        rt.advance_to(Duration::MAX);
        rt.run_until_stalled();
        // The clock stops at the latest representable instant; `far` is
        // beyond it on most platforms, so it fires only if reachable.
        assert!(rt.elapsed() > secs(1));
        assert_eq!(rt.now(), rt.origin() + rt.elapsed());
        let fired = rt.elapsed() >= far;
        assert_eq!(take(&log) == ["far"], fired);
    }

    // --- the real redial driver on the virtual clock ---

    #[derive(Debug)]
    struct MemError;

    impl fmt::Display for MemError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("mem error")
        }
    }

    impl std::error::Error for MemError {}

    /// An in-memory connector: connect succeeds at once; `run` answers the
    /// op back after `op` milliseconds of virtual time.
    struct Mem {
        rt: VirtualRuntime,
    }

    impl redial::Connector for Mem {
        type Conn = ();
        type Op = u64;
        type Output = u64;
        type Error = MemError;

        fn endpoints(&self) -> usize {
            1
        }

        fn connect(&self, _endpoint: usize) -> impl Future<Output = Result<(), MemError>> + Send {
            std::future::ready(Ok(()))
        }

        fn run(&self, _conn: &(), op: &u64) -> impl Future<Output = Result<u64, MemError>> + Send {
            let (op, sleep) = (
                *op,
                self.rt
                    .sleep_until(self.rt.elapsed() + Duration::from_millis(*op)),
            );
            async move {
                sleep.await;
                Ok(op)
            }
        }

        fn classify(&self, _error: &MemError) -> redial::Failure {
            redial::Failure::ConnectionLost
        }
    }

    fn driver_run(delay_ms: u64) -> (Option<u64>, Duration, usize) {
        let rt = VirtualRuntime::new();
        let client = redial::Client::builder(Mem { rt: rt.clone() })
            .seed(1)
            .runtime(Arc::new(rt.clone()))
            .build()
            .expect("client");
        assert_eq!(rt.tasks(), 1, "the driver task");
        let result: Arc<Mutex<Option<u64>>> = Arc::default();
        let r = result.clone();
        rt.spawn(async move {
            let out = client.call(delay_ms).await.expect("call succeeds");
            *r.lock().unwrap() = Some(out);
            // The last client handle goes with this task: the driver stops.
        });
        let polls = drive(&rt, 1000);
        let out = *result.lock().unwrap();
        assert_eq!(rt.tasks(), 0, "driver and caller finished");
        (out, rt.elapsed(), polls)
    }

    #[test]
    fn the_real_driver_runs_a_call() {
        let (out, elapsed, _) = driver_run(0);
        assert_eq!(out, Some(0));
        assert_eq!(elapsed, Duration::ZERO);
    }

    #[test]
    fn the_real_driver_waits_on_virtual_time() {
        let real = Instant::now();
        let (out, elapsed, polls) = driver_run(5_000);
        assert_eq!(out, Some(5_000));
        assert_eq!(elapsed, secs(5));
        assert!(real.elapsed() < secs(5));
        assert_eq!(driver_run(5_000), (out, elapsed, polls), "deterministic");
    }
}
