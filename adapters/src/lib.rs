//! # redial
//!
//! Keeps a client's connection to a data store alive across restarts,
//! crashes and failovers. Every decision (reconnect, buffer, retry, fail)
//! is taken by the sans-IO machine of [`redial_core`], re-exported as
//! [`core`]; this crate only carries those decisions out on a real async
//! runtime: one generic driver task per [`Client`], a small [`Runtime`]
//! seam (tokio, smol, async-std), and a [`Connector`] you implement (or
//! take ready-made: modules `redis`, `postgres` and `mysql`, behind
//! features).
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use redial::redis::{RedisConnector, redis};
//! use redial::{Client, core::Config};
//!
//! let connector = RedisConnector::new(["redis://127.0.0.1:6380"])?;
//! let client = Client::new(Config::recommended(), connector)?;
//! let n = client.call(redis::cmd("INCR").arg("hits").clone()).await?;
//! println!("{n:?}");
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! ## How the driver drives the core
//!
//! The [`Machine`](crate::core::Machine) lives in state shared by the
//! client's handles, its calls and one driver task per [`Client`], behind a
//! lock held only for short critical sections (never across an `.await`
//! or connector code). Whoever has an input feeds it, stamped with `now`
//! (the runtime clock as microseconds since the client was built, read
//! under the lock), and drains `poll_output` completely right there: a
//! [`Call`] submits its op and reports its answer itself, so an op that
//! goes out and comes back never crosses to another task. The driver task
//! sleeps until `poll_timeout`; it decides a timer expired by comparing the
//! clock with the deadline, and passes the clock's `now` (never the
//! deadline) to `handle_timeout`. Each output is carried out as asked:
//!
//! - `Connect`: the driver starts [`Connector::connect`] →
//!   `handle_connected`, or `handle_connect_failed` with
//!   [`Connector::classify_connect`]'s reading (the core times the attempt
//!   itself);
//! - `Dispatch`: the op's [`Call`] runs [`Connector::run`] in the caller's
//!   task and reads an error with [`Connector::classify`] →
//!   `handle_op_result`;
//! - `Heartbeat`: the driver starts [`Connector::ping`] → `handle_heartbeat`
//!   with the answer read like an op's (the core decides what a failed
//!   ping means);
//! - `Close`: drop the connection and cancel the work under way on it —
//!   the only way a connection is ever freed;
//! - `Complete`: resolve the [`Call`] with the output, or an [`Error`]
//!   carrying the core's kind, `maybe_executed`, message and the
//!   connector's error of the last attempt;
//! - `Event`: send to every [`Client::events`] stream.
//!
//! A [`Call`] runs its op while it is polled, as any future does: await
//! it, or poll several together (`join`, `FuturesUnordered`, spawned tasks)
//! to run them concurrently. Dropping a [`Call`] cancels the op in the
//! core. An op's `run` future is dropped as soon as the op has its outcome
//! (cancelled, past its deadline, closed) or its connection is closed. A
//! connector that panics is reported to the core as a failed attempt or a
//! lost connection (see [`Connector`]). The adapter decides nothing: where
//! a choice exists, the core makes it.
//!
//! The client starts connecting when it is built, used or not. The
//! endpoints are the connector's ([`Connector::endpoints`]).
//!
//! ## Features
//!
//! - `tokio` (default), `smol`, `async-std` (discontinued upstream: prefer
//!   `smol`) — the runtimes.
//! - `redis` — a ready connector on the `redis` crate 1.8 (its multiplexed
//!   async connection), on tokio and on smol through that crate's own
//!   runtime support (features `tokio` / `smol` switch on its `tokio-comp` /
//!   `smol-comp`; one of them is needed). The crate is re-exported as
//!   [`redis::redis`]: build commands with
//!   `redial::redis::redis::cmd` if your own `redis` dependency is another
//!   version. Not on async-std: redis 1.x dropped async-std support.
//! - `postgres` — a ready connector on tokio-postgres (tokio based).
//! - `mysql` — a ready MySQL / MariaDB connector on `mysql_async` (tokio
//!   only: the driver is built on tokio's IO).
//! - `tracing` — `tracing` 0.1 events for op lifecycles (target
//!   `redial::op`, debug) and connection lifecycles (`redial::conn`, info;
//!   losses and give-ups warn), derived from the core's outputs, in a
//!   `redial.client` span per client. Without it, no tracing code is
//!   compiled. [`Client::stats`] needs no feature.
//! - `recorder` — the flight recorder (`FlightRecorder`,
//!   `Builder::record`) and the trace format's exact replay (module
//!   `trace`); the format is `TRACE.md` at the repository's root.

#![forbid(unsafe_code)]

pub use redial_core as core;

mod client;
mod connector;
mod driver;
mod observer;
#[cfg(feature = "recorder")]
mod recorder;
pub mod runtime;
#[cfg(feature = "recorder")]
pub mod trace;
#[cfg(feature = "tracing")]
mod tracing_log;

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

/// The core's counters and gauges, as [`Client::stats`] returns them.
pub use crate::core::Stats;
pub use client::{BuildError, Builder, Call, CallOptions, CallResult, Client, Error, Events};
pub use connector::{Connector, Failure};
pub use observer::Observer;
#[cfg(feature = "recorder")]
pub use recorder::{FLUSH_EVERY, FlightRecorder};
pub use runtime::{AsyncTimer, Runtime, default_runtime};

/// The README's Rust examples, compiled (and, where they need no server,
/// run) as doc tests, so the README cannot drift from the API.
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
