//! The flight recorder: every input the driver feeds the core, with its
//! time, and every output, as JSON lines (format: [`crate::trace`],
//! documented in `TRACE.md`).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::core::{
    ConnId, ConnectFailure, Instant, LossKind, Machine, OpId, OpOptions, OpResult, Output, Role,
    State,
};
use crate::observer::Observer;
use crate::trace::{Input, header_record, input_record, output_record};

/// How often (machine time) a streaming recorder flushes its writer, at
/// the end of a step; [`FlightRecorder::flush`] flushes on demand.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Records a client's core, for an exact replay (`redial-sim
/// replay-trace`) or a what-if (`redial-sim derive-timeline`). Attach it
/// with [`Builder::record`](crate::Builder::record); keep a clone to
/// [`dump`](Self::dump), [`flush`](Self::flush) or read its
/// [`error`](Self::error). One recorder records one client.
///
/// Two modes:
///
/// - [`to_writer`](Self::to_writer): every record goes to the writer, one
///   JSON object per line, through an 8 KiB buffer flushed at the end of
///   the first step [`FLUSH_EVERY`] after the last flush, and on
///   [`flush`](Self::flush) and drop. The writer is called under the
///   client's lock: give it a file or a buffer, not something that blocks
///   (a full pipe would stall the client). A write error stops the
///   recording (the client goes on); [`error`](Self::error) reports it.
/// - [`bounded`](Self::bounded): the last records in memory, within a
///   count and/or an age (of the machine's clock), dumped on demand. Memory:
///   at most `max_records` records (each a line of typically 60–200
///   bytes) plus the header, whatever the age limit; O(1) amortised per
///   record (a ring buffer; whole steps are evicted from its front).
///
///   **Limit**: a dump replays exactly only if it holds the run from its
///   start: the machine's state at a later record (its connection and op
///   ids, its jitter generator, its budgets and timers) cannot be rebuilt
///   by a fresh machine. A dump that dropped records says so in its header
///   (`"dropped": N`); `replay-trace` refuses it with that reason, and
///   `derive-timeline` still reads it. Size the bound for the runs you
///   need replayed (an idle client writes a few records per heartbeat).
#[derive(Clone)]
pub struct FlightRecorder {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for FlightRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.lock();
        f.debug_struct("FlightRecorder")
            .field("records", &i.records)
            .field("error", &i.error)
            .finish_non_exhaustive()
    }
}

enum Sink {
    Stream(io::BufWriter<Box<dyn Write + Send>>),
    Ring {
        max_records: usize,
        max_age: Option<Duration>,
        /// Whole steps: (time of the step, its records).
        steps: VecDeque<(Instant, Vec<String>)>,
        kept: usize,
    },
}

struct Inner {
    sink: Sink,
    header: Option<(u64, Instant, crate::core::Config)>,
    /// The current step's records (a ring keeps whole steps).
    step: Vec<String>,
    step_t: Instant,
    records: u64,
    dropped: u64,
    last_flush: Instant,
    error: Option<String>,
    started: bool,
}

impl FlightRecorder {
    fn new(sink: Sink) -> Self {
        FlightRecorder {
            inner: Arc::new(Mutex::new(Inner {
                sink,
                header: None,
                step: Vec::new(),
                step_t: Instant::ZERO,
                records: 0,
                dropped: 0,
                last_flush: Instant::ZERO,
                error: None,
                started: false,
            })),
        }
    }

    /// Streams every record to `writer` (see the type's docs).
    pub fn to_writer(writer: impl Write + Send + 'static) -> Self {
        Self::new(Sink::Stream(io::BufWriter::with_capacity(
            8 * 1024,
            Box::new(writer),
        )))
    }

