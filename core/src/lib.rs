//! # redial-core
//!
//! A sans-IO, deterministic state machine that keeps a client's connection
//! to a data store alive across restarts, crashes and failovers, and decides
//! what happens to every operation issued while the connection is gone.
//!
//! No sockets, no clocks, no OS randomness, no async: the caller feeds
//! inputs stamped with the current time and carries out the outputs. The
//! same machine runs under tokio, async-std and smol (crate `redial`), in the
//! simulator (crate `redial-sim`) and in the fuzzers.
//!
//! ## What it decides
//!
//! - The autoReconnect × bufferMaxEntries matrix of the MongoDB Node.js
//!   driver, all six rows ([`Config::auto_reconnect`], [`BufferPolicy`]),
//!   plus modern overflow policies, a buffer wait timeout and per-op deadlines.
//! - The reconnect budget: `reconnect_tries` attempts spaced by a
//!   [`Backoff`] with [`Jitter`]; when spent, [`Event::ReconnectFailed`]
//!   once, buffered ops fail with `failed to reconnect after N attempts with
//!   interval M ms`, later ops with `topology was destroyed`.
//! - Ops lost in flight fail with `connection_lost` unless marked retryable,
//!   in which case they are re-queued in order, up to their attempt limit and
//!   only while the shared [`RetryBudget`] allows.
//! - A "wrong server" answer (not primary / READONLY) drains the
//!   connection: nothing more is sent there, the ops in flight keep their
//!   answers (refused ones are re-queued in submission order: they did not
//!   run), then the next endpoint is tried. With
//!   [`Config::require_primary`], a connection the connector reports as a
//!   secondary ([`Machine::handle_connected_as`]) is refused before
//!   anything is sent.
//! - Server pushback ([`OpResult::Pushback`]: loading, busy): the op is
//!   re-queued, the connection holds its dispatches for the hint or the
//!   backoff, then probes one op at a time, charged to the retry budget.
//! - When the budget is spent: [`GiveUp::Terminal`] (the legacy row) or
//!   [`GiveUp::CoolDown`]; [`Machine::revive`] starts over and
//!   [`Machine::gave_up`] says why it gave up.
//! - Every failure says whether the op **may have run** on the server
//!   ([`OpError::maybe_executed`]); an op that may have run is never sent
//!   again unless it is retryable.
//!
//! ## The driving contract
//!
//! 1. **Create** a [`Machine`] with a [`Config`], a seed and the current
//!    [`Instant`]. It immediately asks for a connect attempt.
//! 2. **Feed inputs** as they happen, each with `now`:
//!    [`handle_connected`](Machine::handle_connected),
//!    [`handle_connect_failed`](Machine::handle_connect_failed),
//!    [`handle_connection_lost`](Machine::handle_connection_lost),
//!    [`handle_op_result`](Machine::handle_op_result),
//!    [`handle_heartbeat`](Machine::handle_heartbeat), and the
//!    application's [`submit`](Machine::submit),
//!    [`cancel`](Machine::cancel), [`close`](Machine::close),
//!    [`revive`](Machine::revive).
//! 3. **Drain rule**: after every input, call
//!    [`poll_output`](Machine::poll_output) until it returns `None`, and carry
//!    out each [`Output`] (connect, close, dispatch, heartbeat, complete,
//!    event).
//! 4. **Time rule**: ask [`poll_timeout`](Machine::poll_timeout) for the next
//!    deadline; when your clock reaches it, call
//!    [`handle_timeout`](Machine::handle_timeout) with your clock's `now`
//!    (never the deadline itself), then drain again. Calling
//!    `handle_timeout` early or twice is harmless. Time passed in that goes
//!    backwards is treated as the latest time already seen.
//!
//! Two guarantees drivers rely on:
//!
//! - [`Output::Close`] is emitted for every connection or attempt the
//!   machine forgets, whatever the reason — also after you reported it
//!   failed or lost: free a connection's resources when, and only when, a
//!   `Close` names it.
//! - An answer fed with [`handle_op_result`](Machine::handle_op_result)
//!   (`Ok` or `ServerError`) produces that op's [`Output::Complete`] in the
//!   very next drain, so a driver may hold the op's response aside until
//!   then. A heartbeat's answer or error is fed as it is
//!   ([`handle_heartbeat`](Machine::handle_heartbeat)): what it means is
//!   the machine's decision.
//!
//! Ids: every connect attempt gets a [`ConnId`], which becomes the
//! connection's id if it succeeds. Inputs about an id that is not the
//! current attempt or connection are ignored (a late "connected" after a
//! timeout does not revive anything: the machine answers with
//! [`Output::Close`] for it).
//!
//! ## Panics, errors and unwraps
//!
//! No input sequence makes the machine panic; the `expect`s inside state
//! the invariant that makes them unreachable, and the fuzzers in `fuzz/`
//! hold it to that. Configuration errors are values ([`ConfigError`]).
//!
//! ## Example: a server restart, driven by hand
//!
//! ```
//! use core::time::Duration;
//! use redial_core::{
//!     Config, ErrorKind, Event, Instant, LossKind, Machine, OpOptions, OpResult, Output,
//! };
//!
//! // MongoDB legacy defaults: reconnect every 1 s, buffer everything.
//! let mut m: Machine<&str> = Machine::new(Config::mongodb_legacy(), 7, Instant::ZERO);
//! let mut now = Instant::ZERO;
//!
//! // The machine asks for a connection; we report success.
//! let Some(Output::Connect { conn, endpoint: 0, .. }) = m.poll_output() else { panic!() };
//! m.handle_connected(now, conn);
//! assert_eq!(m.poll_output(), Some(Output::Event(Event::Connected { conn, endpoint: 0 })));
//!
//! // The server restarts: we see the connection close.
//! now += Duration::from_millis(500);
//! m.handle_connection_lost(now, conn, LossKind::Closed);
//! while let Some(out) = m.poll_output() {
//!     println!("{out:?}"); // disconnected, reconnecting (attempt 1 in 1000 ms)
//! }
//!
//! // An op submitted while disconnected is buffered, not failed.
//! let op = m.submit(now, "findOne", OpOptions::new());
//! assert_eq!(m.buffered(), 1);
//! assert_eq!(m.poll_output(), None);
//!
//! // Time passes until the reconnect is due.
//! let (due, _why) = m.poll_timeout().unwrap();
//! now = due;
//! m.handle_timeout(now);
//! let Some(Output::Connect { conn: conn2, .. }) = m.poll_output() else { panic!() };
//!
//! // The server is back: the buffered op is replayed on the new connection.
//! m.handle_connected(now, conn2);
//! assert!(matches!(m.poll_output(), Some(Output::Event(Event::Reconnected { .. }))));
//! assert_eq!(m.poll_output(), Some(Output::Dispatch { op, conn: conn2, endpoint: 0, time_left: None }));
//! assert_eq!(m.payload(op), Some(&"findOne"));
//!
//! // The server answers; the op gets its one outcome, payload handed back.
//! m.handle_op_result(now, op, conn2, OpResult::Ok);
//! let Some(Output::Complete(done)) = m.poll_output() else { panic!() };
//! assert_eq!((done.id, done.payload), (op, "findOne"));
//! assert!(done.result.is_ok());
//!
//! // Closing fails whatever is left and is terminal.
//! m.close(now);
//! let late = m.submit(now, "insert", OpOptions::new());
//! let outputs: Vec<_> = core::iter::from_fn(|| m.poll_output()).collect();
//! assert!(outputs.iter().any(|o| matches!(o, Output::Complete(c)
//!     if c.id == late && c.result.as_ref().unwrap_err().kind() == ErrorKind::Closed)));
//! ```
//!
//! ## Checking the invariants
//!
//! The oracles live in their own crate, `redial-check` (a dev-dependency):
//! its `Checker` watches a machine from the outside (what was submitted,
//! what came out) and reports any breach of DESIGN.md's invariants; its
//! reference model states what a configuration decides; its `Checked`
//! wrapper threads both through every input of a machine; its generator
//! turns any bytes into a random run. The tests, the simulator and the
//! fuzzers all use it — and so can you, on your configuration.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
// `arbitrary`'s derive (fuzzing only) refers to `std`; the default build stays no_std.
#[cfg(feature = "arbitrary")]
extern crate std;

mod config;
mod event;
mod keys;
mod machine;
mod op;
mod rng;
mod time;

pub use config::{
    Backoff, BufferPolicy, Config, ConfigBuilder, ConfigError, ConfigErrorKind, GiveUp, Heartbeat,
    InitialConnect, Jitter, OverflowPolicy, Preset, QuickReconnect, RetryBudget, Tries,
    UnknownName,
};
pub use event::{ConnectFailure, DisconnectReason, Event, LossKind, Role};
pub use keys::{
    ConfigKeys, ConfigValue, KEYS as CONFIG_KEYS, KeyError, MAX_DURATION, format_duration,
    parse_duration,
};
pub use machine::{ConnId, GaveUp, MAX_PUSHBACK_HINT, Machine, Output, State, Stats, TimerKind};
pub use op::{Completion, Done, ErrorKind, OpError, OpId, OpOptions, OpResult};
pub use time::Instant;

/// This crate's version (a flight recorder trace names the core that
/// recorded it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `core::time::Duration`, re-exported for convenience.
pub use core::time::Duration;
