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
//! let client = Client::new(Config::recommended(), connector);
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
//! - `Connect`: start [`Connector::connect`] raced against the connect
//!   timeout → `handle_connected` / `handle_connect_failed`;
//! - `Dispatch`: start [`Connector::run`], read an error with
//!   [`Connector::classify`] → `handle_op_result`;
//! - `Heartbeat`: start [`Connector::ping`] → `handle_heartbeat_ok`, or
//!   `handle_connection_lost` when the ping error reads as connection lost;
//! - `Close`: drop the connection and cancel the work under way on it;
//! - `Complete`: resolve the [`Call`] with the output, or an [`Error`]
//!   carrying the core's kind, `maybe_executed`, message and the
//!   connector's error of the last attempt;
//! - `Event`: send to every [`Client::events`] stream.
//!
//! Dropping a [`Call`] sends `cancel` to the core. The adapter decides
//! nothing: where a choice exists, the core makes it.
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
pub mod runtime;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

pub use client::{Builder, Call, CallOptions, CallResult, Client, Error, Events};
pub use connector::{Connector, Failure};
pub use runtime::{AsyncTimer, Runtime, default_runtime};
