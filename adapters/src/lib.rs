//! # redial
//!
//! Keeps a client's connection to a data store alive across restarts,
//! crashes and failovers. Every decision (reconnect, buffer, retry, fail)
//! is taken by the sans-IO machine of [`redial_core`], re-exported as
//! [`core`]; this crate only carries those decisions out on a real async
//! runtime: one generic driver task per [`Client`], a small [`Runtime`]
//! seam (tokio, smol, async-std), and a [`Connector`] you implement (or
//! take ready-made: modules `redis` and `postgres`, behind features).
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use redial::{Client, core::Config, redis::RedisConnector};
//!
//! let connector = RedisConnector::new(["redis://127.0.0.1:6380"])?;
//! let client = Client::new(Config::recommended(), connector)?;
//! let n = client.call(::redis::cmd("INCR").arg("hits").clone()).await?;
//! println!("{n:?}");
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! ## How the driver drives the core
//!
//! One task per client owns the [`Machine`](crate::core::Machine) and
//! polls, itself, every future it starts for a connection (no task is
//! spawned per op; a connection's futures are dropped with it). It feeds
//! it inputs stamped with `now` (the runtime clock as microseconds since the
//! client was built), drains `poll_output` completely after every input,
//! and sleeps until `poll_timeout`; it decides a timer expired by comparing
//! the clock with the deadline, and passes the clock's `now` (never the
//! deadline) to `handle_timeout`. Each output is carried out as asked:
//!
//! - `Connect`: start [`Connector::connect`] → `handle_connected`, or
//!   `handle_connect_failed` with [`Connector::classify_connect`]'s reading
//!   (the core times the attempt itself);
//! - `Dispatch`: start [`Connector::run`], read an error with
//!   [`Connector::classify`] → `handle_op_result`;
//! - `Heartbeat`: start [`Connector::ping`] → `handle_heartbeat` with the
//!   answer read like an op's (the core decides what a failed ping means);
//! - `Close`: drop the connection and cancel the work under way on it —
//!   the only way a connection is ever freed;
//! - `Complete`: resolve the [`Call`] with the output, or an [`Error`]
//!   carrying the core's kind, `maybe_executed`, message and the
//!   connector's error of the last attempt;
//! - `Event`: send to every [`Client::events`] stream.
//!
//! Dropping a [`Call`] sends `cancel` to the core. An op's `run` future is
//! dropped as soon as the op has its outcome (cancelled, past its
//! deadline, closed). A connector that panics is reported to the core as a
//! failed attempt or a lost connection (see [`Connector`]). The adapter
//! decides nothing: where a choice exists, the core makes it.
//!
//! The client starts connecting when it is built, used or not. The
//! endpoints are the connector's ([`Connector::endpoints`]).
//!
//! ## Features
//!
//! - `tokio` (default), `smol`, `async-std` (discontinued upstream: prefer
//!   `smol`) — the runtimes.
//! - `redis`, `postgres` — ready connectors (tokio based).

#![forbid(unsafe_code)]

pub use redial_core as core;

mod client;
mod connector;
mod driver;
mod observer;
pub mod runtime;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

pub use client::{BuildError, Builder, Call, CallOptions, CallResult, Client, Error, Events};
pub use connector::{Connector, Failure};
pub use observer::Observer;
pub use runtime::{AsyncTimer, Runtime, default_runtime};

/// The README's Rust examples, compiled (and, where they need no server,
/// run) as doc tests, so the README cannot drift from the API.
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