    /// Keeps the last `max_records` records (at least 1), and, with
    /// `max_age`, only those of the last `max_age` of the machine's clock
    /// (see the type's docs for what a dump can replay).
    pub fn bounded(max_records: usize, max_age: Option<Duration>) -> Self {
        Self::new(Sink::Ring {
            max_records: max_records.max(1),
            max_age,
            steps: VecDeque::new(),
            kept: 0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The observer the client's builder attaches.
    pub(crate) fn observer(&self) -> Recording {
        Recording {
            inner: self.inner.clone(),
        }
    }

    /// Records written (streaming) or seen (bounded) so far, header
    /// excluded.
    pub fn records(&self) -> u64 {
        self.lock().records
    }

    /// Why the recording stopped (a write error), if it did.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// Flushes a streaming recorder's writer (a bounded one: nothing to do).
    ///
    /// # Errors
    ///
    /// The writer's error (which also stops the recording).
    pub fn flush(&self) -> io::Result<()> {
        let mut i = self.lock();
        if i.error.is_some() {
            // Stopped: the writer (which may have panicked) is left alone.
            return Ok(());
        }
        let r = match &mut i.sink {
            Sink::Stream(w) => guarded(|| w.flush()),
            Sink::Ring { .. } => Ok(()),
        };
        if let Err(e) = &r {
            i.fail(e);
        }
        r
    }

    /// Writes a bounded recorder's trace to `out`: the header (with the
    /// count of records dropped before the first one kept) and the records
    /// kept, whole steps only. A streaming recorder has nothing kept: it
    /// writes nothing.
    ///
    /// # Errors
    ///
    /// `out`'s error.
    pub fn dump(&self, out: &mut impl Write) -> io::Result<()> {
        let i = self.lock();
        let Sink::Ring { steps, .. } = &i.sink else {
            return Ok(());
        };
        let Some((seed, t0, config)) = &i.header else {
            return Ok(());
        };
        writeln!(out, "{}", header_record(*seed, *t0, config, i.dropped))?;
        for (_, records) in steps {
            for r in records {
                writeln!(out, "{r}")?;
            }
        }
        Ok(())
    }
}

/// Runs a write on the user's writer: a panic in it is a write error (the
/// recording stops, the client goes on), not the client's panic.
fn guarded(f: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(io::Error::other("the writer panicked")))
}

impl Inner {
    fn fail(&mut self, e: &io::Error) {
        if self.error.is_none() {
            self.error = Some(format!("the flight recorder stopped: {e}"));
        }
    }

    fn push(&mut self, t: Instant, record: String) {
        if self.error.is_some() || !self.started {
            return;
        }
        if self.step.is_empty() {
            self.step_t = t;
        }
        self.records += 1;
        self.step.push(record);
    }

    fn input(&mut self, t: Instant, input: Input) {
        self.push(t, input_record(t, &input));
    }

    /// The step is over: its records go to the sink.
    fn end_step(&mut self, now: Instant) {
        if self.error.is_some() || self.step.is_empty() {
            return;
        }
        let step = std::mem::take(&mut self.step);
        let t = self.step_t;
        match &mut self.sink {
            Sink::Stream(w) => {
                let due = now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY;
                let r = guarded(|| {
                    step.iter().try_for_each(|l| writeln!(w, "{l}"))?;
                    if due { w.flush() } else { Ok(()) }
                });
                if due {
                    self.last_flush = now;
                }
                if let Err(e) = r {
                    self.fail(&e);
                }
            }
            Sink::Ring {
                max_records,
                max_age,
                steps,
                kept,
            } => {
                *kept += step.len();
                steps.push_back((t, step));
                while let Some((front_t, front)) = steps.front() {
                    let old = max_age.is_some_and(|a| now.saturating_duration_since(*front_t) > a);
                    if *kept <= *max_records && !old {
                        break;
                    }
                    let n = front.len();
                    *kept -= n;
                    self.dropped += n as u64;
                    steps.pop_front();
                }
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Sink::Stream(w) = &mut self.sink else {
            return;
        };
        if self.error.is_none() {
            let _ = guarded(|| w.flush());
        } else {
            // A writer that failed (or panicked) is not written to again,
            // not even by its buffer's drop: the buffered bytes are let go.
            let w = std::mem::replace(w, io::BufWriter::with_capacity(0, Box::new(io::sink())));
            let (writer, _unwritten) = w.into_parts();
            drop(writer);
        }
    }
}

/// The recorder's observer (attached by [`Builder::record`](crate::Builder::record)).
pub(crate) struct Recording {
    inner: Arc<Mutex<Inner>>,
}

impl Recording {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl<P> Observer<P> for Recording {
    fn on_start(&mut self, seed: u64, machine: &Machine<P>) {
        self.with(|i| {
            if i.started {
                // One recorder records one client: a second one would mix
                // two machines in one trace. The recording stops there.
                if i.error.is_none() {
                    i.error = Some(
                        "the flight recorder stopped: it was attached to a second client (one recorder records one client)".into(),
                    );
                }
                return;
            }
            let t0 = machine.now();
            i.header = Some((seed, t0, machine.config().clone()));
            i.started = true;
            i.last_flush = t0;
            if let Sink::Stream(w) = &mut i.sink {
                let header = header_record(seed, t0, machine.config(), 0);
                if let Err(e) = guarded(|| writeln!(w, "{header}")) {
                    i.fail(&e);
                }
            }
        });
    }
    fn on_submit(&mut self, now: Instant, op: OpId, options: &OpOptions, _before: State) {
        let options = *options;
        self.with(|i| i.input(now, Input::Submit { op, options }));
    }
    fn on_cancel(&mut self, now: Instant, op: OpId) {
        self.with(|i| i.input(now, Input::Cancel { op }));
    }
    fn on_close(&mut self, now: Instant) {
        self.with(|i| i.input(now, Input::Close));
    }
    fn on_revive(&mut self, now: Instant, _before: State) {
        self.with(|i| i.input(now, Input::Revive));
    }
    fn on_connected(&mut self, now: Instant, conn: ConnId, role: Role) {
        self.with(|i| i.input(now, Input::Connected { conn, role }));
    }
    fn on_connect_failed(&mut self, now: Instant, conn: ConnId, why: ConnectFailure) {
        self.with(|i| i.input(now, Input::ConnectFailed { conn, why }));
    }
    fn on_connection_lost(&mut self, now: Instant, conn: ConnId, kind: LossKind) {
        self.with(|i| i.input(now, Input::ConnectionLost { conn, kind }));
    }
    fn on_op_result(&mut self, now: Instant, op: OpId, conn: ConnId, result: &OpResult) {
        let result = *result;
        self.with(|i| i.input(now, Input::OpResult { op, conn, result }));
    }
    fn on_heartbeat(&mut self, now: Instant, conn: ConnId, result: &OpResult) {
        let result = *result;
        self.with(|i| i.input(now, Input::Heartbeat { conn, result }));
    }
    fn on_timeout(&mut self, now: Instant) {
        self.with(|i| i.input(now, Input::Timeout));
    }
    fn on_output(&mut self, now: Instant, output: &Output<P>) {
        self.with(|i| i.push(now, output_record(now, output)));
    }
    fn after_step(&mut self, machine: &Machine<P>) {
        self.with(|i| i.end_step(machine.now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Config;

    /// Drives a machine by hand through a recorder's observer, as the
    /// driver does: `steps` connect/op round trips.
    fn drive(rec: &FlightRecorder, steps: u64) {
        let mut o = rec.observer();
        let mut m: Machine<()> = Machine::new(Config::recommended(), 7, Instant::ZERO);
        let drain = |m: &mut Machine<()>, o: &mut Recording| {
            while let Some(out) = m.poll_output() {
                Observer::<()>::on_output(o, m.now(), &out);
            }
            Observer::<()>::after_step(o, m);
        };
        Observer::<()>::on_start(&mut o, 7, &m);
        drain(&mut m, &mut o);
        let conn = crate::core::ConnId::from_raw(1);
        Observer::<()>::on_connected(&mut o, Instant::from_micros(10), conn, Role::Primary);
        m.handle_connected_as(Instant::from_micros(10), conn, Role::Primary);
        drain(&mut m, &mut o);
        for i in 0..steps {
            let t = Instant::from_micros(1_000 * (i + 1));
            let before = m.state();
            let id = m.submit(t, (), OpOptions::new());
            Observer::<()>::on_submit(&mut o, t, id, &OpOptions::new(), before);
            drain(&mut m, &mut o);
            let t = t + Duration::from_micros(500);
            Observer::<()>::on_op_result(&mut o, t, id, conn, &OpResult::Ok);
            m.handle_op_result(t, id, conn, OpResult::Ok);
            drain(&mut m, &mut o);
        }
    }

    #[test]
    fn a_bounded_dump_that_kept_everything_replays() {
        let rec = FlightRecorder::bounded(1000, None);
        drive(&rec, 5);
        let mut out = Vec::new();
        rec.dump(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let r = crate::trace::replay(&text).unwrap();
        assert_eq!(r.records.len() as u64, rec.records());
    }

    #[test]
    fn a_bounded_dump_that_dropped_records_says_so_and_is_refused() {
        let rec = FlightRecorder::bounded(10, None);
        drive(&rec, 50);
        let mut out = Vec::new();
        rec.dump(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        // At most 10 records kept (whole steps), plus the header.
        assert!(text.lines().count() <= 11, "{text}");
        let m = crate::trace::replay(&text).unwrap_err();
        assert_eq!(m.line, 1);
        assert!(m.expected.contains("dropped"), "{m}");
        // By age: only the last 10 ms of the run's 50 ms.
        let rec = FlightRecorder::bounded(usize::MAX, Some(Duration::from_millis(10)));
        drive(&rec, 50);
        let mut out = Vec::new();
        rec.dump(&mut out).unwrap();
        let kept = String::from_utf8(out).unwrap().lines().count();
        // 4 records a millisecond: about 11 ms of steps, plus the header.
        assert!((30..=50).contains(&kept), "{kept}");
    }

    #[test]
    fn a_write_error_stops_the_recording_without_panicking() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::other("disk full"))
            }
        }
        let rec = FlightRecorder::to_writer(Broken);
        drive(&rec, 3000);
        assert!(rec.error().is_some_and(|e| e.contains("disk full")));
    }
}
